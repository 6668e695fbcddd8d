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

use crate::cautious::{Apply, CautiousMask, Plain};
use crate::error::Result;
use crate::math::{lerp, sign, WeightDecay};
use crate::optimizer::{OptimizerConfig, StepInfo, UpdateRule};
use crate::state::StateStore;
use crate::tensor::{ParamMut, StateTensor};
use crate::validate as v;

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

    fn validate(&self) -> Result<()> {
        v::non_negative(Self::NAME, "lr", self.lr)?;
        v::betas(Self::NAME, self.betas)?;
        v::non_negative(Self::NAME, "weight_decay", self.weight_decay)
    }
}

impl UpdateRule for Lion {
    type State = LionState;
    const EXPOSES_UPDATE: bool = true;

    fn update(&self, info: &StepInfo, p: &mut ParamMut<'_>, st: &mut LionState) -> Result<()> {
        if self.cautious {
            let mut mask = CautiousMask::default();
            self.update_with(info, p, st, &mut mask)?;
            mask.finish(p.value)
        } else {
            self.update_with(info, p, st, &mut Plain)
        }
    }

    fn update_all(
        &self,
        info: &StepInfo,
        params: &mut [ParamMut<'_>],
        states: &mut StateStore<LionState>,
    ) -> Result<()> {
        if self.cautious {
            self.update_all_with(info, params, states, &mut CautiousMask::default())
        } else {
            self.update_all_with(info, params, states, &mut Plain)
        }
    }

    fn update_with<A: Apply>(
        &self,
        _info: &StepInfo,
        p: &mut ParamMut<'_>,
        st: &mut LionState,
        apply: &mut A,
    ) -> Result<()> {
        if !st.exp_avg.is_allocated() {
            st.exp_avg = StateTensor::zeros(p.numel());
        }
        st.step += 1;
        let wd = WeightDecay::new(self.weight_decay, self.weight_decouple, self.lr);
        let w1 = (1.0 - self.betas[0]) as f32;
        let w2 = (1.0 - self.betas[1]) as f32;
        let lr = self.lr as f32;
        let m = st.exp_avg.as_mut_slice();
        for ((x, &g), m) in p.value.iter_mut().zip(p.grad.iter()).zip(m) {
            let g = wd.apply(x, g);
            let u = sign(lerp(*m, g, w1));
            *m = lerp(*m, g, w2);
            apply.apply(x, g, lr, u);
        }
        Ok(())
    }
}
