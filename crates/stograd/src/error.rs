//! The crate's error type. Every variant carries the values that made the call fail.

use std::fmt;
use std::panic::Location;

/// `Result` with [`enum@Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which pass of the tape produced a non-finite value (see [`Error::Anomaly`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// The op's forward value.
    Forward,
    /// The gradient the op's backward rule sent to one of its inputs.
    Backward,
}

impl fmt::Display for Pass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pass::Forward => "forward",
            Pass::Backward => "backward",
        })
    }
}

/// Everything in stograd that can fail on data or configuration.
///
/// Operator misuse (adding arrays of incompatible shapes, say) is a programming error and
/// panics instead, with both shapes and the caller's location.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter name is empty, has an empty segment or a character other than
    /// `[A-Za-z0-9_-]` in a segment. Names are dot-separated paths like `encoder.fc1.weight`.
    #[error("invalid parameter name {name:?}: {reason}")]
    InvalidParamName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A parameter with this name already exists.
    #[error("a parameter named {0:?} already exists")]
    DuplicateParam(String),

    /// No parameter has this name.
    #[error("no parameter named {0:?}")]
    UnknownParam(String),

    /// An array handed to a function does not have the shape it needs.
    #[error("{what}: expected shape {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// What the array is.
        what: &'static str,
        /// The shape required.
        expected: Vec<usize>,
        /// The shape received.
        got: Vec<usize>,
    },

    /// A flat buffer has the wrong number of elements for the requested shape.
    #[error("cannot view {len} elements as shape {shape:?} ({expected} elements)")]
    ElementCount {
        /// The requested shape.
        shape: Vec<usize>,
        /// Its number of elements.
        expected: usize,
        /// The number of elements supplied.
        len: usize,
    },

    /// With [`Tape::detect_anomaly`](crate::Tape::detect_anomaly) on, an op produced NaN or
    /// infinity.
    #[error("non-finite value {} in the {pass} pass of `{op}` recorded at {location}", Compact(*.value))]
    Anomaly {
        /// The op's name, e.g. `"log"`.
        op: &'static str,
        /// Where the op was recorded; for an op recorded inside a distribution's method
        /// (`log_prob`, `entropy`, a draw, a KL), the user's call of that method.
        location: &'static Location<'static>,
        /// Which pass produced the value.
        pass: Pass,
        /// The first non-finite value found.
        value: f64,
    },

    /// [`check::gradcheck`](crate::check::gradcheck) found an analytic gradient that disagrees
    /// with central finite differences. The fields describe the worst element.
    #[error(
        "gradient mismatch in input {input} at index {index:?}: analytic {analytic:e}, \
         finite-difference {numeric:e} (|diff| {abs_err:e} > allowed {allowed:e})"
    )]
    GradientMismatch {
        /// Which input of the checked function.
        input: usize,
        /// The element's multi-index in that input.
        index: Vec<usize>,
        /// The gradient from backward.
        analytic: f64,
        /// The central-difference estimate.
        numeric: f64,
        /// `|analytic − numeric|`.
        abs_err: f64,
        /// `atol + rtol·|numeric|`.
        allowed: f64,
    },

    /// A matrix handed to [`Var::cholesky`](crate::Var::cholesky) (or a constructor that
    /// factors a covariance) is not positive definite.
    #[error(
        "matrix {matrix} of the batch is not positive definite: pivot {} in column {column}",
        Compact(*.pivot)
    )]
    NotPositiveDefinite {
        /// The matrix's index in the batch (0 for a single matrix).
        matrix: usize,
        /// The column whose pivot was not positive.
        column: usize,
        /// The offending pivot, `A_jj − Σ_k L_jk²`.
        pivot: f64,
    },

    /// A distribution parameter breaks its constraint (a non-positive scale, a probability
    /// outside `[0, 1]`, a non-finite location, …).
    #[error("{distribution}: {param} must be {constraint}, got {} at index {index:?}", Compact(*.value))]
    InvalidParameter {
        /// The distribution, e.g. `"Normal"`.
        distribution: &'static str,
        /// The parameter, e.g. `"scale"`.
        param: &'static str,
        /// The rule it breaks, e.g. `"positive and finite"`.
        constraint: &'static str,
        /// The first offending value.
        value: f64,
        /// Its index in the parameter's array.
        index: Vec<usize>,
    },

    /// Two parameters (or a parameter and a value) have shapes that do not fit together.
    #[error("{distribution}: {what} have incompatible shapes {left:?} and {right:?}")]
    IncompatibleShapes {
        /// The distribution or function.
        distribution: &'static str,
        /// Which arrays, e.g. `"loc and scale"`.
        what: &'static str,
        /// The first shape.
        left: Vec<usize>,
        /// The second shape.
        right: Vec<usize>,
    },

    /// The distribution has no reparameterized (pathwise) sampler.
    #[error(
        "{distribution} has no pathwise (reparameterized) estimator; use a score-function, \
         straight-through or Gumbel-softmax estimator"
    )]
    NoPathwise {
        /// The distribution.
        distribution: &'static str,
    },

    /// Backward was asked of an inference tape, which records no graph.
    #[error(
        "backward on an inference tape, which records no graph; record the step on \
         Tape::with_params(&params) to differentiate it"
    )]
    NoGraph,

    /// Backward was asked of a tape whose intermediate values an earlier
    /// [`Var::backward_and_free`](crate::Var::backward_and_free) released.
    #[error(
        "backward on a tape whose values backward_and_free released; record the step on a new \
         tape, or use backward, which keeps them, when one tape is differentiated twice"
    )]
    ValuesFreed,

    /// A surrogate was used inside a non-linear op, where it estimates no gradient.
    #[error(
        "the surrogate taken at {surrogate} is used inside `{op}` (recorded at {location}), \
         which is not linear in it: a surrogate can only be added, subtracted or scaled by \
         values no draw depends on; take one surrogate of the whole cost instead"
    )]
    SurrogateNotLinear {
        /// The non-linear op.
        op: &'static str,
        /// Where the op was recorded.
        location: &'static Location<'static>,
        /// Where the surrogate was taken.
        surrogate: &'static Location<'static>,
    },

    /// The estimator cannot be used with this distribution or input.
    #[error("{estimator} cannot be used with {distribution}: {reason}")]
    UnsupportedEstimator {
        /// The estimator, e.g. `"Antithetic"`.
        estimator: &'static str,
        /// The distribution.
        distribution: &'static str,
        /// Why not.
        reason: String,
    },

    /// A quantity (mean, variance, entropy) that does not exist or has no closed form for the
    /// distribution.
    #[error("{distribution} has no {quantity}: {reason}")]
    Undefined {
        /// The distribution.
        distribution: &'static str,
        /// `"mean"`, `"variance"` or `"entropy"`.
        quantity: &'static str,
        /// Why, e.g. `"the integral diverges"`.
        reason: &'static str,
    },

    /// No analytic KL divergence is registered for the pair; use
    /// [`kl::monte_carlo`](crate::dist::kl::monte_carlo) explicitly.
    #[error("no closed-form KL({p} ‖ {q}); call dist::kl::monte_carlo for a sampled estimate")]
    NoClosedFormKl {
        /// The first distribution.
        p: &'static str,
        /// The second distribution.
        q: &'static str,
    },

    /// The two distributions of a KL divergence differ in batch or event shape.
    #[error("KL({p} ‖ {q}): shapes differ, {p_shape:?} against {q_shape:?}")]
    KlShapeMismatch {
        /// The first distribution.
        p: &'static str,
        /// The second distribution.
        q: &'static str,
        /// The first's batch shape followed by its event shape.
        p_shape: Vec<usize>,
        /// The second's batch shape followed by its event shape.
        q_shape: Vec<usize>,
    },

    /// A gradient estimate handed to a diagnostic ([`gradient_stats`](crate::diagnostics::gradient_stats),
    /// [`compare`](crate::diagnostics::compare)) is NaN or infinite, which would make its mean,
    /// variance and tail check meaningless (one NaN draw hides an infinite variance).
    #[error(
        "{function}: {} returned {} at coordinate {coordinate}; the mean, variance and tail \
         index of a non-finite estimate mean nothing",
        estimate_name(candidate.as_deref(), *run, *row),
        Compact(*.value)
    )]
    NonFiniteEstimate {
        /// The diagnostic, e.g. `"gradient_stats"`.
        function: &'static str,
        /// The candidate's label, in a comparison.
        candidate: Option<String>,
        /// The run (for `gradient_stats`) or replicate (for a comparison), from 0.
        run: usize,
        /// The row of the estimate matrix of [`compare_rows`](crate::diagnostics::compare_rows)
        /// (`None` for one estimate per run).
        row: Option<usize>,
        /// The coordinate of the flat gradient.
        coordinate: usize,
        /// The value, NaN or ±∞.
        value: f64,
    },

    /// A numeric argument is outside the range it must lie in.
    #[error("{name} must be {constraint}, got {}", Compact(*.value))]
    InvalidArgument {
        /// The argument's name.
        name: &'static str,
        /// The rule it breaks, e.g. `"positive and finite"`.
        constraint: &'static str,
        /// The value received.
        value: f64,
    },
}

/// `run 3`, `candidate "reinforce", replicate 3` or `…, replicate 3, row 5`.
fn estimate_name(candidate: Option<&str>, run: usize, row: Option<usize>) -> String {
    let mut s = match candidate {
        Some(label) => format!("candidate {label:?}, replicate {run}"),
        None => format!("run {run}"),
    };
    if let Some(row) = row {
        s += &format!(", row {row}");
    }
    s
}

/// A number as a message shows it: plain decimals between 10⁻⁴ and 10¹⁵ in magnitude,
/// scientific notation outside (Rust's `Display` writes 10⁻³⁰⁰ as 300 zeros and a 1).
pub(crate) struct Compact(pub(crate) f64);

impl fmt::Display for Compact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v == 0.0 || !v.is_finite() || (1e-4..1e15).contains(&v.abs()) {
            write!(f, "{v}")
        } else {
            write!(f, "{v:e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Compact;

    #[test]
    fn numbers_print_compactly() {
        for (v, want) in [
            (1e-300, "1e-300"),
            (-2.5e-9, "-2.5e-9"),
            (0.5, "0.5"),
            (123.25, "123.25"),
            (3e20, "3e20"),
            (0.0, "0"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(Compact(v).to_string(), want);
        }
    }
}
