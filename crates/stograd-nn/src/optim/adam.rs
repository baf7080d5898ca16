//! Adam with L2 weight decay, AdamW with decoupled weight decay, both optionally AMSGrad.

use ndarray::{ArrayD, Zip};
use stograd::{Gradients, Params, Scalar};

use super::group::{GroupConfig, Groups, invalid};
use super::keys::{self, Reader};
use super::{Optimizer, check_shape, flush, for_each_element};
use crate::{Result, StateDict};

/// The settings of [`Adam`] and [`AdamW`], for the whole optimizer or one group. The
/// defaults are PyTorch's `Adam` defaults; [`AdamConfig::adamw`] gives `AdamW`'s.
///
/// # Example
/// ```
/// use stograd_nn::optim::AdamConfig;
/// let config = AdamConfig { lr: 3e-4, amsgrad: true, ..AdamConfig::default() };
/// assert_eq!(config.betas, (0.9, 0.999));
/// assert_eq!(AdamConfig::adamw().weight_decay, 1e-2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// The learning rate γ, non-negative and finite.
    pub lr: f64,
    /// The decay rates `(β₁, β₂)` of the first and second moments, each in `[0, 1)`.
    pub betas: (f64, f64),
    /// The term ε added to the denominator after the square root, positive and finite.
    pub eps: f64,
    /// The weight decay λ, non-negative and finite: an L2 penalty `λθ` added to the gradient
    /// in [`Adam`], the decoupled shrink `θ ← θ − γλθ` in [`AdamW`].
    pub weight_decay: f64,
    /// AMSGrad: divide by the running maximum of the second moment.
    pub amsgrad: bool,
    /// Ascend the objective instead of descending it.
    pub maximize: bool,
}

impl Default for AdamConfig {
    /// PyTorch's `Adam` defaults: `lr = 1e-3`, `betas = (0.9, 0.999)`, `eps = 1e-8`, no
    /// weight decay, no AMSGrad.
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
            maximize: false,
        }
    }
}

impl AdamConfig {
    /// PyTorch's `AdamW` defaults: those of [`Default`] with `weight_decay = 1e-2`.
    pub fn adamw() -> Self {
        AdamConfig {
            weight_decay: 1e-2,
            ..AdamConfig::default()
        }
    }
}

impl GroupConfig for AdamConfig {
    fn lr(&self) -> f64 {
        self.lr
    }

    fn validate(&self) -> Result<()> {
        let non_negative = |x: f64| x >= 0.0 && x.is_finite();
        if !non_negative(self.lr) {
            return invalid("lr", "non-negative and finite", self.lr);
        }
        if !(0.0..1.0).contains(&self.betas.0) {
            return invalid("beta1", "in [0, 1)", self.betas.0);
        }
        if !(0.0..1.0).contains(&self.betas.1) {
            return invalid("beta2", "in [0, 1)", self.betas.1);
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return invalid("eps", "positive and finite", self.eps);
        }
        if !non_negative(self.weight_decay) {
            return invalid("weight_decay", "non-negative and finite", self.weight_decay);
        }
        Ok(())
    }
}

