//! NAMO and NAMO-D: orthogonalized momentum scaled by Adam-type, norm-based
//! noise adaptation.
//!
//! **Paper:** Minxin Zhang, Yuxuan Liu, Hayden Schaeffer, "Adam Improves
//! Muon: Adaptive Moment Estimation with Orthogonalized Momentum",
//! arXiv:2602.17080 (2026). **Reference:** the authors' implementation,
//! `NAMO` and `NAMO_D` in minxin-zhg/namo `src/namo.py` at commit 5f8805a
//! ("Fix bug with eps_adn", 2026-02-25; the current code, which moved
//! `adamnorm_eps` out of the square root), followed operation for operation with the Newton-Schulz iteration in f32
//! (the code casts it to bfloat16). There is no library implementation; the
//! golden cases `tests/golden/extensions/namo-*` and `namo_d-*` come from an
//! independent torch transcription of that code in `tools/gen_cases.py`
//! (`NamoRef`, `NamoDRef`).
//!
//! NAMO, for a matrix `W` (`A x B`, t = step of this parameter):
//! ```text
//! M <- lerp(M, G, 1 - momentum)
//! U <- lerp(G, M, momentum) if nesterov else M
//! v <- mu2 v + (1 - mu2) ||G||_F^2                       (one scalar per matrix)
//! O <- NS5(U)                     Keller Jordan's coefficients, U / (||U||_F + 1e-7)
//! alpha   <- lr sqrt(1 - mu2^t) / (1 - momentum^t + 1e-12) * ||U||_F / (sqrt(v) + adamnorm_eps)
//! W <- W (1 - weight_decay min(alpha, 1))
//! W <- W - min(alpha scale_coeff sqrt(max(A, B)), 1) O
//! ```
//! NAMO-D replaces the scalar by one value per column `j` (a diagonal `D`
//! multiplying `O` from the right, i.e. per input neuron of a Linear
//! weight), clamped towards the mean:
//! ```text
//! v_j  <- mu2 v_j + (1 - mu2) ||G[:, j]||^2
//! d_j  <- ||U[:, j]|| / (sqrt(v_j) + adamnorm_eps)
//! d_j  <- clamp(d_j, c mean(d), mean(d) / c)     if 0 < c <= 1 (c = col_state_clamp_c)
//! base <- lr sqrt(1 - mu2^t) / (1 - momentum^t + 1e-12)
//! W[:, j] <- W[:, j] max(0, 1 - weight_decay min(d_j base, 1))
//! W[:, j] <- W[:, j] - min(d_j base scale_coeff sqrt(max(A, B)), 1) O[:, j]
//! ```
//! (the clamp is skipped when the mean is not finite and positive; `c = 0`
//! disables it).
//!
//! Defaults (the reference's constructor): lr = 0.01, weight_decay = 0.1
//! (the reference calls it `wd`), momentum = 0.95, mu2 = 0.99,
//! adamnorm_eps = 1e-8, nesterov = true, ns_steps = 5, scale_coeff = 0.2;
//! NAMO-D also col_state_clamp_c = 0.75. The paper's GPT-2 runs used
//! lr = 0.012 (NAMO), lr = 0.009 with c = 0.01 (NAMO-D), weight_decay = 0.1.
//!
//! **Relation to the paper's formula.** The paper's NAMO step is
//! `W <- W - lr alpha_t (O + lambda W)` with
//! `alpha_t = sqrt(1 - mu2^t) / (1 - mu1^t) ||M||_F / (sqrt(v) + eps)`. The
//! reference code (and so this file) differs in details: 1e-12 added to the
//! bias correction, optional Nesterov
//! momentum (on by default, norm of the Nesterov input), Moonlight's shape
//! scale `scale_coeff sqrt(max(A, B))` on the orthogonal part only, and both
//! step sizes capped at 1. NVIDIA Emerging-Optimizers'
//! `AdaptiveMuon(moment2_method="namo")` is another reading: no bias
//! correction, its own Muon scale and weight decay; it is not matched here.
//! The authors' first commit (9fa2762) had eps inside the square root
//! (`sqrt(v + eps)`, `rsqrt(V + eps)`); with eps = 1e-8 that differs from
//! the current code beyond the cases' tolerance once a matrix's gradient
//! norm is about 6e-3 or less, so this file and its cases follow 5f8805a.
//!
//! **Parameters.** Only 2-D parameters (an error naming any other);
//! `flatten = true` views `[d0, d1, ...]` as `d0 x (d1 ...)` as the
//! reference does for 4-D kernels (the reference then takes `A, B` from
//! `shape[:2]`; here they are the matrix's rows and columns). The
//! reference's `use_exact_svd` option and its AdamW fallback are not
//! offered (use parameter groups for non-matrix parameters).

