//! The estimator comparison harness (`stograd::diagnostics::compare`) on a model whose
//! gradient is known exactly: three Bernoulli latents `zⱼ ~ Bernoulli(σ(θⱼ))` coupled by the
//! cost `f(z) = (w·z − c)²`, its exact gradient from enumerating the 8 outcomes.
//!
//! - REINFORCE with every baseline is unbiased, and the good baselines lower its variance;
//! - Gumbel-softmax's bias shrinks as τ falls while its variance grows (τ = 1, 0.5, 0.1);
//! - straight-through is exact for a linear cost and, for the square, biased by exactly what
//!   the theory says (derived below), with the sign of `2p − 1`;
//! - the harness fails when it should: a biased estimator, a variance that is not lower;
//!   common random numbers, errors and the printed tables.
//!
//! Seed policy and family-wise error: every comparison has a fixed seed. The statistical
//! assertions that a correct implementation could fail by chance are 22 two-sided tests at 4
//! standard errors (`P(|Z| > 4) = 6.3·10⁻⁵`: REINFORCE's 6 estimators × 3 coordinates, the
//! straight-through square's coordinate at `p = ½` and its 3 coordinates against the derived
//! expectation) and 7 one-sided ones at 4 (`3.2·10⁻⁵`: 2 baselines' variances, 4 Gumbel
//! orderings, 1 variance bound), so for a fresh seed the family-wise error rate is below
//! `22 · 6.3·10⁻⁵ + 7 · 3.2·10⁻⁵ ≈ 1.6·10⁻³` (Bonferroni). The assertions that an estimator
//! *is* flagged cannot fail by chance in that way; they fail if the harness loses its power.

use crate::common::panic_message;
use ndarray::{Array1, Array2};
use stograd::diagnostics::{Candidate, Comparison, compare, compare_rows, flat_gradient};
use stograd::dist::{Bernoulli, Distribution};
use stograd::estimator::{Baseline, EmaBaseline, exact_expectation};
use stograd::{Estimator, Tape, Var};

