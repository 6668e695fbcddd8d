//! diffGrad: Adam whose momentum is scaled per element by
//! `sigmoid(|g_prev - g|)`, the friction of the gradient change.
//!
//! **Reference:** `pytorch_optimizer.DiffGrad` (pytorch-optimizer 4.1.0),
//! its default foreach path; with `adanorm`, its per-parameter path.
//! **Paper:** Dubey et al., "diffGrad: An Optimization Method for
//! Convolutional Neural Networks", IEEE TNNLS 2019 (arXiv:1909.11015).
//!
//! Update rule, per element, at step t (one counter for the optimizer):
//! ```text
//! g <- -g                                   if maximize
//! p <- p * (1 - wd * (fixed_decay ? 1 : lr)) if weight_decouple (default)
//! g <- g + wd * p                           otherwise (L2)
//! m <- lerp(m, s, 1 - beta1)               s = g, or with adanorm (per parameter):
//!                                           e <- r e + (1 - r) ||g||  (r = adanorm_r, e from 0)
//!                                           s = g e / ||g|| if ||g|| > 0 and e > ||g||
//! v <- beta2 * v + (1 - beta2) * g^2
//! step_size = lr sqrt(1 - beta2^t)                 (not rectify)
//!           = lr rt  (RAdam rectification, rt from n_sma_threshold, degenerated_to_sgd)
//! step_size <- step_size / (1 - beta1^t)           (unless adam_debias)
//! not rectify, or n_sma >= n_sma_threshold:
//!     d = sqrt(max(vmax, v) or v + 1e-15) + eps     (vmax <- max(vmax, v) with ams_bound)
//!     p <- p - step_size * (sigmoid(|g_prev - g|) * m) / d
//! otherwise: vmax <- max(vmax, v) (ams_bound); p <- p - step_size * m if step_size > 0
//! g_prev <- g
//! ```
//! Defaults: lr = 1e-3, betas = (0.9, 0.999), weight_decay = 0,
//! weight_decouple = true, fixed_decay = false, rectify = false,
//! n_sma_threshold = 5, degenerated_to_sgd = true, ams_bound = false,
//! eps = 1e-8, maximize = false, adam_debias = false, adanorm = false,
//! adanorm_r = 0.95 (the reference reads `adanorm`, `adanorm_r` and
//! `adam_debias` from its keyword arguments). Validation as the
//! reference: lr >= 0, betas in [0, 1), weight_decay >= 0, eps >= 0.

use serde::{Deserialize, Serialize};

use super::adam_family::{adanorm, decay, grad_sign};
use super::pytorch_optimizer::max_nan;
use crate::error::Result;
use crate::math::{bias_correction, lerp, Ema, WeightDecay};
use crate::optim::each::{sink_loop, Step};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};

crate::param_state! {
    /// diffGrad state: moments, the previous gradient and the running
    /// maximum of the second moment (ams_bound).
    pub struct DiffGradState { exp_avg, exp_avg_sq, previous_grad, max_exp_avg_sq; unsized: exp_grad_adanorm }
}

/// Hyperparameters of `pytorch_optimizer.DiffGrad`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiffGrad {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the moments (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise.
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by lr (default false).
    pub fixed_decay: bool,
    /// RAdam-style rectification (default false).
    pub rectify: bool,
    /// Rectification threshold of n_sma (default 5).
    pub n_sma_threshold: f64,
    /// Below the threshold, step with the momentum (default true) or not at all.
    pub degenerated_to_sgd: bool,
    /// Running maximum of the second moment (default false).
    pub ams_bound: bool,
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
    /// AdamD: no bias correction of the first moment (default false).
    pub adam_debias: bool,
    /// AdaNorm: the momentum takes the gradient rescaled to its running norm when smaller (default false).
    pub adanorm: bool,
    /// Decay of AdaNorm's running gradient norm (default 0.95).
    pub adanorm_r: f64,
}

impl Default for DiffGrad {
    fn default() -> Self {
        DiffGrad {
            lr: 1e-3,
            betas: [0.9, 0.999],
            weight_decay: 0.0,
            weight_decouple: true,
            fixed_decay: false,
            rectify: false,
            n_sma_threshold: 5.0,
            degenerated_to_sgd: true,
            ams_bound: false,
            eps: 1e-8,
            maximize: false,
            adam_debias: false,
            adanorm: false,
            adanorm_r: 0.95,
        }
    }
}

impl OptimizerConfig for DiffGrad {
    const NAME: &'static str = "diffgrad";
    const REFERENCE: &'static str = "pytorch_optimizer.DiffGrad (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Dubey et al., diffGrad: An Optimization Method for Convolutional Neural Networks, IEEE TNNLS 2019 (arXiv:1909.11015)";
    const SUMMARY: &'static str = "Adam with the momentum scaled by sigmoid(|g_prev - g|)";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), finite(n_sma_threshold),
            non_negative(weight_decay, eps))
    }
}

