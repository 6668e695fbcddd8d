//! Adamax: Adam with the infinity norm in place of the second moment.
//!
//! **Reference:** `torch.optim.Adamax` (torch 2.15.0), single-tensor path.
//! **Paper:** Kingma & Ba, "Adam: A Method for Stochastic Optimization",
//! ICLR 2015 (arXiv:1412.6980), section 7.1.
//!
//! Update rule, per element, at step t (torch's order of operations):
//! ```text
//! g <- -g                                  if maximize
//! g <- g + wd * p                          (L2)
//! m <- lerp(m, g, 1 - beta1)
//! u <- max(beta2 * u, |g| + eps)           (NaN propagates, as torch.maximum)
//! p <- p + (-lr / (1 - beta1^t)) * m / u
//! ```
//! Defaults: lr = 2e-3, betas = (0.9, 0.999), eps = 1e-8, weight_decay = 0,
//! maximize = false. State per parameter: `exp_avg`, `exp_inf`.
//!
//! Known differences: torch's CPU kernels fuse multiply-adds (lerp) into FMA
//! instructions; here every product is rounded, so values can differ from
//! torch's in the last bits (measured in docs/torch-catalogue.md).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::math::{bias_correction, descent_sign, maximum, Ema, WeightDecay};
use crate::optimizer::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;
use crate::validate as v;

crate::param_state! {
    /// Adamax state: the first moment and the exponentially weighted
    /// infinity norm.
    pub struct AdamaxState { exp_avg, exp_inf }
}

/// Hyperparameters of `torch.optim.Adamax`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adamax {
    /// Learning rate (default 2e-3).
    pub lr: f64,
    /// Decay rates of the first moment and of the infinity norm (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Added to |g| before the maximum (default 1e-8).
    pub eps: f64,
    /// L2 weight decay (default 0).
    pub weight_decay: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Adamax {
    fn default() -> Self {
        Adamax {
            lr: 2e-3,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.0,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Adamax {
    const NAME: &'static str = "adamax";
    const REFERENCE: &'static str = "torch.optim.Adamax (torch 2.15.0)";
    const PAPER: &'static str =
        "Kingma & Ba, Adam: A Method for Stochastic Optimization, ICLR 2015 (arXiv:1412.6980), sec. 7.1";
    const SUMMARY: &'static str = "Adam variant scaling by an exponentially weighted infinity norm";

    fn validate(&self) -> Result<()> {
        v::non_negative(Self::NAME, "lr", self.lr)?;
        v::non_negative(Self::NAME, "eps", self.eps)?;
        v::betas(Self::NAME, self.betas)?;
        v::non_negative(Self::NAME, "weight_decay", self.weight_decay)
    }
}

impl UpdateRule for Adamax {
    type State = AdamaxState;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut AdamaxState) -> Result<()> {
        let n = p.numel();
        let m = st.exp_avg.get_or_fill(p.name, "exp_avg", n, 0.0)?;
        let u = st.exp_inf.get_or_fill(p.name, "exp_inf", n, 0.0)?;
        st.step += 1;
        let [beta1, beta2] = self.betas;
        let neg_clr = (-(self.lr / bias_correction(beta1, st.step))) as f32;
        let ema1 = Ema::new(beta1);
        let beta2 = beta2 as f32;
        let eps = self.eps as f32;
        let wd = WeightDecay::new(self.weight_decay, false, self.lr);
        let sgn = descent_sign(self.maximize);
        let slices = p.value.iter_mut().zip(p.grad.iter()).zip(m).zip(u);
        for (((x, &g), m), u) in slices {
            let g = wd.apply(x, sgn * g);
            *m = ema1.lerp(*m, g);
            *u = maximum(*u * beta2, g.abs() + eps);
            *x += (neg_clr * *m) / *u;
        }
        Ok(())
    }
}
