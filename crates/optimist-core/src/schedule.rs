//! Learning-rate (and any hyperparameter) schedules.
//!
//! A schedule maps the 0-based step index `s` to a value; the driver sets
//! the hyperparameter before each step.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A value that depends on the 0-based step index.
pub trait Schedule: Send + Sync {
    /// The value at step index `s` (0 for the first step).
    fn value(&self, s: u64) -> f64;
}

/// Linear warmup from 0 then cosine decay to `min_lr`, as
/// `optax.warmup_cosine_decay_schedule(0, base, warmup_steps, total_steps, min_lr)`:
///
/// ```text
/// s <  W: base * s / W
/// s >= W: min_lr + (base - min_lr) * 0.5 * (1 + cos(pi * min(1, (s - W) / max(1, T - W))))
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmupCosine {
    pub base: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub min_lr: f64,
}

impl Schedule for WarmupCosine {
    fn value(&self, s: u64) -> f64 {
        if s < self.warmup_steps {
            return self.base * s as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((s - self.warmup_steps) as f64 / span).min(1.0);
        self.min_lr
            + (self.base - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// A constant value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Constant(pub f64);

impl Schedule for Constant {
    fn value(&self, _s: u64) -> f64 {
        self.0
    }
}

/// A schedule as written in a replay case or a configuration file; the base
/// value comes from the optimizer's hyperparameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleSpec {
    /// See [`WarmupCosine`].
    WarmupCosine {
        warmup_steps: u64,
        total_steps: u64,
        #[serde(default)]
        min_lr: f64,
    },
    /// The base value at every step.
    Constant {},
}

impl ScheduleSpec {
    /// Reads a schedule from JSON, naming the problem on error.
    pub fn from_json(v: &serde_json::Value) -> Result<Self> {
        let spec: ScheduleSpec = serde_json::from_value(v.clone())
            .map_err(|e| Error::config("lr_schedule", format!("invalid schedule: {e}")))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks the schedule's own parameters.
    pub fn validate(&self) -> Result<()> {
        match *self {
            ScheduleSpec::WarmupCosine { min_lr, .. } => {
                crate::validate::finite("warmup_cosine", "min_lr", min_lr)
            }
            ScheduleSpec::Constant {} => Ok(()),
        }
    }

    /// The schedule with `base` as its peak value.
    pub fn build(&self, base: f64) -> Box<dyn Schedule> {
        match *self {
            ScheduleSpec::WarmupCosine {
                warmup_steps,
                total_steps,
                min_lr,
            } => Box::new(WarmupCosine {
                base,
                warmup_steps,
                total_steps,
                min_lr,
            }),
            ScheduleSpec::Constant {} => Box::new(Constant(base)),
        }
    }
}
