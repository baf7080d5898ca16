//! MNIST-style datasets from pairs of IDX files: an image file and a label file.

use std::path::{Path, PathBuf};

use stograd::Scalar;

use super::{DataError, Dataset, idx};
use crate::Result;

/// The four files of an MNIST-format directory, without the optional `.gz`.
const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// The largest pixel byte, which becomes 1.
const MAX_PIXEL: u8 = 255;

/// Loads MNIST (or Fashion-MNIST, which uses the same file names) from `dir`:
/// `(train, test)`, 60,000 and 10,000 images of 28×28 pixels scaled to `[0, 1]` by `/255`,
/// labels `0..10`.
///
/// Each of `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`
/// and `t10k-labels-idx1-ubyte` is looked up as named, then with `.gz` appended. Any image
/// size is accepted as long as both parts agree.
///
/// # Errors
/// [`DataError::MissingFile`] with both names tried when a file is absent; the errors of
/// [`idx_dataset`] for each part; [`DataError::DimsMismatch`] when the test images are not
/// the size of the training images.
///
/// PyTorch: `torchvision.datasets.MNIST(root, train=True)` and `train=False`.
pub fn mnist<F: Scalar>(dir: impl AsRef<Path>) -> Result<(Dataset<F>, Dataset<F>)> {
    let dir = dir.as_ref();
    // Find all four before reading any, so that a missing file is reported at once.
    let (train_images, train_labels) = (find(dir, TRAIN_IMAGES)?, find(dir, TRAIN_LABELS)?);
    let (test_images, test_labels) = (find(dir, TEST_IMAGES)?, find(dir, TEST_LABELS)?);
    let train = idx_dataset(train_images, train_labels, 10)?;
    let test = idx_dataset(&test_images, test_labels, 10)?;
    let size = |d: &Dataset<F>| vec![d.height(), d.width()];
    if size(&test) != size(&train) {
        return Err(DataError::DimsMismatch {
            path: test_images,
            what: "image height and width (as in the training images)",
            expected: size(&train),
            got: size(&test),
        }
        .into());
    }
    Ok((train, test))
}

/// `dir/name` if it exists, else `dir/name.gz`.
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    let tried = vec![dir.join(name), dir.join(format!("{name}.gz"))];
    match tried.iter().find(|p| p.is_file()) {
        Some(path) => Ok(path.clone()),
        None => Err(DataError::MissingFile { tried }.into()),
    }
}

/// A dataset from an IDX image file (rank 3: `[n, height, width]`, unsigned bytes scaled
/// to `[0, 1]` by `/255`) and an IDX label file (rank 1: `[n]`, each below `classes`), raw or
/// gzip-compressed. This is the format of MNIST, Fashion-MNIST, KMNIST and EMNIST.
///
/// # Errors
/// The errors of [`idx::read`] for either file; [`DataError::WrongRank`] when the images
/// are not rank 3 or the labels not rank 1; [`DataError::CountMismatch`] when the files hold
/// different numbers of examples; [`DataError::LabelOutOfRange`] for the first label not
/// below `classes`.
pub fn idx_dataset<F: Scalar>(
    images: impl AsRef<Path>,
    labels: impl AsRef<Path>,
    classes: usize,
) -> Result<Dataset<F>> {
    let (images_path, labels_path) = (images.as_ref(), labels.as_ref());
    let images = idx::read(images_path)?;
    check_rank(images_path, "images", 3, images.ndim())?;
    let labels = idx::read(labels_path)?;
    check_rank(labels_path, "labels", 1, labels.ndim())?;

    let (n, height, width) = (images.shape()[0], images.shape()[1], images.shape()[2]);
    if labels.len() != n {
        return Err(DataError::CountMismatch {
            images: images_path.to_owned(),
            labels: labels_path.to_owned(),
            images_len: n,
            labels_len: labels.len(),
        }
        .into());
    }
    let labels: Vec<usize> = labels.iter().map(|&l| usize::from(l)).collect();
    if let Some((index, &label)) = labels.iter().enumerate().find(|&(_, &l)| l >= classes) {
        return Err(DataError::LabelOutOfRange {
            path: labels_path.to_owned(),
            index,
            label,
            classes,
        }
        .into());
    }
    let (pixels, _) = images.into_raw_vec_and_offset();
    Ok(Dataset::from_bytes(
        &pixels, labels, height, width, classes, MAX_PIXEL,
    ))
}

/// A [`DataError::WrongRank`] unless `got == expected`.
fn check_rank(path: &Path, what: &'static str, expected: usize, got: usize) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(DataError::WrongRank {
            path: path.to_owned(),
            what,
            expected,
            got,
        }
        .into())
    }
}
