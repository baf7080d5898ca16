//! `MultivariateNormal` and `LowRankMultivariateNormal`: reference values from scipy, the
//! low-rank form against the dense Cholesky form, finite-difference gradient checks of every
//! differentiable quantity, Monte Carlo checks of closed-form pathwise gradients and of the
//! sample covariance, and every validation error.
//!
//! Seed policy: every random array comes from `StdRng::seed_from_u64` with a seed written in
//! the test, so a failure reproduces exactly. Statistical tolerances are a fixed number of
//! standard errors, each estimated from the same samples. The scipy values live in
//! `fixtures/mvn.txt`, written by `fixtures/gen_mvn.py` (run it to regenerate).

use ndarray::{Array2, ArrayD, Axis, Dimension, Ix2, Ix3, IxDyn, array};
use stograd::dist::kl::kl_divergence;
use stograd::dist::{Distribution, LowRankMultivariateNormal, MultivariateNormal, Normal};
use stograd::{Error, Estimator, Scalar, Tape, Var};

use crate::common::{assert_close, cast, check, panic_message, rng, widen};

// ---------------------------------------------------------------------------------------------
// Fixtures

/// One `case` block of `fixtures/mvn.txt`.
struct Case {
    name: String,
    arrays: Vec<(String, ArrayD<f64>)>,
}

impl Case {
    fn get(&self, key: &str) -> &ArrayD<f64> {
        self.arrays
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, a)| a)
            .unwrap_or_else(|| panic!("case {} has no array {key}", self.name))
    }

    fn has(&self, key: &str) -> bool {
        self.arrays.iter().any(|(k, _)| k == key)
    }
}

/// Parses `KEY [d0,d1,..] v0 v1 ..` lines between `case NAME` and `end`.
fn fixtures() -> Vec<Case> {
    let text = include_str!("fixtures/mvn.txt");
    let mut cases = Vec::new();
    let mut current: Option<Case> = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix("case ") {
            current = Some(Case {
                name: name.to_owned(),
                arrays: Vec::new(),
            });
        } else if line == "end" {
            cases.push(current.take().expect("`end` closes an open case"));
        } else {
            let mut tokens = line.split_whitespace();
            let key = tokens.next().expect("a key").to_owned();
            let shape = tokens.next().expect("a shape");
            let shape: Vec<usize> = shape
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().expect("a dimension"))
                .collect();
            let values: Vec<f64> = tokens.map(|t| t.parse().expect("a number")).collect();
            let array = ArrayD::from_shape_vec(IxDyn(&shape), values).expect("shape fits values");
            current
                .as_mut()
                .expect("inside a case")
                .arrays
                .push((key, array));
        }
    }
    assert!(current.is_none(), "unterminated case");
    cases
}

fn fixture(name: &str) -> Case {
    fixtures()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name} in fixtures/mvn.txt"))
}

/// Either Gaussian, so a test can build `p` and `q` from a fixture's keys.
enum Gauss<'t, F: Scalar> {
    Full(MultivariateNormal<'t, F>),
    LowRank(LowRankMultivariateNormal<'t, F>),
}

impl<'t, F: Scalar> Gauss<'t, F> {
    /// From `{prefix}loc` and `{prefix}scale_tril`, or `{prefix}cov_factor`/`{prefix}cov_diag`,
    /// each made a leaf by `leaf`.
    fn from_case(
        case: &Case,
        prefix: &str,
        mut leaf: impl FnMut(&ArrayD<f64>) -> Var<'t, F>,
    ) -> Self {
        let key = |k: &str| format!("{prefix}{k}");
        let loc = leaf(case.get(&key("loc")));
        if case.has(&key("scale_tril")) {
            let l = leaf(case.get(&key("scale_tril")));
            Gauss::Full(MultivariateNormal::new(loc, l).unwrap())
        } else {
            let u = leaf(case.get(&key("cov_factor")));
            let d = leaf(case.get(&key("cov_diag")));
            Gauss::LowRank(LowRankMultivariateNormal::new(loc, u, d).unwrap())
        }
    }

    fn log_prob(&self, x: Var<'t, F>) -> Var<'t, F> {
        match self {
            Gauss::Full(g) => g.log_prob(x),
            Gauss::LowRank(g) => g.log_prob(x),
        }
    }

    fn entropy(&self) -> Var<'t, F> {
        match self {
            Gauss::Full(g) => g.entropy(),
            Gauss::LowRank(g) => g.entropy(),
        }
        .unwrap()
    }
}

fn kl<'t, F: Scalar>(p: &Gauss<'t, F>, q: &Gauss<'t, F>) -> stograd::Result<Var<'t, F>> {
    match (p, q) {
        (Gauss::Full(p), Gauss::Full(q)) => kl_divergence(p, q),
        (Gauss::Full(p), Gauss::LowRank(q)) => kl_divergence(p, q),
        (Gauss::LowRank(p), Gauss::Full(q)) => kl_divergence(p, q),
        (Gauss::LowRank(p), Gauss::LowRank(q)) => kl_divergence(p, q),
    }
}

/// Ones on and below the diagonal: multiplying a free matrix by it keeps a gradient check's
/// perturbations of the upper triangle from breaking `scale_tril`'s validation (they then have
/// zero effect and zero gradient, which the check also verifies).
fn tril_mask(d: usize) -> ArrayD<f64> {
    Array2::from_shape_fn((d, d), |(i, j)| if j <= i { 1.0 } else { 0.0 }).into_dyn()
}

/// `MultivariateNormal::new(loc, l ⊙ tril_mask)`: a free matrix made a valid factor.
fn masked<'t>(t: &'t Tape<f64>, loc: Var<'t, f64>, l: Var<'t, f64>) -> MultivariateNormal<'t, f64> {
    let mask = tril_mask(l.shape()[l.ndim() - 1]);
    MultivariateNormal::new(loc, l * t.constant(mask)).unwrap()
}

