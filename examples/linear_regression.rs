//! Linear regression on the diabetes data of Efron et al. (2004), fitted with stograd.
//!
//! 442 patients, 10 baseline variables (age, sex, body mass index, blood pressure, six serum
//! measurements), and a measure of disease progression one year later as the target. The CSV
//! is embedded in the binary (see `examples/data/README.md` for its source and licence), so
//!
//! ```text
//! cargo run --release --example linear_regression
//! cargo run --release --example linear_regression -- --optimizer gd --epochs 2000 --seed 7
//! ```
//!
//! runs with no download. The rows are split into train and test sets by a seeded shuffle;
//! features and target are standardized with the training set's mean and standard deviation;
//! the model `ŷ = x W + b` is fitted by full-batch Adam (or plain gradient descent) on the mean
//! squared error, one tape per epoch. At the end the fit is compared with the exact
//! least-squares solution, so you can see how close gradient descent got.

use std::fmt;
use std::process::ExitCode;
use std::str::FromStr;

use ndarray::{Array1, Array2, ArrayD, Axis, Zip, s};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use stograd::{Gradients, Params, Tape};

/// The data set, header included.
const DIABETES_CSV: &str = include_str!("data/diabetes.csv");
/// Its columns: ten features, then the target.
const COLUMNS: [&str; 11] = [
    "age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6", "target",
];
const FEATURES: usize = 10;
const ROWS: usize = 442;

const HELP: &str = "\
Linear regression on the diabetes data (Efron et al. 2004; 442 patients, 10 features),
fitted by full-batch gradient descent on a stograd tape. The data set is embedded.

Usage: cargo run --release --example linear_regression -- [OPTIONS]

Options:
      --epochs <N>         full-batch training steps [default: 500]
      --lr <RATE>          learning rate [default: 0.05 for adam, 0.1 for gd]
      --optimizer <NAME>   adam or gd (plain gradient descent) [default: adam]
      --seed <N>           seed of the train/test shuffle [default: 0]
      --test-fraction <F>  share of the rows held out for testing, in (0, 1) [default: 0.2]
      --log-every <N>      print the losses every N epochs [default: 50]
  -h, --help               print this help
";

