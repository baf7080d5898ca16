//! The cart-pole of Barto, Sutton & Anderson (1983), without friction (as Gym's
//! `CartPole-v1`), and its step as a tape op.

use std::f64::consts::PI;

use ndarray::{Array2, ArrayD, IxDyn};
use rand::RngExt;
use rand::rngs::StdRng;
use stograd::Var;
use stograd::ops::{Backward, CustomOp};

const GRAVITY: f64 = 9.8;
const CART_MASS: f64 = 1.0;
const POLE_MASS: f64 = 0.1;
/// Half the pole's length (m).
const HALF_LENGTH: f64 = 0.5;
const FORCE: f64 = 10.0;
/// The Euler time step (s).
const TAU: f64 = 0.02;
const THETA_LIMIT: f64 = 12.0 * PI / 180.0;
const X_LIMIT: f64 = 2.4;
/// Episodes are cut after this many steps.
pub const MAX_STEPS: usize = 500;

/// The cart's position and velocity, the pole's angle from upright and its angular velocity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct State {
    pub x: f64,
    pub x_dot: f64,
    pub theta: f64,
    pub theta_dot: f64,
}

impl State {
    /// One Euler step of length τ under a push of ±F:
    ///
    /// ```text
    /// M = m_c + m_p,  temp = (F + m_p l θ̇² sin θ) / M
    /// θ̈ = (g sin θ − cos θ · temp) / (l (4/3 − m_p cos² θ / M))
    /// ẍ = temp − m_p l θ̈ cos θ / M
    /// x ← x + τ ẋ,  ẋ ← ẋ + τ ẍ,  θ ← θ + τ θ̇,  θ̇ ← θ̇ + τ θ̈
    /// ```
    pub fn step(self, push_right: bool) -> State {
        let force = if push_right { FORCE } else { -FORCE };
        let total_mass = CART_MASS + POLE_MASS;
        let (sin, cos) = self.theta.sin_cos();
        let temp = (force + POLE_MASS * HALF_LENGTH * self.theta_dot.powi(2) * sin) / total_mass;
        let theta_acc = (GRAVITY * sin - cos * temp)
            / (HALF_LENGTH * (4.0 / 3.0 - POLE_MASS * cos * cos / total_mass));
        let x_acc = temp - POLE_MASS * HALF_LENGTH * theta_acc * cos / total_mass;
        State {
            x: self.x + TAU * self.x_dot,
            x_dot: self.x_dot + TAU * x_acc,
            theta: self.theta + TAU * self.theta_dot,
            theta_dot: self.theta_dot + TAU * theta_acc,
        }
    }

    /// Whether the pole has fallen or the cart left the track.
    pub fn failed(self) -> bool {
        self.x.abs() > X_LIMIT || self.theta.abs() > THETA_LIMIT
    }
}

/// The columns of a state row on the tape: the four coordinates, then 1 while the episode
/// runs and 0 after it ended; [`CartPoleStep`] appends the step's reward.
pub const RUNNING: usize = 4;
pub const REWARD: usize = 5;

/// The environment step as a tape op: `[E, 5]` states and `[E]` actions (0 pushes left, 1
/// right) in, `[E, 6]` out: the next states and each step's reward, 1 for a running episode
/// (the step that ends it included) and 0 for one that has ended, whose row stays as it was.
///
/// Recording the step on the tape gives the credit assignment its edges: the reward of step
/// `t` depends on the actions `a_0 … a_t` and on no others. The op is not affine (the
/// default of [`CustomOp::linear_in`]), so each step is a cost term of its own, and it keeps
/// rows, so each episode's reward is credited to that episode's actions alone. The step has
/// no backward: no parameter is upstream of a state (the actions are score-function draws,
/// which carry no path gradient), so no gradient would flow through it anyway.
pub struct CartPoleStep;

