//! The discrete latent spaces of a [`DiscreteVae`](super::DiscreteVae): the families of
//! `q(z | x)`, their draws, densities and KL divergence to the uniform prior.

use stograd::dist::kl::kl_divergence;
use stograd::dist::{Bernoulli, Distribution, OneHotCategorical};
use stograd::ndarray::{ArrayD, Axis, IxDyn};
use stograd::rand::Rng;
use stograd::{Estimator, Scalar, Tape, Var};

use crate::{Error, Result};

/// The latent space of a [`DiscreteVae`](super::DiscreteVae), the family of `q(z | x)` (a
/// product of independent factors whose logits the encoder outputs), and the uniform prior
/// `p(z)`.
///
/// | family | encoder logits per example | `z` (flattened, as the decoder reads it) | `log p(z)` |
/// |---|---|---|---|
/// | `Categorical { groups, classes }` | `groups · classes` | `groups` one-hot vectors | `−groups · ln classes` |
/// | `Bernoulli { bits }` | `bits` | `bits` zeros and ones | `−bits · ln 2` |
///
/// ```
/// use stograd_nn::vae::DiscreteLatent;
///
/// // Jang, Gu & Poole (2017): 20 categorical variables of 10 classes on MNIST
/// assert_eq!(DiscreteLatent::default(), DiscreteLatent::Categorical { groups: 20, classes: 10 });
/// assert_eq!(DiscreteLatent::default().size(), 200);
/// assert_eq!(DiscreteLatent::BERNOULLI.size(), 200);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscreteLatent {
    /// `groups` independent categorical variables of `classes` classes each, one-hot.
    Categorical {
        /// The number of categorical variables, at least 1.
        groups: usize,
        /// The classes of each, at least 2.
        classes: usize,
    },
    /// `bits` independent Bernoulli variables.
    Bernoulli {
        /// The number of binary variables, at least 1.
        bits: usize,
    },
}

impl Default for DiscreteLatent {
    /// [`CATEGORICAL`](Self::CATEGORICAL): 20 × 10.
    fn default() -> Self {
        Self::CATEGORICAL
    }
}

impl DiscreteLatent {
    /// 20 categorical variables of 10 classes, as in Jang, Gu & Poole (2017).
    pub const CATEGORICAL: Self = DiscreteLatent::Categorical {
        groups: 20,
        classes: 10,
    };

    /// 200 binary variables.
    pub const BERNOULLI: Self = DiscreteLatent::Bernoulli { bits: 200 };

    /// The number of logits per example, which is also the width of the flattened `z`.
    pub fn size(self) -> usize {
        match self {
            DiscreteLatent::Categorical { groups, classes } => groups * classes,
            DiscreteLatent::Bernoulli { bits } => bits,
        }
    }

    /// `"categorical"` or `"bernoulli"`.
    pub fn name(self) -> &'static str {
        match self {
            DiscreteLatent::Categorical { .. } => "categorical",
            DiscreteLatent::Bernoulli { .. } => "bernoulli",
        }
    }

    /// `log p(z)` under the uniform prior, the same for every `z`.
    pub fn log_prior(self) -> f64 {
        match self {
            DiscreteLatent::Categorical { groups, classes } => {
                -(groups as f64) * (classes as f64).ln()
            }
            DiscreteLatent::Bernoulli { bits } => -(bits as f64) * std::f64::consts::LN_2,
        }
    }

    pub(crate) fn validate(self) -> Result<()> {
        let (name, value, least) = match self {
            DiscreteLatent::Categorical { groups: 0, .. } => ("groups", 0, 1),
            DiscreteLatent::Categorical { classes, .. } if classes < 2 => ("classes", classes, 2),
            DiscreteLatent::Bernoulli { bits: 0 } => ("bits", 0, 1),
            _ => return Ok(()),
        };
        Err(Error::InvalidArgument {
            name,
            constraint: if least == 1 {
                "at least 1"
            } else {
                "at least 2"
            },
            value: value as f64,
        })
    }

    /// `n` draws from the uniform prior, flattened, `[n, size]`.
    pub fn sample_prior<F: Scalar>(self, n: usize, rng: &mut dyn Rng) -> ArrayD<F> {
        let tape = Tape::<F>::new();
        let q =
            DiscreteQ::from_logits(self, tape.constant(ArrayD::zeros(IxDyn(&[n, self.size()]))))
                .expect("zero logits are valid");
        q.flatten(tape.constant(q.dist().sample(rng))).value()
    }
}

