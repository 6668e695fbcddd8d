//! What the wrappers share: the [`Wrapper`] trait, whose blanket
//! [`Optimizer`] implementation forwards every method a wrapper does not
//! change to the wrapped optimizer (written once), and, for wrappers around
//! an inner optimizer given by name (`lookahead`, `cautious`, `magma`,
//! `skipupdate`), the `inner` specification and how it is reconfigured and
//! reported. The inner optimizer is built from its name by
//! [`crate::registry`].
//!
//! ```json
//! {"optimizer": "lookahead", "hparams": {"k": 5, "alpha": 0.5,
//!   "inner": {"optimizer": "adam", "hparams": {"lr": 1e-3}}}}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::optimizer::{Mode, Optimizer, OptimizerSpec};
use crate::rule::{ExecOptions, OptimizerConfig};
use crate::state::StateDict;
use crate::tensor::ParamMut;

/// The optimizer inside a wrapper: a registry name and its hyperparameters,
/// the same form as a top-level optimizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InnerSpec {
    /// Registry name of the inner optimizer.
    pub optimizer: String,
    /// Its hyperparameters (missing keys take defaults).
    #[serde(default)]
    pub hparams: Value,
}

/// The `inner` of wrapper `wrapper`, or an error naming the missing field.
pub fn require_inner<'a>(wrapper: &str, inner: &'a Option<InnerSpec>) -> Result<&'a InnerSpec> {
    inner.as_ref().ok_or_else(|| {
        Error::hparam(
            wrapper,
            "inner",
            "null",
            "is required: {\"optimizer\": NAME, \"hparams\": {...}}",
        )
    })
}

/// Gives `current` the hyperparameters of `inner`, which must name the same
/// optimizer; unchanged on error.
pub fn reconfigure_inner(
    wrapper: &str,
    current: &mut dyn Optimizer,
    inner: &InnerSpec,
) -> Result<()> {
    if inner.optimizer.to_lowercase() != current.name() {
        return Err(Error::config(
            wrapper,
            format!(
                "inner.optimizer cannot change from '{}' to '{}' (build a new optimizer)",
                current.name(),
                inner.optimizer
            ),
        ));
    }
    current
        .set_config(inner.hparams.clone())
        .map_err(|e| Error::config(wrapper, format!("inner: {e}")))
}

/// The registry entry of a wrapper configured by `C`, built by `build`.
pub(crate) fn wrapper_spec<C: OptimizerConfig>(
    build: fn(&Value) -> Result<Box<dyn Optimizer>>,
) -> OptimizerSpec {
    OptimizerSpec::of_config::<C>(build)
}

/// A wrapper around an optimizer that is already built: it implements
/// this trait, and [`Optimizer`] comes from the blanket implementation
/// below, which hands every method the wrapper does not change to
/// [`Wrapper::inner_mut`] (or [`Wrapper::inner`]). A wrapper writes only
/// its configuration and the hooks it changes; the forwarding is written
/// once, here.
///
/// The hooks have the names and signatures of the [`Optimizer`] methods
/// they implement. Call a wrapper through [`Optimizer`]; bring this trait
/// into scope only to reach the wrapped optimizer (`Wrapper::inner(&w)`).
/// Methods outside this list keep the [`Optimizer`] defaults (the state
/// of a wrapper never lives in caller-owned buffers, and its step count is
/// its own).
pub trait Wrapper: Send {
    /// The wrapped optimizer.
    fn inner(&self) -> &dyn Optimizer;

    /// The wrapped optimizer, mutably.
    fn inner_mut(&mut self) -> &mut dyn Optimizer;

    /// [`Optimizer::config`]: the wrapper's own form, with the inner
    /// optimizer's configuration under `inner`.
    fn config(&self) -> Value;

    /// [`Optimizer::set_config`].
    fn set_config(&mut self, config: Value) -> Result<()>;

    /// [`Optimizer::name`]; by default the wrapped optimizer's.
    fn name(&self) -> &str {
        self.inner().name()
    }

