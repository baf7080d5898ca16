//! The seven ways to train a [`DiscreteVae`](super::DiscreteVae), by name, the learned
//! baseline network one of them needs, and the temperature schedule of the relaxations.

use std::fmt;
use std::str::FromStr;

use stograd::estimator::{Baseline, EmaBaseline};
use stograd::rand::Rng;
use stograd::{Estimator, Params, Scalar, Tape, Var};

use crate::layers::{Activation, Mlp};
use crate::{Error, Result};

/// An estimator of the gradient through a discrete VAE's latents, as the `vae_discrete`
/// example names it on its command line.
///
/// | name | estimator | biased | needs |
/// |---|---|---|---|
/// | `gumbel` | Gumbel-softmax (Concrete) at temperature τ | yes, less as τ → 0 | a cost defined at relaxed `z` |
/// | `gumbel-st` | straight-through Gumbel: hard forward, relaxed backward | yes | |
/// | `straight-through` | hard forward, `∂z/∂p = 1` backward | yes | |
/// | `reinforce` | score function, no baseline | no | |
/// | `reinforce-ema` | score function, moving-average baseline | no | an [`EmaBaseline`] kept across steps |
/// | `reinforce-learned` | score function, learned baseline | no | a [`BaselineNet`] |
/// | `rloo` | score function, leave-one-out over the `k` draws of each example | no | `k ≥ 2` |
///
/// ```
/// use stograd::estimator::EmaBaseline;
/// use stograd::{Estimator, Tape};
/// use stograd_nn::vae::DiscreteEstimator;
///
/// let rloo: DiscreteEstimator = "rloo".parse()?;
/// assert_eq!(rloo.to_string(), "rloo");
/// let tape = Tape::<f32>::new();
/// let ema = EmaBaseline::new(0.9)?;
/// let estimator = rloo.estimator(0.5, 4, &ema, || unreachable!("only reinforce-learned asks"));
/// assert!(matches!(estimator, Estimator::ScoreFunction { .. }));
/// assert!("gumbel-soft".parse::<DiscreteEstimator>().is_err());
/// # let _ = tape;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DiscreteEstimator {
    /// Gumbel-softmax, relaxed forward.
    Gumbel,
    /// Straight-through Gumbel-softmax.
    GumbelSt,
    /// Straight-through on the hard draw.
    StraightThrough,
    /// REINFORCE without a baseline.
    Reinforce,
    /// REINFORCE with an exponential-moving-average baseline.
    ReinforceEma,
    /// REINFORCE with a learned, input-dependent baseline.
    ReinforceLearned,
    /// REINFORCE with the leave-one-out baseline over the draws of each example.
    Rloo,
}

impl DiscreteEstimator {
    /// Every estimator, in the table's order.
    pub const ALL: [DiscreteEstimator; 7] = [
        DiscreteEstimator::Gumbel,
        DiscreteEstimator::GumbelSt,
        DiscreteEstimator::StraightThrough,
        DiscreteEstimator::Reinforce,
        DiscreteEstimator::ReinforceEma,
        DiscreteEstimator::ReinforceLearned,
        DiscreteEstimator::Rloo,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            DiscreteEstimator::Gumbel => "gumbel",
            DiscreteEstimator::GumbelSt => "gumbel-st",
            DiscreteEstimator::StraightThrough => "straight-through",
            DiscreteEstimator::Reinforce => "reinforce",
            DiscreteEstimator::ReinforceEma => "reinforce-ema",
            DiscreteEstimator::ReinforceLearned => "reinforce-learned",
            DiscreteEstimator::Rloo => "rloo",
        }
    }

    /// Whether it differentiates through the Gumbel-softmax relaxation (and so uses τ).
    pub fn is_relaxed(self) -> bool {
        matches!(
            self,
            DiscreteEstimator::Gumbel | DiscreteEstimator::GumbelSt
        )
    }

    /// Whether it is a score-function estimator (unbiased).
    pub fn is_score_function(self) -> bool {
        matches!(
            self,
            DiscreteEstimator::Reinforce
                | DiscreteEstimator::ReinforceEma
                | DiscreteEstimator::ReinforceLearned
                | DiscreteEstimator::Rloo
        )
    }

    /// The engine's estimator for one step: `temperature` for the relaxations, `samples`
    /// draws per example (the leave-one-out group), the moving average's state, and `learned`,
    /// called only by `reinforce-learned`, for the baseline's values on this step's tape.
    pub fn estimator<'t, F: Scalar>(
        self,
        temperature: f64,
        samples: usize,
        ema: &EmaBaseline<F>,
        learned: impl FnOnce() -> Var<'t, F>,
    ) -> Estimator<'t, F> {
        let score = |baseline| Estimator::ScoreFunction { baseline };
        let temperature = F::from_f64(temperature);
        match self {
            DiscreteEstimator::Gumbel => Estimator::GumbelSoftmax {
                temperature,
                hard: false,
            },
            DiscreteEstimator::GumbelSt => Estimator::GumbelSoftmax {
                temperature,
                hard: true,
            },
            DiscreteEstimator::StraightThrough => Estimator::StraightThrough,
            DiscreteEstimator::Reinforce => score(Baseline::None),
            DiscreteEstimator::ReinforceEma => score(Baseline::Ema(ema.clone())),
            DiscreteEstimator::ReinforceLearned => score(Baseline::Learned(learned())),
            DiscreteEstimator::Rloo => score(Baseline::LeaveOneOut { group: samples }),
        }
    }
}

