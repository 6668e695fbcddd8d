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

/// How weight decay enters an update rule: off, coupled (L2: `g += wd * p`
/// before the moments) or decoupled (`p *= keep` before the update, where
/// `keep = 1 - lr * wd` is computed in f64 and rounded once, as torch does).
///
/// A struct whose coefficient is always written (0 when off), not an enum
/// with data: a vectorized loop computes every arm and selects afterwards,
/// so it multiplies by the coefficient even when the decay is off, and an
/// enum's unused payload is never written. Where those stale bits were a
/// denormal, each vector took a microcode assist: ADOPT and AdEMAMix ran
/// 5-10x slower, at random from process to process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightDecay {
    mode: DecayMode,
    c: f32,
}

/// The form of a [`WeightDecay`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecayMode {
    /// None.
    Off,
    /// L2, coupled: `g += wd * p` before the moments.
    Coupled,
    /// Decoupled: `p *= keep` before the update.
    Decoupled,
}

impl WeightDecay {
    /// No decay.
    pub const OFF: WeightDecay = WeightDecay { mode: DecayMode::Off, c: 0.0 };

    /// L2 decay with coefficient `wd`.
    pub fn coupled(wd: f32) -> Self {
        WeightDecay { mode: DecayMode::Coupled, c: wd }
    }

    /// Decoupled decay scaling the parameter by `keep`.
    pub fn decoupled(keep: f32) -> Self {
        WeightDecay { mode: DecayMode::Decoupled, c: keep }
    }

    /// The variant for `wd` with the given coupling; `lr` scales the decoupled factor.
    pub fn new(wd: f64, decoupled: bool, lr: f64) -> Self {
        if wd == 0.0 {
            WeightDecay::OFF
        } else if decoupled {
            WeightDecay::decoupled((1.0 - lr * wd) as f32)
        } else {
            WeightDecay::coupled(wd as f32)
        }
    }

    /// The form.
    pub fn mode(self) -> DecayMode {
        self.mode
    }

    /// The decoupled factor `keep`, None for the other forms.
    pub fn keep(self) -> Option<f32> {
        (self.mode == DecayMode::Decoupled).then_some(self.c)
    }

    /// [`WeightDecay::apply`] on values: returns the (possibly scaled)
    /// parameter and the (possibly decayed) gradient. Both forms are
    /// computed and one is selected, with no branch, so that loops using it
    /// vectorize (a three-way `match` here left some loops scalar).
    #[inline(always)]
    pub fn apply_to(self, p: f32, g: f32) -> (f32, f32) {
        let coupled = self.mode == DecayMode::Coupled;
        let decoupled = self.mode == DecayMode::Decoupled;
        let (gd, pd) = (g + self.c * p, p * self.c);
        (if decoupled { pd } else { p }, if coupled { gd } else { g })
    }

    /// Applies the decay to one element: scales `p` (decoupled) or returns
    /// the gradient with the L2 term added (coupled).
    #[inline(always)]
    pub fn apply(self, p: &mut f32, g: f32) -> f32 {
        let (x, g) = self.apply_to(*p, g);
        *p = x;
        g
    }
}

/// An optional constant of a kernel, as `Option<T>` but with its value
/// always written (`T::default()` when absent). A vectorized loop computes
/// both arms of a `match` on an `Option` and selects afterwards; `None`
/// leaves its payload unwritten, and stale bits that read as a denormal
/// cost a microcode assist per vector (see [`WeightDecay`]). Match on
/// [`Maybe::get`] inside the loop.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Maybe<T> {
    on: bool,
    v: T,
}

impl<T: Copy + Default> Maybe<T> {
    /// The value, if present.
    #[inline(always)]
    pub fn get(self) -> Option<T> {
        if self.on {
            Some(self.v)
        } else {
            None
        }
    }
}

impl<T: Default> From<Option<T>> for Maybe<T> {
    fn from(o: Option<T>) -> Self {
        match o {
            Some(v) => Maybe { on: true, v },
            None => Maybe { on: false, v: T::default() },
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
/// accumulated in f64 and rounded once. The squares go into the
/// interleaved lanes of [`crate::sqsum`] (a fixed order, the same bits on
/// every instruction set), not into one chain of additions, so that a
/// large tensor's norm runs at the memory's pace.
pub fn l2_norm(xs: &[f32]) -> f32 {
    let mut lanes = [0.0f64; crate::sqsum::LANES];
    crate::sqsum::add_sq(xs, &mut lanes);
    crate::sqsum::lanes_sum(&lanes).sqrt() as f32
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
