//! Adafactor as torch implements it: a factored second moment for tensors
//! with two or more dimensions, a relative step size, update clipping and no
//! first moment.
//!
//! **Reference:** `torch.optim.Adafactor` (torch 2.15.0), single-tensor path.
//! **Paper:** Shazeer & Stern, "Adafactor: Adaptive Learning Rates with
//! Sublinear Memory Cost", ICML 2018 (arXiv:1804.04235).
//!
//! Update rule for a parameter p with n elements at step t (torch's order of
//! operations):
//! ```text
//! g <- -g                                     if maximize
//! w      = t^beta2_decay                      (1 - beta2_t)
//! rho_t  = min(lr, 1 / sqrt(t))
//! alpha  = max(eps2, ||p|| / sqrt(n)) * rho_t (p before weight decay)
//! p <- p * (1 - lr * weight_decay)            (decoupled)
//! if p has 2+ dims, shape [..., R, C] (leading dims are a batch):
//!     R_row <- lerp(R_row, ||g[.., r, :]||^2 / C, w)     shape [..., R, 1]
//!     C_col <- lerp(C_col, ||g[.., :, c]||^2 / R, w)     shape [..., 1, C]
//!     V = (R_row @ C_col) / max(mean over r of R_row, eps1)
//! else (vectors and scalars):
//!     V <- lerp(V, g * g, w);  V = V
//! U = (1 / sqrt(max(V, eps1^2))) * g
//! p <- p + (-alpha / max(1, ||U|| / (sqrt(n) * d))) * U
//! ```
//! The row and column means are formed as torch forms them: the norm of the
//! row (or column) rounded to f32, squared in f32, divided by the length.
//! Norms and sums are accumulated in f64 and rounded once to f32 (torch
//! accumulates in f32), in a fixed order that does not depend on the thread
//! count: g² per row and column over tiles of a column strip of up to 4096
//! columns by up to 262144 / width rows (a column sums its rows in order
//! within a tile, a row its strip in 8 interleaved lanes; tile partials are
//! added in tile order), ||p|| over the same tiles (vectors: blocks of 16384
//! elements), ||U|| over blocks of 16384 elements, 8 lanes each, partials
//! added in block order. The simple path (`update`) runs the same tiles and
//! blocks in turn on one thread; the fast path (`update_all`) runs the
//! parameters, and the tiles and blocks of each, in parallel: same values.
//! A step is three passes over a matrix (sums, ||U||, step) and two over a
//! vector (second moment with the sums, step), each vectorized: compiled
//! for AVX-512 when the CPU has AVX-512F (else AVX2, else the baseline),
//! with the f64 lane sums of g², p² and U² written with AVX-512 intrinsics
//! (one register holds the 8 lanes; [`crate::sqsum`]). The intrinsics add
//! the same values into the same lanes in the same order as the portable
//! loops (products rounded on their own, no FMA), so every value is the
//! same on every instruction set (a unit test compares them bit for bit);
//! the summation and rounding were not changed. Products are rounded on their own (torch's CPU
//! kernels fuse the multiply-adds of lerp and add-with-alpha into FMA
//! instructions) and sqrt is IEEE (MKL builds of torch take f32 square roots
//! from MKL), so results can differ from torch's in the last bits (measured
//! in docs/torch-catalogue.md).
//!
//! Defaults: lr = 1e-2, beta2_decay = -0.8, eps = (None, 1e-3) where
//! eps1 = None means the f32 machine epsilon (1.1920929e-07), d = 1.0,
//! weight_decay = 0.0, maximize = false. torch rejects lr < 0,
//! beta2_decay > 0, eps1 < 0, eps2 < 0, d < 1 and weight_decay < 0.
//!
//! Differences from the paper (all torch's): lr caps the relative step
//! (the paper uses 0.01), eps1 enters at the estimate and the update rather
//! than being added to g², and weight decay is decoupled and scaled by lr.
//! State per parameter: `row_var` and `col_var` (factored, R and C values
//! per batch entry) or `variance` (n values).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::math::{descent_sign, lerp, maximum, WeightDecay};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::exec::{run_blocked, simd, Blocks};
use crate::sqsum::{add_sq, add_sq_row, lanes_sum, LANES};
use crate::state::StateStore;
use crate::tensor::ParamMut;
use crate::validate as v;

