//! ADOPT: Adam whose step normalises the gradient by the *previous* second
//! moment, with the normalised gradient clipped.
//!
//! **Reference:** `pytorch_optimizer.ADOPT` (pytorch-optimizer 4.1.0), its
//! default `clip_lambda = step ** 0.25` (the callable is not a
//! hyperparameter here), with its `cautious` and `stable_adamw` options.
//! **Paper:** Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any
//! beta2 with the Optimal Rate", NeurIPS 2024 (arXiv:2411.02853).
//!
//! Update rule, per element, at step t (one counter for the optimizer):
//! ```text
//! g <- -g                                   if maximize
//! p <- p * (1 - wd * (fixed_decay ? 1 : lr)) if weight_decouple
//! g <- g + wd * p                           otherwise (L2)
//! t = 1:  v <- g^2                          (no parameter step)
//! t > 1:  n <- clamp(g / max(sqrt(v), eps), -t^0.25, t^0.25)
//!         m <- lerp(m, n, 1 - beta1)
//!         p <- p - lr * m                   (cautious: m masked against n)
//!         v <- beta2 * v + (1 - beta2) * g^2
//! ```
//! `stable_adamw`: the step is `p <- p - lr * u / r` with
//! `r = max(1, sqrt(mean(g^2 / max(v, 1e-16))))` over the tensor, `v` before
//! its update (the reference's per-parameter path); it runs per parameter
//! (a pass for `r` first, f32 state only). With `cautious` too, the mask
//! scales `u / r` (the reference: `u` masked, then divided by `r`; the
//! products round differently, within an ulp of the step).
//! Defaults: lr = 1e-3, betas = (0.9, 0.9999), weight_decay = 0,
//! weight_decouple = false, fixed_decay = false, eps = 1e-6,
//! maximize = false, cautious = false, stable_adamw = false. Validation as the reference:
//! lr >= 0, betas in [0, 1), weight_decay >= 0, eps >= 0.

use serde::{Deserialize, Serialize};

use super::adam_family::{clamp_min, decay, grad_sign};
use crate::error::Result;
use crate::exec::CautiousMask;
use crate::state::StateStore;
use crate::math::{lerp, Ema, WeightDecay};
use crate::optim::each::{sink2, Step};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, Plain, StepInfo, UpdateRule};
use crate::tensor::ParamMut;

crate::param_state! {
    /// ADOPT state: first moment (of the normalised gradient) and second moment.
    pub struct AdoptState { exp_avg, exp_avg_sq }
}

/// Hyperparameters of `pytorch_optimizer.ADOPT`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adopt {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the moments (default (0.9, 0.9999)).
    pub betas: [f64; 2],
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default false: L2).
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by lr (default false).
    pub fixed_decay: bool,
    /// Lower bound of sqrt(v) (default 1e-6).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
    /// Cautious masking of the update against the normalised gradient (default false).
    pub cautious: bool,
    /// Divide the update by the RMS of g / sqrt(v) over the tensor, at least 1 (default false).
    pub stable_adamw: bool,
}

impl Default for Adopt {
    fn default() -> Self {
        Adopt {
            lr: 1e-3,
            betas: [0.9, 0.9999],
            weight_decay: 0.0,
            weight_decouple: false,
            fixed_decay: false,
            eps: 1e-6,
            maximize: false,
            cautious: false,
            stable_adamw: false,
        }
    }
}

impl OptimizerConfig for Adopt {
    const NAME: &'static str = "adopt";
    const REFERENCE: &'static str = "pytorch_optimizer.ADOPT (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Taniguchi et al., ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal Rate, NeurIPS 2024 (arXiv:2411.02853)";
    const SUMMARY: &'static str =
        "Adam normalising by the previous second moment, clipped normalised gradient as momentum input";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), non_negative(weight_decay, eps))
    }
}

/// Per-step scalars of ADOPT.
#[derive(Debug, Clone, Copy)]
pub struct AdoptScalars {
    sign: f32,
    wd: WeightDecay,
    first: bool,
    eps: f32,
    clip: f32,
    w1: f32,
    v: Ema,
    lr: f32,
}

impl UpdateRule for Adopt {
    type State = AdoptState;
    const ELEMENTWISE: bool = true;

