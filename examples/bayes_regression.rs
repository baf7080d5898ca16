//! Bayesian neural-network regression: a 1-D toy with a gap in its inputs, and the UCI
//! concrete benchmark of Hernández-Lobato & Adams (2015).
//!
//! ```text
//! cargo run --release --example bayes_regression                   # both tasks
//! cargo run --release --example bayes_regression -- --task toy
//! cargo run --release --example bayes_regression -- --task concrete --splits 5 --epochs 200
//! cargo run --release --example bayes_regression -- --task concrete --data concrete.csv
//! ```
//!
//! The model is a `BayesianMlp` with ReLU hidden layers and a Gaussian likelihood whose noise
//! scale is a point estimate, trained on the per-example negative ELBO
//! `mean −ln N(y; f(x), σ_y²) + KL(q ‖ N(0, 1)) / N` with Adam, inputs and targets
//! standardized on the training set. The output directory (`bayes-regression-out` unless
//! `--out` says otherwise) gets:
//!
//! - `toy.png` and `toy.csv`: the predictive mean ± 2 standard deviations (`S` forward
//!   samples, noise included) of the toy, whose band widens over the gap between its two
//!   clusters of inputs and beyond them, with a few functions drawn from the posterior;
//! - `concrete.csv`: per split, the test RMSE and the test log-likelihood per example (of
//!   the predictive density, in MPa), and the summary line, mean ± standard error over the
//!   splits, beside the figures Hernández-Lobato & Adams (2015, table 1) report for
//!   variational inference and probabilistic backpropagation on the same 20-split protocol.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array1, Array2, Axis};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngExt};
use rand_distr::StandardNormal;
use stograd::{ParamId, Params, Tape};
use stograd_nn::bayes::{
    BayesianLinearConfig, BayesianMlp, Mode, PredictiveMoments, Prior, kl_scale,
};
use stograd_nn::data;
use stograd_nn::layers::Activation;
use stograd_nn::optim::{Adam, AdamConfig, Optimizer};
use stograd_nn::plot::{Chart, palette};

