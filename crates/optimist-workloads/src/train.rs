//! The training loop: steps, evaluations on the workload's interval, the
//! first step at which the validation target is met, and timings.
//!
//! Timing follows AlgoPerf: the clock runs only while training (batch,
//! forward, backward, curvature estimate, update); evaluations are not
//! counted. The optimizer's own share (the in-place update) is measured
//! separately. A run whose training loss becomes non-finite stops and is
//! marked diverged.

use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::hparams::build_for;
use crate::{Eval, Result, Rng, Split, Workload};

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
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            steps: None,
            seed: 0,
            eval_every: None,
            stop_at_target: false,
            eval_test: true,
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
#[derive(Debug, Clone, Serialize)]
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
    let overrides = &crate::hparams::calibrated(&spec, optimizer, overrides);
    let (mut opt, built, hparams) = build_for(
        workload.varmap(),
        optimizer,
        overrides,
        spec.lr_scale,
        opts.seed,
    )?;
    let steps = opts.steps.unwrap_or(spec.steps);
    let eval_every = opts.eval_every.unwrap_or(spec.eval_every).max(1);
    let eval_test = opts.eval_test && workload.has_test();
    let mut rng = Rng::derive(opts.seed, "data");
    let mut losses = Vec::with_capacity(steps);
    let mut evals: Vec<EvalPoint> = Vec::new();
    let mut train_time = 0.0f64;
    let mut steps_to_target = None;
    let mut time_to_target = None;
    let mut test_at_target = None;
    let mut diverged = false;
    let mut taken = 0;

    let evaluate = |w: &dyn Workload, step: usize, train_time: f64| -> Result<EvalPoint> {
        let valid = w.evaluate(Split::Valid)?;
        let test = if eval_test {
            Some(w.evaluate(Split::Test)?)
        } else {
            None
        };
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

    let first = evaluate(&*workload, 0, 0.0)?;
    record_eval(&first, on_record);
    if spec.reached(first.valid.metric) {
        steps_to_target = Some(0);
        time_to_target = Some(0.0);
        test_at_target = first.test;
    }
    evals.push(first);
    for step in 1..=steps {
        if steps_to_target.is_some() && opts.stop_at_target {
            break;
        }
        let t0 = Instant::now();
        workload.next_batch(&mut rng)?;
        let w: &dyn Workload = &*workload;
        let loss = opt.backward_step_with(|| w.batch_loss())?;
        let loss = loss.to_scalar::<f32>()? as f64;
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
            let p = evaluate(&*workload, step, train_time)?;
            record_eval(&p, on_record);
            if steps_to_target.is_none() && spec.reached(p.valid.metric) {
                steps_to_target = Some(step);
                time_to_target = Some(train_time);
                test_at_target = p.test;
            }
            evals.push(p);
        }
    }
    let last = match evals.last() {
        Some(p) if p.step == taken => p.clone(),
        _ => {
            let p = evaluate(&*workload, taken, train_time)?;
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
