//! `DataParallel`: sharded gradients equal the whole batch's, do not depend on the number of
//! threads, and shards split, fail and panic as documented.

use std::panic::{AssertUnwindSafe, catch_unwind};

use rand::SeedableRng;
use rand::rngs::StdRng;
use stograd::ndarray::{Array2, Axis};
use stograd::{Gradients, Params, Tape};
use stograd_nn::layers::{Activation, Mlp};
use stograd_nn::loss::cross_entropy;
use stograd_nn::parallel::DataParallel;

/// Wide enough that the whole batch's products and elementwise ops run in parallel.
fn model() -> (Params<f64>, Mlp, Array2<f64>, Vec<usize>) {
    let mut params = Params::new();
    let mut rng = StdRng::seed_from_u64(5);
    let mlp = Mlp::new(
        &mut params,
        "mlp",
        &[300, 400, 10],
        Activation::Tanh,
        &mut rng,
    )
    .unwrap();
    let x = Array2::from_shape_fn((150, 300), |(i, j)| {
        ((i * 31 + j * 17) % 101) as f64 / 50.0 - 1.0
    });
    let labels = (0..150).map(|i| (i * 7) % 10).collect();
    (params, mlp, x, labels)
}

fn sharded(
    shards: &DataParallel,
    params: &Params<f64>,
    mlp: &Mlp,
    x: &Array2<f64>,
    labels: &[usize],
) -> (Gradients<f64>, Vec<f64>) {
    shards
        .gradients(x.nrows(), |_, rows| {
            let tape = Tape::with_params(params);
            let xs = tape.constant(x.slice_axis(Axis(0), rows.clone().into()).to_owned());
            let loss = cross_entropy(mlp.forward(&tape, xs), &labels[rows]).sum();
            Ok::<_, stograd::Error>((loss.backward()?, loss.item()))
        })
        .unwrap()
}

#[test]
fn sharded_gradients_equal_the_whole_batch() {
    let (params, mlp, x, labels) = model();
    let (whole, whole_loss) = {
        let tape = Tape::with_params(&params);
        let loss = cross_entropy(mlp.forward(&tape, tape.constant(x.clone())), &labels).sum();
        (loss.backward().unwrap(), loss.item())
    };
    for n in [1, 2, 3, 7] {
        let (grads, losses) = sharded(&DataParallel::new(n).unwrap(), &params, &mlp, &x, &labels);
        assert_eq!(losses.len(), n);
        let total: f64 = losses.iter().sum();
        assert!(
            (total - whole_loss).abs() <= 1e-12 * whole_loss.abs(),
            "{n}: {total} vs {whole_loss}"
        );
        for (id, g) in whole.params() {
            let got = grads.param(id).unwrap();
            let scale = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let err = got
                .iter()
                .zip(g)
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                err <= 1e-12 * scale,
                "{n} shards, {}: max error {err:e}",
                params.name(id)
            );
        }
    }
}

#[test]
fn results_do_not_depend_on_the_number_of_threads() {
    let (params, mlp, x, labels) = model();
    let shards = DataParallel::new(2).unwrap();
    let from_main = sharded(&shards, &params, &mlp, &x, &labels);
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let (grads, losses) = pool.install(|| sharded(&shards, &params, &mlp, &x, &labels));
        assert_eq!(losses, from_main.1, "{threads} threads");
        for (id, g) in from_main.0.params() {
            assert_eq!(
                grads.param(id).unwrap(),
                g,
                "{threads} threads: {}",
                params.name(id)
            );
        }
    }
}

#[test]
fn each_shard_runs_on_one_thread_of_its_own() {
    let shards = DataParallel::new(3).unwrap();
    let seen = shards.run(3, |i, rows| {
        (
            i,
            rows,
            rayon::current_num_threads(),
            std::thread::current().name().map(str::to_owned),
        )
    });
    for (i, (shard, rows, threads, name)) in seen.into_iter().enumerate() {
        assert_eq!((shard, rows, threads), (i, i..i + 1, 1));
        assert_eq!(name.as_deref(), Some(format!("stograd-shard-{i}").as_str()));
    }
}

#[test]
fn split_covers_the_rows_in_near_equal_contiguous_ranges() {
    for n in 1..=6 {
        let shards = DataParallel::new(n).unwrap();
        for rows in 0..=40 {
            let ranges = shards.split(rows);
            assert_eq!(ranges.len(), n.min(rows), "{n} shards, {rows} rows");
            let mut next = 0;
            for r in &ranges {
                assert_eq!(r.start, next);
                assert!(!r.is_empty());
                next = r.end;
            }
            assert_eq!(next, rows);
            let lens: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
            if let (Some(max), Some(min)) = (lens.iter().max(), lens.iter().min()) {
                assert!(max - min <= 1, "{lens:?}");
                assert!(
                    lens.windows(2).all(|w| w[0] >= w[1]),
                    "longer first: {lens:?}"
                );
            }
        }
    }
}

#[test]
fn zero_shards_is_an_error_that_names_it() {
    let err = DataParallel::new(0).unwrap_err();
    assert_eq!(err.to_string(), "shards must be positive, got 0");
}

/// The gradients of a one-parameter loss.
fn tiny() -> Gradients<f64> {
    let mut params = Params::new();
    let w = params
        .insert("w", stograd::ndarray::arr1(&[1.0]).into_dyn())
        .unwrap();
    let tape = Tape::with_params(&params);
    tape.param(w).sum().backward().unwrap()
}

#[test]
fn the_first_failing_shard_in_order_is_reported() {
    let shards = DataParallel::new(4).unwrap();
    let result = shards.gradients::<f64, (), String>(8, |i, _| {
        if i >= 1 {
            Err(format!("shard {i} failed"))
        } else {
            Ok((tiny(), ()))
        }
    });
    assert_eq!(result.unwrap_err(), "shard 1 failed");
}

#[test]
fn a_panic_in_a_shard_reaches_the_caller() {
    let shards = DataParallel::new(2).unwrap();
    let panic = catch_unwind(AssertUnwindSafe(|| {
        shards.run(2, |i, _| assert!(i == 0, "shard {i} panicked"))
    }))
    .unwrap_err();
    assert_eq!(panic.downcast_ref::<String>().unwrap(), "shard 1 panicked");
}

#[test]
fn a_batch_of_no_rows_panics_at_the_caller() {
    let shards = DataParallel::new(2).unwrap();
    let panic = catch_unwind(AssertUnwindSafe(|| {
        let _ = shards.gradients::<f64, (), ()>(0, |_, _| Ok((tiny(), ())));
    }))
    .unwrap_err();
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("");
    assert!(message.contains("a batch of 0 rows"), "{message}");
}
