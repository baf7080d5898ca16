//! Triangular factors: `cholesky`, `solve_tril` and `diagonal`, on a matrix `[d, d]` or a
//! batch of them `[n, d, d]`.
//!
//! Backward rules (`X̄` is the gradient of the output):
//!
//! - `L = cholesky(A)`, `A = L Lᵀ`: from `dA = dL Lᵀ + L dLᵀ` follows
//!   `dL = L Φ(L⁻¹ dA L⁻ᵀ)`, with `Φ` keeping the lower triangle and halving the diagonal.
//!   `Φ` is self-adjoint, so `Ā = L⁻ᵀ Φ(Lᵀ L̄) L⁻¹`, symmetrised because the op factors the
//!   symmetric part `½(A + Aᵀ)` (Murray 2016, "Differentiation of the Cholesky decomposition").
//! - `X = L⁻¹ B`: `B̄ = L⁻ᵀ X̄` and `L̄ = −tril(B̄ Xᵀ)`; only the lower triangle of `L` is read.
//! - `diagonal`: the gradient is written onto the diagonal of zeros.

use std::panic::Location;

use ndarray::{Array2, ArrayD, ArrayView2, ArrayView3, ArrayViewMut2, Axis, IxDyn};
use smallvec::smallvec;

use super::{Backward, InputGrads, Op};
use crate::tape::same_tape;
use crate::{Error, Result, Scalar, Var};

/// An op on triangular factors.
#[derive(Clone, Copy, Debug)]
pub(crate) enum FactorOp {
    Cholesky,
    SolveTril,
    Diagonal,
}

impl FactorOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            FactorOp::Cholesky => "cholesky",
            FactorOp::SolveTril => "solve_tril",
            FactorOp::Diagonal => "diagonal",
        }
    }

    /// On a batch of matrices `[n, d, d]` each op works matrix by matrix, so it keeps rows of
    /// every batched input; on a single matrix the leading axis is a matrix row, which the
    /// factorization and the solve mix.
    pub(crate) fn keeps_rows(self, input: usize, inputs: &[&[usize]], output: &[usize]) -> bool {
        inputs[input].len() == 3 && super::rows_aligned(inputs[input], output)
    }

    /// `diagonal` is linear, and `L⁻¹ B` is linear in `B` with `L` held fixed.
    pub(crate) fn linear_in(self, varies: &[bool]) -> bool {
        match self {
            FactorOp::Cholesky => false,
            FactorOp::SolveTril => !varies[0],
            FactorOp::Diagonal => true,
        }
    }

    pub(crate) fn backward<F: Scalar>(self, b: &Backward<'_, F>) -> InputGrads<F> {
        match self {
            FactorOp::Cholesky => {
                let mut grad = ArrayD::zeros(b.inputs[0].raw_dim());
                for_each_matrix(b.output, b.grad, &mut grad, |l, lbar, mut out| {
                    // P = Φ(Lᵀ tril(L̄)); Ā = L⁻ᵀ P L⁻¹ = (L⁻ᵀ (L⁻ᵀ P)ᵀ)ᵀ
                    let mut p = l.t().dot(&tril(lbar));
                    phi(&mut p);
                    let y = solve_upper_t(l, p.view());
                    let a = solve_upper_t(l, y.t());
                    // `a` holds Āᵀ; the symmetrised gradient ½(Ā + Āᵀ) is the same either way.
                    out.assign(&((&a + &a.t()) * F::from_f64(0.5)));
                });
                smallvec![Some(grad)]
            }
            FactorOp::SolveTril => {
                let (l, rhs, x, g) = (b.inputs[0], b.inputs[1], b.output, b.grad);
                let n = batch_len(rhs);
                let (d, k) = (rhs.shape()[rhs.ndim() - 2], rhs.shape()[rhs.ndim() - 1]);
                let ls = as_batch(l);
                let (xs, gs) = (as3(x, n, d, k), as3(g, n, d, k));
                let mut grad_rhs = ArrayD::zeros(rhs.raw_dim());
                let mut grad_l = ArrayD::<F>::zeros(l.raw_dim());
                {
                    let mut gr = grad_rhs
                        .view_mut()
                        .into_shape_with_order((n, d, k))
                        .expect("std");
                    let mut gl = grad_l
                        .view_mut()
                        .into_shape_with_order((ls.len_of(Axis(0)), d, d))
                        .expect("std");
                    for i in 0..n {
                        let li = ls.index_axis(Axis(0), i.min(ls.len_of(Axis(0)) - 1));
                        let bbar = solve_upper_t(li, gs.index_axis(Axis(0), i));
                        if b.needs[0] {
                            let lbar = tril(bbar.dot(&xs.index_axis(Axis(0), i).t()).view());
                            let mut target =
                                gl.index_axis_mut(Axis(0), i.min(ls.len_of(Axis(0)) - 1));
                            target -= &lbar;
                        }
                        gr.index_axis_mut(Axis(0), i).assign(&bbar);
                    }
                }
                smallvec![b.needs[0].then_some(grad_l), b.needs[1].then_some(grad_rhs)]
            }
            FactorOp::Diagonal => {
                let x = b.inputs[0];
                let d = x.shape()[x.ndim() - 1];
                let mut grad = ArrayD::zeros(x.raw_dim());
                {
                    let mut gm = grad
                        .view_mut()
                        .into_shape_with_order((batch_len(x), d, d))
                        .expect("std");
                    let g = b
                        .grad
                        .view()
                        .into_shape_with_order((batch_len(x), d))
                        .expect("std");
                    for (mut m, row) in gm.outer_iter_mut().zip(g.outer_iter()) {
                        m.diag_mut().assign(&row);
                    }
                }
                smallvec![Some(grad)]
            }
        }
    }
}

