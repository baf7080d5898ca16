//! The multivariate normal with low-rank-plus-diagonal covariance, `N(μ, D + U Uᵀ)`.
//!
//! With `U [d, r]` (usually `r ≪ d`), `D = diag(cov_diag)` positive, `ε₁ ~ N(0, I_d)` and
//! `ε₂ ~ N(0, I_r)`:
//!
//! - draw: `z = μ + D^½ ε₁ + U ε₂`, so gradients reach `μ`, `U` and `D` (O(d r) per row);
//! - capacitance `C = I_r + Uᵀ D⁻¹ U = K Kᵀ`, factored once at construction (O(d r² + r³));
//! - determinant lemma: `ln det Σ = ln det C + Σᵢ ln Dᵢ = 2 Σᵢ ln Kᵢᵢ + Σᵢ ln Dᵢ`;
//! - Woodbury, as a sum of non-negative terms (no cancellation when `D ≪ U Uᵀ`):
//!   `xᵀΣ⁻¹x = Σᵢ (x − U z)ᵢ²/Dᵢ + ‖z‖²` with `z = C⁻¹ Uᵀ D⁻¹ x` (O(d r + r²) per row);
//! - `log q(x) = −½ xᵀΣ⁻¹x − ½ ln det Σ − (d/2) ln 2π` with `x` the deviation from `μ`;
//!   `H = (d/2)(1 + ln 2π) + ½ ln det Σ`; `Var[zᵢ] = Dᵢ + Σⱼ Uᵢⱼ²`.
//!
//! No `d × d` matrix is formed except by
//! [`covariance_matrix`](LowRankMultivariateNormal::covariance_matrix), which exists to build
//! one on request.

use ndarray::ArrayD;
use rand::Rng;

use super::gaussian::{
    Cov, LowRankCov, broadcast_to, diag_matrix, gaussian_entropy, gaussian_log_prob, mat_vec,
    standard_normal,
};
use super::{Constraint, Distribution, Family, check_noise, check_param, draw_shape};
use crate::broadcast::broadcast_shape;
use crate::tape::same_tape;
use crate::{Error, Result, Scalar, Tape, Var};

const NAME: &str = "LowRankMultivariateNormal";

/// A multivariate normal `N(μ, Σ)` with `Σ = D + U Uᵀ`: a positive diagonal `D` (`cov_diag`)
/// plus a rank-`r` term (`cov_factor` `U [d, r]`).
///
/// `z = μ + D^½ ε₁ + U ε₂`; `log_prob` and `entropy` use the matrix determinant lemma and the
/// Woodbury identity, at O(d r² + r³) per batch element to factor the `r × r` capacitance
/// `I_r + Uᵀ D⁻¹ U` (once, at construction) and O(d r + r²) per evaluated row. No `d × d`
/// matrix is formed in `rsample`, `log_prob`, `entropy`, `mean`, `variance` or the KL
/// divergences with a low-rank second argument (beyond one shaped as a Cholesky first
/// argument's `d × d` factor).
///
/// # Example
/// ```
/// use ndarray::array;
/// use rand::SeedableRng;
/// use stograd::dist::{Distribution, LowRankMultivariateNormal, MultivariateNormal};
/// use stograd::Tape;
///
/// let tape = Tape::<f64>::new();
/// let loc = tape.variable(array![0.0, 1.0, 2.0]);
/// let u = tape.variable(array![[1.0], [0.5], [0.0]]); // d = 3, r = 1
/// let cov_diag = tape.variable(array![1.0, 1.0, 2.0]);
/// let q = LowRankMultivariateNormal::new(loc, u, cov_diag)?;
/// // Var[zᵢ] = Dᵢ + Σⱼ Uᵢⱼ²
/// assert_eq!(q.variance()?.value(), array![2.0, 1.25, 2.0].into_dyn());
///
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let z = tape.sample(&q, &mut rng); // z = μ + D^½ε₁ + Uε₂
/// assert_eq!(z.noise().unwrap().shape(), &[4]); // ε₁ (d = 3), then ε₂ (r = 1)
/// let grads = z.sum().backward()?;
/// // ∂/∂U Σᵢ zᵢ = ε₂ in every row
/// assert_eq!(grads.wrt(u).unwrap()[[1, 0]], z.noise().unwrap()[3]);
///
/// // the same density as the dense normal with the same covariance
/// let dense = MultivariateNormal::from_covariance(loc, q.covariance_matrix())?;
/// assert!((q.log_prob(z).item() - dense.log_prob(z).item()).abs() < 1e-12);
/// # Ok::<(), stograd::Error>(())
/// ```
///
/// # Shapes
/// `loc [d]` or `[n, d]`, `cov_factor [d, r]` or `[n, d, r]`, `cov_diag [d]` or `[n, d]`;
/// batch shape `[]` or `[n]`, event shape `[d]`. The base noise of a draw is
/// `batch ++ [d + r]` (`ε₁` then `ε₂` along the last axis); a draw is `batch ++ [d]`.
///
/// PyTorch equivalent: `torch.distributions.LowRankMultivariateNormal(loc, cov_factor,
/// cov_diag)`.
#[derive(Clone, Debug)]
pub struct LowRankMultivariateNormal<'t, F: Scalar> {
    loc: Var<'t, F>,
    /// `U`, `D`, `W = D⁻¹U` and the capacitance factor, all unbatched or all batched over
    /// `n = batch_shape[0] > 1`.
    cov: LowRankCov<'t, F>,
    batch_shape: Vec<usize>,
    event_shape: Vec<usize>,
}

