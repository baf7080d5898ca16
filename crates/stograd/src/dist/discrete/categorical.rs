//! Categorical distributions over indices and over one-hot vectors, sharing one parameter core.

use std::panic::Location;

use ndarray::{ArrayD, Axis, Dimension, IxDyn};
use rand::{Rng, RngExt};

use super::{
    Link, ProbsLogits, broadcast_var, one_hot_argmax, one_hot_shape, one_minus, relaxable,
    straight_through, support, value_shape,
};
use crate::dist::{
    Constraint, Distribution, Family, RelaxedOneHotCategorical, check_param, draw_shape,
};
use crate::{Error, Estimator, Result, Scalar, Var};

/// The parameters that [`Categorical`] and [`OneHotCategorical`] share: normalized
/// probabilities and logits over the last axis.
#[derive(Clone, Debug)]
struct CategoricalParams<'t, F: Scalar> {
    params: ProbsLogits<'t, F>,
    /// `batch ++ [K]`.
    shape: Vec<usize>,
}

impl<'t, F: Scalar> CategoricalParams<'t, F> {
    fn from_probs(distribution: &'static str, probs: Var<'t, F>) -> Result<Self> {
        let shape = category_shape("probs", &probs.shape())?;
        check_param(distribution, "probs", probs, Constraint::NonNegative)?;
        let last = shape.len() - 1;
        let total = probs.sum_axis(last);
        total.with_value(|sums| {
            match sums
                .indexed_iter()
                .find(|(_, s)| !(**s > F::zero() && s.is_finite()))
            {
                None => Ok(()),
                Some((index, &sum)) => Err(Error::InvalidParameter {
                    distribution,
                    param: "probs",
                    constraint: "a row (last axis) with a positive, finite sum",
                    value: sum.as_f64(),
                    index: index.slice().to_vec(),
                }),
            }
        })?;
        let normalized = probs / total.unsqueeze(last);
        Ok(CategoricalParams {
            params: ProbsLogits::from_probs(Link::Categorical, normalized),
            shape,
        })
    }

    fn from_logits(distribution: &'static str, logits: Var<'t, F>) -> Result<Self> {
        let shape = category_shape("logits", &logits.shape())?;
        check_param(distribution, "logits", logits, Constraint::Finite)?;
        let normalized = logits.log_softmax(shape.len() - 1);
        Ok(CategoricalParams {
            params: ProbsLogits::from_logits(Link::Categorical, normalized),
            shape,
        })
    }

    fn batch_shape(&self) -> &[usize] {
        &self.shape[..self.shape.len() - 1]
    }

    fn categories(&self) -> usize {
        self.shape[self.shape.len() - 1]
    }

    /// One category index per batch element, in row-major order, by inverting the CDF.
    fn draw_indices<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<usize> {
        let k = self.shape[self.shape.len() - 1];
        let probs = self.params.probs();
        probs.with_value(|probs| {
            probs
                .as_slice()
                .expect("node values are contiguous")
                .chunks_exact(k)
                .map(|lane| {
                    let u: f64 = rng.random();
                    let mut cumulative = 0.0;
                    let mut pick = None;
                    for (k, &p) in lane.iter().enumerate() {
                        let p = p.as_f64();
                        if p > 0.0 {
                            // Rounding may leave Σ p just below u: the last positive category wins.
                            pick = Some(k);
                            cumulative += p;
                            if u < cumulative {
                                break;
                            }
                        }
                    }
                    pick.expect("a row has positive mass")
                })
                .collect()
        })
    }

    fn entropy(&self) -> Var<'t, F> {
        let last = self.shape.len() - 1;
        // −Σ p l, with 0 · ln 0 = 0: a normalized logit is −∞ where the logits' spread
        // overflows ([3e38, −3e38] in f32), and its probability is 0; clamped to the most
        // negative float it contributes 0 · l = 0, not NaN (and no gradient, as the limit has)
        let logits = self.params.logits().clamp(-F::max_value(), F::max_value());
        -(self.params.probs() * logits).sum_axis(last)
    }

    fn family(&self) -> Family<'t, F> {
        Family::Categorical {
            logits: self.params.logits(),
        }
    }
}

/// Checks that a categorical parameter has a non-empty last (category) axis.
fn category_shape(param: &'static str, shape: &[usize]) -> Result<Vec<usize>> {
    let probs = param == "probs";
    match shape.last() {
        Some(&k) if k > 0 => Ok(shape.to_vec()),
        Some(_) => Err(Error::InvalidArgument {
            name: if probs {
                "the number of categories (the last axis of probs)"
            } else {
                "the number of categories (the last axis of logits)"
            },
            constraint: "at least 1",
            value: 0.0,
        }),
        None => Err(Error::InvalidArgument {
            name: if probs {
                "the number of axes of probs"
            } else {
                "the number of axes of logits"
            },
            constraint: "at least 1 (the last axis holds the categories)",
            value: 0.0,
        }),
    }
}

