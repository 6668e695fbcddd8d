//! Tests of the frontier methods: Sophia (H and G) with the curvature
//! estimators, AdaMomentum, AdaGC (optimizer and stage), ZClip, AGC,
//! per-tensor clipping and the Magma wrapper: extension golden cases,
//! behaviour on constructed inputs with known answers, convergence,
//! validation, determinism and state round trips.

mod common;

use common::opt;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use optimist_core::curvature::{
    attach, CurvatureEstimator, CurvatureOracle, GaussNewtonBartlett, Hutchinson, Probe,
};
use optimist_core::optim::{AdaGc, AdaGcOptimizer, SophiaH};
use optimist_core::wrappers::{Magma, MagmaConfig};
use optimist_core::problems::{minimize, Problem, Quadratic, Rosenbrock};
use optimist_core::registry::build;
use optimist_core::replay::Case;
use optimist_core::rng::SplitMix64;
use optimist_core::stages::{
    self, AdaGcClip, AdaGcConfig, Agc, AgcConfig, ClipPerTensor, ClipPerTensorConfig, ZClip,
    ZClipConfig, ZClipMode, ZClipOption,
};
use optimist_core::transform::{Chain, GradientTransform};
use optimist_core::{Optimizer, Param, ParamMut};
use serde_json::{json, Value};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

fn norm(x: &[f32]) -> f64 {
    x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt()
}

