//! The optimizers and schedules against independent references: ten-step trajectories from
//! `fixtures/optim/gen_optim.py` (numpy, following torch.optim's algorithm boxes), the
//! closed forms of PyTorch's schedulers, a resume from a state dict that continues bit for
//! bit, errors that name the bad value or key, and the parallel path against the sequential
//! one.
//!
//! The fixtures are JSON committed beside the script; the tests never run Python. Each
//! generic test runs in f32 and f64.

use ndarray::{ArrayD, IxDyn};
use serde_json::Value;
use stograd::{Gradients, Params, Scalar, Tape};
use stograd_nn::optim::{
    Adam, AdamConfig, AdamW, Optimizer, PARALLEL_CHUNK, Schedule, Sgd, SgdConfig,
};
use stograd_nn::{Error, StateDict};

for_each_float!(
    trajectories_match_the_reference,
    resume_from_state_dict_is_bitwise,
    parallel_and_sequential_paths_agree,
    moments_that_decay_end_exactly_zero,
);

const OPTIMIZERS: &str = include_str!("fixtures/optim/optimizers.json");
const SCHEDULES: &str = include_str!("fixtures/optim/schedules.json");

// ---------------------------------------------------------------------------------------
// Fixture plumbing
// ---------------------------------------------------------------------------------------

fn optimizers() -> Value {
    serde_json::from_str(OPTIMIZERS).expect("optimizers.json parses")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array of numbers")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is a number"))
}

fn flag(v: &Value, key: &str) -> bool {
    v[key]
        .as_bool()
        .unwrap_or_else(|| panic!("{key} is a bool"))
}

fn array<F: Scalar>(shape: &[usize], flat: &[f64]) -> ArrayD<F> {
    ArrayD::from_shape_vec(IxDyn(shape), flat.iter().map(|&x| F::from_f64(x)).collect())
        .expect("the fixture's shapes fit")
}

/// The fixture's parameters, inserted in the fixture's order or reversed, with the values
/// `value(name)` (the initial ones by default) and the fixture's frozen flags.
fn params_with<F: Scalar>(
    fx: &Value,
    reversed: bool,
    value: impl Fn(&str) -> Option<ArrayD<F>>,
) -> Params<F> {
    let mut specs: Vec<&Value> = fx["params"].as_array().unwrap().iter().collect();
    if reversed {
        specs.reverse();
    }
    let mut params = Params::new();
    for spec in specs {
        let name = spec["name"].as_str().unwrap();
        let shape: Vec<usize> = floats(&spec["shape"]).iter().map(|&d| d as usize).collect();
        let v = value(name).unwrap_or_else(|| array(&shape, &floats(&spec["value"])));
        let id = params.insert(name, v).unwrap();
        if flag(spec, "frozen") {
            params.freeze(id);
        }
    }
    params
}

fn initial_params<F: Scalar>(fx: &Value) -> Params<F> {
    params_with(fx, false, |_| None)
}

/// Gradients equal to the fixture's arrays for the parameters it lists in `step`, and none
/// for the others, from a tape: `∂/∂θ Σ (θ · G) = G` exactly. Frozen parameters are unfrozen
/// for the tape and frozen again, so they do get a gradient, which the optimizer must ignore.
fn gradients<F: Scalar>(params: &mut Params<F>, step: &Value) -> Gradients<F> {
    let step = step.as_object().unwrap();
    let ids: Vec<_> = step.keys().map(|n| params.id(n).unwrap()).collect();
    let frozen: Vec<_> = ids
        .iter()
        .copied()
        .filter(|&id| params.is_frozen(id))
        .collect();
    for &id in &frozen {
        params.unfreeze(id);
    }
    let grads = {
        let tape = Tape::with_params(&*params);
        let mut loss = tape.scalar(F::zero());
        for (&id, g) in ids.iter().zip(step.values()) {
            let g = array::<F>(params.get(id).shape(), &floats(g));
            loss = loss + (tape.param(id) * tape.constant(g)).sum();
        }
        loss.backward().unwrap()
    };
    for &id in &frozen {
        params.freeze(id);
        assert!(
            grads.param(id).is_some(),
            "the frozen parameter has a gradient"
        );
    }
    grads
}

