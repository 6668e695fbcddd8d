//! `with_eval_weights`: the variables sit at the optimizer's evaluation
//! point inside the closure (schedule-free's averaged iterate, checked
//! against the core optimizer's own `set_mode`), the training values come
//! back bit for bit, and evaluating never changes the training trajectory.

use candle_core::Var;
use candle_nn::Optimizer;
use optimist_candle::OptimistOptimizer;
use optimist_core::checkpoint::LoadOptions;
use optimist_core::{registry, Mode, ParamMut};
use serde_json::json;

use crate::{batch, Mlp};

fn read(vars: &[&Var]) -> Vec<Vec<f32>> {
    vars.iter()
        .map(|v| {
            v.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        })
        .collect()
}

/// Trains `steps` steps; evaluates (a forward pass inside
/// `with_eval_weights`) after every step when `evaluate`.
fn train(name: &str, steps: usize, evaluate: bool) -> (Mlp, OptimistOptimizer) {
    let (vm, mlp) = Mlp::new(3).unwrap();
    let mut opt = OptimistOptimizer::from_varmap(&vm, name, &json!({"lr": 0.01})).unwrap();
    for s in 0..steps {
        let (x, y) = batch(s).unwrap();
        opt.backward_step(&mlp.loss(&x, &y).unwrap()).unwrap();
        if evaluate {
            let (x, y) = batch(1000 + s).unwrap();
            opt.with_eval_weights(|| mlp.loss(&x, &y)).unwrap();
        }
    }
    (mlp, opt)
}

#[test]
fn schedule_free_evaluates_at_its_averaged_iterate() {
    let (mlp, mut opt) = train("adamw_schedulefree", 12, false);
    let training = read(&mlp.vars());
    let inside = opt.with_eval_weights(|| -> candle_core::Result<_> { Ok(read(&mlp.vars())) });
    let inside = inside.unwrap();
    assert_ne!(inside, training, "schedule-free's eval point is elsewhere");
    assert_eq!(
        read(&mlp.vars()),
        training,
        "training values restored exactly"
    );

    // The eval point the core optimizer computes from the same state.
    let ck = opt.checkpoint(json!({})).unwrap();
    let mut core = registry::build("adamw_schedulefree", &ck.config).unwrap();
    let mut values: Vec<Vec<f32>> = ck.params.iter().map(|p| p.values.clone()).collect();
    let mut grads: Vec<Vec<f32>> = values.iter().map(|v| vec![0.0; v.len()]).collect();
    let mut views: Vec<ParamMut<'_>> = ck
        .params
        .iter()
        .zip(values.iter_mut().zip(grads.iter_mut()))
        .map(|(p, (value, grad))| ParamMut {
            name: &p.name,
            shape: &p.shape,
            value,
            grad,
            hessian: None,
        })
        .collect();
    ck.restore(core.as_mut(), &mut views, &LoadOptions::default())
        .unwrap();
    core.set_mode(Mode::Eval, &mut views).unwrap();
    drop(views);
    // ck.params are sorted by name: fc1.bias, fc1.weight, fc2.bias, fc2.weight.
    let by_name = |n: &str| &values[ck.params.iter().position(|p| p.name == n).unwrap()];
    let expected = vec![
        by_name("fc1.weight").clone(),
        by_name("fc1.bias").clone(),
        by_name("fc2.weight").clone(),
        by_name("fc2.bias").clone(),
    ];
    assert_eq!(inside, expected);
}

#[test]
fn evaluating_never_changes_the_training_trajectory() {
    for name in ["adamw_schedulefree", "sgd_schedulefree", "adamw"] {
        let (a, _) = train(name, 15, true);
        let (b, _) = train(name, 15, false);
        assert_eq!(read(&a.vars()), read(&b.vars()), "{name}");
    }
}

#[test]
fn plain_optimizers_evaluate_at_the_training_values() {
    let (mlp, mut opt) = train("adamw", 5, false);
    let training = read(&mlp.vars());
    let inside = opt
        .with_eval_weights(|| -> candle_core::Result<_> { Ok(read(&mlp.vars())) })
        .unwrap();
    assert_eq!(inside, training);
}
