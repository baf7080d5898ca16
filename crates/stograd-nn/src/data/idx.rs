//! The IDX format of MNIST and Fashion-MNIST: a reader and an atomic writer.
//!
//! An IDX file is a 4-byte magic number `00 00 type rank`, then `rank` big-endian `u32`
//! dimensions, then the elements in row-major order. MNIST's image files have type `0x08`
//! (unsigned byte) and rank 3 (`[n, 28, 28]`), its label files type `0x08` and rank 1
//! (`[n]`). Files may be gzip-compressed; [`read`] recognises gzip by its magic bytes
//! `1f 8b`, not by the file name.

use std::io::Write;
use std::path::Path;

use ndarray::{ArrayD, ArrayRef, Dimension, IxDyn};

use super::DataError;
use super::file::{Source, write_atomic};
use crate::Result;

/// The IDX type code of unsigned bytes, the only element type supported.
pub const UNSIGNED_BYTE: u8 = 0x08;

/// The largest preallocation made from a header's claim, so that a corrupt header cannot
/// make the reader reserve more memory than the file holds.
const MAX_PREALLOCATION: u64 = 1 << 26;

/// Reads an IDX file of unsigned bytes, raw or gzip-compressed, into an array of its shape.
///
/// # Example
/// ```
/// use stograd::ndarray::{Array3, ArrayD};
/// use stograd_nn::data::idx;
///
/// let dir = std::env::temp_dir().join(format!("stograd-idx-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let images = Array3::from_shape_fn((2, 3, 4), |(i, r, c)| (i * 12 + r * 4 + c) as u8);
/// let path = dir.join("images-idx3-ubyte.gz"); // `.gz`: written compressed
/// idx::write(&path, &images)?;
///
/// let back: ArrayD<u8> = idx::read(&path)?;
/// assert_eq!(back.shape(), [2, 3, 4]);
/// assert_eq!(back, images.into_dyn());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// - [`Error::Io`](crate::Error::Io) when the file cannot be opened or read;
/// - [`DataError::BadGzip`] for a truncated or corrupt gzip stream;
/// - [`DataError::BadMagic`] when the first two bytes are not zero;
/// - [`DataError::UnsupportedType`] for an element type other than unsigned bytes;
/// - [`DataError::Truncated`] when the file ends before the magic number, the dimensions or
///   the data the dimensions announce;
/// - [`DataError::TrailingBytes`] when bytes follow that data;
/// - [`DataError::TooLarge`] when the dimensions overflow `usize`.
///
/// Every one names the file.
pub fn read(path: impl AsRef<Path>) -> Result<ArrayD<u8>> {
    parse(Source::open(path.as_ref())?)
}

/// Parses an IDX stream.
fn parse(mut src: Source) -> Result<ArrayD<u8>> {
    let mut magic = [0u8; 4];
    let got = src.read_full(&mut magic)?;
    if got < magic.len() {
        return Err(truncated(&src, "magic number", 4, got as u64));
    }
    if magic[..2] != [0, 0] {
        return Err(DataError::BadMagic {
            path: src.path().to_owned(),
            found: magic,
        }
        .into());
    }
    if magic[2] != UNSIGNED_BYTE {
        return Err(DataError::UnsupportedType {
            path: src.path().to_owned(),
            code: magic[2],
        }
        .into());
    }

    let rank = usize::from(magic[3]);
    let header_len = 4 + 4 * rank as u64;
    let mut raw_dims = vec![0u8; 4 * rank];
    let got = src.read_full(&mut raw_dims)?;
    if got < raw_dims.len() {
        return Err(truncated(&src, "dimensions", header_len, 4 + got as u64));
    }
    let dims: Vec<usize> = raw_dims
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let len = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= isize::MAX as usize)
        .ok_or_else(|| DataError::TooLarge {
            path: src.path().to_owned(),
            dims: dims.clone(),
        })?;

    let expected = header_len + len as u64;
    let mut data = Vec::with_capacity(len.min(MAX_PREALLOCATION as usize));
    let got = src.read_up_to(len as u64, &mut data)?;
    if got < len {
        return Err(truncated(&src, "data", expected, header_len + got as u64));
    }
    let rest = src.count_rest()?;
    if rest > 0 {
        return Err(DataError::TrailingBytes {
            path: src.path().to_owned(),
            expected_bytes: expected,
            got_bytes: expected + rest,
        }
        .into());
    }
    Ok(ArrayD::from_shape_vec(IxDyn(&dims), data).expect("the length is the product of dims"))
}

/// A [`DataError::Truncated`] for the source.
fn truncated(src: &Source, what: &'static str, expected: u64, got: u64) -> crate::Error {
    DataError::Truncated {
        path: src.path().to_owned(),
        what,
        expected_bytes: expected,
        got_bytes: got,
    }
    .into()
}

/// Writes an array of bytes as an IDX file (type `0x08`, rank and dimensions from the
/// array's shape), gzip-compressed when `path` ends in `.gz`.
///
/// The write is atomic: the bytes go to a temporary file in the same directory, which is
/// flushed, synced and renamed over `path`. A reader never sees a partial file, and on
/// failure `path` keeps its old content.
///
/// See [`read`] for an example.
///
/// # Errors
/// [`DataError::Unwritable`] when the array has more than 255 dimensions or a dimension
/// above `u32::MAX`; [`Error::Io`](crate::Error::Io) when the file cannot be written.
pub fn write<D: Dimension>(path: impl AsRef<Path>, array: &ArrayRef<u8, D>) -> Result<()> {
    let path = path.as_ref();
    let unwritable = |reason| DataError::Unwritable {
        path: path.to_owned(),
        dims: array.shape().to_vec(),
        reason,
    };
    let rank = u8::try_from(array.ndim()).map_err(|_| unwritable("more than 255 dimensions"))?;
    let mut header = vec![0, 0, UNSIGNED_BYTE, rank];
    for &d in array.shape() {
        let d = u32::try_from(d).map_err(|_| unwritable("a dimension above u32::MAX"))?;
        header.extend_from_slice(&d.to_be_bytes());
    }
    let data = array.as_standard_layout();
    let bytes = data.as_slice().expect("standard layout is contiguous");
    write_atomic(path, |out: &mut dyn Write| {
        out.write_all(&header)?;
        out.write_all(bytes)
    })
}
