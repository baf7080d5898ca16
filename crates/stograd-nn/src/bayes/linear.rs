//! The Bayesian linear layer: a factorized Gaussian posterior over `W` and `b`.

use ndarray::{ArrayD, IxDyn};
use rand::Rng;
use stograd::dist::{Distribution, Normal};
use stograd::{ParamId, Params, Scalar, Tape, Var};

use super::kernels::{MixtureKl, NormalKl, Reparameterize, SoftplusSquare};
use super::{Mode, Prior};
use crate::layers::scoped;
use crate::{Error, Result, init};

/// The settings of a [`BayesianLinear`] beyond its widths.
///
/// ```
/// use stograd_nn::bayes::{BayesianLinearConfig, Prior};
///
/// let config = BayesianLinearConfig {
///     prior: Prior::scale_mixture(0.5, 1.0, (-6f64).exp())?,
///     rho_init: -6.0,
///     ..BayesianLinearConfig::default()
/// };
/// assert!(config.bias);
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BayesianLinearConfig {
    /// The prior of every weight and bias: `N(0, 1)` by default.
    pub prior: Prior,
    /// `ρ₀`, the initial `ρ` of every weight and bias: `σ₀ = softplus(ρ₀)`. The default −5
    /// (`σ₀ ≈ 0.0067`) starts the layer close to a deterministic `Linear`, which is what
    /// makes mean-field variational training start well; much larger `σ₀` drown the signal
    /// in noise at the first steps.
    pub rho_init: f64,
    /// Whether the layer has a (Bayesian) bias.
    pub bias: bool,
}

impl Default for BayesianLinearConfig {
    fn default() -> Self {
        BayesianLinearConfig {
            prior: Prior::default(),
            rho_init: -5.0,
            bias: true,
        }
    }
}

/// A fully connected layer with a factorized Gaussian posterior over its weight and bias:
/// `W_ij ~ N(μ_ij, σ_ij²)`, `b_j ~ N(μ_j, σ_j²)`, independent, `σ = softplus(ρ)`.
///
/// The parameters are `prefix.weight_mu` and `prefix.weight_rho` (`[out, in]`, PyTorch's
/// layout, as [`Linear`](crate::layers::Linear)'s `weight`) and `prefix.bias_mu`,
/// `prefix.bias_rho` (`[out]`). `μ` is initialized as `nn.Linear` initializes its weight and
/// bias, `U(±1/√in)`; every `ρ` is [`rho_init`](BayesianLinearConfig::rho_init).
///
/// [`forward`](Self::forward) runs in one of four [`Mode`]s, chosen per call;
/// [`kl`](Self::kl) is `KL(q ‖ p)` to the layer's [`Prior`], to be weighted explicitly in the
/// loss (see [`kl_scale`](super::kl_scale)).
///
/// # Example
/// One step of variational inference on a batch of 32 out of `N = 1000` examples: the
/// per-example negative ELBO, `mean NLL + KL/N`.
/// ```
/// use rand::SeedableRng;
/// use stograd::ndarray::Array2;
/// use stograd::{Params, Tape};
/// use stograd_nn::bayes::{kl_scale, BayesianLinear, BayesianLinearConfig, Mode};
///
/// let mut params = Params::<f32>::new();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let fc = BayesianLinear::new(&mut params, "fc", 8, 1, BayesianLinearConfig::default(), &mut rng)?;
/// assert_eq!(params.get(fc.weight_rho).shape(), [1, 8]);
///
/// let tape = Tape::with_params(&params);
/// let x = tape.constant(Array2::<f32>::from_elem((32, 8), 0.5));
/// let y = tape.constant(Array2::<f32>::zeros((32, 1)));
/// let pred = fc.forward(&tape, x, Mode::LocalReparam, &mut rng)?;
/// let nll = (pred - y).square().mean() * 0.5;
/// let loss = nll + fc.kl(&tape, &mut rng) * kl_scale::per_example(1000)? as f32;
/// let grads = loss.backward()?;
/// assert!(grads.param(fc.weight_rho).is_some());
/// # Ok::<(), stograd_nn::Error>(())
/// ```
///
/// # Shapes
/// `x` is `[…, in]` (any leading axes, the first being the batch); the output is `[…, out]`.
///
/// PyTorch equivalent: bayesian-torch's `LinearReparameterization` (`Global`) and
/// `LinearFlipout`, blitz's `BayesianLinear`; TFP's `DenseLocalReparameterization`,
/// `DenseFlipout` and `DenseReparameterization`.
#[derive(Clone, Debug)]
pub struct BayesianLinear {
    /// `μ_W`, `[out, in]`.
    pub weight_mu: ParamId,
    /// `ρ_W`, `[out, in]`: `σ_W = softplus(ρ_W)`.
    pub weight_rho: ParamId,
    /// `μ_b`, `[out]`, if the layer has a bias.
    pub bias_mu: Option<ParamId>,
    /// `ρ_b`, `[out]`, if the layer has a bias.
    pub bias_rho: Option<ParamId>,
    /// The input width.
    pub in_features: usize,
    /// The output width.
    pub out_features: usize,
    /// The prior of every weight and bias.
    pub prior: Prior,
}

