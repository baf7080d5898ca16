//! Predictions from `S` forward samples: moments for regression, and for classification the
//! predictive distribution with its uncertainty split into aleatoric and epistemic parts.

use ndarray::{Array, Array1, Array2, ArrayD, Axis, Dimension, Zip};
use stograd::Scalar;

use crate::{Error, Result};

/// The elementwise mean and variance of `S` predictions `f₁ … f_S` (each a forward pass
/// with its own noise).
///
/// `mean = (1/S) Σ fₛ` and `variance = (1/S) Σ (fₛ − mean)²`: the variance of the
/// equal-weight mixture of the `S` draws, which is the Monte Carlo predictive distribution
/// (multiply by `S/(S − 1)` for the unbiased estimate of `Var_q[f]`). For a regression
/// with observation noise `σ_y²`, the predictive variance is `variance + σ_y²`.
///
/// # Example
/// ```
/// use stograd::ndarray::array;
/// use stograd_nn::bayes::PredictiveMoments;
///
/// let draws = [array![1.0, 4.0].into_dyn(), array![3.0, 4.0].into_dyn()];
/// let m = PredictiveMoments::from_samples(&draws)?;
/// assert_eq!(m.mean, array![2.0, 4.0].into_dyn());
/// assert_eq!(m.variance, array![1.0, 0.0].into_dyn());
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct PredictiveMoments<F: Scalar> {
    /// `(1/S) Σ fₛ`.
    pub mean: ArrayD<F>,
    /// `(1/S) Σ (fₛ − mean)²`.
    pub variance: ArrayD<F>,
}

impl<F: Scalar> PredictiveMoments<F> {
    /// The moments of `samples`, computed in two passes (no cancellation).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no samples, or samples of different shapes.
    pub fn from_samples(samples: &[ArrayD<F>]) -> Result<Self> {
        let first = check_samples(samples)?;
        let inv = F::from_f64(1.0 / samples.len() as f64);
        let mut mean = ArrayD::zeros(first.raw_dim());
        samples.iter().for_each(|s| mean += s);
        mean *= inv;
        let mut variance = ArrayD::zeros(first.raw_dim());
        for s in samples {
            Zip::from(&mut variance)
                .and(s)
                .and(&mean)
                .for_each(|v, &x, &m| *v += (x - m) * (x - m));
        }
        variance *= inv;
        Ok(PredictiveMoments { mean, variance })
    }
}

/// The predictive distribution of a classifier from `S` samples of its logits, and its
/// uncertainty (Houlsby et al. 2011; Depeweg et al. 2018):
///
/// - `probs`: `p̄ = (1/S) Σ softmax(ℓₛ)`, the Monte Carlo predictive distribution;
/// - `predictive_entropy`: `H[p̄] = −Σₖ p̄ₖ ln p̄ₖ`, the total uncertainty;
/// - `expected_entropy`: `(1/S) Σ H[softmax(ℓₛ)]`, the aleatoric part (what each sampled
///   network is unsure of);
/// - `mutual_information`: `H[p̄] − (1/S) Σ H[pₛ]`, the epistemic part, `I(y; w | x)`
///   ("BALD"): large where the sampled networks disagree, as on inputs unlike the
///   training data. Non-negative by the concavity of `H`; rounding below 0 is clamped.
///
/// Computed in `f64`, from log-softmaxes, so confident predictions keep their small
/// probabilities: `log_probs` holds `ln p̄` (a log-sum-exp over the samples), finite where
/// `p̄` underflows.
///
/// # Example
/// ```
/// use stograd::ndarray::array;
/// use stograd_nn::bayes::ClassPrediction;
///
/// // two sampled networks, each sure, of different classes: all the uncertainty is epistemic
/// let p = ClassPrediction::from_logits(&[array![[20.0, 0.0]], array![[0.0, 20.0]]])?;
/// assert!((p.probs[[0, 0]] - 0.5).abs() < 1e-8);
/// assert!((p.mutual_information[0] - 2f64.ln()).abs() < 1e-6);
/// assert!(p.expected_entropy[0] < 1e-6);
/// assert!((p.nll(&[0])? - 2f64.ln()).abs() < 1e-8);
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ClassPrediction {
    /// `p̄`, `[b, classes]`.
    pub probs: Array2<f64>,
    /// `ln p̄`, `[b, classes]`.
    pub log_probs: Array2<f64>,
    /// `H[p̄]`, `[b]`.
    pub predictive_entropy: Array1<f64>,
    /// `(1/S) Σ H[pₛ]`, `[b]`.
    pub expected_entropy: Array1<f64>,
    /// `H[p̄] − (1/S) Σ H[pₛ]`, `[b]`.
    pub mutual_information: Array1<f64>,
}

