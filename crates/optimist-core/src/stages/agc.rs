//! AGC: adaptive gradient clipping, unit-wise, relative to the parameter's
//! norm (NFNets).
//!
//! **References:** timm `timm.utils.agc.adaptive_clip_grad` (PyTorch layout,
//! the one used here) and `optax.adaptive_grad_clip` (same rule, JAX layout).
//! **Paper:** Brock, De, Smith & Simonyan, "High-Performance Large-Scale
//! Image Recognition Without Normalization", ICML 2021 (arXiv:2102.06171).
//!
//! Rule, for every unit of every parameter W with gradient G:
//! ```text
//! unit = one slice along the first dimension (an output row of a
//!        (out, in) matrix, an output filter of an (out, in, kh, kw) kernel);
//!        the whole tensor for vectors and scalars
//! max_norm = max(||W_unit||, eps) * clipping
//! G_unit <- G_unit                                      if ||G_unit|| < max_norm
//! G_unit <- G_unit * max_norm / max(||G_unit||, 1e-6)   otherwise
//! ```
//! Norms are L2 (Frobenius), accumulated in f64 and used in f32 like the
//! references. The layout is PyTorch's (output dimension first), as timm
//! assumes; optax reduces over every axis but the last because JAX stores
//! (in, out). The paper leaves the final classifier layer unclipped:
//! `exclude` takes name patterns (`*`, `?`) of parameters to leave alone.
//!
//! Defaults: clipping = 0.01, eps = 1e-3, exclude = []. No state.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Result;
use crate::groups::glob_match;
use crate::math::{l2_norm, maximum};
use crate::tensor::ParamMut;
use crate::transform::GradientTransform;
use crate::validate as v;

/// AGC's hyperparameters (optax's names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgcConfig {
    /// Largest allowed ratio of gradient norm to parameter norm (default 0.01).
    pub clipping: f64,
    /// Floor of the parameter norm (default 1e-3).
    pub eps: f64,
    /// Name patterns of parameters left unclipped (default none).
    pub exclude: Vec<String>,
}

impl Default for AgcConfig {
    fn default() -> Self {
        AgcConfig {
            clipping: 0.01,
            eps: 1e-3,
            exclude: Vec::new(),
        }
    }
}

/// The AGC stage. See the module docs.
#[derive(Debug, Clone)]
pub struct Agc {
    config: AgcConfig,
}

impl Agc {
    /// A validated stage.
    pub fn new(config: AgcConfig) -> Result<Self> {
        v::non_negative("agc", "clipping", config.clipping)?;
        v::non_negative("agc", "eps", config.eps)?;
        Ok(Agc { config })
    }

    /// Clips one parameter's gradient in place.
    pub fn clip_param(&self, p: &mut ParamMut<'_>) {
        let n = p.numel();
        if n == 0 {
            return;
        }
        let unit = if p.shape.len() >= 2 {
            n / p.shape[0].max(1)
        } else {
            n
        };
        if unit == 0 {
            return;
        }
        let clipping = self.config.clipping as f32;
        let eps = self.config.eps as f32;
        for (w, g) in p.value.chunks(unit).zip(p.grad.chunks_mut(unit)) {
            let max_norm = maximum(l2_norm(w), eps) * clipping;
            let g_norm = l2_norm(g);
            if g_norm < max_norm {
                continue;
            }
            let factor = max_norm / maximum(g_norm, 1e-6);
            g.iter_mut().for_each(|x| *x *= factor);
        }
    }
}

impl GradientTransform for Agc {
    fn name(&self) -> &str {
        "agc"
    }

    fn config(&self) -> Value {
        serde_json::to_value(&self.config).unwrap_or(Value::Null)
    }

    fn transform(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        for p in params.iter_mut() {
            if self
                .config
                .exclude
                .iter()
                .any(|pat| glob_match(pat, p.name))
            {
                continue;
            }
            self.clip_param(p);
        }
        Ok(())
    }
}
