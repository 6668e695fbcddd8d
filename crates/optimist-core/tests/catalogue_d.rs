//! Preconditioned, second-order, matrix and low-rank optimizers (soap,
//! shampoo, kron, adahessian, sm3, normuon, scion, galore, apollo): convergence,
//! validation errors naming the field, determinism and state round trips.
//!
//! Value-for-value agreement with pytorch-optimizer is checked by the golden
//! cases (`tests/golden/extensions/`, through `tests/golden.rs`).

mod common;

use common::opt;

use optimist_core::curvature::{attach, Hutchinson};
use optimist_core::optim::AdaHessian;
use optimist_core::problems::{minimize, MatrixLeastSquares, Problem, Quadratic};
use optimist_core::{Optimizer, Param};
use serde_json::{json, Value};

/// (optimizer, hparams, steps, factor by which the loss must fall)
type Run = (&'static str, Value, usize, f64);

fn check(problem: &dyn Problem, runs: Vec<Run>) {
    let mut failures = Vec::new();
    for (name, hp, steps, factor) in runs {
        let mut o = opt(name, hp.clone());
        let losses = minimize(problem, o.as_mut(), steps).unwrap();
        let (first, last) = (losses[0], *losses.last().unwrap());
        eprintln!("{name} {hp}: {first:.3e} -> {last:.3e} in {steps} steps");
        if !(last.is_finite() && last * factor <= first) {
            failures.push(format!(
                "{name} {hp}: loss {first:.3e} -> {last:.3e} after {steps} steps (wanted a {factor:e}x fall)"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn matrix_least_squares_convergence() {
    // 0.5/32 ||A W - B||^2 with W of 16 x 8, started at 0.
    check(
        &MatrixLeastSquares::default(),
        vec![
            ("soap", json!({"lr": 0.01, "weight_decay": 0.0}), 500, 1e3),
            ("soap", json!({"lr": 0.01, "precondition_frequency": 3}), 500, 1e2),
            // Shampoo's statistics only grow (no decay): its steps shrink
            // like 1 / sqrt(t), so it falls slowest here.
            ("shampoo", json!({"lr": 0.05}), 500, 1e1),
            ("shampoo", json!({"lr": 0.02, "momentum": 0.5}), 500, 2.0),
            ("kron", json!({"lr": 0.01}), 500, 1e2),
            ("kron", json!({"lr": 0.01, "memory_save_mode": "all_diag"}), 500, 1e2),
            ("normuon", json!({"lr": 0.01}), 500, 1e2),
            ("scion", json!({"lr": 0.01, "momentum": 0.5}), 500, 1e2),
            // Sign steps of lr / d_in per element: a slow, steady fall.
            ("scion", json!({"lr": 0.005, "norm_type": 4}), 500, 3.0),
            ("sm3", json!({"lr": 0.1}), 500, 1e2),
            ("galore", json!({"lr": 0.01}), 500, 1e2),
            (
                "galore",
                json!({"lr": 0.01, "rank": 4, "update_proj_gap": 20, "scale": 1.0, "projection_type": "std"}),
                500,
                1e1,
            ),
            ("apollo", json!({"lr": 0.01}), 500, 1e2),
            (
                "apollo",
                json!({"lr": 0.01, "rank": 4, "update_proj_gap": 20, "scale": 1.0, "projection_type": "std"}),
                500,
                1e1,
            ),
            (
                "apollo",
                json!({"lr": 0.01, "rank": 4, "update_proj_gap": 20, "scale": 1.0,
                       "projection_type": "std", "scale_type": "channel"}),
                500,
                1e1,
            ),
        ],
    );
}

#[test]
fn quadratic_convergence() {
    // 16 dimensions, condition number 100.
    check(
        &Quadratic::default(),
        vec![
            ("sm3", json!({"lr": 0.5}), 500, 1e4),
            ("sm3", json!({"lr": 0.1, "momentum": 0.5, "beta": 0.9}), 1000, 1e3),
            ("soap", json!({"lr": 0.05, "weight_decay": 0.0}), 500, 1e3),
            ("shampoo", json!({"lr": 0.5}), 500, 1e3),
            ("kron", json!({"lr": 0.05}), 500, 1e2),
            ("galore", json!({"lr": 0.05}), 500, 1e3),
            ("apollo", json!({"lr": 0.05}), 500, 1e3),
        ],
    );
}

#[test]
fn adahessian_with_hutchinson_converges_on_the_quadratic() {
    // Exact Hessian-vector products (H = diag(c)) through Hutchinson's
    // estimator, at the steps the reference would estimate.
    let q = Quadratic::default();
    let c: Vec<f32> = (0..q.dim)
        .map(|i| q.condition.powf(i as f64 / (q.dim - 1) as f64) as f32)
        .collect();
    let cfg = AdaHessian {
        lr: 0.1,
        update_period: 2,
        ..Default::default()
    };
    let mut o = opt("adahessian", serde_json::to_value(&cfg).unwrap());
    let mut hutch = Hutchinson::new(3);
    let mut p = Param::new("x", vec![q.dim], q.init()).unwrap();
    let first = q.loss_grad(&p.data, &mut p.grad);
    for t in 1..=500u64 {
        q.loss_grad(&p.data, &mut p.grad);
        let est = cfg.hessian_due(t).then(|| {
            hutch
                .estimate_with(&[c.len()], |v, out| {
                    for ((o, vi), ci) in out[0].iter_mut().zip(&v[0]).zip(&c) {
                        *o = ci * vi;
                    }
                    Ok(())
                })
                .unwrap()
        });
        let mut views = vec![p.view()];
        if let Some(e) = &est {
            attach(&mut views, e).unwrap();
        }
        o.step(&mut views).unwrap();
    }
    let mut g = vec![0.0; q.dim];
    let last = q.loss_grad(&p.data, &mut g);
    assert!(last < first * 1e-4, "{first} -> {last}");
    assert!(cfg.hessian_due(1) && !cfg.hessian_due(2) && cfg.hessian_due(3));
}

#[test]
fn invalid_hyperparameters_are_errors_naming_the_field() {
    for (name, hp, field) in [
        ("soap", json!({"lr": -1.0}), "lr"),
        ("soap", json!({"betas": [0.9, 1.0]}), "betas[1]"),
        ("soap", json!({"precondition_frequency": 0}), "precondition_frequency"),
        ("soap", json!({"shampoo_beta": -0.1}), "shampoo_beta"),
        ("soap", json!({"data_format": "nhwc"}), "data_format"),
        ("shampoo", json!({"momentum": 1.0}), "momentum"),
        ("shampoo", json!({"preconditioning_compute_steps": 0}), "preconditioning_compute_steps"),
        ("shampoo", json!({"matrix_eps": -1.0}), "matrix_eps"),
        ("kron", json!({"momentum": 1.0}), "momentum"),
        ("kron", json!({"memory_save_mode": "half"}), "memory_save_mode"),
        ("kron", json!({"mu_dtype": "bfloat16"}), "mu_dtype"),
        ("adahessian", json!({"hessian_power": 0.0}), "hessian_power"),
        ("adahessian", json!({"hessian_power": 1.5}), "hessian_power"),
        ("adahessian", json!({"update_period": 0}), "update_period"),
        ("sm3", json!({"momentum": 1.0}), "momentum"),
        ("sm3", json!({"beta": 1.5}), "beta"),
        ("sm3", json!({"eps": -1.0}), "eps"),
        ("normuon", json!({"beta2": 1.0}), "beta2"),
        ("normuon", json!({"ns_steps": 0}), "ns_steps"),
        ("normuon", json!({"update_scale": "rms"}), "update_scale"),
        ("normuon", json!({"ns_coeffs": "cubic"}), "ns_coeffs"),
        ("scion", json!({"momentum": 0.0}), "momentum"),
        ("scion", json!({"scale": 0.0}), "scale"),
        ("scion", json!({"norm_type": 4, "norm_kwargs": {"num_steps": 3}}), "num_steps"),
        ("galore", json!({"eps": -1.0}), "eps"),
        ("galore", json!({"rank": 2}), "update_proj_gap"),
        (
            "galore",
            json!({"rank": 2, "update_proj_gap": 0, "scale": 1.0, "projection_type": "std"}),
            "update_proj_gap",
        ),
        (
            "galore",
            json!({"rank": 2, "update_proj_gap": 5, "scale": 1.0, "projection_type": "diagonal"}),
            "projection_type",
        ),
        ("apollo", json!({"lr": -1.0}), "lr"),
        ("apollo", json!({"betas": [1.0, 0.999]}), "betas[0]"),
        ("apollo", json!({"weight_decay": -0.1}), "weight_decay"),
        ("apollo", json!({"eps": -1.0}), "eps"),
        ("apollo", json!({"rank": 2, "update_proj_gap": 5, "projection_type": "std"}), "scale"),
        (
            "apollo",
            json!({"rank": 2, "update_proj_gap": 0, "scale": 1.0, "projection_type": "std"}),
            "update_proj_gap",
        ),
        (
            "apollo",
            json!({"rank": 2, "update_proj_gap": 5, "scale": 1.0, "projection_type": "diagonal"}),
            "projection_type",
        ),
        ("apollo", json!({"scale_type": "row"}), "scale_type"),
        ("apollo", json!({"use_gc": true}), "use_gc"),
    ] {
        let err = optimist_core::registry::build(name, &hp)
            .err()
            .unwrap_or_else(|| panic!("{name} {hp}: accepted"))
            .to_string();
        assert!(err.contains(name) && err.contains(field), "{name} {hp}: {err}");
    }
}

#[test]
fn parameters_the_rule_cannot_take_are_errors_that_change_nothing() {
    for (name, hp, shape) in [
        ("scion", json!({"norm_type": 2}), vec![6]),
        ("scion", json!({}), vec![2, 2, 2, 2, 2]),
        ("normuon", json!({}), vec![]),
        ("kron", json!({}), vec![2, 2, 2]),
    ] {
        let n: usize = shape.iter().product();
        let mut w = Param::new("w", vec![3, 2], vec![0.5; 6]).unwrap();
        let mut x = Param::new("x", shape.clone(), vec![1.0; n]).unwrap();
        w.grad = vec![0.1; 6];
        x.grad = vec![0.1; n];
        let mut o = opt(name, hp.clone());
        let err = o.step(&mut [w.view(), x.view()]).unwrap_err().to_string();
        assert!(err.contains('x'), "{name}: {err}");
        assert_eq!(w.data, vec![0.5; 6], "{name}: changed another parameter");
    }
}

fn shaped_params() -> Vec<Param> {
    let mut s = 12345u32;
    let mut next = move || {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        ((s >> 8) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0
    };
    let w = Param::new("layer.weight", vec![4, 4], (0..16).map(|_| next()).collect()).unwrap();
    let b = Param::new("layer.bias", vec![3], (0..3).map(|_| next()).collect()).unwrap();
    vec![w, b]
}

fn set_grads(params: &mut [Param], k: usize) {
    for p in params.iter_mut() {
        for (i, g) in p.grad.iter_mut().enumerate() {
            *g = ((i + 3 * k) as f32 * 0.37).sin() + 0.1 * (k as f32).cos();
        }
    }
}

fn run(o: &mut dyn Optimizer, params: &mut [Param], steps: std::ops::Range<usize>) {
    for k in steps {
        set_grads(params, k);
        let mut views: Vec<_> = params.iter_mut().map(Param::view).collect();
        o.step(&mut views).unwrap();
    }
}

#[test]
fn deterministic_and_state_round_trip() {
    for (name, hp) in [
        ("soap", json!({"precondition_frequency": 2, "precondition_1d": true})),
        ("shampoo", json!({"momentum": 0.5, "preconditioning_compute_steps": 2})),
        ("kron", json!({"balance_prob": 0.5, "seed": 3})),
        ("adahessian", json!({})),
        ("sm3", json!({"momentum": 0.5, "beta": 0.5})),
        ("normuon", json!({})),
        ("scion", json!({"weight_decay": 0.1})),
        (
            "galore",
            json!({"rank": 2, "update_proj_gap": 3, "scale": 0.5, "projection_type": "std"}),
        ),
        (
            "apollo",
            json!({"rank": 2, "update_proj_gap": 3, "scale": 0.5, "projection_type": "std",
                   "scale_type": "channel", "weight_decay": 0.1, "seed": 4}),
        ),
    ] {
        let mut a = shaped_params();
        let mut b = shaped_params();
        let mut oa = opt(name, hp.clone());
        let mut ob = opt(name, hp.clone());
        run(oa.as_mut(), &mut a, 0..7);
        run(ob.as_mut(), &mut b, 0..7);
        assert_eq!(a, b, "{name}: not deterministic");
        assert_ne!(a, shaped_params(), "{name}: nothing moved");

        let mut c = shaped_params();
        let mut oc = opt(name, hp.clone());
        run(oc.as_mut(), &mut c, 0..4);
        let sd = oc.state_dict();
        assert!(!sd.tensors.is_empty(), "{name}: empty state");
        let mut od = opt(name, hp.clone());
        od.load_state_dict(&sd).unwrap();
        assert_eq!(od.state_dict(), sd, "{name}: state changed by a round trip");
        run(od.as_mut(), &mut c, 4..7);
        assert_eq!(a, c, "{name}: resumed run differs");
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    use optimist_core::ExecOptions;
    for (name, hp) in [
        ("soap", json!({})),
        ("shampoo", json!({})),
        ("kron", json!({})),
        ("sm3", json!({})),
        ("normuon", json!({})),
        ("scion", json!({})),
        ("galore", json!({})),
        ("apollo", json!({"rank": 2, "update_proj_gap": 2, "scale": 1.0, "projection_type": "std"})),
    ] {
        let mut reference: Option<Vec<Param>> = None;
        for threads in [1usize, 2, 3, 8] {
            let mut o = opt(name, hp.clone());
            o.set_exec_options(ExecOptions {
                threads,
                ..Default::default()
            })
            .unwrap();
            let mut p = shaped_params();
            run(o.as_mut(), &mut p, 0..5);
            match &reference {
                None => reference = Some(p),
                Some(r) => assert_eq!(&p, r, "{name}: {threads} threads differ"),
            }
        }
    }
}

#[test]
fn apollo_projections_follow_the_seed() {
    // Same seed: the same run; another seed: other random projections, so
    // another trajectory of the matrix (the vector gets plain Adam either way).
    let hp = |seed: u64| json!({"rank": 2, "update_proj_gap": 2, "scale": 1.0, "projection_type": "std", "seed": seed});
    let runs: Vec<Vec<Param>> = [1u64, 1, 2]
        .iter()
        .map(|&seed| {
            let mut p = shaped_params();
            let mut o = opt("apollo", hp(seed));
            run(o.as_mut(), &mut p, 0..5);
            p
        })
        .collect();
    assert_eq!(runs[0], runs[1]);
    assert_ne!(runs[0][0].data, runs[2][0].data, "the seed changed nothing");
    assert_eq!(runs[0][1].data, runs[2][1].data, "the vector is not projected");
    // The drawn projection is state: 4 x 4 tall-or-square "std" is the right
    // side, Q of rank x cols = 2 x 4; the scaled-gradient norm is one value.
    let mut p = shaped_params();
    let mut o = opt("apollo", hp(1));
    run(o.as_mut(), &mut p, 0..1);
    let sd = o.state_dict();
    let len = |n: &str| {
        sd.tensors
            .iter()
            .find(|e| e.param == "layer.weight" && e.name == n)
            .map(|e| e.values.len())
    };
    assert_eq!(len("ortho"), Some(8));
    assert_eq!(len("exp_avg"), Some(8));
    assert_eq!(len("scaling_grad"), Some(1));
}

/// SOAP's merge_dims where the reference cannot reshape: a tensor whose
/// dimensions all merge into one fails at the first step, a vector of
/// length `1 < n <= max_precondition_dim` at the second (the reference
/// reshapes vectors only to project them); both name merge_dims.
#[test]
fn soap_merge_dims_fails_where_the_reference_cannot_reshape() {
    let mut o = opt("soap", json!({"merge_dims": true}));
    let mut w = Param::new("w", vec![3, 3], vec![0.5; 9]).unwrap();
    w.grad.iter_mut().enumerate().for_each(|(i, g)| *g = i as f32 * 0.1 - 0.3);
    let e = o.step(&mut [w.view()]).unwrap_err().to_string();
    assert!(e.contains("merge_dims") && e.contains("'w'"), "{e}");

    let mut o = opt("soap", json!({"merge_dims": true, "max_precondition_dim": 4}));
    let mut b = Param::new("b", vec![3], vec![0.5; 3]).unwrap();
    b.grad.copy_from_slice(&[0.1, -0.2, 0.3]);
    o.step(&mut [b.view()]).unwrap();
    let e = o.step(&mut [b.view()]).unwrap_err().to_string();
    assert!(e.contains("merge_dims") && e.contains("'b'"), "{e}");

    // A vector above max_precondition_dim is left as it is.
    let mut o = opt("soap", json!({"merge_dims": true, "max_precondition_dim": 2}));
    for _ in 0..3 {
        o.step(&mut [b.view()]).unwrap();
    }
    let c = opt("soap", json!({})).config();
    assert_eq!((c["merge_dims"].clone(), c["data_format"].clone()), (json!(false), json!("channels_first")));
}

/// Shampoo's update in f64, straight from the formulas (no momentum, no
/// weight decay): `L_k += G_(k) G_(k)^T`, `P_k = L_k^(-1/(2r))` through
/// `linalg::eigh`, `u = g x_0 P_0 ... x_{r-1} P_{r-1}`, `p -= lr u`.
fn shampoo_f64(p: &mut [f64], shape: &[usize], grads: &[Vec<f32>], lr: f64, eps: f64) {
    let r = shape.len();
    let mut stats: Vec<Vec<f64>> = shape
        .iter()
        .map(|&d| {
            (0..d * d)
                .map(|i| if i % (d + 1) == 0 { eps } else { 0.0 })
                .collect()
        })
        .collect();
    for g in grads {
        let g: Vec<f64> = g.iter().map(|&x| x as f64).collect();
        let mut u = g.clone();
        for k in 0..r {
            let d = shape[k];
            let pre: usize = shape[..k].iter().product();
            let post: usize = shape[k + 1..].iter().product();
            let at = |x: &[f64], a: usize, i: usize, b: usize| x[(a * d + i) * post + b];
            for i in 0..d {
                for j in 0..d {
                    let mut s = 0.0;
                    for a in 0..pre {
                        for b in 0..post {
                            s += at(&g, a, i, b) * at(&g, a, j, b);
                        }
                    }
                    stats[k][i * d + j] += s;
                }
            }
            let (w, v) = optimist_core::linalg::eigh(&stats[k], d);
            let f: Vec<f64> = w
                .iter()
                .map(|x| x.abs().powf(-1.0 / (2.0 * r as f64)))
                .collect();
            let root: Vec<f64> = (0..d * d)
                .map(|ij| {
                    (0..d)
                        .map(|m| f[m] * v[ij / d * d + m] * v[ij % d * d + m])
                        .sum()
                })
                .collect();
            let mut out = vec![0.0; u.len()];
            for a in 0..pre {
                for j in 0..d {
                    for b in 0..post {
                        out[(a * d + j) * post + b] =
                            (0..d).map(|i| root[j * d + i] * at(&u, a, i, b)).sum();
                    }
                }
            }
            u = out;
        }
        for (x, u) in p.iter_mut().zip(&u) {
            *x -= lr * u;
        }
    }
}

#[test]
fn shampoo_matches_an_f64_transcription_on_larger_shapes() {
    // Shapes past the GEMM's 128-row blocks and the parallel roots (n >= 64),
    // a first and a last dimension of different sizes, and a middle one.
    use optimist_core::ExecOptions;
    for shape in [vec![150usize, 70], vec![3, 90, 5], vec![200]] {
        let n: usize = shape.iter().product();
        let mut s = 7u32;
        let mut next = move || {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((s >> 8) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0
        };
        let p0: Vec<f32> = (0..n).map(|_| next()).collect();
        let grads: Vec<Vec<f32>> = (0..3).map(|_| (0..n).map(|_| next()).collect()).collect();
        let mut want: Vec<f64> = p0.iter().map(|&x| x as f64).collect();
        shampoo_f64(&mut want, &shape, &grads, 0.01, 1e-6);
        let mut runs = Vec::new();
        for threads in [1usize, 2, 3] {
            let mut o = opt("shampoo", json!({"lr": 0.01}));
            o.set_exec_options(ExecOptions {
                threads,
                ..Default::default()
            })
            .unwrap();
            let mut p = Param::new("w", shape.clone(), p0.clone()).unwrap();
            for g in &grads {
                p.grad.copy_from_slice(g);
                o.step(&mut [p.view()]).unwrap();
            }
            runs.push(p.data);
        }
        assert!(
            runs.iter().all(|r| r == &runs[0]),
            "{shape:?}: thread counts differ"
        );
        // The f32 products and statistics against f64: relative to the
        // largest step taken.
        let step = want
            .iter()
            .zip(&p0)
            .map(|(w, &p)| (w - p as f64).abs())
            .fold(0.0, f64::max);
        let err = runs[0]
            .iter()
            .zip(&want)
            .map(|(&g, w)| (g as f64 - w).abs())
            .fold(0.0, f64::max);
        assert!(
            step > 0.0 && err <= 1e-3 * step,
            "{shape:?}: error {err:e}, largest step {step:e}"
        );
    }
}
