//! Variational autoencoders with a Bernoulli decoder (Kingma & Welling 2014).
//!
//! The encoder, an [`Mlp`], maps `x` to the parameters of `q(z | x)` (a [`Posterior`]
//! family); `z` is drawn through a pathwise sample node; the decoder, another `Mlp`, maps `z`
//! to the logits of `p(x | z) = ∏ Bernoulli(xᵢ; σ(logitᵢ))`; the prior is `N(0, I)`.
//!
//! - [`Vae::elbo`]: `log p(x | z) − KL(q(z | x) ‖ p(z))` per example, `z ~ q(z | x)`, with the
//!   KL analytic (from stograd's table) or a one-sample Monte Carlo estimate
//!   `log q(z | x) − log p(z)`; its two terms are returned apart, so the loss can weight them
//!   (β-VAE, KL warm-up).
//! - [`Vae::iwae_bound`]: `log (1/k) Σᵢ p(x, zᵢ) / q(zᵢ | x)` with `zᵢ ~ q(z | x)` (Burda et
//!   al. 2016), computed as a log-sum-exp; `k = 1` is the ELBO with a Monte Carlo KL. It
//!   bounds `log p(x)` from below, tighter as `k` grows, and trains an IWAE when used as
//!   the loss.
//! - [`Vae::evaluate`]: both bounds on a data set without recording a graph, in chunks.
//!
//! With the default [`Likelihood::Bernoulli`], the reconstruction term treats pixel
//! intensities in `[0, 1]` as Bernoulli targets, as the PyTorch example does (for binarized
//! data it is the exact log-likelihood); [`Likelihood::Normal`] is for real-valued data.
//!
//! [`DiscreteVae`] has discrete latents instead ([`DiscreteLatent`]: categorical or Bernoulli
//! factors, a uniform prior), trained with the gradient estimator chosen per call
//! ([`DiscreteEstimator`]) and evaluated with the true, unrelaxed posterior.

mod discrete;
mod discrete_estimator;
mod latent;
mod posterior;

pub use discrete::{DiscreteElbo, DiscreteVae, DiscreteVaeConfig};
pub use discrete_estimator::{
    BaselineNet, DiscreteEstimator, UnknownEstimator, annealed_temperature,
};
pub use latent::{DiscreteLatent, DiscreteQ};
pub use posterior::{Posterior, Q};

use rand_distr::StandardNormal;
use stograd::ndarray::{Array1, Array2, Axis, Slice};
use stograd::rand::{Rng, RngExt};
use stograd::{Params, Scalar, Tape, Var};

use crate::layers::{Activation, Mlp};
use crate::{Error, Result};

/// The shape of a [`Vae`].
///
/// ```
/// use stograd_nn::vae::{Posterior, VaeConfig};
///
/// // a 2-D latent space with a full-covariance posterior, the rest as PyTorch's example
/// let config = VaeConfig { latent: 2, posterior: Posterior::Cholesky, ..VaeConfig::default() };
/// assert_eq!((config.input, config.hidden.as_slice()), (784, &[400][..]));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct VaeConfig {
    /// The input width (pixels).
    pub input: usize,
    /// The hidden widths of the encoder; the decoder mirrors them.
    pub hidden: Vec<usize>,
    /// The latent dimension `d`.
    pub latent: usize,
    /// The family of `q(z | x)`.
    pub posterior: Posterior,
    /// The activation between layers.
    pub activation: Activation,
    /// The observation model `p(x | z)`.
    pub likelihood: Likelihood,
}

impl Default for VaeConfig {
    /// The PyTorch example's model: 784-400-20-400-784, ReLU, diagonal posterior, Bernoulli
    /// decoder.
    fn default() -> Self {
        VaeConfig {
            input: 784,
            hidden: vec![400],
            latent: 20,
            posterior: Posterior::Diagonal,
            activation: Activation::Relu,
            likelihood: Likelihood::Bernoulli,
        }
    }
}

/// The observation model `p(x | z)` on the decoder's output `o`.
///
/// ```
/// use stograd_nn::vae::{Likelihood, VaeConfig};
///
/// // real-valued data with unit noise: the decoder outputs the mean
/// let config = VaeConfig { input: 10, likelihood: Likelihood::Normal { scale: 1.0 }, ..VaeConfig::default() };
/// # let _ = config;
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Likelihood {
    /// `∏ Bernoulli(xᵢ; σ(oᵢ))`: `o` are logits; for images with intensities in `[0, 1]`.
    Bernoulli,
    /// `∏ N(xᵢ; oᵢ, scale²)`: `o` is the mean, the scale fixed; for real-valued data.
    Normal {
        /// The observation noise's standard deviation, positive.
        scale: f64,
    },
}

