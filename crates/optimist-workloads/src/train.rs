//! The training loop: steps, evaluations on the workload's interval, the
//! first step at which the validation target is met, and timings.
//!
//! Timing follows AlgoPerf: the clock runs only while training (batch,
//! forward, backward, curvature estimate, update); evaluations are not
//! counted. The optimizer's own share (the in-place update) is measured
//! separately. A run whose training loss becomes non-finite stops and is
//! marked diverged. Evaluations happen at the optimizer's evaluation point
//! (schedule-free's averaged iterate, EMA/SWA weights), after which the
//! training values are restored exactly.
//!
//! **Checkpoints and resuming.** With [`TrainOptions::checkpoint`] the run
//! saves, every [`TrainOptions::checkpoint_every`] steps and at the end, the
//! optimizer's state, the parameters, the data generator's state, the data
//! pipeline's position and the run's history, atomically. With
//! [`TrainOptions::resume`] a run continues from such a file: the workload,
//! the optimizer, its configuration and the seed must be the ones saved (an
//! error names the difference), and the continued run takes bit-for-bit the
//! same steps as a run that was never interrupted.
//!
//! **Curvature.** Sophia-H gets Hutchinson estimates of the Hessian
//! diagonal from the batch loss (steps 1, 1 + k, ...; k = its
//! `update_period`). SophiaG gets the Gauss-Newton-Bartlett estimate of the
//! Gauss-Newton diagonal as the official training loop makes it: after
//! every k-th step (k = [`TrainOptions::hess_interval`], 10 by default),
//! labels are sampled from the model's softmax (sigmoid for the logistic
//! regression) on the current batch
//! ([`Workload::sampled_batch_loss`]), and the gradient `g_hat` of the
//! loss on them enters SophiaG's curvature EMA as `g_hat * g_hat`, scaled
//! in its step by `bs`, which defaults here to the workload's number of
//! predictions per batch ([`Workload::sampled_label_count`]: examples, or
//! tokens). The labels are drawn from a generator derived from the seed and
//! saved in checkpoints. On workloads whose loss is not a negative
//! log-likelihood (the synthetic ones) there are no labels to sample:
//! SophiaG is reported as not applicable there ([`Error::NotApplicable`]),
//! not run without its curvature.

use std::path::PathBuf;
use std::time::Instant;

use optimist_core::checkpoint::Checkpoint;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::hparams::build_for;
use crate::{Error, Eval, Result, Rng, Split, Workload};

/// The run's history as saved in a checkpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedRun {
    workload: String,
    optimizer: String,
    seed: u64,
    step: usize,
    train_time: f64,
    steps_to_target: Option<usize>,
    time_to_target: Option<f64>,
    test_at_target: Option<Eval>,
    losses: Vec<f32>,
    evals: Vec<EvalPoint>,
    data_rng: Value,
    data_state: Value,
    /// [`TrainOptions::hess_interval`] of the run (absent in checkpoints
    /// written before it existed: the default).
    #[serde(default)]
    hess_interval: Option<u64>,
}

/// What is saved of the run (borrowed).
struct SavedRunRef<'a> {
    step: usize,
    train_time: f64,
    steps_to_target: Option<usize>,
    time_to_target: Option<f64>,
    test_at_target: Option<Eval>,
    losses: &'a [f64],
    evals: &'a [EvalPoint],
}

