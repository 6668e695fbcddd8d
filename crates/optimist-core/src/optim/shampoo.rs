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
//! eigendecomposition of [`crate::linalg::eigh`] (Jacobi rotations up to
//! 64 x 64, Householder and QL above), `V diag(|w|^(-1/2r))
//! V^T`, rounded to f32: the same matrix, more accurately. The dimensions'
//! roots are computed in parallel on the step's thread pool. The statistics
//! `G_(k) G_(k)^T` and the mode products run in f32 on [`crate::gemm`], as
//! the reference's f32 matmuls (a middle dimension of a tensor of rank 3 or
//! more sums its statistic in f64).

// Index loops over several arrays at once, as in the reference's formulas.
#![allow(clippy::needless_range_loop)]
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::exec::simd;
use crate::gemm::{gemm, View};
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
        crate::checks!(
            self,
            non_negative(lr),
            unit_interval_open(momentum),
            non_negative(weight_decay)
        )?;
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

/// Mode-k product `out[a, j, b] = sum_i m(j, i) x[a, i, b]` for the
/// `(pre, d, post)` view of `x`, in f32 on [`crate::gemm`] (the reference's
/// f32 matmuls); `m(j, i)` reads the row-major `d x d` matrix `mat` as
/// `mat[j][i]`, or `mat[i][j]` when `transposed`. A vector's product (a
/// matrix times a vector, `O(d^2)`) is summed in f64 and rounded once: its
/// root can have entries far larger than the result (a statistic of low
/// rank), whose f32 sums would lose digits that cost nothing to keep.
fn mode_product(
    x: &[f32],
    shape: &[usize],
    k: usize,
    mat: &[f32],
    transposed: bool,
) -> Result<Vec<f32>> {
    let (pre, d, post) = split(shape, k);
    let mut out = vec![0.0f32; x.len()];
    if pre * post == 1 {
        for (j, o) in out.iter_mut().enumerate() {
            let mut s = 0.0f64;
            for (i, &v) in x.iter().enumerate() {
                let m = if transposed {
                    mat[i * d + j]
                } else {
                    mat[j * d + i]
                };
                s += m as f64 * v as f64;
            }
            *o = s as f32;
        }
        return Ok(out);
    }
    let m = View::new(mat, d, d);
    let m = if transposed { m.t() } else { m };
    if post == 1 {
        // out (pre x d) = x (pre x d) m^T
        gemm(1.0, View::new(x, pre, d), m.t(), 0.0, &mut out, false)?;
    } else {
        for (xa, oa) in x.chunks(d * post).zip(out.chunks_mut(d * post)) {
            gemm(1.0, m, View::new(xa, d, post), 0.0, oa, false)?;
        }
    }
    Ok(out)
}

/// `G_(k) G_(k)^T` of `g` for dimension `k`, rounded to f32: one f32 GEMM
/// when `k` is the first or last dimension (the reference's f32 matmul),
/// f64 sums otherwise.
pub(crate) fn gram(g: &[f32], shape: &[usize], k: usize) -> Result<Vec<f32>> {
    let (pre, d, post) = split(shape, k);
    let mut out = vec![0.0f32; d * d];
    if pre == 1 {
        let x = View::new(g, d, post);
        gemm(1.0, x, x.t(), 0.0, &mut out, true)?;
    } else if post == 1 {
        let x = View::new(g, pre, d);
        gemm(1.0, x.t(), x, 0.0, &mut out, true)?;
    } else {
        for (o, s) in out.iter_mut().zip(mode_gram(g, shape, k)) {
            *o = s as f32;
        }
    }
    Ok(out)
}

