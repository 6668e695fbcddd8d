//! SGDW: SGD with (Nesterov) momentum and decoupled weight decay.
//!
//! **Reference:** `pytorch_optimizer.SGDW` (pytorch-optimizer 4.1.0), its
//! default foreach path (the per-parameter path computes the same values).
//! **Paper:** Loshchilov & Hutter, "Decoupled Weight Decay Regularization",
//! ICLR 2019 (arXiv:1711.05101).
//!
//! Update rule, per element:
//! ```text
//! g <- -g                            if maximize
//! p <- p * (1 - lr * wd)             if weight_decouple (default)
//! g <- g + wd * p                    otherwise (L2)
//! if momentum > 0:
//!     b <- g                                    on the first step (no dampening)
//!     b <- momentum * b + (1 - dampening) * g   afterwards
//!     g <- g + momentum * b  if nesterov  else  b
//! p <- p - lr * g
//! ```
//! Defaults: lr = 1e-4, momentum = 0, weight_decay = 0, weight_decouple =
//! true, dampening = 0, nesterov = false, maximize = false. Validation as the
//! reference: lr >= 0, momentum in [0, 1), weight_decay >= 0 (dampening and
//! nesterov are not checked: nesterov without momentum is plain SGD).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::math::WeightDecay;
use crate::rule::OptimizerConfig;

crate::param_state! {
    /// SGDW state: the momentum buffer (allocated only when momentum > 0).
    pub struct SgdwState { momentum_buffer }
}

/// Hyperparameters of `pytorch_optimizer.SGDW`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sgdw {
    /// Learning rate (default 1e-4).
    pub lr: f64,
    /// Momentum factor (default 0).
    pub momentum: f64,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise.
    pub weight_decouple: bool,
    /// Dampening of the momentum (default 0).
    pub dampening: f64,
    /// Nesterov momentum (default false).
    pub nesterov: bool,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Sgdw {
    fn default() -> Self {
        Sgdw {
            lr: 1e-4,
            momentum: 0.0,
            weight_decay: 0.0,
            weight_decouple: true,
            dampening: 0.0,
            nesterov: false,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Sgdw {
    const NAME: &'static str = "sgdw";
    const REFERENCE: &'static str = "pytorch_optimizer.SGDW (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str =
        "Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019 (arXiv:1711.05101)";
    const SUMMARY: &'static str = "SGD with (Nesterov) momentum and decoupled weight decay";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), unit_interval_open(momentum),
            non_negative(weight_decay), finite(dampening))
    }
}

// momentum is in [0, 1) (validated), so SgdScalars::start's momentum != 0
// is the reference's momentum > 0.
crate::optim::sgd::sgd_rule!(Sgdw, SgdwState, |c| WeightDecay::new(
    c.weight_decay,
    c.weight_decouple,
    c.lr
));
