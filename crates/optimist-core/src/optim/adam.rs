//! Adam and AdamW, with AMSGrad, coupled or decoupled weight decay and
//! maximization.
//!
//! **References:** `torch.optim.Adam` and `torch.optim.AdamW` (torch 2.15.0),
//! single-tensor path. **Papers:** Kingma & Ba, "Adam: A Method for
//! Stochastic Optimization", ICLR 2015 (arXiv:1412.6980); Loshchilov &
//! Hutter, "Decoupled Weight Decay Regularization", ICLR 2019
//! (arXiv:1711.05101); Reddi, Kale & Kumar, "On the Convergence of Adam and
//! Beyond", ICLR 2018 (AMSGrad).
//!
//! Update rule, per element, at step t (torch's order of operations):
//! ```text
//! g <- -g                                  if maximize
//! p <- p * (1 - lr * wd)                   if decoupled (AdamW)
//! g <- g + wd * p                          otherwise (L2, Adam's default)
//! m <- lerp(m, g, 1 - beta1)
//! v <- beta2 * v + (1 - beta2) * g^2
//! vmax <- max(vmax, v)                     if amsgrad (max of the raw v)
//! denom <- sqrt(v or vmax) / sqrt(1 - beta2^t) + eps   (eps outside the sqrt)
//! p <- p - lr / (1 - beta1^t) * m / denom
//! ```
//! Adam defaults: lr = 1e-3, betas = (0.9, 0.999), eps = 1e-8,
//! weight_decay = 0, amsgrad = false, decoupled_weight_decay = false.
//! AdamW is Adam with decoupled_weight_decay = true and weight_decay = 0.01.
//! The decay uses the current (scheduled) lr.

use serde::{Deserialize, Serialize};

use crate::cautious::{Apply, Plain};
use crate::error::Result;
use crate::math::{bias_correction, lerp, WeightDecay};
use crate::optimizer::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};
use crate::validate as v;

crate::param_state! {
    /// Adam state: first and second moments, and the running maximum of the
    /// second moment for AMSGrad.
    pub struct AdamState { exp_avg, exp_avg_sq, max_exp_avg_sq }
}

/// Hyperparameters of `torch.optim.Adam`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adam {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the first and second moments (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Added to the bias-corrected sqrt(v) (default 1e-8).
    pub eps: f64,
    /// Weight decay (default 0); L2 unless `decoupled_weight_decay`.
    pub weight_decay: f64,
    /// Use the running maximum of v (default false).
    pub amsgrad: bool,
    /// Decoupled (AdamW) weight decay (default false).
    pub decoupled_weight_decay: bool,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            lr: 1e-3,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
            decoupled_weight_decay: false,
            maximize: false,
        }
    }
}

fn validate_adam(name: &str, lr: f64, betas: [f64; 2], eps: f64, wd: f64) -> Result<()> {
    v::non_negative(name, "lr", lr)?;
    v::non_negative(name, "eps", eps)?;
    v::betas(name, betas)?;
    v::non_negative(name, "weight_decay", wd)
}

impl OptimizerConfig for Adam {
    const NAME: &'static str = "adam";
    const REFERENCE: &'static str = "torch.optim.Adam (torch 2.15.0)";
    const PAPER: &'static str =
        "Kingma & Ba, Adam: A Method for Stochastic Optimization, ICLR 2015 (arXiv:1412.6980)";
    const SUMMARY: &'static str =
        "adaptive moment estimation; AMSGrad and decoupled decay as options";

    fn validate(&self) -> Result<()> {
        validate_adam(Self::NAME, self.lr, self.betas, self.eps, self.weight_decay)
    }
}

impl UpdateRule for Adam {
    type State = AdamState;
    const EXPOSES_UPDATE: bool = true;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut AdamState) -> Result<()> {
        adam_update(self, p, st, &mut Plain);
        Ok(())
    }

    fn update_with<A: Apply>(
        &self,
        _info: &StepInfo,
        p: &mut ParamMut<'_>,
        st: &mut AdamState,
        apply: &mut A,
    ) -> Result<()> {
        adam_update(self, p, st, apply);
        Ok(())
    }
}

