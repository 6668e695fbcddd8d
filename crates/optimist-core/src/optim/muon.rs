//! Muon: momentum orthogonalized by Newton-Schulz, for 2-D weight matrices.
//!
//! **Reference:** `torch.optim.Muon` (torch 2.15.0), with the Newton-Schulz
//! iteration in f32 (the replay contract; torch casts it to bfloat16).
//! **Papers:** Keller Jordan et al., "Muon: An optimizer for hidden layers in
//! neural networks" (blog post, 2024); Liu et al., "Muon is Scalable for LLM
//! Training", arXiv:2502.16982 (the `match_rms_adamw` scale); Bernstein,
//! "Deriving Muon" (the `spectral_unclamped` scale).
//!
//! Update rule for a parameter `W` of shape `A x B` (rows x cols), step t:
//! ```text
//! buf <- lerp(buf, g, 1 - momentum)                 (buf starts at 0)
//! u   <- lerp(g, buf, momentum) if nesterov else buf
//! O   <- NS(u)        Newton-Schulz, ns_steps iterations of ns_coefficients,
//!                     input divided by max(||u||_F, eps), transposed when A > B
//! W   <- W * (1 - lr * weight_decay)                (decoupled, unadjusted lr)
//! W   <- W - lr * s(A, B) * O
//! s   =  sqrt(max(1, A / B))    adjust_lr_fn null or "original" (Keller Jordan)
//!        0.2 * sqrt(max(A, B))  "match_rms_adamw" (Moonlight: RMS of AdamW)
//!        sqrt(A / B)            "spectral_unclamped" (Bernstein)
//! ```
//! (torch's docstring writes `B_t = mu B_{t-1} + g_t`; its code, followed
//! here, keeps the exponential average above.) The iteration is in
//! [`newton_schulz`](super::newton_schulz).
//!
//! Defaults: lr = 1e-3, weight_decay = 0.1, momentum = 0.95,
//! nesterov = true, ns_coefficients = (3.4445, -4.775, 2.0315), eps = 1e-7,
//! ns_steps = 5, adjust_lr_fn = null, flatten = false, ns_dtype = "float32".
//!
//! **Parameters.** As in torch, only 2-D parameters are accepted; any other
//! is an error naming it (biases, gains and embeddings belong to another
//! optimizer: see [`presets::muon_adamw`](crate::presets::muon_adamw)).
//! `flatten = true` (an extension, not in torch) accepts parameters with more
//! than two dimensions as `(shape[0], rest)` matrices, e.g. a convolution
//! kernel `[out, in, kh, kw]` as `out x (in kh kw)`; `A` and `B` above are
//! then the matrix's rows and columns. Vectors and scalars stay errors.
//!
//! **Known differences.** The Newton-Schulz products run in f32 with
//! [`crate::gemm`]'s summation order, not torch's BLAS: on the replay
//! cases the largest difference is of order 1e-7 (the contract allows
//! 1e-4). torch casts the iteration to bfloat16; `ns_dtype = "bfloat16"`
//! (an extension) rounds the products' inputs to bfloat16 and sums in f32,
//! about twice as fast on CPUs with AVX-512 BF16 but outside exact replay. `ns_steps >= 100` is rejected when the optimizer
//! is built (torch raises at the first step).

use serde::{Deserialize, Serialize};

use super::newton_schulz::{self as ns, NormGuard, NsDtype, MUON_COEFFICIENTS};
use crate::error::{Error, Result};
use crate::math::{lerp, Ema};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;
use crate::validate as v;

crate::param_state! {
    /// Muon state: the momentum buffer.
    pub struct MuonState { momentum_buffer }
}

/// The learning-rate scale of a matrix update (`adjust_lr_fn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjustLrFn {
    /// `sqrt(max(1, A / B))` (also what `null` means).
    Original,
    /// `0.2 * sqrt(max(A, B))`.
    MatchRmsAdamw,
    /// `sqrt(A / B)`.
    SpectralUnclamped,
}

impl AdjustLrFn {
    /// The factor for a `rows x cols` matrix; `None` is `Original`.
    pub fn ratio(f: Option<Self>, rows: usize, cols: usize) -> f64 {
        let (a, b) = (rows as f64, cols as f64);
        match f {
            None | Some(AdjustLrFn::Original) => (a / b).max(1.0).sqrt(),
            Some(AdjustLrFn::MatchRmsAdamw) => 0.2 * a.max(b).sqrt(),
            Some(AdjustLrFn::SpectralUnclamped) => (a / b).sqrt(),
        }
    }
}

