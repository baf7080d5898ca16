//! The `data` module: the embedded digits, IDX files read back and every malformed header
//! rejected by name, truncated gzip, MNIST directories, splits and mini-batches.
//!
//! Seed policy: every draw comes from a generator seeded with a constant written in the
//! test (`StdRng::seed_from_u64` or `data::epoch_rng`), so a failure reproduces exactly.
//! Seeds were fixed before the tests were first run and are never tuned to make a test pass.
//!
//! Files are written under Cargo's per-crate temporary directory (`CARGO_TARGET_TMPDIR`), one
//! fresh subdirectory per test.

use std::fs;
use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, Array3, ArrayD, IxDyn};
use rand::SeedableRng;
use rand::rngs::StdRng;
use stograd::Scalar;
use stograd_nn::Error;
use stograd_nn::data::{self, Batches, DataError, Dataset, idx};

/// A fresh, empty directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("stograd-nn-data")
        .join(test);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `DataError` inside `err`, or a panic naming what came instead.
#[track_caller]
fn data_error<T: std::fmt::Debug>(result: stograd_nn::Result<T>) -> DataError {
    match result {
        Err(Error::Data(e)) => e,
        other => panic!("expected a data error, got {other:?}"),
    }
}

/// An IDX header: magic `00 00 type rank` and big-endian dimensions.
fn header(code: u8, dims: &[u32]) -> Vec<u8> {
    let mut out = vec![0, 0, code, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The embedded digits

fn check_digits<F: Scalar>() {
    let digits = data::digits::<F>();
    assert_eq!(digits.len(), 1797);
    assert_eq!(
        (digits.height(), digits.width(), digits.pixels()),
        (8, 8, 64)
    );
    assert_eq!(digits.images().shape(), [1797, 64]);
    assert_eq!(digits.classes(), 10);
    // Pixels are k/16 for k in 0..=16; k/16 is exact in both f32 and f64.
    for &p in digits.images() {
        let k = p.as_f64() * 16.0;
        assert!((0.0..=16.0).contains(&k) && k == k.round(), "pixel {p}");
    }
    assert_eq!(
        digits.class_counts(),
        [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    );
    // The first row of the file: 0,0,5,13,9,1,0,0, … label 0.
    let first: Vec<f64> = digits.image(0).row(0).iter().map(|p| p.as_f64()).collect();
    let want: Vec<f64> = [0., 0., 5., 13., 9., 1., 0., 0.].map(|k| k / 16.0).to_vec();
    assert_eq!(first, want);
    assert_eq!(digits.labels()[..10], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
}

#[test]
fn digits_load_in_f32_and_f64() {
    check_digits::<f32>();
    check_digits::<f64>();
}

#[test]
fn digits_csv_reads_the_same_format_raw_or_gzip() {
    let dir = scratch("digits_csv");
    let gz = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits.csv.gz");
    assert_eq!(data::digits_csv::<f32>(&gz).unwrap(), data::digits::<f32>());

    // The first three lines, uncompressed, with CRLF endings and a blank line at the end.
    let text = "0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,0,5,8,0,\
                0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0,0\r\n";
    let raw = dir.join("three.csv");
    fs::write(&raw, format!("{text}{text}{text}\r\n")).unwrap();
    let three = data::digits_csv::<f64>(&raw).unwrap();
    assert_eq!(three.len(), 3);
    assert_eq!(three.images()[[1, 3]], 13.0 / 16.0);
}

#[test]
fn digits_csv_errors_name_line_and_field() {
    let dir = scratch("digits_csv_errors");
    let row = |pixel: &str, label: &str| {
        let mut fields = vec!["0"; 64];
        fields[10] = pixel;
        format!("{},{label}\n", fields.join(","))
    };
    let cases = [
        ("columns", format!("{}{}", row("0", "1"), "1,2,3\n")),
        ("pixel", format!("{}{}", row("0", "1"), row("17", "1"))),
        ("label", row("0", "10")),
        ("text", row("x", "1")),
    ];
    for (name, text) in cases {
        let path = dir.join(format!("{name}.csv"));
        fs::write(&path, text).unwrap();
        let err = data_error(data::digits_csv::<f32>(&path));
        match (name, &err) {
            (
                "columns",
                DataError::CsvColumns {
                    path: p,
                    line: 2,
                    expected: 65,
                    got: 3,
                },
            ) => assert_eq!(p, &path),
            (
                "pixel",
                DataError::CsvField {
                    line: 2,
                    column: 11,
                    value,
                    ..
                },
            ) => assert_eq!(value, "17"),
            (
                "label",
                DataError::CsvField {
                    line: 1,
                    column: 65,
                    value,
                    ..
                },
            ) => assert_eq!(value, "10"),
            (
                "text",
                DataError::CsvField {
                    column: 11, value, ..
                },
            ) => assert_eq!(value, "x"),
            _ => panic!("{name}: unexpected {err:?}"),
        }
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// IDX files

#[test]
fn idx_round_trips_raw_and_gzip() {
    let dir = scratch("idx_round_trip");
    let images = Array3::from_shape_fn((3, 5, 4), |(i, r, c)| (i * 20 + r * 4 + c) as u8 * 3);
    let labels = Array1::from(vec![7u8, 0, 255]);
    let empty = ArrayD::<u8>::zeros(IxDyn(&[0, 28, 28]));
    for name in ["a-idx3-ubyte", "a-idx3-ubyte.gz"] {
        let path = dir.join(name);
        idx::write(&path, &images).unwrap();
        assert_eq!(idx::read(&path).unwrap(), images.clone().into_dyn());
        idx::write(&path, &labels).unwrap(); // overwrites
        assert_eq!(idx::read(&path).unwrap(), labels.clone().into_dyn());
        idx::write(&path, &empty).unwrap();
        assert_eq!(idx::read(&path).unwrap().shape(), [0, 28, 28]);
    }
    // Transposed (non-standard-layout) input is written in logical order.
    let path = dir.join("t-idx2-ubyte");
    let m = Array2::from_shape_fn((2, 3), |(r, c)| (r * 3 + c) as u8);
    idx::write(&path, &m.t()).unwrap();
    assert_eq!(idx::read(&path).unwrap(), m.t().into_dyn());
    // No temporary file is left behind.
    let mut names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a-idx3-ubyte", "a-idx3-ubyte.gz", "t-idx2-ubyte"]);
}

#[test]
fn gzip_is_recognised_by_its_magic_bytes_not_the_name() {
    let dir = scratch("idx_sniff");
    let labels = Array1::from(vec![1u8, 2, 3]);
    let gz = dir.join("labels.gz");
    idx::write(&gz, &labels).unwrap();
    assert_eq!(fs::read(&gz).unwrap()[..2], [0x1f, 0x8b]);
    let renamed = dir.join("labels-idx1-ubyte");
    fs::rename(&gz, &renamed).unwrap();
    assert_eq!(idx::read(&renamed).unwrap(), labels.clone().into_dyn());

    let raw_named_gz = dir.join("raw.gz");
    let mut bytes = header(0x08, &[3]);
    bytes.extend([1, 2, 3]);
    fs::write(&raw_named_gz, bytes).unwrap();
    assert_eq!(idx::read(&raw_named_gz).unwrap(), labels.into_dyn());
}

#[test]
fn every_malformed_header_gives_its_named_error() {
    let dir = scratch("idx_malformed");
    let with_data = |mut h: Vec<u8>, n: usize| {
        h.extend(std::iter::repeat_n(9u8, n));
        h
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "bad-magic",
            with_data(vec![0x08, 0x03, 0x00, 0x01, 0, 0, 0, 2], 2),
        ),
        ("unsupported-type", with_data(header(0x0D, &[2]), 8)),
        ("short-magic", vec![0, 0]),
        ("short-dims", header(0x08, &[3, 28, 28])[..9].to_vec()),
        ("short-data", with_data(header(0x08, &[2, 3]), 5)),
        ("trailing", with_data(header(0x08, &[2, 3]), 8)),
    ];
    for (name, bytes) in cases {
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        let err = data_error(idx::read(&path));
        let p = match (name, &err) {
            ("bad-magic", DataError::BadMagic { path, found }) => {
                assert_eq!(found, &[0x08, 0x03, 0x00, 0x01]);
                path
            }
            ("unsupported-type", DataError::UnsupportedType { path, code: 0x0D }) => path,
            (
                "short-magic",
                DataError::Truncated {
                    path,
                    what: "magic number",
                    expected_bytes: 4,
                    got_bytes: 2,
                },
            ) => path,
            (
                "short-dims",
                DataError::Truncated {
                    path,
                    what: "dimensions",
                    expected_bytes: 16,
                    got_bytes: 9,
                },
            ) => path,
            (
                "short-data",
                DataError::Truncated {
                    path,
                    what: "data",
                    expected_bytes: 18, // 12 header bytes + 2·3 data bytes
                    got_bytes: 17,
                },
            ) => path,
            (
                "trailing",
                DataError::TrailingBytes {
                    path,
                    expected_bytes: 18,
                    got_bytes: 20,
                },
            ) => path,
            _ => panic!("{name}: unexpected {err:?}"),
        };
        assert_eq!(p, &path);
        // The message names the file too.
        assert!(
            err.to_string().starts_with(&*path.to_string_lossy()),
            "{err}"
        );
    }
}

#[test]
fn oversized_dimensions_are_an_error_not_an_allocation() {
    let dir = scratch("idx_too_large");
    // 2³² − 1 in each of 3 dimensions overflows u64, let alone memory.
    let path = dir.join("huge");
    fs::write(&path, header(0x08, &[u32::MAX; 3])).unwrap();
    assert!(
        matches!(data_error(idx::read(&path)), DataError::TooLarge { dims, .. }
        if dims == [u32::MAX as usize; 3])
    );
    // A header that claims 4 GB with 3 data bytes behind it is merely truncated.
    let path = dir.join("claims-4gb");
    let mut bytes = header(0x08, &[u32::MAX]);
    bytes.extend([1, 2, 3]);
    fs::write(&path, bytes).unwrap();
    assert!(matches!(
        data_error(idx::read(&path)),
        DataError::Truncated {
            what: "data",
            got_bytes: 11,
            ..
        }
    ));
}

#[test]
fn truncated_or_corrupt_gzip_is_an_error_not_a_panic() {
    let dir = scratch("idx_bad_gzip");
    let full = dir.join("full.gz");
    let images = Array3::from_shape_fn((4, 28, 28), |(i, r, c)| (i + r * c) as u8);
    idx::write(&full, &images).unwrap();
    let bytes = fs::read(&full).unwrap();

    // Strict prefixes of the stream: every cut in the 10-byte gzip header and the first
    // compressed bytes, every 37th byte after, and every cut in the 8-byte CRC and length
    // trailer. (Not every cut: writing a file costs milliseconds on some file systems.)
    let cut = dir.join("cut.gz");
    let n = bytes.len();
    let cuts = (0..24).chain((24..n - 9).step_by(37)).chain(n - 9..n);
    for len in cuts {
        fs::write(&cut, &bytes[..len]).unwrap();
        let err = data_error(idx::read(&cut));
        let ok = match len {
            // Too short for the gzip magic: read as a raw file too short for the IDX magic.
            0 | 1 => matches!(
                err,
                DataError::Truncated {
                    what: "magic number",
                    ..
                }
            ),
            _ => matches!(&err, DataError::BadGzip { path, .. } if path == &cut),
        };
        assert!(ok, "prefix of {len} bytes: {err:?}");
    }

    // A flipped byte inside the compressed data (after the 10-byte header, before the
    // 8-byte CRC and length trailer).
    let mut corrupt = bytes.clone();
    corrupt[bytes.len() / 2] ^= 0x55;
    fs::write(&cut, &corrupt).unwrap();
    assert!(matches!(
        data_error(idx::read(&cut)),
        DataError::BadGzip { .. }
    ));
}

#[test]
fn unwritable_shapes_are_rejected() {
    let dir = scratch("idx_unwritable");
    let path = dir.join("x");
    let deep = ArrayD::<u8>::zeros(IxDyn(&[1; 256]));
    assert!(matches!(
        data_error(idx::write(&path, &deep)),
        DataError::Unwritable { dims, .. } if dims.len() == 256
    ));
    assert!(!path.exists());
}

// ---------------------------------------------------------------------------------------------
// MNIST directories

/// Writes `n` images of `height × width` (pixel `(i·h·w + k) mod 256`) and the labels.
fn write_pair(images: &Path, labels: &Path, n: usize, height: usize, width: usize, ys: &[u8]) {
    let pixels = Array3::from_shape_fn((n, height, width), |(i, r, c)| {
        ((i * height * width + r * width + c) % 256) as u8
    });
    idx::write(images, &pixels).unwrap();
    idx::write(labels, &Array1::from(ys.to_vec())).unwrap();
}

#[test]
fn mnist_reads_a_directory_of_raw_and_gzip_files() {
    let dir = scratch("mnist_synthetic");
    write_pair(
        &dir.join("train-images-idx3-ubyte.gz"),
        &dir.join("train-labels-idx1-ubyte"),
        3,
        28,
        28,
        &[5, 0, 9],
    );
    write_pair(
        &dir.join("t10k-images-idx3-ubyte"),
        &dir.join("t10k-labels-idx1-ubyte.gz"),
        2,
        28,
        28,
        &[7, 2],
    );
    let (train, test) = data::mnist::<f32>(&dir).unwrap();
    assert_eq!((train.len(), test.len()), (3, 2));
    assert_eq!(
        (train.height(), train.width(), train.classes()),
        (28, 28, 10)
    );
    assert_eq!(train.labels(), [5, 0, 9]);
    assert_eq!(test.labels(), [7, 2]);
    // Image 1, pixel 10 is byte (784 + 10) mod 256 = 26, scaled by /255.
    assert_eq!(train.images()[[1, 10]], 26.0 / 255.0);
    assert_eq!(train.images()[[0, 255]], 1.0);
    assert_eq!(test.image(1)[[0, 3]], ((784 + 3) % 256) as f32 / 255.0);
}

#[test]
fn mnist_errors_name_the_files() {
    let dir = scratch("mnist_errors");
    let (train_x, train_y) = (
        dir.join("train-images-idx3-ubyte"),
        dir.join("train-labels-idx1-ubyte"),
    );
    let (test_x, test_y) = (
        dir.join("t10k-images-idx3-ubyte"),
        dir.join("t10k-labels-idx1-ubyte"),
    );

    // Nothing there yet: the error lists both names tried.
    let err = data_error(data::mnist::<f32>(&dir));
    let tried = vec![train_x.clone(), dir.join("train-images-idx3-ubyte.gz")];
    assert!(
        matches!(&err, DataError::MissingFile { tried: t } if *t == tried),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("train-images-idx3-ubyte.gz"),
        "{err}"
    );

    // 3 images, 2 labels (and, at first, no test files).
    write_pair(&train_x, &train_y, 3, 28, 28, &[1, 2]);
    let err = data_error(data::mnist::<f32>(&dir));
    assert!(
        matches!(&err, DataError::MissingFile { tried } if tried[0] == test_x),
        "{err:?}"
    );
    write_pair(&test_x, &test_y, 2, 28, 28, &[1, 2]);
    let err = data_error(data::mnist::<f32>(&dir));
    assert!(
        matches!(&err, DataError::CountMismatch { images, labels, images_len: 3, labels_len: 2 }
            if *images == train_x && *labels == train_y),
        "{err:?}"
    );

    // A label of 10.
    write_pair(&train_x, &train_y, 3, 28, 28, &[1, 10, 2]);
    let err = data_error(data::mnist::<f32>(&dir));
    assert!(
        matches!(&err, DataError::LabelOutOfRange { path, index: 1, label: 10, classes: 10 }
            if *path == train_y),
        "{err:?}"
    );

    // Test images of another size.
    write_pair(&train_x, &train_y, 3, 28, 28, &[1, 0, 2]);
    write_pair(&test_x, &test_y, 2, 27, 28, &[1, 2]);
    let err = data_error(data::mnist::<f32>(&dir));
    assert!(
        matches!(&err, DataError::DimsMismatch { path, expected, got, .. }
            if *path == test_x && *expected == [28, 28] && *got == [27, 28]),
        "{err:?}"
    );

    // Images of rank 2, labels of rank 2.
    idx::write(&test_x, &Array2::<u8>::zeros((2, 784))).unwrap();
    let err = data_error(data::idx_dataset::<f32>(&test_x, &test_y, 10));
    assert!(
        matches!(&err, DataError::WrongRank { path, what: "images", expected: 3, got: 2 }
            if *path == test_x),
        "{err:?}"
    );
    idx::write(&test_y, &Array2::<u8>::zeros((2, 1))).unwrap();
    let err = data_error(data::idx_dataset::<f32>(&train_x, &test_y, 10));
    assert!(
        matches!(&err, DataError::WrongRank { path, what: "labels", expected: 1, got: 2 }
            if *path == test_y),
        "{err:?}"
    );
}

#[test]
fn real_mnist_when_available() {
    let dir = std::env::var_os("STOGRAD_MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/data/mnist"));
    if !dir.is_dir() {
        eprintln!(
            "skipped: no MNIST directory at {} (set STOGRAD_MNIST_DIR to test real MNIST)",
            dir.display()
        );
        return;
    }
    let (train, test) = data::mnist::<f32>(&dir).unwrap();
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    assert_eq!((train.height(), train.width()), (28, 28));
    assert_eq!(train.labels()[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(test.labels()[..10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    assert_eq!(
        train.class_counts(),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        test.class_counts(),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    // Mean pixel 33.318 / 255 = 0.13066 (published: 0.1307).
    let mean = train.images().iter().map(|&p| f64::from(p)).sum::<f64>() / (60_000.0 * 784.0);
    assert!((mean - 33.318 / 255.0).abs() < 1e-4, "mean pixel {mean}");
}

// ---------------------------------------------------------------------------------------------
// Datasets

#[test]
fn split_partitions_reproducibly() {
    let digits = data::digits::<f32>();
    let (train, test) = digits.split(300, &mut StdRng::seed_from_u64(11)).unwrap();
    assert_eq!((train.len(), test.len()), (1497, 300));
    let (train2, test2) = digits.split(300, &mut StdRng::seed_from_u64(11)).unwrap();
    assert!(train == train2 && test == test2);
    let (_, test3) = digits.split(300, &mut StdRng::seed_from_u64(12)).unwrap();
    assert!(test3 != test);
    // Together the parts hold each class as often as the whole.
    let counts: Vec<usize> = train
        .class_counts()
        .iter()
        .zip(test.class_counts())
        .map(|(a, b)| a + b)
        .collect();
    assert_eq!(counts, digits.class_counts());

    let (all, none) = digits.split(0, &mut StdRng::seed_from_u64(13)).unwrap();
    assert!(all == digits && none.is_empty());
    assert!(matches!(
        data_error(digits.split(1798, &mut StdRng::seed_from_u64(13))),
        DataError::SplitTooLarge {
            test_len: 1798,
            len: 1797
        }
    ));
}

#[test]
fn select_gathers_rows_in_order() {
    let digits = data::digits::<f64>();
    let picked = digits.select(&[5, 0, 5]);
    assert_eq!(picked.labels(), [5, 0, 5]);
    assert_eq!(picked.images().row(0), digits.images().row(5));
    assert_eq!(picked.images().row(1), digits.images().row(0));
}

#[test]
#[should_panic(expected = "index 1797 is out of range for a dataset of 1797 images")]
fn select_out_of_range_panics() {
    data::digits::<f32>().select(&[0, 1797]);
}

#[test]
fn dataset_new_checks_its_arrays() {
    let ok = Dataset::new(Array2::from_elem((2, 6), 0.5f32), vec![0, 2], 2, 3, 3).unwrap();
    assert_eq!(ok.image(1).shape(), [2, 3]);
    let err = data_error(Dataset::new(
        Array2::from_elem((2, 6), 0.5f32),
        vec![0],
        2,
        3,
        3,
    ));
    assert!(matches!(
        err,
        DataError::DatasetShape {
            images: [2, 6],
            labels: 1,
            ..
        }
    ));
    let err = data_error(Dataset::new(
        Array2::from_elem((2, 6), 0.5f32),
        vec![0, 1],
        2,
        2,
        3,
    ));
    assert!(matches!(
        err,
        DataError::DatasetShape {
            height: 2,
            width: 2,
            ..
        }
    ));
    let mut images = Array2::from_elem((2, 6), 0.5f32);
    images[[1, 4]] = f32::NAN;
    let err = data_error(Dataset::new(images, vec![0, 1], 2, 3, 3));
    assert!(
        matches!(err, DataError::PixelOutOfRange { row: 1, column: 4, value } if value.is_nan())
    );
    let err = data_error(Dataset::new(
        Array2::from_elem((2, 6), 0.5f32),
        vec![0, 3],
        2,
        3,
        3,
    ));
    assert!(matches!(
        err,
        DataError::BadLabel {
            index: 1,
            label: 3,
            classes: 3
        }
    ));
}

#[test]
fn static_binarization_draws_each_pixel_once() {
    let digits = data::digits::<f32>();
    let a = digits.binarized(&mut StdRng::seed_from_u64(21));
    assert!(a.images().iter().all(|&p| p == 0.0 || p == 1.0));
    assert_eq!(a.labels(), digits.labels());
    assert!(a == digits.binarized(&mut StdRng::seed_from_u64(21)));
    assert!(a != digits.binarized(&mut StdRng::seed_from_u64(22)));
    // Pixels at 0 stay 0, pixels at 1 stay 1.
    for (&b, &p) in a.images().iter().zip(digits.images()) {
        assert!((p != 0.0 || b == 0.0) && (p != 1.0 || b == 1.0));
    }
}

// ---------------------------------------------------------------------------------------------
// Batches

/// The indices of each batch of one epoch.
fn epoch_indices<R: rand::Rng>(batches: Batches<'_, f32, R>) -> Vec<Vec<usize>> {
    batches.map(|b| b.indices).collect()
}

#[test]
fn batches_cover_every_index_once_per_epoch() {
    let digits = data::digits::<f32>();
    for (batch_size, want_sizes) in [
        (100, [vec![100usize; 17], vec![97]].concat()),
        (1797, vec![1797]),
        (5000, vec![1797]),
    ] {
        let batches = Batches::new(&digits, batch_size, data::epoch_rng(31, 0)).unwrap();
        assert_eq!(batches.len(), want_sizes.len());
        let mut seen = vec![0; digits.len()];
        let mut sizes = Vec::new();
        let mut batches = batches;
        let mut left = batches.len();
        while let Some(batch) = batches.next() {
            left -= 1;
            assert_eq!(batches.len(), left);
            assert_eq!(batch.images.shape(), [batch.len(), 64]);
            for (k, &i) in batch.indices.iter().enumerate() {
                seen[i] += 1;
                assert_eq!(batch.labels[k], digits.labels()[i]);
                assert_eq!(batch.images.row(k), digits.images().row(i));
            }
            sizes.push(batch.len());
        }
        assert_eq!(sizes, want_sizes, "batch size {batch_size}");
        assert!(seen.iter().all(|&n| n == 1));
        assert!(batches.next().is_none()); // fused
    }
}

#[test]
fn drop_last_drops_only_a_short_final_batch() {
    let digits = data::digits::<f32>();
    let batches = Batches::new(&digits, 100, data::epoch_rng(32, 0))
        .unwrap()
        .drop_last(true);
    assert_eq!(batches.len(), 17);
    let epoch = epoch_indices(batches);
    assert!(epoch.len() == 17 && epoch.iter().all(|b| b.len() == 100));
    // 1797 = 3 · 599: nothing to drop.
    let batches = Batches::new(&digits, 599, data::epoch_rng(32, 0))
        .unwrap()
        .drop_last(true);
    assert_eq!(epoch_indices(batches).len(), 3);
    // A batch larger than the dataset: no batch at all.
    let batches = Batches::new(&digits, 1800, data::epoch_rng(32, 0))
        .unwrap()
        .drop_last(true);
    assert_eq!((batches.len(), epoch_indices(batches).len()), (0, 0));
}

#[test]
fn batches_reproduce_for_a_seed_and_reshuffle_for_another() {
    let digits = data::digits::<f32>();
    let run = |seed, epoch| {
        epoch_indices(Batches::new(&digits, 64, data::epoch_rng(seed, epoch)).unwrap())
    };
    assert_eq!(run(41, 3), run(41, 3));
    assert_ne!(run(41, 3), run(41, 4));
    assert_ne!(run(41, 3), run(42, 3));
    // A lent generator works too, and moves on between epochs.
    let mut rng = StdRng::seed_from_u64(43);
    let first = epoch_indices(Batches::new(&digits, 64, &mut rng).unwrap());
    let second = epoch_indices(Batches::new(&digits, 64, &mut rng).unwrap());
    assert_ne!(first, second);
    assert_eq!(
        first,
        epoch_indices(Batches::new(&digits, 64, StdRng::seed_from_u64(43)).unwrap())
    );
    // Resuming mid-epoch: skipping batches (binarization draws included) gives the rest.
    let binarized = |skip| {
        Batches::new(&digits, 64, data::epoch_rng(44, 0))
            .unwrap()
            .binarize(true)
            .skip(skip)
            .collect::<Vec<_>>()
    };
    assert_eq!(binarized(0)[5..], binarized(5));
    // Not shuffled: in order.
    let in_order = epoch_indices(
        Batches::new(&digits, 64, data::epoch_rng(41, 0))
            .unwrap()
            .shuffle(false),
    );
    assert_eq!(in_order.concat(), (0..1797).collect::<Vec<_>>());
}

#[test]
fn batch_size_zero_is_an_invalid_argument() {
    let digits = data::digits::<f32>();
    let err = Batches::new(&digits, 0, data::epoch_rng(0, 0)).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { name: "batch_size", value, .. } if value == 0.0),
        "{err:?}"
    );
}

#[test]
#[should_panic(expected = "Batches::drop_last called after the first batch was taken")]
fn settings_after_the_first_batch_panic() {
    let digits = data::digits::<f32>();
    let mut batches = Batches::new(&digits, 10, data::epoch_rng(0, 0)).unwrap();
    batches.next();
    let _ = batches.drop_last(true);
}

#[test]
fn dynamic_binarization_has_the_pixel_means() {
    let digits = data::digits::<f64>();
    let batches = |seed| {
        Batches::new(&digits, 128, data::epoch_rng(seed, 0))
            .unwrap()
            .binarize(true)
    };
    // Per pixel position j, over one epoch: the count of ones T_j is a sum of independent
    // Bernoulli(p_ij), so E[T_j] = Σ_i p_ij and Var[T_j] = Σ_i p_ij (1 − p_ij). Each of the
    // 64 checks |T_j − E[T_j]| ≤ 4 sd fails with probability at most about 6.3e-5 under the
    // normal approximation, so the family-wise false-alarm rate is at most 64 · 6.3e-5 ≈ 4e-3
    // (Bonferroni). Positions where every pixel is 0 (or 1) have sd 0: T_j must be exact.
    let mut ones = [0.0f64; 64];
    for batch in batches(51) {
        assert!(batch.images.iter().all(|&b| b == 0.0 || b == 1.0));
        assert_eq!(batch.labels[0], digits.labels()[batch.indices[0]]);
        for (j, col) in batch.images.columns().into_iter().enumerate() {
            ones[j] += col.sum();
        }
    }
    for (j, col) in digits.images().columns().into_iter().enumerate() {
        let mean: f64 = col.sum();
        let sd = col.iter().map(|p| p * (1.0 - p)).sum::<f64>().sqrt();
        assert!(
            (ones[j] - mean).abs() <= 4.0 * sd,
            "pixel {j}: {} ones, expected {mean} ± {sd}",
            ones[j]
        );
    }

    // The same images are drawn afresh each epoch, and alike for the same seed.
    let by_index = |seed| {
        let mut out = Array2::<f64>::zeros((digits.len(), 64));
        for batch in batches(seed) {
            for (k, &i) in batch.indices.iter().enumerate() {
                out.row_mut(i).assign(&batch.images.row(k));
            }
        }
        out
    };
    assert_eq!(by_index(52), by_index(52));
    assert_ne!(by_index(52), by_index(53));
}
