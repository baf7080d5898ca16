//! Continuous relaxations of the discrete distributions: the Concrete distributions of
//! Maddison, Mnih & Teh (2017), also called Gumbel-softmax (Jang, Gu & Poole, 2017).
//!
//! Both are reparameterizable, with temperature `τ > 0` and `u ~ U(0, 1)`:
//!
//! | type | base noise | draw |
//! |---|---|---|
//! | [`RelaxedBernoulli`] | logistic `L = ln u − ln(1 − u)` (symmetric) | `σ((l + L)/τ)` |
//! | [`RelaxedOneHotCategorical`] | Gumbel `gₖ = −ln(−ln uₖ)` | `softmax((l + g)/τ)` |
//!
//! As `τ → 0` the draws approach the discrete ones, and two facts hold at every `τ`:
//! `y > ½ ⟺ l + L > 0`, which has probability `σ(l) = p`; and `argmax y = argmax (l + g)`,
//! which is category `k` with probability `softmax(l)ₖ` (the Gumbel-max trick). Small `τ`
//! gives nearly discrete draws with high-variance gradients, large `τ` smooth draws with
//! biased ones.
//!
//! Draws are clamped away from the boundary (`y ≥ F::min_positive_value()`, and
//! `y ≤ 1 − F::epsilon()` in the binary case) so that `log_prob` of a draw stays finite
//! when `τ` is small, as PyTorch does; the clamp moves only values within `ε` of the boundary,
//! where the gradient is already below `ε/τ`.
//!
//! Mean, variance and entropy have no closed form and return
//! [`Error::Undefined`]; there is no analytic KL.

use std::panic::Location;

use ndarray::ArrayD;
use rand::Rng;

use super::concrete::{BinaryConcreteLogProb, ConcreteLogProb};
use super::discrete::{one_hot_shape, value_shape};
use super::gaussian::broadcast_to;
use super::loc_scale::{Base, LogisticNoise, open01};
use super::{Bernoulli, Distribution, OneHotCategorical, check_noise, draw_shape};
use crate::{Error, Result, Scalar, Var};

/// Checks that a temperature is positive and finite.
fn check_temperature<F: Scalar>(temperature: F) -> Result<()> {
    if temperature.is_finite() && temperature > F::zero() {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            name: "temperature",
            constraint: "positive and finite",
            value: temperature.as_f64(),
        })
    }
}

fn no_closed_form(distribution: &'static str, quantity: &'static str) -> Error {
    Error::Undefined {
        distribution,
        quantity,
        reason: "it has no closed form (estimate it from samples)",
    }
}

/// The binary Concrete distribution: `y = σ((l + L)/τ)` with logistic noise `L`, elementwise.
///
/// With `x = logit(y) = ln y − ln(1 − y)` and `d = l − τx`, the density of `x` is logistic,
/// `ln p(x) = ln τ + d − 2 softplus(d)`, and the change of variables `y = σ(x)` subtracts
/// `ln y + ln(1 − y)`:
///
/// `ln p(y) = ln τ + d − 2 softplus(d) − ln y − ln(1 − y)`,
///
/// which is the paper's `τ α y^{−τ−1} (1 − y)^{−τ−1} / (α y^{−τ} + (1 − y)^{−τ})²` with
/// `α = eˡ`, computed in log space. `P(y > ½) = σ(l)` for every `τ`.
///
/// Batch shape: the parameter's; event shape `[]`. Build it from a [`Bernoulli`], so either
/// parameterization (and its validation) carries over.
///
/// # Example
/// ```
/// use ndarray::array;
/// use rand::SeedableRng;
/// use stograd::dist::{Bernoulli, Distribution, RelaxedBernoulli};
/// use stograd::Tape;
///
/// let tape = Tape::<f64>::new();
/// let logits = tape.variable(array![0.5, -1.0]);
/// let q = RelaxedBernoulli::new(0.5, Bernoulli::from_logits(logits)?)?;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(3);
/// let y = tape.sample(&q, &mut rng); // pathwise: y = σ((l + L)/τ)
/// let noise = y.noise().unwrap();
/// let want = 1.0 / (1.0 + (-(0.5 + noise[0]) / 0.5).exp());
/// assert!((y.value()[0] - want).abs() < 1e-15);
/// // ∂y/∂l = y (1 − y)/τ
/// let g = y.backward()?.wrt(logits).unwrap()[0];
/// assert!((g - want * (1.0 - want) / 0.5).abs() < 1e-12);
/// // at y = ½ the density is 4τ σ(l) σ(−l)
/// let lp = q.log_prob(tape.constant(array![0.5, 0.5])).value()[0];
/// let sigma = |x: f64| 1.0 / (1.0 + (-x).exp());
/// assert!((lp - (2.0 * sigma(0.5) * sigma(-0.5)).ln()).abs() < 1e-14);
/// # Ok::<(), stograd::Error>(())
/// ```
///
/// PyTorch: `torch.distributions.RelaxedBernoulli`.
#[derive(Clone, Debug)]
pub struct RelaxedBernoulli<'t, F: Scalar> {
    temperature: F,
    base: Bernoulli<'t, F>,
}

