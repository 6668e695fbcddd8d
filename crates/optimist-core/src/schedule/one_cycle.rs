//! torch's one-cycle policy (`OneCycleLR`), for the learning rate and for
//! the momentum.

use serde::{Deserialize, Serialize};

use super::Schedule;
use crate::error::{Error, Result};

/// Annealing between two values inside a one-cycle phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Anneal {
    /// `end + (start - end) / 2 * (cos(pi * pct) + 1)`.
    #[serde(rename = "cos")]
    Cos,
    /// `(end - start) * pct + start`.
    #[serde(rename = "linear")]
    Linear,
}

impl Anneal {
    fn apply(self, start: f64, end: f64, pct: f64) -> f64 {
        match self {
            Anneal::Cos => end + (start - end) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0),
            Anneal::Linear => (end - start) * pct + start,
        }
    }
}

/// One phase of a [`OneCycle`] schedule: from `start` to `end`, ending at
/// step `end_step`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase {
    pub end_step: f64,
    pub start: f64,
    pub end: f64,
}

/// The phases of `torch.optim.lr_scheduler.OneCycleLR` (torch 2.15.0), for
/// the learning rate or for the momentum (its `cycle_momentum`):
///
/// ```text
/// phase i covers (end_{i-1}, end_i] (the first starts at 0, the last takes every later step)
/// pct = (s - end_{i-1}) / (end_i - end_{i-1});  value = anneal(start_i, end_i, pct)
/// ```
/// The two-phase lr goes `max/div -> max -> max/(div*final_div)` with
/// `end_0 = pct_start*T - 1`, `end_1 = T - 1`; three-phase adds a return to
/// `max/div` at `2 pct_start T - 2`. torch raises past step `T`; here steps
/// past `T - 1` keep the final value.
#[derive(Debug, Clone, PartialEq)]
pub struct OneCycle {
    pub phases: Vec<Phase>,
    pub anneal: Anneal,
    pub total_steps: u64,
}

impl OneCycle {
    /// The phases of OneCycleLR with the given start/peak/end values
    /// (lr: `initial, max, min`; momentum: `max, base, max`).
    pub(super) fn build(
        total_steps: u64,
        pct_start: f64,
        three_phase: bool,
        anneal: Anneal,
        [a, b, c]: [f64; 3],
    ) -> Result<Self> {
        let t = total_steps as f64;
        let phase = |end_step, start, end| Phase {
            end_step,
            start,
            end,
        };
        let phases = if three_phase {
            vec![
                phase(pct_start * t - 1.0, a, b),
                phase(2.0 * pct_start * t - 2.0, b, a),
                phase(t - 1.0, a, c),
            ]
        } else {
            vec![phase(pct_start * t - 1.0, a, b), phase(t - 1.0, b, c)]
        };
        let mut prev = 0.0;
        for (i, ph) in phases.iter().enumerate() {
            if ph.end_step.is_nan() || ph.end_step <= prev {
                return Err(Error::hparam(
                    "one_cycle",
                    "pct_start",
                    pct_start,
                    &format!(
                        "phase {} of {total_steps} steps would be empty (ends at step {})",
                        i + 1,
                        ph.end_step
                    ),
                ));
            }
            prev = ph.end_step;
        }
        Ok(OneCycle {
            phases,
            anneal,
            total_steps,
        })
    }
}

impl Schedule for OneCycle {
    fn value(&self, s: u64) -> f64 {
        let s = s.min(self.total_steps.saturating_sub(1)) as f64;
        let mut start_step = 0.0;
        let last = self.phases.len() - 1;
        for (i, ph) in self.phases.iter().enumerate() {
            if s <= ph.end_step || i == last {
                let pct = (s - start_step) / (ph.end_step - start_step);
                return self.anneal.apply(ph.start, ph.end, pct);
            }
            start_step = ph.end_step;
        }
        f64::NAN // unreachable: the last phase always matches
    }
}
