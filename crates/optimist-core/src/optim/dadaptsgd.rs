//! D-Adaptation SGD: SGD with momentum (in its primal averaging form) whose
//! step size is a distance estimate `d` learned from sums over all
//! parameters.
//!
//! **Reference:** `pytorch_optimizer.DAdaptSGD` (pytorch-optimizer 4.1.0),
//! its default path on the CPU (the batched `foreach` one; the for-loop path
//! computes the same). **Paper:** Defazio & Mishchenko, "Learning-Rate-Free
//! Learning by D-Adaptation", ICML 2023 (arXiv:2301.07733).
//!
//! Update rule, one parameter group. Scalars are f64 unless marked f32 (the
//! reference's one-element f32 tensors); tensor arithmetic is f32 with the
//! scalars rounded to f32. `k` counts completed steps:
//! ```text
//! if k == 0: g0 = sqrt(sum over parameters of ||g||^2)  (f32, raw gradients)
//! if g0 == 0: stop here (nothing changes; k stays, so g0 is taken again)
//! d_lr = d * lr / g0
//! sq = 0                                                (f32)
//! for each parameter (x0 = z = the parameter at its first step):
//!     g   <- -g                                         if maximize
//!     p   <- p (1 - wd (fixed_decay ? 1 : d_lr))        if weight_decouple
//!     g   <- g + wd p                                   otherwise
//!     num <- num + d_lr <g, s>                          (f32, kept across steps)
//!     s   <- s + d_lr g
//!     sq  <- sq + sum s^2
//! if lr > 0: d = max(d, min(2 num / sqrt(sq), d * growth_rate))
//! k <- k + 1
//! for each parameter:
//!     z <- x0 - s
//!     p <- lerp(p, z, 1 - momentum)
//! ```
//!
//! Defaults: lr = 1.0, momentum = 0.9, d0 = 1e-6, growth_rate = inf (null
//! in JSON), weight_decay = 0, weight_decouple = false, fixed_decay =
//! false, maximize = false. Validation as the reference: lr >= 0, momentum
//! in [0, 1), weight_decay >= 0.
//!
//! State: `z`, `s`, `x0` per parameter; the scalars `d`,
//! `numerator_weighted`, `g0_norm` and `k`. Sums over a tensor are
//! accumulated in f64 and rounded to f32 (the reference sums in f32).

#![allow(clippy::needless_range_loop)]

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::math::lerp;
use crate::optim::prodigy::{add_alpha, inf_as_null, GlobalRule};
use crate::rule::OptimizerConfig;
use crate::tensor::{ParamMut, StateTensor};

crate::param_state! {
    /// D-Adapt SGD state: the averaged point `z`, the gradient sum `s` and
    /// the initial point `x0`.
    pub struct DAdaptSgdState { z, s, x0 }
}

/// Hyperparameters of `pytorch_optimizer.DAdaptSGD`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DAdaptSgd {
    /// Multiplier of the adapted step size (default 1.0).
    pub lr: f64,
    /// Momentum (default 0.9).
    pub momentum: f64,
    /// Initial distance estimate (default 1e-6).
    pub d0: f64,
    /// Largest growth factor of d per step (default inf, written null).
    #[serde(with = "inf_as_null")]
    pub growth_rate: f64,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default false: L2).
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by the step size (default false).
    pub fixed_decay: bool,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for DAdaptSgd {
    fn default() -> Self {
        DAdaptSgd {
            lr: 1.0,
            momentum: 0.9,
            d0: 1e-6,
            growth_rate: f64::INFINITY,
            weight_decay: 0.0,
            weight_decouple: false,
            fixed_decay: false,
            maximize: false,
        }
    }
}

impl OptimizerConfig for DAdaptSgd {
    const NAME: &'static str = "dadaptsgd";
    const REFERENCE: &'static str = "pytorch_optimizer.DAdaptSGD (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Defazio & Mishchenko, Learning-Rate-Free Learning by D-Adaptation, ICML 2023 (arXiv:2301.07733)";
    const SUMMARY: &'static str = "learning-rate-free SGD with momentum by D-Adaptation";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), unit_interval_open(momentum),
            non_negative(weight_decay), finite(d0))?;
        if self.growth_rate.is_nan() {
            return Err(Error::hparam(Self::NAME, "growth_rate", self.growth_rate, "must be a number"));
        }
        Ok(())
    }
}

impl GlobalRule for DAdaptSgd {
    type State = DAdaptSgdState;
    const GLOBALS: &'static [&'static str] = &["d", "numerator_weighted", "g0_norm", "k"];

    fn init_globals(&self) -> Vec<f64> {
        vec![self.d0, 0.0, 0.0, 0.0]
    }

    fn step_all(
        &self,
        _t: u64,
        globals: &mut [f64],
        params: &mut [ParamMut<'_>],
        states: &mut [&mut DAdaptSgdState],
        _blocks: crate::exec::Blocks,
    ) {
        // State first (the reference's init_group runs before any early return).
        for (p, st) in params.iter_mut().zip(states.iter_mut()) {
            if !st.s.is_allocated() {
                st.z = StateTensor::from_slice(p.value);
                st.s = StateTensor::zeros(p.numel());
                st.x0 = StateTensor::from_slice(p.value);
            }
        }
        if globals[3] == 0.0 {
            let mut sq = 0.0f32;
            for p in params.iter() {
                let norm = crate::math::l2_norm(p.grad);
                sq += norm * norm;
            }
            globals[2] = sq.sqrt() as f64;
        }
        let g0 = globals[2];
        if g0 == 0.0 {
            return;
        }
        let mut d = globals[0];
        let d_lr = d * self.lr / g0;
        let sgn = if self.maximize { -1.0f32 } else { 1.0 };
        let wd = crate::math::WeightDecay::new(
            self.weight_decay,
            self.weight_decouple,
            if self.fixed_decay { 1.0 } else { d_lr },
        );
        let a_s = d_lr as f32;
        let mut num = globals[1] as f32;
        let mut sq = 0.0f32;
        for (p, st) in params.iter_mut().zip(states.iter_mut()) {
            st.step += 1;
            let s = st.s.as_mut_slice();
            let mut dot = 0.0f64;
            let mut ssq = 0.0f64;
            for i in 0..p.numel() {
                let g = wd.apply(&mut p.value[i], sgn * p.grad[i]);
                dot += g as f64 * s[i] as f64;
                s[i] += a_s * g;
                ssq += (s[i] * s[i]) as f64;
            }
            num = add_alpha(num, dot as f32, d_lr);
            sq += ssq as f32;
        }
        globals[1] = num as f64;
        if self.lr > 0.0 {
            let d_hat = (2.0f32 * num / sq.sqrt()) as f64;
            d = d.max(d_hat.min(d * self.growth_rate));
            globals[0] = d;
        }
        globals[3] += 1.0;
        let w = (1.0 - self.momentum) as f32;
        for (p, st) in params.iter_mut().zip(states.iter_mut()) {
            let (z, s) = (st.z.as_mut_slice(), st.s.as_slice());
            let x0 = st.x0.as_slice();
            for i in 0..p.numel() {
                z[i] = x0[i] - s[i];
                p.value[i] = lerp(p.value[i], z[i], w);
            }
        }
    }
}