/// The Adam/AdamW kernel: one pass over (p, g, m, v[, vmax]); the step
/// `p - step_size * (m / denom)` goes through `apply`.
fn adam_update<A: Apply>(cfg: &Adam, p: &mut ParamMut<'_>, st: &mut AdamState, apply: &mut A) {
    let n = p.numel();
    if !st.exp_avg.is_allocated() {
        st.exp_avg = StateTensor::zeros(n);
        st.exp_avg_sq = StateTensor::zeros(n);
    }
    if cfg.amsgrad && !st.max_exp_avg_sq.is_allocated() {
        st.max_exp_avg_sq = StateTensor::zeros(n);
    }
    st.step += 1;
    let t = st.step;
    let [beta1, beta2] = cfg.betas;
    let wd = WeightDecay::new(cfg.weight_decay, cfg.decoupled_weight_decay, cfg.lr);
    let w1 = (1.0 - beta1) as f32;
    let b2 = beta2 as f32;
    let w2 = (1.0 - beta2) as f32;
    let step_size = (cfg.lr / bias_correction(beta1, t)) as f32;
    let bc2_sqrt = bias_correction(beta2, t).sqrt() as f32;
    let eps = cfg.eps as f32;
    let sgn = if cfg.maximize { -1.0f32 } else { 1.0 };
    let m = st.exp_avg.as_mut_slice();
    let v = st.exp_avg_sq.as_mut_slice();
    if cfg.amsgrad {
        let vmax = st.max_exp_avg_sq.as_mut_slice();
        for i in 0..n {
            let x = &mut p.value[i];
            let g = wd.apply(x, sgn * p.grad[i]);
            m[i] = lerp(m[i], g, w1);
            v[i] = v[i] * b2 + w2 * g * g;
            vmax[i] = vmax[i].max(v[i]);
            let denom = vmax[i].sqrt() / bc2_sqrt + eps;
            apply.apply(x, g, step_size, m[i] / denom);
        }
    } else {
        for i in 0..n {
            let x = &mut p.value[i];
            let g = wd.apply(x, sgn * p.grad[i]);
            m[i] = lerp(m[i], g, w1);
            v[i] = v[i] * b2 + w2 * g * g;
            let denom = v[i].sqrt() / bc2_sqrt + eps;
            apply.apply(x, g, step_size, m[i] / denom);
        }
    }
}

/// Hyperparameters of `torch.optim.AdamW`: Adam with decoupled weight decay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamW {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the first and second moments (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Added to the bias-corrected sqrt(v) (default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay, `p *= 1 - lr * weight_decay` (default 0.01).
    pub weight_decay: f64,
    /// Use the running maximum of v (default false).
    pub amsgrad: bool,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW {
            lr: 1e-3,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 1e-2,
            amsgrad: false,
            maximize: false,
        }
    }
}

impl AdamW {
    /// The equivalent Adam configuration.
    pub fn as_adam(&self) -> Adam {
        Adam {
            lr: self.lr,
            betas: self.betas,
            eps: self.eps,
            weight_decay: self.weight_decay,
            amsgrad: self.amsgrad,
            decoupled_weight_decay: true,
            maximize: self.maximize,
        }
    }
}

impl OptimizerConfig for AdamW {
    const NAME: &'static str = "adamw";
    const REFERENCE: &'static str = "torch.optim.AdamW (torch 2.15.0)";
    const PAPER: &'static str =
        "Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019 (arXiv:1711.05101)";
    const SUMMARY: &'static str = "Adam with decoupled weight decay";

    fn validate(&self) -> Result<()> {
        validate_adam(Self::NAME, self.lr, self.betas, self.eps, self.weight_decay)
    }
}

impl UpdateRule for AdamW {
    type State = AdamState;
    const EXPOSES_UPDATE: bool = true;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut AdamState) -> Result<()> {
        adam_update(&self.as_adam(), p, st, &mut Plain);
        Ok(())
    }

    fn update_with<A: Apply>(
        &self,
        _info: &StepInfo,
        p: &mut ParamMut<'_>,
        st: &mut AdamState,
        apply: &mut A,
    ) -> Result<()> {
        adam_update(&self.as_adam(), p, st, apply);
        Ok(())
    }
}
