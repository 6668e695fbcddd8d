//! AdaMuon: an element-wise second moment on Muon's orthogonalized update,
//! rescaled to the RMS of Adam.
//!
//! **Paper:** Chongjie Si, Debing Zhang, Wei Shen, "AdaMuon: Adaptive Muon
//! Optimizer", arXiv:2507.11005 (2025). Two implementations differ; both are
//! offered, selected by `variant`:
//!
//! | | `variant = "pytorch_optimizer"` (default) | `variant = "official"` |
//! | --- | --- | --- |
//! | reference | `pytorch_optimizer.AdaMuon` 4.1.0 (`use_muon=True`) | the authors' code (Chongjie-Si/AdaMuon, `gpt2/models/optimizers/adamuon.py`), paper v2 |
//! | momentum | `m <- lerp(m, g, 1 - beta1)` | the code: `m <- lerp(m, g, 1 - beta1)` (`buf.lerp_`); here `m <- beta1 m + g` (heavy ball, `1 / (1 - beta1)` times the code's buffer) |
//! | Nesterov | if `nesterov` (extension; pytorch-optimizer has none): `u <- lerp(g, m, beta1)`, else `u <- m` | the code: `u <- lerp(g, m, beta1)`; here `u <- g + beta1 m` (`1 / (1 - beta1)` times the code's `u`: same sign) |
//! | orthogonalize | `O <- NS(u)` | `O <- NS(sign(u))` (sign-stabilized) |
//! | NS input | `u / max(\|\|u\|\|_F, 1e-7)` | `sign(u) / (\|\|sign(u)\|\|_F + 1e-7)` |
//! | second moment | `v <- beta2 v + (1 - beta2) O^2` | same (the code uses `beta2 = beta1 = momentum`) |
//! | normalize | `O / (sqrt(v / (1 - beta2^t)) + eps)` | `O / (sqrt(v) + eps)` (no bias correction) |
//! | rescale | `* sqrt(min(A, B)) / (\|\|.\|\|_F + eps)` | `* 0.2 sqrt(A B) / (\|\|.\|\|_F + eps)` |
//! | step | `W <- W - lr s O`, `s = 0.2 sqrt(max(A, B))` if `use_adjusted_lr`, else `sqrt(max(1, A / B))` | `W <- W - lr O` |
//!
//! In both, weight decay comes first: `W <- W (1 - lr weight_decay)` when
//! `weight_decouple` (the official code only has this form), else
//! `g <- g + weight_decay W`; `maximize` negates the gradient. Newton-Schulz
//! (shared with Muon, [`newton_schulz`](super::newton_schulz)) runs in f32
//! with `ns_steps` iterations of the `ns_coeffs` schedule; the official code
//! always uses Keller Jordan's coefficients (the default).
//!
//! With `use_adjusted_lr`, both give an update of RMS `0.2 lr`: the two
//! variants differ in the sign step, the momentum form (which the sign makes
//! irrelevant: `sign(beta1 m + g)` and `sign(lerp(g, m, beta1))` agree), the
//! bias correction (which the rescale cancels up to `eps`) and where `eps`
//! enters. To reproduce the official code, use `variant = "official"`,
//! `nesterov = true`, `betas = [0.95, 0.95]`, `eps = 1e-8`,
//! `weight_decay = 0.01` (its defaults). The authors' first release
//! (`adamuon.py` at the repository root, paper v1) has no sign step: it is
//! the default variant with `nesterov = true`, `betas = [0.95, 0.999]`,
//! `eps = 1e-8`, up to its `+ 1e-7` normalization of the iteration's input.
//!
//! Defaults (pytorch-optimizer's): lr = 0.02, betas = (0.9, 0.95),
//! weight_decay = 0, weight_decouple = true, ns_steps = 5,
//! ns_coeffs = "original", use_adjusted_lr = true, eps = 1e-10,
//! maximize = false; extensions nesterov = false, variant =
//! "pytorch_optimizer", flatten = false.
//!
//! Golden cases: `tests/golden/cases/*adamuon*` (pytorch-optimizer) and
//! `tests/golden/extensions/adamuon-official-*` (a torch transcription of
//! `AdaMuon.step` in the authors' `gpt2/models/optimizers/adamuon.py`, commit
//! 5b99dd0, in `tools/gen_cases.py`, `AdaMuonOfficialRef`, with the code's
//! moving-average momentum; the cases keep the constructor's `nesterov =
//! true`, `eps = 1e-8`, `ns_steps = 5` and one beta for both moments). The
//! heavy-ball buffer here gives the same sign, so the same update up to
//! rounding, and the cases pass. The authors' distributed step casts the
//! update to bfloat16 before applying it; here it stays f32.
//!
//! **Parameters.** Only 2-D parameters, as the replay contract requires
//! (pytorch-optimizer takes more dimensions when `use_muon=True`; here that
//! is `flatten = true`, which views `[d0, d1, ...]` as `d0 x (d1 ...)` as it
//! does). pytorch-optimizer's AdamW fallback for `use_muon=False` groups
//! (`adamw_lr`, `adamw_betas`, `adamw_wd`) is not part of this optimizer: use
//! parameter groups ([`presets::matrix_adamw`](crate::presets::matrix_adamw)).
//!
//! **Known differences.** The f32 Newton-Schulz products use
//! `matrixmultiply`'s summation order (largest difference on the replay
//! cases 2e-7, 0.0013 of the contract's 1e-4 tolerance). For parameters with more than two dimensions the
//! official code's rescale uses `min(shape) * max(shape)` of the original
//! shape; here it is the matrix's `A B` (the intended RMS 0.2).