impl BayesianLinear {
    /// A layer with its four (or, without a bias, two) parameters added to `params` under
    /// `prefix`.
    ///
    /// # Errors
    /// A zero width, a prior out of range, a `rho_init` that is not finite, or a parameter
    /// name that is malformed or taken.
    pub fn new<F: Scalar>(
        params: &mut Params<F>,
        prefix: &str,
        in_features: usize,
        out_features: usize,
        config: BayesianLinearConfig,
        rng: &mut dyn Rng,
    ) -> Result<Self> {
        config.prior.validate()?;
        if !config.rho_init.is_finite() {
            return Err(Error::InvalidArgument {
                name: "rho_init",
                constraint: "finite",
                value: config.rho_init,
            });
        }
        if out_features == 0 {
            return Err(Error::InvalidArgument {
                name: "out_features",
                constraint: "positive",
                value: 0.0,
            });
        }
        let rho = F::from_f64(config.rho_init);
        let mut insert = |name: &str, value: ArrayD<F>| params.insert(&scoped(prefix, name), value);
        let weight = [out_features, in_features];
        let weight_mu = insert(
            "weight_mu",
            init::linear_default(&weight, in_features, rng)?,
        )?;
        let weight_rho = insert("weight_rho", init::constant(&weight, rho))?;
        let (bias_mu, bias_rho) = if config.bias {
            let mu = init::linear_default(&[out_features], in_features, rng)?;
            let mu = insert("bias_mu", mu)?;
            let rho = insert("bias_rho", init::constant(&[out_features], rho))?;
            (Some(mu), Some(rho))
        } else {
            (None, None)
        };
        Ok(BayesianLinear {
            weight_mu,
            weight_rho,
            bias_mu,
            bias_rho,
            in_features,
            out_features,
            prior: config.prior,
        })
    }

