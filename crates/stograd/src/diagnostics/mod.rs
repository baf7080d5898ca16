//! Tools for judging gradient estimators: repeated runs summarized as mean, standard error and
//! variance per coordinate, with a tail check that warns when the variance looks infinite, and
//! a harness that compares several estimators on the same model.
//!
//! - [`gradient_stats`] runs one estimator on fresh noise and summarizes the draws.
//! - [`compare`] (and [`compare_rows`]) runs several [`Candidate`] estimators on the same
//!   model with common random numbers and returns a [`Comparison`]: bias with its standard
//!   error against an exact gradient, variance, signal-to-noise ratio and time per estimate,
//!   printable as markdown and CSV, with assertions for a `#[test]`.

mod compare;
mod report;

pub use compare::{Candidate, compare, compare_rows, flat_gradient, replicate_seed};
pub use report::{Bias, Comparison, EstimatorReport, NotBelow, TAIL_CHECK_RUNS};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::{Error, Result};

/// Tail indices below this mean the estimator's variance is infinite (a tail `P(|g| > x)
/// ~ x^{−α}` has a finite second moment only for `α > 2`).
pub const INFINITE_VARIANCE_TAIL: f64 = 2.0;

/// A summary of `runs` independent draws of a gradient estimate.
#[derive(Clone, Debug, PartialEq)]
pub struct GradientStats {
    /// The number of runs.
    pub runs: usize,
    /// The mean gradient per coordinate.
    pub mean: Vec<f64>,
    /// The standard error of `mean`: `√(variance / runs)`.
    pub std_error: Vec<f64>,
    /// The sample variance (divisor `runs − 1`) per coordinate: the one-sample estimator's
    /// variance.
    pub variance: Vec<f64>,
    /// The Hill estimate of the tail index `α` of `|g|` per coordinate, from the largest
    /// `k = ⌈√runs⌉` values: `α̂ = k / Σᵢ₌₁ᵏ ln(X₍ᵢ₎ / X₍ₖ₊₁₎)` (∞ when the tail is flat).
    pub tail_index: Vec<f64>,
}

impl GradientStats {
    /// The coordinates whose tail index is below [`INFINITE_VARIANCE_TAIL`]: their variance
    /// (and standard error) is not to be trusted, however many runs are made.
    pub fn heavy_tailed(&self) -> Vec<usize> {
        (0..self.tail_index.len())
            .filter(|&i| self.tail_index[i] < INFINITE_VARIANCE_TAIL)
            .collect()
    }

    /// One line per heavy-tailed coordinate, for printing.
    pub fn warnings(&self) -> Vec<String> {
        self.heavy_tailed()
            .into_iter()
            .map(|i| {
                format!(
                    "coordinate {i}: tail index {:.2} < {INFINITE_VARIANCE_TAIL}: the gradient \
                     variance looks infinite; its standard error is meaningless",
                    self.tail_index[i]
                )
            })
            .collect()
    }

    /// `|mean| / √variance` per coordinate: the signal-to-noise ratio of one draw.
    pub fn snr(&self) -> Vec<f64> {
        self.mean
            .iter()
            .zip(&self.variance)
            .map(|(m, v)| m.abs() / v.sqrt())
            .collect()
    }
}

/// Runs a gradient estimator `runs` times on fresh noise and summarizes the draws.
///
/// `estimate` receives a generator seeded from `seed` (the same for the whole run, so results
/// are reproducible) and returns one gradient as a flat vector of the same length every time.
///
/// # Example
/// ```
/// use rand::RngExt;
/// use stograd::diagnostics::gradient_stats;
///
/// // a one-coordinate "estimator" with mean 1 and variance 1/3·4 = 4/3
/// let stats = gradient_stats(20_000, 7, |rng| Ok(vec![1.0 + 2.0 * (rng.random::<f64>() - 0.5) * 2.0]))?;
/// assert!((stats.mean[0] - 1.0).abs() < 4.0 * stats.std_error[0]);
/// assert!(stats.heavy_tailed().is_empty());
/// # Ok::<(), stograd::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidArgument`] for fewer than 2 runs; [`Error::ShapeMismatch`] when a run
/// returns a gradient of a different length; [`Error::NonFiniteEstimate`] naming the run, the
/// coordinate and the value when a run returns NaN or ±∞ (a NaN would make the mean NaN and
/// hide an infinite variance from the tail check); any error `estimate` returns.
pub fn gradient_stats<E>(runs: usize, seed: u64, mut estimate: E) -> Result<GradientStats>
where
    E: FnMut(&mut StdRng) -> Result<Vec<f64>>,
{
    if runs < 2 {
        return Err(Error::InvalidArgument {
            name: "runs",
            constraint: "at least 2",
            value: runs as f64,
        });
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let first = estimate(&mut rng)?;
    let dim = first.len();
    let mut draws: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); dim];
    let mut push = |run: usize, g: Vec<f64>| -> Result<()> {
        if g.len() != dim {
            return Err(Error::ShapeMismatch {
                what: "gradient estimate",
                expected: vec![dim],
                got: vec![g.len()],
            });
        }
        if let Some((coordinate, value)) = first_non_finite(&g) {
            return Err(Error::NonFiniteEstimate {
                function: "gradient_stats",
                candidate: None,
                run,
                row: None,
                coordinate,
                value,
            });
        }
        draws.iter_mut().zip(g).for_each(|(d, v)| d.push(v));
        Ok(())
    };
    push(0, first)?;
    for run in 1..runs {
        push(run, estimate(&mut rng)?)?;
    }

    Ok(summarize(&draws))
}

