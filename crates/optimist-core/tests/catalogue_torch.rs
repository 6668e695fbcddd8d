//! Properties of the torch.optim catalogue (nadam, radam, adamax, adagrad,
//! rmsprop, adadelta, adafactor): convergence, torch's validation rules,
//! defaults, maximize, state round trips and invariants of the update rules
//! that hold without a reference run.

mod common;

use optimist_core::math::sign;
use optimist_core::optim::{Adadelta, Adafactor, Adagrad, Adamax, Nadam, Radam, Rmsprop};
use optimist_core::problems::{minimize, Problem, Quadratic, Rosenbrock};
use optimist_core::registry::{build, find};
use optimist_core::{Engine, Optimizer, Param, UpdateRule};
use serde_json::{json, Value};

const NAMES: [&str; 7] = [
    "nadam",
    "radam",
    "adamax",
    "adagrad",
    "rmsprop",
    "adadelta",
    "adafactor",
];

fn opt(name: &str, hp: &Value) -> Box<dyn Optimizer> {
    build(name, hp).unwrap_or_else(|e| panic!("{name} {hp}: {e}"))
}

/// The largest loss over the last tenth of a run of `steps` steps (the final
/// loss included), so that a run that merely passes through a low value
/// does not count as converged.
fn tail_max(losses: &[f64]) -> f64 {
    let steps = losses.len() - 1;
    let tail = &losses[steps - steps / 10..];
    if tail.iter().any(|l| l.is_nan()) {
        return f64::NAN;
    }
    tail.iter().fold(f64::NEG_INFINITY, |m, &l| m.max(l))
}

fn check_convergence(problem: &dyn Problem, cases: &[(&str, Value, usize, f64)]) {
    for (name, hp, steps, target) in cases {
        let mut o = opt(name, hp);
        let losses = minimize(problem, o.as_mut(), *steps).unwrap();
        let tail = tail_max(&losses);
        eprintln!(
            "{} {name} {hp}: start {:.3e}, max loss over the last {} of {steps} steps {tail:.3e} (target {target:.0e})",
            problem.name(),
            losses[0],
            steps / 10
        );
        assert!(
            tail < *target,
            "{} {name} {hp}: loss {tail} over the last tenth of {steps} steps (target {target})",
            problem.name()
        );
    }
}

#[test]
fn quadratic_convergence() {
    // 16 dimensions, condition number 100, started at 0 (loss 187.7).
    let q = Quadratic::default();
    check_convergence(
        &q,
        &[
            ("nadam", json!({"lr": 0.03}), 500, 1e-6),
            ("radam", json!({"lr": 0.03}), 500, 1e-6),
            ("adamax", json!({"lr": 0.03}), 500, 1e-6),
            ("adagrad", json!({"lr": 0.1}), 500, 1e-6),
            ("rmsprop", json!({"lr": 0.01}), 500, 1e-6),
            (
                "rmsprop",
                json!({"lr": 0.003, "centered": true, "momentum": 0.5}),
                500,
                1e-6,
            ),
            ("adadelta", json!({"lr": 1.0}), 500, 1e-6),
            ("adafactor", json!({"lr": 0.03}), 500, 1e-6),
        ],
    );
}

#[test]
fn rosenbrock_convergence() {
    // Started at (-1.5, 2), loss 12.5; minimum 0 at (1, 1). Adaptive methods
    // oscillate in the valley, so the targets bound the worst loss of the
    // last tenth of the run. Adafactor's step is lr times a clipped unit-RMS
    // update until 1/sqrt(t) < lr, which sets its floor near 1e-2.
    check_convergence(
        &Rosenbrock,
        &[
            ("nadam", json!({"lr": 0.005}), 10_000, 1e-2),
            ("radam", json!({"lr": 0.01}), 10_000, 1e-6),
            ("adamax", json!({"lr": 0.03}), 5_000, 1e-6),
            ("adagrad", json!({"lr": 1.0}), 10_000, 1e-3),
            ("rmsprop", json!({"lr": 1e-3}), 10_000, 1e-3),
            ("adadelta", json!({"lr": 0.05}), 10_000, 1e-2),
            ("adafactor", json!({"lr": 0.01}), 10_000, 5e-2),
        ],
    );
}