crate::param_state! {
    /// Adafactor state: the full second moment of a vector, or the row and
    /// column factors of a tensor with two or more dimensions.
    pub struct AdafactorState { variance; unsized: row_var, col_var }
}

/// Hyperparameters of `torch.optim.Adafactor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adafactor {
    /// Learning rate: the cap of the relative step and the decay scale (default 1e-2).
    pub lr: f64,
    /// Exponent of the second-moment weight `t^beta2_decay` (default -0.8).
    pub beta2_decay: f64,
    /// (eps1, eps2): the floor of the estimate (None: f32 machine epsilon) and
    /// the floor of the parameter RMS (default (None, 1e-3)).
    pub eps: (Option<f64>, f64),
    /// Clipping threshold of the update RMS (default 1.0).
    pub d: f64,
    /// Decoupled weight decay, `p *= 1 - lr * weight_decay` (default 0).
    pub weight_decay: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Adafactor {
    fn default() -> Self {
        Adafactor {
            lr: 1e-2,
            beta2_decay: -0.8,
            eps: (None, 1e-3),
            d: 1.0,
            weight_decay: 0.0,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Adafactor {
    const NAME: &'static str = "adafactor";
    const REFERENCE: &'static str = "torch.optim.Adafactor (torch 2.15.0)";
    const PAPER: &'static str = "Shazeer & Stern, Adafactor: Adaptive Learning Rates with Sublinear Memory Cost, ICML 2018 (arXiv:1804.04235)";
    const SUMMARY: &'static str =
        "factored second moment for matrices, relative step size and update clipping";

    fn suggested() -> serde_json::Value {
        serde_json::json!({"lr": 1e-2})
    }

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), non_positive(beta2_decay))?;
        if let Some(eps1) = self.eps.0 {
            v::non_negative(Self::NAME, "eps[0]", eps1)?;
        }
        v::non_negative(Self::NAME, "eps[1]", self.eps.1)?;
        crate::checks!(self, not_below(d; 1.0), non_negative(weight_decay))
    }
}

/// Elements per block of the elementwise passes and of the partial sums of
/// a vector's norms (and of the update norm of a matrix).
const BLOCK: usize = crate::exec::CHUNK;

/// Columns per strip of a matrix tile in the factor pass.
const STRIP: usize = 4096;

/// Elements per matrix tile in the factor pass (rows per tile: this over
/// the strip width, at least one).
const TILE: usize = 16 * crate::exec::CHUNK;

/// Per-step constants of one parameter.
#[derive(Debug, Clone, Copy)]
struct Consts {
    /// Weight of the new g² in the lerp, `t^beta2_decay`.
    w: f32,
    /// Floor of the estimate, eps1².
    floor: f32,
    /// +1, or -1 when maximizing.
    sgn: f32,
}

impl Consts {
    /// `U = rsqrt(max(V, eps1^2)) * g`.
    #[inline(always)]
    fn u(&self, v: f32, g: f32) -> f32 {
        (1.0 / maximum(v, self.floor).sqrt()) * (self.sgn * g)
    }
}

/// Values per run of the U buffer (a multiple of [`LANES`]).
const SUB: usize = 1024;

/// A rectangle of one matrix of the batch: rows `r0..r1`, columns `c0..c1`.
#[derive(Debug, Clone, Copy)]
struct Tile {
    b: usize,
    r0: usize,
    r1: usize,
    c0: usize,
    c1: usize,
}

/// The tiles of a batch of [rows, cols] matrices, in their fixed order
/// (matrix, row block, column strip); they do not depend on threads.
fn tiles(batch: usize, rows: usize, cols: usize) -> Vec<Tile> {
    let w = cols.min(STRIP);
    let h = (TILE / w).max(1);
    let mut out = Vec::new();
    for b in 0..batch {
        for r0 in (0..rows).step_by(h) {
            for c0 in (0..cols).step_by(w) {
                out.push(Tile {
                    b,
                    r0,
                    r1: (r0 + h).min(rows),
                    c0,
                    c1: (c0 + w).min(cols),
                });
            }
        }
    }
    out
}

