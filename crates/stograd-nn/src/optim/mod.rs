//! Optimizers over [`Params`] and the parameter [`Gradients`] of a backward pass: [`Sgd`]
//! (momentum, Nesterov), [`Adam`] and [`AdamW`], with per-group settings, learning-rate
//! [`Schedule`]s and checkpointable state.
//!
//! - **Groups.** Each optimizer has default settings and, optionally, groups by parameter-name
//!   prefix (`"encoder"`, `"decoder.fc2"`), each with settings of its own. A parameter takes
//!   the settings of the longest prefix it falls under (the prefix is its name or the start
//!   of it up to a `.`), the defaults otherwise.
//! - **Learning rate.** Every group's learning rate is its base `lr` times one factor,
//!   [`Optimizer::set_lr_factor`], as PyTorch's schedulers set each group's lr from its own
//!   initial lr; a [`Schedule`] gives the factor as a pure function of the epoch or step.
//! - **Skipped parameters.** A parameter without a gradient (not recorded on the tape, or
//!   frozen) or frozen is passed by: its value and state do not change and its step count
//!   does not advance, as PyTorch skips parameters whose `grad` is `None`.
//! - **Clipping** is done on the gradients before the step, with
//!   [`Gradients::clip_norm`] or [`Gradients::clip_value`].
//! - **State** (moments, step counts) is kept by [`ParamId`](stograd::ParamId) and exported
//!   by parameter name ([`Optimizer::state_dict`]), so it survives a change of parameter
//!   order, and what is missing or left over is named on load.
//! - **Speed.** A step makes one pass over each parameter's memory (parameter, gradient and
//!   moments together, no temporary arrays), on rayon's pool for arrays of at least
//!   [`PARALLEL_CHUNK`] elements. Moments below the smallest normal number are flushed to
//!   zero, so that moments decaying towards zero (the weights of an input that is almost
//!   always zero) never become subnormal, which is many times slower to compute with.
//!
//! # Example
//! ```
//! use ndarray::{array, ArrayD};
//! use stograd::{Params, Tape};
//! use stograd_nn::optim::{AdamConfig, AdamW, Optimizer, Schedule};
//!
//! let mut params = Params::<f32>::new();
//! let w = params.insert("encoder.w", ArrayD::zeros(vec![2]))?;
//! let b = params.insert("decoder.b", ArrayD::zeros(vec![1]))?;
//! let config = AdamConfig { lr: 0.1, ..AdamConfig::adamw() };
//! // No weight decay on the decoder, a smaller learning rate on the encoder.
//! let mut opt = AdamW::new(config)?
//!     .group("decoder", AdamConfig { weight_decay: 0.0, ..config })?
//!     .group("encoder", AdamConfig { lr: 0.05, ..config })?;
//! let schedule = Schedule::cosine(200, 0.1)?.with_warmup(20, 0.1)?;
//! for step in 0..220 {
//!     opt.set_lr_factor(schedule.factor(step));
//!     let mut grads = {
//!         let tape = Tape::with_params(&params);
//!         let target = tape.constant(array![1.0f32, -1.0]);
//!         let loss_w = (tape.param(w) - target).square().sum();
//!         let loss_b = (tape.param(b) - 3.0).square().sum();
//!         (loss_w + loss_b).backward()?
//!     };
//!     grads.clip_norm(10.0);
//!     opt.step(&mut params, &grads);
//! }
//! assert!((params.get(b)[0] - 3.0).abs() < 0.01);
//! assert_eq!(opt.config("decoder.b").weight_decay, 0.0);
//! assert_eq!(opt.config("encoder.w").lr, 0.05);
//! assert_eq!(opt.lr(), 0.1 * schedule.factor(219)); // near the end of the cosine
//!
//! // Resume: the state is keyed by name.
//! let state = opt.state_dict(&params);
//! assert_eq!(state.values["step.decoder.b"], 220.0);
//! let mut resumed = AdamW::new(config)?
//!     .group("decoder", AdamConfig { weight_decay: 0.0, ..config })?
//!     .group("encoder", AdamConfig { lr: 0.05, ..config })?;
//! resumed.load_state_dict(&params, &state)?;
//! # Ok::<(), stograd_nn::Error>(())
//! ```

mod adam;
mod group;
mod keys;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamConfig, AdamW};
pub use schedule::Schedule;
pub use sgd::{Sgd, SgdConfig};

use stograd::{Gradients, Params, Scalar};

use crate::{Result, StateDict};

/// Parameters with at least this many elements are updated on rayon's thread pool, smaller
/// ones on the calling thread. The engine's elementwise ops use the same threshold.
pub const PARALLEL_CHUNK: usize = 1 << 15;

