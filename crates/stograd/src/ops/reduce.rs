//! Reductions over all elements (giving a 0-d value) and along one axis (removing it).
//!
//! | op | backward |
//! |---|---|
//! | `sum` | `g` repeated over the reduced elements |
//! | `mean` | `g / n` repeated |
//! | `max` | `g` to the first maximal element, 0 elsewhere |
//! | `logsumexp` | `g · softmax(x)`, since `∂/∂xᵢ ln Σ eˣʲ = e^{xᵢ − y}` |
//!
//! `logsumexp` is computed as `m + ln Σ e^{x − m}` with `m = max x`, which neither overflows
//! nor underflows to `ln 0` when every `x` is very negative.

use std::panic::Location;

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, Zip};
use smallvec::smallvec;

use super::{Backward, InputGrads, Op, check_axis_at, standard};
use crate::{Scalar, Var};

/// A reduction; `Some(axis)` reduces along that axis, `None` over every element.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ReduceOp {
    Sum(Option<usize>),
    Mean(Option<usize>),
    Max(Option<usize>),
    LogSumExp(Option<usize>),
}

impl ReduceOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum(None) => "sum",
            ReduceOp::Sum(Some(_)) => "sum_axis",
            ReduceOp::Mean(None) => "mean",
            ReduceOp::Mean(Some(_)) => "mean_axis",
            ReduceOp::Max(None) => "max",
            ReduceOp::Max(Some(_)) => "max_axis",
            ReduceOp::LogSumExp(None) => "logsumexp",
            ReduceOp::LogSumExp(Some(_)) => "logsumexp_axis",
        }
    }

    fn forward<F: Scalar>(self, a: &ArrayD<F>) -> ArrayD<F> {
        let lane_op = |lane: ArrayViewD<'_, F>| match self {
            ReduceOp::Sum(_) => lane.sum(),
            ReduceOp::Mean(_) => lane.sum() / F::from_f64(lane.len() as f64),
            ReduceOp::Max(_) => max_of(lane.iter().copied()),
            ReduceOp::LogSumExp(_) => logsumexp(lane),
        };
        match self {
            ReduceOp::Sum(None)
            | ReduceOp::Mean(None)
            | ReduceOp::Max(None)
            | ReduceOp::LogSumExp(None) => ArrayD::from_elem(IxDyn(&[]), lane_op(a.view())),
            ReduceOp::Sum(Some(axis))
            | ReduceOp::Mean(Some(axis))
            | ReduceOp::Max(Some(axis))
            | ReduceOp::LogSumExp(Some(axis)) => {
                standard(a.map_axis(Axis(axis), |lane| lane_op(lane.into_dyn())))
            }
        }
    }

    pub(crate) fn backward<F: Scalar>(self, b: &Backward<'_, F>) -> InputGrads<F> {
        let (x, y, g) = (b.inputs[0], b.output, b.grad);
        // The gradient of one lane, given the lane, its reduced value and that value's gradient.
        type LaneGrad<F> = fn(ArrayViewD<'_, F>, F, F) -> Vec<F>;
        let (axis, per_lane): (Option<usize>, LaneGrad<F>) = match self {
            ReduceOp::Sum(axis) => (axis, |lane, _, g| vec![g; lane.len()]),
            ReduceOp::Mean(axis) => (axis, |lane, _, g| {
                vec![g / F::from_f64(lane.len() as f64); lane.len()]
            }),
            ReduceOp::Max(axis) => (axis, |lane, y, g| {
                let mut out = vec![F::zero(); lane.len()];
                if let Some(i) = lane.iter().position(|&v| v == y) {
                    out[i] = g;
                }
                out
            }),
            // softmax(x) = e^{x − m} / Σ e^{x − m}, with m the lane maximum: forming e^{x − y}
            // instead would lose the low digits of x − y when both are large
            ReduceOp::LogSumExp(axis) => (axis, |lane, _, g| {
                let m = max_of(lane.iter().copied());
                let m = if m.is_finite() { m } else { F::zero() };
                let total: F = lane.iter().map(|&v| (v - m).exp()).sum();
                lane.iter().map(|&v| g * (v - m).exp() / total).collect()
            }),
        };
        let grad = match axis {
            None => {
                let data = per_lane(x.view(), y.first().copied().unwrap_or(F::zero()), g[[]]);
                ArrayD::from_shape_vec(x.raw_dim(), data).expect("one gradient per element")
            }
            Some(axis) => {
                let mut grad = ArrayD::zeros(x.raw_dim());
                Zip::from(grad.lanes_mut(Axis(axis)))
                    .and(x.lanes(Axis(axis)))
                    .and(y)
                    .and(g)
                    .for_each(|mut out, lane, &y, &g| {
                        let values = per_lane(lane.into_dyn(), y, g);
                        out.iter_mut().zip(values).for_each(|(o, v)| *o = v);
                    });
                grad
            }
        };
        smallvec![Some(grad)]
    }
}

