//! Checkpoints through the public API: bit-exact round trips in f32 and f64, files written by
//! Python's safetensors, our files read by an independent parser written here, each mismatch
//! and corruption with its error, and a property test that no damaged file panics the loader
//! or changes a parameter when it is refused.
//!
//! Seed policy: every random array comes from `StdRng::seed_from_u64` with a seed written in
//! the test, and the property test runs from proptest's fixed default seed with a fixed number
//! of cases, so a failure reproduces exactly.

use std::any::Any;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn, array};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use stograd::{Params, Scalar};
use stograd_nn::checkpoint::{self, Checkpoint, CheckpointError, Corruption, Dtype};
use stograd_nn::{Error, StateDict};

for_each_float!(
    round_trip_is_bit_exact,
    independent_reader_parses_every_field,
    parameters_are_matched_by_name_not_order,
);

// ---------------------------------------------------------------------------------------------
// Helpers

/// A fresh, empty directory for one test (and one float type).
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("checkpoint-{test}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("the target's temporary directory is writable");
    dir
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/checkpoint")
        .join(name)
}

fn normal<F: Scalar>(shape: &[usize], seed: u64) -> ArrayD<F> {
    let mut rng = StdRng::seed_from_u64(seed);
    // Box–Muller: enough for test data.
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        let (u, v) = (rng.random::<f64>(), rng.random::<f64>());
        F::from_f64((-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos())
    })
}

fn arr<F: Scalar>(shape: &[usize], values: &[f64]) -> ArrayD<F> {
    ArrayD::from_shape_vec(
        IxDyn(shape),
        values.iter().map(|&x| F::from_f64(x)).collect(),
    )
    .expect("the test's values fit its shape")
}

/// A small model in the shape of the VAE's: random weights, a bias with the awkward values
/// (−0, the smallest subnormal of `F`, ±∞, NaN), a 0-element and a 0-dimensional parameter.
fn model<F: Scalar>(seed: u64) -> Params<F> {
    let mut params = Params::new();
    let tiny = (F::min_positive_value() * F::epsilon()).as_f64(); // 2⁻¹⁴⁹ or 2⁻¹⁰⁷⁴
    params
        .insert("encoder.fc1.weight", normal(&[3, 4], seed))
        .unwrap();
    params
        .insert(
            "encoder.fc1.bias",
            arr(
                &[5],
                &[-0.0, tiny, f64::INFINITY, f64::NEG_INFINITY, f64::NAN],
            ),
        )
        .unwrap();
    params
        .insert("decoder.mask", ArrayD::zeros(vec![0, 2]))
        .unwrap();
    params.insert("log_scale", arr(&[], &[0.1 + 0.2])).unwrap();
    params
}

/// The same parameter names and shapes with every element zero.
fn zeroed<F: Scalar>(params: &Params<F>) -> Params<F> {
    let mut zeros = Params::new();
    for (_, name, value) in params.iter() {
        zeros.insert(name, ArrayD::zeros(value.shape())).unwrap();
    }
    zeros
}

