//! Trains a variational autoencoder and writes its training curve, pictures and checkpoints.
//!
//! ```text
//! cargo run --release --example vae                                  # the embedded 8×8 digits
//! cargo run --release --example vae -- --data ../shared/data/mnist   # MNIST (IDX, raw or .gz)
//! cargo run --release --example vae -- --posterior cholesky --latent 2 --epochs 30
//! cargo run --release --example vae -- --resume                      # continue the run in --out
//! ```
//!
//! The model is PyTorch's example VAE (784-400-20-400-784 on MNIST, ReLU, a diagonal Gaussian
//! posterior, a Bernoulli decoder, Adam at 1e-3, batch 128), with full-covariance and
//! low-rank posteriors, IWAE training, β and KL warm-up as options. Every epoch writes to the
//! output directory (`vae-out` unless `--out` says otherwise):
//!
//! - `log.csv`: epoch, train loss per example, test ELBO, test IWAE-k bound, seconds,
//!   examples per second;
//! - `reconstructions.png` (test images, each above its reconstruction), `samples.png`
//!   (draws from the prior), and `manifold.png` for a 2-D latent space;
//! - `checkpoint.safetensors`: parameters, Adam's state and the run's settings; `--resume`
//!   continues from it and gives the curve an uninterrupted run gives.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array2, Axis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use stograd::{Params, Scalar, Tape};
use stograd_nn::checkpoint::{self, Checkpoint};
use stograd_nn::data::{self, Batches, Dataset, epoch_rng};
use stograd_nn::optim::{Adam, AdamConfig, Optimizer};
use stograd_nn::parallel::DataParallel;
use stograd_nn::vae::{Posterior, Vae, VaeConfig};

