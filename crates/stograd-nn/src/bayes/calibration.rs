//! Calibration of a classifier's probabilities: the reliability diagram and the expected
//! calibration error.

use ndarray::Array2;

use super::predict::{argmax, check_labels};
use crate::{Error, Result};

/// One bin of a reliability diagram: the predictions whose confidence (largest probability)
/// falls in `(lower, upper]` (the first bin also takes confidence 0).
///
/// ```
/// use stograd::ndarray::array;
/// use stograd_nn::bayes::Calibration;
///
/// let probs = array![[0.95, 0.05], [0.9, 0.1], [0.2, 0.8]];
/// let top = Calibration::new(&probs, &[0, 1, 1], 2)?.bins[1]; // confidence in (0.5, 1]
/// assert_eq!((top.lower, top.upper, top.count), (0.5, 1.0, 3));
/// assert!((top.accuracy - 2.0 / 3.0).abs() < 1e-12);
/// assert!((top.confidence - (0.95 + 0.9 + 0.8) / 3.0).abs() < 1e-12);
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReliabilityBin {
    /// The bin's lower edge.
    pub lower: f64,
    /// The bin's upper edge.
    pub upper: f64,
    /// How many predictions fall in it.
    pub count: usize,
    /// Their mean confidence (0 for an empty bin).
    pub confidence: f64,
    /// The fraction of them that are right (0 for an empty bin).
    pub accuracy: f64,
}

/// A classifier's calibration over equal-width confidence bins (Guo et al. 2017): for each
/// bin `Bₘ` the accuracy and the mean confidence of the predictions in it, and the expected
/// calibration error
///
/// `ECE = Σₘ (|Bₘ| / n) · |acc(Bₘ) − conf(Bₘ)|`,
///
/// 0 for a calibrated classifier (among predictions made with confidence 0.8, 80 % right).
/// The prediction is the most probable class, its confidence that probability.
///
/// # Example
/// ```
/// use stograd::ndarray::array;
/// use stograd_nn::bayes::Calibration;
///
/// let probs = array![[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]];
/// let c = Calibration::new(&probs, &[0, 1, 1, 0], 10)?;
/// // bins (0.5, 0.6], (0.6, 0.7], (0.7, 0.8], (0.8, 0.9]: one prediction each
/// assert_eq!(c.bins[8].count, 1);
/// assert!((c.ece - (0.4 + 0.3 + 0.8 + 0.1) / 4.0).abs() < 1e-12);
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    /// The bins, from confidence 0 to 1.
    pub bins: Vec<ReliabilityBin>,
    /// The expected calibration error.
    pub ece: f64,
}

impl Calibration {
    /// The calibration of `probs` (`[n, classes]`, rows summing to 1) against `labels`, over
    /// `bins` equal-width bins (15 is common, as in Guo et al.).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for zero bins, no predictions, a number of labels other
    /// than `n`, a label that is not a class, or a probability outside `[0, 1]` or NaN.
    pub fn new(probs: &Array2<f64>, labels: &[usize], bins: usize) -> Result<Self> {
        if bins == 0 {
            return Err(Error::InvalidArgument {
                name: "number of bins",
                constraint: "positive",
                value: 0.0,
            });
        }
        check_labels(probs.dim(), labels)?;
        if let Some(&bad) = probs.iter().find(|p| !(0.0..=1.0).contains(*p)) {
            return Err(Error::InvalidArgument {
                name: "probability",
                constraint: "in [0, 1]",
                value: bad,
            });
        }
        let mut sums = vec![(0usize, 0.0, 0usize); bins];
        for (row, &label) in probs.rows().into_iter().zip(labels) {
            let predicted = argmax(row.iter().copied());
            let confidence = row[predicted];
            // (m/M, (m+1)/M] holds bin m; confidence 0 goes to the first bin
            let m = ((confidence * bins as f64).ceil() as usize).clamp(1, bins) - 1;
            let bin = &mut sums[m];
            bin.0 += 1;
            bin.1 += confidence;
            bin.2 += usize::from(predicted == label);
        }
        let n = labels.len() as f64;
        let bins: Vec<ReliabilityBin> = sums
            .iter()
            .enumerate()
            .map(|(m, &(count, confidence, correct))| {
                let per = |v: f64| if count > 0 { v / count as f64 } else { 0.0 };
                ReliabilityBin {
                    lower: m as f64 / bins as f64,
                    upper: (m + 1) as f64 / bins as f64,
                    count,
                    confidence: per(confidence),
                    accuracy: per(correct as f64),
                }
            })
            .collect();
        let ece = bins
            .iter()
            .map(|b| b.count as f64 / n * (b.accuracy - b.confidence).abs())
            .sum();
        Ok(Calibration { bins, ece })
    }
}
