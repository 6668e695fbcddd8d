//! AdaGC: adaptive per-tensor gradient clipping against an exponential
//! moving average of each tensor's past (clipped) gradient norms.
//!
//! **Reference:** the clipping part of `pytorch_optimizer.AdaGC`
//! (pytorch-optimizer 4.1.0), per-parameter path; the whole optimizer
//! (clipping + Adam) is [`crate::optim::AdaGc`] (`adagc` in the
//! registry). **Paper:** Wang, Li, Chen, Zeng, Yang, Yu, Ma & Shen, "AdaGC:
//! Improving Training Stability for Large Language Model Pretraining"
//! (arXiv:2502.11034).
//!
//! Rule at step t (1-based, counted by the stage), for each tensor i with
//! gradient g_i and gamma_i the tensor's running norm:
//! ```text
//! warm-up (t < warmup_steps, or the first time tensor i is seen):
//!     s   = min(lambda_abs / (||g||_global + eps), 1)        # global clipping
//!     g_i <- s * g_i
//!     gamma_i <- ||g_i||  (first time)  or  min(gamma_i, ||g_i||)
//! otherwise:
//!     h   = min(lambda_rel * max(gamma_i, eps) / max(||g_i||, eps), 1)
//!     g_i <- h * g_i
//!     gamma_i <- lerp(gamma_i, ||g_i||, 1 - beta)            # EMA of clipped norms
//! ```
//! `||g||_global` is the L2 norm over every gradient of the step, taken
//! before any clipping. Norms are accumulated in f64; gamma is held in f32
//! like the reference's 0-dim tensors, and `||s g||` is taken as
//! `s ||g||` (the reference recomputes the norm of the scaled tensor: the
//! two agree to f32 rounding).
//!
//! Defaults: beta = 0.98, lambda_abs = 1.0, lambda_rel = 1.05,
//! warmup_steps = 100, eps = 1e-8. State: the step count and one gamma per
//! tensor (scalars `step` and `gamma/<param>`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::clip::total_norm;
use crate::error::{Error, Result};
use crate::math::{clamp_max, lerp, maximum};
use crate::state::StateDict;
use crate::tensor::ParamMut;
use crate::transform::GradientTransform;
use crate::validate as v;

/// AdaGC's clipping hyperparameters (names and defaults of
/// `pytorch_optimizer.AdaGC`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaGcConfig {
    /// Smoothing of the per-tensor norm EMA (default 0.98).
    pub beta: f64,
    /// Global norm bound during warm-up (default 1.0).
    pub lambda_abs: f64,
    /// Allowed ratio of a tensor's norm to its EMA after warm-up (default 1.05).
    pub lambda_rel: f64,
    /// Steps of global clipping before the relative rule (default 100).
    pub warmup_steps: u64,
    /// Floor of the norms (default 1e-8).
    pub eps: f64,
}

impl Default for AdaGcConfig {
    fn default() -> Self {
        AdaGcConfig {
            beta: 0.98,
            lambda_abs: 1.0,
            lambda_rel: 1.05,
            warmup_steps: 100,
            eps: 1e-8,
        }
    }
}

impl AdaGcConfig {
    /// Checks the hyperparameters as the reference does; `owner` names the
    /// stage or optimizer in errors.
    pub fn validate_as(&self, owner: &str) -> Result<()> {
        v::unit_interval_open(owner, "beta", self.beta)?;
        v::positive(owner, "lambda_abs", self.lambda_abs)?;
        v::positive(owner, "lambda_rel", self.lambda_rel)?;
        v::non_negative(owner, "eps", self.eps)
    }

    /// Whether a tensor is clipped by the warm-up (global) rule at `step`.
    pub fn in_warmup(&self, step: u64, gamma: Option<f32>) -> bool {
        gamma.is_none() || step < self.warmup_steps
    }

    /// The warm-up factor `min(lambda_abs / (global_norm + eps), 1)`.
    pub fn warmup_scale(&self, global_norm: f64) -> f32 {
        let denom = global_norm as f32 + self.eps as f32;
        let s = self.lambda_abs as f32 / denom;
        if s < 1.0 {
            s
        } else {
            1.0
        }
    }

