//! `optimist bench`: optimizers x workloads x seeds, AlgoPerf style.
//!
//! Every run trains the workload's model from its seed with the
//! optimizer's suggested hyperparameters (optionally the best of an lr
//! grid, chosen on seed 0 by steps to target, then final metric) and
//! records when the validation target is first met. Per workload and
//! optimizer the report gives the median over seeds (a miss counts as
//! never) of steps and training time to target, the median final metric,
//! the optimizer's update time per step and its state memory. The
//! AlgoPerf performance profile rho(tau) is the fraction of workloads on
//! which an optimizer's median time to target is within tau of the best
//! optimizer's; the score is its mean over tau in [1, 4].

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use optimist_core::registry::registry;
use optimist_workloads::train::{train, RunResult, TrainOptions};
use optimist_workloads::{data::resolve_data_dir, load, suite, LoadOptions};
use serde_json::{json, Value};

use crate::train::{check_steps, parse_json_object, set_threads, MAX_STEPS};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// Micro-benchmarks instead of the workload suite.
    #[command(subcommand)]
    micro: Option<crate::bench_step::BenchCommand>,
    /// `default` (real models on the data embedded in the binary: digits MLP,
    /// character transformer, logistic regression; no download), `synthetic`
    /// (quadratic, Rosenbrock, teacher-student) or `full` (all, including the
    /// workloads that read --data-dir).
    #[arg(long, default_value = "default")]
    suite: String,
    /// Only these workloads (comma-separated; overrides --suite).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Only these optimizers (comma-separated registry names, or `all` for
    /// every registered one; default: 29, the torch catalogue and the rules
    /// whose published claims docs/claims.md tests).
    #[arg(long, value_delimiter = ',')]
    optimizers: Vec<String>,
    /// Seeds per optimizer and workload (0, 1, ...).
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// The first seed: the runs use seeds `first-seed`, `first-seed + 1`, ...
    /// (e.g. seeds that a `tune` study did not use, to check a tuned setting
    /// on held-out seeds).
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Learning-rate multipliers tried on seed 0 (comma-separated); the best
    /// is kept for all seeds. Default: the suggested lr only.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    lr_grid: Vec<f64>,
    /// Multiply every workload's step budget (e.g. 0.5 for a quick look).
    #[arg(long, default_value_t = 1.0)]
    steps_scale: f64,
    /// Extra hyperparameters (JSON) applied to every optimizer that has them.
    #[arg(long, default_value = "{}")]
    hparams: String,
    /// Output directory for report.md, report.json and the plots.
    #[arg(long, default_value = "bench-report")]
    out: PathBuf,
    /// Data directory (default: $OPTIMIST_DATA_DIR, else ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Compute threads per run (sets RAYON_NUM_THREADS; default 1, the fairest for timing).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Runs at the same time, each on its own thread (default 2: the two
    /// cores of a small machine; 1 for the least timing noise).
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Tuned hyperparameters per workload and optimizer (a file written by
    /// `optimist tune`); cells it does not list use the suggested ones.
    #[arg(long)]
    tuned: Option<PathBuf>,
    /// Also evaluate the test split (where the workload has one) at every
    /// evaluation; recorded per run in report.json (`final_test`,
    /// `test_at_target`), never used to choose a setting.
    #[arg(long)]
    eval_test: bool,
    /// Print nothing while running.
    #[arg(long)]
    quiet: bool,
}

/// The most seeds (and lr multipliers) a bench accepts.
const MAX_SEEDS: u64 = 10_000;

/// A command-line error (`Error::Input`) with `e`'s text (shared with `tune`).
pub(crate) fn err(e: impl std::fmt::Display) -> optimist_core::Error {
    optimist_core::Error::Input(e.to_string())
}

/// Median with misses as +infinity.
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::INFINITY;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// The `format` field of a tuned-hyperparameter file.
pub const TUNED_FORMAT: &str = "optimist-tuned-v1";

/// One (workload, optimizer) cell.
struct Cell {
    lr_mult: f64,
    runs: Vec<RunResult>,
    error: Option<String>,
    /// Why the rule does not apply to the workload (no runs then).
    not_applicable: Option<String>,
    /// Its hyperparameters come from the --tuned file.
    tuned: bool,
}

impl Cell {
    fn steps_to_target(&self) -> f64 {
        median(
            self.runs
                .iter()
                .map(|r| r.steps_to_target.map_or(f64::INFINITY, |s| s as f64))
                .collect(),
        )
    }
    fn time_to_target(&self) -> f64 {
        median(
            self.runs
                .iter()
                .map(|r| r.time_to_target.unwrap_or(f64::INFINITY))
                .collect(),
        )
    }
    /// Median final validation metric over the runs that did not diverge.
    fn final_metric(&self) -> f64 {
        let v: Vec<f64> = self
            .runs
            .iter()
            .filter(|r| !r.diverged && r.final_valid.metric.is_finite())
            .map(|r| r.final_valid.metric)
            .collect();
        if v.is_empty() {
            f64::NAN
        } else {
            median(v)
        }
    }
    /// The steps at which runs diverged.
    fn diverged_at(&self) -> Vec<usize> {
        self.runs
            .iter()
            .filter(|r| r.diverged)
            .map(|r| r.steps)
            .collect()
    }
    fn reached(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| r.steps_to_target.is_some())
            .count()
    }
}

