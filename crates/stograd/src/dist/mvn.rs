//! The multivariate normal given by a Cholesky factor, `N(μ, L Lᵀ)`.
//!
//! With `Σ = L Lᵀ`, `L` lower-triangular with a positive diagonal, and `ε ~ N(0, I_d)`:
//!
//! - draw: `z = μ + Lε`, so gradients reach `μ` and `L` along the path;
//! - `ln det Σ = 2 Σᵢ ln Lᵢᵢ` (O(d));
//! - `log q(x) = −½‖L⁻¹(x − μ)‖² − Σᵢ ln Lᵢᵢ − (d/2) ln 2π`, one triangular solve (O(d²) per
//!   row, never an inverse);
//! - `H = (d/2)(1 + ln 2π) + Σᵢ ln Lᵢᵢ`, `Var[zᵢ] = Σⱼ Lᵢⱼ²` (the row sums of `L ⊙ L`).
//!
//! Batches: at most one leading batch axis. `loc` is `[d]` or `[n, d]`; the factor is `[d, d]`
//! (shared by the whole batch) or `[n, d, d]`; their batch parts broadcast.

use ndarray::{Array2, ArrayD};
use rand::Rng;

use super::gaussian::{
    Cov, broadcast_to, gaussian_entropy, gaussian_log_prob, mat_vec, squeeze_unit_batch,
    standard_normal,
};
use super::{Constraint, Distribution, Family, check_noise, check_param, draw_shape};
use crate::broadcast::broadcast_shape;
use crate::tape::same_tape;
use crate::{Error, Result, Scalar, Tape, Var};

const NAME: &str = "MultivariateNormal";

/// A multivariate normal `N(μ, Σ)` with `Σ = L Lᵀ` given by its lower-triangular Cholesky
/// factor `L` (`scale_tril`).
///
/// `z = μ + Lε` with `ε ~ N(0, I_d)`; `log q(x) = −½‖L⁻¹(x − μ)‖² − Σᵢ ln Lᵢᵢ − (d/2) ln 2π`
/// by a triangular solve; `ln det Σ = 2 Σᵢ ln Lᵢᵢ`. Build it from `L` ([`new`](Self::new)),
/// from an unconstrained square matrix ([`from_unconstrained`](Self::from_unconstrained), for
/// optimisation) or from a covariance matrix ([`from_covariance`](Self::from_covariance)).
///
/// # Example
/// ```
/// use ndarray::array;
/// use rand::SeedableRng;
/// use stograd::dist::{Distribution, MultivariateNormal};
/// use stograd::Tape;
///
/// let tape = Tape::<f64>::new();
/// let loc = tape.variable(array![1.0, -1.0]);
/// let scale_tril = tape.variable(array![[2.0, 0.0], [0.5, 1.0]]);
/// let q = MultivariateNormal::new(loc, scale_tril)?;
/// // Σ = L Lᵀ
/// assert_eq!(q.covariance_matrix().value(), array![[4.0, 1.0], [1.0, 1.25]].into_dyn());
///
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let z = tape.sample(&q, &mut rng); // pathwise: z = μ + Lε
/// let eps = z.noise().unwrap();
/// assert!((z.value()[1] - (-1.0 + 0.5 * eps[0] + eps[1])).abs() < 1e-12);
/// // ∂/∂μ Σᵢ zᵢ² = 2z
/// let grads = z.square().sum().backward()?;
/// assert_eq!(grads.wrt(loc).unwrap(), &(z.value() * 2.0));
///
/// // at the mean: log q(μ) = −½ ln det(2πΣ) = −ln 2π − ln 2   (det Σ = (2·1)²)
/// let lp = q.log_prob(loc).item();
/// assert!((lp + (2.0 * std::f64::consts::PI).ln() + 2f64.ln()).abs() < 1e-14);
/// # Ok::<(), stograd::Error>(())
/// ```
///
/// # Shapes
/// `loc [d]` or `[n, d]`, `scale_tril [d, d]` or `[n, d, d]`; batch shape `[]` or `[n]`, event
/// shape `[d]`. A draw is `batch ++ [d]`; `log_prob(x)` accepts any `x [.., d]` whose leading
/// axes broadcast against the batch shape and returns their broadcast shape.
///
/// PyTorch equivalent: `torch.distributions.MultivariateNormal(loc, scale_tril=L)`.
#[derive(Clone, Debug)]
pub struct MultivariateNormal<'t, F: Scalar> {
    loc: Var<'t, F>,
    /// `[d, d]`, or `[n, d, d]` with `n = batch_shape[0] > 1`.
    tril: Var<'t, F>,
    batch_shape: Vec<usize>,
    event_shape: Vec<usize>,
}

