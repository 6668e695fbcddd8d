//! Gradient clipping by global norm, with the semantics of
//! `torch.nn.utils.clip_grad_norm_` (torch 2.15.0).
//!
//! ```text
//! total = ||(||g_1||_p, ..., ||g_n||_p)||_p     (max |g| for p = inf)
//! coef  = max_norm / (total + 1e-6)
//! g_i  *= min(coef, 1)
//! ```

use serde::{Deserialize, Serialize};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::exec::{default_threads, run_on, CHUNK};
use crate::tensor::ParamMut;
use crate::transform::GradientTransform;

/// Configuration of global-norm clipping.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipGradNorm {
    /// Largest allowed total norm.
    pub max_norm: f64,
    /// Order of the norm (default 2; `inf` is the max norm). JSON cannot hold
    /// infinity, so use [`ClipGradNorm::new`] for it.
    #[serde(default = "two")]
    pub norm_type: f64,
}

fn two() -> f64 {
    2.0
}

impl ClipGradNorm {
    /// Validated clipping configuration.
    pub fn new(max_norm: f64, norm_type: f64) -> Result<Self> {
        let c = ClipGradNorm {
            max_norm,
            norm_type,
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks `max_norm >= 0` and `norm_type > 0` (or infinity).
    pub fn validate(&self) -> Result<()> {
        if !(self.max_norm.is_finite() && self.max_norm >= 0.0) {
            return Err(Error::hparam(
                "grad_clip",
                "max_norm",
                self.max_norm,
                "must be a finite number >= 0",
            ));
        }
        if self.norm_type.is_nan() || self.norm_type <= 0.0 {
            return Err(Error::hparam(
                "grad_clip",
                "norm_type",
                self.norm_type,
                "must be > 0 (or inf)",
            ));
        }
        Ok(())
    }

    /// The total norm of all gradients.
    pub fn total_norm(&self, grads: &[&[f32]]) -> f64 {
        total_norm(grads, self.norm_type)
    }

    /// Clips `grads` in place; returns the total norm before clipping.
    pub fn apply(&self, grads: &mut [&mut [f32]]) -> f64 {
        let views: Vec<&[f32]> = grads.iter().map(|g| &**g).collect();
        let total = total_norm(&views, self.norm_type);
        let coef = (self.max_norm / (total + 1e-6)) as f32;
        if coef < 1.0 {
            scale_all(grads, coef);
        }
        total
    }
}

/// Multiplies every gradient by `coef`, in chunks on the default thread pool.
fn scale_all(grads: &mut [&mut [f32]], coef: f32) {
    let mut chunks: Vec<&mut [f32]> = grads.iter_mut().flat_map(|g| g.chunks_mut(CHUNK)).collect();
    let threads = default_threads();
    let work = |c: &mut &mut [f32]| {
        for x in c.iter_mut() {
            *x *= coef;
        }
    };
    if threads <= 1 || chunks.len() <= 1 {
        chunks.iter_mut().for_each(work);
    } else {
        let _ = run_on(threads, || chunks.par_iter_mut().for_each(work));
    }
}

/// The sum of `f(x)` over one block, in f64 with eight interleaved
/// accumulators (a fixed order, so the same on every run).
#[inline(always)]
fn block_sum(b: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let mut it = b.chunks_exact(8);
    for c in &mut it {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += f(x as f64);
        }
    }
    for (a, &x) in acc.iter_mut().zip(it.remainder()) {
        *a += f(x as f64);
    }
    acc.iter().sum()
}

/// The p-norm of the per-tensor p-norms (the global norm), computed in f64.
///
/// The sum runs over fixed blocks of [`CHUNK`] elements of each tensor
/// (in parallel on the default thread pool), whose partial sums are then
/// added in order: the result does not depend on the number of threads.
pub fn total_norm(grads: &[&[f32]], norm_type: f64) -> f64 {
    let blocks: Vec<&[f32]> = grads.iter().flat_map(|g| g.chunks(CHUNK)).collect();
    let per_block = |b: &&[f32]| -> f64 {
        if norm_type.is_infinite() {
            b.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()))
        } else if norm_type == 2.0 {
            block_sum(b, |x| x * x)
        } else if norm_type == 1.0 {
            block_sum(b, f64::abs)
        } else {
            block_sum(b, |x| x.abs().powf(norm_type))
        }
    };
    let threads = default_threads();
    let partial: Vec<f64> = if threads <= 1 || blocks.len() <= 1 {
        blocks.iter().map(per_block).collect()
    } else {
        run_on(threads, || blocks.par_iter().map(per_block).collect())
            .unwrap_or_else(|_| blocks.iter().map(per_block).collect())
    };
    if norm_type.is_infinite() {
        return partial.into_iter().fold(0.0f64, f64::max);
    }
    let s: f64 = partial.iter().sum();
    if norm_type == 2.0 {
        s.sqrt()
    } else if norm_type == 1.0 {
        s
    } else {
        s.powf(1.0 / norm_type)
    }
}

impl GradientTransform for ClipGradNorm {
    fn name(&self) -> &str {
        "clip_grad_norm"
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({"max_norm": self.max_norm, "norm_type": self.norm_type})
    }

    fn transform(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        let mut grads: Vec<&mut [f32]> = params.iter_mut().map(|p| &mut *p.grad).collect();
        self.apply(&mut grads);
        Ok(())
    }
}
