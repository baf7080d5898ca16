//! The distributions' contract under extreme inputs (±0, subnormals, ±max, ±∞, NaN, ordinary
//! values), in `f32` and `f64`: a constructor either accepts its parameters or returns
//! `InvalidParameter` naming an offending value; an accepted distribution's `log_prob` of any
//! point that is not NaN is never NaN and never `+∞` where the density is bounded, its
//! gradients are never NaN where the value is finite, and its entropy is finite.
//!
//! The values are cast to the float type first, so an `f64` that is finite but overflows `f32`
//! counts as infinite there, as it would for a user.

use ndarray::array;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use stograd::dist::{
    Bernoulli, Categorical, Cauchy, Distribution, Exponential, Laplace, Logistic, Normal, Uniform,
};
use stograd::{Error, Result, Scalar, Tape, Var};

/// Floats that break naive formulas, and ordinary ones around them.
pub(crate) fn extreme() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => prop::sample::select(vec![
            0.0,
            -0.0,
            5e-324,
            -5e-324,
            1e-40,
            f64::MIN_POSITIVE,
            1e-30,
            1e30,
            1e300,
            f64::MAX,
            -f64::MAX,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1.0,
            -1.0,
            0.5,
        ]),
        1 => -10.0..10.0f64,
        1 => any::<f64>(),
    ]
}

fn scalar<'t, F: Scalar>(tape: &'t Tape<'t, F>, v: F) -> Var<'t, F> {
    tape.variable(array![v].into_dyn())
}

/// `a` and `b` are the same value, NaN included.
fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// The constructor's answer fits the rule: accepted exactly when `valid`, and otherwise an
/// `InvalidParameter` whose value is one of `bad`.
fn check_verdict<T>(what: &str, made: &Result<T>, valid: bool, bad: &[f64]) {
    match made {
        Ok(_) => assert!(valid, "{what}: accepted invalid parameters {bad:?}"),
        Err(Error::InvalidParameter { value, .. }) => {
            assert!(!valid, "{what}: rejected valid parameters ({value})");
            assert!(
                bad.iter().any(|&b| same(b, *value)),
                "{what}: the error names {value}, not one of {bad:?}"
            );
        }
        Err(other) => panic!("{what}: unexpected error {other}"),
    }
}