impl<'t, F: Scalar> RelaxedBernoulli<'t, F> {
    /// The relaxation of `base` at temperature `temperature`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `temperature` is not positive and finite.
    ///
    /// PyTorch: `RelaxedBernoulli(temperature, logits=l)` (or `probs=p`).
    #[track_caller]
    pub fn new(temperature: F, base: Bernoulli<'t, F>) -> Result<Self> {
        let _caller = crate::dist::constructing(base.logits());
        check_temperature(temperature)?;
        Ok(RelaxedBernoulli { temperature, base })
    }

    /// The temperature `τ`.
    pub fn temperature(&self) -> F {
        self.temperature
    }

    /// The log-odds of the Bernoulli it relaxes, shape `batch_shape`.
    pub fn logits(&self) -> Var<'t, F> {
        self.base.logits()
    }

    /// The probabilities `σ(l)` of the Bernoulli it relaxes, shape `batch_shape`.
    pub fn probs(&self) -> Var<'t, F> {
        self.base.probs()
    }
}

impl<'t, F: Scalar> Distribution<'t, F> for RelaxedBernoulli<'t, F> {
    fn name(&self) -> &'static str {
        "RelaxedBernoulli"
    }

    fn batch_shape(&self) -> &[usize] {
        self.base.batch_shape()
    }

    fn event_shape(&self) -> &[usize] {
        &[]
    }

    fn params(&self) -> Vec<Var<'t, F>> {
        self.base.params()
    }

    fn param_event_dims(&self) -> Option<Vec<usize>> {
        self.base.param_event_dims()
    }

    fn sample(&self, rng: &mut dyn Rng) -> ArrayD<F> {
        self.rsample(rng).expect("reparameterizable").value()
    }

    #[track_caller]
    fn log_prob(&self, y: Var<'t, F>) -> Var<'t, F> {
        let _caller = crate::dist::at_caller(self);
        let shape = value_shape(
            self.name(),
            &y.shape(),
            self.batch_shape(),
            Location::caller(),
        );
        let l = broadcast_to(self.logits(), &shape);
        y.tape().apply(
            BinaryConcreteLogProb(self.temperature),
            &[l, broadcast_to(y, &shape)],
        )
    }

    fn entropy(&self) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        Err(no_closed_form(self.name(), "entropy"))
    }

    fn mean(&self) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        Err(no_closed_form(self.name(), "mean"))
    }

    fn variance(&self) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        Err(no_closed_form(self.name(), "variance"))
    }

    /// Logistic noise is symmetric: `u ↦ 1 − u` maps `L` to `−L`.
    fn symmetric_noise(&self) -> bool {
        true
    }

    fn noise(&self, rng: &mut dyn Rng) -> Result<ArrayD<F>> {
        Ok(super::draw_array(
            self.batch_shape(),
            rng,
            <LogisticNoise as Base>::draw,
        ))
    }

    #[track_caller]
    fn reparameterize(&self, noise: Var<'t, F>) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        check_noise(noise, self.batch_shape().to_vec())?;
        let y = ((self.logits() + noise) / self.temperature).sigmoid();
        let y = y.clamp(F::min_positive_value(), F::one() - F::epsilon());
        // p = 0 (or 1) is stored as the finite logit of a clamped ε, which a logistic draw
        // exceeds once in 1/ε; the relaxation of an impossible outcome is the boundary itself
        Ok(pin_impossible(y, self.probs(), |p| {
            if p == F::zero() {
                Some(F::min_positive_value())
            } else if p == F::one() {
                Some(F::one() - F::epsilon())
            } else {
                None
            }
        }))
    }

    fn has_rsample(&self) -> bool {
        true
    }
}

