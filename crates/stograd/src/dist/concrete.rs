//! The Concrete log-densities as fused kernels: one pass per element (binary) or per lane of
//! categories (one-hot), finite wherever the density or its limit is, including the boundary
//! of the support, where the composed formulas give `∞ − ∞`.

use ndarray::{ArrayD, Axis, Zip};

use crate::Scalar;
use crate::ops::{Backward, CustomOp};

/// `g · d`, except that a zero incoming gradient contributes nothing even where the local
/// derivative is infinite (at the boundary of the support).
fn times<F: Scalar>(g: F, d: F) -> F {
    if g == F::zero() { F::zero() } else { g * d }
}

/// The binary Concrete log density at temperature `τ`; inputs `[l, y]` of one shape.
///
/// With `t = ln y − ln(1 − y)` and `d = l − τt`,
/// `log q(y) = ln τ + ℓ(d) − ln y − ln(1 − y)`, `ℓ(d) = −|d| − 2 ln(1 + e^{−|d|})` (the logistic
/// log density, without `d − 2 softplus(d)`'s `∞ − ∞`). `∂/∂l = ℓ'(d) = −tanh(d/2)`,
/// `∂/∂y = −τ ℓ'(d)/(y(1 − y)) − 1/y + 1/(1 − y)`.
///
/// At the boundary the density's limit: as `y → 0`, `log q ≈ −l + (τ − 1) ln y`, so `+∞` for
/// `τ < 1`, `−∞` for `τ > 1`, and `−l` at `τ = 1`, where `q(y) = eˡ/(y + (1 − y)eˡ)²`; as
/// `y → 1`, the mirror image (`l` for `−l`). Outside `[0, 1]`, `−∞`.
pub(super) struct BinaryConcreteLogProb<F>(pub(super) F);

impl<F: Scalar> BinaryConcreteLogProb<F> {
    /// `(log q, ∂/∂l, ∂/∂y)` at one point.
    fn eval(&self, l: F, y: F) -> (F, F, F) {
        let (tau, one, two) = (self.0, F::one(), F::from_f64(2.0));
        if y > F::zero() && y < one {
            let (ly, l1y) = (y.ln(), (-y).ln_1p());
            let d = l - (ly - l1y) * tau;
            let a = d.abs();
            let ell = -a - two * (-a).exp().ln_1p();
            let dell = -(d * F::from_f64(0.5)).tanh();
            let dy = -tau * dell / (y * (one - y)) - y.recip() + (one - y).recip();
            (tau.ln() + ell - ly - l1y, dell, dy)
        } else if y == F::zero() || y == one {
            // mirror y → 1 − y, l → −l onto y = 0
            let (l, sign) = if y == F::zero() { (l, one) } else { (-l, -one) };
            let inf = F::infinity();
            let (v, dy) = if tau == one {
                // q = eˡ/(y + (1 − y)eˡ)² at y = 0: e^{−l}; ∂/∂y ln q = −2(e^{−l} − 1)
                (-l, -two * ((-l).exp() - one))
            } else if tau < one {
                (inf, -inf)
            } else {
                (-inf, inf)
            };
            (v, -sign, sign * dy)
        } else if y.is_nan() {
            (y, y, y)
        } else {
            (F::neg_infinity(), F::zero(), F::zero())
        }
    }
}

impl<F: Scalar> CustomOp<F> for BinaryConcreteLogProb<F> {
    fn name(&self) -> &'static str {
        "RelaxedBernoulli"
    }

    fn forward(&self, inputs: &[&ArrayD<F>]) -> ArrayD<F> {
        Zip::from(inputs[0])
            .and(inputs[1])
            .map_collect(|&l, &y| self.eval(l, y).0)
    }

    fn backward(&self, b: &Backward<'_, F>) -> Vec<Option<ArrayD<F>>> {
        let part = |i: usize| {
            b.needs(i).then(|| {
                Zip::from(b.grad())
                    .and(b.input(0))
                    .and(b.input(1))
                    .map_collect(|&g, &l, &y| {
                        let (_, dl, dy) = self.eval(l, y);
                        times(g, if i == 0 { dl } else { dy })
                    })
            })
        };
        vec![part(0), part(1)]
    }

    fn keeps_rows(&self, input: usize, inputs: &[&[usize]], output: &[usize]) -> bool {
        crate::ops::rows_aligned(inputs[input], output)
    }
}

