//! Trains a Bayesian MLP classifier by variational inference and shows its uncertainty.
//!
//! ```text
//! cargo run --release --example bayes_mlp                                  # the embedded 8×8 digits
//! cargo run --release --example bayes_mlp -- --data ../shared/data/mnist   # MNIST, 784-400-400-10
//! cargo run --release --example bayes_mlp -- --mode flipout --prior mixture --samples 50
//! cargo run --release --example bayes_mlp -- --twin                        # and the deterministic twin
//! ```
//!
//! Every layer is a `BayesianLinear` (factorized Gaussian weights, `σ = softplus(ρ)`), trained
//! on the per-example negative ELBO `mean cross-entropy + KL(q ‖ p) / N` (or with Blundell's
//! per-batch KL shares, `--kl-schedule blundell`) with Adam. Predictions average the class
//! probabilities of `--samples` forward passes. The output directory (`bayes-mlp-out` unless
//! `--out` says otherwise) gets:
//!
//! - `log.csv`: per epoch and model, the training loss and its KL part per example, the test
//!   NLL of the predictive distribution, accuracy, expected calibration error, seconds;
//! - `reliability.png`: accuracy against confidence in 10 bins, with the diagonal of a
//!   calibrated classifier;
//! - `entropy.png` and `mutual_information.png`: histograms of the predictive entropy and of
//!   its epistemic part on test digits, on uniform noise and on test digits rotated by 90°
//!   (inputs unlike the training data);
//! - `checkpoint.safetensors`: the trained parameters.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array2, Axis};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::{Rng, RngExt};
use stograd::{Params, Tape};
use stograd_nn::bayes::{
    BayesianLinearConfig, BayesianMlp, Calibration, ClassPrediction, Mode, Prior, kl_scale,
};
use stograd_nn::checkpoint::{self, Checkpoint};
use stograd_nn::data::{self, Batches, Dataset, epoch_rng};
use stograd_nn::layers::{Activation, Mlp};
use stograd_nn::loss::cross_entropy;
use stograd_nn::optim::{Adam, AdamConfig, Optimizer};
use stograd_nn::parallel::DataParallel;
use stograd_nn::plot::{self, Chart};

