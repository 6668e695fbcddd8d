//! Any scalar hyperparameter on a schedule, in the spirit of optax's
//! `inject_hyperparams`: before step `s` (0-based), every scheduled key is
//! set to its schedule's value at `s` through [`Optimizer::set_hparam`]
//! (validated like the configuration), then the inner optimizer steps.
//!
//! ```
//! use optimist_core::{registry, schedule::ScheduleSpec, wrappers::Scheduled, Optimizer, Param};
//! use serde_json::json;
//!
//! let sgd = registry::build("sgd", &json!({"lr": 0.1, "momentum": 0.9})).unwrap();
//! let mut opt = Scheduled::new(sgd)
//!     .with("lr", ScheduleSpec::from_json(&json!({"name": "wsd", "warmup_steps": 2,
//!         "stable_steps": 5, "decay_steps": 5})).unwrap()).unwrap()
//!     .with("momentum", ScheduleSpec::from_json(&json!({"name": "one_cycle_momentum",
//!         "total_steps": 12})).unwrap()).unwrap();
//! let mut w = Param::new("w", vec![2], vec![1.0, -1.0]).unwrap();
//! w.grad = vec![0.5, 0.5];
//! opt.step(&mut [w.view()]).unwrap();           // lr 0 at s = 0 (warmup)
//! assert_eq!(w.data, vec![1.0, -1.0]);
//! opt.step(&mut [w.view()]).unwrap();           // lr 0.05 at s = 1
//! assert_eq!(opt.hparam("lr"), Some(0.05));
//! ```
//!
//! The schedule's base value is the hyperparameter's value when the
//! schedule is attached (or when [`Optimizer::set_hparam`] /
//! [`Optimizer::set_config`] later changes it), and
//! [`Optimizer::config`] reports the base values, so that a configuration
//! (and a checkpoint's configuration check) does not change from step to
//! step. [`Optimizer::hparam`] reports the value the last step used. The
//! schedule position (the number of steps taken) is part of the state.
//!
//! Place it inside [`GradAccumulation`](super::GradAccumulation) (so that
//! the schedule advances once per optimizer step, not per micro-batch).

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::optimizer::{get_hparam, set_hparam_in, Optimizer};
use crate::schedule::{Schedule, ScheduleSpec};
use crate::state::StateDict;
use crate::tensor::ParamMut;

use super::wrap::{inner_field, Wrapper};
use super::{check_state_keys, count_scalar, inner_spec, split_config, unknown_key};

struct Entry {
    key: String,
    spec: ScheduleSpec,
    base: f64,
    schedule: Box<dyn Schedule>,
}

/// An optimizer whose hyperparameters follow schedules.
pub struct Scheduled {
    inner: Box<dyn Optimizer>,
    entries: Vec<Entry>,
    step: u64,
}

impl Scheduled {
    /// `inner` with no schedule yet.
    pub fn new(inner: Box<dyn Optimizer>) -> Self {
        Scheduled {
            inner,
            entries: Vec::new(),
            step: 0,
        }
    }

    /// Puts hyperparameter `key` on `spec` (builder style); its current
    /// value is the schedule's base. An error if the optimizer has no such
    /// scalar or the key is already scheduled.
    pub fn with(mut self, key: &str, spec: ScheduleSpec) -> Result<Self> {
        self.add(key, spec)?;
        Ok(self)
    }

    /// Puts hyperparameter `key` on `spec`.
    pub fn add(&mut self, key: &str, spec: ScheduleSpec) -> Result<()> {
        if self.entries.iter().any(|e| e.key == key) {
            return Err(Error::config(
                "scheduled",
                format!("hyperparameter '{key}' already has a schedule"),
            ));
        }
        let base = self.base_value(key)?;
        let schedule = spec.try_build(base)?;
        self.entries.push(Entry {
            key: key.to_string(),
            spec,
            base,
            schedule,
        });
        Ok(())
    }

    fn base_value(&self, key: &str) -> Result<f64> {
        self.inner.hparam(key).ok_or_else(|| {
            Error::config(
                self.inner.name(),
                format!("has no scalar hyperparameter '{key}' to schedule"),
            )
        })
    }

    /// Steps taken (the schedules' position).
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The value `key` will take at the next step, if it is scheduled.
    pub fn next_value(&self, key: &str) -> Option<f64> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.schedule.value(self.step))
    }

    /// The inner configuration with the scheduled keys at their base values.
    fn base_config(&self) -> Value {
        let mut cfg = self.inner.config();
        for e in &self.entries {
            // The key existed when the schedule was attached.
            let _ = set_hparam_in(&mut cfg, self.inner.name(), &e.key, e.base);
        }
        cfg
    }
}