/// The latents' logits: `p = σ(θ) ≈ (0.5, 0.289, 0.786)`; the first sits at `p = ½`, where
/// straight-through's bias vanishes.
const THETA: [f64; 3] = [0.0, -0.9, 1.3];
const W: [f64; 3] = [1.0, -2.0, 1.5];
const C: f64 = 0.5;
/// Draws per tape in the REINFORCE model: the leave-one-out groups.
const K: usize = 4;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `(w·z − c)²` over the last axis of `z` (`[3]` or `[rows, 3]`).
fn square(z: Var<'_, f64>) -> Var<'_, f64> {
    (linear(z) - C).square()
}

/// `w·z` over the last axis of `z`.
fn linear(z: Var<'_, f64>) -> Var<'_, f64> {
    let w = z.tape().constant(Array1::from(W.to_vec()));
    (z * w).sum_axis(z.ndim() - 1)
}

/// `∇θ E[f(z)]` by enumerating the 8 joint outcomes.
fn exact(f: for<'t> fn(Var<'t, f64>) -> Var<'t, f64>) -> Vec<f64> {
    let tape = Tape::new();
    let theta = tape.variable(Array1::from(THETA.to_vec()));
    let e = exact_expectation(&Bernoulli::from_logits(theta).unwrap(), f, 8).unwrap();
    flat_gradient(&e.backward().unwrap(), &[theta])
}

/// The REINFORCE model: `K` draws of the three latents per tape, all from `θ`, the cost
/// averaged over them; one estimate per tape.
fn reinforce(candidates: &[Candidate<f64>], replicates: usize, seed: u64) -> Comparison {
    compare(
        candidates,
        replicates,
        seed,
        Some(&exact(square)),
        |candidate, rng| {
            let tape = Tape::new();
            let theta = tape.variable(Array1::from(THETA.to_vec()));
            let q = Bernoulli::from_logits(theta.broadcast_to(&[K, 3]))?;
            let z = tape.sample_with(&q, candidate.estimator(&tape), rng)?;
            Ok(flat_gradient(&square(z).mean().backward()?, &[theta]))
        },
    )
    .unwrap()
}

fn score(baseline: Baseline<'_, f64>) -> Estimator<'_, f64> {
    Estimator::ScoreFunction { baseline }
}

/// Every baseline the engine has.
fn reinforce_candidates() -> Vec<Candidate<f64>> {
    vec![
        Candidate::new("none", Estimator::score_function()),
        Candidate::new("constant", score(Baseline::Constant(1.0))),
        Candidate::new("EMA", score(Baseline::Ema(EmaBaseline::new(0.9).unwrap()))),
        // any value that does not depend on the draw keeps the estimator unbiased
        Candidate::from_fn("learned, per row", |tape| {
            score(Baseline::Learned(tape.variable(Array1::from_elem(K, 0.8))))
        }),
        Candidate::from_fn("learned, scalar", |tape| {
            score(Baseline::Learned(tape.scalar(0.3)))
        }),
        Candidate::new("leave-one-out", score(Baseline::LeaveOneOut { group: K })),
    ]
}

#[test]
fn reinforce_is_unbiased_with_every_baseline() {
    let table = reinforce(&reinforce_candidates(), 3_000, 1);
    println!("{table}\n{table:#}");
    // 6 estimators × 3 coordinates
    table.assert_unbiased(4.0);
    // a baseline near E[f] (the moving average, the other draws' mean) lowers the variance
    for good in ["EMA", "leave-one-out"] {
        table[good].assert_less_variance_than(&table["none"], 4.0);
    }
}

/// One-draw estimates from `rows` independent copies of the model per tape: per-row logits
/// `[rows, 3]`, so that each row's gradient is its own draw's.
fn per_row(
    candidates: &[Candidate<f64>],
    f: for<'t> fn(Var<'t, f64>) -> Var<'t, f64>,
    exact: &[f64],
    seed: u64,
) -> Comparison {
    let rows = 5_000;
    let logits = Array2::from_shape_fn((rows, 3), |(_, j)| THETA[j]);
    compare_rows(candidates, 20, seed, Some(exact), |candidate, rng| {
        let tape = Tape::new();
        let theta = tape.variable(logits.clone());
        let z = tape.sample_with(
            &Bernoulli::from_logits(theta)?,
            candidate.estimator(&tape),
            rng,
        )?;
        let g = f(z).sum().backward()?;
        Ok(g.wrt(theta)
            .unwrap()
            .clone()
            .into_shape_with_order((rows, 3))?)
    })
    .unwrap()
}

#[test]
fn gumbel_softmax_bias_shrinks_and_variance_grows_as_the_temperature_falls() {
    let taus = [1.0, 0.5, 0.1];
    let candidates: Vec<Candidate<f64>> = taus
        .iter()
        .map(|&tau| {
            Candidate::new(
                format!("τ = {tau}"),
                Estimator::GumbelSoftmax {
                    temperature: tau,
                    hard: false,
                },
            )
        })
        .collect();
    let table = per_row(&candidates, square, &exact(square), 2);
    println!("{table}\n{table:#}");
    let [hot, warm, cold] = [&table["τ = 1"], &table["τ = 0.5"], &table["τ = 0.1"]];
    // biased at τ > 0 (flagged at τ = 1 and 0.5, by 225 and 53 s.e. on coordinate 0; at
    // τ = 0.1 the bias is about 5 of its standard errors, too close to call), less so as τ
    // falls …
    for r in [hot, warm] {
        assert!(r.check_unbiased(4.0).is_err(), "{} not flagged", r.label);
    }
    warm.assert_less_biased_than(hot, 4.0);
    cold.assert_less_biased_than(warm, 4.0);
    // … while the variance grows
    hot.assert_less_variance_than(warm, 4.0);
    warm.assert_less_variance_than(cold, 4.0);
}

/// `∂/∂θⱼ` of `E[w·z]` and of `E[(w·z − c)²]`, and what straight-through averages to.
///
/// With `pⱼ = σ(θⱼ)`, `σ'ⱼ = pⱼ(1 − pⱼ)` and `S = Σ_{i≠j} wᵢzᵢ` (independent of `zⱼ`):
/// - `E[w·z] = Σ wⱼpⱼ`, so `∂/∂θⱼ = wⱼσ'ⱼ`. Straight-through passes `∂z/∂θ` as `∂p/∂θ = σ'`
///   through `∂f/∂zⱼ = wⱼ`: every draw gives `wⱼσ'ⱼ`, exact with zero variance.
/// - `E[f] = pⱼ E[(S + wⱼ − c)²] + (1 − pⱼ) E[(S − c)²]`, so `∂/∂θⱼ = σ'ⱼ (wⱼ² + 2wⱼ(E S − c))`.
///   Straight-through gives `∂f/∂zⱼ · σ'ⱼ = 2(S + wⱼzⱼ − c) wⱼσ'ⱼ`, whose mean is
///   `σ'ⱼ (2wⱼ(E S − c) + 2wⱼ²pⱼ)`. The bias is the difference, `σ'ⱼ wⱼ² (2pⱼ − 1)`: the sign of
///   `pⱼ − ½`, zero at `pⱼ = ½`, and independent of `c` and of the other latents (the chapter's
///   one-latent example, `f(z) = z²`, is `w = 1, c = 0`: bias `σ'(2p − 1)`).
fn straight_through_theory() -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let p: Vec<f64> = THETA.iter().map(|&t| sigmoid(t)).collect();
    let dp: Vec<f64> = p.iter().map(|p| p * (1.0 - p)).collect();
    let mean_s = |j: usize| (0..3).filter(|&i| i != j).map(|i| W[i] * p[i]).sum::<f64>();
    let linear: Vec<f64> = (0..3).map(|j| W[j] * dp[j]).collect();
    let square: Vec<f64> = (0..3)
        .map(|j| dp[j] * (W[j] * W[j] + 2.0 * W[j] * (mean_s(j) - C)))
        .collect();
    let bias: Vec<f64> = (0..3)
        .map(|j| dp[j] * W[j] * W[j] * (2.0 * p[j] - 1.0))
        .collect();
    (linear, square, bias)
}

