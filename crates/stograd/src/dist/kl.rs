//! Kullback–Leibler divergences `KL(p ‖ q) = E_p[log p(z) − log q(z)]`.
//!
//! [`kl_divergence`] is a table: one function per pair with a closed form, one `match` to
//! dispatch on the two [`Family`]s, and an error naming the pair when none is registered.
//! The sampled estimate is never a silent fallback: ask for it with [`monte_carlo`].

use ndarray::{ArrayD, Zip};
use rand::Rng;

use super::gaussian::{Cov, gaussian_kl};
use super::{Distribution, Family};
use crate::broadcast::{broadcast_shape, sum_to};
use crate::ops::{Backward, CustomOp, broadcast_view, standard};
use crate::{Error, Result, Scalar, Var};

/// The analytic `KL(p ‖ q)`, one value per batch element (batch shapes broadcast).
///
/// Registered pairs: Normal–Normal, Bernoulli–Bernoulli, Categorical–Categorical,
/// OneHotCategorical–OneHotCategorical, and every pair of MultivariateNormal and
/// LowRankMultivariateNormal (a low-rank `q` is inverted by Woodbury's identity, so no `d × d`
/// inverse is formed for it).
///
/// # Example
/// ```
/// use ndarray::array;
/// use stograd::dist::{kl::kl_divergence, Normal};
/// use stograd::Tape;
///
/// let tape = Tape::<f64>::new();
/// let p = Normal::new(tape.constant(array![0.0]), tape.constant(array![1.0]))?;
/// let q = Normal::new(tape.constant(array![1.0]), tape.constant(array![2.0]))?;
/// // ln(σq/σp) + (σp² + (μp − μq)²)/(2σq²) − ½ = ln 2 + 2/8 − ½
/// let kl = kl_divergence(&p, &q)?.value()[0];
/// assert!((kl - (2f64.ln() - 0.25)).abs() < 1e-15);
/// # Ok::<(), stograd::Error>(())
/// ```
///
/// # Errors
/// [`Error::NoClosedFormKl`] naming the pair when no closed form is registered;
/// [`Error::KlShapeMismatch`] with both shapes when the batch shapes do not broadcast or the
/// event shapes differ, or when two categorical distributions differ in their number of
/// categories (then the shapes given are those of the logits, `batch ++ [K]`).
#[track_caller]
pub fn kl_divergence<'t, F, P, Q>(p: &P, q: &Q) -> Result<Var<'t, F>>
where
    F: Scalar,
    P: Distribution<'t, F> + ?Sized,
    Q: Distribution<'t, F> + ?Sized,
{
    same_tapes(p, q);
    let _caller = crate::dist::at_caller(p);
    check_shapes(p, q)?;
    match (p.family(), q.family()) {
        (Family::Normal { loc: mp, scale: sp }, Family::Normal { loc: mq, scale: sq }) => {
            Ok(normal_normal(mp, sp, mq, sq))
        }
        (Family::Bernoulli { logits: a }, Family::Bernoulli { logits: b }) => {
            Ok(bernoulli_bernoulli(a, b))
        }
        (Family::Categorical { logits: a }, Family::Categorical { logits: b }) => {
            same_categories(p, q, a, b).map(|()| categorical_categorical(a, b))
        }
        (
            Family::MultivariateNormal {
                loc: mp,
                scale_tril: lp,
            },
            Family::MultivariateNormal {
                loc: mq,
                scale_tril: lq,
            },
        ) => Ok(mvn_mvn(mp, lp, mq, lq)),
        (
            Family::MultivariateNormal {
                loc: mp,
                scale_tril: lp,
            },
            Family::LowRankMultivariateNormal {
                loc: mq,
                cov_factor: uq,
                cov_diag: dq,
            },
        ) => mvn_low_rank(mp, lp, mq, uq, dq),
        (
            Family::LowRankMultivariateNormal {
                loc: mp,
                cov_factor: up,
                cov_diag: dp,
            },
            Family::MultivariateNormal {
                loc: mq,
                scale_tril: lq,
            },
        ) => low_rank_mvn(mp, up, dp, mq, lq),
        (
            Family::LowRankMultivariateNormal {
                loc: mp,
                cov_factor: up,
                cov_diag: dp,
            },
            Family::LowRankMultivariateNormal {
                loc: mq,
                cov_factor: uq,
                cov_diag: dq,
            },
        ) => low_rank_low_rank(mp, up, dp, mq, uq, dq),
        _ => Err(Error::NoClosedFormKl {
            p: p.name(),
            q: q.name(),
        }),
    }
}

