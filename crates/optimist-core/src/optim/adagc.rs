//! AdaGC: Adam on gradients clipped per tensor against an EMA of each
//! tensor's past clipped norms (global clipping during warm-up).
//!
//! **Reference:** `pytorch_optimizer.AdaGC` (pytorch-optimizer 4.1.0),
//! per-parameter path. **Paper:** Wang, Li, Chen, Zeng, Yang, Yu, Ma & Shen,
//! "AdaGC: Improving Training Stability for Large Language Model
//! Pretraining" (arXiv:2502.11034).
//!
//! Update rule at step t, for each tensor (the reference's order):
//! ```text
//! g <- -g                                        if maximize
//! p <- p * (1 - lr * wd)                         if weight_decouple (1 - wd if fixed_decay)
//! g <- g + wd * p                                otherwise (L2; the clipping sees this g)
//! s <- AdaGC factor of the tensor (see crate::stages::adagc), updating gamma
//! g_hat <- s * g
//! m <- lerp(m, g_hat, 1 - beta1)
//! v <- beta2 * v + (1 - beta2) * g_hat^2
//! p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//! ```
//! The clipping rule is [`crate::stages::AdaGcConfig::clip`], the same code
//! as the `adagc` gradient stage: with decoupled (or no) weight decay this
//! optimizer equals `Chain::new(adamw).with(AdaGcClip)`, value for value.
//!
//! **Warm-up global norm with L2 decay.** The reference adds the L2 term to
//! each gradient in place, tensor by tensor, and then (when decay is
//! coupled) recomputes the global norm for each tensor in warm-up; so the
//! norm used for tensor i counts the decayed gradients of tensors 1..i and
//! the raw gradients of tensors i+1..n. This is reproduced. With decoupled or
//! no decay, the global norm is that of the raw gradients.
//!
//! Defaults: lr = 1e-3, betas = (0.9, 0.999), beta = 0.98, lambda_abs = 1.0,
//! lambda_rel = 1.05, warmup_steps = 100, weight_decay = 0.1,
//! weight_decouple = true, fixed_decay = false, eps = 1e-8, maximize = false.
//! State: `exp_avg`, `exp_avg_sq` per parameter, the running norm of each
//! tensor as a one-value buffer `gamma` (the reference's 0-dim tensor, set
//! at the tensor's first step), and `step`. The buffers can live in
//! caller-owned memory (the PyTorch front's tensors). A state dict of the
//! earlier form, with the norms as scalars `gamma/<param>`, still loads.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::math::{bias_correction, lerp, WeightDecay};
use crate::optimizer::Optimizer;
use crate::rule::{ExecOptions, OptimizerConfig};
use crate::optimizer::OptimizerSpec;
use crate::stages::adagc::gamma_from_scalars;
use crate::stages::AdaGcConfig;
use crate::state::{ParamState, StateDict, StateEntry, StateStore};
use crate::tensor::{ParamMut, StateTensor};

crate::param_state! {
    /// AdaGC state: Adam's moments and the tensor's running norm.
    pub struct AdaGcState { exp_avg, exp_avg_sq; unsized: gamma }
}

/// Hyperparameters of `pytorch_optimizer.AdaGC`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaGc {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Adam's moment decay rates (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Smoothing of the per-tensor norm EMA (default 0.98).
    pub beta: f64,
    /// Global norm bound during warm-up (default 1.0).
    pub lambda_abs: f64,
    /// Allowed ratio of a tensor's norm to its EMA (default 1.05).
    pub lambda_rel: f64,
    /// Steps of global clipping (default 100).
    pub warmup_steps: u64,
    /// Weight decay (default 0.1).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise.
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by lr (default false).
    pub fixed_decay: bool,
    /// Norm floor and Adam's denominator eps (default 1e-8).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for AdaGc {
    fn default() -> Self {
        AdaGc {
            lr: 1e-3,
            betas: [0.9, 0.999],
            beta: 0.98,
            lambda_abs: 1.0,
            lambda_rel: 1.05,
            warmup_steps: 100,
            weight_decay: 0.1,
            weight_decouple: true,
            fixed_decay: false,
            eps: 1e-8,
            maximize: false,
        }
    }
}

