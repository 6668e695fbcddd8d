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
use crate::math::{bias_correction, descent_sign, Ema, WeightDecay};
use crate::optimizer::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;
use crate::validate as v;

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

    fn validate(&self) -> Result<()> {
        v::non_negative(Self::NAME, "lr", self.lr)?;
        v::non_negative(Self::NAME, "eps", self.eps)?;
        v::betas(Self::NAME, self.betas)?;
        v::non_negative(Self::NAME, "weight_decay", self.weight_decay)?;
        v::non_negative(Self::NAME, "momentum_decay", self.momentum_decay)
    }
}

impl UpdateRule for Nadam {
    type State = NadamState;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut NadamState) -> Result<()> {
        let n = p.numel();
        let m = st.exp_avg.get_or_fill(p.name, "exp_avg", n, 0.0)?;
        let v = st.exp_avg_sq.get_or_fill(p.name, "exp_avg_sq", n, 0.0)?;
        let mu_product = st.mu_product.get_or_fill(p.name, "mu_product", 1, 1.0)?;
        st.step += 1;
        let t = st.step as f64;
        let [beta1, beta2] = self.betas;
        let schedule = |t: f64| beta1 * (1.0 - 0.5 * 0.96f64.powf(t * self.momentum_decay));
        let mu = schedule(t);
        let mu_next = schedule(t + 1.0);
        mu_product[0] *= mu as f32;
        let mu_prod = mu_product[0] as f64;
        let coef_grad = (-self.lr * (1.0 - mu) / (1.0 - mu_prod)) as f32;
        let coef_avg = ((-self.lr * mu_next) / (1.0 - mu_prod * mu_next)) as f32;
        let bc2 = bias_correction(beta2, st.step) as f32;
        let eps = self.eps as f32;
        let (ema1, ema2) = (Ema::new(beta1), Ema::new(beta2));
        let wd = WeightDecay::new(self.weight_decay, self.decoupled_weight_decay, self.lr);
        let sgn = descent_sign(self.maximize);
        let slices = p.value.iter_mut().zip(p.grad.iter()).zip(m).zip(v);
        for (((x, &g), m), v) in slices {
            let g = wd.apply(x, sgn * g);
            *m = ema1.lerp(*m, g);
            *v = ema2.sq(*v, g);
            let denom = (*v / bc2).sqrt() + eps;
            *x += (coef_grad * g) / denom;
            *x += (coef_avg * *m) / denom;
        }
        Ok(())
    }
}