fn lr_scaled(overrides: &Value, optimizer: &str, lr_scale: f64, mult: f64) -> Value {
    if mult == 1.0 {
        return overrides.clone();
    }
    let mut o = overrides.clone();
    if let Some(lr) = optimist_workloads::hparams::base_lr(optimizer, overrides, lr_scale) {
        o["lr"] = json!(lr * mult);
    }
    o
}

/// Overrides of `extra` that `optimizer` accepts (its defaults have the key).
fn applicable(extra: &Value, optimizer: &str) -> Value {
    let Some(spec) = optimist_core::registry::find(optimizer) else {
        return json!({});
    };
    let defaults = (spec.defaults)();
    let mut o = serde_json::Map::new();
    if let Some(m) = extra.as_object() {
        for (k, v) in m {
            if defaults.get(k).is_some() {
                o.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(o)
}

fn better(a: &RunResult, b: &RunResult) -> bool {
    // Fewer steps to target, then a better final metric.
    let sa = a.steps_to_target.unwrap_or(usize::MAX);
    let sb = b.steps_to_target.unwrap_or(usize::MAX);
    if sa != sb {
        return sa < sb;
    }
    better_final(a, b)
}

/// Whether `a`'s final validation metric beats `b`'s: a finite one beats a
/// non-finite one, two non-finite ones do not beat each other (shared with
/// `tune`).
pub(crate) fn better_final(a: &RunResult, b: &RunResult) -> bool {
    let (ma, mb) = (a.final_valid.metric, b.final_valid.metric);
    if !ma.is_finite() {
        return false;
    }
    if !mb.is_finite() {
        return true;
    }
    if a.higher_is_better {
        ma > mb
    } else {
        ma < mb
    }
}

/// The workloads of a run: `workloads` when given, else those of the suite
/// `suite_name` (shared with `tune`).
pub(crate) fn workload_names(suite_name: &str, workloads: &[String]) -> optimist_core::Result<Vec<String>> {
    if !workloads.is_empty() {
        return Ok(workloads.to_vec());
    }
    Ok(suite(suite_name).map_err(err)?.into_iter().map(String::from).collect())
}

/// An error naming the first of `optimizers` that the registry does not
/// hold (shared with `tune`).
pub(crate) fn check_optimizers(optimizers: &[String]) -> optimist_core::Result<()> {
    for o in optimizers {
        if optimist_core::registry::find(o).is_none() {
            return Err(err(format!(
                "unknown optimizer \"{o}\" in --optimizers (optimist list prints them)"
            )));
        }
    }
    Ok(())
}

/// The progress line's account of one finished job; `with_final` adds the
/// final metric to a reached target (shared with `tune`).
pub(crate) fn describe(o: &Outcome, with_final: bool) -> String {
    match o {
        Outcome::Done(r) => match r.steps_to_target {
            Some(s) => {
                let mut line = format!("target at step {s} ({:.2} s)", r.time_to_target.unwrap_or(0.0));
                if with_final {
                    line += &format!(", final {:.4e}", r.final_valid.metric);
                }
                line
            }
            None if r.diverged => format!("diverged at step {}", r.steps),
            None => format!("not reached, final {:.4e}", r.final_valid.metric),
        },
        Outcome::NotApplicable(m) => m.clone(),
        Outcome::Failed(e) => format!("error: {e}"),
    }
}

/// The optimizers `bench` runs when `--optimizers` is not given: the torch
/// catalogue and the rules of the published claims that docs/claims.md
/// tests (each is in a plot family below). `--optimizers all` runs the
/// whole registry.
pub const DEFAULT_OPTIMIZERS: &[&str] = &[
    "sgd", "adam", "adamw", "sgd_schedulefree", "adamw_schedulefree", "nadam", "radam", "adamax",
    "adagrad", "rmsprop", "adadelta", "adafactor", "lion", "adabelief", "lamb", "adabound",
    "signsgd", "lookahead", "cautious", "muon", "adamuon", "namo", "namo_d", "sophiah", "sophiag",
    "adamomentum", "adagc", "magma", "skipupdate",
];

/// Registry optimizers grouped into families for the plots (small
/// multiples); a name not listed falls into "other".
pub fn family(name: &str) -> &'static str {
    match name {
        "sgd" | "adam" | "adamw" | "sgd_schedulefree" | "adamw_schedulefree" => {
            "SGD / Adam / schedule-free"
        }
        "nadam" | "radam" | "adamax" | "adagrad" | "rmsprop" | "adadelta" | "adafactor" => {
            "torch catalogue"
        }
        "lion" | "adabelief" | "lamb" | "adabound" | "signsgd" | "lookahead" | "cautious" => {
            "pytorch-optimizer catalogue"
        }
        "muon" | "adamuon" | "namo" | "namo_d" => "matrix optimizers",
        "sophiah" | "sophiag" => "second order",
        "adamomentum" | "adagc" | "magma" | "skipupdate" => "research frontier",
        _ => "other",
    }
}

/// Families in plot order with their members among `optimizers` (at most 8
/// per panel; larger families are split).
fn panels_of(optimizers: &[String]) -> Vec<(String, Vec<usize>)> {
    let mut order: Vec<&'static str> = Vec::new();
    let mut members: BTreeMap<&'static str, Vec<usize>> = BTreeMap::new();
    for (i, o) in optimizers.iter().enumerate() {
        let f = family(o);
        if !order.contains(&f) {
            order.push(f);
        }
        members.entry(f).or_default().push(i);
    }
    let mut out = Vec::new();
    for f in order {
        let m = &members[f];
        let parts = m.len().div_ceil(8);
        for (k, chunk) in m.chunks(m.len().div_ceil(parts)).enumerate() {
            let title = if parts > 1 {
                format!("{f} ({}/{parts})", k + 1)
            } else {
                f.to_string()
            };
            out.push((title, chunk.to_vec()));
        }
    }
    out
}

/// A tuned-hyperparameter file (`optimist tune` writes it).
pub fn read_tuned(path: &Path) -> optimist_core::Result<BTreeMap<(String, String), Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| optimist_core::Error::io(path, e))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| err(format!("{}: not JSON: {e}", path.display())))?;
    if v.get("format").and_then(Value::as_str) != Some(TUNED_FORMAT) {
        return Err(err(format!(
            "{}: not a tuned-hyperparameter file (\"format\" must be \"{}\")",
            path.display(),
            TUNED_FORMAT
        )));
    }
    let entries = v
        .get("entries")
        .and_then(Value::as_array)
        .ok_or_else(|| err(format!("{}: no \"entries\" list", path.display())))?;
    let mut out = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        let (Some(w), Some(o), Some(hp)) = (
            e.get("workload").and_then(Value::as_str),
            e.get("optimizer").and_then(Value::as_str),
            e.get("hparams").filter(|h| h.is_object()),
        ) else {
            return Err(err(format!(
                "{}: entry {i} needs \"workload\", \"optimizer\" and an object \"hparams\"",
                path.display()
            )));
        };
        out.insert((w.to_string(), o.to_string()), hp.clone());
    }
    Ok(out)
}

