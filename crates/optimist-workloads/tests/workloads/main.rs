//! Loaders on small slices of the real data (shapes, label ranges,
//! checksums), a few training steps per workload, every registry optimizer
//! on mnist-mlp through the candle adapter, and the readers' errors.
//!
//! The data is read from the slices shipped in `tests/fixtures/data/`
//! (MNIST, Fashion-MNIST, the embedded Tiny Shakespeare text and breast
//! cancer table; see its README), so these tests run on a clean clone. Set
//! `OPTIMIST_DATA_DIR` to a directory with the full datasets to run them
//! on those instead, and add `-- --ignored` for the tests that need the
//! full files.

mod conv;
mod data;
mod experiments;
mod fuzz_args;
mod gnb;
mod resume;

use std::path::PathBuf;

use optimist_workloads::train::{train, TrainOptions};
use optimist_workloads::{load, LoadOptions, Split, Workload};
use serde_json::json;

/// The full datasets' directory, when `OPTIMIST_DATA_DIR` names one.
pub fn full_data_dir() -> Option<PathBuf> {
    match std::env::var_os("OPTIMIST_DATA_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            assert!(d.is_dir(), "OPTIMIST_DATA_DIR={} is not a directory", d.display());
            Some(d)
        }
        _ => None,
    }
}

/// The data directory of these tests: the full datasets when
/// `OPTIMIST_DATA_DIR` is set, else the shipped slices.
pub fn data_dir() -> PathBuf {
    full_data_dir()
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/data")))
}