// ------------------------------------------------------------------ golden

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs a case file and compares with its expected values; `Err` says why.
fn check_case(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let raw: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let got = Case::parse(&text)
        .and_then(|c| c.run())
        .map_err(|e| e.to_string())?;
    let atol = raw["tolerance"]["atol"].as_f64().unwrap_or(1e-6);
    let rtol = raw["tolerance"]["rtol"].as_f64().unwrap_or(1e-5);
    let expected: Vec<Vec<Vec<f64>>> =
        serde_json::from_value(raw["expected"].clone()).map_err(|e| e.to_string())?;
    if expected.len() != got.len() {
        return Err(format!("{} steps, expected {}", got.len(), expected.len()));
    }
    for (t, (gs, es)) in got.iter().zip(&expected).enumerate() {
        for (i, (gp, ep)) in gs.iter().zip(es).enumerate() {
            if gp.len() != ep.len() {
                return Err(format!("step {} param {i}: wrong length", t + 1));
            }
            for (j, (&g, &e)) in gp.iter().zip(ep).enumerate() {
                if (g as f64 - e).abs() > atol + rtol * e.abs() {
                    return Err(format!(
                        "step {} param {i}[{j}]: got {g}, expected {e}",
                        t + 1
                    ));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn extension_golden_cases_of_the_frontier_methods() {
    // AdaMomentum: independent implementation of the paper's formula;
    // AdaGC and Magma: pytorch-optimizer 4.1.0 (tools/gen_cases.py).
    let dir = repo_root().join("tests/golden/extensions");
    let mut n = HashMap::new();
    let mut failures = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let Some(prefix) = ["adamomentum-", "adagc-", "magma-"]
            .into_iter()
            .find(|p| name.starts_with(p))
        else {
            continue;
        };
        *n.entry(prefix).or_insert(0) += 1;
        if let Err(e) = check_case(&f) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(n.get("adamomentum-"), Some(&4), "{n:?}");
    assert!(n.get("adagc-").copied().unwrap_or(0) >= 6, "{n:?}");
    assert!(n.get("magma-").copied().unwrap_or(0) >= 6, "{n:?}");
}

// ------------------------------------------------------------------ helpers

/// The curvatures of `Quadratic` (its Hessian is diag(c)).
fn quad_curvature(q: &Quadratic) -> Vec<f32> {
    (0..q.dim)
        .map(|i| q.condition.powf(i as f64 / (q.dim - 1) as f64) as f32)
        .collect()
}

/// Runs `steps` full-batch steps on `problem`, attaching a curvature
/// estimate from `estimate(x, step)` at the steps where it returns one.
fn minimize_with_curvature(
    problem: &dyn Problem,
    o: &mut dyn Optimizer,
    steps: usize,
    mut estimate: impl FnMut(&[f32], u64) -> Option<Vec<f32>>,
) -> f64 {
    let mut p = Param::new("x", vec![problem.init().len()], problem.init()).unwrap();
    for t in 1..=steps as u64 {
        problem.loss_grad(&p.data, &mut p.grad);
        let est = estimate(&p.data, t).map(|e| vec![e]);
        let mut views = vec![p.view()];
        if let Some(e) = &est {
            attach(&mut views, e).unwrap();
        }
        o.step(&mut views).unwrap();
    }
    let mut g = vec![0.0; p.data.len()];
    problem.loss_grad(&p.data, &mut g)
}

fn shaped_params(seed: u64) -> Vec<Param> {
    let mut r = SplitMix64::new(seed);
    let mut w = Param::new(
        "layer.weight",
        vec![4, 3],
        (0..12).map(|_| r.normal() as f32).collect(),
    )
    .unwrap();
    let mut b = Param::new(
        "layer.bias",
        vec![3],
        (0..3).map(|_| r.normal() as f32).collect(),
    )
    .unwrap();
    w.grad = vec![0.0; 12];
    b.grad = vec![0.0; 3];
    vec![w, b]
}

fn set_grads(params: &mut [Param], k: usize) {
    for (pi, p) in params.iter_mut().enumerate() {
        for (i, g) in p.grad.iter_mut().enumerate() {
            *g = ((i + 3 * pi + 5 * k) as f32 * 0.37).sin() * (1.0 + k as f32 * 0.1);
        }
    }
}

fn run_steps(o: &mut dyn Optimizer, params: &mut [Param], from: usize, to: usize) {
    for k in from..to {
        set_grads(params, k);
        // A curvature estimate at every third step (used by the Sophias,
        // ignored by the others).
        let hess: Vec<Vec<f32>> = params
            .iter()
            .map(|p| p.grad.iter().map(|g| g * g + 0.5).collect())
            .collect();
        let mut views: Vec<ParamMut<'_>> = params.iter_mut().map(Param::view).collect();
        if k % 3 == 0 {
            attach(&mut views, &hess).unwrap();
        }
        o.step(&mut views).unwrap();
    }
}

// ------------------------------------------------------------------ SophiaH

#[test]
fn sophiah_folds_a_given_estimate_and_keeps_the_average_without_one() {
    // betas (0.5, 0.75), p large: the update is m / max(h, eps).
    let mut o = opt(
        "sophiah",
        json!({"lr": 1.0, "betas": [0.5, 0.75], "p": 100.0, "eps": 1e-12}),
    );
    let mut x = Param::new("x", vec![2], vec![0.0, 0.0]).unwrap();
    x.grad = vec![1.0, -2.0];
    let est = vec![vec![4.0f32, 8.0]];
    let mut views = vec![x.view()];
    attach(&mut views, &est).unwrap();
    o.step(&mut views).unwrap();
    // m = 0.5 g = (0.5, -1); h = 0.25 est = (1, 2); update = (0.5, -0.5)
    assert_eq!(o.state_buffer("x", "hessian_moment").unwrap(), &[1.0, 2.0]);
    assert_eq!(x.data, vec![-0.5, 0.5]);
    // No estimate: h stays, m = 0.5 m + 0.5 g = (1, -2) with g = (1.5, -3).
    x.grad = vec![1.5, -3.0];
    o.step(&mut [x.view()]).unwrap();
    assert_eq!(o.state_buffer("x", "hessian_moment").unwrap(), &[1.0, 2.0]);
    assert_eq!(x.data, vec![-1.5, 1.5]);
    // Clipping to p and the eps floor for a non-positive estimate.
    let mut o = opt("sophiah", json!({"lr": 0.1, "p": 0.01}));
    let mut y = Param::new("y", vec![2], vec![0.0, 0.0]).unwrap();
    y.grad = vec![1.0, -1.0];
    let est = vec![vec![-5.0f32, 1e6]];
    let mut views = vec![y.view()];
    attach(&mut views, &est).unwrap();
    o.step(&mut views).unwrap();
    // h = (-0.05, 1e4) -> first coordinate uses eps and clips to p
    assert!(close(y.data[0] as f64, -0.1 * 0.01, 1e-6), "{:?}", y.data);
    let m1 = 0.04f64; // (1 - 0.96) * |g|
    assert!(
        close(y.data[1] as f64, 0.1 * m1 / 1e4, 1e-5),
        "{:?}",
        y.data
    );
}

#[test]
fn sophiah_hessian_due_follows_update_period() {
    let s = SophiaH {
        update_period: 4,
        ..Default::default()
    };
    let due: Vec<u64> = (1..=12).filter(|&t| s.hessian_due(t)).collect();
    assert_eq!(due, vec![1, 5, 9]);
}

#[test]
fn sophiah_with_hutchinson_converges_on_the_quadratic() {
    // Condition 100, 16 dimensions, loss 187.7 at the start. Exact
    // Hessian-vector products (H = diag(c)) through Hutchinson's estimator,
    // an estimate every update_period steps as the reference schedules them.
    let q = Quadratic::default();
    let c = quad_curvature(&q);
    let cfg = SophiaH {
        lr: 0.5,
        betas: [0.9, 0.9],
        p: 1.0,
        update_period: 2,
        ..Default::default()
    };
    let mut o = opt("sophiah", serde_json::to_value(&cfg).unwrap());
    let mut hutch = Hutchinson::new(3);
    let loss = minimize_with_curvature(&q, o.as_mut(), 300, |_, t| {
        cfg.hessian_due(t).then(|| {
            hutch
                .estimate_with(&[c.len()], |v, out| {
                    for ((o, vi), ci) in out[0].iter_mut().zip(&v[0]).zip(&c) {
                        *o = ci * vi;
                    }
                    Ok(())
                })
                .unwrap()
                .remove(0)
        })
    });
    assert!(loss < 1e-6, "loss {loss} after 300 steps");
    // Without curvature the same rule is a clipped sign method and is far
    // from converged in the same number of steps.
    let mut o = opt("sophiah", serde_json::to_value(&cfg).unwrap());
    let blind = minimize_with_curvature(&q, o.as_mut(), 300, |_, _| None);
    assert!(blind > 1e3 * loss.max(1e-12), "{blind} vs {loss}");
}

/// Rosenbrock's Hessian-vector product at x.
fn rosenbrock_hvp(x: &[f32], v: &[f32], out: &mut [f32]) {
    let (x0, x1) = (x[0] as f64, x[1] as f64);
    let h00 = 2.0 - 400.0 * (x1 - x0 * x0) + 800.0 * x0 * x0;
    let h01 = -400.0 * x0;
    let h11 = 200.0;
    out[0] = (h00 * v[0] as f64 + h01 * v[1] as f64) as f32;
    out[1] = (h01 * v[0] as f64 + h11 * v[1] as f64) as f32;
}

#[test]
fn sophiah_with_hutchinson_converges_on_rosenbrock() {
    // Loss 12.5 at (-1.5, 2); minimum 0 at (1, 1). The Hutchinson estimate
    // of this non-diagonal Hessian is noisy (and can be negative; eps then
    // floors it and the step is clipped). Steps are bounded by lr * p = 0.01
    // per coordinate (default p and betas), one probe per step.
    let cfg = SophiaH {
        lr: 1.0,
        update_period: 1,
        ..Default::default()
    };
    let mut o = opt("sophiah", serde_json::to_value(&cfg).unwrap());
    let mut hutch = Hutchinson::new(11);
    let loss = minimize_with_curvature(&Rosenbrock, o.as_mut(), 4000, |x, _| {
        Some(
            hutch
                .estimate_with(&[2], |v, out| {
                    rosenbrock_hvp(x, &v[0], &mut out[0]);
                    Ok(())
                })
                .unwrap()
                .remove(0),
        )
    });
    assert!(loss < 1e-4, "loss {loss} after 4000 steps");
}

// ------------------------------------------------------------------ SophiaG

#[test]
fn sophiag_step_matches_the_official_formula() {
    // lr 0.1, betas (0.5, 0.5), rho 0.5, bs 4, wd 0.2.
    let mut o = opt(
        "sophiag",
        json!({"lr": 0.1, "betas": [0.5, 0.5], "rho": 0.5, "weight_decay": 0.2, "bs": 4.0}),
    );
    let mut x = Param::new("x", vec![3], vec![1.0, -1.0, 2.0]).unwrap();
    x.grad = vec![2.0, -0.5, 0.0];
    // No estimate yet: h = 0, ratio = min(|m| / 1e-15, 1) = 1: a sign step.
    o.step(&mut [x.view()]).unwrap();
    let keep = 1.0 - 0.1 * 0.2;
    let expect = [keep - 0.1, -keep + 0.1, 2.0 * keep];
    for (a, b) in x.data.iter().zip(expect) {
        assert!(close(*a as f64, b, 1e-6), "{:?} vs {expect:?}", x.data);
    }
    // With an estimate: h = 0.5 est; ratio = |m| / (rho bs h + 1e-15), capped at 1.
    let before = x.data.clone();
    x.grad = vec![2.0, -0.5, 0.0];
    let est = vec![vec![1.0f32, 1.0, 1.0]];
    let mut views = vec![x.view()];
    attach(&mut views, &est).unwrap();
    o.step(&mut views).unwrap();
    // m = (1.5, -0.375, 0); h = 0.5; rho bs h = 1
    let m = [1.5f64, -0.375, 0.0];
    for i in 0..3 {
        let ratio = (m[i].abs() / 1.0).min(1.0);
        let want =
            before[i] as f64 * keep - 0.1 * m[i].signum() * ratio * (m[i] != 0.0) as u8 as f64;
        assert!(
            close(x.data[i] as f64, want, 1e-6),
            "{i}: {} vs {want}",
            x.data[i]
        );
    }
    assert_eq!(o.state_buffer("x", "hessian").unwrap(), &[0.5, 0.5, 0.5]);
}

/// Least squares `0.5 ||A x - b||^2` (Hessian and Gauss-Newton matrix
/// `A^T A`), as a negative log-likelihood with unit-variance Gaussian
/// noise: a label sampled from the model is `A x + noise`, and the
/// gradient on it is `-A^T noise`.
struct LeastSquares {
    a: Vec<Vec<f32>>,
    b: Vec<f32>,
}

impl LeastSquares {
    fn new(m: usize, n: usize, seed: u64) -> Self {
        let mut r = SplitMix64::new(seed);
        let a: Vec<Vec<f32>> = (0..m)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        // diagonally dominant columns with different scales
                        let d = if i % n == j { 2.0 + j as f64 } else { 0.0 };
                        (d + 0.3 * r.normal()) as f32
                    })
                    .collect()
            })
            .collect();
        let b = (0..m).map(|_| r.normal() as f32).collect();
        LeastSquares { a, b }
    }

    fn residual(&self, x: &[f32]) -> Vec<f64> {
        self.a
            .iter()
            .zip(&self.b)
            .map(|(row, &bi)| {
                row.iter()
                    .zip(x)
                    .map(|(&a, &x)| a as f64 * x as f64)
                    .sum::<f64>()
                    - bi as f64
            })
            .collect()
    }

    fn at_times(&self, r: &[f64]) -> Vec<f32> {
        let n = self.a[0].len();
        (0..n)
            .map(|j| {
                self.a
                    .iter()
                    .zip(r)
                    .map(|(row, &ri)| row[j] as f64 * ri)
                    .sum::<f64>() as f32
            })
            .collect()
    }

    fn gn_diag(&self) -> Vec<f64> {
        let n = self.a[0].len();
        (0..n)
            .map(|j| self.a.iter().map(|row| (row[j] as f64).powi(2)).sum())
            .collect()
    }

    fn min_loss(&self) -> f64 {
        // Solve the normal equations by plain gradient descent in f64.
        let n = self.a[0].len();
        let mut x = vec![0.0f64; n];
        let lmax: f64 = self.gn_diag().iter().sum();
        for _ in 0..20000 {
            let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let r = self.residual(&xf);
            let g = self.at_times(&r);
            for (xi, gi) in x.iter_mut().zip(g) {
                *xi -= gi as f64 / lmax;
            }
        }
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        0.5 * self.residual(&xf).iter().map(|r| r * r).sum::<f64>()
    }
}

impl Problem for LeastSquares {
    fn name(&self) -> &str {
        "least_squares"
    }
    fn init(&self) -> Vec<f32> {
        vec![0.0; self.a[0].len()]
    }
    fn loss_grad(&self, x: &[f32], grad: &mut [f32]) -> f64 {
        let r = self.residual(x);
        grad.copy_from_slice(&self.at_times(&r));
        0.5 * r.iter().map(|v| v * v).sum::<f64>()
    }
}

/// Sampled-label gradients of the least-squares problem.
struct SampledLabels<'a> {
    problem: &'a LeastSquares,
    rng: SplitMix64,
}

