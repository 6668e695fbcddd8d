//! Schedule-free AdamW and SGD: convergence on the built-in problems at
//! the training point y and at the evaluation point x, validation errors,
//! and the train/eval switch through parameter groups.

use optimist_core::groups::{ParamGroups, Selector};
use optimist_core::problems::{minimize, Problem, Quadratic, Rosenbrock};
use optimist_core::registry::build;
use optimist_core::{Mode, Optimizer, Param};
use serde_json::json;

/// Loss at y (after the last step) and at x (after switching to eval).
fn run(problem: &dyn Problem, name: &str, lr: f64, steps: usize) -> (f64, f64) {
    let mut o = build(name, &json!({"lr": lr})).unwrap();
    let init = problem.init();
    let mut p = Param::new("x", vec![init.len()], init).unwrap();
    for _ in 0..steps {
        problem.loss_grad(&p.data.clone(), &mut p.grad);
        o.step(&mut [p.view()]).unwrap();
    }
    let mut g = vec![0.0; p.data.len()];
    let y = problem.loss_grad(&p.data, &mut g);
    o.set_mode(Mode::Eval, &mut [p.view()]).unwrap();
    let x = problem.loss_grad(&p.data, &mut g);
    (y, x)
}

#[test]
fn convergence_on_the_built_in_problems() {
    // Quadratic: condition 100, 16 dimensions, initial loss 187.7, 1000 steps.
    // Rosenbrock: from (-1.5, 2), initial loss 12.5, 5000 steps.
    let q = Quadratic::default();
    for (problem, name, lr, steps, target) in [
        (&q as &dyn Problem, "adamw_schedulefree", 0.05, 1000, 1e-6),
        (&q, "sgd_schedulefree", 0.1, 1000, 1e-6),
        (&Rosenbrock, "adamw_schedulefree", 0.02, 5000, 1e-2),
        (&Rosenbrock, "sgd_schedulefree", 0.01, 5000, 1e-4),
    ] {
        let (y, x) = run(problem, name, lr, steps);
        eprintln!("{name} {} lr {lr}: y {y:e}, x {x:e}", problem.name());
        assert!(
            y < target,
            "{name} on {}: loss at y {y} (target {target})",
            problem.name()
        );
        assert!(
            x < target,
            "{name} on {}: loss at x {x} (target {target})",
            problem.name()
        );
    }
    // The same through minimize() (train point), as the demo runs it.
    let mut o = build("sgd_schedulefree", &json!({"lr": 0.1})).unwrap();
    assert!(*minimize(&q, o.as_mut(), 1000).unwrap().last().unwrap() < 1e-6);
}

#[test]
fn invalid_hyperparameters_are_errors_naming_the_field() {
    for (name, hp, field) in [
        ("sgd_schedulefree", json!({"momentum": 0.0}), "momentum"),
        ("sgd_schedulefree", json!({"momentum": 1.0}), "momentum"),
        ("sgd_schedulefree", json!({"lr": -1.0}), "lr"),
        (
            "sgd_schedulefree",
            json!({"weight_decay": -0.1}),
            "weight_decay",
        ),
        (
            "adamw_schedulefree",
            json!({"betas": [0.0, 0.999]}),
            "betas[0]",
        ),
        (
            "adamw_schedulefree",
            json!({"betas": [0.9, 1.0]}),
            "betas[1]",
        ),
        ("adamw_schedulefree", json!({"eps": -1e-8}), "eps"),
        (
            "adamw_schedulefree",
            json!({"warmup_steps": -1}),
            "warmup_steps",
        ),
        ("adamw_schedulefree", json!({"foreach": true}), "foreach"),
    ] {
        let e = build(name, &hp)
            .err()
            .unwrap_or_else(|| panic!("{name} {hp} accepted"));
        assert!(e.to_string().contains(field), "{name} {hp}: {e}");
    }
}

#[test]
fn eval_switch_through_parameter_groups() {
    let mut groups = ParamGroups::new()
        .group(
            "sf",
            Selector::names(["a"]),
            build("sgd_schedulefree", &json!({"lr": 0.1})).unwrap(),
        )
        .group("rest", Selector::All, build("adam", &json!({})).unwrap());
    let mut a = Param::new("a", vec![3], vec![1.0, 2.0, 3.0]).unwrap();
    let mut b = Param::new("b", vec![2], vec![1.0, 2.0]).unwrap();
    // Before any step there is no z: eval leaves the values alone.
    groups
        .set_mode(Mode::Eval, &mut [a.view(), b.view()])
        .unwrap();
    assert_eq!(a.data, vec![1.0, 2.0, 3.0]);
    assert!(
        groups.step(&mut [a.view(), b.view()]).is_err(),
        "step in eval mode"
    );
    groups
        .set_mode(Mode::Train, &mut [a.view(), b.view()])
        .unwrap();
    for _ in 0..3 {
        a.grad = vec![0.5, -0.5, 1.0];
        b.grad = vec![1.0, 1.0];
        groups.step(&mut [a.view(), b.view()]).unwrap();
    }
    let (ya, yb) = (a.data.clone(), b.data.clone());
    groups
        .set_mode(Mode::Eval, &mut [a.view(), b.view()])
        .unwrap();
    assert_ne!(a.data, ya, "schedule-free group moves to x");
    assert_eq!(b.data, yb, "adam group is unchanged");
}
