//! AdaHessian: Adam whose second moment is an exponential average of the
//! squared Hessian diagonal (a Hutchinson estimate) instead of the squared
//! gradient.
//!
//! **Reference:** `pytorch_optimizer.AdaHessian` (pytorch-optimizer 4.1.0),
//! with the Hessian estimate passed in as `step(hessian=[...])`. **Paper:**
//! Yao, Gholami, Shen, Mustafa, Keutzer & Mahoney, "ADAHESSIAN: An Adaptive
//! Second Order Optimizer for Machine Learning", AAAI 2021
//! (arXiv:2006.00719).
//!
//! Update rule, per element, at step t (`bc1 = 1 - beta1^t`,
//! `bc2 = 1 - beta2^t`):
//! ```text
//! g <- -g                                    if maximize
//! p <- p (1 - lr wd)   (1 - wd if fixed_decay)   if weight_decouple
//! g <- g + wd p                              otherwise (L2)
//! m <- lerp(m, g, 1 - beta1)
//! h <- beta2 h + (1 - beta2) est^2           only at steps that carry an estimate
//! d <- (h / bc2)^(hessian_power / 2) + eps
//! p <- p - s m / d,   s = lr / bc1   (s = lr with adam_debias)
//! ```
//!
//! **Curvature.** As for [`SophiaH`](super::SophiaH), the estimate `est`
//! arrives with the parameter ([`ParamMut::hessian`], the replay case's
//! `hessian` field): a step with one folds it into `h`, a step without one
//! leaves `h` as it is. The reference computes its own Hutchinson estimate
//! at steps 1, 1 + update_period, ... when none is passed; here the caller
//! does that with [`crate::curvature::Hutchinson`] and
//! [`AdaHessian::hessian_due`] tells at which steps (the reference's
//! `num_samples` and `hessian_distribution` configure that estimator and
//! belong to it here).
//!
//! Defaults: lr = 0.1, betas = (0.9, 0.999), weight_decay = 0,
//! weight_decouple = true, fixed_decay = false, hessian_power = 1,
//! update_period = 1, eps = 1e-16, adam_debias = false, maximize = false.
//! Validation as the reference: lr >= 0, betas in [0, 1),
//! weight_decay >= 0, eps >= 0, hessian_power in (0, 1]; update_period >= 1
//! (the reference takes it modulo).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::math::{bias_correction, descent_sign, lerp, Ema, WeightDecay};
use crate::optim::each::{sink2_hessian, Step};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;

crate::param_state! {
    /// AdaHessian state: the gradient EMA and the EMA of the squared Hessian
    /// diagonal (pytorch-optimizer's names).
    pub struct AdaHessianState { exp_avg, exp_hessian_diag_sq }
}

/// Hyperparameters of `pytorch_optimizer.AdaHessian`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaHessian {
    /// Learning rate (default 0.1).
    pub lr: f64,
    /// Decay rates of the gradient and squared-Hessian EMAs (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise.
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by lr (default false).
    pub fixed_decay: bool,
    /// Exponent of the RMS Hessian in the denominator, in (0, 1] (default 1).
    pub hessian_power: f64,
    /// Steps between Hessian estimates (default 1); see [`AdaHessian::hessian_due`].
    pub update_period: u64,
    /// Added to the denominator (default 1e-16).
    pub eps: f64,
    /// Step size lr without the first-moment bias correction (default false).
    pub adam_debias: bool,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for AdaHessian {
    fn default() -> Self {
        AdaHessian {
            lr: 0.1,
            betas: [0.9, 0.999],
            weight_decay: 0.0,
            weight_decouple: true,
            fixed_decay: false,
            hessian_power: 1.0,
            update_period: 1,
            eps: 1e-16,
            adam_debias: false,
            maximize: false,
        }
    }
}

impl AdaHessian {
    /// Whether step `step` (1-based) is one at which the reference computes
    /// its Hessian estimate: steps 1, 1 + update_period, 1 + 2 update_period, ...
    pub fn hessian_due(&self, step: u64) -> bool {
        step >= 1 && (step - 1).checked_rem(self.update_period.max(1)) == Some(0)
    }
}

