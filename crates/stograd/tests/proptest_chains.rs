//! Random chains of 5–20 ops on random shapes (1–3 axes of length 1–4) agree with finite
//! differences.
//!
//! Every op in the menu keeps the shape and is domain-safe for any finite input: `log`, `sqrt`,
//! `recip`, `powf`, `lgamma` and `digamma` see arguments bounded away from their poles
//! (`x² + 1`, `σ(x) + 1`, …), `exp` only sees `tanh(x)`, and no op has a kink (`relu`, `abs`,
//! `max` and `clamp` are checked on hand-placed inputs in `ops_grad.rs`). The ops that can grow
//! a value add at most a bounded amount per step, so values stay within a few tens.

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::RngSeed;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use stograd::check::{Tolerance, gradcheck};
use stograd::{Tape, Var};

/// One link of the chain; its `u8` parameter picks an axis, a broadcast pattern or indices.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    // Elementwise, composed so that any finite input is in the domain.
    Tanh,
    Sigmoid,
    Sin,
    Cos,
    ExpOfTanh,
    LogOfSquarePlusOne,
    SqrtOfSquarePlusHalf,
    Log1pOfSquare,
    Expm1OfTanh,
    RecipOfSquarePlusOne,
    PowfOfSquarePlusOne,
    LgammaOfSigmoid,
    DigammaOfSigmoid,
    Softplus,
    LogSigmoid,
    Neg,
    Affine,
    ScalarMinusX,
    ScalarOverSquarePlusOne,
    // With a second random input of the same or a broadcastable shape.
    Add,
    Sub,
    SubFrom,
    Mul,
    DivBySquarePlusOne,
    // Reductions broadcast back to the shape.
    SumAxisBack,
    MeanAxisBack,
    LogSumExpAxisBack,
    MeanAllBack,
    CenterAlongAxis,
    // Normalizations along an axis.
    Softmax,
    LogSoftmax,
    // Products with a square matrix (the last axis), and the fused affine map.
    MatMul,
    Linear,
    // Element moves.
    ConcatThenSlice,
    SelectRows,
    Gather,
    TransposeReshape,
}

const KINDS: [Kind; 37] = [
    Kind::Tanh,
    Kind::Sigmoid,
    Kind::Sin,
    Kind::Cos,
    Kind::ExpOfTanh,
    Kind::LogOfSquarePlusOne,
    Kind::SqrtOfSquarePlusHalf,
    Kind::Log1pOfSquare,
    Kind::Expm1OfTanh,
    Kind::RecipOfSquarePlusOne,
    Kind::PowfOfSquarePlusOne,
    Kind::LgammaOfSigmoid,
    Kind::DigammaOfSigmoid,
    Kind::Softplus,
    Kind::LogSigmoid,
    Kind::Neg,
    Kind::Affine,
    Kind::ScalarMinusX,
    Kind::ScalarOverSquarePlusOne,
    Kind::Add,
    Kind::Sub,
    Kind::SubFrom,
    Kind::Mul,
    Kind::DivBySquarePlusOne,
    Kind::SumAxisBack,
    Kind::MeanAxisBack,
    Kind::LogSumExpAxisBack,
    Kind::MeanAllBack,
    Kind::CenterAlongAxis,
    Kind::Softmax,
    Kind::LogSoftmax,
    Kind::MatMul,
    Kind::Linear,
    Kind::ConcatThenSlice,
    Kind::SelectRows,
    Kind::Gather,
    Kind::TransposeReshape,
];

/// A generated test case: the input's shape, the chain, and the seed of every random array.
#[derive(Clone, Debug)]
struct Case {
    shape: Vec<usize>,
    steps: Vec<(Kind, u8)>,
    seed: u64,
}

/// A step with its parameter resolved against the shape: the axis, the indices of its extra
/// inputs among the gradcheck inputs, and any index arrays.
#[derive(Debug)]
enum Step {
    Unary(Kind),
    Binary(Kind, usize),
    Axis(Kind, usize),
    MeanAllBack,
    MatMul(usize),
    Linear(usize, Option<usize>),
    ConcatThenSlice {
        input: usize,
        axis: usize,
        start: usize,
    },
    SelectRows(Vec<usize>),
    Gather(usize, ArrayD<usize>),
    TransposeReshape,
}

/// The resolved chain and its inputs; input 0 is the start of the chain.
struct Plan {
    shape: Vec<usize>,
    steps: Vec<Step>,
    inputs: Vec<ArrayD<f64>>,
}

fn uniform(rng: &mut StdRng, shape: &[usize], lo: f64, hi: f64) -> ArrayD<f64> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || lo + (hi - lo) * rng.random::<f64>())
}

