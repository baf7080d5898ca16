//! Elementwise functions, each one row of `(name, y = f(x), dy/dx)`.
//!
//! The derivative may use the output `y` (for `exp`, `dy/dx = y`), which saves recomputing
//! `f`. Numerically delicate rows are written in their stable form:
//!
//! - `sigmoid(x) = 1 / (1 + e)` for `x ≥ 0` and `e / (1 + e)` below, with `e = e^{−|x|}`, so
//!   nothing overflows; `σ' = y (1 − y)`.
//! - `softplus(x) = max(x, 0) + log1p(e^{−|x|})`, exact for large `|x|`; `softplus' = σ(x)`.
//! - `log_sigmoid(x) = −softplus(−x)`; its derivative is `σ(−x)`.
//!
//! At kinks the derivative takes one side's value: `relu'(0) = 0`, `abs'(0) = 0`, and `clamp`
//! passes the gradient where `lo ≤ x ≤ hi`. NaN stays NaN through `relu` and `clamp` (a
//! `max`/`min` would turn it into the bound and hide it).

use std::panic::Location;

use ndarray::ArrayD;
use smallvec::smallvec;

use super::{Backward, InputGrads, Op, lit, map, zip3};
use crate::{Scalar, Var};

/// An elementwise op; scalar operands are stored in the variant.
#[derive(Clone, Copy, Debug)]
pub(crate) enum UnaryOp<F> {
    Neg,
    AddScalar(F),
    MulScalar(F),
    DivScalar(F),
    /// `c − x`
    ScalarSub(F),
    /// `c / x`
    ScalarDiv(F),
    Powf(F),
    Exp,
    Log,
    Log1p,
    Expm1,
    Sqrt,
    Square,
    Recip,
    Abs,
    Sin,
    Cos,
    Tanh,
    Sigmoid,
    LogSigmoid,
    Relu,
    LeakyRelu(F),
    Elu(F),
    Gelu,
    Softplus,
    Lgamma,
    Digamma,
    Clamp(F, F),
}

/// The logistic function, with the branch that cannot overflow.
pub(crate) fn sigmoid<F: Scalar>(x: F) -> F {
    let e = x.exp_neg_abs();
    let r = F::one() / (F::one() + e);
    if x >= F::zero() { r } else { e * r }
}

/// `Φ(x) = (1 + erf(x/√2)) / 2`.
fn normal_cdf<F: Scalar>(x: F) -> F {
    lit::<F>(0.5) * (F::one() + (x * lit(std::f64::consts::FRAC_1_SQRT_2)).erf())
}

/// `φ(x) = e^{−x²/2} / √(2π)`.
fn normal_pdf<F: Scalar>(x: F) -> F {
    (-lit::<F>(0.5) * x * x).exp() * lit(0.398_942_280_401_432_7)
}

/// `x Φ(x)`, with its limits at `±∞` (`∞ · 1` and `−∞ · 0 → 0`; the product was NaN at `−∞`).
fn gelu<F: Scalar>(x: F) -> F {
    if x.is_infinite() {
        x.max(F::zero())
    } else {
        x * normal_cdf(x)
    }
}

/// `x φ(x)`, 0 at `±∞` (its limit; the product was `∞ · 0 = NaN`).
fn x_normal_pdf<F: Scalar>(x: F) -> F {
    if x.is_infinite() {
        F::zero()
    } else {
        x * normal_pdf(x)
    }
}

fn softplus<F: Scalar>(x: F) -> F {
    x.max(F::zero()) + x.log1p_exp_neg_abs()
}

fn step<F: Scalar>(condition: bool) -> F {
    if condition { F::one() } else { F::zero() }
}

/// One row per op: `Variant => "name", |x| f(x), |x, y| dy/dx`.
macro_rules! unary_table {
    ($($pat:pat => $name:literal, |$x:ident| $f:expr, |$dx:ident, $y:ident| $df:expr;)*) => {
        impl<F: Scalar> UnaryOp<F> {
            #[allow(unused_variables)]
            pub(crate) fn name(self) -> &'static str {
                match self { $($pat => $name,)* }
            }

            fn forward(self, a: &ArrayD<F>) -> ArrayD<F> {
                match self { $($pat => map(a, |$x: F| $f),)* }
            }

            #[allow(unused_variables)]
            fn derivative_times(self, a: &ArrayD<F>, out: &ArrayD<F>, g: &ArrayD<F>) -> ArrayD<F> {
                match self { $($pat => zip3(a, out, g, |$dx: F, $y: F, g: F| g * ($df)),)* }
            }
        }
    };
}

