//! `C ← α·Aᵀ·B + β·C` for a short inner dimension, with `A` (`k × m`) and `B` (`k × n`) both
//! row-major: a layer's weight gradient `Gᵀ·X`, whose inner dimension is the batch (64 rows per
//! shard in the VAE). The `gemm` crate packs both operands and keeps its accumulators over
//! long inner loops; at `k = 64` it ran at 61–77 GFLOP/s on a core of an AVX-512 Xeon where
//! its long-`k` products reach 100–134, and so did ndarray's `matrixmultiply`.
//!
//! In this layout neither operand needs packing: at each step `p` of the inner loop the
//! kernel reads `B[p, j..j + 16·NV]` (contiguous: `NV` vector loads) and `A[p, i..i + MR]`
//! (contiguous: `MR` broadcasts), and adds their outer product into `MR × NV` vector
//! accumulators, `C[i..i + MR, j..j + 16·NV]`, which are stored once at the end. With
//! `k ≤` [`MAX_K`] the `B` panel (`k × 16·NV`) stays in the L1 cache while the kernel walks
//! down the rows of `C`, and all of `A` in L2. The ragged right edge is handled by masked
//! loads and stores, which neither read nor write the lanes they mask off; the ragged bottom
//! edge by smaller tiles of 4 and 1 rows.
//!
//! AVX-512F only (checked at run time); elsewhere [`at_b`] declines and the caller uses the
//! `gemm` crate.

use std::any::TypeId;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use ndarray::{ArrayView2, ArrayViewMut2, Axis};

use crate::Element;

/// The longest inner dimension this kernel takes: `256 × 32` `f32`s of `B` are 32 KiB, the
/// L1 data cache of the smaller cores.
pub(crate) const MAX_K: usize = 256;

/// Rows of `C` per tile: 12 rows × 2 vectors = 24 accumulators of the 32 vector registers.
const MR: usize = 12;

/// `c ← alpha·a·b + beta·c` if `a` is the transpose of a row-major matrix, `b` and `c` are
/// row-major, `1 ≤ k ≤ MAX_K`, and the CPU has AVX-512F; otherwise `false`, and `c` is left
/// alone. The shapes must already fit (`gemm` checked them). With `beta = 0` `c` is not read.
/// `threads > 1` splits the rows of `c` over rayon's pool.
pub(crate) fn at_b<F: Element>(
    alpha: F,
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    beta: F,
    mut c: ArrayViewMut2<'_, F>,
    threads: usize,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let (m, k) = a.dim();
        let n = b.ncols();
        // (the stride of an axis of length 1 is never used, and ndarray may set it to anything)
        let fits = (1..=MAX_K).contains(&k)
            && (m == 1 || a.strides()[0] == 1)
            && (k == 1 || a.strides()[1] >= m as isize)
            && (n == 1 || b.strides()[1] == 1)
            && (k == 1 || b.strides()[0] >= n as isize)
            && (n == 1 || c.strides()[1] == 1)
            && (m == 1 || c.strides()[0] >= n as isize);
        if !fits || !is_x86_feature_detected!("avx512f") {
            return false;
        }
        if threads > 1 {
            // whole tiles of rows per thread
            let rows = m.div_ceil(threads).next_multiple_of(MR);
            rayon::scope(|s| {
                for (i, part) in c.axis_chunks_iter_mut(Axis(0), rows).enumerate() {
                    let a = a.slice_axis(Axis(0), (i * rows..i * rows + part.nrows()).into());
                    s.spawn(move |_| dispatch(alpha, a, b, beta, part));
                }
            });
        } else {
            dispatch(alpha, a, b, beta, c);
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (alpha, a, b, beta, c, threads);
        false
    }
}

