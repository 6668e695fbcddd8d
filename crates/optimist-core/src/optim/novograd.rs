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
//!
//! ||g||^2 is summed in f64 over fixed blocks (eight interleaved lanes
//! each, as `sqsum`), the blocks added in order; the sum and the step run
//! over the blocks in parallel on the fast path, with the same values at
//! any thread count.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::exec::{run_blocked, simd, Blocks};
use crate::math::{descent_sign, lerp, WeightDecay};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::sqsum::{add_sq, lanes_sum, LANES};
use crate::state::StateStore;
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
    const BLOCKED: bool = true;

    fn update(&self, info: &StepInfo, p: &mut ParamMut<'_>, st: &mut NovoGradState) -> Result<()> {
        self.update_param(info, p, st, Blocks::SEQUENTIAL)
    }

    /// The squared norm and the step over fixed blocks, in parallel on the
    /// fast path.
    fn update_all(
        &self,
        info: &StepInfo,
        params: &mut [ParamMut<'_>],
        states: &mut StateStore<NovoGradState>,
    ) -> Option<Result<()>> {
        Some(run_blocked(info, params, states, |p, st, blocks| {
            self.update_param(info, p, st, blocks)
        }))
    }
}

impl NovoGrad {
    fn update_param(
        &self,
        info: &StepInfo,
        p: &mut ParamMut<'_>,
        st: &mut NovoGradState,
        blocks: Blocks,
    ) -> Result<()> {
        let n = p.numel();
        let first = !st.grads_ema.is_allocated();
        // ||g||^2 from per-block sums in interleaved lanes, added in block
        // order.
        let sums = blocks.map(p.grad.chunks(BLOCK), |g| {
            let mut lanes = [0.0f64; LANES];
            add_sq(g, &mut lanes);
            lanes_sum(&lanes)
        });
        let sq = sums.iter().fold(0.0f64, |a, &x| a + x) as f32;
        let ema = st.grads_ema.get_or_fill(p.name, "grads_ema", 1, sq)?;
        if !first {
            ema[0] = lerp(ema[0], sq, (1.0 - self.betas[1]) as f32);
        }
        let denom = ema[0].sqrt() + self.eps as f32;
        st.moments.ensure(p.name, "moments", n, 0.0)?;
        st.step += 1;
        let [beta1, beta2] = self.betas;
        let decay_lr = if self.fixed_decay { 1.0 } else { self.lr };
        let step_size = if self.adam_debias {
            self.lr * (1.0 - beta2.powf(info.step as f64)).sqrt()
        } else {
            self.lr
        } as f32;
        let k = Consts {
            sgn: descent_sign(self.maximize),
            denom,
            wd: WeightDecay::new(self.weight_decay, self.weight_decouple, decay_lr),
            first,
            averaging: self.grad_averaging,
            b1: beta1 as f32,
            avg: (1.0 - beta1) as f32,
            step_size,
        };
        let items = p
            .value
            .chunks_mut(BLOCK)
            .zip(p.grad.chunks(BLOCK))
            .zip(st.moments.as_mut_slice().chunks_mut(BLOCK));
        blocks.map(items, |((x, g), m)| step(&k, x, g, m));
        Ok(())
    }
}

/// Elements per block of NovoGrad's passes and of the norm's partial sums:
/// fixed, so that the values do not depend on the thread count.
const BLOCK: usize = crate::exec::CHUNK;

/// Per-step constants of one NovoGrad parameter.
#[derive(Debug, Clone, Copy)]
struct Consts {
    sgn: f32,
    /// `sqrt(ema of ||g||^2) + eps`.
    denom: f32,
    wd: WeightDecay,
    /// The parameter's first step: the moment starts at the normalized g.
    first: bool,
    averaging: bool,
    b1: f32,
    avg: f32,
    step_size: f32,
}

/// The step over one block.
fn step(k: &Consts, x: &mut [f32], g: &[f32], m: &mut [f32]) {
    simd!(avx512; fn(k: &Consts, x: &mut [f32], g: &[f32], m: &mut [f32]) {
        let n = x.len();
        let (g, m) = (&g[..n], &mut m[..n]);
        for i in 0..n {
            let (xd, gi) = k.wd.apply_to(x[i], (k.sgn * g[i]) / k.denom);
            let mi = if k.first {
                gi
            } else if k.averaging {
                m[i] * k.b1 + gi * k.avg
            } else {
                m[i] * k.b1 + gi
            };
            m[i] = mi;
            x[i] = xd - k.step_size * mi;
        }
    })
}
