//! Piecewise-constant schedules: a constant, torch's step decay and optax's
//! piecewise constant.

use super::Schedule;

/// A constant value (`optax.constant_schedule`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Constant(pub f64);

impl Schedule for Constant {
    fn value(&self, _s: u64) -> f64 {
        self.0
    }
}

/// `torch.optim.lr_scheduler.StepLR(step_size, gamma)` in its closed form:
/// `base * gamma^floor(s / step_size)` (torch's chained form multiplies by
/// gamma at every boundary, which agrees to the last bits of an f64).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub base: f64,
    pub step_size: u64,
    pub gamma: f64,
}

impl Schedule for Step {
    fn value(&self, s: u64) -> f64 {
        self.base * self.gamma.powf((s / self.step_size) as f64)
    }
}

/// `optax.piecewise_constant_schedule(init, boundaries_and_scales)`: the
/// value is multiplied by `scale` from step `boundary` on, for each pair in
/// increasing order of boundary.
#[derive(Debug, Clone, PartialEq)]
pub struct PiecewiseConstant {
    pub init_value: f64,
    /// (boundary, scale), sorted by boundary.
    pub boundaries_and_scales: Vec<(u64, f64)>,
}

impl Schedule for PiecewiseConstant {
    fn value(&self, s: u64) -> f64 {
        let mut v = self.init_value;
        for &(b, scale) in &self.boundaries_and_scales {
            if s >= b {
                v *= scale;
            }
        }
        v
    }
}
