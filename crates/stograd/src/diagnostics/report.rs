//! The result of a comparison: one report per estimator, the table they print as (markdown
//! or CSV), and the checks a `#[test]` asserts.

use std::fmt::{self, Write as _};
use std::ops::Index;

use super::{GradientStats, summarize};

/// The fewest estimates for which the printed table warns of heavy tails: the Hill estimate
/// uses the `⌈√n⌉` largest values, and below about 32 of them its relative error (`1/√k`)
/// flags light-tailed and bounded gradients as heavy.
pub const TAIL_CHECK_RUNS: usize = 1_000;

/// What [`compare`](super::compare) measured: one [`EstimatorReport`] per candidate, in the
/// candidates' order, indexable by label (`table["reinforce"]`).
///
/// `Display` prints a markdown table with one row per estimator (the gradient's total
/// variance, its signal-to-noise ratio, the norm and the largest standardized coordinate of
/// its bias, and the time per estimate); the alternate form `{:#}` prints one row per
/// estimator and coordinate. Both end with a line per estimator whose gradient looks
/// heavy-tailed (a tail index below 2, see [`GradientStats::heavy_tailed`]), when there are
/// at least [`TAIL_CHECK_RUNS`] estimates. [`to_csv`](Self::to_csv) writes the per-coordinate
/// table, tail indices included.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// One report per candidate.
    pub reports: Vec<EstimatorReport>,
    /// Calls of the model per candidate.
    pub replicates: usize,
    /// The seed the replicates' seeds came from.
    pub seed: u64,
}

/// One estimator's gradient estimates, summarized.
///
/// With `n` estimates `g_r` of a `d`-coordinate gradient:
/// - `stats` holds, per coordinate, the mean `ḡᵢ`, its standard error `√(vᵢ/n)`, the one-draw
///   variance `vᵢ` and the tail index of `|gᵢ|` (see [`GradientStats`]);
/// - `total_variance` is `Σᵢ vᵢ = E‖g − E g‖²` (the trace of the covariance), with the standard
///   error of that estimate, from the spread of `‖g_r − ḡ‖²` over the estimates;
/// - the bias is `ḡ − exact` per coordinate, with the standard error of `ḡ`.
#[derive(Clone)]
pub struct EstimatorReport {
    /// The candidate's label.
    pub label: String,
    /// Mean, standard error, variance and tail index per coordinate.
    pub stats: GradientStats,
    /// The exact gradient the comparison was given.
    pub exact: Option<Vec<f64>>,
    /// `Σᵢ Var(gᵢ)`.
    pub total_variance: f64,
    /// The standard error of `total_variance`.
    pub total_variance_std_error: f64,
    /// The standard error of `‖mean − exact‖` to first order (the delta method: the spread
    /// of the estimates along the bias's direction), when the exact gradient was given. It
    /// describes the norm well when the bias is large against the standard errors, or the
    /// gradient has few coordinates; a norm near 0 is inflated by the noise.
    pub bias_norm_std_error: Option<f64>,
    /// Wall time of the model's closure per estimate, in seconds.
    pub seconds_per_estimate: f64,
    /// `n/(n − 1) ‖g_r − ḡ‖²` per estimate: their mean is `total_variance`, and replicates of
    /// two candidates with the same seeds pair up.
    spread: Vec<f64>,
    /// Each estimate projected on the bias's direction, `(ḡ − exact)ᵀ g_r / ‖ḡ − exact‖`:
    /// their spread is that of the bias norm, to first order.
    projection: Vec<f64>,
    /// The absolute difference from the exact value that counts as rounding, relative to
    /// `1 + |exact|`, for coordinates with no spread.
    rounding: f64,
}

impl fmt::Debug for EstimatorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EstimatorReport")
            .field("label", &self.label)
            .field("stats", &self.stats)
            .field("exact", &self.exact)
            .field("total_variance", &self.total_variance)
            .field("total_variance_std_error", &self.total_variance_std_error)
            .field("bias_norm_std_error", &self.bias_norm_std_error)
            .field("seconds_per_estimate", &self.seconds_per_estimate)
            .finish_non_exhaustive()
    }
}

