//! NovoGrad: layer-wise second moments (one per tensor) with gradient
//! normalization before the momentum.
//!
//! **Reference:** `pytorch_optimizer.NovoGrad` (pytorch-optimizer 4.1.0),
//! its default foreach path (the per-parameter path computes the same
//! values). **Paper:** Ginsburg et al., "Stochastic Gradient Methods with
//! Layer-wise Adaptive Moments for Training of Deep Networks"
//! (arXiv:1905.11286).
//!
//! Update rule, per parameter tensor, at optimizer step t:
//! ```text
//! g <- -g                                   if maximize
//! v <- ||g||^2                              on the parameter's first step
//! v <- lerp(v, ||g||^2, 1 - beta2)          afterwards          (one scalar)
//! g <- g / (sqrt(v) + eps)
//! p <- p * (1 - lr * wd)                    if weight_decouple (1 - wd if fixed_decay)
//! g <- g + wd * p                           otherwise (L2)
//! m <- g                                    on the first step
//! m <- beta1 * m + (1 - beta1) * g          afterwards, if grad_averaging
//! m <- beta1 * m + g                        afterwards, otherwise
//! p <- p - step_size * m,   step_size = lr * sqrt(1 - beta2^t) if adam_debias else lr
//! ```
//! Defaults: lr = 1e-3, betas = (0.95, 0.98), weight_decay = 0,
//! weight_decouple = false, fixed_decay = false, grad_averaging = false,
//! eps = 1e-8, adam_debias = false (read by the reference from its
//! keyword arguments), maximize = false. Validation as the reference:
//! lr >= 0, betas in [0, 1), weight_decay >= 0, eps >= 0.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::math::{descent_sign, lerp, WeightDecay};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;

crate::param_state! {
    /// NovoGrad state: the first moment and the (scalar) EMA of the
    /// squared gradient norm.
    pub struct NovoGradState { moments; unsized: grads_ema }
}

/// Hyperparameters of `pytorch_optimizer.NovoGrad`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NovoGrad {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decays of the first moment and of the squared-norm EMA (default (0.95, 0.98)).
    pub betas: [f64; 2],
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default false); L2 otherwise.
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by lr (default false).
    pub fixed_decay: bool,
    /// Scale new gradients by 1 - beta1 in the first moment (default false).
    pub grad_averaging: bool,
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// Scale the step by sqrt(1 - beta2^t) (default false).
    pub adam_debias: bool,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for NovoGrad {
    fn default() -> Self {
        NovoGrad {
            lr: 1e-3,
            betas: [0.95, 0.98],
            weight_decay: 0.0,
            weight_decouple: false,
            fixed_decay: false,
            grad_averaging: false,
            eps: 1e-8,
            adam_debias: false,
            maximize: false,
        }
    }
}

impl OptimizerConfig for NovoGrad {
    const NAME: &'static str = "novograd";
    const REFERENCE: &'static str = "pytorch_optimizer.NovoGrad (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Ginsburg et al., Stochastic Gradient Methods with Layer-wise Adaptive Moments for Training of Deep Networks (arXiv:1905.11286)";
    const SUMMARY: &'static str = "momentum on gradients normalized by a per-tensor EMA of their squared norm";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), non_negative(weight_decay, eps))
    }
}

impl UpdateRule for NovoGrad {
    type State = NovoGradState;

    fn update(&self, info: &StepInfo, p: &mut ParamMut<'_>, st: &mut NovoGradState) -> Result<()> {
        let n = p.numel();
        let first = !st.grads_ema.is_allocated();
        let sgn = descent_sign(self.maximize);
        let sq: f64 = p.grad.iter().map(|&x| x as f64 * x as f64).sum();
        let sq = sq as f32;
        let ema = st.grads_ema.get_or_fill(p.name, "grads_ema", 1, sq)?;
        if !first {
            ema[0] = lerp(ema[0], sq, (1.0 - self.betas[1]) as f32);
        }
        let denom = ema[0].sqrt() + self.eps as f32;
        st.moments.ensure(p.name, "moments", n, 0.0)?;
        st.step += 1;
        let [beta1, beta2] = self.betas;
        let decay_lr = if self.fixed_decay { 1.0 } else { self.lr };
        let wd = WeightDecay::new(self.weight_decay, self.weight_decouple, decay_lr);
        let step_size = if self.adam_debias {
            self.lr * (1.0 - beta2.powf(info.step as f64)).sqrt()
        } else {
            self.lr
        } as f32;
        let (b1, avg) = (beta1 as f32, (1.0 - beta1) as f32);
        let m = st.moments.as_mut_slice();
        for ((x, &g), mi) in p.value.iter_mut().zip(p.grad.iter()).zip(m.iter_mut()) {
            let (xd, gi) = wd.apply_to(*x, (sgn * g) / denom);
            *mi = if first {
                gi
            } else if self.grad_averaging {
                *mi * b1 + gi * avg
            } else {
                *mi * b1 + gi
            };
            *x = xd - step_size * *mi;
        }
        Ok(())
    }
}
