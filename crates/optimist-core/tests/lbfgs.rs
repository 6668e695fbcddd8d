//! L-BFGS (`lbfgs`, torch.optim.LBFGS 2.15): the closure cases of
//! `tests/golden/closure` (the replay extension for closure-based
//! optimizers, `docs/replay.md`), convergence with a closure, the plain
//! step of the replay contract, validation and the state round trip.
//! Its contract cases (one gradient per step) are in `tests/golden/cases`
//! and run by `tests/golden.rs`.

mod common;

use std::path::Path;

use common::{check_resume, opt, refusal};
use optimist_core::problems::{Problem, Quadratic, Rosenbrock};
use optimist_core::replay::Case;
use optimist_core::tensor::views;
use optimist_core::{Optimizer, Param, ParamMut};
use serde_json::{json, Value};

#[test]
fn closure_golden_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/closure");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no closure cases in {}", dir.display());
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let raw: Value = serde_json::from_str(&text).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let got = match Case::parse(&text).and_then(|c| c.run()) {
            Ok(g) => g,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let expected: Vec<Vec<Vec<f64>>> = serde_json::from_value(raw["expected"].clone()).unwrap();
        let steps = raw["steps"].as_u64().unwrap() as usize;
        let atol = raw["tolerance"]["atol"].as_f64().unwrap();
        let rtol = raw["tolerance"]["rtol"].as_f64().unwrap();
        assert_eq!(expected.len(), steps, "{name}");
        if got.len() != steps {
            failures.push(format!("{name}: {} steps, expected {steps}", got.len()));
            continue;
        }
        'steps: for (t, (gs, es)) in got.iter().zip(&expected).enumerate() {
            for (gp, ep) in gs.iter().zip(es) {
                for (j, (&g, &e)) in gp.iter().zip(ep).enumerate() {
                    if (g as f64 - e).abs() > atol + rtol * e.abs() || gp.len() != ep.len() {
                        failures.push(format!("{name}: step {} [{j}]: got {g}, expected {e}", t + 1));
                        break 'steps;
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{} closure cases passed", files.len());
}

#[test]
fn closure_case_errors_are_values() {
    let base = json!({
        "optimizer": "lbfgs", "hparams": {}, "closure": {"problem": "rosenbrock"}, "steps": 2,
        "params": [{"name": "x", "shape": [2], "data": [-1.5, 2.0]}]
    });
    let run = |edit: &dyn Fn(&mut Value)| {
        let mut c = base.clone();
        edit(&mut c);
        Case::parse(&c.to_string()).and_then(|c| c.run())
    };
    assert!(run(&|_| {}).is_ok());
    for (what, edit) in [
        ("unknown problem", Box::new(|c: &mut Value| c["closure"]["problem"] = json!("himmelblau")) as Box<dyn Fn(&mut Value)>),
        ("unknown key", Box::new(|c: &mut Value| c["closure"]["dim"] = json!(3))),
        ("no steps", Box::new(|c: &mut Value| c["steps"] = Value::Null)),
        ("zero steps", Box::new(|c: &mut Value| c["steps"] = json!(0))),
        ("wrong size", Box::new(|c: &mut Value| {
            c["params"][0] = json!({"name": "x", "shape": [3], "data": [0.0, 0.0, 0.0]})
        })),
        ("grads given", Box::new(|c: &mut Value| c["grads"] = json!([[[1.0, 1.0]]]))),
        ("lstsq on a vector", Box::new(|c: &mut Value| c["closure"] = json!({"problem": "lstsq"}))),
    ] {
        assert!(run(&*edit).is_err(), "{what}: accepted");
    }
}

/// Runs `steps` closure steps of `name` on `problem`; returns the final loss.
fn descend(problem: &dyn Problem, name: &str, hp: Value, steps: usize) -> f64 {
    let mut o = opt(name, hp);
    let mut p = Param::new("x", problem.shape(), problem.init()).unwrap();
    let mut f = |ps: &mut [ParamMut<'_>]| Ok(problem.loss_grad(ps[0].value, ps[0].grad));
    for _ in 0..steps {
        o.step_with_closure(&mut [p.view()], &mut f).unwrap();
    }
    let mut g = vec![0.0; p.data.len()];
    problem.loss_grad(&p.data, &mut g)
}

#[test]
fn convergence_with_a_closure() {
    let q = Quadratic::default();
    let l = descend(&Rosenbrock, "lbfgs", json!({"line_search_fn": "strong_wolfe"}), 5);
    assert!(l < 1e-8, "rosenbrock with line search: {l}");
    let l = descend(&q, "lbfgs", json!({"line_search_fn": "strong_wolfe"}), 3);
    assert!(l < 1e-8, "quadratic with line search: {l}");
    let l = descend(&q, "lbfgs", json!({"lr": 0.5}), 5);
    assert!(l < 1e-6, "quadratic, fixed step: {l}");
    // Other optimizers evaluate the closure once per step.
    let l = descend(&q, "sgd", json!({"lr": 0.01}), 1000);
    assert!(l < 1e-6, "sgd: {l}");
}

#[test]
fn a_plain_step_uses_the_given_gradient_as_a_constant_closure() {
    // max_iter 1: exactly one update x - t d per step; the first is
    // -min(1, 1 / sum|g|) lr g.
    let mut o = opt("lbfgs", json!({"lr": 0.5, "max_iter": 1}));
    let mut p = Param::new("x", vec![3], vec![1.0, 2.0, 3.0]).unwrap();
    p.grad = vec![0.5, -0.25, 0.25];
    o.step(&mut views(std::slice::from_mut(&mut p))).unwrap();
    assert_eq!(p.data, vec![0.75, 2.125, 2.875]);
    // Gradient at most tolerance_grad: no update.
    let mut o = opt("lbfgs", json!({"tolerance_grad": 0.5}));
    let mut q = Param::new("x", vec![2], vec![1.0, 2.0]).unwrap();
    q.grad = vec![0.5, -0.25];
    o.step(&mut views(std::slice::from_mut(&mut q))).unwrap();
    assert_eq!(q.data, vec![1.0, 2.0]);
}

#[test]
fn invalid_hyperparameters_are_errors_naming_the_field() {
    for (hp, field) in [
        (json!({"lr": -1.0}), "lr"),
        (json!({"line_search_fn": "backtracking"}), "line_search_fn"),
        (json!({"history_size": 0}), "history_size"),
        (json!({"max_iter": -1}), "max_iter"),
        (json!({"foreach": true}), "foreach"),
    ] {
        refusal("lbfgs", &hp, field);
    }
}

fn shaped() -> Vec<Param> {
    vec![
        Param::new("w", vec![2, 3], vec![0.1, -0.2, 0.3, 0.4, -0.5, 0.6]).unwrap(),
        Param::new("b", vec![3], vec![0.05, 0.0, -0.05]).unwrap(),
    ]
}

fn run_steps(o: &mut dyn Optimizer, params: &mut [Param], from: usize, to: usize) {
    for k in from..to {
        for p in params.iter_mut() {
            for (i, g) in p.grad.iter_mut().enumerate() {
                *g = 0.1 * ((i * 5 + k) as f32 * 0.7).sin();
            }
        }
        o.step(&mut views(params)).unwrap();
    }
}

#[test]
fn state_round_trip() {
    for hp in [json!({"lr": 0.1, "max_iter": 1}), json!({"lr": 0.1, "history_size": 2})] {
        check_resume("lbfgs", &hp, shaped, run_steps, 4, 7);
    }
    // With a closure and the line search, resuming from a state dict too.
    let hp = json!({"line_search_fn": "strong_wolfe", "max_iter": 3});
    let q = Quadratic::default();
    let mut f = |ps: &mut [ParamMut<'_>]| Ok(q.loss_grad(ps[0].value, ps[0].grad));
    let mut a = Param::new("x", vec![16], q.init()).unwrap();
    let mut oa = opt("lbfgs", hp.clone());
    for _ in 0..3 {
        oa.step_with_closure(&mut [a.view()], &mut f).unwrap();
    }
    let mut b = Param::new("x", vec![16], q.init()).unwrap();
    let mut ob = opt("lbfgs", hp.clone());
    ob.step_with_closure(&mut [b.view()], &mut f).unwrap();
    let mut oc = opt("lbfgs", hp);
    oc.load_state_dict(&ob.state_dict()).unwrap();
    for _ in 0..2 {
        oc.step_with_closure(&mut [b.view()], &mut f).unwrap();
    }
    assert_eq!(a.data, b.data);
    assert_eq!(oa.state_dict(), oc.state_dict());
}
