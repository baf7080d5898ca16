//! Several gradient estimators run on the same model with common random numbers: the
//! candidates, the replicates, and the flattening of a gradient into the vector they compare.
//!
//! An [`Estimator`] borrows the tape it is used on (a learned baseline is a `Var`), so it
//! cannot be built once and handed to every replicate. A [`Candidate`] is what outlives the
//! tapes: a label and a recipe that makes the estimator on whichever tape the model records.
//! Every estimator without a learned baseline is a fixed value ([`Candidate::new`]); a learned
//! baseline, like anything else that lives on the tape, comes from a function of the tape
//! ([`Candidate::from_fn`]).

use std::collections::HashSet;
use std::fmt;
use std::panic::Location;
use std::rc::Rc;
use std::time::Instant;

use ndarray::Array2;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::report::{Comparison, EstimatorReport};
use crate::{Error, Estimator, Gradients, Scalar, Tape, Var};

/// What the model's closure and the harness fail with: the engine's errors, stograd-nn's, or
/// the caller's own, boxed so that `?` works on all of them inside the closure.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The recipe of a candidate: its estimator on a given tape.
type Make<F> = dyn for<'t> Fn(&'t Tape<'t, F>) -> Estimator<'t, F>;

/// One estimator in a comparison: a label (unique within the comparison) and the estimator it
/// stands for, made afresh on every tape.
///
/// # Example
/// ```
/// use ndarray::Array1;
/// use stograd::diagnostics::Candidate;
/// use stograd::estimator::{Baseline, EmaBaseline};
/// use stograd::{Estimator, Tape};
///
/// let candidates = [
///     Candidate::new("pathwise", Estimator::Pathwise),
///     Candidate::new("gumbel τ=0.5", Estimator::GumbelSoftmax { temperature: 0.5, hard: false }),
///     // the state of a moving average is shared by every replicate, as by every training step
///     Candidate::new("reinforce, EMA", Estimator::ScoreFunction {
///         baseline: Baseline::Ema(EmaBaseline::new(0.9)?),
///     }),
///     // a learned baseline is a value on the tape (here a variable; in a model, a network's output)
///     Candidate::from_fn("reinforce, learned", |tape| Estimator::ScoreFunction {
///         baseline: Baseline::Learned(tape.variable(Array1::from_elem(8, 0.25))),
///     }),
/// ];
/// let tape = Tape::<f64>::new();
/// assert_eq!(candidates[3].estimator(&tape).name(), "ScoreFunction");
/// assert_eq!(candidates[1].label(), "gumbel τ=0.5");
/// # Ok::<(), stograd::Error>(())
/// ```
#[derive(Clone)]
pub struct Candidate<F: Scalar> {
    label: String,
    make: Rc<Make<F>>,
}

impl<F: Scalar> fmt::Debug for Candidate<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Candidate")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl<F: Scalar + 'static> Candidate<F> {
    /// A candidate that uses `estimator` on every tape: any estimator but a score function
    /// with a learned baseline. An [`Ema`](crate::estimator::Baseline::Ema) baseline keeps
    /// one state across all replicates of the candidate.
    pub fn new(label: impl Into<String>, estimator: Estimator<'static, F>) -> Self {
        Candidate::from_fn(label, move |_| estimator.clone())
    }

    /// A candidate whose estimator is made by `make` on each replicate's tape, for whatever
    /// lives on the tape: a learned baseline (a variable, or the output of a value network
    /// recorded on the same tape).
    pub fn from_fn(
        label: impl Into<String>,
        make: impl for<'t> Fn(&'t Tape<'t, F>) -> Estimator<'t, F> + 'static,
    ) -> Self {
        Candidate {
            label: label.into(),
            make: Rc::new(make),
        }
    }
}

impl<F: Scalar> Candidate<F> {
    /// The label the comparison's table shows.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The estimator, for a sample node on `tape`.
    pub fn estimator<'t>(&self, tape: &'t Tape<'t, F>) -> Estimator<'t, F> {
        (self.make)(tape)
    }
}

