//! The backward sweep: accumulation over repeated uses, non-scalar roots, repeatability,
//! intermediate roots, tape identity, f32 against f64, and anomaly detection.

use crate::common::{assert_close, c, cast, normal, panic_message, tol, var, widen};
use ndarray::{ArrayD, IxDyn, array};
use stograd::{Error, Params, Pass, Scalar, Tape, Var};

/// A gradient as `f64`, panicking if none reached `v`.
#[track_caller]
fn grad_of<F: Scalar>(grads: &stograd::Gradients<F>, v: Var<'_, F>) -> ArrayD<f64> {
    widen(grads.wrt(v).expect("a gradient reaches this value"))
}

// ---------------------------------------------------------------------------------------------
// Accumulation
// ---------------------------------------------------------------------------------------------

fn gradients_accumulate_over_uses<F: Scalar>() {
    let xs = [0.5, -1.5, 2.0];
    let tape = Tape::<F>::new();
    let x = var(&tape, &[3], &xs);
    // d/dx Σ (x·x + x) = 2x + 1
    let grads = (x * x + x).sum().backward().unwrap();
    let want = ArrayD::from_shape_vec(IxDyn(&[3]), xs.iter().map(|x| 2.0 * x + 1.0).collect());
    assert_close(&grad_of(&grads, x), &want.unwrap(), 0.0, tol::<F>());

    // x used in ten separate additions: d/dx Σ (x + x + … + x) = 10
    let mut y = x;
    for _ in 0..9 {
        y = y + x;
    }
    let grads = y.sum().backward().unwrap();
    assert_eq!(grad_of(&grads, x), array![10.0, 10.0, 10.0].into_dyn());

    // Uses through different ops: d/dx Σ (exp(x) · x) = exp(x)(1 + x)
    let grads = (x.exp() * x).sum().backward().unwrap();
    let want = ArrayD::from_shape_vec(
        IxDyn(&[3]),
        xs.iter().map(|x| x.exp() * (1.0 + x)).collect(),
    );
    assert_close(&grad_of(&grads, x), &want.unwrap(), 0.0, tol::<F>());
}

fn a_param_recorded_twice_sums_its_gradients<F: Scalar>() {
    let mut params = Params::<F>::new();
    let w = params
        .insert("w", cast::<F>(&array![1.0, -2.0, 3.0].into_dyn()))
        .unwrap();
    let b = params
        .insert("b", cast::<F>(&array![0.5].into_dyn()))
        .unwrap();
    let unused = params
        .insert("unused", cast::<F>(&array![1.0].into_dyn()))
        .unwrap();
    let tape = Tape::with_params(&params);
    let (w1, w2) = (tape.param(w), tape.param(w));
    let w3 = tape.param(w);
    let bv = tape.param(b);
    // L = Σ w·w + 3 Σ w + b: ∂L/∂w = 2w + 3 = [5, −1, 9], ∂L/∂b = 1
    let loss = (w1 * w2).sum() + (w3 * c::<F>(3.0)).sum() + bv.sum();
    let grads = loss.backward().unwrap();
    assert_eq!(
        widen(grads.param(w).unwrap()),
        array![5.0, -1.0, 9.0].into_dyn()
    );
    assert_eq!(widen(grads.param(b).unwrap()), array![1.0].into_dyn());
    // A parameter is recorded once per tape, however often it is asked for.
    let recorded = tape.len();
    let _ = tape.param(w);
    assert_eq!(tape.len(), recorded);
    assert_eq!(grad_of(&grads, w1), array![5.0, -1.0, 9.0].into_dyn());
    // A parameter never recorded has no gradient; `params()` lists exactly the two others.
    assert!(grads.param(unused).is_none());
    let listed: Vec<_> = grads.params().map(|(id, _)| id).collect();
    assert_eq!(listed, vec![w, b]);
}

fn frozen_parameters_get_no_gradient<F: Scalar>() {
    let mut params = Params::<F>::new();
    let w = params
        .insert("w", cast::<F>(&array![1.0, 2.0].into_dyn()))
        .unwrap();
    let b = params
        .insert("b", cast::<F>(&array![0.5].into_dyn()))
        .unwrap();
    params.freeze(b);
    let tape = Tape::with_params(&params);
    let loss = (tape.param(w) * tape.param(b)).sum();
    let grads = loss.backward().unwrap();
    assert_eq!(widen(grads.param(w).unwrap()), array![0.5, 0.5].into_dyn());
    assert!(grads.param(b).is_none());
    assert!(!tape.param(b).requires_grad());
}

