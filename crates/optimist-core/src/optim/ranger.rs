//! Ranger: RAdam with Lookahead and gradient centralization, in one
//! optimizer.
//!
//! **Reference:** `pytorch_optimizer.Ranger` (pytorch-optimizer 4.1.0), its
//! default path on the CPU (the batched `foreach` one; the for-loop path
//! computes the same). **Papers:** Liu et al., "On the Variance of the
//! Adaptive Learning Rate and Beyond", ICLR 2020 (arXiv:1908.03265); Zhang,
//! Lucas, Hinton & Ba, "Lookahead Optimizer: k steps forward, 1 step back",
//! NeurIPS 2019 (arXiv:1907.08610); Yong et al., "Gradient Centralization",
//! ECCV 2020 (arXiv:2004.01461); Wright, Ranger (2019).
//!
//! Update rule for each parameter at step t (1-based):
//! ```text
//! g <- -g                                         if maximize
//! g <- g - mean of g over all dims but the first  if use_gc and ndim > (gc_conv_only ? 3 : 1)
//! p <- p (1 - wd (fixed_decay ? 1 : lr))          if weight_decouple
//! g <- g + wd p                                   otherwise
//! m <- lerp(m, g, 1 - beta1)
//! v <- v beta2 + (1 - beta2) g g
//! n_max = 2 / (1 - beta2) - 1;  b = beta2^t;  n = n_max - 2 t b / (1 - b)
//! rt = sqrt((1 - b)(n - 4)/(n_max - 4)(n - 2)/n n_max/(n_max - 2))  if n >= n_sma_threshold
//!      1 if degenerated_to_sgd, else -1                              otherwise
//! step = lr rt                     if adam_debias
//!        lr rt / (1 - beta1^t)     otherwise
//! p <- p - step m / (sqrt(v) + eps)   if n >= n_sma_threshold
//! p <- p - step m                     otherwise
//! if t % k == 0: slow <- lerp(slow, p, alpha); p <- slow   (slow starts as p)
//! ```
//! As in the reference, below the threshold without `degenerated_to_sgd`
//! the step is -lr / (1 - beta1^t): the first steps move along +m.
//!
//! Defaults: lr = 1e-3, betas = (0.95, 0.999), alpha = 0.5, k = 6,
//! n_sma_threshold = 5, degenerated_to_sgd = false, weight_decay = 0,
//! weight_decouple = true, fixed_decay = false, use_gc = true,
//! gc_conv_only = false, eps = 1e-5, maximize = false, adam_debias = false
//! (read from the reference's keyword arguments). The reference's
//! `adanorm` option is not implemented (an unknown hyperparameter here).
//! Validation as the reference: lr >= 0, betas in [0, 1), alpha in [0, 1],
//! k > 0, weight_decay >= 0, eps >= 0.
//!
//! State: `exp_avg`, `exp_avg_sq`, `slow_buffer`. Means are accumulated in
//! f64 and rounded to f32 (the reference sums in f32).

#![allow(clippy::needless_range_loop)]

use serde::{Deserialize, Serialize};

use super::adam_family::debias;
use crate::error::Result;
use crate::math::{lerp, Ema, WeightDecay};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};

crate::param_state! {
    /// Ranger state: RAdam's moments and Lookahead's slow weights.
    pub struct RangerState { exp_avg, exp_avg_sq, slow_buffer }
}

/// Hyperparameters of `pytorch_optimizer.Ranger`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ranger {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the moments (default (0.95, 0.999)).
    pub betas: [f64; 2],
    /// Lookahead interpolation toward the fast weights (default 0.5).
    pub alpha: f64,
    /// Steps between Lookahead updates (default 6).
    pub k: u64,
    /// Rectification threshold of the SMA length (default 5).
    pub n_sma_threshold: i64,
    /// SGD steps below the threshold (default false).
    pub degenerated_to_sgd: bool,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise.
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by the lr (default false).
    pub fixed_decay: bool,
    /// Gradient centralization (default true).
    pub use_gc: bool,
    /// Centralize only tensors with more than 3 dims (default false).
    pub gc_conv_only: bool,
    /// Denominator epsilon (default 1e-5).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
    /// Leave the first-moment bias correction out of the step (default false).
    pub adam_debias: bool,
}