impl<'t, F: Scalar> MultivariateNormal<'t, F> {
    /// The distribution with mean `loc` and Cholesky factor `scale_tril` (`Σ = L Lᵀ`).
    ///
    /// `scale_tril` must be lower-triangular (entries above the diagonal exactly 0) with a
    /// positive, finite diagonal; nothing is symmetrised or clipped. `log_prob` and `entropy`
    /// read only the lower triangle, but the draw `μ + Lε` is a full matrix product (as in
    /// PyTorch), so its gradient reaches the zeros above the diagonal too; to optimise the
    /// factor directly, mask it or use [`from_unconstrained`](Self::from_unconstrained).
    ///
    /// # Example
    /// ```
    /// use ndarray::array;
    /// use stograd::dist::{Distribution, MultivariateNormal};
    /// use stograd::{Error, Tape};
    ///
    /// let tape = Tape::<f64>::new();
    /// let loc = tape.constant(array![[0.0, 0.0], [1.0, 2.0]]); // a batch of two means
    /// let l = tape.constant(array![[1.0, 0.0], [0.3, 2.0]]); // one factor for both
    /// let q = MultivariateNormal::new(loc, l)?;
    /// assert_eq!((q.batch_shape(), q.event_shape()), (&[2][..], &[2][..]));
    ///
    /// let upper = tape.constant(array![[1.0, 0.1], [0.0, 1.0]]);
    /// let err = MultivariateNormal::new(loc, upper).unwrap_err();
    /// assert!(matches!(err, Error::InvalidParameter { param: "scale_tril", .. }));
    /// # Ok::<(), stograd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `loc` (not finite) or `scale_tril` (a non-zero entry
    /// above the diagonal, a diagonal entry that is not positive and finite, a non-finite entry
    /// below it) with the first bad value and its index; [`Error::IncompatibleShapes`] when the
    /// shapes do not fit (see `# Shapes`).
    ///
    /// # Panics
    /// If the two `Var`s come from different tapes.
    ///
    /// # Shapes
    /// `loc [d]` or `[n, d]`; `scale_tril [d, d]` or `[n, d, d]`; the batch parts broadcast.
    ///
    /// PyTorch equivalent: `MultivariateNormal(loc, scale_tril=scale_tril)`.
    #[track_caller]
    pub fn new(loc: Var<'t, F>, scale_tril: Var<'t, F>) -> Result<Self> {
        let _caller = crate::dist::constructing(loc);
        same_tape(NAME, loc, scale_tril);
        let (batch_shape, d) = fit_shapes(&loc.shape(), &scale_tril.shape(), "loc and scale_tril")?;
        check_param(NAME, "loc", loc, Constraint::Finite)?;
        check_tril(scale_tril)?;
        Ok(MultivariateNormal {
            loc,
            tril: squeeze_unit_batch(scale_tril, 2),
            batch_shape,
            event_shape: vec![d],
        })
    }

