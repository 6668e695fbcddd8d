//! SophiaG's Gauss-Newton-Bartlett curvature through the adapter: which
//! estimate SophiaG is given and when, that its expectation is the
//! Gauss-Newton diagonal of a small softmax model (computed exactly), that
//! it changes the trajectory and reaches the rule's state, the errors when
//! it is missing or mis-scaled, and bit-exact resume with the label
//! generator.

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use optimist_candle::rng::Rng;
use optimist_candle::{CurvatureConfig, CurvatureKind, OptimistOptimizer};
use optimist_core::state::StateDict;
use optimist_core::{Optimizer, ParamMut};
use serde_json::{json, Value};

/// Examples, features, classes.
const N: usize = 4;
const D: usize = 3;
const C: usize = 3;

/// A linear softmax classifier `logits = x W^T + b` on a fixed batch.
struct Softmax {
    varmap: VarMap,
    w: Var,
    b: Var,
    x: Tensor,
    y: Tensor,
}

impl Softmax {
    fn new() -> candle_core::Result<Self> {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let w = Var::from_vec(
            vec![0.8f32, -0.5, 0.3, -0.2, 0.6, -0.9, 0.1, 0.4, 0.7],
            (C, D),
            &dev,
        )?;
        let b = Var::from_vec(vec![0.2f32, -0.1, 0.05], C, &dev)?;
        {
            let mut data = varmap.data().lock().unwrap();
            data.insert("fc.weight".to_string(), w.clone());
            data.insert("fc.bias".to_string(), b.clone());
        }
        let x = Tensor::from_vec(
            vec![1.0f32, -0.5, 2.0, 0.3, 1.5, -1.0, -1.2, 0.4, 0.8, 0.5, 0.5, -0.7],
            (N, D),
            &dev,
        )?;
        let y = Tensor::from_vec(vec![0u32, 2, 1, 0], N, &dev)?;
        Ok(Softmax { varmap, w, b, x, y })
    }

    fn logits(&self) -> candle_core::Result<Tensor> {
        self.x
            .matmul(&self.w.as_tensor().t()?)?
            .broadcast_add(self.b.as_tensor())
    }

    fn loss(&self) -> candle_core::Result<Tensor> {
        candle_nn::loss::cross_entropy(&self.logits()?, &self.y)
    }

    /// The mean cross-entropy on labels drawn from softmax(logits), one
    /// categorical draw per example (inverse CDF on a uniform).
    fn sampled_loss(&self, rng: &mut Rng) -> candle_core::Result<Tensor> {
        let logits = self.logits()?;
        let probs = candle_nn::ops::softmax_last_dim(&logits.detach())?.to_vec2::<f32>()?;
        let labels: Vec<u32> = probs
            .iter()
            .map(|p| {
                let u = rng.uniform();
                let mut acc = 0.0f64;
                for (j, &pj) in p.iter().enumerate() {
                    acc += pj as f64;
                    if u < acc {
                        return j as u32;
                    }
                }
                (p.len() - 1) as u32
            })
            .collect();
        let y = Tensor::from_vec(labels, N, &Device::Cpu)?;
        candle_nn::loss::cross_entropy(&logits, &y)
    }

    fn values(&self) -> candle_core::Result<Vec<f32>> {
        Ok([self.b.flatten_all()?.to_vec1::<f32>()?, self.w.flatten_all()?.to_vec1::<f32>()?].concat())
    }
}

/// A stand-in for SophiaG that records the estimate it is given.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<Option<Vec<f32>>>>>;

struct Recorder {
    seen: Seen,
    bs: f64,
}

