//! The engine's pairwise `sum` and `logsumexp` in `f32` against a plain sequential loop over
//! the same data (docs/numerics.md, "Summation"): what the accuracy of the pairwise order
//! costs.
//!
//! - `sum`: `Var::sum` of a constant (the tape's bookkeeping included, as a user pays it)
//!   against `for x in xs { s += x }`;
//! - `logsumexp`: `Var::logsumexp` against the same two passes written as loops (the maximum,
//!   then `m + ln Σ e^{x − m}` with a running sum).
//!
//! Sizes 10³, 10⁵ and 10⁷ elements (uniform on `[0, 1)` from a fixed pattern, no generator).
//! Throughput is in elements. Run with `cargo bench -p stograd-benches --bench summation`.
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array1;
use stograd::Tape;

/// `n` values spread over `[0, 1)`, different for each `salt`.
fn values(n: usize, salt: usize) -> Array1<f32> {
    Array1::from_shape_fn(n, |i| ((i * 7919 + salt * 104_729) % 1000) as f32 / 1000.0)
}

/// `Σ x` in one running `f32` sum: the order a textbook loop adds in.
fn sequential_sum(xs: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for &x in xs {
        s += x;
    }
    s
}

/// `ln Σ eˣ` in two sequential passes: the maximum, then a running sum of `e^{x − m}`.
fn sequential_logsumexp(xs: &[f32]) -> f32 {
    let m = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0f32;
    for &x in xs {
        s += (x - m).exp();
    }
    m + s.ln()
}

fn summation(c: &mut Criterion) {
    for (name, engine, sequential) in [
        (
            "sum",
            (|tape: &Tape<'_, f32>, x: Array1<f32>| tape.constant(x).sum().item())
                as fn(&Tape<'_, f32>, Array1<f32>) -> f32,
            sequential_sum as fn(&[f32]) -> f32,
        ),
        (
            "logsumexp",
            |tape, x| tape.constant(x).logsumexp().item(),
            sequential_logsumexp,
        ),
    ] {
        let mut group = c.benchmark_group(format!("{name}_f32"));
        for n in [1_000usize, 100_000, 10_000_000] {
            let x = values(n, 1);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new("engine_pairwise", n), &x, |b, x| {
                // the copy into the tape is outside the timing: a tape's value is computed
                // by an earlier op, not copied in
                b.iter_batched(
                    || x.clone(),
                    |x| {
                        let tape = Tape::<f32>::with_capacity(2);
                        engine(&tape, x)
                    },
                    criterion::BatchSize::LargeInput,
                )
            });
            group.bench_with_input(BenchmarkId::new("sequential_loop", n), &x, |b, x| {
                let xs = x.as_slice().expect("contiguous");
                b.iter(|| sequential(black_box(xs)))
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).sample_size(30);
    targets = summation
}
criterion_main!(benches);
