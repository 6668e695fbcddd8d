//! Adam and AdamW, with AMSGrad, coupled or decoupled weight decay and
//! maximization.
//!
//! **References:** `torch.optim.Adam` and `torch.optim.AdamW` (torch 2.15.0),
//! single-tensor path. **Papers:** Kingma & Ba, "Adam: A Method for
//! Stochastic Optimization", ICLR 2015 (arXiv:1412.6980); Loshchilov &
//! Hutter, "Decoupled Weight Decay Regularization", ICLR 2019
//! (arXiv:1711.05101); Reddi, Kale & Kumar, "On the Convergence of Adam and
//! Beyond", ICLR 2018 (AMSGrad).
//!
//! Update rule, per element, at step t (torch's order of operations):
//! ```text
//! g <- -g                                  if maximize
//! p <- p * (1 - lr * wd)                   if decoupled (AdamW)
//! g <- g + wd * p                          otherwise (L2, Adam's default)
//! m <- lerp(m, g, 1 - beta1)
//! v <- beta2 * v + (1 - beta2) * g^2
//! vmax <- max(vmax, v)                     if amsgrad (max of the raw v)
//! denom <- sqrt(v or vmax) / sqrt(1 - beta2^t) + eps   (eps outside the sqrt)
//! p <- p - lr / (1 - beta1^t) * m / denom
//! ```
//! Adam defaults: lr = 1e-3, betas = (0.9, 0.999), eps = 1e-8,
//! weight_decay = 0, amsgrad = false, decoupled_weight_decay = false.
//! AdamW is Adam with decoupled_weight_decay = true and weight_decay = 0.01.
//! The decay uses the current (scheduled) lr.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::math::{bias_correction, lerp, WeightDecay};
use crate::optim::each::{sink2, sink3, Step};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};
use crate::validate as v;

crate::param_state! {
    /// Adam state: first and second moments, and the running maximum of the
    /// second moment for AMSGrad.
    pub struct AdamState { exp_avg, exp_avg_sq, max_exp_avg_sq }
}

/// Hyperparameters of `torch.optim.Adam`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adam {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the first and second moments (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Added to the bias-corrected sqrt(v) (default 1e-8).
    pub eps: f64,
    /// Weight decay (default 0); L2 unless `decoupled_weight_decay`.
    pub weight_decay: f64,
    /// Use the running maximum of v (default false).
    pub amsgrad: bool,
    /// Decoupled (AdamW) weight decay (default false).
    pub decoupled_weight_decay: bool,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            lr: 1e-3,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
            decoupled_weight_decay: false,
            maximize: false,
        }
    }
}

fn validate_adam(name: &str, lr: f64, betas: [f64; 2], eps: f64, wd: f64) -> Result<()> {
    v::non_negative(name, "lr", lr)?;
    v::non_negative(name, "eps", eps)?;
    v::betas(name, "betas", betas)?;
    v::non_negative(name, "weight_decay", wd)
}

impl OptimizerConfig for Adam {
    const NAME: &'static str = "adam";
    const REFERENCE: &'static str = "torch.optim.Adam (torch 2.15.0)";
    const PAPER: &'static str =
        "Kingma & Ba, Adam: A Method for Stochastic Optimization, ICLR 2015 (arXiv:1412.6980)";
    const SUMMARY: &'static str =
        "adaptive moment estimation; AMSGrad and decoupled decay as options";

    fn suggested() -> serde_json::Value {
        serde_json::json!({"lr": 1e-3})
    }

    fn validate(&self) -> Result<()> {
        validate_adam(Self::NAME, self.lr, self.betas, self.eps, self.weight_decay)
    }
}

impl UpdateRule for Adam {
    type State = AdamState;
    crate::elementwise_rule!();
}

impl Elementwise for Adam {
    type Scalars = AdamScalars;

    fn prepare(&self, _: &StepInfo, p: &ParamMut<'_>, st: &mut AdamState) -> Result<AdamScalars> {
        Ok(adam_prepare(self, p.numel(), st))
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &AdamScalars, c: Chunk<'_>, apply: &mut A) {
        adam_kernel(s, c, apply);
    }
}

/// Per-step scalars of Adam/AdamW, computed once per parameter in f64 and
/// rounded to f32.
#[derive(Debug, Clone, Copy)]
pub struct AdamScalars {
    wd: WeightDecay,
    sgn: f32,
    w1: f32,
    b2: f32,
    w2: f32,
    step_size: f32,
    bc2_sqrt: f32,
    eps: f32,
    amsgrad: bool,
}

