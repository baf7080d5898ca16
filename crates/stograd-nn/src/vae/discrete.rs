//! Variational autoencoders with discrete latents (Rolfe 2017; Jang, Gu & Poole 2017;
//! Maddison, Mnih & Teh 2017): the encoder outputs the logits of `q(z | x)`, a product of
//! categorical or Bernoulli factors ([`DiscreteLatent`]); the prior is uniform; the decoder maps
//! the (flattened) `z` to the logits of `p(x | z)`.
//!
//! Training draws `z` through a sample node with the estimator chosen per call (Gumbel-softmax,
//! straight-through, or the score function with a baseline; see
//! [`DiscreteEstimator`](super::DiscreteEstimator)), and the KL term is analytic, so only the
//! reconstruction term is estimated. Evaluation uses the true discrete posterior: the test
//! ELBO `E_q[log p(x | z)] − KL(q ‖ p)` with hard draws, and the importance-weighted bound.

use stograd::ndarray::{Array1, Array2, Axis, Slice};
use stograd::rand::Rng;
use stograd::{Estimator, Params, Scalar, Tape, Var};

use super::latent::{DiscreteLatent, DiscreteQ};
use super::{Likelihood, to_matrix};
use crate::layers::{Activation, Mlp};
use crate::{Error, Result};

/// The shape of a [`DiscreteVae`].
///
/// ```
/// use stograd_nn::vae::{DiscreteLatent, DiscreteVaeConfig};
///
/// // 200 binary latents for the embedded 8×8 digits
/// let config = DiscreteVaeConfig { input: 64, latent: DiscreteLatent::BERNOULLI, ..DiscreteVaeConfig::default() };
/// assert_eq!(config.hidden, [512, 256]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct DiscreteVaeConfig {
    /// The input width (pixels).
    pub input: usize,
    /// The hidden widths of the encoder; the decoder mirrors them.
    pub hidden: Vec<usize>,
    /// The latent space and the family of `q(z | x)`.
    pub latent: DiscreteLatent,
    /// The activation between layers.
    pub activation: Activation,
    /// The observation model `p(x | z)`.
    pub likelihood: Likelihood,
}

impl Default for DiscreteVaeConfig {
    /// Jang, Gu & Poole's MNIST model: 784-512-256-(20 × 10)-256-512-784, ReLU, a Bernoulli
    /// decoder.
    fn default() -> Self {
        DiscreteVaeConfig {
            input: 784,
            hidden: vec![512, 256],
            latent: DiscreteLatent::default(),
            activation: Activation::Relu,
            likelihood: Likelihood::Bernoulli,
        }
    }
}

/// The terms of a discrete VAE's training objective for a batch of `b` examples and `k`
/// draws per example. Rows are example-major: row `r·k + i` is draw `i` of example `r`, so
/// that a leave-one-out baseline with `group = k` compares the draws of one example.
///
/// ```
/// use rand::SeedableRng;
/// use stograd::estimator::Baseline;
/// use stograd::ndarray::Array2;
/// use stograd::{Estimator, Params, Tape};
/// use stograd_nn::vae::{DiscreteLatent, DiscreteVae, DiscreteVaeConfig};
///
/// let mut params = Params::<f64>::new();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(1);
/// let config = DiscreteVaeConfig { input: 64, hidden: vec![16], latent: DiscreteLatent::Bernoulli { bits: 8 }, ..DiscreteVaeConfig::default() };
/// let vae = DiscreteVae::new(&mut params, "vae", config, &mut rng)?;
/// let tape = Tape::with_params(&params);
/// let x = tape.constant(Array2::<f64>::from_elem((3, 64), 0.5));
/// let rloo = Estimator::ScoreFunction { baseline: Baseline::LeaveOneOut { group: 4 } };
/// let terms = vae.elbo(&tape, x, rloo, 4, &mut rng)?;
/// assert_eq!(terms.elbo.shape(), [12]); // 3 examples × 4 draws, example-major
/// assert_eq!(terms.logits.shape(), [3, 8]);
/// let elbo = terms.elbo.value();
/// assert!((terms.loss().item() + elbo.sum() / 4.0).abs() < 1e-9);
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct DiscreteElbo<'t, F: Scalar> {
    /// The encoder's logits `[b, size]`, before the rows are repeated: call
    /// [`retain_grad`](Var::retain_grad) on it to read their gradient.
    pub logits: Var<'t, F>,
    /// `log p(x | z)` at each draw, `[b·k]`.
    pub reconstruction: Var<'t, F>,
    /// `KL(q(z | x) ‖ p(z))`, analytic, repeated for each draw, `[b·k]`.
    pub kl: Var<'t, F>,
    /// `reconstruction − kl`, `[b·k]`.
    pub elbo: Var<'t, F>,
    /// Draws per example.
    pub samples: usize,
}