fn extra<F: Scalar>(seed: u64) -> Checkpoint<F> {
    let mut adam = StateDict::default();
    adam.tensors.insert(
        "exp_avg.encoder.fc1.weight".to_owned(),
        normal(&[3, 4], seed + 1),
    );
    adam.tensors.insert(
        "exp_avg_sq.encoder.fc1.weight".to_owned(),
        normal(&[3, 4], seed + 2),
    );
    adam.values.insert("step".to_owned(), 1200.0);
    adam.values.insert("lr".to_owned(), 0.1 + 0.2);
    adam.values.insert("eps".to_owned(), 5e-324);
    adam.values.insert("max".to_owned(), f64::INFINITY);
    let mut baseline = StateDict::default();
    baseline.values.insert("ema".to_owned(), -0.0);
    Checkpoint::default()
        .with_state("optimizer", adam)
        .with_state("baseline", baseline)
        .with_state("empty", StateDict::default())
        .with_metadata("epoch", "3")
        .with_metadata("seed", "42")
        .with_metadata("config", r#"{"latent":2,"hidden":[64,32],"name":"vä\"e"}"#)
}

/// Element-wise identity, telling −0 from 0 and every NaN equal to every NaN.
fn same<F: Scalar>(a: &ArrayD<F>, b: &ArrayD<F>) -> bool {
    a.shape() == b.shape()
        && a.iter().zip(b).all(|(&x, &y)| {
            (x.is_nan() && y.is_nan()) || (x == y && x.is_sign_negative() == y.is_sign_negative())
        })
}

/// Every parameter's name and value, to show a refused load changed nothing.
fn snapshot<F: Scalar>(params: &Params<F>) -> Vec<(String, ArrayD<F>)> {
    params
        .iter()
        .map(|(_, name, value)| (name.to_owned(), value.clone()))
        .collect()
}

fn assert_unchanged<F: Scalar>(params: &Params<F>, before: &[(String, ArrayD<F>)]) {
    let after = snapshot(params);
    assert_eq!(after.len(), before.len());
    for ((name, a), (_, b)) in after.iter().zip(before) {
        assert!(same(a, b), "{name} changed");
    }
}

/// The little-endian bytes of an element, taken from its concrete type.
fn le_bytes<F: Scalar>(x: F) -> Vec<u8> {
    let x: &dyn Any = &x;
    match (x.downcast_ref::<f32>(), x.downcast_ref::<f64>()) {
        (Some(x), _) => x.to_le_bytes().to_vec(),
        (_, Some(x)) => x.to_le_bytes().to_vec(),
        _ => unreachable!("Scalar is f32 or f64"),
    }
}

fn dtype_name<F: Scalar>() -> &'static str {
    if F::NAME == "f32" { "F32" } else { "F64" }
}

/// A safetensors file from a header and data, with the 8-byte length in front.
fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

/// The `Corruption` of a `Corrupt` error, or a panic naming what came instead.
fn corruption<T: std::fmt::Debug>(result: stograd_nn::Result<T>) -> Corruption {
    match result {
        Err(Error::Checkpoint(CheckpointError::Corrupt { problem, .. })) => problem,
        other => panic!("expected a corrupt-file error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips

fn round_trip_is_bit_exact<F: Scalar>() {
    let dir = scratch(&format!("round-trip-{}", F::NAME));
    let path = dir.join("last.safetensors");
    let params = model::<F>(7);
    let saved = extra::<F>(7);
    checkpoint::save(&path, &params, &saved).unwrap();

    let mut restored = zeroed(&params);
    let checkpoint = checkpoint::load(&path, &mut restored).unwrap();
    for ((_, name, a), (_, _, b)) in params.iter().zip(restored.iter()) {
        assert!(same(a, b), "{name}: {a} against {b}");
    }
    assert_eq!(checkpoint.metadata, saved.metadata);
    assert_eq!(
        checkpoint.states.keys().collect::<Vec<_>>(),
        ["baseline", "empty", "optimizer"]
    );
    for (name, state) in &saved.states {
        let back = &checkpoint.states[name];
        assert_eq!(back.tensors, state.tensors, "state {name}");
        let bits = |m: &BTreeMap<String, f64>| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.to_bits()))
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&back.values), bits(&state.values), "state {name}");
    }
    // Saving what was loaded gives the same bytes: nothing, not a NaN payload, was altered.
    let again = dir.join("again.safetensors");
    checkpoint::save(&again, &restored, &checkpoint).unwrap();
    assert_eq!(fs::read(&path).unwrap(), fs::read(&again).unwrap());
    fs::remove_dir_all(dir).unwrap();
}

