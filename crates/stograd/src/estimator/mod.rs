//! Sample nodes and their gradient estimators.
//!
//! [`Tape::sample`] and [`Tape::sample_with`] record a *sample node*: the draw, which
//! distribution it came from, and the estimator that turns it into gradients.
//!
//! - **Pathwise** (reparameterized): `z = T_θ(ε)` with parameter-free noise `ε`; gradients
//!   flow through `T`. The node keeps `ε` ([`Var::noise`]) so the path can be re-run with the
//!   same noise.
//! - **Antithetic**: pathwise with the noise drawn in pairs `(ε, −ε)` along the leading
//!   (batch) axis, for symmetric base noise. The part of the gradient that is odd in `ε`
//!   cancels within each pair.
//! - **Score function** (REINFORCE): the draw carries no path gradient; backward adds
//!   `log q(w) · stop_grad(Q_w − b_w)` (see [`Tape::surrogate`] and [`Baseline`]).
//! - **Straight-through**: the hard draw forward, the gradient of the probabilities backward.
//! - **Gumbel-softmax**: a Concrete relaxation of a discrete draw at a temperature; `hard`
//!   discretizes the forward value and keeps the relaxed gradient.

mod baseline;
mod credit;
mod exact;
mod pathwise;
mod score;

pub use baseline::{Baseline, EmaBaseline};
pub use exact::exact_expectation;

pub(crate) use credit::credit;

use std::panic::Location;

use rand::Rng;

use crate::dist::Distribution;
use crate::{Error, Result, Scalar, Tape, Var};

/// How a sample node produces gradients.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Estimator<'t, F: Scalar> {
    /// Reparameterized: `z = T_θ(ε)`, gradients flow along the path.
    Pathwise,
    /// Pathwise with antithetic pairs: rows `i` and `i + n/2` of the leading axis use `ε` and
    /// `−ε`. Needs symmetric base noise and an even, non-empty leading axis.
    Antithetic,
    /// REINFORCE: the draw carries no path gradient; backward adds
    /// `log q(w) · stop_grad(Q_w − b_w)`. Works for every distribution with a `log_prob`.
    ScoreFunction {
        /// What to subtract from the cost.
        baseline: Baseline<'t, F>,
    },
    /// Straight-through (Bernoulli, one-hot categorical): the hard draw forward, and backward
    /// the gradient as if the draw were its mean `p`: `z = hard + p − stop_grad(p)`.
    StraightThrough,
    /// The Concrete / Gumbel-softmax relaxation of a discrete draw: pathwise through
    /// `softmax((logits + g)/τ)` with Gumbel noise `g`; `hard` makes the forward value the
    /// one-hot (or 0/1) rounding and keeps the relaxed gradient (straight-through Gumbel).
    GumbelSoftmax {
        /// The relaxation temperature `τ > 0`; smaller is closer to discrete.
        temperature: F,
        /// Discretize the forward value.
        hard: bool,
    },
}

impl<F: Scalar> Estimator<'_, F> {
    /// The score-function estimator without a baseline.
    pub fn score_function() -> Self {
        Estimator::ScoreFunction {
            baseline: Baseline::None,
        }
    }

    /// The estimator's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Estimator::Pathwise => "Pathwise",
            Estimator::Antithetic => "Antithetic",
            Estimator::ScoreFunction { .. } => "ScoreFunction",
            Estimator::StraightThrough => "StraightThrough",
            Estimator::GumbelSoftmax { .. } => "GumbelSoftmax",
        }
    }
}

/// What the tape keeps about its sample nodes and surrogates, beside the nodes themselves
/// (whose ops stay what the path recorded), in recording order.
pub(crate) struct Register<F: Scalar> {
    pub(crate) samples: Vec<SampleRecord<F>>,
    pub(crate) surrogates: Vec<SurrogateRecord>,
}

impl<F: Scalar> Default for Register<F> {
    fn default() -> Self {
        Register {
            samples: Vec::new(),
            surrogates: Vec::new(),
        }
    }
}

impl<F: Scalar> Register<F> {
    pub(crate) fn sample(&self, node: u32) -> Option<&SampleRecord<F>> {
        let i = self.samples.binary_search_by_key(&node, |s| s.node).ok()?;
        Some(&self.samples[i])
    }

    pub(crate) fn surrogate(&self, node: u32) -> Option<&SurrogateRecord> {
        let i = self
            .surrogates
            .binary_search_by_key(&node, |s| s.node)
            .ok()?;
        Some(&self.surrogates[i])
    }
}

/// One sample node: which node holds the draw, from which distribution, with what estimator.
pub(crate) struct SampleRecord<F: Scalar> {
    pub(crate) node: u32,
    pub(crate) distribution: &'static str,
    pub(crate) kind: SampleKind<F>,
}

/// What a sample node needs at backward.
pub(crate) enum SampleKind<F: Scalar> {
    /// The end of a pathwise path (or a straight-through or relaxed draw); `noise` is the node
    /// holding `ε` where there is one.
    Path { noise: Option<u32> },
    /// A score-function draw: `log_prob` is the node of `log q(w)` that backward seeds with
    /// `Q_w − b_w`.
    Score {
        log_prob: u32,
        baseline: baseline::NodeBaseline<F>,
    },
}

/// A surrogate's final node and the score nodes whose baselines it applied (its own and
/// those of the surrogates inside it), so that crediting them again for costs outside it
/// applies no baseline twice.
pub(crate) struct SurrogateRecord {
    pub(crate) node: u32,
    pub(crate) covered: Vec<u32>,
}