impl Likelihood {
    /// An error for a normal likelihood whose scale is not positive and finite.
    fn validate(self) -> Result<()> {
        if let Likelihood::Normal { scale } = self
            && !(scale > 0.0 && scale.is_finite())
        {
            return Err(Error::InvalidArgument {
                name: "observation scale",
                constraint: "positive and finite",
                value: scale,
            });
        }
        Ok(())
    }

    /// `log p(x | o)` per row, `[b]`.
    fn log_prob<'t, F: Scalar>(self, out: Var<'t, F>, x: Var<'t, F>) -> Var<'t, F> {
        match self {
            Likelihood::Bernoulli => -out.bce_with_logits(x).sum_axis(1),
            Likelihood::Normal { scale } => {
                // −½ Σ ((x − o)/s)² − n (ln s + ½ ln 2π)
                let n = x.shape()[1] as f64;
                let constant = n * (scale.ln() + 0.5 * (2.0 * std::f64::consts::PI).ln());
                ((x - out) * F::from_f64(1.0 / scale)).square().sum_axis(1) * F::from_f64(-0.5)
                    - F::from_f64(constant)
            }
        }
    }

    /// The data's expected value given the decoder's output.
    fn mean<'t, F: Scalar>(self, out: Var<'t, F>) -> Var<'t, F> {
        match self {
            Likelihood::Bernoulli => out.sigmoid(),
            Likelihood::Normal { .. } => out,
        }
    }
}

/// How the ELBO's KL term is computed.
///
/// ```
/// use rand::SeedableRng;
/// use stograd::ndarray::Array2;
/// use stograd::{Params, Tape};
/// use stograd_nn::vae::{KlEstimate, Vae, VaeConfig};
///
/// let mut params = Params::<f64>::new();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let vae = Vae::new(&mut params, "vae", VaeConfig { input: 4, hidden: vec![3], latent: 2, ..VaeConfig::default() }, &mut rng)?;
/// let tape = Tape::inference(&params);
/// let x = tape.constant(Array2::from_elem((1, 4), 0.5));
/// let exact = vae.elbo_with(&tape, x, KlEstimate::Analytic, &mut rng)?.kl.item();
/// let draws: f64 = (0..4000)
///     .map(|_| vae.elbo_with(&tape, x, KlEstimate::MonteCarlo, &mut rng).unwrap().kl.item())
///     .sum::<f64>() / 4000.0;
/// assert!((draws - exact).abs() < 0.05);
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KlEstimate {
    /// In closed form, from stograd's KL table.
    Analytic,
    /// `log q(z | x) − log p(z)` at the ELBO's own draw `z`: unbiased, noisier.
    MonteCarlo,
}

/// The ELBO of a batch and its two terms, each `[b]`: `elbo = reconstruction − kl`.
///
/// ```
/// use rand::SeedableRng;
/// use stograd::ndarray::Array2;
/// use stograd::{Params, Tape};
/// use stograd_nn::vae::{Vae, VaeConfig};
///
/// let mut params = Params::<f32>::new();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let vae = Vae::new(&mut params, "vae", VaeConfig { input: 4, hidden: vec![3], latent: 2, ..VaeConfig::default() }, &mut rng)?;
/// let tape = Tape::with_params(&params);
/// let e = vae.elbo(&tape, tape.constant(Array2::from_elem((5, 4), 0.5)), &mut rng)?;
/// // a β-VAE's loss, β = 4
/// let loss = (e.kl * 4.0 - e.reconstruction).sum();
/// assert_eq!(e.elbo.shape(), [5]);
/// # let _ = loss.backward()?;
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Elbo<'t, F: Scalar> {
    /// `log p(x | z)`, `z ~ q(z | x)`.
    pub reconstruction: Var<'t, F>,
    /// `KL(q(z | x) ‖ p(z))` or its one-sample estimate.
    pub kl: Var<'t, F>,
    /// `reconstruction − kl`.
    pub elbo: Var<'t, F>,
}

