//! Wrappers around an inner optimizer given by name (`lookahead`,
//! `cautious`): the `inner` specification, how it is reconfigured and
//! reported, and the forwarding of [`Optimizer`] methods, written once.
//! The inner optimizer is built from its name by [`crate::registry`].
//!
//! ```json
//! {"optimizer": "lookahead", "hparams": {"k": 5, "alpha": 0.5,
//!   "inner": {"optimizer": "adam", "hparams": {"lr": 1e-3}}}}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::optimizer::Optimizer;
use crate::rule::OptimizerConfig;
use crate::optimizer::OptimizerSpec;

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

/// `{"optimizer": name, "hparams": config}` of a wrapper's inner optimizer.
pub(crate) fn inner_json(inner: &dyn Optimizer) -> Value {
    json!({"optimizer": inner.name(), "hparams": inner.config()})
}

/// The registry entry of a wrapper configured by `C`, built by `build`.
pub(crate) fn wrapper_spec<C: OptimizerConfig>(
    build: fn(&Value) -> Result<Box<dyn Optimizer>>,
) -> OptimizerSpec {
    OptimizerSpec::of_config::<C>(build)
}

/// [`Optimizer`] methods that a wrapper hands unchanged to its `inner`
/// field (a `Box<dyn Optimizer>`), by method name.
macro_rules! forward_to_inner {
    ($($method:ident),+ $(,)?) => {
        $($crate::wrappers::wrap::forward_to_inner!(@ $method);)+
    };
    (@ name) => {
        fn name(&self) -> &str {
            self.inner.name()
        }
    };
    (@ step) => {
        fn step(&mut self, params: &mut [$crate::tensor::ParamMut<'_>]) -> $crate::error::Result<()> {
            self.inner.step(params)
        }
    };
    (@ state_dict) => {
        fn state_dict(&self) -> $crate::state::StateDict {
            self.inner.state_dict()
        }
    };
    (@ load_state_dict) => {
        fn load_state_dict(&mut self, dict: &$crate::state::StateDict) -> $crate::error::Result<()> {
            self.inner.load_state_dict(dict)
        }
    };
    (@ hparam) => {
        fn hparam(&self, key: &str) -> Option<f64> {
            self.inner.hparam(key)
        }
    };
    (@ set_hparam) => {
        fn set_hparam(&mut self, key: &str, value: f64) -> $crate::error::Result<()> {
            self.inner.set_hparam(key, value)
        }
    };
    (@ set_exec_options) => {
        /// Execution options (threads, fast or simple path, state storage)
        /// are the wrapped optimizer's.
        fn set_exec_options(&mut self, exec: $crate::exec::ExecOptions) -> $crate::error::Result<()> {
            self.inner.set_exec_options(exec)
        }
    };
    (@ set_cautious) => {
        fn set_cautious(&mut self, on: bool) -> $crate::error::Result<()> {
            self.inner.set_cautious(on)
        }
    };
    (@ set_mode) => {
        fn set_mode(
            &mut self,
            mode: $crate::optimizer::Mode,
            params: &mut [$crate::tensor::ParamMut<'_>],
        ) -> $crate::error::Result<()> {
            self.inner.set_mode(mode, params)
        }
    };
    (@ state_buffer) => {
        fn state_buffer(&self, param: &str, buffer: &str) -> Option<&[f32]> {
            self.inner.state_buffer(param, buffer)
        }
    };
}
pub(crate) use forward_to_inner;
