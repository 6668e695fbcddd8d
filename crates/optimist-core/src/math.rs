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

    /// [`WeightDecay::apply`] on values: returns the (possibly scaled)
    /// parameter and the (possibly decayed) gradient. Without a store on one
    /// branch only, loops that use it vectorize.
    #[inline(always)]
    pub fn apply_to(self, p: f32, g: f32) -> (f32, f32) {
        match self {
            WeightDecay::Off => (p, g),
            WeightDecay::Coupled(wd) => (p, g + wd * p),
            WeightDecay::Decoupled(keep) => (p * keep, g),
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

/// `+1` to descend, `-1` to ascend (`maximize`): torch negates the gradient
/// first, which is exact.
#[inline]
pub fn descent_sign(maximize: bool) -> f32 {
    if maximize {
        -1.0
    } else {
        1.0
    }
}

/// torch's `maximum(a, b)` (and `clamp(a, min=b)`): NaN when either is NaN.
/// Rust's `f32::max` drops a NaN instead.
#[inline(always)]
pub fn maximum(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.max(b)
    }
}

/// An exponential moving average with decay `beta`, in torch's two forms.
/// `beta` and the weight `1 - beta` are computed in f64 and rounded once to
/// f32, as torch rounds Python scalars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ema {
    /// The decay, as f32.
    pub beta: f32,
    /// `1 - beta`, computed in f64 and rounded to f32.
    pub weight: f32,
}

impl Ema {
    /// The average with decay `beta`.
    pub fn new(beta: f64) -> Self {
        Ema {
            beta: beta as f32,
            weight: (1.0 - beta) as f32,
        }
    }

    /// `m.lerp_(x, 1 - beta)`: the first-moment form.
    #[inline(always)]
    pub fn lerp(self, m: f32, x: f32) -> f32 {
        lerp(m, x, self.weight)
    }

    /// `v.mul_(beta).addcmul_(x, x, value=1 - beta)`: the second-moment
    /// form, `v * beta + ((1 - beta) * x) * x`.
    #[inline(always)]
    pub fn sq(self, v: f32, x: f32) -> f32 {
        v * self.beta + self.weight * x * x
    }
}

/// The L2 norm of `xs` as torch returns it for an f32 tensor (an f32),
/// accumulated in f64 and rounded once.
pub fn l2_norm(xs: &[f32]) -> f32 {
    xs.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt() as f32
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
