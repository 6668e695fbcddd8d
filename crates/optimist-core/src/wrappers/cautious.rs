//! The `cautious` wrapper: any optimizer whose update rule exposes its
//! update direction, run with cautious masking ([`crate::cautious`]).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::optimizer::Optimizer;
use crate::rule::OptimizerConfig;
use crate::wrap::{forward_to_inner, inner_json, InnerSpec};

/// Configuration of the `cautious` wrapper: the optimizer to run cautiously.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CautiousConfig {
    /// `{"optimizer": name, "hparams": {...}}` (required).
    pub inner: Option<InnerSpec>,
}

impl OptimizerConfig for CautiousConfig {
    const NAME: &'static str = "cautious";
    const REFERENCE: &'static str =
        "pytorch_optimizer BaseOptimizer.apply_cautious, as in Lion(cautious=True) (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Liang, Chen, Liu & Liu, Cautious Optimizers: Improving Training with One Line of Code (arXiv:2411.16085)";
    const SUMMARY: &'static str =
        "wrapper: masks update components whose sign disagrees with the gradient, for any optimizer";

    fn validate(&self) -> Result<()> {
        crate::wrap::require_inner(Self::NAME, &self.inner).map(|_| ())
    }
}

/// Any optimizer with cautious masking turned on; itself an [`Optimizer`]
/// whose state is the inner optimizer's.
pub struct Cautious {
    inner: Box<dyn Optimizer>,
}

impl Cautious {
    /// Turns cautious masking on in `inner`; an error if its update rule
    /// does not expose its update direction.
    pub fn wrap(mut inner: Box<dyn Optimizer>) -> Result<Self> {
        inner
            .set_cautious(true)
            .map_err(|e| Error::config(CautiousConfig::NAME, format!("inner: {e}")))?;
        Ok(Cautious { inner })
    }

    /// The wrapped optimizer.
    pub fn inner(&self) -> &dyn Optimizer {
        self.inner.as_ref()
    }
}

impl Optimizer for Cautious {
    fn name(&self) -> &str {
        CautiousConfig::NAME
    }

    fn config(&self) -> Value {
        json!({"inner": inner_json(self.inner.as_ref())})
    }

    fn set_config(&mut self, config: Value) -> Result<()> {
        let cfg = CautiousConfig::from_json(&config)?;
        let inner = crate::wrap::require_inner(CautiousConfig::NAME, &cfg.inner)?;
        crate::wrap::reconfigure_inner(CautiousConfig::NAME, self.inner.as_mut(), inner)
    }

    forward_to_inner!(
        step,
        state_dict,
        load_state_dict,
        hparam,
        set_hparam,
        set_cautious,
        set_mode,
        state_buffer,
        set_exec_options,
    );
}