/// The Concrete (relaxed one-hot categorical) log density at temperature `τ` over the last
/// axis; inputs `[l, y]` of one shape `[.., K]`, output `[..]`.
///
/// Inside the simplex, with `xₖ = ln yₖ` and `sₖ = lₖ − τxₖ`,
/// `log q(y) = ln (K−1)! + (K−1) ln τ + Σₖ sₖ − K·LSE(s) − Σₖ xₖ`;
/// `∂/∂lₖ = 1 − K·softmax(s)ₖ`, `∂/∂yₖ = (−τ ∂/∂lₖ − 1)/yₖ`.
///
/// On a face where the `m` coordinates in `Z` are 0 (`0 < m < K`), the density behaves as
/// `ε^e` with `e = τ(K − m) − m` when those coordinates shrink like `ε`: the limit is `−∞`
/// for `e > 0`, `+∞` for `e < 0`, and for `e = 0`
/// `ln (K−1)! + (K−1) ln τ + Σₖ lₖ − (τ+1) Σ_{k∉Z} ln yₖ − K·LSE_{k∈Z}(l)`. For `m = 1` that
/// limit does not depend on the path; for `m > 1` it is the limit with the zero coordinates
/// shrinking together (other paths give other values), a convention. The gradients are the
/// same limits (`∂/∂lₖ = 1` off `Z` and `1 − K wₖ` on it, `w = softmax_Z(l)`). Points off
/// `[0, 1]^K`, and the all-zero point, have density 0.
pub(super) struct ConcreteLogProb<F> {
    pub(super) temperature: F,
}

/// `ln (K−1)! + (K−1) ln τ`.
fn log_constant<F: Scalar>(tau: F, k: usize) -> F {
    let log_factorial: f64 = (2..k).map(|i| (i as f64).ln()).sum();
    F::from_f64(log_factorial) + F::from_f64((k - 1) as f64) * tau.ln()
}

/// `ln Σ eᵛ` over `v`, shifted by its maximum.
fn log_sum_exp<F: Scalar>(v: impl Iterator<Item = F> + Clone) -> F {
    let top = v.clone().fold(F::neg_infinity(), F::max);
    if top == F::infinity() || top == F::neg_infinity() {
        return top;
    }
    top + v
        .map(|x| (x - top).exp())
        .fold(F::zero(), |a, b| a + b)
        .ln()
}

