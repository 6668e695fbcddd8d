//! Stable-SPAM: Adam on gradients clipped against a running maximum and
//! normalized by running norm statistics, with periodic moment resets.
//!
//! **Reference:** `pytorch_optimizer.StableSPAM` (pytorch-optimizer 4.1.0),
//! its default (for-loop) path. **Paper:** Huang, Zhu, Jin, Liu, Wang & Liu,
//! "Stable-SPAM: How to Train in 4-Bit More Stably than 16-Bit Adam"
//! (arXiv:2502.17055).
//!
//! Update rule. `T` counts all steps (1-based); `t` is the step count
//! since the last reset: at `T % update_proj_gap == 0` the moments are
//! zeroed and `t = 1`, otherwise `t` grows by one. Per parameter, scalars
//! `M`, `N`, `V` per tensor (f32, starting at 0):
//! ```text
//! g  <- -g                                     if maximize
//! p  <- p (1 - lr wd)                          (decoupled decay)
//! M  <- lerp(M, max|g|, 1 - theta);  M^ = M / (1 - theta^T)
//! g_i <- g_i / max|g| M^                       where |g_i| > M^ (spike clipping)
//! n  = ||g||;  if n == 0: next parameter (no update)
//! N  <- lerp(N, n, 1 - gamma1);  V <- lerp(V, n^2, 1 - gamma2)
//! c  = (N / (1 - gamma1^T)) / (sqrt(V / (1 - gamma2^T)) + eps)
//! g  <- g / n c
//! m  <- lerp(m, g, 1 - beta1);  v <- v beta2 + (1 - beta2) g g
//! p  <- p - lr / (1 - beta1^t) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//! ```
//! (`gamma1 = -1` means beta1.)
//!
//! Cosine decay of beta1 and gamma1 (`t_max` set): every step, beta1 and
//! gamma1 above (bias corrections included) are multiplied by a factor
//! `s_T`, computed in f64 as the reference's `CosineDecay` does it with
//! torch's `CosineAnnealingLR` (period `t_max + 1`, from 1 to `eta_min`),
//! whose recursive form it reproduces bit for bit:
//! ```text
//! T >= t_max:  s_T = eta_min
//! otherwise:   s_T = (1 + cos(pi (T+1) / (t_max+1))) / (1 + cos(pi T / (t_max+1)))
//!                    * (s_{T-1} - eta_min) + eta_min,     s_0 = 1
//! ```
//! (`t_max <= 1` gives `eta_min` from the first step.)
//!
//! Defaults: lr = 1e-3, betas = (0.9, 0.999), gamma1 = 0.7, gamma2 = 0.9,
//! theta = 0.999, t_max = null (no decay), eta_min = 0.5, weight_decay = 0,
//! update_proj_gap = 1000, eps = 1e-8, maximize = false. Validation as the
//! reference: lr >= 0, betas in [0, 1), weight_decay >= 0,
//! update_proj_gap > 0, eps >= 0 (and finite gamma1, gamma2, theta,
//! eta_min).
//!
//! State: `exp_avg`, `exp_avg_sq`, and per parameter `m_norm_t`,
//! `v_norm_t`, `m_max_t` (one value each); the scalars `total_step`,
//! `group_step` and `decay` (the last `s_T`, 1 before the first step).
//! Norms are accumulated in f64 and rounded to f32.

#![allow(clippy::needless_range_loop)]

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::math::lerp;
use crate::optim::prodigy::GlobalRule;
use crate::rule::OptimizerConfig;
use crate::tensor::{ParamMut, StateTensor};

crate::param_state! {
    /// Stable-SPAM state: Adam's moments and the per-tensor norm statistics.
    pub struct StableSpamState { exp_avg, exp_avg_sq; unsized: m_norm_t, v_norm_t, m_max_t }
}

/// Hyperparameters of `pytorch_optimizer.StableSPAM`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StableSpam {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the moments (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Decay of the gradient-norm average; -1 = beta1 (default 0.7).
    pub gamma1: f64,
    /// Decay of the squared-norm average (default 0.9).
    pub gamma2: f64,
    /// Decay of the running maximum |g| (default 0.999).
    pub theta: f64,
    /// Steps of the cosine decay of beta1 and gamma1; null = no decay
    /// (default null).
    pub t_max: Option<i64>,
    /// Final factor of the cosine decay (default 0.5).
    pub eta_min: f64,
    /// Decoupled weight decay (default 0).
    pub weight_decay: f64,
    /// Steps between moment resets (default 1000).
    pub update_proj_gap: u64,
    /// Denominator epsilon (default 1e-8).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for StableSpam {
    fn default() -> Self {
        StableSpam {
            lr: 1e-3,
            betas: [0.9, 0.999],
            gamma1: 0.7,
            gamma2: 0.9,
            theta: 0.999,
            t_max: None,
            eta_min: 0.5,
            weight_decay: 0.0,
            update_proj_gap: 1000,
            eps: 1e-8,
            maximize: false,
        }
    }
}

impl OptimizerConfig for StableSpam {
    const NAME: &'static str = "stablespam";
    const REFERENCE: &'static str = "pytorch_optimizer.StableSPAM (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Huang et al., Stable-SPAM: How to Train in 4-Bit More Stably than 16-Bit Adam (arXiv:2502.17055)";
    const SUMMARY: &'static str =
        "Adam on spike-clipped, norm-normalized gradients with periodic moment resets";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), non_negative(weight_decay),
            at_least(update_proj_gap; 1), non_negative(eps), finite(gamma1, gamma2, theta, eta_min))
    }
}

