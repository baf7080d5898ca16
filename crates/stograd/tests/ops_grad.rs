//! Every op's backward rule against central finite differences (`check::gradcheck` in f64), on
//! at least three shapes each with broadcasting included, and forward values against
//! independent closed forms.
//!
//! Inputs stay away from kinks and poles (relu/abs at 0, clamp edges, max ties, log of
//! non-positive values, lgamma poles): a finite-difference step across one is meaningless.

use crate::common::*;
use std::slice::from_ref;

use ndarray::{Array2, ArrayD, Axis, Dimension, IxDyn, array};
use stograd::{Scalar, Tape, Var};

/// Shapes the elementwise and reduction checks run on: 0-d, 1-d, 2-d and 3-d.
const SHAPES: [&[usize]; 4] = [&[], &[5], &[2, 3], &[2, 3, 2]];

// ---------------------------------------------------------------------------------------------
// Arithmetic
// ---------------------------------------------------------------------------------------------

/// Operand shape pairs, most of them broadcasting.
const BROADCAST_PAIRS: [(&[usize], &[usize]); 8] = [
    (&[2, 3], &[2, 3]),
    (&[2, 3], &[3]),
    (&[3], &[2, 3]),
    (&[4, 1, 3], &[2, 1]),
    (&[], &[2, 2]),
    (&[2, 2], &[]),
    (&[3, 1], &[1, 4]),
    (&[2, 1, 1], &[1, 3, 2]),
];

#[test]
fn binary_ops_between_vars_with_broadcasting() {
    for (seed, (sa, sb)) in BROADCAST_PAIRS.into_iter().enumerate() {
        let seed = seed as u64 * 2;
        let a = uniform(sa, -2.0, 2.0, seed);
        // The divisor stays at least 0.5 away from the pole at 0.
        let b = signed_away_from_zero(sb, 0.5, 2.0, seed + 1);
        let inputs = [a.clone(), b.clone()];
        check("add", &inputs, |_, v| v[0] + v[1]);
        check("sub", &inputs, |_, v| v[0] - v[1]);
        check("mul", &inputs, |_, v| v[0] * v[1]);
        check("div", &inputs, |_, v| v[0] / v[1]);

        // Forward: ndarray's own co-broadcasting arithmetic is the reference.
        let tape = Tape::<f64>::new();
        let (x, y) = (tape.constant(a.clone()), tape.constant(b.clone()));
        assert_close(&(x + y).value(), &(&a + &b), 0.0, 0.0);
        assert_close(&(x - y).value(), &(&a - &b), 0.0, 0.0);
        assert_close(&(x * y).value(), &(&a * &b), 0.0, 0.0);
        assert_close(&(x / y).value(), &(&a / &b), 0.0, 0.0);
    }
}

#[test]
fn broadcast_result_shapes_follow_numpy() {
    let tape = Tape::<f64>::new();
    let shape_of = |sa: &[usize], sb: &[usize]| {
        let a = tape.constant(ArrayD::<f64>::zeros(IxDyn(sa)));
        let b = tape.constant(ArrayD::<f64>::zeros(IxDyn(sb)));
        (a * b).shape()
    };
    assert_eq!(shape_of(&[4, 1, 3], &[2, 1]), vec![4, 2, 3]);
    assert_eq!(shape_of(&[], &[2, 2]), vec![2, 2]);
    assert_eq!(shape_of(&[3, 1], &[1, 4]), vec![3, 4]);
}

#[test]
fn broadcast_gradient_sums_over_repeated_axes() {
    // z = Σ (a + b) with a: [2, 3], b: [3]: each bⱼ is used twice, so ∂z/∂b = [2, 2, 2].
    let tape = Tape::<f64>::new();
    let a = tape.variable(ArrayD::<f64>::zeros(IxDyn(&[2, 3])));
    let b = tape.variable(array![1.0, 2.0, 3.0]);
    let grads = (a + b).sum().backward().unwrap();
    assert_eq!(grads.wrt(b).unwrap(), &array![2.0, 2.0, 2.0].into_dyn());
    assert_eq!(grads.wrt(a).unwrap(), &ArrayD::ones(IxDyn(&[2, 3])));
}

