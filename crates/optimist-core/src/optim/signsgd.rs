//! signSGD and Signum (signSGD with momentum).
//!
//! **Reference:** `pytorch_optimizer.SignSGD` (pytorch-optimizer 4.1.0),
//! `maximize = false`. **Paper:** Bernstein, Wang, Azizzadenesheli &
//! Anandkumar, "signSGD: Compressed Optimisation for Non-Convex Problems",
//! ICML 2018 (arXiv:1802.04434).
//!
//! Update rule, per element:
//! ```text
//! p <- p * (1 - lr * wd)              if weight_decouple (default)
//! g <- g + wd * p                     otherwise (L2)
//! b <- lerp(b, g, 1 - momentum)       if momentum > 0 (Signum; b starts at 0)
//! p <- p - lr * sign(b or g)          (sign(0) = 0)
//! ```
//! Defaults: lr = 1e-3, momentum = 0.9, weight_decay = 0,
//! weight_decouple = true. momentum = 0 is plain signSGD. Validation as the
//! reference: lr >= 0, momentum in [0, 1) (the reference calls it `beta` in
//! its message), weight_decay >= 0.

use serde::{Deserialize, Serialize};

use crate::cautious::{Apply, Plain};
use crate::error::Result;
use crate::math::{lerp, sign, WeightDecay};
use crate::optimizer::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};
use crate::validate as v;

crate::param_state! {
    /// signSGD state: the momentum buffer (allocated only when momentum > 0).
    pub struct SignSgdState { momentum_buffer }
}

/// Hyperparameters of `pytorch_optimizer.SignSGD`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignSgd {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Momentum factor (default 0.9); 0 gives signSGD, > 0 Signum.
    pub momentum: f64,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise.
    pub weight_decouple: bool,
}

impl Default for SignSgd {
    fn default() -> Self {
        SignSgd {
            lr: 1e-3,
            momentum: 0.9,
            weight_decay: 0.0,
            weight_decouple: true,
        }
    }
}

impl OptimizerConfig for SignSgd {
    const NAME: &'static str = "signsgd";
    const REFERENCE: &'static str = "pytorch_optimizer.SignSGD (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Bernstein et al., signSGD: Compressed Optimisation for Non-Convex Problems, ICML 2018 (arXiv:1802.04434)";
    const SUMMARY: &'static str = "sign of the gradient (signSGD) or of its momentum (Signum)";

    fn validate(&self) -> Result<()> {
        v::non_negative(Self::NAME, "lr", self.lr)?;
        v::unit_interval_open(Self::NAME, "momentum", self.momentum)?;
        v::non_negative(Self::NAME, "weight_decay", self.weight_decay)
    }
}

impl UpdateRule for SignSgd {
    type State = SignSgdState;
    const EXPOSES_UPDATE: bool = true;

    fn update(&self, info: &StepInfo, p: &mut ParamMut<'_>, st: &mut SignSgdState) -> Result<()> {
        self.update_with(info, p, st, &mut Plain)
    }

    fn update_with<A: Apply>(
        &self,
        _info: &StepInfo,
        p: &mut ParamMut<'_>,
        st: &mut SignSgdState,
        apply: &mut A,
    ) -> Result<()> {
        st.step += 1;
        let wd = WeightDecay::new(self.weight_decay, self.weight_decouple, self.lr);
        let lr = self.lr as f32;
        if self.momentum > 0.0 {
            if !st.momentum_buffer.is_allocated() {
                st.momentum_buffer = StateTensor::zeros(p.numel());
            }
            let w = (1.0 - self.momentum) as f32;
            let buf = st.momentum_buffer.as_mut_slice();
            for ((x, &g), b) in p.value.iter_mut().zip(p.grad.iter()).zip(buf) {
                let g = wd.apply(x, g);
                *b = lerp(*b, g, w);
                apply.apply(x, g, lr, sign(*b));
            }
        } else {
            for (x, &g) in p.value.iter_mut().zip(p.grad.iter()) {
                let g = wd.apply(x, g);
                apply.apply(x, g, lr, sign(g));
            }
        }
        Ok(())
    }
}
