//! D-Adaptation Lion: Lion whose step size is a distance estimate `d`
//! learned from sums over all parameters.
//!
//! **Reference:** `pytorch_optimizer.DAdaptLion` (pytorch-optimizer 4.1.0),
//! its default path on the CPU (the batched `foreach` one; the for-loop path
//! computes the same). **Paper:** Defazio & Mishchenko, "Learning-Rate-Free
//! Learning by D-Adaptation", ICML 2023 (arXiv:2301.07733); Lion: Chen et
//! al., arXiv:2302.06675.
//!
//! Update rule, one parameter group. Scalars are f64 unless marked f32 (the
//! reference's one-element f32 tensors); tensor arithmetic is f32 with the
//! scalars rounded to f32:
//! ```text
//! b2s  = sqrt(beta2);  d_lr = d * lr;  acc = 0, l1 = 0 (f32)
//! for each parameter:
//!     g   <- -g                                        if maximize
//!     p   <- p (1 - wd (fixed_decay ? 1 : d_lr))       if weight_decouple
//!     g   <- g + wd p                                  otherwise
//!     u   <- sign(lerp(m, g, 1 - beta1))
//!     p   <- p - d_lr u
//!     m   <- m beta2 + (1 - beta2) d_lr g
//!     acc <- acc + d_lr <u, s>
//!     s   <- s b2s + (1 - b2s) d_lr u
//!     l1  <- l1 + sum |s|
//! num = lerp(num, acc, 1 - b2s)                        (f32, kept across steps)
//! if l1 > 0 and lr > 0: d = max(d, num / ((1 - b2s) l1))
//! ```
//! The parameters move with the d of the step's start; the new d is used
//! from the next step on.
//!
//! Defaults: lr = 1.0, betas = (0.9, 0.999), d0 = 1e-6, weight_decay = 0,
//! weight_decouple = false, fixed_decay = false, maximize = false.
//! Validation as the reference: lr >= 0, betas in [0, 1), weight_decay >= 0.
//!
//! State: `exp_avg`, `s` per parameter; the scalars `d` and
//! `numerator_weighted`. Sums over a tensor are accumulated in f64 and
//! rounded to f32 (the reference sums in f32): in eight interleaved lanes
//! per block of [`BLOCK`] elements (as `sqsum`), the blocks added in order,
//! so that the one pass runs in parallel on the fast path and the sums do
//! not depend on the thread count.

#![allow(clippy::needless_range_loop)]

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::math::{lerp, sign, WeightDecay};
use crate::exec::{simd, Blocks};
use crate::optim::prodigy::{add_alpha, GlobalRule, BLOCK};
use crate::sqsum::{add_pairs, lanes_sum, LANES};
use crate::rule::OptimizerConfig;
use crate::tensor::{ParamMut, StateTensor};

crate::param_state! {
    /// D-Adapt Lion state: the momentum and `s`.
    pub struct DAdaptLionState { exp_avg, s }
}

/// Hyperparameters of `pytorch_optimizer.DAdaptLion`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DAdaptLion {
    /// Multiplier of the adapted step size (default 1.0).
    pub lr: f64,
    /// Interpolation of the update and decay of the momentum (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Initial distance estimate (default 1e-6).
    pub d0: f64,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default false: L2).
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by the step size (default false).
    pub fixed_decay: bool,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for DAdaptLion {
    fn default() -> Self {
        DAdaptLion {
            lr: 1.0,
            betas: [0.9, 0.999],
            d0: 1e-6,
            weight_decay: 0.0,
            weight_decouple: false,
            fixed_decay: false,
            maximize: false,
        }
    }
}

impl OptimizerConfig for DAdaptLion {
    const NAME: &'static str = "dadaptlion";
    const REFERENCE: &'static str = "pytorch_optimizer.DAdaptLion (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Defazio & Mishchenko, Learning-Rate-Free Learning by D-Adaptation, ICML 2023 (arXiv:2301.07733)";
    const SUMMARY: &'static str = "learning-rate-free Lion by D-Adaptation";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), non_negative(weight_decay), finite(d0))
    }
}

