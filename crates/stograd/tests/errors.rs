//! Every public fallible function returns its named error (not a panic), and operator misuse
//! panics with both shapes and the caller's location.

use crate::common::{panic_message, uniform};
use ndarray::{ArrayD, IxDyn, array};
use stograd::check::{Tolerance, gradcheck};
use stograd::{Error, Params, Tape, Var};

fn zeros(shape: &[usize]) -> ArrayD<f64> {
    ArrayD::zeros(IxDyn(shape))
}

// ---------------------------------------------------------------------------------------------
// Params
// ---------------------------------------------------------------------------------------------

#[test]
fn insert_rejects_malformed_names() {
    let mut params = Params::<f64>::new();
    for bad in ["", "a..b", "a b", ".a", "a.", "w/1", "é"] {
        match params.insert(bad, zeros(&[2])) {
            Err(Error::InvalidParamName { name, reason }) => {
                assert_eq!(name, bad);
                assert!(!reason.is_empty());
            }
            other => panic!("{bad:?}: expected InvalidParamName, got {other:?}"),
        }
    }
    assert!(params.is_empty(), "a rejected name must not be stored");
    // The accepted alphabet: letters, digits, '_' and '-', dot-separated.
    for good in ["w", "encoder.fc1.weight", "a_b-2.c"] {
        params.insert(good, zeros(&[1])).unwrap();
    }
    assert_eq!(params.len(), 3);
}

#[test]
fn insert_rejects_a_duplicate_name() {
    let mut params = Params::<f64>::new();
    let w = params
        .insert("layer.w", array![1.0, 2.0].into_dyn())
        .unwrap();
    match params.insert("layer.w", zeros(&[3])) {
        Err(Error::DuplicateParam(name)) => assert_eq!(name, "layer.w"),
        other => panic!("expected DuplicateParam, got {other:?}"),
    }
    // The first value is untouched.
    assert_eq!(params.len(), 1);
    assert_eq!(params.get(w), &array![1.0, 2.0].into_dyn());
}

#[test]
fn id_of_an_unknown_name() {
    let mut params = Params::<f32>::new();
    let w = params.insert("enc.w", ArrayD::zeros(IxDyn(&[1]))).unwrap();
    assert_eq!(params.id("enc.w").unwrap(), w);
    match params.id("enc.b") {
        Err(Error::UnknownParam(name)) => assert_eq!(name, "enc.b"),
        other => panic!("expected UnknownParam, got {other:?}"),
    }
    // A prefix of a name is not the name.
    assert!(matches!(params.id("enc"), Err(Error::UnknownParam(_))));
}

