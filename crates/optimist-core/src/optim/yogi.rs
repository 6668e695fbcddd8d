//! Yogi: Adam whose second moment moves additively, by the sign of
//! `v - g^2`, so that it cannot grow as fast as Adam's.
//!
//! **Reference:** `pytorch_optimizer.Yogi` (pytorch-optimizer 4.1.0), its
//! default foreach path. **Paper:** Zaheer, Reddi, Sachan, Kale & Kumar,
//! "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018.
//!
//! Update rule, per element, at step t (one counter for the optimizer):
//! ```text
//! g <- -g                                   if maximize
//! p <- p * (1 - wd * (fixed_decay ? 1 : lr)) if weight_decouple (default)
//! g <- g + wd * p                           otherwise (L2)
//! m <- lerp(m, g, 1 - beta1)
//! v <- v - (1 - beta2) * sign(v - g^2) * g^2
//! p <- p - lr' * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//!      lr' = lr / (1 - beta1^t), or lr with adam_debias
//! ```
//! Both moments start at `initial_accumulator`.
//! Defaults: lr = 1e-2, betas = (0.9, 0.999), initial_accumulator = 1e-6,
//! weight_decay = 0, weight_decouple = true, fixed_decay = false,
//! eps = 1e-3, maximize = false, adam_debias = false. Validation as the
//! reference: lr >= 0, betas in [0, 1), weight_decay >= 0, eps >= 0.

use serde::{Deserialize, Serialize};

use super::adam_family::{debias, decay, grad_sign};
use crate::error::Result;
use crate::math::{bias_correction, lerp, sign, WeightDecay};
use crate::optim::each::{sink2, Step};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};

crate::param_state! {
    /// Yogi state: first and second moments.
    pub struct YogiState { exp_avg, exp_avg_sq }
}

/// Hyperparameters of `pytorch_optimizer.Yogi`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Yogi {
    /// Learning rate (default 1e-2).
    pub lr: f64,
    /// Decay rates of the moments (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Initial value of both moments (default 1e-6).
    pub initial_accumulator: f64,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise.
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by lr (default false).
    pub fixed_decay: bool,
    /// Added to the denominator (default 1e-3).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
    /// AdamD: no bias correction of the first moment (default false).
    pub adam_debias: bool,
}

impl Default for Yogi {
    fn default() -> Self {
        Yogi {
            lr: 1e-2,
            betas: [0.9, 0.999],
            initial_accumulator: 1e-6,
            weight_decay: 0.0,
            weight_decouple: true,
            fixed_decay: false,
            eps: 1e-3,
            maximize: false,
            adam_debias: false,
        }
    }
}

impl OptimizerConfig for Yogi {
    const NAME: &'static str = "yogi";
    const REFERENCE: &'static str = "pytorch_optimizer.Yogi (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Zaheer, Reddi, Sachan, Kale & Kumar, Adaptive Methods for Nonconvex Optimization, NeurIPS 2018";
    const SUMMARY: &'static str = "Adam with an additive, sign-controlled second-moment update";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), finite(initial_accumulator),
            non_negative(weight_decay, eps))
    }
}

/// Per-step scalars of Yogi.
#[derive(Debug, Clone, Copy)]
pub struct YogiScalars {
    sign: f32,
    wd: WeightDecay,
    w1: f32,
    nw2: f32,
    bc2_sqrt: f32,
    eps: f32,
    step_size: f32,
}

impl UpdateRule for Yogi {
    type State = YogiState;
    crate::elementwise_rule!();
}

impl Elementwise for Yogi {
    type Scalars = YogiScalars;

    fn prepare(&self, info: &StepInfo, p: &ParamMut<'_>, st: &mut YogiState) -> Result<YogiScalars> {
        let n = p.numel();
        if !st.exp_avg.is_allocated() {
            let init = self.initial_accumulator as f32;
            st.exp_avg = StateTensor::full(n, init);
            st.exp_avg_sq = StateTensor::full(n, init);
        }
        st.step += 1;
        let t = info.step;
        let [b1, b2] = self.betas;
        let step_size = debias(self.lr, self.adam_debias, b1, t);
        Ok(YogiScalars {
            sign: grad_sign(self.maximize),
            wd: decay(self.weight_decay, self.weight_decouple, self.fixed_decay, self.lr, 1.0),
            w1: (1.0 - b1) as f32,
            nw2: (-(1.0 - b2)) as f32,
            bc2_sqrt: bias_correction(b2, t).sqrt() as f32,
            eps: self.eps as f32,
            step_size: step_size as f32,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &YogiScalars, c: Chunk<'_>, apply: &mut A) {
        sink2(c, apply, |x, g, m, v| {
            let (x, g) = s.wd.apply_to(x, s.sign * g);
            let m = lerp(m, g, s.w1);
            let g2 = g * g;
            let v = v + s.nw2 * sign(v - g2) * g2;
            let de = v.sqrt() / s.bc2_sqrt + s.eps;
            // addcdiv(p, m, de, value=-step_size).
            (Step { x, g, lr: 1.0, u: s.step_size * m / de }, m, v)
        });
    }
}

