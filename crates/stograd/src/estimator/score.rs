//! Score-function (REINFORCE) sample nodes and the surrogate terms they add at backward.
//!
//! For a draw `w ~ q_θ` whose value carries no path gradient, the gradient of `E[cost]` is
//! `E[∇θ log q_θ(w) · Q_w]`, where `Q_w` is the part of the cost downstream of `w`
//! (Schulman et al. 2015). Backward therefore adds `log q(w) · stop_grad(Q_w − b_w)` for every
//! score-function node `w` upstream of the cost, by seeding the `log q(w)` node with
//! `Q_w − b_w`.
//!
//! **Finding `Q_w`.** The cost is split into *terms* by walking back from it through linear
//! ops only (`+ − neg`, scalar scaling, sums and means, reshapes, broadcasts, slices,
//! concatenation, transposes), carrying the coefficient of each element (the adjoint). A term
//! is the first node that is not linear; its contribution to the summed cost is
//! `Σ adjoint ⊙ value`. `Q_w` is the sum of the contributions of the terms that depend on `w`
//! through the tape's edges, so costs unrelated to `w` add no variance to its estimate.
//!
//! **Credit assignment.** The leading axis of `log q(w)` is the plate: when a term's leading
//! length equals it, row `r` of the sample is credited with row `r` of the term only; other
//! terms credit their total to every row.

use std::panic::Location;

use ndarray::{ArrayD, Axis, IxDyn};
use rand::Rng;
use smallvec::SmallVec;

use super::baseline::{Baseline, NodeBaseline};
use super::{EstimatorOp, SampleKind, SampleOp};
use crate::broadcast::sum_to;
use crate::dist::Distribution;
use crate::ops::{Backward, Op};
use crate::tape::{Node, same_tape};
use crate::{Error, Result, Scalar, Tape, Var};

/// Draws without gradient, records `log q(w)` of the draw, then the sample node.
pub(super) fn sample<'t, F, D, R>(
    tape: &'t Tape<F>,
    dist: &D,
    baseline: &Baseline<'t, F>,
    rng: &mut R,
    location: &'static Location<'static>,
) -> Result<Var<'t, F>>
where
    F: Scalar,
    D: Distribution<'t, F>,
    R: Rng + ?Sized,
{
    let params = dist.params();
    let value = dist.sample(rng);
    let log_prob = dist.log_prob(tape.constant(value.clone()));
    let rows = log_prob.shape().first().copied();
    check_baseline(dist.name(), baseline, params[0], rows)?;
    let op = SampleOp {
        distribution: dist.name(),
        kind: SampleKind::Score {
            log_prob: log_prob.index,
            baseline: NodeBaseline::from_baseline(baseline),
        },
    };
    let parents: SmallVec<[u32; 2]> = params.iter().map(|p| p.index).collect();
    Ok(tape.push_score_sample(op, parents, value, location))
}

/// Rejects, at sampling time, baselines that cannot fit the draw.
fn check_baseline<F: Scalar>(
    distribution: &'static str,
    baseline: &Baseline<'_, F>,
    param: Var<'_, F>,
    rows: Option<usize>,
) -> Result<()> {
    let fail = |reason: String| Error::UnsupportedEstimator {
        estimator: "ScoreFunction",
        distribution,
        reason: format!("{} baseline: {reason}", baseline.name()),
    };
    match baseline {
        Baseline::Learned(b) => {
            same_tape("learned baseline", param, *b);
            let shape = b.shape();
            if !(shape.is_empty()
                || Some(shape.as_slice()) == rows.as_ref().map(std::slice::from_ref))
            {
                return Err(fail(format!(
                    "shape must be [] or [{}] (the batch length), got {shape:?}",
                    rows.map_or("none".into(), |r| r.to_string())
                )));
            }
        }
        Baseline::LeaveOneOut { group } => {
            if *group < 2 || rows.is_none_or(|r| r % group != 0) {
                return Err(fail(format!(
                    "the batch length {rows:?} must be a multiple of the group size {group} ≥ 2"
                )));
            }
        }
        Baseline::None | Baseline::Constant(_) | Baseline::Ema(_) => {}
    }
    Ok(())
}

