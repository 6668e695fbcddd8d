//! The fast path (fused, chunked, multi-threaded, SIMD) against the simple
//! per-element path (`UpdateRule::update` per parameter, one thread):
//!
//! * f32 state: bit-identical parameters and state for every registered
//!   rule whose registry facts say its fast path is exact (an elementwise
//!   kernel, or LAMB's and Adafactor's blocked passes; for Adafactor this
//!   covers vectors, its matrices have their own test), with its defaults
//!   and with the variants listed here, over many shapes (empty chunks,
//!   chunk edges, a thousand small tensors) and thread counts 1, 2, 3 and 8;
//!   rules that read a curvature estimate get one every other step;
//! * compressed state (bf16 with stochastic rounding, 8-bit blocks), for
//!   every registered elementwise rule: the
//!   fast path equals the simple path bit for bit too (the codecs are keyed
//!   by element index and blocks never straddle chunks), and stays within a
//!   stated tolerance of f32 state;
//! * training with compressed state: a teacher-student regression ends
//!   within 1% of the loss reached with f32 state;
//! * the default per-parameter parallel path of rules without a kernel.

use optimist_core::exec::{ExecOptions, CHUNK};
use optimist_core::optimizer::{OptimizerConfig, StepInfo, UpdateRule};
use optimist_core::optimizer::Curvature;
use optimist_core::registry::{build, find, registry};
use optimist_core::tensor::{views, ParamMut};
use optimist_core::{DType, Engine, Error, Optimizer, Param, Result, StateDict};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// xorshift64*: deterministic test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// Sizes covering chunk edges and many small tensors.
fn sizes() -> Vec<usize> {
    let mut s = vec![1, 7, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5, 100_003];
    s.extend((0..300).map(|i| 1 + (i * 37) % 50));
    s
}

fn params(sizes: &[usize], seed: u64) -> Vec<Param> {
    let mut rng = Rng(seed | 1);
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let data = (0..n).map(|_| rng.next()).collect();
            Param::new(format!("p{i}"), vec![n], data).unwrap()
        })
        .collect()
}

fn set_grads(ps: &mut [Param], rng: &mut Rng, scale: f32) {
    for p in ps.iter_mut() {
        for g in p.grad.iter_mut() {
            let r = rng.next();
            // Some exact zeros and a spread of magnitudes.
            *g = if r.abs() < 0.05 {
                0.0
            } else {
                r * scale * (1.0 + 10.0 * r * r)
            };
        }
    }
}

/// Parameters of the given shapes, named `w0`, `w1`, ..., with values
/// from `rng`.
fn shaped(shapes: &[&[usize]], rng: &mut Rng) -> Vec<Param> {
    shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n: usize = s.iter().product();
            let data = (0..n).map(|_| rng.next()).collect();
            Param::new(format!("w{i}"), s.to_vec(), data).unwrap()
        })
        .collect()
}

/// The parameters and the state after a run.
type Outcome = (Vec<Vec<f32>>, StateDict);

/// `steps` steps of `opt` on `ps` with gradients from `rng` (scale 0.1).
fn train(opt: &mut dyn Optimizer, mut ps: Vec<Param>, rng: &mut Rng, steps: usize) -> Outcome {
    for _ in 0..steps {
        set_grads(&mut ps, rng, 0.1);
        opt.step(&mut views(&mut ps)).unwrap();
    }
    (ps.into_iter().map(|p| p.data).collect(), opt.state_dict())
}

