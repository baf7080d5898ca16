//! Extreme and special values through the ops: accurate f32 sums, NaN that stays NaN, fully
//! masked rows, and derivatives at the edges of their domains. References are exact algebra
//! or f64 sums, stated with each test.

use ndarray::{ArrayD, IxDyn, array};
use rand::SeedableRng;
use stograd::check::{Tolerance, gradcheck};
use stograd::dist::Bernoulli;
use stograd::estimator::EmaBaseline;
use stograd::prelude::Baseline;
use stograd::{Error, Estimator, Tape};

use crate::common::panic_message;

fn filled(n: usize, v: f32) -> ArrayD<f32> {
    ArrayD::from_elem(IxDyn(&[n]), v)
}

/// A running f32 sum of 2·10⁷ ones stalls at 2²⁴ (the mean came out 0.839); pairwise
/// summation is exact here, since every partial sum is an integer below 2²⁴.
#[test]
fn f32_mean_of_many_ones_is_exact() {
    let tape = Tape::<f32>::new();
    let x = tape.constant(filled(20_000_000, 1.0));
    assert_eq!(x.mean().item(), 1.0);
    assert_eq!(x.sum().item(), 2.0e7);
}

/// The sum of 10⁶ copies of 0.1f32 against the exact sum of the same f32 values (in f64,
/// exact: 10⁶ · fl(0.1) needs 44 bits). The pairwise bound is
/// (36 + ⌈log₂ ⌈10⁶/256⌉⌉) ε Σ|x| = 48 · 2⁻²⁴ relative ≈ 2.9·10⁻⁶; a running sum was 1% off.
#[test]
fn f32_sum_of_a_million_tenths_is_within_the_pairwise_bound() {
    let tape = Tape::<f32>::new();
    let got = f64::from(tape.constant(filled(1_000_000, 0.1)).sum().item());
    let exact = 1e6 * f64::from(0.1f32);
    let bound = 48.0 * f64::from(f32::EPSILON) / 2.0;
    assert!(
        ((got - exact) / exact).abs() <= bound,
        "{got} against {exact}"
    );
    // along an axis too: 1000 lanes of 1000 tenths
    let lanes = tape.constant(ArrayD::from_elem(IxDyn(&[1000, 1000]), 0.1f32));
    let per_lane = lanes.sum_axis(1).value();
    let exact = 1000.0 * f64::from(0.1f32);
    for v in per_lane.iter() {
        assert!(((f64::from(*v) - exact) / exact).abs() <= bound, "{v}");
    }
}

/// logsumexp of 10⁷ zeros is ln 10⁷; its sum of e⁰ terms is exact pairwise.
#[test]
fn f32_logsumexp_of_many_zeros_is_ln_n() {
    let tape = Tape::<f32>::new();
    let got = tape.constant(filled(10_000_000, 0.0)).logsumexp().item();
    let want = (1e7f64).ln();
    assert!(
        (f64::from(got) - want).abs() <= 2.0 * f64::from(f32::EPSILON) * want,
        "{got}"
    );
}

#[test]
fn nan_stays_nan_through_relu_and_clamp() {
    let tape = Tape::<f64>::new();
    let x = tape.variable(array![f64::NAN, -1.0, 2.0].into_dyn());
    let r = x.relu().value();
    assert!(r[0].is_nan());
    assert_eq!((r[1], r[2]), (0.0, 2.0));
    let c = x.clamp(0.0, 1.0).value();
    assert!(c[0].is_nan());
    assert_eq!((c[1], c[2]), (0.0, 1.0));
}

/// A row of −∞ logits is an outcome set of probability 0: softmax 0, log-softmax −∞,
/// logsumexp −∞, and gradients that are finite (zero through the masked row).
#[test]
fn fully_masked_rows_give_zero_probabilities_and_finite_gradients() {
    let ninf = f64::NEG_INFINITY;
    let tape = Tape::<f64>::new();
    let x = tape.variable(array![[ninf, ninf, ninf], [0.0, ninf, 1.0]].into_dyn());
    let p = x.softmax(1);
    assert!(
        p.value()
            .index_axis(ndarray::Axis(0), 0)
            .iter()
            .all(|&v| v == 0.0)
    );
    let e = 1f64.exp();
    let want = [1.0 / (1.0 + e), 0.0, e / (1.0 + e)];
    for (got, want) in p.value().index_axis(ndarray::Axis(0), 1).iter().zip(want) {
        assert!((got - want).abs() < 1e-15);
    }
    let logp = x.log_softmax(1).value();
    assert!(
        logp.index_axis(ndarray::Axis(0), 0)
            .iter()
            .all(|&v| v == ninf)
    );
    let lse = x.logsumexp_axis(1);
    assert_eq!(lse.value()[0], ninf);

    let w = tape.constant(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn());
    for (name, loss) in [
        ("softmax", (p * w).sum()),
        // the cost is −∞ (row 0's logsumexp), its gradient is not
        ("logsumexp", lse.sum()),
        ("log_softmax", (x.log_softmax(1) * w).slice(0, 1..2).sum()),
    ] {
        let grads = loss.backward().unwrap();
        let g = grads.wrt(x).unwrap();
        assert!(g.iter().all(|v| v.is_finite()), "{name}: {g}");
    }
}

