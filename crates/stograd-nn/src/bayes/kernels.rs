//! Fused kernels of the Bayesian layer, as [`CustomOp`]s, each with the derivation of its
//! backward rule; all are gradient-checked in `tests/bayes.rs`.
//!
//! The layer's costly work is elementwise over its weights, not its matrix products: a
//! `784 × 400` layer at batch 128 spends less time in its four products than in one
//! composed `softplus`, `square` and KL over its 313,600 `ρ`s. So every transcendental
//! function of `ρ` is evaluated once per step: [`SoftplusSquare`] computes `v = σ²` and
//! keeps `∂v/∂ρ` for its backward, and the KL kernels take `v`, not `ρ`, so that the
//! gradients of the likelihood and of the KL with respect to `v` add up before the one
//! backward pass through the softplus.
//!
//! With `σ = softplus(ρ) = ln(1 + e^ρ)`, `σ' = sigmoid(ρ)` and `v = σ²`:
//!
//! - [`SoftplusSquare`]: `v = σ²`, `∂v/∂ρ = 2σ·sigmoid(ρ)`;
//! - [`Reparameterize`]: `b = m + √δ·ε` for the local reparameterization,
//!   `∂b/∂m = 1`, `∂b/∂δ = ε / (2√δ)` (taken as 0 at `δ = 0`), `∂b/∂ε = √δ`;
//! - [`NormalKl`]: `Σ KL(N(μ, v) ‖ N(0, σ_p²)) = Σ ½ ln(σ_p²/v) + (v + μ²)/(2σ_p²) − ½`,
//!   `∂/∂μ = μ/σ_p²`, `∂/∂v = 1/(2σ_p²) − 1/(2v)`;
//! - [`MixtureKl`]: the one-draw estimate `Σ −H[q] − ln p(w)` of the KL to a scale-mixture
//!   prior, `w = μ + √v·ε`, `−H[q] = −½ ln v − ½ ln(2πe)` and
//!   `ln p(w) = ln(π N(w; 0, σ₁²) + (1 − π) N(w; 0, σ₂²))`. With
//!   `d = −(ln p)'(w) = w·(r/σ₁² + (1 − r)/σ₂²)`, `r = sigmoid(a − b)` the first component's
//!   responsibility (`a`, `b` the components' log terms): `∂/∂μ = d`,
//!   `∂/∂v = −1/(2v) + d·ε/(2√v)`, `∂/∂ε = d·√v`.
//!
//! The transcendental functions are the engine's vectorizable [`Scalar::exp_neg_abs`] and
//! [`Scalar::log1p_exp_neg_abs`], and in `f32` a vectorizable `ln` of products of four
//! variances for the KLs' `Σ ln v` (the C library's in `f64`). Arrays of at least [`PARALLEL`] elements are split over rayon's
//! pool. Sums are accumulated in `f64`.

use std::cell::RefCell;

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;
use stograd::Scalar;
use stograd::ops::{Backward, CustomOp, custom};

/// Arrays with at least this many elements are processed on rayon's pool, as the engine's
/// elementwise ops are.
const PARALLEL: usize = 1 << 15;

/// The length of the blocks a sum is split into.
const BLOCK: usize = 2048;

/// `(softplus(x), sigmoid(x))` from one `e^{−|x|}`: `softplus(x) = max(x, 0) + ln(1 + e^{−|x|})`,
/// exact for large `|x|`, and `sigmoid(x)` without overflow.
#[inline(always)]
fn softplus_sigmoid<F: Scalar>(x: F) -> (F, F) {
    let e = x.exp_neg_abs();
    let r = F::one() / (F::one() + e);
    let sigmoid = if x >= F::zero() { r } else { e * r };
    (x.max(F::zero()) + x.log1p_exp_neg_abs(), sigmoid)
}