use serde::{Deserialize, Serialize};

use super::newton_schulz::{self as ns, NormGuard, NsDtype};
use crate::error::{Error, Result};
use crate::math::{bias_correction, descent_sign, l2_norm, lerp, sign, Ema, WeightDecay};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;

crate::param_state! {
    /// AdaMuon state: the first moment `m` and the element-wise second
    /// moment `v` of the orthogonalized update (pytorch-optimizer's names).
    pub struct AdaMuonState { m, v }
}

/// Which AdaMuon implementation to follow (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdaMuonVariant {
    /// `pytorch_optimizer.AdaMuon` 4.1.0.
    #[default]
    PytorchOptimizer,
    /// The authors' code: sign before orthogonalization.
    Official,
}

/// A Newton-Schulz coefficient schedule as pytorch-optimizer takes it: a
/// preset name, one `[a, b, c]` triple, or a list of triples (step `i` uses
/// entry `min(i, len - 1)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NsCoeffs {
    /// `original`, `quintic`, `polar_express` or `polar_express_safer`.
    Preset(String),
    /// One triple for every step.
    Single([f64; 3]),
    /// One triple per step, the last one repeated.
    Schedule(Vec<[f64; 3]>),
}

impl NsCoeffs {
    /// The resolved schedule, or an error naming the field.
    pub fn resolve(&self, optimizer: &str, field: &str) -> Result<Vec<[f64; 3]>> {
        let sched = match self {
            NsCoeffs::Preset(name) => ns::preset(name).ok_or_else(|| {
                Error::hparam(
                    optimizer,
                    field,
                    format!("{name:?}"),
                    &format!("must be one of {:?} or coefficient triples", ns::PRESETS),
                )
            })?,
            NsCoeffs::Single(t) => vec![*t],
            NsCoeffs::Schedule(s) => s.clone(),
        };
        if sched.is_empty() {
            return Err(Error::hparam(optimizer, field, "[]", "must not be empty"));
        }
        for (i, t) in sched.iter().enumerate() {
            if t.iter().any(|c| !c.is_finite()) {
                return Err(Error::hparam(
                    optimizer,
                    &format!("{field}[{i}]"),
                    format!("{t:?}"),
                    "must be finite numbers",
                ));
            }
        }
        Ok(sched)
    }
}

/// Hyperparameters of `pytorch_optimizer.AdaMuon` (Muon groups), plus the
/// official variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaMuon {
    /// Learning rate (default 0.02).
    pub lr: f64,
    /// Momentum and second-moment decay rates (default (0.9, 0.95)).
    pub betas: [f64; 2],
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay; L2 on the gradient when false (default true).
    pub weight_decouple: bool,
    /// Newton-Schulz iterations, > 0 (default 5).
    pub ns_steps: u64,
    /// Newton-Schulz coefficients (default "original").
    pub ns_coeffs: NsCoeffs,
    /// Moonlight's `0.2 sqrt(max(A, B))` lr scale; Keller Jordan's
    /// `sqrt(max(1, A / B))` when false (default true).
    pub use_adjusted_lr: bool,
    /// Added to the second-moment denominator and to the rescale's norm (default 1e-10).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
    /// Nesterov momentum (default false; the official code uses true).
    pub nesterov: bool,
    /// Which implementation (default "pytorch_optimizer").
    pub variant: AdaMuonVariant,
    /// Precision of the Newton-Schulz products: "float32" (default, exact
    /// replay) or "bfloat16" (inputs rounded to bfloat16, f32 sums; faster,
    /// the precision the reference libraries use).
    pub ns_dtype: NsDtype,
    /// Accept parameters with more than two dimensions as `(shape[0], rest)`
    /// matrices (default false).
    pub flatten: bool,
}