/// The machine, for reports: CPU model and logical cores.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} logical cores, {}", std::env::consts::ARCH)
}

/// The optimist version, with the git commit when run inside a checkout.
pub fn version() -> String {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty());
    match commit {
        Some(c) => format!("optimist {} (commit {c})", env!("CARGO_PKG_VERSION")),
        None => format!("optimist {}", env!("CARGO_PKG_VERSION")),
    }
}

/// The outcome of one run: its result, or an error that says why (and
/// whether the rule does not apply to the workload).
pub enum Outcome {
    Done(Box<RunResult>),
    NotApplicable(String),
    Failed(String),
}

/// One run to do.
#[derive(Clone)]
pub struct Job {
    pub workload: String,
    pub optimizer: String,
    pub seed: u64,
    pub overrides: Value,
    pub steps: usize,
}

/// Runs `jobs` on `workers` threads (each run single-threaded inside),
/// calling `progress(index, job, outcome)` as each finishes; outcomes in
/// job order.
pub fn run_jobs(
    jobs: &[Job],
    workers: usize,
    data_dir: &Path,
    eval_test: bool,
    progress: &(dyn Fn(usize, &Job, &Outcome) + Sync),
) -> Vec<Outcome> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    let work = || loop {
        let i = next.fetch_add(1, Ordering::SeqCst);
        let Some(job) = jobs.get(i) else { break };
        let outcome = (|| {
            let mut wl = load(&job.workload, data_dir, job.seed, &LoadOptions::default())
                .map_err(|e| Outcome::Failed(e.to_string()))?;
            let opts = TrainOptions {
                steps: Some(job.steps),
                seed: job.seed,
                eval_every: None,
                stop_at_target: false,
                eval_test,
                ..Default::default()
            };
            match train(
                wl.as_mut(),
                &job.optimizer,
                &job.overrides,
                &opts,
                &mut |_| {},
            ) {
                Ok(r) => Ok(Outcome::Done(Box::new(r))),
                Err(optimist_workloads::Error::NotApplicable(m)) => {
                    let prefix = format!("{}: ", job.optimizer);
                    Err(Outcome::NotApplicable(
                        m.strip_prefix(&prefix).unwrap_or(&m).to_string(),
                    ))
                }
                Err(e) => Err(Outcome::Failed(e.to_string())),
            }
        })()
        .unwrap_or_else(|o| o);
        progress(i, job, &outcome);
        if let Ok(mut r) = results.lock() {
            r[i] = Some(outcome);
        }
    };
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(work);
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Failed("the run did not finish".into())))
        .collect()
}

