//! Pieces shared by the Adam-family ports of pytorch-optimizer 4.1.0
//! (`adopt`, `ademamix`, `simplifiedademamix`, `mars`, `adan`, `laprop`,
//! `yogi`, `adamp`, `qhadam`, `adamod`, `stableadamw`, `diffgrad`),
//! written once.
//!
//! Conventions of these ports, as the reference's `BaseOptimizer`:
//! - `maximize`: the gradient is negated first (exact);
//! - weight decay ([`decay`]): `weight_decouple = true` scales
//!   `p *= 1 - wd * (fixed_decay ? 1 : lr)` (the factor computed in f64 and
//!   rounded once), otherwise `g += wd * p` (L2);
//! - one step counter per optimizer (`group['step']`).

use crate::math::WeightDecay;
use crate::tensor::StateTensor;

/// `BaseOptimizer.apply_weight_decay` with `fixed_decay` (and an optional
/// `ratio`, as AdamP uses), as a [`WeightDecay`].
pub fn decay(wd: f64, decouple: bool, fixed: bool, lr: f64, ratio: f64) -> WeightDecay {
    if wd == 0.0 {
        WeightDecay::OFF
    } else if decouple {
        WeightDecay::decoupled((1.0 - wd * (if fixed { 1.0 } else { lr }) * ratio) as f32)
    } else if wd > 0.0 {
        WeightDecay::coupled(wd as f32)
    } else {
        WeightDecay::OFF
    }
}

/// AdaNorm (`get_adanorm_gradient` of pytorch-optimizer 4.1.0): updates the
/// running gradient norm `e <- e r + (1 - r) ||g||` (one f32 value in
/// `buf`, buffer `exp_grad_adanorm`, from 0) and returns `(e, ||g||)` when
/// the gradient is to be rescaled to `g e / ||g||` (`||g|| > 0` and
/// `e > ||g||`), `None` otherwise. The norm is accumulated in f64 and
/// rounded.
pub fn adanorm(
    buf: &mut StateTensor,
    param: &str,
    grad: impl Iterator<Item = f32>,
    r: f64,
) -> crate::error::Result<Option<(f32, f32)>> {
    let norm = grad.map(|g| g as f64 * g as f64).sum::<f64>().sqrt() as f32;
    let slot = &mut buf.get_or_fill(param, "exp_grad_adanorm", 1, 0.0)?[0];
    let e = *slot * r as f32 + (1.0 - r) as f32 * norm;
    *slot = e;
    Ok((norm > 0.0 && e > norm).then_some((e, norm)))
}

/// The gradient preparation of AdamP and Adan's per-parameter path:
/// gradient centralization of `g` when `use_gc` and the parameter has 2 or
/// more dimensions ([`super::ranger::centralize`]), then, when `use_adanorm`,
/// AdaNorm's running norm of the centralized gradient ([`adanorm`], its
/// result returned; `None` without AdaNorm).
pub fn centralize_adanorm(
    g: &mut [f32],
    shape: &[usize],
    use_gc: bool,
    use_adanorm: bool,
    buf: &mut StateTensor,
    param: &str,
    r: f64,
) -> crate::error::Result<Option<(f32, f32)>> {
    if use_gc && shape.len() > 1 {
        super::ranger::centralize(g, shape);
    }
    if use_adanorm {
        adanorm(buf, param, g.iter().copied(), r)
    } else {
        Ok(None)
    }
}

/// The gradient `g` as the first moment takes it under AdaNorm: `g e / ||g||`
/// with `ada = Some((e, ||g||))` from [`adanorm`], `g` otherwise.
#[inline(always)]
pub fn adanorm_rescaled(g: f32, ada: Option<(f32, f32)>) -> f32 {
    match ada {
        Some((e, norm)) => g * e / norm,
        None => g,
    }
}

/// The step size `step` divided by the first moment's bias correction
/// `1 - beta1^t`, or `step` as it is with `adam_debias` (AdamD).
#[inline]
pub fn debias(step: f64, adam_debias: bool, beta1: f64, t: u64) -> f64 {
    if adam_debias {
        step
    } else {
        step / crate::math::bias_correction(beta1, t)
    }
}

/// `-1` when maximizing, `+1` otherwise: the gradient's sign.
#[inline]
pub fn grad_sign(maximize: bool) -> f32 {
    if maximize {
        -1.0
    } else {
        1.0
    }
}

/// A Python float kept per parameter (pytorch-optimizer keeps some running
/// sums as Python floats in the state) in a 2-value f32 buffer: the value
/// rounded to f32 and the rest, about 48 bits together.
pub fn load_f64(t: &StateTensor) -> f64 {
    match t.try_as_slice() {
        Some([hi, lo, ..]) => *hi as f64 + *lo as f64,
        _ => 0.0,
    }
}

/// Stores `x` as [`load_f64`] reads it, allocating the buffer on first use.
pub fn store_f64(t: &mut StateTensor, x: f64) {
    if !t.is_allocated() || t.len() != 2 || t.try_as_slice().is_none() {
        *t = StateTensor::zeros(2);
    }
    let hi = x as f32;
    let lo = (x - hi as f64) as f32;
    let s = t.as_mut_slice();
    s[0] = hi;
    s[1] = lo;
}

/// torch's `clamp_min(x, lo)` on f32: NaN stays NaN.
#[inline(always)]
pub fn clamp_min(x: f32, lo: f32) -> f32 {
    if x < lo {
        lo
    } else {
        x
    }
}

/// torch's `minimum(a, b)`: NaN if either is NaN.
#[inline(always)]
pub fn minimum(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.min(b)
    }
}

/// `BaseOptimizer.debias_beta`: `(beta^t - beta) / (beta^t - 1)`.
pub fn debias_beta(beta: f64, t: u64) -> f64 {
    let bn = beta.powf(t as f64);
    (bn - beta) / (bn - 1.0)
}

/// Checks a third beta in `[0, 1]` (`validate_betas` of the reference).
pub fn beta3(opt: &str, b: f64) -> crate::error::Result<()> {
    crate::validate::unit_interval(opt, "betas[2]", b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_floats_round_trip() {
        let mut t = StateTensor::default();
        assert_eq!(load_f64(&t), 0.0);
        for x in [0.1f64, 1.0 - 0.999f64.powi(7), 123.456789e-7] {
            store_f64(&mut t, x);
            assert!((load_f64(&t) - x).abs() <= x.abs() * 1e-14);
        }
    }

    #[test]
    fn decay_variants() {
        assert_eq!(decay(0.0, true, false, 0.1, 1.0), WeightDecay::OFF);
        assert_eq!(decay(0.5, true, true, 0.1, 1.0), WeightDecay::decoupled(0.5));
        assert_eq!(decay(0.5, true, false, 0.1, 1.0), WeightDecay::decoupled(0.95));
        assert_eq!(decay(0.5, false, false, 0.1, 1.0), WeightDecay::coupled(0.5));
        assert!(minimum(f32::NAN, 1.0).is_nan());
        assert!(clamp_min(f32::NAN, 1.0).is_nan());
        assert_eq!(clamp_min(0.5, 1.0), 1.0);
    }
}