/// Partial sums of one tile: g² per row and per column, and p².
struct TileSums {
    rows: Vec<f64>,
    cols: Vec<f64>,
    p_sq: f64,
}

/// Factor pass over one tile: per-row and per-column sums of g² (rows in
/// order for the columns, lanes for the rows) and the sum of p².
fn tile_sums(p: &[f32], g: &[f32], shape: (usize, usize), t: Tile) -> TileSums {
    simd!(avx512; fn(p: &[f32], g: &[f32], shape: (usize, usize), t: Tile) -> TileSums {
        tile_sums_impl(p, g, shape, t, add_sq_row)
    })
}

/// [`tile_sums`] with `row` the one pass over each row of the tile
/// ([`add_sq_row`]: g² into the row's lanes and the columns, p² into the
/// p lanes).
#[inline(always)]
fn tile_sums_impl(
    p: &[f32],
    g: &[f32],
    (rows, cols): (usize, usize),
    t: Tile,
    row: impl Fn(&[f32], &[f32], &mut [f64], &mut [f64; LANES], &mut [f64; LANES]),
) -> TileSums {
    let w = t.c1 - t.c0;
    let mut out = TileSums {
        rows: Vec::with_capacity(t.r1 - t.r0),
        cols: vec![0.0; w],
        p_sq: 0.0,
    };
    let mut pl = [0.0f64; LANES];
    for r in t.r0..t.r1 {
        let base = (t.b * rows + r) * cols;
        let span = base + t.c0..base + t.c1;
        let mut rl = [0.0f64; LANES];
        row(&g[span.clone()], &p[span], &mut out.cols, &mut rl, &mut pl);
        out.rows.push(lanes_sum(&rl));
    }
    out.p_sq = lanes_sum(&pl);
    out
}

/// The factored estimate of a batch of [rows, cols] matrices.
#[derive(Clone, Copy)]
struct Factors<'a> {
    row: &'a [f32],
    col: &'a [f32],
    /// Each matrix's row-factor mean clamped at eps1.
    row_mean: &'a [f32],
    rows: usize,
    cols: usize,
}

/// Sum of U² over the block of the flattened parameter starting at `off`,
/// in lanes restarted at each row segment's start.
fn factored_u_sq(k: &Consts, f: &Factors<'_>, g: &[f32], off: usize) -> f64 {
    simd!(avx512; fn(k: &Consts, f: &Factors<'_>, g: &[f32], off: usize) -> f64 {
        factored_u_sq_impl(k, f, g, off, add_sq)
    })
}

/// [`factored_u_sq`] with `sq` adding the squares of a run into the lanes.
#[inline(always)]
fn factored_u_sq_impl(
    k: &Consts,
    f: &Factors<'_>,
    g: &[f32],
    off: usize,
    sq: impl Fn(&[f32], &mut [f64; LANES]),
) -> f64 {
    let mut lanes = [0.0f64; LANES];
    let mut i = 0;
    while i < g.len() {
        let (br, j0) = ((off + i) / f.cols, (off + i) % f.cols);
        let l = (f.cols - j0).min(g.len() - i);
        let b = br / f.rows;
        let (rv, rm) = (f.row[br], f.row_mean[b]);
        let cs = &f.col[b * f.cols + j0..b * f.cols + j0 + l];
        let gs = &g[i..i + l];
        // U in runs of SUB values, then their squares into the lanes
        // (SUB is a multiple of LANES: element j still goes to lane j % LANES).
        let mut buf = [0.0f32; SUB];
        for (gs, cs) in gs.chunks(SUB).zip(cs.chunks(SUB)) {
            let m = gs.len();
            let (buf, cs) = (&mut buf[..m], &cs[..m]);
            for ((u, &g), &c) in buf.iter_mut().zip(gs).zip(cs) {
                *u = k.u((rv * c) / rm, g);
            }
            sq(buf, &mut lanes);
        }
        i += l;
    }
    lanes_sum(&lanes)
}

