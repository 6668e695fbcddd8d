//! Per-tensor norm clipping: `clip_grad_norm_` applied to each parameter's
//! gradient on its own, so that no single tensor's gradient exceeds the
//! bound (as per-variable `tf.clip_by_norm`, or per-layer clipping in
//! DP-SGD).
//!
//! **Reference:** `torch.nn.utils.clip_grad_norm_` (torch 2.15.0) called once
//! per tensor. **Paper:** Pascanu, Mikolov & Bengio, "On the difficulty of
//! training recurrent neural networks", ICML 2013 (norm clipping); McMahan
//! et al., "A General Approach to Adding Differential Privacy to Iterative
//! Training Procedures", 2018 (per-layer clipping).
//!
//! Rule, for every tensor i:
//! ```text
//! n_i  = ||g_i||_p                       (max |g_i| for p = inf)
//! coef = max_norm / (n_i + 1e-6)
//! g_i <- g_i * coef                      if coef < 1
//! ```
//! The bound is on the norm, not on the RMS (`||g|| / sqrt(numel)`).
//!
//! Defaults: norm_type = 2 (max_norm is required). No state.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::clip::ClipGradNorm;
use crate::error::Result;
use crate::tensor::ParamMut;
use crate::transform::GradientTransform;

/// Per-tensor clipping configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipPerTensorConfig {
    /// Largest allowed norm of each tensor's gradient.
    pub max_norm: f64,
    /// Order of the norm (default 2; use [`ClipPerTensor::with_norm`] for inf).
    #[serde(default = "two")]
    pub norm_type: f64,
}

fn two() -> f64 {
    2.0
}

/// The per-tensor clipping stage. See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct ClipPerTensor {
    clip: ClipGradNorm,
}

impl ClipPerTensor {
    /// A validated stage.
    pub fn new(config: ClipPerTensorConfig) -> Result<Self> {
        Self::with_norm(config.max_norm, config.norm_type)
    }

    /// A validated stage with any norm order, infinity included.
    pub fn with_norm(max_norm: f64, norm_type: f64) -> Result<Self> {
        let clip = ClipGradNorm::new(max_norm, norm_type).map_err(|e| match e {
            crate::Error::InvalidHparam {
                field,
                value,
                reason,
                ..
            } => crate::Error::hparam("clip_per_tensor", &field, value, &reason),
            other => other,
        })?;
        Ok(ClipPerTensor { clip })
    }
}

impl GradientTransform for ClipPerTensor {
    fn name(&self) -> &str {
        "clip_per_tensor"
    }

    fn config(&self) -> Value {
        serde_json::json!({"max_norm": self.clip.max_norm, "norm_type": self.clip.norm_type})
    }

    fn transform(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        for p in params.iter_mut() {
            self.clip.apply(&mut [&mut *p.grad]);
        }
        Ok(())
    }
}