/// Gradients to add before the reverse sweep: `(node, seed)` pairs.
pub(crate) type Seeds<F> = Vec<(usize, ArrayD<F>)>;

/// The surrogate seeds of every score-function node upstream of `root` that no surrogate
/// already covers: `(node, gradient to add)` pairs, plus the score nodes handled.
pub(crate) fn seeds<F: Scalar>(nodes: &[Node<F>], root: usize) -> Result<(Seeds<F>, Vec<u32>)> {
    let mut ancestor = vec![false; root + 1];
    ancestor[root] = true;
    let mut covered = vec![false; root + 1];
    for i in (0..=root).rev() {
        if !ancestor[i] {
            continue;
        }
        for &p in &nodes[i].parents {
            ancestor[p as usize] = true;
        }
        if let Op::Estimator(EstimatorOp::Surrogate { covered: done }) = &nodes[i].op {
            done.iter().for_each(|&w| covered[w as usize] = true);
        }
    }
    let score: Vec<usize> = (0..=root)
        .filter(|&i| ancestor[i] && !covered[i] && score_kind(&nodes[i]).is_some())
        .collect();
    if score.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }

    let deps = Dependencies::new(nodes, root, &ancestor, &score);
    let terms = cost_terms(nodes, root, &deps);

    let mut seeds = Vec::new();
    for (k, &w) in score.iter().enumerate() {
        let (log_prob, baseline) = score_kind(&nodes[w]).expect("filtered above");
        let lp_shape = nodes[log_prob as usize].value.shape();
        let rows = lp_shape.first().copied();
        let mut q = ArrayD::zeros(IxDyn(rows.as_slice()));
        let mut per_row = false;
        for (t, adjoint) in &terms {
            if !deps.depends(*t, k) {
                continue;
            }
            let contribution = adjoint * &nodes[*t].value;
            match rows {
                Some(n) if contribution.ndim() >= 1 && contribution.shape()[0] == n => {
                    let flat = contribution
                        .to_shape((n, contribution.len() / n.max(1)))
                        .expect("rows");
                    q += &flat.sum_axis(Axis(1));
                    per_row = true;
                }
                _ => q += contribution.sum(),
            }
        }
        let learned = match baseline {
            NodeBaseline::Learned { node } => Some(&nodes[*node as usize].value),
            _ => None,
        };
        let name = match &nodes[w].op {
            Op::Estimator(EstimatorOp::Sample(op)) => op.distribution,
            _ => unreachable!("score nodes are samples"),
        };
        let b = baseline.values(&q, learned, per_row, name)?;
        let centered = &q - &b;
        seeds.push((log_prob as usize, expand_rows(&centered, lp_shape)));
        if let NodeBaseline::Learned { node } = baseline {
            // ∂/∂b Σ (Q − b)² = −2 (Q − b)
            let grad = sum_to(
                &centered.mapv(|v| v * F::from_f64(-2.0)),
                learned.expect("set").shape(),
            );
            seeds.push((*node as usize, grad));
        }
    }
    Ok((seeds, score.iter().map(|&w| w as u32).collect()))
}

fn score_kind<F: Scalar>(node: &Node<F>) -> Option<(u32, &NodeBaseline<F>)> {
    match &node.op {
        Op::Estimator(EstimatorOp::Sample(SampleOp {
            kind: SampleKind::Score { log_prob, baseline },
            ..
        })) => Some((*log_prob, baseline)),
        _ => None,
    }
}

/// Which score nodes each ancestor of the root depends on, as bitsets.
struct Dependencies {
    words: usize,
    bits: Vec<u64>,
}

impl Dependencies {
    fn new<F: Scalar>(nodes: &[Node<F>], root: usize, ancestor: &[bool], score: &[usize]) -> Self {
        let words = score.len().div_ceil(64);
        let mut bits = vec![0u64; (root + 1) * words];
        for i in 0..=root {
            if !ancestor[i] {
                continue;
            }
            for &p in &nodes[i].parents {
                for word in 0..words {
                    bits[i * words + word] |= bits[p as usize * words + word];
                }
            }
            if let Ok(k) = score.binary_search(&i) {
                bits[i * words + k / 64] |= 1 << (k % 64);
            }
        }
        Dependencies { words, bits }
    }

