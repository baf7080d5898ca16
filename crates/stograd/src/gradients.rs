//! The result of a backward pass.

use ndarray::ArrayD;

use crate::{ParamId, Scalar, Var};

/// Where a parameter's gradient is stored.
enum ParamGrad<F> {
    /// The parameter was recorded once: its gradient is that leaf's.
    Leaf(u32),
    /// The parameter was recorded several times: the sum over its leaves.
    Summed(ArrayD<F>),
}

/// Gradients from [`Var::backward`], stored densely by node.
///
/// They do not borrow the tape, so the tape can be dropped before an optimizer takes
/// `&mut Params`.
pub struct Gradients<F: Scalar> {
    tape_id: u64,
    nodes: Vec<Option<ArrayD<F>>>,
    params: Vec<Option<ParamGrad<F>>>,
}

impl<F: Scalar> Drop for Gradients<F> {
    /// Hands the large gradients to the buffer pool for the next step.
    fn drop(&mut self) {
        for grad in self.nodes.drain(..).flatten() {
            crate::pool::give(grad);
        }
        for slot in self.params.drain(..) {
            if let Some(ParamGrad::Summed(sum)) = slot {
                crate::pool::give(sum);
            }
        }
    }
}

impl<F: Scalar> std::fmt::Debug for Gradients<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reached = self.nodes.iter().filter(|g| g.is_some()).count();
        f.debug_struct("Gradients")
            .field("nodes_with_gradient", &reached)
            .field(
                "params",
                &self
                    .params()
                    .map(|(id, g)| (id, g.shape().to_vec()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<F: Scalar> Gradients<F> {
    pub(crate) fn new(
        tape_id: u64,
        mut nodes: Vec<Option<ArrayD<F>>>,
        param_leaves: impl Iterator<Item = (ParamId, u32)>,
    ) -> Self {
        let mut params: Vec<Option<ParamGrad<F>>> = Vec::new();
        for (id, leaf) in param_leaves {
            if nodes[leaf as usize].is_none() {
                continue;
            }
            if params.len() <= id.index() {
                params.resize_with(id.index() + 1, || None);
            }
            let slot = &mut params[id.index()];
            *slot = Some(match slot.take() {
                None => ParamGrad::Leaf(leaf),
                Some(ParamGrad::Leaf(first)) => {
                    let mut sum = nodes[first as usize].clone().expect("checked above");
                    sum += nodes[leaf as usize].as_ref().expect("checked above");
                    ParamGrad::Summed(sum)
                }
                Some(ParamGrad::Summed(mut sum)) => {
                    sum += nodes[leaf as usize].as_ref().expect("checked above");
                    ParamGrad::Summed(sum)
                }
            });
        }
        nodes.shrink_to_fit();
        Gradients {
            tape_id,
            nodes,
            params,
        }
    }

    /// The gradient with respect to a parameter, summed over every time it was recorded on the
    /// tape; `None` when it was not recorded or no gradient reached it.
    pub fn param(&self, id: ParamId) -> Option<&ArrayD<F>> {
        match self.params.get(id.index())?.as_ref()? {
            ParamGrad::Leaf(leaf) => self.nodes[*leaf as usize].as_ref(),
            ParamGrad::Summed(sum) => Some(sum),
        }
    }

    /// Every parameter that received a gradient, with it.
    pub fn params(&self) -> impl Iterator<Item = (ParamId, &ArrayD<F>)> {
        (0..self.params.len()).filter_map(|i| {
            let id = ParamId(i as u32);
            self.param(id).map(|g| (id, g))
        })
    }

    /// The gradient with respect to any recorded value: a leaf from
    /// [`Tape::variable`](crate::Tape::variable) or an intermediate. `None` when no gradient
    /// reached it (it does not require one, or it lies after the value backward started from).
    ///
    /// # Panics
    /// If `var` was recorded on another tape.
    #[track_caller]
    pub fn wrt(&self, var: Var<'_, F>) -> Option<&ArrayD<F>> {
        assert_eq!(
            var.tape.id(),
            self.tape_id,
            "Gradients::wrt: the Var belongs to a different tape than these gradients"
        );
        self.nodes.get(var.index as usize)?.as_ref()
    }
}
