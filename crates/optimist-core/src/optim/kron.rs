//! PSGD-Kron: preconditioned SGD with one Kronecker factor per dimension
//! (upper-triangular, or diagonal), fitted to random probes.
//!
//! **Reference:** `pytorch_optimizer.Kron` (pytorch-optimizer 4.1.0),
//! `precondition_dtype = float32`, `mu_dtype = None`. **Paper:** Xi-Lin Li,
//! "Preconditioned Stochastic Gradient Descent", IEEE TNNLS 2018
//! (arXiv:1512.04202); Kron as in Evan Walters' `psgd_jax` / `kron_torch`.
//!
//! For a parameter with factors `Q_k` (one per dimension: an upper
//! triangular `d_k x d_k` matrix, or a vector of length `d_k` standing for a
//! diagonal matrix), `Q(x)` the mode products with the `Q_k`, step t:
//! ```text
//! g   <- -g                                       if maximize
//! g   <- g + wd p                                 if p has >= 2 dims, !weight_decouple
//! m   <- momentum m + (1 - momentum) g ;  mh = m / (1 - momentum^t)
//! Q_k <- Q_k * (geometric mean of ||Q_j||_inf) / ||Q_k||_inf   if balancing (2+ dims)
//! if the preconditioner is updated at this step (probe V ~ N(0, I)):
//!     A = Q(h), h = mh (g if !momentum_into_precondition_update);  B = Q^-T(V)
//!     for every k, from the same A and B:
//!         T1 = A_(k) A_(k)^T, T2 = B_(k) B_(k)^T   (only their diagonals for a diagonal factor)
//!         triangular: Q_k <- Q_k - 0.1 triu(T1 - T2) Q_k / (lb(T1 + T2) + tiny)
//!         diagonal:   Q_k <- Q_k - 0.1 (T1 - T2) Q_k / (max|T1 + T2| + tiny)
//! u   <- Q^T(Q(mh))                               (Q_k^T Q_k along every dimension)
//! u   <- u min(1, 1.1 / (rms(u) + 1e-6))
//! u   <- u + wd p                                 if p has >= 2 dims, weight_decouple
//! p   <- p - lr u
//! ```
//! `lb` is the reference's lower bound of the spectral norm
//! (`norm_lower_bound`), `tiny` = 2^-126. A dimension gets a diagonal factor
//! when its size is 1 or above `max_size_triangular`, when the parameter has
//! fewer than `min_ndim_triangular` dimensions, or by `memory_save_mode`
//! ("one_diag": the largest dimension, "smart_one_diag": the largest if
//! strictly largest, "all_diag": all). Factors start as identities.
//!
//! Whether the preconditioner is updated: with `p` the
//! `pre_conditioner_update_probability` (null: the reference's schedule
//! `clamp(exp(-0.001 (t - 1 - 500)), 0.03, 1)`, in f32), a counter counts
//! the steps since the last update and the update happens when
//! `p > 0` and `counter >= 1 / p`. Balancing happens at steps with an
//! update, with probability `balance_prob`.
//!
//! Defaults: lr = 1e-3, momentum = 0.9, weight_decay = 0,
//! weight_decouple = true, pre_conditioner_update_probability = null,
//! max_size_triangular = 8192, min_ndim_triangular = 2,
//! memory_save_mode = null, momentum_into_precondition_update = true,
//! balance_prob = 0.01, maximize = false; extension `seed` = 0.
//! Validation as the reference: lr >= 0, momentum in [0, 1),
//! weight_decay >= 0.
//!
//! **Randomness (differs from the reference).** The reference draws the
//! probes with `torch.randn_like` and the balancing decision with
//! `np.random.random()` from the global generators. Here both come from
//! SplitMix64 ([`crate::rng`]) streams keyed by `seed`, the step and the
//! parameter's name: the balancing draw at step t is the first uniform of
//! the stream `key(seed, t, "#balance")`, the probe of parameter `name` the
//! normals (Box-Muller, [`SplitMix64::normal`](crate::rng::SplitMix64::normal),
//! rounded to f32, row-major) of `key(seed, t, name)`, with
//! `key(seed, t, s) = seed ^ (t * 0xD1B54A32D192ED03) ^ fnv1a64(s)`
//! (wrapping). The probe is drawn in pieces on the step's thread pool,
//! each from the stream skipped ahead to its first value
//! ([`rng::normals_f32`]): the same values as one stream drawn in order.
//! Runs are reproducible from the seed whatever the thread count, and
//! nothing random needs checkpointing. The golden cases were
//! made by running the reference with these same draws in place of its
//! own (the generator replaces `torch.randn_like` and `np.random.random`
//! inside `pytorch_optimizer.optimizer.psgd`).
//!
//! **Parameters.** Up to two dimensions (the reference also takes more);
//! a parameter with more is an error naming it. The reference's
//! `mu_dtype` and `precondition_dtype` (torch dtypes) are not offered: both
//! are f32 here.

