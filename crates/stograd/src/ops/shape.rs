//! Ops that move elements without arithmetic: `reshape`, `unsqueeze`, `broadcast_to`,
//! `slice`, `concat`, `select_rows` and `gather`.
//!
//! Each backward rule is the adjoint of the move: reshape back, sum over broadcast axes,
//! write into zeros at the slice, split along the concatenation axis, and scatter-add for
//! the two indexing ops (an index that repeats accumulates its gradient).

use std::ops::{Bound, RangeBounds};
use std::panic::Location;

use ndarray::{Array, ArrayD, Axis, Dimension, IxDyn, Slice, Zip};
use smallvec::{SmallVec, smallvec};

use super::{Backward, InputGrads, Op, check_axis, check_axis_at, standard};
use crate::broadcast::{broadcast_shape, sum_to};
use crate::tape::same_tape;
use crate::{Scalar, Var};

/// An op that moves elements.
#[derive(Clone, Debug)]
pub(crate) enum ShapeOp {
    Reshape,
    BroadcastTo,
    Slice {
        axis: usize,
        start: usize,
        end: usize,
    },
    Concat {
        axis: usize,
    },
    SelectRows(Vec<usize>),
    Gather {
        axis: usize,
        index: ArrayD<usize>,
    },
}

impl ShapeOp {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            ShapeOp::Reshape => "reshape",
            ShapeOp::BroadcastTo => "broadcast_to",
            ShapeOp::Slice { .. } => "slice",
            ShapeOp::Concat { .. } => "concat",
            ShapeOp::SelectRows(_) => "select_rows",
            ShapeOp::Gather { .. } => "gather",
        }
    }

    /// Moves along later axes keep rows; moves along the leading axis (a slice, a
    /// concatenation, a gather or a row selection along it) and a reshape that changes its
    /// length do not. A row-major reshape that keeps the leading length keeps every row's
    /// elements in that row.
    pub(crate) fn keeps_rows(&self, input: &[usize], output: &[usize]) -> bool {
        match self {
            ShapeOp::Reshape => !input.is_empty() && !output.is_empty() && input[0] == output[0],
            ShapeOp::BroadcastTo => super::rows_aligned(input, output),
            ShapeOp::Slice { axis, .. }
            | ShapeOp::Concat { axis }
            | ShapeOp::Gather { axis, .. } => *axis > 0 && super::rows_aligned(input, output),
            ShapeOp::SelectRows(_) => false,
        }
    }

    pub(crate) fn backward<F: Scalar>(&self, b: &Backward<'_, F>) -> InputGrads<F> {
        let (x, g) = (b.inputs[0], b.grad);
        match self {
            ShapeOp::Reshape => {
                smallvec![Some(
                    g.clone()
                        .into_shape_with_order(x.raw_dim())
                        .expect("same count")
                )]
            }
            ShapeOp::BroadcastTo => smallvec![Some(sum_to(g, x.shape()))],
            ShapeOp::Slice { axis, start, end } => {
                let mut grad = ArrayD::zeros(x.raw_dim());
                grad.slice_axis_mut(Axis(*axis), Slice::from(*start..*end))
                    .assign(g);
                smallvec![Some(grad)]
            }
            ShapeOp::Concat { axis } => {
                let mut offset = 0;
                b.inputs
                    .iter()
                    .zip(b.needs)
                    .map(|(input, &need)| {
                        let len = input.shape()[*axis];
                        let part = g.slice_axis(Axis(*axis), Slice::from(offset..offset + len));
                        offset += len;
                        need.then(|| standard(part.to_owned()))
                    })
                    .collect()
            }
            ShapeOp::SelectRows(indices) => {
                let mut grad = ArrayD::zeros(x.raw_dim());
                for (row, &i) in g.outer_iter().zip(indices) {
                    let mut target = grad.index_axis_mut(Axis(0), i);
                    target += &row;
                }
                smallvec![Some(grad)]
            }
            ShapeOp::Gather { axis, index } => {
                let mut grad = ArrayD::zeros(x.raw_dim());
                Zip::from(grad.lanes_mut(Axis(*axis)))
                    .and(index.lanes(Axis(*axis)))
                    .and(g.lanes(Axis(*axis)))
                    .for_each(|mut out, idx, g| {
                        for (&i, &v) in idx.iter().zip(g) {
                            out[i] += v;
                        }
                    });
                smallvec![Some(grad)]
            }
        }
    }
}

