//! SCION: stochastic conditional gradient with norm-constrained linear
//! minimization oracles (spectral for matrices, RMS for biases, sign, ...).
//!
//! **Reference:** `pytorch_optimizer.SCION` (pytorch-optimizer 4.1.0),
//! Newton-Schulz in f32 (the library casts it to bfloat16 by default; the
//! golden cases were made with it in f32, as the replay contract does for
//! `muon`). **Paper:** Pethick, Xie, Erdogan, Antonakopoulos, Silveti-Falls
//! & Cevher, "Training Deep Learning Models with Norm-Constrained LMOs",
//! ICML 2025 (arXiv:2502.07529).
//!
//! Update rule per parameter (`d` starts at zero):
//! ```text
//! g <- -g                                   if maximize
//! p <- p (1 - lr wd)                        if !constraint, wd > 0, weight_decouple
//! g <- g + wd p                             if !constraint, wd > 0, otherwise
//! d <- lerp(d, g, momentum)                 (momentum is the weight of the new gradient)
//! u <- scale * lmo(d)
//! p <- p (1 - lr)                           if constraint
//! p <- p - lr u
//! ```
//! `lmo` by `norm_type` (the library's `LMONorm`), with `norm_kwargs`:
//! ```text
//! 0 NONE          d
//! 1 AUTO          BIAS for 0-D/1-D, SPECTRAL for 2-D, SPECTRALCONV for 3-D/4-D (default kwargs)
//! 2 SPECTRAL      NS5(d) * s, s = sqrt(d_out/d_in) if normalize else sqrt(d_out),
//!                 s = max(1, s) if max_scale        (max_scale=false, normalize=true, num_steps=5)
//! 3 SPECTRALCONV  NS5(d as d_out x rest) * sqrt(d_out/d_in) / prod(kernel dims)   (num_steps=5)
//! 4 SIGN          sign(d) / d_in if normalize else sign(d)                        (normalize=true)
//! 5 BIAS          d / (sqrt(mean over dim 0 of d^2) + 1e-8)
//! 6 COL           d / (||column||_2 / sqrt(d_in) (* d_out if normalized) + 1e-8)  (normalized=false, transpose=false)
//! 7 ROW           d / (||row||_2 (* sqrt(row length) if normalized) + 1e-8)       (normalized=true, transpose=false)
//! ```
//! with `(d_out, d_in) = (shape[0], shape[1])` (COL and ROW on the
//! transpose when `transpose`); other integers are NONE, as in the library.
//! SPECTRAL and COL take matrices, SIGN and SPECTRALCONV at least 2-D
//! tensors, ROW anything with a dimension (a matrix when transposed).
//! NS5 is Newton-Schulz with Keller Jordan's coefficients, the input divided
//! by `max(||d||_F, 1e-7)`.
//!
//! Defaults: lr = 1e-3, momentum = 0.1, constraint = false, norm_type = 1
//! (AUTO), norm_kwargs = null, scale = 1, weight_decay = 0,
//! weight_decouple = true, maximize = false. Validation as the reference:
//! lr >= 0, momentum in (0, 1], scale > 0, weight_decay >= 0; keys of
//! `norm_kwargs` that the oracle does not take are errors (the library
//! raises a TypeError at the first step). A parameter the oracle cannot
//! take (SPECTRAL, SIGN or COL on a non-matrix, AUTO on more than 4
//! dimensions) is an error naming it, before anything changes.
//!
//! **Not included:** the library's `init()` (parameter initialization for
//! each norm) is not an optimizer step and is not offered here.
//!
//! **Known differences.** Newton-Schulz products in f32 with
//! [`crate::gemm`]'s summation order and norms summed in f64: differences
//! of order 1e-7 (the cases' tolerance is 1e-4, as for the Muon family).


// Index loops over several arrays at once, as in the reference's formulas.
#![allow(clippy::needless_range_loop)]
use serde::{Deserialize, Serialize};

use super::newton_schulz::{self as ns, NormGuard, NsDtype, MUON_COEFFICIENTS};
use crate::error::{Error, Result};
use crate::math::{descent_sign, lerp, sign, WeightDecay};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::state::StateStore;
use crate::tensor::ParamMut;

crate::param_state! {
    /// SCION state: the averaged gradient `d`.
    pub struct ScionState { d }
}