// Index loops over several arrays at once, as in the reference's formulas.
#![allow(clippy::needless_range_loop)]
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gemm::{gemm, Triangle, View};
use crate::linalg;
use crate::math::{bias_correction, descent_sign};
use crate::rng::{self, SplitMix64};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::state::StateStore;
use crate::tensor::ParamMut;
use crate::validate as v;

crate::param_state! {
    /// Kron state: the momentum, the factors (one after the other:
    /// `d x d` row-major for a triangular factor, `d` values for a diagonal
    /// one) and the steps since the last preconditioner update.
    pub struct KronState { momentum_buffer; unsized: q, update_counter }
}

/// Which factors are diagonal (`memory_save_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemorySaveMode {
    /// The largest dimension.
    OneDiag,
    /// The largest dimension, if strictly larger than the others.
    SmartOneDiag,
    /// All dimensions.
    AllDiag,
}

/// Hyperparameters of `pytorch_optimizer.Kron`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Kron {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Momentum, in [0, 1) (default 0.9).
    pub momentum: f64,
    /// Weight decay, for parameters with 2+ dimensions (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (added to the update); L2 otherwise (default true).
    pub weight_decouple: bool,
    /// Probability of a preconditioner update; null: the reference's schedule.
    pub pre_conditioner_update_probability: Option<f64>,
    /// Largest dimension with a triangular factor (default 8192).
    pub max_size_triangular: u64,
    /// Fewest dimensions for triangular factors (default 2).
    pub min_ndim_triangular: u64,
    /// Diagonal factors to save memory (default null).
    pub memory_save_mode: Option<MemorySaveMode>,
    /// Fit the preconditioner to the momentum (default true) or the gradient.
    pub momentum_into_precondition_update: bool,
    /// Probability of balancing the factors at an update (default 0.01).
    pub balance_prob: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
    /// Seed of the probes and balancing draws (extension; default 0).
    pub seed: u64,
}

impl Default for Kron {
    fn default() -> Self {
        Kron {
            lr: 1e-3,
            momentum: 0.9,
            weight_decay: 0.0,
            weight_decouple: true,
            pre_conditioner_update_probability: None,
            max_size_triangular: 8192,
            min_ndim_triangular: 2,
            memory_save_mode: None,
            momentum_into_precondition_update: true,
            balance_prob: 0.01,
            maximize: false,
            seed: 0,
        }
    }
}

impl OptimizerConfig for Kron {
    const NAME: &'static str = "kron";
    const REFERENCE: &'static str =
        "pytorch_optimizer.Kron (pytorch-optimizer 4.1.0), probes from seeded SplitMix64 streams";
    const PAPER: &'static str =
        "Li, Preconditioned Stochastic Gradient Descent, IEEE TNNLS 2018 (arXiv:1512.04202)";
    const SUMMARY: &'static str =
        "PSGD with Kronecker-factored triangular preconditioners fitted to random probes";

    fn validate(&self) -> Result<()> {
        crate::checks!(
            self,
            non_negative(lr),
            unit_interval_open(momentum),
            non_negative(weight_decay)
        )?;
        if let Some(p) = self.pre_conditioner_update_probability {
            v::finite(Self::NAME, "pre_conditioner_update_probability", p)?;
        }
        crate::checks!(self, finite(balance_prob))
    }
}