/// The seed of replicate `replicate` in a comparison seeded with `seed`: every candidate's
/// run of that replicate draws from `StdRng::seed_from_u64(replicate_seed(seed, replicate))`,
/// so a replicate can be rerun on its own.
///
/// It is SplitMix64 (Steele, Lea & Flood 2014): the state `seed + (replicate + 1)·γ`,
/// `γ = 0x9E3779B97F4A7C15`, through the generator's bijective finalizer, so distinct
/// replicates of one comparison never share a seed.
pub fn replicate_seed(seed: u64, replicate: usize) -> u64 {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut z = seed.wrapping_add((replicate as u64).wrapping_add(1).wrapping_mul(GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The gradients with respect to `vars`, flattened in order (row-major) into one `f64`
/// vector, with zeros for a var that no gradient reached: the vector [`compare`] compares.
///
/// # Panics
/// If a var is not a leaf and was not asked to keep its gradient
/// ([`Var::retain_grad`]); its zeros would be indistinguishable from a zero gradient.
#[track_caller]
pub fn flat_gradient<F: Scalar>(grads: &Gradients<F>, vars: &[Var<'_, F>]) -> Vec<f64> {
    let mut out = Vec::with_capacity(vars.iter().map(|v| v.len()).sum());
    for &v in vars {
        match grads.wrt(v) {
            Some(g) => out.extend(g.iter().map(|x| x.as_f64())),
            None => out.extend(std::iter::repeat_n(0.0, v.len())),
        }
    }
    out
}

/// Runs every candidate `replicates` times on the model `build` records and compares their
/// gradient estimates, against the exact gradient when `exact` is given.
///
/// `build(candidate, rng)` records the model on a tape of its own (bound to your parameters
/// or not), draws its sample nodes with `candidate.estimator(&tape)` and `rng`, and returns
/// one gradient estimate as a flat vector ([`flat_gradient`] makes it), the same length for
/// every candidate and replicate.
///
/// **Common random numbers**: replicate `r` of every candidate gets a generator seeded with
/// [`replicate_seed(seed, r)`](replicate_seed); the candidates run in turn within each
/// replicate, so their timings see the same machine. Estimators that consume the generator
/// alike (two baselines of one score function, two temperatures of one relaxation) then see
/// the same draws, and their differences are measured with less noise
/// ([`EstimatorReport::check_less_variance_than`] pairs the replicates).
///
/// Replicates are independent draws of the estimator, except that an EMA baseline's state
/// carries over from one replicate to the next, as from one training step to the next. The
/// baseline at replicate `r` depends only on earlier replicates, so the errors stay a
/// martingale-difference sequence: the mean is still unbiased and the standard errors hold.
///
/// # Example
/// ```
/// use ndarray::array;
/// use stograd::diagnostics::{Candidate, compare, flat_gradient};
/// use stograd::dist::Bernoulli;
/// use stograd::estimator::{Baseline, exact_expectation};
/// use stograd::{Estimator, Tape, Var};
///
/// // ∇ E[Σ (b − 0.45)²] with respect to the logits of three Bernoulli draws
/// fn cost(b: Var<'_, f64>) -> Var<'_, f64> {
///     (b - 0.45).square()
/// }
/// let theta = array![0.3, -0.2, 1.0];
/// let exact = {
///     let tape = Tape::new();
///     let logits = tape.variable(theta.clone());
///     let e = exact_expectation(&Bernoulli::from_logits(logits)?, cost, 64)?;
///     flat_gradient(&e.backward()?, &[logits])
/// };
/// let candidates = [
///     Candidate::new("reinforce", Estimator::score_function()),
///     Candidate::new("reinforce, b = 0.25", Estimator::ScoreFunction {
///         baseline: Baseline::Constant(0.25),
///     }),
///     Candidate::new("straight-through", Estimator::StraightThrough),
/// ];
/// let table = compare(&candidates, 2_000, 7, Some(&exact), |candidate, rng| {
///     let tape = Tape::new();
///     let logits = tape.variable(theta.clone());
///     let q = Bernoulli::from_logits(logits)?;
///     let b = tape.sample_with(&q, candidate.estimator(&tape), rng)?;
///     Ok(flat_gradient(&cost(b).backward()?, &[logits]))
/// })?;
/// println!("{table}"); // markdown, one row per estimator; `{table:#}` per coordinate
/// table["reinforce"].assert_unbiased(4.0);
/// table["reinforce, b = 0.25"].assert_less_variance_than(&table["reinforce"], 4.0);
/// assert!(table["straight-through"].check_unbiased(4.0).is_err()); // biased for a square
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
///
/// # Errors
/// [`Error::InvalidArgument`] without candidates or replicates, or with fewer than 2
/// estimates per candidate; [`Error::ShapeMismatch`] when an estimate's length differs from
/// the first one's or from `exact`'s; [`Error::NonFiniteEstimate`] naming the candidate, the
/// replicate, the coordinate and the value when an estimate is NaN or ±∞; the first error
/// `build` returns.
///
/// # Panics
/// If two candidates share a label.
#[track_caller]
pub fn compare<F, B>(
    candidates: &[Candidate<F>],
    replicates: usize,
    seed: u64,
    exact: Option<&[f64]>,
    mut build: B,
) -> Result<Comparison, BoxError>
where
    F: Scalar,
    B: FnMut(&Candidate<F>, &mut StdRng) -> Result<Vec<f64>, BoxError>,
{
    compare_rows(candidates, replicates, seed, exact, |candidate, rng| {
        let g = build(candidate, rng)?;
        Ok(Array2::from_shape_vec((1, g.len()), g).expect("one row"))
    })
}

/// [`compare`] for a model whose tape holds many independent estimates at once: `build`
/// returns a matrix whose rows are independent draws of the estimator (`[rows, coordinates]`),
/// so that one tape gives many estimates.
///
/// This is the batch trick of the engine's own tests: draw `rows` independent copies of the
/// model along the sample's leading axis, with per-row parameters (`[rows, …]`, not
/// broadcast), so that per-row credit gives each row its own single-draw gradient. The
/// variance reported is then that of one draw, and the time per estimate is the time of a call
/// divided by its rows.
///
/// # Example
/// ```
/// use ndarray::Array1;
/// use stograd::diagnostics::{Candidate, compare_rows};
/// use stograd::dist::Bernoulli;
/// use stograd::{Estimator, Tape};
///
/// // ∂/∂p E[(b − 0.45)²] = 0.55² − 0.45² = 0.1, from 10 tapes of 1,000 rows each
/// let candidates = [Candidate::new("reinforce", Estimator::score_function())];
/// let table = compare_rows(&candidates, 10, 3, Some(&[0.1]), |candidate, rng| {
///     let tape = Tape::new();
///     let probs = tape.variable(Array1::from_elem(1_000, 0.8));
///     let b = tape.sample_with(&Bernoulli::from_probs(probs)?, candidate.estimator(&tape), rng)?;
///     let g = (b - 0.45).square().backward()?;
///     Ok(g.wrt(probs).unwrap().clone().into_shape_with_order((1_000, 1))?) // [rows, 1]
/// })?;
/// assert_eq!(table["reinforce"].stats.runs, 10_000);
/// table["reinforce"].assert_unbiased(4.0);
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
///
/// # Errors
/// As [`compare`] (a non-finite value's error names its row too); an estimate with no rows is
/// a [`Error::ShapeMismatch`].
///
/// # Panics
/// If two candidates share a label.
#[track_caller]
pub fn compare_rows<F, B>(
    candidates: &[Candidate<F>],
    replicates: usize,
    seed: u64,
    exact: Option<&[f64]>,
    mut build: B,
) -> Result<Comparison, BoxError>
where
    F: Scalar,
    B: FnMut(&Candidate<F>, &mut StdRng) -> Result<Array2<f64>, BoxError>,
{
    check_labels(candidates, Location::caller());
    for (name, count) in [("candidates", candidates.len()), ("replicates", replicates)] {
        if count == 0 {
            return Err(Error::InvalidArgument {
                name,
                constraint: "at least 1",
                value: 0.0,
            }
            .into());
        }
    }
    let mut dim = exact.map(<[f64]>::len);
    // draws[candidate][coordinate][estimate]
    let mut draws: Vec<Vec<Vec<f64>>> = vec![Vec::new(); candidates.len()];
    let mut seconds = vec![0.0; candidates.len()];
    for replicate in 0..replicates {
        let replicate_seed = replicate_seed(seed, replicate);
        for (i, candidate) in candidates.iter().enumerate() {
            let mut rng = StdRng::seed_from_u64(replicate_seed);
            let started = Instant::now();
            let g = build(candidate, &mut rng)?;
            seconds[i] += started.elapsed().as_secs_f64();
            let expected = *dim.get_or_insert(g.ncols());
            if expected == 0 {
                return Err(Error::InvalidArgument {
                    name: "gradient length",
                    constraint: "at least 1",
                    value: 0.0,
                }
                .into());
            }
            if g.ncols() != expected || g.nrows() == 0 {
                let what = if exact.is_some() {
                    "gradient estimate (as long as the exact gradient)"
                } else {
                    "gradient estimate (as long as the first)"
                };
                return Err(Error::ShapeMismatch {
                    what,
                    expected: vec![g.nrows().max(1), expected],
                    got: g.shape().to_vec(),
                }
                .into());
            }
            for (row, values) in g.rows().into_iter().enumerate() {
                if let Some((coordinate, value)) = super::first_non_finite(values) {
                    return Err(Error::NonFiniteEstimate {
                        function: "compare",
                        candidate: Some(candidate.label.clone()),
                        run: replicate,
                        row: (g.nrows() > 1).then_some(row),
                        coordinate,
                        value,
                    }
                    .into());
                }
            }
            let columns = &mut draws[i];
            columns.resize_with(expected, Vec::new);
            for row in g.rows() {
                columns.iter_mut().zip(row).for_each(|(c, &v)| c.push(v));
            }
        }
    }
    // every candidate ran at least once and every estimate has a coordinate
    let estimates = draws.iter().map(|d| d[0].len()).min().unwrap_or(0);
    if estimates < 2 {
        return Err(Error::InvalidArgument {
            name: "estimates per candidate (replicates × rows)",
            constraint: "at least 2",
            value: estimates as f64,
        }
        .into());
    }
    // a coordinate with no spread must match the exact value to the rounding of a mean in F
    let rounding = 64.0 * F::epsilon().as_f64();
    let reports = candidates
        .iter()
        .zip(draws)
        .zip(seconds)
        .map(|((candidate, draws), seconds)| {
            let per_estimate = seconds / draws[0].len() as f64;
            EstimatorReport::from_draws(&candidate.label, &draws, exact, per_estimate, rounding)
        })
        .collect();
    Ok(Comparison {
        reports,
        replicates,
        seed,
    })
}

/// Panics, naming the caller, when two candidates share a label.
fn check_labels<F: Scalar>(candidates: &[Candidate<F>], caller: &Location<'_>) {
    let mut seen = HashSet::new();
    for c in candidates {
        assert!(
            seen.insert(c.label.as_str()),
            "compare: two candidates are labelled {:?}; labels name the rows of the table and \
             must differ (at {caller})",
            c.label
        );
    }
}
