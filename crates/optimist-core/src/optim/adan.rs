//! Adan: adaptive Nesterov momentum from the gradient and the gradient
//! difference, with optional global gradient-norm clipping.
//!
//! **Reference:** `pytorch_optimizer.Adan` (pytorch-optimizer 4.1.0), its
//! default foreach path; with its `use_gc` or `adanorm` options (keyword
//! arguments there), its per-parameter path. **Paper:** Xie, Zhou, Li, Lin & Yan, "Adan: Adaptive
//! Nesterov Momentum Algorithm for Faster Optimizing Deep Models", IEEE
//! TPAMI 2024 (arXiv:2208.06677).
//!
//! Update rule, per element, at step t (one counter for the optimizer):
//! ```text
//! c  = min(1, max_grad_norm / (sqrt(sum_i ||g_i||^2) + eps))  over all parameters (1 when max_grad_norm = 0)
//! g <- -g if maximize;  g <- g * c
//! g <- g - mean of g over all dims but the first   if use_gc and p has 2 or more dimensions
//! q  = stored -g_prev; at the first step -(g_raw * c) (g_raw before maximize, as the reference)
//! d  = q + g
//! m  <- lerp(m, s, 1 - beta1)                s = g, or with adanorm:
//!                                            e <- r e + (1 - r) ||g||  (r = adanorm_r, e from 0)
//!                                            s = g e / ||g|| if ||g|| > 0 and e > ||g||
//! n  <- lerp(n, d, 1 - beta2)
//! d  <- beta2 * d + g
//! v  <- beta3 * v + (1 - beta3) * d^2
//! r  = sqrt(v) / sqrt(1 - beta3^t) + eps
//! p  <- p * (1 - lr * wd)                    if weight_decouple
//! p  <- p - (lr / (1 - beta1^t)) * m / r
//! p  <- p - (lr * beta2 / (1 - beta2^t)) * n / r
//! p  <- p / (1 + lr * wd)                    if not weight_decouple (default)
//! q  <- -g
//! ```
//! Defaults: lr = 1e-3, betas = (0.98, 0.92, 0.99), weight_decay = 0,
//! weight_decouple = false, max_grad_norm = 0, eps = 1e-8, maximize = false,
//! use_gc = false, adanorm = false, adanorm_r = 0.95. With `use_gc` or
//! `adanorm` the step runs per parameter with f32 state (other state
//! storage is an error).
//! Validation as the reference: lr >= 0, beta1 and beta2 in [0, 1), beta3
//! in [0, 1], weight_decay >= 0, max_grad_norm >= 0, eps >= 0.
//!
//! The two steps on `p` are two roundings, so Adan does not expose a single
//! update direction: its kernel adds them itself and passes nothing to the
//! `Apply` sink (no cautious masking; the reference has none).

use serde::{Deserialize, Serialize};

use super::adam_family::{adanorm_rescaled, beta3, centralize_adanorm, grad_sign};
use crate::error::Result;
use crate::math::{bias_correction, l2_norm, lerp, Ema, Maybe};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, StepInfo, Plain, UpdateRule};
use crate::state::StateStore;
use crate::tensor::{ParamMut, StateTensor};
use crate::validate as v;

crate::param_state! {
    /// Adan state: moments of the gradient, of the difference and of the
    /// corrected gradient, and the negated previous gradient.
    pub struct AdanState { exp_avg, exp_avg_sq, exp_avg_diff, previous_grad; unsized: exp_grad_adanorm }
}

/// Hyperparameters of `pytorch_optimizer.Adan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adan {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the gradient, difference and second moments
    /// (default (0.98, 0.92, 0.99)).
    pub betas: [f64; 3],
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled decay before the step (true) or the proximal division after it (default false).
    pub weight_decouple: bool,
    /// Global gradient-norm clipping threshold; 0 disables it (default 0).
    pub max_grad_norm: f64,
    /// Added to the denominator and to the global norm (default 1e-8).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
    /// Gradient centralization of parameters with 2 or more dimensions (default false).
    pub use_gc: bool,
    /// AdaNorm: the momentum takes the gradient rescaled to its running norm when smaller (default false).
    pub adanorm: bool,
    /// Decay of AdaNorm's running gradient norm (default 0.95).
    pub adanorm_r: f64,
    /// This step's global clipping factor (set by the step, not a hyperparameter).
    #[serde(skip)]
    pub clip: Option<f32>,
}