/// A coordinate whose mean is further from the exact gradient than the allowed number of
/// standard errors: what [`EstimatorReport::check_unbiased`] reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Bias {
    /// The estimator's label.
    pub label: String,
    /// The coordinate of the flattened gradient.
    pub coordinate: usize,
    /// The mean estimate.
    pub mean: f64,
    /// Its standard error.
    pub std_error: f64,
    /// The exact value.
    pub exact: f64,
    /// The standard errors allowed.
    pub k: f64,
}

impl Bias {
    /// `(mean − exact) / std_error`.
    pub fn z(&self) -> f64 {
        (self.mean - self.exact) / self.std_error
    }
}

impl fmt::Display for Bias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "estimator {:?}, coordinate {}: mean {} ± {} (s.e.) against the exact {}: bias {}, \
             {} standard errors, more than the {} allowed",
            self.label,
            self.coordinate,
            sig(self.mean),
            sig(self.std_error),
            sig(self.exact),
            sig(self.mean - self.exact),
            sig(self.z()),
            self.k
        )
    }
}

/// A total variance or a bias not shown to be below a bound: what
/// [`EstimatorReport::check_variance_below`],
/// [`check_less_variance_than`](EstimatorReport::check_less_variance_than) and
/// [`check_less_biased_than`](EstimatorReport::check_less_biased_than) report.
#[derive(Clone, Debug, PartialEq)]
pub struct NotBelow {
    /// `"total variance"` or `"bias norm"`.
    pub quantity: &'static str,
    /// The estimator's label.
    pub label: String,
    /// Its value of the quantity.
    pub value: f64,
    /// The bound: a number, or another estimator's value.
    pub bound: f64,
    /// The other estimator, when the bound is its value.
    pub bound_label: Option<String>,
    /// The standard error of `bound − value`.
    pub std_error: f64,
    /// The standard errors the margin had to exceed.
    pub k: f64,
}

impl fmt::Display for NotBelow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bound = match &self.bound_label {
            Some(other) => format!("{} (that of {other:?})", sig(self.bound)),
            None => sig(self.bound),
        };
        write!(
            f,
            "estimator {:?}: {} {} is not below {bound} by {} standard errors (margin {}, s.e. \
             of the margin {})",
            self.label,
            self.quantity,
            sig(self.value),
            self.k,
            sig(self.bound - self.value),
            sig(self.std_error)
        )
    }
}

impl EstimatorReport {
    /// The report of `draws[i]`, every estimate of coordinate `i`.
    pub(super) fn from_draws(
        label: &str,
        draws: &[Vec<f64>],
        exact: Option<&[f64]>,
        seconds_per_estimate: f64,
        rounding: f64,
    ) -> Self {
        let stats = summarize(draws);
        let n = stats.runs;
        let scale = n as f64 / (n as f64 - 1.0);
        let mut spread = vec![0.0; n];
        for (column, mean) in draws.iter().zip(&stats.mean) {
            for (s, g) in spread.iter_mut().zip(column) {
                *s += scale * (g - mean).powi(2);
            }
        }
        let (total_variance, total_variance_std_error) = mean_and_std_error(&spread);
        let mut report = EstimatorReport {
            label: label.to_owned(),
            stats,
            exact: exact.map(<[f64]>::to_vec),
            total_variance,
            total_variance_std_error,
            bias_norm_std_error: None,
            seconds_per_estimate,
            spread,
            projection: Vec::new(),
            rounding,
        };
        if let (Some(bias), Some(norm)) = (report.bias(), report.bias_norm()) {
            let direction: Vec<f64> = bias
                .iter()
                .map(|b| if norm > 0.0 { b / norm } else { 0.0 })
                .collect();
            let mut projection = vec![0.0; n];
            for (column, e) in draws.iter().zip(&direction) {
                for (p, g) in projection.iter_mut().zip(column) {
                    *p += e * g;
                }
            }
            report.bias_norm_std_error = Some(mean_and_std_error(&projection).1);
            report.projection = projection;
        }
        report
    }

    /// `mean − exact` per coordinate, when the exact gradient was given.
    pub fn bias(&self) -> Option<Vec<f64>> {
        let exact = self.exact.as_ref()?;
        Some(
            self.stats
                .mean
                .iter()
                .zip(exact)
                .map(|(m, e)| m - e)
                .collect(),
        )
    }