impl<'t, F: Scalar> LowRankMultivariateNormal<'t, F> {
    /// The distribution with mean `loc` and covariance `diag(cov_diag) + cov_factor
    /// cov_factorᵀ`.
    ///
    /// Factors the `r × r` capacitance `I_r + Uᵀ D⁻¹ U` on the tape (O(d r² + r³) per batch
    /// element), so that `log_prob` and `entropy` reuse it.
    ///
    /// # Example
    /// ```
    /// use ndarray::array;
    /// use stograd::dist::{Distribution, LowRankMultivariateNormal};
    /// use stograd::{Error, Tape};
    ///
    /// let tape = Tape::<f64>::new();
    /// let loc = tape.constant(array![0.0, 0.0]);
    /// let u = tape.constant(array![[[1.0], [0.0]], [[0.0], [2.0]]]); // one U per batch element
    /// let q = LowRankMultivariateNormal::new(loc, u, tape.constant(array![1.0, 1.0]))?;
    /// assert_eq!(q.batch_shape(), &[2]);
    /// // ln det Σ = ln 2 and ln 5; H = ln(2πe) + ½ ln det Σ
    /// let h = q.entropy()?.value();
    /// let ln_2pie = (2.0 * std::f64::consts::PI * std::f64::consts::E).ln();
    /// assert!((h[1] - ln_2pie - 0.5 * 5f64.ln()).abs() < 1e-14);
    ///
    /// let err = LowRankMultivariateNormal::new(loc, u, tape.constant(array![1.0, 0.0]));
    /// assert!(matches!(err, Err(Error::InvalidParameter { param: "cov_diag", .. })));
    /// # Ok::<(), stograd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `loc` or `cov_factor` (not finite) or `cov_diag` (not
    /// positive and finite), with the first bad value and its index;
    /// [`Error::IncompatibleShapes`] when the shapes do not fit (see `# Shapes`);
    /// [`Error::NotPositiveDefinite`] if the capacitance overflows (entries of `U²/D` near the
    /// largest float).
    ///
    /// # Panics
    /// If the `Var`s come from different tapes.
    ///
    /// # Shapes
    /// `loc [d]` or `[n, d]`, `cov_factor [d, r]` or `[n, d, r]`, `cov_diag [d]` or `[n, d]`;
    /// their batch parts broadcast. `r = 0` is allowed (a diagonal normal).
    ///
    /// PyTorch equivalent: `LowRankMultivariateNormal(loc, cov_factor, cov_diag)`.
    #[track_caller]
    pub fn new(loc: Var<'t, F>, cov_factor: Var<'t, F>, cov_diag: Var<'t, F>) -> Result<Self> {
        let _caller = crate::dist::constructing(loc);
        same_tape(NAME, loc, cov_factor);
        same_tape(NAME, loc, cov_diag);
        let (batch_shape, d) = fit_shapes(&loc.shape(), &cov_factor.shape(), &cov_diag.shape())?;
        check_param(NAME, "loc", loc, Constraint::Finite)?;
        check_param(NAME, "cov_factor", cov_factor, Constraint::Finite)?;
        check_param(NAME, "cov_diag", cov_diag, Constraint::Positive)?;
        Ok(LowRankMultivariateNormal {
            loc,
            cov: LowRankCov::new(cov_factor, cov_diag)?,
            batch_shape,
            event_shape: vec![d],
        })
    }

    /// The mean `μ` as given: `[d]` or `[n, d]`.
    pub fn loc(&self) -> Var<'t, F> {
        self.loc
    }

    /// `U`: `[d, r]` when one factor serves the whole batch, `[n, d, r]` otherwise (a factor
    /// given unbatched is broadcast when `cov_diag` is batched).
    pub fn cov_factor(&self) -> Var<'t, F> {
        self.cov.u
    }

    /// The diagonal of `D`: `[d]` or `[n, d]`, batched like [`cov_factor`](Self::cov_factor).
    pub fn cov_diag(&self) -> Var<'t, F> {
        self.cov.diag
    }

    /// The rank `r` of the low-rank term.
    pub fn rank(&self) -> usize {
        let s = self.cov.u.shape();
        s[s.len() - 1]
    }

    /// The dense covariance `D + U Uᵀ`, shape `batch ++ [d, d]`. This forms the `d × d`
    /// matrix that every other method avoids; use it to hand `Σ` to code that needs it.
    ///
    /// PyTorch equivalent: `LowRankMultivariateNormal.covariance_matrix`.
    #[track_caller]
    pub fn covariance_matrix(&self) -> Var<'t, F> {
        let d = self.event_shape[0];
        let cov = diag_matrix(self.cov.diag) + self.cov.u.matmul(self.cov.u.t());
        broadcast_to(cov, &draw_shape(&self.batch_shape, &[d, d]))
    }

    fn noise_shape(&self) -> Vec<usize> {
        draw_shape(&self.batch_shape, &[self.event_shape[0] + self.rank()])
    }
}

