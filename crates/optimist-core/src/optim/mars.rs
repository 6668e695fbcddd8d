//! MARS: variance-reduced gradient correction (the scaled difference of
//! consecutive gradients) feeding an AdamW or Lion step.
//!
//! **Reference:** `pytorch_optimizer.MARS` (pytorch-optimizer 4.1.0), its
//! default foreach path, `mars_type` `"adamw"` and `"lion"`.
//! `mars_type = "shampoo"` (a Newton-Schulz step, which the reference runs
//! in bfloat16) is not implemented and is an error. **Paper:** Yuan, Liu,
//! Wu, Zhou & Gu, "MARS: Unleashing the Power of Variance Reduction for
//! Training Large Models" (arXiv:2411.10438).
//!
//! Update rule for one parameter at step t (one counter for the optimizer).
//! A parameter is *mixed* when `optimize_1d` or it has 2 or more
//! dimensions; the others take an AdamW step with `betas_1d`,
//! `weight_decay_1d` and lr' = lr * (lr_1d / lr_at_construction):
//! ```text
//! g <- -g                                     if maximize
//! mixed:  c = (g - g_prev) * (gamma * beta1 / (1 - beta1)) + g
//!         c <- c / max(||c||, 1)              (norm over the tensor)
//! else:   c = g
//! m <- lerp(m, c, 1 - beta1)
//! u  = m, masked cautiously against g         if cautious
//! mixed and lion:  u <- sign(u)
//! otherwise:       v <- beta2 v + (1 - beta2) c^2
//!                  u <- u / ((sqrt(max(vmax, v) or v + 1e-15) + eps) / sqrt(1 - beta2^t) * (1 - beta1^t))
//! p <- p * (1 - wd * (fixed_decay ? 1 : lr))   if weight_decouple (default)
//! g <- g + wd * p                              otherwise (only g_prev sees it)
//! p <- p - lr * u
//! g_prev <- g
//! ```
//! Defaults: lr = 3e-3, betas = (0.95, 0.99), gamma = 0.025,
//! mars_type = "adamw", optimize_1d = false, lr_1d = 3e-3,
//! betas_1d = (0.9, 0.95), weight_decay = 0, weight_decay_1d = 0.1,
//! weight_decouple = true, fixed_decay = false, ams_bound = false,
//! cautious = false, eps = 1e-8, maximize = false. Validation as the
//! reference: lr, lr_1d >= 0, betas and betas_1d in [0, 1), mars_type one
//! of adamw/lion (shampoo: not implemented), gamma >= 0, weight_decay and
//! weight_decay_1d >= 0, eps >= 0; built with lr = 0 the reference fails
//! (it divides lr_1d by lr), here the first step does.
//!
//! The norm of `c` is over the tensor, so MARS runs per parameter (not
//! on the fused elementwise path), in two passes over fixed blocks (in
//! parallel on the fast path): the norm, accumulated in f64 per block (in
//! eight interleaved lanes, as `sqsum`) and added in block order, then the
//! step. The cautious mask's count needs
//! the whole tensor, so with `cautious` the step runs in order.

use serde::{Deserialize, Serialize};

use super::adam_family::{decay, grad_sign};
use super::pytorch_optimizer::max_nan;
use crate::error::{Error, Result};
use crate::exec::{cautious_scale, run_blocked, simd, Blocks};
use crate::math::{bias_correction, lerp, sign, Ema, WeightDecay};
use crate::sqsum::{add_sq, lanes_sum, LANES};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::state::StateStore;
use crate::tensor::{ParamMut, StateTensor};
use crate::validate as v;

crate::param_state! {
    /// MARS state: moments, the previous gradient and the running maximum
    /// of the second moment (ams_bound).
    pub struct MarsState { exp_avg, exp_avg_sq, last_grad, max_exp_avg_sq }
}

/// Hyperparameters of `pytorch_optimizer.MARS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mars {
    /// Learning rate (default 3e-3).
    pub lr: f64,
    /// Decay rates of the moments (default (0.95, 0.99)).
    pub betas: [f64; 2],
    /// Strength of the gradient correction (default 0.025).
    pub gamma: f64,
    /// "adamw" (default) or "lion".
    pub mars_type: String,
    /// Treat 1-D parameters as the others (default false).
    pub optimize_1d: bool,
    /// Learning rate of the 1-D AdamW step (default 3e-3).
    pub lr_1d: f64,
    /// Decay rates of the 1-D AdamW step (default (0.9, 0.95)).
    pub betas_1d: [f64; 2],
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Weight decay of the 1-D parameters (default 0.1).
    pub weight_decay_1d: f64,
    /// Decoupled weight decay (default true); L2 otherwise.
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by lr (default false).
    pub fixed_decay: bool,
    /// Running maximum of the second moment (default false).
    pub ams_bound: bool,
    /// Cautious masking of the momentum against the gradient (default false).
    pub cautious: bool,
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
    /// `lr_1d / lr` at construction (not a hyperparameter; kept when lr changes).
    #[serde(skip)]
    pub lr_1d_factor: Option<f64>,
}

