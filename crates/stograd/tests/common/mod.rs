//! Helpers shared by the integration tests: the `for_each_float!` macro that runs a test written
//! once, generic over `F: Scalar`, in both `f32` and `f64`; seeded random arrays; inputs kept
//! away from kinks; a gradcheck wrapper; and closeness assertions.
//!
//! Seed policy: every random array comes from `StdRng::seed_from_u64` with a seed written in
//! the test, so a failure reproduces exactly.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod enumerate;

use std::panic::{AssertUnwindSafe, catch_unwind};

use ndarray::{ArrayD, Dimension, IxDyn};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;
use stograd::check::{GradcheckReport, Tolerance, gradcheck};
use stograd::{Scalar, Tape, Var};

/// Runs each named generic test function `fn name<F: Scalar>()` once in `f32` and once in
/// `f64`, as the tests `name::f32` and `name::f64`.
#[allow(unused_macros)]
macro_rules! for_each_float {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[test]
                fn f32() {
                    super::$test::<f32>();
                }

                #[test]
                fn f64() {
                    super::$test::<f64>();
                }
            }
        )*
    };
}

/// A deterministic generator.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// An array of `shape` with elements uniform in `[lo, hi)`.
pub fn uniform(shape: &[usize], lo: f64, hi: f64, seed: u64) -> ArrayD<f64> {
    let mut rng = rng(seed);
    ArrayD::from_shape_simple_fn(IxDyn(shape), || lo + (hi - lo) * rng.random::<f64>())
}

/// An array of `shape` with standard normal elements.
pub fn normal(shape: &[usize], seed: u64) -> ArrayD<f64> {
    let mut rng = rng(seed);
    ArrayD::from_shape_simple_fn(IxDyn(shape), || rng.sample::<f64, _>(StandardNormal))
}

/// Elements of random sign with `min_abs ≤ |x| < max_abs`: inputs for ops with a kink or a
/// pole at 0 (`relu`, `abs`, `recip`, a divisor).
pub fn signed_away_from_zero(
    shape: &[usize],
    min_abs: f64,
    max_abs: f64,
    seed: u64,
) -> ArrayD<f64> {
    let mut rng = rng(seed);
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        let magnitude = min_abs + (max_abs - min_abs) * rng.random::<f64>();
        if rng.random::<bool>() {
            magnitude
        } else {
            -magnitude
        }
    })
}

/// Moves every element that lies within `gap` of one of `kinks` to `gap` past it, so a
/// finite-difference step never straddles a kink.
pub fn away_from(mut a: ArrayD<f64>, kinks: &[f64], gap: f64) -> ArrayD<f64> {
    for x in a.iter_mut() {
        for &k in kinks {
            if (*x - k).abs() < gap {
                *x = if *x >= k { k + gap } else { k - gap };
            }
        }
    }
    a
}

/// Elements that are pairwise at least `0.25` apart (a shuffled grid plus small jitter), so a
/// maximum is never tied.
pub fn distinct(shape: &[usize], seed: u64) -> ArrayD<f64> {
    let mut rng = rng(seed);
    let n: usize = shape.iter().product();
    let mut values: Vec<f64> = (0..n)
        .map(|i| i as f64 * 0.5 - n as f64 * 0.25 + 0.2 * rng.random::<f64>())
        .collect();
    // Fisher–Yates with the same generator.
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        values.swap(i, j);
    }
    ArrayD::from_shape_vec(IxDyn(shape), values).expect("one value per element")
}

/// Converts an `f64` array to `F`.
pub fn cast<F: Scalar>(a: &ArrayD<f64>) -> ArrayD<F> {
    a.mapv(F::from_f64)
}

/// Widens an `F` array to `f64`.
pub fn widen<F: Scalar>(a: &ArrayD<F>) -> ArrayD<f64> {
    a.mapv(Scalar::as_f64)
}

/// `F` from an `f64` literal.
pub fn c<F: Scalar>(x: f64) -> F {
    F::from_f64(x)
}

/// A differentiable leaf of `F` holding `values` (converted from `f64`) in `shape`.
pub fn var<'t, F: Scalar>(tape: &'t Tape<F>, shape: &[usize], values: &[f64]) -> Var<'t, F> {
    let a = ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).expect("shape fits values");
    tape.variable(cast::<F>(&a))
}

/// The tolerance a result computed in `F` can be held to, relative to the scale of the values
/// involved: a few hundred ulps.
pub fn tol<F: Scalar>() -> f64 {
    256.0 * F::epsilon().as_f64()
}

/// Asserts `|got − want| ≤ atol + rtol·|want|` elementwise, with equal shapes.
#[track_caller]
pub fn assert_close(got: &ArrayD<f64>, want: &ArrayD<f64>, atol: f64, rtol: f64) {
    assert_eq!(got.shape(), want.shape(), "shapes differ");
    for ((index, &g), &w) in got.indexed_iter().zip(want.iter()) {
        assert!(
            (g - w).abs() <= atol + rtol * w.abs(),
            "at {:?}: got {g}, want {w} (atol {atol}, rtol {rtol})\n got: {got}\nwant: {want}",
            index.slice()
        );
    }
}

/// Runs `gradcheck` with the default tolerance and panics with the op's label and the error;
/// also asserts that every input element was checked.
#[track_caller]
pub fn check<Fun>(label: &str, inputs: &[ArrayD<f64>], f: Fun) -> GradcheckReport
where
    Fun: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64>,
{
    check_with(label, inputs, Tolerance::default(), f)
}

/// [`check`] with an explicit tolerance.
#[track_caller]
pub fn check_with<Fun>(
    label: &str,
    inputs: &[ArrayD<f64>],
    tol: Tolerance,
    f: Fun,
) -> GradcheckReport
where
    Fun: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64>,
{
    let report = gradcheck(f, inputs, tol).unwrap_or_else(|e| {
        let shapes: Vec<_> = inputs.iter().map(|a| a.shape().to_vec()).collect();
        panic!("{label} with inputs of shapes {shapes:?}: {e}")
    });
    let elements: usize = inputs.iter().map(ArrayD::len).sum();
    assert_eq!(
        report.elements, elements,
        "{label}: not every element checked"
    );
    report
}

/// Runs `f` and returns its panic message; panics if `f` returns normally.
#[track_caller]
pub fn panic_message<R>(f: impl FnOnce() -> R) -> String {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic, but the call returned"),
        Err(payload) => {
            if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_owned()
            } else {
                panic!("the panic payload is not a string")
            }
        }
    }
}
