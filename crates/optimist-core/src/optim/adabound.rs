//! AdaBound and AMSBound: Adam whose per-element step size is clipped to
//! bounds that converge to a final (SGD) learning rate.
//!
//! **Reference:** `pytorch_optimizer.AdaBound` (pytorch-optimizer 4.1.0),
//! with `fixed_decay = false`, `maximize = false`, no AdamD. **Paper:** Luo,
//! Xiong, Liu & Sun, "Adaptive Gradient Methods with Dynamic Bound of
//! Learning Rate", ICLR 2019 (arXiv:1902.09843).
//!
//! Update rule, per element, at step t (one counter for the optimizer):
//! ```text
//! p <- p * (1 - lr * wd)                   if weight_decouple (default)
//! g <- g + wd * p                          otherwise (L2)
//! m <- lerp(m, g, 1 - beta1)
//! v <- beta2 * v + (1 - beta2) * g^2
//! d <- sqrt(max(vmax, v) + 1e-15) + eps    (vmax updated) if ams_bound
//! d <- sqrt(v + 1e-15) + eps               otherwise
//! final = final_lr * lr / base_lr          (base_lr: the lr the optimizer was built with)
//! lower = final * (1 - 1 / (gamma t + 1)),  upper = final * (1 + 1 / (gamma t))
//! p <- p - clamp(lr * sqrt(1 - beta2^t) / (1 - beta1^t) / d, lower, upper) * m
//! ```
//! `base_lr` is the lr at construction, kept when the lr is changed later
//! (schedules scale `final_lr` with lr / base_lr). As in the reference, a
//! base of 0 is replaced by the first positive lr seen at a step, and
//! `final` is 0 while the base is 0. The base is not part of the state dict
//! (nor is it in the reference's).
//!
//! Defaults: lr = 1e-3, final_lr = 0.1, betas = (0.9, 0.999), gamma = 1e-3,
//! weight_decay = 0, weight_decouple = true, ams_bound = false, eps = 1e-8.
//! Validation as the reference: lr >= 0, betas in [0, 1), gamma > 0,
//! weight_decay >= 0, eps >= 0 (final_lr only needs to be finite).

use serde::{Deserialize, Serialize};

use super::pytorch_optimizer::{ams_denom, clamp_nan};
use crate::error::Result;
use crate::math::{bias_correction, lerp, WeightDecay};
use crate::optim::each::{sink2, sink3, Step};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};

crate::param_state! {
    /// AdaBound state: first and second moments, and the running maximum of
    /// the second moment for AMSBound.
    pub struct AdaBoundState { exp_avg, exp_avg_sq, max_exp_avg_sq }
}

/// Hyperparameters of `pytorch_optimizer.AdaBound`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaBound {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// The learning rate the bounds converge to, for lr = base lr (default 0.1).
    pub final_lr: f64,
    /// Decay rates of the moments (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Convergence speed of the bounds (default 1e-3).
    pub gamma: f64,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise.
    pub weight_decouple: bool,
    /// AMSBound: running maximum of the second moment (default false).
    pub ams_bound: bool,
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// The learning rate the optimizer was built with (not a
    /// hyperparameter; `None` means `lr`).
    #[serde(skip)]
    pub base_lr: Option<f64>,
}

impl Default for AdaBound {
    fn default() -> Self {
        AdaBound {
            lr: 1e-3,
            final_lr: 0.1,
            betas: [0.9, 0.999],
            gamma: 1e-3,
            weight_decay: 0.0,
            weight_decouple: true,
            ams_bound: false,
            eps: 1e-8,
            base_lr: None,
        }
    }
}

impl AdaBound {
    fn base(&self) -> f64 {
        self.base_lr.unwrap_or(self.lr)
    }
}

impl OptimizerConfig for AdaBound {
    const NAME: &'static str = "adabound";
    const REFERENCE: &'static str = "pytorch_optimizer.AdaBound (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Luo, Xiong, Liu & Sun, Adaptive Gradient Methods with Dynamic Bound of Learning Rate, ICLR 2019 (arXiv:1902.09843)";
    const SUMMARY: &'static str =
        "Adam with per-element step sizes clipped to bounds converging to SGD; AMSBound option";