fn gradients_accumulate_scale_and_clip<F: Scalar>() {
    let mut params = Params::<F>::new();
    let w = params
        .insert("w", cast::<F>(&array![3.0, -4.0].into_dyn()))
        .unwrap();
    let step = |x: f64| {
        let tape = Tape::with_params(&params);
        (tape.param(w) * c::<F>(x)).sum().backward().unwrap()
    };
    let mut total = step(1.0);
    total.accumulate(&step(2.0));
    assert_eq!(widen(total.param(w).unwrap()), array![3.0, 3.0].into_dyn());
    total.scale(c::<F>(0.5));
    assert_eq!(widen(total.param(w).unwrap()), array![1.5, 1.5].into_dyn());
    total.clip_value(c::<F>(1.0));
    assert_eq!(widen(total.param(w).unwrap()), array![1.0, 1.0].into_dyn());
    // ‖[1, 1]‖ = √2 is returned, and the gradient scaled to norm 1
    let norm = total.clip_norm(c::<F>(1.0));
    assert!((norm.as_f64() - 2f64.sqrt()).abs() < tol::<F>());
    assert!((total.global_norm().as_f64() - 1.0).abs() < tol::<F>());
}

for_each_float!(
    gradients_accumulate_over_uses,
    a_param_recorded_twice_sums_its_gradients,
    frozen_parameters_get_no_gradient,
    gradients_accumulate_scale_and_clip,
);

#[test]
fn parameters_update_in_place_once_the_tape_is_gone() {
    let mut params = Params::<f64>::new();
    let w = params.insert("w", ArrayD::zeros(IxDyn(&[1000]))).unwrap();
    let before = params.get(w).as_ptr();
    let grads = {
        let tape = Tape::with_params(&params);
        (tape.param(w) * 2.0).sum().backward().unwrap()
    };
    params.get_mut(w).scaled_add(-0.1, grads.param(w).unwrap());
    assert_eq!(
        params.get(w).as_ptr(),
        before,
        "the update copied the array"
    );
    assert_eq!(params.get(w)[0], -0.2);
}

#[test]
fn an_inference_tape_computes_values_and_records_no_graph() {
    let mut params = Params::<f64>::new();
    let w = params.insert("w", array![1.0, 2.0].into_dyn()).unwrap();
    let tape = Tape::inference(&params);
    let y = (tape.param(w) * tape.variable(array![3.0, 4.0])).sum();
    assert_eq!(y.item(), 11.0);
    assert!(!y.requires_grad() && !tape.records_graph());
    assert!(matches!(y.backward(), Err(Error::NoGraph)));
}

