//! The location-scale family: one generic type `LocScale<B>` over a standard base noise `B`.
//!
//! `z = loc + scale·ε` with `ε ~ B`, computed with a fused multiply-add. Every property follows
//! from the base:
//!
//! - `log q(x) = log p_B((x − loc)/scale) − ln scale`
//! - `E[z] = loc + scale·E[ε]`, `Var[z] = scale²·Var[ε]`, `H[z] = H[ε] + ln scale`
//!
//! | alias | base `ε` | `E[ε]` | `Var[ε]` | `H[ε]` |
//! |---|---|---|---|---|
//! | [`Normal`] | `N(0, 1)` | 0 | 1 | `½ ln(2πe)` |
//! | [`Laplace`] | density `½e^{−|u|}` | 0 | 2 | `1 + ln 2` |
//! | [`Logistic`] | density `e^{−u}/(1 + e^{−u})²` | 0 | `π²/3` | 2 |
//! | [`Cauchy`] | density `1/(π(1 + u²))` | — | — | `ln 4π` |
//! | [`Uniform`] | `U(−1, 1)` | 0 | `1/3` | `ln 2` |
//! | [`Exponential`] | `Exp(1)` | 1 | 1 | 1 |
//!
//! `log_prob` is one fused op: with `u = (x − loc)/scale` and the base score
//! `φ'(u) = d/du log p_B(u)`, the gradients are `∂/∂x = φ'(u)/scale`, `∂/∂loc = −φ'(u)/scale`
//! and `∂/∂scale = −(φ'(u)·u + 1)/scale`.

use std::f64::consts::PI;
use std::marker::PhantomData;
use std::panic::Location;

use ndarray::{ArrayD, Dimension, Zip};
use rand::{Rng, RngExt};
use rand_distr::{Exp1, Open01, StandardNormal};
use smallvec::smallvec;

use super::{Constraint, Distribution, Family, broadcast_params, check_noise, check_param};
use crate::broadcast::{broadcast_shape, sum_to};
use crate::ops::{Backward, CustomOp, InputGrads, broadcast_view, standard};
use crate::tape::same_tape;
use crate::{Error, Result, Scalar, Var};

/// A standard base distribution for [`LocScale`]: parameter-free noise `ε`.
///
/// Implement it to add a location-scale family; every `LocScale` method then works.
pub trait Base: Copy + Send + Sync + 'static {
    /// The family's name, e.g. `"Normal"`.
    const NAME: &'static str;
    /// Whether `ε` and `−ε` have the same distribution (antithetic sampling needs it).
    const SYMMETRIC: bool;
    /// `E[ε]`, or `None` where it does not exist.
    const MEAN: Option<f64>;
    /// `Var[ε]`, or `None` where it does not exist.
    const VARIANCE: Option<f64>;
    /// The differential entropy `H[ε]`.
    const ENTROPY: f64;

    /// One draw of `ε`.
    fn draw<R: Rng + ?Sized>(rng: &mut R) -> f64;
    /// `log p(u)`, `−∞` outside the support.
    fn log_density<F: Scalar>(u: F) -> F;
    /// `d/du log p(u)` (0 outside the support).
    fn score<F: Scalar>(u: F) -> F;
    /// `P(ε ≤ u)`.
    fn cdf(u: f64) -> f64;

    /// The analytic-KL family of `LocScale<Self>` (only the normal has one registered).
    fn family<'t, F: Scalar>(loc: Var<'t, F>, scale: Var<'t, F>) -> Family<'t, F> {
        let _ = (loc, scale);
        Family::Other
    }
}

/// `ε ~ N(0, 1)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NormalNoise;

/// `ε` with density `½e^{−|u|}`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LaplaceNoise;

/// `ε` with density `e^{−u}/(1 + e^{−u})²`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogisticNoise;

/// `ε` with density `1/(π(1 + u²))`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CauchyNoise;

/// `ε ~ U(−1, 1)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct UniformNoise;

/// `ε ~ Exp(1)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExponentialNoise;

/// A uniform draw on the open interval (0, 1), safe to take logarithms of.
pub(super) fn open01<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    rng.sample(Open01)
}

fn c<F: Scalar>(x: f64) -> F {
    F::from_f64(x)
}

