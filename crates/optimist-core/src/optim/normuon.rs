//! NorMuon: Muon's orthogonalized momentum, normalized row by row with a
//! second moment of the orthogonalized update.
//!
//! **Reference:** `pytorch_optimizer.NorMuon` (pytorch-optimizer 4.1.0),
//! every parameter in one group with `use_muon=True`, Newton-Schulz in f32
//! (the library casts to bfloat16 by default; the golden cases were made
//! with the iteration in f32, as the replay contract does for `muon`).
//! **Paper:** Li et al., "NorMuon: Making Muon more efficient and scalable"
//! (arXiv:2510.05491).
//!
//! Update rule for a parameter viewed as the `A x B` matrix
//! `(shape[0], rest)` (a vector of length `n` is `n x 1`), step t:
//! ```text
//! g   <- -g                                        if maximize
//! W   <- W (1 - lr wd)                             if weight_decouple
//! g   <- g + wd W                                  otherwise
//! m   <- lerp(m, g, 1 - momentum)
//! u   <- lerp(g, m, momentum) if nesterov else m
//! O   <- NS(u)        ns_steps iterations of the ns_coeffs schedule,
//!                     input divided by max(||u||_F, 1e-7)
//! v   <- lerp(v, mean_row(O^2), 1 - beta2)         (one value per row)
//! O   <- O / (sqrt(v) + eps)                       (row-wise)
//! O   <- O ||O_before||_F / (||O||_F + eps), lr' = lr s     "preserve_norm"
//!        s = 0.2 sqrt(max(A, B)) if use_adjusted_lr else sqrt(max(1, A / B))
//! O   <- O 0.2 sqrt(A B) / (||O||_F + eps), lr' = lr        "match_rms"
//! W   <- W - lr' O
//! ```
//! Defaults: lr = 0.02, momentum = 0.95, beta2 = 0.95, weight_decay = 0,
//! weight_decouple = true, nesterov = true, ns_steps = 5,
//! ns_coeffs = "original", update_scale = "preserve_norm",
//! use_adjusted_lr = false, eps = 1e-10, maximize = false.
//! Validation as the reference: lr >= 0, weight_decay >= 0, momentum and
//! beta2 in [0, 1), 0 < ns_steps < 100, update_scale one of the two, eps >= 0,
//! ns_coeffs a preset name or coefficient triples.
//!
//! **Parameters.** As the reference with `use_muon=True`: every parameter
//! with at least one dimension, viewed as `(shape[0], rest)`; a 0-D
//! parameter is an error. The library's AdamW groups (`use_muon=False`,
//! `adamw_*` arguments) are not part of this optimizer: use parameter
//! groups ([`presets::matrix_adamw`](crate::presets::matrix_adamw)).
//!
//! **Known differences.** The Newton-Schulz products run in f32 with
//! [`crate::gemm`]'s summation order, and norms and row means are summed
//! in f64: differences of order 1e-7 (the cases' tolerance is 1e-4, as
//! for the Muon family).

use serde::{Deserialize, Serialize};

use super::adamuon::NsCoeffs;
use super::newton_schulz::{self as ns, NormGuard, NsDtype};
use crate::error::{Error, Result};
use crate::math::{descent_sign, l2_norm, lerp, Ema, WeightDecay};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::state::StateStore;
use crate::tensor::ParamMut;

crate::param_state! {
    /// NorMuon state: the momentum and the per-row second moment
    /// (pytorch-optimizer's names).
    pub struct NorMuonState { momentum_buffer; unsized: second_momentum_buffer }
}

/// How NorMuon rescales the row-normalized update (`update_scale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateScale {
    /// Keep the Frobenius norm of the orthogonalized update.
    PreserveNorm,
    /// Frobenius norm `0.2 sqrt(A B)` (RMS 0.2).
    MatchRms,
}

/// Hyperparameters of `pytorch_optimizer.NorMuon` (Muon groups).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NorMuon {
    /// Learning rate (default 0.02).
    pub lr: f64,
    /// Momentum factor (default 0.95).
    pub momentum: f64,
    /// Decay of the row-wise second moment (default 0.95).
    pub beta2: f64,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay; L2 otherwise (default true).
    pub weight_decouple: bool,
    /// Nesterov momentum (default true).
    pub nesterov: bool,
    /// Newton-Schulz iterations, > 0 (default 5).
    pub ns_steps: u64,
    /// Newton-Schulz coefficients (default "original").
    pub ns_coeffs: NsCoeffs,
    /// "preserve_norm" (default) or "match_rms".
    pub update_scale: UpdateScale,
    /// Moonlight's lr scale in preserve_norm mode (default false).
    pub use_adjusted_lr: bool,
    /// Added to the row denominators and the rescale's norm (default 1e-10).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for NorMuon {
    fn default() -> Self {
        NorMuon {
            lr: 2e-2,
            momentum: 0.95,
            beta2: 0.95,
            weight_decay: 0.0,
            weight_decouple: true,
            nesterov: true,
            ns_steps: 5,
            ns_coeffs: NsCoeffs::Preset("original".into()),
            update_scale: UpdateScale::PreserveNorm,
            use_adjusted_lr: false,
            eps: 1e-10,
            maximize: false,
        }
    }
}

