//! CAME: confidence-guided adaptive memory-efficient optimization
//! (Adafactor's factored second moment plus a factored confidence of the
//! momentum).
//!
//! **Reference:** `pytorch_optimizer.CAME` (pytorch-optimizer 4.1.0), its
//! default path on the CPU (the batched `foreach` one; the for-loop path
//! computes the same). **Paper:** Luo, Ren, Zheng, Jiang, Jiang & You, "CAME:
//! Confidence-guided Adaptive Memory Efficient Optimization", ACL 2023
//! (arXiv:2307.02047).
//!
//! Update rule for each parameter. A tensor with two or more dims is
//! factored: it is viewed as `B x R x C` (C the last dim, R the one before,
//! B the product of the rest); `mean_C`/`mean_R` average over the last/
//! second-to-last dim, `approx(r, c) = rsqrt(r / mean_R(r)) rsqrt(c)` (an
//! outer product per batch entry). Other tensors keep the full moment.
//! ```text
//! g <- -g                                   if maximize
//! p <- p (1 - wd (fixed_decay ? 1 : lr))    if weight_decouple
//! g <- g + wd p                             otherwise
//! u <- g g + eps1
//! factored:  r <- r beta2 + (1 - beta2) mean_C(u);  c <- c beta2 + (1 - beta2) mean_R(u)
//!            u <- approx(r, c)
//! otherwise: v <- v beta2 + (1 - beta2) u;  u <- rsqrt(v)
//! if ams_bound: h <- max(h, 1 / u);  u <- rsqrt(h / beta2)
//! u <- u g
//! u <- u / max(rms(u) / clip_threshold, 1)       (rms(u) = ||u|| / sqrt(numel))
//! m <- lerp(m, u, 1 - beta1)
//! factored:  s <- (u - m)^2 + eps2
//!            rr <- rr beta3 + (1 - beta3) mean_C(s);  rc <- rc beta3 + (1 - beta3) mean_R(s)
//!            u <- approx(rr, rc) m
//! otherwise: u <- m
//! p <- p - lr u
//! ```
//!
//! Defaults: lr = 2e-4, betas = (0.9, 0.999, 0.9999), weight_decay = 0,
//! weight_decouple = true, fixed_decay = false, clip_threshold = 1.0,
//! ams_bound = false, eps1 = 1e-30, eps2 = 1e-16, maximize = false.
//! Validation as the reference: lr >= 0, beta1 and beta2 in [0, 1), beta3
//! in [0, 1], weight_decay >= 0, eps1 >= 0, eps2 >= 0.
//!
//! State: `exp_avg`; factored: `exp_avg_sq_row`, `exp_avg_sq_col`,
//! `exp_avg_res_row`, `exp_avg_res_col` (B R and B C values); otherwise
//! `exp_avg_sq`; with ams_bound `exp_avg_sq_hat`. The reference's `RMS`
//! entry (the parameter's RMS, recorded and never read) is not kept. Means
//! and norms are accumulated in f64 and rounded to f32 (the reference sums
//! in f32).

#![allow(clippy::needless_range_loop)]

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::math::{lerp, WeightDecay};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};
use crate::validate as v;

crate::param_state! {
    /// CAME state: momentum, full or factored second moment and residual.
    pub struct CameState {
        exp_avg, exp_avg_sq, exp_avg_sq_hat;
        unsized: exp_avg_sq_row, exp_avg_sq_col, exp_avg_res_row, exp_avg_res_col
    }
}

