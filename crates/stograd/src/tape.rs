//! The tape: an arena of nodes recorded in execution order, the `Var` handle into it, and the
//! backward sweep.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::{Array, ArrayD, Dimension};
use smallvec::SmallVec;

use crate::error::Pass;
use crate::gradients::Gradients;
use crate::ops::{Leaf, Op};
use crate::{Error, ParamId, Params, Result, Scalar};

static NEXT_TAPE_ID: AtomicU64 = AtomicU64::new(0);

/// One recorded value: the op that made it, its inputs, and where it was recorded.
pub(crate) struct Node<F: Scalar> {
    pub(crate) op: Op<F>,
    pub(crate) parents: SmallVec<[u32; 2]>,
    pub(crate) value: ArrayD<F>,
    /// Whether some leaf below this node is differentiable; backward skips nodes without.
    pub(crate) requires_grad: bool,
    pub(crate) location: &'static Location<'static>,
}

/// The record of one step's computation, differentiated by [`Var::backward`].
///
/// Recording order is already a topological order, so backward is a single reverse sweep.
/// Nodes keep their inputs' indices (not closures), so the graph can be inspected: anomaly
/// detection names the op and the line that recorded it.
///
/// # Example
/// ```
/// use ndarray::{array, ArrayD};
/// use stograd::{Params, Tape};
///
/// let mut params = Params::<f64>::new();
/// let w = params.insert("w", array![1.0, -2.0].into_dyn())?;
///
/// let tape = Tape::new();
/// let x = tape.constant(array![3.0, 4.0]);
/// let loss = (tape.param(&params, w) * x).sum().powf(2.0); // (w·x)²
/// let grads = loss.backward()?;
/// // ∂/∂w (w·x)² = 2 (w·x) x = 2 · (−5) · [3, 4]
/// assert_eq!(grads.param(w).unwrap(), &array![-30.0, -40.0].into_dyn());
/// # Ok::<(), stograd::Error>(())
/// ```
pub struct Tape<F: Scalar> {
    id: u64,
    pub(crate) nodes: RefCell<Vec<Node<F>>>,
    detect_anomaly: Cell<bool>,
    /// Nodes whose forward value was non-finite while anomaly detection was on.
    nonfinite: RefCell<Vec<u32>>,
    /// Whether a score-function sample was recorded (backward then adds surrogate terms).
    has_score: Cell<bool>,
}

/// A handle to a value recorded on a [`Tape`]: copyable, cheap, and valid as long as the tape.
///
/// Arithmetic operators and the methods in [`ops`](crate::ops) record new nodes; `backward`
/// differentiates.
#[derive(Clone, Copy)]
pub struct Var<'t, F: Scalar> {
    pub(crate) tape: &'t Tape<F>,
    pub(crate) index: u32,
}

impl<F: Scalar> Default for Tape<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: Scalar> Drop for Tape<F> {
    /// Hands the large node values to the buffer pool for the next step.
    fn drop(&mut self) {
        for node in self.nodes.get_mut().drain(..) {
            crate::pool::give(node.value);
        }
    }
}

impl<F: Scalar> fmt::Debug for Tape<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tape")
            .field("id", &self.id)
            .field("nodes", &self.len())
            .finish()
    }
}

impl<F: Scalar> Tape<F> {
    /// An empty tape.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty tape with room for `nodes` nodes before it reallocates.
    pub fn with_capacity(nodes: usize) -> Self {
        Tape {
            id: NEXT_TAPE_ID.fetch_add(1, Ordering::Relaxed),
            nodes: RefCell::new(Vec::with_capacity(nodes)),
            detect_anomaly: Cell::new(false),
            nonfinite: RefCell::new(Vec::new()),
            has_score: Cell::new(false),
        }
    }

    /// Turns anomaly detection on or off for the ops recorded from now on.
    ///
    /// While on, every forward value and every gradient is checked for NaN and infinity, and
    /// [`Var::backward`] fails with [`Error::Anomaly`] naming the first op (its name and the
    /// source line that recorded it) whose forward or backward pass produced one. The checks
    /// cost a pass over each array, so leave it off in production runs.
    pub fn detect_anomaly(&self, on: bool) {
        self.detect_anomaly.set(on);
    }

