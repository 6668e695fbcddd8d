//! The optimizer interface: the object-safe [`Optimizer`] trait that
//! engines, parameter groups and wrappers implement, the train/eval
//! [`Mode`], scalar hyperparameter access on JSON configurations, and the
//! [`OptimizerSpec`] that describes a buildable optimizer.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::rule::ExecOptions;
use crate::state::StateDict;
use crate::tensor::ParamMut;

/// Old paths of the rule types (they live in [`crate::rule`]).
pub use crate::rule::{Curvature, OptimizerConfig, StepInfo, UpdateRule};

/// The closure of [`Optimizer::step_with_closure`]: evaluates the loss at
/// the parameters' values and writes their gradients.
pub type Closure<'a> = dyn FnMut(&mut [ParamMut<'_>]) -> Result<f64> + 'a;

/// An optimizer: updates parameters in place from their gradients.
///
/// Object safe, so that optimizers, parameter groups and wrappers compose as
/// `Box<dyn Optimizer>`.
pub trait Optimizer: Send {
    /// Registry name, e.g. `adamw`.
    fn name(&self) -> &str;

    /// The full configuration as JSON (hyperparameter names as in the reference).
    fn config(&self) -> Value;

    /// Replaces the configuration; validated first, unchanged on error.
    fn set_config(&mut self, config: Value) -> Result<()>;

