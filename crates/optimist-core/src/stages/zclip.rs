//! ZClip: global gradient clipping with a threshold that adapts to the
//! running mean and variance of the gradient norm (z-score spike detection).
//!
//! **Reference:** `ZClip` of the official code, bluorion-com/ZClip
//! (`zclip/zclip.py`, non-FSDP path). **Paper:** Kumar, Owen, Roy Chowdhury &
//! Güra, "ZClip: Adaptive Spike Mitigation for LLM Pre-Training",
//! arXiv:2504.02507.
//!
//! Rule per step, with n the global L2 norm of all gradients (before
//! clipping):
//! ```text
//! warm-up (the first warmup_steps steps):
//!     append n to a buffer; when it holds warmup_steps norms:
//!         mean = average(buffer), var = population variance(buffer)
//!     clip_grad_norm_(max_grad_norm) if max_grad_norm is set
//! afterwards:
//!     std = sqrt(var)
//!     "percentile": c = mean + z_thresh * std               if n > mean + z_thresh * std
//!     "zscore":     z = (n - mean) / (std + eps); if z > z_thresh:
//!                     c = (mean + z_thresh * std / (z / z_thresh)) * clip_factor   ("adaptive_scaling")
//!                     c = mean                                                    ("mean")
//!     (no c: not a spike)
//!     tau = min(c or n, max_grad_norm)        (max_grad_norm = null: no cap)
//!     if n > tau: g <- g * tau / (n + 1e-6)
//!     unless (c and skip_update_on_spike):
//!         mean <- alpha mean + (1 - alpha) x
//!         var  <- alpha var  + (1 - alpha) (x - mean)^2       (with the UPDATED mean)
//!         where x = c on a spike, n otherwise (not capped by max_grad_norm)
//! ```
//! The statistics are f64 (Python floats in the reference); the norm is
//! accumulated in f64 (the reference takes it in the gradients' dtype).
//! `clip_factor` scales only the "adaptive_scaling" threshold, as in the
//! official code.
//!
//! Defaults (official): alpha = 0.97, z_thresh = 2.5, max_grad_norm = 1.0,
//! eps = 1e-6, warmup_steps = 25, mode = "zscore",
//! clip_option = "adaptive_scaling", clip_factor = 1.0,
//! skip_update_on_spike = false. State: `initialized`, `mean`, `var` and the
//! warm-up buffer (`warmup/<i>`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::clip::ClipGradNorm;
use crate::error::{Error, Result};
use crate::state::StateDict;
use crate::tensor::ParamMut;
use crate::transform::GradientTransform;
use crate::validate as v;

/// How ZClip decides the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZClipMode {
    /// Clip when the z-score exceeds `z_thresh` (see [`ZClipOption`]).
    Zscore,
    /// Clip to `mean + z_thresh * std` whenever the norm exceeds it.
    Percentile,
}

/// The threshold used on a z-score spike (mode "zscore" only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZClipOption {
    /// `mean + z_thresh * std / (z / z_thresh)`, times `clip_factor`.
    AdaptiveScaling,
    /// The EMA mean.
    Mean,
}

/// ZClip's hyperparameters (names and defaults of the official `ZClip`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ZClipConfig {
    /// EMA smoothing of the mean and variance (default 0.97).
    pub alpha: f64,
    /// z-score threshold, or the std multiplier in "percentile" mode (default 2.5).
    pub z_thresh: f64,
    /// Cap on the clipping threshold; `null` for none (default 1.0).
    pub max_grad_norm: Option<f64>,
    /// Added to the std in the z-score (default 1e-6).
    pub eps: f64,
    /// Norms collected before the statistics start (default 25).
    pub warmup_steps: u64,
    /// "zscore" (default) or "percentile".
    pub mode: ZClipMode,
    /// "adaptive_scaling" (default) or "mean"; used in "zscore" mode.
    pub clip_option: ZClipOption,
    /// Multiplier of the adaptive-scaling threshold (default 1.0).
    pub clip_factor: f64,
    /// Leave the statistics unchanged on a spike (default false).
    pub skip_update_on_spike: bool,
}

impl Default for ZClipConfig {
    fn default() -> Self {
        ZClipConfig {
            alpha: 0.97,
            z_thresh: 2.5,
            max_grad_norm: Some(1.0),
            eps: 1e-6,
            warmup_steps: 25,
            mode: ZClipMode::Zscore,
            clip_option: ZClipOption::AdaptiveScaling,
            clip_factor: 1.0,
            skip_update_on_spike: false,
        }
    }
}

impl ZClipConfig {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        v::unit_interval("zclip", "alpha", self.alpha)?;
        v::positive("zclip", "z_thresh", self.z_thresh)?;
        if let Some(m) = self.max_grad_norm {
            v::non_negative("zclip", "max_grad_norm", m)?;
        }
        v::non_negative("zclip", "eps", self.eps)?;
        v::non_negative("zclip", "clip_factor", self.clip_factor)
    }
}

/// The ZClip stage. See the module docs.
#[derive(Debug, Clone)]
pub struct ZClip {
    config: ZClipConfig,
    buffer: Vec<f64>,
    initialized: bool,
    mean: f64,
    var: f64,
    last_norm: Option<f64>,
}

