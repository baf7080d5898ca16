//! Pathwise sampling and densities: `rsample` + `log_prob`, forward and forward + backward.
//!
//! - `normal`: a Normal over 10⁶ elements and over 2,560 elements (a VAE batch of 128 × 20
//!   latents), `f32`, with `loc` and `scale` full-size parameters as an encoder would output.
//! - `mvn_cholesky`: a 64-dimensional `MultivariateNormal` (one `scale_tril`) over a batch of
//!   1024, `f32`.
//! - `mvn_low_rank`: a rank-8 `LowRankMultivariateNormal` with d = 64 over a batch of 1024.
//!
//! Throughput is in sampled elements (rows × d for the multivariate families). Run with
//! `cargo bench -p stograd-benches --bench distributions`; results are in docs/benchmarks.md.
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use stograd::Tape;
use stograd::dist::{Distribution, LowRankMultivariateNormal, MultivariateNormal, Normal};

/// Times `step` on fresh copies of `inputs`, copying outside the timed region: a training step
/// finds its parameters already computed, and the copy is not the work being measured. The
/// tape is dropped inside the timed region, as at the end of a step.
fn timed_steps<I: Clone, O>(iters: u64, inputs: &I, mut step: impl FnMut(I) -> O) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let input = inputs.clone();
        let start = Instant::now();
        black_box(step(input));
        total += start.elapsed();
    }
    total
}

fn normal(c: &mut Criterion) {
    let mut group = c.benchmark_group("normal_rsample_log_prob");
    for n in [2_560usize, 1_000_000] {
        let inputs = (
            Array1::from_shape_fn(n, |i| (i % 7) as f32 * 0.1),
            Array1::from_shape_fn(n, |i| 0.5 + (i % 5) as f32 * 0.1),
        );
        let mut rng = SmallRng::seed_from_u64(0);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("forward", n), &n, |b, _| {
            b.iter_custom(|iters| {
                timed_steps(iters, &inputs, |(loc, scale)| {
                    let tape = Tape::<f32>::with_capacity(8);
                    let q = Normal::new(tape.constant(loc), tape.constant(scale)).unwrap();
                    let z = tape.sample(&q, &mut rng);
                    q.log_prob(z).len()
                })
            })
        });
        group.bench_with_input(BenchmarkId::new("forward_backward", n), &n, |b, _| {
            b.iter_custom(|iters| {
                timed_steps(iters, &inputs, |(loc, scale)| {
                    let tape = Tape::<f32>::with_capacity(12);
                    let (loc, scale) = (tape.variable(loc), tape.variable(scale));
                    let q = Normal::new(loc, scale).unwrap();
                    let z = tape.sample(&q, &mut rng);
                    let grads = q.log_prob(z).sum().backward().unwrap();
                    grads.wrt(scale).map(|g| g.len())
                })
            })
        });
    }
    group.finish();
}

fn multivariate(c: &mut Criterion) {
    const BATCH: usize = 1024;
    const D: usize = 64;
    const RANK: usize = 8;
    let mut group = c.benchmark_group("mvn_rsample_log_prob");
    group.throughput(Throughput::Elements((BATCH * D) as u64));
    let loc = Array2::from_shape_fn((BATCH, D), |(i, j)| ((i + 3 * j) % 11) as f32 * 0.05);
    // A well-conditioned lower-triangular factor.
    let scale_tril = Array2::from_shape_fn((D, D), |(i, j)| match i.cmp(&j) {
        std::cmp::Ordering::Less => 0.0,
        std::cmp::Ordering::Equal => 1.0 + (i % 3) as f32 * 0.1,
        std::cmp::Ordering::Greater => ((i * 7 + j) % 13) as f32 * 0.01,
    });
    let cov_factor = Array2::from_shape_fn((D, RANK), |(i, j)| ((i * 5 + j) % 9) as f32 * 0.05);
    let cov_diag = Array1::from_shape_fn(D, |i| 0.5 + (i % 4) as f32 * 0.1);
    let mut rng = SmallRng::seed_from_u64(1);

    group.bench_function("cholesky_d64/forward", |b| {
        let inputs = (loc.clone(), scale_tril.clone());
        b.iter_custom(|iters| {
            timed_steps(iters, &inputs, |(loc, l)| {
                let tape = Tape::<f32>::new();
                let q = MultivariateNormal::new(tape.constant(loc), tape.constant(l)).unwrap();
                let z = tape.sample(&q, &mut rng);
                q.log_prob(z).len()
            })
        })
    });
    group.bench_function("low_rank_d64_r8/forward", |b| {
        let inputs = (loc.clone(), cov_factor.clone(), cov_diag.clone());
        b.iter_custom(|iters| {
            timed_steps(iters, &inputs, |(loc, u, d)| {
                let tape = Tape::<f32>::new();
                let (loc, u, d) = (tape.constant(loc), tape.constant(u), tape.constant(d));
                let q = LowRankMultivariateNormal::new(loc, u, d).unwrap();
                let z = tape.sample(&q, &mut rng);
                q.log_prob(z).len()
            })
        })
    });
    group.bench_function("cholesky_d64/forward_backward", |b| {
        let inputs = (loc.clone(), scale_tril.clone());
        b.iter_custom(|iters| {
            timed_steps(iters, &inputs, |(loc, l)| {
                let tape = Tape::<f32>::new();
                let q = MultivariateNormal::new(tape.variable(loc), tape.variable(l)).unwrap();
                let z = tape.sample(&q, &mut rng);
                q.log_prob(z).sum().backward().is_ok()
            })
        })
    });
    group.bench_function("low_rank_d64_r8/forward_backward", |b| {
        let inputs = (loc.clone(), cov_factor.clone(), cov_diag.clone());
        b.iter_custom(|iters| {
            timed_steps(iters, &inputs, |(loc, u, d)| {
                let tape = Tape::<f32>::new();
                let (loc, u, d) = (tape.variable(loc), tape.variable(u), tape.variable(d));
                let q = LowRankMultivariateNormal::new(loc, u, d).unwrap();
                let z = tape.sample(&q, &mut rng);
                q.log_prob(z).sum().backward().is_ok()
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).sample_size(30);
    targets = normal, multivariate
}
criterion_main!(benches);
