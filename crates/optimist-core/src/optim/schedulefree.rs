//! Schedule-free AdamW and SGD (registry names `adamw_schedulefree`,
//! `sgd_schedulefree`).
//!
//! **References:** `schedulefree.AdamWScheduleFree` and
//! `schedulefree.SGDScheduleFree` (facebookresearch's `schedulefree`
//! package 1.4.1, the default foreach path; the for-loop path computes the
//! same). **Paper:** Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky,
//! "The Road Less Scheduled", NeurIPS 2024 (arXiv:2405.15682).
//!
//! The parameters hold `y` (the gradient point) in training mode. Per step
//! `k` (0-based, counted per optimizer, like the reference's per-group `k`),
//! scalars in f64:
//! ```text
//! sched   = (k + 1) / warmup_steps  if k < warmup_steps  else 1
//! lr_k    = lr * sched
//! lr_max  = max(lr_max, lr_k)                  (lr_max starts at -1)
//! weight  = (k + 1)^r * lr_max^weight_lr_power
//! weight_sum += weight;  ckp1 = weight / weight_sum   (0 when weight_sum is 0)
//! ```
//! then per element (f32), with `z` starting as a copy of the parameter:
//! ```text
//! AdamW:  v <- beta2 v + (1 - beta2) g^2
//!         d <- g / (sqrt(v / (1 - beta2^(k+1))) + eps)
//! SGD:    d <- g
//! d <- d + weight_decay * y                     (if weight_decay != 0; decay at y)
//! y <- lerp(y, z, ckp1)
//! y <- y + lr_k (m (1 - ckp1) - 1) d            (m = beta1 for AdamW, momentum for SGD)
//! z <- z - lr_k d
//! ```
//! Train/eval switch ([`Optimizer::set_mode`]): eval sets every parameter
//! with state to `x = lerp(y, z, 1 - 1/m)`, train back to
//! `y = lerp(x, z, 1 - m)` (as the reference's `eval()`/`train()`; the round
//! trip is not bit-exact in f32, as in the reference). Stepping in eval
//! mode is an error (the reference raises).
//!
//! Defaults: AdamW lr = 0.0025, betas = (0.9, 0.999), eps = 1e-8,
//! weight_decay = 0, warmup_steps = 0, r = 0, weight_lr_power = 2;
//! SGD lr = 1.0, momentum = 0.9, weight_decay = 0, warmup_steps = 0, r = 0,
//! weight_lr_power = 2.
//!
//! **Differences from the reference:** a new optimizer is in train mode
//! (the reference starts in eval mode and requires `train()` before the
//! first step; with no state yet the two are the same point). `betas[0]`
//! (AdamW) must be in (0, 1) and momentum (SGD) in (0, 1): the eval switch
//! divides by it (the reference checks momentum only). The reference's
//! `foreach` argument is not a hyperparameter here.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::exec;
use crate::math::{bias_correction, lerp};
use crate::rule::ExecOptions;
use crate::optimizer::{Mode, Optimizer};
use crate::rule::OptimizerConfig;
use crate::optimizer::OptimizerSpec;
use crate::state::{ParamState, StateDict, StateStore};
use crate::tensor::{ParamMut, StateTensor};
use crate::validate as v;

crate::param_state! {
    /// Schedule-free state: the `z` sequence and (AdamW) the second moment.
    pub struct ScheduleFreeState { z, exp_avg_sq }
}

/// Per-step scalars shared by every parameter (computed once, in f64).
#[derive(Debug, Clone, Copy)]
pub struct SfStep {
    /// 0-based step index of the optimizer.
    pub k: u64,
    /// Scheduled (warmed-up) learning rate.
    pub lr: f64,
    /// Averaging weight of this step.
    pub ckp1: f64,
}