#[test]
fn ops_with_scalars_on_either_side() {
    let shapes: [&[usize]; 4] = [&[], &[3], &[2, 3], &[2, 1, 3]];
    for (seed, shape) in shapes.into_iter().enumerate() {
        // Away from 0, where 3 / x has its pole.
        let x = signed_away_from_zero(shape, 0.5, 2.0, 100 + seed as u64);
        let inputs = [x.clone()];
        check("x + 2", &inputs, |_, v| v[0] + 2.0);
        check("2 + x", &inputs, |_, v| 2.0 + v[0]);
        check("x - 2", &inputs, |_, v| v[0] - 2.0);
        check("2 - x", &inputs, |_, v| 2.0 - v[0]);
        check("x * 3", &inputs, |_, v| v[0] * 3.0);
        check("3 * x", &inputs, |_, v| 3.0 * v[0]);
        check("x / 2", &inputs, |_, v| v[0] / 2.0);
        check("3 / x", &inputs, |_, v| 3.0 / v[0]);
        check("-x", &inputs, |_, v| -v[0]);

        let tape = Tape::<f64>::new();
        let v = tape.variable(x.clone());
        let cases = [
            // (label, op, value, d/dx)
            ("x + 2", v + 2.0, x.mapv(|x| x + 2.0), x.mapv(|_| 1.0)),
            ("2 + x", 2.0 + v, x.mapv(|x| 2.0 + x), x.mapv(|_| 1.0)),
            ("x - 2", v - 2.0, x.mapv(|x| x - 2.0), x.mapv(|_| 1.0)),
            ("2 - x", 2.0 - v, x.mapv(|x| 2.0 - x), x.mapv(|_| -1.0)),
            ("x * 3", v * 3.0, x.mapv(|x| x * 3.0), x.mapv(|_| 3.0)),
            ("3 * x", 3.0 * v, x.mapv(|x| 3.0 * x), x.mapv(|_| 3.0)),
            ("x / 2", v / 2.0, x.mapv(|x| x / 2.0), x.mapv(|_| 0.5)),
            // d/dx 3/x = −3/x²
            (
                "3 / x",
                3.0 / v,
                x.mapv(|x| 3.0 / x),
                x.mapv(|x| -3.0 / (x * x)),
            ),
            ("-x", -v, x.mapv(|x| -x), x.mapv(|_| -1.0)),
        ];
        for (label, y, value, derivative) in cases {
            assert_close(&y.value(), &value, 1e-15, 1e-15);
            let grads = y.sum().backward().unwrap();
            let got = grads
                .wrt(v)
                .unwrap_or_else(|| panic!("{label}: no gradient"));
            assert_close(got, &derivative, 1e-15, 1e-14);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Elementwise functions
// ---------------------------------------------------------------------------------------------

/// One elementwise op with its reference value and derivative, computed independently.
struct UnaryCase {
    name: &'static str,
    op: fn(Var<'_, f64>) -> Var<'_, f64>,
    value: fn(f64) -> f64,
    derivative: fn(f64) -> f64,
    inputs: fn(&[usize], u64) -> ArrayD<f64>,
}

fn sigma(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Lower and upper bound of the clamp case.
const CLAMP: (f64, f64) = (-0.5, 0.7);

fn unary_cases() -> Vec<UnaryCase> {
    vec![
        UnaryCase {
            name: "exp",
            op: |x| x.exp(),
            value: f64::exp,
            derivative: f64::exp,
            inputs: |s, seed| uniform(s, -2.0, 2.0, seed),
        },
        UnaryCase {
            name: "log",
            op: |x| x.log(),
            value: f64::ln,
            derivative: |x| 1.0 / x,
            inputs: |s, seed| uniform(s, 0.2, 3.0, seed),
        },
        UnaryCase {
            name: "log1p",
            op: |x| x.log1p(),
            value: |x| (1.0 + x).ln(),
            derivative: |x| 1.0 / (1.0 + x),
            inputs: |s, seed| uniform(s, -0.5, 2.0, seed),
        },
        UnaryCase {
            name: "expm1",
            op: |x| x.expm1(),
            value: |x| x.exp() - 1.0,
            derivative: f64::exp,
            inputs: |s, seed| uniform(s, -2.0, 2.0, seed),
        },
        UnaryCase {
            name: "sqrt",
            op: |x| x.sqrt(),
            value: f64::sqrt,
            derivative: |x| 0.5 / x.sqrt(),
            inputs: |s, seed| uniform(s, 0.2, 3.0, seed),
        },
        UnaryCase {
            name: "square",
            op: |x| x.square(),
            value: |x| x * x,
            derivative: |x| 2.0 * x,
            inputs: |s, seed| uniform(s, -2.0, 2.0, seed),
        },
        UnaryCase {
            name: "powf(2.5)",
            op: |x| x.powf(2.5),
            value: |x| x * x * x.sqrt(),
            derivative: |x| 2.5 * x * x.sqrt(),
            inputs: |s, seed| uniform(s, 0.3, 2.0, seed),
        },
        UnaryCase {
            name: "powf(-1.5)",
            op: |x| x.powf(-1.5),
            value: |x| 1.0 / (x * x.sqrt()),
            derivative: |x| -1.5 / (x * x * x.sqrt()),
            inputs: |s, seed| uniform(s, 0.3, 2.0, seed),
        },
        UnaryCase {
            name: "powf(3) of negatives too",
            op: |x| x.powf(3.0),
            value: |x| x * x * x,
            derivative: |x| 3.0 * x * x,
            inputs: |s, seed| signed_away_from_zero(s, 0.3, 2.0, seed),
        },
        UnaryCase {
            name: "recip",
            op: |x| x.recip(),
            value: |x| 1.0 / x,
            derivative: |x| -1.0 / (x * x),
            inputs: |s, seed| signed_away_from_zero(s, 0.3, 2.0, seed),
        },
        UnaryCase {
            name: "abs",
            op: |x| x.abs(),
            value: |x| if x < 0.0 { -x } else { x },
            derivative: |x| if x < 0.0 { -1.0 } else { 1.0 },
            inputs: |s, seed| signed_away_from_zero(s, 0.1, 2.0, seed),
        },
        UnaryCase {
            name: "sin",
            op: |x| x.sin(),
            value: f64::sin,
            derivative: f64::cos,
            inputs: |s, seed| uniform(s, -3.0, 3.0, seed),
        },
        UnaryCase {
            name: "cos",
            op: |x| x.cos(),
            value: f64::cos,
            derivative: |x| -x.sin(),
            inputs: |s, seed| uniform(s, -3.0, 3.0, seed),
        },
        UnaryCase {
            name: "tanh",
            op: |x| x.tanh(),
            // tanh x = (e²ˣ − 1) / (e²ˣ + 1), tanh' = 1 / cosh² x
            value: |x| ((2.0 * x).exp() - 1.0) / ((2.0 * x).exp() + 1.0),
            derivative: |x| 1.0 / x.cosh().powi(2),
            inputs: |s, seed| uniform(s, -2.0, 2.0, seed),
        },
        UnaryCase {
            name: "sigmoid",
            op: |x| x.sigmoid(),
            value: sigma,
            // σ' = e⁻ˣ / (1 + e⁻ˣ)²
            derivative: |x| (-x).exp() / (1.0 + (-x).exp()).powi(2),
            inputs: |s, seed| uniform(s, -4.0, 4.0, seed),
        },
        UnaryCase {
            name: "log_sigmoid",
            op: |x| x.log_sigmoid(),
            value: |x| sigma(x).ln(),
            // d/dx ln σ(x) = 1 − σ(x)
            derivative: |x| 1.0 - sigma(x),
            inputs: |s, seed| uniform(s, -4.0, 4.0, seed),
        },
        UnaryCase {
            name: "relu",
            op: |x| x.relu(),
            value: |x| if x > 0.0 { x } else { 0.0 },
            derivative: |x| if x > 0.0 { 1.0 } else { 0.0 },
            inputs: |s, seed| signed_away_from_zero(s, 0.1, 2.0, seed),
        },
        UnaryCase {
            name: "leaky_relu",
            op: |x| x.leaky_relu(0.1),
            value: |x| if x > 0.0 { x } else { 0.1 * x },
            derivative: |x| if x > 0.0 { 1.0 } else { 0.1 },
            inputs: |s, seed| signed_away_from_zero(s, 0.1, 2.0, seed),
        },
        UnaryCase {
            name: "elu",
            op: |x| x.elu(1.5),
            value: |x| if x > 0.0 { x } else { 1.5 * (x.exp() - 1.0) },
            derivative: |x| if x > 0.0 { 1.0 } else { 1.5 * x.exp() },
            inputs: |s, seed| signed_away_from_zero(s, 0.1, 2.0, seed),
        },
        UnaryCase {
            name: "gelu",
            op: |x| x.gelu(),
            value: |x| x * reference::normal_cdf(x),
            // Φ(x) + x φ(x)
            derivative: |x| {
                reference::normal_cdf(x)
                    + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
            },
            inputs: |s, seed| uniform(s, -4.0, 4.0, seed),
        },
        UnaryCase {
            name: "softplus",
            op: |x| x.softplus(),
            value: |x| (1.0 + x.exp()).ln(),
            derivative: sigma,
            inputs: |s, seed| uniform(s, -4.0, 4.0, seed),
        },
        UnaryCase {
            name: "lgamma (positive)",
            op: |x| x.lgamma(),
            value: reference::lgamma,
            derivative: reference::digamma,
            inputs: |s, seed| uniform(s, 0.2, 6.0, seed),
        },
        UnaryCase {
            name: "lgamma (negative, between poles)",
            op: |x| x.lgamma(),
            value: reference::lgamma,
            derivative: reference::digamma,
            inputs: |s, seed| away_from(uniform(s, -3.9, -0.1, seed), &[-3.0, -2.0, -1.0], 0.1),
        },
        UnaryCase {
            name: "digamma (positive)",
            op: |x| x.digamma(),
            value: reference::digamma,
            derivative: reference::trigamma,
            inputs: |s, seed| uniform(s, 0.3, 6.0, seed),
        },
        UnaryCase {
            name: "digamma (negative, between poles)",
            op: |x| x.digamma(),
            value: reference::digamma,
            derivative: reference::trigamma,
            inputs: |s, seed| away_from(uniform(s, -3.9, -0.1, seed), &[-3.0, -2.0, -1.0], 0.1),
        },
        UnaryCase {
            name: "clamp",
            op: |x| x.clamp(CLAMP.0, CLAMP.1),
            value: |x| x.max(CLAMP.0).min(CLAMP.1),
            derivative: |x| {
                if (CLAMP.0..=CLAMP.1).contains(&x) {
                    1.0
                } else {
                    0.0
                }
            },
            inputs: |s, seed| away_from(uniform(s, -2.0, 2.0, seed), &[CLAMP.0, CLAMP.1], 0.05),
        },
    ]
}

#[test]
fn elementwise_ops_match_closed_forms_and_finite_differences() {
    for (case_no, case) in unary_cases().iter().enumerate() {
        for (shape_no, shape) in SHAPES.into_iter().enumerate() {
            let seed = 1000 + 10 * case_no as u64 + shape_no as u64;
            let x = (case.inputs)(shape, seed);
            let label = format!("{} on {shape:?}", case.name);

            let tape = Tape::<f64>::new();
            let v = tape.variable(x.clone());
            let y = (case.op)(v);
            assert_close(&y.value(), &x.mapv(case.value), 1e-12, 1e-11);
            let grads = y.sum().backward().unwrap();
            let got = grads
                .wrt(v)
                .unwrap_or_else(|| panic!("{label}: no gradient"));
            assert_close(got, &x.mapv(case.derivative), 1e-12, 1e-10);

            check(&label, &[x], |_, v| (case.op)(v[0]));
        }
    }
}

#[test]
fn kinked_op_inputs_cover_both_sides() {
    // Guards the test above against inputs that never reach one branch of a kink.
    let cases = unary_cases();
    let inputs_of = |name: &str| -> Vec<f64> {
        let index = cases
            .iter()
            .position(|c| c.name == name)
            .expect("case exists");
        (0..SHAPES.len())
            .flat_map(|i| (cases[index].inputs)(SHAPES[i], 1000 + 10 * index as u64 + i as u64))
            .collect()
    };
    for name in ["relu", "abs", "leaky_relu", "elu"] {
        let xs = inputs_of(name);
        assert!(
            xs.iter().any(|&x| x < 0.0) && xs.iter().any(|&x| x > 0.0),
            "{name}"
        );
    }
    let xs = inputs_of("clamp");
    assert!(xs.iter().any(|&x| x < CLAMP.0), "clamp: nothing below");
    assert!(xs.iter().any(|&x| x > CLAMP.1), "clamp: nothing above");
    assert!(
        xs.iter().any(|&x| x > CLAMP.0 && x < CLAMP.1),
        "clamp: nothing inside"
    );
}

#[test]
fn saturating_ops_stay_finite_at_huge_inputs() {
    let tape = Tape::<f64>::new();
    let x = tape.variable(array![-800.0, 800.0]);
    // σ(−800) = e⁻⁸⁰⁰ ≈ 0, σ(800) = 1; softplus(800) = 800; ln σ(−800) = −800
    let sig = x.sigmoid().value();
    assert!(sig[0] >= 0.0 && sig[0] < 1e-300 && sig[1] == 1.0, "{sig}");
    assert_eq!(x.softplus().value(), array![0.0, 800.0].into_dyn());
    assert_eq!(x.log_sigmoid().value(), array![-800.0, 0.0].into_dyn());
    // softplus' = σ, (ln σ)' = 1 − σ
    let grads = (x.softplus() + x.log_sigmoid()).sum().backward().unwrap();
    assert_eq!(grads.wrt(x).unwrap(), &array![1.0, 1.0].into_dyn());
}

#[test]
fn lgamma_and_digamma_known_values() {
    let tape = Tape::<f64>::new();
    let x = tape.constant(array![1.0, 2.0, 5.0, 0.5]);
    // ln Γ(1) = ln Γ(2) = 0, ln Γ(5) = ln 24, ln Γ(1/2) = ln √π
    let want = array![0.0, 0.0, 24f64.ln(), 0.5 * std::f64::consts::PI.ln()].into_dyn();
    assert_close(&x.lgamma().value(), &want, 1e-13, 1e-13);
    // ψ(1) = −γ, ψ(2) = 1 − γ
    let gamma = 0.577_215_664_901_532_9;
    let psi = x.digamma().value();
    assert!((psi[0] + gamma).abs() < 1e-13 && (psi[1] - 1.0 + gamma).abs() < 1e-13);
}

/// Special functions computed independently of the engine: shift the argument up by the
/// recurrences `Γ(x + 1) = x Γ(x)`, `ψ(x + 1) = ψ(x) + 1/x`, `ψ₁(x + 1) = ψ₁(x) − 1/x²` until it
/// is at least 20, then use the Stirling / asymptotic series. Valid for negative non-integers
/// too, since the recurrences hold there.
mod reference {
    use std::f64::consts::PI;

    /// `Φ(x)` by composite Simpson's rule on the density from 0 (error below 1e-14 for
    /// `|x| ≤ 4` with 4,000 intervals).
    pub fn normal_cdf(x: f64) -> f64 {
        let n = 4000;
        let h = x / n as f64;
        let pdf = |t: f64| (-0.5 * t * t).exp() / (2.0 * PI).sqrt();
        let inner: f64 = (1..n)
            .map(|i| if i % 2 == 1 { 4.0 } else { 2.0 } * pdf(i as f64 * h))
            .sum();
        0.5 + h / 3.0 * (pdf(0.0) + inner + pdf(x))
    }

    fn shift(mut x: f64, mut each: impl FnMut(f64)) -> f64 {
        while x < 20.0 {
            each(x);
            x += 1.0;
        }
        x
    }

    pub fn lgamma(x: f64) -> f64 {
        let mut log_product = 0.0;
        let z = shift(x, |x| log_product += x.abs().ln());
        let stirling = (z - 0.5) * z.ln() - z + 0.5 * (2.0 * PI).ln() + 1.0 / (12.0 * z)
            - 1.0 / (360.0 * z.powi(3))
            + 1.0 / (1260.0 * z.powi(5))
            - 1.0 / (1680.0 * z.powi(7));
        stirling - log_product
    }

    pub fn digamma(x: f64) -> f64 {
        let mut sum = 0.0;
        let z = shift(x, |x| sum += 1.0 / x);
        z.ln() - 0.5 / z - 1.0 / (12.0 * z.powi(2)) + 1.0 / (120.0 * z.powi(4))
            - 1.0 / (252.0 * z.powi(6))
            + 1.0 / (240.0 * z.powi(8))
            - sum
    }

    pub fn trigamma(x: f64) -> f64 {
        let mut sum = 0.0;
        let z = shift(x, |x| sum += 1.0 / (x * x));
        1.0 / z + 0.5 / z.powi(2) + 1.0 / (6.0 * z.powi(3)) - 1.0 / (30.0 * z.powi(5))
            + 1.0 / (42.0 * z.powi(7))
            - 1.0 / (30.0 * z.powi(9))
            + sum
    }
}

// ---------------------------------------------------------------------------------------------
// Reductions
// ---------------------------------------------------------------------------------------------

/// `ln Σ eˣ` of a lane, naively (inputs here are moderate).
fn naive_lse(lane: ndarray::ArrayViewD<'_, f64>) -> f64 {
    lane.iter().map(|x| x.exp()).sum::<f64>().ln()
}

#[test]
fn full_reductions() {
    let shapes: [&[usize]; 4] = [&[], &[4], &[2, 3], &[2, 3, 4]];
    for (seed, shape) in shapes.into_iter().enumerate() {
        // Distinct values: max has no ties.
        let x = distinct(shape, 200 + seed as u64);
        let inputs = [x.clone()];
        check("sum", &inputs, |_, v| v[0].sum());
        check("mean", &inputs, |_, v| v[0].mean());
        check("max", &inputs, |_, v| v[0].max());
        check("logsumexp", &inputs, |_, v| v[0].logsumexp());

        let tape = Tape::<f64>::new();
        let v = tape.constant(x.clone());
        let n = x.len() as f64;
        let sum: f64 = x.iter().sum();
        let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
        assert_eq!(v.sum().shape(), Vec::<usize>::new());
        assert!(close(v.sum().item(), sum));
        assert!(close(v.mean().item(), sum / n));
        assert_eq!(v.max().item(), max);
        assert!(close(v.logsumexp().item(), naive_lse(x.view())));
    }
}

#[test]
fn axis_reductions() {
    let shapes: [&[usize]; 3] = [&[4], &[2, 3], &[2, 3, 4]];
    for (seed, shape) in shapes.into_iter().enumerate() {
        let x = distinct(shape, 300 + seed as u64);
        for axis in 0..shape.len() {
            let inputs = [x.clone()];
            check("sum_axis", &inputs, |_, v| v[0].sum_axis(axis));
            check("mean_axis", &inputs, |_, v| v[0].mean_axis(axis));
            check("max_axis", &inputs, |_, v| v[0].max_axis(axis));
            check("logsumexp_axis", &inputs, |_, v| v[0].logsumexp_axis(axis));

            let tape = Tape::<f64>::new();
            let v = tape.constant(x.clone());
            let ax = Axis(axis);
            let max = x.map_axis(ax, |l| l.iter().copied().fold(f64::NEG_INFINITY, f64::max));
            assert_close(&v.sum_axis(axis).value(), &x.sum_axis(ax), 1e-12, 1e-12);
            assert_close(
                &v.mean_axis(axis).value(),
                &x.mean_axis(ax).unwrap(),
                1e-12,
                1e-12,
            );
            assert_close(&v.max_axis(axis).value(), &max, 0.0, 0.0);
            let lse = x.map_axis(ax, |l| naive_lse(l.into_dyn()));
            assert_close(&v.logsumexp_axis(axis).value(), &lse, 1e-12, 1e-12);
        }
    }
}

#[test]
fn max_gradient_goes_to_the_maximum_only() {
    let tape = Tape::<f64>::new();
    let x = tape.variable(array![[1.0, 5.0, 2.0], [7.0, -1.0, 3.0]]);
    let grads = (x.max() + x.max_axis(1).sum()).backward().unwrap();
    // max = x₁₀ = 7; row maxima x₀₁ = 5, x₁₀ = 7
    assert_eq!(
        grads.wrt(x).unwrap(),
        &array![[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]].into_dyn()
    );
}

#[test]
fn logsumexp_of_huge_values_is_finite() {
    let tape = Tape::<f64>::new();
    let x = tape.variable(array![
        [1000.0, 1000.0, -1000.0],
        [-1000.0, -1000.0, -1000.0]
    ]);
    let ln2 = 2f64.ln();
    let ln3 = 3f64.ln();
    // ln(2 e¹⁰⁰⁰ + e⁻¹⁰⁰⁰) = 1000 + ln 2;  ln(3 e⁻¹⁰⁰⁰) = −1000 + ln 3
    let lse = x.logsumexp_axis(1).value();
    assert_close(
        &lse,
        &array![1000.0 + ln2, -1000.0 + ln3].into_dyn(),
        0.0,
        1e-15,
    );
    assert_close(
        &x.logsumexp().value(),
        &ArrayD::from_elem(IxDyn(&[]), 1000.0 + ln2),
        0.0,
        1e-15,
    );
    // ∂/∂x logsumexp = softmax: [½, ½, 0] and [⅓, ⅓, ⅓]. The backward rule forms e^{x − y}
    // with y ≈ 1000 rounded to its ulp (1.1e-13), which bounds the relative error.
    let grads = x.logsumexp_axis(1).sum().backward().unwrap();
    let third = 1.0 / 3.0;
    let want = array![[0.5, 0.5, 0.0], [third, third, third]].into_dyn();
    assert_close(grads.wrt(x).unwrap(), &want, 1e-15, 4e-13);
}

// ---------------------------------------------------------------------------------------------
// Linear algebra
// ---------------------------------------------------------------------------------------------

/// `a @ b` by the definition, for 2-D operands.
fn naive_matmul(a: &ArrayD<f64>, b: &ArrayD<f64>) -> ArrayD<f64> {
    let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
    assert_eq!(b.shape()[0], k);
    Array2::from_shape_fn((m, n), |(i, j)| (0..k).map(|l| a[[i, l]] * b[[l, j]]).sum()).into_dyn()
}

/// `a @ b` with 2-D or batched 3-D operands, by the definition.
fn reference_matmul(a: &ArrayD<f64>, b: &ArrayD<f64>) -> ArrayD<f64> {
    match (a.ndim(), b.ndim()) {
        (2, 2) => naive_matmul(a, b),
        (3, 2) => {
            let parts: Vec<_> = a
                .outer_iter()
                .map(|ai| naive_matmul(&ai.to_owned(), b))
                .collect();
            let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
            ndarray::stack(Axis(0), &views).unwrap()
        }
        (3, 3) => {
            let parts: Vec<_> = a
                .outer_iter()
                .zip(b.outer_iter())
                .map(|(ai, bi)| naive_matmul(&ai.to_owned(), &bi.to_owned()))
                .collect();
            let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
            ndarray::stack(Axis(0), &views).unwrap()
        }
        _ => unreachable!(),
    }
}

#[test]
fn matmul_2d_batched_and_3d() {
    let pairs: [(&[usize], &[usize]); 7] = [
        (&[2, 3], &[3, 4]),
        (&[1, 3], &[3, 1]),
        (&[3, 1], &[1, 2]),
        (&[2, 3, 4], &[4, 2]),
        (&[1, 2, 2], &[2, 3]),
        (&[2, 3, 4], &[2, 4, 5]),
        (&[3, 1, 2], &[3, 2, 2]),
    ];
    for (seed, (sa, sb)) in pairs.into_iter().enumerate() {
        let a = normal(sa, 400 + 2 * seed as u64);
        let b = normal(sb, 401 + 2 * seed as u64);
        check("matmul", &[a.clone(), b.clone()], |_, v| v[0].matmul(v[1]));

        let tape = Tape::<f64>::new();
        let got = tape
            .constant(a.clone())
            .matmul(tape.constant(b.clone()))
            .value();
        assert_close(&got, &reference_matmul(&a, &b), 1e-12, 1e-12);
    }
}

#[test]
fn transpose() {
    let shapes: [&[usize]; 3] = [&[2, 3], &[3, 1], &[2, 3, 4]];
    for (seed, shape) in shapes.into_iter().enumerate() {
        let x = normal(shape, 500 + seed as u64);
        check("t", from_ref(&x), |_, v| v[0].t());
        // t swaps the last two axes: out[.., j, i] = x[.., i, j]
        let tape = Tape::<f64>::new();
        let mut want = x.view();
        want.swap_axes(shape.len() - 2, shape.len() - 1);
        assert_close(
            &tape.constant(x.clone()).t().value(),
            &want.to_owned(),
            0.0,
            0.0,
        );
    }
}

#[test]
fn linear_with_and_without_bias() {
    let xs: [&[usize]; 3] = [&[4, 3], &[2, 4, 3], &[3]];
    for (seed, sx) in xs.into_iter().enumerate() {
        let seed = 600 + 3 * seed as u64;
        let (x, w, b) = (
            normal(sx, seed),
            normal(&[2, 3], seed + 1), // [out, in]
            normal(&[2], seed + 2),
        );
        check(
            "linear with bias",
            &[x.clone(), w.clone(), b.clone()],
            |_, v| v[0].linear(v[1], Some(v[2])),
        );
        check("linear without bias", &[x.clone(), w.clone()], |_, v| {
            v[0].linear(v[1], None)
        });

        // Reference: x as rows of length 3, times wᵀ, plus b on every row.
        let rows = x.to_shape((x.len() / 3, 3)).unwrap().to_owned().into_dyn();
        let wt = w.t().as_standard_layout().into_owned().into_dyn();
        let plain = naive_matmul(&rows, &wt);
        let mut out_shape = sx.to_vec();
        *out_shape.last_mut().unwrap() = 2;
        let plain = plain.into_shape_with_order(IxDyn(&out_shape)).unwrap();
        let tape = Tape::<f64>::new();
        let (xv, wv, bv) = (tape.constant(x), tape.constant(w), tape.constant(b.clone()));
        assert_close(&xv.linear(wv, None).value(), &plain, 1e-12, 1e-12);
        assert_close(
            &xv.linear(wv, Some(bv)).value(),
            &(&plain + &b),
            1e-12,
            1e-12,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Shape ops
// ---------------------------------------------------------------------------------------------

#[test]
fn reshape_and_unsqueeze() {
    let cases: [(&[usize], &[usize]); 4] = [
        (&[2, 3], &[3, 2]),
        (&[6], &[1, 2, 3]),
        (&[], &[1]),
        (&[2, 3, 4], &[4, 6]),
    ];
    for (seed, (from, to)) in cases.into_iter().enumerate() {
        let x = normal(from, 700 + seed as u64);
        check("reshape", from_ref(&x), |_, v| v[0].reshape(to));
        let tape = Tape::<f64>::new();
        let y = tape.constant(x.clone()).reshape(to).value();
        // Row-major order is kept.
        assert_eq!(y.shape(), to);
        assert!(y.iter().eq(x.iter()));
    }
    let cases: [(&[usize], usize, &[usize]); 4] = [
        (&[3], 0, &[1, 3]),
        (&[3], 1, &[3, 1]),
        (&[2, 3], 1, &[2, 1, 3]),
        (&[], 0, &[1]),
    ];
    for (seed, (from, axis, to)) in cases.into_iter().enumerate() {
        let x = normal(from, 710 + seed as u64);
        check("unsqueeze", from_ref(&x), |_, v| v[0].unsqueeze(axis));
        let tape = Tape::<f64>::new();
        assert_eq!(tape.constant(x).unsqueeze(axis).shape(), to);
    }
}

#[test]
fn broadcast_to() {
    let cases: [(&[usize], &[usize]); 4] = [
        (&[3], &[2, 3]),
        (&[2, 1], &[2, 4]),
        (&[], &[2, 2]),
        (&[4, 1, 3], &[2, 4, 5, 3]),
    ];
    for (seed, (from, to)) in cases.into_iter().enumerate() {
        let x = normal(from, 720 + seed as u64);
        check("broadcast_to", from_ref(&x), |_, v| v[0].broadcast_to(to));
        let tape = Tape::<f64>::new();
        let y = tape.constant(x.clone()).broadcast_to(to).value();
        assert_close(&y, &x.broadcast(to).unwrap().to_owned(), 0.0, 0.0);
    }
}

#[test]
fn slice() {
    let x1 = normal(&[5], 730);
    let x2 = normal(&[3, 4], 731);
    let x3 = normal(&[2, 3, 4], 732);
    check("slice 1..4", from_ref(&x1), |_, v| v[0].slice(0, 1..4));
    check("slice axis 1 ..2", from_ref(&x2), |_, v| v[0].slice(1, ..2));
    check("slice axis 0 0..=1", from_ref(&x2), |_, v| {
        v[0].slice(0, 0..=1)
    });
    check("slice axis 2 1..", from_ref(&x3), |_, v| v[0].slice(2, 1..));
    check("empty slice", from_ref(&x2), |_, v| v[0].slice(1, 2..2));

    let tape = Tape::<f64>::new();
    let v = tape.variable(x2.clone());
    assert_close(
        &v.slice(0, 0..=1).value(),
        &x2.slice_axis(Axis(0), ndarray::Slice::from(0..2))
            .to_owned(),
        0.0,
        0.0,
    );
    assert_eq!(v.slice(1, 2..2).shape(), vec![3, 0]);
    // The gradient of Σ x[:, 1..3] is 1 on the slice and 0 elsewhere.
    let grads = v.slice(1, 1..3).sum().backward().unwrap();
    let want = array![
        [0.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, 1.0, 0.0]
    ];
    assert_eq!(grads.wrt(v).unwrap(), &want.into_dyn());
}

#[test]
fn concat() {
    let a = normal(&[2, 3], 740);
    let b = normal(&[2, 3], 741);
    let c = normal(&[2, 1], 742);
    check("concat axis 0", &[a.clone(), b.clone()], |_, v| {
        Var::concat(&[v[0], v[1]], 0)
    });
    check("concat axis 1", &[c.clone(), a.clone()], |_, v| {
        Var::concat(&[v[0], v[1]], 1)
    });
    let parts = [
        normal(&[1, 2, 2], 743),
        normal(&[2, 2, 2], 744),
        normal(&[3, 2, 2], 745),
    ];
    check("concat of three", &parts, |_, v| Var::concat(v, 0));
    check(
        "concat 1-d",
        &[normal(&[3], 746), normal(&[2], 747)],
        |_, v| Var::concat(v, 0),
    );
    // A value joined to itself collects the gradient of both copies.
    check("concat self", from_ref(&a), |_, v| {
        Var::concat(&[v[0], v[0]], 1)
    });

    let tape = Tape::<f64>::new();
    let (va, vc) = (tape.variable(a.clone()), tape.variable(c.clone()));
    let y = Var::concat(&[vc, va], 1).value();
    let want = ndarray::concatenate(Axis(1), &[c.view(), a.view()]).unwrap();
    assert_close(&y, &want, 0.0, 0.0);
    let grads = Var::concat(&[va, va], 0).sum().backward().unwrap();
    // Each element of a appears twice.
    assert_eq!(
        grads.wrt(va).unwrap(),
        &ArrayD::from_elem(IxDyn(&[2, 3]), 2.0)
    );
}

#[test]
fn select_rows_with_repeated_indices() {
    let cases: [(&[usize], &[usize]); 4] = [
        (&[4, 3], &[2, 0, 2, 3, 2]),
        (&[5], &[1, 1, 4]),
        (&[3, 2, 2], &[0, 0]),
        (&[3, 2], &[]),
    ];
    for (seed, (shape, indices)) in cases.into_iter().enumerate() {
        let x = normal(shape, 750 + seed as u64);
        check("select_rows", from_ref(&x), |_, v| {
            v[0].select_rows(indices)
        });
        let tape = Tape::<f64>::new();
        let y = tape.constant(x.clone()).select_rows(indices).value();
        for (out_row, &i) in y.outer_iter().zip(indices) {
            assert_eq!(out_row, x.index_axis(Axis(0), i));
        }
        assert_eq!(y.shape()[0], indices.len());
    }
    // Row 2 is picked three times: its gradient is 3.
    let tape = Tape::<f64>::new();
    let x = tape.variable(normal(&[4, 3], 760));
    let grads = x.select_rows(&[2, 0, 2, 3, 2]).sum().backward().unwrap();
    let want = array![[1.0; 3], [0.0; 3], [3.0; 3], [1.0; 3]].into_dyn();
    assert_eq!(grads.wrt(x).unwrap(), &want);
}

#[test]
fn gather_along_each_axis() {
    let cases: Vec<(ArrayD<f64>, usize, ArrayD<usize>)> = vec![
        (
            normal(&[2, 3], 770),
            1,
            array![[0, 2, 2], [1, 1, 0]].into_dyn(),
        ),
        (
            normal(&[3, 4], 771),
            0,
            array![[2, 0, 1, 2], [0, 0, 2, 1]].into_dyn(),
        ),
        (
            normal(&[2, 3, 2], 772),
            2,
            array![
                [[1, 0, 1], [0, 0, 0], [1, 1, 0]],
                [[0, 1, 1], [1, 0, 0], [0, 0, 1]]
            ]
            .into_dyn(),
        ),
        (normal(&[4], 773), 0, array![3, 3, 0].into_dyn()),
    ];
    for (x, axis, index) in &cases {
        check("gather", from_ref(x), |_, v| v[0].gather(*axis, index));
        // out[p] = x[p with p[axis] replaced by index[p]]
        let mut want = ArrayD::zeros(index.raw_dim());
        for (p, &i) in index.indexed_iter() {
            let mut q = p.slice().to_vec();
            q[*axis] = i;
            want[p] = x[IxDyn(&q)];
        }
        let tape = Tape::<f64>::new();
        assert_close(
            &tape.constant(x.clone()).gather(*axis, index).value(),
            &want,
            0.0,
            0.0,
        );
    }
    // Picking x[0][2] twice and x[0][1] never: gradient counts the picks.
    let tape = Tape::<f64>::new();
    let x = tape.variable(normal(&[2, 3], 774));
    let grads = x
        .gather(1, &array![[2, 2], [0, 1]])
        .sum()
        .backward()
        .unwrap();
    assert_eq!(
        grads.wrt(x).unwrap(),
        &array![[0.0, 0.0, 2.0], [1.0, 1.0, 0.0]].into_dyn()
    );
}

// ---------------------------------------------------------------------------------------------
// Neural-network ops
// ---------------------------------------------------------------------------------------------

#[test]
fn softmax_and_log_softmax_along_every_axis() {
    let shapes: [&[usize]; 3] = [&[4], &[2, 3], &[2, 3, 4]];
    for (seed, shape) in shapes.into_iter().enumerate() {
        let x = normal(shape, 800 + seed as u64) * 2.0;
        for axis in 0..shape.len() {
            check("softmax", from_ref(&x), |_, v| v[0].softmax(axis));
            check("log_softmax", from_ref(&x), |_, v| v[0].log_softmax(axis));

            // softmax(x)ᵢ = eˣⁱ / Σⱼ eˣʲ; log_softmax(x)ᵢ = xᵢ − ln Σⱼ eˣʲ
            let total = x
                .mapv(f64::exp)
                .sum_axis(Axis(axis))
                .insert_axis(Axis(axis));
            let want = &x.mapv(f64::exp) / &total;
            let tape = Tape::<f64>::new();
            let v = tape.constant(x.clone());
            assert_close(&v.softmax(axis).value(), &want, 1e-15, 1e-13);
            assert_close(
                &v.log_softmax(axis).value(),
                &(&x - &total.mapv(f64::ln)),
                1e-13,
                1e-13,
            );
        }
    }
}

/// Softmax lanes sum to 1 and log-softmax lanes exponentiate to 1, in both precisions.
fn softmax_lanes_sum_to_one<F: Scalar>() {
    let x = cast::<F>(&(normal(&[3, 4], 810) * 3.0));
    let tape = Tape::<F>::new();
    let v = tape.constant(x);
    for axis in 0..2 {
        let sums = v.softmax(axis).sum_axis(axis).value();
        let log_sums = v.log_softmax(axis).exp().sum_axis(axis).value();
        for s in sums.iter().chain(log_sums.iter()) {
            assert!((s.as_f64() - 1.0).abs() <= tol::<F>(), "{s}");
        }
    }
}

/// Huge logits neither overflow nor produce NaN, in both precisions.
fn softmax_of_huge_logits_is_finite<F: Scalar>() {
    let tape = Tape::<F>::new();
    let x = var(&tape, &[3], &[1000.0, 0.0, -1000.0]);
    // softmax = [1, e⁻¹⁰⁰⁰, e⁻²⁰⁰⁰] ≈ [1, 0, 0]; log_softmax ≈ [0, −1000, −2000]
    let p = widen(&x.softmax(0).value());
    assert_eq!(p, array![1.0, 0.0, 0.0].into_dyn());
    let lp = widen(&x.log_softmax(0).value());
    assert_eq!(lp, array![0.0, -1000.0, -2000.0].into_dyn());
    // logsumexp = 1000 + ln(1 + e⁻¹⁰⁰⁰ + e⁻²⁰⁰⁰) = 1000
    assert_eq!(x.logsumexp().item().as_f64(), 1000.0);
    let grads = x.log_softmax(0).sum().backward().unwrap();
    // Σᵢ log_softmaxᵢ has gradient 1 − n·softmax = [1 − 3, 1, 1]
    assert_eq!(
        widen(grads.wrt(x).unwrap()),
        array![-2.0, 1.0, 1.0].into_dyn()
    );
}

for_each_float!(softmax_lanes_sum_to_one, softmax_of_huge_logits_is_finite);

#[test]
fn bce_with_logits_against_the_naive_formula() {
    let shapes: [&[usize]; 3] = [&[], &[4], &[2, 3]];
    for (seed, shape) in shapes.into_iter().enumerate() {
        let x = uniform(shape, -3.0, 3.0, 820 + 2 * seed as u64);
        let t = uniform(shape, 0.0, 1.0, 821 + 2 * seed as u64);
        check("bce_with_logits", &[x.clone(), t.clone()], |_, v| {
            v[0].bce_with_logits(v[1])
        });

        let tape = Tape::<f64>::new();
        let (xv, tv) = (tape.variable(x.clone()), tape.variable(t.clone()));
        let loss = xv.bce_with_logits(tv);
        // −t ln σ(x) − (1 − t) ln(1 − σ(x)), stable for |x| ≤ 3
        let naive = ndarray::Zip::from(&x)
            .and(&t)
            .map_collect(|&x, &t| -t * sigma(x).ln() - (1.0 - t) * (1.0 - sigma(x)).ln());
        assert_close(&loss.value(), &naive, 1e-14, 1e-13);
        let grads = loss.sum().backward().unwrap();
        // ∂/∂x = σ(x) − t,  ∂/∂t = ln(1 − σ(x)) − ln σ(x) = −x
        let dx = ndarray::Zip::from(&x)
            .and(&t)
            .map_collect(|&x, &t| sigma(x) - t);
        assert_close(grads.wrt(xv).unwrap(), &dx, 1e-14, 1e-13);
        assert_close(grads.wrt(tv).unwrap(), &x.mapv(|x| -x), 1e-14, 1e-13);
    }
}

#[test]
fn bce_with_logits_is_finite_at_huge_logits() {
    let tape = Tape::<f64>::new();
    let x = tape.variable(array![800.0, -800.0, 800.0]);
    let t = tape.constant(array![0.0, 1.0, 1.0]);
    let loss = x.bce_with_logits(t);
    // Confidently wrong: loss ≈ |x|; confidently right: loss ≈ e⁻⁸⁰⁰ ≈ 0
    assert_eq!(loss.value(), array![800.0, 800.0, 0.0].into_dyn());
    let grads = loss.sum().backward().unwrap();
    // σ(x) − t
    assert_eq!(grads.wrt(x).unwrap(), &array![1.0, -1.0, 0.0].into_dyn());
}

#[test]
fn detach_stops_the_gradient() {
    let tape = Tape::<f64>::new();
    let x = tape.variable(array![0.5, -1.5, 2.0]);
    let d = x.detach().retain_grad();
    assert_eq!(d.value(), x.value());
    assert!(x.requires_grad() && !d.requires_grad());

    // Only through the detached copy: nothing reaches x.
    let grads = d.exp().sum().backward().unwrap();
    assert!(grads.wrt(x).is_none());
    assert!(grads.wrt(d).is_none());

    // y = x · stop(x): ∂y/∂x = stop(x) = x, not 2x.
    let grads = (x * d).sum().backward().unwrap();
    assert_eq!(grads.wrt(x).unwrap(), &x.value());
    assert!(grads.wrt(d).is_none());
}

#[test]
fn detach_of_a_value_independent_of_the_inputs_changes_nothing() {
    // f(x) = (x + stop(c))² with c a constant: ∂f/∂x = 2(x + c), which gradcheck confirms.
    let x = uniform(&[2, 3], -1.0, 1.0, 830);
    check("detach of a constant", &[x], |tape, v| {
        let shift = tape.constant(array![1.0, 2.0, 3.0]).detach();
        (v[0] + shift).square()
    });
}
