//! The state an object needs to resume exactly: named arrays and numbers.

use std::collections::BTreeMap;

use ndarray::ArrayD;
use stograd::Scalar;

/// Named arrays and numbers that restore an object's state, such as an optimizer's moments
/// and step counts. A checkpoint stores it beside the parameters.
///
/// Keys are dot-separated like parameter names; an optimizer keys its per-parameter arrays by
/// the parameter's name (`"exp_avg.encoder.fc1.weight"`), so the state survives a change in
/// parameter order and names what is missing.
///
/// ```
/// use stograd::ndarray::array;
/// use stograd::{Params, Tape};
/// use stograd_nn::optim::{Optimizer, Sgd, SgdConfig};
///
/// let mut params = Params::<f64>::new();
/// let w = params.insert("w", array![1.0].into_dyn())?;
/// let mut sgd = Sgd::new(SgdConfig { lr: 0.1, momentum: 0.9, ..SgdConfig::default() })?;
/// let grads = {
///     let tape = Tape::with_params(&params);
///     (tape.param(w) * 2.0).sum().backward()?
/// };
/// sgd.step(&mut params, &grads);
/// let state = sgd.state_dict(&params);
/// assert_eq!(state.tensors["momentum_buffer.w"], array![2.0].into_dyn());
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct StateDict<F: Scalar> {
    /// Arrays, by key.
    pub tensors: BTreeMap<String, ArrayD<F>>,
    /// Numbers (step counts, learning rates), by key. Integers up to 2⁵³ are exact.
    pub values: BTreeMap<String, f64>,
}

impl<F: Scalar> Default for StateDict<F> {
    fn default() -> Self {
        StateDict {
            tensors: BTreeMap::new(),
            values: BTreeMap::new(),
        }
    }
}