/// `sigmoid(x)`, as above.
#[inline(always)]
fn sigmoid<F: Scalar>(x: F) -> F {
    let e = x.exp_neg_abs();
    let r = F::one() / (F::one() + e);
    if x >= F::zero() { r } else { e * r }
}

/// The values of a standard-layout array, as a slice.
fn values<F: Scalar>(a: &ArrayD<F>) -> &[F] {
    a.as_slice()
        .expect("the Bayesian kernels' inputs are contiguous (parameters and fresh values)")
}

/// The chunk length that splits `len` elements over rayon's threads.
fn chunk_len(len: usize) -> usize {
    len.div_ceil(rayon::current_num_threads())
        .next_multiple_of(64)
}

/// An array of `shape` (from the engine's buffer pool) filled chunk by chunk: `body(start,
/// chunk)` writes the elements from `start` on, on rayon's pool when the array is large.
fn fill<F: Scalar>(shape: &[usize], body: impl Fn(usize, &mut [F]) + Sync) -> ArrayD<F> {
    // `body` writes every element
    let mut out = custom::for_overwrite(shape);
    let data = out.as_slice_mut().expect("a new array is contiguous");
    if data.len() < PARALLEL {
        body(0, data);
    } else {
        let chunk = chunk_len(data.len());
        data.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, part)| body(i * chunk, part));
    }
    out
}

/// Two arrays of `shape` filled together, as [`fill`] fills one.
fn fill2<F: Scalar>(
    shape: &[usize],
    body: impl Fn(usize, &mut [F], &mut [F]) + Sync,
) -> (ArrayD<F>, ArrayD<F>) {
    let (mut a, mut b) = (custom::for_overwrite(shape), custom::for_overwrite(shape));
    let x = a.as_slice_mut().expect("a new array is contiguous");
    let y = b.as_slice_mut().expect("a new array is contiguous");
    if x.len() < PARALLEL {
        body(0, x, y);
    } else {
        let chunk = chunk_len(x.len());
        x.par_chunks_mut(chunk)
            .zip(y.par_chunks_mut(chunk))
            .enumerate()
            .for_each(|(i, (x, y))| body(i * chunk, x, y));
    }
    (a, b)
}

/// `Σ body(block)` over consecutive blocks of `0..len`, on rayon's pool when `len` is large.
fn block_sum(len: usize, body: impl Fn(std::ops::Range<usize>) -> f64 + Sync) -> f64 {
    let blocks = len.div_ceil(BLOCK);
    let block = |b: usize| body(b * BLOCK..((b + 1) * BLOCK).min(len));
    if len < PARALLEL {
        (0..blocks).map(block).sum()
    } else {
        (0..blocks).into_par_iter().map(block).sum()
    }
}

/// `Σ terms` in 8 interleaved partial sums, which the compiler vectorizes (one running sum
/// is a chain of dependent additions it may not reorder), then in `f64`.
fn lane_sum<F: Scalar>(terms: &[F]) -> f64 {
    let mut lanes = [F::zero(); 8];
    let chunks = terms.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        lanes.iter_mut().zip(chunk).for_each(|(l, &t)| *l += t);
    }
    lanes.iter().chain(rest).map(|v| v.as_f64()).sum()
}

