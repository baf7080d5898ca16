//! Checkpoints: a model's [`Params`], the state needed to resume training (an optimizer's
//! moments and step count, say) and string metadata, in one
//! [safetensors](https://huggingface.co/docs/safetensors) file.
//!
//! # The file
//!
//! A standard safetensors file, so any safetensors reader opens it:
//!
//! - each parameter is a tensor named by its parameter name (`"encoder.fc1.weight"`), with
//!   dtype `F32` for `Params<f32>` and `F64` for `Params<f64>`, the parameter's shape and its
//!   elements little-endian in row-major order; tensors follow the store's insertion order;
//! - each array of a [`StateDict`] saved as state `"optimizer"` is a tensor named
//!   `"optimizer/KEY"` (`"optimizer/exp_avg.encoder.fc1.weight"`). Parameter names never
//!   contain `/`, so the two never clash;
//! - the header's `__metadata__` map (string → string) holds the caller's
//!   [`metadata`](Checkpoint::metadata) (epoch, seed, the run's configuration as JSON, …) and,
//!   under the reserved key `"state/optimizer"`, the state's numbers as a JSON object of
//!   decimal strings (`{"lr":"0.001","step":"120.0"}`), written so they read back bit for bit.
//!
//! # From Python
//!
//! `safetensors.torch.load_file(path)` (or `safetensors.numpy.load_file`) returns every
//! tensor: the names without a `/` are the model's state dict, the others are the extra state.
//!
//! ```python
//! from safetensors import safe_open
//! from safetensors.torch import load_file
//!
//! tensors = load_file("last.safetensors")
//! model.load_state_dict({k: v for k, v in tensors.items() if "/" not in k})
//! with safe_open("last.safetensors", framework="pt") as f:
//!     epoch = int(f.metadata()["epoch"])
//! ```
//!
//! # Safety of the files
//!
//! [`save`] replaces the file atomically (a temporary file in the same directory, flushed,
//! fsynced and renamed over the target, then the directory fsynced where the platform allows):
//! a crash or a full disk mid-write leaves the previous checkpoint whole. [`load`] checks every
//! length, offset and name before it changes a parameter, and a malformed file is an error,
//! never a panic.

mod decode;
mod element;
mod encode;
mod error;
mod format;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// The element types of safetensors files, which [`CheckpointError::WrongDtype`] and
/// [`Corruption`] name (the `safetensors` crate's type, re-exported so that matching on it
/// needs no dependency of its own). stograd writes `F32` and `F64`.
pub use safetensors::Dtype;
use stograd::{Params, Scalar};

pub use self::error::{CheckpointError, Corruption};
use crate::{Error, Result, StateDict};

/// What a checkpoint holds besides the parameters: named state (an optimizer's, a baseline's,
/// a data loader's position) and string metadata.
///
/// [`save`] writes it beside the parameters; [`load`] restores the parameters in place and
/// returns it.
///
/// # Example
/// ```
/// use ndarray::ArrayD;
/// use stograd::Params;
/// use stograd_nn::StateDict;
/// use stograd_nn::checkpoint::{self, Checkpoint};
///
/// let path = std::env::temp_dir().join("stograd-nn-doc-checkpoint.safetensors");
/// let mut params = Params::<f32>::new();
/// let w = params.insert("fc1.weight", ArrayD::from_elem(vec![2, 3], 0.5))?;
///
/// let mut adam = StateDict::default();
/// adam.tensors.insert("exp_avg.fc1.weight".to_owned(), ArrayD::zeros(vec![2, 3]));
/// adam.values.insert("step".to_owned(), 120.0);
/// let extra = Checkpoint::default()
///     .with_state("optimizer", adam)
///     .with_metadata("epoch", "3");
/// checkpoint::save(&path, &params, &extra)?;
///
/// // Later, on `--resume`: the model is rebuilt, then restored.
/// params.get_mut(w).fill(0.0);
/// let mut restored = checkpoint::load(&path, &mut params)?;
/// assert_eq!(params.get(w)[[1, 2]], 0.5);
/// assert_eq!(restored.metadata["epoch"], "3");
/// assert_eq!(restored.take_state("optimizer")?.values["step"], 120.0);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint<F: Scalar> {
    /// State by name (`"optimizer"`). A name must be non-empty and free of `/`.
    pub states: BTreeMap<String, StateDict<F>>,
    /// Strings by key (`"epoch"`, `"config"`). Keys starting with `state/` are reserved.
    pub metadata: BTreeMap<String, String>,
}

impl<F: Scalar> Default for Checkpoint<F> {
    fn default() -> Self {
        Checkpoint {
            states: BTreeMap::new(),
            metadata: BTreeMap::new(),
        }
    }
}

impl<F: Scalar> Checkpoint<F> {
    /// The checkpoint with `state` stored as `name` (replacing any state of that name).
    pub fn with_state(mut self, name: impl Into<String>, state: StateDict<F>) -> Self {
        self.states.insert(name.into(), state);
        self
    }