#[test]
fn an_unbound_tape_cannot_read_parameters() {
    let mut params = Params::<f64>::new();
    let w = params.insert("w", array![1.0].into_dyn()).unwrap();
    let message = panic_message(|| Tape::<f64>::new().param(w).len());
    assert!(message.contains("Tape::with_params"), "{message}");
    let other = Params::<f64>::new();
    let message = panic_message(|| Tape::with_params(&other).param(w).len());
    assert!(message.contains("not in the store"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// Roots
// ---------------------------------------------------------------------------------------------

fn backward_of_a_non_scalar_is_backward_of_its_sum<F: Scalar>() {
    let tape = Tape::<F>::new();
    let x = tape.variable(cast::<F>(&normal(&[2, 3], 1)));
    let w = tape.variable(cast::<F>(&normal(&[3, 4], 2)));
    let y = x.matmul(w).tanh().retain_grad();
    let g_direct = y.backward().unwrap();
    let g_sum = y.sum().backward().unwrap();
    // The seed is all ones in both cases, so the sweeps are identical.
    assert_eq!(g_direct.wrt(x).unwrap(), g_sum.wrt(x).unwrap());
    assert_eq!(g_direct.wrt(w).unwrap(), g_sum.wrt(w).unwrap());
    // d/dy Σ y = 1 for the non-scalar root itself.
    assert_eq!(
        widen(g_direct.wrt(y).unwrap()),
        ArrayD::ones(IxDyn(&[2, 4]))
    );
}

fn intermediate_gradients_are_freed_unless_retained<F: Scalar>() {
    let tape = Tape::<F>::new();
    let x = var(&tape, &[2], &[0.3, -0.7]);
    let h = x.exp();
    let grads = h.sum().backward().unwrap();
    let message = panic_message(|| grads.wrt(h).map(|g| g.len()));
    assert!(message.contains("retain_grad"), "{message}");
}

fn two_backward_passes_agree<F: Scalar>() {
    let tape = Tape::<F>::new();
    let x = tape.variable(cast::<F>(&normal(&[4, 3], 3)));
    let loss = x.softmax(1).log().mean() + x.square().sum();
    let first = loss.backward().unwrap();
    let second = loss.backward().unwrap();
    assert_eq!(first.wrt(x).unwrap(), second.wrt(x).unwrap());
    // Recording more after the first pass does not change what the root depends on.
    let _later = (x * x).exp();
    let third = loss.backward().unwrap();
    assert_eq!(first.wrt(x).unwrap(), third.wrt(x).unwrap());
}

fn backward_from_an_intermediate<F: Scalar>() {
    let xs = [0.3, -0.7];
    let tape = Tape::<F>::new();
    let x = var(&tape, &[2], &xs);
    // intermediates keep their gradients only when asked to
    let h = x.exp().retain_grad();
    let loss = (h * c::<F>(2.0)).sum().retain_grad();
    // From h: d/dx Σ eˣ = eˣ; the later loss lies after the root and gets nothing.
    let grads = h.backward().unwrap();
    let want = ArrayD::from_shape_vec(IxDyn(&[2]), xs.iter().map(|x| x.exp()).collect());
    assert_close(&grad_of(&grads, x), &want.unwrap(), 0.0, tol::<F>());
    assert!(grads.wrt(loss).is_none());
    // From the loss: 2eˣ, and ∂loss/∂h = 2.
    let grads = loss.backward().unwrap();
    let want = ArrayD::from_shape_vec(IxDyn(&[2]), xs.iter().map(|x| 2.0 * x.exp()).collect());
    assert_close(&grad_of(&grads, x), &want.unwrap(), 0.0, tol::<F>());
    assert_eq!(grad_of(&grads, h), array![2.0, 2.0].into_dyn());
}

fn constants_get_no_gradient<F: Scalar>() {
    let tape = Tape::<F>::new();
    let k = tape.constant(cast::<F>(&array![1.0, 2.0].into_dyn()));
    let x = var(&tape, &[2], &[3.0, 4.0]);
    let y = (k * x).sum();
    let grads = y.backward().unwrap();
    assert!(grads.wrt(k).is_none());
    assert_eq!(grad_of(&grads, x), array![1.0, 2.0].into_dyn());
    // A root no differentiable leaf feeds: backward succeeds with nothing to report.
    let grads = (k * k).sum().backward().unwrap();
    assert!(grads.wrt(k).is_none());
    assert!(!(k * k).requires_grad());
}

for_each_float!(
    backward_of_a_non_scalar_is_backward_of_its_sum,
    intermediate_gradients_are_freed_unless_retained,
    two_backward_passes_agree,
    backward_from_an_intermediate,
    constants_get_no_gradient,
);

#[test]
#[should_panic(expected = "different tape")]
fn wrt_a_var_of_another_tape_panics() {
    let (t1, t2) = (Tape::<f64>::new(), Tape::<f64>::new());
    let x = t1.variable(array![1.0]);
    let y = t2.variable(array![1.0]);
    let grads = (x * x).sum().backward().unwrap();
    let _ = grads.wrt(y);
}

// ---------------------------------------------------------------------------------------------
// f32 against f64
// ---------------------------------------------------------------------------------------------

/// The gradients of a small model (linear → tanh → log_softmax → picked log-probabilities,
/// plus a softplus penalty) in `F`, widened to `f64`, for each input.
fn model_gradients<F: Scalar>() -> Vec<ArrayD<f64>> {
    let tape = Tape::<F>::new();
    let x = tape.variable(cast::<F>(&normal(&[5, 4], 10)));
    let w = tape.variable(cast::<F>(&(normal(&[3, 4], 11) * 0.5)));
    let b = tape.variable(cast::<F>(&normal(&[3], 12)));
    let h = x.linear(w, Some(b)).tanh();
    let logp = h.log_softmax(1).gather(1, &array![[0], [2], [1], [1], [0]]);
    let loss = -logp.mean() + w.softplus().sum() * c::<F>(0.1);
    let grads = loss.backward().unwrap();
    [x, w, b].iter().map(|&v| grad_of(&grads, v)).collect()
}

#[test]
fn f32_gradients_agree_with_f64() {
    let single = model_gradients::<f32>();
    let double = model_gradients::<f64>();
    for (s, d) in single.iter().zip(&double) {
        // Each gradient element is a sum of a few O(1) terms with relative error ~ a few ulps
        // of f32 (ε = 1.2e-7), against an f64 reference exact to that precision.
        assert_close(s, d, 1e-5, 1e-4);
        assert!(
            s.iter().any(|&v| v != 0.0),
            "a gradient is identically zero"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Anomaly detection
// ---------------------------------------------------------------------------------------------

/// The error backward from `root` fails with. (`Gradients` is not `Debug`, so no
/// `unwrap_err`.)
#[track_caller]
fn backward_error<F: Scalar>(root: Var<'_, F>) -> Error {
    match root.backward() {
        Ok(_) => panic!("backward succeeded, an error was expected"),
        Err(err) => err,
    }
}

/// Unpacks an `Error::Anomaly`.
#[track_caller]
fn anomaly(err: Error) -> (&'static str, u32, &'static str, Pass, f64) {
    match err {
        Error::Anomaly {
            op,
            location,
            pass,
            value,
        } => (op, location.line(), location.file(), pass, value),
        other => panic!("expected Error::Anomaly, got {other:?}"),
    }
}

fn anomaly_names_the_first_forward_op<F: Scalar>() {
    let tape = Tape::<F>::new();
    tape.detect_anomaly(true);
    let x = var(&tape, &[2], &[1.0, -1.0]);
    let (y, line) = (x.log(), line!());
    // NaN propagates through exp and the product, but log produced it first.
    let z = y.exp() * x;
    let (op, at, file, pass, value) = anomaly(backward_error(z.sum()));
    assert_eq!((op, pass), ("log", Pass::Forward));
    assert_eq!(at, line);
    assert_eq!(file, file!());
    assert!(value.is_nan(), "ln(−1) is NaN, got {value}");
}

fn anomaly_in_the_backward_pass<F: Scalar>() {
    let tape = Tape::<F>::new();
    tape.detect_anomaly(true);
    let x = var(&tape, &[2], &[0.0, 4.0]);
    // sqrt(0) = 0 is finite, but d/dx √x = 1 / (2√x) is infinite at 0.
    let (y, line) = (x.sqrt(), line!());
    assert_eq!(widen(&y.value()), array![0.0, 2.0].into_dyn());
    let (op, at, _, pass, value) = anomaly(backward_error(y.sum()));
    assert_eq!((op, pass), ("sqrt", Pass::Backward));
    assert_eq!(at, line);
    assert_eq!(value, f64::INFINITY);
}

fn no_anomaly_error_when_detection_is_off<F: Scalar>() {
    let tape = Tape::<F>::new();
    let x = var(&tape, &[2], &[0.0, -1.0]);
    // Same computations as above, without detection: backward succeeds and lets the
    // non-finite values through. d/dx ln x = 1/x = [∞, −1]; d/dx √x = [∞, NaN].
    let grads = x.log().sum().backward().unwrap();
    assert_eq!(grad_of(&grads, x), array![f64::INFINITY, -1.0].into_dyn());
    let grads = x.sqrt().sum().backward().unwrap();
    let g = grad_of(&grads, x);
    assert!(g[0] == f64::INFINITY && g[1].is_nan(), "{g}");
}

fn anomaly_ignores_values_the_root_does_not_depend_on<F: Scalar>() {
    let tape = Tape::<F>::new();
    tape.detect_anomaly(true);
    let x = var(&tape, &[2], &[1.0, -1.0]);
    let _unrelated = x.log(); // NaN, but not an ancestor of the loss
    let loss = x.square().sum();
    let grads = loss.backward().unwrap();
    // d/dx Σ x² = 2x
    assert_eq!(grad_of(&grads, x), array![2.0, -2.0].into_dyn());
}

fn anomaly_reports_an_infinite_forward_value<F: Scalar>() {
    let tape = Tape::<F>::new();
    tape.detect_anomaly(true);
    let x = var(&tape, &[1], &[1.0]);
    // 1 / (x − 1) at x = 1 is 1 / (+0) = +∞ in the forward pass (infinity, not only NaN).
    let (y, line) = ((x - c::<F>(1.0)).recip(), line!());
    let (op, at, _, pass, value) = anomaly(backward_error(y.sum()));
    assert_eq!((op, pass, at), ("recip", Pass::Forward, line));
    assert_eq!(value, f64::INFINITY);
}

/// A non-finite value made inside a distribution's method is reported at the user's call of
/// that method, not at a line inside stograd.
fn anomaly_inside_a_distribution_names_the_users_call<F: Scalar>() {
    use stograd::dist::kl::kl_divergence;
    use stograd::dist::{Distribution, MultivariateNormal, Normal};
    let tape = Tape::<F>::new();
    tape.detect_anomaly(true);
    let mu = var(&tape, &[2], &[0.0, 1.0]);
    let q = Normal::new(mu, var(&tape, &[2], &[1.0, 2.0])).unwrap();
    // finite, but its square overflows
    let huge = if F::epsilon().as_f64() > 1e-10 {
        1e30
    } else {
        1e300
    };
    let x = var(&tape, &[2], &[huge, 0.0]);
    let (lp, line) = (q.log_prob(x), line!());
    let (op, at, file, _, _) = anomaly(backward_error(lp.sum()));
    assert_eq!((file, at), (file!(), line), "{op}");

    let eye = tape.constant(ndarray::Array2::<F>::eye(2).into_dyn());
    let mvn = MultivariateNormal::new(mu, eye).unwrap();
    let (lp, line) = (mvn.log_prob(x), line!());
    let (op, at, file, _, _) = anomaly(backward_error(lp.sum()));
    assert_eq!((file, at), (file!(), line), "{op}");

    // a pathwise draw that overflows: z = m + m·2 for half the largest float m
    let m = if F::epsilon().as_f64() > 1e-10 {
        1.7e38
    } else {
        8.9e307
    };
    let far = Normal::new(var(&tape, &[1], &[m]), var(&tape, &[1], &[m])).unwrap();
    let noise = tape.constant(array![c::<F>(2.0)].into_dyn());
    let (z, line) = (far.reparameterize(noise).unwrap(), line!());
    let (op, at, file, _, _) = anomaly(backward_error(z.sum()));
    assert_eq!((file, at), (file!(), line), "{op}");

    // a KL between distributions of which one has an infinite KL
    let p = Normal::new(var(&tape, &[1], &[0.0]), var(&tape, &[1], &[1e-30])).unwrap();
    let wide = Normal::new(var(&tape, &[1], &[huge]), var(&tape, &[1], &[1.0])).unwrap();
    let (kl, line) = (kl_divergence(&p, &wide).unwrap(), line!());
    let (op, at, file, _, _) = anomaly(backward_error(kl.sum()));
    assert_eq!((file, at), (file!(), line), "{op}");
    let _ = q.batch_shape();
}

for_each_float!(
    anomaly_names_the_first_forward_op,
    anomaly_inside_a_distribution_names_the_users_call,
    anomaly_in_the_backward_pass,
    no_anomaly_error_when_detection_is_off,
    anomaly_ignores_values_the_root_does_not_depend_on,
    anomaly_reports_an_infinite_forward_value,
);

#[test]
fn anomaly_error_message_names_op_pass_and_location() {
    let tape = Tape::<f64>::new();
    tape.detect_anomaly(true);
    let x = tape.variable(array![-2.0]);
    let (y, line) = (x.log(), line!());
    let message = backward_error(y.sum()).to_string();
    // "non-finite value NaN in the forward pass of `log` recorded at <file>:<line>:<col>"
    assert!(message.contains("`log`"), "{message}");
    assert!(message.contains("forward"), "{message}");
    assert!(
        message.contains(&format!("{}:{line}:", file!())),
        "{message}"
    );
}
