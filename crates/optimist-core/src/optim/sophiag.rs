//! SophiaG: Sophia with the Gauss-Newton-Bartlett curvature estimate, as
//! the authors' code writes it.
//!
//! **Reference:** `SophiaG` in `sophia.py` of the official repository
//! Liuhong99/Sophia (the version whose step takes `rho` and `bs`),
//! non-capturable path; golden cases `tests/golden/extensions/sophiag-*`
//! from a torch transcription of it in `tools/gen_cases.py` (`SophiaGRef`).
//! **Paper:** Liu, Li, Hall, Liang & Ma, "Sophia: A
//! Scalable Stochastic Second-order Optimizer for Language Model
//! Pre-training", ICLR 2024 (arXiv:2305.14342).
//!
//! Update rule, per element, at every step:
//! ```text
//! g <- -g                                   if maximize
//! h <- beta2 * h + (1 - beta2) * est        only at steps that carry an estimate
//! p <- p * (1 - lr * weight_decay)          (decoupled, always)
//! m <- beta1 * m + (1 - beta1) * g
//! r <- min(|m| / (rho * bs * h + 1e-15), 1)
//! p <- p - lr * sign(m) * r
//! ```
//! i.e. `p -= lr * clip(m / (rho * bs * h), 1)` with a 1e-15 guard; no bias
//! correction; `h` starts at zero, so until the first estimate every step is
//! a sign step of size lr.
//!
//! **Curvature.** In the official code `update_hessian()` folds
//! `g_hat * g_hat` into `h`, where `g_hat` is the gradient of the loss on
//! labels sampled from the model's own predictions, and the training loop
//! calls it every `hess_interval` (10) iterations; `bs` (the number of tokens
//! per step) then turns that into the Gauss-Newton-Bartlett estimate
//! `bs * g_hat * g_hat` inside the step. Here the estimate `est` arrives with
//! the parameter ([`ParamMut::hessian`], replay's `hessian` field) and is
//! folded in before the step: a step with `est = g_hat * g_hat` equals the
//! official `update_hessian()` followed by `step(bs=bs)`.
//! [`crate::curvature::GaussNewtonBartlett::for_sophiag`] produces that
//! estimate (scale 1; `bs` is applied here). Known difference: the official
//! code forms `(1 - beta2) * g_hat * g_hat` in one fused multiply, here the
//! product `g_hat * g_hat` is rounded first (one f32 rounding).
//!
//! Defaults (official): lr = 1e-4, betas = (0.965, 0.99), rho = 0.04,
//! weight_decay = 0.1, bs = 5120 (a `step()` argument there),
//! maximize = false.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::math::{clamp_max, sign, WeightDecay};
use crate::optimizer::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};
use crate::validate as v;

crate::param_state! {
    /// SophiaG state: the gradient EMA and the curvature EMA.
    pub struct SophiaGState { exp_avg, hessian }
}

/// Hyperparameters of the official `SophiaG` (plus `bs`, a step argument there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SophiaG {
    /// Learning rate (default 1e-4).
    pub lr: f64,
    /// Decay rates of the gradient EMA and of the curvature EMA (default (0.965, 0.99)).
    pub betas: [f64; 2],
    /// Clipping scale rho (default 0.04).
    pub rho: f64,
    /// Decoupled weight decay (default 0.1).
    pub weight_decay: f64,
    /// Batch size in the estimator's sense, tokens per step (default 5120).
    pub bs: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for SophiaG {
    fn default() -> Self {
        SophiaG {
            lr: 1e-4,
            betas: [0.965, 0.99],
            rho: 0.04,
            weight_decay: 0.1,
            bs: 5120.0,
            maximize: false,
        }
    }
}

impl OptimizerConfig for SophiaG {
    const NAME: &'static str = "sophiag";
    const REFERENCE: &'static str =
        "SophiaG, official code (github.com/Liuhong99/Sophia, sophia.py, rho/bs version)";
    const PAPER: &'static str = "Liu, Li, Hall, Liang & Ma, Sophia: A Scalable Stochastic Second-order Optimizer for Language Model Pre-training, ICLR 2024 (arXiv:2305.14342)";
    const SUMMARY: &'static str =
        "sign(m) * min(|m| / (rho bs h), 1) with a Gauss-Newton-Bartlett curvature EMA";

    fn validate(&self) -> Result<()> {
        v::non_negative(Self::NAME, "lr", self.lr)?;
        v::betas(Self::NAME, self.betas)?;
        v::non_negative(Self::NAME, "rho", self.rho)?;
        v::non_negative(Self::NAME, "weight_decay", self.weight_decay)?;
        v::non_negative(Self::NAME, "bs", self.bs)
    }
}

impl UpdateRule for SophiaG {
    type State = SophiaGState;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut SophiaGState) -> Result<()> {
        let n = p.numel();
        if !st.exp_avg.is_allocated() {
            st.exp_avg = StateTensor::zeros(n);
            st.hessian = StateTensor::zeros(n);
        }
        st.step += 1;
        let wd = WeightDecay::new(self.weight_decay, true, self.lr);
        let [beta1, beta2] = self.betas;
        let (b1, w1) = (beta1 as f32, (1.0 - beta1) as f32);
        let (b2, w2) = (beta2 as f32, (1.0 - beta2) as f32);
        let scale = (self.rho * self.bs) as f32;
        let guard = 1e-15f32;
        let neg_lr = -self.lr as f32;
        let sgn = if self.maximize { -1.0f32 } else { 1.0 };
        let m = st.exp_avg.as_mut_slice();
        let h = st.hessian.as_mut_slice();
        let est = p.hessian;
        for i in 0..n {
            if let Some(e) = est {
                h[i] = h[i] * b2 + w2 * e[i];
            }
            let x = &mut p.value[i];
            let g = sgn * p.grad[i];
            wd.apply(x, g);
            m[i] = m[i] * b1 + w1 * g;
            let ratio = clamp_max(m[i].abs() / (scale * h[i] + guard), 1.0);
            *x += neg_lr * sign(m[i]) * ratio;
        }
        Ok(())
    }
}