impl Default for Adan {
    fn default() -> Self {
        Adan {
            lr: 1e-3,
            betas: [0.98, 0.92, 0.99],
            weight_decay: 0.0,
            weight_decouple: false,
            max_grad_norm: 0.0,
            eps: 1e-8,
            maximize: false,
            use_gc: false,
            adanorm: false,
            adanorm_r: 0.95,
            clip: None,
        }
    }
}

impl OptimizerConfig for Adan {
    const NAME: &'static str = "adan";
    const REFERENCE: &'static str = "pytorch_optimizer.Adan (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Xie, Zhou, Li, Lin & Yan, Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep Models, IEEE TPAMI 2024 (arXiv:2208.06677)";
    const SUMMARY: &'static str = "Nesterov-style momentum of the gradient and of its difference";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr))?;
        v::betas(Self::NAME, "betas", [self.betas[0], self.betas[1]])?;
        beta3(Self::NAME, self.betas[2])?;
        crate::checks!(self, non_negative(weight_decay, max_grad_norm, eps))
    }
}

impl Adan {
    /// The global clipping factor of the reference: the per-tensor norms
    /// (f32) squared and summed in f32, `sqrt + eps`, then
    /// `min(1, max_grad_norm * (1 / norm))`; `None` when disabled.
    pub fn clip_factor(&self, params: &[ParamMut<'_>]) -> Option<f32> {
        if self.max_grad_norm == 0.0 {
            return None;
        }
        let sq: f32 = params
            .iter()
            .map(|p| {
                let n = l2_norm(p.grad);
                n * n
            })
            .sum();
        let norm = sq.sqrt() + self.eps as f32;
        let c = (1.0 / norm) * self.max_grad_norm as f32;
        Some(if c > 1.0 { 1.0 } else { c })
    }
}

/// Per-step scalars of Adan.
#[derive(Debug, Clone, Copy)]
pub struct AdanScalars {
    sign: f32,
    clip: Maybe<f32>,
    first: bool,
    w1: f32,
    w2: f32,
    b2: f32,
    v: Ema,
    bc3_sqrt: f32,
    eps: f32,
    step_size: f32,
    diff_step_size: f32,
    /// `p * keep` before the steps (decoupled) ...
    keep: Maybe<f32>,
    /// ... or `p / div` after them (the default, coupled form).
    div: Maybe<f32>,
}

impl UpdateRule for Adan {
    type State = AdanState;
    const ELEMENTWISE: bool = true;

    fn update(&self, info: &StepInfo, p: &mut ParamMut<'_>, st: &mut AdanState) -> Result<()> {
        if self.use_gc || self.adanorm {
            return self.update_per_param(info, p, st);
        }
        crate::exec::kernel_whole_param(self, info, p, st, &mut Plain)
    }

