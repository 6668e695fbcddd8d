//! GaLore: Adam on a low-rank projection of each matrix gradient, the
//! projection taken from the gradient's SVD every `update_proj_gap` steps.
//!
//! **Reference:** `pytorch_optimizer.GaLore` (pytorch-optimizer 4.1.0), with
//! `rank`, `update_proj_gap`, `scale` and `projection_type` given as
//! hyperparameters (the reference reads them from the parameter group).
//! **Paper:** Zhao, Zhang, Chen, Wang, Anandkumar & Tian, "GaLore:
//! Memory-Efficient LLM Training by Gradient Low-Rank Projection", ICML 2024
//! (arXiv:2403.03507).
//!
//! Update rule, step t (`bc1 = 1 - beta1^t`, `bc2 = 1 - beta2^t`):
//! ```text
//! g  <- -g                                          if maximize
//! R  <- proj(g)                                     2-D parameters when rank is set; R = g otherwise
//! m  <- lerp(m, R, 1 - beta1)                       (in the projected shape)
//! v  <- beta2 v + (1 - beta2) R^2
//! u  <- back(m / (sqrt(v) + eps)) * scale           (u = m / (sqrt(v) + eps) without projection)
//! p  <- p - lr sqrt(bc2) / bc1 u
//! p  <- p (1 - lr weight_decay)
//! ```
//! The projection of an `A x B` gradient, with `U S V^T` its thin SVD
//! (taken at step 1 and at every step divisible by `update_proj_gap`),
//! `P = U[:, :rank]`, `Q = V^T[:rank, :]`:
//! ```text
//! "std", "random"   A >= B: R = g Q^T, back(R) = R Q;    A < B: R = P^T g, back(R) = P R
//! "reverse_std"     A >= B: R = P^T g, back(R) = P R;    A < B: R = g Q^T, back(R) = R Q
//! "right"           R = g Q^T, back(R) = R Q
//! "left"            R = P^T g, back(R) = P R
//! "full"            R = P^T g Q^T, back(R) = P R Q
//! ```
//! (`random` is `std`: the reference builds it from the SVD too.)
//!
//! Defaults: lr = 1e-3, betas = (0.9, 0.999), weight_decay = 0,
//! eps = 1e-6, maximize = false; no projection unless `rank` is set, and
//! then `update_proj_gap`, `scale` and `projection_type` are required (the
//! reference raises a KeyError at the first step without them).
//! Validation as the reference: lr >= 0, betas in [0, 1),
//! weight_decay >= 0, eps >= 0; also update_proj_gap >= 1 (the reference
//! divides by it) and projection_type one of the six.
//!
//! **SVD.** The reference runs `torch.linalg.svd` in f32; here the one-sided
//! Jacobi SVD of [`crate::linalg`] runs in f64 and is rounded. Each singular
//! vector enters twice (projection and back), and `v` holds squares, so its
//! sign does not matter as long as the moments and the projection belong
//! together; after a refresh the moments, kept from the old projection, are
//! combined with the new one, as in the reference (a sign that LAPACK picks
//! differently from this SVD then gives a different update: the golden
//! cases refresh only where that cannot happen). The projection products
//! run in f32 on [`crate::gemm`].


// Index loops over several arrays at once, as in the reference's formulas.
#![allow(clippy::needless_range_loop)]
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gemm::{gemm, View};
use crate::linalg;
use crate::math::{bias_correction, descent_sign, Ema};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};
use crate::validate as v;

crate::param_state! {
    /// GaLore state: Adam's moments (in the projected shape for projected
    /// parameters) and the projection (`P`, `Q`, or `P` then `Q` for "full").
    pub struct GaLoreState { ; unsized: exp_avg, exp_avg_sq, ortho }
}

/// Which side(s) GaLore projects (`projection_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectionType {
    /// Right for tall (or square) matrices, left for wide ones.
    Std,
    /// Left for tall (or square) matrices, right for wide ones.
    ReverseStd,
    /// Always right: `g Q^T`.
    Right,
    /// Always left: `P^T g`.
    Left,
    /// Both sides: `P^T g Q^T`.
    Full,
    /// As `Std` (the reference builds it from the SVD as well).
    Random,
}

/// Hyperparameters of `pytorch_optimizer.GaLore`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GaLore {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Adam's decay rates (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Decoupled weight decay, applied after the update (default 0).
    pub weight_decay: f64,
    /// Added to Adam's denominator (default 1e-6).
    pub eps: f64,
    /// Projection rank; unset: no projection (default unset).
    pub rank: Option<u64>,
    /// Steps between SVDs (required with rank).
    pub update_proj_gap: Option<u64>,
    /// Factor of the projected-back update (required with rank).
    pub scale: Option<f64>,
    /// Which side(s) to project (required with rank).
    pub projection_type: Option<ProjectionType>,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for GaLore {
    fn default() -> Self {
        GaLore {
            lr: 1e-3,
            betas: [0.9, 0.999],
            weight_decay: 0.0,
            eps: 1e-6,
            rank: None,
            update_proj_gap: None,
            scale: None,
            projection_type: None,
            maximize: false,
        }
    }
}

