//! Probability distributions whose parameters are [`Var`]s, so gradients reach them.
//!
//! | family | types | pathwise `rsample` |
//! |---|---|---|
//! | [location-scale](loc_scale) | [`Normal`], [`Laplace`], [`Logistic`], [`Cauchy`], [`Uniform`], [`Exponential`] | yes: `loc + scale·ε` |
//! | [multivariate normal](mvn) | [`MultivariateNormal`] (`scale_tril`), [`LowRankMultivariateNormal`] (`cov_factor`, `cov_diag`) | yes |
//! | [discrete] | [`Bernoulli`], [`Categorical`], [`OneHotCategorical`] | no |
//! | [relaxed] | [`RelaxedBernoulli`], [`RelaxedOneHotCategorical`] (Gumbel-softmax) | yes |
//!
//! Shapes follow PyTorch: a distribution has a *batch shape* (independent copies) and an
//! *event shape* (the shape of one draw: `[]` for scalars, `[d]` for a `d`-dimensional
//! normal, `[K]` for a one-hot vector). A draw has shape `batch ++ event` and `log_prob`
//! returns one value per batch element. The leading batch axis is the *plate* along which
//! score-function estimators assign credit row by row.
//!
//! Constructors validate their parameters and return [`Error`] naming the
//! parameter and the first bad value; no NaN leaks out of a constructor.

mod concrete;
pub mod discrete;
mod gaussian;
pub mod kl;
pub mod loc_scale;
pub mod low_rank;
pub mod mvn;
pub mod relaxed;

use ndarray::ArrayD;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub use discrete::{Bernoulli, Categorical, OneHotCategorical};
pub use loc_scale::{Cauchy, Exponential, Laplace, LocScale, Logistic, Normal, Uniform};
pub use low_rank::LowRankMultivariateNormal;
pub use mvn::MultivariateNormal;
pub use relaxed::{RelaxedBernoulli, RelaxedOneHotCategorical};

use crate::{Error, Result, Scalar, Var};

