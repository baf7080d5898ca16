//! The policy, the baselines, and a batch of episodes recorded on the tape.

use ndarray::{Array2, Axis};
use rand::rngs::StdRng;
use stograd::dist::Categorical;
use stograd::estimator::{Baseline, EmaBaseline};
use stograd::{Estimator, Params, Tape, Var};
use stograd_nn::layers::{Activation, Mlp};

use crate::cartpole::{MAX_STEPS, REWARD, RUNNING, step_on_tape};
use crate::{BaselineArg, Error};

/// Returns are divided by this before the value network regresses on them, so that its
/// targets are of order 1.
pub const RETURN_SCALE: f64 = 100.0;

/// What each action's credit is compared against.
pub enum Critic {
    /// No baseline.
    None,
    /// One average per step index.
    Ema(Vec<EmaBaseline<f64>>),
    /// `V(s, t / 500)`, predicting the reward-to-go over [`RETURN_SCALE`].
    Value(Mlp),
    /// The other episodes of the batch.
    LeaveOneOut,
}

/// The policy network and the baseline.
pub struct Agent {
    pub policy: Mlp,
    pub critic: Critic,
}

impl Agent {
    /// The policy `4 → hidden → 2` (tanh), its parameters under `policy`, and the value
    /// network `5 → hidden → 1` under `value` for the learned baseline.
    pub fn new(
        params: &mut Params<f64>,
        baseline: BaselineArg,
        hidden: &[usize],
        rng: &mut StdRng,
    ) -> Result<Agent, Error> {
        let widths = |input: usize, output: usize| {
            let mut w = vec![input];
            w.extend_from_slice(hidden);
            w.push(output);
            w
        };
        let policy = Mlp::new(params, "policy", &widths(4, 2), Activation::Tanh, rng)?;
        let critic = match baseline {
            BaselineArg::None => Critic::None,
            BaselineArg::Ema => Critic::Ema(
                (0..MAX_STEPS)
                    .map(|_| EmaBaseline::new(0.9))
                    .collect::<stograd::Result<_>>()?,
            ),
            BaselineArg::Learned => Critic::Value(Mlp::new(
                params,
                "value",
                &widths(5, 1),
                Activation::Tanh,
                rng,
            )?),
            BaselineArg::Loo => Critic::LeaveOneOut,
            BaselineArg::All => unreachable!("`all` is split into one run per baseline"),
        };
        Ok(Agent { policy, critic })
    }

    /// The baseline of the draw at step `t`, whose states are `obs` (`[E, 4]`) and running
    /// flags `running` (`[E, 1]`). A learned baseline is in the cost's units
    /// (`−reward-to-go / E`) and 0 for an episode that has ended, whose credit is 0.
    fn baseline<'t>(
        &self,
        obs: Var<'t, f64>,
        running: Var<'t, f64>,
        t: usize,
    ) -> Baseline<'t, f64> {
        match &self.critic {
            Critic::None => Baseline::None,
            Critic::Ema(averages) => Baseline::Ema(averages[t].clone()),
            Critic::Value(value) => {
                let tape = obs.tape();
                let rows = obs.shape()[0];
                let time = tape.constant(Array2::from_elem((rows, 1), t as f64 / MAX_STEPS as f64));
                let v = value.forward(tape, Var::concat(&[obs, time], 1));
                Baseline::Learned((v * running * (-RETURN_SCALE / rows as f64)).reshape(&[rows]))
            }
            Critic::LeaveOneOut => Baseline::LeaveOneOut {
                group: obs.shape()[0],
            },
        }
    }
}

/// A batch of episodes on a tape.
pub struct Rollout<'t> {
    /// Minus the mean return: its backward is the REINFORCE gradient.
    pub loss: Var<'t, f64>,
    /// Each episode's return, `[E]`.
    pub returns: Var<'t, f64>,
    /// The states each draw saw and the draws.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "the tests rebuild the gradient from them")
    )]
    pub steps: Vec<(Var<'t, f64>, Var<'t, f64>)>,
}

