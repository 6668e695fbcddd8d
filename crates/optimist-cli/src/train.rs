//! `optimist train`: one optimizer on one workload, with a progress bar,
//! a JSONL metrics log and a final summary.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use optimist_workloads::train::{train, Record, RunResult, TrainOptions};
use optimist_workloads::{data::resolve_data_dir, load, LoadOptions};
use serde_json::Value;

#[derive(Args)]
pub struct TrainArgs {
    /// Workload (optimist train --list-workloads prints them).
    #[arg(long, default_value = "mnist-mlp")]
    workload: String,
    /// Optimizer registry name (or param_groups with --hparams '{"groups": [...]}').
    #[arg(long, default_value = "adamw")]
    optimizer: String,
    /// Hyperparameters as JSON, on top of the suggested ones.
    #[arg(long, default_value = "{}")]
    hparams: String,
    /// Step budget (default: the workload's).
    #[arg(long)]
    steps: Option<usize>,
    /// Seed of the initialisation and the data order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Data directory (default: $OPTIMIST_DATA_DIR, else ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Write every step and evaluation as JSON lines to this file.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Evaluate every N steps (default: the workload's).
    #[arg(long)]
    eval_every: Option<usize>,
    /// Stop at the first evaluation that meets the target.
    #[arg(long)]
    stop_at_target: bool,
    /// Save a checkpoint (optimizer state, parameters, data position, run
    /// history) to this file, atomically, at the end and every
    /// --checkpoint-every steps.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Checkpoint interval in steps (needs --checkpoint).
    #[arg(long, value_name = "N", requires = "checkpoint")]
    checkpoint_every: Option<usize>,
    /// Continue the run saved in this checkpoint, up to --steps (same
    /// workload, optimizer, --hparams and --seed; the continuation is
    /// bit-exact). With --checkpoint, saves go on to that file.
    #[arg(long, value_name = "FILE")]
    resume: Option<PathBuf>,
    /// sophiag: estimate the Gauss-Newton curvature (labels sampled from the
    /// model's predictions) after every N steps (the official loop's
    /// hess_interval; default 10).
    #[arg(long, value_name = "N")]
    hess_interval: Option<u64>,
    /// Training minibatch size (examples; windows for the language models)
    /// instead of the workload's (digits-mlp 64, shakespeare-mini 16,
    /// mnist-mlp and fashion-cnn 128, shakespeare-char 32); an error for
    /// the full-batch workloads.
    #[arg(long, value_name = "N")]
    batch_size: Option<usize>,
    /// Wrap the optimizer (repeatable, innermost first), e.g. a schedule on
    /// any hyperparameter: '{"wrapper": "scheduled", "schedules": [{"hparam":
    /// "lr", "schedule": {"name": "warmup_cosine", ...}}]}', or
    /// '{"wrapper": "skip_nonfinite"}', '{"wrapper": "grad_accumulation",
    /// "k": 4}', '{"wrapper": "ema", "decay": 0.999}' (EMA, SWA and
    /// schedule-free runs are evaluated at their averaged weights).
    #[arg(long, value_name = "JSON")]
    wrap: Vec<String>,
    /// A gradient stage before every optimizer step (repeatable, run in
    /// order; the wrappers wrap the chain), e.g. '{"name": "clip_grad_norm",
    /// "config": {"max_norm": 1.0}}', '{"name": "zclip"}', '{"name":
    /// "adagc"}', '{"name": "agc"}', '{"name": "clip_per_tensor", "config":
    /// {"max_norm": 1.0}}' (docs/frontier.md).
    #[arg(long, value_name = "JSON")]
    stage: Vec<String>,
    /// Inject gradient spikes (robustness studies): '{"steps": [50, 100],
    /// "factor": 1000}' multiplies the batch loss, and so every gradient, of
    /// those steps by the factor (the logged loss is the true one).
    #[arg(long, value_name = "JSON")]
    grad_spikes: Option<String>,
    /// Compute threads (sets RAYON_NUM_THREADS; default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// List the workloads and exit.
    #[arg(long)]
    list_workloads: bool,
}

