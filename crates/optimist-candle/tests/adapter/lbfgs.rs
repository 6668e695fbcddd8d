//! `step_with_closure`: L-BFGS on candle variables, against the core
//! optimizer stepped on the same function.

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
    let hp = json!({"line_search_fn": "strong_wolfe", "max_iter": 5});
    let var = Var::from_slice(&[-1.5f32, 2.0], 2, &Device::Cpu)?;
    let mut opt =
        OptimistOptimizer::from_named([("xy".to_string(), var.clone())], registry::build("lbfgs", &hp).unwrap())?;
    // The core optimizer on the closed-form problem (gradients computed in
    // f64 there, in f32 by candle here: close, not bit-equal).
    let mut core = registry::build("lbfgs", &hp).unwrap();
    let mut p = Param::new("xy", vec![2], Rosenbrock.init()).unwrap();
    let mut first = None;
    for _ in 0..6 {
        let loss = opt.step_with_closure(|| rosenbrock(&var))?;
        first.get_or_insert(loss);
        let mut f = |ps: &mut [optimist_core::ParamMut<'_>]| Ok(Rosenbrock.loss_grad(ps[0].value, ps[0].grad));
        core.step_with_closure(&mut [p.view()], &mut f).unwrap();
    }
    let got = var.as_tensor().to_vec1::<f32>()?;
    for (a, b) in got.iter().zip(&p.data) {
        assert!((a - b).abs() < 1e-3, "candle {got:?} vs core {:?}", p.data);
    }
    let final_loss = rosenbrock(&var)?.to_scalar::<f32>()?;
    assert!(final_loss < 1e-6, "loss {:?} -> {final_loss}", first);
    assert_eq!(opt.steps(), 6);
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
