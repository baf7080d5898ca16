//! Score-function (REINFORCE) sample nodes and the surrogate.
//!
//! For a draw `w ~ q_θ` whose value carries no path gradient, the gradient of `E[cost]` is
//! `E[∇θ log q_θ(w) · Q_w]`, where `Q_w` is the part of the cost downstream of `w`
//! (Schulman et al. 2015). Backward therefore adds `log q(w) · stop_grad(Q_w − b_w)` for every
//! score-function node `w` upstream of the cost, by seeding the `log q(w)` node with
//! `Q_w − b_w`; [`credit`](super::credit) decides what `Q_w` is.

use std::panic::Location;

use rand::Rng;
use smallvec::SmallVec;

use super::baseline::{Baseline, NodeBaseline};
use super::{SampleKind, SampleRecord, SurrogateRecord};
use crate::dist::Distribution;
use crate::ops::Op;
use crate::ops::stop::StopOp;
use crate::tape::same_tape;
use crate::{Error, Result, Scalar, Tape, Var};

/// Draws without gradient, records `log q(w)` of the draw, then the sample node.
pub(super) fn sample<'t, F, D>(
    tape: &'t Tape<'t, F>,
    dist: &D,
    baseline: &Baseline<'t, F>,
    rng: &mut dyn Rng,
    location: &'static Location<'static>,
) -> Result<Var<'t, F>>
where
    F: Scalar,
    D: Distribution<'t, F> + ?Sized,
{
    let params = dist.params();
    let value = dist.sample(rng);
    let log_prob = dist.log_prob(tape.constant(value.clone()));
    let rows = log_prob.shape().first().copied();
    check_baseline(dist.name(), baseline, params[0], rows)?;
    let draw = StopOp::Draw {
        name: dist.name(),
        keeps_rows: draw_keeps_rows(dist, &params),
    };
    let parents: SmallVec<[u32; 2]> = params.iter().map(|p| p.index).collect();
    let w = tape.push_stopped(Op::Stop(draw), parents, value, location);
    tape.register.borrow_mut().samples.push(SampleRecord {
        node: w.index,
        distribution: dist.name(),
        kind: SampleKind::Score {
            log_prob: log_prob.index,
            baseline: NodeBaseline::from_baseline(baseline),
        },
    });
    Ok(w)
}

/// Whether row `r` of a draw depends on row `r` of each parameter alone: the parameter's
/// batch axes (those before its event axes) must be the distribution's, unbroadcast along the
/// leading one.
fn draw_keeps_rows<'t, F: Scalar, D: Distribution<'t, F> + ?Sized>(
    dist: &D,
    params: &[Var<'t, F>],
) -> SmallVec<[bool; 4]> {
    let batch = dist.batch_shape();
    let event_dims = dist.param_event_dims();
    params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let shape = p.shape();
            let event = event_dims.as_ref().and_then(|e| e.get(i).copied());
            match (event, batch.first()) {
                (Some(event), Some(&rows)) => {
                    shape.len() == batch.len() + event && shape.first() == Some(&rows)
                }
                _ => false,
            }
        })
        .collect()
}

/// Rejects, at sampling time, baselines that cannot fit the draw.
fn check_baseline<F: Scalar>(
    distribution: &'static str,
    baseline: &Baseline<'_, F>,
    param: Var<'_, F>,
    rows: Option<usize>,
) -> Result<()> {
    let fail = |reason: String| Error::UnsupportedEstimator {
        estimator: "ScoreFunction",
        distribution,
        reason: format!("{} baseline: {reason}", baseline.name()),
    };
    match baseline {
        Baseline::Constant(c) if !c.is_finite() => {
            return Err(Error::InvalidArgument {
                name: "constant baseline",
                constraint: "finite",
                value: c.as_f64(),
            });
        }
        Baseline::Learned(b) => {
            same_tape("learned baseline", param, *b);
            let shape = b.shape();
            if !(shape.is_empty()
                || Some(shape.as_slice()) == rows.as_ref().map(std::slice::from_ref))
            {
                return Err(fail(format!(
                    "shape must be [] or [{}] (the batch length), got {shape:?}",
                    rows.map_or("none".into(), |r| r.to_string())
                )));
            }
        }
        Baseline::LeaveOneOut { group } => {
            if *group < 2 || rows.is_none_or(|r| r % group != 0) {
                return Err(fail(format!(
                    "the batch length {rows:?} must be a multiple of the group size {group} ≥ 2"
                )));
            }
        }
        Baseline::None | Baseline::Constant(_) | Baseline::Ema(_) => {}
    }
    Ok(())
}