/// FNV-1a, 64 bits.
fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The stream key of step `t` and name `s` (see the module docs).
pub fn stream_key(seed: u64, t: u64, s: &str) -> u64 {
    seed ^ t.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ fnv1a64(s)
}

/// One factor: triangular `d x d` or diagonal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Axis {
    d: usize,
    tri: bool,
}

impl Kron {
    /// The factors of a parameter of shape `shape` (a 0-D parameter has one
    /// diagonal factor of size 1).
    fn axes(&self, shape: &[usize]) -> Vec<Axis> {
        if shape.is_empty() {
            return vec![Axis { d: 1, tri: false }];
        }
        let nd = shape.len();
        let mut diag = vec![false; nd];
        // np.argsort(shape)[::-1][0]: the largest, the last of equal ones.
        let largest = (0..nd).rev().max_by_key(|&i| (shape[i], i)).unwrap_or(0);
        match self.memory_save_mode {
            None => {}
            Some(MemorySaveMode::OneDiag) => diag[largest] = true,
            Some(MemorySaveMode::SmartOneDiag) => {
                let mut s = shape.to_vec();
                s.sort_unstable();
                if nd >= 2 && s[nd - 1] > s[nd - 2] {
                    diag[largest] = true;
                }
            }
            Some(MemorySaveMode::AllDiag) => diag.iter_mut().for_each(|x| *x = true),
        }
        shape
            .iter()
            .zip(diag)
            .map(|(&d, dg)| Axis {
                d,
                tri: !(d == 1
                    || d as u64 > self.max_size_triangular
                    || (nd as u64) < self.min_ndim_triangular
                    || dg),
            })
            .collect()
    }

    /// Update probability at (0-based) step `n`.
    fn probability(&self, n: u64) -> f64 {
        match self.pre_conditioner_update_probability {
            Some(p) => p,
            None => {
                let x = n as f32 - 500.0f32;
                let e = ((-0.001f64) as f32 * x).exp();
                let p = 1.0f32 * e;
                p.clamp(0.03, 1.0) as f64
            }
        }
    }
}

fn check_shape(p: &ParamMut<'_>) -> Result<()> {
    if p.shape.len() > 2 {
        return Err(Error::Unsupported(format!(
            "kron: parameter '{}' has shape {:?}; only up to 2 dimensions are supported",
            p.name, p.shape
        )));
    }
    Ok(())
}

/// The factors as slices of the state buffer.
fn split_factors<'a>(q: &'a [f32], axes: &[Axis]) -> Vec<&'a [f32]> {
    let mut out = Vec::new();
    let mut off = 0;
    for a in axes {
        let len = if a.tri { a.d * a.d } else { a.d };
        out.push(&q[off..off + len]);
        off += len;
    }
    out
}

fn factors_len(axes: &[Axis]) -> usize {
    axes.iter()
        .map(|a| if a.tri { a.d * a.d } else { a.d })
        .sum()
}

fn mm(a: View<'_>, b: View<'_>, m: usize, n: usize) -> Result<Vec<f32>> {
    let mut c = vec![0.0f32; m * n];
    gemm(1.0, a, b, 0.0, &mut c, false)?;
    Ok(c)
}

/// `F x` along `axis` of the `rows x cols` matrix `x`, for factor `f`
/// (`transposed`: `F^T x`).
fn apply_axis(
    x: &[f32],
    rows: usize,
    cols: usize,
    axis: usize,
    a: Axis,
    f: &[f32],
    transposed: bool,
) -> Result<Vec<f32>> {
    if !a.tri {
        return Ok(x
            .iter()
            .enumerate()
            .map(|(k, &v)| {
                let i = if axis == 0 { k / cols } else { k % cols };
                f[i] * v
            })
            .collect());
    }
    // The factor is upper triangular: the products skip its zeros.
    let fv = View::new(f, a.d, a.d).triangular(Triangle::Upper);
    if axis == 0 {
        let fv = if transposed { fv.t() } else { fv };
        mm(fv, View::new(x, rows, cols), rows, cols)
    } else {
        // x F^T (x F when transposed).
        let fv = if transposed { fv } else { fv.t() };
        mm(View::new(x, rows, cols), fv, rows, cols)
    }
}

