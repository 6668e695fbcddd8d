//! `optimist tune`: hyperparameter tuning by AlgoPerf's external-tuning
//! rules, on the bench workloads.
//!
//! Per (workload, optimizer): a search space derived from the optimizer's
//! hyperparameters ([`search_space`]): the learning rate log-uniform from
//! 0.1x to 10x the suggested (calibrated) value, plus the one or two
//! hyperparameters that matter most for the rule: `1 - beta2`
//! log-uniform in [1e-3, 1e-1] for rules with `betas`, `1 - momentum`
//! log-uniform in [0.01, 0.2] for rules with a `momentum` and no `betas`,
//! and `weight_decay` log-uniform in [1e-5, 1e-1] where the rule has one.
//! Wrappers with an inner optimizer (lookahead, cautious, magma,
//! skipupdate) tune the inner AdamW's lr and weight decay. Points are
//! quasi-random (a scrambled Halton sequence): `trials x studies` points,
//! cut into `studies` studies of `trials` points; study `s` trains every
//! trial with seed `s`. A trial's score is its time to the validation target
//! (or steps, `--score steps`; a miss is infinity; ties by final validation
//! metric); a study's score is its best trial's; the tuned setting is the
//! best trial of the median study (AlgoPerf scores the median over studies).
//! The test split is evaluated and recorded for that trial, never used to
//! choose. The result is a JSON file that `optimist bench --tuned FILE`
//! reads, and an lr-sensitivity SVG per optimizer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use optimist_core::registry::registry;
use optimist_workloads::train::RunResult;
use optimist_workloads::data::resolve_data_dir;
use serde_json::{json, Value};

use crate::bench::{
    better_final, check_optimizers, describe, err, family, machine, run_jobs, version, workload_names, Job, Outcome,
    TUNED_FORMAT,
};
use crate::svg::{BandSeries, Panels};
use crate::train::set_threads;

#[derive(Args)]
pub struct TuneArgs {
    /// Suite to tune (`default`, `synthetic`, `full`).
    #[arg(long, default_value = "default")]
    suite: String,
    /// Only these workloads (comma-separated; overrides --suite).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Only these optimizers (comma-separated registry names; default: all).
    #[arg(long, value_delimiter = ',')]
    optimizers: Vec<String>,
    /// Trials per study.
    #[arg(long, default_value_t = 5)]
    trials: usize,
    /// Studies (each with its own seed: 0, 1, ...).
    #[arg(long, default_value_t = 3)]
    studies: usize,
    /// What a trial is scored by: `time` (training seconds to the validation
    /// target, AlgoPerf) or `steps` (steps to it, machine-independent).
    #[arg(long, default_value = "time")]
    score: String,
    /// Multiply every workload's step budget.
    #[arg(long, default_value_t = 1.0)]
    steps_scale: f64,
    /// The tuned-hyperparameter file to write.
    #[arg(long, default_value = "tuned.json")]
    out: PathBuf,
    /// Directory for the lr-sensitivity plots (one SVG per optimizer).
    #[arg(long, default_value = "tune-plots")]
    plots: PathBuf,
    /// Data directory (default: $OPTIMIST_DATA_DIR, else ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Compute threads per run.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Runs at the same time.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Print nothing while running.
    #[arg(long)]
    quiet: bool,
}

/// One dimension of a search space.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Dim {
    /// What it sets: `lr`, `beta2`, `momentum`, `weight_decay`.
    pub name: &'static str,
    /// The sampled quantity is log-uniform in [lo, hi]: the lr multiplier,
    /// `1 - beta2`, `1 - momentum` or the weight decay.
    pub lo: f64,
    pub hi: f64,
}