impl CurvatureOracle for SampledLabels<'_> {
    fn sizes(&self) -> Vec<usize> {
        vec![self.problem.a[0].len()]
    }
    fn sampled_grad(&mut self, out: &mut [Vec<f32>]) -> optimist_core::Result<()> {
        let noise: Vec<f64> = (0..self.problem.b.len())
            .map(|_| -self.rng.normal())
            .collect();
        out[0] = self.problem.at_times(&noise);
        Ok(())
    }
}

#[test]
fn gauss_newton_bartlett_is_unbiased_for_the_gauss_newton_diagonal() {
    let ls = LeastSquares::new(12, 4, 5);
    let want = ls.gn_diag();
    let mut oracle = SampledLabels {
        problem: &ls,
        rng: SplitMix64::new(9),
    };
    let mut gnb = GaussNewtonBartlett::new(1.0).unwrap();
    let n = 20_000;
    let mut mean = vec![0.0f64; 4];
    for _ in 0..n {
        let e = gnb.estimate(&mut oracle).unwrap();
        for (m, v) in mean.iter_mut().zip(&e[0]) {
            *m += *v as f64 / n as f64;
        }
    }
    for (m, w) in mean.iter().zip(&want) {
        // the estimate is w * chi2(1): relative sd sqrt(2 / n) = 1%
        assert!((m - w).abs() < 0.05 * w, "{mean:?} vs {want:?}");
    }
    // The batch-size scale multiplies the estimate.
    let g = [1.0f32, -2.0];
    let e = GaussNewtonBartlett::new(8.0).unwrap().from_grads(&[&g]);
    assert_eq!(e[0], vec![8.0, 32.0]);
    assert_eq!(
        GaussNewtonBartlett::for_sophiag().from_grads(&[&g])[0],
        vec![1.0, 4.0]
    );
    assert!(GaussNewtonBartlett::new(0.0).is_err());
    // An oracle without sampled-label gradients is an error value.
    struct Nothing;
    impl CurvatureOracle for Nothing {
        fn sizes(&self) -> Vec<usize> {
            vec![1]
        }
    }
    assert!(gnb.estimate(&mut Nothing).is_err());
    assert!(Hutchinson::new(0).estimate(&mut Nothing).is_err());
}

#[test]
fn sophiag_with_gauss_newton_bartlett_converges_on_least_squares() {
    let ls = LeastSquares::new(24, 6, 21);
    let best = ls.min_loss();
    let mut o = opt(
        "sophiag",
        json!({"lr": 0.05, "betas": [0.9, 0.99], "rho": 0.5, "bs": 1.0, "weight_decay": 0.0}),
    );
    let mut oracle = SampledLabels {
        problem: &ls,
        rng: SplitMix64::new(4),
    };
    let gnb = GaussNewtonBartlett::for_sophiag();
    let init = ls.loss_grad(&ls.init(), &mut [0.0; 6]);
    let loss = minimize_with_curvature(&ls, o.as_mut(), 1500, |_, t| {
        // the official script refreshes the estimate every 10 iterations
        (t % 10 == 1).then(|| {
            let mut g = vec![vec![0.0f32; 6]];
            oracle.sampled_grad(&mut g).unwrap();
            gnb.from_grads(&[&g[0]]).remove(0)
        })
    });
    assert!(
        loss - best < 1e-4 * (init - best),
        "excess loss {} (start {init}, optimum {best})",
        loss - best
    );
}

