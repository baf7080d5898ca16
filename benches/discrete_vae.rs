//! One training step of the discrete VAE with each gradient estimator.
//!
//! `discrete_vae_step/<estimator>`: Jang, Gu & Poole's MNIST model (784-512-256-(20 × 10
//! categorical)-256-512-784, ReLU, Bernoulli decoder, batch 100, f32): record the ELBO with the
//! estimator's sample node, backward, Adam, from one of rayon's threads as the
//! `vae_discrete` example runs it. `rloo` draws 4 latents per example (4 decoder passes), and so
//! does `gumbel-4-draws`, its like-for-like reference; the others one. The target: a
//! score-function step at most 1.5× a Gumbel-softmax step.
//!
//! Run with `cargo bench -p stograd-benches --bench discrete_vae`; results are in
//! docs/benchmarks.md.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use stograd::estimator::EmaBaseline;
use stograd::{Params, Tape};
use stograd_benches::filled;
use stograd_nn::layers::Activation;
use stograd_nn::optim::{Adam, AdamConfig, Optimizer};
use stograd_nn::vae::{BaselineNet, DiscreteEstimator, DiscreteVae, DiscreteVaeConfig};

const BATCH: usize = 100;

fn step(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new().build().unwrap();
    // binary pixels, as dynamic binarization gives
    let x = filled(BATCH, 784, 3).mapv(|v| if v > 0.0 { 1.0f32 } else { 0.0 });
    let mut group = c.benchmark_group("discrete_vae_step");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    // rloo needs several draws: the Gumbel step with as many is its like-for-like reference
    let runs = DiscreteEstimator::ALL
        .into_iter()
        .map(|e| (e, if e == DiscreteEstimator::Rloo { 4 } else { 1 }))
        .chain([(DiscreteEstimator::Gumbel, 4)]);
    for (estimator, samples) in runs {
        let mut params = Params::<f32>::new();
        let mut rng = StdRng::seed_from_u64(0);
        let vae =
            DiscreteVae::new(&mut params, "vae", DiscreteVaeConfig::default(), &mut rng).unwrap();
        let baseline = BaselineNet::new(
            &mut params,
            "baseline",
            &[784, 256],
            Activation::Relu,
            &mut rng,
        )
        .unwrap();
        let mut opt = Adam::new(AdamConfig::default()).unwrap();
        let name = match samples {
            1 => estimator.name().to_string(),
            k => format!("{}-{k}-draws", estimator.name()),
        };
        group.bench_function(name, |b| {
            pool.install(|| {
                // the moving average's state is not shared between threads: made on the pool's
                let ema = EmaBaseline::new(0.9).unwrap();
                b.iter(|| {
                    let grads = {
                        let tape = Tape::with_params(&params);
                        let xv = tape.constant(x.clone());
                        let est = estimator
                            .estimator(0.5, samples, &ema, || baseline.forward(&tape, xv, samples));
                        let elbo = vae.elbo(&tape, xv, est, samples, &mut rng).unwrap();
                        elbo.loss().backward().unwrap()
                    };
                    opt.step(&mut params, &grads);
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