fn err(e: impl std::fmt::Display) -> optimist_core::Error {
    optimist_core::Error::Input(e.to_string())
}

/// Sets the compute threads for candle and the optimizers (before any
/// tensor work), through the cap of `optimist_core::exec::set_num_threads`.
pub fn set_threads(threads: Option<usize>) -> optimist_core::Result<()> {
    if let Some(n) = threads {
        optimist_core::exec::set_num_threads(n).map_err(|e| err(format!("--threads {n}: {e}")))?;
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    Ok(())
}

/// The largest step count a command accepts (`--steps`, and a bench
/// budget after `--steps-scale`).
pub const MAX_STEPS: usize = 1_000_000_000;

/// Checks a step count given on the command line.
pub fn check_steps(flag: &str, steps: usize) -> optimist_core::Result<()> {
    if steps == 0 || steps > MAX_STEPS {
        return Err(err(format!(
            "{flag} {steps}: must be from 1 to {MAX_STEPS}"
        )));
    }
    Ok(())
}

/// Parses a JSON option.
pub fn parse_json(what: &str, s: &str) -> optimist_core::Result<Value> {
    serde_json::from_str(s).map_err(|e| err(format!("{what}: invalid JSON: {e}")))
}

/// Parses a JSON option that must be an object (`--hparams`, `--wrap`).
pub fn parse_json_object(what: &str, s: &str) -> optimist_core::Result<Value> {
    let v = parse_json(what, s)?;
    if !v.is_object() {
        return Err(err(format!("{what}: must be a JSON object, got {v}")));
    }
    Ok(v)
}

fn fmt_metric(metric: &str, v: f64) -> String {
    if metric == "accuracy" {
        format!("{v:.4}")
    } else {
        format!("{v:.4e}")
    }
}

pub fn run(args: &TrainArgs) -> optimist_core::Result<()> {
    if args.list_workloads {
        for name in optimist_workloads::WORKLOADS {
            let s = optimist_workloads::spec(name).map_err(err)?;
            println!(
                "{:<22} {} {} {} | {} steps, batch {} | {}",
                s.name,
                s.metric,
                if s.higher_is_better { ">=" } else { "<=" },
                s.target,
                s.steps,
                s.batch_size,
                s.description
            );
        }
        return Ok(());
    }
    set_threads(args.threads)?;
    if let Some(s) = args.steps {
        check_steps("--steps", s)?;
    }
    if args.eval_every == Some(0) {
        return Err(err("--eval-every must be at least 1"));
    }
    let overrides = parse_json_object("--hparams", &args.hparams)?;
    let data_dir = resolve_data_dir(args.data_dir.as_deref());
    let mut workload = load(
        &args.workload,
        &data_dir,
        args.seed,
        &LoadOptions::default(),
    )
    .map_err(err)?;
    if let Some(n) = args.batch_size {
        workload.set_batch_size(n).map_err(err)?;
    }
    let spec = workload.spec().clone();
    let steps = args.steps.unwrap_or(spec.steps);
    let mut log = match &args.log {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| optimist_core::Error::io(p, e))?,
        )),
        None => None,
    };
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(steps as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:30} {pos:>6}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    };
    let mut last_metric = String::from("-");
    let mut log_error: Option<std::io::Error> = None;
    let opts = TrainOptions {
        steps: Some(steps),
        seed: args.seed,
        eval_every: args.eval_every,
        stop_at_target: args.stop_at_target,
        eval_test: true,
        checkpoint: args.checkpoint.clone(),
        checkpoint_every: args.checkpoint_every,
        resume: args.resume.clone(),
        hess_interval: args.hess_interval,
        wrappers: args
            .wrap
            .iter()
            .map(|w| parse_json_object("--wrap", w))
            .collect::<optimist_core::Result<Vec<Value>>>()?,
        stages: args
            .stage
            .iter()
            .map(|w| parse_json_object("--stage", w))
            .collect::<optimist_core::Result<Vec<Value>>>()?,
        grad_spikes: match &args.grad_spikes {
            Some(g) => Some(
                optimist_workloads::train::GradSpikes::from_json(&parse_json_object(
                    "--grad-spikes",
                    g,
                )?)
                .map_err(err)?,
            ),
            None => None,
        },
    };
    if args.checkpoint_every == Some(0) {
        return Err(err("--checkpoint-every must be at least 1"));
    }
    let metric_name = spec.metric;
    let mut on_record = |r: &Record| {
        if let Some(w) = log.as_mut() {
            let line = serde_json::to_string(r).unwrap_or_default();
            if let Err(e) = writeln!(w, "{line}") {
                log_error.get_or_insert(e);
            }
        }
        match r {
            Record::Step {
                step,
                loss,
                train_time,
            } => {
                if *step % 10 == 0 || *step == steps {
                    bar.set_position(*step as u64);
                    let rate = if *train_time > 0.0 {
                        *step as f64 / train_time
                    } else {
                        0.0
                    };
                    bar.set_message(format!(
                        "loss {loss:.4} | {metric_name} {last_metric} | {rate:.0} steps/s"
                    ));
                }
            }
            Record::Eval { valid_metric, .. } => {
                last_metric = fmt_metric(metric_name, *valid_metric);
            }
        }
    };
    let result = train(
        workload.as_mut(),
        &args.optimizer,
        &overrides,
        &opts,
        &mut on_record,
    )
    .map_err(err)?;
    bar.finish_and_clear();
    if let Some(mut w) = log {
        if let Err(e) = w.flush() {
            log_error.get_or_insert(e);
        }
    }
    if let Some(e) = log_error {
        return Err(optimist_core::Error::io(
            args.log.clone().unwrap_or_default(),
            e,
        ));
    }
    if args.json {
        let mut v = serde_json::to_value(&result).map_err(err)?;
        if let Some(o) = v.as_object_mut() {
            o.remove("losses");
            o.remove("evals");
        }
        println!("{v}");
    } else {
        print_summary(&result);
    }
    Ok(())
}