impl AdaGc {
    /// The clipping part of the configuration.
    pub fn clip_rule(&self) -> AdaGcConfig {
        AdaGcConfig {
            beta: self.beta,
            lambda_abs: self.lambda_abs,
            lambda_rel: self.lambda_rel,
            warmup_steps: self.warmup_steps,
            eps: self.eps,
        }
    }

    /// The registry entry (AdaGC keeps per-tensor scalars, so it has its own
    /// [`Optimizer`] rather than the generic engine).
    pub fn spec() -> OptimizerSpec {
        OptimizerSpec::of_config::<AdaGc>(|v| {
            Ok(Box::new(AdaGcOptimizer::new(AdaGc::from_json(v)?)?))
        })
    }
}

impl OptimizerConfig for AdaGc {
    const NAME: &'static str = "adagc";
    const REFERENCE: &'static str = "pytorch_optimizer.AdaGC (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Wang et al., AdaGC: Improving Training Stability for Large Language Model Pretraining (arXiv:2502.11034)";
    const SUMMARY: &'static str =
        "Adam on gradients clipped per tensor against an EMA of past clipped norms";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas))?;
        self.clip_rule().validate_as(Self::NAME)?;
        crate::checks!(self, non_negative(weight_decay))
    }
}

/// The AdaGC optimizer: configuration, Adam state, running norms.
#[derive(Debug, Clone)]
pub struct AdaGcOptimizer {
    config: AdaGc,
    states: StateStore<AdaGcState>,
    step: u64,
}

impl AdaGcOptimizer {
    /// Validates `config` and builds the optimizer.
    pub fn new(config: AdaGc) -> Result<Self> {
        config.validate()?;
        Ok(AdaGcOptimizer {
            config,
            states: StateStore::default(),
            step: 0,
        })
    }

    /// The running norm of parameter `name`, once seen.
    pub fn gamma(&self, name: &str) -> Option<f32> {
        let g = &self.states.peek(name)?.gamma;
        g.is_allocated().then(|| g.to_vec()[0])
    }
}

impl Optimizer for AdaGcOptimizer {
    super::config_methods!(AdaGc, config);

    fn step(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        self.states.check_params(params)?;
        let cfg = &self.config;
        let t = self.step + 1;
        let rule = cfg.clip_rule();
        let decay_lr = if cfg.fixed_decay { 1.0 } else { cfg.lr };
        let wd = WeightDecay::new(cfg.weight_decay, cfg.weight_decouple, decay_lr);
        let sgn = if cfg.maximize { -1.0f32 } else { 1.0 };

        // Norm reductions first: raw and (with L2 decay) decayed gradients.
        let coupled = wd.mode() == crate::math::DecayMode::Coupled;
        let mut raw_sq = Vec::with_capacity(params.len());
        let mut dec_sq = Vec::with_capacity(params.len());
        for p in params.iter() {
            let raw: f64 = p.grad.iter().map(|&g| (g as f64) * (g as f64)).sum();
            let dec = if coupled {
                p.value
                    .iter()
                    .zip(p.grad.iter())
                    .map(|(&x, &g)| {
                        let mut x = x;
                        let d = wd.apply(&mut x, sgn * g) as f64;
                        d * d
                    })
                    .sum()
            } else {
                raw
            };
            raw_sq.push(raw);
            dec_sq.push(dec);
        }
        let raw_total: f64 = raw_sq.iter().sum();

        let [beta1, beta2] = cfg.betas;
        let w1 = (1.0 - beta1) as f32;
        let b2 = beta2 as f32;
        let w2 = (1.0 - beta2) as f32;
        let step_size = (cfg.lr / bias_correction(beta1, t)) as f32;
        let bc2_sqrt = bias_correction(beta2, t).sqrt() as f32;
        let eps = cfg.eps as f32;
        for (i, p) in params.iter_mut().enumerate() {
            let global = || {
                if coupled {
                    (dec_sq[..=i].iter().sum::<f64>() + raw_sq[i + 1..].iter().sum::<f64>()).sqrt()
                } else {
                    raw_total.sqrt()
                }
            };
            let n = p.numel();
            let st = self.states.get(p.name, n)?;
            if !st.exp_avg.is_allocated() {
                st.exp_avg = StateTensor::zeros(n);
                st.exp_avg_sq = StateTensor::zeros(n);
            }
            let mut gamma = match st.gamma.len() {
                0 => None,
                1 => Some(st.gamma.as_mut_slice()[0]),
                k => {
                    return Err(Error::Shape(format!(
                        "adagc: state of '{}': buffer 'gamma' holds {k} values, expected 1",
                        p.name
                    )))
                }
            };
            let s = rule.clip(t, &mut gamma, dec_sq[i].sqrt(), global);
            if let Some(g) = gamma {
                if !st.gamma.is_allocated() {
                    st.gamma = StateTensor::zeros(1);
                }
                st.gamma.as_mut_slice()[0] = g;
            }
            st.step += 1;
            let m = st.exp_avg.as_mut_slice();
            let v = st.exp_avg_sq.as_mut_slice();
            for j in 0..n {
                let x = &mut p.value[j];
                let g = wd.apply(x, sgn * p.grad[j]) * s;
                m[j] = lerp(m[j], g, w1);
                v[j] = v[j] * b2 + w2 * g * g;
                let denom = v[j].sqrt() / bc2_sqrt + eps;
                *x += -step_size * (m[j] / denom);
            }
        }
        self.step = t;
        Ok(())
    }

