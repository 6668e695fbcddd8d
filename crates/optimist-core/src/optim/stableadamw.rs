//! StableAdamW: AdamW with debiased betas and the step size divided by the
//! RMS of `g / sqrt(v)` over the tensor (AdaFactor-style update clipping).
//!
//! **Reference:** `pytorch_optimizer.StableAdamW` (pytorch-optimizer
//! 4.1.0), its default foreach path. **Paper:** Wortsman et al., "Stable
//! and low-precision training for large-scale vision-language models",
//! NeurIPS 2023 (arXiv:2304.13013).
//!
//! Update rule for one parameter at step t (one counter for the optimizer):
//! ```text
//! b1' = 1 - debias_beta(beta1, t),  b2' = debias_beta(beta2, t),
//!       debias_beta(b, t) = (b^t - b) / (b^t - 1)
//! g <- -g                                        if maximize
//! g <- g + wd * p                                if not weight_decouple (L2)
//! m <- lerp(m, g, b1')
//! v <- b2' v + (1 - b2') g^2
//! rms = max(1, sqrt(mean(g^2 / max(v, eps^2))))  (over the tensor)
//! s   = -lr / rms
//! p <- p * (1 + wd * s)                          if weight_decouple (default) and wd != 0
//! p <- p + m / ((sqrt(v) + eps) / s)
//! ```
//! `kahan_sum` only acts on float16/bfloat16 parameters in the reference,
//! so it has no effect on f32 parameters (here).
//! Defaults: lr = 1e-3, betas = (0.9, 0.99), kahan_sum = true,
//! weight_decay = 1e-2, weight_decouple = true, eps = 1e-8,
//! maximize = false. Validation as the reference: lr >= 0, betas in
//! [0, 1), weight_decay >= 0, eps >= 0.
//!
//! The RMS is over the tensor, so StableAdamW runs per parameter (two
//! passes; the mean is accumulated in f64).

use serde::{Deserialize, Serialize};

use super::adam_family::{debias_beta, grad_sign};
use crate::error::Result;
use crate::math::lerp;
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;

crate::param_state! {
    /// StableAdamW state: first and second moments.
    pub struct StableAdamWState { exp_avg, exp_avg_sq }
}

/// Hyperparameters of `pytorch_optimizer.StableAdamW`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StableAdamW {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the moments, debiased each step (default (0.9, 0.99)).
    pub betas: [f64; 2],
    /// Kahan summation for 16-bit parameters (default true; no effect on f32).
    pub kahan_sum: bool,
    /// Weight decay (default 1e-2).
    pub weight_decay: f64,
    /// Decoupled weight decay scaled by the clipped step (default true); L2 otherwise.
    pub weight_decouple: bool,
    /// Added to sqrt(v); its square bounds v in the RMS (default 1e-8).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for StableAdamW {
    fn default() -> Self {
        StableAdamW {
            lr: 1e-3,
            betas: [0.9, 0.99],
            kahan_sum: true,
            weight_decay: 1e-2,
            weight_decouple: true,
            eps: 1e-8,
            maximize: false,
        }
    }
}

impl OptimizerConfig for StableAdamW {
    const NAME: &'static str = "stableadamw";
    const REFERENCE: &'static str = "pytorch_optimizer.StableAdamW (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Wortsman et al., Stable and low-precision training for large-scale vision-language models, NeurIPS 2023 (arXiv:2304.13013)";
    const SUMMARY: &'static str = "AdamW with debiased betas and per-tensor RMS update clipping";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), non_negative(weight_decay, eps))
    }
}

impl UpdateRule for StableAdamW {
    type State = StableAdamWState;

    #[allow(clippy::needless_range_loop)]
    fn update(&self, info: &StepInfo, p: &mut ParamMut<'_>, st: &mut StableAdamWState) -> Result<()> {
        let n = p.numel();
        st.start_step(p.name, n)?;
        let t = info.step;
        let w1 = (1.0 - debias_beta(self.betas[0], t)) as f32;
        let b2h = debias_beta(self.betas[1], t);
        let (b2, w2) = (b2h as f32, (1.0 - b2h) as f32);
        let sg = grad_sign(self.maximize);
        let l2 = (!self.weight_decouple && self.weight_decay > 0.0).then_some(self.weight_decay as f32);
        let eps = self.eps as f32;
        let eps2 = self.eps.powi(2) as f32;
        let (x, g) = (&mut *p.value, &*p.grad);
        let m = st.exp_avg.as_mut_slice();
        let v = st.exp_avg_sq.as_mut_slice();
        let mut acc = 0.0f64;
        for i in 0..n {
            let mut gi = sg * g[i];
            if let Some(wd) = l2 {
                gi += wd * x[i];
            }
            m[i] = lerp(m[i], gi, w1);
            let vi = v[i] * b2 + w2 * gi * gi;
            v[i] = vi;
            let lo = if vi < eps2 { eps2 } else { vi };
            acc += (gi * gi / lo) as f64;
        }
        let mean = if n > 0 { (acc / n as f64) as f32 } else { f32::NAN };
        let rms = mean.sqrt();
        let rms = if rms < 1.0 { 1.0 } else { rms };
        let s = (1.0 / rms) * (-self.lr as f32);
        let keep = (self.weight_decouple && self.weight_decay != 0.0)
            .then_some(1.0 + s * self.weight_decay as f32);
        for i in 0..n {
            let mut xi = x[i];
            if let Some(k) = keep {
                xi *= k;
            }
            let d = (v[i].sqrt() + eps) / s;
            x[i] = xi + m[i] / d;
        }
        Ok(())
    }
}