/// [`rows`] for `F`'s vector type.
#[cfg(target_arch = "x86_64")]
fn dispatch<F: Element>(
    alpha: F,
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    beta: F,
    mut c: ArrayViewMut2<'_, F>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    // row strides, 0 for a single row (never stepped over)
    let ld = |rows: usize, stride: isize| if rows == 1 { 0 } else { stride as usize };
    let (lda, ldb, ldc) = (
        ld(k, a.strides()[1]),
        ld(k, b.strides()[0]),
        ld(m, c.strides()[0]),
    );
    let shape = Shape {
        m,
        n,
        k,
        lda,
        ldb,
        ldc,
    };
    // SAFETY: `at_b` checked AVX-512F and the layouts: `a`'s element (i, p) is at offset
    // `i + p·lda`, `b`'s (p, j) at `p·ldb + j` and `c`'s (i, j) at `i·ldc + j`, all within
    // their views for i < m, p < k, j < n (ndarray guarantees a view's pointer and strides
    // address its shape). `rows` reads and writes no other element. `c` is borrowed uniquely,
    // so it aliases neither input. `F` is the vector's element type.
    unsafe {
        if TypeId::of::<F>() == TypeId::of::<f32>() {
            rows_of::<__m512, F>(shape, alpha, &a, &b, beta, &mut c);
        } else {
            rows_of::<__m512d, F>(shape, alpha, &a, &b, beta, &mut c);
        }
    }
}

/// [`rows`] on the views' elements as `V::Elem`.
///
/// # Safety
/// As [`rows`], and `V::Elem` must be `F` (the pointer casts are then identities).
#[cfg(target_arch = "x86_64")]
unsafe fn rows_of<V: Vector, F: Element>(
    shape: Shape,
    alpha: F,
    a: &ArrayView2<'_, F>,
    b: &ArrayView2<'_, F>,
    beta: F,
    c: &mut ArrayViewMut2<'_, F>,
) where
    V::Elem: num_traits::Float,
{
    let scalar = |v: F| <V::Elem as num_traits::NumCast>::from(v).expect("V::Elem is F");
    // SAFETY: the caller's
    unsafe {
        rows::<V>(
            shape,
            scalar(alpha),
            a.as_ptr().cast(),
            b.as_ptr().cast(),
            scalar(beta),
            c.as_mut_ptr().cast(),
        );
    }
}

/// The sizes and row strides (in elements) of a product.
#[derive(Clone, Copy)]
struct Shape {
    m: usize,
    n: usize,
    k: usize,
    lda: usize,
    ldb: usize,
    ldc: usize,
}

/// The AVX-512 operations the kernel uses, for `f32` (`__m512`) and `f64` (`__m512d`).
///
/// # Safety
/// Every method needs AVX-512F; the loads and stores need their unmasked lanes to be valid.
#[cfg(target_arch = "x86_64")]
trait Vector: Copy {
    type Elem: Copy + PartialEq + num_traits::Zero;
    type Mask: Copy;
    const LANES: usize;
    /// The mask of the first `lanes` lanes (`lanes ≤ LANES`).
    fn first(lanes: usize) -> Self::Mask;
    unsafe fn zero() -> Self;
    unsafe fn splat(v: Self::Elem) -> Self;
    unsafe fn load(mask: Self::Mask, p: *const Self::Elem) -> Self;
    unsafe fn store(self, mask: Self::Mask, p: *mut Self::Elem);
    /// `a·b + self`.
    unsafe fn mul_add(self, a: Self, b: Self) -> Self;
}

/// `impl Vector` for one AVX-512 vector type, from its intrinsics.
macro_rules! vector {
    ($v:ty, $elem:ty, $mask:ty, $lanes:expr, $zero:ident, $set1:ident, $load:ident, $store:ident, $fmadd:ident) => {
        #[cfg(target_arch = "x86_64")]
        impl Vector for $v {
            type Elem = $elem;
            type Mask = $mask;
            const LANES: usize = $lanes;
            #[inline(always)]
            fn first(lanes: usize) -> $mask {
                ((1u32 << lanes) - 1) as $mask
            }
            #[inline(always)]
            unsafe fn zero() -> Self {
                unsafe { $zero() }
            }
            #[inline(always)]
            unsafe fn splat(v: $elem) -> Self {
                unsafe { $set1(v) }
            }
            #[inline(always)]
            unsafe fn load(mask: $mask, p: *const $elem) -> Self {
                unsafe { $load(mask, p) }
            }
            #[inline(always)]
            unsafe fn store(self, mask: $mask, p: *mut $elem) {
                unsafe { $store(p, mask, self) }
            }
            #[inline(always)]
            unsafe fn mul_add(self, a: Self, b: Self) -> Self {
                unsafe { $fmadd(a, b, self) }
            }
        }
    };
}

