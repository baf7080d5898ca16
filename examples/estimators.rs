//! Gradient estimators side by side: for a set of problems with a known gradient, each
//! applicable estimator's mean gradient against the exact value, its one-sample variance, its
//! tail index (a warning when the variance looks infinite) and its time per sample.
//!
//! ```text
//! cargo run --release --example estimators
//! cargo run --release --example estimators -- --samples 400000 --seed 3 --csv table.csv
//! ```
//!
//! Each estimate comes from one tape holding `--samples` independent draws (the parameters are
//! broadcast along a leading batch axis, and per-row credit assignment gives each row its own
//! single-sample gradient), so the mean, variance and standard error are over rows.
//! The table is printed and written as CSV; docs/estimators.md explains how to read it.

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use ndarray::{Array1, ArrayD, Axis};
use rand::SeedableRng;
use rand::rngs::StdRng;
use stograd::diagnostics::{INFINITE_VARIANCE_TAIL, hill_tail_index};
use stograd::dist::{Bernoulli, Cauchy, Normal, OneHotCategorical};
use stograd::estimator::Baseline;
use stograd::{Estimator, Tape, Var};

/// Compare gradient estimators on problems with a known gradient.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Independent single-sample gradients per estimator (rows of one batch).
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(16..))]
    samples: u64,
    /// Seed of the random number generator.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the table as CSV.
    #[arg(long, default_value = "target/estimators.csv")]
    csv: PathBuf,
}

/// One row of the table.
struct Row {
    problem: &'static str,
    estimator: String,
    exact: Option<f64>,
    mean: f64,
    std_error: f64,
    variance: f64,
    tail_index: f64,
    ns_per_sample: f64,
}

/// Records `n` draws and returns one single-sample gradient per row.
type Run = fn(&Tape<f64>, usize, Kind, &mut StdRng) -> stograd::Result<ArrayD<f64>>;

/// A problem: a distribution over a batch of `n` rows built from one parameter `θ` (its
/// gradient is what is estimated), a per-row cost, and the exact gradient if it exists.
struct Problem {
    name: &'static str,
    exact: Option<f64>,
    estimators: Vec<(&'static str, Kind)>,
    run: Run,
}

/// The estimators, without the tape-bound state a `Baseline::Learned` would need.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Pathwise,
    Antithetic,
    Score,
    ScoreConstant(f64),
    ScoreLeaveOneOut,
    StraightThrough,
    Gumbel(f64, bool),
}

impl Kind {
    fn estimator<'t>(self) -> Estimator<'t, f64> {
        match self {
            Kind::Pathwise => Estimator::Pathwise,
            Kind::Antithetic => Estimator::Antithetic,
            Kind::Score => Estimator::score_function(),
            Kind::ScoreConstant(c) => Estimator::ScoreFunction {
                baseline: Baseline::Constant(c),
            },
            Kind::ScoreLeaveOneOut => Estimator::ScoreFunction {
                baseline: Baseline::LeaveOneOut { group: 4 },
            },
            Kind::StraightThrough => Estimator::StraightThrough,
            Kind::Gumbel(temperature, hard) => Estimator::GumbelSoftmax { temperature, hard },
        }
    }
}

const MU: f64 = 1.0;
const SIGMA: f64 = 1.0;
/// The Bernoulli problem's logit: p = σ(0.4) ≈ 0.599.
const ETA: f64 = 0.4;
const CATEGORY_LOGITS: [f64; 3] = [0.2, -0.5, 1.0];
const CATEGORY_COST: [f64; 3] = [1.0, -2.0, 0.5];

