//! Cautious masking (Liang, Chen, Liu & Liu, "Cautious Optimizers:
//! Improving Training with One Line of Code", arXiv:2411.16085, 2024) as
//! one modifier that composes with every update rule that exposes its
//! update direction, and the stage through which such rules apply their
//! step.
//!
//! **Reference:** `BaseOptimizer.apply_cautious` of pytorch-optimizer 4.1.0,
//! as `pytorch_optimizer.Lion(cautious=True)` uses it.
//!
//! ```text
//! u     = the rule's update direction, the plain step being p <- p - lr * u
//! mask  = (u * g > 0)                        per element, in f32
//! scale = (1 / (sum(mask) + 1)) * numel      f32, as torch's `numel / tensor`
//! p    <- p - lr * (u * (mask ? scale : 0))
//! ```
//!
//! `g` is the gradient as the rule used it (after L2 weight decay, when
//! coupled), decoupled weight decay is applied to `p` before and is not
//! masked, and the mask and its scale are per parameter tensor.
//!
//! # Design
//!
//! An update rule that supports modifiers does not add its step to the
//! parameter itself: its one pass over (param, grad, state) hands each
//! element's step to an [`Apply`] stage as `(p, g, lr, u)`. [`Plain`] adds
//! it at once (`p <- p - lr * u`, the same floating-point operations as
//! writing the step inline, so the plain path is unchanged and stays one
//! pass). [`CautiousMask`] keeps `(lr, u, u * g > 0)` per element and, when
//! the parameter is finished, computes the scale from the mask count and
//! applies the masked step: the second pass the mask needs, since its scale
//! depends on the whole tensor. Rules opt in with
//! [`UpdateRule::EXPOSES_UPDATE`](crate::UpdateRule::EXPOSES_UPDATE) and [`UpdateRule::update_with`](crate::UpdateRule::update_with); the
//! generic [`Engine`](crate::Engine) then runs any of them cautiously
//! ([`Optimizer::set_cautious`](crate::Optimizer::set_cautious)). A wrapper that diffs parameters before and
//! after an inner step could not do this exactly: the difference includes
//! decoupled weight decay and the rounding of `p + step`.
//!
//! Masks are per parameter tensor, so the parameters run in parallel on
//! the fast path ([`crate::exec::cautious_per_param`]; each task with its own mask, reused across
//! steps per thread); the values are those of the one-by-one simple path.
//!
//! The registry entry `cautious` wraps any registered optimizer:
//! `{"optimizer": "cautious", "hparams": {"inner": {"optimizer": "adamw",
//! "hparams": {...}}}}`. Lion also takes `cautious` as a hyperparameter,
//! as in pytorch-optimizer; both give the same results.
//!
//! Where the pieces live: the [`Apply`] sink and [`Plain`] are part of an
//! update rule ([`crate::rule`]); the mask and its per-parameter driver are
//! part of execution ([`crate::exec`]); the wrapper ([`Cautious`]) is here,
//! and this module (also reachable as `crate::cautious`) gathers them under
//! one name.

pub use crate::exec::{cautious_per_param as per_param, cautious_scale, CautiousMask};
pub use crate::rule::{Apply, Plain};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::optimizer::Optimizer;
use crate::rule::OptimizerConfig;
use crate::wrappers::inner_spec;
use crate::wrappers::wrap::{inner_field, InnerSpec, Wrapper};

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
        crate::wrappers::wrap::require_inner(Self::NAME, &self.inner).map(|_| ())
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
}

impl Wrapper for Cautious {
    inner_field!();

    fn name(&self) -> &str {
        CautiousConfig::NAME
    }

    fn config(&self) -> Value {
        json!({"inner": inner_spec(self.inner.as_ref())})
    }

    fn set_config(&mut self, config: Value) -> Result<()> {
        let cfg = CautiousConfig::from_json(&config)?;
        let inner = crate::wrappers::wrap::require_inner(CautiousConfig::NAME, &cfg.inner)?;
        crate::wrappers::wrap::reconfigure_inner(CautiousConfig::NAME, self.inner.as_mut(), inner)
    }
}
