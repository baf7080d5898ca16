//! Neural-network ops computed in their stable form: `softmax`, `log_softmax` and the fused
//! `bce_with_logits`.
//!
//! - `softmax(x) = e^{x − m} / Σ e^{x − m}` with `m` the lane maximum; backward
//!   `∂L/∂x = y ⊙ (g − Σ g ⊙ y)`.
//! - `log_softmax(x) = x − logsumexp(x)`; backward `∂L/∂x = g − softmax(x) Σ g`.
//! - `bce_with_logits(x, t) = max(x, 0) − x t + log1p(e^{−|x|})`, the binary cross-entropy
//!   `−t ln σ(x) − (1 − t) ln(1 − σ(x))` without forming `σ(x)`, so it is finite for every
//!   finite logit; backward `∂/∂x = σ(x) − t`, `∂/∂t = −x`.

use std::panic::Location;

use smallvec::smallvec;

use super::reduce::pairwise_sum;
use super::unary::sigmoid;
use super::{Backward, InputGrads, Op, check_axis_at, lanes_with, zip2, zip3};
use crate::tape::same_tape;
use crate::{Scalar, Var};

/// A fused neural-network op.
#[derive(Clone, Copy, Debug)]
pub(crate) enum NnOp {
    Softmax(usize),
    LogSoftmax(usize),
    BceWithLogits,
}

impl NnOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            NnOp::Softmax(_) => "softmax",
            NnOp::LogSoftmax(_) => "log_softmax",
            NnOp::BceWithLogits => "bce_with_logits",
        }
    }

    /// A (log-)softmax along a later axis keeps rows, one along the leading axis mixes them;
    /// the binary cross-entropy is elementwise.
    pub(crate) fn keeps_rows(self, input: &[usize], output: &[usize]) -> bool {
        let aligned = super::rows_aligned(input, output);
        match self {
            NnOp::Softmax(axis) | NnOp::LogSoftmax(axis) => aligned && axis > 0,
            NnOp::BceWithLogits => aligned,
        }
    }

    pub(crate) fn backward<F: Scalar>(self, b: &Backward<'_, F>) -> InputGrads<F> {
        let (y, g) = (b.output, b.grad);
        match self {
            NnOp::Softmax(axis) | NnOp::LogSoftmax(axis) => {
                let mut grad = g.clone();
                let softmax = matches!(self, NnOp::Softmax(_));
                lanes_with(&mut grad, y, axis, |g, y| {
                    if softmax {
                        let dot: F = g.iter().zip(y).map(|(&g, &y)| g * y).sum();
                        g.iter_mut().zip(y).for_each(|(g, &y)| *g = y * (*g - dot));
                    } else {
                        let total = pairwise_sum(g, |v| v);
                        g.iter_mut()
                            .zip(y)
                            .for_each(|(g, &y)| *g -= y.exp() * total);
                    }
                });
                smallvec![Some(grad)]
            }
            NnOp::BceWithLogits => {
                let (x, t) = (b.inputs[0], b.inputs[1]);
                smallvec![
                    b.needs[0].then(|| zip3(x, t, g, |x, t, g| g * (sigmoid(x) - t))),
                    b.needs[1].then(|| zip2(x, g, |x, g| -g * x)),
                ]
            }
        }
    }
}

/// Replaces a lane by its log-softmax (`log = true`) or softmax.
///
/// A fully masked lane (every entry `−∞`, or empty) gives every outcome probability 0: softmax
/// 0, log-softmax `−∞`, and a zero gradient, rather than `0/0`. A NaN anywhere in the lane
/// makes the whole lane NaN.
fn normalize_lane<F: Scalar>(lane: &mut [F], log: bool) {
    let m = lane.iter().fold(
        F::neg_infinity(),
        |m, &v| {
            if v > m || v.is_nan() { v } else { m }
        },
    );
    if m == F::neg_infinity() {
        if !log {
            lane.fill(F::zero());
        }
        return;
    }
    let m = if m.is_finite() { m } else { F::zero() };
    lane.iter_mut().for_each(|v| *v -= m);
    let total = pairwise_sum(lane, |v| v.exp());
    if log {
        let log_total = total.ln();
        lane.iter_mut().for_each(|v| *v -= log_total);
    } else {
        lane.iter_mut().for_each(|v| *v = v.exp() / total);
    }
}

