//! A REINFORCE agent on CartPole, with the credit of each action found by the tape.
//!
//! ```text
//! cargo run --release --example reinforce                          # leave-one-out baseline
//! cargo run --release --example reinforce -- --baseline all        # the four baselines
//! cargo run --release --example reinforce -- --baseline learned --seed 3 --iterations 300
//! ```
//!
//! **The environment** is the cart-pole of Barto, Sutton & Anderson (1983), frictionless as in
//! Gym's `CartPole-v1`: a pole hinged on a cart, pushed left or right by 10 N each step,
//! integrated by Euler steps of 0.02 s. An episode starts from a state drawn uniformly in
//! ±0.05, ends when the pole leans more than 12° or the cart leaves ±2.4, and is cut at 500
//! steps; every step taken earns 1.
//!
//! **The policy** is a categorical distribution over the two pushes, with logits from a small
//! MLP of the state. A batch of `--episodes` episodes runs side by side, one per row: at step
//! `t` the tape holds the states `s_t` (`[E, 5]`: the four coordinates and a 0/1 flag for a
//! running episode), the logits, and a score-function draw `a_t ~ π(· | s_t)` (`[E]`). The
//! environment step is a tape op, [`CartPoleStep`](cartpole::CartPoleStep): it reads `s_t`
//! and `a_t` and returns `s_{t+1}` and the reward `r_t`. The loss is minus the mean return,
//! `−(1/E) Σ_e Σ_t r_{e,t}`.
//!
//! **Reward-to-go from the tape's edges.** Backward gives each draw `a_t` the part of the cost
//! that depends on it (docs/estimators.md, "How the score function credits a cost"): the
//! cost's terms are the environment steps (the first nodes below the sum that are not affine),
//! and the step at `t'` depends on `a_t` exactly when `t' ≥ t`, through the chain
//! `a_t → s_{t+1} → logits → a_{t+1} → …`. Every op on that chain keeps the rows (episodes)
//! apart, so row `e` of `a_t` is credited with row `e` alone:
//!
//! ```text
//! backward:  −(1/E) Σ_e Σ_t ∇θ log π(a_{e,t} | s_{e,t}) · (Σ_{t' ≥ t} r_{e,t'} − b_{e,t})
//! ```
//!
//! the reward-to-go estimator of `∇θ E[loss]`, with no bookkeeping of returns in this file:
//! rewards earned before `t` do not depend on `a_t`, so the tape leaves them out (they would
//! only add variance). The tests check this equality to rounding against a hand-written reward-to-go
//! gradient, and that the full-return gradient (`Σ_t r_{e,t}` for every step) differs.
//!
//! Once an episode has ended its row keeps running on the tape with reward 0; its logits are
//! multiplied by the running flag, so its later draws have a constant probability and add
//! nothing to the gradient.
//!
//! **Baselines** `b_{e,t}`, none depending on `a_{e,t}`, so none biases the gradient:
//! - `none`: 0;
//! - `ema`: one exponential moving average per step index `t` of that step's mean
//!   reward-to-go over the batch, across iterations (decay 0.9);
//! - `learned`: a value network `V(s_t, t/500)`, trained by the tape on its own regression
//!   loss `Σ (Q − b)²` alongside the policy (the time input lets it see the 500-step cut);
//! - `loo`: leave-one-out over the batch: the mean reward-to-go of the other episodes at the
//!   same step (Kool, van Hoof & Welling 2019).
//!
//! An episode that has ended counts with a reward-to-go of 0 in the batch means of `ema` and
//! `loo`: the engine's baselines average the draw's rows, and the rows of ended episodes are
//! still there.
//!
//! Each iteration prints the batch's mean return and the mean over the last 100 episodes; the
//! run reports the episode at which that mean first reaches 475 (Gym's threshold). The output
//! directory (`reinforce-out` unless `--out` says otherwise) gets `curve-<baseline>.csv` per
//! baseline, `summary.csv`, and `learning-curve.png` (the mean over the last 100 episodes).

mod agent;
mod cartpole;

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rayon::prelude::*;
use stograd::{Params, Tape};
use stograd_nn::optim::{Adam, AdamConfig, Optimizer};
use stograd_nn::plot::{self, Chart};

use agent::{Agent, rollout};
use cartpole::initial_states;