/// Per-step scalars of diffGrad.
#[derive(Debug, Clone, Copy)]
pub struct DiffGradScalars {
    sign: f32,
    wd: WeightDecay,
    w1: f32,
    v: Ema,
    eps: f32,
    ams: bool,
    /// The adaptive step (not rectify, or rectified past the threshold).
    adaptive: bool,
    step_size: f32,
    /// Momentum step below the threshold (step_size > 0).
    momentum: bool,
    /// AdaNorm's (running norm, gradient norm) when it rescales this step.
    ada: Option<(f32, f32)>,
}

impl UpdateRule for DiffGrad {
    type State = DiffGradState;
    crate::elementwise_rule!();
}

impl Elementwise for DiffGrad {
    type Scalars = DiffGradScalars;

    fn prepare(&self, info: &StepInfo, p: &ParamMut<'_>, st: &mut DiffGradState) -> Result<DiffGradScalars> {
        let n = p.numel();
        if !st.exp_avg.is_allocated() {
            st.exp_avg = StateTensor::zeros(n);
            st.exp_avg_sq = StateTensor::zeros(n);
            st.previous_grad = StateTensor::zeros(n);
        }
        if self.ams_bound && !st.max_exp_avg_sq.is_allocated() {
            st.max_exp_avg_sq = StateTensor::zeros(n);
        }
        let wd = decay(self.weight_decay, self.weight_decouple, self.fixed_decay, self.lr, 1.0);
        let sign = grad_sign(self.maximize);
        let ada = if self.adanorm {
            // The gradient as the moments see it (after maximize and L2 decay).
            let g = p.value.iter().zip(p.grad.iter()).map(|(&x, &g)| wd.apply_to(x, sign * g).1);
            adanorm(&mut st.exp_grad_adanorm, p.name, g, self.adanorm_r)?
        } else {
            None
        };
        st.step += 1;
        let t = info.step;
        let [b1, b2] = self.betas;
        // get_rectify_step_size of the reference, with its threshold.
        let (mut step_size, n_sma) = if self.rectify {
            let n_sma_max = 2.0 / (1.0 - b2) - 1.0;
            let b2t = b2.powf(t as f64);
            let n_sma = n_sma_max - 2.0 * t as f64 * b2t / (1.0 - b2t);
            let rt = if n_sma >= self.n_sma_threshold {
                ((1.0 - b2t) * (n_sma - 4.0) / (n_sma_max - 4.0) * (n_sma - 2.0) / n_sma * n_sma_max
                    / (n_sma_max - 2.0))
                    .sqrt()
            } else if self.degenerated_to_sgd {
                1.0
            } else {
                -1.0
            };
            (self.lr * rt, n_sma)
        } else {
            (self.lr * bias_correction(b2, t).sqrt(), 0.0)
        };
        if !self.adam_debias {
            step_size /= bias_correction(b1, t);
        }
        let adaptive = !self.rectify || n_sma >= self.n_sma_threshold;
        Ok(DiffGradScalars {
            sign,
            wd,
            w1: (1.0 - b1) as f32,
            v: Ema::new(b2),
            eps: self.eps as f32,
            ams: self.ams_bound,
            adaptive,
            step_size: step_size as f32,
            momentum: step_size > 0.0,
            ada,
        })
    }

    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    fn kernel<A: Apply>(&self, s: &DiffGradScalars, c: Chunk<'_>, apply: &mut A) {
        let n = c.value.len();
        let [m, v, pg, vmax, ..] = c.state;
        let (x, g, m, v, pg) = (c.value, &c.grad[..n], &mut m[..n], &mut v[..n], &mut pg[..n]);
        let vmax: &mut [f32] = if s.ams { &mut vmax[..n] } else { &mut [] };
        sink_loop!(x, apply, |i, xi| {
            let (xi, gi) = s.wd.apply_to(xi, s.sign * g[i]);
            let si = match s.ada {
                Some((e, norm)) => gi * e / norm,
                None => gi,
            };
            let mi = lerp(m[i], si, s.w1);
            let vi = s.v.sq(v[i], gi);
            (m[i], v[i]) = (mi, vi);
            let base = if s.ams {
                let mx = max_nan(vmax[i], vi);
                vmax[i] = mx;
                mx
            } else {
                vi
            };
            let (lr, u) = if s.adaptive {
                let d = (base + 1e-15).sqrt() + s.eps;
                let dfc = 1.0 / (1.0 + (-(pg[i] - gi).abs()).exp()) * mi;
                // addcdiv(p, dfc, d, value=-step_size).
                (1.0, s.step_size * dfc / d)
            } else if s.momentum {
                (s.step_size, mi)
            } else {
                (0.0, 0.0)
            };
            pg[i] = gi;
            Step { x: xi, g: gi, lr, u }
        });
    }
}

