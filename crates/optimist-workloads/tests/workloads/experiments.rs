//! The options the claims study uses: minibatch size, gradient stages in
//! the training loop, injected gradient spikes.

use optimist_workloads::train::{train, GradSpikes, RunResult, TrainOptions};
use optimist_workloads::{load, LoadOptions, Split, Workload};
use serde_json::{json, Value};

use super::data_dir;

fn digits() -> Box<dyn Workload> {
    load("digits-mlp", &data_dir(), 0, &LoadOptions::default()).unwrap()
}

fn run(w: &mut dyn Workload, optimizer: &str, hp: Value, opts: TrainOptions) -> RunResult {
    train(w, optimizer, &hp, &opts, &mut |_| {}).unwrap()
}

fn opts(steps: usize) -> TrainOptions {
    TrainOptions {
        steps: Some(steps),
        eval_every: Some(steps),
        eval_test: false,
        ..Default::default()
    }
}

#[test]
fn batch_size_changes_the_batches_and_is_checked() {
    let mut a = digits();
    let mut b = digits();
    b.set_batch_size(512).unwrap();
    assert_eq!(b.spec().batch_size, 512);
    assert_eq!(b.sampled_label_count(), Some(512));
    let ra = run(a.as_mut(), "adamw", json!({}), opts(5));
    let rb = run(b.as_mut(), "adamw", json!({}), opts(5));
    assert_ne!(ra.losses, rb.losses);
    for bad in [0, optimist_workloads::MAX_BATCH_SIZE + 1] {
        let e = digits().set_batch_size(bad).unwrap_err().to_string();
        assert!(e.contains(&bad.to_string()) && e.contains("digits-mlp"), "{e}");
    }
    let mut logreg = load("breast-cancer-logreg", &data_dir(), 0, &LoadOptions::default()).unwrap();
    let e = logreg.set_batch_size(8).unwrap_err().to_string();
    assert!(e.contains("no minibatches"), "{e}");
}

#[test]
fn a_clipping_stage_runs_inside_the_training_loop() {
    // With plain SGD the update is the (clipped) gradient times lr: a
    // global norm clipped to 1e-6 leaves the model where it started.
    let start = digits().evaluate(Split::Valid).unwrap().loss;
    let plain = run(digits().as_mut(), "sgd", json!({"lr": 0.1}), opts(20));
    let clipped = run(
        digits().as_mut(),
        "sgd",
        json!({"lr": 0.1}),
        TrainOptions {
            stages: vec![json!({"name": "clip_grad_norm", "config": {"max_norm": 1e-6}})],
            ..opts(20)
        },
    );
    assert_eq!(plain.losses[0], clipped.losses[0]);
    assert!((clipped.final_valid.loss - start).abs() < 1e-4, "{start} -> {}", clipped.final_valid.loss);
    assert!(plain.final_valid.loss < start - 0.05, "{start} -> {}", plain.final_valid.loss);
    for (stage, want) in [
        (json!({"name": "nope"}), "unknown gradient stage"),
        (json!({"config": {}}), "expected"),
        (json!({"name": "zclip", "extra": 1}), "unknown key \"extra\""),
        (json!({"name": "clip_grad_norm", "config": {"max_norm": -1.0}}), "max_norm"),
    ] {
        let e = train(
            digits().as_mut(),
            "adamw",
            &json!({}),
            &TrainOptions {
                stages: vec![stage.clone()],
                ..opts(1)
            },
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(want), "{stage}: {e}");
    }
}

#[test]
fn injected_gradient_spikes_scale_the_gradient_of_their_steps_only() {
    // Plain SGD: a spike of factor k at step 2 makes step 2's update k times
    // the normal one; the logged loss is the true loss, so steps 1 and 2
    // match the run without spikes and step 3 is far worse.
    let sgd = json!({"lr": 0.01});
    let base = run(digits().as_mut(), "sgd", sgd.clone(), opts(3));
    let spiked = |factor: f64, stages: Vec<Value>| {
        let g = GradSpikes::from_json(&json!({"steps": [2], "factor": factor})).unwrap();
        run(
            digits().as_mut(),
            "sgd",
            sgd.clone(),
            TrainOptions {
                grad_spikes: Some(g),
                stages,
                ..opts(3)
            },
        )
    };
    let one = spiked(1.0, vec![]);
    assert_eq!(one.losses, base.losses);
    let big = spiked(1e4, vec![]);
    assert_eq!(base.losses[0], big.losses[0]);
    assert!((base.losses[1] - big.losses[1]).abs() <= 1e-5 * base.losses[1].abs().max(1.0));
    assert!(big.diverged || big.losses[2] > 2.0 * base.losses[2], "{:?} vs {:?}", big.losses, base.losses);
    // Global-norm clipping before the step bounds the spiked update.
    let clipped = spiked(1e4, vec![json!({"name": "clip_grad_norm", "config": {"max_norm": 1.0}})]);
    assert!(!clipped.diverged && clipped.losses[2] < 1.5 * base.losses[2], "{:?}", clipped.losses);
    for (bad, want) in [
        (json!({"steps": [0], "factor": 2.0}), "count from 1"),
        (json!({"steps": [3], "factor": 0.0}), "factor 0"),
        (json!({"steps": [3], "factor": f64::MAX}), "at most"),
        (json!({"steps": [3]}), "factor"),
        (json!({"steps": [3], "factor": 2.0, "x": 1}), "unknown field"),
    ] {
        let e = GradSpikes::from_json(&bad).unwrap_err().to_string();
        assert!(e.contains(want), "{bad}: {e}");
    }
}