/// Adam: adaptive moment estimation, with weight decay as an L2 penalty on the gradient.
///
/// For each parameter θ with a gradient, with learning rate γ, decay rates β₁, β₂, ε and
/// weight decay λ from the parameter's group, and the parameter's own step count t:
///
/// ```text
/// g ← ∇θ f          (−∇θ f with maximize)
/// g ← g + λθ
/// t ← t + 1
/// m ← β₁ m + (1 − β₁) g
/// v ← β₂ v + (1 − β₂) g²
/// m̂ ← m / (1 − β₁ᵗ)
/// v̂ ← v / (1 − β₂ᵗ)                          without amsgrad
/// v_max ← max(v_max, v),  v̂ ← v_max / (1 − β₂ᵗ)   with amsgrad
/// θ ← θ − γ m̂ / (√v̂ + ε)
/// ```
///
/// with `m = v = v_max = 0` and `t = 0` before a parameter's first step. As in PyTorch, the
/// last line is computed as `θ − (γ / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)`, so ε is
/// added after the square root and the bias corrections are two scalars per step.
///
/// **Subnormals.** The update is one pass over θ, g, m, v (and v_max). A moment whose
/// magnitude falls below the smallest normal number (`F::MIN_POSITIVE`) is set to zero. The
/// moments of a weight whose input is almost always zero (a border pixel) decay
/// geometrically and would otherwise become subnormal, which made a step 9× slower in a
/// measurement. What is flushed does not move a parameter. A first moment below
/// `MIN_POSITIVE` moves θ by at most `γ · MIN_POSITIVE / ((1 − β₁ᵗ) ε)`: with f32 and the
/// default β₁ and ε, `γ · 1.2e-29`, below half an ulp of any |θ| above `γ · 4e-22`. A second
/// moment below `MIN_POSITIVE` changes `√v̂` by at most `√(MIN_POSITIVE / (1 − β₂))`: with
/// f32 and the default β₂, `3.4e-18`, which changes the denominator by less than its own
/// rounding error for any ε above `1e-10`. Both bounds are far smaller in f64.
///
/// # Example
/// ```
/// use ndarray::{array, ArrayD};
/// use stograd::{Params, Tape};
/// use stograd_nn::optim::{Adam, AdamConfig, Optimizer};
///
/// let mut params = Params::<f32>::new();
/// let w = params.insert("w", ArrayD::zeros(vec![2]))?;
/// let mut opt = Adam::new(AdamConfig { lr: 0.05, ..AdamConfig::default() })?;
/// for _ in 0..500 {
///     let grads = {
///         let tape = Tape::with_params(&params);
///         let loss = (tape.param(w) - tape.constant(array![1.0f32, -2.0])).square().sum();
///         loss.backward()?
///     };
///     opt.step(&mut params, &grads);
/// }
/// assert!((params.get(w)[1] + 2.0).abs() < 1e-2);
/// # Ok::<(), stograd_nn::Error>(())
/// ```
///
/// # Errors
/// [`Adam::new`] and [`Adam::group`] return [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a setting out of
/// range, naming it and its value.
///
/// PyTorch equivalent: `torch.optim.Adam(params, lr, betas, eps, weight_decay, amsgrad,
/// maximize=...)`.
#[derive(Clone, Debug)]
pub struct Adam<F: Scalar>(Core<F>);

/// AdamW: Adam with decoupled weight decay (Loshchilov & Hutter), which shrinks the
/// parameter directly instead of adding `λθ` to the gradient.
///
/// For each parameter θ with a gradient, with the settings of its group and its own step
/// count t:
///
/// ```text
/// g ← ∇θ f          (−∇θ f with maximize)
/// θ ← θ − γλθ
/// t ← t + 1
/// m ← β₁ m + (1 − β₁) g
/// v ← β₂ v + (1 − β₂) g²
/// m̂ ← m / (1 − β₁ᵗ)
/// v̂ ← v / (1 − β₂ᵗ)                          without amsgrad
/// v_max ← max(v_max, v),  v̂ ← v_max / (1 − β₂ᵗ)   with amsgrad
/// θ ← θ − γ m̂ / (√v̂ + ε)
/// ```
///
/// The shrink uses the current learning rate γ (the group's lr times the factor), as
/// PyTorch's does. Everything else, the one-pass update and the flushing of subnormal
/// moments included, is as in [`Adam`]. [`AdamConfig::adamw`] gives PyTorch's defaults
/// (`weight_decay = 1e-2`).
///
/// # Example
/// ```
/// use ndarray::{array, ArrayD};
/// use stograd::{Params, Tape};
/// use stograd_nn::optim::{AdamConfig, AdamW, Optimizer};
///
/// let mut params = Params::<f32>::new();
/// let w = params.insert("w", ArrayD::zeros(vec![2]))?;
/// let mut opt = AdamW::new(AdamConfig { lr: 0.05, ..AdamConfig::adamw() })?;
/// for _ in 0..500 {
///     let grads = {
///         let tape = Tape::with_params(&params);
///         let loss = (tape.param(w) - tape.constant(array![1.0f32, -2.0])).square().sum();
///         loss.backward()?
///     };
///     opt.step(&mut params, &grads);
/// }
/// assert!((params.get(w)[0] - 1.0).abs() < 2e-2);
/// # Ok::<(), stograd_nn::Error>(())
/// ```
///
/// # Errors
/// [`AdamW::new`] and [`AdamW::group`] return [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a setting out
/// of range, naming it and its value.
///
/// PyTorch equivalent: `torch.optim.AdamW(params, lr, betas, eps, weight_decay, amsgrad,
/// maximize=...)`.
#[derive(Clone, Debug)]
pub struct AdamW<F: Scalar>(Core<F>);

