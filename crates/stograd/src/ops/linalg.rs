//! Matrix products: `matmul`, the transpose `t`, and the fused affine map `linear`
//! (PyTorch's `F.linear`: `x Wᵀ + b`).
//!
//! For `C = A B` the backward rule is `∂L/∂A = G Bᵀ` and `∂L/∂B = Aᵀ G` (`G = ∂L/∂C`). A
//! batched `[n, m, k] @ [k, p]` product is one `[n·m, k] @ [k, p]` product, so its `B`
//! gradient is a single matrix product too. The products run on ndarray's `matrixmultiply`
//! backend with its threading enabled.

use std::panic::Location;

use ndarray::{ArrayD, ArrayView2, ArrayViewD, Axis, Ix2, IxDyn};
use smallvec::{SmallVec, smallvec};

use super::{Backward, InputGrads, Op};
use crate::tape::same_tape;
use crate::{Scalar, Var};

/// A linear-algebra op.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LinalgOp {
    MatMul,
    /// Swap of the last two axes.
    Transpose,
    /// `x W (+ b)`; the flag says whether a bias is the third input.
    Linear {
        bias: bool,
    },
}

impl LinalgOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            LinalgOp::MatMul => "matmul",
            LinalgOp::Transpose => "t",
            LinalgOp::Linear { .. } => "linear",
        }
    }

    /// Row `i` of `x @ W` reads row `i` of `x` and all of `W`: the left factor keeps rows
    /// when it has the batch axis (2-D, or batched 3-D), the right one only as the batch of a
    /// `[b, m, k] @ [b, k, n]` product. `linear` is `x @ W + b`: only `x` keeps rows, and
    /// only with at least 2 axes. A transpose of the last two axes keeps rows of a batch of
    /// matrices, not of a single matrix.
    pub(crate) fn keeps_rows(self, input: usize, inputs: &[&[usize]], output: &[usize]) -> bool {
        let aligned = super::rows_aligned(inputs[input], output);
        match self {
            LinalgOp::MatMul => aligned && (input == 0 || inputs[1].len() == 3),
            LinalgOp::Linear { .. } => aligned && input == 0 && inputs[0].len() >= 2,
            LinalgOp::Transpose => aligned && inputs[0].len() >= 3,
        }
    }

    /// A product is linear in either factor with the other held fixed.
    pub(crate) fn linear_in(self, varies: &[bool]) -> bool {
        match self {
            LinalgOp::MatMul | LinalgOp::Linear { .. } => !(varies[0] && varies[1]),
            LinalgOp::Transpose => true,
        }
    }

    pub(crate) fn backward<F: Scalar>(self, b: &Backward<'_, F>) -> InputGrads<F> {
        let g = b.grad;
        match self {
            LinalgOp::MatMul => {
                let (x, y) = (b.inputs[0], b.inputs[1]);
                if x.ndim() == 3 && y.ndim() == 3 {
                    let (mut gx, mut gy) = (ArrayD::zeros(x.raw_dim()), ArrayD::zeros(y.raw_dim()));
                    for i in 0..x.shape()[0] {
                        let xi = matrix(x.index_axis(Axis(0), i));
                        let yi = matrix(y.index_axis(Axis(0), i));
                        let gi = matrix(g.index_axis(Axis(0), i));
                        if b.needs[0] {
                            let mut out = gx
                                .index_axis_mut(Axis(0), i)
                                .into_dimensionality::<Ix2>()
                                .expect("2-D");
                            stograd_gemm::gemm(F::one(), gi, yi.t(), F::zero(), out.view_mut());
                        }
                        if b.needs[1] {
                            let mut out = gy
                                .index_axis_mut(Axis(0), i)
                                .into_dimensionality::<Ix2>()
                                .expect("2-D");
                            stograd_gemm::gemm(F::one(), xi.t(), gi, F::zero(), out.view_mut());
                        }
                    }
                    return smallvec![b.needs[0].then_some(gx), b.needs[1].then_some(gy)];
                }
                let (x2, g2, y2) = (rows(x), rows(g), matrix(y.view()));
                smallvec![
                    b.needs[0].then(|| product(g2, y2.t(), x.shape())),
                    b.needs[1].then(|| product(x2.t(), g2, y.shape())),
                ]
            }
            LinalgOp::Transpose => smallvec![Some(swap_last(g))],
            LinalgOp::Linear { bias } => {
                // y = x Wᵀ + b: ∂x = G W, ∂W = Gᵀ x, ∂b = Σ_rows G
                let (x, w) = (b.inputs[0], b.inputs[1]);
                let (x2, g2, w2) = (rows(x), rows(g), matrix(w.view()));
                let mut grads: InputGrads<F> = smallvec![
                    b.needs[0].then(|| product(g2, w2, x.shape())),
                    b.needs[1].then(|| product(g2.t(), x2, w.shape())),
                ];
                if bias {
                    grads.push(b.needs[2].then(|| g2.sum_axis(Axis(0)).into_dyn()));
                }
                grads
            }
        }
    }
}

