//! The affine layer `y = x Wᵀ + b`.

use rand::Rng;
use stograd::{ParamId, Params, Scalar, Tape, Var};

use super::scoped;
use crate::{Result, init};

/// A fully connected layer `y = x Wᵀ + b` (PyTorch's `nn.Linear`): `W` is `[out, in]`, `b` is
/// `[out]`, both initialized as `nn.Linear` does, `U(±1/√in)`.
///
/// # Example
/// ```
/// use rand::SeedableRng;
/// use stograd::ndarray::Array2;
/// use stograd::{Params, Tape};
/// use stograd_nn::layers::Linear;
///
/// let mut params = Params::<f32>::new();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let fc = Linear::new(&mut params, "encoder.fc1", 784, 400, &mut rng)?;
/// assert_eq!(params.get(params.id("encoder.fc1.weight")?).shape(), [400, 784]);
///
/// let tape = Tape::with_params(&params);
/// let x = tape.constant(Array2::<f32>::zeros((128, 784)));
/// assert_eq!(fc.forward(&tape, x).shape(), [128, 400]);
/// # Ok::<(), stograd_nn::Error>(())
/// ```
///
/// # Shapes
/// `x` is `[…, in]` (any leading axes); the output is `[…, out]`.
///
/// PyTorch equivalent: `torch.nn.Linear(in, out, bias=True)`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// `W`, `[out, in]`.
    pub weight: ParamId,
    /// `b`, `[out]`, if the layer has one.
    pub bias: Option<ParamId>,
    /// The input width.
    pub in_features: usize,
    /// The output width.
    pub out_features: usize,
}

impl Linear {
    /// A layer with a bias, its parameters `prefix.weight` and `prefix.bias` added to `params`.
    ///
    /// # Errors
    /// A malformed or taken name; a zero width.
    pub fn new<F: Scalar>(
        params: &mut Params<F>,
        prefix: &str,
        in_features: usize,
        out_features: usize,
        rng: &mut dyn Rng,
    ) -> Result<Self> {
        Self::build(params, prefix, in_features, out_features, true, rng)
    }

    /// A layer without a bias: `y = x Wᵀ`.
    ///
    /// # Errors
    /// A malformed or taken name; a zero width.
    pub fn no_bias<F: Scalar>(
        params: &mut Params<F>,
        prefix: &str,
        in_features: usize,
        out_features: usize,
        rng: &mut dyn Rng,
    ) -> Result<Self> {
        Self::build(params, prefix, in_features, out_features, false, rng)
    }

    fn build<F: Scalar>(
        params: &mut Params<F>,
        prefix: &str,
        in_features: usize,
        out_features: usize,
        bias: bool,
        rng: &mut dyn Rng,
    ) -> Result<Self> {
        if out_features == 0 {
            return Err(crate::Error::InvalidArgument {
                name: "out_features",
                constraint: "positive",
                value: 0.0,
            });
        }
        let w = init::linear_default(&[out_features, in_features], in_features, rng)?;
        let weight = params.insert(&scoped(prefix, "weight"), w)?;
        let bias = if bias {
            let b = init::linear_default(&[out_features], in_features, rng)?;
            Some(params.insert(&scoped(prefix, "bias"), b)?)
        } else {
            None
        };
        Ok(Linear {
            weight,
            bias,
            in_features,
            out_features,
        })
    }

    /// `x Wᵀ + b`.
    ///
    /// # Panics
    /// If `x`'s last axis is not `in_features` (both shapes are named), or the tape is not
    /// bound to the layer's store.
    #[track_caller]
    pub fn forward<'t, F: Scalar>(&self, tape: &'t Tape<'_, F>, x: Var<'t, F>) -> Var<'t, F> {
        x.linear(tape.param(self.weight), self.bias.map(|b| tape.param(b)))
    }
}