impl Base for NormalNoise {
    const NAME: &'static str = "Normal";
    const SYMMETRIC: bool = true;
    const MEAN: Option<f64> = Some(0.0);
    const VARIANCE: Option<f64> = Some(1.0);
    // ½ ln(2πe)
    const ENTROPY: f64 = 1.418_938_533_204_672_7;
    fn draw<R: Rng + ?Sized>(rng: &mut R) -> f64 {
        rng.sample(StandardNormal)
    }
    fn log_density<F: Scalar>(u: F) -> F {
        // −½u² − ½ ln 2π
        c::<F>(-0.5) * u * u - c(0.918_938_533_204_672_8)
    }
    fn score<F: Scalar>(u: F) -> F {
        -u
    }
    fn cdf(u: f64) -> f64 {
        0.5 * libm::erfc(-u / std::f64::consts::SQRT_2)
    }
    fn family<'t, F: Scalar>(loc: Var<'t, F>, scale: Var<'t, F>) -> Family<'t, F> {
        Family::Normal { loc, scale }
    }
}

impl Base for LaplaceNoise {
    const NAME: &'static str = "Laplace";
    const SYMMETRIC: bool = true;
    const MEAN: Option<f64> = Some(0.0);
    const VARIANCE: Option<f64> = Some(2.0);
    // 1 + ln 2
    const ENTROPY: f64 = 1.693_147_180_559_945_3;
    fn draw<R: Rng + ?Sized>(rng: &mut R) -> f64 {
        // inverse CDF of a uniform on (−½, ½)
        let v = open01(rng) - 0.5;
        -v.signum() * (-2.0 * v.abs()).ln_1p()
    }
    fn log_density<F: Scalar>(u: F) -> F {
        -u.abs() - c(std::f64::consts::LN_2)
    }
    fn score<F: Scalar>(u: F) -> F {
        if u > F::zero() {
            -F::one()
        } else if u < F::zero() {
            F::one()
        } else {
            F::zero()
        }
    }
    fn cdf(u: f64) -> f64 {
        if u < 0.0 {
            0.5 * u.exp()
        } else {
            1.0 - 0.5 * (-u).exp()
        }
    }
}

impl Base for LogisticNoise {
    const NAME: &'static str = "Logistic";
    const SYMMETRIC: bool = true;
    const MEAN: Option<f64> = Some(0.0);
    const VARIANCE: Option<f64> = Some(PI * PI / 3.0);
    const ENTROPY: f64 = 2.0;
    fn draw<R: Rng + ?Sized>(rng: &mut R) -> f64 {
        let p = open01(rng);
        p.ln() - (-p).ln_1p()
    }
    fn log_density<F: Scalar>(u: F) -> F {
        // −u − 2 ln(1 + e^{−u}) = −|u| − 2 log1p(e^{−|u|}) (symmetric, no overflow)
        let a = u.abs();
        -a - c::<F>(2.0) * (-a).exp().ln_1p()
    }
    fn score<F: Scalar>(u: F) -> F {
        // 1 − 2σ(u) = −tanh(u/2)
        -(u * c(0.5)).tanh()
    }
    fn cdf(u: f64) -> f64 {
        1.0 / (1.0 + (-u).exp())
    }
}

impl Base for CauchyNoise {
    const NAME: &'static str = "Cauchy";
    const SYMMETRIC: bool = true;
    const MEAN: Option<f64> = None;
    const VARIANCE: Option<f64> = None;
    // ln 4π
    const ENTROPY: f64 = 2.531_024_246_969_290_7;
    fn draw<R: Rng + ?Sized>(rng: &mut R) -> f64 {
        (PI * (open01(rng) - 0.5)).tan()
    }
    fn log_density<F: Scalar>(u: F) -> F {
        -(u * u).ln_1p() - c(PI.ln())
    }
    fn score<F: Scalar>(u: F) -> F {
        c::<F>(-2.0) * u / (F::one() + u * u)
    }
    fn cdf(u: f64) -> f64 {
        0.5 + u.atan() / PI
    }
}

impl Base for UniformNoise {
    const NAME: &'static str = "Uniform";
    const SYMMETRIC: bool = true;
    const MEAN: Option<f64> = Some(0.0);
    const VARIANCE: Option<f64> = Some(1.0 / 3.0);
    const ENTROPY: f64 = std::f64::consts::LN_2;
    fn draw<R: Rng + ?Sized>(rng: &mut R) -> f64 {
        2.0 * open01(rng) - 1.0
    }
    fn log_density<F: Scalar>(u: F) -> F {
        if u.abs() <= F::one() {
            -c::<F>(std::f64::consts::LN_2)
        } else {
            F::neg_infinity()
        }
    }
    fn score<F: Scalar>(_: F) -> F {
        F::zero()
    }
    fn cdf(u: f64) -> f64 {
        ((u + 1.0) / 2.0).clamp(0.0, 1.0)
    }
}

