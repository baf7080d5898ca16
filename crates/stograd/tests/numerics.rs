//! Regression tests for numerical defects in the distributions ("no silent wrong value"):
//! each case once returned `±∞` or NaN where the true value is finite (or NaN where it is
//! `+∞`), or lost most of its digits to cancellation.
//!
//! References: `fixtures/numerics.txt`, written by `fixtures/gen_numerics.py` (mpmath at 60
//! digits from the exact binary inputs), or exact algebra where that is simpler. Every changed
//! density and KL is also gradient-checked in `f64`.

use ndarray::{ArrayD, IxDyn, array};
use stograd::dist::kl::kl_divergence;
use stograd::dist::{
    Bernoulli, Categorical, Distribution, Exponential, LowRankMultivariateNormal,
    MultivariateNormal, Normal, OneHotCategorical, RelaxedBernoulli, RelaxedOneHotCategorical,
    Uniform,
};
use stograd::{Scalar, Tape};

use crate::common::{c, check, rng, uniform};

// ---------------------------------------------------------------------------------------------
// The fixture

/// One fixture line: `<case> <dtype> <value> <inputs...>`.
struct Row {
    case: String,
    value: f64,
    inputs: Vec<f64>,
}

/// The fixture's rows for `case` in the precision of `F`.
fn rows<F: Scalar>(case: &str) -> Vec<Row> {
    let dtype = if F::epsilon().as_f64() > 1e-10 {
        "f32"
    } else {
        "f64"
    };
    let num = |s: &str| -> f64 {
        s.parse()
            .unwrap_or_else(|e| panic!("fixture: bad number {s:?}: {e}"))
    };
    let rows: Vec<Row> = include_str!("fixtures/numerics.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f[0] == case && f[1] == dtype)
        .map(|f| Row {
            case: f[0].to_owned(),
            value: num(f[2]),
            inputs: f[3..].iter().map(|s| num(s)).collect(),
        })
        .collect();
    assert!(!rows.is_empty(), "fixture lacks {case} {dtype}");
    rows
}

fn eps<F: Scalar>() -> f64 {
    F::epsilon().as_f64()
}

/// `got` within `ulps` units of `want`'s precision (relative, or absolute below 1: a logarithm
/// near 0 has an absolute error of about `ε`), or both the same infinity.
#[track_caller]
fn assert_rel(what: &str, got: f64, want: f64, ulps: f64, eps: f64) {
    if want.is_infinite() {
        assert_eq!(got, want, "{what}");
    } else {
        assert!(
            (got - want).abs() <= ulps * eps * want.abs().max(1.0),
            "{what}: got {got}, want {want} ({} ulps)",
            (got - want).abs() / (eps * want.abs())
        );
    }
}

fn scalar<'t, F: Scalar>(tape: &'t Tape<'t, F>, v: f64) -> stograd::Var<'t, F> {
    tape.constant(array![c::<F>(v)].into_dyn())
}

// ---------------------------------------------------------------------------------------------
// 1. Uniform: the closed support [low, high], and widths near the float maximum

fn uniform_bounds_are_in_the_support<F: Scalar>() {
    for row in rows::<F>("uniform") {
        let tape = Tape::<F>::new();
        let (lo, hi) = (row.inputs[0], row.inputs[1]);
        let q = Uniform::new(scalar(&tape, lo), scalar(&tape, hi)).unwrap();
        for x in [lo, hi, 0.5 * lo + 0.5 * hi] {
            let lp = q.log_prob(scalar(&tape, x)).value()[0].as_f64();
            // −ln w rounds once (½ ulp) after w = high − low, itself within 1 ulp: 4 ulps
            assert_rel(
                &format!("{} [{lo}, {hi}] at {x}", row.case),
                lp,
                row.value,
                4.0,
                eps::<F>(),
            );
        }
        // H = ln(high − low), finite where high − low overflows
        let h = q.entropy().unwrap().item().as_f64();
        assert_rel("uniform entropy", h, -row.value, 4.0, eps::<F>());
        assert!(q.mean().unwrap().item().is_finite());
        // just outside the support
        let below = F::from_f64(lo).next_down_toward_neg();
        assert_eq!(
            q.log_prob(tape.constant(array![below].into_dyn())).value()[0],
            F::neg_infinity()
        );
    }
}

trait NextDown {
    fn next_down_toward_neg(self) -> Self;
}
impl<F: Scalar> NextDown for F {
    fn next_down_toward_neg(self) -> Self {
        // one ulp below (x ≠ 0)
        self - self.abs() * F::epsilon() - F::min_positive_value()
    }
}

/// Over random intervals, both bounds are in the support: 15–20% of them were `−∞` when the
/// support test was `|x − loc|/scale ≤ 1`.
fn uniform_random_bounds<F: Scalar>() {
    let lows = uniform(&[2000], -10.0, 10.0, 11);
    let widths = uniform(&[2000], 1e-3, 10.0, 12);
    let tape = Tape::<F>::new();
    let lo: ArrayD<F> = lows.mapv(F::from_f64);
    let hi: ArrayD<F> = ndarray::Zip::from(&lo)
        .and(&widths)
        .map_collect(|&l, &w| l + F::from_f64(w));
    let q = Uniform::new(tape.constant(lo.clone()), tape.constant(hi.clone())).unwrap();
    for x in [&lo, &hi] {
        let lp = q.log_prob(tape.constant(x.clone())).value();
        for ((&l, &h), &v) in lo.iter().zip(hi.iter()).zip(lp.iter()) {
            // h − l of two F values is exact in f64 here (exponents within 29 bits)
            let want = -(h.as_f64() - l.as_f64()).ln();
            assert_rel(
                &format!("Uniform({l}, {h})"),
                v.as_f64(),
                want,
                4.0,
                eps::<F>(),
            );
        }
    }
}

fn uniform_gradcheck() {
    let inputs = [array![0.1, -2.0].into_dyn(), array![0.3, 1.5].into_dyn()];
    check("Uniform log_prob", &inputs, |tape, v| {
        let q = Uniform::new(v[0], v[1]).unwrap();
        q.log_prob(tape.constant(array![0.2, 0.0].into_dyn())).sum() + q.entropy().unwrap().sum()
    });
    // far from the float maximum the finite differences mean nothing; the rule is the same
}

// ---------------------------------------------------------------------------------------------
// 2. Low-rank MVN: no cancellation when cov_diag ≪ ‖U‖²

fn low_rank_log_prob_does_not_cancel<F: Scalar>() {
    for row in rows::<F>("lowrank") {
        let v = &row.inputs;
        let (d, r) = (v[0] as usize, v[1] as usize);
        let diag = &v[2..2 + d];
        let u = &v[2 + d..2 + d + d * r];
        let x = &v[2 + d + d * r..];
        let tape = Tape::<F>::new();
        let arr = |shape: &[usize], s: &[f64]| {
            tape.constant(
                ArrayD::from_shape_vec(IxDyn(shape), s.iter().map(|&a| c::<F>(a)).collect())
                    .unwrap(),
            )
        };
        let q = LowRankMultivariateNormal::new(
            arr(&[d], &vec![0.0; d]),
            arr(&[d, r], u),
            arr(&[d], diag),
        )
        .unwrap();
        let lp = q.log_prob(arr(&[d], x)).item().as_f64();
        let h = q.entropy().unwrap().item().as_f64();
        // xᵀΣ⁻¹x = d − 2(log q + H); the reference one uses the computed H, so the comparison
        // isolates the quadratic form.
        let (quad, want) = (d as f64 - 2.0 * (lp + h), d as f64 - 2.0 * (row.value + h));
        // The residual x − Uz is as accurate as the data determine it: relative error
        // ε·κ with κ = ‖D^{-½}x‖/√(xᵀΣ⁻¹x); Woodbury's subtraction had ε·κ² (κ ≈ 10³ here).
        // Plus rounding of log q and H themselves.
        let scaled: f64 = x.iter().zip(diag).map(|(x, d)| x * x / d).sum();
        let kappa = (scaled / want).sqrt();
        let tol = 32.0 * eps::<F>() * (kappa * want + lp.abs() + h.abs());
        assert!(
            (quad - want).abs() <= tol,
            "lowrank d={d} r={r}: quadratic form {quad}, want {want} (tol {tol}, κ {kappa}); log q {lp}, want {}",
            row.value
        );
        assert!(
            kappa > 300.0,
            "the case must be one where Woodbury cancels (κ {kappa}, quad {quad}, want {want}, scaled {scaled}, lp {lp}, h {h})"
        );
    }
}

fn low_rank_gradcheck() {
    let inputs = [
        array![0.1, -0.2, 0.3].into_dyn(),
        array![[1.0, 0.5], [2.0, -1.0], [0.5, 0.25]].into_dyn(),
        array![0.5, 0.25, 1.5].into_dyn(),
        array![[1.0, 2.0, -0.5], [0.3, 0.1, 0.2]].into_dyn(),
    ];
    check("LowRankMultivariateNormal log_prob", &inputs, |_, v| {
        LowRankMultivariateNormal::new(v[0], v[1], v[2])
            .unwrap()
            .log_prob(v[3])
            .sum()
    });
}

/// `KL(p ‖ q)` with a low-rank `q` whose `cov_diag` is `10⁻⁷` (f32) or `10⁻¹²` (f64) against
/// `‖U‖² ≈ 15`, and `p` (low-rank, or a Cholesky MVN) within `√cov_diag` of `q`, so the KL is
/// about 0.2; then ordinary cases with `cov_diag` of order 1.
///
/// Woodbury's trace `Σᵢ (Σₚ)ᵢᵢ/D_qᵢ − ‖K⁻¹WᵀA‖²_F` subtracted two terms of size
/// `‖U‖²/D ≈ 10⁸` (f32) and `10¹³` (f64) whose difference is about `d = 4`. The column-wise
/// sum of squares is backward stable: its error is of order `ε cond` with the componentwise
/// condition number `cond = Σ |xᵢ ∂KL/∂xᵢ|` over every parameter (the residual `Uₚ − U_q z`
/// is as accurate as the data determine it), plus the rounding of the log-determinants
/// (`|Hₚ| + |H_q|`, which cancel between p and q).
///
/// Measured (2026-12-03): at the small `cov_diag`, relative errors 9.8·10⁻⁵ (f32) and
/// 6.2·10⁻¹² (f64) with a low-rank p, 1.9·10⁻⁵ and 1.1·10⁻¹⁰ with a Cholesky p (`cond` ≈
/// 6·10³ and 1.9·10⁶: about 0.03 ε·cond); in the ordinary cases 4–6·10⁻⁷ (f32) and
/// ≤ 1.6·10⁻¹⁵ (f64). Woodbury's difference gave 13.88 for the true 0.2199 in f32 and
/// 0.22138 (0.7% off) in f64.
fn low_rank_kl_does_not_cancel<F: Scalar>() {
    for case in ["kl_lowrank", "kl_tril_lowrank"] {
        for row in rows::<F>(case) {
            let v = &row.inputs;
            let (d, r) = (v[0] as usize, v[1] as usize);
            let tape = Tape::<F>::new();
            let mut vars = Vec::new();
            let mut at = 2;
            let mut take = |shape: &[usize]| {
                let n: usize = shape.iter().product();
                let a = ArrayD::from_shape_vec(
                    IxDyn(shape),
                    v[at..at + n].iter().map(|&a| c::<F>(a)).collect(),
                )
                .unwrap();
                at += n;
                let var = tape.variable(a);
                vars.push(var);
                var
            };
            let low_rank_p = case == "kl_lowrank";
            let loc_p = take(&[d]);
            let p_factor = take(&if low_rank_p { [d, r] } else { [d, d] });
            let p_diag = low_rank_p.then(|| take(&[d]));
            let q = LowRankMultivariateNormal::new(take(&[d]), take(&[d, r]), take(&[d])).unwrap();
            assert_eq!(at, v.len(), "{case}: fixture row length");
            let (kl, h_p) = match p_diag {
                Some(p_diag) => {
                    let p = LowRankMultivariateNormal::new(loc_p, p_factor, p_diag).unwrap();
                    (kl_divergence(&p, &q), p.entropy().unwrap())
                }
                None => {
                    let p = MultivariateNormal::new(loc_p, p_factor).unwrap();
                    (kl_divergence(&p, &q), p.entropy().unwrap())
                }
            };
            let kl = kl.unwrap();
            let grads = kl.backward().unwrap();
            let cond: f64 = vars
                .iter()
                .map(|&x| {
                    let g = grads.wrt(x).unwrap();
                    x.value()
                        .iter()
                        .zip(g)
                        .map(|(x, g)| (x.as_f64() * g.as_f64()).abs())
                        .sum::<f64>()
                })
                .sum();
            let kl = kl.item().as_f64();
            let (h_p, h_q) = (h_p.item().as_f64(), q.entropy().unwrap().item().as_f64());
            let tol = 4.0 * eps::<F>() * (cond + h_p.abs() + h_q.abs() + d as f64);
            let error = (kl - row.value).abs();
            assert!(
                error <= tol,
                "{case}: KL {kl}, want {} (error {error:e} = {:.1} ε·(cond + |Hp| + |Hq| + d), \
                 tol {tol:e}; cond {cond:e}, Hp {h_p}, Hq {h_q})",
                row.value,
                error / (eps::<F>() * (cond + h_p.abs() + h_q.abs() + d as f64))
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Normal–Normal KL in log space

fn normal_kl_is_finite_where_the_value_is<F: Scalar>() {
    for row in rows::<F>("kl_normal") {
        let tape = Tape::<F>::new();
        let s = |v| scalar(&tape, v);
        let i = &row.inputs;
        let p = Normal::new(s(i[0]), s(i[1])).unwrap();
        let q = Normal::new(s(i[2]), s(i[3])).unwrap();
        let kl = kl_divergence(&p, &q).unwrap().item().as_f64();
        // a sum of four terms, each within 2 ulps, with no cancellation beyond the final
        // − ½ (the values here are ≥ 2): 16 ulps
        assert_rel(
            &format!("KL(N({}, {}) ‖ N({}, {}))", i[0], i[1], i[2], i[3]),
            kl,
            row.value,
            16.0,
            eps::<F>(),
        );
    }
}

fn normal_kl_gradcheck() {
    let inputs = [
        array![0.5, -1.0].into_dyn(),
        array![2.0, 0.3].into_dyn(),
        array![-0.25, 0.5].into_dyn(),
        array![0.75, 1.5].into_dyn(),
    ];
    check("Normal KL", &inputs, |_, v| {
        let p = Normal::new(v[0], v[1]).unwrap();
        let q = Normal::new(v[2], v[3]).unwrap();
        kl_divergence(&p, &q).unwrap().sum()
    });
}

// ---------------------------------------------------------------------------------------------
// 4. Categorical and Bernoulli with huge logits (exact algebra)

/// The largest logit magnitude used: `[big, −big]` spreads beyond the float range in `f32`.
fn big<F: Scalar>() -> f64 {
    if eps::<F>() > 1e-10 { 3e38 } else { 1.7e308 }
}

fn categorical_huge_logits<F: Scalar>() {
    let tape = Tape::<F>::new();
    let logits = |a: f64, b: f64| tape.constant(array![c::<F>(a), c::<F>(b)].into_dyn());
    let b = big::<F>();
    for (l0, l1) in [(1e30, 0.0), (b, -b), (0.0, b)] {
        let p = Categorical::from_logits(logits(l0, l1)).unwrap();
        // H = 0 up to e^{−10³⁰}·10³⁰: exactly 0 in floating point
        let h = p.entropy().unwrap().item().as_f64();
        assert_eq!(h, 0.0, "H(Categorical([{l0}, {l1}]))");
        // KL(p ‖ uniform) = ln 2 − H = ln 2; rounds once
        let u = Categorical::from_logits(logits(0.0, 0.0)).unwrap();
        let kl = kl_divergence(&p, &u).unwrap().item().as_f64();
        assert_rel(
            "KL(p ‖ uniform)",
            kl,
            std::f64::consts::LN_2,
            2.0,
            eps::<F>(),
        );
        // KL(p ‖ p) = 0
        assert_eq!(kl_divergence(&p, &p).unwrap().item().as_f64(), 0.0);
    }
    // KL([b, −b] ‖ [−b, b]) = 2b: beyond the range, so +∞ (in f64 too: 3.4e308)
    let p = Categorical::from_logits(logits(b, -b)).unwrap();
    let q = Categorical::from_logits(logits(-b, b)).unwrap();
    assert_eq!(kl_divergence(&p, &q).unwrap().item(), F::infinity());
}

fn bernoulli_huge_logits<F: Scalar>() {
    let tape = Tape::<F>::new();
    let b = big::<F>();
    let bern = |l: f64| Bernoulli::from_logits(scalar(&tape, l)).unwrap();
    // KL(σ(−b) ‖ σ(b)) = −ln σ(−b) − σ(−b)(…) = softplus(b) = b (e^{−b} is below ulp(b))
    let kl = kl_divergence(&bern(-b), &bern(b)).unwrap().item();
    assert_eq!(kl, c::<F>(b));
    let kl = kl_divergence(&bern(b), &bern(-b)).unwrap().item();
    assert_eq!(kl, c::<F>(b));
    assert_eq!(kl_divergence(&bern(b), &bern(b)).unwrap().item(), F::zero());
    let h = bern(b).entropy().unwrap().item();
    assert_eq!(h, F::zero());
}

fn discrete_kl_gradcheck() {
    check(
        "Bernoulli KL",
        &[array![0.3, -2.0].into_dyn(), array![1.5, 0.5].into_dyn()],
        |_, v| {
            kl_divergence(
                &Bernoulli::from_logits(v[0]).unwrap(),
                &Bernoulli::from_logits(v[1]).unwrap(),
            )
            .unwrap()
            .sum()
        },
    );
    check(
        "Categorical KL",
        &[
            array![[0.3, -2.0, 1.0]].into_dyn(),
            array![[1.5, 0.5, -0.5], [0.0, 0.1, 0.2]].into_dyn(),
        ],
        |_, v| {
            let p = Categorical::from_logits(v[0]).unwrap();
            let q = Categorical::from_logits(v[1]).unwrap();
            kl_divergence(&p, &q).unwrap().sum() + p.entropy().unwrap().sum()
        },
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Exponential with a subnormal rate (exact algebra)

fn exponential_subnormal_rate<F: Scalar>() {
    let tape = Tape::<F>::new();
    // 2^-140 (f32) and 2^-1040 (f64) are subnormal, exact, and 1/rate overflows
    let k: i32 = if eps::<F>() > 1e-10 { 140 } else { 1040 };
    let rate = 2f64.powi(-k);
    let q = Exponential::new(scalar(&tape, rate)).unwrap();
    // log q(1) = −k ln 2 − 2^{-k}: the second term is below half an ulp
    let want = -(k as f64) * std::f64::consts::LN_2;
    let lp = q.log_prob(scalar(&tape, 1.0)).value()[0].as_f64();
    // ln of a subnormal: the libm log is within 1 ulp; 4 ulps
    assert_rel("Exponential log_prob", lp, want, 4.0, eps::<F>());
    let h = q.entropy().unwrap().item().as_f64();
    assert_rel("Exponential entropy", h, 1.0 - want, 4.0, eps::<F>());
    assert_eq!(q.rate().value()[0].as_f64(), rate);
    // 1/rate exceeds the range: +∞ is the correct mean and variance
    assert_eq!(q.mean().unwrap().item(), F::infinity());
    assert_eq!(q.variance().unwrap().item(), F::infinity());
    assert_eq!(
        q.log_prob(scalar(&tape, -1.0)).value()[0],
        F::neg_infinity()
    );
}

fn exponential_gradcheck() {
    check(
        "Exponential log_prob",
        &[
            array![0.5, 2.0].into_dyn(),
            array![[0.3, 1.2], [2.0, 0.1]].into_dyn(),
        ],
        |_, v| {
            let q = Exponential::new(v[0]).unwrap();
            q.log_prob(v[1]).sum() + q.entropy().unwrap().sum()
        },
    );
}

for_each_float!(
    uniform_bounds_are_in_the_support,
    uniform_random_bounds,
    low_rank_log_prob_does_not_cancel,
    low_rank_kl_does_not_cancel,
    normal_kl_is_finite_where_the_value_is,
    categorical_huge_logits,
    bernoulli_huge_logits,
    exponential_subnormal_rate,
);

#[test]
fn gradchecks() {
    uniform_gradcheck();
    low_rank_gradcheck();
    normal_kl_gradcheck();
    discrete_kl_gradcheck();
    exponential_gradcheck();
}

// ---------------------------------------------------------------------------------------------
// 5. Relaxed distributions: the density's limit at the boundary; impossible outcomes

/// `log q(0)` and `log q(1)` of the binary Concrete: `−l + (τ − 1) ln y` as `y → 0` gives `+∞`
/// for `τ < 1`, `−∞` for `τ > 1` and `−l` at `τ = 1` (exactly: `q = eˡ/(y + (1 − y)eˡ)²`), and
/// the mirror image at 1. Was NaN (`∞ − ∞`).
fn relaxed_bernoulli_boundary<F: Scalar>() {
    let tape = Tape::<F>::new();
    let l = 0.75;
    let base = || Bernoulli::from_logits(scalar(&tape, l)).unwrap();
    let at = |tau: f64, y: f64| {
        let q = RelaxedBernoulli::new(c::<F>(tau), base()).unwrap();
        q.log_prob(scalar(&tape, y)).item().as_f64()
    };
    assert_eq!(at(0.5, 0.0), f64::INFINITY);
    assert_eq!(at(0.5, 1.0), f64::INFINITY);
    assert_eq!(at(2.0, 0.0), f64::NEG_INFINITY);
    assert_eq!(at(2.0, 1.0), f64::NEG_INFINITY);
    assert_rel("τ = 1 at 0", at(1.0, 0.0), -l, 2.0, eps::<F>());
    assert_rel("τ = 1 at 1", at(1.0, 1.0), l, 2.0, eps::<F>());
    // continuity at τ = 1: ln(eˡ/(y + (1 − y)eˡ)²) near the boundary, rounding only
    let y = 1e-6;
    let want = l - 2.0 * (y + (1.0 - y) * l.exp()).ln();
    assert_rel("τ = 1 near 0", at(1.0, y), want, 16.0, eps::<F>());
    assert_eq!(at(1.0, 1.5), f64::NEG_INFINITY);
}

/// A logistic noise of 40 exceeds the logit of a clamped `p = ε` (−15.9 in f32): the draw of a
/// probability-0 outcome once in 1/ε. It must stay at the boundary, and its hard value 0.
fn impossible_outcomes_are_never_drawn<F: Scalar>() {
    let tape = Tape::<F>::new();
    let probs = tape.constant(array![c::<F>(0.0), c::<F>(1.0), c::<F>(0.5)].into_dyn());
    let q = RelaxedBernoulli::new(c::<F>(0.5), Bernoulli::from_probs(probs).unwrap()).unwrap();
    let noise = tape.constant(array![c::<F>(40.0), c::<F>(-40.0), c::<F>(40.0)].into_dyn());
    let y = q.reparameterize(noise).unwrap().value();
    assert_eq!(y[0], F::min_positive_value());
    assert_eq!(y[1], F::one() - F::epsilon());
    assert!(y[2] > c::<F>(0.5));
    // the hard Gumbel-softmax over many draws (cheap, and also covers the sampling path)
    let b =
        Bernoulli::from_probs(tape.constant(ArrayD::from_elem(IxDyn(&[4096]), F::zero()))).unwrap();
    let mut r = rng(5);
    for _ in 0..8 {
        let hard = b.gumbel_softmax(c::<F>(0.5), true, &mut r).unwrap().value();
        assert!(hard.iter().all(|&v| v == F::zero()));
    }
    // the categorical relaxation: category 0 has probability 0
    let probs = tape.constant(array![[c::<F>(0.0), c::<F>(1.0), c::<F>(3.0)]].into_dyn());
    let q =
        RelaxedOneHotCategorical::new(c::<F>(0.5), OneHotCategorical::from_probs(probs).unwrap())
            .unwrap();
    let noise = tape.constant(array![[c::<F>(200.0), c::<F>(0.0), c::<F>(0.0)]].into_dyn());
    let y = q.reparameterize(noise).unwrap().value();
    assert_eq!(y[[0, 0]], F::min_positive_value());
}

/// The Concrete density on a face of the simplex, where the composed formula was `∞ − ∞`:
/// with `m` zero coordinates it behaves as `ε^{τ(K−m)−m}`, so `−∞`, `+∞`, or (exponent 0) a
/// finite limit, which the interior values approach as the point moves onto the face.
fn relaxed_one_hot_on_the_boundary<F: Scalar>() {
    let tape = Tape::<F>::new();
    let l = [0.2, -0.4, 1.1];
    let log_q = |tau: f64, y: [f64; 3]| {
        let base = OneHotCategorical::from_logits(
            tape.constant(array![c::<F>(l[0]), c::<F>(l[1]), c::<F>(l[2])].into_dyn()),
        )
        .unwrap();
        let q = RelaxedOneHotCategorical::new(c::<F>(tau), base).unwrap();
        let y = tape.constant(array![c::<F>(y[0]), c::<F>(y[1]), c::<F>(y[2])].into_dyn());
        q.log_prob(y).item().as_f64()
    };
    // one zero coordinate, K = 3: exponent 2τ − 1; two (a vertex): τ − 2
    assert_eq!(log_q(1.0, [0.0, 0.3, 0.7]), f64::NEG_INFINITY);
    assert_eq!(log_q(0.25, [0.0, 0.3, 0.7]), f64::INFINITY);
    assert_eq!(log_q(1.0, [1.0, 0.0, 0.0]), f64::INFINITY);
    assert_eq!(log_q(3.0, [0.0, 1.0, 0.0]), f64::NEG_INFINITY);
    assert_eq!(log_q(0.5, [-0.1, 0.4, 0.7]), f64::NEG_INFINITY);
    assert_eq!(log_q(0.5, [0.0, 0.0, 0.0]), f64::NEG_INFINITY);
    assert!(log_q(0.5, [f64::NAN, 0.4, 0.6]).is_nan());

    // exponent 0: τ = ½ on a face, ln 2! + 2 ln ½ + Σl − 3/2 (ln 0.3 + ln 0.7) − 3 l₀
    let face = 2f64.ln() + 2.0 * 0.5f64.ln() + 0.9 - 1.5 * (0.3f64.ln() + 0.7f64.ln()) - 0.6;
    assert_rel("face", log_q(0.5, [0.0, 0.3, 0.7]), face, 8.0, eps::<F>());
    // τ = 2 at a vertex: ln 2 + 2 ln 2 + Σl − 3 ln(e^{l₁} + e^{l₂})
    let lse = (l[1].exp() + l[2].exp()).ln();
    let vertex = 3.0 * 2f64.ln() + 0.9 - 3.0 * lse;
    assert_rel(
        "vertex",
        log_q(2.0, [1.0, 0.0, 0.0]),
        vertex,
        8.0,
        eps::<F>(),
    );
    // the interior approaches both, as δ^min(τ, 1) (f64 only: f32 cannot hold the small δ)
    if eps::<F>() < 1e-10 {
        let mut last = [f64::INFINITY; 2];
        for delta in [1e-4, 1e-6, 1e-8] {
            let errs = [
                (log_q(0.5, [delta, 0.3 - delta / 2.0, 0.7 - delta / 2.0]) - face).abs(),
                (log_q(2.0, [1.0 - 2.0 * delta, delta, delta]) - vertex).abs(),
            ];
            for (e, l) in errs.iter().zip(&mut last) {
                assert!(*e < *l / 5.0, "interior error {e} after {l}");
                *l = *e;
            }
        }
        assert!(last[0] < 2e-3 && last[1] < 1e-7, "{last:?}");
    }
}

/// Gradients on the boundary: finite where the density's limit is finite, never NaN, and a
/// zero incoming gradient contributes nothing even where a local derivative is infinite.
fn relaxed_one_hot_boundary_gradients<F: Scalar>() {
    let tape = Tape::<F>::new();
    let logits = tape.variable(array![c::<F>(0.2), c::<F>(-0.4), c::<F>(1.1)].into_dyn());
    let y = tape.variable(array![c::<F>(0.0), c::<F>(0.3), c::<F>(0.7)].into_dyn());
    let base = OneHotCategorical::from_logits(logits).unwrap();
    let q = RelaxedOneHotCategorical::new(c::<F>(0.5), base).unwrap();
    let g = q.log_prob(y).backward().unwrap();
    // ∂/∂l: 1 − K·1 on the zero coordinate, 1 off it; ∂/∂y = −(τ+1)/y off it
    let dl = g.wrt(logits).unwrap();
    assert_eq!(
        dl.iter().map(|v| v.as_f64()).collect::<Vec<_>>(),
        vec![-2.0, 1.0, 1.0]
    );
    let dy = g.wrt(y).unwrap();
    assert_rel("dy₁", dy[1].as_f64(), -1.5 / 0.3, 4.0, eps::<F>());
    assert!(!dy[0].is_nan());
    let masked = (q.log_prob(y) * tape.constant(ArrayD::zeros(IxDyn(&[]))))
        .backward()
        .unwrap();
    assert!(masked.wrt(y).unwrap().iter().all(|&v| v == F::zero()));
}

fn relaxed_one_hot_gradcheck() {
    check(
        "RelaxedOneHotCategorical log_prob",
        &[
            array![[0.3, -1.2, 0.4], [2.0, 0.1, -0.5]].into_dyn(),
            array![[0.2, 0.5, 0.3], [0.05, 0.15, 0.8]].into_dyn(),
        ],
        |_, v| {
            let base = OneHotCategorical::from_logits(v[0]).unwrap();
            let q = RelaxedOneHotCategorical::new(0.7, base).unwrap();
            q.log_prob(v[1]).sum()
        },
    );
}

fn relaxed_gradcheck() {
    check(
        "RelaxedBernoulli log_prob",
        &[
            array![0.3, -1.2].into_dyn(),
            array![[0.2, 0.7], [0.9, 0.05]].into_dyn(),
        ],
        |_, v| {
            let q = RelaxedBernoulli::new(0.7, Bernoulli::from_logits(v[0]).unwrap()).unwrap();
            q.log_prob(v[1]).sum()
        },
    );
}

for_each_float!(
    relaxed_bernoulli_boundary,
    impossible_outcomes_are_never_drawn,
    relaxed_one_hot_on_the_boundary,
    relaxed_one_hot_boundary_gradients
);

#[test]
fn relaxed_gradchecks() {
    relaxed_gradcheck();
    relaxed_one_hot_gradcheck();
}

/// At a temperature so small that `(l + g)/τ` overflows, the one-hot Concrete draw is the
/// one-hot argmax, its limit (found by `tests/fuzz.rs`: two `+∞` made the softmax NaN).
fn relaxed_one_hot_at_a_tiny_temperature<F: Scalar>() {
    let tape = Tape::<F>::new();
    let logits = tape.variable(array![c::<F>(0.0), c::<F>(0.0), c::<F>(0.0)].into_dyn());
    // a subnormal temperature: (l + g)/τ overflows for |l + g| above about 10⁻¹⁵
    let q = RelaxedOneHotCategorical::new(
        F::min_positive_value() * F::epsilon(),
        OneHotCategorical::from_logits(logits).unwrap(),
    )
    .unwrap();
    for seed in 0..20 {
        let z = tape.sample(&q, &mut rng(seed));
        let v = z.value();
        let ones = v.iter().filter(|&&y| y == F::one()).count();
        assert!(
            ones == 1
                && v.iter()
                    .all(|&y| y == F::one() || y <= F::min_positive_value()),
            "seed {seed}: {v}"
        );
        let g = z.sum().backward().unwrap();
        assert!(g.wrt(logits).unwrap().iter().all(|g| g.is_finite()));
    }
}

/// The low-rank normal's gradient at its mean with a subnormal `cov_diag`: the quadratic form
/// is `(r/√D)²`, whose backward at `r = 0` is 0; `r²/D`'s was `2r · (1/D) = 0 · ∞ = NaN`
/// (found by `tests/fuzz.rs`).
#[test]
fn low_rank_gradient_with_a_subnormal_diagonal() {
    let tape = Tape::<f64>::new();
    let loc = tape.variable(array![0.0, 0.0].into_dyn());
    let u = tape.variable(array![[0.0], [0.0]].into_dyn());
    let diag = tape.variable(array![5e-324, 1.0].into_dyn());
    let q = LowRankMultivariateNormal::new(loc, u, diag).unwrap();
    let lp = q.log_prob(tape.constant(array![0.0, 0.0].into_dyn()));
    let g = lp.backward().unwrap();
    assert_eq!(g.wrt(loc).unwrap(), array![0.0, 0.0].into_dyn());
    assert!(g.wrt(u).unwrap().iter().all(|g| *g == 0.0));
    // ∂/∂D₀ = −1/(2D₀) overflows (correctly −∞); ∂/∂D₁ = −½
    let gd = g.wrt(diag).unwrap();
    assert_eq!((gd[0], gd[1]), (f64::NEG_INFINITY, -0.5));
}

for_each_float!(relaxed_one_hot_at_a_tiny_temperature);
