//! Credit assignment: the part `Q_w` of a cost that each score-function draw `w` is
//! multiplied by.
//!
//! **Terms.** The summed cost is split into *terms* by walking back from it through the ops
//! that are affine in whatever depends on a draw (sums, differences, shifts and scalings,
//! reductions by sum or mean, moves of elements, `detach`, and products with a factor no draw
//! depends on), carrying each element's coefficient (the adjoint). A term is the first node
//! on a path that is not affine in that sense; its contribution to the summed cost is
//! `Σ adjoint ⊙ value`, up to a constant that no draw depends on (and that, like a
//! baseline, would only add variance).
//!
//! **Dependence.** A term depends on a draw when a chain of the tape's edges leads from the
//! draw to it: through every op, through `detach` (which stops path gradients, not this), and
//! through later draws whose parameters depend on it. `Q_w` sums the terms that depend on `w`:
//! the others are independent of `w` given what came before it, so they would add variance
//! and no signal.
//!
//! **Rows.** A draw's leading axis is its batch (plate) axis, along which draws are
//! independent. Row `r` of `w` is credited with row `r` of a term alone only when every op on
//! every path from `w` to the term keeps rows separate (each op declares it beside its
//! backward rule, as `keeps_rows`); row `r` of such a term then depends on no other row of
//! `w`, so leaving the other rows' costs out of `Q_{w_r}` removes only noise. Every other
//! term credits its total to every row, which is unbiased whatever the op.
//!
//! **Surrogates.** The walk stops at a surrogate: its terms were credited when it was taken.
//! A surrogate reached only through a non-linear op is an error, since the gradient that
//! flows into it would multiply its score terms by a factor that depends on the draws.

use std::panic::Location;

use ndarray::{ArrayD, Axis, IxDyn};
use smallvec::SmallVec;

use super::baseline::NodeBaseline;
use super::{Register, SampleKind, SampleRecord};
use crate::broadcast::sum_to;
use crate::ops::Backward;
use crate::tape::{Node, accumulate, ancestors};
use crate::{Error, Result, Scalar};

/// What backward (or a surrogate) adds for the score-function nodes below a root.
pub(crate) struct Credit<F> {
    /// `(node, gradient to add)` pairs: `Q_w − b_w` on each `log q(w)`, and `−2 (Q − b)` on
    /// each learned baseline.
    pub(crate) seeds: Vec<(usize, ArrayD<F>)>,
    /// The score nodes whose baselines were applied here or in a surrogate inside the cost.
    pub(crate) covered: Vec<u32>,
}

/// The credit of every score-function node below `root`.
pub(crate) fn credit<F: Scalar>(
    nodes: &[Node<F>],
    register: &Register<F>,
    root: usize,
) -> Result<Credit<F>> {
    let mut credit = Credit {
        seeds: Vec::new(),
        covered: Vec::new(),
    };
    let is_score = |s: &&SampleRecord<F>| matches!(s.kind, SampleKind::Score { .. });
    if !register
        .samples
        .iter()
        .any(|s| is_score(&s) && s.node as usize <= root)
    {
        return Ok(credit);
    }
    let ancestor = ancestors(nodes, root);
    let score: Vec<&SampleRecord<F>> = register
        .samples
        .iter()
        .filter(|s| s.node as usize <= root && ancestor[s.node as usize])
        .filter(is_score)
        .collect();
    if score.is_empty() {
        return Ok(credit);
    }
    let flow = Flow::new(nodes, register, root, &ancestor, &score);
    let split = split(nodes, register, root, &flow)?;

    let mut baseline_done = vec![false; score.len()];
    for &s in &split.surrogates {
        let covered = &register.surrogate(s as u32).expect("a surrogate").covered;
        for &w in covered {
            if let Some(k) = score.iter().position(|r| r.node == w) {
                baseline_done[k] = true;
            }
            if !credit.covered.contains(&w) {
                credit.covered.push(w);
            }
        }
    }

    for (k, record) in score.iter().enumerate() {
        let SampleKind::Score { log_prob, baseline } = &record.kind else {
            unreachable!("filtered to score nodes")
        };
        let lp_shape = nodes[*log_prob as usize].value.shape();
        let rows = flow.rows[k];
        let mut per_row = rows.map(|n| ArrayD::<F>::zeros(IxDyn(&[n])));
        let mut total = F::zero();
        let mut mixed = None;
        let mut credited = false;
        for term in &split.terms {
            if !flow.deps.get(term.node, k) {
                continue;
            }
            credited = true;
            match (&mut per_row, &term.row_sums) {
                (Some(q), Some(sums)) if flow.aligned.get(term.node, k) => *q += sums,
                _ => {
                    total += term.total;
                    mixed.get_or_insert(term.node);
                }
            }
        }
        if !credited {
            continue;
        }
        let q = match per_row {
            Some(q) => q + total,
            None => ArrayD::from_elem(IxDyn(&[]), total),
        };
        if baseline_done[k] {
            credit
                .seeds
                .push((*log_prob as usize, expand_rows(&q, lp_shape)));
            continue;
        }
        credit.covered.push(record.node);
        if let (NodeBaseline::LeaveOneOut { .. }, Some(t)) = (baseline, mixed) {
            return Err(Error::UnsupportedEstimator {
                estimator: "ScoreFunction",
                distribution: record.distribution,
                reason: format!(
                    "a leave-one-out baseline needs each row's own cost, but the cost term \
                     `{}` recorded at {} {}",
                    nodes[t].op.name(),
                    nodes[t].location,
                    if rows.is_some() {
                        "depends on other rows of the draw than its own"
                    } else {
                        "cannot be split by row: the draw has no batch axis"
                    }
                ),
            });
        }
        let learned = match baseline {
            NodeBaseline::Learned { node } => Some(nodes[*node as usize].value.live()),
            _ => None,
        };
        let b = baseline.values(&q, learned, record.distribution)?;
        let centered = &q - &b;
        credit
            .seeds
            .push((*log_prob as usize, expand_rows(&centered, lp_shape)));
        if let (NodeBaseline::Learned { node }, Some(learned)) = (baseline, learned) {
            // ∂/∂b Σ (Q − b)² = −2 (Q − b)
            let grad = sum_to(&centered.mapv(|v| v * F::from_f64(-2.0)), learned.shape());
            credit.seeds.push((*node as usize, grad));
        }
    }
    Ok(credit)
}

