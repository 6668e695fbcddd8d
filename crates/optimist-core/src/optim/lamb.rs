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
//! Each parameter takes two passes: the first updates the moments and the
//! decay and accumulates both norms, the second recomputes `u` from the new
//! moments (same operations, same bits) and applies the step. On CPUs with
//! AVX-512F, pass 1 without pre-normalisation or L2 term runs as AVX-512
//! intrinsics with the same operations and lane sums (same values, tested
//! bit for bit against the portable loop); without decoupled decay (the
//! default weight_decay = 0) it then reads p without writing it back.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::rule::{Apply, Plain};
use crate::error::Result;
use crate::math::{bias_correction, WeightDecay};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::sqsum::{lanes_sum, LANES};
use crate::state::StateStore;
use crate::tensor::{ParamMut, StateTensor};
use crate::validate as v;

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

    /// One parameter with its gradients scaled by `gscale`: a pass that
    /// updates the moments and sums the norms, the trust ratio, a pass that
    /// steps. Both passes go over fixed blocks of [`BLOCK`] elements, in
    /// parallel on the current thread pool when `parallel` (and called from
    /// one); the norms are sums of per-block partial sums added in block
    /// order, so every value is the same with or without threads.
    fn update_param<A: Apply>(
        &self,
        info: &StepInfo,
        p: &mut ParamMut<'_>,
        st: &mut LambState,
        gscale: f32,
        apply: &mut A,
        parallel: bool,
    ) -> Result<()> {
        let n = p.numel();
        if !st.exp_avg.is_allocated() {
            st.exp_avg = StateTensor::zeros(n);
            st.exp_avg_sq = StateTensor::zeros(n);
        }
        st.step += 1;
        let [beta1, beta2] = self.betas;
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
            // Decoupled decay scales p; the L2 form adds wd * p to the update.
            decay: WeightDecay::new(self.weight_decay, true, self.lr),
            decouple: self.weight_decouple,
            l2: if !self.weight_decouple && self.weight_decay > 0.0 {
                Some(self.weight_decay as f32)
            } else {
                None
            },
            gscale: if self.pre_norm { Some(gscale) } else { None },
            norms: !self.adam,
        };
        let step_size = (self.lr / bias_correction(beta1, info.step)) as f32;
        let parallel = parallel && n > BLOCK && rayon::current_thread_index().is_some();

        let m = st.exp_avg.as_mut_slice();
        let v = st.exp_avg_sq.as_mut_slice();
        let x = &mut *p.value;
        let g = &*p.grad;
        // Pass 1: decay, moments, per-block norms.
        let partials: Vec<(f64, f64)> = if parallel {
            x.par_chunks_mut(BLOCK)
                .zip(g.par_chunks(BLOCK))
                .zip(m.par_chunks_mut(BLOCK))
                .zip(v.par_chunks_mut(BLOCK))
                .with_max_len(1)
                .map(|(((x, g), m), v)| c.moments(x, g, m, v))
                .collect()
        } else {
            x.chunks_mut(BLOCK)
                .zip(g.chunks(BLOCK))
                .zip(m.chunks_mut(BLOCK))
                .zip(v.chunks_mut(BLOCK))
                .map(|(((x, g), m), v)| c.moments(x, g, m, v))
                .collect()
        };
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
        // Pass 2: the step.
        if parallel {
            x.par_chunks_mut(BLOCK)
                .zip(g.par_chunks(BLOCK))
                .zip(m.par_chunks(BLOCK))
                .zip(v.par_chunks(BLOCK))
                .with_max_len(1)
                .for_each(|(((x, g), m), v)| c.step_plain(x, g, m, v, trust, step_size));
        } else {
            for (((x, g), m), v) in x
                .chunks_mut(BLOCK)
                .zip(g.chunks(BLOCK))
                .zip(m.chunks(BLOCK))
                .zip(v.chunks(BLOCK))
            {
                c.step(x, g, m, v, trust, step_size, apply);
            }
        }
        Ok(())
    }
}

/// Elements per block of LAMB's passes and norm partial sums: fixed, so
/// that the norms do not depend on the thread count.
const BLOCK: usize = crate::exec::CHUNK;

/// Per-step constants of one LAMB parameter.
#[derive(Debug, Clone, Copy)]
struct LambConsts {
    b1: f32,
    beta3: f32,
    b2: f32,
    w2: f32,
    eps: f32,
    decay: WeightDecay,
    decouple: bool,
    l2: Option<f32>,
    /// The pre-normalisation factor, when `pre_norm`.
    gscale: Option<f32>,
    /// Whether the trust ratio is used (not `adam`), so the norms are needed.
    norms: bool,
}

