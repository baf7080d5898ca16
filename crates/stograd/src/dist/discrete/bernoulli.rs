//! The Bernoulli distribution.

use std::panic::Location;

use ndarray::{ArrayD, Zip};
use rand::{Rng, RngExt};

use super::{
    Link, ProbsLogits, broadcast_var, one_minus, relaxable, step, straight_through, support,
    value_shape,
};
use crate::dist::{Constraint, Distribution, Family, RelaxedBernoulli, check_param, draw_array};
use crate::ops::PARALLEL_CHUNK;
use crate::{Estimator, Result, Scalar, Var};

/// The Bernoulli distribution on `{0, 1}` with `P(1) = p = σ(l)`, elementwise.
///
/// - `log p(x) = x l − softplus(l) = −bce_with_logits(l, x)`
/// - `E[x] = p`, `Var[x] = p (1 − p)`, `H = −p ln p − (1 − p) ln(1 − p) = bce_with_logits(l, p)`
///
/// The batch shape is the parameter's shape, the event shape `[]`. `log_prob` does not check
/// that `x` is binary: for `x ∈ [0, 1]` it is the negative binary cross-entropy, as VAEs with
/// grey-level pixels use. Draws are `u < p` with `u ~ U[0, 1)`.
///
/// # Example
/// ```
/// use ndarray::array;
/// use rand::SeedableRng;
/// use stograd::dist::{Bernoulli, Distribution};
/// use stograd::Tape;
///
/// let tape = Tape::<f64>::new();
/// let logits = tape.variable(array![0.0, 2.0]);
/// let b = Bernoulli::from_logits(logits)?;
/// let lp = b.log_prob(tape.constant(array![1.0, 0.0]));
/// // ln σ(0) = −ln 2; ln(1 − σ(2)) = −softplus(2) = −ln(1 + e²)
/// let want = [-(2f64.ln()), -(1.0 + 2f64.exp()).ln()];
/// assert!((lp.value()[0] - want[0]).abs() < 1e-15 && (lp.value()[1] - want[1]).abs() < 1e-15);
/// // ∂/∂l log p(x) = x − σ(l)
/// let grads = lp.sum().backward()?;
/// assert_eq!(grads.wrt(logits).unwrap()[0], 0.5);
///
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let x = b.sample(&mut rng);
/// assert!(x.iter().all(|&v| v == 0.0 || v == 1.0));
/// # Ok::<(), stograd::Error>(())
/// ```
///
/// PyTorch: `torch.distributions.Bernoulli`.
#[derive(Clone, Debug)]
pub struct Bernoulli<'t, F: Scalar> {
    params: ProbsLogits<'t, F>,
    batch_shape: Vec<usize>,
}

impl<'t, F: Scalar> Bernoulli<'t, F> {
    /// The Bernoulli distribution with `P(1) = probs`.
    ///
    /// `logits()` is then `ln p − ln(1 − p)` with `p` clamped to `[ε, 1 − ε]`, finite at 0
    /// and 1; `probs()` is `probs` itself.
    ///
    /// # Example
    /// ```
    /// use ndarray::array;
    /// use stograd::dist::{Bernoulli, Distribution};
    /// use stograd::Tape;
    ///
    /// let tape = Tape::<f64>::new();
    /// let b = Bernoulli::from_probs(tape.constant(array![0.25, 0.0]))?;
    /// assert!((b.logits().value()[0] + 3f64.ln()).abs() < 1e-15); // ln(¼ / ¾)
    /// // log P(x = 0) at p = 0 is ln(1 − ε) ≈ 0, not NaN
    /// assert!(b.log_prob(tape.constant(array![0.0, 0.0])).value()[1].abs() < 1e-15);
    /// assert!(Bernoulli::from_probs(tape.constant(array![1.5])).is_err());
    /// # Ok::<(), stograd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) naming the first element of `probs` outside `[0, 1]` (NaN
    /// included).
    ///
    /// PyTorch: `Bernoulli(probs=p)`.
    #[track_caller]
    pub fn from_probs(probs: Var<'t, F>) -> Result<Self> {
        let _caller = crate::dist::constructing(probs);
        check_param("Bernoulli", "probs", probs, Constraint::UnitInterval)?;
        Ok(Bernoulli {
            params: ProbsLogits::from_probs(Link::Binary, probs),
            batch_shape: probs.shape(),
        })
    }

