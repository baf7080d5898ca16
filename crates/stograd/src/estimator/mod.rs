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
mod exact;
mod pathwise;
mod score;

pub use baseline::{Baseline, EmaBaseline};
pub use exact::exact_expectation;

use std::panic::Location;

use rand::Rng;
use smallvec::smallvec;

use crate::dist::Distribution;
use crate::ops::{Backward, InputGrads, Op};
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

/// The ops the estimators record: sample nodes, and the marker that ends a surrogate.
pub(crate) enum EstimatorOp<F: Scalar> {
    Sample(SampleOp<F>),
    /// Identity on the surrogate's value; lists the score nodes whose terms it already holds.
    Surrogate {
        covered: Vec<u32>,
    },
}

/// The op of a sample node.
pub(crate) struct SampleOp<F: Scalar> {
    pub(crate) distribution: &'static str,
    pub(crate) kind: SampleKind<F>,
}

/// What a sample node needs at backward.
pub(crate) enum SampleKind<F: Scalar> {
    /// The end of a pathwise path: `inner` is the path's last op, whose backward rule the
    /// node keeps; without one the node is an identity over the path's output. `noise` is the
    /// node holding `ε` where there is one.
    Path {
        noise: Option<u32>,
        inner: Option<Box<Op<F>>>,
    },
    /// The inputs are the distribution's parameters (edges only: no path gradient);
    /// `log_prob` is the node of `log q(w)` that backward seeds with `Q_w − b_w`.
    Score {
        log_prob: u32,
        baseline: baseline::NodeBaseline<F>,
    },
}

impl<F: Scalar> EstimatorOp<F> {
    /// Sample nodes are named after their distribution, e.g. `"Normal"`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            EstimatorOp::Sample(op) => op.distribution,
            EstimatorOp::Surrogate { .. } => "surrogate",
        }
    }

    pub(crate) fn backward(&self, b: &Backward<'_, F>) -> InputGrads<F> {
        match self {
            EstimatorOp::Sample(SampleOp {
                kind:
                    SampleKind::Path {
                        inner: Some(inner), ..
                    },
                ..
            }) => inner.backward(b),
            EstimatorOp::Sample(SampleOp {
                kind: SampleKind::Path { inner: None, .. },
                ..
            })
            | EstimatorOp::Surrogate { .. } => smallvec![Some(b.grad.clone())],
            EstimatorOp::Sample(SampleOp {
                kind: SampleKind::Score { .. },
                ..
            }) => b.needs.iter().map(|_| None).collect(),
        }
    }
}

impl<F: Scalar> Tape<F> {
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
    #[track_caller]
    pub fn sample<'t, D, R>(&'t self, dist: &D, rng: &mut R) -> Var<'t, F>
    where
        D: Distribution<'t, F>,
        R: Rng + ?Sized,
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
    /// the batch).
    #[track_caller]
    pub fn sample_with<'t, D, R>(
        &'t self,
        dist: &D,
        estimator: Estimator<'t, F>,
        rng: &mut R,
    ) -> Result<Var<'t, F>>
    where
        D: Distribution<'t, F>,
        R: Rng + ?Sized,
    {
        let location = Location::caller();
        let start = self.len() as u32;
        let path = |path: Var<'t, F>, noise: Option<u32>| {
            self.mark_sample(path, start, dist.name(), noise, location)
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

    /// Turns the last node of a sample's path into the sample node: its op becomes a sample
    /// op wrapping the original (same value, same backward), so no copy is made. A path that
    /// ends on a node recorded before `start` (a leaf, or a value the distribution already
    /// held) gets an identity sample node over it instead.
    fn mark_sample<'t>(
        &'t self,
        path: Var<'t, F>,
        start: u32,
        distribution: &'static str,
        noise: Option<u32>,
        location: &'static Location<'static>,
    ) -> Var<'t, F> {
        let wrap = path.index >= start
            && !matches!(
                self.nodes.borrow()[path.index as usize].op,
                Op::Leaf(_) | Op::Estimator(_)
            );
        if !wrap {
            let kind = SampleKind::Path { noise, inner: None };
            let op = Op::Estimator(EstimatorOp::Sample(SampleOp { distribution, kind }));
            return self.push_marker(op, path.index, location);
        }
        let mut nodes = self.nodes.borrow_mut();
        let node = &mut nodes[path.index as usize];
        let inner = std::mem::replace(&mut node.op, Op::Leaf(crate::ops::Leaf::Constant));
        let kind = SampleKind::Path {
            noise,
            inner: Some(Box::new(inner)),
        };
        node.op = Op::Estimator(EstimatorOp::Sample(SampleOp { distribution, kind }));
        node.location = location;
        path
    }

    /// Records an identity node over `parent` (a copy of its value) with the given op.
    pub(crate) fn push_marker(
        &self,
        op: Op<F>,
        parent: u32,
        location: &'static Location<'static>,
    ) -> Var<'_, F> {
        let value = self.with_value(parent, ndarray::ArrayD::clone);
        self.push(op, smallvec![parent], value, location)
    }

    /// Records a score-function sample: its value carries no gradient, its parents are the
    /// distribution's parameters.
    fn push_score_sample(
        &self,
        op: SampleOp<F>,
        parents: smallvec::SmallVec<[u32; 2]>,
        value: ndarray::ArrayD<F>,
        location: &'static Location<'static>,
    ) -> Var<'_, F> {
        self.push_without_grad(
            Op::Estimator(EstimatorOp::Sample(op)),
            parents,
            value,
            location,
        )
    }
}

/// The seeds backward adds for the score-function nodes upstream of `root`.
pub(crate) fn score_seeds<F: Scalar>(
    nodes: &[crate::tape::Node<F>],
    root: usize,
) -> Result<Vec<(usize, ndarray::ArrayD<F>)>> {
    score::seeds(nodes, root).map(|(seeds, _)| seeds)
}

impl<F: Scalar> Var<'_, F> {
    /// The base noise `ε` of a pathwise sample node, `None` for any other node.
    pub fn noise(self) -> Option<ndarray::ArrayD<F>> {
        let nodes = self.tape.nodes.borrow();
        match &nodes[self.index as usize].op {
            Op::Estimator(EstimatorOp::Sample(SampleOp {
                kind:
                    SampleKind::Path {
                        noise: Some(noise), ..
                    },
                ..
            })) => Some(nodes[*noise as usize].value.clone()),
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
