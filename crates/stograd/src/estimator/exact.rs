//! Exact expectations over small discrete distributions, by enumerating every outcome.
//!
//! The estimators are checked against the truth, not only against one another:
//! `E_q[f(x)] = Σₓ q(x) f(x)` summed over every joint outcome of the batch is an ordinary
//! differentiable value, so its backward pass gives the exact `∇θ E_q[f(x)]`, including the
//! part that flows through `q`'s probabilities.

use ndarray::{ArrayD, Axis, IxDyn};

use crate::dist::Distribution;
use crate::{Error, Result, Scalar, Var};

/// `E_q[Σ f(x)] = Σₓ q(x) · Σ f(x)` over every joint outcome `x` of the whole batch of `dist`,
/// as a 0-d `Var` whose gradient is the exact gradient of the expectation.
///
/// With `s` values per element and `n` batch elements there are `sⁿ` outcomes; `f` runs once
/// per outcome.
///
/// # Example
/// ```
/// use ndarray::array;
/// use stograd::dist::Bernoulli;
/// use stograd::estimator::exact_expectation;
/// use stograd::Tape;
///
/// let tape = Tape::<f64>::new();
/// let p = tape.variable(array![0.8]);
/// let q = Bernoulli::from_probs(p)?;
/// // E[(b − 0.45)²] = p·0.55² + (1 − p)·0.45², so ∂/∂p = 0.55² − 0.45² = 0.1
/// let e = exact_expectation(&q, |b| (b - 0.45).square(), 1 << 10)?;
/// let grad = e.backward()?.wrt(p).unwrap()[0];
/// assert!((grad - 0.1).abs() < 1e-12);
/// # Ok::<(), stograd::Error>(())
/// ```
///
/// # Errors
/// [`Error::Undefined`] when `dist` has no finite support; [`Error::InvalidArgument`] when
/// there are more than `max_outcomes` outcomes.
pub fn exact_expectation<'t, F, D>(
    dist: &D,
    f: impl Fn(Var<'t, F>) -> Var<'t, F>,
    max_outcomes: usize,
) -> Result<Var<'t, F>>
where
    F: Scalar,
    D: Distribution<'t, F> + ?Sized,
{
    let support = dist.enumerate_support()?;
    let values = support.shape()[0];
    let elements: usize = dist.batch_shape().iter().product();
    let event: usize = dist.event_shape().iter().product();
    let outcomes = (0..elements).try_fold(1usize, |acc, _| acc.checked_mul(values));
    let outcomes = match outcomes {
        Some(n) if n <= max_outcomes => n,
        _ => {
            return Err(Error::InvalidArgument {
                name: "outcomes",
                constraint: "at most max_outcomes",
                value: (values as f64).powi(elements as i32),
            });
        }
    };
    let per_value = support
        .to_shape((values, elements, event))
        .expect("support is [values, batch.., event..]")
        .to_owned();
    let draw_shape = crate::dist::draw_shape(dist.batch_shape(), dist.event_shape());
    let tape = dist.params()[0].tape();
    let mut total = tape.scalar(F::zero());
    for outcome in 0..outcomes {
        let mut x = ArrayD::zeros(IxDyn(&[elements, event]));
        let mut code = outcome;
        for (element, mut row) in x.outer_iter_mut().enumerate() {
            let value = code % values;
            code /= values;
            row.assign(
                &per_value
                    .index_axis(Axis(0), value)
                    .index_axis(Axis(0), element),
            );
        }
        let x = tape.constant(
            x.into_shape_with_order(IxDyn(&draw_shape))
                .expect("same count"),
        );
        let weight = dist.log_prob(x).sum().exp();
        total = total + weight * f(x).sum();
    }
    Ok(total)
}