/// Minimizes the default quadratic over a parameter of the given shape, so
/// that Adafactor takes its factored path.
fn quadratic_on_shape(o: &mut dyn Optimizer, shape: Vec<usize>, steps: usize) -> Vec<f64> {
    let q = Quadratic::default();
    let mut p = Param::new("w", shape, q.init()).unwrap();
    let mut losses = Vec::with_capacity(steps + 1);
    for _ in 0..steps {
        losses.push(q.loss_grad(&p.data, &mut p.grad));
        o.step(&mut [p.view()]).unwrap();
    }
    let mut g = vec![0.0; p.data.len()];
    losses.push(q.loss_grad(&p.data, &mut g));
    losses
}

#[test]
fn adafactor_factored_path_converges() {
    for shape in [vec![4, 4], vec![2, 2, 4], vec![16, 1]] {
        let mut o = opt("adafactor", &json!({"lr": 0.03}));
        let losses = quadratic_on_shape(o.as_mut(), shape.clone(), 1000);
        let tail = tail_max(&losses);
        eprintln!("adafactor lr 0.03 on shape {shape:?}: max loss over the last 100 of 1000 steps {tail:.3e}");
        assert!(tail < 1e-6, "shape {shape:?}: loss {tail}");
        let sd = o.state_dict();
        let names: Vec<&str> = sd.tensors.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["row_var", "col_var"], "shape {shape:?}");
    }
}

#[test]
fn invalid_hyperparameters_are_errors_naming_the_field() {
    let cases = [
        ("nadam", json!({"lr": -1e-3}), "lr"),
        ("nadam", json!({"eps": -1e-8}), "eps"),
        ("nadam", json!({"betas": [1.0, 0.999]}), "betas[0]"),
        ("nadam", json!({"betas": [0.9, 1.0]}), "betas[1]"),
        ("nadam", json!({"weight_decay": -0.1}), "weight_decay"),
        ("nadam", json!({"momentum_decay": -0.004}), "momentum_decay"),
        (
            "nadam",
            json!({"decoupled_weight_decay": 1}),
            "decoupled_weight_decay",
        ),
        ("radam", json!({"lr": -1e-3}), "lr"),
        ("radam", json!({"eps": -1e-8}), "eps"),
        ("radam", json!({"betas": [-0.1, 0.999]}), "betas[0]"),
        ("radam", json!({"betas": [0.9, 1.5]}), "betas[1]"),
        ("radam", json!({"weight_decay": -0.1}), "weight_decay"),
        ("radam", json!({"momentum_decay": 0.004}), "momentum_decay"),
        ("adamax", json!({"lr": -2e-3}), "lr"),
        ("adamax", json!({"eps": -1e-8}), "eps"),
        ("adamax", json!({"betas": [0.9, 1.0]}), "betas[1]"),
        ("adamax", json!({"weight_decay": -0.1}), "weight_decay"),
        (
            "adamax",
            json!({"decoupled_weight_decay": true}),
            "decoupled_weight_decay",
        ),
        ("adagrad", json!({"lr": -0.01}), "lr"),
        ("adagrad", json!({"lr_decay": -0.1}), "lr_decay"),
        ("adagrad", json!({"weight_decay": -0.1}), "weight_decay"),
        (
            "adagrad",
            json!({"initial_accumulator_value": -0.1}),
            "initial_accumulator_value",
        ),
        ("adagrad", json!({"eps": -1e-10}), "eps"),
        ("rmsprop", json!({"lr": -0.01}), "lr"),
        ("rmsprop", json!({"alpha": -0.1}), "alpha"),
        ("rmsprop", json!({"eps": -1e-8}), "eps"),
        ("rmsprop", json!({"weight_decay": -0.1}), "weight_decay"),
        ("rmsprop", json!({"momentum": -0.9}), "momentum"),
        ("rmsprop", json!({"centered": "yes"}), "centered"),
        ("adadelta", json!({"lr": -1.0}), "lr"),
        ("adadelta", json!({"rho": 1.5}), "rho"),
        ("adadelta", json!({"rho": -0.1}), "rho"),
        ("adadelta", json!({"eps": -1e-6}), "eps"),
        ("adadelta", json!({"weight_decay": -0.1}), "weight_decay"),
        ("adafactor", json!({"lr": -0.01}), "lr"),
        ("adafactor", json!({"beta2_decay": 0.5}), "beta2_decay"),
        ("adafactor", json!({"eps": [-1e-30, 1e-3]}), "eps[0]"),
        ("adafactor", json!({"eps": [null, -1e-3]}), "eps[1]"),
        ("adafactor", json!({"eps": [null]}), "eps"),
        ("adafactor", json!({"eps": 1e-3}), "eps"),
        ("adafactor", json!({"d": 0.5}), "d"),
        ("adafactor", json!({"weight_decay": -0.1}), "weight_decay"),
        ("adafactor", json!({"betas": [0.9, 0.999]}), "betas"),
    ];
    for (name, hp, field) in cases {
        let msg = common::refusal(name, &hp, field);
        assert!(
            msg.starts_with(name),
            "{name} {hp}: message {msg:?} does not name the optimizer"
        );
    }
}