/// The categorical Concrete (Gumbel-softmax) distribution on the simplex:
/// `y = softmax((l + g)/τ)` with independent Gumbel noise `gₖ`, over the last axis.
///
/// With `x = ln y` and `s = l − τx`, the density (with respect to the first `K − 1`
/// coordinates) is
///
/// `ln p(y) = ln (K − 1)! + (K − 1) ln τ + Σₖ sₖ − K logsumexp(s) − Σₖ ln yₖ`,
///
/// the paper's `(K − 1)! τ^{K−1} Πₖ (πₖ yₖ^{−τ−1}) / (Σₖ πₖ yₖ^{−τ})^K` in log space.
/// `argmax y` is category `k` with probability `softmax(l)ₖ` for every `τ`.
///
/// Parameters and draws have shape `batch ++ [K]` (event shape `[K]`). Build it from a
/// [`OneHotCategorical`], so either parameterization (and its validation) carries over.
///
/// # Example
/// ```
/// use ndarray::array;
/// use rand::SeedableRng;
/// use stograd::dist::{Distribution, OneHotCategorical, RelaxedOneHotCategorical};
/// use stograd::Tape;
///
/// let tape = Tape::<f64>::new();
/// let logits = tape.variable(array![[1.0, 0.0, -1.0]]);
/// let q = RelaxedOneHotCategorical::new(0.3, OneHotCategorical::from_logits(logits)?)?;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(5);
/// let y = tape.sample(&q, &mut rng); // pathwise: softmax((l + g)/τ)
/// assert!((y.value().sum() - 1.0).abs() < 1e-12);
/// // the draws' gradient reaches the logits; Σₖ yₖ = 1 has none
/// let g = y.sum().backward()?.wrt(logits).unwrap().clone();
/// assert!(g.iter().all(|v| v.abs() < 1e-12));
/// // uniform logits and τ = 1 give the uniform density on the simplex, (K − 1)! = 2
/// let flat = RelaxedOneHotCategorical::new(1.0, OneHotCategorical::from_logits(
///     tape.constant(array![0.0, 0.0, 0.0]))?)?;
/// let lp = flat.log_prob(tape.constant(array![1.0, 1.0, 1.0] / 3.0)).item();
/// assert!((lp - 2f64.ln()).abs() < 1e-12);
/// # Ok::<(), stograd::Error>(())
/// ```
///
/// # Panics
/// `log_prob(y)` panics when `y`'s last axis is not `K` long or `y` does not broadcast
/// against `batch ++ [K]`.
///
/// PyTorch: `torch.distributions.RelaxedOneHotCategorical`.
#[derive(Clone, Debug)]
pub struct RelaxedOneHotCategorical<'t, F: Scalar> {
    temperature: F,
    base: OneHotCategorical<'t, F>,
}

impl<'t, F: Scalar> RelaxedOneHotCategorical<'t, F> {
    /// The relaxation of `base` at temperature `temperature`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `temperature` is not positive and finite.
    ///
    /// PyTorch: `RelaxedOneHotCategorical(temperature, logits=l)` (or `probs=p`).
    #[track_caller]
    pub fn new(temperature: F, base: OneHotCategorical<'t, F>) -> Result<Self> {
        let _caller = crate::dist::constructing(base.logits());
        check_temperature(temperature)?;
        Ok(RelaxedOneHotCategorical { temperature, base })
    }

    /// The temperature `τ`.
    pub fn temperature(&self) -> F {
        self.temperature
    }