#[test]
fn straight_through_bias_matches_the_theory() {
    let (linear_exact, square_exact, bias) = straight_through_theory();
    // the hand derivation against enumeration
    for (hand, enumerated) in [
        (&linear_exact, exact(linear)),
        (&square_exact, exact(square)),
    ] {
        for (a, b) in hand.iter().zip(&enumerated) {
            assert!((a - b).abs() < 1e-12, "{hand:?} vs {enumerated:?}");
        }
    }
    let st = [Candidate::new(
        "straight-through",
        Estimator::StraightThrough,
    )];

    // f(z) = w·z: exact, every draw the same
    let table = per_row(&st, linear, &linear_exact, 3);
    println!("{table:#}");
    table.assert_unbiased(4.0);
    assert_eq!(table.reports[0].total_variance, 0.0);

    // f(z) = (w·z − c)²: against the exact gradient only the coordinates with p ≠ ½ are
    // flagged, each with the sign of 2p − 1 …
    let table = per_row(&st, square, &square_exact, 4);
    println!("{table:#}");
    let flagged = table.check_unbiased(4.0).unwrap_err();
    let coordinates: Vec<usize> = flagged.iter().map(|b| b.coordinate).collect();
    assert_eq!(coordinates, [1, 2], "{flagged:?}");
    for b in &flagged {
        let j = b.coordinate;
        assert_eq!(
            (b.mean - b.exact).signum(),
            (sigmoid(THETA[j]) - 0.5).signum()
        );
        assert_eq!(b.label, "straight-through");
    }
    // … and the mean is the derived straight-through expectation, exact + σ'w²(2p − 1)
    let derived: Vec<f64> = square_exact.iter().zip(&bias).map(|(e, b)| e + b).collect();
    per_row(&st, square, &derived, 4).assert_unbiased(4.0);
}