/// A distribution over arrays, with parameters recorded on a tape.
///
/// `sample` draws without gradient; `rsample` (where the distribution is reparameterizable)
/// returns a draw `z = T_θ(ε)` through which gradients flow to the parameters. Put draws on
/// a tape with [`Tape::sample`](crate::Tape::sample) or
/// [`Tape::sample_with`](crate::Tape::sample_with), which also record the estimator.
///
/// The trait is dyn-compatible, so a model can choose a family at run time:
///
/// ```
/// use ndarray::array;
/// use rand::SeedableRng;
/// use stograd::dist::{Distribution, Laplace, Normal};
/// use stograd::Tape;
///
/// let tape = Tape::<f64>::new();
/// let (loc, scale) = (tape.variable(array![0.0, 1.0]), tape.scalar(0.5));
/// let heavy_tails = true;
/// let q: Box<dyn Distribution<'_, f64>> = if heavy_tails {
///     Box::new(Laplace::new(loc, scale)?)
/// } else {
///     Box::new(Normal::new(loc, scale)?)
/// };
/// let z = tape.sample(q.as_ref(), &mut rand::rngs::StdRng::seed_from_u64(1));
/// assert_eq!(q.log_prob(z).shape(), [2]);
/// # Ok::<(), stograd::Error>(())
/// ```
pub trait Distribution<'t, F: Scalar> {
    /// The family's name, e.g. `"Normal"`, for messages.
    fn name(&self) -> &'static str;

    /// The shape of independent copies; the leading axis is the plate (batch) axis.
    fn batch_shape(&self) -> &[usize];

    /// The shape of a single draw of one copy.
    fn event_shape(&self) -> &[usize];

    /// The parameters as recorded on the tape (a score-function sample node keeps them as its
    /// inputs, so the tape knows what the draw depends on).
    fn params(&self) -> Vec<Var<'t, F>>;

    /// For each of [`params`](Self::params), how many of its trailing axes belong to one event
    /// rather than to the batch: 0 for elementwise parameters (`loc`, Bernoulli `logits`), 1
    /// for logits over classes or a mean vector, 2 for a `scale_tril`.
    ///
    /// Score-function credit assignment reads it to tell whether row `r` of a draw depends on
    /// row `r` of a parameter alone. `None`, the default, makes every row of a draw depend on
    /// every row of every parameter: always unbiased, only noisier.
    fn param_event_dims(&self) -> Option<Vec<usize>> {
        None
    }

    /// A draw of shape `batch ++ event`, without gradient.
    fn sample(&self, rng: &mut dyn Rng) -> ArrayD<F>;

    /// `log q(x)`, one value per batch element (shape `batch_shape`).
    ///
    /// # Panics
    /// If `x`'s shape does not broadcast against `batch ++ event`.
    #[track_caller]
    fn log_prob(&self, x: Var<'t, F>) -> Var<'t, F>;

    /// The differential (or Shannon) entropy, shape `batch_shape`.
    ///
    /// # Errors
    /// [`Error::Undefined`] where no closed form exists.
    #[track_caller]
    fn entropy(&self) -> Result<Var<'t, F>>;

    /// The mean, shape `batch ++ event`.
    ///
    /// # Errors
    /// [`Error::Undefined`] where the mean does not exist (Cauchy) or has no closed form.
    #[track_caller]
    fn mean(&self) -> Result<Var<'t, F>>;

    /// The variance of each coordinate, shape `batch ++ event`.
    ///
    /// # Errors
    /// [`Error::Undefined`] where the variance does not exist or has no closed form.
    #[track_caller]
    fn variance(&self) -> Result<Var<'t, F>>;

    /// Whether the base noise `ε` is symmetric about 0 (`ε` and `−ε` equally likely), which
    /// antithetic sampling needs.
    fn symmetric_noise(&self) -> bool {
        false
    }

    /// Base noise `ε` for [`reparameterize`](Self::reparameterize), drawn from a fixed,
    /// parameter-free distribution.
    ///
    /// # Errors
    /// [`Error::NoPathwise`] for distributions that are not reparameterizable.
    fn noise(&self, rng: &mut dyn Rng) -> Result<ArrayD<F>> {
        let _ = rng;
        Err(Error::NoPathwise {
            distribution: self.name(),
        })
    }

    /// The draw `z = T_θ(ε)` for given base noise (a constant on the same tape), so that
    /// gradients flow to the parameters. Holding `ε` fixed makes `z` a deterministic function
    /// of the parameters, which is how pathwise gradients are checked by finite differences.
    ///
    /// # Errors
    /// [`Error::NoPathwise`] for distributions that are not reparameterizable;
    /// [`Error::ShapeMismatch`] when `noise` has the wrong shape.
    #[track_caller]
    fn reparameterize(&self, noise: Var<'t, F>) -> Result<Var<'t, F>> {
        let _ = noise;
        Err(Error::NoPathwise {
            distribution: self.name(),
        })
    }

    /// A reparameterized draw: [`noise`](Self::noise) then
    /// [`reparameterize`](Self::reparameterize).
    ///
    /// # Errors
    /// [`Error::NoPathwise`] for distributions that are not reparameterizable.
    #[track_caller]
    fn rsample(&self, rng: &mut dyn Rng) -> Result<Var<'t, F>> {
        let noise = self.noise(rng)?;
        let tape = self
            .params()
            .first()
            .expect("a distribution has parameters")
            .tape();
        self.reparameterize(tape.constant(noise))
    }

    /// A straight-through draw: the hard (discrete) draw forward and, backward, the gradient
    /// as if the draw were its mean: `z = hard + p − stop_grad(p)`.
    ///
    /// # Errors
    /// [`Error::UnsupportedEstimator`] for distributions that are not Bernoulli or one-hot
    /// categorical.
    #[track_caller]
    fn straight_through(&self, rng: &mut dyn Rng) -> Result<Var<'t, F>> {
        let _ = rng;
        Err(Error::UnsupportedEstimator {
            estimator: "StraightThrough",
            distribution: self.name(),
            reason: "only Bernoulli and one-hot categorical draws have a straight-through form"
                .into(),
        })
    }

    /// A Gumbel-softmax (Concrete) draw at `temperature`; with `hard`, the forward value is the
    /// discretized draw and the gradient the relaxed one's.
    ///
    /// # Errors
    /// [`Error::UnsupportedEstimator`] for distributions without a Concrete relaxation.
    #[track_caller]
    fn gumbel_softmax(&self, temperature: F, hard: bool, rng: &mut dyn Rng) -> Result<Var<'t, F>> {
        let _ = (temperature, hard, rng);
        Err(Error::UnsupportedEstimator {
            estimator: "GumbelSoftmax",
            distribution: self.name(),
            reason: "only Bernoulli and categorical draws have a Concrete relaxation".into(),
        })
    }

    /// Every value one batch element can take, stacked on a new leading axis:
    /// `[values, batch.., event..]` (PyTorch's `enumerate_support`). Used by
    /// [`exact_expectation`](crate::estimator::exact_expectation).
    ///
    /// # Errors
    /// [`Error::Undefined`] for distributions without a finite support.
    fn enumerate_support(&self) -> Result<ArrayD<F>> {
        Err(Error::Undefined {
            distribution: self.name(),
            quantity: "finite support",
            reason: "the distribution is not discrete with finitely many values",
        })
    }

    /// Whether [`rsample`](Self::rsample) exists.
    fn has_rsample(&self) -> bool {
        false
    }

    /// Whether [`Tape::sample_with`](crate::Tape::sample_with) accepts `estimator` for this
    /// distribution: pathwise where there is `rsample`, antithetic where the noise is also
    /// symmetric, the score function always; straight-through and Gumbel-softmax where the
    /// distribution overrides [`straight_through`](Self::straight_through) and
    /// [`gumbel_softmax`](Self::gumbel_softmax) (and says so here).
    ///
    /// A `true` here can still meet a data-dependent error at sampling (an odd batch for
    /// antithetic pairs, a baseline of the wrong shape).
    fn supports(&self, estimator: &crate::Estimator<'t, F>) -> bool {
        use crate::Estimator as E;
        match estimator {
            E::Pathwise => self.has_rsample(),
            E::Antithetic => self.has_rsample() && self.symmetric_noise(),
            E::ScoreFunction { .. } => true,
            E::StraightThrough | E::GumbelSoftmax { .. } => false,
        }
    }

    /// The family and parameters that [`kl::kl_divergence`] dispatches on.
    fn family(&self) -> Family<'t, F> {
        Family::Other
    }
}