// ------------------------------------------------------------------ Hutchinson

#[test]
fn hutchinson_recovers_a_known_hessian_diagonal() {
    // Diagonal Hessian (the quadratic problem): exact with Rademacher probes.
    let q = Quadratic::default();
    let c = quad_curvature(&q);
    let mut h = Hutchinson::new(1);
    let est = h
        .estimate_with(&[c.len()], |v, out| {
            // H v from two gradients of the quadratic: g(x + v) - g(x)
            let x = vec![0.25f32; c.len()];
            let xv: Vec<f32> = x.iter().zip(&v[0]).map(|(a, b)| a + b).collect();
            let (mut g0, mut g1) = (vec![0.0; c.len()], vec![0.0; c.len()]);
            q.loss_grad(&x, &mut g0);
            q.loss_grad(&xv, &mut g1);
            for (o, (a, b)) in out[0].iter_mut().zip(g1.iter().zip(&g0)) {
                *o = a - b;
            }
            Ok(())
        })
        .unwrap();
    for (e, ci) in est[0].iter().zip(&c) {
        assert!(close(*e as f64, *ci as f64, 1e-5), "{:?} vs {c:?}", est[0]);
    }
    // A dense SPD matrix: the average of many estimates approaches its
    // diagonal, with Rademacher and with Gaussian probes.
    let n = 5;
    let mut r = SplitMix64::new(2);
    let b: Vec<Vec<f64>> = (0..n)
        .map(|_| (0..n).map(|_| r.normal()).collect())
        .collect();
    let hm: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    (0..n).map(|k| b[i][k] * b[j][k]).sum::<f64>() + if i == j { 1.0 } else { 0.0 }
                })
                .collect()
        })
        .collect();
    let hvp = |v: &[Vec<f32>], out: &mut [Vec<f32>]| {
        for i in 0..n {
            out[0][i] = (0..n).map(|j| hm[i][j] * v[0][j] as f64).sum::<f64>() as f32;
        }
        Ok(())
    };
    for probe in [Probe::Rademacher, Probe::Gaussian] {
        let mut h = Hutchinson::new(5)
            .with_probe(probe)
            .with_samples(20_000)
            .unwrap();
        let est = h.estimate_with(&[n], hvp).unwrap();
        for i in 0..n {
            let scale = hm[i].iter().map(|x| x * x).sum::<f64>().sqrt();
            assert!(
                (est[0][i] as f64 - hm[i][i]).abs() < 0.05 * scale,
                "{probe:?} {i}: {} vs {}",
                est[0][i],
                hm[i][i]
            );
        }
    }
    // Same seed, same estimate; the generator state can be saved.
    let mut a = Hutchinson::new(77);
    let mut b2 = Hutchinson::new(77);
    let ea = a.estimate_with(&[n], hvp).unwrap();
    let eb = b2.estimate_with(&[n], hvp).unwrap();
    assert_eq!(ea, eb);
    let saved = a.rng_state();
    let next = a.estimate_with(&[n], hvp).unwrap();
    b2.set_rng_state(saved);
    assert_eq!(b2.estimate_with(&[n], hvp).unwrap(), next);
    assert!(Hutchinson::new(0).with_samples(0).is_err());
}

#[test]
fn attach_checks_lengths() {
    let mut x = Param::new("x", vec![3], vec![0.0; 3]).unwrap();
    let bad = vec![vec![1.0f32; 2]];
    let mut views = vec![x.view()];
    assert!(attach(&mut views, &bad).is_err());
    let two = vec![vec![1.0f32; 3], vec![1.0f32; 3]];
    assert!(attach(&mut views, &two).is_err());
}

// ------------------------------------------------------------------ AdaMomentum / AdaGC

#[test]
fn adamomentum_and_adagc_converge() {
    let q = Quadratic::default();
    for (name, hp, problem, steps, target) in [
        (
            "adamomentum",
            json!({"lr": 0.05}),
            &q as &dyn Problem,
            1000,
            1e-4,
        ),
        ("adamomentum", json!({"lr": 0.005}), &Rosenbrock, 5000, 1e-3),
        (
            "adagc",
            json!({"lr": 0.05, "weight_decay": 0.0, "warmup_steps": 10}),
            &q,
            1000,
            1e-4,
        ),
        (
            "adagc",
            json!({"lr": 0.005, "weight_decay": 0.0, "warmup_steps": 10}),
            &Rosenbrock,
            5000,
            1e-3,
        ),
    ] {
        let mut o = opt(name, hp.clone());
        let losses = minimize(problem, o.as_mut(), steps).unwrap();
        let last = *losses.last().unwrap();
        assert!(
            last < target,
            "{name} {hp} on {}: loss {last} after {steps} steps",
            problem.name()
        );
    }
}

#[test]
fn adagc_optimizer_equals_the_adagc_stage_chained_with_adamw() {
    // Decoupled decay: the optimizer is the stage followed by AdamW, value
    // for value; with a short warm-up both rules of the stage are used.
    let cfg = AdaGc {
        lr: 0.01,
        weight_decay: 0.05,
        warmup_steps: 3,
        ..Default::default()
    };
    let mut a = shaped_params(1);
    let mut b = shaped_params(1);
    let mut oa = AdaGcOptimizer::new(cfg.clone()).unwrap();
    let mut ob = Chain::new(opt("adamw", json!({"lr": 0.01, "weight_decay": 0.05})))
        .with(AdaGcClip::new(cfg.clip_rule()).unwrap());
    for k in 0..10 {
        set_grads(&mut a, k);
        set_grads(&mut b, k);
        if k == 6 {
            // a spike: the relative rule clips it
            a[0].grad.iter_mut().for_each(|g| *g *= 50.0);
            b[0].grad.iter_mut().for_each(|g| *g *= 50.0);
        }
        let mut va: Vec<_> = a.iter_mut().map(Param::view).collect();
        oa.step(&mut va).unwrap();
        let mut vb: Vec<_> = b.iter_mut().map(Param::view).collect();
        ob.step(&mut vb).unwrap();
        for (pa, pb) in a.iter().zip(&b) {
            assert_eq!(pa.data, pb.data, "step {}", k + 1);
        }
    }
    assert!(oa.gamma("layer.weight").is_some());
}

