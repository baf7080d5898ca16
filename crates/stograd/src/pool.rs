//! Reuse of large array buffers from one step to the next.
//!
//! A training loop records the same large arrays at every step. Freeing them lets the system
//! allocator return their pages to the kernel, and the next step pays for every page again
//! (a fault and a clearing per 4 KiB); at 10⁶ elements that doubled the cost of a Normal's
//! `rsample + log_prob`. So a dropped tape hands its large buffers to a per-thread pool, and
//! large elementwise results and noise arrays are built in them. The pool is bounded in count
//! and bytes, and buffers below [`MIN_ELEMENTS`] bypass it: the allocator's own free lists
//! serve those well.

use std::any::Any;
use std::cell::RefCell;

use ndarray::{ArrayD, IxDyn};

use crate::Scalar;

/// Buffers with fewer elements are not pooled.
pub(crate) const MIN_ELEMENTS: usize = 1 << 15;
/// At most this many buffers are kept per thread.
const MAX_BUFFERS: usize = 64;
/// At most this many bytes are kept per thread.
const MAX_BYTES: usize = 1 << 28;

thread_local! {
    /// `Vec<F>` buffers of any `F`, told apart by downcasting.
    static POOL: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// A zero-filled array of `shape`, in a pooled buffer when one of a fitting size is free.
pub(crate) fn zeros<F: Scalar>(shape: &[usize]) -> ArrayD<F> {
    let len: usize = shape.iter().product();
    let data = take::<F>(len).unwrap_or_else(|| vec![F::zero(); len]);
    ArrayD::from_shape_vec(IxDyn(shape), data).expect("len elements")
}

/// A pooled buffer holding at least `len` and at most `2·len` elements, resized to `len`.
fn take<F: Scalar>(len: usize) -> Option<Vec<F>> {
    if len < MIN_ELEMENTS {
        return None;
    }
    POOL.with_borrow_mut(|pool| {
        let fits = |b: &Box<dyn Any>| {
            b.downcast_ref::<Vec<F>>()
                .is_some_and(|v| (len..=2 * len).contains(&v.capacity()))
        };
        let at = pool.iter().position(fits)?;
        let mut v = *pool
            .swap_remove(at)
            .downcast::<Vec<F>>()
            .expect("checked by `fits`");
        v.clear();
        v.resize(len, F::zero());
        Some(v)
    })
}

/// Keeps the array's buffer for reuse if it is large and the pool has room.
pub(crate) fn give<F: Scalar>(array: ArrayD<F>) {
    if array.len() < MIN_ELEMENTS {
        return;
    }
    let (buffer, _) = array.into_raw_vec_and_offset();
    // The pool is gone while the thread shuts down; the buffer is then simply freed.
    let _ = POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        let bytes: usize = pool.iter().map(|b| size_of_buffer(b.as_ref())).sum();
        let size = buffer.capacity() * size_of::<F>();
        if pool.len() < MAX_BUFFERS && bytes + size <= MAX_BYTES {
            pool.push(Box::new(buffer));
        }
    });
}

fn size_of_buffer(b: &dyn Any) -> usize {
    if let Some(v) = b.downcast_ref::<Vec<f32>>() {
        v.capacity() * 4
    } else if let Some(v) = b.downcast_ref::<Vec<f64>>() {
        v.capacity() * 8
    } else {
        0
    }
}
