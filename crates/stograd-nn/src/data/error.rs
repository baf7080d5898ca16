//! [`DataError`]: malformed data files and inconsistent datasets. Each variant names the file
//! (where there is one) and carries the values that were wrong.

use std::fmt;
use std::path::{Path, PathBuf};

/// A malformed data file, or arrays that do not make a dataset.
///
/// It reaches callers as [`Error::Data`](crate::Error::Data).
///
/// ```
/// use stograd_nn::data::{idx, DataError};
/// use stograd_nn::Error;
///
/// let path = std::env::temp_dir().join("stograd-nn-not-idx");
/// std::fs::write(&path, b"GIF89a, not an IDX file").unwrap();
/// match idx::read(&path) {
///     Err(Error::Data(DataError::BadMagic { found, .. })) => assert_eq!(&found, b"GIF8"),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The first two bytes of an IDX file are not zero, so it is not an IDX file.
    #[error(
        "{}: not an IDX file: magic bytes {found:02x?}, expected [00, 00, type, rank]",
        path.display()
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// Its first four bytes (after gzip decompression).
        found: [u8; 4],
    },

    /// The IDX element type is not unsigned bytes (`0x08`), the only one supported.
    #[error(
        "{}: IDX element type 0x{code:02x} ({}) is not supported; only 0x08 (unsigned byte) is",
        path.display(),
        idx_type_name(*code)
    )]
    UnsupportedType {
        /// The file.
        path: PathBuf,
        /// The type code, the third byte of the file.
        code: u8,
    },

    /// The file ends before the size its header announces.
    #[error(
        "{}: truncated in the {what}: expected {expected_bytes} bytes, the file has {got_bytes}",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The part that is cut short: `"magic number"`, `"dimensions"` or `"data"`.
        what: &'static str,
        /// The (decompressed) length needed to read that part in full.
        expected_bytes: u64,
        /// The (decompressed) length of the file.
        got_bytes: u64,
    },

    /// The file goes on after the data its header announces.
    #[error(
        "{}: {} trailing bytes: the header announces {expected_bytes} bytes, the file has \
         {got_bytes}",
        path.display(),
        got_bytes - expected_bytes
    )]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// The (decompressed) length the header announces, header included.
        expected_bytes: u64,
        /// The (decompressed) length of the file.
        got_bytes: u64,
    },

    /// The dimensions in the header multiply to more elements than memory can address.
    #[error("{}: IDX dimensions {dims:?} are too large to load", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The dimensions read from the header.
        dims: Vec<usize>,
    },

    /// The file starts like gzip (`1f 8b`) but does not decompress: it is truncated or
    /// corrupt.
    #[error("{}: corrupt or truncated gzip stream: {source}", path.display())]
    BadGzip {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        source: std::io::Error,
    },

    /// An IDX file has the wrong number of dimensions for what it holds.
    #[error("{}: {what} need {expected} IDX dimensions, the file has {got}", path.display())]
    WrongRank {
        /// The file.
        path: PathBuf,
        /// What the file should hold, e.g. `"images"`.
        what: &'static str,
        /// The rank required.
        expected: usize,
        /// The rank in the file.
        got: usize,
    },

    /// Dimensions that must agree with another file's do not.
    #[error("{}: {what}: expected {expected:?}, got {got:?}", path.display())]
    DimsMismatch {
        /// The file.
        path: PathBuf,
        /// Which dimensions, e.g. `"image height and width (as in the training images)"`.
        what: &'static str,
        /// The dimensions required.
        expected: Vec<usize>,
        /// The dimensions in the file.
        got: Vec<usize>,
    },

    /// An image file and its label file hold different numbers of examples.
    #[error(
        "{} holds {images_len} images but {} holds {labels_len} labels",
        images.display(),
        labels.display()
    )]
    CountMismatch {
        /// The image file.
        images: PathBuf,
        /// The label file.
        labels: PathBuf,
        /// The number of images.
        images_len: usize,
        /// The number of labels.
        labels_len: usize,
    },

    /// A label in a file is not a class index.
    #[error(
        "{}: label {label} of example {index} is out of range for {classes} classes",
        path.display()
    )]
    LabelOutOfRange {
        /// The file.
        path: PathBuf,
        /// The example's position in the file.
        index: usize,
        /// The label read.
        label: usize,
        /// The number of classes; labels must be below it.
        classes: usize,
    },

    /// None of the names a file may have exists.
    #[error("no such file: tried {}", Paths(tried))]
    MissingFile {
        /// The paths tried, in order.
        tried: Vec<PathBuf>,
    },

    /// A CSV line has the wrong number of fields.
    #[error("{}:{line}: expected {expected} comma-separated fields, got {got}", path.display())]
    CsvColumns {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// The number of fields required.
        expected: usize,
        /// The number of fields on the line.
        got: usize,
    },

    /// A CSV field is not a value the format allows.
    #[error("{}:{line}: field {column} is {value:?}, expected {expected}", path.display())]
    CsvField {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// The field, from 1.
        column: usize,
        /// The field's text.
        value: String,
        /// What it must be, e.g. `"an integer in 0..=16"`.
        expected: &'static str,
    },

    /// An array cannot be written as an IDX file: rank above 255 or a dimension above
    /// `u32::MAX`.
    #[error("{}: shape {dims:?} cannot be written as IDX: {reason}", path.display())]
    Unwritable {
        /// The file.
        path: PathBuf,
        /// The array's shape.
        dims: Vec<usize>,
        /// Which IDX limit it breaks.
        reason: &'static str,
    },

    /// [`Dataset::new`](super::Dataset::new): the image matrix and the labels differ in
    /// length, or the rows are not `height × width` pixels.
    #[error(
        "a dataset of {height}×{width} images needs images of shape [n, {}] and n labels; got \
         images {images:?} and {labels} labels",
        height * width
    )]
    DatasetShape {
        /// The shape of the image matrix.
        images: [usize; 2],
        /// The number of labels.
        labels: usize,
        /// The image height.
        height: usize,
        /// The image width.
        width: usize,
    },

    /// [`Dataset::new`](super::Dataset::new): a pixel is outside `[0, 1]` (or NaN).
    #[error("pixel {column} of image {row} is {value}, outside [0, 1]")]
    PixelOutOfRange {
        /// The image.
        row: usize,
        /// The pixel in the image's row-major order.
        column: usize,
        /// The value.
        value: f64,
    },

    /// [`Dataset::new`](super::Dataset::new): a label is not below the number of classes.
    #[error("label {label} of example {index} is out of range for {classes} classes")]
    BadLabel {
        /// The example.
        index: usize,
        /// The label.
        label: usize,
        /// The number of classes.
        classes: usize,
    },

    /// [`Dataset::split`](super::Dataset::split) was asked for more test examples than the
    /// dataset has.
    #[error("cannot split {test_len} test examples off a dataset of {len}")]
    SplitTooLarge {
        /// The test part's requested length.
        test_len: usize,
        /// The dataset's length.
        len: usize,
    },
}

/// The name of an IDX type code, for messages.
fn idx_type_name(code: u8) -> &'static str {
    match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "i16",
        0x0C => "i32",
        0x0D => "f32",
        0x0E => "f64",
        _ => "not an IDX type",
    }
}

/// Displays paths as a comma-separated list.
struct Paths<'a>(&'a [PathBuf]);

impl fmt::Display for Paths<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, path) in self.0.iter().map(PathBuf::as_path).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", Path::display(path))?;
        }
        Ok(())
    }
}
