//! D-Adaptation Adam: Adam whose step size is a distance estimate `d`
//! learned from sums over all parameters.
//!
//! **Reference:** `pytorch_optimizer.DAdaptAdam` (pytorch-optimizer 4.1.0),
//! its default path on the CPU (the batched `foreach` one; the for-loop path
//! computes the same). **Paper:** Defazio & Mishchenko, "Learning-Rate-Free
//! Learning by D-Adaptation", ICML 2023 (arXiv:2301.07733).
//!
//! Update rule at step t (1-based), one parameter group. Scalars are f64
//! unless marked f32 (the reference's one-element f32 tensors); tensor
//! arithmetic is f32 with the scalars rounded to f32:
//! ```text
//! b2s  = sqrt(beta2)
//! d_lr = d * lr                                        without bias_correction
//! d_lr = d * lr * sqrt(1 - beta2^t) / (1 - beta1^t)    with it
//! acc  = 0, l1 = 0                                     (f32)
//! for each parameter:
//!     g   <- -g                                        if maximize
//!     g   <- g + wd p                                  if not weight_decouple
//!     acc <- acc + d_lr <g, s / (sqrt(v) + eps)>
//!     m   <- m beta1 + d_lr (1 - beta1) g
//!     v   <- v beta2 + (1 - beta2) g g
//!     s   <- s b2s + d_lr (1 - b2s) g
//!     l1  <- l1 + sum |s|
//! if l1 == 0: stop here (no parameter changes)
//! num  = lerp(num, acc, 1 - b2s)                       (f32, kept across steps)
//! if lr > 0: d = max(d, min(num / ((1 - b2s) l1), d * growth_rate))
//! for each parameter:
//!     p <- p (1 - wd (fixed_decay ? 1 : d_lr))         if weight_decouple
//!     p <- p - m / (sqrt(v) + eps)
//! ```
//! (`d_lr` is computed with the d of the step's start.)
//!
//! Defaults: lr = 1.0, betas = (0.9, 0.999), d0 = 1e-6, growth_rate = inf
//! (null in JSON), weight_decay = 0, weight_decouple = false, fixed_decay =
//! false, bias_correction = false, eps = 1e-8, maximize = false.
//! Validation as the reference: lr >= 0, betas in [0, 1), weight_decay >= 0,
//! eps >= 0 (d0 is not checked, as there).
//!
//! State: `s`, `exp_avg`, `exp_avg_sq` per parameter; the scalars `d` and
//! `numerator_weighted`. Sums over a tensor are accumulated in f64 and
//! rounded to f32 (the reference sums in f32).

#![allow(clippy::needless_range_loop)]

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::math::lerp;
use crate::optim::prodigy::{add_alpha, inf_as_null, GlobalRule};
use crate::rule::OptimizerConfig;
use crate::tensor::{ParamMut, StateTensor};

crate::param_state! {
    /// D-Adapt Adam state: `s` and Adam's moments.
    pub struct DAdaptAdamState { s, exp_avg, exp_avg_sq }
}

/// Hyperparameters of `pytorch_optimizer.DAdaptAdam`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DAdaptAdam {
    /// Multiplier of the adapted step size (default 1.0).
    pub lr: f64,
    /// Decay rates of the moments (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Initial distance estimate (default 1e-6).
    pub d0: f64,
    /// Largest growth factor of d per step (default inf, written null).
    #[serde(with = "inf_as_null")]
    pub growth_rate: f64,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default false: L2).
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by the step size (default false).
    pub fixed_decay: bool,
    /// Adam's bias correction in the step size (default false).
    pub bias_correction: bool,
    /// Denominator epsilon (default 1e-8).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for DAdaptAdam {
    fn default() -> Self {
        DAdaptAdam {
            lr: 1.0,
            betas: [0.9, 0.999],
            d0: 1e-6,
            growth_rate: f64::INFINITY,
            weight_decay: 0.0,
            weight_decouple: false,
            fixed_decay: false,
            bias_correction: false,
            eps: 1e-8,
            maximize: false,
        }
    }
}

