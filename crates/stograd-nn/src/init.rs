//! Initializers, named and computed as in `torch.nn.init`.
//!
//! For a weight of shape `[out, in, k…]` (a linear layer's `[out, in]`), `fan_in = in·∏k` and
//! `fan_out = out·∏k`. The variance-preserving schemes:
//!
//! | initializer | distribution |
//! |---|---|
//! | [`xavier_uniform`] | `U(−a, a)`, `a = gain·√(6 / (fan_in + fan_out))` |
//! | [`xavier_normal`] | `N(0, σ²)`, `σ = gain·√(2 / (fan_in + fan_out))` |
//! | [`kaiming_uniform`] | `U(−a, a)`, `a = gain·√(3 / fan)` |
//! | [`kaiming_normal`] | `N(0, σ²)`, `σ = gain / √fan` |
//! | [`linear_default`] | `U(−1/√fan_in, 1/√fan_in)`: `nn.Linear`'s weight and bias |
//!
//! `fan` is `fan_in` or `fan_out` by [`FanMode`]; `gain` comes from [`calculate_gain`].

use ndarray::{ArrayD, IxDyn};
use rand::{Rng, RngExt};
use rand_distr::StandardNormal;
use stograd::Scalar;

use crate::{Error, Result};

/// Which fan a Kaiming initializer preserves the variance of.
///
/// ```
/// use stograd_nn::init::{kaiming_normal, FanMode, Nonlinearity};
/// # use rand::SeedableRng;
///
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// // the backward pass's variance: σ = √2 / √fan_out = √2 / √300
/// let w = kaiming_normal::<f32>(&[300, 100], FanMode::FanOut, Nonlinearity::Relu, &mut rng)?;
/// let var = w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
/// assert!((var - 2.0 / 300.0).abs() < 0.001);
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanMode {
    /// The forward pass's (PyTorch's default).
    FanIn,
    /// The backward pass's.
    FanOut,
}

/// The nonlinearity that follows a layer, for [`calculate_gain`].
///
/// ```
/// use stograd_nn::init::{calculate_gain, Nonlinearity};
///
/// assert_eq!(calculate_gain(Nonlinearity::LeakyRelu(0.0)), calculate_gain(Nonlinearity::Relu));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Nonlinearity {
    /// None (or a linear map): gain 1.
    Linear,
    /// `sigmoid`: gain 1.
    Sigmoid,
    /// `tanh`: gain 5/3.
    Tanh,
    /// `relu`: gain √2.
    Relu,
    /// `leaky_relu` with this negative slope: gain `√(2 / (1 + slope²))`.
    LeakyRelu(f64),
}

/// The recommended gain for a nonlinearity (`torch.nn.init.calculate_gain`).
///
/// # Example
/// ```
/// use stograd_nn::init::{calculate_gain, Nonlinearity};
///
/// assert_eq!(calculate_gain(Nonlinearity::Relu), 2f64.sqrt());
/// assert_eq!(calculate_gain(Nonlinearity::Tanh), 5.0 / 3.0);
/// ```
pub fn calculate_gain(nonlinearity: Nonlinearity) -> f64 {
    match nonlinearity {
        Nonlinearity::Linear | Nonlinearity::Sigmoid => 1.0,
        Nonlinearity::Tanh => 5.0 / 3.0,
        Nonlinearity::Relu => 2f64.sqrt(),
        Nonlinearity::LeakyRelu(slope) => (2.0 / (1.0 + slope * slope)).sqrt(),
    }
}

/// `(fan_in, fan_out)` of a weight `[out, in, k…]`.
///
/// # Errors
/// [`Error::InvalidArgument`] for fewer than 2 axes (PyTorch refuses them too) or an empty
/// fan.
pub fn fans(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(Error::InvalidArgument {
            name: "weight rank",
            constraint: "at least 2 for a fan",
            value: shape.len() as f64,
        });
    }
    let receptive: usize = shape[2..].iter().product();
    let (fan_in, fan_out) = (shape[1] * receptive, shape[0] * receptive);
    if fan_in == 0 || fan_out == 0 {
        return Err(Error::InvalidArgument {
            name: "fan",
            constraint: "positive",
            value: 0.0,
        });
    }
    Ok((fan_in, fan_out))
}

/// Zeros of `shape`.
pub fn zeros<F: Scalar>(shape: &[usize]) -> ArrayD<F> {
    ArrayD::zeros(IxDyn(shape))
}

/// `value` everywhere.
pub fn constant<F: Scalar>(shape: &[usize], value: F) -> ArrayD<F> {
    ArrayD::from_elem(IxDyn(shape), value)
}

/// Independent draws from `U(a, b)`.
///
/// # Example
/// ```
/// use rand::SeedableRng;
/// use stograd_nn::init;
///
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let w = init::uniform::<f32>(&[3, 2], -0.5, 0.5, &mut rng)?;
/// assert!(w.iter().all(|&v| (-0.5..0.5).contains(&v)));
/// # Ok::<(), stograd_nn::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidArgument`] unless `a ≤ b`, both finite.
pub fn uniform<F: Scalar>(shape: &[usize], a: f64, b: f64, rng: &mut dyn Rng) -> Result<ArrayD<F>> {
    if !(a.is_finite() && b.is_finite() && a <= b) {
        return Err(Error::InvalidArgument {
            name: "uniform bounds (b − a)",
            constraint: "finite and non-negative",
            value: b - a,
        });
    }
    Ok(ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        F::from_f64(a + (b - a) * rng.random::<f64>())
    }))
}