/// A 2-D view of a value known to be 2-D.
fn matrix<'a, F: Scalar>(a: ArrayViewD<'a, F>) -> ArrayView2<'a, F> {
    a.into_dimensionality::<Ix2>()
        .expect("checked 2-D at record time")
}

/// The array as a matrix of rows over its last axis: `[d₀, …, dₙ₋₁, k]` → `[d₀⋯dₙ₋₁, k]`.
fn rows<F: Scalar>(a: &ArrayD<F>) -> ArrayView2<'_, F> {
    let (&k, leading) = a.shape().split_last().expect("at least 1-D");
    a.view()
        .into_shape_with_order((leading.iter().product(), k))
        .expect("standard layout")
}

/// `a @ b` in a fresh standard-layout array (from the buffer pool) of `shape`, which holds
/// `a.nrows() · b.ncols()` elements.
fn product<F: Scalar>(a: ArrayView2<'_, F>, b: ArrayView2<'_, F>, shape: &[usize]) -> ArrayD<F> {
    let mut out = crate::pool::for_overwrite::<F>(&[a.nrows(), b.ncols()]);
    let view = out.view_mut().into_dimensionality::<Ix2>().expect("2-D");
    stograd_gemm::gemm(F::one(), a, b, F::zero(), view);
    out.into_shape_with_order(IxDyn(shape))
        .expect("same element count")
}

fn swap_last<F: Scalar>(a: &ArrayD<F>) -> ArrayD<F> {
    let n = a.ndim();
    let mut v = a.view();
    v.swap_axes(n - 2, n - 1);
    // one copy, read in the new row-major order
    v.as_standard_layout().into_owned()
}

impl<'t, F: Scalar> Var<'t, F> {
    /// The matrix product `self @ rhs`.
    ///
    /// Supported shapes: `[m, k] @ [k, n] → [m, n]`; batched `[b, m, k] @ [k, n] → [b, m, n]`
    /// (one matrix applied to every batch element); `[b, m, k] @ [b, k, n] → [b, m, n]`.
    ///
    /// # Panics
    /// On other ranks or mismatched inner dimensions, with both shapes and the caller's
    /// location.
    #[track_caller]
    pub fn matmul(self, rhs: Var<'t, F>) -> Self {
        let location = Location::caller();
        same_tape("matmul", self, rhs);
        let value = {
            let nodes = self.tape.nodes.borrow();
            let (a, b) = (
                self.tape.read(&nodes, self.index),
                self.tape.read(&nodes, rhs.index),
            );
            let (sa, sb) = (a.shape(), b.shape());
            let ok = match (sa.len(), sb.len()) {
                (2, 2) | (3, 2) => sa[sa.len() - 1] == sb[0],
                (3, 3) => sa[0] == sb[0] && sa[2] == sb[1],
                _ => false,
            };
            assert!(
                ok,
                "matmul: shapes {sa:?} and {sb:?} do not multiply (at {location})"
            );
            if sb.len() == 3 {
                let mut out = ArrayD::zeros(IxDyn(&[sa[0], sa[1], sb[2]]));
                for i in 0..sa[0] {
                    let (ai, bi) = (
                        matrix(a.index_axis(Axis(0), i)),
                        matrix(b.index_axis(Axis(0), i)),
                    );
                    let mut oi = out
                        .index_axis_mut(Axis(0), i)
                        .into_dimensionality::<Ix2>()
                        .expect("2-D");
                    stograd_gemm::gemm(F::one(), ai, bi, F::zero(), oi.view_mut());
                }
                out
            } else {
                let mut shape = sa.to_vec();
                *shape.last_mut().expect("2-D or 3-D") = sb[1];
                product(rows(a), matrix(b.view()), &shape)
            }
        };
        self.tape.push(
            Op::Linalg(LinalgOp::MatMul),
            smallvec![self.index, rhs.index],
            value,
            location,
        )
    }

