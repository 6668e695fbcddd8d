//! SophiaG: Sophia with the Gauss-Newton-Bartlett curvature estimate, as
//! the authors' code writes it.
//!
//! **Reference:** `SophiaG` in `sophia.py` of the official repository
//! Liuhong99/Sophia (the version whose step takes `rho` and `bs`),
//! non-capturable path; golden cases `tests/golden/extensions/sophiag-*`
//! from a torch transcription of it in `tools/gen_cases.py` (`SophiaGRef`).
//! **Paper:** Liu, Li, Hall, Liang & Ma, "Sophia: A
//! Scalable Stochastic Second-order Optimizer for Language Model
//! Pre-training", ICLR 2024 (arXiv:2305.14342).
//!
//! Update rule, per element, at every step:
//! ```text
//! g <- -g                                   if maximize
//! h <- beta2 * h + (1 - beta2) * est        only at steps that carry an estimate
//! p <- p * (1 - lr * weight_decay)          (decoupled, always)
//! m <- beta1 * m + (1 - beta1) * g
//! r <- min(|m| / (rho * bs * h + 1e-15), 1)
//! p <- p - lr * sign(m) * r
//! ```
//! i.e. `p -= lr * clip(m / (rho * bs * h), 1)` with a 1e-15 guard; no bias
//! correction; `h` starts at zero, so until the first estimate every step is
//! a sign step of size lr.
//!
//! **Curvature.** In the official code `update_hessian()` folds
//! `g_hat * g_hat` into `h`, where `g_hat` is the gradient of the loss on
//! labels sampled from the model's own predictions, and the training loop
//! calls it every `hess_interval` (10) iterations; `bs` (the number of tokens
//! per step) then turns that into the Gauss-Newton-Bartlett estimate
//! `bs * g_hat * g_hat` inside the step. Here the estimate `est` arrives with
//! the parameter ([`ParamMut::hessian`], replay's `hessian` field) and is
//! folded in before the step: a step with `est = g_hat * g_hat` equals the
//! official `update_hessian()` followed by `step(bs=bs)`.
//! [`crate::curvature::GaussNewtonBartlett::for_sophiag`] produces that
//! estimate (scale 1; `bs` is applied here). Known difference: the official
//! code forms `(1 - beta2) * g_hat * g_hat` in one fused multiply, here the
//! product `g_hat * g_hat` is rounded first (one f32 rounding).
//!
//! Defaults (official): lr = 1e-4, betas = (0.965, 0.99), rho = 0.04,
//! weight_decay = 0.1, bs = 5120 (a `step()` argument there),
//! maximize = false.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::rule::{Apply, Chunk, Elementwise};
use crate::math::{clamp_max, sign, WeightDecay};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;

crate::param_state! {
    /// SophiaG state: the gradient EMA and the curvature EMA.
    pub struct SophiaGState { exp_avg, hessian }
}

/// Hyperparameters of the official `SophiaG` (plus `bs`, a step argument there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SophiaG {
    /// Learning rate (default 1e-4).
    pub lr: f64,
    /// Decay rates of the gradient EMA and of the curvature EMA (default (0.965, 0.99)).
    pub betas: [f64; 2],
    /// Clipping scale rho (default 0.04).
    pub rho: f64,
    /// Decoupled weight decay (default 0.1).
    pub weight_decay: f64,
    /// Batch size in the estimator's sense, tokens per step (default 5120).
    pub bs: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for SophiaG {
    fn default() -> Self {
        SophiaG {
            lr: 1e-4,
            betas: [0.965, 0.99],
            rho: 0.04,
            weight_decay: 0.1,
            bs: 5120.0,
            maximize: false,
        }
    }
}

impl OptimizerConfig for SophiaG {
    const NAME: &'static str = "sophiag";
    const REFERENCE: &'static str =
        "SophiaG, official code (github.com/Liuhong99/Sophia, sophia.py, rho/bs version)";
    const PAPER: &'static str = "Liu, Li, Hall, Liang & Ma, Sophia: A Scalable Stochastic Second-order Optimizer for Language Model Pre-training, ICLR 2024 (arXiv:2305.14342)";
    const SUMMARY: &'static str =
        "sign(m) * min(|m| / (rho bs h), 1) with a Gauss-Newton-Bartlett curvature EMA";
    const CURVATURE: crate::rule::Curvature = crate::rule::Curvature::GaussNewtonDiagonal;

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), non_negative(rho, weight_decay, bs))
    }
}

/// Per-step scalars of SophiaG.
#[derive(Debug, Clone, Copy)]
pub struct SophiaGScalars {
    wd: WeightDecay,
    b1: f32,
    w1: f32,
    b2: f32,
    w2: f32,
    scale: f32,
    neg_lr: f32,
    sgn: f32,
}

/// Keeps the clipped ratio finite where the curvature EMA is zero.
const GUARD: f32 = 1e-15;

/// One element: from (p, g, m, h) and the Hessian estimate (used only when
/// `HESSIAN`) returns the new p, m and h.
#[inline(always)]
fn sophiag_element<const HESSIAN: bool>(
    s: &SophiaGScalars,
    x: f32,
    g: f32,
    m: f32,
    h: f32,
    est: f32,
) -> (f32, f32, f32) {
    let h = if HESSIAN { h * s.b2 + s.w2 * est } else { h };
    let g = s.sgn * g;
    let (x, _) = s.wd.apply_to(x, g);
    let m = m * s.b1 + s.w1 * g;
    let ratio = clamp_max(m.abs() / (s.scale * h + GUARD), 1.0);
    (x + s.neg_lr * sign(m) * ratio, m, h)
}

impl UpdateRule for SophiaG {
    type State = SophiaGState;
    crate::elementwise_rule!(direct);
}

impl Elementwise for SophiaG {
    type Scalars = SophiaGScalars;

    fn prepare(
        &self,
        _: &StepInfo,
        p: &ParamMut<'_>,
        st: &mut SophiaGState,
    ) -> Result<SophiaGScalars> {
        st.start_step(p.name, p.numel())?;
        let [beta1, beta2] = self.betas;
        Ok(SophiaGScalars {
            wd: WeightDecay::new(self.weight_decay, true, self.lr),
            b1: beta1 as f32,
            w1: (1.0 - beta1) as f32,
            b2: beta2 as f32,
            w2: (1.0 - beta2) as f32,
            scale: (self.rho * self.bs) as f32,
            neg_lr: -self.lr as f32,
            sgn: if self.maximize { -1.0f32 } else { 1.0 },
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &SophiaGScalars, c: Chunk<'_>, apply: &mut A) {
        super::each::direct2_hessian(s, c, apply, sophiag_element::<true>, sophiag_element::<false>);
    }
}
