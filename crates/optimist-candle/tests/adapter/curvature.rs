//! Hessian-vector products and Hutchinson estimates: which method the
//! adapter uses, and that it is right on a quadratic with a known Hessian.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use optimist_candle::curvature::{hessian_vector_product, hutchinson_diagonal};
use optimist_candle::rng::Rng;
use optimist_candle::{CurvatureConfig, HvpMethod, OptimistOptimizer, Probe};
use optimist_core::state::StateDict;
use optimist_core::{Optimizer, ParamMut};
use serde_json::{json, Value};

const N: usize = 6;

/// A symmetric positive-definite, non-diagonal 6x6 matrix.
fn matrix() -> Vec<f64> {
    let mut rng = Rng::new(11);
    let b: Vec<f64> = (0..N * N).map(|_| rng.normal()).collect();
    let mut a = vec![0.0; N * N];
    for i in 0..N {
        for j in 0..N {
            a[i * N + j] = (0..N).map(|k| b[i * N + k] * b[j * N + k]).sum::<f64>() / N as f64;
        }
        a[i * N + i] += 0.5;
    }
    a
}

/// theta = concat(p[0..4], q[0..2]); L = 0.5 theta^T A theta + c^T theta.
struct Quadratic {
    p: Var,
    q: Var,
    a: Tensor,
    c: Tensor,
}

impl Quadratic {
    fn new(a: &[f64]) -> candle_core::Result<Self> {
        let dev = Device::Cpu;
        let a32: Vec<f32> = a.iter().map(|&x| x as f32).collect();
        Ok(Quadratic {
            p: Var::from_vec(vec![0.3f32, -1.2, 0.7, 2.0], 4, &dev)?,
            q: Var::from_vec(vec![-0.4f32, 1.1], 2, &dev)?,
            a: Tensor::from_vec(a32, (N, N), &dev)?,
            c: Tensor::from_vec(vec![0.1f32, -0.2, 0.3, 0.0, 0.5, -0.1], N, &dev)?,
        })
    }

    fn loss(&self) -> candle_core::Result<Tensor> {
        let theta = Tensor::cat(&[self.p.as_tensor(), self.q.as_tensor()], 0)?;
        let at = self.a.matmul(&theta.unsqueeze(1)?)?.squeeze(1)?;
        (theta.mul(&at)?.sum_all()? * 0.5)? + theta.mul(&self.c)?.sum_all()?
    }
}

fn mat_vec(a: &[f64], v: &[f64]) -> Vec<f64> {
    (0..N)
        .map(|i| (0..N).map(|j| a[i * N + j] * v[j]).sum())
        .collect()
}

#[test]
fn the_adapter_uses_finite_differences_by_default() {
    assert_eq!(
        CurvatureConfig::default().method,
        HvpMethod::FiniteDifference {
            step: 1e-3,
            central: true
        }
    );
}

#[test]
fn candle_backward_detaches_gradients_so_no_exact_double_backward() -> candle_core::Result<()> {
    // Why finite differences: differentiating <grad L, v> again gives no
    // gradient at all, because candle detaches the gradients it computes.
    if std::env::var("CANDLE_GRAD_DO_NOT_DETACH").is_ok_and(|s| !s.is_empty() && s != "0") {
        eprintln!("CANDLE_GRAD_DO_NOT_DETACH is set; the default behaviour is not observable here");
        return Ok(());
    }
    let quad = Quadratic::new(&matrix())?;
    let grads = quad.loss()?.backward()?;
    let gp = grads
        .get(quad.p.as_tensor())
        .expect("first-order gradient exists");
    let v = Tensor::ones(4, DType::F32, &Device::Cpu)?;
    let second = gp.mul(&v)?.sum_all()?.backward()?;
    assert!(second.get(quad.p.as_tensor()).is_none());
    Ok(())
}

#[test]
fn hessian_vector_products_are_exact_on_a_quadratic() -> candle_core::Result<()> {
    let a = matrix();
    let quad = Quadratic::new(&a)?;
    let vars = [&quad.p, &quad.q];
    let labels = vec!["p".to_string(), "q".to_string()];
    let before = (quad.p.to_vec1::<f32>()?, quad.q.to_vec1::<f32>()?);
    let grads = quad.loss()?.backward()?;
    let mut rng = Rng::new(5);
    for central in [true, false] {
        for _ in 0..5 {
            let v: Vec<f64> = (0..N).map(|_| rng.normal()).collect();
            let probe = vec![
                v[..4].iter().map(|&x| x as f32).collect::<Vec<_>>(),
                v[4..].iter().map(|&x| x as f32).collect::<Vec<_>>(),
            ];
            let v32: Vec<f64> = probe.concat().iter().map(|&x| x as f64).collect();
            let want = mat_vec(&a, &v32);
            let method = HvpMethod::FiniteDifference {
                step: 1e-2,
                central,
            };
            let got =
                hessian_vector_product(&vars, &labels, &probe, method, Some(&grads), &mut || {
                    quad.loss()
                })?
                .concat();
            let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (*g as f64 - w).abs() <= 2e-3 * scale,
                    "central={central}: H v = {got:?}, want {want:?}"
                );
            }
        }
    }
    // The parameters are restored bit for bit.
    assert_eq!((quad.p.to_vec1::<f32>()?, quad.q.to_vec1::<f32>()?), before);
    Ok(())
}

