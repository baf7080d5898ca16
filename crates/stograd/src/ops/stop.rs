//! Values that depend on their inputs but pass no gradient back: `detach`, and the draws of
//! score-function sample nodes.
//!
//! Both keep their inputs as edges. Path gradients stop here (the output never requires a
//! gradient, so the backward sweep does not visit the node), but score-function credit
//! assignment follows the edges: a cost computed from `x.detach()` still depends on every
//! draw that `x` depends on, and is credited to them, and a draw depends on whatever its
//! distribution's parameters depend on.

use std::panic::Location;

use smallvec::{SmallVec, smallvec};

use super::{Backward, InputGrads, Op};
use crate::{Scalar, Var};

/// An op whose output carries no gradient.
#[derive(Clone, Debug)]
pub(crate) enum StopOp {
    /// `stop_grad(x)`: the identity on values.
    Detach,
    /// A draw from the distribution `name`, whose parameters are the inputs. `keeps_rows[i]`
    /// says whether row `r` of the draw depends on row `r` of parameter `i` alone, as the
    /// distribution declares it.
    Draw {
        name: &'static str,
        keeps_rows: SmallVec<[bool; 4]>,
    },
}

impl StopOp {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            StopOp::Detach => "detach",
            StopOp::Draw { name, .. } => name,
        }
    }

    /// `detach` is the identity on values, so credit assignment splits a cost into terms
    /// through it; a draw is not a function of its parameters at all.
    pub(crate) fn is_linear(&self) -> bool {
        matches!(self, StopOp::Detach)
    }

    pub(crate) fn keeps_rows(&self, input: usize, shape: &[usize], output: &[usize]) -> bool {
        match self {
            StopOp::Detach => super::rows_aligned(shape, output),
            StopOp::Draw { keeps_rows, .. } => keeps_rows[input],
        }
    }

    /// The backward sweep never asks (the output requires no gradient). Credit assignment
    /// walks a cost's linear ops with these rules to split it into terms: through `detach` as
    /// the identity, and not at all through a draw.
    pub(crate) fn backward<F: Scalar>(&self, b: &Backward<'_, F>) -> InputGrads<F> {
        match self {
            StopOp::Detach => smallvec![Some(b.grad.clone())],
            StopOp::Draw { .. } => b.needs.iter().map(|_| None).collect(),
        }
    }
}

impl<F: Scalar> Var<'_, F> {
    /// The same value with no gradient flowing back through it (`stop_grad`).
    ///
    /// It stops *path* gradients only: a cost computed from a detached value still depends on
    /// the draws below it, and score-function nodes are credited with it.
    ///
    /// # Example
    /// ```
    /// use ndarray::array;
    /// use stograd::Tape;
    ///
    /// let tape = Tape::<f64>::new();
    /// let x = tape.variable(array![3.0]);
    /// let y = (x * x.detach()).sum(); // x · stop_grad(x)
    /// assert_eq!(y.backward()?.wrt(x).unwrap()[0], 3.0); // not 2x = 6
    /// # Ok::<(), stograd::Error>(())
    /// ```
    #[track_caller]
    pub fn detach(self) -> Self {
        let value = self.value();
        self.tape.push_stopped(
            Op::Stop(StopOp::Detach),
            smallvec![self.index],
            value,
            Location::caller(),
        )
    }
}
