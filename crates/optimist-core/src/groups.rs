//! Parameter groups: each group selects parameters (by name pattern, by
//! number of dimensions) and runs its own optimizer with its own
//! hyperparameters, like torch's param groups and optax's `partition`.
//!
//! ```
//! use optimist_core::groups::{ParamGroups, Selector};
//! use optimist_core::registry::build;
//! use serde_json::json;
//!
//! // AdamW with weight decay on weights, without it on biases and norms.
//! let groups = ParamGroups::new()
//!     .group("no_decay", Selector::names(["*bias", "*norm*"]),
//!            build("adamw", &json!({"lr": 1e-3, "weight_decay": 0.0})).unwrap())
//!     .group("decay", Selector::All,
//!            build("adamw", &json!({"lr": 1e-3, "weight_decay": 0.1})).unwrap());
//! ```
//!
//! A parameter goes to the first group whose selector matches it; a
//! parameter that no group selects is an error. State entries and scalars
//! are stored under `<group name>/` so that a checkpoint records the layout.

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::optimizer::Optimizer;
use crate::state::StateDict;
use crate::tensor::ParamMut;

/// Which parameters a group takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    /// Every parameter.
    All,
    /// Parameters whose name matches any of these glob patterns (`*` any
    /// run of characters, `?` one character).
    Names(Vec<String>),
    /// Parameters with `min <= ndim <= max` dimensions.
    Ndim { min: usize, max: usize },
    /// Parameters the inner selector rejects.
    Not(Box<Selector>),
    /// Parameters every inner selector accepts.
    And(Vec<Selector>),
    /// Parameters some inner selector accepts.
    Or(Vec<Selector>),
}

impl Selector {
    /// Name patterns.
    pub fn names<I, S>(patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Selector::Names(patterns.into_iter().map(Into::into).collect())
    }

    /// Parameters with at least two dimensions (matrices, convolution kernels).
    pub fn matrices() -> Self {
        Selector::Ndim {
            min: 2,
            max: usize::MAX,
        }
    }

    /// The complement.
    pub fn negate(self) -> Self {
        Selector::Not(Box::new(self))
    }

    /// Whether a parameter with this name and shape is selected.
    pub fn matches(&self, name: &str, shape: &[usize]) -> bool {
        match self {
            Selector::All => true,
            Selector::Names(pats) => pats.iter().any(|p| glob_match(p, name)),
            Selector::Ndim { min, max } => (*min..=*max).contains(&shape.len()),
            Selector::Not(s) => !s.matches(name, shape),
            Selector::And(v) => v.iter().all(|s| s.matches(name, shape)),
            Selector::Or(v) => v.iter().any(|s| s.matches(name, shape)),
        }
    }

    fn describe(&self) -> Value {
        match self {
            Selector::All => json!("all"),
            Selector::Names(p) => json!({ "names": p }),
            Selector::Ndim { min, max } => json!({ "ndim_min": min, "ndim_max": max }),
            Selector::Not(s) => json!({ "not": s.describe() }),
            Selector::And(v) => {
                json!({ "and": v.iter().map(Selector::describe).collect::<Vec<_>>() })
            }
            Selector::Or(v) => {
                json!({ "or": v.iter().map(Selector::describe).collect::<Vec<_>>() })
            }
        }
    }
}

/// Glob matching with `*` (any run, possibly empty) and `?` (one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// One group: a name, a selector and an optimizer.
pub struct Group {
    pub name: String,
    pub selector: Selector,
    pub optimizer: Box<dyn Optimizer>,
}

/// Several optimizers over disjoint sets of parameters; itself an [`Optimizer`].
#[derive(Default)]
pub struct ParamGroups {
    groups: Vec<Group>,
    /// The error of a step that failed after an earlier group had stepped
    /// (see [`Optimizer::step`]).
    poisoned: Option<String>,
}

impl ParamGroups {
    /// No groups yet.
    pub fn new() -> Self {
        ParamGroups::default()
    }

    /// Adds a group (builder style). Earlier groups take precedence.
    pub fn group(
        mut self,
        name: impl Into<String>,
        selector: Selector,
        optimizer: Box<dyn Optimizer>,
    ) -> Self {
        self.groups.push(Group {
            name: name.into(),
            selector,
            optimizer,
        });
        self
    }

    /// The groups.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The group called `name`, to change its hyperparameters.
    pub fn group_mut(&mut self, name: &str) -> Option<&mut Group> {
        self.groups.iter_mut().find(|g| g.name == name)
    }

    /// Index of the group that takes this parameter.
    pub fn assign(&self, name: &str, shape: &[usize]) -> Result<usize> {
        self.groups
            .iter()
            .position(|g| g.selector.matches(name, shape))
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "parameter '{name}' (shape {shape:?}) is selected by no parameter group"
                ))
            })
    }

    /// `params` split by group (in each group, in the order given), each a
    /// reborrow of the caller's parameter.
    fn partition<'p>(&self, params: &'p mut [ParamMut<'_>]) -> Result<Vec<Vec<ParamMut<'p>>>> {
        let assignment = params
            .iter()
            .map(|p| self.assign(p.name, p.shape))
            .collect::<Result<Vec<_>>>()?;
        let mut parts: Vec<Vec<ParamMut<'p>>> =
            (0..self.groups.len()).map(|_| Vec::new()).collect();
        for (p, gi) in params.iter_mut().zip(assignment) {
            parts[gi].push(ParamMut {
                name: p.name,
                shape: p.shape,
                value: &mut *p.value,
                grad: &mut *p.grad,
                hessian: p.hessian,
            });
        }
        Ok(parts)
    }

    fn check_names(&self) -> Result<()> {
        for (i, g) in self.groups.iter().enumerate() {
            if g.name.is_empty() || g.name.contains('/') {
                return Err(Error::Input(format!(
                    "parameter group name '{}' must be non-empty and contain no '/'",
                    g.name
                )));
            }
            if self.groups[..i].iter().any(|h| h.name == g.name) {
                return Err(Error::Input(format!(
                    "two parameter groups are named '{}'",
                    g.name
                )));
            }
        }
        Ok(())
    }
}