/// The step over the block of the flattened parameter starting at `off`.
fn factored_step(
    k: &Consts,
    f: &Factors<'_>,
    x: &mut [f32],
    g: &[f32],
    off: usize,
    wd: WeightDecay,
    coef: f32,
) {
    simd!(avx512; fn(k: &Consts, f: &Factors<'_>, x: &mut [f32], g: &[f32], off: usize, wd: WeightDecay, coef: f32) {
        factored_step_impl(k, f, x, g, off, wd, coef)
    })
}

#[inline(always)]
fn factored_step_impl(
    k: &Consts,
    f: &Factors<'_>,
    x: &mut [f32],
    g: &[f32],
    off: usize,
    wd: WeightDecay,
    coef: f32,
) {
    let mut i = 0;
    let n = x.len();
    let g = &g[..n];
    while i < n {
        let (br, j0) = ((off + i) / f.cols, (off + i) % f.cols);
        let l = (f.cols - j0).min(n - i);
        let b = br / f.rows;
        let (rv, rm) = (f.row[br], f.row_mean[b]);
        let cs = &f.col[b * f.cols + j0..b * f.cols + j0 + l];
        let (xs, gs) = (&mut x[i..i + l], &g[i..i + l]);
        for ((x, &g), &c) in xs.iter_mut().zip(gs).zip(cs) {
            let u = k.u((rv * c) / rm, g);
            *x = wd.apply_to(*x, u).0 + coef * u;
        }
        i += l;
    }
}

/// Vector pass 1 over one block: the second moment, and the sums of p²
/// and U².
fn vector_moments(k: &Consts, x: &[f32], g: &[f32], v: &mut [f32]) -> (f64, f64) {
    simd!(avx512; fn(k: &Consts, x: &[f32], g: &[f32], v: &mut [f32]) -> (f64, f64) {
        vector_moments_impl(k, x, g, v, add_sq)
    })
}

/// [`vector_moments`] with `sq` adding the squares of a run into the lanes.
#[inline(always)]
fn vector_moments_impl(
    k: &Consts,
    x: &[f32],
    g: &[f32],
    v: &mut [f32],
    sq: impl Fn(&[f32], &mut [f64; LANES]),
) -> (f64, f64) {
    let n = x.len();
    let (g, v) = (&g[..n], &mut v[..n]);
    let mut pl = [0.0f64; LANES];
    let mut ul = [0.0f64; LANES];
    let mut buf = [0.0f32; SUB];
    let runs = x.chunks(SUB).zip(g.chunks(SUB)).zip(v.chunks_mut(SUB));
    for ((x, g), v) in runs {
        let m = x.len();
        let (g, v, buf) = (&g[..m], &mut v[..m], &mut buf[..m]);
        for (v, &g) in v.iter_mut().zip(g) {
            let sg = k.sgn * g;
            *v = lerp(*v, sg * sg, k.w);
        }
        for ((u, &v), &g) in buf.iter_mut().zip(&*v).zip(g) {
            *u = k.u(v, g);
        }
        sq(x, &mut pl);
        sq(buf, &mut ul);
    }
    (lanes_sum(&pl), lanes_sum(&ul))
}

/// Vector pass 2 over one block: the step.
fn vector_step(k: &Consts, x: &mut [f32], g: &[f32], v: &[f32], wd: WeightDecay, coef: f32) {
    simd!(avx512; fn(k: &Consts, x: &mut [f32], g: &[f32], v: &[f32], wd: WeightDecay, coef: f32) {
        vector_step_impl(k, x, g, v, wd, coef)
    })
}

#[inline(always)]
fn vector_step_impl(k: &Consts, x: &mut [f32], g: &[f32], v: &[f32], wd: WeightDecay, coef: f32) {
    let n = x.len();
    let (g, v) = (&g[..n], &v[..n]);
    for ((x, &g), &v) in x.iter_mut().zip(g).zip(v) {
        let u = k.u(v, g);
        *x = wd.apply_to(*x, u).0 + coef * u;
    }
}