/// `Σ ln vᵢ` for positive `vᵢ`.
///
/// In `f64`, with the C library's `ln`. In `f32`, with one logarithm per 4 values, of their
/// product in `f64` (any 4 positive `f32` values, subnormal or huge, multiply to a normal
/// `f64` within `10^±180`, with a relative error of a few `f64` ulp), and that logarithm by
/// [`ln_normal`], which the compiler vectorizes: the sum is exact to far below `f32`
/// precision. A zero, infinite or NaN value gives the C library's answer (`−∞`, `+∞`, NaN).
fn sum_ln<F: Scalar>(v: &[F]) -> f64 {
    if F::max_value().as_f64() > 1e39 {
        return v.iter().map(|v| v.as_f64().ln()).sum();
    }
    let mut products = [0f64; BLOCK / 4 + 3];
    let mut total = 0.0;
    for block in v.chunks(BLOCK) {
        // the products of the block's four quarters, elementwise (the order of a sum's
        // terms does not matter), and the 0 to 3 values left over on their own
        let q = block.len() / 4;
        let (a, rest) = block.split_at(q);
        let (b, rest) = rest.split_at(q);
        let (c, rest) = rest.split_at(q);
        let (d, left) = rest.split_at(q);
        let quarters = a.iter().zip(b).zip(c.iter().zip(d));
        for (p, ((&a, &b), (&c, &d))) in products.iter_mut().zip(quarters) {
            *p = (a.as_f64() * b.as_f64()) * (c.as_f64() * d.as_f64());
        }
        for (p, &v) in products[q..].iter_mut().zip(left) {
            *p = v.as_f64();
        }
        let products = &products[..q + left.len()];
        if products.iter().all(|&p| p.is_normal() && p > 0.0) {
            let mut lanes = [0f64; 8];
            let chunks = products.chunks_exact(8);
            let rest: f64 = chunks.remainder().iter().map(|&p| ln_normal(p)).sum();
            for chunk in chunks {
                lanes
                    .iter_mut()
                    .zip(chunk)
                    .for_each(|(l, &p)| *l += ln_normal(p));
            }
            total += lanes.iter().sum::<f64>() + rest;
        } else {
            total += products.iter().map(|p| p.ln()).sum::<f64>();
        }
    }
    total
}

/// `ln x` for a positive normal `x`, to about `10⁻¹¹` absolute: `x = 2ᵉ m` with `m` in
/// `[√½, √2)` from the bits of `x`, and `ln m = 2 artanh(s) = 2s (1 + s²/3 + … + s¹⁰/11)` for
/// `s = (m − 1)/(m + 1)`, `|s| ≤ 0.172` (the first term left out is below `2·10⁻¹¹`).
#[inline(always)]
fn ln_normal(x: f64) -> f64 {
    const MANTISSA: u64 = (1 << 52) - 1;
    let bits = x.to_bits();
    let exponent = ((bits >> 52) as i64 - 1023) as f64;
    let m = f64::from_bits((bits & MANTISSA) | (1023 << 52)); // in [1, 2)
    let (m, exponent) = if m > std::f64::consts::SQRT_2 {
        (m * 0.5, exponent + 1.0)
    } else {
        (m, exponent)
    };
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let s4 = s2 * s2;
    let series = (1.0 + s2 / 3.0) + s4 * ((1.0 / 5.0 + s2 / 7.0) + s4 * (1.0 / 9.0 + s2 / 11.0));
    exponent * std::f64::consts::LN_2 + 2.0 * s * series
}

/// A scalar output's gradient as an element.
fn scalar_grad<F: Scalar>(b: &Backward<'_, F>) -> F {
    *b.grad().first().expect("a scalar gradient")
}

/// Whether an elementwise op's input has the output's shape, with a leading axis: then row
/// `r` of the output reads row `r` of that input alone.
fn aligned(input: &[usize], output: &[usize]) -> bool {
    !input.is_empty() && input == output
}

/// `softplus(ρ)²`, elementwise: the variance of each weight from its `ρ`. The forward pass
/// also keeps `∂v/∂ρ = 2σ·sigmoid(ρ)`, computed from the same `e^{−|ρ|}`, for the backward.
pub(super) struct SoftplusSquare<F: Scalar> {
    slope: RefCell<Option<ArrayD<F>>>,
}

impl<F: Scalar> SoftplusSquare<F> {
    pub(super) fn new() -> Self {
        SoftplusSquare {
            slope: RefCell::new(None),
        }
    }
}