/// Train a VAE on the embedded 8×8 digits (default) or on MNIST, writing a CSV log, PNG
/// pictures and a checkpoint each epoch.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// A directory of MNIST or Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz], …);
    /// without it, the embedded digits (1,497 to train, 300 to test)
    #[arg(long)]
    data: Option<PathBuf>,
    /// Epochs to train [default: 10 on MNIST, 60 on the digits]
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Adam's learning rate
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Hidden widths of the encoder (the decoder mirrors them), comma-separated
    #[arg(long, value_delimiter = ',', default_value = "400")]
    hidden: Vec<usize>,
    /// The latent dimension
    #[arg(long, default_value_t = 20)]
    latent: usize,
    /// The family of q(z | x)
    #[arg(long, value_enum, default_value_t = PosteriorArg::Diag)]
    posterior: PosteriorArg,
    /// The rank of U for --posterior lowrank (covariance D + U Uᵀ)
    #[arg(long, default_value_t = 2)]
    rank: usize,
    /// none: intensities as Bernoulli targets (as PyTorch's example); static: each pixel
    /// drawn once; dynamic: drawn afresh for every batch
    #[arg(long, value_enum, default_value_t = Binarize::None)]
    binarize: Binarize,
    /// Draws per test example for the IWAE bound (on at most 1,000 test examples)
    #[arg(long, default_value_t = 100)]
    eval_k: usize,
    /// Draws per example in training: 1 trains on the ELBO, more on the IWAE bound
    #[arg(long, default_value_t = 1)]
    train_k: usize,
    /// The weight of the KL term in the ELBO (β-VAE)
    #[arg(long, default_value_t = 1.0)]
    beta: f64,
    /// Epochs over which the KL weight rises linearly from 0 to β
    #[arg(long, default_value_t = 0.0)]
    kl_warmup: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads [default: all cores]
    #[arg(long)]
    threads: Option<usize>,
    /// Shards each batch is split into, one tape per shard, each shard's kernels on one
    /// thread; the curve depends on it, not on --threads [default: the number of threads]
    #[arg(long)]
    shards: Option<usize>,
    /// Compute in f64 instead of f32
    #[arg(long)]
    f64: bool,
    /// The output directory
    #[arg(long, default_value = "vae-out")]
    out: PathBuf,
    /// Continue the run whose checkpoint is in --out
    #[arg(long)]
    resume: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PosteriorArg {
    Diag,
    Cholesky,
    Lowrank,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Binarize {
    None,
    Static,
    Dynamic,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Error> {
    check(args)?;
    // The training loop runs on one of the pool's threads, so that the shards of a step and
    // the optimizer's parallel loops are shared with the other threads from there, rather than
    // handed over from the main thread and waited for.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()?;
    pool.install(|| {
        if args.f64 {
            train::<f64>(args)
        } else {
            train::<f32>(args)
        }
    })
}

/// The options no run can have, as messages.
fn check(args: &Args) -> Result<(), Error> {
    let fail = |message: String| -> Result<(), Error> { Err(message.into()) };
    if args.latent == 0 {
        return fail("--latent must be at least 1".into());
    }
    if args.posterior == PosteriorArg::Lowrank && !(1..args.latent).contains(&args.rank) {
        return fail(format!(
            "--rank must be between 1 and --latent − 1 = {}, got {}",
            args.latent - 1,
            args.rank
        ));
    }
    if args.eval_k == 0 || args.train_k == 0 {
        return fail("--eval-k and --train-k must be at least 1".into());
    }
    if args.batch_size == 0
        || args.epochs == Some(0)
        || args.threads == Some(0)
        || args.shards == Some(0)
    {
        return fail("--batch-size, --epochs, --threads and --shards must be at least 1".into());
    }
    if args.hidden.contains(&0) {
        return fail(format!(
            "--hidden widths must be positive, got {:?}",
            args.hidden
        ));
    }
    if !(args.lr > 0.0 && args.lr.is_finite()) {
        return fail(format!("--lr must be positive, got {}", args.lr));
    }
    let non_negative = |x: f64| x >= 0.0 && x.is_finite();
    if !non_negative(args.beta) || !non_negative(args.kl_warmup) {
        return fail("--beta and --kl-warmup must be non-negative".into());
    }
    if args.train_k > 1 && (args.beta != 1.0 || args.kl_warmup != 0.0) {
        return fail("--beta and --kl-warmup weight the ELBO; the IWAE bound (--train-k > 1) has no KL term to weight".into());
    }
    Ok(())
}

/// The settings a resumed run must share with the checkpoint, as `(key, value)` pairs.
fn settings(args: &Args, input: usize, shards: usize) -> Vec<(&'static str, String)> {
    let hidden: Vec<String> = args.hidden.iter().map(usize::to_string).collect();
    vec![
        ("data", format!("{:?}", args.data)),
        ("input", input.to_string()),
        ("hidden", hidden.join(",")),
        ("latent", args.latent.to_string()),
        ("posterior", format!("{:?}", args.posterior).to_lowercase()),
        ("rank", args.rank.to_string()),
        ("dtype", if args.f64 { "f64" } else { "f32" }.into()),
        ("batch_size", args.batch_size.to_string()),
        ("lr", args.lr.to_string()),
        ("binarize", format!("{:?}", args.binarize).to_lowercase()),
        ("train_k", args.train_k.to_string()),
        ("beta", args.beta.to_string()),
        ("kl_warmup", args.kl_warmup.to_string()),
        ("seed", args.seed.to_string()),
        ("shards", shards.to_string()),
    ]
}

/// The streams of randomness, each a pure function of the seed and the epoch, so that a
/// resumed run draws what the uninterrupted one would.
const SHUFFLE: u64 = 0;
const NOISE: u64 = 0x9E37_79B9_7F4A_7C15;
const EVAL: u64 = 0xD1B5_4A32_D192_ED03;

fn train<F: Scalar>(args: &Args) -> Result<(), Error> {
    let (train, test, name) = load_data::<F>(args)?;
    let epochs = args
        .epochs
        .unwrap_or(if args.data.is_some() { 10 } else { 60 });
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let posterior = match args.posterior {
        PosteriorArg::Diag => Posterior::Diagonal,
        PosteriorArg::Cholesky => Posterior::Cholesky,
        PosteriorArg::Lowrank => Posterior::LowRank { rank: args.rank },
    };
    let config = VaeConfig {
        input: train.pixels(),
        hidden: args.hidden.clone(),
        latent: args.latent,
        posterior,
        ..VaeConfig::default()
    };
    let mut params = Params::<F>::new();
    let vae = Vae::new(
        &mut params,
        "vae",
        config,
        &mut StdRng::seed_from_u64(args.seed),
    )?;
    let mut opt = Adam::new(AdamConfig {
        lr: args.lr,
        ..AdamConfig::default()
    })?;
    let shards = DataParallel::new(args.shards.unwrap_or_else(rayon::current_num_threads))?;
    let checkpoint_path = args.out.join("checkpoint.safetensors");
    let log_path = args.out.join("log.csv");
    let mut log = String::from(
        "epoch,train_loss_per_example,test_elbo,test_iwae,iwae_k,seconds,examples_per_second\n",
    );
    let mut start = 1;
    if args.resume {
        start = resume(
            args,
            &checkpoint_path,
            &log_path,
            &mut params,
            &mut opt,
            &mut log,
            train.pixels(),
            shards.shards(),
        )?;
    }
    println!(
        "training a VAE ({}-{}-{}, {} posterior, {}) on {name}: {} to train, {} to test; writing to {}",
        train.pixels(),
        args.hidden
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("-"),
        args.latent,
        posterior.name(),
        F::NAME,
        train.len(),
        test.len(),
        args.out.display()
    );
    let steps = train.len().div_ceil(args.batch_size);
    let terminal = std::io::stdout().is_terminal();
    for epoch in start..=epochs {
        let started = Instant::now();
        let bar = progress(terminal, steps, epoch, epochs);
        let mut noise = epoch_rng(args.seed ^ NOISE, epoch as u64);
        let (mut total, mut seen) = (0.0, 0usize);
        let batches = Batches::new(
            &train,
            args.batch_size,
            epoch_rng(args.seed ^ SHUFFLE, epoch as u64),
        )?
        .binarize(args.binarize == Binarize::Dynamic);
        for (step, batch) in batches.enumerate() {
            let beta = kl_weight(args, epoch, step, steps);
            let rows = batch.len();
            // each shard draws its noise from its own generator, seeded from the epoch's
            let seeds: Vec<u64> = (0..shards.shards()).map(|_| noise.next_u64()).collect();
            let (grads, losses) = shards.gradients(rows, |shard, range| -> Result<_, Error> {
                let mut noise = StdRng::seed_from_u64(seeds[shard]);
                let tape = Tape::with_params(&params);
                let x = tape.constant(batch.images.slice_axis(Axis(0), range.into()).to_owned());
                let loss = if args.train_k > 1 {
                    -vae.iwae_bound(&tape, x, args.train_k, &mut noise)?.sum()
                } else {
                    let elbo = vae.elbo(&tape, x, &mut noise)?;
                    (elbo.kl * F::from_f64(beta) - elbo.reconstruction).sum()
                };
                Ok((loss.backward()?, loss.item().as_f64()))
            })?;
            let loss: f64 = losses.iter().sum();
            if !loss.is_finite() {
                return Err(format!("the training loss became {loss} at epoch {epoch}, step {step}; try a smaller --lr").into());
            }
            opt.step(&mut params, &grads);
            total += loss;
            seen += rows;
            let rate = seen as f64 / started.elapsed().as_secs_f64();
            bar.set_message(format!(
                "loss {:.2}  {rate:.0} examples/s",
                total / seen as f64
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();
        let train_seconds = started.elapsed().as_secs_f64();
        let (elbo, iwae) = evaluate(&vae, &params, &test, args, epoch)?;
        let seconds = started.elapsed().as_secs_f64();
        let rate = seen as f64 / train_seconds;
        let loss = total / seen as f64;
        writeln!(
            log,
            "{epoch},{loss:.4},{elbo:.4},{iwae:.4},{},{seconds:.3},{rate:.0}",
            args.eval_k
        )?;
        stograd_nn::fs::write_atomic(&log_path, |out| out.write_all(log.as_bytes()))?;
        pictures(&vae, &params, &test, args, epoch)?;
        let mut extra = Checkpoint::default()
            .with_state("optimizer", opt.state_dict(&params))
            .with_metadata("epoch", epoch.to_string());
        for (key, value) in settings(args, train.pixels(), shards.shards()) {
            extra = extra.with_metadata(key, value);
        }
        checkpoint::save(&checkpoint_path, &params, &extra)?;
        println!(
            "epoch {epoch:>3}/{epochs}  train loss {loss:>8.3}  test ELBO {elbo:>8.3}  IWAE-{} {iwae:>8.3}  {train_seconds:.2} s ({rate:.0} examples/s)",
            args.eval_k
        );
    }
    println!(
        "wrote {}, the pictures and {}",
        log_path.display(),
        checkpoint_path.display()
    );
    Ok(())
}

/// The training and test sets, and what to call them.
fn load_data<F: Scalar>(args: &Args) -> Result<(Dataset<F>, Dataset<F>, String), Error> {
    let (train, test, name) = match &args.data {
        Some(dir) => {
            let (train, test) = data::mnist::<F>(dir)?;
            (train, test, format!("MNIST from {}", dir.display()))
        }
        None => {
            let (train, test) = data::digits::<F>().split(300, &mut epoch_rng(args.seed, 0))?;
            (train, test, "the embedded 8×8 digits".to_owned())
        }
    };
    // the test set is binarized once whenever training sees binary pixels
    Ok(match args.binarize {
        Binarize::None => (train, test, name),
        Binarize::Static => {
            let mut rng = epoch_rng(args.seed ^ EVAL, 0);
            (train.binarized(&mut rng), test.binarized(&mut rng), name)
        }
        Binarize::Dynamic => (
            train,
            test.binarized(&mut epoch_rng(args.seed ^ EVAL, 0)),
            name,
        ),
    })
}

/// The KL weight at a step: β, reached linearly over `--kl-warmup` epochs.
fn kl_weight(args: &Args, epoch: usize, step: usize, steps: usize) -> f64 {
    if args.kl_warmup == 0.0 {
        return args.beta;
    }
    let progress = (epoch - 1) as f64 + step as f64 / steps as f64;
    args.beta * (progress / args.kl_warmup).min(1.0)
}

/// The mean test ELBO over the whole test set, and the mean IWAE bound over its first 1,000.
fn evaluate<F: Scalar>(
    vae: &Vae,
    params: &Params<F>,
    test: &Dataset<F>,
    args: &Args,
    epoch: usize,
) -> Result<(f64, f64), Error> {
    let mut rng = epoch_rng(args.seed ^ EVAL, epoch as u64);
    let (elbo, _) = vae.evaluate(params, test.images(), 1, &mut rng)?;
    let head = test
        .images()
        .slice_axis(Axis(0), (0..test.len().min(1000)).into())
        .to_owned();
    let (_, iwae) = vae.evaluate(params, &head, args.eval_k, &mut rng)?;
    let mean = |a: ndarray::Array1<F>| a.iter().map(|v| v.as_f64()).sum::<f64>() / a.len() as f64;
    Ok((mean(elbo), mean(iwae)))
}

/// The epoch's pictures: reconstructions, samples and, in 2-D, the latent manifold.
fn pictures<F: Scalar>(
    vae: &Vae,
    params: &Params<F>,
    test: &Dataset<F>,
    args: &Args,
    epoch: usize,
) -> Result<(), Error> {
    let (h, w) = (test.height(), test.width());
    let scale = (64 / h).clamp(1, 4);
    let columns = 16;
    // rows of 16 test images, each row followed by its reconstructions
    let shown = test.len().min(64);
    let images = test
        .images()
        .slice_axis(Axis(0), (0..shown).into())
        .to_owned();
    let recon = vae.reconstruct(params, &images)?;
    let mut pairs = Vec::new();
    for start in (0..shown).step_by(columns) {
        let end = (start + columns).min(shown);
        pairs.push(images.slice_axis(Axis(0), (start..end).into()).to_owned());
        pairs.push(recon.slice_axis(Axis(0), (start..end).into()).to_owned());
    }
    let views: Vec<_> = pairs.iter().map(|a| a.view()).collect();
    let grid = ndarray::concatenate(Axis(0), &views)?;
    stograd_nn::image::save_grid(
        args.out.join("reconstructions.png"),
        &grid,
        h,
        w,
        columns,
        scale,
    )?;
    let mut rng = epoch_rng(args.seed ^ EVAL ^ 1, epoch as u64);
    let samples = vae.sample(params, 64, &mut rng);
    stograd_nn::image::save_grid(args.out.join("samples.png"), &samples, h, w, columns, scale)?;
    if args.latent == 2 {
        // z on a 16×16 grid of normal quantiles
        let n = 16;
        let quantile = |i: usize| normal_quantile((i as f64 + 0.5) / n as f64);
        let z = Array2::from_shape_fn((n * n, 2), |(k, j)| {
            F::from_f64(if j == 0 {
                quantile(k % n)
            } else {
                -quantile(k / n)
            })
        });
        let grid = vae.decode_probs(params, &z);
        stograd_nn::image::save_grid(args.out.join("manifold.png"), &grid, h, w, n, scale)?;
    }
    Ok(())
}

/// `Φ⁻¹(p)` by bisection on `Φ(x) = (1 + erf(x/√2))/2` (the manifold needs 16 values).
fn normal_quantile(p: f64) -> f64 {
    let cdf = |x: f64| 0.5 * (1.0 + Scalar::erf(x / std::f64::consts::SQRT_2));
    let (mut lo, mut hi) = (-10.0, 10.0);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if cdf(mid) < p { lo = mid } else { hi = mid }
    }
    0.5 * (lo + hi)
}

/// Loads the checkpoint in `--out` after checking that it is this run's; returns the epoch
/// to start at.
#[allow(clippy::too_many_arguments)]
fn resume<F: Scalar>(
    args: &Args,
    checkpoint_path: &Path,
    log_path: &Path,
    params: &mut Params<F>,
    opt: &mut Adam<F>,
    log: &mut String,
    input: usize,
    shards: usize,
) -> Result<usize, Error> {
    let metadata = checkpoint::read_metadata(checkpoint_path)?;
    for (key, value) in settings(args, input, shards) {
        match metadata.get(key) {
            Some(saved) if *saved == value => {}
            saved => {
                return Err(format!(
                    "{} was written by a run with {key} = {}, but this run has {key} = {value}; \
                     resume with the same settings or choose another --out",
                    checkpoint_path.display(),
                    saved.map_or("(none)", String::as_str)
                )
                .into());
            }
        }
    }
    let mut extra = checkpoint::load(checkpoint_path, params)?;
    opt.load_state_dict(params, &extra.take_state("optimizer")?)?;
    let epoch: usize = extra.metadata["epoch"]
        .parse()
        .map_err(|e| format!("{}: bad epoch: {e}", checkpoint_path.display()))?;
    // keep the log's rows up to the checkpoint's epoch
    if let Ok(old) = std::fs::read_to_string(log_path) {
        for line in old.lines().skip(1) {
            match line.split(',').next().and_then(|e| e.parse::<usize>().ok()) {
                Some(e) if e <= epoch => writeln!(log, "{line}")?,
                _ => {}
            }
        }
    }
    println!(
        "resuming after epoch {epoch} from {}",
        checkpoint_path.display()
    );
    Ok(epoch + 1)
}

/// A progress bar for one epoch, hidden when stdout is not a terminal.
fn progress(terminal: bool, steps: usize, epoch: usize, epochs: usize) -> ProgressBar {
    if !terminal {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
}
