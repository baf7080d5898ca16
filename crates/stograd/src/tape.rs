//! The tape: an arena of nodes recorded in execution order, and the `Var` handle into it.
//! The backward sweep is in `backward.rs`.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::{Array, ArrayD, Dimension};
use smallvec::SmallVec;

use crate::estimator::Register;
use crate::ops::{Leaf, Op};
use crate::params::Bound;
pub(crate) use crate::value::{FREED, Value};
use crate::{Params, Scalar};

static NEXT_TAPE_ID: AtomicU64 = AtomicU64::new(0);

/// One recorded value: the op that made it, its inputs, and where it was recorded.
pub(crate) struct Node<F: Scalar> {
    pub(crate) op: Op<F>,
    pub(crate) parents: SmallVec<[u32; 2]>,
    pub(crate) value: Value<F>,
    /// Whether some leaf below this node is differentiable; backward skips nodes without.
    pub(crate) requires_grad: bool,
    /// Whether backward keeps this node's gradient although it is not a leaf.
    pub(crate) retain_grad: bool,
    pub(crate) location: &'static Location<'static>,
}

impl<F: Scalar> Node<F> {
    /// The values of this node's inputs, in order.
    pub(crate) fn inputs<'a>(&self, nodes: &'a [Node<F>]) -> SmallVec<[&'a ArrayD<F>; 4]> {
        self.parents
            .iter()
            .map(|&p| nodes[p as usize].value.live())
            .collect()
    }
}

/// Which nodes up to `root` the root depends on (itself included).
pub(crate) fn ancestors<F: Scalar>(nodes: &[Node<F>], root: usize) -> Vec<bool> {
    let mut ancestor = vec![false; root + 1];
    ancestor[root] = true;
    for i in (0..=root).rev() {
        if ancestor[i] {
            for &p in &nodes[i].parents {
                ancestor[p as usize] = true;
            }
        }
    }
    ancestor
}

/// Adds `grad` into an accumulator that may still be empty.
pub(crate) fn accumulate<F: Scalar>(slot: &mut Option<ArrayD<F>>, grad: ArrayD<F>) {
    match slot {
        Some(acc) => *acc += &grad,
        None => *slot = Some(grad),
    }
}

/// The record of one step's computation, differentiated by [`Var::backward`].
///
/// Recording order is already a topological order, so backward is a single reverse sweep.
/// Nodes keep their inputs' indices (not closures), so the graph can be inspected: anomaly
/// detection names the op and the line that recorded it.
///
/// A tape that reads parameters is bound to them ([`Tape::with_params`]): each parameter is
/// recorded once, shared with the store rather than copied, and a model's `forward` needs
/// only the tape. An [inference tape](Tape::inference) records no graph at all.
///
/// # Example
/// ```
/// use ndarray::{array, ArrayD};
/// use stograd::{Params, Tape};
///
/// let mut params = Params::<f64>::new();
/// let w = params.insert("w", array![1.0, -2.0].into_dyn())?;
///
/// let tape = Tape::with_params(&params);
/// let x = tape.constant(array![3.0, 4.0]);
/// let loss = (tape.param(w) * x).sum().powf(2.0); // (w·x)²
/// let grads = loss.backward()?;
/// // ∂/∂w (w·x)² = 2 (w·x) x = 2 · (−5) · [3, 4]
/// assert_eq!(grads.param(w).unwrap(), &array![-30.0, -40.0].into_dyn());
/// # Ok::<(), stograd::Error>(())
/// ```
pub struct Tape<'p, F: Scalar> {
    id: u64,
    pub(crate) nodes: RefCell<Vec<Node<F>>>,
    pub(crate) detect_anomaly: Cell<bool>,
    /// Nodes whose forward value was non-finite while anomaly detection was on.
    pub(crate) nonfinite: RefCell<Vec<u32>>,
    /// The sample nodes and surrogates recorded on this tape.
    pub(crate) register: RefCell<Register<F>>,
    /// The parameters the tape reads, if it is bound to a store.
    pub(crate) bound: Option<Bound<F>>,
    /// Whether the tape records a graph (false on an inference tape).
    pub(crate) records: bool,
    /// Whether `backward_and_free` has released the intermediate values.
    pub(crate) freed: Cell<bool>,
    /// While a distribution method runs, the user's call into it: the nodes it records are
    /// attributed there, so anomaly reports name the user's line, not stograd's.
    pub(crate) caller: Cell<Option<&'static Location<'static>>>,
    /// A bound tape borrows its store, so the store cannot change under it: an update
    /// waits until the tape is dropped, and then happens in place.
    _params: PhantomData<&'p Params<F>>,
}

