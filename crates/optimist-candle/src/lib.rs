//! # optimist-candle
//!
//! Every optimist optimizer as a [`candle_nn::Optimizer`].
//!
//! ```no_run
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{Optimizer, VarBuilder, VarMap};
//! use optimist_candle::OptimistOptimizer;
//! use serde_json::json;
//!
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
//! let w = vb.get((4, 3), "fc.weight")?;
//! let mut opt = OptimistOptimizer::from_varmap(&varmap, "adamw", &json!({"lr": 1e-3}))?;
//! let x = Tensor::ones((2, 4), DType::F32, &Device::Cpu)?;
//! let loss = x.matmul(&w)?.sqr()?.mean_all()?;
//! opt.backward_step(&loss)?;
//! # Ok::<(), candle_core::Error>(())
//! ```
//!
//! **Zero copy, in place.** A step write-locks each parameter and its
//! gradient through candle's in-place custom ops ([`inplace`]) and hands
//! their f32 storage to [`optimist_core::Optimizer::step`] as
//! [`ParamMut`] slices. The update rule writes the parameter in place; its
//! state (moments, ...) lives in optimist's own buffers. No tensor is
//! allocated per step (candle_nn's AdamW builds about fifteen temporaries
//! per parameter per step).
//!
//! **Supported tensors.** f32, bf16 and f16 parameters on the CPU. Any
//! other dtype or device is an error when the optimizer is built: nothing
//! is copied to the host and back behind the caller's back. A bf16/f16
//! parameter keeps f32 optimizer state: each step its values and gradient
//! are widened into f32 buffers owned by the adapter (allocated once), the
//! rule updates them, and the result is rounded back into the parameter's
//! storage (round to nearest, ties to even). Curvature estimates need f32
//! parameters.
//!
//! **Names.** Parameters are named by their VarMap path and kept sorted by
//! name, so parameter groups (selected by name pattern) and checkpoints are
//! reproducible. Gradient-less parameters are skipped in a step, as torch
//! skips parameters whose `.grad` is None.
//!
//! **Curvature.** Rules whose registry facts say they consume a Hessian
//! diagonal (Sophia-H, AdaHessian) get a Hutchinson estimate made by finite
//! differences of gradients ([`curvature`]) at steps 1, 1 + k, 1 + 2k, ...
//! (k = the rule's `update_period`); call
//! [`OptimistOptimizer::backward_step_with`] with a closure that recomputes
//! the loss on the current batch. Rules that consume a Gauss-Newton
//! diagonal (SophiaG) get the Gauss-Newton-Bartlett estimate at steps
//! k + 1, 2k + 1, ... (k = 10, the official loop's `hess_interval`; see
//! [`OptimistOptimizer::set_curvature`]), as the official training loop
//! calls `update_hessian()` after every k-th step: the gradient `g_hat` of
//! the mini-batch loss on labels sampled from the model's own predictive
//! distribution (one categorical draw per example or token from the softmax
//! of the logits), drawn from the adapter's seeded generator; call
//! [`OptimistOptimizer::backward_step_with_sampled`] with the loss closure,
//! a closure that computes the loss on sampled labels, and the number of
//! predictions B the loss averages over. SophiaG folds `g_hat * g_hat` into
//! its curvature EMA and multiplies by its `bs` in the step, so the batch's
//! B must equal `bs` (an error otherwise): B is applied once. A step that
//! needs an estimate and has none is an error, not a silent skip.
//!
//! **Closures (L-BFGS).** Optimizers that re-evaluate the objective within
//! a step step through [`OptimistOptimizer::step_with_closure`], with a
//! closure that computes the loss from the variables' current values; the
//! adapter sets the variables and backpropagates at every evaluation.

pub use optimist_core::spec as build;
pub mod checkpoint;
pub mod curvature;
pub mod inplace;
pub mod mode;
pub mod rng;

use std::time::{Duration, Instant};

