//! # stograd
//!
//! Reverse-mode automatic differentiation for **stochastic computation graphs**.
//!
//! A [`Tape`] records the operations of one step as they run; [`Var`] is a copyable handle to
//! a recorded value. Arithmetic operators and methods such as [`Var::exp`], [`Var::matmul`]
//! or [`Var::log_softmax`] record new nodes (see [`ops`] for the full list), and
//! [`Var::backward`] sweeps the tape once in reverse to produce [`Gradients`]. Trainable
//! arrays live in [`Params`], outside any tape, under hierarchical names.
//!
//! ```
//! use ndarray::{array, ArrayD};
//! use stograd::prelude::*;
//!
//! // A parameter store that outlives every tape.
//! let mut params = Params::<f64>::new();
//! let w = params.insert("model.w", ArrayD::zeros(vec![1, 2]))?; // [out, in]
//! let b = params.insert("model.b", ArrayD::zeros(vec![1]))?;
//!
//! let x = array![[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0]];
//! let y = array![[1.5], [2.5], [3.5], [4.5]]; // y = x · [1, 2]ᵀ + 0.5
//! for _ in 0..500 {
//!     let tape = Tape::with_params(&params); // records each parameter without copying it
//!     let pred = tape.constant(x.clone()).linear(tape.param(w), Some(tape.param(b)));
//!     let loss = (pred - tape.constant(y.clone())).square().mean();
//!     let grads = loss.backward()?;
//!     drop(tape); // the parameters are now updated in place
//!     for id in [w, b] {
//!         let g = grads.param(id).expect("both parameters are used");
//!         params.get_mut(id).scaled_add(-0.2, g);
//!     }
//! }
//! assert!((params.get(w)[[0, 1]] - 2.0).abs() < 1e-6);
//! assert!((params.get(b)[0] - 0.5).abs() < 1e-6);
//! # Ok::<(), stograd::Error>(())
//! ```
//!
//! Every op's backward rule is checked against finite differences with the public
//! [`check::gradcheck`]. With [`Tape::detect_anomaly`] on, backward fails with the name and
//! source line of the first op that produced NaN or infinity.
//!
//! Operator misuse (incompatible shapes, an axis out of range) panics with both shapes and
//! the caller's location, as ndarray does; anything fed by data returns [`Result`].

mod backward;
pub mod broadcast;
mod caller;
pub mod check;
pub mod diagnostics;
pub mod dist;
mod error;
pub mod estimator;
mod gradients;
pub mod ops;
mod params;
mod pool;
mod scalar;
mod tape;
mod value;

/// The `ndarray` version stograd's arrays come from: use it, so the types match.
pub use ndarray;
/// The `rand` version stograd's samplers take: use it, so the generator traits match.
pub use rand;

pub use error::{Error, Pass, Result};
pub use estimator::Estimator;
pub use gradients::Gradients;
pub use params::{ParamId, Params};
pub use pool::empty_cache;
pub use scalar::Scalar;
pub use tape::{Tape, Var};

/// The README's tour, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeTour;

/// The types most programs need: `use stograd::prelude::*;`.
pub mod prelude {
    pub use crate::dist::kl::kl_divergence;
    pub use crate::dist::{
        Bernoulli, Categorical, Cauchy, Distribution, Exponential, Laplace, Logistic,
        LowRankMultivariateNormal, MultivariateNormal, Normal, OneHotCategorical, RelaxedBernoulli,
        RelaxedOneHotCategorical, Uniform,
    };
    pub use crate::estimator::{Baseline, EmaBaseline};
    pub use crate::{Error, Estimator, Gradients, ParamId, Params, Result, Scalar, Tape, Var};
}
