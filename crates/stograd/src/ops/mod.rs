//! The differentiable operations on [`Var`](crate::Var), one file per family.
//!
//! Each family file holds its op variants, the `Var` methods that record them (the forward
//! rule), the backward rule, and what each op declares about itself for score-function credit
//! assignment: whether it *keeps rows* (row `r` of its output reads row `r` of an input and no
//! other row of it) and whether it is affine in the inputs a draw reaches. This module joins
//! the families into `Op` and dispatches once.
//!
//! | family | ops |
//! |---|---|
//! | [`arith`] | `+ - * /` between `Var`s (NumPy broadcasting) and with scalars, unary `-`, `mul_add` |
//! | [`unary`] | `exp log log1p expm1 sqrt square powf abs sin cos tanh sigmoid log_sigmoid relu leaky_relu elu gelu softplus lgamma digamma recip clamp` |
//! | [`reduce`] | `sum mean max logsumexp`, over all elements and along an axis |
//! | [`linalg`] | `matmul` (2-D, batched 3-D @ 2-D and 3-D @ 3-D), `t`, fused `linear` |
//! | [`factor`] | `cholesky solve_tril diagonal` (a matrix or a batch of matrices) |
//! | [`shape`] | `reshape unsqueeze broadcast_to slice concat select_rows gather` |
//! | [`nn`] | `softmax log_softmax bce_with_logits` |
//! | [`stop`] | `detach`, and the draws of score-function sample nodes |
//! | [`custom`] | ops defined outside the engine ([`CustomOp`], [`Tape::apply`](crate::Tape::apply)) |

pub mod arith;
pub mod custom;
pub mod factor;
pub mod linalg;
pub mod nn;
pub mod reduce;
pub mod shape;
pub mod stop;
pub mod unary;

pub use custom::CustomOp;

use ndarray::{ArrayD, ArrayViewD, Zip};
use rayon::prelude::*;
use smallvec::SmallVec;

use crate::{ParamId, Scalar};

/// A leaf: a value that no op made.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Leaf {
    Constant,
    Variable,
    Param(ParamId),
}

/// Every node's op: a leaf or one family's variant.
pub(crate) enum Op<F: Scalar> {
    Leaf(Leaf),
    Unary(unary::UnaryOp<F>),
    Arith(arith::ArithOp),
    MulAdd,
    Reduce(reduce::ReduceOp),
    Linalg(linalg::LinalgOp),
    Factor(factor::FactorOp),
    Shape(shape::ShapeOp),
    Nn(nn::NnOp),
    Stop(stop::StopOp),
    Custom(Box<dyn CustomOp<F>>),
}

/// What a backward rule reads: its inputs' values, its own output, the gradient of the loss
/// with respect to that output, and which inputs need a gradient.
///
/// Built-in rules and [`CustomOp::backward`] read the same context.
pub struct Backward<'a, F: Scalar> {
    pub(crate) inputs: &'a [&'a ArrayD<F>],
    pub(crate) output: &'a ArrayD<F>,
    pub(crate) grad: &'a ArrayD<F>,
    pub(crate) needs: &'a [bool],
}

impl<'a, F: Scalar> Backward<'a, F> {
    /// The value of input `i`, as it was in the forward pass.
    pub fn input(&self, i: usize) -> &'a ArrayD<F> {
        self.inputs[i]
    }

    /// The number of inputs.
    pub fn num_inputs(&self) -> usize {
        self.inputs.len()
    }

    /// The op's output from the forward pass.
    pub fn output(&self) -> &'a ArrayD<F> {
        self.output
    }

    /// `∂L/∂output`, of the output's shape.
    pub fn grad(&self) -> &'a ArrayD<F> {
        self.grad
    }

    /// Whether input `i` needs a gradient; a rule may return `None` for it otherwise.
    pub fn needs(&self, i: usize) -> bool {
        self.needs[i]
    }
}

/// One optional gradient per input, in input order.
pub(crate) type InputGrads<F> = SmallVec<[Option<ArrayD<F>>; 2]>;

