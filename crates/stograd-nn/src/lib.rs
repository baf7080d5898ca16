//! # stograd-nn
//!
//! Layers, initializers, optimizers, data, checkpoints and a VAE on the [`stograd`] engine.
//!
//! A model is a plain struct of parameter handles built from a [`Params`](stograd::Params)
//! store under a name prefix; a step records the loss on a tape bound to the store, takes
//! its gradients, drops the tape and steps the optimizer, which then updates the arrays in
//! place:
//!
//! ```
//! use rand::SeedableRng;
//! use stograd::Params;
//! use stograd::Tape;
//! use stograd_nn::data::{self, Batches};
//! use stograd_nn::layers::{Activation, Mlp};
//! use stograd_nn::loss::{accuracy, cross_entropy};
//! use stograd_nn::optim::{Adam, AdamConfig, Optimizer};
//! use stograd_nn::checkpoint::{self, Checkpoint};
//!
//! let (train, test) = data::digits::<f32>().split(297, &mut data::epoch_rng(0, 0))?;
//! let mut params = Params::new();
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let model = Mlp::new(&mut params, "classifier", &[64, 64, 10], Activation::Relu, &mut rng)?;
//! let mut opt = Adam::new(AdamConfig { lr: 3e-3, ..AdamConfig::default() })?;
//!
//! for epoch in 1..=3 {
//!     for batch in Batches::new(&train, 64, data::epoch_rng(0, epoch))? {
//!         let grads = {
//!             let tape = Tape::with_params(&params);
//!             let logits = model.forward(&tape, tape.constant(batch.images));
//!             cross_entropy(logits, &batch.labels).mean().backward()?
//!         }; // the tape is gone: the step updates the parameters in place
//!         opt.step(&mut params, &grads);
//!     }
//! }
//! let logits = {
//!     let tape = Tape::inference(&params); // evaluation: no graph is recorded
//!     model.forward(&tape, tape.constant(test.images().clone())).value()
//! };
//! let acc = accuracy(&logits.into_dimensionality()?, test.labels());
//! assert!(acc > 0.8, "{acc}");
//!
//! // a checkpoint PyTorch's safetensors can read, with the optimizer's state beside
//! let path = std::env::temp_dir().join("stograd-nn-tour.safetensors");
//! checkpoint::save(&path, &params, &Checkpoint::default().with_state("optimizer", opt.state_dict(&params)))?;
//! let restored = checkpoint::load(&path, &mut params)?;
//! opt.load_state_dict(&params, &restored.states["optimizer"])?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! | module | what |
//! |---|---|
//! | [`layers`] | [`Linear`](layers::Linear), [`Mlp`](layers::Mlp), [`Activation`](layers::Activation) |
//! | [`init`] | `torch.nn.init`'s initializers |
//! | [`loss`] | cross-entropy, accuracy |
//! | [`optim`] | SGD, Adam, AdamW, groups, schedules |
//! | [`parallel`] | data-parallel steps: a batch in shards, a tape per core |
//! | [`data`] | IDX files, the embedded digits, MNIST, mini-batches |
//! | [`checkpoint`] | safetensors checkpoints, written atomically |
//! | [`fs`] | atomic file writes |
//! | [`image`] | PNG grids of images |
//! | [`plot`] | PNG charts: curves, bands, histograms |
//! | [`vae`] | variational autoencoders, ELBO and IWAE bounds |
//! | [`bayes`] | Bayesian linear layers (local reparameterization, Flipout), KL scales, predictive uncertainty, calibration |
//!
//! ## Threads
//!
//! Large matrix products and elementwise ops run on rayon's thread pool. Called from a thread
//! outside the pool (such as `main`), each of them is handed to the pool and waited for, two
//! thread wake-ups per kernel; run the training loop on one of the pool's threads instead,
//! and the kernels are shared from there (on a 2-core virtual machine, an MNIST VAE epoch took
//! 1.7–2.2 s so against 2.0–2.6 s from `main`, in alternating runs):
//!
//! ```
//! let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build()?;
//! pool.install(|| {
//!     // the training loop
//! });
//! # Ok::<(), rayon::ThreadPoolBuildError>(())
//! ```
//!
//! At the sizes of a VAE step most kernels are too small to split well, so the `vae` example
//! goes further and splits the batch instead: [`parallel::DataParallel`] records a tape per
//! shard of rows, each on a core of its own, and sums the shards' gradients. With two shards
//! of 64 rows an MNIST epoch took 1.90–2.19 s against 2.91–3.10 s with one (alternating runs
//! of `--shards 2` and `--shards 1`, Intel Xeon with 2 cores, 2026-12-03).

mod error;
mod state;

pub mod bayes;
pub mod checkpoint;
pub mod data;
pub mod fs;
pub mod image;
pub mod init;
pub mod layers;
pub mod loss;
pub mod optim;
pub mod parallel;
pub mod plot;
pub mod vae;

pub use error::{Error, Result};
pub use state::StateDict;