/// Train a Bayesian MLP on the embedded 8×8 digits (default) or on MNIST, writing a CSV log,
/// a reliability diagram and predictive-entropy histograms on out-of-distribution inputs.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// A directory of MNIST or Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz], …);
    /// without it, the embedded digits (1,497 to train, 300 to test)
    #[arg(long)]
    data: Option<PathBuf>,
    /// Epochs to train [default: 10 on MNIST, 200 on the digits]
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Adam's learning rate [default: 1e-3 on MNIST, 1e-2 on the digits]
    #[arg(long)]
    lr: Option<f64>,
    /// Hidden widths, comma-separated [default: 400,400 on MNIST, 100 on the digits]
    #[arg(long, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    /// How a training step samples: local reparameterization, Flipout, or one weight draw
    /// per batch
    #[arg(long, value_enum, default_value_t = ModeArg::Local)]
    mode: ModeArg,
    /// The prior: N(0, prior_std²), or Blundell's scale mixture of --pi, --sigma1, --sigma2
    #[arg(long, value_enum, default_value_t = PriorArg::Normal)]
    prior: PriorArg,
    #[arg(long, default_value_t = 1.0)]
    prior_std: f64,
    /// The mixture weight of the wide component
    #[arg(long, default_value_t = 0.5)]
    pi: f64,
    #[arg(long, default_value_t = 1.0)]
    sigma1: f64,
    /// The narrow component's scale [default: e⁻⁶]
    #[arg(long, default_value_t = (-6f64).exp())]
    sigma2: f64,
    /// The initial ρ of every weight: σ₀ = softplus(ρ₀)
    #[arg(long, default_value_t = -5.0, allow_hyphen_values = true)]
    rho_init: f64,
    /// The KL's weight per batch: KL/N for every batch, or Blundell's 2^(M−i)/(2^M − 1)
    #[arg(long, value_enum, default_value_t = KlSchedule::PerExample)]
    kl_schedule: KlSchedule,
    /// Forward samples per test example for the predictive distribution
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// Also train the deterministic twin (the same widths, plain Linear layers)
    #[arg(long)]
    twin: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads [default: all cores]
    #[arg(long)]
    threads: Option<usize>,
    /// Shards each batch is split into, one tape per shard, each shard's kernels on one
    /// thread; the curve depends on it, not on --threads. Local mode only: flipout and global
    /// draw one weight perturbation per batch, which shards would split [default: the number
    /// of threads in local mode, else 1]
    #[arg(long)]
    shards: Option<usize>,
    /// The output directory
    #[arg(long, default_value = "bayes-mlp-out")]
    out: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Local,
    Flipout,
    Global,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PriorArg {
    Normal,
    Mixture,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum KlSchedule {
    PerExample,
    Blundell,
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
    let prior = check(args)?;
    // the loop runs on one of the pool's threads, so parallel kernels are shared from there
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()?;
    pool.install(|| train(args, prior))
}

/// The options no run can have, as messages; the prior they describe.
fn check(args: &Args) -> Result<Prior, Error> {
    if args.batch_size == 0
        || args.epochs == Some(0)
        || args.threads == Some(0)
        || args.shards == Some(0)
    {
        return Err("--batch-size, --epochs, --threads and --shards must be at least 1".into());
    }
    if args.mode != ModeArg::Local && args.shards.is_some_and(|s| s > 1) {
        return Err(format!(
            "--shards {} needs --mode local: {:?} mode draws one weight perturbation per batch",
            args.shards.unwrap_or(1),
            mode(args)
        )
        .into());
    }
    if args.samples == 0 {
        return Err("--samples must be at least 1".into());
    }
    if let Some(hidden) = &args.hidden
        && (hidden.is_empty() || hidden.contains(&0))
    {
        return Err(format!("--hidden widths must be positive, got {hidden:?}").into());
    }
    if let Some(lr) = args.lr
        && !(lr > 0.0 && lr.is_finite())
    {
        return Err(format!("--lr must be positive, got {lr}").into());
    }
    if !args.rho_init.is_finite() {
        return Err(format!("--rho-init must be finite, got {}", args.rho_init).into());
    }
    let prior = match args.prior {
        PriorArg::Normal => Prior::normal(args.prior_std),
        PriorArg::Mixture => Prior::scale_mixture(args.pi, args.sigma1, args.sigma2),
    };
    prior.map_err(|e| format!("bad prior: {e}").into())
}

/// The streams of randomness, each a pure function of the seed and the epoch.
const SHUFFLE: u64 = 0;
const NOISE: u64 = 0x9E37_79B9_7F4A_7C15;
const EVAL: u64 = 0xD1B5_4A32_D192_ED03;

fn mode(args: &Args) -> Mode {
    match args.mode {
        ModeArg::Local => Mode::LocalReparam,
        ModeArg::Flipout => Mode::Flipout,
        ModeArg::Global => Mode::Global,
    }
}

fn train(args: &Args, prior: Prior) -> Result<(), Error> {
    let (train, test, name) = load_data(args)?;
    let mnist = args.data.is_some();
    let epochs = args.epochs.unwrap_or(if mnist { 10 } else { 200 });
    let lr = args.lr.unwrap_or(if mnist { 1e-3 } else { 1e-2 });
    let hidden = args
        .hidden
        .clone()
        .unwrap_or(if mnist { vec![400, 400] } else { vec![100] });
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let mut widths = vec![train.pixels()];
    widths.extend(&hidden);
    widths.push(train.classes());
    let config = BayesianLinearConfig {
        prior,
        rho_init: args.rho_init,
        bias: true,
    };
    let mut params = Params::<f32>::new();
    let mut init = StdRng::seed_from_u64(args.seed);
    let net = BayesianMlp::new(
        &mut params,
        "bnn",
        &widths,
        Activation::Relu,
        config,
        &mut init,
    )?;
    let mut twin_params = Params::<f32>::new();
    let twin_net = Mlp::new(
        &mut twin_params,
        "mlp",
        &widths,
        Activation::Relu,
        &mut init,
    )?;
    let adam = || {
        Adam::<f32>::new(AdamConfig {
            lr,
            ..AdamConfig::default()
        })
    };
    let mut opt = adam()?;
    let mut twin = Twin {
        net: twin_net,
        params: twin_params,
        opt: adam()?,
    };
    let shards = DataParallel::new(match args.mode {
        ModeArg::Local => args.shards.unwrap_or_else(rayon::current_num_threads),
        _ => 1,
    })?;

    let shape = widths
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("-");
    println!(
        "training a Bayesian MLP ({shape}, {:?} mode, {prior:?}) on {name}: {} to train, {} to test; writing to {}",
        mode(args),
        train.len(),
        test.len(),
        args.out.display()
    );
    let log_path = args.out.join("log.csv");
    let mut log = String::from(
        "model,epoch,train_loss,train_kl_per_example,test_nll,test_accuracy,test_ece,seconds\n",
    );
    let steps = train.len().div_ceil(args.batch_size);
    let terminal = std::io::stdout().is_terminal();
    let n_train = train.len();
    for epoch in 1..=epochs {
        let started = Instant::now();
        let bar = progress(terminal, steps, epoch, epochs);
        let mut noise = epoch_rng(args.seed ^ NOISE, epoch as u64);
        let (mut total, mut total_kl, mut seen) = (0.0, 0.0, 0usize);
        let batches = Batches::new(
            &train,
            args.batch_size,
            epoch_rng(args.seed ^ SHUFFLE, epoch as u64),
        )?;
        for (step, batch) in batches.enumerate() {
            let rows = batch.len();
            // the KL's weight in per-example units: the loss is a mean over the batch
            let weight = match args.kl_schedule {
                KlSchedule::PerExample => kl_scale::per_example(n_train)?,
                KlSchedule::Blundell => kl_scale::blundell(step + 1, steps)? / rows as f64,
            } as f32;
            // each shard draws its noise from its own generator, seeded from the epoch's
            let seeds: Vec<u64> = (0..shards.shards()).map(|_| noise.next_u64()).collect();
            let (grads, parts) = shards.gradients(rows, |shard, range| -> Result<_, Error> {
                let mut noise = StdRng::seed_from_u64(seeds[shard]);
                // this shard's part of the batch's mean cross-entropy and of the KL term (each
                // shard evaluates the whole KL, the two at the same time: computing it in one
                // shard only would leave the other core waiting for as long)
                let share = range.len() as f32 / rows as f32;
                let tape = Tape::with_params(&params);
                let x = tape.constant(
                    batch
                        .images
                        .slice_axis(Axis(0), range.clone().into())
                        .to_owned(),
                );
                let (logits, kl) = net.forward_with_kl(&tape, x, mode(args), &mut noise)?;
                let loss = cross_entropy(logits, &batch.labels[range]).sum() * (1.0 / rows as f32)
                    + kl * (weight * share);
                let kl = f64::from(share) * f64::from(kl.item()) / n_train as f64;
                Ok((loss.backward()?, (f64::from(loss.item()), kl)))
            })?;
            let (loss, kl) = parts
                .iter()
                .fold((0.0, 0.0), |(l, k), &(pl, pk)| (l + pl, k + pk));
            if !loss.is_finite() {
                return Err(format!("the training loss became {loss} at epoch {epoch}, step {step}; try a smaller --lr").into());
            }
            opt.step(&mut params, &grads);
            total += loss * rows as f64;
            total_kl += kl * rows as f64;
            seen += rows;
            bar.set_message(format!("loss {:.4}", total / seen as f64));
            bar.inc(1);
        }
        bar.finish_and_clear();
        let train_seconds = started.elapsed().as_secs_f64();
        let mut eval_rng = epoch_rng(args.seed ^ EVAL, epoch as u64);
        let samples = net.sample_outputs(
            &params,
            test.images(),
            args.samples,
            mode(args),
            &mut eval_rng,
        )?;
        let prediction = ClassPrediction::from_logits(&samples)?;
        let (nll, accuracy) = (
            prediction.nll(test.labels())?,
            prediction.accuracy(test.labels())?,
        );
        let ece = Calibration::new(&prediction.probs, test.labels(), 10)?.ece;
        let (loss, kl) = (total / seen as f64, total_kl / seen as f64);
        writeln!(
            log,
            "bayes,{epoch},{loss:.5},{kl:.5},{nll:.5},{accuracy:.4},{ece:.4},{train_seconds:.3}"
        )?;
        print!(
            "epoch {epoch:>3}/{epochs}  loss {loss:.4} (KL {kl:.4})  test NLL {nll:.4}  accuracy {accuracy:.4}  ECE {ece:.4}  {train_seconds:.2} s"
        );
        if args.twin {
            let twin_row = twin.epoch(&shards, &train, &test, args, epoch)?;
            print!(
                "  | twin: test NLL {:.4}  accuracy {:.4}  ECE {:.4}",
                twin_row.1, twin_row.2, twin_row.3
            );
            writeln!(
                log,
                "deterministic,{epoch},{:.5},0,{:.5},{:.4},{:.4},{:.3}",
                twin_row.0, twin_row.1, twin_row.2, twin_row.3, twin_row.4
            )?;
        }
        println!();
        stograd_nn::fs::write_atomic(&log_path, |out| out.write_all(log.as_bytes()))?;
    }
    pictures(&net, &params, &test, args)?;
    let metadata = Checkpoint::default()
        .with_metadata("widths", shape)
        .with_metadata("prior", format!("{prior:?}"))
        .with_metadata("epochs", epochs.to_string());
    checkpoint::save(args.out.join("checkpoint.safetensors"), &params, &metadata)?;
    println!(
        "wrote {}, the pictures and the checkpoint",
        log_path.display()
    );
    Ok(())
}

/// The deterministic twin: the same widths of plain `Linear` layers, and its optimizer.
struct Twin {
    net: Mlp,
    params: Params<f32>,
    opt: Adam<f32>,
}

impl Twin {
    /// One epoch of the deterministic twin; its (train loss, test NLL, accuracy, ECE, seconds).
    fn epoch(
        &mut self,
        shards: &DataParallel,
        train: &Dataset<f32>,
        test: &Dataset<f32>,
        args: &Args,
        epoch: usize,
    ) -> Result<(f64, f64, f64, f64, f64), Error> {
        let Twin { net, params, opt } = self;
        let started = Instant::now();
        let (mut total, mut seen) = (0.0, 0usize);
        for batch in Batches::new(
            train,
            args.batch_size,
            epoch_rng(args.seed ^ SHUFFLE, epoch as u64),
        )? {
            let rows = batch.len();
            let (grads, losses) = shards.gradients(rows, |_, range| -> Result<_, Error> {
                let tape = Tape::with_params(params);
                let x = batch.images.slice_axis(Axis(0), range.clone().into());
                let logits = net.forward(&tape, tape.constant(x.to_owned()));
                let loss = cross_entropy(logits, &batch.labels[range]).sum() * (1.0 / rows as f32);
                Ok((loss.backward()?, f64::from(loss.item())))
            })?;
            let loss: f64 = losses.iter().sum();
            opt.step(params, &grads);
            total += loss * rows as f64;
            seen += rows;
        }
        let seconds = started.elapsed().as_secs_f64();
        let tape = Tape::inference(params);
        let logits: Array2<f32> = net
            .forward(&tape, tape.constant(test.images().clone()))
            .value()
            .into_dimensionality()?;
        let prediction = ClassPrediction::from_logits(&[logits])?;
        let ece = Calibration::new(&prediction.probs, test.labels(), 10)?.ece;
        Ok((
            total / seen as f64,
            prediction.nll(test.labels())?,
            prediction.accuracy(test.labels())?,
            ece,
            seconds,
        ))
    }
}

/// The training and test sets, and what to call them.
fn load_data(args: &Args) -> Result<(Dataset<f32>, Dataset<f32>, String), Error> {
    Ok(match &args.data {
        Some(dir) => {
            let (train, test) = data::mnist::<f32>(dir)?;
            (train, test, format!("MNIST from {}", dir.display()))
        }
        None => {
            let (train, test) = data::digits::<f32>().split(300, &mut epoch_rng(args.seed, 0))?;
            (train, test, "the embedded 8×8 digits".to_owned())
        }
    })
}

/// The reliability diagram and the uncertainty histograms, on at most 2,000 test images.
fn pictures(
    net: &BayesianMlp,
    params: &Params<f32>,
    test: &Dataset<f32>,
    args: &Args,
) -> Result<(), Error> {
    let shown = test.len().min(2000);
    let images = test
        .images()
        .slice_axis(Axis(0), (0..shown).into())
        .to_owned();
    let labels = &test.labels()[..shown];
    let mut rng = epoch_rng(args.seed ^ EVAL ^ 1, 0);
    let noise = Array2::from_shape_fn(images.dim(), |_| rng.random::<f32>());
    let (h, w) = (test.height(), test.width());
    // rotated by 90°: pixel (r, c) of the result is pixel (c, w − 1 − r) of the image
    let rotated = Array2::from_shape_fn(images.dim(), |(i, p)| {
        let (r, c) = (p / w, p % w);
        images[[i, c * w + (h - 1 - r)]]
    });
    let predict = |x: &Array2<f32>, rng: &mut StdRng| -> Result<ClassPrediction, Error> {
        let samples = net.sample_outputs(params, x, args.samples, mode(args), rng)?;
        Ok(ClassPrediction::from_logits(&samples)?)
    };
    let on_test = predict(&images, &mut rng)?;
    let on_noise = predict(&noise, &mut rng)?;
    let on_rotated = predict(&rotated, &mut rng)?;

    let calibration = Calibration::new(&on_test.probs, labels, 10)?;
    let edges: Vec<f64> = std::iter::once(0.0)
        .chain(calibration.bins.iter().map(|b| b.upper))
        .collect();
    let accuracy: Vec<f64> = calibration.bins.iter().map(|b| b.accuracy).collect();
    let curve: Vec<(f64, f64)> = calibration
        .bins
        .iter()
        .filter(|b| b.count > 0)
        .map(|b| (b.confidence, b.accuracy))
        .collect();
    Chart::new(format!(
        "reliability on {shown} test images (ECE {:.3})",
        calibration.ece
    ))
    .x_label("confidence")
    .y_label("accuracy")
    .x_range(0.0, 1.0)
    .y_range(0.0, 1.3) // room for the legend above the bars
    .bars("accuracy per bin", &edges, &accuracy)
    .points("(mean confidence, accuracy) per bin", curve)
    .line("calibrated", [(0.0, 0.0), (1.0, 1.0)])
    .save(args.out.join("reliability.png"))?;

    let max = (on_test.probs.ncols() as f64).ln();
    type Of = fn(&ClassPrediction) -> &ndarray::Array1<f64>;
    let charts: [(&str, &str, Of); 2] = [
        ("entropy.png", "predictive entropy (nats)", |p| {
            &p.predictive_entropy
        }),
        ("mutual_information.png", "mutual information (nats)", |p| {
            &p.mutual_information
        }),
    ];
    for (file, what, values) in charts {
        let mut chart = Chart::new(format!("{what}, {} samples per input", args.samples))
            .x_label(what)
            .y_label("fraction of inputs");
        for (label, p) in [
            ("test digits", &on_test),
            ("uniform noise", &on_noise),
            ("digits rotated by 90 degrees", &on_rotated),
        ] {
            let (edges, counts) = plot::histogram(&values(p).to_vec(), 0.0, max, 30)?;
            // a step outline per set, so the three stay visible where they overlap
            let n = shown as f64;
            let steps = counts
                .iter()
                .enumerate()
                .flat_map(|(i, c)| [(edges[i], c / n), (edges[i + 1], c / n)]);
            chart = chart.line(label, steps);
        }
        chart.save(args.out.join(file))?;
    }
    let mean = |v: &ndarray::Array1<f64>| v.mean().unwrap_or(0.0);
    println!(
        "mean predictive entropy: test {:.3}, noise {:.3}, rotated {:.3} nats (mutual information {:.3}, {:.3}, {:.3})",
        mean(&on_test.predictive_entropy),
        mean(&on_noise.predictive_entropy),
        mean(&on_rotated.predictive_entropy),
        mean(&on_test.mutual_information),
        mean(&on_noise.mutual_information),
        mean(&on_rotated.mutual_information),
    );
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
