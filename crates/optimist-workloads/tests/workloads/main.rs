//! Loaders on small slices of the real data (shapes, label ranges,
//! checksums), a few training steps per workload, every registry optimizer
//! on mnist-mlp through the candle adapter, and the readers' errors.
//!
//! The data is read from `../shared/data` relative to the repository root
//! (or `$OPTIMIST_DATA_DIR`); the tests that need it say so and skip when
//! that directory does not exist.

mod conv;
mod data;
mod resume;

use std::path::PathBuf;

use optimist_workloads::train::{train, TrainOptions};
use optimist_workloads::{load, LoadOptions, Split, Workload};
use serde_json::json;

pub fn data_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("OPTIMIST_DATA_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")),
    };
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: no data directory at {}", dir.display());
        None
    }
}

fn slice() -> LoadOptions {
    LoadOptions {
        train_limit: Some(2000),
        eval_limit: Some(300),
    }
}

/// Trains `steps` steps and returns (valid loss before, after, state bytes).
fn few_steps(
    w: &mut dyn Workload,
    optimizer: &str,
    hp: serde_json::Value,
    steps: usize,
) -> (f64, f64, usize) {
    let before = w.evaluate(Split::Valid).unwrap().loss;
    let opts = TrainOptions {
        steps: Some(steps),
        seed: 0,
        eval_every: Some(steps),
        stop_at_target: false,
        eval_test: false,
        ..Default::default()
    };
    let r = train(w, optimizer, &hp, &opts, &mut |_| {}).unwrap();
    assert!(!r.diverged);
    assert_eq!(r.losses.len(), steps);
    (before, r.final_valid.loss, r.state_bytes)
}

#[test]
fn mnist_mlp_slice() {
    let Some(dir) = data_dir() else { return };
    let mut w = optimist_workloads::image::ImageClassifier::mnist(&dir, 0, &slice()).unwrap();
    assert_eq!(w.train_len(), 2000);
    let (x, y) = w.train_data();
    assert_eq!(x.len(), 2000 * 784);
    assert_eq!(&y[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert!(y.iter().all(|&l| l < 10));
    let n = w.num_params();
    assert_eq!(n, 784 * 128 + 128 + 128 * 10 + 10);
    let (before, after, state) = few_steps(&mut w, "adamw", json!({}), 40);
    assert!(after < 0.7 * before, "{before} -> {after}");
    // Every parameter received a gradient: AdamW keeps two moments of each.
    assert_eq!(state, 2 * 4 * n);
}

#[test]
fn fashion_cnn_slice() {
    let Some(dir) = data_dir() else { return };
    let opts = LoadOptions {
        train_limit: Some(512),
        eval_limit: Some(200),
    };
    let mut w = optimist_workloads::image::ImageClassifier::fashion(&dir, 0, &opts).unwrap();
    let (_, y) = w.train_data();
    assert_eq!(&y[..10], &[9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    assert!(y.iter().all(|&l| l < 10));
    let n = w.num_params();
    assert_eq!(
        n,
        (8 * 25 + 8) + (16 * 8 * 25 + 16) + (784 * 64 + 64) + (64 * 10 + 10)
    );
    let (before, after, state) = few_steps(&mut w, "adamw", json!({"lr": 3e-3}), 8);
    assert!(after < 0.9 * before, "{before} -> {after}");
    assert_eq!(state, 2 * 4 * n);
}

#[test]
fn shakespeare_char_slice() {
    let Some(dir) = data_dir() else { return };
    let opts = LoadOptions {
        train_limit: Some(20_000),
        eval_limit: Some(3_000),
    };
    let mut w = optimist_workloads::shakespeare::CharLm::load(&dir, 0, &opts).unwrap();
    assert_eq!(w.vocab(), 65);
    assert_eq!(w.split_lens(), (20_000, 3_000));
    let n = w.num_params();
    let (before, after, state) = few_steps(&mut w, "adamw", json!({"lr": 3e-3}), 12);
    assert!(
        (before - (65f64).ln()).abs() < 0.3,
        "initial loss {before} should be near ln 65"
    );
    assert!(after < 0.9 * before, "{before} -> {after}");
    assert_eq!(state, 2 * 4 * n);
}

#[test]
fn breast_cancer_logreg() {
    let Some(dir) = data_dir() else { return };
    let mut w = optimist_workloads::tabular::BreastCancer::load(&dir, 0).unwrap();
    assert_eq!(w.features(), 30);
    let f0 = w.evaluate(Split::Valid).unwrap();
    // At w = 0, b = 0 the objective is ln 2; f* is below it.
    assert!((f0.loss - 2f64.ln()).abs() < 1e-6, "{}", f0.loss);
    assert!(w.f_star() > 0.0 && w.f_star() < f0.loss);
    let (before, after, _) = few_steps(&mut w, "adamw", json!({}), 300);
    assert!(after < before);
    let gap = w.evaluate(Split::Valid).unwrap().metric;
    assert!((0.0..1e-2).contains(&gap), "suboptimality {gap}");
    assert!(w.valid_accuracy().unwrap() > 0.9);
}

#[test]
fn synthetic_workloads_learn() {
    for (name, steps) in [
        ("quadratic", 100),
        ("rosenbrock", 200),
        ("teacher-student", 100),
    ] {
        let mut w = load(
            name,
            std::path::Path::new("unused"),
            0,
            &LoadOptions::default(),
        )
        .unwrap();
        let m0 = w.evaluate(Split::Valid).unwrap().metric;
        let (_, _, _) = few_steps(w.as_mut(), "adamw", json!({}), steps);
        let m1 = w.evaluate(Split::Valid).unwrap().metric;
        assert!(m1 < 0.5 * m0, "{name}: {m0} -> {m1}");
    }
}

#[test]
fn runs_are_reproducible_from_the_seed() {
    let run = |seed| {
        let mut w = load(
            "teacher-student",
            std::path::Path::new("unused"),
            seed,
            &LoadOptions::default(),
        )
        .unwrap();
        let opts = TrainOptions {
            steps: Some(30),
            seed,
            eval_every: Some(30),
            stop_at_target: false,
            eval_test: false,
            ..Default::default()
        };
        train(w.as_mut(), "adamw", &json!({}), &opts, &mut |_| {})
            .unwrap()
            .losses
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
}

#[test]
fn every_registry_optimizer_trains_mnist_mlp() {
    let Some(dir) = data_dir() else { return };
    let mut failures = Vec::new();
    for spec in optimist_core::registry::registry() {
        let mut w = optimist_workloads::image::ImageClassifier::mnist(&dir, 0, &slice()).unwrap();
        let before = w.evaluate(Split::Valid).unwrap().loss;
        let opts = TrainOptions {
            steps: Some(200),
            seed: 0,
            eval_every: Some(200),
            stop_at_target: false,
            eval_test: false,
            ..Default::default()
        };
        match train(&mut w, spec.name, &json!({}), &opts, &mut |_| {}) {
            Ok(r) => {
                let after = r.final_valid.loss;
                eprintln!(
                    "{:<12} valid loss {before:.3} -> {after:.3} ({}, {})",
                    spec.name, r.built, r.hparams
                );
                if after.is_nan() || after >= 0.8 * before {
                    failures.push(format!("{}: {before} -> {after}", spec.name));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", spec.name)),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
