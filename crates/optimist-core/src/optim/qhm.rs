//! QHM: quasi-hyperbolic momentum.
//!
//! **Reference:** `pytorch_optimizer.QHM` (pytorch-optimizer 4.1.0), its
//! default per-parameter path (`foreach = False`). **Paper:** Ma & Yarats,
//! "Quasi-hyperbolic momentum and Adam for deep learning", ICLR 2019
//! (arXiv:1810.06801).
//!
//! Update rule, per element:
//! ```text
//! g <- -g                                  if maximize
//! p <- p * (1 - lr * wd)                   if weight_decouple (1 - wd if fixed_decay)
//! g <- g + wd * p                          otherwise (L2)
//! b <- lerp(b, g, 1 - momentum)            (b starts at 0)
//! p <- p - lr * (nu * b + (1 - nu) * g)
//! ```
//! The reference adds the two terms one after the other,
//! `p += (-lr nu) b; p += (-lr (1 - nu)) g`; here the direction
//! `nu b + (1 - nu) g` is formed first (it differs by rounding only).
//! Defaults: lr = 1e-3, momentum = 0, nu = 1, weight_decay = 0,
//! weight_decouple = false, fixed_decay = false, maximize = false.
//! Validation as the reference: lr >= 0, momentum in [0, 1),
//! weight_decay >= 0, nu in [0, 1].

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::math::{descent_sign, lerp, WeightDecay};
use crate::optim::each::{sink1, Step};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;

crate::param_state! {
    /// QHM state: the momentum buffer.
    pub struct QhmState { momentum_buffer }
}

/// Hyperparameters of `pytorch_optimizer.QHM`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Qhm {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Momentum factor (default 0).
    pub momentum: f64,
    /// Weight of the momentum against the current gradient (default 1).
    pub nu: f64,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default false); L2 otherwise.
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by lr (default false).
    pub fixed_decay: bool,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Qhm {
    fn default() -> Self {
        Qhm {
            lr: 1e-3,
            momentum: 0.0,
            nu: 1.0,
            weight_decay: 0.0,
            weight_decouple: false,
            fixed_decay: false,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Qhm {
    const NAME: &'static str = "qhm";
    const REFERENCE: &'static str = "pytorch_optimizer.QHM (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str =
        "Ma & Yarats, Quasi-hyperbolic momentum and Adam for deep learning, ICLR 2019 (arXiv:1810.06801)";
    const SUMMARY: &'static str = "SGD with quasi-hyperbolic momentum (nu-weighted average of momentum and gradient)";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), unit_interval_open(momentum),
            non_negative(weight_decay), unit_interval(nu))
    }
}

/// Per-step scalars of QHM.
#[derive(Debug, Clone, Copy)]
pub struct QhmScalars {
    wd: WeightDecay,
    sgn: f32,
    w: f32,
    nu: f32,
    one_minus_nu: f32,
    lr: f32,
}

impl UpdateRule for Qhm {
    type State = QhmState;
    crate::elementwise_rule!();
}

impl Elementwise for Qhm {
    type Scalars = QhmScalars;

    fn prepare(&self, _: &StepInfo, p: &ParamMut<'_>, st: &mut QhmState) -> Result<QhmScalars> {
        st.momentum_buffer.ensure(p.name, "momentum_buffer", p.numel(), 0.0)?;
        st.step += 1;
        let decay_lr = if self.fixed_decay { 1.0 } else { self.lr };
        Ok(QhmScalars {
            wd: WeightDecay::new(self.weight_decay, self.weight_decouple, decay_lr),
            sgn: descent_sign(self.maximize),
            w: (1.0 - self.momentum) as f32,
            nu: self.nu as f32,
            one_minus_nu: (1.0 - self.nu) as f32,
            lr: self.lr as f32,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &QhmScalars, c: Chunk<'_>, apply: &mut A) {
        sink1(c, apply, |x, g, b| {
            let (x, g) = s.wd.apply_to(x, s.sgn * g);
            let b = lerp(b, g, s.w);
            (Step { x, g, lr: s.lr, u: s.nu * b + s.one_minus_nu * g }, b)
        });
    }
}
