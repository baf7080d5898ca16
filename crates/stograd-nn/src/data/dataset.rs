//! [`Dataset`]: labelled grey-level images as one matrix of pixels in `[0, 1]`.

use std::fmt;

use ndarray::{Array2, ArrayView2, Axis};
use rand::seq::SliceRandom;
use rand::{Rng, RngExt};
use stograd::Scalar;

use super::DataError;
use crate::Result;

/// Labelled images: an `[n, height·width]` matrix of pixels in `[0, 1]` (row `i` is image
/// `i` in row-major order) and one class label per image.
///
/// Load one with [`digits`](super::digits) (embedded, no download), [`mnist`](super::mnist)
/// or [`idx_dataset`](super::idx_dataset), or build one from arrays with
/// [`new`](Self::new). Iterate over it in shuffled mini-batches with
/// [`Batches`](super::Batches).
///
/// # Example
/// ```
/// use rand::SeedableRng;
/// use rand::rngs::StdRng;
/// use stograd_nn::data;
///
/// let digits = data::digits::<f32>();
/// assert_eq!((digits.len(), digits.height(), digits.width()), (1797, 8, 8));
/// assert_eq!(digits.images().shape(), [1797, 64]);
/// assert!(digits.images().iter().all(|&p| (0.0..=1.0).contains(&p)));
/// assert_eq!(digits.labels()[..5], [0, 1, 2, 3, 4]);
///
/// // The digits have no official split: hold out 300 images with a seeded shuffle.
/// let (train, test) = digits.split(300, &mut StdRng::seed_from_u64(0))?;
/// assert_eq!((train.len(), test.len()), (1497, 300));
///
/// // Static binarization, as for the binarized-MNIST benchmarks: each pixel drawn once.
/// let binary = train.binarized(&mut StdRng::seed_from_u64(1));
/// assert!(binary.images().iter().all(|&p| p == 0.0 || p == 1.0));
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct Dataset<F: Scalar> {
    images: Array2<F>,
    labels: Vec<usize>,
    height: usize,
    width: usize,
    classes: usize,
}

impl<F: Scalar> Dataset<F> {
    /// A dataset of `height × width` images (the rows of `images`) with labels in
    /// `0..classes`.
    ///
    /// # Errors
    /// [`DataError::DatasetShape`] unless `images` has shape `[labels.len(), height·width]`;
    /// [`DataError::PixelOutOfRange`] for the first pixel outside `[0, 1]` (NaN included);
    /// [`DataError::BadLabel`] for the first label not below `classes`.
    pub fn new(
        images: Array2<F>,
        labels: Vec<usize>,
        height: usize,
        width: usize,
        classes: usize,
    ) -> Result<Self> {
        let (rows, cols) = images.dim();
        if rows != labels.len() || height.checked_mul(width) != Some(cols) {
            return Err(DataError::DatasetShape {
                images: [rows, cols],
                labels: labels.len(),
                height,
                width,
            }
            .into());
        }
        if let Some(((row, column), &p)) = images
            .indexed_iter()
            .find(|&(_, &p)| !(p >= F::zero() && p <= F::one()))
        {
            return Err(DataError::PixelOutOfRange {
                row,
                column,
                value: p.as_f64(),
            }
            .into());
        }
        if let Some((index, &label)) = labels.iter().enumerate().find(|&(_, &l)| l >= classes) {
            return Err(DataError::BadLabel {
                index,
                label,
                classes,
            }
            .into());
        }
        Ok(Self::from_checked(images, labels, height, width, classes))
    }

    /// A dataset whose invariants the caller has checked.
    pub(crate) fn from_checked(
        images: Array2<F>,
        labels: Vec<usize>,
        height: usize,
        width: usize,
        classes: usize,
    ) -> Self {
        debug_assert_eq!(images.dim(), (labels.len(), height * width));
        let images = if images.is_standard_layout() {
            images
        } else {
            images.as_standard_layout().into_owned()
        };
        Dataset {
            images,
            labels,
            height,
            width,
            classes,
        }
    }

