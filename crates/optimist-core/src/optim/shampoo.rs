//! Shampoo: one Kronecker factor of the gradient's second moment per
//! dimension, applied as inverse `2r`-th roots (r = number of dimensions).
//!
//! **Reference:** `pytorch_optimizer.Shampoo` (pytorch-optimizer 4.1.0).
//! **Paper:** Gupta, Koren & Singer, "Shampoo: Preconditioned Stochastic
//! Tensor Optimization", ICML 2018 (arXiv:1802.09568).
//!
//! Update rule for a parameter of shape `(d_0, ..., d_{r-1})`, step t
//! (`buf` starts as the first raw gradient, `L_k = matrix_eps I`,
//! `P_k = 0`):
//! ```text
//! g   <- -g                                       if maximize
//! g   <- lerp(g, buf, momentum)                   if momentum > 0
//! p   <- p (1 - lr wd)  (1 - wd if fixed_decay)   if weight_decouple
//! g   <- g + wd p                                 otherwise (L2)
//! for each dimension k:
//!     L_k <- L_k + G_(k) G_(k)^T                  (G_(k): mode-k unfolding of g above)
//!     P_k <- L_k^(-1 / (2 r))                     if t % preconditioning_compute_steps == 0
//! u   <- g x_0 P_0 x_1 P_1 ... x_{r-1} P_{r-1}    (mode-k products)
//! buf <- u
//! p   <- p - lr u
//! ```
//! Before the first root (`t < preconditioning_compute_steps`) `P_k = 0`, so
//! the step only decays. `buf` holds the *preconditioned* gradient, as in the
//! reference.
//!
//! Defaults: lr = 1e-3, momentum = 0, weight_decay = 0,
//! weight_decouple = false, fixed_decay = false,
//! preconditioning_compute_steps = 1, matrix_eps = 1e-6, maximize = false.
//! Validation as the reference: lr >= 0, momentum in [0, 1),
//! weight_decay >= 0, preconditioning_compute_steps >= 1, matrix_eps >= 0.
//!
//! **Roots.** The reference takes `U diag(s^(-1/2r)) V^T` from an f32 SVD of
//! `L_k`; here `L_k` (symmetric positive definite) goes through the f64
//! Jacobi eigendecomposition of [`crate::linalg`], `V diag(|w|^(-1/2r))
//! V^T`, rounded to f32: the same matrix, more accurately. The statistics
//! and the mode products are summed in f64 and rounded to f32 after each
//! product, as the reference rounds each f32 product.


// Index loops over several arrays at once, as in the reference's formulas.
#![allow(clippy::needless_range_loop)]
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::linalg;
use crate::math::{descent_sign, lerp, WeightDecay};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;
use crate::validate as v;

crate::param_state! {
    /// Shampoo state: the momentum buffer, and per dimension the statistic
    /// `L_k` and its inverse root `P_k` (all dimensions' matrices one after
    /// the other, row-major).
    pub struct ShampooState { momentum_buffer; unsized: pre_cond, inv_pre_cond }
}

/// Hyperparameters of `pytorch_optimizer.Shampoo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Shampoo {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Momentum, in [0, 1) (default 0).
    pub momentum: f64,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay; L2 otherwise (default false).
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by lr (default false).
    pub fixed_decay: bool,
    /// Steps between recomputations of the inverse roots (default 1).
    pub preconditioning_compute_steps: u64,
    /// Initial diagonal of the statistics (default 1e-6).
    pub matrix_eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Shampoo {
    fn default() -> Self {
        Shampoo {
            lr: 1e-3,
            momentum: 0.0,
            weight_decay: 0.0,
            weight_decouple: false,
            fixed_decay: false,
            preconditioning_compute_steps: 1,
            matrix_eps: 1e-6,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Shampoo {
    const NAME: &'static str = "shampoo";
    const REFERENCE: &'static str = "pytorch_optimizer.Shampoo (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Gupta, Koren & Singer, Shampoo: Preconditioned Stochastic Tensor Optimization, ICML 2018 (arXiv:1802.09568)";
    const SUMMARY: &'static str =
        "Kronecker-factored preconditioner: inverse 2r-th roots of per-dimension gradient statistics";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), unit_interval_open(momentum),
            non_negative(weight_decay))?;
        v::at_least(
            Self::NAME,
            "preconditioning_compute_steps",
            self.preconditioning_compute_steps,
            1,
        )?;
        crate::checks!(self, non_negative(matrix_eps))
    }
}

/// `(pre, d, post)`: the sizes before, at and after dimension `k`.
pub(crate) fn split(shape: &[usize], k: usize) -> (usize, usize, usize) {
    let pre: usize = shape[..k].iter().product();
    let post: usize = shape[k + 1..].iter().product();
    (pre, shape[k], post)
}

/// `sum_{a,b} x[a,i,b] x[a,j,b]` for the `(pre, d, post)` view of `x`,
/// summed in f64 (row-major `d x d`).
pub(crate) fn mode_gram(x: &[f32], shape: &[usize], k: usize) -> Vec<f64> {
    let (pre, d, post) = split(shape, k);
    let mut out = vec![0.0f64; d * d];
    for a in 0..pre {
        let block = &x[a * d * post..(a + 1) * d * post];
        for i in 0..d {
            let ri = &block[i * post..(i + 1) * post];
            for j in i..d {
                let rj = &block[j * post..(j + 1) * post];
                let s: f64 = ri.iter().zip(rj).map(|(&u, &v)| u as f64 * v as f64).sum();
                out[i * d + j] += s;
            }
        }
    }
    for i in 0..d {
        for j in 0..i {
            out[i * d + j] = out[j * d + i];
        }
    }
    out
}

