//! The posterior families `q(z | x)` a VAE's encoder can parameterize, built from the
//! encoder's head.

use stograd::dist::kl::kl_divergence;
use stograd::dist::{Distribution, LowRankMultivariateNormal, MultivariateNormal, Normal};
use stograd::ndarray::{Array2, ArrayD, IxDyn};
use stograd::rand::Rng;
use stograd::{Scalar, Tape, Var};

use crate::{Error, Result};

/// The family of `q(z | x)`.
///
/// | family | head outputs per example | covariance |
/// |---|---|---|
/// | `Diagonal` | `μ`, `log σ²` (`2d`) | `diag(σ²)` |
/// | `Cholesky` | `μ`, the `d(d+1)/2` entries of `L` row by row, its diagonal as `log Lᵢᵢ` | `L Lᵀ` |
/// | `LowRank { rank }` | `μ`, `log D` (`d`), `U` (`d·r`, row-major) | `D + U Uᵀ` |
///
/// All three draw `z` through pathwise sample nodes.
///
/// ```
/// use stograd_nn::vae::Posterior;
///
/// assert_eq!(Posterior::Diagonal.head_size(20), 40);
/// assert_eq!(Posterior::Cholesky.head_size(20), 20 + 210);
/// assert_eq!(Posterior::LowRank { rank: 2 }.head_size(20), 80);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Posterior {
    /// A factorized Gaussian.
    Diagonal,
    /// A full-covariance Gaussian given by its Cholesky factor.
    Cholesky,
    /// A Gaussian with covariance `D + U Uᵀ`, `U` of the given rank.
    LowRank {
        /// The number of columns of `U`, below the latent dimension.
        rank: usize,
    },
}

impl Posterior {
    /// The number of head outputs per example for a `latent`-dimensional `z`.
    pub fn head_size(self, latent: usize) -> usize {
        match self {
            Posterior::Diagonal => 2 * latent,
            Posterior::Cholesky => latent + latent * (latent + 1) / 2,
            Posterior::LowRank { rank } => latent * (2 + rank),
        }
    }

    /// The name used on the command line and in checkpoints' configurations.
    pub fn name(self) -> &'static str {
        match self {
            Posterior::Diagonal => "diag",
            Posterior::Cholesky => "cholesky",
            Posterior::LowRank { .. } => "lowrank",
        }
    }

    pub(crate) fn validate(self, latent: usize) -> Result<()> {
        if let Posterior::LowRank { rank } = self
            && !(1..latent).contains(&rank)
        {
            return Err(Error::InvalidArgument {
                name: "rank",
                constraint: "at least 1 and below the latent dimension",
                value: rank as f64,
            });
        }
        Ok(())
    }
}