    /// A dataset from bytes: `pixels` holds the images in row-major order, and a byte `b`
    /// becomes the pixel `b / max`. The labels must be below `classes` and the bytes at most
    /// `max`.
    pub(crate) fn from_bytes(
        pixels: &[u8],
        labels: Vec<usize>,
        height: usize,
        width: usize,
        classes: usize,
        max: u8,
    ) -> Self {
        let scale: Vec<F> = (0..=255u8)
            .map(|b| F::from_f64(f64::from(b) / f64::from(max)))
            .collect();
        let values = pixels.iter().map(|&b| scale[usize::from(b)]).collect();
        let images = Array2::from_shape_vec((labels.len(), height * width), values)
            .expect("one row of height·width pixels per label");
        Self::from_checked(images, labels, height, width, classes)
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The `[n, height·width]` matrix of pixels in `[0, 1]`, one image per row.
    pub fn images(&self) -> &Array2<F> {
        &self.images
    }

    /// The class label of each image, in `0..classes()`.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// The image height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The image width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The number of pixels per image, `height · width`: the width of the image matrix.
    pub fn pixels(&self) -> usize {
        self.height * self.width
    }

    /// The number of classes; every label is below it.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// How many images each class has, indexed by class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &label in &self.labels {
            counts[label] += 1;
        }
        counts
    }

    /// Image `i` as a `[height, width]` view.
    ///
    /// # Panics
    /// If `i ≥ len()`.
    #[track_caller]
    pub fn image(&self, i: usize) -> ArrayView2<'_, F> {
        self.check_index(i);
        self.images
            .row(i)
            .into_shape_with_order((self.height, self.width))
            .expect("a row of the standard-layout image matrix is contiguous")
    }

    /// The image matrix and the labels.
    pub fn into_parts(self) -> (Array2<F>, Vec<usize>) {
        (self.images, self.labels)
    }

    /// The images at `indices`, in that order (repeats allowed).
    ///
    /// # Panics
    /// If an index is not below `len()`.
    #[track_caller]
    pub fn select(&self, indices: &[usize]) -> Self {
        for &i in indices {
            self.check_index(i);
        }
        Self::from_checked(
            self.images.select(Axis(0), indices),
            indices.iter().map(|&i| self.labels[i]).collect(),
            self.height,
            self.width,
            self.classes,
        )
    }

    /// Splits the images at random into `(train, test)`, with `test_len` images in `test`
    /// and the rest in `train`. Each part keeps the original order of its images.
    ///
    /// The split is a uniform random one drawn from `rng`: seed it to reproduce the split.
    ///
    /// # Errors
    /// [`DataError::SplitTooLarge`] if `test_len > len()`.
    ///
    /// PyTorch: `torch.utils.data.random_split(dataset, [len - test_len, test_len],
    /// generator)`.
    pub fn split<R: Rng + ?Sized>(&self, test_len: usize, rng: &mut R) -> Result<(Self, Self)> {
        if test_len > self.len() {
            return Err(DataError::SplitTooLarge {
                test_len,
                len: self.len(),
            }
            .into());
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(rng);
        let (test, train) = order.split_at_mut(test_len);
        test.sort_unstable();
        train.sort_unstable();
        Ok((self.select(train), self.select(test)))
    }

    /// Static binarization: a copy in which each pixel `p` is replaced once and for all by a
    /// draw from `Bernoulli(p)` (`u < p` with `u ~ U[0, 1)`), as in the binarized-MNIST
    /// benchmarks. For fresh draws at every batch, use
    /// [`Batches::binarize`](super::Batches::binarize).
    pub fn binarized<R: Rng + ?Sized>(&self, rng: &mut R) -> Self {
        let mut out = self.clone();
        binarize(&mut out.images, rng);
        out
    }

    #[track_caller]
    fn check_index(&self, i: usize) {
        assert!(
            i < self.len(),
            "index {i} is out of range for a dataset of {} images",
            self.len()
        );
    }
}

/// Replaces each pixel `p` by 1 with probability `p` and by 0 otherwise, in memory order.
pub(crate) fn binarize<F: Scalar, R: Rng + ?Sized>(images: &mut Array2<F>, rng: &mut R) {
    images.mapv_inplace(|p| {
        if rng.random::<f64>() < p.as_f64() {
            F::one()
        } else {
            F::zero()
        }
    });
}

/// Shows the shape, not the pixels.
impl<F: Scalar> fmt::Debug for Dataset<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("len", &self.len())
            .field("height", &self.height)
            .field("width", &self.width)
            .field("classes", &self.classes)
            .field("dtype", &F::NAME)
            .finish()
    }
}