impl LambConsts {
    /// The Adam direction, plus `wd * p` in the L2 form.
    #[inline(always)]
    fn direction(&self, m: f32, v: f32, x: f32) -> f32 {
        let u = m * (1.0 / (v.sqrt() + self.eps));
        match self.l2 {
            Some(wd) => u + wd * x,
            None => u,
        }
    }

    #[inline(always)]
    fn grad(&self, g: f32) -> f32 {
        match self.gscale {
            Some(s) => g * s,
            None => g,
        }
    }

    /// Pass 1 over one block: decay, moments; returns the block's sums of
    /// `p^2` and `u^2` (zero when the norms are not needed). Compiled for
    /// AVX2 when the CPU has it (the values are the same either way).
    fn moments(&self, x: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) -> (f64, f64) {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::cpu::has_avx512() && self.gscale.is_none() && self.l2.is_none() {
                let keep = match (self.decouple, self.decay) {
                    (true, WeightDecay::Decoupled(k)) => Some(Some(k)),
                    (_, WeightDecay::Off) => Some(None),
                    _ => None,
                };
                if let Some(keep) = keep {
                    // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (checked at run time).
                    return unsafe { self.moments_x512(x, g, m, v, keep) };
                }
            }
            if crate::cpu::has_avx2() {
                // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
                return unsafe { self.moments_avx2(x, g, m, v) };
            }
        }
        self.moments_impl(x, g, m, v)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn moments_avx2(
        &self,
        x: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) -> (f64, f64) {
        self.moments_impl(x, g, m, v)
    }

