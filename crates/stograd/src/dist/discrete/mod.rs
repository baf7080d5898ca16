//! Discrete distributions: [`Bernoulli`] over `{0, 1}`, [`Categorical`] over the category
//! indices `0..K` and [`OneHotCategorical`] over the one-hot vectors of length `K`.
//!
//! None of them is reparameterizable: [`noise`](crate::dist::Distribution::noise) and
//! [`reparameterize`](crate::dist::Distribution::reparameterize) return [`Error::NoPathwise`](crate::Error::NoPathwise). Their
//! gradients come from score-function estimators, or from the continuous relaxations in
//! [`relaxed`](super::relaxed).
//!
//! Both parameterizations stay reachable through `probs()` and `logits()`. The one given to
//! the constructor is kept and the other is derived (and recorded on the tape) on first use:
//!
//! - Bernoulli: `p = σ(l)`; `l = ln p − ln(1 − p)` with `p` clamped to `[ε, 1 − ε]`,
//!   `ε = F::epsilon()` (PyTorch's `clamp_probs`), so that `log_prob` and the entropy stay
//!   finite at `p ∈ {0, 1}`.
//! - Categorical: `p = softmax(l)` and `l ← log_softmax(l)` over the last axis; from
//!   probabilities, `p ← p / Σₖ pₖ` and `l = ln max(p, tiny)` with
//!   `tiny = F::min_positive_value()`, so that `0 · ln 0` evaluates to 0 in the entropy and the
//!   KL divergence (and `log_prob` of an impossible category is `ln tiny`, not `−∞`).
//!
//! | quantity | Bernoulli | Categorical | OneHotCategorical |
//! |---|---|---|---|
//! | `log_prob(x)` | `x l − softplus(l) = −bce_with_logits(l, x)` | `l[x]` | `Σₖ xₖ lₖ` |
//! | mean | `p` | — (labels) | `p` |
//! | variance | `p (1 − p)` | — (labels) | `p ⊙ (1 − p)` |
//! | entropy | `bce_with_logits(l, p)` | `−Σₖ pₖ lₖ` | `−Σₖ pₖ lₖ` |
//! | support (`enumerate_support`) | `0, 1` | `0, …, K − 1` | `e₀, …, e_{K−1}` |

use std::cell::OnceCell;
use std::panic::Location;

use ndarray::{ArrayD, IxDyn};

mod bernoulli;
mod categorical;

pub use bernoulli::Bernoulli;
pub use categorical::{Categorical, OneHotCategorical};

use super::draw_shape;
use crate::broadcast::broadcast_shape;
use crate::{Scalar, Var};

/// How probabilities and logits convert into each other.
#[derive(Clone, Copy, Debug)]
pub(super) enum Link {
    /// Elementwise `p = σ(l)`.
    Binary,
    /// `p = softmax(l)` over the last axis.
    Categorical,
}

/// One parameter in both forms: the one given, and the other derived on first use.
#[derive(Clone, Debug)]
pub(super) struct ProbsLogits<'t, F: Scalar> {
    pub(super) link: Link,
    /// The form given to the constructor (after normalization).
    pub(super) given: Var<'t, F>,
    probs: OnceCell<Var<'t, F>>,
    logits: OnceCell<Var<'t, F>>,
}

impl<'t, F: Scalar> ProbsLogits<'t, F> {
    pub(super) fn from_probs(link: Link, probs: Var<'t, F>) -> Self {
        ProbsLogits {
            link,
            given: probs,
            probs: OnceCell::from(probs),
            logits: OnceCell::new(),
        }
    }

    pub(super) fn from_logits(link: Link, logits: Var<'t, F>) -> Self {
        ProbsLogits {
            link,
            given: logits,
            probs: OnceCell::new(),
            logits: OnceCell::from(logits),
        }
    }

    pub(super) fn probs(&self) -> Var<'t, F> {
        *self.probs.get_or_init(|| {
            let l = *self.logits.get().expect("one form is always set");
            match self.link {
                Link::Binary => l.sigmoid(),
                Link::Categorical => l.softmax(l.ndim() - 1),
            }
        })
    }

    pub(super) fn logits(&self) -> Var<'t, F> {
        *self.logits.get_or_init(|| {
            let p = *self.probs.get().expect("one form is always set");
            match self.link {
                Link::Binary => {
                    let p = p.clamp(F::epsilon(), F::one() - F::epsilon());
                    p.log() - (-p).log1p()
                }
                Link::Categorical => p.clamp(F::min_positive_value(), F::one()).log(),
            }
        })
    }
}

