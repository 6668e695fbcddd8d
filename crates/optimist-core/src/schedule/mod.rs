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
//!
//! One file per family, every type re-exported here: `constant` (constant,
//! step, piecewise constant), `cosine` (warmup-cosine, cosine decay),
//! `decay` (polynomial and linear, exponential, inverse square root), `wsd`,
//! `one_cycle`, `join`; `spec` holds [`ScheduleSpec`] (parsing, validation,
//! building).

mod constant;
mod cosine;
mod decay;
mod join;
mod one_cycle;
mod spec;
mod wsd;

pub use constant::{Constant, PiecewiseConstant, Step};
pub use cosine::{CosineDecay, WarmupCosine};
pub use decay::{Exponential, InverseSqrt, Polynomial};
pub use join::Join;
pub use one_cycle::{Anneal, OneCycle, Phase};
pub use spec::ScheduleSpec;
pub use wsd::{Cooldown, Wsd};

/// A value that depends on the 0-based step index.
pub trait Schedule: Send + Sync {
    /// The value at step index `s` (0 for the first step).
    fn value(&self, s: u64) -> f64;
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