/// How to run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Step budget (default: the workload's).
    pub steps: Option<usize>,
    /// Seed of the initialisation, the data order and the probes.
    pub seed: u64,
    /// Evaluation interval (default: the workload's).
    pub eval_every: Option<usize>,
    /// Stop at the first evaluation that meets the target.
    pub stop_at_target: bool,
    /// Evaluate the test split too (when the workload has one).
    pub eval_test: bool,
    /// Save a checkpoint to this file (atomically) every
    /// `checkpoint_every` steps and when the run ends.
    pub checkpoint: Option<PathBuf>,
    /// Checkpoint interval in steps (default: only at the end).
    pub checkpoint_every: Option<usize>,
    /// Continue from this checkpoint (written by a run of the same
    /// workload, optimizer, configuration and seed).
    pub resume: Option<PathBuf>,
    /// Wrappers around the optimizer, innermost first, as
    /// `{"wrapper": KIND, ...}` (`optimist_core::wrappers::wrap`): schedules
    /// for any hyperparameter, skip non-finite steps, accumulation, EMA, SWA.
    pub wrappers: Vec<Value>,
    /// For a rule that consumes a Gauss-Newton diagonal (sophiag): the
    /// curvature is estimated after every this many steps (the official
    /// loop's `hess_interval`; default 10). Rules with an `update_period`
    /// hyperparameter (sophiah) take their period from it; this option is
    /// an error for them and ignored by rules without curvature.
    pub hess_interval: Option<u64>,
    /// Gradient stages run before every step of the optimizer (clipping:
    /// `clip_grad_norm`, `zclip`, `adagc`, `agc`, `clip_per_tensor`), as
    /// `{"name": ..., "config": {...}}` (`optimist_core::stages::build`),
    /// in order; the wrappers wrap the chain.
    pub stages: Vec<Value>,
    /// Injected gradient spikes (fault injection for robustness studies).
    pub grad_spikes: Option<GradSpikes>,
}

/// Gradient spikes injected into a run: at each listed step the batch loss
/// is multiplied by `factor` before backpropagation, so every gradient of
/// that step is `factor` times the true one (the logged training loss is
/// the true one).
#[derive(Debug, Clone, serde::Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GradSpikes {
    /// Steps (1-based) whose gradients are scaled.
    pub steps: Vec<usize>,
    /// The scale, finite and positive.
    pub factor: f64,
}

impl GradSpikes {
    /// Parses and checks `{"steps": [...], "factor": F}`.
    pub fn from_json(v: &Value) -> Result<Self> {
        let g: GradSpikes = serde_json::from_value(v.clone())
            .map_err(|e| Error::Input(format!("grad_spikes {v}: {e}")))?;
        if !(g.factor.is_finite() && g.factor > 0.0 && g.factor <= f32::MAX as f64) {
            return Err(Error::Input(format!(
                "grad_spikes: factor {} must be finite, positive and at most f32::MAX",
                g.factor
            )));
        }
        if g.steps.contains(&0) {
            return Err(Error::Input("grad_spikes: steps count from 1".into()));
        }
        Ok(g)
    }

    fn factor_at(&self, step: usize) -> f64 {
        if self.steps.contains(&step) {
            self.factor
        } else {
            1.0
        }
    }
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            steps: None,
            seed: 0,
            eval_every: None,
            stop_at_target: false,
            eval_test: true,
            checkpoint: None,
            checkpoint_every: None,
            resume: None,
            wrappers: Vec::new(),
            hess_interval: None,
            stages: Vec::new(),
            grad_spikes: None,
        }
    }
}

/// One line of the metrics log.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Record {
    /// After a training step.
    Step {
        step: usize,
        loss: f64,
        /// Training seconds so far.
        train_time: f64,
    },
    /// An evaluation.
    Eval {
        step: usize,
        train_time: f64,
        valid_loss: f64,
        valid_metric: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        test_loss: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        test_metric: Option<f64>,
        reached: bool,
    },
}

/// An evaluation point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalPoint {
    pub step: usize,
    pub train_time: f64,
    pub valid: Eval,
    pub test: Option<Eval>,
}