use serde::{Deserialize, Serialize};

use super::newton_schulz::{self as ns, NormGuard, NsDtype, MUON_COEFFICIENTS};
use crate::error::Result;
use crate::math::{l2_norm, lerp, Ema};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;
use crate::validate as v;

crate::param_state! {
    /// NAMO state: the momentum and the EMA of the squared gradient norm
    /// (one value).
    pub struct NamoState { momentum_buffer; unsized: v_squared }
}

crate::param_state! {
    /// NAMO-D state: the momentum and the EMA of the squared column norms of
    /// the gradient (one value per column).
    pub struct NamoDState { momentum_buffer; unsized: v }
}

/// Hyperparameters of NAMO (the reference's `NAMO` class).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Namo {
    /// Learning rate (default 0.01).
    pub lr: f64,
    /// Weight decay, scaled by the adaptive step (default 0.1; `wd` in the reference).
    pub weight_decay: f64,
    /// First-moment decay mu1 (default 0.95).
    pub momentum: f64,
    /// Decay of the squared-norm average mu2 (default 0.99).
    pub mu2: f64,
    /// Added inside the square root of the second moment (default 1e-8).
    pub adamnorm_eps: f64,
    /// Nesterov momentum (default true).
    pub nesterov: bool,
    /// Newton-Schulz iterations (default 5).
    pub ns_steps: u64,
    /// Coefficient of the shape scale `sqrt(max(A, B))` (default 0.2).
    pub scale_coeff: f64,
    /// Precision of the Newton-Schulz products: "float32" (default, exact
    /// replay) or "bfloat16" (inputs rounded to bfloat16, f32 sums; faster,
    /// the precision the reference libraries use).
    pub ns_dtype: NsDtype,
    /// Accept parameters with more than two dimensions as `(shape[0], rest)`
    /// matrices (default false).
    pub flatten: bool,
}

impl Default for Namo {
    fn default() -> Self {
        Namo {
            lr: 1e-2,
            weight_decay: 0.1,
            momentum: 0.95,
            mu2: 0.99,
            adamnorm_eps: 1e-8,
            nesterov: true,
            ns_steps: 5,
            scale_coeff: 0.2,
            ns_dtype: NsDtype::Float32,
            flatten: false,
        }
    }
}

/// Hyperparameters of NAMO-D (the reference's `NAMO_D` class).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamoD {
    /// Learning rate (default 0.01).
    pub lr: f64,
    /// Weight decay, scaled per column by the adaptive step (default 0.1).
    pub weight_decay: f64,
    /// First-moment decay mu1 (default 0.95).
    pub momentum: f64,
    /// Decay of the squared column-norm averages mu2 (default 0.99).
    pub mu2: f64,
    /// Added inside the square root of the second moments (default 1e-8).
    pub adamnorm_eps: f64,
    /// Nesterov momentum (default true).
    pub nesterov: bool,
    /// Newton-Schulz iterations (default 5).
    pub ns_steps: u64,
    /// Coefficient of the shape scale `sqrt(max(A, B))` (default 0.2).
    pub scale_coeff: f64,
    /// Clamp of the column scales to `[c mean, mean / c]`, in `[0, 1]`; 0
    /// disables it (default 0.75).
    pub col_state_clamp_c: f64,
    /// Precision of the Newton-Schulz products: "float32" (default, exact
    /// replay) or "bfloat16" (inputs rounded to bfloat16, f32 sums; faster,
    /// the precision the reference libraries use).
    pub ns_dtype: NsDtype,
    /// Accept parameters with more than two dimensions as `(shape[0], rest)`
    /// matrices (default false).
    pub flatten: bool,
}

impl Default for NamoD {
    fn default() -> Self {
        NamoD {
            lr: 1e-2,
            weight_decay: 0.1,
            momentum: 0.95,
            mu2: 0.99,
            adamnorm_eps: 1e-8,
            nesterov: true,
            ns_steps: 5,
            scale_coeff: 0.2,
            col_state_clamp_c: 0.75,
            ns_dtype: NsDtype::Float32,
            flatten: false,
        }
    }
}

const PAPER: &str = "Zhang, Liu & Schaeffer, Adam Improves Muon: Adaptive Moment Estimation \
                     with Orthogonalized Momentum (arXiv:2602.17080)";

