//! Gaussian algebra shared by [`MultivariateNormal`](super::MultivariateNormal),
//! [`LowRankMultivariateNormal`](super::LowRankMultivariateNormal) and their KL divergences:
//! a covariance held in factored form (`Σ = L Lᵀ` or `Σ = D + U Uᵀ`) and the three quantities
//! computed from the factors without forming `Σ⁻¹`:
//!
//! - `xᵀΣ⁻¹x`: `‖L⁻¹x‖²` by a triangular solve, or by Woodbury as
//!   `Σᵢ (x − U z)ᵢ²/Dᵢ + ‖z‖²`, `z = K⁻ᵀK⁻¹ Uᵀ D⁻¹ x`, with `K Kᵀ = C = I_r + Uᵀ D⁻¹ U` (the
//!   capacitance): two non-negative terms, where `Σᵢ xᵢ²/Dᵢ − ‖K⁻¹ Uᵀ D⁻¹ x‖²` cancels;
//! - `ln det Σ`: `2 Σ ln Lᵢᵢ`, or by the determinant lemma `2 Σ ln Kᵢᵢ + Σ ln Dᵢ`;
//! - `tr(Σ_q⁻¹ Σₚ)` for two covariances, for the KL divergence: for a low-rank `Σ_q`, the same
//!   sum of squares per column of `Σₚ`'s factor (Woodbury's diagonal for `Dₚ`'s columns).
//!
//! Factors are unbatched (`[d, d]`, `[d, r]`, `[d]`) or batched over one leading axis `n`.
//! A batch of row vectors `x [S.., d]` is laid out as the columns of one right-hand side
//! (`[d, M]`, or `[n, d, M/n]` when batched) so that one solve serves all rows.

use std::panic::Location;

use ndarray::{Array2, ArrayD};
use rand::{Rng, RngExt};
use rand_distr::StandardNormal;

use super::draw_shape;
use crate::broadcast::broadcast_shape;
use crate::tape::same_tape;
use crate::{Result, Scalar, Var};

/// `½ ln 2π`.
const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// An array of `shape` filled with independent standard normal draws.
pub(crate) fn standard_normal<F: Scalar, R: Rng + ?Sized>(
    shape: &[usize],
    rng: &mut R,
) -> ArrayD<F> {
    super::draw_array(shape, rng, |r| r.sample::<f64, _>(StandardNormal))
}

/// `v` broadcast to `shape`, without a node when it already has that shape.
#[track_caller]
pub(crate) fn broadcast_to<'t, F: Scalar>(v: Var<'t, F>, shape: &[usize]) -> Var<'t, F> {
    if v.shape() == shape {
        v
    } else {
        v.broadcast_to(shape)
    }
}

/// A factor batched over a leading axis of length 1 (`event_ndim` trailing axes follow) as the
/// unbatched factor, shared by the whole batch.
pub(crate) fn squeeze_unit_batch<'t, F: Scalar>(v: Var<'t, F>, event_ndim: usize) -> Var<'t, F> {
    let shape = v.shape();
    if shape.len() > event_ndim && shape[0] == 1 {
        v.reshape(&shape[1..])
    } else {
        v
    }
}