/// One bit per (node, score node).
struct Bits {
    words: usize,
    data: Vec<u64>,
}

impl Bits {
    fn new(nodes: usize, bits: usize) -> Self {
        let words = bits.div_ceil(64);
        Bits {
            words,
            data: vec![0; nodes * words],
        }
    }

    fn get(&self, node: usize, k: usize) -> bool {
        self.data[node * self.words + k / 64] & (1 << (k % 64)) != 0
    }

    fn set(&mut self, node: usize, k: usize) {
        self.data[node * self.words + k / 64] |= 1 << (k % 64);
    }

    fn any(&self, node: usize) -> bool {
        self.data[node * self.words..(node + 1) * self.words]
            .iter()
            .any(|&w| w != 0)
    }

    fn word(&self, node: usize, w: usize) -> u64 {
        self.data[node * self.words + w]
    }

    fn word_mut(&mut self, node: usize, w: usize) -> &mut u64 {
        &mut self.data[node * self.words + w]
    }
}

/// How the score draws flow forward through the root's ancestors.
struct Flow {
    /// Which draws each node depends on.
    deps: Bits,
    /// Of those, the draws whose rows reach the node row by row.
    aligned: Bits,
    /// Which draws a surrogate below each node (or the node itself) has credited.
    in_surrogate: Bits,
    /// The batch length of each draw, where it has a batch axis.
    rows: Vec<Option<usize>>,
}

impl Flow {
    fn new<F: Scalar>(
        nodes: &[Node<F>],
        register: &Register<F>,
        root: usize,
        ancestor: &[bool],
        score: &[&SampleRecord<F>],
    ) -> Self {
        let n = root + 1;
        let mut flow = Flow {
            deps: Bits::new(n, score.len()),
            aligned: Bits::new(n, score.len()),
            in_surrogate: Bits::new(n, score.len()),
            rows: score.iter().map(|s| batch_rows(nodes, s)).collect(),
        };
        let words = flow.deps.words;
        let mut next_score = 0;
        for i in 0..n {
            if !ancestor[i] {
                continue;
            }
            let node = &nodes[i];
            for w in 0..words {
                let mut deps = 0;
                let mut cov = 0;
                for &p in &node.parents {
                    deps |= flow.deps.word(p as usize, w);
                    cov |= flow.in_surrogate.word(p as usize, w);
                }
                *flow.deps.word_mut(i, w) = deps;
                *flow.aligned.word_mut(i, w) = deps;
                *flow.in_surrogate.word_mut(i, w) = cov;
            }
            if flow.deps.any(i) {
                let shapes: SmallVec<[&[usize]; 4]> = node
                    .parents
                    .iter()
                    .map(|&p| nodes[p as usize].value.shape())
                    .collect();
                for (j, &p) in node.parents.iter().enumerate() {
                    let keeps = node.op.keeps_rows(j, &shapes, node.value.shape());
                    for w in 0..words {
                        let (dp, ap) = (
                            flow.deps.word(p as usize, w),
                            flow.aligned.word(p as usize, w),
                        );
                        // a draw stays aligned through this input if the input does not
                        // depend on it, or carries it aligned into an op that keeps rows
                        let mask = if keeps { ap | !dp } else { !dp };
                        *flow.aligned.word_mut(i, w) &= mask;
                    }
                }
            }
            if next_score < score.len() && score[next_score].node as usize == i {
                flow.deps.set(i, next_score);
                if flow.rows[next_score].is_some() {
                    flow.aligned.set(i, next_score);
                }
                next_score += 1;
            }
            if let Some(s) = register.surrogate(i as u32) {
                for &w in &s.covered {
                    if let Some(k) = score.iter().position(|r| r.node == w) {
                        flow.in_surrogate.set(i, k);
                    }
                }
            }
        }
        flow
    }
}

