//! APOLLO: AdamW on a random low-rank projection of each matrix gradient,
//! applied as the full-rank gradient scaled by the norm ratio of the
//! low-rank Adam update to the low-rank gradient (an SGD-like update with
//! AdamW-like memory).
//!
//! **Reference:** `pytorch_optimizer.APOLLO` (pytorch-optimizer 4.1.0),
//! with `rank`, `update_proj_gap`, `scale` and `projection_type` given as
//! hyperparameters (the reference reads them from the parameter group), the
//! random projections drawn from seeded streams (see below).
//! **Paper:** Zhu, Zhang, Cong, Liu, Park, Chandra, Long, Pan, Wang & Lee,
//! "APOLLO: SGD-like Memory, AdamW-level Performance", MLSys 2025
//! (arXiv:2412.05270).
//!
//! **Which Apollo.** pytorch-optimizer 4.1.0 has two: `APOLLO` (this one,
//! Zhu et al. 2024) and `ApolloDQN` (Ma 2020, "Apollo: An Adaptive
//! Parameter-wise Diagonal Quasi-Newton Method", arXiv:2009.13586). The
//! registry name `apollo` means what the reference's
//! `load_optimizer('apollo')` returns, which is `APOLLO`;
//! `load_optimizer('apollodqn')` returns `ApolloDQN`, which is not in this
//! registry.
//!
//! Update rule, step t (`bc1 = 1 - beta1^t`, `bc2 = 1 - beta2^t`;
//! `s = lr sqrt(bc2) / bc1` with `correct_bias`, else `s = lr`):
//! ```text
//! g  <- -g                                          if maximize
//! g  <- g + weight_decay p                          if not weight_decouple
//! R  <- proj(g)                                     2-D parameters when rank is set; R = g otherwise
//! m  <- lerp(m, R, 1 - beta1)                       (in the projected shape)
//! v  <- beta2 v + (1 - beta2) R^2
//! N  <- m / (sqrt(v) + eps)
//! without projection:  u = N
//! with projection:
//!   f  = ||N|| / (||R|| + 1e-8)                     "tensor" (one number), or per
//!                                                   channel: column norms when the
//!                                                   projected matrix has fewer rows than
//!                                                   columns, row norms otherwise
//!   S  = R f,  n = ||S||
//!   from the second projected step on, with n' the previous step's n:
//!     c = n / (n' + 1e-8);  if c >= 1.01: S <- S / (c / 1.01), n <- n / (c / 1.01)
//!   u  = back(S sqrt(scale)) scale
//! p  <- p - s u
//! p  <- p (1 - weight_decay (fixed_decay ? 1 : s))  if weight_decouple
//! ```
//! (`scale` enters twice, as in the reference: `sqrt(scale)` before the
//! projection back and `scale` in it.) The projection of an `A x B`
//! gradient with the random `P` (`A x rank`) and `Q` (`rank x B`), drawn at
//! step 1 and at every step divisible by `update_proj_gap`:
//! ```text
//! "std", "random"   A >= B: R = g Q^T, back(R) = R Q;    A < B: R = P^T g, back(R) = P R
//! "reverse_std"     A >= B: R = P^T g, back(R) = P R;    A < B: R = g Q^T, back(R) = R Q
//! "right"           R = g Q^T, back(R) = R Q
//! "left"            R = P^T g, back(R) = P R
//! "full"            R = P^T g Q^T, back(R) = P R Q
//! ```
//! The entries of `P` and `Q` are standard normals divided by `sqrt(rank)`
//! (f32). Unlike GaLore's SVD, `rank` is not capped by the matrix's
//! dimensions (the reference draws `rank` columns whatever the shape). The
//! moments are kept across a refresh, as in the reference.
//!
//! Defaults: lr = 1e-2, betas = (0.9, 0.999), scale_type = "tensor",
//! weight_decay = 0, weight_decouple = true, fixed_decay = false,
//! correct_bias = true, eps = 1e-6, maximize = false; no projection unless
//! `rank` is set, and then `update_proj_gap`, `scale` and `projection_type`
//! are required (the reference raises a KeyError at the first step without
//! them); extension `seed` = 0. Validation as the reference: lr >= 0, betas
//! in [0, 1), weight_decay >= 0, eps >= 0; also update_proj_gap >= 1 (the
//! reference divides by it), scale finite, projection_type one of the six
//! and scale_type "tensor" or "channel" (the reference treats any other
//! string as "tensor").
//!
//! **Randomness (differs from the reference).** The reference draws `P`
//! and `Q` with `torch.randn` from torch's global generator (both at every
//! draw, whichever it uses). Here they come from SplitMix64
//! ([`crate::rng`]) streams keyed by `seed`, the step and the parameter's
//! name, as Kron's probes ([`super::kron::stream_key`]): `P` is the normals
//! (Box-Muller, [`SplitMix64::normal`](crate::rng::SplitMix64::normal),
//! rounded to f32, row-major) of `key(seed, t, name + "#left")`, `Q` those of
//! `key(seed, t, name + "#right")`, each divided by `sqrt(rank)` in f32.
//! Runs are reproducible from the seed whatever the thread count; the drawn
//! projection is part of the state (buffer `ortho`: `P`, `Q`, or `P` then
//! `Q` for "full"), so a resumed run continues with it. The golden cases
//! were made by running the reference with these same draws in place of its
//! own (the generator re-binds `torch.randn` inside
//! `pytorch_optimizer.optimizer.utils.galore`). The projection products run
//! in f32 on [`crate::gemm`]; the norms are accumulated in f64 and rounded.