    /// [`LambConsts::moments_impl`] without pre-normalisation and L2 term,
    /// written with AVX-512 intrinsics: the same operations on each element
    /// (products rounded on their own, no FMA) and the same lanes (element
    /// `i` into lane `i % LANES`, in order), so the same values. With no
    /// decoupled decay (`keep` None, the default `weight_decay = 0`) p is
    /// read but not written, which saves a quarter of the pass's writes.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,avx512f")]
    fn moments_x512(
        &self,
        x: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        keep: Option<f32>,
    ) -> (f64, f64) {
        use std::arch::x86_64::*;
        const W: usize = 2 * LANES;
        let n = x.len();
        let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
        let mut ps = [0.0f64; LANES];
        let mut us = [0.0f64; LANES];
        let full = n - n % W;
        // SAFETY: unaligned loads and stores of 16 f32 values at `i < full`
        // (so `i + 16 <= n`, within every slice) and of 8 f64 lane values.
        unsafe {
            let (b1, beta3) = (_mm512_set1_ps(self.b1), _mm512_set1_ps(self.beta3));
            let (b2, w2) = (_mm512_set1_ps(self.b2), _mm512_set1_ps(self.w2));
            let (eps, one) = (_mm512_set1_ps(self.eps), _mm512_set1_ps(1.0));
            let kv = _mm512_set1_ps(keep.unwrap_or(1.0));
            let mut pacc = _mm512_setzero_pd();
            let mut uacc = _mm512_setzero_pd();
            let sq_in = |acc: __m512d, a: __m512| {
                let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(a));
                let hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                    _mm512_castps_pd(a),
                )));
                _mm512_add_pd(
                    _mm512_add_pd(acc, _mm512_mul_pd(lo, lo)),
                    _mm512_mul_pd(hi, hi),
                )
            };
            for i in (0..full).step_by(W) {
                let mut xv = _mm512_loadu_ps(x.as_ptr().add(i));
                let gv = _mm512_loadu_ps(g.as_ptr().add(i));
                let mv = _mm512_loadu_ps(m.as_ptr().add(i));
                let vv = _mm512_loadu_ps(v.as_ptr().add(i));
                if keep.is_some() {
                    xv = _mm512_mul_ps(xv, kv);
                    _mm512_storeu_ps(x.as_mut_ptr().add(i), xv);
                }
                let mv = _mm512_add_ps(_mm512_mul_ps(mv, b1), _mm512_mul_ps(beta3, gv));
                let vv = _mm512_add_ps(
                    _mm512_mul_ps(vv, b2),
                    _mm512_mul_ps(_mm512_mul_ps(w2, gv), gv),
                );
                _mm512_storeu_ps(m.as_mut_ptr().add(i), mv);
                _mm512_storeu_ps(v.as_mut_ptr().add(i), vv);
                if self.norms {
                    let den = _mm512_add_ps(_mm512_sqrt_ps(vv), eps);
                    let u = _mm512_mul_ps(mv, _mm512_div_ps(one, den));
                    pacc = sq_in(pacc, xv);
                    uacc = sq_in(uacc, u);
                }
            }
            _mm512_storeu_pd(ps.as_mut_ptr(), pacc);
            _mm512_storeu_pd(us.as_mut_ptr(), uacc);
        }
        for i in full..n {
            let gi = g[i];
            let xi = match keep {
                Some(k) => x[i] * k,
                None => x[i],
            };
            x[i] = xi;
            m[i] = m[i] * self.b1 + self.beta3 * gi;
            v[i] = v[i] * self.b2 + self.w2 * gi * gi;
            if self.norms {
                let u = self.direction(m[i], v[i], xi);
                ps[i % LANES] += xi as f64 * xi as f64;
                us[i % LANES] += u as f64 * u as f64;
            }
        }
        (lanes_sum(&ps), lanes_sum(&us))
    }

    /// The sums run in [`LANES`] interleaved f64 accumulators (element `i`
    /// into lane `i % LANES`), added in lane order at the end, so that the
    /// loop vectorizes; the order is fixed, so the sums are too.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    fn moments_impl(&self, x: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) -> (f64, f64) {
        let n = x.len();
        let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
        let mut ps = [0.0f64; LANES];
        let mut us = [0.0f64; LANES];
        // One element: the new (p, m, v) and the direction u.
        let element = |x: f32, g: f32, m: f32, v: f32| {
            let g = self.grad(g);
            let x = if self.decouple {
                self.decay.apply_to(x, g).0
            } else {
                x
            };
            let m = m * self.b1 + self.beta3 * g;
            let v = v * self.b2 + self.w2 * g * g;
            (x, m, v, self.direction(m, v, x))
        };
        let (xc, xr) = x.as_chunks_mut::<LANES>();
        let (gc, gr) = g.as_chunks::<LANES>();
        let (mc, mr) = m.as_chunks_mut::<LANES>();
        let (vc, vr) = v.as_chunks_mut::<LANES>();
        for (((x, g), m), v) in xc.iter_mut().zip(gc).zip(mc.iter_mut()).zip(vc.iter_mut()) {
            let mut u = [0.0f32; LANES];
            for l in 0..LANES {
                (x[l], m[l], v[l], u[l]) = element(x[l], g[l], m[l], v[l]);
            }
            if self.norms {
                for l in 0..LANES {
                    ps[l] += x[l] as f64 * x[l] as f64;
                    us[l] += u[l] as f64 * u[l] as f64;
                }
            }
        }
        for (l, (((x, &g), m), v)) in xr
            .iter_mut()
            .zip(gr)
            .zip(mr.iter_mut())
            .zip(vr.iter_mut())
            .enumerate()
        {
            let u;
            (*x, *m, *v, u) = element(*x, g, *m, *v);
            if self.norms {
                ps[l] += *x as f64 * *x as f64;
                us[l] += u as f64 * u as f64;
            }
        }
        let (mut p_sq, mut u_sq) = (0.0f64, 0.0f64);
        for l in 0..LANES {
            p_sq += ps[l];
            u_sq += us[l];
        }
        (p_sq, u_sq)
    }

    /// Pass 2 over one block with the plain step, compiled for AVX2 when
    /// the CPU has it (same values as [`LambConsts::step`] with `Plain`).
    #[allow(clippy::too_many_arguments)]
    fn step_plain(
        &self,
        x: &mut [f32],
        g: &[f32],
        m: &[f32],
        v: &[f32],
        trust: f32,
        step_size: f32,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::cpu::has_avx2() {
                // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
                unsafe { self.step_avx2(x, g, m, v, trust, step_size) };
                return;
            }
        }
        self.step(x, g, m, v, trust, step_size, &mut Plain)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn step_avx2(
        &self,
        x: &mut [f32],
        g: &[f32],
        m: &[f32],
        v: &[f32],
        trust: f32,
        step_size: f32,
    ) {
        self.step(x, g, m, v, trust, step_size, &mut Plain)
    }

    /// Pass 2 over one block: the step.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn step<A: Apply>(
        &self,
        x: &mut [f32],
        g: &[f32],
        m: &[f32],
        v: &[f32],
        trust: f32,
        step_size: f32,
        apply: &mut A,
    ) {
        for (((x, &g), &m), &v) in x.iter_mut().zip(g).zip(m).zip(v) {
            let g = self.grad(g);
            let u = self.direction(m, v, *x) * trust;
            apply.apply(x, g, step_size, u);
        }
    }
}

impl OptimizerConfig for Lamb {
    const NAME: &'static str = "lamb";
    const REFERENCE: &'static str = "pytorch_optimizer.Lamb (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "You et al., Large Batch Optimization for Deep Learning: Training BERT in 76 minutes, ICLR 2020 (arXiv:1904.00962)";
    const SUMMARY: &'static str =
        "Adam-style update scaled per tensor by the trust ratio ||p|| / ||update||";

