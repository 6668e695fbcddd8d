//! Wrappers around every registry optimizer: gradient accumulation equals
//! one big-batch step, non-finite steps are skipped without a trace,
//! schedules drive any hyperparameter, weight averages match timm / torch
//! and swap in and out for evaluation, schedule-free's eval point matches
//! the reference.

mod common;

use std::path::{Path, PathBuf};

use common::{build_default, Net};
use optimist_core::registry::{build, registry};
use optimist_core::replay::Case;
use optimist_core::schedule::ScheduleSpec;
use optimist_core::wrappers::{
    AccumulateIn, Ema, EmaConfig, GradAccumulation, Scheduled, SkipNonFinite, Swa, SwaConfig,
};
use optimist_core::{Error, Mode, Optimizer, ParamMut};
use serde_json::{json, Value};

fn golden(dir: &str) -> Vec<(String, Value)> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            (
                f.file_stem().unwrap().to_string_lossy().into_owned(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect()
}

fn close(got: &[f32], expected: &Value, tol: &Value, what: &str) {
    let atol = tol["atol"].as_f64().unwrap();
    let rtol = tol["rtol"].as_f64().unwrap();
    let exp: Vec<f64> = serde_json::from_value(expected.clone()).unwrap();
    assert_eq!(got.len(), exp.len(), "{what}: length");
    for (j, (&g, &e)) in got.iter().zip(&exp).enumerate() {
        let err = (g as f64 - e).abs();
        assert!(
            err <= atol + rtol * e.abs(),
            "{what}[{j}]: got {g}, expected {e}"
        );
    }
}

/// Micro-batch gradients of step `t`: the step's gradient plus a
/// different perturbation per micro-batch.
fn micro_grads(net: &mut Net, seed: u64, t: u64, i: u64) {
    net.set_grads(seed, t);
    for (pi, g) in net.grads.iter_mut().enumerate() {
        for (j, x) in g.iter_mut().enumerate() {
            *x += 0.5 * common::noise((t * 31 + i) * 977 + pi as u64 * 101 + j as u64);
        }
    }
}

#[test]
fn accumulation_equals_one_step_on_the_mean_gradient_for_every_optimizer() {
    let k = 3u64;
    for spec in registry() {
        for mode in [AccumulateIn::Buffer, AccumulateIn::Grad] {
            // Reference: the inner optimizer stepped on (g1 + g2 + g3) / 3.
            let mut reference = build_default(spec);
            let mut a = Net::new(1);
            // Accumulated: three calls per step.
            let mut acc = GradAccumulation::new(build_default(spec), k, mode).unwrap();
            let mut b = Net::new(1);
            for t in 0..4 {
                let mut sum: Vec<Vec<f32>> = a.grads.iter().map(|g| vec![0.0; g.len()]).collect();
                for i in 0..k {
                    micro_grads(&mut a, 5, t, i);
                    for (s, g) in sum.iter_mut().zip(&a.grads) {
                        for (s, &g) in s.iter_mut().zip(g) {
                            *s += g;
                        }
                    }
                    let before = b.bits();
                    match mode {
                        AccumulateIn::Buffer => micro_grads(&mut b, 5, t, i),
                        AccumulateIn::Grad => {
                            // The caller adds into its gradient storage.
                            let mut fresh = b.clone();
                            micro_grads(&mut fresh, 5, t, i);
                            for (g, f) in b.grads.iter_mut().zip(&fresh.grads) {
                                for (g, &f) in g.iter_mut().zip(f) {
                                    *g += f;
                                }
                            }
                            b.hess = fresh.hess.clone();
                        }
                    }
                    let mut v = b.views();
                    acc.step(&mut v).unwrap();
                    if i + 1 < k {
                        assert_eq!(
                            b.bits(),
                            before,
                            "{}: parameters moved before the k-th call",
                            spec.name
                        );
                        assert_eq!(acc.pending(), i + 1);
                    }
                }
                for (g, s) in a.grads.iter_mut().zip(&sum) {
                    for (g, &s) in g.iter_mut().zip(s) {
                        *g = s / k as f32;
                    }
                }
                let mut v = a.views();
                reference.step(&mut v).unwrap();
                assert_eq!(
                    a.bits(),
                    b.bits(),
                    "{} ({mode:?}): step {t} differs from the big-batch step",
                    spec.name
                );
                if mode == AccumulateIn::Grad {
                    assert!(
                        b.grads.iter().flatten().all(|&g| g == 0.0),
                        "grads not zeroed"
                    );
                }
            }
        }
    }
}

#[test]
fn accumulation_matches_a_big_batch_least_squares_gradient() {
    // Loss over a batch: mean of 0.5 (w . x_j - y_j)^2; 4 micro-batches of 8
    // examples each equal one batch of 32 up to f32 rounding.
    let (dim, per, k) = (5usize, 8usize, 4usize);
    let xs: Vec<Vec<f32>> = (0..per * k)
        .map(|j| {
            (0..dim)
                .map(|d| common::noise((j * dim + d) as u64))
                .collect()
        })
        .collect();
    let ys: Vec<f32> = (0..per * k)
        .map(|j| common::noise(10_000 + j as u64))
        .collect();
    let grad = |w: &[f32], idx: std::ops::Range<usize>| -> Vec<f32> {
        let n = idx.len() as f32;
        let mut g = vec![0.0f32; dim];
        for j in idx {
            let r: f32 = w.iter().zip(&xs[j]).map(|(a, b)| a * b).sum::<f32>() - ys[j];
            for d in 0..dim {
                g[d] += r * xs[j][d] / n;
            }
        }
        g
    };
    let mut big = build("adam", &json!({"lr": 0.05})).unwrap();
    let mut acc = GradAccumulation::new(
        build("adam", &json!({"lr": 0.05})).unwrap(),
        k as u64,
        AccumulateIn::Buffer,
    )
    .unwrap();
    let mut wa = vec![0.0f32; dim];
    let mut wb = vec![0.0f32; dim];
    let shape = [dim];
    for _ in 0..50 {
        let mut g = grad(&wa, 0..per * k);
        big.step(&mut [ParamMut {
            name: "w",
            shape: &shape,
            value: &mut wa,
            grad: &mut g,
            hessian: None,
        }])
        .unwrap();
        let w0 = wb.clone();
        for i in 0..k {
            let mut g = grad(&w0, i * per..(i + 1) * per);
            acc.step(&mut [ParamMut {
                name: "w",
                shape: &shape,
                value: &mut wb,
                grad: &mut g,
                hessian: None,
            }])
            .unwrap();
        }
    }
    for (a, b) in wa.iter().zip(&wb) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{wa:?} vs {wb:?}");
    }
}