impl CustomOp<f64> for CartPoleStep {
    fn name(&self) -> &'static str {
        "cartpole_step"
    }

    fn forward(&self, inputs: &[&ArrayD<f64>]) -> ArrayD<f64> {
        let (states, actions) = (inputs[0], inputs[1]);
        let rows = states.shape()[0];
        let mut out = ArrayD::zeros(IxDyn(&[rows, REWARD + 1]));
        for r in 0..rows {
            let s = |c: usize| states[[r, c]];
            let now = State {
                x: s(0),
                x_dot: s(1),
                theta: s(2),
                theta_dot: s(3),
            };
            let (next, running, reward) = if s(RUNNING) == 1.0 {
                let next = now.step(actions[[r]] == 1.0);
                (next, if next.failed() { 0.0 } else { 1.0 }, 1.0)
            } else {
                (now, 0.0, 0.0)
            };
            let row = [
                next.x,
                next.x_dot,
                next.theta,
                next.theta_dot,
                running,
                reward,
            ];
            for (c, v) in row.into_iter().enumerate() {
                out[[r, c]] = v;
            }
        }
        out
    }

    fn backward(&self, _: &Backward<'_, f64>) -> Vec<Option<ArrayD<f64>>> {
        vec![None, None]
    }

    /// Each episode steps on its own.
    fn keeps_rows(&self, _: usize, _: &[&[usize]], _: &[usize]) -> bool {
        true
    }
}

/// Records one environment step of every episode.
///
/// # Panics
/// If `states` is not `[E, 5]` or `actions` not `[E]`.
#[track_caller]
pub fn step_on_tape<'t>(states: Var<'t, f64>, actions: Var<'t, f64>) -> Var<'t, f64> {
    let (s, a) = (states.shape(), actions.shape());
    assert!(
        s.len() == 2 && s[1] == REWARD && a == [s[0]],
        "cartpole_step: states must be [E, {REWARD}] and actions [E], got {s:?} and {a:?}"
    );
    states.tape().apply(CartPoleStep, &[states, actions])
}

/// `E` starting rows: coordinates uniform in ±0.05, running.
pub fn initial_states(episodes: usize, rng: &mut StdRng) -> Array2<f64> {
    Array2::from_shape_fn((episodes, REWARD), |(_, c)| {
        if c == RUNNING {
            1.0
        } else {
            rng.random_range(-0.05..0.05)
        }
    })
}

#[cfg(test)]
mod tests {
    use ndarray::Axis;
    use stograd::Tape;

    use super::*;

    #[track_caller]
    fn close(got: f64, want: f64, tol: f64) {
        assert!(
            (got - want).abs() <= tol,
            "got {got}, want {want} (tolerance {tol})"
        );
    }

