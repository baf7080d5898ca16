//! Inputs shared by the benchmarks. Run them with `cargo bench -p stograd-benches`, or one
//! with `cargo bench -p stograd-benches --bench tape`; docs/benchmarks.md has the figures.

use ndarray::Array2;

/// A deterministic `[rows, cols]` matrix with entries spread over `[−0.5, 0.5)`, different for
/// each `salt`: benchmark inputs that need no generator.
pub fn filled(rows: usize, cols: usize, salt: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        ((i * 7919 + j * 104_729 + salt * 1_299_709) % 1000) as f32 / 1000.0 - 0.5
    })
}
