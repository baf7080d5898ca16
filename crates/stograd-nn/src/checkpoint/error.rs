//! What can go wrong with a checkpoint: a file that does not fit the model, a file that is not
//! valid safetensors, and names that cannot be saved.

use std::path::PathBuf;

use safetensors::{Dtype, SafeTensorError};

/// A checkpoint that does not fit the model, is malformed, or cannot be written as asked.
///
/// Loading checks the whole file before it changes anything, so after any of these errors the
/// parameters are as they were.
///
/// ```
/// use stograd::ndarray::ArrayD;
/// use stograd::Params;
/// use stograd_nn::checkpoint::{self, Checkpoint, CheckpointError};
/// use stograd_nn::Error;
///
/// let mut small = Params::<f32>::new();
/// small.insert("fc.weight", ArrayD::zeros(vec![2, 3]))?;
/// let path = std::env::temp_dir().join("stograd-nn-mismatch.safetensors");
/// checkpoint::save(&path, &small, &Checkpoint::default())?;
///
/// let mut wide = Params::<f32>::new();
/// wide.insert("fc.weight", ArrayD::zeros(vec![4, 3]))?;
/// match checkpoint::load(&path, &mut wide) {
///     Err(Error::Checkpoint(CheckpointError::WrongShape { name, expected, got, .. })) => {
///         assert_eq!((name.as_str(), expected, got), ("fc.weight", vec![4, 3], vec![2, 3]));
///     }
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The model has a parameter the checkpoint holds no tensor for.
    #[error("{}: no tensor for parameter {name:?}", path.display())]
    MissingParam {
        /// The checkpoint.
        path: PathBuf,
        /// The parameter's name.
        name: String,
    },

    /// The checkpoint holds a tensor that is not a parameter of the model. (Names with a `/`
    /// are state, never parameters, so they are not reported here.)
    #[error("{}: tensor {name:?} is not a parameter of the model", path.display())]
    UnexpectedTensor {
        /// The checkpoint.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },

    /// A tensor's shape differs from its parameter's.
    #[error("{}: tensor {name:?} has shape {got:?}, the model expects {expected:?}", path.display())]
    WrongShape {
        /// The checkpoint.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The parameter's shape.
        expected: Vec<usize>,
        /// The tensor's shape in the file.
        got: Vec<usize>,
    },

    /// A tensor's element type differs from the model's (an `F32` file loaded into
    /// `Params<f64>`, say).
    #[error("{}: tensor {name:?} holds {got} elements, expected {expected}", path.display())]
    WrongDtype {
        /// The checkpoint.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// `F32` for `Params<f32>`, `F64` for `Params<f64>`.
        expected: Dtype,
        /// The tensor's element type in the file.
        got: Dtype,
    },

    /// The file is not a valid safetensors file: truncated, or with a header that does not
    /// describe its bytes.
    #[error("{}: not a valid checkpoint: {problem}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        problem: Corruption,
    },

    /// A state was asked for that the checkpoint does not hold
    /// ([`Checkpoint::take_state`](super::Checkpoint::take_state)).
    #[error("the checkpoint holds no state named {name:?} (it holds {available:?})")]
    MissingState {
        /// The state asked for.
        name: String,
        /// The states the checkpoint holds.
        available: Vec<String>,
    },

    /// A name cannot be saved: an empty state name or one with a `/`, a metadata key in the
    /// reserved `state/` namespace, or a parameter called `__metadata__`.
    #[error("{}: cannot save {name:?}: {reason}", path.display())]
    InvalidName {
        /// The checkpoint being written.
        path: PathBuf,
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The header (tensor table and metadata) would be longer than safetensors readers
    /// accept.
    #[error(
        "{}: the header would take {header_len} bytes, over the safetensors limit of {limit}",
        path.display()
    )]
    HeaderTooLarge {
        /// The checkpoint being written.
        path: PathBuf,
        /// The header's length in bytes.
        header_len: u64,
        /// The largest header readers accept.
        limit: u64,
    },

    /// Checkpoints hold `f32` or `f64` arrays; the scalar type is neither.
    #[error("checkpoints hold f32 or f64 arrays, not {scalar}")]
    UnsupportedScalar {
        /// The scalar type's name.
        scalar: &'static str,
    },
}

