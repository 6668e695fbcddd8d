//! SOAP: Adam in the eigenbasis of Shampoo's preconditioner, the basis
//! refreshed every `precondition_frequency` steps by one step of power
//! iteration and a QR decomposition.
//!
//! **Reference:** `pytorch_optimizer.SOAP` (pytorch-optimizer 4.1.0).
//! **Paper:** Vyas, Morwani, Zhao, Shapira, Brandfonbrener,
//! Janson & Kakade, "SOAP: Improving and Stabilizing Shampoo using Adam",
//! ICLR 2025 (arXiv:2409.11321).
//!
//! For a parameter of shape `(d_0, ..., d_{r-1})`, each dimension `k` with
//! `d_k <= max_precondition_dim` (a vector only with `precondition_1d`)
//! has a statistic `GG_k` (`d_k x d_k`, zero at first) and a basis `Q_k`;
//! the other dimensions are left as they are. `P(x)` is the mode products
//! `x x_0 Q_0^T ... x_{r-1} Q_{r-1}^T` (into the basis), `P^T` the way back.
//! ```text
//! step 1:   GG_k <- lerp(GG_k, G_(k) G_(k)^T, 1 - shampoo_beta)
//!           Q_k  <- eigenvectors of GG_k, eigenvalues descending
//!           (no parameter update)
//! step t+1 (t = 1, 2, ...):
//!           g    <- -g                                         if maximize
//!           m    <- lerp(m, g, 1 - beta1)                      (in the parameter's basis)
//!           v    <- lerp(v, P(g)^2, 1 - beta2)                 (in the rotated basis)
//!           u    <- P^T(P(m) / (sqrt(v) + eps))
//!           u    <- u / (sqrt(mean(u^2)) + eps)                if normalize_gradient
//!           p    <- p - lr sqrt(1 - beta2^t) / (1 - beta1^t) u (lr alone without correct_bias)
//!           p    <- p (1 - lr weight_decay)
//!           GG_k <- lerp(GG_k, G_(k) G_(k)^T, 1 - shampoo_beta)
//!           every precondition_frequency-th t:
//!               M_k = GG_k Q_k, e = diag(Q_k^T M_k), order = argsort(e) descending
//!               v   <- v permuted along dimension k by order
//!               Q_k <- Q of the QR decomposition of M_k[:, order]
//! ```
//! `G_(k)` is the mode-k unfolding of the gradient; `shampoo_beta = null`
//! means `beta2`.
//!
//! **merge_dims.** With `merge_dims`, a parameter that is not a vector is
//! treated everywhere above (statistics, bases, `P`, the permutations of
//! `v`) as reshaped to the reference's `merge_small_dims(shape,
//! max_precondition_dim)`: walking the dimensions, the running product
//! `q` is multiplied by each `d`; when it exceeds `max_precondition_dim`,
//! `q / d` is closed as one dimension and `q` restarts at `d`; the last
//! `q` closes the shape; a single resulting dimension becomes `[1]`. So
//! `(2, 3, 6)` with 6 merges to `(6, 6)`, and a first dimension above the
//! maximum gives a leading dimension 1 (with a `1 x 1` basis). Where the
//! merged shape cannot hold the values (it is `[1]`: all dimensions fit
//! in one), the reference fails to reshape and so does this: an error at
//! the first step for a matrix or tensor; for a vector of length
//! `1 < n <= max_precondition_dim` at its first update (the second step),
//! as the reference reshapes vectors only when projecting. Other vectors
//! are unchanged by it. With `data_format = "channels_last"` a 4-D
//! parameter `(N, H, W, C)` is merged as `(N, C, H, W)` (its values, `m`
//! and `v` kept in their own layout); `data_format` has no effect without
//! `merge_dims`.
//!
//! Defaults: lr = 3e-3, betas = (0.95, 0.95), shampoo_beta = null,
//! weight_decay = 0.01, precondition_frequency = 10,
//! max_precondition_dim = 10000, merge_dims = false, precondition_1d =
//! false, correct_bias = true, normalize_gradient = false, data_format =
//! "channels_first", eps = 1e-8, maximize = false. Validation as the
//! reference: lr >= 0, betas in [0, 1), shampoo_beta >= 0,
//! weight_decay >= 0, precondition_frequency at least 1,
//! max_precondition_dim at least 1, eps >= 0; `data_format` is
//! `"channels_first"` or `"channels_last"`.
//!
//! **Decompositions.** The reference runs `torch.linalg.eigh` and `qr` in
//! f32; here they run in f64 ([`crate::linalg`]) and are rounded to f32.
//! The update does not depend on the sign of any basis vector (each enters
//! twice, and `v` holds squares), so the different sign conventions of the
//! decompositions do not matter. The first basis is well defined when the
//! first gradient's unfoldings have full row rank (for a `d x d` matrix,
//! a generic gradient); for a vector with `precondition_1d` it is the
//! eigenbasis of a rank-1 matrix, which only fixes the first vector (the
//! reference's choice of the others is LAPACK's). The products `P`, `P^T`
//! and `GG Q` run in f32 on [`crate::gemm`].


