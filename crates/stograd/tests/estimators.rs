//! The estimator comparison suite: score-function unbiasedness against closed forms and exact
//! enumeration, the variances the theory predicts, baselines, credit assignment, the
//! surrogate's value, straight-through bias, Gumbel-softmax bias and variance against the
//! temperature, and the infinite-variance warning.
//!
//! The comparisons of several estimators (or baselines) on one problem run through
//! [`stograd::diagnostics::compare_rows`]: every candidate sees the same seeds, and each tape
//! holds many independent draws as rows. Where a leave-one-out baseline couples the rows of a
//! group, the estimates compared are the group means, which are independent.
//!
//! Seed policy: every test seeds its own `StdRng` (or comparison) with a constant; statistical
//! tolerances are multiples (4, unless stated) of a standard error computed from the same
//! samples.

use ndarray::{Array1, Array2, ArrayD, Axis};
use rand::SeedableRng;
use rand::rngs::StdRng;
use stograd::diagnostics::{Candidate, compare_rows, gradient_stats};
use stograd::dist::{Bernoulli, Categorical, Cauchy, Normal, OneHotCategorical};
use stograd::estimator::{Baseline, EmaBaseline, exact_expectation};
use stograd::{Estimator, Tape};

/// Mean and standard error of the mean.
fn mean_se(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let v = x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (v / n).sqrt())
}

/// Sample variance and the standard error of that variance, `√((m₄ − s⁴)/n)`.
fn var_se(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let v = x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0);
    let m4 = x.iter().map(|v| (v - m).powi(4)).sum::<f64>() / n;
    (v, ((m4 - v * v) / n).sqrt())
}

fn within(estimate: (f64, f64), truth: f64, what: &str) {
    let (m, se) = estimate;
    assert!(
        (m - truth).abs() <= 4.0 * se,
        "{what}: {m} ± {se} vs {truth}"
    );
}