/// What makes a file an invalid checkpoint (see [`CheckpointError::Corrupt`]).
///
/// A safetensors file is an 8-byte little-endian header length `n`, `n` bytes of JSON that
/// give each tensor's dtype, shape and `data_offsets` (relative to the end of the header) and
/// an optional `__metadata__` map of strings, then the tensors' bytes, back to back.
///
/// ```
/// use stograd::Params;
/// use stograd_nn::checkpoint::{self, CheckpointError, Corruption};
/// use stograd_nn::Error;
///
/// let path = std::env::temp_dir().join("stograd-nn-corrupt.safetensors");
/// std::fs::write(&path, b"\x03").unwrap(); // not even the 8-byte header length
/// let err = checkpoint::load(&path, &mut Params::<f32>::new()).unwrap_err();
/// assert!(matches!(
///     err,
///     Error::Checkpoint(CheckpointError::Corrupt { problem: Corruption::TooShort { .. }, .. })
/// ));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// The file is shorter than the 8 bytes of the header length.
    #[error("the file has {len} bytes, fewer than the 8 of the header length")]
    TooShort {
        /// The file's length.
        len: u64,
    },

    /// The header length runs past the end of the file.
    #[error("the header length is {header_len} bytes but only {available} follow it")]
    HeaderBeyondFile {
        /// The header length the file declares.
        header_len: u64,
        /// The bytes after the 8-byte length.
        available: u64,
    },

    /// The header length is over the limit safetensors readers accept.
    #[error("the header length is {header_len} bytes, over the limit of {limit}")]
    HeaderTooLarge {
        /// The header length the file declares.
        header_len: u64,
        /// The largest header readers accept.
        limit: u64,
    },

    /// The header is not UTF-8.
    #[error("the header is not UTF-8: {source}")]
    HeaderNotUtf8 {
        /// Where the first invalid byte is.
        source: std::str::Utf8Error,
    },

    /// The header is not JSON of the safetensors shape (a tensor table whose entries have
    /// a known `dtype`, a `shape` and two `data_offsets`, and a `__metadata__` map of strings).
    #[error("the header is not a safetensors table: {source}")]
    HeaderNotJson {
        /// What the JSON parser said, with the line and column.
        source: serde_json::Error,
    },

    /// A tensor's data offsets leave a gap, overlap the previous tensor's or end before they
    /// start. Sorted by offset, each tensor must start where the previous one ends.
    #[error(
        "tensor {tensor:?} has data offsets [{start}, {end}] but must start at {expected_start} \
         (where the previous tensor ends) and end no earlier"
    )]
    Offsets {
        /// The tensor.
        tensor: String,
        /// Its first byte, relative to the end of the header.
        start: u64,
        /// One past its last byte.
        end: u64,
        /// Where the previous tensor ends (0 for the first).
        expected_start: u64,
    },

    /// A tensor's shape has more elements than can be addressed.
    #[error("tensor {tensor:?} of {dtype} and shape {shape:?} is larger than memory can address")]
    SizeOverflow {
        /// The tensor.
        tensor: String,
        /// Its element type.
        dtype: Dtype,
        /// Its shape.
        shape: Vec<usize>,
    },

    /// A tensor's byte count does not match its dtype and shape.
    #[error("tensor {tensor:?} of {dtype} and shape {shape:?} needs {expected} bytes, has {bytes}")]
    ByteCount {
        /// The tensor.
        tensor: String,
        /// Its element type.
        dtype: Dtype,
        /// Its shape.
        shape: Vec<usize>,
        /// The bytes its offsets span.
        bytes: u64,
        /// The bytes its dtype and shape need.
        expected: u64,
    },

    /// The tensors' bytes do not end where the file does.
    #[error("the tensors span {declared} bytes after the header, the file has {actual}")]
    DataLength {
        /// Where the last tensor ends.
        declared: u64,
        /// The bytes after the header.
        actual: u64,
    },

    /// A state's numbers (the `state/NAME` metadata entry) are not a JSON object of strings.
    #[error("the values of state {state:?} are not a JSON object of strings: {source}")]
    StateValues {
        /// The state.
        state: String,
        /// What the JSON parser said.
        source: serde_json::Error,
    },

    /// A state's number is not a decimal (nor `NaN`, `inf` or `-inf`).
    #[error("value {key:?} of state {state:?} is {value:?}, not a number")]
    StateValue {
        /// The state.
        state: String,
        /// The value's key.
        key: String,
        /// The text found.
        value: String,
    },

    /// The safetensors reader rejects the file for a reason none of the other variants
    /// describe (sub-byte dtypes whose tensors end inside a byte, say).
    #[error("safetensors rejects it: {source}")]
    Rejected {
        /// The reader's error.
        source: SafeTensorError,
    },
}