#[test]
fn accumulation_refuses_a_changed_parameter_set() {
    let mut acc =
        GradAccumulation::new(build("sgd", &json!({})).unwrap(), 2, AccumulateIn::Buffer).unwrap();
    let mut net = Net::new(2);
    net.set_grads(1, 0);
    acc.step(&mut net.views()).unwrap();
    let mut v = net.views();
    v.pop();
    let e = acc.step(&mut v).unwrap_err();
    assert!(e.to_string().contains("micro-batch 2 of 2"), "{e}");
    assert_eq!(acc.pending(), 1);
    assert!(
        GradAccumulation::new(build("sgd", &json!({})).unwrap(), 0, AccumulateIn::Buffer).is_err()
    );
}

#[test]
fn non_finite_steps_are_skipped_for_every_optimizer() {
    for spec in registry() {
        let mut plain = build_default(spec);
        let mut a = Net::new(3);
        let mut skip = SkipNonFinite::new(build_default(spec), 2);
        let mut b = Net::new(3);
        for t in 0..6u64 {
            // Steps 2 and 4 get a NaN / an infinity in one value.
            if t == 2 || t == 4 {
                b.set_grads(9, t);
                b.grads[t as usize % 2][1] = if t == 2 { f32::NAN } else { f32::NEG_INFINITY };
                let before = (b.bits(), skip.state_dict());
                skip.step(&mut b.views()).unwrap();
                assert_eq!(
                    (b.bits(), optimist_core::wrappers::Wrapper::inner(&skip).state_dict()),
                    (before.0, before.1.strip_prefix("inner/")),
                    "{}: a non-finite step changed something",
                    spec.name
                );
                assert!(!skip.last_finite());
                continue;
            }
            a.run(plain.as_mut(), 9, t, t + 1);
            b.run(&mut skip, 9, t, t + 1);
            assert!(skip.last_finite());
            assert_eq!(a.bits(), b.bits(), "{}: step {t}", spec.name);
        }
        assert_eq!(skip.total_notfinite(), 2);
        assert_eq!(skip.notfinite_count(), 0);
        // Three in a row with max_consecutive_errors = 2: the third is an error.
        for i in 0..3 {
            b.set_grads(9, 100 + i);
            b.grads[0][0] = f32::INFINITY;
            let before = b.bits();
            let r = skip.step(&mut b.views());
            assert_eq!(b.bits(), before);
            if i < 2 {
                r.unwrap();
            } else {
                let e = r.unwrap_err();
                assert!(matches!(e, Error::NonFinite(_)), "{e}");
                assert!(
                    e.to_string().contains("layer.weight")
                        && e.to_string().contains("max_consecutive_errors = 2"),
                    "{e}"
                );
            }
        }
        assert_eq!(skip.notfinite_count(), 3);
        assert_eq!(skip.total_notfinite(), 5);
    }
}