impl<'t, F: Scalar> Var<'t, F> {
    #[track_caller]
    fn move_op(self, op: ShapeOp, value: ArrayD<F>) -> Self {
        self.tape.push(
            Op::Shape(op),
            smallvec![self.index],
            standard(value),
            Location::caller(),
        )
    }

    /// The same elements, in row-major order, under a new shape.
    ///
    /// # Panics
    /// If the element counts differ.
    #[track_caller]
    pub fn reshape(self, shape: &[usize]) -> Self {
        let location = Location::caller();
        let value = self.tape.with_value(self.index, |a| {
            a.clone()
                .into_shape_with_order(IxDyn(shape))
                .unwrap_or_else(|_| {
                    panic!(
                        "reshape: cannot view shape {:?} as {shape:?} (at {location})",
                        a.shape()
                    )
                })
        });
        self.move_op(ShapeOp::Reshape, value)
    }

    /// Inserts an axis of length 1 before position `axis` (`axis == ndim` appends one).
    ///
    /// # Panics
    /// If `axis > ndim`.
    #[track_caller]
    pub fn unsqueeze(self, axis: usize) -> Self {
        let mut shape = self.shape();
        assert!(
            axis <= shape.len(),
            "unsqueeze: axis {axis} is out of range for shape {shape:?} (at {})",
            Location::caller()
        );
        shape.insert(axis, 1);
        self.reshape(&shape)
    }

    /// Repeats the value to `shape` under NumPy's broadcasting rules.
    ///
    /// # Panics
    /// If the value does not broadcast to exactly `shape`.
    #[track_caller]
    pub fn broadcast_to(self, shape: &[usize]) -> Self {
        let location = Location::caller();
        let value = self.tape.with_value(self.index, |a| {
            match (broadcast_shape(a.shape(), shape), a.broadcast(shape)) {
                (Some(s), Some(view)) if s == shape => view.to_owned(),
                _ => panic!(
                    "broadcast_to: shape {:?} does not broadcast to {shape:?} (at {location})",
                    a.shape()
                ),
            }
        });
        self.move_op(ShapeOp::BroadcastTo, value)
    }

    /// The elements whose index along `axis` lies in `range` (e.g. `2..5`, `..3`, `1..`).
    ///
    /// # Panics
    /// If `axis` is out of range or `range` does not fit the axis.
    #[track_caller]
    pub fn slice(self, axis: usize, range: impl RangeBounds<usize>) -> Self {
        let location = Location::caller();
        let (value, start, end) = self.tape.with_value(self.index, |a| {
            check_axis_at("slice", axis, a.shape(), location);
            let len = a.shape()[axis];
            let start = match range.start_bound() {
                Bound::Included(&s) => s,
                Bound::Excluded(&s) => s.saturating_add(1),
                Bound::Unbounded => 0,
            };
            let end = match range.end_bound() {
                Bound::Included(&e) => e.saturating_add(1),
                Bound::Excluded(&e) => e,
                Bound::Unbounded => len,
            };
            assert!(
                start <= end && end <= len,
                "slice: range {start}..{end} does not fit axis {axis} of shape {:?} (at {location})",
                a.shape()
            );
            (a.slice_axis(Axis(axis), Slice::from(start..end)).to_owned(), start, end)
        });
        self.move_op(ShapeOp::Slice { axis, start, end }, value)
    }