/// `V diag(|w|^(-1 / root)) V^T` of the symmetric `n x n` matrix `a`,
/// rounded to f32 (exactly symmetric). Each entry is summed in f64 over
/// the eigenvalues in order. The upper triangle is computed by tiles of
/// [`ROOT_ROWS`] rows (in parallel on the current thread pool when called
/// from one), each row's entries side by side in vector lanes (from `V^T`,
/// whose rows are `V`'s columns).
pub(crate) fn inverse_root(a: &[f32], n: usize, root: f64) -> Vec<f32> {
    let a64: Vec<f64> = a.iter().map(|&x| x as f64).collect();
    let (w, vecs) = linalg::eigh(&a64, n);
    let f: Vec<f64> = w.iter().map(|&x| x.abs().powf(-1.0 / root)).collect();
    let mut out = vec![0.0f32; n * n];
    if n == 0 {
        return out;
    }
    // V^T with rows `ld` values apart: the tiles read it down its columns,
    // and rows a multiple of 4 KiB apart would share the L1 cache's sets.
    let ld = n + 8;
    let mut vt = vec![0.0f64; n * ld];
    for i in 0..n {
        for k in 0..n {
            vt[k * ld + i] = vecs[i * n + k];
        }
    }
    let m = Root {
        vecs: &vecs,
        vt: &vt,
        ld,
        f: &f,
        n,
    };
    let rows = |(b, out): (usize, &mut [f32])| root_rows(&m, ROOT_ROWS * b, out);
    if rayon::current_thread_index().is_some() && n >= 64 {
        use rayon::prelude::*;
        out.par_chunks_mut(ROOT_ROWS * n).enumerate().for_each(rows);
    } else {
        out.chunks_mut(ROOT_ROWS * n).enumerate().for_each(rows);
    }
    for i in 0..n {
        for j in 0..i {
            out[i * n + j] = out[j * n + i];
        }
    }
    out
}

/// The operands of [`root_rows`]: `V` (row-major `n x n`), `V^T` (rows
/// `ld` values apart) and the factors `f`.
struct Root<'a> {
    vecs: &'a [f64],
    vt: &'a [f64],
    ld: usize,
    f: &'a [f64],
    n: usize,
}

/// Rows of [`inverse_root`]'s tiles: the rows of `V^T` a tile reads for
/// one range of eigenvalues serve all of them.
const ROOT_ROWS: usize = 16;

/// Eigenvalues whose rows of `V^T` a tile reads before moving on (64 rows
/// of `V^T`, 512 KiB at n = 1024, stay in the L2 cache for the tile's rows).
const ROOT_K: usize = 64;

/// Rows `i0..` (as many as `out` holds, at most [`ROOT_ROWS`]) of `V
/// diag(f) V^T`, columns `i0..n`: `out[r][j] = sum_k f[k] (V[i0 + r][k]
/// V[j][k])`, added in order of `k`; the columns before `i0` are left
/// alone. The sums stay in f64 between ranges of [`ROOT_K`] eigenvalues;
/// within a range, 4 rows x 8 columns of them in registers.
fn root_rows(m: &Root<'_>, i0: usize, out: &mut [f32]) {
    simd!(avx512; fn(m: &Root<'_>, i0: usize, out: &mut [f32]) {
        let n = m.n;
        let rows = out.len() / n;
        let width = n - i0;
        let mut acc = vec![0.0f64; rows * width];
        let mut k0 = 0;
        while k0 < n {
            let k1 = (k0 + ROOT_K).min(n);
            let mut r0 = 0;
            while r0 < rows {
                let group = &mut acc[r0 * width..];
                match rows - r0 {
                    1 => root_group::<1>(m, i0 + r0, k0..k1, i0, group),
                    2 => root_group::<2>(m, i0 + r0, k0..k1, i0, group),
                    3 => root_group::<3>(m, i0 + r0, k0..k1, i0, group),
                    _ => root_group::<4>(m, i0 + r0, k0..k1, i0, group),
                }
                r0 += 4;
            }
            k0 = k1;
        }
        for (r, acc) in acc.chunks(width).take(rows).enumerate() {
            for (o, &s) in out[r * n + i0..(r + 1) * n].iter_mut().zip(acc) {
                *o = s as f32;
            }
        }
    })
}

/// [`root_rows`] for rows `i..i + R` of `V diag(f) V^T` and eigenvalues
/// `ks` (at most [`ROOT_K`]), columns `j0..n`; `acc`: the rows' sums,
/// `n - j0` apart.
#[inline(always)]
fn root_group<const R: usize>(
    m: &Root<'_>,
    i: usize,
    ks: std::ops::Range<usize>,
    j0: usize,
    acc: &mut [f64],
) {
    let (n, width) = (m.n, m.n - j0);
    // The rows' values for each eigenvalue, side by side.
    let mut x = [[0.0f64; R]; ROOT_K];
    for (q, k) in ks.clone().enumerate() {
        for r in 0..R {
            x[q][r] = m.vecs[(i + r) * n + k];
        }
    }
    let x = &x[..ks.len()];
    let f = &m.f[ks.clone()];
    let vt = &m.vt[ks.start * m.ld..];
    let mut c = 0;
    while c + ROOT_COLS <= width {
        root_tile::<R, ROOT_COLS>(x, f, vt, m.ld, j0 + c, &mut acc[c..], width);
        c += ROOT_COLS;
    }
    for c in c..width {
        root_tile::<R, 1>(x, f, vt, m.ld, j0 + c, &mut acc[c..], width);
    }
}