fn score(baseline: Baseline<'_, f64>) -> Estimator<'_, f64> {
    Estimator::ScoreFunction { baseline }
}

/// Every baseline kind as a comparison candidate, for draws of `rows` rows (a multiple of 4)
/// and costs near `typical`.
fn baselines(rows: usize, typical: f64) -> Vec<Candidate<f64>> {
    let ema = EmaBaseline::new(0.9).unwrap();
    for c in [0.9 * typical, 1.1 * typical, typical] {
        ema.observe(c).unwrap();
    }
    vec![
        Candidate::new("none", score(Baseline::None)),
        Candidate::new("constant", score(Baseline::Constant(typical))),
        Candidate::new("moving average", score(Baseline::Ema(ema))),
        // any value not depending on the draw keeps the estimator unbiased
        Candidate::from_fn("learned", move |tape| {
            score(Baseline::Learned(
                tape.variable(Array1::from_elem(rows, 0.7 * typical)),
            ))
        }),
        Candidate::new("leave-one-out", score(Baseline::LeaveOneOut { group: 4 })),
    ]
}

/// Per-row gradients (`[rows]` or `[rows, c]`) as the means of groups of 4 consecutive rows,
/// `[rows / 4, c]`: a leave-one-out baseline couples the rows of a group, the groups are
/// independent.
fn group_means(g: &ArrayD<f64>) -> Array2<f64> {
    let rows = g.shape()[0];
    let columns = g.len() / rows;
    let groups = g
        .to_shape((rows / 4, 4, columns))
        .expect("rows are a multiple of 4");
    groups.mean_axis(Axis(1)).expect("4 rows per group")
}

/// Rows per tape and tapes per candidate: 10 tapes of `draws / 10` rows.
const TAPES: usize = 10;

#[test]
fn score_function_bernoulli_is_unbiased_with_every_baseline() {
    let (p, rows) = (0.8, 40_000 / TAPES);
    // ∂/∂p E[f(b)] = f(1) − f(0) = 0.55² − 0.45² = 0.1
    let truth = 0.1;
    let tape = Tape::<f64>::new();
    let probs = tape.variable(Array1::from_elem(1, p));
    let exact = exact_expectation(
        &Bernoulli::from_probs(probs).unwrap(),
        |b| (b - 0.45).square(),
        4,
    )
    .unwrap()
    .backward()
    .unwrap();
    assert!((exact.wrt(probs).unwrap()[0] - truth).abs() < 1e-12);

    let candidates = baselines(rows, 0.25);
    let table = compare_rows(&candidates, TAPES, 10, Some(&[truth]), |candidate, rng| {
        let tape = Tape::new();
        let probs = tape.variable(Array1::from_elem(rows, p));
        let q = Bernoulli::from_probs(probs)?;
        let b = tape.sample_with(&q, candidate.estimator(&tape), rng)?;
        let grads = (b - 0.45).square().backward()?;
        Ok(group_means(grads.wrt(probs).unwrap()))
    })
    .unwrap();
    println!("{table}");
    table.assert_unbiased(4.0);
}

#[test]
fn score_function_categorical_is_unbiased_with_every_baseline() {
    let (rows, k) = (40_000, 3);
    let logits0 = ndarray::array![0.2, -0.5, 1.0];
    let cost = ndarray::array![1.0, -2.0, 0.5];
    let p = {
        let e = logits0.mapv(f64::exp);
        &e / e.sum()
    };
    // ∂/∂ℓ_k E[c_x] = p_k (c_k − Σ_j p_j c_j)
    let mean_cost = (&p * &cost).sum();
    let truth: Vec<f64> = (0..k).map(|j| p[j] * (cost[j] - mean_cost)).collect();

    let tape = Tape::<f64>::new();
    let one = tape.variable(logits0.clone().insert_axis(Axis(0)));
    let exact = exact_expectation(
        &Categorical::from_logits(one).unwrap(),
        |x| index_cost(x, &cost),
        16,
    )
    .unwrap()
    .backward()
    .unwrap();
    for (j, t) in truth.iter().enumerate() {
        assert!((exact.wrt(one).unwrap()[[0, j]] - t).abs() < 1e-12);
    }

    let rows = rows / TAPES;
    let table = compare_rows(
        &baselines(rows, mean_cost),
        TAPES,
        20,
        Some(&truth),
        |candidate, rng| {
            let tape = Tape::new();
            let logits = tape.variable(logits0.broadcast((rows, k)).unwrap().to_owned());
            let q = Categorical::from_logits(logits)?;
            let x = tape.sample_with(&q, candidate.estimator(&tape), rng)?;
            let grads = index_cost(x, &cost).backward()?;
            Ok(group_means(grads.wrt(logits).unwrap()))
        },
    )
    .unwrap();
    println!("{table:#}");
    table.assert_unbiased(4.0);
}

/// `c[x]` for category indices `x ∈ {0, 1, 2}`, computed on the tape from the draw by
/// Lagrange interpolation: `c₀(x−1)(x−2)/2 − c₁x(x−2) + c₂x(x−1)/2`.
fn index_cost<'t>(x: stograd::Var<'t, f64>, cost: &Array1<f64>) -> stograd::Var<'t, f64> {
    let (a, b, c) = ((x - 1.0) * (x - 2.0), x * (x - 2.0), x * (x - 1.0));
    a * (cost[0] / 2.0) - b * cost[1] + c * (cost[2] / 2.0)
}

