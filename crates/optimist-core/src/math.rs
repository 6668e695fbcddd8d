//! Scalar pieces shared by many update rules, written once.

/// `sign(x)` as torch defines it: 0 for ±0, NaN for NaN, ±1 otherwise.
///
/// Rust's `f32::signum` returns ±1 for ±0, which breaks agreement with
/// torch, JAX and every sign-based optimizer's reference.
#[inline(always)]
pub fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x // ±0 stays 0 (torch keeps the zero), NaN stays NaN
    }
}

/// `1 - beta^t`, the bias correction of an exponential moving average.
#[inline]
pub fn bias_correction(beta: f64, t: u64) -> f64 {
    1.0 - beta.powf(t as f64)
}

/// torch's `lerp(a, b, w)` for f32: `a + w (b - a)` when `w < 0.5`,
/// otherwise `b - (b - a)(1 - w)`, as in ATen's CPU kernel.
#[inline(always)]
pub fn lerp(a: f32, b: f32, w: f32) -> f32 {
    let diff = b - a;
    if w.abs() < 0.5 {
        a + w * diff
    } else {
        b - diff * (1.0 - w)
    }
}

/// How weight decay enters an update rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WeightDecay {
    /// None.
    Off,
    /// L2, coupled: `g += wd * p` before the moments.
    Coupled(f32),
    /// Decoupled: `p *= keep` before the update, where `keep = 1 - lr * wd`
    /// is computed in f64 and rounded once, as torch does.
    Decoupled(f32),
}

impl WeightDecay {
    /// The variant for `wd` with the given coupling; `lr` scales the decoupled factor.
    pub fn new(wd: f64, decoupled: bool, lr: f64) -> Self {
        if wd == 0.0 {
            WeightDecay::Off
        } else if decoupled {
            WeightDecay::Decoupled((1.0 - lr * wd) as f32)
        } else {
            WeightDecay::Coupled(wd as f32)
        }
    }

    /// Applies the decay to one element: scales `p` (decoupled) or returns
    /// the gradient with the L2 term added (coupled).
    #[inline(always)]
    pub fn apply(self, p: &mut f32, g: f32) -> f32 {
        match self {
            WeightDecay::Off => g,
            WeightDecay::Coupled(wd) => g + wd * *p,
            WeightDecay::Decoupled(keep) => {
                *p *= keep;
                g
            }
        }
    }
}

/// torch's `clamp(x, min=lo)`: `lo` when `x < lo`, otherwise `x` (NaN stays
/// NaN, unlike `f32::max`, which returns `lo` for a NaN `x`).
#[inline(always)]
pub fn clamp_min(x: f32, lo: f32) -> f32 {
    if x < lo {
        lo
    } else {
        x
    }
}

/// torch's `clamp(x, min=lo, max=hi)` for `lo <= hi` (NaN stays NaN).
#[inline(always)]
pub fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}

/// torch's `clamp(x, max=hi)`: `hi` when `x > hi`, otherwise `x` (NaN stays NaN).
#[inline(always)]
pub fn clamp_max(x: f32, hi: f32) -> f32 {
    if x > hi {
        hi
    } else {
        x
    }
}
