//! Tiger (Tight-fisted Optimizer): the sign of one gradient EMA.
//!
//! **Reference:** `pytorch_optimizer.Tiger` (pytorch-optimizer 4.1.0), its
//! default foreach path (the per-parameter path computes the same values).
//! **Paper:** Su, "Tiger: A Tight-fisted Optimizer" (2023,
//! <https://github.com/bojone/tiger>).
//!
//! Update rule, per element (one step counter for the optimizer):
//! ```text
//! g <- -g                            if maximize
//! p <- p * (1 - lr * wd)             if weight_decouple (default; 1 - wd if fixed_decay)
//! g <- g + wd * p                    otherwise (L2)
//! m <- lerp(m, g, 1 - beta)          (m starts at 0)
//! p <- p - lr * sign(m)              (sign(0) = 0)
//! ```
//! Defaults: lr = 1e-3, beta = 0.965, weight_decay = 0.01,
//! weight_decouple = true, fixed_decay = false, maximize = false.
//! Validation as the reference: lr >= 0, beta in [0, 1), weight_decay >= 0.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::math::{descent_sign, lerp, sign, WeightDecay};
use crate::optim::each::{sink1, Step};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;

crate::param_state! {
    /// Tiger state: the gradient EMA.
    pub struct TigerState { exp_avg }
}

/// Hyperparameters of `pytorch_optimizer.Tiger`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tiger {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay of the gradient EMA (default 0.965).
    pub beta: f64,
    /// Weight decay (default 0.01).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise.
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by lr (default false).
    pub fixed_decay: bool,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Tiger {
    fn default() -> Self {
        Tiger {
            lr: 1e-3,
            beta: 0.965,
            weight_decay: 0.01,
            weight_decouple: true,
            fixed_decay: false,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Tiger {
    const NAME: &'static str = "tiger";
    const REFERENCE: &'static str = "pytorch_optimizer.Tiger (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Su, Tiger: A Tight-fisted Optimizer (2023, github.com/bojone/tiger)";
    const SUMMARY: &'static str = "sign of a single gradient EMA (Lion with beta1 = beta2)";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), unit_interval_open(beta), non_negative(weight_decay))
    }
}

/// Per-step scalars of Tiger.
#[derive(Debug, Clone, Copy)]
pub struct TigerScalars {
    wd: WeightDecay,
    sgn: f32,
    w: f32,
    lr: f32,
}

impl UpdateRule for Tiger {
    type State = TigerState;
    crate::elementwise_rule!();
}

impl Elementwise for Tiger {
    type Scalars = TigerScalars;

    fn prepare(&self, _: &StepInfo, p: &ParamMut<'_>, st: &mut TigerState) -> Result<TigerScalars> {
        st.exp_avg.ensure(p.name, "exp_avg", p.numel(), 0.0)?;
        st.step += 1;
        let decay_lr = if self.fixed_decay { 1.0 } else { self.lr };
        Ok(TigerScalars {
            wd: WeightDecay::new(self.weight_decay, self.weight_decouple, decay_lr),
            sgn: descent_sign(self.maximize),
            w: (1.0 - self.beta) as f32,
            lr: self.lr as f32,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &TigerScalars, c: Chunk<'_>, apply: &mut A) {
        sink1(c, apply, |x, g, m| {
            let (x, g) = s.wd.apply_to(x, s.sgn * g);
            let m = lerp(m, g, s.w);
            (Step { x, g, lr: s.lr, u: sign(m) }, m)
        });
    }
}
