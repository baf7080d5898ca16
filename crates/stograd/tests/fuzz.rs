//! The distributions' contract under extreme inputs (±0, subnormals, ±max, ±∞, NaN, ordinary
//! values), in `f32` and `f64`: a constructor either accepts its parameters or returns
//! `InvalidParameter` naming an offending value; an accepted distribution's `log_prob` of any
//! point that is not NaN is never NaN and never `+∞` where the density is bounded, its
//! gradients are never NaN where the value is finite, and its entropy is finite.
//!
//! The same for the multivariate normals (Cholesky and low-rank, `d = 2`) and the relaxed
//! distributions (binary and one-hot Concrete), whose draws must also stay in `[0, 1]` with
//! gradients that are not NaN; their densities are unbounded at the boundary, so `+∞` is allowed
//! there. The ops are fuzzed in `fuzz_ops.rs`.
//!
//! The values are cast to the float type first, so an `f64` that is finite but overflows `f32`
//! counts as infinite there, as it would for a user.

use ndarray::array;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use stograd::dist::{
    Bernoulli, Categorical, Cauchy, Distribution, Exponential, Laplace, Logistic,
    LowRankMultivariateNormal, MultivariateNormal, Normal, OneHotCategorical, RelaxedBernoulli,
    RelaxedOneHotCategorical, Uniform,
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

/// `v` as an `F` array of `shape`.
fn var<'t, F: Scalar>(tape: &'t Tape<'t, F>, shape: &[usize], v: &[f64]) -> Var<'t, F> {
    let a = ndarray::ArrayD::from_shape_vec(shape, v.iter().map(|&x| F::from_f64(x)).collect());
    tape.variable(a.unwrap())
}

/// The values of `v` rounded to `F`.
fn rounded<F: Scalar>(v: &[f64]) -> Vec<f64> {
    v.iter().map(|&x| F::from_f64(x).as_f64()).collect()
}

/// `MultivariateNormal(loc, L)` with `L = [[l00, l01], [l10, l11]]`, `d = 2`.
fn mvn<F: Scalar>(loc: [f64; 2], l: [f64; 4], x: [f64; 2]) {
    let (loc, l, x) = (rounded::<F>(&loc), rounded::<F>(&l), rounded::<F>(&x));
    let tape = Tape::<F>::new();
    let (lv, tv) = (var(&tape, &[2], &loc), var(&tape, &[2, 2], &l));
    let what = format!("MultivariateNormal({loc:?}, {l:?}) in {}", F::NAME);
    let made = MultivariateNormal::new(lv, tv);
    let valid = loc.iter().all(|v| v.is_finite())
        && l[2].is_finite()
        && [l[0], l[3]].iter().all(|&d| d.is_finite() && d > 0.0)
        && l[1] == 0.0;
    check_verdict(
        &what,
        &made,
        valid,
        &[loc.as_slice(), l.as_slice()].concat(),
    );
    // Known limit: when `L`'s condition overflows (max |Lᵢⱼ| / min Lᵢᵢ beyond √max, or a
    // diagonal entry below the smallest normal number) the backward solves overflow and the
    // gradient can be ∞ − ∞ or 0 · ∞ = NaN; the values are still checked.
    let min_diag = l[0].min(l[3]);
    let max_abs = l.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let tiny = min_diag < F::min_positive_value().as_f64()
        || max_abs / min_diag > F::max_value().as_f64().sqrt();
    let params = if tiny { vec![] } else { vec![lv, tv] };
    if let Ok(d) = made {
        check_log_prob(&what, &d, &params, var(&tape, &[2], &x), true);
        let h = d.entropy().unwrap().item().as_f64();
        assert!(h.is_finite(), "{what}: entropy {h}");
    }
}

/// `LowRankMultivariateNormal(loc, U, D)`, `d = 2`, `r = 1`.
fn low_rank<F: Scalar>(loc: [f64; 2], u: [f64; 2], diag: [f64; 2], x: [f64; 2]) {
    let (loc, u, diag, x) = (
        rounded::<F>(&loc),
        rounded::<F>(&u),
        rounded::<F>(&diag),
        rounded::<F>(&x),
    );
    let tape = Tape::<F>::new();
    let (lv, uv, dv) = (
        var(&tape, &[2], &loc),
        var(&tape, &[2, 1], &u),
        var(&tape, &[2], &diag),
    );
    let what = format!(
        "LowRankMultivariateNormal({loc:?}, {u:?}, {diag:?}) in {}",
        F::NAME
    );
    let made = LowRankMultivariateNormal::new(lv, uv, dv);
    let finite = |v: &[f64]| v.iter().all(|v| v.is_finite());
    let valid = finite(&loc) && finite(&u) && diag.iter().all(|&d| d.is_finite() && d > 0.0);
    match &made {
        // the capacitance 1 + Σ Uᵢ²/Dᵢ can overflow for valid parameters: an error, named
        Err(Error::NotPositiveDefinite { .. }) if valid => return,
        _ => check_verdict(&what, &made, valid, &[loc.as_slice(), &u, &diag].concat()),
    }
    if let Ok(d) = made {
        check_log_prob(&what, &d, &[lv, uv, dv], var(&tape, &[2], &x), true);
        let h = d.entropy().unwrap().item().as_f64();
        assert!(h.is_finite(), "{what}: entropy {h}");
    }
}

/// The answer of a relaxed constructor: accepted exactly when the temperature is positive and
/// finite (else `InvalidArgument` naming it) and the base was accepted.
fn check_relaxed<T>(what: &str, made: &Result<T>, temperature: f64) {
    let valid = temperature.is_finite() && temperature > 0.0;
    match made {
        Ok(_) => assert!(valid, "{what}: accepted the temperature {temperature}"),
        Err(Error::InvalidArgument { value, .. }) => {
            assert!(
                !valid && same(*value, temperature),
                "{what}: error names {value}"
            )
        }
        Err(other) => panic!("{what}: unexpected error {other}"),
    }
}

/// A relaxed draw (seeded) lies in `[0, 1]` and its gradients are not NaN.
fn check_draw<'t, F: Scalar, D: Distribution<'t, F>>(what: &str, d: &D, params: &[Var<'t, F>]) {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let tape = params[0].tape();
    let z = tape.sample(d, &mut rng);
    let zv = z.value();
    assert!(
        zv.iter().all(|v| (F::zero()..=F::one()).contains(v)),
        "{what}: draw {zv} outside [0, 1]"
    );
    let grads = z.sum().backward().unwrap();
    for &p in params {
        if let Some(g) = grads.wrt(p) {
            assert!(
                g.iter().all(|v| !v.is_nan()),
                "{what}: NaN gradient {g} of the draw {zv}"
            );
        }
    }
}

fn relaxed_bernoulli<F: Scalar>(temperature: f64, logit: f64, x: f64) {
    let (t, l, x) = (F::from_f64(temperature), F::from_f64(logit), F::from_f64(x));
    let tape = Tape::<F>::new();
    let lv = scalar(&tape, l);
    let what = format!("RelaxedBernoulli({t}, logits {l}) in {}", F::NAME);
    let Ok(base) = Bernoulli::from_logits(lv) else {
        return; // the base's verdict is checked in `discrete`
    };
    let made = RelaxedBernoulli::new(t, base);
    check_relaxed(&what, &made, t.as_f64());
    if let Ok(d) = made {
        check_log_prob(&what, &d, &[lv], scalar(&tape, x), false);
        check_draw(&what, &d, &[lv]);
    }
}

fn relaxed_one_hot<F: Scalar>(temperature: f64, logits: [f64; 3], x: [f64; 3]) {
    let t = F::from_f64(temperature);
    let tape = Tape::<F>::new();
    let lv = var(&tape, &[3], &logits);
    let what = format!(
        "RelaxedOneHotCategorical({t}, logits {:?}) in {}",
        rounded::<F>(&logits),
        F::NAME
    );
    let Ok(base) = OneHotCategorical::from_logits(lv) else {
        return;
    };
    let made = RelaxedOneHotCategorical::new(t, base);
    check_relaxed(&what, &made, t.as_f64());
    if let Ok(d) = &made {
        check_log_prob(&what, d, &[lv], var(&tape, &[3], &x), false);
    }
    if let Ok(d) = made {
        check_draw(&what, &d, &[lv]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x0f22_6a55),
        ..ProptestConfig::default()
    })]

    #[test]
    fn multivariate_normals(
        a in prop::array::uniform2(extreme()),
        l in prop::array::uniform4(extreme()),
        upper_zero in any::<bool>(),
        x in prop::array::uniform2(extreme()),
    ) {
        let l = [l[0], if upper_zero { 0.0 } else { l[1] }, l[2], l[3]];
        mvn::<f32>(a, l, x);
        mvn::<f64>(a, l, x);
        low_rank::<f32>(a, [l[0], l[2]], [l[1], l[3]], x);
        low_rank::<f64>(a, [l[0], l[2]], [l[1], l[3]], x);
    }

    #[test]
    fn relaxed(t in extreme(), l in prop::array::uniform3(extreme()), x in prop::array::uniform3(extreme())) {
        relaxed_bernoulli::<f32>(t, l[0], x[0]);
        relaxed_bernoulli::<f64>(t, l[0], x[0]);
        relaxed_one_hot::<f32>(t, l, x);
        relaxed_one_hot::<f64>(t, l, x);
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
