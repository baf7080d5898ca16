//! Laying out a checkpoint: the header (tensor table and metadata) and the order of the
//! tensors' bytes, written to any [`Write`].

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use ndarray::ArrayD;
use safetensors::tensor::TensorInfo;
use stograd::{Params, Scalar};

use super::format::{
    HEADER_LIMIT, METADATA_KEY, STATE_VALUES_PREFIX, encode_values, invalid_state_name,
    state_tensor_name,
};
use super::{Checkpoint, CheckpointError, element};
use crate::{Error, Result};

/// A checkpoint ready to be written: the length-prefixed header, then each array's bytes in
/// order. It borrows the arrays, so nothing is copied until the bytes are written.
pub(super) struct Encoded<'a, F: Scalar> {
    header: Vec<u8>,
    arrays: Vec<&'a ArrayD<F>>,
}

/// Lays out `params` (in insertion order) and then every state's arrays (by state, then key).
///
/// # Errors
/// [`CheckpointError::UnsupportedScalar`], [`CheckpointError::InvalidName`] and
/// [`CheckpointError::HeaderTooLarge`], all naming `path`.
pub(super) fn encode<'a, F: Scalar>(
    path: &Path,
    params: &'a Params<F>,
    extra: &'a Checkpoint<F>,
) -> Result<Encoded<'a, F>> {
    let dtype =
        element::dtype_of::<F>().ok_or(CheckpointError::UnsupportedScalar { scalar: F::NAME })?;
    let invalid = |name: &str, reason| CheckpointError::InvalidName {
        path: path.to_owned(),
        name: name.to_owned(),
        reason,
    };

    let mut metadata = BTreeMap::new();
    for (key, value) in &extra.metadata {
        if key.starts_with(STATE_VALUES_PREFIX) {
            return Err(invalid(key, "metadata keys starting with \"state/\" are reserved").into());
        }
        metadata.insert(key.clone(), value.clone());
    }
    let mut tensors: Vec<(String, &ArrayD<F>)> = Vec::new();
    for (_, name, value) in params.iter() {
        if name == METADATA_KEY {
            return Err(invalid(name, "the safetensors header reserves this name").into());
        }
        tensors.push((name.to_owned(), value));
    }
    for (state, dict) in &extra.states {
        if let Some(reason) = invalid_state_name(state) {
            return Err(invalid(state, reason).into());
        }
        let values = encode_values(&dict.values).map_err(|e| Error::io(path, e.into()))?;
        metadata.insert(format!("{STATE_VALUES_PREFIX}{state}"), values);
        for (key, value) in &dict.tensors {
            tensors.push((state_tensor_name(state, key), value));
        }
    }

    let json = |e: serde_json::Error| Error::io(path, e.into());
    let mut header = format!("{{\"{METADATA_KEY}\":");
    header.push_str(&serde_json::to_string(&metadata).map_err(json)?);
    let mut offset = 0usize;
    for (name, value) in &tensors {
        let bytes = value.len() * element::size_of_dtype(dtype);
        let end = offset
            .checked_add(bytes)
            .ok_or_else(|| Error::io(path, io::ErrorKind::FileTooLarge.into()))?;
        let info = TensorInfo {
            dtype,
            shape: value.shape().to_vec(),
            data_offsets: (offset, end),
        };
        header.push(',');
        header.push_str(&serde_json::to_string(name).map_err(json)?);
        header.push(':');
        header.push_str(&serde_json::to_string(&info).map_err(json)?);
        offset = end;
    }
    header.push('}');
    // Pad with spaces to a multiple of 8, as the safetensors writer does, so every tensor
    // starts 8-aligned in the file (and in a memory map of it).
    let padded = header.len().next_multiple_of(8);
    let header_len = padded as u64;
    if header_len > HEADER_LIMIT {
        return Err(CheckpointError::HeaderTooLarge {
            path: path.to_owned(),
            header_len,
            limit: HEADER_LIMIT,
        }
        .into());
    }
    let mut prefixed = Vec::with_capacity(8 + padded);
    prefixed.extend_from_slice(&header_len.to_le_bytes());
    prefixed.extend_from_slice(header.as_bytes());
    prefixed.resize(8 + padded, b' ');
    Ok(Encoded {
        header: prefixed,
        arrays: tensors.into_iter().map(|(_, value)| value).collect(),
    })
}

impl<F: Scalar> Encoded<'_, F> {
    /// Writes the whole file to `out`. Nothing is flushed: the caller owns the writer.
    pub(super) fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(&self.header)?;
        for array in &self.arrays {
            element::write_array(array, out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ndarray::ArrayD;
    use safetensors::SafeTensors;

    use super::*;
    use crate::StateDict;

    #[test]
    fn the_header_is_what_the_safetensors_reader_expects_and_is_deterministic() {
        let mut params = Params::<f64>::new();
        params
            .insert("b.weight", ArrayD::from_elem(vec![2, 3], 1.5))
            .unwrap();
        params.insert("a.bias", ArrayD::zeros(vec![0])).unwrap();
        let mut state = StateDict::default();
        state.tensors.insert("m".to_owned(), ArrayD::zeros(vec![1]));
        state.values.insert("step".to_owned(), 3.0);
        let extra = Checkpoint::default()
            .with_state("opt", state)
            .with_metadata("z", "last")
            .with_metadata("a", "first");
        let write = || {
            let mut bytes = Vec::new();
            let encoded = encode(Path::new("x"), &params, &extra).unwrap();
            encoded.write_to(&mut bytes).unwrap();
            bytes
        };
        let bytes = write();
        assert_eq!(bytes, write());
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(header_len % 8, 0);
        assert_eq!(bytes.len(), 8 + header_len + 8 * (6 + 1));
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let b = file.tensor("b.weight").unwrap();
        assert_eq!(b.shape(), [2, 3]);
        assert_eq!(&b.data()[..8], &1.5f64.to_le_bytes());
        assert_eq!(file.tensor("opt/m").unwrap().shape(), [1]);
        assert_eq!(file.tensor("a.bias").unwrap().data().len(), 0);
        let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
        // Parameters in insertion order, then state: what Python's `load_file` iterates.
        assert_eq!(metadata.offset_keys(), ["b.weight", "a.bias", "opt/m"]);
        let metadata = metadata.metadata().as_ref().unwrap();
        assert_eq!(metadata["state/opt"], r#"{"step":"3.0"}"#);
        assert_eq!(metadata["a"], "first");
    }

    #[test]
    fn reserved_and_malformed_names_are_refused() {
        let mut params = Params::<f32>::new();
        let extra = Checkpoint::default().with_metadata("state/x", "1");
        let err = encode(Path::new("x"), &params, &extra).err().unwrap();
        assert!(
            matches!(&err, Error::Checkpoint(CheckpointError::InvalidName { name, .. })
                if name == "state/x"),
            "{err:?}"
        );
        let extra = Checkpoint::default().with_state("a/b", StateDict::default());
        let err = encode(Path::new("x"), &params, &extra).err().unwrap();
        assert!(
            matches!(&err, Error::Checkpoint(CheckpointError::InvalidName { name, .. })
                if name == "a/b"),
            "{err:?}"
        );
        params
            .insert("__metadata__", ArrayD::zeros(vec![1]))
            .unwrap();
        let err = encode(Path::new("x"), &params, &Checkpoint::default())
            .err()
            .unwrap();
        assert!(
            matches!(&err, Error::Checkpoint(CheckpointError::InvalidName { name, .. })
                if name == "__metadata__"),
            "{err:?}"
        );
    }
}