use candle_core::{backprop::GradStore, DType, Tensor, Var};
use candle_nn::VarMap;
use optimist_core::{Optimizer, ParamMut};
use serde_json::Value;

use inplace::SliceMut;

pub use optimist_core::spec::{build_optimizer, param_groups_from_json, selector_from_json, PARAM_GROUPS};
pub use curvature::{CurvatureConfig, CurvatureKind, HvpMethod, Probe};

fn wrap(e: optimist_core::Error) -> candle_core::Error {
    candle_core::Error::msg(e.to_string())
}

/// Configuration for [`candle_nn::Optimizer::new`]: a registry name (or
/// `param_groups`) and its hyperparameters as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterConfig {
    /// Registry name, e.g. `adamw`.
    pub optimizer: String,
    /// Hyperparameters (missing keys take the reference's defaults).
    pub hparams: Value,
}

impl AdapterConfig {
    /// `optimizer` with `hparams`.
    pub fn new(optimizer: impl Into<String>, hparams: Value) -> Self {
        AdapterConfig {
            optimizer: optimizer.into(),
            hparams,
        }
    }
}

/// An optimist optimizer driving candle variables.
pub struct OptimistOptimizer {
    names: Vec<String>,
    grad_labels: Vec<String>,
    vars: Vec<Var>,
    shapes: Vec<Vec<usize>>,
    optimizer: Box<dyn Optimizer>,
    curvature: Option<CurvatureConfig>,
    probe_rng: rng::Rng,
    pending_hessian: Option<Vec<Vec<f32>>>,
    steps: u64,
    deferred_error: Option<String>,
    step_time: Duration,
    /// Per parameter: f32 value and gradient buffers for bf16/f16
    /// parameters (empty for f32 ones).
    widened: Vec<(Vec<f32>, Vec<f32>)>,
}

impl std::fmt::Debug for OptimistOptimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptimistOptimizer")
            .field("optimizer", &self.optimizer.name())
            .field("params", &self.names)
            .field("steps", &self.steps)
            .finish()
    }
}

/// Which curvature estimate an optimizer needs: a Hessian diagonal
/// estimate ([`CurvatureKind::HessianDiagonal`]) when a rule named in its
/// configuration (groups and wrappers included) says so in the registry
/// ([`optimist_core::registry::RuleFacts`]), else a Gauss-Newton diagonal
/// estimate ([`CurvatureKind::GaussNewtonBartlett`]) when a rule consumes
/// that, else none. The period is the rule's `update_period`
/// hyperparameter where it has one, else 10 (the official SophiaG loop's
/// `hess_interval`).
pub fn curvature_for(opt: &dyn Optimizer) -> Option<CurvatureConfig> {
    curvature_kinds(opt).first().map(|&kind| {
        let mut cfg = CurvatureConfig {
            kind,
            ..CurvatureConfig::default()
        };
        if let Some(k) = opt.hparam("update_period").filter(|k| *k >= 1.0) {
            cfg.update_period = k as u64;
        }
        if let Some(n) = opt.hparam("num_samples").filter(|n| *n >= 1.0) {
            cfg.num_samples = n as usize;
        }
        cfg
    })
}

/// The kinds of curvature the rules named in `opt`'s configuration
/// consume, Hessian diagonal first.
fn curvature_kinds(opt: &dyn Optimizer) -> Vec<CurvatureKind> {
    fn names_in(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    if k == "optimizer" {
                        if let Some(s) = x.as_str() {
                            out.push(s.to_string());
                        }
                    }
                    names_in(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| names_in(x, out)),
            _ => {}
        }
    }
    let mut names = vec![opt.name().to_string()];
    names_in(&opt.config(), &mut names);
    let consumes = |c: optimist_core::optimizer::Curvature| {
        names.iter().any(|n| {
            optimist_core::registry::find(n).is_some_and(|s| s.facts.curvature == c)
        })
    };
    let mut kinds = Vec::new();
    if consumes(optimist_core::optimizer::Curvature::HessianDiagonal) {
        kinds.push(CurvatureKind::HessianDiagonal);
    }
    if consumes(optimist_core::optimizer::Curvature::GaussNewtonDiagonal) {
        kinds.push(CurvatureKind::GaussNewtonBartlett);
    }
    kinds
}