fn sgd_config(v: &Value) -> SgdConfig {
    SgdConfig {
        lr: num(v, "lr"),
        momentum: num(v, "momentum"),
        dampening: num(v, "dampening"),
        weight_decay: num(v, "weight_decay"),
        nesterov: flag(v, "nesterov"),
        maximize: flag(v, "maximize"),
    }
}

fn adam_config(v: &Value) -> AdamConfig {
    let betas = floats(&v["betas"]);
    AdamConfig {
        lr: num(v, "lr"),
        betas: (betas[0], betas[1]),
        eps: num(v, "eps"),
        weight_decay: num(v, "weight_decay"),
        amsgrad: flag(v, "amsgrad"),
        maximize: flag(v, "maximize"),
    }
}

/// The optimizer a fixture case describes, with its groups, behind the trait object.
fn optimizer<F: Scalar>(case: &Value) -> Box<dyn Optimizer<F>> {
    let groups: Vec<(&str, &Value)> = case["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["prefix"].as_str().unwrap(), &g["config"]))
        .collect();
    let defaults = &case["defaults"];
    match case["optimizer"].as_str().unwrap() {
        "sgd" => {
            let mut opt = Sgd::new(sgd_config(defaults)).unwrap();
            for (prefix, c) in groups {
                opt = opt.group(prefix, sgd_config(c)).unwrap();
            }
            Box::new(opt)
        }
        "adam" => {
            let mut opt = Adam::new(adam_config(defaults)).unwrap();
            for (prefix, c) in groups {
                opt = opt.group(prefix, adam_config(c)).unwrap();
            }
            Box::new(opt)
        }
        "adamw" => {
            let mut opt = AdamW::new(adam_config(defaults)).unwrap();
            for (prefix, c) in groups {
                opt = opt.group(prefix, adam_config(c)).unwrap();
            }
            Box::new(opt)
        }
        other => panic!("unknown optimizer {other}"),
    }
}

/// Runs steps `range` of a case: the lr factor of the step, then the step.
fn run<F: Scalar>(
    fx: &Value,
    case: &Value,
    opt: &mut dyn Optimizer<F>,
    params: &mut Params<F>,
    range: std::ops::Range<usize>,
) {
    for t in range {
        opt.set_lr_factor(floats(&case["lr_factors"])[t]);
        let grads = gradients(params, &fx["grads"][t]);
        opt.step(params, &grads);
    }
}

fn is_f64<F: Scalar>() -> bool {
    F::NAME == "f64"
}

/// The unit roundoff of `F`: 2⁻²⁴ in f32, 2⁻⁵³ in f64.
fn unit_roundoff<F: Scalar>() -> f64 {
    F::epsilon().as_f64() / 2.0
}

// ---------------------------------------------------------------------------------------
// Trajectories
// ---------------------------------------------------------------------------------------

/// Every case of the fixture (SGD plain, momentum, dampening, Nesterov, weight decay,
/// maximize; Adam plain, betas and ε, weight decay, AMSGrad, maximize; AdamW plain and
/// AMSGrad; groups with their own lr, weight decay, momentum, betas, ε and AMSGrad under a
/// changing lr factor) over ten steps in which one parameter is absent at its first step,
/// another absent twice, one has a zero gradient once and a frozen one has a gradient it
/// must ignore: the parameters after every step and the final state match the reference.
///
/// Tolerances. f64: 1e-12 relative. The reference evaluates each algorithm box literally
/// (`m̂`, `v̂` as arrays, `θ − γλθ`); the optimizers use PyTorch's order (scalar bias
/// corrections, `θ(1 − γλ)`). The two round differently by a few ulps (≈ 1e-16) per step.
///
/// f32, against the same f64 reference, with u = 2⁻²⁴, T = 10 steps, P the largest |θ| and
/// D the largest change of one element in one step: the inputs θ₀ and g are rounded once
/// (relative u), each step rounds θ once (≤ u·P), and each update is computed in about ten
/// roundings plus the error the moments carry from earlier steps, at most (10 + T)·u·D. So
/// `|err| ≤ (T + 1)·u·P + T·(10 + T)·u·D`; the test allows twice that. The moments, whose
/// error is a few u per step relative to their largest element M, are allowed
/// `2·(10 + T)·u·M`.
fn trajectories_match_the_reference<F: Scalar>() {
    let fx = optimizers();
    let steps = fx["steps"].as_u64().unwrap() as usize;
    let u = unit_roundoff::<F>();
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut params = initial_params::<F>(&fx);
        let mut opt = optimizer::<F>(case);
        let trajectory = case["trajectory"].as_array().unwrap();
        let (big_p, big_d) = scales(&fx, trajectory);
        let big_g = largest_gradient(&fx, case, big_p);
        let param_tol = |want: f64| {
            if is_f64::<F>() {
                1e-12 * want.abs()
            } else {
                let t = steps as f64;
                2.0 * ((t + 1.0) * u * big_p + t * (10.0 + t) * u * big_d)
            }
        };
        let mut worst = 0.0f64;
        for (t, expected) in trajectory.iter().enumerate() {
            run(&fx, case, opt.as_mut(), &mut params, t..t + 1);
            for (_, pname, value) in params.iter() {
                let want = floats(&expected[pname]);
                for (&got, &want) in value.iter().zip(&want) {
                    let err = (got.as_f64() - want).abs();
                    worst = worst.max(err / param_tol(want));
                    assert!(
                        err <= param_tol(want),
                        "{name} ({}), step {}, {pname}: got {got}, want {want}",
                        F::NAME,
                        t + 1
                    );
                }
            }
        }
        assert!(
            worst > 0.0 || is_f64::<F>(),
            "{name}: f32 should differ from f64"
        );

        let state = opt.state_dict(&params);
        let want = &case["state"];
        let want_values = want["values"].as_object().unwrap();
        let got_values: Vec<_> = state.values.keys().collect();
        assert_eq!(
            got_values,
            want_values.keys().collect::<Vec<_>>(),
            "{name}: value keys"
        );
        for (key, v) in want_values {
            assert_eq!(state.values[key], v.as_f64().unwrap(), "{name}: {key}");
        }
        let want_tensors = want["tensors"].as_object().unwrap();
        let got_keys: Vec<_> = state.tensors.keys().collect();
        let mut want_keys: Vec<_> = want_tensors.keys().collect();
        want_keys.sort();
        assert_eq!(got_keys, want_keys, "{name}: tensor keys");
        for (key, v) in want_tensors {
            let want = floats(v);
            let m = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let second = key.starts_with("exp_avg_sq.") || key.starts_with("max_exp_avg_sq.");
            let scale = if second { big_g * big_g } else { big_g };
            let tol = if is_f64::<F>() {
                1e-12 * m
            } else {
                2.0 * (10.0 + steps as f64) * u * m.max(scale)
            };
            for (&got, &want) in state.tensors[key].iter().zip(&want) {
                assert!(
                    (got.as_f64() - want).abs() <= tol,
                    "{name} ({}): {key}: got {got}, want {want}",
                    F::NAME
                );
            }
        }
    }
}

