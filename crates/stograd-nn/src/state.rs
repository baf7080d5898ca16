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