impl<F: Scalar> Op<F> {
    /// The op's name as a user wrote it, for errors and anomaly reports.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Op::Leaf(Leaf::Constant) => "constant",
            Op::Leaf(Leaf::Variable) => "variable",
            Op::Leaf(Leaf::Param(_)) => "param",
            Op::Unary(op) => op.name(),
            Op::Arith(op) => op.name(),
            Op::MulAdd => "mul_add",
            Op::Reduce(op) => op.name(),
            Op::Linalg(op) => op.name(),
            Op::Factor(op) => op.name(),
            Op::Shape(op) => op.name(),
            Op::Nn(op) => op.name(),
            Op::Stop(op) => op.name(),
            Op::Custom(op) => op.name(),
        }
    }

    pub(crate) fn backward(&self, b: &Backward<'_, F>) -> InputGrads<F> {
        match self {
            Op::Leaf(_) => SmallVec::new(),
            Op::Unary(op) => op.backward(b),
            Op::Arith(op) => op.backward(b),
            Op::MulAdd => arith::mul_add_backward(b),
            Op::Reduce(op) => op.backward(b),
            Op::Linalg(op) => op.backward(b),
            Op::Factor(op) => op.backward(b),
            Op::Shape(op) => op.backward(b),
            Op::Nn(op) => op.backward(b),
            Op::Stop(op) => op.backward(b),
            Op::Custom(op) => op.backward(b).into_iter().collect(),
        }
    }

    /// Whether row `r` of the output depends on row `r` of input `input` and on no other row
    /// of it (the leading axis is the plate of a sample). `inputs` and `output` are the
    /// shapes; each family declares the rule beside its backward.
    pub(crate) fn keeps_rows(&self, input: usize, inputs: &[&[usize]], output: &[usize]) -> bool {
        match self {
            Op::Leaf(_) => false,
            Op::Unary(_) | Op::Arith(_) | Op::MulAdd => arith::keeps_rows(inputs[input], output),
            Op::Reduce(op) => op.keeps_rows(inputs[input], output),
            Op::Linalg(op) => op.keeps_rows(input, inputs, output),
            Op::Factor(op) => op.keeps_rows(input, inputs, output),
            Op::Shape(op) => op.keeps_rows(inputs[input], output),
            Op::Nn(op) => op.keeps_rows(inputs[input], output),
            Op::Stop(op) => op.keeps_rows(input, inputs[input], output),
            Op::Custom(op) => op.keeps_rows(input, inputs, output),
        }
    }

    /// Whether the output is affine in the inputs flagged in `varies`, the other inputs held
    /// fixed, so that credit assignment can split a cost into terms through it.
    pub(crate) fn linear_in(&self, varies: &[bool]) -> bool {
        match self {
            Op::Leaf(_) => false,
            Op::Unary(op) => op.is_linear(),
            Op::Arith(op) => op.linear_in(varies),
            Op::MulAdd => arith::mul_add_linear_in(varies),
            Op::Reduce(op) => op.is_linear(),
            Op::Linalg(op) => op.linear_in(varies),
            Op::Factor(op) => op.linear_in(varies),
            Op::Shape(_) => true,
            Op::Nn(_) => false,
            Op::Stop(op) => op.is_linear(),
            Op::Custom(op) => op.linear_in(varies),
        }
    }
}

/// Whether an input of shape `input` lines its leading axis up with the output's leading
/// axis, element for element: both have one, of the same length, and the input is not
/// broadcast along it (NumPy broadcasting aligns trailing axes, so an input with fewer axes
/// is spread over every row).
pub(crate) fn rows_aligned(input: &[usize], output: &[usize]) -> bool {
    !input.is_empty() && input.len() == output.len() && input[0] == output[0]
}

/// Arrays with at least this many elements are processed on rayon's thread pool; below it,
/// threads cost more than they save.
pub(crate) const PARALLEL_CHUNK: usize = 1 << 15;

/// `f` applied to every element.
pub(crate) fn map<F: Scalar>(a: &ArrayD<F>, f: impl Fn(F) -> F + Sync + Send) -> ArrayD<F> {
    let a = a.as_standard_layout();
    let x = a.as_slice().expect("standard layout");
    if x.len() < PARALLEL_CHUNK {
        return from_vec(a.raw_dim(), x.iter().map(|&x| f(x)).collect());
    }
    par_fill(a.shape(), &|start, out| {
        for (o, &x) in out.iter_mut().zip(&x[start..]) {
            *o = f(x);
        }
    })
}

/// `f` applied elementwise to two arrays of one shape.
pub(crate) fn zip2<F: Scalar>(
    a: &ArrayD<F>,
    b: &ArrayD<F>,
    f: impl Fn(F, F) -> F + Sync + Send,
) -> ArrayD<F> {
    debug_assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.as_standard_layout(), b.as_standard_layout());
    let x = a.as_slice().expect("standard layout");
    let y = b.as_slice().expect("standard layout");
    if x.len() < PARALLEL_CHUNK {
        return from_vec(
            a.raw_dim(),
            x.iter().zip(y).map(|(&x, &y)| f(x, y)).collect(),
        );
    }
    par_fill(a.shape(), &|start, out| {
        for ((o, &x), &y) in out.iter_mut().zip(&x[start..]).zip(&y[start..]) {
            *o = f(x, y);
        }
    })
}