/// A VAE: encoder `Mlp` → posterior head → `z` → decoder `Mlp` → `p(x | z)`.
///
/// Parameters are named `prefix.encoder.0.weight`, …, `prefix.decoder.0.weight`, …; the
/// encoder's last layer is the posterior head.
///
/// # Example
/// ```
/// use rand::SeedableRng;
/// use stograd::ndarray::Array2;
/// use stograd::{Params, Tape};
/// use stograd_nn::vae::{Vae, VaeConfig};
///
/// let mut params = Params::<f32>::new();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let config = VaeConfig { input: 64, hidden: vec![32], latent: 2, ..VaeConfig::default() };
/// let vae = Vae::new(&mut params, "vae", config, &mut rng)?;
///
/// let x = Array2::<f32>::from_elem((8, 64), 0.25);
/// let grads = {
///     let tape = Tape::with_params(&params);
///     let elbo = vae.elbo(&tape, tape.constant(x.clone()), &mut rng)?;
///     (-elbo.elbo).sum().backward()?
/// };
/// assert!(grads.params().count() > 0);
/// let (elbo, iwae) = vae.evaluate(&params, &x, 16, &mut rng)?;
/// assert!(iwae.mean().unwrap() >= elbo.mean().unwrap() - 1.0); // the bound is tighter
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Vae {
    /// `x` → the head of `q(z | x)`.
    pub encoder: Mlp,
    /// `z` → the logits of `p(x | z)`.
    pub decoder: Mlp,
    config: VaeConfig,
}

impl Vae {
    /// A VAE with `nn.Linear`-initialized layers under `prefix`.
    ///
    /// # Errors
    /// A zero width or latent dimension, a rank outside `1..latent`, or a parameter name that
    /// is malformed or taken.
    pub fn new<F: Scalar>(
        params: &mut Params<F>,
        prefix: &str,
        config: VaeConfig,
        rng: &mut dyn Rng,
    ) -> Result<Self> {
        if config.latent == 0 {
            return Err(Error::InvalidArgument {
                name: "latent",
                constraint: "at least 1",
                value: 0.0,
            });
        }
        config.posterior.validate(config.latent)?;
        config.likelihood.validate()?;
        let scope = |part: &str| crate::layers::scoped(prefix, part);
        let mut widths = vec![config.input];
        widths.extend(&config.hidden);
        widths.push(config.posterior.head_size(config.latent));
        let encoder = Mlp::new(params, &scope("encoder"), &widths, config.activation, rng)?;
        let mut widths = vec![config.latent];
        widths.extend(config.hidden.iter().rev());
        widths.push(config.input);
        let decoder = Mlp::new(params, &scope("decoder"), &widths, config.activation, rng)?;
        Ok(Vae {
            encoder,
            decoder,
            config,
        })
    }