    /// The checkpoint with metadata `key` set to `value`.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Removes and returns the state called `name`, for the object that resumes from it.
    ///
    /// # Errors
    /// [`CheckpointError::MissingState`], with the names the checkpoint holds.
    pub fn take_state(&mut self, name: &str) -> Result<StateDict<F>> {
        self.states.remove(name).ok_or_else(|| {
            CheckpointError::MissingState {
                name: name.to_owned(),
                available: self.states.keys().cloned().collect(),
            }
            .into()
        })
    }
}

/// Writes `params` and `extra` to the safetensors file `path`, atomically: until the call
/// returns `Ok`, `path` holds its previous contents whole (or nothing, if it did not exist).
///
/// The layout is described in the [module docs](self). Frozen flags are not saved.
///
/// # Example
/// ```
/// use ndarray::ArrayD;
/// use stograd::Params;
/// use stograd_nn::checkpoint::{self, Checkpoint};
///
/// let path = std::env::temp_dir().join("stograd-nn-doc-save.safetensors");
/// let mut params = Params::<f64>::new();
/// params.insert("layer.bias", ArrayD::from_elem(vec![4], 0.25))?;
/// let config = r#"{"latent":2,"lr":0.001}"#;
/// checkpoint::save(&path, &params, &Checkpoint::default().with_metadata("config", config))?;
/// assert_eq!(checkpoint::read_metadata(&path)?["config"], config);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), stograd_nn::Error>(())
/// ```
///
/// # Errors
/// - [`Error::Io`] when the file cannot be written (the previous file stays);
/// - [`CheckpointError::InvalidName`] for a state name that is empty or holds a `/`, a
///   metadata key starting with `state/`, or a parameter named `__metadata__`;
/// - [`CheckpointError::HeaderTooLarge`] when the metadata would exceed the 100 MB header
///   limit of safetensors readers;
/// - [`CheckpointError::UnsupportedScalar`] for a scalar type other than `f32` and `f64`.
pub fn save<F: Scalar>(
    path: impl AsRef<Path>,
    params: &Params<F>,
    extra: &Checkpoint<F>,
) -> Result<()> {
    let path = path.as_ref();
    let encoded = encode::encode(path, params, extra)?;
    crate::fs::write_atomic(path, |out| encoded.write_to(out))
}

/// Restores `params` from the checkpoint at `path` and returns its state and metadata.
///
/// Every parameter of `params` must have a tensor of the same name, shape and dtype, and every
/// tensor without a `/` in its name must be a parameter. All of it is checked, and every
/// tensor decoded, before any parameter changes: on an error, `params` is as it was.
/// Parameters are matched by name, so the order in which the model was built does not matter.
///
/// # Example
/// ```
/// use ndarray::ArrayD;
/// use stograd::Params;
/// use stograd_nn::checkpoint::{self, Checkpoint, CheckpointError};
/// use stograd_nn::Error;
///
/// let path = std::env::temp_dir().join("stograd-nn-doc-load.safetensors");
/// let mut params = Params::<f32>::new();
/// let w = params.insert("w", ArrayD::from_elem(vec![2, 2], 1.0))?;
/// checkpoint::save(&path, &params, &Checkpoint::default())?;
///
/// params.get_mut(w).fill(7.0);
/// checkpoint::load(&path, &mut params)?;
/// assert_eq!(params.get(w)[[0, 1]], 1.0);
///
/// // A model with another shape is refused, and left as it was.
/// let mut wider = Params::<f32>::new();
/// wider.insert("w", ArrayD::zeros(vec![2, 3]))?;
/// let err = checkpoint::load(&path, &mut wider).unwrap_err();
/// assert!(matches!(
///     err,
///     Error::Checkpoint(CheckpointError::WrongShape { ref expected, ref got, .. })
///         if expected == &[2, 3] && got == &[2, 2]
/// ));
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), stograd_nn::Error>(())
/// ```
///
/// # Errors
/// - [`Error::Io`] when the file cannot be read;
/// - [`CheckpointError::Corrupt`] when it is not a valid safetensors file (truncated, a header
///   that does not describe its bytes, malformed state numbers), with a [`Corruption`] that
///   says what is wrong;
/// - [`CheckpointError::MissingParam`], [`CheckpointError::WrongDtype`],
///   [`CheckpointError::WrongShape`] for the first parameter (in insertion order) the file
///   does not match, then [`CheckpointError::UnexpectedTensor`] for the first tensor (in file
///   order) that is not a parameter, then [`CheckpointError::WrongDtype`] for a state tensor
///   whose element type is not `F`;
/// - [`CheckpointError::UnsupportedScalar`] for a scalar type other than `f32` and `f64`.
pub fn load<F: Scalar>(path: impl AsRef<Path>, params: &mut Params<F>) -> Result<Checkpoint<F>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let file = decode::parse(&bytes).map_err(|problem| CheckpointError::Corrupt {
        path: path.to_owned(),
        problem,
    })?;
    decode::restore(path, file, params)
}