/// `f` applied elementwise to three arrays of one shape.
pub(crate) fn zip3<F: Scalar>(
    a: &ArrayD<F>,
    b: &ArrayD<F>,
    c: &ArrayD<F>,
    f: impl Fn(F, F, F) -> F + Sync + Send,
) -> ArrayD<F> {
    debug_assert!(a.shape() == b.shape() && b.shape() == c.shape());
    let (a, b, c) = (
        a.as_standard_layout(),
        b.as_standard_layout(),
        c.as_standard_layout(),
    );
    let x = a.as_slice().expect("standard layout");
    let y = b.as_slice().expect("standard layout");
    let z = c.as_slice().expect("standard layout");
    if x.len() < PARALLEL_CHUNK {
        let data = x.iter().zip(y).zip(z).map(|((&x, &y), &z)| f(x, y, z));
        return from_vec(a.raw_dim(), data.collect());
    }
    par_fill(a.shape(), &|start, out| {
        let inputs = x[start..].iter().zip(&y[start..]).zip(&z[start..]);
        for (o, ((&x, &y), &z)) in out.iter_mut().zip(inputs) {
            *o = f(x, y, z);
        }
    })
}

/// A pooled array of `shape`, filled by `body(start, chunk)` on consecutive chunks (one per
/// thread) in parallel: `chunk` holds the elements from `start` on, in standard order.
///
/// `body` is a trait object so that rayon's machinery is compiled once per element type
/// rather than once per elementwise op: instantiated per op, it was a quarter of the code
/// LLVM compiled for the `vae` example.
fn par_fill<F: Scalar>(shape: &[usize], body: &(dyn Fn(usize, &mut [F]) + Sync)) -> ArrayD<F> {
    let mut out = crate::pool::for_overwrite(shape);
    let data = out.as_slice_mut().expect("pooled arrays are contiguous");
    let chunk = data
        .len()
        .div_ceil(rayon::current_num_threads())
        .next_multiple_of(64);
    data.par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, part)| body(i * chunk, part));
    out
}

/// `v` viewed at a shape it broadcasts to (checked by the caller).
pub(crate) fn broadcast_view<'a, F: Scalar>(
    v: &'a ArrayD<F>,
    shape: &[usize],
) -> ArrayViewD<'a, F> {
    v.broadcast(shape).expect("shape checked by the caller")
}

/// Runs `f` on every lane of `a` along `axis` as a slice, together with the matching lane of
/// `b` (same shape). Lanes along the last axis of contiguous arrays are used in place; others
/// go through a buffer.
pub(crate) fn lanes_with<F: Scalar>(
    a: &mut ArrayD<F>,
    b: &ArrayD<F>,
    axis: usize,
    mut f: impl FnMut(&mut [F], &[F]),
) {
    debug_assert_eq!(a.shape(), b.shape());
    let n = a.shape()[axis];
    if n == 0 {
        return;
    }
    if axis + 1 == a.ndim()
        && let (Some(x), Some(y)) = (a.as_slice_mut(), b.as_slice())
    {
        x.chunks_exact_mut(n)
            .zip(y.chunks_exact(n))
            .for_each(|(x, y)| f(x, y));
        return;
    }
    let (mut x, mut y) = (vec![F::zero(); n], vec![F::zero(); n]);
    Zip::from(a.lanes_mut(ndarray::Axis(axis)))
        .and(b.lanes(ndarray::Axis(axis)))
        .for_each(|mut la, lb| {
            x.iter_mut().zip(&la).for_each(|(d, s)| *d = *s);
            y.iter_mut().zip(&lb).for_each(|(d, s)| *d = *s);
            f(&mut x, &y);
            la.iter_mut().zip(&x).for_each(|(d, s)| *d = *s);
        });
}

/// An array of `shape` holding `data` in standard order.
fn from_vec<F: Scalar>(shape: ndarray::IxDyn, data: Vec<F>) -> ArrayD<F> {
    ArrayD::from_shape_vec(shape, data).expect("one element per element of the shape")
}

/// Node values are kept in standard (row-major, contiguous) layout.
pub(crate) fn standard<F: Scalar>(a: ArrayD<F>) -> ArrayD<F> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

/// Panics unless `axis` is an axis of `shape`.
#[track_caller]
pub(crate) fn check_axis(op: &str, axis: usize, shape: &[usize]) {
    check_axis_at(op, axis, shape, std::panic::Location::caller());
}

/// [`check_axis`] naming `location`: for checks inside a closure, which `#[track_caller]` does
/// not see through, so the message names the user's call rather than the closure.
pub(crate) fn check_axis_at(
    op: &str,
    axis: usize,
    shape: &[usize],
    location: &std::panic::Location<'_>,
) {
    assert!(
        axis < shape.len(),
        "{op}: axis {axis} is out of range for shape {shape:?} (at {location})"
    );
}

/// `F` from an `f64` literal.
pub(crate) fn lit<F: Scalar>(x: f64) -> F {
    F::from_f64(x)
}
