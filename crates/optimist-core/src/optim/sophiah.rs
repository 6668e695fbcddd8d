//! SophiaH: clipped second-order steps preconditioned by an exponential
//! moving average of a Hessian-diagonal estimate.
//!
//! **Reference:** `pytorch_optimizer.SophiaH` (pytorch-optimizer 4.1.0),
//! per-parameter (non-foreach) path, with the Hessian estimate passed in as
//! `step(hessian=[...])`. **Paper:** Liu, Li, Hall, Liang & Ma, "Sophia: A
//! Scalable Stochastic Second-order Optimizer for Language Model
//! Pre-training", ICLR 2024 (arXiv:2305.14342).
//!
//! Update rule, per element, at step t (the reference's order):
//! ```text
//! g <- -g                                   if maximize
//! p <- p * (1 - lr * wd)                    if weight_decouple (1 - wd if fixed_decay)
//! g <- g + wd * p                           otherwise (L2)
//! m <- lerp(m, g, 1 - beta1)
//! h <- lerp(h, est, 1 - beta2)              only at steps that carry an estimate
//! u <- clamp(m / max(h, eps), -p, p)
//! p <- p - lr * u
//! ```
//! No bias correction; `m` and `h` start at zero, so before the first
//! estimate the step is `clamp(m / eps, -p, p)`, a clipped sign step.
//!
//! **Curvature.** The optimizer never estimates curvature itself: the
//! estimate `est` arrives with the parameter ([`ParamMut::hessian`], the
//! replay case's `hessian` field). A step with an estimate folds it into `h`;
//! a step without one leaves `h` unchanged. The reference estimates
//! Hutchinson's `u * (H u)` inside `step()` at steps 1, 1 + update_period, ...
//! when no estimate is passed; here the caller does that with
//! [`crate::curvature::Hutchinson`] and [`SophiaH::hessian_due`] tells at
//! which steps. `update_period` is kept for that and validated as the
//! reference does (>= 1); the reference's `num_samples` and
//! `hessian_distribution` configure its built-in estimator and belong to
//! [`crate::curvature::Hutchinson`] here.
//!
//! Defaults: lr = 0.06, betas = (0.96, 0.99), weight_decay = 0,
//! weight_decouple = true, fixed_decay = false, p = 0.01, update_period = 10,
//! eps = 1e-12, maximize = false.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::math::{lerp, maximum, WeightDecay};
use crate::optim::pytorch_optimizer::clamp_nan;
use crate::optimizer::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};
use crate::validate as v;

crate::param_state! {
    /// SophiaH state: the gradient EMA and the Hessian-diagonal EMA.
    pub struct SophiaHState { momentum, hessian_moment }
}

/// Hyperparameters of `pytorch_optimizer.SophiaH`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SophiaH {
    /// Learning rate (default 0.06).
    pub lr: f64,
    /// Decay rates of the gradient EMA and of the Hessian EMA (default (0.96, 0.99)).
    pub betas: [f64; 2],
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise.
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by lr (default false).
    pub fixed_decay: bool,
    /// Largest absolute entry of the preconditioned update (default 0.01).
    pub p: f64,
    /// Steps between Hessian estimates (default 10); see [`SophiaH::hessian_due`].
    pub update_period: u64,
    /// Floor of the Hessian EMA in the denominator (default 1e-12).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for SophiaH {
    fn default() -> Self {
        SophiaH {
            lr: 0.06,
            betas: [0.96, 0.99],
            weight_decay: 0.0,
            weight_decouple: true,
            fixed_decay: false,
            p: 0.01,
            update_period: 10,
            eps: 1e-12,
            maximize: false,
        }
    }
}

impl SophiaH {
    /// Whether step `step` (1-based) is one at which the reference refreshes
    /// its Hessian estimate: steps 1, 1 + update_period, 1 + 2 update_period, ...
    pub fn hessian_due(&self, step: u64) -> bool {
        step >= 1 && (step - 1).checked_rem(self.update_period.max(1)) == Some(0)
    }
}

impl OptimizerConfig for SophiaH {
    const NAME: &'static str = "sophiah";
    const REFERENCE: &'static str = "pytorch_optimizer.SophiaH (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Liu, Li, Hall, Liang & Ma, Sophia: A Scalable Stochastic Second-order Optimizer for Language Model Pre-training, ICLR 2024 (arXiv:2305.14342)";
    const SUMMARY: &'static str =
        "clipped momentum / EMA of a Hessian-diagonal estimate (estimate given per step)";

    fn validate(&self) -> Result<()> {
        v::non_negative(Self::NAME, "lr", self.lr)?;
        v::betas(Self::NAME, self.betas)?;
        v::non_negative(Self::NAME, "weight_decay", self.weight_decay)?;
        v::non_negative(Self::NAME, "p", self.p)?;
        v::at_least(Self::NAME, "update_period", self.update_period, 1)?;
        v::non_negative(Self::NAME, "eps", self.eps)
    }
}

impl UpdateRule for SophiaH {
    type State = SophiaHState;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut SophiaHState) -> Result<()> {
        let n = p.numel();
        if !st.momentum.is_allocated() {
            st.momentum = StateTensor::zeros(n);
            st.hessian_moment = StateTensor::zeros(n);
        }
        st.step += 1;
        let decay_lr = if self.fixed_decay { 1.0 } else { self.lr };
        let wd = WeightDecay::new(self.weight_decay, self.weight_decouple, decay_lr);
        let w1 = (1.0 - self.betas[0]) as f32;
        let w2 = (1.0 - self.betas[1]) as f32;
        let eps = self.eps as f32;
        let clip = self.p as f32;
        let neg_lr = -self.lr as f32;
        let sgn = if self.maximize { -1.0f32 } else { 1.0 };
        let m = st.momentum.as_mut_slice();
        let h = st.hessian_moment.as_mut_slice();
        match p.hessian {
            Some(est) => {
                for i in 0..n {
                    let x = &mut p.value[i];
                    let g = wd.apply(x, sgn * p.grad[i]);
                    m[i] = lerp(m[i], g, w1);
                    h[i] = lerp(h[i], est[i], w2);
                    let u = clamp_nan(m[i] / maximum(h[i], eps), -clip, clip);
                    *x += neg_lr * u;
                }
            }
            None => {
                for i in 0..n {
                    let x = &mut p.value[i];
                    let g = wd.apply(x, sgn * p.grad[i]);
                    m[i] = lerp(m[i], g, w1);
                    let u = clamp_nan(m[i] / maximum(h[i], eps), -clip, clip);
                    *x += neg_lr * u;
                }
            }
        }
        Ok(())
    }
}