    /// The number of recorded nodes.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a parameter's current value as a differentiable leaf; its gradient is read back
    /// with [`Gradients::param`].
    #[track_caller]
    pub fn param(&self, params: &Params<F>, id: ParamId) -> Var<'_, F> {
        let value = params.get(id).as_standard_layout().into_owned();
        self.push_leaf(Leaf::Param(id), value, true, Location::caller())
    }

    /// Records a constant: no gradient flows into it.
    #[track_caller]
    pub fn constant<D: Dimension>(&self, value: Array<F, D>) -> Var<'_, F> {
        self.push_leaf(Leaf::Constant, value.into_dyn(), false, Location::caller())
    }

    /// Records a 0-dimensional constant.
    #[track_caller]
    pub fn scalar(&self, value: F) -> Var<'_, F> {
        self.push_leaf(
            Leaf::Constant,
            ArrayD::from_elem(vec![], value),
            false,
            Location::caller(),
        )
    }

    /// Records a differentiable leaf that is not a stored parameter (an input whose gradient
    /// you want, as in [`check::gradcheck`](crate::check::gradcheck)); read its gradient with
    /// [`Gradients::wrt`].
    #[track_caller]
    pub fn variable<D: Dimension>(&self, value: Array<F, D>) -> Var<'_, F> {
        self.push_leaf(Leaf::Variable, value.into_dyn(), true, Location::caller())
    }

    pub(crate) fn push_leaf(
        &self,
        leaf: Leaf,
        value: ArrayD<F>,
        requires_grad: bool,
        location: &'static Location<'static>,
    ) -> Var<'_, F> {
        let value = if value.is_standard_layout() {
            value
        } else {
            value.as_standard_layout().into_owned()
        };
        self.push_node(Node {
            op: Op::Leaf(leaf),
            parents: SmallVec::new(),
            value,
            requires_grad,
            location,
        })
    }

    /// Records an op's output. `requires_grad` is inherited from the parents, so backward
    /// skips whatever no differentiable leaf feeds.
    pub(crate) fn push(
        &self,
        op: Op<F>,
        parents: SmallVec<[u32; 2]>,
        value: ArrayD<F>,
        location: &'static Location<'static>,
    ) -> Var<'_, F> {
        debug_assert!(
            value.is_standard_layout(),
            "{} produced a strided array",
            op.name()
        );
        let requires_grad = {
            let nodes = self.nodes.borrow();
            parents.iter().any(|&p| nodes[p as usize].requires_grad)
        };
        self.push_node(Node {
            op,
            parents,
            value,
            requires_grad,
            location,
        })
    }

    /// Records an op whose output carries no gradient even though its inputs may (a
    /// score-function draw, whose inputs are kept as edges only).
    pub(crate) fn push_without_grad(
        &self,
        op: Op<F>,
        parents: SmallVec<[u32; 2]>,
        value: ArrayD<F>,
        location: &'static Location<'static>,
    ) -> Var<'_, F> {
        self.has_score.set(true);
        self.push_node(Node {
            op,
            parents,
            value,
            requires_grad: false,
            location,
        })
    }

    fn push_node(&self, node: Node<F>) -> Var<'_, F> {
        let mut nodes = self.nodes.borrow_mut();
        let index = u32::try_from(nodes.len()).expect("a tape holds at most 2³² nodes");
        if self.detect_anomaly.get() && first_nonfinite(&node.value).is_some() {
            self.nonfinite.borrow_mut().push(index);
        }
        nodes.push(node);
        Var { tape: self, index }
    }

    /// Runs `f` on the value of node `index`.
    pub(crate) fn with_value<R>(&self, index: u32, f: impl FnOnce(&ArrayD<F>) -> R) -> R {
        f(&self.nodes.borrow()[index as usize].value)
    }

    /// The reverse sweep: seeds `∂root/∂root = 1` (all ones for a non-scalar root, which
    /// differentiates the sum of its elements), adds the score-function estimator's seeds, and
    /// applies each node's backward rule in reverse recording order, accumulating into its
    /// parents.
    fn backward(&self, root: u32) -> Result<Gradients<F>> {
        let nodes = self.nodes.borrow();
        let root = root as usize;
        self.check_forward_anomaly(&nodes, root)?;
        let check = self.detect_anomaly.get();

        let mut grads: Vec<Option<ArrayD<F>>> = (0..=root).map(|_| None).collect();
        if nodes[root].requires_grad {
            grads[root] = Some(ArrayD::ones(nodes[root].value.raw_dim()));
        }
        if self.has_score.get() {
            // Seeds sit on `log q` and learned-baseline nodes, all recorded before the root.
            for (node, seed) in crate::estimator::score_seeds(&nodes, root)? {
                if nodes[node].requires_grad {
                    match &mut grads[node] {
                        Some(acc) => *acc += &seed,
                        slot => *slot = Some(seed),
                    }
                }
            }
        }
        for i in (0..=root).rev() {
            let node = &nodes[i];
            if !node.requires_grad || node.parents.is_empty() {
                continue;
            }
            let (below, here) = grads.split_at_mut(i);
            let Some(grad) = here[0].as_ref() else {
                continue;
            };
            let inputs: SmallVec<[&ArrayD<F>; 2]> = node
                .parents
                .iter()
                .map(|&p| &nodes[p as usize].value)
                .collect();
            let needs: SmallVec<[bool; 2]> = node
                .parents
                .iter()
                .map(|&p| nodes[p as usize].requires_grad)
                .collect();
            let parent_grads = node.op.backward(&crate::ops::Backward {
                inputs: &inputs,
                output: &node.value,
                grad,
                needs: &needs,
            });
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
                let slot = &mut below[p as usize];
                debug_assert_eq!(
                    pg.shape(),
                    nodes[p as usize].value.shape(),
                    "{}",
                    node.op.name()
                );
                match slot {
                    Some(acc) => *acc += &pg,
                    None => *slot = Some(pg),
                }
            }
        }
        let param_leaves = nodes[..=root]
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match n.op {
                Op::Leaf(Leaf::Param(id)) => Some((id, i as u32)),
                _ => None,
            });
        Ok(Gradients::new(self.id, grads, param_leaves))
    }

    /// With anomaly detection on, the first non-finite forward value among the root's
    /// ancestors is an error.
    fn check_forward_anomaly(&self, nodes: &[Node<F>], root: usize) -> Result<()> {
        let nonfinite = self.nonfinite.borrow();
        if nonfinite.iter().all(|&i| i as usize > root) {
            return Ok(());
        }
        let mut ancestor = vec![false; root + 1];
        ancestor[root] = true;
        for i in (0..=root).rev() {
            if ancestor[i] {
                for &p in &nodes[i].parents {
                    ancestor[p as usize] = true;
                }
            }
        }
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
                value: first_nonfinite(&nodes[i].value).unwrap_or(f64::NAN),
            }),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

