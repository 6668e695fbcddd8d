//! NAdam: Adam with Nesterov momentum and Dozat's momentum schedule.
//!
//! **Reference:** `torch.optim.NAdam` (torch 2.15.0), single-tensor path.
//! **Paper:** Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016
//! workshop. Decoupled decay: Loshchilov & Hutter, ICLR 2019
//! (arXiv:1711.05101).
//!
//! Update rule, per element, at step t (torch's order of operations):
//! ```text
//! g <- -g                                  if maximize
//! p <- p * (1 - lr * wd)                   if decoupled_weight_decay
//! g <- g + wd * p                          otherwise (L2)
//! mu_t      = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay))
//! mu_{t+1}  = beta1 * (1 - 0.5 * 0.96^((t + 1) * momentum_decay))
//! mu_prod  <- mu_prod * mu_t               (f32 state, starts at 1)
//! m <- lerp(m, g, 1 - beta1)
//! v <- beta2 * v + (1 - beta2) * g^2
//! denom = sqrt(v / (1 - beta2^t)) + eps
//! p <- p + (-lr * (1 - mu_t) / (1 - mu_prod)) * g / denom
//! p <- p + (-lr * mu_{t+1} / (1 - mu_prod * mu_{t+1})) * m / denom
//! ```
//! Defaults: lr = 2e-3, betas = (0.9, 0.999), eps = 1e-8, weight_decay = 0,
//! momentum_decay = 4e-3, decoupled_weight_decay = false, maximize = false.
//!
//! State per parameter: `exp_avg`, `exp_avg_sq` and `mu_product` (one value,
//! kept in f32 like torch's scalar tensor; `mu_prod * mu_{t+1}` is formed in
//! f64 from it).
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
    /// NAdam state: the two moments and the running product of the
    /// momentum schedule.
    pub struct NadamState { exp_avg, exp_avg_sq; unsized: mu_product }
}

/// Hyperparameters of `torch.optim.NAdam`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Nadam {
    /// Learning rate (default 2e-3).
    pub lr: f64,
    /// Decay rates of the first and second moments (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Added to sqrt of the bias-corrected v (default 1e-8).
    pub eps: f64,
    /// Weight decay (default 0); L2 unless `decoupled_weight_decay`.
    pub weight_decay: f64,
    /// Speed of the momentum schedule mu_t (default 4e-3).
    pub momentum_decay: f64,
    /// Decoupled (AdamW-style) weight decay (default false).
    pub decoupled_weight_decay: bool,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Nadam {
    fn default() -> Self {
        Nadam {
            lr: 2e-3,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.0,
            momentum_decay: 4e-3,
            decoupled_weight_decay: false,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Nadam {
    const NAME: &'static str = "nadam";
    const REFERENCE: &'static str = "torch.optim.NAdam (torch 2.15.0)";
    const PAPER: &'static str =
        "Dozat, Incorporating Nesterov Momentum into Adam, ICLR 2016 workshop";
    const SUMMARY: &'static str = "Adam with Nesterov momentum and a momentum schedule";

    fn suggested() -> serde_json::Value {
        serde_json::json!({"lr": 2e-3})
    }

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr, eps), betas(betas),
            non_negative(weight_decay, momentum_decay))
    }
}

/// Per-step scalars of NAdam.
#[derive(Debug, Clone, Copy)]
pub struct NadamScalars {
    wd: WeightDecay,
    sgn: f32,
    ema1: Ema,
    ema2: Ema,
    bc2: f32,
    eps: f32,
    coef_grad: f32,
    coef_avg: f32,
}

/// One element: from (p, g, m, v) returns the new p, m and v.
#[inline(always)]
fn nadam_element(s: &NadamScalars, x: f32, g: f32, m: f32, v: f32) -> (f32, f32, f32) {
    let (x, g) = s.wd.apply_to(x, s.sgn * g);
    let m = s.ema1.lerp(m, g);
    let v = s.ema2.sq(v, g);
    let denom = (v / s.bc2).sqrt() + s.eps;
    let x = x + (s.coef_grad * g) / denom;
    let x = x + (s.coef_avg * m) / denom;
    (x, m, v)
}

impl UpdateRule for Nadam {
    type State = NadamState;
    crate::elementwise_rule!(direct);
}

impl Elementwise for Nadam {
    type Scalars = NadamScalars;

    /// Allocates the moments, advances the step and the (unsized, always
    /// f32) running product of the momentum schedule.
    fn prepare(&self, _: &StepInfo, p: &ParamMut<'_>, st: &mut NadamState) -> Result<NadamScalars> {
        let n = p.numel();
        st.exp_avg.ensure(p.name, "exp_avg", n, 0.0)?;
        st.exp_avg_sq.ensure(p.name, "exp_avg_sq", n, 0.0)?;
        let mu_product = st.mu_product.get_or_fill(p.name, "mu_product", 1, 1.0)?;
        st.step += 1;
        let t = st.step as f64;
        let [beta1, beta2] = self.betas;
        let schedule = |t: f64| beta1 * (1.0 - 0.5 * 0.96f64.powf(t * self.momentum_decay));
        let mu = schedule(t);
        let mu_next = schedule(t + 1.0);
        mu_product[0] *= mu as f32;
        let mu_prod = mu_product[0] as f64;
        Ok(NadamScalars {
            wd: WeightDecay::new(self.weight_decay, self.decoupled_weight_decay, self.lr),
            sgn: descent_sign(self.maximize),
            ema1: Ema::new(beta1),
            ema2: Ema::new(beta2),
            bc2: bias_correction(beta2, st.step) as f32,
            eps: self.eps as f32,
            coef_grad: (-self.lr * (1.0 - mu) / (1.0 - mu_prod)) as f32,
            coef_avg: ((-self.lr * mu_next) / (1.0 - mu_prod * mu_next)) as f32,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &NadamScalars, c: Chunk<'_>, apply: &mut A) {
        super::each::direct2(s, c, apply, nadam_element);
    }
}
