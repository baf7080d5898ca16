//! Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight
//! decay.

use ndarray::{ArrayD, Zip};
use stograd::{Gradients, Params, Scalar};

use super::group::{GroupConfig, Groups, invalid};
use super::keys::{self, Reader};
use super::{Optimizer, check_shape, flush, for_each_element};
use crate::{Result, StateDict};

/// The settings of [`Sgd`], for the whole optimizer or one group. The defaults are
/// PyTorch's: `lr = 1e-3` and everything else off.
///
/// # Example
/// ```
/// use stograd_nn::optim::SgdConfig;
/// let config = SgdConfig { lr: 0.1, momentum: 0.9, nesterov: true, ..SgdConfig::default() };
/// assert_eq!(config.dampening, 0.0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// The learning rate γ, non-negative and finite.
    pub lr: f64,
    /// The momentum factor μ, non-negative and finite; 0 turns momentum (and its buffer) off.
    pub momentum: f64,
    /// The dampening τ of the gradient added to the momentum buffer, in `[0, 1]`.
    pub dampening: f64,
    /// The L2 penalty λ added to the gradient as `λθ`, non-negative and finite.
    pub weight_decay: f64,
    /// Nesterov momentum; it needs `momentum > 0` and `dampening = 0`.
    pub nesterov: bool,
    /// Ascend the objective instead of descending it.
    pub maximize: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            maximize: false,
        }
    }
}

impl GroupConfig for SgdConfig {
    fn lr(&self) -> f64 {
        self.lr
    }

    fn validate(&self) -> Result<()> {
        let non_negative = |x: f64| x >= 0.0 && x.is_finite();
        if !non_negative(self.lr) {
            return invalid("lr", "non-negative and finite", self.lr);
        }
        if !non_negative(self.momentum) {
            return invalid("momentum", "non-negative and finite", self.momentum);
        }
        if !(0.0..=1.0).contains(&self.dampening) {
            return invalid("dampening", "in [0, 1]", self.dampening);
        }
        if !non_negative(self.weight_decay) {
            return invalid("weight_decay", "non-negative and finite", self.weight_decay);
        }
        if self.nesterov && self.momentum == 0.0 {
            return invalid("momentum", "positive with nesterov", self.momentum);
        }
        if self.nesterov && self.dampening != 0.0 {
            return invalid("dampening", "zero with nesterov", self.dampening);
        }
        Ok(())
    }
}

/// Stochastic gradient descent, optionally with momentum (PyTorch's variant) and Nesterov
/// momentum.
///
/// For each parameter θ with a gradient, with learning rate γ, momentum μ, dampening τ and
/// weight decay λ from the parameter's group:
///
/// ```text
/// g ← ∇θ f          (−∇θ f with maximize)
/// g ← g + λθ
/// if μ ≠ 0:
///     b ← g                    on the parameter's first step
///     b ← μ b + (1 − τ) g      on later steps
///     g ← g + μ b  with nesterov,  g ← b  without
/// θ ← θ − γ g
/// ```
///
/// PyTorch's momentum scales the step by γ after the buffer (`b ← μb + g`, `θ ← θ − γb`),
/// unlike Sutskever et al.'s `b ← μb + γg`; the two differ when γ changes during training.
/// `maximize` negates the gradient before the weight decay, as PyTorch's implementation
/// does (its documentation's algorithm box applies it at the end instead).
///
/// The update is one pass over θ, its gradient and its buffer. A buffer element whose
/// magnitude falls below the smallest normal number (`F::MIN_POSITIVE`) is set to zero, so
/// buffers that decay geometrically never become subnormal; the part flushed would move θ
/// by less than `γ · MIN_POSITIVE`, far below half an ulp of any parameter that is not itself
/// nearly subnormal.
///
/// # Example
/// ```
/// use ndarray::{array, ArrayD};
/// use stograd::{Params, Tape};
/// use stograd_nn::optim::{Optimizer, Sgd, SgdConfig};
///
/// let mut params = Params::<f64>::new();
/// let w = params.insert("w", ArrayD::zeros(vec![2]))?;
/// let mut opt = Sgd::new(SgdConfig { lr: 0.1, momentum: 0.9, ..SgdConfig::default() })?;
/// for _ in 0..500 {
///     let grads = {
///         let tape = Tape::with_params(&params);
///         let loss = (tape.param(w) - tape.constant(array![1.0, -2.0])).square().sum();
///         loss.backward()?
///     };
///     opt.step(&mut params, &grads);
/// }
/// assert!((params.get(w)[1] + 2.0).abs() < 1e-6);
/// # Ok::<(), stograd_nn::Error>(())
/// ```
///
/// # Errors
/// [`Sgd::new`] and [`Sgd::group`] return [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a setting out of
/// range, naming it and its value.
///
/// PyTorch equivalent: `torch.optim.SGD(params, lr, momentum, dampening, weight_decay,
/// nesterov, maximize=...)`.
#[derive(Clone, Debug)]
pub struct Sgd<F: Scalar> {
    groups: Groups<SgdConfig>,
    /// Momentum buffers, by parameter index.
    momentum_buffer: Vec<Option<ArrayD<F>>>,
}

impl<F: Scalar> Sgd<F> {
    /// An optimizer with `config` for every parameter not in a [`group`](Self::group).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) naming the first setting out of range: `lr`, `momentum`,
    /// `weight_decay` negative or not finite, `dampening` outside `[0, 1]`, or `nesterov`
    /// with zero momentum or non-zero dampening.
    pub fn new(config: SgdConfig) -> Result<Self> {
        Ok(Sgd {
            groups: Groups::new(config)?,
            momentum_buffer: Vec::new(),
        })
    }