// Index loops over several arrays at once, as in the reference's formulas.
#![allow(clippy::needless_range_loop)]
use serde::{Deserialize, Serialize};

use super::galore::{adam_ratio, apply, project, project_back, side, ProjectionType, Side};
use super::kron::stream_key;
use crate::error::{Error, Result};
use crate::math::{bias_correction, descent_sign, l2_norm};
use crate::rng;
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};
use crate::validate as v;

crate::param_state! {
    /// APOLLO state: Adam's moments (in the projected shape for projected
    /// parameters), the random projection (`P`, `Q`, or `P` then `Q` for
    /// "full") and the previous norm of the scaled gradient (one value,
    /// from the first projected step on).
    pub struct ApolloState { ; unsized: exp_avg, exp_avg_sq, ortho, scaling_grad }
}

/// How APOLLO scales the projected-back gradient (`scale_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleType {
    /// One factor for the whole matrix.
    Tensor,
    /// One factor per row or column of the projected matrix.
    Channel,
}

/// Hyperparameters of `pytorch_optimizer.APOLLO`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Apollo {
    /// Learning rate (default 1e-2).
    pub lr: f64,
    /// Adam's decay rates (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Scaling factor per tensor or per channel (default "tensor").
    pub scale_type: ScaleType,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled decay after the update (default true); false: L2 on the gradient.
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by the step size (default false).
    pub fixed_decay: bool,
    /// Bias-corrected step size (default true).
    pub correct_bias: bool,
    /// Added to Adam's denominator (default 1e-6).
    pub eps: f64,
    /// Projection rank; unset: no projection (default unset).
    pub rank: Option<u64>,
    /// Steps between random projections (required with rank).
    pub update_proj_gap: Option<u64>,
    /// Factor of the update (required with rank; enters as sqrt(scale) * scale).
    pub scale: Option<f64>,
    /// Which side(s) to project (required with rank).
    pub projection_type: Option<ProjectionType>,
    /// Maximize the objective (default false).
    pub maximize: bool,
    /// Seed of the random projections (extension; default 0).
    pub seed: u64,
}

impl Default for Apollo {
    fn default() -> Self {
        Apollo {
            lr: 1e-2,
            betas: [0.9, 0.999],
            scale_type: ScaleType::Tensor,
            weight_decay: 0.0,
            weight_decouple: true,
            fixed_decay: false,
            correct_bias: true,
            eps: 1e-6,
            rank: None,
            update_proj_gap: None,
            scale: None,
            projection_type: None,
            maximize: false,
            seed: 0,
        }
    }
}

