//! SM3: memory-efficient adaptive steps from one accumulator per index of
//! each dimension (a row max and a column max for a matrix).
//!
//! **Reference:** `pytorch_optimizer.SM3` (pytorch-optimizer 4.1.0), dense
//! gradients. **Paper:** Anil, Gupta, Koren & Singer, "Memory-Efficient
//! Adaptive Optimization", NeurIPS 2019 (arXiv:1901.11150).
//!
//! Update rule for a parameter of shape `(d_0, ..., d_{r-1})` with
//! accumulators `acc_k` (one value per index of dimension k, zero at first):
//! ```text
//! g     <- -g                                          if maximize
//! nu[i] <- min_k acc_k[i_k]                            (per element, i = (i_0, ..., i_{r-1}))
//! nu    <- beta nu                                     if beta > 0
//! nu    <- nu + (1 - beta) g g
//! acc_k <- max(acc_k, max_{other dims} nu)             if beta > 0
//! acc_k <- max_{other dims} nu                         otherwise
//! u     <- g / sqrt(nu + eps)
//! m     <- lerp(m, u, 1 - momentum); u <- m            if momentum > 0
//! p     <- p - lr u
//! ```
//! A 0-D parameter (`shape = []`) has one accumulator that takes `nu`.
//!
//! Defaults: lr = 0.1, momentum = 0, beta = 0, eps = 1e-30,
//! maximize = false. Validation as the reference: lr >= 0, momentum in
//! [0, 1), beta in [0, 1], eps >= 0.
//!
//! The accumulators of all dimensions are kept in one state buffer,
//! `accumulators` (`d_0 + ... + d_{r-1}` values, dimension 0 first); the
//! momentum buffer is allocated only when `momentum > 0` (the reference
//! keeps a zero one otherwise). Sparse gradients (the reference's other
//! path) do not exist here.


// Index loops over several arrays at once, as in the reference's formulas.
#![allow(clippy::needless_range_loop)]
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::math::{descent_sign, maximum, Ema};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;

crate::param_state! {
    /// SM3 state: the momentum buffer and the per-dimension accumulators.
    pub struct Sm3State { momentum_buffer; unsized: accumulators }
}

/// Hyperparameters of `pytorch_optimizer.SM3`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sm3 {
    /// Learning rate (default 0.1).
    pub lr: f64,
    /// Momentum of the update, in [0, 1) (default 0).
    pub momentum: f64,
    /// Decay of the squared-gradient accumulators, in [0, 1] (default 0: sums).
    pub beta: f64,
    /// Added to the accumulator under the square root (default 1e-30).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Sm3 {
    fn default() -> Self {
        Sm3 {
            lr: 0.1,
            momentum: 0.0,
            beta: 0.0,
            eps: 1e-30,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Sm3 {
    const NAME: &'static str = "sm3";
    const REFERENCE: &'static str = "pytorch_optimizer.SM3 (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Anil, Gupta, Koren & Singer, Memory-Efficient Adaptive Optimization, NeurIPS 2019 (arXiv:1901.11150)";
    const SUMMARY: &'static str =
        "adaptive steps from per-row / per-column max accumulators (sublinear memory)";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), unit_interval_open(momentum), unit_interval(beta),
            non_negative(eps))
    }
}

impl UpdateRule for Sm3 {
    type State = Sm3State;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut Sm3State) -> Result<()> {
        let n = p.numel();
        let shape: Vec<usize> = p.shape.to_vec();
        if shape.iter().product::<usize>() != n {
            return Err(Error::Shape(format!(
                "sm3: parameter '{}' has shape {shape:?} but {n} values",
                p.name
            )));
        }
        st.step += 1;
        let rank = shape.len();
        let acc_len: usize = if rank == 0 { 1 } else { shape.iter().sum() };
        let acc = st
            .accumulators
            .get_or_fill(p.name, "accumulators", acc_len, 0.0)?;
        // Offsets of each dimension's accumulator inside `acc`.
        let mut offsets = Vec::with_capacity(rank);
        let mut off = 0usize;
        for &d in &shape {
            offsets.push(off);
            off += d;
        }
        let sgn = descent_sign(self.maximize);
        let beta = self.beta as f32;
        let w = (1.0 - self.beta) as f32;
        let eps = self.eps as f32;
        let mut nu = vec![0.0f32; n];
        let mut idx = vec![0usize; rank];
        // nu = min_k acc_k (beta *) + (1 - beta) g g
        for (i, nu_i) in nu.iter_mut().enumerate() {
            let mut x = if rank == 0 {
                acc[0]
            } else {
                let mut x = acc[offsets[0] + idx[0]];
                for k in 1..rank {
                    let y = acc[offsets[k] + idx[k]];
                    // torch.min: NaN propagates.
                    x = if x.is_nan() || y.is_nan() {
                        f32::NAN
                    } else {
                        x.min(y)
                    };
                }
                x
            };
            if self.beta > 0.0 {
                x *= beta;
            }
            let g = sgn * p.grad[i];
            *nu_i = x + w * g * g;
            advance(&mut idx, &shape);
        }
        // New accumulators: max over the other dimensions.
        if rank == 0 {
            acc[0] = nu[0];
        } else {
            let mut fresh = vec![f32::NEG_INFINITY; acc_len];
            idx.iter_mut().for_each(|x| *x = 0);
            for &x in &nu {
                for k in 0..rank {
                    let slot = &mut fresh[offsets[k] + idx[k]];
                    *slot = maximum(*slot, x);
                }
                advance(&mut idx, &shape);
            }
            for (a, f) in acc.iter_mut().zip(fresh) {
                *a = if self.beta > 0.0 { maximum(*a, f) } else { f };
            }
        }
        // u = g * rsqrt(nu + eps)
        for (u, &g) in nu.iter_mut().zip(p.grad.iter()) {
            *u = (1.0 / (*u + eps).sqrt()) * (sgn * g);
        }
        let neg_lr = (-self.lr) as f32;
        if self.momentum > 0.0 {
            let ema = Ema::new(self.momentum);
            let m = st
                .momentum_buffer
                .get_or_fill(p.name, "momentum_buffer", n, 0.0)?;
            for ((x, m), &u) in p.value.iter_mut().zip(m.iter_mut()).zip(nu.iter()) {
                *m = ema.lerp(*m, u);
                *x += neg_lr * *m;
            }
        } else {
            for (x, &u) in p.value.iter_mut().zip(nu.iter()) {
                *x += neg_lr * u;
            }
        }
        Ok(())
    }
}

/// Advances the row-major multi-index `idx` over `shape` by one element.
fn advance(idx: &mut [usize], shape: &[usize]) {
    for k in (0..idx.len()).rev() {
        idx[k] += 1;
        if idx[k] < shape[k] {
            return;
        }
        idx[k] = 0;
    }
}
