//! Pathwise sampling and densities: `rsample` + `log_prob`, forward and forward + backward.
//!
//! - `normal`: a Normal over 10⁶ elements and over 2,560 elements (a VAE batch of 128 × 20
//!   latents), `f32`, with `loc` and `scale` full-size parameters as an encoder would output.
//! - `mvn_cholesky`: a 64-dimensional `MultivariateNormal` (one `scale_tril`) over a batch of
//!   1024, `f32`.
//! - `mvn_low_rank`: a rank-8 `LowRankMultivariateNormal` with d = 64 over a batch of 1024.
//!
//! Throughput is in sampled elements (rows × d for the multivariate families). Run with
//! `cargo bench --bench distributions`; results are in docs/benchmarks.md.
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use stograd::Tape;
use stograd::dist::{Distribution, LowRankMultivariateNormal, MultivariateNormal, Normal};

fn normal(c: &mut Criterion) {
    let mut group = c.benchmark_group("normal_rsample_log_prob");
    for n in [2_560usize, 1_000_000] {
        let loc = Array1::from_shape_fn(n, |i| (i % 7) as f32 * 0.1);
        let scale = Array1::from_shape_fn(n, |i| 0.5 + (i % 5) as f32 * 0.1);
        let mut rng = SmallRng::seed_from_u64(0);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("forward", n), &n, |b, _| {
            b.iter(|| {
                let tape = Tape::<f32>::with_capacity(8);
                let q =
                    Normal::new(tape.constant(loc.clone()), tape.constant(scale.clone())).unwrap();
                let z = tape.sample(&q, &mut rng);
                black_box(q.log_prob(z).value());
            })
        });
        group.bench_with_input(BenchmarkId::new("forward_backward", n), &n, |b, _| {
            b.iter(|| {
                let tape = Tape::<f32>::with_capacity(12);
                let q =
                    Normal::new(tape.variable(loc.clone()), tape.variable(scale.clone())).unwrap();
                let z = tape.sample(&q, &mut rng);
                black_box(q.log_prob(z).sum().backward().unwrap());
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

    group.bench_function("cholesky_d64/forward_backward", |b| {
        b.iter_batched(
            || (loc.clone(), scale_tril.clone()),
            |(loc, l)| {
                let tape = Tape::<f32>::new();
                let q = MultivariateNormal::new(tape.variable(loc), tape.variable(l)).unwrap();
                let z = tape.sample(&q, &mut rng);
                black_box(q.log_prob(z).sum().backward().unwrap())
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("low_rank_d64_r8/forward_backward", |b| {
        b.iter_batched(
            || (loc.clone(), cov_factor.clone(), cov_diag.clone()),
            |(loc, u, d)| {
                let tape = Tape::<f32>::new();
                let q = LowRankMultivariateNormal::new(
                    tape.variable(loc),
                    tape.variable(u),
                    tape.variable(d),
                )
                .unwrap();
                let z = tape.sample(&q, &mut rng);
                black_box(q.log_prob(z).sum().backward().unwrap())
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).sample_size(30);
    targets = normal, multivariate
}
criterion_main!(benches);