/// Builds the typed configuration `R` with one field changed.
fn typed<R: UpdateRule>(set: impl Fn(&mut R)) -> optimist_core::Result<Engine<R>> {
    let mut cfg = R::default();
    set(&mut cfg);
    Engine::new(cfg)
}

fn expect_rejected<R: UpdateRule>(field: &str, set: impl Fn(&mut R)) {
    match typed::<R>(set) {
        Ok(_) => panic!("{}: {field} accepted", R::NAME),
        Err(e) => assert!(
            e.to_string().contains(field),
            "{}: {e} does not name {field}",
            R::NAME
        ),
    }
}

#[test]
fn nan_hyperparameters_are_rejected() {
    // torch's `not 0.0 <= x` checks reject NaN too.
    let nan = f64::NAN;
    expect_rejected::<Nadam>("lr", |c| c.lr = nan);
    expect_rejected::<Nadam>("eps", |c| c.eps = nan);
    expect_rejected::<Nadam>("betas[0]", |c| c.betas[0] = nan);
    expect_rejected::<Nadam>("betas[1]", |c| c.betas[1] = nan);
    expect_rejected::<Nadam>("weight_decay", |c| c.weight_decay = nan);
    expect_rejected::<Nadam>("momentum_decay", |c| c.momentum_decay = nan);
    expect_rejected::<Radam>("lr", |c| c.lr = nan);
    expect_rejected::<Radam>("eps", |c| c.eps = nan);
    expect_rejected::<Radam>("betas[1]", |c| c.betas[1] = nan);
    expect_rejected::<Radam>("weight_decay", |c| c.weight_decay = nan);
    expect_rejected::<Adamax>("lr", |c| c.lr = nan);
    expect_rejected::<Adamax>("eps", |c| c.eps = nan);
    expect_rejected::<Adamax>("betas[0]", |c| c.betas[0] = nan);
    expect_rejected::<Adamax>("weight_decay", |c| c.weight_decay = nan);
    expect_rejected::<Adagrad>("lr", |c| c.lr = nan);
    expect_rejected::<Adagrad>("lr_decay", |c| c.lr_decay = nan);
    expect_rejected::<Adagrad>("weight_decay", |c| c.weight_decay = nan);
    expect_rejected::<Adagrad>("initial_accumulator_value", |c| {
        c.initial_accumulator_value = nan
    });
    expect_rejected::<Adagrad>("eps", |c| c.eps = nan);
    expect_rejected::<Rmsprop>("lr", |c| c.lr = nan);
    expect_rejected::<Rmsprop>("alpha", |c| c.alpha = nan);
    expect_rejected::<Rmsprop>("eps", |c| c.eps = nan);
    expect_rejected::<Rmsprop>("weight_decay", |c| c.weight_decay = nan);
    expect_rejected::<Rmsprop>("momentum", |c| c.momentum = nan);
    expect_rejected::<Adadelta>("lr", |c| c.lr = nan);
    expect_rejected::<Adadelta>("rho", |c| c.rho = nan);
    expect_rejected::<Adadelta>("eps", |c| c.eps = nan);
    expect_rejected::<Adadelta>("weight_decay", |c| c.weight_decay = nan);
    expect_rejected::<Adafactor>("lr", |c| c.lr = nan);
    expect_rejected::<Adafactor>("beta2_decay", |c| c.beta2_decay = nan);
    expect_rejected::<Adafactor>("eps[0]", |c| c.eps.0 = Some(nan));
    expect_rejected::<Adafactor>("eps[1]", |c| c.eps.1 = nan);
    expect_rejected::<Adafactor>("d", |c| c.d = nan);
    expect_rejected::<Adafactor>("weight_decay", |c| c.weight_decay = nan);
    // set_hparam validates like the constructor and leaves the
    // configuration unchanged on error.
    let mut o = opt("adadelta", &json!({}));
    assert!(o.set_hparam("rho", 1.01).is_err());
    assert!(o.set_hparam("rho", f64::NAN).is_err());
    assert_eq!(o.hparam("rho"), Some(0.9));
    o.set_hparam("rho", 1.0).unwrap();
    assert_eq!(o.hparam("rho"), Some(1.0));
}