/// `log q(x)` and its gradients wrt `params` are never NaN for a non-NaN `x`, and `log q(x)`
/// is below `+∞` when `bounded`.
fn check_log_prob<'t, F: Scalar, D: Distribution<'t, F>>(
    what: &str,
    d: &D,
    params: &[Var<'t, F>],
    x: Var<'t, F>,
    bounded: bool,
) {
    let xv = x.value();
    if xv.iter().any(|v| v.is_nan()) {
        return;
    }
    let lp = d.log_prob(x).sum();
    let v = lp.item().as_f64();
    assert!(!v.is_nan(), "{what}: log_prob({xv}) is NaN");
    assert!(
        !(bounded && v == f64::INFINITY),
        "{what}: log_prob({xv}) is +∞"
    );
    if v.is_finite() {
        let grads = lp.backward().unwrap();
        for &p in params {
            let g = grads.wrt(p).map(|g| g.to_owned());
            if let Some(g) = g {
                assert!(
                    g.iter().all(|v| !v.is_nan()),
                    "{what}: NaN gradient {g} of log_prob({xv}) = {v}"
                );
            }
        }
    }
}

fn loc_scale<F: Scalar>(loc: f64, scale: f64, x: f64) {
    let (l, s, x) = (F::from_f64(loc), F::from_f64(scale), F::from_f64(x));
    let valid = l.is_finite() && s.is_finite() && s > F::zero();
    let bad = [l.as_f64(), s.as_f64()];
    macro_rules! family {
        ($name:literal, $ty:ident) => {{
            let tape = Tape::<F>::new();
            let (lv, sv) = (scalar(&tape, l), scalar(&tape, s));
            let what = format!("{}({}, {}) in {}", $name, l, s, std::any::type_name::<F>());
            let made = $ty::new(lv, sv);
            check_verdict(&what, &made, valid, &bad);
            if let Ok(d) = made {
                check_log_prob(&what, &d, &[lv, sv], scalar(&tape, x), true);
                let h = d.entropy().unwrap().item().as_f64();
                assert!(h.is_finite(), "{what}: entropy {h}");
            }
        }};
    }
    family!("Normal", Normal);
    family!("Laplace", Laplace);
    family!("Logistic", Logistic);
    family!("Cauchy", Cauchy);
}

fn uniform<F: Scalar>(low: f64, high: f64, x: f64) {
    let (lo, hi, x) = (F::from_f64(low), F::from_f64(high), F::from_f64(x));
    let tape = Tape::<F>::new();
    let (lv, hv) = (scalar(&tape, lo), scalar(&tape, hi));
    let what = format!("Uniform({lo}, {hi})");
    let made = Uniform::new(lv, hv);
    let valid = lo.is_finite() && hi.is_finite() && hi > lo;
    check_verdict(&what, &made, valid, &[lo.as_f64(), hi.as_f64()]);
    if let Ok(d) = made {
        check_log_prob(&what, &d, &[lv, hv], scalar(&tape, x), true);
        let h = d.entropy().unwrap().item().as_f64();
        assert!(h.is_finite(), "{what}: entropy {h}");
    }
}

fn exponential<F: Scalar>(rate: f64, x: f64) {
    let (r, x) = (F::from_f64(rate), F::from_f64(x));
    let tape = Tape::<F>::new();
    let rv = scalar(&tape, r);
    let what = format!("Exponential({r})");
    let made = Exponential::new(rv);
    check_verdict(&what, &made, r.is_finite() && r > F::zero(), &[r.as_f64()]);
    if let Ok(d) = made {
        check_log_prob(&what, &d, &[rv], scalar(&tape, x), true);
        let h = d.entropy().unwrap().item().as_f64();
        assert!(h.is_finite(), "{what}: entropy {h}");
    }
}

fn bernoulli<F: Scalar>(param: f64, one: bool) {
    let p = F::from_f64(param);
    let x = if one { F::one() } else { F::zero() };
    let tape = Tape::<F>::new();
    let pv = scalar(&tape, p);
    for (what, made, valid) in [
        (
            format!("Bernoulli::from_logits({p})"),
            Bernoulli::from_logits(pv),
            p.is_finite(),
        ),
        (
            format!("Bernoulli::from_probs({p})"),
            Bernoulli::from_probs(pv),
            p >= F::zero() && p <= F::one(),
        ),
    ] {
        check_verdict(&what, &made, valid, &[p.as_f64()]);
        if let Ok(d) = made {
            check_log_prob(&what, &d, &[pv], scalar(&tape, x), true);
            let h = d.entropy().unwrap().item().as_f64();
            assert!(h.is_finite() && h >= 0.0, "{what}: entropy {h}");
        }
    }
}

fn categorical<F: Scalar>(logits: [f64; 3], k: usize) {
    let l = logits.map(F::from_f64);
    let tape = Tape::<F>::new();
    let lv = tape.variable(array![l[0], l[1], l[2]].into_dyn());
    let what = format!("Categorical::from_logits({l:?})");
    let made = Categorical::from_logits(lv);
    let valid = l.iter().all(|v| v.is_finite());
    check_verdict(&what, &made, valid, &l.map(|v| v.as_f64()));
    if let Ok(d) = made {
        let x = tape.constant(array![F::from_f64(k as f64)].into_dyn());
        check_log_prob(&what, &d, &[lv], x.reshape(&[]), true);
        let h = d.entropy().unwrap().item().as_f64();
        // ≥ 0 up to the rounding of a sum of three terms
        assert!(
            h.is_finite() && h >= -4.0 * F::epsilon().as_f64(),
            "{what}: entropy {h}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0xf022_5eed),
        ..ProptestConfig::default()
    })]

    #[test]
    fn location_scale_families(loc in extreme(), scale in extreme(), x in extreme()) {
        loc_scale::<f32>(loc, scale, x);
        loc_scale::<f64>(loc, scale, x);
    }

    #[test]
    fn uniform_and_exponential(a in extreme(), b in extreme(), x in extreme()) {
        uniform::<f32>(a, b, x);
        uniform::<f64>(a, b, x);
        exponential::<f32>(a, x);
        exponential::<f64>(a, x);
    }

    #[test]
    fn discrete(a in extreme(), b in extreme(), c in extreme(), k in 0..3usize) {
        bernoulli::<f32>(a, k == 1);
        bernoulli::<f64>(a, k == 1);
        categorical::<f32>([a, b, c], k);
        categorical::<f64>([a, b, c], k);
    }
}
