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
use crate::rule::{Apply, Chunk, Elementwise};
use crate::math::{bias_correction, descent_sign, maximum, Ema, WeightDecay};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;

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

    fn suggested() -> serde_json::Value {
        serde_json::json!({"lr": 2e-3})
    }

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr, eps), betas(betas), non_negative(weight_decay))
    }
}

/// Per-step scalars of Adamax.
#[derive(Debug, Clone, Copy)]
pub struct AdamaxScalars {
    wd: WeightDecay,
    sgn: f32,
    ema1: Ema,
    beta2: f32,
    eps: f32,
    neg_clr: f32,
}

/// One element: from (p, g, m, u) returns the new p, m and u.
#[inline(always)]
fn adamax_element(s: &AdamaxScalars, x: f32, g: f32, m: f32, u: f32) -> (f32, f32, f32) {
    let (x, g) = s.wd.apply_to(x, s.sgn * g);
    let m = s.ema1.lerp(m, g);
    let u = maximum(u * s.beta2, g.abs() + s.eps);
    (x + (s.neg_clr * m) / u, m, u)
}

impl UpdateRule for Adamax {
    type State = AdamaxState;
    crate::elementwise_rule!(direct);
}

impl Elementwise for Adamax {
    type Scalars = AdamaxScalars;

    fn prepare(
        &self,
        _: &StepInfo,
        p: &ParamMut<'_>,
        st: &mut AdamaxState,
    ) -> Result<AdamaxScalars> {
        st.start_step(p.name, p.numel())?;
        let [beta1, beta2] = self.betas;
        Ok(AdamaxScalars {
            wd: WeightDecay::new(self.weight_decay, false, self.lr),
            sgn: descent_sign(self.maximize),
            ema1: Ema::new(beta1),
            beta2: beta2 as f32,
            eps: self.eps as f32,
            neg_clr: (-(self.lr / bias_correction(beta1, st.step))) as f32,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &AdamaxScalars, c: Chunk<'_>, apply: &mut A) {
        super::each::direct2(s, c, apply, adamax_element);
    }
}
