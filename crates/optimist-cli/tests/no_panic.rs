//! Command lines that used to panic: each must give one clear error line on
//! stderr, a non-zero exit and no panic; a closed stdout ends the command
//! quietly.

use std::process::{Command, Output, Stdio};

fn optimist() -> Command {
    Command::new(env!("CARGO_BIN_EXE_optimist"))
}

fn run(args: &[&str]) -> Output {
    optimist()
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

/// One `error: ...` line containing `needle`, exit code 1, no panic, from
/// `optimist` with the words of `args` (split at white space).
fn assert_clean_error(args: &str, needle: &str) {
    let out = run(&args.split_whitespace().collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args}: {stderr}");
    assert!(lines[0].starts_with("error: "), "{args}: {stderr}");
    assert!(lines[0].contains(needle), "{args}: {stderr}");
}

const HUGE: &str = "18446744073709551615";

#[test]
fn hparams_that_are_not_an_object_are_an_error() {
    for optimizer in ["lookahead", "cautious", "magma", "skipupdate", "adamw"] {
        for hp in ["[]", "3", "\"x\"", "null", "true"] {
            assert_clean_error(
                &format!("train --workload quadratic --optimizer {optimizer} --hparams {hp} --quiet"),
                "--hparams",
            );
        }
    }
    assert_clean_error("train --workload quadratic --wrap [] --quiet", "--wrap");
    assert_clean_error("bench --hparams [] --quiet", "--hparams");
}

#[test]
fn huge_counts_are_an_error() {
    assert_clean_error(&format!("train --workload quadratic --steps {HUGE} --quiet"), "--steps");
    assert_clean_error("train --workload quadratic --steps 0 --quiet", "--steps");
    assert_clean_error(&format!("demo --steps {HUGE}"), "--steps");
    assert_clean_error(
        "bench --steps-scale 1e300 --workloads quadratic --optimizers adam --quiet",
        "--steps-scale",
    );
    for bad in ["inf", "NaN", "-1", "0"] {
        assert_clean_error(&format!("bench --steps-scale={bad} --quiet"), "--steps-scale");
    }
    assert_clean_error(&format!("bench --seeds {HUGE} --quiet"), "--seeds");
    assert_clean_error(&format!("bench --first-seed {HUGE} --quiet"), "--first-seed");
    assert_clean_error(&format!("bench step --optimizer adam --repeats {HUGE}"), "--repeats");
    for bad in [format!("{HUGE},{HUGE}"), "9,1".into(), "0,0".into(), "2,3".into(), "x".into()] {
        assert_clean_error(&format!("bench step --optimizer adam --params 10 --pattern {bad}"), "--pattern");
    }
}

#[test]
fn threads_go_through_the_cap_of_set_num_threads() {
    for args in [
        "train --workload quadratic --threads 1000000 --quiet",
        "bench --threads 1000000 --quiet",
        "bench bandwidth --threads 1000000",
        "bench step --optimizer adam --threads 1000000",
        "train --workload quadratic --threads 0 --quiet",
    ] {
        assert_clean_error(args, "4096");
    }
}

/// Runs `args` with stdout a pipe whose reading end is already closed, so
/// the first write fails with EPIPE.
fn run_into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    optimist()
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn assert_quiet_on_closed_pipe(args: &[&str]) {
    let out = run_into_closed_pipe(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "{args:?}: {stderr}");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        // Ended by SIGPIPE, as `yes | head -1` ends `yes`.
        assert_eq!(out.status.signal(), Some(13), "{args:?}: {:?}", out.status);
    }
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    assert_quiet_on_closed_pipe(&["list"]);
    assert_quiet_on_closed_pipe(&["list", "--json"]);
    let case = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/golden/cases/adabelief-defaults-mixed.json"
    );
    assert_quiet_on_closed_pipe(&["replay", case]);
}