/// The shape `log_prob` evaluates at: the value's shape broadcast against `batch ++ event`.
///
/// # Panics
/// If the shapes do not broadcast.
pub(crate) fn value_shape(
    distribution: &str,
    value: &[usize],
    draw: &[usize],
    location: &Location<'_>,
) -> Vec<usize> {
    broadcast_shape(value, draw).unwrap_or_else(|| {
        panic!(
            "{distribution}::log_prob: value of shape {value:?} does not broadcast against the \
             draw shape {draw:?} (at {location})"
        )
    })
}

/// `v` broadcast to `shape` (no node when it already has that shape).
pub(super) fn broadcast_var<'t, F: Scalar>(v: Var<'t, F>, shape: &[usize]) -> Var<'t, F> {
    if v.shape() == shape {
        v
    } else {
        v.broadcast_to(shape)
    }
}

/// `1 − v`, elementwise.
pub(super) fn one_minus<'t, F: Scalar>(v: Var<'t, F>) -> Var<'t, F> {
    -v + F::one()
}

/// Every value of one batch element, stacked on a new leading axis: `[values, batch..]` holding
/// `0, 1, …` or, with `one_hot`, `[values, batch.., values]` holding `e₀, e₁, …`.
pub(super) fn support<F: Scalar>(values: usize, batch: &[usize], one_hot: bool) -> ArrayD<F> {
    let mut shape = draw_shape(&[values], batch);
    if one_hot {
        shape.push(values);
        ArrayD::from_shape_fn(IxDyn(&shape), |i| {
            if i[0] == i[shape.len() - 1] {
                F::one()
            } else {
                F::zero()
            }
        })
    } else {
        ArrayD::from_shape_fn(IxDyn(&shape), |i| F::from_f64(i[0] as f64))
    }
}

/// The shape a one-hot `log_prob` evaluates at; the value's last axis must be the `K`
/// categories.
///
/// # Panics
/// If `x`'s last axis is not `draw`'s last axis, or the shapes do not broadcast.
pub(crate) fn one_hot_shape<F: Scalar>(
    distribution: &str,
    x: Var<'_, F>,
    draw: &[usize],
    location: &Location<'_>,
) -> Vec<usize> {
    let got = x.shape();
    let k = draw[draw.len() - 1];
    assert!(
        got.last() == Some(&k),
        "{distribution}::log_prob: the last axis of the value (shape {got:?}) must hold the \
         {k} categories (at {location})"
    );
    value_shape(distribution, &got, draw, location)
}

/// `hard + soft − stop_grad(soft)`: the value of `hard` exactly (the difference is an exact
/// 0), the gradient of `soft`.
pub(super) fn straight_through<'t, F: Scalar>(hard: ArrayD<F>, soft: Var<'t, F>) -> Var<'t, F> {
    soft.tape().constant(hard) + (soft - soft.detach())
}

/// 1 or 0.
pub(super) fn step<F: Scalar>(condition: bool) -> F {
    if condition { F::one() } else { F::zero() }
}

/// The one-hot vector of each lane's largest element along the last axis.
pub(super) fn one_hot_argmax<F: Scalar>(y: &ArrayD<F>) -> ArrayD<F> {
    let mut out = ArrayD::zeros(y.raw_dim());
    crate::ops::lanes_with(&mut out, y, y.ndim() - 1, |o, lane| {
        let best = (0..lane.len()).fold(0, |b, k| if lane[k] > lane[b] { k } else { b });
        o[best] = F::one();
    });
    out
}

/// The estimators of a draw with a straight-through and a Concrete form (Bernoulli, one-hot
/// categorical): score function, straight-through and Gumbel-softmax.
pub(super) fn relaxable<F: Scalar>(estimator: &crate::Estimator<'_, F>) -> bool {
    use crate::Estimator as E;
    matches!(
        estimator,
        E::ScoreFunction { .. } | E::StraightThrough | E::GumbelSoftmax { .. }
    )
}
