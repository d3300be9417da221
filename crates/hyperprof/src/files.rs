//! Files the CLI reads and writes, made safe against what a user may hand it.
//!
//! Inputs are opened without blocking (a FIFO with no writer would block the
//! open itself) and must be regular files: FIFOs, sockets and devices are
//! refused with their type, so nothing hangs or reads forever. Small inputs
//! (scenarios, report.json) have a size limit checked before reading.
//!
//! Outputs are written to a new temporary file beside the target, synced and
//! renamed over it; a target that exists and is not a regular file (a
//! device, FIFO, socket, symbolic link or directory) is refused and left
//! alone. Write errors (ENOSPC, EIO) are errors.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The largest scenario file or report.json read (16 MiB): no sane one comes
/// near it.
pub const SMALL_FILE_LIMIT: u64 = 16 << 20;

/// What kind of file `m` describes, in words.
pub fn kind(m: &Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading if it is a regular file. The open does not
/// block (O_NONBLOCK), and the type is checked on the opened file (fstat),
/// so a FIFO, socket or device is refused at once.
pub fn open_input(path: &Path) -> Result<(File, Metadata)> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let m = f.metadata().map_err(|e| Error::io(path, e))?;
    if !m.is_file() {
        return Err(Error::Usage(format!(
            "{}: is {}; only regular files are read",
            path.display(),
            kind(&m)
        )));
    }
    Ok((f, m))
}

/// Reads a regular file of at most [`SMALL_FILE_LIMIT`] bytes as UTF-8 text.
pub fn read_small_text(path: &Path) -> Result<String> {
    let (f, m) = open_input(path)?;
    if m.len() > SMALL_FILE_LIMIT {
        return Err(Error::Usage(format!(
            "{}: is {} bytes; files over {} bytes (16 MiB) are refused",
            path.display(),
            m.len(),
            SMALL_FILE_LIMIT
        )));
    }
    let mut bytes = Vec::with_capacity(m.len() as usize);
    // The file may grow after the check: read no more than the limit allows.
    f.take(SMALL_FILE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > SMALL_FILE_LIMIT {
        return Err(Error::Usage(format!(
            "{}: grew past {} bytes (16 MiB) while read; refused",
            path.display(),
            SMALL_FILE_LIMIT
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        Error::malformed(
            path,
            format!(
                "byte offset {:#x}: not UTF-8 text",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Refuses an output target that exists and is not a regular file.
pub fn check_output_target(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(()),
        Ok(m) => Err(Error::output(
            path,
            format!(
                "is {}; only a regular file is replaced, so it was left alone",
                kind(&m)
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::output(path, e)),
    }
}

/// A temporary file beside `out` that no other file has: `.NAME.PID.N.tmp`.
fn create_temp(out: &Path) -> Result<(PathBuf, File)> {
    let name = out
        .file_name()
        .ok_or_else(|| Error::output(out, "has no file name"))?;
    for n in 0..1000u32 {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.{n}.tmp", std::process::id()));
        let tmp = out.with_file_name(tmp_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::output(out, e)),
        }
    }
    Err(Error::output(out, "no free temporary name beside it"))
}

/// Writes `out` through `fill`, which writes the contents to the given file:
/// into a new temporary file beside `out`, synced, then renamed over `out`.
/// `out` must not exist or be a regular file. On any failure the temporary
/// file is removed, `out` is untouched, and the error names `out` (write
/// failures as [`Error::Output`]; errors `fill` returns as they are).
pub fn write_with(
    out: &Path,
    fill: &mut dyn FnMut(&mut std::io::BufWriter<&File>) -> Result<()>,
) -> Result<()> {
    check_output_target(out)?;
    let (tmp, file) = create_temp(out)?;
    let result = (|| {
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, &file);
            fill(&mut w)?;
            w.flush().map_err(|e| Error::output(out, e))?;
        }
        file.sync_all().map_err(|e| Error::output(out, e))?;
        // Checked again just before the rename: the target may have become
        // something else while the file was written.
        check_output_target(out)?;
        std::fs::rename(&tmp, out).map_err(|e| Error::output(out, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `out` safely (see [`write_with`]).
pub fn write_atomically(out: &Path, bytes: &[u8]) -> Result<()> {
    write_with(out, &mut |w| {
        w.write_all(bytes).map_err(|e| Error::output(out, e))
    })
}

/// Creates the artifact directory `dir` for a run. An existing directory
/// that holds anything is refused unless `force` (a previous run's results
/// are not replaced silently); a path that exists and is not a directory is
/// refused always.
pub fn prepare_out_dir(dir: &Path, force: bool) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            let mut entries = std::fs::read_dir(dir).map_err(|e| Error::output(dir, e))?;
            if entries.next().is_some() && !force {
                return Err(Error::output(
                    dir,
                    "exists and is not empty (a previous run?); pass --force to overwrite its files, or choose another --out",
                ));
            }
            Ok(())
        }
        Ok(m) => Err(Error::output(
            dir,
            format!("is {}, not a directory", kind(&m)),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| Error::output(dir, e))
        }
        Err(e) => Err(Error::output(dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hyperprof-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn directories_and_devices_are_not_inputs() {
        let e = open_input(Path::new("/dev/null")).unwrap_err().to_string();
        assert!(e.contains("/dev/null: is a character device"), "{e}");
        let e = open_input(Path::new("/")).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
    }

    #[test]
    fn outputs_replace_regular_files_only() {
        let d = tmpdir("out");
        let f = d.join("a.txt");
        write_atomically(&f, b"one").unwrap();
        write_atomically(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        let link = d.join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let e = write_atomically(&link, b"x").unwrap_err();
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        assert_eq!(e.exit_status().code(), 4);
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        let e = write_atomically(&d, b"x").unwrap_err();
        assert!(e.to_string().contains("has no file name") || e.to_string().contains("directory"));
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_the_target_and_no_temporary_file() {
        let d = tmpdir("fail");
        let f = d.join("keep.data");
        std::fs::write(&f, b"old").unwrap();
        let e = write_with(&f, &mut |w| {
            w.write_all(b"half").unwrap();
            Err(Error::output(
                "keep.data",
                std::io::Error::from_raw_os_error(libc::ENOSPC),
            ))
        })
        .unwrap_err();
        assert_eq!(e.exit_status().code(), 4);
        assert!(e.to_string().contains("No space left on device"), "{e}");
        assert_eq!(std::fs::read(&f).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_used_out_dir_needs_force() {
        let d = tmpdir("force");
        prepare_out_dir(&d.join("new"), false).unwrap();
        prepare_out_dir(&d.join("new"), false).unwrap();
        std::fs::write(d.join("new/report.json"), "{}").unwrap();
        let e = prepare_out_dir(&d.join("new"), false).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        prepare_out_dir(&d.join("new"), true).unwrap();
        let e = prepare_out_dir(&d.join("new/report.json"), true).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
