//! NumPy broadcasting: the shape two operands broadcast to, and the reduction of a gradient
//! back over the axes an operand was broadcast along.

use ndarray::{ArrayD, Axis, IxDyn};

use crate::Scalar;

/// The shape `a` and `b` broadcast to under NumPy's rules (align trailing axes; each pair of
/// lengths must be equal or contain a 1), or `None` when they are incompatible.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for (i, slot) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        *slot = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Sums `grad` (of a broadcast result's shape) down to `shape`: over the leading axes `shape`
/// lacks and over every axis where `shape` has length 1 but `grad` does not.
///
/// This is the adjoint of broadcasting: if `y = broadcast(x)`, then `∂L/∂x = sum_to(∂L/∂y)`.
///
/// # Panics
/// If `shape` does not broadcast to `grad`'s shape, with both shapes and the caller's line.
#[track_caller]
pub fn sum_to<F: Scalar>(grad: &ArrayD<F>, shape: &[usize]) -> ArrayD<F> {
    if grad.shape() == shape {
        return grad.clone();
    }
    assert!(
        broadcast_shape(grad.shape(), shape).as_deref() == Some(grad.shape()),
        "sum_to: shape {shape:?} does not broadcast to the gradient's shape {:?}",
        grad.shape()
    );
    let lead = grad.ndim() - shape.len();
    let mut out = grad.clone();
    for _ in 0..lead {
        out = out.sum_axis(Axis(0));
    }
    for (axis, &len) in shape.iter().enumerate() {
        if len == 1 && out.shape()[axis] != 1 {
            out = out.sum_axis(Axis(axis)).insert_axis(Axis(axis));
        }
    }
    out.into_shape_with_order(IxDyn(shape))
        .expect("sum_to keeps the element count")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(
        expected = "sum_to: shape [2, 3] does not broadcast to the gradient's shape [3]"
    )]
    fn sum_to_names_shapes_that_do_not_broadcast() {
        sum_to(&ArrayD::<f64>::zeros(IxDyn(&[3])), &[2, 3]);
    }

    #[test]
    fn shapes_follow_numpy() {
        assert_eq!(broadcast_shape(&[2, 3], &[3]), Some(vec![2, 3]));
        assert_eq!(broadcast_shape(&[4, 1, 3], &[2, 1]), Some(vec![4, 2, 3]));
        assert_eq!(broadcast_shape(&[], &[5]), Some(vec![5]));
        assert_eq!(broadcast_shape(&[2, 3], &[2]), None);
    }

    #[test]
    fn sum_to_reduces_broadcast_axes() {
        let g = ArrayD::<f64>::ones(IxDyn(&[4, 2, 3]));
        let r = sum_to(&g, &[2, 1]);
        assert_eq!(r.shape(), &[2, 1]);
        assert!(r.iter().all(|&v| v == 12.0));
        assert_eq!(sum_to(&g, &[]).into_iter().next(), Some(24.0));
    }
}