/// What the analytic KL table needs to know about a distribution: its family and parameters.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Family<'t, F: Scalar> {
    /// A normal distribution with elementwise `loc` and `scale`.
    Normal {
        /// The mean.
        loc: Var<'t, F>,
        /// The standard deviation.
        scale: Var<'t, F>,
    },
    /// A multivariate normal given by its Cholesky factor.
    MultivariateNormal {
        /// The mean, `[.., d]`.
        loc: Var<'t, F>,
        /// `L` with `Σ = L Lᵀ`, `[.., d, d]`.
        scale_tril: Var<'t, F>,
    },
    /// A multivariate normal with covariance `D + U Uᵀ`.
    LowRankMultivariateNormal {
        /// The mean, `[.., d]`.
        loc: Var<'t, F>,
        /// `U`, `[.., d, r]`.
        cov_factor: Var<'t, F>,
        /// The diagonal of `D`, `[.., d]`.
        cov_diag: Var<'t, F>,
    },
    /// A Bernoulli distribution.
    Bernoulli {
        /// Log-odds.
        logits: Var<'t, F>,
    },
    /// A categorical distribution over the last axis (also one-hot categorical).
    Categorical {
        /// Normalized log-probabilities, `[.., K]`.
        logits: Var<'t, F>,
    },
    /// No analytic KL is registered.
    Other,
}

/// A parameter's constraint, checked elementwise at construction.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Constraint {
    Finite,
    Positive,
    NonNegative,
    UnitInterval,
}

impl Constraint {
    /// Branch-free (`&`, not `&&`), so a scan over a slice vectorizes.
    fn holds<F: Scalar>(self, v: F) -> bool {
        match self {
            Constraint::Finite => v.is_finite(),
            Constraint::Positive => v.is_finite() & (v > F::zero()),
            Constraint::NonNegative => v.is_finite() & (v >= F::zero()),
            Constraint::UnitInterval => (v >= F::zero()) & (v <= F::one()),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Constraint::Finite => "finite",
            Constraint::Positive => "positive and finite",
            Constraint::NonNegative => "non-negative and finite",
            Constraint::UnitInterval => "in [0, 1]",
        }
    }
}

/// Checks every element of a parameter against its constraint.
/// Attributes what a distribution method records to the user's call (see
/// [`Tape::caller_scope`](crate::Tape)); call first thing in each method.
#[track_caller]
pub(crate) fn at_caller<'t, F: Scalar, D: Distribution<'t, F> + ?Sized>(
    d: &D,
) -> crate::caller::CallerScope<'t, F> {
    let first = d.params()[0];
    first.tape().caller_scope(std::panic::Location::caller())
}

