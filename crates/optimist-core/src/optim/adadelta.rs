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
use crate::math::{descent_sign, Ema, WeightDecay};
use crate::optimizer::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;
use crate::validate as v;

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

    fn validate(&self) -> Result<()> {
        v::non_negative(Self::NAME, "lr", self.lr)?;
        v::unit_interval(Self::NAME, "rho", self.rho)?;
        v::non_negative(Self::NAME, "eps", self.eps)?;
        v::non_negative(Self::NAME, "weight_decay", self.weight_decay)
    }
}

impl UpdateRule for Adadelta {
    type State = AdadeltaState;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut AdadeltaState) -> Result<()> {
        let n = p.numel();
        let sq = st.square_avg.get_or_fill(p.name, "square_avg", n, 0.0)?;
        let acc = st.acc_delta.get_or_fill(p.name, "acc_delta", n, 0.0)?;
        st.step += 1;
        let ema = Ema::new(self.rho);
        let eps = self.eps as f32;
        let neg_lr = (-self.lr) as f32;
        let wd = WeightDecay::new(self.weight_decay, false, self.lr);
        let sgn = descent_sign(self.maximize);
        let slices = p.value.iter_mut().zip(p.grad.iter()).zip(sq).zip(acc);
        for (((x, &g), s), a) in slices {
            let g = wd.apply(x, sgn * g);
            *s = ema.sq(*s, g);
            let std = (*s + eps).sqrt();
            let delta = (*a + eps).sqrt() / std * g;
            *a = ema.sq(*a, delta);
            *x += neg_lr * delta;
        }
        Ok(())
    }
}