/// Checks the hyperparameters NAMO and NAMO-D share (`c` is either
/// configuration).
macro_rules! validate_common {
    ($name:expr, $c:expr) => {{
        let (name, c) = ($name, $c);
        v::non_negative(name, "lr", c.lr)?;
        v::non_negative(name, "weight_decay", c.weight_decay)?;
        v::unit_interval_open(name, "momentum", c.momentum)?;
        v::unit_interval_open(name, "mu2", c.mu2)?;
        v::non_negative(name, "adamnorm_eps", c.adamnorm_eps)?;
        // Bounded as torch.optim.Muon bounds it (< 100).
        v::at_most(name, "ns_steps", c.ns_steps, 99)?;
        v::non_negative(name, "scale_coeff", c.scale_coeff)
    }};
}

/// The bias-corrected base step size `lr sqrt(1 - mu2^t) / (1 - momentum^t + 1e-12)`.
fn base_lr(lr: f64, momentum: f64, mu2: f64, t: u64) -> f64 {
    let bc1 = 1.0 - momentum.powf(t as f64);
    let bc2 = 1.0 - mu2.powf(t as f64);
    lr * bc2.sqrt() / (bc1 + 1e-12)
}

/// Momentum update and the Newton-Schulz input, one pass; returns `U`.
fn momentum_pass(grad: &[f32], buf: &mut [f32], momentum: f64, nesterov: bool) -> Vec<f32> {
    let ema = Ema::new(momentum);
    let mut u = vec![0.0f32; grad.len()];
    for ((b, &g), u) in buf.iter_mut().zip(grad.iter()).zip(u.iter_mut()) {
        *b = ema.lerp(*b, g);
        *u = if nesterov { lerp(g, *b, ema.beta) } else { *b };
    }
    u
}

/// `NS5(u)` with Keller Jordan's coefficients in f32, `u / (||u||_F + 1e-7)`
/// first, for a `rows x cols` matrix.
fn orthogonalize(
    u: &[f32],
    rows: usize,
    cols: usize,
    ns_steps: u64,
    dtype: NsDtype,
) -> Result<Vec<f32>> {
    let coeffs = ns::schedule_f32(&[MUON_COEFFICIENTS]);
    ns::orthogonalize(
        u,
        rows,
        cols,
        &coeffs,
        ns_steps as usize,
        NormGuard::Add(1e-7),
        dtype,
    )
}

impl OptimizerConfig for Namo {
    const NAME: &'static str = "namo";
    const REFERENCE: &'static str =
        "NAMO, authors' code minxin-zhg/namo src/namo.py (5f8805a), Newton-Schulz in f32";
    const PAPER: &'static str = PAPER;
    const SUMMARY: &'static str =
        "orthogonalized momentum with one Adam-type norm-based step size per matrix";
    const MATRICES_ONLY: bool = true;

    fn validate(&self) -> Result<()> {
        validate_common!(Self::NAME, self)
    }
}

impl UpdateRule for Namo {
    type State = NamoState;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut NamoState) -> Result<()> {
        let (rows, cols) = ns::matrix_dims(Self::NAME, p, self.flatten)?;
        let n = p.numel();
        let buf = st
            .momentum_buffer
            .get_or_fill(p.name, "momentum_buffer", n, 0.0)?;
        let v = &mut st.v_squared.get_or_fill(p.name, "v_squared", 1, 0.0)?[0];
        let gn = l2_norm(p.grad);
        let u = momentum_pass(p.grad, buf, self.momentum, self.nesterov);
        let un = l2_norm(&u);
        // v.mul_(mu2).add_(gn * gn, alpha = 1 - mu2)
        let ema2 = Ema::new(self.mu2);
        *v = *v * ema2.beta + ema2.weight * (gn * gn);
        let o = orthogonalize(&u, rows, cols, self.ns_steps, self.ns_dtype)?;
        st.step += 1;
        // v_t = sqrt(v) + eps (authors' code since 5f8805a, "Fix bug with eps_adn").
        let vt = v.sqrt() + self.adamnorm_eps as f32;
        let alpha = base_lr(self.lr, self.momentum, self.mu2, st.step) as f32 * (un / vt);
        let shape = (self.scale_coeff * (rows.max(cols) as f64).sqrt()) as f32;
        let keep = 1.0 - self.weight_decay as f32 * alpha.min(1.0);
        let step = (alpha * shape).min(1.0);
        for (x, &o) in p.value.iter_mut().zip(o.iter()) {
            *x *= keep;
            *x += -(o * step);
        }
        Ok(())
    }

    ns::matrix_rule!();
}

