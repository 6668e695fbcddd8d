//! LARS: layer-wise adaptive rate scaling on SGD with momentum.
//!
//! **Reference:** `pytorch_optimizer.LARS` (pytorch-optimizer 4.1.0), its
//! default foreach path (the per-parameter path computes the same values).
//! **Paper:** You, Gitman & Ginsburg, "Large Batch Training of Convolutional
//! Networks" (arXiv:1708.03888).
//!
//! Update rule, per parameter tensor:
//! ```text
//! g <- -g                                       if maximize
//! if p has more than one dimension:
//!     denom <- ||g|| + wd * ||p||
//!     trust <- trust_coefficient * ||p|| / denom  if ||p|| > 0 and denom > 0, else 1
//!     g     <- (g + wd * p) * trust
//! if momentum > 0:
//!     b <- momentum * b + (1 - dampening) * g      (b starts at 0)
//!     g <- g + momentum * b  if nesterov  else  b
//! p <- p - lr * g
//! ```
//! Scalars and vectors (at most one dimension) take plain momentum SGD,
//! without weight decay or scaling. Defaults: lr = 1e-3, weight_decay = 0,
//! momentum = 0.9, dampening = 0, trust_coefficient = 1e-3, nesterov =
//! false, maximize = false. Validation as the reference: lr >= 0,
//! weight_decay >= 0, momentum and dampening in [0, 1),
//! trust_coefficient >= 0.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::math::{descent_sign, l2_norm};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;

crate::param_state! {
    /// LARS state: the momentum buffer (allocated when momentum > 0).
    pub struct LarsState { momentum_buffer }
}

/// Hyperparameters of `pytorch_optimizer.LARS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lars {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// L2 weight decay inside the trust ratio (default 0).
    pub weight_decay: f64,
    /// Momentum factor (default 0.9).
    pub momentum: f64,
    /// Dampening of the momentum (default 0).
    pub dampening: f64,
    /// Trust coefficient (default 1e-3).
    pub trust_coefficient: f64,
    /// Nesterov momentum (default false).
    pub nesterov: bool,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Lars {
    fn default() -> Self {
        Lars {
            lr: 1e-3,
            weight_decay: 0.0,
            momentum: 0.9,
            dampening: 0.0,
            trust_coefficient: 1e-3,
            nesterov: false,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Lars {
    const NAME: &'static str = "lars";
    const REFERENCE: &'static str = "pytorch_optimizer.LARS (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str =
        "You, Gitman & Ginsburg, Large Batch Training of Convolutional Networks (arXiv:1708.03888)";
    const SUMMARY: &'static str = "momentum SGD with a per-layer trust ratio ||p|| / ||g + wd p||";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr, weight_decay),
            unit_interval_open(momentum, dampening), non_negative(trust_coefficient))
    }
}

impl UpdateRule for Lars {
    type State = LarsState;

    fn update(&self, _: &StepInfo, p: &mut ParamMut<'_>, st: &mut LarsState) -> Result<()> {
        let n = p.numel();
        let momentum = self.momentum > 0.0;
        if momentum {
            st.momentum_buffer.ensure(p.name, "momentum_buffer", n, 0.0)?;
        }
        st.step += 1;
        let sgn = descent_sign(self.maximize);
        let mut g: Vec<f32> = p.grad.iter().map(|&x| sgn * x).collect();
        if p.shape.len() > 1 {
            let wd = self.weight_decay as f32;
            let pn = l2_norm(p.value);
            let gn = l2_norm(&g);
            let denom = gn + wd * pn;
            let trust = if pn > 0.0 && denom > 0.0 {
                (self.trust_coefficient as f32) * pn / denom
            } else {
                1.0
            };
            for (gi, &x) in g.iter_mut().zip(p.value.iter()) {
                *gi = (*gi + wd * x) * trust;
            }
        }
        if momentum {
            let (mom, damp) = (self.momentum as f32, (1.0 - self.dampening) as f32);
            let b = st.momentum_buffer.as_mut_slice();
            for (gi, bi) in g.iter_mut().zip(b.iter_mut()) {
                *bi = *bi * mom + damp * *gi;
                *gi = if self.nesterov { *gi + mom * *bi } else { *bi };
            }
        }
        let lr = self.lr as f32;
        for (x, &gi) in p.value.iter_mut().zip(&g) {
            *x -= lr * gi;
        }
        Ok(())
    }
}
