//! Lion (EvoLved Sign Momentum), with coupled or decoupled weight decay and
//! cautious masking.
//!
//! **Reference:** `pytorch_optimizer.Lion` (pytorch-optimizer 4.1.0), with
//! `fixed_decay = false`, `maximize = false`, no gradient centralization or
//! AdaNorm. **Paper:** Chen et al., "Symbolic Discovery of Optimization
//! Algorithms", NeurIPS 2023 (arXiv:2302.06675). Cautious variant: Liang et
//! al., arXiv:2411.16085.
//!
//! Update rule, per element (one step counter for the optimizer):
//! ```text
//! p <- p * (1 - lr * wd)            if weight_decouple (default)
//! g <- g + wd * p                   otherwise (L2)
//! u <- sign(lerp(m, g, 1 - beta1))  (sign(0) = 0)
//! m <- lerp(m, g, 1 - beta2)
//! u <- cautious(u, g)               if cautious (see crate::cautious)
//! p <- p - lr * u
//! ```
//! Defaults: lr = 1e-4, betas = (0.9, 0.99), weight_decay = 0,
//! weight_decouple = true, cautious = false. Validation as the reference:
//! lr >= 0, betas in [0, 1), weight_decay >= 0.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::math::{lerp, sign, WeightDecay};
use crate::optim::each::{sink1, Step};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};

crate::param_state! {
    /// Lion state: the momentum.
    pub struct LionState { exp_avg }
}

/// Hyperparameters of `pytorch_optimizer.Lion`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lion {
    /// Learning rate (default 1e-4).
    pub lr: f64,
    /// Interpolation for the update and decay of the momentum (default (0.9, 0.99)).
    pub betas: [f64; 2],
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise.
    pub weight_decouple: bool,
    /// Cautious masking of the update (default false).
    pub cautious: bool,
}

impl Default for Lion {
    fn default() -> Self {
        Lion {
            lr: 1e-4,
            betas: [0.9, 0.99],
            weight_decay: 0.0,
            weight_decouple: true,
            cautious: false,
        }
    }
}

impl OptimizerConfig for Lion {
    const NAME: &'static str = "lion";
    const REFERENCE: &'static str = "pytorch_optimizer.Lion (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str =
        "Chen et al., Symbolic Discovery of Optimization Algorithms, NeurIPS 2023 (arXiv:2302.06675)";
    const SUMMARY: &'static str = "sign of interpolated momentum; optional cautious masking";

    fn suggested() -> serde_json::Value {
        serde_json::json!({"lr": 2e-4})
    }

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), non_negative(weight_decay))
    }
}

/// Per-step scalars of Lion.
#[derive(Debug, Clone, Copy)]
pub struct LionScalars {
    wd: WeightDecay,
    w1: f32,
    w2: f32,
    lr: f32,
}

/// One element: from (p, g, m) returns the step (p after decoupled decay,
/// direction `sign(lerp(m, g, 1 - beta1))`) and the new m.
#[inline(always)]
fn lion_element(s: &LionScalars, x: f32, g: f32, m: f32) -> (Step, f32) {
    let (x, g) = s.wd.apply_to(x, g);
    let u = sign(lerp(m, g, s.w1));
    (Step { x, g, lr: s.lr, u }, lerp(m, g, s.w2))
}

impl UpdateRule for Lion {
    type State = LionState;
    crate::elementwise_rule!();
}

impl Elementwise for Lion {
    type Scalars = LionScalars;

    fn prepare(&self, _: &StepInfo, p: &ParamMut<'_>, st: &mut LionState) -> Result<LionScalars> {
        if !st.exp_avg.is_allocated() {
            st.exp_avg = StateTensor::zeros(p.numel());
        }
        st.step += 1;
        Ok(LionScalars {
            wd: WeightDecay::new(self.weight_decay, self.weight_decouple, self.lr),
            w1: (1.0 - self.betas[0]) as f32,
            w2: (1.0 - self.betas[1]) as f32,
            lr: self.lr as f32,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &LionScalars, c: Chunk<'_>, apply: &mut A) {
        sink1(c, apply, |x, g, m| lion_element(s, x, g, m));
    }

    fn cautious(&self) -> bool {
        self.cautious
    }
}
