//! Adagrad: per-coordinate steps scaled by the root of the summed squared
//! gradients.
//!
//! **Reference:** `torch.optim.Adagrad` (torch 2.15.0), single-tensor path
//! (dense gradients). **Paper:** Duchi, Hazan & Singer, "Adaptive
//! Subgradient Methods for Online Learning and Stochastic Optimization",
//! JMLR 12, 2011.
//!
//! Update rule, per element, at step t (torch's order of operations):
//! ```text
//! g <- -g                                  if maximize
//! g <- g + wd * p                          (L2)
//! clr = lr / (1 + (t - 1) * lr_decay)
//! s <- s + g^2                             (s starts at initial_accumulator_value)
//! p <- p + (-clr) * g / (sqrt(s) + eps)
//! ```
//! Defaults: lr = 1e-2, lr_decay = 0, weight_decay = 0,
//! initial_accumulator_value = 0, eps = 1e-10, maximize = false. State per
//! parameter: `sum` (torch's name). The accumulator is filled with the
//! `initial_accumulator_value` in force at the parameter's first step.
//!
//! Known differences: torch's CPU kernels fuse multiply-adds (addcmul) into
//! FMA instructions, and MKL builds of torch take f32 square roots from MKL,
//! which are not always correctly rounded; here every product is rounded and
//! sqrt is IEEE, so values can differ from torch's in the last bits (measured
//! in docs/torch-catalogue.md). Sparse gradients do not exist here.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::rule::{Apply, Chunk, Elementwise};
use crate::math::{descent_sign, WeightDecay};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;
use crate::validate as v;

crate::param_state! {
    /// Adagrad state: the running sum of squared gradients.
    pub struct AdagradState { sum }
}

/// Hyperparameters of `torch.optim.Adagrad`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adagrad {
    /// Learning rate (default 1e-2).
    pub lr: f64,
    /// Learning-rate decay: step t uses lr / (1 + (t - 1) lr_decay) (default 0).
    pub lr_decay: f64,
    /// L2 weight decay (default 0).
    pub weight_decay: f64,
    /// Starting value of the accumulator (default 0).
    pub initial_accumulator_value: f64,
    /// Added to sqrt of the accumulator (default 1e-10).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Adagrad {
    fn default() -> Self {
        Adagrad {
            lr: 1e-2,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Adagrad {
    const NAME: &'static str = "adagrad";
    const REFERENCE: &'static str = "torch.optim.Adagrad (torch 2.15.0)";
    const PAPER: &'static str = "Duchi, Hazan & Singer, Adaptive Subgradient Methods for Online Learning and Stochastic Optimization, JMLR 2011";
    const SUMMARY: &'static str = "steps scaled by the root of the summed squared gradients";

    fn suggested() -> serde_json::Value {
        serde_json::json!({"lr": 0.02})
    }

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr, lr_decay, weight_decay))?;
        v::non_negative(
            Self::NAME,
            "initial_accumulator_value",
            self.initial_accumulator_value,
        )?;
        crate::checks!(self, non_negative(eps))
    }
}

/// Per-step scalars of Adagrad.
#[derive(Debug, Clone, Copy)]
pub struct AdagradScalars {
    wd: WeightDecay,
    sgn: f32,
    neg_clr: f32,
    eps: f32,
}

/// One element: from (p, g, sum) returns the new p and sum.
#[inline(always)]
fn adagrad_element(s: &AdagradScalars, x: f32, g: f32, sum: f32) -> (f32, f32) {
    let (x, g) = s.wd.apply_to(x, s.sgn * g);
    let sum = sum + g * g;
    (x + (s.neg_clr * g) / (sum.sqrt() + s.eps), sum)
}

impl UpdateRule for Adagrad {
    type State = AdagradState;
    crate::elementwise_rule!(direct);
}

impl Elementwise for Adagrad {
    type Scalars = AdagradScalars;

    fn prepare(
        &self,
        _: &StepInfo,
        p: &ParamMut<'_>,
        st: &mut AdagradState,
    ) -> Result<AdagradScalars> {
        let init = self.initial_accumulator_value as f32;
        st.sum.ensure(p.name, "sum", p.numel(), init)?;
        st.step += 1;
        let clr = self.lr / (1.0 + (st.step - 1) as f64 * self.lr_decay);
        Ok(AdagradScalars {
            wd: WeightDecay::new(self.weight_decay, false, self.lr),
            sgn: descent_sign(self.maximize),
            neg_clr: (-clr) as f32,
            eps: self.eps as f32,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &AdagradScalars, c: Chunk<'_>, apply: &mut A) {
        super::each::direct1(s, c, apply, adagrad_element);
    }
}
