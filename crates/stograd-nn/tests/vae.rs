//! The VAE's bounds: gradients against finite differences with the noise held fixed, the
//! IWAE bound's order and growth in `k`, both bounds against the closed forms of a
//! linear-Gaussian model, and the analytic KL against its Monte Carlo estimate.
//!
//! Statistical checks compare means of independent draws within 4 standard errors of the same
//! samples; with 24 such comparisons at `P(|Z| > 4) = 6.3·10⁻⁵` each, the family-wise error rate
//! is below 0.2% (Bonferroni). Seeds are fixed.

use rand::SeedableRng;
use rand::rngs::StdRng;
use stograd::check::{Tolerance, gradcheck_params};
use stograd::ndarray::{Array1, Array2, ArrayD, array};
use stograd::{Params, Tape};
use stograd_nn::layers::Activation;
use stograd_nn::vae::{KlEstimate, Likelihood, Posterior, Vae, VaeConfig};

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

const FAMILIES: [Posterior; 3] = [
    Posterior::Diagonal,
    Posterior::Cholesky,
    Posterior::LowRank { rank: 2 },
];

fn small(posterior: Posterior, seed: u64) -> (Params<f64>, Vae) {
    let mut params = Params::new();
    let config = VaeConfig {
        input: 6,
        hidden: vec![5],
        latent: 3,
        posterior,
        activation: Activation::Tanh,
        likelihood: Likelihood::Bernoulli,
    };
    let vae = Vae::new(&mut params, "vae", config, &mut rng(seed)).unwrap();
    (params, vae)
}

fn pixels(rows: usize) -> Array2<f64> {
    Array2::from_shape_fn((rows, 6), |(i, j)| ((i * 5 + j * 3) % 7) as f64 / 6.0)
}

/// Mean and standard error.
fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

#[test]
fn elbo_and_iwae_gradients_with_the_noise_held_fixed() {
    let x = pixels(4);
    for (k, posterior) in FAMILIES.into_iter().enumerate() {
        let (params, vae) = small(posterior, 10 + k as u64);
        for kl in [KlEstimate::Analytic, KlEstimate::MonteCarlo] {
            gradcheck_params(
                &params,
                |tape| {
                    let e = vae.elbo_with(tape, tape.constant(x.clone()), kl, &mut rng(7));
                    e.unwrap().elbo
                },
                Tolerance::default(),
            )
            .unwrap_or_else(|e| panic!("{posterior:?} {kl:?}: {e}"));
        }
        gradcheck_params(
            &params,
            |tape| {
                vae.iwae_bound(tape, tape.constant(x.clone()), 3, &mut rng(8))
                    .unwrap()
            },
            Tolerance::default(),
        )
        .unwrap_or_else(|e| panic!("{posterior:?} IWAE: {e}"));
    }
}

#[test]
fn the_analytic_kl_agrees_with_its_monte_carlo_estimate() {
    let x = pixels(2);
    for (k, posterior) in FAMILIES.into_iter().enumerate() {
        let (params, vae) = small(posterior, 20 + k as u64);
        let tape = Tape::inference(&params);
        let xv = tape.constant(x.clone());
        let analytic = vae.elbo(&tape, xv, &mut rng(0)).unwrap().kl.value();
        let mut r = rng(30 + k as u64);
        let draws: Vec<ArrayD<f64>> = (0..20_000)
            .map(|_| {
                vae.elbo_with(&tape, xv, KlEstimate::MonteCarlo, &mut r)
                    .unwrap()
                    .kl
                    .value()
            })
            .collect();
        for row in 0..2 {
            let column: Vec<f64> = draws.iter().map(|d| d[row]).collect();
            let (m, se) = mean_se(&column);
            assert!(
                (m - analytic[row]).abs() < 4.0 * se,
                "{posterior:?} row {row}: Monte Carlo {m} ± {se}, analytic {}",
                analytic[row]
            );
        }
    }
}

