//! Layers: shapes, names, values against hand-computed ones, and gradients against finite
//! differences in f64 for every layer and activation.

use rand::SeedableRng;
use rand::rngs::StdRng;
use stograd::check::{Tolerance, gradcheck_params};
use stograd::ndarray::{Array2, ArrayD, array};
use stograd::{Params, Tape};
use stograd_nn::layers::{Activation, Linear, Mlp};

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn input(rows: usize, cols: usize) -> Array2<f64> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        ((i * 7 + j * 3) % 11) as f64 / 5.0 - 1.0
    })
}

#[test]
fn linear_computes_x_w_transposed_plus_b() {
    let mut params = Params::<f64>::new();
    let fc = Linear::new(&mut params, "fc", 2, 3, &mut rng(0)).unwrap();
    params
        .set(
            fc.weight,
            array![[1.0, 0.5], [0.0, 1.0], [-1.0, 0.0]].into_dyn(),
        )
        .unwrap();
    params
        .set(fc.bias.unwrap(), array![0.0, 0.0, 3.0].into_dyn())
        .unwrap();
    let tape = Tape::with_params(&params);
    let y = fc.forward(&tape, tape.constant(array![[1.0, 2.0]]));
    assert_eq!(y.value(), array![[2.0, 2.0, 2.0]].into_dyn());
    // any leading axes
    let y = fc.forward(&tape, tape.constant(ArrayD::zeros(vec![4, 5, 2])));
    assert_eq!(y.shape(), [4, 5, 3]);
}

#[test]
fn names_and_shapes_follow_torch() {
    let mut params = Params::<f32>::new();
    let mlp = Mlp::new(
        &mut params,
        "encoder",
        &[784, 400, 20],
        Activation::Relu,
        &mut rng(1),
    )
    .unwrap();
    let names: Vec<(String, Vec<usize>)> = params
        .iter()
        .map(|(_, n, v)| (n.to_owned(), v.shape().to_vec()))
        .collect();
    assert_eq!(
        names,
        [
            ("encoder.0.weight".to_owned(), vec![400, 784]),
            ("encoder.0.bias".to_owned(), vec![400]),
            ("encoder.1.weight".to_owned(), vec![20, 400]),
            ("encoder.1.bias".to_owned(), vec![20]),
        ]
    );
    assert_eq!((mlp.in_features(), mlp.out_features()), (784, 20));
    let fc = Linear::no_bias(&mut params, "head", 20, 5, &mut rng(2)).unwrap();
    assert!(fc.bias.is_none() && params.id("head.bias").is_err());
}

#[test]
fn bad_settings_are_errors() {
    let mut params = Params::<f64>::new();
    Linear::new(&mut params, "fc", 3, 2, &mut rng(0)).unwrap();
    let taken = Linear::new(&mut params, "fc", 3, 2, &mut rng(0)).unwrap_err();
    assert!(taken.to_string().contains("fc.weight"), "{taken}");
    assert!(Linear::new(&mut params, "other", 3, 0, &mut rng(0)).is_err());
    assert!(Mlp::new(&mut params, "m", &[3], Activation::Relu, &mut rng(0)).is_err());
    assert!(Linear::new(&mut params, "bad..name", 3, 2, &mut rng(0)).is_err());
}

#[test]
fn linear_gradients_with_and_without_bias() {
    let x = input(4, 3);
    for bias in [true, false] {
        let mut params = Params::<f64>::new();
        let fc = if bias {
            Linear::new(&mut params, "fc", 3, 2, &mut rng(3)).unwrap()
        } else {
            Linear::no_bias(&mut params, "fc", 3, 2, &mut rng(3)).unwrap()
        };
        let report = gradcheck_params(
            &params,
            |tape| fc.forward(tape, tape.constant(x.clone())),
            Tolerance::default(),
        )
        .unwrap();
        assert_eq!(report.elements, if bias { 8 } else { 6 });
    }
}

#[test]
fn mlp_gradients_for_every_activation() {
    let x = input(5, 4);
    let activations = [
        Activation::Relu,
        Activation::LeakyRelu(0.1),
        Activation::Elu(1.0),
        Activation::Gelu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Softplus,
        Activation::Identity,
    ];
    for (k, activation) in activations.into_iter().enumerate() {
        let mut params = Params::<f64>::new();
        let mlp = Mlp::new(
            &mut params,
            "mlp",
            &[4, 6, 3],
            activation,
            &mut rng(10 + k as u64),
        )
        .unwrap();
        gradcheck_params(
            &params,
            |tape| mlp.forward(tape, tape.constant(x.clone())),
            Tolerance::default(),
        )
        .unwrap_or_else(|e| panic!("{activation:?}: {e}"));
    }
}