impl ClassPrediction {
    /// The prediction from `S` samples of logits, each `[b, classes]`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no samples, samples of different shapes, or no
    /// classes.
    pub fn from_logits<F: Scalar>(samples: &[Array2<F>]) -> Result<Self> {
        let first = check_samples(samples)?;
        let (rows, classes) = first.dim();
        if classes == 0 {
            return Err(Error::InvalidArgument {
                name: "number of classes",
                constraint: "positive",
                value: 0.0,
            });
        }
        let s = samples.len() as f64;
        let mut log_probs = Array2::<f64>::zeros((rows, classes));
        let mut expected_entropy = Array1::<f64>::zeros(rows);
        // per row: the log-softmax of each sample, then ln p̄ = logsumexp over samples − ln S
        let mut lane = vec![0.0; classes * samples.len()];
        for i in 0..rows {
            for (sample, chunk) in samples.iter().zip(lane.chunks_exact_mut(classes)) {
                let row = sample.row(i);
                let max = row
                    .iter()
                    .fold(f64::NEG_INFINITY, |m, &v| m.max(v.as_f64()));
                let lse = max
                    + row
                        .iter()
                        .map(|&v| (v.as_f64() - max).exp())
                        .sum::<f64>()
                        .ln();
                chunk
                    .iter_mut()
                    .zip(row)
                    .for_each(|(c, &v)| *c = v.as_f64() - lse);
                expected_entropy[i] -= chunk.iter().map(|&l| l.exp() * l).sum::<f64>() / s;
            }
            for k in 0..classes {
                let column = lane.iter().skip(k).step_by(classes);
                let max = column.clone().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
                let sum: f64 = column.map(|&v| (v - max).exp()).sum();
                log_probs[[i, k]] = max + sum.ln() - s.ln();
            }
        }
        let probs = log_probs.mapv(f64::exp);
        let predictive_entropy =
            Zip::from(probs.rows())
                .and(log_probs.rows())
                .map_collect(|p, l| {
                    -p.iter()
                        .zip(l)
                        .map(|(&p, &l)| if p > 0.0 { p * l } else { 0.0 })
                        .sum::<f64>()
                });
        let mutual_information = Zip::from(&predictive_entropy)
            .and(&expected_entropy)
            .map_collect(|&h, &e| (h - e).max(0.0));
        Ok(ClassPrediction {
            probs,
            log_probs,
            predictive_entropy,
            expected_entropy,
            mutual_information,
        })
    }

    /// The mean negative log-likelihood of `labels` under `p̄`: `−(1/b) Σᵢ ln p̄ᵢ[yᵢ]`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if there is not one label per row or a label is not a
    /// class.
    pub fn nll(&self, labels: &[usize]) -> Result<f64> {
        check_labels(self.log_probs.dim(), labels)?;
        let total: f64 = labels
            .iter()
            .enumerate()
            .map(|(i, &y)| -self.log_probs[[i, y]])
            .sum();
        Ok(total / labels.len() as f64)
    }

    /// The fraction of rows whose most probable class under `p̄` is the label.
    ///
    /// # Errors
    /// As [`nll`](Self::nll).
    pub fn accuracy(&self, labels: &[usize]) -> Result<f64> {
        check_labels(self.probs.dim(), labels)?;
        let correct = self
            .probs
            .axis_iter(Axis(0))
            .zip(labels)
            .filter(|(row, y)| argmax(row.iter().copied()) == **y)
            .count();
        Ok(correct as f64 / labels.len() as f64)
    }
}

/// The index of the first largest value.
pub(super) fn argmax(values: impl Iterator<Item = f64>) -> usize {
    values
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// `Ok` when there is one label per row, each below the number of classes.
pub(super) fn check_labels((rows, classes): (usize, usize), labels: &[usize]) -> Result<()> {
    if labels.len() != rows || rows == 0 {
        return Err(Error::InvalidArgument {
            name: "number of labels",
            constraint: "one per row of predictions, at least one",
            value: labels.len() as f64,
        });
    }
    match labels.iter().find(|&&y| y >= classes) {
        Some(&bad) => Err(Error::InvalidArgument {
            name: "label",
            constraint: "below the number of classes",
            value: bad as f64,
        }),
        None => Ok(()),
    }
}

/// The first sample, once there is one and all have its shape.
fn check_samples<A, D: Dimension>(samples: &[Array<A, D>]) -> Result<&Array<A, D>> {
    let first = samples.first().ok_or(Error::InvalidArgument {
        name: "number of samples",
        constraint: "at least 1",
        value: 0.0,
    })?;
    match samples.iter().position(|s| s.shape() != first.shape()) {
        Some(i) => Err(Error::InvalidArgument {
            name: "sample index with a shape unlike sample 0's",
            constraint: "absent (all samples of one shape)",
            value: i as f64,
        }),
        None => Ok(first),
    }
}
