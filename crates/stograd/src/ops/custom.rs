//! Ops defined outside the engine: a forward, its backward rule, and what the op declares
//! about itself, behind one trait, so a crate can add a fused kernel without touching the
//! engine.
//!
//! A custom op is recorded like a built-in one ([`Tape::apply`]), differentiated by the same
//! sweep, reported by name in anomaly mode, and checked the same way: by
//! [`check::gradcheck`](crate::check::gradcheck) against finite differences.

use std::panic::Location;

use ndarray::ArrayD;
use smallvec::SmallVec;

use super::{Backward, Op, standard};
use crate::{Scalar, Tape, Var};

/// A differentiable op written outside the engine.
///
/// `forward` computes the output from the inputs' values; `backward` returns one gradient per
/// input (`None` where [`Backward::needs`] is false, or where the input is not
/// differentiable). The two optional declarations let score-function credit assignment see
/// through the op; their defaults are the conservative answers, which are always unbiased.
///
/// # Example
/// ```
/// use ndarray::{array, ArrayD};
/// use stograd::check::{gradcheck, Tolerance};
/// use stograd::ops::{Backward, CustomOp};
/// use stograd::Tape;
///
/// /// `x · e^x`, fused: `d/dx = (1 + x) e^x`.
/// struct XExpX;
///
/// impl CustomOp<f64> for XExpX {
///     fn name(&self) -> &'static str {
///         "x_exp_x"
///     }
///     fn forward(&self, inputs: &[&ArrayD<f64>]) -> ArrayD<f64> {
///         inputs[0].mapv(|x| x * x.exp())
///     }
///     fn backward(&self, b: &Backward<'_, f64>) -> Vec<Option<ArrayD<f64>>> {
///         let dx = ndarray::Zip::from(b.input(0))
///             .and(b.grad())
///             .map_collect(|&x, &g| g * (1.0 + x) * x.exp());
///         vec![Some(dx)]
///     }
///     fn keeps_rows(&self, _: usize, _: &[&[usize]], _: &[usize]) -> bool {
///         true // elementwise
///     }
/// }
///
/// let tape = Tape::<f64>::new();
/// let x = tape.variable(array![0.5, -1.0]);
/// let y = tape.apply(XExpX, &[x]);
/// assert!((y.value()[0] - 0.5 * 0.5f64.exp()).abs() < 1e-15);
/// gradcheck(|t, v| t.apply(XExpX, &[v[0]]), &[array![0.5, -1.0].into_dyn()], Tolerance::default())?;
/// # Ok::<(), stograd::Error>(())
/// ```
pub trait CustomOp<F: Scalar>: 'static {
    /// The op's name, for anomaly reports.
    fn name(&self) -> &'static str;

    /// The output from the inputs' values. Check shapes before [`Tape::apply`], so that a
    /// misuse panics at the caller's line.
    fn forward(&self, inputs: &[&ArrayD<F>]) -> ArrayD<F>;

    /// One gradient per input, each of that input's shape.
    fn backward(&self, b: &Backward<'_, F>) -> Vec<Option<ArrayD<F>>>;

    /// Whether row `r` of the output depends on row `r` of input `input` and on no other row
    /// of it (the leading axis being a sample's batch axis); `inputs` and `output` are the
    /// shapes. Declaring `true` where it does not hold biases score-function estimates; the
    /// default, `false`, is always safe.
    fn keeps_rows(&self, input: usize, inputs: &[&[usize]], output: &[usize]) -> bool {
        let _ = (input, inputs, output);
        false
    }

    /// Whether the output is affine in the inputs flagged in `varies`, the others held fixed.
    /// The default, `false`, is always safe.
    fn linear_in(&self, varies: &[bool]) -> bool {
        let _ = varies;
        false
    }
}

/// A zero-filled array of `shape` for a custom op's output or gradients, in a buffer from the
/// engine's buffer pool when one of a fitting size is free, as the built-in ops' large
/// results are: the pool holds the large buffers of dropped tapes, so a training step's
/// arrays reuse the last step's memory instead of faulting in fresh pages.
///
/// ```
/// let a = stograd::ops::custom::zeros::<f32>(&[2, 3]);
/// assert_eq!(a.shape(), [2, 3]);
/// assert!(a.iter().all(|&v| v == 0.0));
/// ```
pub fn zeros<F: Scalar>(shape: &[usize]) -> ArrayD<F> {
    crate::pool::zeros(shape)
}

/// An array of `shape` whose values are unspecified (a pooled buffer's old contents, or
/// zeros), for an output the op writes in full before reading any of it: [`zeros`] without
/// the clearing pass, which is a tenth of a simple elementwise kernel's time at a million
/// elements.
///
/// ```
/// let mut a = stograd::ops::custom::for_overwrite::<f32>(&[2, 3]);
/// a.fill(1.5); // every element written before any is read
/// assert!(a.iter().all(|&v| v == 1.5));
/// ```
pub fn for_overwrite<F: Scalar>(shape: &[usize]) -> ArrayD<F> {
    crate::pool::for_overwrite(shape)
}

impl<F: Scalar> Tape<'_, F> {
    /// Records a [`CustomOp`] applied to `inputs`.
    ///
    /// # Panics
    /// If the inputs come from different tapes (or another tape than `self`).
    #[track_caller]
    pub fn apply<'t>(&'t self, op: impl CustomOp<F>, inputs: &[Var<'t, F>]) -> Var<'t, F> {
        let location = Location::caller();
        for v in inputs {
            self.check_owns(op.name(), *v);
        }
        let value = {
            let nodes = self.nodes.borrow();
            // a loop, not a closure, so that a released value names the caller's line
            let mut values: Vec<&ArrayD<F>> = Vec::with_capacity(inputs.len());
            for v in inputs {
                values.push(self.read(&nodes, v.index));
            }
            standard(op.forward(&values))
        };
        let parents: SmallVec<[u32; 2]> = inputs.iter().map(|v| v.index).collect();
        self.push(Op::Custom(Box::new(op)), parents, value, location)
    }
}
