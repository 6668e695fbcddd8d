//! [`ScheduleSpec`]: a schedule as written in JSON, its validation and the
//! schedule it builds.

use serde::{Deserialize, Serialize};

use super::{
    Anneal, Constant, Cooldown, CosineDecay, Exponential, InverseSqrt, Join, OneCycle,
    PiecewiseConstant, Polynomial, Schedule, Step, WarmupCosine, Wsd,
};
use crate::error::{Error, Result};

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

impl ScheduleSpec {
    /// The one-cycle schedule (`one_cycle`, `one_cycle_momentum`) of this
    /// specification through the start, peak and end `values` of its phases.
    fn one_cycle(&self, values: [f64; 3]) -> Result<OneCycle> {
        match *self {
            ScheduleSpec::OneCycle {
                total_steps,
                pct_start,
                anneal_strategy,
                three_phase,
                ..
            }
            | ScheduleSpec::OneCycleMomentum {
                total_steps,
                pct_start,
                anneal_strategy,
                three_phase,
                ..
            } => OneCycle::build(total_steps, pct_start, three_phase, anneal_strategy, values),
            _ => Err(Error::config(self.name(), "not a one-cycle schedule")),
        }
    }

    /// Validation of the one-cycle schedules: `total_steps` and
    /// `pct_start`, then the variant's own `values`, then the phase
    /// boundaries.
    fn validate_one_cycle(
        &self,
        total_steps: u64,
        pct_start: f64,
        values: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let n = self.name();
        crate::validate::at_least(n, "total_steps", total_steps, 1)?;
        crate::validate::unit_interval(n, "pct_start", pct_start)?;
        values()?;
        self.one_cycle([0.0; 3]).map(|_| ())
    }

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
                div_factor,
                final_div_factor,
                ..
            } => self.validate_one_cycle(*total_steps, *pct_start, || {
                v::positive(n, "div_factor", *div_factor)?;
                v::positive(n, "final_div_factor", *final_div_factor)
            }),
            ScheduleSpec::OneCycleMomentum {
                total_steps,
                pct_start,
                base_momentum,
                max_momentum,
                ..
            } => self.validate_one_cycle(*total_steps, *pct_start, || {
                v::finite(n, "base_momentum", *base_momentum)?;
                v::finite(n, "max_momentum", *max_momentum)
            }),
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
                div_factor,
                final_div_factor,
                ..
            } => {
                let initial = base / div_factor;
                let min = initial / final_div_factor;
                Box::new(self.one_cycle([initial, base, min])?)
            }
            ScheduleSpec::OneCycleMomentum {
                base_momentum,
                max_momentum,
                ..
            } => Box::new(self.one_cycle([*max_momentum, *base_momentum, *max_momentum])?),
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