impl<F: Scalar> ConcreteLogProb<F> {
    /// `log q(y)` of one lane, and, when `grads` is given, `∂/∂l` and `∂/∂y` written into it.
    fn lane(&self, l: &[F], y: &[F], grads: Option<(&mut [F], &mut [F])>) -> F {
        let (tau, k) = (self.temperature, y.len());
        let kf = F::from_f64(k as f64);
        let one = F::one();
        if l.iter().chain(y).any(|v| v.is_nan()) {
            if let Some((dl, dy)) = grads {
                dl.fill(F::nan());
                dy.fill(F::nan());
            }
            return F::nan();
        }
        let zeros = y.iter().filter(|&&v| v == F::zero()).count();
        if y.iter().any(|&v| !(F::zero()..=one).contains(&v)) || zeros == k {
            if let Some((dl, dy)) = grads {
                dl.fill(F::zero());
                dy.fill(F::zero());
            }
            return F::neg_infinity();
        }
        let constant = log_constant(tau, k);
        if zeros == 0 {
            // With sₖ = lₖ − τ ln yₖ, Σ sₖ − K·LSE(s) = Σ dₖ − K·LSE(d) for dₖ = sₖ − s_b at the
            // largest s_b, each dₖ taken as (lₖ − l_b) − τ(ln yₖ − ln y_b): differences before
            // scaling by τ, so a τ·|ln y| beyond the float range (τ near the maximum) does not
            // make two infinite s and ∞ − ∞.
            let ln_y: Vec<F> = y.iter().map(|v| v.ln()).collect();
            let diff = |i: usize, b: usize| (l[i] - l[b]) - tau * (ln_y[i] - ln_y[b]);
            let b = (1..k).fold(0, |b, i| if diff(i, b) > F::zero() { i } else { b });
            let d: Vec<F> = (0..k).map(|i| diff(i, b)).collect();
            let lse = log_sum_exp(d.iter().copied());
            if let Some((dl, dy)) = grads {
                for i in 0..k {
                    dl[i] = one - kf * (d[i] - lse).exp();
                    dy[i] = (-tau * dl[i] - one) / y[i];
                }
            }
            let sum_d = d.iter().fold(F::zero(), |a, &v| a + v);
            let sum_x = ln_y.iter().fold(F::zero(), |a, &v| a + v);
            return constant + sum_d - kf * lse - sum_x;
        }
        let m = F::from_f64(zeros as f64);
        let e = tau * (kf - m) - m;
        let on_face = || (0..k).filter(|&i| y[i] == F::zero());
        let lse_z = log_sum_exp(on_face().map(|i| l[i]));
        if let Some((dl, dy)) = grads {
            // the off-face part of the normalizer, Σ_{k∉Z} e^{lₖ} yₖ^{−τ}, and Σ_Z e^{lₖ}
            let rest = (0..k)
                .filter(|&i| y[i] > F::zero())
                .map(|i| (l[i] - tau * y[i].ln() - lse_z).exp())
                .fold(F::zero(), |a, b| a + b);
            for i in 0..k {
                if y[i] > F::zero() {
                    dl[i] = one;
                    dy[i] = -(tau + one) / y[i];
                    continue;
                }
                let w = (l[i] - lse_z).exp();
                dl[i] = one - kf * w;
                // ∂/∂yᵢ ≈ (Kτwᵢ − τ − 1)/ε, and when that vanishes the next term,
                // −Kτ wᵢ (rest/Σ_Z) ε^{τ−1}
                let c = kf * tau * w - tau - one;
                dy[i] = if c > F::zero() {
                    F::infinity()
                } else if c < F::zero() || tau < one {
                    F::neg_infinity()
                } else if tau == one {
                    -kf * w * rest
                } else {
                    F::zero()
                };
            }
        }
        if e > F::zero() {
            F::neg_infinity()
        } else if e < F::zero() {
            F::infinity()
        } else {
            let sum_l = l.iter().fold(F::zero(), |a, &b| a + b);
            let sum_x = y
                .iter()
                .filter(|&&v| v > F::zero())
                .fold(F::zero(), |a, &v| a + v.ln());
            constant + sum_l - (tau + one) * sum_x - kf * lse_z
        }
    }
}

impl<F: Scalar> CustomOp<F> for ConcreteLogProb<F> {
    fn name(&self) -> &'static str {
        "RelaxedOneHotCategorical"
    }

    fn forward(&self, inputs: &[&ArrayD<F>]) -> ArrayD<F> {
        let last = Axis(inputs[1].ndim() - 1);
        Zip::from(inputs[0].lanes(last))
            .and(inputs[1].lanes(last))
            .map_collect(|l, y| self.lane(&l.to_vec(), &y.to_vec(), None))
    }

    fn backward(&self, b: &Backward<'_, F>) -> Vec<Option<ArrayD<F>>> {
        let (l, y) = (b.input(0), b.input(1));
        let last = Axis(y.ndim() - 1);
        let k = y.shape()[last.index()];
        let (mut dl, mut dy) = (ArrayD::zeros(y.raw_dim()), ArrayD::zeros(y.raw_dim()));
        let (mut gl, mut gy) = (vec![F::zero(); k], vec![F::zero(); k]);
        Zip::from(dl.lanes_mut(last))
            .and(dy.lanes_mut(last))
            .and(l.lanes(last))
            .and(y.lanes(last))
            .and(b.grad())
            .for_each(|mut dl, mut dy, l, y, &g| {
                self.lane(&l.to_vec(), &y.to_vec(), Some((&mut gl, &mut gy)));
                dl.iter_mut().zip(&gl).for_each(|(o, &d)| *o = times(g, d));
                dy.iter_mut().zip(&gy).for_each(|(o, &d)| *o = times(g, d));
            });
        vec![b.needs(0).then_some(dl), b.needs(1).then_some(dy)]
    }

    fn keeps_rows(&self, input: usize, inputs: &[&[usize]], output: &[usize]) -> bool {
        // a lane is one row's categories; rows stay separate unless the output is a scalar
        inputs[input].len() == output.len() + 1
            && !output.is_empty()
            && inputs[input][0] == output[0]
    }
}