/// Columns of a [`root_group`] tile (one AVX-512 or two AVX2 registers).
const ROOT_COLS: usize = 8;

/// `acc[r * width + q] += f[k] (x[k][r] vt[k][j + q])` for `r < R`, `q <
/// W`, `k` ascending (`vt`'s rows `ld` values apart), the sums in
/// registers.
#[inline(always)]
fn root_tile<const R: usize, const W: usize>(
    x: &[[f64; R]],
    f: &[f64],
    vt: &[f64],
    ld: usize,
    j: usize,
    acc: &mut [f64],
    width: usize,
) {
    let mut a: [[f64; W]; R] =
        std::array::from_fn(|r| acc[r * width..][..W].try_into().expect("W values"));
    for ((&fk, xk), row) in f.iter().zip(x).zip(vt[j..].chunks(ld)) {
        let col: &[f64; W] = row[..W].try_into().expect("W values");
        for r in 0..R {
            let xr = xk[r];
            for (s, &y) in a[r].iter_mut().zip(col) {
                *s += fk * (xr * y);
            }
        }
    }
    for (r, a) in a.iter().enumerate() {
        acc[r * width..][..W].copy_from_slice(a);
    }
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
            st.momentum_buffer
                .get_or_fill(p.name, "momentum_buffer", n, 0.0)?
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
        // Offsets of the dimensions' d x d blocks in `pre` and `inv`.
        let offs: Vec<usize> = shape
            .iter()
            .scan(0, |off, &d| {
                let o = *off;
                *off += d * d;
                Some(o)
            })
            .collect();
        for (k, (&d, &off)) in shape.iter().zip(&offs).enumerate() {
            let gram = gram(&g, &shape, k)?;
            for (x, &s) in pre[off..off + d * d].iter_mut().zip(&gram) {
                *x += s;
            }
        }
        if recompute {
            // The dimensions' roots are independent: in parallel on the
            // current thread pool when called from one.
            let root = |(&d, &off): (&usize, &usize)| {
                inverse_root(&pre[off..off + d * d], d, 2.0 * order as f64)
            };
            let roots: Vec<Vec<f32>> = if rayon::current_thread_index().is_some() && order > 1 {
                use rayon::prelude::*;
                shape.par_iter().zip(&offs).map(root).collect()
            } else {
                shape.iter().zip(&offs).map(root).collect()
            };
            for ((&d, &off), r) in shape.iter().zip(&offs).zip(&roots) {
                inv[off..off + d * d].copy_from_slice(r);
            }
        }
        let mut u = g;
        for (k, (&d, &off)) in shape.iter().zip(&offs).enumerate() {
            u = mode_product(&u, &shape, k, &inv[off..off + d * d], k == order - 1)?;
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
#[cfg(test)]
mod tests {
    /// The blocked, vectorized, parallel reconstruction against the plain
    /// loop over the same eigendecomposition: the same bits, on one thread
    /// and on a pool.
    #[test]
    fn inverse_root_equals_the_plain_sums() {
        for &n in &[1usize, 3, 7, 70, 130] {
            let mut s = 3u32;
            let g: Vec<f32> = (0..n * n)
                .map(|_| {
                    s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                    (s >> 8) as f32 / 16777216.0 - 0.5
                })
                .collect();
            let mut a = vec![0.0f32; n * n];
            for i in 0..n {
                for j in 0..n {
                    a[i * n + j] = (0..n).map(|k| g[i * n + k] * g[j * n + k]).sum::<f32>()
                        + if i == j { 1e-3 } else { 0.0 };
                }
            }
            let got = super::inverse_root(&a, n, 4.0);
            let a64: Vec<f64> = a.iter().map(|&x| x as f64).collect();
            let (w, vecs) = crate::linalg::eigh(&a64, n);
            let f: Vec<f64> = w.iter().map(|&x| x.abs().powf(-1.0 / 4.0)).collect();
            for i in 0..n {
                for j in i..n {
                    let mut s = 0.0f64;
                    for (k, &fk) in f.iter().enumerate() {
                        s += fk * (vecs[i * n + k] * vecs[j * n + k]);
                    }
                    assert_eq!((s as f32).to_bits(), got[i * n + j].to_bits());
                    assert_eq!(got[j * n + i].to_bits(), got[i * n + j].to_bits());
                }
            }
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            assert_eq!(pool.install(|| super::inverse_root(&a, n, 4.0)), got);
        }
    }
}