/// A bound on the gradients after weight decay, `max |g| + λ_max · P`, the scale of the
/// terms the first moments and momentum buffers sum.
fn largest_gradient(fx: &Value, case: &Value, big_p: f64) -> f64 {
    let g = fx["grads"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|step| step.as_object().unwrap().values().flat_map(floats))
        .fold(0.0f64, |m, x| m.max(x.abs()));
    let configs = std::iter::once(&case["defaults"]).chain(
        case["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| &g["config"]),
    );
    let decay = configs.fold(0.0f64, |m, c| m.max(num(c, "weight_decay")));
    g + decay * big_p
}

/// The largest |θ| and the largest one-step change of an element along a trajectory.
fn scales(fx: &Value, trajectory: &[Value]) -> (f64, f64) {
    let mut previous: Vec<(String, Vec<f64>)> = fx["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), floats(&p["value"])))
        .collect();
    let (mut big_p, mut big_d) = (0.0f64, 0.0f64);
    for step in trajectory {
        for (name, before) in &mut previous {
            let after = floats(&step[name.as_str()]);
            for (b, a) in before.iter().zip(&after) {
                big_p = big_p.max(a.abs()).max(b.abs());
                big_d = big_d.max((a - b).abs());
            }
            *before = after;
        }
    }
    (big_p, big_d)
}

// ---------------------------------------------------------------------------------------
// Resume
// ---------------------------------------------------------------------------------------

/// Five steps, the state dict, then a fresh optimizer and a store holding the same values
/// in the reverse insertion order (so every `ParamId` differs): loading the state and
/// running the last five steps gives the parameters and the state of the uninterrupted
/// ten-step run bit for bit.
fn resume_from_state_dict_is_bitwise<F: Scalar>() {
    let fx = optimizers();
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut whole = initial_params::<F>(&fx);
        let mut opt = optimizer::<F>(case);
        run(&fx, case, opt.as_mut(), &mut whole, 0..10);

        let mut first = initial_params::<F>(&fx);
        let mut before = optimizer::<F>(case);
        run(&fx, case, before.as_mut(), &mut first, 0..5);
        let saved = before.state_dict(&first);
        drop(before);

        let mut second =
            params_with::<F>(&fx, true, |n| Some(first.get(first.id(n).ok()?).clone()));
        let mut after = optimizer::<F>(case);
        after.load_state_dict(&second, &saved).unwrap();
        assert_eq!(after.lr_factor(), floats(&case["lr_factors"])[4], "{name}");
        assert_eq!(after.state_dict(&second), saved, "{name}: load then save");
        run(&fx, case, after.as_mut(), &mut second, 5..10);

        for (id, pname, value) in whole.iter() {
            let resumed = second.get(second.id(pname).unwrap());
            let same = value.iter().zip(resumed).all(|(&a, &b)| bits(a) == bits(b));
            assert!(
                same,
                "{name} ({}): {pname} {id:?} differs after the resume",
                F::NAME
            );
        }
        assert_eq!(
            after.state_dict(&second),
            opt.state_dict(&whole),
            "{name}: state"
        );
    }
}

/// The bit pattern, to compare floats exactly (the sign of zero included); widening f32 to
/// f64 is exact, so equal patterns mean equal values in either type.
fn bits<F: Scalar>(x: F) -> u64 {
    x.as_f64().to_bits()
}

// ---------------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------------

/// Each schedule's learning rate at t = 0..40 matches PyTorch's closed form (StepLR,
/// ExponentialLR, CosineAnnealingLR held at its minimum past T_max, LinearLR warm-up then
/// the decay, as SequentialLR) to 1e-12 relative.
#[test]
fn schedules_match_the_closed_forms() {
    let fx: Value = serde_json::from_str(SCHEDULES).unwrap();
    let base = num(&fx, "base_lr");
    for entry in fx["schedules"].as_array().unwrap() {
        let spec = &entry["spec"];
        let mut schedule = match spec["kind"].as_str().unwrap() {
            "constant" => Schedule::constant(),
            "step" => Schedule::step(num(spec, "step_size") as usize, num(spec, "gamma")).unwrap(),
            "exponential" => Schedule::exponential(num(spec, "gamma")).unwrap(),
            "cosine" => {
                Schedule::cosine(num(spec, "t_max") as usize, num(spec, "min_factor")).unwrap()
            }
            other => panic!("unknown schedule {other}"),
        };
        if let Some(w) = spec.get("warmup") {
            let warmup = w.as_u64().unwrap() as usize;
            schedule = schedule
                .with_warmup(warmup, num(spec, "start_factor"))
                .unwrap();
        }
        for (t, want) in floats(&entry["lr"]).into_iter().enumerate() {
            let got = schedule.lr(base, t);
            assert!(
                (got - want).abs() <= 1e-12 * want.abs(),
                "{spec}, t = {t}: {got} vs {want}"
            );
            assert_eq!(schedule.factor(t) * base, got);
        }
    }
}

#[test]
fn schedule_landmarks() {
    // Cosine: 1 at 0, (1 + m)/2 half-way, m at T and after.
    let cosine = Schedule::cosine(100, 0.2).unwrap();
    assert_eq!(cosine.factor(0), 1.0);
    assert!((cosine.factor(50) - 0.6).abs() < 1e-15);
    assert_eq!(cosine.factor(100), 0.2);
    assert_eq!(cosine.factor(1000), 0.2);
    // Step: γ^⌊t/s⌋.
    let step = Schedule::step(10, 0.5).unwrap();
    assert_eq!(
        [step.factor(9), step.factor(10), step.factor(25)],
        [1.0, 0.5, 0.25]
    );
    // Warm-up: linear from s₀, reaching the decay's 1 at W.
    let warm = Schedule::exponential(0.5)
        .unwrap()
        .with_warmup(4, 0.2)
        .unwrap();
    assert_eq!(warm.factor(0), 0.2);
    assert!((warm.factor(2) - 0.6).abs() < 1e-15);
    assert_eq!(
        [warm.factor(4), warm.factor(5), warm.factor(6)],
        [1.0, 0.5, 0.25]
    );
    // Resuming at epoch k: the factor depends on k alone.
    let again = Schedule::exponential(0.5)
        .unwrap()
        .with_warmup(4, 0.2)
        .unwrap();
    assert_eq!(again.factor(6), warm.factor(6));
}

// ---------------------------------------------------------------------------------------
// Learning rate across groups
// ---------------------------------------------------------------------------------------

/// `set_lr` moves the default group to the given lr and every other group in proportion.
#[test]
fn set_lr_scales_every_group_by_its_base() {
    let mut params = Params::<f64>::new();
    let enc = params.insert("encoder.w", ArrayD::zeros(vec![1])).unwrap();
    let dec = params.insert("decoder.w", ArrayD::zeros(vec![1])).unwrap();
    let config = SgdConfig {
        lr: 0.1,
        ..SgdConfig::default()
    };
    let mut opt = Sgd::new(config)
        .unwrap()
        .group("encoder", SgdConfig { lr: 0.02, ..config })
        .unwrap();
    assert_eq!((opt.base_lr(), opt.lr_factor(), opt.lr()), (0.1, 1.0, 0.1));
    opt.set_lr(0.05);
    assert_eq!(opt.lr_factor(), 0.5);
    assert_eq!(opt.lr(), 0.05);
    assert_eq!(opt.config("encoder.w").lr, 0.02, "the base lr is kept");
    let grads = {
        let tape = Tape::with_params(&params);
        (tape.param(enc).sum() + tape.param(dec).sum())
            .backward()
            .unwrap()
    };
    opt.step(&mut params, &grads);
    // θ ← θ − γ_g · factor · 1
    assert!((params.get(enc)[0] + 0.01).abs() < 1e-17);
    assert!((params.get(dec)[0] + 0.05).abs() < 1e-17);
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Error>, name: &str, value: f64) {
    match result {
        Err(Error::InvalidArgument {
            name: got,
            value: v,
            ..
        }) => {
            assert_eq!(got, name);
            assert!(
                v == value || (v.is_nan() && value.is_nan()),
                "{name}: {v} vs {value}"
            );
        }
        other => panic!("{name}: expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn bad_hyperparameters_name_the_value() {
    let sgd = SgdConfig::default();
    let cases = [
        (SgdConfig { lr: -0.1, ..sgd }, "lr", -0.1),
        (
            SgdConfig {
                lr: f64::NAN,
                ..sgd
            },
            "lr",
            f64::NAN,
        ),
        (
            SgdConfig {
                momentum: -0.5,
                ..sgd
            },
            "momentum",
            -0.5,
        ),
        (
            SgdConfig {
                dampening: 1.5,
                ..sgd
            },
            "dampening",
            1.5,
        ),
        (
            SgdConfig {
                weight_decay: -1.0,
                ..sgd
            },
            "weight_decay",
            -1.0,
        ),
        (
            SgdConfig {
                nesterov: true,
                ..sgd
            },
            "momentum",
            0.0,
        ),
        (
            SgdConfig {
                nesterov: true,
                momentum: 0.9,
                dampening: 0.1,
                ..sgd
            },
            "dampening",
            0.1,
        ),
    ];
    for (config, name, value) in cases {
        assert_invalid(Sgd::<f64>::new(config), name, value);
        let grouped = Sgd::<f64>::new(sgd).unwrap().group("encoder", config);
        assert_invalid(grouped, name, value);
    }
    let message = Sgd::<f32>::new(SgdConfig { lr: -0.1, ..sgd })
        .unwrap_err()
        .to_string();
    assert_eq!(message, "lr must be non-negative and finite, got -0.1");

    let adam = AdamConfig::default();
    let cases = [
        (
            AdamConfig {
                lr: f64::INFINITY,
                ..adam
            },
            "lr",
            f64::INFINITY,
        ),
        (
            AdamConfig {
                betas: (1.0, 0.999),
                ..adam
            },
            "beta1",
            1.0,
        ),
        (
            AdamConfig {
                betas: (0.9, -0.1),
                ..adam
            },
            "beta2",
            -0.1,
        ),
        (AdamConfig { eps: 0.0, ..adam }, "eps", 0.0),
        (AdamConfig { eps: -1e-8, ..adam }, "eps", -1e-8),
        (
            AdamConfig {
                weight_decay: f64::NAN,
                ..adam
            },
            "weight_decay",
            f64::NAN,
        ),
    ];
    for (config, name, value) in cases {
        assert_invalid(Adam::<f64>::new(config), name, value);
        assert_invalid(AdamW::<f32>::new(config), name, value);
        assert_invalid(
            Adam::<f64>::new(adam).unwrap().group("dec", config),
            name,
            value,
        );
    }

    assert_invalid(Schedule::step(0, 0.5), "step_size", 0.0);
    assert_invalid(Schedule::step(3, 0.0), "gamma", 0.0);
    assert_invalid(Schedule::exponential(f64::NAN), "gamma", f64::NAN);
    assert_invalid(Schedule::cosine(0, 0.1), "t_max", 0.0);
    assert_invalid(Schedule::cosine(10, 1.5), "min_factor", 1.5);
    let constant = Schedule::constant();
    assert_invalid(constant.with_warmup(0, 0.1), "warmup steps", 0.0);
    assert_invalid(constant.with_warmup(5, 0.0), "start_factor", 0.0);
    assert_invalid(constant.with_warmup(5, 1.5), "start_factor", 1.5);
}

#[test]
fn bad_group_prefixes_are_named() {
    for prefix in ["", "encoder.", "en coder"] {
        match Sgd::<f64>::new(SgdConfig::default())
            .unwrap()
            .group(prefix, SgdConfig::default())
        {
            Err(Error::Engine(stograd::Error::InvalidParamName { name, .. })) => {
                assert_eq!(name, prefix)
            }
            other => panic!("{prefix:?}: {other:?}"),
        }
    }
}

/// A state dict saved by an AMSGrad Adam after ten fixture steps.
fn saved_adam() -> (Params<f64>, StateDict<f64>, AdamConfig) {
    let fx = optimizers();
    let case = fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "adam_amsgrad")
        .unwrap();
    let mut params = initial_params::<f64>(&fx);
    let mut opt = optimizer::<f64>(case);
    run(&fx, case, opt.as_mut(), &mut params, 0..10);
    let state = opt.state_dict(&params);
    (params, state, adam_config(&case["defaults"]))
}

fn expect_unknown(result: stograd_nn::Result<()>, key: &str) {
    match result {
        Err(Error::Engine(stograd::Error::UnknownParam(got))) => assert_eq!(got, key),
        other => panic!("{key}: expected UnknownParam, got {other:?}"),
    }
}

#[test]
fn state_that_does_not_fit_is_named() {
    let (params, good, config) = saved_adam();
    let fresh = || {
        let mut opt = Adam::<f64>::new(config).unwrap();
        opt.load_state_dict(&params, &good).unwrap();
        opt
    };
    let without = |key: &str| {
        let mut state = good.clone();
        assert!(state.tensors.remove(key).is_some() || state.values.remove(key).is_some());
        state
    };
    let with_tensor = |key: &str, shape: Vec<usize>| {
        let mut state = good.clone();
        state.tensors.insert(key.to_owned(), ArrayD::zeros(shape));
        state
    };
    let with_value = |key: &str, value: f64| {
        let mut state = good.clone();
        state.values.insert(key.to_owned(), value);
        state
    };
    // (state, the key or parameter name the error must give)
    let cases = [
        // Missing: the first absent entry of a parameter that has some.
        (
            without("exp_avg_sq.encoder.fc1.weight"),
            "exp_avg_sq.encoder.fc1.weight",
        ),
        (
            without("exp_avg.encoder.fc1.weight"),
            "exp_avg.encoder.fc1.weight",
        ),
        (
            without("max_exp_avg_sq.encoder.fc1.weight"),
            "max_exp_avg_sq.encoder.fc1.weight",
        ),
        (
            without("step.encoder.fc1.weight"),
            "step.encoder.fc1.weight",
        ),
        (without("lr_factor"), "lr_factor"),
        // Left over: a parameter the store does not hold, or a kind nobody reads.
        (with_tensor("exp_avg.old.weight", vec![2]), "old.weight"),
        (with_value("step.gone", 3.0), "gone"),
        (
            with_tensor("velocity.encoder.fc1.weight", vec![3, 4]),
            "velocity.encoder.fc1.weight",
        ),
    ];
    for (state, key) in cases {
        let mut opt = fresh();
        let before = opt.state_dict(&params);
        expect_unknown(opt.load_state_dict(&params, &state), key);
        assert_eq!(opt.state_dict(&params), before, "{key}: unchanged on error");
    }

    // An AMSGrad state loaded without AMSGrad: its maxima are left over, the first in key
    // order is named.
    let plain = AdamConfig {
        amsgrad: false,
        ..config
    };
    let mut opt = Adam::<f64>::new(plain).unwrap();
    expect_unknown(
        opt.load_state_dict(&params, &good),
        "max_exp_avg_sq.decoder.fc2.weight",
    );

    // A wrong shape names the expected and the received shape.
    let state = with_tensor("exp_avg.decoder.fc2.weight", vec![3, 2]);
    match fresh().load_state_dict(&params, &state) {
        Err(Error::Engine(stograd::Error::ShapeMismatch { expected, got, .. })) => {
            assert_eq!((expected, got), (vec![2, 3], vec![3, 2]))
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }

    // A step count that is not a positive integer, a negative factor.
    let state = with_value("step.encoder.fc1.weight", 2.5);
    assert_invalid(fresh().load_state_dict(&params, &state), "step", 2.5);
    let state = with_value("lr_factor", -1.0);
    assert_invalid(fresh().load_state_dict(&params, &state), "lr_factor", -1.0);
}

#[test]
fn momentum_state_without_momentum_is_left_over() {
    let fx = optimizers();
    let case = &fx["cases"][1];
    assert_eq!(case["name"], "sgd_momentum");
    let mut params = initial_params::<f64>(&fx);
    let mut opt = optimizer::<f64>(case);
    run(&fx, case, opt.as_mut(), &mut params, 0..3);
    let state = opt.state_dict(&params);
    assert!(
        state
            .tensors
            .contains_key("momentum_buffer.encoder.fc1.weight")
    );
    let mut plain = Sgd::<f64>::new(SgdConfig {
        lr: 0.1,
        ..SgdConfig::default()
    })
    .unwrap();
    // The first momentum buffer in key order.
    expect_unknown(
        plain.load_state_dict(&params, &state),
        "momentum_buffer.decoder.fc2.weight",
    );
}

#[test]
#[should_panic(expected = "has shape [5], the parameter [3]")]
fn a_gradient_of_the_wrong_shape_panics() {
    let mut params = Params::<f64>::new();
    let w = params.insert("w", ArrayD::zeros(vec![3])).unwrap();
    let mut grads = {
        let tape = Tape::with_params(&params);
        tape.param(w).sum().backward().unwrap()
    };
    *grads.param_mut(w).unwrap() = ArrayD::zeros(vec![5]);
    Adam::new(AdamConfig::default())
        .unwrap()
        .step(&mut params, &grads);
}

// ---------------------------------------------------------------------------------------
// Performance paths and numerics
// ---------------------------------------------------------------------------------------

/// A parameter of 2 × (PARALLEL_CHUNK/2 + 500) elements, updated on rayon's pool, against
/// its two rows as separate parameters, each below the threshold and updated on this
/// thread: bitwise the same after three steps, for every optimizer family.
fn parallel_and_sequential_paths_agree<F: Scalar>() {
    let half = PARALLEL_CHUNK / 2 + 500;
    let wave = |phase: f64| {
        ArrayD::from_shape_fn(IxDyn(&[2, half]), |i| {
            F::from_f64(((i[0] * half + i[1]) as f64 * 0.37 + phase).sin())
        })
    };
    let sgd = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        nesterov: true,
        weight_decay: 0.01,
        ..SgdConfig::default()
    };
    let adam = AdamConfig {
        lr: 0.01,
        weight_decay: 0.1,
        amsgrad: true,
        ..AdamConfig::default()
    };
    for family in ["sgd", "adam", "adamw"] {
        let make = || -> Box<dyn Optimizer<F>> {
            match family {
                "sgd" => Box::new(Sgd::new(sgd).unwrap()),
                "adam" => Box::new(Adam::new(adam).unwrap()),
                _ => Box::new(AdamW::new(AdamConfig::adamw()).unwrap()),
            }
        };
        let mut whole = Params::<F>::new();
        let w = whole.insert("w", wave(0.0)).unwrap();
        assert!(whole.get(w).len() >= PARALLEL_CHUNK);
        let mut split = Params::<F>::new();
        let rows: Vec<_> = (0..2)
            .map(|r| {
                let row = whole.get(w).index_axis(ndarray::Axis(0), r).to_owned();
                assert!(row.len() < PARALLEL_CHUNK);
                split.insert(&format!("row{r}"), row).unwrap()
            })
            .collect();
        let (mut opt_whole, mut opt_split) = (make(), make());
        for step in 0..3 {
            let g = wave(1.0 + step as f64);
            let grads_whole = {
                let tape = Tape::with_params(&whole);
                (tape.param(w) * tape.constant(g.clone()))
                    .sum()
                    .backward()
                    .unwrap()
            };
            let grads_split = {
                let tape = Tape::with_params(&split);
                let mut loss = tape.scalar(F::zero());
                for (r, &id) in rows.iter().enumerate() {
                    let gr = g.index_axis(ndarray::Axis(0), r).to_owned();
                    loss = loss + (tape.param(id) * tape.constant(gr)).sum();
                }
                loss.backward().unwrap()
            };
            opt_whole.step(&mut whole, &grads_whole);
            opt_split.step(&mut split, &grads_split);
        }
        for (r, &id) in rows.iter().enumerate() {
            let a = whole.get(w).index_axis(ndarray::Axis(0), r).to_owned();
            let same = a
                .iter()
                .zip(split.get(id))
                .all(|(&x, &y)| bits(x) == bits(y));
            assert!(same, "{family} ({}): row {r} differs", F::NAME);
        }
    }
}

/// A gradient that is non-zero for three steps and zero after: the moments decay
/// geometrically (0.8ᵗ and 0.9ᵗ), pass below the smallest normal number and are then
/// exactly zero, never subnormal; the parameter stays finite and stops moving.
fn moments_that_decay_end_exactly_zero<F: Scalar>() {
    let mut params = Params::<F>::new();
    let w = params
        .insert("w", array::<F>(&[3], &[0.5, -1.0, 2.0]))
        .unwrap();
    let grads_for = |params: &Params<F>, g: &[f64]| {
        let tape = Tape::with_params(params);
        (tape.param(w) * tape.constant(array::<F>(&[3], g)))
            .sum()
            .backward()
            .unwrap()
    };
    let config = AdamConfig {
        lr: 0.01,
        betas: (0.8, 0.9),
        ..AdamConfig::default()
    };
    let mut opt = Adam::new(config).unwrap();
    for _ in 0..3 {
        let grads = grads_for(&params, &[1.0, -3.0, 0.5]);
        opt.step(&mut params, &grads);
    }
    let zero = grads_for(&params, &[0.0, 0.0, 0.0]);
    // 0.9ᵗ · 9 falls below f64's smallest subnormal (5e-324) by t ≈ 7100.
    let steps = if is_f64::<F>() { 8000 } else { 1200 };
    let mut settled = None;
    for t in 0..steps {
        opt.step(&mut params, &zero);
        if t % 50 == 0 || t == steps - 1 {
            let state = opt.state_dict(&params);
            for key in ["exp_avg.w", "exp_avg_sq.w"] {
                let subnormal = state.tensors[key]
                    .iter()
                    .any(|x| x.classify() == std::num::FpCategory::Subnormal);
                assert!(!subnormal, "{key} is subnormal at step {t}");
            }
        }
        if t == steps - 100 {
            settled = Some(params.get(w).clone());
        }
    }
    let state = opt.state_dict(&params);
    assert!(state.tensors["exp_avg.w"].iter().all(|&x| x == F::zero()));
    assert!(
        state.tensors["exp_avg_sq.w"]
            .iter()
            .all(|&x| x == F::zero())
    );
    assert!(params.get(w).iter().all(|x| x.is_finite()));
    assert_eq!(
        Some(params.get(w).clone()),
        settled,
        "the parameter has stopped"
    );
}