/// Panics, at the caller's line, when a parameter of `q` was recorded on another tape than `p`'s.
#[track_caller]
fn same_tapes<'t, F: Scalar, P, Q>(p: &P, q: &Q)
where
    P: Distribution<'t, F> + ?Sized,
    Q: Distribution<'t, F> + ?Sized,
{
    let first = p.params()[0];
    for v in p.params().into_iter().chain(q.params()) {
        crate::tape::same_tape("kl_divergence", first, v);
    }
}

fn check_shapes<'t, F, P, Q>(p: &P, q: &Q) -> Result<()>
where
    F: Scalar,
    P: Distribution<'t, F> + ?Sized,
    Q: Distribution<'t, F> + ?Sized,
{
    let fits = broadcast_shape(p.batch_shape(), q.batch_shape()).is_some()
        && p.event_shape() == q.event_shape();
    if fits {
        Ok(())
    } else {
        Err(Error::KlShapeMismatch {
            p: p.name(),
            q: q.name(),
            p_shape: super::draw_shape(p.batch_shape(), p.event_shape()),
            q_shape: super::draw_shape(q.batch_shape(), q.event_shape()),
        })
    }
}

/// `ln σq − ln σp + ½(σp/σq)² + ½((μp − μq)/σq)² − ½`
///
/// The log ratio is a difference of logarithms, finite for all positive finite scales, and the
/// ratios are formed before squaring; so the result is finite wherever the true value is
/// (`KL(N(0, 10⁻²³) ‖ N(0, 1)) ≈ 52.46` in `f32`, where `ln((σp/σq)²)` underflows to `−∞`), and
/// `+∞` without a `∞ − ∞` where a squared ratio overflows. Where `μp − μq` overflows it is
/// formed as `μp/σq − μq/σq`.
fn normal_normal<'t, F: Scalar>(
    mp: Var<'t, F>,
    sp: Var<'t, F>,
    mq: Var<'t, F>,
    sq: Var<'t, F>,
) -> Var<'t, F> {
    let half = F::from_f64(0.5);
    let diff = mp - mq;
    let shift = if diff.with_value(|d| d.iter().all(|v| v.is_finite())) {
        diff / sq
    } else {
        mp / sq - mq / sq
    };
    let log_ratio = sq.log() - sp.log();
    log_ratio + ((sp / sq).square() + shift.square() - F::one()) * half
}

// Gaussian pairs: KL = ½[tr(Σq⁻¹Σp) + δᵀΣq⁻¹δ − d + ln det Σq − ln det Σp], δ = μq − μp,
// computed from the factors by `gaussian::gaussian_kl`.

/// `½[‖Lq⁻¹Lp‖²_F + ‖Lq⁻¹δ‖² − d] + Σ ln (Lq)ᵢᵢ − Σ ln (Lp)ᵢᵢ`
fn mvn_mvn<'t, F: Scalar>(
    mp: Var<'t, F>,
    lp: Var<'t, F>,
    mq: Var<'t, F>,
    lq: Var<'t, F>,
) -> Var<'t, F> {
    gaussian_kl(mp, Cov::tril(lp), mq, Cov::tril(lq))
}

/// Σq = Dq + UqUqᵀ by Woodbury, with `Wq = Dq⁻¹Uq`, `KqKqᵀ = I + UqᵀWq`:
/// `tr(Σq⁻¹Σp) = Σⱼ lⱼᵀ Σq⁻¹ lⱼ` over the columns `lⱼ` of `Lp`, each as the sum of squares
/// `Σᵢ (l − Uq z)ᵢ²/Dqᵢ + ‖z‖²`, `z = Kq⁻ᵀKq⁻¹Wqᵀ l` (no cancellation when `Dq ≪ ‖Uq‖²`);
/// `ln det Σq = 2 Σ ln Kqᵢᵢ + Σ ln Dqᵢ`.
fn mvn_low_rank<'t, F: Scalar>(
    mp: Var<'t, F>,
    lp: Var<'t, F>,
    mq: Var<'t, F>,
    uq: Var<'t, F>,
    dq: Var<'t, F>,
) -> Result<Var<'t, F>> {
    Ok(gaussian_kl(mp, Cov::tril(lp), mq, Cov::low_rank(uq, dq)?))
}

/// Σp = Dp + UpUpᵀ = A Aᵀ with `A = [Dp^½ | Up]`: `tr(Σq⁻¹Σp) = ‖Lq⁻¹A‖²_F`;
/// `ln det Σp` by the determinant lemma.
fn low_rank_mvn<'t, F: Scalar>(
    mp: Var<'t, F>,
    up: Var<'t, F>,
    dp: Var<'t, F>,
    mq: Var<'t, F>,
    lq: Var<'t, F>,
) -> Result<Var<'t, F>> {
    Ok(gaussian_kl(mp, Cov::low_rank(up, dp)?, mq, Cov::tril(lq)))
}