/// Human-readable summary of a run.
pub fn print_summary(r: &RunResult) {
    let cmp = if r.higher_is_better { ">=" } else { "<=" };
    println!(
        "workload      {} ({} {cmp} {})",
        r.workload, r.metric, r.target
    );
    println!("optimizer     {} ({}) {}", r.optimizer, r.built, r.hparams);
    println!("seed          {}", r.seed);
    match (r.steps_to_target, r.time_to_target) {
        (Some(s), Some(t)) => {
            println!("target        reached at step {s} after {t:.2} s of training")
        }
        _ => println!("target        not reached in {} steps", r.steps),
    }
    println!(
        "final         valid {} {}{}",
        r.metric,
        fmt_metric(&r.metric, r.final_valid.metric),
        r.final_test
            .map(|t| format!(", test {} {}", r.metric, fmt_metric(&r.metric, t.metric)))
            .unwrap_or_default()
    );
    if let Some(t) = r.test_at_target {
        println!(
            "at target     test {} {}",
            r.metric,
            fmt_metric(&r.metric, t.metric)
        );
    }
    let rate = if r.train_time > 0.0 {
        r.steps as f64 / r.train_time
    } else {
        0.0
    };
    println!(
        "time          {:.2} s training, {} steps, {rate:.0} steps/s{}",
        r.train_time,
        r.steps,
        if r.diverged { " (diverged)" } else { "" }
    );
    println!(
        "optimizer     {:.1} us per update, state {} bytes, {} parameters",
        r.update_time_per_step() * 1e6,
        r.state_bytes,
        r.num_params
    );
}
