//! SGD with momentum, dampening, Nesterov momentum and L2 weight decay.
//!
//! **Reference:** `torch.optim.SGD` (torch 2.15.0), single-tensor path.
//! **Papers:** Polyak 1964 (heavy ball); Nesterov 1983; Sutskever et al.,
//! "On the importance of initialization and momentum in deep learning",
//! ICML 2013.
//!
//! Update rule, per element, at step t:
//! ```text
//! g <- -g                       if maximize
//! g <- g + weight_decay * p     (coupled L2)
//! if momentum != 0:
//!     b <- g                                  at t = 1 (no dampening on the first step)
//!     b <- momentum * b + (1 - dampening) * g otherwise
//!     g <- g + momentum * b  if nesterov else  b
//! p <- p - lr * g
//! ```
//! Defaults: lr = 1e-3, momentum = 0, dampening = 0, weight_decay = 0,
//! nesterov = false, maximize = false. `nesterov` requires momentum > 0 and
//! dampening = 0 (as torch).

use serde::{Deserialize, Serialize};

use crate::cautious::{Apply, Plain};
use crate::error::{Error, Result};
use crate::math::WeightDecay;
use crate::optimizer::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};
use crate::validate as v;

crate::param_state! {
    /// SGD state: the momentum buffer (allocated only when momentum != 0).
    pub struct SgdState { momentum_buffer }
}

/// Hyperparameters of [`torch.optim.SGD`](https://pytorch.org/docs/stable/generated/torch.optim.SGD.html).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sgd {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Momentum factor (default 0).
    pub momentum: f64,
    /// Dampening of the momentum (default 0).
    pub dampening: f64,
    /// Coupled L2 weight decay (default 0).
    pub weight_decay: f64,
    /// Nesterov momentum (default false).
    pub nesterov: bool,
    /// Maximize the objective instead of minimizing (default false).
    pub maximize: bool,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Sgd {
    const NAME: &'static str = "sgd";
    const REFERENCE: &'static str = "torch.optim.SGD (torch 2.15.0)";
    const PAPER: &'static str = "Polyak 1964; Nesterov 1983; Sutskever et al., ICML 2013";
    const SUMMARY: &'static str = "stochastic gradient descent with (Nesterov) momentum";

    fn validate(&self) -> Result<()> {
        v::non_negative(Self::NAME, "lr", self.lr)?;
        v::non_negative(Self::NAME, "momentum", self.momentum)?;
        v::finite(Self::NAME, "dampening", self.dampening)?;
        v::non_negative(Self::NAME, "weight_decay", self.weight_decay)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::hparam(
                Self::NAME,
                "nesterov",
                true,
                "Nesterov momentum requires momentum > 0 and dampening = 0",
            ));
        }
        Ok(())
    }
}

impl UpdateRule for Sgd {
    type State = SgdState;
    const EXPOSES_UPDATE: bool = true;

    fn update(&self, info: &StepInfo, p: &mut ParamMut<'_>, st: &mut SgdState) -> Result<()> {
        self.update_with(info, p, st, &mut Plain)
    }

    /// The step `p - lr * d` goes through `apply`.
    fn update_with<A: Apply>(
        &self,
        _info: &StepInfo,
        p: &mut ParamMut<'_>,
        st: &mut SgdState,
        apply: &mut A,
    ) -> Result<()> {
        let wd = WeightDecay::new(self.weight_decay, false, self.lr);
        let lr = self.lr as f32;
        let sgn = if self.maximize { -1.0f32 } else { 1.0 };
        st.step += 1;
        if self.momentum == 0.0 {
            for (x, &g) in p.value.iter_mut().zip(p.grad.iter()) {
                let g = wd.apply(x, sgn * g);
                apply.apply(x, g, lr, g);
            }
            return Ok(());
        }
        let mom = self.momentum as f32;
        let damp = (1.0 - self.dampening) as f32;
        let first = !st.momentum_buffer.is_allocated();
        if first {
            st.momentum_buffer = StateTensor::zeros(p.numel());
        }
        let buf = st.momentum_buffer.as_mut_slice();
        for ((x, &g), b) in p.value.iter_mut().zip(p.grad.iter()).zip(buf) {
            let g = wd.apply(x, sgn * g);
            *b = if first { g } else { *b * mom + damp * g };
            let d = if self.nesterov { g + mom * *b } else { *b };
            apply.apply(x, g, lr, d);
        }
        Ok(())
    }
}
