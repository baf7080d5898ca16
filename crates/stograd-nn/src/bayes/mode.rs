//! How a Bayesian layer turns its weight posterior into a forward pass.

/// The forward mode of a [`BayesianLinear`](super::BayesianLinear), chosen per call.
///
/// The posterior is `W_ij ~ N(μ_ij, σ_ij²)` and `b_j ~ N(μ_j, σ_j²)`, all independent,
/// `σ = softplus(ρ)`. Every stochastic mode gives each example a pre-activation with the
/// same marginal distribution, `N(x μ_Wᵀ + μ_b, x² σ_W²ᵀ + σ_b²)` per output unit; they
/// differ in how draws are shared between the examples of a batch, which sets the variance
/// of the gradient (Kingma, Salimans & Welling 2015, §2.2):
///
/// | mode | noise per batch | pre-activations of two examples | gradient variance in the batch size `B` |
/// |---|---|---|---|
/// | `LocalReparam` | `ε`, `[B, out]` | independent | falls as `1/B` |
/// | `Flipout` | `ΔW` `[out, in]`, signs `[B, in]`, `[B, out]` | uncorrelated | falls about as `1/B` |
/// | `Global` | `W` `[out, in]` | correlated through the shared `W` | has a floor `B` cannot lower |
/// | `Mean` | none | deterministic | — |
///
/// With one `W` per batch (`Global`), the batch's examples all see the same weights, so the
/// part of the gradient's variance that comes from the draw of `W` is not averaged away by
/// more examples: its covariance term stays as `B` grows. Sampling the pre-activations
/// (`LocalReparam`) or decorrelating the examples' perturbations (`Flipout`) removes that
/// term. See the module docs of [`bayes`](super) for the variance test that measures it.
///
/// # Example
/// ```
/// use rand::SeedableRng;
/// use stograd::ndarray::Array2;
/// use stograd::{Params, Tape};
/// use stograd_nn::bayes::{BayesianLinear, Mode};
///
/// let mut params = Params::<f64>::new();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let fc = BayesianLinear::new(&mut params, "fc", 3, 2, Default::default(), &mut rng)?;
/// let tape = Tape::with_params(&params);
/// let x = tape.constant(Array2::from_elem((4, 3), 1.0));
/// let mean = fc.forward(&tape, x, Mode::Mean, &mut rng)?.value();
/// let draw = fc.forward(&tape, x, Mode::LocalReparam, &mut rng)?.value();
/// // σ = softplus(−5) ≈ 0.0067 at initialization: draws stay near the mean
/// assert!(draw.iter().zip(&mean).all(|(d, m)| (d - m).abs() < 0.1));
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The local reparameterization (Kingma, Salimans & Welling 2015): the pre-activation
    /// `b ~ N(γ, δ)`, `γ = x μ_Wᵀ + μ_b`, `δ = x² σ_W²ᵀ + σ_b²`, drawn as `γ + √δ ⊙ ε` with
    /// one `ε ~ N(0, 1)` per example and output unit. Two matrix products (`x μ_Wᵀ` and
    /// `x² σ_W²ᵀ`); no weight is drawn. The right default for training.
    LocalReparam,
    /// Flipout (Wen et al. 2018): one `ΔW ~ N(0, σ_W²)` and `Δb ~ N(0, σ_b²)` per batch,
    /// decorrelated between examples by random signs `r ∈ {±1}^in` and `s ∈ {±1}^out` per
    /// example: `x μ_Wᵀ + μ_b + (((x ⊙ r) ΔWᵀ) + Δb) ⊙ s`. Each example's effective weight
    /// `μ_W + ΔW ⊙ s rᵀ` is a draw from the posterior, since `ΔW` is symmetric about 0.
    /// Also two matrix products. Unlike the local reparameterization it keeps one weight
    /// draw per example, so it stays correct where the same weights are used more than once
    /// in an example (recurrent steps, convolutions), which sampling pre-activations
    /// independently would get wrong.
    Flipout,
    /// One draw `W ~ N(μ_W, σ_W²)`, `b ~ N(μ_b, σ_b²)` per call, through a pathwise sample
    /// node, shared by the whole batch: `x Wᵀ + b`. What "Bayes by Backprop" (Blundell et
    /// al. 2015) does, and the mode to use to draw a whole network for prediction (one
    /// function per call, for posterior samples of a regression curve).
    Global,
    /// The posterior mean, deterministically: `x μ_Wᵀ + μ_b`.
    Mean,
}