/// The number of matrices in a `[d, d]` or `[n, d, d]` value.
fn batch_len<F>(a: &ArrayD<F>) -> usize {
    if a.ndim() == 3 { a.shape()[0] } else { 1 }
}

fn as3<F>(a: &ArrayD<F>, n: usize, r: usize, c: usize) -> ArrayView3<'_, F> {
    a.view()
        .into_shape_with_order((n, r, c))
        .expect("standard layout")
}

/// A `[d, d]` or `[n, d, d]` value as `[n, d, d]`.
fn as_batch<F>(a: &ArrayD<F>) -> ArrayView3<'_, F> {
    let d = a.shape()[a.ndim() - 1];
    as3(a, batch_len(a), d, d)
}

/// Runs `f(a_i, b_i, out_i)` on each matrix of three equally shaped `[d, d]`/`[n, d, d]` arrays.
fn for_each_matrix<F: Scalar>(
    a: &ArrayD<F>,
    b: &ArrayD<F>,
    out: &mut ArrayD<F>,
    mut f: impl FnMut(ArrayView2<'_, F>, ArrayView2<'_, F>, ArrayViewMut2<'_, F>),
) {
    let (n, d) = (batch_len(a), a.shape()[a.ndim() - 1]);
    let mut out = out
        .view_mut()
        .into_shape_with_order((n, d, d))
        .expect("standard layout");
    for ((ai, bi), oi) in as_batch(a)
        .outer_iter()
        .zip(as_batch(b).outer_iter())
        .zip(out.outer_iter_mut())
    {
        f(ai, bi, oi);
    }
}

fn tril<F: Scalar>(a: ArrayView2<'_, F>) -> Array2<F> {
    let mut out = a.to_owned();
    for ((i, j), v) in out.indexed_iter_mut() {
        if j > i {
            *v = F::zero();
        }
    }
    out
}

/// Keeps the lower triangle and halves the diagonal.
fn phi<F: Scalar>(a: &mut Array2<F>) {
    let half = F::from_f64(0.5);
    for ((i, j), v) in a.indexed_iter_mut() {
        if j > i {
            *v = F::zero();
        } else if i == j {
            *v *= half;
        }
    }
}

/// Solves `L X = B` by forward substitution, reading only the lower triangle of `L`.
fn solve_lower<F: Scalar>(l: ArrayView2<'_, F>, b: ArrayView2<'_, F>) -> Array2<F> {
    let mut x = b.to_owned();
    for i in 0..l.nrows() {
        for j in 0..i {
            // a zero of L contributes nothing, also against a solution entry that overflowed
            // (0 · ∞ made NaN of what is an overflow, correctly ±∞, or a finite value)
            if l[[i, j]] == F::zero() {
                continue;
            }
            let (done, mut rest) = x.view_mut().split_at(Axis(0), i);
            rest.row_mut(0).scaled_add(-l[[i, j]], &done.row(j));
        }
        let pivot = l[[i, i]];
        x.row_mut(i).mapv_inplace(|v| v / pivot);
    }
    x
}

/// Solves `Lᵀ X = B` by back substitution, reading only the lower triangle of `L`.
fn solve_upper_t<F: Scalar>(l: ArrayView2<'_, F>, b: ArrayView2<'_, F>) -> Array2<F> {
    let mut x = b.to_owned();
    for i in (0..l.nrows()).rev() {
        for j in i + 1..l.nrows() {
            if l[[j, i]] == F::zero() {
                continue;
            }
            let (mut head, done) = x.view_mut().split_at(Axis(0), j);
            head.row_mut(i).scaled_add(-l[[j, i]], &done.row(0));
        }
        let pivot = l[[i, i]];
        x.row_mut(i).mapv_inplace(|v| v / pivot);
    }
    x
}

/// The Cholesky factor of `½(A + Aᵀ)`, or the column whose pivot is not positive.
fn cholesky_of<F: Scalar>(a: ArrayView2<'_, F>) -> std::result::Result<Array2<F>, (usize, F)> {
    let d = a.nrows();
    let half = F::from_f64(0.5);
    let mut l = Array2::zeros((d, d));
    for j in 0..d {
        // Σ_{k<j} L_ik L_jk over the finished columns
        let dot = |l: &Array2<F>, i: usize| (0..j).map(|k| l[[i, k]] * l[[j, k]]).sum::<F>();
        let pivot = a[[j, j]] - dot(&l, j);
        if !(pivot > F::zero() && pivot.is_finite()) {
            return Err((j, pivot));
        }
        let ljj = pivot.sqrt();
        l[[j, j]] = ljj;
        for i in j + 1..d {
            let sym = half * (a[[i, j]] + a[[j, i]]);
            l[[i, j]] = (sym - dot(&l, i)) / ljj;
        }
    }
    Ok(l)
}

#[track_caller]
fn check_square(op: &str, shape: &[usize], location: &Location<'_>) {
    assert!(
        matches!(shape.len(), 2 | 3) && shape[shape.len() - 1] == shape[shape.len() - 2],
        "{op}: expected a square matrix [d, d] or a batch [n, d, d], got shape {shape:?} (at {location})"
    );
}

impl<'t, F: Scalar> Var<'t, F> {
    /// The lower-triangular Cholesky factor `L` with `L Lᵀ = ½(A + Aᵀ)`, for a matrix `[d, d]`
    /// or a batch `[n, d, d]`.
    ///
    /// Only the symmetric part of the input is factored, so the gradient is symmetric and
    /// finite differences on any single entry agree with it.
    ///
    /// # Example
    /// ```
    /// use ndarray::array;
    /// use stograd::Tape;
    ///
    /// let tape = Tape::<f64>::new();
    /// let l = tape.constant(array![[4.0, 2.0], [2.0, 2.0]]).cholesky()?;
    /// assert_eq!(l.value(), array![[2.0, 0.0], [1.0, 1.0]].into_dyn());
    /// # Ok::<(), stograd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotPositiveDefinite`] naming the matrix and column whose pivot is not positive.
    ///
    /// # Panics
    /// If the value is not `[d, d]` or `[n, d, d]`.
    #[track_caller]
    pub fn cholesky(self) -> Result<Self> {
        let location = Location::caller();
        let value = self.tape.with_value(self.index, |a| {
            check_square("cholesky", a.shape(), location);
            let mut out = ArrayD::zeros(a.raw_dim());
            let (n, d) = (batch_len(a), a.shape()[a.ndim() - 1]);
            let mut outs = out
                .view_mut()
                .into_shape_with_order((n, d, d))
                .expect("std");
            for (i, ai) in as_batch(a).outer_iter().enumerate() {
                // NaN is not a failed factorization: say which entry it is
                if let Some(((r, c), v)) = ai.indexed_iter().find(|(_, v)| v.is_nan()) {
                    return Err(Error::InvalidParameter {
                        distribution: "cholesky",
                        param: "every matrix entry",
                        constraint: "a number (not NaN)",
                        value: v.as_f64(),
                        index: vec![i, r, c],
                    });
                }
                let l = cholesky_of(ai).map_err(|(column, pivot)| Error::NotPositiveDefinite {
                    matrix: i,
                    column,
                    pivot: pivot.as_f64(),
                })?;
                outs.index_axis_mut(Axis(0), i).assign(&l);
            }
            Ok(out)
        })?;
        Ok(self.tape.push(
            Op::Factor(FactorOp::Cholesky),
            smallvec![self.index],
            value,
            location,
        ))
    }

    /// `X = L⁻¹ B` for lower-triangular `L = self`, by forward substitution; only the lower
    /// triangle of `L` is read.
    ///
    /// Shapes: `L [d, d]` with `B [d, k]` or `[n, d, k]` (one `L` for the batch), or
    /// `L [n, d, d]` with `B [n, d, k]`. A zero on the diagonal gives infinities.
    ///
    /// # Panics
    /// If the shapes do not fit, with both shapes and the caller's location.
    #[track_caller]
    pub fn solve_tril(self, rhs: Var<'t, F>) -> Self {
        let location = Location::caller();
        same_tape("solve_tril", self, rhs);
        let value = {
            let nodes = self.tape.nodes.borrow();
            let (l, b) = (
                self.tape.read(&nodes, self.index),
                self.tape.read(&nodes, rhs.index),
            );
            check_square("solve_tril", l.shape(), location);
            let (sl, sb) = (l.shape(), b.shape());
            let d = sl[sl.len() - 1];
            let fits = matches!(sb.len(), 2 | 3)
                && sb[sb.len() - 2] == d
                && (sl.len() == 2 || (sb.len() == 3 && sb[0] == sl[0]));
            assert!(
                fits,
                "solve_tril: L {sl:?} and B {sb:?} do not fit L X = B (at {location})"
            );
            let (n, k) = (batch_len(b), sb[sb.len() - 1]);
            let ls = as_batch(l);
            let mut out = ArrayD::zeros(IxDyn(sb));
            let mut outs = out
                .view_mut()
                .into_shape_with_order((n, d, k))
                .expect("std");
            for (i, bi) in as3(b, n, d, k).outer_iter().enumerate() {
                let li = ls.index_axis(Axis(0), i.min(ls.len_of(Axis(0)) - 1));
                outs.index_axis_mut(Axis(0), i).assign(&solve_lower(li, bi));
            }
            out
        };
        let parents = smallvec![self.index, rhs.index];
        self.tape
            .push(Op::Factor(FactorOp::SolveTril), parents, value, location)
    }

    /// The diagonal of a matrix `[d, d]` → `[d]`, or of each matrix in a batch
    /// `[n, d, d]` → `[n, d]`.
    ///
    /// # Panics
    /// If the value is not `[d, d]` or `[n, d, d]`.
    #[track_caller]
    pub fn diagonal(self) -> Self {
        let location = Location::caller();
        let value = self.tape.with_value(self.index, |a| {
            check_square("diagonal", a.shape(), location);
            let diags: Vec<F> = as_batch(a)
                .outer_iter()
                .flat_map(|m| m.diag().to_vec())
                .collect();
            ArrayD::from_shape_vec(IxDyn(&a.shape()[..a.ndim() - 1]), diags).expect("d per matrix")
        });
        self.tape.push(
            Op::Factor(FactorOp::Diagonal),
            smallvec![self.index],
            value,
            location,
        )
    }
}
