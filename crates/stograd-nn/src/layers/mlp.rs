//! A multilayer perceptron: linear layers with an activation between them.

use rand::Rng;
use stograd::{Params, Scalar, Tape, Var};

use super::{Activation, Linear, scoped};
use crate::{Error, Result};

/// Linear layers of the given widths with `activation` between them (none after the last),
/// named `prefix.0`, `prefix.1`, …
///
/// # Example
/// ```
/// use rand::SeedableRng;
/// use stograd::ndarray::Array2;
/// use stograd::{Params, Tape};
/// use stograd_nn::layers::{Activation, Mlp};
///
/// let mut params = Params::<f32>::new();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let mlp = Mlp::new(&mut params, "classifier", &[64, 32, 10], Activation::Relu, &mut rng)?;
/// assert_eq!(params.name(mlp.layers[1].weight), "classifier.1.weight");
///
/// let tape = Tape::with_params(&params);
/// let logits = mlp.forward(&tape, tape.constant(Array2::<f32>::zeros((5, 64))));
/// assert_eq!(logits.shape(), [5, 10]);
/// # Ok::<(), stograd_nn::Error>(())
/// ```
///
/// # Shapes
/// `x` is `[…, widths[0]]`; the output is `[…, widths[last]]`.
///
/// PyTorch equivalent: `nn.Sequential(nn.Linear(w0, w1), act, nn.Linear(w1, w2), …)` (whose
/// layers are numbered with the activations, `0, 2, 4, …`; here only the linear layers are).
#[derive(Clone, Debug)]
pub struct Mlp {
    /// The linear layers, in order.
    pub layers: Vec<Linear>,
    /// The activation between layers.
    pub activation: Activation,
}

impl Mlp {
    /// Layers `widths[i] → widths[i + 1]`, each with a bias.
    ///
    /// # Errors
    /// Fewer than two widths, a zero width, or a name that is malformed or taken.
    pub fn new<F: Scalar>(
        params: &mut Params<F>,
        prefix: &str,
        widths: &[usize],
        activation: Activation,
        rng: &mut dyn Rng,
    ) -> Result<Self> {
        if widths.len() < 2 {
            return Err(Error::InvalidArgument {
                name: "number of widths",
                constraint: "at least 2 (input and output)",
                value: widths.len() as f64,
            });
        }
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| Linear::new(params, &scoped(prefix, &i.to_string()), w[0], w[1], rng))
            .collect::<Result<_>>()?;
        Ok(Mlp { layers, activation })
    }

    /// The output of the last layer (before any activation).
    ///
    /// # Panics
    /// If `x`'s last axis is not the first width, or the tape is not bound to the store.
    #[track_caller]
    pub fn forward<'t, F: Scalar>(&self, tape: &'t Tape<'_, F>, x: Var<'t, F>) -> Var<'t, F> {
        let last = self.layers.len() - 1;
        self.layers.iter().enumerate().fold(x, |h, (i, layer)| {
            let y = layer.forward(tape, h);
            if i < last {
                self.activation.apply(y)
            } else {
                y
            }
        })
    }

    /// The input width.
    pub fn in_features(&self) -> usize {
        self.layers[0].in_features
    }

    /// The output width.
    pub fn out_features(&self) -> usize {
        self.layers[self.layers.len() - 1].out_features
    }
}