    /// `‖mean − exact‖`, the Euclidean norm of the bias.
    pub fn bias_norm(&self) -> Option<f64> {
        Some(self.bias()?.iter().map(|b| b * b).sum::<f64>().sqrt())
    }

    /// The coordinate whose bias is the most standard errors from 0, and that number
    /// `|mean − exact| / s.e.` (0 for a coordinate that matches to rounding, infinite for one
    /// with no spread that does not).
    pub fn max_abs_z(&self) -> Option<(usize, f64)> {
        let exact = self.exact.as_ref()?;
        (0..exact.len())
            .map(|i| (i, self.abs_z(i, exact[i])))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// `|mean − exact| / s.e.` of coordinate `i`, 0 when the difference is within rounding.
    fn abs_z(&self, i: usize, exact: f64) -> f64 {
        let bias = (self.stats.mean[i] - exact).abs();
        if bias <= self.rounding_of(exact) {
            0.0
        } else {
            bias / self.stats.std_error[i]
        }
    }

    /// Whether coordinate `i` is within `k` standard errors (and rounding) of `exact`; false
    /// for a NaN.
    fn within(&self, i: usize, exact: f64, k: f64) -> bool {
        let bias = (self.stats.mean[i] - exact).abs();
        bias <= k * self.stats.std_error[i] + self.rounding_of(exact)
    }

    /// What counts as rounding in a mean near `exact`.
    fn rounding_of(&self, exact: f64) -> f64 {
        self.rounding * (1.0 + exact.abs())
    }

    /// The signal-to-noise ratio of one estimate, `‖E g‖ / √(E‖g − E g‖²)`: the norm of the
    /// mean over the square root of the total variance (per coordinate: [`GradientStats::snr`]).
    pub fn snr(&self) -> f64 {
        let norm = self.stats.mean.iter().map(|m| m * m).sum::<f64>().sqrt();
        norm / self.total_variance.sqrt()
    }

    /// Every coordinate whose mean is further from the exact gradient than `k` standard errors
    /// plus rounding, `64 ε (1 + |exact|)` with the model's float's `ε` (which decides for a
    /// coordinate with no spread). A NaN mean is always flagged.
    ///
    /// Each coordinate is one two-sided test at level `P(|Z| > k)` (`6.3·10⁻⁵` for `k = 4`),
    /// so over `m` coordinates and estimators a correct estimator is flagged with probability
    /// at most `m · P(|Z| > k)` (Bonferroni), for a fresh seed.
    ///
    /// # Errors
    /// The flagged coordinates, as [`Bias`] values.
    ///
    /// # Panics
    /// If the comparison was run without the exact gradient.
    #[track_caller]
    pub fn check_unbiased(&self, k: f64) -> Result<(), Vec<Bias>> {
        let exact = self.exact.as_ref().unwrap_or_else(|| {
            panic!(
                "check_unbiased({k}) on {:?}: the comparison was run without the exact gradient",
                self.label
            )
        });
        let flagged: Vec<Bias> = exact
            .iter()
            .enumerate()
            .filter(|&(i, &e)| !self.within(i, e, k))
            .map(|(i, &e)| Bias {
                label: self.label.clone(),
                coordinate: i,
                mean: self.stats.mean[i],
                std_error: self.stats.std_error[i],
                exact: e,
                k,
            })
            .collect();
        if flagged.is_empty() {
            Ok(())
        } else {
            Err(flagged)
        }
    }

    /// Asserts [`check_unbiased`](Self::check_unbiased).
    ///
    /// # Panics
    /// Naming the estimator and, for every flagged coordinate, its mean, standard error and
    /// exact value.
    #[track_caller]
    pub fn assert_unbiased(&self, k: f64) {
        if let Err(flagged) = self.check_unbiased(k) {
            panic!("biased:\n{}", lines(&flagged));
        }
    }

    /// Whether the total variance is below `bound` by more than `k` standard errors of its
    /// estimate (a one-sided test at level `P(Z > k)` when it is not below).
    ///
    /// # Errors
    /// The variance, the bound and the standard error, as a [`NotBelow`].
    pub fn check_variance_below(&self, bound: f64, k: f64) -> Result<(), NotBelow> {
        self.check_margin(
            "total variance",
            self.total_variance,
            (bound, None),
            self.total_variance_std_error,
            k,
        )
    }

    /// Asserts [`check_variance_below`](Self::check_variance_below).
    ///
    /// # Panics
    /// Naming the estimator, its variance, the bound and the standard error.
    #[track_caller]
    pub fn assert_variance_below(&self, bound: f64, k: f64) {
        if let Err(e) = self.check_variance_below(bound, k) {
            panic!("{e}");
        }
    }

    /// Whether this estimator's total variance is below `other`'s by more than `k` standard
    /// errors of the difference. With as many estimates as `other` (the same replicates, as
    /// [`compare`](super::compare) runs them), the estimates are paired replicate by
    /// replicate, which common random numbers make more precise; otherwise the two standard
    /// errors are combined as independent.
    ///
    /// # Errors
    /// Both variances and the standard error, as a [`NotBelow`].
    pub fn check_less_variance_than(
        &self,
        other: &EstimatorReport,
        k: f64,
    ) -> Result<(), NotBelow> {
        let std_error = paired_std_error(
            &self.spread,
            &other.spread,
            self.total_variance_std_error,
            other.total_variance_std_error,
        );
        self.check_margin(
            "total variance",
            self.total_variance,
            (other.total_variance, Some(&other.label)),
            std_error,
            k,
        )
    }

    /// Asserts [`check_less_variance_than`](Self::check_less_variance_than).
    ///
    /// # Panics
    /// Naming both estimators, their variances and the standard error of the difference.
    #[track_caller]
    pub fn assert_less_variance_than(&self, other: &EstimatorReport, k: f64) {
        if let Err(e) = self.check_less_variance_than(other, k) {
            panic!("{e}");
        }
    }

    /// Whether this estimator's bias norm `‖mean − exact‖` is below `other`'s by more than `k`
    /// standard errors of the difference, both to first order (see
    /// [`bias_norm_std_error`](Self::bias_norm_std_error)), paired replicate by replicate as
    /// in [`check_less_variance_than`](Self::check_less_variance_than).
    ///
    /// # Errors
    /// Both norms and the standard error, as a [`NotBelow`].
    ///
    /// # Panics
    /// If the comparison was run without the exact gradient.
    #[track_caller]
    pub fn check_less_biased_than(&self, other: &EstimatorReport, k: f64) -> Result<(), NotBelow> {
        let norm = |r: &EstimatorReport| {
            let missing = || {
                panic!(
                    "check_less_biased_than on {:?}: the comparison was run without the exact \
                     gradient",
                    r.label
                )
            };
            (
                r.bias_norm().unwrap_or_else(missing),
                r.bias_norm_std_error.unwrap_or_else(missing),
            )
        };
        let ((mine, my_se), (theirs, their_se)) = (norm(self), norm(other));
        let std_error = paired_std_error(&self.projection, &other.projection, my_se, their_se);
        self.check_margin(
            "bias norm",
            mine,
            (theirs, Some(&other.label)),
            std_error,
            k,
        )
    }

    /// Asserts [`check_less_biased_than`](Self::check_less_biased_than).
    ///
    /// # Panics
    /// Naming both estimators, their bias norms and the standard error of the difference.
    #[track_caller]
    pub fn assert_less_biased_than(&self, other: &EstimatorReport, k: f64) {
        if let Err(e) = self.check_less_biased_than(other, k) {
            panic!("{e}");
        }
    }

    fn check_margin(
        &self,
        quantity: &'static str,
        value: f64,
        (bound, bound_label): (f64, Option<&str>),
        std_error: f64,
        k: f64,
    ) -> Result<(), NotBelow> {
        // written so that a NaN anywhere fails
        if bound - value > k * std_error {
            Ok(())
        } else {
            Err(NotBelow {
                quantity,
                label: self.label.clone(),
                value,
                bound,
                bound_label: bound_label.map(str::to_owned),
                std_error,
                k,
            })
        }
    }
}

impl Comparison {
    /// The report of the candidate labelled `label`.
    pub fn get(&self, label: &str) -> Option<&EstimatorReport> {
        self.reports.iter().find(|r| r.label == label)
    }