unary_table! {
    UnaryOp::Neg => "neg", |x| -x, |x, y| -F::one();
    UnaryOp::AddScalar(c) => "add_scalar", |x| x + c, |x, y| F::one();
    UnaryOp::MulScalar(c) => "mul_scalar", |x| x * c, |x, y| c;
    UnaryOp::DivScalar(c) => "div_scalar", |x| x / c, |x, y| c.recip();
    UnaryOp::ScalarSub(c) => "scalar_sub", |x| c - x, |x, y| -F::one();
    UnaryOp::ScalarDiv(c) => "scalar_div", |x| c / x, |x, y| -y / x;
    UnaryOp::Powf(p) => "powf", |x| x.powf(p), |x, y| if p == F::zero() { F::zero() } else { p * x.powf(p - F::one()) };
    UnaryOp::Exp => "exp", |x| x.exp(), |x, y| y;
    UnaryOp::Log => "log", |x| x.ln(), |x, y| x.recip();
    UnaryOp::Log1p => "log1p", |x| x.ln_1p(), |x, y| (F::one() + x).recip();
    // eˣ, not y + 1, which cancels for x ≪ 0 (e⁻⁸ lost 5 digits in f32)
    UnaryOp::Expm1 => "expm1", |x| x.exp_m1(), |x, y| x.exp();
    UnaryOp::Sqrt => "sqrt", |x| x.sqrt(), |x, y| lit::<F>(0.5) / y;
    UnaryOp::Square => "square", |x| x * x, |x, y| x + x;
    UnaryOp::Recip => "recip", |x| x.recip(), |x, y| -y * y;
    UnaryOp::Abs => "abs", |x| x.abs(), |x, y| step::<F>(x > F::zero()) - step::<F>(x < F::zero());
    UnaryOp::Sin => "sin", |x| x.sin(), |x, y| x.cos();
    UnaryOp::Cos => "cos", |x| x.cos(), |x, y| -x.sin();
    UnaryOp::Tanh => "tanh", |x| x.tanh(), |x, y| F::one() - y * y;
    UnaryOp::Sigmoid => "sigmoid", |x| sigmoid(x), |x, y| y * (F::one() - y);
    UnaryOp::LogSigmoid => "log_sigmoid", |x| -softplus(-x), |x, y| sigmoid(-x);
    UnaryOp::Relu => "relu", |x| if x <= F::zero() { F::zero() } else { x }, |x, y| step(x > F::zero());
    UnaryOp::LeakyRelu(s) => "leaky_relu", |x| if x > F::zero() { x } else { s * x }, |x, y| if x > F::zero() { F::one() } else { s };
    UnaryOp::Elu(a) => "elu", |x| if x > F::zero() { x } else { a * x.exp_m1() }, |x, y| if x > F::zero() { F::one() } else { y + a };
    UnaryOp::Gelu => "gelu", |x| gelu(x), |x, y| normal_cdf(x) + x_normal_pdf(x);
    UnaryOp::Softplus => "softplus", |x| softplus(x), |x, y| sigmoid(x);
    UnaryOp::Lgamma => "lgamma", |x| x.lgamma(), |x, y| x.digamma();
    UnaryOp::Digamma => "digamma", |x| x.digamma(), |x, y| x.trigamma();
    UnaryOp::Clamp(lo, hi) => "clamp", |x| if x < lo { lo } else if x > hi { hi } else { x }, |x, y| step(x >= lo && x <= hi);
}

impl<F: Scalar> UnaryOp<F> {
    /// The affine rows: a shift, a scaling, a negation. (Every row keeps rows separate, being
    /// elementwise.)
    pub(crate) fn is_linear(self) -> bool {
        matches!(
            self,
            UnaryOp::Neg
                | UnaryOp::AddScalar(_)
                | UnaryOp::MulScalar(_)
                | UnaryOp::DivScalar(_)
                | UnaryOp::ScalarSub(_)
        )
    }

    pub(crate) fn backward(self, b: &Backward<'_, F>) -> InputGrads<F> {
        if let UnaryOp::DivScalar(c) = self {
            // g / c, not g · (1/c): 1/c overflows for |c| below 1/max (a temperature of 1e-39
            // in f32), and 0 · ∞ made the gradient NaN
            return smallvec![Some(map(b.grad, |g: F| g / c))];
        }
        smallvec![Some(self.derivative_times(b.inputs[0], b.output, b.grad))]
    }
}