#[test]
fn score_function_normal_location_and_scale_are_unbiased() {
    let (mu, sigma, rows) = (0.7, 1.3, 100_000 / TAPES);
    // E[z²] = μ² + σ²: ∂/∂μ = 2μ, ∂/∂σ = 2σ
    let truth = [2.0 * mu, 2.0 * sigma];
    let candidates = baselines(rows, mu * mu + sigma * sigma);
    let table = compare_rows(&candidates, TAPES, 30, Some(&truth), |candidate, rng| {
        let tape = Tape::new();
        let loc = tape.variable(Array1::from_elem(rows, mu));
        let scale = tape.variable(Array1::from_elem(rows, sigma));
        let q = Normal::new(loc, scale)?;
        let z = tape.sample_with(&q, candidate.estimator(&tape), rng)?;
        let grads = z.square().backward()?;
        let (gl, gs) = (grads.wrt(loc).unwrap(), grads.wrt(scale).unwrap());
        let both = ndarray::stack![Axis(1), gl.view(), gs.view()];
        Ok(group_means(&both))
    })
    .unwrap();
    println!("{table:#}");
    table.assert_unbiased(4.0);
}

#[test]
fn one_sample_variances_match_the_theory() {
    // z = μ + σε with μ = σ = 1 and f(z) = z²; one-sample estimators of ∂/∂μ E[z²] = 2:
    // - pathwise: 2z = 2 + 2ε, variance 4σ² = 4.
    // - score function: z²(z − μ)/σ² = (1 + ε)²ε = ε + 2ε² + ε³; E[g²] = E[ε²] + 4E[ε⁴]
    //   + E[ε⁶] + 2E[ε⁴] = 1 + 12 + 15 + 6 = 34, variance 34 − 2² = 30.
    // - score function, constant baseline 2: (z² − 2)ε = ε³ + 2ε² − ε; E[g²] = E[ε⁶]
    //   + 4E[ε⁴] + E[ε²] − 2E[ε⁴] = 15 + 12 + 1 − 6 = 22, variance 22 − 4 = 18.
    let rows = 1_000_000 / TAPES;
    let candidates = [
        Candidate::new("pathwise", Estimator::Pathwise),
        Candidate::new("score function", Estimator::score_function()),
        Candidate::new("score function, b = 2", score(Baseline::Constant(2.0))),
    ];
    let theory = [4.0, 30.0, 18.0];
    let table = compare_rows(&candidates, TAPES, 40, Some(&[2.0]), |candidate, rng| {
        let tape = Tape::<f64>::new();
        let loc = tape.variable(Array1::from_elem(rows, 1.0));
        let q = Normal::new(loc, tape.constant(Array1::from_elem(rows, 1.0)))?;
        let z = tape.sample_with(&q, candidate.estimator(&tape), rng)?;
        let g = z.square().backward()?;
        Ok(g.wrt(loc)
            .unwrap()
            .clone()
            .into_shape_with_order((rows, 1))?)
    })
    .unwrap();
    println!("{table}");
    table.assert_unbiased(4.0);
    for (r, theory) in table.reports.iter().zip(theory) {
        let (v, se) = (r.total_variance, r.total_variance_std_error);
        let name = &r.label;
        assert!(
            (v - theory).abs() <= 4.0 * se,
            "{name}: variance {v} ± {se} vs {theory}"
        );
        assert!(
            (v - theory).abs() <= 0.05 * theory,
            "{name}: variance {v} not within 5% of {theory}"
        );
    }
}

#[test]
fn baselines_lower_the_variance_on_the_bernoulli_problem() {
    // the variance of a mean of 4 draws (a leave-one-out group), paired tape by tape
    let (p, rows) = (0.3, 200_000 / TAPES);
    let candidates = baselines(rows, 0.25);
    let table = compare_rows(&candidates, TAPES, 50, None, |candidate, rng| {
        let tape = Tape::new();
        let probs = tape.variable(Array1::from_elem(rows, p));
        let q = Bernoulli::from_probs(probs)?;
        let b = tape.sample_with(&q, candidate.estimator(&tape), rng)?;
        let grads = (b - 0.45).square().backward()?;
        Ok(group_means(grads.wrt(probs).unwrap()))
    })
    .unwrap();
    println!("{table}");
    for c in &candidates[1..] {
        // lower than without a baseline by more than 4 standard errors of the difference
        table[c.label()].assert_less_variance_than(&table["none"], 4.0);
    }
}

