//! `optimist bench`: the commands run, print one JSON line with the fields
//! the side-by-side script reads, and reject bad input with an error.

use std::process::Command;

use serde_json::Value;

/// Runs `optimist` with the words of `args` (split at white space):
/// success, stdout, stderr.
fn optimist(args: &str) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_optimist"))
        .args(args.split_whitespace())
        .output()
        .expect("run optimist");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_line(stdout: &str) -> Value {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line expected: {stdout}");
    serde_json::from_str(lines[0]).expect("valid JSON")
}

#[test]
fn bench_step_reports_time_bytes_and_fraction() {
    let (ok, out, err) = optimist(
        "bench step --optimizer adamw --params 50000 --tensors 7 --threads 2 --repeats 3 --warmup 1 --bandwidth",
    );
    assert!(ok, "{err}");
    let v = json_line(&out);
    assert_eq!(v["bench"], "step");
    assert_eq!(v["optimizer"], "adamw");
    assert_eq!(v["tensors"], 7);
    assert_eq!(v["bytes_per_param"], 28.0);
    assert_eq!(v["state_bytes_per_param"], 8.0);
    assert_eq!(v["pattern"], "4,3");
    for k in [
        "seconds_median",
        "gbps",
        "bandwidth_gbps",
        "fraction_of_bandwidth",
    ] {
        assert!(
            v[k].as_f64().is_some_and(|x| x > 0.0 && x.is_finite()),
            "{k}: {v}"
        );
    }
}

#[test]
fn bench_step_with_compressed_state_counts_its_bytes() {
    let (ok, out, err) = optimist(
        "bench step --optimizer adamw --params 65536 --repeats 2 --state-dtype q8 --q8-block 2048",
    );
    assert!(ok, "{err}");
    let v = json_line(&out);
    let s = v["state_bytes_per_param"].as_f64().unwrap();
    assert!((s - 2.0 * (1.0 + 4.0 / 2048.0)).abs() < 1e-12, "{v}");
}

#[test]
fn bench_bandwidth_reports_pattern_bytes() {
    let (ok, out, err) = optimist(
        "bench bandwidth --params 100000 --threads 2 --pattern 3,2 --repeats 3",
    );
    assert!(ok, "{err}");
    let v = json_line(&out);
    assert_eq!(v["pattern"], "3,2");
    assert_eq!(v["bytes_per_param"], 20);
    assert!(v["gbps"].as_f64().is_some_and(|x| x > 0.0));
}

#[test]
fn bench_rejects_bad_input() {
    for (args, needle) in [
        ("bench step --optimizer nosuch", "nosuch"),
        ("bench step --optimizer adamw --state-dtype fp8", "fp8"),
        (r#"bench step --optimizer adamw --hparams {"lr":-1}"#, "lr"),
        ("bench step --optimizer adamw --params 5 --tensors 9", "tensors"),
        ("bench bandwidth --pattern 2,5", "pattern"),
    ] {
        let (ok, _, err) = optimist(args);
        assert!(!ok, "{args} should fail");
        assert!(err.contains(needle), "{args}: {err}");
    }
}

#[test]
fn bench_adapter_times_the_candle_adapter_against_the_engine() {
    let (ok, out, err) = optimist(
        "bench adapter --workloads digits-mlp,shakespeare-mini --threads 1 --repeats 3 --warmup 1",
    );
    assert!(ok, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("valid JSON"))
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (v, name) in lines.iter().zip(["digits-mlp", "shakespeare-mini"]) {
        assert_eq!(v["bench"], "adapter");
        assert_eq!(v["workload"], name);
        assert!(v["params"].as_u64().is_some_and(|n| n > 1000), "{v}");
        assert!(v["tensors"].as_u64().is_some_and(|n| n >= 2), "{v}");
        for k in [
            "engine_seconds_median",
            "adapter_seconds_median",
            "adapter_over_engine",
            "candle_adamw_seconds_median",
            "candle_adamw_over_adapter",
        ] {
            assert!(
                v[k].as_f64().is_some_and(|x| x > 0.0 && x.is_finite()),
                "{k}: {v}"
            );
        }
    }
    // No candle reference for other rules.
    let (ok, out, err) = optimist(
        "bench adapter --workloads digits-mlp --optimizer lion --repeats 2 --warmup 0",
    );
    assert!(ok, "{err}");
    let v = json_line(&out);
    assert_eq!(v["optimizer"], "lion");
    assert!(v.get("candle_adamw_seconds_median").is_none(), "{v}");
    // Bad input is an error naming it.
    let (ok, _, err) = optimist("bench adapter --workloads no-such-workload --repeats 1");
    assert!(!ok && err.contains("no-such-workload"), "{err}");
    let (ok, _, err) = optimist("bench adapter --workloads digits-mlp --optimizer nope --repeats 1");
    assert!(!ok && err.contains("nope"), "{err}");
}
