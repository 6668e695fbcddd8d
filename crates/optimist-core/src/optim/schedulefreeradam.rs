//! Schedule-free RAdam (registry name `schedulefreeradam`): RAdam's
//! rectified step inside schedule-free averaging, on the driver of
//! [`crate::optim::schedulefree`] (train/eval modes, the `z` sequence, the
//! averaging weights).
//!
//! **Reference:** `pytorch_optimizer.ScheduleFreeRAdam` (pytorch-optimizer
//! 4.1.0), its default path on the CPU (the batched `foreach` one; the
//! for-loop path computes the same). **Papers:** Defazio et al., "The Road
//! Less Scheduled", NeurIPS 2024 (arXiv:2405.15682); Liu et al., RAdam,
//! ICLR 2020 (arXiv:1908.03265).
//!
//! Per step `t = k + 1`, scalars in f64 (RAdam's rectification with
//! threshold 4 and no SGD fallback):
//! ```text
//! n_max = 2 / (1 - beta2) - 1;  b = beta2^t;  n = n_max - 2 t b / (1 - b)
//! rt    = sqrt((1 - b)(n - 4)/(n_max - 4)(n - 2)/n n_max/(n_max - 2))  if n >= 4, else -1
//! lr_t  = lr rt
//! lr_t  = (silent_sgd_phase ? 0 : 1)        if lr_t < 0   (the reference's literal 1.0)
//! lr_t  = lr_t / sqrt(1 - b)                else if n > 4
//! lr_max = max(lr_max, lr_t);  weight = t^r lr_max^weight_lr_power
//! weight_sum += weight;  ckp1 = weight / weight_sum  (0 when weight_sum is 0)
//! ```
//! then per element (f32), `z` starting as a copy of the parameter:
//! ```text
//! g <- -g                                          if maximize
//! v <- beta2 v + (1 - beta2) g g
//! g <- g / (sqrt(v) / sqrt(1 - b) + eps)           if n > 4
//! g <- g + weight_decay y                          (decay at y)
//! y <- lerp(y, z, ckp1)
//! y <- y + lr_t (beta1 (1 - ckp1) - 1) g
//! z <- z - lr_t g
//! ```
//! Train/eval as [`crate::optim::schedulefree`]: eval sets `x = lerp(y, z,
//! 1 - 1/beta1)`, train back to `y = lerp(x, z, 1 - beta1)`.
//!
//! Defaults: lr = 2.5e-3, betas = (0.9, 0.999), weight_decay = 0, r = 0,
//! weight_lr_power = 2, silent_sgd_phase = true, eps = 1e-8, maximize =
//! false. Validation as the reference: lr >= 0, beta1 in (0, 1), beta2 in
//! [0, 1), weight_decay >= 0, eps >= 0. **Differences:** a new optimizer is
//! in train mode (as the reference's `train_mode` default); the reference's
//! `use_palm` keyword (stored, never read) is not a hyperparameter here.

#![allow(clippy::needless_range_loop)]

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::math::lerp;
use crate::optim::schedulefree::{ScheduleFreeRule, ScheduleFreeState, SfStep};
use crate::rule::OptimizerConfig;
use crate::tensor::{ParamMut, StateTensor};

/// Hyperparameters of `pytorch_optimizer.ScheduleFreeRAdam`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleFreeRAdam {
    /// Learning rate (default 2.5e-3).
    pub lr: f64,
    /// Interpolation momentum and second-moment decay (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Weight decay at y, added to the normalized gradient (default 0).
    pub weight_decay: f64,
    /// Polynomial weighting power of the average (default 0).
    pub r: f64,
    /// Power of lr_max in the averaging weight (default 2).
    pub weight_lr_power: f64,
    /// No update before rectification starts (default true); otherwise lr 1 there.
    pub silent_sgd_phase: bool,
    /// Added to the bias-corrected sqrt(v) (default 1e-8).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for ScheduleFreeRAdam {
    fn default() -> Self {
        ScheduleFreeRAdam {
            lr: 2.5e-3,
            betas: [0.9, 0.999],
            weight_decay: 0.0,
            r: 0.0,
            weight_lr_power: 2.0,
            silent_sgd_phase: true,
            eps: 1e-8,
            maximize: false,
        }
    }
}