    /// The factor for one tensor whose gradient norm is `norm`, updating its
    /// running norm `gamma`. `global_norm` is asked for only in warm-up.
    pub fn clip(
        &self,
        step: u64,
        gamma: &mut Option<f32>,
        norm: f64,
        global_norm: impl FnOnce() -> f64,
    ) -> f32 {
        let norm = norm as f32;
        let eps = self.eps as f32;
        if self.in_warmup(step, *gamma) {
            let s = self.warmup_scale(global_norm());
            let clipped = s * norm;
            *gamma = Some(match *gamma {
                None => clipped,
                // torch.minimum: NaN in either operand gives NaN
                Some(g) if g.is_nan() || clipped.is_nan() => f32::NAN,
                Some(g) => g.min(clipped),
            });
            s
        } else {
            let g = gamma.unwrap_or(0.0);
            let h = clamp_max(
                self.lambda_rel as f32 * maximum(g, eps) / maximum(norm, eps),
                1.0,
            );
            *gamma = Some(lerp(g, h * norm, (1.0 - self.beta) as f32));
            h
        }
    }
}

/// The AdaGC clipping stage. See the module docs.
#[derive(Debug, Clone)]
pub struct AdaGcClip {
    config: AdaGcConfig,
    step: u64,
    gamma: BTreeMap<String, f32>,
}

impl AdaGcClip {
    /// A validated stage with no history.
    pub fn new(config: AdaGcConfig) -> Result<Self> {
        config.validate_as("adagc")?;
        Ok(AdaGcClip {
            config,
            step: 0,
            gamma: BTreeMap::new(),
        })
    }

    /// The configuration.
    pub fn config_ref(&self) -> &AdaGcConfig {
        &self.config
    }

    /// The running norm of parameter `name`, once seen.
    pub fn gamma(&self, name: &str) -> Option<f32> {
        self.gamma.get(name).copied()
    }
}

impl GradientTransform for AdaGcClip {
    fn name(&self) -> &str {
        "adagc"
    }

    fn config(&self) -> Value {
        serde_json::to_value(&self.config).unwrap_or(Value::Null)
    }

    fn transform(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        self.step += 1;
        let norms: Vec<f64> = params.iter().map(|p| total_norm(&[p.grad], 2.0)).collect();
        let global = norms.iter().map(|n| n * n).sum::<f64>().sqrt();
        for (p, &norm) in params.iter_mut().zip(&norms) {
            let mut gamma = self.gamma.get(p.name).copied();
            let s = self.config.clip(self.step, &mut gamma, norm, || global);
            if let Some(g) = gamma {
                self.gamma.insert(p.name.to_string(), g);
            }
            if s != 1.0 {
                p.grad.iter_mut().for_each(|x| *x *= s);
            }
        }
        Ok(())
    }

    fn state_dict(&self) -> StateDict {
        let mut d = StateDict::default();
        d.scalars.insert("step".into(), self.step as f64);
        gamma_to_scalars(&self.gamma, &mut d);
        d
    }

    fn load_state_dict(&mut self, dict: &StateDict) -> Result<()> {
        if !dict.tensors.is_empty() {
            return Err(Error::Input("adagc: state has unexpected tensors".into()));
        }
        let (gamma, rest) = gamma_from_scalars(dict)?;
        let mut step = None;
        for (k, &val) in &rest.scalars {
            if k == "step" {
                if !(val.is_finite() && val >= 0.0 && val.fract() == 0.0 && val < 2f64.powi(53)) {
                    return Err(Error::Input(format!("adagc: invalid step {val}")));
                }
                step = Some(val as u64);
            } else {
                return Err(Error::Input(format!("adagc: unknown state entry '{k}'")));
            }
        }
        self.step = match step {
            Some(s) => s,
            None if gamma.is_empty() => 0,
            None => return Err(Error::Input("adagc: state has no 'step'".into())),
        };
        self.gamma = gamma;
        Ok(())
    }
}

/// Writes the running norms as scalars `gamma/<param>`.
pub(crate) fn gamma_to_scalars(gamma: &BTreeMap<String, f32>, d: &mut StateDict) {
    for (k, &g) in gamma {
        d.scalars.insert(format!("gamma/{k}"), g as f64);
    }
}

/// Splits the `gamma/<param>` scalars off a state dict: (running norms,
/// everything else).
pub(crate) fn gamma_from_scalars(dict: &StateDict) -> Result<(BTreeMap<String, f32>, StateDict)> {
    let mut gamma = BTreeMap::new();
    let mut rest = StateDict {
        tensors: dict.tensors.clone(),
        ..Default::default()
    };
    for (k, &val) in &dict.scalars {
        match k.strip_prefix("gamma/") {
            Some(name) if !name.is_empty() => {
                gamma.insert(name.to_string(), val as f32);
            }
            Some(_) => return Err(Error::Input(format!("adagc: invalid state entry '{k}'"))),
            None => {
                rest.scalars.insert(k.clone(), val);
            }
        }
    }
    Ok((gamma, rest))
}
