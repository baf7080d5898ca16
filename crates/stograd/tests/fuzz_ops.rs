//! The ops' contract under extreme inputs (the values of [`fuzz::extreme`]: ±0, subnormals,
//! ±max, ±∞, NaN and ordinary values), in `f32` and `f64`, with empty and zero-length shapes:
//! every result agrees with an `f64` reference computed from the same (rounded) inputs and
//! rounded to the float type — NaN exactly where the reference is NaN, the same infinity where
//! it is infinite (the true value is beyond the type), and otherwise within a few ulps, or
//! within `F::MIN_POSITIVE` where a result below the smallest normal number is flushed to 0 —
//! and so are the gradients wherever the value is finite.
//!
//! Where a sum's terms overflow (`Σ|xᵢ|`, or a product in a matrix product, beyond the float's
//! maximum) the result of a finite-precision sum is not compared: `[max, max, −max]` overflows
//! in any order of addition that does not widen (see docs/numerics.md, "Known limits").
//!
//! [`fuzz::extreme`]: crate::fuzz::extreme

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use stograd::{Scalar, Tape, Var};

use crate::fuzz::extreme;

/// `x` rounded to `F` and back: how a reference computed in `f64` is compared.
fn round<F: Scalar>(x: f64) -> f64 {
    F::from_f64(x).as_f64()
}

/// `got` agrees with the reference `want` (already rounded to `F`): both NaN, the same
/// infinity, or within `ulps` units of `F`'s precision of `want` plus `abs` (and
/// `F::MIN_POSITIVE` for a flushed subnormal).
fn agrees<F: Scalar>(got: f64, want: f64, ulps: f64, abs: f64) -> bool {
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    if want.is_infinite() || got.is_infinite() {
        return got == want;
    }
    let eps = F::epsilon().as_f64();
    (got - want).abs() <= ulps * eps * want.abs() + abs + F::min_positive_value().as_f64()
}

fn array<F: Scalar>(shape: &[usize], values: &[f64]) -> ArrayD<F> {
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(
        IxDyn(shape),
        values
            .iter()
            .cycle()
            .take(n)
            .map(|&v| F::from_f64(v))
            .collect(),
    )
    .unwrap()
}

/// The values of `a` as `f64`.
fn f64s<F: Scalar>(a: &ArrayD<F>) -> Vec<f64> {
    a.iter().map(|v| v.as_f64()).collect()
}

#[track_caller]
fn assert_all<F: Scalar>(what: &str, got: &[f64], want: &[f64], ulps: f64, abs: f64) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} values, want {}",
        got.len(),
        want.len()
    );
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            agrees::<F>(g, w, ulps, abs),
            "{what} in {}: element {i} is {g}, the reference {w}",
            std::any::type_name::<F>()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Unary elementwise ops

/// One unary op: the engine's, its reference value and derivative in `f64`, its ulps, and the
/// absolute scale of its derivative's error (1 for ops whose derivative is bounded and absorbs
/// to 0 in the tails, as `σ'(x) = σ(x)(1 − σ(x))` once `σ(x)` rounds to 1).
struct Unary<F: Scalar> {
    name: &'static str,
    op: for<'t> fn(Var<'t, F>) -> Var<'t, F>,
    value: fn(f64) -> f64,
    derivative: fn(f64) -> f64,
    ulps: f64,
    derivative_abs: f64,
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        x.exp() / (1.0 + x.exp())
    }
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn lit<F: Scalar>(x: f64) -> F {
    F::from_f64(x)
}

macro_rules! unary {
    ($($name:literal, |$v:ident| $op:expr, |$x:ident| $f:expr, |$dx:ident| $df:expr, $ulps:expr, $dabs:expr;)*) => {
        vec![$(Unary {
            name: $name,
            op: |$v| $op,
            value: |$x| $f,
            derivative: |$dx| $df,
            ulps: $ulps,
            derivative_abs: $dabs,
        }),*]
    };
}