#[test]
fn adagc_state_loads_from_the_earlier_scalar_form_and_rejects_bad_gamma() {
    let cfg = AdaGc { lr: 0.01, warmup_steps: 2, ..Default::default() };
    let mut a = shaped_params(1);
    let mut oa = AdaGcOptimizer::new(cfg.clone()).unwrap();
    for k in 0..3 {
        set_grads(&mut a, k);
        let mut va: Vec<_> = a.iter_mut().map(Param::view).collect();
        oa.step(&mut va).unwrap();
    }
    let sd = oa.state_dict();
    let gammas: Vec<_> = sd.tensors.iter().filter(|e| e.name == "gamma").collect();
    assert!(!gammas.is_empty() && gammas.iter().all(|e| e.values.len() == 1));
    // The earlier form: the norms as scalars `gamma/<param>`.
    let mut old = sd.clone();
    old.tensors.retain(|e| e.name != "gamma");
    for e in &gammas {
        old.scalars.insert(format!("gamma/{}", e.param), e.values[0] as f64);
    }
    let mut ob = AdaGcOptimizer::new(cfg.clone()).unwrap();
    ob.load_state_dict(&old).unwrap();
    assert_eq!(ob.state_dict(), sd);
    // Both forms at once, or a gamma of two values, are errors; nothing changes.
    let mut both = sd.clone();
    both.scalars.insert(format!("gamma/{}", gammas[0].param), 1.0);
    let err = ob.load_state_dict(&both).unwrap_err().to_string();
    assert!(err.contains("given twice"), "{err}");
    let mut wide = sd.clone();
    for e in wide.tensors.iter_mut().filter(|e| e.name == "gamma") {
        e.values.push(1.0);
    }
    let err = ob.load_state_dict(&wide).unwrap_err().to_string();
    assert!(err.contains("'gamma' holds 2 values"), "{err}");
    assert_eq!(ob.state_dict(), sd);
}

#[test]
fn adagc_stage_on_gradients_with_known_norms() {
    let mut st = AdaGcClip::new(AdaGcConfig {
        warmup_steps: 2,
        ..Default::default()
    })
    .unwrap();
    let mut a = Param::new("a", vec![2], vec![0.0; 2]).unwrap();
    let mut b = Param::new("b", vec![2], vec![0.0; 2]).unwrap();
    // Step 1 (warm-up): norms 5 and 12, global 13 > lambda_abs = 1.
    a.grad = vec![3.0, 4.0];
    b.grad = vec![0.0, 12.0];
    st.transform(&mut [a.view(), b.view()]).unwrap();
    let s = 1.0 / (13.0 + 1e-8);
    assert!(close(a.grad[0] as f64, 3.0 * s, 1e-6) && close(b.grad[1] as f64, 12.0 * s, 1e-6));
    assert!(close(st.gamma("a").unwrap() as f64, 5.0 * s, 1e-6));
    assert!(close(st.gamma("b").unwrap() as f64, 12.0 * s, 1e-6));
    // Step 2 (relative): 'a' has norm 10, far above 1.05 gamma: clipped to
    // 1.05 gamma; 'b' has norm 0.5 < 1.05 gamma: kept.
    a.grad = vec![6.0, 8.0];
    b.grad = vec![0.3, 0.4];
    st.transform(&mut [a.view(), b.view()]).unwrap();
    let ga = 5.0 * s;
    assert!(close(norm(&a.grad), 1.05 * ga, 1e-6), "{:?}", a.grad);
    assert_eq!(b.grad, vec![0.3, 0.4]);
    // gamma <- 0.98 gamma + 0.02 * (clipped norm)
    assert!(close(
        st.gamma("a").unwrap() as f64,
        0.98 * ga + 0.02 * 1.05 * ga,
        1e-6
    ));
    assert!(close(
        st.gamma("b").unwrap() as f64,
        0.98 * 12.0 * s + 0.02 * 0.5,
        1e-6
    ));
    // A tensor first seen after the warm-up gets the global rule once.
    let mut c = Param::new("c", vec![1], vec![0.0]).unwrap();
    c.grad = vec![4.0];
    a.grad = vec![0.0, 3.0];
    st.transform(&mut [a.view(), c.view()]).unwrap();
    assert!(close(c.grad[0] as f64, 4.0 / 5.0, 1e-6), "{:?}", c.grad);
}

// ------------------------------------------------------------------ ZClip

fn grads_with_norm(n: f32) -> Param {
    let mut p = Param::new("g", vec![2], vec![0.0; 2]).unwrap();
    p.grad = vec![n, 0.0];
    p
}

#[test]
fn zclip_warmup_statistics_and_spikes() {
    let cfg = ZClipConfig {
        warmup_steps: 3,
        max_grad_norm: None,
        ..Default::default()
    };
    let mut z = ZClip::new(cfg.clone()).unwrap();
    for n in [1.0, 2.0, 3.0] {
        let mut p = grads_with_norm(n);
        z.transform(&mut [p.view()]).unwrap();
        assert!(close(norm(&p.grad), n as f64, 1e-6), "no cap in warm-up");
    }
    assert!(z.initialized());
    let (mean, var) = z.stats();
    assert!(close(mean, 2.0, 1e-6) && close(var, 2.0 / 3.0, 1e-6));
    // A spike of norm 10: z = (10 - 2) / (std + eps) > 2.5.
    let std = (2.0f64 / 3.0).sqrt();
    let zs = 8.0 / (std + 1e-6);
    let thr = 2.0 + 2.5 * std / (zs / 2.5);
    let mut p = grads_with_norm(10.0);
    z.transform(&mut [p.view()]).unwrap();
    assert!(
        close(norm(&p.grad), thr * 10.0 / (10.0 + 1e-6), 1e-5),
        "{}",
        norm(&p.grad)
    );
    // The EMA takes the threshold, not the raw norm, and the new mean.
    let m2 = 0.97 * 2.0 + 0.03 * thr;
    let v2 = 0.97 * (2.0 / 3.0) + 0.03 * (thr - m2).powi(2);
    let (mean, var) = z.stats();
    assert!(
        close(mean, m2, 1e-9) && close(var, v2, 1e-9),
        "{mean} {var}"
    );
    // An ordinary norm is not clipped and enters the EMA as is.
    let mut p = grads_with_norm(2.1);
    z.transform(&mut [p.view()]).unwrap();
    assert!(close(norm(&p.grad), 2.1, 1e-6));
    assert!(close(z.stats().0, 0.97 * m2 + 0.03 * 2.1, 1e-9));

    // skip_update_on_spike: statistics unchanged by the spike.
    let mut z = ZClip::new(ZClipConfig {
        skip_update_on_spike: true,
        ..cfg.clone()
    })
    .unwrap();
    for n in [1.0, 2.0, 3.0, 10.0] {
        z.transform(&mut [grads_with_norm(n).view()]).unwrap();
    }
    assert!(close(z.stats().0, 2.0, 1e-12));

    // clip_option "mean": a spike is clipped to the mean.
    let mut z = ZClip::new(ZClipConfig {
        clip_option: ZClipOption::Mean,
        ..cfg.clone()
    })
    .unwrap();
    for n in [1.0, 2.0, 3.0] {
        z.transform(&mut [grads_with_norm(n).view()]).unwrap();
    }
    let mut p = grads_with_norm(10.0);
    z.transform(&mut [p.view()]).unwrap();
    assert!(close(norm(&p.grad), 2.0 * 10.0 / (10.0 + 1e-6), 1e-6));

    // "percentile": clipped to mean + z_thresh std when above it.
    let mut z = ZClip::new(ZClipConfig {
        mode: ZClipMode::Percentile,
        ..cfg.clone()
    })
    .unwrap();
    for n in [1.0, 2.0, 3.0] {
        z.transform(&mut [grads_with_norm(n).view()]).unwrap();
    }
    let thr = 2.0 + 2.5 * std; // 4.04
    let mut p = grads_with_norm(4.0);
    z.transform(&mut [p.view()]).unwrap();
    assert_eq!(norm(&p.grad), 4.0, "below the threshold");
    assert!(thr > 4.0);
    // the EMA took 4.0; the next threshold uses the new statistics
    let m1: f64 = 0.97 * 2.0 + 0.03 * 4.0;
    let v1: f64 = 0.97 * (2.0 / 3.0) + 0.03 * (4.0 - m1) * (4.0 - m1);
    let thr1 = m1 + 2.5 * v1.sqrt();
    let mut p = grads_with_norm(5.0);
    z.transform(&mut [p.view()]).unwrap();
    assert!(
        close(norm(&p.grad), thr1 * 5.0 / (5.0 + 1e-6), 1e-6),
        "{}",
        norm(&p.grad)
    );

    // max_grad_norm caps both phases: clip_grad_norm_ in warm-up, and the
    // threshold afterwards even without a spike.
    let mut z = ZClip::new(ZClipConfig {
        warmup_steps: 3,
        max_grad_norm: Some(1.5),
        ..Default::default()
    })
    .unwrap();
    let mut p = grads_with_norm(2.0);
    z.transform(&mut [p.view()]).unwrap();
    assert!(close(norm(&p.grad), 1.5 * 2.0 / (2.0 + 1e-6), 1e-6));
    for n in [2.0, 2.0] {
        z.transform(&mut [grads_with_norm(n).view()]).unwrap();
    }
    let mut p = grads_with_norm(2.0);
    z.transform(&mut [p.view()]).unwrap();
    assert!(close(norm(&p.grad), 1.5 * 2.0 / (2.0 + 1e-6), 1e-6));
    // ... and the EMA sees the uncapped norm.
    assert!(close(z.stats().0, 2.0, 1e-9));
}

