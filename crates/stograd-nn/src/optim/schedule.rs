//! Learning-rate schedules as pure functions of the epoch (or step) index.

use std::f64::consts::PI;

use crate::{Error, Result};

/// A learning-rate schedule: the factor by which every group's base learning rate is
/// multiplied at epoch (or step) `t`, `t = 0, 1, …`. It is a pure function of `t`, so a run
/// resumed at epoch `k` gets the same learning rate as an uninterrupted one.
///
/// The decays, each the closed form of the PyTorch scheduler named beside it:
///
/// | constructor | factor at `t` | PyTorch |
/// |---|---|---|
/// | [`constant`](Self::constant) | `1` | |
/// | [`step`](Self::step)`(s, γ)` | `γ^⌊t / s⌋` | `StepLR` |
/// | [`exponential`](Self::exponential)`(γ)` | `γᵗ` | `ExponentialLR` |
/// | [`cosine`](Self::cosine)`(T, m)` | `m + (1−m)(1+cos(π min(t,T)/T))/2` | `CosineAnnealingLR` |
///
/// and optionally a linear warm-up before the decay, [`with_warmup`](Self::with_warmup)`(W,
/// s₀)`: the factor is `s₀ + (1 − s₀) t / W` for `t < W` (PyTorch's `LinearLR(start_factor
/// = s₀, total_iters = W)`), then the decay's factor at `t − W` (as PyTorch's `SequentialLR`
/// with the milestone `W`). The two meet at `t = W` with factor 1.
///
/// The cosine's minimum is a fraction `m` of each group's base learning rate, so every group
/// is scaled alike; for a single group this is PyTorch's `eta_min = m · lr`. Past `T` the
/// factor stays at `m`, where PyTorch's closed form would rise again along the cosine.
///
/// # Example
/// ```
/// use ndarray::{array, ArrayD};
/// use stograd::{Params, Tape};
/// use stograd_nn::optim::{Optimizer, Schedule, Sgd, SgdConfig};
///
/// let schedule = Schedule::cosine(90, 0.01)?.with_warmup(10, 0.1)?;
/// assert_eq!(schedule.factor(0), 0.1);
/// assert_eq!(schedule.factor(10), 1.0);
/// assert!((schedule.factor(55) - (0.01 + 0.99 * 0.5)).abs() < 1e-15); // half-way down
/// assert_eq!(schedule.factor(100), 0.01);
///
/// let mut params = Params::<f64>::new();
/// let w = params.insert("w", ArrayD::zeros(vec![2]))?;
/// let mut opt = Sgd::new(SgdConfig { lr: 0.2, ..SgdConfig::default() })?;
/// for epoch in 0..100 {
///     opt.set_lr_factor(schedule.factor(epoch));
///     let grads = {
///         let tape = Tape::with_params(&params);
///         let loss = (tape.param(w) - tape.constant(array![1.0, -2.0])).square().sum();
///         loss.backward()?
///     };
///     opt.step(&mut params, &grads);
/// }
/// assert!((opt.lr() - 0.2 * schedule.factor(99)).abs() < 1e-15);
/// assert!((params.get(w)[0] - 1.0).abs() < 1e-6);
/// # Ok::<(), stograd_nn::Error>(())
/// ```
///
/// # Errors
/// The constructors return [`Error::InvalidArgument`] for a setting out of range, naming it
/// and its value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    warmup: Option<Warmup>,
    decay: Decay,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Warmup {
    steps: usize,
    start_factor: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Decay {
    Constant,
    Step { step_size: usize, gamma: f64 },
    Exponential { gamma: f64 },
    Cosine { t_max: usize, min_factor: f64 },
}

impl Schedule {
    /// The factor 1 at every `t`.
    pub fn constant() -> Self {
        Schedule {
            warmup: None,
            decay: Decay::Constant,
        }
    }

    /// `γ^⌊t / step_size⌋`: the learning rate is multiplied by `gamma` every `step_size`
    /// epochs.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `step_size` is 0 or `gamma` is not positive and
    /// finite.
    ///
    /// PyTorch equivalent: `StepLR(optimizer, step_size, gamma)`.
    pub fn step(step_size: usize, gamma: f64) -> Result<Self> {
        positive_count("step_size", step_size)?;
        positive("gamma", gamma)?;
        Ok(Self::decay(Decay::Step { step_size, gamma }))
    }

    /// `γᵗ`: the learning rate is multiplied by `gamma` every epoch.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `gamma` is not positive and finite.
    ///
    /// PyTorch equivalent: `ExponentialLR(optimizer, gamma)`.
    pub fn exponential(gamma: f64) -> Result<Self> {
        positive("gamma", gamma)?;
        Ok(Self::decay(Decay::Exponential { gamma }))
    }

    /// `m + (1 − m)(1 + cos(π t / T)) / 2` for `t ≤ T`, then `m`: half a cosine from 1 down
    /// to `min_factor = m` over `t_max = T` epochs.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `t_max` is 0 or `min_factor` is outside `[0, 1]`.
    ///
    /// PyTorch equivalent: `CosineAnnealingLR(optimizer, T_max, eta_min = min_factor · lr)`
    /// up to `T_max`.
    pub fn cosine(t_max: usize, min_factor: f64) -> Result<Self> {
        positive_count("t_max", t_max)?;
        if !(0.0..=1.0).contains(&min_factor) {
            return Err(Error::InvalidArgument {
                name: "min_factor",
                constraint: "in [0, 1]",
                value: min_factor,
            });
        }
        Ok(Self::decay(Decay::Cosine { t_max, min_factor }))
    }

    /// The same schedule after a linear warm-up over `steps` epochs from `start_factor` to 1:
    /// the factor is `start_factor + (1 − start_factor) t / steps` for `t < steps`, then the
    /// decay's at `t − steps`. It replaces any earlier warm-up.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `steps` is 0 or `start_factor` is outside `(0, 1]`.
    ///
    /// PyTorch equivalent: `SequentialLR(optimizer, [LinearLR(optimizer, start_factor,
    /// total_iters = steps), decay], milestones = [steps])`.
    pub fn with_warmup(self, steps: usize, start_factor: f64) -> Result<Self> {
        positive_count("warmup steps", steps)?;
        if !(start_factor > 0.0 && start_factor <= 1.0) {
            return Err(Error::InvalidArgument {
                name: "start_factor",
                constraint: "in (0, 1]",
                value: start_factor,
            });
        }
        Ok(Schedule {
            warmup: Some(Warmup {
                steps,
                start_factor,
            }),
            ..self
        })
    }

    /// The factor at epoch (or step) `t`, counted from 0.
    pub fn factor(&self, t: usize) -> f64 {
        let t = match self.warmup {
            Some(Warmup {
                steps,
                start_factor,
            }) if t < steps => {
                return start_factor + (1.0 - start_factor) * t as f64 / steps as f64;
            }
            Some(Warmup { steps, .. }) => t - steps,
            None => t,
        };
        match self.decay {
            Decay::Constant => 1.0,
            Decay::Step { step_size, gamma } => gamma.powf((t / step_size) as f64),
            Decay::Exponential { gamma } => gamma.powf(t as f64),
            Decay::Cosine { t_max, min_factor } => {
                let progress = t.min(t_max) as f64 / t_max as f64;
                min_factor + (1.0 - min_factor) * (1.0 + (PI * progress).cos()) / 2.0
            }
        }
    }

    /// The learning rate at epoch `t` of a group whose base learning rate is `base_lr`:
    /// `base_lr · factor(t)`.
    pub fn lr(&self, base_lr: f64, t: usize) -> f64 {
        base_lr * self.factor(t)
    }

    fn decay(decay: Decay) -> Self {
        Schedule {
            warmup: None,
            decay,
        }
    }
}

fn positive_count(name: &'static str, n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::InvalidArgument {
            name,
            constraint: "at least 1",
            value: 0.0,
        });
    }
    Ok(())
}

fn positive(name: &'static str, x: f64) -> Result<()> {
    if !(x > 0.0 && x.is_finite()) {
        return Err(Error::InvalidArgument {
            name,
            constraint: "positive and finite",
            value: x,
        });
    }
    Ok(())
}