/// `A ε` row by row: `ε [k]` or `[n, k]` against `A [d, k]`, or `ε [n, k]` against a batch
/// `A [n, d, k]`; the result is `[d]` or `[n, d]`.
#[track_caller]
pub(crate) fn mat_vec<'t, F: Scalar>(a: Var<'t, F>, eps: Var<'t, F>) -> Var<'t, F> {
    let (sa, se) = (a.shape(), eps.shape());
    let (d, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    match (sa.len(), se.len()) {
        (2, 1) => eps.reshape(&[1, k]).matmul(a.t()).reshape(&[d]),
        (2, _) => eps.matmul(a.t()),
        // A ε as [n, d, k] @ [n, k, 1]: no transpose of the batch of factors
        _ => {
            let n = sa[0];
            a.matmul(eps.reshape(&[n, k, 1])).reshape(&[n, d])
        }
    }
}

/// A Gaussian covariance in factored form, as `log_prob`, `entropy` and the KL table use it.
///
/// Factors are either unbatched or batched over a leading axis of length `n`; within one
/// `Cov` all factors agree.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Cov<'t, F: Scalar> {
    /// `Σ = L Lᵀ`, `L [d, d]` or `[n, d, d]`.
    Tril(Var<'t, F>),
    /// `Σ = D + U Uᵀ`.
    LowRank(LowRankCov<'t, F>),
}

/// `Σ = D + U Uᵀ` with what Woodbury's identity and the determinant lemma need: `W = D⁻¹U` and
/// the Cholesky factor `K` of the capacitance `C = I_r + Uᵀ D⁻¹ U`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LowRankCov<'t, F: Scalar> {
    /// `U`, `[d, r]` or `[n, d, r]`.
    pub(crate) u: Var<'t, F>,
    /// The diagonal of `D`, `[d]` or `[n, d]`.
    pub(crate) diag: Var<'t, F>,
    /// `W = D⁻¹ U`, shaped as `U`.
    pub(crate) w: Var<'t, F>,
    /// `K Kᵀ = I_r + Uᵀ W`, `[r, r]` or `[n, r, r]`.
    pub(crate) k: Var<'t, F>,
}

impl<'t, F: Scalar> LowRankCov<'t, F> {
    /// Factors the capacitance of `D + U Uᵀ`, first bringing `U` and `D` to one batching (a
    /// unit batch axis is dropped; one batched factor batches the other).
    ///
    /// # Errors
    /// [`Error::NotPositiveDefinite`](crate::Error::NotPositiveDefinite) if the capacitance
    /// overflows.
    pub(crate) fn new(u: Var<'t, F>, diag: Var<'t, F>) -> Result<Self> {
        let (mut u, mut diag) = (squeeze_unit_batch(u, 2), squeeze_unit_batch(diag, 1));
        let (su, sd) = (u.shape(), diag.shape());
        if su.len() == 3 && sd.len() == 1 {
            diag = diag.broadcast_to(&[su[0], sd[0]]);
        } else if su.len() == 2 && sd.len() == 2 {
            u = u.broadcast_to(&[sd[0], su[0], su[1]]);
        }
        let r = u.shape()[u.ndim() - 1];
        let w = u / diag.unsqueeze(diag.ndim());
        let eye = u.tape().constant(Array2::<F>::eye(r));
        let k = (u.t().matmul(w) + eye).cholesky()?;
        Ok(LowRankCov { u, diag, w, k })
    }
}

impl<'t, F: Scalar> Cov<'t, F> {
    /// `Σ = L Lᵀ`; a unit batch axis on `L` is dropped.
    pub(crate) fn tril(l: Var<'t, F>) -> Self {
        Cov::Tril(squeeze_unit_batch(l, 2))
    }

    /// `Σ = D + U Uᵀ`, see [`LowRankCov::new`].
    ///
    /// # Errors
    /// [`Error::NotPositiveDefinite`](crate::Error::NotPositiveDefinite) if the capacitance
    /// overflows.
    pub(crate) fn low_rank(u: Var<'t, F>, diag: Var<'t, F>) -> Result<Self> {
        LowRankCov::new(u, diag).map(Cov::LowRank)
    }

    /// The event size `d`.
    fn dim(&self) -> usize {
        let v = match self {
            Cov::Tril(l) => *l,
            Cov::LowRank(c) => c.diag,
        };
        v.shape()[v.ndim() - 1]
    }

    /// The batch length of the factors, `None` when unbatched.
    fn batch(&self) -> Option<usize> {
        let (v, event_ndim) = match self {
            Cov::Tril(l) => (*l, 2),
            Cov::LowRank(c) => (c.u, 2),
        };
        let s = v.shape();
        (s.len() > event_ndim).then(|| s[0])
    }

    /// The factors batched over `n` (they are unbatched or batched over `n` already).
    fn expand(self, n: usize) -> Self {
        let lead = |v: Var<'t, F>| {
            let mut s = v.shape();
            s.insert(0, n);
            v.broadcast_to(&s)
        };
        if self.batch().is_some() {
            return self;
        }
        match self {
            Cov::Tril(l) => Cov::Tril(lead(l)),
            Cov::LowRank(c) => Cov::LowRank(LowRankCov {
                u: lead(c.u),
                diag: lead(c.diag),
                w: lead(c.w),
                k: lead(c.k),
            }),
        }
    }

    /// `½ ln det Σ`: `Σᵢ ln Lᵢᵢ`, or `Σᵢ ln Kᵢᵢ + ½ Σᵢ ln Dᵢ` (determinant lemma); `[]` or
    /// `[n]`.
    fn half_log_det(&self) -> Var<'t, F> {
        let sum_log = |v: Var<'t, F>| v.log().sum_axis(v.ndim() - 1);
        match self {
            Cov::Tril(l) => sum_log(l.diagonal()),
            Cov::LowRank(c) => sum_log(c.k.diagonal()) + sum_log(c.diag) * F::from_f64(0.5),
        }
    }

    /// The diagonal of `Σ`: `Σⱼ Lᵢⱼ²`, or `Dᵢ + Σⱼ Uᵢⱼ²`; `[d]` or `[n, d]`.
    pub(crate) fn diag(&self) -> Var<'t, F> {
        let row_sq = |v: Var<'t, F>| v.square().sum_axis(v.ndim() - 1);
        match self {
            Cov::Tril(l) => row_sq(*l),
            Cov::LowRank(c) => row_sq(c.u) + c.diag,
        }
    }

    /// `xᵀ Σ⁻¹ x` for each row of `x [S.., d]`, shape `S`; with batched factors the last axis
    /// of `S` is the batch axis. `‖L⁻¹x‖²`, or for `Σ = D + U Uᵀ` (O(d r + r²) per row) the
    /// sum of squares `Σᵢ (x − U z)ᵢ²/Dᵢ + ‖z‖²` of [`LowRankCov::quad_columns`], where
    /// Woodbury's difference would cancel.
    fn mahalanobis(&self, x: Var<'t, F>) -> Var<'t, F> {
        let shape = x.shape();
        let s = &shape[..shape.len() - 1];
        let n = self.batch();
        let cols = columns(x, n);
        match self {
            Cov::Tril(l) => uncolumns(sq_norm_columns(l.solve_tril(cols), n), n, s),
            Cov::LowRank(c) => uncolumns(c.quad_columns(cols), n, s),
        }
    }

    /// `tr(Σ⁻¹ Σₚ)` for another covariance `p` with the same batching; `[]` or `[n]`.
    ///
    /// With `Σₚ = A Aᵀ` (`A = Lₚ`, or `A = [Dₚ^½ | Uₚ]` for a low-rank `p`),
    /// `tr(Σ⁻¹Σₚ) = Σⱼ aⱼᵀ Σ⁻¹ aⱼ` over the columns `aⱼ` of `A`: `‖L⁻¹A‖²_F` for a Cholesky
    /// `Σ`. For a low-rank `Σ = D + U Uᵀ`:
    ///
    /// - each column of `Lₚ` or `Uₚ` goes through [`LowRankCov::quad_columns`], the sum of
    ///   squares `mahalanobis` uses;
    /// - the columns `√Dₚⱼ eⱼ` give `Σⱼ Dₚⱼ (Σ⁻¹)ⱼⱼ` with Woodbury's diagonal
    ///   `(Σ⁻¹)ⱼⱼ = 1/Dⱼ − ‖K⁻¹ Wᵀ eⱼ‖²`, so no `d × d` matrix is formed for a low-rank `p`.
    ///
    /// Why: Woodbury on the whole trace, `Σᵢ (Σₚ)ᵢᵢ / Dᵢ − ‖K⁻¹ Wᵀ A‖²_F`, subtracts two terms of
    /// size `‖Uₚ‖²/D` whose difference is the trace (about `d` when `p ≈ q`): with `D ≪ U Uᵀ`
    /// that lost every digit in `f32`. The diagonal's difference is benign: with `h_j` the
    /// leverage of row `j` of `D^{-½}U` (`h_j = ‖Pⱼ‖²` for the projector `P` onto its span),
    /// `(Σ⁻¹)ⱼⱼ ≈ (1 − hⱼ)/Dⱼ`, so its relative error is about `ε κ / (1 − hⱼ)`: it cancels only
    /// for a coordinate axis (nearly) inside the span of `U`, as when `r ≥ d`.
    fn trace_inv(&self, p: &Cov<'t, F>) -> Var<'t, F> {
        match (self, p) {
            (Cov::Tril(l), Cov::Tril(lp)) => frobenius_sq(l.solve_tril(*lp)),
            (Cov::Tril(l), Cov::LowRank(cp)) => {
                let a = Var::concat(&[diag_matrix(cp.diag.sqrt()), cp.u], cp.u.ndim() - 1);
                frobenius_sq(l.solve_tril(a))
            }
            (Cov::LowRank(c), Cov::Tril(lp)) => {
                let q = c.quad_columns(*lp);
                q.sum_axis(q.ndim() - 1)
            }
            (Cov::LowRank(c), Cov::LowRank(cp)) => {
                let last = c.diag.ndim() - 1;
                // (Σ⁻¹)ⱼⱼ = 1/Dⱼ − Σₖ (K⁻¹Wᵀ)ₖⱼ²: [d] or [n, d]
                let k_inv_wt = c.k.solve_tril(c.w.t());
                let diag_inv = c.diag.recip() - k_inv_wt.square().sum_axis(last);
                let by_diag = (cp.diag * diag_inv).sum_axis(last);
                let by_factor = c.quad_columns(cp.u);
                by_diag + by_factor.sum_axis(by_factor.ndim() - 1)
            }
        }
    }
}

impl<'t, F: Scalar> LowRankCov<'t, F> {
    /// `aᵀ Σ⁻¹ a` for each column `a` of `cols` (`[d, M]`, or `[n, d, M]` when batched), as
    /// `[M]` or `[n, M]`: `Σᵢ (a − U z)ᵢ²/Dᵢ + ‖z‖²`, `z = C⁻¹ Uᵀ D⁻¹ a = K⁻ᵀ K⁻¹ Wᵀ a`
    /// (O(d r + r²) per column).
    ///
    /// Why: Woodbury's `Σᵢ aᵢ²/Dᵢ − ‖K⁻¹Wᵀa‖²` subtracts two terms that nearly cancel when
    /// `D ≪ U Uᵀ` (an error of `ε Σᵢ aᵢ²/Dᵢ`, 28% in `f32` at `D = 10⁻⁷`). With `y = D^{-½}a`,
    /// `A = D^{-½}U` and `r = (I + AAᵀ)⁻¹y = y − Az`, `Aᵀr = z`, so
    /// `yᵀr = (r + Az)ᵀr = ‖r‖² + ‖z‖²`: a sum of non-negative terms (ridge regression's
    /// objective at its minimum). The one subtraction left, `a − Uz`, is a least-squares
    /// residual, as accurate as the data determine it.
    fn quad_columns(&self, cols: Var<'t, F>) -> Var<'t, F> {
        let r = self.k.shape()[self.k.ndim() - 1];
        let eye = broadcast_to(self.k.tape().constant(Array2::<F>::eye(r)), &self.k.shape());
        // K⁻ᵀ from K⁻¹ (r × r): the tape solves lower-triangular systems only
        let k_inv_t = self.k.solve_tril(eye).t();
        let z = k_inv_t.matmul(self.k.solve_tril(self.w.t().matmul(cols)));
        let resid = cols - self.u.matmul(z);
        // (r/√D)², not r²/D: the backward of r²/D is 2r · (g/D), 0 · ∞ = NaN at r = 0 for a
        // subnormal D, where the gradient is 0
        let scaled = (resid / self.diag.sqrt().unsqueeze(self.diag.ndim())).square();
        let rows = cols.ndim() - 2;
        z.square().sum_axis(rows) + scaled.sum_axis(rows)
    }
}

/// `x [S.., d]` as the columns of a right-hand side for a solve against the factors: `[d, M]`
/// (`M = |S|`) when unbatched, `[n, d, M/n]` when batched over `n`, the last axis of `S`.
fn columns<'t, F: Scalar>(x: Var<'t, F>, n: Option<usize>) -> Var<'t, F> {
    let shape = x.shape();
    let d = shape[shape.len() - 1];
    let m = x.len() / d;
    match n {
        None => x.reshape(&[m, d]).t(),
        Some(n) if n == m => x.reshape(&[n, d, 1]),
        // x[k, i, j] → out[i, j, k]
        Some(n) => x.reshape(&[m / n, n * d]).t().reshape(&[n, d, m / n]),
    }
}