/// What every optimizer does: update parameters from their gradients, expose the learning
/// rate to a schedule, and save and restore its state.
///
/// The trait is dyn-compatible, so a program can choose its optimizer at run time
/// (`Box<dyn Optimizer<f32>>`).
///
/// PyTorch equivalent: `torch.optim.Optimizer` (`step`, `param_groups[i]["lr"]`,
/// `state_dict`, `load_state_dict`).
///
/// ```
/// use stograd_nn::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
///
/// let use_adam = true;
/// let mut opt: Box<dyn Optimizer<f32>> = if use_adam {
///     Box::new(Adam::new(AdamConfig::default())?)
/// } else {
///     Box::new(Sgd::new(SgdConfig::default())?)
/// };
/// opt.set_lr(5e-4);
/// assert_eq!(opt.lr(), 5e-4);
/// # Ok::<(), stograd_nn::Error>(())
/// ```
pub trait Optimizer<F: Scalar> {
    /// Updates every parameter that has a gradient in `grads` and is not frozen, in place
    /// (drop the tape first, so that no tape shares the arrays). Parameters without a
    /// gradient keep their value and their state.
    ///
    /// # Panics
    /// If a gradient's shape differs from its parameter's, if `grads` has a gradient for a
    /// parameter `params` does not hold, or if the optimizer's state for a parameter has a
    /// shape other than the parameter's (state from another store).
    fn step(&mut self, params: &mut Params<F>, grads: &Gradients<F>);

    /// The base learning rate of the default group: its `lr` setting, which
    /// [`lr_factor`](Self::lr_factor) scales.
    fn base_lr(&self) -> f64;

    /// The factor every group's base learning rate is multiplied by (1 until set).
    fn lr_factor(&self) -> f64;

    /// Sets the factor every group's base learning rate is multiplied by, as a schedule does
    /// each epoch or step ([`Schedule::factor`]): a group with base lr `γ_g` then steps with
    /// `γ_g · factor`.
    ///
    /// # Panics
    /// If `factor` is negative, infinite or NaN.
    fn set_lr_factor(&mut self, factor: f64);

    /// The learning rate the default group steps with now: `base_lr · lr_factor`.
    fn lr(&self) -> f64 {
        self.base_lr() * self.lr_factor()
    }

    /// Sets the default group's current learning rate to `lr`, and every other group's in
    /// proportion to its base lr: the factor becomes `lr / base_lr`.
    ///
    /// # Panics
    /// If `lr` is negative, infinite or NaN, or if the default group's base lr is 0 and
    /// `lr` is not.
    fn set_lr(&mut self, lr: f64);

    /// The state a resumed run needs, keyed by parameter name: per-parameter arrays as
    /// `"{kind}.{name}"` (`"exp_avg.encoder.fc1.weight"`, `"momentum_buffer.…"`), per-parameter
    /// step counts as values `"step.{name}"`, and the value `"lr_factor"`. Parameters that
    /// have no state yet (never stepped) have no entries.
    fn state_dict(&self, params: &Params<F>) -> StateDict<F>;

    /// Restores the state saved by [`state_dict`](Self::state_dict) for the parameters of
    /// `params`, matched by name; parameters without entries start afresh. The optimizer
    /// must have the same settings (groups, momentum, amsgrad) as the one that saved it.
    /// On error the optimizer is unchanged.
    ///
    /// # Errors
    /// - [`stograd::Error::UnknownParam`] naming the first key that is missing (a parameter
    ///   with some of its entries but not all, or no `"lr_factor"`), then the first key left
    ///   over: the parameter's name when `params` does not hold it, the whole key when the
    ///   kind is unknown or the parameter's group keeps no such state.
    /// - [`stograd::Error::ShapeMismatch`] when an array's shape differs from its
    ///   parameter's.
    /// - [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a step count that is
    ///   not a positive integer, or a negative or non-finite `"lr_factor"`.
    fn load_state_dict(&mut self, params: &Params<F>, state: &StateDict<F>) -> Result<()>;
}

/// `x`, or zero when `|x|` is below the smallest normal number, so that no subnormal enters
/// the next step. NaN passes through. Compiles to a compare and a select.
#[inline(always)]
fn flush<F: Scalar>(x: F) -> F {
    if x.abs() < F::min_positive_value() {
        F::zero()
    } else {
        x
    }
}

/// Panics unless the gradient has the parameter's shape.
#[track_caller]
fn check_shape(name: &str, what: &str, param: &[usize], other: &[usize]) {
    assert!(
        param == other,
        "optimizer step: the {what} of parameter {name:?} has shape {other:?}, the parameter \
         {param:?}"
    );
}

/// Runs the closure over the `Zip` on rayon's pool when the arrays have at least
/// [`PARALLEL_CHUNK`] elements, on this thread otherwise.
macro_rules! for_each_element {
    ($len:expr, $zip:expr, $f:expr) => {{
        let len: usize = $len;
        let zip = $zip;
        let f = $f;
        if len >= $crate::optim::PARALLEL_CHUNK {
            zip.par_for_each(f)
        } else {
            zip.for_each(f)
        }
    }};
}
use for_each_element;
