//! `+ - * /` between `Var`s with NumPy broadcasting, with scalars on either side, unary `-`,
//! and the fused multiply-add `x.mul_add(a, b) = x·a + b`.
//!
//! Broadcasting aligns trailing axes; an axis of length 1 (or a missing leading axis) repeats.
//! The backward rule reduces each input's gradient back over the axes it was broadcast along
//! ([`crate::broadcast::sum_to`]):
//!
//! | op | `∂/∂a` | `∂/∂b` |
//! |---|---|---|
//! | `a + b` | `g` | `g` |
//! | `a - b` | `g` | `−g` |
//! | `a * b` | `g·b` | `g·a` |
//! | `a / b` | `g / b` | `−g·(a/b) / b` |
//!
//! `x.mul_add(a, b)` rounds once (`F::mul_add`); its gradients are `g·a`, `g·x` and `g`.
//!
//! # Panics
//! Operands whose shapes cannot be broadcast together, or that come from different tapes,
//! panic with both shapes and the caller's location.

use std::ops::{Add, Div, Mul, Neg, Sub};
use std::panic::Location;

use ndarray::{ArrayD, Zip};
use smallvec::smallvec;

use super::unary::UnaryOp;
use super::{Backward, InputGrads, Op, broadcast_view, standard, zip2};
use crate::broadcast::{broadcast_shape, sum_to};
use crate::tape::same_tape;
use crate::{Scalar, Var};

/// A broadcasting arithmetic op between `Var`s.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl ArithOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ArithOp::Add => "add",
            ArithOp::Sub => "sub",
            ArithOp::Mul => "mul",
            ArithOp::Div => "div",
        }
    }

    /// Affine in the inputs that vary: a sum always, a product when one factor is held
    /// fixed, a quotient when the divisor is.
    pub(crate) fn linear_in(self, varies: &[bool]) -> bool {
        match self {
            ArithOp::Add | ArithOp::Sub => true,
            ArithOp::Mul => !(varies[0] && varies[1]),
            ArithOp::Div => !varies[1],
        }
    }

    fn forward<F: Scalar>(self, a: &ArrayD<F>, b: &ArrayD<F>, shape: &[usize]) -> ArrayD<F> {
        match self {
            ArithOp::Add => broadcast_map(a, b, shape, |x, y| x + y),
            ArithOp::Sub => broadcast_map(a, b, shape, |x, y| x - y),
            ArithOp::Mul => broadcast_map(a, b, shape, |x, y| x * y),
            ArithOp::Div => broadcast_map(a, b, shape, |x, y| x / y),
        }
    }

    pub(crate) fn backward<F: Scalar>(self, b: &Backward<'_, F>) -> InputGrads<F> {
        let (x, y, g) = (b.inputs[0], b.inputs[1], b.grad);
        let ga = b.needs[0].then(|| match self {
            ArithOp::Add | ArithOp::Sub => sum_to(g, x.shape()),
            ArithOp::Mul => sum_to(&times_broadcast(g, y, |g, y| g * y), x.shape()),
            ArithOp::Div => sum_to(&times_broadcast(g, y, |g, y| g / y), x.shape()),
        });
        let gb = b.needs[1].then(|| match self {
            ArithOp::Add => sum_to(g, y.shape()),
            ArithOp::Sub => sum_to(g, y.shape()).mapv_into(|v| -v),
            ArithOp::Mul => sum_to(&times_broadcast(g, x, |g, x| g * x), y.shape()),
            ArithOp::Div => {
                // ∂(x/y)/∂y = −x/y² = −out/y
                let out = b.output;
                let per_elem = if g.shape() == y.shape() {
                    super::zip3(g, out, y, |g, o, y| -g * o / y)
                } else {
                    Zip::from(g)
                        .and(out)
                        .and_broadcast(y)
                        .map_collect(|&g, &o, &y| -g * o / y)
                };
                sum_to(&standard(per_elem), y.shape())
            }
        });
        smallvec![ga, gb]
    }
}

/// Elementwise ops with broadcasting keep rows of every input that has the output's leading
/// axis unbroadcast.
pub(crate) fn keeps_rows(input: &[usize], output: &[usize]) -> bool {
    super::rows_aligned(input, output)
}