vector!(
    __m512,
    f32,
    __mmask16,
    16,
    _mm512_setzero_ps,
    _mm512_set1_ps,
    _mm512_maskz_loadu_ps,
    _mm512_mask_storeu_ps,
    _mm512_fmadd_ps
);
vector!(
    __m512d,
    f64,
    __mmask8,
    8,
    _mm512_setzero_pd,
    _mm512_set1_pd,
    _mm512_maskz_loadu_pd,
    _mm512_mask_storeu_pd,
    _mm512_fmadd_pd
);

/// What the tiles of one panel of columns share.
#[derive(Clone, Copy)]
struct Panel<V: Vector> {
    s: Shape,
    alpha: V::Elem,
    beta: V::Elem,
    /// `B[0, j]`, the panel's first column.
    b: *const V::Elem,
    /// The lanes of the panel's two vectors that are columns of `C`.
    masks: [V::Mask; 2],
    /// 1 if the second vector has no column of `C`, else 2.
    columns: usize,
}

/// Every tile of `c`: panels of two vectors' width from left to right, down each panel tiles
/// of [`MR`] rows, then of 4 and of 1.
///
/// # Safety
/// AVX-512F, and `a`, `b`, `c` valid for the elements `s` addresses (see `dispatch`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rows<V: Vector>(
    s: Shape,
    alpha: V::Elem,
    a: *const V::Elem,
    b: *const V::Elem,
    beta: V::Elem,
    c: *mut V::Elem,
) {
    let mut j = 0;
    while j < s.n {
        let lanes = |v: usize| (s.n - j).saturating_sub(v * V::LANES).min(V::LANES);
        let panel = Panel::<V> {
            s,
            alpha,
            beta,
            // SAFETY: j < n, a column of `b`
            b: unsafe { b.add(j) },
            masks: [V::first(lanes(0)), V::first(lanes(1))],
            columns: if lanes(1) == 0 { 1 } else { 2 },
        };
        let mut i = 0;
        while i < s.m {
            // SAFETY: the tile's rows i..i + R are below m and its columns (the masks'
            // lanes from j on) below n, at the offsets `dispatch` states.
            i += unsafe {
                let (a, c) = (a.add(i), c.add(i * s.ldc + j));
                match s.m - i {
                    left if left >= MR => tile::<V, MR>(panel, a, c),
                    left if left >= 4 => tile::<V, 4>(panel, a, c),
                    _ => tile::<V, 1>(panel, a, c),
                }
            };
        }
        j += 2 * V::LANES;
    }
}