#[test]
fn boundary_values_torch_accepts_are_accepted() {
    let cases = [
        (
            "nadam",
            json!({"lr": 0.0, "eps": 0.0, "betas": [0.0, 0.0], "momentum_decay": 0.0}),
        ),
        ("radam", json!({"lr": 0.0, "eps": 0.0, "betas": [0.0, 0.0]})),
        (
            "adamax",
            json!({"lr": 0.0, "eps": 0.0, "betas": [0.0, 0.0]}),
        ),
        ("adagrad", json!({"lr": 0.0, "eps": 0.0, "lr_decay": 0.0})),
        // torch bounds alpha only from below.
        ("rmsprop", json!({"alpha": 0.0})),
        ("rmsprop", json!({"alpha": 1.5, "momentum": 0.0})),
        ("adadelta", json!({"rho": 0.0})),
        ("adadelta", json!({"rho": 1.0})),
        (
            "adafactor",
            json!({"beta2_decay": 0.0, "d": 1.0, "eps": [0.0, 0.0]}),
        ),
        ("adafactor", json!({"eps": [1e-30, 1e-3]})),
    ];
    for (name, hp) in cases {
        opt(name, &hp);
    }
}

#[test]
fn defaults_are_torchs() {
    // The constructor defaults of torch 2.15.0 (plus `maximize`, keyword-only there).
    let expected = [
        json!({"lr": 0.002, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0,
               "momentum_decay": 0.004, "decoupled_weight_decay": false, "maximize": false}),
        json!({"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0,
               "decoupled_weight_decay": false, "maximize": false}),
        json!({"lr": 0.002, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0,
               "maximize": false}),
        json!({"lr": 0.01, "lr_decay": 0.0, "weight_decay": 0.0, "initial_accumulator_value": 0.0,
               "eps": 1e-10, "maximize": false}),
        json!({"lr": 0.01, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0,
               "centered": false, "maximize": false}),
        json!({"lr": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.0, "maximize": false}),
        json!({"lr": 0.01, "beta2_decay": -0.8, "eps": [null, 0.001], "d": 1.0,
               "weight_decay": 0.0, "maximize": false}),
    ];
    for (name, want) in NAMES.iter().zip(expected) {
        let spec = find(name).unwrap_or_else(|| panic!("{name} not registered"));
        assert_eq!((spec.defaults)(), want, "{name}");
        assert_eq!(opt(name, &json!({})).config(), want, "{name}");
        assert!(spec.reference.contains("torch.optim") && spec.reference.contains("2.15.0"));
    }
}

/// A matrix, a batch of matrices, a vector and a scalar, with values and
/// gradients from a fixed generator.
fn shaped_params(seed: u32) -> Vec<Param> {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        ((s >> 8) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0
    };
    [vec![4, 3], vec![2, 3, 2], vec![3], vec![]]
        .into_iter()
        .enumerate()
        .map(|(i, shape)| {
            let n = shape.iter().product();
            let mut p =
                Param::new(format!("p{i}"), shape, (0..n).map(|_| next()).collect()).unwrap();
            p.grad = (0..n).map(|_| next()).collect();
            p
        })
        .collect()
}

/// Sets the gradients of step k (0-based): smooth, varied in sign and size,
/// and all zero at k = 2.
fn set_grads(params: &mut [Param], k: usize, sign: f32) {
    for (j, p) in params.iter_mut().enumerate() {
        for (i, g) in p.grad.iter_mut().enumerate() {
            let scale = if k == 2 { 0.0 } else { 1.0 + (k % 3) as f32 };
            *g = sign * scale * ((i + 3 * j + k) as f32 * 0.37).sin();
        }
    }
}