    /// [`check_unbiased`](EstimatorReport::check_unbiased) for every estimator.
    ///
    /// # Errors
    /// Every flagged coordinate of every estimator.
    ///
    /// # Panics
    /// If the comparison was run without the exact gradient.
    #[track_caller]
    pub fn check_unbiased(&self, k: f64) -> Result<(), Vec<Bias>> {
        let mut flagged = Vec::new();
        for r in &self.reports {
            if let Err(b) = r.check_unbiased(k) {
                flagged.extend(b);
            }
        }
        if flagged.is_empty() {
            Ok(())
        } else {
            Err(flagged)
        }
    }

    /// Asserts that every estimator is unbiased within `k` standard errors, coordinate by
    /// coordinate: the family-wise error rate is at most `estimators · coordinates ·
    /// P(|Z| > k)`.
    ///
    /// # Panics
    /// Listing every flagged estimator and coordinate with its mean, standard error and exact
    /// value.
    #[track_caller]
    pub fn assert_unbiased(&self, k: f64) {
        if let Err(flagged) = self.check_unbiased(k) {
            panic!("biased:\n{}", lines(&flagged));
        }
    }

    /// One line per estimator and coordinate: `estimator,coordinate,exact,mean,std_error,z,
    /// variance,snr,tail_index,seconds_per_estimate` (`exact` and `z` empty without the
    /// exact gradient), the numbers at full precision.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "estimator,coordinate,exact,mean,std_error,z,variance,snr,tail_index,\
             seconds_per_estimate\n",
        );
        for r in &self.reports {
            let snr = r.stats.snr();
            for i in 0..r.stats.mean.len() {
                let (exact, z) = match &r.exact {
                    Some(e) => (
                        e[i].to_string(),
                        ((r.stats.mean[i] - e[i]) / r.stats.std_error[i]).to_string(),
                    ),
                    None => (String::new(), String::new()),
                };
                writeln!(
                    out,
                    "{},{i},{exact},{},{},{z},{},{},{},{}",
                    csv_field(&r.label),
                    r.stats.mean[i],
                    r.stats.std_error[i],
                    r.stats.variance[i],
                    snr[i],
                    r.stats.tail_index[i],
                    r.seconds_per_estimate
                )
                .expect("writing to a String");
            }
        }
        out
    }

    fn has_exact(&self) -> bool {
        self.reports.iter().any(|r| r.exact.is_some())
    }

    fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exact = self.has_exact();
        write!(f, "| estimator | estimates |")?;
        if exact {
            write!(f, " ‖bias‖ ± s.e. | max \\|z\\| (coordinate) |")?;
        }
        writeln!(f, " variance (trace) | ± s.e. | SNR | µs/estimate |")?;
        write!(f, "|---|---:|")?;
        if exact {
            write!(f, "---:|---:|")?;
        }
        writeln!(f, "---:|---:|---:|---:|")?;
        for r in &self.reports {
            write!(f, "| {} | {} |", cell(&r.label), r.stats.runs)?;
            if exact {
                let norm = match (r.bias_norm(), r.bias_norm_std_error) {
                    (Some(norm), Some(se)) => format!("{} ± {}", sig(norm), sig(se)),
                    _ => "—".into(),
                };
                let z = match r.max_abs_z() {
                    Some((i, z)) => format!("{} ({i})", sig(z)),
                    None => "—".into(),
                };
                write!(f, " {norm} | {z} |")?;
            }
            writeln!(
                f,
                " {} | {} | {} | {} |",
                sig(r.total_variance),
                sig(r.total_variance_std_error),
                sig(r.snr()),
                sig(r.seconds_per_estimate * 1e6)
            )?;
        }
        self.warnings(f)
    }

    fn per_coordinate(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exact = self.has_exact();
        write!(f, "| estimator | coordinate |")?;
        if exact {
            write!(f, " exact |")?;
        }
        write!(f, " mean | ± s.e. |")?;
        if exact {
            write!(f, " z |")?;
        }
        writeln!(f, " variance | SNR | tail index |")?;
        write!(f, "|---|---:|")?;
        if exact {
            write!(f, "---:|")?;
        }
        write!(f, "---:|---:|")?;
        if exact {
            write!(f, "---:|")?;
        }
        writeln!(f, "---:|---:|---:|")?;
        for r in &self.reports {
            let snr = r.stats.snr();
            for i in 0..r.stats.mean.len() {
                write!(f, "| {} | {i} |", cell(&r.label))?;
                let e = r.exact.as_ref().map(|e| e[i]);
                if exact {
                    write!(f, " {} |", e.map_or("—".into(), sig))?;
                }
                write!(
                    f,
                    " {} | {} |",
                    sig(r.stats.mean[i]),
                    sig(r.stats.std_error[i])
                )?;
                if exact {
                    let z = match e {
                        Some(e) if r.abs_z(i, e) == 0.0 => "exact".into(),
                        Some(e) => sig((r.stats.mean[i] - e) / r.stats.std_error[i]),
                        None => "—".into(),
                    };
                    write!(f, " {z} |")?;
                }
                writeln!(
                    f,
                    " {} | {} | {} |",
                    sig(r.stats.variance[i]),
                    sig(snr[i]),
                    sig(r.stats.tail_index[i])
                )?;
            }
        }
        self.warnings(f)
    }

    /// One line per estimator with heavy-tailed coordinates, when there are enough estimates
    /// to tell.
    fn warnings(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.reports {
            if r.stats.runs < TAIL_CHECK_RUNS {
                continue;
            }
            let heavy = r.stats.heavy_tailed();
            let Some(&lowest) = heavy
                .iter()
                .min_by(|&&i, &&j| r.stats.tail_index[i].total_cmp(&r.stats.tail_index[j]))
            else {
                continue;
            };
            let runs = r.stats.runs;
            writeln!(
                f,
                "\nwarning: {:?}: {} of {} coordinates have a tail index below {} (the lowest {:.2}, \
                 coordinate {lowest}; Hill estimates from the {} largest of {runs} values): their \
                 variance looks infinite and their standard errors are meaningless",
                r.label,
                heavy.len(),
                r.stats.tail_index.len(),
                super::INFINITE_VARIANCE_TAIL,
                r.stats.tail_index[lowest],
                (runs as f64).sqrt().ceil()
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            self.per_coordinate(f)
        } else {
            self.summary(f)
        }
    }
}

