//! Peak heap memory of one training step of the MNIST VAE (784-400-20-400-784, batch 128,
//! f32), against what the step must hold: the activations the tape keeps for backward and
//! the parameters' gradients.
//!
//! A counting global allocator (the one `unsafe` of the benchmarks: it forwards every call to
//! the system allocator and adds up the sizes) reports the bytes in use and their maximum.
//! The first optimizer step is measured, after one unmeasured forward + backward (which makes
//! the matrix-product kernels' per-thread buffers) and [`stograd::empty_cache`], so no buffer
//! pool or optimizer state hides an allocation: what the tape
//! holds after the forward pass is the activations, and the peak during forward + backward is
//! compared with activations + gradients.
//!
//! The step differentiates with `backward_and_free`, which releases each activation once no
//! remaining backward rule reads it; `-- --keep` measures `backward` instead, which holds every
//! activation through the backward pass.
//!
//! Run with `cargo bench -p stograd-benches --bench memory` (and `-- --keep`); the figures
//! are in docs/benchmarks.md.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use rand::SeedableRng;
use rand::rngs::StdRng;
use stograd::{Params, Tape};
use stograd_benches::filled;
use stograd_nn::optim::{Adam, AdamConfig, Optimizer};
use stograd_nn::vae::{Vae, VaeConfig};

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = IN_USE.fetch_add(bytes, Relaxed) + bytes;
    PEAK.fetch_max(now, Relaxed);
}

/// The system allocator, counting.
struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments, so it keeps
// `System`'s guarantees; the counters are only arithmetic on the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            IN_USE.fetch_sub(layout.size(), Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn mib(bytes: usize) -> String {
    format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
}

fn main() {
    let keep = std::env::args().any(|a| a == "--keep");
    let mut params = Params::<f32>::new();
    let vae = Vae::new(
        &mut params,
        "vae",
        VaeConfig::default(),
        &mut StdRng::seed_from_u64(0),
    )
    .expect("the default VAE");
    let x = filled(128, 784, 7).mapv(|v| v + 0.5);
    let mut noise = StdRng::seed_from_u64(1);
    let mut opt = Adam::new(AdamConfig::default()).expect("default Adam");
    let gradients = params.num_elements() * size_of::<f32>();

    // The matrix-product kernels keep packing buffers per thread and layout, allocated at
    // their first use and kept for the process (about 1 MiB each; 2 MiB on a machine with a
    // 2 MiB L2): allocate them with one step that is not measured, then free what the engine
    // pooled, so the measured step starts from no reusable buffer at all.
    {
        let tape = Tape::with_params(&params);
        let elbo = vae
            .elbo(&tape, tape.constant(x.clone().into_dyn()), &mut noise)
            .expect("an ELBO");
        (-elbo.elbo).sum().backward().expect("a gradient");
    }
    stograd::empty_cache();

    let mut step = |params: &mut Params<f32>| {
        let before = IN_USE.load(Relaxed);
        PEAK.store(before, Relaxed);
        let (grads, after_forward) = {
            let tape = Tape::with_params(params);
            let elbo = vae
                .elbo(&tape, tape.constant(x.clone().into_dyn()), &mut noise)
                .expect("an ELBO");
            let loss = (-elbo.elbo).sum();
            let after_forward = IN_USE.load(Relaxed);
            let grads = if keep {
                loss.backward()
            } else {
                loss.backward_and_free()
            };
            (grads.expect("a gradient"), after_forward)
        };
        let peak = PEAK.load(Relaxed);

        opt.step(params, &grads);
        (after_forward - before, peak - before)
    };

    let (activations, peak) = step(&mut params);
    let how = if keep {
        "backward"
    } else {
        "backward_and_free"
    };
    println!(
        "VAE 784-400-20-400-784, batch 128, f32, {how}; the first optimizer step, from an empty pool:"
    );
    println!(
        "  activations held by the tape after the forward pass  {}",
        mib(activations)
    );
    println!(
        "  parameters' gradients                                {}",
        mib(gradients)
    );
    println!(
        "  activations + gradients                              {}",
        mib(activations + gradients)
    );
    println!(
        "  peak during forward + backward                       {}",
        mib(peak)
    );
    println!(
        "  peak / (activations + gradients)                     {:.3}",
        peak as f64 / (activations + gradients) as f64
    );
    for _ in 0..3 {
        step(&mut params);
    }
    let (_, warm_peak) = step(&mut params);
    println!(
        "the fifth step (buffers reused from the pool): peak above the heap in use before it {}",
        mib(warm_peak)
    );
    println!(
        "heap in use between steps (parameters, Adam's moments, pooled buffers) {}",
        mib(IN_USE.load(Relaxed))
    );
}