    /// The normalized log-probabilities of the categorical it relaxes, `batch ++ [K]`.
    pub fn logits(&self) -> Var<'t, F> {
        self.base.logits()
    }

    /// The probabilities of the categorical it relaxes, `batch ++ [K]`.
    pub fn probs(&self) -> Var<'t, F> {
        self.base.probs()
    }

    /// The number of categories `K`.
    pub fn categories(&self) -> usize {
        self.base.categories()
    }

    fn draw_shape(&self) -> Vec<usize> {
        draw_shape(self.base.batch_shape(), self.base.event_shape())
    }
}

impl<'t, F: Scalar> Distribution<'t, F> for RelaxedOneHotCategorical<'t, F> {
    fn name(&self) -> &'static str {
        "RelaxedOneHotCategorical"
    }

    fn batch_shape(&self) -> &[usize] {
        self.base.batch_shape()
    }

    fn event_shape(&self) -> &[usize] {
        self.base.event_shape()
    }

    fn params(&self) -> Vec<Var<'t, F>> {
        self.base.params()
    }

    fn param_event_dims(&self) -> Option<Vec<usize>> {
        self.base.param_event_dims()
    }

    fn sample(&self, rng: &mut dyn Rng) -> ArrayD<F> {
        self.rsample(rng).expect("reparameterizable").value()
    }

    #[track_caller]
    fn log_prob(&self, y: Var<'t, F>) -> Var<'t, F> {
        let _caller = crate::dist::at_caller(self);
        let shape = one_hot_shape(self.name(), y, &self.draw_shape(), Location::caller());
        let l = broadcast_to(self.logits(), &shape);
        let op = ConcreteLogProb {
            temperature: self.temperature,
        };
        y.tape().apply(op, &[l, broadcast_to(y, &shape)])
    }

    fn entropy(&self) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        Err(no_closed_form(self.name(), "entropy"))
    }

    fn mean(&self) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        Err(no_closed_form(self.name(), "mean"))
    }

    fn variance(&self) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        Err(no_closed_form(self.name(), "variance"))
    }

    fn noise(&self, rng: &mut dyn Rng) -> Result<ArrayD<F>> {
        // Gumbel noise −ln(−ln u)
        Ok(super::draw_array(&self.draw_shape(), rng, |r| {
            -(-open01(r).ln()).ln()
        }))
    }

    #[track_caller]
    fn reparameterize(&self, noise: Var<'t, F>) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        let shape = self.draw_shape();
        let last = shape.len() - 1;
        check_noise(noise, shape)?;
        // the row's maximum subtracted before dividing by τ (softmax is shift-invariant): at a
        // τ so small that (l + g)/τ overflows, two +∞ made the draw NaN; now the argmax is
        // 0/τ = 0 and the draw one-hot, its limit
        let perturbed = self.logits() + noise;
        let top = perturbed.max_axis(last).unsqueeze(last).detach();
        let y = ((perturbed - top) / self.temperature).softmax(last);
        let y = y.clamp(F::min_positive_value(), F::one());
        // a category of probability 0 (stored as the log of the smallest positive float) is
        // never the argmax, and its relaxed coordinate is the clamp's floor
        let probs = broadcast_to(self.probs(), &y.shape());
        Ok(pin_impossible(y, probs, |p| {
            (p == F::zero()).then(F::min_positive_value)
        }))
    }

    fn has_rsample(&self) -> bool {
        true
    }
}

/// `y` with the elements where `pin(p)` is `Some(v)` replaced by the constant `v` (and so no
/// gradient there, as the limit has): `y ⊙ m + c`. No node is recorded when nothing is pinned.
fn pin_impossible<'t, F: Scalar>(
    y: Var<'t, F>,
    probs: Var<'t, F>,
    pin: impl Fn(F) -> Option<F>,
) -> Var<'t, F> {
    let (mask, fixed, any) = probs.with_value(|p| {
        let mask = p.mapv(|p| {
            if pin(p).is_some() {
                F::zero()
            } else {
                F::one()
            }
        });
        let fixed = p.mapv(|p| pin(p).unwrap_or(F::zero()));
        let any = mask.iter().any(|&m| m == F::zero());
        (mask, fixed, any)
    });
    if !any {
        return y;
    }
    let tape = y.tape();
    y * tape.constant(mask) + tape.constant(fixed)
}