impl OptimizerConfig for NorMuon {
    const NAME: &'static str = "normuon";
    const REFERENCE: &'static str =
        "pytorch_optimizer.NorMuon (pytorch-optimizer 4.1.0, use_muon=True), Newton-Schulz in f32";
    const PAPER: &'static str =
        "Li et al., NorMuon: Making Muon more efficient and scalable (arXiv:2510.05491)";
    const SUMMARY: &'static str =
        "Muon with a row-wise second moment of the orthogonalized update";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr, weight_decay), unit_interval_open(momentum, beta2),
            at_least(ns_steps; 1), non_negative(eps))?;
        // Bounded as torch.optim.Muon bounds it (< 100): each iteration is
        // three matrix products, so a huge count is unbounded work.
        crate::checks!(self, at_most(ns_steps; 99))?;
        self.ns_coeffs.resolve(Self::NAME, "ns_coeffs")?;
        Ok(())
    }
}

/// The `(shape[0], rest)` matrix view NorMuon takes of a parameter.
fn dims(p: &ParamMut<'_>) -> Result<(usize, usize)> {
    match p.shape.first() {
        Some(&rows) if rows > 0 && p.numel().is_multiple_of(rows) => Ok((rows, p.numel() / rows)),
        Some(_) if p.numel() == 0 => Ok((0, 0)),
        _ => Err(Error::Unsupported(format!(
            "normuon: parameter '{}' has shape {:?}; it needs at least one dimension",
            p.name, p.shape
        ))),
    }
}

impl UpdateRule for NorMuon {
    type State = NorMuonState;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut NorMuonState) -> Result<()> {
        let (rows, cols) = dims(p)?;
        let n = p.numel();
        st.step += 1;
        if n == 0 {
            return Ok(());
        }
        let sched = ns::schedule_f32(&self.ns_coeffs.resolve(Self::NAME, "ns_coeffs")?);
        let wd = WeightDecay::new(self.weight_decay, self.weight_decouple, self.lr);
        let sgn = descent_sign(self.maximize);
        let ema = Ema::new(self.momentum);
        let m = st
            .momentum_buffer
            .get_or_fill(p.name, "momentum_buffer", n, 0.0)?;
        let u = ns::decay_momentum_pass(p.value, p.grad, m, wd, sgn, |g, m| {
            *m = ema.lerp(*m, g);
            if self.nesterov { lerp(g, *m, ema.beta) } else { *m }
        });
        let mut o = ns::orthogonalize(
            &u,
            rows,
            cols,
            &sched,
            self.ns_steps as usize,
            NormGuard::Clamp(1e-7),
            NsDtype::Float32,
        )?;
        let original_norm = l2_norm(&o);
        let v = st
            .second_momentum_buffer
            .get_or_fill(p.name, "second_momentum_buffer", rows, 0.0)?;
        let ema2 = Ema::new(self.beta2);
        let eps = self.eps as f32;
        for (row, v) in o.chunks_exact_mut(cols).zip(v.iter_mut()) {
            let sum: f64 = row.iter().map(|&x| x as f64 * x as f64).sum();
            let mean = (sum as f32) / cols as f32;
            *v = ema2.lerp(*v, mean);
            let d = v.sqrt() + eps;
            for x in row.iter_mut() {
                *x /= d;
            }
        }
        let norm = l2_norm(&o) + eps;
        let (scale, lr) = match self.update_scale {
            UpdateScale::PreserveNorm => {
                let (a, b) = (rows as f64, cols as f64);
                let ratio = if self.use_adjusted_lr {
                    0.2 * a.max(b).sqrt()
                } else {
                    (a / b).max(1.0).sqrt()
                };
                (original_norm / norm, self.lr * ratio)
            }
            UpdateScale::MatchRms => ((0.2 * (n as f64).sqrt()) as f32 / norm, self.lr),
        };
        let alpha = (-lr) as f32;
        for (x, &o) in p.value.iter_mut().zip(o.iter()) {
            *x += alpha * (o * scale);
        }
        Ok(())
    }

    fn check_params(&self, params: &[ParamMut<'_>]) -> Result<()> {
        params.iter().try_for_each(|p| dims(p).map(|_| ()))
    }

    fn update_all(
        &self,
        info: &StepInfo,
        params: &mut [ParamMut<'_>],
        states: &mut StateStore<NorMuonState>,
    ) -> Option<Result<()>> {
        Some(
            self.check_params(params)
                .and_then(|()| crate::exec::run_per_param(self, info, params, states)),
        )
    }
}