impl<F: Scalar> CustomOp<F> for SoftplusSquare<F> {
    fn name(&self) -> &'static str {
        "softplus_square"
    }

    fn forward(&self, inputs: &[&ArrayD<F>]) -> ArrayD<F> {
        let rho = values(inputs[0]);
        let two = F::from_f64(2.0);
        let (v, slope) = fill2(inputs[0].shape(), |start, v, slope| {
            let outputs = v.iter_mut().zip(slope.iter_mut());
            for ((v, d), &r) in outputs.zip(&rho[start..]) {
                let (s, sig) = softplus_sigmoid(r);
                *v = s * s;
                *d = two * s * sig;
            }
        });
        *self.slope.borrow_mut() = Some(slope);
        v
    }

    fn backward(&self, b: &Backward<'_, F>) -> Vec<Option<ArrayD<F>>> {
        let slope = self.slope.borrow();
        let slope = values(slope.as_ref().expect("forward ran"));
        let g = values(b.grad());
        let d = fill(b.grad().shape(), |start, out| {
            for ((o, &d), &g) in out.iter_mut().zip(&slope[start..]).zip(&g[start..]) {
                *o = d * g;
            }
        });
        vec![Some(d)]
    }

    fn keeps_rows(&self, input: usize, inputs: &[&[usize]], output: &[usize]) -> bool {
        aligned(inputs[input], output)
    }
}

/// `m + √δ·ε`, elementwise: a draw from `N(m, δ)` with standard normal noise `ε`.
pub(super) struct Reparameterize;

impl<F: Scalar> CustomOp<F> for Reparameterize {
    fn name(&self) -> &'static str {
        "local_reparameterize"
    }

    fn forward(&self, inputs: &[&ArrayD<F>]) -> ArrayD<F> {
        let (m, v, e) = (values(inputs[0]), values(inputs[1]), values(inputs[2]));
        fill(inputs[0].shape(), |start, out| {
            let inputs = m[start..].iter().zip(&v[start..]).zip(&e[start..]);
            for (o, ((&m, &v), &e)) in out.iter_mut().zip(inputs) {
                *o = v.sqrt().mul_add(e, m);
            }
        })
    }

    fn backward(&self, b: &Backward<'_, F>) -> Vec<Option<ArrayD<F>>> {
        let shape = b.grad().shape();
        let (v, e, g) = (values(b.input(1)), values(b.input(2)), values(b.grad()));
        let half = F::from_f64(0.5);
        let dv = b.needs(1).then(|| {
            fill(shape, |start, out| {
                let inputs = v[start..].iter().zip(&e[start..]).zip(&g[start..]);
                for (o, ((&v, &e), &g)) in out.iter_mut().zip(inputs) {
                    // δ = 0 only where every path into it has derivative 0 (see forward)
                    *o = if v > F::zero() {
                        g * e * half / v.sqrt()
                    } else {
                        F::zero()
                    };
                }
            })
        });
        let de = b.needs(2).then(|| {
            fill(shape, |start, out| {
                for ((o, &v), &g) in out.iter_mut().zip(&v[start..]).zip(&g[start..]) {
                    *o = g * v.sqrt();
                }
            })
        });
        vec![b.needs(0).then(|| b.grad().clone()), dv, de]
    }

    fn keeps_rows(&self, input: usize, inputs: &[&[usize]], output: &[usize]) -> bool {
        aligned(inputs[input], output)
    }
}

/// `Σ KL(N(μ, v) ‖ N(0, σ_p²))` over all elements, inputs `(μ, v)`: a scalar.
pub(super) struct NormalKl {
    /// `σ_p`.
    pub(super) prior_std: f64,
}