/// Allocates the state on the first step, advances the step count and
/// computes the step's scalars.
fn adam_prepare(cfg: &Adam, n: usize, st: &mut AdamState) -> AdamScalars {
    if !st.exp_avg.is_allocated() {
        st.exp_avg = StateTensor::zeros(n);
        st.exp_avg_sq = StateTensor::zeros(n);
    }
    if cfg.amsgrad && !st.max_exp_avg_sq.is_allocated() {
        st.max_exp_avg_sq = StateTensor::zeros(n);
    }
    st.step += 1;
    let t = st.step;
    let [beta1, beta2] = cfg.betas;
    AdamScalars {
        wd: WeightDecay::new(cfg.weight_decay, cfg.decoupled_weight_decay, cfg.lr),
        sgn: if cfg.maximize { -1.0 } else { 1.0 },
        w1: (1.0 - beta1) as f32,
        b2: beta2 as f32,
        w2: (1.0 - beta2) as f32,
        step_size: (cfg.lr / bias_correction(beta1, t)) as f32,
        bc2_sqrt: bias_correction(beta2, t).sqrt() as f32,
        eps: cfg.eps as f32,
        amsgrad: cfg.amsgrad,
    }
}

/// Moments of one element: from (p, g, m, v) returns the parameter after
/// decoupled decay, the gradient as used (after L2 decay), and the new m
/// and v.
#[inline(always)]
fn adam_moments(s: &AdamScalars, x: f32, g: f32, m: f32, v: f32) -> (f32, f32, f32, f32) {
    let (x, g) = s.wd.apply_to(x, s.sgn * g);
    (x, g, lerp(m, g, s.w1), v * s.b2 + s.w2 * g * g)
}

/// The direction of one element's step `p <- p - step_size * u`, from its
/// moment and second moment (`v`, or the running maximum for AMSGrad).
#[inline(always)]
fn adam_direction(s: &AdamScalars, m: f32, v: f32) -> f32 {
    let denom = v.sqrt() / s.bc2_sqrt + s.eps;
    m / denom
}

/// The chunk kernel: the same per-element arithmetic over equal-length
/// slices, so the loop vectorizes (`x - step_size * u` is the plain step).
#[inline(always)]
fn adam_kernel<A: Apply>(s: &AdamScalars, c: Chunk<'_>, apply: &mut A) {
    let lr = s.step_size;
    if s.amsgrad {
        sink3(c, apply, |x, g, m, v, vmax| {
            let (x, g, m, v) = adam_moments(s, x, g, m, v);
            let vm = vmax.max(v);
            (Step { x, g, lr, u: adam_direction(s, m, vm) }, m, v, vm)
        });
    } else {
        sink2(c, apply, |x, g, m, v| {
            let (x, g, m, v) = adam_moments(s, x, g, m, v);
            (Step { x, g, lr, u: adam_direction(s, m, v) }, m, v)
        });
    }
}

/// Hyperparameters of `torch.optim.AdamW`: Adam with decoupled weight decay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamW {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the first and second moments (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Added to the bias-corrected sqrt(v) (default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay, `p *= 1 - lr * weight_decay` (default 0.01).
    pub weight_decay: f64,
    /// Use the running maximum of v (default false).
    pub amsgrad: bool,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW {
            lr: 1e-3,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 1e-2,
            amsgrad: false,
            maximize: false,
        }
    }
}

impl AdamW {
    /// The equivalent Adam configuration.
    pub fn as_adam(&self) -> Adam {
        Adam {
            lr: self.lr,
            betas: self.betas,
            eps: self.eps,
            weight_decay: self.weight_decay,
            amsgrad: self.amsgrad,
            decoupled_weight_decay: true,
            maximize: self.maximize,
        }
    }
}

impl OptimizerConfig for AdamW {
    const NAME: &'static str = "adamw";
    const REFERENCE: &'static str = "torch.optim.AdamW (torch 2.15.0)";
    const PAPER: &'static str =
        "Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019 (arXiv:1711.05101)";
    const SUMMARY: &'static str = "Adam with decoupled weight decay";

    fn suggested() -> serde_json::Value {
        serde_json::json!({"lr": 1e-3})
    }

    fn validate(&self) -> Result<()> {
        validate_adam(Self::NAME, self.lr, self.betas, self.eps, self.weight_decay)
    }
}

impl UpdateRule for AdamW {
    type State = AdamState;
    crate::elementwise_rule!();
}

impl Elementwise for AdamW {
    type Scalars = AdamScalars;

    fn prepare(&self, _: &StepInfo, p: &ParamMut<'_>, st: &mut AdamState) -> Result<AdamScalars> {
        Ok(adam_prepare(&self.as_adam(), p.numel(), st))
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &AdamScalars, c: Chunk<'_>, apply: &mut A) {
        adam_kernel(s, c, apply);
    }
}
