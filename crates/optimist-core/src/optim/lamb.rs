//! LAMB: Adam-style updates scaled per tensor by a trust ratio
//! `||p|| / ||update||`, with optional global gradient pre-normalisation.
//!
//! **Reference:** `pytorch_optimizer.Lamb` (pytorch-optimizer 4.1.0), its
//! default (foreach) path, with `fixed_decay = false`, `rectify = false`,
//! `maximize = false`, no AdaNorm or AdamD; class constant `clamp = 10`.
//! **Paper:** You et al., "Large Batch Optimization for Deep Learning:
//! Training BERT in 76 minutes", ICLR 2020 (arXiv:1904.00962).
//!
//! Update rule at step t (one counter for the optimizer):
//! ```text
//! if pre_norm and max_grad_norm > 0:               (over all parameters' gradients)
//!     g <- g * min(1, max_grad_norm / (sqrt(sum ||g_i||^2) + eps))
//! per tensor:
//! p <- p * (1 - lr * wd)                           if weight_decouple (default)
//! m <- beta1 * m + beta3 * g                       beta3 = 1 - beta1 if grad_averaging else 1
//! v <- beta2 * v + (1 - beta2) * g^2
//! u <- m * (1 / (sqrt(v) + eps))                   (no bias correction of v)
//! u <- u + wd * p                                  if not weight_decouple (L2 on the update)
//! w <- min(||p||, 10),  r <- ||u||                 (||p|| after decoupled decay)
//! trust <- w / (r + eps) if w != 0 and r != 0 else 1;  trust <- 1 if adam
//! p <- p - lr / (1 - beta1^t) * (u * trust)
//! ```
//! Defaults: lr = 1e-3, betas = (0.9, 0.999), weight_decay = 0,
//! weight_decouple = true, grad_averaging = true, max_grad_norm = 1,
//! adam = false, pre_norm = false, eps = 1e-6. Validation as the reference:
//! lr >= 0, betas in [0, 1), weight_decay >= 0, max_grad_norm >= 0, eps >= 0.
//!
//! Known differences: norms are accumulated in f64 (the reference reduces in
//! f32); the pre-normalisation uses the current `eps` and `max_grad_norm`
//! (the reference reads the values the optimizer was built with), and runs
//! over the parameters of one step of this optimizer (one parameter group).
//!
//! Each parameter takes two passes over fixed blocks (in parallel on the
//! fast path, through the engine's shared per-parameter loop): the first
//! updates the moments and the decay and accumulates both norms, the second
//! recomputes `u` from the new moments (same operations, same bits) and
//! applies the step. Pass 1 is built for the widest instruction set the CPU
//! has (the squares summed with AVX-512 intrinsics where available, the
//! same values as the portable loop, tested bit for bit); without decoupled
//! decay (the default weight_decay = 0) it reads p without writing it back.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::exec::{run_blocked, simd, Blocks};
use crate::math::{bias_correction, Maybe, WeightDecay};
use crate::rule::{Apply, OptimizerConfig, Plain, StepInfo, UpdateRule};
use crate::sqsum::{add_sq2, lanes_sum, LANES};
use crate::state::StateStore;
use crate::tensor::{ParamMut, StateTensor};

crate::param_state! {
    /// LAMB state: first and second moments.
    pub struct LambState { exp_avg, exp_avg_sq }
}

/// Hyperparameters of `pytorch_optimizer.Lamb`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lamb {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the moments (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); otherwise `wd * p` is added to the update.
    pub weight_decouple: bool,
    /// Scale new gradients by `1 - beta1` in the first moment (default true).
    pub grad_averaging: bool,
    /// Reference norm of the pre-normalisation; 0 disables it (default 1).
    pub max_grad_norm: f64,
    /// Trust ratio 1 for every tensor (default false).
    pub adam: bool,
    /// Scale all gradients by their global norm first (default false).
    pub pre_norm: bool,
    /// Added to sqrt(v) and to the update norm (default 1e-6).
    pub eps: f64,
}

impl Default for Lamb {
    fn default() -> Self {
        Lamb {
            lr: 1e-3,
            betas: [0.9, 0.999],
            weight_decay: 0.0,
            weight_decouple: true,
            grad_averaging: true,
            max_grad_norm: 1.0,
            adam: false,
            pre_norm: false,
            eps: 1e-6,
        }
    }
}

/// The reference's `clamp` on the weight norm.
const WEIGHT_NORM_CLAMP: f32 = 10.0;

