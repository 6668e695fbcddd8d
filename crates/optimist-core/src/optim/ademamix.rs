//! AdEMAMix: Adam with a mixture of a fast and a slow gradient EMA.
//!
//! **Reference:** `pytorch_optimizer.AdEMAMix` (pytorch-optimizer 4.1.0),
//! its default foreach path, with its `cautious` and `stable_adamw` options. **Paper:** Pagliardini, Ablin & Grangier, "The AdEMAMix
//! Optimizer: Better, Faster, Older", ICLR 2025 (arXiv:2409.03137).
//!
//! Update rule, per element, at step t (one counter for the optimizer):
//! ```text
//! g <- -g                                   if maximize
//! p <- p * (1 - wd * (fixed_decay ? 1 : lr)) if weight_decouple
//! g <- g + wd * p                           otherwise (L2)
//! alpha_t = alpha                            (T = t_alpha_beta3 null)
//!         = min(t alpha / T, alpha)          otherwise
//! beta3_t = beta3                            (T null)
//!         = min(exp(ln b1 ln b3 / ((1 - t/T) ln b3 + (t/T) ln b1)), beta3)
//! m1 <- lerp(m1, g, 1 - beta1)
//! v  <- beta2 * v + (1 - beta2) * g^2
//! m2 <- lerp(m2, g, 1 - beta3_t)
//! p  <- p - lr * (m1 / (1 - beta1^t) + alpha_t * m2) / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//! ```
//! `cautious`: m1 is masked against g (per tensor: `(m1 g > 0) * numel /
//! (count + 1)`) before the bias correction; `stable_adamw`: the update is
//! divided by the denominator and by `max(1, sqrt(mean(g^2 / max(v,
//! 1e-16))))` over the tensor, then `p <- p - lr * u`. Either option needs a
//! count or a mean over the tensor first, so it runs per parameter (two
//! passes, f32 state only); without them the rule is elementwise (fused).
//! Defaults: lr = 1e-3, betas = (0.9, 0.999, 0.9999), weight_decay = 0,
//! weight_decouple = false, fixed_decay = false, alpha = 5,
//! t_alpha_beta3 = null, eps = 1e-8, maximize = false, cautious = false,
//! stable_adamw = false. Validation as the
//! reference: lr >= 0, beta1 and beta2 in [0, 1), beta3 in [0, 1],
//! alpha >= 0, t_alpha_beta3 > 0 (the reference takes 0 and fails at the
//! first step, dividing by it), weight_decay >= 0, eps >= 0.

use serde::{Deserialize, Serialize};

use super::adam_family::{beta3, clamp_min, decay, grad_sign};
use crate::error::Result;
use crate::exec::cautious_scale;
use crate::math::{bias_correction, lerp, Ema, WeightDecay};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, Plain, StepInfo, UpdateRule};
use crate::state::StateStore;
use crate::tensor::ParamMut;
use crate::validate as v;

crate::param_state! {
    /// AdEMAMix state: fast EMA, second moment and slow EMA.
    pub struct AdEMAMixState { exp_avg, exp_avg_sq, exp_avg_slow }
}

/// Hyperparameters of `pytorch_optimizer.AdEMAMix`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdEMAMix {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the fast EMA, the second moment and the slow EMA
    /// (default (0.9, 0.999, 0.9999)).
    pub betas: [f64; 3],
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default false: L2).
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by lr (default false).
    pub fixed_decay: bool,
    /// Weight of the slow EMA (default 5).
    pub alpha: f64,
    /// Warm-up steps of alpha and beta3 (default null: none).
    pub t_alpha_beta3: Option<f64>,
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
    /// Cautious masking of the fast EMA against the gradient (default false).
    pub cautious: bool,
    /// Divide the update by the RMS of g / sqrt(v) over the tensor, at least 1 (default false).
    pub stable_adamw: bool,
}

impl Default for AdEMAMix {
    fn default() -> Self {
        AdEMAMix {
            lr: 1e-3,
            betas: [0.9, 0.999, 0.9999],
            weight_decay: 0.0,
            weight_decouple: false,
            fixed_decay: false,
            alpha: 5.0,
            t_alpha_beta3: None,
            eps: 1e-8,
            maximize: false,
            cautious: false,
            stable_adamw: false,
        }
    }
}

impl OptimizerConfig for AdEMAMix {
    const NAME: &'static str = "ademamix";
    const REFERENCE: &'static str = "pytorch_optimizer.AdEMAMix (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Pagliardini, Ablin & Grangier, The AdEMAMix Optimizer: Better, Faster, Older, ICLR 2025 (arXiv:2409.03137)";
    const SUMMARY: &'static str = "Adam with a mixture of a fast and a slow gradient EMA";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr))?;
        v::betas(Self::NAME, "betas", [self.betas[0], self.betas[1]])?;
        beta3(Self::NAME, self.betas[2])?;
        crate::checks!(self, non_negative(alpha))?;
        if let Some(t) = self.t_alpha_beta3 {
            // The reference accepts 0 here and divides by it at the first step.
            v::positive(Self::NAME, "t_alpha_beta3", t)?;
        }
        crate::checks!(self, non_negative(weight_decay, eps))
    }
}

impl AdEMAMix {
    /// `schedule_alpha` and `schedule_beta3` of the reference at step `t`.
    pub fn schedules(&self, t: u64) -> (f64, f64) {
        let [b1, _, b3] = self.betas;
        match self.t_alpha_beta3 {
            None => (self.alpha, b3),
            Some(tt) => {
                let s = t as f64;
                let alpha = (s * self.alpha / tt).min(self.alpha);
                let (l1, l3) = (b1.ln(), b3.ln());
                let beta3 = (l1 * l3 / ((1.0 - s / tt) * l3 + (s / tt) * l1)).exp();
                (alpha, if beta3 < b3 { beta3 } else { b3 })
            }
        }
    }
}

