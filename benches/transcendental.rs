//! The engine's vectorizable transcendental functions, one thread, over the 313,600 `ρ`s of a
//! `784 × 400` Bayesian layer: `softplus(x)²` and `sigmoid(x)` from one `e^{−|x|}`, the loop of
//! the layer's `SoftplusSquare` kernel and of the Bernoulli log-likelihood's `softplus`.
//! `f32` against `f64` shows what the longer polynomials of `f64` cost beyond its half-width
//! vectors. Throughput is in elements.
//!
//! Run with `cargo bench -p stograd-benches --bench transcendental`; results are in
//! docs/benchmarks.md.
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stograd::Scalar;

const LEN: usize = 313_600;

/// `(softplus(x)², sigmoid(x))` for `x` spread over `[−8, 4]`, as `ρ` and logits are.
fn softplus_square_sigmoid<F: Scalar>(xs: &[F], v: &mut [F], s: &mut [F]) {
    for ((v, s), &x) in v.iter_mut().zip(s.iter_mut()).zip(xs) {
        let e = x.exp_neg_abs();
        let softplus = x.max(F::zero()) + x.log1p_exp_neg_abs();
        *v = softplus * softplus;
        let r = F::one() / (F::one() + e);
        *s = if x >= F::zero() { r } else { e * r };
    }
}

fn bench_type<F: Scalar>(c: &mut Criterion) {
    let xs: Vec<F> = (0..LEN)
        .map(|i| F::from_f64(-8.0 + 12.0 * i as f64 / LEN as f64))
        .collect();
    let (mut v, mut s) = (vec![F::zero(); LEN], vec![F::zero(); LEN]);
    let mut group = c.benchmark_group("softplus_square_sigmoid");
    group.throughput(Throughput::Elements(LEN as u64));
    group.bench_function(F::NAME, |b| {
        b.iter(|| softplus_square_sigmoid(black_box(&xs), &mut v, &mut s))
    });
    group.finish();
}

fn transcendental(c: &mut Criterion) {
    bench_type::<f32>(c);
    bench_type::<f64>(c);
}

criterion_group!(benches, transcendental);
criterion_main!(benches);