    /// The layer's output for `x` in `mode` (see [`Mode`] for the formulas), drawing its
    /// noise from `rng`.
    ///
    /// In `LocalReparam` mode without a bias, an example whose inputs are all 0 has
    /// pre-activation variance 0; its gradient through `√δ` is taken as 0 there (every path
    /// into `δ` has derivative 0 at that point).
    ///
    /// # Errors
    /// In `Global` mode, [`Error::Engine`] if a `μ` is not finite or a `σ` is not positive
    /// (a `ρ` so negative that `softplus(ρ)²` underflows, below about −52 in `f32`): training
    /// has diverged. The other modes do not fail.
    ///
    /// # Panics
    /// If `x`'s last axis is not `in_features` (both are named, with the caller's line), or
    /// the tape is not bound to the layer's store.
    #[track_caller]
    pub fn forward<'t, F: Scalar>(
        &self,
        tape: &'t Tape<'_, F>,
        x: Var<'t, F>,
        mode: Mode,
        rng: &mut dyn Rng,
    ) -> Result<Var<'t, F>> {
        let variances = (mode != Mode::Mean).then(|| self.variances(tape));
        self.forward_with(tape, x, mode, variances, rng)
    }

    /// [`forward`](Self::forward) and [`kl`](Self::kl) together, sharing the posterior
    /// variances `σ² = softplus(ρ)²` between them: one elementwise pass over the weights
    /// forward and one backward instead of two each, which is most of a training step's
    /// elementwise work. The values are those of the two calls (the KL's draw, for a
    /// mixture prior, is made after the forward pass's noise).
    ///
    /// # Errors
    /// As [`forward`](Self::forward).
    ///
    /// # Panics
    /// As [`forward`](Self::forward).
    #[track_caller]
    pub fn forward_with_kl<'t, F: Scalar>(
        &self,
        tape: &'t Tape<'_, F>,
        x: Var<'t, F>,
        mode: Mode,
        rng: &mut dyn Rng,
    ) -> Result<(Var<'t, F>, Var<'t, F>)> {
        let variances = self.variances(tape);
        let out = self.forward_with(tape, x, mode, Some(variances), rng)?;
        Ok((out, self.kl_with(tape, variances, rng)))
    }

    /// `KL(q ‖ p)` summed over the layer's weights and biases: a scalar, to be weighted in
    /// the loss as [`kl_scale`](super::kl_scale) explains.
    ///
    /// - [`Prior::Normal`]: in closed form,
    ///   `Σ ln(σ_p/σ) + (σ² + μ²)/(2σ_p²) − ½`; `rng` is not used.
    /// - [`Prior::ScaleMixture`]: `KL = −H[q] − E_q[ln p(w)]` with the entropy
    ///   `H[q] = Σ ln σ + ½ ln(2πe)` in closed form and the cross-entropy estimated from one
    ///   draw `w = μ + σ ⊙ ε` of all the layer's weights, `ε ~ N(0, 1)` drawn here from `rng`
    ///   on every call, whatever the forward mode: `LocalReparam` draws no weights, and
    ///   `Flipout`'s and `Global`'s draws are made inside `forward` and not kept, so this
    ///   draw is independent of the forward pass's noise. The estimate is unbiased (its
    ///   expectation over `ε` is the KL), and pathwise in `μ` and `ρ`, so its gradient is an
    ///   unbiased estimate of the KL's gradient. Average several calls for less variance.
    ///
    /// # Panics
    /// If the tape is not bound to the layer's store.
    pub fn kl<'t, F: Scalar>(&self, tape: &'t Tape<'_, F>, rng: &mut dyn Rng) -> Var<'t, F> {
        self.kl_with(tape, self.variances(tape), rng)
    }

    /// `(σ_W², σ_b²)` on the tape, from the fused `softplus(ρ)²` kernel.
    fn variances<'t, F: Scalar>(&self, tape: &'t Tape<'_, F>) -> Variances<'t, F> {
        let variance = |id| tape.apply(SoftplusSquare::new(), &[tape.param(id)]);
        (variance(self.weight_rho), self.bias_rho.map(variance))
    }

    #[track_caller]
    fn forward_with<'t, F: Scalar>(
        &self,
        tape: &'t Tape<'_, F>,
        x: Var<'t, F>,
        mode: Mode,
        variances: Option<Variances<'t, F>>,
        rng: &mut dyn Rng,
    ) -> Result<Var<'t, F>> {
        let shape = x.shape();
        assert!(
            shape.last() == Some(&self.in_features),
            "BayesianLinear::forward: input {shape:?} does not end in in_features = {} (at {})",
            self.in_features,
            std::panic::Location::caller()
        );
        let mu_w = tape.param(self.weight_mu);
        let mu_b = self.bias_mu.map(|id| tape.param(id));
        let Some((var_w, var_b)) = variances else {
            return Ok(x.linear(mu_w, mu_b));
        };
        Ok(match mode {
            Mode::Mean => x.linear(mu_w, mu_b),
            Mode::LocalReparam => {
                let mean = x.linear(mu_w, mu_b);
                let var = x.square().linear(var_w, var_b);
                let eps = tape.constant(standard_normal::<F>(&mean.shape(), rng));
                tape.apply(Reparameterize, &[mean, var, eps])
            }
            Mode::Flipout => {
                let weight = [self.out_features, self.in_features];
                let delta_w = var_w.sqrt() * tape.constant(standard_normal(&weight, rng));
                let delta_b = var_b.map(|var| {
                    var.sqrt() * tape.constant(standard_normal(&[self.out_features], rng))
                });
                let mean = x.linear(mu_w, mu_b);
                let r = tape.constant(signs::<F>(&shape, rng));
                let s = tape.constant(signs::<F>(&mean.shape(), rng));
                mean + (x * r).linear(delta_w, delta_b) * s
            }
            Mode::Global => {
                let w = tape.sample(&Normal::new(mu_w, var_w.sqrt())?, rng);
                let b = match (mu_b, var_b) {
                    (Some(mu), Some(var)) => Some(tape.sample(&Normal::new(mu, var.sqrt())?, rng)),
                    _ => None,
                };
                x.linear(w, b)
            }
        })
    }

    fn kl_with<'t, F: Scalar>(
        &self,
        tape: &'t Tape<'_, F>,
        (var_w, var_b): Variances<'t, F>,
        rng: &mut dyn Rng,
    ) -> Var<'t, F> {
        let mut pairs = vec![(tape.param(self.weight_mu), var_w)];
        if let (Some(mu), Some(var)) = (self.bias_mu, var_b) {
            pairs.push((tape.param(mu), var));
        }
        let terms = pairs.into_iter().map(|(mu, var)| match self.prior {
            Prior::Normal { std } => tape.apply(NormalKl { prior_std: std }, &[mu, var]),
            Prior::ScaleMixture { pi, sigma1, sigma2 } => {
                let eps = tape.constant(standard_normal::<F>(&mu.shape(), rng));
                let op = MixtureKl {
                    ln_weights: (pi.ln(), (1.0 - pi).ln()),
                    sigmas: (sigma1, sigma2),
                };
                tape.apply(op, &[mu, var, eps])
            }
        });
        terms.reduce(|a, b| a + b).expect("a layer has a weight")
    }
}

/// `(σ_W², σ_b²)` as recorded on a tape.
type Variances<'t, F> = (Var<'t, F>, Option<Var<'t, F>>);

/// `ε ~ N(0, 1)` of `shape`, with the engine's (parallel) normal sampler.
fn standard_normal<F: Scalar>(shape: &[usize], rng: &mut dyn Rng) -> ArrayD<F> {
    let tape = Tape::<F>::new();
    let zeros = tape.constant(ArrayD::<F>::zeros(IxDyn(shape)));
    Normal::new(zeros, tape.scalar(F::one()))
        .and_then(|n| n.noise(rng))
        .expect("the standard normal's parameters are valid")
}

/// Independent random signs `±1` of `shape`, 64 from each draw of the generator.
fn signs<F: Scalar>(shape: &[usize], rng: &mut dyn Rng) -> ArrayD<F> {
    let (mut bits, mut left) = (0u64, 0u32);
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        if left == 0 {
            bits = rng.next_u64();
            left = 64;
        }
        let sign = if bits & 1 == 1 { F::one() } else { -F::one() };
        bits >>= 1;
        left -= 1;
        sign
    })
}
