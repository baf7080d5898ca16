//! scikit-learn's 8×8 handwritten digits, embedded in the crate, and a reader for files in
//! the same CSV format.

use std::path::Path;

use stograd::Scalar;

use super::file::Source;
use super::{DataError, Dataset};
use crate::Result;

/// The embedded file, byte for byte scikit-learn's `sklearn/datasets/data/digits.csv.gz`.
static DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// The name the embedded file goes by in messages.
const EMBEDDED_NAME: &str = "<embedded stograd-nn/data/digits.csv.gz>";

/// Side of the digit images.
const SIDE: usize = 8;
/// The largest pixel value: each pixel counts the inked pixels of a 4×4 block.
const MAX_PIXEL: u8 = 16;
/// The number of classes.
const CLASSES: usize = 10;

/// scikit-learn's 8×8 handwritten digits: 1,797 images in 10 classes, pixels `0..=16`
/// scaled to `[0, 1]` by `/16`. Embedded in the crate, so it needs no file or download.
///
/// They are the test part of the UCI "Optical Recognition of Handwritten Digits" data
/// (E. Alpaydin and C. Kaynak, 1998): 32×32 bitmaps from 13 writers, with the inked pixels
/// of each 4×4 block counted. Class counts for 0 to 9: 178 182 177 183 181 182 181 179 174
/// 180. There is no official train/test split; use [`Dataset::split`] with a seeded rng.
/// Licences: see the [module documentation](super).
///
/// # Example
/// ```
/// let digits = stograd_nn::data::digits::<f64>();
/// assert_eq!(digits.len(), 1797);
/// assert_eq!(digits.class_counts()[0], 178);
/// // The first image is a 0: its top row is 0 0 5 13 9 1 0 0 (of 16).
/// assert_eq!(digits.image(0).row(0)[3], 13.0 / 16.0);
/// ```
///
/// # Panics
/// Never in a correctly built crate: the embedded file is parsed and checked by the crate's
/// tests.
///
/// scikit-learn: `sklearn.datasets.load_digits()`, with `data / 16`.
pub fn digits<F: Scalar>() -> Dataset<F> {
    parse_digits(Source::from_bytes(Path::new(EMBEDDED_NAME), DIGITS_CSV_GZ))
        .expect("the embedded digits file is well formed")
}

/// Reads a file in the format of scikit-learn's `digits.csv.gz`, raw or gzip-compressed
/// (recognised by its magic bytes): one image per line, 65 comma-separated integers, the 64
/// pixels of an 8×8 image in row-major order (`0..=16`) and then the label (`0..=9`). Blank
/// lines are skipped.
///
/// # Errors
/// [`Error::Io`](crate::Error::Io) when the file cannot be read, [`DataError::BadGzip`] for
/// a corrupt gzip stream, [`DataError::CsvColumns`] for a line without 65 fields and
/// [`DataError::CsvField`] for a field out of range or not an integer; each names the file
/// and line.
pub fn digits_csv<F: Scalar>(path: impl AsRef<Path>) -> Result<Dataset<F>> {
    parse_digits(Source::open(path.as_ref())?)
}

/// Parses the CSV format of [`digits_csv`].
fn parse_digits<F: Scalar>(mut src: Source) -> Result<Dataset<F>> {
    let mut text = Vec::new();
    src.read_up_to(u64::MAX, &mut text)?;
    let pixels_per_image = SIDE * SIDE;
    let columns = pixels_per_image + 1;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let got = line.split(|&b| b == b',').count();
        if got != columns {
            return Err(DataError::CsvColumns {
                path: src.path().to_owned(),
                line: i + 1,
                expected: columns,
                got,
            }
            .into());
        }
        for (j, field) in line.split(|&b| b == b',').enumerate() {
            let (max, expected) = if j < pixels_per_image {
                (MAX_PIXEL, "a pixel, an integer in 0..=16")
            } else {
                (CLASSES as u8 - 1, "a label, an integer in 0..=9")
            };
            let value = std::str::from_utf8(field.trim_ascii())
                .ok()
                .and_then(|s| s.parse::<u8>().ok())
                .filter(|&v| v <= max)
                .ok_or_else(|| DataError::CsvField {
                    path: src.path().to_owned(),
                    line: i + 1,
                    column: j + 1,
                    value: String::from_utf8_lossy(field).into_owned(),
                    expected,
                })?;
            if j < pixels_per_image {
                pixels.push(value);
            } else {
                labels.push(usize::from(value));
            }
        }
    }
    Ok(Dataset::from_bytes(
        &pixels, labels, SIDE, SIDE, CLASSES, MAX_PIXEL,
    ))
}