/// A shape that broadcasts to `shape`: 0-d, or some axes set to 1, or the leading axis dropped.
fn broadcastable(shape: &[usize], mask: u8) -> Vec<usize> {
    if mask & 0b1100_0000 == 0b1100_0000 {
        return vec![];
    }
    let mut out: Vec<usize> = shape
        .iter()
        .enumerate()
        .map(|(i, &len)| if mask >> i & 1 == 1 { 1 } else { len })
        .collect();
    if mask & 0b0010_0000 != 0 && out.len() > 1 {
        out.remove(0);
    }
    out
}

impl Plan {
    fn new(case: &Case) -> Plan {
        let shape = case.shape.clone();
        let ndim = shape.len();
        let n = shape[ndim - 1];
        let mut rng = StdRng::seed_from_u64(case.seed);
        let mut inputs = vec![uniform(&mut rng, &shape, -2.0, 2.0)];
        let mut add = |a: ArrayD<f64>| {
            inputs.push(a);
            inputs.len() - 1
        };
        let mut steps = Vec::new();
        for &(kind, p) in &case.steps {
            let axis = p as usize % ndim;
            let step = match kind {
                Kind::Add | Kind::Sub | Kind::SubFrom | Kind::Mul | Kind::DivBySquarePlusOne => {
                    let other = uniform(&mut rng, &broadcastable(&shape, p), -1.0, 1.0);
                    Step::Binary(kind, add(other))
                }
                Kind::SumAxisBack
                | Kind::MeanAxisBack
                | Kind::LogSumExpAxisBack
                | Kind::CenterAlongAxis
                | Kind::Softmax
                | Kind::LogSoftmax => Step::Axis(kind, axis),
                Kind::MeanAllBack => Step::MeanAllBack,
                Kind::MatMul => {
                    // Entries of size ≤ 1/n: the product is no larger than its input.
                    let batched = ndim == 3 && p & 1 == 1;
                    let m_shape = if batched {
                        vec![shape[0], n, n]
                    } else {
                        vec![n, n]
                    };
                    let m = uniform(&mut rng, &m_shape, -1.0, 1.0) / n as f64;
                    Step::MatMul(add(m))
                }
                Kind::Linear => {
                    let w = add(uniform(&mut rng, &[n, n], -1.0, 1.0) / n as f64);
                    let b = (p & 1 == 1).then(|| add(uniform(&mut rng, &[n], -1.0, 1.0)));
                    Step::Linear(w, b)
                }
                Kind::ConcatThenSlice => {
                    let other = add(uniform(&mut rng, &shape, -1.0, 1.0));
                    let start = (p as usize / 4) % (shape[axis] + 1);
                    Step::ConcatThenSlice {
                        input: other,
                        axis,
                        start,
                    }
                }
                Kind::SelectRows => {
                    let rows = shape[0];
                    Step::SelectRows((0..rows).map(|_| rng.random_range(0..rows)).collect())
                }
                Kind::Gather => {
                    let len = shape[axis];
                    let index =
                        ArrayD::from_shape_simple_fn(IxDyn(&shape), || rng.random_range(0..len));
                    Step::Gather(axis, index)
                }
                Kind::TransposeReshape => Step::TransposeReshape,
                unary => Step::Unary(unary),
            };
            steps.push(step);
        }
        Plan {
            shape,
            steps,
            inputs,
        }
    }

    /// Records the chain on a tape, starting from `v[0]`.
    fn run<'t>(&self, v: &[Var<'t, f64>]) -> Var<'t, f64> {
        let shape = &self.shape[..];
        let mut x = v[0];
        for step in &self.steps {
            x = match *step {
                Step::Unary(kind) => unary(kind, x),
                Step::Binary(kind, i) => {
                    let y = v[i];
                    match kind {
                        Kind::Add => x + y,
                        Kind::Sub => x - y,
                        Kind::SubFrom => y - x,
                        Kind::Mul => x * y,
                        Kind::DivBySquarePlusOne => x / (y.square() + 1.0),
                        _ => unreachable!("{kind:?} is not binary"),
                    }
                }
                Step::Axis(kind, a) => {
                    let len = shape[a] as f64;
                    match kind {
                        Kind::SumAxisBack => (x.sum_axis(a).unsqueeze(a).broadcast_to(shape)) / len,
                        Kind::MeanAxisBack => x.mean_axis(a).unsqueeze(a).broadcast_to(shape),
                        Kind::LogSumExpAxisBack => (x.logsumexp_axis(a) - len.ln())
                            .unsqueeze(a)
                            .broadcast_to(shape),
                        // x − mean along the axis, broadcast by the subtraction itself.
                        Kind::CenterAlongAxis => x - x.mean_axis(a).unsqueeze(a),
                        Kind::Softmax => x.softmax(a),
                        Kind::LogSoftmax => x.log_softmax(a),
                        _ => unreachable!("{kind:?} takes no axis"),
                    }
                }
                Step::MeanAllBack => x.mean().broadcast_to(shape),
                Step::MatMul(i) => {
                    if shape.len() == 1 {
                        x.unsqueeze(0).matmul(v[i]).reshape(shape)
                    } else {
                        x.matmul(v[i])
                    }
                }
                Step::Linear(w, b) => x.linear(v[w], b.map(|b| v[b])),
                Step::ConcatThenSlice { input, axis, start } => {
                    Var::concat(&[x, v[input]], axis).slice(axis, start..start + shape[axis])
                }
                Step::SelectRows(ref rows) => x.select_rows(rows),
                Step::Gather(axis, ref index) => x.gather(axis, index),
                // [1, …, a, b] → [1, …, b, a], read back in the original shape.
                Step::TransposeReshape => x.unsqueeze(0).t().reshape(shape),
            };
            debug_assert_eq!(x.shape(), shape, "{step:?} changed the shape");
        }
        x
    }
}