fn run_steps(
    o: &mut dyn Optimizer,
    params: &mut [Param],
    steps: std::ops::Range<usize>,
    sign: f32,
) {
    for k in steps {
        set_grads(params, k, sign);
        let mut views: Vec<_> = params.iter_mut().map(Param::view).collect();
        o.step(&mut views).unwrap();
    }
}

/// Configurations that allocate every state buffer of each optimizer.
fn full_state_configs() -> Vec<(&'static str, Value)> {
    vec![
        ("nadam", json!({"lr": 0.01, "weight_decay": 0.1})),
        (
            "nadam",
            json!({"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": true}),
        ),
        ("radam", json!({"lr": 0.01, "weight_decay": 0.1})),
        (
            "radam",
            json!({"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": true}),
        ),
        ("adamax", json!({"lr": 0.01, "weight_decay": 0.1})),
        (
            "adagrad",
            json!({"lr": 0.1, "lr_decay": 0.1, "weight_decay": 0.1, "initial_accumulator_value": 0.5}),
        ),
        (
            "rmsprop",
            json!({"lr": 0.01, "weight_decay": 0.1, "centered": true, "momentum": 0.9}),
        ),
        ("adadelta", json!({"lr": 0.5, "weight_decay": 0.1})),
        ("adafactor", json!({"lr": 0.1, "weight_decay": 0.1})),
    ]
}

#[test]
fn state_round_trip_is_bit_exact() {
    for (name, hp) in full_state_configs() {
        // 9 uninterrupted steps (RAdam's first rectified step is the 6th).
        let mut a = shaped_params(11);
        let mut oa = opt(name, &hp);
        run_steps(oa.as_mut(), &mut a, 0..9, 1.0);
        let mut b = shaped_params(11);
        let mut ob = opt(name, &hp);
        run_steps(ob.as_mut(), &mut b, 0..9, 1.0);
        assert_eq!(a, b, "{name}: not deterministic");

        // 4 steps, save, load into a fresh optimizer, 5 more.
        let mut c = shaped_params(11);
        let mut oc = opt(name, &hp);
        run_steps(oc.as_mut(), &mut c, 0..4, 1.0);
        let sd = oc.state_dict();
        assert!(!sd.tensors.is_empty(), "{name}: empty state");
        let mut od = opt(name, &hp);
        od.load_state_dict(&sd).unwrap();
        assert_eq!(od.state_dict(), sd, "{name}: state changed by a round trip");
        run_steps(od.as_mut(), &mut c, 4..9, 1.0);
        assert_eq!(a, c, "{name} {hp}: resumed run differs");
        assert_eq!(
            oa.state_dict(),
            od.state_dict(),
            "{name}: final states differ"
        );
    }
}

/// (parameter, buffer name, number of values)
type Buffer = (&'static str, &'static str, usize);

#[test]
fn state_buffers_have_torchs_names_and_sizes() {
    let expect: [(&str, Value, &[Buffer]); 4] = [
        (
            "nadam",
            json!({}),
            &[
                ("p0", "exp_avg", 12),
                ("p0", "exp_avg_sq", 12),
                ("p0", "mu_product", 1),
            ],
        ),
        (
            "rmsprop",
            json!({"centered": true, "momentum": 0.9}),
            &[
                ("p0", "square_avg", 12),
                ("p0", "momentum_buffer", 12),
                ("p0", "grad_avg", 12),
            ],
        ),
        (
            "adafactor",
            json!({}),
            &[
                ("p0", "row_var", 4),
                ("p0", "col_var", 3),
                ("p1", "row_var", 6),
                ("p1", "col_var", 4),
                ("p2", "variance", 3),
                ("p3", "variance", 1),
            ],
        ),
        (
            "adagrad",
            json!({"initial_accumulator_value": 0.25}),
            &[("p3", "sum", 1)],
        ),
    ];
    for (name, hp, buffers) in expect {
        let mut p = shaped_params(5);
        let mut o = opt(name, &hp);
        run_steps(o.as_mut(), &mut p, 0..3, 1.0);
        let sd = o.state_dict();
        for &(param, buf, len) in buffers {
            let e = sd
                .tensors
                .iter()
                .find(|e| e.param == param && e.name == buf)
                .unwrap_or_else(|| panic!("{name}: {param}/{buf} missing"));
            assert_eq!(e.values.len(), len, "{name}: {param}/{buf}");
        }
        assert_eq!(sd.scalars["param/p0/step"], 3.0);
    }
    // Only the factored buffers exist for matrices, only `variance` for vectors.
    let mut p = shaped_params(5);
    let mut o = opt("adafactor", &json!({}));
    run_steps(o.as_mut(), &mut p, 0..1, 1.0);
    let names: Vec<(String, String)> = o
        .state_dict()
        .tensors
        .into_iter()
        .map(|e| (e.param, e.name))
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
}