#[test]
fn assert_unbiased_flags_a_deliberately_biased_estimator() {
    // REINFORCE by hand with a classic bug: the baseline is the mean cost of the group
    // *including* the draw itself, so each draw's weight is c_r − c̄ = (1 − 1/K)(c_r − b_r) with
    // b_r the leave-one-out mean: the gradient shrinks by 1/K = 25%.
    let candidates = [Candidate::<f64>::new(
        "leave-one-in",
        Estimator::score_function(),
    )];
    let table = compare(&candidates, 3_000, 5, Some(&exact(square)), |_, rng| {
        let tape = Tape::new();
        let theta = tape.variable(Array1::from(THETA.to_vec()));
        let q = Bernoulli::from_logits(theta.broadcast_to(&[K, 3]))?;
        let z = tape.constant(q.sample(rng));
        let cost = square(z).value();
        let weight = &cost - cost.mean().unwrap();
        let surrogate = q.log_prob(z).sum_axis(1) * tape.constant(weight) * (1.0 / K as f64);
        Ok(flat_gradient(&surrogate.sum().backward()?, &[theta]))
    })
    .unwrap();
    println!("{table:#}");
    let message = panic_message(|| table.assert_unbiased(4.0));
    // the message names the estimator, the coordinate, the values and the standard error
    let flagged = table.check_unbiased(4.0).unwrap_err();
    let worst = flagged
        .iter()
        .max_by(|a, b| a.z().abs().total_cmp(&b.z().abs()))
        .unwrap();
    for part in [
        "biased".to_owned(),
        "\"leave-one-in\"".to_owned(),
        format!("coordinate {}", worst.coordinate),
        "s.e.".to_owned(),
        "exact".to_owned(),
    ] {
        assert!(message.contains(&part), "{part:?} not in {message:?}");
    }
    // the right sign: shrunk towards 0
    assert!(flagged.iter().all(|b| (b.mean - b.exact) * b.exact < 0.0));
}

#[test]
#[should_panic(expected = "is not below")]
fn assert_less_variance_than_fails_when_the_variance_is_higher() {
    let table = reinforce(&reinforce_candidates(), 2_000, 6);
    table["none"].assert_less_variance_than(&table["leave-one-out"], 4.0);
}

#[test]
fn assert_variance_below_takes_a_number() {
    let table = reinforce(&reinforce_candidates()[..1], 2_000, 7);
    let r = &table["none"];
    r.assert_variance_below(2.0 * r.total_variance, 4.0);
    let e = r.check_variance_below(r.total_variance, 4.0).unwrap_err();
    assert_eq!((e.label.as_str(), e.quantity), ("none", "total variance"));
    assert!(e.to_string().contains("is not below"), "{e}");
}

#[test]
fn candidates_share_random_numbers_replicate_by_replicate() {
    // two candidates with the same estimator see the same draws, so their estimates agree
    // exactly; a rerun with the same seed repeats them, another seed does not
    let candidates = [
        Candidate::new("a", Estimator::score_function()),
        Candidate::new("b", Estimator::score_function()),
    ];
    let run = |seed| reinforce(&candidates, 50, seed);
    let table = run(11);
    assert_eq!(table["a"].stats, table["b"].stats);
    assert_eq!(table["a"].stats, run(11)["a"].stats);
    assert_ne!(table["a"].stats.mean, run(12)["a"].stats.mean);
    // paired differences of identical estimators have no spread
    assert_eq!(
        table["a"]
            .check_less_variance_than(&table["b"], 4.0)
            .unwrap_err()
            .std_error,
        0.0
    );
}

#[test]
fn bad_input_is_an_error_and_misuse_panics() {
    let candidates = [Candidate::<f64>::new("pathwise", Estimator::Pathwise)];
    let ones = |n: usize| move |_: &Candidate<f64>, _: &mut _| Ok(vec![1.0; n]);
    type Boxed = Box<dyn std::error::Error + Send + Sync>;
    let message = |r: Result<Comparison, Boxed>| r.unwrap_err().to_string();
    assert!(message(compare(&candidates, 0, 0, None, ones(2))).contains("replicates"));
    assert!(message(compare(&[], 3, 0, None, ones(2))).contains("candidates"));
    assert!(message(compare(&candidates, 1, 0, None, ones(2))).contains("at least 2"));
    let m = message(compare(&candidates, 3, 0, Some(&[0.0; 3]), ones(2)));
    assert!(m.contains("exact gradient") && m.contains("[1, 3]"), "{m}");
    let mut calls = 0;
    let growing = compare(&candidates, 3, 0, None, |_, _| {
        calls += 1;
        Ok(vec![0.5; calls])
    });
    assert!(message(growing).contains("as long as the first"));
    // the closure's own errors come back as they are
    let failing = compare(&candidates, 3, 0, None, |_, _| {
        Err("the model failed".into())
    });
    assert_eq!(message(failing), "the model failed");

    let twice = [candidates[0].clone(), candidates[0].clone()];
    let m = panic_message(|| compare(&twice, 3, 0, None, ones(1)));
    assert!(
        m.contains("\"pathwise\"") && m.contains("tests/compare.rs"),
        "{m}"
    );
    let table = compare(&candidates, 3, 0, None, ones(1)).unwrap();
    let m = panic_message(|| table.assert_unbiased(4.0));
    assert!(m.contains("without the exact gradient"), "{m}");
    let m = panic_message(|| &table["reinforce"]);
    assert!(
        m.contains("\"reinforce\"") && m.contains("[\"pathwise\"]"),
        "{m}"
    );
}