// ------------------------------------------------------------------ AGC / per-tensor

#[test]
fn agc_clips_unit_wise_relative_to_the_weights() {
    let mut st = Agc::new(AgcConfig::default()).unwrap();
    // Rows of W: norms 5 and 0 (eps floor 1e-3).
    let mut w = Param::new("fc.weight", vec![2, 2], vec![3.0, 4.0, 0.0, 0.0]).unwrap();
    w.grad = vec![0.3, 0.4, 1e-6, 0.0];
    // Row 0: ||g|| = 0.5 >= 0.01 * 5: clipped to 0.05. Row 1: ||g|| = 1e-6
    // < 0.01 * 1e-3: kept.
    let mut bias = Param::new("fc.bias", vec![2], vec![30.0, 40.0]).unwrap();
    bias.grad = vec![0.1, 0.1]; // ||g|| 0.14 < 0.01 * 50: kept
    let mut head = Param::new("head.weight", vec![1, 2], vec![1.0, 0.0]).unwrap();
    head.grad = vec![5.0, 0.0];
    let mut st2 = Agc::new(AgcConfig {
        exclude: vec!["head.*".into()],
        ..Default::default()
    })
    .unwrap();
    st.transform(&mut [w.view(), bias.view()]).unwrap();
    assert!(close(norm(&w.grad[..2]), 0.05, 1e-6), "{:?}", w.grad);
    assert!(close((w.grad[0] / w.grad[1]) as f64, 0.75, 1e-6));
    assert_eq!(&w.grad[2..], &[1e-6, 0.0]);
    assert_eq!(bias.grad, vec![0.1, 0.1]);
    st2.transform(&mut [head.view()]).unwrap();
    assert_eq!(head.grad, vec![5.0, 0.0], "excluded");
    // A 4-D kernel: the unit is one output filter (all other dimensions).
    let mut k = Param::new("conv", vec![2, 1, 1, 2], vec![1.0, 0.0, 0.0, 1.0]).unwrap();
    k.grad = vec![1.0, 1.0, 0.001, 0.0];
    st.transform(&mut [k.view()]).unwrap();
    assert!(close(norm(&k.grad[..2]), 0.01, 1e-6));
    assert_eq!(&k.grad[2..], &[0.001, 0.0], "below the bound: kept");
}

#[test]
fn per_tensor_clipping_bounds_each_tensor_alone() {
    let mut st = ClipPerTensor::new(ClipPerTensorConfig {
        max_norm: 1.0,
        norm_type: 2.0,
    })
    .unwrap();
    let mut a = Param::new("a", vec![2], vec![0.0; 2]).unwrap();
    let mut b = Param::new("b", vec![2], vec![0.0; 2]).unwrap();
    a.grad = vec![3.0, 4.0];
    b.grad = vec![0.3, 0.4];
    st.transform(&mut [a.view(), b.view()]).unwrap();
    assert!(close(norm(&a.grad), 5.0 / (5.0 + 1e-6), 1e-6));
    assert_eq!(b.grad, vec![0.3, 0.4], "a global clip would have scaled it");
    let mut inf = ClipPerTensor::with_norm(1.0, f64::INFINITY).unwrap();
    a.grad = vec![-3.0, 1.0];
    inf.transform(&mut [a.view()]).unwrap();
    assert!(close(a.grad[0] as f64, -3.0 / (3.0 + 1e-6), 1e-6));
}

#[test]
fn every_stage_chains_with_adamw_and_converges() {
    // Each stage in front of AdamW on the quadratic (loss 187.7 at the start).
    let q = Quadratic::default();
    let stages: Vec<(&str, Value)> = vec![
        ("adagc", json!({"warmup_steps": 10})),
        ("zclip", json!({"warmup_steps": 10, "max_grad_norm": null})),
        ("agc", json!({"clipping": 0.5})),
        ("clip_per_tensor", json!({"max_norm": 50.0})),
        ("clip_grad_norm", json!({"max_norm": 50.0})),
    ];
    for (name, cfg) in stages {
        let mut chain = Chain::new(opt("adamw", json!({"lr": 0.05, "weight_decay": 0.0})));
        chain.push(stages::build(name, &cfg).unwrap());
        let losses = minimize(&q, &mut chain, 1500).unwrap();
        let last = *losses.last().unwrap();
        assert!(last < 1e-4, "{name}: loss {last} after 1500 steps");
    }
}