impl OptimizerConfig for GaLore {
    const NAME: &'static str = "galore";
    const REFERENCE: &'static str = "pytorch_optimizer.GaLore (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Zhao et al., GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection, ICML 2024 (arXiv:2403.03507)";
    const SUMMARY: &'static str =
        "Adam on an SVD low-rank projection of each matrix gradient, refreshed every update_proj_gap steps";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), non_negative(weight_decay, eps))?;
        validate_projection(
            Self::NAME,
            self.rank,
            self.update_proj_gap,
            self.scale,
            self.projection_type,
        )
    }
}

/// The projection of one matrix (shared with APOLLO, `super::apollo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// `R = g Q^T` (`Q`: r x B).
    Right,
    /// `R = P^T g` (`P`: A x r).
    Left,
    /// `R = P^T g Q^T`.
    Full,
}

/// The projection to undo: side, rows, cols and rank (none: not projected).
type Back = Option<(Side, usize, usize, usize)>;

pub(crate) fn side(t: ProjectionType, rows: usize, cols: usize) -> Side {
    let tall = rows >= cols;
    match t {
        ProjectionType::Std | ProjectionType::Random => {
            if tall {
                Side::Right
            } else {
                Side::Left
            }
        }
        ProjectionType::ReverseStd => {
            if tall {
                Side::Left
            } else {
                Side::Right
            }
        }
        ProjectionType::Right => Side::Right,
        ProjectionType::Left => Side::Left,
        ProjectionType::Full => Side::Full,
    }
}

/// `c = a b` (row-major, f32 GEMM).
pub(crate) fn mm(a: View<'_>, b: View<'_>, m: usize, n: usize) -> Result<Vec<f32>> {
    let mut c = vec![0.0f32; m * n];
    gemm(1.0, a, b, 0.0, &mut c, false)?;
    Ok(c)
}

/// The projection hyperparameters' checks (shared with APOLLO,
/// `super::apollo`): with `rank` set, `update_proj_gap`, `scale` and
/// `projection_type` are required (the reference reads them from the
/// group); `update_proj_gap >= 1` (the reference divides by it) and `scale`
/// finite.
pub(crate) fn validate_projection(
    name: &'static str,
    rank: Option<u64>,
    update_proj_gap: Option<u64>,
    scale: Option<f64>,
    projection_type: Option<ProjectionType>,
) -> Result<()> {
    if rank.is_some() {
        for (field, missing) in [
            ("update_proj_gap", update_proj_gap.is_none()),
            ("scale", scale.is_none()),
            ("projection_type", projection_type.is_none()),
        ] {
            if missing {
                return Err(Error::hparam(
                    name,
                    field,
                    "null",
                    "is required when rank is set (the reference reads it from the group)",
                ));
            }
        }
    }
    if let Some(gap) = update_proj_gap {
        v::at_least(name, "update_proj_gap", gap, 1)?;
    }
    if let Some(s) = scale {
        v::finite(name, "scale", s)?;
    }
    Ok(())
}

/// The low-rank gradient of the `rows x cols` matrix `g` projected on
/// `side` with rank `k` (`ortho`: `P` (`rows x k`) then `Q` (`k x cols`),
/// either absent when the side does not use it), with its rows and
/// columns (shared with APOLLO).
pub(crate) fn project(
    g: &[f32],
    ortho: &[f32],
    side: Side,
    rows: usize,
    cols: usize,
    k: usize,
) -> Result<(Vec<f32>, usize, usize)> {
    let plen = if side == Side::Right { 0 } else { rows * k };
    let (pm, qm) = ortho.split_at(plen);
    let gv = View::new(g, rows, cols);
    Ok(match side {
        Side::Right => (mm(gv, View::new(qm, k, cols).t(), rows, k)?, rows, k),
        Side::Left => (mm(View::new(pm, rows, k).t(), gv, k, cols)?, k, cols),
        Side::Full => {
            let left = mm(View::new(pm, rows, k).t(), gv, k, cols)?;
            (mm(View::new(&left, k, cols), View::new(qm, k, cols).t(), k, k)?, k, k)
        }
    })
}

/// The way back of [`project`]: the `rows x cols` matrix of the low-rank
/// `low` (shared with APOLLO).
pub(crate) fn project_back(
    low: &[f32],
    ortho: &[f32],
    side: Side,
    rows: usize,
    cols: usize,
    k: usize,
) -> Result<Vec<f32>> {
    let plen = if side == Side::Right { 0 } else { rows * k };
    let (pm, qm) = ortho.split_at(plen);
    match side {
        Side::Right => mm(View::new(low, rows, k), View::new(qm, k, cols), rows, cols),
        Side::Left => mm(View::new(pm, rows, k), View::new(low, k, cols), rows, cols),
        Side::Full => {
            let left = mm(View::new(pm, rows, k), View::new(low, k, k), rows, k)?;
            mm(View::new(&left, rows, k), View::new(qm, k, cols), rows, cols)
        }
    }
}