/// `x F^-1` along `axis` in the reference's sense: rows of the
/// `axis`-unfolding times the inverse of the upper-triangular `F` (a
/// triangular solve, in f64), or a division by the diagonal.
fn solve_axis(x: &[f32], rows: usize, cols: usize, axis: usize, a: Axis, f: &[f32]) -> Vec<f32> {
    if !a.tri {
        return x
            .iter()
            .enumerate()
            .map(|(k, &v)| {
                let i = if axis == 0 { k / cols } else { k % cols };
                v / f[i]
            })
            .collect();
    }
    let d = a.d;
    let (lines, stride_line, stride_elem) = if axis == 0 {
        (cols, 1, cols)
    } else {
        (rows, cols, 1)
    };
    let layout = Lines {
        d,
        stride_line,
        stride_elem,
    };
    // Blocks of lines are independent: on the step's thread pool they are
    // solved in parallel, each into its own buffer, then put in place.
    let starts: Vec<usize> = (0..lines).step_by(LINES).collect();
    let block = |&l0: &usize| {
        let nl = LINES.min(lines - l0);
        let mut y = vec![0.0f32; d * nl];
        solve_lines(x, f, layout, l0, nl, &mut y);
        y
    };
    let blocks: Vec<Vec<f32>> = if starts.len() > 1 && rayon::current_thread_index().is_some() {
        use rayon::prelude::*;
        starts.par_iter().map(block).collect()
    } else {
        starts.iter().map(block).collect()
    };
    let mut out = vec![0.0f32; x.len()];
    for (&l0, y) in starts.iter().zip(&blocks) {
        let nl = y.len() / d.max(1);
        for j in 0..d {
            for l in 0..nl {
                out[(l0 + l) * stride_line + j * stride_elem] = y[j * nl + l];
            }
        }
    }
    out
}

/// Lines solved together by [`solve_lines`].
const LINES: usize = 64;

/// Where the lines of a triangular solve lie in the unfolded tensor.
#[derive(Debug, Clone, Copy)]
struct Lines {
    d: usize,
    stride_line: usize,
    stride_elem: usize,
}

/// Lines `l0..l0 + nl` of [`solve_axis`], written to `out` k-major
/// (`out[j * nl + line]`, `d x nl`): the right-hand sides gathered k-major
/// in f64, solved together by [`linalg::solve_upper_lines`] (every line
/// subtracts its terms in the order k = 0, 1, ..., j - 1, products rounded
/// before the differences, as one line alone would).
fn solve_lines(x: &[f32], f: &[f32], at: Lines, l0: usize, nl: usize, out: &mut [f32]) {
    let d = at.d;
    let mut y = vec![0.0f64; d * nl];
    for j in 0..d {
        for l in 0..nl {
            y[j * nl + l] = x[(l0 + l) * at.stride_line + j * at.stride_elem] as f64;
        }
    }
    linalg::solve_upper_lines(&mut y, nl, nl, f, d);
    for (o, &y) in out.iter_mut().zip(&y) {
        *o = y as f32;
    }
}

/// `A_(k) A_(k)^T` (`tri`) or its diagonal, for the `rows x cols` matrix.
fn term(x: &[f32], rows: usize, cols: usize, axis: usize, tri: bool) -> Result<Vec<f32>> {
    let xv = View::new(x, rows, cols);
    if tri {
        // Symmetric: the GEMM computes the upper triangle and mirrors it,
        // the same bits as the full product (C[i][j] and C[j][i] add the
        // same products in the same order) for half the work.
        let (a, d) = if axis == 0 {
            (xv, rows)
        } else {
            (xv.t(), cols)
        };
        let mut c = vec![0.0f32; d * d];
        gemm(1.0, a, a.t(), 0.0, &mut c, true)?;
        return Ok(c);
    }
    let d = if axis == 0 { rows } else { cols };
    let mut out = vec![0.0f64; d];
    for (k, &v) in x.iter().enumerate() {
        let i = if axis == 0 { k / cols } else { k % cols };
        out[i] += v as f64 * v as f64;
    }
    Ok(out.into_iter().map(|v| v as f32).collect())
}