/// The generator of a curvature configuration: Hutchinson's probes from
/// `Rng::new(seed)` (as before the Gauss-Newton estimate existed), sampled
/// labels from a stream derived from the seed.
fn curvature_rng(config: Option<&CurvatureConfig>) -> rng::Rng {
    match config {
        Some(c) if c.kind == CurvatureKind::GaussNewtonBartlett => {
            rng::Rng::derive(c.seed, "sampled-labels")
        }
        Some(c) => rng::Rng::new(c.seed),
        None => rng::Rng::new(0),
    }
}

impl OptimistOptimizer {
    /// Named variables (sorted by name here) driven by `optimizer`.
    pub fn from_named(
        vars: impl IntoIterator<Item = (String, Var)>,
        optimizer: Box<dyn Optimizer>,
    ) -> candle_core::Result<Self> {
        let mut named: Vec<(String, Var)> = vars.into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        for w in named.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(candle_core::Error::msg(format!(
                    "two parameters are named '{}'",
                    w[0].0
                )));
            }
        }
        for (name, var) in &named {
            inplace::check_tensor_dtypes(&format!("parameter '{name}'"), var.as_tensor(), true)
                .map_err(candle_core::Error::msg)?;
        }
        if curvature_kinds(optimizer.as_ref()).len() > 1 {
            return Err(candle_core::Error::msg(format!(
                "{} combines rules that consume a Hessian diagonal and a Gauss-Newton diagonal; \
                 optimist-candle makes one kind of curvature estimate per optimizer",
                optimizer.name()
            )));
        }
        let curvature = curvature_for(optimizer.as_ref());
        if curvature.is_some() {
            if let Some((name, var)) = named.iter().find(|(_, v)| v.dtype() != DType::F32) {
                return Err(candle_core::Error::msg(format!(
                    "parameter '{name}' has dtype {:?}; {} needs curvature estimates, which optimist-candle makes for f32 parameters only",
                    var.dtype(),
                    optimizer.name()
                )));
            }
        }
        let widened = named
            .iter()
            .map(|(_, v)| match v.dtype() {
                DType::F32 => (Vec::new(), Vec::new()),
                _ => (vec![0.0; v.elem_count()], vec![0.0; v.elem_count()]),
            })
            .collect();
        let (names, vars): (Vec<String>, Vec<Var>) = named.into_iter().unzip();
        Ok(OptimistOptimizer {
            grad_labels: names.iter().map(|n| format!("gradient of '{n}'")).collect(),
            shapes: vars.iter().map(|v| v.dims().to_vec()).collect(),
            names,
            vars,
            optimizer,
            probe_rng: curvature_rng(curvature.as_ref()),
            curvature,
            pending_hessian: None,
            steps: 0,
            deferred_error: None,
            step_time: Duration::ZERO,
            widened,
        })
    }

    /// Every variable of `varmap`, named by its path, driven by `optimizer`.
    pub fn from_varmap_with(
        varmap: &VarMap,
        optimizer: Box<dyn Optimizer>,
    ) -> candle_core::Result<Self> {
        let named: Vec<(String, Var)> = {
            let data = varmap
                .data()
                .lock()
                .map_err(|_| candle_core::Error::msg("VarMap lock poisoned"))?;
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        Self::from_named(named, optimizer)
    }

    /// Every variable of `varmap` driven by optimizer `name` (a registry
    /// name or `param_groups`) with JSON `hparams`.
    pub fn from_varmap(varmap: &VarMap, name: &str, hparams: &Value) -> candle_core::Result<Self> {
        let opt = build_optimizer(name, hparams).map_err(wrap)?;
        Self::from_varmap_with(varmap, opt)
    }

    /// Parameter names, in step order.
    pub fn param_names(&self) -> &[String] {
        &self.names
    }

    /// The optimist optimizer (configuration, hyperparameters, state).
    pub fn inner(&self) -> &dyn Optimizer {
        self.optimizer.as_ref()
    }

    /// The optimist optimizer, mutably (`set_hparam`, `load_state_dict`).
    pub fn inner_mut(&mut self) -> &mut dyn Optimizer {
        self.optimizer.as_mut()
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Wall time spent in parameter updates (locking and the update rule;
    /// no forward, backward or curvature estimate).
    pub fn update_time(&self) -> Duration {
        self.step_time
    }

    /// Bytes of optimizer state (every state buffer; f32 values).
    pub fn state_bytes(&self) -> usize {
        self.optimizer
            .state_dict()
            .tensors
            .iter()
            .map(|e| e.values.len() * std::mem::size_of::<f32>())
            .sum()
    }

    /// The curvature estimate in use, if the optimizer consumes one.
    pub fn curvature(&self) -> Option<&CurvatureConfig> {
        self.curvature.as_ref()
    }

    /// Sets (or with `None` turns off) the curvature estimate, and reseeds
    /// its generator from `config.seed` (probes: `Rng::new(seed)`; sampled
    /// labels: `Rng::derive(seed, "sampled-labels")`). Without one, a
    /// curvature-consuming rule gets no estimate on any step. The kind
    /// should be the one [`curvature_for`] gives (the one the rule consumes).
    pub fn set_curvature(&mut self, config: Option<CurvatureConfig>) {
        if config.is_some() {
            self.probe_rng = curvature_rng(config.as_ref());
        }
        self.curvature = config;
    }

    /// Whether the next step wants a fresh curvature estimate: steps 1,
    /// 1 + k, 1 + 2k, ... for a Hessian diagonal (Sophia-H); k + 1, 2k + 1,
    /// ... for the Gauss-Newton diagonal (the official SophiaG loop updates
    /// its curvature after every k-th step).
    pub fn needs_curvature(&self) -> bool {
        match &self.curvature {
            Some(c) => {
                let k = c.update_period.max(1);
                self.steps.is_multiple_of(k)
                    && (c.kind == CurvatureKind::HessianDiagonal || self.steps > 0)
            }
            None => false,
        }
    }

    /// The kind of the configured curvature estimate, if any.
    fn curvature_kind(&self) -> Option<CurvatureKind> {
        self.curvature.as_ref().map(|c| c.kind)
    }

    /// The error for a step that needs an estimate and was given none.
    fn missing_estimate(&self, how: &str) -> candle_core::Error {
        let (what, make) = match self.curvature_kind() {
            Some(CurvatureKind::GaussNewtonBartlett) => (
                "a Gauss-Newton estimate",
                "use backward_step_with_sampled(loss closure, sampled-label loss closure, \
                 batch size) or estimate_gauss_newton before step",
            ),
            _ => (
                "a Hessian estimate",
                "use backward_step_with(loss closure) or estimate_curvature before step",
            ),
        };
        candle_core::Error::msg(format!(
            "{} needs {what} at step {}: {how}; {make}, or set_curvature(None)",
            self.optimizer.name(),
            self.steps + 1
        ))
    }

    /// Estimates the Hessian diagonal for the next step (Hutchinson, by
    /// finite differences; see [`curvature`]). `loss_fn` must compute the
    /// loss on the same batch as the gradients of the next step.
    ///
    /// An error for a rule that consumes a Gauss-Newton diagonal (use
    /// [`OptimistOptimizer::estimate_gauss_newton`]).
    pub fn estimate_curvature(
        &mut self,
        grads: Option<&GradStore>,
        loss_fn: &mut dyn FnMut() -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<()> {
        if self.curvature_kind() == Some(CurvatureKind::GaussNewtonBartlett) {
            return Err(candle_core::Error::msg(format!(
                "{} consumes a Gauss-Newton diagonal: estimate it with estimate_gauss_newton \
                 (sampled labels), not with Hutchinson's Hessian estimate",
                self.optimizer.name()
            )));
        }
        let cfg = self.curvature.clone().unwrap_or_default();
        let vars: Vec<&Var> = self.vars.iter().collect();
        let labels: Vec<String> = self
            .names
            .iter()
            .map(|n| format!("parameter '{n}'"))
            .collect();
        let est = curvature::hutchinson_diagonal(
            &vars,
            &labels,
            &cfg,
            &mut self.probe_rng,
            grads,
            loss_fn,
        )?;
        self.pending_hessian = Some(est);
        Ok(())
    }

    /// Estimates the Gauss-Newton diagonal for the next step with the
    /// Gauss-Newton-Bartlett estimator (Liu et al. 2023, SophiaG):
    /// `sampled_loss_fn(rng)` must compute the mini-batch loss, on the same
    /// batch as the gradients of the next step, with labels it samples from
    /// the model's predictive distribution using `rng` (the adapter's
    /// seeded generator, saved in checkpoints), as a mean over
    /// `batch_size` predictions (examples, or tokens of a language model).
    /// Its gradient `g_hat` gives the estimate `B * g_hat * g_hat` with B
    /// applied once: a rule with a `bs` hyperparameter (SophiaG, whose step
    /// multiplies its curvature by `bs` as the official code does) is
    /// handed `g_hat * g_hat`, and its `bs` must equal `batch_size` (an
    /// error naming both otherwise); a rule without one is handed
    /// `batch_size * g_hat * g_hat`.
    ///
    /// An error for a rule that consumes a Hessian diagonal (use
    /// [`OptimistOptimizer::estimate_curvature`]).
    pub fn estimate_gauss_newton(
        &mut self,
        sampled_loss_fn: &mut dyn FnMut(&mut rng::Rng) -> candle_core::Result<Tensor>,
        batch_size: usize,
    ) -> candle_core::Result<()> {
        if self.curvature_kind() == Some(CurvatureKind::HessianDiagonal) {
            return Err(candle_core::Error::msg(format!(
                "{} consumes a Hessian diagonal: estimate it with estimate_curvature \
                 (Hutchinson), not with the Gauss-Newton-Bartlett estimate",
                self.optimizer.name()
            )));
        }
        if batch_size == 0 {
            return Err(candle_core::Error::msg(
                "estimate_gauss_newton: batch_size must be at least 1 (the number of \
                 predictions the sampled-label loss averages over)",
            ));
        }
        let estimator = match self.optimizer.hparam("bs") {
            Some(bs) if bs != batch_size as f64 => {
                return Err(candle_core::Error::msg(format!(
                    "{}: its bs is {bs} but the sampled-label loss averages {batch_size} \
                     predictions; the Gauss-Newton-Bartlett estimate is bs * g_hat * g_hat \
                     with bs the batch size, so set bs to {batch_size}",
                    self.optimizer.name()
                )));
            }
            Some(_) => optimist_core::curvature::GaussNewtonBartlett::for_sophiag(),
            None => optimist_core::curvature::GaussNewtonBartlett::new(batch_size as f64)
                .map_err(wrap)?,
        };
        let vars: Vec<&Var> = self.vars.iter().collect();
        let est = curvature::gauss_newton_bartlett(
            &vars,
            &estimator,
            &mut self.probe_rng,
            sampled_loss_fn,
        )?;
        self.pending_hessian = Some(est);
        Ok(())
    }

    /// Computes the loss with `loss_fn`, its gradients, a curvature
    /// estimate when the rule wants one at this step, and takes the step.
    /// Returns the loss. This makes Hessian estimates only: a rule that
    /// consumes a Gauss-Newton diagonal (SophiaG) gets an error at a step
    /// that needs one (use [`OptimistOptimizer::backward_step_with_sampled`]).
    pub fn backward_step_with(
        &mut self,
        mut loss_fn: impl FnMut() -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<Tensor> {
        let loss = loss_fn()?;
        let grads = loss.backward()?;
        if self.needs_curvature() {
            if self.curvature_kind() == Some(CurvatureKind::GaussNewtonBartlett) {
                return Err(self.missing_estimate("backward_step_with has no sampled-label loss"));
            }
            self.estimate_curvature(Some(&grads), &mut loss_fn)?;
        }
        candle_nn::Optimizer::step(self, &grads)?;
        Ok(loss)
    }

    /// [`OptimistOptimizer::backward_step_with`] for any curvature: computes
    /// the loss with `loss_fn` and its gradients; when the rule wants an
    /// estimate at this step, a Hutchinson estimate from `loss_fn` (Hessian
    /// diagonal) or a Gauss-Newton-Bartlett estimate from `sampled_loss_fn`
    /// and `batch_size` (Gauss-Newton diagonal; see
    /// [`OptimistOptimizer::estimate_gauss_newton`]); then takes the step.
    /// `sampled_loss_fn` is called only for such an estimate. Returns the
    /// loss.
    pub fn backward_step_with_sampled(
        &mut self,
        mut loss_fn: impl FnMut() -> candle_core::Result<Tensor>,
        mut sampled_loss_fn: impl FnMut(&mut rng::Rng) -> candle_core::Result<Tensor>,
        batch_size: usize,
    ) -> candle_core::Result<Tensor> {
        let loss = loss_fn()?;
        let grads = loss.backward()?;
        if self.needs_curvature() {
            match self.curvature_kind() {
                Some(CurvatureKind::GaussNewtonBartlett) => {
                    self.estimate_gauss_newton(&mut sampled_loss_fn, batch_size)?
                }
                _ => self.estimate_curvature(Some(&grads), &mut loss_fn)?,
            }
        }
        candle_nn::Optimizer::step(self, &grads)?;
        Ok(loss)
    }

    /// One step of an optimizer that re-evaluates the objective, such as
    /// L-BFGS (`lbfgs`): `loss_fn` computes the loss (a scalar tensor) from
    /// the variables' current values. The optimizer sets the variables,
    /// calls `loss_fn` and backpropagates as often as its iterations and
    /// line search need ([`Optimizer::step_with_closure`]); other
    /// optimizers evaluate it once and step, as torch's
    /// `optimizer.step(closure)`. The variables end at the new values.
    /// Returns the loss of the first evaluation.
    ///
    /// Every variable takes part (one without a gradient in an evaluation
    /// gets a zero gradient, as L-BFGS's flat gradient in torch). The
    /// optimizer works on f32 copies of the values; bf16/f16 variables get
    /// them rounded to nearest at each evaluation and at the end. A rule
    /// that needs a curvature estimate at this step is an error (use
    /// [`OptimistOptimizer::backward_step_with`]).
    pub fn step_with_closure(
        &mut self,
        mut loss_fn: impl FnMut() -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<f64> {
        if let Some(e) = self.deferred_error.take() {
            return Err(candle_core::Error::msg(e));
        }
        if self.needs_curvature() {
            return Err(self.missing_estimate("step_with_closure does not make one"));
        }
        let flat = |t: &Tensor| -> candle_core::Result<Vec<f32>> {
            t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()
        };
        let mut values = self
            .vars
            .iter()
            .map(|v| flat(v.as_tensor()))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut grads: Vec<Vec<f32>> = values.iter().map(|v| vec![0.0; v.len()]).collect();
        let vars = &self.vars;
        let set = |var: &Var, v: &[f32]| -> candle_core::Result<()> {
            var.set(&Tensor::from_slice(v, var.dims(), var.device())?.to_dtype(var.dtype())?)
        };
        let mut closure = |ps: &mut [ParamMut<'_>]| -> optimist_core::Result<f64> {
            let mut eval = || -> candle_core::Result<f64> {
                for (var, p) in vars.iter().zip(ps.iter()) {
                    set(var, p.value)?;
                }
                let loss = loss_fn()?;
                if loss.elem_count() != 1 {
                    candle_core::bail!("the loss has shape {:?}, not one value", loss.dims());
                }
                let gs = loss.backward()?;
                for (var, p) in vars.iter().zip(ps.iter_mut()) {
                    match gs.get(var.as_tensor()) {
                        Some(g) => {
                            let g = flat(g)?;
                            if g.len() != p.grad.len() {
                                candle_core::bail!(
                                    "gradient of '{}' has {} values, the parameter {}",
                                    p.name,
                                    g.len(),
                                    p.grad.len()
                                );
                            }
                            p.grad.copy_from_slice(&g);
                        }
                        None => p.grad.fill(0.0),
                    }
                }
                loss.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>().map(|v| v[0])
            };
            eval().map_err(|e| optimist_core::Error::Input(format!("loss closure: {e}")))
        };
        let mut params: Vec<ParamMut<'_>> = values
            .iter_mut()
            .zip(grads.iter_mut())
            .enumerate()
            .map(|(i, (value, grad))| ParamMut {
                name: &self.names[i],
                shape: &self.shapes[i],
                value,
                grad,
                hessian: None,
            })
            .collect();
        let start = Instant::now();
        let result = self.optimizer.step_with_closure(&mut params, &mut closure);
        self.step_time += start.elapsed();
        drop(params);
        for (var, v) in vars.iter().zip(&values) {
            set(var, v)?;
        }
        let loss = result.map_err(wrap)?;
        self.steps += 1;
        Ok(loss)
    }

    /// Sets the learning rate, reporting an invalid value as an error.
    pub fn try_set_learning_rate(&mut self, lr: f64) -> candle_core::Result<()> {
        self.optimizer.set_lr(lr).map_err(wrap)
    }

    fn update(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        if let Some(e) = self.deferred_error.take() {
            return Err(candle_core::Error::msg(e));
        }
        if self.needs_curvature() && self.pending_hessian.is_none() {
            return Err(self.missing_estimate("none was given"));
        }
        let hessian = self.pending_hessian.take();
        let mut idx = Vec::with_capacity(self.vars.len());
        let mut tensors: Vec<&Tensor> = Vec::with_capacity(2 * self.vars.len());
        let mut labels: Vec<String> = Vec::with_capacity(2 * self.vars.len());
        for (i, var) in self.vars.iter().enumerate() {
            if let Some(g) = grads.get(var.as_tensor()) {
                if g.dims() != var.dims() {
                    return Err(candle_core::Error::msg(format!(
                        "gradient of '{}' has shape {:?}, the parameter {:?}",
                        self.names[i],
                        g.dims(),
                        var.dims()
                    )));
                }
                if g.dtype() != var.dtype() {
                    return Err(candle_core::Error::msg(format!(
                        "gradient of '{}' has dtype {:?}, the parameter {:?}",
                        self.names[i],
                        g.dtype(),
                        var.dtype()
                    )));
                }
                idx.push(i);
                tensors.push(var.as_tensor());
                tensors.push(g);
                labels.push(format!("parameter '{}'", self.names[i]));
                labels.push(self.grad_labels[i].clone());
            }
        }
        let start = Instant::now();
        let names = &self.names;
        let shapes = &self.shapes;
        let optimizer = &mut self.optimizer;
        let widened = &mut self.widened;
        let mut failure: Option<optimist_core::Error> = None;
        let result = inplace::with_slices_mut(&tensors, &labels, &mut |slices| {
            // Widen bf16/f16 values and gradients into their f32 buffers.
            for (pair, &i) in slices.chunks_exact(2).zip(&idx) {
                let (value, grad) = &mut widened[i];
                widen(&pair[0], value, &names[i])?;
                widen(&pair[1], grad, &names[i])?;
            }
            let mut params: Vec<ParamMut<'_>> = Vec::with_capacity(idx.len());
            let mut bufs = widened.iter_mut().enumerate();
            for (pair, &i) in slices.chunks_exact_mut(2).zip(&idx) {
                let (_, (wv, wg)) = bufs
                    .find(|(j, _)| *j == i)
                    .ok_or_else(|| candle_core::Error::msg("optimist-candle: parameter order"))?;
                let (value, grad) = pair.split_at_mut(1);
                let (value, grad): (&mut [f32], &mut [f32]) = match (&mut value[0], &mut grad[0]) {
                    (SliceMut::F32(v), SliceMut::F32(g)) => (&mut **v, &mut **g),
                    _ => (wv.as_mut_slice(), wg.as_mut_slice()),
                };
                params.push(ParamMut {
                    name: &names[i],
                    shape: &shapes[i],
                    value,
                    grad,
                    hessian: hessian.as_ref().map(|h| h[i].as_slice()),
                });
            }
            if let Err(e) = optimizer.step(&mut params) {
                failure = Some(e);
                return Ok(());
            }
            drop(params);
            // Round the updated values back into bf16/f16 storage.
            for (pair, &i) in slices.chunks_exact_mut(2).zip(&idx) {
                narrow(&widened[i].0, &mut pair[0]);
            }
            Ok(())
        });
        self.step_time += start.elapsed();
        result?;
        if let Some(e) = failure {
            return Err(wrap(e));
        }
        self.steps += 1;
        Ok(())
    }
}

/// Copies a bf16/f16 slice into `out` as f32 (exact); f32 slices are used
/// in place and left alone.
fn widen(src: &SliceMut<'_>, out: &mut [f32], name: &str) -> candle_core::Result<()> {
    let mismatch = || {
        candle_core::Error::msg(format!(
            "optimist-candle: buffer of '{name}' has {} values, the tensor {}",
            out.len(),
            src.len()
        ))
    };
    match src {
        SliceMut::F32(_) => return Ok(()),
        _ if src.len() != out.len() => return Err(mismatch()),
        SliceMut::Bf16(s) => out
            .iter_mut()
            .zip(s.iter())
            .for_each(|(o, x)| *o = x.to_f32()),
        SliceMut::F16(s) => out
            .iter_mut()
            .zip(s.iter())
            .for_each(|(o, x)| *o = x.to_f32()),
    }
    Ok(())
}

/// Rounds `values` into a bf16/f16 slice (to nearest, ties to even); f32
/// slices were updated in place already.
fn narrow(values: &[f32], dst: &mut SliceMut<'_>) {
    match dst {
        SliceMut::F32(_) => {}
        SliceMut::Bf16(d) => d
            .iter_mut()
            .zip(values)
            .for_each(|(o, &x)| *o = half::bf16::from_f32(x)),
        SliceMut::F16(d) => d
            .iter_mut()
            .zip(values)
            .for_each(|(o, &x)| *o = half::f16::from_f32(x)),
    }
}

impl candle_nn::Optimizer for OptimistOptimizer {
    type Config = AdapterConfig;

    /// Variables without VarMap paths are named `param0000`, `param0001`,
    /// ... in the order given; use [`OptimistOptimizer::from_varmap`] to
    /// name them by path (needed for groups by name).
    fn new(vars: Vec<Var>, config: AdapterConfig) -> candle_core::Result<Self> {
        let opt = build_optimizer(&config.optimizer, &config.hparams).map_err(wrap)?;
        let named = vars
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("param{i:04}"), v));
        Self::from_named(named, opt)
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.update(grads)
    }

    /// The learning rate, or NaN for a rule that has none.
    fn learning_rate(&self) -> f64 {
        self.optimizer.lr().unwrap_or(f64::NAN)
    }

    /// Sets the learning rate; an invalid value is reported by the next
    /// `step` (this trait method cannot return an error).
    fn set_learning_rate(&mut self, lr: f64) {
        if let Err(e) = self.optimizer.set_lr(lr) {
            self.deferred_error = Some(format!("set_learning_rate({lr}): {e}"));
        }
    }
}
