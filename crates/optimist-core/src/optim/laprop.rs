//! LaProp: momentum of the RMSprop-normalised gradient (the normalisation
//! moves inside the momentum), with centering and AMSBound options.
//!
//! **Reference:** `pytorch_optimizer.LaProp` (pytorch-optimizer 4.1.0), its
//! default foreach path; with its `cautious` option (a keyword argument
//! there), its per-parameter path.
//! **Paper:** Ziyin, Wang & Ueda, "LaProp: Separating Momentum and
//! Adaptivity in Adam" (arXiv:2002.04839).
//!
//! Update rule, per element, at step t (one counter for the optimizer):
//! ```text
//! g <- -g                                   if maximize
//! v <- beta2 * v + (1 - beta2) * g^2
//! c <- lerp(c, g, 1 - beta2)                if centered
//! s  = v - c^2  if centered and t > steps_before_using_centered, else v
//! d  = (sqrt(max(smax, s) or s + 1e-15) + eps) / sqrt(1 - beta2^t)   (smax <- max(smax, s) with ams_bound)
//! m <- beta1 * m + ((1 - beta1) * lr) * g / d
//! e1 <- beta1 * e1 + (1 - beta1) * lr       (per parameter, f64, from 0)
//! p <- p - m / (e1 / lr)                    (e1 / lr is 1 when lr = 0)
//! p <- p * (1 - wd * (fixed_decay ? 1 : lr)) if weight_decouple (default), after the step
//! ```
//! With `weight_decouple = false` the reference adds `wd * p` to the
//! gradient after it has been used, so L2 decay has no effect (as here).
//! With `cautious` the step `m / (e1 / lr)` is masked against `g` (kept
//! where `m g > 0`, scaled by `numel / (kept + 1)`) and the decay follows
//! the masked step, as the reference's option (f32 state only). Under the
//! `cautious` wrapper instead, the masked step lands on the decayed
//! parameter.
//! Defaults: lr = 4e-4, betas = (0.9, 0.999), centered = false,
//! steps_before_using_centered = 10, weight_decay = 0,
//! weight_decouple = true, fixed_decay = false, ams_bound = false,
//! eps = 1e-15, maximize = false, cautious = false. Validation as the reference: lr >= 0,
//! betas in [0, 1), weight_decay >= 0, eps >= 0.

use serde::{Deserialize, Serialize};

use super::adam_family::{decay, grad_sign, load_f64, store_f64};
use super::pytorch_optimizer::max_nan;
use crate::error::{Error, Result};
use crate::exec::CautiousMask;
use crate::state::StateStore;
use crate::math::{bias_correction, lerp, Ema};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};

crate::param_state! {
    /// LaProp state: momentum, second moment, the centering mean, the
    /// running maximum (ams_bound) and the lr EMA `exp_avg_lr_1` (a Python
    /// float in the reference; two f32 values here).
    pub struct LaPropState { exp_avg, exp_avg_sq, exp_mean_avg_beta2, max_exp_avg_sq; unsized: exp_avg_lr_1 }
}

/// Hyperparameters of `pytorch_optimizer.LaProp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LaProp {
    /// Learning rate (default 4e-4).
    pub lr: f64,
    /// Decay rates of the momentum and the second moment (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Centered second moment (default false).
    pub centered: bool,
    /// Steps before the centered moment is used (default 10).
    pub steps_before_using_centered: u64,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise (no effect, see above).
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by lr (default false).
    pub fixed_decay: bool,
    /// Running maximum of the second moment (default false).
    pub ams_bound: bool,
    /// Added to the denominator (default 1e-15).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
    /// Cautious masking of the step against the gradient, decay after it (default false).
    pub cautious: bool,
}

impl Default for LaProp {
    fn default() -> Self {
        LaProp {
            lr: 4e-4,
            betas: [0.9, 0.999],
            centered: false,
            steps_before_using_centered: 10,
            weight_decay: 0.0,
            weight_decouple: true,
            fixed_decay: false,
            ams_bound: false,
            eps: 1e-15,
            maximize: false,
            cautious: false,
        }
    }
}

impl OptimizerConfig for LaProp {
    const NAME: &'static str = "laprop";
    const REFERENCE: &'static str = "pytorch_optimizer.LaProp (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str =
        "Ziyin, Wang & Ueda, LaProp: Separating Momentum and Adaptivity in Adam (arXiv:2002.04839)";
    const SUMMARY: &'static str = "momentum of the RMS-normalised gradient; centered and AMSBound options";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), non_negative(weight_decay, eps))
    }
}

/// Per-step scalars of LaProp.
#[derive(Debug, Clone, Copy)]
pub struct LaPropScalars {
    sign: f32,
    decay: f32,
    b1: f32,
    v: Ema,
    centered: bool,
    use_centered: bool,
    ams: bool,
    eps: f32,
    bc2_sqrt: f32,
    wlr: f32,
    step_size: f32,
}

impl LaProp {
    /// The factor of the decoupled decay after the step (1 without it).
    fn keep(&self) -> f32 {
        decay(self.weight_decay, self.weight_decouple, self.fixed_decay, self.lr, 1.0)
            .keep()
            .unwrap_or(1.0)
    }
}