macro_rules! adam_api {
    ($ty:ident, $decoupled:expr) => {
        impl<F: Scalar> $ty<F> {
            /// An optimizer with `config` for every parameter not in a
            /// [`group`](Self::group).
            ///
            /// # Errors
            /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) naming the first setting out of range: `lr` or
            /// `weight_decay` negative or not finite, `beta1` or `beta2` outside `[0, 1)`,
            /// `eps` not positive and finite.
            pub fn new(config: AdamConfig) -> Result<Self> {
                Ok($ty(Core {
                    groups: Groups::new(config)?,
                    state: Vec::new(),
                    decoupled: $decoupled,
                }))
            }

            /// Gives the parameters under `prefix` (the parameter of that name and those
            /// whose name starts with `prefix.`) the settings `config`; the longest matching
            /// prefix wins. Calling it again with the same prefix replaces that group's
            /// settings.
            ///
            /// # Errors
            /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) as [`new`](Self::new);
            /// [`stograd::Error::InvalidParamName`] for an empty or malformed prefix.
            pub fn group(mut self, prefix: &str, config: AdamConfig) -> Result<Self> {
                self.0.groups.add(prefix, config)?;
                Ok(self)
            }

            /// The settings of the parameter called `name`: its group's, or the defaults.
            /// Its current learning rate is their `lr` times
            /// [`lr_factor`](Optimizer::lr_factor).
            pub fn config(&self, name: &str) -> &AdamConfig {
                self.0.groups.resolve(name)
            }
        }

        impl<F: Scalar> Optimizer<F> for $ty<F> {
            fn step(&mut self, params: &mut Params<F>, grads: &Gradients<F>) {
                self.0.step(params, grads);
            }
            fn base_lr(&self) -> f64 {
                self.0.groups.base_lr()
            }
            fn lr_factor(&self) -> f64 {
                self.0.groups.lr_factor()
            }
            fn set_lr_factor(&mut self, factor: f64) {
                self.0.groups.set_lr_factor(factor);
            }
            fn set_lr(&mut self, lr: f64) {
                self.0.groups.set_lr(lr);
            }
            fn state_dict(&self, params: &Params<F>) -> StateDict<F> {
                self.0.state_dict(params)
            }
            fn load_state_dict(&mut self, params: &Params<F>, state: &StateDict<F>) -> Result<()> {
                self.0.load_state_dict(params, state)
            }
        }
    };
}

adam_api!(Adam, false);
adam_api!(AdamW, true);

/// The state kinds, as they appear in state-dict keys.
const KINDS: [&str; 4] = ["exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"];

/// What Adam and AdamW share: everything but where the weight decay goes.
#[derive(Clone, Debug)]
struct Core<F: Scalar> {
    groups: Groups<AdamConfig>,
    /// Moments, by parameter index.
    state: Vec<Option<Moments<F>>>,
    /// AdamW's decoupled weight decay, or Adam's L2 penalty.
    decoupled: bool,
}

/// One parameter's state.
#[derive(Clone, Debug)]
struct Moments<F> {
    step: u64,
    exp_avg: ArrayD<F>,
    exp_avg_sq: ArrayD<F>,
    max_exp_avg_sq: Option<ArrayD<F>>,
}

impl<F: Scalar> Core<F> {
    fn step(&mut self, params: &mut Params<F>, grads: &Gradients<F>) {
        if self.state.len() < params.len() {
            self.state.resize_with(params.len(), || None);
        }
        for (id, grad) in grads.params() {
            if params.is_frozen(id) {
                continue;
            }
            let name = params.name(id);
            let config = *self.groups.resolve(name);
            let shape = params.get(id).shape();
            check_shape(name, "gradient", shape, grad.shape());
            let moments = self.state[id.index()].get_or_insert_with(|| Moments {
                step: 0,
                exp_avg: ArrayD::zeros(shape),
                exp_avg_sq: ArrayD::zeros(shape),
                max_exp_avg_sq: None,
            });
            check_shape(name, "exp_avg", shape, moments.exp_avg.shape());
            check_shape(name, "exp_avg_sq", shape, moments.exp_avg_sq.shape());
            if config.amsgrad && moments.max_exp_avg_sq.is_none() {
                moments.max_exp_avg_sq = Some(ArrayD::zeros(shape));
            }
            if let Some(max) = &moments.max_exp_avg_sq {
                check_shape(name, "max_exp_avg_sq", shape, max.shape());
            }
            moments.step += 1;
            let lr = config.lr * self.groups.lr_factor();
            let k = Constants::new(&config, lr, moments.step, self.decoupled);
            update::<F, true>(params.get_mut(id), grad, moments, config.amsgrad, k);
        }
    }