/// Runs one episode per row of `starts` until all have ended or 500 steps have passed.
pub fn rollout<'t>(
    tape: &'t Tape<'t, f64>,
    agent: &Agent,
    starts: Array2<f64>,
    rng: &mut StdRng,
) -> Result<Rollout<'t>, Error> {
    let mut state = tape.constant(starts);
    let mut rewards = Vec::new();
    let mut steps = Vec::new();
    for t in 0..MAX_STEPS {
        let obs = state.slice(1, 0..RUNNING);
        let running = state.slice(1, RUNNING..RUNNING + 1);
        // an ended episode's logits are 0: its draws have no gradient
        let logits = agent.policy.forward(tape, obs) * running;
        let estimator = Estimator::ScoreFunction {
            baseline: agent.baseline(obs, running, t),
        };
        let action = tape.sample_with(&Categorical::from_logits(logits)?, estimator, rng)?;
        steps.push((state, action));
        let next = step_on_tape(state, action);
        rewards.push(next.slice(1, REWARD..REWARD + 1));
        state = next.slice(1, 0..REWARD);
        if running_count(next) == 0 {
            break;
        }
    }
    let returns = Var::concat(&rewards, 1).sum_axis(1);
    Ok(Rollout {
        loss: -returns.mean(),
        returns,
        steps,
    })
}

/// How many episodes a step's output leaves running.
fn running_count(next: Var<'_, f64>) -> usize {
    let v = next.value();
    v.index_axis(Axis(1), RUNNING)
        .iter()
        .filter(|&&r| r == 1.0)
        .count()
}

/// The reward-to-go equivalence: on one batch of an untrained agent's episodes, the tape's
/// gradient equals `Σ_{e,t} ∇ log π(a_{e,t} | s_{e,t}) · (Q_{e,t} − b_{e,t})` written out by
/// hand, with `Q` the reward-to-go credit, for each baseline; the full return in place of `Q`
/// gives another gradient. The episodes are replayed by hand from the tape's start and
/// actions, and each `∇ log π` comes from a tape of its own holding one state.
#[cfg(test)]
mod tests {
    use ndarray::ArrayD;
    use rand::SeedableRng;

    use super::*;
    use crate::cartpole::{State, initial_states};

    /// Episodes per batch in the reward-to-go tests.
    const E: usize = 4;

    /// One episode replayed by hand: the state before each step and the action taken.
    type Episode = Vec<(State, usize)>;

    /// An untrained agent with `baseline` and its parameters, in f64.
    fn agent(baseline: BaselineArg) -> (Params<f64>, Agent) {
        let mut params = Params::new();
        let mut rng = StdRng::seed_from_u64(5);
        let agent = Agent::new(&mut params, baseline, &[8], &mut rng).unwrap();
        (params, agent)
    }

    /// One batch on the tape: its gradient, and each episode replayed by hand from the
    /// tape's start and actions (the replay checks that the tape saw the same states).
    fn record(params: &Params<f64>, agent: &Agent) -> (stograd::Gradients<f64>, Vec<Episode>) {
        let tape = Tape::with_params(params);
        let mut rng = StdRng::seed_from_u64(11);
        let rollout = rollout(&tape, agent, initial_states(E, &mut rng), &mut rng).unwrap();
        let grads = rollout.loss.backward().unwrap();
        let steps: Vec<_> = rollout
            .steps
            .iter()
            .map(|(s, a)| (s.value(), a.value()))
            .collect();
        let episodes: Vec<Episode> = (0..E)
            .map(|e| {
                let row = |states: &ArrayD<f64>| State {
                    x: states[[e, 0]],
                    x_dot: states[[e, 1]],
                    theta: states[[e, 2]],
                    theta_dot: states[[e, 3]],
                };
                let mut s = row(&steps[0].0);
                let mut episode = Vec::new();
                for (t, (states, actions)) in steps.iter().enumerate() {
                    assert_eq!(row(states), s, "episode {e}, step {t}");
                    assert_eq!(states[[e, RUNNING]], 1.0);
                    let a = actions[[e]] as usize;
                    episode.push((s, a));
                    s = s.step(a == 1);
                    if s.failed() {
                        break;
                    }
                }
                assert!(s.failed(), "episode {e} ends within the batch");
                episode
            })
            .collect();
        let lengths: Vec<usize> = episodes.iter().map(Vec::len).collect();
        assert!(
            lengths.iter().any(|&n| n != lengths[0]),
            "the episodes should end at different steps, to exercise ended rows: {lengths:?}"
        );
        (grads, episodes)
    }

