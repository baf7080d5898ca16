//! Training steps and their parts.
//!
//! - `vae_step`: one step of the MNIST VAE of PyTorch's example (784-400-20-400-784, ReLU,
//!   diagonal posterior, Bernoulli decoder, batch 128, Adam): record the ELBO, backward, Adam;
//!   in f32 and f64, called from the main thread, (`vae_step_in_pool`) from one of rayon's
//!   threads, and (`vae_step_sharded`) as two shards of 64 rows on a core each
//!   ([`DataParallel`]), as the `vae` example runs it. Beside it, the parts: the forward
//!   alone, forward + backward, the Adam step alone, and the 14 matrix products of a step run
//!   alone with the engine's GEMM.
//! - `adam_651k`: Adam over the VAE's 651k parameters, against the floor of one fused
//!   read-modify-write pass over the same four arrays (parameter, gradient, both moments).
//! - `param_record`: recording a 784×400 parameter on a bound tape against a 4×4 one (the
//!   array is shared, not copied, so both cost the same).
//! - `mlp_784_400_400_10`: an MLP's forward + backward at batch 128 in f32 against its
//!   matrix products alone, with the same GEMM, both from the main thread and (`_in_pool`)
//!   from one of rayon's threads, and (`_sharded`) as two shards of 64 rows on a core each.
//!
//! Run with `cargo bench -p stograd-benches --bench training`; results and the machine are in
//! docs/benchmarks.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::{Array2, ArrayD, Axis, Zip};
use rand::SeedableRng;
use rand::rngs::StdRng;
use stograd::{Gradients, Params, Scalar, Tape};
use stograd_benches::filled;
use stograd_nn::layers::{Activation, Mlp};
use stograd_nn::loss::cross_entropy;
use stograd_nn::optim::{Adam, AdamConfig, Optimizer};
use stograd_nn::parallel::DataParallel;
use stograd_nn::vae::{Vae, VaeConfig};

const BATCH: usize = 128;

/// MNIST-like pixels in [0, 1].
fn pixels<F: Scalar>() -> Array2<F> {
    filled(BATCH, 784, 7).mapv(|v| F::from_f64(f64::from(v) + 0.5))
}