impl Base for ExponentialNoise {
    const NAME: &'static str = "Exponential";
    const SYMMETRIC: bool = false;
    const MEAN: Option<f64> = Some(1.0);
    const VARIANCE: Option<f64> = Some(1.0);
    const ENTROPY: f64 = 1.0;
    fn draw<R: Rng + ?Sized>(rng: &mut R) -> f64 {
        rng.sample(Exp1)
    }
    fn log_density<F: Scalar>(u: F) -> F {
        if u >= F::zero() {
            -u
        } else {
            F::neg_infinity()
        }
    }
    fn score<F: Scalar>(u: F) -> F {
        if u >= F::zero() { -F::one() } else { F::zero() }
    }
    fn cdf(u: f64) -> f64 {
        if u <= 0.0 { 0.0 } else { -(-u).exp_m1() }
    }
}

/// The distribution of `loc + scale·ε` for a standard base noise `ε ~ B`, elementwise with
/// NumPy broadcasting between `loc` and `scale` (their broadcast shape is the batch shape).
///
/// # Example
/// ```
/// use ndarray::array;
/// use rand::SeedableRng;
/// use stograd::dist::{Distribution, Normal};
/// use stograd::Tape;
///
/// let tape = Tape::<f64>::new();
/// let loc = tape.variable(array![0.0, 1.0]);
/// let scale = tape.variable(array![1.0, 2.0]);
/// let q = Normal::new(loc, scale)?;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let z = tape.sample(&q, &mut rng); // pathwise: z = loc + scale·ε
/// let grads = z.square().sum().backward()?;
/// // ∂/∂loc Σ z² = 2z
/// assert_eq!(grads.wrt(loc).unwrap(), &(z.value() * 2.0));
/// // N(0, 1) at 0: −½ ln 2π
/// let lp = q.log_prob(tape.constant(array![0.0, 1.0])).value();
/// assert!((lp[0] + 0.5 * (2.0 * std::f64::consts::PI).ln()).abs() < 1e-15);
/// # Ok::<(), stograd::Error>(())
/// ```
pub struct LocScale<'t, F: Scalar, B: Base> {
    loc: Var<'t, F>,
    scale: Var<'t, F>,
    given: Given<'t, F>,
    batch_shape: Vec<usize>,
    base: PhantomData<B>,
}

/// The parameters a constructor was given when they are not `loc` and `scale` themselves.
///
/// `log_prob` and the entropy are computed from these: the bounds `low ≤ x ≤ high` are tested
/// as given, since `|x − loc|/scale ≤ 1` can round above 1 at a bound; and `ln rate` stays
/// finite where `scale = 1/rate` overflows (a subnormal rate).
#[derive(Clone, Copy, Debug)]
enum Given<'t, F: Scalar> {
    LocScale,
    Bounds { low: Var<'t, F>, high: Var<'t, F> },
    Rate(Var<'t, F>),
}

impl<F: Scalar, B: Base> Clone for LocScale<'_, F, B> {
    fn clone(&self) -> Self {
        LocScale {
            loc: self.loc,
            scale: self.scale,
            given: self.given,
            batch_shape: self.batch_shape.clone(),
            base: PhantomData,
        }
    }
}

impl<F: Scalar, B: Base> std::fmt::Debug for LocScale<'_, F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(B::NAME)
            .field("loc", &self.loc)
            .field("scale", &self.scale)
            .field("batch_shape", &self.batch_shape)
            .finish()
    }
}