/// The outcome of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub workload: String,
    pub optimizer: String,
    /// What was built (`param_groups` for matrix-only rules) and with what.
    pub built: String,
    pub hparams: Value,
    pub seed: u64,
    pub metric: String,
    pub target: f64,
    pub higher_is_better: bool,
    /// Steps taken.
    pub steps: usize,
    /// First evaluated step at which the validation metric met the target.
    pub steps_to_target: Option<usize>,
    /// Training seconds up to that step.
    pub time_to_target: Option<f64>,
    /// The validation evaluation at the end.
    pub final_valid: Eval,
    /// The test evaluation at the end (when evaluated).
    pub final_test: Option<Eval>,
    /// Test evaluation at the step the target was reached.
    pub test_at_target: Option<Eval>,
    /// Training seconds (evaluations excluded).
    pub train_time: f64,
    /// Seconds spent in the optimizer's updates.
    pub update_time: f64,
    /// Optimizer state in bytes.
    pub state_bytes: usize,
    /// Trainable values.
    pub num_params: usize,
    /// The training loss was not finite.
    pub diverged: bool,
    /// Training loss after every step.
    pub losses: Vec<f64>,
    /// Every evaluation.
    pub evals: Vec<EvalPoint>,
}

impl RunResult {
    /// Mean seconds per optimizer update.
    pub fn update_time_per_step(&self) -> f64 {
        if self.steps == 0 {
            0.0
        } else {
            self.update_time / self.steps as f64
        }
    }
}