impl Adafactor {
    /// One parameter: the sums (factors, p², U²) over fixed blocks and
    /// tiles, then the step; on the current thread pool when `parallel`
    /// (and called from one). Partial sums are added in block and tile
    /// order, so every value is the same with or without threads.
    fn update_param(
        &self,
        p: &mut ParamMut<'_>,
        st: &mut AdafactorState,
        blocks: Blocks,
    ) -> Result<()> {
        let n = p.numel();
        let matrix = match *p.shape {
            [.., r, c] => Some((r, c)),
            _ => None,
        };
        let wrong = |buffer: &str| {
            Error::Shape(format!(
                "state of '{}': buffer '{buffer}' does not fit a parameter of shape {:?}",
                p.name, p.shape
            ))
        };
        match matrix {
            Some(_) if st.variance.is_allocated() => return Err(wrong("variance")),
            None if st.row_var.is_allocated() => return Err(wrong("row_var")),
            None if st.col_var.is_allocated() => return Err(wrong("col_var")),
            _ => {}
        }
        st.step += 1;
        if n == 0 {
            return Ok(());
        }
        let t = st.step as f64;
        let eps1 = self.eps.0.unwrap_or(f32::EPSILON as f64);
        let rho_t = self.lr.min(1.0 / t.powf(0.5));
        let k = Consts {
            w: t.powf(self.beta2_decay) as f32,
            floor: (eps1 * eps1) as f32,
            sgn: descent_sign(self.maximize),
        };
        let wd = WeightDecay::new(self.weight_decay, true, self.lr);
        // The step's coefficient from the sums of p² and U².
        let coef = |p_sq: f64, u_sq: f64| {
            let rms = (p_sq.sqrt() as f32) as f64 / (n as f64).powf(0.5);
            let alpha = self.eps.1.max(rms) * rho_t;
            let u_norm = u_sq.sqrt() as f32 as f64;
            let denom = 1.0f64.max(u_norm / ((n as f64).powf(0.5) * self.d));
            (-alpha / denom) as f32
        };
        let x = &mut *p.value;
        let g = &*p.grad;

        let Some((rows, cols)) = matrix else {
            let v = st.variance.get_or_fill(p.name, "variance", n, 0.0)?;
            let sums = blocks.map(
                x.chunks(BLOCK).zip(g.chunks(BLOCK)).zip(v.chunks_mut(BLOCK)),
                |((x, g), v)| vector_moments(&k, x, g, v),
            );
            let (p_sq, u_sq) = sums
                .iter()
                .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
            let c = coef(p_sq, u_sq);
            blocks.map(
                x.chunks_mut(BLOCK).zip(g.chunks(BLOCK)).zip(v.chunks(BLOCK)),
                |((x, g), v)| vector_step(&k, x, g, v, wd, c),
            );
            return Ok(());
        };

        let batch = n / (rows * cols);
        let row = st
            .row_var
            .get_or_fill(p.name, "row_var", batch * rows, 0.0)?;
        let col = st
            .col_var
            .get_or_fill(p.name, "col_var", batch * cols, 0.0)?;
        // Pass 1: g² per row and column, p², tile by tile.
        let tl = tiles(batch, rows, cols);
        let x_read = &*x;
        let sums = blocks.map(tl.iter(), |t: &Tile| tile_sums(x_read, g, (rows, cols), *t));
        let mut row_sq = vec![0.0f64; batch * rows];
        let mut col_sq = vec![0.0f64; batch * cols];
        let mut p_sq = 0.0f64;
        for (t, s) in tl.iter().zip(&sums) {
            p_sq += s.p_sq;
            for (acc, &x) in row_sq[t.b * rows + t.r0..].iter_mut().zip(&s.rows) {
                *acc += x;
            }
            for (acc, &x) in col_sq[t.b * cols + t.c0..].iter_mut().zip(&s.cols) {
                *acc += x;
            }
        }
        // The factors: the norm of each row (column) rounded to f32 and
        // squared, over its length, mixed in; each matrix's row mean.
        let (rows_f, cols_f) = (rows as f32, cols as f32);
        for (rv, &s) in row.iter_mut().zip(&row_sq) {
            let norm = s.sqrt() as f32;
            *rv = lerp(*rv, norm * norm / cols_f, k.w);
        }
        for (cv, &s) in col.iter_mut().zip(&col_sq) {
            let norm = s.sqrt() as f32;
            *cv = lerp(*cv, norm * norm / rows_f, k.w);
        }
        let row_mean: Vec<f32> = row
            .chunks_exact(rows)
            .map(|r| {
                let sum = r.iter().map(|&x| x as f64).sum::<f64>() as f32;
                maximum(sum / rows_f, eps1 as f32)
            })
            .collect();
        let f = Factors {
            row,
            col,
            row_mean: &row_mean,
            rows,
            cols,
        };
        // Pass 2: the norm of U; pass 3: the step.
        let u_sq = blocks
            .map(g.chunks(BLOCK).enumerate(), |(i, g)| {
                factored_u_sq(&k, &f, g, i * BLOCK)
            })
            .iter()
            .fold(0.0, |a, &x| a + x);
        let c = coef(p_sq, u_sq);
        blocks.map(
            x.chunks_mut(BLOCK).zip(g.chunks(BLOCK)).enumerate(),
            |(i, (x, g))| factored_step(&k, &f, x, g, i * BLOCK, wd, c),
        );
        Ok(())
    }
}