/// The categorical distribution over the indices `0..K` of the last parameter axis, with
/// `P(k) = pₖ = softmax(l)ₖ`.
///
/// - `log p(x) = l[x]` (normalized logits, gathered along the last axis)
/// - `H = −Σₖ pₖ ln pₖ`, with `0 · ln 0 = 0`
/// - no mean or variance: categories are labels, not numbers (use [`OneHotCategorical`])
///
/// Parameters have shape `batch ++ [K]`; draws are category indices stored as `F` values, of
/// shape `batch` (event shape `[]`).
///
/// # Example
/// ```
/// use ndarray::array;
/// use rand::SeedableRng;
/// use stograd::dist::{Categorical, Distribution};
/// use stograd::Tape;
///
/// let tape = Tape::<f64>::new();
/// let probs = tape.variable(array![[1.0, 1.0, 2.0], [0.0, 3.0, 1.0]]); // normalized by rows
/// let c = Categorical::from_probs(probs)?;
/// let lp = c.log_prob(tape.constant(array![2.0, 1.0])).value();
/// assert!((lp[0] - 0.5f64.ln()).abs() < 1e-15 && (lp[1] - 0.75f64.ln()).abs() < 1e-15);
/// // H = −Σ p ln p; the zero probability contributes 0
/// let h = c.entropy()?.value();
/// assert!((h[1] - (-0.75 * 0.75f64.ln() - 0.25 * 0.25f64.ln())).abs() < 1e-15);
///
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let x = c.sample(&mut rng);
/// assert_eq!(x.shape(), &[2]);
/// assert!(x[1] == 1.0 || x[1] == 2.0); // category 0 has probability 0
/// # Ok::<(), stograd::Error>(())
/// ```
///
/// # Panics
/// `log_prob(x)` panics, naming the value and its index, when an element of `x` is not an
/// integer in `0..K`, or when `x` does not broadcast against the batch shape.
///
/// PyTorch: `torch.distributions.Categorical`.
#[derive(Clone, Debug)]
pub struct Categorical<'t, F: Scalar> {
    params: CategoricalParams<'t, F>,
}

impl<'t, F: Scalar> Categorical<'t, F> {
    /// The categorical distribution with `P(k) ∝ probs[.., k]`; each row (last axis) is
    /// normalized by its sum.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) naming the first negative or non-finite element, or the
    /// first row whose sum is not positive and finite (all zeros);
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) if `probs` is 0-dimensional or has no categories.
    ///
    /// PyTorch: `Categorical(probs=p)`.
    #[track_caller]
    pub fn from_probs(probs: Var<'t, F>) -> Result<Self> {
        let _caller = crate::dist::constructing(probs);
        CategoricalParams::from_probs("Categorical", probs).map(|params| Categorical { params })
    }

    /// The categorical distribution with `P(k) = softmax(logits)[.., k]`; the logits need not
    /// be normalized.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) naming the first element that is not finite;
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) if `logits` is 0-dimensional or has no categories.
    ///
    /// PyTorch: `Categorical(logits=l)`.
    #[track_caller]
    pub fn from_logits(logits: Var<'t, F>) -> Result<Self> {
        let _caller = crate::dist::constructing(logits);
        CategoricalParams::from_logits("Categorical", logits).map(|params| Categorical { params })
    }

    /// The normalized probabilities, shape `batch ++ [K]`.
    pub fn probs(&self) -> Var<'t, F> {
        self.params.params.probs()
    }

    /// The normalized log-probabilities, shape `batch ++ [K]`.
    pub fn logits(&self) -> Var<'t, F> {
        self.params.params.logits()
    }

    /// The number of categories `K`.
    pub fn categories(&self) -> usize {
        self.params.categories()
    }
}