/// Hyperparameters of `pytorch_optimizer.CAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Came {
    /// Learning rate (default 2e-4).
    pub lr: f64,
    /// Decay rates of the momentum, the second moment and the residual (default (0.9, 0.999, 0.9999)).
    pub betas: [f64; 3],
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise.
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by the lr (default false).
    pub fixed_decay: bool,
    /// Largest RMS of the preconditioned update (default 1.0).
    pub clip_threshold: f64,
    /// Running maximum of the second moment (default false).
    pub ams_bound: bool,
    /// Added to squared gradients (default 1e-30).
    pub eps1: f64,
    /// Added to squared residuals (default 1e-16).
    pub eps2: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Came {
    fn default() -> Self {
        Came {
            lr: 2e-4,
            betas: [0.9, 0.999, 0.9999],
            weight_decay: 0.0,
            weight_decouple: true,
            fixed_decay: false,
            clip_threshold: 1.0,
            ams_bound: false,
            eps1: 1e-30,
            eps2: 1e-16,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Came {
    const NAME: &'static str = "came";
    const REFERENCE: &'static str = "pytorch_optimizer.CAME (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Luo et al., CAME: Confidence-guided Adaptive Memory Efficient Optimization, ACL 2023 (arXiv:2307.02047)";
    const SUMMARY: &'static str =
        "factored second moment with a factored confidence (residual) scaling of the momentum";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr))?;
        v::unit_interval_open(Self::NAME, "beta1", self.betas[0])?;
        v::unit_interval_open(Self::NAME, "beta2", self.betas[1])?;
        v::unit_interval(Self::NAME, "beta3", self.betas[2])?;
        crate::checks!(self, non_negative(weight_decay, eps1, eps2), finite(clip_threshold))
    }
}

/// `(B, R, C)` of a tensor with two or more dims.
fn brc(shape: &[usize]) -> (usize, usize, usize) {
    let k = shape.len();
    let b = shape[..k - 2].iter().product::<usize>();
    (b, shape[k - 2], shape[k - 1])
}

#[inline]
fn rsqrt(x: f32) -> f32 {
    1.0 / x.sqrt()
}

/// `r <- r beta + (1 - beta) mean_C(u)` and `c <- c beta + (1 - beta)
/// mean_R(u)` for `u` of shape `B x R x C`.
fn update_factors(u: &[f32], (b, r, c): (usize, usize, usize), row: &mut [f32], col: &mut [f32], beta: f64) {
    let bf = beta as f32;
    let w = (1.0 - beta) as f32;
    for bi in 0..b {
        let blk = &u[bi * r * c..(bi + 1) * r * c];
        for ri in 0..r {
            let mean = (blk[ri * c..(ri + 1) * c].iter().map(|&x| x as f64).sum::<f64>() / c as f64) as f32;
            let slot = &mut row[bi * r + ri];
            *slot = *slot * bf + w * mean;
        }
        for ci in 0..c {
            let mean = ((0..r).map(|ri| blk[ri * c + ci] as f64).sum::<f64>() / r as f64) as f32;
            let slot = &mut col[bi * c + ci];
            *slot = *slot * bf + w * mean;
        }
    }
}

/// [`update_factors`] of the factors `row`, `col` with `x`, then `x` <-
/// [`approx`] of the new factors.
fn refactor(x: &mut [f32], dims: (usize, usize, usize), row: &mut StateTensor, col: &mut StateTensor, beta: f64) {
    update_factors(x, dims, row.as_mut_slice(), col.as_mut_slice(), beta);
    approx(row.as_slice(), col.as_slice(), dims, x);
}

/// `out = approx(row, col)`, the factored inverse square root.
fn approx(row: &[f32], col: &[f32], (b, r, c): (usize, usize, usize), out: &mut [f32]) {
    for bi in 0..b {
        let rows = &row[bi * r..(bi + 1) * r];
        let mean = (rows.iter().map(|&x| x as f64).sum::<f64>() / r as f64) as f32;
        for ri in 0..r {
            let rf = rsqrt(rows[ri] / mean);
            for ci in 0..c {
                out[(bi * r + ri) * c + ci] = rf * rsqrt(col[bi * c + ci]);
            }
        }
    }
}