/// Per-step scalars of AdEMAMix.
#[derive(Debug, Clone, Copy)]
pub struct AdEMAMixScalars {
    sign: f32,
    wd: WeightDecay,
    w1: f32,
    v: Ema,
    w3: f32,
    bc1: f32,
    bc2_sqrt: f32,
    alpha: f32,
    eps: f32,
    lr: f32,
}

impl UpdateRule for AdEMAMix {
    type State = AdEMAMixState;
    const ELEMENTWISE: bool = true;

    fn update(&self, info: &StepInfo, p: &mut ParamMut<'_>, st: &mut AdEMAMixState) -> Result<()> {
        if self.per_tensor() {
            return self.update_per_tensor(info, p, st);
        }
        crate::exec::kernel_whole_param(self, info, p, st, &mut Plain)
    }

    crate::elementwise_rule!(update_with);

    fn update_all(
        &self,
        info: &StepInfo,
        params: &mut [ParamMut<'_>],
        states: &mut StateStore<AdEMAMixState>,
    ) -> Option<Result<()>> {
        if !self.per_tensor() {
            return Some(crate::exec::run_elementwise(self, info, params, states));
        }
        Some(crate::exec::run_per_param_f32(self, info, params, states, "cautious and stable_adamw need"))
    }
}

impl AdEMAMix {
    /// Whether a quantity over the whole tensor is needed (the cautious
    /// mask's count, the StableAdamW RMS): then the step runs per parameter.
    fn per_tensor(&self) -> bool {
        self.cautious || self.stable_adamw
    }

    /// The step with `cautious` and/or `stable_adamw`, in two passes: the
    /// moments (and the mask count and RMS sum), then the parameter.
    #[allow(clippy::needless_range_loop)]
    fn update_per_tensor(
        &self,
        info: &StepInfo,
        p: &mut ParamMut<'_>,
        st: &mut AdEMAMixState,
    ) -> Result<()> {
        let s = self.prepare(info, p, st)?;
        let n = p.numel();
        let m = st.exp_avg.as_mut_slice();
        let v = st.exp_avg_sq.as_mut_slice();
        let sl = st.exp_avg_slow.as_mut_slice();
        let mut gu = vec![0.0f32; n];
        let (mut kept, mut acc) = (0usize, 0.0f64);
        for i in 0..n {
            let (xi, gi) = s.wd.apply_to(p.value[i], s.sign * p.grad[i]);
            p.value[i] = xi;
            gu[i] = gi;
            m[i] = lerp(m[i], gi, s.w1);
            v[i] = s.v.sq(v[i], gi);
            sl[i] = lerp(sl[i], gi, s.w3);
            kept += (m[i] * gi > 0.0) as usize;
            acc += (gi * gi / clamp_min(v[i], 1e-16)) as f64;
        }
        let scale = cautious_scale(n, kept);
        let rms = ((acc / n as f64) as f32).sqrt();
        let rms = if rms < 1.0 { 1.0 } else { rms };
        for i in 0..n {
            let mut um = m[i];
            if self.cautious {
                um *= if m[i] * gu[i] > 0.0 { scale } else { 0.0 };
            }
            let upd = um / s.bc1 + s.alpha * sl[i];
            let de = v[i].sqrt() / s.bc2_sqrt + s.eps;
            p.value[i] = if self.stable_adamw {
                p.value[i] - s.lr * (upd / de / rms)
            } else {
                p.value[i] - s.lr * upd / de
            };
        }
        Ok(())
    }
}

impl Elementwise for AdEMAMix {
    type Scalars = AdEMAMixScalars;

    fn prepare(
        &self,
        info: &StepInfo,
        p: &ParamMut<'_>,
        st: &mut AdEMAMixState,
    ) -> Result<AdEMAMixScalars> {
        st.start_step(p.name, p.numel())?;
        let t = info.step;
        let [b1, b2, _] = self.betas;
        let (alpha, b3) = self.schedules(t);
        Ok(AdEMAMixScalars {
            sign: grad_sign(self.maximize),
            wd: decay(self.weight_decay, self.weight_decouple, self.fixed_decay, self.lr, 1.0),
            w1: (1.0 - b1) as f32,
            v: Ema::new(b2),
            w3: (1.0 - b3) as f32,
            bc1: bias_correction(b1, t) as f32,
            bc2_sqrt: bias_correction(b2, t).sqrt() as f32,
            alpha: alpha as f32,
            eps: self.eps as f32,
            lr: self.lr as f32,
        })
    }

    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    fn kernel<A: Apply>(&self, s: &AdEMAMixScalars, c: Chunk<'_>, apply: &mut A) {
        // A hand-written loop: through optim::each's sink3 this kernel
        // measured about 9x slower (it no longer vectorized).
        let n = c.value.len();
        let [m, v, sl, ..] = c.state;
        let (x, g, m, v, sl) = (c.value, &c.grad[..n], &mut m[..n], &mut v[..n], &mut sl[..n]);
        for i in 0..n {
            let (mut xi, gi) = s.wd.apply_to(x[i], s.sign * g[i]);
            let mi = lerp(m[i], gi, s.w1);
            let vi = s.v.sq(v[i], gi);
            let si = lerp(sl[i], gi, s.w3);
            (m[i], v[i], sl[i]) = (mi, vi, si);
            let de = vi.sqrt() / s.bc2_sqrt + s.eps;
            let upd = mi / s.bc1 + s.alpha * si;
            // addcdiv(p, upd, de, value=-lr): p + (-lr * upd) / de.
            apply.apply(&mut xi, gi, 1.0, s.lr * upd / de);
            x[i] = xi;
        }
    }
}