/// d/dx x⁰ = 0 everywhere, 0 included (it was 0 · 0⁻¹ = NaN).
#[test]
fn the_derivative_of_the_zeroth_power_is_zero_at_zero() {
    let tape = Tape::<f64>::new();
    let x = tape.variable(array![0.0, 2.0].into_dyn());
    let grads = x.powf(0.0).sum().backward().unwrap();
    assert_eq!(grads.wrt(x).unwrap(), array![0.0, 0.0].into_dyn());
}

/// A NaN tolerance passes every comparison, so it passed a wrong gradient; it is an error now.
#[test]
fn gradcheck_refuses_tolerances_that_are_not_finite_or_are_negative() {
    // x² with its gradient cut: the tape's gradient is 1, the true one 2x + 1
    fn wrong<'t>(_: &'t Tape<f64>, x: &[stograd::Var<'t, f64>]) -> stograd::Var<'t, f64> {
        x[0].square().detach() + x[0]
    }
    let input = [array![1.5].into_dyn()];
    for (atol, rtol, step) in [
        (f64::NAN, 1e-5, 1e-6),
        (1e-6, f64::INFINITY, 1e-6),
        (-1.0, 1e-5, 1e-6),
        (1e-6, 1e-5, 0.0),
    ] {
        let tol = Tolerance { atol, rtol, step };
        match gradcheck(wrong, &input, tol) {
            Err(Error::InvalidArgument { .. }) => {}
            other => panic!("{tol:?}: {other:?}"),
        }
    }
    // the same wrong gradient with a valid tolerance is caught
    assert!(gradcheck(wrong, &input, Tolerance::default()).is_err());
}

#[test]
fn a_constant_baseline_must_be_finite() {
    let tape = Tape::<f64>::new();
    let p = Bernoulli::from_logits(tape.variable(array![0.0, 0.0].into_dyn())).unwrap();
    let rng = &mut rand::rngs::StdRng::seed_from_u64(0);
    let estimator = Estimator::ScoreFunction {
        baseline: Baseline::Constant(f64::NAN),
    };
    match tape.sample_with(&p, estimator, rng) {
        Err(Error::InvalidArgument { value, .. }) => assert!(value.is_nan()),
        other => panic!("{other:?}"),
    }
}

/// One NaN cost used to poison an EMA baseline for the rest of the run.
#[test]
fn a_nan_cost_is_an_error_for_an_ema_baseline_and_leaves_it_unchanged() {
    let ema = EmaBaseline::new(0.9).unwrap();
    ema.observe(2.0).unwrap();
    let rng = &mut rand::rngs::StdRng::seed_from_u64(0);
    let tape = Tape::<f64>::new();
    let p = Bernoulli::from_logits(tape.variable(array![0.0, 0.0].into_dyn())).unwrap();
    let estimator = Estimator::ScoreFunction {
        baseline: Baseline::Ema(ema.clone()),
    };
    let b = tape.sample_with(&p, estimator, rng).unwrap();
    let cost = (b * f64::NAN).sum();
    assert!(matches!(
        cost.backward(),
        Err(Error::InvalidArgument { .. })
    ));
    assert_eq!((ema.value(), ema.observed()), (2.0, 1));
}

/// Each use of `x` contributes a finite 10³⁰⁸ to its gradient; their sum overflows, which
/// anomaly mode now reports.
#[test]
fn anomaly_mode_sees_an_overflow_when_gradients_accumulate() {
    let tape = Tape::<f64>::new();
    tape.detect_anomaly(true);
    let x = tape.variable(array![1e-10].into_dyn());
    let y = (x * 1e308 + x * 1e308).sum();
    assert!(y.item().is_finite());
    match y.backward() {
        Err(Error::Anomaly { value, .. }) => assert!(value.is_infinite()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn impossible_sizes_are_clear_panics_not_aborts() {
    let msg = panic_message(|| Tape::<f32>::with_capacity(usize::MAX / 2));
    assert!(
        msg.contains("no memory for") && msg.contains("edge_values.rs"),
        "{msg}"
    );
    let tape = Tape::<f64>::new();
    let x = tape.constant(array![1.0, 2.0].into_dyn());
    let msg = panic_message(|| x.slice(0, ..=usize::MAX));
    assert!(msg.contains("does not fit"), "{msg}");
}

/// An inner dimension of 0 makes an empty sum: a matrix of zeros, and zero gradients.
#[test]
fn an_empty_inner_dimension_gives_zeros() {
    let tape = Tape::<f64>::new();
    let a = tape.variable(ArrayD::zeros(IxDyn(&[2, 0])));
    let b = tape.variable(ArrayD::zeros(IxDyn(&[0, 3])));
    let c = a.matmul(b);
    assert_eq!(c.value(), ArrayD::zeros(IxDyn(&[2, 3])));
    let grads = (c * 2.0).sum().backward().unwrap();
    assert_eq!(grads.wrt(a).unwrap().shape(), &[2, 0]);
    assert_eq!(grads.wrt(b).unwrap().shape(), &[0, 3]);
    let w = tape.variable(ArrayD::zeros(IxDyn(&[3, 0])));
    assert_eq!(a.linear(w, None).value(), ArrayD::zeros(IxDyn(&[2, 3])));
}

/// A NaN in a matrix is named with its index, not reported as "not positive definite".
#[test]
fn cholesky_names_a_non_finite_entry() {
    let tape = Tape::<f64>::new();
    let a = tape.constant(array![[1.0, f64::NAN], [f64::NAN, 1.0]].into_dyn());
    match a.cholesky() {
        Err(e @ Error::InvalidParameter { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("NaN") && msg.contains("[0, 0, 1]"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
}

/// `ln Γ(+∞) = +∞` (found by `tests/fuzz_ops.rs`: the Lanczos sum gave `∞ − ∞ = NaN`, in `f32`
/// for any input above its maximum).
#[test]
fn lgamma_of_infinity_is_infinity() {
    let tape = Tape::<f32>::new();
    let x = tape.constant(array![f32::INFINITY, 1e30].into_dyn());
    let y = x.lgamma().value();
    assert_eq!(y[0], f32::INFINITY);
    // ln Γ(x) = x (ln x − 1) + O(ln x): 6.808·10³¹ at x = 10³⁰, finite in f32
    let want = 1e30 * (30.0 * 10f64.ln() - 1.0);
    assert!(
        (f64::from(y[1]) - want).abs() <= 4.0 * f64::from(f32::EPSILON) * want,
        "{}",
        y[1]
    );
    let tape = Tape::<f64>::new();
    let x = tape.constant(array![f64::INFINITY, 1e300].into_dyn());
    let y = x.lgamma().value();
    assert_eq!(y[0], f64::INFINITY);
    // x (ln x − 1) − ½ ln x + ½ ln 2π at x = 10³⁰⁰, to double precision
    let want = 1e300 * (300.0 * 10f64.ln() - 1.0);
    assert!((y[1] - want).abs() <= 4.0 * f64::EPSILON * want, "{}", y[1]);
}

/// `gelu(−∞) = lim x Φ(x) = 0` and its derivative `Φ(x) + x φ(x) → 0` (found by
/// `tests/fuzz_ops.rs`: both were `−∞ · 0 = NaN`); at `+∞` the value is `+∞`.
#[test]
fn gelu_at_infinity_takes_its_limits() {
    let tape = Tape::<f32>::new();
    let x = tape.variable(array![f32::NEG_INFINITY, f32::INFINITY, -1e30].into_dyn());
    let y = x.gelu();
    let v = y.value();
    assert_eq!((v[0], v[1]), (0.0, f32::INFINITY));
    assert_eq!(v[2], 0.0);
    let g = y.slice(0, 0..1).sum().backward().unwrap();
    assert_eq!(g.wrt(x).unwrap()[0], 0.0);
}

/// `d/dx (eˣ − 1) = eˣ`, accurate where `eˣ − 1` is near −1 (found by `tests/fuzz_ops.rs`:
/// `y + 1` lost 5 digits at `x = −8` in `f32` and every digit below `x ≈ −17`).
#[test]
fn the_derivative_of_expm1_does_not_cancel() {
    let tape = Tape::<f32>::new();
    let x = tape.variable(array![-7.980_507f32, -20.0].into_dyn());
    let g = x.expm1().sum().backward().unwrap();
    for (got, x) in g.wrt(x).unwrap().iter().zip([-7.980_507f64, -20.0]) {
        let want = x.exp();
        assert!(
            (f64::from(*got) - want).abs() <= 2.0 * f64::from(f32::EPSILON) * want,
            "at {x}: {got}, want {want}"
        );
    }
}

/// `∂(x / c)/∂x · g` is `g / c`: it was `g · (1/c)`, and `1/c` overflows for `|c|` below
/// `1/max`, so a zero upstream gradient became `0 · ∞ = NaN` (found by `tests/fuzz.rs`
/// through the relaxed Bernoulli at a temperature of 10⁻⁴⁰ in `f32`).
#[test]
fn dividing_by_a_tiny_scalar_keeps_zero_gradients_zero() {
    let tape = Tape::<f32>::new();
    let x = tape.variable(array![1.0f32, -0.5].into_dyn());
    // sigmoid(±∞) is flat: the gradient is exactly 0
    let g = (x / 1e-40).sigmoid().sum().backward().unwrap();
    assert_eq!(g.wrt(x).unwrap(), array![0.0f32, 0.0].into_dyn());
}

/// A solve `L z = x` with a zero below the diagonal of `L` ignores it, also against an entry of
/// `z` that overflowed: `0 · ∞` made NaN of a log-density that is `−∞` (found by
/// `tests/fuzz.rs`: `N(0, diag(10⁻⁴⁰, 10⁻³⁰))` in `f32` at `(1, 0)`).
#[test]
fn a_solve_ignores_zeros_of_the_factor() {
    use stograd::dist::{Distribution, MultivariateNormal};
    let tape = Tape::<f32>::new();
    let l = tape.constant(array![[1e-40f32, 0.0], [0.0, 1e-30]].into_dyn());
    let q = MultivariateNormal::new(tape.constant(array![0.0f32, 0.0].into_dyn()), l).unwrap();
    // −½ (10⁸⁰ + 0) − ln(10⁻⁷⁰) − ln 2π: beyond f32
    let lp = q.log_prob(tape.constant(array![1.0f32, 0.0].into_dyn()));
    assert_eq!(lp.item(), f32::NEG_INFINITY);
}

/// A multivariate normal's density at an infinite deviation (an infinite `x`, or `x − μ`
/// overflowing) is 0: `log_prob` is −∞, not the NaN of ∞ − ∞ in the solves, with no
/// gradient wrt the location and finite ones wrt the factors; a NaN coordinate stays NaN,
/// and a finite row of the same batch keeps the value and gradient it has alone (the
/// reference).
#[test]
fn multivariate_normals_at_an_infinite_deviation_have_log_density_minus_infinity() {
    use stograd::dist::{Distribution, LowRankMultivariateNormal, MultivariateNormal};
    let max = f32::MAX;
    let inf = f32::INFINITY;
    // (loc, rows, which rows are −∞, which row is finite)
    let cases = [
        (
            array![0.0f32, 0.0],
            array![[inf, 0.0], [-inf, 2.0], [0.5, -0.25]],
            vec![0, 1],
            Some(2),
        ),
        // max − (−max) overflows
        (array![-max, 0.0], array![[max, 1.0]], vec![0], None),
    ];
    for (loc, xs, minus_inf, finite) in cases {
        let tape = Tape::<f32>::new();
        let (lv, lt) = (
            tape.variable(loc.clone()),
            tape.variable(array![[2.0f32, 0.0], [0.5, 1.5]]),
        );
        let (u, diag) = (
            tape.variable(array![[1.0f32], [-0.5]]),
            tape.variable(array![0.5f32, 2.0]),
        );
        let mvn = MultivariateNormal::new(lv, lt).unwrap();
        let low = LowRankMultivariateNormal::new(lv, u, diag).unwrap();
        for (name, d, params) in [
            ("mvn", &mvn as &dyn Distribution<'_, f32>, vec![lv, lt]),
            ("low-rank", &low, vec![lv, u, diag]),
        ] {
            let lp = d.log_prob(tape.constant(xs.clone()));
            let v = lp.value();
            for &r in &minus_inf {
                assert_eq!(v[r], f32::NEG_INFINITY, "{name}, loc {loc}: {v}");
            }
            let nan = d.log_prob(tape.constant(array![f32::NAN, inf])).item();
            assert!(nan.is_nan(), "{name}: a NaN coordinate gives {nan}");
            let grads = lp.sum().backward().unwrap();
            let want = match finite {
                Some(r) => {
                    let row = xs
                        .slice_axis(ndarray::Axis(0), (r..r + 1).into())
                        .to_owned();
                    let alone = d.log_prob(tape.constant(row));
                    assert_eq!(v[r], alone.value()[0], "{name}: the finite row changed");
                    Some(alone.sum().backward().unwrap())
                }
                None => None,
            };
            // the location's gradient is the finite row's (zero from the others); the
            // factors' are finite (the −∞ rows keep their −½ ln det Σ term)
            let g = grads.wrt(lv).unwrap();
            let ok = match &want {
                Some(w) => g.iter().zip(w.wrt(lv).unwrap().iter()).all(|(a, b)| a == b),
                None => g.iter().all(|&a| a == 0.0),
            };
            assert!(ok, "{name}, loc {loc}: gradient {g}");
            for p in &params[1..] {
                let g = grads.wrt(*p).unwrap();
                assert!(
                    g.iter().all(|a| a.is_finite()),
                    "{name}, loc {loc}: gradient {g}"
                );
            }
        }
    }
}

/// The one-hot Concrete density at a temperature near the float maximum, where every
/// `τ ln yₖ` overflows f32 (it was NaN, ∞ − ∞). At the simplex's centre `yₖ = 1/K` the
/// temperature cancels from `Σ sₖ − K·LSE(s)` (`sₖ = lₖ − τ ln yₖ`), so exact algebra gives
/// the reference: `ln (K−1)! + (K−1) ln τ + Σ lₖ − K·LSE(l) + K ln K`, and the gradient
/// `∂/∂lₖ = 1 − K softmax(l)ₖ`.
#[test]
fn the_one_hot_concrete_density_is_finite_at_a_temperature_near_the_maximum() {
    use stograd::dist::{Distribution, OneHotCategorical, RelaxedOneHotCategorical};
    let logits = [0.5f32, -1.0, 2.0, 0.0];
    let l64: Vec<f64> = logits.iter().map(|&v| f64::from(v)).collect();
    let lse = l64.iter().map(|v| v.exp()).sum::<f64>().ln();
    for tau in [3.0e38f32, 1.0e38, 1.0e30] {
        let want = 6f64.ln() + 3.0 * f64::from(tau).ln() + l64.iter().sum::<f64>() - 4.0 * lse
            + 4.0 * 4f64.ln();
        let tape = Tape::<f32>::new();
        let l = tape.variable(ndarray::Array1::from(logits.to_vec()));
        let d =
            RelaxedOneHotCategorical::new(tau, OneHotCategorical::from_logits(l).unwrap()).unwrap();
        let lp = d.log_prob(tape.constant(ndarray::Array1::from_elem(4, 0.25f32)));
        let got = f64::from(lp.item());
        assert!(
            ((got - want) / want).abs() < 4.0 * f64::from(f32::EPSILON),
            "τ {tau}: {got} against {want}"
        );
        let grads = lp.backward().unwrap();
        let g = grads.wrt(l).unwrap();
        for (k, &gk) in g.iter().enumerate() {
            let want = 1.0 - 4.0 * (l64[k] - lse).exp();
            assert!(
                (f64::from(gk) - want).abs() < 8.0 * f64::from(f32::EPSILON),
                "τ {tau}: gradient {g}"
            );
        }
    }
}

/// `bce_with_logits` at an infinite logit takes its limits `l(1 − t)` (at `+∞`) and `−l·t`
/// (at `−∞`): 0 for the matching target, where `max(l, 0) − l·t` was `∞ − ∞ = NaN`
/// (found by `tests/fuzz_ops.rs`); the gradient `σ(l) − t` is finite.
#[test]
fn binary_cross_entropy_at_infinite_logits_takes_its_limits() {
    let inf = f32::INFINITY;
    let tape = Tape::<f32>::new();
    let l = tape.variable(array![inf, inf, -inf, -inf].into_dyn());
    let t = tape.constant(array![1.0f32, 0.5, 0.0, 0.25].into_dyn());
    let loss = l.bce_with_logits(t);
    assert_eq!(loss.value(), array![0.0, inf, 0.0, inf].into_dyn());
    let g = loss.slice(0, 0..1).sum() + loss.slice(0, 2..3).sum();
    let grads = g.backward().unwrap();
    assert_eq!(
        grads.wrt(l).unwrap(),
        &array![0.0f32, 0.0, 0.0, 0.0].into_dyn()
    );
}
