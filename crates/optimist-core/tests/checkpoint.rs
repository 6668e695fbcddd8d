//! Checkpoints: bit-exact resume for every registry optimizer and for the
//! wrappers (in this process and in a new one), refusal of mismatches
//! without loading half a state, and atomic writes that survive a process
//! killed in the middle of a save.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{build_default, Net};
use optimist_core::checkpoint::{self, Checkpoint, ConfigCheck, LoadOptions};
use optimist_core::clip::ClipGradNorm;
use optimist_core::groups::{ParamGroups, Selector};
use optimist_core::registry::{build, registry};
use optimist_core::schedule::ScheduleSpec;
use optimist_core::transform::Chain;
use optimist_core::wrappers::{
    AccumulateIn, Ema, EmaConfig, GradAccumulation, Scheduled, SkipNonFinite, Swa, SwaConfig,
};
use optimist_core::{Error, Mode, Optimizer};
use serde_json::json;

const N: u64 = 12;
const K: u64 = 7;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "optimist-ckpt-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Gradient stream with a NaN at step 3 (only for optimizers that skip it).
fn run_stream(net: &mut Net, opt: &mut dyn Optimizer, from: u64, to: u64, with_nan: bool) {
    for t in from..to {
        net.set_grads(11, t);
        if with_nan && t == 3 {
            net.grads[1][2] = f32::NAN;
        }
        opt.step(&mut net.views())
            .unwrap_or_else(|e| panic!("{} step {t}: {e}", opt.name()));
    }
}

