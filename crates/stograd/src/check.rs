//! Finite-difference gradient checking, public so users can check their own compositions.

use ndarray::{ArrayD, Dimension};

use crate::{Error, Params, Result, Scalar, Tape, Var};

/// How closely analytic and numeric gradients must agree, and the difference step.
///
/// An element passes when `|analytic − numeric| ≤ atol + rtol·|numeric|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance.
    pub rtol: f64,
    /// The central-difference step is `step · max(1, |x|)`.
    pub step: f64,
}

impl Tolerance {
    /// `Err` unless `atol` and `rtol` are finite and non-negative and `step` is finite and
    /// positive: a NaN tolerance would pass every comparison, and a wrong gradient with it.
    fn validate(self) -> Result<Self> {
        let bad = |name, constraint, value: f64| {
            Err(Error::InvalidArgument {
                name,
                constraint,
                value,
            })
        };
        if !(self.atol >= 0.0 && self.atol.is_finite()) {
            return bad("atol", "finite and non-negative", self.atol);
        }
        if !(self.rtol >= 0.0 && self.rtol.is_finite()) {
            return bad("rtol", "finite and non-negative", self.rtol);
        }
        if !(self.step > 0.0 && self.step.is_finite()) {
            return bad("step", "finite and positive", self.step);
        }
        Ok(self)
    }
}

impl Default for Tolerance {
    /// `atol = 1e-6`, `rtol = 1e-5`, `step = 1e-6`: central differences in `f64` are accurate
    /// to about `step² · |f'''| + ε·|f| / step ≈ 1e-10` relative on smooth functions of
    /// moderate size, leaving a wide margin.
    fn default() -> Self {
        Tolerance {
            atol: 1e-6,
            rtol: 1e-5,
            step: 1e-6,
        }
    }
}

/// What a passing [`gradcheck`] compared.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GradcheckReport {
    /// The number of input elements checked.
    pub elements: usize,
    /// The largest `|analytic − numeric|` seen.
    pub max_abs_err: f64,
    /// The largest `|analytic − numeric| / (atol + rtol·|numeric|)`: below 1 means a pass.
    pub worst_ratio: f64,
}

/// Compares the gradients backward computes for `f` with central finite differences, in `f64`.
///
/// `f` receives a fresh tape and one differentiable leaf per input. A non-scalar output is
/// reduced to `L = Σ wᵢ outᵢ` with fixed pseudo-random weights `wᵢ ∈ [0.5, 1.5]` of alternating
/// sign, so that gradients which cancel in a plain sum (softmax's, say) are still checked. Each
/// input element `x` is moved by `±h`, `h = tol.step · max(1, |x|)`, and
/// `(L(x + h) − L(x − h)) / 2h` is compared with the analytic `∂L/∂x`.
///
/// # Example
/// ```
/// use ndarray::array;
/// use stograd::check::{gradcheck, Tolerance};
///
/// let x = array![[0.3, -1.2], [2.0, 0.7]].into_dyn();
/// let report = gradcheck(|_, v| (v[0].tanh() * v[0]).sum(), &[x], Tolerance::default())?;
/// assert_eq!(report.elements, 4);
/// # Ok::<(), stograd::Error>(())
/// ```
///
/// # Errors
/// [`Error::GradientMismatch`] describing the worst element when any element fails;
/// [`Error::Anomaly`] if backward reports one; [`Error::InvalidArgument`] for a tolerance
/// that is NaN, infinite or negative (or a step that is not positive).
pub fn gradcheck<Fun>(f: Fun, inputs: &[ArrayD<f64>], tol: Tolerance) -> Result<GradcheckReport>
where
    Fun: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64>,
{
    let tol = tol.validate()?;
    let loss = |inputs: &[ArrayD<f64>]| -> f64 {
        let tape = Tape::new();
        let vars: Vec<_> = inputs.iter().map(|x| tape.constant(x.clone())).collect();
        weighted_sum(f(&tape, &vars)).item()
    };

    let tape = Tape::new();
    let vars: Vec<_> = inputs.iter().map(|x| tape.variable(x.clone())).collect();
    let grads = weighted_sum(f(&tape, &vars)).backward()?;

    let mut report = Report::default();
    let mut shifted = inputs.to_vec();
    for (input, var) in vars.iter().enumerate() {
        let zeros = ArrayD::zeros(inputs[input].raw_dim());
        let analytic = grads.wrt(*var).unwrap_or(&zeros);
        for (index, &x) in inputs[input].indexed_iter() {
            let h = tol.step * x.abs().max(1.0);
            shifted[input][&index] = x + h;
            let up = loss(&shifted);
            shifted[input][&index] = x - h;
            let down = loss(&shifted);
            shifted[input][&index] = x;
            report.compare(
                input,
                index.slice(),
                analytic[&index],
                (up - down) / (2.0 * h),
                tol,
            );
        }
    }
    report.finish()
}