impl<'t, F: Scalar> Distribution<'t, F> for Categorical<'t, F> {
    fn name(&self) -> &'static str {
        "Categorical"
    }

    fn batch_shape(&self) -> &[usize] {
        self.params.batch_shape()
    }

    fn event_shape(&self) -> &[usize] {
        &[]
    }

    fn params(&self) -> Vec<Var<'t, F>> {
        vec![self.params.params.given]
    }

    fn param_event_dims(&self) -> Option<Vec<usize>> {
        Some(vec![1])
    }

    fn sample(&self, rng: &mut dyn Rng) -> ArrayD<F> {
        let indices = self.params.draw_indices(rng);
        let values = indices.into_iter().map(|k| F::from_f64(k as f64)).collect();
        ArrayD::from_shape_vec(IxDyn(self.batch_shape()), values).expect("one draw per row")
    }

    #[track_caller]
    fn log_prob(&self, x: Var<'t, F>) -> Var<'t, F> {
        let _caller = crate::dist::at_caller(self);
        let location = Location::caller();
        let k = self.categories();
        let shape = value_shape("Categorical", &x.shape(), self.batch_shape(), location);
        let index = x.with_value(|v| {
            if let Some((at, &bad)) = v.indexed_iter().find(|(_, c)| {
                !(c.fract() == F::zero() && **c >= F::zero() && c.as_f64() < k as f64)
            }) {
                panic!(
                    "Categorical::log_prob: value {bad} at index {:?} is not a category index \
                     in 0..{k} (at {location})",
                    at.slice()
                );
            }
            let v = v.broadcast(shape.as_slice()).expect("shape checked");
            v.mapv(|c| c.as_f64() as usize)
                .insert_axis(Axis(shape.len()))
        });
        let logits = broadcast_var(self.logits(), &draw_shape(&shape, &[k]));
        logits.gather(shape.len(), &index).reshape(&shape)
    }

    fn entropy(&self) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        Ok(self.params.entropy())
    }

    fn mean(&self) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        Err(labels("mean"))
    }

    fn variance(&self) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        Err(labels("variance"))
    }

    /// Straight-through needs one-hot draws: use [`OneHotCategorical`].
    fn straight_through(&self, rng: &mut dyn Rng) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        let _ = rng;
        Err(Error::UnsupportedEstimator {
            estimator: "StraightThrough",
            distribution: "Categorical",
            reason: "category indices carry no gradient; sample a OneHotCategorical with the \
                     same parameters instead"
                .into(),
        })
    }

    fn supports(&self, estimator: &Estimator<'t, F>) -> bool {
        matches!(
            estimator,
            Estimator::ScoreFunction { .. } | Estimator::GumbelSoftmax { .. }
        )
    }

    /// A relaxed one-hot draw of shape `batch ++ [K]` (not an index): the
    /// [`OneHotCategorical`] relaxation with the same logits.
    fn gumbel_softmax(&self, temperature: F, hard: bool, rng: &mut dyn Rng) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        OneHotCategorical::from_logits(self.logits())?.gumbel_softmax(temperature, hard, rng)
    }

    fn enumerate_support(&self) -> Result<ArrayD<F>> {
        Ok(support(self.categories(), self.batch_shape(), false))
    }

    fn family(&self) -> Family<'t, F> {
        self.params.family()
    }
}

fn labels(quantity: &'static str) -> Error {
    Error::Undefined {
        distribution: "Categorical",
        quantity,
        reason: "categories are labels, not numbers (OneHotCategorical has a mean and variance)",
    }
}

/// The categorical distribution over one-hot vectors of length `K`: a draw is `e_k` with
/// probability `pₖ = softmax(l)ₖ`.
///
/// - `log p(x) = Σₖ xₖ lₖ` (normalized logits; `x` is not checked to be one-hot, so a relaxed
///   or soft vector gives the cross-entropy term)
/// - `E[x] = p`, `Var[xₖ] = pₖ (1 − pₖ)`, `H = −Σₖ pₖ ln pₖ` with `0 · ln 0 = 0`
///
/// Parameters have shape `batch ++ [K]`, and so do draws (event shape `[K]`).
///
/// # Example
/// ```
/// use ndarray::array;
/// use rand::SeedableRng;
/// use stograd::dist::{Distribution, OneHotCategorical};
/// use stograd::Tape;
///
/// let tape = Tape::<f64>::new();
/// let logits = tape.variable(array![0.0, 0.0, 2f64.ln()]); // p = [¼, ¼, ½]
/// let c = OneHotCategorical::from_logits(logits)?;
/// let lp = c.log_prob(tape.constant(array![0.0, 0.0, 1.0]));
/// assert!((lp.item() - 0.5f64.ln()).abs() < 1e-15);
/// // ∂/∂l log p(e₂) = e₂ − p
/// let g = lp.backward()?.wrt(logits).unwrap().clone();
/// assert!((g[2] - 0.5).abs() < 1e-15 && (g[0] + 0.25).abs() < 1e-15);
///
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let x = c.sample(&mut rng);
/// assert_eq!(x.sum(), 1.0);
/// # Ok::<(), stograd::Error>(())
/// ```
///
/// # Panics
/// `log_prob(x)` panics when `x`'s last axis is not `K` long or `x` does not broadcast
/// against `batch ++ [K]`.
///
/// PyTorch: `torch.distributions.OneHotCategorical`.
#[derive(Clone, Debug)]
pub struct OneHotCategorical<'t, F: Scalar> {
    params: CategoricalParams<'t, F>,
}

