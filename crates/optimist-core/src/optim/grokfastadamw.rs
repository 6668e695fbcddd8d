//! GrokFast-AdamW: AdamW on gradients whose slow component (an EMA of past
//! gradients) is amplified.
//!
//! **Reference:** `pytorch_optimizer.GrokFastAdamW` (pytorch-optimizer
//! 4.1.0), its default path on the CPU (the batched `foreach` one; the
//! for-loop path computes the same). **Paper:** Lee, Kang, Lee, Kim & Lee,
//! "Grokfast: Accelerated Grokking by Amplifying Slow Gradients"
//! (arXiv:2405.20233).
//!
//! Update rule, per element, at step t:
//! ```text
//! lr' = lr / (1 + grokfast_lamb)          if grokfast and normalize_lr, else lr
//! g   <- -g                               if maximize
//! a   = g at the parameter's first step   (if grokfast and grokfast_lamb > 0)
//! p   <- p (1 - wd (fixed_decay ? 1 : lr'))  if weight_decouple
//! g   <- g + wd p                         otherwise
//! if grokfast and t > grokfast_after_step and grokfast_lamb > 0:
//!     a <- lerp(a, g, 1 - grokfast_alpha)
//!     g <- g + grokfast_lamb a
//! m   <- lerp(m, g, 1 - beta1)
//! v   <- v beta2 + (1 - beta2) g g
//! p   <- p - lr' / (1 - beta1^t) * m / max(sqrt(v) / sqrt(1 - beta2^t), eps)
//! ```
//! The configuration keeps the lr as given; the normalization happens at
//! each step. **Difference:** the reference stores the normalized value as
//! its group lr, so a schedule there acts on lr / (1 + grokfast_lamb) and
//! here on lr: the same when the schedule only multiplies the lr (warm-up,
//! cosine to 0), not when it adds an absolute floor (`min_lr` > 0).
//!
//! Defaults: lr = 1e-4, betas = (0.9, 0.99), grokfast = true,
//! grokfast_alpha = 0.98, grokfast_lamb = 2.0, grokfast_after_step = 0,
//! weight_decay = 0, weight_decouple = true, fixed_decay = false,
//! normalize_lr = true, eps = 1e-8, maximize = false. Validation as the
//! reference: lr >= 0, betas in [0, 1), weight_decay >= 0, grokfast_alpha
//! in [0, 1), eps >= 0. State: `exp_avg`, `exp_avg_sq` and (when the
//! filter is on at the first step) `grok_exp_avg`; a step that needs the
//! filter without that buffer (it was switched on later) is an error, as
//! the reference fails then.

#![allow(clippy::needless_range_loop)]

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::math::{bias_correction, lerp, Ema, WeightDecay};
use crate::optim::each::{sink2, sink3, Step};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};

crate::param_state! {
    /// GrokFast-AdamW state: Adam's moments and the slow-gradient EMA.
    pub struct GrokFastAdamWState { exp_avg, exp_avg_sq, grok_exp_avg }
}

/// Hyperparameters of `pytorch_optimizer.GrokFastAdamW`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrokFastAdamW {
    /// Learning rate before normalization (default 1e-4).
    pub lr: f64,
    /// Decay rates of the moments (default (0.9, 0.99)).
    pub betas: [f64; 2],
    /// Amplify the slow gradients (default true).
    pub grokfast: bool,
    /// Decay of the slow-gradient EMA (default 0.98).
    pub grokfast_alpha: f64,
    /// Amplification factor (default 2.0).
    pub grokfast_lamb: f64,
    /// Steps before the filter starts (default 0).
    pub grokfast_after_step: u64,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise.
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by the lr (default false).
    pub fixed_decay: bool,
    /// Divide the lr by 1 + grokfast_lamb when the filter is on (default true).
    pub normalize_lr: bool,
    /// Floor of the denominator (default 1e-8).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for GrokFastAdamW {
    fn default() -> Self {
        GrokFastAdamW {
            lr: 1e-4,
            betas: [0.9, 0.99],
            grokfast: true,
            grokfast_alpha: 0.98,
            grokfast_lamb: 2.0,
            grokfast_after_step: 0,
            weight_decay: 0.0,
            weight_decouple: true,
            fixed_decay: false,
            normalize_lr: true,
            eps: 1e-8,
            maximize: false,
        }
    }
}