fn first_nonfinite<F: Scalar>(a: &ArrayD<F>) -> Option<f64> {
    a.iter().find(|v| !v.is_finite()).map(|v| v.as_f64())
}

impl<'t, F: Scalar> Var<'t, F> {
    /// The tape this value lives on.
    pub fn tape(self) -> &'t Tape<F> {
        self.tape
    }

    /// A copy of the value.
    pub fn value(self) -> ArrayD<F> {
        self.tape.with_value(self.index, ArrayD::clone)
    }

    /// The value of a one-element `Var` (any shape with a single element).
    ///
    /// # Panics
    /// If the value has more or fewer than one element.
    #[track_caller]
    pub fn item(self) -> F {
        let (len, first) = self
            .tape
            .with_value(self.index, |v| (v.len(), v.iter().next().copied()));
        assert!(
            len == 1,
            "item() needs exactly one element, the shape is {:?} (at {})",
            self.shape(),
            Location::caller()
        );
        first.expect("one element")
    }

    /// Runs `f` on the value without copying it. `f` must not record on the tape.
    pub(crate) fn with_value<R>(self, f: impl FnOnce(&ArrayD<F>) -> R) -> R {
        self.tape.with_value(self.index, f)
    }

    /// The shape of the value.
    pub fn shape(self) -> Vec<usize> {
        self.tape.with_value(self.index, |v| v.shape().to_vec())
    }

    /// The number of axes.
    pub fn ndim(self) -> usize {
        self.tape.with_value(self.index, ArrayD::ndim)
    }

    /// The number of elements.
    pub fn len(self) -> usize {
        self.tape.with_value(self.index, ArrayD::len)
    }

    /// Whether the value has no elements.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Whether a gradient can flow into this value from a differentiable leaf.
    pub fn requires_grad(self) -> bool {
        self.tape.nodes.borrow()[self.index as usize].requires_grad
    }

    /// Differentiates this value with respect to every differentiable leaf below it.
    ///
    /// A non-scalar value differentiates the sum of its elements. The tape is not consumed:
    /// backward can run again from the same or another `Var` and gives the same result.
    ///
    /// # Errors
    /// [`Error::Anomaly`] when anomaly detection is on and an op upstream produced NaN or
    /// infinity, in its forward or its backward pass.
    pub fn backward(self) -> Result<Gradients<F>> {
        self.tape.backward(self.index)
    }
}

impl<F: Scalar> fmt::Debug for Var<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes = self.tape.nodes.borrow();
        let node = &nodes[self.index as usize];
        f.debug_struct("Var")
            .field("index", &self.index)
            .field("op", &node.op.name())
            .field("shape", &node.value.shape())
            .finish()
    }
}

/// Panics unless both handles come from the same tape.
#[track_caller]
pub(crate) fn same_tape<F: Scalar>(op: &str, a: Var<'_, F>, b: Var<'_, F>) {
    assert!(
        std::ptr::eq(a.tape, b.tape),
        "{op}: the operands were recorded on different tapes (at {})",
        Location::caller()
    );
}