impl<'t, F: Scalar> OneHotCategorical<'t, F> {
    /// The one-hot categorical distribution with `P(e_k) ∝ probs[.., k]`; each row (last
    /// axis) is normalized by its sum.
    ///
    /// # Errors
    /// As [`Categorical::from_probs`].
    ///
    /// PyTorch: `OneHotCategorical(probs=p)`.
    #[track_caller]
    pub fn from_probs(probs: Var<'t, F>) -> Result<Self> {
        let _caller = crate::dist::constructing(probs);
        CategoricalParams::from_probs("OneHotCategorical", probs)
            .map(|params| OneHotCategorical { params })
    }

    /// The one-hot categorical distribution with `P(e_k) = softmax(logits)[.., k]`.
    ///
    /// # Errors
    /// As [`Categorical::from_logits`].
    ///
    /// PyTorch: `OneHotCategorical(logits=l)`.
    #[track_caller]
    pub fn from_logits(logits: Var<'t, F>) -> Result<Self> {
        let _caller = crate::dist::constructing(logits);
        CategoricalParams::from_logits("OneHotCategorical", logits)
            .map(|params| OneHotCategorical { params })
    }

    /// The normalized probabilities, shape `batch ++ [K]`.
    pub fn probs(&self) -> Var<'t, F> {
        self.params.params.probs()
    }

    /// The normalized log-probabilities, shape `batch ++ [K]`.
    pub fn logits(&self) -> Var<'t, F> {
        self.params.params.logits()
    }

    /// The number of categories `K`.
    pub fn categories(&self) -> usize {
        self.params.categories()
    }
}

impl<'t, F: Scalar> Distribution<'t, F> for OneHotCategorical<'t, F> {
    fn name(&self) -> &'static str {
        "OneHotCategorical"
    }

    fn batch_shape(&self) -> &[usize] {
        self.params.batch_shape()
    }

    fn event_shape(&self) -> &[usize] {
        &self.params.shape[self.params.shape.len() - 1..]
    }

    fn params(&self) -> Vec<Var<'t, F>> {
        vec![self.params.params.given]
    }

    fn param_event_dims(&self) -> Option<Vec<usize>> {
        Some(vec![1])
    }

    fn sample(&self, rng: &mut dyn Rng) -> ArrayD<F> {
        let k = self.categories();
        let mut out = ArrayD::zeros(IxDyn(&self.params.shape));
        let flat = out.as_slice_mut().expect("a new array is contiguous");
        for (row, index) in self.params.draw_indices(rng).into_iter().enumerate() {
            flat[row * k + index] = F::one();
        }
        out
    }

    #[track_caller]
    fn log_prob(&self, x: Var<'t, F>) -> Var<'t, F> {
        let _caller = crate::dist::at_caller(self);
        let shape = one_hot_shape(self.name(), x, &self.params.shape, Location::caller());
        (x * self.logits()).sum_axis(shape.len() - 1)
    }

    fn entropy(&self) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        Ok(self.params.entropy())
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

    /// `hard + p − stop_grad(p)`: the one-hot draw forward, `∂z/∂p = I` backward.
    fn straight_through(&self, rng: &mut dyn Rng) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        Ok(straight_through(self.sample(rng), self.probs()))
    }

    fn supports(&self, estimator: &Estimator<'t, F>) -> bool {
        relaxable(estimator)
    }

    /// A [`RelaxedOneHotCategorical`] draw `softmax((l + g)/τ)` with Gumbel noise `g`; with
    /// `hard`, the forward value is the one-hot argmax, which is exactly a categorical draw
    /// (the Gumbel-max trick).
    fn gumbel_softmax(&self, temperature: F, hard: bool, rng: &mut dyn Rng) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        let y = RelaxedOneHotCategorical::new(temperature, self.clone())?.rsample(rng)?;
        Ok(if hard {
            straight_through(one_hot_argmax(&y.value()), y)
        } else {
            y
        })
    }

    fn enumerate_support(&self) -> Result<ArrayD<F>> {
        Ok(support(self.categories(), self.batch_shape(), true))
    }

    fn family(&self) -> Family<'t, F> {
        self.params.family()
    }
}