#[test]
fn per_row_credit_assignment_beats_pairing_rows_with_the_batch_total() {
    // 64 independent Bernoulli(0.6) draws with cost f(b) = (b − 0.45)² per row. Per-row credit
    // multiplies each row's score by its own cost. The same cost computed after a reshape that
    // moves the batch axis ([64] → [1, 64]) keeps no rows, so each row is credited with the
    // batch total: all 64 costs, 63 rows of them noise.
    let (rows, reps, p) = (64, 2_000, 0.6);
    let mut per_row = Vec::new();
    let mut total = Vec::new();
    let mut rng = StdRng::seed_from_u64(60);
    for _ in 0..reps {
        let tape = Tape::<f64>::new();
        let probs = tape.variable(Array1::from_elem(rows, p));
        let q = Bernoulli::from_probs(probs).unwrap();
        let b = tape
            .sample_with(&q, Estimator::score_function(), &mut rng)
            .unwrap();
        let f = (b - 0.45).square();
        let rowwise = f.sum();
        let batch = (b.reshape(&[1, rows]) - 0.45).square().sum();
        assert!((rowwise.item() - batch.item()).abs() < 1e-12);
        per_row.extend(
            rowwise
                .backward()
                .unwrap()
                .wrt(probs)
                .unwrap()
                .iter()
                .copied(),
        );
        total.extend(
            batch
                .backward()
                .unwrap()
                .wrt(probs)
                .unwrap()
                .iter()
                .copied(),
        );
    }
    // both unbiased for f(1) − f(0) = 0.1
    within(mean_se(&per_row), 0.1, "per-row");
    within(mean_se(&total), 0.1, "batch total");
    let (v_row, se_row) = var_se(&per_row);
    let (v_total, se_total) = var_se(&total);
    println!("variance per row {v_row:.4}, with the batch total {v_total:.4}");
    assert!(
        v_total - 4.0 * se_total > 10.0 * (v_row + 4.0 * se_row),
        "{v_total} vs {v_row}"
    );
}

#[test]
fn a_cost_unrelated_to_a_score_node_adds_nothing_to_its_gradient() {
    let tape = Tape::<f64>::new();
    let p1 = tape.variable(Array1::from_elem(8, 0.3));
    let p2 = tape.variable(Array1::from_elem(8, 0.6));
    let mut rng = StdRng::seed_from_u64(70);
    let w1 = tape
        .sample_with(
            &Bernoulli::from_probs(p1).unwrap(),
            Estimator::score_function(),
            &mut rng,
        )
        .unwrap();
    let _w2 = tape
        .sample_with(
            &Bernoulli::from_probs(p2).unwrap(),
            Estimator::score_function(),
            &mut rng,
        )
        .unwrap();
    // the cost reads w1 and p2 directly, never w2
    let cost = (w1 * 3.0).sum() + p2.square().sum();
    let g = cost.backward().unwrap();
    // ∂/∂p2 is exactly the pathwise 2·p2: no REINFORCE term from w2
    assert_eq!(g.wrt(p2).unwrap(), &(p2.value() * 2.0));
}

