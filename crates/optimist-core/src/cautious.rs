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
//! [`UpdateRule::EXPOSES_UPDATE`] and [`UpdateRule::update_with`]; the
//! generic [`Engine`](crate::Engine) then runs any of them cautiously
//! ([`Optimizer::set_cautious`]). A wrapper that diffs parameters before and
//! after an inner step could not do this exactly: the difference includes
//! decoupled weight decay and the rounding of `p + step`.
//!
//! Masks are per parameter tensor, so the parameters run in parallel on
//! the fast path ([`per_param`]; each task with its own mask, reused across
//! steps per thread); the values are those of the one-by-one simple path.
//!
//! The registry entry `cautious` wraps any registered optimizer:
//! `{"optimizer": "cautious", "hparams": {"inner": {"optimizer": "adamw",
//! "hparams": {...}}}}`. Lion also takes `cautious` as a hyperparameter,
//! as in pytorch-optimizer; both give the same results.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::optimizer::{Optimizer, OptimizerConfig};
use crate::registry::OptimizerSpec;
use crate::wrap::{forward_to_inner, inner_json, InnerSpec};

/// Where an update rule sends the step of each element.
pub trait Apply {
    /// One element, in order over the parameter: the plain update is
    /// `p <- p - lr * u`; `g` is the gradient as the rule used it.
    fn apply(&mut self, p: &mut f32, g: f32, lr: f32, u: f32);

    /// Ends the parameter whose elements were passed to [`Apply::apply`]:
    /// applies anything deferred.
    fn finish(&mut self, value: &mut [f32]) -> Result<()>;
}

/// The plain update, `p <- p - lr * u`, applied at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl Apply for Plain {
    #[inline(always)]
    fn apply(&mut self, p: &mut f32, _g: f32, lr: f32, u: f32) {
        // Same bits as `p += -lr * u`.
        *p -= lr * u;
    }

    #[inline(always)]
    fn finish(&mut self, _value: &mut [f32]) -> Result<()> {
        Ok(())
    }
}

/// One deferred element step.
#[derive(Debug, Clone, Copy)]
struct Deferred {
    lr: f32,
    u: f32,
    keep: bool,
}

/// The cautious mask: defers every element's step until the parameter is
/// finished, then applies `p <- p - lr * (u * mask * scale)`.
#[derive(Debug, Clone, Default)]
pub struct CautiousMask {
    pending: Vec<Deferred>,
    kept: usize,
}

/// The mask's scale `numel / (kept + 1)`, computed as torch computes
/// `mask.numel() / (mask.sum() + 1)` in f32: the reciprocal of the f32
/// denominator, times `numel`.
#[inline]
pub fn cautious_scale(numel: usize, kept: usize) -> f32 {
    (1.0f32 / (kept as f32 + 1.0)) * numel as f32
}

impl Apply for CautiousMask {
    #[inline(always)]
    fn apply(&mut self, _p: &mut f32, g: f32, lr: f32, u: f32) {
        // The product in f32, as the reference: an underflow to 0 masks.
        let keep = u * g > 0.0;
        self.kept += keep as usize;
        self.pending.push(Deferred { lr, u, keep });
    }

    fn finish(&mut self, value: &mut [f32]) -> Result<()> {
        if self.pending.len() != value.len() {
            let n = self.pending.len();
            self.pending.clear();
            self.kept = 0;
            return Err(Error::Input(format!(
                "cautious mask: {n} element steps for a parameter of {} elements",
                value.len()
            )));
        }
        let scale = cautious_scale(value.len(), self.kept);
        for (x, d) in value.iter_mut().zip(&self.pending) {
            let m = if d.keep { scale } else { 0.0 };
            // Masked elements still compute `lr * (u * 0)`, as the reference
            // (so a non-finite u stays visible).
            *x -= d.lr * (d.u * m);
        }
        self.pending.clear();
        self.kept = 0;
        Ok(())
    }
}

thread_local! {
    /// One mask's scratch space per thread, kept across steps.
    static MASK: std::cell::Cell<CautiousMask> = const {
        std::cell::Cell::new(CautiousMask { pending: Vec::new(), kept: 0 })
    };
}

/// Runs `step(p, state, mask)` for every parameter with a cleared mask,
/// then the mask's [`Apply::finish`]: in parallel over the parameters when
/// the execution options allow it and the call is made from a thread pool
/// (as the engine's step is), one by one otherwise. Each parameter's
/// values are the same either way.
pub fn per_param<S, F>(
    info: &crate::optimizer::StepInfo,
    params: &mut [crate::tensor::ParamMut<'_>],
    states: &mut crate::state::StateStore<S>,
    step: F,
) -> Result<()>
where
    S: crate::state::ParamState,
    F: Fn(&mut crate::tensor::ParamMut<'_>, &mut S, &mut CautiousMask) -> Result<()> + Sync,
{
    let one = |p: &mut crate::tensor::ParamMut<'_>, st: &mut S| -> Result<()> {
        // Taken out of the thread-local while in use: a nested call on the
        // same thread (work stealing) just starts with an empty one.
        let mut mask = MASK.with(|m| m.take());
        mask.pending.clear();
        mask.kept = 0;
        let r = step(p, st, &mut mask).and_then(|_| mask.finish(p.value));
        MASK.with(|m| m.set(mask));
        r
    };
    let parallel = info.exec.fused
        && info.exec.resolved_threads() > 1
        && rayon::current_thread_index().is_some();
    crate::exec::for_each_param(parallel, params, states, one)
}

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

    /// Builds the wrapper from its JSON configuration.
    pub fn from_json(value: &Value) -> Result<Self> {
        let cfg = CautiousConfig::from_json(value)?;
        let inner = crate::wrap::require_inner(CautiousConfig::NAME, &cfg.inner)?;
        Cautious::wrap(crate::wrap::build_inner(CautiousConfig::NAME, inner)?)
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

/// The registry entry of the `cautious` wrapper.
pub fn spec() -> OptimizerSpec {
    crate::wrap::wrapper_spec::<CautiousConfig>(|v| Ok(Box::new(Cautious::from_json(v)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_is_reciprocal_times_numel() {
        assert_eq!(cautious_scale(4, 3), 1.0);
        assert_eq!(cautious_scale(10, 0), 10.0);
        assert_eq!(cautious_scale(6, 2), (1.0f32 / 3.0) * 6.0);
    }

    #[test]
    fn mask_keeps_agreeing_signs_and_rescales() {
        let mut m = CautiousMask::default();
        let mut p = [1.0f32, 1.0, 1.0, 1.0];
        // u * g: +, -, 0, + -> two kept, scale 4 / 3.
        for (x, (g, u)) in p
            .iter_mut()
            .zip([(1.0, 2.0), (1.0, -2.0), (0.0, 1.0), (-1.0, -1.0)])
        {
            m.apply(x, g, 0.5, u);
        }
        m.finish(&mut p).unwrap();
        let s = cautious_scale(4, 2);
        assert_eq!(p, [1.0 - 0.5 * (2.0 * s), 1.0, 1.0, 1.0 - 0.5 * (-s)]);
        // A finish that does not match the elements passed is an error.
        let mut q = [0.0f32; 2];
        m.apply(&mut q[0], 1.0, 1.0, 1.0);
        assert!(m.finish(&mut q).is_err());
    }
}