/// Both by Woodbury and the determinant lemma; `tr(Σq⁻¹UpUpᵀ)` column by column of `Up` as
/// the sum of squares of [`mvn_low_rank`], and `tr(Σq⁻¹Dp)` needs only the diagonal of
/// `Σq⁻¹`, `Dqᵢ⁻¹ − ‖Kq⁻¹ Wqᵀ eᵢ‖²`, so no `d × d` matrix is formed.
fn low_rank_low_rank<'t, F: Scalar>(
    mp: Var<'t, F>,
    up: Var<'t, F>,
    dp: Var<'t, F>,
    mq: Var<'t, F>,
    uq: Var<'t, F>,
    dq: Var<'t, F>,
) -> Result<Var<'t, F>> {
    Ok(gaussian_kl(
        mp,
        Cov::low_rank(up, dp)?,
        mq,
        Cov::low_rank(uq, dq)?,
    ))
}

/// `σ(a)(softplus(−b) − softplus(−a)) + σ(−a)(softplus(b) − softplus(a))` for `p = σ(a)`,
/// `q = σ(b)`.
///
/// This is `p ln(p/q) + (1 − p) ln((1 − p)/(1 − q))` with `ln σ(x) = −softplus(−x)`. Each
/// difference of softplus values is finite for finite logits (both are in `[0, max]`), so a
/// probability that rounds to 0 multiplies a finite number: no `0 · ∞` where `a − b`
/// overflows (`a = −3·10³⁸`, `b = 3·10³⁸` in `f32`). A clamped `p ∈ {0, 1}` (see
/// [`Bernoulli::from_probs`](super::Bernoulli::from_probs)) contributes `0 · ln 0 = 0` up to
/// `O(ε ln ε)`.
fn bernoulli_bernoulli<'t, F: Scalar>(a: Var<'t, F>, b: Var<'t, F>) -> Var<'t, F> {
    let (na, nb) = (-a, -b);
    a.sigmoid() * (nb.softplus() - na.softplus()) + na.sigmoid() * (b.softplus() - a.softplus())
}

/// `Σₖ pₖ (aₖ − bₖ)` over the last axis, with `a`, `b` normalized logits and `p = eᵃ`.
///
/// A normalized logit is `−∞` where the logits' spread overflows (`[3·10³⁸, −3·10³⁸]` in
/// `f32`); its probability is 0 and its term is 0 (the limit of `p ln(p/q)`), not
/// `0 · (−∞ − bₖ)` = NaN: see [`KlTerm`]. Where `q` has a zero that `p` has not, the true value
/// is `+∞`: so it is from logits (`bₖ = −∞`), while from probabilities (a zero is stored as the
/// log of the smallest positive float) this returns a large finite value instead.
fn categorical_categorical<'t, F: Scalar>(a: Var<'t, F>, b: Var<'t, F>) -> Var<'t, F> {
    let last = a.ndim().max(b.ndim()) - 1;
    assert!(
        broadcast_shape(&a.shape(), &b.shape()).is_some(),
        "categorical KL: logits {:?} and {:?} do not broadcast",
        a.shape(),
        b.shape()
    );
    a.tape().apply(KlTerm, &[a, b]).sum_axis(last)
}

/// The elementwise term `eᵃ (a − b)` of a categorical KL, with `0` where `eᵃ = 0` (so a
/// `−∞` on either side meets a zero probability without a NaN); inputs `[a, b]`, broadcast.
/// `∂/∂a = eᵃ (a − b + 1)`, `∂/∂b = −eᵃ`, both 0 where `eᵃ = 0`.
struct KlTerm;

impl KlTerm {
    fn shape<F: Scalar>(a: &ArrayD<F>, b: &ArrayD<F>) -> Vec<usize> {
        broadcast_shape(a.shape(), b.shape()).expect("checked before recording")
    }
}

impl<F: Scalar> CustomOp<F> for KlTerm {
    fn name(&self) -> &'static str {
        "categorical_kl"
    }

    fn forward(&self, inputs: &[&ArrayD<F>]) -> ArrayD<F> {
        let shape = KlTerm::shape(inputs[0], inputs[1]);
        Zip::from(broadcast_view(inputs[0], &shape))
            .and(broadcast_view(inputs[1], &shape))
            .map_collect(|&a, &b| {
                let p = a.exp();
                if p == F::zero() {
                    F::zero()
                } else {
                    p * (a - b)
                }
            })
    }

    fn backward(&self, b: &Backward<'_, F>) -> Vec<Option<ArrayD<F>>> {
        let g = b.grad();
        let (x, y) = (b.input(0), b.input(1));
        let shape = g.shape();
        let per = |i: usize| {
            Zip::from(g)
                .and(broadcast_view(x, shape))
                .and(broadcast_view(y, shape))
                .map_collect(|&g, &a, &bv| {
                    let p = a.exp();
                    match (p == F::zero(), i) {
                        (true, _) => F::zero(),
                        (false, 0) => g * p * (a - bv + F::one()),
                        (false, _) => -g * p,
                    }
                })
        };
        vec![
            b.needs(0).then(|| sum_to(&standard(per(0)), x.shape())),
            b.needs(1).then(|| sum_to(&standard(per(1)), y.shape())),
        ]
    }
}

