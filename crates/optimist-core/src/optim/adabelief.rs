//! AdaBelief, with rectification (RAdam-style), AMSBound and coupled or
//! decoupled weight decay.
//!
//! **Reference:** `pytorch_optimizer.AdaBelief` (pytorch-optimizer 4.1.0),
//! with `fixed_decay = false`, `n_sma_threshold = 5`,
//! `degenerated_to_sgd = true`, `maximize = false`, no AdaNorm or AdamD.
//! **Paper:** Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by
//! the Belief in Observed Gradients", NeurIPS 2020 (arXiv:2010.07468).
//!
//! Update rule, per element, at step t (one counter for the optimizer):
//! ```text
//! p <- p * (1 - lr * wd)                  if weight_decouple (default)
//! g <- g + wd * p                         otherwise (L2)
//! m <- lerp(m, g, 1 - beta1)
//! s <- beta2 * s + (1 - beta2) * (g - m)^2 + eps     (eps added every step)
//! smax <- max(smax, s); use smax for s    if ams_bound
//! not rectify:
//!     p <- p - lr / (1 - beta1^t) * m / (sqrt(s) / sqrt(1 - beta2^t) + eps)
//! rectify (rt, n_sma from crate::optim::pytorch_optimizer::rectify):
//!     n_sma >= 5:  p <- p - lr * rt / (1 - beta1^t) * m / (sqrt(s) + eps)
//!     otherwise:   p <- p - lr / (1 - beta1^t) * m      (SGD with momentum)
//! ```
//! Defaults: lr = 1e-3, betas = (0.9, 0.999), weight_decay = 0,
//! weight_decouple = true, rectify = false, ams_bound = false, eps = 1e-16.
//! Validation as the reference: lr >= 0, betas in [0, 1), weight_decay >= 0,
//! eps >= 0.

use serde::{Deserialize, Serialize};

use super::pytorch_optimizer::{ams_denom, rectify, N_SMA_THRESHOLD};
use crate::error::Result;
use crate::math::{bias_correction, lerp, WeightDecay};
use crate::optim::each::{sink2, sink3, Step};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};

crate::param_state! {
    /// AdaBelief state: first moment, belief (variance of g around m) and
    /// its running maximum for AMSBound.
    pub struct AdaBeliefState { exp_avg, exp_avg_var, max_exp_avg_var }
}

/// Hyperparameters of `pytorch_optimizer.AdaBelief`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaBelief {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the moments (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise.
    pub weight_decouple: bool,
    /// RAdam-style rectification (default false).
    pub rectify: bool,
    /// Running maximum of the belief term (default false).
    pub ams_bound: bool,
    /// Added to the belief term every step and to the denominator (default 1e-16).
    pub eps: f64,
}

impl Default for AdaBelief {
    fn default() -> Self {
        AdaBelief {
            lr: 1e-3,
            betas: [0.9, 0.999],
            weight_decay: 0.0,
            weight_decouple: true,
            rectify: false,
            ams_bound: false,
            eps: 1e-16,
        }
    }
}

impl OptimizerConfig for AdaBelief {
    const NAME: &'static str = "adabelief";
    const REFERENCE: &'static str = "pytorch_optimizer.AdaBelief (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Zhuang et al., AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed Gradients, NeurIPS 2020 (arXiv:2010.07468)";
    const SUMMARY: &'static str =
        "Adam with the variance of the gradient around its mean; rectify and AMSBound options";

    fn suggested() -> serde_json::Value {
        serde_json::json!({"lr": 1e-3})
    }

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), non_negative(weight_decay, eps))
    }
}

/// How the denominator and the step size are formed this step.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// sqrt(s) / bc2_sqrt + eps
    Adaptive { bc2_sqrt: f32 },
    /// sqrt(s) + eps (rectified, bias correction inside rt)
    Rectified,
    /// m alone (rectify, before n_sma reaches the threshold)
    Momentum,
    /// no update (rectify with step size 0)
    Skip,
}

/// Per-step scalars of AdaBelief.
#[derive(Debug, Clone, Copy)]
pub struct AdaBeliefScalars {
    wd: WeightDecay,
    w1: f32,
    b2: f32,
    w2: f32,
    eps: f32,
    lr: f32,
    mode: Mode,
    ams: bool,
}

