//! Reading files that may be gzip-compressed, and writing files atomically.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

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

/// Writes a file atomically ([`crate::fs::write_atomic`]), gzip-compressed when `path` ends
/// in `.gz`.
pub(crate) fn write_atomic(
    path: &Path,
    body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    let gzip = path.extension().is_some_and(|e| e == "gz");
    crate::fs::write_atomic(path, |out| {
        if gzip {
            let mut gz = GzEncoder::new(out, Compression::default());
            body(&mut gz)?;
            gz.finish().map(drop)
        } else {
            body(out)
        }
    })
}