impl OptimizerConfig for Apollo {
    const NAME: &'static str = "apollo";
    const REFERENCE: &'static str =
        "pytorch_optimizer.APOLLO (pytorch-optimizer 4.1.0), projections from seeded SplitMix64 streams";
    const PAPER: &'static str =
        "Zhu et al., APOLLO: SGD-like Memory, AdamW-level Performance, MLSys 2025 (arXiv:2412.05270)";
    const SUMMARY: &'static str =
        "AdamW on a random low-rank projection, applied as the gradient scaled by the low-rank update's norm ratio";

    fn validate(&self) -> Result<()> {
        v::non_negative(Self::NAME, "lr", self.lr)?;
        v::betas(Self::NAME, "betas", self.betas)?;
        v::non_negative(Self::NAME, "weight_decay", self.weight_decay)?;
        v::non_negative(Self::NAME, "eps", self.eps)?;
        super::galore::validate_projection(
            Self::NAME,
            self.rank,
            self.update_proj_gap,
            self.scale,
            self.projection_type,
        )
    }
}

/// `a * b` for element counts, an error naming the parameter on overflow.
fn count(name: &str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| {
        Error::Shape(format!(
            "apollo: the projection of '{name}' would hold {a} x {b} values"
        ))
    })
}

/// `n` normals of the stream `key(seed, t, name + suffix)`, each divided by
/// `root` in f32, appended to `out`.
fn draw(out: &mut Vec<f32>, seed: u64, t: u64, name: &str, suffix: &str, n: usize, root: f32) {
    let start = out.len();
    out.resize(start + n, 0.0);
    let drawn = &mut out[start..];
    rng::normals_f32(stream_key(seed, t, &format!("{name}{suffix}")), drawn);
    drawn.iter_mut().for_each(|x| *x /= root);
}

impl Apollo {
    /// The scaled low-rank gradient `S` (see the module docs), limited
    /// against the previous step's norm kept in `prev`.
    fn scaled(
        &self,
        r_grad: &[f32],
        norm_grad: &[f32],
        rr: usize,
        rc: usize,
        prev: &mut StateTensor,
        name: &str,
    ) -> Result<Vec<f32>> {
        const TINY: f32 = 1e-8;
        let mut s = vec![0.0f32; r_grad.len()];
        match self.scale_type {
            ScaleType::Tensor => {
                let f = l2_norm(norm_grad) / (l2_norm(r_grad) + TINY);
                for (s, &g) in s.iter_mut().zip(r_grad) {
                    *s = g * f;
                }
            }
            ScaleType::Channel if rr < rc => {
                // Column norms (torch.norm(dim=0)), one factor per column.
                for j in 0..rc {
                    let (mut a, mut b) = (0.0f64, 0.0f64);
                    for i in 0..rr {
                        let (x, y) = (norm_grad[i * rc + j] as f64, r_grad[i * rc + j] as f64);
                        a += x * x;
                        b += y * y;
                    }
                    let f = a.sqrt() as f32 / (b.sqrt() as f32 + TINY);
                    for i in 0..rr {
                        s[i * rc + j] = r_grad[i * rc + j] * f;
                    }
                }
            }
            ScaleType::Channel => {
                // Row norms (torch.norm(dim=1)), one factor per row.
                for i in 0..rr {
                    let row = i * rc..(i + 1) * rc;
                    let f =
                        l2_norm(&norm_grad[row.clone()]) / (l2_norm(&r_grad[row.clone()]) + TINY);
                    for (s, &g) in s[row.clone()].iter_mut().zip(&r_grad[row]) {
                        *s = g * f;
                    }
                }
            }
        }
        let mut n = l2_norm(&s);
        if prev.is_allocated() {
            let last = prev.get_or_fill(name, "scaling_grad", 1, 0.0)?[0];
            let c = n / (last + TINY);
            // Python's max(c, 1.01): c unless 1.01 > c (so a NaN c stays).
            if c.is_nan() || c >= 1.01f32 {
                let limiter = c / 1.01f32;
                s.iter_mut().for_each(|x| *x /= limiter);
                n /= limiter;
            }
        }
        prev.get_or_fill(name, "scaling_grad", 1, 0.0)?[0] = n;
        Ok(s)
    }
}