impl UpdateRule for LaProp {
    type State = LaPropState;
    const ELEMENTWISE: bool = true;
    const EXPOSES_UPDATE: bool = true;

    fn update(&self, info: &StepInfo, p: &mut ParamMut<'_>, st: &mut LaPropState) -> Result<()> {
        if !self.cautious {
            return crate::exec::update_whole_param(self, info, p, st);
        }
        // The reference's option: the masked step, then the decay (the
        // kernel leaves the decay out when cautious).
        let mut mask = CautiousMask::default();
        crate::exec::kernel_whole_param(self, info, p, st, &mut mask)?;
        mask.finish(p.value)?;
        let keep = self.keep();
        if keep != 1.0 {
            p.value.iter_mut().for_each(|x| *x *= keep);
        }
        Ok(())
    }

    fn update_with<A: Apply>(
        &self,
        info: &StepInfo,
        p: &mut ParamMut<'_>,
        st: &mut LaPropState,
        apply: &mut A,
    ) -> Result<()> {
        if self.cautious {
            return Err(Error::Unsupported(format!(
                "{}: cautious=true under a wrapper that takes the update (use one of the two)",
                Self::NAME
            )));
        }
        crate::exec::kernel_whole_param(self, info, p, st, apply)
    }

    fn update_all(
        &self,
        info: &StepInfo,
        params: &mut [ParamMut<'_>],
        states: &mut StateStore<LaPropState>,
    ) -> Option<Result<()>> {
        if !self.cautious {
            return Some(crate::exec::run_elementwise_rule(self, info, params, states));
        }
        Some(crate::exec::run_per_param_f32(self, info, params, states, "cautious=true needs"))
    }
}

impl Elementwise for LaProp {
    type Scalars = LaPropScalars;

    fn prepare(&self, info: &StepInfo, p: &ParamMut<'_>, st: &mut LaPropState) -> Result<LaPropScalars> {
        let n = p.numel();
        if !st.exp_avg.is_allocated() {
            st.exp_avg = StateTensor::zeros(n);
            st.exp_avg_sq = StateTensor::zeros(n);
        }
        if self.centered && !st.exp_mean_avg_beta2.is_allocated() {
            st.exp_mean_avg_beta2 = StateTensor::zeros(n);
        }
        if self.ams_bound && !st.max_exp_avg_sq.is_allocated() {
            st.max_exp_avg_sq = StateTensor::zeros(n);
        }
        st.step += 1;
        let t = info.step;
        let [b1, b2] = self.betas;
        let e1 = load_f64(&st.exp_avg_lr_1) * b1 + (1.0 - b1) * self.lr;
        store_f64(&mut st.exp_avg_lr_1, e1);
        let bc1 = if self.lr != 0.0 { e1 / self.lr } else { 1.0 };
        // The decay after the step: p * (1 - wd lr), or nothing (L2 or wd
        // = 0); with cautious, `update` applies it after the masked step.
        let keep = if self.cautious { 1.0 } else { self.keep() };
        Ok(LaPropScalars {
            sign: grad_sign(self.maximize),
            decay: keep,
            b1: b1 as f32,
            v: Ema::new(b2),
            centered: self.centered,
            use_centered: self.centered && t > self.steps_before_using_centered,
            ams: self.ams_bound,
            eps: self.eps as f32,
            bc2_sqrt: bias_correction(b2, t).sqrt() as f32,
            wlr: ((1.0 - b1) * self.lr) as f32,
            // step_sizes = -1 / bc1 as an f32 tensor; p + m * step_size.
            step_size: (1.0 / bc1) as f32,
        })
    }

    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    fn kernel<A: Apply>(&self, s: &LaPropScalars, c: Chunk<'_>, apply: &mut A) {
        let n = c.value.len();
        let [m, v, cm, vmax, ..] = c.state;
        let (x, g, m, v) = (c.value, &c.grad[..n], &mut m[..n], &mut v[..n]);
        let cm: &mut [f32] = if s.centered { &mut cm[..n] } else { &mut [] };
        let vmax: &mut [f32] = if s.ams { &mut vmax[..n] } else { &mut [] };
        for i in 0..n {
            let gi = s.sign * g[i];
            let vi = s.v.sq(v[i], gi);
            v[i] = vi;
            let mut sm = vi;
            if s.centered {
                let ci = lerp(cm[i], gi, s.v.weight);
                cm[i] = ci;
                if s.use_centered {
                    sm = vi - ci * ci;
                }
            }
            if s.ams {
                let mx = max_nan(vmax[i], sm);
                vmax[i] = mx;
                sm = mx;
            }
            let d = ((sm + 1e-15).sqrt() + s.eps) / s.bc2_sqrt;
            let mi = m[i] * s.b1 + s.wlr * gi / d;
            m[i] = mi;
            let mut xi = x[i];
            apply.apply(&mut xi, gi, s.step_size, mi);
            x[i] = xi * s.decay;
        }
    }
}