impl GlobalRule for StableSpam {
    type State = StableSpamState;
    const GLOBALS: &'static [&'static str] = &["total_step", "group_step", "decay"];

    fn init_globals(&self) -> Vec<f64> {
        vec![0.0, 0.0, 1.0]
    }

    fn step_all(
        &self,
        _t: u64,
        globals: &mut [f64],
        params: &mut [ParamMut<'_>],
        states: &mut [&mut StableSpamState],
        _blocks: crate::exec::Blocks,
    ) {
        for (p, st) in params.iter().zip(states.iter_mut()) {
            if !st.exp_avg.is_allocated() {
                let n = p.numel();
                st.exp_avg = StateTensor::zeros(n);
                st.exp_avg_sq = StateTensor::zeros(n);
                st.m_norm_t = StateTensor::zeros(1);
                st.v_norm_t = StateTensor::zeros(1);
                st.m_max_t = StateTensor::zeros(1);
            }
        }
        let total = globals[0] as u64 + 1;
        globals[0] = total as f64;
        let t = if total.is_multiple_of(self.update_proj_gap) {
            for st in states.iter_mut() {
                st.exp_avg.as_mut_slice().fill(0.0);
                st.exp_avg_sq.as_mut_slice().fill(0.0);
            }
            1
        } else {
            globals[1] as u64 + 1
        };
        globals[1] = t as f64;
        let scale = match self.t_max {
            None => 1.0,
            Some(t_max) => {
                let s = cosine_decay(t_max, self.eta_min, total, globals[2]);
                globals[2] = s;
                s
            }
        };
        let [beta1, beta2] = self.betas;
        let gamma1 = (if self.gamma1 == -1.0 { beta1 } else { self.gamma1 }) * scale;
        let beta1 = beta1 * scale;
        let bc1 = 1.0 - beta1.powf(t as f64);
        let bc2s = ((1.0 - beta2.powf(t as f64)).sqrt()) as f32;
        let step = (-(self.lr / bc1)) as f32;
        let theta_t = (1.0 - self.theta.powf(total as f64)) as f32;
        let nc1 = (1.0 - gamma1.powf(total as f64)) as f32;
        let nc2 = (1.0 - self.gamma2.powf(total as f64)) as f32;
        let w_theta = (1.0 - self.theta) as f32;
        let (w_g1, w_g2) = ((1.0 - gamma1) as f32, (1.0 - self.gamma2) as f32);
        let (w1, b2, w2) = ((1.0 - beta1) as f32, beta2 as f32, (1.0 - beta2) as f32);
        let eps = self.eps as f32;
        let sgn = if self.maximize { -1.0f32 } else { 1.0 };
        let keep = (self.weight_decay != 0.0).then_some((1.0 - self.weight_decay * self.lr) as f32);
        for (p, st) in params.iter_mut().zip(states.iter_mut()) {
            st.step += 1;
            let n = p.numel();
            if let Some(k) = keep {
                p.value.iter_mut().for_each(|x| *x *= k);
            }
            let mut g: Vec<f32> = p.grad.iter().map(|&x| sgn * x).collect();
            let max_grad = g.iter().fold(0.0f32, |a, &x| {
                let x = x.abs();
                if x.is_nan() || a.is_nan() {
                    f32::NAN
                } else {
                    a.max(x)
                }
            });
            let m_max = &mut st.m_max_t.as_mut_slice()[0];
            *m_max = lerp(*m_max, max_grad, w_theta);
            let hat = *m_max / theta_t;
            for x in g.iter_mut() {
                if x.abs() > hat {
                    *x = *x / max_grad * hat;
                }
            }
            let norm = crate::math::l2_norm(&g);
            if norm == 0.0 {
                continue;
            }
            let mn = &mut st.m_norm_t.as_mut_slice()[0];
            *mn = lerp(*mn, norm, w_g1);
            let mn = *mn;
            let vn = &mut st.v_norm_t.as_mut_slice()[0];
            *vn = lerp(*vn, norm * norm, w_g2);
            let c = (mn / nc1) / ((*vn / nc2).sqrt() + eps);
            let (m, v) = (st.exp_avg.as_mut_slice(), st.exp_avg_sq.as_mut_slice());
            for i in 0..n {
                let gi = g[i] / norm * c;
                m[i] = lerp(m[i], gi, w1);
                v[i] = v[i] * b2 + w2 * gi * gi;
                let de = v[i].sqrt() / bc2s + eps;
                p.value[i] += step * m[i] / de;
            }
        }
    }
}

/// The reference's `CosineDecay(1.0, t_max, eta_min).get_death_rate(step)`:
/// `eta_min` from step `t_max` on; before, one step of torch's
/// `CosineAnnealingLR` (`T_max = t_max + 1`) from `prev`, in its recursive
/// form at epoch `step + 1` (the decay sets `last_epoch = step` and then
/// steps the scheduler). The epochs reached stay below `T_max`, so the
/// scheduler's other branches never run.
pub(crate) fn cosine_decay(t_max: i64, eta_min: f64, step: u64, prev: f64) -> f64 {
    if step as i128 >= t_max as i128 {
        return eta_min;
    }
    let period = (t_max as i128 + 1) as f64;
    let e = (step + 1) as f64;
    let pi = std::f64::consts::PI;
    (1.0 + (pi * e / period).cos()) / (1.0 + (pi * (e - 1.0) / period).cos()) * (prev - eta_min) + eta_min
}