/// The squared norm of each column of [`columns`]'s layout: `[M]` or `[n, M/n]`.
fn sq_norm_columns<'t, F: Scalar>(cols: Var<'t, F>, n: Option<usize>) -> Var<'t, F> {
    cols.square().sum_axis(if n.is_some() { 1 } else { 0 })
}

/// One value per column of [`columns`]'s layout, back in the row shape `s`.
fn uncolumns<'t, F: Scalar>(v: Var<'t, F>, n: Option<usize>, s: &[usize]) -> Var<'t, F> {
    match n {
        Some(_) if v.shape()[1] != 1 => v.t().reshape(s),
        _ => v.reshape(s),
    }
}

/// `Σ` of the squares over the last two axes: `[]` or `[n]`.
fn frobenius_sq<'t, F: Scalar>(a: Var<'t, F>) -> Var<'t, F> {
    let nd = a.ndim();
    a.square().sum_axis(nd - 1).sum_axis(nd - 2)
}

/// The diagonal matrix with diagonal `s [d]` or `[n, d]`: `[d, d]` or `[n, d, d]`.
pub(crate) fn diag_matrix<'t, F: Scalar>(s: Var<'t, F>) -> Var<'t, F> {
    let d = s.shape()[s.ndim() - 1];
    let eye = s.tape().constant(Array2::<F>::eye(d));
    // (I ⊙ s)ᵢⱼ = δᵢⱼ sⱼ
    if s.ndim() == 1 {
        eye * s
    } else {
        eye * s.unsqueeze(1)
    }
}