impl Lamb {
    /// The factor `min(1, max_grad_norm / (||g|| + eps))` of the
    /// pre-normalisation over `grads`, computed as the reference in f32 from
    /// the norm (torch's `scalar / tensor` is the reciprocal times the scalar).
    pub fn pre_norm_scale<'a>(&self, grads: impl Iterator<Item = &'a [f32]>) -> f32 {
        if !self.pre_norm || self.max_grad_norm == 0.0 {
            return 1.0;
        }
        let sq: f64 = grads
            .flat_map(|g| g.iter())
            .map(|&x| x as f64 * x as f64)
            .sum();
        let denom = sq.sqrt() as f32 + self.eps as f32;
        ((1.0 / denom) * self.max_grad_norm as f32).min(1.0)
    }

    /// Pass 1 of one parameter with its gradients scaled by `gscale`: the
    /// decay and the moments over fixed blocks of [`BLOCK`] elements
    /// (through `blocks`), then the trust ratio from the norms, which are
    /// sums of per-block partial sums added in block order, so every value
    /// is the same with or without threads. Returns the constants, the
    /// trust ratio and the step size of pass 2.
    fn moments_pass(
        &self,
        info: &StepInfo,
        p: &mut ParamMut<'_>,
        st: &mut LambState,
        gscale: f32,
        blocks: Blocks,
    ) -> (LambConsts, f32, f32) {
        let n = p.numel();
        if !st.exp_avg.is_allocated() {
            st.exp_avg = StateTensor::zeros(n);
            st.exp_avg_sq = StateTensor::zeros(n);
        }
        st.step += 1;
        let [beta1, beta2] = self.betas;
        // Decoupled decay scales p; the L2 form adds wd * p to the update.
        let keep = WeightDecay::new(self.weight_decay, true, self.lr)
            .keep()
            .filter(|_| self.weight_decouple)
            .into();
        let c = LambConsts {
            b1: beta1 as f32,
            beta3: if self.grad_averaging {
                (1.0 - beta1) as f32
            } else {
                1.0
            },
            b2: beta2 as f32,
            w2: (1.0 - beta2) as f32,
            eps: self.eps as f32,
            keep,
            l2: if !self.weight_decouple && self.weight_decay > 0.0 {
                Some(self.weight_decay as f32)
            } else {
                None
            }
            .into(),
            gscale: if self.pre_norm { Some(gscale) } else { None }.into(),
            norms: !self.adam,
        };
        let step_size = (self.lr / bias_correction(beta1, info.step)) as f32;
        let m = st.exp_avg.as_mut_slice();
        let v = st.exp_avg_sq.as_mut_slice();
        let items = p
            .value
            .chunks_mut(BLOCK)
            .zip(p.grad.chunks(BLOCK))
            .zip(m.chunks_mut(BLOCK))
            .zip(v.chunks_mut(BLOCK));
        let partials = blocks.map(items, |(((x, g), m), v)| moments(&c, x, g, m, v));
        let trust = if self.adam {
            1.0
        } else {
            let (p_sq, u_sq) = partials
                .iter()
                .fold((0.0f64, 0.0f64), |(a, b), &(x, y)| (a + x, b + y));
            let w = (p_sq.sqrt() as f32).min(WEIGHT_NORM_CLAMP);
            let r = u_sq.sqrt() as f32;
            if w != 0.0 && r != 0.0 {
                w / (r + c.eps)
            } else {
                1.0
            }
        };
        (c, trust, step_size)
    }

    /// One parameter with the plain step: pass 1, then pass 2 over the
    /// same blocks.
    fn update_param(
        &self,
        info: &StepInfo,
        p: &mut ParamMut<'_>,
        st: &mut LambState,
        gscale: f32,
        blocks: Blocks,
    ) -> Result<()> {
        let (c, trust, step_size) = self.moments_pass(info, p, st, gscale, blocks);
        let items = p
            .value
            .chunks_mut(BLOCK)
            .zip(p.grad.chunks(BLOCK))
            .zip(st.exp_avg.as_slice().chunks(BLOCK))
            .zip(st.exp_avg_sq.as_slice().chunks(BLOCK));
        blocks.map(items, |(((x, g), m), v)| step_plain(&c, x, g, m, v, trust, step_size));
        Ok(())
    }

    /// One parameter, every element's step going through `apply` (in
    /// order, on this thread).
    fn update_param_with<A: Apply>(
        &self,
        info: &StepInfo,
        p: &mut ParamMut<'_>,
        st: &mut LambState,
        gscale: f32,
        apply: &mut A,
    ) -> Result<()> {
        let (c, trust, step_size) = self.moments_pass(info, p, st, gscale, Blocks::SEQUENTIAL);
        let (m, v) = (st.exp_avg.as_slice(), st.exp_avg_sq.as_slice());
        step(&c, p.value, p.grad, m, v, trust, step_size, apply);
        Ok(())
    }
}