    /// [`Optimizer::step`]; by default the wrapped optimizer's step.
    fn step(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        self.inner_mut().step(params)
    }

    /// [`Optimizer::state_dict`]; by default the wrapped optimizer's.
    fn state_dict(&self) -> StateDict {
        self.inner().state_dict()
    }

    /// [`Optimizer::load_state_dict`]; by default the wrapped optimizer's.
    fn load_state_dict(&mut self, dict: &StateDict) -> Result<()> {
        self.inner_mut().load_state_dict(dict)
    }

    /// [`Optimizer::hparam`]; by default the wrapped optimizer's.
    fn hparam(&self, key: &str) -> Option<f64> {
        self.inner().hparam(key)
    }

    /// [`Optimizer::set_hparam`]; by default the wrapped optimizer's.
    fn set_hparam(&mut self, key: &str, value: f64) -> Result<()> {
        self.inner_mut().set_hparam(key, value)
    }

    /// [`Optimizer::set_mode`]; by default the wrapped optimizer switches.
    fn set_mode(&mut self, mode: Mode, params: &mut [ParamMut<'_>]) -> Result<()> {
        self.inner_mut().set_mode(mode, params)
    }

    /// [`Optimizer::set_exec_options`]: execution options (threads, fast or
    /// simple path, state storage) are the wrapped optimizer's.
    fn set_exec_options(&mut self, exec: ExecOptions) -> Result<()> {
        self.inner_mut().set_exec_options(exec)
    }

    /// [`Optimizer::set_cautious`]: cautious masking is the wrapped
    /// optimizer's.
    fn set_cautious(&mut self, on: bool) -> Result<()> {
        self.inner_mut().set_cautious(on)
    }

    /// [`Optimizer::state_buffer`]: the wrapped optimizer's buffers (update
    /// masking reads their moments).
    fn state_buffer(&self, param: &str, buffer: &str) -> Option<&[f32]> {
        self.inner().state_buffer(param, buffer)
    }
}

impl<W: Wrapper> Optimizer for W {
    fn name(&self) -> &str {
        Wrapper::name(self)
    }

    fn config(&self) -> Value {
        Wrapper::config(self)
    }

    fn set_config(&mut self, config: Value) -> Result<()> {
        Wrapper::set_config(self, config)
    }

    fn step(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        Wrapper::step(self, params)
    }

    fn state_dict(&self) -> StateDict {
        Wrapper::state_dict(self)
    }

    fn load_state_dict(&mut self, dict: &StateDict) -> Result<()> {
        Wrapper::load_state_dict(self, dict)
    }

    fn hparam(&self, key: &str) -> Option<f64> {
        Wrapper::hparam(self, key)
    }

    fn set_hparam(&mut self, key: &str, value: f64) -> Result<()> {
        Wrapper::set_hparam(self, key, value)
    }

    fn set_mode(&mut self, mode: Mode, params: &mut [ParamMut<'_>]) -> Result<()> {
        Wrapper::set_mode(self, mode, params)
    }

    fn set_exec_options(&mut self, exec: ExecOptions) -> Result<()> {
        Wrapper::set_exec_options(self, exec)
    }

    fn set_cautious(&mut self, on: bool) -> Result<()> {
        Wrapper::set_cautious(self, on)
    }

    fn state_buffer(&self, param: &str, buffer: &str) -> Option<&[f32]> {
        Wrapper::state_buffer(self, param, buffer)
    }
}

/// The [`Wrapper::inner`] and [`Wrapper::inner_mut`] of a wrapper that
/// keeps its optimizer in a field `inner: Box<dyn Optimizer>`.
macro_rules! inner_field {
    () => {
        fn inner(&self) -> &dyn $crate::optimizer::Optimizer {
            self.inner.as_ref()
        }

        fn inner_mut(&mut self) -> &mut dyn $crate::optimizer::Optimizer {
            self.inner.as_mut()
        }
    };
}
pub(crate) use inner_field;