    /// Gives the parameters under `prefix` (the parameter of that name and those whose name
    /// starts with `prefix.`) the settings `config`; the longest matching prefix wins.
    /// Calling it again with the same prefix replaces that group's settings.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) as [`Sgd::new`];
    /// [`stograd::Error::InvalidParamName`] for an empty or malformed prefix.
    pub fn group(mut self, prefix: &str, config: SgdConfig) -> Result<Self> {
        self.groups.add(prefix, config)?;
        Ok(self)
    }

    /// The settings of the parameter called `name`: its group's, or the defaults. Its
    /// current learning rate is their `lr` times [`lr_factor`](Optimizer::lr_factor).
    pub fn config(&self, name: &str) -> &SgdConfig {
        self.groups.resolve(name)
    }
}

impl<F: Scalar> Optimizer<F> for Sgd<F> {
    fn step(&mut self, params: &mut Params<F>, grads: &Gradients<F>) {
        if self.momentum_buffer.len() < params.len() {
            self.momentum_buffer.resize_with(params.len(), || None);
        }
        for (id, grad) in grads.params() {
            if params.is_frozen(id) {
                continue;
            }
            let name = params.name(id);
            let config = *self.groups.resolve(name);
            let lr = config.lr * self.groups.lr_factor();
            let shape = params.get(id).shape();
            check_shape(name, "gradient", shape, grad.shape());
            let buffer = &mut self.momentum_buffer[id.index()];
            if let Some(b) = buffer {
                check_shape(name, "momentum buffer", shape, b.shape());
            }
            let param = params.get_mut(id);
            if config.momentum == 0.0 {
                update_plain(param, grad, &config, lr);
                continue;
            }
            let first = buffer.is_none();
            let buffer = buffer.get_or_insert_with(|| ArrayD::zeros(param.raw_dim()));
            update_momentum(param, grad, buffer, &config, lr, first);
        }
    }

    fn base_lr(&self) -> f64 {
        self.groups.base_lr()
    }

    fn lr_factor(&self) -> f64 {
        self.groups.lr_factor()
    }

    fn set_lr_factor(&mut self, factor: f64) {
        self.groups.set_lr_factor(factor);
    }

    fn set_lr(&mut self, lr: f64) {
        self.groups.set_lr(lr);
    }

    fn state_dict(&self, params: &Params<F>) -> StateDict<F> {
        let mut state = StateDict::default();
        for (id, name, _) in params.iter() {
            if let Some(Some(buffer)) = self.momentum_buffer.get(id.index()) {
                let key = keys::key("momentum_buffer", name);
                state.tensors.insert(key, buffer.clone());
            }
        }
        let factor = self.groups.lr_factor();
        state.values.insert(keys::LR_FACTOR.to_owned(), factor);
        state
    }

    fn load_state_dict(&mut self, params: &Params<F>, state: &StateDict<F>) -> Result<()> {
        let mut reader = Reader::new(state);
        let mut buffers = Vec::with_capacity(params.len());
        for (_, name, value) in params.iter() {
            let buffer = if self.groups.resolve(name).momentum == 0.0 {
                None
            } else {
                let what = "momentum_buffer in the optimizer state";
                reader.tensor("momentum_buffer", what, name, value.shape())?
            };
            buffers.push(buffer);
        }
        let factor = reader.lr_factor()?;
        reader.finish(params, &["momentum_buffer"])?;
        self.momentum_buffer = buffers;
        self.groups.set_lr_factor(factor);
        Ok(())
    }
}

/// `θ ← θ − γ(±g + λθ)`, in one pass.
fn update_plain<F: Scalar>(param: &mut ArrayD<F>, grad: &ArrayD<F>, c: &SgdConfig, lr: f64) {
    let lr = F::from_f64(lr);
    let wd = F::from_f64(c.weight_decay);
    let sign = if c.maximize { -F::one() } else { F::one() };
    for_each_element!(
        param.len(),
        Zip::from(param).and(grad),
        move |p: &mut F, &g: &F| {
            let g = sign * g + wd * *p;
            *p -= lr * g;
        }
    );
}

/// The momentum update, in one pass over θ, g and b. On the first step the buffer is zero
/// and its coefficients `(0, 1)` make `b ← g`.
fn update_momentum<F: Scalar>(
    param: &mut ArrayD<F>,
    grad: &ArrayD<F>,
    buffer: &mut ArrayD<F>,
    c: &SgdConfig,
    lr: f64,
    first: bool,
) {
    let lr = F::from_f64(lr);
    let wd = F::from_f64(c.weight_decay);
    let sign = if c.maximize { -F::one() } else { F::one() };
    let mu = F::from_f64(c.momentum);
    let (keep, add) = if first {
        (F::zero(), F::one())
    } else {
        (mu, F::from_f64(1.0 - c.dampening))
    };
    let nesterov = c.nesterov;
    for_each_element!(
        param.len(),
        Zip::from(param).and(grad).and(buffer),
        move |p: &mut F, &g: &F, b: &mut F| {
            let g = sign * g + wd * *p;
            let buf = flush(keep * *b + add * g);
            *b = buf;
            let d = if nesterov { g + mu * buf } else { buf };
            *p -= lr * d;
        }
    );
}