/// `q(z | x)` for a batch: one of the three families, with its parameters on the tape.
///
/// ```
/// use rand::SeedableRng;
/// use stograd::ndarray::Array2;
/// use stograd::{Params, Tape};
/// use stograd_nn::vae::{Posterior, Q, Vae, VaeConfig};
///
/// let mut params = Params::<f64>::new();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let config = VaeConfig { input: 4, hidden: vec![3], latent: 2, posterior: Posterior::Cholesky, ..VaeConfig::default() };
/// let vae = Vae::new(&mut params, "vae", config, &mut rng)?;
/// let tape = Tape::inference(&params);
/// let q = vae.posterior(&tape, tape.constant(Array2::from_elem((3, 4), 0.5)))?;
/// assert!(matches!(q, Q::Cholesky(_)));
/// let z = q.rsample(&tape, &mut rng);
/// assert_eq!((z.shape(), q.log_prob(z).shape()), (vec![3, 2], vec![3]));
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub enum Q<'t, F: Scalar> {
    /// Independent normals, batch `[b, d]`.
    Diagonal(Normal<'t, F>),
    /// A multivariate normal, batch `[b]`, event `[d]`.
    Cholesky(MultivariateNormal<'t, F>),
    /// A low-rank multivariate normal, batch `[b]`, event `[d]`.
    LowRank(LowRankMultivariateNormal<'t, F>),
}

impl<'t, F: Scalar> Q<'t, F> {
    /// The posterior whose parameters are the head's outputs `[b, head_size]`.
    pub(crate) fn from_head(family: Posterior, head: Var<'t, F>, latent: usize) -> Result<Self> {
        let d = latent;
        let loc = head.slice(1, 0..d);
        Ok(match family {
            Posterior::Diagonal => {
                let scale = (head.slice(1, d..2 * d) * F::from_f64(0.5)).exp();
                Q::Diagonal(Normal::new(loc, scale)?)
            }
            Posterior::Cholesky => {
                let b = head.shape()[0];
                let raw = lower_triangle(head.slice(1, d..head.shape()[1]), b, d);
                Q::Cholesky(MultivariateNormal::from_unconstrained(loc, raw)?)
            }
            Posterior::LowRank { rank } => {
                let b = head.shape()[0];
                let diag = head.slice(1, d..2 * d).exp();
                let u = head.slice(1, 2 * d..d * (2 + rank)).reshape(&[b, d, rank]);
                Q::LowRank(LowRankMultivariateNormal::new(loc, u, diag)?)
            }
        })
    }

    fn dist(&self) -> &dyn Distribution<'t, F> {
        match self {
            Q::Diagonal(q) => q,
            Q::Cholesky(q) => q,
            Q::LowRank(q) => q,
        }
    }

    /// A reparameterized draw `z`, `[b, d]`.
    #[track_caller]
    pub fn rsample(&self, tape: &'t Tape<'_, F>, rng: &mut dyn Rng) -> Var<'t, F> {
        tape.sample(self.dist(), rng)
    }

    /// `log q(z | x)` summed over the latent axis, `[b]`.
    pub fn log_prob(&self, z: Var<'t, F>) -> Var<'t, F> {
        let lp = self.dist().log_prob(z);
        match self {
            Q::Diagonal(_) => lp.sum_axis(1),
            _ => lp,
        }
    }

    /// The mean `μ`, `[b, d]`.
    pub fn mean(&self) -> Var<'t, F> {
        self.dist().mean().expect("Gaussians have a mean")
    }

    /// The analytic `KL(q ‖ N(0, I))`, `[b]`, from stograd's table.
    ///
    /// # Errors
    /// None in practice (every family has its pair in the table); the table's own errors are
    /// passed on.
    pub fn kl_to_standard_normal(&self) -> Result<Var<'t, F>> {
        let mean = self.mean();
        let tape = mean.tape();
        let d = mean.shape()[1];
        Ok(match self {
            Q::Diagonal(q) => {
                let prior = Normal::new(tape.scalar(F::zero()), tape.scalar(F::one()))?;
                kl_divergence(q, &prior)?.sum_axis(1)
            }
            Q::Cholesky(q) => kl_divergence(q, &standard_mvn(tape, d)?)?,
            Q::LowRank(q) => kl_divergence(q, &standard_mvn(tape, d)?)?,
        })
    }
}

/// `N(0, I)` in `d` dimensions, as a multivariate normal.
fn standard_mvn<'t, F: Scalar>(
    tape: &'t Tape<'_, F>,
    d: usize,
) -> Result<MultivariateNormal<'t, F>> {
    let eye = ArrayD::from_shape_fn(IxDyn(&[d, d]), |i| {
        if i[0] == i[1] { F::one() } else { F::zero() }
    });
    Ok(MultivariateNormal::new(
        tape.constant(ArrayD::zeros(IxDyn(&[d]))),
        tape.constant(eye),
    )?)
}

/// The `d(d+1)/2` entries of each row of `entries` (`[b, d(d+1)/2]`, the lower triangle row
/// by row) placed in a `[b, d, d]` matrix with zeros above the diagonal, by one gather from
/// the entries beside a column of zeros.
fn lower_triangle<'t, F: Scalar>(entries: Var<'t, F>, b: usize, d: usize) -> Var<'t, F> {
    let count = d * (d + 1) / 2;
    let tape = entries.tape();
    let padded = Var::concat(&[entries, tape.constant(Array2::<F>::zeros((b, 1)))], 1);
    let index = Array2::from_shape_fn((b, d * d), |(_, k)| {
        let (i, j) = (k / d, k % d);
        if j <= i { i * (i + 1) / 2 + j } else { count }
    });
    padded.gather(1, &index).reshape(&[b, d, d])
}
