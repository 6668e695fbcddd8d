//! AdaMod: Adam whose per-element step sizes are bounded by their own
//! exponential moving average.
//!
//! **Reference:** `pytorch_optimizer.AdaMod` (pytorch-optimizer 4.1.0), its
//! default foreach path. **Paper:** Ding, Ren, Luo & Sun, "An Adaptive and
//! Momental Bound Method for Stochastic Learning" (arXiv:1910.12249).
//!
//! Update rule, per element, at step t (one counter for the optimizer):
//! ```text
//! g <- -g                                   if maximize
//! p <- p * (1 - wd * (fixed_decay ? 1 : lr)) if weight_decouple (default)
//! g <- g + wd * p                           otherwise (L2)
//! m <- lerp(m, g, 1 - beta1)
//! v <- beta2 * v + (1 - beta2) * g^2
//! s  = step_size / (sqrt(v) + eps),  step_size = lr sqrt(1 - beta2^t) / (1 - beta1^t)
//!                                    (lr sqrt(1 - beta2^t) with adam_debias)
//! e <- lerp(e, s, 1 - beta3)
//! p <- p - min(s, e) * m
//! ```
//! Defaults: lr = 1e-3, betas = (0.9, 0.99, 0.9999), weight_decay = 0,
//! weight_decouple = true, fixed_decay = false, eps = 1e-8,
//! maximize = false, adam_debias = false. Validation as the reference:
//! lr >= 0, beta1 and beta2 in [0, 1), beta3 in [0, 1], weight_decay >= 0,
//! eps >= 0.

use serde::{Deserialize, Serialize};

use super::adam_family::{beta3, debias, decay, grad_sign, minimum};
use crate::error::Result;
use crate::math::{bias_correction, lerp, Ema, WeightDecay};
use crate::optim::each::{sink3, Step};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;
use crate::validate as v;

crate::param_state! {
    /// AdaMod state: the moments and the EMA of the step sizes.
    pub struct AdaModState { exp_avg, exp_avg_sq, exp_avg_lr }
}

/// Hyperparameters of `pytorch_optimizer.AdaMod`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaMod {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the moments and of the step-size EMA (default (0.9, 0.99, 0.9999)).
    pub betas: [f64; 3],
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise.
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by lr (default false).
    pub fixed_decay: bool,
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
    /// AdamD: no bias correction of the first moment (default false).
    pub adam_debias: bool,
}

impl Default for AdaMod {
    fn default() -> Self {
        AdaMod {
            lr: 1e-3,
            betas: [0.9, 0.99, 0.9999],
            weight_decay: 0.0,
            weight_decouple: true,
            fixed_decay: false,
            eps: 1e-8,
            maximize: false,
            adam_debias: false,
        }
    }
}

impl OptimizerConfig for AdaMod {
    const NAME: &'static str = "adamod";
    const REFERENCE: &'static str = "pytorch_optimizer.AdaMod (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Ding, Ren, Luo & Sun, An Adaptive and Momental Bound Method for Stochastic Learning (arXiv:1910.12249)";
    const SUMMARY: &'static str = "Adam with step sizes bounded by their exponential moving average";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr))?;
        v::betas(Self::NAME, "betas", [self.betas[0], self.betas[1]])?;
        beta3(Self::NAME, self.betas[2])?;
        crate::checks!(self, non_negative(weight_decay, eps))
    }
}

/// Per-step scalars of AdaMod.
#[derive(Debug, Clone, Copy)]
pub struct AdaModScalars {
    sign: f32,
    wd: WeightDecay,
    w1: f32,
    v: Ema,
    w3: f32,
    eps: f32,
    step_size: f32,
}

impl UpdateRule for AdaMod {
    type State = AdaModState;
    crate::elementwise_rule!();
}

impl Elementwise for AdaMod {
    type Scalars = AdaModScalars;

    fn prepare(&self, info: &StepInfo, p: &ParamMut<'_>, st: &mut AdaModState) -> Result<AdaModScalars> {
        st.start_step(p.name, p.numel())?;
        let t = info.step;
        let [b1, b2, b3] = self.betas;
        let base = self.lr * bias_correction(b2, t).sqrt();
        let step_size = debias(base, self.adam_debias, b1, t);
        Ok(AdaModScalars {
            sign: grad_sign(self.maximize),
            wd: decay(self.weight_decay, self.weight_decouple, self.fixed_decay, self.lr, 1.0),
            w1: (1.0 - b1) as f32,
            v: Ema::new(b2),
            w3: (1.0 - b3) as f32,
            eps: self.eps as f32,
            step_size: step_size as f32,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &AdaModScalars, c: Chunk<'_>, apply: &mut A) {
        sink3(c, apply, |x, g, m, v, e| {
            let (x, g) = s.wd.apply_to(x, s.sign * g);
            let m = lerp(m, g, s.w1);
            let v = s.v.sq(v, g);
            let si = s.step_size / (v.sqrt() + s.eps);
            let e = lerp(e, si, s.w3);
            (Step { x, g, lr: 1.0, u: minimum(si, e) * m }, m, v, e)
        });
    }
}