/// [`gradcheck`] for the parameters of a model: compares the gradient of `f` with respect to
/// every element of every trainable parameter in `params` with central finite differences.
///
/// `f` builds the output on a tape bound to (a perturbed copy of) `params`; it must be
/// deterministic, so a stochastic layer draws its noise from a generator seeded inside `f`.
/// Frozen parameters are skipped.
///
/// # Example
/// ```
/// use ndarray::array;
/// use stograd::check::{gradcheck_params, Tolerance};
/// use stograd::Params;
///
/// let mut params = Params::<f64>::new();
/// let w = params.insert("w", array![[0.5, -1.0], [2.0, 0.3]].into_dyn())?;
/// let x = array![[1.0, 2.0]];
/// let report = gradcheck_params(&params, |tape| {
///     tape.constant(x.clone()).linear(tape.param(w), None).tanh()
/// }, Tolerance::default())?;
/// assert_eq!(report.elements, 4);
/// # Ok::<(), stograd::Error>(())
/// ```
///
/// # Errors
/// [`Error::GradientMismatch`] describing the worst element (its `input` is the parameter's
/// index in the store); [`Error::Anomaly`] if backward reports one; [`Error::InvalidArgument`]
/// for a tolerance that is NaN, infinite or negative (or a step that is not positive).
pub fn gradcheck_params<Fun>(
    params: &Params<f64>,
    f: Fun,
    tol: Tolerance,
) -> Result<GradcheckReport>
where
    Fun: for<'t> Fn(&'t Tape<'t, f64>) -> Var<'t, f64>,
{
    let tol = tol.validate()?;
    let loss = |p: &Params<f64>| -> f64 {
        let tape = Tape::inference(p);
        weighted_sum(f(&tape)).item()
    };
    let grads = {
        let tape = Tape::with_params(params);
        weighted_sum(f(&tape)).backward()?
    };
    let mut shifted = params.clone();
    let mut report = Report::default();
    for (id, _, value) in params.iter() {
        if params.is_frozen(id) {
            continue;
        }
        let zeros = ArrayD::zeros(value.raw_dim());
        let analytic = grads.param(id).unwrap_or(&zeros);
        for (index, &x) in value.indexed_iter() {
            let h = tol.step * x.abs().max(1.0);
            shifted.get_mut(id)[&index] = x + h;
            let up = loss(&shifted);
            shifted.get_mut(id)[&index] = x - h;
            let down = loss(&shifted);
            shifted.get_mut(id)[&index] = x;
            report.compare(
                id.index(),
                index.slice(),
                analytic[&index],
                (up - down) / (2.0 * h),
                tol,
            );
        }
    }
    report.finish()
}

/// The running comparison of analytic and numeric gradients.
#[derive(Default)]
struct Report {
    report: GradcheckReport,
    worst: Option<Error>,
}