impl OptimizerConfig for ScheduleFreeRAdam {
    const NAME: &'static str = "schedulefreeradam";
    const REFERENCE: &'static str = "pytorch_optimizer.ScheduleFreeRAdam (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Defazio et al., The Road Less Scheduled, NeurIPS 2024 (arXiv:2405.15682); Liu et al., RAdam (arXiv:1908.03265)";
    const SUMMARY: &'static str = "RAdam without a learning-rate schedule: rectified steps with interpolated averaging";

    fn validate(&self) -> Result<()> {
        let n = Self::NAME;
        crate::checks!(self, non_negative(lr), betas(betas))?;
        if self.betas[0] == 0.0 {
            return Err(Error::hparam(n, "beta1", 0, "must be in the range (0, 1)"));
        }
        crate::checks!(self, non_negative(weight_decay, eps), finite(r, weight_lr_power))
    }
}

impl ScheduleFreeRAdam {
    /// `(n_sma, sqrt(1 - beta2^t))` at 1-based step `t`.
    fn sma(&self, t: u64) -> (f64, f64) {
        let beta2 = self.betas[1];
        let n_max = 2.0 / (1.0 - beta2) - 1.0;
        let b = beta2.powf(t as f64);
        (n_max - 2.0 * t as f64 * b / (1.0 - b), (1.0 - b).sqrt())
    }
}

impl ScheduleFreeRule for ScheduleFreeRAdam {
    fn lr(&self) -> f64 {
        self.lr
    }
    fn warmup_steps(&self) -> u64 {
        0
    }
    fn r(&self) -> f64 {
        self.r
    }
    fn weight_lr_power(&self) -> f64 {
        self.weight_lr_power
    }
    fn momentum(&self) -> f64 {
        self.betas[0]
    }

    fn step_lr(&self, k: u64) -> f64 {
        let t = k + 1;
        let beta2 = self.betas[1];
        let n_max = 2.0 / (1.0 - beta2) - 1.0;
        let b = beta2.powf(t as f64);
        let (n, bc2_sqrt) = self.sma(t);
        let rt = if n >= 4.0 {
            ((1.0 - b) * (n - 4.0) / (n_max - 4.0) * (n - 2.0) / n * n_max / (n_max - 2.0)).sqrt()
        } else {
            -1.0
        };
        let lr = self.lr * rt;
        if lr < 0.0 {
            if self.silent_sgd_phase {
                0.0
            } else {
                1.0
            }
        } else if n > 4.0 {
            lr / bc2_sqrt
        } else {
            lr
        }
    }

    fn update(&self, s: &SfStep, p: &mut ParamMut<'_>, st: &mut ScheduleFreeState) {
        let n = p.numel();
        if !st.exp_avg_sq.is_allocated() {
            st.exp_avg_sq = StateTensor::zeros(n);
        }
        let [beta1, beta2] = self.betas;
        let (sma, bc2_sqrt) = self.sma(s.k + 1);
        let rectified = sma > 4.0;
        let sgn = if self.maximize { -1.0f32 } else { 1.0 };
        let b2 = beta2 as f32;
        let w2 = (1.0 - beta2) as f32;
        let bc = bc2_sqrt as f32;
        let eps = self.eps as f32;
        let wd = self.weight_decay as f32;
        let ckp1 = s.ckp1 as f32;
        let y_coef = (s.lr * (beta1 * (1.0 - s.ckp1) - 1.0)) as f32;
        let neg_lr = (-s.lr) as f32;
        let z = st.z.as_mut_slice();
        let v = st.exp_avg_sq.as_mut_slice();
        for i in 0..n {
            let mut g = sgn * p.grad[i];
            v[i] = v[i] * b2 + w2 * g * g;
            if rectified {
                g /= v[i].sqrt() / bc + eps;
            }
            let y = &mut p.value[i];
            if wd != 0.0 {
                g += wd * *y;
            }
            *y = lerp(*y, z[i], ckp1);
            *y += y_coef * g;
            z[i] += neg_lr * g;
        }
    }
}
