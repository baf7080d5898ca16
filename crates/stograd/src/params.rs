//! Named arrays that outlive a tape: the trainable state of a model.

use std::collections::HashMap;

use ndarray::ArrayD;

use crate::{Error, Result, Scalar};

/// A copyable handle to one array in a [`Params`] store.
///
/// Handles index the store that issued them; using one with another store gives whatever that
/// store holds at the same position (or a panic if it has fewer arrays).
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
/// letters, digits, `_` and `-`. They key checkpoints and let a layer find its own parameters
/// under a prefix. A [`Tape`](crate::Tape) reads parameters with
/// [`Tape::param`](crate::Tape::param); optimizers update them through [`Params::get_mut`].
///
/// # Example
/// ```
/// use ndarray::ArrayD;
/// use stograd::Params;
///
/// let mut params = Params::<f32>::new();
/// let w = params.insert("fc1.weight", ArrayD::zeros(vec![3, 2]))?;
/// assert_eq!(params.name(w), "fc1.weight");
/// assert_eq!(params.id("fc1.weight")?, w);
/// assert!(params.insert("fc1..bias", ArrayD::zeros(vec![2])).is_err());
/// # Ok::<(), stograd::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Params<F: Scalar> {
    values: Vec<ArrayD<F>>,
    names: Vec<String>,
    by_name: HashMap<String, ParamId>,
}

impl<F: Scalar> Params<F> {
    /// An empty store.
    pub fn new() -> Self {
        Params {
            values: Vec::new(),
            names: Vec::new(),
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
        self.values.push(value);
        self.names.push(name.to_owned());
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
    pub fn get(&self, id: ParamId) -> &ArrayD<F> {
        &self.values[id.index()]
    }

    /// Mutable access to the parameter's value, for optimizers and initialisers.
    ///
    /// # Panics
    /// If `id` was not issued by a store at least this large.
    pub fn get_mut(&mut self, id: ParamId) -> &mut ArrayD<F> {
        &mut self.values[id.index()]
    }

    /// Replaces the parameter's value with one of the same shape.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the shapes differ.
    pub fn set(&mut self, id: ParamId, value: ArrayD<F>) -> Result<()> {
        let slot = &mut self.values[id.index()];
        if slot.shape() != value.shape() {
            return Err(Error::ShapeMismatch {
                what: "new parameter value",
                expected: slot.shape().to_vec(),
                got: value.shape().to_vec(),
            });
        }
        *slot = value;
        Ok(())
    }

    /// The parameter's full name.
    pub fn name(&self, id: ParamId) -> &str {
        &self.names[id.index()]
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
        self.values.iter().map(ArrayD::len).sum()
    }

    /// Every handle with its name and value, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &str, &ArrayD<F>)> {
        self.values
            .iter()
            .zip(&self.names)
            .enumerate()
            .map(|(i, (v, n))| (ParamId(i as u32), n.as_str(), v))
    }

    /// The handles whose names lie under `prefix`: the name equals it or continues it with a
    /// `.` (so `"enc"` matches `"enc.w"` but not `"encoder.w"`).
    pub fn ids_under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = ParamId> + 'a {
        self.iter()
            .filter(move |(_, name, _)| {
                name.strip_prefix(prefix)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            })
            .map(|(id, _, _)| id)
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
