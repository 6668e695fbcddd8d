//! Cosine schedules: optax's warmup-cosine and cosine decay.

use super::Schedule;

/// Linear warmup from 0 then cosine decay to `min_lr`, as
/// `optax.warmup_cosine_decay_schedule(0, base, warmup_steps, total_steps, min_lr)`:
///
/// ```text
/// s <  W: base * s / W
/// s >= W: min_lr + (base - min_lr) * 0.5 * (1 + cos(pi * min(1, (s - W) / max(1, T - W))))
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmupCosine {
    pub base: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub min_lr: f64,
}

impl Schedule for WarmupCosine {
    fn value(&self, s: u64) -> f64 {
        if s < self.warmup_steps {
            return self.base * s as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((s - self.warmup_steps) as f64 / span).min(1.0);
        self.min_lr
            + (self.base - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// `optax.cosine_decay_schedule(init, decay_steps, alpha, exponent)`:
///
/// ```text
/// c = min(s, D);  init * ((1 - alpha) * (0.5 * (1 + cos(pi * c / D)))^exponent + alpha)
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineDecay {
    pub init_value: f64,
    pub decay_steps: u64,
    pub alpha: f64,
    pub exponent: f64,
}

impl Schedule for CosineDecay {
    fn value(&self, s: u64) -> f64 {
        let d = self.decay_steps as f64;
        let c = (s as f64).min(d);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * c / d).cos());
        let decayed = (1.0 - self.alpha) * cosine.powf(self.exponent) + self.alpha;
        self.init_value * decayed
    }
}
