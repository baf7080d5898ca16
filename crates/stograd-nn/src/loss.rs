//! Losses, per example: reduce them (`.sum()`, `.mean()`) as the objective needs.

use stograd::ndarray::Array2;
use stograd::{Scalar, Var};

/// The cross-entropy of class logits against integer labels, per row:
/// `−log softmax(logits)[label] = logsumexp(logits) − logits[label]`, computed through
/// `log_softmax` so it is finite for any finite logits.
///
/// # Example
/// ```
/// use stograd::ndarray::array;
/// use stograd::Tape;
/// use stograd_nn::loss::cross_entropy;
///
/// let tape = Tape::<f64>::new();
/// let logits = tape.constant(array![[0.0, 0.0], [3.0, -1.0]]);
/// let loss = cross_entropy(logits, &[1, 0]).value();
/// assert!((loss[0] - 2f64.ln()).abs() < 1e-15);
/// assert!((loss[1] - (1.0 + (-4f64).exp()).ln()).abs() < 1e-15);
/// ```
///
/// # Panics
/// If `logits` is not `[b, classes]`, there are not `b` labels, or a label is not below
/// `classes`; the message names the values and the caller's line.
///
/// # Shapes
/// `logits` `[b, classes]`, `labels` `b`; the result is `[b]`.
///
/// PyTorch equivalent: `F.cross_entropy(logits, labels, reduction="none")`.
#[track_caller]
pub fn cross_entropy<'t, F: Scalar>(logits: Var<'t, F>, labels: &[usize]) -> Var<'t, F> {
    let shape = logits.shape();
    let location = std::panic::Location::caller();
    assert!(
        shape.len() == 2 && shape[0] == labels.len(),
        "cross_entropy: logits {shape:?} do not fit {} labels (at {location})",
        labels.len()
    );
    if let Some(bad) = labels.iter().find(|&&l| l >= shape[1]) {
        panic!(
            "cross_entropy: label {bad} is not below the {} classes (at {location})",
            shape[1]
        );
    }
    let index = Array2::from_shape_fn((labels.len(), 1), |(i, _)| labels[i]);
    -logits
        .log_softmax(1)
        .gather(1, &index)
        .reshape(&[labels.len()])
}

/// The fraction of rows whose largest logit is at the label.
///
/// # Panics
/// If `logits` is not `[labels.len(), classes]`.
#[track_caller]
pub fn accuracy<F: Scalar>(logits: &Array2<F>, labels: &[usize]) -> f64 {
    assert_eq!(
        logits.nrows(),
        labels.len(),
        "accuracy: {} rows of logits for {} labels",
        logits.nrows(),
        labels.len()
    );
    let correct = logits
        .rows()
        .into_iter()
        .zip(labels)
        .filter(|(row, label)| {
            let best = row
                .iter()
                .enumerate()
                .fold(
                    (0, F::neg_infinity()),
                    |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                );
            best.0 == **label
        })
        .count();
    correct as f64 / labels.len().max(1) as f64
}