/// Train a REINFORCE agent on CartPole with a choice of baselines, writing the learning
/// curves as CSV.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// The baseline subtracted from each action's reward-to-go; `all` trains one agent per
    /// baseline, in parallel
    #[arg(long, value_enum, default_value_t = BaselineArg::Loo)]
    baseline: BaselineArg,
    /// Policy updates
    #[arg(long, default_value_t = 150)]
    iterations: usize,
    /// Episodes per update (the leave-one-out group)
    #[arg(long, default_value_t = 10)]
    episodes: usize,
    /// Adam's learning rate (policy and value network)
    #[arg(long, default_value_t = 1e-2)]
    lr: f64,
    /// Hidden widths of the policy and the value network, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "32")]
    hidden: Vec<usize>,
    /// Seeds the initial weights (the same for every baseline) and the episodes
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The output directory
    #[arg(long, default_value = "reinforce-out")]
    out: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BaselineArg {
    None,
    Ema,
    Learned,
    Loo,
    All,
}

impl BaselineArg {
    fn name(self) -> &'static str {
        match self {
            BaselineArg::None => "none",
            BaselineArg::Ema => "ema",
            BaselineArg::Learned => "learned",
            BaselineArg::Loo => "loo",
            BaselineArg::All => "all",
        }
    }
}

/// What `--baseline all` runs.
const BASELINES: [BaselineArg; 4] = [
    BaselineArg::None,
    BaselineArg::Ema,
    BaselineArg::Learned,
    BaselineArg::Loo,
];

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The mean return over the last [`WINDOW`] episodes that counts as solved.
const SOLVED: f64 = 475.0;
const WINDOW: usize = 100;

/// What a run reports.
struct Summary {
    baseline: BaselineArg,
    /// The episode (1-based) at which the mean of the last 100 returns first reached 475.
    solved_at: Option<usize>,
    /// The best mean of 100 consecutive returns (none before the 100th episode).
    best_window: Option<f64>,
    episodes: usize,
    seconds: f64,
    /// `(episodes so far, mean return over the last 100)` after each iteration.
    curve: Vec<(f64, f64)>,
}

/// Prints iteration lines: above the progress bars on a terminal, plainly otherwise.
struct Report {
    bars: Option<MultiProgress>,
}

impl Report {
    fn bar(&self, name: &str, iterations: usize) -> ProgressBar {
        let Some(bars) = &self.bars else {
            return ProgressBar::hidden();
        };
        let bar = bars.add(ProgressBar::new(iterations as u64));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(name.to_owned());
        bar
    }

    fn line(&self, line: &str) {
        match &self.bars {
            Some(bars) => bars.println(line).unwrap_or_else(|_| println!("{line}")),
            None => println!("{line}"),
        }
    }
}

/// The stream of episodes, apart from the stream of initial weights.
const EPISODES: u64 = 0x9E37_79B9_7F4A_7C15;