/// Trains `workload` with `optimizer` (registry name) and `overrides` on
/// top of the suggested hyperparameters, calling `on_record` for every step
/// and evaluation.
pub fn train(
    workload: &mut dyn Workload,
    optimizer: &str,
    overrides: &Value,
    opts: &TrainOptions,
    on_record: &mut dyn FnMut(&Record),
) -> Result<RunResult> {
    let spec = workload.spec().clone();
    let labels = workload.sampled_label_count();
    let mut overrides = crate::hparams::calibrated(&spec, optimizer, overrides);
    // SophiaG's bs is the B of its Gauss-Newton-Bartlett estimate: the
    // number of predictions the batch loss averages, unless given.
    let gauss_newton = optimist_core::registry::find(optimizer).is_some_and(|s| {
        s.facts.curvature == optimist_core::optimizer::Curvature::GaussNewtonDiagonal
    });
    if let (true, Some(n)) = (gauss_newton, labels) {
        if overrides.is_null() {
            overrides = json!({});
        }
        if let Some(o) = overrides.as_object_mut() {
            o.entry("bs").or_insert(json!(n));
        }
    }
    let (mut opt, built, hparams) = build_for(
        workload.varmap(),
        optimizer,
        &overrides,
        spec.lr_scale,
        opts.seed,
        &opts.stages,
        &opts.wrappers,
    )?;
    match opt.curvature().cloned() {
        Some(c) if c.kind == optimist_candle::CurvatureKind::GaussNewtonBartlett => {
            if labels.is_none() {
                return Err(Error::NotApplicable(format!(
                    "{optimizer}: not applicable: the loss of {} is not a negative \
                     log-likelihood, so there are no labels to sample for the \
                     Gauss-Newton-Bartlett curvature",
                    spec.name
                )));
            }
            if let Some(k) = opts.hess_interval {
                if k == 0 {
                    return Err(Error::Input("hess_interval must be at least 1".into()));
                }
                opt.set_curvature(Some(optimist_candle::CurvatureConfig {
                    update_period: k,
                    ..c
                }));
            }
        }
        _ if opts.hess_interval.is_some() => {
            return Err(Error::Input(format!(
                "hess_interval applies to rules that consume a Gauss-Newton diagonal \
                 (sophiag), not to {optimizer} (sophiah takes its period from its \
                 update_period hyperparameter)"
            )));
        }
        _ => {}
    }
    let built = opts.wrappers.iter().fold(built, |inner, w| {
        format!("{}({inner})", w["wrapper"].as_str().unwrap_or("wrapper"))
    });
    let steps = opts.steps.unwrap_or(spec.steps);
    let eval_every = opts.eval_every.unwrap_or(spec.eval_every).max(1);
    let eval_test = opts.eval_test && workload.has_test();
    let mut rng = Rng::derive(opts.seed, "data");
    let mut losses = Vec::with_capacity(steps.min(1 << 20));
    let mut evals: Vec<EvalPoint> = Vec::new();
    let mut train_time = 0.0f64;
    let mut steps_to_target = None;
    let mut time_to_target = None;
    let mut test_at_target = None;
    let mut diverged = false;
    let mut taken = 0;

    // Evaluates at the optimizer's evaluation point (schedule-free's
    // averaged iterate, EMA/SWA weights), restoring the training values
    // exactly afterwards.
    let evaluate = |opt: &mut optimist_candle::OptimistOptimizer,
                    w: &dyn Workload,
                    step: usize,
                    train_time: f64|
     -> Result<EvalPoint> {
        let (valid, test) = opt.with_eval_weights(|| -> Result<(Eval, Option<Eval>)> {
            let valid = w.evaluate(Split::Valid)?;
            let test = if eval_test {
                Some(w.evaluate(Split::Test)?)
            } else {
                None
            };
            Ok((valid, test))
        })?;
        Ok(EvalPoint {
            step,
            train_time,
            valid,
            test,
        })
    };
    let record_eval = |p: &EvalPoint, on_record: &mut dyn FnMut(&Record)| {
        on_record(&Record::Eval {
            step: p.step,
            train_time: p.train_time,
            valid_loss: p.valid.loss,
            valid_metric: p.valid.metric,
            test_loss: p.test.map(|e| e.loss),
            test_metric: p.test.map(|e| e.metric),
            reached: spec.reached(p.valid.metric),
        })
    };

    let mut start = 1;
    if let Some(path) = &opts.resume {
        let ck = Checkpoint::read(path)?;
        let run: SavedRun = ck
            .extra
            .get("user")
            .and_then(|u| u.get("train_run"))
            .cloned()
            .ok_or_else(|| {
                Error::Input(format!(
                    "{}: not a checkpoint of `optimist train` (no run history)",
                    path.display()
                ))
            })
            .and_then(|v| {
                serde_json::from_value(v)
                    .map_err(|e| Error::Input(format!("{}: run history: {e}", path.display())))
            })?;
        let mismatch = |what: &str, saved: &dyn std::fmt::Display, now: &dyn std::fmt::Display| {
            Error::Input(format!(
                "{}: saved by a run with {what} {saved}, this run has {now}",
                path.display()
            ))
        };
        if run.workload != spec.name {
            return Err(mismatch("workload", &run.workload, &spec.name));
        }
        if run.optimizer != optimizer {
            return Err(mismatch("optimizer", &run.optimizer, &optimizer));
        }
        if run.seed != opts.seed {
            return Err(mismatch("seed", &run.seed, &opts.seed));
        }
        if run.hess_interval != opts.hess_interval {
            let show = |k: Option<u64>| k.map_or("the default".to_string(), |k| k.to_string());
            return Err(mismatch(
                "hess_interval",
                &show(run.hess_interval),
                &show(opts.hess_interval),
            ));
        }
        if run.step > steps {
            return Err(Error::Input(format!(
                "{}: the checkpoint is at step {}, past the step budget {steps}",
                path.display(),
                run.step
            )));
        }
        rng = Rng::from_state(&run.data_rng)
            .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
        opt.restore_checkpoint(&ck)
            .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
        workload.set_data_state(&run.data_state)?;
        taken = run.step;
        start = run.step + 1;
        train_time = run.train_time;
        steps_to_target = run.steps_to_target;
        time_to_target = run.time_to_target;
        test_at_target = run.test_at_target;
        losses = run.losses.iter().map(|&l| l as f64).collect();
        evals = run.evals;
    } else {
        let first = evaluate(&mut opt, &*workload, 0, 0.0)?;
        record_eval(&first, on_record);
        if spec.reached(first.valid.metric) {
            steps_to_target = Some(0);
            time_to_target = Some(0.0);
            test_at_target = first.test;
        }
        evals.push(first);
    }
    let save = |opt: &optimist_candle::OptimistOptimizer,
                w: &dyn Workload,
                rng: &Rng,
                run: SavedRunRef<'_>|
     -> Result<()> {
        let Some(path) = &opts.checkpoint else {
            return Ok(());
        };
        let run = json!({
            "workload": spec.name,
            "optimizer": optimizer,
            "seed": opts.seed,
            "step": run.step,
            "train_time": run.train_time,
            "steps_to_target": run.steps_to_target,
            "time_to_target": run.time_to_target,
            "test_at_target": run.test_at_target,
            "losses": run.losses.iter().map(|&l| l as f32).collect::<Vec<f32>>(),
            "evals": run.evals,
            "data_rng": rng.state(),
            "data_state": w.data_state(),
            "hess_interval": opts.hess_interval,
        });
        opt.save_checkpoint(path, json!({ "train_run": run }))?;
        Ok(())
    };
    let checkpoint_every = opts.checkpoint_every.unwrap_or(0);
    // Saves the run as it stands after `step` (when checkpointing).
    macro_rules! save_now {
        ($step:expr) => {{
            let run = SavedRunRef {
                step: $step,
                train_time,
                steps_to_target,
                time_to_target,
                test_at_target,
                losses: &losses,
                evals: &evals,
            };
            save(&opt, &*workload, &rng, run)?;
        }};
    }
    for step in start..=steps {
        if steps_to_target.is_some() && opts.stop_at_target {
            break;
        }
        let t0 = Instant::now();
        workload.next_batch(&mut rng)?;
        let w: &dyn Workload = &*workload;
        let spike = opts.grad_spikes.as_ref().map_or(1.0, |g| g.factor_at(step));
        let scaled = |l: candle_core::Result<candle_core::Tensor>| {
            if spike == 1.0 {
                l
            } else {
                l.and_then(|l| l.affine(spike, 0.0))
            }
        };
        let loss = match labels {
            Some(n) => opt.backward_step_with_sampled(
                || scaled(w.batch_loss()),
                |r| w.sampled_batch_loss(r),
                n,
            )?,
            None => opt.backward_step_with(|| scaled(w.batch_loss()))?,
        };
        let loss = loss.to_scalar::<f32>()? as f64 / spike;
        train_time += t0.elapsed().as_secs_f64();
        taken = step;
        losses.push(loss);
        on_record(&Record::Step {
            step,
            loss,
            train_time,
        });
        if !loss.is_finite() {
            diverged = true;
            break;
        }
        if step % eval_every == 0 || step == steps {
            let p = evaluate(&mut opt, &*workload, step, train_time)?;
            record_eval(&p, on_record);
            if steps_to_target.is_none() && spec.reached(p.valid.metric) {
                steps_to_target = Some(step);
                time_to_target = Some(train_time);
                test_at_target = p.test;
            }
            evals.push(p);
        }
        if checkpoint_every > 0 && step % checkpoint_every == 0 && step != steps {
            save_now!(step);
        }
    }
    if !diverged {
        save_now!(taken);
    }
    let last = match evals.last() {
        Some(p) if p.step == taken => p.clone(),
        _ => {
            let p = evaluate(&mut opt, &*workload, taken, train_time)?;
            record_eval(&p, on_record);
            evals.push(p.clone());
            p
        }
    };
    Ok(RunResult {
        workload: spec.name.to_string(),
        optimizer: optimizer.to_string(),
        built,
        hparams,
        seed: opts.seed,
        metric: spec.metric.to_string(),
        target: spec.target,
        higher_is_better: spec.higher_is_better,
        steps: taken,
        steps_to_target,
        time_to_target,
        final_valid: last.valid,
        final_test: last.test,
        test_at_target,
        train_time,
        update_time: opt.update_time().as_secs_f64(),
        state_bytes: opt.state_bytes(),
        num_params: workload.num_params(),
        diverged,
        losses,
        evals,
    })
}