impl GlobalRule for DAdaptLion {
    type State = DAdaptLionState;
    const GLOBALS: &'static [&'static str] = &["d", "numerator_weighted"];

    fn init_globals(&self) -> Vec<f64> {
        vec![self.d0, 0.0]
    }

    fn step_all(
        &self,
        _t: u64,
        globals: &mut [f64],
        params: &mut [ParamMut<'_>],
        states: &mut [&mut DAdaptLionState],
        blocks: Blocks,
    ) {
        let [beta1, beta2] = self.betas;
        let b2s = beta2.sqrt();
        let d = globals[0];
        let d_lr = d * self.lr;
        let sgn = if self.maximize { -1.0f32 } else { 1.0 };
        let wd = WeightDecay::new(
            self.weight_decay,
            self.weight_decouple,
            if self.fixed_decay { 1.0 } else { d_lr },
        );
        let w1 = (1.0 - beta1) as f32;
        let b2 = beta2 as f32;
        let a_m = ((1.0 - beta2) * d_lr) as f32;
        let b2sf = b2s as f32;
        let a_s = ((1.0 - b2s) * d_lr) as f32;
        let neg = (-d_lr) as f32;
        let k = Consts { sgn, wd, w1, b2, a_m, b2sf, a_s, neg };
        let mut acc = 0.0f32;
        let mut l1 = 0.0f32;
        for (p, st) in params.iter_mut().zip(states.iter_mut()) {
            let n = p.numel();
            if !st.exp_avg.is_allocated() {
                st.exp_avg = StateTensor::zeros(n);
                st.s = StateTensor::zeros(n);
            }
            st.step += 1;
            let items = p
                .value
                .chunks_mut(BLOCK)
                .zip(p.grad.chunks(BLOCK))
                .zip(st.exp_avg.as_mut_slice().chunks_mut(BLOCK))
                .zip(st.s.as_mut_slice().chunks_mut(BLOCK));
            let partials = blocks.map(items, |(((x, g), m), s)| block(&k, x, g, m, s));
            let (dot, abs) = add_pairs(&partials);
            acc = add_alpha(acc, dot as f32, d_lr);
            l1 += abs as f32;
        }
        let num = lerp(globals[1] as f32, acc, (1.0 - b2s) as f32);
        globals[1] = num as f64;
        if l1 == 0.0 {
            return;
        }
        if self.lr > 0.0 {
            let d_hat = (num / (((1.0 - b2s) as f32) * l1)) as f64;
            globals[0] = d.max(d_hat);
        }
    }
}

/// Per-step constants of D-Adapt Lion's pass (f32, as the reference's
/// tensor arithmetic).
#[derive(Debug, Clone, Copy)]
struct Consts {
    sgn: f32,
    wd: WeightDecay,
    w1: f32,
    b2: f32,
    a_m: f32,
    b2sf: f32,
    a_s: f32,
    neg: f32,
}

/// The step over one block; returns the block's `<u, s>` (before `s` is
/// updated) and `sum |s|` (after).
fn block(k: &Consts, x: &mut [f32], g: &[f32], m: &mut [f32], s: &mut [f32]) -> (f64, f64) {
    simd!(avx512; fn(k: &Consts, x: &mut [f32], g: &[f32], m: &mut [f32], s: &mut [f32]) -> (f64, f64) {
        #[inline(always)]
        fn element(k: &Consts, x: &mut f32, g: f32, m: &mut f32, s: &mut f32, dot: &mut f64, abs: &mut f64) {
            let g = k.wd.apply(x, k.sgn * g);
            let u = sign(lerp(*m, g, k.w1));
            *x += k.neg * u;
            *m = *m * k.b2 + k.a_m * g;
            *dot += u as f64 * *s as f64;
            let si = *s * k.b2sf + k.a_s * u;
            *s = si;
            *abs += si.abs() as f64;
        }
        let n = x.len();
        let (g, m, s) = (&g[..n], &mut m[..n], &mut s[..n]);
        let (mut dot, mut abs) = ([0.0f64; LANES], [0.0f64; LANES]);
        let (xc, xr) = x.as_chunks_mut::<LANES>();
        let (gc, gr) = g.as_chunks::<LANES>();
        let (mc, mr) = m.as_chunks_mut::<LANES>();
        let (sc, sr) = s.as_chunks_mut::<LANES>();
        for (((x, g), m), s) in xc.iter_mut().zip(gc).zip(mc).zip(sc) {
            for j in 0..LANES {
                element(k, &mut x[j], g[j], &mut m[j], &mut s[j], &mut dot[j], &mut abs[j]);
            }
        }
        for j in 0..xr.len() {
            element(k, &mut xr[j], gr[j], &mut mr[j], &mut sr[j], &mut dot[j], &mut abs[j]);
        }
        (lanes_sum(&dot), lanes_sum(&abs))
    })
}