/// `R` rows of `C` times up to two vectors of columns:
/// `C[r, ·] ← α·Σ_p A[p, r]·B[p, ·] + β·C[r, ·]`. Returns `R`.
///
/// # Safety
/// AVX-512F; `a` points at `A[0, i]`, `panel.b` at `B[0, j]`, `c` at `C[i, j]`, rows
/// `i..i + R` exist, and the columns the masks select (of the first `columns` vectors) exist.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile<V: Vector, const R: usize>(
    panel: Panel<V>,
    a: *const V::Elem,
    c: *mut V::Elem,
) -> usize {
    let Panel {
        s,
        alpha,
        beta,
        b,
        masks,
        columns,
    } = panel;
    // SAFETY: as the function's contract; the second vector's address is only formed (with
    // `wrapping_add`) and used when `columns` is 2, and its masked-off lanes are not touched.
    unsafe {
        let mut acc = [[V::zero(); 2]; R];
        for p in 0..s.k {
            let row = b.add(p * s.ldb);
            let bv = [
                V::load(masks[0], row),
                if columns == 2 {
                    V::load(masks[1], row.wrapping_add(V::LANES))
                } else {
                    V::zero()
                },
            ];
            let arow = a.add(p * s.lda);
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = V::splat(*arow.add(r));
                acc[0] = acc[0].mul_add(av, bv[0]);
                acc[1] = acc[1].mul_add(av, bv[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let out = c.add(r * s.ldc);
            for (v, &sum) in acc.iter().enumerate().take(columns) {
                let p = out.wrapping_add(v * V::LANES);
                let mut value = V::zero().mul_add(sum, V::splat(alpha));
                if beta != <V::Elem as num_traits::Zero>::zero() {
                    value = value.mul_add(V::load(masks[v], p), V::splat(beta));
                }
                value.store(masks[v], p);
            }
        }
    }
    R
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, s};

    /// `A` (`k × m`, stored in a wider matrix so that its row stride exceeds `m`), `B`, and the
    /// exact `Aᵀ·B` in f64.
    fn case(m: usize, k: usize, n: usize) -> (Array2<f64>, Array2<f64>, Array2<f64>) {
        let a = Array2::from_shape_fn((k, m + 3), |(p, i)| {
            ((p * 31 + i * 17) % 23) as f64 / 7.0 - 1.5
        });
        let b = Array2::from_shape_fn((k, n), |(p, j)| ((p * 13 + j * 5) % 19) as f64 / 5.0 - 1.8);
        let want = crate::tests::naive(&a.slice(s![.., ..m]).t().to_owned(), &b);
        (a, b, want)
    }

    #[test]
    fn matches_the_definition_at_every_edge() {
        let avx512 = is_x86_feature_detected!("avx512f");
        for (m, k, n) in [
            (1, 1, 1),
            (3, 2, 5),
            (12, 64, 32),
            (13, 7, 33),
            (25, 64, 47),
            (16, 256, 8),
            (40, 64, 400),
            (401, 3, 17),
        ] {
            let (a_wide, b, want) = case(m, k, n);
            let a = a_wide.slice(s![.., ..m]);
            for threads in [1, 2] {
                for (alpha, beta) in [(1.0, 0.0), (-0.5, 2.0)] {
                    let start = Array2::from_shape_fn((m, n), |(i, j)| (i + 2 * j) as f64 / 9.0);
                    // f64
                    let mut c = if beta == 0.0 {
                        Array2::from_elem((m, n), f64::NAN)
                    } else {
                        start.clone()
                    };
                    let ran = super::at_b(alpha, a.t(), b.view(), beta, c.view_mut(), threads);
                    assert_eq!(ran, avx512, "{m}×{k}×{n}");
                    if !ran {
                        continue;
                    }
                    let expect = &want * alpha + &start * beta;
                    for (x, y) in c.iter().zip(&expect) {
                        assert!(
                            (x - y).abs() <= 1e-12 * (1.0 + y.abs()),
                            "f64 {m}×{k}×{n}: {x} vs {y}"
                        );
                    }
                    // f32, against the f64 product, to a bound of k roundings
                    let (a32, b32) = (a.mapv(|v| v as f32), b.mapv(|v| v as f32));
                    let mut c32 = if beta == 0.0 {
                        Array2::from_elem((m, n), f32::NAN)
                    } else {
                        start.mapv(|v| v as f32)
                    };
                    assert!(super::at_b(
                        alpha as f32,
                        a32.t(),
                        b32.view(),
                        beta as f32,
                        c32.view_mut(),
                        threads
                    ));
                    let scale: f64 = a.iter().map(|v| v.abs()).fold(0.0, f64::max)
                        * b.iter().map(|v| v.abs()).fold(0.0, f64::max);
                    for (x, y) in c32.iter().zip(&expect) {
                        let bound = (k as f64 + 2.0)
                            * f32::EPSILON as f64
                            * (scale * k as f64 + y.abs() + 1.0);
                        assert!(
                            (*x as f64 - y).abs() <= bound,
                            "f32 {m}×{k}×{n}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn declines_what_it_does_not_fit() {
        let (a, b, _) = case(5, 4, 6);
        let mut c = Array2::zeros((5, 6));
        // `a` not transposed (row-major `m × k`), a long inner dimension, a column-major `c`
        let a_rows = a.slice(s![.., ..5]).t().to_owned();
        assert!(!super::at_b(
            1.0,
            a_rows.view(),
            b.view(),
            0.0,
            c.view_mut(),
            1
        ));
        let (long_a, long_b, _) = case(3, super::MAX_K + 1, 2);
        let mut c2 = Array2::zeros((3, 2));
        assert!(!super::at_b(
            1.0,
            long_a.slice(s![.., ..3]).t(),
            long_b.view(),
            0.0,
            c2.view_mut(),
            1
        ));
        let mut c_cols = Array2::zeros((6, 5));
        let mut c_cols = c_cols.view_mut();
        c_cols.swap_axes(0, 1);
        assert!(!super::at_b(
            1.0,
            a.slice(s![.., ..5]).t(),
            b.view(),
            0.0,
            c_cols,
            1
        ));
    }
}