    /// The distribution whose Cholesky factor is built on the tape from an unconstrained square
    /// matrix, `L = strictly_lower(raw) + diag(exp(diag(raw)))`, so that any finite `raw` an
    /// optimiser produces gives a valid factor and gradients reach every lower entry of `raw`.
    ///
    /// The exponential is taken of `raw ⊙ I` (zeros off the diagonal, so `exp` gives 1 there)
    /// and masked with `I`, so a large entry off the diagonal never overflows; entries above
    /// the diagonal are ignored and receive zero gradient.
    ///
    /// # Example
    /// ```
    /// use ndarray::array;
    /// use stograd::dist::MultivariateNormal;
    /// use stograd::Tape;
    ///
    /// let tape = Tape::<f64>::new();
    /// let raw = tape.variable(array![[0.0, 1e6], [0.5, 2f64.ln()]]);
    /// let q = MultivariateNormal::from_unconstrained(tape.constant(array![0.0, 0.0]), raw)?;
    /// assert_eq!(q.scale_tril().value(), array![[1.0, 0.0], [0.5, 2.0]].into_dyn());
    /// # Ok::<(), stograd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `raw` when an entry is not finite, or `scale_tril`
    /// when `exp` of a diagonal entry overflows to infinity or underflows to 0;
    /// [`Error::IncompatibleShapes`] when the shapes do not fit.
    ///
    /// # Panics
    /// If the two `Var`s come from different tapes.
    ///
    /// # Shapes
    /// As for [`new`](Self::new), with `raw` in place of `scale_tril`.
    ///
    /// PyTorch equivalent: `MultivariateNormal(loc, scale_tril=raw.tril(-1) + raw.diagonal(
    /// dim1=-2, dim2=-1).exp().diag_embed())`.
    #[track_caller]
    pub fn from_unconstrained(loc: Var<'t, F>, raw: Var<'t, F>) -> Result<Self> {
        let _caller = crate::dist::constructing(loc);
        same_tape(NAME, loc, raw);
        let (_, d) = fit_shapes(&loc.shape(), &raw.shape(), "loc and raw")?;
        check_param(NAME, "raw", raw, Constraint::Finite)?;
        let tape = raw.tape();
        let eye = tape.constant(Array2::<F>::eye(d));
        let strict = tape.constant(Array2::from_shape_fn((d, d), |(i, j)| {
            if i > j { F::one() } else { F::zero() }
        }));
        let l = raw * strict + (raw * eye).exp() * eye;
        Self::new(loc, l)
    }

    /// The distribution with covariance `cov`, factored on the tape by
    /// [`Var::cholesky`] (which reads the symmetric part `½(Σ + Σᵀ)`), so gradients reach
    /// `cov`.
    ///
    /// # Example
    /// ```
    /// use ndarray::array;
    /// use stograd::dist::MultivariateNormal;
    /// use stograd::{Error, Tape};
    ///
    /// let tape = Tape::<f64>::new();
    /// let loc = tape.constant(array![0.0, 0.0]);
    /// let cov = tape.constant(array![[4.0, 2.0], [2.0, 2.0]]);
    /// let q = MultivariateNormal::from_covariance(loc, cov)?;
    /// assert_eq!(q.scale_tril().value(), array![[2.0, 0.0], [1.0, 1.0]].into_dyn());
    ///
    /// let indefinite = tape.constant(array![[1.0, 2.0], [2.0, 1.0]]);
    /// let err = MultivariateNormal::from_covariance(loc, indefinite).unwrap_err();
    /// assert!(matches!(err, Error::NotPositiveDefinite { column: 1, .. }));
    /// # Ok::<(), stograd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotPositiveDefinite`] from the factorisation; [`Error::InvalidParameter`]
    /// naming `loc` or `covariance_matrix` when an entry is not finite;
    /// [`Error::IncompatibleShapes`] when the shapes do not fit.
    ///
    /// # Panics
    /// If the two `Var`s come from different tapes.
    ///
    /// # Shapes
    /// As for [`new`](Self::new), with `cov [d, d]` or `[n, d, d]` in place of `scale_tril`.
    ///
    /// PyTorch equivalent: `MultivariateNormal(loc, covariance_matrix=cov)`.
    #[track_caller]
    pub fn from_covariance(loc: Var<'t, F>, cov: Var<'t, F>) -> Result<Self> {
        let _caller = crate::dist::constructing(loc);
        same_tape(NAME, loc, cov);
        fit_shapes(&loc.shape(), &cov.shape(), "loc and covariance_matrix")?;
        check_param(NAME, "loc", loc, Constraint::Finite)?;
        check_param(NAME, "covariance_matrix", cov, Constraint::Finite)?;
        Self::new(loc, cov.cholesky()?)
    }

    /// The mean `μ` as given: `[d]` or `[n, d]` (see [`mean`](Distribution::mean) for it
    /// broadcast to `batch ++ [d]`).
    pub fn loc(&self) -> Var<'t, F> {
        self.loc
    }

    /// The Cholesky factor `L`: `[d, d]` when one factor serves the whole batch (a factor
    /// given as `[1, d, d]` is kept as `[d, d]`), `[n, d, d]` otherwise.
    pub fn scale_tril(&self) -> Var<'t, F> {
        self.tril
    }

    /// The covariance `Σ = L Lᵀ`, shape `batch ++ [d, d]`.
    ///
    /// PyTorch equivalent: `MultivariateNormal.covariance_matrix`.
    #[track_caller]
    pub fn covariance_matrix(&self) -> Var<'t, F> {
        let d = self.event_shape[0];
        let cov = self.tril.matmul(self.tril.t());
        broadcast_to(cov, &draw_shape(&self.batch_shape, &[d, d]))
    }

    fn cov(&self) -> Cov<'t, F> {
        Cov::Tril(self.tril)
    }
}