    /// One optimization step over `params`.
    ///
    /// On error, either nothing changed (the arguments are checked first:
    /// names, lengths, finite values where required, a parameter given
    /// twice), or the step had already updated some parameters or state
    /// when it failed (a matrix rule meeting a vector, a group failing after
    /// another stepped). In the second case the error's message says that
    /// the optimizer is no longer usable, and every later step fails with
    /// an [`Error::Input`] naming the first error, until
    /// [`Optimizer::load_state_dict`] restores a state (restore the
    /// parameters with it). Step counts never advance on error.
    fn step(&mut self, params: &mut [ParamMut<'_>]) -> Result<()>;

    /// One step with a closure that re-evaluates the objective: `closure`
    /// computes the loss at the parameters' values, writes their gradients
    /// and returns the loss. Returns the loss of the first evaluation. The
    /// default evaluates the closure once, then steps, as torch's
    /// `optimizer.step(closure)` does; L-BFGS ([`crate::optim::Lbfgs`])
    /// evaluates it as often as its iterations and line search need.
    fn step_with_closure(
        &mut self,
        params: &mut [ParamMut<'_>],
        closure: &mut Closure<'_>,
    ) -> Result<f64> {
        let loss = closure(params)?;
        self.step(params)?;
        Ok(loss)
    }

    /// Every state buffer and scalar, keyed by parameter name.
    fn state_dict(&self) -> StateDict;

    /// Restores the state from [`Optimizer::state_dict`]; unchanged on error.
    fn load_state_dict(&mut self, dict: &StateDict) -> Result<()>;

    /// A scalar hyperparameter (`lr`, `weight_decay`, `beta1`, `beta2`, ...).
    fn hparam(&self, key: &str) -> Option<f64> {
        get_hparam(&self.config(), key)
    }

    /// Sets a scalar hyperparameter, validated like the configuration. This
    /// is how schedules drive any hyperparameter.
    fn set_hparam(&mut self, key: &str, value: f64) -> Result<()> {
        let mut cfg = self.config();
        set_hparam_in(&mut cfg, self.name(), key, value)?;
        self.set_config(cfg)
    }

    /// Current learning rate, if the optimizer has one.
    fn lr(&self) -> Option<f64> {
        self.hparam("lr")
    }

    /// Sets the learning rate.
    fn set_lr(&mut self, lr: f64) -> Result<()> {
        self.set_hparam("lr", lr)
    }

    /// Sets how steps execute: threads, fast or simple path, state storage
    /// type ([`crate::exec`]). Optimizers without execution options refuse.
    fn set_exec_options(&mut self, exec: ExecOptions) -> Result<()> {
        let _ = exec;
        Err(Error::Unsupported(format!(
            "{}: execution options are not supported",
            self.name()
        )))
    }

    /// Bytes of state held (compressed buffers count their real size).
    fn state_nbytes(&self) -> usize {
        self.state_dict().nbytes()
    }

    /// The state buffer `buffer` (e.g. `exp_avg`) of parameter `param`, if
    /// this optimizer keeps one by that name. Wrappers that read the wrapped
    /// optimizer's moments (update masking) use it; the default has none.
    fn state_buffer(&self, _param: &str, _buffer: &str) -> Option<&[f32]> {
        None
    }

    /// Turns cautious masking ([`crate::cautious`]) on or off. Optimizers
    /// whose update rule does not expose its update direction refuse to turn
    /// it on with [`Error::Unsupported`].
    fn set_cautious(&mut self, on: bool) -> Result<()> {
        if on {
            Err(Error::Unsupported(format!(
                "{}: cautious masking is not supported (the update direction is not exposed)",
                self.name()
            )))
        } else {
            Ok(())
        }
    }

    /// Names of the per-parameter state buffers, in the order
    /// [`Optimizer::swap_state`] takes them, for optimizers whose state can
    /// live in caller-owned memory (a framework's tensors); `None` (the
    /// default) for the others.
    fn state_buffer_names(&self) -> Option<&'static [&'static str]> {
        None
    }

    /// Exchanges the state buffers of parameter `param` (`numel` elements)
    /// with `buffers` (one per [`Optimizer::state_buffer_names`], in order)
    /// and sets the parameter's step count to `steps`. An empty buffer is
    /// "not yet created": the next step allocates it. Framework adapters
    /// swap borrowed buffers ([`StateTensor::borrowed`](crate::StateTensor::borrowed))
    /// in before a step and out again after it, so that the step updates
    /// the framework's tensors in place. Unsupported by default.
    fn swap_state(
        &mut self,
        param: &str,
        numel: usize,
        steps: u64,
        buffers: &mut [crate::tensor::StateTensor],
    ) -> Result<()> {
        let _ = (param, numel, steps, buffers);
        Err(Error::Unsupported(format!(
            "{}: state in caller-owned buffers is not supported",
            self.name()
        )))
    }

    /// Names of the optimizer-wide scalars (not per parameter) that an
    /// adapter keeping the state itself must carry between steps with
    /// [`Optimizer::global_state`] and [`Optimizer::set_global_state`]: the
    /// distance estimate of learning-rate-free rules, schedule-free
    /// averaging weights. Empty (the default) for optimizers without any.
    fn global_state_names(&self) -> &'static [&'static str] {
        &[]
    }

    /// The values of [`Optimizer::global_state_names`], in that order.
    fn global_state(&self) -> Vec<f64> {
        Vec::new()
    }

    /// Sets the values of [`Optimizer::global_state_names`], in that order;
    /// checked first, unchanged on error.
    fn set_global_state(&mut self, values: &[f64]) -> Result<()> {
        if values.is_empty() {
            Ok(())
        } else {
            Err(Error::Input(format!(
                "{}: {} optimizer-wide state values given; this optimizer keeps none",
                self.name(),
                values.len()
            )))
        }
    }

    /// Sets the optimizer-wide count of steps taken (the next step is
    /// `steps + 1`), for adapters that keep the count themselves.
    /// Unsupported by default.
    fn set_step_count(&mut self, steps: u64) -> Result<()> {
        let _ = steps;
        Err(Error::Unsupported(format!(
            "{}: setting the step count is not supported",
            self.name()
        )))
    }

    /// Puts `params` at the training point or at the evaluation point.
    /// Optimizers whose evaluation point differs from the point where
    /// gradients are taken (schedule-free methods, weight averaging) rewrite
    /// the parameter values; all others do nothing (the default). Switching
    /// to the mode already set does nothing. Stepping in [`Mode::Eval`] is an
    /// error for optimizers that track the mode.
    fn set_mode(&mut self, mode: Mode, params: &mut [ParamMut<'_>]) -> Result<()> {
        let _ = (mode, params);
        Ok(())
    }
}

/// Which point of the optimization the parameters hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The point where gradients are taken (the state after construction).
    #[default]
    Train,
    /// The point to evaluate (schedule-free's averaged iterate, averaged weights).
    Eval,
}

/// Reads scalar `key` from a JSON configuration: a plain number field, or
/// `beta1`/`beta2` for the entries of `betas`.
pub fn get_hparam(cfg: &Value, key: &str) -> Option<f64> {
    let obj = cfg.as_object()?;
    if let Some(v) = obj.get(key) {
        return v.as_f64().or_else(|| v.as_bool().map(|b| b as u8 as f64));
    }
    let idx = match key {
        "beta1" => 0,
        "beta2" => 1,
        _ => return None,
    };
    obj.get("betas")?.as_array()?.get(idx)?.as_f64()
}

/// Sets scalar `key` in a JSON configuration (see [`get_hparam`]).
pub fn set_hparam_in(cfg: &mut Value, optimizer: &str, key: &str, value: f64) -> Result<()> {
    let num = serde_json::Number::from_f64(value)
        .ok_or_else(|| Error::hparam(optimizer, key, value, "must be a finite number"))?;
    let Some(obj) = cfg.as_object_mut() else {
        return Err(Error::config(optimizer, "configuration is not an object"));
    };
    if let Some(slot) = obj.get_mut(key) {
        if slot.is_number() {
            *slot = Value::Number(num);
            return Ok(());
        }
        return Err(Error::config(
            optimizer,
            format!("hyperparameter '{key}' is not a number"),
        ));
    }
    let idx = match key {
        "beta1" => Some(0),
        "beta2" => Some(1),
        _ => None,
    };
    if let Some(slot) = idx.and_then(|i| obj.get_mut("betas")?.as_array_mut()?.get_mut(i)) {
        *slot = Value::Number(num);
        return Ok(());
    }
    Err(Error::config(
        optimizer,
        format!("has no scalar hyperparameter '{key}'"),
    ))
}

/// What the registry knows of one optimizer.
pub struct OptimizerSpec {
    /// Registry name (lowercase).
    pub name: &'static str,
    /// Implementation matched value for value.
    pub reference: &'static str,
    /// Paper introducing the method.
    pub paper: &'static str,
    /// One-line description.
    pub summary: &'static str,
    /// All hyperparameters with their defaults, as JSON.
    pub defaults: fn() -> Value,
    /// Builds the optimizer from a JSON object of hyperparameters (missing
    /// keys take defaults, unknown keys are errors).
    pub build: fn(&Value) -> Result<Box<dyn Optimizer>>,
    /// What the rule needs and offers.
    pub facts: RuleFacts,
}

/// Facts about a rule that callers act on, read from its configuration
/// type ([`OptimizerConfig`]) and [`UpdateRule`]: [`RuleFacts::of_rule`].
#[derive(Debug, Clone, Copy)]
pub struct RuleFacts {
    /// Runs through the fused elementwise driver (a kernel per chunk), so
    /// it can keep compressed state.
    pub elementwise: bool,
    /// Runs its own passes over fixed blocks (LAMB, Adafactor).
    pub blocked: bool,
    /// Gives each element's step direction to a sink, so the `cautious`
    /// wrapper can mask it ([`UpdateRule::EXPOSES_UPDATE`]).
    pub exposes_update: bool,
    /// The curvature estimate the caller must supply.
    pub curvature: Curvature,
    /// Updates only matrices (needs parameter groups for the rest).
    pub matrices_only: bool,
    /// Hyperparameters suggested for small networks (overrides of the defaults).
    pub suggested: fn() -> Value,
}

fn no_suggestion() -> Value {
    Value::Object(Default::default())
}

impl RuleFacts {
    /// No capability, no need, no suggestion.
    pub const NONE: RuleFacts = RuleFacts {
        elementwise: false,
        blocked: false,
        exposes_update: false,
        curvature: Curvature::None,
        matrices_only: false,
        suggested: no_suggestion,
    };

