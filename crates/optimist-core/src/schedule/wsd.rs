//! Warmup-stable-decay (pytorch-optimizer's `get_wsd_schedule`).

use serde::{Deserialize, Serialize};

use super::Schedule;

/// Cooldown shape of [`Wsd`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cooldown {
    /// `1 - p`.
    #[serde(rename = "linear")]
    Linear,
    /// `(1 - r) * max(0, 0.5 * (1 + cos(2 pi num_cycles p))) + r`.
    #[serde(rename = "cosine")]
    Cosine,
    /// `1 - sqrt(p)` (Hägele et al. 2024).
    #[serde(rename = "1-sqrt")]
    OneMinusSqrt,
    /// `1 - p^2`.
    #[serde(rename = "1-square")]
    OneMinusSquare,
}

/// Warmup-stable-decay, as `pytorch_optimizer.get_wsd_schedule` (4.1.0):
/// `base * factor(s)` with
///
/// ```text
/// s < W:            s / max(1, W)
/// s < W + S:        1
/// s < W + S + D:    cooldown(p),  p = (s - W - S) / D
/// otherwise:        min_lr_ratio
/// ```
/// As in the reference, only the cosine cooldown uses `min_lr_ratio` as its
/// floor; the other shapes reach 0 and then jump to `min_lr_ratio`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wsd {
    pub base: f64,
    pub warmup_steps: u64,
    pub stable_steps: u64,
    pub decay_steps: u64,
    pub min_lr_ratio: f64,
    pub num_cycles: f64,
    pub cooldown: Cooldown,
}

impl Wsd {
    /// The multiplier of the base value at step `s`.
    pub fn factor(&self, s: u64) -> f64 {
        let (w, st, d) = (self.warmup_steps, self.stable_steps, self.decay_steps);
        if s < w {
            return s as f64 / w.max(1) as f64;
        }
        if s - w < st {
            return 1.0;
        }
        if s - w - st < d {
            let k = (s - w - st) as f64;
            return match self.cooldown {
                Cooldown::Cosine => {
                    let progress = k / d.max(1) as f64;
                    let v = (0.5
                        * (1.0 + (std::f64::consts::PI * self.num_cycles * 2.0 * progress).cos()))
                    .max(0.0);
                    (1.0 - self.min_lr_ratio) * v + self.min_lr_ratio
                }
                Cooldown::OneMinusSqrt => 1.0 - (k / d as f64).sqrt(),
                Cooldown::OneMinusSquare => 1.0 - (k / d as f64).powf(2.0),
                Cooldown::Linear => 1.0 - k / d as f64,
            };
        }
        self.min_lr_ratio
    }
}

impl Schedule for Wsd {
    fn value(&self, s: u64) -> f64 {
        self.base * self.factor(s)
    }
}
