//! Trains a VAE with discrete latents, with the gradient estimator of your choice, or all of
//! them side by side.
//!
//! ```text
//! cargo run --release --example vae_discrete                                  # the embedded 8×8 digits, Gumbel-softmax
//! cargo run --release --example vae_discrete -- --estimator rloo --samples 4
//! cargo run --release --example vae_discrete -- --latent bernoulli --bits 200 --estimator reinforce-learned
//! cargo run --release --example vae_discrete -- --data ../shared/data/mnist --epochs 10
//! cargo run --release --example vae_discrete -- --compare                     # every estimator, the same steps
//! ```
//!
//! The model is Jang, Gu & Poole's (2017): 784-512-256-(20 × 10 categorical)-256-512-784 on
//! MNIST, ReLU, a Bernoulli decoder, a uniform prior with the analytic KL, dynamically
//! binarized pixels, Adam at 1e-3, batch 100, and the temperature annealed as
//! `τ = max(τ_min, τ₀ · exp(−r · step))`. The estimators are those of
//! `stograd_nn::vae::DiscreteEstimator`: `gumbel`, `gumbel-st`, `straight-through`,
//! `reinforce`, `reinforce-ema`, `reinforce-learned` (a baseline network trained by the tape's
//! regression loss) and `rloo` (leave-one-out over `--samples` draws per example).
//!
//! Every epoch writes to the output directory (`vae-discrete-out`, or one directory per
//! estimator under it with `--compare`):
//!
//! - `log.csv`: epoch, step, τ, train loss per example, the test ELBO with the true (unrelaxed)
//!   posterior, the test IWAE-k bound, the total variance and the signal-to-noise ratio of the
//!   gradient with respect to the encoder's logits on a fixed batch of test images (from
//!   `stograd::diagnostics::compare`), the training seconds and examples per second;
//! - `reconstructions.png` (test images above their reconstructions at the posterior mode) and
//!   `samples.png` (draws from the uniform prior);
//! - `checkpoint.safetensors`, from which `--resume` continues.
//!
//! `--compare` also prints a table of every estimator (final test ELBO and IWAE, gradient
//! variance and SNR, seconds per epoch) and writes `compare.md`, `compare.csv` and
//! `curves.png` (test ELBO per epoch), plus `same-point.md`: all estimators' gradients measured
//! at the same parameters (those the first estimator trained), with their time per estimate.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array2, Axis};
use rand::SeedableRng;
use rand::rngs::StdRng;
use stograd::diagnostics::{Candidate, Comparison, compare, flat_gradient};
use stograd::estimator::EmaBaseline;
use stograd::{Params, Scalar, Tape};
use stograd_nn::checkpoint::{self, Checkpoint};
use stograd_nn::data::{self, Batches, Dataset, epoch_rng};
use stograd_nn::layers::Activation;
use stograd_nn::optim::{Adam, AdamConfig, Optimizer};
use stograd_nn::plot::Chart;
use stograd_nn::vae::{
    BaselineNet, DiscreteEstimator, DiscreteLatent, DiscreteVae, DiscreteVaeConfig,
    annealed_temperature,
};