/// A schedule-free method: its configuration and its gradient transform.
pub trait ScheduleFreeRule:
    OptimizerConfig + Serialize + DeserializeOwned + Clone + Send + Sync + 'static
{
    /// Base learning rate.
    fn lr(&self) -> f64;
    /// Linear warmup steps.
    fn warmup_steps(&self) -> u64;
    /// Power of (k + 1) in the averaging weight.
    fn r(&self) -> f64;
    /// Power of lr_max in the averaging weight.
    fn weight_lr_power(&self) -> f64;
    /// The interpolation momentum (beta1 or momentum).
    fn momentum(&self) -> f64;
    /// The learning rate of 0-based step `k`: by default `lr` with the
    /// linear warm-up (schedule-free RAdam rectifies it instead).
    fn step_lr(&self, k: u64) -> f64 {
        let sched = if k < self.warmup_steps() {
            (k + 1) as f64 / self.warmup_steps() as f64
        } else {
            1.0
        };
        self.lr() * sched
    }
    /// Updates one parameter (one pass over y, g, z and the moments).
    fn update(&self, s: &SfStep, p: &mut ParamMut<'_>, st: &mut ScheduleFreeState);
}

/// Runs a [`ScheduleFreeRule`]: configuration, per-parameter state, the
/// optimizer-wide scalars (`k`, `lr_max`, `weight_sum`) and the mode.
#[derive(Debug, Clone)]
pub struct ScheduleFree<C: ScheduleFreeRule> {
    config: C,
    states: StateStore<ScheduleFreeState>,
    k: u64,
    lr_max: f64,
    weight_sum: f64,
    mode: Mode,
    exec: ExecOptions,
}

impl<C: ScheduleFreeRule> ScheduleFree<C> {
    /// Validates `config` and builds the optimizer, in train mode.
    pub fn new(config: C) -> Result<Self> {
        config.validate()?;
        Ok(ScheduleFree {
            config,
            states: StateStore::default(),
            k: 0,
            lr_max: -1.0,
            weight_sum: 0.0,
            mode: Mode::Train,
            exec: ExecOptions::default(),
        })
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.k
    }

    /// The typed configuration.
    pub fn typed_config(&self) -> &C {
        &self.config
    }
}

/// The registry entry of a schedule-free optimizer.
pub fn spec<C: ScheduleFreeRule>() -> OptimizerSpec {
    OptimizerSpec::of_config::<C>(|v| Ok(Box::new(ScheduleFree::new(C::from_json(v)?)?)))
}

impl<C: ScheduleFreeRule> Optimizer for ScheduleFree<C> {
    super::config_methods!(C, config);

    fn step(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        if self.mode == Mode::Eval {
            return Err(Error::Input(format!(
                "{}: step called in eval mode; call set_mode(Mode::Train, ...) first \
                 (the parameters hold x, not y)",
                C::NAME
            )));
        }
        crate::tensor::check_params(params)?;
        for p in params.iter() {
            self.states.check(p.name, p.numel())?;
        }
        let c = &self.config;
        let k = self.k;
        let lr = c.step_lr(k);
        let lr_max = lr.max(self.lr_max);
        let weight = ((k + 1) as f64).powf(c.r()) * lr_max.powf(c.weight_lr_power());
        let weight_sum = self.weight_sum + weight;
        let ckp1 = if weight_sum == 0.0 {
            0.0
        } else {
            weight / weight_sum
        };
        let s = SfStep { k, lr, ckp1 };
        let exec = self.exec;
        let parallel = exec.fused && exec.resolved_threads() > 1;
        let states = &mut self.states;
        exec::run_step(&exec, || {
            exec::for_each_param(parallel, params, states, |p, st| {
                if !st.z.is_allocated() {
                    st.z = StateTensor::from_slice(p.value);
                }
                st.step += 1;
                c.update(&s, p, st);
                Ok(())
            })
        })??;
        self.lr_max = lr_max;
        self.weight_sum = weight_sum;
        self.k += 1;
        Ok(())
    }

    fn state_dict(&self) -> StateDict {
        let mut d = self.states.state_dict();
        d.scalars.insert("step".into(), self.k as f64);
        d.scalars.insert("lr_max".into(), self.lr_max);
        d.scalars.insert("weight_sum".into(), self.weight_sum);
        d.scalars
            .insert("train_mode".into(), (self.mode == Mode::Train) as u8 as f64);
        d
    }

    fn load_state_dict(&mut self, dict: &StateDict) -> Result<()> {
        let get = |key: &str| {
            dict.scalars
                .get(key)
                .copied()
                .ok_or_else(|| Error::Input(format!("state has no '{key}' entry")))
        };
        let k = dict.step()?;
        let lr_max = get("lr_max")?;
        let weight_sum = get("weight_sum")?;
        for (key, x) in [("lr_max", lr_max), ("weight_sum", weight_sum)] {
            if !x.is_finite() {
                return Err(Error::Input(format!("state '{key}': invalid value {x}")));
            }
        }
        let mode = mode_of(get("train_mode")?)?;
        let mut states = StateStore::default();
        states.load_state_dict(dict)?;
        self.states = states;
        self.k = k;
        self.lr_max = lr_max;
        self.weight_sum = weight_sum;
        self.mode = mode;
        Ok(())
    }

    fn state_buffer(&self, param: &str, buffer: &str) -> Option<&[f32]> {
        self.states.buffer(param, buffer)
    }

    /// Threads (in parallel over parameters; the values do not depend on
    /// the count); the state stays f32.
    fn set_exec_options(&mut self, exec: ExecOptions) -> Result<()> {
        exec.validate(C::NAME, false)?;
        self.exec = exec;
        Ok(())
    }

    fn state_buffer_names(&self) -> Option<&'static [&'static str]> {
        Some(ScheduleFreeState::BUFFERS)
    }

    fn swap_state(
        &mut self,
        param: &str,
        numel: usize,
        steps: u64,
        buffers: &mut [StateTensor],
    ) -> Result<()> {
        self.states.swap(C::NAME, param, numel, steps, buffers)
    }

    fn set_step_count(&mut self, steps: u64) -> Result<()> {
        self.k = steps;
        Ok(())
    }

    /// `lr_max`, `weight_sum` and `train_mode` (1 in train mode, 0 in eval
    /// mode), as the reference keeps them in its parameter groups.
    fn global_state_names(&self) -> &'static [&'static str] {
        &["lr_max", "weight_sum", "train_mode"]
    }

    fn global_state(&self) -> Vec<f64> {
        vec![self.lr_max, self.weight_sum, (self.mode == Mode::Train) as u8 as f64]
    }

    fn set_global_state(&mut self, values: &[f64]) -> Result<()> {
        super::prodigy::check_globals(C::NAME, self.global_state_names(), values)?;
        let mode = mode_of(values[2])?;
        for (key, x) in [("lr_max", values[0]), ("weight_sum", values[1])] {
            if !x.is_finite() {
                return Err(Error::Input(format!("{}: state '{key}': invalid value {x}", C::NAME)));
            }
        }
        self.lr_max = values[0];
        self.weight_sum = values[1];
        self.mode = mode;
        Ok(())
    }

    fn set_mode(&mut self, mode: Mode, params: &mut [ParamMut<'_>]) -> Result<()> {
        if mode == self.mode {
            return Ok(());
        }
        for p in params.iter() {
            if let Some(st) = self.states.peek(p.name) {
                if st.z.is_allocated() && st.z.len() != p.numel() {
                    return Err(Error::Shape(format!(
                        "{}: parameter '{}' has {} values, its state {}",
                        C::NAME,
                        p.name,
                        p.numel(),
                        st.z.len()
                    )));
                }
            }
        }
        let m = self.config.momentum();
        let w = match mode {
            Mode::Eval => (1.0 - 1.0 / m) as f32,
            Mode::Train => (1.0 - m) as f32,
        };
        for p in params.iter_mut() {
            if let Some(st) = self.states.peek(p.name) {
                if st.z.is_allocated() {
                    for (x, &z) in p.value.iter_mut().zip(st.z.as_slice()) {
                        *x = lerp(*x, z, w);
                    }
                }
            }
        }
        self.mode = mode;
        Ok(())
    }
}