impl<F: Scalar> CustomOp<F> for NormalKl {
    fn name(&self) -> &'static str {
        "normal_kl"
    }

    fn forward(&self, inputs: &[&ArrayD<F>]) -> ArrayD<F> {
        let (mu, v) = (values(inputs[0]), values(inputs[1]));
        let inv_2var = 0.5 / (self.prior_std * self.prior_std);
        let total = block_sum(mu.len(), |range| {
            let (mu, v) = (&mu[range.clone()], &v[range]);
            let mut t = [F::zero(); BLOCK];
            let t = &mut t[..mu.len()];
            for ((t, &v), &m) in t.iter_mut().zip(v).zip(mu) {
                *t = m.mul_add(m, v);
            }
            lane_sum(t) * inv_2var - 0.5 * sum_ln(v)
        });
        // the constant terms ln σ_p − ½, once per element
        let n = mu.len() as f64;
        let kl = total + n * (self.prior_std.ln() - 0.5);
        ArrayD::from_elem(IxDyn(&[]), F::from_f64(kl))
    }

    fn backward(&self, b: &Backward<'_, F>) -> Vec<Option<ArrayD<F>>> {
        let g = scalar_grad(b);
        let (mu, v) = (values(b.input(0)), values(b.input(1)));
        let inv_var = F::from_f64(1.0 / (self.prior_std * self.prior_std));
        let half = F::from_f64(0.5);
        let shape = b.input(0).shape();
        let d_mu = move |m: F| g * m * inv_var;
        let d_v = move |v: F| g * half * (inv_var - F::one() / v);
        if b.needs(0) && b.needs(1) {
            // one pass (and one parallel region) for both
            let (a, c) = fill2(shape, |start, a, c| {
                let outputs = a.iter_mut().zip(c.iter_mut());
                for ((a, c), (&m, &v)) in outputs.zip(mu[start..].iter().zip(&v[start..])) {
                    *a = d_mu(m);
                    *c = d_v(v);
                }
            });
            return vec![Some(a), Some(c)];
        }
        let map = |x: &[F], f: &(dyn Fn(F) -> F + Sync)| {
            fill(shape, |start, out| {
                for (o, &x) in out.iter_mut().zip(&x[start..]) {
                    *o = f(x);
                }
            })
        };
        vec![
            b.needs(0).then(|| map(mu, &d_mu)),
            b.needs(1).then(|| map(v, &d_v)),
        ]
    }
}

/// The one-draw Monte Carlo estimate of `Σ KL(q ‖ p)` for a scale-mixture prior `p`:
/// `Σ −H[N(μ, v)] − ln p(μ + √v·ε)` over all elements, inputs `(μ, v, ε)`; a scalar.
pub(super) struct MixtureKl {
    /// `ln π`, `ln(1 − π)`.
    pub(super) ln_weights: (f64, f64),
    /// `σ₁`, `σ₂`.
    pub(super) sigmas: (f64, f64),
}

impl MixtureKl {
    /// `(a, b, 1/σ₁², 1/σ₂²)` at `w`, where `ln p(w) = ln(eᵃ + eᵇ) − ½ ln 2π`.
    #[inline(always)]
    fn terms<F: Scalar>(&self, w: F) -> (F, F, F, F) {
        let (s1, s2) = self.sigmas;
        let p1 = F::from_f64(1.0 / (s1 * s1));
        let p2 = F::from_f64(1.0 / (s2 * s2));
        let c1 = F::from_f64(self.ln_weights.0 - s1.ln());
        let c2 = F::from_f64(self.ln_weights.1 - s2.ln());
        let half_w2 = F::from_f64(0.5) * w * w;
        (c1 - half_w2 * p1, c2 - half_w2 * p2, p1, p2)
    }

    /// `−(ln p)'(w) = w·(r/σ₁² + (1 − r)/σ₂²)`.
    #[inline(always)]
    fn neg_score<F: Scalar>(&self, w: F) -> F {
        let (a, b, p1, p2) = self.terms(w);
        let r = sigmoid(a - b);
        w * (r * p1 + (F::one() - r) * p2)
    }