/// Train a VAE with discrete latents on the embedded 8×8 digits (default) or on MNIST, with
/// one gradient estimator or (--compare) all of them, writing a CSV log, PNG pictures and a
/// checkpoint each epoch.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// A directory of MNIST or Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz], …);
    /// without it, the embedded digits (1,497 to train, 300 to test)
    #[arg(long)]
    data: Option<PathBuf>,
    /// The gradient estimator: gumbel, gumbel-st, straight-through, reinforce,
    /// reinforce-ema, reinforce-learned or rloo
    #[arg(long, default_value = "gumbel")]
    estimator: DiscreteEstimator,
    /// Train every estimator for the same number of steps and compare them
    #[arg(long)]
    compare: bool,
    /// Draws of z per example in training [default: 4 for rloo, 1 otherwise]
    #[arg(long)]
    samples: Option<usize>,
    /// The latent space
    #[arg(long, value_enum, default_value_t = LatentArg::Categorical)]
    latent: LatentArg,
    /// Categorical variables in z (--latent categorical)
    #[arg(long, default_value_t = 20)]
    groups: usize,
    /// Classes of each categorical variable
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Binary variables in z (--latent bernoulli)
    #[arg(long, default_value_t = 200)]
    bits: usize,
    /// The initial temperature τ₀ of the Gumbel-softmax relaxation
    #[arg(long, default_value_t = 1.0)]
    tau0: f64,
    /// The lowest temperature τ_min
    #[arg(long, default_value_t = 0.5)]
    tau_min: f64,
    /// The annealing rate r per step: τ = max(τ_min, τ₀ · exp(−r · step)) [default: 1e-4 on
    /// MNIST, 5e-4 on the digits, so that τ nears τ_min = 0.5 by the last epoch]
    #[arg(long)]
    anneal_rate: Option<f64>,
    /// The decay of the moving-average baseline (reinforce-ema)
    #[arg(long, default_value_t = 0.9)]
    ema_decay: f64,
    /// Epochs to train [default: 10 on MNIST, 100 on the digits]
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Adam's learning rate
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Hidden widths of the encoder (the decoder mirrors them), comma-separated
    #[arg(long, value_delimiter = ',', default_value = "512,256")]
    hidden: Vec<usize>,
    /// none: intensities as Bernoulli targets; static: each pixel drawn once; dynamic: drawn
    /// afresh for every batch (the test set is binarized once unless none)
    #[arg(long, value_enum, default_value_t = Binarize::Dynamic)]
    binarize: Binarize,
    /// Draws per test example for the IWAE bound (on at most 1,000 test examples)
    #[arg(long, default_value_t = 100)]
    eval_k: usize,
    /// Test images in the fixed batch on which the encoder's gradient is measured
    #[arg(long, default_value_t = 32)]
    diag_batch: usize,
    /// Gradient estimates per measurement (0: do not measure)
    #[arg(long, default_value_t = 16)]
    diag_replicates: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads [default: all cores]
    #[arg(long)]
    threads: Option<usize>,
    /// Compute in f64 instead of f32
    #[arg(long)]
    f64: bool,
    /// The output directory
    #[arg(long, default_value = "vae-discrete-out")]
    out: PathBuf,
    /// Continue the run (or each run of --compare) whose checkpoint is in --out
    #[arg(long)]
    resume: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LatentArg {
    Categorical,
    Bernoulli,
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
    // the training loop runs on one of the pool's threads, so that each parallel kernel is
    // shared from there rather than handed over from the main thread
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()?;
    pool.install(|| {
        if args.f64 {
            main_loop::<f64>(args)
        } else {
            main_loop::<f32>(args)
        }
    })
}