/// What can stop the example: a bad command line, a malformed embedded file, or training
/// that diverged.
#[derive(Debug)]
enum Error {
    /// An option's value did not parse or is out of range.
    BadValue {
        flag: &'static str,
        value: String,
        expected: &'static str,
    },
    /// An option that takes a value came last.
    MissingValue(&'static str),
    /// An argument that is not an option of this program.
    UnknownArgument(String),
    /// The embedded CSV does not have the expected layout.
    Data { line: usize, reason: String },
    /// The loss stopped being finite.
    Diverged { epoch: usize, loss: f32, lr: f32 },
    /// The engine failed.
    Engine(stograd::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadValue {
                flag,
                value,
                expected,
            } => write!(f, "invalid value {value:?} for {flag}: expected {expected}"),
            Error::MissingValue(flag) => write!(f, "{flag} needs a value"),
            Error::UnknownArgument(arg) => write!(f, "unknown argument {arg:?}"),
            Error::Data { line, reason } => {
                write!(f, "embedded diabetes.csv, line {line}: {reason}")
            }
            Error::Diverged { epoch, loss, lr } => write!(
                f,
                "the training loss became {loss} at epoch {epoch}; \
                 the learning rate {lr} is too large, try a smaller --lr"
            ),
            Error::Engine(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<stograd::Error> for Error {
    fn from(e: stograd::Error) -> Self {
        Error::Engine(e)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Optimizer {
    Adam,
    GradientDescent,
}

#[derive(Debug)]
struct Args {
    epochs: usize,
    lr: f32,
    optimizer: Optimizer,
    seed: u64,
    test_fraction: f64,
    log_every: usize,
}

impl Args {
    /// Parses the options; `Ok(None)` means `--help` was asked for.
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, Error> {
        let mut epochs = 500;
        let mut lr = None;
        let mut optimizer = Optimizer::Adam;
        let mut seed = 0;
        let mut test_fraction = 0.2;
        let mut log_every = 50;

        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(None);
            }
            // Both `--flag value` and `--flag=value`.
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
                _ => (arg.as_str(), None),
            };
            let flag = match name {
                "--epochs" => "--epochs",
                "--lr" => "--lr",
                "--optimizer" => "--optimizer",
                "--seed" => "--seed",
                "--test-fraction" => "--test-fraction",
                "--log-every" => "--log-every",
                _ => return Err(Error::UnknownArgument(arg)),
            };
            let value = match inline {
                Some(value) => value,
                None => args.next().ok_or(Error::MissingValue(flag))?,
            };
            match flag {
                "--epochs" => {
                    epochs = parse_checked(flag, &value, "a positive integer", |&n| n > 0)?
                }
                "--lr" => {
                    lr = Some(parse_checked(
                        flag,
                        &value,
                        "a positive number",
                        |&x: &f32| x.is_finite() && x > 0.0,
                    )?)
                }
                "--optimizer" => {
                    optimizer = match value.as_str() {
                        "adam" => Optimizer::Adam,
                        "gd" => Optimizer::GradientDescent,
                        _ => return Err(bad_value(flag, &value, "adam or gd")),
                    }
                }
                "--seed" => seed = parse_checked(flag, &value, "an integer ≥ 0", |_| true)?,
                "--test-fraction" => {
                    test_fraction =
                        parse_checked(flag, &value, "a number strictly between 0 and 1", |&f| {
                            f > 0.0 && f < 1.0
                        })?
                }
                _ => log_every = parse_checked(flag, &value, "a positive integer", |&n| n > 0)?,
            }
        }
        let lr = lr.unwrap_or(match optimizer {
            Optimizer::Adam => 0.05,
            Optimizer::GradientDescent => 0.1,
        });
        Ok(Some(Args {
            epochs,
            lr,
            optimizer,
            seed,
            test_fraction,
            log_every,
        }))
    }
}

fn bad_value(flag: &'static str, value: &str, expected: &'static str) -> Error {
    Error::BadValue {
        flag,
        value: value.to_owned(),
        expected,
    }
}

/// Parses `value` and checks it with `valid`; either failure names the flag and the value.
fn parse_checked<T: FromStr>(
    flag: &'static str,
    value: &str,
    expected: &'static str,
    valid: impl Fn(&T) -> bool,
) -> Result<T, Error> {
    value
        .trim()
        .parse()
        .ok()
        .filter(valid)
        .ok_or_else(|| bad_value(flag, value, expected))
}

/// The embedded CSV as a feature matrix `[442, 10]` and a target vector `[442]`.
fn load_diabetes() -> Result<(Array2<f64>, Array1<f64>), Error> {
    let mut lines = DIABETES_CSV.lines().enumerate();
    let header = lines.next().map(|(_, h)| h.trim()).unwrap_or_default();
    if header != COLUMNS.join(",") {
        return Err(Error::Data {
            line: 1,
            reason: format!(
                "expected the header {:?}, found {header:?}",
                COLUMNS.join(",")
            ),
        });
    }
    let mut values = Vec::with_capacity(ROWS * COLUMNS.len());
    for (i, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != COLUMNS.len() {
            return Err(Error::Data {
                line: i + 1,
                reason: format!("expected {} fields, found {}", COLUMNS.len(), fields.len()),
            });
        }
        for (field, column) in fields.iter().zip(COLUMNS) {
            let v: f64 = field.trim().parse().map_err(|_| Error::Data {
                line: i + 1,
                reason: format!("{column} is {field:?}, not a number"),
            })?;
            values.push(v);
        }
    }
    let rows = values.len() / COLUMNS.len();
    if rows != ROWS {
        return Err(Error::Data {
            line: rows + 1,
            reason: format!("expected {ROWS} data rows, found {rows}"),
        });
    }
    let table = Array2::from_shape_vec((rows, COLUMNS.len()), values).expect("rows × columns");
    let x = table.slice(s![.., ..FEATURES]).to_owned();
    let y = table.column(FEATURES).to_owned();
    Ok((x, y))
}

/// Column means and (population) standard deviations of the training rows.
fn column_stats(x: &Array2<f64>) -> (Array1<f64>, Array1<f64>) {
    let mean = x.mean_axis(Axis(0)).expect("at least one row");
    let std = x
        .std_axis(Axis(0), 0.0)
        .mapv(|s| if s > 0.0 { s } else { 1.0 });
    (mean, std)
}

/// Adam (Kingma & Ba 2015) over every parameter of a store, with bias-corrected moments.
struct Adam {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    step: i32,
    m: Vec<ArrayD<f32>>,
    v: Vec<ArrayD<f32>>,
}

impl Adam {
    fn new(params: &Params<f32>, lr: f32) -> Adam {
        let zeros = || {
            params
                .iter()
                .map(|(_, _, p)| ArrayD::zeros(p.raw_dim()))
                .collect()
        };
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            m: zeros(),
            v: zeros(),
        }
    }

    fn update(&mut self, params: &mut Params<f32>, grads: &Gradients<f32>) {
        self.step += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let correction1 = 1.0 - b1.powi(self.step);
        let correction2 = 1.0 - b2.powi(self.step);
        let (lr, eps) = (self.lr, self.eps);
        for (id, g) in grads.params() {
            let (m, v) = (&mut self.m[id.index()], &mut self.v[id.index()]);
            Zip::from(params.get_mut(id))
                .and(m)
                .and(v)
                .and(g)
                .for_each(|p, m, v, &g| {
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    *p -= lr * (*m / correction1) / ((*v / correction2).sqrt() + eps);
                });
        }
    }
}

/// Mean squared error of `x W + b` against `y`, evaluated without a tape.
fn mse(x: &Array2<f32>, y: &Array2<f32>, w: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    let w = w
        .view()
        .into_dimensionality::<ndarray::Ix2>()
        .expect("W is [1, features]");
    let pred = x.dot(&w.t()) + b[0];
    (pred - y).mapv(|e| e * e).mean().expect("at least one row")
}

/// The exact least-squares fit of `y ≈ x β + c` (normal equations, Cholesky, in f64), as
/// `(β, c)`: what gradient descent converges to.
fn least_squares(x: &Array2<f64>, y: &Array1<f64>) -> (Array1<f64>, f64) {
    let (n, d) = x.dim();
    let mut a = Array2::<f64>::ones((n, d + 1));
    a.slice_mut(s![.., ..d]).assign(x);
    let mut l = a.t().dot(&a); // becomes its Cholesky factor, lower triangle
    let mut z = a.t().dot(y);
    for j in 0..=d {
        for k in 0..j {
            let ljk = l[[j, k]];
            for i in j..=d {
                l[[i, j]] -= l[[i, k]] * ljk;
            }
        }
        let pivot = l[[j, j]].sqrt();
        for i in j..=d {
            l[[i, j]] /= pivot;
        }
    }
    for i in 0..=d {
        // forward: L u = z
        z[i] = (z[i] - (0..i).map(|k| l[[i, k]] * z[k]).sum::<f64>()) / l[[i, i]];
    }
    for i in (0..=d).rev() {
        // back: Lᵀ β = u
        z[i] = (z[i] - (i + 1..=d).map(|k| l[[k, i]] * z[k]).sum::<f64>()) / l[[i, i]];
    }
    (z.slice(s![..d]).to_owned(), z[d])
}

fn run(args: &Args) -> Result<(), Error> {
    let (x, y) = load_diabetes()?;

    // A seeded shuffle splits the rows.
    let mut order: Vec<usize> = (0..x.nrows()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(args.seed));
    let n_test = ((x.nrows() as f64 * args.test_fraction).round() as usize).clamp(1, x.nrows() - 1);
    let (test_rows, train_rows) = order.split_at(n_test);

    // Standardize with the training rows' statistics only, so nothing leaks from the test set.
    let (x_mean, x_std) = column_stats(&x.select(Axis(0), train_rows));
    let y_train_raw = y.select(Axis(0), train_rows);
    let (y_mean, y_std) = (
        y_train_raw.mean().expect("train rows"),
        y_train_raw.std(0.0),
    );
    let standardize = |rows: &[usize]| {
        let xs = (x.select(Axis(0), rows) - &x_mean) / &x_std;
        let ys = (y.select(Axis(0), rows) - y_mean) / y_std;
        (xs, ys)
    };
    let (x_train64, y_train64) = standardize(train_rows);
    let (x_test64, y_test64) = standardize(test_rows);
    let column = |v: &Array1<f64>| v.mapv(|v| v as f32).insert_axis(Axis(1));
    let (x_train, y_train) = (x_train64.mapv(|v| v as f32), column(&y_train64));
    let (x_test, y_test) = (x_test64.mapv(|v| v as f32), column(&y_test64));

    println!(
        "diabetes: {} rows × {FEATURES} features; {} train, {} test (seed {}), \
         standardized with train statistics",
        x.nrows(),
        train_rows.len(),
        test_rows.len(),
        args.seed
    );
    println!(
        "model: y = x W + b, W [{FEATURES}, 1]; loss: mean squared error; \
         optimizer: {} (lr {}), {} epochs",
        match args.optimizer {
            Optimizer::Adam => "adam",
            Optimizer::GradientDescent => "gradient descent",
        },
        args.lr,
        args.epochs
    );
    println!("MSE is in standardized units: predicting the training mean scores about 1.\n");

    let mut params = Params::<f32>::new();
    let w = params.insert("linreg.weight", ArrayD::zeros(vec![1, FEATURES]))?;
    let b = params.insert("linreg.bias", ArrayD::zeros(vec![1]))?;
    let mut adam = Adam::new(&params, args.lr);

    println!("{:>7}  {:>10}  {:>10}", "epoch", "train MSE", "test MSE");
    for epoch in 1..=args.epochs {
        let tape = Tape::with_params(&params);
        let pred = tape
            .constant(x_train.clone())
            .linear(tape.param(w), Some(tape.param(b)));
        let loss = (pred - tape.constant(y_train.clone())).square().mean();
        let grads = loss.backward()?;
        let train_loss = loss.item();
        if !train_loss.is_finite() {
            return Err(Error::Diverged {
                epoch,
                loss: train_loss,
                lr: args.lr,
            });
        }
        if epoch == 1 || epoch % args.log_every == 0 || epoch == args.epochs {
            // The loss of the parameters this epoch started from, on both sets.
            let test_loss = mse(&x_test, &y_test, params.get(w), params.get(b));
            println!("{epoch:>7}  {train_loss:>10.5}  {test_loss:>10.5}");
        }
        drop(tape);
        match args.optimizer {
            Optimizer::Adam => adam.update(&mut params, &grads),
            Optimizer::GradientDescent => {
                for (id, g) in grads.params() {
                    params.get_mut(id).scaled_add(-args.lr, g);
                }
            }
        }
    }

    let (train_mse, test_mse) = (
        mse(&x_train, &y_train, params.get(w), params.get(b)),
        mse(&x_test, &y_test, params.get(w), params.get(b)),
    );
    let (beta, c) = least_squares(&x_train64, &y_train64);
    let exact = |x: &Array2<f64>, y: &Array1<f64>| {
        let r = x.dot(&beta) + c - y;
        r.dot(&r) / r.len() as f64
    };
    let (exact_train, exact_test) = (exact(&x_train64, &y_train64), exact(&x_test64, &y_test64));
    // R² on the test set, against the test set's own mean.
    let test_var = y_test64.var(0.0);

    println!("\nfinal, standardized units (exact least-squares fit in brackets):");
    println!("  train MSE {train_mse:.5}  [{exact_train:.5}]");
    println!("  test  MSE {test_mse:.5}  [{exact_test:.5}]");
    println!(
        "  test RMSE {:.1} in target units (the target ranges 25 to 346), test R² {:.3}",
        (f64::from(test_mse)).sqrt() * y_std,
        1.0 - f64::from(test_mse) / test_var
    );
    println!("\ncoefficients on standardized features (exact in brackets):");
    let weights = params.get(w);
    for (j, name) in COLUMNS[..FEATURES].iter().enumerate() {
        println!("  {name:>4} {:>+8.4}  [{:>+8.4}]", weights[[j, 0]], beta[j]);
    }
    println!("  bias {:>+8.4}  [{c:>+8.4}]", params.get(b)[0]);
    Ok(())
}

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\nRun with --help to see the options.");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
