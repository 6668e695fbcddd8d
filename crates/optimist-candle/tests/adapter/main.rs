//! The adapter against candle_nn's own AdamW, in-place updates, names and
//! groups, the errors for what it does not support, and curvature.

mod curvature;
mod eval_mode;
mod gauss_newton;
mod half_params;
mod lbfgs;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Module, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use optimist_candle::{AdapterConfig, OptimistOptimizer};
use serde_json::json;

/// Deterministic pseudo-random values in [-scale, scale).
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut rng = optimist_candle::rng::Rng::new(seed);
    (0..n)
        .map(|_| (rng.uniform() as f32 * 2.0 - 1.0) * scale)
        .collect()
}

struct Mlp {
    w1: Var,
    b1: Var,
    w2: Var,
    b2: Var,
}

impl Mlp {
    fn new(seed: u64) -> candle_core::Result<(VarMap, Mlp)> {
        let varmap = VarMap::new();
        let dev = Device::Cpu;
        let mk = |name: &str, shape: &[usize], s: u64, scale: f32| -> candle_core::Result<Var> {
            let n = shape.iter().product();
            let t = Tensor::from_vec(values(n, seed * 100 + s, scale), shape, &dev)?;
            let mut data = varmap.data().lock().unwrap();
            let v = Var::from_tensor(&t)?;
            data.insert(name.to_string(), v.clone());
            Ok(v)
        };
        let mlp = Mlp {
            w1: mk("fc1.weight", &[16, 8], 1, 0.35)?,
            b1: mk("fc1.bias", &[16], 2, 0.1)?,
            w2: mk("fc2.weight", &[3, 16], 3, 0.25)?,
            b2: mk("fc2.bias", &[3], 4, 0.1)?,
        };
        Ok((varmap, mlp))
    }

    fn loss(&self, x: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
        let h = x
            .matmul(&self.w1.as_tensor().t()?)?
            .broadcast_add(self.b1.as_tensor())?
            .tanh()?;
        let logits = h
            .matmul(&self.w2.as_tensor().t()?)?
            .broadcast_add(self.b2.as_tensor())?;
        candle_nn::loss::cross_entropy(&logits, y)
    }

    fn vars(&self) -> Vec<&Var> {
        vec![&self.w1, &self.b1, &self.w2, &self.b2]
    }
}

fn batch(step: usize) -> candle_core::Result<(Tensor, Tensor)> {
    let dev = Device::Cpu;
    let x = Tensor::from_vec(values(32 * 8, 1000 + step as u64, 1.0), (32, 8), &dev)?;
    // Labels from a fixed rule of the inputs, so there is something to learn.
    let y = x.narrow(1, 0, 3)?.argmax(D::Minus1)?;
    Ok((x, y))
}

#[test]
fn adamw_agrees_with_candle_nn_adamw_step_for_step() -> candle_core::Result<()> {
    let (lr, beta1, beta2, eps, wd) = (3e-3, 0.9, 0.99, 1e-8, 0.05);
    let (_vm_a, a) = Mlp::new(7)?;
    let (vm_b, b) = Mlp::new(7)?;
    let mut theirs = AdamW::new(
        a.vars().into_iter().cloned().collect(),
        ParamsAdamW {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay: wd,
        },
    )?;
    let mut ours = OptimistOptimizer::from_varmap(
        &vm_b,
        "adamw",
        &json!({"lr": lr, "betas": [beta1, beta2], "eps": eps, "weight_decay": wd}),
    )?;
    let mut first_loss = None;
    let mut last_loss = 0.0;
    let mut worst = 0.0f32;
    for step in 0..60 {
        let (x, y) = batch(step)?;
        let la = a.loss(&x, &y)?;
        let lb = b.loss(&x, &y)?;
        theirs.backward_step(&la)?;
        ours.backward_step(&lb)?;
        let (la, lb) = (la.to_scalar::<f32>()?, lb.to_scalar::<f32>()?);
        assert!(
            (la - lb).abs() <= 1e-5 * la.abs().max(1.0),
            "step {step}: loss {la} vs {lb}"
        );
        first_loss.get_or_insert(la);
        last_loss = la;
        for (va, vb) in a.vars().iter().zip(b.vars()) {
            let pa = va.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            let pb = vb.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            for (x, y) in pa.iter().zip(&pb) {
                let err = (x - y).abs();
                worst = worst.max(err);
                assert!(err <= 2e-6 + 2e-5 * x.abs(), "step {step}: {x} vs {y}");
            }
        }
    }
    assert!(
        last_loss < 0.8 * first_loss.unwrap(),
        "the run must learn: {first_loss:?} -> {last_loss}"
    );
    eprintln!("max |candle_nn - optimist| over 60 steps: {worst:e}");
    Ok(())
}

