//! `+ - * /` between `Var`s with NumPy broadcasting, with scalars on either side, and unary `-`.
//!
//! Broadcasting aligns trailing axes; an axis of length 1 (or a missing leading axis) repeats.
//! The backward rule reduces each input's gradient back over the axes it was broadcast along
//! ([`sum_to`](crate::broadcast::sum_to)):
//!
//! | op | `∂/∂a` | `∂/∂b` |
//! |---|---|---|
//! | `a + b` | `g` | `g` |
//! | `a - b` | `g` | `−g` |
//! | `a * b` | `g·b` | `g·a` |
//! | `a / b` | `g / b` | `−g·(a/b) / b` |
//!
//! # Panics
//! Operands whose shapes cannot be broadcast together, or that come from different tapes,
//! panic with both shapes and the caller's location.

use std::ops::{Add, Div, Mul, Neg, Sub};
use std::panic::Location;

use ndarray::{ArrayD, Zip};
use smallvec::smallvec;

use super::unary::UnaryOp;
use super::{Backward, InputGrads, Op, standard, zip2};
use crate::broadcast::{broadcast_shape, sum_to};
use crate::tape::same_tape;
use crate::{Scalar, Var};

/// A broadcasting binary op between two `Var`s.
#[derive(Clone, Copy, Debug)]
pub(crate) enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }

    fn forward<F: Scalar>(self, a: &ArrayD<F>, b: &ArrayD<F>, shape: &[usize]) -> ArrayD<F> {
        match self {
            BinaryOp::Add => broadcast_map(a, b, shape, |x, y| x + y),
            BinaryOp::Sub => broadcast_map(a, b, shape, |x, y| x - y),
            BinaryOp::Mul => broadcast_map(a, b, shape, |x, y| x * y),
            BinaryOp::Div => broadcast_map(a, b, shape, |x, y| x / y),
        }
    }

    pub(crate) fn backward<F: Scalar>(self, b: &Backward<'_, F>) -> InputGrads<F> {
        let (x, y, g) = (b.inputs[0], b.inputs[1], b.grad);
        let ga = b.needs[0].then(|| match self {
            BinaryOp::Add | BinaryOp::Sub => sum_to(g, x.shape()),
            BinaryOp::Mul => sum_to(&times_broadcast(g, y, |g, y| g * y), x.shape()),
            BinaryOp::Div => sum_to(&times_broadcast(g, y, |g, y| g / y), x.shape()),
        });
        let gb = b.needs[1].then(|| match self {
            BinaryOp::Add => sum_to(g, y.shape()),
            BinaryOp::Sub => sum_to(g, y.shape()).mapv_into(|v| -v),
            BinaryOp::Mul => sum_to(&times_broadcast(g, x, |g, x| g * x), y.shape()),
            BinaryOp::Div => {
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

/// `f(a, b)` elementwise after broadcasting both to `shape`.
fn broadcast_map<F: Scalar>(
    a: &ArrayD<F>,
    b: &ArrayD<F>,
    shape: &[usize],
    f: impl Fn(F, F) -> F,
) -> ArrayD<F> {
    if a.shape() == b.shape() {
        return zip2(a, b, f);
    }
    let av = a.broadcast(shape).expect("shape checked by the caller");
    let bv = b.broadcast(shape).expect("shape checked by the caller");
    standard(Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y)))
}

/// `f(g, x)` elementwise with `x` broadcast to `g`'s shape.
fn times_broadcast<F: Scalar>(g: &ArrayD<F>, x: &ArrayD<F>, f: impl Fn(F, F) -> F) -> ArrayD<F> {
    if g.shape() == x.shape() {
        zip2(g, x, f)
    } else {
        standard(Zip::from(g).and_broadcast(x).map_collect(|&g, &x| f(g, x)))
    }
}

impl<'t, F: Scalar> Var<'t, F> {
    #[track_caller]
    fn binary(self, rhs: Var<'t, F>, op: BinaryOp) -> Var<'t, F> {
        let location = Location::caller();
        same_tape(op.name(), self, rhs);
        let value = {
            let nodes = self.tape.nodes.borrow();
            let (a, b) = (
                &nodes[self.index as usize].value,
                &nodes[rhs.index as usize].value,
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
            Op::Binary(op),
            smallvec![self.index, rhs.index],
            value,
            location,
        )
    }
}

macro_rules! var_var_ops {
    ($($trait:ident $method:ident $op:ident;)*) => {$(
        impl<'t, F: Scalar> $trait<Var<'t, F>> for Var<'t, F> {
            type Output = Var<'t, F>;
            #[track_caller]
            fn $method(self, rhs: Var<'t, F>) -> Var<'t, F> {
                self.binary(rhs, BinaryOp::$op)
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