/// `log N(x; μ, Σ) = −½ xᵀΣ⁻¹x − ½ ln det Σ − (d/2) ln 2π`, shape `broadcast(x.shape[..-1],
/// batch)`.
///
/// # Panics
/// If `x` is not `[.., d]` with leading axes that broadcast against `batch`.
#[track_caller]
pub(crate) fn gaussian_log_prob<'t, F: Scalar>(
    name: &'static str,
    loc: Var<'t, F>,
    cov: &Cov<'t, F>,
    batch: &[usize],
    x: Var<'t, F>,
) -> Var<'t, F> {
    let location = Location::caller();
    same_tape(name, x, loc);
    let d = loc.shape()[loc.ndim() - 1];
    let xs = x.shape();
    let rows = xs
        .split_last()
        .filter(|(last, _)| **last == d)
        .and_then(|(_, lead)| broadcast_shape(lead, batch))
        .unwrap_or_else(|| {
            panic!(
                "{name}::log_prob: value {xs:?} does not fit batch shape {batch:?} and event \
                 shape [{d}] (at {location})"
            )
        });
    let diff = broadcast_to(x - loc, &draw_shape(&rows, &[d]));
    let quad = match diff.with_value(unbounded_rows) {
        None => cov.mahalanobis(diff),
        // An infinite deviation (an infinite `x`, or `x − μ` overflowing) makes `xᵀΣ⁻¹x = +∞`,
        // but the solves would give ∞ − ∞ = NaN: such rows are solved as 0 and get +∞ added,
        // so their density is −∞ with zero gradient, and the other rows are unchanged.
        Some(infinite) => {
            let tape = diff.tape;
            let added = tape.constant(infinite.mapv(|r| if r { F::infinity() } else { F::zero() }));
            cov.mahalanobis(tape.apply(ZeroRows(infinite), &[diff])) + added
        }
    };
    quad * F::from_f64(-0.5) - cov.half_log_det() - F::from_f64(d as f64 * HALF_LN_2PI)
}