/// One element: from (p, g, m, s, smax) returns the step (p after
/// decoupled decay, the gradient as used, and `(lr, u) = dir(m, root)` of
/// `p <- p - lr * u` for this step's mode, [`mode_direction`]) and the new
/// m, s and smax. The kernel passes one closure per mode so that each
/// mode gets its own loop.
#[inline(always)]
fn adabelief_element(
    c: &AdaBeliefScalars,
    x: f32,
    g: f32,
    m: f32,
    s: f32,
    smax: f32,
    dir: impl Fn(f32, f32) -> (f32, f32),
) -> (Step, f32, f32, f32) {
    let (x, g) = c.wd.apply_to(x, g);
    let m = lerp(m, g, c.w1);
    let r = g - m;
    let s = s * c.b2 + c.w2 * r * r + c.eps;
    let mut smax = smax;
    let root = ams_denom(s, c.ams.then_some(&mut smax), 0.0, 0.0);
    let (lr, u) = dir(m, root);
    (Step { x, g, lr, u }, m, s, smax)
}

/// `(lr, u)` from the moment and the root of the belief in mode `mode`.
#[inline(always)]
fn mode_direction(c: &AdaBeliefScalars, mode: Mode, m: f32, root: f32) -> (f32, f32) {
    match mode {
        Mode::Adaptive { bc2_sqrt } => (c.lr, m / (root / bc2_sqrt + c.eps)),
        Mode::Rectified => (c.lr, m / (root + c.eps)),
        Mode::Momentum => (c.lr, m),
        Mode::Skip => (0.0, 0.0),
    }
}

/// The kernel's loop for one mode (given as `dir`) and AMSBound setting.
#[inline(always)]
fn adabelief_loop<A: Apply>(
    c: &AdaBeliefScalars,
    ch: Chunk<'_>,
    apply: &mut A,
    dir: impl Fn(f32, f32) -> (f32, f32) + Copy,
) {
    if c.ams {
        sink3(ch, apply, |x, g, m, s, smax| adabelief_element(c, x, g, m, s, smax, dir));
    } else {
        sink2(ch, apply, |x, g, m, s| {
            let (step, m, s, _) = adabelief_element(c, x, g, m, s, 0.0, dir);
            (step, m, s)
        });
    }
}

impl UpdateRule for AdaBelief {
    type State = AdaBeliefState;
    crate::elementwise_rule!();
}

impl Elementwise for AdaBelief {
    type Scalars = AdaBeliefScalars;

    fn prepare(
        &self,
        info: &StepInfo,
        p: &ParamMut<'_>,
        st: &mut AdaBeliefState,
    ) -> Result<AdaBeliefScalars> {
        let n = p.numel();
        if !st.exp_avg.is_allocated() {
            st.exp_avg = StateTensor::zeros(n);
            st.exp_avg_var = StateTensor::zeros(n);
        }
        if self.ams_bound && !st.max_exp_avg_var.is_allocated() {
            st.max_exp_avg_var = StateTensor::zeros(n);
        }
        st.step += 1;
        let t = info.step;
        let [beta1, beta2] = self.betas;
        let bc1 = bias_correction(beta1, t);
        let (mode, step_size) = if !self.rectify {
            let bc2_sqrt = bias_correction(beta2, t).sqrt() as f32;
            (Mode::Adaptive { bc2_sqrt }, self.lr / bc1)
        } else {
            // degenerated_to_sgd = true: rt = 1 below the threshold.
            let (rt, n_sma) = rectify(beta2, t, true);
            let step_size = self.lr * rt / bc1;
            if n_sma >= N_SMA_THRESHOLD {
                (Mode::Rectified, step_size)
            } else if step_size > 0.0 {
                (Mode::Momentum, step_size)
            } else {
                (Mode::Skip, step_size)
            }
        };
        Ok(AdaBeliefScalars {
            wd: WeightDecay::new(self.weight_decay, self.weight_decouple, self.lr),
            w1: (1.0 - beta1) as f32,
            b2: beta2 as f32,
            w2: (1.0 - beta2) as f32,
            eps: self.eps as f32,
            lr: step_size as f32,
            mode,
            ams: self.ams_bound,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, c: &AdaBeliefScalars, ch: Chunk<'_>, apply: &mut A) {
        match c.mode {
            Mode::Adaptive { bc2_sqrt } => adabelief_loop(c, ch, apply, move |m, r| {
                mode_direction(c, Mode::Adaptive { bc2_sqrt }, m, r)
            }),
            Mode::Rectified => {
                adabelief_loop(c, ch, apply, |m, r| mode_direction(c, Mode::Rectified, m, r))
            }
            Mode::Momentum => adabelief_loop(c, ch, apply, |m, r| mode_direction(c, Mode::Momentum, m, r)),
            Mode::Skip => adabelief_loop(c, ch, apply, |m, r| mode_direction(c, Mode::Skip, m, r)),
        }
    }
}
