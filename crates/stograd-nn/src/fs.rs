//! Replacing a file so that a crash at any moment leaves either the old file or the new one,
//! never a mix: write a temporary file beside it, flush, fsync, rename it over the target,
//! then fsync the directory so the rename itself is durable.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

/// Numbers the temporary files of this process, so concurrent saves never share one.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// Writes `path` anew with `write`, atomically.
///
/// The bytes go to `.NAME.PID.N.tmp` in the same directory (a rename is atomic only within
/// one file system); on any failure that file is removed and `path` is untouched. A process
/// killed mid-write leaves at most a stale temporary file, which later saves step around.
///
/// # Example
/// ```
/// use std::io::Write;
///
/// let path = std::env::temp_dir().join("stograd-nn-fs-example.csv");
/// stograd_nn::fs::write_atomic(&path, |out| out.write_all(b"epoch,loss\n1,0.5\n"))?;
/// assert_eq!(std::fs::read_to_string(&path).unwrap(), "epoch,loss\n1,0.5\n");
/// # Ok::<(), stograd_nn::Error>(())
/// ```
///
/// # Errors
/// [`Error::Io`] naming `path` (or its directory) when a step fails.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    let file_name = path.file_name().ok_or_else(|| {
        let e = io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file");
        Error::io(path, e)
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let (temp, file) = create_temp(dir, file_name).map_err(|e| Error::io(dir, e))?;
    if let Err(e) = fill(file, write).and_then(|()| fs::rename(&temp, path)) {
        // Best effort: a stale temporary file is harmless, the error that matters is `e`.
        let _ = fs::remove_file(&temp);
        return Err(Error::io(path, e));
    }
    sync_dir(dir).map_err(|e| Error::io(dir, e))
}

fn create_temp(dir: &Path, file_name: &std::ffi::OsStr) -> io::Result<(PathBuf, File)> {
    for _ in 0..1000 {
        let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
        let mut name = OsString::from(".");
        name.push(file_name);
        name.push(format!(".{}.{n}.tmp", std::process::id()));
        let temp = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::ErrorKind::AlreadyExists.into())
}

/// Writes, flushes and fsyncs the file, so its bytes are on disk before the rename.
fn fill(file: File, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let mut out = BufWriter::new(file);
    write(&mut out)?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        // Some file systems cannot fsync a directory; the rename has happened all the same.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Windows cannot open a directory as a file; NTFS journals the rename itself.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A writer that accepts `budget` bytes and then fails, as a full disk or a crash would.
    pub(crate) struct FailAfter<'a> {
        pub inner: &'a mut dyn Write,
        pub budget: usize,
    }

    impl Write for FailAfter<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::Error::other("injected failure"));
            }
            let n = buf.len().min(self.budget);
            self.budget -= n;
            self.inner.write(&buf[..n])
        }

        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }

    /// A fresh, empty directory for one test.
    pub(crate) fn scratch_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "stograd-nn-checkpoint-{}-{test}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("the temporary directory is writable");
        dir
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_failure_after_any_number_of_bytes_leaves_the_old_file_and_no_temporary() {
        let dir = scratch_dir("atomic-fail");
        let path = dir.join("last.bin");
        write_atomic(&path, |out| out.write_all(b"old contents")).unwrap();
        let new = vec![7u8; 40];
        for budget in 0..new.len() {
            let err = write_atomic(&path, |out| {
                FailAfter { inner: out, budget }.write_all(&new)
            })
            .unwrap_err();
            assert!(matches!(err, Error::Io { .. }), "{err:?}");
            assert_eq!(fs::read(&path).unwrap(), b"old contents", "budget {budget}");
            assert_eq!(entries(&dir), ["last.bin"], "budget {budget}");
        }
        write_atomic(&path, |out| out.write_all(&new)).unwrap();
        assert_eq!(fs::read(&path).unwrap(), new);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stale_temporaries_of_a_killed_process_are_stepped_around() {
        let dir = scratch_dir("atomic-stale");
        let path = dir.join("last.bin");
        let next = NEXT_TEMP.load(Ordering::Relaxed);
        for n in next..next + 3 {
            let stale = dir.join(format!(".last.bin.{}.{n}.tmp", std::process::id()));
            fs::write(stale, b"half a checkpoint").unwrap();
        }
        write_atomic(&path, |out| out.write_all(b"new")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_path_without_a_file_name_is_an_io_error() {
        let err = write_atomic(Path::new("/"), |_| Ok(())).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
    }
}
