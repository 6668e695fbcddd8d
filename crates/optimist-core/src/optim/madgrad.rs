//! MADGRAD: momentumized, adaptive, dual averaged gradient method.
//!
//! **Reference:** `pytorch_optimizer.MADGRAD` (pytorch-optimizer 4.1.0), its
//! default foreach path on dense gradients (the per-parameter path computes
//! the same values). **Paper:** Defazio & Jelassi, "Adaptivity without
//! Compromise: A Momentumized, Adaptive, Dual Averaged Gradient Method for
//! Stochastic Optimization", JMLR 2022 (arXiv:2101.11075).
//!
//! Update rule at optimizer step t (k = t - 1 steps taken before), per
//! element:
//! ```text
//! lr'    = lr + eps  (0 when lr = 0);  lambda = lr' * sqrt(k + 1)
//! g      <- -g                                    if maximize
//! g      <- g + wd * p                            if not weight_decouple (L2)
//! x0     <- p + s / (v^(1/3) + eps)               if momentum = 0 (before this step's update)
//!           the initial parameter (stored)        otherwise
//! v      <- v + (lambda * g) * g                  (v, s start at 0)
//! s      <- s + lambda * g
//! z      <- x0 - s / (v^(1/3) + eps)              (a zero denominator is inf when eps = 0)
//! p_new  <- z                                     if momentum = 0
//!           lerp(p, z, 1 - momentum)              otherwise
//! p_new  <- p_new - lr' * wd * p                  if weight_decouple (p before the step)
//! ```
//! Defaults: lr = 1e-3, momentum = 0.9, weight_decay = 0,
//! weight_decouple = false, eps = 1e-6, maximize = false. Validation as the
//! reference: lr >= 0, weight_decay >= 0, momentum in [0, 1), eps >= 0.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::math::descent_sign;
use crate::optim::each::{sink_loop, Step};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};

crate::param_state! {
    /// MADGRAD state: the weighted sums of squared gradients and of
    /// gradients, and the initial parameter (when momentum > 0).
    pub struct MadgradState { grad_sum_sq, s, x0 }
}

/// Hyperparameters of `pytorch_optimizer.MADGRAD`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Madgrad {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Momentum: interpolation toward the dual-averaged point (default 0.9).
    pub momentum: f64,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default false); L2 otherwise.
    pub weight_decouple: bool,
    /// Added to the cube-root denominator and to lr (default 1e-6).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Madgrad {
    fn default() -> Self {
        Madgrad {
            lr: 1e-3,
            momentum: 0.9,
            weight_decay: 0.0,
            weight_decouple: false,
            eps: 1e-6,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Madgrad {
    const NAME: &'static str = "madgrad";
    const REFERENCE: &'static str = "pytorch_optimizer.MADGRAD (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Defazio & Jelassi, Adaptivity without Compromise: A Momentumized, Adaptive, Dual Averaged Gradient Method for Stochastic Optimization, JMLR 2022 (arXiv:2101.11075)";
    const SUMMARY: &'static str = "dual averaging with a cube-root adaptive denominator and momentum toward the dual point";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr, weight_decay), unit_interval_open(momentum),
            non_negative(eps))
    }
}

/// Per-step scalars of MADGRAD.
#[derive(Debug, Clone, Copy)]
pub struct MadgradScalars {
    sgn: f32,
    l2: f32,
    decoupled: f32,
    lambda: f32,
    eps: f32,
    eps_zero: bool,
    third: f32,
    w: f32,
    momentum: bool,
}

impl MadgradScalars {
    /// `v^(1/3) + eps`, with a zero denominator made infinite when eps = 0.
    #[inline(always)]
    fn rms(&self, v: f32) -> f32 {
        let r = v.powf(self.third) + self.eps;
        if self.eps_zero && r == 0.0 {
            f32::INFINITY
        } else {
            r
        }
    }
}

impl Madgrad {
    /// One pass over equal-length slices. The last operation of each
    /// element, `p_new = base - u`, goes through `apply` with lr 1, so
    /// that the plain step is bit for bit the reference's: `u` is the
    /// dual-averaging step `s / rms` (momentum 0), the interpolation toward
    /// z (momentum > 0), or the decoupled decay term (weight_decouple).
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    #[allow(clippy::too_many_arguments)]
    fn run<A: Apply>(
        s: &MadgradScalars,
        x: &mut [f32],
        g: &[f32],
        v: &mut [f32],
        sum: &mut [f32],
        x0: &[f32],
        apply: &mut A,
    ) {
        let n = x.len();
        let (g, v, sum) = (&g[..n], &mut v[..n], &mut sum[..n]);
        sink_loop!(x, apply, |i, p| {
            let mut gi = s.sgn * g[i];
            if s.l2 != 0.0 {
                gi += s.l2 * p;
            }
            let x0i = if s.momentum { x0[i] } else { p + sum[i] / s.rms(v[i]) };
            let vi = v[i] + s.lambda * gi * gi;
            let si = sum[i] + s.lambda * gi;
            v[i] = vi;
            sum[i] = si;
            let step = si / s.rms(vi);
            // torch's lerp(p, z, w): p + w (z - p) for w < 0.5, else z - (z - p)(1 - w).
            let (base, u) = if !s.momentum {
                (x0i, step)
            } else {
                let z = x0i + -step;
                let diff = z - p;
                if s.w.abs() < 0.5 {
                    (p, -(s.w * diff))
                } else {
                    (z, diff * (1.0 - s.w))
                }
            };
            let (xi, u) = if s.decoupled != 0.0 {
                (base - u, -(s.decoupled * p))
            } else {
                (base, u)
            };
            Step {
                x: xi,
                g: gi,
                lr: 1.0,
                u,
            }
        });
    }
}

impl UpdateRule for Madgrad {
    type State = MadgradState;
    crate::elementwise_rule!();
}

impl Elementwise for Madgrad {
    type Scalars = MadgradScalars;

    fn prepare(&self, info: &StepInfo, p: &ParamMut<'_>, st: &mut MadgradState) -> Result<MadgradScalars> {
        let n = p.numel();
        st.grad_sum_sq.ensure(p.name, "grad_sum_sq", n, 0.0)?;
        st.s.ensure(p.name, "s", n, 0.0)?;
        let momentum = self.momentum > 0.0;
        if momentum && !st.x0.is_allocated() {
            st.x0 = StateTensor::from_slice(p.value);
        }
        st.step += 1;
        let lr = if self.lr != 0.0 { self.lr + self.eps } else { 0.0 };
        // The reference's k counts optimizer steps taken before this one.
        let lambda = lr * (info.step as f64).powf(0.5);
        let decouple = self.weight_decouple && self.weight_decay > 0.0;
        Ok(MadgradScalars {
            sgn: descent_sign(self.maximize),
            l2: if !self.weight_decouple && self.weight_decay > 0.0 { self.weight_decay as f32 } else { 0.0 },
            decoupled: if decouple { (-lr * self.weight_decay) as f32 } else { 0.0 },
            lambda: lambda as f32,
            eps: self.eps as f32,
            eps_zero: self.eps == 0.0,
            third: (1.0f64 / 3.0) as f32,
            w: (1.0 - self.momentum) as f32,
            momentum,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &MadgradScalars, c: Chunk<'_>, apply: &mut A) {
        let [v, sum, x0, ..] = c.state;
        Self::run(s, c.value, c.grad, v, sum, x0, apply);
    }
}