/// Hyperparameters of `torch.optim.Muon`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Muon {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decoupled weight decay, `W *= 1 - lr * weight_decay` (default 0.1).
    pub weight_decay: f64,
    /// Momentum factor (default 0.95).
    pub momentum: f64,
    /// Nesterov momentum (default true).
    pub nesterov: bool,
    /// Newton-Schulz coefficients (a, b, c) (default (3.4445, -4.775, 2.0315)).
    pub ns_coefficients: [f64; 3],
    /// Lower bound of the Newton-Schulz input's norm (default 1e-7).
    pub eps: f64,
    /// Newton-Schulz iterations, < 100 (default 5).
    pub ns_steps: u64,
    /// Learning-rate scale by shape (default null = "original").
    pub adjust_lr_fn: Option<AdjustLrFn>,
    /// Precision of the Newton-Schulz products: "float32" (default, exact
    /// replay) or "bfloat16" (inputs rounded to bfloat16, f32 sums; faster,
    /// the precision the reference libraries use).
    pub ns_dtype: NsDtype,
    /// Accept parameters with more than two dimensions as `(shape[0], rest)`
    /// matrices (default false, as torch: only 2-D parameters).
    pub flatten: bool,
}

impl Default for Muon {
    fn default() -> Self {
        Muon {
            lr: 1e-3,
            weight_decay: 0.1,
            momentum: 0.95,
            nesterov: true,
            ns_coefficients: MUON_COEFFICIENTS,
            eps: 1e-7,
            ns_steps: 5,
            adjust_lr_fn: None,
            ns_dtype: NsDtype::Float32,
            flatten: false,
        }
    }
}

impl OptimizerConfig for Muon {
    const NAME: &'static str = "muon";
    const REFERENCE: &'static str =
        "torch.optim.Muon (torch 2.15.0), Newton-Schulz in f32 as the replay contract";
    const PAPER: &'static str =
        "Jordan et al., Muon: An optimizer for hidden layers in neural networks (2024); \
         Liu et al., Muon is Scalable for LLM Training (arXiv:2502.16982)";
    const SUMMARY: &'static str =
        "momentum orthogonalized by Newton-Schulz, for 2-D weight matrices";
    const MATRICES_ONLY: bool = true;

    fn suggested() -> serde_json::Value {
        serde_json::json!({"lr": 0.02})
    }

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr, momentum, weight_decay, eps))?;
        for (i, c) in self.ns_coefficients.iter().enumerate() {
            v::finite(Self::NAME, &format!("ns_coefficients[{i}]"), *c)?;
        }
        if self.ns_steps >= 100 {
            return Err(Error::hparam(
                Self::NAME,
                "ns_steps",
                self.ns_steps,
                "must be < 100 (as torch)",
            ));
        }
        Ok(())
    }
}

impl UpdateRule for Muon {
    type State = MuonState;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut MuonState) -> Result<()> {
        let (rows, cols) = ns::matrix_dims(Self::NAME, p, self.flatten)?;
        let n = p.numel();
        st.step += 1;
        let ema = Ema::new(self.momentum);
        let buf = st
            .momentum_buffer
            .get_or_fill(p.name, "momentum_buffer", n, 0.0)?;
        let mut u = vec![0.0f32; n];
        for ((b, &g), u) in buf.iter_mut().zip(p.grad.iter()).zip(u.iter_mut()) {
            *b = ema.lerp(*b, g);
            *u = if self.nesterov {
                lerp(g, *b, ema.beta)
            } else {
                *b
            };
        }
        let coeffs = ns::schedule_f32(&[self.ns_coefficients]);
        let o = ns::orthogonalize(
            &u,
            rows,
            cols,
            &coeffs,
            self.ns_steps as usize,
            NormGuard::Clamp(self.eps as f32),
            self.ns_dtype,
        )?;
        let keep = (1.0 - self.lr * self.weight_decay) as f32;
        let alpha = (-self.lr * AdjustLrFn::ratio(self.adjust_lr_fn, rows, cols)) as f32;
        for (x, &o) in p.value.iter_mut().zip(o.iter()) {
            *x *= keep;
            *x += alpha * o;
        }
        Ok(())
    }

    ns::matrix_rule!();
}