impl Default for Ranger {
    fn default() -> Self {
        Ranger {
            lr: 1e-3,
            betas: [0.95, 0.999],
            alpha: 0.5,
            k: 6,
            n_sma_threshold: 5,
            degenerated_to_sgd: false,
            weight_decay: 0.0,
            weight_decouple: true,
            fixed_decay: false,
            use_gc: true,
            gc_conv_only: false,
            eps: 1e-5,
            maximize: false,
            adam_debias: false,
        }
    }
}

impl OptimizerConfig for Ranger {
    const NAME: &'static str = "ranger";
    const REFERENCE: &'static str = "pytorch_optimizer.Ranger (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Liu et al., RAdam, ICLR 2020 (arXiv:1908.03265) + Zhang et al., Lookahead, NeurIPS 2019 (arXiv:1907.08610) + Yong et al., Gradient Centralization (arXiv:2004.01461)";
    const SUMMARY: &'static str = "RAdam with Lookahead and gradient centralization";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), unit_interval(alpha), at_least(k; 1),
            non_negative(weight_decay, eps))
    }
}

impl Ranger {
    /// (step size, whether the adaptive denominator is used) at step `t`.
    pub fn step_size(&self, t: u64) -> (f64, bool) {
        let beta2 = self.betas[1];
        let n_max = 2.0 / (1.0 - beta2) - 1.0;
        let b = beta2.powf(t as f64);
        let n = n_max - 2.0 * t as f64 * b / (1.0 - b);
        let rectified = n >= self.n_sma_threshold as f64;
        let rt = if rectified {
            ((1.0 - b) * (n - 4.0) / (n_max - 4.0) * (n - 2.0) / n * n_max / (n_max - 2.0)).sqrt()
        } else if self.degenerated_to_sgd {
            1.0
        } else {
            -1.0
        };
        let step = self.lr * rt;
        let step = debias(step, self.adam_debias, self.betas[0], t);
        (step, rectified)
    }
}

/// `g -= mean of g over every dim but the first` (gradient centralization),
/// for a tensor of shape `shape`; the means are rounded to f32.
pub fn centralize(g: &mut [f32], shape: &[usize]) {
    let rows = shape.first().copied().unwrap_or(1).max(1);
    if g.is_empty() {
        return;
    }
    let cols = g.len() / rows;
    for row in g.chunks_mut(cols) {
        let mean = (row.iter().map(|&x| x as f64).sum::<f64>() / cols as f64) as f32;
        for x in row.iter_mut() {
            *x += -mean;
        }
    }
}

impl UpdateRule for Ranger {
    type State = RangerState;

    fn update(&self, info: &StepInfo, p: &mut ParamMut<'_>, st: &mut RangerState) -> Result<()> {
        let n = p.numel();
        if !st.exp_avg.is_allocated() {
            st.exp_avg = StateTensor::zeros(n);
            st.exp_avg_sq = StateTensor::zeros(n);
            st.slow_buffer = StateTensor::from_slice(p.value);
        }
        st.step += 1;
        let t = info.step;
        let sgn = if self.maximize { -1.0f32 } else { 1.0 };
        let mut g: Vec<f32> = p.grad.iter().map(|&x| sgn * x).collect();
        let threshold = if self.gc_conv_only { 3 } else { 1 };
        if self.use_gc && p.shape.len() > threshold {
            centralize(&mut g, p.shape);
        }
        let wd = WeightDecay::new(
            self.weight_decay,
            self.weight_decouple,
            if self.fixed_decay { 1.0 } else { self.lr },
        );
        let (step, rectified) = self.step_size(t);
        let neg = (-step) as f32;
        let w1 = (1.0 - self.betas[0]) as f32;
        let ema2 = Ema::new(self.betas[1]);
        let eps = self.eps as f32;
        let (m, v) = (st.exp_avg.as_mut_slice(), st.exp_avg_sq.as_mut_slice());
        for i in 0..n {
            let x = &mut p.value[i];
            let gi = wd.apply(x, g[i]);
            m[i] = lerp(m[i], gi, w1);
            v[i] = ema2.sq(v[i], gi);
            if rectified {
                *x += neg * m[i] / (v[i].sqrt() + eps);
            } else {
                *x += neg * m[i];
            }
        }
        if t.is_multiple_of(self.k) {
            let slow = st.slow_buffer.as_mut_slice();
            let a = self.alpha as f32;
            for i in 0..n {
                slow[i] = lerp(slow[i], p.value[i], a);
                p.value[i] = slow[i];
            }
        }
        Ok(())
    }
}