/// Categorical distributions must have the same number of categories (their event shapes do
/// not show it for `Categorical`).
fn same_categories<'t, F, P, Q>(p: &P, q: &Q, a: Var<'t, F>, b: Var<'t, F>) -> Result<()>
where
    F: Scalar,
    P: Distribution<'t, F> + ?Sized,
    Q: Distribution<'t, F> + ?Sized,
{
    let (a, b) = (a.shape(), b.shape());
    if a.last() == b.last() {
        Ok(())
    } else {
        Err(Error::KlShapeMismatch {
            p: p.name(),
            q: q.name(),
            p_shape: a,
            q_shape: b,
        })
    }
}

/// A Monte Carlo estimate of `KL(p ‖ q)` with its standard error.
#[derive(Debug)]
pub struct McEstimate<'t, F: Scalar> {
    /// The mean of `log p(zᵢ) − log q(zᵢ)` over the draws, one value per batch element. When
    /// `p` is reparameterizable the draws are pathwise, so this is differentiable in the
    /// parameters of both distributions.
    pub estimate: Var<'t, F>,
    /// The standard error of `estimate`: the sample standard deviation of the terms over
    /// `√samples`.
    pub std_error: ArrayD<F>,
    /// The number of draws.
    pub samples: usize,
}

/// Estimates `KL(p ‖ q)` from `samples` draws of `p`.
///
/// Draws are pathwise when `p` has `rsample`; otherwise they are constants, and the estimate's
/// gradient with respect to `p`'s parameters misses the score term (prefer the analytic KL
/// there).
///
/// # Example
/// ```
/// use ndarray::array;
/// use rand::SeedableRng;
/// use stograd::dist::{kl, Laplace, Normal};
/// use stograd::Tape;
///
/// let tape = Tape::<f64>::new();
/// let p = Laplace::new(tape.constant(array![0.0]), tape.constant(array![1.0]))?;
/// let q = Normal::new(tape.constant(array![0.0]), tape.constant(array![1.0]))?;
/// assert!(kl::kl_divergence(&p, &q).is_err()); // no closed form registered
/// let mut rng = rand::rngs::StdRng::seed_from_u64(1);
/// let mc = kl::monte_carlo(&p, &q, 4000, &mut rng)?;
/// // E_p[−|z| − ln 2 + z²/2 + ½ ln 2π] = −1 − ln 2 + 1 + ½ ln 2π
/// let exact = 0.5 * (2.0 * std::f64::consts::PI).ln() - 2f64.ln();
/// assert!((mc.estimate.value()[0] - exact).abs() < 4.0 * mc.std_error[0]);
/// # Ok::<(), stograd::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidArgument`] for fewer than two samples (no standard error);
/// [`Error::KlShapeMismatch`] as for [`kl_divergence`].
#[track_caller]
pub fn monte_carlo<'t, F, P, Q>(
    p: &P,
    q: &Q,
    samples: usize,
    rng: &mut dyn Rng,
) -> Result<McEstimate<'t, F>>
where
    F: Scalar,
    P: Distribution<'t, F> + ?Sized,
    Q: Distribution<'t, F> + ?Sized,
{
    if samples < 2 {
        return Err(Error::InvalidArgument {
            name: "samples",
            constraint: "at least 2",
            value: samples as f64,
        });
    }
    same_tapes(p, q);
    let _caller = crate::dist::at_caller(p);
    check_shapes(p, q)?;
    let tape = p.params()[0].tape();
    let mut terms = Vec::with_capacity(samples);
    for _ in 0..samples {
        let z = if p.has_rsample() {
            p.rsample(rng)?
        } else {
            tape.constant(p.sample(rng))
        };
        terms.push(p.log_prob(z) - q.log_prob(z));
    }
    let n = F::from_f64(samples as f64);
    let estimate =
        Var::concat(&terms.iter().map(|t| t.unsqueeze(0)).collect::<Vec<_>>(), 0).mean_axis(0);
    let values: Vec<ArrayD<F>> = terms.iter().map(|t| t.value()).collect();
    let mean = estimate.value();
    let mut sq = ArrayD::<F>::zeros(mean.raw_dim());
    for v in &values {
        sq.zip_mut_with(&(v - &mean), |s, &d| *s += d * d);
    }
    let std_error = sq.mapv(|s| (s / (n - F::one()) / n).sqrt());
    Ok(McEstimate {
        estimate,
        std_error,
        samples,
    })
}