#[test]
fn updates_in_place_without_replacing_storage() -> candle_core::Result<()> {
    let (vm, m) = Mlp::new(3)?;
    let before_id: Vec<usize> = m
        .vars()
        .iter()
        .map(|v| optimist_candle::inplace::storage_id(v.as_tensor()))
        .collect();
    let before: Vec<Vec<f32>> = m
        .vars()
        .iter()
        .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    let mut opt = OptimistOptimizer::from_varmap(&vm, "sgd", &json!({"lr": 0.1}))?;
    let (x, y) = batch(0)?;
    opt.backward_step(&m.loss(&x, &y)?)?;
    for (i, v) in m.vars().iter().enumerate() {
        assert_eq!(
            optimist_candle::inplace::storage_id(v.as_tensor()),
            before_id[i]
        );
        let after: Vec<f32> = v.as_tensor().flatten_all()?.to_vec1()?;
        assert_ne!(after, before[i], "parameter {i} was not updated");
    }
    assert_eq!(opt.steps(), 1);
    Ok(())
}

#[test]
fn sgd_step_is_exact() -> candle_core::Result<()> {
    // p <- p - lr * g, with g = 2 p for loss = sum p^2.
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let p = vb.get_with_hints(4, "p", candle_nn::Init::Const(1.5))?;
    let mut opt = OptimistOptimizer::from_varmap(&varmap, "sgd", &json!({"lr": 0.25}))?;
    opt.backward_step(&p.sqr()?.sum_all()?)?;
    assert_eq!(p.to_vec1::<f32>()?, vec![1.5 - 0.25 * 3.0; 4]);
    Ok(())
}

#[test]
fn parameters_are_named_by_varmap_path_in_sorted_order() -> candle_core::Result<()> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let l2 = candle_nn::linear(3, 2, vb.pp("z_out"))?;
    let l1 = candle_nn::linear(4, 3, vb.pp("a_in"))?;
    let opt = OptimistOptimizer::from_varmap(&varmap, "adam", &json!({}))?;
    assert_eq!(
        opt.param_names(),
        ["a_in.bias", "a_in.weight", "z_out.bias", "z_out.weight"]
    );
    let _ = (l1, l2);
    Ok(())
}

#[test]
fn parameter_groups_select_by_path() -> candle_core::Result<()> {
    // Weight decay only on weights: with zero gradients, AdamW's decoupled
    // decay shrinks weights and leaves biases alone.
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let w = vb.get_with_hints((2, 2), "fc.weight", candle_nn::Init::Const(1.0))?;
    let b = vb.get_with_hints(2, "fc.bias", candle_nn::Init::Const(1.0))?;
    let hp = json!({"groups": [
        {"name": "no_decay", "select": {"names": ["*.bias"]}, "optimizer": "adamw",
         "hparams": {"lr": 0.1, "weight_decay": 0.0}},
        {"name": "decay", "select": "all", "optimizer": "adamw",
         "hparams": {"lr": 0.1, "weight_decay": 0.5}}
    ]});
    let mut opt = OptimistOptimizer::from_varmap(&varmap, "param_groups", &hp)?;
    // Gradients that exist and are exactly zero.
    let loss = (w.sum_all()? - w.sum_all()?)?.add(&(b.sum_all()? - b.sum_all()?)?)?;
    opt.backward_step(&loss)?;
    assert_eq!(b.to_vec1::<f32>()?, vec![1.0, 1.0]);
    for x in w.flatten_all()?.to_vec1::<f32>()? {
        assert!((x - (1.0 - 0.1 * 0.5)).abs() < 1e-7, "{x}");
    }
    // A bad group spec is an error naming the problem.
    let err = OptimistOptimizer::from_varmap(
        &varmap,
        "param_groups",
        &json!({"groups": [{"name": "x", "select": "everything", "optimizer": "adamw"}]}),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("invalid selector"), "{err}");
    Ok(())
}

