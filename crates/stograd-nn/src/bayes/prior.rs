//! Priors over the weights of a Bayesian layer, one independent copy per weight and bias.

use std::f64::consts::PI;

use crate::{Error, Result};

/// The prior `p(w)` of each weight and bias of a [`BayesianLinear`](super::BayesianLinear),
/// independent across them.
///
/// - [`Prior::Normal`]: `p(w) = N(w; 0, σ_p²)`. The KL of the factorized Gaussian posterior
///   to it has a closed form (see [`BayesianLinear::kl`](super::BayesianLinear::kl)).
/// - [`Prior::ScaleMixture`] (Blundell et al. 2015, eq. 7):
///   `p(w) = π N(w; 0, σ₁²) + (1 − π) N(w; 0, σ₂²)`, usually with `σ₁ > σ₂`: a wide
///   component and a narrow one near 0, a heavy-tailed prior that pulls most weights to 0
///   and lets a few be large. Its KL has no closed form and is estimated by Monte Carlo.
///
/// Build with [`Prior::normal`] or [`Prior::scale_mixture`], which check the values; a
/// layer checks a prior written as a literal when it is built.
///
/// # Example
/// ```
/// use stograd_nn::bayes::Prior;
///
/// // Blundell et al.'s MNIST setting: π = 1/2, −ln σ₁ = 0, −ln σ₂ = 6
/// let prior = Prior::scale_mixture(0.5, 1.0, (-6f64).exp())?;
/// // at 0: π/σ₁ + (1 − π)/σ₂ times 1/√(2π), the narrow component 400 times the wide one
/// let at_zero = 0.5 * (1.0 + 6f64.exp()) / (2.0 * std::f64::consts::PI).sqrt();
/// assert!((prior.log_prob(0.0) - at_zero.ln()).abs() < 1e-12);
/// assert!(Prior::scale_mixture(1.5, 1.0, 0.1).is_err());
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Prior {
    /// `N(0, std²)`.
    Normal {
        /// `σ_p > 0`.
        std: f64,
    },
    /// `π N(0, σ₁²) + (1 − π) N(0, σ₂²)`.
    ScaleMixture {
        /// The weight `π ∈ (0, 1)` of the first component.
        pi: f64,
        /// `σ₁ > 0`.
        sigma1: f64,
        /// `σ₂ > 0`.
        sigma2: f64,
    },
}

impl Default for Prior {
    /// `N(0, 1)`, the prior of the PyTorch reference in `shared/bench/bayes_linear.py`.
    fn default() -> Self {
        Prior::Normal { std: 1.0 }
    }
}

impl Prior {
    /// `N(0, std²)`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `std` is positive and finite.
    pub fn normal(std: f64) -> Result<Self> {
        let prior = Prior::Normal { std };
        prior.validate()?;
        Ok(prior)
    }

    /// `π N(0, σ₁²) + (1 − π) N(0, σ₂²)`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `0 < π < 1` and both scales are positive and finite.
    pub fn scale_mixture(pi: f64, sigma1: f64, sigma2: f64) -> Result<Self> {
        let prior = Prior::ScaleMixture { pi, sigma1, sigma2 };
        prior.validate()?;
        Ok(prior)
    }

    /// `Ok` for a prior whose values are in range.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first value out of range.
    pub fn validate(&self) -> Result<()> {
        let scale = |name, value: f64| {
            if value > 0.0 && value.is_finite() {
                Ok(())
            } else {
                Err(Error::InvalidArgument {
                    name,
                    constraint: "positive and finite",
                    value,
                })
            }
        };
        match *self {
            Prior::Normal { std } => scale("prior std", std),
            Prior::ScaleMixture { pi, sigma1, sigma2 } => {
                if !(pi > 0.0 && pi < 1.0) {
                    return Err(Error::InvalidArgument {
                        name: "mixture weight pi",
                        constraint: "strictly between 0 and 1",
                        value: pi,
                    });
                }
                scale("sigma1", sigma1)?;
                scale("sigma2", sigma2)
            }
        }
    }

    /// `ln p(w)` for one weight, in `f64`; the mixture's two terms are added in log space
    /// (`ln(eᵃ + eᵇ) = max(a, b) + ln(1 + e^{−|a − b|})`), so it is finite far in the tails.
    pub fn log_prob(&self, w: f64) -> f64 {
        let half_ln_2pi = 0.5 * (2.0 * PI).ln();
        match *self {
            Prior::Normal { std } => -0.5 * (w / std).powi(2) - std.ln() - half_ln_2pi,
            Prior::ScaleMixture { pi, sigma1, sigma2 } => {
                let a = pi.ln() - sigma1.ln() - 0.5 * (w / sigma1).powi(2);
                let b = (1.0 - pi).ln() - sigma2.ln() - 0.5 * (w / sigma2).powi(2);
                a.max(b) + (-(a - b).abs()).exp().ln_1p() - half_ln_2pi
            }
        }
    }

    /// Whether `KL(q ‖ p)` to a Gaussian `q` has a closed form (the normal prior), rather
    /// than a Monte Carlo estimate (the scale mixture).
    pub fn has_analytic_kl(&self) -> bool {
        matches!(self, Prior::Normal { .. })
    }
}
