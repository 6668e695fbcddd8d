//! Catalogue A (asgd, rprop, sgdw, qhm, aggmo, lars, sgdp, madgrad,
//! novograd, tiger): convergence on the built-in problems, validation
//! errors naming the field, state round trips, and the fast path equal to
//! the simple path bit for bit at 1, 2, 3 and 8 threads.
//!
//! Value-for-value agreement with torch 2.15 and pytorch-optimizer 4.1 is
//! checked by the golden cases (`tests/golden.rs`).

mod common;

use common::{check_resume, opt, refusal};
use optimist_core::exec::{ExecOptions, CHUNK};
use optimist_core::problems::{minimize, MatrixLeastSquares, Problem, Quadratic, Rosenbrock};
use optimist_core::tensor::views;
use optimist_core::{Optimizer, Param, StateDict};
use serde_json::{json, Value};

/// Runs `steps` steps on `problem` and asserts the final loss is below
/// `target` (and below the initial loss).
fn converges(problem: &dyn Problem, runs: Vec<(&str, Value, usize, f64)>) {
    let mut failures = Vec::new();
    for (name, hp, steps, target) in runs {
        let mut o = opt(name, hp.clone());
        let losses = minimize(problem, o.as_mut(), steps).unwrap();
        let (first, last) = (losses[0], *losses.last().unwrap());
        if !(last < target && last < first) {
            failures.push(format!(
                "{name} {hp} on {}: loss {first} -> {last} after {steps} steps (target {target})",
                problem.name()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn quadratic_convergence() {
    // Condition number 100, 16 dimensions, started at loss 187.7.
    let q = Quadratic::default();
    let runs = vec![
        ("asgd", json!({"lr": 0.01}), 2000, 1e-4),
        ("asgd", json!({"lr": 0.01, "t0": 100.0, "weight_decay": 1e-4}), 2000, 1e-3),
        ("rprop", json!({}), 300, 1e-6),
        ("sgdw", json!({"lr": 0.005, "momentum": 0.9}), 500, 1e-6),
        ("sgdw", json!({"lr": 0.005, "momentum": 0.9, "nesterov": true}), 500, 1e-6),
        ("qhm", json!({"lr": 0.01, "momentum": 0.9, "nu": 0.7}), 1500, 1e-6),
        ("aggmo", json!({"lr": 0.005}), 800, 1e-6),
        ("lars", json!({"lr": 0.005}), 800, 1e-6),
        ("sgdp", json!({"lr": 0.005, "momentum": 0.9}), 800, 1e-6),
        ("madgrad", json!({"lr": 0.05}), 2000, 1e-3),
        ("novograd", json!({"lr": 0.05}), 2000, 1e-2),
        ("tiger", json!({"lr": 0.003, "weight_decay": 0.0}), 5000, 1e-2),
    ];
    converges(&q, runs);
}

#[test]
fn rosenbrock_convergence() {
    // Start (-1.5, 2), loss 12.5; minimum 0 at (1, 1).
    let runs = vec![
        ("rprop", json!({}), 3000, 1e-4),
        ("sgdw", json!({"lr": 1e-3, "momentum": 0.9}), 5000, 1e-3),
        ("qhm", json!({"lr": 1e-3, "momentum": 0.9, "nu": 0.7}), 5000, 1e-2),
        ("madgrad", json!({"lr": 0.01}), 5000, 1e-2),
    ];
    converges(&Rosenbrock, runs);
}

#[test]
fn matrix_convergence() {
    // Least squares over a 16 x 8 matrix started at 0: the rules that treat
    // matrices apart (LARS's trust ratio, SGDP's projection) on a matrix.
    let p = MatrixLeastSquares::default();
    let runs = vec![
        ("lars", json!({"lr": 0.5, "trust_coefficient": 0.01}), 3000, 1e-3),
        ("sgdp", json!({"lr": 0.2, "momentum": 0.9}), 1500, 1e-4),
        ("novograd", json!({"lr": 0.05, "grad_averaging": true}), 1500, 1e-2),
        ("aggmo", json!({"lr": 0.1}), 1500, 1e-4),
    ];
    converges(&p, runs);
}

#[test]
fn invalid_hyperparameters_are_errors_naming_the_field() {
    for (name, hp, field) in [
        ("asgd", json!({"lr": -0.1}), "lr"),
        ("asgd", json!({"lambd": -1e-4}), "lambd"),
        ("asgd", json!({"alpha": -0.75}), "alpha"),
        ("asgd", json!({"weight_decay": -0.1}), "weight_decay"),
        ("asgd", json!({"foreach": true}), "foreach"),
        ("rprop", json!({"etas": [1.5, 2.0]}), "etas"),
        ("rprop", json!({"etas": [0.5, 1.0]}), "etas"),
        ("rprop", json!({"step_sizes": [1e-6]}), "step_sizes"),
        ("rprop", json!({"capturable": false}), "capturable"),
        ("sgdw", json!({"momentum": 1.0}), "momentum"),
        ("sgdw", json!({"weight_decay": -0.1}), "weight_decay"),
        ("qhm", json!({"nu": 1.5}), "nu"),
        ("qhm", json!({"momentum": -0.1}), "momentum"),
        ("aggmo", json!({"betas": [0.9]}), "betas"),
        ("aggmo", json!({"betas": [1.0, 0.9]}), "betas[0]"),
        ("aggmo", json!({"betas": [0.0, 0.9, 1.5]}), "betas[2]"),
        ("aggmo", json!({"betas": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]}), "betas"),
        ("lars", json!({"dampening": 1.0}), "dampening"),
        ("lars", json!({"trust_coefficient": -1.0}), "trust_coefficient"),
        ("sgdp", json!({"wd_ratio": 1.0}), "wd_ratio"),
        ("sgdp", json!({"eps": -1e-8}), "eps"),
        ("sgdp", json!({"momentum": 1.0}), "momentum"),
        ("madgrad", json!({"momentum": 1.0}), "momentum"),
        ("madgrad", json!({"eps": -1e-6}), "eps"),
        ("novograd", json!({"betas": [0.95, 1.0]}), "betas[1]"),
        ("novograd", json!({"cautious": true}), "cautious"),
        ("tiger", json!({"beta": 1.0}), "beta"),
        ("tiger", json!({"weight_decay": -0.01}), "weight_decay"),
    ] {
        refusal(name, &hp, field);
    }
}

/// Parameters of several shapes: a matrix, a 4-D tensor, a vector and a
/// scalar-sized tensor.
fn shaped() -> Vec<Param> {
    let mut s = 7u32;
    let mut next = move || {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        ((s >> 8) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0
    };
    [vec![4, 3], vec![2, 3, 2, 2], vec![5], vec![1]]
        .into_iter()
        .enumerate()
        .map(|(i, shape)| {
            let n = shape.iter().product();
            Param::new(format!("p{i}"), shape, (0..n).map(|_| next()).collect()).unwrap()
        })
        .collect()
}

fn run_steps(o: &mut dyn Optimizer, params: &mut [Param], from: usize, to: usize) {
    for k in from..to {
        for p in params.iter_mut() {
            for (i, g) in p.grad.iter_mut().enumerate() {
                *g = if (i + k) % 7 == 3 { 0.0 } else { ((i * 3 + k) as f32 * 0.37).sin() };
            }
        }
        o.step(&mut views(params)).unwrap();
    }
}

/// One configuration per option of each optimizer.
fn configs() -> Vec<(&'static str, Value)> {
    vec![
        ("asgd", json!({})),
        ("asgd", json!({"lr": 0.05, "lambd": 0.1, "t0": 2.0, "weight_decay": 0.1, "maximize": true})),
        ("rprop", json!({})),
        ("rprop", json!({"etas": [0.3, 1.5], "step_sizes": [1e-3, 0.02], "maximize": true})),
        ("sgdw", json!({"lr": 0.1})),
        ("sgdw", json!({"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1})),
        ("sgdw", json!({"lr": 0.1, "momentum": 0.8, "dampening": 0.2, "nesterov": true,
                        "weight_decay": 0.1, "weight_decouple": false, "maximize": true})),
        ("qhm", json!({"lr": 0.1, "momentum": 0.9, "nu": 0.7})),
        ("qhm", json!({"lr": 0.1, "momentum": 0.9, "nu": 0.7, "weight_decay": 0.1,
                       "weight_decouple": true, "fixed_decay": true, "maximize": true})),
        ("aggmo", json!({"lr": 0.1})),
        ("aggmo", json!({"lr": 0.1, "betas": [0.5, 0.9, 0.99, 0.999], "weight_decay": 0.1})),
        ("aggmo", json!({"lr": 0.1, "weight_decay": 0.1, "weight_decouple": true, "maximize": true})),
        ("lars", json!({"lr": 1.0, "weight_decay": 0.1, "trust_coefficient": 0.02})),
        ("lars", json!({"lr": 1.0, "nesterov": true, "dampening": 0.1, "maximize": true})),
        ("sgdp", json!({"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1, "delta": 5.0})),
        ("sgdp", json!({"lr": 0.1, "nesterov": true, "momentum": 0.5, "maximize": true})),
        ("madgrad", json!({"lr": 0.01})),
        ("madgrad", json!({"lr": 0.01, "momentum": 0.0, "weight_decay": 0.1})),
        ("madgrad", json!({"lr": 0.01, "weight_decay": 0.1, "weight_decouple": true, "maximize": true})),
        ("madgrad", json!({"lr": 0.01, "momentum": 0.0, "eps": 0.0})),
        ("novograd", json!({"lr": 0.01})),
        ("novograd", json!({"lr": 0.01, "grad_averaging": true, "adam_debias": true,
                            "weight_decay": 0.1, "weight_decouple": true, "maximize": true})),
        ("tiger", json!({"lr": 0.01})),
        ("tiger", json!({"lr": 0.01, "weight_decouple": false, "weight_decay": 0.1, "maximize": true})),
    ]
}

#[test]
fn state_round_trip_and_determinism() {
    for (name, hp) in configs() {
        if name == "sgdw" && hp.get("momentum").is_none() {
            continue; // no momentum: no state to save
        }
        check_resume(name, &hp, shaped, run_steps, 4, 7);
    }
}

/// Runs `steps` steps on many tensor sizes (chunk edges included) with
/// execution options `exec`; returns the parameters and the state.
fn run_exec(name: &str, hp: &Value, exec: ExecOptions, steps: usize) -> (Vec<Vec<u32>>, StateDict) {
    let mut o = opt(name, hp.clone());
    o.set_exec_options(exec).unwrap();
    let sizes = [1, 7, CHUNK - 1, CHUNK + 1, 3 * CHUNK + 5, 33, 2];
    let mut s = 12345u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let mut ps: Vec<Param> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| Param::new(format!("p{i}"), vec![n], (0..n).map(|_| next()).collect()).unwrap())
        .collect();
    for t in 0..steps {
        for p in ps.iter_mut() {
            for g in p.grad.iter_mut() {
                let r = next();
                *g = if r.abs() < 0.05 { 0.0 } else { r * 0.1 };
            }
        }
        if t == 2 {
            o.set_lr(o.lr().unwrap() * 0.5).unwrap();
        }
        o.step(&mut views(&mut ps)).unwrap();
    }
    let bits = ps.iter().map(|p| p.data.iter().map(|x| x.to_bits()).collect()).collect();
    (bits, o.state_dict())
}

#[test]
fn fast_path_equals_simple_path_bit_for_bit() {
    for (name, hp) in configs() {
        let simple = ExecOptions { fused: false, ..ExecOptions::default() };
        let (want_p, want_s) = run_exec(name, &hp, simple, 6);
        for threads in [1, 2, 3, 8] {
            let fused = ExecOptions { threads, ..ExecOptions::default() };
            let (got_p, got_s) = run_exec(name, &hp, fused, 6);
            assert!(got_p == want_p, "{name} {hp} threads={threads}: parameters differ");
            assert!(got_s == want_s, "{name} {hp} threads={threads}: state differs");
        }
    }
}

