//! `C ← α·A·B + β·C` for ndarray matrices, on the `gemm` crate's kernels (which pick the
//! machine's widest vector instructions at run time: AVX-512 where the CPU has it, through the
//! `x86-v4` feature, else AVX2 and FMA) and rayon's thread pool. Only the `f32` and `f64`
//! kernel crates are built, not the complex and half-precision ones. Products `Aᵀ·B` with a
//! short inner dimension (at most 256) and both operands row-major, as a layer's weight
//! gradient is, run on a kernel of this crate instead, which needs no packing (AVX-512 only;
//! see `short_k.rs`): 1.2–1.9× the `gemm` crate's rate on the VAE's weight gradients, whose
//! row-major result is the crate's slow layout.
//!
//! The kernels take raw pointers and element strides; this crate is the only place in the
//! workspace with `unsafe`, and each call is made after checking that the three shapes fit.
//! The views' pointers and strides then describe exactly the elements the product reads and
//! writes: ndarray guarantees that a view's `(ptr, shape, strides)` addresses valid elements,
//! and `c` is a unique mutable view, so it aliases neither `a` nor `b`.

use std::any::TypeId;

use ndarray::{ArrayView2, ArrayViewMut2};

mod short_k;

/// The element types the kernels support: `f32` and `f64`.
pub trait Element: num_traits::Float + Send + Sync + 'static {}

impl Element for f32 {}
impl Element for f64 {}

/// `c ← alpha·a·b + beta·c`; with `beta = 0`, `c`'s old values are not read (NaN in them does
/// not propagate). Any strides, transposed views included.
///
/// # Example
/// ```
/// use ndarray::array;
///
/// let a = array![[1.0f32, 2.0], [3.0, 4.0]];
/// let b = array![[1.0f32, 0.0], [0.0, 1.0]];
/// let mut c = array![[1.0f32, 1.0], [1.0, 1.0]];
/// stograd_gemm::gemm(2.0, a.view(), b.t(), 1.0, c.view_mut()); // c = 2·a·bᵀ + c
/// assert_eq!(c, array![[3.0, 5.0], [7.0, 9.0]]);
/// ```
///
/// # Panics
/// If the shapes do not fit `[m, k] @ [k, n] → [m, n]`.
#[track_caller]
pub fn gemm<F: Element>(
    alpha: F,
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    beta: F,
    mut c: ArrayViewMut2<'_, F>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert!(
        b.nrows() == k && c.dim() == (m, n),
        "gemm: {:?} @ {:?} does not fit into {:?}",
        a.dim(),
        b.dim(),
        c.dim()
    );
    assert!(
        TypeId::of::<F>() == TypeId::of::<f32>() || TypeId::of::<F>() == TypeId::of::<f64>(),
        "gemm: only f32 and f64"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.mapv_inplace(|v| {
            if beta == F::zero() {
                F::zero()
            } else {
                v * beta
            }
        });
        return;
    }
    // Below about 8M multiply-adds (the VAE's 128×400×40 head) one core is faster than two:
    // measured with the kernels these features select, on a 2-core AVX-512 machine.
    let threads = match rayon::current_num_threads() {
        t if t > 1 && m * n * k >= 1 << 23 => t,
        _ => 1,
    };
    // weight gradients `Gᵀ·X`: the batch is the short inner dimension
    if short_k::at_b(alpha, a, b, beta, c.view_mut(), threads) {
        return;
    }
    let parallelism = if threads > 1 {
        gemm_common::Parallelism::Rayon(threads)
    } else {
        gemm_common::Parallelism::None
    };
    let (f32_kernel, f64_kernel) = (
        gemm_f32::gemm::f32::get_gemm_fn(),
        gemm_f64::gemm::f64::get_gemm_fn(),
    );
    // SAFETY: `F` is the kernel's element type, checked above.
    unsafe {
        if TypeId::of::<F>() == TypeId::of::<f32>() {
            run(f32_kernel, alpha, a, b, beta, c, parallelism);
        } else {
            run(f64_kernel, alpha, a, b, beta, c, parallelism);
        }
    }
}