/// `Σ v_k²` over a `[.., d, d]` gradient's strictly upper entries.
fn upper_sq(a: &ArrayD<f64>) -> f64 {
    let nd = a.ndim();
    a.indexed_iter()
        .filter(|(i, _)| i[nd - 1] > i[nd - 2])
        .map(|(_, v)| v * v)
        .sum()
}

/// The relative tolerance of a reference comparison: 1e-10 in `f64` (the values agree to about
/// 1e-14), about 80 ulps in `f32` (they agree to about 2e-7).
fn ref_tol<F: Scalar>() -> f64 {
    if F::NAME == "f64" { 1e-10 } else { 1e-5 }
}

// ---------------------------------------------------------------------------------------------
// Reference values (scipy) and the low-rank / dense agreement

fn reference_log_prob_and_entropy<F: Scalar>() {
    let tol = ref_tol::<F>();
    for name in ["mvn", "mvn_batched", "low_rank", "low_rank_batched"] {
        let case = fixture(name);
        let tape = Tape::<F>::new();
        let g = Gauss::from_case(&case, "", |a| tape.constant(cast::<F>(a)));
        let x = tape.constant(cast::<F>(case.get("x")));
        let lp = widen(&g.log_prob(x).value());
        // log N(x; μ, Σ) from scipy.stats.multivariate_normal.logpdf
        assert_close(&lp, case.get("log_prob"), tol, tol);
        // ½ ln det(2πeΣ) from scipy's .entropy()
        assert_close(&widen(&g.entropy().value()), case.get("entropy"), tol, tol);
    }
}

fn reference_kl<F: Scalar>() {
    let tol = ref_tol::<F>();
    for name in [
        "kl_mvn_mvn",
        "kl_mvn_low_rank",
        "kl_low_rank_mvn",
        "kl_low_rank_low_rank",
    ] {
        let case = fixture(name);
        let tape = Tape::<F>::new();
        let p = Gauss::from_case(&case, "p_", |a| tape.constant(cast::<F>(a)));
        let q = Gauss::from_case(&case, "q_", |a| tape.constant(cast::<F>(a)));
        // ½[tr(Σq⁻¹Σp) + δᵀΣq⁻¹δ − d + ln det Σq − ln det Σp], dense numpy
        let got = widen(&kl(&p, &q).unwrap().value());
        assert_close(&got, case.get("kl"), tol, tol);
    }
}

for_each_float!(reference_log_prob_and_entropy, reference_kl);

