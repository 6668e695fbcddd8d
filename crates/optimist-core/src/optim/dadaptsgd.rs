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
//! accumulated in f64 and rounded to f32 (the reference sums in f32): in
//! eight interleaved lanes per block of [`BLOCK`] elements (as `sqsum`),
//! the blocks added in order, so that both passes run in parallel on the
//! fast path and the sums do not depend on the thread count.

#![allow(clippy::needless_range_loop)]

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::math::lerp;
use crate::exec::{simd, Blocks};
use crate::math::WeightDecay;
use crate::optim::prodigy::{add_alpha, inf_as_null, GlobalRule, BLOCK};
use crate::sqsum::{add_pairs, lanes_sum, LANES};
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
        blocks: Blocks,
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
        let wd = WeightDecay::new(
            self.weight_decay,
            self.weight_decouple,
            if self.fixed_decay { 1.0 } else { d_lr },
        );
        let k = Consts { sgn, wd, a_s: d_lr as f32 };
        let mut num = globals[1] as f32;
        let mut sq = 0.0f32;
        for (p, st) in params.iter_mut().zip(states.iter_mut()) {
            st.step += 1;
            let items = p
                .value
                .chunks_mut(BLOCK)
                .zip(p.grad.chunks(BLOCK))
                .zip(st.s.as_mut_slice().chunks_mut(BLOCK));
            let partials = blocks.map(items, |((x, g), s)| accumulate(&k, x, g, s));
            let (dot, ssq) = add_pairs(&partials);
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
            let items = p
                .value
                .chunks_mut(BLOCK)
                .zip(st.z.as_mut_slice().chunks_mut(BLOCK))
                .zip(st.x0.as_slice().chunks(BLOCK))
                .zip(st.s.as_slice().chunks(BLOCK));
            blocks.map(items, |(((x, z), x0), s)| step(w, x, z, x0, s));
        }
    }
}

/// Per-step constants of D-Adapt SGD's first pass.
#[derive(Debug, Clone, Copy)]
struct Consts {
    sgn: f32,
    wd: WeightDecay,
    a_s: f32,
}

/// Pass 1 over one block: the decay and `s`; returns the block's `<g, s>`
/// (before `s` is updated) and `sum s^2` (after; each square in f32, as the
/// reference), each added in f64 in eight interleaved lanes (`sqsum`'s
/// order).
fn accumulate(k: &Consts, x: &mut [f32], g: &[f32], s: &mut [f32]) -> (f64, f64) {
    simd!(avx512; fn(k: &Consts, x: &mut [f32], g: &[f32], s: &mut [f32]) -> (f64, f64) {
        #[inline(always)]
        fn element(k: &Consts, x: &mut f32, g: f32, s: &mut f32, dot: &mut f64, ssq: &mut f64) {
            let g = k.wd.apply(x, k.sgn * g);
            *dot += g as f64 * *s as f64;
            let si = *s + k.a_s * g;
            *s = si;
            *ssq += (si * si) as f64;
        }
        let n = x.len();
        let (g, s) = (&g[..n], &mut s[..n]);
        let (mut dot, mut ssq) = ([0.0f64; LANES], [0.0f64; LANES]);
        let (xc, xr) = x.as_chunks_mut::<LANES>();
        let (gc, gr) = g.as_chunks::<LANES>();
        let (sc, sr) = s.as_chunks_mut::<LANES>();
        for ((x, g), s) in xc.iter_mut().zip(gc).zip(sc) {
            for j in 0..LANES {
                element(k, &mut x[j], g[j], &mut s[j], &mut dot[j], &mut ssq[j]);
            }
        }
        for j in 0..xr.len() {
            element(k, &mut xr[j], gr[j], &mut sr[j], &mut dot[j], &mut ssq[j]);
        }
        (lanes_sum(&dot), lanes_sum(&ssq))
    })
}

/// Pass 2 over one block: `z = x0 - s`, `x = lerp(x, z, w)`.
fn step(w: f32, x: &mut [f32], z: &mut [f32], x0: &[f32], s: &[f32]) {
    simd!(avx512; fn(w: f32, x: &mut [f32], z: &mut [f32], x0: &[f32], s: &[f32]) {
        let n = x.len();
        let (z, x0, s) = (&mut z[..n], &x0[..n], &s[..n]);
        for i in 0..n {
            z[i] = x0[i] - s[i];
            x[i] = lerp(x[i], z[i], w);
        }
    })
}