    /// The model's shape.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// `q(z | x)` for a batch `x` (`[b, input]`).
    ///
    /// # Errors
    /// A head output that makes an invalid distribution (a non-finite value).
    #[track_caller]
    pub fn posterior<'t, F: Scalar>(
        &self,
        tape: &'t Tape<'_, F>,
        x: Var<'t, F>,
    ) -> Result<Q<'t, F>> {
        let head = self.encoder.forward(tape, x);
        Q::from_head(self.config.posterior, head, self.config.latent)
    }

    /// The decoder's output at `z`, `[b, input]`: the logits of `p(x | z)` (or its mean for a
    /// normal likelihood).
    #[track_caller]
    pub fn decode<'t, F: Scalar>(&self, tape: &'t Tape<'_, F>, z: Var<'t, F>) -> Var<'t, F> {
        self.decoder.forward(tape, z)
    }

    /// The ELBO with the analytic KL.
    ///
    /// # Errors
    /// As [`posterior`](Self::posterior).
    #[track_caller]
    pub fn elbo<'t, F: Scalar>(
        &self,
        tape: &'t Tape<'_, F>,
        x: Var<'t, F>,
        rng: &mut dyn Rng,
    ) -> Result<Elbo<'t, F>> {
        self.elbo_with(tape, x, KlEstimate::Analytic, rng)
    }

    /// The ELBO with the KL computed as `kl` says.
    ///
    /// # Errors
    /// As [`posterior`](Self::posterior).
    #[track_caller]
    pub fn elbo_with<'t, F: Scalar>(
        &self,
        tape: &'t Tape<'_, F>,
        x: Var<'t, F>,
        kl: KlEstimate,
        rng: &mut dyn Rng,
    ) -> Result<Elbo<'t, F>> {
        let q = self.posterior(tape, x)?;
        let z = q.rsample(tape, rng);
        let reconstruction = self.config.likelihood.log_prob(self.decode(tape, z), x);
        let kl = match kl {
            KlEstimate::Analytic => q.kl_to_standard_normal()?,
            KlEstimate::MonteCarlo => q.log_prob(z) - log_standard_normal(z),
        };
        Ok(Elbo {
            reconstruction,
            kl,
            elbo: reconstruction - kl,
        })
    }

    /// The importance-weighted bound `log (1/k) Σᵢ p(x, zᵢ) / q(zᵢ | x)` per example, `[b]`,
    /// from `k` draws per example, computed as `logsumexp − log k`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `k = 0`; as [`posterior`](Self::posterior).
    #[track_caller]
    pub fn iwae_bound<'t, F: Scalar>(
        &self,
        tape: &'t Tape<'_, F>,
        x: Var<'t, F>,
        k: usize,
        rng: &mut dyn Rng,
    ) -> Result<Var<'t, F>> {
        if k == 0 {
            return Err(Error::InvalidArgument {
                name: "k",
                constraint: "at least 1",
                value: 0.0,
            });
        }
        let b = x.shape()[0];
        let head = self.encoder.forward(tape, x);
        // k copies of the batch, draw-major: row i·b + r is draw i of example r
        let repeat: Vec<usize> = (0..k).flat_map(|_| 0..b).collect();
        let q = Q::from_head(
            self.config.posterior,
            head.select_rows(&repeat),
            self.config.latent,
        )?;
        let z = q.rsample(tape, rng);
        let x_k = x.select_rows(&repeat);
        let log_w = self.config.likelihood.log_prob(self.decode(tape, z), x_k)
            + log_standard_normal(z)
            - q.log_prob(z);
        Ok(log_w.reshape(&[k, b]).logsumexp_axis(0) - F::from_f64((k as f64).ln()))
    }

    /// The ELBO (analytic KL, one draw) and the IWAE-`k` bound of every row of `x`, on
    /// inference tapes, a few examples at a time so that memory stays bounded for large `k`.
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
        let n = x.nrows();
        let (mut elbo, mut iwae) = (Array1::zeros(n), Array1::zeros(n));
        // about 2¹⁶ decoder rows per tape
        let chunk = (65_536 / k.max(1)).clamp(1, 512);
        for start in (0..n).step_by(chunk) {
            let end = (start + chunk).min(n);
            let tape = Tape::inference(params);
            let rows = Slice::from(start..end);
            let xb = tape.constant(x.slice_axis(Axis(0), rows).to_owned());
            let e = self.elbo(&tape, xb, rng)?.elbo.value();
            elbo.slice_axis_mut(Axis(0), rows).assign(&e);
            let w = self.iwae_bound(&tape, xb, k, rng)?.value();
            iwae.slice_axis_mut(Axis(0), rows).assign(&w);
        }
        Ok((elbo, iwae))
    }

    /// The expected data (the decoder's probabilities, for a Bernoulli decoder) at the
    /// posterior mean of each row of `x`.
    ///
    /// # Errors
    /// As [`posterior`](Self::posterior).
    pub fn reconstruct<F: Scalar>(&self, params: &Params<F>, x: &Array2<F>) -> Result<Array2<F>> {
        let tape = Tape::inference(params);
        let q = self.posterior(&tape, tape.constant(x.clone()))?;
        Ok(to_matrix(
            self.config.likelihood.mean(self.decode(&tape, q.mean())),
        ))
    }

    /// The expected data at `z` (`[n, latent]`), e.g. over a grid of a 2-D latent space.
    pub fn decode_probs<F: Scalar>(&self, params: &Params<F>, z: &Array2<F>) -> Array2<F> {
        let tape = Tape::inference(params);
        to_matrix(
            self.config
                .likelihood
                .mean(self.decode(&tape, tape.constant(z.clone()))),
        )
    }

    /// `n` draws from the model: `z ~ N(0, I)`, then the expected data at each.
    pub fn sample<F: Scalar>(&self, params: &Params<F>, n: usize, rng: &mut dyn Rng) -> Array2<F> {
        let z = Array2::from_shape_simple_fn((n, self.config.latent), || {
            F::from_f64(rng.sample::<f64, _>(StandardNormal))
        });
        self.decode_probs(params, &z)
    }
}

/// `log N(z; 0, I)` per row: `−½ Σ zᵢ² − (d/2) log 2π`.
fn log_standard_normal<F: Scalar>(z: Var<'_, F>) -> Var<'_, F> {
    let d = z.shape()[1] as f64;
    z.square().sum_axis(1) * F::from_f64(-0.5)
        - F::from_f64(0.5 * d * (2.0 * std::f64::consts::PI).ln())
}

fn to_matrix<F: Scalar>(v: Var<'_, F>) -> Array2<F> {
    v.value().into_dimensionality().expect("[n, input]")
}