#[test]
fn stage_state_round_trips_through_a_chain() {
    let make = || {
        Chain::new(opt("adamw", json!({"lr": 0.01})))
            .with(
                ZClip::new(ZClipConfig {
                    warmup_steps: 4,
                    ..Default::default()
                })
                .unwrap(),
            )
            .with(
                AdaGcClip::new(AdaGcConfig {
                    warmup_steps: 2,
                    ..Default::default()
                })
                .unwrap(),
            )
    };
    let mut a = shaped_params(3);
    let mut c = shaped_params(3);
    let mut oa = make();
    run_steps(&mut oa, &mut a, 0, 9);
    let mut oc = make();
    run_steps(&mut oc, &mut c, 0, 3); // still inside ZClip's warm-up
    let sd = oc.state_dict();
    assert!(sd.scalars.keys().any(|k| k.starts_with("stage0/warmup/")));
    assert!(sd.scalars.keys().any(|k| k.starts_with("stage1/gamma/")));
    let mut od = make();
    od.load_state_dict(&sd).unwrap();
    assert_eq!(od.state_dict(), sd);
    run_steps(&mut od, &mut c, 3, 9);
    assert_eq!(a, c, "resumed chain differs");
    // A malformed stage state is refused and changes nothing.
    let mut bad = sd.clone();
    bad.scalars.insert("stage0/initialized".into(), 0.5);
    let before = od.state_dict();
    assert!(od.load_state_dict(&bad).is_err());
    assert_eq!(od.state_dict(), before);
}

#[test]
fn replay_runs_extension_stages() {
    let case = json!({
        "optimizer": "adamw",
        "hparams": {"lr": 0.01},
        "params": [{"name": "w", "shape": [2], "data": [1.0, -1.0]}],
        "grads": [[[3.0, 4.0]], [[0.3, 0.4]], [[30.0, 40.0]]],
        "stages": [{"name": "zclip", "config": {"warmup_steps": 2}}, {"name": "clip_per_tensor", "config": {"max_norm": 0.5}}]
    });
    let traj = Case::parse(&case.to_string()).unwrap().run().unwrap();
    let mut chain = Chain::new(opt("adamw", json!({"lr": 0.01})))
        .with(
            ZClip::new(ZClipConfig {
                warmup_steps: 2,
                ..Default::default()
            })
            .unwrap(),
        )
        .with(
            ClipPerTensor::new(ClipPerTensorConfig {
                max_norm: 0.5,
                norm_type: 2.0,
            })
            .unwrap(),
        );
    let mut w = Param::new("w", vec![2], vec![1.0, -1.0]).unwrap();
    for (t, g) in [[3.0, 4.0], [0.3, 0.4], [30.0, 40.0]].iter().enumerate() {
        w.grad = g.to_vec();
        chain.step(&mut [w.view()]).unwrap();
        assert_eq!(traj[t][0], w.data);
    }
    for bad in [
        json!([{"name": "zclipp"}]),
        json!([{"name": "zclip", "config": {"alpha": 2.0}}]),
        json!([{"name": "zclip", "cfg": {}}]),
        json!({"name": "zclip"}),
    ] {
        let mut c = case.clone();
        c["stages"] = bad.clone();
        assert!(Case::parse(&c.to_string()).unwrap().run().is_err(), "{bad}");
    }
}

// ------------------------------------------------------------------ Magma

#[test]
fn magma_scales_kept_updates_by_the_alignment_and_masks_all_of_them() {
    // mask_prob 1: every update kept. First Adam step: exp_avg = 0.1 g, so
    // cos = 1 and s = lerp(1, sigmoid(1 / 2), 0.1).
    let mut m = opt(
        "magma",
        json!({"mask_prob": 1.0, "inner": {"optimizer": "adam", "hparams": {"lr": 0.1}}}),
    );
    let mut plain = opt("adam", json!({"lr": 0.1}));
    let mut a = Param::new("w", vec![3], vec![1.0, 2.0, 3.0]).unwrap();
    let mut b = a.clone();
    a.grad = vec![0.5, -1.0, 2.0];
    b.grad = a.grad.clone();
    m.step(&mut [a.view()]).unwrap();
    plain.step(&mut [b.view()]).unwrap();
    let s = 1.0 + 0.1 * (1.0 / (1.0 + (-0.5f64).exp()) - 1.0);
    for i in 0..3 {
        let old = [1.0, 2.0, 3.0][i];
        let want = old + s * (b.data[i] as f64 - old);
        assert!(close(a.data[i] as f64, want, 1e-6), "{i}");
    }
    // mask_prob 0: the parameters never move, the inner state does.
    let mut m = opt(
        "magma",
        json!({"mask_prob": 0.0, "inner": {"optimizer": "adamw", "hparams": {"lr": 0.1}}}),
    );
    let mut p = shaped_params(2);
    let before = p.clone();
    run_steps(m.as_mut(), &mut p, 0, 5);
    for (x, y) in p.iter().zip(&before) {
        assert_eq!(x.data, y.data);
    }
    assert!(m
        .state_buffer("layer.weight", "exp_avg")
        .unwrap()
        .iter()
        .any(|&v| v != 0.0));
    // An excluded parameter follows the inner optimizer exactly.
    let mut m = opt(
        "magma",
        json!({"mask_prob": 0.0, "exclude": ["*.bias"], "inner": {"optimizer": "adam", "hparams": {}}}),
    );
    let mut plain = opt("adam", json!({}));
    let mut p = shaped_params(4);
    let mut q = shaped_params(4);
    run_steps(m.as_mut(), &mut p, 0, 4);
    run_steps(plain.as_mut(), &mut q, 0, 4);
    assert_eq!(p[1], q[1]);
    assert_ne!(p[0].data, q[0].data);
}

#[test]
fn magma_masks_are_bernoulli_seeded_and_injectable() {
    let mut m = Magma::from_json(&json!({"mask_prob": 0.3, "seed": 5,
        "inner": {"optimizer": "sgd", "hparams": {"lr": 0.1}}}))
    .unwrap();
    let mut x = Param::new("x", vec![1], vec![0.0]).unwrap();
    let (mut kept, n) = (0, 4000);
    for _ in 0..n {
        let before = x.data[0];
        x.grad = vec![1.0];
        m.step(&mut [x.view()]).unwrap();
        kept += (x.data[0] != before) as u32;
    }
    let frac = kept as f64 / n as f64;
    assert!((frac - 0.3).abs() < 0.03, "kept fraction {frac}");
    // Injected masks override the draw for the next step only.
    let mut m = Magma::new(
        MagmaConfig {
            mask_prob: 1.0,
            ..Default::default()
        },
        opt("sgd", json!({"lr": 0.1})),
    )
    .unwrap();
    let mut x = Param::new("x", vec![1], vec![0.0]).unwrap();
    x.grad = vec![1.0];
    m.set_masks(HashMap::from([("x".to_string(), false)]));
    m.step(&mut [x.view()]).unwrap();
    assert_eq!(x.data[0], 0.0);
    m.step(&mut [x.view()]).unwrap();
    assert!(x.data[0] < 0.0);
    assert!(m.alignment("x").is_some());
}

