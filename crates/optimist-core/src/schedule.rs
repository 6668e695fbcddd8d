//! Learning-rate (and any hyperparameter) schedules.
//!
//! A schedule maps the 0-based step index `s` to a value; the driver sets
//! the hyperparameter before each step (the replay sets `lr`; the
//! [`Scheduled`](crate::wrappers::scheduled::Scheduled) wrapper sets any
//! scalar hyperparameter). Every schedule states the definition it follows
//! (torch `lr_scheduler`, optax, pytorch-optimizer or transformers) and is
//! checked against values generated from that library
//! (`tests/golden/schedules`, made by `tools/gen_schedules.py`). Values are
//! computed in f64; `docs/schedules.md` lists every schedule with its
//! formula.
//!
//! Schedules written as [`ScheduleSpec`] (JSON, e.g. in a replay case) take
//! a *base* value from the hyperparameter they drive: the peak of a warmup,
//! the start of a decay, the multiplier of a torch-style factor schedule.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A value that depends on the 0-based step index.
pub trait Schedule: Send + Sync {
    /// The value at step index `s` (0 for the first step).
    fn value(&self, s: u64) -> f64;
}

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

/// A constant value (`optax.constant_schedule`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Constant(pub f64);

impl Schedule for Constant {
    fn value(&self, _s: u64) -> f64 {
        self.0
    }
}

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
    fn build(
        total_steps: u64,
        pct_start: f64,
        three_phase: bool,
        anneal: Anneal,
        [a, b, c]: [f64; 3],
    ) -> Result<Self> {
        let t = total_steps as f64;
        let phases = if three_phase {
            vec![
                Phase {
                    end_step: pct_start * t - 1.0,
                    start: a,
                    end: b,
                },
                Phase {
                    end_step: 2.0 * pct_start * t - 2.0,
                    start: b,
                    end: a,
                },
                Phase {
                    end_step: t - 1.0,
                    start: a,
                    end: c,
                },
            ]
        } else {
            vec![
                Phase {
                    end_step: pct_start * t - 1.0,
                    start: a,
                    end: b,
                },
                Phase {
                    end_step: t - 1.0,
                    start: b,
                    end: c,
                },
            ]
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

/// `optax.join_schedules(schedules, boundaries)`: schedule `i + 1` takes
/// over at step `boundaries[i]` and sees the step count since that boundary.
pub struct Join {
    pub schedules: Vec<Box<dyn Schedule>>,
    pub boundaries: Vec<u64>,
}

impl Schedule for Join {
    fn value(&self, s: u64) -> f64 {
        let Some(first) = self.schedules.first() else {
            return f64::NAN;
        };
        let mut out = first.value(s);
        for (&b, sched) in self.boundaries.iter().zip(&self.schedules[1..]) {
            if s >= b {
                out = sched.value(s - b);
            }
        }
        out
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

fn default_exponent() -> f64 {
    1.0
}
fn default_cycles() -> f64 {
    0.5
}
fn default_cooldown() -> Cooldown {
    Cooldown::OneMinusSqrt
}
fn default_pct_start() -> f64 {
    0.3
}
fn default_anneal() -> Anneal {
    Anneal::Cos
}
fn default_div() -> f64 {
    25.0
}
fn default_final_div() -> f64 {
    1e4
}
fn default_base_momentum() -> f64 {
    0.85
}
fn default_max_momentum() -> f64 {
    0.95
}
fn default_gamma() -> f64 {
    0.1
}

/// A schedule as written in a replay case or a configuration file; the base
/// value comes from the hyperparameter it drives. Fields marked optional
/// default to the base value (`init_value`, `value`) or to the reference's
/// default. See `docs/schedules.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleSpec {
    /// See [`WarmupCosine`].
    WarmupCosine {
        warmup_steps: u64,
        total_steps: u64,
        #[serde(default)]
        min_lr: f64,
    },
    /// The base value (or `value`) at every step.
    Constant {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
    },
    /// `optax.linear_schedule` from `init_value` (default base) to `end_value`.
    Linear {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        init_value: Option<f64>,
        end_value: f64,
        transition_steps: u64,
        #[serde(default, skip_serializing_if = "is_zero")]
        transition_begin: u64,
    },
    /// `optax.cosine_decay_schedule` from `init_value` (default base).
    Cosine {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        init_value: Option<f64>,
        decay_steps: u64,
        #[serde(default)]
        alpha: f64,
        #[serde(default = "default_exponent")]
        exponent: f64,
    },
    /// `optax.warmup_constant_schedule(init_value, base, warmup_steps)`.
    WarmupConstant {
        #[serde(default)]
        init_value: f64,
        warmup_steps: u64,
    },
    /// `pytorch_optimizer.get_wsd_schedule`, see [`Wsd`].
    Wsd {
        warmup_steps: u64,
        stable_steps: u64,
        decay_steps: u64,
        #[serde(default)]
        min_lr_ratio: f64,
        #[serde(default = "default_cycles")]
        num_cycles: f64,
        #[serde(default = "default_cooldown")]
        cooldown_type: Cooldown,
    },
    /// `torch.optim.lr_scheduler.OneCycleLR`'s learning rate, base = `max_lr`.
    OneCycle {
        total_steps: u64,
        #[serde(default = "default_pct_start")]
        pct_start: f64,
        #[serde(default = "default_anneal")]
        anneal_strategy: Anneal,
        #[serde(default = "default_div")]
        div_factor: f64,
        #[serde(default = "default_final_div")]
        final_div_factor: f64,
        #[serde(default, skip_serializing_if = "is_false")]
        three_phase: bool,
    },
    /// `OneCycleLR`'s momentum (or beta1) cycle; ignores the base value.
    OneCycleMomentum {
        total_steps: u64,
        #[serde(default = "default_pct_start")]
        pct_start: f64,
        #[serde(default = "default_anneal")]
        anneal_strategy: Anneal,
        #[serde(default = "default_base_momentum")]
        base_momentum: f64,
        #[serde(default = "default_max_momentum")]
        max_momentum: f64,
        #[serde(default, skip_serializing_if = "is_false")]
        three_phase: bool,
    },
    /// `transformers.get_inverse_sqrt_schedule`, see [`InverseSqrt`];
    /// `timescale` defaults to `warmup_steps`, or 10000 when that is 0.
    InverseSqrt {
        warmup_steps: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timescale: Option<u64>,
    },
    /// `optax.exponential_decay` from `init_value` (default base).
    Exponential {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        init_value: Option<f64>,
        transition_steps: u64,
        decay_rate: f64,
        #[serde(default, skip_serializing_if = "is_zero")]
        transition_begin: u64,
        #[serde(default, skip_serializing_if = "is_false")]
        staircase: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        end_value: Option<f64>,
    },
    /// `torch.optim.lr_scheduler.StepLR(step_size, gamma)`.
    Step {
        step_size: u64,
        #[serde(default = "default_gamma")]
        gamma: f64,
    },
    /// `optax.polynomial_schedule` from `init_value` (default base).
    Polynomial {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        init_value: Option<f64>,
        end_value: f64,
        power: f64,
        transition_steps: u64,
        #[serde(default, skip_serializing_if = "is_zero")]
        transition_begin: u64,
    },
    /// `optax.piecewise_constant_schedule` from `init_value` (default base),
    /// with `[[boundary, scale], ...]`.
    PiecewiseConstant {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        init_value: Option<f64>,
        boundaries_and_scales: Vec<(u64, f64)>,
    },
    /// `optax.join_schedules`: every part gets the same base.
    Join {
        schedules: Vec<ScheduleSpec>,
        boundaries: Vec<u64>,
    },
}

/// Validation of the one-cycle schedules (`n` names the schedule):
/// `total_steps` and `pct_start`, then the variant's own `values`, then the
/// phase boundaries.
fn validate_one_cycle(
    n: &str,
    total_steps: u64,
    pct_start: f64,
    three_phase: bool,
    anneal: Anneal,
    values: impl FnOnce() -> Result<()>,
) -> Result<()> {
    crate::validate::at_least(n, "total_steps", total_steps, 1)?;
    crate::validate::unit_interval(n, "pct_start", pct_start)?;
    values()?;
    OneCycle::build(total_steps, pct_start, three_phase, anneal, [0.0; 3]).map(|_| ())
}

impl ScheduleSpec {
    /// Reads a schedule from JSON, naming the problem on error.
    pub fn from_json(v: &serde_json::Value) -> Result<Self> {
        let spec: ScheduleSpec = serde_json::from_value(v.clone())
            .map_err(|e| Error::config("lr_schedule", format!("invalid schedule: {e}")))?;
        spec.validate()?;
        Ok(spec)
    }

    /// The schedule as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        // A tree of numbers, strings and arrays always serializes.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The schedule's name as written in JSON.
    pub fn name(&self) -> &'static str {
        match self {
            ScheduleSpec::WarmupCosine { .. } => "warmup_cosine",
            ScheduleSpec::Constant { .. } => "constant",
            ScheduleSpec::Linear { .. } => "linear",
            ScheduleSpec::Cosine { .. } => "cosine",
            ScheduleSpec::WarmupConstant { .. } => "warmup_constant",
            ScheduleSpec::Wsd { .. } => "wsd",
            ScheduleSpec::OneCycle { .. } => "one_cycle",
            ScheduleSpec::OneCycleMomentum { .. } => "one_cycle_momentum",
            ScheduleSpec::InverseSqrt { .. } => "inverse_sqrt",
            ScheduleSpec::Exponential { .. } => "exponential",
            ScheduleSpec::Step { .. } => "step",
            ScheduleSpec::Polynomial { .. } => "polynomial",
            ScheduleSpec::PiecewiseConstant { .. } => "piecewise_constant",
            ScheduleSpec::Join { .. } => "join",
        }
    }

    /// Checks the schedule's own parameters (every float finite, counts and
    /// ranges as the reference requires).
    pub fn validate(&self) -> Result<()> {
        use crate::validate as v;
        let n = self.name();
        let opt = |field: &str, x: Option<f64>| -> Result<()> {
            x.map_or(Ok(()), |x| v::finite(n, field, x))
        };
        match self {
            ScheduleSpec::WarmupCosine { min_lr, .. } => v::finite(n, "min_lr", *min_lr),
            ScheduleSpec::Constant { value } => opt("value", *value),
            ScheduleSpec::Linear {
                init_value,
                end_value,
                ..
            } => {
                opt("init_value", *init_value)?;
                v::finite(n, "end_value", *end_value)
            }
            ScheduleSpec::Cosine {
                init_value,
                decay_steps,
                alpha,
                exponent,
            } => {
                opt("init_value", *init_value)?;
                v::at_least(n, "decay_steps", *decay_steps, 1)?;
                v::finite(n, "alpha", *alpha)?;
                v::finite(n, "exponent", *exponent)
            }
            ScheduleSpec::WarmupConstant {
                init_value,
                warmup_steps,
            } => {
                v::finite(n, "init_value", *init_value)?;
                // optax gives `init_value` forever when warmup_steps is 0.
                v::at_least(n, "warmup_steps", *warmup_steps, 1)
            }
            ScheduleSpec::Wsd {
                min_lr_ratio,
                num_cycles,
                ..
            } => {
                v::finite(n, "min_lr_ratio", *min_lr_ratio)?;
                v::finite(n, "num_cycles", *num_cycles)
            }
            ScheduleSpec::OneCycle {
                total_steps,
                pct_start,
                anneal_strategy,
                div_factor,
                final_div_factor,
                three_phase,
            } => validate_one_cycle(
                n,
                *total_steps,
                *pct_start,
                *three_phase,
                *anneal_strategy,
                || {
                    v::positive(n, "div_factor", *div_factor)?;
                    v::positive(n, "final_div_factor", *final_div_factor)
                },
            ),
            ScheduleSpec::OneCycleMomentum {
                total_steps,
                pct_start,
                anneal_strategy,
                base_momentum,
                max_momentum,
                three_phase,
            } => validate_one_cycle(
                n,
                *total_steps,
                *pct_start,
                *three_phase,
                *anneal_strategy,
                || {
                    v::finite(n, "base_momentum", *base_momentum)?;
                    v::finite(n, "max_momentum", *max_momentum)
                },
            ),
            ScheduleSpec::InverseSqrt { timescale, .. } => match timescale {
                Some(t) => v::at_least(n, "timescale", *t, 1),
                None => Ok(()),
            },
            ScheduleSpec::Exponential {
                init_value,
                decay_rate,
                end_value,
                ..
            } => {
                opt("init_value", *init_value)?;
                v::non_negative(n, "decay_rate", *decay_rate)?;
                opt("end_value", *end_value)
            }
            ScheduleSpec::Step { step_size, gamma } => {
                v::at_least(n, "step_size", *step_size, 1)?;
                v::finite(n, "gamma", *gamma)
            }
            ScheduleSpec::Polynomial {
                init_value,
                end_value,
                power,
                ..
            } => {
                opt("init_value", *init_value)?;
                v::finite(n, "end_value", *end_value)?;
                v::finite(n, "power", *power)
            }
            ScheduleSpec::PiecewiseConstant {
                init_value,
                boundaries_and_scales,
            } => {
                opt("init_value", *init_value)?;
                let mut seen = std::collections::BTreeSet::new();
                for &(b, s) in boundaries_and_scales {
                    v::non_negative(n, "boundaries_and_scales[].scale", s)?;
                    if !seen.insert(b) {
                        return Err(Error::hparam(
                            n,
                            "boundaries_and_scales",
                            b,
                            "boundary given twice",
                        ));
                    }
                }
                Ok(())
            }
            ScheduleSpec::Join {
                schedules,
                boundaries,
            } => {
                if schedules.is_empty() || boundaries.len() + 1 != schedules.len() {
                    return Err(Error::hparam(
                        n,
                        "boundaries",
                        format!("{} boundaries", boundaries.len()),
                        &format!(
                            "needs one schedule or more and one boundary fewer than schedules ({})",
                            schedules.len()
                        ),
                    ));
                }
                schedules.iter().try_for_each(ScheduleSpec::validate)
            }
        }
    }

    /// The schedule with `base` as its base value. Call
    /// [`ScheduleSpec::validate`] first (as [`ScheduleSpec::from_json`] does);
    /// [`ScheduleSpec::try_build`] does both.
    pub fn build(&self, base: f64) -> Box<dyn Schedule> {
        self.try_build(base)
            .unwrap_or_else(|_| Box::new(Constant(f64::NAN)))
    }

    /// Validates and builds the schedule with `base` as its base value.
    pub fn try_build(&self, base: f64) -> Result<Box<dyn Schedule>> {
        self.validate()?;
        Ok(match self {
            ScheduleSpec::WarmupCosine {
                warmup_steps,
                total_steps,
                min_lr,
            } => Box::new(WarmupCosine {
                base,
                warmup_steps: *warmup_steps,
                total_steps: *total_steps,
                min_lr: *min_lr,
            }),
            ScheduleSpec::Constant { value } => Box::new(Constant(value.unwrap_or(base))),
            ScheduleSpec::Linear {
                init_value,
                end_value,
                transition_steps,
                transition_begin,
            } => Box::new(Polynomial {
                init_value: init_value.unwrap_or(base),
                end_value: *end_value,
                power: 1.0,
                transition_steps: *transition_steps,
                transition_begin: *transition_begin,
            }),
            ScheduleSpec::Cosine {
                init_value,
                decay_steps,
                alpha,
                exponent,
            } => Box::new(CosineDecay {
                init_value: init_value.unwrap_or(base),
                decay_steps: *decay_steps,
                alpha: *alpha,
                exponent: *exponent,
            }),
            ScheduleSpec::WarmupConstant {
                init_value,
                warmup_steps,
            } => Box::new(Polynomial {
                init_value: *init_value,
                end_value: base,
                power: 1.0,
                transition_steps: *warmup_steps,
                transition_begin: 0,
            }),
            ScheduleSpec::Wsd {
                warmup_steps,
                stable_steps,
                decay_steps,
                min_lr_ratio,
                num_cycles,
                cooldown_type,
            } => Box::new(Wsd {
                base,
                warmup_steps: *warmup_steps,
                stable_steps: *stable_steps,
                decay_steps: *decay_steps,
                min_lr_ratio: *min_lr_ratio,
                num_cycles: *num_cycles,
                cooldown: *cooldown_type,
            }),
            ScheduleSpec::OneCycle {
                total_steps,
                pct_start,
                anneal_strategy,
                div_factor,
                final_div_factor,
                three_phase,
            } => {
                let initial = base / div_factor;
                let min = initial / final_div_factor;
                Box::new(OneCycle::build(
                    *total_steps,
                    *pct_start,
                    *three_phase,
                    *anneal_strategy,
                    [initial, base, min],
                )?)
            }
            ScheduleSpec::OneCycleMomentum {
                total_steps,
                pct_start,
                anneal_strategy,
                base_momentum,
                max_momentum,
                three_phase,
            } => Box::new(OneCycle::build(
                *total_steps,
                *pct_start,
                *three_phase,
                *anneal_strategy,
                [*max_momentum, *base_momentum, *max_momentum],
            )?),
            ScheduleSpec::InverseSqrt {
                warmup_steps,
                timescale,
            } => {
                let timescale = timescale.unwrap_or(if *warmup_steps == 0 {
                    10_000
                } else {
                    *warmup_steps
                });
                Box::new(InverseSqrt {
                    base,
                    warmup_steps: *warmup_steps,
                    timescale,
                })
            }
            ScheduleSpec::Exponential {
                init_value,
                transition_steps,
                decay_rate,
                transition_begin,
                staircase,
                end_value,
            } => Box::new(Exponential {
                init_value: init_value.unwrap_or(base),
                transition_steps: *transition_steps,
                decay_rate: *decay_rate,
                transition_begin: *transition_begin,
                staircase: *staircase,
                end_value: *end_value,
            }),
            ScheduleSpec::Step { step_size, gamma } => Box::new(Step {
                base,
                step_size: *step_size,
                gamma: *gamma,
            }),
            ScheduleSpec::Polynomial {
                init_value,
                end_value,
                power,
                transition_steps,
                transition_begin,
            } => Box::new(Polynomial {
                init_value: init_value.unwrap_or(base),
                end_value: *end_value,
                power: *power,
                transition_steps: *transition_steps,
                transition_begin: *transition_begin,
            }),
            ScheduleSpec::PiecewiseConstant {
                init_value,
                boundaries_and_scales,
            } => {
                let mut bs = boundaries_and_scales.clone();
                bs.sort_by_key(|&(b, _)| b);
                Box::new(PiecewiseConstant {
                    init_value: init_value.unwrap_or(base),
                    boundaries_and_scales: bs,
                })
            }
            ScheduleSpec::Join {
                schedules,
                boundaries,
            } => Box::new(Join {
                schedules: schedules
                    .iter()
                    .map(|s| s.try_build(base))
                    .collect::<Result<_>>()?,
                boundaries: boundaries.clone(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn v1_specs_read_as_before() {
        let s = ScheduleSpec::from_json(
            &json!({"name": "warmup_cosine", "warmup_steps": 2, "total_steps": 10}),
        )
        .unwrap();
        let b = s.build(1.0);
        assert_eq!(b.value(0), 0.0);
        assert_eq!(b.value(1), 0.5);
        assert_eq!(b.value(2), 1.0);
        assert_eq!(b.value(100), 0.0);
        let c = ScheduleSpec::from_json(&json!({"name": "constant"})).unwrap();
        assert_eq!(c.build(0.3).value(7), 0.3);
        assert_eq!(c.to_json(), json!({"name": "constant"}));
    }

    #[test]
    fn bad_specs_are_errors_naming_the_field() {
        for (v, field) in [
            (json!({"name": "cosine", "decay_steps": 0}), "decay_steps"),
            (json!({"name": "step", "step_size": 0}), "step_size"),
            (
                json!({"name": "one_cycle", "total_steps": 10, "pct_start": 0.1}),
                "pct_start",
            ),
            (
                json!({"name": "one_cycle", "total_steps": 10, "pct_start": 1.5}),
                "pct_start",
            ),
            (
                json!({"name": "join", "schedules": [{"name": "constant"}], "boundaries": [3]}),
                "boundaries",
            ),
            (
                json!({"name": "piecewise_constant", "boundaries_and_scales": [[3, -1.0]]}),
                "scale",
            ),
            (
                json!({"name": "warmup_constant", "warmup_steps": 0}),
                "warmup_steps",
            ),
            (
                json!({"name": "exponential", "transition_steps": 3, "decay_rate": -0.5}),
                "decay_rate",
            ),
            (json!({"name": "wsd", "warmup_steps": 1}), "stable_steps"),
            (
                json!({"name": "wsd", "warmup_steps": 1, "stable_steps": 1, "decay_steps": 1, "cooldown_type": "2-sqrt"}),
                "2-sqrt",
            ),
            (json!({"name": "nope"}), "nope"),
            (json!({"name": "constant", "extra": 1}), "extra"),
        ] {
            let e = ScheduleSpec::from_json(&v).expect_err(&v.to_string());
            assert!(e.to_string().contains(field), "{v}: {e}");
        }
    }

    #[test]
    fn join_shifts_the_step() {
        let s = ScheduleSpec::from_json(&json!({"name": "join", "boundaries": [3],
            "schedules": [{"name": "constant", "value": 1.0},
                          {"name": "linear", "init_value": 10.0, "end_value": 0.0, "transition_steps": 10}]}))
        .unwrap()
        .build(0.0);
        assert_eq!(s.value(2), 1.0);
        assert_eq!(s.value(3), 10.0);
        assert_eq!(s.value(4), 9.0);
    }
}
