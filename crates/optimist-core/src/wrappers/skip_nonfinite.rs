//! Skips steps whose gradients hold NaN or infinity, with the semantics of
//! `optax.apply_if_finite(inner, max_consecutive_errors)` (optax 0.2.8):
//!
//! - a step whose gradients are all finite runs the inner optimizer and
//!   resets the consecutive count;
//! - a step with any non-finite gradient value leaves the parameters and the
//!   inner state untouched (optax returns zero updates and the old inner
//!   state), and increments `notfinite_count` (consecutive) and
//!   `total_notfinite`; `last_finite` tells whether the last step ran.
//!
//! **Difference from optax:** once `notfinite_count` exceeds
//! `max_consecutive_errors`, optax applies the non-finite update (spoiling
//! the parameters); here the step returns [`Error::NonFinite`] naming the
//! parameter and the counts, and still leaves the parameters untouched.
//! The counters are part of the state (checkpoints) and readable with
//! [`SkipNonFinite::notfinite_count`], [`SkipNonFinite::total_notfinite`]
//! and [`SkipNonFinite::last_finite`].

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::optimizer::Optimizer;
use crate::state::StateDict;
use crate::tensor::ParamMut;

use super::wrap::{inner_field, Wrapper};
use super::{check_params, check_state_keys, count_scalar, inner_spec, split_config, unknown_key};

/// An optimizer that skips steps with non-finite gradients.
pub struct SkipNonFinite {
    inner: Box<dyn Optimizer>,
    max_consecutive_errors: u64,
    notfinite_count: u64,
    total_notfinite: u64,
    last_finite: bool,
}

impl SkipNonFinite {
    /// Wraps `inner`; more than `max_consecutive_errors` non-finite steps in
    /// a row make the step an error.
    pub fn new(inner: Box<dyn Optimizer>, max_consecutive_errors: u64) -> Self {
        SkipNonFinite {
            inner,
            max_consecutive_errors,
            notfinite_count: 0,
            total_notfinite: 0,
            last_finite: true,
        }
    }

    /// Non-finite steps in a row, up to the last step.
    pub fn notfinite_count(&self) -> u64 {
        self.notfinite_count
    }

    /// Non-finite steps in total.
    pub fn total_notfinite(&self) -> u64 {
        self.total_notfinite
    }

    /// Whether the last step had finite gradients (true before any step).
    pub fn last_finite(&self) -> bool {
        self.last_finite
    }
}

impl Wrapper for SkipNonFinite {
    inner_field!();

    fn config(&self) -> Value {
        json!({
            "wrapper": "skip_nonfinite",
            "max_consecutive_errors": self.max_consecutive_errors,
            "inner": inner_spec(self.inner.as_ref()),
        })
    }

    fn set_config(&mut self, config: Value) -> Result<()> {
        let (own, inner_hp) = split_config("skip_nonfinite", &config)?;
        let mut max = self.max_consecutive_errors;
        for (k, v) in own.as_object().into_iter().flatten() {
            match (k.as_str(), v.as_u64()) {
                ("max_consecutive_errors", Some(n)) => max = n,
                ("max_consecutive_errors", None) => {
                    return Err(Error::hparam(
                        "skip_nonfinite",
                        "max_consecutive_errors",
                        v,
                        "must be an integer >= 0",
                    ))
                }
                _ => return Err(unknown_key("skip_nonfinite", k)),
            }
        }
        if let Some(hp) = inner_hp {
            self.inner.set_config(hp)?;
        }
        self.max_consecutive_errors = max;
        Ok(())
    }

    fn step(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        check_params(params)?;
        let bad = params.iter().find_map(|p| {
            p.grad
                .iter()
                .position(|g| !g.is_finite())
                .map(|j| (p.name, j, p.grad[j]))
        });
        let Some((name, j, g)) = bad else {
            self.inner.step(params)?;
            self.notfinite_count = 0;
            self.last_finite = true;
            return Ok(());
        };
        self.notfinite_count += 1;
        self.total_notfinite += 1;
        self.last_finite = false;
        if self.notfinite_count > self.max_consecutive_errors {
            return Err(Error::NonFinite(format!(
                "gradient of '{name}'[{j}] is {g}: {} non-finite steps in a row \
                 (max_consecutive_errors = {}, {} in total); parameters left unchanged",
                self.notfinite_count, self.max_consecutive_errors, self.total_notfinite
            )));
        }
        Ok(())
    }

    fn state_dict(&self) -> StateDict {
        let mut d = StateDict::default();
        d.merge_prefixed("inner/", self.inner.state_dict());
        let s = &mut d.scalars;
        s.insert(
            "skip_nonfinite/notfinite_count".into(),
            self.notfinite_count as f64,
        );
        s.insert(
            "skip_nonfinite/total_notfinite".into(),
            self.total_notfinite as f64,
        );
        s.insert(
            "skip_nonfinite/last_finite".into(),
            self.last_finite as u8 as f64,
        );
        d
    }

    fn load_state_dict(&mut self, dict: &StateDict) -> Result<()> {
        check_state_keys(dict, "skip_nonfinite")?;
        let count = count_scalar(dict, "skip_nonfinite/notfinite_count")?;
        let total = count_scalar(dict, "skip_nonfinite/total_notfinite")?;
        let last = count_scalar(dict, "skip_nonfinite/last_finite")?;
        if last > 1 || count > total {
            return Err(Error::Input(format!(
                "skip_nonfinite state: inconsistent counters (notfinite_count {count}, \
                 total_notfinite {total}, last_finite {last})"
            )));
        }
        if let Some(e) = dict.tensors.iter().find(|e| !e.param.starts_with("inner/")) {
            return Err(Error::Input(format!(
                "skip_nonfinite state has no buffers, got '{}/{}'",
                e.param, e.name
            )));
        }
        self.inner.load_state_dict(&dict.strip_prefix("inner/"))?;
        self.notfinite_count = count;
        self.total_notfinite = total;
        self.last_finite = last == 1;
        Ok(())
    }
}