/// The search space of `optimizer` (see the module docs).
pub fn search_space(optimizer: &str) -> Vec<Dim> {
    let Some(spec) = optimist_core::registry::find(optimizer) else {
        return Vec::new();
    };
    let d = (spec.defaults)();
    let wrapper = d.get("inner").is_some();
    let mut dims = vec![Dim {
        name: "lr",
        lo: 0.1,
        hi: 10.0,
    }];
    if wrapper {
        dims.push(Dim {
            name: "weight_decay",
            lo: 1e-5,
            hi: 1e-1,
        });
        return dims;
    }
    if d.get("betas")
        .and_then(Value::as_array)
        .is_some_and(|b| b.len() == 2)
    {
        dims.push(Dim {
            name: "beta2",
            lo: 1e-3,
            hi: 1e-1,
        });
    } else if d.get("momentum").is_some() {
        dims.push(Dim {
            name: "momentum",
            lo: 0.01,
            hi: 0.2,
        });
    }
    if d.get("weight_decay").is_some() {
        dims.push(Dim {
            name: "weight_decay",
            lo: 1e-5,
            hi: 1e-1,
        });
    }
    dims
}

/// The `i`-th point (i >= 1) of a Halton sequence in base `b`, rotated by
/// `shift` modulo 1 (Cranley-Patterson; the same shift for every study so
/// that the studies cut one sequence).
fn halton(mut i: usize, b: usize, shift: f64) -> f64 {
    let (mut f, mut r) = (1.0, 0.0);
    while i > 0 {
        f /= b as f64;
        r += f * (i % b) as f64;
        i /= b;
    }
    (r + shift).fract()
}

/// The overrides of trial point `u` (one value in [0, 1) per dim).
fn overrides_of(
    optimizer: &str,
    dims: &[Dim],
    u: &[f64],
    base_lr: f64,
    lr_scale: f64,
) -> (Value, BTreeMap<String, f64>) {
    let spec = optimist_core::registry::find(optimizer);
    let defaults = spec.map(|s| (s.defaults)()).unwrap_or(Value::Null);
    let mut o = json!({});
    let mut inner = optimist_workloads::hparams::suggested("adamw");
    if let Some(lr) = inner.get("lr").and_then(Value::as_f64) {
        inner["lr"] = json!(lr * lr_scale);
    }
    let wrapper = defaults.get("inner").is_some();
    let mut values = BTreeMap::new();
    for (d, &x) in dims.iter().zip(u) {
        let v = (d.lo.ln() + x * (d.hi.ln() - d.lo.ln())).exp();
        values.insert(d.name.to_string(), v);
        let target = if wrapper { &mut inner } else { &mut o };
        match d.name {
            "lr" => target["lr"] = json!(base_lr * v),
            "beta2" => {
                let b1 = defaults["betas"][0].as_f64().unwrap_or(0.9);
                target["betas"] = json!([b1, 1.0 - v]);
            }
            "momentum" => target["momentum"] = json!(1.0 - v),
            "weight_decay" => target["weight_decay"] = json!(v),
            _ => {}
        }
    }
    if wrapper {
        o["inner"] = json!({"optimizer": "adamw", "hparams": inner});
    }
    (o, values)
}

fn score_of(r: &RunResult, by_steps: bool) -> f64 {
    if by_steps {
        r.steps_to_target.map_or(f64::INFINITY, |s| s as f64)
    } else {
        r.time_to_target.unwrap_or(f64::INFINITY)
    }
}

/// Whether trial `a` beats `b`: a lower score, then a better final metric.
fn beats(a: &RunResult, b: &RunResult, by_steps: bool) -> bool {
    let (sa, sb) = (score_of(a, by_steps), score_of(b, by_steps));
    if sa != sb {
        return sa < sb;
    }
    better_final(a, b)
}