#[test]
fn hutchinson_estimates_the_hessian_diagonal() -> candle_core::Result<()> {
    let a = matrix();
    let quad = Quadratic::new(&a)?;
    let vars = [&quad.p, &quad.q];
    let labels = vec!["p".to_string(), "q".to_string()];
    let samples = 4000;
    let cfg = CurvatureConfig {
        num_samples: samples,
        probe: Probe::Rademacher,
        ..Default::default()
    };
    let est = hutchinson_diagonal(&vars, &labels, &cfg, &mut Rng::new(1), None, &mut || {
        quad.loss()
    })?
    .concat();
    for i in 0..N {
        // Rademacher: u_i (A u)_i = A_ii + sum_{j != i} A_ij u_i u_j, whose
        // variance is sum_{j != i} A_ij^2.
        let var: f64 = (0..N)
            .filter(|&j| j != i)
            .map(|j| a[i * N + j].powi(2))
            .sum();
        let tol = 5.0 * (var / samples as f64).sqrt() + 1e-3;
        assert!(
            (est[i] as f64 - a[i * N + i]).abs() <= tol,
            "diag[{i}]: {} vs {} (tol {tol})",
            est[i],
            a[i * N + i]
        );
    }
    Ok(())
}

/// A stand-in for a curvature-consuming rule: records what it is given.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<Option<Vec<f32>>>>>;

struct Recorder {
    seen: Seen,
}

impl Optimizer for Recorder {
    fn name(&self) -> &str {
        "sophiah"
    }
    fn config(&self) -> Value {
        json!({"update_period": 3})
    }
    fn set_config(&mut self, _: Value) -> optimist_core::Result<()> {
        Ok(())
    }
    fn step(&mut self, params: &mut [ParamMut<'_>]) -> optimist_core::Result<()> {
        self.seen
            .lock()
            .unwrap()
            .push(params[0].hessian.map(|h| h.to_vec()));
        Ok(())
    }
    fn state_dict(&self) -> StateDict {
        StateDict::default()
    }
    fn load_state_dict(&mut self, _: &StateDict) -> optimist_core::Result<()> {
        Ok(())
    }
}

#[test]
fn sophia_gets_estimates_on_its_update_period() -> candle_core::Result<()> {
    // A diagonal quadratic: with Rademacher probes u_i (H u)_i = H_ii exactly.
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let x = vb.get_with_hints(3, "x", candle_nn::Init::Const(1.0))?;
    let h = Tensor::new(&[2.0f32, 0.5, 8.0], &Device::Cpu)?;
    let loss = || x.sqr()?.mul(&h)?.sum_all()? * 0.5;
    let seen = Seen::default();
    let mut opt =
        OptimistOptimizer::from_varmap_with(&varmap, Box::new(Recorder { seen: seen.clone() }))?;
    let cfg = opt
        .curvature()
        .cloned()
        .expect("sophiah consumes curvature");
    assert_eq!(cfg.update_period, 3);
    assert!(matches!(cfg.method, HvpMethod::FiniteDifference { .. }));
    opt.set_curvature(Some(CurvatureConfig {
        probe: Probe::Rademacher,
        ..cfg
    }));
    for _ in 0..6 {
        opt.backward_step_with(loss)?;
    }
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 6);
        for (i, h) in seen.iter().enumerate() {
            match h {
                Some(h) => {
                    assert!(i % 3 == 0, "estimate at step {}", i + 1);
                    for (got, want) in h.iter().zip([2.0f32, 0.5, 8.0]) {
                        assert!((got - want).abs() < 1e-3 * want, "{h:?}");
                    }
                }
                None => assert!(i % 3 != 0, "no estimate at step {}", i + 1),
            }
        }
    }
    // A plain step at a step that wants an estimate is an error, not a silent skip.
    let err = candle_nn::Optimizer::backward_step(&mut opt, &loss()?)
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs a Hessian estimate"), "{err}");
    // The parameters end where the recorder left them (it never updates).
    assert_eq!(x.to_vec1::<f32>()?, vec![1.0; 3]);
    Ok(())
}
