//! Simplified AdEMAMix: one momentum with a long horizon (theory-style
//! accumulation) mixed with the current gradient.
//!
//! **Reference:** `pytorch_optimizer.SimplifiedAdEMAMix`
//! (pytorch-optimizer 4.1.0), its default foreach path. **Paper:** Morwani
//! et al., "Connections between Schedule-Free Optimizers, AdEMAMix, and
//! Accelerated SGD Variants" (arXiv:2502.02431).
//!
//! Update rule, per element, at step t (one counter for the optimizer):
//! ```text
//! b1 = beta1, or during warm-up (t < beta1_warmup):
//!      f(b) = ln 0.5 / ln(b + 1e-8) - 1,  a = t / beta1_warmup,
//!      b1 = 0.5 ^ (1 / ((1 - a) f(min_beta1) + a f(beta1) + 1))
//! g <- -g                                   if maximize
//! p <- p * (1 - wd * (fixed_decay ? 1 : lr)) if weight_decouple (default)
//! g <- g + wd * p                           otherwise (L2)
//! m <- lerp(m, g, 1 - b1)
//! v <- beta2 * v + (1 - beta2) * g^2
//! den <- beta2 * den + (1 - beta2)          (per parameter, f64; d = sqrt(den) as f32)
//! p <- p - lr * ((m + alpha * g) / (sqrt(v) + d * eps)) / d
//! ```
//! Defaults: lr = 1e-4, betas = (0.99, 0.95), weight_decay = 0,
//! weight_decouple = true, fixed_decay = false, alpha = 0,
//! beta1_warmup = null, min_beta1 = 0.9, eps = 1e-8, maximize = false.
//! Validation as the reference: lr >= 0, betas in [0, 1), alpha >= 0,
//! min_beta1 >= 0, weight_decay >= 0, eps >= 0.

use serde::{Deserialize, Serialize};

use super::adam_family::{decay, grad_sign, load_f64, store_f64};
use crate::error::Result;
use crate::math::{lerp, Ema, WeightDecay};
use crate::optim::each::{sink2, Step};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;

crate::param_state! {
    /// Simplified AdEMAMix state: momentum, second moment and the running
    /// sum `den_sum` (a Python float in the reference; two f32 values here).
    pub struct SimplifiedAdEMAMixState { exp_avg, exp_avg_sq; unsized: den_sum }
}

/// Hyperparameters of `pytorch_optimizer.SimplifiedAdEMAMix`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimplifiedAdEMAMix {
    /// Learning rate (default 1e-4).
    pub lr: f64,
    /// Decay rates of the momentum and the second moment (default (0.99, 0.95)).
    pub betas: [f64; 2],
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise.
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by lr (default false).
    pub fixed_decay: bool,
    /// Weight of the current gradient (default 0).
    pub alpha: f64,
    /// Steps of the beta1 warm-up (default null: none; 0 is none too).
    pub beta1_warmup: Option<u64>,
    /// beta1 at the start of the warm-up (default 0.9).
    pub min_beta1: f64,
    /// Added to the denominator, scaled by sqrt(den_sum) (default 1e-8).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for SimplifiedAdEMAMix {
    fn default() -> Self {
        SimplifiedAdEMAMix {
            lr: 1e-4,
            betas: [0.99, 0.95],
            weight_decay: 0.0,
            weight_decouple: true,
            fixed_decay: false,
            alpha: 0.0,
            beta1_warmup: None,
            min_beta1: 0.9,
            eps: 1e-8,
            maximize: false,
        }
    }
}

impl OptimizerConfig for SimplifiedAdEMAMix {
    const NAME: &'static str = "simplifiedademamix";
    const REFERENCE: &'static str =
        "pytorch_optimizer.SimplifiedAdEMAMix (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Morwani, Vyas, Ha, Kakade & Brandfonbrener, Connections between Schedule-Free Optimizers, AdEMAMix, and Accelerated SGD Variants (arXiv:2502.02431)";
    const SUMMARY: &'static str =
        "long-horizon momentum mixed with the current gradient, theory-style normalisation";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas),
            non_negative(alpha, min_beta1, weight_decay, eps))
    }
}

impl SimplifiedAdEMAMix {
    /// beta1 at step `t` (`linear_hl_warmup_scheduler` of the reference).
    pub fn beta1(&self, t: u64) -> f64 {
        let b1 = self.betas[0];
        match self.beta1_warmup {
            Some(w) if w > 0 && t < w => {
                let f = |b: f64| 0.5f64.ln() / (b + 1e-8).ln() - 1.0;
                let a = t as f64 / w as f64;
                0.5f64.powf(1.0 / ((1.0 - a) * f(self.min_beta1) + a * f(b1) + 1.0))
            }
            _ => b1,
        }
    }
}

/// Per-step scalars of Simplified AdEMAMix.
#[derive(Debug, Clone, Copy)]
pub struct SimplifiedAdEMAMixScalars {
    sign: f32,
    wd: WeightDecay,
    w1: f32,
    v: Ema,
    d: f32,
    deps: f32,
    alpha: f32,
    lr: f32,
}

impl UpdateRule for SimplifiedAdEMAMix {
    type State = SimplifiedAdEMAMixState;
    crate::elementwise_rule!();
}

impl Elementwise for SimplifiedAdEMAMix {
    type Scalars = SimplifiedAdEMAMixScalars;

    fn prepare(
        &self,
        info: &StepInfo,
        p: &ParamMut<'_>,
        st: &mut SimplifiedAdEMAMixState,
    ) -> Result<SimplifiedAdEMAMixScalars> {
        st.start_step(p.name, p.numel())?;
        let b2 = self.betas[1];
        let den = b2 * load_f64(&st.den_sum) + (1.0 - b2);
        store_f64(&mut st.den_sum, den);
        let d = den.sqrt() as f32;
        Ok(SimplifiedAdEMAMixScalars {
            sign: grad_sign(self.maximize),
            wd: decay(self.weight_decay, self.weight_decouple, self.fixed_decay, self.lr, 1.0),
            w1: (1.0 - self.beta1(info.step)) as f32,
            v: Ema::new(b2),
            d,
            deps: d * self.eps as f32,
            alpha: self.alpha as f32,
            lr: self.lr as f32,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &SimplifiedAdEMAMixScalars, c: Chunk<'_>, apply: &mut A) {
        sink2(c, apply, |x, g, m, v| {
            let (x, g) = s.wd.apply_to(x, s.sign * g);
            let m = lerp(m, g, s.w1);
            let v = s.v.sq(v, g);
            let de = v.sqrt() + s.deps;
            let u = (m + s.alpha * g) / de / s.d;
            (Step { x, g, lr: s.lr, u }, m, v)
        });
    }
}