/// The reference's `norm_lower_bound` of a square matrix (f32).
fn norm_lower_bound(a: &[f32], d: usize) -> f32 {
    let max_abs = a
        .iter()
        .fold(0.0f32, |m, &x| if x.abs() > m { x.abs() } else { m });
    let div = if max_abs > 0.0 { max_abs } else { 1.0 };
    let a: Vec<f32> = a.iter().map(|&x| x / div).collect();
    let col = |j: usize| -> f64 { (0..d).map(|i| (a[i * d + j] as f64).powi(2)).sum() };
    let row = |i: usize| -> f64 { (0..d).map(|j| (a[i * d + j] as f64).powi(2)).sum() };
    let argmax = |f: &dyn Fn(usize) -> f64| -> (f32, usize) {
        let mut best = (f32::NEG_INFINITY, 0);
        for i in 0..d {
            let v = f(i) as f32;
            if v > best.0 {
                best = (v, i);
            }
        }
        best
    };
    let (value0, i) = argmax(&col);
    let (value1, j) = argmax(&row);
    let norm = crate::math::l2_norm;
    let tiny = f32::MIN_POSITIVE;
    let bound = if value0 > value1 {
        // x0 = a[:, i] @ a; bound0 = ||(x0 / ||x0||) @ a^T||
        let x0: Vec<f32> = (0..d)
            .map(|c| {
                (0..d)
                    .map(|r| a[r * d + i] as f64 * a[r * d + c] as f64)
                    .sum::<f64>() as f32
            })
            .collect();
        let n0 = norm(&x0).max(tiny);
        let y: Vec<f32> = x0.iter().map(|&x| x / n0).collect();
        let z: Vec<f32> = (0..d)
            .map(|r| {
                (0..d)
                    .map(|c| y[c] as f64 * a[r * d + c] as f64)
                    .sum::<f64>() as f32
            })
            .collect();
        norm(&z)
    } else {
        // x1 = a @ a[j, :]; bound1 = ||a^T @ (x1 / ||x1||)||
        let x1: Vec<f32> = (0..d)
            .map(|r| {
                (0..d)
                    .map(|c| a[r * d + c] as f64 * a[j * d + c] as f64)
                    .sum::<f64>() as f32
            })
            .collect();
        let n1 = norm(&x1).max(tiny);
        let y: Vec<f32> = x1.iter().map(|&x| x / n1).collect();
        let z: Vec<f32> = (0..d)
            .map(|c| {
                (0..d)
                    .map(|r| a[r * d + c] as f64 * y[r] as f64)
                    .sum::<f64>() as f32
            })
            .collect();
        norm(&z)
    };
    max_abs * bound
}

