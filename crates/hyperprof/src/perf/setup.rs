//! `hyperprof perf-setup DIR`: adds the symbol files of an artifact
//! directory to perf's build-id cache (`perf buildid-cache -a FILE`), after
//! which `perf report`, `script`, `mem` and `c2c` name the functions of the
//! profiles beside them with no further flags. Without perf it prints the
//! commands instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// The ELF files directly in `dir`, sorted by name.
pub fn symbol_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if !path.is_file() {
            continue;
        }
        let mut magic = [0u8; 4];
        let is_elf = std::fs::File::open(&path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok()
            && magic == *b"\x7fELF";
        if is_elf {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The command that adds `file` to the cache of `perf`.
pub fn command_line(perf: &str, file: &Path) -> String {
    format!("{perf} buildid-cache -a {}", file.display())
}

/// What `perf-setup` did.
#[derive(Debug, Default)]
pub struct SetupReport {
    /// The symbol files found.
    pub files: Vec<PathBuf>,
    /// perf ran (false: it is not installed, and the commands were only
    /// listed).
    pub ran: bool,
}

/// Adds every symbol file in `dir` to the build-id cache of the `perf`
/// found on PATH (`perf` names the program). A file perf refuses is an
/// error naming it and perf's message.
pub fn setup(dir: &Path, perf: &str) -> Result<SetupReport> {
    let files = symbol_files(dir)?;
    if files.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no symbol files (ELF) in this directory; give the directory a run wrote its artifacts to",
            dir.display()
        )));
    }
    let mut report = SetupReport { files, ran: false };
    for file in &report.files {
        let out = match Command::new(perf)
            .args(["buildid-cache", "-a"])
            .arg(file)
            .output()
        {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
            Err(e) => return Err(Error::io(perf, e)),
        };
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            return Err(Error::Usage(format!(
                "{}: {} failed: {}",
                file.display(),
                command_line(perf, file),
                why.lines().next().unwrap_or("no message")
            )));
        }
        report.ran = true;
    }
    Ok(report)
}

/// The text `perf-setup` prints.
pub fn render(report: &SetupReport, perf: &str) -> String {
    let mut s = String::new();
    if report.ran {
        s += &format!(
            "added {} symbol file(s) to perf's build-id cache:\n",
            report.files.len()
        );
        for f in &report.files {
            s += &format!("  {}\n", f.display());
        }
    } else {
        s += "perf is not installed; run these where it is:\n";
        for f in &report.files {
            s += &format!("  {}\n", command_line(perf, f));
        }
    }
    s
}
