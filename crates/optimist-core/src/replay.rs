//! The replay contract (v1): run one optimizer on fixed parameters with a
//! fixed sequence of gradients and record the parameters after every step.
//!
//! Format and procedure are documented in `docs/replay.md`. In short, for
//! each step: set the gradients, clip them (`grad_clip`), set the scheduled
//! learning rate (`lr_schedule`), step (with `hessian[t]` when given), record.

use serde::Deserialize;
use serde_json::Value;

use crate::clip::ClipGradNorm;
use crate::error::{Error, Result};
use crate::optimizer::Optimizer;
use crate::problems::{MatrixLeastSquares, Problem, Quadratic, Rosenbrock};
use crate::registry;
use crate::schedule::{Schedule, ScheduleSpec};
use crate::tensor::{numel, ParamMut};
use crate::transform::GradientTransform;

/// One parameter of a case.
#[derive(Debug, Clone, Deserialize)]
pub struct CaseParam {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A replay case as read from JSON (keys the replay does not use are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    pub optimizer: String,
    #[serde(default)]
    pub hparams: Value,
    #[serde(default)]
    pub lr_schedule: Value,
    #[serde(default)]
    pub grad_clip: Value,
    pub params: Vec<CaseParam>,
    #[serde(default)]
    pub grads: Vec<Vec<Vec<f32>>>,
    #[serde(default)]
    pub hessian: Option<Vec<Option<Vec<Vec<f32>>>>>,
    /// Extension: gradient stages run after `grad_clip`, before the step,
    /// as a list of `{"name": ..., "config": {...}}` (see `crate::stages`).
    #[serde(default)]
    pub stages: Value,
    /// Extension for closure-based optimizers (`docs/replay.md`): the
    /// built-in test function the closure evaluates, e.g.
    /// `{"problem": "rosenbrock"}`; with it, `steps` steps are taken and
    /// `grads` stays empty.
    #[serde(default)]
    pub closure: Value,
    /// Number of steps of a closure case.
    #[serde(default)]
    pub steps: Option<usize>,
}

/// Most steps of a closure case.
const MAX_CLOSURE_STEPS: usize = 100_000;

/// The test function of a closure case (`closure`), checked against the
/// case's single parameter.
fn closure_problem(spec: &Value, numel: usize, shape: &[usize]) -> Result<Box<dyn Problem>> {
    let obj = spec
        .as_object()
        .ok_or_else(|| Error::Input(format!("closure must be an object, got {spec}")))?;
    let name = obj.get("problem").and_then(Value::as_str).unwrap_or("");
    let allowed: &[&str] = match name {
        "rosenbrock" => &["problem"],
        "quadratic" => &["problem", "condition"],
        "lstsq" => &["problem", "k", "seed"],
        _ => {
            return Err(Error::Input(format!(
                "closure: unknown problem {:?} (rosenbrock, quadratic, lstsq)",
                obj.get("problem")
            )))
        }
    };
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Error::Input(format!("closure '{name}': unknown key '{k}'")));
    }
    let uint = |k: &str, default: u64, max: u64| -> Result<u64> {
        match obj.get(k) {
            None => Ok(default),
            Some(v) => v.as_u64().filter(|&x| x >= 1 && x <= max).ok_or_else(|| {
                Error::Input(format!("closure '{name}': {k} must be an integer from 1 to {max}, got {v}"))
            }),
        }
    };
    let problem: Box<dyn Problem> = match name {
        "rosenbrock" => {
            if numel != 2 {
                return Err(Error::Shape(format!("closure 'rosenbrock': the parameter has {numel} values, expected 2")));
            }
            Box::new(Rosenbrock)
        }
        "quadratic" => {
            let condition = match obj.get("condition") {
                None => 100.0,
                Some(v) => v.as_f64().filter(|c| c.is_finite() && *c >= 1.0).ok_or_else(|| {
                    Error::Input(format!("closure 'quadratic': condition must be a number >= 1, got {v}"))
                })?,
            };
            Box::new(Quadratic { dim: numel, condition })
        }
        _ => {
            let [m, n] = shape else {
                return Err(Error::Shape(format!("closure 'lstsq': the parameter must be a matrix, got shape {shape:?}")));
            };
            let k = uint("k", 32, 4096)? as usize;
            if k.saturating_mul(m.max(n).to_owned()) > 1 << 22 {
                return Err(Error::Input(format!("closure 'lstsq': k = {k} is too large for a {m} x {n} matrix")));
            }
            let seed = match obj.get("seed") {
                None => 7,
                Some(v) => v.as_u64().ok_or_else(|| Error::Input(format!("closure 'lstsq': seed must be an integer >= 0, got {v}")))?,
            };
            Box::new(MatrixLeastSquares::new(k, *m, *n, seed))
        }
    };
    Ok(problem)
}