impl UpdateRule for Kron {
    type State = KronState;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut KronState) -> Result<()> {
        check_shape(p)?;
        let n = p.numel();
        let axes = self.axes(p.shape);
        let (rows, cols) = match p.shape {
            [] => (1, 1),
            [d] => (*d, 1),
            [r, c] => (*r, *c),
            _ => unreachable!("checked above"),
        };
        let nd = p.shape.len();
        let prev = st.step;
        st.step += 1;
        let t = st.step;
        // Update decision (the reference's group-wide counter, kept per parameter).
        let prob = self.probability(prev);
        let counter = st
            .update_counter
            .get_or_fill(p.name, "update_counter", 1, 0.0)?;
        let c = counter[0] as f64 + 1.0;
        let do_update = prob > 0.0 && c >= 1.0 / prob;
        counter[0] = if do_update { 0.0 } else { c as f32 };
        let u0 = SplitMix64::new(stream_key(self.seed, t, "#balance")).uniform();
        let balance = u0 < self.balance_prob && do_update;

        let sgn = descent_sign(self.maximize);
        let mut g: Vec<f32> = p.grad.iter().map(|&g| sgn * g).collect();
        if nd >= 2 && !self.weight_decouple && self.weight_decay > 0.0 {
            let wd = self.weight_decay as f32;
            for (g, &x) in g.iter_mut().zip(p.value.iter()) {
                *g += wd * x;
            }
        }
        let qlen = factors_len(&axes);
        if !st.q.is_allocated() {
            let mut q = vec![0.0f32; qlen];
            let mut off = 0;
            for a in &axes {
                if a.tri {
                    for i in 0..a.d {
                        q[off + i * a.d + i] = 1.0;
                    }
                    off += a.d * a.d;
                } else {
                    q[off..off + a.d].iter_mut().for_each(|x| *x = 1.0);
                    off += a.d;
                }
            }
            st.q = crate::tensor::StateTensor::from_slice(&q);
        }
        let mom = self.momentum as f32;
        let wmom = (1.0 - self.momentum) as f32;
        let bc1 = bias_correction(self.momentum, t) as f32;
        let m = st
            .momentum_buffer
            .get_or_fill(p.name, "momentum_buffer", n, 0.0)?;
        let mut mh = vec![0.0f32; n];
        for ((m, &g), h) in m.iter_mut().zip(&g).zip(mh.iter_mut()) {
            *m = *m * mom + wmom * g;
            *h = *m / bc1;
        }
        let q = st.q.get_or_fill(p.name, "q", qlen, 0.0)?;
        if nd > 1 && balance {
            let mut off = 0;
            let mut norms = Vec::new();
            for a in &axes {
                let len = if a.tri { a.d * a.d } else { a.d };
                norms.push(
                    q[off..off + len]
                        .iter()
                        .fold(0.0f32, |m, &x| m.max(x.abs())),
                );
                off += len;
            }
            let prod: f32 = norms.iter().product();
            // torch's pow takes a square root for the exponent 0.5.
            let gm = if axes.len() == 2 {
                prod.sqrt()
            } else {
                prod.powf(1.0 / axes.len() as f32)
            };
            let mut off = 0;
            for (a, &nk) in axes.iter().zip(&norms) {
                let len = if a.tri { a.d * a.d } else { a.d };
                let s = gm / nk;
                q[off..off + len].iter_mut().for_each(|x| *x *= s);
                off += len;
            }
        }
        if do_update {
            let mut probe = vec![0.0f32; n];
            rng::normals_f32(stream_key(self.seed, t, p.name), &mut probe);
            let h = if self.momentum_into_precondition_update {
                &mh
            } else {
                &g
            };
            let fs = split_factors(q, &axes);
            // A = Q(h); B = Q^-T(V).
            let mut a_mat = h.clone();
            let mut b_mat = probe;
            for (k, (ax, f)) in axes.iter().zip(&fs).enumerate() {
                a_mat = apply_axis(&a_mat, rows, cols, k, *ax, f, false)?;
                b_mat = solve_axis(&b_mat, rows, cols, k, *ax, f);
            }
            let mut new_q = Vec::with_capacity(qlen);
            for (k, (ax, f)) in axes.iter().zip(&fs).enumerate() {
                let t1 = term(&a_mat, rows, cols, k, ax.tri)?;
                let t2 = term(&b_mat, rows, cols, k, ax.tri)?;
                let sum: Vec<f32> = t1.iter().zip(&t2).map(|(a, b)| a + b).collect();
                let mut tmp: Vec<f32> = t1.iter().zip(&t2).map(|(a, b)| (a - b) * 0.1f32).collect();
                if ax.tri {
                    let d = ax.d;
                    for i in 0..d {
                        for j in 0..i {
                            tmp[i * d + j] = 0.0;
                        }
                    }
                    let denom = norm_lower_bound(&sum, d) + f32::MIN_POSITIVE;
                    tmp.iter_mut().for_each(|x| *x /= denom);
                    let up = |x| View::new(x, d, d).triangular(Triangle::Upper);
                    let prod = mm(up(&tmp), up(f), d, d)?;
                    new_q.extend(f.iter().zip(&prod).map(|(q, t)| q - t));
                } else {
                    let denom = sum.iter().fold(0.0f32, |m, &x| m.max(x.abs())) + f32::MIN_POSITIVE;
                    new_q.extend(f.iter().zip(&tmp).map(|(&q, &t)| q - (t * q) / denom));
                }
            }
            q.copy_from_slice(&new_q);
        }
        // u = Q^T Q (mh) along every dimension.
        let fs = split_factors(q, &axes);
        let mut u = mh;
        for (k, (ax, f)) in axes.iter().zip(&fs).enumerate() {
            u = apply_axis(&u, rows, cols, k, *ax, f, false)?;
        }
        for (k, (ax, f)) in axes.iter().zip(&fs).enumerate() {
            u = apply_axis(&u, rows, cols, k, *ax, f, true)?;
        }
        let ss: f64 = u.iter().map(|&x| x as f64 * x as f64).sum();
        let rms = ((ss as f32) / n.max(1) as f32).sqrt();
        let s = ((1.0 / (rms + 1e-6)) * 1.1f32).min(1.0);
        let neg_lr = (-self.lr) as f32;
        let wd = self.weight_decay as f32;
        let decoupled = self.weight_decay != 0.0 && nd >= 2 && self.weight_decouple;
        for (x, &u) in p.value.iter_mut().zip(&u) {
            let mut u = u * s;
            if decoupled {
                u += wd * *x;
            }
            *x += neg_lr * u;
        }
        Ok(())
    }

    fn check_params(&self, params: &[ParamMut<'_>]) -> Result<()> {
        params.iter().try_for_each(check_shape)
    }

    fn update_all(
        &self,
        info: &StepInfo,
        params: &mut [ParamMut<'_>],
        states: &mut StateStore<KronState>,
    ) -> Option<Result<()>> {
        Some(
            self.check_params(params)
                .and_then(|()| crate::exec::run_per_param(self, info, params, states)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The triangular solve one line at a time, as the formula reads.
    fn plain_solve(x: &[f32], rows: usize, cols: usize, axis: usize, f: &[f32]) -> Vec<f32> {
        let (d, lines) = if axis == 0 {
            (rows, cols)
        } else {
            (cols, rows)
        };
        let at = |l: usize, j: usize| {
            if axis == 0 {
                j * cols + l
            } else {
                l * cols + j
            }
        };
        let mut out = vec![0.0f32; x.len()];
        for l in 0..lines {
            let mut y = vec![0.0f64; d];
            for j in 0..d {
                let mut s = x[at(l, j)] as f64;
                for k in 0..j {
                    s -= y[k] * f[k * d + j] as f64;
                }
                y[j] = s / f[j * d + j] as f64;
                out[at(l, j)] = y[j] as f32;
            }
        }
        out
    }

    fn upper_triangular(d: usize, rng: &mut SplitMix64) -> Vec<f32> {
        let mut f = vec![0.0f32; d * d];
        for i in 0..d {
            f[i * d + i] = 1.0 + rng.uniform() as f32;
            for j in i + 1..d {
                f[i * d + j] = (rng.normal() * 0.1) as f32;
            }
        }
        f
    }

    #[test]
    fn blocked_solve_on_a_pool_equals_one_line_at_a_time() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let mut rng = SplitMix64::new(7);
        // Several blocks of lines, a last block cut short, and a single line.
        for (rows, cols) in [(70, 150), (150, 70), (1, 65), (200, 1), (9, 9)] {
            let x: Vec<f32> = (0..rows * cols).map(|_| rng.normal() as f32).collect();
            for axis in 0..2 {
                let d = if axis == 0 { rows } else { cols };
                let f = upper_triangular(d, &mut rng);
                let a = Axis { d, tri: true };
                let want = plain_solve(&x, rows, cols, axis, &f);
                let alone = solve_axis(&x, rows, cols, axis, a, &f);
                let pooled = pool.install(|| solve_axis(&x, rows, cols, axis, a, &f));
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&alone), bits(&want), "{rows}x{cols}, axis {axis}");
                assert_eq!(
                    bits(&pooled),
                    bits(&want),
                    "{rows}x{cols}, axis {axis}, on a pool"
                );
            }
        }
    }
}