/// The maximum, propagating NaN; `−∞` for no elements.
fn max_of<F: Scalar>(values: impl Iterator<Item = F>) -> F {
    let mut max = F::neg_infinity();
    for v in values {
        if v.is_nan() {
            return v;
        }
        if v > max {
            max = v;
        }
    }
    max
}

/// `m + ln Σ e^{x − m}` with `m = max x`; `±∞` when `m` is infinite.
fn logsumexp<F: Scalar>(lane: ArrayViewD<'_, F>) -> F {
    let m = max_of(lane.iter().copied());
    if !m.is_finite() {
        return m;
    }
    m + lane.iter().map(|&v| (v - m).exp()).sum::<F>().ln()
}

impl<'t, F: Scalar> Var<'t, F> {
    #[track_caller]
    fn reduce(self, op: ReduceOp) -> Self {
        let location = Location::caller();
        let value = self.tape.with_value(self.index, |a| {
            if let ReduceOp::Sum(Some(axis))
            | ReduceOp::Mean(Some(axis))
            | ReduceOp::Max(Some(axis))
            | ReduceOp::LogSumExp(Some(axis)) = op
            {
                check_axis_at(op.name(), axis, a.shape(), location);
            }
            op.forward(a)
        });
        self.tape
            .push(Op::Reduce(op), smallvec![self.index], value, location)
    }

    /// The sum of all elements, as a 0-d value.
    #[track_caller]
    pub fn sum(self) -> Self {
        self.reduce(ReduceOp::Sum(None))
    }

    /// The sum along `axis`, which is removed from the shape.
    ///
    /// # Panics
    /// If `axis` is out of range.
    #[track_caller]
    pub fn sum_axis(self, axis: usize) -> Self {
        self.reduce(ReduceOp::Sum(Some(axis)))
    }

    /// The mean of all elements, as a 0-d value.
    #[track_caller]
    pub fn mean(self) -> Self {
        self.reduce(ReduceOp::Mean(None))
    }

    /// The mean along `axis`, which is removed from the shape.
    ///
    /// # Panics
    /// If `axis` is out of range.
    #[track_caller]
    pub fn mean_axis(self, axis: usize) -> Self {
        self.reduce(ReduceOp::Mean(Some(axis)))
    }

    /// The largest element, as a 0-d value; the gradient goes to its first occurrence.
    #[track_caller]
    pub fn max(self) -> Self {
        self.reduce(ReduceOp::Max(None))
    }

    /// The maximum along `axis`, which is removed from the shape; the gradient goes to the
    /// first maximal element of each lane.
    ///
    /// # Panics
    /// If `axis` is out of range.
    #[track_caller]
    pub fn max_axis(self, axis: usize) -> Self {
        self.reduce(ReduceOp::Max(Some(axis)))
    }

    /// `ln Σ eˣ` over all elements, computed stably, as a 0-d value.
    #[track_caller]
    pub fn logsumexp(self) -> Self {
        self.reduce(ReduceOp::LogSumExp(None))
    }

    /// `ln Σ eˣ` along `axis`, computed stably; the axis is removed from the shape.
    ///
    /// # Panics
    /// If `axis` is out of range.
    #[track_caller]
    pub fn logsumexp_axis(self, axis: usize) -> Self {
        self.reduce(ReduceOp::LogSumExp(Some(axis)))
    }
}
