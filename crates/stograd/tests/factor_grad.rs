//! Gradient checks and closed forms for `mul_add` and the triangular-factor ops.

use ndarray::{Array2, ArrayD, Dimension, IxDyn, array};
use stograd::check::{Tolerance, gradcheck};
use stograd::{Error, Tape};

/// A deterministic, well-conditioned symmetric positive-definite matrix `M Mᵀ + d I`.
fn spd(d: usize, seed: f64) -> Array2<f64> {
    let m = Array2::from_shape_fn((d, d), |(i, j)| {
        ((i * 7 + j * 3) as f64 * 0.37 + seed).sin()
    });
    m.dot(&m.t()) + Array2::<f64>::eye(d) * d as f64
}

fn lower(d: usize, seed: f64) -> Array2<f64> {
    Array2::from_shape_fn((d, d), |(i, j)| match i.cmp(&j) {
        std::cmp::Ordering::Less => 0.0,
        std::cmp::Ordering::Equal => 1.0 + (seed + i as f64).cos().abs(),
        std::cmp::Ordering::Greater => ((i + 2 * j) as f64 + seed).sin(),
    })
}

fn tol() -> Tolerance {
    Tolerance::default()
}

#[test]
fn mul_add_matches_and_gradchecks_with_broadcasting() {
    let x = ArrayD::from_shape_fn(IxDyn(&[3, 4]), |i| 0.3 * i[0] as f64 - 0.2 * i[1] as f64);
    for (a_shape, b_shape) in [
        (vec![3, 4], vec![3, 4]),
        (vec![4], vec![3, 1]),
        (vec![], vec![4]),
    ] {
        let a = ArrayD::from_shape_fn(IxDyn(&a_shape), |i| {
            1.0 + i.slice().iter().sum::<usize>() as f64
        });
        let b = ArrayD::from_shape_fn(IxDyn(&b_shape), |i| -0.5 + i.slice().len() as f64);
        gradcheck(
            |_, v| v[0].mul_add(v[1], v[2]),
            &[x.clone(), a.clone(), b.clone()],
            tol(),
        )
        .unwrap();
        // same value as the unfused composition, to rounding
        let tape = Tape::new();
        let (vx, va, vb) = (tape.constant(x.clone()), tape.constant(a), tape.constant(b));
        let diff = (vx.mul_add(va, vb) - (vx * va + vb)).abs().max().item();
        assert!(diff <= 1e-15, "{diff}");
    }
}

#[test]
fn cholesky_reconstructs_and_gradchecks() {
    for d in [1, 3, 5] {
        let a = spd(d, 0.4);
        let tape = Tape::new();
        let l = tape.constant(a.clone()).cholesky().unwrap();
        let lv = l.value().into_dimensionality::<ndarray::Ix2>().unwrap();
        // L Lᵀ = A and L is lower-triangular with a positive diagonal
        assert!((lv.dot(&lv.t()) - &a).iter().all(|e| e.abs() < 1e-12));
        assert!(lv.indexed_iter().all(|((i, j), &v)| if j > i {
            v == 0.0
        } else if i == j {
            v > 0.0
        } else {
            true
        }));
        gradcheck(|_, v| v[0].cholesky().unwrap(), &[a.into_dyn()], tol()).unwrap();
    }
    // a batch of two matrices
    let batch = ndarray::stack![ndarray::Axis(0), spd(3, 0.1), spd(3, 2.0)].into_dyn();
    gradcheck(|_, v| v[0].cholesky().unwrap(), &[batch], tol()).unwrap();
}

#[test]
fn cholesky_rejects_indefinite_with_the_column() {
    let tape = Tape::<f64>::new();
    let err = tape
        .constant(array![[1.0, 2.0], [2.0, 1.0]])
        .cholesky()
        .unwrap_err();
    // pivot of column 1: 1 − 2² = −3
    assert!(
        matches!(err, Error::NotPositiveDefinite { matrix: 0, column: 1, pivot } if pivot == -3.0),
        "{err}"
    );
}

#[test]
fn solve_tril_solves_and_gradchecks() {
    let l = lower(4, 0.3);
    let b2 = Array2::from_shape_fn((4, 2), |(i, j)| (i as f64 - j as f64) * 0.7 + 0.1);
    let tape = Tape::new();
    let x = tape
        .constant(l.clone())
        .solve_tril(tape.constant(b2.clone()))
        .value();
    let x = x.into_dimensionality::<ndarray::Ix2>().unwrap();
    assert!((l.dot(&x) - &b2).iter().all(|e| e.abs() < 1e-12));
    gradcheck(
        |_, v| v[0].solve_tril(v[1]),
        &[l.clone().into_dyn(), b2.clone().into_dyn()],
        tol(),
    )
    .unwrap();
    // one L for a batch of right-hand sides, and a batch of L
    let b3 = ndarray::stack![
        ndarray::Axis(0),
        b2.view(),
        (&b2 * 2.0).view(),
        (&b2 - 1.0).view()
    ]
    .into_dyn();
    gradcheck(
        |_, v| v[0].solve_tril(v[1]),
        &[l.clone().into_dyn(), b3.clone()],
        tol(),
    )
    .unwrap();
    let l3 = ndarray::stack![
        ndarray::Axis(0),
        l.view(),
        lower(4, 1.1).view(),
        lower(4, 2.5).view()
    ]
    .into_dyn();
    gradcheck(|_, v| v[0].solve_tril(v[1]), &[l3, b3], tol()).unwrap();
}

#[test]
fn diagonal_gradchecks() {
    for shape in [vec![1, 1], vec![3, 3], vec![2, 4, 4]] {
        let a = ArrayD::from_shape_fn(IxDyn(&shape), |i| {
            i.slice().iter().map(|&k| k as f64).sum::<f64>().sin()
        });
        gradcheck(|_, v| v[0].diagonal(), &[a], tol()).unwrap();
    }
}