fn unary<'t>(kind: Kind, x: Var<'t, f64>) -> Var<'t, f64> {
    match kind {
        Kind::Tanh => x.tanh(),
        Kind::Sigmoid => x.sigmoid(),
        Kind::Sin => x.sin(),
        Kind::Cos => x.cos(),
        Kind::ExpOfTanh => x.tanh().exp(),
        Kind::LogOfSquarePlusOne => (x.square() + 1.0).log(),
        Kind::SqrtOfSquarePlusHalf => (x.square() + 0.5).sqrt(),
        Kind::Log1pOfSquare => x.square().log1p(),
        Kind::Expm1OfTanh => x.tanh().expm1(),
        Kind::RecipOfSquarePlusOne => (x.square() + 1.0).recip(),
        Kind::PowfOfSquarePlusOne => (x.square() + 1.0).powf(0.3),
        // Arguments in (0.5, 2.5) and (1, 2): far from the poles at 0, −1, …
        Kind::LgammaOfSigmoid => (x.sigmoid() * 2.0 + 0.5).lgamma(),
        Kind::DigammaOfSigmoid => (x.sigmoid() + 1.0).digamma(),
        Kind::Softplus => x.softplus(),
        Kind::LogSigmoid => x.log_sigmoid(),
        Kind::Neg => -x,
        Kind::Affine => x * 0.7 + 0.3,
        Kind::ScalarMinusX => 1.0 - x,
        Kind::ScalarOverSquarePlusOne => 2.0 / (x.square() + 1.0),
        _ => unreachable!("{kind:?} is not elementwise"),
    }
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(1usize..=4, 1..=3),
        prop::collection::vec((select(KINDS.to_vec()), any::<u8>()), 5..=20),
        any::<u64>(),
    )
        .prop_map(|(shape, steps, seed)| Case { shape, steps, seed })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x5706_7ad0),
        ..ProptestConfig::default()
    })]

    /// The default gradcheck tolerance holds with a wide margin: over 9,000 random chains the
    /// worst element used under 2% of its allowed error, while a wrong backward rule is off by
    /// O(1) relative.
    #[test]
    fn random_chains_agree_with_finite_differences(case in case()) {
        let plan = Plan::new(&case);
        let report = gradcheck(|_, v| plan.run(v), &plan.inputs, Tolerance::default());
        prop_assert!(report.is_ok(), "{}", report.unwrap_err());
        let elements: usize = plan.inputs.iter().map(ArrayD::len).sum();
        prop_assert_eq!(report.unwrap().elements, elements);
    }
}

#[test]
fn the_menu_lists_every_kind_once() {
    // KINDS drives the generator: a kind missing from it would never be tested.
    for (i, a) in KINDS.iter().enumerate() {
        assert!(!KINDS[i + 1..].contains(a), "{a:?} listed twice");
    }
    // Every variant resolves and runs on a shape where all of them apply.
    for (seed, &kind) in KINDS.iter().enumerate() {
        let case = Case {
            shape: vec![2, 3, 3],
            steps: vec![(kind, 0b0101)],
            seed: seed as u64,
        };
        let plan = Plan::new(&case);
        let tape = Tape::new();
        let vars: Vec<_> = plan
            .inputs
            .iter()
            .map(|a| tape.variable(a.clone()))
            .collect();
        assert_eq!(plan.run(&vars).shape(), vec![2, 3, 3], "{kind:?}");
    }
}