impl UpdateRule for Adafactor {
    type State = AdafactorState;
    const BLOCKED: bool = true;

    /// One parameter on one thread (the simple path).
    fn update(
        &self,
        _info: &StepInfo,
        p: &mut ParamMut<'_>,
        st: &mut AdafactorState,
    ) -> Result<()> {
        self.update_param(p, st, Blocks::SEQUENTIAL)
    }

    /// Every parameter through the shared per-parameter loop
    /// ([`run_blocked`]: the parameters, and the tiles and blocks of each,
    /// in parallel on the fast path); same values as the simple path.
    fn update_all(
        &self,
        info: &StepInfo,
        params: &mut [ParamMut<'_>],
        states: &mut StateStore<AdafactorState>,
    ) -> Option<Result<()>> {
        Some(run_blocked(info, params, states, |p, st, blocks| {
            self.update_param(p, st, blocks)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        crate::sqsum::test_values(n, seed, 8)
    }

    /// The passes built for the CPU's widest instruction set (AVX-512
    /// sums where available) give the same bits as the portable code, on
    /// tiles with and without a remainder of columns and rows.
    #[test]
    fn dispatched_passes_equal_portable_passes() {
        let portable = crate::sqsum::add_sq_lanes;
        for (batch, rows, cols) in [(1, 37, 29), (2, 5, 4100), (1, 300, 64), (3, 7, 1)] {
            let n = batch * rows * cols;
            let (p, g) = (values(n, 1), values(n, 2));
            for t in tiles(batch, rows, cols) {
                let a = tile_sums_impl(&p, &g, (rows, cols), t, crate::sqsum::add_sq_row_lanes);
                let b = tile_sums(&p, &g, (rows, cols), t);
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a.rows), bits(&b.rows));
                assert_eq!(bits(&a.cols), bits(&b.cols));
                assert_eq!(a.p_sq.to_bits(), b.p_sq.to_bits());
            }
            let k = Consts {
                w: 0.3,
                floor: 1e-12,
                sgn: 1.0,
            };
            let row: Vec<f32> = values(batch * rows, 3).iter().map(|x| x.abs()).collect();
            let col: Vec<f32> = values(batch * cols, 4).iter().map(|x| x.abs()).collect();
            let row_mean = vec![0.7f32; batch];
            let f = Factors {
                row: &row,
                col: &col,
                row_mean: &row_mean,
                rows,
                cols,
            };
            for off in [0, 3, n / 2] {
                let a = factored_u_sq_impl(&k, &f, &g[off..], off, portable);
                let b = factored_u_sq(&k, &f, &g[off..], off);
                assert_eq!(a.to_bits(), b.to_bits());
            }
            let (mut v1, mut v2) = (values(n, 5), values(n, 5));
            let a = vector_moments_impl(&k, &p, &g, &mut v1, portable);
            let b = vector_moments(&k, &p, &g, &mut v2);
            assert_eq!(
                (a.0.to_bits(), a.1.to_bits()),
                (b.0.to_bits(), b.1.to_bits())
            );
            assert_eq!(v1, v2);
        }
    }
}