impl ZClip {
    /// A validated stage with no history.
    pub fn new(config: ZClipConfig) -> Result<Self> {
        config.validate()?;
        Ok(ZClip {
            config,
            buffer: Vec::new(),
            initialized: false,
            mean: 0.0,
            var: 0.0,
            last_norm: None,
        })
    }

    /// Whether the warm-up is over.
    pub fn initialized(&self) -> bool {
        self.initialized
    }

    /// The EMA mean and variance of the norm (0 before the warm-up ends).
    pub fn stats(&self) -> (f64, f64) {
        (self.mean, self.var)
    }

    /// The global norm seen at the last step, before clipping.
    pub fn last_norm(&self) -> Option<f64> {
        self.last_norm
    }

    /// The threshold for norm `n` if `n` is a spike, else `None`.
    fn clip_value(&self, n: f64) -> Option<f64> {
        let c = &self.config;
        let std = self.var.sqrt();
        match c.mode {
            ZClipMode::Percentile => {
                let threshold = self.mean + c.z_thresh * std;
                (n > threshold).then_some(threshold)
            }
            ZClipMode::Zscore => {
                let z = (n - self.mean) / (std + c.eps);
                if z <= c.z_thresh || z.is_nan() {
                    return None;
                }
                Some(match c.clip_option {
                    ZClipOption::AdaptiveScaling => {
                        let eta = z / c.z_thresh;
                        (self.mean + (c.z_thresh * std) / eta) * c.clip_factor
                    }
                    ZClipOption::Mean => self.mean,
                })
            }
        }
    }
}

impl GradientTransform for ZClip {
    fn name(&self) -> &str {
        "zclip"
    }

    fn config(&self) -> Value {
        serde_json::to_value(&self.config).unwrap_or(Value::Null)
    }

    fn transform(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        let mut grads: Vec<&mut [f32]> = params.iter_mut().map(|p| &mut *p.grad).collect();
        let views: Vec<&[f32]> = grads.iter().map(|g| &**g).collect();
        let n = super::clip::total_norm(&views, 2.0);
        self.last_norm = Some(n);
        if !self.initialized {
            self.buffer.push(n);
            if self.buffer.len() as u64 >= self.config.warmup_steps {
                let len = self.buffer.len() as f64;
                self.mean = self.buffer.iter().sum::<f64>() / len;
                let mean = self.mean;
                self.var = self
                    .buffer
                    .iter()
                    .map(|x| (x - mean) * (x - mean))
                    .sum::<f64>()
                    / len;
                self.initialized = true;
                self.buffer.clear();
            }
            if let Some(m) = self.config.max_grad_norm {
                ClipGradNorm::new(m, 2.0)?.apply(&mut grads);
            }
            return Ok(());
        }
        let spike = self.clip_value(n);
        let adaptive = spike.unwrap_or(n);
        let tau = match self.config.max_grad_norm {
            // Python's min(adaptive, m): m only when strictly smaller
            Some(m) if m < adaptive => m,
            Some(_) => adaptive,
            None => adaptive,
        };
        let coef = if n > tau { tau / (n + 1e-6) } else { 1.0 };
        if coef < 1.0 {
            let c = coef as f32;
            for g in grads.iter_mut() {
                g.iter_mut().for_each(|x| *x *= c);
            }
        }
        if spike.is_some() && self.config.skip_update_on_spike {
            return Ok(());
        }
        let x = adaptive;
        let a = self.config.alpha;
        self.mean = a * self.mean + (1.0 - a) * x;
        self.var = a * self.var + (1.0 - a) * (x - self.mean) * (x - self.mean);
        Ok(())
    }

    fn state_dict(&self) -> StateDict {
        let mut d = StateDict::default();
        d.scalars
            .insert("initialized".into(), self.initialized as u8 as f64);
        d.scalars.insert("mean".into(), self.mean);
        d.scalars.insert("var".into(), self.var);
        for (i, &x) in self.buffer.iter().enumerate() {
            d.scalars.insert(format!("warmup/{i:06}"), x);
        }
        d
    }

    fn load_state_dict(&mut self, dict: &StateDict) -> Result<()> {
        if !dict.tensors.is_empty() {
            return Err(Error::Input("zclip: state has unexpected tensors".into()));
        }
        if dict.scalars.is_empty() {
            *self = ZClip::new(self.config.clone())?;
            return Ok(());
        }
        let get = |k: &str| {
            dict.scalars
                .get(k)
                .copied()
                .ok_or_else(|| Error::Input(format!("zclip: state has no '{k}'")))
        };
        let flag = get("initialized")?;
        let initialized = if flag == 0.0 {
            false
        } else if flag == 1.0 {
            true
        } else {
            return Err(Error::Input(format!("zclip: invalid 'initialized' {flag}")));
        };
        let (mean, var) = (get("mean")?, get("var")?);
        let mut buffer = Vec::new();
        for (k, &x) in &dict.scalars {
            if let Some(i) = k.strip_prefix("warmup/") {
                if i.parse::<usize>().ok() != Some(buffer.len()) {
                    return Err(Error::Input(format!("zclip: unexpected state entry '{k}'")));
                }
                buffer.push(x);
            } else if !["initialized", "mean", "var"].contains(&k.as_str()) {
                return Err(Error::Input(format!("zclip: unknown state entry '{k}'")));
            }
        }
        self.initialized = initialized;
        self.mean = mean;
        self.var = var;
        self.buffer = buffer;
        Ok(())
    }
}