/// `N(loc, scale²)`. PyTorch: `torch.distributions.Normal`.
///
/// # Example
/// ```
/// use ndarray::array;
/// use stograd::dist::{Distribution, Normal};
/// use stograd::Tape;
///
/// let tape = Tape::<f64>::new();
/// let q = Normal::new(tape.constant(array![1.0]), tape.constant(array![2.0]))?;
/// // Var = σ² = 4; H = ½ ln(2πe σ²)
/// assert_eq!(q.variance()?.value()[0], 4.0);
/// let h = 0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E * 4.0).ln();
/// assert!((q.entropy()?.value()[0] - h).abs() < 1e-14);
/// # Ok::<(), stograd::Error>(())
/// ```
pub type Normal<'t, F> = LocScale<'t, F, NormalNoise>;
/// Laplace with location `loc` and scale `scale`: density `e^{−|x − loc|/scale} / (2 scale)`.
/// PyTorch: `torch.distributions.Laplace`.
///
/// # Example
/// ```
/// use ndarray::array;
/// use stograd::dist::{Distribution, Laplace};
/// use stograd::Tape;
///
/// let tape = Tape::<f64>::new();
/// let q = Laplace::new(tape.constant(array![0.0]), tape.constant(array![0.5]))?;
/// // log q(0) = −ln(2 · 0.5) = 0; Var = 2 scale²
/// assert!(q.log_prob(tape.constant(array![0.0])).value()[0].abs() < 1e-15);
/// assert_eq!(q.variance()?.value()[0], 0.5);
/// # Ok::<(), stograd::Error>(())
/// ```
pub type Laplace<'t, F> = LocScale<'t, F, LaplaceNoise>;
/// Logistic with location `loc` and scale `scale`: CDF `σ((x − loc)/scale)`.
///
/// # Example
/// ```
/// use ndarray::array;
/// use stograd::dist::{Distribution, Logistic};
/// use stograd::Tape;
///
/// let tape = Tape::<f64>::new();
/// let q = Logistic::new(tape.constant(array![0.0]), tape.constant(array![1.0]))?;
/// // density at the location: 1/(4 scale)
/// let lp = q.log_prob(tape.constant(array![0.0])).value()[0];
/// assert!((lp - 0.25f64.ln()).abs() < 1e-15);
/// # Ok::<(), stograd::Error>(())
/// ```
pub type Logistic<'t, F> = LocScale<'t, F, LogisticNoise>;
/// Cauchy with location `loc` and scale `scale`; it has no mean and no variance.
/// PyTorch: `torch.distributions.Cauchy`.
///
/// # Example
/// ```
/// use ndarray::array;
/// use stograd::dist::{Distribution, Cauchy};
/// use stograd::Tape;
///
/// let tape = Tape::<f64>::new();
/// let q = Cauchy::new(tape.constant(array![0.0]), tape.constant(array![1.0]))?;
/// assert!(q.mean().is_err()); // Error::Undefined, not NaN
/// // H = ln(4π scale)
/// assert!((q.entropy()?.value()[0] - (4.0 * std::f64::consts::PI).ln()).abs() < 1e-14);
/// # Ok::<(), stograd::Error>(())
/// ```
pub type Cauchy<'t, F> = LocScale<'t, F, CauchyNoise>;
/// Uniform on `[low, high]`. PyTorch: `torch.distributions.Uniform`.
///
/// # Example
/// ```
/// use ndarray::array;
/// use stograd::dist::{Distribution, Uniform};
/// use stograd::Tape;
///
/// let tape = Tape::<f64>::new();
/// let q = Uniform::new(tape.constant(array![-1.0]), tape.constant(array![3.0]))?;
/// // log q = −ln(high − low) inside, −∞ outside; mean (low + high)/2
/// let lp = q.log_prob(tape.constant(array![0.0])).value()[0];
/// assert!((lp + 4f64.ln()).abs() < 1e-15);
/// assert_eq!(q.log_prob(tape.constant(array![5.0])).value()[0], f64::NEG_INFINITY);
/// assert_eq!(q.mean()?.value()[0], 1.0);
/// # Ok::<(), stograd::Error>(())
/// ```
pub type Uniform<'t, F> = LocScale<'t, F, UniformNoise>;
/// Exponential with rate `rate` (`loc = 0`, `scale = 1/rate`). PyTorch:
/// `torch.distributions.Exponential`.
///
/// # Example
/// ```
/// use ndarray::array;
/// use stograd::dist::{Distribution, Exponential};
/// use stograd::Tape;
///
/// let tape = Tape::<f64>::new();
/// let q = Exponential::new(tape.constant(array![2.0]))?;
/// // mean 1/rate, log q(x) = ln rate − rate·x
/// assert_eq!(q.mean()?.value()[0], 0.5);
/// let lp = q.log_prob(tape.constant(array![1.0])).value()[0];
/// assert!((lp - (2f64.ln() - 2.0)).abs() < 1e-15);
/// # Ok::<(), stograd::Error>(())
/// ```
pub type Exponential<'t, F> = LocScale<'t, F, ExponentialNoise>;

/// Bases whose natural parameters are a location and a scale.
pub trait Standard: Base {}
impl Standard for NormalNoise {}
impl Standard for LaplaceNoise {}
impl Standard for LogisticNoise {}
impl Standard for CauchyNoise {}

impl<'t, F: Scalar, B: Base> LocScale<'t, F, B> {
    /// `loc + scale·ε` for any base.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `loc` is not finite or `scale` is not positive and
    /// finite; [`Error::IncompatibleShapes`] if they do not broadcast together.
    #[track_caller]
    pub fn from_loc_scale(loc: Var<'t, F>, scale: Var<'t, F>) -> Result<Self> {
        let _caller = crate::dist::constructing(loc);
        same_tape(B::NAME, loc, scale);
        check_param(B::NAME, "loc", loc, Constraint::Finite)?;
        check_param(B::NAME, "scale", scale, Constraint::Positive)?;
        let batch_shape = broadcast_params(B::NAME, "loc and scale", &loc.shape(), &scale.shape())?;
        Ok(LocScale {
            loc,
            scale,
            given: Given::LocScale,
            batch_shape,
            base: PhantomData,
        })
    }

