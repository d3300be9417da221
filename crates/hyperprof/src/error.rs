//! The CLI's one error type. Every failure becomes one line on stderr and
//! the exit status of its class ([`ExitStatus`]).

use std::path::PathBuf;

/// The exit statuses of `hyperprof`, one per class of failure, so that a
/// script or CI can tell them apart. The same scheme as `hyperprof boot`:
/// 1 an invariant failed, 2 bad input, 3 the run could not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitStatus {
    /// Everything worked and every invariant held.
    Success = 0,
    /// The run completed but an invariant it checks did not hold (the
    /// report says which).
    InvariantFailed = 1,
    /// Bad input: the command line (clap's usage errors too), or a file that
    /// cannot be read, is of the wrong type, or is malformed or meaningless.
    BadInput = 2,
    /// The run could not complete: the simulated system failed or made no
    /// progress.
    RunFailed = 3,
    /// Writing an output failed (disk full, I/O error, a target that is not
    /// a regular file).
    OutputFailed = 4,
}

impl ExitStatus {
    /// Every status, for documentation and tests.
    pub const ALL: [ExitStatus; 5] = [
        ExitStatus::Success,
        ExitStatus::InvariantFailed,
        ExitStatus::BadInput,
        ExitStatus::RunFailed,
        ExitStatus::OutputFailed,
    ];

    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// One line saying what the status means.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitStatus::Success => "success",
            ExitStatus::InvariantFailed => "the run completed but an invariant did not hold",
            ExitStatus::BadInput => {
                "bad input: usage, or a file that cannot be read or is malformed"
            }
            ExitStatus::RunFailed => "the run could not complete (a failure or no progress)",
            ExitStatus::OutputFailed => "writing an output failed",
        }
    }

    /// The table of statuses as `--help` prints it.
    pub fn help_text() -> String {
        let mut s = String::from("Exit status:\n");
        for st in Self::ALL {
            s += &format!("  {}  {}\n", st.code(), st.meaning());
        }
        s
    }
}

/// A failure of a hyperprof command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading an input file failed, or it is not a regular file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file's contents are malformed; the message names the byte offset.
    #[error("{path}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, starting with "byte offset 0x…".
        message: String,
    },
    /// The command line asks for something that cannot be done.
    #[error("{0}")]
    Usage(String),
    /// Writing an output failed, or its target may not be replaced.
    #[error("{path}: {message}")]
    Output {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The run could not complete.
    #[error("{0}")]
    Run(String),
    /// The run completed but an invariant did not hold.
    #[error("{0}")]
    Invariant(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    /// Malformed contents of `path`.
    pub fn malformed(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Malformed {
            path: path.into(),
            message: message.into(),
        }
    }
    /// A failure writing `path`.
    pub fn output(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Error::Output {
            path: path.into(),
            message: message.to_string(),
        }
    }

    /// The exit status of this failure.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Io { .. } | Error::Malformed { .. } | Error::Usage(_) => ExitStatus::BadInput,
            Error::Output { .. } => ExitStatus::OutputFailed,
            Error::Run(_) => ExitStatus::RunFailed,
            Error::Invariant(_) => ExitStatus::InvariantFailed,
        }
    }
}

/// Result of a hyperprof command.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_distinct_and_match_the_boot_scheme() {
        let codes: Vec<u8> = ExitStatus::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4]);
        assert_eq!(Error::Usage("x".into()).exit_status().code(), 2);
        assert_eq!(Error::Run("x".into()).exit_status().code(), 3);
        assert_eq!(Error::Invariant("x".into()).exit_status().code(), 1);
        assert_eq!(Error::output("f", "full").exit_status().code(), 4);
        assert!(ExitStatus::help_text().contains("  3  the run could not complete"));
    }
}