    #[test]
    fn an_euler_step_matches_the_hand_arithmetic_for_both_pushes() {
        let s = State {
            x: 0.1,
            x_dot: -0.3,
            theta: 0.05,
            theta_dot: 0.4,
        };
        // sin 0.05 = 0.049979169270678, cos 0.05 = 0.998750260394966, M = 1.1, m_p l = 0.05
        let (sin, cos) = (0.049_979_169_270_678_33, 0.998_750_260_394_966_3);
        // the denominator of θ̈, the same for both pushes:
        // l (4/3 − m_p cos² θ / M) = 0.5 (1.333333 − 0.1 · 0.997502 / 1.1) = 0.621325662910348
        let den = 0.5 * (4.0 / 3.0 - 0.1 * cos * cos / 1.1);
        close(den, 0.621_325_662_910_347_9, 1e-15);
        for (push_right, force, want_temp, want_theta_acc, want_x_acc) in [
            // temp = (10 + 0.05 · 0.4² · 0.049979) / 1.1 = 10.0003998 / 1.1
            // θ̈ = (9.8 · 0.049979 − 0.998750 · 9.091273) / 0.621326 = −8.590115 / 0.621326
            // ẍ = 9.091273 − 0.05 · (−13.825463) · 0.998750 / 1.1
            (
                true,
                10.0,
                9.091_272_575_776_514,
                -13.825_463_048_297_175,
                9.718_917_340_302_323,
            ),
            // temp = (−10 + 0.0003998) / 1.1; θ̈ = (0.489796 + 9.079184) / 0.621326
            (
                false,
                -10.0,
                -9.090_545_606_041_667,
                15.400_910_056_084_074,
                -9.789_712_102_806_822,
            ),
        ] {
            let temp = (force + 0.05 * 0.4 * 0.4 * sin) / 1.1;
            close(temp, want_temp, 1e-14);
            let theta_acc = (9.8 * sin - cos * temp) / den;
            close(theta_acc, want_theta_acc, 1e-13);
            let x_acc = temp - 0.05 * theta_acc * cos / 1.1;
            close(x_acc, want_x_acc, 1e-13);
            let next = s.step(push_right);
            // x ← 0.1 + 0.02 · (−0.3) = 0.094 and θ ← 0.05 + 0.02 · 0.4 = 0.058 for both pushes
            close(next.x, 0.094, 1e-15);
            close(next.theta, 0.058, 1e-15);
            // ẋ ← −0.3 + 0.02 ẍ, θ̇ ← 0.4 + 0.02 θ̈
            close(next.x_dot, -0.3 + 0.02 * want_x_acc, 1e-14);
            close(next.theta_dot, 0.4 + 0.02 * want_theta_acc, 1e-14);
        }
        // pushing right: ẋ = −0.105622, θ̇ = 0.123491; left: ẋ = −0.495794, θ̇ = 0.708018
        let right = s.step(true);
        close(right.x_dot, -0.105_621_653_193_953_53, 1e-14);
        close(right.theta_dot, 0.123_490_739_034_056_5, 1e-14);
        let left = s.step(false);
        close(left.x_dot, -0.495_794_242_056_136_4, 1e-14);
        close(left.theta_dot, 0.708_018_201_121_681_6, 1e-14);
        // a second step right, from the first: x = 0.094 + 0.02 · (−0.105622) = 0.091888
        let two = right.step(true);
        close(two.x, 0.094 + 0.02 * right.x_dot, 1e-15);
        close(two.x, 0.091_887_566_936_120_94, 1e-14);
        close(two.theta, 0.058 + 0.02 * 0.123_490_739_034_056_5, 1e-14);
        close(two.x_dot, 0.088_623_460_660_722_58, 1e-13);
        close(two.theta_dot, -0.150_344_547_576_230_84, 1e-13);
    }

    #[test]
    fn episodes_end_past_12_degrees_or_2_4_m() {
        // 12° = 0.2094395 rad
        let leaning = State {
            x: 0.0,
            x_dot: 0.0,
            theta: 0.2,
            theta_dot: 0.5,
        };
        assert!(!leaning.failed());
        // θ ← 0.2 + 0.02 · 0.5 = 0.21 > 0.2094
        assert!(leaning.step(true).failed());
        let edge = State {
            x: 2.39,
            x_dot: 1.0,
            theta: 0.0,
            theta_dot: 0.0,
        };
        assert!(!edge.failed());
        // x ← 2.39 + 0.02 · 1 = 2.41 > 2.4, whatever the push
        assert!(edge.step(false).failed());
        assert!(State { x: -2.41, ..edge }.failed());
        assert!(
            State {
                theta: -0.21,
                ..leaning
            }
            .failed()
        );
    }

    #[test]
    fn the_tape_step_rewards_running_episodes_and_freezes_ended_ones() {
        let tape = Tape::<f64>::new();
        let states = tape.constant(ndarray::array![
            [0.1, -0.3, 0.05, 0.4, 1.0],  // keeps running
            [0.0, 0.0, 0.2, 0.5, 1.0],    // falls on this step
            [0.3, 0.2, -0.25, -1.0, 0.0], // ended before
        ]);
        let actions = tape.constant(ndarray::array![1.0, 0.0, 1.0]);
        let next = step_on_tape(states, actions).value();
        let s = State {
            x: 0.1,
            x_dot: -0.3,
            theta: 0.05,
            theta_dot: 0.4,
        }
        .step(true);
        let row = |r: usize| {
            next.index_axis(Axis(0), r)
                .iter()
                .copied()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            row(0),
            [s.x, s.x_dot, s.theta, s.theta_dot, 1.0, 1.0],
            "running: the next state, still running, reward 1"
        );
        assert_eq!(
            &row(1)[4..],
            [0.0, 1.0],
            "the last step earns 1 and ends it"
        );
        assert_eq!(
            row(2),
            [0.3, 0.2, -0.25, -1.0, 0.0, 0.0],
            "ended: frozen, reward 0"
        );
    }
}
