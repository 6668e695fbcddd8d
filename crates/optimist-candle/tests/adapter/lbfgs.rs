//! `step_with_closure`: L-BFGS on candle variables, against the core
//! optimizer stepped on the same function, and training a small model to
//! convergence.

use candle_core::{Device, Tensor, Var};
use optimist_candle::OptimistOptimizer;
use optimist_core::problems::{Problem, Rosenbrock};
use optimist_core::{registry, Param};
use serde_json::json;

/// Rosenbrock `(1 - x)^2 + 100 (y - x^2)^2` on a candle variable.
fn rosenbrock(v: &Var) -> candle_core::Result<Tensor> {
    let x = v.as_tensor().narrow(0, 0, 1)?;
    let y = v.as_tensor().narrow(0, 1, 1)?;
    let a = (1.0 - &x)?.sqr()?;
    let r = (y - x.sqr()?)?;
    (a + (r.sqr()? * 100.0)?)?.sum_all()
}

#[test]
fn lbfgs_steps_candle_variables_with_a_closure() -> candle_core::Result<()> {
    let hp = json!({"line_search_fn": "strong_wolfe", "max_iter": 20});
    let var = Var::from_slice(&[-1.5f32, 2.0], 2, &Device::Cpu)?;
    let mut opt =
        OptimistOptimizer::from_named([("xy".to_string(), var.clone())], registry::build("lbfgs", &hp).unwrap())?;
    // The core optimizer on the closed-form problem (gradients computed in
    // f64 there, in f32 by candle here: the paths differ, both must reach
    // the minimum (1, 1)).
    let mut core = registry::build("lbfgs", &hp).unwrap();
    let mut p = Param::new("xy", vec![2], Rosenbrock.init()).unwrap();
    let mut first = None;
    for _ in 0..10 {
        let loss = opt.step_with_closure(|| rosenbrock(&var))?;
        first.get_or_insert(loss);
        let mut f = |ps: &mut [optimist_core::ParamMut<'_>]| Ok(Rosenbrock.loss_grad(ps[0].value, ps[0].grad));
        core.step_with_closure(&mut [p.view()], &mut f).unwrap();
    }
    let got = var.as_tensor().to_vec1::<f32>()?;
    for (a, b) in got.iter().zip(&p.data) {
        assert!((a - 1.0).abs() < 1e-3 && (b - 1.0).abs() < 1e-3, "candle {got:?}, core {:?}", p.data);
    }
    let final_loss = rosenbrock(&var)?.to_scalar::<f32>()?;
    assert!(final_loss < 1e-6, "loss {:?} -> {final_loss}", first);
    assert_eq!(opt.steps(), 10);
    // A rule that does not re-evaluate takes one evaluation and one step.
    let w = Var::from_slice(&[1.0f32, -1.0], 2, &Device::Cpu)?;
    let mut sgd = OptimistOptimizer::from_named(
        [("w".to_string(), w.clone())],
        registry::build("sgd", &json!({"lr": 0.1})).unwrap(),
    )?;
    let loss = sgd.step_with_closure(|| w.as_tensor().sqr()?.sum_all())?;
    assert_eq!(loss, 2.0);
    assert_eq!(w.as_tensor().to_vec1::<f32>()?, vec![0.8, -0.8]);
    Ok(())
}

#[test]
fn lbfgs_trains_a_linear_regression_through_candle() -> candle_core::Result<()> {
    // y = X w* + b* on 64 examples of 5 features; the model's weight and
    // bias are candle variables, the loss their mean squared error.
    let dev = Device::Cpu;
    let x = Tensor::from_vec(super::values(64 * 5, 41, 1.0), (64, 5), &dev)?;
    let w_true = [0.5f32, -1.25, 2.0, 0.75, -0.3];
    let b_true = 0.4f32;
    let y = x
        .matmul(&Tensor::from_slice(&w_true, (5, 1), &dev)?)?
        .affine(1.0, b_true as f64)?;
    let w = Var::zeros((5, 1), candle_core::DType::F32, &dev)?;
    let b = Var::zeros(1, candle_core::DType::F32, &dev)?;
    let loss_fn = || -> candle_core::Result<Tensor> {
        let pred = x.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?;
        (pred - &y)?.sqr()?.mean_all()
    };
    let mut opt = OptimistOptimizer::from_named(
        [("lin.weight".to_string(), w.clone()), ("lin.bias".to_string(), b.clone())],
        registry::build("lbfgs", &json!({"line_search_fn": "strong_wolfe"})).unwrap(),
    )?;
    let first = loss_fn()?.to_scalar::<f32>()?;
    let mut losses = Vec::new();
    for _ in 0..5 {
        losses.push(opt.step_with_closure(&loss_fn)?);
    }
    let last = loss_fn()?.to_scalar::<f32>()?;
    assert!(first > 1.0, "{first}");
    assert!(last < 1e-8 * first, "loss {first} -> {last} ({losses:?})");
    // The loss returned is the first evaluation's, at the step's start.
    assert!((losses[0] - first as f64).abs() <= 1e-6 * first as f64);
    assert!(losses[1] < 1e-2 * losses[0], "{losses:?}");
    for (got, want) in w.as_tensor().flatten_all()?.to_vec1::<f32>()?.iter().zip(&w_true) {
        assert!((got - want).abs() < 1e-3, "weight {got} vs {want}");
    }
    let bias = b.as_tensor().to_vec1::<f32>()?[0];
    assert!((bias - b_true).abs() < 1e-3, "bias {bias}");
    assert_eq!(opt.steps(), 5);
    // A closure error is an error, not a panic, and takes no step.
    let err = opt
        .step_with_closure(|| -> candle_core::Result<Tensor> { candle_core::bail!("no batch") })
        .unwrap_err()
        .to_string();
    assert!(err.contains("no batch"), "{err}");
    assert_eq!(opt.steps(), 5);
    Ok(())
}