/// ∂/∂μ of a per-row cost of `z ~ q(μ)`, one gradient per row.
fn normal_grad(
    tape: &Tape<f64>,
    n: usize,
    kind: Kind,
    rng: &mut StdRng,
    f: for<'t> fn(Var<'t, f64>) -> Var<'t, f64>,
    cauchy: bool,
) -> stograd::Result<ArrayD<f64>> {
    let mu = tape.variable(Array1::from_elem(n, MU));
    let sigma = tape.constant(Array1::from_elem(n, SIGMA));
    let z = if cauchy {
        tape.sample_with(&Cauchy::new(mu, sigma)?, kind.estimator(), rng)?
    } else {
        tape.sample_with(&Normal::new(mu, sigma)?, kind.estimator(), rng)?
    };
    let grads = f(z).backward()?;
    Ok(grads.wrt(mu).expect("μ reaches the cost").clone())
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn problems() -> Vec<Problem> {
    use Kind::*;
    let continuous = |b: f64| {
        vec![
            ("pathwise", Pathwise),
            ("antithetic", Antithetic),
            ("score function", Score),
            ("score function, constant baseline", ScoreConstant(b)),
            ("score function, leave-one-out (4)", ScoreLeaveOneOut),
        ]
    };
    let discrete = |b: f64| {
        vec![
            ("score function", Score),
            ("score function, constant baseline", ScoreConstant(b)),
            ("score function, leave-one-out (4)", ScoreLeaveOneOut),
            ("straight-through", StraightThrough),
            ("Gumbel-softmax τ=1", Gumbel(1.0, false)),
            ("Gumbel-softmax τ=0.5", Gumbel(0.5, false)),
            ("straight-through Gumbel τ=1", Gumbel(1.0, true)),
        ]
    };
    let p = sigmoid(ETA);
    let probs: Vec<f64> = {
        let e: Vec<f64> = CATEGORY_LOGITS.iter().map(|l| l.exp()).collect();
        let total: f64 = e.iter().sum();
        e.iter().map(|v| v / total).collect()
    };
    let mean_cost: f64 = probs.iter().zip(CATEGORY_COST).map(|(p, c)| p * c).sum();
    vec![
        Problem {
            name: "Normal, f = z²",
            // E[z²] = μ² + σ²
            exact: Some(2.0 * MU),
            estimators: continuous(MU * MU + SIGMA * SIGMA),
            run: |t, n, k, r| normal_grad(t, n, k, r, |z| z.square(), false),
        },
        Problem {
            name: "Normal, f = z³",
            // E[z³] = μ³ + 3μσ²
            exact: Some(3.0 * (MU * MU + SIGMA * SIGMA)),
            estimators: continuous(MU.powi(3) + 3.0 * MU * SIGMA * SIGMA),
            run: |t, n, k, r| normal_grad(t, n, k, r, |z| z.powf(3.0), false),
        },
        Problem {
            name: "Normal, f = sin z",
            // E[sin z] = sin μ · e^{−σ²/2}
            exact: Some(MU.cos() * (-SIGMA * SIGMA / 2.0).exp()),
            estimators: continuous(MU.sin() * (-SIGMA * SIGMA / 2.0).exp()),
            run: |t, n, k, r| normal_grad(t, n, k, r, |z| z.sin(), false),
        },
        Problem {
            name: "Bernoulli, f = (b − 0.45)²",
            // ∂/∂η E[f] = (f(1) − f(0)) σ'(η) = 0.1 p (1 − p)
            exact: Some(0.1 * p * (1.0 - p)),
            estimators: discrete(p * 0.3025 + (1.0 - p) * 0.2025),
            run: |tape, n, kind, rng| {
                let eta = tape.variable(Array1::from_elem(n, ETA));
                let b = tape.sample_with(&Bernoulli::from_logits(eta)?, kind.estimator(), rng)?;
                let grads = (b - 0.45).square().backward()?;
                Ok(grads.wrt(eta).expect("η reaches the cost").clone())
            },
        },
        Problem {
            name: "Categorical, f = c·x",
            // ∂/∂ℓ₀ E[c_x] = p₀ (c₀ − Σ p c)
            exact: Some(probs[0] * (CATEGORY_COST[0] - mean_cost)),
            estimators: discrete(mean_cost),
            run: |tape, n, kind, rng| {
                let logits = tape.variable(
                    Array1::from(CATEGORY_LOGITS.to_vec())
                        .broadcast((n, 3))
                        .unwrap()
                        .to_owned(),
                );
                let q = OneHotCategorical::from_logits(logits)?;
                let x = tape.sample_with(&q, kind.estimator(), rng)?;
                let cost = tape.constant(Array1::from(CATEGORY_COST.to_vec()));
                let grads = (x * cost).sum_axis(1).backward()?;
                let g = grads.wrt(logits).expect("the logits reach the cost");
                Ok(g.index_axis(Axis(1), 0).to_owned())
            },
        },
        Problem {
            name: "Cauchy, f = z²",
            // E[z²] = ∞: there is no gradient to estimate
            exact: None,
            estimators: vec![("pathwise", Pathwise), ("score function", Score)],
            run: |t, n, k, r| normal_grad(t, n, k, r, |z| z.square(), true),
        },
    ]
}

fn measure(
    problem: &Problem,
    name: &str,
    kind: Kind,
    n: usize,
    rng: &mut StdRng,
) -> stograd::Result<Row> {
    let start = Instant::now();
    let tape = Tape::new();
    let g = (problem.run)(&tape, n, kind, rng)?;
    let elapsed = start.elapsed();
    let draws = g.len() as f64;
    let values: Vec<f64> = g.iter().copied().collect();
    // Antithetic rows i and i + n/2 form one estimate: summarize the pair means, and report
    // the variance per draw (twice a pair mean's variance) so every row costs the same.
    let (values, per_draw) = match kind {
        Kind::Antithetic => {
            let (first, second) = values.split_at(values.len() / 2);
            (
                first
                    .iter()
                    .zip(second)
                    .map(|(a, b)| (a + b) / 2.0)
                    .collect(),
                2.0,
            )
        }
        _ => (values, 1.0),
    };
    let len = values.len() as f64;
    let mean = values.iter().sum::<f64>() / len;
    let variance = per_draw * values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (len - 1.0);
    Ok(Row {
        problem: problem.name,
        estimator: name.to_owned(),
        exact: problem.exact,
        mean,
        std_error: (variance / draws).sqrt(),
        variance,
        tail_index: hill_tail_index(&values),
        ns_per_sample: elapsed.as_secs_f64() * 1e9 / draws,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Leave-one-out groups of 4 and antithetic pairs need a multiple of 4 rows.
    let n = (args.samples as usize / 4) * 4;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut rows = Vec::new();
    for problem in problems() {
        for &(name, kind) in &problem.estimators {
            match measure(&problem, name, kind, n, &mut rng) {
                Ok(row) => rows.push(row),
                Err(e) => {
                    eprintln!("error: {} with {name}: {e}", problem.name);
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    print_table(&rows, n);
    match write_csv(&args.csv, &rows) {
        Ok(()) => {
            println!("\nwrote {}", args.csv.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", args.csv.display());
            ExitCode::FAILURE
        }
    }
}

fn print_table(rows: &[Row], n: usize) {
    println!("{n} draws per estimator. variance: of a one-draw gradient (antithetic: twice that");
    println!("of a pair's mean, i.e. per draw at equal cost). z: bias in standard errors (|z| > 4");
    println!(
        "is significant). tail: Hill index of |g|; heavy = below {INFINITE_VARIANCE_TAIL}: the variance looks infinite.\n"
    );
    println!(
        "{:<27} {:<35} {:>9} {:>10} {:>8} {:>7} {:>11} {:>6} {:>8}",
        "problem", "estimator", "exact", "mean", "± s.e.", "z", "variance", "tail", "ns/draw"
    );
    let mut last = "";
    for r in rows {
        if r.problem != last && !last.is_empty() {
            println!();
        }
        last = r.problem;
        let (exact, z) = match r.exact {
            // a deterministic estimate (zero variance) is compared to rounding, not in s.e.
            Some(e) if r.std_error <= 1e-12 * e.abs().max(1.0) => {
                let exact = (r.mean - e).abs() <= 1e-9 * e.abs().max(1.0);
                (
                    format!("{e:.5}"),
                    if exact { "exact" } else { "off" }.to_string(),
                )
            }
            Some(e) => (
                format!("{e:.5}"),
                format!("{:+.1}", (r.mean - e) / r.std_error),
            ),
            None => ("none".into(), "—".into()),
        };
        let heavy = if r.tail_index < INFINITE_VARIANCE_TAIL {
            " heavy"
        } else {
            ""
        };
        let tail = if r.tail_index > 99.0 {
            ">99".into()
        } else {
            format!("{:.2}", r.tail_index)
        };
        println!(
            "{:<27} {:<35} {:>9} {:>10.5} {:>8.5} {:>7} {:>11.5} {:>6} {:>8.1}{heavy}",
            r.problem,
            r.estimator,
            exact,
            r.mean,
            r.std_error,
            z,
            r.variance,
            tail,
            r.ns_per_sample
        );
    }
}

fn write_csv(path: &PathBuf, rows: &[Row]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut out =
        String::from("problem,estimator,exact,mean,std_error,variance,tail_index,ns_per_sample\n");
    for r in rows {
        let exact = r.exact.map_or(String::new(), |e| e.to_string());
        out.push_str(&format!(
            "\"{}\",\"{}\",{exact},{},{},{},{},{}\n",
            r.problem, r.estimator, r.mean, r.std_error, r.variance, r.tail_index, r.ns_per_sample
        ));
    }
    fs::write(path, out)
}