/// The mode saved as `train_mode`: 1 train, 0 eval.
fn mode_of(train_mode: f64) -> Result<Mode> {
    if train_mode == 1.0 {
        Ok(Mode::Train)
    } else if train_mode == 0.0 {
        Ok(Mode::Eval)
    } else {
        Err(Error::Input(format!("state 'train_mode': invalid value {train_mode}")))
    }
}

/// The [`ScheduleFreeRule`] accessors of the fields every schedule-free
/// configuration has (`lr`, `warmup_steps`, `r`, `weight_lr_power`).
macro_rules! schedule_fields {
    () => {
        fn lr(&self) -> f64 {
            self.lr
        }
        fn warmup_steps(&self) -> u64 {
            self.warmup_steps
        }
        fn r(&self) -> f64 {
            self.r
        }
        fn weight_lr_power(&self) -> f64 {
            self.weight_lr_power
        }
    };
}

/// Checks the averaging weight's hyperparameters of optimizer `n`.
fn validate_weighting(n: &str, r: f64, weight_lr_power: f64) -> Result<()> {
    v::finite(n, "r", r)?;
    v::finite(n, "weight_lr_power", weight_lr_power)
}

/// Hyperparameters of `schedulefree.AdamWScheduleFree`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWScheduleFree {
    /// Learning rate (default 0.0025).
    pub lr: f64,
    /// Interpolation momentum and second-moment decay (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Added to the bias-corrected sqrt(v) (default 1e-8).
    pub eps: f64,
    /// Weight decay at y, added to the normalized gradient (default 0).
    pub weight_decay: f64,
    /// Linear warmup steps (default 0).
    pub warmup_steps: u64,
    /// Polynomial weighting power of the average (default 0).
    pub r: f64,
    /// Power of lr_max in the averaging weight (default 2).
    pub weight_lr_power: f64,
}

impl Default for AdamWScheduleFree {
    fn default() -> Self {
        AdamWScheduleFree {
            lr: 0.0025,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.0,
            warmup_steps: 0,
            r: 0.0,
            weight_lr_power: 2.0,
        }
    }
}

impl OptimizerConfig for AdamWScheduleFree {
    const NAME: &'static str = "adamw_schedulefree";
    const REFERENCE: &'static str = "schedulefree.AdamWScheduleFree (schedulefree 1.4.1)";
    const PAPER: &'static str =
        "Defazio et al., The Road Less Scheduled, NeurIPS 2024 (arXiv:2405.15682)";
    const SUMMARY: &'static str =
        "AdamW without a learning-rate schedule: interpolated averaging of the iterates";

