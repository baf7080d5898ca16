//! Reading a checkpoint: the safetensors reader validates the file, this module names what is
//! wrong when it does not, then checks the tensors against the model before touching it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use ndarray::ArrayD;
use safetensors::tensor::TensorInfo;
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use stograd::{ParamId, Params, Scalar};

use super::format::{
    HEADER_LIMIT, METADATA_KEY, STATE_VALUES_PREFIX, decode_values, split_state_tensor_name,
};
use super::{Checkpoint, CheckpointError, Corruption, element};
use crate::{Result, StateDict};

/// A validated file: its tensors in the order of their bytes, and its metadata.
pub(super) struct Parsed<'a> {
    tensors: Vec<Tensor<'a>>,
    metadata: BTreeMap<String, String>,
}

struct Tensor<'a> {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: &'a [u8],
}

/// The header's length, checked against the limit and the `available` bytes after it.
pub(super) fn header_len(prefix: [u8; 8], available: u64) -> Result<usize, Corruption> {
    let header_len = u64::from_le_bytes(prefix);
    if header_len > HEADER_LIMIT {
        return Err(Corruption::HeaderTooLarge {
            header_len,
            limit: HEADER_LIMIT,
        });
    }
    if header_len > available {
        return Err(Corruption::HeaderBeyondFile {
            header_len,
            available,
        });
    }
    usize::try_from(header_len).map_err(|_| Corruption::HeaderBeyondFile {
        header_len,
        available,
    })
}

/// Splits a file into its header and its data.
fn split(bytes: &[u8]) -> Result<(&[u8], &[u8]), Corruption> {
    let Some((prefix, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(Corruption::TooShort {
            len: bytes.len() as u64,
        });
    };
    let n = header_len(*prefix, rest.len() as u64)?;
    Ok(rest.split_at(n))
}

/// Parses and validates a whole file.
pub(super) fn parse(bytes: &[u8]) -> Result<Parsed<'_>, Corruption> {
    let (header, data) = split(bytes)?;
    let (_, table) =
        SafeTensors::read_metadata(bytes).map_err(|e| explain(e, header, data.len()))?;
    let names = table.offset_keys();
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let Some(info) = table.info(&name) else {
            continue;
        };
        let (start, end) = info.data_offsets;
        let Some(data) = data.get(start..end) else {
            return Err(Corruption::DataLength {
                declared: end as u64,
                actual: data.len() as u64,
            });
        };
        tensors.push(Tensor {
            dtype: info.dtype,
            shape: info.shape.clone(),
            name,
            data,
        });
    }
    let metadata = table
        .metadata()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Parsed { tensors, metadata })
}

/// The metadata map of a header alone (for peeking at a file without reading its tensors).
pub(super) fn parse_header_metadata(header: &[u8]) -> Result<BTreeMap<String, String>, Corruption> {
    let text =
        std::str::from_utf8(header).map_err(|source| Corruption::HeaderNotUtf8 { source })?;
    let mut table: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|source| Corruption::HeaderNotJson { source })?;
    match table.remove(METADATA_KEY) {
        None => Ok(BTreeMap::new()),
        Some(value) => {
            serde_json::from_value(value).map_err(|source| Corruption::HeaderNotJson { source })
        }
    }
}

/// Maps the reader's error to a [`Corruption`], re-walking the header for the values the
/// reader does not report (which tensor, which offsets, how many bytes).
fn explain(error: SafeTensorError, header: &[u8], data_len: usize) -> Corruption {
    use SafeTensorError as E;
    match error {
        E::InvalidHeader(source) => Corruption::HeaderNotUtf8 { source },
        E::InvalidHeaderDeserialization(source) | E::JsonError(source) => {
            Corruption::HeaderNotJson { source }
        }
        e @ (E::InvalidOffset(_)
        | E::TensorInvalidInfo
        | E::ValidationOverflow
        | E::MetadataIncompleteBuffer) => {
            diagnose(header, data_len).unwrap_or(Corruption::Rejected { source: e })
        }
        e => Corruption::Rejected { source: e },
    }
}

/// The first inconsistency between the tensor table and the data, found as the reader
/// looks for it: tensors sorted by offsets, each starting where the previous one ends and
/// spanning exactly dtype × shape, the last ending at the end of the file.
fn diagnose(header: &[u8], data_len: usize) -> Option<Corruption> {
    let table: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header).ok()?;
    let mut entries = Vec::with_capacity(table.len());
    for (name, value) in table {
        if name != METADATA_KEY {
            entries.push((name, serde_json::from_value::<TensorInfo>(value).ok()?));
        }
    }
    entries.sort_by_key(|(_, info)| info.data_offsets);
    let mut expected_start = 0usize;
    for (tensor, info) in entries {
        let (start, end) = info.data_offsets;
        if start != expected_start || end < start {
            return Some(Corruption::Offsets {
                tensor,
                start: start as u64,
                end: end as u64,
                expected_start: expected_start as u64,
            });
        }
        expected_start = end;
        let bits = info
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .and_then(|n| n.checked_mul(info.dtype.bitsize()));
        let Some(bits) = bits else {
            return Some(Corruption::SizeOverflow {
                tensor,
                dtype: info.dtype,
                shape: info.shape,
            });
        };
        if !bits.is_multiple_of(8) {
            return None; // a sub-byte dtype ending inside a byte: the reader's message says so
        }
        if end - start != bits / 8 {
            return Some(Corruption::ByteCount {
                tensor,
                dtype: info.dtype,
                shape: info.shape,
                bytes: (end - start) as u64,
                expected: (bits / 8) as u64,
            });
        }
    }
    (expected_start != data_len).then_some(Corruption::DataLength {
        declared: expected_start as u64,
        actual: data_len as u64,
    })
}

