//! Pathwise sample nodes, with plain or antithetic noise.

use ndarray::{ArrayD, Axis};
use rand::Rng;

use super::{Estimator, unsupported};
use crate::dist::Distribution;
use crate::{Result, Scalar, Tape, Var};

/// Draws the noise, records it as a constant and runs the distribution's path; returns the
/// path's end and the noise node.
pub(super) fn sample<'t, F, D>(
    tape: &'t Tape<'t, F>,
    dist: &D,
    rng: &mut dyn Rng,
    antithetic: bool,
) -> Result<(Var<'t, F>, u32)>
where
    F: Scalar,
    D: Distribution<'t, F> + ?Sized,
{
    let noise = if antithetic {
        antithetic_noise(dist, rng)?
    } else {
        dist.noise(rng)?
    };
    let noise = tape.constant(noise);
    Ok((dist.reparameterize(noise)?, noise.index))
}

/// Noise whose second half along the leading axis is the negation of the first half.
fn antithetic_noise<'t, F, D>(dist: &D, rng: &mut dyn Rng) -> Result<ArrayD<F>>
where
    F: Scalar,
    D: Distribution<'t, F> + ?Sized,
{
    let estimator = Estimator::<F>::Antithetic;
    if !dist.has_rsample() || !dist.symmetric_noise() {
        return Err(unsupported(
            &estimator,
            dist.name(),
            "antithetic pairs need a reparameterizable distribution with noise symmetric about 0"
                .into(),
        ));
    }
    let rows = dist.batch_shape().first().copied().unwrap_or(0);
    if rows == 0 || rows % 2 == 1 {
        return Err(unsupported(
            &estimator,
            dist.name(),
            format!(
                "the leading batch axis must have an even, non-zero length to pair rows; \
                 the batch shape is {:?}",
                dist.batch_shape()
            ),
        ));
    }
    let mut noise = dist.noise(rng)?;
    let half = rows / 2;
    let (first, mut second) = noise.view_mut().split_at(Axis(0), half);
    second.zip_mut_with(&first, |s, &f| *s = -f);
    Ok(noise)
}