/// Adam's moments on the (low-rank) gradient `r_grad`: `m <- lerp(m, r,
/// 1 - beta1)`, `v <- beta2 v + (1 - beta2) r^2`, and the returned
/// `m / (sqrt(v) + eps)` (shared with APOLLO).
pub(crate) fn adam_ratio(
    exp_avg: &mut StateTensor,
    exp_avg_sq: &mut StateTensor,
    name: &str,
    r_grad: &[f32],
    betas: [f64; 2],
    eps: f64,
) -> Result<Vec<f32>> {
    let len = r_grad.len();
    let ema1 = Ema::new(betas[0]);
    let ema2 = Ema::new(betas[1]);
    let eps = eps as f32;
    let m = exp_avg.get_or_fill(name, "exp_avg", len, 0.0)?;
    for (m, &x) in m.iter_mut().zip(r_grad) {
        *m = ema1.lerp(*m, x);
    }
    let m: &[f32] = m;
    let v = exp_avg_sq.get_or_fill(name, "exp_avg_sq", len, 0.0)?;
    let mut ratio = vec![0.0f32; len];
    for ((v, &x), (r, &m)) in v.iter_mut().zip(r_grad).zip(ratio.iter_mut().zip(m)) {
        *v = ema2.sq(*v, x);
        *r = m / (v.sqrt() + eps);
    }
    Ok(ratio)
}

/// `p <- p + alpha u`, then `p <- p keep` when `decay` (shared with APOLLO).
pub(crate) fn apply(value: &mut [f32], u: &[f32], alpha: f32, decay: bool, keep: f32) {
    for (x, &u) in value.iter_mut().zip(u) {
        *x += alpha * u;
        if decay {
            *x *= keep;
        }
    }
}

impl UpdateRule for GaLore {
    type State = GaLoreState;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut GaLoreState) -> Result<()> {
        let n = p.numel();
        st.step += 1;
        let t = st.step;
        let [beta1, beta2] = self.betas;
        let step_size = self.lr * bias_correction(beta2, t).sqrt() / bias_correction(beta1, t);
        let sgn = descent_sign(self.maximize);
        let g: Vec<f32> = p.grad.iter().map(|&g| sgn * g).collect();

        let proj = match (self.rank, self.projection_type, p.shape) {
            (Some(rank), Some(pt), &[rows, cols]) if rows * cols == n => {
                Some((rank as usize, side(pt, rows, cols), rows, cols))
            }
            _ => None,
        };
        // The low-rank gradient and, for the way back, the projection.
        let (r_grad, back): (Vec<f32>, Back) = match proj {
            None => (g.clone(), None),
            Some((rank, s, rows, cols)) => {
                let k = rank.min(rows.min(cols));
                let (plen, qlen) = match s {
                    Side::Right => (0, k * cols),
                    Side::Left => (rows * k, 0),
                    Side::Full => (rows * k, k * cols),
                };
                let gap = self.update_proj_gap.unwrap_or(1).max(1);
                if !st.ortho.is_allocated() || t.is_multiple_of(gap) {
                    let a: Vec<f64> = g.iter().map(|&x| x as f64).collect();
                    let (u, _, vt) = linalg::svd(&a, rows, cols);
                    let kk = rows.min(cols);
                    let mut ortho = vec![0.0f32; plen + qlen];
                    if plen > 0 {
                        for i in 0..rows {
                            for j in 0..k {
                                ortho[i * k + j] = u[i * kk + j] as f32;
                            }
                        }
                    }
                    if qlen > 0 {
                        for (o, &x) in ortho[plen..].iter_mut().zip(&vt[..k * cols]) {
                            *o = x as f32;
                        }
                    }
                    st.ortho = StateTensor::from_slice(&ortho);
                }
                let ortho = st.ortho.get_or_fill(p.name, "ortho", plen + qlen, 0.0)?;
                let (r, _, _) = project(&g, ortho, s, rows, cols, k)?;
                (r, Some((s, rows, cols, k)))
            }
        };
        let ratio = adam_ratio(&mut st.exp_avg, &mut st.exp_avg_sq, p.name, &r_grad, self.betas, self.eps)?;
        let u = match back {
            None => ratio,
            Some((s, rows, cols, k)) => {
                let mut u = project_back(&ratio, st.ortho.as_slice(), s, rows, cols, k)?;
                let scale = self.scale.unwrap_or(1.0) as f32;
                u.iter_mut().for_each(|x| *x *= scale);
                u
            }
        };
        let alpha = (-step_size) as f32;
        let keep = (1.0 - self.weight_decay * self.lr) as f32;
        apply(p.value, &u, alpha, self.weight_decay != 0.0, keep);
        Ok(())
    }
}