    fn state_dict(&self) -> StateDict {
        let mut d = self.states.state_dict();
        d.scalars.insert("step".into(), self.step as f64);
        d
    }

    fn load_state_dict(&mut self, dict: &StateDict) -> Result<()> {
        // The earlier form kept the norms as scalars `gamma/<param>`.
        let (gamma, mut rest) = gamma_from_scalars(dict)?;
        for (param, g) in gamma {
            if rest.tensors.iter().any(|e| e.param == param && e.name == "gamma") {
                return Err(Error::Input(format!(
                    "adagc: state of '{param}': 'gamma' given twice (buffer and scalar)"
                )));
            }
            rest.tensors.push(StateEntry {
                param,
                name: "gamma".into(),
                values: vec![g],
            });
        }
        for e in &rest.tensors {
            if e.name == "gamma" && e.values.len() != 1 {
                return Err(Error::Shape(format!(
                    "adagc: state of '{}': buffer 'gamma' holds {} values, expected 1",
                    e.param,
                    e.values.len()
                )));
            }
        }
        let step = rest.step()?;
        let mut states = StateStore::default();
        states.load_state_dict(&rest)?;
        self.states = states;
        self.step = step;
        Ok(())
    }

    fn state_buffer(&self, param: &str, buffer: &str) -> Option<&[f32]> {
        self.states.buffer(param, buffer)
    }

    fn state_buffer_names(&self) -> Option<&'static [&'static str]> {
        Some(<AdaGcState as ParamState>::BUFFERS)
    }

    fn swap_state(
        &mut self,
        param: &str,
        numel: usize,
        steps: u64,
        buffers: &mut [StateTensor],
    ) -> Result<()> {
        if let Some(g) = buffers.get(2) {
            if g.is_allocated() && g.len() != 1 {
                return Err(Error::Shape(format!(
                    "adagc: state of '{param}': buffer 'gamma' holds {} values, expected 1",
                    g.len()
                )));
            }
        }
        self.states.swap(AdaGc::NAME, param, numel, steps, buffers)
    }

    fn set_step_count(&mut self, steps: u64) -> Result<()> {
        self.step = steps;
        Ok(())
    }

    /// Checks the options; AdaGC steps on the calling thread (its norms
    /// and updates do not depend on a thread count) and keeps f32 state.
    fn set_exec_options(&mut self, exec: ExecOptions) -> Result<()> {
        exec.validate(AdaGc::NAME, false)
    }
}