/// The metadata of the checkpoint at `path` (without the reserved `state/` entries), read
/// from the header alone: to see a run's configuration before building its model.
///
/// Only the header is checked; [`load`] checks the rest.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, [`CheckpointError::Corrupt`] when its header is
/// truncated or malformed.
pub fn read_metadata(path: impl AsRef<Path>) -> Result<BTreeMap<String, String>> {
    let path = path.as_ref();
    let corrupt = |problem| {
        Error::from(CheckpointError::Corrupt {
            path: path.to_owned(),
            problem,
        })
    };
    let io = |e| Error::io(path, e);
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut prefix = [0u8; 8];
    if len < 8 {
        return Err(corrupt(Corruption::TooShort { len }));
    }
    file.read_exact(&mut prefix).map_err(io)?;
    let header_len = decode::header_len(prefix, len - 8).map_err(corrupt)?;
    let mut header = Vec::with_capacity(header_len);
    file.take(header_len as u64)
        .read_to_end(&mut header)
        .map_err(io)?;
    let mut metadata = decode::parse_header_metadata(&header).map_err(corrupt)?;
    metadata.retain(|key, _| !key.starts_with(format::STATE_VALUES_PREFIX));
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Write;

    use ndarray::ArrayD;

    use super::*;
    use crate::fs::tests::{FailAfter, scratch_dir};

    fn model(fill: f32) -> Params<f32> {
        let mut params = Params::new();
        params
            .insert("fc.weight", ArrayD::from_elem(vec![3, 2], fill))
            .unwrap();
        params
            .insert("fc.bias", ArrayD::from_elem(vec![3], -fill))
            .unwrap();
        params
    }

    #[test]
    fn a_save_interrupted_after_any_byte_leaves_the_previous_checkpoint_loadable() {
        let dir = scratch_dir("interrupted");
        let path = dir.join("last.safetensors");
        let extra = Checkpoint::default().with_metadata("epoch", "1");
        save(&path, &model(1.0), &extra).unwrap();

        let newer = model(2.0);
        let newer_extra = Checkpoint::default().with_metadata("epoch", "2");
        let encoded = encode::encode(&path, &newer, &newer_extra).unwrap();
        let mut full = Vec::new();
        encoded.write_to(&mut full).unwrap();
        for budget in (0..full.len()).step_by(7).chain([full.len() - 1]) {
            let err = crate::fs::write_atomic(&path, |out| {
                encoded.write_to(&mut FailAfter { inner: out, budget })
            })
            .unwrap_err();
            assert!(matches!(err, Error::Io { .. }), "{err:?}");
            let mut params = model(0.0);
            let restored = load(&path, &mut params).unwrap();
            assert_eq!(restored.metadata["epoch"], "1", "budget {budget}");
            assert_eq!(params.get(params.id("fc.bias").unwrap())[0], -1.0);
            assert_eq!(
                fs::read_dir(&dir).unwrap().count(),
                1,
                "temporary left behind"
            );
        }
        save(&path, &newer, &newer_extra).unwrap();
        assert_eq!(read_metadata(&path).unwrap()["epoch"], "2");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn read_metadata_reads_only_the_header() {
        let dir = scratch_dir("peek");
        let path = dir.join("ck.safetensors");
        let mut state = StateDict::default();
        state.values.insert("step".to_owned(), 5.0);
        let extra = Checkpoint::default()
            .with_metadata("config", r#"{"hidden":[64,32]}"#)
            .with_state("optimizer", state);
        save(&path, &model(1.0), &extra).unwrap();
        // Chop the tensors off: the header alone still answers.
        let bytes = fs::read(&path).unwrap();
        let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        fs::File::create(&path)
            .unwrap()
            .write_all(&bytes[..header_end])
            .unwrap();
        let metadata = read_metadata(&path).unwrap();
        assert_eq!(metadata, extra.metadata);
        let err = load(&path, &mut model(0.0)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Checkpoint(CheckpointError::Corrupt {
                    problem: Corruption::DataLength {
                        declared: 36,
                        actual: 0
                    },
                    ..
                })
            ),
            "{err}"
        );
        fs::File::create(&path)
            .unwrap()
            .write_all(&bytes[..12])
            .unwrap();
        let err = read_metadata(&path).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Checkpoint(CheckpointError::Corrupt {
                    problem: Corruption::HeaderBeyondFile { available: 4, .. },
                    ..
                })
            ),
            "{err}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn take_state_names_what_there_is() {
        let mut checkpoint =
            Checkpoint::<f64>::default().with_state("baseline", StateDict::default());
        let err = checkpoint.take_state("optimizer").unwrap_err();
        assert!(
            matches!(&err, Error::Checkpoint(CheckpointError::MissingState { name, available })
                if name == "optimizer" && available == &["baseline"]),
            "{err}"
        );
        assert!(checkpoint.take_state("baseline").is_ok());
    }
}