/// Euclidean norms of the columns of a row-major `rows x cols` matrix, f64
/// accumulation rounded to f32.
fn column_norms(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut acc = vec![0.0f64; cols];
    for row in x.chunks_exact(cols.max(1)).take(rows) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += (v as f64) * (v as f64);
        }
    }
    acc.into_iter().map(|a| a.sqrt() as f32).collect()
}

/// Clamps `d` to `[c mean, mean / c]` (mean over the non-NaN entries) when
/// `0 < c <= 1` and the mean is finite and positive, as the reference.
fn clamp_to_mean(d: &mut [f32], c: f64) {
    if !(c > 0.0 && c <= 1.0) {
        return;
    }
    let (sum, count) = d
        .iter()
        .filter(|x| !x.is_nan())
        .fold((0.0f64, 0usize), |(s, k), &x| (s + x as f64, k + 1));
    let mean = if count == 0 {
        f32::NAN
    } else {
        (sum / count as f64) as f32
    };
    if !(mean.is_finite() && mean > 0.0) {
        return;
    }
    let (lo, hi) = (mean * c as f32, mean / c as f32);
    for x in d.iter_mut().filter(|x| !x.is_nan()) {
        // torch.clamp: lower bound, then upper bound; NaN stays NaN.
        *x = x.max(lo).min(hi);
    }
}

impl OptimizerConfig for NamoD {
    const NAME: &'static str = "namo_d";
    const REFERENCE: &'static str =
        "NAMO_D, authors' code minxin-zhg/namo src/namo.py (5f8805a), Newton-Schulz in f32";
    const PAPER: &'static str = PAPER;
    const SUMMARY: &'static str = "NAMO with clamped per-column (neuron-wise) Adam-type step sizes";
    const MATRICES_ONLY: bool = true;

    fn validate(&self) -> Result<()> {
        validate_common!(Self::NAME, self)?;
        crate::checks!(self, unit_interval(col_state_clamp_c))
    }
}

impl UpdateRule for NamoD {
    type State = NamoDState;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut NamoDState) -> Result<()> {
        let (rows, cols) = ns::matrix_dims(Self::NAME, p, self.flatten)?;
        let n = p.numel();
        let buf = st
            .momentum_buffer
            .get_or_fill(p.name, "momentum_buffer", n, 0.0)?;
        let vcol = st.v.get_or_fill(p.name, "v", cols, 0.0)?;
        // V.mul_(mu2).addcmul_(g, g, value = 1 - mu2)
        let ema2 = Ema::new(self.mu2);
        for (v, &g) in vcol.iter_mut().zip(&column_norms(p.grad, rows, cols)) {
            *v = ema2.sq(*v, g);
        }
        let u = momentum_pass(p.grad, buf, self.momentum, self.nesterov);
        let o = orthogonalize(&u, rows, cols, self.ns_steps, self.ns_dtype)?;
        st.step += 1;
        let base64 = base_lr(self.lr, self.momentum, self.mu2, st.step);
        let base = base64 as f32;
        let eps = self.adamnorm_eps as f32;
        let mut d: Vec<f32> = column_norms(&u, rows, cols)
            .iter()
            .zip(st.v.as_slice())
            // ||M_j|| / (sqrt(V_j) + eps) (authors' code since 5f8805a).
            .map(|(&m, &v)| m / (v.sqrt() + eps))
            .collect();
        clamp_to_mean(&mut d, self.col_state_clamp_c);
        let wd = self.weight_decay as f32;
        let shape_lr = (base64 * (self.scale_coeff * (rows.max(cols) as f64).sqrt())) as f32;
        let cols_scale: Vec<(f32, f32)> = d
            .iter()
            .map(|&d| {
                let decay = (1.0 - wd * (d * base).min(1.0)).max(0.0);
                (decay, (d * shape_lr).min(1.0))
            })
            .collect();
        for (xrow, orow) in p
            .value
            .chunks_exact_mut(cols.max(1))
            .zip(o.chunks_exact(cols.max(1)))
        {
            for ((x, &o), &(decay, step)) in xrow.iter_mut().zip(orow).zip(&cols_scale) {
                *x *= decay;
                *x += -(o * step);
            }
        }
        Ok(())
    }

    ns::matrix_rule!();
}