#[test]
fn states_that_do_not_fit_are_errors() {
    // Adafactor state of a [4, 3] matrix stepped with a [3, 4] one of the same name.
    let mut o = opt("adafactor", &json!({}));
    let mut w = Param::new("w", vec![4, 3], vec![0.5; 12]).unwrap();
    w.grad = vec![0.1; 12];
    o.step(&mut [w.view()]).unwrap();
    let sd = o.state_dict();
    let mut fresh = opt("adafactor", &json!({}));
    fresh.load_state_dict(&sd).unwrap();
    let mut wt = Param::new("w", vec![3, 4], vec![0.5; 12]).unwrap();
    wt.grad = vec![0.1; 12];
    let err = fresh.step(&mut [wt.view()]).unwrap_err().to_string();
    assert!(err.contains("'w'") && err.contains("row_var"), "{err}");
    // ... or as a vector: the factors do not belong to it.
    let mut wv = Param::new("w", vec![12], vec![0.5; 12]).unwrap();
    wv.grad = vec![0.1; 12];
    let err = fresh.step(&mut [wv.view()]).unwrap_err().to_string();
    assert!(err.contains("row_var"), "{err}");
    // A vector's state stepped as a matrix.
    let mut ov = opt("adafactor", &json!({}));
    ov.step(&mut [wv.view()]).unwrap();
    let err = ov.step(&mut [w.view()]).unwrap_err().to_string();
    assert!(err.contains("variance"), "{err}");

    // NAdam's mu_product holds one value.
    let mut o = opt("nadam", &json!({}));
    o.step(&mut [w.view()]).unwrap();
    let mut sd = o.state_dict();
    let mu = sd
        .tensors
        .iter_mut()
        .find(|e| e.name == "mu_product")
        .unwrap();
    mu.values = vec![0.9, 0.9];
    let mut fresh = opt("nadam", &json!({}));
    fresh.load_state_dict(&sd).unwrap();
    let err = fresh.step(&mut [w.view()]).unwrap_err().to_string();
    assert!(err.contains("mu_product"), "{err}");
    // Parameter-sized buffers of different lengths are refused at load.
    let mut sd = o.state_dict();
    let m = sd.tensors.iter_mut().find(|e| e.name == "exp_avg").unwrap();
    m.values.pop();
    assert!(opt("nadam", &json!({})).load_state_dict(&sd).is_err());
}

#[test]
fn maximize_equals_minimizing_the_negated_gradient() {
    // torch negates the gradient first; with weight decay on, this differs
    // from negating the update.
    for (name, hp) in full_state_configs() {
        let mut hp_max = hp.clone();
        hp_max["maximize"] = json!(true);
        let mut a = shaped_params(23);
        let mut b = shaped_params(23);
        let mut oa = opt(name, &hp_max);
        let mut ob = opt(name, &hp);
        run_steps(oa.as_mut(), &mut a, 0..8, 1.0);
        run_steps(ob.as_mut(), &mut b, 0..8, -1.0);
        let data = |ps: &[Param]| ps.iter().map(|p| p.data.clone()).collect::<Vec<_>>();
        assert_eq!(data(&a), data(&b), "{name} {hp}");
        assert_eq!(oa.state_dict(), ob.state_dict(), "{name} {hp}");
        // And it does move the other way than minimizing the same gradient.
        let mut c = shaped_params(23);
        run_steps(opt(name, &hp).as_mut(), &mut c, 0..8, 1.0);
        assert_ne!(data(&a), data(&c), "{name}: maximize had no effect");
    }
}

