//! Golden tests: every replay case of the project (`tests/golden/cases`,
//! generated from the reference implementations by `tools/gen_cases.py`,
//! and `tests/golden/extensions`, options beyond the contract)
//! and the public conformance cases (`../shared/conformance/cases`, when
//! that directory exists beside the repository) must match within the
//! case's tolerance; error cases must be rejected with an error value.
//!
//! `OPTIMIST_GOLDEN_FILTER=text` restricts the run to case files whose name
//! contains `text` (for development; CI runs everything); a filter must
//! match at least one case, and without one every directory must hold
//! cases. Every case must give as many steps, and per step as many
//! parameters of as many values, as it expects.
//!
//! The public conformance cases live outside the repository: without them
//! that test says SKIPPED, and fails when `CI=true`.

use std::path::{Path, PathBuf};

use optimist_core::replay::Case;
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn case_files(dir: &Path) -> Vec<PathBuf> {
    let filter = std::env::var("OPTIMIST_GOLDEN_FILTER").unwrap_or_default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .filter(|p| p.file_name().unwrap().to_string_lossy().contains(&filter))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Runs one case; `Err` describes the failure.
fn check_case(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let raw: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let expect_error = raw
        .get("expect_error")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let result = Case::parse(&text).and_then(|c| c.run());
    if expect_error {
        return match result {
            Err(e) if !e.to_string().is_empty() => Ok(()),
            Err(_) => Err("error without a message".into()),
            Ok(_) => Err("expected an error, got a result".into()),
        };
    }
    let got = result.map_err(|e| format!("replay failed: {e}"))?;
    let n_steps = raw["grads"].as_array().map_or(0, Vec::len);
    let n_params = raw["params"].as_array().map_or(0, Vec::len);
    let tol = raw.get("tolerance");
    let atol = tol
        .and_then(|t| t.get("atol"))
        .and_then(Value::as_f64)
        .unwrap_or(1e-6);
    let rtol = tol
        .and_then(|t| t.get("rtol"))
        .and_then(Value::as_f64)
        .unwrap_or(1e-5);
    let expected: Vec<Vec<Vec<f64>>> =
        serde_json::from_value(raw["expected"].clone()).map_err(|e| format!("expected: {e}"))?;
    if expected.len() != got.len() || expected.len() != n_steps || n_steps == 0 {
        return Err(format!(
            "{} steps, expected {} (the case has {n_steps} gradient steps)",
            got.len(),
            expected.len()
        ));
    }
    for (t, (gs, es)) in got.iter().zip(&expected).enumerate() {
        if gs.len() != es.len() || es.len() != n_params {
            return Err(format!(
                "step {}: {} parameters, expected {} (the case has {n_params})",
                t + 1,
                gs.len(),
                es.len()
            ));
        }
        for (i, (gp, ep)) in gs.iter().zip(es).enumerate() {
            if gp.len() != ep.len() {
                return Err(format!(
                    "step {} param {i}: length {} vs {}",
                    t + 1,
                    gp.len(),
                    ep.len()
                ));
            }
            for (j, (&g, &e)) in gp.iter().zip(ep).enumerate() {
                let err = (g as f64 - e).abs();
                let within = err <= atol + rtol * e.abs();
                if !within {
                    return Err(format!(
                        "step {} param {i}[{j}]: got {g}, expected {e} (atol {atol}, rtol {rtol})",
                        t + 1
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Runs every case of `dir` (the `what` cases): all must pass, and
/// without a filter there must be some.
fn check_dir(dir: &Path, what: &str) {
    let files = case_files(dir);
    let mut failures = Vec::new();
    for f in &files {
        if let Err(e) = check_case(f) {
            failures.push(format!("{}: {e}", f.file_name().unwrap().to_string_lossy()));
        }
    }
    let n = files.len();
    assert!(n > 0 || filtered(), "no cases found in {}", dir.display());
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{n} {what} cases passed");
}

fn filtered() -> bool {
    std::env::var("OPTIMIST_GOLDEN_FILTER").is_ok_and(|f| !f.is_empty())
}

/// A test that cannot run says so; in CI (`CI=true`) that is a failure.
fn skip(what: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(!ci, "SKIPPED in CI: {what}");
    eprintln!("SKIPPED: {what}");
}

#[test]
fn a_filter_matches_at_least_one_case() {
    if !filtered() {
        return;
    }
    let n: usize = [
        "tests/golden/cases",
        "tests/golden/extensions",
        "../shared/conformance/cases",
    ]
    .iter()
    .map(|d| case_files(&repo_root().join(d)).len())
    .sum();
    assert!(n > 0, "OPTIMIST_GOLDEN_FILTER matches no case");
}

#[test]
fn project_golden_cases() {
    check_dir(&repo_root().join("tests/golden/cases"), "project golden");
}

#[test]
fn project_extension_cases() {
    check_dir(&repo_root().join("tests/golden/extensions"), "extension");
}

#[test]
fn public_conformance_cases_skipped_without_shared() {
    let dir = repo_root().join("../shared/conformance/cases");
    if !dir.is_dir() {
        skip(&format!(
            "public conformance cases: {} not present",
            dir.display()
        ));
        return;
    }
    check_dir(&dir, "public conformance");
}