impl<F: Scalar> Tape<'_, F> {
    /// Draws from `dist` and records a sample node with the distribution's best estimator:
    /// pathwise where `dist` is reparameterizable, the score function (no baseline) otherwise.
    ///
    /// # Example
    /// ```
    /// use ndarray::array;
    /// use rand::SeedableRng;
    /// use stograd::dist::Normal;
    /// use stograd::Tape;
    ///
    /// let tape = Tape::<f64>::new();
    /// let mu = tape.variable(array![1.0]);
    /// let q = Normal::new(mu, tape.constant(array![0.5]))?;
    /// let z = tape.sample(&q, &mut rand::rngs::StdRng::seed_from_u64(7));
    /// // z = μ + 0.5 ε, so ∂z/∂μ = 1 and the noise is kept on the node
    /// assert_eq!(z.backward()?.wrt(mu).unwrap()[0], 1.0);
    /// let eps = z.noise().unwrap()[0];
    /// assert!((z.value()[0] - (1.0 + 0.5 * eps)).abs() < 1e-15);
    /// # Ok::<(), stograd::Error>(())
    /// ```
    ///
    /// # Panics
    /// If a parameter of `dist` was recorded on another tape.
    #[track_caller]
    pub fn sample<'t, D>(&'t self, dist: &D, rng: &mut dyn Rng) -> Var<'t, F>
    where
        D: Distribution<'t, F> + ?Sized,
    {
        let estimator = if dist.has_rsample() {
            Estimator::Pathwise
        } else {
            Estimator::score_function()
        };
        self.sample_with(dist, estimator, rng)
            .expect("the default estimator of a distribution always applies")
    }

    /// Draws from `dist` and records a sample node with the given estimator.
    ///
    /// # Errors
    /// [`Error::NoPathwise`] when a pathwise estimator is asked of a distribution without one;
    /// [`Error::UnsupportedEstimator`] when antithetic pairs are asked of asymmetric noise or
    /// of a batch whose leading axis is empty or odd, when straight-through or Gumbel-softmax
    /// is asked of a distribution that is not discrete, or when a baseline does not fit the
    /// draw (a learned baseline of the wrong shape, a leave-one-out group that does not divide
    /// the batch); [`Error::InvalidArgument`] for a constant baseline that is NaN or infinite.
    ///
    /// # Panics
    /// If a parameter of `dist`, or a learned baseline, was recorded on another tape.
    #[track_caller]
    pub fn sample_with<'t, D>(
        &'t self,
        dist: &D,
        estimator: Estimator<'t, F>,
        rng: &mut dyn Rng,
    ) -> Result<Var<'t, F>>
    where
        D: Distribution<'t, F> + ?Sized,
    {
        let location = Location::caller();
        for p in dist.params() {
            self.check_owns(dist.name(), p);
        }
        if let Estimator::ScoreFunction {
            baseline: Baseline::Learned(b),
        } = &estimator
        {
            self.check_owns("a learned baseline", *b);
        }
        let start = self.len() as u32;
        let path = |path: Var<'t, F>, noise: Option<u32>| {
            self.register_path(path, start, dist.name(), noise, location)
        };
        match estimator {
            Estimator::Pathwise => {
                pathwise::sample(self, dist, rng, false).map(|(z, e)| path(z, Some(e)))
            }
            Estimator::Antithetic => {
                pathwise::sample(self, dist, rng, true).map(|(z, e)| path(z, Some(e)))
            }
            Estimator::ScoreFunction { baseline } => {
                score::sample(self, dist, &baseline, rng, location)
            }
            Estimator::StraightThrough => dist.straight_through(rng).map(|z| path(z, None)),
            Estimator::GumbelSoftmax { temperature, hard } => {
                if !(temperature > F::zero() && temperature.is_finite()) {
                    return Err(Error::InvalidArgument {
                        name: "temperature",
                        constraint: "positive and finite",
                        value: temperature.as_f64(),
                    });
                }
                dist.gumbel_softmax(temperature, hard, rng)
                    .map(|z| path(z, None))
            }
        }
    }

    /// Registers the last node of a sample's path as the sample node, naming the caller's
    /// line. A path that ends on a node recorded before `start` (a value the distribution
    /// already held) gets a copy, so that the register never claims someone else's node.
    fn register_path<'t>(
        &'t self,
        path: Var<'t, F>,
        start: u32,
        distribution: &'static str,
        noise: Option<u32>,
        location: &'static Location<'static>,
    ) -> Var<'t, F> {
        let path = if path.index < start {
            path.reshape(&path.shape())
        } else {
            path
        };
        self.nodes.borrow_mut()[path.index as usize].location = location;
        self.register.borrow_mut().samples.push(SampleRecord {
            node: path.index,
            distribution,
            kind: SampleKind::Path { noise },
        });
        path
    }
}

impl<F: Scalar> Var<'_, F> {
    /// The base noise `ε` of a pathwise sample node, `None` for any other node.
    pub fn noise(self) -> Option<ndarray::ArrayD<F>> {
        let register = self.tape.register.borrow();
        match register.sample(self.index)?.kind {
            SampleKind::Path { noise: Some(noise) } => {
                Some(self.tape.with_value(noise, Clone::clone))
            }
            _ => None,
        }
    }
}

pub(crate) fn unsupported<F: Scalar>(
    estimator: &Estimator<'_, F>,
    distribution: &'static str,
    reason: String,
) -> Error {
    Error::UnsupportedEstimator {
        estimator: estimator.name(),
        distribution,
        reason,
    }
}