/// Runs `steps` steps and returns the parameters and the state.
fn run(name: &str, hp: &Value, exec: ExecOptions, sizes: &[usize], steps: usize) -> Outcome {
    let mut opt = build(name, hp).unwrap();
    opt.set_exec_options(exec).unwrap();
    let curvature = find(name).is_some_and(|s| s.facts.curvature != Curvature::None);
    let mut ps = params(sizes, 11);
    let mut rng = Rng(99);
    for t in 0..steps {
        set_grads(&mut ps, &mut rng, 0.1);
        if t == 1 {
            // A schedule changes a hyperparameter between steps.
            opt.set_lr(opt.lr().unwrap() * 0.5).unwrap();
        }
        // Second-order rules get a Hessian estimate on every other step.
        let hess: Vec<Vec<f32>> = ps
            .iter()
            .map(|p| p.grad.iter().map(|g| g * g + 0.01).collect())
            .collect();
        let mut vs = views(&mut ps);
        if curvature && t % 2 == 0 {
            for (v, h) in vs.iter_mut().zip(&hess) {
                v.hessian = Some(h);
            }
        }
        opt.step(&mut vs).unwrap();
    }
    (ps.into_iter().map(|p| p.data).collect(), opt.state_dict())
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn assert_identical(a: &Outcome, b: &Outcome, what: &str) {
    assert_eq!(a.0.len(), b.0.len());
    for (i, (x, y)) in a.0.iter().zip(&b.0).enumerate() {
        assert!(bits(x) == bits(y), "{what}: parameter {i} differs");
    }
    assert_eq!(
        a.1.tensors.len(),
        b.1.tensors.len(),
        "{what}: state entries"
    );
    for (x, y) in a.1.tensors.iter().zip(&b.1.tensors) {
        assert_eq!((&x.param, &x.name), (&y.param, &y.name));
        assert!(
            bits(&x.values) == bits(&y.values),
            "{what}: state {}/{} differs",
            x.param,
            x.name
        );
    }
    assert_eq!(a.1.scalars, b.1.scalars, "{what}: step counts");
}

/// Configurations beside the defaults: options that are off by default.
fn variants() -> Vec<(&'static str, Value)> {
    vec![
        ("sgd", json!({"lr": 0.1})),
        ("sgd", json!({"lr": 0.1, "momentum": 0.9})),
        (
            "sgd",
            json!({"lr": 0.1, "momentum": 0.9, "nesterov": true, "weight_decay": 0.01}),
        ),
        (
            "sgd",
            json!({"lr": 0.1, "momentum": 0.5, "dampening": 0.3, "maximize": true}),
        ),
        ("adam", json!({"lr": 0.01})),
        (
            "adam",
            json!({"lr": 0.01, "amsgrad": true, "weight_decay": 0.1}),
        ),
        (
            "adam",
            json!({"lr": 0.01, "maximize": true, "betas": [0.6, 0.99]}),
        ),
        (
            "adam",
            json!({"lr": 0.01, "decoupled_weight_decay": true, "weight_decay": 0.1}),
        ),
        (
            "adamw",
            json!({"lr": 0.01, "amsgrad": true, "weight_decay": 0.5}),
        ),
        ("lion", json!({"lr": 1e-3, "weight_decay": 0.1})),
        (
            "lion",
            json!({"lr": 1e-3, "weight_decay": 0.1, "weight_decouple": false}),
        ),
        ("adabelief", json!({"lr": 1e-2, "weight_decay": 0.1})),
        (
            "adabelief",
            json!({"lr": 1e-2, "rectify": true, "ams_bound": true, "weight_decouple": false, "weight_decay": 0.1}),
        ),
        ("radam", json!({"lr": 1e-2})),
        (
            "radam",
            json!({"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": true, "maximize": true}),
        ),
        ("nadam", json!({"lr": 1e-2})),
        (
            "nadam",
            json!({"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": true, "maximize": true}),
        ),
        ("nadam", json!({"lr": 1e-2, "weight_decay": 0.1})),
        ("adamax", json!({"lr": 1e-2, "weight_decay": 0.1})),
        ("adamax", json!({"lr": 1e-2, "maximize": true})),
        (
            "adagrad",
            json!({"lr": 1e-2, "lr_decay": 0.1, "initial_accumulator_value": 0.1}),
        ),
        ("adagrad", json!({"weight_decay": 0.1, "maximize": true})),
        ("rmsprop", json!({"lr": 1e-2})),
        (
            "rmsprop",
            json!({"lr": 1e-2, "centered": true, "weight_decay": 0.1}),
        ),
        ("rmsprop", json!({"lr": 1e-2, "momentum": 0.9})),
        (
            "rmsprop",
            json!({"lr": 1e-2, "momentum": 0.9, "centered": true, "maximize": true}),
        ),
        ("adadelta", json!({"weight_decay": 0.1})),
        ("adadelta", json!({"maximize": true, "rho": 0.5})),
        ("adabound", json!({"lr": 1e-2})),
        (
            "adabound",
            json!({"lr": 1e-2, "ams_bound": true, "weight_decay": 0.1, "weight_decouple": true}),
        ),
        ("signsgd", json!({"lr": 1e-2})),
        (
            "signsgd",
            json!({"lr": 1e-2, "momentum": 0.9, "weight_decay": 0.1}),
        ),
        ("adamomentum", json!({"lr": 1e-2, "weight_decay": 0.1})),
        ("sophiag", json!({"lr": 1e-2, "weight_decay": 0.1})),
        ("sophiag", json!({"lr": 1e-2, "maximize": true})),
        ("lamb", json!({"lr": 1e-2, "weight_decay": 0.1})),
        (
            "lamb",
            json!({"lr": 1e-2, "pre_norm": true, "max_grad_norm": 0.5, "weight_decouple": false, "weight_decay": 0.1}),
        ),
        (
            "lamb",
            json!({"lr": 1e-2, "adam": true, "grad_averaging": false}),
        ),
        ("adafactor", json!({"lr": 1e-2, "weight_decay": 0.1})),
        (
            "adafactor",
            json!({"lr": 1e-2, "maximize": true, "d": 2.0, "beta2_decay": -0.5, "eps": [1e-20, 1e-3]}),
        ),
        ("sophiah", json!({"lr": 1e-2, "weight_decay": 0.1})),
        (
            "sophiah",
            json!({"lr": 1e-2, "weight_decouple": false, "weight_decay": 0.1, "fixed_decay": true, "maximize": true}),
        ),
        // The Adam family (pytorch-optimizer 4.1.0).
        ("adopt", json!({"lr": 1e-2, "weight_decay": 0.1})),
        ("adopt", json!({"lr": 1e-2, "cautious": true, "maximize": true})),
        ("ademamix", json!({"lr": 1e-2, "t_alpha_beta3": 5.0, "weight_decay": 0.1})),
        ("simplifiedademamix", json!({"lr": 1e-2, "alpha": 1.0, "beta1_warmup": 4})),
        ("adan", json!({"lr": 1e-2, "max_grad_norm": 1.0, "weight_decay": 0.1})),
        ("adan", json!({"lr": 1e-2, "weight_decouple": true, "weight_decay": 0.1, "maximize": true})),
        ("laprop", json!({"lr": 1e-2, "centered": true, "steps_before_using_centered": 3, "ams_bound": true})),
        ("laprop", json!({"lr": 1e-2, "weight_decay": 0.1, "maximize": true})),
        ("yogi", json!({"lr": 1e-2, "weight_decay": 0.1, "weight_decouple": false})),
        ("qhadam", json!({"lr": 1e-2, "nus": [0.7, 0.8], "weight_decay": 0.1})),
        ("adamod", json!({"lr": 1e-2, "weight_decay": 0.1, "adam_debias": true})),
        ("diffgrad", json!({"lr": 1e-2, "rectify": true, "ams_bound": true})),
        ("diffgrad", json!({"lr": 1e-2, "weight_decay": 0.1, "maximize": true})),
        // Catalogue C.
        ("grokfastadamw", json!({"lr": 1e-2, "weight_decay": 0.1})),
        (
            "grokfastadamw",
            json!({"lr": 1e-2, "weight_decouple": false, "weight_decay": 0.1, "grokfast_after_step": 2, "maximize": true}),
        ),
        ("grokfastadamw", json!({"lr": 1e-2, "grokfast": false, "fixed_decay": true, "weight_decay": 0.01})),
        // MARS: blocked norm and step passes; Lion form, AMSBound, 1-D mixing.
        ("mars", json!({"mars_type": "lion", "weight_decay": 0.01})),
        ("mars", json!({"ams_bound": true, "optimize_1d": true, "maximize": true})),
        ("mars", json!({"weight_decouple": false, "weight_decay": 0.01, "cautious": true})),
        // Prodigy: blocked sums for d; decoupled decay, atan2 form, warm-up safeguard.
        ("prodigy", json!({"weight_decay": 0.01, "bias_correction": true})),
        ("prodigy", json!({"eps": null, "safeguard_warmup": true, "maximize": true})),
        // D-Adaptation: blocked lane sums; L2 and decoupled decay, bias
        // correction, momentum, maximize.
        ("dadaptadam", json!({"weight_decay": 0.01, "bias_correction": true})),
        ("dadaptadam", json!({"weight_decay": 0.01, "weight_decouple": true, "maximize": true})),
        ("dadaptlion", json!({"weight_decay": 0.01, "weight_decouple": true})),
        ("dadaptlion", json!({"weight_decay": 0.01, "maximize": true})),
        ("dadaptsgd", json!({"weight_decay": 0.01, "momentum": 0.5})),
        ("dadaptsgd", json!({"weight_decay": 0.01, "weight_decouple": true, "maximize": true})),
        // NovoGrad: blocked squared norm; averaging, decay, debias.
        ("novograd", json!({"lr": 1e-2, "grad_averaging": true, "weight_decay": 0.01})),
        (
            "novograd",
            json!({"lr": 1e-2, "weight_decay": 0.01, "weight_decouple": true, "adam_debias": true, "maximize": true}),
        ),
    ]
}

/// Every registered rule whose fast path gives the simple path's bits by
/// construction (an elementwise kernel, or blocked passes: LAMB,
/// Adafactor), taken from the registry so that no rule is left out, with
/// its defaults; then the [`variants`].
fn configs() -> Vec<(&'static str, Value)> {
    let mut out: Vec<(&'static str, Value)> = registry()
        .iter()
        .filter(|s| s.facts.exact_fast_path())
        .map(|s| (s.name, json!({})))
        .collect();
    for (name, hp) in variants() {
        assert!(
            find(name).is_some_and(|s| s.facts.exact_fast_path()),
            "variant of '{name}', which is not a registered rule with an exact fast path"
        );
        out.push((name, hp));
    }
    out
}

/// Options of some elementwise rules under compressed state.
fn compressed_variants() -> Vec<(&'static str, Value)> {
    vec![
        ("adam", json!({"lr": 0.01, "amsgrad": true})),
        ("sgd", json!({"lr": 0.1, "momentum": 0.9})),
        ("adabelief", json!({"lr": 1e-2, "ams_bound": true})),
        (
            "rmsprop",
            json!({"lr": 1e-2, "momentum": 0.9, "centered": true}),
        ),
        ("adabound", json!({"lr": 1e-2, "ams_bound": true})),
    ]
}

/// Every registered elementwise rule (only those keep compressed state)
/// with its defaults, then the [`compressed_variants`].
fn compressed_configs() -> Vec<(&'static str, Value)> {
    let mut out: Vec<(&'static str, Value)> = registry()
        .iter()
        .filter(|s| s.facts.elementwise)
        .map(|s| (s.name, json!({})))
        .collect();
    for (name, hp) in compressed_variants() {
        assert!(find(name).is_some_and(|s| s.facts.elementwise), "{name}");
        out.push((name, hp));
    }
    out
}

/// The registry's capability flags cover the rules this file was written
/// for (a rule that lost its flag would silently drop out of the tests).
#[test]
fn registry_lists_the_exact_fast_paths() {
    let exact: Vec<&str> = configs().iter().map(|c| c.0).collect();
    for name in ["sgd", "adam", "adamw", "lion", "lamb", "adafactor", "sophiah", "sophiag"] {
        assert!(exact.contains(&name), "{name}");
    }
    let compressed: Vec<&str> = compressed_configs().iter().map(|c| c.0).collect();
    for name in ["sgd", "adamw", "lion", "rmsprop", "adabound"] {
        assert!(compressed.contains(&name), "{name}");
    }
    assert!(!compressed.contains(&"lamb") && !compressed.contains(&"adafactor"));
}

fn simple() -> ExecOptions {
    ExecOptions {
        fused: false,
        ..ExecOptions::default()
    }
}

fn fused(threads: usize) -> ExecOptions {
    ExecOptions {
        threads,
        ..ExecOptions::default()
    }
}

/// `go` on the simple path and on the fast path at 1, 2, 3 and 8 threads,
/// with the other options of `base`: every run gives the same bits.
fn assert_every_path_agrees(base: ExecOptions, what: &str, go: impl Fn(ExecOptions) -> Outcome) {
    let reference = go(ExecOptions { fused: false, ..base });
    for threads in [1, 2, 3, 8] {
        let got = go(ExecOptions { fused: true, threads, ..base });
        assert_identical(&got, &reference, &format!("{what} threads={threads}"));
    }
}

#[test]
fn fast_path_equals_simple_path_bit_for_bit() {
    let sz = sizes();
    for (name, hp) in configs() {
        // Seven steps: RAdam reaches its rectified phase at step 6 (beta2 = 0.999).
        assert_every_path_agrees(ExecOptions::default(), &format!("{name} {hp}"), |exec| {
            run(name, &hp, exec, &sz, 7)
        });
    }
}

#[test]
fn compressed_state_fast_path_equals_simple_path() {
    let sz = sizes();
    for (dtype, block, sr) in [
        (DType::Bf16, 256, true),
        (DType::Q8, 256, true),
        (DType::Q8, 2048, true),
        (DType::Q8, 256, false),
    ] {
        let base = ExecOptions {
            state_dtype: dtype,
            q8_block: block,
            q8_stochastic: sr,
            ..ExecOptions::default()
        };
        for (name, hp) in compressed_configs() {
            let what = format!("{name} {dtype:?}/{block}/sr={sr}");
            assert_every_path_agrees(base, &what, |exec| run(name, &hp, exec, &sz, 3));
        }
    }
}

/// One AdamW step from the same state: compressed state stays within the
/// codec's error of f32 state. bf16 stores 8 significant bits (relative
/// error < 2^-7 per value with stochastic rounding); q8 stores each value to
/// within 0.9/128 of its block's largest magnitude (first moments) and the
/// unsigned book halves that for second moments.
#[test]
fn compressed_state_tolerance_against_f32() {
    let sz = [50_000usize, 20_000];
    let hp = json!({"lr": 1e-3});
    let f = run("adamw", &hp, fused(2), &sz, 5);
    for (dtype, rel) in [(DType::Bf16, 2f32.powi(-7)), (DType::Q8, 0.9 / 128.0)] {
        let opts = ExecOptions {
            threads: 2,
            state_dtype: dtype,
            ..ExecOptions::default()
        };
        let c = run("adamw", &hp, opts, &sz, 5);
        // q8 state dicts also carry the codes and block scales
        // (`<buffer>.q8_codes`, `<buffer>.q8_scales`); compare the decoded values.
        let decoded: Vec<_> = c.1.tensors.iter().filter(|t| !t.name.contains(".q8_")).collect();
        assert_eq!(decoded.len(), f.1.tensors.len());
        for (a, b) in f.1.tensors.iter().zip(decoded) {
            assert_eq!(a.name, b.name);
            // Errors are relative to the buffer's largest magnitude (moments
            // pass through zero, so per-value relative errors are unbounded).
            let scale = a.values.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = a
                .values
                .iter()
                .zip(&b.values)
                .map(|(x, y)| (x - y).abs() / scale.max(1e-30))
                .fold(0f32, f32::max);
            // Five steps of compounding: five times the per-write error.
            assert!(
                worst <= 5.0 * rel,
                "{dtype:?} {}/{}: worst deviation {worst} of the largest value > {}",
                a.param,
                a.name,
                5.0 * rel
            );
        }
        // The parameters follow the f32 run: the root-mean-square of their
        // difference is a small part of how far the parameters moved (the
        // state's error relative to its largest value, compounded over the
        // five steps, bounds the part).
        let start: Vec<Vec<f32>> = params(&sz, 11).into_iter().map(|p| p.data).collect();
        let (mut diff, mut moved) = (0f64, 0f64);
        for ((x, y), p0) in f.0.iter().zip(&c.0).zip(&start) {
            for ((a, b), a0) in x.iter().zip(y).zip(p0) {
                diff += ((a - b) as f64).powi(2);
                moved += ((a - a0) as f64).powi(2);
            }
        }
        let part = (diff / moved).sqrt();
        eprintln!("{dtype:?}: parameter difference {part:.2e} of the movement");
        assert!(moved > 0.0);
        assert!(
            part <= 5.0 * rel as f64,
            "{dtype:?}: the parameters differ from the f32 run by {part} of their movement"
        );
    }
}

#[test]
fn state_bytes_per_parameter() {
    let n = 1 << 20;
    for (dtype, block, expect) in [
        (DType::F32, 256, 8.0),
        (DType::Bf16, 256, 4.0),
        (DType::Q8, 256, 2.0 * (1.0 + 4.0 / 256.0)),
        (DType::Q8, 2048, 2.0 * (1.0 + 4.0 / 2048.0)),
    ] {
        let mut opt = build("adamw", &json!({})).unwrap();
        opt.set_exec_options(ExecOptions {
            state_dtype: dtype,
            q8_block: block,
            ..ExecOptions::default()
        })
        .unwrap();
        let mut ps = params(&[n], 3);
        set_grads(&mut ps, &mut Rng(5), 0.1);
        opt.step(&mut views(&mut ps)).unwrap();
        let per = opt.state_nbytes() as f64 / n as f64;
        assert!(
            (per - expect).abs() < 1e-9,
            "{dtype:?}/{block}: {per} bytes per parameter"
        );
    }
    // Small tensors keep f32 state under q8.
    let mut opt = build("adamw", &json!({})).unwrap();
    opt.set_exec_options(ExecOptions {
        state_dtype: DType::Q8,
        ..ExecOptions::default()
    })
    .unwrap();
    let mut ps = params(&[100], 3);
    opt.step(&mut views(&mut ps)).unwrap();
    assert_eq!(opt.state_nbytes(), 800);
}

/// A two-layer tanh network (64 -> 128 -> 32) as teacher; a student of the
/// same shape trained by AdamW on noisy targets (noise 0.1) with minibatches
/// of 32 fresh inputs; returns the mean squared error on 512 held-out
/// noise-free inputs after `steps` steps. Both weight matrices have at least
/// 4096 values, so they are compressed under q8; the biases stay f32.
fn teacher_student(exec: ExecOptions, steps: usize) -> f64 {
    let (din, dh, dout, batch) = (64usize, 128usize, 32usize, 32usize);
    let mut rng = Rng(2024);
    let mut init =
        |n: usize, scale: f32| -> Vec<f32> { (0..n).map(|_| rng.next() * scale).collect() };
    let t1 = init(dh * din, 2.0 / (din as f32).sqrt());
    let t2 = init(dout * dh, 2.0 / (dh as f32).sqrt());
    let mut w1 = Param::new(
        "w1",
        vec![dh, din],
        init(dh * din, 1.0 / (din as f32).sqrt()),
    )
    .unwrap();
    let mut b1 = Param::new("b1", vec![dh], vec![0.0; dh]).unwrap();
    let mut w2 = Param::new(
        "w2",
        vec![dout, dh],
        init(dout * dh, 1.0 / (dh as f32).sqrt()),
    )
    .unwrap();
    let mut b2 = Param::new("b2", vec![dout], vec![0.0; dout]).unwrap();
    let forward = |w1: &[f32], b1: &[f32], w2: &[f32], b2: &[f32], x: &[f32]| {
        let h: Vec<f32> = (0..dh)
            .map(|j| {
                let z: f32 = w1[j * din..(j + 1) * din]
                    .iter()
                    .zip(x)
                    .map(|(a, b)| a * b)
                    .sum();
                (z + b1.get(j).copied().unwrap_or(0.0)).tanh()
            })
            .collect();
        let y: Vec<f32> = (0..dout)
            .map(|o| {
                let z: f32 = w2[o * dh..(o + 1) * dh]
                    .iter()
                    .zip(&h)
                    .map(|(a, b)| a * b)
                    .sum();
                z + b2.get(o).copied().unwrap_or(0.0)
            })
            .collect();
        (h, y)
    };
    let mut opt = build("adamw", &json!({"lr": 3e-3, "weight_decay": 0.0})).unwrap();
    opt.set_exec_options(exec).unwrap();
    let mut data = Rng(77);
    for _ in 0..steps {
        for p in [&mut w1, &mut b1, &mut w2, &mut b2] {
            p.grad.fill(0.0);
        }
        for _ in 0..batch {
            let x: Vec<f32> = (0..din).map(|_| data.next()).collect();
            let (_, target) = forward(&t1, &[], &t2, &[], &x);
            let (h, y) = forward(&w1.data, &b1.data, &w2.data, &b2.data, &x);
            let mut dh_ = vec![0f32; dh];
            for o in 0..dout {
                let err = y[o] - (target[o] + 0.1 * data.next());
                let dy = 2.0 * err / (batch * dout) as f32;
                for j in 0..dh {
                    w2.grad[o * dh + j] += dy * h[j];
                    dh_[j] += dy * w2.data[o * dh + j];
                }
                b2.grad[o] += dy;
            }
            for j in 0..dh {
                let dz = dh_[j] * (1.0 - h[j] * h[j]);
                for (g, xi) in w1.grad[j * din..(j + 1) * din].iter_mut().zip(&x) {
                    *g += dz * xi;
                }
                b1.grad[j] += dz;
            }
        }
        opt.step(&mut [w1.view(), b1.view(), w2.view(), b2.view()])
            .unwrap();
    }
    let mut test = Rng(555);
    let mut loss = 0.0f64;
    for _ in 0..512 {
        let x: Vec<f32> = (0..din).map(|_| test.next()).collect();
        let (_, target) = forward(&t1, &[], &t2, &[], &x);
        let (_, y) = forward(&w1.data, &b1.data, &w2.data, &b2.data, &x);
        loss += y
            .iter()
            .zip(&target)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>();
    }
    loss / (512 * dout) as f64
}

fn state(dtype: DType, q8_block: usize, q8_stochastic: bool) -> ExecOptions {
    ExecOptions {
        threads: 2,
        state_dtype: dtype,
        q8_block,
        q8_stochastic,
        ..ExecOptions::default()
    }
}

#[test]
fn training_with_compressed_state_matches_f32_within_one_percent() {
    let steps = 300;
    let start = teacher_student(state(DType::F32, 256, true), 0);
    let base = teacher_student(state(DType::F32, 256, true), steps);
    eprintln!("f32: held-out loss {start:.6e} -> {base:.6e}");
    assert!(
        base < 0.2 * start,
        "f32 run did not train: {start} -> {base}"
    );
    for (dtype, block) in [(DType::Bf16, 256), (DType::Q8, 256), (DType::Q8, 2048)] {
        let got = teacher_student(state(dtype, block, true), steps);
        let rel = (got - base).abs() / base;
        eprintln!(
            "{dtype:?}/{block}: held-out loss {got:.6e} vs f32 {base:.6e} ({:+.3}%)",
            (got - base) / base * 100.0
        );
        assert!(
            rel <= 0.01,
            "{dtype:?}/{block}: final loss {got} vs f32 {base} ({rel})"
        );
    }
}

/// Why q8 rounds stochastically by default: rounded to the nearest code
/// (bitsandbytes' choice), an EMA whose per-step change is smaller than half
/// a code step never moves, and the run ends measurably worse.
#[test]
fn q8_nearest_rounding_ends_further_from_f32_than_stochastic() {
    let steps = 300;
    let base = teacher_student(state(DType::F32, 256, true), steps);
    let sr = teacher_student(state(DType::Q8, 256, true), steps);
    let nearest = teacher_student(state(DType::Q8, 256, false), steps);
    eprintln!(
        "q8/256 held-out loss: stochastic {:+.3}%, nearest {:+.3}% vs f32",
        (sr - base) / base * 100.0,
        (nearest - base) / base * 100.0
    );
    assert!((nearest - base).abs() > 2.0 * (sr - base).abs());
}

#[test]
fn bf16_state_survives_a_checkpoint_round_trip() {
    let sz = [30_000usize, 100];
    let opts = ExecOptions {
        state_dtype: DType::Bf16,
        threads: 2,
        ..ExecOptions::default()
    };
    let hp = json!({"lr": 0.01});
    let mut a = build("adamw", &hp).unwrap();
    a.set_exec_options(opts).unwrap();
    let mut pa = params(&sz, 1);
    let mut rng = Rng(4);
    set_grads(&mut pa, &mut rng, 0.1);
    a.step(&mut views(&mut pa)).unwrap();
    let mut b = build("adamw", &hp).unwrap();
    b.set_exec_options(opts).unwrap();
    b.load_state_dict(&a.state_dict()).unwrap();
    let mut pb = pa.clone();
    set_grads(&mut pa, &mut rng, 0.1);
    for (x, y) in pb.iter_mut().zip(&pa) {
        x.grad.clone_from(&y.grad);
    }
    a.step(&mut views(&mut pa)).unwrap();
    b.step(&mut views(&mut pb)).unwrap();
    for (x, y) in pa.iter().zip(&pb) {
        assert!(bits(&x.data) == bits(&y.data));
    }
    assert_eq!(a.state_dict(), b.state_dict());
}

#[test]
fn invalid_exec_options_are_errors() {
    let mut opt = build("adamw", &json!({})).unwrap();
    let err = opt
        .set_exec_options(ExecOptions {
            q8_block: 100,
            ..ExecOptions::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("q8_block"), "{err}");
    assert!(DType::parse("fp8").unwrap_err().to_string().contains("fp8"));
    // A rule without an elementwise kernel cannot keep compressed state.
    let mut e = Engine::new(NormalizedSgd::default()).unwrap();
    let err = e
        .set_exec_options(ExecOptions {
            state_dtype: DType::Bf16,
            ..ExecOptions::default()
        })
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
}

/// A rule written only with `update` (no kernel): p -= lr * g / ||g||.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct NormalizedSgd {
    lr: f64,
}

impl Default for NormalizedSgd {
    fn default() -> Self {
        NormalizedSgd { lr: 0.1 }
    }
}

impl OptimizerConfig for NormalizedSgd {
    const NAME: &'static str = "normalized_sgd";
    const REFERENCE: &'static str = "test";
    const PAPER: &'static str = "test";
    const SUMMARY: &'static str = "test";
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}

optimist_core::param_state! {
    /// Only a step count.
    pub struct Empty {}
}

impl UpdateRule for NormalizedSgd {
    type State = Empty;
    fn update(&self, _: &StepInfo, p: &mut ParamMut<'_>, st: &mut Empty) -> Result<()> {
        st.step += 1;
        let norm = p
            .grad
            .iter()
            .map(|g| (*g as f64) * (*g as f64))
            .sum::<f64>()
            .sqrt();
        let s = (self.lr / norm.max(1e-12)) as f32;
        for (x, g) in p.value.iter_mut().zip(p.grad.iter()) {
            *x -= s * g;
        }
        Ok(())
    }
}

#[test]
fn default_per_parameter_path_is_thread_count_independent() {
    let sz = sizes();
    assert_every_path_agrees(ExecOptions::default(), "normalized sgd", |exec| {
        let mut e = Engine::new(NormalizedSgd::default()).unwrap();
        e.set_exec_options(exec).unwrap();
        let mut ps = params(&sz, 8);
        let mut rng = Rng(3);
        for _ in 0..2 {
            set_grads(&mut ps, &mut rng, 1.0);
            e.step(&mut views(&mut ps)).unwrap();
        }
        (ps.into_iter().map(|p| p.data).collect(), e.state_dict())
    });
}

/// Gradient clipping's global norm sums fixed blocks in a fixed order: the
/// same bits on every thread count, and the plain f64 sum to rounding.
#[test]
fn clip_norm_is_thread_count_independent() {
    use optimist_core::clip::{total_norm, ClipGradNorm};
    let ps = params(&sizes(), 21);
    let grads: Vec<&[f32]> = ps.iter().map(|p| p.data.as_slice()).collect();
    let plain: f64 = grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt();
    let mut seen = Vec::new();
    for threads in [1, 2, 3, 8] {
        optimist_core::exec::set_num_threads(threads).unwrap();
        let norms: Vec<u64> = [1.0, 2.0, 3.0, f64::INFINITY]
            .iter()
            .map(|&t| total_norm(&grads, t).to_bits())
            .collect();
        let mut clipped = ps.clone();
        let mut gs: Vec<&mut [f32]> = clipped.iter_mut().map(|p| p.data.as_mut_slice()).collect();
        ClipGradNorm::new(1.0, 2.0).unwrap().apply(&mut gs);
        let after: Vec<u32> = clipped.iter().flat_map(|p| bits(&p.data)).collect();
        seen.push((norms, after));
    }
    optimist_core::exec::set_num_threads(2).unwrap();
    assert!(seen.windows(2).all(|w| w[0] == w[1]));
    let two = f64::from_bits(seen[0].0[1]);
    assert!((two - plain).abs() <= 1e-12 * plain, "{two} vs {plain}");
}

/// Switching the state type between steps converts the state: q8 -> bf16
/// -> f32 on a live optimizer keeps stepping (the simple path too).
#[test]
fn state_dtype_can_change_between_steps() {
    let sz = [20_000usize, 50];
    for fused in [true, false] {
        let mut opt = build("adamw", &json!({"lr": 0.01})).unwrap();
        let mut ps = params(&sz, 2);
        let mut rng = Rng(6);
        for dtype in [DType::Q8, DType::Bf16, DType::F32, DType::Q8] {
            opt.set_exec_options(ExecOptions {
                fused,
                state_dtype: dtype,
                ..ExecOptions::default()
            })
            .unwrap();
            set_grads(&mut ps, &mut rng, 0.1);
            opt.step(&mut views(&mut ps)).unwrap();
        }
        let d = opt.state_dict();
        assert_eq!(d.scalars["step"], 4.0);
        assert!(d
            .tensors
            .iter()
            .all(|e| e.values.iter().all(|v| v.is_finite())));
        assert!(ps.iter().all(|p| p.data.iter().all(|v| v.is_finite())));
    }
}

/// The Muon family's Newton-Schulz products run in blocks of rows on the
/// thread pool (symmetric products as upper blocks): the results do not
/// depend on the thread count and equal the simple path's bit for bit.
#[test]
fn newton_schulz_products_are_thread_count_independent() {
    let shapes: [&[usize]; 4] = [&[300, 200], &[200, 300], &[129, 129], &[40, 3, 3]];
    for (name, hp) in [
        ("muon", json!({"lr": 0.02, "flatten": true})),
        ("adamuon", json!({"lr": 0.02, "flatten": true})),
    ] {
        assert_every_path_agrees(ExecOptions::default(), name, |exec| {
            let mut opt = build(name, &hp).unwrap();
            opt.set_exec_options(exec).unwrap();
            let mut rng = Rng(5);
            let ps = shaped(&shapes, &mut rng);
            train(opt.as_mut(), ps, &mut rng, 3)
        });
    }
}

/// Adafactor's factored matrices: row and column sums of g² over fixed
/// tiles (column strips, row blocks), the update norm over fixed blocks,
/// so the fast path equals the simple path bit for bit at every thread
/// count. Shapes span several strips (2000 and 70000 columns), several row
/// blocks (300 and 90000 rows), one-row matrices and batches of matrices.
#[test]
fn adafactor_matrices_are_thread_count_independent() {
    let shapes: [&[usize]; 6] = [
        &[300, 2000],
        &[3, 70_000],
        &[90_000, 3],
        &[129, 129],
        &[5, 40, 30],
        &[2, 1, 20_000],
    ];
    for hp in [
        json!({"lr": 1e-2, "weight_decay": 0.1}),
        json!({"lr": 0.5, "maximize": true, "d": 1.0}),
    ] {
        assert_every_path_agrees(ExecOptions::default(), &format!("adafactor {hp}"), |exec| {
            let mut opt = build("adafactor", &hp).unwrap();
            opt.set_exec_options(exec).unwrap();
            let mut rng = Rng(17);
            let ps = shaped(&shapes, &mut rng);
            train(opt.as_mut(), ps, &mut rng, 3)
        });
    }
}

/// Rules with a norm over each matrix (LARS's trust ratio, MARS's
/// corrected gradient): per-block sums in interleaved lanes, added in block
/// order, so the fast path equals the simple path bit for bit at every
/// thread count, on matrices spanning several blocks.
#[test]
fn matrix_norm_rules_are_thread_count_independent() {
    let shapes: [&[usize]; 5] = [&[300, 200], &[129, 129], &[5, 40, 30], &[2, 1, 20_000], &[77]];
    for (name, hp) in [
        ("lars", json!({"lr": 0.1, "weight_decay": 0.01})),
        ("lars", json!({"lr": 0.1, "weight_decay": 0.01, "nesterov": true, "maximize": true})),
        ("lars", json!({"lr": 0.1, "momentum": 0.0, "trust_coefficient": 0.02})),
        ("mars", json!({"lr": 0.01, "weight_decay": 0.01})),
        ("mars", json!({"lr": 0.01, "mars_type": "lion", "ams_bound": true})),
    ] {
        assert_every_path_agrees(ExecOptions::default(), &format!("{name} {hp}"), |exec| {
            let mut opt = build(name, &hp).unwrap();
            opt.set_exec_options(exec).unwrap();
            let mut rng = Rng(23);
            let ps = shaped(&shapes, &mut rng);
            train(opt.as_mut(), ps, &mut rng, 3)
        });
    }
}

/// Wrappers hand execution options to the optimizer they wrap: a wrapped
/// optimizer accepts them (the default refuses), and its fast path equals
/// its simple path bit for bit at every thread count.
#[test]
fn wrappers_forward_exec_options() {
    let inner = json!({"optimizer": "adamw", "hparams": {"lr": 0.01, "weight_decay": 0.1}});
    let sgd = json!({"optimizer": "sgd", "hparams": {"lr": 0.05, "momentum": 0.9}});
    type Maker<'a> = Box<dyn Fn() -> Box<dyn Optimizer> + 'a>;
    let makers: Vec<(&str, Maker<'_>)> = vec![
        (
            "scheduled",
            Box::new(|| {
                optimist_core::registry::build_spec(
                    &json!({"wrapper": "scheduled", "inner": inner.clone()}),
                )
                .unwrap()
            }),
        ),
        (
            "skip_nonfinite",
            Box::new(|| {
                optimist_core::registry::build_spec(
                    &json!({"wrapper": "skip_nonfinite", "inner": inner.clone()}),
                )
                .unwrap()
            }),
        ),
        (
            "grad_accumulation",
            Box::new(|| {
                optimist_core::registry::build_spec(
                    &json!({"wrapper": "grad_accumulation", "k": 2, "inner": inner.clone()}),
                )
                .unwrap()
            }),
        ),
        (
            "ema",
            Box::new(|| {
                optimist_core::registry::build_spec(&json!({"wrapper": "ema", "inner": inner.clone()}))
                    .unwrap()
            }),
        ),
        (
            "swa",
            Box::new(|| {
                optimist_core::registry::build_spec(&json!({"wrapper": "swa", "inner": sgd.clone()}))
                    .unwrap()
            }),
        ),
        (
            "lookahead",
            Box::new(|| build("lookahead", &json!({"k": 2, "inner": inner.clone()})).unwrap()),
        ),
        (
            "cautious",
            Box::new(|| build("cautious", &json!({"inner": inner.clone()})).unwrap()),
        ),
        (
            "magma",
            Box::new(|| build("magma", &json!({"inner": inner.clone()})).unwrap()),
        ),
        (
            "skipupdate",
            Box::new(|| build("skipupdate", &json!({"inner": inner.clone()})).unwrap()),
        ),
    ];
    let sz = sizes();
    for (what, make) in &makers {
        assert_every_path_agrees(ExecOptions::default(), what, |exec| {
            let mut opt = make();
            opt.set_exec_options(exec)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            train(opt.as_mut(), params(&sz, 3), &mut Rng(17), 4)
        });
    }
}

#[test]
fn fused_cautious_mask_equals_the_per_element_mask_for_every_elementwise_rule() {
    // Every registry rule that runs through the elementwise driver and
    // exposes its step (so the `cautious` wrapper accepts it): the fused,
    // vectorized mask over chunks on 1-8 threads against the simple path's
    // per-element `CautiousMask`, bit for bit. Taken from the registry, so
    // a new rule cannot be left out.
    let sz = sizes();
    let rules: Vec<&'static str> = registry()
        .iter()
        .filter(|s| s.facts.elementwise && s.facts.exposes_update)
        .map(|s| s.name)
        .collect();
    assert!(rules.len() >= 15, "only {} rules: {rules:?}", rules.len());
    for name in rules {
        let hp = json!({"inner": {"optimizer": name, "hparams": {}}});
        assert_every_path_agrees(ExecOptions::default(), &format!("cautious over {name}"), |exec| {
            run("cautious", &hp, exec, &sz, 4)
        });
    }
}

#[test]
fn cautious_masking_is_parallel_over_parameters_and_thread_count_independent() {
    // Masks are per tensor: the parameters run in parallel on the fast
    // path, with the values of the one-by-one simple path.
    let sz = sizes();
    let wrap = |inner: &str, hp: Value| json!({"inner": {"optimizer": inner, "hparams": hp}});
    for (name, hp) in [
        (
            "cautious",
            wrap("adamw", json!({"lr": 1e-2, "weight_decay": 0.1})),
        ),
        ("cautious", wrap("lamb", json!({"lr": 1e-2}))),
        ("cautious", wrap("sgd", json!({"lr": 0.1, "momentum": 0.9}))),
        ("lion", json!({"lr": 1e-3, "cautious": true})),
    ] {
        assert_every_path_agrees(ExecOptions::default(), &format!("{name} {hp}"), |exec| {
            run(name, &hp, exec, &sz, 5)
        });
        let reference = run(name, &hp, simple(), &sz, 5);
        // And the mask did something: the plain inner optimizer differs.
        if name == "cautious" {
            let inner = &hp["inner"];
            let plain = run(
                inner["optimizer"].as_str().unwrap(),
                &inner["hparams"],
                simple(),
                &sz,
                5,
            );
            assert!(plain
                .0
                .iter()
                .zip(&reference.0)
                .any(|(a, b)| bits(a) != bits(b)));
        }
    }
}