    /// `∇ log π(a | s)` for each policy parameter, on a tape of its own.
    fn score(params: &Params<f64>, agent: &Agent, s: State, a: usize) -> Vec<ArrayD<f64>> {
        let tape = Tape::with_params(params);
        let obs = tape.constant(ndarray::array![[s.x, s.x_dot, s.theta, s.theta_dot]]);
        let log_prob = agent
            .policy
            .forward(&tape, obs)
            .log_softmax(1)
            .slice(1, a..a + 1);
        let grads = log_prob.sum().backward().unwrap();
        params
            .ids_under("policy")
            .map(|id| grads.param(id).unwrap().clone())
            .collect()
    }

    /// `Σ_e Σ_{t < T_e} weight(e, t) · ∇ log π(a_{e,t} | s_{e,t})`.
    fn hand_gradient(
        params: &Params<f64>,
        agent: &Agent,
        episodes: &[Episode],
        weight: impl Fn(usize, usize) -> f64,
    ) -> Vec<ArrayD<f64>> {
        let mut total: Vec<ArrayD<f64>> = params
            .ids_under("policy")
            .map(|id| ArrayD::zeros(params.get(id).raw_dim()))
            .collect();
        for (e, episode) in episodes.iter().enumerate() {
            for (t, &(s, a)) in episode.iter().enumerate() {
                for (sum, g) in total.iter_mut().zip(score(params, agent, s, a)) {
                    sum.scaled_add(weight(e, t), &g);
                }
            }
        }
        total
    }

    /// The credit of draw `(e, t)` in the cost's units: minus the reward-to-go over `E`,
    /// `−(T_e − t)/E`, and 0 after the episode ended.
    fn reward_to_go(episodes: &[Episode], e: usize, t: usize) -> f64 {
        let len = episodes[e].len();
        -(len.saturating_sub(t) as f64) / E as f64
    }

    /// The largest difference between the tape's gradient and `hand`, relative to the
    /// largest element of `hand`.
    fn relative_difference(
        params: &Params<f64>,
        prefix: &str,
        grads: &stograd::Gradients<f64>,
        hand: &[ArrayD<f64>],
    ) -> f64 {
        let scale = hand.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(
            scale > 0.1,
            "a gradient to compare: largest element {scale}"
        );
        let worst = params
            .ids_under(prefix)
            .zip(hand)
            .flat_map(|(id, h)| {
                let g = grads.param(id).unwrap();
                assert_eq!(g.shape(), h.shape());
                g.iter()
                    .zip(h)
                    .map(|(a, b)| (a - b).abs())
                    .collect::<Vec<_>>()
            })
            .fold(0.0f64, f64::max);
        worst / scale
    }

    /// Agreement to rounding: the sums run over about a hundred terms in another order.
    const ROUNDING: f64 = 1e-12;

    #[test]
    fn the_tape_gives_the_reward_to_go_gradient_without_a_baseline() {
        let (params, agent) = agent(BaselineArg::None);
        let (grads, episodes) = record(&params, &agent);
        let hand = hand_gradient(&params, &agent, &episodes, |e, t| {
            reward_to_go(&episodes, e, t)
        });
        let d = relative_difference(&params, "policy", &grads, &hand);
        println!("no baseline: relative difference {d:e}");
        assert!(d < ROUNDING, "tape vs reward-to-go: {d:e}");
        // crediting every action with the whole return gives another gradient
        let full = hand_gradient(&params, &agent, &episodes, |e, _| {
            reward_to_go(&episodes, e, 0)
        });
        let d = relative_difference(&params, "policy", &grads, &full);
        println!("no baseline, full return: relative difference {d:e}");
        assert!(d > 0.1, "the full-return gradient should differ: {d:e}");
    }