    /// The location.
    pub fn loc(&self) -> Var<'t, F> {
        self.loc
    }

    /// The scale.
    pub fn scale(&self) -> Var<'t, F> {
        self.scale
    }

    /// `P(X ≤ x)` at the parameters' current values, elementwise (no gradient).
    ///
    /// # Panics
    /// If `x` does not broadcast against the batch shape.
    #[track_caller]
    pub fn cdf(&self, x: &ArrayD<F>) -> ArrayD<F> {
        let loc = self.loc.value();
        let scale = self.scale.value();
        let shape = broadcast_shape(x.shape(), &self.batch_shape).unwrap_or_else(|| {
            panic!(
                "{}::cdf: x {:?} does not fit batch shape {:?}",
                B::NAME,
                x.shape(),
                self.batch_shape
            )
        });
        let view = |a: &ArrayD<F>| a.broadcast(shape.as_slice()).expect("checked").to_owned();
        Zip::from(&view(x))
            .and(&view(&loc))
            .and(&view(&scale))
            .map_collect(|&x, &l, &s| F::from_f64(B::cdf(((x - l) / s).as_f64())))
    }

    /// Broadcasts a parameter-derived value to the batch shape.
    fn to_batch(&self, v: Var<'t, F>) -> Var<'t, F> {
        if v.shape() == self.batch_shape {
            v
        } else {
            v.broadcast_to(&self.batch_shape)
        }
    }
}

impl<'t, F: Scalar, B: Standard> LocScale<'t, F, B> {
    /// The distribution with location `loc` and scale `scale` (broadcast together).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `loc` is not finite or `scale` is not positive and
    /// finite; [`Error::IncompatibleShapes`] if they do not broadcast together.
    #[track_caller]
    pub fn new(loc: Var<'t, F>, scale: Var<'t, F>) -> Result<Self> {
        let _caller = crate::dist::constructing(loc);
        Self::from_loc_scale(loc, scale)
    }
}

impl<'t, F: Scalar> LocScale<'t, F, UniformNoise> {
    /// Uniform on the closed interval `[low, high]`: `loc = (low + high)/2`,
    /// `scale = (high − low)/2`, and `log q(x) = −ln(high − low)` for `low ≤ x ≤ high`.
    ///
    /// Where `high − low` (or `low + high`) overflows, for bounds near the largest float, they
    /// are computed as `high/2 − low/2` (`low/2 + high/2`), which is finite.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if a bound is not finite or `high ≤ low` somewhere;
    /// [`Error::IncompatibleShapes`] if the bounds do not broadcast together.
    #[track_caller]
    pub fn new(low: Var<'t, F>, high: Var<'t, F>) -> Result<Self> {
        let _caller = crate::dist::constructing(low);
        same_tape("Uniform", low, high);
        check_param("Uniform", "low", low, Constraint::Finite)?;
        check_param("Uniform", "high", high, Constraint::Finite)?;
        let shape = broadcast_params("Uniform", "low and high", &low.shape(), &high.shape())?;
        let (lo, hi) = (low.value(), high.value());
        let (lo, hi) = (
            lo.broadcast(shape.as_slice()).expect("checked"),
            hi.broadcast(shape.as_slice()).expect("checked"),
        );
        if let Some(((index, _), &h)) = lo
            .indexed_iter()
            .zip(hi.iter())
            .find(|((_, l), h)| **h <= **l)
        {
            return Err(Error::InvalidParameter {
                distribution: "Uniform",
                param: "high",
                constraint: "greater than low",
                value: h.as_f64(),
                index: index.slice().to_vec(),
            });
        }
        // (a ± b)/2 rounds once; a/2 ± b/2 never overflows but may round twice (subnormal
        // halves), so it is used only where the sum or difference overflows.
        let overflows = |f: fn(F, F) -> F| {
            lo.iter()
                .zip(hi.iter())
                .any(|(&l, &h)| !f(l, h).is_finite())
        };
        let half = F::from_f64(0.5);
        let loc = if overflows(|l, h| l + h) {
            low * half + high * half
        } else {
            (low + high) * half
        };
        let scale = if overflows(|l, h| h - l) {
            high * half - low * half
        } else {
            (high - low) * half
        };
        Ok(LocScale {
            loc,
            scale,
            given: Given::Bounds { low, high },
            batch_shape: shape,
            base: PhantomData,
        })
    }

    /// The lower bound, as given.
    pub fn low(&self) -> Var<'t, F> {
        match self.given {
            Given::Bounds { low, .. } => low,
            _ => self.loc - self.scale,
        }
    }

    /// The upper bound, as given.
    pub fn high(&self) -> Var<'t, F> {
        match self.given {
            Given::Bounds { high, .. } => high,
            _ => self.loc + self.scale,
        }
    }
}

