//! Golden tests: every replay case of the project (`tests/golden/cases`,
//! generated from the reference implementations by `tools/gen_cases.py`,
//! and `tests/golden/extensions`, options beyond the contract)
//! and the public conformance cases (`../shared/conformance/cases`, when
//! that directory exists beside the repository) must match within the
//! case's tolerance; error cases must be rejected with the kind of error
//! the case calls for (see `expected_error`).
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
use optimist_core::{registry, Error};
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
            Err(e) => expected_error(&raw, &e),
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

/// The kind of error an `expect_error` case must give, read from the case
/// itself: an unknown optimizer name; a hyperparameter the rule does not
/// take; data, gradients or a Hessian that do not fit the parameters'
/// shapes; a parameter a matrix rule cannot take; else a hyperparameter
/// value the reference rejects, and then the error must name one of the
/// case's hyperparameters (or one it requires). Any other error, even with
/// a message, fails the case.
fn expected_error(raw: &Value, e: &Error) -> Result<(), String> {
    let msg = e.to_string();
    let wrong = |want: &str| Err(format!("expected {want}, got {e:?}"));
    // Every optimizer name and hyperparameter key in the case.
    let mut names = Vec::new();
    let mut keys = Vec::new();
    fn walk(v: &Value, names: &mut Vec<String>, keys: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    keys.push(k.clone());
                    if k == "optimizer" {
                        if let Some(s) = x.as_str() {
                            names.push(s.to_string());
                        }
                    }
                    walk(x, names, keys);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, names, keys)),
            _ => {}
        }
    }
    if let Some(o) = raw["optimizer"].as_str() {
        names.push(o.to_string());
    }
    for k in ["hparams", "lr_schedule", "grad_clip", "stages"] {
        walk(&raw[k], &mut names, &mut keys);
    }
    if let Some(bad) = names.iter().find(|n| registry::find(n).is_none()) {
        let quoted = format!("unknown optimizer \"{bad}\"");
        return match e {
            Error::UnknownOptimizer { name, .. } if name == bad => Ok(()),
            Error::Config { message, .. } if message.contains(&quoted) => Ok(()),
            _ => wrong(&format!("an unknown-optimizer error naming {bad}")),
        };
    }
    let spec = registry::find(raw["optimizer"].as_str().unwrap_or_default());
    if let (Some(spec), Some(h)) = (spec, raw["hparams"].as_object()) {
        let defaults = (spec.defaults)();
        if let Some(k) = h.keys().find(|k| defaults.get(k.as_str()).is_none()) {
            let quoted = format!("'{k}'");
            return match e {
                Error::Config { message, .. } if message.contains(&quoted) => Ok(()),
                _ => wrong(&format!("a configuration error naming the unknown hyperparameter {k}")),
            };
        }
    }
    if shapes_do_not_fit(raw) {
        return match e {
            Error::Shape(_) => Ok(()),
            _ => wrong("a shape error"),
        };
    }
    let params: Vec<(String, usize)> = raw["params"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let dims = p["shape"].as_array().map_or(0, Vec::len);
                    (p["name"].as_str().unwrap_or_default().to_string(), dims)
                })
                .collect()
        })
        .unwrap_or_default();
    // A parameter that is not 2-D, named in the error.
    let not_2d_named = params
        .iter()
        .any(|(n, d)| *d != 2 && msg.contains(&format!("parameter '{n}'")));
    if spec.is_some_and(|s| s.facts.matrices_only) && params.iter().any(|(_, d)| *d != 2) {
        return match e {
            Error::Unsupported(_) | Error::Shape(_) if not_2d_named => Ok(()),
            _ => wrong("an unsupported-parameter error naming a parameter that is not 2-D"),
        };
    }
    // Scion takes vectors or tensors only under some norms.
    let scion = spec.is_some_and(|s| s.name == "scion");
    // A value the reference rejects: the error names one of the case's
    // hyperparameters (`betas` as beta1, beta2, beta3; `nus` as nu1, nu2),
    // or a hyperparameter the given ones make required.
    let named = |field: &str| {
        // `betas[0]` names `betas`, `norm_kwargs.num_steps` `norm_kwargs`.
        let field = field.split(['[', '.']).next().unwrap_or(field);
        let base = field.trim_end_matches(|c: char| c.is_ascii_digit());
        keys.iter().any(|k| {
            k == field || (k.len() > 1 && k.ends_with('s') && k[..k.len() - 1] == *base)
        })
    };
    match e {
        Error::InvalidHparam { field, value, reason, .. }
            if named(field) || (value == "null" && reason.contains("required")) =>
        {
            Ok(())
        }
        // A wrapper's inner optimizer's error, or a value of the wrong type.
        Error::Config { message, .. }
            if keys.iter().any(|k| {
                message.contains(&format!("'{k}'")) || message.contains(&format!("invalid {k} ="))
            }) =>
        {
            Ok(())
        }
        Error::Unsupported(_) if scion && not_2d_named => Ok(()),
        _ => wrong("an invalid-hyperparameter error naming one of the case's hyperparameters"),
    }
}

/// Whether the case's data, gradients or Hessian do not fit its parameters'
/// shapes (lengths, counts).
fn shapes_do_not_fit(raw: &Value) -> bool {
    let Some(params) = raw["params"].as_array() else {
        return false;
    };
    let lens: Vec<Option<usize>> = params
        .iter()
        .map(|p| {
            p["shape"]
                .as_array()
                .map(|d| d.iter().map(|x| x.as_u64().unwrap_or(0) as usize).product())
        })
        .collect();
    if params
        .iter()
        .zip(&lens)
        .any(|(p, n)| p["data"].as_array().map(Vec::len) != *n)
    {
        return true;
    }
    let misfit = |steps: &Value| {
        steps.as_array().is_some_and(|steps| {
            steps.iter().any(|step| match step.as_array() {
                None => false,
                Some(ts) => {
                    ts.len() != lens.len()
                        || ts.iter().zip(&lens).any(|(t, n)| t.as_array().map(Vec::len) != *n)
                }
            })
        })
    };
    misfit(&raw["grads"]) || misfit(&raw["hessian"])
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