/// `x·a + b` is affine unless both factors vary.
pub(crate) fn mul_add_linear_in(varies: &[bool]) -> bool {
    !(varies[0] && varies[1])
}

/// The backward rule of `x.mul_add(a, b) = x·a + b`: `g·a`, `g·x` and `g`, each summed back
/// over the axes it was broadcast along.
pub(crate) fn mul_add_backward<F: Scalar>(b: &Backward<'_, F>) -> InputGrads<F> {
    let (x, a, g) = (b.inputs[0], b.inputs[1], b.grad);
    smallvec![
        b.needs[0].then(|| sum_to(&times_broadcast(g, a, |g, a| g * a), x.shape())),
        b.needs[1].then(|| sum_to(&times_broadcast(g, x, |g, x| g * x), a.shape())),
        b.needs[2].then(|| sum_to(g, b.inputs[2].shape())),
    ]
}

/// `f(a, b)` elementwise after broadcasting both to `shape`.
fn broadcast_map<F: Scalar>(
    a: &ArrayD<F>,
    b: &ArrayD<F>,
    shape: &[usize],
    f: impl Fn(F, F) -> F + Sync + Send,
) -> ArrayD<F> {
    if a.shape() == b.shape() {
        return zip2(a, b, f);
    }
    let (av, bv) = (broadcast_view(a, shape), broadcast_view(b, shape));
    standard(Zip::from(av).and(bv).map_collect(|&x, &y| f(x, y)))
}

/// `f(g, x)` elementwise with `x` broadcast to `g`'s shape.
fn times_broadcast<F: Scalar>(
    g: &ArrayD<F>,
    x: &ArrayD<F>,
    f: impl Fn(F, F) -> F + Sync + Send,
) -> ArrayD<F> {
    if g.shape() == x.shape() {
        zip2(g, x, f)
    } else {
        standard(Zip::from(g).and_broadcast(x).map_collect(|&g, &x| f(g, x)))
    }
}

impl<'t, F: Scalar> Var<'t, F> {
    #[track_caller]
    fn binary(self, rhs: Var<'t, F>, op: ArithOp) -> Var<'t, F> {
        let location = Location::caller();
        same_tape(op.name(), self, rhs);
        let value = {
            let nodes = self.tape.nodes.borrow();
            let (a, b) = (
                self.tape.read(&nodes, self.index),
                self.tape.read(&nodes, rhs.index),
            );
            let shape = broadcast_shape(a.shape(), b.shape()).unwrap_or_else(|| {
                panic!(
                    "{}: shapes {:?} and {:?} cannot be broadcast together (at {location})",
                    op.name(),
                    a.shape(),
                    b.shape()
                )
            });
            op.forward(a, b, &shape)
        };
        self.tape.push(
            Op::Arith(op),
            smallvec![self.index, rhs.index],
            value,
            location,
        )
    }
}

impl<'t, F: Scalar> Var<'t, F> {
    /// `self·a + b` elementwise with a single rounding (fused multiply-add), broadcasting all
    /// three operands together. Pathwise samples `loc + scale·ε` are computed this way.
    ///
    /// # Example
    /// ```
    /// use ndarray::array;
    /// use stograd::Tape;
    ///
    /// let tape = Tape::<f64>::new();
    /// let eps = tape.constant(array![[0.5, -1.0], [2.0, 0.0]]);
    /// let (scale, loc) = (tape.constant(array![2.0, 3.0]), tape.scalar(1.0));
    /// assert_eq!(eps.mul_add(scale, loc).value(), array![[2.0, -2.0], [5.0, 1.0]].into_dyn());
    /// ```
    ///
    /// # Panics
    /// If the three shapes do not broadcast together, or the operands come from different
    /// tapes.
    #[track_caller]
    pub fn mul_add(self, a: Var<'t, F>, b: Var<'t, F>) -> Var<'t, F> {
        let location = Location::caller();
        same_tape("mul_add", self, a);
        same_tape("mul_add", self, b);
        let value = {
            let nodes = self.tape.nodes.borrow();
            let x = self.tape.read(&nodes, self.index);
            let (av, bv) = (
                self.tape.read(&nodes, a.index),
                self.tape.read(&nodes, b.index),
            );
            let shape = broadcast_shape(x.shape(), av.shape())
                .and_then(|s| broadcast_shape(&s, bv.shape()))
                .unwrap_or_else(|| {
                    panic!(
                        "mul_add: shapes {:?}, {:?} and {:?} cannot be broadcast together (at {location})",
                        x.shape(),
                        av.shape(),
                        bv.shape()
                    )
                });
            if x.shape() == shape && av.shape() == shape && bv.shape() == shape {
                super::zip3(x, av, bv, F::mul_add)
            } else {
                let view = |v| broadcast_view(v, &shape);
                standard(
                    Zip::from(view(x))
                        .and(view(av))
                        .and(view(bv))
                        .map_collect(|&x, &a, &b| x.mul_add(a, b)),
                )
            }
        };
        let parents = smallvec![self.index, a.index, b.index];
        self.tape.push(Op::MulAdd, parents, value, location)
    }
}