impl Optimizer for ParamGroups {
    fn name(&self) -> &str {
        "param_groups"
    }

    fn config(&self) -> Value {
        Value::Array(
            self.groups
                .iter()
                .map(|g| {
                    json!({
                        "name": g.name,
                        "selector": g.selector.describe(),
                        "optimizer": g.optimizer.name(),
                        "hparams": g.optimizer.config(),
                    })
                })
                .collect(),
        )
    }

    fn set_config(&mut self, config: Value) -> Result<()> {
        let Some(items) = config.as_array().filter(|a| a.len() == self.groups.len()) else {
            return Err(Error::config(
                "param_groups",
                format!(
                    "configuration must be an array of {} groups",
                    self.groups.len()
                ),
            ));
        };
        // Validate every group's new configuration before changing any.
        let mut olds = Vec::new();
        for (g, item) in self.groups.iter_mut().zip(items) {
            let old = g.optimizer.config();
            let new = item.get("hparams").cloned().unwrap_or(Value::Null);
            if let Err(e) = g.optimizer.set_config(new) {
                for (g, old) in self.groups.iter_mut().zip(olds) {
                    let _ = g.optimizer.set_config(old);
                }
                return Err(e);
            }
            olds.push(old);
        }
        Ok(())
    }

    fn step(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        if let Some(first) = &self.poisoned {
            return Err(Error::unusable("param_groups", first));
        }
        self.check_names()?;
        for p in params.iter() {
            p.check()?;
        }
        let parts = self.partition(params)?;
        let mut stepped = false;
        for (g, mut part) in self.groups.iter_mut().zip(parts) {
            if !part.is_empty() {
                if let Err(e) = g.optimizer.step(&mut part) {
                    if stepped {
                        // An earlier group has already stepped.
                        self.poisoned = Some(e.to_string());
                        return Err(e.midway("param_groups"));
                    }
                    return Err(e);
                }
                stepped = true;
            }
        }
        Ok(())
    }

    fn state_dict(&self) -> StateDict {
        let mut d = StateDict::default();
        for g in &self.groups {
            d.merge_prefixed(&format!("{}/", g.name), g.optimizer.state_dict());
        }
        d
    }

    fn load_state_dict(&mut self, dict: &StateDict) -> Result<()> {
        self.check_names()?;
        for e in &dict.tensors {
            if !self
                .groups
                .iter()
                .any(|g| e.param.starts_with(&format!("{}/", g.name)))
            {
                return Err(Error::Input(format!(
                    "state entry '{}' belongs to no parameter group",
                    e.param
                )));
            }
        }
        let olds: Vec<StateDict> = self
            .groups
            .iter()
            .map(|g| g.optimizer.state_dict())
            .collect();
        for i in 0..self.groups.len() {
            let sub = dict.strip_prefix(&format!("{}/", self.groups[i].name));
            if let Err(e) = self.groups[i].optimizer.load_state_dict(&sub) {
                for (g, old) in self.groups.iter_mut().zip(&olds).take(i) {
                    let _ = g.optimizer.load_state_dict(old);
                }
                return Err(e);
            }
        }
        self.poisoned = None;
        Ok(())
    }

    fn hparam(&self, key: &str) -> Option<f64> {
        self.groups.iter().find_map(|g| g.optimizer.hparam(key))
    }

    /// Switches every group's parameters (each group's optimizer gets its own).
    fn set_mode(
        &mut self,
        mode: crate::optimizer::Mode,
        params: &mut [ParamMut<'_>],
    ) -> Result<()> {
        self.check_names()?;
        let parts = self.partition(params)?;
        for (g, mut part) in self.groups.iter_mut().zip(parts) {
            g.optimizer.set_mode(mode, &mut part)?;
        }
        Ok(())
    }

    /// Sets `key` on every group that has it (as a scheduler does for all
    /// param groups); an error if none has it.
    fn set_hparam(&mut self, key: &str, value: f64) -> Result<()> {
        let mut any = false;
        for g in self.groups.iter_mut() {
            if g.optimizer.hparam(key).is_some() {
                g.optimizer.set_hparam(key, value)?;
                any = true;
            }
        }
        if any {
            Ok(())
        } else {
            Err(Error::config(
                "param_groups",
                format!("no group has hyperparameter '{key}'"),
            ))
        }
    }

    /// Sets the execution options of every group; stops at the first group
    /// that refuses them (the groups before it keep the new options).
    fn set_exec_options(&mut self, exec: crate::exec::ExecOptions) -> Result<()> {
        for g in self.groups.iter_mut() {
            g.optimizer.set_exec_options(exec)?;
        }
        Ok(())
    }

    fn state_nbytes(&self) -> usize {
        self.groups.iter().map(|g| g.optimizer.state_nbytes()).sum()
    }

    fn state_buffer(&self, param: &str, buffer: &str) -> Option<&[f32]> {
        self.groups
            .iter()
            .find_map(|g| g.optimizer.state_buffer(param, buffer))
    }
}
