//! Tape overhead and a dense layer, forward + backward.
//!
//! - `elementwise_chain`: 1000 elementwise ops on a 1- and a 16-element `f32` tensor, recorded
//!   and differentiated. The throughput is in ops, so criterion's `elem/s` reads as ops per
//!   second and the time divided by 1000 is the cost of one op, forward plus backward.
//! - `dense_layer`: `relu(x W + b)` with `x` 128×784 (requiring a gradient), `W` 784×400,
//!   `b` 400, through the fused `linear` op, against the three matrix products that any
//!   engine must run for it (`x·W` forward, `xᵀG` and `G Wᵀ` backward) computed alone with
//!   the same GEMM routine.
//!
//! Run with `cargo bench -p stograd-benches --bench tape`; results and the machine are in docs/benchmarks.md.
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array2, ArrayD, IxDyn};
use stograd::{Params, Tape, Var};
use stograd_benches::filled;

const CHAIN: usize = 1000;

/// One elementwise op of the chain; cycling through four keeps values bounded and mixes
/// unary functions with scalar arithmetic.
fn step<'t>(x: Var<'t, f32>, i: usize) -> Var<'t, f32> {
    match i % 4 {
        0 => x.tanh(),
        1 => x * 1.5,
        2 => x + 0.25,
        _ => x.sin(),
    }
}

fn chain(c: &mut Criterion) {
    let mut group = c.benchmark_group("elementwise_chain");
    group.throughput(Throughput::Elements(CHAIN as u64));
    for len in [1usize, 16] {
        let x0 = ArrayD::from_elem(IxDyn(&[len]), 0.3f32);
        group.bench_with_input(BenchmarkId::new("forward_backward", len), &x0, |b, x0| {
            b.iter(|| {
                let tape = Tape::with_capacity(CHAIN + 2);
                let x = tape.variable(x0.clone());
                let mut y = x;
                for i in 0..CHAIN {
                    y = step(y, i);
                }
                black_box(y.backward().unwrap());
            })
        });
    }
    group.finish();
}

const BATCH: usize = 128;
const IN: usize = 784;
const OUT: usize = 400;

fn dense_layer(c: &mut Criterion) {
    let mut group = c.benchmark_group("dense_layer_128x784x400");
    // The matrix products run on both cores, which makes them noisier than the chain.
    group.measurement_time(Duration::from_secs(5));
    let x0 = filled(BATCH, IN, 1);
    let w0 = filled(IN, OUT, 2);

    // The engine: parameters read from a store (shared with the tape, as in training), an
    // input that requires a gradient, one fused node for `x Wᵀ + b`, one for relu.
    let mut params = Params::<f32>::new();
    // nn.Linear's layout, [out, in]
    let w = params
        .insert(
            "fc.weight",
            w0.t().as_standard_layout().into_owned().into_dyn(),
        )
        .unwrap();
    let b = params
        .insert(
            "fc.bias",
            filled(1, OUT, 3)
                .into_shape_with_order(OUT)
                .unwrap()
                .into_dyn(),
        )
        .unwrap();
    group.bench_function("engine_linear_relu_forward_backward", |bench| {
        bench.iter(|| {
            let tape = Tape::with_params(&params);
            let x = tape.variable(x0.clone());
            let y = x.linear(tape.param(w), Some(tape.param(b))).relu();
            let grads = y.backward().unwrap();
            black_box((grads.param(w).is_some(), grads.wrt(x).is_some()));
        })
    });

    // The reference: the same three products, same shapes and transposes, same routine
    // (the engine's GEMM, stograd-gemm), into preallocated outputs.
    let g0 = filled(BATCH, OUT, 4);
    let mut y = Array2::<f32>::zeros((BATCH, OUT));
    let mut dw = Array2::<f32>::zeros((IN, OUT));
    let mut dx = Array2::<f32>::zeros((BATCH, IN));
    group.bench_function("three_matmuls_alone", |bench| {
        bench.iter(|| {
            stograd_gemm::gemm(1.0, x0.view(), w0.view(), 0.0, y.view_mut()); // forward: x W
            stograd_gemm::gemm(1.0, x0.t(), g0.view(), 0.0, dw.view_mut()); // dW = xᵀ G
            stograd_gemm::gemm(1.0, g0.view(), w0.t(), 0.0, dx.view_mut()); // dx = G Wᵀ
            black_box((&y, &dw, &dx));
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = chain, dense_layer
}
criterion_main!(benches);
