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

use crate::svg::{Plot, Series};
use crate::train::{check_steps, parse_json_object, set_threads, MAX_STEPS};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// Micro-benchmarks instead of the workload suite.
    #[command(subcommand)]
    micro: Option<crate::bench_step::BenchCommand>,
    /// `default` (synthetic, no data needed) or `full` (adds the real-data workloads).
    #[arg(long, default_value = "default")]
    suite: String,
    /// Only these workloads (comma-separated; overrides --suite).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Only these optimizers (comma-separated registry names; default: all).
    #[arg(long, value_delimiter = ',')]
    optimizers: Vec<String>,
    /// Seeds per optimizer and workload (0, 1, ...).
    #[arg(long, default_value_t = 3)]
    seeds: u64,
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
    /// Compute threads (sets RAYON_NUM_THREADS; default 1, the fairest for timing).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print nothing while running.
    #[arg(long)]
    quiet: bool,
}

/// The most seeds (and lr multipliers) a bench accepts.
const MAX_SEEDS: u64 = 10_000;

fn err(e: impl std::fmt::Display) -> optimist_core::Error {
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

/// One (workload, optimizer) cell.
struct Cell {
    lr_mult: f64,
    runs: Vec<RunResult>,
    error: Option<String>,
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
    fn final_metric(&self) -> f64 {
        median(self.runs.iter().map(|r| r.final_valid.metric).collect())
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

pub fn run(args: &BenchArgs) -> optimist_core::Result<()> {
    if let Some(cmd) = &args.micro {
        return crate::bench_step::run(cmd);
    }
    set_threads(Some(args.threads))?;
    let extra = parse_json_object("--hparams", &args.hparams)?;
    let workloads: Vec<String> = if args.workloads.is_empty() {
        suite(&args.suite)
            .map_err(err)?
            .into_iter()
            .map(String::from)
            .collect()
    } else {
        args.workloads.clone()
    };
    let optimizers: Vec<String> = if args.optimizers.is_empty() {
        registry().iter().map(|s| s.name.to_string()).collect()
    } else {
        args.optimizers.clone()
    };
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
    let total = workloads.len() * optimizers.len() * (args.seeds as usize + args.lr_grid.len() - 1);
    let mut done = 0usize;
    let mut cells: BTreeMap<(String, String), Cell> = BTreeMap::new();
    let mut specs = Vec::new();
    for w in &workloads {
        let spec = optimist_workloads::spec(w).map_err(err)?;
        specs.push(spec.clone());
        let scaled = (spec.steps as f64 * args.steps_scale).round();
        if scaled > MAX_STEPS as f64 {
            return Err(err(format!(
                "--steps-scale {:e}: {w} would run {scaled:e} steps (at most {MAX_STEPS})",
                args.steps_scale
            )));
        }
        let steps = (scaled as usize).max(1);
        check_steps("--steps-scale", steps)?;
        for o in &optimizers {
            let base = optimist_workloads::hparams::calibrated(&spec, o, &applicable(&extra, o));
            let mut cell = Cell {
                lr_mult: 1.0,
                runs: Vec::new(),
                error: None,
            };
            let one = |seed: u64, overrides: &Value| -> Result<RunResult, String> {
                let mut wl =
                    load(w, &data_dir, seed, &LoadOptions::default()).map_err(|e| e.to_string())?;
                let opts = TrainOptions {
                    steps: Some(steps),
                    seed,
                    eval_every: None,
                    stop_at_target: false,
                    eval_test: false,
                    ..Default::default()
                };
                train(wl.as_mut(), o, overrides, &opts, &mut |_| {}).map_err(|e| e.to_string())
            };
            let report = |r: &Result<RunResult, String>, seed: u64, mult: f64, done: usize| {
                if args.quiet {
                    return;
                }
                let what = match r {
                    Ok(r) => match r.steps_to_target {
                        Some(s) => format!(
                            "target at step {s} ({:.2} s), final {:.4e}",
                            r.time_to_target.unwrap_or(0.0),
                            r.final_valid.metric
                        ),
                        None => format!(
                            "not reached{}, final {:.4e}",
                            if r.diverged { " (diverged)" } else { "" },
                            r.final_valid.metric
                        ),
                    },
                    Err(e) => format!("error: {e}"),
                };
                let lr = if mult == 1.0 {
                    String::new()
                } else {
                    format!(" lr x{mult}")
                };
                eprintln!("[{done}/{total}] {w} {o}{lr} seed {seed}: {what}");
            };
            // Learning-rate grid on seed 0.
            let mut first: Option<RunResult> = None;
            for &m in &args.lr_grid {
                let ov = lr_scaled(&base, o, spec.lr_scale, m);
                let r = one(0, &ov);
                done += 1;
                report(&r, 0, m, done);
                match r {
                    Ok(r) => {
                        if first.as_ref().is_none_or(|b| better(&r, b)) {
                            cell.lr_mult = m;
                            first = Some(r);
                        }
                    }
                    Err(e) => {
                        cell.error.get_or_insert(e);
                    }
                }
            }
            if let Some(r) = first {
                cell.error = None;
                cell.runs.push(r);
                let ov = lr_scaled(&base, o, spec.lr_scale, cell.lr_mult);
                for seed in 1..args.seeds {
                    let r = one(seed, &ov);
                    done += 1;
                    report(&r, seed, cell.lr_mult, done);
                    match r {
                        Ok(r) => cell.runs.push(r),
                        Err(e) => {
                            cell.error.get_or_insert(e);
                        }
                    }
                }
            } else {
                done += args.seeds as usize - 1;
            }
            cells.insert((w.clone(), o.clone()), cell);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    write_report(args, &workloads, &optimizers, &specs, &cells, elapsed)?;
    if !args.quiet {
        eprintln!(
            "bench: {} runs in {elapsed:.1} s; report in {}",
            total,
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

fn write_report(
    args: &BenchArgs,
    workloads: &[String],
    optimizers: &[String],
    specs: &[optimist_workloads::WorkloadSpec],
    cells: &BTreeMap<(String, String), Cell>,
    elapsed: f64,
) -> optimist_core::Result<()> {
    std::fs::create_dir_all(&args.out).map_err(|e| optimist_core::Error::io(&args.out, e))?;
    let mut md = String::new();
    md.push_str("# optimist bench report\n\n");
    md.push_str(&format!(
        "Suite `{}`: {} workloads x {} optimizers x {} seeds, lr multipliers {:?} (chosen on seed 0), {} compute thread(s); {:.1} s in all.\n\n",
        if args.workloads.is_empty() { args.suite.as_str() } else { "custom" },
        workloads.len(),
        optimizers.len(),
        args.seeds,
        args.lr_grid,
        args.threads,
        elapsed
    ));
    md.push_str("Steps and time to target are medians over seeds of the first evaluation at which the validation metric meets the target (a seed that never does counts as never; \"not reached\" when the median is never). Time is training time only (evaluations excluded). Update time is the optimizer's in-place update per step; state memory is the optimizer's state buffers.\n\n");
    let taus: Vec<f64> = (0..=300).map(|i| 1.0 + i as f64 * 0.01).collect();
    let mut time_rows = Vec::new();
    let mut step_rows = Vec::new();
    let mut json_cells = Vec::new();
    for (wi, w) in workloads.iter().enumerate() {
        let spec = &specs[wi];
        md.push_str(&format!(
            "## {w}\n\n{}. Target: validation {} {} {}, budget {} steps.\n\n",
            spec.description,
            spec.metric,
            if spec.higher_is_better { ">=" } else { "<=" },
            spec.target,
            ((spec.steps as f64 * args.steps_scale).round() as usize).max(1)
        ));
        md.push_str("| optimizer | steps to target | time to target (s) | seeds reaching | final metric | update (us/step) | state memory (bytes) | hyperparameters |\n|---|---:|---:|---:|---:|---:|---:|---|\n");
        let mut trow = Vec::new();
        let mut srow = Vec::new();
        let mut series = Vec::new();
        for o in optimizers {
            let Some(cell) = cells.get(&(w.clone(), o.clone())) else {
                continue;
            };
            if cell.runs.is_empty() {
                md.push_str(&format!(
                    "| {o} | error | | | | | | {} |\n",
                    cell.error.clone().unwrap_or_default().replace('|', "/")
                ));
                trow.push(f64::INFINITY);
                srow.push(f64::INFINITY);
                continue;
            }
            let r0 = &cell.runs[0];
            let upd = cell
                .runs
                .iter()
                .map(|r| r.update_time_per_step())
                .sum::<f64>()
                / cell.runs.len() as f64;
            md.push_str(&format!(
                "| {o} | {} | {} | {}/{} | {} | {:.1} | {} | `{}`{} |\n",
                fmt_num(cell.steps_to_target()),
                fmt_num(cell.time_to_target()),
                cell.reached(),
                cell.runs.len(),
                fmt_metric(cell.final_metric()),
                upd * 1e6,
                r0.state_bytes,
                r0.hparams,
                if r0.built != *o {
                    format!(" ({})", r0.built)
                } else {
                    String::new()
                }
            ));
            trow.push(cell.time_to_target());
            srow.push(cell.steps_to_target());
            series.push(Series {
                name: o.clone(),
                points: downsample(&r0.losses, 200),
                step: false,
            });
            json_cells.push(json!({
                "workload": w, "optimizer": o, "lr_multiplier": cell.lr_mult,
                "steps_to_target": if cell.steps_to_target().is_finite() { json!(cell.steps_to_target()) } else { Value::Null },
                "time_to_target": if cell.time_to_target().is_finite() { json!(cell.time_to_target()) } else { Value::Null },
                "final_metric": cell.final_metric(),
                "seeds_reaching": cell.reached(),
                "update_time_per_step": upd,
                "state_bytes": r0.state_bytes,
                "runs": cell.runs.iter().map(|r| {
                    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
                    if let Some(m) = v.as_object_mut() {
                        m.insert("losses".into(), json!(downsample(&r.losses, 200)));
                    }
                    v
                }).collect::<Vec<_>>(),
                "error": cell.error,
            }));
        }
        time_rows.push(trow);
        step_rows.push(srow);
        md.push('\n');
        // The y range stops at twice the largest starting loss, so that a
        // diverging run does not flatten the others (it leaves the plot).
        let log_y = series
            .iter()
            .flat_map(|s| s.points.iter())
            .all(|p| !p.1.is_finite() || p.1 > 0.0);
        let top = series
            .iter()
            .filter_map(|s| s.points.first())
            .map(|p| p.1)
            .filter(|v| v.is_finite())
            .fold(f64::NEG_INFINITY, f64::max);
        let bottom = series
            .iter()
            .flat_map(|s| s.points.iter())
            .map(|p| p.1)
            .filter(|v| v.is_finite() && (!log_y || *v > 0.0))
            .fold(f64::INFINITY, f64::min);
        let y_range = (top.is_finite() && bottom.is_finite() && bottom < top).then_some({
            (
                bottom,
                if log_y {
                    2.0 * top
                } else {
                    top + 0.1 * (top - bottom)
                },
            )
        });
        let plot = Plot {
            title: format!("{w}: training loss (seed 0, mean per window)"),
            x_label: "step".into(),
            y_label: "training loss".into(),
            log_y,
            series,
            hline: None,
            x_range: None,
            y_range,
        };
        let file = format!("loss-{w}.svg");
        write_file(&args.out.join(&file), &plot.to_svg())?;
        md.push_str(&format!("![{w} loss curves]({file})\n\n"));
    }
    let n_opt = optimizers.len();
    let prof_time = profile(&time_rows, n_opt, &taus);
    let prof_steps = profile(&step_rows, n_opt, &taus);
    let score = |p: &Vec<f64>| p.iter().sum::<f64>() / p.len() as f64;
    md.push_str("## Performance profile (AlgoPerf)\n\nrho(tau): fraction of workloads on which the optimizer's median time to target is within a factor tau of the best optimizer's; score = mean of rho over tau in [1, 4] (1 = fastest everywhere, 0 = never within 4x). The steps column is the same on steps to target, which does not depend on the machine.\n\n| optimizer | score (time) | score (steps) | workloads reached |\n|---|---:|---:|---:|\n");
    let mut ranking: Vec<usize> = (0..n_opt).collect();
    ranking.sort_by(|&a, &b| score(&prof_time[b]).total_cmp(&score(&prof_time[a])));
    for &i in &ranking {
        let reached = time_rows.iter().filter(|r| r[i].is_finite()).count();
        md.push_str(&format!(
            "| {} | {:.3} | {:.3} | {reached}/{} |\n",
            optimizers[i],
            score(&prof_time[i]),
            score(&prof_steps[i]),
            workloads.len()
        ));
    }
    md.push('\n');
    for (name, prof, label) in [
        ("profile-time.svg", &prof_time, "time"),
        ("profile-steps.svg", &prof_steps, "steps"),
    ] {
        let plot = Plot {
            title: format!("Performance profile ({label} to target)"),
            x_label: "tau (ratio to the best)".into(),
            y_label: "fraction of workloads".into(),
            log_y: false,
            series: optimizers
                .iter()
                .enumerate()
                .map(|(i, o)| Series {
                    name: o.clone(),
                    points: taus.iter().cloned().zip(prof[i].iter().cloned()).collect(),
                    step: true,
                })
                .collect(),
            hline: None,
            x_range: Some((1.0, 4.0)),
            y_range: Some((0.0, 1.0)),
        };
        write_file(&args.out.join(name), &plot.to_svg())?;
        md.push_str(&format!("![performance profile, {label}]({name})\n\n"));
    }
    write_file(&args.out.join("report.md"), &md)?;
    let report = json!({
        "suite": args.suite, "workloads": workloads, "optimizers": optimizers, "seeds": args.seeds,
        "lr_grid": args.lr_grid, "threads": args.threads, "elapsed_s": elapsed,
        "specs": specs,
        "cells": json_cells,
        "profile": optimizers.iter().enumerate().map(|(i, o)| json!({
            "optimizer": o, "score_time": score(&prof_time[i]), "score_steps": score(&prof_steps[i])
        })).collect::<Vec<_>>(),
    });
    write_file(
        &args.out.join("report.json"),
        &serde_json::to_string_pretty(&report).map_err(err)?,
    )
}