/// Elements per block of LAMB's passes and norm partial sums: fixed, so
/// that the norms do not depend on the thread count.
const BLOCK: usize = crate::exec::CHUNK;

/// Values per run of pass 1's direction buffer (a multiple of [`LANES`]).
const SUB: usize = 4096;

/// Per-step constants of one LAMB parameter.
#[derive(Debug, Clone, Copy)]
struct LambConsts {
    b1: f32,
    beta3: f32,
    b2: f32,
    w2: f32,
    eps: f32,
    /// The decoupled decay's factor `1 - lr * wd`, when it applies.
    keep: Maybe<f32>,
    l2: Maybe<f32>,
    /// The pre-normalisation factor, when `pre_norm`.
    gscale: Maybe<f32>,
    /// Whether the trust ratio is used (not `adam`), so the norms are needed.
    norms: bool,
}

impl LambConsts {
    /// The Adam direction, plus `wd * p` in the L2 form.
    #[inline(always)]
    fn direction(&self, m: f32, v: f32, x: f32) -> f32 {
        let u = m * (1.0 / (v.sqrt() + self.eps));
        match self.l2.get() {
            Some(wd) => u + wd * x,
            None => u,
        }
    }

    #[inline(always)]
    fn grad(&self, g: f32) -> f32 {
        match self.gscale.get() {
            Some(s) => g * s,
            None => g,
        }
    }
}

/// Pass 1 over one block: decay, moments; returns the block's sums of
/// `p^2` and `u^2` (zero when the norms are not needed). Compiled for the
/// widest instruction set the CPU has (the values are the same either way).
fn moments(c: &LambConsts, x: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) -> (f64, f64) {
    simd!(avx512; fn(c: &LambConsts, x: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) -> (f64, f64) {
        moments_impl(c, x, g, m, v, add_sq2)
    })
}

/// [`moments`] with `sq` adding the squares of a run into the lanes: runs
/// of [`SUB`] elements are decayed (without decoupled decay p is only
/// read), their moments and directions computed, then `p^2` and `u^2` go
/// into [`LANES`] interleaved f64 accumulators (element `i` into lane
/// `i % LANES`), added in lane order at the end: a fixed order, so fixed
/// sums.
#[inline(always)]
fn moments_impl(
    c: &LambConsts,
    x: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    sq: impl Fn(&[f32], &[f32], &mut [f64; LANES], &mut [f64; LANES]),
) -> (f64, f64) {
    let n = x.len();
    let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
    let mut ps = [0.0f64; LANES];
    let mut us = [0.0f64; LANES];
    let mut buf = [0.0f32; SUB];
    let runs = x
        .chunks_mut(SUB)
        .zip(g.chunks(SUB))
        .zip(m.chunks_mut(SUB))
        .zip(v.chunks_mut(SUB));
    for (((x, g), m), v) in runs {
        let k = x.len();
        let (g, m, v, u) = (&g[..k], &mut m[..k], &mut v[..k], &mut buf[..k]);
        if let Some(keep) = c.keep.get() {
            for x in x.iter_mut() {
                *x *= keep;
            }
        }
        for ((((m, v), u), &g), &x) in m.iter_mut().zip(v.iter_mut()).zip(u.iter_mut()).zip(g).zip(&*x) {
            let g = c.grad(g);
            let mn = *m * c.b1 + c.beta3 * g;
            let vn = *v * c.b2 + c.w2 * g * g;
            *m = mn;
            *v = vn;
            *u = c.direction(mn, vn, x);
        }
        if c.norms {
            sq(x, u, &mut ps, &mut us);
        }
    }
    (lanes_sum(&ps), lanes_sum(&us))
}

/// Pass 2 over one block with the plain step, compiled for AVX2 when the
/// CPU has it (same values as [`step`] with `Plain`).
#[allow(clippy::too_many_arguments)]
fn step_plain(c: &LambConsts, x: &mut [f32], g: &[f32], m: &[f32], v: &[f32], trust: f32, step_size: f32) {
    simd!(avx2; fn(c: &LambConsts, x: &mut [f32], g: &[f32], m: &[f32], v: &[f32], trust: f32, step_size: f32) {
        step(c, x, g, m, v, trust, step_size, &mut Plain)
    })
}

/// Pass 2: the step of every element through `apply`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn step<A: Apply>(
    c: &LambConsts,
    x: &mut [f32],
    g: &[f32],
    m: &[f32],
    v: &[f32],
    trust: f32,
    step_size: f32,
    apply: &mut A,
) {
    let n = x.len();
    let (g, m, v) = (&g[..n], &m[..n], &v[..n]);
    for (((x, &g), &m), &v) in x.iter_mut().zip(g).zip(m).zip(v) {
        let g = c.grad(g);
        let u = c.direction(m, v, *x) * trust;
        apply.apply(x, g, step_size, u);
    }
}