// Index loops over several arrays at once, as in the reference's formulas.
#![allow(clippy::needless_range_loop)]
use serde::{Deserialize, Serialize};

use super::shampoo::{gram, split};
use crate::error::{Error, Result};
use crate::gemm::{gemm, View};
use crate::linalg;
use crate::math::{bias_correction, descent_sign, lerp, Ema};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;
use crate::validate as v;

crate::param_state! {
    /// SOAP state: Adam's moments (`exp_avg` in the parameter's basis,
    /// `exp_avg_sq` in the rotated one) and, per preconditioned dimension,
    /// the statistic `GG` and the basis `Q` (row-major `d x d` matrices, one
    /// after the other).
    pub struct SoapState { exp_avg, exp_avg_sq; unsized: gg, q }
}

/// Layout of 4-D parameters for `merge_dims` (`data_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    /// `(N, C, H, W)`: merged as they are.
    ChannelsFirst,
    /// `(N, H, W, C)`: merged as `(N, C, H, W)`.
    ChannelsLast,
}

/// Hyperparameters of `pytorch_optimizer.SOAP`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Soap {
    /// Learning rate (default 3e-3).
    pub lr: f64,
    /// Adam's decay rates (default (0.95, 0.95)).
    pub betas: [f64; 2],
    /// Decay of the statistics; null means betas[1] (default null).
    pub shampoo_beta: Option<f64>,
    /// Decoupled weight decay, applied after the update (default 0.01).
    pub weight_decay: f64,
    /// Steps between basis refreshes (default 10).
    pub precondition_frequency: u64,
    /// Largest dimension that gets a basis (default 10000).
    pub max_precondition_dim: u64,
    /// Merge small dimensions of tensors up to `max_precondition_dim`
    /// (default false).
    pub merge_dims: bool,
    /// Give vectors a basis too (default false).
    pub precondition_1d: bool,
    /// Adam's bias correction (default true).
    pub correct_bias: bool,
    /// Divide the update by its RMS (default false).
    pub normalize_gradient: bool,
    /// Layout of 4-D parameters for `merge_dims` (default channels_first).
    pub data_format: DataFormat,
    /// Added to Adam's denominator (default 1e-8).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Soap {
    fn default() -> Self {
        Soap {
            lr: 3e-3,
            betas: [0.95, 0.95],
            shampoo_beta: None,
            weight_decay: 1e-2,
            precondition_frequency: 10,
            max_precondition_dim: 10000,
            merge_dims: false,
            precondition_1d: false,
            correct_bias: true,
            normalize_gradient: false,
            data_format: DataFormat::ChannelsFirst,
            eps: 1e-8,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Soap {
    const NAME: &'static str = "soap";
    const REFERENCE: &'static str = "pytorch_optimizer.SOAP (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Vyas et al., SOAP: Improving and Stabilizing Shampoo using Adam, ICLR 2025 (arXiv:2409.11321)";
    const SUMMARY: &'static str =
        "Adam in the eigenbasis of Shampoo's preconditioner, refreshed by power iteration + QR";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas))?;
        if let Some(b) = self.shampoo_beta {
            v::non_negative(Self::NAME, "shampoo_beta", b)?;
        }
        crate::checks!(self, non_negative(weight_decay),
            at_least(precondition_frequency, max_precondition_dim; 1), non_negative(eps))
    }
}

impl Soap {
    /// For each dimension, whether it gets a basis (`vector`: the
    /// parameter itself is one).
    fn preconditioned(&self, shape: &[usize], vector: bool) -> Vec<bool> {
        let max = self.max_precondition_dim;
        if vector {
            return vec![self.precondition_1d && shape[0] as u64 <= max];
        }
        shape.iter().map(|&d| d as u64 <= max).collect()
    }
}