impl Optimizer for Recorder {
    fn name(&self) -> &str {
        "sophiag"
    }
    fn config(&self) -> Value {
        json!({"bs": self.bs})
    }
    fn set_config(&mut self, _: Value) -> optimist_core::Result<()> {
        Ok(())
    }
    fn step(&mut self, params: &mut [ParamMut<'_>]) -> optimist_core::Result<()> {
        // Parameters in name order: fc.bias, fc.weight.
        let est = params
            .iter()
            .map(|p| p.hessian.map(|h| h.to_vec()))
            .collect::<Option<Vec<_>>>()
            .map(|v| v.concat());
        self.seen.lock().unwrap().push(est);
        Ok(())
    }
    fn state_dict(&self) -> StateDict {
        StateDict::default()
    }
    fn load_state_dict(&mut self, _: &StateDict) -> optimist_core::Result<()> {
        Ok(())
    }
}

/// SophiaG settings under which the curvature decides the step: with the
/// official rho = 0.04 and beta2 = 0.99 the clipped ratio of this tiny model
/// is 1 everywhere (a sign step, whatever the estimate).
fn hp(bs: usize) -> Value {
    json!({"lr": 0.05, "betas": [0.9, 0.5], "rho": 50.0, "bs": bs, "weight_decay": 0.0})
}

fn sophiag(model: &Softmax, hp: Value) -> candle_core::Result<OptimistOptimizer> {
    OptimistOptimizer::from_varmap(&model.varmap, "sophiag", &hp)
}

#[test]
fn sophiag_gets_a_gauss_newton_config_and_sophiah_keeps_its_hessian() -> candle_core::Result<()> {
    let model = Softmax::new()?;
    let g = sophiag(&model, json!({}))?;
    let cfg = g.curvature().cloned().expect("sophiag consumes curvature");
    assert_eq!(cfg.kind, CurvatureKind::GaussNewtonBartlett);
    assert_eq!(cfg.update_period, 10);
    let h = OptimistOptimizer::from_varmap(&model.varmap, "sophiah", &json!({"update_period": 4}))?;
    let cfg = h.curvature().cloned().expect("sophiah consumes curvature");
    assert_eq!(cfg.kind, CurvatureKind::HessianDiagonal);
    assert_eq!(cfg.update_period, 4);
    assert_eq!(CurvatureConfig::default().kind, CurvatureKind::HessianDiagonal);
    let a = OptimistOptimizer::from_varmap(&model.varmap, "adamw", &json!({}))?;
    assert!(a.curvature().is_none());
    // A rule with both kinds in one optimizer is refused.
    let both = json!({"groups": [
        {"name": "w", "select": {"names": ["fc.weight"]}, "optimizer": "sophiah", "hparams": {}},
        {"name": "b", "select": "all", "optimizer": "sophiag", "hparams": {}}
    ]});
    let e = OptimistOptimizer::from_varmap(&model.varmap, "param_groups", &both)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Hessian diagonal and a Gauss-Newton diagonal"), "{e}");
    Ok(())
}

#[test]
fn estimates_arrive_after_every_kth_step_and_average_to_the_gauss_newton_diagonal(
) -> candle_core::Result<()> {
    let model = Softmax::new()?;
    let seen = Seen::default();
    let rec = Recorder {
        seen: seen.clone(),
        bs: N as f64,
    };
    let mut opt = OptimistOptimizer::from_varmap_with(&model.varmap, Box::new(rec))?;
    let cfg = opt.curvature().cloned().unwrap();
    opt.set_curvature(Some(CurvatureConfig {
        update_period: 1,
        ..cfg
    }));
    // Period 1: an estimate at every step from step 2 on (the official loop
    // updates after step k, so step 1 has none).
    let samples = 6000;
    for _ in 0..samples + 1 {
        opt.backward_step_with_sampled(|| model.loss(), |r| model.sampled_loss(r), N)?;
    }
    let seen = seen.lock().unwrap();
    assert!(seen[0].is_none(), "no estimate before the first k steps");
    let ests: Vec<&Vec<f32>> = seen[1..].iter().map(|e| e.as_ref().expect("estimate")).collect();
    assert_eq!(ests.len(), samples);

    // Exact per-example quantities: p_i = softmax(logits_i); for the weight
    // W[c, d] the per-example sampled gradient is a_i = (p_ic - [y_i = c]) x_id
    // / N; the bias has x = 1.
    let logits = model.logits()?.to_vec2::<f32>()?;
    let x = model.x.to_vec2::<f32>()?;
    let probs: Vec<Vec<f64>> = logits
        .iter()
        .map(|l| {
            let m = l.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
            let e: Vec<f64> = l.iter().map(|&v| (v as f64 - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        })
        .collect();
    // Element order: bias (C), then weight (C x D) row-major.
    let mut feats: Vec<(usize, Option<usize>)> = (0..C).map(|c| (c, None)).collect();
    feats.extend((0..C).flat_map(|c| (0..D).map(move |d| (c, Some(d)))));
    for (k, &(c, d)) in feats.iter().enumerate() {
        let xs: Vec<f64> = (0..N).map(|i| d.map_or(1.0, |d| x[i][d] as f64)).collect();
        // u_i = (p_ic - delta) x_id: zero mean, E[u^2] = p(1-p) x^2,
        // E[u^4] = (p (1-p)^4 + (1-p) p^4) x^4.
        let m2: Vec<f64> = (0..N)
            .map(|i| probs[i][c] * (1.0 - probs[i][c]) * xs[i].powi(2))
            .collect();
        let m4: Vec<f64> = (0..N)
            .map(|i| {
                let p = probs[i][c];
                (p * (1.0 - p).powi(4) + (1.0 - p) * p.powi(4)) * xs[i].powi(4)
            })
            .collect();
        let s2: f64 = m2.iter().sum();
        // The Gauss-Newton diagonal of the mean loss: (1/N) sum p(1-p) x^2.
        let gn = s2 / N as f64;
        // The estimate N * g_hat^2 = S^2 / N with S = sum u_i:
        // Var(S^2) = sum E[u^4] + 2 (sum E[u^2])^2 - 3 sum E[u^2]^2.
        let var_s2 = m4.iter().sum::<f64>() + 2.0 * s2 * s2
            - 3.0 * m2.iter().map(|v| v * v).sum::<f64>();
        let sd_mean = (var_s2 / (N * N) as f64 / samples as f64).sqrt();
        // SophiaG is handed g_hat^2; its step multiplies by bs = N.
        let mean = ests.iter().map(|e| N as f64 * e[k] as f64).sum::<f64>() / samples as f64;
        let tol = 5.0 * sd_mean + 1e-5 * gn.abs();
        assert!(
            (mean - gn).abs() <= tol,
            "element {k} (class {c}, feature {d:?}): mean estimate {mean}, Gauss-Newton {gn}, tol {tol}"
        );
    }
    Ok(())
}

/// `steps` SophiaG steps; with `wired` the Gauss-Newton estimate is given.
fn sophiag_run(wired: bool, steps: usize) -> candle_core::Result<(Vec<Vec<f32>>, StateDict)> {
    let model = Softmax::new()?;
    let mut opt = sophiag(&model, hp(N))?;
    let mut cfg = opt.curvature().cloned().unwrap();
    cfg.update_period = 2;
    cfg.seed = 3;
    opt.set_curvature(if wired { Some(cfg) } else { None });
    let mut traj = Vec::new();
    for _ in 0..steps {
        if wired {
            opt.backward_step_with_sampled(|| model.loss(), |r| model.sampled_loss(r), N)?;
        } else {
            opt.backward_step_with(|| model.loss())?;
        }
        traj.push(model.values()?);
    }
    Ok((traj, opt.inner().state_dict()))
}

#[test]
fn the_estimate_changes_the_trajectory_and_reaches_the_hessian_state() -> candle_core::Result<()> {
    let (with, state) = sophiag_run(true, 6)?;
    let (without, bare) = sophiag_run(false, 6)?;
    // Period 2: steps 1 and 2 have no estimate in either run, step 3 has one.
    assert_eq!(with[..2], without[..2]);
    for s in 2..6 {
        assert_ne!(with[s], without[s], "step {}", s + 1);
    }
    let hessian = |d: &StateDict| -> Vec<f32> {
        d.tensors
            .iter()
            .filter(|e| e.name == "hessian")
            .flat_map(|e| e.values.clone())
            .collect()
    };
    let h = hessian(&state);
    assert_eq!(h.len(), C * D + C);
    assert!(h.iter().all(|v| v.is_finite() && *v >= 0.0), "{h:?}");
    assert!(h.iter().filter(|v| **v > 0.0).count() >= C * D, "{h:?}");
    assert!(hessian(&bare).iter().all(|v| *v == 0.0));
    Ok(())
}

#[test]
fn a_step_without_the_estimate_is_an_error() -> candle_core::Result<()> {
    let model = Softmax::new()?;
    let mut opt = sophiag(&model, json!({"bs": N}))?;
    let mut cfg = opt.curvature().cloned().unwrap();
    cfg.update_period = 2;
    opt.set_curvature(Some(cfg));
    // Steps 1 and 2 need none.
    for _ in 0..2 {
        candle_nn::Optimizer::backward_step(&mut opt, &model.loss()?)?;
    }
    assert!(opt.needs_curvature());
    let before = model.values()?;
    let e = candle_nn::Optimizer::backward_step(&mut opt, &model.loss()?)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sophiag needs a Gauss-Newton estimate at step 3"), "{e}");
    assert!(e.contains("backward_step_with_sampled"), "{e}");
    let e = opt.backward_step_with(|| model.loss()).unwrap_err().to_string();
    assert!(e.contains("needs a Gauss-Newton estimate"), "{e}");
    let e = opt.step_with_closure(|| model.loss()).unwrap_err().to_string();
    assert!(e.contains("needs a Gauss-Newton estimate"), "{e}");
    // Hutchinson is not a substitute.
    let e = opt
        .estimate_curvature(None, &mut || model.loss())
        .unwrap_err()
        .to_string();
    assert!(e.contains("estimate_gauss_newton"), "{e}");
    // Nothing moved.
    assert_eq!(model.values()?, before);
    assert_eq!(opt.steps(), 2);
    // B is applied once: a batch that is not the rule's bs is refused.
    let e = opt
        .estimate_gauss_newton(&mut |r| model.sampled_loss(r), 2 * N)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bs is 4") && e.contains("averages 8"), "{e}");
    opt.estimate_gauss_newton(&mut |r| model.sampled_loss(r), N)?;
    candle_nn::Optimizer::backward_step(&mut opt, &model.loss()?)?;
    assert_eq!(opt.steps(), 3);
    // And the Hessian rules refuse a Gauss-Newton estimate.
    let mut h = OptimistOptimizer::from_varmap(&model.varmap, "sophiah", &json!({}))?;
    let e = h
        .estimate_gauss_newton(&mut |r| model.sampled_loss(r), N)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sophiah consumes a Hessian diagonal"), "{e}");
    Ok(())
}

#[test]
fn resume_restores_the_label_generator_bit_exactly() -> candle_core::Result<()> {
    let hps = hp(N);
    let run = |model: &Softmax, opt: &mut OptimistOptimizer, steps: usize| {
        for _ in 0..steps {
            opt.backward_step_with_sampled(|| model.loss(), |r| model.sampled_loss(r), N)?;
        }
        model.values()
    };
    let configure = |opt: &mut OptimistOptimizer| {
        let mut cfg = opt.curvature().cloned().unwrap();
        cfg.update_period = 2;
        cfg.seed = 9;
        opt.set_curvature(Some(cfg));
    };
    let full_model = Softmax::new()?;
    let mut full = sophiag(&full_model, hps.clone())?;
    configure(&mut full);
    let want = run(&full_model, &mut full, 9)?;

    let a_model = Softmax::new()?;
    let mut a = sophiag(&a_model, hps.clone())?;
    configure(&mut a);
    run(&a_model, &mut a, 4)?;
    let ck = a.checkpoint(json!(null))?;
    let b_model = Softmax::new()?;
    let mut b = sophiag(&b_model, hps)?;
    configure(&mut b);
    b.restore_checkpoint(&ck)?;
    let got = run(&b_model, &mut b, 5)?;
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got), bits(&want));
    assert_eq!(
        b.inner().state_dict().tensors.iter().map(|e| bits(&e.values)).collect::<Vec<_>>(),
        full.inner().state_dict().tensors.iter().map(|e| bits(&e.values)).collect::<Vec<_>>()
    );
    // Another label seed gives another run (the estimate is random).
    let c_model = Softmax::new()?;
    let mut c = sophiag(&c_model, hp(N))?;
    let mut cfg = c.curvature().cloned().unwrap();
    cfg.update_period = 2;
    cfg.seed = 10;
    c.set_curvature(Some(cfg));
    assert_ne!(bits(&run(&c_model, &mut c, 9)?), bits(&want));
    Ok(())
}