impl UpdateRule for Came {
    type State = CameState;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut CameState) -> Result<()> {
        let n = p.numel();
        let factored = p.shape.len() >= 2;
        let dims = if factored { brc(p.shape) } else { (1, 1, n) };
        let (nrow, ncol) = (dims.0 * dims.1, dims.0 * dims.2);
        if !st.exp_avg.is_allocated() {
            st.exp_avg = StateTensor::zeros(n);
            if factored {
                st.exp_avg_sq_row = StateTensor::zeros(nrow);
                st.exp_avg_sq_col = StateTensor::zeros(ncol);
                st.exp_avg_res_row = StateTensor::zeros(nrow);
                st.exp_avg_res_col = StateTensor::zeros(ncol);
            } else {
                st.exp_avg_sq = StateTensor::zeros(n);
            }
            if self.ams_bound {
                st.exp_avg_sq_hat = StateTensor::zeros(n);
            }
        }
        let ok = if factored {
            [st.exp_avg_sq_row.len(), st.exp_avg_res_row.len()] == [nrow; 2]
                && [st.exp_avg_sq_col.len(), st.exp_avg_res_col.len()] == [ncol; 2]
        } else {
            st.exp_avg_sq.len() == n
        };
        if !ok || (self.ams_bound && st.exp_avg_sq_hat.len() != n) {
            return Err(Error::Shape(format!(
                "{}: state of '{}' does not fit its shape {:?} (ams_bound {})",
                Self::NAME,
                p.name,
                p.shape,
                self.ams_bound
            )));
        }
        st.step += 1;
        let [beta1, beta2, beta3] = self.betas;
        let sgn = if self.maximize { -1.0f32 } else { 1.0 };
        let wd = WeightDecay::new(
            self.weight_decay,
            self.weight_decouple,
            if self.fixed_decay { 1.0 } else { self.lr },
        );
        let mut g = vec![0.0f32; n];
        for i in 0..n {
            g[i] = wd.apply(&mut p.value[i], sgn * p.grad[i]);
        }
        let eps1 = self.eps1 as f32;
        let mut u: Vec<f32> = g.iter().map(|&x| x * x + eps1).collect();
        if factored {
            refactor(&mut u, dims, &mut st.exp_avg_sq_row, &mut st.exp_avg_sq_col, beta2);
        } else {
            let v = st.exp_avg_sq.as_mut_slice();
            let (b2, w2) = (beta2 as f32, (1.0 - beta2) as f32);
            for i in 0..n {
                v[i] = v[i] * b2 + w2 * u[i];
                u[i] = rsqrt(v[i]);
            }
        }
        if self.ams_bound {
            let h = st.exp_avg_sq_hat.as_mut_slice();
            let b2 = beta2 as f32;
            for i in 0..n {
                let inv = 1.0 / u[i];
                h[i] = if h[i].is_nan() || inv.is_nan() { f32::NAN } else { h[i].max(inv) };
                u[i] = rsqrt(h[i] / b2);
            }
        }
        for i in 0..n {
            u[i] *= g[i];
        }
        let norm = crate::math::l2_norm(&u);
        let rms = norm / ((n as f64).sqrt() as f32);
        let clip = rms / self.clip_threshold as f32;
        let clip = if clip < 1.0 { 1.0 } else { clip };
        for x in u.iter_mut() {
            *x /= clip;
        }
        let m = st.exp_avg.as_mut_slice();
        let w1 = (1.0 - beta1) as f32;
        for i in 0..n {
            m[i] = lerp(m[i], u[i], w1);
        }
        let neg = (-self.lr) as f32;
        if factored {
            let eps2 = self.eps2 as f32;
            let mut s: Vec<f32> = (0..n)
                .map(|i| {
                    let d = u[i] - m[i];
                    d * d + eps2
                })
                .collect();
            refactor(&mut s, dims, &mut st.exp_avg_res_row, &mut st.exp_avg_res_col, beta3);
            for i in 0..n {
                p.value[i] += neg * (s[i] * m[i]);
            }
        } else {
            for i in 0..n {
                p.value[i] += neg * m[i];
            }
        }
        Ok(())
    }
}