impl Default for Mars {
    fn default() -> Self {
        Mars {
            lr: 3e-3,
            betas: [0.95, 0.99],
            gamma: 0.025,
            mars_type: "adamw".into(),
            optimize_1d: false,
            lr_1d: 3e-3,
            betas_1d: [0.9, 0.95],
            weight_decay: 0.0,
            weight_decay_1d: 0.1,
            weight_decouple: true,
            fixed_decay: false,
            ams_bound: false,
            cautious: false,
            eps: 1e-8,
            maximize: false,
            lr_1d_factor: None,
        }
    }
}

impl OptimizerConfig for Mars {
    const NAME: &'static str = "mars";
    const REFERENCE: &'static str = "pytorch_optimizer.MARS (pytorch-optimizer 4.1.0), mars_type adamw and lion";
    const PAPER: &'static str = "Yuan, Liu, Wu, Zhou & Gu, MARS: Unleashing the Power of Variance Reduction for Training Large Models (arXiv:2411.10438)";
    const SUMMARY: &'static str =
        "variance-reduced gradient correction feeding an AdamW or Lion step";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr, lr_1d), betas(betas))?;
        v::betas(Self::NAME, "betas_1d", self.betas_1d).map_err(|_| {
            Error::hparam(
                Self::NAME,
                "betas_1d",
                format!("{:?}", self.betas_1d),
                "must be in [0, 1)",
            )
        })?;
        match self.mars_type.as_str() {
            "adamw" | "lion" => {}
            "shampoo" => {
                return Err(Error::hparam(
                    Self::NAME,
                    "mars_type",
                    "shampoo",
                    "is not implemented (adamw and lion are)",
                ))
            }
            other => {
                return Err(Error::hparam(
                    Self::NAME,
                    "mars_type",
                    other,
                    "must be one of 'adamw', 'lion' or 'shampoo'",
                ))
            }
        }
        crate::checks!(self, non_negative(gamma, weight_decay, weight_decay_1d, eps))
    }
}

impl Mars {
    fn factor(&self) -> f64 {
        self.lr_1d_factor.unwrap_or(self.lr_1d / self.lr)
    }
}

impl UpdateRule for Mars {
    type State = MarsState;
    const BLOCKED: bool = true;

    fn carry_over(&mut self, previous: &Self) {
        self.lr_1d_factor = Some(previous.factor());
    }

