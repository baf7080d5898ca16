//! The cost of one training step's gradient estimate.
//!
//! - `score_function_learned_baseline`: a batch of 1024 draws of 784 independent Bernoulli
//!   variables (an MNIST-sized binary latent or output), a per-row cost, and a learned
//!   baseline `h·w + c` from a 16-dimensional feature per row; the tape adds the REINFORCE
//!   terms and the baseline's regression loss at backward.
//! - `pathwise_normal`: a Normal of the same size, reparameterized, with the same cost.
//!
//! Both are `f32`, forward + backward, with the parameters moved onto a fresh tape each step.
//! Run with `cargo bench -p stograd-benches --bench estimators`; results are in docs/benchmarks.md.
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array1;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use stograd::dist::{Bernoulli, Normal};
use stograd::estimator::Baseline;
use stograd::{Estimator, Tape};
use stograd_benches::filled;

const ROWS: usize = 1024;
const COLS: usize = 784;
const FEATURES: usize = 16;

fn step_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("estimator_step");
    group.throughput(Throughput::Elements((ROWS * COLS) as u64));
    let logits = filled(ROWS, COLS, 1);
    let target = filled(ROWS, COLS, 2).mapv(|v| if v > 0.0 { 1.0 } else { 0.0 });
    let features = filled(ROWS, FEATURES, 3);
    let weight = Array1::from_elem(FEATURES, 0.1f32).insert_axis(ndarray::Axis(1));
    let mut rng = SmallRng::seed_from_u64(0);

    group.bench_function("score_function_learned_baseline", |b| {
        b.iter_batched(
            || (logits.clone(), weight.clone()),
            |(logits, weight)| {
                let tape = Tape::<f32>::new();
                let logits = tape.variable(logits);
                let w = tape.variable(weight);
                let baseline = tape.constant(features.clone()).matmul(w).reshape(&[ROWS]);
                let q = Bernoulli::from_logits(logits).unwrap();
                let estimator = Estimator::ScoreFunction {
                    baseline: Baseline::Learned(baseline),
                };
                let x = tape.sample_with(&q, estimator, &mut rng).unwrap();
                let cost = (x - tape.constant(target.clone())).square().sum_axis(1);
                black_box(cost.backward().unwrap())
            },
            BatchSize::PerIteration,
        )
    });

    group.bench_function("pathwise_normal", |b| {
        b.iter_batched(
            || logits.clone(),
            |loc| {
                let tape = Tape::<f32>::new();
                let loc = tape.variable(loc);
                let q = Normal::new(loc, tape.scalar(1.0)).unwrap();
                let z = tape.sample(&q, &mut rng);
                let cost = (z - tape.constant(target.clone())).square().sum_axis(1);
                black_box(cost.backward().unwrap())
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).sample_size(30);
    targets = step_cost
}
criterion_main!(benches);