impl Report {
    fn compare(
        &mut self,
        input: usize,
        index: &[usize],
        analytic: f64,
        numeric: f64,
        tol: Tolerance,
    ) {
        let abs_err = (analytic - numeric).abs();
        let allowed = tol.atol + tol.rtol * numeric.abs();
        // NaN on either side counts as the worst possible disagreement.
        let ratio = if abs_err.is_nan() {
            f64::INFINITY
        } else {
            abs_err / allowed
        };
        let r = &mut self.report;
        r.elements += 1;
        r.max_abs_err = r.max_abs_err.max(abs_err);
        if ratio > r.worst_ratio {
            r.worst_ratio = ratio;
            if ratio > 1.0 {
                self.worst = Some(Error::GradientMismatch {
                    input,
                    index: index.to_vec(),
                    analytic,
                    numeric,
                    abs_err,
                    allowed,
                });
            }
        }
    }

    fn finish(self) -> Result<GradcheckReport> {
        match self.worst {
            Some(err) => Err(err),
            None => Ok(self.report),
        }
    }
}

/// `Σ wᵢ outᵢ` with the fixed weights `gradcheck` documents.
fn weighted_sum<'t>(out: Var<'t, f64>) -> Var<'t, f64> {
    let shape = out.shape();
    let n: usize = shape.iter().product();
    // A Weyl sequence: deterministic, well spread over [0.5, 1.5), no two neighbours equal.
    let weights: Vec<f64> = (0..n)
        .map(|i| {
            let u = (i as f64 * 0.618_033_988_749_895 + 0.3).fract();
            let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
            sign * (0.5 + u)
        })
        .collect();
    let w = ArrayD::from_shape_vec(shape, weights).expect("one weight per element");
    (out * out.tape().constant(w)).sum()
}

/// The fraction of elements where a pathwise draw loses its perturbation to rounding:
/// `loc + scale·ε == loc` although `scale·ε ≠ 0`.
///
/// In floating point, `μ + σε` rounds back to `μ` when `|σε|` is below half a unit in the last
/// place of `μ`; the draw is then constant in `σ` and the pathwise gradient through it is
/// silently wrong. In `f32` this happens for `|σε/μ| ≲ 6e-8`. Compute in `f64`, or standardize
/// so `loc` is near 0, when this fraction is not 0.
///
/// The three arrays broadcast together.
///
/// # Example
/// ```
/// use ndarray::array;
/// use stograd::check::absorption;
///
/// let loc = array![1.0e4f32, 1.0];
/// let scale = array![1.0e-4f32, 1.0e-4];
/// let eps = array![0.3f32, 0.3];
/// // 1e4 + 3e-5 rounds to 1e4 in f32; 1 + 3e-5 does not
/// assert_eq!(absorption(&loc.into_dyn(), &scale.into_dyn(), &eps.into_dyn()), 0.5);
/// ```
///
/// # Panics
/// If the shapes do not broadcast together.
#[track_caller]
pub fn absorption<F: Scalar>(loc: &ArrayD<F>, scale: &ArrayD<F>, eps: &ArrayD<F>) -> f64 {
    let shape = crate::broadcast::broadcast_shape(loc.shape(), scale.shape())
        .and_then(|s| crate::broadcast::broadcast_shape(&s, eps.shape()))
        .unwrap_or_else(|| {
            panic!(
                "absorption: shapes {:?}, {:?} and {:?} do not broadcast together",
                loc.shape(),
                scale.shape(),
                eps.shape()
            )
        });
    let view = |a: &ArrayD<F>| a.broadcast(shape.as_slice()).expect("checked").to_owned();
    let (l, s, e) = (view(loc), view(scale), view(eps));
    let total = l.len();
    if total == 0 {
        return 0.0;
    }
    let lost = ndarray::Zip::from(&l)
        .and(&s)
        .and(&e)
        .fold(0usize, |n, &l, &s, &e| {
            n + usize::from(s * e != F::zero() && e.mul_add(s, l) == l)
        });
    lost as f64 / total as f64
}
