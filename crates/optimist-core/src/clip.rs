//! Gradient clipping by global norm, with the semantics of
//! `torch.nn.utils.clip_grad_norm_` (torch 2.15.0).
//!
//! ```text
//! total = ||(||g_1||_p, ..., ||g_n||_p)||_p     (max |g| for p = inf)
//! coef  = max_norm / (total + 1e-6)
//! g_i  *= min(coef, 1)
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tensor::ParamMut;
use crate::transform::GradientTransform;

/// Configuration of global-norm clipping.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipGradNorm {
    /// Largest allowed total norm.
    pub max_norm: f64,
    /// Order of the norm (default 2; `inf` is the max norm). JSON cannot hold
    /// infinity, so use [`ClipGradNorm::new`] for it.
    #[serde(default = "two")]
    pub norm_type: f64,
}

fn two() -> f64 {
    2.0
}

impl ClipGradNorm {
    /// Validated clipping configuration.
    pub fn new(max_norm: f64, norm_type: f64) -> Result<Self> {
        let c = ClipGradNorm {
            max_norm,
            norm_type,
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks `max_norm >= 0` and `norm_type > 0` (or infinity).
    pub fn validate(&self) -> Result<()> {
        if !(self.max_norm.is_finite() && self.max_norm >= 0.0) {
            return Err(Error::hparam(
                "grad_clip",
                "max_norm",
                self.max_norm,
                "must be a finite number >= 0",
            ));
        }
        if self.norm_type.is_nan() || self.norm_type <= 0.0 {
            return Err(Error::hparam(
                "grad_clip",
                "norm_type",
                self.norm_type,
                "must be > 0 (or inf)",
            ));
        }
        Ok(())
    }

    /// The total norm of all gradients.
    pub fn total_norm(&self, grads: &[&[f32]]) -> f64 {
        total_norm(grads, self.norm_type)
    }

    /// Clips `grads` in place; returns the total norm before clipping.
    pub fn apply(&self, grads: &mut [&mut [f32]]) -> f64 {
        let views: Vec<&[f32]> = grads.iter().map(|g| &**g).collect();
        let total = total_norm(&views, self.norm_type);
        let coef = (self.max_norm / (total + 1e-6)) as f32;
        if coef < 1.0 {
            for g in grads.iter_mut() {
                for x in g.iter_mut() {
                    *x *= coef;
                }
            }
        }
        total
    }
}

/// The p-norm of the per-tensor p-norms (the global norm), computed in f64.
pub fn total_norm(grads: &[&[f32]], norm_type: f64) -> f64 {
    if norm_type.is_infinite() {
        return grads
            .iter()
            .flat_map(|g| g.iter())
            .fold(0.0f64, |m, &x| m.max((x as f64).abs()));
    }
    if norm_type == 2.0 {
        let s: f64 = grads
            .iter()
            .flat_map(|g| g.iter())
            .map(|&x| (x as f64) * (x as f64))
            .sum();
        return s.sqrt();
    }
    let s: f64 = grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|&x| (x as f64).abs().powf(norm_type))
        .sum();
    s.powf(1.0 / norm_type)
}

impl GradientTransform for ClipGradNorm {
    fn name(&self) -> &str {
        "clip_grad_norm"
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({"max_norm": self.max_norm, "norm_type": self.norm_type})
    }

    fn transform(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        let mut grads: Vec<&mut [f32]> = params.iter_mut().map(|p| &mut *p.grad).collect();
        self.apply(&mut grads);
        Ok(())
    }
}
