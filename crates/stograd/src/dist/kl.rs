//! Kullback–Leibler divergences `KL(p ‖ q) = E_p[log p(z) − log q(z)]`.
//!
//! [`kl_divergence`] is a table: one function per pair with a closed form, one `match` to
//! dispatch on the two [`Family`]s, and an error naming the pair when none is registered.
//! The sampled estimate is never a silent fallback: ask for it with [`monte_carlo`].

use ndarray::ArrayD;
use rand::Rng;

use super::{Distribution, Family};
use crate::broadcast::broadcast_shape;
use crate::{Error, Result, Scalar, Var};

/// The analytic `KL(p ‖ q)`, one value per batch element (batch shapes broadcast).
///
/// Registered pairs: Normal–Normal.
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
/// event shapes differ.
pub fn kl_divergence<'t, F, P, Q>(p: &P, q: &Q) -> Result<Var<'t, F>>
where
    F: Scalar,
    P: Distribution<'t, F>,
    Q: Distribution<'t, F>,
{
    check_shapes(p, q)?;
    match (p.family(), q.family()) {
        (Family::Normal { loc: mp, scale: sp }, Family::Normal { loc: mq, scale: sq }) => {
            Ok(normal_normal(mp, sp, mq, sq))
        }
        _ => Err(Error::NoClosedFormKl {
            p: p.name(),
            q: q.name(),
        }),
    }
}

fn check_shapes<'t, F, P, Q>(p: &P, q: &Q) -> Result<()>
where
    F: Scalar,
    P: Distribution<'t, F>,
    Q: Distribution<'t, F>,
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

/// `ln(σq/σp) + (σp² + (μp − μq)²) / (2σq²) − ½`
fn normal_normal<'t, F: Scalar>(
    mp: Var<'t, F>,
    sp: Var<'t, F>,
    mq: Var<'t, F>,
    sq: Var<'t, F>,
) -> Var<'t, F> {
    let ratio = (sp / sq).square();
    let shift = ((mp - mq) / sq).square();
    (ratio + shift - ratio.log() - F::one()) * F::from_f64(0.5)
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
pub fn monte_carlo<'t, F, P, Q, R>(
    p: &P,
    q: &Q,
    samples: usize,
    rng: &mut R,
) -> Result<McEstimate<'t, F>>
where
    F: Scalar,
    P: Distribution<'t, F>,
    Q: Distribution<'t, F>,
    R: Rng + ?Sized,
{
    if samples < 2 {
        return Err(Error::InvalidArgument {
            name: "samples",
            constraint: "at least 2",
            value: samples as f64,
        });
    }
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