/// Trains one agent and writes its curve.
fn train(baseline: BaselineArg, args: &Args, report: &Report) -> Result<Summary, Error> {
    let started = Instant::now();
    let mut params = Params::new();
    let agent = Agent::new(
        &mut params,
        baseline,
        &args.hidden,
        &mut StdRng::seed_from_u64(args.seed),
    )?;
    let mut opt = Adam::new(AdamConfig {
        lr: args.lr,
        ..AdamConfig::default()
    })?;
    let mut rng = StdRng::seed_from_u64(args.seed ^ EPISODES);
    let name = baseline.name();
    let bar = report.bar(name, args.iterations);
    let mut csv =
        String::from("iteration,episodes,mean_return,min_return,max_return,last100_mean,seconds\n");
    let (mut all, mut curve) = (Vec::new(), Vec::new());
    let (mut solved_at, mut best_window) = (None, None::<f64>);
    for iteration in 1..=args.iterations {
        let (grads, returns) = {
            let tape = Tape::with_params(&params);
            let rollout = rollout(
                &tape,
                &agent,
                initial_states(args.episodes, &mut rng),
                &mut rng,
            )?;
            (rollout.loss.backward()?, rollout.returns.value())
        };
        opt.step(&mut params, &grads);
        for &r in &returns {
            all.push(r);
            if all.len() >= WINDOW {
                let window = all[all.len() - WINDOW..].iter().sum::<f64>() / WINDOW as f64;
                best_window = Some(best_window.map_or(window, |b| b.max(window)));
                if window >= SOLVED && solved_at.is_none() {
                    solved_at = Some(all.len());
                }
            }
        }
        let mean = returns.mean().expect("at least one episode");
        let min = returns.iter().copied().fold(f64::INFINITY, f64::min);
        let max = returns.iter().copied().fold(0.0, f64::max);
        let recent = &all[all.len().saturating_sub(WINDOW)..];
        let window = recent.iter().sum::<f64>() / recent.len() as f64;
        curve.push((all.len() as f64, window));
        let seconds = started.elapsed().as_secs_f64();
        writeln!(
            csv,
            "{iteration},{},{mean:.2},{min},{max},{window:.2},{seconds:.3}",
            all.len()
        )?;
        report.line(&format!(
            "{name:>8} iteration {iteration:>4}  episodes {:>5}  return {mean:>6.1} (min {min:>3}, max {max:>3})  last-{} mean {window:>6.1}",
            all.len(),
            recent.len()
        ));
        bar.set_message(format!("return {mean:.1}, last-100 mean {window:.1}"));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let path = args.out.join(format!("curve-{name}.csv"));
    stograd_nn::fs::write_atomic(&path, |out| out.write_all(csv.as_bytes()))?;
    Ok(Summary {
        baseline,
        solved_at,
        best_window,
        episodes: all.len(),
        seconds: started.elapsed().as_secs_f64(),
        curve,
    })
}

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
    let baselines = match args.baseline {
        BaselineArg::All => BASELINES.to_vec(),
        one => vec![one],
    };
    let hidden: Vec<String> = args.hidden.iter().map(usize::to_string).collect();
    println!(
        "REINFORCE on CartPole: policy 4-{}-2, {} iterations of {} episodes, Adam lr {}, seed {}, baseline {}; writing to {}",
        hidden.join("-"),
        args.iterations,
        args.episodes,
        args.lr,
        args.seed,
        args.baseline.name(),
        args.out.display()
    );
    let report = Report {
        bars: std::io::stdout().is_terminal().then(MultiProgress::new),
    };
    let summaries: Vec<Summary> = baselines
        .par_iter()
        .map(|&b| train(b, args, &report))
        .collect::<Result<_, _>>()?;
    let mut csv = String::from(
        "baseline,seed,iterations,episodes_per_iteration,lr,solved_at_episode,best_last100_mean,seconds\n",
    );
    for s in &summaries {
        let name = s.baseline.name();
        match s.solved_at {
            Some(n) => println!(
                "{name:>8}: the mean return over 100 episodes reached {SOLVED} at episode {n} ({:.1} s)",
                s.seconds
            ),
            None => println!(
                "{name:>8}: the mean return over 100 episodes never reached {SOLVED} in {} episodes ({}; {:.1} s)",
                s.episodes,
                s.best_window
                    .map_or("fewer than 100".into(), |b| format!("best {b:.1}")),
                s.seconds
            ),
        }
        writeln!(
            csv,
            "{name},{},{},{},{},{},{},{:.3}",
            args.seed,
            args.iterations,
            args.episodes,
            args.lr,
            s.solved_at.map_or(String::new(), |n| n.to_string()),
            s.best_window.map_or(String::new(), |b| format!("{b:.2}")),
            s.seconds
        )?;
    }
    let path = args.out.join("summary.csv");
    stograd_nn::fs::write_atomic(&path, |out| out.write_all(csv.as_bytes()))?;
    plot(&summaries, args)?;
    println!(
        "wrote {}, the curves (curve-<baseline>.csv) and learning-curve.png",
        path.display()
    );
    Ok(())
}

/// `learning-curve.png`: the mean return over the last 100 episodes against the episode,
/// one line per baseline (in the same colour whichever baselines ran), and the threshold.
fn plot(summaries: &[Summary], args: &Args) -> Result<(), Error> {
    let mut chart = Chart::new(format!(
        "CartPole, seed {}: mean of the last 100 returns",
        args.seed
    ))
    .x_label("episode")
    .y_label("return")
    // headroom above 500 for the legend
    .y_range(0.0, 700.0);
    for s in summaries {
        let colour = BASELINES
            .iter()
            .position(|&b| b == s.baseline)
            .expect("one of the baselines");
        chart = chart
            .line(s.baseline.name(), s.curve.iter().copied())
            .colored(plot::palette(colour));
    }
    let episodes = (args.iterations * args.episodes) as f64;
    chart = chart
        .line(format!("{SOLVED}"), [(0.0, SOLVED), (episodes, SOLVED)])
        .colored(plot::palette(7));
    chart.save(args.out.join("learning-curve.png"))?;
    Ok(())
}

/// The options no run can have, as messages.
fn check(args: &Args) -> Result<(), Error> {
    if args.iterations == 0 || args.episodes == 0 {
        return Err("--iterations and --episodes must be at least 1".into());
    }
    if args.episodes < 2 && matches!(args.baseline, BaselineArg::Loo | BaselineArg::All) {
        return Err(format!(
            "the leave-one-out baseline needs at least 2 --episodes per iteration, got {}",
            args.episodes
        )
        .into());
    }
    if !(args.lr > 0.0 && args.lr.is_finite()) {
        return Err(format!("--lr must be positive and finite, got {}", args.lr).into());
    }
    if args.hidden.is_empty() || args.hidden.contains(&0) {
        return Err(format!("--hidden widths must be positive, got {:?}", args.hidden).into());
    }
    Ok(())
}
