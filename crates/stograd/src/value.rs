//! What a tape node holds: its own array, a parameter's shared one, or (after
//! `backward_and_free`) only the shape of a released one.

use std::sync::Arc;

use ndarray::ArrayD;

/// A node's value: its own array, or a parameter's, shared with [`Params`](crate::Params)
/// without a copy.
pub(crate) enum Value<F> {
    Owned(ArrayD<F>),
    Shared(Arc<ArrayD<F>>),
    /// Released by [`Var::backward_and_free`](crate::Var::backward_and_free); the shape is kept.
    Freed(Vec<usize>),
}

/// What reading a released value says.
pub(crate) const FREED: &str = "this intermediate value was released by `backward_and_free`; read it \
                     before that call, or differentiate with `backward`, which keeps every value";

impl<F> Value<F> {
    /// The array.
    ///
    /// # Panics
    /// If [`backward_and_free`](crate::Var::backward_and_free) released it, naming the
    /// caller's location: every public function that reads a value is `#[track_caller]` down
    /// to this call, so the location is the user's line.
    #[track_caller]
    pub(crate) fn live(&self) -> &ArrayD<F> {
        match self {
            Value::Owned(a) => a,
            Value::Shared(a) => a,
            Value::Freed(_) => panic!("{FREED} (at {})", std::panic::Location::caller()),
        }
    }

    /// The shape, also of a released value.
    pub(crate) fn shape(&self) -> &[usize] {
        match self {
            Value::Owned(a) => a.shape(),
            Value::Shared(a) => a.shape(),
            Value::Freed(shape) => shape,
        }
    }

    /// Releases an owned value, keeping its shape. The buffer goes back to the allocator, not
    /// to the pool the next step draws from: releasing is for a step bound by memory.
    pub(crate) fn release(&mut self)
    where
        F: crate::Scalar,
    {
        if let Value::Owned(_) = self {
            let shape = self.shape().to_vec();
            *self = Value::Freed(shape);
        }
    }
}