    fn depends(&self, node: usize, k: usize) -> bool {
        self.bits[node * self.words + k / 64] & (1 << (k % 64)) != 0
    }

    fn any(&self, node: usize) -> bool {
        self.bits[node * self.words..(node + 1) * self.words]
            .iter()
            .any(|&w| w != 0)
    }
}

/// Splits the summed root into terms: walks back through linear ops carrying each element's
/// coefficient, and stops at the first non-linear node on each path.
fn cost_terms<F: Scalar>(
    nodes: &[Node<F>],
    root: usize,
    deps: &Dependencies,
) -> Vec<(usize, ArrayD<F>)> {
    let mut adjoint: Vec<Option<ArrayD<F>>> = (0..=root).map(|_| None).collect();
    adjoint[root] = Some(ArrayD::ones(nodes[root].value.raw_dim()));
    let mut terms = Vec::new();
    for i in (0..=root).rev() {
        let Some(a) = adjoint[i].take() else { continue };
        if !deps.any(i) {
            continue;
        }
        let node = &nodes[i];
        if !node.op.is_linear() {
            terms.push((i, a));
            continue;
        }
        let inputs: SmallVec<[&ArrayD<F>; 2]> = node
            .parents
            .iter()
            .map(|&p| &nodes[p as usize].value)
            .collect();
        let needs: SmallVec<[bool; 2]> =
            node.parents.iter().map(|&p| deps.any(p as usize)).collect();
        let grads = node.op.backward(&Backward {
            inputs: &inputs,
            output: &node.value,
            grad: &a,
            needs: &needs,
        });
        for (&p, g) in node.parents.iter().zip(grads) {
            let Some(g) = g else { continue };
            match &mut adjoint[p as usize] {
                Some(acc) => *acc += &g,
                slot => *slot = Some(g),
            }
        }
    }
    terms
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

impl<F: Scalar> Tape<F> {
    /// A loss whose *value* is the sum of `cost` and whose *gradient* is the estimator: the
    /// pathwise gradient of the cost plus, for every score-function node upstream, the term
    /// `log q(w) · stop_grad(Q_w − b_w)` (and a learned baseline's regression loss), each
    /// added as `x − stop_grad(x)` so it changes the gradient but not the value (the DiCE
    /// "magic box" property). Log it and combine it like any loss.
    ///
    /// Each score node is credited once: backward from a value built on the surrogate does not
    /// add its terms again.
    ///
    /// # Example
    /// ```
    /// use ndarray::array;
    /// use rand::SeedableRng;
    /// use stograd::dist::Bernoulli;
    /// use stograd::{Estimator, Tape};
    ///
    /// let tape = Tape::<f64>::new();
    /// let logits = tape.variable(array![0.3, -0.2]);
    /// let b = tape.sample_with(
    ///     &Bernoulli::from_logits(logits)?,
    ///     Estimator::score_function(),
    ///     &mut rand::rngs::StdRng::seed_from_u64(3),
    /// )?;
    /// let cost = (b - 0.45).square();
    /// let loss = tape.surrogate(cost)?;
    /// assert_eq!(loss.item(), cost.sum().item()); // same value
    /// let g = loss.backward()?;
    /// assert_eq!(g.wrt(logits), cost.backward()?.wrt(logits)); // same gradient
    /// # Ok::<(), stograd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::UnsupportedEstimator`] when a baseline does not fit the cost (a
    /// leave-one-out baseline without per-row costs).
    #[track_caller]
    pub fn surrogate<'t>(&'t self, cost: Var<'t, F>) -> Result<Var<'t, F>> {
        let location = Location::caller();
        let (seeds, covered) = {
            let nodes = self.nodes.borrow();
            seeds(&nodes, cost.index as usize)?
        };
        let mut total = cost.sum();
        for (node, coefficient) in seeds {
            let term = (Var {
                tape: self,
                index: node as u32,
            } * self.constant(coefficient))
            .sum();
            total = total + (term - term.detach());
        }
        let marker = Op::Estimator(EstimatorOp::Surrogate { covered });
        Ok(self.push_marker(marker, total.index, location))
    }
}
