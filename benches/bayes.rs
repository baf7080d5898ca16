//! The Bayesian MLP's training step against its deterministic twin, and the Bayesian layer
//! against a `Linear` of the same size.
//!
//! - `bayes_mlp_784_400_10/local_reparam` and `/deterministic`: one Adam step (lr 1e-3) of
//!   the MNIST-shaped 784-400-10 ReLU classifier at batch 128 in f32, as
//!   `shared/bench/bayes_linear.py` times it in PyTorch: both layers Bayesian in
//!   `LocalReparam` mode, loss `mean cross-entropy + KL(q ‖ N(0, 1)) / 60000`, against the
//!   same MLP of `Linear` layers on the mean cross-entropy. Run on one of rayon's threads,
//!   as the examples run their loops; `_main` variants from the main thread.
//! - `layer_784_400/bayesian` and `/linear`: one layer's forward, backward (its input a
//!   constant, as a first layer's) and Adam step, the Bayesian one with its analytic KL;
//!   `/bayesian_no_kl` leaves the KL out.
//!
//! Run with `cargo bench -p stograd-benches --bench bayes`; results and the PyTorch
//! comparison are in docs/benchmarks.md.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::Array2;
use rand::SeedableRng;
use rand::rngs::StdRng;
use stograd::{Params, Tape};
use stograd_benches::filled;
use stograd_nn::bayes::{BayesianLinear, BayesianMlp, Mode};
use stograd_nn::layers::{Activation, Linear, Mlp};
use stograd_nn::loss::cross_entropy;
use stograd_nn::optim::{Adam, AdamConfig, Optimizer};

const BATCH: usize = 128;
const TRAIN: f32 = 60_000.0;

/// MNIST-like pixels in [0, 1], and labels.
fn batch() -> (Array2<f32>, Vec<usize>) {
    let x = filled(BATCH, 784, 7).mapv(|v| v + 0.5);
    (x, (0..BATCH).map(|i| i % 10).collect())
}

fn adam() -> Adam<f32> {
    Adam::new(AdamConfig::default()).unwrap()
}

fn mlp_step(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new().build().unwrap();
    let (x, labels) = batch();
    let mut rng = StdRng::seed_from_u64(0);

    let mut params = Params::<f32>::new();
    let net = BayesianMlp::new(
        &mut params,
        "net",
        &[784, 400, 10],
        Activation::Relu,
        Default::default(),
        &mut rng,
    )
    .unwrap();
    let mut opt = adam();
    let mut bayes = || {
        let grads = {
            let tape = Tape::with_params(&params);
            let (logits, kl) = net
                .forward_with_kl(
                    &tape,
                    tape.constant(x.clone()),
                    Mode::LocalReparam,
                    &mut rng,
                )
                .unwrap();
            (cross_entropy(logits, &labels).mean() + kl * (1.0 / TRAIN))
                .backward()
                .unwrap()
        };
        opt.step(&mut params, &grads);
    };
    c.bench_function("bayes_mlp_784_400_10/local_reparam", |b| {
        b.iter(|| pool.install(&mut bayes))
    });
    c.bench_function("bayes_mlp_784_400_10/local_reparam_main", |b| {
        b.iter(&mut bayes)
    });

    let mut params = Params::<f32>::new();
    let mlp = Mlp::new(
        &mut params,
        "net",
        &[784, 400, 10],
        Activation::Relu,
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap();
    let mut opt = adam();
    let mut deterministic = || {
        let grads = {
            let tape = Tape::with_params(&params);
            let logits = mlp.forward(&tape, tape.constant(x.clone()));
            cross_entropy(logits, &labels).mean().backward().unwrap()
        };
        opt.step(&mut params, &grads);
    };
    c.bench_function("bayes_mlp_784_400_10/deterministic", |b| {
        b.iter(|| pool.install(&mut deterministic))
    });
    c.bench_function("bayes_mlp_784_400_10/deterministic_main", |b| {
        b.iter(&mut deterministic)
    });
}

fn layer(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new().build().unwrap();
    let (x, _) = batch();
    let mut rng = StdRng::seed_from_u64(1);

    let mut params = Params::<f32>::new();
    let fc =
        BayesianLinear::new(&mut params, "fc", 784, 400, Default::default(), &mut rng).unwrap();
    let mut opt = adam();
    for (name, with_kl) in [("bayesian", true), ("bayesian_no_kl", false)] {
        let mut step = || {
            let grads = {
                let tape = Tape::with_params(&params);
                let x = tape.constant(x.clone());
                let loss = if with_kl {
                    let (y, kl) = fc
                        .forward_with_kl(&tape, x, Mode::LocalReparam, &mut rng)
                        .unwrap();
                    y.sum() + kl * (1.0 / TRAIN)
                } else {
                    let y = fc.forward(&tape, x, Mode::LocalReparam, &mut rng).unwrap();
                    y.sum()
                };
                loss.backward().unwrap()
            };
            opt.step(&mut params, &grads);
        };
        c.bench_function(&format!("layer_784_400/{name}"), |b| {
            b.iter(|| pool.install(&mut step))
        });
    }

    let mut params = Params::<f32>::new();
    let fc = Linear::new(&mut params, "fc", 784, 400, &mut rng).unwrap();
    let mut opt = adam();
    let mut step = || {
        let grads = {
            let tape = Tape::with_params(&params);
            fc.forward(&tape, tape.constant(x.clone()))
                .sum()
                .backward()
                .unwrap()
        };
        opt.step(&mut params, &grads);
    };
    c.bench_function("layer_784_400/linear", |b| {
        b.iter(|| pool.install(&mut step))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).sample_size(30);
    targets = mlp_step, layer
}
criterion_main!(benches);