impl<F: Scalar> Tape<'_, F> {
    /// A loss whose *value* is the sum of `cost` and whose *gradient* is the estimator of
    /// `∇E[Σ cost]`: the pathwise gradient of the cost plus, for every score-function node `w`
    /// upstream, the term `log q(w) · stop_grad(Q_w − b_w)` (and a learned baseline's
    /// regression loss), each added as `x − stop_grad(x)` so it changes the gradient but not
    /// the value (the DiCE "magic box" property). Log it and combine it like any loss.
    ///
    /// A surrogate covers exactly the cost terms it credited. Differentiating
    /// `surrogate(c₁) + c₂` gives the estimator of `∇E[Σ c₁ + Σ c₂]`: `c₁`'s terms are credited
    /// inside the surrogate, `c₂`'s at backward (with no baseline for a draw whose baseline the
    /// surrogate already applied), and no term twice. Sums, differences and scalings by
    /// values that no draw depends on combine surrogates freely; a surrogate inside a
    /// non-linear op (`s.exp()`, `s * s`, `s * cost`) has no meaning as an estimator, and
    /// backward through it fails with [`Error::SurrogateNotLinear`].
    ///
    /// # Example
    /// ```
    /// use ndarray::array;
    /// use rand::SeedableRng;
    /// use stograd::dist::Bernoulli;
    /// use stograd::{Estimator, Tape};
    ///
    /// let tape = Tape::<f64>::new();
    /// let logits = tape.variable(array![0.3, -0.2]);
    /// let b = tape.sample_with(
    ///     &Bernoulli::from_logits(logits)?,
    ///     Estimator::score_function(),
    ///     &mut rand::rngs::StdRng::seed_from_u64(3),
    /// )?;
    /// let cost = (b - 0.45).square();
    /// let loss = tape.surrogate(cost)?;
    /// assert_eq!(loss.item(), cost.sum().item()); // same value
    /// let g = loss.backward()?;
    /// assert_eq!(g.wrt(logits), cost.backward()?.wrt(logits)); // same gradient
    ///
    /// // another cost that reads the draw is credited outside the surrogate
    /// let more = (loss + b.sum() * 2.0).backward()?;
    /// let whole = (cost.sum() + b.sum() * 2.0).backward()?;
    /// assert_eq!(more.wrt(logits), whole.wrt(logits));
    /// # Ok::<(), stograd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::UnsupportedEstimator`] when a baseline does not fit the cost (a
    /// leave-one-out baseline without per-row costs); [`Error::SurrogateNotLinear`] when
    /// `cost` holds another surrogate inside a non-linear op.
    ///
    /// # Panics
    /// If `cost` was recorded on another tape.
    #[track_caller]
    pub fn surrogate<'t>(&'t self, cost: Var<'t, F>) -> Result<Var<'t, F>> {
        let location = Location::caller();
        self.check_owns("surrogate", cost);
        let credit = {
            let nodes = self.nodes.borrow();
            super::credit(&nodes, &self.register.borrow(), cost.index as usize)?
        };
        let mut total = cost.sum();
        for (node, coefficient) in credit.seeds {
            let x = Var {
                tape: self,
                index: node as u32,
            };
            let term = (x * self.constant(coefficient)).sum();
            total = total + (term - term.detach());
        }
        self.nodes.borrow_mut()[total.index as usize].location = location;
        self.register.borrow_mut().surrogates.push(SurrogateRecord {
            node: total.index,
            covered: credit.covered,
        });
        Ok(total)
    }
}