    #[test]
    fn the_tape_gives_the_reward_to_go_gradient_with_a_leave_one_out_baseline() {
        let (params, agent) = agent(BaselineArg::Loo);
        let (grads, episodes) = record(&params, &agent);
        // the mean credit of the other episodes at the same step
        let loo = |credit: &dyn Fn(usize, usize) -> f64, e: usize, t: usize| {
            let others: f64 = (0..E).filter(|&o| o != e).map(|o| credit(o, t)).sum();
            credit(e, t) - others / (E - 1) as f64
        };
        let to_go = |e: usize, t: usize| reward_to_go(&episodes, e, t);
        let hand = hand_gradient(&params, &agent, &episodes, |e, t| loo(&to_go, e, t));
        let d = relative_difference(&params, "policy", &grads, &hand);
        println!("leave-one-out: relative difference {d:e}");
        assert!(d < ROUNDING, "tape vs reward-to-go: {d:e}");
        let whole = |e: usize, _: usize| reward_to_go(&episodes, e, 0);
        let full = hand_gradient(&params, &agent, &episodes, |e, t| loo(&whole, e, t));
        let d = relative_difference(&params, "policy", &grads, &full);
        println!("leave-one-out, full return: relative difference {d:e}");
        assert!(d > 0.1, "the full-return gradient should differ: {d:e}");
    }

    #[test]
    fn the_tape_gives_the_reward_to_go_gradient_with_a_moving_average_per_step() {
        let (params, agent) = agent(BaselineArg::Ema);
        let Critic::Ema(averages) = &agent.critic else {
            unreachable!()
        };
        // earlier iterations' averages, different at every step
        for (t, average) in averages.iter().enumerate() {
            average.observe(-3.0 + 0.1 * t as f64).unwrap();
        }
        let before: Vec<f64> = averages.iter().map(EmaBaseline::value).collect();
        let (grads, episodes) = record(&params, &agent);
        let hand = hand_gradient(&params, &agent, &episodes, |e, t| {
            reward_to_go(&episodes, e, t) - before[t]
        });
        let d = relative_difference(&params, "policy", &grads, &hand);
        println!("moving average: relative difference {d:e}");
        assert!(d < ROUNDING, "tape vs reward-to-go: {d:e}");
        // each step's average took in that step's mean credit, once
        for t in [0, 5] {
            let mean = (0..E).map(|e| reward_to_go(&episodes, e, t)).sum::<f64>() / E as f64;
            let want = 0.9 * before[t] + 0.1 * mean;
            assert!(
                (averages[t].value() - want).abs() < 1e-14,
                "step {t}: {want}"
            );
        }
    }

    #[test]
    fn the_tape_gives_the_reward_to_go_gradient_with_a_learned_baseline_and_trains_it() {
        let (params, agent) = agent(BaselineArg::Learned);
        let Critic::Value(value) = &agent.critic else {
            unreachable!()
        };
        let (grads, episodes) = record(&params, &agent);
        // b = −(100/E) V(s, t/500), and ∇b, on a tape of its own
        let baseline = |e: usize, t: usize| {
            let s = episodes[e][t].0;
            let tape = Tape::with_params(&params);
            let input = [s.x, s.x_dot, s.theta, s.theta_dot, t as f64 / 500.0];
            let input = tape.constant(Array2::from_shape_vec((1, 5), input.to_vec()).unwrap());
            let b = value.forward(&tape, input).sum() * (-RETURN_SCALE / E as f64);
            let grads = b.backward().unwrap();
            let db: Vec<ArrayD<f64>> = params
                .ids_under("value")
                .map(|id| grads.param(id).unwrap().clone())
                .collect();
            (b.item(), db)
        };
        let hand = hand_gradient(&params, &agent, &episodes, |e, t| {
            reward_to_go(&episodes, e, t) - baseline(e, t).0
        });
        let d = relative_difference(&params, "policy", &grads, &hand);
        println!("learned: relative difference {d:e}");
        assert!(d < ROUNDING, "tape vs reward-to-go: {d:e}");
        // the value network's gradient is that of its regression loss Σ (Q − b)²:
        // Σ_{e, t < T_e} −2 (Q − b) ∇b, with Q the reward-to-go credit
        let mut regression: Vec<ArrayD<f64>> = params
            .ids_under("value")
            .map(|id| ArrayD::zeros(params.get(id).raw_dim()))
            .collect();
        for (e, episode) in episodes.iter().enumerate() {
            for t in 0..episode.len() {
                let (b, db) = baseline(e, t);
                let coefficient = -2.0 * (reward_to_go(&episodes, e, t) - b);
                for (sum, g) in regression.iter_mut().zip(db) {
                    sum.scaled_add(coefficient, &g);
                }
            }
        }
        let d = relative_difference(&params, "value", &grads, &regression);
        println!("learned, the value network: relative difference {d:e}");
        assert!(d < ROUNDING, "tape vs regression gradient: {d:e}");
    }
}
