//! Baselines for score-function estimators: `log q(w) · (Q_w − b_w)` stays unbiased for any
//! `b_w` that does not depend on the draw `w`, and a `b_w` close to `E[Q_w]` lowers the
//! variance.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;

use ndarray::{ArrayD, IxDyn};

use crate::{Error, Result, Scalar, Var};

/// What a score-function node subtracts from its cost before multiplying by the score.
///
/// All kinds are unbiased: the baseline never depends on the draw it is subtracted from.
#[derive(Clone, Debug, Default)]
pub enum Baseline<'t, F: Scalar> {
    /// No baseline: `b = 0`.
    #[default]
    None,
    /// A fixed number.
    Constant(F),
    /// An exponential moving average of past costs, kept outside the tape across steps. The
    /// value used at a step is the average *before* that step; the step's mean cost is folded
    /// in once, at the first backward (or surrogate) that reads it.
    Ema(EmaBaseline<F>),
    /// A learned baseline, e.g. the output of a small network: shape `[]` or the sample's
    /// leading (batch) length. The tape adds its regression loss `Σ (Q − b)²` to the
    /// gradients, so it trains along with the model.
    Learned(Var<'t, F>),
    /// Leave-one-out (RLOO): the leading axis holds groups of `group` consecutive draws of
    /// the same row, and each draw's baseline is the mean cost of the other draws in its group.
    /// Needs per-row costs.
    LeaveOneOut {
        /// Draws per group, at least 2.
        group: usize,
    },
}

impl<F: Scalar> Baseline<'_, F> {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Baseline::None => "none",
            Baseline::Constant(_) => "constant",
            Baseline::Ema(_) => "moving average",
            Baseline::Learned(_) => "learned",
            Baseline::LeaveOneOut { .. } => "leave-one-out",
        }
    }
}

/// The state of an exponential-moving-average baseline: `b ← decay·b + (1 − decay)·mean(Q)`.
///
/// Create it once, before the training loop, and pass a clone (a cheap handle to the same
/// state) in `Baseline::Ema` at every step.
///
/// # Example
/// ```
/// use stograd::estimator::EmaBaseline;
///
/// let ema = EmaBaseline::new(0.9f64)?;
/// ema.observe(1.0)?; // the first observation initializes the average
/// ema.observe(2.0)?;
/// assert!(ema.observe(f64::NAN).is_err()); // and leaves the average as it was
/// assert!((ema.value() - 1.1).abs() < 1e-15);
/// # Ok::<(), stograd::Error>(())
/// ```
#[derive(Clone)]
pub struct EmaBaseline<F: Scalar> {
    state: Rc<EmaState<F>>,
}

struct EmaState<F> {
    decay: F,
    value: Cell<F>,
    observed: Cell<u64>,
}

impl<F: Scalar> fmt::Debug for EmaBaseline<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmaBaseline")
            .field("decay", &self.state.decay)
            .field("value", &self.value())
            .field("observed", &self.observed())
            .finish()
    }
}

impl<F: Scalar> EmaBaseline<F> {
    /// An average with the given decay, starting at 0.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `0 ≤ decay < 1`.
    pub fn new(decay: F) -> Result<Self> {
        if !(decay >= F::zero() && decay < F::one()) {
            return Err(Error::InvalidArgument {
                name: "decay",
                constraint: "in [0, 1)",
                value: decay.as_f64(),
            });
        }
        let state = EmaState {
            decay,
            value: Cell::new(F::zero()),
            observed: Cell::new(0),
        };
        Ok(EmaBaseline {
            state: Rc::new(state),
        })
    }

    /// The current average (0 before the first observation).
    pub fn value(&self) -> F {
        self.state.value.get()
    }

    /// How many costs have been folded in.
    pub fn observed(&self) -> u64 {
        self.state.observed.get()
    }

    /// Folds in one cost; the first observation replaces the initial 0.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a NaN or infinite cost, which would poison every later
    /// average; the state is left unchanged.
    pub fn observe(&self, cost: F) -> Result<()> {
        if !cost.is_finite() {
            return Err(Error::InvalidArgument {
                name: "cost (observed by an EMA baseline)",
                constraint: "finite",
                value: cost.as_f64(),
            });
        }
        let s = &self.state;
        let next = if s.observed.get() == 0 {
            cost
        } else {
            s.decay * s.value.get() + (F::one() - s.decay) * cost
        };
        s.value.set(next);
        s.observed.set(s.observed.get() + 1);
        Ok(())
    }
}