/// Checks every tensor of `file` against `params` and the scalar type, then (and only then)
/// writes the parameters and returns the state and metadata.
pub(super) fn restore<F: Scalar>(
    path: &Path,
    file: Parsed<'_>,
    params: &mut Params<F>,
) -> Result<Checkpoint<F>> {
    let expected =
        element::dtype_of::<F>().ok_or(CheckpointError::UnsupportedScalar { scalar: F::NAME })?;
    let corrupt = |problem| CheckpointError::Corrupt {
        path: path.to_owned(),
        problem,
    };

    let mut checkpoint = Checkpoint::default();
    for (key, value) in file.metadata {
        match key.strip_prefix(STATE_VALUES_PREFIX) {
            Some(state) => {
                let values = decode_values(state, &value).map_err(corrupt)?;
                checkpoint.state_entry(state).values = values;
            }
            None => {
                checkpoint.metadata.insert(key, value);
            }
        }
    }

    let by_name: HashMap<&str, &Tensor<'_>> =
        file.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut updates: Vec<(ParamId, &Tensor<'_>)> = Vec::with_capacity(params.len());
    for (id, name, value) in params.iter() {
        let tensor = by_name
            .get(name)
            .ok_or_else(|| CheckpointError::MissingParam {
                path: path.to_owned(),
                name: name.to_owned(),
            })?;
        check_dtype(path, tensor, expected)?;
        if tensor.shape != value.shape() {
            return Err(CheckpointError::WrongShape {
                path: path.to_owned(),
                name: name.to_owned(),
                expected: value.shape().to_vec(),
                got: tensor.shape.clone(),
            }
            .into());
        }
        updates.push((id, tensor));
    }
    let names: HashSet<&str> = params.iter().map(|(_, name, _)| name).collect();
    let mut state_tensors = Vec::new();
    for tensor in &file.tensors {
        match split_state_tensor_name(&tensor.name) {
            Some((state, key)) => state_tensors.push((state, key, tensor)),
            None if !names.contains(tensor.name.as_str()) => {
                return Err(CheckpointError::UnexpectedTensor {
                    path: path.to_owned(),
                    name: tensor.name.clone(),
                }
                .into());
            }
            None => {}
        }
    }
    for (state, key, tensor) in state_tensors {
        check_dtype(path, tensor, expected)?;
        let array = decode(path, tensor)?;
        let dict = checkpoint.state_entry(state);
        dict.tensors.insert(key.to_owned(), array);
    }
    let values = updates
        .into_iter()
        .map(|(id, tensor)| Ok((id, decode(path, tensor)?)))
        .collect::<Result<Vec<_>>>()?;

    // Everything checked and decoded: nothing below can fail on the file's account.
    for (id, value) in values {
        params.set(id, value)?;
    }
    Ok(checkpoint)
}

fn check_dtype(path: &Path, tensor: &Tensor<'_>, expected: Dtype) -> Result<(), CheckpointError> {
    if tensor.dtype == expected {
        Ok(())
    } else {
        Err(CheckpointError::WrongDtype {
            path: path.to_owned(),
            name: tensor.name.clone(),
            expected,
            got: tensor.dtype,
        })
    }
}

fn decode<F: Scalar>(path: &Path, tensor: &Tensor<'_>) -> Result<ArrayD<F>, CheckpointError> {
    element::read_array(&tensor.shape, tensor.data).ok_or_else(|| CheckpointError::Corrupt {
        path: path.to_owned(),
        problem: Corruption::ByteCount {
            tensor: tensor.name.clone(),
            dtype: tensor.dtype,
            shape: tensor.shape.clone(),
            bytes: tensor.data.len() as u64,
            expected: tensor
                .shape
                .iter()
                .try_fold(element::size_of_dtype(tensor.dtype) as u64, |n, &d| {
                    n.checked_mul(d as u64)
                })
                .unwrap_or(u64::MAX),
        },
    })
}

impl<F: Scalar> Checkpoint<F> {
    /// The state called `name`, made empty if it is new.
    fn state_entry(&mut self, name: &str) -> &mut StateDict<F> {
        self.states.entry(name.to_owned()).or_default()
    }
}
