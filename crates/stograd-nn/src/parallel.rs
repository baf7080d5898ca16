//! Data-parallel steps: a mini-batch split into shards, one tape per shard, each shard on its
//! own core.
//!
//! The engine parallelizes inside each kernel: a large matrix product or elementwise op is
//! split over rayon's threads and joined before the next op starts. On a small model that
//! means a thread hand-off per kernel (tens of microseconds each in a virtual machine), and
//! the many kernels below the parallel threshold run on one core while the other waits.
//! [`DataParallel`] parallelizes across the batch instead: each shard of rows is recorded on
//! its own tape, inside a one-thread pool, so every kernel of the shard runs serially on that
//! thread, and the shards run at the same time. The parameter gradients of the shards are then
//! summed; since the loss is a sum over examples, that sum is the whole batch's gradient.
//!
//! On the MNIST VAE (batch 128, two shards of 64, 2 cores), a step took about half the time of
//! the same step with parallel kernels: see docs/benchmarks.md.
//!
//! Each shard's kernels run serially on one thread whatever the machine, and the gradients
//! are summed in shard order, so a step's result depends on the number of shards but not on
//! the number of threads or on timing.
//!
//! ```
//! use rand::SeedableRng;
//! use stograd::{Params, Tape};
//! use stograd_nn::layers::{Activation, Mlp};
//! use stograd_nn::loss::cross_entropy;
//! use stograd_nn::parallel::DataParallel;
//!
//! let mut params = Params::<f64>::new();
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let model = Mlp::new(&mut params, "mlp", &[4, 8, 3], Activation::Tanh, &mut rng)?;
//! let x = ndarray::Array2::from_shape_fn((10, 4), |(i, j)| (i * 4 + j) as f64 / 40.0);
//! let labels: Vec<usize> = (0..10).map(|i| i % 3).collect();
//!
//! let shards = DataParallel::new(2)?;
//! let (grads, losses) = shards.gradients(x.nrows(), |_shard, rows| {
//!     let tape = Tape::with_params(&params);
//!     let xs = tape.constant(x.slice_axis(ndarray::Axis(0), rows.clone().into()).to_owned());
//!     let loss = cross_entropy(model.forward(&tape, xs), &labels[rows]).sum();
//!     Ok::<_, stograd::Error>((loss.backward()?, loss.item()))
//! })?;
//!
//! // the same as one tape over the whole batch
//! let whole = {
//!     let tape = Tape::with_params(&params);
//!     let loss = cross_entropy(model.forward(&tape, tape.constant(x.clone())), &labels).sum();
//!     loss.backward()?
//! };
//! for (id, g) in whole.params() {
//!     let sharded = grads.param(id).unwrap();
//!     assert!(sharded.iter().zip(g).all(|(a, b)| (a - b).abs() < 1e-12));
//! }
//! assert_eq!(losses.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ops::Range;

use stograd::{Gradients, Scalar};

use crate::{Error, Result};

/// Runs the shards of a mini-batch at the same time, each on its own one-thread pool.
///
/// ```
/// use stograd_nn::parallel::DataParallel;
///
/// let shards = DataParallel::new(2)?;
/// assert_eq!(shards.split(5), [0..3, 3..5]);
/// let sums = shards.run(5, |_, rows| rows.map(|r| r * r).sum::<usize>());
/// assert_eq!(sums, [0 + 1 + 4, 9 + 16]);
/// # Ok::<(), stograd_nn::Error>(())
/// ```
#[derive(Debug)]
pub struct DataParallel {
    pools: Vec<rayon::ThreadPool>,
}

impl DataParallel {
    /// `shards` one-thread pools. Use as many shards as the cores the step should use.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `shards` is 0; [`Error::ThreadPool`] if the operating
    /// system refuses a thread.
    pub fn new(shards: usize) -> Result<Self> {
        if shards == 0 {
            return Err(Error::InvalidArgument {
                name: "shards",
                constraint: "positive",
                value: 0.0,
            });
        }
        let pools = (0..shards)
            .map(|i| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(move |_| format!("stograd-shard-{i}"))
                    .build()
            })
            .collect::<Result<_, _>>()?;
        Ok(DataParallel { pools })
    }

    /// The number of shards a batch is split into (fewer when the batch has fewer rows).
    pub fn shards(&self) -> usize {
        self.pools.len()
    }

    /// `0..rows` split into at most [`shards`](Self::shards) contiguous, non-empty ranges whose
    /// lengths differ by at most one (the first `rows % shards` are the longer ones). Empty for
    /// `rows = 0`.
    ///
    /// ```
    /// let shards = stograd_nn::parallel::DataParallel::new(3)?;
    /// assert_eq!(shards.split(8), vec![0..3, 3..6, 6..8]);
    /// assert_eq!(shards.split(2), vec![0..1, 1..2]);
    /// # Ok::<(), stograd_nn::Error>(())
    /// ```
    pub fn split(&self, rows: usize) -> Vec<Range<usize>> {
        let n = self.shards().min(rows);
        let mut start = 0;
        (0..n)
            .map(|i| {
                let len = rows / n + usize::from(i < rows % n);
                start += len;
                start - len..start
            })
            .collect()
    }

    /// `f(shard, rows)` for each range of [`split(rows)`](Self::split), the shards at the
    /// same time, shard `i` on the `i`-th one-thread pool; the results in shard order.
    ///
    /// `f` runs inside that pool, so the engine's kernels it calls see one thread and run
    /// serially. A panic in `f` propagates to the caller.
    pub fn run<T: Send>(&self, rows: usize, f: impl Fn(usize, Range<usize>) -> T + Sync) -> Vec<T> {
        let ranges = self.split(rows);
        let mut out: Vec<Option<T>> = ranges.iter().map(|_| None).collect();
        let f = &f;
        rayon::scope(|s| {
            for ((i, range), (slot, pool)) in ranges
                .into_iter()
                .enumerate()
                .zip(out.iter_mut().zip(&self.pools))
            {
                s.spawn(move |_| *slot = Some(pool.install(|| f(i, range))));
            }
        });
        out.into_iter()
            .map(|r| r.expect("every shard ran"))
            .collect()
    }

    /// [`run`](Self::run) for a training step: each shard returns its parameter gradients and
    /// a value of its own (its loss, say); the gradients are summed in shard order. With a
    /// loss that sums over examples, the sum is the gradient of the whole batch's loss; for a
    /// mean, divide each shard's loss by the whole batch's size, not the shard's.
    ///
    /// # Errors
    /// The first shard's error, in shard order, if any shard fails.
    ///
    /// # Panics
    /// If `rows` is 0 (there is no gradient to return).
    #[track_caller]
    pub fn gradients<F: Scalar, T: Send, E: Send>(
        &self,
        rows: usize,
        f: impl Fn(usize, Range<usize>) -> std::result::Result<(Gradients<F>, T), E> + Sync,
    ) -> std::result::Result<(Gradients<F>, Vec<T>), E> {
        assert!(rows > 0, "DataParallel::gradients: a batch of 0 rows");
        let mut shards = self.run(rows, f).into_iter();
        let (mut sum, first) = shards.next().expect("rows > 0")?;
        let mut values = vec![first];
        for shard in shards {
            let (grads, value) = shard?;
            sum.accumulate(&grads);
            values.push(value);
        }
        Ok((sum, values))
    }
}