impl Default for AdaMuon {
    fn default() -> Self {
        AdaMuon {
            lr: 2e-2,
            betas: [0.9, 0.95],
            weight_decay: 0.0,
            weight_decouple: true,
            ns_steps: 5,
            ns_coeffs: NsCoeffs::Preset("original".into()),
            use_adjusted_lr: true,
            eps: 1e-10,
            maximize: false,
            nesterov: false,
            variant: AdaMuonVariant::PytorchOptimizer,
            ns_dtype: NsDtype::Float32,
            flatten: false,
        }
    }
}

/// The lr scale of pytorch-optimizer's `get_adjusted_lr`.
fn adjusted_ratio(use_adjusted_lr: bool, rows: usize, cols: usize) -> f64 {
    let (a, b) = (rows as f64, cols as f64);
    if use_adjusted_lr {
        0.2 * a.max(b).sqrt()
    } else {
        (a / b).max(1.0).sqrt()
    }
}

impl OptimizerConfig for AdaMuon {
    const NAME: &'static str = "adamuon";
    const REFERENCE: &'static str =
        "pytorch_optimizer.AdaMuon (pytorch-optimizer 4.1.0, use_muon=True), \
         Newton-Schulz in f32; variant=official: Chongjie-Si/AdaMuon";
    const PAPER: &'static str =
        "Si, Zhang & Shen, AdaMuon: Adaptive Muon Optimizer (arXiv:2507.11005)";
    const SUMMARY: &'static str =
        "Muon with an element-wise second moment of the orthogonalized update, RMS-matched to Adam";
    const MATRICES_ONLY: bool = true;

    fn suggested() -> serde_json::Value {
        serde_json::json!({"lr": 0.02})
    }

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), non_negative(weight_decay),
            at_least(ns_steps; 1))?;
        // Bounded as torch.optim.Muon bounds it (< 100).
        crate::checks!(self, at_most(ns_steps; 99), non_negative(eps))?;
        self.ns_coeffs.resolve(Self::NAME, "ns_coeffs")?;
        Ok(())
    }
}

impl AdaMuon {
    fn step_one(
        &self,
        p: &mut ParamMut<'_>,
        st: &mut AdaMuonState,
        sched: &[[f32; 3]],
    ) -> Result<()> {
        let (rows, cols) = ns::matrix_dims(Self::NAME, p, self.flatten)?;
        let n = p.numel();
        st.step += 1;
        let official = self.variant == AdaMuonVariant::Official;
        let [beta1, beta2] = self.betas;
        let wd = WeightDecay::new(self.weight_decay, self.weight_decouple, self.lr);
        let sgn = descent_sign(self.maximize);
        let ema1 = Ema::new(beta1);
        let b1 = ema1.beta;

        // Pass 1: weight decay, momentum, the Newton-Schulz input.
        let m = st.m.get_or_fill(p.name, "m", n, 0.0)?;
        let u = ns::decay_momentum_pass(p.value, p.grad, m, wd, sgn, |g, m| {
            if official {
                *m = *m * b1 + g;
                sign(if self.nesterov { g + b1 * *m } else { *m })
            } else {
                *m = ema1.lerp(*m, g);
                if self.nesterov { lerp(g, *m, b1) } else { *m }
            }
        });
        let guard = if official {
            NormGuard::Add(1e-7)
        } else {
            NormGuard::Clamp(1e-7)
        };
        let mut o = ns::orthogonalize(
            &u,
            rows,
            cols,
            sched,
            self.ns_steps as usize,
            guard,
            self.ns_dtype,
        )?;

        // Pass 2: second moment and the normalized update.
        let ema2 = Ema::new(beta2);
        let eps = self.eps as f32;
        let bc2 = if official {
            1.0f32
        } else {
            bias_correction(beta2, st.step) as f32
        };
        let v = st.v.get_or_fill(p.name, "v", n, 0.0)?;
        for (o, v) in o.iter_mut().zip(v.iter_mut()) {
            *v = ema2.sq(*v, *o);
            let denom = if official {
                v.sqrt() + eps
            } else {
                (*v / bc2).sqrt() + eps
            };
            *o /= denom;
        }

        // Pass 3: rescale and apply.
        let norm = l2_norm(&o) + eps;
        let (target, lr) = if official {
            (0.2 * ((rows * cols) as f64).sqrt(), self.lr)
        } else {
            (
                (rows.min(cols) as f64).sqrt(),
                self.lr * adjusted_ratio(self.use_adjusted_lr, rows, cols),
            )
        };
        let scale = target as f32 / norm;
        let alpha = (-lr) as f32;
        for (x, &o) in p.value.iter_mut().zip(o.iter()) {
            *x += alpha * (o * scale);
        }
        Ok(())
    }
}

impl UpdateRule for AdaMuon {
    type State = AdaMuonState;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut AdaMuonState) -> Result<()> {
        let sched = ns::schedule_f32(&self.ns_coeffs.resolve(Self::NAME, "ns_coeffs")?);
        self.step_one(p, st, &sched)
    }

    ns::matrix_rule!();
}