impl<'t, F: Scalar> Distribution<'t, F> for LowRankMultivariateNormal<'t, F> {
    fn name(&self) -> &'static str {
        NAME
    }

    fn batch_shape(&self) -> &[usize] {
        &self.batch_shape
    }

    fn event_shape(&self) -> &[usize] {
        &self.event_shape
    }

    fn params(&self) -> Vec<Var<'t, F>> {
        vec![self.loc, self.cov.u, self.cov.diag]
    }

    fn param_event_dims(&self) -> Option<Vec<usize>> {
        Some(vec![1, 2, 1])
    }

    fn sample(&self, rng: &mut dyn Rng) -> ArrayD<F> {
        let noise = standard_normal(&self.noise_shape(), rng);
        let tape = Tape::new();
        let c = |v: Var<'t, F>| tape.constant(v.value());
        let (loc, u, diag) = (c(self.loc), c(self.cov.u), c(self.cov.diag));
        path(loc, u, diag, tape.constant(noise)).value()
    }

    #[track_caller]
    fn log_prob(&self, x: Var<'t, F>) -> Var<'t, F> {
        let _caller = crate::dist::at_caller(self);
        gaussian_log_prob(
            NAME,
            self.loc,
            &Cov::LowRank(self.cov),
            &self.batch_shape,
            x,
        )
    }

    fn entropy(&self) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        Ok(gaussian_entropy(&Cov::LowRank(self.cov), &self.batch_shape))
    }

    fn mean(&self) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        Ok(broadcast_to(
            self.loc,
            &draw_shape(&self.batch_shape, &self.event_shape),
        ))
    }

    fn variance(&self) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        Ok(broadcast_to(
            Cov::LowRank(self.cov).diag(),
            &draw_shape(&self.batch_shape, &self.event_shape),
        ))
    }

    fn symmetric_noise(&self) -> bool {
        true
    }

    fn noise(&self, rng: &mut dyn Rng) -> Result<ArrayD<F>> {
        Ok(standard_normal(&self.noise_shape(), rng))
    }

    #[track_caller]
    fn reparameterize(&self, noise: Var<'t, F>) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        check_noise(noise, self.noise_shape())?;
        Ok(path(self.loc, self.cov.u, self.cov.diag, noise))
    }

    fn has_rsample(&self) -> bool {
        true
    }

    fn family(&self) -> Family<'t, F> {
        Family::LowRankMultivariateNormal {
            loc: self.loc,
            cov_factor: self.cov.u,
            cov_diag: self.cov.diag,
        }
    }
}

/// `z = μ + D^½ ε₁ + U ε₂` for `noise = [ε₁ | ε₂]` along the last axis.
#[track_caller]
fn path<'t, F: Scalar>(
    loc: Var<'t, F>,
    u: Var<'t, F>,
    diag: Var<'t, F>,
    noise: Var<'t, F>,
) -> Var<'t, F> {
    let d = diag.shape()[diag.ndim() - 1];
    let last = noise.ndim() - 1;
    let (eps1, eps2) = (noise.slice(last, ..d), noise.slice(last, d..));
    eps1.mul_add(diag.sqrt(), loc + mat_vec(u, eps2))
}

/// Checks that `loc [.., d]`, `cov_factor [.., d, r]` and `cov_diag [.., d]` fit; returns the
/// batch shape and `d`.
fn fit_shapes(loc: &[usize], u: &[usize], diag: &[usize]) -> Result<(Vec<usize>, usize)> {
    let bad = |what, left: &[usize], right: &[usize]| Error::IncompatibleShapes {
        distribution: NAME,
        what,
        left: left.to_vec(),
        right: right.to_vec(),
    };
    let d = match loc {
        [d] | [_, d] if *d > 0 => *d,
        _ => return Err(bad("loc and cov_factor", loc, u)),
    };
    if !matches!(u.len(), 2 | 3) || u[u.len() - 2] != d {
        return Err(bad("loc and cov_factor", loc, u));
    }
    if !matches!(diag.len(), 1 | 2) || diag[diag.len() - 1] != d {
        return Err(bad("loc and cov_diag", loc, diag));
    }
    let (loc_b, u_b, diag_b) = (
        &loc[..loc.len() - 1],
        &u[..u.len() - 2],
        &diag[..diag.len() - 1],
    );
    let factors =
        broadcast_shape(u_b, diag_b).ok_or_else(|| bad("cov_factor and cov_diag", u, diag))?;
    let batch = broadcast_shape(loc_b, &factors).ok_or_else(|| {
        if broadcast_shape(loc_b, u_b).is_none() {
            bad("loc and cov_factor", loc, u)
        } else {
            bad("loc and cov_diag", loc, diag)
        }
    })?;
    Ok((batch, d))
}