/// N steps in one go == K steps, save, a fresh optimizer and fresh
/// parameters, load, N - K steps; parameters and state bit for bit.
fn check_resume(label: &str, make: &dyn Fn() -> Box<dyn Optimizer>, nan: bool, eval_at_save: bool) {
    let dir = temp_dir("resume");
    let path = dir.join(format!("{}.safetensors", label.replace('/', "_")));
    let mut full = make();
    let mut a = Net::new(1);
    run_stream(&mut a, full.as_mut(), 0, K, nan);
    if eval_at_save {
        full.set_mode(Mode::Eval, &mut a.views()).unwrap();
        full.set_mode(Mode::Train, &mut a.views()).unwrap();
    }
    run_stream(&mut a, full.as_mut(), K, N, nan);

    let mut first = make();
    let mut b = Net::new(1);
    run_stream(&mut b, first.as_mut(), 0, K, nan);
    if eval_at_save {
        first.set_mode(Mode::Eval, &mut b.views()).unwrap();
    }
    checkpoint::save(&path, first.as_ref(), &b.refs()).unwrap();
    drop(first);

    let mut second = make();
    let mut c = Net::new(2); // different values: the checkpoint restores them
    checkpoint::load(&path, second.as_mut(), &mut c.views())
        .unwrap_or_else(|e| panic!("{label}: load: {e}"));
    if eval_at_save {
        second.set_mode(Mode::Train, &mut c.views()).unwrap();
    }
    run_stream(&mut c, second.as_mut(), K, N, nan);
    assert_eq!(a.bits(), c.bits(), "{label}: resumed parameters differ");
    let (sa, sc) = (full.state_dict(), second.state_dict());
    assert_eq!(sa.scalars.len(), sc.scalars.len(), "{label}");
    for (k, v) in &sa.scalars {
        assert_eq!(v.to_bits(), sc.scalars[k].to_bits(), "{label}: scalar {k}");
    }
    assert_eq!(
        common::state_bits(full.as_ref()),
        common::state_bits(second.as_ref()),
        "{label}: resumed state differs"
    );
    assert_eq!(full.config(), second.config(), "{label}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resume_is_bit_exact_for_every_registry_optimizer() {
    for spec in registry() {
        check_resume(spec.name, &|| build_default(spec), false, false);
    }
}

/// (label, constructor, NaN step included, save in eval mode).
type Maker = (
    &'static str,
    Box<dyn Fn() -> Box<dyn Optimizer>>,
    bool,
    bool,
);

/// EMA (decay 0.9) of AdamW with its defaults.
fn ema_adamw(use_warmup: bool) -> Box<dyn Optimizer> {
    let cfg = EmaConfig {
        decay: 0.9,
        use_warmup,
        ..Default::default()
    };
    Box::new(Ema::new(build("adamw", &json!({})).unwrap(), cfg).unwrap())
}

fn wrapper_makers() -> Vec<Maker> {
    let wsd = ScheduleSpec::from_json(&json!({"name": "wsd", "warmup_steps": 3, "stable_steps": 3,
        "decay_steps": 4, "cooldown_type": "cosine", "min_lr_ratio": 0.1}))
    .unwrap();
    let mom =
        ScheduleSpec::from_json(&json!({"name": "one_cycle_momentum", "total_steps": 12})).unwrap();
    vec![
        (
            "scheduled(adamw)",
            Box::new(move || {
                Box::new(
                    Scheduled::new(build("adamw", &json!({"lr": 0.01})).unwrap())
                        .with("lr", wsd.clone())
                        .unwrap()
                        .with("beta1", mom.clone())
                        .unwrap(),
                ) as Box<dyn Optimizer>
            }),
            false,
            false,
        ),
        (
            "skip_nonfinite(sgd)",
            Box::new(|| {
                Box::new(SkipNonFinite::new(
                    build("sgd", &json!({"lr": 0.1, "momentum": 0.9})).unwrap(),
                    2,
                )) as Box<dyn Optimizer>
            }),
            true,
            false,
        ),
        (
            "grad_accumulation(adam) mid-cycle",
            Box::new(|| {
                Box::new(
                    GradAccumulation::new(
                        build("adam", &json!({"lr": 0.01})).unwrap(),
                        3,
                        AccumulateIn::Buffer,
                    )
                    .unwrap(),
                ) as Box<dyn Optimizer>
            }),
            false,
            false,
        ),
        ("ema(adamw)", Box::new(|| ema_adamw(true)), false, false),
        (
            "ema(adamw) saved in eval mode",
            Box::new(|| ema_adamw(false)),
            false,
            true,
        ),
        (
            "swa(sgd)",
            Box::new(|| {
                Box::new(
                    Swa::new(
                        build("sgd", &json!({"lr": 0.05})).unwrap(),
                        SwaConfig {
                            swa_start: 2,
                            swa_freq: 2,
                        },
                    )
                    .unwrap(),
                ) as Box<dyn Optimizer>
            }),
            false,
            false,
        ),
        (
            "adamw_schedulefree saved in eval mode",
            Box::new(|| {
                build(
                    "adamw_schedulefree",
                    &json!({"lr": 0.01, "warmup_steps": 3}),
                )
                .unwrap()
            }),
            false,
            true,
        ),
        (
            "param_groups + chain(clip)",
            Box::new(|| {
                Box::new(
                    ParamGroups::new()
                        .group(
                            "head",
                            Selector::names(["head.*"]),
                            build("sgd_schedulefree", &json!({"lr": 0.1})).unwrap(),
                        )
                        .group(
                            "rest",
                            Selector::All,
                            Box::new(
                                Chain::new(build("adam", &json!({})).unwrap())
                                    .with(ClipGradNorm::new(0.5, 2.0).unwrap()),
                            ),
                        ),
                ) as Box<dyn Optimizer>
            }),
            false,
            true,
        ),
        (
            "all wrappers nested",
            Box::new(|| {
                let s = Scheduled::new(build("adamw", &json!({"lr": 0.01})).unwrap())
                    .with(
                        "lr",
                        ScheduleSpec::from_json(&json!({"name": "cosine", "decay_steps": 12}))
                            .unwrap(),
                    )
                    .unwrap();
                let a = GradAccumulation::new(Box::new(s), 2, AccumulateIn::Buffer).unwrap();
                let k = SkipNonFinite::new(Box::new(a), 1);
                Box::new(
                    Ema::new(
                        Box::new(k),
                        EmaConfig {
                            decay: 0.8,
                            ..Default::default()
                        },
                    )
                    .unwrap(),
                ) as Box<dyn Optimizer>
            }),
            true,
            false,
        ),
    ]
}

#[test]
fn resume_is_bit_exact_for_the_wrappers() {
    for (label, make, nan, eval) in wrapper_makers() {
        check_resume(label, make.as_ref(), nan, eval);
    }
}

const CHILD_ENV: &str = "OPTIMIST_CKPT_RESUME_CHILD";

/// In the child process: load every `<name>.safetensors` of the directory,
/// run the remaining steps, save `<name>.final.safetensors`.
fn resume_child(dir: &Path) {
    for spec in registry() {
        let mut opt = build_default(spec);
        let mut net = Net::new(2);
        checkpoint::load(
            dir.join(format!("{}.safetensors", spec.name)),
            opt.as_mut(),
            &mut net.views(),
        )
        .unwrap_or_else(|e| panic!("child: {}: {e}", spec.name));
        run_stream(&mut net, opt.as_mut(), K, N, false);
        checkpoint::save(
            dir.join(format!("{}.final.safetensors", spec.name)),
            opt.as_ref(),
            &net.refs(),
        )
        .unwrap();
    }
}

#[test]
fn resume_in_a_new_process_for_every_registry_optimizer() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        resume_child(Path::new(&dir));
        return;
    }
    let dir = temp_dir("process");
    for spec in registry() {
        let mut opt = build_default(spec);
        let mut net = Net::new(1);
        run_stream(&mut net, opt.as_mut(), 0, K, false);
        checkpoint::save(
            dir.join(format!("{}.safetensors", spec.name)),
            opt.as_ref(),
            &net.refs(),
        )
        .unwrap();
    }
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "resume_in_a_new_process_for_every_registry_optimizer",
            "--test-threads=1",
            "--quiet",
        ])
        .env(CHILD_ENV, &dir)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "child process failed: {status}");
    for spec in registry() {
        let mut full = build_default(spec);
        let mut a = Net::new(1);
        run_stream(&mut a, full.as_mut(), 0, N, false);
        let ck = Checkpoint::read(dir.join(format!("{}.final.safetensors", spec.name))).unwrap();
        for (i, name) in a.names.iter().enumerate() {
            let saved = ck.params.iter().find(|p| &p.name == name).unwrap();
            let same = saved
                .values
                .iter()
                .zip(&a.values[i])
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(
                same,
                "{}: parameter {name} differs after resuming in a new process",
                spec.name
            );
        }
        assert_eq!(
            ck.state,
            {
                let mut s = full.state_dict();
                s.tensors
                    .sort_by(|x, y| (&x.param, &x.name).cmp(&(&y.param, &y.name)));
                s
            },
            "{}: state differs after resuming in a new process",
            spec.name
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mismatches_are_refused_by_name_and_nothing_is_half_loaded() {
    let dir = temp_dir("mismatch");
    let path = dir.join("c.safetensors");
    let mut opt = build("adamw", &json!({"lr": 0.01})).unwrap();
    let mut net = Net::new(1);
    run_stream(&mut net, opt.as_mut(), 0, 3, false);
    checkpoint::save(&path, opt.as_ref(), &net.refs()).unwrap();

    let fresh = || (build("adamw", &json!({"lr": 0.01})).unwrap(), Net::new(5));
    let expect = |r: optimist_core::Result<()>, words: &[&str]| {
        let e = r.expect_err("mismatch accepted").to_string();
        for w in words {
            assert!(e.contains(w), "error {e:?} does not name {w:?}");
        }
    };
    // Another optimizer.
    let mut sgd = build("sgd", &json!({})).unwrap();
    let mut n = Net::new(5);
    expect(
        checkpoint::load(&path, sgd.as_mut(), &mut n.views()),
        &["adamw", "sgd"],
    );
    // Another configuration.
    let mut other = build("adamw", &json!({"lr": 0.02})).unwrap();
    expect(
        checkpoint::load(&path, other.as_mut(), &mut n.views()),
        &[".lr", "0.01", "0.02"],
    );
    // ... accepted when adopting the saved configuration.
    let ck = Checkpoint::read(&path).unwrap();
    ck.restore(
        other.as_mut(),
        &mut n.views(),
        &LoadOptions {
            config: ConfigCheck::Adopt,
        },
    )
    .unwrap();
    assert_eq!(other.lr(), Some(0.01));
    assert_eq!(n.values, net.values);
    // A parameter with another shape, a missing one, an extra one, a renamed one.
    let (mut o, mut n) = fresh();
    n.shapes[0] = vec![3, 4];
    expect(
        checkpoint::load(&path, o.as_mut(), &mut n.views()),
        &["layer.weight", "[4, 3]", "[3, 4]"],
    );
    let (mut o, mut n) = fresh();
    let mut v = n.views();
    v.pop();
    expect(
        ck.restore(o.as_mut(), &mut v, &LoadOptions::default()),
        &["head.weight"],
    );
    let (mut o, mut n) = fresh();
    n.names[1] = "head.bias".into();
    expect(
        checkpoint::load(&path, o.as_mut(), &mut n.views()),
        &["head.bias"],
    );
    // State for a parameter the model does not have (checkpoint edited).
    let mut edited = ck.clone();
    edited.state.tensors[0].param = "encoder.weight".into();
    let (mut o, mut n) = fresh();
    let before = (o.state_dict(), n.values.clone());
    expect(
        edited.restore(o.as_mut(), &mut n.views(), &LoadOptions::default()),
        &["encoder.weight"],
    );
    assert_eq!((o.state_dict(), n.values.clone()), before);

    // A state the optimizer rejects half-way (second group): nothing changes,
    // not the configuration, not the state, not the parameters.
    let make_groups = |lr: f64| -> Box<dyn Optimizer> {
        Box::new(
            ParamGroups::new()
                .group(
                    "a",
                    Selector::names(["layer.*"]),
                    build("adam", &json!({"lr": lr})).unwrap(),
                )
                .group(
                    "b",
                    Selector::All,
                    build("adam", &json!({"lr": lr})).unwrap(),
                ),
        )
    };
    let mut g = make_groups(0.01);
    let mut gn = Net::new(1);
    run_stream(&mut gn, g.as_mut(), 0, 2, false);
    let mut gck = Checkpoint::capture(g.as_ref(), &gn.refs()).unwrap();
    let last = gck
        .state
        .tensors
        .iter()
        .rposition(|e| e.param.starts_with("b/"))
        .unwrap();
    gck.state.tensors[last].name = "not_a_buffer".into();
    let mut target = make_groups(0.5);
    let mut tn = Net::new(9);
    run_stream(&mut tn, target.as_mut(), 0, 1, false);
    let before = (target.config(), target.state_dict(), tn.values.clone());
    expect(
        gck.restore(
            target.as_mut(),
            &mut tn.views(),
            &LoadOptions {
                config: ConfigCheck::Adopt,
            },
        ),
        &["not_a_buffer"],
    );
    assert_eq!(
        (target.config(), target.state_dict(), tn.values.clone()),
        before
    );

    // Loading the optimizer state only.
    let (mut o, _) = fresh();
    ck.restore(o.as_mut(), &mut [], &LoadOptions::default())
        .unwrap();
    assert_eq!(o.state_dict(), opt.state_dict());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_file_is_safetensors_with_metadata_keyed_by_parameter_name() {
    let mut opt = build("adam", &json!({"amsgrad": true})).unwrap();
    let mut net = Net::new(1);
    run_stream(&mut net, opt.as_mut(), 0, 2, false);
    let ck = Checkpoint::capture(opt.as_ref(), &net.refs())
        .unwrap()
        .with_extra(json!({"epoch": 3, "rng": "12345678901234567890"}));
    let bytes = ck.to_bytes().unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort();
    assert!(names.contains(&"param/layer.weight"));
    assert!(names.contains(&"state/layer.weight/exp_avg"));
    assert_eq!(st.tensor("param/layer.weight").unwrap().shape(), &[4, 3]);
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let m = meta.metadata().as_ref().unwrap();
    assert_eq!(
        m.get("format").map(String::as_str),
        Some(checkpoint::FORMAT)
    );
    let doc: serde_json::Value = serde_json::from_str(m.get("optimist").unwrap()).unwrap();
    assert_eq!(doc["format_version"], json!(checkpoint::FORMAT_VERSION));
    assert_eq!(doc["params"]["head.weight"]["shape"], json!([3, 5]));
    assert_eq!(
        doc["state"]["layer.weight"]["max_exp_avg_sq"],
        json!("state/layer.weight/max_exp_avg_sq")
    );
    assert_eq!(doc["scalars"]["step"], json!(2.0));
    assert_eq!(doc["config"], opt.config());
    let back = Checkpoint::from_bytes(&bytes).unwrap();
    assert_eq!(back.extra["rng"], json!("12345678901234567890"));
    assert_eq!(back.params, ck.params);
    // Non-finite scalars survive (as strings in the JSON).
    let mut odd = ck.clone();
    odd.state.scalars.insert("x/nan".into(), f64::NAN);
    odd.state.scalars.insert("x/inf".into(), f64::NEG_INFINITY);
    let back = Checkpoint::from_bytes(&odd.to_bytes().unwrap()).unwrap();
    assert!(back.state.scalars["x/nan"].is_nan());
    assert_eq!(back.state.scalars["x/inf"], f64::NEG_INFINITY);
    // Writing leaves no temporary file; a missing directory is an I/O error.
    let dir = temp_dir("format");
    ck.write(dir.join("a.safetensors")).unwrap();
    ck.write(dir.join("a.safetensors")).unwrap();
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(matches!(
        ck.write(dir.join("missing/a.safetensors")),
        Err(Error::Io { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

const KILL_ENV: &str = "OPTIMIST_CKPT_KILL_CHILD";

/// A state with `n` f32 values, distinguishable by `tag`.
fn big_checkpoint(tag: f32, n: usize) -> Checkpoint {
    let mut opt = build("sgd", &json!({"lr": 0.1, "momentum": 0.9})).unwrap();
    let mut w = optimist_core::Param::new("w", vec![n], vec![tag; n]).unwrap();
    w.grad = vec![1.0; n];
    opt.step(&mut [w.view()]).unwrap();
    Checkpoint::capture(opt.as_ref(), &[(&w).into()]).unwrap()
}

#[test]
fn a_process_killed_while_saving_leaves_the_previous_checkpoint() {
    if let Ok(path) = std::env::var(KILL_ENV) {
        // Child: write large checkpoints over the same path until killed.
        let ck = big_checkpoint(2.0, 16 << 20); // 2 x 64 MiB of tensors
        loop {
            ck.write(&path).unwrap();
        }
    }
    let dir = temp_dir("kill");
    let path = dir.join("ckpt.safetensors");
    let small = big_checkpoint(1.0, 1000);
    small.write(&path).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_process_killed_while_saving_leaves_the_previous_checkpoint",
            "--test-threads=1",
            "--quiet",
        ])
        .env(KILL_ENV, &path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the child is in the middle of writing its temporary file.
    let start = Instant::now();
    let mut saw_partial = false;
    while start.elapsed() < Duration::from_secs(60) {
        let partial = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                e.file_name().to_string_lossy().contains(".tmp-")
                    && e.metadata().map(|m| m.len() > (1 << 20)).unwrap_or(false)
            });
        if partial {
            saw_partial = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(saw_partial, "the child never started writing");
    // Whatever the destination holds is a complete checkpoint: the first one,
    // or one of the child's that was fully written and renamed.
    let ck = Checkpoint::read(&path).expect("the checkpoint does not load after the kill");
    let first = ck.params[0].values[0];
    let n = ck.params[0].values.len();
    assert!(
        (n == 1000
            && ck.params[0]
                .values
                .iter()
                .all(|&x| x.to_bits() == small.params[0].values[0].to_bits()))
            || (n == 16 << 20 && first != small.params[0].values[0]),
        "torn checkpoint: {n} values"
    );
    let mut opt = build("sgd", &json!({"lr": 0.1, "momentum": 0.9})).unwrap();
    ck.restore(opt.as_mut(), &mut [], &LoadOptions::default())
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