/// The signature of the `gemm-f32` and `gemm-f64` kernels, which compute
/// `dst ← alpha·dst + beta·lhs·rhs` (so our `beta` is their `alpha` and the other way round),
/// with strides in elements, columns' before rows'.
type Kernel<T> = unsafe fn(
    usize,
    usize,
    usize,
    *mut T,
    isize,
    isize,
    bool,
    *const T,
    isize,
    isize,
    *const T,
    isize,
    isize,
    T,
    T,
    bool,
    bool,
    bool,
    gemm_common::Parallelism,
);

/// `c ← alpha·a·b + beta·c` through `kernel`.
///
/// # Safety
/// `T` must be `F`, and the shapes must fit `[m, k] @ [k, n] → [m, n]` with `k > 0`.
unsafe fn run<T: num_traits::Float, F: Element>(
    kernel: Kernel<T>,
    alpha: F,
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    beta: F,
    mut c: ArrayViewMut2<'_, F>,
    parallelism: gemm_common::Parallelism,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let scalar = |v: F| T::from(v).expect("T is F");
    // SAFETY: the caller checked the shapes, so the kernel reads `a` at (i, l) for i < m,
    // l < k and `b` at (l, j) for j < n, and writes `c` at (i, j): each within its view,
    // whose pointer and strides ndarray guarantees valid for its shape. `c` is borrowed
    // uniquely, so it overlaps neither input. `beta = 0` passes `read_dst = false`, which the
    // kernel documents as not reading `c`. The pointer casts are identities (`T` is `F`).
    unsafe {
        kernel(
            m,
            n,
            k,
            c.as_mut_ptr().cast(),
            c.strides()[1],
            c.strides()[0],
            beta != F::zero(),
            a.as_ptr().cast(),
            a.strides()[1],
            a.strides()[0],
            b.as_ptr().cast(),
            b.strides()[1],
            b.strides()[0],
            scalar(beta),
            scalar(alpha),
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, ShapeBuilder};

    /// `a·b` by its definition.
    pub(crate) fn naive(a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
        Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
            (0..a.ncols()).map(|l| a[[i, l]] * b[[l, j]]).sum()
        })
    }

    #[test]
    fn matches_the_definition_for_every_layout_and_size() {
        for (m, k, n) in [
            (1, 1, 1),
            (3, 5, 2),
            (17, 33, 9),
            (64, 70, 130),
            (5, 0, 4),
            (0, 3, 2),
        ] {
            let a = Array2::from_shape_fn((m, k), |(i, j)| (i as f64 - 2.0 * j as f64) / 7.0);
            let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * j) % 5) as f64 - 1.5);
            let want = naive(&a, &b);
            let a_f = {
                let mut t = Array2::zeros((m, k).f());
                t.assign(&a);
                t
            };
            for a_view in [a.view(), a_f.view()] {
                let mut c = Array2::from_elem((m, n), f64::NAN);
                super::gemm(1.0, a_view, b.view(), 0.0, c.view_mut());
                assert!(
                    c.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-12),
                    "{m}×{k}×{n}"
                );
                let mut c2 = Array2::ones((m, n));
                super::gemm(2.0, a_view, b.view(), 0.5, c2.view_mut());
                let expect = &want * 2.0 + 0.5;
                assert!(c2.iter().zip(&expect).all(|(x, y)| (x - y).abs() < 1e-12));
            }
            // a transposed right side
            let bt = b.t().to_owned();
            let mut c = Array2::zeros((m, n));
            super::gemm(1.0, a.view(), bt.t(), 0.0, c.view_mut());
            assert!(c.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-12));
        }
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn shapes_that_do_not_fit_panic() {
        let a = Array2::<f32>::zeros((2, 3));
        let mut c = Array2::<f32>::zeros((2, 2));
        super::gemm(1.0, a.view(), a.view(), 0.0, c.view_mut());
    }
}