#[test]
fn surrogate_value_is_the_cost_sum_and_its_gradient_the_estimator() {
    let tape = Tape::<f64>::new();
    let logits = tape.variable(ndarray::array![[0.1, 0.4, -0.3], [1.0, 0.0, 0.2]]);
    let loc = tape.variable(ndarray::array![0.5, -0.5]);
    let mut rng = StdRng::seed_from_u64(80);
    let x = tape
        .sample_with(
            &OneHotCategorical::from_logits(logits).unwrap(),
            Estimator::score_function(),
            &mut rng,
        )
        .unwrap();
    let z = tape.sample(&Normal::new(loc, tape.scalar(1.0)).unwrap(), &mut rng);
    let cost = (x * tape.constant(ndarray::array![1.0, 2.0, 3.0])).sum_axis(1) * z.exp();
    let s = tape.surrogate(cost).unwrap();
    assert_eq!(s.item(), cost.sum().item());
    let (gs, gc) = (s.backward().unwrap(), cost.backward().unwrap());
    assert_eq!(gs.wrt(logits), gc.wrt(logits));
    assert_eq!(gs.wrt(loc), gc.wrt(loc));
    // building on the surrogate does not add the terms twice
    let doubled = (s * 2.0).backward().unwrap();
    assert_eq!(
        doubled.wrt(logits).unwrap(),
        &(gc.wrt(logits).unwrap() * 2.0)
    );
}

#[test]
fn nested_score_function_nodes_credit_downstream_costs() {
    // w1 ~ Bernoulli(p1); w2 ~ Bernoulli(0.2 + 0.6·w1); cost = w2. E[cost] = 0.2 + 0.6 p1, so
    // ∂/∂p1 = 0.6: only w1's term carries it, through the cost downstream of w2.
    let rows = 100_000;
    let tape = Tape::<f64>::new();
    let p1 = tape.variable(Array1::from_elem(rows, 0.5));
    let mut rng = StdRng::seed_from_u64(90);
    let w1 = tape
        .sample_with(
            &Bernoulli::from_probs(p1).unwrap(),
            Estimator::score_function(),
            &mut rng,
        )
        .unwrap();
    let p2 = w1 * 0.6 + 0.2;
    let w2 = tape
        .sample_with(
            &Bernoulli::from_probs(p2).unwrap(),
            Estimator::score_function(),
            &mut rng,
        )
        .unwrap();
    let g: Vec<f64> = w2
        .backward()
        .unwrap()
        .wrt(p1)
        .unwrap()
        .iter()
        .copied()
        .collect();
    within(mean_se(&g), 0.6, "nested");
}