#[test]
fn non_f32_parameters_are_an_error_not_a_copy() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    let _w = vb.get(3, "w").unwrap();
    let err = OptimistOptimizer::from_varmap(&varmap, "adamw", &json!({}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("parameter 'w'") && err.contains("F64") && err.contains("f32"),
        "{err}"
    );
}

#[test]
fn invalid_hyperparameters_and_names_are_errors() {
    let varmap = VarMap::new();
    let err = OptimistOptimizer::from_varmap(&varmap, "adamw", &json!({"lr": -1.0}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("lr") && err.contains("-1"), "{err}");
    let err = OptimistOptimizer::from_varmap(&varmap, "no-such-optimizer", &json!({}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown optimizer"), "{err}");
}

#[test]
fn invalid_learning_rate_is_reported_by_the_next_step() -> candle_core::Result<()> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let p = vb.get_with_hints(2, "p", candle_nn::Init::Const(1.0))?;
    let mut opt = OptimistOptimizer::new(
        varmap.all_vars(),
        AdapterConfig::new("adam", json!({"lr": 0.01})),
    )?;
    assert_eq!(opt.learning_rate(), 0.01);
    opt.set_learning_rate(-3.0);
    let err = opt.backward_step(&p.sum_all()?).unwrap_err().to_string();
    assert!(err.contains("set_learning_rate(-3)"), "{err}");
    assert_eq!(p.to_vec1::<f32>()?, vec![1.0, 1.0]);
    opt.set_learning_rate(0.5);
    assert_eq!(opt.learning_rate(), 0.5);
    opt.backward_step(&p.sum_all()?)?;
    assert!(p.to_vec1::<f32>()?[0] < 1.0);
    Ok(())
}

#[test]
fn aliased_gradients_are_an_error() -> candle_core::Result<()> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let a = vb.get_with_hints(2, "a", candle_nn::Init::Const(1.0))?;
    let b = vb.get_with_hints(2, "b", candle_nn::Init::Const(1.0))?;
    let mut opt = OptimistOptimizer::from_varmap(&varmap, "sgd", &json!({"lr": 0.1}))?;
    let g = Tensor::ones(2, DType::F32, &Device::Cpu)?;
    let mut grads = (a.sum_all()? + b.sum_all()?)?.backward()?;
    grads.insert(&a, g.clone());
    grads.insert(&b, g);
    let err = opt.step(&grads).unwrap_err().to_string();
    assert!(err.contains("share storage"), "{err}");
    // A gradient that is the parameter itself.
    let mut grads = a.sum_all()?.backward()?;
    grads.insert(&a, a.clone());
    let err = opt.step(&grads).unwrap_err().to_string();
    assert!(err.contains("share storage"), "{err}");
    Ok(())
}

#[test]
fn candle_nn_modules_train_through_the_trait() -> candle_core::Result<()> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let lin = candle_nn::linear(8, 3, vb.pp("lin"))?;
    let mut opt = OptimistOptimizer::from_varmap(&varmap, "adam", &json!({"lr": 0.05}))?;
    let (x, y) = batch(0)?;
    let first = candle_nn::loss::cross_entropy(&lin.forward(&x)?, &y)?.to_scalar::<f32>()?;
    for _ in 0..50 {
        let loss = candle_nn::loss::cross_entropy(&lin.forward(&x)?, &y)?;
        opt.backward_step(&loss)?;
    }
    let last = candle_nn::loss::cross_entropy(&lin.forward(&x)?, &y)?.to_scalar::<f32>()?;
    assert!(last < 0.5 * first, "{first} -> {last}");
    assert!(opt.state_bytes() >= 2 * 4 * (8 * 3 + 3));
    Ok(())
}
