//! SPAM: Adam with spike-aware gradient clipping, periodic momentum resets
//! and a cosine warm-up of the step after each reset.
//!
//! **Reference:** `pytorch_optimizer.SPAM` (pytorch-optimizer 4.1.0), its
//! default for-loop path on the CPU. **Paper:** Huang, Zhu, Jin, Liu, Wang
//! & Liu, "SPAM: Spike-Aware Adam with Momentum Reset for Stable LLM
//! Training", ICLR 2025 (arXiv:2501.06842).
//!
//! Update rule. `T` counts steps (1-based), `t` too (bias corrections are
//! never reset). At the start of step T, if `T % update_proj_gap == 0` the
//! moments are zeroed. Per element:
//! ```text
//! g <- -g                                             if maximize
//! if threshold != 0 and T >= grad_accu_steps and T % update_proj_gap >= grad_accu_steps:
//!     g <- sign(g) sqrt(v threshold)                  where g^2 > threshold v   (v before this step)
//! m <- lerp(m, g, 1 - beta1);  v <- v beta2 + (1 - beta2) g g
//! p <- p - s lr sqrt(1 - beta2^t) / (1 - beta1^t) m / (sqrt(v) + eps)
//! p <- p (1 - lr wd)                                  (decoupled decay, after the update)
//! ```
//! The warm-up scale `s` is 1 except in the `warmup_epoch` steps after a
//! reset: the reference restarts a cosine decay of a "death rate" from 0.99
//! at the end of every step T with `(T + 1) % update_proj_gap == 0`; with
//! `c` steps since then (0 at the first), `s = 1 - 0.99 (1 + cos(pi (c + 1)
//! / (warmup_epoch + 1))) / 2` while `c < warmup_epoch` (the closed form of
//! the reference's torch `CosineAnnealingLR`, stepped once per step).
//!
//! **Masks (difference):** the reference keeps a random mask of density
//! `density` on each 2-D parameter (drawn with torch's global generator)
//! and updates only its entries. Only `density = 1` is implemented here:
//! there every mask selects everything whatever the draws, and the update
//! is the one above. Other densities are refused.
//!
//! Defaults: lr = 1e-3, betas = (0.9, 0.999), density = 1.0, weight_decay
//! = 0, warmup_epoch = 50, threshold = 5000, grad_accu_steps = 20,
//! update_proj_gap = 500, eps = 1e-6, maximize = false. Validation as the
//! reference: lr >= 0, betas in [0, 1), weight_decay >= 0, density >= 0,
//! threshold >= 0, update_proj_gap > 0, eps >= 0; and density = 1 (above).
//!
//! State: `exp_avg`, `exp_avg_sq`; the scalars `total_step` and
//! `current_step` (steps since the last warm-up restart, starting at
//! warmup_epoch + 1).

#![allow(clippy::needless_range_loop)]

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::math::lerp;
use crate::optim::prodigy::GlobalRule;
use crate::rule::OptimizerConfig;
use crate::tensor::{ParamMut, StateTensor};

crate::param_state! {
    /// SPAM state: Adam's moments.
    pub struct SpamState { exp_avg, exp_avg_sq }
}