/// Options of the oracle (`norm_kwargs`); which ones apply depends on
/// `norm_type`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormKwargs {
    /// SPECTRAL: clamp the scale below at 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_scale: Option<bool>,
    /// SPECTRAL, SIGN: divide by the input dimension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<bool>,
    /// SPECTRAL, SPECTRALCONV: Newton-Schulz iterations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_steps: Option<u64>,
    /// SIGN: only used by the library's `init()`; accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_init: Option<bool>,
    /// COL, ROW: normalize by the dimension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalized: Option<bool>,
    /// COL, ROW: act on the transpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transpose: Option<bool>,
}

/// Hyperparameters of `pytorch_optimizer.SCION`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scion {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Weight of the new gradient in `d`, in (0, 1] (default 0.1).
    pub momentum: f64,
    /// Conditional-gradient update `p <- (1 - lr) p - lr u` (default false).
    pub constraint: bool,
    /// Oracle, the library's `LMONorm` value (default 1 = AUTO).
    pub norm_type: i64,
    /// Options of the oracle (default null).
    pub norm_kwargs: Option<NormKwargs>,
    /// Radius of the norm ball (default 1).
    pub scale: f64,
    /// Weight decay, used when `constraint` is false (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay; L2 otherwise (default true).
    pub weight_decouple: bool,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Scion {
    fn default() -> Self {
        Scion {
            lr: 1e-3,
            momentum: 0.1,
            constraint: false,
            norm_type: 1,
            norm_kwargs: None,
            scale: 1.0,
            weight_decay: 0.0,
            weight_decouple: true,
            maximize: false,
        }
    }
}

/// A resolved oracle.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Lmo {
    Identity,
    Auto,
    Spectral {
        max_scale: bool,
        normalize: bool,
        steps: u64,
    },
    SpectralConv {
        steps: u64,
    },
    Sign {
        normalize: bool,
    },
    Bias,
    Col {
        normalized: bool,
        transpose: bool,
    },
    Row {
        normalized: bool,
        transpose: bool,
    },
}

const LMO_EPS: f32 = 1e-8;

impl Scion {
    /// The oracle of `norm_type` with `norm_kwargs`; keys the oracle does
    /// not take are an error.
    fn lmo(&self) -> Result<Lmo> {
        let kw = self.norm_kwargs.clone().unwrap_or_default();
        let allowed: &[&str] = match self.norm_type {
            2 => &["max_scale", "normalize", "num_steps"],
            3 => &["num_steps"],
            4 => &["zero_init", "normalize"],
            6 | 7 => &["normalized", "transpose"],
            // NONE, AUTO, BIAS and unknown values ignore norm_kwargs.
            _ => &["max_scale", "normalize", "num_steps", "zero_init", "normalized", "transpose"],
        };
        let given = [
            ("max_scale", kw.max_scale.is_some()),
            ("normalize", kw.normalize.is_some()),
            ("num_steps", kw.num_steps.is_some()),
            ("zero_init", kw.zero_init.is_some()),
            ("normalized", kw.normalized.is_some()),
            ("transpose", kw.transpose.is_some()),
        ];
        for (key, set) in given {
            if set && !allowed.contains(&key) {
                return Err(Error::hparam(
                    Self::NAME,
                    &format!("norm_kwargs.{key}"),
                    "given",
                    &format!("is not an option of norm_type {}", self.norm_type),
                ));
            }
        }
        Ok(match self.norm_type {
            1 => Lmo::Auto,
            2 => Lmo::Spectral {
                max_scale: kw.max_scale.unwrap_or(false),
                normalize: kw.normalize.unwrap_or(true),
                steps: kw.num_steps.unwrap_or(5),
            },
            3 => Lmo::SpectralConv {
                steps: kw.num_steps.unwrap_or(5),
            },
            4 => Lmo::Sign {
                normalize: kw.normalize.unwrap_or(true),
            },
            5 => Lmo::Bias,
            6 => Lmo::Col {
                normalized: kw.normalized.unwrap_or(false),
                transpose: kw.transpose.unwrap_or(false),
            },
            7 => Lmo::Row {
                normalized: kw.normalized.unwrap_or(true),
                transpose: kw.transpose.unwrap_or(false),
            },
            _ => Lmo::Identity,
        })
    }
}

