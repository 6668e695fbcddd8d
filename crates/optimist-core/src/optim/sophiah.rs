//! SophiaH: clipped second-order steps preconditioned by an exponential
//! moving average of a Hessian-diagonal estimate.
//!
//! **Reference:** `pytorch_optimizer.SophiaH` (pytorch-optimizer 4.1.0),
//! per-parameter (non-foreach) path, with the Hessian estimate passed in as
//! `step(hessian=[...])`. **Paper:** Liu, Li, Hall, Liang & Ma, "Sophia: A
//! Scalable Stochastic Second-order Optimizer for Language Model
//! Pre-training", ICLR 2024 (arXiv:2305.14342).
//!
//! Update rule, per element, at step t (the reference's order):
//! ```text
//! g <- -g                                   if maximize
//! p <- p * (1 - lr * wd)                    if weight_decouple (1 - wd if fixed_decay)
//! g <- g + wd * p                           otherwise (L2)
//! m <- lerp(m, g, 1 - beta1)
//! h <- lerp(h, est, 1 - beta2)              only at steps that carry an estimate
//! u <- clamp(m / max(h, eps), -p, p)
//! p <- p - lr * u
//! ```
//! No bias correction; `m` and `h` start at zero, so before the first
//! estimate the step is `clamp(m / eps, -p, p)`, a clipped sign step.
//!
//! **Curvature.** The optimizer never estimates curvature itself: the
//! estimate `est` arrives with the parameter ([`ParamMut::hessian`], the
//! replay case's `hessian` field). A step with an estimate folds it into `h`;
//! a step without one leaves `h` unchanged. The reference estimates
//! Hutchinson's `u * (H u)` inside `step()` at steps 1, 1 + update_period, ...
//! when no estimate is passed; here the caller does that with
//! [`crate::curvature::Hutchinson`] and [`SophiaH::hessian_due`] tells at
//! which steps. `update_period` is kept for that and validated as the
//! reference does (>= 1); the reference's `num_samples` and
//! `hessian_distribution` configure its built-in estimator and belong to
//! [`crate::curvature::Hutchinson`] here.
//!
//! Defaults: lr = 0.06, betas = (0.96, 0.99), weight_decay = 0,
//! weight_decouple = true, fixed_decay = false, p = 0.01, update_period = 10,
//! eps = 1e-12, maximize = false.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::rule::{Apply, Chunk, Elementwise};
use crate::math::{lerp, maximum, WeightDecay};
use crate::optim::pytorch_optimizer::clamp_nan;
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;

crate::param_state! {
    /// SophiaH state: the gradient EMA and the Hessian-diagonal EMA.
    pub struct SophiaHState { momentum, hessian_moment }
}

/// Hyperparameters of `pytorch_optimizer.SophiaH`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SophiaH {
    /// Learning rate (default 0.06).
    pub lr: f64,
    /// Decay rates of the gradient EMA and of the Hessian EMA (default (0.96, 0.99)).
    pub betas: [f64; 2],
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise.
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by lr (default false).
    pub fixed_decay: bool,
    /// Largest absolute entry of the preconditioned update (default 0.01).
    pub p: f64,
    /// Steps between Hessian estimates (default 10); see [`SophiaH::hessian_due`].
    pub update_period: u64,
    /// Floor of the Hessian EMA in the denominator (default 1e-12).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for SophiaH {
    fn default() -> Self {
        SophiaH {
            lr: 0.06,
            betas: [0.96, 0.99],
            weight_decay: 0.0,
            weight_decouple: true,
            fixed_decay: false,
            p: 0.01,
            update_period: 10,
            eps: 1e-12,
            maximize: false,
        }
    }
}

impl SophiaH {
    /// Whether step `step` (1-based) is one at which the reference refreshes
    /// its Hessian estimate: steps 1, 1 + update_period, 1 + 2 update_period, ...
    pub fn hessian_due(&self, step: u64) -> bool {
        step >= 1 && (step - 1).checked_rem(self.update_period.max(1)) == Some(0)
    }
}

impl OptimizerConfig for SophiaH {
    const NAME: &'static str = "sophiah";
    const REFERENCE: &'static str = "pytorch_optimizer.SophiaH (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Liu, Li, Hall, Liang & Ma, Sophia: A Scalable Stochastic Second-order Optimizer for Language Model Pre-training, ICLR 2024 (arXiv:2305.14342)";
    const SUMMARY: &'static str =
        "clipped momentum / EMA of a Hessian-diagonal estimate (estimate given per step)";
    const CURVATURE: crate::rule::Curvature = crate::rule::Curvature::HessianDiagonal;

    fn suggested() -> serde_json::Value {
        serde_json::json!({"lr": 0.06})
    }

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), non_negative(weight_decay, p),
            at_least(update_period; 1), non_negative(eps))
    }
}

/// Per-step scalars of SophiaH.
#[derive(Debug, Clone, Copy)]
pub struct SophiaHScalars {
    wd: WeightDecay,
    w1: f32,
    w2: f32,
    eps: f32,
    clip: f32,
    neg_lr: f32,
    sgn: f32,
}

/// One element: from (p, g, m, h) and the Hessian estimate (used only when
/// `HESSIAN`) returns the new p, m and h.
#[inline(always)]
fn sophiah_element<const HESSIAN: bool>(
    s: &SophiaHScalars,
    x: f32,
    g: f32,
    m: f32,
    h: f32,
    est: f32,
) -> (f32, f32, f32) {
    let (x, g) = s.wd.apply_to(x, s.sgn * g);
    let m = lerp(m, g, s.w1);
    let h = if HESSIAN { lerp(h, est, s.w2) } else { h };
    let u = clamp_nan(m / maximum(h, s.eps), -s.clip, s.clip);
    (x + s.neg_lr * u, m, h)
}

impl UpdateRule for SophiaH {
    type State = SophiaHState;
    crate::elementwise_rule!(direct);
}

impl Elementwise for SophiaH {
    type Scalars = SophiaHScalars;

    fn prepare(
        &self,
        _: &StepInfo,
        p: &ParamMut<'_>,
        st: &mut SophiaHState,
    ) -> Result<SophiaHScalars> {
        st.start_step(p.name, p.numel())?;
        let decay_lr = if self.fixed_decay { 1.0 } else { self.lr };
        Ok(SophiaHScalars {
            wd: WeightDecay::new(self.weight_decay, self.weight_decouple, decay_lr),
            w1: (1.0 - self.betas[0]) as f32,
            w2: (1.0 - self.betas[1]) as f32,
            eps: self.eps as f32,
            clip: self.p as f32,
            neg_lr: -self.lr as f32,
            sgn: if self.maximize { -1.0f32 } else { 1.0 },
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &SophiaHScalars, c: Chunk<'_>, apply: &mut A) {
        super::each::direct2_hessian(s, c, apply, sophiah_element::<true>, sophiah_element::<false>);
    }
}
