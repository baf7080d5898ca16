//! Arrays of `f32` or `f64` to and from little-endian bytes, bit for bit.
//!
//! `Scalar` is generic, so the concrete type is recovered with [`Any`]: a downcast costs
//! nothing, keeps NaN payloads (a round trip through `f64` might not) and needs nothing from
//! the engine.

use std::any::{Any, TypeId};
use std::io::{self, Write};

use ndarray::{ArrayD, IxDyn};
use safetensors::Dtype;
use stograd::Scalar;

/// Bytes staged before each write: large enough that the writer's per-call cost vanishes.
const CHUNK: usize = 64 * 1024;

/// The safetensors dtype of `F`, or `None` for a scalar type that is neither `f32` nor `f64`.
pub(super) fn dtype_of<F: Scalar>() -> Option<Dtype> {
    let id = TypeId::of::<F>();
    if id == TypeId::of::<f32>() {
        Some(Dtype::F32)
    } else if id == TypeId::of::<f64>() {
        Some(Dtype::F64)
    } else {
        None
    }
}

/// The bytes an element of `dtype` takes (only `F32` and `F64` are ever asked for).
pub(super) fn size_of_dtype(dtype: Dtype) -> usize {
    dtype.bitsize() / 8
}

/// Writes the elements of `array` in row-major order, each little-endian.
///
/// # Errors
/// The writer's, or [`io::ErrorKind::InvalidInput`] when `F` is neither `f32` nor `f64` (the
/// callers check [`dtype_of`] first).
pub(super) fn write_array<F: Scalar>(array: &ArrayD<F>, out: &mut dyn Write) -> io::Result<()> {
    let any: &dyn Any = array;
    if let Some(a) = any.downcast_ref::<ArrayD<f32>>() {
        write_le(a, out)
    } else if let Some(a) = any.downcast_ref::<ArrayD<f64>>() {
        write_le(a, out)
    } else {
        Err(io::ErrorKind::InvalidInput.into())
    }
}

/// The array of `shape` whose row-major little-endian elements are `bytes`, or `None` when
/// `F` is neither `f32` nor `f64` or the byte count does not fit the shape.
pub(super) fn read_array<F: Scalar>(shape: &[usize], bytes: &[u8]) -> Option<ArrayD<F>> {
    let array: Box<dyn Any> = match dtype_of::<F>()? {
        Dtype::F32 => Box::new(read_le::<f32>(shape, bytes)?),
        _ => Box::new(read_le::<f64>(shape, bytes)?),
    };
    array.downcast::<ArrayD<F>>().ok().map(|a| *a)
}

/// A float with a fixed little-endian encoding.
trait LittleEndian: Copy + 'static {
    const SIZE: usize;
    fn put(self, out: &mut Vec<u8>);
    /// Decodes exactly [`Self::SIZE`] bytes.
    fn get(bytes: &[u8]) -> Self;
}

impl LittleEndian for f32 {
    const SIZE: usize = 4;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn get(bytes: &[u8]) -> Self {
        f32::from_le_bytes(bytes.try_into().expect("chunks_exact yields 4 bytes"))
    }
}

impl LittleEndian for f64 {
    const SIZE: usize = 8;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn get(bytes: &[u8]) -> Self {
        f64::from_le_bytes(bytes.try_into().expect("chunks_exact yields 8 bytes"))
    }
}

fn write_le<T: LittleEndian>(array: &ArrayD<T>, out: &mut dyn Write) -> io::Result<()> {
    let mut staged = Vec::with_capacity(CHUNK.min(array.len() * T::SIZE));
    for &x in array {
        x.put(&mut staged);
        if staged.len() >= CHUNK {
            out.write_all(&staged)?;
            staged.clear();
        }
    }
    out.write_all(&staged)
}

fn read_le<T: LittleEndian>(shape: &[usize], bytes: &[u8]) -> Option<ArrayD<T>> {
    if !bytes.len().is_multiple_of(T::SIZE) {
        return None;
    }
    let elements = bytes.chunks_exact(T::SIZE).map(T::get).collect();
    ArrayD::from_shape_vec(IxDyn(shape), elements).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_bit_for_bit_including_nan_payloads() {
        let odd_nan = f32::from_bits(0x7fc0_1234);
        let a = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![-0.0f32, odd_nan, 1e-45, f32::MAX])
            .expect("4 elements");
        let mut bytes = Vec::new();
        write_array(&a, &mut bytes).expect("a Vec accepts everything");
        assert_eq!(&bytes[..4], &(-0.0f32).to_le_bytes());
        assert_eq!(bytes.len(), 16);
        let back = read_array::<f32>(&[2, 2], &bytes).expect("16 bytes are 2 × 2 f32");
        let bits = |a: &ArrayD<f32>| a.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&a));
    }

    #[test]
    fn reading_checks_the_byte_count_and_the_type() {
        assert!(read_array::<f64>(&[2], &[0; 15]).is_none());
        assert!(read_array::<f64>(&[3], &[0; 16]).is_none());
        assert!(read_array::<f32>(&[0, 5], &[]).is_some());
        assert_eq!(dtype_of::<f64>(), Some(Dtype::F64));
    }
}