/// The number of training examples `limit` leaves of a workload whose
/// full file has `TRAIN_SPLIT` and whose slice has `slice_train`.
fn train_examples(limit: usize, slice_train: usize) -> usize {
    if full_data_dir().is_some() {
        limit
    } else {
        limit.min(slice_train)
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
    let dir = data_dir();
    let mut w = optimist_workloads::image::ImageClassifier::mnist(&dir, 0, &slice()).unwrap();
    let n_train = train_examples(2000, 800);
    assert_eq!(w.train_len(), n_train);
    let (x, y) = w.train_data();
    assert_eq!(x.len(), n_train * 784);
    assert_eq!(&y[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert!(y.iter().all(|&l| l < 10));
    assert_eq!(&w.valid_data().1[..10], &[3, 8, 6, 9, 6, 4, 5, 3, 8, 4]);
    assert_eq!(w.valid_data().1.len(), train_examples(300, 200));
    assert_eq!(&w.test_data().1[..10], &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    let n = w.num_params();
    assert_eq!(n, 784 * 128 + 128 + 128 * 10 + 10);
    let (before, after, state) = few_steps(&mut w, "adamw", json!({}), 40);
    assert!(after < 0.7 * before, "{before} -> {after}");
    // Every parameter received a gradient: AdamW keeps two moments of each.
    assert_eq!(state, 2 * 4 * n);
}

#[test]
fn fashion_cnn_slice() {
    let dir = data_dir();
    let opts = LoadOptions {
        train_limit: Some(512),
        eval_limit: Some(200),
    };
    let mut w = optimist_workloads::image::ImageClassifier::fashion(&dir, 0, &opts).unwrap();
    assert_eq!(w.train_len(), train_examples(512, 320));
    let (_, y) = w.train_data();
    assert_eq!(&y[..10], &[9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    // Validation starts at the full file's example 50,000, test at t10k's first.
    assert_eq!(&w.valid_data().1[..10], &[9, 2, 1, 0, 2, 7, 9, 3, 1, 1]);
    assert_eq!(&w.test_data().1[..10], &[9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
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
    let dir = data_dir();
    let opts = LoadOptions {
        train_limit: Some(20_000),
        eval_limit: Some(3_000),
    };
    let mut w = optimist_workloads::shakespeare::CharLm::load(&dir, 0, &opts).unwrap();
    // The full text has 65 distinct bytes; its first 240 KB (the slice), 62.
    let vocab = if full_data_dir().is_some() { 65 } else { 62 };
    assert_eq!(w.vocab(), vocab);
    assert_eq!(w.split_lens(), (20_000, 3_000));
    let n = w.num_params();
    let (before, after, state) = few_steps(&mut w, "adamw", json!({"lr": 3e-3}), 12);
    // Untrained: near the uniform prediction's ln V. The initial logits are
    // not all equal, and their spread adds to ln V on a given text (0.12 on
    // the full text's validation part, 0.40 on the slice's).
    assert!(
        (before - (vocab as f64).ln()).abs() < 0.5,
        "initial loss {before} should be near ln {vocab}"
    );
    assert!(after < 0.9 * before, "{before} -> {after}");
    assert_eq!(state, 2 * 4 * n);
}

#[test]
fn breast_cancer_logreg() {
    let dir = data_dir();
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
    let dir = data_dir();
    let mut failures = Vec::new();
    // The rules with small-network suggestions (or defaults that train this
    // MLP): the 29 of the default bench suite. The catalogue added since
    // (asgd ... apollo) has convergence tests on the core's test problems
    // (tests/catalogue_*.rs, adam_family.rs) but no MNIST suggestions yet.
    const SUITE: &[&str] = &[
        "sgd", "adam", "adamw", "sgd_schedulefree", "adamw_schedulefree", "nadam", "radam",
        "adamax", "adagrad", "rmsprop", "adadelta", "adafactor", "lion", "adabelief", "lamb",
        "adabound", "signsgd", "lookahead", "cautious", "muon", "adamuon", "namo", "namo_d",
        "sophiah", "sophiag", "adamomentum", "adagc", "magma", "skipupdate",
    ];
    for spec in optimist_core::registry::registry()
        .iter()
        .filter(|s| SUITE.contains(&s.name))
    {
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

/// The embedded data: checksums verified, splits and shapes as documented,
/// and the same rows as the data directory's copies where those exist.
#[test]
fn embedded_data_checksums_and_splits() {
    use optimist_workloads::embedded;
    for e in embedded::ALL {
        e.verified().unwrap();
    }
    // A damaged copy is an error naming the file.
    let mut bad = embedded::BREAST_CANCER.bytes.to_vec();
    bad[100] ^= 1;
    let err = embedded::check("breast_cancer.csv", &bad, embedded::BREAST_CANCER.sha256)
        .unwrap_err()
        .to_string();
    assert!(err.contains("breast_cancer.csv"), "{err}");
    let (x, y) = embedded::parse_digits(embedded::DIGITS_TRAIN.bytes, "tra").unwrap();
    assert_eq!(x.len(), 3823);
    let mut counts = [0usize; 10];
    for &l in &y {
        counts[l as usize] += 1;
    }
    assert_eq!(counts, [376, 389, 380, 389, 387, 376, 377, 387, 380, 382]);
    let w = optimist_workloads::digits::DigitsMlp::load(0).unwrap();
    assert_eq!(w.split_lens(), (3000, 823, 1797));
    assert_eq!(
        w.num_params(),
        64 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10
    );
    assert!(w.has_test());
    // A corrupted gzip row is an error, not a panic.
    assert!(embedded::parse_digits(b"not gzip", "x").is_err());
    let a = optimist_workloads::tabular::BreastCancer::load(&data_dir(), 0).unwrap();
    let b = optimist_workloads::tabular::BreastCancer::embedded().unwrap();
    assert_eq!(a.f_star(), b.f_star());
}

#[test]
fn default_suite_workloads_learn() {
    let dir = std::path::Path::new("unused");
    assert_eq!(
        optimist_workloads::suite("default").unwrap(),
        vec!["digits-mlp", "shakespeare-mini", "breast-cancer-logreg"]
    );
    for name in optimist_workloads::suite("default").unwrap() {
        assert!(!optimist_workloads::spec(name).unwrap().needs_data);
    }
    let mut d = load("digits-mlp", dir, 0, &LoadOptions::default()).unwrap();
    let (before, after, state) = few_steps(d.as_mut(), "adamw", json!({}), 60);
    assert!(after < 0.5 * before, "{before} -> {after}");
    assert_eq!(state, 2 * 4 * d.num_params());
    let opts = LoadOptions {
        train_limit: Some(20_000),
        eval_limit: Some(2_000),
    };
    let mut s = optimist_workloads::shakespeare::CharLm::mini(0, &opts).unwrap();
    assert_eq!(s.vocab(), 62);
    assert!(s.has_test());
    let (before, after, _) = few_steps(&mut s, "adamw", json!({"lr": 3e-3}), 15);
    assert!(
        (before - (62f64).ln()).abs() < 0.3,
        "initial loss {before} should be near ln 62"
    );
    assert!(after < 0.9 * before, "{before} -> {after}");
}

/// Matrix-only rules (Muon family) run on the hidden matrices of the
/// digits MLP and the transformer, leave embeddings and heads to AdamW, and
/// refuse the logistic regression (no matrix parameter) with an error that
/// says so instead of running AdamW under their name.
#[test]
fn matrix_rules_apply_only_where_there_are_hidden_matrices() {
    use optimist_workloads::hparams::not_applicable;
    let dir = std::path::Path::new("unused");
    let lr = load("breast-cancer-logreg", dir, 0, &LoadOptions::default()).unwrap();
    for o in ["muon", "adamuon", "namo", "namo_d"] {
        assert_eq!(
            not_applicable(lr.varmap(), o, &json!({})).as_deref(),
            Some("not applicable: no matrix parameters"),
            "{o}"
        );
    }
    assert_eq!(not_applicable(lr.varmap(), "adamw", &json!({})), None);
    let mut lr = lr;
    let e = train(
        lr.as_mut(),
        "muon",
        &json!({}),
        &TrainOptions {
            steps: Some(2),
            ..Default::default()
        },
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(e, optimist_workloads::Error::NotApplicable(_)),
        "{e}"
    );
    let d = load("digits-mlp", dir, 0, &LoadOptions::default()).unwrap();
    assert_eq!(not_applicable(d.varmap(), "muon", &json!({})), None);
    let sel = optimist_candle::selector_from_json(&optimist_workloads::hparams::matrix_selector())
        .unwrap();
    assert!(sel.matches("fc2.weight", &[128, 128]));
    assert!(!sel.matches("head.weight", &[10, 128]));
    assert!(!sel.matches("tok_embed", &[62, 32]));
    assert!(!sel.matches("fc2.bias", &[128]));
}
