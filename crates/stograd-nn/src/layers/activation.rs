//! Elementwise activations, as a value a layer can hold.

use stograd::{Scalar, Var};

/// An elementwise nonlinearity (PyTorch's `nn.ReLU`, `nn.LeakyReLU`, …).
///
/// # Example
/// ```
/// use stograd::ndarray::array;
/// use stograd::Tape;
/// use stograd_nn::layers::Activation;
///
/// let tape = Tape::<f64>::new();
/// let x = tape.constant(array![-1.0, 2.0]);
/// assert_eq!(Activation::Relu.apply(x).value(), array![0.0, 2.0].into_dyn());
/// assert_eq!(Activation::LeakyRelu(0.1).apply(x).value(), array![-0.1, 2.0].into_dyn());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `x` for `x > 0`, `slope·x` otherwise (PyTorch's default slope is 0.01).
    LeakyRelu(f64),
    /// `x` for `x > 0`, `α(eˣ − 1)` otherwise (PyTorch's default `α` is 1).
    Elu(f64),
    /// `x·Φ(x)`, exact (through `erf`).
    Gelu,
    /// `tanh x`.
    Tanh,
    /// `1 / (1 + e⁻ˣ)`.
    Sigmoid,
    /// `ln(1 + eˣ)`.
    Softplus,
    /// `x`: no activation.
    Identity,
}

impl Activation {
    /// Applies the activation to every element.
    #[track_caller]
    pub fn apply<'t, F: Scalar>(self, x: Var<'t, F>) -> Var<'t, F> {
        match self {
            Activation::Relu => x.relu(),
            Activation::LeakyRelu(slope) => x.leaky_relu(F::from_f64(slope)),
            Activation::Elu(alpha) => x.elu(F::from_f64(alpha)),
            Activation::Gelu => x.gelu(),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Softplus => x.softplus(),
            Activation::Identity => x,
        }
    }

    /// The gain [`init`](crate::init) uses for a layer followed by this activation.
    pub fn nonlinearity(self) -> crate::init::Nonlinearity {
        use crate::init::Nonlinearity as N;
        match self {
            Activation::Relu | Activation::Gelu | Activation::Elu(_) | Activation::Softplus => {
                N::Relu
            }
            Activation::LeakyRelu(slope) => N::LeakyRelu(slope),
            Activation::Tanh => N::Tanh,
            Activation::Sigmoid => N::Sigmoid,
            Activation::Identity => N::Linear,
        }
    }
}
