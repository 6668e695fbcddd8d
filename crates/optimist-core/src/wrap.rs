//! Wrappers around an inner optimizer given by name (`lookahead`,
//! `cautious`): the `inner` specification and how it is built and
//! reconfigured, written once.
//!
//! ```json
//! {"optimizer": "lookahead", "hparams": {"k": 5, "alpha": 0.5,
//!   "inner": {"optimizer": "adam", "hparams": {"lr": 1e-3}}}}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::optimizer::Optimizer;
use crate::registry;

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

/// Builds the inner optimizer; errors name the wrapper and `inner`.
pub fn build_inner(wrapper: &str, inner: &InnerSpec) -> Result<Box<dyn Optimizer>> {
    registry::build(&inner.optimizer.to_lowercase(), &inner.hparams)
        .map_err(|e| Error::config(wrapper, format!("inner: {e}")))
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