/// Which rows (along the last axis) of `v` hold an infinite coordinate and no NaN (a NaN row stays
/// NaN), shaped as `v` without its last axis; `None` if every value is finite (the common
/// case, which records nothing more).
fn unbounded_rows<F: Scalar>(v: &ArrayD<F>) -> Option<ArrayD<bool>> {
    if v.iter().all(|x| x.is_finite()) {
        return None;
    }
    Some(v.map_axis(ndarray::Axis(v.ndim() - 1), |r| {
        r.iter().any(|x| x.is_infinite()) && !r.iter().any(|x| x.is_nan())
    }))
}

/// Rows of the last axis zeroed where `rows` is set, in value and gradient alike (the
/// gradient of a constant-zero row is zero).
struct ZeroRows(ArrayD<bool>);

impl ZeroRows {
    fn zeroed<F: Scalar>(&self, a: &ArrayD<F>) -> ArrayD<F> {
        let mut out = a.clone();
        let last = ndarray::Axis(out.ndim() - 1);
        for (mut row, &zero) in out.lanes_mut(last).into_iter().zip(self.0.iter()) {
            if zero {
                row.fill(F::zero());
            }
        }
        out
    }
}

impl<F: Scalar> crate::ops::CustomOp<F> for ZeroRows {
    fn name(&self) -> &'static str {
        "zero_unbounded_rows"
    }

    fn forward(&self, inputs: &[&ArrayD<F>]) -> ArrayD<F> {
        self.zeroed(inputs[0])
    }

    fn backward(&self, b: &crate::ops::Backward<'_, F>) -> Vec<Option<ArrayD<F>>> {
        vec![Some(self.zeroed(b.grad()))]
    }

    fn keeps_rows(&self, _: usize, _: &[&[usize]], _: &[usize]) -> bool {
        true
    }
}