/// Bayesian neural-network regression: a 1-D toy with a gap, and UCI concrete on 20 random
/// 90/10 splits, reported beside Hernández-Lobato & Adams (2015).
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Which task to run
    #[arg(long, value_enum, default_value_t = Task::All)]
    task: Task,
    /// A CSV file in the format of the embedded concrete data (header, nine columns);
    /// without it, the embedded copy
    #[arg(long)]
    data: Option<PathBuf>,
    /// Random 90/10 splits of the concrete data
    #[arg(long, default_value_t = 20)]
    splits: usize,
    /// Hidden widths, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "50")]
    hidden: Vec<usize>,
    /// The hidden activation [default: tanh on the toy, relu on concrete]
    #[arg(long, value_enum)]
    activation: Option<ActivationArg>,
    /// Epochs per fit [default: 400 on concrete, 2000 on the toy]
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Adam's learning rate
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// The prior's standard deviation (of every weight, in standardized units)
    #[arg(long, default_value_t = 1.0)]
    prior_std: f64,
    /// The initial ρ of every weight: σ₀ = softplus(ρ₀)
    #[arg(long, default_value_t = -5.0, allow_hyphen_values = true)]
    rho_init: f64,
    /// How a training step samples
    #[arg(long, value_enum, default_value_t = ModeArg::Local)]
    mode: ModeArg,
    /// Forward samples per test input for the predictive distribution
    #[arg(long, default_value_t = 100)]
    samples: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads [default: all cores]
    #[arg(long)]
    threads: Option<usize>,
    /// The output directory
    #[arg(long, default_value = "bayes-regression-out")]
    out: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Task {
    All,
    Toy,
    Concrete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ActivationArg {
    Relu,
    Tanh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Local,
    Flipout,
    Global,
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
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()?;
    pool.install(|| {
        if args.task != Task::Concrete {
            toy(args)?;
        }
        if args.task != Task::Toy {
            concrete(args)?;
        }
        Ok(())
    })
}

/// The options no run can have, as messages.
fn check(args: &Args) -> Result<(), Error> {
    if args.batch_size == 0 || args.epochs == Some(0) || args.threads == Some(0) {
        return Err("--batch-size, --epochs and --threads must be at least 1".into());
    }
    if args.samples == 0 || args.splits == 0 {
        return Err("--samples and --splits must be at least 1".into());
    }
    if args.hidden.is_empty() || args.hidden.contains(&0) {
        return Err(format!("--hidden widths must be positive, got {:?}", args.hidden).into());
    }
    if !(args.lr > 0.0 && args.lr.is_finite()) {
        return Err(format!("--lr must be positive, got {}", args.lr).into());
    }
    Prior::normal(args.prior_std).map_err(|e| format!("--prior-std: {e}"))?;
    if !args.rho_init.is_finite() {
        return Err(format!("--rho-init must be finite, got {}", args.rho_init).into());
    }
    Ok(())
}

fn mode(args: &Args) -> Mode {
    match args.mode {
        ModeArg::Local => Mode::LocalReparam,
        ModeArg::Flipout => Mode::Flipout,
        ModeArg::Global => Mode::Global,
    }
}

/// A network and the log of its observation noise scale, `ln σ_y` (in standardized units):
/// a parameter, or a constant where the noise is known.
struct Regressor {
    net: BayesianMlp,
    log_noise: ParamId,
}

/// Column means and standard deviations of the training set, to standardize with.
struct Scaling {
    mean: Array1<f64>,
    std: Array1<f64>,
}

impl Scaling {
    fn of(x: &Array2<f64>) -> Self {
        let mean = x.mean_axis(Axis(0)).expect("a training set");
        // a constant column keeps its values (scale 1) rather than dividing by 0
        let std = x
            .std_axis(Axis(0), 0.0)
            .mapv(|s| if s > 0.0 { s } else { 1.0 });
        Scaling { mean, std }
    }

    fn apply(&self, x: &Array2<f64>) -> Array2<f32> {
        ((x - &self.mean) / &self.std).mapv(|v| v as f32)
    }
}

/// Fits a regressor to standardized `(x, y)` (`y` `[n, 1]`), showing progress on `bar`. With
/// `known_noise`, `σ_y` is fixed at that value (standardized); otherwise it is learned, from
/// 0.5.
fn fit(
    args: &Args,
    activation: Activation,
    (x, y): (&Array2<f32>, &Array2<f32>),
    known_noise: Option<f64>,
    epochs: usize,
    seed: u64,
    bar: &ProgressBar,
) -> Result<(Params<f32>, Regressor), Error> {
    let mut params = Params::<f32>::new();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut widths = vec![x.ncols()];
    widths.extend(&args.hidden);
    widths.push(1);
    let config = BayesianLinearConfig {
        prior: Prior::normal(args.prior_std)?,
        rho_init: args.rho_init,
        bias: true,
    };
    let net = BayesianMlp::new(&mut params, "net", &widths, activation, config, &mut rng)?;
    let log_noise = known_noise.unwrap_or(0.5).ln() as f32;
    let log_noise = params.insert("log_noise", ndarray::arr0(log_noise).into_dyn())?;
    if known_noise.is_some() {
        params.freeze(log_noise);
    }
    let model = Regressor { net, log_noise };
    let mut opt = Adam::new(AdamConfig {
        lr: args.lr,
        ..AdamConfig::default()
    })?;
    let n = x.nrows();
    let kl_weight = kl_scale::per_example(n)? as f32;
    let mut order: Vec<usize> = (0..n).collect();
    for epoch in 0..epochs {
        order.shuffle(&mut rng);
        for rows in order.chunks(args.batch_size) {
            let (xb, yb) = (x.select(Axis(0), rows), y.select(Axis(0), rows));
            let grads = {
                let tape = Tape::with_params(&params);
                let (f, kl) =
                    model
                        .net
                        .forward_with_kl(&tape, tape.constant(xb), mode(args), &mut rng)?;
                let log_s = tape.param(model.log_noise);
                // −ln N(y; f, σ²) = ½((y − f)/σ)² + ln σ + ½ ln 2π, the constant left out
                let z = (tape.constant(yb) - f) * (-log_s).exp();
                let nll = (z.square() * 0.5).mean() + log_s;
                let loss = nll + kl * kl_weight;
                if !loss.item().is_finite() {
                    return Err(format!(
                        "the loss became {} at epoch {epoch}; try a smaller --lr",
                        loss.item()
                    )
                    .into());
                }
                loss.backward()?
            };
            opt.step(&mut params, &grads);
        }
        bar.inc(1);
    }
    Ok((params, model))
}

/// `S` draws of the network's output for standardized `x`, and `σ_y`, both standardized.
fn predict(
    args: &Args,
    params: &Params<f32>,
    model: &Regressor,
    x: &Array2<f32>,
    mode: Mode,
    rng: &mut dyn Rng,
) -> Result<(Vec<Array2<f32>>, f64), Error> {
    let draws = model
        .net
        .sample_outputs(params, x, args.samples, mode, rng)?;
    let noise = f64::from(
        params
            .get(model.log_noise)
            .first()
            .copied()
            .expect("a scalar"),
    )
    .exp();
    Ok((draws, noise))
}

fn progress(terminal: bool, len: usize, what: String) -> ProgressBar {
    if !terminal {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} epochs {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what);
    bar
}

/// The activation of `--activation`, or `default`.
fn activation(args: &Args, default: Activation) -> Activation {
    match args.activation {
        Some(ActivationArg::Relu) => Activation::Relu,
        Some(ActivationArg::Tanh) => Activation::Tanh,
        None => default,
    }
}

/// The toy's observation noise scale, known to the model.
const NOISE: f64 = 0.05;

/// The toy: `y = sin(3x)/2 + x/4 + ε`, `ε ~ N(0, NOISE²)`, 40 inputs in each of `[−2, −1]`
/// and `[1, 2]`; the predictive band over `[−3.5, 3.5]`.
fn toy(args: &Args) -> Result<(), Error> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x70E);
    let truth = |x: f64| (3.0 * x).sin() / 2.0 + x / 4.0;
    let xs: Vec<f64> = (0..60)
        .map(|i| {
            let u: f64 = rng.random();
            if i < 30 { -2.5 + u } else { 1.5 + u }
        })
        .collect();
    let ys: Vec<f64> = xs
        .iter()
        .map(|&x| truth(x) + NOISE * rng.sample::<f64, _>(StandardNormal))
        .collect();
    let x = Array2::from_shape_vec((xs.len(), 1), xs.clone())?;
    let y = Array2::from_shape_vec((ys.len(), 1), ys.clone())?;
    let (sx, sy) = (Scaling::of(&x), Scaling::of(&y));
    let epochs = args.epochs.unwrap_or(2000);
    let bar = progress(std::io::stdout().is_terminal(), epochs, "toy".into());
    let known = Some(NOISE / sy.std[0]);
    let (params, model) = fit(
        args,
        activation(args, Activation::Tanh),
        (&sx.apply(&x), &sy.apply(&y)),
        known,
        epochs,
        args.seed,
        &bar,
    )?;
    bar.finish_and_clear();

    let grid: Vec<f64> = (0..=280).map(|i| -3.5 + 0.025 * f64::from(i)).collect();
    let g = sx.apply(&Array2::from_shape_vec((grid.len(), 1), grid.clone())?);
    let (draws, noise) = predict(args, &params, &model, &g, mode(args), &mut rng)?;
    let draws: Vec<_> = draws
        .into_iter()
        .map(|d| d.mapv(f64::from).into_dyn())
        .collect();
    let m = PredictiveMoments::from_samples(&draws)?;
    let (scale, shift) = (sy.std[0], sy.mean[0]);
    let mean: Vec<f64> = m.mean.iter().map(|v| v * scale + shift).collect();
    // the predictive standard deviation: the networks' spread and the noise, in y's units
    let std: Vec<f64> = m
        .variance
        .iter()
        .map(|v| (v + noise * noise).sqrt() * scale)
        .collect();

    let mut csv = String::from("x,mean,std,truth\n");
    for ((x, m), s) in grid.iter().zip(&mean).zip(&std) {
        writeln!(csv, "{x:.4},{m:.5},{s:.5},{:.5}", truth(*x))?;
    }
    stograd_nn::fs::write_atomic(&args.out.join("toy.csv"), |out| {
        out.write_all(csv.as_bytes())
    })?;
    let mut chart = Chart::new("Bayesian MLP on a toy with a gap: predictive mean ± 2σ")
        .x_label("x")
        .y_label("y")
        .y_range(-2.5, 2.5)
        .band(
            "mean ± 2σ",
            grid.iter()
                .zip(&mean)
                .zip(&std)
                .map(|((&x, &m), &s)| (x, m - 2.0 * s, m + 2.0 * s)),
        )
        .colored(stograd_nn::plot::Color(160, 190, 230));
    // a few whole functions from the posterior: one weight draw each (Global mode)
    let (functions, _) = predict(args, &params, &model, &g, Mode::Global, &mut rng)?;
    for (k, f) in functions.iter().take(4).enumerate() {
        let label = if k == 0 { "functions drawn from q" } else { "" };
        chart = chart
            .line(
                label,
                grid.iter()
                    .zip(f.iter())
                    .map(|(&x, &v)| (x, f64::from(v) * scale + shift)),
            )
            .colored(palette(7));
    }
    chart
        .line(
            "predictive mean",
            grid.iter().zip(&mean).map(|(&x, &m)| (x, m)),
        )
        .colored(palette(0))
        .line("truth", grid.iter().map(|&x| (x, truth(x))))
        .colored(palette(2))
        .points("data", xs.iter().zip(&ys).map(|(&x, &y)| (x, y)))
        .colored(palette(3))
        .save(args.out.join("toy.png"))?;
    let at = |x0: f64| std[grid.iter().position(|&x| x >= x0).expect("on the grid")];
    println!(
        "toy: predictive std {:.3} in the data (x = 2), {:.3} in the gap (x = 0), {:.3} beyond (x = 3.2); {:.1} s; wrote {}",
        at(2.0),
        at(0.0),
        at(3.2),
        started.elapsed().as_secs_f64(),
        args.out.join("toy.png").display()
    );
    Ok(())
}