    /// Joins values along an existing `axis`; all other axes must agree.
    ///
    /// # Panics
    /// If `vars` is empty, the shapes disagree off `axis`, or the values come from different
    /// tapes.
    #[track_caller]
    pub fn concat(vars: &[Var<'t, F>], axis: usize) -> Self {
        let location = Location::caller();
        let first = *vars
            .first()
            .unwrap_or_else(|| panic!("concat: no values to join (at {location})"));
        // Outside any closure, so the panic names the caller's location.
        for v in vars {
            same_tape("concat", first, *v);
        }
        let value = {
            let nodes = first.tape.nodes.borrow();
            // a loop, not a closure, so that a released value names the caller's line
            let mut views = Vec::with_capacity(vars.len());
            for v in vars {
                views.push(first.tape.read(&nodes, v.index).view());
            }
            check_axis("concat", axis, views[0].shape());
            ndarray::concatenate(Axis(axis), &views).unwrap_or_else(|_| {
                let shapes: Vec<_> = views.iter().map(|v| v.shape().to_vec()).collect();
                panic!("concat: shapes {shapes:?} differ off axis {axis} (at {location})")
            })
        };
        let parents: SmallVec<[u32; 2]> = vars.iter().map(|v| v.index).collect();
        first.tape.push(
            Op::Shape(ShapeOp::Concat { axis }),
            parents,
            standard(value),
            location,
        )
    }

    /// Rows (indices along axis 0) picked by `indices`, which may repeat: an embedding lookup.
    ///
    /// # Panics
    /// If an index is out of range.
    #[track_caller]
    pub fn select_rows(self, indices: &[usize]) -> Self {
        let location = Location::caller();
        let value = self.tape.with_value(self.index, |a| {
            assert!(
                a.ndim() >= 1,
                "select_rows: the value is 0-d (at {location})"
            );
            if let Some(&bad) = indices.iter().find(|&&i| i >= a.shape()[0]) {
                panic!(
                    "select_rows: index {bad} is out of range for shape {:?} (at {location})",
                    a.shape()
                );
            }
            a.select(Axis(0), indices)
        });
        self.move_op(ShapeOp::SelectRows(indices.to_vec()), value)
    }

    /// Picks, along `axis`, the elements that `index` names:
    /// `out[i₀, …, iₐ, …] = self[i₀, …, index[i₀, …, iₐ, …], …]` (PyTorch's `gather`).
    ///
    /// `index` has the same shape as `self` except along `axis`, where it may have any length.
    ///
    /// # Example
    /// ```
    /// use ndarray::array;
    /// use stograd::Tape;
    ///
    /// let tape = Tape::<f64>::new();
    /// let logp = tape.constant(array![[-0.1, -2.0, -3.0], [-1.5, -0.5, -2.5]]);
    /// let picked = logp.gather(1, &array![[0], [2]]);
    /// assert_eq!(picked.value(), array![[-0.1], [-2.5]].into_dyn());
    /// ```
    ///
    /// # Panics
    /// If the shapes do not fit or an index is out of range.
    #[track_caller]
    pub fn gather<D: Dimension>(self, axis: usize, index: &Array<usize, D>) -> Self {
        let location = Location::caller();
        let index = index.view().into_dyn().as_standard_layout().into_owned();
        let value = self.tape.with_value(self.index, |a| {
            check_axis_at("gather", axis, a.shape(), location);
            let fits = index.ndim() == a.ndim()
                && (0..a.ndim()).all(|d| d == axis || index.shape()[d] == a.shape()[d]);
            assert!(
                fits,
                "gather: index shape {:?} does not fit value shape {:?} off axis {axis} (at {location})",
                index.shape(),
                a.shape()
            );
            if let Some(&bad) = index.iter().find(|&&i| i >= a.shape()[axis]) {
                panic!("gather: index {bad} is out of range for axis {axis} of shape {:?} (at {location})", a.shape());
            }
            let mut out = ArrayD::zeros(index.raw_dim());
            Zip::from(out.lanes_mut(Axis(axis)))
                .and(index.lanes(Axis(axis)))
                .and(a.lanes(Axis(axis)))
                .for_each(|mut out, idx, src| {
                    out.iter_mut().zip(idx).for_each(|(o, &i)| *o = src[i]);
                });
            out
        });
        self.move_op(ShapeOp::Gather { axis, index }, value)
    }
}