/// Attributes what a constructor records to the user's call (see
/// [`Tape::caller_scope`](crate::Tape)), so that an anomaly report, or the panic of reading a
/// value `backward_and_free` released, names the user's line; call first thing in each
/// constructor, with any of its `Var`s.
#[track_caller]
pub(crate) fn constructing<'t, F: Scalar>(v: Var<'t, F>) -> crate::caller::CallerScope<'t, F> {
    v.tape().caller_scope(std::panic::Location::caller())
}

#[track_caller]
pub(crate) fn check_param<F: Scalar>(
    distribution: &'static str,
    param: &'static str,
    v: Var<'_, F>,
    constraint: Constraint,
) -> Result<()> {
    // Whole blocks are checked without early exit (that vectorizes); only a failing input
    // is searched for its first bad element.
    let all_hold = |s: &[F]| {
        s.chunks(256)
            .all(|c| c.iter().fold(true, |ok, &x| ok & constraint.holds(x)))
    };
    let first_bad = |a: &ArrayD<F>| match a.as_slice() {
        Some(s) if all_hold(s) => None,
        _ => a.iter().position(|x| !constraint.holds(*x)),
    };
    v.with_value(|a| match first_bad(a) {
        None => Ok(()),
        Some(flat) => Err(Error::InvalidParameter {
            distribution,
            param,
            constraint: constraint.describe(),
            value: a.iter().nth(flat).expect("found above").as_f64(),
            index: unravel(flat, a.shape()),
        }),
    })
}

/// The multi-index of the `flat`-th element in row-major order.
pub(crate) fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (slot, &len) in index.iter_mut().zip(shape).rev() {
        *slot = flat % len;
        flat /= len;
    }
    index
}

/// The broadcast shape of two parameters.
pub(crate) fn broadcast_params(
    distribution: &'static str,
    what: &'static str,
    left: &[usize],
    right: &[usize],
) -> Result<Vec<usize>> {
    crate::broadcast::broadcast_shape(left, right).ok_or_else(|| Error::IncompatibleShapes {
        distribution,
        what,
        left: left.to_vec(),
        right: right.to_vec(),
    })
}

/// Checks that base noise has the shape a distribution draws.
pub(crate) fn check_noise<F: Scalar>(noise: Var<'_, F>, expected: Vec<usize>) -> Result<()> {
    let got = noise.shape();
    if got == expected {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            what: "base noise",
            expected,
            got,
        })
    }
}

/// An array of `shape` filled with `draw`, in chunks of
/// [`PARALLEL_CHUNK`](crate::ops::PARALLEL_CHUNK) elements, each from its own generator seeded
/// by one `u64` from `rng`. The result depends only on `rng`'s state (not on the number of
/// threads), and large arrays fill on every core.
pub(crate) fn draw_array<F: Scalar, R: Rng + ?Sized>(
    shape: &[usize],
    rng: &mut R,
    draw: impl Fn(&mut SmallRng) -> f64 + Sync,
) -> ArrayD<F> {
    use rayon::prelude::*;
    let chunk = crate::ops::PARALLEL_CHUNK;
    let len: usize = shape.iter().product();
    let seeds: Vec<u64> = (0..len.div_ceil(chunk)).map(|_| rng.next_u64()).collect();
    let mut data = crate::pool::for_overwrite::<F>(shape);
    let data_slice = data.as_slice_mut().expect("a new array is contiguous");
    let fill = |(values, &seed): (&mut [F], &u64)| {
        fill_stream(values, &mut SmallRng::seed_from_u64(seed), &draw);
    };
    if seeds.len() > 1 {
        data_slice
            .par_chunks_mut(chunk)
            .zip(seeds.par_iter())
            .for_each(fill);
    } else {
        data_slice
            .chunks_mut(chunk)
            .zip(seeds.iter())
            .for_each(fill);
    }
    data
}

/// Fills `values` from one stream. Kept out of line: inlined into the closure above, the
/// generator's state was not kept in registers and sampling ran at half speed.
#[inline(never)]
fn fill_stream<F: Scalar>(
    values: &mut [F],
    stream: &mut SmallRng,
    draw: &impl Fn(&mut SmallRng) -> f64,
) {
    values
        .iter_mut()
        .for_each(|v| *v = F::from_f64(draw(stream)));
}

/// `batch ++ event` as one shape.
pub(crate) fn draw_shape(batch: &[usize], event: &[usize]) -> Vec<usize> {
    batch.iter().chain(event).copied().collect()
}
