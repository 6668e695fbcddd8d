//! Power-law and exponential decays: optax's polynomial (and linear,
//! warmup-constant), exponential decay, and the inverse square root.

use super::Schedule;

/// `optax.polynomial_schedule(init, end, power, transition_steps, transition_begin)`
/// (and `optax.linear_schedule`, its `power = 1` case):
///
/// ```text
/// c = clip(s - begin, 0, T);  (init - end) * (1 - c / T)^power + end
/// ```
/// With `T = 0` the value is `init` at every step (as optax).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Polynomial {
    pub init_value: f64,
    pub end_value: f64,
    pub power: f64,
    pub transition_steps: u64,
    pub transition_begin: u64,
}

impl Schedule for Polynomial {
    fn value(&self, s: u64) -> f64 {
        if self.transition_steps == 0 {
            return self.init_value;
        }
        let c = s
            .saturating_sub(self.transition_begin)
            .min(self.transition_steps);
        let frac = 1.0 - c as f64 / self.transition_steps as f64;
        (self.init_value - self.end_value) * frac.powf(self.power) + self.end_value
    }
}

/// `optax.exponential_decay(init, transition_steps, decay_rate, transition_begin, staircase, end_value)`:
///
/// ```text
/// c = s - begin;  p = c / T (floored if staircase)
/// value = init if c <= 0 else init * rate^p, then clipped at end_value
/// (a floor when rate < 1, a ceiling otherwise)
/// ```
/// With `T = 0` or `rate = 0` the value is `init` at every step (as optax).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exponential {
    pub init_value: f64,
    pub transition_steps: u64,
    pub decay_rate: f64,
    pub transition_begin: u64,
    pub staircase: bool,
    pub end_value: Option<f64>,
}

impl Schedule for Exponential {
    fn value(&self, s: u64) -> f64 {
        if self.transition_steps == 0 || self.decay_rate == 0.0 {
            return self.init_value;
        }
        let c = s as f64 - self.transition_begin as f64;
        let mut p = c / self.transition_steps as f64;
        if self.staircase {
            p = p.floor();
        }
        let v = if c <= 0.0 {
            self.init_value
        } else {
            self.init_value * self.decay_rate.powf(p)
        };
        match self.end_value {
            Some(e) if self.decay_rate < 1.0 => v.max(e),
            Some(e) => v.min(e),
            None => v,
        }
    }
}

/// Inverse square root ("Noam"), as `transformers.get_inverse_sqrt_schedule`
/// (the big_vision form): `base * factor(s)` with
///
/// ```text
/// s < W:  s / max(1, W)
/// else:   1 / sqrt((s + timescale - W) / timescale)
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InverseSqrt {
    pub base: f64,
    pub warmup_steps: u64,
    pub timescale: u64,
}

impl Schedule for InverseSqrt {
    fn value(&self, s: u64) -> f64 {
        let factor = if s < self.warmup_steps {
            s as f64 / self.warmup_steps.max(1) as f64
        } else {
            let shift = self.timescale as f64 - self.warmup_steps as f64;
            1.0 / ((s as f64 + shift) / self.timescale as f64).sqrt()
        };
        self.base * factor
    }
}