    fn update(&self, info: &StepInfo, p: &mut ParamMut<'_>, st: &mut AdoptState) -> Result<()> {
        if !self.stable_adamw {
            return crate::exec::update_whole_param(self, info, p, st);
        }
        let rms = self.stable_rms(info, p, st);
        if self.cautious {
            let mut mask = CautiousMask::default();
            crate::exec::kernel_whole_param(self, info, p, st, &mut DivBy(rms, &mut mask))?;
            mask.finish(p.value)
        } else {
            crate::exec::kernel_whole_param(self, info, p, st, &mut DivBy(rms, &mut Plain))
        }
    }

    crate::elementwise_rule!(update_with);

    fn update_all(
        &self,
        info: &StepInfo,
        params: &mut [ParamMut<'_>],
        states: &mut StateStore<AdoptState>,
    ) -> Option<Result<()>> {
        if !self.stable_adamw {
            return Some(crate::exec::run_elementwise_rule(self, info, params, states));
        }
        Some(crate::exec::run_per_param_f32(self, info, params, states, "stable_adamw needs"))
    }
}

impl Adopt {
    /// `get_stable_adamw_rms(g, v)` of the reference before this step's
    /// update of `v`: `max(1, sqrt(mean(g^2 / max(v, 1e-16))))` with `g` as
    /// the step uses it; 1 at the first step (the reference computes none).
    fn stable_rms(&self, info: &StepInfo, p: &ParamMut<'_>, st: &AdoptState) -> f32 {
        let n = p.numel();
        if info.step == 1 || n == 0 || !st.exp_avg_sq.is_allocated() {
            return 1.0;
        }
        let wd = decay(self.weight_decay, self.weight_decouple, self.fixed_decay, self.lr, 1.0);
        let sg = grad_sign(self.maximize);
        let v = st.exp_avg_sq.as_slice();
        let acc: f64 = (0..n)
            .map(|i| {
                let (_, g) = wd.apply_to(p.value[i], sg * p.grad[i]);
                (g * g / clamp_min(v[i], 1e-16)) as f64
            })
            .sum();
        let rms = ((acc / n as f64) as f32).sqrt();
        if rms < 1.0 {
            1.0
        } else {
            rms
        }
    }
}

/// Hands `u / rms` on to the next sink (StableAdamW's scaling).
struct DivBy<'a, A: Apply>(f32, &'a mut A);

impl<A: Apply> Apply for DivBy<'_, A> {
    const PACKS: bool = A::PACKS;

    #[inline(always)]
    fn apply(&mut self, p: &mut f32, g: f32, lr: f32, u: f32) {
        self.1.apply(p, g, lr, u / self.0)
    }

    fn finish(&mut self, value: &mut [f32]) -> Result<()> {
        self.1.finish(value)
    }
}

impl Elementwise for Adopt {
    type Scalars = AdoptScalars;

    fn prepare(&self, info: &StepInfo, p: &ParamMut<'_>, st: &mut AdoptState) -> Result<AdoptScalars> {
        st.start_step(p.name, p.numel())?;
        let t = info.step;
        Ok(AdoptScalars {
            sign: grad_sign(self.maximize),
            wd: decay(self.weight_decay, self.weight_decouple, self.fixed_decay, self.lr, 1.0),
            first: t == 1,
            eps: self.eps as f32,
            clip: (t as f64).powf(0.25) as f32,
            w1: (1.0 - self.betas[0]) as f32,
            v: Ema::new(self.betas[1]),
            lr: self.lr as f32,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &AdoptScalars, c: Chunk<'_>, apply: &mut A) {
        if s.first {
            return sink2(c, apply, |x, g, m, v| {
                let (x, g) = s.wd.apply_to(x, s.sign * g);
                (Step { x, g: 0.0, lr: 0.0, u: 0.0 }, m, v + g * g)
            });
        }
        sink2(c, apply, |x, g, m, v| {
            let (x, g) = s.wd.apply_to(x, s.sign * g);
            let de = clamp_min(v.sqrt(), s.eps);
            let ng = g / de;
            // maximum(-clip) then minimum(clip), NaN kept.
            let ng = if ng < -s.clip { -s.clip } else { ng };
            let ng = if ng > s.clip { s.clip } else { ng };
            let m = lerp(m, ng, s.w1);
            (Step { x, g: ng, lr: s.lr, u: m }, m, s.v.sq(v, g))
        });
    }

    fn cautious(&self) -> bool {
        self.cautious
    }
}
