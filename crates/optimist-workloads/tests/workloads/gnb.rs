//! SophiaG in the training loop with its Gauss-Newton-Bartlett curvature:
//! the estimate reaches the rule's state on the embedded workloads (none
//! before step k + 1, some after), `bs` defaults to the predictions per
//! batch, resume stays bit-exact with the label generator, the labels follow
//! the model's softmax, and the workloads that are not likelihoods refuse
//! SophiaG instead of running it without curvature.

use std::path::{Path, PathBuf};

use optimist_core::checkpoint::Checkpoint;
use optimist_workloads::train::{train, Record, RunResult, TrainOptions};
use optimist_workloads::{load, LoadOptions, Rng, Workload};
use serde_json::{json, Value};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("optimist-gnb-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `steps` steps of `optimizer` on `workload`, checkpointing at the end to
/// `ck` (and resuming from `resume`); returns the result and the per-step
/// losses this call took.
fn go(
    workload: &str,
    optimizer: &str,
    hp: &Value,
    steps: usize,
    hess_interval: Option<u64>,
    ck: Option<&Path>,
    resume: Option<&Path>,
) -> optimist_workloads::Result<(RunResult, Vec<(usize, f64)>)> {
    let mut w: Box<dyn Workload> = load(workload, Path::new("unused"), 5, &LoadOptions::default())?;
    let opts = TrainOptions {
        steps: Some(steps),
        seed: 5,
        eval_every: Some(steps),
        eval_test: false,
        checkpoint: ck.map(Path::to_path_buf),
        resume: resume.map(Path::to_path_buf),
        hess_interval,
        ..Default::default()
    };
    let mut taken = Vec::new();
    let r = train(w.as_mut(), optimizer, hp, &opts, &mut |r| {
        if let Record::Step { step, loss, .. } = r {
            taken.push((*step, *loss));
        }
    })?;
    Ok((r, taken))
}

/// SophiaG's curvature EMA (`hessian` state of every parameter) in `ck`.
fn hessian_state(ck: &Path) -> Vec<f32> {
    let ck = Checkpoint::read(ck).unwrap();
    let h: Vec<f32> = ck
        .state
        .tensors
        .iter()
        .filter(|e| e.name == "hessian")
        .flat_map(|e| e.values.iter().copied())
        .collect();
    assert!(!h.is_empty(), "no hessian state in the checkpoint");
    h
}

#[test]
fn sophiag_trains_digits_with_the_gauss_newton_estimate() {
    let dir = tmp("digits");
    let ck = dir.join("ck.safetensors");
    // Default hess_interval 10: steps 1..10 have no estimate, step 11 has.
    let (r, _) = go("digits-mlp", "sophiag", &json!({}), 10, None, Some(&ck), None).unwrap();
    assert_eq!(r.hparams["bs"], json!(64), "bs = the batch's 64 examples");
    assert!(hessian_state(&ck).iter().all(|&h| h == 0.0));
    let (r, _) = go("digits-mlp", "sophiag", &json!({}), 11, None, Some(&ck), None).unwrap();
    let h = hessian_state(&ck);
    assert!(h.iter().all(|v| v.is_finite() && *v >= 0.0));
    let nonzero = h.iter().filter(|&&v| v > 0.0).count();
    // ReLU units dead on the whole batch give zero gradients; most are not.
    assert!(nonzero > h.len() / 2, "{nonzero} of {} nonzero", h.len());
    assert_eq!(r.num_params, h.len());
    // And it trains, with the estimate every 5 steps.
    let (r, _) = go("digits-mlp", "sophiag", &json!({"lr": 3e-3}), 60, Some(5), None, None).unwrap();
    assert!(!r.diverged);
    eprintln!("digits sophiag: {} -> {} ({})", r.evals[0].valid.loss, r.final_valid.loss, r.hparams);
    assert!(
        r.final_valid.loss < 0.5 * r.evals[0].valid.loss,
        "{} -> {}",
        r.evals[0].valid.loss,
        r.final_valid.loss
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sophiag_on_the_logistic_regression_samples_bernoulli_labels() {
    let dir = tmp("logreg");
    let ck = dir.join("ck.safetensors");
    let (r, _) = go("breast-cancer-logreg", "sophiag", &json!({}), 3, Some(2), Some(&ck), None)
        .unwrap();
    assert_eq!(r.hparams["bs"], json!(455));
    // Step 3 carried an estimate: every weight has curvature.
    assert!(hessian_state(&ck).iter().all(|&h| h > 0.0));
    // A bs that is not the batch's is refused when the estimate is made.
    let e = go("breast-cancer-logreg", "sophiag", &json!({"bs": 5120}), 3, Some(2), None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bs is 5120") && e.contains("averages 455"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resume_with_the_label_generator_is_bit_exact() {
    let dir = tmp("resume");
    let ck = dir.join("ck.safetensors");
    let hp = json!({"lr": 1e-3});
    // Estimates at steps 3, 5, 7, 9: before and after the checkpoint at 4.
    let (full, full_steps) = go("digits-mlp", "sophiag", &hp, 9, Some(2), None, None).unwrap();
    let (_, first) = go("digits-mlp", "sophiag", &hp, 4, Some(2), Some(&ck), None).unwrap();
    let (second, rest) = go("digits-mlp", "sophiag", &hp, 9, Some(2), None, Some(&ck)).unwrap();
    let joined: Vec<(usize, f64)> = first.iter().chain(&rest).copied().collect();
    assert_eq!(joined, full_steps);
    assert_eq!(
        second.final_valid.loss.to_bits(),
        full.final_valid.loss.to_bits()
    );
    // Another interval is another run: refused.
    let e = go("digits-mlp", "sophiag", &hp, 9, Some(3), None, Some(&ck))
        .unwrap_err()
        .to_string();
    assert!(e.contains("hess_interval 2"), "{e}");
    // The same seed gives the same run (labels included).
    let again = |seed: u64| {
        let mut w = load("digits-mlp", Path::new("unused"), 5, &LoadOptions::default()).unwrap();
        let opts = TrainOptions {
            steps: Some(9),
            seed,
            eval_every: Some(9),
            eval_test: false,
            hess_interval: Some(2),
            ..Default::default()
        };
        train(w.as_mut(), "sophiag", &hp, &opts, &mut |_| {}).unwrap().losses
    };
    assert_eq!(again(5), full.losses);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sophiag_does_not_apply_where_the_loss_is_not_a_likelihood() {
    for name in ["quadratic", "rosenbrock", "teacher-student"] {
        let e = go(name, "sophiag", &json!({}), 3, None, None, None).unwrap_err();
        assert!(
            matches!(e, optimist_workloads::Error::NotApplicable(_)),
            "{name}: {e}"
        );
        let msg = e.to_string();
        assert!(msg.contains(name) && msg.contains("negative log-likelihood"), "{msg}");
        let w = load(name, Path::new("unused"), 0, &LoadOptions::default()).unwrap();
        assert_eq!(w.sampled_label_count(), None);
        let e = w.sampled_batch_loss(&mut Rng::new(0)).unwrap_err().to_string();
        assert!(e.contains(name), "{e}");
    }
    // Sophia-H needs no labels; its period is its update_period.
    go("teacher-student", "sophiah", &json!({}), 3, None, None, None).unwrap();
    let e = go("digits-mlp", "sophiah", &json!({}), 3, Some(2), None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("hess_interval applies to"), "{e}");
}

#[test]
fn sampled_labels_follow_the_softmax() {
    // 20,000 rows of the same logits: class frequencies within 5 standard
    // deviations of softmax([1, 0, -1, 2]).
    let logits = [1.0f32, 0.0, -1.0, 2.0];
    let n = 20_000;
    let t = candle_core::Tensor::from_vec(logits.repeat(n), (n, 4), &candle_core::Device::Cpu)
        .unwrap();
    let y = optimist_workloads::nn::sample_categorical(&t, &mut Rng::new(1))
        .unwrap()
        .to_vec1::<u32>()
        .unwrap();
    let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
    for (c, &l) in logits.iter().enumerate() {
        let p = (l as f64).exp() / z;
        let freq = y.iter().filter(|&&v| v as usize == c).count() as f64 / n as f64;
        let sd = (p * (1.0 - p) / n as f64).sqrt();
        assert!((freq - p).abs() < 5.0 * sd, "class {c}: {freq} vs {p}");
    }
}