impl<'t, F: Scalar> DiscreteElbo<'t, F> {
    /// The loss to minimize: the negative ELBO summed over the batch and averaged over the
    /// draws, `−Σ elbo / k`. Its gradient is the estimator's; its value the (relaxed, for
    /// Gumbel-softmax) negative ELBO.
    pub fn loss(&self) -> Var<'t, F> {
        -self.elbo.sum() * F::from_f64(1.0 / self.samples as f64)
    }
}

/// A VAE with discrete latents: encoder `Mlp` → logits of `q(z | x)` → `z` → decoder `Mlp` →
/// `p(x | z)`, with a uniform prior.
///
/// Parameters are named `prefix.encoder.0.weight`, …, `prefix.decoder.0.weight`, …
///
/// # Example
/// ```
/// use rand::SeedableRng;
/// use stograd::ndarray::Array2;
/// use stograd::{Estimator, Params, Tape};
/// use stograd_nn::vae::{DiscreteLatent, DiscreteVae, DiscreteVaeConfig};
///
/// let mut params = Params::<f32>::new();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let latent = DiscreteLatent::Categorical { groups: 4, classes: 3 };
/// let config = DiscreteVaeConfig { input: 64, hidden: vec![32], latent, ..DiscreteVaeConfig::default() };
/// let vae = DiscreteVae::new(&mut params, "vae", config, &mut rng)?;
///
/// let x = Array2::<f32>::from_elem((8, 64), 0.25);
/// let grads = {
///     let tape = Tape::with_params(&params);
///     let gumbel = Estimator::GumbelSoftmax { temperature: 0.5, hard: false };
///     vae.elbo(&tape, tape.constant(x.clone()), gumbel, 1, &mut rng)?.loss().backward()?
/// };
/// assert!(grads.params().count() > 0);
/// let (elbo, iwae) = vae.evaluate(&params, &x, 16, &mut rng)?; // with hard draws
/// assert!(iwae.mean().unwrap() >= elbo.mean().unwrap() - 1.0);
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct DiscreteVae {
    /// `x` → the logits of `q(z | x)`.
    pub encoder: Mlp,
    /// The flattened `z` → the logits of `p(x | z)`.
    pub decoder: Mlp,
    config: DiscreteVaeConfig,
}

impl DiscreteVae {
    /// A discrete VAE with `nn.Linear`-initialized layers under `prefix`.
    ///
    /// # Errors
    /// A zero width, a latent space with no variable or a categorical with fewer than 2
    /// classes, a normal likelihood whose scale is not positive, or a parameter name that is
    /// malformed or taken.
    pub fn new<F: Scalar>(
        params: &mut Params<F>,
        prefix: &str,
        config: DiscreteVaeConfig,
        rng: &mut dyn Rng,
    ) -> Result<Self> {
        config.latent.validate()?;
        config.likelihood.validate()?;
        let scope = |part: &str| crate::layers::scoped(prefix, part);
        let size = config.latent.size();
        let mut widths = vec![config.input];
        widths.extend(&config.hidden);
        widths.push(size);
        let encoder = Mlp::new(params, &scope("encoder"), &widths, config.activation, rng)?;
        widths.reverse();
        let decoder = Mlp::new(params, &scope("decoder"), &widths, config.activation, rng)?;
        Ok(DiscreteVae {
            encoder,
            decoder,
            config,
        })
    }

