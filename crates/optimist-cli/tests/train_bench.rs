//! `optimist train` and `optimist bench` end to end on synthetic workloads
//! (no data needed): the summary, the JSONL log, the report and its plots.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// `optimist` with the words of `args` (split at white space); arguments
/// that hold spaces or paths are added with `.arg`.
fn optimist(args: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_optimist"));
    cmd.args(args.split_whitespace());
    cmd
}

/// Runs `cmd`, checks that it succeeded and returns its output.
fn succeed(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The JSON document in the file `path`.
fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("optimist-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn train_writes_a_jsonl_log_and_a_summary() {
    let dir = tmp("train");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("run.jsonl");
    let out = succeed(
        optimist("train --workload rosenbrock --optimizer adam --steps 1500 --quiet --threads 1 --log")
            .arg(&log),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("target        reached at step"), "{text}");
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.iter().filter(|l| l["event"] == "step").count(), 1500);
    assert!(lines
        .iter()
        .any(|l| l["event"] == "eval" && l["reached"] == true));
    // Reproducible from the seed: the same command gives the same log.
    let seeded = || {
        let out = optimist(
            "train --workload teacher-student --steps 20 --quiet --json --seed 7 --threads 1",
        )
        .output()
        .unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(seeded()["final_valid"], seeded()["final_valid"]);
    // Bad input is one clear error line, not a panic.
    let bad = optimist("train --workload nope").output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown workload"));
    let bad = optimist("train --workload quadratic --hparams")
        .arg("{\"lr\": -1}")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The step losses of a JSONL log.
fn step_losses(log: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["event"] == "step")
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

#[test]
fn train_resume_continues_bit_exactly() {
    let dir = tmp("resume");
    std::fs::create_dir_all(&dir).unwrap();
    let ck = dir.join("run.safetensors");
    let run = |seed: &str, steps: &str, log: &str, extra: &[&std::ffi::OsStr]| {
        optimist("train --workload teacher-student --optimizer lamb --quiet --json --threads 1")
            .args(["--seed", seed, "--steps", steps, "--log"])
            .arg(dir.join(log))
            .args(extra)
            .output()
            .unwrap()
    };
    let train = |steps: &str, log: &str, extra: &[&std::ffi::OsStr]| {
        let out = run("5", steps, log, extra);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let full = train("40", "full.jsonl", &[]);
    train("17", "a.jsonl", &["--checkpoint".as_ref(), ck.as_os_str()]);
    let resumed = train("40", "b.jsonl", &["--resume".as_ref(), ck.as_os_str()]);
    assert_eq!(full["final_valid"], resumed["final_valid"]);
    assert_eq!(full["steps"], resumed["steps"]);
    let mut joined = step_losses(&dir.join("a.jsonl"));
    joined.extend(step_losses(&dir.join("b.jsonl")));
    assert_eq!(joined.len(), 40);
    assert_eq!(joined, step_losses(&dir.join("full.jsonl")));

    // A different seed is refused with a message naming it.
    let out = run("6", "40", "c.jsonl", &["--resume".as_ref(), ck.as_os_str()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("seed 5"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_writes_the_report_with_plots() {
    let dir = tmp("bench");
    succeed(
        optimist("bench --suite synthetic --optimizers adamw,sgd --seeds 2 --steps-scale 0.2 --quiet --out")
            .arg(&dir),
    );
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for w in ["quadratic", "rosenbrock", "teacher-student"] {
        assert!(md.contains(&format!("## {w}")), "{md}");
        let svg = std::fs::read_to_string(dir.join(format!("loss-{w}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("adamw") && svg.contains("<path"),
            "{w}"
        );
    }
    assert!(md.contains("## Ranking: AlgoPerf performance-profile score"));
    assert!(
        md.contains("- machine: ")
            && md.contains("- threads: ")
            && md.contains("- version: optimist ")
    );
    for f in ["profile-time.svg", "profile-steps.svg"] {
        let svg = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(svg.trim_end().ends_with("</svg>"));
    }
    let json = read_json(&dir.join("report.json"));
    let cells = json["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 6);
    assert!(cells
        .iter()
        .all(|c| c["runs"].as_array().unwrap().len() == 2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The default suite trains real models on the embedded data; a rule that
/// updates only hidden matrices says it does not apply to the logistic
/// regression (no row copied from AdamW), and a diverging run says where.
#[test]
fn bench_default_suite_marks_not_applicable_and_divergence() {
    let dir = tmp("bench-default");
    succeed(
        optimist(
            "bench --optimizers adamw,muon,sgd --workloads breast-cancer-logreg,digits-mlp \
             --seeds 2 --steps-scale 0.1 --quiet --out",
        )
        .arg(&dir),
    );
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("| muon | not applicable: no matrix parameters |"),
        "{md}"
    );
    let json = read_json(&dir.join("report.json"));
    let cells = json["cells"].as_array().unwrap();
    let cell = |w: &str, o: &str| {
        cells
            .iter()
            .find(|c| c["workload"] == w && c["optimizer"] == o)
            .unwrap()
            .clone()
    };
    assert!(cell("breast-cancer-logreg", "muon")["not_applicable"].is_string());
    assert!(cell("breast-cancer-logreg", "muon").get("runs").is_none());
    // On the digits MLP Muon has hidden matrices and runs.
    let m = cell("digits-mlp", "muon");
    assert_eq!(m["runs"].as_array().unwrap().len(), 2);
    assert_ne!(
        m["runs"][0]["losses"],
        cell("digits-mlp", "adamw")["runs"][0]["losses"]
    );
    // The profile counts muon on the one workload where it applies.
    let p = json["profile"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["optimizer"] == "muon")
        .unwrap()
        .clone();
    assert_eq!(p["workloads_applicable"], 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_reports_divergence_with_its_step() {
    let dir = tmp("bench-diverge");
    succeed(
        optimist("bench --optimizers sgd --workloads digits-mlp --seeds 1 --steps-scale 0.25 --hparams")
            .arg(r#"{"lr": 1000.0}"#)
            .args(["--quiet", "--out"])
            .arg(&dir),
    );
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("| sgd | diverged at step "), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `optimist tune` writes a tuned file (one entry per applicable cell, the
/// sampled lr within 0.1x..10x of the suggested one) that `bench --tuned`
/// uses, and lr-sensitivity plots.
#[test]
fn tune_writes_a_file_that_bench_uses() {
    let dir = tmp("tune");
    std::fs::create_dir_all(&dir).unwrap();
    let tuned = dir.join("tuned.json");
    succeed(
        optimist(
            "tune --workloads breast-cancer-logreg --optimizers adamw,muon --trials 3 \
             --studies 2 --steps-scale 0.1 --quiet --out",
        )
        .arg(&tuned)
        .arg("--plots")
        .arg(dir.join("plots")),
    );
    let v = read_json(&tuned);
    assert_eq!(v["format"], "optimist-tuned-v1");
    assert!(v["command"].as_str().unwrap().starts_with("optimist tune"));
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{v}");
    assert_eq!(entries[0]["optimizer"], "adamw");
    let lr = entries[0]["hparams"]["lr"].as_f64().unwrap();
    // Suggested AdamW lr 1e-3 times the workload's lr scale 10.
    assert!((1e-3..=0.1).contains(&lr), "{lr}");
    assert_eq!(v["not_applicable"][0]["optimizer"], "muon");
    assert!(dir
        .join("plots/lr-adamw-breast-cancer-logreg.svg")
        .is_file());
    let report = dir.join("report");
    succeed(
        optimist(
            "bench --workloads breast-cancer-logreg --optimizers adamw --seeds 1 \
             --steps-scale 0.1 --quiet --tuned",
        )
        .arg(&tuned)
        .arg("--out")
        .arg(&report),
    );
    let r = read_json(&report.join("report.json"));
    assert_eq!(r["cells"][0]["tuned"], true);
    assert_eq!(
        r["cells"][0]["runs"][0]["hparams"]["lr"].as_f64().unwrap(),
        lr
    );
    // A file that is not a tuned file is an error naming it.
    std::fs::write(dir.join("bad.json"), "{}").unwrap();
    let out = optimist("bench --tuned")
        .arg(dir.join("bad.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.json"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `optimist train` on the shipped test slices of MNIST, and `optimist data
/// check`, which names them as slices (they are not the datasets).
#[test]
fn train_reads_the_test_slices_and_data_check_names_them() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../optimist-workloads/tests/fixtures/data");
    let out = succeed(
        optimist("train --workload mnist-mlp --optimizer adamw --steps 5 --eval-every 5 --quiet")
            .arg("--data-dir")
            .arg(&dir),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mnist-mlp"), "{text}");
    let out = optimist("data check").arg("--data-dir").arg(&dir).output().unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("mnist/train-images-idx3-ubyte.gz"))
        .unwrap_or_default();
    assert!(line.contains("a test slice"), "{text}");
    let line = text.lines().find(|l| l.starts_with("tabular/breast_cancer.csv")).unwrap_or_default();
    assert!(line.ends_with(" ok"), "{text}");
}
