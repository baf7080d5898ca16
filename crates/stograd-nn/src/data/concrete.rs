//! The UCI concrete compressive strength data (Yeh 1998), embedded in the crate, and a
//! reader for files in the same CSV format.

use std::path::Path;

use ndarray::{Array1, Array2};
use stograd::Scalar;

use super::DataError;
use super::file::Source;
use crate::Result;

/// The embedded file: `shared/data/concrete/concrete.csv`, gzip-compressed.
static CONCRETE_CSV_GZ: &[u8] = include_bytes!("../../data/concrete.csv.gz");

/// The name the embedded file goes by in messages.
const EMBEDDED_NAME: &str = "<embedded stograd-nn/data/concrete.csv.gz>";

/// The columns of the file: eight inputs, then the target.
pub const CONCRETE_COLUMNS: [&str; 9] = [
    "cement",
    "blast_furnace_slag",
    "fly_ash",
    "water",
    "superplasticizer",
    "coarse_aggregate",
    "fine_aggregate",
    "age",
    "compressive_strength",
];

/// The concrete compressive strength data, the UCI regression set of the Bayesian neural
/// network benchmarks (Hernández-Lobato & Adams 2015, Gal & Ghahramani 2016): 1,030
/// mixtures, 8 inputs (seven ingredients in kg per m³ of mixture, and the age in days) and
/// the compressive strength in MPa (2.33 to 82.60, mean 35.82), unscaled. Embedded in the
/// crate (10 kB compressed).
///
/// I-Cheng Yeh, "Modeling of strength of high performance concrete using artificial neural
/// networks", Cement and Concrete Research 28(12), 1998; licensed CC BY 4.0 by the UCI
/// repository. This copy is the `concrete` data of the R package `modeldata` 1.1.0 (MIT),
/// which ships the target with 2 decimals; `data/README.md` in the crate has the details.
///
/// # Example
/// ```
/// let (x, y) = stograd_nn::data::concrete::<f64>();
/// assert_eq!((x.dim(), y.len()), ((1030, 8), 1030));
/// // the first mixture: 540 kg of cement, …, 28 days old, 79.99 MPa
/// assert_eq!((x[[0, 0]], x[[0, 7]], y[0]), (540.0, 28.0, 79.99));
/// ```
///
/// # Panics
/// Never in a correctly built crate: the embedded file is parsed by the crate's tests.
pub fn concrete<F: Scalar>() -> (Array2<F>, Array1<F>) {
    parse(Source::from_bytes(
        Path::new(EMBEDDED_NAME),
        CONCRETE_CSV_GZ,
    ))
    .expect("the embedded concrete file is well formed")
}

/// Reads a file in the format of [`concrete`], raw or gzip-compressed: a header line naming
/// the nine [`CONCRETE_COLUMNS`] (quoted or not), then one mixture per line, nine numbers.
/// Blank lines are skipped.
///
/// # Errors
/// [`Error::Io`](crate::Error::Io) when the file cannot be read, [`DataError::BadGzip`] for
/// a corrupt gzip stream, [`DataError::CsvColumns`] for a line without 9 fields and
/// [`DataError::CsvField`] for a header that is not the expected one or a field that is not
/// a finite number; each names the file and line.
pub fn concrete_csv<F: Scalar>(path: impl AsRef<Path>) -> Result<(Array2<F>, Array1<F>)> {
    parse(Source::open(path.as_ref())?)
}

fn parse<F: Scalar>(mut src: Source) -> Result<(Array2<F>, Array1<F>)> {
    let mut text = Vec::new();
    src.read_up_to(u64::MAX, &mut text)?;
    let columns = CONCRETE_COLUMNS.len();
    let (mut inputs, mut targets) = (Vec::new(), Vec::new());
    let lines = text
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.trim_ascii().is_empty());
    for (k, (i, line)) in lines.enumerate() {
        let fields: Vec<&[u8]> = line.split(|&b| b == b',').collect();
        if fields.len() != columns {
            return Err(DataError::CsvColumns {
                path: src.path().to_owned(),
                line: i + 1,
                expected: columns,
                got: fields.len(),
            }
            .into());
        }
        let field_error = |j: usize, expected: &'static str| DataError::CsvField {
            path: src.path().to_owned(),
            line: i + 1,
            column: j + 1,
            value: String::from_utf8_lossy(fields[j]).into_owned(),
            expected,
        };
        if k == 0 {
            for (j, name) in CONCRETE_COLUMNS.iter().enumerate() {
                let got = fields[j].trim_ascii();
                let got = got
                    .strip_prefix(b"\"")
                    .and_then(|g| g.strip_suffix(b"\""))
                    .unwrap_or(got);
                if got != name.as_bytes() {
                    return Err(field_error(j, "the header of the concrete columns").into());
                }
            }
            continue;
        }
        for (j, field) in fields.iter().enumerate() {
            let value = std::str::from_utf8(field.trim_ascii())
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .filter(|v| v.is_finite())
                .ok_or_else(|| field_error(j, "a finite number"))?;
            if j + 1 < columns {
                inputs.push(F::from_f64(value));
            } else {
                targets.push(F::from_f64(value));
            }
        }
    }
    let rows = targets.len();
    let inputs = Array2::from_shape_vec((rows, columns - 1), inputs).expect("8 inputs per row");
    Ok((inputs, Array1::from(targets)))
}