impl OptimizerConfig for AdaHessian {
    const NAME: &'static str = "adahessian";
    const REFERENCE: &'static str = "pytorch_optimizer.AdaHessian (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Yao et al., ADAHESSIAN: An Adaptive Second Order Optimizer for Machine Learning, AAAI 2021 (arXiv:2006.00719)";
    const SUMMARY: &'static str =
        "Adam with an EMA of the squared Hessian diagonal (estimate given per step) as second moment";
    const CURVATURE: crate::rule::Curvature = crate::rule::Curvature::HessianDiagonal;

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), non_negative(weight_decay, eps))?;
        if !(self.hessian_power > 0.0 && self.hessian_power <= 1.0) {
            return Err(Error::hparam(
                Self::NAME,
                "hessian_power",
                self.hessian_power,
                "must be in (0, 1]",
            ));
        }
        crate::checks!(self, at_least(update_period; 1))
    }
}

/// Per-step scalars of AdaHessian.
#[derive(Debug, Clone, Copy)]
pub struct AdaHessianScalars {
    wd: WeightDecay,
    sgn: f32,
    w1: f32,
    ema2: Ema,
    bc2: f32,
    /// `hessian_power / 2`; 0.5 takes a square root, as torch's `pow` does.
    half_power: f32,
    sqrt: bool,
    eps: f32,
    step_size: f32,
}

/// One element: `(p, g, m, h, est)` to the step and the new `m`, `h`
/// (`SQRT`: `s.sqrt`, a constant so that the square-root loop vectorizes
/// without `powf` beside it).
#[inline(always)]
fn element<const HESSIAN: bool, const SQRT: bool>(
    s: &AdaHessianScalars,
    x: f32,
    g: f32,
    m: f32,
    h: f32,
    est: f32,
) -> (Step, f32, f32) {
    let (x, g) = s.wd.apply_to(x, s.sgn * g);
    let m = lerp(m, g, s.w1);
    let h = if HESSIAN { s.ema2.sq(h, est) } else { h };
    let q = h / s.bc2;
    let d = if SQRT { q.sqrt() } else { q.powf(s.half_power) } + s.eps;
    (Step { x, g, lr: s.step_size, u: m / d }, m, h)
}

impl UpdateRule for AdaHessian {
    type State = AdaHessianState;
    crate::elementwise_rule!();
}

impl Elementwise for AdaHessian {
    type Scalars = AdaHessianScalars;

    fn prepare(
        &self,
        _: &StepInfo,
        p: &ParamMut<'_>,
        st: &mut AdaHessianState,
    ) -> Result<AdaHessianScalars> {
        st.start_step(p.name, p.numel())?;
        let [beta1, beta2] = self.betas;
        let bc1 = bias_correction(beta1, st.step);
        let bc2 = bias_correction(beta2, st.step);
        let step_size = if self.adam_debias { self.lr } else { self.lr / bc1 };
        let decay_lr = if self.fixed_decay { 1.0 } else { self.lr };
        let half = self.hessian_power / 2.0;
        Ok(AdaHessianScalars {
            wd: WeightDecay::new(self.weight_decay, self.weight_decouple, decay_lr),
            sgn: descent_sign(self.maximize),
            w1: (1.0 - beta1) as f32,
            ema2: Ema::new(beta2),
            bc2: bc2 as f32,
            half_power: half as f32,
            sqrt: half == 0.5,
            eps: self.eps as f32,
            step_size: step_size as f32,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &AdaHessianScalars, c: Chunk<'_>, apply: &mut A) {
        if s.sqrt {
            sink2_hessian(
                c,
                apply,
                |x, g, m, h, e| element::<true, true>(s, x, g, m, h, e),
                |x, g, m, h, e| element::<false, true>(s, x, g, m, h, e),
            );
        } else {
            sink2_hessian(
                c,
                apply,
                |x, g, m, h, e| element::<true, false>(s, x, g, m, h, e),
                |x, g, m, h, e| element::<false, false>(s, x, g, m, h, e),
            );
        }
    }
}