/// The batch length of a score draw: the leading length of `log q(w)`, when the draw has a
/// batch axis and lines up with it.
fn batch_rows<F: Scalar>(nodes: &[Node<F>], sample: &SampleRecord<F>) -> Option<usize> {
    let SampleKind::Score { log_prob, .. } = sample.kind else {
        return None;
    };
    let lp = nodes[log_prob as usize].value.shape();
    let draw = nodes[sample.node as usize].value.shape();
    match (lp.first(), draw.first()) {
        (Some(&a), Some(&b)) if a == b => Some(a),
        _ => None,
    }
}

/// A term of the summed root: its contribution `Σ adjoint ⊙ value`, in total and per row of
/// its leading axis.
struct Term<F> {
    node: usize,
    total: F,
    row_sums: Option<ArrayD<F>>,
}

struct Split<F> {
    terms: Vec<Term<F>>,
    /// Surrogates the walk stopped at.
    surrogates: Vec<usize>,
}

/// Walks back from the root through affine ops, carrying each element's coefficient, and
/// stops at the first other node on each path (a term) or at a surrogate.
fn split<F: Scalar>(
    nodes: &[Node<F>],
    register: &Register<F>,
    root: usize,
    flow: &Flow,
) -> Result<Split<F>> {
    let mut adjoint: Vec<Option<ArrayD<F>>> = (0..=root).map(|_| None).collect();
    adjoint[root] = Some(ArrayD::ones(nodes[root].value.live().raw_dim()));
    let mut split = Split {
        terms: Vec::new(),
        surrogates: Vec::new(),
    };
    for i in (0..=root).rev() {
        let Some(a) = adjoint[i].take() else { continue };
        if !flow.deps.any(i) {
            continue;
        }
        if register.surrogate(i as u32).is_some() {
            split.surrogates.push(i);
            continue;
        }
        let node = &nodes[i];
        let varies: SmallVec<[bool; 4]> = node
            .parents
            .iter()
            .map(|&p| flow.deps.any(p as usize))
            .collect();
        if node.parents.is_empty() || !node.op.linear_in(&varies) {
            if flow.in_surrogate.any(i) {
                return Err(not_linear(nodes, register, i));
            }
            split.terms.push(term(i, &a, node.value.live()));
            continue;
        }
        let inputs = node.inputs(nodes);
        let grads = node.op.backward(&Backward {
            inputs: &inputs,
            output: node.value.live(),
            grad: &a,
            needs: &varies,
        });
        for (&p, g) in node.parents.iter().zip(grads) {
            if let Some(g) = g {
                accumulate(&mut adjoint[p as usize], g);
            }
        }
    }
    Ok(split)
}

fn term<F: Scalar>(node: usize, adjoint: &ArrayD<F>, value: &ArrayD<F>) -> Term<F> {
    let contribution = adjoint * value;
    let row_sums = (contribution.ndim() >= 1).then(|| {
        let n = contribution.shape()[0];
        contribution
            .to_shape((n, contribution.len().checked_div(n).unwrap_or(0)))
            .expect("rows")
            .sum_axis(Axis(1))
            .into_dyn()
    });
    Term {
        node,
        total: contribution.sum(),
        row_sums,
    }
}

/// The error for term `i`, which holds a surrogate inside a non-linear op.
fn not_linear<F: Scalar>(nodes: &[Node<F>], register: &Register<F>, i: usize) -> Error {
    let below = ancestors(nodes, i);
    let surrogate: &'static Location<'static> = register
        .surrogates
        .iter()
        .find(|s| (s.node as usize) < i && below[s.node as usize])
        .map_or(nodes[i].location, |s| nodes[s.node as usize].location);
    Error::SurrogateNotLinear {
        op: nodes[i].op.name(),
        location: nodes[i].location,
        surrogate,
    }
}

/// `[]` or `[n]` values spread over `shape`, whose leading axis has length `n`.
fn expand_rows<F: Scalar>(v: &ArrayD<F>, shape: &[usize]) -> ArrayD<F> {
    if v.ndim() == 0 {
        return ArrayD::from_elem(IxDyn(shape), v[[]]);
    }
    let mut column = vec![1; shape.len()];
    column[0] = v.len();
    let v = v.to_shape(IxDyn(&column)).expect("n elements");
    v.broadcast(IxDyn(shape))
        .expect("leading axis matches")
        .to_owned()
}