    /// `g · grad(√v, v, d, ε)` elementwise, with `d = −(ln p)'(w)` at `w = μ + √v·ε`: an
    /// input gradient needed alone is one pass recomputing `w` and `d`.
    fn gradient<F: Scalar>(
        &self,
        g: F,
        [mu, v, eps]: [&[F]; 3],
        shape: &[usize],
        grad: impl Fn(F, F, F, F) -> F + Sync,
    ) -> ArrayD<F> {
        fill(shape, |start, out| {
            let inputs = mu[start..].iter().zip(&v[start..]).zip(&eps[start..]);
            for (o, ((&m, &v), &e)) in out.iter_mut().zip(inputs) {
                let s = v.sqrt();
                *o = g * grad(s, v, self.neg_score(s.mul_add(e, m)), e);
            }
        })
    }

    /// [`gradient`](Self::gradient) for two input gradients (μ's and v's, the ones training
    /// needs) in one pass, which computes `w` and `d`, the costly part, once for both.
    fn gradients2<F: Scalar>(
        &self,
        g: F,
        [mu, v, eps]: [&[F]; 3],
        shape: &[usize],
        grad_a: impl Fn(F, F, F, F) -> F + Sync,
        grad_b: impl Fn(F, F, F, F) -> F + Sync,
    ) -> (ArrayD<F>, ArrayD<F>) {
        fill2(shape, |start, a, b| {
            let inputs = mu[start..].iter().zip(&v[start..]).zip(&eps[start..]);
            for ((a, b), ((&m, &v), &e)) in a.iter_mut().zip(b.iter_mut()).zip(inputs) {
                let s = v.sqrt();
                let d = self.neg_score(s.mul_add(e, m));
                *a = g * grad_a(s, v, d, e);
                *b = g * grad_b(s, v, d, e);
            }
        })
    }
}

impl<F: Scalar> CustomOp<F> for MixtureKl {
    fn name(&self) -> &'static str {
        "scale_mixture_kl_estimate"
    }

    fn forward(&self, inputs: &[&ArrayD<F>]) -> ArrayD<F> {
        let (mu, v, eps) = (values(inputs[0]), values(inputs[1]), values(inputs[2]));
        let total = block_sum(mu.len(), |range| {
            let (mu, v, eps) = (&mu[range.clone()], &v[range.clone()], &eps[range]);
            let mut t = [F::zero(); BLOCK];
            let t = &mut t[..mu.len()];
            for ((t, &v), (&m, &e)) in t.iter_mut().zip(v).zip(mu.iter().zip(eps)) {
                // ln(eᵃ + eᵇ); the constants are added once below
                let (a, b, _, _) = self.terms(v.sqrt().mul_add(e, m));
                *t = a.max(b) + (a - b).log1p_exp_neg_abs();
            }
            -lane_sum(t) - 0.5 * sum_ln(v)
        });
        // −H[N(μ, v)] = −½ ln v − ½ ln(2πe) and −ln p(w) = … + ½ ln 2π: together −½ per element
        let kl = total - 0.5 * mu.len() as f64;
        ArrayD::from_elem(IxDyn(&[]), F::from_f64(kl))
    }

    fn backward(&self, b: &Backward<'_, F>) -> Vec<Option<ArrayD<F>>> {
        let g = scalar_grad(b);
        let inputs = [values(b.input(0)), values(b.input(1)), values(b.input(2))];
        let shape = b.input(0).shape();
        let half = F::from_f64(0.5);
        let grad_mu = |_, _, d, _| d;
        let grad_v = |s: F, v: F, d: F, e: F| half * (d * e / s - F::one() / v);
        let (d_mu, d_v) = if b.needs(0) && b.needs(1) {
            let (d_mu, d_v) = self.gradients2(g, inputs, shape, grad_mu, grad_v);
            (Some(d_mu), Some(d_v))
        } else {
            (
                b.needs(0).then(|| self.gradient(g, inputs, shape, grad_mu)),
                b.needs(1).then(|| self.gradient(g, inputs, shape, grad_v)),
            )
        };
        let d_eps = b
            .needs(2)
            .then(|| self.gradient(g, inputs, shape, |s, _, d, _| d * s));
        vec![d_mu, d_v, d_eps]
    }
}