pub fn run(args: &BenchArgs) -> optimist_core::Result<()> {
    if let Some(cmd) = &args.micro {
        return crate::bench_step::run(cmd);
    }
    if args.jobs == 0 {
        return Err(err("--jobs must be at least 1"));
    }
    set_threads(Some(args.threads))?;
    let extra = parse_json_object("--hparams", &args.hparams)?;
    let tuned = match &args.tuned {
        Some(p) => Some(read_tuned(p)?),
        None => None,
    };
    let workloads = workload_names(&args.suite, &args.workloads)?;
    let optimizers: Vec<String> = if args.optimizers.is_empty() {
        DEFAULT_OPTIMIZERS.iter().map(|s| s.to_string()).collect()
    } else if args.optimizers.iter().any(|o| o == "all") {
        registry().iter().map(|s| s.name.to_string()).collect()
    } else {
        args.optimizers.clone()
    };
    check_optimizers(&optimizers)?;
    if args.seeds == 0
        || args.lr_grid.is_empty()
        || args.lr_grid.iter().any(|m| !m.is_finite() || *m <= 0.0)
    {
        return Err(err(
            "--seeds must be at least 1 and --lr-grid positive numbers",
        ));
    }
    if args.seeds > MAX_SEEDS {
        return Err(err(format!(
            "--seeds {}: must be from 1 to {MAX_SEEDS}",
            args.seeds
        )));
    }
    if args.first_seed.checked_add(args.seeds).is_none_or(|end| end > u64::from(u32::MAX)) {
        return Err(err(format!(
            "--first-seed {}: the seeds must stay below {}",
            args.first_seed,
            u32::MAX
        )));
    }
    if args.lr_grid.len() > MAX_SEEDS as usize {
        return Err(err(format!("--lr-grid: at most {MAX_SEEDS} multipliers")));
    }
    if !(args.steps_scale.is_finite() && args.steps_scale > 0.0) {
        return Err(err(format!(
            "--steps-scale {:e}: must be a positive number",
            args.steps_scale
        )));
    }
    let data_dir = resolve_data_dir(args.data_dir.as_deref());
    let started = Instant::now();
    let mut specs = Vec::new();
    for w in &workloads {
        let spec = optimist_workloads::spec(w).map_err(err)?;
        let scaled = (spec.steps as f64 * args.steps_scale).round();
        if scaled > MAX_STEPS as f64 {
            return Err(err(format!(
                "--steps-scale {:e}: {w} would run {scaled:e} steps (at most {MAX_STEPS})",
                args.steps_scale
            )));
        }
        check_steps("--steps-scale", (scaled as usize).max(1))?;
        specs.push(spec);
    }
    let steps_of =
        |wi: usize| ((specs[wi].steps as f64 * args.steps_scale).round() as usize).max(1);
    // The configuration of each cell before the lr multiplier.
    let mut bases: BTreeMap<(String, String), (Value, bool)> = BTreeMap::new();
    for (wi, w) in workloads.iter().enumerate() {
        for o in &optimizers {
            let mut ov = applicable(&extra, o);
            let mut from_tuned = false;
            if let Some(hp) = tuned.as_ref().and_then(|t| t.get(&(w.clone(), o.clone()))) {
                ov = optimist_workloads::hparams::merge(&ov, hp);
                from_tuned = true;
            }
            let base = optimist_workloads::hparams::calibrated(&specs[wi], o, &ov);
            bases.insert((w.clone(), o.clone()), (base, from_tuned));
        }
    }
    let total = workloads.len() * optimizers.len() * (args.seeds as usize + args.lr_grid.len() - 1);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let quiet = args.quiet;
    let progress = |_i: usize, job: &Job, o: &Outcome| {
        let d = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if quiet {
            return;
        }
        let what = describe(o, true);
        eprintln!(
            "[{d}/{total}] {} {} seed {}: {what}",
            job.workload, job.optimizer, job.seed
        );
    };
    // Phase 1: the lr grid on seed 0.
    let mut jobs = Vec::new();
    for (wi, w) in workloads.iter().enumerate() {
        for o in &optimizers {
            let base = &bases[&(w.clone(), o.clone())].0;
            for &m in &args.lr_grid {
                jobs.push(Job {
                    workload: w.clone(),
                    optimizer: o.clone(),
                    seed: args.first_seed,
                    overrides: lr_scaled(base, o, specs[wi].lr_scale, m),
                    steps: steps_of(wi),
                });
            }
        }
    }
    let first = run_jobs(&jobs, args.jobs, &data_dir, args.eval_test, &progress);
    let mut cells: BTreeMap<(String, String), Cell> = BTreeMap::new();
    let mut outcomes = first.into_iter();
    for w in &workloads {
        for o in &optimizers {
            let mut cell = Cell {
                lr_mult: 1.0,
                runs: Vec::new(),
                error: None,
                not_applicable: None,
                tuned: bases[&(w.clone(), o.clone())].1,
            };
            let mut best: Option<RunResult> = None;
            for &m in &args.lr_grid {
                match outcomes.next() {
                    Some(Outcome::Done(r)) if best.as_ref().is_none_or(|b| better(&r, b)) => {
                        cell.lr_mult = m;
                        best = Some(*r);
                    }
                    Some(Outcome::Done(_)) => {}
                    Some(Outcome::NotApplicable(m)) => cell.not_applicable = Some(m),
                    Some(Outcome::Failed(e)) => {
                        cell.error.get_or_insert(e);
                    }
                    None => {}
                }
            }
            if let Some(r) = best {
                cell.error = None;
                cell.runs.push(r);
            }
            cells.insert((w.clone(), o.clone()), cell);
        }
    }
    // Phase 2: the other seeds with the chosen multiplier.
    let mut jobs = Vec::new();
    for (wi, w) in workloads.iter().enumerate() {
        for o in &optimizers {
            let cell = &cells[&(w.clone(), o.clone())];
            if cell.runs.is_empty() {
                continue;
            }
            let ov = lr_scaled(
                &bases[&(w.clone(), o.clone())].0,
                o,
                specs[wi].lr_scale,
                cell.lr_mult,
            );
            for seed in args.first_seed + 1..args.first_seed + args.seeds {
                jobs.push(Job {
                    workload: w.clone(),
                    optimizer: o.clone(),
                    seed,
                    overrides: ov.clone(),
                    steps: steps_of(wi),
                });
            }
        }
    }
    let rest = run_jobs(&jobs, args.jobs, &data_dir, args.eval_test, &progress);
    for (job, outcome) in jobs.iter().zip(rest) {
        let Some(cell) = cells.get_mut(&(job.workload.clone(), job.optimizer.clone())) else {
            continue;
        };
        match outcome {
            Outcome::Done(r) => cell.runs.push(*r),
            Outcome::NotApplicable(m) => cell.not_applicable = Some(m),
            Outcome::Failed(e) => {
                cell.error.get_or_insert(e);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    write_report(args, &workloads, &optimizers, &specs, &cells, elapsed)?;
    if !args.quiet {
        eprintln!(
            "bench: {} runs in {elapsed:.1} s; report in {}",
            done.load(std::sync::atomic::Ordering::SeqCst),
            args.out.display()
        );
    }
    println!("{}", args.out.join("report.md").display());
    Ok(())
}

/// AlgoPerf performance profile of `times[w][s]` (infinity = miss) at `taus`.
fn profile(times: &[Vec<f64>], n_opt: usize, taus: &[f64]) -> Vec<Vec<f64>> {
    let nw = times.len().max(1) as f64;
    (0..n_opt)
        .map(|s| {
            taus.iter()
                .map(|&tau| {
                    times
                        .iter()
                        .filter(|row| {
                            let best = row.iter().cloned().fold(f64::INFINITY, f64::min);
                            row[s].is_finite() && best.is_finite() && row[s] <= tau * best
                        })
                        .count() as f64
                        / nw
                })
                .collect()
        })
        .collect()
}

fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        "not reached".into()
    } else if v.fract() == 0.0 && v.abs() < 1e9 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

fn fmt_metric(v: f64) -> String {
    if !v.is_finite() {
        "nan".into()
    } else if (0.01..1000.0).contains(&v.abs()) {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

fn write_file(path: &Path, text: &str) -> optimist_core::Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| optimist_core::Error::io(path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| optimist_core::Error::io(path, e))
}

fn downsample(v: &[f64], n: usize) -> Vec<(f64, f64)> {
    if v.is_empty() {
        return Vec::new();
    }
    let stride = v.len().div_ceil(n).max(1);
    // Mean over each window, plotted at its last step.
    v.chunks(stride)
        .enumerate()
        .map(|(i, c)| {
            (
                (i * stride + c.len()) as f64,
                c.iter().sum::<f64>() / c.len() as f64,
            )
        })
        .collect()
}

/// Per-step training losses of several seeds, window-averaged to about
/// `n` points: (x, median), (x, min, max).
#[allow(clippy::type_complexity)]
fn seed_band(runs: &[&RunResult], n: usize) -> (Vec<(f64, f64)>, Vec<(f64, f64, f64)>) {
    let curves: Vec<Vec<(f64, f64)>> = runs.iter().map(|r| downsample(&r.losses, n)).collect();
    let len = curves.iter().map(Vec::len).max().unwrap_or(0);
    let mut med = Vec::new();
    let mut band = Vec::new();
    for i in 0..len {
        let pts: Vec<(f64, f64)> = curves.iter().filter_map(|c| c.get(i).copied()).collect();
        let vals: Vec<f64> = pts.iter().map(|p| p.1).filter(|v| v.is_finite()).collect();
        if vals.len() < pts.len() || vals.is_empty() {
            // A seed diverged here: the median stops.
            break;
        }
        let x = pts[0].0;
        let lo = vals.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        med.push((x, median(vals)));
        band.push((x, lo, hi));
    }
    (med, band)
}

fn write_report(
    args: &BenchArgs,
    workloads: &[String],
    optimizers: &[String],
    specs: &[optimist_workloads::WorkloadSpec],
    cells: &BTreeMap<(String, String), Cell>,
    elapsed: f64,
) -> optimist_core::Result<()> {
    use crate::svg::{BandSeries, Panels};
    std::fs::create_dir_all(&args.out).map_err(|e| optimist_core::Error::io(&args.out, e))?;
    let machine = machine();
    let version = version();
    let mut md = String::new();
    md.push_str("# optimist bench report\n\n");
    md.push_str(&format!(
        "- version: {version}\n- machine: {machine}\n- threads: {} run(s) at a time, {} compute thread(s) each\n- suite `{}`: {} workloads x {} optimizers x {} seeds (from seed {}); lr multipliers {:?} (chosen on seed {}); hyperparameters: {}\n- wall time: {:.1} s\n\n",
        args.jobs,
        args.threads,
        if args.workloads.is_empty() { args.suite.as_str() } else { "custom" },
        workloads.len(),
        optimizers.len(),
        args.seeds,
        args.first_seed,
        args.lr_grid,
        args.first_seed,
        match &args.tuned {
            Some(p) => format!("tuned, from `{}` (cells it does not list: suggested)", p.display()),
            None => "suggested (untuned defaults)".into(),
        },
        elapsed
    ));
    md.push_str("Steps and time to target are medians over seeds of the first evaluation at which the validation metric meets the target (a seed that never does counts as never; \"not reached\" when the median is never). Time is training time only (evaluations excluded); with several runs at a time it includes their contention. Final metric: median over the seeds that did not diverge. Update time is the optimizer's in-place update per step; state memory is the optimizer's state buffers. \"not applicable\" rows are rules that update only hidden matrices on a model that has none, or SophiaG on a loss that is not a negative log-likelihood (no labels to sample for its Gauss-Newton curvature) (no numbers are copied from another rule); \"diverged at step N\" means the training loss became NaN or infinite at step N.\n\n");
    let taus: Vec<f64> = (0..=300).map(|i| 1.0 + i as f64 * 0.01).collect();
    let mut time_rows = Vec::new();
    let mut step_rows = Vec::new();
    let mut json_cells = Vec::new();
    let panel_groups = panels_of(optimizers);
    for (wi, w) in workloads.iter().enumerate() {
        let spec = &specs[wi];
        md.push_str(&format!(
            "## {w}\n\n{}. Target: validation {} {} {}, budget {} steps, evaluation every {} steps.\n\n",
            spec.description,
            spec.metric,
            if spec.higher_is_better { ">=" } else { "<=" },
            spec.target,
            ((spec.steps as f64 * args.steps_scale).round() as usize).max(1),
            spec.eval_every
        ));
        md.push_str("| optimizer | steps to target | time to target (s) | seeds reaching | final metric | update (us/step) | state memory (bytes) | hyperparameters |\n|---|---:|---:|---:|---:|---:|---:|---|\n");
        let mut trow = Vec::new();
        let mut srow = Vec::new();
        let mut curves: BTreeMap<String, BandSeries> = BTreeMap::new();
        for o in optimizers {
            let Some(cell) = cells.get(&(w.clone(), o.clone())) else {
                continue;
            };
            if let Some(na) = &cell.not_applicable {
                md.push_str(&format!("| {o} | {na} | | | | | | |\n"));
                trow.push(f64::NAN);
                srow.push(f64::NAN);
                json_cells.push(json!({"workload": w, "optimizer": o, "not_applicable": na}));
                continue;
            }
            if cell.runs.is_empty() {
                md.push_str(&format!(
                    "| {o} | error | | | | | | {} |\n",
                    cell.error.clone().unwrap_or_default().replace('|', "/")
                ));
                trow.push(f64::INFINITY);
                srow.push(f64::INFINITY);
                json_cells.push(json!({"workload": w, "optimizer": o, "error": cell.error}));
                continue;
            }
            let r0 = &cell.runs[0];
            let upd = cell
                .runs
                .iter()
                .map(|r| r.update_time_per_step())
                .sum::<f64>()
                / cell.runs.len() as f64;
            let div = cell.diverged_at();
            let stt = cell.steps_to_target();
            let steps_txt = if !stt.is_finite() && div.len() == cell.runs.len() {
                let mut d = div.clone();
                d.sort_unstable();
                format!("diverged at step {}", d[d.len() / 2])
            } else if !div.is_empty() {
                format!(
                    "{} ({}/{} seeds diverged, at step {})",
                    fmt_num(stt),
                    div.len(),
                    cell.runs.len(),
                    div.iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                fmt_num(stt)
            };
            let fm = cell.final_metric();
            md.push_str(&format!(
                "| {o} | {steps_txt} | {} | {}/{} | {} | {:.1} | {} | `{}`{}{}{} |\n",
                fmt_num(cell.time_to_target()),
                cell.reached(),
                cell.runs.len(),
                if fm.is_nan() {
                    "diverged".to_string()
                } else {
                    fmt_metric(fm)
                },
                upd * 1e6,
                r0.state_bytes,
                // A matrix-only rule: its own group's settings (the rest is AdamW).
                r0.hparams
                    .get("groups")
                    .and_then(|g| g.get(0))
                    .and_then(|g| g.get("hparams"))
                    .unwrap_or(&r0.hparams),
                if r0.built != *o {
                    " (hidden matrices; the rest: adamw)".to_string()
                } else {
                    String::new()
                },
                if cell.lr_mult != 1.0 {
                    format!(" lr x{}", cell.lr_mult)
                } else {
                    String::new()
                },
                if cell.tuned { " (tuned)" } else { "" }
            ));
            trow.push(cell.time_to_target());
            srow.push(stt);
            let runs: Vec<&RunResult> = cell.runs.iter().collect();
            let (points, band) = seed_band(&runs, 100);
            curves.insert(
                o.clone(),
                BandSeries {
                    name: o.clone(),
                    points,
                    band,
                    step: false,
                },
            );
            json_cells.push(json!({
                "workload": w, "optimizer": o, "lr_multiplier": cell.lr_mult, "tuned": cell.tuned,
                "steps_to_target": if stt.is_finite() { json!(stt) } else { Value::Null },
                "time_to_target": if cell.time_to_target().is_finite() { json!(cell.time_to_target()) } else { Value::Null },
                "final_metric": if fm.is_finite() { json!(fm) } else { Value::Null },
                "seeds_reaching": cell.reached(),
                "diverged_at": div,
                "update_time_per_step": upd,
                "state_bytes": r0.state_bytes,
                "runs": cell.runs.iter().map(|r| {
                    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
                    if let Some(m) = v.as_object_mut() {
                        m.insert("losses".into(), json!(downsample(&r.losses, 100)));
                    }
                    v
                }).collect::<Vec<_>>(),
                "error": cell.error,
            }));
        }
        time_rows.push(trow);
        step_rows.push(srow);
        md.push('\n');
        // The y range stops just above the largest starting loss, so that a
        // diverging run does not flatten the others (it leaves the plot).
        let log_y = curves
            .values()
            .flat_map(|s| s.band.iter())
            .all(|p| !p.1.is_finite() || p.1 > 0.0);
        let top = curves
            .values()
            .filter_map(|s| s.points.first())
            .map(|p| p.1)
            .filter(|v| v.is_finite())
            .fold(f64::NEG_INFINITY, f64::max);
        let bottom = curves
            .values()
            .flat_map(|s| s.band.iter())
            .map(|p| p.1)
            .filter(|v| v.is_finite() && (!log_y || *v > 0.0))
            .fold(f64::INFINITY, f64::min);
        let y_range = (top.is_finite() && bottom.is_finite() && bottom < top).then_some({
            (
                bottom,
                if log_y {
                    1.3 * top
                } else {
                    top + 0.1 * (top - bottom)
                },
            )
        });
        let reference = curves.get("adamw").map(|c| BandSeries {
            name: "adamw".into(),
            points: c.points.clone(),
            band: c.band.clone(),
            step: false,
        });
        let panels: Vec<(String, Vec<BandSeries>)> = panel_groups
            .iter()
            .map(|(title, idx)| {
                let ser: Vec<BandSeries> = idx
                    .iter()
                    .filter_map(|&i| curves.remove(&optimizers[i]))
                    .collect();
                (title.clone(), ser)
            })
            .filter(|p| !p.1.is_empty())
            .collect();
        let plot = Panels {
            title: format!(
                "{w}: training loss (median over {} seeds, band = min..max; mean per window)",
                args.seeds
            ),
            x_label: "step".into(),
            y_label: "training loss".into(),
            log_y,
            panels,
            reference,
            hline: None,
            x_range: None,
            y_range,
        };
        let file = format!("loss-{w}.svg");
        write_file(&args.out.join(&file), &plot.to_svg())?;
        md.push_str(&format!("![{w} loss curves]({file})\n\n"));
    }
    // Performance profiles over the workloads where each rule applies.
    let n_opt = optimizers.len();
    let applicable_rows = |rows: &Vec<Vec<f64>>| -> Vec<Vec<f64>> {
        rows.iter()
            .map(|r| {
                r.iter()
                    .map(|v| if v.is_nan() { f64::INFINITY } else { *v })
                    .collect()
            })
            .collect()
    };
    let prof_time = profile(&applicable_rows(&time_rows), n_opt, &taus);
    let prof_steps = profile(&applicable_rows(&step_rows), n_opt, &taus);
    let applies = |i: usize| time_rows.iter().filter(|r| !r[i].is_nan()).count();
    // rho was averaged over all workloads; rescale to those where the rule applies.
    let score = |p: &Vec<f64>, i: usize| {
        let a = applies(i);
        if a == 0 {
            0.0
        } else {
            p.iter().sum::<f64>() / p.len() as f64 * workloads.len() as f64 / a as f64
        }
    };
    md.push_str("## Ranking: AlgoPerf performance-profile score\n\nrho(tau): fraction of the workloads where the rule applies on which its median time to target is within a factor tau of the best optimizer's (a miss counts as never); score = mean of rho over tau in [1, 4] (1 = fastest everywhere, 0 = never within 4x). The steps column is the same on steps to target, which does not depend on the machine. Scores depend on the pool of optimizers compared.\n\n| rank | optimizer | family | score (time) | score (steps) | workloads reached / applicable |\n|---:|---|---|---:|---:|---:|\n");
    let mut ranking: Vec<usize> = (0..n_opt).collect();
    ranking.sort_by(|&a, &b| {
        score(&prof_time[b], b)
            .total_cmp(&score(&prof_time[a], a))
            .then(score(&prof_steps[b], b).total_cmp(&score(&prof_steps[a], a)))
    });
    for (rank, &i) in ranking.iter().enumerate() {
        let reached = time_rows.iter().filter(|r| r[i].is_finite()).count();
        md.push_str(&format!(
            "| {} | {} | {} | {:.3} | {:.3} | {reached}/{} |\n",
            rank + 1,
            optimizers[i],
            family(&optimizers[i]),
            score(&prof_time[i], i),
            score(&prof_steps[i], i),
            applies(i)
        ));
    }
    md.push('\n');
    for (name, prof, label) in [
        ("profile-time.svg", &prof_time, "time"),
        ("profile-steps.svg", &prof_steps, "steps"),
    ] {
        let series_of = |i: usize| BandSeries {
            name: optimizers[i].clone(),
            points: taus
                .iter()
                .cloned()
                .zip(
                    prof[i]
                        .iter()
                        .map(|v| v * workloads.len() as f64 / applies(i).max(1) as f64),
                )
                .collect(),
            band: Vec::new(),
            step: true,
        };
        let reference = optimizers.iter().position(|o| o == "adamw").map(series_of);
        let plot = Panels {
            title: format!("Performance profile ({label} to target)"),
            x_label: "tau (ratio to the best)".into(),
            y_label: "fraction of workloads".into(),
            log_y: false,
            panels: panel_groups
                .iter()
                .map(|(t, idx)| (t.clone(), idx.iter().map(|&i| series_of(i)).collect()))
                .collect(),
            reference,
            hline: None,
            x_range: Some((1.0, 4.0)),
            y_range: Some((0.0, 1.0)),
        };
        write_file(&args.out.join(name), &plot.to_svg())?;
        md.push_str(&format!("![performance profile, {label}]({name})\n\n"));
    }
    write_file(&args.out.join("report.md"), &md)?;
    let report = json!({
        "version": version, "machine": machine,
        "suite": args.suite, "workloads": workloads, "optimizers": optimizers, "seeds": args.seeds, "first_seed": args.first_seed,
        "lr_grid": args.lr_grid, "threads": args.threads, "jobs": args.jobs, "elapsed_s": elapsed,
        "tuned": args.tuned.as_ref().map(|p| p.display().to_string()),
        "specs": specs,
        "cells": json_cells,
        "profile": optimizers.iter().enumerate().map(|(i, o)| json!({
            "optimizer": o, "family": family(o), "score_time": score(&prof_time[i], i), "score_steps": score(&prof_steps[i], i),
            "workloads_applicable": applies(i)
        })).collect::<Vec<_>>(),
    });
    write_file(
        &args.out.join("report.json"),
        &serde_json::to_string_pretty(&report).map_err(err)?,
    )
}

#[cfg(test)]
mod default_set_tests {
    use super::*;

    #[test]
    fn default_optimizers_are_registered_and_in_a_family() {
        for name in DEFAULT_OPTIMIZERS {
            assert!(optimist_core::registry::find(name).is_some(), "{name}");
            assert_ne!(family(name), "other", "{name}");
        }
    }
}