macro_rules! var_var_ops {
    ($($trait:ident $method:ident $op:ident;)*) => {$(
        impl<'t, F: Scalar> $trait<Var<'t, F>> for Var<'t, F> {
            type Output = Var<'t, F>;
            #[track_caller]
            fn $method(self, rhs: Var<'t, F>) -> Var<'t, F> {
                self.binary(rhs, ArithOp::$op)
            }
        }
    )*};
}

var_var_ops! {
    Add add Add;
    Sub sub Sub;
    Mul mul Mul;
    Div div Div;
}

impl<'t, F: Scalar> Add<F> for Var<'t, F> {
    type Output = Var<'t, F>;
    #[track_caller]
    fn add(self, c: F) -> Var<'t, F> {
        self.unary(UnaryOp::AddScalar(c))
    }
}

impl<'t, F: Scalar> Sub<F> for Var<'t, F> {
    type Output = Var<'t, F>;
    #[track_caller]
    fn sub(self, c: F) -> Var<'t, F> {
        self.unary(UnaryOp::AddScalar(-c))
    }
}

impl<'t, F: Scalar> Mul<F> for Var<'t, F> {
    type Output = Var<'t, F>;
    #[track_caller]
    fn mul(self, c: F) -> Var<'t, F> {
        self.unary(UnaryOp::MulScalar(c))
    }
}

impl<'t, F: Scalar> Div<F> for Var<'t, F> {
    type Output = Var<'t, F>;
    #[track_caller]
    fn div(self, c: F) -> Var<'t, F> {
        self.unary(UnaryOp::DivScalar(c))
    }
}

impl<'t, F: Scalar> Neg for Var<'t, F> {
    type Output = Var<'t, F>;
    #[track_caller]
    fn neg(self) -> Var<'t, F> {
        self.unary(UnaryOp::Neg)
    }
}

macro_rules! scalar_var_ops {
    ($($t:ty),*) => {$(
        impl<'t> Add<Var<'t, $t>> for $t {
            type Output = Var<'t, $t>;
            #[track_caller]
            fn add(self, v: Var<'t, $t>) -> Var<'t, $t> {
                v.unary(UnaryOp::AddScalar(self))
            }
        }
        impl<'t> Sub<Var<'t, $t>> for $t {
            type Output = Var<'t, $t>;
            #[track_caller]
            fn sub(self, v: Var<'t, $t>) -> Var<'t, $t> {
                v.unary(UnaryOp::ScalarSub(self))
            }
        }
        impl<'t> Mul<Var<'t, $t>> for $t {
            type Output = Var<'t, $t>;
            #[track_caller]
            fn mul(self, v: Var<'t, $t>) -> Var<'t, $t> {
                v.unary(UnaryOp::MulScalar(self))
            }
        }
        impl<'t> Div<Var<'t, $t>> for $t {
            type Output = Var<'t, $t>;
            #[track_caller]
            fn div(self, v: Var<'t, $t>) -> Var<'t, $t> {
                v.unary(UnaryOp::ScalarDiv(self))
            }
        }
    )*};
}

scalar_var_ops!(f32, f64);