#[test]
fn the_iwae_bound_lies_above_the_elbo_and_grows_with_k() {
    let (params, vae) = small(Posterior::Diagonal, 40);
    let x = pixels(3);
    let reps = 600;
    let mut estimates = Vec::new();
    let mut r = rng(41);
    let (elbo, elbo_se) = {
        let mut values = Vec::new();
        for _ in 0..reps {
            let (e, _) = vae.evaluate(&params, &x, 1, &mut r).unwrap();
            values.push(e.mean().unwrap());
        }
        mean_se(&values)
    };
    for k in [1, 4, 16, 64] {
        let values: Vec<f64> = (0..reps)
            .map(|_| {
                vae.evaluate(&params, &x, k, &mut r)
                    .unwrap()
                    .1
                    .mean()
                    .unwrap()
            })
            .collect();
        estimates.push((k, mean_se(&values)));
    }
    println!("ELBO {elbo:.4}; IWAE {estimates:?}");
    // k = 1 is the ELBO with a one-sample KL: the same expectation
    let (m1, se1) = estimates[0].1;
    assert!(
        (m1 - elbo).abs() < 4.0 * se1.hypot(elbo_se),
        "IWAE-1 {m1} vs ELBO {elbo}"
    );
    for pair in estimates.windows(2) {
        let ((k0, (a, sa)), (k1, (b, sb))) = (pair[0], pair[1]);
        assert!(
            b > a - 4.0 * sa.hypot(sb),
            "IWAE-{k1} {b} below IWAE-{k0} {a}"
        );
    }
    let (m64, se64) = estimates[3].1;
    assert!(
        m64 > elbo + 4.0 * se64,
        "IWAE-64 {m64} is not above the ELBO {elbo}"
    );
}

/// A linear-Gaussian model: `z ~ N(0, I₂)`, `x | z ~ N(W z + c, σ² I₃)`, so
/// `p(x) = N(c, W Wᵀ + σ² I)` and `p(z | x) = N(m, S)`, `S = (I + WᵀW/σ²)⁻¹`,
/// `m = S Wᵀ (x − c)/σ²`.
struct LinearGaussian {
    w: Array2<f64>,
    c: Array1<f64>,
    sigma: f64,
}

impl LinearGaussian {
    fn new() -> Self {
        LinearGaussian {
            w: array![[1.0, 0.5], [-0.3, 0.8], [0.2, -1.1]],
            c: array![0.1, -0.2, 0.3],
            sigma: 0.7,
        }
    }

    fn log_evidence(&self, x: &Array1<f64>) -> f64 {
        let cov = self.w.dot(&self.w.t()) + Array2::<f64>::eye(3) * self.sigma.powi(2);
        let (inv, det) = invert(&cov);
        let r = x - &self.c;
        -0.5 * (r.dot(&inv.dot(&r)) + det.ln() + 3.0 * (2.0 * std::f64::consts::PI).ln())
    }

    /// `(m, S)` of the true posterior.
    fn posterior(&self, x: &Array1<f64>) -> (Array1<f64>, Array2<f64>) {
        let s2 = self.sigma.powi(2);
        let precision = Array2::<f64>::eye(2) + self.w.t().dot(&self.w) / s2;
        let (s, _) = invert(&precision);
        let m = s.dot(&self.w.t().dot(&(x - &self.c))) / s2;
        (m, s)
    }

