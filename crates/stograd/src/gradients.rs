//! The result of a backward pass.

use ndarray::{ArrayD, Zip};

use crate::ops::{Leaf, Op};
use crate::{ParamId, Scalar, Var};

/// Gradients from [`Var::backward`]: owned, keyed by [`ParamId`] for parameters, and by value
/// for the tape's variables and for intermediates asked for with [`Var::retain_grad`].
///
/// They do not borrow the tape, so the tape can be dropped before an optimizer takes
/// `&mut Params`. Parameter gradients from several tapes (micro-batches) add up with
/// [`accumulate`](Self::accumulate), and can be scaled and clipped before a step.
///
/// # Example
/// ```
/// use ndarray::array;
/// use stograd::{Params, Tape};
///
/// let mut params = Params::<f64>::new();
/// let w = params.insert("w", array![1.0, 2.0].into_dyn())?;
/// let mut total = None;
/// for x in [array![1.0, 0.0], array![0.0, 3.0]] {
///     let tape = Tape::with_params(&params);
///     let loss = (tape.param(w) * tape.constant(x)).sum();
///     let grads = loss.backward()?;
///     match &mut total {
///         None => total = Some(grads),
///         Some(t) => t.accumulate(&grads),
///     }
/// }
/// let mut total = total.unwrap();
/// assert_eq!(total.param(w).unwrap(), &array![1.0, 3.0].into_dyn());
/// let norm = total.clip_norm(1.0); // returns the norm before clipping
/// assert!((norm - 10f64.sqrt()).abs() < 1e-12);
/// assert!((total.global_norm() - 1.0).abs() < 1e-12);
/// # Ok::<(), stograd::Error>(())
/// ```
pub struct Gradients<F: Scalar> {
    tape_id: u64,
    /// By parameter index.
    params: Vec<Option<ArrayD<F>>>,
    /// Variables and retained intermediates, by node index, ascending.
    nodes: Vec<(u32, ArrayD<F>)>,
}

impl<F: Scalar> Drop for Gradients<F> {
    /// Hands the large gradients to the buffer pool for the next step.
    fn drop(&mut self) {
        for grad in self.params.drain(..).flatten() {
            crate::pool::give(grad);
        }
        for (_, grad) in self.nodes.drain(..) {
            crate::pool::give(grad);
        }
    }
}

impl<F: Scalar> std::fmt::Debug for Gradients<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gradients")
            .field(
                "params",
                &self
                    .params()
                    .map(|(id, g)| (id, g.shape().to_vec()))
                    .collect::<Vec<_>>(),
            )
            .field("values", &self.nodes.len())
            .finish()
    }
}

impl<F: Scalar> Gradients<F> {
    pub(crate) fn new(
        tape_id: u64,
        params: Vec<Option<ArrayD<F>>>,
        nodes: Vec<(u32, ArrayD<F>)>,
    ) -> Self {
        Gradients {
            tape_id,
            params,
            nodes,
        }
    }

    /// The gradient with respect to a parameter; `None` when it was not recorded on the
    /// tape, is frozen, or no gradient reached it.
    pub fn param(&self, id: ParamId) -> Option<&ArrayD<F>> {
        self.params.get(id.index())?.as_ref()
    }

    /// Mutable access to a parameter's gradient, to edit it before a step.
    pub fn param_mut(&mut self, id: ParamId) -> Option<&mut ArrayD<F>> {
        self.params.get_mut(id.index())?.as_mut()
    }

    /// Every parameter that received a gradient, with it, in parameter order.
    pub fn params(&self) -> impl Iterator<Item = (ParamId, &ArrayD<F>)> {
        self.params
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.as_ref().map(|g| (ParamId(i as u32), g)))
    }

    /// The gradient with respect to a variable ([`Tape::variable`](crate::Tape::variable)) or
    /// an intermediate marked with [`Var::retain_grad`] before backward; `None` when no
    /// gradient reached it.
    ///
    /// # Panics
    /// If `var` was recorded on another tape, or is an intermediate whose gradient was not
    /// retained (backward frees those as it goes).
    #[track_caller]
    pub fn wrt(&self, var: Var<'_, F>) -> Option<&ArrayD<F>> {
        assert_eq!(
            var.tape.id(),
            self.tape_id,
            "Gradients::wrt: the Var belongs to a different tape than these gradients (at {})",
            std::panic::Location::caller()
        );
        if let Ok(i) = self.nodes.binary_search_by_key(&var.index, |(n, _)| *n) {
            return Some(&self.nodes[i].1);
        }
        let kept = {
            let nodes = var.tape.nodes.borrow();
            let node = &nodes[var.index as usize];
            node.retain_grad || matches!(node.op, Op::Leaf(_))
        };
        assert!(
            kept,
            "Gradients::wrt: the gradient of this intermediate value was not kept; call \
             .retain_grad() on it before backward (at {})",
            std::panic::Location::caller()
        );
        if let Op::Leaf(Leaf::Param(id)) = var.tape.nodes.borrow()[var.index as usize].op {
            return self.param(id);
        }
        None
    }

    /// Adds another backward pass's parameter gradients to these (micro-batches, several
    /// losses); parameters only one of them has are kept or taken as they are.
    pub fn accumulate(&mut self, other: &Gradients<F>) {
        if self.params.len() < other.params.len() {
            self.params.resize_with(other.params.len(), || None);
        }
        for (mine, theirs) in self.params.iter_mut().zip(&other.params) {
            let Some(theirs) = theirs else { continue };
            match mine {
                Some(m) => {
                    debug_assert_eq!(m.shape(), theirs.shape());
                    let zip = Zip::from(m).and(theirs);
                    if theirs.len() >= crate::ops::PARALLEL_CHUNK {
                        zip.par_for_each(|m, &t| *m += t);
                    } else {
                        zip.for_each(|m, &t| *m += t);
                    }
                }
                None => *mine = Some(theirs.clone()),
            }
        }
    }

    /// Multiplies every parameter gradient by `factor` (e.g. `1 / micro-batches`).
    pub fn scale(&mut self, factor: F) {
        for g in self.params.iter_mut().flatten() {
            g.mapv_inplace(|v| v * factor);
        }
    }

    /// The Euclidean norm of all parameter gradients together, accumulated in `f64`.
    pub fn global_norm(&self) -> F {
        let squares: f64 = self
            .params
            .iter()
            .flatten()
            .map(|g| g.iter().map(|v| v.as_f64() * v.as_f64()).sum::<f64>())
            .sum();
        F::from_f64(squares.sqrt())
    }

    /// Scales all parameter gradients together so their global norm is at most `max_norm`
    /// (PyTorch's `clip_grad_norm_`), and returns the norm before clipping. A non-finite norm
    /// is returned as it is and the gradients are left alone, so the caller can skip the step.
    pub fn clip_norm(&mut self, max_norm: F) -> F {
        let norm = self.global_norm();
        if norm.is_finite() && norm > max_norm {
            self.scale(max_norm / norm);
        }
        norm
    }

    /// Clamps every parameter gradient element to `[−limit, limit]` (PyTorch's
    /// `clip_grad_value_`).
    pub fn clip_value(&mut self, limit: F) {
        for g in self.params.iter_mut().flatten() {
            g.mapv_inplace(|v| v.max(-limit).min(limit));
        }
    }
}
