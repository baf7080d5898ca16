//! Layers: plain structs of [`ParamId`](stograd::ParamId)s, built from a parameter store, a
//! name prefix and a generator, with `forward(&self, tape, x)`.
//!
//! A layer's parameters are named under its prefix, so a model's parameter names are its
//! checkpoint keys and read like PyTorch's state-dict keys: `Linear::new(&mut params,
//! "encoder.fc1", 784, 400, &mut rng)` owns `encoder.fc1.weight` (`[400, 784]`, PyTorch's
//! layout) and `encoder.fc1.bias`. The tape passed to `forward` must be bound to the same
//! store ([`Tape::with_params`](stograd::Tape::with_params)).

mod activation;
mod linear;
mod mlp;

pub use activation::Activation;
pub use linear::Linear;
pub use mlp::Mlp;

/// `prefix.name`, or `name` alone under the empty prefix.
pub(crate) fn scoped(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}