impl OptimizerConfig for DAdaptAdam {
    const NAME: &'static str = "dadaptadam";
    const REFERENCE: &'static str = "pytorch_optimizer.DAdaptAdam (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Defazio & Mishchenko, Learning-Rate-Free Learning by D-Adaptation, ICML 2023 (arXiv:2301.07733)";
    const SUMMARY: &'static str = "learning-rate-free Adam by D-Adaptation of the distance to the solution";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), non_negative(weight_decay, eps),
            finite(d0))?;
        if self.growth_rate.is_nan() {
            return Err(Error::hparam(Self::NAME, "growth_rate", self.growth_rate, "must be a number"));
        }
        Ok(())
    }
}

impl GlobalRule for DAdaptAdam {
    type State = DAdaptAdamState;
    const GLOBALS: &'static [&'static str] = &["d", "numerator_weighted"];

    fn init_globals(&self) -> Vec<f64> {
        vec![self.d0, 0.0]
    }

    fn step_all(
        &self,
        t: u64,
        globals: &mut [f64],
        params: &mut [ParamMut<'_>],
        states: &mut [&mut DAdaptAdamState],
        _blocks: crate::exec::Blocks,
    ) {
        let [beta1, beta2] = self.betas;
        let b2s = beta2.sqrt();
        let mut d = globals[0];
        let d_lr = if self.bias_correction {
            let bc = (1.0 - beta1.powf(t as f64)) / (1.0 - beta2.powf(t as f64)).sqrt();
            d * self.lr / bc
        } else {
            d * self.lr
        };
        let sgn = if self.maximize { -1.0f32 } else { 1.0 };
        let l2 = (!self.weight_decouple && self.weight_decay != 0.0).then_some(self.weight_decay as f32);
        let eps = self.eps as f32;
        let (b1, b2, b2sf) = (beta1 as f32, beta2 as f32, b2s as f32);
        let a_m = (d_lr * (1.0 - beta1)) as f32;
        let w_v = (1.0 - beta2) as f32;
        let a_s = (d_lr * (1.0 - b2s)) as f32;
        let mut acc = 0.0f32;
        let mut l1 = 0.0f32;
        for (p, st) in params.iter_mut().zip(states.iter_mut()) {
            let n = p.numel();
            if !st.exp_avg.is_allocated() {
                st.s = StateTensor::zeros(n);
                st.exp_avg = StateTensor::zeros(n);
                st.exp_avg_sq = StateTensor::zeros(n);
            }
            st.step += 1;
            let (s, m, vv) = (
                st.s.as_mut_slice(),
                st.exp_avg.as_mut_slice(),
                st.exp_avg_sq.as_mut_slice(),
            );
            let mut dot = 0.0f64;
            let mut abs = 0.0f64;
            for i in 0..n {
                let mut g = sgn * p.grad[i];
                if let Some(wd) = l2 {
                    g += wd * p.value[i];
                }
                let den = vv[i].sqrt() + eps;
                dot += g as f64 * (s[i] / den) as f64;
                m[i] = m[i] * b1 + a_m * g;
                vv[i] = vv[i] * b2 + w_v * g * g;
                s[i] = s[i] * b2sf + a_s * g;
                abs += s[i].abs() as f64;
            }
            acc = add_alpha(acc, dot as f32, d_lr);
            l1 += abs as f32;
        }
        if l1 == 0.0 {
            return;
        }
        let num = lerp(globals[1] as f32, acc, (1.0 - b2s) as f32);
        globals[1] = num as f64;
        if self.lr > 0.0 {
            let d_hat = (num / (((1.0 - b2s) as f32) * l1)) as f64;
            d = d.max(d_hat.min(d * self.growth_rate));
            globals[0] = d;
        }
        let keep = (self.weight_decouple && self.weight_decay != 0.0).then_some(
            (1.0 - self.weight_decay * if self.fixed_decay { 1.0 } else { d_lr }) as f32,
        );
        for (p, st) in params.iter_mut().zip(states.iter_mut()) {
            let (m, vv) = (st.exp_avg.as_slice(), st.exp_avg_sq.as_slice());
            for i in 0..p.numel() {
                let den = vv[i].sqrt() + eps;
                let mut x = p.value[i];
                if let Some(k) = keep {
                    x *= k;
                }
                p.value[i] = x + (-m[i]) / den;
            }
        }
    }
}