/// `H = (d/2)(1 + ln 2π) + ½ ln det Σ`, shape `batch`.
pub(crate) fn gaussian_entropy<'t, F: Scalar>(cov: &Cov<'t, F>, batch: &[usize]) -> Var<'t, F> {
    let d = cov.dim();
    let h = cov.half_log_det() + F::from_f64(d as f64 * (0.5 + HALF_LN_2PI));
    broadcast_to(h, batch)
}

/// `KL(N(μₚ, Σₚ) ‖ N(μ_q, Σ_q)) = ½[tr(Σ_q⁻¹Σₚ) + δᵀΣ_q⁻¹δ − d] + ½ ln det Σ_q − ½ ln det Σₚ`
/// with `δ = μ_q − μₚ`, shape: the broadcast batch shape. Low-rank `Σ_q` goes through
/// Woodbury's identity and the determinant lemma, so no `d × d` inverse is formed for it.
pub(crate) fn gaussian_kl<'t, F: Scalar>(
    loc_p: Var<'t, F>,
    cov_p: Cov<'t, F>,
    loc_q: Var<'t, F>,
    cov_q: Cov<'t, F>,
) -> Var<'t, F> {
    let lead = |v: Var<'t, F>, event_ndim: usize| {
        let s = v.shape();
        s[..s.len() - event_ndim].to_vec()
    };
    let factor_batch = |c: &Cov<'t, F>| match c {
        Cov::Tril(l) => lead(*l, 2),
        Cov::LowRank(c) => lead(c.u, 2),
    };
    let batch = [lead(loc_q, 1), factor_batch(&cov_p), factor_batch(&cov_q)]
        .iter()
        .fold(lead(loc_p, 1), |acc, s| {
            broadcast_shape(&acc, s).expect("KL shapes checked by the caller")
        });
    let d = loc_p.shape()[loc_p.ndim() - 1];
    let (cov_p, cov_q) = match (cov_p.batch(), cov_q.batch()) {
        (None, None) => (cov_p, cov_q),
        _ => (cov_p.expand(batch[0]), cov_q.expand(batch[0])),
    };
    let delta = broadcast_to(loc_q - loc_p, &draw_shape(&batch, &[d]));
    let half = F::from_f64(0.5);
    let kl = (cov_q.trace_inv(&cov_p) + cov_q.mahalanobis(delta) - F::from_f64(d as f64)) * half
        + cov_q.half_log_det()
        - cov_p.half_log_det();
    broadcast_to(kl, &batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tape;

    #[test]
    fn columns_round_trip_in_every_layout() {
        let tape = Tape::<f64>::new();
        let x = tape.constant(ArrayD::from_shape_fn(vec![2, 3, 4], |i| {
            (i[0] * 100 + i[1] * 10 + i[2]) as f64
        }));
        // batched over n = 3: out[i, j, k] = x[k, i, j]
        let c = columns(x, Some(3)).value();
        assert_eq!(c.shape(), &[3, 4, 2]);
        assert_eq!(c[[2, 1, 0]], 21.0);
        assert_eq!(c[[1, 3, 1]], 113.0);
        let back = uncolumns(
            tape.constant(c.sum_axis(ndarray::Axis(1))),
            Some(3),
            &[2, 3],
        );
        assert_eq!(back.value()[[1, 2]], 120.0 + 121.0 + 122.0 + 123.0);
        // unbatched: [d, M]
        let c = columns(x, None).value();
        assert_eq!(c.shape(), &[4, 6]);
        assert_eq!(c[[3, 5]], 123.0);
    }
}
