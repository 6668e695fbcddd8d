//! The engine: runs an [`UpdateRule`] as an [`Optimizer`]. It owns the
//! rule's configuration, per-parameter states and step count, checks the
//! parameters of each step, and picks the driver ([`crate::exec`]): the
//! rule's own [`UpdateRule::update_all`] (the fused elementwise driver, or
//! a rule-specific one), else [`UpdateRule::update`] per parameter; under
//! cautious masking, [`UpdateRule::update_all_cautious`], else
//! [`UpdateRule::update_with`] through one mask per parameter.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::exec;
use crate::optimizer::{Optimizer, OptimizerSpec, RuleFacts};
use crate::rule::{ExecOptions, StepInfo, UpdateRule};
use crate::state::{ParamState, StateDict, StateStore};
use crate::tensor::ParamMut;

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
        crate::tensor::check_each(params)?;
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
        let (config, states) = (&self.config, &mut self.states);
        let cautious = self.cautious;
        let updated = exec::run_step(&self.exec, || {
            if cautious {
                // The rule's `update_with` through one mask per parameter,
                // the parameters in parallel on the fast path.
                config
                    .update_all_cautious(&info, params, states)
                    .unwrap_or_else(|| exec::run_cautious(config, &info, params, states))
            } else {
                config
                    .update_all(&info, params, states)
                    .unwrap_or_else(|| exec::run_per_param(config, &info, params, states))
            }
        })?;
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
        self.states.swap(R::NAME, param, numel, steps, buffers)
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

/// The registry entry of an [`UpdateRule`] run by the generic [`Engine`].
pub fn spec<R: UpdateRule>() -> OptimizerSpec {
    OptimizerSpec {
        facts: RuleFacts::of_rule::<R>(),
        ..OptimizerSpec::of_config::<R>(|v| Ok(Box::new(Engine::new(R::from_json(v)?)?)))
    }
}