    /// Built with lr = 0, the reference fails (it divides lr_1d by lr);
    /// here the first step does, before changing anything. A later lr of 0
    /// (a schedule) keeps the factor of construction.
    fn check_params(&self, _params: &[ParamMut<'_>]) -> Result<()> {
        if self.lr_1d_factor.is_none() && self.lr == 0.0 {
            return Err(Error::hparam(
                Self::NAME,
                "lr",
                0,
                "must be > 0 at construction (the reference divides lr_1d by it)",
            ));
        }
        Ok(())
    }

    fn update(&self, info: &StepInfo, p: &mut ParamMut<'_>, st: &mut MarsState) -> Result<()> {
        self.update_param(info, p, st, Blocks::SEQUENTIAL)
    }

    /// The correction's norm and the step over fixed blocks, in parallel on
    /// the fast path (the cautious mask, which needs the whole tensor's
    /// count, runs in order on this thread).
    fn update_all(
        &self,
        info: &StepInfo,
        params: &mut [ParamMut<'_>],
        states: &mut StateStore<MarsState>,
    ) -> Option<Result<()>> {
        Some(run_blocked(info, params, states, |p, st, blocks| {
            self.update_param(info, p, st, blocks)
        }))
    }
}

impl Mars {
    #[allow(clippy::needless_range_loop)]
    fn update_param(
        &self,
        info: &StepInfo,
        p: &mut ParamMut<'_>,
        st: &mut MarsState,
        blocks: Blocks,
    ) -> Result<()> {
        let n = p.numel();
        if !st.exp_avg.is_allocated() {
            st.exp_avg = StateTensor::zeros(n);
            st.exp_avg_sq = StateTensor::zeros(n);
            st.last_grad = StateTensor::zeros(n);
        }
        if self.ams_bound && !st.max_exp_avg_sq.is_allocated() {
            st.max_exp_avg_sq = StateTensor::zeros(n);
        }
        st.step += 1;
        let t = info.step;
        let mixed = self.optimize_1d || p.shape.len() >= 2;
        let (lr, [b1, b2], wd) = if mixed {
            (self.lr, self.betas, self.weight_decay)
        } else {
            (self.lr * self.factor(), self.betas_1d, self.weight_decay_1d)
        };
        let mut k = MarsConsts {
            mixed,
            lion: mixed && self.mars_type == "lion",
            sg: grad_sign(self.maximize),
            k: (self.gamma * b1 / (1.0 - b1)) as f32,
            den: 1.0,
            w1: (1.0 - b1) as f32,
            ema2: Ema::new(b2),
            bc1: bias_correction(b1, t) as f32,
            bc2_sqrt: bias_correction(b2, t).sqrt() as f32,
            eps: self.eps as f32,
            wdk: decay(wd, self.weight_decouple, self.fixed_decay, lr, 1.0),
            lr: lr as f32,
        };
        let (x, g) = (&mut *p.value, &*p.grad);
        let m = st.exp_avg.as_mut_slice();
        let v = st.exp_avg_sq.as_mut_slice();
        let last = st.last_grad.as_mut_slice();
        // The correction's norm, clamped below at 1: f64 partial sums over
        // fixed blocks, added in block order.
        if mixed {
            let items = g.chunks(BLOCK).zip(last.chunks(BLOCK));
            let sq: f64 = blocks.map(items, |(g, l)| norm_sq(&k, g, l)).iter().sum();
            let norm = sq.sqrt() as f32;
            k.den = if norm < 1.0 { 1.0 } else { norm };
        }
        let vmax: &mut [f32] = if self.ams_bound {
            st.max_exp_avg_sq.as_mut_slice()
        } else {
            &mut []
        };
        if !self.cautious {
            let vms = vmax.chunks_mut(BLOCK).map(Some).chain(std::iter::repeat_with(|| None));
            let items = x
                .chunks_mut(BLOCK)
                .zip(g.chunks(BLOCK))
                .zip(m.chunks_mut(BLOCK))
                .zip(v.chunks_mut(BLOCK))
                .zip(last.chunks_mut(BLOCK))
                .zip(vms);
            blocks.map(items, |(((((x, g), m), v), l), vm)| {
                step(&k, x, g, m, v, l, vm.unwrap_or_default())
            });
            return Ok(());
        }
        // Cautious: the moments and the decay, then the masked step.
        let mut kept = 0usize;
        let mut dens = vec![0.0f32; n];
        for i in 0..n {
            let gi = k.sg * g[i];
            let mi = lerp(m[i], k.correction(gi, last[i]), k.w1);
            m[i] = mi;
            let ams = i < vmax.len();
            let vm = if ams { vmax[i] } else { 0.0 };
            let (vi, vm, d) = k.denominator(v[i], vm, ams, k.correction(gi, last[i]));
            v[i] = vi;
            if ams {
                vmax[i] = vm;
            }
            dens[i] = d;
            let (xi, gl) = k.wdk.apply_to(x[i], gi);
            last[i] = gl;
            kept += (mi * gi > 0.0) as usize;
            x[i] = xi;
        }
        let scale = cautious_scale(n, kept);
        for i in 0..n {
            let gi = k.sg * g[i];
            let ms = if m[i] * gi > 0.0 { scale } else { 0.0 };
            let um = m[i] * ms;
            let u = if k.lion { sign(um) } else { um / dens[i] };
            x[i] -= k.lr * u;
        }
        Ok(())
    }
}

/// Elements per block of MARS's passes and of the norm's partial sums:
/// fixed, so that the values do not depend on the thread count.
const BLOCK: usize = crate::exec::CHUNK;

/// Per-step constants of one MARS parameter.
#[derive(Debug, Clone, Copy)]
struct MarsConsts {
    /// Whether the gradient correction applies (matrices, or optimize_1d).
    mixed: bool,
    /// Whether the step is Lion's sign (mixed and mars_type "lion").
    lion: bool,
    sg: f32,
    /// `gamma * beta1 / (1 - beta1)`.
    k: f32,
    /// The correction's norm clamped below at 1 (1 when not mixed).
    den: f32,
    w1: f32,
    ema2: Ema,
    bc1: f32,
    bc2_sqrt: f32,
    eps: f32,
    wdk: WeightDecay,
    lr: f32,
}

impl MarsConsts {
    /// The corrected gradient `c` (the sign-adjusted g when not mixed).
    #[inline(always)]
    fn correction(&self, gi: f32, last: f32) -> f32 {
        if self.mixed {
            ((gi - last) * self.k + gi) / self.den
        } else {
            gi
        }
    }

    /// Updates the second moment with `c`, and its running maximum when
    /// `ams`: returns `(v, vmax, denominator)`; Lion leaves both and
    /// returns 1. Values in and out, with no branch, so that loops using it
    /// vectorize.
    #[inline(always)]
    fn denominator(&self, v: f32, vmax: f32, ams: bool, c: f32) -> (f32, f32, f32) {
        let vi = self.ema2.sq(v, c);
        let vm = if ams { max_nan(vmax, vi) } else { vmax };
        let base = if ams { vm } else { vi };
        let d = ((base + 1e-15).sqrt() + self.eps) / self.bc2_sqrt * self.bc1;
        if self.lion {
            (v, vmax, 1.0)
        } else {
            (vi, vm, d)
        }
    }
}

/// The block's sum of the squared corrections `c` (before the norm), in f64:
/// `c` computed in runs of [`RUN`] values, whose squares go into eight
/// interleaved f64 lanes ([`crate::sqsum::add_sq`]: element `i` of the
/// block into lane `i % LANES`, the lanes added in order at the end).
/// Independent lanes, not one chain of additions, so that the pass runs at
/// the memory's pace; the block is fixed, so the sum does not depend on the
/// thread count, and the lanes give the same bits on every instruction set.
fn norm_sq(k: &MarsConsts, g: &[f32], last: &[f32]) -> f64 {
    simd!(avx2; fn(k: &MarsConsts, g: &[f32], last: &[f32]) -> f64 {
        let last = &last[..g.len()];
        let mut lanes = [0.0f64; LANES];
        let mut buf = [0.0f32; RUN];
        for (g, l) in g.chunks(RUN).zip(last.chunks(RUN)) {
            let buf = &mut buf[..g.len()];
            for ((c, &g), &l) in buf.iter_mut().zip(g).zip(l) {
                let gi = k.sg * g;
                *c = (gi - l) * k.k + gi;
            }
            add_sq(buf, &mut lanes);
        }
        lanes_sum(&lanes)
    })
}

/// Values of `c` per run of [`norm_sq`] (a multiple of [`LANES`], so that
/// element `i` of the block still goes to lane `i % LANES`).
const RUN: usize = 1024;
const _: () = assert!(RUN.is_multiple_of(LANES));

/// The step over one block (no cautious mask); `vmax` is empty unless
/// `ams_bound`.
fn step(
    k: &MarsConsts,
    x: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    last: &mut [f32],
    vmax: &mut [f32],
) {
    simd!(avx2; fn(k: &MarsConsts, x: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], last: &mut [f32], vmax: &mut [f32]) {
        let n = x.len();
        let (g, m, v, last) = (&g[..n], &mut m[..n], &mut v[..n], &mut last[..n]);
        // One branch-free loop per case (with or without the running
        // maximum), so that each vectorizes; the element is written once.
        #[inline(always)]
        fn element<const AMS: bool>(k: &MarsConsts, x: f32, g: f32, m: f32, v: f32, last: f32, vmax: f32) -> [f32; 5] {
            let gi = k.sg * g;
            let c = k.correction(gi, last);
            let mi = lerp(m, c, k.w1);
            let (vi, vm, d) = k.denominator(v, vmax, AMS, c);
            let (xi, gl) = k.wdk.apply_to(x, gi);
            let u = if k.lion { sign(mi) } else { mi / d };
            [xi - k.lr * u, mi, vi, gl, vm]
        }
        if vmax.is_empty() {
            for i in 0..n {
                [x[i], m[i], v[i], last[i], _] = element::<false>(k, x[i], g[i], m[i], v[i], last[i], 0.0);
            }
        } else {
            let vmax = &mut vmax[..n];
            for i in 0..n {
                [x[i], m[i], v[i], last[i], vmax[i]] = element::<true>(k, x[i], g[i], m[i], v[i], last[i], vmax[i]);
            }
        }
    })
}