/// Hernández-Lobato & Adams (2015), table 1, concrete: (RMSE, s.e., test LL, s.e.).
const VI: (f64, f64, f64, f64) = (7.13, 0.12, -3.39, 0.02);
const PBP: (f64, f64, f64, f64) = (5.67, 0.09, -3.16, 0.02);

/// Concrete on `--splits` random 90/10 splits: test RMSE and log-likelihood per split.
fn concrete(args: &Args) -> Result<(), Error> {
    let (x, y) = match &args.data {
        Some(path) => data::concrete_csv::<f64>(path)?,
        None => data::concrete::<f64>(),
    };
    let y = y.insert_axis(Axis(1));
    let n = x.nrows();
    let test_len = n / 10;
    let epochs = args.epochs.unwrap_or(400);
    let hidden: Vec<String> = args.hidden.iter().map(usize::to_string).collect();
    println!(
        "concrete: {n} mixtures, {} splits of {} to train and {test_len} to test; 8-{}-1, {epochs} epochs, {:?} mode",
        args.splits,
        n - test_len,
        hidden.join("-"),
        mode(args)
    );
    let terminal = std::io::stdout().is_terminal();
    let mut csv = String::from("split,test_rmse,test_log_likelihood,seconds\n");
    let (mut rmses, mut lls) = (Vec::new(), Vec::new());
    for split in 0..args.splits {
        let started = Instant::now();
        let mut rng = data::epoch_rng(args.seed ^ 0xC0C0, split as u64);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let (test_rows, train_rows) = order.split_at(test_len);
        let (xtr, ytr) = (x.select(Axis(0), train_rows), y.select(Axis(0), train_rows));
        let (xte, yte) = (x.select(Axis(0), test_rows), y.select(Axis(0), test_rows));
        let (sx, sy) = (Scaling::of(&xtr), Scaling::of(&ytr));
        let bar = progress(
            terminal,
            epochs,
            format!("split {}/{}", split + 1, args.splits),
        );
        let train = (&sx.apply(&xtr), &sy.apply(&ytr));
        let (params, model) = fit(
            args,
            activation(args, Activation::Relu),
            train,
            None,
            epochs,
            args.seed + split as u64,
            &bar,
        )?;
        bar.finish_and_clear();
        let (draws, noise) = predict(args, &params, &model, &sx.apply(&xte), mode(args), &mut rng)?;
        let (scale, shift) = (sy.std[0], sy.mean[0]);
        let noise = noise * scale;
        // per test point: the predictive mean and ln (1/S) Σₛ N(y; fₛ, σ_y²), in MPa
        let (mut squared, mut log_lik) = (0.0, 0.0);
        for (i, &target) in yte.column(0).iter().enumerate() {
            let f: Vec<f64> = draws
                .iter()
                .map(|d| f64::from(d[[i, 0]]) * scale + shift)
                .collect();
            let mean = f.iter().sum::<f64>() / f.len() as f64;
            squared += (mean - target).powi(2);
            let logs: Vec<f64> = f
                .iter()
                .map(|&fs| {
                    -0.5 * ((target - fs) / noise).powi(2)
                        - noise.ln()
                        - 0.5 * (2.0 * std::f64::consts::PI).ln()
                })
                .collect();
            let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            log_lik +=
                max + (logs.iter().map(|l| (l - max).exp()).sum::<f64>() / logs.len() as f64).ln();
        }
        let rmse = (squared / test_len as f64).sqrt();
        let ll = log_lik / test_len as f64;
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "split {:>2}/{}: test RMSE {rmse:.3}  test log-likelihood {ll:.3}  ({seconds:.1} s)",
            split + 1,
            args.splits
        );
        writeln!(csv, "{split},{rmse:.4},{ll:.4},{seconds:.2}")?;
        rmses.push(rmse);
        lls.push(ll);
        stograd_nn::fs::write_atomic(&args.out.join("concrete.csv"), |out| {
            out.write_all(csv.as_bytes())
        })?;
    }
    let (rmse, rmse_se) = mean_se(&rmses);
    let (ll, ll_se) = mean_se(&lls);
    let summary = format!(
        "mean ± s.e. over {} splits: test RMSE {rmse:.2} ± {rmse_se:.2}, test log-likelihood {ll:.2} ± {ll_se:.2}\n\
         Hernández-Lobato & Adams (2015), 20 splits: VI RMSE {:.2} ± {:.2}, LL {:.2} ± {:.2}; PBP RMSE {:.2} ± {:.2}, LL {:.2} ± {:.2}",
        args.splits, VI.0, VI.1, VI.2, VI.3, PBP.0, PBP.1, PBP.2, PBP.3
    );
    println!("{summary}");
    for line in summary.lines() {
        writeln!(csv, "# {line}")?;
    }
    stograd_nn::fs::write_atomic(&args.out.join("concrete.csv"), |out| {
        out.write_all(csv.as_bytes())
    })?;
    Ok(())
}

/// The mean and its standard error (sample standard deviation / √n; 0 for one value).
fn mean_se(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}
