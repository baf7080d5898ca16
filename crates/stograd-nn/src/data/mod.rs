//! Datasets and mini-batches: labelled images as a matrix of pixels in `[0, 1]`, an IDX
//! reader for MNIST-format files, scikit-learn's 8×8 digits embedded so that examples run
//! with no download, and shuffled mini-batches drawn from a generator the caller seeds.
//!
//! - [`Dataset`]: images and labels; [`split`](Dataset::split),
//!   [`select`](Dataset::select), static [`binarized`](Dataset::binarized).
//! - [`digits`]: the embedded digits (1,797 images of 8×8); [`digits_csv`] reads the same
//!   format from a file.
//! - [`mnist`]: MNIST or Fashion-MNIST from a directory of IDX files, raw or gzip;
//!   [`idx_dataset`] for any image/label pair; [`idx`] reads and writes IDX files.
//! - [`concrete`]: the UCI concrete compressive strength regression data (1,030 rows, 8
//!   inputs), embedded; [`concrete_csv`] reads the same format from a file.
//! - [`Batches`]: one epoch of shuffled mini-batches, optionally dynamically binarized;
//!   [`epoch_rng`] makes its generator from a run's seed and the epoch.
//!
//! ```
//! use stograd_nn::data::{self, Batches};
//!
//! let digits = data::digits::<f32>();
//! let (train, test) = digits.split(300, &mut data::epoch_rng(0, 0))?;
//! for epoch in 1..=2 {
//!     for batch in Batches::new(&train, 64, data::epoch_rng(0, epoch))?.binarize(true) {
//!         assert!(batch.len() <= 64);
//!         // record a step on `batch.images` …
//!     }
//! }
//! assert_eq!(Batches::new(&test, 64, data::epoch_rng(0, 0))?.len(), 5); // ⌈300 / 64⌉
//! # Ok::<(), stograd_nn::Error>(())
//! ```
//!
//! # Where the digits come from, and their licence
//!
//! The embedded `data/digits.csv.gz` is copied unchanged from scikit-learn 1.9.1
//! (`sklearn/datasets/data/digits.csv.gz`), where it is distributed under the BSD-3-Clause
//! licence. It is the test part of the UCI Machine Learning Repository's "Optical
//! Recognition of Handwritten Digits" data set by E. Alpaydin and C. Kaynak (1998,
//! <https://archive.ics.uci.edu/ml/datasets/Optical+Recognition+of+Handwritten+Digits>),
//! which UCI licenses under CC BY 4.0; cite Alpaydin and Kaynak. `data/README.md` in the
//! crate gives the checksums and how to obtain the file again.
//!
//! MNIST is not embedded: pass its directory to [`mnist`].

mod batches;
mod concrete;
mod dataset;
mod digits;
mod error;
mod file;
pub mod idx;
mod mnist;

pub use batches::{Batch, Batches, epoch_rng};
pub use concrete::{CONCRETE_COLUMNS, concrete, concrete_csv};
pub use dataset::Dataset;
pub use digits::{digits, digits_csv};
pub use error::DataError;
pub use mnist::{idx_dataset, mnist};