/// The oracle AUTO picks for a parameter of `ndim` dimensions.
fn resolve(lmo: Lmo, ndim: usize) -> Option<Lmo> {
    match lmo {
        Lmo::Auto => match ndim {
            0 | 1 => Some(Lmo::Bias),
            2 => Some(Lmo::Spectral {
                max_scale: false,
                normalize: true,
                steps: 5,
            }),
            3 | 4 => Some(Lmo::SpectralConv { steps: 5 }),
            _ => None,
        },
        Lmo::Spectral { .. } | Lmo::Col { .. } if ndim != 2 => None,
        Lmo::SpectralConv { .. } | Lmo::Sign { .. } if ndim < 2 => None,
        Lmo::Row {
            transpose: true, ..
        } if ndim != 2 => None,
        Lmo::Row { .. } if ndim == 0 => None,
        other => Some(other),
    }
}

fn ns5(d: &[f32], rows: usize, cols: usize, steps: u64) -> Result<Vec<f32>> {
    let coeffs = ns::schedule_f32(&[MUON_COEFFICIENTS]);
    ns::orthogonalize(
        d,
        rows,
        cols,
        &coeffs,
        steps as usize,
        NormGuard::Clamp(1e-7),
        NsDtype::Float32,
    )
}

/// `lmo(d)` for a parameter of shape `shape`.
fn apply_lmo(lmo: Lmo, d: &[f32], shape: &[usize]) -> Result<Vec<f32>> {
    let n = d.len();
    match lmo {
        Lmo::Identity | Lmo::Auto => Ok(d.to_vec()),
        Lmo::Spectral {
            max_scale,
            normalize,
            steps,
        } => {
            let (rows, cols) = (shape[0], shape[1]);
            let mut o = ns5(d, rows, cols, steps)?;
            let mut s = if normalize {
                (rows as f64 / cols as f64).sqrt()
            } else {
                (rows as f64).sqrt()
            };
            if max_scale {
                s = s.max(1.0);
            }
            let s = s as f32;
            o.iter_mut().for_each(|x| *x *= s);
            Ok(o)
        }
        Lmo::SpectralConv { steps } => {
            let rows = shape[0];
            let cols = n.checked_div(rows).unwrap_or(0);
            let mut o = ns5(d, rows, cols, steps)?;
            let kernel: usize = shape[2..].iter().product();
            let s = ((shape[0] as f64 / shape[1] as f64).sqrt() / kernel as f64) as f32;
            o.iter_mut().for_each(|x| *x *= s);
            Ok(o)
        }
        Lmo::Sign { normalize } => {
            let d_in = shape[1] as f32;
            Ok(d
                .iter()
                .map(|&x| if normalize { sign(x) / d_in } else { sign(x) })
                .collect())
        }
        Lmo::Bias => {
            // RMS over dimension 0, one value per index of the rest.
            let d0 = shape.first().copied().unwrap_or(1).max(1);
            let rest = if n == 0 { 0 } else { n / d0 };
            let mut rms = vec![0.0f32; rest];
            for (j, r) in rms.iter_mut().enumerate() {
                let s: f64 = (0..d0).map(|i| (d[i * rest + j] as f64).powi(2)).sum();
                *r = ((s as f32) / d0 as f32).sqrt() + LMO_EPS;
            }
            Ok(d.iter().enumerate().map(|(k, &x)| x / rms[k % rest.max(1)]).collect())
        }
        Lmo::Col {
            normalized,
            transpose,
        } => {
            // Columns of g (of g^T when transposed): with g = rows x cols,
            // a column of g^T is a row of g.
            let (rows, cols) = (shape[0], shape[1]);
            let (lines, len, d_out) = if transpose {
                (rows, cols, rows)
            } else {
                (cols, rows, cols)
            };
            let d_in = len;
            let norm = |l: usize| -> f32 {
                let s: f64 = (0..len)
                    .map(|i| {
                        let x = if transpose { d[l * cols + i] } else { d[i * cols + l] };
                        (x as f64).powi(2)
                    })
                    .sum();
                let mut r = (s as f32).sqrt() / (d_in as f64).sqrt() as f32;
                if normalized {
                    r *= d_out as f32;
                }
                r + LMO_EPS
            };
            let norms: Vec<f32> = (0..lines).map(norm).collect();
            Ok(d.iter()
                .enumerate()
                .map(|(k, &x)| {
                    let l = if transpose { k / cols } else { k % cols };
                    x / norms[l]
                })
                .collect())
        }
        Lmo::Row {
            normalized,
            transpose,
        } => {
            if transpose {
                // Rows of g^T are the columns of g.
                let (rows, cols) = (shape[0], shape[1]);
                let norms: Vec<f32> = (0..cols)
                    .map(|j| {
                        let s: f64 = (0..rows).map(|i| (d[i * cols + j] as f64).powi(2)).sum();
                        let mut r = (s as f32).sqrt();
                        if normalized {
                            r *= (rows as f64).sqrt() as f32;
                        }
                        r + LMO_EPS
                    })
                    .collect();
                Ok(d.iter().enumerate().map(|(k, &x)| x / norms[k % cols]).collect())
            } else {
                let len = *shape.last().unwrap_or(&1);
                let mut out = d.to_vec();
                if len == 0 {
                    return Ok(out);
                }
                for row in out.chunks_exact_mut(len) {
                    let s: f64 = row.iter().map(|&x| (x as f64).powi(2)).sum();
                    let mut r = (s as f32).sqrt();
                    if normalized {
                        r *= (len as f64).sqrt() as f32;
                    }
                    let r = r + LMO_EPS;
                    row.iter_mut().for_each(|x| *x /= r);
                }
                Ok(out)
            }
        }
    }
}