impl<'t, F: Scalar> LocScale<'t, F, ExponentialNoise> {
    /// Exponential with rate `rate` (mean `1/rate`): `loc = 0`, `scale = 1/rate`.
    ///
    /// `log q(x) = ln rate − rate·x` (`x ≥ 0`) and `H = 1 − ln rate` are computed from the rate,
    /// so they stay finite for a subnormal rate, where `1/rate` (and so the mean and the
    /// variance, correctly) overflow to `+∞`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `rate` is not positive and finite.
    #[track_caller]
    pub fn new(rate: Var<'t, F>) -> Result<Self> {
        let _caller = crate::dist::constructing(rate);
        check_param("Exponential", "rate", rate, Constraint::Positive)?;
        let loc = rate.tape().scalar(F::zero());
        Ok(LocScale {
            loc,
            scale: rate.recip(),
            given: Given::Rate(rate),
            batch_shape: rate.shape(),
            base: PhantomData,
        })
    }

    /// The rate, as given.
    pub fn rate(&self) -> Var<'t, F> {
        match self.given {
            Given::Rate(rate) => rate,
            _ => self.scale.recip(),
        }
    }
}

impl<'t, F: Scalar, B: Base> Distribution<'t, F> for LocScale<'t, F, B> {
    fn name(&self) -> &'static str {
        B::NAME
    }

    fn batch_shape(&self) -> &[usize] {
        &self.batch_shape
    }

    fn event_shape(&self) -> &[usize] {
        &[]
    }

    fn params(&self) -> Vec<Var<'t, F>> {
        vec![self.loc, self.scale]
    }

    fn param_event_dims(&self) -> Option<Vec<usize>> {
        Some(vec![0, 0])
    }

    fn sample(&self, rng: &mut dyn Rng) -> ArrayD<F> {
        let eps: ArrayD<F> = super::draw_array(&self.batch_shape, rng, B::draw);
        let shape = self.batch_shape.as_slice();
        // read the parameters in place: no copies on the no-gradient path
        self.loc.with_value(|loc| {
            self.scale.with_value(|scale| {
                Zip::from(&eps)
                    .and_broadcast(&scale.broadcast(shape).expect("batch shape"))
                    .and_broadcast(&loc.broadcast(shape).expect("batch shape"))
                    .map_collect(|&e, &s, &l| e.mul_add(s, l))
            })
        })
    }

    #[track_caller]
    fn log_prob(&self, x: Var<'t, F>) -> Var<'t, F> {
        let _caller = crate::dist::at_caller(self);
        let location = Location::caller();
        match self.given {
            Given::Bounds { low, high } => {
                record::<F, B, _>(UniformLogProb, x, low, high, "low", "high", location)
            }
            Given::Rate(rate) => {
                let zero = self.loc;
                record::<F, B, _>(ExponentialLogProb, x, rate, zero, "rate", "loc", location)
            }
            Given::LocScale => record::<F, B, _>(
                LogProbOp::<B>(PhantomData),
                x,
                self.loc,
                self.scale,
                "loc",
                "scale",
                location,
            ),
        }
    }

    fn entropy(&self) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        Ok(self.to_batch(match self.given {
            // H = 1 − ln rate, finite where ln(1/rate) is not
            Given::Rate(rate) => -rate.log() + F::from_f64(B::ENTROPY),
            // H = ln(high − low): from the width itself where it is finite, since the
            // half-width can underflow to 0 for a subnormal width
            Given::Bounds { low, high } => {
                let w = high - low;
                if w.with_value(|w| w.iter().all(|w| w.is_finite())) {
                    w.log()
                } else {
                    self.scale.log() + F::from_f64(B::ENTROPY)
                }
            }
            _ => self.scale.log() + F::from_f64(B::ENTROPY),
        }))
    }

    fn mean(&self) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        let m = B::MEAN.ok_or(Error::Undefined {
            distribution: B::NAME,
            quantity: "mean",
            reason: "the defining integral diverges",
        })?;
        Ok(self.to_batch(if m == 0.0 {
            self.loc
        } else {
            self.scale * F::from_f64(m) + self.loc
        }))
    }

    fn variance(&self) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        let v = B::VARIANCE.ok_or(Error::Undefined {
            distribution: B::NAME,
            quantity: "variance",
            reason: "the defining integral diverges",
        })?;
        Ok(self.to_batch(self.scale.square() * F::from_f64(v)))
    }

    fn symmetric_noise(&self) -> bool {
        B::SYMMETRIC
    }

    fn noise(&self, rng: &mut dyn Rng) -> Result<ArrayD<F>> {
        Ok(super::draw_array(&self.batch_shape, rng, B::draw))
    }

    #[track_caller]
    fn reparameterize(&self, noise: Var<'t, F>) -> Result<Var<'t, F>> {
        let _caller = crate::dist::at_caller(self);
        check_noise(noise, self.batch_shape.clone())?;
        Ok(noise.mul_add(self.scale, self.loc))
    }

    fn has_rsample(&self) -> bool {
        true
    }

    fn family(&self) -> Family<'t, F> {
        B::family(self.loc, self.scale)
    }
}