    /// A VAE with this decoder, and an encoder whose head is `mu_w x + mu_b` for the mean and
    /// the constant `head_b` for the rest.
    fn vae(
        &self,
        posterior: Posterior,
        mu_w: Array2<f64>,
        mu_b: Array1<f64>,
        rest: Vec<f64>,
    ) -> (Params<f64>, Vae) {
        let mut params = Params::new();
        let config = VaeConfig {
            input: 3,
            hidden: vec![],
            latent: 2,
            posterior,
            activation: Activation::Identity,
            likelihood: Likelihood::Normal { scale: self.sigma },
        };
        let vae = Vae::new(&mut params, "lg", config, &mut rng(0)).unwrap();
        let head = vae.encoder.layers[0].clone();
        let extra = rest.len();
        let mut weight = Array2::<f64>::zeros((2 + extra, 3));
        weight
            .slice_axis_mut(stograd::ndarray::Axis(0), (0..2).into())
            .assign(&mu_w);
        let mut bias = Array1::<f64>::zeros(2 + extra);
        bias.slice_axis_mut(stograd::ndarray::Axis(0), (0..2).into())
            .assign(&mu_b);
        bias.slice_axis_mut(stograd::ndarray::Axis(0), (2..2 + extra).into())
            .assign(&Array1::from(rest));
        params.set(head.weight, weight.into_dyn()).unwrap();
        params.set(head.bias.unwrap(), bias.into_dyn()).unwrap();
        let dec = vae.decoder.layers[0].clone();
        params.set(dec.weight, self.w.clone().into_dyn()).unwrap();
        params
            .set(dec.bias.unwrap(), self.c.clone().into_dyn())
            .unwrap();
        (params, vae)
    }
}

/// The inverse and determinant of a small symmetric positive definite matrix, by Gauss–Jordan.
fn invert(a: &Array2<f64>) -> (Array2<f64>, f64) {
    let n = a.nrows();
    let mut m = a.clone();
    let mut inv = Array2::<f64>::eye(n);
    let mut det = 1.0;
    for i in 0..n {
        let p = m[[i, i]];
        det *= p;
        for j in 0..n {
            m[[i, j]] /= p;
            inv[[i, j]] /= p;
        }
        for r in 0..n {
            if r != i {
                let f = m[[r, i]];
                for j in 0..n {
                    m[[r, j]] -= f * m[[i, j]];
                    inv[[r, j]] -= f * inv[[i, j]];
                }
            }
        }
    }
    (inv, det)
}

#[test]
fn with_the_true_posterior_both_bounds_equal_the_evidence() {
    let model = LinearGaussian::new();
    let x = array![0.8, -0.4, 1.2];
    let (m, s) = model.posterior(&x);
    // m = A x + a with A = S Wᵀ/σ²; L = chol(S), its diagonal as logs
    let a = s.dot(&model.w.t()) / model.sigma.powi(2);
    let offset = -a.dot(&model.c);
    assert!((a.dot(&x) + &offset - &m).iter().all(|v| v.abs() < 1e-12));
    let l00 = s[[0, 0]].sqrt();
    let l10 = s[[1, 0]] / l00;
    let l11 = (s[[1, 1]] - l10 * l10).sqrt();
    let (params, vae) = model.vae(
        Posterior::Cholesky,
        a,
        offset,
        vec![l00.ln(), l10, l11.ln()],
    );
    let truth = model.log_evidence(&x);
    let xs = x.clone().insert_axis(stograd::ndarray::Axis(0));
    // every importance weight is p(x): the bounds are exact, draw by draw
    for k in [1, 10] {
        let (_, iwae) = vae.evaluate(&params, &xs, k, &mut rng(k as u64)).unwrap();
        assert!(
            (iwae[0] - truth).abs() < 1e-10,
            "IWAE-{k} {} vs log p(x) {truth}",
            iwae[0]
        );
    }
    let tape = Tape::inference(&params);
    let mut r = rng(3);
    for _ in 0..10 {
        let e = vae.elbo_with(
            &tape,
            tape.constant(xs.clone()),
            KlEstimate::MonteCarlo,
            &mut r,
        );
        let e = e.unwrap().elbo.item();
        assert!((e - truth).abs() < 1e-10, "ELBO {e} vs log p(x) {truth}");
    }
}