#[test]
fn tables_print_as_markdown_and_csv() {
    let candidates = &reinforce_candidates()[..2];
    let table = reinforce(candidates, 100, 8);
    let summary = table.to_string();
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(lines.len(), 2 + candidates.len(), "{summary}");
    assert!(
        lines[0].starts_with("| estimator | estimates | ‖bias‖"),
        "{summary}"
    );
    assert!(lines[2].starts_with("| none | 100 |"), "{summary}");
    let detail = format!("{table:#}");
    assert_eq!(detail.lines().count(), 2 + 3 * candidates.len(), "{detail}");
    let csv = table.to_csv();
    assert_eq!(csv.lines().count(), 1 + 3 * candidates.len());
    assert!(csv.starts_with("estimator,coordinate,exact,mean,std_error,z,"));
    // every number at full precision: the CSV's means are the report's
    let mean: f64 = csv
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(mean, table["none"].stats.mean[0]);
    // a label with a comma is quoted
    let labelled = [Candidate::new(
        "reinforce, none",
        Estimator::score_function(),
    )];
    assert!(
        reinforce(&labelled, 10, 9)
            .to_csv()
            .contains("\n\"reinforce, none\",0,")
    );
}

/// A NaN or infinite estimate is an error naming the run (or candidate and replicate), the
/// coordinate and the value. One NaN draw used to turn a heavy-tailed estimator's tail index
/// into ∞ (its mean and variance into NaN) and so switched off the infinite-variance warning.
#[test]
fn non_finite_estimates_are_errors_naming_the_run() {
    use rand::RngExt;
    use stograd::Error;
    use stograd::diagnostics::gradient_stats;

    // a Cauchy-tailed coordinate (tail index 1) and a light one; run 700 is NaN in coordinate 0
    let heavy = |bad: f64| {
        let mut run = 0;
        gradient_stats(2_000, 5, move |rng| {
            let u: f64 = rng.random();
            let g = vec![(std::f64::consts::PI * (u - 0.5)).tan(), u];
            run += 1;
            Ok(if run == 701 { vec![bad, u] } else { g })
        })
    };
    let stats = heavy(0.0).unwrap();
    assert_eq!(stats.heavy_tailed(), vec![0], "{:?}", stats.tail_index);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = heavy(bad).unwrap_err();
        assert!(
            matches!(
                err,
                Error::NonFiniteEstimate { function: "gradient_stats", run: 700, coordinate: 0, value, .. }
                    if value.to_bits() == bad.to_bits()
            ),
            "{err:?}"
        );
        let m = err.to_string();
        assert!(m.contains("run 700") && m.contains(&bad.to_string()), "{m}");
    }

    // compare and compare_rows: the candidate, the replicate and (with rows) the row
    let candidates = [Candidate::<f64>::new("pathwise", Estimator::Pathwise)];
    let err = compare(&candidates, 5, 0, None, |_, rng| {
        let u: f64 = rng.random();
        Ok(vec![u, if u > 0.5 { f64::NAN } else { u }])
    })
    .unwrap_err();
    let m = err.to_string();
    assert!(
        m.contains("compare: candidate \"pathwise\", replicate ")
            && m.contains("NaN at coordinate 1")
            && !m.contains("row"),
        "{m}"
    );
    let err = compare_rows(&candidates, 3, 0, None, |_, _| {
        let mut g = Array2::<f64>::ones((4, 2));
        g[[2, 0]] = f64::INFINITY;
        Ok(g)
    })
    .unwrap_err();
    let m = err.to_string();
    assert!(
        m.contains("replicate 0, row 2 returned inf at coordinate 0"),
        "{m}"
    );
}
