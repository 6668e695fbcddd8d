//! Exponential moving average of the parameters, with the decay warmup of
//! `timm.utils.ModelEmaV3` (timm 1.0.31; the warmup is @crowsonkb's):
//! after inner step `t` (1-based, as timm's training script passes
//! `step=num_updates`),
//!
//! ```text
//! s = max(0, t - update_after_step - 1)
//! decay_t = 0                                        if s == 0
//!         = clamp(1 - (1 + s / warmup_gamma)^-warmup_power, min_decay, decay)   if use_warmup
//!         = decay                                    otherwise
//! ema <- lerp(ema, p, 1 - decay_t)                   (torch.lerp, weight rounded to f32)
//! ```
//!
//! So the first update copies the parameters (`decay_t = 0`). The copy is
//! allocated at a parameter's first update (timm copies the model at
//! construction; the two agree whenever the first update has `decay_t = 0`,
//! i.e. always unless a parameter first appears after `update_after_step`).
//! Defaults as timm: decay = 0.9999, min_decay = 0, update_after_step = 0,
//! use_warmup = false, warmup_gamma = 1, warmup_power = 2/3.
//!
//! Evaluation: [`Optimizer::set_mode`] with [`Mode::Eval`] swaps the
//! averages into the parameters (the training values go into the wrapper's
//! buffers), [`Mode::Train`] swaps back, bit for bit; [`Ema::average`]
//! reads an average without touching the parameters. Steps in eval mode
//! are errors. The copies, the update count and the mode are part of the
//! state.
//!
//! Paper: Polyak & Juditsky, "Acceleration of stochastic approximation by
//! averaging", SIAM J. Control Optim. 1992 (EMA variant as in
//! TensorFlow's `ExponentialMovingAverage`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::Result;
use crate::math::lerp;
use crate::optimizer::{Mode, Optimizer};
use crate::state::StateDict;
use crate::tensor::ParamMut;
use crate::validate as v;
use crate::wrappers::wrap::{inner_field, Wrapper};

use super::averaged::{apply_config, switch_mode, Averages};
use super::{check_params, check_state_keys, count_scalar, inner_spec};

/// Hyperparameters of the EMA (names and defaults of timm's `ModelEmaV3`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmaConfig {
    /// Decay after warmup (default 0.9999).
    pub decay: f64,
    /// Lower bound of the warmed-up decay (default 0).
    pub min_decay: f64,
    /// Updates before this step copy the parameters (default 0).
    pub update_after_step: u64,
    /// Warm the decay up (default false).
    pub use_warmup: bool,
    /// Warmup time scale (default 1).
    pub warmup_gamma: f64,
    /// Warmup power (default 2/3).
    pub warmup_power: f64,
}

impl Default for EmaConfig {
    fn default() -> Self {
        EmaConfig {
            decay: 0.9999,
            min_decay: 0.0,
            update_after_step: 0,
            use_warmup: false,
            warmup_gamma: 1.0,
            warmup_power: 2.0 / 3.0,
        }
    }
}

impl EmaConfig {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        v::unit_interval("ema", "decay", self.decay)?;
        v::unit_interval("ema", "min_decay", self.min_decay)?;
        v::positive("ema", "warmup_gamma", self.warmup_gamma)?;
        v::positive("ema", "warmup_power", self.warmup_power)
    }

    /// The decay of the update after inner step `t` (1-based).
    pub fn decay_at(&self, t: u64) -> f64 {
        let s = t.saturating_sub(self.update_after_step).saturating_sub(1);
        if s == 0 {
            return 0.0;
        }
        if self.use_warmup {
            let d = 1.0 - (1.0 + s as f64 / self.warmup_gamma).powf(-self.warmup_power);
            d.min(self.decay).max(self.min_decay)
        } else {
            self.decay
        }
    }
}

/// An optimizer that keeps an EMA of the parameters it updates.
pub struct Ema {
    inner: Box<dyn Optimizer>,
    config: EmaConfig,
    updates: u64,
    averages: Averages,
}

impl Ema {
    /// Wraps `inner` (configuration validated).
    pub fn new(inner: Box<dyn Optimizer>, config: EmaConfig) -> Result<Self> {
        config.validate()?;
        Ok(Ema {
            inner,
            config,
            updates: 0,
            averages: Averages::default(),
        })
    }

    /// The EMA of `name` (in train mode, after its first update).
    pub fn average(&self, name: &str) -> Option<&[f32]> {
        self.averages.get(name)
    }

    /// Updates made (inner steps).
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.averages.mode()
    }

    /// The EMA configuration.
    pub fn ema_config(&self) -> &EmaConfig {
        &self.config
    }
}

impl Wrapper for Ema {
    inner_field!();

    fn config(&self) -> Value {
        let mut c = serde_json::to_value(&self.config).unwrap_or(Value::Null);
        c["wrapper"] = json!("ema");
        c["inner"] = inner_spec(self.inner.as_ref());
        c
    }

    fn set_config(&mut self, config: Value) -> Result<()> {
        apply_config(
            "ema",
            &config,
            &mut self.config,
            self.inner.as_mut(),
            EmaConfig::validate,
        )
    }

    fn step(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        self.averages.require_train("ema")?;
        check_params(params)?;
        self.inner.step(params)?;
        self.updates += 1;
        let w = (1.0 - self.config.decay_at(self.updates)) as f32;
        self.averages.update(params, |a, x| lerp(a, x, w));
        Ok(())
    }

    fn state_dict(&self) -> StateDict {
        let mut d = StateDict::default();
        d.merge_prefixed("inner/", self.inner.state_dict());
        self.averages.save("ema", &mut d);
        d.scalars.insert("ema/updates".into(), self.updates as f64);
        d
    }

    fn load_state_dict(&mut self, dict: &StateDict) -> Result<()> {
        check_state_keys(dict, "ema")?;
        let updates = count_scalar(dict, "ema/updates")?;
        let averages = Averages::load("ema", dict)?;
        self.inner.load_state_dict(&dict.strip_prefix("inner/"))?;
        self.updates = updates;
        self.averages = averages;
        Ok(())
    }

    /// Eval: the inner optimizer switches first, then the averages are
    /// swapped in; train: swapped out, then the inner optimizer switches.
    fn set_mode(&mut self, mode: Mode, params: &mut [ParamMut<'_>]) -> Result<()> {
        switch_mode("ema", &mut self.averages, self.inner.as_mut(), mode, params)
    }
}