/// The reference's `merge_small_dims(shape, max_dim)`.
fn merge_small_dims(shape: &[usize], max_dim: u64) -> Vec<usize> {
    let mut merged = Vec::new();
    let mut product: u128 = 1;
    for &d in shape {
        product = product.saturating_mul(d as u128);
        if product > max_dim as u128 {
            merged.push((product / d as u128) as usize);
            product = d as u128;
        }
    }
    merged.push(product as usize);
    if merged.len() > 1 {
        merged
    } else {
        vec![1]
    }
}

/// `(N, H, W, C)` values to `(N, C, H, W)` (`back`: the inverse).
fn channels_first(x: &[f32], shape: &[usize], back: bool) -> Vec<f32> {
    let (n, h, w, c) = (shape[0], shape[1], shape[2], shape[3]);
    let mut y = vec![0.0f32; x.len()];
    for a in 0..n {
        for i in 0..h {
            for j in 0..w {
                for k in 0..c {
                    let nhwc = ((a * h + i) * w + j) * c + k;
                    let nchw = ((a * c + k) * h + i) * w + j;
                    if back {
                        y[nhwc] = x[nchw];
                    } else {
                        y[nchw] = x[nhwc];
                    }
                }
            }
        }
    }
    y
}

/// Mode products of `x` (shape `shape`) with the bases: `Q_k^T` along each
/// dimension (`forward`) or `Q_k` (back); dimensions without a basis are
/// left as they are. As the reference: one contraction per dimension, each
/// moving the dimension to the end, so that the last one restores the order.
fn project(x: &[f32], shape: &[usize], qs: &[Option<&[f32]>], forward: bool) -> Result<Vec<f32>> {
    let mut cur = x.to_vec();
    let mut cur_shape = shape.to_vec();
    let n = x.len();
    for q in qs {
        let s0 = cur_shape[0];
        let rest = n.checked_div(s0).unwrap_or(0);
        let mut y = vec![0.0f32; n];
        match q {
            Some(q) => {
                let qv = View::new(q, s0, s0);
                let qv = if forward { qv } else { qv.t() };
                gemm(1.0, View::new(&cur, s0, rest).t(), qv, 0.0, &mut y, false)?;
            }
            None => {
                for i in 0..s0 {
                    for j in 0..rest {
                        y[j * s0 + i] = cur[i * rest + j];
                    }
                }
            }
        }
        cur = y;
        cur_shape.rotate_left(1);
    }
    Ok(cur)
}

/// Offsets of each dimension's `d x d` block in the `gg`/`q` buffers
/// (dimensions without a basis take no room) and the total length.
fn layout(shape: &[usize], pre: &[bool]) -> (Vec<usize>, usize) {
    let mut offs = Vec::with_capacity(shape.len());
    let mut off = 0;
    for (&d, &p) in shape.iter().zip(pre) {
        offs.push(off);
        if p {
            off += d * d;
        }
    }
    (offs, off)
}