/// A handle to a value recorded on a [`Tape`]: copyable, cheap, and valid as long as the tape.
///
/// Arithmetic operators and the methods in [`ops`](crate::ops) record new nodes; `backward`
/// differentiates.
#[derive(Clone, Copy)]
pub struct Var<'t, F: Scalar> {
    pub(crate) tape: &'t Tape<'t, F>,
    pub(crate) index: u32,
}

impl<F: Scalar> Default for Tape<'_, F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: Scalar> Drop for Tape<'_, F> {
    /// Hands the large node values to the buffer pool for the next step.
    fn drop(&mut self) {
        for node in self.nodes.get_mut().drain(..) {
            if let Value::Owned(value) = node.value {
                crate::pool::give(value);
            }
        }
    }
}

impl<F: Scalar> fmt::Debug for Tape<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tape")
            .field("id", &self.id)
            .field("nodes", &self.len())
            .finish()
    }
}

impl<F: Scalar> Tape<'_, F> {
    /// An empty tape.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty tape with room for `nodes` nodes before it reallocates.
    ///
    /// # Panics
    /// If room for `nodes` nodes cannot be allocated.
    #[track_caller]
    pub fn with_capacity(nodes: usize) -> Self {
        let mut room = Vec::new();
        if room.try_reserve_exact(nodes).is_err() {
            panic!(
                "Tape::with_capacity: no memory for {nodes} nodes of {} bytes (at {})",
                size_of::<Node<F>>(),
                Location::caller()
            );
        }
        Self::build(room, None, true)
    }

    pub(crate) fn build(nodes: Vec<Node<F>>, bound: Option<Bound<F>>, records: bool) -> Self {
        Tape {
            id: NEXT_TAPE_ID.fetch_add(1, Ordering::Relaxed),
            nodes: RefCell::new(nodes),
            detect_anomaly: Cell::new(false),
            nonfinite: RefCell::new(Vec::new()),
            register: RefCell::new(Register::default()),
            bound,
            records,
            freed: Cell::new(false),
            caller: Cell::new(None),
            _params: PhantomData,
        }
    }

    /// Turns anomaly detection on or off for the ops recorded from now on.
    ///
    /// While on, every forward value and every gradient is checked for NaN and infinity, and
    /// [`Var::backward`] fails with [`Error::Anomaly`](crate::Error::Anomaly) naming the first op (its name and the
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
    /// [`Gradients::wrt`](crate::Gradients::wrt).
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
        let value = crate::ops::standard(value);
        self.push_node(Node {
            op: Op::Leaf(leaf),
            parents: SmallVec::new(),
            value: Value::Owned(value),
            requires_grad: requires_grad && self.records,
            retain_grad: false,
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
        if !self.records {
            return self.push_node(Node {
                op,
                parents: SmallVec::new(),
                value: Value::Owned(value),
                requires_grad: false,
                retain_grad: false,
                location,
            });
        }
        let requires_grad = {
            let nodes = self.nodes.borrow();
            parents.iter().any(|&p| nodes[p as usize].requires_grad)
        };
        self.push_node(Node {
            op,
            parents,
            value: Value::Owned(value),
            requires_grad,
            retain_grad: false,
            location,
        })
    }

    /// Records an op whose output carries no gradient even though its inputs may (`detach`,
    /// a score-function draw): the parents are edges for credit assignment only.
    pub(crate) fn push_stopped(
        &self,
        op: Op<F>,
        parents: SmallVec<[u32; 2]>,
        value: ArrayD<F>,
        location: &'static Location<'static>,
    ) -> Var<'_, F> {
        let parents = if self.records {
            parents
        } else {
            SmallVec::new()
        };
        self.push_node(Node {
            op,
            parents,
            value: Value::Owned(value),
            requires_grad: false,
            retain_grad: false,
            location,
        })
    }

    pub(crate) fn push_node(&self, mut node: Node<F>) -> Var<'_, F> {
        if let Some(location) = self.caller.get() {
            node.location = location;
        }
        let mut nodes = self.nodes.borrow_mut();
        let index = u32::try_from(nodes.len()).expect("a tape holds at most 2³² nodes");
        if self.detect_anomaly.get() && first_nonfinite(node.value.live()).is_some() {
            self.nonfinite.borrow_mut().push(index);
        }
        nodes.push(node);
        Var { tape: self, index }
    }

    /// Runs `f` on the value of node `index`.
    ///
    /// # Panics
    /// If `backward_and_free` released the value, naming the caller's line.
    #[track_caller]
    pub(crate) fn with_value<R>(&self, index: u32, f: impl FnOnce(&ArrayD<F>) -> R) -> R {
        let nodes = self.nodes.borrow();
        f(self.read(&nodes, index))
    }

    /// The value of node `index` of `nodes` (this tape's, borrowed): how every op reads its
    /// inputs.
    ///
    /// # Panics
    /// If `backward_and_free` released the value, naming the user's line: the caller's
    /// (every public op is `#[track_caller]` down to this call), or inside a distribution's
    /// method the line that called the method (its [`caller_scope`](Tape::caller_scope)).
    #[track_caller]
    pub(crate) fn read<'a>(&self, nodes: &'a [Node<F>], index: u32) -> &'a ArrayD<F> {
        match &nodes[index as usize].value {
            Value::Freed(_) => {
                // not `unwrap_or_else(Location::caller)`: through a fn pointer the location
                // would be core's
                let at = match self.caller.get() {
                    Some(scope) => scope,
                    None => Location::caller(),
                };
                panic!("{FREED} (at {at})")
            }
            value => value.live(),
        }
    }

    /// Panics unless `var` was recorded on this tape.
    #[track_caller]
    pub(crate) fn check_owns(&self, op: &str, var: Var<'_, F>) {
        assert!(
            std::ptr::eq(self, var.tape),
            "{op}: the value was recorded on another tape (at {})",
            Location::caller()
        );
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

pub(crate) fn first_nonfinite<F: Scalar>(a: &ArrayD<F>) -> Option<f64> {
    a.iter().find(|v| !v.is_finite()).map(|v| v.as_f64())
}

impl<'t, F: Scalar> Var<'t, F> {
    /// The tape this value lives on.
    pub fn tape(self) -> &'t Tape<'t, F> {
        self.tape
    }

    /// A copy of the value.
    ///
    /// # Panics
    /// If [`backward_and_free`](Var::backward_and_free) released it.
    #[track_caller]
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
    #[track_caller]
    pub(crate) fn with_value<R>(self, f: impl FnOnce(&ArrayD<F>) -> R) -> R {
        self.tape.with_value(self.index, f)
    }

    /// The shape of the value.
    pub fn shape(self) -> Vec<usize> {
        self.tape.nodes.borrow()[self.index as usize]
            .value
            .shape()
            .to_vec()
    }

    /// The number of axes.
    pub fn ndim(self) -> usize {
        self.tape.nodes.borrow()[self.index as usize]
            .value
            .shape()
            .len()
    }

    /// The number of elements.
    pub fn len(self) -> usize {
        self.tape.nodes.borrow()[self.index as usize]
            .value
            .shape()
            .iter()
            .product()
    }

    /// Whether the value has no elements.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Whether a gradient can flow into this value from a differentiable leaf.
    pub fn requires_grad(self) -> bool {
        self.tape.nodes.borrow()[self.index as usize].requires_grad
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

/// The values, as ndarray prints them (formatting options such as `{:.3}` apply), then the
/// shape and the op that made them.
///
/// ```
/// use ndarray::array;
/// use stograd::Tape;
///
/// let tape = Tape::<f64>::new();
/// let x = tape.constant(array![1.0, 2.5]).exp();
/// assert_eq!(format!("{x:.2}"), "[2.72, 12.18] (shape [2], exp)");
/// ```
impl<F: Scalar> fmt::Display for Var<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes = self.tape.nodes.borrow();
        let node = &nodes[self.index as usize];
        match node.value {
            Value::Freed(_) => f.write_str("(released by backward_and_free)")?,
            ref value => fmt::Display::fmt(value.live(), f)?,
        }
        write!(f, " (shape {:?}, {})", node.value.shape(), node.op.name())
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
