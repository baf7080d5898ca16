//! A multilayer perceptron of Bayesian linear layers.

use ndarray::Array2;
use rand::Rng;
use stograd::{Params, Scalar, Tape, Var};

use super::{BayesianLinear, BayesianLinearConfig, Mode};
use crate::layers::{Activation, scoped};
use crate::{Error, Result};

/// Bayesian linear layers of the given widths with `activation` between them (none after
/// the last), named `prefix.0`, `prefix.1`, …, all with the same [`BayesianLinearConfig`].
///
/// # Example
/// Training on the embedded digits with the per-example negative ELBO, and a prediction
/// from 10 samples:
/// ```
/// use rand::SeedableRng;
/// use stograd::{Params, Tape};
/// use stograd_nn::bayes::{kl_scale, BayesianMlp, ClassPrediction, Mode};
/// use stograd_nn::data::{self, Batches};
/// use stograd_nn::layers::Activation;
/// use stograd_nn::loss::cross_entropy;
/// use stograd_nn::optim::{Adam, AdamConfig, Optimizer};
///
/// let (train, test) = data::digits::<f32>().split(300, &mut data::epoch_rng(0, 0))?;
/// let mut params = Params::new();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let net = BayesianMlp::new(&mut params, "net", &[64, 64, 10], Activation::Relu, Default::default(), &mut rng)?;
/// let mut opt = Adam::new(AdamConfig { lr: 3e-3, ..AdamConfig::default() })?;
/// let kl_weight = kl_scale::per_example(train.len())? as f32;
/// for epoch in 1..=3 {
///     for batch in Batches::new(&train, 64, data::epoch_rng(0, epoch))? {
///         let grads = {
///             let tape = Tape::with_params(&params);
///             let x = tape.constant(batch.images);
///             let (logits, kl) = net.forward_with_kl(&tape, x, Mode::LocalReparam, &mut rng)?;
///             let loss = cross_entropy(logits, &batch.labels).mean() + kl * kl_weight;
///             loss.backward()?
///         };
///         opt.step(&mut params, &grads);
///     }
/// }
/// let samples = net.sample_outputs(&params, test.images(), 10, Mode::LocalReparam, &mut rng)?;
/// let prediction = ClassPrediction::from_logits(&samples)?;
/// assert!(prediction.accuracy(test.labels())? > 0.7);
/// # Ok::<(), stograd_nn::Error>(())
/// ```
///
/// # Shapes
/// `x` is `[…, widths[0]]`; the output is `[…, widths[last]]`.
#[derive(Clone, Debug)]
pub struct BayesianMlp {
    /// The layers, in order.
    pub layers: Vec<BayesianLinear>,
    /// The activation between layers.
    pub activation: Activation,
}

impl BayesianMlp {
    /// Layers `widths[i] → widths[i + 1]`.
    ///
    /// # Errors
    /// Fewer than two widths, a zero width, a bad `config`, or a name that is malformed or
    /// taken.
    pub fn new<F: Scalar>(
        params: &mut Params<F>,
        prefix: &str,
        widths: &[usize],
        activation: Activation,
        config: BayesianLinearConfig,
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
            .map(|(i, w)| {
                let name = scoped(prefix, &i.to_string());
                BayesianLinear::new(params, &name, w[0], w[1], config, rng)
            })
            .collect::<Result<_>>()?;
        Ok(BayesianMlp { layers, activation })
    }

    /// The output of the last layer (before any activation), every layer in `mode`.
    ///
    /// # Errors
    /// As [`BayesianLinear::forward`].
    ///
    /// # Panics
    /// If `x`'s last axis is not the first width, or the tape is not bound to the store.
    #[track_caller]
    pub fn forward<'t, F: Scalar>(
        &self,
        tape: &'t Tape<'_, F>,
        x: Var<'t, F>,
        mode: Mode,
        rng: &mut dyn Rng,
    ) -> Result<Var<'t, F>> {
        self.run(x, |layer, h| {
            layer.forward(tape, h, mode, rng).map(|h| (h, None))
        })
        .map(|(h, _)| h)
    }

    /// [`forward`](Self::forward) and [`kl`](Self::kl) together, each layer's posterior
    /// variances shared between them (see [`BayesianLinear::forward_with_kl`]): the cheaper
    /// way to record a training step.
    ///
    /// # Errors
    /// As [`BayesianLinear::forward`].
    ///
    /// # Panics
    /// As [`forward`](Self::forward).
    #[track_caller]
    pub fn forward_with_kl<'t, F: Scalar>(
        &self,
        tape: &'t Tape<'_, F>,
        x: Var<'t, F>,
        mode: Mode,
        rng: &mut dyn Rng,
    ) -> Result<(Var<'t, F>, Var<'t, F>)> {
        let (h, kl) = self.run(x, |layer, h| {
            layer
                .forward_with_kl(tape, h, mode, rng)
                .map(|(h, kl)| (h, Some(kl)))
        })?;
        Ok((h, kl.expect("an MLP has a layer")))
    }

    /// Runs `layer_forward` through the layers with the activation between them, summing
    /// the KLs it returns.
    #[track_caller]
    fn run<'t, F: Scalar>(
        &self,
        x: Var<'t, F>,
        mut layer_forward: impl FnMut(
            &BayesianLinear,
            Var<'t, F>,
        ) -> Result<(Var<'t, F>, Option<Var<'t, F>>)>,
    ) -> Result<(Var<'t, F>, Option<Var<'t, F>>)> {
        let last = self.layers.len() - 1;
        let (mut h, mut total) = (x, None);
        for (i, layer) in self.layers.iter().enumerate() {
            let (out, kl) = layer_forward(layer, h)?;
            total = match (total, kl) {
                (Some(t), Some(kl)) => Some(t + kl),
                (t, kl) => t.or(kl),
            };
            h = if i < last {
                self.activation.apply(out)
            } else {
                out
            };
        }
        Ok((h, total))
    }

    /// The sum of the layers' [`kl`](BayesianLinear::kl)s.
    ///
    /// # Panics
    /// If the tape is not bound to the store.
    pub fn kl<'t, F: Scalar>(&self, tape: &'t Tape<'_, F>, rng: &mut dyn Rng) -> Var<'t, F> {
        self.layers
            .iter()
            .map(|layer| layer.kl(tape, rng))
            .reduce(|a, b| a + b)
            .expect("an MLP has a layer")
    }

    /// `samples` outputs for `x`, each from its own forward pass in `mode` on an inference
    /// tape: the input of [`PredictiveMoments`](super::PredictiveMoments) and
    /// [`ClassPrediction`](super::ClassPrediction).
    ///
    /// # Errors
    /// As [`BayesianLinear::forward`], and for `samples = 0`.
    ///
    /// # Panics
    /// If `x` is not `[b, widths[0]]`.
    #[track_caller]
    pub fn sample_outputs<F: Scalar>(
        &self,
        params: &Params<F>,
        x: &Array2<F>,
        samples: usize,
        mode: Mode,
        rng: &mut dyn Rng,
    ) -> Result<Vec<Array2<F>>> {
        if samples == 0 {
            return Err(Error::InvalidArgument {
                name: "samples",
                constraint: "at least 1",
                value: 0.0,
            });
        }
        (0..samples)
            .map(|_| {
                let tape = Tape::inference(params);
                let out = self.forward(&tape, tape.constant(x.clone()), mode, rng)?;
                Ok(out
                    .value()
                    .into_dimensionality()
                    .expect("a 2-D input gives a 2-D output"))
            })
            .collect()
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