#[test]
fn schedules_drive_any_hyperparameter() {
    // Scheduled(adam) with lr on WSD and beta1 on the one-cycle momentum
    // equals setting both by hand before every step.
    let lr_spec = ScheduleSpec::from_json(&json!({"name": "wsd", "warmup_steps": 2,
        "stable_steps": 3, "decay_steps": 4, "cooldown_type": "1-sqrt"}))
    .unwrap();
    let b1_spec =
        ScheduleSpec::from_json(&json!({"name": "one_cycle_momentum", "total_steps": 10})).unwrap();
    let wd_spec = ScheduleSpec::from_json(
        &json!({"name": "linear", "end_value": 0.0, "transition_steps": 6}),
    )
    .unwrap();
    let mut sched =
        Scheduled::new(build("adamw", &json!({"lr": 0.01, "weight_decay": 0.1})).unwrap())
            .with("lr", lr_spec.clone())
            .unwrap()
            .with("beta1", b1_spec.clone())
            .unwrap()
            .with("weight_decay", wd_spec.clone())
            .unwrap();
    let config = sched.config();
    let mut manual = build("adamw", &json!({"lr": 0.01, "weight_decay": 0.1})).unwrap();
    let (l, m, w) = (lr_spec.build(0.01), b1_spec.build(0.9), wd_spec.build(0.1));
    let mut a = Net::new(4);
    let mut b = Net::new(4);
    for t in 0..12 {
        manual.set_lr(l.value(t)).unwrap();
        manual.set_hparam("beta1", m.value(t)).unwrap();
        manual.set_hparam("weight_decay", w.value(t)).unwrap();
        a.run(manual.as_mut(), 2, t, t + 1);
        b.run(&mut sched, 2, t, t + 1);
        assert_eq!(a.bits(), b.bits(), "step {t}");
        assert_eq!(sched.hparam("lr"), Some(l.value(t)));
        // The configuration reports the base values at every step.
        assert_eq!(sched.config(), config);
    }
    assert_eq!(sched.steps(), 12);
    assert!(Scheduled::new(build("sgd", &json!({})).unwrap())
        .with("beta1", b1_spec)
        .is_err());
    // A schedule that leaves the valid range is an error naming it.
    let mut bad = Scheduled::new(build("sgd", &json!({"lr": 0.1})).unwrap())
        .with(
            "lr",
            ScheduleSpec::from_json(
                &json!({"name": "linear", "end_value": -1.0, "transition_steps": 2}),
            )
            .unwrap(),
        )
        .unwrap();
    let mut n = Net::new(1);
    n.set_grads(0, 0);
    bad.step(&mut n.views()).unwrap(); // lr 0.1
    let before = n.bits();
    let e = bad.step(&mut n.views()).unwrap_err(); // lr -0.45
    assert_eq!(n.bits(), before);
    assert!(
        e.to_string().contains("linear") && e.to_string().contains("lr"),
        "{e}"
    );
    // The configuration rebuilds the same wrapper.
    let rebuilt = optimist_core::registry::build_spec(&json!({"optimizer": "adamw", "hparams": config})).unwrap();
    assert_eq!(rebuilt.config(), config);
}

