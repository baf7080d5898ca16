//! Named arrays that outlive a tape: the trainable state of a model, and the binding of a
//! tape to them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::Location;
use std::sync::Arc;

use ndarray::ArrayD;
use smallvec::SmallVec;

use crate::ops::{Leaf, Op};
use crate::tape::{Node, Value};
use crate::{Error, Result, Scalar, Tape, Var};

/// A copyable handle to one array in a [`Params`] store.
///
/// Handles index the store that issued them, in insertion order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub(crate) u32);

impl ParamId {
    /// The position of the parameter in its store, in insertion order.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The values that live across training steps, each with a hierarchical name.
///
/// Names are dot-separated paths such as `"encoder.fc1.weight"`; each segment is made of ASCII
/// letters, digits, `_` and `-`. They key checkpoints, group parameters for optimizers
/// ([`ids_under`](Self::ids_under)) and read like PyTorch's state-dict keys.
///
/// Each array is kept in shared storage: a tape bound to the store
/// ([`Tape::with_params`]) records a parameter without copying it, and
/// [`get_mut`](Self::get_mut) updates it in place once no tape holds it (while one does, the
/// tape keeps the value it recorded and the store gets a fresh copy).
///
/// # Example
/// ```
/// use ndarray::ArrayD;
/// use stograd::Params;
///
/// let mut params = Params::<f32>::new();
/// let w = params.insert("fc1.weight", ArrayD::zeros(vec![3, 2]))?;
/// let b = params.insert("fc1.bias", ArrayD::zeros(vec![3]))?;
/// assert_eq!(params.name(w), "fc1.weight");
/// assert_eq!(params.id("fc1.weight")?, w);
/// assert_eq!(params.num_elements(), 9);
/// assert_eq!(params.ids_under("fc1").collect::<Vec<_>>(), [w, b]);
/// assert!(params.insert("fc1..bias", ArrayD::zeros(vec![2])).is_err());
/// params.freeze(b);
/// assert!(params.is_frozen(b));
/// # Ok::<(), stograd::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Params<F: Scalar> {
    values: Vec<Arc<ArrayD<F>>>,
    names: Vec<String>,
    frozen: Vec<bool>,
    by_name: HashMap<String, ParamId>,
}

impl<F: Scalar> Params<F> {
    /// An empty store.
    pub fn new() -> Self {
        Params {
            values: Vec::new(),
            names: Vec::new(),
            frozen: Vec::new(),
            by_name: HashMap::new(),
        }
    }

    /// Adds a parameter and returns its handle.
    ///
    /// # Errors
    /// [`Error::InvalidParamName`] for a malformed name, [`Error::DuplicateParam`] when the
    /// name is taken.
    pub fn insert(&mut self, name: &str, value: ArrayD<F>) -> Result<ParamId> {
        validate_name(name)?;
        if self.by_name.contains_key(name) {
            return Err(Error::DuplicateParam(name.to_owned()));
        }
        let id = ParamId(u32::try_from(self.values.len()).expect("more than 2³² parameters"));
        self.values.push(Arc::new(crate::ops::standard(value)));
        self.names.push(name.to_owned());
        self.frozen.push(false);
        self.by_name.insert(name.to_owned(), id);
        Ok(id)
    }