fn vae<F: Scalar>(params: &mut Params<F>) -> Vae {
    Vae::new(
        params,
        "vae",
        VaeConfig::default(),
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap()
}

fn elbo_grads<F: Scalar>(
    vae: &Vae,
    params: &Params<F>,
    x: &Array2<F>,
    rng: &mut StdRng,
) -> Gradients<F> {
    let tape = Tape::with_params(params);
    let elbo = vae.elbo(&tape, tape.constant(x.clone()), rng).unwrap();
    (-elbo.elbo).sum().backward().unwrap()
}

fn vae_step_of<F: Scalar>(c: &mut Criterion, name: &str) {
    let mut params = Params::<F>::new();
    let model = vae(&mut params);
    let x = pixels::<F>();
    let mut opt = Adam::new(AdamConfig::default()).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let mut step = || {
        let grads = elbo_grads(&model, &params, &x, &mut rng);
        opt.step(&mut params, &grads);
    };
    c.bench_function(&format!("vae_step/{name}"), |b| b.iter(&mut step));
    // as the vae example runs it: on one of the pool's threads
    let pool = rayon::ThreadPoolBuilder::new().build().unwrap();
    c.bench_function(&format!("vae_step_in_pool/{name}"), |b| {
        b.iter(|| pool.install(&mut step))
    });
    // as the vae example runs it now: two shards of 64 rows, a tape each, on one core each
    let shards = DataParallel::new(2).unwrap();
    let mut seed = 0u64;
    let mut sharded_step = || {
        seed += 1;
        let (grads, _) = shards
            .gradients(BATCH, |shard, rows| {
                let rows = x.slice_axis(Axis(0), rows.into()).to_owned();
                let mut rng = StdRng::seed_from_u64(seed * 2 + shard as u64);
                Ok::<_, ()>((elbo_grads(&model, &params, &rows, &mut rng), ()))
            })
            .unwrap();
        opt.step(&mut params, &grads);
    };
    c.bench_function(&format!("vae_step_sharded/{name}"), |b| {
        b.iter(|| pool.install(&mut sharded_step))
    });
}

fn vae_step(c: &mut Criterion) {
    vae_step_of::<f32>(c, "f32");
    vae_step_of::<f64>(c, "f64");

    let mut params = Params::<f32>::new();
    let model = vae(&mut params);
    let x = pixels::<f32>();
    let mut rng = StdRng::seed_from_u64(1);
    c.bench_function("vae_step_parts/forward", |b| {
        b.iter(|| {
            let tape = Tape::with_params(&params);
            let elbo = model
                .elbo(&tape, tape.constant(x.clone()), &mut rng)
                .unwrap();
            black_box((-elbo.elbo).sum().item());
        })
    });
    c.bench_function("vae_step_parts/forward_backward", |b| {
        b.iter(|| black_box(elbo_grads(&model, &params, &x, &mut rng)))
    });
    let grads = elbo_grads(&model, &params, &x, &mut rng);
    let mut opt = Adam::new(AdamConfig::default()).unwrap();
    c.bench_function("vae_step_parts/adam", |b| {
        b.iter(|| opt.step(&mut params, &grads))
    });

    // the products of one step: for each layer y = x Wᵀ, dW = Gᵀ x, and dx = G W for all
    // but the first layer (whose input needs no gradient)
    let layers = [(784, 400), (400, 40), (20, 400), (400, 784)];
    let mats: Vec<_> = layers
        .iter()
        .enumerate()
        .map(|(i, &(n_in, n_out))| {
            (
                filled(BATCH, n_in, 10 + i),
                filled(n_out, n_in, 20 + i),
                filled(BATCH, n_out, 30 + i),
                Array2::<f32>::zeros((BATCH, n_out)),
                Array2::<f32>::zeros((n_out, n_in)),
                Array2::<f32>::zeros((BATCH, n_in)),
            )
        })
        .collect::<Vec<_>>();
    let mut mats = mats;
    c.bench_function("vae_step_parts/gemms_alone", |b| {
        b.iter(|| {
            for (i, (x, w, g, y, dw, dx)) in mats.iter_mut().enumerate() {
                stograd_gemm::gemm(1.0, x.view(), w.t(), 0.0, y.view_mut());
                stograd_gemm::gemm(1.0, g.t(), x.view(), 0.0, dw.view_mut());
                if i > 0 {
                    stograd_gemm::gemm(1.0, g.view(), w.view(), 0.0, dx.view_mut());
                }
            }
        })
    });
}

fn adam_651k(c: &mut Criterion) {
    let mut params = Params::<f32>::new();
    let model = vae(&mut params);
    let x = pixels::<f32>();
    let grads = elbo_grads(&model, &params, &x, &mut StdRng::seed_from_u64(2));
    let mut opt = Adam::new(AdamConfig::default()).unwrap();
    opt.step(&mut params, &grads);
    c.bench_function("adam_651k/adam", |b| {
        b.iter(|| opt.step(&mut params, &grads))
    });

    // the floor: one pass reading p, g, m, v and writing p, m, v, over the same sizes
    let mut arrays: Vec<[ArrayD<f32>; 4]> = params
        .iter()
        .map(|(_, _, p)| {
            [
                p.clone(),
                p.mapv(|v| v * 0.1),
                p.mapv(|v| v * 0.01),
                p.mapv(|v| v * v),
            ]
        })
        .collect();
    c.bench_function("adam_651k/fused_pass_floor", |b| {
        b.iter(|| {
            for [p, g, m, v] in &mut arrays {
                let zip = Zip::from(p).and(g).and(m).and(v);
                let update = |p: &mut f32, &mut g: &mut f32, m: &mut f32, v: &mut f32| {
                    *m = 0.9 * *m + 0.1 * g;
                    *v = 0.999 * *v + 0.001 * g * g;
                    *p -= 1e-3 * *m / (v.sqrt() + 1e-8);
                };
                if zip.size() >= 1 << 15 {
                    zip.par_for_each(update);
                } else {
                    zip.for_each(update);
                }
            }
        })
    });
}

fn param_record(c: &mut Criterion) {
    let mut params = Params::<f32>::new();
    let big = params.insert("big", ArrayD::zeros(vec![784, 400])).unwrap();
    let small = params.insert("small", ArrayD::zeros(vec![4, 4])).unwrap();
    for (name, id) in [("784x400", big), ("4x4", small)] {
        c.bench_function(&format!("param_record/{name}"), |b| {
            b.iter(|| {
                let tape = Tape::with_params(&params);
                black_box(tape.param(id).len());
            })
        });
    }
}

fn mlp(c: &mut Criterion) {
    let mut params = Params::<f32>::new();
    let mut rng = StdRng::seed_from_u64(3);
    let model = Mlp::new(
        &mut params,
        "mlp",
        &[784, 400, 400, 10],
        Activation::Relu,
        &mut rng,
    )
    .unwrap();
    let x = pixels::<f32>();
    let labels: Vec<usize> = (0..BATCH).map(|i| i % 10).collect();
    let step = || {
        let tape = Tape::with_params(&params);
        let logits = model.forward(&tape, tape.constant(x.clone()));
        black_box(cross_entropy(logits, &labels).mean().backward().unwrap());
    };
    c.bench_function("mlp_784_400_400_10/forward_backward", |b| b.iter(step));
    let pool = rayon::ThreadPoolBuilder::new().build().unwrap();
    c.bench_function("mlp_784_400_400_10/forward_backward_in_pool", |b| {
        b.iter(|| pool.install(step))
    });
    let shards = DataParallel::new(2).unwrap();
    c.bench_function("mlp_784_400_400_10/forward_backward_sharded", |b| {
        b.iter(|| {
            pool.install(|| {
                shards.gradients(BATCH, |_, rows| {
                    let tape = Tape::with_params(&params);
                    let xs = tape.constant(x.slice_axis(Axis(0), rows.clone().into()).to_owned());
                    let loss = cross_entropy(model.forward(&tape, xs), &labels[rows]).sum();
                    loss.backward().map(|g| (g, ()))
                })
            })
            .unwrap()
        })
    });
    let layers = [(784, 400), (400, 400), (400, 10)];
    let mut mats: Vec<_> = layers
        .iter()
        .enumerate()
        .map(|(i, &(n_in, n_out))| {
            (
                filled(BATCH, n_in, 40 + i),
                filled(n_out, n_in, 50 + i),
                filled(BATCH, n_out, 60 + i),
                Array2::<f32>::zeros((BATCH, n_out)),
                Array2::<f32>::zeros((n_out, n_in)),
                Array2::<f32>::zeros((BATCH, n_in)),
            )
        })
        .collect();
    type Layer = (
        Array2<f32>,
        Array2<f32>,
        Array2<f32>,
        Array2<f32>,
        Array2<f32>,
        Array2<f32>,
    );
    let gemms = |mats: &mut Vec<Layer>| {
        for (i, (x, w, g, y, dw, dx)) in mats.iter_mut().enumerate() {
            stograd_gemm::gemm(1.0, x.view(), w.t(), 0.0, y.view_mut());
            stograd_gemm::gemm(1.0, g.t(), x.view(), 0.0, dw.view_mut());
            if i > 0 {
                stograd_gemm::gemm(1.0, g.view(), w.view(), 0.0, dx.view_mut());
            }
        }
    };
    c.bench_function("mlp_784_400_400_10/gemms_alone", |b| {
        b.iter(|| gemms(&mut mats))
    });
    c.bench_function("mlp_784_400_400_10/gemms_alone_in_pool", |b| {
        b.iter(|| pool.install(|| gemms(&mut mats)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).sample_size(30);
    targets = vae_step, adam_651k, param_record, mlp
}
criterion_main!(benches);