    /// The facts of a configuration type (a rule's or a wrapper's).
    pub fn of<C: OptimizerConfig>() -> RuleFacts {
        RuleFacts {
            curvature: C::CURVATURE,
            matrices_only: C::MATRICES_ONLY,
            suggested: C::suggested,
            ..RuleFacts::NONE
        }
    }

    /// The facts of an update rule run by the engine.
    pub fn of_rule<R: UpdateRule>() -> RuleFacts {
        RuleFacts {
            elementwise: R::ELEMENTWISE,
            blocked: R::BLOCKED,
            exposes_update: R::EXPOSES_UPDATE,
            ..RuleFacts::of::<R>()
        }
    }

    /// Whether the fast path (threads, chunks, blocks) gives the simple
    /// path's bits by construction (elementwise or blocked).
    pub fn exact_fast_path(&self) -> bool {
        self.elementwise || self.blocked
    }
}

impl OptimizerSpec {
    /// The entry of configuration type `C` (name, reference, paper,
    /// summary, defaults and facts from `C`), built by `build`.
    pub fn of_config<C: OptimizerConfig>(
        build: fn(&Value) -> Result<Box<dyn Optimizer>>,
    ) -> OptimizerSpec {
        OptimizerSpec {
            name: C::NAME,
            reference: C::REFERENCE,
            paper: C::PAPER,
            summary: C::SUMMARY,
            defaults: || C::default().to_json(),
            build,
            facts: RuleFacts::of::<C>(),
        }
    }
}

impl std::fmt::Debug for OptimizerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptimizerSpec")
            .field("name", &self.name)
            .finish()
    }
}
