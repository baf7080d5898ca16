//! Reuse of large array buffers from one step to the next.
//!
//! A training loop records the same large arrays at every step. Freeing them lets the system
//! allocator return their pages to the kernel, and the next step pays for every page again
//! (a fault and a clearing per 4 KiB); at 10⁶ elements that doubled the cost of a Normal's
//! `rsample + log_prob`. So a dropped tape hands its large buffers to a pool, and large
//! elementwise results and noise arrays are built in them. The pool is shared by all threads,
//! bounded in count and bytes, and buffers below [`MIN_ELEMENTS`] bypass it: the allocator's
//! own free lists serve those well.

use std::any::Any;
use std::sync::Mutex;

use ndarray::{ArrayD, IxDyn};

use crate::Scalar;

/// Buffers with fewer elements are not pooled.
pub(crate) const MIN_ELEMENTS: usize = 1 << 15;
/// At most this many buffers are kept.
const MAX_BUFFERS: usize = 64;
/// At most this many bytes are kept.
const MAX_BYTES: usize = 1 << 28;

/// `Vec<F>` buffers of any `F`, told apart by downcasting, shared by all threads: a buffer is
/// often freed on another thread than the one that made it (a data-parallel step's gradients
/// are summed and dropped on the caller's thread), and a per-thread pool would then leave the
/// maker to fault in fresh pages at every step. The lock is held only to find, take or add a
/// buffer, a few hundred times a step.
static POOL: Mutex<Buffers> = Mutex::new(Vec::new());

fn pool() -> std::sync::MutexGuard<'static, Buffers> {
    // a panic while the lock was held left the list itself intact
    POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A zero-filled array of `shape`, in a pooled buffer when one of a fitting size is free.
pub(crate) fn zeros<F: Scalar>(shape: &[usize]) -> ArrayD<F> {
    array(shape, true)
}

/// An array of `shape` for a caller that writes every element before reading any: a pooled
/// buffer keeps its old values (finite numbers, but meaningless) rather than being cleared,
/// which saves a pass over memory per large result.
pub(crate) fn for_overwrite<F: Scalar>(shape: &[usize]) -> ArrayD<F> {
    array(shape, false)
}

fn array<F: Scalar>(shape: &[usize], zeroed: bool) -> ArrayD<F> {
    let len: usize = shape.iter().product();
    let data = take::<F>(len, zeroed).unwrap_or_else(|| vec![F::zero(); len]);
    ArrayD::from_shape_vec(IxDyn(shape), data).expect("len elements")
}

/// A pooled buffer holding at least `len` and at most `2·len` elements, resized to `len`,
/// and cleared if `zeroed`.
fn take<F: Scalar>(len: usize, zeroed: bool) -> Option<Vec<F>> {
    if len < MIN_ELEMENTS {
        return None;
    }
    let fits = |b: &Box<dyn Any + Send>| {
        b.downcast_ref::<Vec<F>>()
            .is_some_and(|v| (len..=2 * len).contains(&v.capacity()))
    };
    let found = {
        let mut pool = pool();
        // the newest first; `remove` keeps the rest in the order they were given
        let at = pool.iter().rposition(fits)?;
        pool.remove(at)
    };
    let mut v = *found.downcast::<Vec<F>>().expect("checked by `fits`");
    if zeroed {
        v.clear();
    }
    v.resize(len, F::zero());
    Some(v)
}

/// Keeps the array's buffer for reuse if it is large, making room by dropping the buffers
/// that were given longest ago: the newest are the likeliest to fit the next step's arrays.
/// (Refusing the new buffer when full instead left the pool holding whatever filled it first:
/// in the MNIST VAE it then missed four 1.2 MB weight-gradient buffers a step, each
/// allocated and cleared afresh.)
pub(crate) fn give<F: Scalar>(array: ArrayD<F>) {
    if array.len() < MIN_ELEMENTS {
        return;
    }
    let (buffer, _) = array.into_raw_vec_and_offset();
    let size = buffer.capacity() * size_of::<F>();
    if size > MAX_BYTES {
        return;
    }
    let evicted = admit(&mut pool(), Box::new(buffer), size);
    // freed after the lock is released
    drop(evicted);
}

type Buffers = Vec<Box<dyn Any + Send>>;

/// Appends `buffer` (`size` bytes, at most [`MAX_BYTES`]) to `pool`, first removing from its
/// front as many of the oldest buffers as the bounds need; returns those.
fn admit(pool: &mut Buffers, buffer: Box<dyn Any + Send>, size: usize) -> Buffers {
    let mut bytes: usize = pool.iter().map(|b| size_of_buffer(b.as_ref())).sum();
    let mut oldest = 0;
    while pool.len() - oldest >= MAX_BUFFERS || bytes + size > MAX_BYTES {
        bytes -= size_of_buffer(pool[oldest].as_ref());
        oldest += 1;
    }
    let evicted = pool.drain(..oldest).collect();
    pool.push(buffer);
    evicted
}

/// Frees every buffer the engine keeps for reuse between steps, returning them to the system
/// allocator (as `torch.cuda.empty_cache()` does for PyTorch's caching allocator): for a
/// process that has finished training and goes on to other work, or to measure a step's
/// memory from a clean start. Arrays in use are not touched; the next steps fill the pool
/// again.
///
/// ```
/// stograd::empty_cache();
/// ```
pub fn empty_cache() {
    let buffers = std::mem::take(&mut *pool());
    // freed after the lock is released
    drop(buffers);
}

fn size_of_buffer(b: &(dyn Any + Send)) -> usize {
    if let Some(v) = b.downcast_ref::<Vec<f32>>() {
        v.capacity() * 4
    } else if let Some(v) = b.downcast_ref::<Vec<f64>>() {
        v.capacity() * 8
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(len: usize) -> Box<dyn Any + Send> {
        Box::new(vec![0f32; len])
    }

    fn lens(pool: &Buffers) -> Vec<usize> {
        pool.iter()
            .map(|b| b.downcast_ref::<Vec<f32>>().expect("f32").len())
            .collect()
    }

    #[test]
    fn a_full_pool_drops_its_oldest_buffers_for_a_new_one() {
        let mut pool = Buffers::new();
        for len in 1..=MAX_BUFFERS {
            assert!(admit(&mut pool, buffer(len), len * 4).is_empty());
        }
        let evicted = admit(&mut pool, buffer(1000), 4000);
        assert_eq!(lens(&evicted), [1]);
        assert_eq!(pool.len(), MAX_BUFFERS);
        assert_eq!(lens(&pool)[0], 2);
        assert_eq!(*lens(&pool).last().unwrap(), 1000);
    }

    #[test]
    fn the_byte_bound_drops_as_many_as_it_needs() {
        let quarter = MAX_BYTES / 4 / 4;
        let mut pool = Buffers::new();
        for _ in 0..3 {
            admit(&mut pool, buffer(quarter), quarter * 4);
        }
        // three quarters of the bound: the two oldest quarters make room, the third stays
        let evicted = admit(&mut pool, buffer(3 * quarter), 3 * quarter * 4);
        assert_eq!(evicted.len(), 2);
        assert_eq!(lens(&pool), [quarter, 3 * quarter]);
    }
}