/// The first coordinate of `g` that is NaN or infinite, with its value.
pub(crate) fn first_non_finite<'a>(g: impl IntoIterator<Item = &'a f64>) -> Option<(usize, f64)> {
    g.into_iter()
        .copied()
        .enumerate()
        .find(|(_, v)| !v.is_finite())
}

/// The summary of draws kept coordinate by coordinate (`draws[i]` holds every draw of
/// coordinate `i`, at least 2 of them).
pub(crate) fn summarize(draws: &[Vec<f64>]) -> GradientStats {
    let runs = draws.first().map_or(0, Vec::len);
    let n = runs as f64;
    let mean: Vec<f64> = draws.iter().map(|d| compensated_sum(d) / n).collect();
    let variance: Vec<f64> = draws
        .iter()
        .zip(&mean)
        .map(|(d, m)| d.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0))
        .collect();
    let std_error = variance.iter().map(|v| (v / n).sqrt()).collect();
    let tail_index = draws.iter().map(|d| hill_tail_index(d)).collect();
    GradientStats {
        runs,
        mean,
        std_error,
        variance,
        tail_index,
    }
}

/// `Σ x` with Neumaier's compensation, so that the mean of many equal draws is that value to
/// rounding (an exact estimator is recognized as one) rather than off by `n ε` of it.
fn compensated_sum(x: &[f64]) -> f64 {
    let (mut sum, mut carry) = (0.0f64, 0.0f64);
    for &v in x {
        let t = sum + v;
        carry += if sum.abs() >= v.abs() {
            (sum - t) + v
        } else {
            (v - t) + sum
        };
        sum = t;
    }
    sum + carry
}

/// The Hill estimator of the tail index of `|x|` from its `⌈√n⌉` largest values.
///
/// NaN when a value is NaN (there is no tail to estimate), 0 when one is infinite (no moment
/// of positive order is finite), ∞ when fewer than `⌈√n⌉ + 1` values are non-zero.
pub fn hill_tail_index(x: &[f64]) -> f64 {
    if x.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    if x.iter().any(|v| v.is_infinite()) {
        return 0.0;
    }
    let mut a: Vec<f64> = x.iter().map(|v| v.abs()).collect();
    a.sort_by(|p, q| q.total_cmp(p));
    let k = (a.len() as f64).sqrt().ceil() as usize;
    if k + 1 > a.len() || a[k] <= 0.0 {
        return f64::INFINITY;
    }
    let threshold = a[k];
    let mean_log_excess = a[..k].iter().map(|v| (v / threshold).ln()).sum::<f64>() / k as f64;
    if mean_log_excess > 0.0 {
        1.0 / mean_log_excess
    } else {
        f64::INFINITY
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_distr::{Distribution, Pareto};

    #[test]
    fn hill_is_nan_for_nan_and_zero_for_an_infinite_value() {
        let mut x: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!(super::hill_tail_index(&x).is_finite());
        x[50] = f64::NAN;
        assert!(super::hill_tail_index(&x).is_nan());
        // more infinite values than the k = 10 order statistics: was ∞ (from ∞/∞ = NaN)
        x.iter_mut().take(20).for_each(|v| *v = f64::NEG_INFINITY);
        x[50] = 1.0;
        assert_eq!(super::hill_tail_index(&x), 0.0);
    }

    #[test]
    fn hill_recovers_a_pareto_tail_index() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for alpha in [1.0, 1.5, 3.0] {
            let x: Vec<f64> = (0..40_000)
                .map(|_| Pareto::new(1.0, alpha).unwrap().sample(&mut rng))
                .collect();
            let est = super::hill_tail_index(&x);
            // k = 200 order statistics: the estimator's relative standard error is 1/√k ≈ 7%
            assert!(
                (est - alpha).abs() < 4.0 * alpha / 200f64.sqrt(),
                "α = {alpha}: {est}"
            );
        }
    }
}