    /// The model's shape.
    pub fn config(&self) -> &DiscreteVaeConfig {
        &self.config
    }

    /// `q(z | x)` for a batch `x` (`[b, input]`).
    ///
    /// # Errors
    /// A logit that is not finite.
    #[track_caller]
    pub fn posterior<'t, F: Scalar>(
        &self,
        tape: &'t Tape<'_, F>,
        x: Var<'t, F>,
    ) -> Result<DiscreteQ<'t, F>> {
        DiscreteQ::from_logits(self.config.latent, self.encoder.forward(tape, x))
    }

    /// The decoder's output at a flattened `z` (`[n, size]`): the logits of `p(x | z)`.
    #[track_caller]
    pub fn decode<'t, F: Scalar>(&self, tape: &'t Tape<'_, F>, z: Var<'t, F>) -> Var<'t, F> {
        self.decoder.forward(tape, z)
    }

    /// The training objective's terms with `samples` draws of `z` per example through a
    /// sample node with `estimator`: `log p(x | z)` at each draw, and the analytic KL.
    ///
    /// With the score function, each draw is credited with its own row's reconstruction (the
    /// KL does not depend on the draw and gets its exact gradient); a
    /// [`LeaveOneOut`](stograd::estimator::Baseline::LeaveOneOut) baseline with
    /// `group = samples` is RLOO (Kool, van Hoof & Welling 2019), and a learned baseline has
    /// one value per row (`[b·samples]`, e.g. a
    /// [`BaselineNet`](super::BaselineNet)) or one for all.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `samples = 0`; a logit that is not finite; the
    /// estimator's errors (a baseline that does not fit the rows, a temperature that is not
    /// positive).
    #[track_caller]
    pub fn elbo<'t, F: Scalar>(
        &self,
        tape: &'t Tape<'_, F>,
        x: Var<'t, F>,
        estimator: Estimator<'t, F>,
        samples: usize,
        rng: &mut dyn Rng,
    ) -> Result<DiscreteElbo<'t, F>> {
        at_least_one("samples", samples)?;
        let logits = self.encoder.forward(tape, x);
        let b = x.shape()[0];
        // example-major: row r·k + i is draw i of example r
        let rows: Vec<usize> = (0..b)
            .flat_map(|r| std::iter::repeat_n(r, samples))
            .collect();
        let (logits_k, x_k) = if samples == 1 {
            (logits, x)
        } else {
            (logits.select_rows(&rows), x.select_rows(&rows))
        };
        let q = DiscreteQ::from_logits(self.config.latent, logits_k)?;
        let z = q.sample_with(estimator, rng)?;
        let reconstruction = self.config.likelihood.log_prob(self.decode(tape, z), x_k);
        let kl = q.kl_to_uniform()?;
        Ok(DiscreteElbo {
            logits,
            reconstruction,
            kl,
            elbo: reconstruction - kl,
            samples,
        })
    }

    /// The ELBO of the true discrete posterior per example, `[b]`: `log p(x | z) − KL(q ‖ p)`
    /// at one hard draw `z ~ q(z | x)`, an unbiased estimate of `E_q[log p(x | z)] − KL`.
    ///
    /// # Errors
    /// A logit that is not finite.
    pub fn unrelaxed_elbo<'t, F: Scalar>(
        &self,
        tape: &'t Tape<'_, F>,
        x: Var<'t, F>,
        rng: &mut dyn Rng,
    ) -> Result<Var<'t, F>> {
        let q = self.posterior(tape, x)?;
        let z = tape.constant(q.sample(rng));
        let reconstruction = self.config.likelihood.log_prob(self.decode(tape, z), x);
        Ok(reconstruction - q.kl_to_uniform()?)
    }

    /// The importance-weighted bound `log (1/k) Σᵢ p(x, zᵢ) / q(zᵢ | x)` per example, `[b]`,
    /// from `k` hard draws per example (Burda et al. 2016), as a log-sum-exp.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `k = 0`; a logit that is not finite.
    pub fn iwae_bound<'t, F: Scalar>(
        &self,
        tape: &'t Tape<'_, F>,
        x: Var<'t, F>,
        k: usize,
        rng: &mut dyn Rng,
    ) -> Result<Var<'t, F>> {
        at_least_one("k", k)?;
        let b = x.shape()[0];
        let logits = self.encoder.forward(tape, x);
        // draw-major: row i·b + r is draw i of example r
        let repeat: Vec<usize> = (0..k).flat_map(|_| 0..b).collect();
        let q = DiscreteQ::from_logits(self.config.latent, logits.select_rows(&repeat))?;
        let z = tape.constant(q.sample(rng));
        let log_w = self
            .config
            .likelihood
            .log_prob(self.decode(tape, z), x.select_rows(&repeat))
            - q.log_prob(z)
            + F::from_f64(self.config.latent.log_prior());
        Ok(log_w.reshape(&[k, b]).logsumexp_axis(0) - F::from_f64((k as f64).ln()))
    }

    /// The unrelaxed ELBO (one hard draw) and the IWAE-`k` bound of every row of `x`, on
    /// inference tapes, a few examples at a time.
    ///
    /// # Errors
    /// As [`iwae_bound`](Self::iwae_bound).
    pub fn evaluate<F: Scalar>(
        &self,
        params: &Params<F>,
        x: &Array2<F>,
        k: usize,
        rng: &mut dyn Rng,
    ) -> Result<(Array1<F>, Array1<F>)> {
        at_least_one("k", k)?;
        let n = x.nrows();
        let (mut elbo, mut iwae) = (Array1::zeros(n), Array1::zeros(n));
        // about 2¹⁶ decoder rows per tape
        let chunk = (65_536 / k).clamp(1, 512);
        for start in (0..n).step_by(chunk) {
            let rows = Slice::from(start..(start + chunk).min(n));
            let tape = Tape::inference(params);
            let xb = tape.constant(x.slice_axis(Axis(0), rows).to_owned());
            let e = self.unrelaxed_elbo(&tape, xb, rng)?.value();
            elbo.slice_axis_mut(Axis(0), rows).assign(&e);
            let w = self.iwae_bound(&tape, xb, k, rng)?.value();
            iwae.slice_axis_mut(Axis(0), rows).assign(&w);
        }
        Ok((elbo, iwae))
    }

    /// The expected data (the decoder's probabilities, for a Bernoulli decoder) at the
    /// posterior mode of each row of `x`.
    ///
    /// # Errors
    /// A logit that is not finite.
    pub fn reconstruct<F: Scalar>(&self, params: &Params<F>, x: &Array2<F>) -> Result<Array2<F>> {
        let tape = Tape::inference(params);
        let mode = self.posterior(&tape, tape.constant(x.clone()))?.mode();
        let out = self.decode(&tape, tape.constant(mode));
        Ok(to_matrix(self.config.likelihood.mean(out)))
    }

    /// `n` draws from the model: `z` from the uniform prior, then the expected data at each.
    pub fn sample<F: Scalar>(&self, params: &Params<F>, n: usize, rng: &mut dyn Rng) -> Array2<F> {
        let tape = Tape::inference(params);
        let z = tape.constant(self.config.latent.sample_prior::<F>(n, rng));
        to_matrix(self.config.likelihood.mean(self.decode(&tape, z)))
    }
}

fn at_least_one(name: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(Error::InvalidArgument {
            name,
            constraint: "at least 1",
            value: 0.0,
        });
    }
    Ok(())
}
