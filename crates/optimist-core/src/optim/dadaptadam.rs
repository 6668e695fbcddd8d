//! D-Adaptation Adam: Adam whose step size is a distance estimate `d`
//! learned from sums over all parameters.
//!
//! **Reference:** `pytorch_optimizer.DAdaptAdam` (pytorch-optimizer 4.1.0),
//! its default path on the CPU (the batched `foreach` one; the for-loop path
//! computes the same). **Paper:** Defazio & Mishchenko, "Learning-Rate-Free
//! Learning by D-Adaptation", ICML 2023 (arXiv:2301.07733).
//!
//! Update rule at step t (1-based), one parameter group. Scalars are f64
//! unless marked f32 (the reference's one-element f32 tensors); tensor
//! arithmetic is f32 with the scalars rounded to f32:
//! ```text
//! b2s  = sqrt(beta2)
//! d_lr = d * lr                                        without bias_correction
//! d_lr = d * lr * sqrt(1 - beta2^t) / (1 - beta1^t)    with it
//! acc  = 0, l1 = 0                                     (f32)
//! for each parameter:
//!     g   <- -g                                        if maximize
//!     g   <- g + wd p                                  if not weight_decouple
//!     acc <- acc + d_lr <g, s / (sqrt(v) + eps)>
//!     m   <- m beta1 + d_lr (1 - beta1) g
//!     v   <- v beta2 + (1 - beta2) g g
//!     s   <- s b2s + d_lr (1 - b2s) g
//!     l1  <- l1 + sum |s|
//! if l1 == 0: stop here (no parameter changes)
//! num  = lerp(num, acc, 1 - b2s)                       (f32, kept across steps)
//! if lr > 0: d = max(d, min(num / ((1 - b2s) l1), d * growth_rate))
//! for each parameter:
//!     p <- p (1 - wd (fixed_decay ? 1 : d_lr))         if weight_decouple
//!     p <- p - m / (sqrt(v) + eps)
//! ```
//! (`d_lr` is computed with the d of the step's start.)
//!
//! Defaults: lr = 1.0, betas = (0.9, 0.999), d0 = 1e-6, growth_rate = inf
//! (null in JSON), weight_decay = 0, weight_decouple = false, fixed_decay =
//! false, bias_correction = false, eps = 1e-8, maximize = false.
//! Validation as the reference: lr >= 0, betas in [0, 1), weight_decay >= 0,
//! eps >= 0 (d0 is not checked, as there).
//!
//! State: `s`, `exp_avg`, `exp_avg_sq` per parameter; the scalars `d` and
//! `numerator_weighted`. Sums over a tensor are accumulated in f64 and
//! rounded to f32 (the reference sums in f32): in eight interleaved lanes
//! per block of [`BLOCK`] elements (as `sqsum`), the blocks added in order,
//! so that both passes run in parallel on the fast path and the sums do not
//! depend on the thread count.

#![allow(clippy::needless_range_loop)]

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::math::lerp;
use crate::exec::{simd, Blocks};
use crate::math::Maybe;
use crate::optim::prodigy::{add_alpha, inf_as_null, step_params, GlobalRule, StepConsts, BLOCK};
use crate::sqsum::{add_pairs, lanes_sum, LANES};
use crate::rule::OptimizerConfig;
use crate::tensor::{ParamMut, StateTensor};

crate::param_state! {
    /// D-Adapt Adam state: `s` and Adam's moments.
    pub struct DAdaptAdamState { s, exp_avg, exp_avg_sq }
}

/// Hyperparameters of `pytorch_optimizer.DAdaptAdam`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DAdaptAdam {
    /// Multiplier of the adapted step size (default 1.0).
    pub lr: f64,
    /// Decay rates of the moments (default (0.9, 0.999)).
    pub betas: [f64; 2],
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
    /// Adam's bias correction in the step size (default false).
    pub bias_correction: bool,
    /// Denominator epsilon (default 1e-8).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for DAdaptAdam {
    fn default() -> Self {
        DAdaptAdam {
            lr: 1.0,
            betas: [0.9, 0.999],
            d0: 1e-6,
            growth_rate: f64::INFINITY,
            weight_decay: 0.0,
            weight_decouple: false,
            fixed_decay: false,
            bias_correction: false,
            eps: 1e-8,
            maximize: false,
        }
    }
}

impl OptimizerConfig for DAdaptAdam {
    const NAME: &'static str = "dadaptadam";
    const REFERENCE: &'static str = "pytorch_optimizer.DAdaptAdam (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Defazio & Mishchenko, Learning-Rate-Free Learning by D-Adaptation, ICML 2023 (arXiv:2301.07733)";
    const SUMMARY: &'static str = "learning-rate-free Adam by D-Adaptation of the distance to the solution";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), non_negative(weight_decay, eps),
            finite(d0))?;
        if self.growth_rate.is_nan() {
            return Err(Error::hparam(Self::NAME, "growth_rate", self.growth_rate, "must be a number"));
        }
        Ok(())
    }
}