impl OptimizerConfig for Scion {
    const NAME: &'static str = "scion";
    const REFERENCE: &'static str =
        "pytorch_optimizer.SCION (pytorch-optimizer 4.1.0), Newton-Schulz in f32";
    const PAPER: &'static str = "Pethick et al., Training Deep Learning Models with Norm-Constrained LMOs, ICML 2025 (arXiv:2502.07529)";
    const SUMMARY: &'static str =
        "averaged gradient through a norm-ball linear minimization oracle (spectral, sign, RMS, ...)";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr))?;
        if !(self.momentum > 0.0 && self.momentum <= 1.0) {
            return Err(Error::hparam(
                Self::NAME,
                "momentum",
                self.momentum,
                "must be in (0, 1]",
            ));
        }
        crate::checks!(self, positive(scale), non_negative(weight_decay))?;
        self.lmo()?;
        Ok(())
    }
}

impl UpdateRule for Scion {
    type State = ScionState;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut ScionState) -> Result<()> {
        let lmo = resolve(self.lmo()?, p.shape.len()).ok_or_else(|| unsupported(self, p))?;
        let n = p.numel();
        st.step += 1;
        let sgn = descent_sign(self.maximize);
        let wd = if self.constraint {
            WeightDecay::OFF
        } else {
            WeightDecay::new(self.weight_decay, self.weight_decouple, self.lr)
        };
        let w = self.momentum as f32;
        let dbuf = st.d.get_or_fill(p.name, "d", n, 0.0)?;
        for ((x, &g), d) in p.value.iter_mut().zip(p.grad.iter()).zip(dbuf.iter_mut()) {
            let g = wd.apply(x, sgn * g);
            *d = lerp(*d, g, w);
        }
        let u = apply_lmo(lmo, dbuf, p.shape)?;
        let scale = self.scale as f32;
        let keep = (1.0 - self.lr) as f32;
        let neg_lr = (-self.lr) as f32;
        for (x, &u) in p.value.iter_mut().zip(u.iter()) {
            if self.constraint {
                *x *= keep;
            }
            *x += neg_lr * (u * scale);
        }
        Ok(())
    }

    fn check_params(&self, params: &[ParamMut<'_>]) -> Result<()> {
        let lmo = self.lmo()?;
        for p in params {
            if resolve(lmo, p.shape.len()).is_none() {
                return Err(unsupported(self, p));
            }
        }
        Ok(())
    }

    fn update_all(
        &self,
        info: &StepInfo,
        params: &mut [ParamMut<'_>],
        states: &mut StateStore<ScionState>,
    ) -> Option<Result<()>> {
        Some(
            self.check_params(params)
                .and_then(|()| crate::exec::run_per_param(self, info, params, states)),
        )
    }
}

fn unsupported(s: &Scion, p: &ParamMut<'_>) -> Error {
    Error::Unsupported(format!(
        "scion: norm_type {} does not take parameter '{}' of shape {:?}",
        s.norm_type, p.name, p.shape
    ))
}
