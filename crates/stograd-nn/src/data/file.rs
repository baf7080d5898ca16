//! Reading files that may be gzip-compressed, and writing files atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use super::DataError;
use crate::{Error, Result};

/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A file opened for reading, decompressed on the fly when it starts with the gzip magic
/// bytes (whatever its name).
pub(crate) struct Source {
    path: PathBuf,
    gzip: bool,
    reader: Box<dyn Read>,
}

impl Source {
    /// Opens `path`, sniffing its first two bytes for gzip.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let mut file = BufReader::new(File::open(path).map_err(|e| Error::io(path, e))?);
        let mut head = [0u8; 2];
        let n = read_full(&mut file, &mut head).map_err(|e| Error::io(path, e))?;
        let gzip = head[..n] == GZIP_MAGIC;
        let stream = io::Cursor::new(head).take(n as u64).chain(file);
        let reader: Box<dyn Read> = if gzip {
            Box::new(MultiGzDecoder::new(stream))
        } else {
            Box::new(stream)
        };
        Ok(Source {
            path: path.to_owned(),
            gzip,
            reader,
        })
    }

    /// An in-memory file, gzip-compressed or not, shown in messages as `path`.
    pub(crate) fn from_bytes(path: &Path, bytes: &'static [u8]) -> Self {
        let gzip = bytes.starts_with(&GZIP_MAGIC);
        let reader: Box<dyn Read> = if gzip {
            Box::new(MultiGzDecoder::new(bytes))
        } else {
            Box::new(bytes)
        };
        Source {
            path: path.to_owned(),
            gzip,
            reader,
        }
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Fills `buf` as far as the file allows and returns how many bytes were read.
    pub(crate) fn read_full(&mut self, buf: &mut [u8]) -> Result<usize> {
        read_full(&mut self.reader, buf).map_err(|e| self.error(e))
    }

    /// Appends up to `limit` bytes to `buf` and returns how many were appended.
    pub(crate) fn read_up_to(&mut self, limit: u64, buf: &mut Vec<u8>) -> Result<usize> {
        (&mut self.reader)
            .take(limit)
            .read_to_end(buf)
            .map_err(|e| self.error(e))
    }

    /// Reads the rest of the file, keeping nothing, and returns its length.
    pub(crate) fn count_rest(&mut self) -> Result<u64> {
        io::copy(&mut self.reader, &mut io::sink()).map_err(|e| self.error(e))
    }

    /// An error met while reading: the gzip decoder's complaints become
    /// [`DataError::BadGzip`], the operating system's [`Error::Io`].
    fn error(&self, e: io::Error) -> Error {
        let decoder = matches!(
            e.kind(),
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
        );
        if self.gzip && decoder {
            DataError::BadGzip {
                path: self.path.clone(),
                source: e,
            }
            .into()
        } else {
            Error::io(&self.path, e)
        }
    }
}

/// Fills `buf` from `reader` until it is full or the reader ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Writes a file atomically: `body` writes into a temporary file in the same directory,
/// gzip-compressed when `path` ends in `.gz`; the file is flushed and synced, then renamed
/// over `path`, and the directory is synced. On failure the temporary file is removed and
/// `path` is untouched.
pub(crate) fn write_atomic(
    path: &Path,
    body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let gzip = path.extension().is_some_and(|e| e == "gz");

    let written = (|| {
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let mut out = BufWriter::new(file);
        if gzip {
            let mut gz = GzEncoder::new(&mut out, Compression::default());
            body(&mut gz)?;
            gz.finish()?;
        } else {
            body(&mut out)?;
        }
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // Best effort: the write already failed, and that is the error to report.
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    sync_dir(dir).map_err(|e| Error::io(dir, e))
}

/// Makes a rename in `dir` durable (a no-op where directories cannot be opened).
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}