    fn state_dict(&self, params: &Params<F>) -> StateDict<F> {
        let mut state = StateDict::default();
        for (id, name, _) in params.iter() {
            let Some(Some(m)) = self.state.get(id.index()) else {
                continue;
            };
            let tensors = &mut state.tensors;
            tensors.insert(keys::key("exp_avg", name), m.exp_avg.clone());
            tensors.insert(keys::key("exp_avg_sq", name), m.exp_avg_sq.clone());
            if let Some(max) = &m.max_exp_avg_sq {
                tensors.insert(keys::key("max_exp_avg_sq", name), max.clone());
            }
            state.values.insert(keys::key("step", name), m.step as f64);
        }
        let factor = self.groups.lr_factor();
        state.values.insert(keys::LR_FACTOR.to_owned(), factor);
        state
    }

    fn load_state_dict(&mut self, params: &Params<F>, state: &StateDict<F>) -> Result<()> {
        let mut reader = Reader::new(state);
        let mut loaded = Vec::with_capacity(params.len());
        for (_, name, value) in params.iter() {
            let shape = value.shape();
            let what = "exp_avg in the optimizer state";
            let exp_avg = reader.tensor("exp_avg", what, name, shape)?;
            let what = "exp_avg_sq in the optimizer state";
            let exp_avg_sq = reader.tensor("exp_avg_sq", what, name, shape)?;
            let step = reader.step(name)?;
            let max = if self.groups.resolve(name).amsgrad {
                let what = "max_exp_avg_sq in the optimizer state";
                reader.tensor("max_exp_avg_sq", what, name, shape)?
            } else {
                None
            };
            let moments = match (step, exp_avg, exp_avg_sq, max) {
                (None, None, None, None) => None,
                (Some(step), Some(exp_avg), Some(exp_avg_sq), max) => {
                    if self.groups.resolve(name).amsgrad && max.is_none() {
                        return Err(keys::missing(keys::key("max_exp_avg_sq", name)));
                    }
                    Some(Moments {
                        step,
                        exp_avg,
                        exp_avg_sq,
                        max_exp_avg_sq: max,
                    })
                }
                (step, exp_avg, exp_avg_sq, _) => {
                    let kind = if exp_avg.is_none() {
                        "exp_avg"
                    } else if exp_avg_sq.is_none() {
                        "exp_avg_sq"
                    } else {
                        debug_assert!(step.is_none());
                        "step"
                    };
                    return Err(keys::missing(keys::key(kind, name)));
                }
            };
            loaded.push(moments);
        }
        let factor = reader.lr_factor()?;
        reader.finish(params, &KINDS)?;
        self.state = loaded;
        self.groups.set_lr_factor(factor);
        Ok(())
    }
}

/// The scalars of one parameter's step, in `F`.
#[derive(Clone, Copy)]
struct Constants<F> {
    /// −1 with maximize, else 1.
    sign: F,
    /// Adam's L2 penalty λ (0 in AdamW).
    l2: F,
    /// AdamW's shrink `1 − γλ` (1 in Adam).
    shrink: F,
    beta1: F,
    one_minus_beta1: F,
    beta2: F,
    one_minus_beta2: F,
    /// `γ / (1 − β₁ᵗ)`.
    step_size: F,
    /// `√(1 − β₂ᵗ)`.
    sqrt_bias_correction2: F,
    eps: F,
}

impl<F: Scalar> Constants<F> {
    /// The bias corrections are computed in f64, as PyTorch computes them in Python floats.
    fn new(c: &AdamConfig, lr: f64, step: u64, decoupled: bool) -> Self {
        let (beta1, beta2) = c.betas;
        let t = step as f64;
        let bias_correction1 = 1.0 - beta1.powf(t);
        let bias_correction2 = 1.0 - beta2.powf(t);
        let (l2, shrink) = if decoupled {
            (0.0, 1.0 - lr * c.weight_decay)
        } else {
            (c.weight_decay, 1.0)
        };
        Constants {
            sign: if c.maximize { -F::one() } else { F::one() },
            l2: F::from_f64(l2),
            shrink: F::from_f64(shrink),
            beta1: F::from_f64(beta1),
            one_minus_beta1: F::from_f64(1.0 - beta1),
            beta2: F::from_f64(beta2),
            one_minus_beta2: F::from_f64(1.0 - beta2),
            step_size: F::from_f64(lr / bias_correction1),
            sqrt_bias_correction2: F::from_f64(bias_correction2.sqrt()),
            eps: F::from_f64(c.eps),
        }
    }
}