#[test]
fn set_with_the_wrong_shape() {
    let mut params = Params::<f64>::new();
    let w = params.insert("w", zeros(&[2, 3])).unwrap();
    match params.set(w, zeros(&[3, 2])) {
        Err(Error::ShapeMismatch { expected, got, .. }) => {
            assert_eq!(expected, vec![2, 3]);
            assert_eq!(got, vec![3, 2]);
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    assert_eq!(params.get(w), &zeros(&[2, 3]));
    // The right shape is accepted.
    params.set(w, ArrayD::ones(IxDyn(&[2, 3]))).unwrap();
    assert_eq!(params.get(w), &ArrayD::ones(IxDyn(&[2, 3])));
}

#[test]
fn error_messages_name_the_bad_value() {
    let mut params = Params::<f64>::new();
    let err = params.insert("a..b", zeros(&[1])).unwrap_err();
    assert!(err.to_string().contains("\"a..b\""), "{err}");
    let err = params.id("missing.w").unwrap_err();
    assert!(err.to_string().contains("missing.w"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// gradcheck
// ---------------------------------------------------------------------------------------------

#[test]
fn gradcheck_reports_a_wrong_gradient_at_its_worst_element() {
    // f(a, b) = Σ sin(a) + Σ wᵢ bᵢ · stop(bᵢ): backward gives wᵢ bᵢ for b, while the true
    // derivative is 2 wᵢ bᵢ, so the error |wᵢ bᵢ| is largest where |bᵢ| is (the weights
    // gradcheck applies lie in [0.5, 1.5], so |b₁| = 4 dominates every other element).
    let a = uniform(&[2], -1.0, 1.0, 1);
    let b = array![0.1, -4.0, 0.3].into_dyn();
    let err = gradcheck(
        |_, v| v[0].sin().sum() + v[1] * v[1].detach(),
        &[a, b],
        Tolerance::default(),
    )
    .unwrap_err();
    match err {
        Error::GradientMismatch {
            input,
            index,
            analytic,
            numeric,
            abs_err,
            allowed,
        } => {
            assert_eq!(input, 1);
            assert_eq!(index, vec![1]);
            // numeric = 2 · analytic, so |diff| = |analytic|
            assert!(
                (numeric - 2.0 * analytic).abs() < 1e-6,
                "{analytic} {numeric}"
            );
            assert!(analytic.abs() >= 0.5 * 4.0 && analytic.abs() <= 1.5 * 4.0);
            assert!((abs_err - analytic.abs()).abs() < 1e-6);
            assert!(abs_err > allowed);
        }
        other => panic!("expected GradientMismatch, got {other:?}"),
    }
}

#[test]
fn gradcheck_passes_the_correct_version_of_the_same_function() {
    // The control for the test above: without detach the gradient is right.
    let a = uniform(&[2], -1.0, 1.0, 1);
    let b = array![0.1, -4.0, 0.3].into_dyn();
    let report = gradcheck(
        |_, v| v[0].sin().sum() + v[1] * v[1],
        &[a, b],
        Tolerance::default(),
    )
    .unwrap();
    assert_eq!(report.elements, 5);
    assert!(report.worst_ratio < 1.0);
}

// ---------------------------------------------------------------------------------------------
// Operator misuse panics with both shapes and the caller's location
// ---------------------------------------------------------------------------------------------

/// Asserts the message names the location `file!():line` and contains every `part`.
#[track_caller]
fn assert_names(message: &str, line: u32, parts: &[&str]) {
    let here = format!("{}:{line}:", file!());
    assert!(message.contains(&here), "no location {here} in: {message}");
    for part in parts {
        assert!(message.contains(part), "no {part:?} in: {message}");
    }
}

#[test]
fn add_with_incompatible_shapes() {
    let tape = Tape::<f64>::new();
    let (a, b) = (tape.constant(zeros(&[2, 3])), tape.constant(zeros(&[4])));
    let (msg, line) = (panic_message(|| a + b), line!());
    assert_names(&msg, line, &["[2, 3]", "[4]"]);
    let (msg, line) = (panic_message(|| b * a), line!());
    assert_names(&msg, line, &["[2, 3]", "[4]"]);
    let (msg, line) = (panic_message(|| a / b), line!());
    assert_names(&msg, line, &["[2, 3]", "[4]"]);
}

#[test]
fn matmul_with_mismatched_inner_dims() {
    let tape = Tape::<f64>::new();
    let (a, b) = (tape.constant(zeros(&[2, 3])), tape.constant(zeros(&[4, 2])));
    let (msg, line) = (panic_message(|| a.matmul(b)), line!());
    assert_names(&msg, line, &["[2, 3]", "[4, 2]"]);
    // Batched products with different batch lengths.
    let (c, d) = (
        tape.constant(zeros(&[2, 2, 3])),
        tape.constant(zeros(&[3, 3, 2])),
    );
    let (msg, line) = (panic_message(|| c.matmul(d)), line!());
    assert_names(&msg, line, &["[2, 2, 3]", "[3, 3, 2]"]);
}

#[test]
fn reshape_with_the_wrong_count() {
    let tape = Tape::<f64>::new();
    let a = tape.constant(zeros(&[2, 3]));
    let (msg, line) = (panic_message(|| a.reshape(&[4])), line!());
    assert_names(&msg, line, &["[2, 3]", "[4]"]);
}

#[test]
fn axis_out_of_range() {
    let tape = Tape::<f64>::new();
    let a = tape.constant(zeros(&[2, 3]));
    let (msg, line) = (panic_message(|| a.sum_axis(2)), line!());
    assert_names(&msg, line, &["[2, 3]", "axis 2"]);
    let (msg, line) = (panic_message(|| a.mean_axis(5)), line!());
    assert_names(&msg, line, &["[2, 3]", "axis 5"]);
    let (msg, line) = (panic_message(|| a.softmax(2)), line!());
    assert_names(&msg, line, &["[2, 3]", "axis 2"]);
    let (msg, line) = (panic_message(|| a.slice(3, 0..1)), line!());
    assert_names(&msg, line, &["[2, 3]", "axis 3"]);
    let (msg, line) = (panic_message(|| a.unsqueeze(3)), line!());
    assert_names(&msg, line, &["[2, 3]", "axis 3"]);
}

#[test]
fn slice_range_past_the_end() {
    let tape = Tape::<f64>::new();
    let a = tape.constant(zeros(&[2, 3]));
    let (msg, line) = (panic_message(|| a.slice(1, 1..4)), line!());
    assert_names(&msg, line, &["[2, 3]", "1..4"]);
}

#[test]
fn concat_mismatch() {
    let tape = Tape::<f64>::new();
    let (a, b) = (tape.constant(zeros(&[2, 3])), tape.constant(zeros(&[2, 4])));
    let (msg, line) = (panic_message(|| Var::concat(&[a, b], 0)), line!());
    assert_names(&msg, line, &["[2, 3]", "[2, 4]"]);
    let (msg, line) = (panic_message(|| Var::concat(&[a, b], 2)), line!());
    assert_names(&msg, line, &["[2, 3]", "axis 2"]);
}

#[test]
fn gather_and_select_rows_out_of_range() {
    let tape = Tape::<f64>::new();
    let a = tape.constant(zeros(&[2, 3]));
    let (msg, line) = (panic_message(|| a.gather(1, &array![[0], [3]])), line!());
    assert_names(&msg, line, &["[2, 3]", "index 3"]);
    let (msg, line) = (panic_message(|| a.gather(1, &array![[0, 1]])), line!());
    assert_names(&msg, line, &["[2, 3]", "[1, 2]"]);
    let (msg, line) = (panic_message(|| a.select_rows(&[0, 2])), line!());
    assert_names(&msg, line, &["[2, 3]", "index 2"]);
}

#[test]
fn linear_mismatch() {
    let tape = Tape::<f64>::new();
    let (x, w) = (tape.constant(zeros(&[5, 3])), tape.constant(zeros(&[4, 2])));
    let (msg, line) = (panic_message(|| x.linear(w, None)), line!());
    assert_names(&msg, line, &["[5, 3]", "[4, 2]"]);
    let (w, b) = (tape.constant(zeros(&[2, 3])), tape.constant(zeros(&[3])));
    let (msg, line) = (panic_message(|| x.linear(w, Some(b))), line!());
    assert_names(&msg, line, &["[5, 3]", "[2, 3]", "[3]"]);
}

#[test]
fn other_shape_misuse() {
    let tape = Tape::<f64>::new();
    let (a, b) = (tape.constant(zeros(&[2, 3])), tape.constant(zeros(&[3, 2])));
    let (msg, line) = (panic_message(|| a.bce_with_logits(b)), line!());
    assert_names(&msg, line, &["[2, 3]", "[3, 2]"]);
    let (msg, line) = (panic_message(|| a.broadcast_to(&[3, 3])), line!());
    assert_names(&msg, line, &["[2, 3]", "[3, 3]"]);
    let v = tape.constant(zeros(&[3]));
    let (msg, line) = (panic_message(|| v.t()), line!());
    assert_names(&msg, line, &["[3]"]);
}

#[test]
fn operands_from_different_tapes() {
    let (t1, t2) = (Tape::<f64>::new(), Tape::<f64>::new());
    let (a, b) = (t1.constant(zeros(&[2])), t2.constant(zeros(&[2])));
    let (msg, line) = (panic_message(|| a + b), line!());
    assert_names(&msg, line, &["different tapes"]);
    let (msg, line) = (panic_message(|| a.matmul(b)), line!());
    assert_names(&msg, line, &["different tapes"]);
    let (msg, line) = (panic_message(|| Var::concat(&[a, b], 0)), line!());
    assert_names(&msg, line, &["different tapes"]);
    let (msg, line) = (panic_message(|| a.bce_with_logits(b)), line!());
    assert_names(&msg, line, &["different tapes"]);
    let w = t2.constant(zeros(&[2, 2]));
    let (msg, line) = (panic_message(|| a.linear(w, None)), line!());
    assert_names(&msg, line, &["different tapes"]);
}

#[test]
fn sampling_a_distribution_of_another_tape_panics_at_the_call() {
    use rand::SeedableRng;
    use stograd::Estimator;
    use stograd::dist::{Categorical, Normal};
    let (t1, t2) = (Tape::<f64>::new(), Tape::<f64>::new());
    let rng = &mut rand::rngs::StdRng::seed_from_u64(0);
    let normal = Normal::new(
        t1.variable(zeros(&[2])),
        t1.constant(array![1.0, 1.0].into_dyn()),
    )
    .unwrap();
    let (msg, line) = (panic_message(|| t2.sample(&normal, rng)), line!());
    assert_names(&msg, line, &["Normal", "another tape"]);
    let categorical = Categorical::from_logits(t1.variable(zeros(&[3, 4]))).unwrap();
    let (msg, line) = (panic_message(|| t2.sample(&categorical, rng)), line!());
    assert_names(&msg, line, &["Categorical", "another tape"]);
    // a learned baseline recorded on another tape than the draw
    let on_t2 = Categorical::from_logits(t2.variable(zeros(&[3, 4]))).unwrap();
    let estimator = Estimator::ScoreFunction {
        baseline: stograd::prelude::Baseline::Learned(t1.variable(zeros(&[3]))),
    };
    let draw = || t2.sample_with(&on_t2, estimator, rng);
    let (msg, line) = (panic_message(draw), line!() - 1);
    assert_names(&msg, line, &["learned baseline", "another tape"]);
    // a surrogate of a cost from another tape
    let cost = t1.constant(zeros(&[2]));
    let (msg, line) = (panic_message(|| t2.surrogate(cost)), line!());
    assert_names(&msg, line, &["surrogate", "another tape"]);
}

fn ones<'t>(t: &'t Tape<'t, f64>) -> Var<'t, f64> {
    t.constant(array![1.0, 1.0].into_dyn())
}

#[test]
fn distributions_built_from_two_tapes_panic_at_the_call() {
    use stograd::dist::kl::{kl_divergence, monte_carlo};
    use stograd::dist::{LowRankMultivariateNormal, MultivariateNormal, Normal, Uniform};
    let (t1, t2) = (Tape::<f64>::new(), Tape::<f64>::new());
    let (zero, one, eye) = (
        t1.constant(zeros(&[2])),
        ones(&t2),
        t2.constant(ndarray::Array2::<f64>::eye(2).into_dyn()),
    );
    let factor = t1.constant(zeros(&[2, 1]));
    let (msg, line) = (panic_message(|| Normal::new(zero, one)), line!());
    assert_names(&msg, line, &["Normal", "different tapes"]);
    let (msg, line) = (panic_message(|| Uniform::new(zero, one)), line!());
    assert_names(&msg, line, &["different tapes"]);
    let mvn = || MultivariateNormal::new(zero, eye);
    let (msg, line) = (panic_message(mvn), line!() - 1);
    assert_names(&msg, line, &["different tapes"]);
    let low_rank = || LowRankMultivariateNormal::new(zero, factor, one);
    let (msg, line) = (panic_message(low_rank), line!() - 1);
    assert_names(&msg, line, &["different tapes"]);
    let p = Normal::new(ones(&t1), ones(&t1)).unwrap();
    let q = Normal::new(ones(&t2), ones(&t2)).unwrap();
    let (msg, line) = (panic_message(|| kl_divergence(&p, &q)), line!());
    assert_names(&msg, line, &["different tapes"]);
    let rng = &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let (msg, line) = (panic_message(|| monte_carlo(&p, &q, 4, rng)), line!());
    assert_names(&msg, line, &["different tapes"]);
}

/// Reading a value `backward_and_free` released panics at the line of the op that reads it,
/// whichever op it is: every public op and distribution method is `#[track_caller]` down to
/// the read. Several used to name a line inside stograd (the `Deref` of the released value).
#[test]
fn reading_a_freed_value_panics_at_the_call() {
    use stograd::dist::kl::kl_divergence;
    use stograd::dist::{
        Bernoulli, Categorical, Distribution, LowRankMultivariateNormal, MultivariateNormal,
        Normal, RelaxedBernoulli,
    };
    let tape = Tape::<f64>::new();
    let x = tape.variable(uniform(&[2, 2], 0.1, 0.9, 1));
    let hidden = x.exp(); // an intermediate: released by backward_and_free
    let w = tape.constant(uniform(&[2, 2], 0.1, 0.9, 2));
    // a distribution made before the release: its capacitance factor is released too
    let early = LowRankMultivariateNormal::new(
        tape.variable(zeros(&[2])),
        tape.variable(uniform(&[2, 1], 0.1, 0.9, 3)),
        tape.variable(array![1.0, 2.0].into_dyn()),
    )
    .unwrap();
    let loss = hidden.sum() + early.entropy().unwrap();
    loss.backward_and_free().unwrap();
    let one = tape.constant(array![1.0, 1.0].into_dyn());
    assert_eq!(hidden.shape(), vec![2, 2]); // the shape is kept
    macro_rules! at_call {
        ($e:expr) => {{
            let (msg, line) = (panic_message(|| $e), line!());
            assert_names(&msg, line, &["released by `backward_and_free`"]);
        }};
    }
    // the value itself
    at_call!(hidden.value());
    at_call!(hidden.item());
    // elementwise, unary and binary (broadcasting), fused
    at_call!(hidden.exp());
    at_call!(hidden.sigmoid());
    at_call!(hidden * 2.0);
    at_call!(hidden + w);
    at_call!(w / hidden);
    at_call!(one - hidden);
    at_call!(hidden.mul_add(w, w));
    at_call!(hidden.powf(2.0));
    at_call!(hidden.clamp(0.0, 1.0));
    // matrix products and factorizations
    at_call!(hidden.matmul(w));
    at_call!(w.matmul(hidden));
    at_call!(hidden.cholesky());
    at_call!(hidden.linear(w, None));
    // reductions and normalizations
    at_call!(hidden.sum());
    at_call!(hidden.mean());
    at_call!(hidden.sum_axis(1));
    at_call!(hidden.logsumexp());
    at_call!(hidden.logsumexp_axis(0));
    at_call!(hidden.max_axis(0));
    at_call!(hidden.softmax(1));
    at_call!(hidden.log_softmax(1));
    // shape ops that copy values
    at_call!(hidden.t());
    at_call!(hidden.reshape(&[4]));
    at_call!(hidden.slice(0, ..1));
    at_call!(Var::concat(&[hidden, w], 0));
    at_call!(hidden.broadcast_to(&[3, 2, 2]));
    at_call!(hidden.select_rows(&[1, 0]));
    // distributions: built from a released value, or asked for its density
    let normal = Normal::new(w, w).unwrap();
    at_call!(normal.log_prob(hidden));
    at_call!(Normal::new(hidden, w));
    at_call!(Normal::new(w, hidden));
    at_call!(Bernoulli::from_logits(hidden));
    at_call!(Bernoulli::from_logits(w).unwrap().log_prob(hidden));
    at_call!(Categorical::from_logits(hidden));
    let relaxed = RelaxedBernoulli::new(0.5, Bernoulli::from_logits(w).unwrap()).unwrap();
    at_call!(relaxed.log_prob(hidden));
    let eye = tape.constant(ndarray::Array2::<f64>::eye(2).into_dyn());
    let mvn = MultivariateNormal::new(one, eye).unwrap();
    at_call!(mvn.log_prob(hidden));
    at_call!(MultivariateNormal::new(one, hidden));
    let factor = tape.constant(zeros(&[2, 1]));
    let low_rank = LowRankMultivariateNormal::new(one, factor, one).unwrap();
    at_call!(low_rank.log_prob(hidden));
    at_call!(LowRankMultivariateNormal::new(one, hidden, one));
    at_call!(early.log_prob(one));
    // a KL of distributions built before the release is still readable, its use is not
    let kl = kl_divergence(&normal, &Normal::new(w, w).unwrap()).unwrap();
    at_call!(kl + hidden);
}