#[test]
fn cauchy_base_flags_infinite_variance_and_normal_does_not() {
    // ∂/∂μ (μ + ε)² = 2(μ + ε): Cauchy ε has tail index 1, so the variance is infinite.
    let run = |cauchy: bool| {
        gradient_stats(20_000, 100, |rng| {
            let tape = Tape::<f64>::new();
            let mu = tape.variable(Array1::from_elem(1, 0.5));
            let scale = tape.scalar(1.0);
            let z = if cauchy {
                tape.sample(&Cauchy::new(mu, scale)?, rng)
            } else {
                tape.sample(&Normal::new(mu, scale)?, rng)
            };
            Ok(z.square()
                .sum()
                .backward()?
                .wrt(mu)
                .unwrap()
                .iter()
                .copied()
                .collect())
        })
        .unwrap()
    };
    let (cauchy, normal) = (run(true), run(false));
    println!(
        "tail index: Cauchy {:.2}, Normal {:.2}",
        cauchy.tail_index[0], normal.tail_index[0]
    );
    assert_eq!(cauchy.heavy_tailed(), vec![0]);
    assert!(normal.heavy_tailed().is_empty());
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Per-row straight-through gradients of `E[f(z)]` with respect to the logit `η`.
fn straight_through_grads(
    eta: f64,
    rows: usize,
    f: fn(stograd::Var<'_, f64>) -> stograd::Var<'_, f64>,
    seed: u64,
) -> Vec<f64> {
    let tape = Tape::<f64>::new();
    let logits = tape.variable(Array1::from_elem(rows, eta));
    let q = Bernoulli::from_logits(logits).unwrap();
    let z = tape
        .sample_with(
            &q,
            Estimator::StraightThrough,
            &mut StdRng::seed_from_u64(seed),
        )
        .unwrap();
    assert!(
        z.value().iter().all(|&v| v == 0.0 || v == 1.0),
        "the forward value is hard"
    );
    f(z).backward()
        .unwrap()
        .wrt(logits)
        .unwrap()
        .iter()
        .copied()
        .collect()
}

#[test]
fn straight_through_is_unbiased_for_the_identity_and_biased_for_a_square() {
    let rows = 100_000;
    // p = σ(η) = 0.8
    let eta = 4f64.ln();
    let (p, dp) = (sigmoid(eta), sigmoid(eta) * (1.0 - sigmoid(eta)));
    // f(z) = z: E[z] = p, ∂/∂η = σ'(η); straight-through gives σ'(η) for every draw, so it is
    // unbiased with zero variance
    for g in straight_through_grads(eta, rows, |z| z, 1) {
        assert!((g - dp).abs() <= 1e-15, "{g} vs {dp}");
    }

    // f(z) = (z − 0.3)²: E[f] = 0.49 p + 0.09 (1 − p), so ∂/∂η = 0.4 σ'(η) …
    let tape = Tape::<f64>::new();
    let l = tape.variable(Array1::from_elem(1, eta));
    let exact = exact_expectation(
        &Bernoulli::from_logits(l).unwrap(),
        |z| (z - 0.3).square(),
        4,
    )
    .unwrap()
    .backward()
    .unwrap()
    .wrt(l)
    .unwrap()[0];
    assert!((exact - 0.4 * dp).abs() < 1e-12);
    // … while straight-through averages 2(z − 0.3)σ'(η) to 2(p − 0.3)σ'(η) = σ'(η)
    let candidates = [Candidate::new(
        "straight-through",
        Estimator::StraightThrough,
    )];
    let st_mean = 2.0 * (p - 0.3) * dp;
    let rows = rows / TAPES;
    let table = compare_rows(&candidates, TAPES, 2, Some(&[st_mean]), |candidate, rng| {
        let tape = Tape::new();
        let logits = tape.variable(Array1::from_elem(rows, eta));
        let q = Bernoulli::from_logits(logits)?;
        let z = tape.sample_with(&q, candidate.estimator(&tape), rng)?;
        assert!(
            z.value().iter().all(|&v| v == 0.0 || v == 1.0),
            "the forward value is hard"
        );
        let g = (z - 0.3).square().backward()?;
        Ok(g.wrt(logits)
            .unwrap()
            .clone()
            .into_shape_with_order((rows, 1))?)
    })
    .unwrap();
    println!("{table:#}");
    table.assert_unbiased(4.0);
    let st = &table["straight-through"].stats;
    assert!(
        (st.mean[0] - exact).abs() > 4.0 * st.std_error[0],
        "biased: {} vs exact {exact}",
        st.mean[0]
    );
}

#[test]
fn gumbel_softmax_bias_shrinks_and_variance_grows_as_the_temperature_falls() {
    // Categorical over 3 classes with cost c·x; the exact gradient of E[c_x] w.r.t. the logits
    // comes from enumeration, the relaxed estimates from one-hot relaxed draws.
    let (rows, k) = (100_000 / TAPES, 3);
    let logits0 = ndarray::array![0.2, -0.5, 1.0];
    let cost = ndarray::array![1.0, -2.0, 0.5];
    let tape = Tape::<f64>::new();
    let one = tape.variable(logits0.clone().insert_axis(Axis(0)));
    let exact = exact_expectation(
        &OneHotCategorical::from_logits(one).unwrap(),
        |x| (x * x.tape().constant(cost.clone())).sum_axis(1),
        16,
    )
    .unwrap()
    .backward()
    .unwrap()
    .wrt(one)
    .unwrap()
    .iter()
    .copied()
    .collect::<Vec<f64>>();

    let taus = [2.0, 1.0, 0.5, 0.1];
    let candidates: Vec<Candidate<f64>> = taus
        .iter()
        .map(|&temperature| {
            let hard = false;
            Candidate::new(
                format!("τ = {temperature}"),
                Estimator::GumbelSoftmax { temperature, hard },
            )
        })
        .collect();
    let table = compare_rows(&candidates, TAPES, 200, Some(&exact), |candidate, rng| {
        let tape = Tape::new();
        let logits = tape.variable(logits0.broadcast((rows, k)).unwrap().to_owned());
        let q = OneHotCategorical::from_logits(logits)?;
        let x = tape.sample_with(&q, candidate.estimator(&tape), rng)?;
        let g = (x * tape.constant(cost.clone())).sum_axis(1).backward()?;
        Ok(g.wrt(logits)
            .unwrap()
            .clone()
            .into_shape_with_order((rows, k))?)
    })
    .unwrap();
    println!("{table}");
    let (hot, cold) = (&table["τ = 2"], &table["τ = 0.1"]);
    // τ = 0.1 against τ = 2: a smaller bias (norm over the three logits), a larger variance
    // (summed over them), by more than 4 standard errors of the difference
    cold.assert_less_biased_than(hot, 4.0);
    hot.assert_less_variance_than(cold, 4.0);
}

#[test]
fn straight_through_and_gumbel_reject_continuous_distributions() {
    let tape = Tape::<f64>::new();
    let q = Normal::new(tape.scalar(0.0), tape.scalar(1.0)).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    for estimator in [
        Estimator::StraightThrough,
        Estimator::GumbelSoftmax {
            temperature: 0.5,
            hard: true,
        },
    ] {
        let err = tape.sample_with(&q, estimator, &mut rng).unwrap_err();
        assert!(
            matches!(
                err,
                stograd::Error::UnsupportedEstimator {
                    distribution: "Normal",
                    ..
                }
            ),
            "{err}"
        );
    }
    let c = Categorical::from_logits(tape.constant(ndarray::array![0.0, 1.0])).unwrap();
    let err = tape
        .sample_with(&c, Estimator::StraightThrough, &mut rng)
        .unwrap_err();
    assert!(err.to_string().contains("OneHotCategorical"), "{err}");
    let err = tape
        .sample_with(
            &c,
            Estimator::GumbelSoftmax {
                temperature: 0.0,
                hard: false,
            },
            &mut rng,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            stograd::Error::InvalidArgument {
                name: "temperature",
                ..
            }
        ),
        "{err}"
    );
}

/// `supports(e)` for every estimator kind, against whether `sample_with` accepts it.
fn check_supports<'t, D: stograd::dist::Distribution<'t, f64>>(tape: &'t Tape<f64>, d: &D) {
    let mut rng = StdRng::seed_from_u64(300);
    let estimators = [
        Estimator::Pathwise,
        Estimator::Antithetic,
        Estimator::score_function(),
        Estimator::StraightThrough,
        Estimator::GumbelSoftmax {
            temperature: 0.5,
            hard: true,
        },
    ];
    for e in estimators {
        let name = e.name();
        let claimed = d.supports(&e);
        let sampled = tape.sample_with(d, e, &mut rng);
        assert_eq!(
            claimed,
            sampled.is_ok(),
            "{} with {name}: {sampled:?}",
            d.name()
        );
    }
}

#[test]
fn supports_matches_what_sampling_accepts() {
    let tape = Tape::<f64>::new();
    let two = || tape.constant(ndarray::array![0.3, 0.6]);
    check_supports(&tape, &Normal::new(two(), two()).unwrap());
    check_supports(&tape, &stograd::dist::Exponential::new(two()).unwrap());
    check_supports(&tape, &Bernoulli::from_probs(two()).unwrap());
    let logits = || tape.constant(ndarray::array![[0.3, 0.6, 0.1], [0.0, 1.0, -1.0]]);
    check_supports(&tape, &Categorical::from_logits(logits()).unwrap());
    check_supports(&tape, &OneHotCategorical::from_logits(logits()).unwrap());
}