    fn update_all(
        &self,
        info: &StepInfo,
        params: &mut [ParamMut<'_>],
        states: &mut StateStore<AdanState>,
    ) -> Option<Result<()>> {
        let mut rule = self.clone();
        rule.clip = self.clip_factor(params);
        if self.use_gc || self.adanorm {
            return Some(crate::exec::run_per_param_f32(&rule, info, params, states, "use_gc and adanorm need"));
        }
        Some(crate::exec::run_elementwise(&rule, info, params, states))
    }
}

impl Adan {
    /// The reference's per-parameter path (`use_gc`, `adanorm`): the same
    /// rule on the centralized gradient, the first moment fed AdaNorm's
    /// rescaled gradient.
    #[allow(clippy::needless_range_loop)]
    fn update_per_param(&self, info: &StepInfo, p: &mut ParamMut<'_>, st: &mut AdanState) -> Result<()> {
        let n = p.numel();
        let s = self.prepare(info, p, st)?;
        let k = s.clip.get().unwrap_or(1.0);
        let mut g: Vec<f32> = p.grad.iter().map(|&x| (s.sign * x) * k).collect();
        let ada = centralize_adanorm(
            &mut g,
            p.shape,
            self.use_gc,
            self.adanorm,
            &mut st.exp_grad_adanorm,
            p.name,
            self.adanorm_r,
        )?;
        let buf = |t: &mut StateTensor, name: &str| -> Result<Vec<f32>> {
            Ok(t.get_or_fill(p.name, name, n, 0.0)?.to_vec())
        };
        let (mut m, mut v) = (buf(&mut st.exp_avg, "exp_avg")?, buf(&mut st.exp_avg_sq, "exp_avg_sq")?);
        let mut nd = buf(&mut st.exp_avg_diff, "exp_avg_diff")?;
        let mut q = buf(&mut st.previous_grad, "previous_grad")?;
        for i in 0..n {
            let gi = g[i];
            let qi = if s.first { -(p.grad[i] * k) } else { q[i] };
            let d = qi + gi;
            let si = adanorm_rescaled(gi, ada);
            m[i] = lerp(m[i], si, s.w1);
            nd[i] = lerp(nd[i], d, s.w2);
            let d = d * s.b2 + gi;
            v[i] = s.v.sq(v[i], d);
            let r = v[i].sqrt() / s.bc3_sqrt + s.eps;
            let mut xi = p.value[i];
            if let Some(keep) = s.keep.get() {
                xi *= keep;
            }
            xi += -s.step_size * m[i] / r;
            xi += -s.diff_step_size * nd[i] / r;
            if let Some(dv) = s.div.get() {
                xi /= dv;
            }
            p.value[i] = xi;
            q[i] = -gi;
        }
        st.exp_avg.as_mut_slice().copy_from_slice(&m);
        st.exp_avg_sq.as_mut_slice().copy_from_slice(&v);
        st.exp_avg_diff.as_mut_slice().copy_from_slice(&nd);
        st.previous_grad.as_mut_slice().copy_from_slice(&q);
        Ok(())
    }
}

impl Elementwise for Adan {
    type Scalars = AdanScalars;

    fn prepare(&self, info: &StepInfo, p: &ParamMut<'_>, st: &mut AdanState) -> Result<AdanScalars> {
        let n = p.numel();
        let first = st.step == 0;
        if !st.exp_avg.is_allocated() {
            st.exp_avg = StateTensor::zeros(n);
            st.exp_avg_sq = StateTensor::zeros(n);
            st.exp_avg_diff = StateTensor::zeros(n);
            st.previous_grad = StateTensor::zeros(n);
        }
        st.step += 1;
        let t = info.step;
        let [b1, b2, b3] = self.betas;
        let wd = self.weight_decay;
        Ok(AdanScalars {
            sign: grad_sign(self.maximize),
            clip: self.clip.into(),
            first,
            w1: (1.0 - b1) as f32,
            w2: (1.0 - b2) as f32,
            b2: b2 as f32,
            v: Ema::new(b3),
            bc3_sqrt: bias_correction(b3, t).sqrt() as f32,
            eps: self.eps as f32,
            step_size: (self.lr / bias_correction(b1, t)) as f32,
            diff_step_size: (self.lr * b2 / bias_correction(b2, t)) as f32,
            keep: (wd != 0.0 && self.weight_decouple).then_some((1.0 - self.lr * wd) as f32).into(),
            div: (wd != 0.0 && !self.weight_decouple).then_some((1.0 + self.lr * wd) as f32).into(),
        })
    }

    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    fn kernel<A: Apply>(&self, s: &AdanScalars, c: Chunk<'_>, _apply: &mut A) {
        let n = c.value.len();
        let [m, v, nd, q, ..] = c.state;
        let (x, g) = (c.value, &c.grad[..n]);
        let (m, v, nd, q) = (&mut m[..n], &mut v[..n], &mut nd[..n], &mut q[..n]);
        for i in 0..n {
            let (graw, gi) = match s.clip.get() {
                Some(k) => (g[i] * k, (s.sign * g[i]) * k),
                None => (g[i], s.sign * g[i]),
            };
            let qi = if s.first { -graw } else { q[i] };
            let d = qi + gi;
            let mi = lerp(m[i], gi, s.w1);
            let ni = lerp(nd[i], d, s.w2);
            let d = d * s.b2 + gi;
            let vi = s.v.sq(v[i], d);
            (m[i], nd[i], v[i]) = (mi, ni, vi);
            let r = vi.sqrt() / s.bc3_sqrt + s.eps;
            let mut xi = x[i];
            if let Some(k) = s.keep.get() {
                xi *= k;
            }
            xi += -s.step_size * mi / r;
            xi += -s.diff_step_size * ni / r;
            if let Some(dv) = s.div.get() {
                xi /= dv;
            }
            x[i] = xi;
            q[i] = -gi;
        }
    }
}