impl OptimizerConfig for Lamb {
    const NAME: &'static str = "lamb";
    const REFERENCE: &'static str = "pytorch_optimizer.Lamb (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "You et al., Large Batch Optimization for Deep Learning: Training BERT in 76 minutes, ICLR 2020 (arXiv:1904.00962)";
    const SUMMARY: &'static str =
        "Adam-style update scaled per tensor by the trust ratio ||p|| / ||update||";

    fn suggested() -> serde_json::Value {
        serde_json::json!({"lr": 1e-2})
    }

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas),
            non_negative(weight_decay, max_grad_norm, eps))
    }
}

impl UpdateRule for Lamb {
    type State = LambState;
    const BLOCKED: bool = true;
    const EXPOSES_UPDATE: bool = true;

    /// One parameter on its own (the pre-normalisation sees only its gradient).
    fn update(&self, info: &StepInfo, p: &mut ParamMut<'_>, st: &mut LambState) -> Result<()> {
        let gscale = self.pre_norm_scale(std::iter::once(&*p.grad));
        self.update_param(info, p, st, gscale, Blocks::SEQUENTIAL)
    }

    /// The global gradient norm first (pre_norm), then every parameter
    /// through the shared per-parameter loop ([`run_blocked`]: parameters
    /// and blocks in parallel on the fast path); same values either way.
    fn update_all(
        &self,
        info: &StepInfo,
        params: &mut [ParamMut<'_>],
        states: &mut StateStore<LambState>,
    ) -> Option<Result<()>> {
        let gscale = self.pre_norm_scale(params.iter().map(|p| &*p.grad));
        Some(run_blocked(info, params, states, |p, st, blocks| {
            self.update_param(info, p, st, gscale, blocks)
        }))
    }

    fn update_with<A: Apply>(
        &self,
        info: &StepInfo,
        p: &mut ParamMut<'_>,
        st: &mut LambState,
        apply: &mut A,
    ) -> Result<()> {
        let gscale = self.pre_norm_scale(std::iter::once(&*p.grad));
        self.update_param_with(info, p, st, gscale, apply)
    }

    /// The global gradient norm first (pre_norm), then each parameter with
    /// its own mask, in parallel on the fast path.
    fn update_all_cautious(
        &self,
        info: &StepInfo,
        params: &mut [ParamMut<'_>],
        states: &mut StateStore<LambState>,
    ) -> Option<Result<()>> {
        let gscale = self.pre_norm_scale(params.iter().map(|p| &*p.grad));
        Some(crate::exec::cautious_per_param(info, params, states, |p, st, mask| {
            self.update_param_with(info, p, st, gscale, mask)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        crate::sqsum::test_values(n, seed, 6)
    }

    /// Pass 1 built for the CPU's widest instruction set (AVX-512 sums
    /// where available) gives the same bits as the portable loop (with and
    /// without decoupled decay, with and without the norms, L2 term and
    /// pre-normalisation, lengths with a remainder).
    #[test]
    fn dispatched_moments_equal_portable_moments() {
        for (wd, norms, l2, gscale) in [
            (0.0, true, None, None),
            (0.1, true, None, None),
            (0.1, false, None, None),
            (0.0, true, Some(0.1), Some(0.7)),
        ] {
            let c = LambConsts {
                b1: 0.9,
                beta3: 0.1,
                b2: 0.999,
                w2: (1.0 - 0.999f64) as f32,
                eps: 1e-6,
                keep: WeightDecay::new(wd, true, 1e-2).keep().into(),
                l2: l2.into(),
                gscale: gscale.into(),
                norms,
            };
            for n in [0, 1, 15, 16, 17, 100, 1025, 16384] {
                let g = values(n, 2);
                let mut a = (values(n, 1), values(n, 3), values(n, 4));
                a.2.iter_mut().for_each(|v| *v = v.abs());
                let mut b = a.clone();
                let portable = |x: &[f32], u: &[f32], px: &mut [f64; LANES], pu: &mut [f64; LANES]| {
                    crate::sqsum::add_sq_lanes(x, px);
                    crate::sqsum::add_sq_lanes(u, pu);
                };
                let sa = moments_impl(&c, &mut a.0, &g, &mut a.1, &mut a.2, portable);
                let sb = moments(&c, &mut b.0, &g, &mut b.1, &mut b.2);
                assert_eq!(
                    (sa.0.to_bits(), sa.1.to_bits()),
                    (sb.0.to_bits(), sb.1.to_bits())
                );
                assert_eq!(a, b, "n = {n}, wd = {wd}");
            }
        }
    }
}