#[test]
fn with_a_diagonal_posterior_the_elbo_gap_is_the_kl_and_iwae_closes_it() {
    let model = LinearGaussian::new();
    let x = array![0.8, -0.4, 1.2];
    let (m, s) = model.posterior(&x);
    // q = N(m + δ, diag(v)): off the true mean, and without the correlation
    let shift = array![0.3, -0.2];
    let v = array![0.6 * s[[0, 0]], 1.3 * s[[1, 1]]];
    let (params, vae) = model.vae(
        Posterior::Diagonal,
        Array2::zeros((2, 3)),
        &m + &shift,
        v.iter().map(|v| v.ln()).collect(),
    );
    // KL(N(μ, V) ‖ N(m, S)) = ½ [tr(S⁻¹V) + (m − μ)ᵀ S⁻¹ (m − μ) − 2 + ln det S − ln det V]
    let (s_inv, det_s) = invert(&s);
    let kl = 0.5
        * (s_inv[[0, 0]] * v[0] + s_inv[[1, 1]] * v[1] + shift.dot(&s_inv.dot(&shift)) - 2.0
            + det_s.ln()
            - (v[0] * v[1]).ln());
    let truth = model.log_evidence(&x);
    let xs = x.insert_axis(stograd::ndarray::Axis(0));
    let mut r = rng(50);
    let mut bound = |k: usize, reps: usize| {
        let values: Vec<f64> = (0..reps)
            .map(|_| vae.evaluate(&params, &xs, k, &mut r).unwrap().1[0])
            .collect();
        mean_se(&values)
    };
    let (elbo, se) = {
        let mut r2 = rng(51);
        let values: Vec<f64> = (0..20_000)
            .map(|_| vae.evaluate(&params, &xs, 1, &mut r2).unwrap().0[0])
            .collect();
        mean_se(&values)
    };
    assert!(
        (elbo - (truth - kl)).abs() < 4.0 * se,
        "ELBO {elbo} ± {se}, log p(x) − KL = {} − {kl}",
        truth
    );
    let gaps: Vec<(usize, f64, f64)> = [1, 10, 100, 1000]
        .into_iter()
        .map(|k| {
            let (b, se) = bound(k, 400);
            (k, truth - b, se)
        })
        .collect();
    println!("KL {kl:.4}; log p(x) − IWAE-k: {gaps:?}");
    for &(k, gap, se) in &gaps {
        assert!(gap > -4.0 * se, "IWAE-{k} exceeds log p(x) by {}", -gap);
    }
    // the gap shrinks about as 1/k: by k = 1000 it is a small part of the KL
    let (_, gap_1000, se_1000) = gaps[3];
    assert!(
        gap_1000 + 4.0 * se_1000 < 0.05 * kl,
        "IWAE-1000 gap {gap_1000} vs KL {kl}"
    );
}

#[test]
fn bad_configurations_are_errors() {
    let mut params = Params::<f32>::new();
    let config = |latent, posterior| VaeConfig {
        input: 4,
        hidden: vec![3],
        latent,
        posterior,
        ..VaeConfig::default()
    };
    assert!(
        Vae::new(
            &mut params,
            "a",
            config(0, Posterior::Diagonal),
            &mut rng(0)
        )
        .is_err()
    );
    assert!(
        Vae::new(
            &mut params,
            "b",
            config(3, Posterior::LowRank { rank: 3 }),
            &mut rng(0)
        )
        .is_err()
    );
    assert!(
        Vae::new(
            &mut params,
            "c",
            config(3, Posterior::LowRank { rank: 0 }),
            &mut rng(0)
        )
        .is_err()
    );
    let vae = Vae::new(
        &mut params,
        "d",
        config(3, Posterior::Diagonal),
        &mut rng(0),
    )
    .unwrap();
    let tape = Tape::with_params(&params);
    let x = tape.constant(Array2::<f32>::zeros((2, 4)));
    assert!(vae.iwae_bound(&tape, x, 0, &mut rng(0)).is_err());
}