    fn suggested() -> serde_json::Value {
        serde_json::json!({"lr": 1e-3, "final_lr": 0.1})
    }

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), finite(final_lr), betas(betas), positive(gamma),
            non_negative(weight_decay, eps))
    }
}

/// Added to v inside the square root (the reference's AMSBound form).
const V_EPS: f32 = 1e-15;

/// Per-step scalars of AdaBound.
#[derive(Debug, Clone, Copy)]
pub struct AdaBoundScalars {
    wd: WeightDecay,
    w1: f32,
    b2: f32,
    w2: f32,
    eps: f32,
    lower: f32,
    upper: f32,
    step_size: f32,
    ams: bool,
}

/// One element: from (p, g, m, v, vmax) returns the step (the decayed p,
/// the update `u` of `p - u`) and the new m, v and vmax (unchanged unless
/// `AMS`).
#[inline(always)]
fn adabound_element<const AMS: bool>(
    s: &AdaBoundScalars,
    x: f32,
    g: f32,
    m: f32,
    v: f32,
    vmax: f32,
) -> (Step, f32, f32, f32) {
    let (x, g) = s.wd.apply_to(x, g);
    let m = lerp(m, g, s.w1);
    let v = v * s.b2 + s.w2 * g * g;
    let mut vmax = vmax;
    let d = ams_denom(v, AMS.then_some(&mut vmax), V_EPS, s.eps);
    let u = clamp_nan(s.step_size / d, s.lower, s.upper) * m;
    // The reference subtracts u itself: p - 1 * u == p - u.
    (Step { x, g, lr: 1.0, u }, m, v, vmax)
}

impl UpdateRule for AdaBound {
    type State = AdaBoundState;

    fn carry_over(&mut self, previous: &Self) {
        self.base_lr = Some(previous.base());
    }

    fn begin_step(&mut self, _info: &StepInfo) {
        if self.base() == 0.0 && self.lr > 0.0 {
            self.base_lr = Some(self.lr);
        }
    }

    crate::elementwise_rule!();
}

impl Elementwise for AdaBound {
    type Scalars = AdaBoundScalars;

    fn prepare(
        &self,
        info: &StepInfo,
        p: &ParamMut<'_>,
        st: &mut AdaBoundState,
    ) -> Result<AdaBoundScalars> {
        let n = p.numel();
        if !st.exp_avg.is_allocated() {
            st.exp_avg = StateTensor::zeros(n);
            st.exp_avg_sq = StateTensor::zeros(n);
        }
        if self.ams_bound && !st.max_exp_avg_sq.is_allocated() {
            st.max_exp_avg_sq = StateTensor::zeros(n);
        }
        st.step += 1;
        let t = info.step as f64;
        let [beta1, beta2] = self.betas;
        let base = self.base();
        let final_lr = if base > 0.0 {
            self.final_lr * self.lr / base
        } else {
            0.0
        };
        Ok(AdaBoundScalars {
            wd: WeightDecay::new(self.weight_decay, self.weight_decouple, self.lr),
            w1: (1.0 - beta1) as f32,
            b2: beta2 as f32,
            w2: (1.0 - beta2) as f32,
            eps: self.eps as f32,
            lower: (final_lr * (1.0 - 1.0 / (self.gamma * t + 1.0))) as f32,
            upper: (final_lr * (1.0 + 1.0 / (self.gamma * t))) as f32,
            step_size: (self.lr * bias_correction(beta2, info.step).sqrt()
                / bias_correction(beta1, info.step)) as f32,
            ams: self.ams_bound,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &AdaBoundScalars, c: Chunk<'_>, apply: &mut A) {
        if s.ams {
            sink3(c, apply, |x, g, m, v, vmax| adabound_element::<true>(s, x, g, m, v, vmax));
        } else {
            sink2(c, apply, |x, g, m, v| {
                let (step, m, v, _) = adabound_element::<false>(s, x, g, m, v, 0.0);
                (step, m, v)
            });
        }
    }
}
