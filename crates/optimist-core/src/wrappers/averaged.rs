//! Averaged copies of the parameters, shared by [`Ema`](super::Ema) and
//! [`Swa`](super::Swa): one f32 copy per averaged parameter, and the
//! train/eval switch that swaps the copies with the parameters in place (so
//! evaluation sees the averages, training resumes exactly where it was, and
//! no third copy is made).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::optimizer::{Mode, Optimizer};
use crate::state::{StateDict, StateEntry};
use crate::tensor::ParamMut;

/// Averaged copies by parameter name, and where they currently are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Averages {
    /// In [`Mode::Train`] the averages; in [`Mode::Eval`] the training
    /// values that the averages replaced.
    copies: BTreeMap<String, Vec<f32>>,
    mode: Mode,
}

impl Averages {
    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The averaged values of `name` (in train mode; `None` in eval mode,
    /// where they are in the parameters, or before the first average).
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        match self.mode {
            Mode::Train => self.copies.get(name).map(Vec::as_slice),
            Mode::Eval => None,
        }
    }

    /// Number of averaged parameters.
    pub fn len(&self) -> usize {
        self.copies.len()
    }

    /// True before the first average.
    pub fn is_empty(&self) -> bool {
        self.copies.is_empty()
    }

    /// An error unless in train mode (`who` names the wrapper).
    pub fn require_train(&self, who: &str) -> Result<()> {
        match self.mode {
            Mode::Train => Ok(()),
            Mode::Eval => Err(Error::Input(format!(
                "{who}: step called in eval mode (the parameters hold the averages); \
                 call set_mode(Mode::Train, ...) first"
            ))),
        }
    }

    /// Updates every parameter's average with `f(avg, value)` per element,
    /// or starts it as a copy of the parameter.
    pub fn update(&mut self, params: &[ParamMut<'_>], f: impl Fn(f32, f32) -> f32) {
        for p in params {
            match self.copies.get_mut(p.name) {
                Some(avg) if avg.len() == p.value.len() => {
                    for (a, &x) in avg.iter_mut().zip(p.value.iter()) {
                        *a = f(*a, x);
                    }
                }
                _ => {
                    self.copies.insert(p.name.to_string(), p.value.to_vec());
                }
            }
        }
    }

    /// Swaps the copies with the parameter values when the mode changes.
    /// Every parameter with a copy must have the copy's length (checked
    /// before anything is swapped).
    pub fn set_mode(&mut self, who: &str, mode: Mode, params: &mut [ParamMut<'_>]) -> Result<()> {
        if mode == self.mode {
            return Ok(());
        }
        for p in params.iter() {
            if let Some(c) = self.copies.get(p.name) {
                if c.len() != p.value.len() {
                    return Err(Error::Shape(format!(
                        "{who}: parameter '{}' has {} values, its average {}",
                        p.name,
                        p.value.len(),
                        c.len()
                    )));
                }
            }
        }
        for p in params.iter_mut() {
            if let Some(c) = self.copies.get_mut(p.name) {
                p.value.swap_with_slice(c);
            }
        }
        self.mode = mode;
        Ok(())
    }

    /// Adds the copies (`<prefix>/<param>`, buffer `average`) and the mode
    /// (`<prefix>/eval_mode`) to `d`.
    pub fn save(&self, prefix: &str, d: &mut StateDict) {
        for (name, c) in &self.copies {
            d.tensors.push(StateEntry {
                param: format!("{prefix}/{name}"),
                name: "average".into(),
                values: c.clone(),
            });
        }
        d.scalars.insert(
            format!("{prefix}/eval_mode"),
            (self.mode == Mode::Eval) as u8 as f64,
        );
    }

    /// Reads what [`Averages::save`] wrote; `d` may hold other entries.
    pub fn load(prefix: &str, d: &StateDict) -> Result<Self> {
        let p = format!("{prefix}/");
        let mut copies = BTreeMap::new();
        for e in &d.tensors {
            let Some(name) = e.param.strip_prefix(&p) else {
                continue;
            };
            if e.name != "average" {
                return Err(Error::Input(format!(
                    "{prefix} state: unknown buffer '{}/{}'",
                    e.param, e.name
                )));
            }
            if copies.insert(name.to_string(), e.values.clone()).is_some() {
                return Err(Error::Input(format!(
                    "{prefix} state: two averages for '{name}'"
                )));
            }
        }
        let key = format!("{prefix}/eval_mode");
        let Some(&flag) = d.scalars.get(&key) else {
            return Err(Error::Input(format!("state has no '{key}' entry")));
        };
        let mode = if flag == 0.0 {
            Mode::Train
        } else if flag == 1.0 {
            Mode::Eval
        } else {
            return Err(Error::Input(format!("state '{key}': invalid value {flag}")));
        };
        Ok(Averages { copies, mode })
    }
}

/// Switches an averaging wrapper (`who`) and its `inner` optimizer to
/// `mode`. Eval: the inner optimizer switches first, then the averages are
/// swapped in; train: swapped out, then the inner optimizer switches. When
/// the averages are already in `mode` only the inner optimizer is told.
pub(crate) fn switch_mode(
    who: &str,
    averages: &mut Averages,
    inner: &mut dyn Optimizer,
    mode: Mode,
    params: &mut [ParamMut<'_>],
) -> Result<()> {
    if mode == averages.mode() {
        return inner.set_mode(mode, params);
    }
    match mode {
        Mode::Eval => {
            inner.set_mode(mode, params)?;
            averages.set_mode(who, mode, params)
        }
        Mode::Train => {
            averages.set_mode(who, mode, params)?;
            inner.set_mode(mode, params)
        }
    }
}

/// `set_config` of an averaging wrapper (`kind`): its own fields of
/// `config` are merged over `current`, the result is checked with `check`,
/// the inner hyperparameters (if any) go to `inner`, and only then is
/// `current` replaced.
pub(crate) fn apply_config<C: Serialize + DeserializeOwned>(
    kind: &str,
    config: &Value,
    current: &mut C,
    inner: &mut dyn Optimizer,
    check: impl Fn(&C) -> Result<()>,
) -> Result<()> {
    let (own, inner_hp) = super::split_config(kind, config)?;
    let mut merged = serde_json::to_value(&*current).unwrap_or(Value::Null);
    for (k, val) in own.as_object().into_iter().flatten() {
        merged[k] = val.clone();
    }
    let cfg: C = serde_json::from_value(merged)
        .map_err(|e| Error::config(kind, format!("invalid configuration: {e}")))?;
    check(&cfg)?;
    if let Some(hp) = inner_hp {
        inner.set_config(hp)?;
    }
    *current = cfg;
    Ok(())
}
