//! Stochastic weight averaging: the equal-weight running mean of the
//! parameters after selected steps, as `torch.optim.swa_utils.AveragedModel`
//! (torch 2.15.0, default averaging on the CPU) updated with
//! `update_parameters(model)` after inner step `t` (1-based) when
//! `t > swa_start` and `(t - swa_start) % swa_freq == 0`:
//!
//! ```text
//! first update:  avg <- p
//! later:         avg <- avg + (p - avg) / (n + 1)     (f32, n = updates so far)
//! ```
//!
//! Defaults: swa_start = 0, swa_freq = 1 (every step). Pair it with a
//! constant or cyclic learning rate (torch's `SWALR`) through
//! [`Scheduled`](super::Scheduled). Evaluation works as for
//! [`Ema`](super::Ema): [`Optimizer::set_mode`] swaps the averages in and
//! out; [`Swa::average`] reads them. The copies, the count and the mode are
//! part of the state.
//!
//! Paper: Izmailov, Podoprikhin, Garipov, Vetrov & Wilson, "Averaging
//! Weights Leads to Wider Optima and Better Generalization", UAI 2018
//! (arXiv:1803.05407).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::optimizer::{Mode, Optimizer};
use crate::state::StateDict;
use crate::tensor::ParamMut;
use crate::wrappers::wrap::{inner_field, Wrapper};

use super::averaged::{apply_config, switch_mode, Averages};
use super::{check_params, check_state_keys, count_scalar, inner_spec};

/// When SWA averages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SwaConfig {
    /// Steps before averaging starts (default 0).
    pub swa_start: u64,
    /// Average every this many steps after the start (default 1).
    pub swa_freq: u64,
}

impl Default for SwaConfig {
    fn default() -> Self {
        SwaConfig {
            swa_start: 0,
            swa_freq: 1,
        }
    }
}

impl SwaConfig {
    /// Checks `swa_freq >= 1`.
    pub fn validate(&self) -> Result<()> {
        crate::validate::at_least("swa", "swa_freq", self.swa_freq, 1)
    }

    /// Whether the parameters after inner step `t` (1-based) are averaged.
    pub fn averages_at(&self, t: u64) -> bool {
        t > self.swa_start && (t - self.swa_start).checked_rem(self.swa_freq) == Some(0)
    }
}

/// An optimizer that keeps the SWA mean of the parameters it updates.
pub struct Swa {
    inner: Box<dyn Optimizer>,
    config: SwaConfig,
    steps: u64,
    n_averaged: u64,
    averages: Averages,
}

impl Swa {
    /// Wraps `inner` (configuration validated).
    pub fn new(inner: Box<dyn Optimizer>, config: SwaConfig) -> Result<Self> {
        config.validate()?;
        Ok(Swa {
            inner,
            config,
            steps: 0,
            n_averaged: 0,
            averages: Averages::default(),
        })
    }

    /// The average of `name` (in train mode, after the first average).
    pub fn average(&self, name: &str) -> Option<&[f32]> {
        self.averages.get(name)
    }

    /// Number of parameter sets averaged.
    pub fn n_averaged(&self) -> u64 {
        self.n_averaged
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.averages.mode()
    }
}

impl Wrapper for Swa {
    inner_field!();

    fn config(&self) -> Value {
        json!({
            "wrapper": "swa",
            "swa_start": self.config.swa_start,
            "swa_freq": self.config.swa_freq,
            "inner": inner_spec(self.inner.as_ref()),
        })
    }

    fn set_config(&mut self, config: Value) -> Result<()> {
        apply_config(
            "swa",
            &config,
            &mut self.config,
            self.inner.as_mut(),
            SwaConfig::validate,
        )
    }

    fn step(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        self.averages.require_train("swa")?;
        check_params(params)?;
        self.inner.step(params)?;
        self.steps += 1;
        if self.config.averages_at(self.steps) {
            let div = (self.n_averaged + 1) as f32;
            self.averages.update(params, |a, x| a + (x - a) / div);
            self.n_averaged += 1;
        }
        Ok(())
    }

    fn state_dict(&self) -> StateDict {
        let mut d = StateDict::default();
        d.merge_prefixed("inner/", self.inner.state_dict());
        self.averages.save("swa", &mut d);
        d.scalars.insert("swa/steps".into(), self.steps as f64);
        d.scalars
            .insert("swa/n_averaged".into(), self.n_averaged as f64);
        d
    }

    fn load_state_dict(&mut self, dict: &StateDict) -> Result<()> {
        check_state_keys(dict, "swa")?;
        let steps = count_scalar(dict, "swa/steps")?;
        let n = count_scalar(dict, "swa/n_averaged")?;
        if n > steps {
            return Err(Error::Input(format!(
                "swa state: {n} averages after {steps} steps"
            )));
        }
        let averages = Averages::load("swa", dict)?;
        self.inner.load_state_dict(&dict.strip_prefix("inner/"))?;
        self.steps = steps;
        self.n_averaged = n;
        self.averages = averages;
        Ok(())
    }

    fn set_mode(&mut self, mode: Mode, params: &mut [ParamMut<'_>]) -> Result<()> {
        switch_mode("swa", &mut self.averages, self.inner.as_mut(), mode, params)
    }
}