    /// The transpose of a matrix, or of each matrix in a batch: the last two axes swap.
    ///
    /// # Panics
    /// If the value has fewer than two axes.
    #[track_caller]
    pub fn t(self) -> Self {
        let location = Location::caller();
        let value = self.tape.with_value(self.index, |a| {
            assert!(
                a.ndim() >= 2,
                "t: needs at least 2 axes, the shape is {:?} (at {location})",
                a.shape()
            );
            swap_last(a)
        });
        self.tape.push(
            Op::Linalg(LinalgOp::Transpose),
            smallvec![self.index],
            value,
            location,
        )
    }

    /// The affine map `self @ weightᵀ + bias`, fused into one node: one matrix product forward,
    /// two backward, and no intermediate for the bias addition.
    ///
    /// `self` is `[…, in]` (any leading axes), `weight` is `[out, in]` as in PyTorch's
    /// `nn.Linear` (so checkpoints share its layout), `bias` is `[out]`; the result is
    /// `[…, out]`. The backward rule is `∂x = G W`, `∂W = Gᵀ x`, `∂b = Σ_rows G`.
    ///
    /// # Example
    /// ```
    /// use ndarray::array;
    /// use stograd::Tape;
    ///
    /// let tape = Tape::<f32>::new();
    /// let x = tape.constant(array![[1.0, 2.0]]);
    /// let w = tape.variable(array![[1.0, 0.5], [0.0, 1.0], [-1.0, 0.0]]);
    /// let b = tape.variable(array![0.0, 0.0, 3.0]);
    /// assert_eq!(x.linear(w, Some(b)).value(), array![[2.0, 2.0, 2.0]].into_dyn());
    /// ```
    ///
    /// # Panics
    /// If the shapes do not fit, with all of them and the caller's location.
    #[track_caller]
    pub fn linear(self, weight: Var<'t, F>, bias: Option<Var<'t, F>>) -> Self {
        let location = Location::caller();
        same_tape("linear", self, weight);
        let mut parents: SmallVec<[u32; 2]> = smallvec![self.index, weight.index];
        if let Some(b) = bias {
            same_tape("linear", self, b);
            parents.push(b.index);
        }
        let value = {
            let nodes = self.tape.nodes.borrow();
            let (x, w) = (
                self.tape.read(&nodes, self.index),
                self.tape.read(&nodes, weight.index),
            );
            let b = match bias {
                Some(b) => Some(self.tape.read(&nodes, b.index)),
                None => None,
            };
            let fits = x.ndim() >= 1
                && w.ndim() == 2
                && x.shape()[x.ndim() - 1] == w.shape()[1]
                && b.is_none_or(|b| b.shape() == [w.shape()[0]]);
            assert!(
                fits,
                "linear: input {:?}, weight {:?} and bias {:?} do not fit [.., in] @ [out, in]ᵀ + [out] (at {location})",
                x.shape(),
                w.shape(),
                b.map(|b| b.shape())
            );
            let w2 = matrix(w.view());
            let x2 = rows(x);
            let mut out = crate::pool::for_overwrite::<F>(&[x2.nrows(), w2.nrows()]);
            let mut view = out.view_mut().into_dimensionality::<Ix2>().expect("2-D");
            // the bias first, then the product added onto it
            if let Some(b) = b {
                view.assign(&b.broadcast((x2.nrows(), w2.nrows())).expect("bias fits"));
            }
            let beta = if b.is_some() { F::one() } else { F::zero() };
            stograd_gemm::gemm(F::one(), x2, w2.t(), beta, view);
            let mut shape = x.shape().to_vec();
            *shape.last_mut().expect("at least 1-D") = w2.nrows();
            out.into_shape_with_order(IxDyn(&shape))
                .expect("same element count")
        };
        self.tape.push(
            Op::Linalg(LinalgOp::Linear {
                bias: bias.is_some(),
            }),
            parents,
            value,
            location,
        )
    }
}