/// Hyperparameters of `pytorch_optimizer.SPAM`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Spam {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the moments (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Density of the update masks of 2-D parameters (default 1; only 1 is implemented).
    pub density: f64,
    /// Decoupled weight decay, after the update (default 0).
    pub weight_decay: f64,
    /// Warm-up steps after a reset (default 50).
    pub warmup_epoch: u64,
    /// Spike threshold on g^2 / v (default 5000; 0 disables clipping).
    pub threshold: f64,
    /// Steps after a reset before clipping starts (default 20).
    pub grad_accu_steps: u64,
    /// Steps between momentum resets (default 500).
    pub update_proj_gap: u64,
    /// Denominator epsilon (default 1e-6).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Spam {
    fn default() -> Self {
        Spam {
            lr: 1e-3,
            betas: [0.9, 0.999],
            density: 1.0,
            weight_decay: 0.0,
            warmup_epoch: 50,
            threshold: 5000.0,
            grad_accu_steps: 20,
            update_proj_gap: 500,
            eps: 1e-6,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Spam {
    const NAME: &'static str = "spam";
    const REFERENCE: &'static str = "pytorch_optimizer.SPAM (pytorch-optimizer 4.1.0), density 1";
    const PAPER: &'static str = "Huang et al., SPAM: Spike-Aware Adam with Momentum Reset for Stable LLM Training, ICLR 2025 (arXiv:2501.06842)";
    const SUMMARY: &'static str = "Adam with spike clipping, periodic momentum resets and warm-up after each reset";

    fn validate(&self) -> Result<()> {
        let n = Self::NAME;
        crate::checks!(self, non_negative(lr), betas(betas),
            non_negative(weight_decay, density, threshold), at_least(update_proj_gap; 1),
            non_negative(eps))?;
        if self.density != 1.0 {
            return Err(Error::Unsupported(format!(
                "{n}: density {} needs random update masks; only density 1 is implemented",
                self.density
            )));
        }
        Ok(())
    }
}

impl Spam {
    /// The warm-up scale `c` steps after a restart.
    pub fn warmup_scale(&self, c: u64) -> f64 {
        if c >= self.warmup_epoch {
            return 1.0;
        }
        let t_max = (self.warmup_epoch + 1) as f64;
        let death = 0.99 * (1.0 + (std::f64::consts::PI * (c + 1) as f64 / t_max).cos()) / 2.0;
        1.0 - death
    }
}

impl GlobalRule for Spam {
    type State = SpamState;
    const GLOBALS: &'static [&'static str] = &["total_step", "current_step"];

    fn init_globals(&self) -> Vec<f64> {
        vec![0.0, (self.warmup_epoch + 1) as f64]
    }

    fn step_all(
        &self,
        t: u64,
        globals: &mut [f64],
        params: &mut [ParamMut<'_>],
        states: &mut [&mut SpamState],
        _blocks: crate::exec::Blocks,
    ) {
        let total = globals[0] as u64 + 1;
        let current = globals[1] as u64;
        let scale = self.warmup_scale(current);
        let [beta1, beta2] = self.betas;
        let bc1 = 1.0 - beta1.powf(t as f64);
        let bc2s = (1.0 - beta2.powf(t as f64)).sqrt();
        let step = (-(self.lr * bc2s / bc1 * scale)) as f32;
        let gap = self.update_proj_gap;
        let reset = total.is_multiple_of(gap);
        let clip = self.threshold != 0.0
            && total >= self.grad_accu_steps
            && total % gap >= self.grad_accu_steps;
        let thr = self.threshold as f32;
        let sgn = if self.maximize { -1.0f32 } else { 1.0 };
        let (w1, b2, w2) = ((1.0 - beta1) as f32, beta2 as f32, (1.0 - beta2) as f32);
        let eps = self.eps as f32;
        let keep = (self.weight_decay != 0.0).then_some((1.0 - self.lr * self.weight_decay) as f32);
        for (p, st) in params.iter_mut().zip(states.iter_mut()) {
            let n = p.numel();
            if !st.exp_avg.is_allocated() || reset {
                st.exp_avg = StateTensor::zeros(n);
                st.exp_avg_sq = StateTensor::zeros(n);
            }
            st.step += 1;
            let (m, v) = (st.exp_avg.as_mut_slice(), st.exp_avg_sq.as_mut_slice());
            for i in 0..n {
                let mut g = sgn * p.grad[i];
                if clip && g * g > thr * v[i] {
                    g = crate::math::sign(g) * (v[i] * thr).sqrt();
                }
                m[i] = lerp(m[i], g, w1);
                v[i] = v[i] * b2 + w2 * g * g;
                let de = v[i].sqrt() + eps;
                let x = &mut p.value[i];
                *x += step * m[i] / de;
                if let Some(k) = keep {
                    *x *= k;
                }
            }
        }
        globals[0] = total as f64;
        globals[1] = if (total + 1).is_multiple_of(gap) { 0.0 } else { (current + 1) as f64 };
    }
}