impl GlobalRule for DAdaptAdam {
    type State = DAdaptAdamState;
    const GLOBALS: &'static [&'static str] = &["d", "numerator_weighted"];

    fn init_globals(&self) -> Vec<f64> {
        vec![self.d0, 0.0]
    }

    fn step_all(
        &self,
        t: u64,
        globals: &mut [f64],
        params: &mut [ParamMut<'_>],
        states: &mut [&mut DAdaptAdamState],
        blocks: Blocks,
    ) {
        let [beta1, beta2] = self.betas;
        let b2s = beta2.sqrt();
        let mut d = globals[0];
        let d_lr = if self.bias_correction {
            let bc = (1.0 - beta1.powf(t as f64)) / (1.0 - beta2.powf(t as f64)).sqrt();
            d * self.lr / bc
        } else {
            d * self.lr
        };
        let sgn = if self.maximize { -1.0f32 } else { 1.0 };
        let l2 = !self.weight_decouple && self.weight_decay != 0.0;
        let k = MomentConsts {
            sgn,
            l2: Maybe::from(l2.then_some(self.weight_decay as f32)),
            eps: self.eps as f32,
            b1: beta1 as f32,
            b2: beta2 as f32,
            b2sf: b2s as f32,
            a_m: (d_lr * (1.0 - beta1)) as f32,
            w_v: (1.0 - beta2) as f32,
            a_s: (d_lr * (1.0 - b2s)) as f32,
        };
        let mut acc = 0.0f32;
        let mut l1 = 0.0f32;
        for (p, st) in params.iter_mut().zip(states.iter_mut()) {
            let n = p.numel();
            if !st.exp_avg.is_allocated() {
                st.s = StateTensor::zeros(n);
                st.exp_avg = StateTensor::zeros(n);
                st.exp_avg_sq = StateTensor::zeros(n);
            }
            st.step += 1;
            let items = p
                .value
                .chunks(BLOCK)
                .zip(p.grad.chunks(BLOCK))
                .zip(st.s.as_mut_slice().chunks_mut(BLOCK))
                .zip(st.exp_avg.as_mut_slice().chunks_mut(BLOCK))
                .zip(st.exp_avg_sq.as_mut_slice().chunks_mut(BLOCK));
            let partials = blocks.map(items, |((((x, g), s), m), v)| moments(&k, x, g, s, m, v));
            let (dot, abs) = add_pairs(&partials);
            acc = add_alpha(acc, dot as f32, d_lr);
            l1 += abs as f32;
        }
        if l1 == 0.0 {
            return;
        }
        let num = lerp(globals[1] as f32, acc, (1.0 - b2s) as f32);
        globals[1] = num as f64;
        if self.lr > 0.0 {
            let d_hat = (num / (((1.0 - b2s) as f32) * l1)) as f64;
            d = d.max(d_hat.min(d * self.growth_rate));
            globals[0] = d;
        }
        // `p + (-m) / (sqrt(v) + eps)`: Prodigy's step with a factor of -1
        // (exact: -1 * m is -m).
        let c = StepConsts {
            keep: Maybe::from((self.weight_decouple && self.weight_decay != 0.0).then_some(
                (1.0 - self.weight_decay * if self.fixed_decay { 1.0 } else { d_lr }) as f32,
            )),
            neg_lr: -1.0,
            de: Maybe::from(Some(self.eps as f32)),
        };
        let moments = states.iter().map(|st| (st.exp_avg.as_slice(), st.exp_avg_sq.as_slice()));
        step_params(&c, params, moments, blocks);
    }
}

/// Per-step constants of D-Adapt Adam's first pass (f32, as the
/// reference's tensor arithmetic).
#[derive(Debug, Clone, Copy)]
struct MomentConsts {
    sgn: f32,
    /// The L2 decay's coefficient, when it applies.
    l2: Maybe<f32>,
    eps: f32,
    b1: f32,
    b2: f32,
    b2sf: f32,
    a_m: f32,
    w_v: f32,
    a_s: f32,
}

/// Pass 1 over one block: the moments and `s`; returns the block's
/// `<g, s / (sqrt(v) + eps)>` (before the update) and `sum |s|` (after),
/// each added in f64 in eight interleaved lanes (`sqsum`'s order).
fn moments(k: &MomentConsts, x: &[f32], g: &[f32], s: &mut [f32], m: &mut [f32], v: &mut [f32]) -> (f64, f64) {
    simd!(avx512; fn(k: &MomentConsts, x: &[f32], g: &[f32], s: &mut [f32], m: &mut [f32], v: &mut [f32]) -> (f64, f64) {
        #[inline(always)]
        #[allow(clippy::too_many_arguments)]
        fn element(k: &MomentConsts, x: f32, g: f32, s: &mut f32, m: &mut f32, v: &mut f32, dot: &mut f64, abs: &mut f64) {
            let g = k.sgn * g;
            let g = match k.l2.get() {
                Some(wd) => g + wd * x,
                None => g,
            };
            let den = v.sqrt() + k.eps;
            *dot += g as f64 * (*s / den) as f64;
            *m = *m * k.b1 + k.a_m * g;
            *v = *v * k.b2 + k.w_v * g * g;
            let si = *s * k.b2sf + k.a_s * g;
            *s = si;
            *abs += si.abs() as f64;
        }
        let n = x.len();
        let (g, s, m, v) = (&g[..n], &mut s[..n], &mut m[..n], &mut v[..n]);
        let (mut dot, mut abs) = ([0.0f64; LANES], [0.0f64; LANES]);
        let (xc, xr) = x.as_chunks::<LANES>();
        let (gc, gr) = g.as_chunks::<LANES>();
        let (sc, sr) = s.as_chunks_mut::<LANES>();
        let (mc, mr) = m.as_chunks_mut::<LANES>();
        let (vc, vr) = v.as_chunks_mut::<LANES>();
        for ((((x, g), s), m), v) in xc.iter().zip(gc).zip(sc).zip(mc).zip(vc) {
            for j in 0..LANES {
                element(k, x[j], g[j], &mut s[j], &mut m[j], &mut v[j], &mut dot[j], &mut abs[j]);
            }
        }
        for j in 0..xr.len() {
            element(k, xr[j], gr[j], &mut sr[j], &mut mr[j], &mut vr[j], &mut dot[j], &mut abs[j]);
        }
        (lanes_sum(&dot), lanes_sum(&abs))
    })
}
