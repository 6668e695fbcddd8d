//! RAdam: Adam with a rectified adaptive learning rate.
//!
//! **Reference:** `torch.optim.RAdam` (torch 2.15.0), single-tensor path.
//! **Paper:** Liu, Jiang, He, Chen, Liu, Gao & Han, "On the Variance of the
//! Adaptive Learning Rate and Beyond", ICLR 2020 (arXiv:1908.03265).
//!
//! Update rule, per element, at step t (torch's order of operations):
//! ```text
//! g <- -g                                  if maximize
//! p <- p * (1 - lr * wd)                   if decoupled_weight_decay
//! g <- g + wd * p                          otherwise (L2)
//! m <- lerp(m, g, 1 - beta1)
//! v <- beta2 * v + (1 - beta2) * g^2
//! rho_inf = 2 / (1 - beta2) - 1
//! rho_t   = rho_inf - 2 t beta2^t / (1 - beta2^t)
//! if rho_t > 5:
//!     rect = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
//!     p <- p - m / (1 - beta1^t) * lr * (sqrt(1 - beta2^t) / (sqrt(v) + eps)) * rect
//! else:
//!     p <- p - m / (1 - beta1^t) * lr      (momentum SGD, no adaptive scaling)
//! ```
//! eps is added to sqrt(v) before the bias correction of v is applied
//! (unlike Adam), and `sqrt(1 - beta2^t) / (sqrt(v) + eps)` is formed as
//! `(1 / (sqrt(v) + eps)) * sqrt(1 - beta2^t)`, as torch evaluates it.
//! With the default beta2 = 0.999 the first five steps are not rectified.
//!
//! Defaults: lr = 1e-3, betas = (0.9, 0.999), eps = 1e-8, weight_decay = 0,
//! decoupled_weight_decay = false, maximize = false.
//!
//! Known differences: torch's CPU kernels fuse multiply-adds (lerp, addcmul)
//! into FMA instructions, and MKL builds of torch take f32 square roots from
//! MKL, which are not always correctly rounded; here every product is rounded
//! and sqrt is IEEE, so values can differ from torch's in the last bits
//! (measured in docs/torch-catalogue.md).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::rule::{Apply, Chunk, Elementwise};
use crate::math::{bias_correction, descent_sign, Ema, WeightDecay};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;

crate::param_state! {
    /// RAdam state: the two moments.
    pub struct RadamState { exp_avg, exp_avg_sq }
}

/// Hyperparameters of `torch.optim.RAdam`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Radam {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the first and second moments (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Added to sqrt(v) (default 1e-8).
    pub eps: f64,
    /// Weight decay (default 0); L2 unless `decoupled_weight_decay`.
    pub weight_decay: f64,
    /// Decoupled (AdamW-style) weight decay (default false).
    pub decoupled_weight_decay: bool,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Radam {
    fn default() -> Self {
        Radam {
            lr: 1e-3,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Radam {
    const NAME: &'static str = "radam";
    const REFERENCE: &'static str = "torch.optim.RAdam (torch 2.15.0)";
    const PAPER: &'static str = "Liu et al., On the Variance of the Adaptive Learning Rate and Beyond, ICLR 2020 (arXiv:1908.03265)";
    const SUMMARY: &'static str =
        "Adam with a variance-rectified adaptive step (momentum SGD while rho_t <= 5)";

    fn suggested() -> serde_json::Value {
        serde_json::json!({"lr": 1e-3})
    }

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr, eps), betas(betas), non_negative(weight_decay))
    }
}

/// Per-step scalars of RAdam.
#[derive(Debug, Clone, Copy)]
pub struct RadamScalars {
    wd: WeightDecay,
    sgn: f32,
    ema1: Ema,
    ema2: Ema,
    bc1: f32,
    lr: f32,
    eps: f32,
    /// `(sqrt(1 - beta2^t), rectification)` for the rectified step, or
    /// `None` for the plain momentum step.
    rectified: Option<(f32, f32)>,
}

/// One element: from (p, g, m, v) returns the new p, m and v.
#[inline(always)]
fn radam_element(s: &RadamScalars, x: f32, g: f32, m: f32, v: f32) -> (f32, f32, f32) {
    let (x, g) = s.wd.apply_to(x, s.sgn * g);
    let m = s.ema1.lerp(m, g);
    let v = s.ema2.sq(v, g);
    let step = m / s.bc1 * s.lr;
    let x = x - match s.rectified {
        Some((bc2_sqrt, rect)) => step * ((1.0 / (v.sqrt() + s.eps)) * bc2_sqrt) * rect,
        None => step,
    };
    (x, m, v)
}

impl UpdateRule for Radam {
    type State = RadamState;
    crate::elementwise_rule!(direct);
}

impl Elementwise for Radam {
    type Scalars = RadamScalars;

    fn prepare(&self, _: &StepInfo, p: &ParamMut<'_>, st: &mut RadamState) -> Result<RadamScalars> {
        st.start_step(p.name, p.numel())?;
        let t = st.step as f64;
        let [beta1, beta2] = self.betas;
        let bc1 = bias_correction(beta1, st.step);
        let bc2 = bias_correction(beta2, st.step);
        let rho_inf = 2.0 / (1.0 - beta2) - 1.0;
        let rho_t = rho_inf - 2.0 * t * beta2.powf(t) / bc2;
        let rectified = (rho_t > 5.0).then(|| {
            let rect = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                .powf(0.5);
            (bc2.powf(0.5) as f32, rect as f32)
        });
        Ok(RadamScalars {
            wd: WeightDecay::new(self.weight_decay, self.decoupled_weight_decay, self.lr),
            sgn: descent_sign(self.maximize),
            ema1: Ema::new(beta1),
            ema2: Ema::new(beta2),
            bc1: bc1 as f32,
            lr: self.lr as f32,
            eps: self.eps as f32,
            rectified,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &RadamScalars, c: Chunk<'_>, apply: &mut A) {
        super::each::direct2(s, c, apply, radam_element);
    }
}