#[test]
fn magma_forwards_hyperparameters_and_validates() {
    let mut m = opt("magma", json!({}));
    assert_eq!(m.config()["inner"]["optimizer"], "adamw");
    assert_eq!(m.lr(), Some(1e-3));
    m.set_lr(0.01).unwrap();
    assert_eq!(m.config()["inner"]["hparams"]["lr"], 0.01);
    m.set_hparam("mask_prob", 0.25).unwrap();
    assert_eq!(m.hparam("mask_prob"), Some(0.25));
    assert!(m.set_hparam("mask_prob", 1.5).is_err());
    assert_eq!(m.hparam("mask_prob"), Some(0.25));
    let cfg = m.config();
    m.set_config(cfg.clone()).unwrap();
    assert_eq!(m.config(), cfg);
    let mut other = cfg.clone();
    other["inner"]["optimizer"] = json!("sgd");
    assert!(m.set_config(other).is_err());
}

#[test]
fn magma_converges_on_the_quadratic() {
    let q = Quadratic::default();
    let mut m = opt(
        "magma",
        json!({"inner": {"optimizer": "adam", "hparams": {"lr": 0.05}}}),
    );
    let losses = minimize(&q, m.as_mut(), 3000).unwrap();
    let last = *losses.last().unwrap();
    assert!(last < 1e-4, "loss {last} after 3000 steps");
}

// ------------------------------------------------------------------ common properties

#[test]
fn invalid_hyperparameters_are_errors_naming_the_field() {
    let cases = [
        ("sophiah", json!({"p": -0.1}), "p"),
        ("sophiah", json!({"update_period": 0}), "update_period"),
        ("sophiah", json!({"betas": [0.9, 1.0]}), "betas[1]"),
        ("sophiah", json!({"num_samples": 2}), "num_samples"),
        ("sophiag", json!({"rho": -1.0}), "rho"),
        ("sophiag", json!({"bs": -1.0}), "bs"),
        ("sophiag", json!({"betas": [1.0, 0.99]}), "betas[0]"),
        ("adamomentum", json!({"eps": -1e-8}), "eps"),
        ("adamomentum", json!({"maximize": true}), "maximize"),
        ("adagc", json!({"lambda_rel": 0.0}), "lambda_rel"),
        ("adagc", json!({"lambda_abs": -1.0}), "lambda_abs"),
        ("adagc", json!({"beta": 1.0}), "beta"),
        ("adagc", json!({"warmup_steps": -1}), "warmup_steps"),
        ("magma", json!({"mask_prob": 1.5}), "mask_prob"),
        ("magma", json!({"tau": 0.0}), "tau"),
        ("magma", json!({"alignment_ema": -0.1}), "alignment_ema"),
        ("magma", json!({"k": 5}), "k"),
        (
            "magma",
            json!({"inner": {"optimizer": "adam", "hparams": {"lr": -1.0}}}),
            "lr",
        ),
        ("magma", json!({"inner": {"optimizer": "magma"}}), "magma"),
    ];
    for (name, hp, field) in cases {
        common::refusal(name, &hp, field);
    }
    assert!(build("magma", &json!({"inner": {"optimizer": "adamz"}})).is_err());
    for (stage, cfg, field) in [
        ("zclip", json!({"alpha": 1.5}), "alpha"),
        ("zclip", json!({"z_thresh": 0.0}), "z_thresh"),
        ("zclip", json!({"mode": "median"}), "mode"),
        ("zclip", json!({"clip_option": "max"}), "clip_option"),
        ("zclip", json!({"max_grad_norm": -1.0}), "max_grad_norm"),
        ("agc", json!({"clipping": -0.01}), "clipping"),
        ("agc", json!({"clip_factor": 0.01}), "clip_factor"),
        ("adagc", json!({"lambda_rel": -1.0}), "lambda_rel"),
        ("clip_per_tensor", json!({}), "max_norm"),
        ("clip_per_tensor", json!({"max_norm": -1.0}), "max_norm"),
    ] {
        match stages::build(stage, &cfg) {
            Ok(_) => panic!("{stage} {cfg}: accepted"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(field), "{stage} {cfg}: {msg:?}");
                assert!(msg.contains(stage), "{stage} {cfg}: {msg:?}");
            }
        }
    }
}

#[test]
fn deterministic_and_state_round_trip() {
    for (name, hp) in [
        ("sophiah", json!({"lr": 0.01, "p": 0.5})),
        ("sophiag", json!({"lr": 0.01, "bs": 2.0})),
        ("adamomentum", json!({"lr": 0.01, "weight_decay": 0.1})),
        ("adagc", json!({"lr": 0.01, "warmup_steps": 3})),
        (
            "adagc",
            json!({"lr": 0.01, "warmup_steps": 2, "weight_decouple": false, "weight_decay": 0.01}),
        ),
        (
            "magma",
            json!({"seed": 3, "inner": {"optimizer": "adam", "hparams": {"lr": 0.01}}}),
        ),
        (
            "magma",
            json!({"moment_key": null, "inner": {"optimizer": "sgd", "hparams": {"lr": 0.01}}}),
        ),
    ] {
        let (a, sd, mut od) = common::check_resume(name, &hp, || shaped_params(1), run_steps, 4, 8);
        assert_ne!(a, shaped_params(1), "{name}: nothing moved");
        // A malformed state is refused and changes nothing.
        let mut bad = sd.clone();
        bad.tensors[0].name = "nonsense".into();
        assert!(od.load_state_dict(&bad).is_err(), "{name}");
    }
}

#[test]
fn shape_errors_are_values() {
    for name in ["sophiah", "sophiag", "adamomentum", "adagc", "magma"] {
        let mut o = opt(name, json!({}));
        let mut w = Param::new("w", vec![3], vec![0.0; 3]).unwrap();
        o.step(&mut [w.view()]).unwrap();
        let mut w2 = Param::new("w", vec![4], vec![0.0; 4]).unwrap();
        assert!(o.step(&mut [w2.view()]).is_err(), "{name}: size change");
        let mut v = Param::new("v", vec![2], vec![0.0; 2]).unwrap();
        v.grad = vec![1.0];
        assert!(o.step(&mut [v.view()]).is_err(), "{name}: gradient length");
        let mut u = Param::new("u", vec![2], vec![0.0; 2]).unwrap();
        let est = [1.0f32];
        let mut view = u.view();
        view.hessian = Some(&est);
        assert!(o.step(&mut [view]).is_err(), "{name}: hessian length");
    }
}
