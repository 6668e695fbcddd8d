//! Adadelta: steps scaled by the ratio of the moving root mean squares of
//! past updates and of gradients.
//!
//! **Reference:** `torch.optim.Adadelta` (torch 2.15.0), single-tensor path.
//! **Paper:** Zeiler, "ADADELTA: An Adaptive Learning Rate Method",
//! arXiv:1212.5701 (2012).
//!
//! Update rule, per element (torch's order of operations):
//! ```text
//! g <- -g                                  if maximize
//! g <- g + wd * p                          (L2)
//! s <- rho * s + (1 - rho) * g^2
//! d = sqrt(a + eps) / sqrt(s + eps) * g
//! a <- rho * a + (1 - rho) * d^2
//! p <- p + (-lr) * d
//! ```
//! Defaults: lr = 1.0, rho = 0.9, eps = 1e-6, weight_decay = 0,
//! maximize = false; rho must lie in [0, 1]. State per parameter:
//! `square_avg`, `acc_delta`.
//!
//! Known differences: torch's CPU kernels fuse multiply-adds (addcmul, add
//! with alpha) into FMA instructions, and MKL builds of torch take f32 square
//! roots from MKL, which are not always correctly rounded; here every product
//! is rounded and sqrt is IEEE, so values can differ from torch's in the last
//! bits (measured in docs/torch-catalogue.md).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::rule::{Apply, Chunk, Elementwise};
use crate::math::{descent_sign, Ema, WeightDecay};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;

crate::param_state! {
    /// Adadelta state: moving averages of g² and of the squared updates.
    pub struct AdadeltaState { square_avg, acc_delta }
}

/// Hyperparameters of `torch.optim.Adadelta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adadelta {
    /// Scale of the update (default 1.0).
    pub lr: f64,
    /// Decay of both moving averages (default 0.9).
    pub rho: f64,
    /// Added inside both square roots (default 1e-6).
    pub eps: f64,
    /// L2 weight decay (default 0).
    pub weight_decay: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Adadelta {
    fn default() -> Self {
        Adadelta {
            lr: 1.0,
            rho: 0.9,
            eps: 1e-6,
            weight_decay: 0.0,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Adadelta {
    const NAME: &'static str = "adadelta";
    const REFERENCE: &'static str = "torch.optim.Adadelta (torch 2.15.0)";
    const PAPER: &'static str =
        "Zeiler, ADADELTA: An Adaptive Learning Rate Method, arXiv:1212.5701 (2012)";
    const SUMMARY: &'static str =
        "steps scaled by the ratio of moving RMS of past updates and of gradients";

    fn suggested() -> serde_json::Value {
        serde_json::json!({"lr": 1.0})
    }

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), unit_interval(rho), non_negative(eps, weight_decay))
    }
}

/// Per-step scalars of Adadelta.
#[derive(Debug, Clone, Copy)]
pub struct AdadeltaScalars {
    wd: WeightDecay,
    sgn: f32,
    ema: Ema,
    eps: f32,
    neg_lr: f32,
}

/// One element: from (p, g, square_avg, acc_delta) returns their new values.
#[inline(always)]
fn adadelta_element(s: &AdadeltaScalars, x: f32, g: f32, sq: f32, a: f32) -> (f32, f32, f32) {
    let (x, g) = s.wd.apply_to(x, s.sgn * g);
    let sq = s.ema.sq(sq, g);
    let std = (sq + s.eps).sqrt();
    let delta = (a + s.eps).sqrt() / std * g;
    let a = s.ema.sq(a, delta);
    (x + s.neg_lr * delta, sq, a)
}

impl UpdateRule for Adadelta {
    type State = AdadeltaState;
    crate::elementwise_rule!(direct);
}

impl Elementwise for Adadelta {
    type Scalars = AdadeltaScalars;

    fn prepare(
        &self,
        _: &StepInfo,
        p: &ParamMut<'_>,
        st: &mut AdadeltaState,
    ) -> Result<AdadeltaScalars> {
        st.start_step(p.name, p.numel())?;
        Ok(AdadeltaScalars {
            wd: WeightDecay::new(self.weight_decay, false, self.lr),
            sgn: descent_sign(self.maximize),
            ema: Ema::new(self.rho),
            eps: self.eps as f32,
            neg_lr: (-self.lr) as f32,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &AdadeltaScalars, c: Chunk<'_>, apply: &mut A) {
        super::each::direct2(s, c, apply, adadelta_element);
    }
}
