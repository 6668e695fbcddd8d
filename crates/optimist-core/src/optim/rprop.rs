//! Rprop: resilient backpropagation, a per-element step size grown or
//! shrunk by the sign agreement of consecutive gradients.
//!
//! **Reference:** `torch.optim.Rprop` (torch 2.15.0), single-tensor path
//! (what the default `foreach = None` runs on CPU tensors), with
//! `capturable = False`. **Paper:** Riedmiller & Braun, "A Direct Adaptive
//! Method for Faster Backpropagation Learning: The RPROP Algorithm", IEEE
//! ICNN 1993.
//!
//! Update rule, per element (`prev` starts at 0, the step size at lr):
//! ```text
//! g    <- -g                                   if maximize
//! f    <- etaplus if g * prev > 0, etaminus if g * prev < 0, 1 if = 0
//! step <- clamp(step * f, step_size_min, step_size_max)
//! g    <- 0                                    where f = etaminus
//! p    <- p - sign(g) * step
//! prev <- g
//! ```
//! lr only sets the initial step size (as in torch, a later change of lr
//! has no effect). Defaults: lr = 1e-2, etas = (0.5, 1.2), step_sizes =
//! (1e-6, 50), maximize = false. Validation as torch: lr >= 0 and
//! 0 < etaminus < 1 < etaplus. torch's execution flags (`foreach`,
//! `differentiable`, `capturable`) are not hyperparameters here.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::math::{descent_sign, sign};
use crate::optim::each::{sink2, Step};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;
use crate::validate as v;

crate::param_state! {
    /// Rprop state: the previous (masked) gradient and the step sizes.
    pub struct RpropState { prev, step_size }
}

/// Hyperparameters of [`torch.optim.Rprop`](https://pytorch.org/docs/stable/generated/torch.optim.Rprop.html).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rprop {
    /// Learning rate: the initial step size (default 1e-2).
    pub lr: f64,
    /// (etaminus, etaplus): shrink and growth factors (default (0.5, 1.2)).
    pub etas: [f64; 2],
    /// (min, max) step size (default (1e-6, 50)).
    pub step_sizes: [f64; 2],
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Rprop {
    fn default() -> Self {
        Rprop {
            lr: 1e-2,
            etas: [0.5, 1.2],
            step_sizes: [1e-6, 50.0],
            maximize: false,
        }
    }
}

impl OptimizerConfig for Rprop {
    const NAME: &'static str = "rprop";
    const REFERENCE: &'static str = "torch.optim.Rprop (torch 2.15.0)";
    const PAPER: &'static str = "Riedmiller & Braun, A Direct Adaptive Method for Faster Backpropagation Learning: The RPROP Algorithm, IEEE ICNN 1993";
    const SUMMARY: &'static str = "sign steps with per-element step sizes adapted by gradient sign agreement";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr))?;
        let [em, ep] = self.etas;
        if !(0.0 < em && em < 1.0 && 1.0 < ep && ep.is_finite()) {
            return Err(Error::hparam(
                Self::NAME,
                "etas",
                format!("[{em}, {ep}]"),
                "must satisfy 0 < etaminus < 1 < etaplus",
            ));
        }
        v::finite(Self::NAME, "step_sizes[0]", self.step_sizes[0])?;
        v::finite(Self::NAME, "step_sizes[1]", self.step_sizes[1])
    }
}

/// Per-step scalars of Rprop.
#[derive(Debug, Clone, Copy)]
pub struct RpropScalars {
    sgn: f32,
    etaminus: f32,
    etaplus: f32,
    min: f32,
    max: f32,
}

impl UpdateRule for Rprop {
    type State = RpropState;
    crate::elementwise_rule!();
}

impl Elementwise for Rprop {
    type Scalars = RpropScalars;

    fn prepare(&self, _: &StepInfo, p: &ParamMut<'_>, st: &mut RpropState) -> Result<RpropScalars> {
        let n = p.numel();
        st.prev.ensure(p.name, "prev", n, 0.0)?;
        st.step_size.ensure(p.name, "step_size", n, self.lr as f32)?;
        st.step += 1;
        Ok(RpropScalars {
            sgn: descent_sign(self.maximize),
            etaminus: self.etas[0] as f32,
            etaplus: self.etas[1] as f32,
            min: self.step_sizes[0] as f32,
            max: self.step_sizes[1] as f32,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &RpropScalars, c: Chunk<'_>, apply: &mut A) {
        // lr 1: the step size is part of the direction.
        sink2(c, apply, |x, g, prev, step| {
            let g = s.sgn * g;
            let d = g * prev;
            let f = if d > 0.0 {
                s.etaplus
            } else if d < 0.0 {
                s.etaminus
            } else if d == 0.0 {
                1.0
            } else {
                d // NaN stays NaN
            };
            // torch's clamp(min, max): NaN stays NaN.
            let st = step * f;
            let st = if st.is_nan() { st } else { st.max(s.min).min(s.max) };
            let gm = if d < 0.0 { 0.0 } else { g };
            (Step { x, g: gm, lr: 1.0, u: sign(gm) * st }, gm, st)
        });
    }
}