    /// The Bernoulli distribution with log-odds `logits`: `P(1) = σ(logits)`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) naming the first element of `logits` that is not finite.
    ///
    /// PyTorch: `Bernoulli(logits=l)`.
    #[track_caller]
    pub fn from_logits(logits: Var<'t, F>) -> Result<Self> {
        let _caller = crate::dist::constructing(logits);
        check_param("Bernoulli", "logits", logits, Constraint::Finite)?;
        Ok(Bernoulli {
            params: ProbsLogits::from_logits(Link::Binary, logits),
            batch_shape: logits.shape(),
        })
    }

    /// `P(1)`, shape `batch_shape`.
    pub fn probs(&self) -> Var<'t, F> {
        self.params.probs()
    }

    /// The log-odds `ln p − ln(1 − p)`, shape `batch_shape`.
    pub fn logits(&self) -> Var<'t, F> {
        self.params.logits()
    }
}

impl<'t, F: Scalar> Distribution<'t, F> for Bernoulli<'t, F> {
    fn name(&self) -> &'static str {
        "Bernoulli"
    }

    fn batch_shape(&self) -> &[usize] {
        &self.batch_shape
    }

    fn event_shape(&self) -> &[usize] {
        &[]
    }

    fn params(&self) -> Vec<Var<'t, F>> {
        vec![self.params.given]
    }

    fn param_event_dims(&self) -> Option<Vec<usize>> {
        Some(vec![0])
    }

    fn sample(&self, rng: &mut dyn Rng) -> ArrayD<F> {
        // u ~ U[0, 1) in f64, so that small probabilities keep their resolution in f32 too
        let u: ArrayD<f64> = draw_array(&self.batch_shape, rng, |r| r.random::<f64>());
        self.probs().with_value(|p| {
            let zip = Zip::from(&u).and(p);
            if u.len() >= PARALLEL_CHUNK {
                zip.par_map_collect(|&u, &p| step(u < p.as_f64()))
            } else {
                zip.map_collect(|&u, &p| step(u < p.as_f64()))
            }
        })
    }

    #[track_caller]
    fn log_prob(&self, x: Var<'t, F>) -> Var<'t, F> {
        let _caller = crate::dist::at_caller(self);
        let shape = value_shape(
            "Bernoulli",
            &x.shape(),
            &self.batch_shape,
            Location::caller(),
        );
        let logits = broadcast_var(self.logits(), &shape);
        -logits.bce_with_logits(broadcast_var(x, &shape))
    }

    fn entropy(&self) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        // −p ln σ(l) − (1 − p) ln σ(−l)
        Ok(self.logits().bce_with_logits(self.probs()))
    }

    fn mean(&self) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        Ok(self.probs())
    }

    fn variance(&self) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        let p = self.probs();
        Ok(p * one_minus(p))
    }

    /// `hard + p − stop_grad(p)`: the 0/1 draw forward, `∂z/∂p = 1` backward.
    fn straight_through(&self, rng: &mut dyn Rng) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        Ok(straight_through(self.sample(rng), self.probs()))
    }

    fn supports(&self, estimator: &Estimator<'t, F>) -> bool {
        relaxable(estimator)
    }

    /// A [`RelaxedBernoulli`] draw `σ((l + L)/τ)` with logistic noise `L`; with `hard`, the
    /// forward value is `1[y > ½]`, which is exactly a Bernoulli(`p`) draw.
    fn gumbel_softmax(&self, temperature: F, hard: bool, rng: &mut dyn Rng) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        let y = RelaxedBernoulli::new(temperature, self.clone())?.rsample(rng)?;
        let half = F::from_f64(0.5);
        Ok(if hard {
            straight_through(y.value().mapv(|v| step(v > half)), y)
        } else {
            y
        })
    }

    fn enumerate_support(&self) -> Result<ArrayD<F>> {
        Ok(support(2, &self.batch_shape, false))
    }

    fn family(&self) -> Family<'t, F> {
        Family::Bernoulli {
            logits: self.logits(),
        }
    }
}