fn unary_table<F: Scalar>() -> Vec<Unary<F>> {
    unary![
        "neg", |v| -v, |x| -x, |_x| -1.0, 0.0, 0.0;
        "exp", |v| v.exp(), |x| x.exp(), |x| x.exp(), 4.0, 0.0;
        "log", |v| v.log(), |x| x.ln(), |x| 1.0 / x, 4.0, 0.0;
        "log1p", |v| v.log1p(), |x| x.ln_1p(), |x| 1.0 / (1.0 + x), 4.0, 0.0;
        "expm1", |v| v.expm1(), |x| x.exp_m1(), |x| x.exp(), 4.0, 0.0;
        "sqrt", |v| v.sqrt(), |x| x.sqrt(), |x| 0.5 / x.sqrt(), 2.0, 0.0;
        "square", |v| v.square(), |x| x * x, |x| 2.0 * x, 2.0, 0.0;
        "recip", |v| v.recip(), |x| 1.0 / x, |x| -(1.0 / x) / x, 2.0, 0.0;
        "abs", |v| v.abs(), |x| x.abs(),
            |x| if x > 0.0 { 1.0 } else if x < 0.0 { -1.0 } else if x == 0.0 { 0.0 } else { x },
            0.0, 0.0;
        "sin", |v| v.sin(), |x| x.sin(), |x| x.cos(), 4.0, 0.0;
        "cos", |v| v.cos(), |x| x.cos(), |x| -x.sin(), 4.0, 0.0;
        "tanh", |v| v.tanh(), |x| x.tanh(), |x| 1.0 - x.tanh().powi(2), 4.0, 1.0;
        "sigmoid", |v| v.sigmoid(), |x| sigmoid(x), |x| sigmoid(x) * sigmoid(-x), 8.0, 1.0;
        "log_sigmoid", |v| v.log_sigmoid(), |x| -softplus(-x), |x| sigmoid(-x), 8.0, 0.0;
        "softplus", |v| v.softplus(), |x| softplus(x), |x| sigmoid(x), 8.0, 0.0;
        "relu", |v| v.relu(), |x| if x.is_nan() { x } else if x <= 0.0 { 0.0 } else { x },
            |x| if x > 0.0 { 1.0 } else if x.is_nan() { x } else { 0.0 }, 0.0, 0.0;
        "powf(2.5)", |v| v.powf(lit(2.5)), |x| x.powf(2.5), |x| 2.5 * x.powf(1.5), 8.0, 0.0;
        "powf(0)", |v| v.powf(lit(0.0)), |x| x.powf(0.0), |_x| 0.0,
            0.0, 0.0;
        "powf(-1)", |v| v.powf(lit(-1.0)), |x| x.powf(-1.0), |x| -x.powf(-2.0), 4.0, 0.0;
        "clamp(-1, 2)", |v| v.clamp(lit(-1.0), lit(2.0)),
            |x| x.clamp(-1.0, 2.0),
            |x| if x.is_nan() { x } else if (-1.0..=2.0).contains(&x) { 1.0 } else { 0.0 },
            0.0, 0.0;
    ]
}

/// Every op of the table at `x`: the value against the reference, and where it is finite the
/// gradient against the reference derivative.
fn unary_ops<F: Scalar>(x: f64) {
    let xf = round::<F>(x);
    for u in unary_table::<F>() {
        let tape = Tape::<F>::new();
        let v = tape.variable(array::<F>(&[1], &[xf]));
        let y = (u.op)(v);
        let got = y.item().as_f64();
        let want = round::<F>((u.value)(xf));
        assert_all::<F>(&format!("{}({xf})", u.name), &[got], &[want], u.ulps, 0.0);
        if got.is_finite() {
            let g = y.sum().backward().unwrap().wrt(v).unwrap()[0].as_f64();
            let dwant = round::<F>((u.derivative)(xf));
            assert_all::<F>(
                &format!("{}'({xf})", u.name),
                &[g],
                &[dwant],
                u.ulps.max(4.0),
                4.0 * u.derivative_abs * F::epsilon().as_f64(),
            );
        }
    }
}