/// Parameters after every step: `[step][param][value]`.
pub type Trajectory = Vec<Vec<Vec<f32>>>;

impl Case {
    /// Parses a case from JSON text.
    pub fn parse(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Input(format!("invalid case: {e}")))
    }

    /// Checks shapes and lengths of everything in the case.
    pub fn validate(&self) -> Result<()> {
        let mut names = std::collections::HashSet::new();
        for p in &self.params {
            let n = numel(&p.shape)?;
            if n != p.data.len() {
                return Err(Error::Shape(format!(
                    "parameter '{}': shape {:?} needs {n} values, data has {}",
                    p.name,
                    p.shape,
                    p.data.len()
                )));
            }
            if !names.insert(p.name.as_str()) {
                return Err(Error::Input(format!(
                    "parameter name '{}' appears twice",
                    p.name
                )));
            }
        }
        let check_step = |what: &str, t: usize, step: &[Vec<f32>]| -> Result<()> {
            if step.len() != self.params.len() {
                return Err(Error::Shape(format!(
                    "{what} of step {}: {} tensors for {} parameters",
                    t + 1,
                    step.len(),
                    self.params.len()
                )));
            }
            for (g, p) in step.iter().zip(&self.params) {
                if g.len() != p.data.len() {
                    return Err(Error::Shape(format!(
                        "{what} of step {} for parameter '{}': {} values, expected {}",
                        t + 1,
                        p.name,
                        g.len(),
                        p.data.len()
                    )));
                }
            }
            Ok(())
        };
        for (t, step) in self.grads.iter().enumerate() {
            check_step("gradient", t, step)?;
        }
        if let Some(h) = &self.hessian {
            if h.len() > self.grads.len() {
                return Err(Error::Shape(format!(
                    "hessian has {} steps, grads only {}",
                    h.len(),
                    self.grads.len()
                )));
            }
            for (t, step) in h.iter().enumerate() {
                if let Some(step) = step {
                    check_step("hessian", t, step)?;
                }
            }
        }
        Ok(())
    }

    /// Builds the extension `stages` (none when the key is absent or null).
    pub fn build_stages(&self) -> Result<Vec<Box<dyn GradientTransform>>> {
        let items = match &self.stages {
            Value::Null => return Ok(Vec::new()),
            Value::Array(items) => items,
            other => {
                return Err(Error::Input(format!(
                    "stages must be a list of {{\"name\", \"config\"}} objects, got {other}"
                )))
            }
        };
        items
            .iter()
            .map(|item| {
                let name = item
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::Input(format!("stage {item} has no \"name\"")))?;
                if let Some(k) = item
                    .as_object()
                    .and_then(|o| o.keys().find(|k| *k != "name" && *k != "config"))
                {
                    return Err(Error::Input(format!("stage '{name}': unknown key '{k}'")));
                }
                crate::stages::build(name, item.get("config").unwrap_or(&Value::Null))
            })
            .collect()
    }

    /// Builds the case's optimizer.
    pub fn optimizer(&self) -> Result<Box<dyn Optimizer>> {
        registry::build(&self.optimizer.to_lowercase(), &self.hparams)
    }

    /// The case's learning-rate schedule (`lr_schedule`), based on the
    /// learning rate of `opt`.
    fn schedule_for(&self, opt: &dyn Optimizer) -> Result<Option<Box<dyn Schedule>>> {
        if self.lr_schedule.is_null() {
            return Ok(None);
        }
        let spec = ScheduleSpec::from_json(&self.lr_schedule)?;
        let base = opt
            .lr()
            .ok_or_else(|| Error::config(&self.optimizer, "has no learning rate to schedule"))?;
        Ok(Some(spec.build(base)))
    }

    /// Runs the replay and returns the parameters after every step.
    pub fn run(&self) -> Result<Trajectory> {
        if !self.closure.is_null() {
            return self.run_closure();
        }
        self.validate()?;
        let mut opt = self.optimizer()?;
        let mut clip = match &self.grad_clip {
            Value::Null => None,
            v => {
                let c: ClipGradNorm = serde_json::from_value(v.clone())
                    .map_err(|e| Error::config("grad_clip", format!("invalid grad_clip: {e}")))?;
                c.validate()?;
                Some(Box::new(c) as Box<dyn GradientTransform>)
            }
        };
        let mut stages = self.build_stages()?;
        let schedule = self.schedule_for(opt.as_ref())?;

        let mut values: Vec<Vec<f32>> = self.params.iter().map(|p| p.data.clone()).collect();
        let mut out = Vec::with_capacity(self.grads.len());
        for (t, step_grads) in self.grads.iter().enumerate() {
            let mut grads = step_grads.clone();
            if let Some(s) = &schedule {
                opt.set_lr(s.value(t as u64))?;
            }
            let hess = self
                .hessian
                .as_ref()
                .and_then(|h| h.get(t))
                .and_then(|h| h.as_ref());
            let mut views: Vec<ParamMut<'_>> = values
                .iter_mut()
                .zip(&self.params)
                .zip(grads.iter_mut())
                .enumerate()
                .map(|(i, ((v, p), g))| ParamMut {
                    name: &p.name,
                    shape: &p.shape,
                    value: v.as_mut_slice(),
                    grad: g.as_mut_slice(),
                    hessian: hess.map(|h| h[i].as_slice()),
                })
                .collect();
            if let Some(c) = &mut clip {
                c.transform(&mut views)?;
            }
            for s in stages.iter_mut() {
                s.transform(&mut views)?;
            }
            opt.step(&mut views)?;
            for (v, p) in values.iter().zip(&self.params) {
                check_finite(t, &p.name, v)?;
            }
            out.push(values.clone());
        }
        Ok(out)
    }
}

