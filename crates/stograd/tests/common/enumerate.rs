//! Exact gradients of an expectation over every discrete draw of a graph, by enumeration,
//! and Monte Carlo estimates of the same gradient from independent tapes.
//!
//! A [`Graph`] builds its cost through [`Draws::draw`]. In sample mode each call records a
//! sample node with the graph's estimator; in forced mode it returns one fixed outcome as a
//! constant and adds its `log q` to the outcome's weight. Summing `exp(Σ log q) · cost` over
//! every joint outcome gives `E[cost]` as an ordinary differentiable value, so its backward
//! pass is the exact gradient, including the parts that flow through later draws' parameters
//! and through path gradients (which forced and sampled runs share).

use ndarray::{ArrayD, Axis, IxDyn};
use rand::SeedableRng;
use rand::rngs::StdRng;
use stograd::dist::Distribution;
use stograd::{Estimator, Tape, Var};

/// A cost over draws, and the parameters whose gradient is checked.
pub trait Graph {
    /// The initial values of the parameters (`θ`).
    fn thetas(&self) -> Vec<ArrayD<f64>>;

    /// Builds the cost from `θ` (recorded once per tape), drawing through `draws`.
    fn build<'t>(
        &self,
        tape: &'t Tape<f64>,
        thetas: &[Var<'t, f64>],
        draws: &mut Draws<'_, 't>,
    ) -> stograd::Result<Var<'t, f64>>;
}

enum Mode<'a> {
    Sample(&'a mut StdRng),
    Forced(&'a [ArrayD<f64>]),
}

/// Where a graph gets its draws from.
pub struct Draws<'a, 't> {
    mode: Mode<'a>,
    next: usize,
    log_q: Option<Var<'t, f64>>,
    /// Every joint outcome of each draw, in call order (filled in sample mode).
    outcomes: Vec<Vec<ArrayD<f64>>>,
}

impl<'t> Draws<'_, 't> {
    /// A draw from `dist` with `estimator` (sample mode) or the forced outcome.
    pub fn draw<D: Distribution<'t, f64>>(
        &mut self,
        tape: &'t Tape<f64>,
        dist: &D,
        estimator: Estimator<'t, f64>,
    ) -> Var<'t, f64> {
        match &mut self.mode {
            Mode::Sample(rng) => {
                self.outcomes.push(joint_outcomes(dist));
                tape.sample_with(dist, estimator, *rng)
                    .expect("the estimator fits")
            }
            Mode::Forced(values) => {
                let x = tape.constant(values[self.next].clone());
                self.next += 1;
                let lp = dist.log_prob(x).sum();
                self.log_q = Some(match self.log_q {
                    Some(acc) => acc + lp,
                    None => lp,
                });
                x
            }
        }
    }
}

/// Every value the whole batch of `dist` can take, each of the draw's shape.
fn joint_outcomes<'t, D: Distribution<'t, f64>>(dist: &D) -> Vec<ArrayD<f64>> {
    let support = dist.enumerate_support().expect("a finite support");
    let values = support.shape()[0];
    let elements: usize = dist.batch_shape().iter().product();
    let event: usize = dist.event_shape().iter().product();
    let per_value = support
        .to_shape((values, elements, event))
        .expect("[values, batch.., event..]")
        .to_owned();
    let shape: Vec<usize> = dist
        .batch_shape()
        .iter()
        .chain(dist.event_shape())
        .copied()
        .collect();
    let count = values.pow(elements as u32);
    (0..count)
        .map(|outcome| {
            let mut x = ArrayD::zeros(IxDyn(&[elements, event]));
            let mut code = outcome;
            for (element, mut row) in x.outer_iter_mut().enumerate() {
                row.assign(
                    &per_value
                        .index_axis(Axis(0), code % values)
                        .index_axis(Axis(0), element),
                );
                code /= values;
            }
            x.into_shape_with_order(IxDyn(&shape)).expect("same count")
        })
        .collect()
}

