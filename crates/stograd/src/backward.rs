//! The backward sweep: the estimators' seeds, then every node's backward rule in reverse
//! recording order.
//!
//! This sits above `ops/`, `dist/` and `estimator/`: the tape only records, the ops only know
//! their own rules, and the sweep asks the estimators what to add before it starts.

use ndarray::ArrayD;
use smallvec::SmallVec;

use crate::error::Pass;
use crate::gradients::Gradients;
use crate::ops::{Backward, Leaf, Op};
use crate::tape::{Node, accumulate, ancestors, first_nonfinite};
use crate::{Error, Result, Scalar, Tape, Var};

impl<F: Scalar> Var<'_, F> {
    /// Differentiates this value with respect to every differentiable leaf below it.
    ///
    /// A non-scalar value differentiates the sum of its elements. For every score-function
    /// node below it, the estimator's term `log q(w) · (Q_w − b_w)` is added first, crediting
    /// the draw with the part `Q_w` of this value that depends on it (see
    /// [`Tape::surrogate`] for what a surrogate inside the value changes). The tape is not
    /// consumed: backward can run again from the same or another `Var` and gives the same
    /// result.
    ///
    /// # Errors
    /// [`Error::Anomaly`] when anomaly detection is on and an op upstream produced NaN or
    /// infinity, in its forward or its backward pass; the score-function estimator's errors
    /// ([`Error::UnsupportedEstimator`] for a baseline the cost cannot serve,
    /// [`Error::SurrogateNotLinear`] for a surrogate used inside a non-linear op);
    /// [`Error::NoGraph`] on an [inference tape](Tape::inference); [`Error::InvalidArgument`]
    /// when the cost reaching an EMA baseline is NaN or infinite (the average is left as it
    /// was).
    pub fn backward(self) -> Result<Gradients<F>> {
        sweep(self.tape, self.index as usize, false)
    }

    /// [`backward`](Var::backward), releasing each intermediate value as soon as no remaining
    /// backward rule reads it (PyTorch's default, `retain_graph=False`): a node's value is
    /// read only by its own rule and its consumers', which the reverse sweep has all applied
    /// by the time it reaches the node. The peak memory of a training step is then about its
    /// activations plus its gradients, instead of also holding every activation through the
    /// whole backward pass.
    ///
    /// Afterwards the root's value and the leaves' (constants, variables, parameters) stay
    /// readable; reading any other value recorded up to the root panics with a message that
    /// names this method, and differentiating the tape again is an error. The released
    /// buffers go back to the allocator rather than to the pool the next step's arrays are
    /// drawn from, so a loop bound by time rather than memory is better served by `backward`.
    ///
    /// ```
    /// use ndarray::array;
    /// use stograd::Tape;
    ///
    /// let tape = Tape::<f64>::new();
    /// let x = tape.variable(array![1.0, 2.0]);
    /// let hidden = x.exp();
    /// let loss = hidden.sum();
    /// let grads = loss.backward_and_free()?;
    /// assert_eq!(grads.wrt(x).unwrap(), array![1f64.exp(), 2f64.exp()].into_dyn());
    /// assert!((loss.item() - (1f64.exp() + 2f64.exp())).abs() < 1e-12); // the root is kept
    /// assert_eq!(hidden.shape(), vec![2]); // shapes are kept, values are not
    /// assert!(matches!(loss.backward(), Err(stograd::Error::ValuesFreed)));
    /// # Ok::<(), stograd::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`backward`](Var::backward); [`Error::ValuesFreed`] when an earlier call released
    /// the tape's values.
    pub fn backward_and_free(self) -> Result<Gradients<F>> {
        sweep(self.tape, self.index as usize, true)
    }
}

impl<F: Scalar> Var<'_, F> {
    /// Asks the next backward passes to keep this intermediate's gradient, for
    /// [`Gradients::wrt`]; backward frees the gradients of other intermediates as soon as it
    /// has used them. (Leaves always keep theirs.)
    pub fn retain_grad(self) -> Self {
        self.tape.nodes.borrow_mut()[self.index as usize].retain_grad = true;
        self
    }
}