impl Index<&str> for Comparison {
    type Output = EstimatorReport;

    /// The report of the candidate labelled `label`.
    ///
    /// # Panics
    /// If no candidate has that label; the message lists the labels.
    #[track_caller]
    fn index(&self, label: &str) -> &EstimatorReport {
        self.get(label).unwrap_or_else(|| {
            let labels: Vec<&str> = self.reports.iter().map(|r| r.label.as_str()).collect();
            panic!("no candidate labelled {label:?} in the comparison; the labels are {labels:?}")
        })
    }
}

/// The mean of `x` and its standard error.
fn mean_and_std_error(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let variance = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (variance / n).sqrt())
}

/// The standard error of `mean(b) − mean(a)`: paired estimate by estimate when both have as
/// many (the same replicates), else from the two standard errors as if independent.
fn paired_std_error(a: &[f64], b: &[f64], a_se: f64, b_se: f64) -> f64 {
    if a.len() == b.len() {
        let difference: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
        mean_and_std_error(&difference).1
    } else {
        a_se.hypot(b_se)
    }
}

/// One line per flagged coordinate.
fn lines(flagged: &[Bias]) -> String {
    flagged
        .iter()
        .map(|b| format!("  {b}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `v` to 5 significant digits: fixed-point between 10⁻⁴ and 10⁶, scientific outside.
fn sig(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    if (-4..6).contains(&magnitude) {
        format!("{v:.*}", (4 - magnitude).max(0) as usize)
    } else {
        format!("{v:.4e}")
    }
}

/// A label inside a markdown table cell.
fn cell(label: &str) -> String {
    label.replace('|', "\\|")
}

/// A label as a CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(label: &str) -> String {
    if label.contains([',', '"', '\n']) {
        format!("\"{}\"", label.replace('"', "\"\""))
    } else {
        label.to_owned()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_keep_five_significant_digits() {
        assert_eq!(super::sig(0.123456), "0.12346");
        assert_eq!(super::sig(-12.34567), "-12.346");
        assert_eq!(super::sig(123456.7), "123457");
        assert_eq!(super::sig(2.5e-7), "2.5000e-7");
        assert_eq!(super::sig(0.0), "0");
        assert_eq!(super::csv_field("a, b"), "\"a, b\"");
        assert_eq!(super::csv_field("say \"x\""), "\"say \"\"x\"\"\"");
    }
}