    fn validate(&self) -> Result<()> {
        let n = Self::NAME;
        crate::checks!(self, non_negative(lr), betas(betas))?;
        if self.betas[0] == 0.0 {
            return Err(Error::hparam(
                n,
                "betas[0]",
                0,
                "must be in (0, 1): the eval switch divides by it",
            ));
        }
        crate::checks!(self, non_negative(eps, weight_decay))?;
        validate_weighting(n, self.r, self.weight_lr_power)
    }
}

impl ScheduleFreeRule for AdamWScheduleFree {
    schedule_fields!();
    fn momentum(&self) -> f64 {
        self.betas[0]
    }

    fn update(&self, s: &SfStep, p: &mut ParamMut<'_>, st: &mut ScheduleFreeState) {
        let n = p.numel();
        if !st.exp_avg_sq.is_allocated() {
            st.exp_avg_sq = StateTensor::zeros(n);
        }
        let [beta1, beta2] = self.betas;
        let b2 = beta2 as f32;
        let w2 = (1.0 - beta2) as f32;
        let bc2 = bias_correction(beta2, s.k + 1) as f32;
        let eps = self.eps as f32;
        let wd = self.weight_decay as f32;
        let ckp1 = s.ckp1 as f32;
        let y_coef = (s.lr * (beta1 * (1.0 - s.ckp1) - 1.0)) as f32;
        let lr = s.lr as f32;
        let z = st.z.as_mut_slice();
        let v = st.exp_avg_sq.as_mut_slice();
        for i in 0..n {
            let g = p.grad[i];
            v[i] = v[i] * b2 + w2 * g * g;
            let denom = (v[i] / bc2).sqrt() + eps;
            let mut d = g / denom;
            let y = &mut p.value[i];
            if wd != 0.0 {
                d += wd * *y;
            }
            *y = lerp(*y, z[i], ckp1);
            *y += y_coef * d;
            z[i] -= lr * d;
        }
    }
}

/// Hyperparameters of `schedulefree.SGDScheduleFree`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgdScheduleFree {
    /// Learning rate (default 1.0).
    pub lr: f64,
    /// Interpolation momentum, in (0, 1) (default 0.9).
    pub momentum: f64,
    /// Weight decay at y, added to the gradient (default 0).
    pub weight_decay: f64,
    /// Linear warmup steps (default 0).
    pub warmup_steps: u64,
    /// Polynomial weighting power of the average (default 0).
    pub r: f64,
    /// Power of lr_max in the averaging weight (default 2).
    pub weight_lr_power: f64,
}

impl Default for SgdScheduleFree {
    fn default() -> Self {
        SgdScheduleFree {
            lr: 1.0,
            momentum: 0.9,
            weight_decay: 0.0,
            warmup_steps: 0,
            r: 0.0,
            weight_lr_power: 2.0,
        }
    }
}

impl OptimizerConfig for SgdScheduleFree {
    const NAME: &'static str = "sgd_schedulefree";
    const REFERENCE: &'static str = "schedulefree.SGDScheduleFree (schedulefree 1.4.1)";
    const PAPER: &'static str =
        "Defazio et al., The Road Less Scheduled, NeurIPS 2024 (arXiv:2405.15682)";
    const SUMMARY: &'static str =
        "SGD without a learning-rate schedule: interpolated averaging of the iterates";

    fn validate(&self) -> Result<()> {
        let n = Self::NAME;
        crate::checks!(self, non_negative(lr, weight_decay))?;
        if !(self.momentum > 0.0 && self.momentum < 1.0) {
            return Err(Error::hparam(
                n,
                "momentum",
                self.momentum,
                "must be in (0, 1)",
            ));
        }
        validate_weighting(n, self.r, self.weight_lr_power)
    }
}

impl ScheduleFreeRule for SgdScheduleFree {
    schedule_fields!();
    fn momentum(&self) -> f64 {
        self.momentum
    }

    fn update(&self, s: &SfStep, p: &mut ParamMut<'_>, st: &mut ScheduleFreeState) {
        let wd = self.weight_decay as f32;
        let ckp1 = s.ckp1 as f32;
        let y_coef = (s.lr * (self.momentum * (1.0 - s.ckp1) - 1.0)) as f32;
        let lr = s.lr as f32;
        let z = st.z.as_mut_slice();
        for ((y, &g), z) in p.value.iter_mut().zip(p.grad.iter()).zip(z.iter_mut()) {
            let mut d = g;
            if wd != 0.0 {
                d += wd * *y;
            }
            *y = lerp(*y, *z, ckp1);
            *y += y_coef * d;
            *z -= lr * d;
        }
    }
}
