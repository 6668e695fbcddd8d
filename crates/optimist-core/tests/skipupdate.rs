//! Tests of the SkipUpdate wrapper: identity at mask_prob 1, mask
//! statistics, unbiasedness of the masked update, validation, state round
//! trips, replay and convergence.

use std::collections::HashMap;

use optimist_core::wrappers::{SkipUpdate, SkipUpdateConfig};
use optimist_core::problems::{minimize, MatrixLeastSquares, Quadratic};
use optimist_core::registry::build;
use optimist_core::replay::Case;
use optimist_core::rng::SplitMix64;
use optimist_core::{Optimizer, Param, ParamMut};
use serde_json::{json, Value};

fn opt(name: &str, hp: Value) -> Box<dyn Optimizer> {
    build(name, &hp).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn params(seed: u64) -> Vec<Param> {
    let mut r = SplitMix64::new(seed);
    let mut out = Vec::new();
    for (name, shape) in [
        ("a.weight", vec![4, 3]),
        ("a.bias", vec![3]),
        ("b", vec![5]),
    ] {
        let n: usize = shape.iter().product();
        let mut p = Param::new(name, shape, (0..n).map(|_| r.normal() as f32).collect()).unwrap();
        p.grad = vec![0.0; n];
        out.push(p);
    }
    out
}

/// Gradients that depend on the step only (not on the parameters), so the
/// wrapped optimizer's state follows the same path whatever the masks.
fn set_grads(ps: &mut [Param], k: usize) {
    for (pi, p) in ps.iter_mut().enumerate() {
        for (i, g) in p.grad.iter_mut().enumerate() {
            *g = ((i + 3 * pi + 5 * k) as f32 * 0.37).sin() * (1.0 + k as f32 * 0.1);
        }
    }
}

fn run(o: &mut dyn Optimizer, ps: &mut [Param], from: usize, to: usize) {
    for k in from..to {
        set_grads(ps, k);
        let mut views: Vec<ParamMut<'_>> = ps.iter_mut().map(Param::view).collect();
        o.step(&mut views).unwrap();
    }
}

#[test]
fn keeping_every_update_equals_the_inner_optimizer_exactly() {
    for inner in [
        json!({"optimizer": "adamw", "hparams": {"lr": 0.01, "weight_decay": 0.1}}),
        json!({"optimizer": "sgd", "hparams": {"lr": 0.1, "momentum": 0.9}}),
        json!({"optimizer": "muon", "hparams": {"lr": 0.02}}),
    ] {
        let mut s = opt(
            "skipupdate",
            json!({"mask_prob": 1.0, "inner": inner.clone()}),
        );
        let mut plain = opt(
            inner["optimizer"].as_str().unwrap(),
            inner["hparams"].clone(),
        );
        let (mut a, mut b) = (params(1), params(1));
        // muon takes matrices only
        if inner["optimizer"] == "muon" {
            a.truncate(1);
            b.truncate(1);
        }
        run(s.as_mut(), &mut a, 0, 10);
        run(plain.as_mut(), &mut b, 0, 10);
        assert_eq!(a, b, "{inner}");
        let mut want = plain.state_dict();
        want = {
            let mut d = optimist_core::state::StateDict::default();
            d.merge_prefixed("inner/", want);
            d
        };
        let got = s.state_dict();
        assert_eq!(got.tensors, want.tensors, "{inner}");
    }
}

#[test]
fn masks_are_bernoulli_per_tensor_and_independent() {
    // SGD without momentum and constant gradients: a tensor moved iff kept.
    let mut s = opt(
        "skipupdate",
        json!({"mask_prob": 0.3, "seed": 11, "inner": {"optimizer": "sgd", "hparams": {"lr": 0.1}}}),
    );
    let mut ps = params(2);
    for p in ps.iter_mut() {
        p.grad.iter_mut().for_each(|g| *g = 1.0);
    }
    let n = 4000;
    let mut kept = [0u32; 3];
    let mut both = 0u32;
    for _ in 0..n {
        let before: Vec<Vec<f32>> = ps.iter().map(|p| p.data.clone()).collect();
        let mut views: Vec<ParamMut<'_>> = ps.iter_mut().map(Param::view).collect();
        s.step(&mut views).unwrap();
        let moved: Vec<bool> = ps.iter().zip(&before).map(|(p, b)| p.data != *b).collect();
        for (k, &m) in kept.iter_mut().zip(&moved) {
            *k += m as u32;
        }
        both += (moved[0] && moved[1]) as u32;
        // a tensor moves as a whole or not at all
        for (p, b) in ps.iter().zip(&before) {
            let changed = p.data.iter().zip(b).filter(|(x, y)| x != y).count();
            assert!(changed == 0 || changed == p.data.len());
        }
    }
    // Standard deviation of a frequency over 4000 draws at p = 0.3: 0.0072.
    for k in kept {
        let f = k as f64 / n as f64;
        assert!((f - 0.3).abs() < 0.03, "kept fraction {f}");
    }
    let f = both as f64 / n as f64;
    assert!((f - 0.09).abs() < 0.02, "joint kept fraction {f}");
    // Kept SGD steps are rescaled by 1/p: each moves by lr * g / 0.3.
    let mut s = opt(
        "skipupdate",
        json!({"mask_prob": 0.25, "inner": {"optimizer": "sgd", "hparams": {"lr": 0.1}}}),
    );
    let mut x = Param::new("x", vec![1], vec![1.0]).unwrap();
    x.grad = vec![2.0];
    let mut su = SkipUpdate::from_json(&json!({"mask_prob": 0.25,
        "inner": {"optimizer": "sgd", "hparams": {"lr": 0.1}}}))
    .unwrap();
    su.set_masks(HashMap::from([("x".to_string(), true)]));
    su.step(&mut [x.view()]).unwrap();
    assert!(
        (x.data[0] - (1.0 - 4.0 * 0.2)).abs() < 1e-6,
        "{}",
        x.data[0]
    );
    su.set_masks(HashMap::from([("x".to_string(), false)]));
    let before = x.data[0];
    su.step(&mut [x.view()]).unwrap();
    assert_eq!(x.data[0], before);
    // the built optimizer steps too
    s.step(&mut [x.view()]).unwrap();
}

#[test]
fn masked_updates_are_unbiased() {
    // The gradients do not depend on the parameters, so the inner Adam
    // state follows one path and every run's total update is
    // sum_t (m_t / p) Delta_t; its mean over seeds must approach the dense
    // total sum_t Delta_t.
    let inner = json!({"optimizer": "adam", "hparams": {"lr": 0.01}});
    let steps = 5;
    let mut dense = params(3);
    run(
        opt("adam", json!({"lr": 0.01})).as_mut(),
        &mut dense,
        0,
        steps,
    );
    let start = params(3);
    let runs = 4000;
    let mut sum: Vec<Vec<f64>> = start.iter().map(|p| vec![0.0; p.data.len()]).collect();
    for seed in 0..runs {
        let mut s = opt(
            "skipupdate",
            json!({"mask_prob": 0.5, "seed": seed, "inner": inner.clone()}),
        );
        let mut ps = params(3);
        run(s.as_mut(), &mut ps, 0, steps);
        for (acc, (p, p0)) in sum.iter_mut().zip(ps.iter().zip(&start)) {
            for (a, (&x, &x0)) in acc.iter_mut().zip(p.data.iter().zip(&p0.data)) {
                *a += (x - x0) as f64;
            }
        }
    }
    for (acc, (d, p0)) in sum.iter().zip(dense.iter().zip(&start)) {
        for (a, (&x, &x0)) in acc.iter().zip(d.data.iter().zip(&p0.data)) {
            let want = (x - x0) as f64;
            let mean = a / runs as f64;
            // Each run's update per step is 0 or 2 Delta_t (sd |Delta_t|,
            // about lr for Adam), independent across steps, so the mean of
            // the runs has sd about lr sqrt(steps / runs); allow 6 sd.
            // Without the 1/p rescale the mean would be half the dense one.
            let sd = 0.01 * (steps as f64 / runs as f64).sqrt();
            assert!(
                (mean - want).abs() < 6.0 * sd + 1e-6,
                "mean update {mean}, dense {want}"
            );
        }
    }
}

#[test]
fn invalid_configurations_are_errors_naming_the_field() {
    for (hp, field) in [
        (json!({"mask_prob": 0.0}), "mask_prob"),
        (json!({"mask_prob": -0.1}), "mask_prob"),
        (json!({"mask_prob": 1.5}), "mask_prob"),
        (json!({"mask_prob": f64::NAN}), "mask_prob"),
        (json!({"tau": 2.0}), "tau"),
        (
            json!({"inner": {"optimizer": "adam", "hparams": {"lr": -1.0}}}),
            "lr",
        ),
        (json!({"inner": {"optimizer": "skipupdate"}}), "skipupdate"),
        (json!({"inner": {"optimizer": "adamz"}}), "adamz"),
    ] {
        match build("skipupdate", &hp) {
            Ok(_) => panic!("{hp}: accepted"),
            Err(e) => assert!(e.to_string().contains(field), "{hp}: {e}"),
        }
    }
    assert!(SkipUpdate::new(
        SkipUpdateConfig {
            mask_prob: 0.0,
            ..Default::default()
        },
        opt("sgd", json!({}))
    )
    .is_err());
    let mut s = opt("skipupdate", json!({}));
    assert_eq!(s.config()["inner"]["optimizer"], "adamw");
    assert_eq!(s.hparam("mask_prob"), Some(0.5));
    assert!(s.set_hparam("mask_prob", 0.0).is_err());
    assert_eq!(s.hparam("mask_prob"), Some(0.5));
    s.set_lr(0.05).unwrap();
    assert_eq!(s.config()["inner"]["hparams"]["lr"], 0.05);
    let cfg = s.config();
    s.set_config(cfg.clone()).unwrap();
    assert_eq!(s.config(), cfg);
}

#[test]
fn deterministic_and_resumable_from_a_state_dict() {
    let hp = json!({"seed": 9, "exclude": ["*.bias"],
        "inner": {"optimizer": "adam", "hparams": {"lr": 0.01}}});
    let (mut a, mut b) = (params(4), params(4));
    run(opt("skipupdate", hp.clone()).as_mut(), &mut a, 0, 12);
    run(opt("skipupdate", hp.clone()).as_mut(), &mut b, 0, 12);
    assert_eq!(a, b);
    // the excluded bias follows Adam exactly
    let mut plain = params(4);
    run(opt("adam", json!({"lr": 0.01})).as_mut(), &mut plain, 0, 12);
    assert_eq!(a[1], plain[1]);
    assert_ne!(a[0], plain[0]);

    let mut c = params(4);
    let mut oc = opt("skipupdate", hp.clone());
    run(oc.as_mut(), &mut c, 0, 5);
    let sd = oc.state_dict();
    assert_eq!(sd.scalars["step"], 5.0);
    let mut od = opt("skipupdate", hp.clone());
    od.load_state_dict(&sd).unwrap();
    assert_eq!(od.state_dict(), sd);
    run(od.as_mut(), &mut c, 5, 12);
    assert_eq!(a, c, "resumed run differs");
    for (key, bad) in [
        ("rng_hi", 0.5),
        ("rng_lo", -1.0),
        ("step", f64::NAN),
        ("nonsense", 1.0),
    ] {
        let mut d = sd.clone();
        d.scalars.insert(key.into(), bad);
        let before = od.state_dict();
        assert!(od.load_state_dict(&d).is_err(), "{key}");
        assert_eq!(od.state_dict(), before);
    }
    let mut d = sd.clone();
    d.scalars.remove("rng_lo");
    assert!(od.load_state_dict(&d).is_err());
}

#[test]
fn replay_runs_skipupdate() {
    let case = json!({
        "optimizer": "skipupdate",
        "hparams": {"mask_prob": 1.0, "inner": {"optimizer": "adam", "hparams": {"lr": 0.1}}},
        "params": [{"name": "w", "shape": [2], "data": [1.0, -1.0]}],
        "grads": [[[3.0, 4.0]], [[0.3, -0.4]]]
    });
    let traj = Case::parse(&case.to_string()).unwrap().run().unwrap();
    let mut adam = opt("adam", json!({"lr": 0.1}));
    let mut w = Param::new("w", vec![2], vec![1.0, -1.0]).unwrap();
    for (t, g) in [[3.0, 4.0], [0.3, -0.4]].iter().enumerate() {
        w.grad = g.to_vec();
        adam.step(&mut [w.view()]).unwrap();
        assert_eq!(traj[t][0], w.data);
    }
}

#[test]
fn converges_on_the_quadratic_and_matrix_least_squares() {
    let q = Quadratic::default();
    let mut s = opt(
        "skipupdate",
        json!({"inner": {"optimizer": "adam", "hparams": {"lr": 0.05}}}),
    );
    let losses = minimize(&q, s.as_mut(), 3000).unwrap();
    let last = *losses.last().unwrap();
    assert!(last < 1e-4, "quadratic loss {last} after 3000 steps");

    let m = MatrixLeastSquares::default();
    let mut s = opt(
        "skipupdate",
        json!({"inner": {"optimizer": "muon", "hparams": {"lr": 0.02}}}),
    );
    let losses = minimize(&m, s.as_mut(), 1000).unwrap();
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(last < 1e-2 * first, "least squares loss {first} -> {last}");
}