pub fn run(args: &TuneArgs) -> optimist_core::Result<()> {
    if args.trials == 0 || args.studies == 0 || args.jobs == 0 {
        return Err(err("--trials, --studies and --jobs must be at least 1"));
    }
    let by_steps = match args.score.as_str() {
        "time" => false,
        "steps" => true,
        other => {
            return Err(err(format!(
                "--score must be time or steps, got \"{other}\""
            )))
        }
    };
    if !args.steps_scale.is_finite() || args.steps_scale <= 0.0 {
        return Err(err("--steps-scale must be a positive number"));
    }
    set_threads(Some(args.threads))?;
    let workloads = workload_names(&args.suite, &args.workloads)?;
    let optimizers: Vec<String> = if args.optimizers.is_empty() {
        registry().iter().map(|s| s.name.to_string()).collect()
    } else {
        args.optimizers.clone()
    };
    check_optimizers(&optimizers)?;
    let mut specs = Vec::new();
    for w in &workloads {
        specs.push(optimist_workloads::spec(w).map_err(err)?);
    }
    let data_dir = resolve_data_dir(args.data_dir.as_deref());
    let started = Instant::now();
    let n = args.trials * args.studies;
    let shifts = [
        0.5f64.sqrt().fract(),
        3f64.sqrt().fract(),
        5f64.sqrt().fract(),
    ];
    let mut jobs = Vec::new();
    let mut meta = Vec::new(); // (wi, oi, study, values)
    for (wi, w) in workloads.iter().enumerate() {
        let spec = &specs[wi];
        let steps = ((spec.steps as f64 * args.steps_scale).round() as usize).max(1);
        for (oi, o) in optimizers.iter().enumerate() {
            let dims = search_space(o);
            let cal = optimist_workloads::hparams::calibrated(spec, o, &json!({}));
            let base = optimist_workloads::hparams::base_lr(o, &cal, spec.lr_scale)
                .unwrap_or(1e-3 * spec.lr_scale);
            for i in 0..n {
                let u: Vec<f64> = [2usize, 3, 5]
                    .iter()
                    .zip(shifts)
                    .take(dims.len())
                    .map(|(&b, s)| halton(i + 1, b, s))
                    .collect();
                let (ov, values) = overrides_of(o, &dims, &u, base, spec.lr_scale);
                let study = i / args.trials;
                jobs.push(Job {
                    workload: w.clone(),
                    optimizer: o.clone(),
                    seed: study as u64,
                    overrides: ov,
                    steps,
                });
                meta.push((wi, oi, study, values));
            }
        }
    }
    let total = jobs.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let quiet = args.quiet;
    let progress = |_i: usize, job: &Job, o: &Outcome| {
        let d = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if quiet {
            return;
        }
        let what = describe(o, false);
        eprintln!(
            "[{d}/{total}] {} {} study {} {}: {what}",
            job.workload, job.optimizer, job.seed, job.overrides
        );
    };
    let outcomes = run_jobs(&jobs, args.jobs, &data_dir, true, &progress);
    // Group by cell.
    let mut entries = Vec::new();
    let mut not_applicable = Vec::new();
    // Per optimizer: (workload, [(lr multiplier, final metric)]).
    type Trials = Vec<(String, Vec<(f64, f64)>)>;
    let mut sens: BTreeMap<String, Trials> = BTreeMap::new();
    let mut idx = 0;
    for (wi, w) in workloads.iter().enumerate() {
        for o in &optimizers {
            let cell: Vec<usize> = (idx..idx + n).collect();
            idx += n;
            let mut studies: Vec<Option<(usize, &RunResult)>> = vec![None; args.studies];
            let mut na = None;
            let mut errors = Vec::new();
            let mut points = Vec::new();
            for &j in &cell {
                let (_, _, study, values) = &meta[j];
                match &outcomes[j] {
                    Outcome::Done(r) => {
                        let m = if r.diverged {
                            f64::NAN
                        } else {
                            r.final_valid.metric
                        };
                        points.push((values.get("lr").copied().unwrap_or(1.0), m));
                        let better = match studies[*study] {
                            None => true,
                            Some((_, b)) => beats(r, b, by_steps),
                        };
                        if better {
                            studies[*study] = Some((j, r));
                        }
                    }
                    Outcome::NotApplicable(m) => na = Some(m.clone()),
                    Outcome::Failed(e) => errors.push(e.clone()),
                }
            }
            if let Some(m) = na {
                not_applicable.push(json!({"workload": w, "optimizer": o, "why": m}));
                continue;
            }
            let mut best: Vec<(usize, &RunResult)> = studies.iter().flatten().copied().collect();
            if best.is_empty() {
                entries.push(json!({"workload": w, "optimizer": o, "error": errors.first()}));
                continue;
            }
            best.sort_by(|a, b| {
                if beats(a.1, b.1, by_steps) {
                    std::cmp::Ordering::Less
                } else if beats(b.1, a.1, by_steps) {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            });
            let study_scores: Vec<Value> = best
                .iter()
                .map(|(_, r)| {
                    let s = score_of(r, by_steps);
                    if s.is_finite() {
                        json!(s)
                    } else {
                        Value::Null
                    }
                })
                .collect();
            let (j, r) = best[(best.len() - 1) / 2];
            let values = &meta[j].3;
            sens.entry(o.clone()).or_default().push((w.clone(), points));
            let median_score = score_of(r, by_steps);
            entries.push(json!({
                "workload": w,
                "optimizer": o,
                "hparams": jobs[j].overrides,
                "sampled": values,
                "study": meta[j].2,
                "studies_best_sorted": study_scores,
                "score": if median_score.is_finite() { json!(median_score) } else { Value::Null },
                "steps_to_target": r.steps_to_target,
                "time_to_target": r.time_to_target,
                "valid_final": r.final_valid,
                "test_at_target": r.test_at_target,
                "test_final": r.final_test,
                "target": specs[wi].target,
                "metric": specs[wi].metric,
            }));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let command = std::iter::once("optimist".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let file = json!({
        "format": TUNED_FORMAT,
        "command": command,
        "version": version(),
        "machine": machine(),
        "threads": args.threads, "jobs": args.jobs,
        "suite": if args.workloads.is_empty() { args.suite.clone() } else { "custom".into() },
        "workloads": workloads,
        "optimizers": optimizers,
        "trials": args.trials, "studies": args.studies, "score": args.score,
        "steps_scale": args.steps_scale,
        "elapsed_s": elapsed,
        "search_spaces": optimizers.iter().map(|o| (o.clone(), json!(search_space(o)))).collect::<serde_json::Map<_, _>>(),
        "entries": entries,
        "not_applicable": not_applicable,
    });
    let text = serde_json::to_string_pretty(&file).map_err(err)?;
    std::fs::write(&args.out, text + "\n").map_err(|e| optimist_core::Error::io(&args.out, e))?;
    // lr sensitivity: final validation metric against the lr multiplier.
    std::fs::create_dir_all(&args.plots).map_err(|e| optimist_core::Error::io(&args.plots, e))?;
    for (o, per_w) in &sens {
        // One plot per workload: their metrics differ in kind and scale.
        for (w, pts) in per_w {
            let wi = workloads.iter().position(|x| x == w).unwrap_or(0);
            let spec = &specs[wi];
            let plot = Panels {
                title: format!(
                    "{o} on {w}: final validation {} against the lr multiplier",
                    spec.metric
                ),
                x_label: "log10(lr / suggested lr)".into(),
                y_label: format!("final validation {}", spec.metric),
                log_y: !spec.higher_is_better && pts.iter().all(|p| !p.1.is_finite() || p.1 > 0.0),
                panels: vec![(
                    format!("{o} ({})", family(o)),
                    vec![sensitivity_series(pts)],
                )],
                reference: None,
                hline: Some((spec.target, "target".into())),
                x_range: Some((-1.0, 1.0)),
                y_range: None,
            };
            let path = args.plots.join(format!("lr-{o}-{w}.svg"));
            std::fs::write(&path, plot.to_svg()).map_err(|e| optimist_core::Error::io(&path, e))?;
        }
    }
    if !args.quiet {
        eprintln!(
            "tune: {total} runs in {elapsed:.1} s; wrote {}",
            args.out.display()
        );
    }
    println!("{}", args.out.display());
    Ok(())
}

/// Trials as (lr multiplier, final metric) -> median and range of the
/// trials in each fifth of the log10 multiplier range [-1, 1].
fn sensitivity_series(pts: &[(f64, f64)]) -> BandSeries {
    let mut points = Vec::new();
    let mut band = Vec::new();
    for b in 0..5 {
        let lo = -1.0 + 0.4 * b as f64;
        let mut v: Vec<f64> = pts
            .iter()
            .filter(|p| {
                let x = p.0.log10();
                x >= lo && (x < lo + 0.4 || (b == 4 && x <= 1.0))
            })
            .map(|p| p.1)
            .filter(|m| m.is_finite())
            .collect();
        if v.is_empty() {
            continue;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let x = lo + 0.2;
        let med = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            0.5 * (v[v.len() / 2 - 1] + v[v.len() / 2])
        };
        points.push((x, med));
        band.push((x, v[0], v[v.len() - 1]));
    }
    BandSeries {
        name: "median of trials per lr bin (band: min..max)".into(),
        points,
        band,
        step: false,
    }
}
