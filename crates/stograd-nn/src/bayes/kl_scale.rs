//! The weight of the KL term in a mini-batch loss, always explicit.
//!
//! Variational inference maximizes the ELBO of the whole training set, `N` examples:
//!
//! `ELBO = Σₙ E_q[ln p(yₙ | xₙ, w)] − KL(q ‖ p)`.
//!
//! The KL is one term for the whole set; a mini-batch loss must carry the right share of it.
//! [`BayesianLinear::kl`](super::BayesianLinear::kl) returns the unscaled sum, and nothing
//! in this crate scales it behind your back. Two schedules give an unbiased estimate of the
//! ELBO (up to a constant factor) at every step:
//!
//! - **Per example**, [`per_example`]: `loss = mean over the batch of −ln p(y | x, w) +
//!   KL / N`. Its expectation over batches is `−ELBO / N`, so every step has the same scale
//!   whatever the batch size, and a learning rate means the same thing as for a
//!   deterministic net trained on the mean loss. Use it by default (the PyTorch reference
//!   in `shared/bench/bayes_linear.py` does).
//! - **Blundell et al. (2015, eq. 9)**, [`blundell`]: batch `i` of `M` in an epoch carries
//!   `πᵢ = 2^(M−i) / (2^M − 1)` of the KL: `Fᵢ = πᵢ KL − Σ_batch ln p(y | x, w)`. The `πᵢ`
//!   sum to 1, so an epoch's losses sum to the full `−ELBO`. The first batches of an epoch
//!   carry almost all of it (`π₁ ≈ ½`, `π₂ ≈ ¼`, and below `10⁻⁹` after 30 batches): early
//!   in each epoch the prior dominates, later the data. Blundell et al. found it trained
//!   better than uniform weights. Use it to reproduce them, or when the KL swamps the
//!   first steps; divide the batch's loss by its size (`πᵢ KL / B + mean NLL`) to keep
//!   per-example units.
//!
//! **The trap** (the KL-scale questions of tensorflow/probability#651, #691 and #719):
//! TFP's layers add the *unscaled* KL of the whole network to the Keras loss, which averages
//! the likelihood over the batch. The KL then weighs `N` times too much: the posterior
//! collapses to the prior, predictions lose their confidence and accuracy stalls, unless
//! every layer is given `kernel_divergence_fn = lambda q, p, _: kl_divergence(q, p) / N`.
//! The opposite mistake, dividing by the batch size instead of `N`, still weighs the KL
//! `N / B` times too much. A mean likelihood beside a KL scaled for a summed one (or the
//! other way round) is always wrong; here both terms' scales are written in the loss.
//!
//! # Example
//! ```
//! use stograd_nn::bayes::kl_scale;
//!
//! // 1,497 training digits in batches of 128: 12 batches per epoch
//! assert_eq!(kl_scale::per_example(1497)?, 1.0 / 1497.0);
//! let pis: Vec<f64> = (1..=12).map(|i| kl_scale::blundell(i, 12).unwrap()).collect();
//! assert!((pis.iter().sum::<f64>() - 1.0).abs() < 1e-15);
//! assert!((pis[0] - 2048.0 / 4095.0).abs() < 1e-15);
//! assert!(kl_scale::blundell(0, 12).is_err()); // batches count from 1, as in the paper
//! # Ok::<(), stograd_nn::Error>(())
//! ```

use crate::{Error, Result};

/// `1 / N`: the KL weight of the per-example objective `mean NLL + KL / N`.
///
/// # Errors
/// [`Error::InvalidArgument`] for `n_train = 0`.
pub fn per_example(n_train: usize) -> Result<f64> {
    if n_train == 0 {
        return Err(Error::InvalidArgument {
            name: "n_train",
            constraint: "positive",
            value: 0.0,
        });
    }
    Ok(1.0 / n_train as f64)
}

/// Blundell et al.'s share of the KL for batch `i` (counted from 1) of `num_batches = M`:
/// `πᵢ = 2^(M−i) / (2^M − 1)`, computed as `2^(−i) / (1 − 2^(−M))` so that it neither
/// overflows nor loses precision for large `M`.
///
/// # Errors
/// [`Error::InvalidArgument`] unless `1 ≤ i ≤ num_batches`.
pub fn blundell(i: usize, num_batches: usize) -> Result<f64> {
    if num_batches == 0 {
        return Err(Error::InvalidArgument {
            name: "num_batches",
            constraint: "positive",
            value: 0.0,
        });
    }
    if !(1..=num_batches).contains(&i) {
        return Err(Error::InvalidArgument {
            name: "batch index i",
            constraint: "between 1 and num_batches",
            value: i as f64,
        });
    }
    // 2^(−M) is exact and 1 − 2^(−M) correctly rounded
    Ok((-(i as f64)).exp2() / (1.0 - (-(num_batches as f64)).exp2()))
}