impl<'t, F: Scalar> Var<'t, F> {
    #[track_caller]
    pub(crate) fn unary(self, op: UnaryOp<F>) -> Var<'t, F> {
        let value = self.tape.with_value(self.index, |a| op.forward(a));
        self.tape.push(
            Op::Unary(op),
            smallvec![self.index],
            value,
            Location::caller(),
        )
    }

    /// `eˣ` elementwise.
    #[track_caller]
    pub fn exp(self) -> Self {
        self.unary(UnaryOp::Exp)
    }

    /// Natural logarithm elementwise (`−∞` at 0, NaN below).
    #[track_caller]
    pub fn log(self) -> Self {
        self.unary(UnaryOp::Log)
    }

    /// `ln(1 + x)`, accurate for small `x`.
    #[track_caller]
    pub fn log1p(self) -> Self {
        self.unary(UnaryOp::Log1p)
    }

    /// `eˣ − 1`, accurate for small `x`.
    #[track_caller]
    pub fn expm1(self) -> Self {
        self.unary(UnaryOp::Expm1)
    }

    /// Square root elementwise.
    #[track_caller]
    pub fn sqrt(self) -> Self {
        self.unary(UnaryOp::Sqrt)
    }

    /// `x²` elementwise.
    #[track_caller]
    pub fn square(self) -> Self {
        self.unary(UnaryOp::Square)
    }

    /// `xᵖ` elementwise, for a constant exponent `p`.
    #[track_caller]
    pub fn powf(self, p: F) -> Self {
        self.unary(UnaryOp::Powf(p))
    }

    /// `1 / x` elementwise.
    #[track_caller]
    pub fn recip(self) -> Self {
        self.unary(UnaryOp::Recip)
    }

    /// `|x|` elementwise; the derivative at 0 is taken as 0.
    #[track_caller]
    pub fn abs(self) -> Self {
        self.unary(UnaryOp::Abs)
    }

    /// Sine elementwise.
    #[track_caller]
    pub fn sin(self) -> Self {
        self.unary(UnaryOp::Sin)
    }

    /// Cosine elementwise.
    #[track_caller]
    pub fn cos(self) -> Self {
        self.unary(UnaryOp::Cos)
    }

    /// Hyperbolic tangent elementwise.
    #[track_caller]
    pub fn tanh(self) -> Self {
        self.unary(UnaryOp::Tanh)
    }

    /// The logistic function `σ(x) = 1 / (1 + e^{−x})`, computed without overflow.
    #[track_caller]
    pub fn sigmoid(self) -> Self {
        self.unary(UnaryOp::Sigmoid)
    }

    /// `ln σ(x) = −softplus(−x)`, finite for every finite `x` (unlike `sigmoid().log()`).
    #[track_caller]
    pub fn log_sigmoid(self) -> Self {
        self.unary(UnaryOp::LogSigmoid)
    }

    /// `max(x, 0)` elementwise.
    #[track_caller]
    pub fn relu(self) -> Self {
        self.unary(UnaryOp::Relu)
    }

    /// `x` for `x > 0` and `slope·x` otherwise (PyTorch's `leaky_relu`; its default slope is
    /// 0.01). The gradient at 0 is `slope`.
    #[track_caller]
    pub fn leaky_relu(self, slope: F) -> Self {
        self.unary(UnaryOp::LeakyRelu(slope))
    }

    /// `x` for `x > 0` and `α(eˣ − 1)` otherwise (PyTorch's `elu`; its default `α` is 1).
    #[track_caller]
    pub fn elu(self, alpha: F) -> Self {
        self.unary(UnaryOp::Elu(alpha))
    }

    /// The Gaussian error linear unit `x·Φ(x)`, with `Φ` the standard normal CDF computed
    /// from `erf` (PyTorch's exact `gelu`); its derivative is `Φ(x) + x·φ(x)`.
    #[track_caller]
    pub fn gelu(self) -> Self {
        self.unary(UnaryOp::Gelu)
    }

    /// `ln(1 + eˣ)`, computed as `max(x, 0) + log1p(e^{−|x|})` so it neither overflows nor
    /// loses precision.
    #[track_caller]
    pub fn softplus(self) -> Self {
        self.unary(UnaryOp::Softplus)
    }

    /// `ln |Γ(x)|` elementwise; its derivative is [`digamma`](Self::digamma).
    #[track_caller]
    pub fn lgamma(self) -> Self {
        self.unary(UnaryOp::Lgamma)
    }

    /// `ψ(x)`, the derivative of `ln Γ`; its derivative is the trigamma function.
    #[track_caller]
    pub fn digamma(self) -> Self {
        self.unary(UnaryOp::Digamma)
    }

    /// Limits every element to `[lo, hi]`; the gradient passes where `lo ≤ x ≤ hi`.
    ///
    /// # Panics
    /// If `lo > hi` or either bound is NaN.
    #[track_caller]
    pub fn clamp(self, lo: F, hi: F) -> Self {
        assert!(
            lo <= hi,
            "clamp: lower bound {lo} exceeds upper bound {hi} (at {})",
            Location::caller()
        );
        self.unary(UnaryOp::Clamp(lo, hi))
    }
}
