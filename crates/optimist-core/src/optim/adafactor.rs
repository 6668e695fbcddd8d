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
//! accumulates in f32), products are rounded on their own (torch's CPU
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
use crate::math::{descent_sign, l2_norm, lerp, maximum, WeightDecay};
use crate::optimizer::{OptimizerConfig, StepInfo, UpdateRule};
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

    fn validate(&self) -> Result<()> {
        v::non_negative(Self::NAME, "lr", self.lr)?;
        v::non_positive(Self::NAME, "beta2_decay", self.beta2_decay)?;
        if let Some(eps1) = self.eps.0 {
            v::non_negative(Self::NAME, "eps[0]", eps1)?;
        }
        v::non_negative(Self::NAME, "eps[1]", self.eps.1)?;
        v::not_below(Self::NAME, "d", self.d, 1.0)?;
        v::non_negative(Self::NAME, "weight_decay", self.weight_decay)
    }
}

/// The second-moment estimate of one parameter.
enum Estimate<'a> {
    /// One value per element.
    Full(&'a [f32]),
    /// Row and column factors of each [rows, cols] matrix of a batch, and
    /// each matrix's clamped row mean.
    Factored {
        row: &'a [f32],
        col: &'a [f32],
        row_mean: &'a [f32],
        rows: usize,
        cols: usize,
    },
}

impl Estimate<'_> {
    /// Calls `f(i, v_i)` for every element i in order.
    #[inline(always)]
    fn visit(&self, mut f: impl FnMut(usize, f32)) {
        match *self {
            Estimate::Full(v) => v.iter().enumerate().for_each(|(i, &v)| f(i, v)),
            Estimate::Factored {
                row,
                col,
                row_mean,
                rows,
                cols,
            } => {
                let mut i = 0;
                for (br, &rv) in row.iter().enumerate() {
                    let b = br / rows;
                    let rm = row_mean[b];
                    for &cv in &col[b * cols..(b + 1) * cols] {
                        f(i, (rv * cv) / rm);
                        i += 1;
                    }
                }
            }
        }
    }
}

/// Mixes the row and column means of g² into the factors of every matrix of
/// the batch and returns each matrix's row-factor mean clamped at `eps1`.
fn update_factors(
    grad: &[f32],
    row: &mut [f32],
    col: &mut [f32],
    (rows, cols): (usize, usize),
    w: f32,
    eps1: f32,
) -> Vec<f32> {
    let (rows_f, cols_f) = (rows as f32, cols as f32);
    let mut col_acc = vec![0.0f64; cols];
    let blocks = grad.chunks_exact(rows * cols);
    let factors = row.chunks_exact_mut(rows).zip(col.chunks_exact_mut(cols));
    let mut row_mean = Vec::with_capacity(grad.len() / (rows * cols));
    for (block, (row, col)) in blocks.zip(factors) {
        col_acc.fill(0.0);
        for (grow, rv) in block.chunks_exact(cols).zip(row.iter_mut()) {
            let mut s = 0.0f64;
            for (&g, acc) in grow.iter().zip(col_acc.iter_mut()) {
                let gg = g as f64 * g as f64;
                s += gg;
                *acc += gg;
            }
            let norm = s.sqrt() as f32;
            *rv = lerp(*rv, norm * norm / cols_f, w);
        }
        for (cv, &s) in col.iter_mut().zip(&col_acc) {
            let norm = s.sqrt() as f32;
            *cv = lerp(*cv, norm * norm / rows_f, w);
        }
        let sum = row.iter().map(|&x| x as f64).sum::<f64>() as f32;
        row_mean.push(maximum(sum / rows_f, eps1));
    }
    row_mean
}

impl UpdateRule for Adafactor {
    type State = AdafactorState;

    fn update(
        &self,
        _info: &StepInfo,
        p: &mut ParamMut<'_>,
        st: &mut AdafactorState,
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
        let w = t.powf(self.beta2_decay) as f32;
        let rho_t = self.lr.min(1.0 / t.powf(0.5));
        let rms = l2_norm(p.value) as f64 / (n as f64).powf(0.5);
        let alpha = self.eps.1.max(rms) * rho_t;
        let sgn = descent_sign(self.maximize);

        let row_mean;
        let estimate = match matrix {
            Some((rows, cols)) => {
                let batch = n / (rows * cols);
                let row = st
                    .row_var
                    .get_or_fill(p.name, "row_var", batch * rows, 0.0)?;
                let col = st
                    .col_var
                    .get_or_fill(p.name, "col_var", batch * cols, 0.0)?;
                row_mean = update_factors(p.grad, row, col, (rows, cols), w, eps1 as f32);
                Estimate::Factored {
                    row,
                    col,
                    row_mean: &row_mean,
                    rows,
                    cols,
                }
            }
            None => {
                let var = st.variance.get_or_fill(p.name, "variance", n, 0.0)?;
                for (v, &g) in var.iter_mut().zip(p.grad.iter()) {
                    let g = sgn * g;
                    *v = lerp(*v, g * g, w);
                }
                Estimate::Full(var)
            }
        };

        // U = rsqrt(max(V, eps1^2)) * g, formed identically in both passes.
        let floor = (eps1 * eps1) as f32;
        let grad = &*p.grad;
        let u = |i: usize, v: f32| (1.0 / maximum(v, floor).sqrt()) * (sgn * grad[i]);
        let mut sum_sq = 0.0f64;
        estimate.visit(|i, v| {
            let u = u(i, v) as f64;
            sum_sq += u * u;
        });
        let u_norm = sum_sq.sqrt() as f32 as f64;
        let denom = 1.0f64.max(u_norm / ((n as f64).powf(0.5) * self.d));
        let coef = (-alpha / denom) as f32;
        let wd = WeightDecay::new(self.weight_decay, true, self.lr);
        let value = &mut *p.value;
        estimate.visit(|i, v| {
            let u = wd.apply(&mut value[i], u(i, v));
            value[i] += coef * u;
        });
        Ok(())
    }
}