/// The options no run can have, as messages.
fn check(args: &Args) -> Result<(), Error> {
    let fail = |message: String| -> Result<(), Error> { Err(message.into()) };
    if args.groups == 0 || args.bits == 0 {
        return fail("--groups and --bits must be at least 1".into());
    }
    if args.classes < 2 {
        return fail(format!(
            "--classes must be at least 2, got {}",
            args.classes
        ));
    }
    if args.samples == Some(0) {
        return fail("--samples must be at least 1".into());
    }
    if args.samples == Some(1) && (args.compare || args.estimator == DiscreteEstimator::Rloo) {
        return fail(
            "rloo compares each draw with the other draws of its example: it needs --samples \
             of at least 2 (with --compare, leave --samples out to give rloo 4 and the others 1)"
                .into(),
        );
    }
    if args.eval_k == 0 || args.batch_size == 0 || args.epochs == Some(0) {
        return fail("--eval-k, --batch-size and --epochs must be at least 1".into());
    }
    if args.threads == Some(0) {
        return fail("--threads must be at least 1".into());
    }
    if args.diag_replicates == 1 || (args.diag_replicates > 0 && args.diag_batch == 0) {
        return fail(
            "--diag-replicates must be 0 (no measurement) or at least 2, with --diag-batch of \
             at least 1"
                .into(),
        );
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
    if !(args.tau_min > 0.0 && args.tau_min <= args.tau0 && args.tau0.is_finite()) {
        return fail(format!(
            "the temperatures must satisfy 0 < --tau-min ≤ --tau0, got --tau-min {} and --tau0 {}",
            args.tau_min, args.tau0
        ));
    }
    if let Some(rate) = args.anneal_rate
        && !(rate >= 0.0 && rate.is_finite())
    {
        return fail(format!("--anneal-rate must be non-negative, got {rate}"));
    }
    if !(0.0..1.0).contains(&args.ema_decay) {
        return fail(format!(
            "--ema-decay must be in [0, 1), got {}",
            args.ema_decay
        ));
    }
    Ok(())
}

/// The streams of randomness, each a pure function of the seed and the epoch, so that a
/// resumed run draws what the uninterrupted one would, and every estimator of a comparison
/// sees the same batches.
const SHUFFLE: u64 = 0;
const NOISE: u64 = 0x9E37_79B9_7F4A_7C15;
const EVAL: u64 = 0xD1B5_4A32_D192_ED03;
const DIAG: u64 = 0x94D0_49BB_1331_11EB;

/// The data, the model's shape and what every run shares.
struct Setup<F: Scalar> {
    train: Dataset<F>,
    test: Dataset<F>,
    /// The fixed batch the gradient diagnostics use.
    diag: Array2<F>,
    config: DiscreteVaeConfig,
    epochs: usize,
}

/// What a run leaves for the comparison.
struct Summary {
    estimator: DiscreteEstimator,
    samples: usize,
    /// `(epoch, test ELBO)`.
    curve: Vec<(f64, f64)>,
    elbo: f64,
    iwae: f64,
    variance: f64,
    snr: f64,
    seconds_per_epoch: f64,
}

fn main_loop<F: Scalar>(args: &Args) -> Result<(), Error> {
    let setup = setup::<F>(args)?;
    if !args.compare {
        run_one(args, &setup, args.estimator, &args.out)?;
        return Ok(());
    }
    let mut summaries = Vec::new();
    for estimator in DiscreteEstimator::ALL {
        let dir = args.out.join(estimator.name());
        summaries.push(run_one(args, &setup, estimator, &dir)?);
    }
    report(args, &setup, &summaries)
}

fn setup<F: Scalar>(args: &Args) -> Result<Setup<F>, Error> {
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
    let (train, test) = match args.binarize {
        Binarize::None => (train, test),
        Binarize::Static => {
            let mut rng = epoch_rng(args.seed ^ EVAL, 0);
            (train.binarized(&mut rng), test.binarized(&mut rng))
        }
        Binarize::Dynamic => (train, test.binarized(&mut epoch_rng(args.seed ^ EVAL, 0))),
    };
    let latent = match args.latent {
        LatentArg::Categorical => DiscreteLatent::Categorical {
            groups: args.groups,
            classes: args.classes,
        },
        LatentArg::Bernoulli => DiscreteLatent::Bernoulli { bits: args.bits },
    };
    let config = DiscreteVaeConfig {
        input: train.pixels(),
        hidden: args.hidden.clone(),
        latent,
        ..DiscreteVaeConfig::default()
    };
    let shown = args.diag_batch.min(test.len());
    let diag = test
        .images()
        .slice_axis(Axis(0), (0..shown).into())
        .to_owned();
    let epochs = args
        .epochs
        .unwrap_or(if args.data.is_some() { 10 } else { 100 });
    println!(
        "{name}: {} to train, {} to test; a {}-{}-({})-… VAE in {}",
        train.len(),
        test.len(),
        train.pixels(),
        join(&args.hidden),
        match latent {
            DiscreteLatent::Categorical { groups, classes } =>
                format!("{groups} × {classes} categorical"),
            DiscreteLatent::Bernoulli { bits } => format!("{bits} bits"),
        },
        F::NAME
    );
    Ok(Setup {
        train,
        test,
        diag,
        config,
        epochs,
    })
}

fn join(widths: &[usize]) -> String {
    widths
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("-")
}

/// The temperature's annealing rate per step.
fn anneal_rate(args: &Args) -> f64 {
    args.anneal_rate
        .unwrap_or(if args.data.is_some() { 1e-4 } else { 5e-4 })
}

/// The draws per example an estimator trains with.
fn samples_for(args: &Args, estimator: DiscreteEstimator) -> usize {
    args.samples
        .unwrap_or(if estimator == DiscreteEstimator::Rloo {
            4
        } else {
            1
        })
}

/// The model, the baseline network `reinforce-learned` trains beside it, and the state kept
/// across steps.
struct Model<F: Scalar> {
    params: Params<F>,
    vae: DiscreteVae,
    baseline: Option<BaselineNet>,
    ema: EmaBaseline<F>,
    ema_decay: F,
    opt: Adam<F>,
}

fn model<F: Scalar>(
    args: &Args,
    setup: &Setup<F>,
    estimator: DiscreteEstimator,
) -> Result<Model<F>, Error> {
    let mut params = Params::<F>::new();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let vae = DiscreteVae::new(&mut params, "vae", setup.config.clone(), &mut rng)?;
    let baseline = if estimator == DiscreteEstimator::ReinforceLearned {
        let widths = [setup.config.input, 256];
        Some(BaselineNet::new(
            &mut params,
            "baseline",
            &widths,
            Activation::Relu,
            &mut rng,
        )?)
    } else {
        None
    };
    Ok(Model {
        params,
        vae,
        baseline,
        ema: EmaBaseline::new(F::from_f64(args.ema_decay))?,
        ema_decay: F::from_f64(args.ema_decay),
        opt: Adam::new(AdamConfig {
            lr: args.lr,
            ..AdamConfig::default()
        })?,
    })
}

/// The settings a resumed run must share with its checkpoint.
fn settings(
    args: &Args,
    estimator: DiscreteEstimator,
    input: usize,
) -> Vec<(&'static str, String)> {
    vec![
        ("data", format!("{:?}", args.data)),
        ("input", input.to_string()),
        ("hidden", join(&args.hidden)),
        ("latent", format!("{:?}", args.latent).to_lowercase()),
        ("groups", args.groups.to_string()),
        ("classes", args.classes.to_string()),
        ("bits", args.bits.to_string()),
        ("estimator", estimator.name().to_owned()),
        ("samples", samples_for(args, estimator).to_string()),
        ("tau0", args.tau0.to_string()),
        ("tau_min", args.tau_min.to_string()),
        ("anneal_rate", anneal_rate(args).to_string()),
        ("ema_decay", args.ema_decay.to_string()),
        ("dtype", if args.f64 { "f64" } else { "f32" }.into()),
        ("batch_size", args.batch_size.to_string()),
        ("lr", args.lr.to_string()),
        ("binarize", format!("{:?}", args.binarize).to_lowercase()),
        ("seed", args.seed.to_string()),
    ]
}

const HEADER: &str = "epoch,step,tau,train_loss_per_example,test_elbo,test_iwae,iwae_k,\
                      logit_grad_variance,logit_grad_snr,seconds,examples_per_second\n";

fn run_one<F: Scalar>(
    args: &Args,
    setup: &Setup<F>,
    estimator: DiscreteEstimator,
    dir: &Path,
) -> Result<Summary, Error> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let samples = samples_for(args, estimator);
    let mut m = model(args, setup, estimator)?;
    let checkpoint_path = dir.join("checkpoint.safetensors");
    let log_path = dir.join("log.csv");
    let mut log = String::from(HEADER);
    let mut summary = Summary {
        estimator,
        samples,
        curve: Vec::new(),
        elbo: f64::NAN,
        iwae: f64::NAN,
        variance: f64::NAN,
        snr: f64::NAN,
        seconds_per_epoch: f64::NAN,
    };
    let (mut start, mut step) = (1, 0u64);
    if args.resume {
        (start, step) = resume(
            args,
            estimator,
            setup,
            &checkpoint_path,
            &log_path,
            &mut m,
            &mut log,
            &mut summary,
        )?;
    }
    println!(
        "{estimator} ({samples} draw{} per example), {} epochs; writing to {}",
        if samples == 1 { "" } else { "s" },
        setup.epochs,
        dir.display()
    );
    let steps = setup.train.len().div_ceil(args.batch_size);
    let terminal = std::io::stdout().is_terminal();
    let mut train_seconds = Vec::new();
    for epoch in start..=setup.epochs {
        let started = Instant::now();
        let bar = progress(terminal, steps, epoch, setup.epochs);
        let mut noise = epoch_rng(args.seed ^ NOISE, epoch as u64);
        let (mut total, mut seen) = (0.0, 0usize);
        let batches = Batches::new(
            &setup.train,
            args.batch_size,
            epoch_rng(args.seed ^ SHUFFLE, epoch as u64),
        )?
        .binarize(args.binarize == Binarize::Dynamic);
        for batch in batches {
            let tau = annealed_temperature(args.tau0, args.tau_min, anneal_rate(args), step);
            let rows = batch.len();
            let (grads, loss) = {
                let tape = Tape::with_params(&m.params);
                let x = tape.constant(batch.images);
                let est = estimator.estimator(tau, samples, &m.ema, || {
                    learned(&m.baseline).forward(&tape, x, samples)
                });
                let loss = m.vae.elbo(&tape, x, est, samples, &mut noise)?.loss();
                (loss.backward()?, loss.item().as_f64())
            };
            if !loss.is_finite() {
                return Err(format!(
                    "{estimator}: the training loss became {loss} at epoch {epoch}, step {step}; try a smaller --lr"
                )
                .into());
            }
            m.opt.step(&mut m.params, &grads);
            step += 1;
            total += loss;
            seen += rows;
            let rate = seen as f64 / started.elapsed().as_secs_f64();
            bar.set_message(format!(
                "loss {:.2}  {rate:.0} examples/s  τ {tau:.3}",
                total / seen as f64
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();
        let seconds = started.elapsed().as_secs_f64();
        train_seconds.push(seconds);
        let (elbo, iwae) = evaluate(&m, &setup.test, args, epoch)?;
        let tau = annealed_temperature(args.tau0, args.tau_min, anneal_rate(args), step);
        let (variance, snr) = if args.diag_replicates > 0 {
            let seed = (args.seed ^ DIAG).wrapping_add(epoch as u64);
            let runs = [(estimator, samples)];
            let table = gradients(&m, &setup.diag, &runs, tau, args.diag_replicates, seed)?;
            (table.reports[0].total_variance, table.reports[0].snr())
        } else {
            (f64::NAN, f64::NAN)
        };
        let rate = seen as f64 / seconds;
        let loss = total / seen as f64;
        writeln!(
            log,
            "{epoch},{step},{tau:.5},{loss:.4},{elbo:.4},{iwae:.4},{},{variance:.6e},{snr:.6},{seconds:.3},{rate:.0}",
            args.eval_k
        )?;
        stograd_nn::fs::write_atomic(&log_path, |out| out.write_all(log.as_bytes()))?;
        pictures(&m, &setup.test, dir, args, epoch)?;
        let mut extra = Checkpoint::default()
            .with_state("optimizer", m.opt.state_dict(&m.params))
            .with_metadata("epoch", epoch.to_string())
            .with_metadata("step", step.to_string())
            .with_metadata("ema", m.ema.value().as_f64().to_string())
            .with_metadata("ema_observed", m.ema.observed().to_string());
        for (key, value) in settings(args, estimator, setup.config.input) {
            extra = extra.with_metadata(key, value);
        }
        checkpoint::save(&checkpoint_path, &m.params, &extra)?;
        println!(
            "{estimator} epoch {epoch:>3}/{}  loss {loss:>8.3}  test ELBO {elbo:>8.3}  IWAE-{} {iwae:>8.3}  grad var {variance:.3e}  SNR {snr:.3}  τ {tau:.3}  {seconds:.2} s",
            setup.epochs, args.eval_k
        );
        summary.curve.push((epoch as f64, elbo));
        (summary.elbo, summary.iwae, summary.variance, summary.snr) = (elbo, iwae, variance, snr);
    }
    if !train_seconds.is_empty() {
        summary.seconds_per_epoch = train_seconds.iter().sum::<f64>() / train_seconds.len() as f64;
    }
    Ok(summary)
}

/// The baseline network of `reinforce-learned`, the only estimator that asks for it.
fn learned(baseline: &Option<BaselineNet>) -> &BaselineNet {
    baseline
        .as_ref()
        .expect("reinforce-learned is built with its baseline network")
}

/// The gradient of the loss with respect to the encoder's logits on the fixed batch `x`, for
/// each `(estimator, draws per example)`, `replicates` times with common random numbers, at
/// temperature `tau` and with a copy of the moving average (measuring leaves training's
/// state alone).
fn gradients<F: Scalar>(
    m: &Model<F>,
    x: &Array2<F>,
    runs: &[(DiscreteEstimator, usize)],
    tau: f64,
    replicates: usize,
    seed: u64,
) -> Result<Comparison, Error> {
    let candidates: Vec<Candidate<F>> = runs
        .iter()
        .map(|&(estimator, samples)| {
            let ema = EmaBaseline::new(m.ema_decay).expect("a decay checked at start");
            if m.ema.observed() > 0 {
                ema.observe(m.ema.value()).expect("a finite average");
            }
            let (baseline, x) = (m.baseline.clone(), x.clone());
            Candidate::from_fn(estimator.name(), move |tape| {
                estimator.estimator(tau, samples, &ema, || {
                    learned(&baseline).forward(tape, tape.constant(x.clone()), samples)
                })
            })
        })
        .collect();
    compare(&candidates, replicates, seed, None, |c, rng| {
        let samples = runs
            .iter()
            .find(|(e, _)| e.name() == c.label())
            .expect("one run per candidate")
            .1;
        let tape = Tape::with_params(&m.params);
        let x = tape.constant(x.clone());
        let elbo = m.vae.elbo(&tape, x, c.estimator(&tape), samples, rng)?;
        let logits = elbo.logits.retain_grad();
        Ok(flat_gradient(&elbo.loss().backward()?, &[logits]))
    })
}

/// The mean unrelaxed test ELBO over the test set, and the mean IWAE bound over its first
/// 1,000.
fn evaluate<F: Scalar>(
    m: &Model<F>,
    test: &Dataset<F>,
    args: &Args,
    epoch: usize,
) -> Result<(f64, f64), Error> {
    let mut rng = epoch_rng(args.seed ^ EVAL, epoch as u64);
    let (elbo, _) = m.vae.evaluate(&m.params, test.images(), 1, &mut rng)?;
    let head = test
        .images()
        .slice_axis(Axis(0), (0..test.len().min(1000)).into())
        .to_owned();
    let (_, iwae) = m.vae.evaluate(&m.params, &head, args.eval_k, &mut rng)?;
    let mean = |a: ndarray::Array1<F>| a.iter().map(|v| v.as_f64()).sum::<f64>() / a.len() as f64;
    Ok((mean(elbo), mean(iwae)))
}

/// Reconstructions (rows of test images, each followed by its reconstructions) and samples.
fn pictures<F: Scalar>(
    m: &Model<F>,
    test: &Dataset<F>,
    dir: &Path,
    args: &Args,
    epoch: usize,
) -> Result<(), Error> {
    let (h, w) = (test.height(), test.width());
    let scale = (64 / h).clamp(1, 4);
    let columns = 16;
    let shown = test.len().min(64);
    let images = test
        .images()
        .slice_axis(Axis(0), (0..shown).into())
        .to_owned();
    let recon = m.vae.reconstruct(&m.params, &images)?;
    let mut pairs = Vec::new();
    for start in (0..shown).step_by(columns) {
        let end = (start + columns).min(shown);
        pairs.push(images.slice_axis(Axis(0), (start..end).into()));
        pairs.push(recon.slice_axis(Axis(0), (start..end).into()));
    }
    let grid = ndarray::concatenate(Axis(0), &pairs)?;
    stograd_nn::image::save_grid(dir.join("reconstructions.png"), &grid, h, w, columns, scale)?;
    let mut rng = epoch_rng(args.seed ^ EVAL ^ 1, epoch as u64);
    let samples = m.vae.sample(&m.params, 64, &mut rng);
    stograd_nn::image::save_grid(dir.join("samples.png"), &samples, h, w, columns, scale)?;
    Ok(())
}

/// Loads the checkpoint after checking that it is this run's; returns the epoch to start at
/// and the step count, and restores the log, the moving average and the curve.
#[allow(clippy::too_many_arguments)]
fn resume<F: Scalar>(
    args: &Args,
    estimator: DiscreteEstimator,
    setup: &Setup<F>,
    checkpoint_path: &Path,
    log_path: &Path,
    m: &mut Model<F>,
    log: &mut String,
    summary: &mut Summary,
) -> Result<(usize, u64), Error> {
    let metadata = checkpoint::read_metadata(checkpoint_path)?;
    for (key, value) in settings(args, estimator, setup.config.input) {
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
    let mut extra = checkpoint::load(checkpoint_path, &mut m.params)?;
    m.opt
        .load_state_dict(&m.params, &extra.take_state("optimizer")?)?;
    let number = |key: &str| -> Result<f64, Error> {
        extra.metadata[key]
            .parse::<f64>()
            .map_err(|e| format!("{}: bad {key}: {e}", checkpoint_path.display()).into())
    };
    let (epoch, step) = (number("epoch")? as usize, number("step")? as u64);
    if number("ema_observed")? > 0.0 {
        m.ema.observe(F::from_f64(number("ema")?))?;
    }
    // keep the log's rows up to the checkpoint's epoch
    if let Ok(old) = std::fs::read_to_string(log_path) {
        for line in old.lines().skip(1) {
            let fields: Vec<&str> = line.split(',').collect();
            match fields[0].parse::<usize>() {
                Ok(e) if e <= epoch => {
                    writeln!(log, "{line}")?;
                    if let Ok(elbo) = fields[4].parse() {
                        summary.curve.push((e as f64, elbo));
                    }
                }
                _ => {}
            }
        }
    }
    println!(
        "resuming {estimator} after epoch {epoch} from {}",
        checkpoint_path.display()
    );
    Ok((epoch + 1, step))
}

/// The comparison's table, files and curves, and the gradients of every estimator at one
/// point.
fn report<F: Scalar>(args: &Args, setup: &Setup<F>, summaries: &[Summary]) -> Result<(), Error> {
    let mut md = format!(
        "| estimator | draws | test ELBO | test IWAE-{} | logit grad variance | logit grad SNR | s/epoch |\n|---|---:|---:|---:|---:|---:|---:|\n",
        args.eval_k
    );
    let mut csv = String::from(
        "estimator,samples,test_elbo,test_iwae,logit_grad_variance,logit_grad_snr,seconds_per_epoch\n",
    );
    for s in summaries {
        writeln!(
            md,
            "| {} | {} | {:.3} | {:.3} | {:.4e} | {:.4} | {:.3} |",
            s.estimator, s.samples, s.elbo, s.iwae, s.variance, s.snr, s.seconds_per_epoch
        )?;
        writeln!(
            csv,
            "{},{},{},{},{},{},{}",
            s.estimator, s.samples, s.elbo, s.iwae, s.variance, s.snr, s.seconds_per_epoch
        )?;
    }
    println!("\n{md}");
    stograd_nn::fs::write_atomic(&args.out.join("compare.md"), |out| {
        out.write_all(md.as_bytes())
    })?;
    stograd_nn::fs::write_atomic(&args.out.join("compare.csv"), |out| {
        out.write_all(csv.as_bytes())
    })?;
    let mut chart = Chart::new("test ELBO (unrelaxed posterior)")
        .x_label("epoch")
        .y_label("nats per example");
    for s in summaries {
        chart = chart.line(s.estimator.name(), s.curve.iter().copied());
    }
    let curves = args.out.join("curves.png");
    chart.save(&curves)?;

    if args.diag_replicates > 0 {
        same_point(args, setup)?;
    }
    println!(
        "wrote {}, {} and {}",
        args.out.join("compare.md").display(),
        args.out.join("compare.csv").display(),
        curves.display()
    );
    Ok(())
}

/// Every estimator's gradient at one point: the parameters (and baseline network) that
/// `reinforce-learned` trained, with the moving average set to the mean cost there, τ at
/// `--tau-min`. Its time per estimate is the cost of one step's forward and backward passes.
fn same_point<F: Scalar>(args: &Args, setup: &Setup<F>) -> Result<(), Error> {
    let owner = DiscreteEstimator::ReinforceLearned;
    let mut m = model(args, setup, owner)?;
    let saved = args.out.join(owner.name()).join("checkpoint.safetensors");
    checkpoint::load(&saved, &mut m.params)?;
    // warm the moving average with the batch's mean credited cost, −log p(x | z) per draw
    let reconstruction = {
        let tape = Tape::with_params(&m.params);
        let x = tape.constant(setup.diag.clone());
        let mut rng = epoch_rng(args.seed ^ DIAG, 1);
        let e = m
            .vae
            .elbo(&tape, x, stograd::Estimator::score_function(), 1, &mut rng)?;
        e.reconstruction.mean().item()
    };
    m.ema.observe(-reconstruction)?;
    let runs: Vec<(DiscreteEstimator, usize)> = DiscreteEstimator::ALL
        .into_iter()
        .map(|e| (e, samples_for(args, e)))
        .collect();
    let replicates = args.diag_replicates.max(64);
    let table = gradients(
        &m,
        &setup.diag,
        &runs,
        args.tau_min,
        replicates,
        args.seed ^ DIAG,
    )?;
    let text = format!(
        "Gradients of the loss with respect to the encoder's logits on {} test images, {replicates} \
         estimates each, at the parameters {owner} trained (τ = {}):\n\n{table}",
        setup.diag.nrows(),
        args.tau_min
    );
    println!("{text}");
    let path = args.out.join("same-point.md");
    stograd_nn::fs::write_atomic(&path, |out| out.write_all(text.as_bytes()))?;
    Ok(())
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
