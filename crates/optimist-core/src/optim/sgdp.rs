//! SGDP: SGD whose update loses its radial component on scale-invariant
//! weights.
//!
//! **Reference:** `pytorch_optimizer.SGDP` (pytorch-optimizer 4.1.0), its
//! default per-parameter path (`foreach = False`). **Paper:** Heo et al.,
//! "AdamP: Slowing Down the Slowdown for Momentum Optimizers on
//! Scale-invariant Weights", ICLR 2021 (arXiv:2006.08217).
//!
//! Update rule, per parameter tensor:
//! ```text
//! g <- -g                                          if maximize
//! b <- momentum * b + (1 - dampening) * g          (b starts at 0)
//! d <- momentum * b + g  if nesterov  else  b
//! r <- 1
//! if p has more than one dimension, for view in (channel, layer):
//!     (channel: one row per p[i]; layer: one row holding all of p)
//!     if max over rows of |cos(g_row, p_row)| < delta / sqrt(row length):
//!         p_n <- p_row / (||p_row|| + eps)
//!         d_row <- d_row - p_n * sum(p_n * d_row)     (radial part removed)
//!         r <- wd_ratio; stop
//! p <- p * (1 - lr * wd * r / (1 - momentum))     if weight_decouple (1 - wd r / (1 - momentum) if fixed_decay)
//! p <- p - lr * d
//! ```
//! cos is torch's `cosine_similarity(x, y, eps)`,
//! `sum(x / max(||x||, eps) * y / max(||y||, eps))`. With `weight_decouple
//! = false` the reference adds `wd * p` to a gradient it no longer reads,
//! so L2 decay has no effect, here as there. Defaults: lr = 1e-3,
//! momentum = 0, dampening = 0, weight_decay = 0, weight_decouple = true,
//! fixed_decay = false, delta = 0.1, wd_ratio = 0.1, nesterov = false,
//! eps = 1e-8, maximize = false. Validation as the reference: lr >= 0,
//! weight_decay >= 0, wd_ratio in [0, 1), eps >= 0; momentum = 1 is
//! refused here (the reference divides by 1 - momentum and raises
//! ZeroDivisionError at the first step).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use super::pytorch_optimizer::radial_ratio;
use crate::math::descent_sign;
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;

crate::param_state! {
    /// SGDP state: the momentum buffer.
    pub struct SgdpState { momentum }
}

/// Hyperparameters of `pytorch_optimizer.SGDP`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sgdp {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Momentum factor (default 0).
    pub momentum: f64,
    /// Dampening of the momentum (default 0).
    pub dampening: f64,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); false has no effect (see the module docs).
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by lr (default false).
    pub fixed_decay: bool,
    /// Threshold of the scale-invariance test (default 0.1).
    pub delta: f64,
    /// Weight decay factor on scale-invariant weights (default 0.1).
    pub wd_ratio: f64,
    /// Nesterov momentum (default false).
    pub nesterov: bool,
    /// Added to norms (default 1e-8).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Sgdp {
    fn default() -> Self {
        Sgdp {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            weight_decouple: true,
            fixed_decay: false,
            delta: 0.1,
            wd_ratio: 0.1,
            nesterov: false,
            eps: 1e-8,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Sgdp {
    const NAME: &'static str = "sgdp";
    const REFERENCE: &'static str = "pytorch_optimizer.SGDP (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Heo et al., AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant Weights, ICLR 2021 (arXiv:2006.08217)";
    const SUMMARY: &'static str = "momentum SGD with the radial component projected out on scale-invariant weights";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr, weight_decay), unit_interval_open(wd_ratio),
            non_negative(eps), finite(momentum, dampening, delta))?;
        if self.momentum == 1.0 {
            return Err(Error::hparam(
                Self::NAME,
                "momentum",
                self.momentum,
                "must not be 1 (the decay ratio divides by 1 - momentum)",
            ));
        }
        Ok(())
    }
}

impl UpdateRule for Sgdp {
    type State = SgdpState;

    fn update(&self, _: &StepInfo, p: &mut ParamMut<'_>, st: &mut SgdpState) -> Result<()> {
        let n = p.numel();
        st.start_step(p.name, n)?;
        let sgn = descent_sign(self.maximize);
        let g: Vec<f32> = p.grad.iter().map(|&x| sgn * x).collect();
        let (mom, damp) = (self.momentum as f32, (1.0 - self.dampening) as f32);
        let b = st.momentum.as_mut_slice();
        let mut d = Vec::with_capacity(n);
        for (bi, &gi) in b.iter_mut().zip(&g) {
            *bi = *bi * mom + damp * gi;
            d.push(if self.nesterov { *bi * mom + gi } else { *bi });
        }
        let ratio = radial_ratio(p.value, &g, &mut d, p.shape, self.delta, self.eps as f32, self.wd_ratio);
        let ratio = ratio / (1.0 - self.momentum);
        if self.weight_decay != 0.0 && self.weight_decouple {
            let lr = if self.fixed_decay { 1.0 } else { self.lr };
            let keep = (1.0 - self.weight_decay * lr * ratio) as f32;
            for x in p.value.iter_mut() {
                *x *= keep;
            }
        }
        let lr = self.lr as f32;
        for (x, &di) in p.value.iter_mut().zip(&d) {
            *x -= lr * di;
        }
        Ok(())
    }
}
