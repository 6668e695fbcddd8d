//! The optimizer interface, typed configurations and the generic engine that
//! runs a per-parameter update rule.

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::cautious::Apply;
use crate::error::{Error, Result};
use crate::exec::ExecOptions;
use crate::state::{ParamState, StateDict, StateStore};
use crate::tensor::ParamMut;

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

/// A typed optimizer configuration: hyperparameters with the reference's
/// names and defaults, readable from JSON (unknown keys are errors).
pub trait OptimizerConfig:
    Serialize + DeserializeOwned + Default + Clone + Send + Sync + 'static
{
    /// Registry name.
    const NAME: &'static str;
    /// The implementation this one matches value for value.
    const REFERENCE: &'static str;
    /// The paper that introduced the method.
    const PAPER: &'static str;
    /// One line on what the method does.
    const SUMMARY: &'static str;

    /// Checks every hyperparameter, naming the first bad one.
    fn validate(&self) -> Result<()>;

    /// Reads a configuration from a JSON object; missing keys take defaults.
    fn from_json(value: &Value) -> Result<Self> {
        let value = match value {
            Value::Null => Value::Object(Default::default()),
            Value::Object(_) => value.clone(),
            other => {
                return Err(Error::config(
                    Self::NAME,
                    format!("hyperparameters must be a JSON object, got {other}"),
                ))
            }
        };
        let cfg: Self = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path.is_empty() {
                Error::config(Self::NAME, format!("invalid hyperparameters: {inner}"))
            } else {
                Error::config(
                    Self::NAME,
                    format!("invalid hyperparameter '{path}': {inner}"),
                )
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The configuration as JSON.
    fn to_json(&self) -> Value {
        // Serializing plain structs of numbers, bools and strings cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Step-wide information passed to an update rule.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    /// The optimizer's step count, 1 on the first step.
    pub step: u64,
    /// How the step executes (threads, state storage); read by the driver.
    pub exec: ExecOptions,
}

impl StepInfo {
    /// Step `step` with the default execution options.
    pub fn new(step: u64) -> Self {
        StepInfo {
            step,
            exec: ExecOptions::default(),
        }
    }
}

/// An update rule that treats each parameter on its own: the configuration
/// type carries the hyperparameters and the rule.
pub trait UpdateRule: OptimizerConfig {
    /// Per-parameter state.
    type State: ParamState;

    /// Whether the rule runs through the fused elementwise driver (set by
    /// [`elementwise_fast_path!`](crate::elementwise_fast_path) together with
    /// [`UpdateRule::update_all`]); only such rules can keep compressed state.
    const ELEMENTWISE: bool = false;

    /// Updates one parameter in one pass over its slices.
    fn update(
        &self,
        info: &StepInfo,
        param: &mut ParamMut<'_>,
        state: &mut Self::State,
    ) -> Result<()>;

    /// Checks the parameters before a step changes anything (the matrix
    /// rules refuse non-matrices here); an error leaves the optimizer as it
    /// was. The default accepts every parameter.
    fn check_params(&self, params: &[ParamMut<'_>]) -> Result<()> {
        let _ = params;
        Ok(())
    }

    /// Updates all parameters. The default calls [`UpdateRule::update`] for
    /// each, in parallel over parameters ([`crate::exec::run_per_param`]);
    /// elementwise rules use the fused driver instead
    /// ([`elementwise_fast_path!`](crate::elementwise_fast_path)); rules that
    /// need a global quantity first (a norm over all gradients) override this.
    /// An error from here is taken to come after some update (the engine is
    /// then poisoned, see [`Optimizer::step`]): checks that can be made
    /// before anything changes belong in [`UpdateRule::check_params`].
    fn update_all(
        &self,
        info: &StepInfo,
        params: &mut [ParamMut<'_>],
        states: &mut StateStore<Self::State>,
    ) -> Result<()> {
        crate::exec::run_per_param(self, info, params, states)
    }

    /// Whether [`UpdateRule::update_with`] is implemented, so that update
    /// modifiers such as cautious masking ([`crate::cautious`]) compose
    /// with this rule.
    const EXPOSES_UPDATE: bool = false;

    /// Like [`UpdateRule::update`], but the step of every element, in order,
    /// goes through `apply` instead of being added to the parameter: the
    /// rule applies its own weight decay and state updates, then calls
    /// `apply.apply(p, g, lr, u)` where the plain update is `p <- p - lr * u`
    /// and `g` is the gradient as the rule used it (after L2 decay). The
    /// caller ends the parameter with [`Apply::finish`]. Rules that set
    /// [`UpdateRule::EXPOSES_UPDATE`] implement this and write `update` as
    /// `update_with` with [`crate::cautious::Plain`].
    fn update_with<A: Apply>(
        &self,
        _info: &StepInfo,
        _param: &mut ParamMut<'_>,
        _state: &mut Self::State,
        _apply: &mut A,
    ) -> Result<()> {
        Err(Error::Unsupported(format!(
            "{}: the update rule does not expose its update direction",
            Self::NAME
        )))
    }

    /// Like [`UpdateRule::update_all`] through `apply`. The default calls
    /// [`UpdateRule::update_with`] and [`Apply::finish`] for each parameter;
    /// rules that override `update_all` override this too.
    fn update_all_with<A: Apply>(
        &self,
        info: &StepInfo,
        params: &mut [ParamMut<'_>],
        states: &mut StateStore<Self::State>,
        apply: &mut A,
    ) -> Result<()> {
        for p in params.iter_mut() {
            let st = states.get(p.name, p.numel())?;
            self.update_with(info, p, st, apply)?;
            apply.finish(p.value)?;
        }
        Ok(())
    }

    /// Every parameter's step under cautious masking ([`crate::cautious`]):
    /// [`UpdateRule::update_with`] with one mask per parameter, in parallel
    /// over the parameters on the fast path ([`crate::cautious::per_param`];
    /// the values do not depend on it). Rules that override
    /// `update_all_with` override this too.
    fn update_all_cautious(
        &self,
        info: &StepInfo,
        params: &mut [ParamMut<'_>],
        states: &mut StateStore<Self::State>,
    ) -> Result<()> {
        crate::cautious::per_param(info, params, states, |p, st, mask| {
            self.update_with(info, p, st, mask)
        })
    }

    /// Called when the configuration is replaced (`set_config`,
    /// `set_hparam`), with the configuration it replaces: keeps values that
    /// are not hyperparameters, such as the learning rate the optimizer was
    /// built with. The default keeps nothing.
    fn carry_over(&mut self, _previous: &Self) {}

    /// Called once at the start of every step, before any update, for
    /// rule-level values that change at step time (not hyperparameters).
    /// The default does nothing.
    fn begin_step(&mut self, _info: &StepInfo) {}
}

/// Runs an [`UpdateRule`]: owns its configuration, per-parameter states and
/// step count, and implements [`Optimizer`].
#[derive(Debug, Clone)]
pub struct Engine<R: UpdateRule> {
    config: R,
    states: StateStore<R::State>,
    step: u64,
    exec: ExecOptions,
    /// Cautious masking on (see [`crate::cautious`]).
    cautious: bool,
    /// The error of a step that failed after it had started updating (see
    /// [`Optimizer::step`]): every later step refuses until a state is loaded.
    poisoned: Option<String>,
}

impl<R: UpdateRule> Engine<R> {
    /// Validates `config` and builds the optimizer.
    pub fn new(config: R) -> Result<Self> {
        config.validate()?;
        Ok(Engine {
            config,
            states: StateStore::default(),
            step: 0,
            exec: ExecOptions::default(),
            cautious: false,
            poisoned: None,
        })
    }

    /// Sets the execution options (builder style); see [`crate::exec`].
    pub fn with_exec(mut self, exec: ExecOptions) -> Result<Self> {
        self.set_exec_options(exec)?;
        Ok(self)
    }

    /// The execution options.
    pub fn exec_options(&self) -> ExecOptions {
        self.exec
    }

    /// The typed configuration.
    pub fn typed_config(&self) -> &R {
        &self.config
    }

    /// The per-parameter states.
    pub fn states(&self) -> &StateStore<R::State> {
        &self.states
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }
}

impl<R: UpdateRule> Optimizer for Engine<R> {
    fn name(&self) -> &str {
        R::NAME
    }

    fn config(&self) -> Value {
        self.config.to_json()
    }

    fn set_config(&mut self, config: Value) -> Result<()> {
        let mut config = R::from_json(&config)?;
        config.carry_over(&self.config);
        self.config = config;
        Ok(())
    }

    fn step(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        if let Some(first) = &self.poisoned {
            return Err(Error::unusable(R::NAME, first));
        }
        for p in params.iter() {
            p.check()?;
        }
        let keys: Vec<(&str, usize)> = params.iter().map(|p| (p.name, p.numel())).collect();
        // The usual step (same parameters, same order) needs no lookups.
        if !self.states.matches_order(&keys) {
            let mut seen = std::collections::HashSet::new();
            for &(name, numel) in &keys {
                self.states.check(name, numel)?;
                if !seen.insert(name) {
                    return Err(Error::Input(format!(
                        "parameter '{name}' given twice in one step"
                    )));
                }
            }
        }
        self.config.check_params(params)?;
        let info = StepInfo {
            step: self.step + 1,
            exec: self.exec,
        };
        self.config.begin_step(&info);
        let threads = if self.exec.fused {
            self.exec.resolved_threads()
        } else {
            1
        };
        let (config, states) = (&self.config, &mut self.states);
        let updated = if self.cautious {
            // The rules' `update_with` through one mask per parameter, the
            // parameters in parallel on the fast path.
            crate::exec::run_on(threads, || {
                config.update_all_cautious(&info, params, states)
            })?
        } else {
            crate::exec::run_on(threads, || config.update_all(&info, params, states))?
        };
        // Past the checks above, a rule's error may come after some
        // parameters and buffers were updated: the optimizer is then
        // poisoned rather than left half-stepped without notice.
        if let Err(e) = updated {
            self.poisoned = Some(e.to_string());
            return Err(e.midway(R::NAME));
        }
        self.step += 1;
        Ok(())
    }

    fn set_exec_options(&mut self, exec: ExecOptions) -> Result<()> {
        exec.validate(R::NAME, R::ELEMENTWISE)?;
        if self.cautious && exec.state_dtype != crate::tensor::DType::F32 {
            return Err(Error::Unsupported(format!(
                "{}: state_dtype '{}' with cautious masking (which needs f32 state)",
                R::NAME,
                exec.state_dtype.name()
            )));
        }
        if exec.state_dtype == crate::tensor::DType::F32 {
            // Back to f32: decode now (compressed targets are applied at the next step).
            self.states.for_each_mut(|_, s| {
                let mut bufs = Vec::new();
                s.buffers_mut(&mut bufs);
                bufs.iter_mut().for_each(|t| t.decompress());
            });
        }
        self.exec = exec;
        Ok(())
    }

    fn state_nbytes(&self) -> usize {
        self.states
            .iter()
            .map(|(_, s)| {
                R::State::BUFFERS
                    .iter()
                    .filter_map(|b| s.buffer(b))
                    .map(|t| t.nbytes())
                    .sum::<usize>()
            })
            .sum()
    }

    fn state_dict(&self) -> StateDict {
        let mut d = self.states.state_dict();
        d.scalars.insert("step".into(), self.step as f64);
        d
    }

    fn load_state_dict(&mut self, dict: &StateDict) -> Result<()> {
        let step = match dict.scalars.get("step") {
            Some(&s) if s.is_finite() && s >= 0.0 && s.fract() == 0.0 && s < 2f64.powi(53) => {
                s as u64
            }
            Some(&s) => return Err(Error::Input(format!("state 'step': invalid value {s}"))),
            None => return Err(Error::Input("state has no 'step' entry".into())),
        };
        let mut states: StateStore<R::State> = StateStore::default();
        states.load_state_dict(dict)?;
        if self.exec.state_dtype == crate::tensor::DType::F32 {
            // 8-bit buffers saved by a run with compressed state, resumed
            // with f32 state: decode now (exact), as set_exec_options does.
            states.for_each_mut(|_, s| {
                let mut bufs = Vec::new();
                s.buffers_mut(&mut bufs);
                bufs.iter_mut().for_each(|t| t.decompress());
            });
        }
        self.states = states;
        self.step = step;
        self.poisoned = None;
        Ok(())
    }

    fn state_buffer_names(&self) -> Option<&'static [&'static str]> {
        Some(R::State::BUFFERS)
    }

    fn swap_state(
        &mut self,
        param: &str,
        numel: usize,
        steps: u64,
        buffers: &mut [crate::tensor::StateTensor],
    ) -> Result<()> {
        let names = R::State::BUFFERS;
        if buffers.len() != names.len() {
            return Err(Error::Input(format!(
                "{}: {} state buffers given for '{param}', expected {} ({})",
                R::NAME,
                buffers.len(),
                names.len(),
                names.join(", ")
            )));
        }
        for (t, name) in buffers.iter().zip(names) {
            if t.is_allocated() && !R::State::UNSIZED.contains(name) && t.len() != numel {
                return Err(Error::Shape(format!(
                    "state of '{param}': buffer '{name}' holds {} values, expected {numel}",
                    t.len()
                )));
            }
        }
        let st = self.states.get(param, numel)?;
        st.set_step(steps);
        let mut slots = Vec::with_capacity(names.len());
        st.buffers_mut(&mut slots);
        for (slot, t) in slots.into_iter().zip(buffers.iter_mut()) {
            std::mem::swap(slot, t);
        }
        Ok(())
    }

    fn set_step_count(&mut self, steps: u64) -> Result<()> {
        self.step = steps;
        Ok(())
    }

    /// `None` for a compressed buffer (bf16 or q8 state).
    fn state_buffer(&self, param: &str, buffer: &str) -> Option<&[f32]> {
        let t = self.states.peek(param)?.buffer(buffer)?;
        t.is_allocated().then(|| t.try_as_slice()).flatten()
    }

    fn set_cautious(&mut self, on: bool) -> Result<()> {
        if on && self.exec.state_dtype != crate::tensor::DType::F32 {
            return Err(Error::Unsupported(format!(
                "{}: cautious masking needs f32 state (state_dtype is {})",
                R::NAME,
                self.exec.state_dtype.name()
            )));
        }
        if on && !R::EXPOSES_UPDATE {
            return Err(Error::Unsupported(format!(
                "{}: cautious masking needs an update rule that exposes its update direction",
                R::NAME
            )));
        }
        self.cautious = on;
        Ok(())
    }
}
