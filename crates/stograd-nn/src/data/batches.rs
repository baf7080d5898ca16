//! [`Batches`]: one epoch of shuffled mini-batches over a [`Dataset`].

use std::iter::FusedIterator;

use ndarray::{Array2, Axis};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use stograd::Scalar;

use super::Dataset;
use super::dataset::binarize;
use crate::{Error, Result};

/// One mini-batch: the images, their labels and their positions in the dataset.
///
/// ```
/// use stograd_nn::data::{self, Batches};
///
/// let digits = data::digits::<f32>();
/// let batch = Batches::new(&digits, 10, data::epoch_rng(0, 1))?.next().unwrap();
/// assert_eq!(batch.images.dim(), (10, 64));
/// assert_eq!(batch.labels[3], digits.labels()[batch.indices[3]]);
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Batch<F: Scalar> {
    /// `[batch, height·width]` pixels: in `[0, 1]`, or 0/1 draws with
    /// [`Batches::binarize`].
    pub images: Array2<F>,
    /// The label of each image.
    pub labels: Vec<usize>,
    /// The position of each image in the dataset.
    pub indices: Vec<usize>,
}

impl<F: Scalar> Batch<F> {
    /// The number of images in the batch.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the batch is empty (never, for a batch from [`Batches`]).
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// One epoch of mini-batches over a [`Dataset`], in an order drawn from the generator the
/// caller supplies.
///
/// Every image appears in exactly one batch. The batches have `batch_size` images, except
/// the last, which holds the remainder (`len() % batch_size` images) unless
/// [`drop_last`](Self::drop_last) drops it. Only each batch's rows are copied, never the
/// whole dataset: the shuffle permutes a vector of indices.
///
/// The generator is taken by value (pass `&mut rng` to lend one instead). A training loop
/// that makes it from `(seed, epoch)`, as with [`epoch_rng`], gets a fresh shuffle every
/// epoch and can resume at any epoch exactly. The generator is first used for the shuffle
/// when the first batch is taken, then for the [`binarize`](Self::binarize) draws, batch by
/// batch; to resume in the middle of an epoch, `.skip(k)` the batches already done (skipped
/// batches make their draws too, so the rest is identical).
///
/// # Example
/// ```
/// use stograd_nn::data::{self, Batches};
///
/// let digits = data::digits::<f32>();
/// let seed = 7;
/// for epoch in 0..2 {
///     let batches = Batches::new(&digits, 100, data::epoch_rng(seed, epoch))?.drop_last(true);
///     assert_eq!(batches.len(), 17); // 1797 / 100, the last 97 images dropped
///     for batch in batches {
///         assert_eq!(batch.images.shape(), [100, 64]);
///         assert_eq!(batch.labels[0], digits.labels()[batch.indices[0]]);
///     }
/// }
///
/// // Evaluation: in order, with the last, smaller batch.
/// let last = Batches::new(&digits, 100, data::epoch_rng(seed, 0))?.shuffle(false).last();
/// assert_eq!(last.unwrap().indices, (1700..1797).collect::<Vec<_>>());
/// # Ok::<(), stograd_nn::Error>(())
/// ```
///
/// PyTorch: `torch.utils.data.DataLoader(dataset, batch_size, shuffle=True, drop_last=False,
/// generator=torch.Generator().manual_seed(seed))`.
#[derive(Debug)]
pub struct Batches<'a, F: Scalar, R: Rng> {
    dataset: &'a Dataset<F>,
    order: Vec<usize>,
    next: usize,
    batch_size: usize,
    drop_last: bool,
    shuffle: bool,
    binarize: bool,
    started: bool,
    rng: R,
}