/// The gradient of `E[Σ cost]` with respect to every `θ`, flattened in order.
pub fn exact_gradient(graph: &impl Graph) -> Vec<f64> {
    // A sampled run finds the draws and their outcomes (which do not depend on the values).
    let probe = Tape::new();
    let thetas = leaves(&probe, graph);
    let mut rng = StdRng::seed_from_u64(0);
    let mut draws = Draws {
        mode: Mode::Sample(&mut rng),
        next: 0,
        log_q: None,
        outcomes: Vec::new(),
    };
    graph
        .build(&probe, &thetas, &mut draws)
        .expect("the graph builds");
    let sites = draws.outcomes;
    let joint: usize = sites.iter().map(Vec::len).product();
    assert!(
        joint <= 1 << 14,
        "{joint} joint outcomes are too many to enumerate"
    );

    let tape = Tape::new();
    let thetas = leaves(&tape, graph);
    let mut expectation = tape.scalar(0.0);
    for outcome in 0..joint {
        let mut code = outcome;
        let values: Vec<ArrayD<f64>> = sites
            .iter()
            .map(|site| {
                let v = site[code % site.len()].clone();
                code /= site.len();
                v
            })
            .collect();
        let mut draws = Draws {
            mode: Mode::Forced(&values),
            next: 0,
            log_q: None,
            outcomes: Vec::new(),
        };
        let cost = graph
            .build(&tape, &thetas, &mut draws)
            .expect("the graph builds")
            .sum();
        let weight = draws.log_q.expect("at least one draw").exp();
        expectation = expectation + weight * cost;
    }
    flat_gradient(&expectation.backward().expect("exact backward"), &thetas)
}

/// The mean and standard error of each gradient coordinate over `reps` independent tapes.
///
/// # Errors
/// The first error a tape's backward (or the graph) returned.
pub fn estimate(
    graph: &impl Graph,
    reps: usize,
    seed: u64,
) -> stograd::Result<(Vec<f64>, Vec<f64>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sum: Vec<f64> = Vec::new();
    let mut sum_sq: Vec<f64> = Vec::new();
    for _ in 0..reps {
        let tape = Tape::new();
        let thetas = leaves(&tape, graph);
        let mut draws = Draws {
            mode: Mode::Sample(&mut rng),
            next: 0,
            log_q: None,
            outcomes: Vec::new(),
        };
        let cost = graph.build(&tape, &thetas, &mut draws)?;
        let g = flat_gradient(&cost.backward()?, &thetas);
        if sum.is_empty() {
            sum = vec![0.0; g.len()];
            sum_sq = vec![0.0; g.len()];
        }
        for ((s, q), v) in sum.iter_mut().zip(&mut sum_sq).zip(&g) {
            *s += v;
            *q += v * v;
        }
    }
    let n = reps as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let se = sum_sq
        .iter()
        .zip(&mean)
        .map(|(q, m)| ((q / n - m * m).max(0.0) * n / (n - 1.0) / n).sqrt())
        .collect();
    Ok((mean, se))
}

fn leaves<'t>(tape: &'t Tape<f64>, graph: &impl Graph) -> Vec<Var<'t, f64>> {
    graph
        .thetas()
        .into_iter()
        .map(|t| tape.variable(t))
        .collect()
}

fn flat_gradient(grads: &stograd::Gradients<f64>, thetas: &[Var<'_, f64>]) -> Vec<f64> {
    thetas
        .iter()
        .flat_map(|&t| match grads.wrt(t) {
            Some(g) => g.iter().copied().collect::<Vec<_>>(),
            None => vec![0.0; t.len()],
        })
        .collect()
}

/// The coordinates where the estimate is further from the truth than `z` standard errors:
/// `(coordinate, estimate, s.e., truth)`. A coordinate with no spread must match to rounding.
pub fn outliers(mean: &[f64], se: &[f64], truth: &[f64], z: f64) -> Vec<(usize, f64, f64, f64)> {
    (0..truth.len())
        .filter(|&i| {
            let rounding = 1e-9 * (1.0 + truth[i].abs());
            (mean[i] - truth[i]).abs() > z * se[i] + rounding
        })
        .map(|i| (i, mean[i], se[i], truth[i]))
        .collect()
}

/// Asserts that every coordinate is within `z` standard errors of the truth.
#[track_caller]
pub fn assert_unbiased(mean: &[f64], se: &[f64], truth: &[f64], z: f64, what: &str) {
    let bad = outliers(mean, se, truth, z);
    assert!(
        bad.is_empty(),
        "{what}: (coordinate, estimate, s.e., exact) beyond {z} s.e.: {bad:?}"
    );
}

/// The two-sided critical value for `tests` tests at family-wise error rate `alpha`
/// (Bonferroni): the `z` with `P(|Z| > z) ≤ alpha / tests`, from the Mills-ratio bound
/// `P(|Z| > z) ≤ 2φ(z)/z`, which makes it slightly conservative.
pub fn bonferroni_z(alpha: f64, tests: usize) -> f64 {
    let target = alpha / tests as f64;
    let tail = |z: f64| 2.0 * (-z * z / 2.0).exp() / (z * (2.0 * std::f64::consts::PI).sqrt());
    let (mut lo, mut hi) = (1.0, 40.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if tail(mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}