impl fmt::Display for DiscreteEstimator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name is not one of [`DiscreteEstimator::ALL`]'s.
///
/// ```
/// use stograd_nn::vae::{DiscreteEstimator, UnknownEstimator};
///
/// let err = "gumble".parse::<DiscreteEstimator>().unwrap_err();
/// assert_eq!(err, UnknownEstimator("gumble".into()));
/// assert!(err.to_string().contains("expected one of gumbel"));
/// assert!("rloo".parse::<DiscreteEstimator>().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown estimator {0:?}; expected one of gumbel, gumbel-st, straight-through, reinforce, reinforce-ema, reinforce-learned, rloo"
)]
pub struct UnknownEstimator(pub String);

impl FromStr for DiscreteEstimator {
    type Err = UnknownEstimator;

    fn from_str(s: &str) -> std::result::Result<Self, UnknownEstimator> {
        DiscreteEstimator::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| UnknownEstimator(s.to_owned()))
    }
}

/// The relaxation's temperature at a step, annealed as Jang, Gu & Poole (2017):
/// `τ = max(τ_min, τ₀ · exp(−rate · step))`.
///
/// ```
/// use stograd_nn::vae::annealed_temperature;
///
/// assert_eq!(annealed_temperature(1.0, 0.5, 1e-3, 0), 1.0);
/// assert_eq!(annealed_temperature(1.0, 0.5, 1e-3, 1_000_000), 0.5);
/// ```
pub fn annealed_temperature(tau0: f64, tau_min: f64, rate: f64, step: u64) -> f64 {
    (tau0 * (-rate * step as f64).exp()).max(tau_min)
}

/// A learned baseline for the score function: an [`Mlp`] from `x` to one value per example,
/// repeated for each of its draws, so that each draw's cost is compared with a prediction
/// from its input (Mnih & Gregor 2014). The tape trains it by the regression loss
/// `Σ (cost − b)²` it adds to the gradients.
///
/// ```
/// use rand::SeedableRng;
/// use stograd::ndarray::Array2;
/// use stograd::{Params, Tape};
/// use stograd_nn::layers::Activation;
/// use stograd_nn::vae::BaselineNet;
///
/// let mut params = Params::<f32>::new();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let net = BaselineNet::new(&mut params, "baseline", &[64, 32], Activation::Relu, &mut rng)?;
/// let tape = Tape::with_params(&params);
/// let b = net.forward(&tape, tape.constant(Array2::<f32>::zeros((5, 64))), 3);
/// assert_eq!(b.shape(), [15]); // 3 draws of each of 5 examples, example-major
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct BaselineNet {
    /// `x` → one value.
    pub net: Mlp,
}

impl BaselineNet {
    /// An `Mlp` of widths `widths ++ [1]` under `prefix` (`widths[0]` is the input width).
    ///
    /// # Errors
    /// No width, a zero width, or a parameter name that is malformed or taken.
    pub fn new<F: Scalar>(
        params: &mut Params<F>,
        prefix: &str,
        widths: &[usize],
        activation: Activation,
        rng: &mut dyn Rng,
    ) -> Result<Self> {
        if widths.is_empty() {
            return Err(Error::InvalidArgument {
                name: "number of widths",
                constraint: "at least 1 (the input)",
                value: 0.0,
            });
        }
        let mut all = widths.to_vec();
        all.push(1);
        Ok(BaselineNet {
            net: Mlp::new(params, prefix, &all, activation, rng)?,
        })
    }

    /// The baseline of each of `samples` draws of every row of `x`, `[b·samples]`,
    /// example-major (as [`DiscreteVae::elbo`](super::DiscreteVae::elbo) lays out its rows).
    #[track_caller]
    pub fn forward<'t, F: Scalar>(
        &self,
        tape: &'t Tape<'_, F>,
        x: Var<'t, F>,
        samples: usize,
    ) -> Var<'t, F> {
        let b = x.shape()[0];
        let out = self.net.forward(tape, x).reshape(&[b]);
        if samples == 1 {
            return out;
        }
        let rows: Vec<usize> = (0..b)
            .flat_map(|r| std::iter::repeat_n(r, samples))
            .collect();
        out.select_rows(&rows)
    }
}