/// `q(z | x)` for a batch of `b` rows: the factors of a [`DiscreteLatent`] with their logits
/// on the tape.
///
/// ```
/// use rand::SeedableRng;
/// use stograd::ndarray::{Array2, array};
/// use stograd::{Estimator, Tape};
/// use stograd_nn::vae::{DiscreteLatent, DiscreteQ};
///
/// let tape = Tape::<f64>::new();
/// let latent = DiscreteLatent::Categorical { groups: 2, classes: 3 };
/// let logits = tape.variable(array![[0.0, 1.0, -1.0, 2.0, 0.0, 0.0]]);
/// let q = DiscreteQ::from_logits(latent, logits)?;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let z = q.sample_with(Estimator::score_function(), &mut rng)?;
/// assert_eq!(z.shape(), [1, 6]); // two one-hot vectors side by side
/// assert_eq!(z.value().sum(), 2.0);
/// assert!(q.kl_to_uniform()?.value()[0] > 0.0);
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub enum DiscreteQ<'t, F: Scalar> {
    /// One-hot categoricals, batch `[b, groups]`, event `[classes]`.
    Categorical(OneHotCategorical<'t, F>),
    /// Bernoullis, batch `[b, bits]`.
    Bernoulli(Bernoulli<'t, F>),
}

impl<'t, F: Scalar> DiscreteQ<'t, F> {
    /// The posterior whose logits are `logits` (`[b, latent.size()]`, the encoder's output).
    ///
    /// # Errors
    /// A logit that is not finite.
    ///
    /// # Panics
    /// If `logits` is not `[b, latent.size()]`.
    #[track_caller]
    pub fn from_logits(latent: DiscreteLatent, logits: Var<'t, F>) -> Result<Self> {
        let shape = logits.shape();
        assert!(
            shape.len() == 2 && shape[1] == latent.size(),
            "DiscreteQ::from_logits: logits of shape {shape:?}, expected [b, {}] for {latent:?}",
            latent.size()
        );
        Ok(match latent {
            DiscreteLatent::Categorical { groups, classes } => DiscreteQ::Categorical(
                OneHotCategorical::from_logits(logits.reshape(&[shape[0], groups, classes]))?,
            ),
            DiscreteLatent::Bernoulli { .. } => {
                DiscreteQ::Bernoulli(Bernoulli::from_logits(logits)?)
            }
        })
    }

    /// The factors as one distribution.
    pub fn dist(&self) -> &dyn Distribution<'t, F> {
        match self {
            DiscreteQ::Categorical(q) => q,
            DiscreteQ::Bernoulli(q) => q,
        }
    }

    /// A draw `z ~ q` through a sample node with `estimator`, flattened to `[b, size]`: hard
    /// for the score function and straight-through, relaxed for Gumbel-softmax (one-hot or
    /// 0/1 forward with `hard`).
    ///
    /// # Errors
    /// The estimator's: a baseline that does not fit the batch, a temperature that is not
    /// positive.
    #[track_caller]
    pub fn sample_with(
        &self,
        estimator: Estimator<'t, F>,
        rng: &mut dyn Rng,
    ) -> Result<Var<'t, F>> {
        let tape = self.dist().params()[0].tape();
        let z = tape.sample_with(self.dist(), estimator, rng)?;
        Ok(self.flatten(z))
    }

    /// A draw without a gradient, flattened to `[b, size]`.
    pub fn sample(&self, rng: &mut dyn Rng) -> ArrayD<F> {
        let tape = self.dist().params()[0].tape();
        self.flatten(tape.constant(self.dist().sample(rng))).value()
    }

    /// The most probable `z` (each group's most probable class, each bit rounded), `[b, size]`.
    pub fn mode(&self) -> ArrayD<F> {
        match self {
            DiscreteQ::Categorical(q) => {
                let probs = q.probs().value();
                let mut z = ArrayD::zeros(probs.raw_dim());
                for (mut out, p) in z.lanes_mut(Axis(2)).into_iter().zip(probs.lanes(Axis(2))) {
                    let best = (0..p.len())
                        .max_by(|&i, &j| p[i].partial_cmp(&p[j]).expect("finite probabilities"))
                        .expect("at least 2 classes");
                    out[best] = F::one();
                }
                let rows = z.shape()[0];
                z.into_shape_with_order(IxDyn(&[rows, self.size()]))
                    .expect("same count")
            }
            DiscreteQ::Bernoulli(q) => q
                .logits()
                .value()
                .mapv(|l| if l > F::zero() { F::one() } else { F::zero() }),
        }
    }

    /// `log q(z | x)` of a flattened draw `z` (`[b, size]`), summed over the factors, `[b]`.
    pub fn log_prob(&self, z: Var<'t, F>) -> Var<'t, F> {
        self.dist().log_prob(self.unflatten(z)).sum_axis(1)
    }

    /// The analytic `KL(q(z | x) ‖ p(z))` to the uniform prior, `[b]`: per factor
    /// `Σₖ qₖ ln qₖ + ln K` (`K` classes, or 2 for a bit), summed, from stograd's KL table.
    ///
    /// # Errors
    /// None in practice (both pairs are in the table); the table's own errors are passed on.
    pub fn kl_to_uniform(&self) -> Result<Var<'t, F>> {
        let tape = self.dist().params()[0].tape();
        let kl = match self {
            DiscreteQ::Categorical(q) => {
                let classes = q.event_shape()[0];
                let uniform = OneHotCategorical::from_logits(
                    tape.constant(ArrayD::zeros(IxDyn(&[classes]))),
                )?;
                kl_divergence(q, &uniform)?
            }
            DiscreteQ::Bernoulli(q) => {
                kl_divergence(q, &Bernoulli::from_logits(tape.scalar(F::zero()))?)?
            }
        };
        Ok(kl.sum_axis(1))
    }

    /// The width of a flattened draw.
    fn size(&self) -> usize {
        let shape = self.dist().batch_shape().to_vec();
        shape[1..].iter().product::<usize>() * self.dist().event_shape().iter().product::<usize>()
    }

    /// A flattened draw in the factors' shape.
    fn unflatten(&self, z: Var<'t, F>) -> Var<'t, F> {
        match self {
            DiscreteQ::Categorical(q) => {
                let mut shape = q.batch_shape().to_vec();
                shape.extend(q.event_shape());
                z.reshape(&shape)
            }
            DiscreteQ::Bernoulli(_) => z,
        }
    }

    /// A draw of the factors' shape as `[b, size]`.
    fn flatten(&self, z: Var<'t, F>) -> Var<'t, F> {
        let rows = z.shape()[0];
        z.reshape(&[rows, self.size()])
    }
}