impl UpdateRule for Soap {
    type State = SoapState;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut SoapState) -> Result<()> {
        let n = p.numel();
        let shape: Vec<usize> = p.shape.to_vec();
        if shape.iter().product::<usize>() != n {
            return Err(Error::Shape(format!(
                "soap: parameter '{}' has shape {shape:?} but {n} values",
                p.name
            )));
        }
        let vector = shape.len() == 1;
        let first = st.step == 0;
        // channels_last 4-D tensors are merged (and so preconditioned) in
        // (N, C, H, W) order: their gradient and moments are permuted there
        // for the step and back after it.
        let permuted = self.merge_dims && self.data_format == DataFormat::ChannelsLast && shape.len() == 4;
        let orig = shape.clone();
        let shape = if self.merge_dims {
            let src = if permuted { vec![shape[0], shape[3], shape[1], shape[2]] } else { shape.clone() };
            let merged = merge_small_dims(&src, self.max_precondition_dim);
            // The reference reshapes vectors only to project them, from
            // their first update on.
            if merged.iter().product::<usize>() != n && (!vector || !first) {
                return Err(Error::hparam(
                    Self::NAME,
                    "merge_dims",
                    true,
                    &format!(
                        "parameter '{}' of shape {orig:?} ({n} values) merges into shape {merged:?} \
                         (max_precondition_dim {}), which cannot hold it",
                        p.name, self.max_precondition_dim
                    ),
                ));
            }
            if vector { shape } else { merged }
        } else {
            shape
        };
        let pre = self.preconditioned(&shape, vector);
        let (offs, total) = layout(&shape, &pre);
        let sb = self.shampoo_beta.unwrap_or(self.betas[1]);
        let step = st.step; // the reference's step: its group step minus one
        st.step += 1;
        st.exp_avg.get_or_fill(p.name, "exp_avg", n, 0.0)?;
        st.exp_avg_sq.get_or_fill(p.name, "exp_avg_sq", n, 0.0)?;
        st.gg.get_or_fill(p.name, "gg", total, 0.0)?;
        st.q.get_or_fill(p.name, "q", total, 0.0)?;

        if first {
            // The statistics from the raw gradient and the first bases (eigh).
            let g = if permuted { channels_first(p.grad, &orig, false) } else { p.grad.to_vec() };
            self.update_statistics(&g, &shape, &pre, &offs, st.gg.as_mut_slice(), sb)?;
            let gg = st.gg.as_slice().to_vec();
            let q = st.q.as_mut_slice();
            for (k, &d) in shape.iter().enumerate() {
                if !pre[k] {
                    continue;
                }
                let o = offs[k];
                let a: Vec<f64> = gg[o..o + d * d].iter().map(|&x| x as f64).collect();
                let (_, vecs) = linalg::eigh(&a, d);
                // Descending eigenvalues: flip the columns.
                for i in 0..d {
                    for j in 0..d {
                        q[o + i * d + j] = vecs[i * d + (d - 1 - j)] as f32;
                    }
                }
            }
            return Ok(());
        }

        let sgn = descent_sign(self.maximize);
        let g: Vec<f32> = p.grad.iter().map(|&g| sgn * g).collect();
        if !permuted {
            return self.update_in_basis(p, st, g, &shape, &pre, &offs, sb, step, None);
        }
        let g = channels_first(&g, &orig, false);
        for buf in [&mut st.exp_avg, &mut st.exp_avg_sq] {
            let x = channels_first(buf.as_slice(), &orig, false);
            buf.as_mut_slice().copy_from_slice(&x);
        }
        let out = self.update_in_basis(p, st, g, &shape, &pre, &offs, sb, step, Some(&orig));
        for buf in [&mut st.exp_avg, &mut st.exp_avg_sq] {
            let x = channels_first(buf.as_slice(), &orig, true);
            buf.as_mut_slice().copy_from_slice(&x);
        }
        out
    }
}

impl Soap {
    /// The update of a step after the first, from the (descent-signed)
    /// gradient `g`: everything in the layout of `shape` (the merged one),
    /// except the parameter's values for a permuted tensor (`u` goes back
    /// to their layout).
    #[allow(clippy::too_many_arguments)]
    fn update_in_basis(
        &self,
        p: &mut ParamMut<'_>,
        st: &mut SoapState,
        g: Vec<f32>,
        shape: &[usize],
        pre: &[bool],
        offs: &[usize],
        sb: f64,
        step: u64,
        permuted_from: Option<&[usize]>,
    ) -> Result<()> {
        let n = g.len();
        let [beta1, beta2] = self.betas;
        let mut step_size = self.lr;
        if self.correct_bias {
            step_size *= bias_correction(beta2, step).sqrt() / bias_correction(beta1, step);
        }
        let q_all = st.q.as_slice().to_vec();
        let qs: Vec<Option<&[f32]>> = shape
            .iter()
            .enumerate()
            .map(|(k, &d)| pre[k].then(|| &q_all[offs[k]..offs[k] + d * d]))
            .collect();
        let gp = project(&g, shape, &qs, true)?;
        let ema1 = Ema::new(beta1);
        let w2 = (1.0 - beta2) as f32;
        let eps = self.eps as f32;
        let m = st.exp_avg.as_mut_slice();
        for (m, &g) in m.iter_mut().zip(&g) {
            *m = ema1.lerp(*m, g);
        }
        let mp = project(m, shape, &qs, true)?;
        let v = st.exp_avg_sq.as_mut_slice();
        let mut ratio = vec![0.0f32; n];
        for (((v, &gp), &mp), r) in v.iter_mut().zip(&gp).zip(&mp).zip(ratio.iter_mut()) {
            *v = lerp(*v, gp * gp, w2);
            *r = mp / (v.sqrt() + eps);
        }
        let mut u = project(&ratio, shape, &qs, false)?;
        if self.normalize_gradient && n > 0 {
            let s: f64 = u.iter().map(|&x| x as f64 * x as f64).sum();
            let d = ((s as f32) / n as f32).sqrt() + eps;
            u.iter_mut().for_each(|x| *x /= d);
        }
        if let Some(orig) = permuted_from {
            u = channels_first(&u, orig, true);
        }
        let alpha = (-step_size) as f32;
        let keep = (1.0 - self.weight_decay * self.lr) as f32;
        for (x, &u) in p.value.iter_mut().zip(&u) {
            *x += alpha * u;
            if self.weight_decay != 0.0 {
                *x *= keep;
            }
        }
        self.update_statistics(&g, shape, pre, offs, st.gg.as_mut_slice(), sb)?;
        if step > 0 && step.is_multiple_of(self.precondition_frequency) {
            self.refresh(shape, pre, offs, st)?;
        }
        Ok(())
    }
}