impl Wrapper for Scheduled {
    inner_field!();

    fn config(&self) -> Value {
        let mut inner = inner_spec(self.inner.as_ref());
        inner["hparams"] = self.base_config();
        json!({
            "wrapper": "scheduled",
            "schedules": self.entries.iter()
                .map(|e| json!({"hparam": e.key, "schedule": e.spec.to_json()}))
                .collect::<Vec<_>>(),
            "inner": inner,
        })
    }

    /// Accepts the form [`Optimizer::config`] reports; `schedules`, when
    /// present, replaces the schedules; `inner.hparams`, when present, the
    /// inner configuration (with base values).
    fn set_config(&mut self, config: Value) -> Result<()> {
        let (own, inner_hp) = split_config("scheduled", &config)?;
        let mut specs = Vec::new();
        for (k, v) in own.as_object().into_iter().flatten() {
            if k != "schedules" {
                return Err(unknown_key("scheduled", k));
            }
            let Some(items) = v.as_array() else {
                return Err(Error::config("scheduled", "'schedules' must be an array"));
            };
            for it in items {
                let key = it
                    .get("hparam")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::config("scheduled", "schedule entry has no 'hparam'"))?;
                let spec = ScheduleSpec::from_json(it.get("schedule").unwrap_or(&Value::Null))?;
                specs.push((key.to_string(), spec));
            }
        }
        let replace_specs = own.get("schedules").is_some();
        let old_inner = self.inner.config();
        if let Some(hp) = inner_hp {
            self.inner.set_config(hp)?;
        } else {
            self.inner.set_config(self.base_config())?;
        }
        let specs = if replace_specs {
            specs
        } else {
            self.entries
                .iter()
                .map(|e| (e.key.clone(), e.spec.clone()))
                .collect()
        };
        let mut entries = Vec::new();
        for (key, spec) in specs {
            let built = (|| {
                if entries.iter().any(|e: &Entry| e.key == key) {
                    return Err(Error::config(
                        "scheduled",
                        format!("hyperparameter '{key}' scheduled twice"),
                    ));
                }
                let base = self.base_value(&key)?;
                Ok(Entry {
                    schedule: spec.try_build(base)?,
                    key,
                    spec,
                    base,
                })
            })();
            match built {
                Ok(e) => entries.push(e),
                Err(e) => {
                    let _ = self.inner.set_config(old_inner);
                    return Err(e);
                }
            }
        }
        self.entries = entries;
        Ok(())
    }

    fn step(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        for e in &self.entries {
            let v = e.schedule.value(self.step);
            self.inner.set_hparam(&e.key, v).map_err(|err| {
                Error::config(
                    "scheduled",
                    format!(
                        "schedule '{}' of '{}' gives {v} at step index {}: {err}",
                        e.spec.name(),
                        e.key,
                        self.step
                    ),
                )
            })?;
        }
        self.inner.step(params)?;
        self.step += 1;
        Ok(())
    }

    fn state_dict(&self) -> StateDict {
        let mut d = StateDict::default();
        d.merge_prefixed("inner/", self.inner.state_dict());
        d.scalars.insert("scheduled/step".into(), self.step as f64);
        d
    }

    fn load_state_dict(&mut self, dict: &StateDict) -> Result<()> {
        check_state_keys(dict, "scheduled")?;
        let step = count_scalar(dict, "scheduled/step")?;
        if let Some(k) = dict
            .scalars
            .keys()
            .find(|k| k.starts_with("scheduled/") && *k != "scheduled/step")
        {
            return Err(Error::Input(format!("unknown state scalar '{k}'")));
        }
        self.inner.load_state_dict(&dict.strip_prefix("inner/"))?;
        self.step = step;
        Ok(())
    }

    /// For a scheduled key, sets the schedule's base value (validated on the
    /// inner optimizer); otherwise sets the inner hyperparameter.
    fn set_hparam(&mut self, key: &str, value: f64) -> Result<()> {
        let Some(i) = self.entries.iter().position(|e| e.key == key) else {
            return self.inner.set_hparam(key, value);
        };
        let mut cfg = self.base_config();
        set_hparam_in(&mut cfg, self.inner.name(), key, value)?;
        let schedule = self.entries[i].spec.try_build(value)?;
        let old = self.inner.config();
        self.inner.set_config(cfg)?;
        // After a step, the inner optimizer keeps the values of the last step
        // until the next one.
        if self.step > 0 {
            for e in &self.entries {
                if let Some(cur) = get_hparam(&old, &e.key) {
                    let _ = self.inner.set_hparam(&e.key, cur);
                }
            }
        }
        self.entries[i].base = value;
        self.entries[i].schedule = schedule;
        Ok(())
    }
}