/// Step views of a replay case's parameters and gradients.
fn views<'a>(
    names: &'a [String],
    shapes: &'a [Vec<usize>],
    values: &'a mut [Vec<f32>],
    grads: &'a mut [Vec<f32>],
) -> Vec<ParamMut<'a>> {
    values
        .iter_mut()
        .zip(grads.iter_mut())
        .zip(names.iter().zip(shapes))
        .map(|((v, g), (n, s))| ParamMut {
            name: n,
            shape: s,
            value: v,
            grad: g,
            hessian: None,
        })
        .collect()
}

fn params_of(case: &Value) -> (Vec<String>, Vec<Vec<usize>>, Vec<Vec<f32>>) {
    let ps = case["params"].as_array().unwrap();
    (
        ps.iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect(),
        ps.iter()
            .map(|p| serde_json::from_value(p["shape"].clone()).unwrap())
            .collect(),
        ps.iter()
            .map(|p| serde_json::from_value(p["data"].clone()).unwrap())
            .collect(),
    )
}

#[test]
fn essentials_cases_and_schedule_free_eval_points() {
    let cases = golden("essentials");
    assert!(cases.len() >= 10);
    let mut with_eval = 0;
    for (id, raw) in &cases {
        let text = serde_json::to_string(raw).unwrap();
        let case = Case::parse(&text).unwrap();
        let got = case.run().unwrap_or_else(|e| panic!("{id}: {e}"));
        for (t, step) in got.iter().enumerate() {
            for (i, p) in step.iter().enumerate() {
                close(
                    p,
                    &raw["expected"][t][i],
                    &raw["tolerance"],
                    &format!("{id} step {} param {i}", t + 1),
                );
            }
        }
        let Some(ev) = raw.get("expected_eval") else {
            continue;
        };
        with_eval += 1;
        // Replay again by hand, then switch to eval.
        let (names, shapes, mut values) = params_of(raw);
        let mut opt = case.optimizer().unwrap();
        let sched = match &raw["lr_schedule"] {
            Value::Null => None,
            v => Some(ScheduleSpec::from_json(v).unwrap().build(opt.lr().unwrap())),
        };
        let grads: Vec<Vec<Vec<f32>>> = serde_json::from_value(raw["grads"].clone()).unwrap();
        let make = |values: &mut Vec<Vec<f32>>,
                    grads: &mut Vec<Vec<f32>>,
                    f: &mut dyn FnMut(&mut [ParamMut<'_>])| {
            let mut v = views(&names, &shapes, values, grads);
            f(&mut v);
        };
        for (t, g) in grads.iter().enumerate() {
            if let Some(s) = &sched {
                opt.set_lr(s.value(t as u64)).unwrap();
            }
            let mut g = g.clone();
            make(&mut values, &mut g, &mut |v| opt.step(v).unwrap());
        }
        let train_values = values.clone();
        let mut g0: Vec<Vec<f32>> = values.iter().map(|v| vec![0.0; v.len()]).collect();
        make(&mut values, &mut g0, &mut |v| {
            opt.set_mode(Mode::Eval, v).unwrap()
        });
        for (i, p) in values.iter().enumerate() {
            close(
                p,
                &ev[i],
                &raw["tolerance"],
                &format!("{id} eval param {i}"),
            );
        }
        // Eval again is a no-op; stepping in eval mode is an error.
        let snapshot = values.clone();
        make(&mut values, &mut g0, &mut |v| {
            opt.set_mode(Mode::Eval, v).unwrap()
        });
        assert_eq!(values, snapshot);
        make(&mut values, &mut g0, &mut |v| assert!(opt.step(v).is_err()));
        assert_eq!(values, snapshot);
        // Back to train: y again (to f32 rounding of the two lerps).
        make(&mut values, &mut g0, &mut |v| {
            opt.set_mode(Mode::Train, v).unwrap()
        });
        for (a, b) in values.iter().flatten().zip(train_values.iter().flatten()) {
            assert!(
                (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                "{id}: train point {a} vs {b}"
            );
        }
    }
    assert!(with_eval >= 4, "only {with_eval} schedule-free cases");
}

#[test]
fn weight_averages_match_timm_and_torch() {
    let files = golden("averaging");
    assert!(files.len() >= 4);
    for (id, raw) in &files {
        let inner = build(raw["optimizer"].as_str().unwrap(), &raw["hparams"]).unwrap();
        let kind = raw["kind"].as_str().unwrap();
        let mut opt: Box<dyn Optimizer> = match kind {
            "ema" => Box::new(
                Ema::new(
                    inner,
                    serde_json::from_value::<EmaConfig>(raw["config"].clone()).unwrap(),
                )
                .unwrap(),
            ),
            _ => Box::new(
                Swa::new(
                    inner,
                    serde_json::from_value::<SwaConfig>(raw["config"].clone()).unwrap(),
                )
                .unwrap(),
            ),
        };
        let (names, shapes, mut values) = params_of(raw);
        let grads: Vec<Vec<Vec<f32>>> = serde_json::from_value(raw["grads"].clone()).unwrap();
        let tol = &raw["tolerance"];
        for (t, g) in grads.iter().enumerate() {
            let mut g = g.clone();
            let mut v = views(&names, &shapes, &mut values, &mut g);
            opt.step(&mut v).unwrap();
            for (i, p) in values.iter().enumerate() {
                close(
                    p,
                    &raw["expected_params"][t][i],
                    tol,
                    &format!("{id} params step {}", t + 1),
                );
            }
            // Averages, read without touching the parameters.
            let exp = &raw["expected"][t];
            for (i, n) in names.iter().enumerate() {
                let avg = match kind {
                    "ema" => state_average(opt.as_ref(), "ema", n),
                    _ => state_average(opt.as_ref(), "swa", n),
                };
                match (avg, exp.is_null()) {
                    (None, true) => {}
                    (Some(a), false) => {
                        close(&a, &exp[i], tol, &format!("{id} average step {}", t + 1))
                    }
                    (a, _) => panic!("{id} step {}: average {a:?}, expected {}", t + 1, exp),
                }
            }
        }
        // Eval swaps the averages in; train swaps the training values back exactly.
        let train = values.clone();
        let last = raw["expected"].as_array().unwrap().last().unwrap().clone();
        let mut g0: Vec<Vec<f32>> = values.iter().map(|v| vec![0.0; v.len()]).collect();
        let mut set_mode = |values: &mut Vec<Vec<f32>>, g0: &mut Vec<Vec<f32>>, mode| {
            opt.set_mode(mode, &mut views(&names, &shapes, values, g0))
        };
        set_mode(&mut values, &mut g0, Mode::Eval).unwrap();
        for (i, p) in values.iter().enumerate() {
            close(p, &last[i], tol, &format!("{id} eval params"));
        }
        set_mode(&mut values, &mut g0, Mode::Train).unwrap();
        assert_eq!(values, train, "{id}: train values not restored bit for bit");
    }
}

/// The average of `name` as stored in the wrapper's state (train mode).
fn state_average(opt: &dyn Optimizer, prefix: &str, name: &str) -> Option<Vec<f32>> {
    let want = format!("{prefix}/{name}");
    opt.state_dict()
        .tensors
        .into_iter()
        .find(|e| e.param == want && e.name == "average")
        .map(|e| e.values)
}

#[test]
fn ema_accessors_and_eval_mode_rules() {
    let mut ema = Ema::new(
        build("sgd", &json!({"lr": 0.1})).unwrap(),
        EmaConfig {
            decay: 0.5,
            ..Default::default()
        },
    )
    .unwrap();
    let mut net = Net::new(6);
    assert!(ema.average("layer.weight").is_none());
    net.run(&mut ema, 1, 0, 3);
    assert_eq!(ema.updates(), 3);
    let avg = ema.average("layer.weight").unwrap().to_vec();
    assert_ne!(avg, net.values[0]);
    ema.set_mode(Mode::Eval, &mut net.views()).unwrap();
    assert_eq!(net.values[0], avg);
    assert!(ema.average("layer.weight").is_none());
    let e = ema.step(&mut net.views()).unwrap_err();
    assert!(e.to_string().contains("eval mode"), "{e}");
    ema.set_mode(Mode::Train, &mut net.views()).unwrap();
    assert_eq!(ema.average("layer.weight").unwrap(), avg.as_slice());
    assert!(Ema::new(
        build("sgd", &json!({})).unwrap(),
        EmaConfig {
            decay: 1.5,
            ..Default::default()
        }
    )
    .is_err());
    assert!(Swa::new(
        build("sgd", &json!({})).unwrap(),
        SwaConfig {
            swa_freq: 0,
            ..Default::default()
        }
    )
    .is_err());
    // Decay warmup as timm: 0 at the first update, then 1 - (1 + s)^(-2/3).
    let c = EmaConfig {
        use_warmup: true,
        ..Default::default()
    };
    assert_eq!(c.decay_at(1), 0.0);
    assert!((c.decay_at(2) - (1.0 - 2f64.powf(-2.0 / 3.0))).abs() < 1e-15);
}

#[test]
fn wrappers_nest_and_rebuild_from_their_configuration() {
    let sf = build("adamw_schedulefree", &json!({"lr": 0.01})).unwrap();
    let inner = Scheduled::new(sf)
        .with(
            "lr",
            ScheduleSpec::from_json(&json!({"name": "cosine", "decay_steps": 20})).unwrap(),
        )
        .unwrap();
    let acc = GradAccumulation::new(Box::new(inner), 2, AccumulateIn::Buffer).unwrap();
    let skip = SkipNonFinite::new(Box::new(acc), 3);
    let ema = Ema::new(
        Box::new(skip),
        EmaConfig {
            decay: 0.9,
            ..Default::default()
        },
    )
    .unwrap();
    let cfg = ema.config();
    let mut rebuilt =
        optimist_core::registry::build_spec(&json!({"optimizer": "adamw_schedulefree", "hparams": cfg})).unwrap();
    assert_eq!(rebuilt.config(), cfg);
    let mut original: Box<dyn Optimizer> = Box::new(ema);
    let mut a = Net::new(8);
    let mut b = Net::new(8);
    a.run(original.as_mut(), 3, 0, 8);
    b.run(rebuilt.as_mut(), 3, 0, 8);
    assert_eq!(a.bits(), b.bits());
    // Eval reaches schedule-free's x, then the EMA; train undoes both.
    original.set_mode(Mode::Eval, &mut a.views()).unwrap();
    assert_ne!(a.bits(), b.bits());
    assert!(optimist_core::registry::build_spec(
        &json!({"optimizer": "sgd", "hparams": {"wrapper": "nope", "inner": {"optimizer": "sgd"}}})
    )
    .is_err());
    assert!(optimist_core::registry::build_spec(&json!({"optimizer": "sgd", "hparams": {"wrapper": "ema", "decay": 2.0, "inner": {"optimizer": "sgd"}}})).is_err());
}