impl<'a, F: Scalar, R: Rng> Batches<'a, F, R> {
    /// Shuffled batches of `batch_size` images from `dataset`, drawn from `rng`; the last
    /// batch holds the remainder.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `batch_size` is 0.
    pub fn new(dataset: &'a Dataset<F>, batch_size: usize, rng: R) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::InvalidArgument {
                name: "batch_size",
                constraint: "positive",
                value: 0.0,
            });
        }
        Ok(Batches {
            dataset,
            order: (0..dataset.len()).collect(),
            next: 0,
            batch_size,
            drop_last: false,
            shuffle: true,
            binarize: false,
            started: false,
            rng,
        })
    }

    /// With `true`, drops the last batch when it has fewer than `batch_size` images, so that
    /// every batch has the same size. Off by default.
    ///
    /// # Panics
    /// If a batch has already been taken.
    #[must_use]
    #[track_caller]
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.assert_not_started("drop_last");
        self.drop_last = drop_last;
        self
    }

    /// With `false`, the batches follow the dataset's order, as for evaluation. On by
    /// default.
    ///
    /// # Panics
    /// If a batch has already been taken.
    #[must_use]
    #[track_caller]
    pub fn shuffle(mut self, shuffle: bool) -> Self {
        self.assert_not_started("shuffle");
        self.shuffle = shuffle;
        self
    }

    /// With `true`, dynamic binarization: each batch's pixels `p` are drawn afresh as
    /// `Bernoulli(p)` (`u < p` with `u ~ U[0, 1)`) from the iterator's generator, so an image
    /// is binarized differently in each epoch. Off by default. For draws made once, see
    /// [`Dataset::binarized`].
    ///
    /// # Panics
    /// If a batch has already been taken.
    #[must_use]
    #[track_caller]
    pub fn binarize(mut self, binarize: bool) -> Self {
        self.assert_not_started("binarize");
        self.binarize = binarize;
        self
    }

    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    #[track_caller]
    fn assert_not_started(&self, setting: &str) {
        assert!(
            !self.started,
            "Batches::{setting} called after the first batch was taken"
        );
    }
}

impl<F: Scalar, R: Rng> Iterator for Batches<'_, F, R> {
    type Item = Batch<F>;

    fn next(&mut self) -> Option<Batch<F>> {
        if !self.started {
            self.started = true;
            if self.shuffle {
                self.order.shuffle(&mut self.rng);
            }
        }
        let remaining = self.order.len() - self.next;
        if remaining == 0 || (self.drop_last && remaining < self.batch_size) {
            return None;
        }
        let end = self.next + remaining.min(self.batch_size);
        let indices = self.order[self.next..end].to_vec();
        self.next = end;
        let mut images = self.dataset.images().select(Axis(0), &indices);
        if self.binarize {
            binarize(&mut images, &mut self.rng);
        }
        let labels = indices.iter().map(|&i| self.dataset.labels()[i]).collect();
        Some(Batch {
            images,
            labels,
            indices,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = self.order.len() - self.next;
        let n = if self.drop_last {
            remaining / self.batch_size
        } else {
            remaining.div_ceil(self.batch_size)
        };
        (n, Some(n))
    }
}

/// `len()` is the number of batches still to come: before the first, the epoch's total.
impl<F: Scalar, R: Rng> ExactSizeIterator for Batches<'_, F, R> {}

impl<F: Scalar, R: Rng> FusedIterator for Batches<'_, F, R> {}

/// The generator for epoch `epoch` of a run seeded with `seed`: [`StdRng`] keyed by both,
/// so every `(seed, epoch)` pair gets its own stream (unlike `seed + epoch`, which gives run
/// 1's second epoch the stream of run 2's first).
///
/// # Example
/// ```
/// use rand::RngExt;
/// use stograd_nn::data::epoch_rng;
///
/// let a: u64 = epoch_rng(1, 1).random();
/// assert_eq!(a, epoch_rng(1, 1).random::<u64>());
/// assert_ne!(a, epoch_rng(2, 0).random::<u64>());
/// ```
pub fn epoch_rng(seed: u64, epoch: u64) -> StdRng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    StdRng::from_seed(key)
}
