//! Whole training runs on the embedded digits: a classifier that must reach 95% test accuracy,
//! a resumed run that must match an uninterrupted one bit for bit, and a VAE whose test ELBO
//! must improve. Fixed seeds; each runs in about a second.

use rand::SeedableRng;
use rand::rngs::StdRng;
use stograd::ndarray::Array2;
use stograd::{Params, Tape};
use stograd_nn::checkpoint::{self, Checkpoint};
use stograd_nn::data::{self, Batches, Dataset};
use stograd_nn::layers::{Activation, Mlp};
use stograd_nn::loss::{accuracy, cross_entropy};
use stograd_nn::optim::{Adam, AdamConfig, Optimizer};
use stograd_nn::vae::{Vae, VaeConfig};

fn digits() -> (Dataset<f32>, Dataset<f32>) {
    data::digits::<f32>()
        .split(300, &mut data::epoch_rng(1, 0))
        .unwrap()
}

fn classifier(params: &mut Params<f32>) -> Mlp {
    let mut rng = StdRng::seed_from_u64(2);
    Mlp::new(params, "mlp", &[64, 128, 10], Activation::Relu, &mut rng).unwrap()
}

fn train_epoch(
    model: &Mlp,
    params: &mut Params<f32>,
    opt: &mut Adam<f32>,
    data: &Dataset<f32>,
    epoch: u64,
) {
    for batch in Batches::new(data, 32, data::epoch_rng(3, epoch)).unwrap() {
        let grads = {
            let tape = Tape::with_params(params);
            let logits = model.forward(&tape, tape.constant(batch.images));
            cross_entropy(logits, &batch.labels)
                .mean()
                .backward()
                .unwrap()
        };
        opt.step(params, &grads);
    }
}

fn adam() -> Adam<f32> {
    Adam::new(AdamConfig {
        lr: 2e-3,
        ..AdamConfig::default()
    })
    .unwrap()
}

#[test]
fn a_two_layer_mlp_reaches_95_percent_on_the_digits() {
    let (train, test) = digits();
    let mut params = Params::new();
    let model = classifier(&mut params);
    let mut opt = adam();
    for epoch in 1..=15 {
        train_epoch(&model, &mut params, &mut opt, &train, epoch);
    }
    let logits = {
        let tape = Tape::inference(&params);
        model
            .forward(&tape, tape.constant(test.images().clone()))
            .value()
    };
    let logits: Array2<f32> = logits.into_dimensionality().unwrap();
    let acc = accuracy(&logits, test.labels());
    println!("test accuracy {acc:.4}");
    assert!(acc >= 0.95, "test accuracy {acc}");
}

#[test]
fn a_resumed_run_matches_an_uninterrupted_one_bit_for_bit() {
    let (train, _) = digits();
    let straight = {
        let mut params = Params::new();
        let model = classifier(&mut params);
        let mut opt = adam();
        for epoch in 1..=2 {
            train_epoch(&model, &mut params, &mut opt, &train, epoch);
        }
        params
    };
    let dir = std::env::temp_dir().join(format!("stograd-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("epoch1.safetensors");
    {
        let mut params = Params::new();
        let model = classifier(&mut params);
        let mut opt = adam();
        train_epoch(&model, &mut params, &mut opt, &train, 1);
        let extra = Checkpoint::default()
            .with_state("optimizer", opt.state_dict(&params))
            .with_metadata("epoch", "1");
        checkpoint::save(&path, &params, &extra).unwrap();
    }
    // a fresh process would do this: build the model, load, continue at the next epoch
    let mut params = Params::new();
    let model = classifier(&mut params);
    let mut extra = checkpoint::load(&path, &mut params).unwrap();
    let mut opt = adam();
    opt.load_state_dict(&params, &extra.take_state("optimizer").unwrap())
        .unwrap();
    let epoch: u64 = extra.metadata["epoch"].parse().unwrap();
    train_epoch(&model, &mut params, &mut opt, &train, epoch + 1);
    std::fs::remove_dir_all(&dir).unwrap();
    for ((_, name, a), (_, _, b)) in straight.iter().zip(params.iter()) {
        assert!(
            a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name} differs"
        );
    }
}

#[test]
fn a_short_vae_run_improves_the_test_elbo() {
    let (train, test) = digits();
    let mut params = Params::new();
    let mut rng = StdRng::seed_from_u64(4);
    let config = VaeConfig {
        input: 64,
        hidden: vec![64],
        latent: 4,
        ..VaeConfig::default()
    };
    let vae = Vae::new(&mut params, "vae", config, &mut rng).unwrap();
    let mut opt = Adam::new(AdamConfig {
        lr: 3e-3,
        ..AdamConfig::default()
    })
    .unwrap();
    let test_elbo = |params: &Params<f32>, rng: &mut StdRng| {
        let (elbo, _) = vae.evaluate(params, test.images(), 1, rng).unwrap();
        elbo.mean().unwrap()
    };
    let before = test_elbo(&params, &mut rng);
    for epoch in 1..=10 {
        for batch in Batches::new(&train, 64, data::epoch_rng(5, epoch)).unwrap() {
            let grads = {
                let tape = Tape::with_params(&params);
                let elbo = vae
                    .elbo(&tape, tape.constant(batch.images), &mut rng)
                    .unwrap();
                (-elbo.elbo).sum().backward().unwrap()
            };
            opt.step(&mut params, &grads);
        }
    }
    let after = test_elbo(&params, &mut rng);
    println!("test ELBO per digit: {before:.2} before, {after:.2} after 10 epochs");
    // untrained, the decoder puts p ≈ ½ on every pixel: −64 ln 2 ≈ −44.4 plus a small KL;
    // ten epochs must gain at least 10 nats per digit
    assert!(after > before + 10.0, "{before} → {after}");
}
