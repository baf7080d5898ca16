//! Sample nodes and their gradient estimators.
//!
//! [`Tape::sample`] and [`Tape::sample_with`] record a *sample node*: the draw, which
//! distribution it came from, and the estimator that turns it into gradients.
//!
//! - **Pathwise** (reparameterized): `z = T_θ(ε)` with parameter-free noise `ε`; gradients
//!   flow through `T`. The node keeps `ε` ([`Var::noise`]) so the path can be re-run with the
//!   same noise.
//! - **Antithetic**: pathwise with the noise drawn in pairs `(ε, −ε)` along the leading
//!   (batch) axis, for symmetric base noise. For an odd `f`, the pair's errors cancel.

mod pathwise;

use std::panic::Location;

use rand::Rng;
use smallvec::smallvec;

use crate::dist::Distribution;
use crate::ops::{Backward, InputGrads, Op};
use crate::{Error, Result, Scalar, Tape, Var};

/// How a sample node produces gradients.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Estimator {
    /// Reparameterized: `z = T_θ(ε)`, gradients flow along the path.
    Pathwise,
    /// Pathwise with antithetic pairs: rows `i` and `i + n/2` of the leading axis use `ε` and
    /// `−ε`. Needs symmetric base noise and an even, non-empty leading axis.
    Antithetic,
}

impl Estimator {
    /// The estimator's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Estimator::Pathwise => "Pathwise",
            Estimator::Antithetic => "Antithetic",
        }
    }
}

/// The op of a sample node.
pub(crate) struct SampleOp {
    pub(crate) distribution: &'static str,
    pub(crate) kind: SampleKind,
}

/// What a sample node needs at backward.
pub(crate) enum SampleKind {
    /// The only input is the path's output; `noise` is the node holding `ε`.
    Pathwise { noise: u32 },
}

impl SampleOp {
    /// Sample nodes are named after their distribution, e.g. `"Normal"`.
    pub(crate) fn name(&self) -> &'static str {
        self.distribution
    }

    pub(crate) fn backward<F: Scalar>(&self, b: &Backward<'_, F>) -> InputGrads<F> {
        match self.kind {
            SampleKind::Pathwise { .. } => smallvec![Some(b.grad.clone())],
        }
    }
}

impl<F: Scalar> Tape<F> {
    /// Draws from `dist` and records a sample node with the distribution's best estimator:
    /// pathwise where `dist` is reparameterizable.
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
    /// If `dist` has no pathwise estimator.
    #[track_caller]
    pub fn sample<'t, D, R>(&'t self, dist: &D, rng: &mut R) -> Var<'t, F>
    where
        D: Distribution<'t, F>,
        R: Rng + ?Sized,
    {
        match self.sample_with(dist, Estimator::Pathwise, rng) {
            Ok(z) => z,
            Err(e) => panic!("Tape::sample: {e}"),
        }
    }

    /// Draws from `dist` and records a sample node with the given estimator.
    ///
    /// # Errors
    /// [`Error::NoPathwise`] when a pathwise estimator is asked of a distribution without one;
    /// [`Error::UnsupportedEstimator`] when antithetic pairs are asked of asymmetric noise or
    /// of a batch whose leading axis is empty or odd.
    #[track_caller]
    pub fn sample_with<'t, D, R>(
        &'t self,
        dist: &D,
        estimator: Estimator,
        rng: &mut R,
    ) -> Result<Var<'t, F>>
    where
        D: Distribution<'t, F>,
        R: Rng + ?Sized,
    {
        let location = Location::caller();
        match estimator {
            Estimator::Pathwise => pathwise::sample(self, dist, rng, false, location),
            Estimator::Antithetic => pathwise::sample(self, dist, rng, true, location),
        }
    }

    /// Records a sample node over `parents` with the given value.
    pub(crate) fn push_sample(
        &self,
        op: SampleOp,
        parent: u32,
        location: &'static Location<'static>,
    ) -> Var<'_, F> {
        let value = self.with_value(parent, ndarray::ArrayD::clone);
        self.push(Op::Sample(op), smallvec![parent], value, location)
    }
}

impl<F: Scalar> Var<'_, F> {
    /// The base noise `ε` of a pathwise sample node, `None` for any other node.
    pub fn noise(self) -> Option<ndarray::ArrayD<F>> {
        let nodes = self.tape.nodes.borrow();
        match &nodes[self.index as usize].op {
            Op::Sample(SampleOp {
                kind: SampleKind::Pathwise { noise },
                ..
            }) => Some(nodes[*noise as usize].value.clone()),
            _ => None,
        }
    }
}

pub(crate) fn unsupported(
    estimator: &Estimator,
    distribution: &'static str,
    reason: String,
) -> Error {
    Error::UnsupportedEstimator {
        estimator: estimator.name(),
        distribution,
        reason,
    }
}