    fn validate(&self) -> Result<()> {
        v::non_negative(Self::NAME, "lr", self.lr)?;
        v::betas(Self::NAME, self.betas)?;
        v::non_negative(Self::NAME, "weight_decay", self.weight_decay)?;
        v::non_negative(Self::NAME, "max_grad_norm", self.max_grad_norm)?;
        v::non_negative(Self::NAME, "eps", self.eps)
    }
}

impl UpdateRule for Lamb {
    type State = LambState;
    const EXPOSES_UPDATE: bool = true;

    /// One parameter on its own (the pre-normalisation sees only its gradient).
    fn update(&self, info: &StepInfo, p: &mut ParamMut<'_>, st: &mut LambState) -> Result<()> {
        self.update_with(info, p, st, &mut Plain)
    }

    /// The fast path: the global gradient norm first (pre_norm), then the
    /// parameters in parallel, each with its passes split into blocks on the
    /// thread pool (see `update_param`); same values as the simple path.
    fn update_all(
        &self,
        info: &StepInfo,
        params: &mut [ParamMut<'_>],
        states: &mut StateStore<LambState>,
    ) -> Option<Result<()>> {
        Some(self.update_params(info, params, states))
    }

    fn update_with<A: Apply>(
        &self,
        info: &StepInfo,
        p: &mut ParamMut<'_>,
        st: &mut LambState,
        apply: &mut A,
    ) -> Result<()> {
        let gscale = self.pre_norm_scale(std::iter::once(&*p.grad));
        self.update_param(info, p, st, gscale, apply, false)
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
            self.update_param(info, p, st, gscale, mask, false)
        }))
    }
}

impl Lamb {
    /// Every parameter's step after the global gradient norm (pre_norm):
    /// in parallel over the parameters on the fast path, one by one on the
    /// simple path; the same values either way.
    fn update_params(
        &self,
        info: &StepInfo,
        params: &mut [ParamMut<'_>],
        states: &mut StateStore<LambState>,
    ) -> Result<()> {
        let gscale = self.pre_norm_scale(params.iter().map(|p| &*p.grad));
        if !info.exec.fused || rayon::current_thread_index().is_none() {
            for p in params.iter_mut() {
                let st = states.get(p.name, p.numel())?;
                self.update_param(info, p, st, gscale, &mut Plain, false)?;
            }
            return Ok(());
        }
        let keys: Vec<(&str, usize)> = params.iter().map(|p| (p.name, p.numel())).collect();
        let sts = states.get_many(&keys)?;
        let results: Vec<Result<()>> = params
            .par_iter_mut()
            .zip(sts)
            .with_max_len(1)
            .map(|(p, st)| self.update_param(info, p, st, gscale, &mut Plain, true))
            .collect();
        results.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        crate::sqsum::test_values(n, seed, 6)
    }

    /// The AVX-512 pass 1 gives the same bits as the portable one (with and
    /// without decoupled decay, with and without the norms, lengths with a
    /// remainder).
    #[test]
    fn avx512_moments_equal_portable_moments() {
        #[cfg(target_arch = "x86_64")]
        {
            if !crate::cpu::has_avx512() {
                return;
            }
            for (wd, norms) in [(0.0, true), (0.1, true), (0.1, false)] {
                let c = LambConsts {
                    b1: 0.9,
                    beta3: 0.1,
                    b2: 0.999,
                    w2: (1.0 - 0.999f64) as f32,
                    eps: 1e-6,
                    decay: WeightDecay::new(wd, true, 1e-2),
                    decouple: true,
                    l2: None,
                    gscale: None,
                    norms,
                };
                let keep = match c.decay {
                    WeightDecay::Decoupled(k) => Some(k),
                    _ => None,
                };
                for n in [0, 1, 15, 16, 17, 100, 16384] {
                    let g = values(n, 2);
                    let mut a = (values(n, 1), values(n, 3), values(n, 4));
                    a.2.iter_mut().for_each(|v| *v = v.abs());
                    let mut b = a.clone();
                    let sa = c.moments_impl(&mut a.0, &g, &mut a.1, &mut a.2);
                    // SAFETY: the CPU supports AVX-512F (checked above).
                    let sb = unsafe { c.moments_x512(&mut b.0, &g, &mut b.1, &mut b.2, keep) };
                    assert_eq!(
                        (sa.0.to_bits(), sa.1.to_bits()),
                        (sb.0.to_bits(), sb.1.to_bits())
                    );
                    assert_eq!(a, b, "n = {n}, wd = {wd}");
                }
            }
        }
    }
}