impl Soap {
    /// `GG_k <- lerp(GG_k, G_(k) G_(k)^T, 1 - shampoo_beta)`.
    fn update_statistics(
        &self,
        g: &[f32],
        shape: &[usize],
        pre: &[bool],
        offs: &[usize],
        gg: &mut [f32],
        sb: f64,
    ) -> Result<()> {
        let w = (1.0 - sb) as f32;
        for (k, &d) in shape.iter().enumerate() {
            if !pre[k] {
                continue;
            }
            let outer = gram(g, shape, k)?;
            for (x, &o) in gg[offs[k]..offs[k] + d * d].iter_mut().zip(&outer) {
                *x = lerp(*x, o, w);
            }
        }
        Ok(())
    }

    /// One power-iteration step and QR per basis; permutes `exp_avg_sq`
    /// along each dimension as the estimated eigenvalues are sorted.
    fn refresh(&self, shape: &[usize], pre: &[bool], offs: &[usize], st: &mut SoapState) -> Result<()> {
        let gg = st.gg.as_slice().to_vec();
        for (k, &d) in shape.iter().enumerate() {
            if !pre[k] {
                continue;
            }
            let o = offs[k];
            let q = st.q.as_slice()[o..o + d * d].to_vec();
            let mut mp = vec![0.0f32; d * d];
            gemm(1.0, View::new(&gg[o..o + d * d], d, d), View::new(&q, d, d), 0.0, &mut mp, false)?;
            let est: Vec<f32> = (0..d)
                .map(|j| (0..d).map(|i| q[i * d + j] as f64 * mp[i * d + j] as f64).sum::<f64>() as f32)
                .collect();
            let mut order: Vec<usize> = (0..d).collect();
            order.sort_by(|&a, &b| est[b].total_cmp(&est[a]));
            // exp_avg_sq <- exp_avg_sq.index_select(k, order)
            let v = st.exp_avg_sq.as_mut_slice();
            let (pre_n, _, post) = split(shape, k);
            let old = v.to_vec();
            for a in 0..pre_n {
                for (jn, &jo) in order.iter().enumerate() {
                    let dst = (a * d + jn) * post;
                    let src = (a * d + jo) * post;
                    v[dst..dst + post].copy_from_slice(&old[src..src + post]);
                }
            }
            let mut power = vec![0.0f64; d * d];
            for i in 0..d {
                for (jn, &jo) in order.iter().enumerate() {
                    power[i * d + jn] = mp[i * d + jo] as f64;
                }
            }
            let qn = linalg::qr_q(&power, d, d);
            for (x, &y) in st.q.as_mut_slice()[o..o + d * d].iter_mut().zip(&qn) {
                *x = y as f32;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_small_dims_as_the_reference() {
        // The reference's documented examples, and its edge cases.
        assert_eq!(merge_small_dims(&[1, 2, 512, 1, 2048, 1, 3, 4], 1024), vec![1024, 2048, 12]);
        assert_eq!(merge_small_dims(&[1, 2, 768, 1, 2048], 1024), vec![2, 768, 2048]);
        assert_eq!(merge_small_dims(&[2, 3, 6], 6), vec![6, 6]);
        assert_eq!(merge_small_dims(&[7, 2, 2], 6), vec![1, 7, 4]);
        assert_eq!(merge_small_dims(&[3, 3], 10000), vec![1]);
        assert_eq!(merge_small_dims(&[], 4), vec![1]);
    }

    #[test]
    fn channels_first_round_trips() {
        let shape = [2, 3, 4, 5];
        let x: Vec<f32> = (0..120).map(|i| i as f32).collect();
        let y = channels_first(&x, &shape, false);
        // (n, c, h, w) = (1, 2, 0, 3), at ((1 * 5 + 2) * 3 + 0) * 4 + 3 = 87,
        // comes from (n, h, w, c) = (1, 0, 3, 2), at ((1 * 3 + 0) * 4 + 3) * 5 + 2 = 77.
        assert_eq!(y[87], x[77]);
        assert_eq!(channels_first(&y, &shape, true), x);
    }
}