fn parameters_are_matched_by_name_not_order<F: Scalar>() {
    let dir = scratch(&format!("by-name-{}", F::NAME));
    let path = dir.join("ck.safetensors");
    let params = model::<F>(11);
    checkpoint::save(&path, &params, &Checkpoint::default()).unwrap();
    let mut reversed = Params::<F>::new();
    for (_, name, value) in params.iter().collect::<Vec<_>>().into_iter().rev() {
        reversed.insert(name, ArrayD::zeros(value.shape())).unwrap();
    }
    let checkpoint = checkpoint::load(&path, &mut reversed).unwrap();
    assert_eq!(checkpoint, Checkpoint::default());
    for (_, name, value) in params.iter() {
        assert!(
            same(value, reversed.get(reversed.id(name).unwrap())),
            "{name}"
        );
    }
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn saving_replaces_the_file_and_a_missing_directory_is_an_io_error() {
    let dir = scratch("replace");
    let path = dir.join("ck.safetensors");
    let mut params = Params::<f32>::new();
    let w = params.insert("w", array![1.0f32, 2.0].into_dyn()).unwrap();
    checkpoint::save(
        &path,
        &params,
        &Checkpoint::default().with_metadata("epoch", "1"),
    )
    .unwrap();
    params.get_mut(w)[0] = 5.0;
    checkpoint::save(
        &path,
        &params,
        &Checkpoint::default().with_metadata("epoch", "2"),
    )
    .unwrap();
    let mut back = zeroed(&params);
    let checkpoint = checkpoint::load(&path, &mut back).unwrap();
    assert_eq!(checkpoint.metadata["epoch"], "2");
    assert_eq!(back.get(w), &array![5.0f32, 2.0].into_dyn());
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        1,
        "no temporary file is left"
    );

    let nowhere = dir.join("missing").join("ck.safetensors");
    let err = checkpoint::save(&nowhere, &params, &Checkpoint::default()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    let err = checkpoint::load(&nowhere, &mut back).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if path == &nowhere),
        "{err:?}"
    );
    fs::remove_dir_all(dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// An independent reader: the format, byte by byte, without the safetensors crate

fn independent_reader_parses_every_field<F: Scalar>() {
    let dir = scratch(&format!("independent-{}", F::NAME));
    let path = dir.join("ck.safetensors");
    let params = model::<F>(3);
    let saved = extra::<F>(3);
    checkpoint::save(&path, &params, &saved).unwrap();
    let bytes = fs::read(&path).unwrap();

    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(n % 8, 0, "the data starts 8-aligned");
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    let json = header.trim_end_matches(' ');
    assert!(
        json.ends_with('}') && header.len() - json.len() < 8,
        "{header:?}"
    );
    let table: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).unwrap();
    let data = &bytes[8 + n..];

    // Metadata: the caller's strings, plus each state's numbers as JSON decimal strings.
    let metadata = table["__metadata__"].as_object().unwrap();
    for (key, value) in &saved.metadata {
        assert_eq!(metadata[key], *value, "{key}");
    }
    let optimizer: serde_json::Value =
        serde_json::from_str(metadata["state/optimizer"].as_str().unwrap()).unwrap();
    assert_eq!(optimizer["step"], "1200.0");
    assert_eq!(optimizer["lr"], "0.30000000000000004");
    assert_eq!(optimizer["eps"], "5e-324");
    assert_eq!(optimizer["max"], "inf");
    assert_eq!(metadata["state/empty"], "{}");
    assert_eq!(metadata.len(), saved.metadata.len() + saved.states.len());

    // Tensors: parameters in insertion order, then state by name and key, back to back.
    let mut expected: Vec<(String, &ArrayD<F>)> = params
        .iter()
        .map(|(_, name, value)| (name.to_owned(), value))
        .collect();
    for (state, dict) in &saved.states {
        for (key, value) in &dict.tensors {
            expected.push((format!("{state}/{key}"), value));
        }
    }
    assert_eq!(table.len(), 1 + expected.len());
    let mut offset = 0u64;
    for (name, value) in expected {
        let info = table[&name].as_object().unwrap();
        assert_eq!(info.len(), 3, "{name}: {info:?}");
        assert_eq!(info["dtype"], dtype_name::<F>(), "{name}");
        let shape: Vec<usize> = serde_json::from_value(info["shape"].clone()).unwrap();
        assert_eq!(shape, value.shape(), "{name}");
        let [start, end]: [u64; 2] = serde_json::from_value(info["data_offsets"].clone()).unwrap();
        assert_eq!(start, offset, "{name}");
        let le: Vec<u8> = value.iter().flat_map(|&x| le_bytes(x)).collect();
        assert_eq!(end - start, le.len() as u64, "{name}");
        assert_eq!(&data[start as usize..end as usize], le, "{name}");
        offset = end;
    }
    assert_eq!(
        data.len() as u64,
        offset,
        "the file ends with the last tensor"
    );
    fs::remove_dir_all(dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Files written by Python's safetensors (see tests/fixtures/checkpoint/gen_fixture.py)

#[test]
fn a_file_written_by_python_loads() {
    let mut params = Params::<f32>::new();
    let weight = params
        .insert("fc1.weight", ArrayD::zeros(vec![2, 3]))
        .unwrap();
    let bias = params.insert("fc1.bias", ArrayD::zeros(vec![3])).unwrap();
    params
        .insert("fc1.mask", ArrayD::zeros(vec![0, 3]))
        .unwrap();
    let log_scale = params.insert("log_scale", ArrayD::zeros(vec![])).unwrap();
    let path = fixture("python_f32.safetensors");

    let mut checkpoint = checkpoint::load(&path, &mut params).unwrap();
    let w = params.get(weight);
    assert_eq!(
        w,
        &array![[0.5f32, -1.25, 3.0], [0.1, 1e-3, -0.0]].into_dyn()
    );
    assert!(w[[1, 2]].is_sign_negative(), "-0.0 keeps its sign");
    assert_eq!(params.get(bias), &array![1.0f32, 2.0, 3.0].into_dyn());
    assert_eq!(params.get(log_scale)[[]], -0.75);
    assert_eq!(checkpoint.metadata.len(), 2);
    assert_eq!(checkpoint.metadata["epoch"], "7");
    assert_eq!(
        checkpoint.metadata["config"],
        r#"{"hidden": [3], "lr": 0.001}"#
    );
    let optimizer = checkpoint.take_state("optimizer").unwrap();
    assert_eq!(optimizer.values["step"], 12.0);
    assert_eq!(optimizer.values["lr"], 0.001);
    let exp_avg = array![[0.0f32, 1.0, 2.0], [3.0, 4.0, 5.0]] / 8.0;
    assert_eq!(optimizer.tensors["exp_avg.fc1.weight"], exp_avg.into_dyn());
    assert!(checkpoint.states.is_empty());
    assert_eq!(
        checkpoint::read_metadata(&path).unwrap(),
        [
            ("config", r#"{"hidden": [3], "lr": 0.001}"#),
            ("epoch", "7")
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into()
    );
}

#[test]
fn a_python_file_without_metadata_loads_in_f64_and_is_refused_in_f32() {
    let path = fixture("python_f64.safetensors");
    let mut params = Params::<f64>::new();
    let w = params.insert("w", ArrayD::zeros(vec![2])).unwrap();
    let checkpoint = checkpoint::load(&path, &mut params).unwrap();
    assert_eq!(params.get(w), &array![0.1, -2.5].into_dyn());
    assert_eq!(checkpoint, Checkpoint::default());
    assert!(checkpoint::read_metadata(&path).unwrap().is_empty());

    let mut narrow = Params::<f32>::new();
    narrow.insert("w", ArrayD::zeros(vec![2])).unwrap();
    let err = checkpoint::load(&path, &mut narrow).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Checkpoint(CheckpointError::WrongDtype { name, expected: Dtype::F32, got: Dtype::F64, .. })
                if name == "w"
        ),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// A model that does not fit the file

/// Saves `model::<f32>(5)` with its state, loads it into `target` and returns the error; the
/// refused load must leave `target` untouched.
fn refused<F: Scalar>(test: &str, target: &mut Params<F>) -> CheckpointError {
    let dir = scratch(test);
    let path = dir.join("ck.safetensors");
    checkpoint::save(&path, &model::<f32>(5), &extra::<f32>(5)).unwrap();
    let before = snapshot(target);
    let err = checkpoint::load(&path, target).unwrap_err();
    assert_unchanged(target, &before);
    fs::remove_dir_all(dir).unwrap();
    match err {
        Error::Checkpoint(err) => err,
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
}

#[test]
fn a_parameter_missing_from_the_file_is_named() {
    let mut params = zeroed(&model::<f32>(0));
    params
        .insert("decoder.fc2.weight", ArrayD::ones(vec![2, 2]))
        .unwrap();
    let err = refused("missing", &mut params);
    assert!(
        matches!(&err, CheckpointError::MissingParam { name, .. } if name == "decoder.fc2.weight"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("no tensor for parameter \"decoder.fc2.weight\""),
        "{err}"
    );
}

#[test]
fn a_tensor_the_model_lacks_is_named() {
    let mut params = Params::<f32>::new();
    for (_, name, value) in model::<f32>(0).iter().filter(|(_, n, _)| *n != "log_scale") {
        params.insert(name, ArrayD::ones(value.shape())).unwrap();
    }
    let err = refused("unexpected", &mut params);
    assert!(
        matches!(&err, CheckpointError::UnexpectedTensor { name, .. } if name == "log_scale"),
        "{err:?}"
    );
}

#[test]
fn a_wrong_shape_names_both_shapes() {
    let mut params = Params::<f32>::new();
    for (_, name, value) in model::<f32>(0).iter() {
        let shape = if name == "encoder.fc1.weight" {
            vec![4, 3]
        } else {
            value.shape().to_vec()
        };
        params.insert(name, ArrayD::ones(shape)).unwrap();
    }
    let err = refused("shape", &mut params);
    assert!(
        matches!(&err, CheckpointError::WrongShape { name, expected, got, .. }
            if name == "encoder.fc1.weight" && expected == &[4, 3] && got == &[3, 4]),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("[3, 4]") && message.contains("[4, 3]"),
        "{message}"
    );
}

#[test]
fn an_f32_file_is_refused_by_f64_parameters() {
    let mut params = zeroed(&model::<f64>(0));
    let err = refused("dtype", &mut params);
    assert!(
        matches!(&err, CheckpointError::WrongDtype { name, expected: Dtype::F64, got: Dtype::F32, .. }
            if name == "encoder.fc1.weight"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("holds F32 elements, expected F64"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Damaged files

/// Writes `bytes`, loads them into a copy of `model::<f32>(0)` and returns what is wrong,
/// checking that the refused load left the parameters untouched.
fn load_damaged(dir: &Path, bytes: &[u8]) -> Corruption {
    let path = dir.join("damaged.safetensors");
    fs::write(&path, bytes).unwrap();
    let mut params = model::<f32>(0);
    let before = snapshot(&params);
    let problem = corruption(checkpoint::load(&path, &mut params));
    assert_unchanged(&params, &before);
    problem
}

#[test]
fn a_truncated_file_says_where_it_ends() {
    let dir = scratch("truncated");
    let path = dir.join("ck.safetensors");
    checkpoint::save(&path, &model::<f32>(0), &extra::<f32>(0)).unwrap();
    let bytes = fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());

    let problem = load_damaged(&dir, &bytes[..5]);
    assert!(
        matches!(problem, Corruption::TooShort { len: 5 }),
        "{problem:?}"
    );
    let problem = load_damaged(&dir, &bytes[..100]);
    assert!(
        matches!(problem, Corruption::HeaderBeyondFile { header_len, available: 92 } if header_len == n),
        "{problem:?}"
    );
    let cut = bytes.len() - 3;
    let problem = load_damaged(&dir, &bytes[..cut]);
    let actual = cut as u64 - 8 - n;
    assert!(
        matches!(problem, Corruption::DataLength { declared, actual: a } if a == actual && declared == actual + 3),
        "{problem:?}"
    );
    let message = problem.to_string();
    assert!(
        message.contains(&format!("the file has {actual}")),
        "{message}"
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_corrupt_header_says_what_is_wrong() {
    let dir = scratch("corrupt-header");
    let damaged =
        |header: &str, data_len: usize| load_damaged(&dir, &raw_file(header, &vec![0; data_len]));
    let a = r#""a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#;

    let p = damaged(r#"{"a":"#, 8);
    assert!(matches!(p, Corruption::HeaderNotJson { .. }), "{p:?}");
    let p = damaged(
        r#"{"a":{"dtype":"F99","shape":[2],"data_offsets":[0,8]}}"#,
        8,
    );
    assert!(
        matches!(p, Corruption::HeaderNotJson { .. }),
        "unknown dtype: {p:?}"
    );
    let p = damaged(r#"{"__metadata__":{"epoch":3}}"#, 0);
    assert!(
        matches!(p, Corruption::HeaderNotJson { .. }),
        "metadata not strings: {p:?}"
    );
    let p = load_damaged(&dir, &[&8u64.to_le_bytes()[..], b"{\"\xff\":1} "].concat());
    assert!(matches!(p, Corruption::HeaderNotUtf8 { .. }), "{p:?}");
    let p = load_damaged(&dir, &[&u64::MAX.to_le_bytes()[..], b"{}"].concat());
    assert!(
        matches!(
            p,
            Corruption::HeaderTooLarge {
                header_len: u64::MAX,
                ..
            }
        ),
        "{p:?}"
    );

    // Offsets, sizes and lengths: the reader only says "invalid", the error says which and why.
    let p = damaged(
        &format!(r#"{{{a},"b":{{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}}}"#),
        8,
    );
    assert!(
        matches!(&p, Corruption::Offsets { tensor, start: 4, end: 8, expected_start: 8 } if tensor == "b"),
        "overlap: {p:?}"
    );
    let p = damaged(
        &format!(r#"{{{a},"b":{{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}}}"#),
        8,
    );
    assert!(
        matches!(&p, Corruption::Offsets { tensor, start: 8, end: 4, .. } if tensor == "b"),
        "reversed: {p:?}"
    );
    let p = damaged(
        r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
        8,
    );
    assert!(
        matches!(&p, Corruption::ByteCount { tensor, dtype: Dtype::F32, bytes: 8, expected: 12, .. }
            if tensor == "a"),
        "{p:?}"
    );
    let huge = r#"{"a":{"dtype":"F64","shape":[4611686018427387904,8],"data_offsets":[0,8]}}"#;
    let p = damaged(huge, 8);
    assert!(
        matches!(&p, Corruption::SizeOverflow { tensor, .. } if tensor == "a"),
        "{p:?}"
    );
    let p = damaged(&format!("{{{a}}}"), 9);
    assert!(
        matches!(
            p,
            Corruption::DataLength {
                declared: 8,
                actual: 9
            }
        ),
        "{p:?}"
    );

    // State numbers.
    let p = damaged(r#"{"__metadata__":{"state/optimizer":"step=3"}}"#, 0);
    assert!(
        matches!(&p, Corruption::StateValues { state, .. } if state == "optimizer"),
        "{p:?}"
    );
    let p = damaged(
        r#"{"__metadata__":{"state/optimizer":"{\"step\":\"x\"}"}}"#,
        0,
    );
    assert!(
        matches!(&p, Corruption::StateValue { key, value, .. } if key == "step" && value == "x"),
        "{p:?}"
    );
    fs::remove_dir_all(dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// No damaged file panics the loader

/// A valid checkpoint of `model::<f32>(0)` with state, built once.
fn valid_bytes() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = scratch("proptest-source");
        let path = dir.join("ck.safetensors");
        checkpoint::save(&path, &model::<f32>(0), &extra::<f32>(0)).unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::remove_dir_all(dir).unwrap();
        bytes
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Overwritten bytes (anywhere: the length, the header, the data), digits of the header
    /// changed to other digits (shapes and offsets that still parse) and truncation give an
    /// error or a load, never a panic, and a refused load changes no parameter.
    #[test]
    fn damaged_files_never_panic_the_loader(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        digit_edits in prop::collection::vec((any::<prop::sample::Index>(), b'0'..=b'9'), 0..4),
        cut in any::<Option<prop::sample::Index>>(),
    ) {
        let mut bytes = valid_bytes().to_vec();
        let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let digits: Vec<usize> = (8..header_end).filter(|&i| bytes[i].is_ascii_digit()).collect();
        for (at, digit) in digit_edits {
            bytes[digits[at.index(digits.len())]] = digit;
        }
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        let dir = scratch(&format!("proptest-{:?}", std::thread::current().id()));
        let path = dir.join("damaged.safetensors");
        fs::write(&path, &bytes).unwrap();

        let mut params = zeroed(&model::<f32>(0));
        let before = snapshot(&params);
        if checkpoint::load(&path, &mut params).is_err() {
            assert_unchanged(&params, &before);
        }
        let _ = checkpoint::read_metadata(&path);
    }
}