/// The fused `log q(x) = log p((x − loc)/scale) − log scale` of a location-scale
/// distribution with base `B`; inputs `[x, loc, scale]`, broadcast together.
struct LogProbOp<B>(PhantomData<B>);

/// Records a log-density op on `[x, a, b]` (the parameters named `an` and `bn`), after checking
/// that the shapes broadcast.
#[track_caller]
fn record<'t, F: Scalar, B: Base, Op: CustomOp<F>>(
    op: Op,
    x: Var<'t, F>,
    a: Var<'t, F>,
    b: Var<'t, F>,
    an: &str,
    bn: &str,
    location: &'static Location<'static>,
) -> Var<'t, F> {
    let tape = a.tape();
    tape.check_owns(B::NAME, x);
    let (xs, ls, ss) = (x.shape(), a.shape(), b.shape());
    if broadcast_shape(&xs, &ls)
        .and_then(|s| broadcast_shape(&s, &ss))
        .is_none()
    {
        panic!(
            "{}::log_prob: value {xs:?} does not broadcast against {an} {ls:?} and {bn} {ss:?} (at {location})",
            B::NAME
        );
    }
    let y = tape.apply(op, &[x, a, b]);
    tape.nodes.borrow_mut()[y.index as usize].location = location;
    y
}

impl<F: Scalar, B: Base> CustomOp<F> for LogProbOp<B> {
    fn name(&self) -> &'static str {
        B::NAME
    }

    fn forward(&self, inputs: &[&ArrayD<F>]) -> ArrayD<F> {
        let (xv, lv, sv) = (inputs[0], inputs[1], inputs[2]);
        let shape = broadcast_shape(xv.shape(), lv.shape())
            .and_then(|s| broadcast_shape(&s, sv.shape()))
            .expect("checked by log_prob");
        let f = |x: F, l: F, s: F| B::log_density((x - l) / s) - s.ln();
        if xv.shape() == shape && lv.shape() == shape && sv.shape() == shape {
            crate::ops::zip3(xv, lv, sv, f)
        } else {
            let view = |a: &ArrayD<F>| a.broadcast(shape.as_slice()).expect("checked").to_owned();
            crate::ops::zip3(&view(xv), &view(lv), &view(sv), f)
        }
    }

    fn backward(&self, b: &Backward<'_, F>) -> Vec<Option<ArrayD<F>>> {
        log_prob_backward::<F, B>(b).into_vec()
    }

    /// Elementwise with broadcasting.
    fn keeps_rows(&self, input: usize, inputs: &[&[usize]], output: &[usize]) -> bool {
        crate::ops::rows_aligned(inputs[input], output)
    }
}

/// The backward rule of `LogProbOp<B>`.
fn log_prob_backward<F: Scalar, B: Base>(b: &Backward<'_, F>) -> InputGrads<F> {
    let (x, l, s, g) = (b.inputs[0], b.inputs[1], b.inputs[2], b.grad);
    let shape = g.shape();
    let view = |a| broadcast_view(a, shape);
    let score = B::score::<F>;
    // ∂/∂x = g φ'(u)/s; ∂/∂loc = −∂/∂x; ∂/∂scale = −g (φ'(u) u + 1)/s
    let dx = standard(
        Zip::from(g)
            .and(view(x))
            .and(view(l))
            .and(view(s))
            .map_collect(|&g, &x, &l, &s| g * score((x - l) / s) / s),
    );
    let ds = b.needs[2].then(|| {
        let per = Zip::from(g)
            .and(view(x))
            .and(view(l))
            .and(view(s))
            .map_collect(|&g, &x, &l, &s| {
                let u = (x - l) / s;
                -g * (score(u) * u + F::one()) / s
            });
        sum_to(&standard(per), s.shape())
    });
    smallvec![
        b.needs[0].then(|| sum_to(&dx, x.shape())),
        b.needs[1].then(|| sum_to(&dx.mapv(|v| -v), l.shape())),
        ds,
    ]
}

