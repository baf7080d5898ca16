//! Initializers against their formulas: the sample mean and variance of a large weight whose
//! fan-in and fan-out differ, each within 4 standard errors of the same samples. With 26
//! statistics checked at `P(|Z| > 4) = 6.3·10⁻⁵` each, the family-wise error rate is below
//! 0.2% (Bonferroni). Seeds are fixed.

use rand::SeedableRng;
use rand::rngs::StdRng;
use stograd::ndarray::ArrayD;
use stograd_nn::init::{self, FanMode, Nonlinearity, calculate_gain, fans};

/// `[out, in]` = `[300, 200]`: fan_in 200, fan_out 300.
const SHAPE: [usize; 2] = [300, 200];

#[track_caller]
fn moments_match(w: &ArrayD<f64>, mean: f64, variance: f64, what: &str) {
    let n = w.len() as f64;
    let m = w.mean().unwrap();
    let v = w.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    let m4 = w.iter().map(|x| (x - m).powi(4)).sum::<f64>() / n;
    let (se_mean, se_var) = ((v / n).sqrt(), ((m4 - v * v) / n).sqrt());
    assert!(
        (m - mean).abs() < 4.0 * se_mean,
        "{what}: mean {m} vs {mean} (s.e. {se_mean})"
    );
    assert!(
        (v - variance).abs() < 4.0 * se_var,
        "{what}: variance {v} vs {variance} (s.e. {se_var})"
    );
}

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

#[test]
fn fans_of_linear_and_convolution_weights() {
    assert_eq!(fans(&[300, 200]).unwrap(), (200, 300));
    assert_eq!(fans(&[16, 3, 5, 5]).unwrap(), (75, 400));
    assert!(fans(&[10]).is_err());
    assert!(fans(&[0, 3]).is_err());
}

#[test]
fn gains_follow_torch() {
    assert_eq!(calculate_gain(Nonlinearity::Linear), 1.0);
    assert_eq!(calculate_gain(Nonlinearity::Sigmoid), 1.0);
    assert_eq!(calculate_gain(Nonlinearity::Tanh), 5.0 / 3.0);
    assert_eq!(calculate_gain(Nonlinearity::Relu), 2f64.sqrt());
    // √(2 / (1 + 0.2²))
    assert!((calculate_gain(Nonlinearity::LeakyRelu(0.2)) - (2.0 / 1.04f64).sqrt()).abs() < 1e-15);
}

#[test]
fn uniform_and_normal() {
    // U(a, b): mean (a + b)/2, variance (b − a)²/12
    let w = init::uniform::<f64>(&SHAPE, -0.5, 1.5, &mut rng(1)).unwrap();
    moments_match(&w, 0.5, 4.0 / 12.0, "uniform");
    assert!(w.iter().all(|&v| (-0.5..1.5).contains(&v)));
    let w = init::normal::<f64>(&SHAPE, 0.3, 2.0, &mut rng(2)).unwrap();
    moments_match(&w, 0.3, 4.0, "normal");
    assert_eq!(
        init::zeros::<f64>(&[2, 3]),
        ArrayD::<f64>::zeros(vec![2, 3])
    );
    assert!(init::constant::<f64>(&[4], 0.25).iter().all(|&v| v == 0.25));
}

#[test]
fn xavier() {
    let gain = 1.7;
    // Var = gain² · 2 / (fan_in + fan_out) for both; the uniform's bound is √3 σ
    let variance = gain * gain * 2.0 / 500.0;
    let w = init::xavier_uniform::<f64>(&SHAPE, gain, &mut rng(3)).unwrap();
    moments_match(&w, 0.0, variance, "xavier_uniform");
    let bound = gain * (6.0f64 / 500.0).sqrt();
    assert!(w.iter().all(|v| v.abs() <= bound));
    let w = init::xavier_normal::<f64>(&SHAPE, gain, &mut rng(4)).unwrap();
    moments_match(&w, 0.0, variance, "xavier_normal");
}

#[test]
fn kaiming_in_both_modes_and_gains() {
    let cases = [
        (FanMode::FanIn, Nonlinearity::Relu, 200.0),
        (FanMode::FanOut, Nonlinearity::Relu, 300.0),
        (FanMode::FanIn, Nonlinearity::LeakyRelu(0.1), 200.0),
        (FanMode::FanOut, Nonlinearity::Tanh, 300.0),
    ];
    for (k, (mode, nonlinearity, fan)) in cases.into_iter().enumerate() {
        let gain = calculate_gain(nonlinearity);
        // Var = gain² / fan
        let variance = gain * gain / fan;
        let what = format!("kaiming {mode:?} {nonlinearity:?}");
        let w = init::kaiming_uniform::<f64>(&SHAPE, mode, nonlinearity, &mut rng(10 + k as u64));
        moments_match(&w.unwrap(), 0.0, variance, &format!("{what} uniform"));
        let w = init::kaiming_normal::<f64>(&SHAPE, mode, nonlinearity, &mut rng(20 + k as u64));
        moments_match(&w.unwrap(), 0.0, variance, &format!("{what} normal"));
    }
}

#[test]
fn linear_default_is_uniform_over_one_over_root_fan_in() {
    // U(±1/√200): variance 1/(3·200)
    let w = init::linear_default::<f64>(&SHAPE, 200, &mut rng(30)).unwrap();
    moments_match(&w, 0.0, 1.0 / 600.0, "linear_default");
    assert!(w.iter().all(|v| v.abs() <= 1.0 / 200f64.sqrt()));
    // f32 draws the same distribution
    let w32 = init::linear_default::<f32>(&SHAPE, 200, &mut rng(31)).unwrap();
    moments_match(&w32.mapv(f64::from), 0.0, 1.0 / 600.0, "linear_default f32");
}

#[test]
fn bad_arguments_name_the_value() {
    let message = init::normal::<f64>(&[3], 0.0, -1.0, &mut rng(0))
        .unwrap_err()
        .to_string();
    assert!(message.contains("-1"), "{message}");
    assert!(init::uniform::<f64>(&[3], 1.0, 0.0, &mut rng(0)).is_err());
    assert!(init::uniform::<f64>(&[3], f64::NAN, 0.0, &mut rng(0)).is_err());
    assert!(init::linear_default::<f64>(&[3], 0, &mut rng(0)).is_err());
    assert!(init::xavier_uniform::<f64>(&[3], 1.0, &mut rng(0)).is_err());
}