/// `LowRankMultivariateNormal(μ, U, D)` and `MultivariateNormal::from_covariance(μ, D + UUᵀ)`
/// are the same distribution.
#[test]
fn low_rank_matches_dense_cholesky() {
    let tol = 1e-10;
    for name in ["low_rank", "low_rank_batched"] {
        let case = fixture(name);
        let tape = Tape::<f64>::new();
        let c = |k: &str| tape.constant(case.get(k).clone());
        let lr = LowRankMultivariateNormal::new(c("loc"), c("cov_factor"), c("cov_diag")).unwrap();
        let dense = MultivariateNormal::from_covariance(c("loc"), lr.covariance_matrix()).unwrap();
        let x = c("x");
        assert_close(
            &lr.log_prob(x).value(),
            &dense.log_prob(x).value(),
            tol,
            tol,
        );
        assert_close(
            &lr.entropy().unwrap().value(),
            &dense.entropy().unwrap().value(),
            tol,
            tol,
        );
        assert_close(
            &lr.mean().unwrap().value(),
            &dense.mean().unwrap().value(),
            0.0,
            0.0,
        );
        let var = lr.variance().unwrap().value();
        assert_close(&var, &dense.variance().unwrap().value(), tol, tol);
        // the covariance built independently: D + U Uᵀ, entry by entry
        let (u, dg) = (case.get("cov_factor"), case.get("cov_diag"));
        let cov = lr.covariance_matrix().value();
        let batched = u.ndim() == 3;
        let u3 = if batched {
            u.clone()
        } else {
            u.clone().insert_axis(Axis(0))
        };
        let u3 = u3.into_dimensionality::<Ix3>().unwrap();
        for (idx, &v) in cov.indexed_iter() {
            let nd = idx.ndim();
            let (b, i, j) = (if batched { idx[0] } else { 0 }, idx[nd - 2], idx[nd - 1]);
            let uu: f64 = (0..u3.dim().2).map(|k| u3[[b, i, k]] * u3[[b, j, k]]).sum();
            let want = uu + if i == j { dg[[i]] } else { 0.0 };
            assert!(
                (v - want).abs() < 1e-14,
                "{name} Σ{:?}: {v} vs {want}",
                idx.slice()
            );
        }

        // KL in all four forms agrees: KL(lr ‖ lr') = KL(dense ‖ dense') = the mixed ones
        let shift = |k: &str, by: f64| tape.constant(case.get(k).mapv(|v| v * by + 0.1));
        let lr2 = LowRankMultivariateNormal::new(
            shift("loc", 0.5),
            shift("cov_factor", -1.3),
            shift("cov_diag", 2.0),
        )
        .unwrap();
        let dense2 =
            MultivariateNormal::from_covariance(lr2.loc(), lr2.covariance_matrix()).unwrap();
        let want = kl_divergence(&dense, &dense2).unwrap().value();
        for got in [
            kl_divergence(&lr, &lr2).unwrap().value(),
            kl_divergence(&lr, &dense2).unwrap().value(),
            kl_divergence(&dense, &lr2).unwrap().value(),
        ] {
            assert_close(&got, &want, tol, tol);
        }
        // KL(p ‖ p) = 0
        assert_close(
            &kl_divergence(&lr, &lr).unwrap().value(),
            &(&want * 0.0),
            1e-12,
            0.0,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Gradient checks (f64, central differences, default tolerance)

#[test]
fn gradcheck_mvn_log_prob() {
    for name in ["mvn", "mvn_batched"] {
        let case = fixture(name);
        let inputs = ["loc", "scale_tril", "x"].map(|k| case.get(k).clone());
        // w.r.t. loc, scale_tril (its lower triangle; the upper one has zero gradient) and x
        check(&format!("{name} log_prob"), &inputs, |t, v| {
            masked(t, v[0], v[1]).log_prob(v[2])
        });
    }
}

#[test]
fn gradcheck_mvn_unconstrained_and_covariance() {
    let case = fixture("mvn");
    let (loc, x) = (case.get("loc").clone(), case.get("x").clone());
    // every entry of raw, including the ignored upper triangle (gradient 0)
    let raw = array![
        [0.3, 0.7, -2.0, 5.0],
        [-0.4, -0.2, 1.1, 0.0],
        [0.9, 0.25, 0.1, -3.0],
        [0.2, -0.6, 0.5, 0.4]
    ]
    .into_dyn();
    check(
        "from_unconstrained log_prob",
        &[loc.clone(), raw.clone(), x.clone()],
        |_, v| {
            MultivariateNormal::from_unconstrained(v[0], v[1])
                .unwrap()
                .log_prob(v[2])
        },
    );
    // the gradient reaching raw's upper triangle is exactly zero
    let tape = Tape::<f64>::new();
    let r = tape.variable(raw);
    let q = MultivariateNormal::from_unconstrained(tape.constant(loc.clone()), r).unwrap();
    let grads = q
        .log_prob(tape.constant(x.clone()))
        .sum()
        .backward()
        .unwrap();
    assert_eq!(upper_sq(grads.wrt(r).unwrap()), 0.0);

    // through the Cholesky op: w.r.t. the covariance itself
    let l = case
        .get("scale_tril")
        .clone()
        .into_dimensionality::<Ix2>()
        .unwrap();
    let cov = l.dot(&l.t()).into_dyn();
    check("from_covariance log_prob", &[loc, cov, x], |_, v| {
        MultivariateNormal::from_covariance(v[0], v[1])
            .unwrap()
            .log_prob(v[2])
    });
}

#[test]
fn gradcheck_low_rank_log_prob() {
    for name in ["low_rank", "low_rank_batched"] {
        let case = fixture(name);
        let inputs = ["loc", "cov_factor", "cov_diag", "x"].map(|k| case.get(k).clone());
        check(&format!("{name} log_prob"), &inputs, |_, v| {
            LowRankMultivariateNormal::new(v[0], v[1], v[2])
                .unwrap()
                .log_prob(v[3])
        });
    }
}

#[test]
fn gradcheck_rsample_with_fixed_noise() {
    for name in ["mvn", "mvn_batched"] {
        let case = fixture(name);
        let (loc, l) = (case.get("loc").clone(), case.get("scale_tril").clone());
        let d = l.shape()[l.ndim() - 1];
        let batch = &loc.shape()[..loc.ndim() - 1];
        let eps = crate::common::normal(&[batch, &[d]].concat(), 11);
        // z = μ + Lε, w.r.t. μ and L
        check(&format!("{name} rsample"), &[loc.clone(), l], |t, v| {
            let q = masked(t, v[0], v[1]);
            q.reparameterize(t.constant(eps.clone())).unwrap()
        });
        let raw = crate::common::uniform(&[batch, &[d, d]].concat(), -1.0, 1.0, 12);
        check(
            &format!("{name} rsample (unconstrained)"),
            &[loc, raw],
            |t, v| {
                let q = MultivariateNormal::from_unconstrained(v[0], v[1]).unwrap();
                q.reparameterize(t.constant(eps.clone())).unwrap()
            },
        );
    }
    for name in ["low_rank", "low_rank_batched"] {
        let case = fixture(name);
        let inputs = ["loc", "cov_factor", "cov_diag"].map(|k| case.get(k).clone());
        let (d, r) = (
            inputs[1].shape()[inputs[1].ndim() - 2],
            inputs[1].shape()[inputs[1].ndim() - 1],
        );
        let batch = &inputs[0].shape()[..inputs[0].ndim() - 1];
        let eps = crate::common::normal(&[batch, &[d + r]].concat(), 13);
        // z = μ + D^½ε₁ + Uε₂, w.r.t. μ, U and D
        check(&format!("{name} rsample"), &inputs, |t, v| {
            let q = LowRankMultivariateNormal::new(v[0], v[1], v[2]).unwrap();
            q.reparameterize(t.constant(eps.clone())).unwrap()
        });
    }
}

#[test]
fn gradcheck_entropy_variance_covariance() {
    for name in ["mvn", "mvn_batched"] {
        let case = fixture(name);
        let inputs = [case.get("loc").clone(), case.get("scale_tril").clone()];
        check(&format!("{name} entropy"), &inputs, |t, v| {
            masked(t, v[0], v[1]).entropy().unwrap()
        });
        check(&format!("{name} variance"), &inputs, |t, v| {
            masked(t, v[0], v[1]).variance().unwrap()
        });
        check(&format!("{name} covariance_matrix"), &inputs, |t, v| {
            masked(t, v[0], v[1]).covariance_matrix()
        });
    }
    for name in ["low_rank", "low_rank_batched"] {
        let case = fixture(name);
        let inputs = ["loc", "cov_factor", "cov_diag"].map(|k| case.get(k).clone());
        check(&format!("{name} entropy"), &inputs, |_, v| {
            LowRankMultivariateNormal::new(v[0], v[1], v[2])
                .unwrap()
                .entropy()
                .unwrap()
        });
        check(&format!("{name} variance"), &inputs, |_, v| {
            LowRankMultivariateNormal::new(v[0], v[1], v[2])
                .unwrap()
                .variance()
                .unwrap()
        });
        check(&format!("{name} covariance_matrix"), &inputs, |_, v| {
            LowRankMultivariateNormal::new(v[0], v[1], v[2])
                .unwrap()
                .covariance_matrix()
        });
    }
}

#[test]
fn gradcheck_kl_every_pair() {
    for name in [
        "kl_mvn_mvn",
        "kl_mvn_low_rank",
        "kl_low_rank_mvn",
        "kl_low_rank_low_rank",
    ] {
        let case = fixture(name);
        // every parameter of both sides, in the fixture's order
        let keys: Vec<&str> = case
            .arrays
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| *k != "kl")
            .collect();
        let inputs: Vec<ArrayD<f64>> = keys.iter().map(|k| case.get(k).clone()).collect();
        check(name, &inputs, |t, v| {
            let mut next = v.iter().zip(&keys);
            let mut leaf = |a: &ArrayD<f64>| {
                let (var, key) = next.next().expect("one input per key");
                if key.ends_with("scale_tril") {
                    *var * t.constant(tril_mask(a.shape()[a.ndim() - 1]))
                } else {
                    *var
                }
            };
            let p = Gauss::from_case(&case, "p_", &mut leaf);
            let q = Gauss::from_case(&case, "q_", &mut leaf);
            kl(&p, &q).unwrap()
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Monte Carlo: closed-form pathwise gradients and sample moments

/// The mean over axis 0 of per-draw values and its standard error `sd / √N`.
fn mean_and_se(draws: &ArrayD<f64>) -> (ArrayD<f64>, ArrayD<f64>) {
    let n = draws.shape()[0] as f64;
    let mean = draws.mean_axis(Axis(0)).unwrap();
    let var = draws.var_axis(Axis(0), 1.0);
    (mean, var.mapv(|v| (v / n).sqrt()))
}

/// Asserts that every coordinate of the per-draw estimates' mean lies within `k` standard
/// errors of `want`.
#[track_caller]
fn assert_within_se(label: &str, draws: &ArrayD<f64>, want: &ArrayD<f64>, k: f64) {
    let (mean, se) = mean_and_se(draws);
    assert_eq!(mean.shape(), want.shape(), "{label}");
    for ((idx, &m), (&s, &w)) in mean.indexed_iter().zip(se.iter().zip(want)) {
        assert!(
            (m - w).abs() <= k * s,
            "{label}{:?}: mean {m} vs {w}, |diff| {} > {k} × se {s}",
            idx.slice(),
            (m - w).abs()
        );
    }
}

/// `x` repeated `n` times along a new leading axis.
fn repeat(x: &ArrayD<f64>, n: usize) -> ArrayD<f64> {
    let mut shape = x.shape().to_vec();
    shape.insert(0, n);
    x.broadcast(IxDyn(&shape)).unwrap().to_owned()
}

const DRAWS: usize = 20_000;

/// `z = μ + Lε`, `J = E‖z‖² = ‖μ‖² + ‖L‖²_F`: `∇_μ J = 2μ` and `∇_L J = 2L` (zero above the
/// diagonal), each from `DRAWS` single-draw gradients.
fn pathwise_gradient_mvn<F: Scalar>() {
    let mu = array![0.5, -1.0, 2.0].into_dyn();
    let l = array![[1.0, 0.0, 0.0], [0.5, 0.8, 0.0], [-0.3, 0.2, 1.2]].into_dyn();
    let tape = Tape::<F>::new();
    // one leaf row per draw, so backward gives every draw's own gradient
    let loc = tape.variable(cast::<F>(&repeat(&mu, DRAWS)));
    let scale_tril = tape.variable(cast::<F>(&repeat(&l, DRAWS)));
    let q = MultivariateNormal::new(loc, scale_tril).unwrap();
    let z = tape.sample(&q, &mut rng(101));
    let grads = z.square().sum().backward().unwrap();
    // ∇_μ ‖z‖² = 2z with E[2z] = 2μ
    assert_within_se("∇μ", &widen(grads.wrt(loc).unwrap()), &(&mu * 2.0), 4.0);
    // ∇_L ‖z‖² = 2 z εᵀ with E[2 z εᵀ] = 2L
    assert_within_se(
        "∇L",
        &widen(grads.wrt(scale_tril).unwrap()),
        &(&l * 2.0),
        4.0,
    );
}

/// `z = μ + D^½ε₁ + Uε₂`, `E‖z‖² = ‖μ‖² + tr D + ‖U‖²_F`: `∇_μ = 2μ`, `∇_U = 2U`, `∇_D = 1`.
fn pathwise_gradient_low_rank<F: Scalar>() {
    let mu = array![0.5, -1.0, 2.0, 0.0].into_dyn();
    let u = array![[1.0, 0.0], [0.5, -0.7], [-0.3, 0.2], [0.0, 1.5]].into_dyn();
    let dg = array![0.5, 1.0, 2.0, 0.25].into_dyn();
    let tape = Tape::<F>::new();
    let loc = tape.variable(cast::<F>(&repeat(&mu, DRAWS)));
    let cov_factor = tape.variable(cast::<F>(&repeat(&u, DRAWS)));
    let cov_diag = tape.variable(cast::<F>(&repeat(&dg, DRAWS)));
    let q = LowRankMultivariateNormal::new(loc, cov_factor, cov_diag).unwrap();
    let z = tape.sample(&q, &mut rng(102));
    let grads = z.square().sum().backward().unwrap();
    // ∇_μ ‖z‖² = 2z, E = 2μ
    assert_within_se("∇μ", &widen(grads.wrt(loc).unwrap()), &(&mu * 2.0), 4.0);
    // ∇_U ‖z‖² = 2 z ε₂ᵀ, E = 2U
    assert_within_se(
        "∇U",
        &widen(grads.wrt(cov_factor).unwrap()),
        &(&u * 2.0),
        4.0,
    );
    // ∇_D ‖z‖² = zᵢ ε₁ᵢ / √Dᵢ, E = 1
    let ones = ArrayD::ones(dg.raw_dim());
    assert_within_se("∇D", &widen(grads.wrt(cov_diag).unwrap()), &ones, 4.0);
}

/// Checks the mean and every covariance entry of `draws [N, d]` against `mu` and `sigma`.
///
/// The sample covariance `S_ij = Σₖ cₖᵢ cₖⱼ / (N − 1)` (`c` centred) is a mean of the products
/// `cₖᵢ cₖⱼ`, so its standard error is their sample standard deviation over `√N`; for a normal
/// that is `√((Σᵢᵢ Σⱼⱼ + Σᵢⱼ²)/N)`, but it is estimated from the same draws.
#[track_caller]
fn assert_moments(label: &str, draws: &ArrayD<f64>, mu: &ArrayD<f64>, sigma: &Array2<f64>) {
    let draws = draws.view().into_dimensionality::<Ix2>().unwrap();
    let (n, d) = draws.dim();
    assert_within_se(
        &format!("{label} mean"),
        &draws.to_owned().into_dyn(),
        mu,
        5.0,
    );
    let centred = &draws - &draws.mean_axis(Axis(0)).unwrap();
    for i in 0..d {
        for j in 0..=i {
            let products = &centred.column(i) * &centred.column(j);
            let s = products.sum() / (n as f64 - 1.0);
            let se = products.std(1.0) / (n as f64).sqrt();
            assert!(
                (s - sigma[[i, j]]).abs() <= 5.0 * se,
                "{label} Σ[{i}, {j}]: sample {s} vs {}, > 5 × se {se}",
                sigma[[i, j]]
            );
        }
    }
}

/// Draws from `sample` (no gradient) and from `Tape::sample` (the pathwise path) both have
/// mean `μ` and covariance `Σ`, with `Σ` computed here from the parameters.
fn sample_moments<F: Scalar>() {
    let mu = array![1.0, -2.0, 0.5];
    let l = array![[1.0, 0.0, 0.0], [0.6, 0.5, 0.0], [-0.4, 0.3, 1.5]];
    let sigma = l.dot(&l.t()); // Σ = L Lᵀ
    let tape = Tape::<F>::new();
    let loc = tape.constant(cast::<F>(&repeat(&mu.clone().into_dyn(), DRAWS)));
    let q = MultivariateNormal::new(loc, tape.constant(cast::<F>(&l.clone().into_dyn()))).unwrap();
    let mu = mu.into_dyn();
    assert_moments("mvn sample", &widen(&q.sample(&mut rng(201))), &mu, &sigma);
    let z = tape.sample(&q, &mut rng(202));
    assert_moments("mvn rsample", &widen(&z.value()), &mu, &sigma);

    let u = array![[1.0, 0.5], [0.0, -0.8], [0.7, 0.3]];
    let dg = array![0.3, 1.0, 0.5];
    let sigma = Array2::from_diag(&dg) + u.dot(&u.t()); // Σ = D + U Uᵀ
    let q = LowRankMultivariateNormal::new(
        loc,
        tape.constant(cast::<F>(&u.into_dyn())),
        tape.constant(cast::<F>(&dg.into_dyn())),
    )
    .unwrap();
    assert_moments(
        "low-rank sample",
        &widen(&q.sample(&mut rng(203))),
        &mu,
        &sigma,
    );
    let z = tape.sample(&q, &mut rng(204));
    assert_moments("low-rank rsample", &widen(&z.value()), &mu, &sigma);
}

for_each_float!(
    pathwise_gradient_mvn,
    pathwise_gradient_low_rank,
    sample_moments
);

/// Antithetic pairs: rows `i` and `i + n/2` use `ε` and `−ε`, so they mirror about `μ`.
#[test]
fn antithetic_pairs_mirror_about_the_mean() {
    let tape = Tape::<f64>::new();
    let loc = tape.constant(array![[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]);
    let q = MultivariateNormal::new(loc, tape.constant(array![[1.0, 0.0], [0.5, 2.0]])).unwrap();
    let z = tape
        .sample_with(&q, Estimator::Antithetic, &mut rng(3))
        .unwrap()
        .value();
    // rank 1: the path's ε₂ [4, 1] @ Uᵀ [1, 2] is an outer product (a matmul layout case)
    let lr = LowRankMultivariateNormal::new(
        loc,
        tape.constant(array![[1.0], [-1.0]]),
        tape.constant(array![0.5, 0.5]),
    )
    .unwrap();
    let w = tape
        .sample_with(&lr, Estimator::Antithetic, &mut rng(4))
        .unwrap()
        .value();
    for draws in [z, w] {
        for i in 0..2 {
            // z_i + z_{i+2} = (μ + Aε) + (μ − Aε) = 2μ
            let sum = &draws.index_axis(Axis(0), i) + &draws.index_axis(Axis(0), i + 2);
            assert_close(&sum.into_dyn(), &array![2.0, 4.0].into_dyn(), 1e-12, 0.0);
        }
    }
}

/// A factor given with a unit batch axis serves the whole batch, like an unbatched one.
#[test]
fn unit_batch_factor_is_shared() {
    let case = fixture("mvn");
    let tape = Tape::<f64>::new();
    let loc = tape.constant(repeat(case.get("loc"), 5));
    let l = case.get("scale_tril");
    let x = tape.constant(case.get("x").clone());
    let shared = MultivariateNormal::new(loc, tape.constant(l.clone())).unwrap();
    let unit = MultivariateNormal::new(loc, tape.constant(repeat(l, 1))).unwrap();
    assert_eq!(unit.scale_tril().shape(), vec![4, 4]);
    assert_eq!(unit.batch_shape(), &[5]);
    assert_eq!(unit.log_prob(x).value(), shared.log_prob(x).value());
    // one row of x against the batch: the value broadcasts
    let row = tape.constant(case.get("x").index_axis(Axis(0), 0).to_owned());
    assert_eq!(unit.log_prob(row).shape(), vec![5]);
}

/// With `r = 0` the low-rank normal is the diagonal normal `N(μ, D)`.
#[test]
fn rank_zero_is_a_diagonal_normal() {
    let tape = Tape::<f64>::new();
    let (loc, dg) = (
        tape.constant(array![0.5, -1.0, 2.0]),
        tape.constant(array![0.5, 1.0, 2.0]),
    );
    let q = LowRankMultivariateNormal::new(loc, tape.constant(Array2::zeros((3, 0))), dg).unwrap();
    let normal = Normal::new(loc, dg.sqrt()).unwrap();
    let x = tape.constant(array![[0.0, 0.0, 0.0], [1.0, -2.0, 3.0]]);
    // log N(x; μ, D) = Σᵢ log N(xᵢ; μᵢ, Dᵢ)
    let want = normal.log_prob(x).sum_axis(1).value();
    assert_close(&q.log_prob(x).value(), &want, 1e-14, 1e-14);
    let want = normal.entropy().unwrap().sum().value();
    assert_close(&q.entropy().unwrap().value(), &want, 1e-14, 1e-14);
    assert_eq!(q.noise(&mut rng(5)).unwrap().shape(), &[3]);
}

// ---------------------------------------------------------------------------------------------
// Validation

/// The `InvalidParameter` fields, or a panic naming what came instead.
#[track_caller]
fn invalid<T>(r: stograd::Result<T>) -> (&'static str, &'static str, f64, Vec<usize>) {
    match r {
        Err(Error::InvalidParameter {
            distribution,
            param,
            value,
            index,
            ..
        }) => (distribution, param, value, index),
        Err(e) => panic!("expected InvalidParameter, got {e}"),
        Ok(_) => panic!("expected InvalidParameter, got Ok"),
    }
}

/// The `IncompatibleShapes` fields.
#[track_caller]
fn incompatible<T>(r: stograd::Result<T>) -> (&'static str, Vec<usize>, Vec<usize>) {
    match r {
        Err(Error::IncompatibleShapes {
            what, left, right, ..
        }) => (what, left, right),
        Err(e) => panic!("expected IncompatibleShapes, got {e}"),
        Ok(_) => panic!("expected IncompatibleShapes, got Ok"),
    }
}

#[test]
fn mvn_rejects_bad_parameters() {
    let tape = Tape::<f64>::new();
    let loc = tape.constant(array![0.0, 0.0, 0.0]);
    let l = |a: Array2<f64>| tape.constant(a);
    let good = array![[1.0, 0.0, 0.0], [0.5, 2.0, 0.0], [0.1, 0.2, 3.0]];
    assert!(MultivariateNormal::new(loc, l(good.clone())).is_ok());
    let with = |i: usize, j: usize, v: f64| {
        let mut a = good.clone();
        a[[i, j]] = v;
        l(a)
    };
    let mvn = |scale_tril| MultivariateNormal::new(loc, scale_tril);
    let name = "MultivariateNormal";
    // a non-zero entry above the diagonal, named with its index
    assert_eq!(
        invalid(mvn(with(0, 2, 0.25))),
        (name, "scale_tril", 0.25, vec![0, 2])
    );
    // a non-positive or non-finite diagonal
    assert_eq!(
        invalid(mvn(with(1, 1, -0.5))),
        (name, "scale_tril", -0.5, vec![1, 1])
    );
    assert_eq!(
        invalid(mvn(with(2, 2, 0.0))),
        (name, "scale_tril", 0.0, vec![2, 2])
    );
    assert_eq!(invalid(mvn(with(2, 2, f64::INFINITY))).3, vec![2, 2]);
    // a NaN below the diagonal
    let (_, param, value, index) = invalid(mvn(with(2, 0, f64::NAN)));
    assert!(param == "scale_tril" && value.is_nan() && index == [2, 0]);
    // a NaN or infinite loc
    let bad_loc = tape.constant(array![0.0, f64::NAN, 0.0]);
    let (_, param, value, index) = invalid(MultivariateNormal::new(bad_loc, l(good.clone())));
    assert!(param == "loc" && value.is_nan() && index == [1]);
    let bad_loc = tape.constant(array![[0.0, 0.0, 0.0], [0.0, 0.0, f64::NEG_INFINITY]]);
    let r = MultivariateNormal::new(bad_loc, l(good.clone()));
    assert_eq!(invalid(r), (name, "loc", f64::NEG_INFINITY, vec![1, 2]));
    // the index of a batched factor includes the batch position
    let mut batch = ndarray::stack![Axis(0), good, good].into_dyn();
    batch[[1, 0, 1]] = 1.0;
    let r = MultivariateNormal::new(loc, tape.constant(batch));
    assert_eq!(invalid(r), (name, "scale_tril", 1.0, vec![1, 0, 1]));

    // from_unconstrained: raw must be finite; exp of the diagonal must not overflow
    let raw = tape.constant(array![[0.0, f64::NAN], [0.0, 0.0]]);
    let loc2 = tape.constant(array![0.0, 0.0]);
    let (_, param, _, index) = invalid(MultivariateNormal::from_unconstrained(loc2, raw));
    assert_eq!((param, index), ("raw", vec![0, 1]));
    let raw = tape.constant(array![[0.0, 0.0], [1e300, 800.0]]);
    let r = MultivariateNormal::from_unconstrained(loc2, raw);
    assert_eq!(invalid(r), (name, "scale_tril", f64::INFINITY, vec![1, 1]));
    // …while huge entries off the diagonal are fine (exp is never taken of them)
    let raw = tape.constant(array![[0.0, 1e300], [-1e300, 1.0]]);
    let q = MultivariateNormal::from_unconstrained(loc2, raw).unwrap();
    assert_eq!(q.scale_tril().value()[[1, 0]], -1e300);

    // from_covariance: non-finite entries, and a matrix that is not positive definite
    let cov = tape.constant(array![[1.0, f64::NAN], [0.0, 1.0]]);
    let (_, param, _, index) = invalid(MultivariateNormal::from_covariance(loc2, cov));
    assert_eq!((param, index), ("covariance_matrix", vec![0, 1]));
    let cov = tape.constant(array![[1.0, 2.0], [2.0, 1.0]]);
    match MultivariateNormal::from_covariance(loc2, cov) {
        // pivot 1 − 2² = −3 in column 1
        Err(Error::NotPositiveDefinite {
            matrix: 0,
            column: 1,
            pivot,
        }) => assert_eq!(pivot, -3.0),
        other => panic!("expected NotPositiveDefinite, got {:?}", other.map(|_| ())),
    }
    let batch = tape.constant(array![[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, -1.0]]]);
    let r = MultivariateNormal::from_covariance(loc2, batch);
    assert!(matches!(
        r,
        Err(Error::NotPositiveDefinite {
            matrix: 1,
            column: 1,
            ..
        })
    ));
}

#[test]
fn low_rank_rejects_bad_parameters() {
    let tape = Tape::<f64>::new();
    let loc = tape.constant(array![0.0, 0.0, 0.0]);
    let u = tape.constant(array![[1.0], [0.5], [0.0]]);
    let dg = tape.constant(array![1.0, 1.0, 1.0]);
    let name = "LowRankMultivariateNormal";
    assert!(LowRankMultivariateNormal::new(loc, u, dg).is_ok());
    let r = LowRankMultivariateNormal::new(loc, u, tape.constant(array![1.0, 0.0, 1.0]));
    assert_eq!(invalid(r), (name, "cov_diag", 0.0, vec![1]));
    let r = LowRankMultivariateNormal::new(loc, u, tape.constant(array![1.0, 1.0, -2.0]));
    assert_eq!(invalid(r), (name, "cov_diag", -2.0, vec![2]));
    let r = LowRankMultivariateNormal::new(loc, u, tape.constant(array![f64::INFINITY, 1.0, 1.0]));
    assert_eq!(invalid(r), (name, "cov_diag", f64::INFINITY, vec![0]));
    let r =
        LowRankMultivariateNormal::new(loc, tape.constant(array![[1.0], [f64::NAN], [0.0]]), dg);
    let (_, param, value, index) = invalid(r);
    assert!(param == "cov_factor" && value.is_nan() && index == [1, 0]);
    let r = LowRankMultivariateNormal::new(tape.constant(array![f64::NAN, 0.0, 0.0]), u, dg);
    let (_, param, value, index) = invalid(r);
    assert!(param == "loc" && value.is_nan() && index == [0]);
    // U²/D overflows the capacitance I + UᵀD⁻¹U
    let r = LowRankMultivariateNormal::new(loc, tape.constant(array![[1e200], [0.0], [0.0]]), dg);
    assert!(
        matches!(r, Err(Error::NotPositiveDefinite { .. })),
        "{:?}",
        r.map(|_| ())
    );
}

#[test]
fn shapes_that_do_not_fit_are_errors() {
    let tape = Tape::<f64>::new();
    let z = |shape: &[usize]| tape.constant(ArrayD::<f64>::zeros(IxDyn(shape)));
    let eye = |shape: &[usize]| {
        let d = shape[shape.len() - 1];
        tape.constant(
            Array2::<f64>::eye(d)
                .into_dyn()
                .broadcast(IxDyn(shape))
                .unwrap()
                .to_owned(),
        )
    };
    let ones = |shape: &[usize]| tape.constant(ArrayD::<f64>::ones(IxDyn(shape)));
    // loc [d] against a factor of another size; a non-square factor; a 0-d loc
    let mvn = |loc: &[usize], l: &[usize]| incompatible(MultivariateNormal::new(z(loc), eye(l)));
    let what = "loc and scale_tril";
    assert_eq!(mvn(&[3], &[4, 4]), (what, vec![3], vec![4, 4]));
    let r = MultivariateNormal::new(z(&[3]), z(&[3, 4]));
    assert_eq!(incompatible(r), (what, vec![3], vec![3, 4]));
    assert_eq!(mvn(&[], &[3, 3]).1, Vec::<usize>::new());
    // batch axes that do not broadcast, and more than one batch axis
    assert_eq!(mvn(&[2, 3], &[5, 3, 3]), (what, vec![2, 3], vec![5, 3, 3]));
    assert_eq!(mvn(&[2, 2, 3], &[3, 3]).1, vec![2, 2, 3]);
    assert_eq!(mvn(&[3], &[2, 2, 3, 3]).2, vec![2, 2, 3, 3]);
    let r = MultivariateNormal::from_unconstrained(z(&[3]), z(&[2, 2]));
    assert_eq!(incompatible(r).0, "loc and raw");
    let r = MultivariateNormal::from_covariance(z(&[3]), eye(&[2, 2]));
    assert_eq!(incompatible(r).0, "loc and covariance_matrix");

    let lr = |loc: &[usize], u: &[usize], d: &[usize]| {
        incompatible(LowRankMultivariateNormal::new(z(loc), z(u), ones(d)))
    };
    assert_eq!(
        lr(&[3], &[4, 2], &[3]),
        ("loc and cov_factor", vec![3], vec![4, 2])
    );
    assert_eq!(
        lr(&[3], &[3, 2], &[4]),
        ("loc and cov_diag", vec![3], vec![4])
    );
    assert_eq!(lr(&[3], &[3], &[3]).0, "loc and cov_factor");
    assert_eq!(
        lr(&[3], &[2, 3, 2], &[5, 3]),
        ("cov_factor and cov_diag", vec![2, 3, 2], vec![5, 3])
    );
    assert_eq!(
        lr(&[4, 3], &[2, 3, 2], &[3]),
        ("loc and cov_factor", vec![4, 3], vec![2, 3, 2])
    );
    assert_eq!(
        lr(&[4, 3], &[3, 2], &[2, 3]),
        ("loc and cov_diag", vec![4, 3], vec![2, 3])
    );
    assert_eq!(lr(&[2, 2, 3], &[3, 2], &[3]).1, vec![2, 2, 3]);
}

#[test]
fn noise_of_the_wrong_shape_is_an_error() {
    let tape = Tape::<f64>::new();
    let loc = tape.constant(array![[0.0, 0.0], [1.0, 1.0]]);
    let q = MultivariateNormal::new(loc, tape.constant(array![[1.0, 0.0], [0.0, 1.0]])).unwrap();
    let noise = |shape: &[usize]| tape.constant(ArrayD::<f64>::zeros(IxDyn(shape)));
    for bad in [&[2, 3][..], &[2][..], &[1, 2], &[2, 2, 1]] {
        match q.reparameterize(noise(bad)) {
            Err(Error::ShapeMismatch { expected, got, .. }) => {
                assert_eq!((expected, got), (vec![2, 2], bad.to_vec()));
            }
            other => panic!(
                "{bad:?}: expected ShapeMismatch, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    let lr = LowRankMultivariateNormal::new(
        loc,
        tape.constant(array![[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]]),
        tape.constant(array![1.0, 1.0]),
    )
    .unwrap();
    // the noise is [ε₁ | ε₂]: d + r = 5 per row; [2, 2] (ε₁ alone) is wrong
    assert!(lr.reparameterize(noise(&[2, 5])).is_ok());
    for bad in [&[2, 2][..], &[2, 3], &[5]] {
        match lr.reparameterize(noise(bad)) {
            Err(Error::ShapeMismatch { expected, .. }) => assert_eq!(expected, vec![2, 5]),
            other => panic!(
                "{bad:?}: expected ShapeMismatch, got {:?}",
                other.map(|_| ())
            ),
        }
    }
}

#[test]
fn kl_shape_mismatch_is_an_error() {
    let tape = Tape::<f64>::new();
    let z = |shape: &[usize]| tape.constant(ArrayD::<f64>::zeros(IxDyn(shape)));
    let eye = |d: usize| tape.constant(Array2::<f64>::eye(d));
    let p = MultivariateNormal::new(z(&[2, 3]), eye(3)).unwrap();
    let q = LowRankMultivariateNormal::new(z(&[5, 3]), z(&[3, 1]), eye(3).diagonal()).unwrap();
    // batch shapes [2] and [5] do not broadcast
    match kl_divergence(&p, &q) {
        Err(Error::KlShapeMismatch {
            p_shape, q_shape, ..
        }) => assert_eq!((p_shape, q_shape), (vec![2, 3], vec![5, 3])),
        other => panic!("expected KlShapeMismatch, got {:?}", other.map(|_| ())),
    }
    // event shapes [3] and [4] differ
    let q = MultivariateNormal::new(z(&[4]), eye(4)).unwrap();
    assert!(matches!(
        kl_divergence(&q, &p),
        Err(Error::KlShapeMismatch { .. })
    ));
    // a batch of one broadcasts
    let one = MultivariateNormal::new(z(&[1, 3]), eye(3)).unwrap();
    assert_eq!(kl_divergence(&one, &p).unwrap().shape(), vec![2]);
}

#[test]
fn log_prob_panics_on_a_value_that_does_not_fit() {
    let tape = Tape::<f64>::new();
    let loc = tape.constant(array![[0.0, 0.0], [1.0, 1.0]]);
    let q = MultivariateNormal::new(loc, tape.constant(array![[1.0, 0.0], [0.0, 1.0]])).unwrap();
    let msg = panic_message(|| q.log_prob(tape.constant(array![0.0, 0.0, 0.0])));
    assert!(
        msg.contains("MultivariateNormal::log_prob") && msg.contains("[3]"),
        "{msg}"
    );
    let msg = panic_message(|| q.log_prob(tape.constant(ArrayD::<f64>::zeros(IxDyn(&[3, 2])))));
    assert!(
        msg.contains("batch shape [2]") && msg.contains("tests/mvn.rs"),
        "{msg}"
    );
}