/// Independent draws from `N(mean, std²)`.
///
/// # Errors
/// [`Error::InvalidArgument`] for a non-finite mean or a negative or non-finite `std`.
pub fn normal<F: Scalar>(
    shape: &[usize],
    mean: f64,
    std: f64,
    rng: &mut dyn Rng,
) -> Result<ArrayD<F>> {
    if !mean.is_finite() {
        return Err(Error::InvalidArgument {
            name: "mean",
            constraint: "finite",
            value: mean,
        });
    }
    check_std(std)?;
    Ok(ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        F::from_f64(mean + std * rng.sample::<f64, _>(StandardNormal))
    }))
}

/// Glorot & Bengio (2010), uniform: `U(−a, a)`, `a = gain·√(6 / (fan_in + fan_out))`.
///
/// # Errors
/// As [`fans`], and for a negative or non-finite gain.
pub fn xavier_uniform<F: Scalar>(
    shape: &[usize],
    gain: f64,
    rng: &mut dyn Rng,
) -> Result<ArrayD<F>> {
    let (fan_in, fan_out) = fans(shape)?;
    let std = gain * (2.0 / (fan_in + fan_out) as f64).sqrt();
    symmetric_uniform(shape, std, rng)
}

/// Glorot & Bengio (2010), normal: `N(0, σ²)`, `σ = gain·√(2 / (fan_in + fan_out))`.
///
/// # Errors
/// As [`fans`], and for a negative or non-finite gain.
pub fn xavier_normal<F: Scalar>(
    shape: &[usize],
    gain: f64,
    rng: &mut dyn Rng,
) -> Result<ArrayD<F>> {
    let (fan_in, fan_out) = fans(shape)?;
    normal(
        shape,
        0.0,
        gain * (2.0 / (fan_in + fan_out) as f64).sqrt(),
        rng,
    )
}

/// He et al. (2015), uniform: `U(−a, a)`, `a = gain·√(3 / fan)`.
///
/// # Example
/// ```
/// use rand::SeedableRng;
/// use stograd_nn::init::{self, FanMode, Nonlinearity};
///
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let w = init::kaiming_uniform::<f64>(&[400, 784], FanMode::FanIn, Nonlinearity::Relu, &mut rng)?;
/// let bound = (6.0 / 784.0f64).sqrt(); // √2 · √(3/784)
/// assert!(w.iter().all(|v| v.abs() <= bound));
/// # Ok::<(), stograd_nn::Error>(())
/// ```
///
/// # Errors
/// As [`fans`].
pub fn kaiming_uniform<F: Scalar>(
    shape: &[usize],
    mode: FanMode,
    nonlinearity: Nonlinearity,
    rng: &mut dyn Rng,
) -> Result<ArrayD<F>> {
    let std = calculate_gain(nonlinearity) / (fan(shape, mode)? as f64).sqrt();
    symmetric_uniform(shape, std, rng)
}

/// He et al. (2015), normal: `N(0, σ²)`, `σ = gain / √fan`.
///
/// # Errors
/// As [`fans`].
pub fn kaiming_normal<F: Scalar>(
    shape: &[usize],
    mode: FanMode,
    nonlinearity: Nonlinearity,
    rng: &mut dyn Rng,
) -> Result<ArrayD<F>> {
    let std = calculate_gain(nonlinearity) / (fan(shape, mode)? as f64).sqrt();
    normal(shape, 0.0, std, rng)
}

/// `nn.Linear`'s initialization of a parameter of a layer with `fan_in` inputs, weight or bias:
/// `U(−1/√fan_in, 1/√fan_in)` (for the weight, PyTorch's `kaiming_uniform_(a = √5)`, which is
/// the same distribution).
///
/// # Errors
/// [`Error::InvalidArgument`] for `fan_in = 0`.
pub fn linear_default<F: Scalar>(
    shape: &[usize],
    fan_in: usize,
    rng: &mut dyn Rng,
) -> Result<ArrayD<F>> {
    if fan_in == 0 {
        return Err(Error::InvalidArgument {
            name: "fan_in",
            constraint: "positive",
            value: 0.0,
        });
    }
    let bound = 1.0 / (fan_in as f64).sqrt();
    uniform(shape, -bound, bound, rng)
}

/// `U(−√3σ, √3σ)`, whose standard deviation is `σ`.
fn symmetric_uniform<F: Scalar>(shape: &[usize], std: f64, rng: &mut dyn Rng) -> Result<ArrayD<F>> {
    check_std(std)?;
    let bound = 3f64.sqrt() * std;
    uniform(shape, -bound, bound, rng)
}

fn fan(shape: &[usize], mode: FanMode) -> Result<usize> {
    let (fan_in, fan_out) = fans(shape)?;
    Ok(match mode {
        FanMode::FanIn => fan_in,
        FanMode::FanOut => fan_out,
    })
}

fn check_std(std: f64) -> Result<()> {
    if std.is_finite() && std >= 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            name: "standard deviation",
            constraint: "non-negative and finite",
            value: std,
        })
    }
}