/// An error naming the first non-finite value of parameter `name` after
/// step index `t` (JSON cannot hold it).
fn check_finite(t: usize, name: &str, values: &[f32]) -> Result<()> {
    match values.iter().position(|x| !x.is_finite()) {
        Some(j) => Err(Error::NonFinite(format!(
            "step {}: parameter '{name}'[{j}] became {} (not representable in JSON)",
            t + 1,
            values[j]
        ))),
        None => Ok(()),
    }
}

/// The result JSON: `{"params": [[[...], ...], ...]}` with every f32
/// printed so that it reads back as the same f32.
impl Case {
    /// A closure case: one parameter, `steps` steps of
    /// [`Optimizer::step_with_closure`] with the closure evaluating the
    /// built-in problem at the parameter's values (`docs/replay.md`).
    fn run_closure(&self) -> Result<Trajectory> {
        self.validate()?;
        if !self.grads.is_empty() || self.hessian.is_some() || !self.grad_clip.is_null() || !self.stages.is_null() {
            return Err(Error::Input(
                "a closure case takes no grads, hessian, grad_clip or stages".into(),
            ));
        }
        let steps = self
            .steps
            .filter(|&s| (1..=MAX_CLOSURE_STEPS).contains(&s))
            .ok_or_else(|| Error::Input(format!("a closure case needs steps from 1 to {MAX_CLOSURE_STEPS}")))?;
        let [p] = self.params.as_slice() else {
            return Err(Error::Input(format!(
                "a closure case takes one parameter, got {}",
                self.params.len()
            )));
        };
        let problem = closure_problem(&self.closure, p.data.len(), &p.shape)?;
        let mut opt = self.optimizer()?;
        let schedule = self.schedule_for(opt.as_ref())?;
        let mut value = p.data.clone();
        let mut grad = vec![0.0f32; value.len()];
        let mut out = Vec::with_capacity(steps);
        let mut closure = |ps: &mut [ParamMut<'_>]| -> Result<f64> {
            let q = &mut ps[0];
            Ok(problem.loss_grad(q.value, q.grad))
        };
        for t in 0..steps {
            if let Some(s) = &schedule {
                opt.set_lr(s.value(t as u64))?;
            }
            let mut views = [ParamMut {
                name: &p.name,
                shape: &p.shape,
                value: &mut value,
                grad: &mut grad,
                hessian: None,
            }];
            opt.step_with_closure(&mut views, &mut closure)?;
            check_finite(t, &p.name, &value)?;
            out.push(vec![value.clone()]);
        }
        Ok(out)
    }
}

pub fn result_json(traj: &Trajectory) -> String {
    use std::fmt::Write;
    let mut s =
        String::with_capacity(64 + traj.iter().flatten().map(|v| v.len() * 12).sum::<usize>());
    s.push_str("{\"params\": [");
    for (t, step) in traj.iter().enumerate() {
        if t > 0 {
            s.push_str(", ");
        }
        s.push('[');
        for (i, p) in step.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push('[');
            for (j, x) in p.iter().enumerate() {
                if j > 0 {
                    s.push(',');
                }
                // Writing to a String cannot fail.
                let _ = write!(s, "{x:?}");
            }
            s.push(']');
        }
        s.push(']');
    }
    s.push_str("]}");
    s
}

/// Reads, runs and serializes the case in `path`.
pub fn replay_file(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let case = Case::parse(&text)?;
    Ok(result_json(&case.run()?))
}