    /// The handle of the parameter called `name`.
    ///
    /// # Errors
    /// [`Error::UnknownParam`] when there is none.
    pub fn id(&self, name: &str) -> Result<ParamId> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| Error::UnknownParam(name.to_owned()))
    }

    /// The parameter's current value.
    ///
    /// # Panics
    /// If `id` was not issued by a store at least this large.
    #[track_caller]
    pub fn get(&self, id: ParamId) -> &ArrayD<F> {
        &self.values[self.checked(id)]
    }

    /// Mutable access to the parameter's value, for optimizers and initializers: in place
    /// when no tape holds the array, on a fresh copy otherwise.
    ///
    /// # Panics
    /// If `id` was not issued by a store at least this large.
    #[track_caller]
    pub fn get_mut(&mut self, id: ParamId) -> &mut ArrayD<F> {
        let i = self.checked(id);
        Arc::make_mut(&mut self.values[i])
    }

    /// Replaces the parameter's value with one of the same shape.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the shapes differ.
    ///
    /// # Panics
    /// If `id` was not issued by a store at least this large.
    #[track_caller]
    pub fn set(&mut self, id: ParamId, value: ArrayD<F>) -> Result<()> {
        let i = self.checked(id);
        if self.values[i].shape() != value.shape() {
            return Err(Error::ShapeMismatch {
                what: "new parameter value",
                expected: self.values[i].shape().to_vec(),
                got: value.shape().to_vec(),
            });
        }
        self.values[i] = Arc::new(crate::ops::standard(value));
        Ok(())
    }

    /// The parameter's full name.
    ///
    /// # Panics
    /// If `id` was not issued by a store at least this large.
    #[track_caller]
    pub fn name(&self, id: ParamId) -> &str {
        &self.names[self.checked(id)]
    }

    /// Stops training the parameter: tapes record it as a constant, so it gets no gradient
    /// and optimizers pass it by.
    ///
    /// # Panics
    /// If `id` was not issued by a store at least this large.
    #[track_caller]
    pub fn freeze(&mut self, id: ParamId) {
        let i = self.checked(id);
        self.frozen[i] = true;
    }

    /// Trains the parameter again after [`freeze`](Self::freeze).
    ///
    /// # Panics
    /// If `id` was not issued by a store at least this large.
    #[track_caller]
    pub fn unfreeze(&mut self, id: ParamId) {
        let i = self.checked(id);
        self.frozen[i] = false;
    }

    /// Whether the parameter is frozen.
    ///
    /// # Panics
    /// If `id` was not issued by a store at least this large.
    #[track_caller]
    pub fn is_frozen(&self, id: ParamId) -> bool {
        self.frozen[self.checked(id)]
    }

    /// The number of parameters.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The total number of scalar elements over all parameters.
    pub fn num_elements(&self) -> usize {
        self.values.iter().map(|v| v.len()).sum()
    }

    /// Every parameter in insertion order: handle, name and value.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &str, &ArrayD<F>)> {
        self.values
            .iter()
            .zip(&self.names)
            .enumerate()
            .map(|(i, (v, n))| (ParamId(i as u32), n.as_str(), &**v))
    }

    /// The parameters whose name is `prefix` or starts with `prefix.`, in insertion order: a
    /// layer's or a model part's parameters (`"encoder"` matches `"encoder.fc1.weight"`, not
    /// `"encoder2.bias"`). The empty prefix matches every parameter.
    pub fn ids_under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = ParamId> + 'a {
        self.iter()
            .filter(move |(_, name, _)| {
                prefix.is_empty()
                    || name
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            })
            .map(|(id, _, _)| id)
    }

    #[track_caller]
    fn checked(&self, id: ParamId) -> usize {
        assert!(
            id.index() < self.values.len(),
            "parameter #{} is not in this store, which holds {} (at {})",
            id.index(),
            self.values.len(),
            Location::caller()
        );
        id.index()
    }
}

fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidParamName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("the name is empty");
    }
    for segment in name.split('.') {
        if segment.is_empty() {
            return bad("a dot-separated segment is empty");
        }
        if !segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return bad("segments may hold only ASCII letters, digits, '_' and '-'");
        }
    }
    Ok(())
}

/// What a tape keeps of the store it is bound to: shared handles to the values (a reference
/// count each, no copy), which are frozen, and the node each parameter was recorded as.
pub(crate) struct Bound<F> {
    values: Vec<Arc<ArrayD<F>>>,
    frozen: Vec<bool>,
    recorded: RefCell<Vec<Option<u32>>>,
}

impl<'p, F: Scalar> Tape<'p, F> {
    /// An empty tape bound to `params`: [`param`](Self::param) reads them. The tape borrows
    /// the store, so parameters can be updated (in place) only once it is dropped.
    pub fn with_params(params: &'p Params<F>) -> Self {
        Self::build(Vec::new(), Some(Self::bind(params)), true)
    }

    /// An inference tape bound to `params`: it computes values as any tape does but records
    /// no graph (no edges, no gradients), for evaluation, sampling and bounds. Backward on it
    /// is an error.
    pub fn inference(params: &'p Params<F>) -> Self {
        Self::build(Vec::new(), Some(Self::bind(params)), false)
    }

    fn bind(params: &Params<F>) -> Bound<F> {
        Bound {
            values: params.values.clone(),
            frozen: params.frozen.clone(),
            recorded: RefCell::new(vec![None; params.len()]),
        }
    }

    /// Whether the tape records a graph for backward (false for [`Tape::inference`]).
    pub fn records_graph(&self) -> bool {
        self.records
    }

    /// The parameter `id` of the store the tape is bound to, as a leaf: differentiable
    /// unless frozen, recorded once however often it is asked for, and shared with the store
    /// without a copy. Its gradient is read with [`Gradients::param`](crate::Gradients::param).
    ///
    /// # Panics
    /// If the tape is not bound to a store ([`Tape::with_params`]) or `id` is not in it.
    #[track_caller]
    pub fn param(&self, id: ParamId) -> Var<'_, F> {
        let location = Location::caller();
        let bound = self.bound.as_ref().unwrap_or_else(|| {
            panic!(
                "Tape::param: this tape is not bound to parameters; create it with \
                 Tape::with_params(&params) (at {location})"
            )
        });
        let i = id.index();
        assert!(
            i < bound.values.len(),
            "Tape::param: parameter #{i} is not in the store this tape is bound to, which \
             holds {} (at {location})",
            bound.values.len()
        );
        if let Some(index) = bound.recorded.borrow()[i] {
            return Var { tape: self, index };
        }
        let (op, requires_grad) = if bound.frozen[i] {
            (Op::Leaf(Leaf::Constant), false)
        } else {
            (Op::Leaf(Leaf::Param(id)), self.records)
        };
        let var = self.push_node(Node {
            op,
            parents: SmallVec::new(),
            value: Value::Shared(Arc::clone(&bound.values[i])),
            requires_grad,
            retain_grad: false,
            location,
        });
        bound.recorded.borrow_mut()[i] = Some(var.index);
        var
    }
}