/// Evaluates `f` over `[x, a, b]` broadcast together.
fn forward3<F: Scalar>(inputs: &[&ArrayD<F>], f: impl Fn(F, F, F) -> F + Sync + Send) -> ArrayD<F> {
    let (xv, av, bv) = (inputs[0], inputs[1], inputs[2]);
    let shape = broadcast_shape(xv.shape(), av.shape())
        .and_then(|s| broadcast_shape(&s, bv.shape()))
        .expect("checked by record");
    let view = |a: &ArrayD<F>| a.broadcast(shape.as_slice()).expect("checked").to_owned();
    crate::ops::zip3(&view(xv), &view(av), &view(bv), f)
}

/// The gradients of a log density over `[x, a, b]`, from `d(x, a, b)`, its three partial
/// derivatives, each times the incoming gradient and summed to its input's shape.
fn backward3<F: Scalar>(
    b: &Backward<'_, F>,
    d: impl Fn(F, F, F) -> [F; 3],
) -> Vec<Option<ArrayD<F>>> {
    let g = b.grad;
    let view = |a| broadcast_view(a, g.shape());
    let part = |i: usize| {
        b.needs[i].then(|| {
            let per = Zip::from(g)
                .and(view(b.inputs[0]))
                .and(view(b.inputs[1]))
                .and(view(b.inputs[2]))
                .map_collect(|&g, &x, &p, &q| g * d(x, p, q)[i]);
            sum_to(&standard(per), b.inputs[i].shape())
        })
    };
    vec![part(0), part(1), part(2)]
}

/// `1/(high − low)`, finite where `high − low` overflows: then `½/(high/2 − low/2)`.
fn inv_width<F: Scalar>(low: F, high: F) -> F {
    let w = high - low;
    if w.is_finite() {
        w.recip()
    } else {
        F::from_f64(0.5) / (high * F::from_f64(0.5) - low * F::from_f64(0.5))
    }
}

/// `ln(high − low)`, finite where the width overflows (`ln 2 + ln(high/2 − low/2)`) and
/// where it is subnormal (whose reciprocal overflows although its logarithm does not).
fn log_width<F: Scalar>(low: F, high: F) -> F {
    let w = high - low;
    if w.is_finite() {
        w.ln()
    } else {
        F::from_f64(std::f64::consts::LN_2)
            + (high * F::from_f64(0.5) - low * F::from_f64(0.5)).ln()
    }
}

/// `log q(x) = −ln(high − low)` on the closed interval `low ≤ x ≤ high`, `−∞` outside;
/// inputs `[x, low, high]`. `∂/∂low = 1/(high − low) = −∂/∂high` inside, 0 outside.
///
/// The bounds are compared with `x` as given, so `log q(low) = log q(high)` exactly, and
/// `ln(high − low) = ln 2 + ln(high/2 − low/2)` where the width overflows.
struct UniformLogProb;

impl<F: Scalar> CustomOp<F> for UniformLogProb {
    fn name(&self) -> &'static str {
        "Uniform"
    }

    fn forward(&self, inputs: &[&ArrayD<F>]) -> ArrayD<F> {
        forward3(inputs, |x, low, high| {
            if low <= x && x <= high {
                -log_width(low, high)
            } else {
                F::neg_infinity()
            }
        })
    }

    fn backward(&self, b: &Backward<'_, F>) -> Vec<Option<ArrayD<F>>> {
        backward3(b, |x, low, high| {
            if low <= x && x <= high {
                let r = inv_width(low, high);
                [F::zero(), r, -r]
            } else {
                [F::zero(); 3]
            }
        })
    }

    fn keeps_rows(&self, input: usize, inputs: &[&[usize]], output: &[usize]) -> bool {
        crate::ops::rows_aligned(inputs[input], output)
    }
}

/// `log q(x) = ln rate − rate·x` for `x ≥ 0`, `−∞` below; inputs `[x, rate, loc = 0]`.
/// `∂/∂x = −rate`, `∂/∂rate = 1/rate − x` on the support, 0 below it.
struct ExponentialLogProb;

impl<F: Scalar> CustomOp<F> for ExponentialLogProb {
    fn name(&self) -> &'static str {
        "Exponential"
    }

    fn forward(&self, inputs: &[&ArrayD<F>]) -> ArrayD<F> {
        forward3(inputs, |x, rate, _| {
            if x >= F::zero() {
                rate.ln() - rate * x
            } else {
                F::neg_infinity()
            }
        })
    }

    fn backward(&self, b: &Backward<'_, F>) -> Vec<Option<ArrayD<F>>> {
        backward3(b, |x, rate, _| {
            if x >= F::zero() {
                [-rate, rate.recip() - x, F::zero()]
            } else {
                [F::zero(); 3]
            }
        })
    }

    fn keeps_rows(&self, input: usize, inputs: &[&[usize]], output: &[usize]) -> bool {
        crate::ops::rows_aligned(inputs[input], output)
    }
}