/// Mode-k product `out[a, j, b] = sum_i m(j, i) x[a, i, b]`, summed in f64
/// and rounded to f32; `m(j, i)` reads the row-major `d x d` matrix `mat`
/// as `mat[j][i]`, or `mat[i][j]` when `transposed`.
fn mode_product(x: &[f32], shape: &[usize], k: usize, mat: &[f32], transposed: bool) -> Vec<f32> {
    let (pre, d, post) = split(shape, k);
    let mut out = vec![0.0f32; x.len()];
    let mut acc = vec![0.0f64; post];
    for a in 0..pre {
        let base = a * d * post;
        for j in 0..d {
            acc.iter_mut().for_each(|v| *v = 0.0);
            for i in 0..d {
                let m = if transposed { mat[i * d + j] } else { mat[j * d + i] } as f64;
                if m == 0.0 {
                    continue;
                }
                let row = &x[base + i * post..base + (i + 1) * post];
                for (s, &v) in acc.iter_mut().zip(row) {
                    *s += m * v as f64;
                }
            }
            for (o, &s) in out[base + j * post..base + (j + 1) * post].iter_mut().zip(&acc) {
                *o = s as f32;
            }
        }
    }
    out
}

/// `V diag(|w|^(-1 / root)) V^T` of the symmetric `n x n` matrix `a`,
/// rounded to f32 (exactly symmetric).
pub(crate) fn inverse_root(a: &[f32], n: usize, root: f64) -> Vec<f32> {
    let a64: Vec<f64> = a.iter().map(|&x| x as f64).collect();
    let (w, vecs) = linalg::eigh(&a64, n);
    let f: Vec<f64> = w.iter().map(|&x| x.abs().powf(-1.0 / root)).collect();
    let mut out = vec![0.0f32; n * n];
    for i in 0..n {
        for j in i..n {
            let mut s = 0.0f64;
            for (k, &fk) in f.iter().enumerate() {
                s += fk * (vecs[i * n + k] * vecs[j * n + k]);
            }
            out[i * n + j] = s as f32;
            out[j * n + i] = s as f32;
        }
    }
    out
}

impl UpdateRule for Shampoo {
    type State = ShampooState;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut ShampooState) -> Result<()> {
        let n = p.numel();
        let shape: Vec<usize> = p.shape.to_vec();
        let order = shape.len();
        let total: usize = shape.iter().map(|d| d * d).sum();
        let first = st.step == 0;
        st.step += 1;
        // State on the first step, from the raw gradient (as the reference,
        // before maximize negates it).
        if first && self.momentum > 0.0 {
            st.momentum_buffer.get_or_fill(p.name, "momentum_buffer", n, 0.0)?
                .copy_from_slice(p.grad);
        }
        if !st.pre_cond.is_allocated() {
            let eps = self.matrix_eps as f32;
            let pre = st.pre_cond.get_or_fill(p.name, "pre_cond", total, 0.0)?;
            let mut off = 0;
            for &d in &shape {
                for i in 0..d {
                    pre[off + i * d + i] = eps;
                }
                off += d * d;
            }
        }
        let pre = st.pre_cond.get_or_fill(p.name, "pre_cond", total, 0.0)?;
        let inv = st
            .inv_pre_cond
            .get_or_fill(p.name, "inv_pre_cond", total, 0.0)?;

        let sgn = descent_sign(self.maximize);
        let lr_decay = if self.fixed_decay { 1.0 } else { self.lr };
        let wd = WeightDecay::new(self.weight_decay, self.weight_decouple, lr_decay);
        let mut g: Vec<f32> = p.grad.iter().map(|&g| sgn * g).collect();
        if self.momentum > 0.0 {
            let buf = st
                .momentum_buffer
                .get_or_fill(p.name, "momentum_buffer", n, 0.0)?;
            let w = self.momentum as f32;
            for (g, &b) in g.iter_mut().zip(buf.iter()) {
                *g = lerp(*g, b, w);
            }
        }
        for (x, g) in p.value.iter_mut().zip(g.iter_mut()) {
            *g = wd.apply(x, *g);
        }
        let recompute = st.step.is_multiple_of(self.preconditioning_compute_steps);
        let mut u = g.clone();
        let mut off = 0;
        for k in 0..order {
            let d = shape[k];
            let gram = mode_gram(&g, &shape, k);
            let pk = &mut pre[off..off + d * d];
            for (x, &s) in pk.iter_mut().zip(&gram) {
                *x += s as f32;
            }
            if recompute {
                let root = inverse_root(pk, d, 2.0 * order as f64);
                inv[off..off + d * d].copy_from_slice(&root);
            }
            u = mode_product(&u, &shape, k, &inv[off..off + d * d], k == order - 1);
            off += d * d;
        }
        if self.momentum > 0.0 {
            st.momentum_buffer
                .get_or_fill(p.name, "momentum_buffer", n, 0.0)?
                .copy_from_slice(&u);
        }
        let neg_lr = (-self.lr) as f32;
        for (x, &u) in p.value.iter_mut().zip(u.iter()) {
            *x += neg_lr * u;
        }
        Ok(())
    }
}