impl OptimizerConfig for GrokFastAdamW {
    const NAME: &'static str = "grokfastadamw";
    const REFERENCE: &'static str = "pytorch_optimizer.GrokFastAdamW (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Lee et al., Grokfast: Accelerated Grokking by Amplifying Slow Gradients (arXiv:2405.20233)";
    const SUMMARY: &'static str = "AdamW on gradients with their slow (EMA) component amplified";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), non_negative(weight_decay),
            unit_interval_open(grokfast_alpha), non_negative(eps), finite(grokfast_lamb))
    }
}

impl GrokFastAdamW {
    /// The learning rate the steps use (normalized when the filter is on).
    pub fn effective_lr(&self) -> f64 {
        if self.grokfast && self.normalize_lr {
            self.lr / (1.0 + self.grokfast_lamb)
        } else {
            self.lr
        }
    }
}

/// Per-step scalars of GrokFast-AdamW.
#[derive(Debug, Clone, Copy)]
pub struct GrokFastScalars {
    sgn: f32,
    wd: WeightDecay,
    grok: bool,
    w_grok: f32,
    lamb: f32,
    w1: f32,
    ema2: Ema,
    bc2_sqrt: f32,
    eps: f32,
    step_size: f32,
}

impl UpdateRule for GrokFastAdamW {
    type State = GrokFastAdamWState;
    crate::elementwise_rule!();
}

impl Elementwise for GrokFastAdamW {
    type Scalars = GrokFastScalars;

    fn prepare(
        &self,
        info: &StepInfo,
        p: &ParamMut<'_>,
        st: &mut GrokFastAdamWState,
    ) -> Result<GrokFastScalars> {
        let n = p.numel();
        let sgn = if self.maximize { -1.0f32 } else { 1.0 };
        if !st.exp_avg.is_allocated() {
            st.exp_avg = StateTensor::zeros(n);
            st.exp_avg_sq = StateTensor::zeros(n);
            if self.grokfast && self.grokfast_lamb > 0.0 {
                let g: Vec<f32> = p.grad.iter().map(|&g| sgn * g).collect();
                st.grok_exp_avg = StateTensor::from_slice(&g);
            }
        }
        st.step += 1;
        let t = info.step;
        let grok = self.grokfast && t > self.grokfast_after_step && self.grokfast_lamb > 0.0;
        if grok && !st.grok_exp_avg.is_allocated() {
            return Err(Error::Input(format!(
                "{}: parameter '{}' has no grok_exp_avg (the filter was off at its first step)",
                Self::NAME,
                p.name
            )));
        }
        let lr = self.effective_lr();
        let [beta1, beta2] = self.betas;
        Ok(GrokFastScalars {
            sgn,
            wd: WeightDecay::new(
                self.weight_decay,
                self.weight_decouple,
                if self.fixed_decay { 1.0 } else { lr },
            ),
            grok,
            w_grok: (1.0 - self.grokfast_alpha) as f32,
            lamb: self.grokfast_lamb as f32,
            w1: (1.0 - beta1) as f32,
            ema2: Ema::new(beta2),
            bc2_sqrt: bias_correction(beta2, t).sqrt() as f32,
            eps: self.eps as f32,
            step_size: (lr / bias_correction(beta1, t)) as f32,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &GrokFastScalars, c: Chunk<'_>, apply: &mut A) {
        // The Adam step on the (filtered) gradient.
        let adam = |x: f32, g: f32, m: f32, v: f32| {
            let m = lerp(m, g, s.w1);
            let v = s.ema2.sq(v, g);
            let den = v.sqrt() / s.bc2_sqrt;
            let den = if den < s.eps { s.eps } else { den };
            (Step { x, g, lr: s.step_size, u: m / den }, m, v)
        };
        if s.grok {
            sink3(c, apply, |x, g, m, v, a| {
                let (x, g) = s.wd.apply_to(x, s.sgn * g);
                let a = lerp(a, g, s.w_grok);
                let (step, m, v) = adam(x, g + s.lamb * a, m, v);
                (step, m, v, a)
            });
        } else {
            sink2(c, apply, |x, g, m, v| {
                let (x, g) = s.wd.apply_to(x, s.sgn * g);
                adam(x, g, m, v)
            });
        }
    }
}
