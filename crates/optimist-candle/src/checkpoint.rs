//! Checkpoints of a training run driven by [`OptimistOptimizer`]: the
//! optimizer's state and configuration ([`optimist_core::checkpoint`]), the
//! adapter's own state (step count, the curvature estimate's random
//! generator: Hutchinson's probes or SophiaG's sampled labels, update time) and the parameters' values, in one file written atomically.
//!
//! ```no_run
//! # use candle_nn::VarMap;
//! # use optimist_candle::OptimistOptimizer;
//! # use serde_json::json;
//! # let varmap = VarMap::new();
//! let mut opt = OptimistOptimizer::from_varmap(&varmap, "adamw", &json!({"lr": 1e-3}))?;
//! // ... train ...
//! opt.save_checkpoint("run/ckpt.safetensors", json!({"epoch": 3}))?;
//!
//! // Later, in a new process, with the same model and configuration:
//! let mut opt = OptimistOptimizer::from_varmap(&varmap, "adamw", &json!({"lr": 1e-3}))?;
//! let extra = opt.load_checkpoint("run/ckpt.safetensors")?;
//! assert_eq!(extra["epoch"], 3);
//! # Ok::<(), candle_core::Error>(())
//! ```
//!
//! Loading checks the file, the optimizer's name and configuration, and the
//! parameters' names and shapes before changing anything (see
//! [`optimist_core::checkpoint`]); a mismatch is an error naming it and
//! leaves the optimizer and the variables untouched.

use std::path::Path;
use std::time::Duration;

use candle_core::DType;
use optimist_core::checkpoint::{Checkpoint, LoadOptions, ParamRef};
use serde_json::{json, Value};

use crate::{mode, rng::Rng, wrap, OptimistOptimizer};

/// Key of the adapter's state in the checkpoint's `extra`.
const ADAPTER_KEY: &str = "candle_adapter";
/// Key of the caller's `extra`.
const USER_KEY: &str = "user";

fn msg(e: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::msg(format!("checkpoint: {e}"))
}

impl OptimistOptimizer {
    /// The optimizer's state, the adapter's state, every parameter's values
    /// (as f32) and the caller's free JSON `extra`.
    pub fn checkpoint(&self, extra: Value) -> candle_core::Result<Checkpoint> {
        let mut values = Vec::with_capacity(self.vars.len());
        for var in &self.vars {
            values.push(
                var.as_tensor()
                    .to_dtype(DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            );
        }
        let refs: Vec<ParamRef<'_>> = self
            .names
            .iter()
            .zip(&self.shapes)
            .zip(&values)
            .map(|((name, shape), v)| ParamRef {
                name,
                shape,
                values: v,
            })
            .collect();
        let adapter = json!({
            "steps": self.steps,
            "probe_rng": self.probe_rng.state(),
            "update_time_ns": self.step_time.as_nanos() as u64,
        });
        Ok(Checkpoint::capture(self.optimizer.as_ref(), &refs)
            .map_err(wrap)?
            .with_extra(json!({ ADAPTER_KEY: adapter, USER_KEY: extra })))
    }

    /// Writes [`OptimistOptimizer::checkpoint`] to `path` atomically
    /// (temporary file, fsync, rename).
    pub fn save_checkpoint(&self, path: impl AsRef<Path>, extra: Value) -> candle_core::Result<()> {
        self.checkpoint(extra)?.write(path).map_err(wrap)
    }

    /// Restores a checkpoint taken by [`OptimistOptimizer::checkpoint`]:
    /// optimizer state, adapter state and parameter values. Returns the
    /// caller's `extra`. On error nothing is changed.
    pub fn restore_checkpoint(&mut self, ck: &Checkpoint) -> candle_core::Result<Value> {
        let adapter = ck.extra.get(ADAPTER_KEY).ok_or_else(|| {
            msg(format!(
                "no '{ADAPTER_KEY}' entry in its extra data (not written by the candle adapter)"
            ))
        })?;
        let steps = adapter
            .get("steps")
            .and_then(Value::as_u64)
            .ok_or_else(|| msg(format!("'{ADAPTER_KEY}.steps' missing or not a count")))?;
        let probe_rng =
            Rng::from_state(adapter.get("probe_rng").unwrap_or(&Value::Null)).map_err(msg)?;
        let update_ns = adapter
            .get("update_time_ns")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let mut values: Vec<Vec<f32>> = self
            .vars
            .iter()
            .map(|v| vec![0.0; v.elem_count()])
            .collect();
        let mut grads = mode::zeros_like(&values);
        {
            let mut views = mode::views(&self.names, &self.shapes, &mut values, &mut grads);
            ck.restore(self.optimizer.as_mut(), &mut views, &LoadOptions::default())
                .map_err(wrap)?;
        }
        self.set_values(&values)?;
        self.steps = steps;
        self.probe_rng = probe_rng;
        self.pending_hessian = None;
        self.step_time = Duration::from_nanos(update_ns);
        Ok(ck.extra.get(USER_KEY).cloned().unwrap_or(Value::Null))
    }

    /// Reads `path` and restores it ([`OptimistOptimizer::restore_checkpoint`]).
    pub fn load_checkpoint(&mut self, path: impl AsRef<Path>) -> candle_core::Result<Value> {
        let ck = Checkpoint::read(path).map_err(wrap)?;
        self.restore_checkpoint(&ck)
    }
}