impl UpdateRule for Apollo {
    type State = ApolloState;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut ApolloState) -> Result<()> {
        let n = p.numel();
        st.step += 1;
        let t = st.step;
        let [beta1, beta2] = self.betas;
        let step_size = if self.correct_bias {
            self.lr * (bias_correction(beta2, t).sqrt() / bias_correction(beta1, t))
        } else {
            self.lr
        };
        let sgn = descent_sign(self.maximize);
        let mut g: Vec<f32> = p.grad.iter().map(|&g| sgn * g).collect();
        if !self.weight_decouple && self.weight_decay > 0.0 {
            let wd = self.weight_decay as f32;
            for (g, &x) in g.iter_mut().zip(p.value.iter()) {
                *g += wd * x;
            }
        }

        let proj = match (self.rank, self.projection_type, p.shape) {
            (Some(rank), Some(pt), &[rows, cols]) if rows * cols == n => {
                let k = usize::try_from(rank).map_err(|_| {
                    Error::Shape(format!("apollo: rank {rank} does not fit this platform"))
                })?;
                Some((k, side(pt, rows, cols), rows, cols))
            }
            _ => None,
        };
        // The low-rank gradient and, for the way back, its shape and the
        // projection's.
        let (r_grad, back) = match proj {
            None => (g, None),
            Some((k, s, rows, cols)) => {
                let (plen, qlen) = match s {
                    Side::Right => (0, count(p.name, k, cols)?),
                    Side::Left => (count(p.name, rows, k)?, 0),
                    Side::Full => (count(p.name, rows, k)?, count(p.name, k, cols)?),
                };
                let total = plen.checked_add(qlen).ok_or_else(|| {
                    Error::Shape(format!(
                        "apollo: the projection of '{}' is too large",
                        p.name
                    ))
                })?;
                let gap = self.update_proj_gap.unwrap_or(1).max(1);
                if !st.ortho.is_allocated() || t.is_multiple_of(gap) {
                    let mut ortho: Vec<f32> = Vec::new();
                    ortho.try_reserve_exact(total).map_err(|e| {
                        Error::Shape(format!(
                            "apollo: the projection of '{}' ({total} values): {e}",
                            p.name
                        ))
                    })?;
                    let root = (k as f64).sqrt() as f32;
                    draw(&mut ortho, self.seed, t, p.name, "#left", plen, root);
                    draw(&mut ortho, self.seed, t, p.name, "#right", qlen, root);
                    st.ortho = StateTensor::from_slice(&ortho);
                }
                let ortho = st.ortho.get_or_fill(p.name, "ortho", total, 0.0)?;
                let (r, rr, rc) = project(&g, ortho, s, rows, cols, k)?;
                (r, Some((s, rows, cols, k, rr, rc)))
            }
        };
        let norm_grad = adam_ratio(
            &mut st.exp_avg,
            &mut st.exp_avg_sq,
            p.name,
            &r_grad,
            self.betas,
            self.eps,
        )?;
        let u = match back {
            None => norm_grad,
            Some((s, rows, cols, k, rr, rc)) => {
                let mut low =
                    self.scaled(&r_grad, &norm_grad, rr, rc, &mut st.scaling_grad, p.name)?;
                let scale = self.scale.unwrap_or(1.0);
                let root = scale.sqrt() as f32;
                low.iter_mut().for_each(|x| *x *= root);
                let mut u = project_back(&low, st.ortho.as_slice(), s, rows, cols, k)?;
                let scale = scale as f32;
                u.iter_mut().for_each(|x| *x *= scale);
                u
            }
        };
        let alpha = (-step_size) as f32;
        let decay = self.weight_decouple && self.weight_decay != 0.0;
        let keep =
            (1.0 - self.weight_decay * if self.fixed_decay { 1.0 } else { step_size }) as f32;
        apply(p.value, &u, alpha, decay, keep);
        Ok(())
    }
}
