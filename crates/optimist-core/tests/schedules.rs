//! Golden schedule values: every file of `tests/golden/schedules` (made by
//! `tools/gen_schedules.py` from optax, torch.optim.lr_scheduler,
//! pytorch-optimizer and transformers) must be reproduced step by step
//! within its tolerance (the values are f64).

use std::path::{Path, PathBuf};

use optimist_core::schedule::ScheduleSpec;
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/schedules")
}

#[test]
fn schedules_match_their_references() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("tests/golden/schedules")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "only {} schedule files", files.len());
    let mut failures = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for f in &files {
        let raw: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let id = raw["id"].as_str().unwrap_or("?").to_string();
        let spec = match ScheduleSpec::from_json(&raw["schedule"]) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{id}: {e}"));
                continue;
            }
        };
        names.insert(spec.name());
        let base = raw["base"].as_f64().unwrap();
        let sched = spec.try_build(base).unwrap();
        let rtol = raw["tolerance"]["rtol"].as_f64().unwrap();
        let atol = raw["tolerance"]["atol"].as_f64().unwrap();
        let values: Vec<f64> = serde_json::from_value(raw["values"].clone()).unwrap();
        for (s, &e) in values.iter().enumerate() {
            let got = sched.value(s as u64);
            if got.is_nan() || (got - e).abs() > atol + rtol * e.abs() {
                failures.push(format!("{id}: step {s}: got {got:e}, expected {e:e}"));
                break;
            }
        }
        // The spec survives a JSON round trip.
        let again = ScheduleSpec::from_json(&spec.to_json()).unwrap();
        assert_eq!(again, spec, "{id}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for name in [
        "constant",
        "linear",
        "cosine",
        "warmup_cosine",
        "warmup_constant",
        "wsd",
        "one_cycle",
        "one_cycle_momentum",
        "inverse_sqrt",
        "exponential",
        "step",
        "polynomial",
        "piecewise_constant",
        "join",
    ] {
        assert!(names.contains(name), "no golden file for schedule {name}");
    }
    eprintln!("{} schedule files passed", files.len());
}