impl<'t, F: Scalar> Distribution<'t, F> for MultivariateNormal<'t, F> {
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
        vec![self.loc, self.tril]
    }

    fn param_event_dims(&self) -> Option<Vec<usize>> {
        Some(vec![1, 2])
    }

    fn sample(&self, rng: &mut dyn Rng) -> ArrayD<F> {
        let noise = standard_normal(&draw_shape(&self.batch_shape, &self.event_shape), rng);
        let tape = Tape::new();
        let (loc, tril) = (
            tape.constant(self.loc.value()),
            tape.constant(self.tril.value()),
        );
        (mat_vec(tril, tape.constant(noise)) + loc).value()
    }

    #[track_caller]
    fn log_prob(&self, x: Var<'t, F>) -> Var<'t, F> {
        let _caller = crate::dist::at_caller(self);
        gaussian_log_prob(NAME, self.loc, &self.cov(), &self.batch_shape, x)
    }

    fn entropy(&self) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        Ok(gaussian_entropy(&self.cov(), &self.batch_shape))
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
            self.cov().diag(),
            &draw_shape(&self.batch_shape, &self.event_shape),
        ))
    }

    fn symmetric_noise(&self) -> bool {
        true
    }

    fn noise(&self, rng: &mut dyn Rng) -> Result<ArrayD<F>> {
        Ok(standard_normal(
            &draw_shape(&self.batch_shape, &self.event_shape),
            rng,
        ))
    }

    #[track_caller]
    fn reparameterize(&self, noise: Var<'t, F>) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        check_noise(noise, draw_shape(&self.batch_shape, &self.event_shape))?;
        Ok(mat_vec(self.tril, noise) + self.loc)
    }

    fn has_rsample(&self) -> bool {
        true
    }

    fn family(&self) -> Family<'t, F> {
        Family::MultivariateNormal {
            loc: self.loc,
            scale_tril: self.tril,
        }
    }
}

/// Checks that `loc [.., d]` and a square factor `[.., d, d]` fit; returns the batch shape
/// and `d`.
fn fit_shapes(loc: &[usize], mat: &[usize], what: &'static str) -> Result<(Vec<usize>, usize)> {
    let bad = || Error::IncompatibleShapes {
        distribution: NAME,
        what,
        left: loc.to_vec(),
        right: mat.to_vec(),
    };
    if !matches!(loc.len(), 1 | 2) || !matches!(mat.len(), 2 | 3) {
        return Err(bad());
    }
    let d = loc[loc.len() - 1];
    if d == 0 || mat[mat.len() - 1] != d || mat[mat.len() - 2] != d {
        return Err(bad());
    }
    let batch = broadcast_shape(&loc[..loc.len() - 1], &mat[..mat.len() - 2]).ok_or_else(bad)?;
    Ok((batch, d))
}

/// Checks that `L` is lower-triangular with a positive, finite diagonal and finite entries.
fn check_tril<F: Scalar>(l: Var<'_, F>) -> Result<()> {
    l.with_value(|a| {
        let d = a.shape()[a.ndim() - 1];
        let flat = a.as_slice().expect("node values are in standard layout");
        // Row by row (a slice scan, not a multi-index per element: factors can be [n, d, d]).
        for (r, row) in flat.chunks_exact(d).enumerate() {
            let i = r % d;
            let (below, rest) = row.split_at(i);
            let bad = if let Some(j) = below.iter().position(|v| !v.is_finite()) {
                Some((j, "finite below the diagonal"))
            } else if !(rest[0].is_finite() && rest[0] > F::zero()) {
                Some((i, "positive and finite on the diagonal"))
            } else {
                (rest[1..].iter().position(|&v| v != F::zero()))
                    .map(|k| (i + 1 + k, "lower-triangular (0 above the diagonal)"))
            };
            if let Some((j, constraint)) = bad {
                let mut index = vec![i, j];
                if a.ndim() == 3 {
                    index.insert(0, r / d);
                }
                return Err(Error::InvalidParameter {
                    distribution: NAME,
                    param: "scale_tril",
                    constraint,
                    value: row[j].as_f64(),
                    index,
                });
            }
        }
        Ok(())
    })
}
