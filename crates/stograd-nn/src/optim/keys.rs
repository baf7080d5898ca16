//! An optimizer's state in a [`StateDict`]: per-parameter entries keyed `"{kind}.{name}"`
//! (`"exp_avg.encoder.fc1.weight"`), read back with every mismatch named.

use std::collections::BTreeSet;

use ndarray::ArrayD;
use stograd::{Params, Scalar};

use crate::{Error, Result, StateDict};

/// The key of the value that holds the learning-rate factor.
pub(crate) const LR_FACTOR: &str = "lr_factor";

/// The key of a parameter's entry of `kind`.
pub(crate) fn key(kind: &str, name: &str) -> String {
    format!("{kind}.{name}")
}

/// Reads a state dict entry by entry, remembering which keys were used, so that
/// [`finish`](Self::finish) can reject the ones nothing asked for.
pub(crate) struct Reader<'a, F: Scalar> {
    state: &'a StateDict<F>,
    used: BTreeSet<String>,
}

impl<'a, F: Scalar> Reader<'a, F> {
    pub(crate) fn new(state: &'a StateDict<F>) -> Self {
        Reader {
            state,
            used: BTreeSet::new(),
        }
    }

    /// The array of `kind` for the parameter `name`, which must have `shape`; `None` when
    /// the dict has none.
    ///
    /// # Errors
    /// [`stograd::Error::ShapeMismatch`] when the shape differs.
    pub(crate) fn tensor(
        &mut self,
        kind: &'static str,
        what: &'static str,
        name: &str,
        shape: &[usize],
    ) -> Result<Option<ArrayD<F>>> {
        let key = key(kind, name);
        let Some(array) = self.state.tensors.get(&key) else {
            return Ok(None);
        };
        if array.shape() != shape {
            return Err(stograd::Error::ShapeMismatch {
                what,
                expected: shape.to_vec(),
                got: array.shape().to_vec(),
            }
            .into());
        }
        self.used.insert(key);
        Ok(Some(array.as_standard_layout().into_owned()))
    }

    /// The number at `key`; `None` when the dict has none.
    pub(crate) fn value(&mut self, key: String) -> Option<f64> {
        let value = *self.state.values.get(&key)?;
        self.used.insert(key);
        Some(value)
    }

    /// The step count of the parameter `name`, a positive integer; `None` when absent.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the value is not a positive integer.
    pub(crate) fn step(&mut self, name: &str) -> Result<Option<u64>> {
        let Some(step) = self.value(key("step", name)) else {
            return Ok(None);
        };
        if !(step >= 1.0 && step <= 2f64.powi(53) && step.fract() == 0.0) {
            return Err(Error::InvalidArgument {
                name: "step",
                constraint: "a positive integer in the optimizer state",
                value: step,
            });
        }
        Ok(Some(step as u64))
    }

    /// The learning-rate factor.
    ///
    /// # Errors
    /// [`stograd::Error::UnknownParam`] naming the key when it is missing,
    /// [`Error::InvalidArgument`] when it is negative or not finite.
    pub(crate) fn lr_factor(&mut self) -> Result<f64> {
        let factor = self
            .value(LR_FACTOR.to_owned())
            .ok_or_else(|| missing(LR_FACTOR.to_owned()))?;
        if !(factor >= 0.0 && factor.is_finite()) {
            return Err(Error::InvalidArgument {
                name: "lr_factor",
                constraint: "non-negative and finite",
                value: factor,
            });
        }
        Ok(factor)
    }

    /// Succeeds when every key of the dict was read.
    ///
    /// # Errors
    /// The first key left over (arrays before numbers, each in key order), as
    /// [`stograd::Error::UnknownParam`]: the
    /// parameter's name when the key is of a known `kind` for a parameter `params` does
    /// not hold, the whole key otherwise (an unknown kind, or state that the parameter's
    /// group does not keep, such as a momentum buffer without momentum).
    pub(crate) fn finish(self, params: &Params<F>, kinds: &[&str]) -> Result<()> {
        let state = self.state;
        let left = state
            .tensors
            .keys()
            .chain(state.values.keys())
            .find(|k| !self.used.contains(*k));
        let Some(key) = left else { return Ok(()) };
        let unknown = match key.split_once('.') {
            Some((kind, name)) if kinds.contains(&kind) && params.id(name).is_err() => name,
            _ => key,
        };
        Err(stograd::Error::UnknownParam(unknown.to_owned()).into())
    }
}

/// The error for a key the state needs and the dict lacks. There is no dedicated variant
/// yet; [`stograd::Error::UnknownParam`] names the key.
pub(crate) fn missing(key: String) -> Error {
    stograd::Error::UnknownParam(key).into()
}