/// Seeds `∂root/∂root = 1` (all ones for a non-scalar root), adds the score-function seeds,
/// and applies each node's backward rule in reverse recording order, accumulating into its
/// parents.
///
/// With `free`, each op node's value below the root is released once the sweep has applied its
/// rule (its consumers', which read it, come after it on the tape and were applied first).
fn sweep<F: Scalar>(tape: &Tape<'_, F>, root: usize, free: bool) -> Result<Gradients<F>> {
    if !tape.records {
        return Err(Error::NoGraph);
    }
    if tape.freed.get() {
        return Err(Error::ValuesFreed);
    }
    let mut nodes = tape.nodes.borrow_mut();
    check_forward_anomaly(tape, &nodes, root)?;
    let check = tape.detect_anomaly.get();

    let mut grads: Vec<Option<ArrayD<F>>> = (0..=root).map(|_| None).collect();
    if nodes[root].requires_grad {
        grads[root] = Some(ArrayD::ones(nodes[root].value.live().raw_dim()));
    }
    // Seeds sit on `log q` and learned-baseline nodes, all recorded before the root.
    let credit = crate::estimator::credit(&nodes, &tape.register.borrow(), root)?;
    for (node, seed) in credit.seeds {
        if nodes[node].requires_grad {
            accumulate(&mut grads[node], seed);
        }
    }
    if free {
        tape.freed.set(true);
    }
    for i in (0..=root).rev() {
        apply_rule(&nodes, &mut grads, i, check)?;
        if free && i != root && !matches!(nodes[i].op, Op::Leaf(_)) {
            nodes[i].value.release();
        }
    }
    let mut params = Vec::new();
    let mut kept = Vec::new();
    for (i, grad) in grads.into_iter().enumerate() {
        let Some(grad) = grad else { continue };
        match nodes[i].op {
            Op::Leaf(Leaf::Param(id)) => {
                if params.len() <= id.index() {
                    params.resize_with(id.index() + 1, || None);
                }
                params[id.index()] = Some(grad);
            }
            _ => kept.push((i as u32, grad)),
        }
    }
    Ok(Gradients::new(tape.id(), params, kept))
}

/// Applies node `i`'s backward rule to its gradient, if it has one, and accumulates what the
/// rule returns into its parents' gradients (freeing an intermediate's own gradient unless it
/// is retained).
fn apply_rule<F: Scalar>(
    nodes: &[Node<F>],
    grads: &mut [Option<ArrayD<F>>],
    i: usize,
    check: bool,
) -> Result<()> {
    let node = &nodes[i];
    if !node.requires_grad || node.parents.is_empty() {
        return Ok(());
    }
    let (below, here) = grads.split_at_mut(i);
    let Some(grad) = here[0].take() else {
        return Ok(());
    };
    let inputs = node.inputs(nodes);
    let needs: SmallVec<[bool; 2]> = node
        .parents
        .iter()
        .map(|&p| nodes[p as usize].requires_grad)
        .collect();
    let parent_grads = node.op.backward(&Backward {
        inputs: &inputs,
        output: node.value.live(),
        grad: &grad,
        needs: &needs,
    });
    // an intermediate's gradient is freed once its inputs have theirs
    if node.retain_grad {
        here[0] = Some(grad);
    } else {
        crate::pool::give(grad);
    }
    for (&p, pg) in node.parents.iter().zip(parent_grads) {
        let Some(pg) = pg else { continue };
        if check && let Some(value) = first_nonfinite(&pg) {
            return Err(Error::Anomaly {
                op: node.op.name(),
                location: node.location,
                pass: Pass::Backward,
                value,
            });
        }
        debug_assert_eq!(
            pg.shape(),
            nodes[p as usize].value.shape(),
            "{}",
            node.op.name()
        );
        let slot = &mut below[p as usize];
        let summed = slot.is_some();
        accumulate(slot, pg);
        // two finite contributions can overflow when added (a value used twice)
        if check
            && summed
            && let Some(value) = slot.as_ref().and_then(first_nonfinite)
        {
            return Err(Error::Anomaly {
                op: node.op.name(),
                location: node.location,
                pass: Pass::Backward,
                value,
            });
        }
    }
    Ok(())
}

/// With anomaly detection on, the first non-finite forward value among the root's ancestors
/// is an error.
fn check_forward_anomaly<F: Scalar>(
    tape: &Tape<'_, F>,
    nodes: &[Node<F>],
    root: usize,
) -> Result<()> {
    let nonfinite = tape.nonfinite.borrow();
    if nonfinite.iter().all(|&i| i as usize > root) {
        return Ok(());
    }
    let ancestor = ancestors(nodes, root);
    match nonfinite
        .iter()
        .map(|&i| i as usize)
        .find(|&i| i <= root && ancestor[i])
    {
        None => Ok(()),
        Some(i) => Err(Error::Anomaly {
            op: nodes[i].op.name(),
            location: nodes[i].location,
            pass: Pass::Forward,
            value: first_nonfinite(nodes[i].value.live()).unwrap_or(f64::NAN),
        }),
    }
}