impl<'t, F: Scalar> Var<'t, F> {
    #[track_caller]
    fn normalize(self, op: NnOp, axis: usize) -> Self {
        let location = Location::caller();
        let value = self.tape.with_value(self.index, |a| {
            check_axis_at(op.name(), axis, a.shape(), location);
            let mut out = a.clone();
            let log = matches!(op, NnOp::LogSoftmax(_));
            lanes_with(&mut out, a, axis, |lane, _| normalize_lane(lane, log));
            out
        });
        self.tape
            .push(Op::Nn(op), smallvec![self.index], value, location)
    }

    /// `softmax` along `axis`: `e^{xᵢ} / Σⱼ e^{xⱼ}`, computed after subtracting the lane
    /// maximum so it never overflows.
    ///
    /// # Panics
    /// If `axis` is out of range.
    #[track_caller]
    pub fn softmax(self, axis: usize) -> Self {
        self.normalize(NnOp::Softmax(axis), axis)
    }

    /// `log_softmax` along `axis`: `xᵢ − ln Σⱼ e^{xⱼ}`, finite even where the softmax
    /// underflows to 0.
    ///
    /// # Panics
    /// If `axis` is out of range.
    #[track_caller]
    pub fn log_softmax(self, axis: usize) -> Self {
        self.normalize(NnOp::LogSoftmax(axis), axis)
    }

    /// Elementwise binary cross-entropy between `sigmoid(self)` and `targets` (in `[0, 1]`),
    /// computed from the logits as `max(x, 0) − x t + log1p(e^{−|x|})`. Not reduced: sum or
    /// average it as the model needs.
    ///
    /// # Example
    /// ```
    /// use ndarray::array;
    /// use stograd::Tape;
    ///
    /// let tape = Tape::<f64>::new();
    /// let logits = tape.constant(array![0.0, 800.0]);
    /// let targets = tape.constant(array![1.0, 0.0]);
    /// let loss = logits.bce_with_logits(targets).value();
    /// assert!((loss[0] - 2f64.ln()).abs() < 1e-15);
    /// assert_eq!(loss[1], 800.0); // finite where sigmoid() would round to 1
    /// ```
    ///
    /// # Panics
    /// If the shapes differ or the values come from different tapes.
    #[track_caller]
    pub fn bce_with_logits(self, targets: Var<'t, F>) -> Self {
        let location = Location::caller();
        same_tape("bce_with_logits", self, targets);
        let value = {
            let nodes = self.tape.nodes.borrow();
            let (x, t) = (
                self.tape.read(&nodes, self.index),
                self.tape.read(&nodes, targets.index),
            );
            assert!(
                x.shape() == t.shape(),
                "bce_with_logits: logits {:?} and targets {:?} differ in shape (at {location})",
                x.shape(),
                t.shape()
            );
            zip2(x, t, |x, t| {
                let loss = x.max(F::zero()) - x * t + x.log1p_exp_neg_abs();
                if x.is_infinite() {
                    // the limit x(1 − t) at x = +∞ and −x·t at −∞: 0 for a target that
                    // matches (t = 1, t = 0), where the formula gives ∞ − ∞
                    let c = if x > F::zero() { F::one() - t } else { t };
                    if c == F::zero() {
                        F::zero()
                    } else {
                        c * F::infinity()
                    }
                } else {
                    loss
                }
            })
        };
        self.tape.push(
            Op::Nn(NnOp::BceWithLogits),
            smallvec![self.index, targets.index],
            value,
            location,
        )
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    #[test]
    fn softmax_survives_huge_logits() {
        let tape = crate::Tape::<f64>::new();
        let y = tape
            .constant(array![1000.0, 1000.0, -1000.0])
            .softmax(0)
            .value();
        assert!((y[0] - 0.5).abs() < 1e-15 && y[2] == 0.0);
    }
}