/// A baseline as a sample node stores it.
pub(crate) enum NodeBaseline<F: Scalar> {
    None,
    Constant(F),
    /// The average's value when the draw was made, and whether this node has updated it.
    Ema {
        value: F,
        state: EmaBaseline<F>,
        observed: Cell<bool>,
    },
    Learned {
        node: u32,
    },
    LeaveOneOut {
        group: usize,
    },
}

impl<F: Scalar> NodeBaseline<F> {
    pub(crate) fn from_baseline(baseline: &Baseline<'_, F>) -> Self {
        match baseline {
            Baseline::None => NodeBaseline::None,
            Baseline::Constant(c) => NodeBaseline::Constant(*c),
            Baseline::Ema(state) => NodeBaseline::Ema {
                value: state.value(),
                state: state.clone(),
                observed: Cell::new(false),
            },
            Baseline::Learned(v) => NodeBaseline::Learned { node: v.index },
            Baseline::LeaveOneOut { group } => NodeBaseline::LeaveOneOut { group: *group },
        }
    }

    /// `b`, shaped to broadcast against `q` (`[]`, or `[n]` for a draw with a batch axis).
    /// `learned` is the learned baseline's value when there is one. A leave-one-out baseline
    /// needs `q` to hold each row's own cost, which the caller has checked.
    pub(crate) fn values(
        &self,
        q: &ArrayD<F>,
        learned: Option<&ArrayD<F>>,
        distribution: &'static str,
    ) -> Result<ArrayD<F>> {
        let scalar = |v: F| ArrayD::from_elem(IxDyn(&[]), v);
        match self {
            NodeBaseline::None => Ok(scalar(F::zero())),
            NodeBaseline::Constant(c) => Ok(scalar(*c)),
            NodeBaseline::Ema {
                value,
                state,
                observed,
            } => {
                if !observed.replace(true) {
                    state.observe(q.sum() / F::from_f64(q.len().max(1) as f64))?;
                }
                Ok(scalar(*value))
            }
            NodeBaseline::Learned { .. } => {
                let b = learned.expect("learned baseline value");
                if b.ndim() == 0 || b.shape() == q.shape() {
                    Ok(b.clone())
                } else {
                    Err(unsupported(
                        distribution,
                        format!(
                            "a learned baseline must have shape [] or the cost's per-row shape \
                             {:?}, got {:?}",
                            q.shape(),
                            b.shape()
                        ),
                    ))
                }
            }
            NodeBaseline::LeaveOneOut { group } => leave_one_out(q, *group, distribution),
        }
    }
}

fn unsupported(distribution: &'static str, reason: String) -> Error {
    Error::UnsupportedEstimator {
        estimator: "ScoreFunction",
        distribution,
        reason,
    }
}

/// `b_r = (Σ_{s in group(r)} Q_s − Q_r) / (k − 1)` for groups of `k` consecutive rows.
fn leave_one_out<F: Scalar>(
    q: &ArrayD<F>,
    k: usize,
    distribution: &'static str,
) -> Result<ArrayD<F>> {
    let rows = if q.ndim() == 1 { q.len() } else { 0 };
    if k < 2 || rows % k != 0 {
        return Err(unsupported(
            distribution,
            format!(
                "leave-one-out needs per-row costs whose leading length is a multiple of the \
                 group size {k} (at least 2); the cost per row has shape {:?}",
                q.shape(),
            ),
        ));
    }
    let groups = q
        .view()
        .into_shape_with_order((rows / k, k))
        .expect("checked divisible");
    let others = F::from_f64((k - 1) as f64);
    let mut b = groups.to_owned();
    for (mut out, group) in b.outer_iter_mut().zip(groups.outer_iter()) {
        let total = group.sum();
        out.zip_mut_with(&group, |o, &g| *o = (total - g) / others);
    }
    Ok(b.into_shape_with_order(IxDyn(&[rows]))
        .expect("same count")
        .into_dyn())
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    #[test]
    fn leave_one_out_averages_the_others() {
        let q = array![1.0, 2.0, 3.0, 10.0, 20.0, 30.0].into_dyn();
        let b = super::leave_one_out(&q, 3, "test").unwrap();
        // group 1: (2+3)/2, (1+3)/2, (1+2)/2
        assert_eq!(b, array![2.5, 2.0, 1.5, 25.0, 20.0, 15.0].into_dyn());
        assert!(super::leave_one_out(&q, 4, "test").is_err());
    }
}