/// The ops without a simple `f64` reference: NaN exactly where the input is NaN (or, for
/// `lgamma` and `digamma`, at `−∞` and the poles of `digamma`), and a gradient that is not
/// NaN where the value is finite.
fn unary_without_reference<F: Scalar>(x: f64) {
    type Op<F> = for<'t> fn(Var<'t, F>) -> Var<'t, F>;
    type NanAllowed = fn(f64) -> bool;
    let ops: [(&str, Op<F>, NanAllowed); 5] = [
        ("gelu", |v| v.gelu(), |x| x.is_nan()),
        ("elu(1)", |v| v.elu(F::one()), |x| x.is_nan()),
        (
            "leaky_relu(0.1)",
            |v| v.leaky_relu(lit(0.1)),
            |x| x.is_nan(),
        ),
        (
            "lgamma",
            |v| v.lgamma(),
            |x| x.is_nan() || x == f64::NEG_INFINITY,
        ),
        (
            "digamma",
            |v| v.digamma(),
            |x| x.is_nan() || x == f64::NEG_INFINITY || (x <= 0.0 && x.fract() == 0.0),
        ),
    ];
    let xf = round::<F>(x);
    for (name, op, nan_allowed) in ops {
        let tape = Tape::<F>::new();
        let v = tape.variable(array::<F>(&[1], &[xf]));
        let y = op(v);
        let value = y.item().as_f64();
        let ty = std::any::type_name::<F>();
        assert!(
            nan_allowed(xf) || !value.is_nan(),
            "{name}({xf}) in {ty} is NaN"
        );
        if value.is_finite() && !nan_allowed(xf) {
            let g = y.sum().backward().unwrap().wrt(v).unwrap()[0].as_f64();
            assert!(
                !g.is_nan(),
                "{name}'({xf}) in {ty} is NaN where {name} is {value}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Binary ops with broadcasting

/// Shape pairs that broadcast, zero-length axes included.
/// Operand shapes and their broadcast shape (numpy's rule, written out).
const SHAPES: [(&[usize], &[usize], &[usize]); 8] = [
    (&[3], &[3], &[3]),
    (&[2, 3], &[3], &[2, 3]),
    (&[2, 1], &[1, 3], &[2, 3]),
    (&[], &[2], &[2]),
    (&[3], &[], &[3]),
    (&[0, 3], &[3], &[0, 3]),
    (&[2, 0], &[1, 1], &[2, 0]),
    (&[0], &[0], &[0]),
];

fn binary_ops<F: Scalar>(a: &[f64], b: &[f64], shapes: usize) {
    let (sa, sb, shape) = SHAPES[shapes];
    let (av, bv) = (array::<F>(sa, a), array::<F>(sb, b));
    type Op<F> = for<'t> fn(Var<'t, F>, Var<'t, F>) -> Var<'t, F>;
    type Reference = fn(f64, f64) -> f64;
    type Partials = fn(f64, f64) -> (f64, f64);
    let ops: [(&str, Op<F>, Reference, Partials); 4] = [
        ("+", |x, y| x + y, |x, y| x + y, |_, _| (1.0, 1.0)),
        ("-", |x, y| x - y, |x, y| x - y, |_, _| (1.0, -1.0)),
        ("*", |x, y| x * y, |x, y| x * y, |x, y| (y, x)),
        (
            "/",
            |x, y| x / y,
            |x, y| x / y,
            |x, y| (1.0 / y, -(x / y) / y),
        ),
    ];
    let (a64, b64) = (av.mapv(|v| v.as_f64()), bv.mapv(|v| v.as_f64()));
    let (ab, bb) = (
        a64.broadcast(IxDyn(shape)).unwrap(),
        b64.broadcast(IxDyn(shape)).unwrap(),
    );
    for (name, op, f, df) in ops {
        let tape = Tape::<F>::new();
        let (x, y) = (tape.variable(av.clone()), tape.variable(bv.clone()));
        let z = op(x, y);
        let what = format!(
            "{:?} {name} {:?} (shapes {sa:?}, {sb:?})",
            f64s(&av),
            f64s(&bv)
        );
        assert_eq!(z.shape(), shape, "{what}: shape");
        let want: Vec<f64> = ab
            .iter()
            .zip(bb.iter())
            .map(|(&p, &q)| round::<F>(f(p, q)))
            .collect();
        assert_all::<F>(&what, &f64s(&z.value()), &want, 0.0, 0.0);
        let grads = z.sum().backward().unwrap();
        let (ga, gb) = (grads.wrt(x).unwrap(), grads.wrt(y).unwrap());
        assert_eq!(
            (ga.shape(), gb.shape()),
            (sa, sb),
            "{what}: gradient shapes"
        );
        if sa == sb {
            // no broadcast: elementwise partial derivatives, where the value is finite
            for (i, (&p, &q)) in a64.iter().zip(b64.iter()).enumerate() {
                if !f(p, q).is_finite() || !round::<F>(f(p, q)).is_finite() {
                    continue;
                }
                let (dp, dq) = df(p, q);
                let got = (
                    ga.as_slice().unwrap()[i].as_f64(),
                    gb.as_slice().unwrap()[i].as_f64(),
                );
                assert_all::<F>(
                    &format!("∂/∂a of {what}"),
                    &[got.0],
                    &[round::<F>(dp)],
                    2.0,
                    0.0,
                );
                assert_all::<F>(
                    &format!("∂/∂b of {what}"),
                    &[got.1],
                    &[round::<F>(dq)],
                    2.0,
                    0.0,
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reductions and normalizations, empty and zero-length shapes included

/// `Σ|x|` overflows `F`: a finite-precision sum of `x` may then overflow in any order.
fn overflows<F: Scalar>(x: &[f64]) -> bool {
    let total: f64 = x.iter().map(|v| v.abs()).sum();
    x.iter().all(|v| v.is_finite()) && round::<F>(total).is_infinite()
}

/// The reference `ln Σ eˣ` of one row.
fn logsumexp_ref(x: &[f64]) -> f64 {
    if x.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m.is_infinite() {
        return m;
    }
    m + x.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// The reference softmax of one row: NaN with a NaN or `+∞` in the row (no value, or an
/// ambiguous one), zeros in a fully masked row (all `−∞`, the documented convention).
fn softmax_ref(x: &[f64]) -> Vec<f64> {
    if x.iter().any(|v| v.is_nan() || *v == f64::INFINITY) {
        return vec![f64::NAN; x.len()];
    }
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return vec![0.0; x.len()];
    }
    let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

fn reductions<F: Scalar>(values: &[f64], rows: usize, cols: usize) {
    let x = array::<F>(&[rows, cols], values);
    let flat = f64s(&x);
    let row = |r: usize| flat[r * cols..(r + 1) * cols].to_vec();
    let what = format!("{flat:?} as [{rows}, {cols}]");
    let eps = F::epsilon().as_f64();
    let tape = Tape::<F>::new();
    let v = tape.variable(x.clone());
    let n = (rows * cols) as f64;

    // sum and mean: within the pairwise bound (stated in docs/numerics.md, here loosely
    // (n + 4) ε Σ|x|), unless the terms overflow
    if !overflows::<F>(&flat) {
        // the rounding of the finite terms (a NaN or ∞ term decides the result by itself)
        let abs_sum: f64 = flat.iter().filter(|v| v.is_finite()).map(|v| v.abs()).sum();
        let tol = (n + 4.0) * eps * abs_sum;
        let s = v.sum();
        let want = round::<F>(flat.iter().sum());
        assert_all::<F>(
            &format!("sum of {what}"),
            &[s.item().as_f64()],
            &[want],
            0.0,
            tol,
        );
        let m = v.mean().item().as_f64();
        let want = round::<F>(flat.iter().sum::<f64>() / n);
        assert_all::<F>(
            &format!("mean of {what}"),
            &[m],
            &[want],
            2.0,
            tol / n.max(1.0),
        );
        let s1 = f64s(&v.sum_axis(1).value());
        let want: Vec<f64> = (0..rows).map(|r| round::<F>(row(r).iter().sum())).collect();
        assert_all::<F>(&format!("sum_axis(1) of {what}"), &s1, &want, 0.0, tol);
        // the gradient of a sum is 1 everywhere
        let g = v.sum().backward().unwrap();
        assert!(
            g.wrt(v).unwrap().iter().all(|&g| g == F::one()),
            "∂ sum of {what}"
        );
    }

    // logsumexp over everything and by rows, and its gradient (the softmax)
    let lse = v.logsumexp();
    let want = round::<F>(logsumexp_ref(&flat));
    let tol = 8.0 * eps * (1.0 + n.ln().max(0.0));
    let got = lse.item().as_f64();
    assert_all::<F>(&format!("logsumexp of {what}"), &[got], &[want], 8.0, tol);
    let by_row = f64s(&v.logsumexp_axis(1).value());
    let want: Vec<f64> = (0..rows)
        .map(|r| round::<F>(logsumexp_ref(&row(r))))
        .collect();
    assert_all::<F>(
        &format!("logsumexp_axis(1) of {what}"),
        &by_row,
        &want,
        8.0,
        tol,
    );

    // softmax and log_softmax by rows, values and gradients, for rows with a value
    let sm = v.softmax(1);
    let lsm = v.log_softmax(1);
    assert_eq!(sm.shape(), vec![rows, cols], "softmax of {what}: shape");
    let (smv, lsmv) = (f64s(&sm.value()), f64s(&lsm.value()));
    let lse_rows = v.logsumexp_axis(1);
    let g_lse = lse_rows.sum().backward().unwrap();
    let g_lse = f64s(g_lse.wrt(v).unwrap());
    let g_lsm = lsm.sum().backward().unwrap();
    let g_lsm = f64s(g_lsm.wrt(v).unwrap());
    for r in 0..rows {
        let x = row(r);
        let want = softmax_ref(&x);
        let defined = !want.iter().any(|w| w.is_nan());
        let at = r * cols..(r + 1) * cols;
        let wanted: Vec<f64> = want.iter().map(|&w| round::<F>(w)).collect();
        if defined {
            // e^{x − m} has the relative error of x − m times |x − m|: the exponential's
            // condition number
            let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let spread = x
                .iter()
                .filter(|v| v.is_finite())
                .map(|v| (v - m).abs())
                .fold(0.0, f64::max);
            let ulps = 8.0 + spread.min(1e300);
            assert_all::<F>(
                &format!("softmax row {r} of {what}"),
                &smv[at.clone()],
                &wanted,
                ulps,
                0.0,
            );
            // log_softmax = x − logsumexp, −∞ in a masked row
            let l = logsumexp_ref(&x);
            let want_log: Vec<f64> = x
                .iter()
                .map(|&xi| round::<F>(if l == f64::NEG_INFINITY { l } else { xi - l }))
                .collect();
            let tol = 8.0 * eps * (1.0 + l.abs().min(f64::MAX));
            assert_all::<F>(
                &format!("log_softmax row {r} of {what}"),
                &lsmv[at.clone()],
                &want_log,
                8.0,
                tol,
            );
            // ∂ logsumexp = softmax; ∂ Σ log_softmax = 1 − K softmax: in a masked row the
            // normalizer's gradient is 0 (softmax 0) and the upstream gradient passes as for x
            assert_all::<F>(
                &format!("∂ logsumexp row {r} of {what}"),
                &g_lse[at.clone()],
                &wanted,
                ulps,
                0.0,
            );
            let k = cols as f64;
            let want_g: Vec<f64> = wanted.iter().map(|&s| round::<F>(1.0 - k * s)).collect();
            assert_all::<F>(
                &format!("∂ Σ log_softmax row {r} of {what}"),
                &g_lsm[at],
                &want_g,
                ulps,
                8.0 * eps * k,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Matrix products with zero-size dimensions

/// A sum of products (`got`) against the `f64` sum of its `terms`, within `slack · Σ|terms|`;
/// not compared where a product or partial sum is beyond `F`'s range while the operands are
/// finite, or where a finite term overflows `F` beside an infinite operand (see the module
/// docs).
#[track_caller]
fn check_sum_of_terms<F: Scalar>(
    what: &str,
    got: f64,
    terms: &[f64],
    finite_operands: bool,
    slack: f64,
) {
    let overflowing = |t: &f64| t.is_finite() && round::<F>(*t).is_infinite();
    let beyond = if finite_operands {
        terms.iter().any(|t| round::<F>(*t).is_infinite()) || overflows::<F>(terms)
    } else {
        terms.iter().any(overflowing)
    };
    if beyond {
        return;
    }
    let want = round::<F>(terms.iter().sum());
    let abs: f64 = terms.iter().map(|t| t.abs()).sum();
    assert_all::<F>(what, &[got], &[want], 0.0, slack * abs);
}

fn matmul<F: Scalar>(values: &[f64], m: usize, k: usize, n: usize) {
    let a = array::<F>(&[m, k], values);
    let b = array::<F>(&[k, n], &values.iter().rev().copied().collect::<Vec<_>>());
    let (a64, b64) = (a.mapv(|v| v.as_f64()), b.mapv(|v| v.as_f64()));
    let what = format!("{:?} [{m}, {k}] @ {:?} [{k}, {n}]", f64s(&a), f64s(&b));
    let tape = Tape::<F>::new();
    let (x, y) = (tape.variable(a), tape.variable(b));
    let z = x.matmul(y);
    assert_eq!(z.shape(), vec![m, n], "{what}: shape");
    let zv = z.value();
    let eps = F::epsilon().as_f64();
    for i in 0..m {
        for j in 0..n {
            let terms: Vec<f64> = (0..k).map(|l| a64[[i, l]] * b64[[l, j]]).collect();
            let finite_operands =
                (0..k).all(|l| a64[[i, l]].is_finite() && b64[[l, j]].is_finite());
            check_sum_of_terms::<F>(
                &format!("{what}: element ({i}, {j})"),
                zv[[i, j]].as_f64(),
                &terms,
                finite_operands,
                (k as f64 + 2.0) * eps,
            );
        }
    }
    // the gradient of Σ A B wrt A is 1 Bᵀ: row sums of B, zeros when n = 0
    if finite(&a64) && finite(&b64) && !overflows::<F>(&f64s(&zv)) {
        let g = z.sum().backward().unwrap();
        let ga = g.wrt(x).unwrap();
        assert_eq!(ga.shape(), &[m, k], "{what}: gradient shape");
        for l in 0..k {
            let row: Vec<f64> = (0..n).map(|j| b64[[l, j]]).collect();
            if overflows::<F>(&row) {
                continue;
            }
            let want = round::<F>(row.iter().sum());
            let abs: f64 = row.iter().map(|v| v.abs()).sum();
            for i in 0..m {
                assert_all::<F>(
                    &format!("∂/∂A of Σ {what}"),
                    &[ga[[i, l]].as_f64()],
                    &[want],
                    0.0,
                    (n as f64 + 2.0) * eps * abs,
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A layer and a loss: `linear` (with zero-size dimensions) and `bce_with_logits`

/// `x wᵀ + b` against the `f64` sum of its terms, with `matmul`'s rule for sums whose terms
/// overflow; the gradient wrt the bias is `m` (rows) wherever the output is finite.
fn linear<F: Scalar>(values: &[f64], m: usize, k: usize, n: usize, bias: bool) {
    let x = array::<F>(&[m, k], values);
    let w = array::<F>(&[n, k], &values.iter().rev().copied().collect::<Vec<_>>());
    let b = array::<F>(&[n], &values[values.len() / 2..]);
    let (x64, w64, b64) = (
        x.mapv(|v| v.as_f64()),
        w.mapv(|v| v.as_f64()),
        b.mapv(|v| v.as_f64()),
    );
    let what = format!(
        "linear({:?} [{m}, {k}], {:?} [{n}, {k}], bias {:?})",
        f64s(&x),
        f64s(&w),
        bias.then(|| f64s(&b))
    );
    let tape = Tape::<F>::new();
    let (xv, wv, bv) = (tape.variable(x), tape.variable(w), tape.variable(b));
    let y = xv.linear(wv, bias.then_some(bv));
    assert_eq!(y.shape(), vec![m, n], "{what}: shape");
    let yv = y.value();
    let eps = F::epsilon().as_f64();
    for i in 0..m {
        for j in 0..n {
            let mut terms: Vec<f64> = (0..k).map(|l| x64[[i, l]] * w64[[j, l]]).collect();
            let mut operands: Vec<f64> = (0..k).flat_map(|l| [x64[[i, l]], w64[[j, l]]]).collect();
            if bias {
                terms.push(b64[[j]]);
                operands.push(b64[[j]]);
            }
            check_sum_of_terms::<F>(
                &format!("{what}: element ({i}, {j})"),
                yv[[i, j]].as_f64(),
                &terms,
                operands.iter().all(|v| v.is_finite()),
                (k as f64 + 3.0) * eps,
            );
        }
    }
    if bias && finite(&x64) && finite(&w64) && finite(&b64) && !overflows::<F>(&f64s(&yv)) {
        let g = y.sum().backward().unwrap();
        let gb = g.wrt(bv).unwrap();
        assert!(
            gb.iter().all(|v| v.as_f64() == m as f64),
            "{what}: ∂/∂b of the sum is {gb}, want {m} each"
        );
    }
}

/// `max(l, 0) − l·t + ln(1 + e^{−|l|})`, and its limits at infinite logits: `l(1 − t)` at
/// `+∞` and `−l·t` at `−∞`, 0 for the matching target.
fn bce_ref(l: f64, t: f64) -> f64 {
    if l.is_infinite() {
        let c = if l > 0.0 { 1.0 - t } else { t };
        return if c == 0.0 { 0.0 } else { c * f64::INFINITY };
    }
    l.max(0.0) - l * t + (-l.abs()).exp().ln_1p()
}

/// `bce_with_logits` at an extreme logit and a target in `[0, 1]`; the gradient
/// `σ(l) − t` wherever the loss is finite.
fn bce<F: Scalar>(l: f64, t: f64) {
    let (l, t) = (round::<F>(l), round::<F>(t));
    let tape = Tape::<F>::new();
    let (lv, tv) = (
        tape.variable(array::<F>(&[1], &[l])),
        tape.constant(array::<F>(&[1], &[t])),
    );
    let loss = lv.bce_with_logits(tv);
    let what = format!("bce_with_logits({l}, {t})");
    let want = round::<F>(bce_ref(l, t));
    // the formula's terms are each within the type; their sum within 4 ulps of the largest
    let scale = l.abs().min(F::max_value().as_f64()) + 1.0;
    let eps = F::epsilon().as_f64();
    assert_all::<F>(
        &what,
        &[loss.item().as_f64()],
        &[want],
        4.0,
        4.0 * eps * scale,
    );
    if want.is_finite() && !l.is_nan() {
        let g = loss.backward().unwrap();
        let got = g.wrt(lv).unwrap()[0].as_f64();
        let want = round::<F>(1.0 / (1.0 + (-l).exp()) - t);
        assert_all::<F>(&format!("∂/∂l of {what}"), &[got], &[want], 4.0, 2.0 * eps);
    }
}

// ---------------------------------------------------------------------------------------------
// Shape ops: extreme values move unchanged, gradients count the uses

/// The same values, NaN matching NaN.
fn same_values(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
}

fn shape_ops<F: Scalar>(values: &[f64]) {
    let a = array::<F>(&[2, 3], values);
    let a64 = a.mapv(|v| v.as_f64());
    let what = format!("{:?} [2, 3]", f64s(&a));
    let tape = Tape::<F>::new();
    let x = tape.variable(a);
    let rows = |r: &[usize]| -> Vec<f64> {
        r.iter()
            .flat_map(|&i| (0..3).map(move |j| (i, j)))
            .map(|(i, j)| a64[[i, j]])
            .collect()
    };
    let transposed: Vec<f64> = (0..3)
        .flat_map(|j| (0..2).map(move |i| (i, j)))
        .map(|(i, j)| a64[[i, j]])
        .collect();
    let flat = rows(&[0, 1]);
    // (name, result, its values, the gradient of its sum wrt x, row-major)
    type Case<'t, F> = (&'static str, Var<'t, F>, Vec<f64>, Vec<f64>);
    let ones = vec![1.0; 6];
    let cases: Vec<Case<'_, F>> = vec![
        ("reshape", x.reshape(&[3, 2]), flat.clone(), ones.clone()),
        ("t", x.t(), transposed, ones.clone()),
        ("unsqueeze", x.unsqueeze(0), flat.clone(), ones.clone()),
        ("detach", x.detach(), flat.clone(), vec![]),
        (
            "slice",
            x.slice(1, 1..3),
            [1, 2, 4, 5].iter().map(|&i| flat[i]).collect(),
            vec![0.0, 1.0, 1.0, 0.0, 1.0, 1.0],
        ),
        (
            "concat",
            Var::concat(&[x, x], 0),
            rows(&[0, 1, 0, 1]),
            vec![2.0; 6],
        ),
        (
            "broadcast_to",
            x.broadcast_to(&[2, 2, 3]),
            rows(&[0, 1, 0, 1]),
            vec![2.0; 6],
        ),
        (
            "select_rows",
            x.select_rows(&[1, 0, 1]),
            rows(&[1, 0, 1]),
            vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0],
        ),
        (
            "gather",
            x.gather(1, &ndarray::array![[2], [0]]),
            vec![flat[2], flat[3]],
            vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0],
        ),
        (
            "diagonal",
            x.slice(1, 0..2).diagonal(),
            vec![flat[0], flat[4]],
            vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        ),
    ];
    for (name, y, want, grad) in cases {
        assert!(
            same_values(&f64s(&y.value()), &want),
            "{name} of {what}: {}",
            y.value()
        );
        let g = y.sum().backward().unwrap();
        let got = g.wrt(x).map(f64s).unwrap_or_default();
        assert_eq!(got, grad, "∂/∂x of Σ {name} of {what}");
    }
}

// ---------------------------------------------------------------------------------------------
// `mul_add`, `max`, `max_axis`, `mean_axis`, `cholesky` and `solve_tril`

/// `x·a + b` (fused) against the `f64` value, where the product is within `F`.
fn mul_add<F: Scalar>(x: f64, a: f64, b: f64) {
    let (x, a, b) = (round::<F>(x), round::<F>(a), round::<F>(b));
    let product = x * a;
    if x.is_finite() && a.is_finite() && round::<F>(product).is_infinite() {
        return; // the exact product is beyond the reference's range: not compared
    }
    let tape = Tape::<F>::new();
    let v = |v: f64| tape.variable(array::<F>(&[1], &[v]));
    let got = v(x).mul_add(v(a), v(b)).item().as_f64();
    let eps = F::epsilon().as_f64();
    assert_all::<F>(
        &format!("mul_add({x}, {a}, {b})"),
        &[got],
        &[round::<F>(product + b)],
        1.0,
        2.0 * eps * product.abs(),
    );
}

/// The largest element: NaN if one is, −∞ for none; the gradient 1 at its first occurrence.
fn max_ref(lane: &[f64]) -> f64 {
    if lane.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    lane.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn maxima_and_axis_means<F: Scalar>(values: &[f64], rows: usize, cols: usize) {
    let a = array::<F>(&[rows, cols], values);
    let a64 = a.mapv(|v| v.as_f64());
    let what = format!("{:?} [{rows}, {cols}]", f64s(&a));
    let tape = Tape::<F>::new();
    let x = tape.variable(a);
    let all = f64s(&a64);
    assert_all::<F>(
        &format!("max of {what}"),
        &[x.max().item().as_f64()],
        &[max_ref(&all)],
        0.0,
        0.0,
    );
    if !all.is_empty() && all.iter().all(|v| !v.is_nan()) {
        let g = x.max().backward().unwrap();
        let first = all.iter().position(|&v| v == max_ref(&all)).unwrap();
        let want: Vec<f64> = (0..all.len())
            .map(|i| if i == first { 1.0 } else { 0.0 })
            .collect();
        assert_eq!(f64s(g.wrt(x).unwrap()), want, "∂ max of {what}");
    }
    let eps = F::epsilon().as_f64();
    for axis in 0..2 {
        let lanes: Vec<Vec<f64>> = a64
            .lanes(ndarray::Axis(axis))
            .into_iter()
            .map(|l| l.to_vec())
            .collect();
        let maxima: Vec<f64> = lanes.iter().map(|l| max_ref(l)).collect();
        assert_all::<F>(
            &format!("max_axis({axis}) of {what}"),
            &f64s(&x.max_axis(axis).value()),
            &maxima,
            0.0,
            0.0,
        );
        let n = a64.shape()[axis];
        for (lane, got) in lanes.iter().zip(f64s(&x.mean_axis(axis).value())) {
            if overflows::<F>(lane) {
                continue;
            }
            let want = round::<F>(lane.iter().sum::<f64>() / n as f64);
            let abs = lane.iter().map(|v| v.abs()).sum::<f64>() / n as f64;
            assert_all::<F>(
                &format!("mean_axis({axis}) of {what}"),
                &[got],
                &[want],
                1.0,
                (n as f64 + 2.0) * eps * abs,
            );
        }
    }
}

/// `cholesky` of `[[p, q], [q, r]]`: an error for a non-finite entry or a non-positive pivot,
/// otherwise `L` with no NaN whose first column is `√p, q/√p`; and `L⁻¹ e₁ = (1/L₀₀, −L₁₀/(L₀₀ L₁₁))`
/// by `solve_tril`, not NaN where `L`'s entries are finite and positive on the diagonal.
fn cholesky<F: Scalar>(p: f64, q: f64, r: f64) {
    let (p, q, r) = (round::<F>(p), round::<F>(q), round::<F>(r));
    let tape = Tape::<F>::new();
    let a = tape.constant(array::<F>(&[2, 2], &[p, q, q, r]));
    let what = format!("cholesky([[{p}, {q}], [{q}, {r}]])");
    let Ok(l) = a.cholesky() else {
        let valid_first = p.is_finite() && p > 0.0 && q.is_finite() && r.is_finite();
        // refused: a non-finite entry or a pivot that is not positive (p, or r − q²/p)
        assert!(
            !valid_first
                || round::<F>(r - (q / p.sqrt()).powi(2)) <= 0.0
                || !round::<F>(q / p.sqrt()).is_finite()
                || !round::<F>((q / p.sqrt()).powi(2)).is_finite(),
            "{what} was refused"
        );
        return;
    };
    let lv = f64s(&l.value());
    assert!(lv.iter().all(|v| !v.is_nan()), "{what} = {lv:?}");
    assert_all::<F>(&what, &[lv[0]], &[round::<F>(p.sqrt())], 1.0, 0.0);
    let e1 = tape.constant(array::<F>(&[2, 1], &[1.0, 0.0]));
    let z = f64s(&l.solve_tril(e1).value());
    assert!(
        z.iter().all(|v| !v.is_nan()),
        "solve_tril of {what} = {lv:?}: {z:?}"
    );
}

fn finite(a: &ArrayD<f64>) -> bool {
    a.iter().all(|v| v.is_finite())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x0b5_f022),
        ..ProptestConfig::default()
    })]

    #[test]
    fn unary(x in extreme()) {
        unary_ops::<f32>(x);
        unary_ops::<f64>(x);
        unary_without_reference::<f32>(x);
        unary_without_reference::<f64>(x);
    }

    #[test]
    fn binary(a in prop::collection::vec(extreme(), 1..7), b in prop::collection::vec(extreme(), 1..7), shapes in 0..SHAPES.len()) {
        binary_ops::<f32>(&a, &b, shapes);
        binary_ops::<f64>(&a, &b, shapes);
    }

    #[test]
    fn reductions_and_normalizations(values in prop::collection::vec(extreme(), 1..13), rows in 0..4usize, cols in 0..4usize) {
        reductions::<f32>(&values, rows, cols);
        reductions::<f64>(&values, rows, cols);
    }

    #[test]
    fn matrix_products(values in prop::collection::vec(extreme(), 1..10), m in 0..3usize, k in 0..3usize, n in 0..3usize) {
        matmul::<f32>(&values, m, k, n);
        matmul::<f64>(&values, m, k, n);
    }

    #[test]
    fn linear_layers(values in prop::collection::vec(extreme(), 1..10), m in 0..3usize, k in 0..3usize, n in 0..3usize, bias in any::<bool>()) {
        linear::<f32>(&values, m, k, n, bias);
        linear::<f64>(&values, m, k, n, bias);
    }

    #[test]
    fn shape_ops_move_values_unchanged(values in prop::collection::vec(extreme(), 6)) {
        shape_ops::<f32>(&values);
        shape_ops::<f64>(&values);
    }

    #[test]
    fn fused_multiply_adds(x in extreme(), a in extreme(), b in extreme()) {
        mul_add::<f32>(x, a, b);
        mul_add::<f64>(x, a, b);
    }

    #[test]
    fn maxima_and_means_along_an_axis(values in prop::collection::vec(extreme(), 1..13), rows in 0..4usize, cols in 0..4usize) {
        maxima_and_axis_means::<f32>(&values, rows, cols);
        maxima_and_axis_means::<f64>(&values, rows, cols);
    }

    #[test]
    fn cholesky_and_triangular_solves(p in extreme(), q in extreme(), r in extreme()) {
        cholesky::<f32>(p, q, r);
        cholesky::<f64>(p, q, r);
    }

    #[test]
    fn binary_cross_entropy(l in extreme(), t in prop::sample::select(vec![0.0, 1.0, 0.5, 0.25, 1e-30, 1.0 - 1e-7, 5e-324])) {
        bce::<f32>(l, t);
        bce::<f64>(l, t);
    }
}