#[test]
fn radam_is_momentum_sgd_until_rho_exceeds_5() {
    // Constant gradient g: m / (1 - beta1^t) = g, so steps 1-5 move by lr * g;
    // step 6 (rho_6 = 5.9942) moves by lr * rect_6 * g / |g| (up to eps).
    let (lr, g) = (0.01f64, -0.3f32);
    let mut o = opt("radam", &json!({"lr": lr}));
    let mut p = Param::new("x", vec![1], vec![0.0]).unwrap();
    let mut moves = Vec::new();
    for _ in 0..6 {
        p.grad[0] = g;
        let before = p.data[0] as f64;
        o.step(&mut [p.view()]).unwrap();
        moves.push(p.data[0] as f64 - before);
    }
    for (t, d) in moves[..5].iter().enumerate() {
        let want = -lr * g as f64;
        assert!(
            (d - want).abs() < 1e-6 * want.abs() + 1e-7,
            "step {}: {d} vs {want}",
            t + 1
        );
    }
    let beta2 = 0.999f64;
    let rho_inf = 2.0 / (1.0 - beta2) - 1.0;
    let bc2 = 1.0 - beta2.powi(6);
    let rho6 = rho_inf - 2.0 * 6.0 * beta2.powi(6) / bc2;
    assert!(rho6 > 5.0 && rho6 < 6.0);
    let rect =
        ((rho6 - 4.0) * (rho6 - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho6)).sqrt();
    // -lr * rect * sign(g) with sign(g) = -1; the unrectified step would be
    // about 12 times larger. The move is read off f32 values near 0.015, whose
    // spacing (9e-10) bounds the agreement.
    let want = lr * rect;
    assert!(
        (moves[5] - want).abs() < 1e-4 * want,
        "step 6: {} vs {want}",
        moves[5]
    );
}

#[test]
fn adafactor_first_step_is_exact_for_rank_one_gradients() {
    // At t = 1 the averages equal the current row/column means, and for
    // G = u v^T the factored estimate R C^T / mean(R) equals G^2, so
    // U = sign(G), RMS(U) = 1 and p1 = p0 - max(eps2, RMS(p0)) * min(lr, 1) * sign(G).
    let (u, v) = ([0.5f32, -2.0, 1.5, 0.25], [1.0f32, -0.75, 3.0]);
    for (shape, lr, wd) in [
        (vec![4, 3], 0.01f64, 0.0f64),
        (vec![2, 4, 3], 0.05, 0.0),
        (vec![4, 3], 2.0, 0.0),
        (vec![4, 3], 0.01, 0.5),
    ] {
        let batch = shape[..shape.len() - 2].iter().product::<usize>();
        let n = batch * 12;
        let grad: Vec<f32> = (0..n)
            .map(|i| {
                let k = (i / 12 + 1) as f32;
                k * u[(i % 12) / 3] * v[i % 3]
            })
            .collect();
        let data: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.7).cos() * 0.2).collect();
        let mut p = Param::new("w", shape.clone(), data.clone()).unwrap();
        p.grad = grad.clone();
        let mut o = opt("adafactor", &json!({"lr": lr, "weight_decay": wd}));
        o.step(&mut [p.view()]).unwrap();
        let rms = (data.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / n as f64).sqrt();
        let alpha = 1e-3f64.max(rms) * lr.min(1.0);
        for i in 0..n {
            let decayed = data[i] as f64 * (1.0 - lr * wd);
            let want = decayed - alpha * sign(grad[i]) as f64;
            let got = p.data[i] as f64;
            assert!(
                (got - want).abs() < 1e-5 * alpha + 1e-7,
                "shape {shape:?} lr {lr} wd {wd} [{i}]: {got} vs {want}"
            );
        }
    }
}

#[test]
fn zero_gradient_steps_keep_parameters_finite() {
    // A first step with an all-zero gradient divides 0 by eps-guarded
    // denominators only.
    for (name, hp) in full_state_configs() {
        let mut p = shaped_params(3);
        for q in p.iter_mut() {
            q.grad.iter_mut().for_each(|g| *g = 0.0);
        }
        let mut o = opt(name, &hp);
        for _ in 0..3 {
            let mut views: Vec<_> = p.iter_mut().map(Param::view).collect();
            o.step(&mut views).unwrap();
        }
        assert!(
            p.iter().all(|q| q.data.iter().all(|x| x.is_finite())),
            "{name}: non-finite parameters after zero gradients"
        );
    }
}