/// One Adam or AdamW step of one parameter, in one pass over its memory. `FLUSH` is always
/// true but in a test, which runs the same arithmetic without the flush to show that the
/// flush changes no parameter.
fn update<F: Scalar, const FLUSH: bool>(
    param: &mut ArrayD<F>,
    grad: &ArrayD<F>,
    moments: &mut Moments<F>,
    amsgrad: bool,
    k: Constants<F>,
) {
    let fl = move |x: F| if FLUSH { flush(x) } else { x };
    // The moments' new values, shared by both arities below.
    let moments_of = move |p: F, g: F, m: F, v: F| {
        let g = k.sign * g + k.l2 * p;
        let m = fl(k.beta1 * m + k.one_minus_beta1 * g);
        let v = fl(k.beta2 * v + k.one_minus_beta2 * g * g);
        (m, v)
    };
    let apply = move |p: F, m: F, v_hat: F| {
        let denom = v_hat.sqrt() / k.sqrt_bias_correction2 + k.eps;
        p * k.shrink - k.step_size * m / denom
    };
    let len = param.len();
    let zip = Zip::from(param)
        .and(grad)
        .and(&mut moments.exp_avg)
        .and(&mut moments.exp_avg_sq);
    match (&mut moments.max_exp_avg_sq, amsgrad) {
        (Some(max), true) => for_each_element!(
            len,
            zip.and(max),
            move |p: &mut F, &g: &F, m: &mut F, v: &mut F, v_max: &mut F| {
                (*m, *v) = moments_of(*p, g, *m, *v);
                // NaN in v propagates, as in torch.maximum.
                *v_max = if *v_max >= *v { *v_max } else { *v };
                *p = apply(*p, *m, *v_max);
            }
        ),
        _ => for_each_element!(len, zip, move |p: &mut F, &g: &F, m: &mut F, v: &mut F| {
            (*m, *v) = moments_of(*p, g, *m, *v);
            *p = apply(*p, *m, *v);
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::num::FpCategory;

    use super::*;

    /// With a gradient that is non-zero for a few steps and zero after, the moments decay
    /// geometrically through the subnormal range: flushed, they end exactly 0, while the
    /// same arithmetic without the flush leaves subnormals, and the parameters of the two
    /// runs agree bit for bit at every step.
    fn moments_flush_to_zero<F: Scalar>(decoupled: bool) {
        let config = AdamConfig {
            lr: 1e-3,
            betas: (0.5, 0.6),
            weight_decay: if decoupled { 1e-2 } else { 0.0 },
            amsgrad: true,
            ..AdamConfig::default()
        };
        let grad0 = ArrayD::from_shape_vec(vec![3], vec![1.0, -0.5, 2.0])
            .unwrap()
            .mapv(F::from_f64);
        let zero = ArrayD::zeros(vec![3]);
        let start = ArrayD::from_shape_vec(vec![3], vec![0.5, -1.5, 3.0])
            .unwrap()
            .mapv(F::from_f64);
        let fresh = || Moments {
            step: 0,
            exp_avg: ArrayD::zeros(vec![3]),
            exp_avg_sq: ArrayD::zeros(vec![3]),
            max_exp_avg_sq: Some(ArrayD::zeros(vec![3])),
        };
        let (mut p_flush, mut p_raw) = (start.clone(), start);
        let (mut m_flush, mut m_raw) = (fresh(), fresh());
        let mut saw_subnormal = false;
        // 0.6ᵗ passes below f64's smallest subnormal (5e-324) by t ≈ 1460.
        for t in 1..=2000u64 {
            let grad = if t <= 3 { &grad0 } else { &zero };
            let k = Constants::new(&config, config.lr, t, decoupled);
            update::<F, true>(&mut p_flush, grad, &mut m_flush, true, k);
            update::<F, false>(&mut p_raw, grad, &mut m_raw, true, k);
            assert_eq!(p_flush, p_raw, "step {t}");
            let subnormal = |a: &ArrayD<F>| a.iter().any(|x| x.classify() == FpCategory::Subnormal);
            assert!(!subnormal(&m_flush.exp_avg) && !subnormal(&m_flush.exp_avg_sq));
            saw_subnormal |= subnormal(&m_raw.exp_avg) || subnormal(&m_raw.exp_avg_sq);
        }
        assert!(saw_subnormal, "the unflushed run never went subnormal");
        assert!(m_flush.exp_avg.iter().all(|&x| x == F::zero()));
        assert!(m_flush.exp_avg_sq.iter().all(|&x| x == F::zero()));
        // v_max keeps the largest second moment, which is normal.
        assert_eq!(m_flush.max_exp_avg_sq, m_raw.max_exp_avg_sq);
    }

    #[test]
    fn moments_flush_to_zero_f32() {
        moments_flush_to_zero::<f32>(false);
        moments_flush_to_zero::<f32>(true);
    }

    #[test]
    fn moments_flush_to_zero_f64() {
        moments_flush_to_zero::<f64>(false);
        moments_flush_to_zero::<f64>(true);
    }
}
