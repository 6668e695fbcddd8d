//! Lookahead: any optimizer (the fast weights) pulled back every `k` steps
//! toward slow weights.
//!
//! **Reference:** `pytorch_optimizer.Lookahead` (pytorch-optimizer 4.1.0),
//! `pullback_momentum = 'none'`. **Paper:** Zhang, Lucas, Hinton & Ba,
//! "Lookahead Optimizer: k steps forward, 1 step back", NeurIPS 2019
//! (arXiv:1907.08610).
//!
//! ```text
//! slow <- p                                   when a parameter is first seen (before any step)
//! every step: the inner optimizer steps; counter <- counter + 1
//! counter >= k:  p <- lerp(p, slow, 1 - alpha)  (p + (1 - alpha)(slow - p), torch's lerp)
//!                slow <- p;  counter <- 0
//! ```
//! Hyperparameters: `k` = 5 (>= 1), `alpha` = 0.5 (in [0, 1), as the
//! reference), `inner` = `{"optimizer": NAME, "hparams": {...}}`, any
//! registered optimizer (required). `lr` and every other scalar the
//! wrapper does not own are read and set on the inner optimizer, so
//! schedules drive it. The state dict holds the inner optimizer's state
//! under `inner/`, the slow weights as `lookahead/<param>` / `slow_params`
//! and the counter as `lookahead/counter`.
//!
//! The reference copies the slow weights when it is built; here they are
//! copied when a parameter is first stepped, before the inner step, which
//! is the same values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::math::lerp;
use crate::optimizer::Optimizer;
use crate::rule::OptimizerConfig;
use crate::state::{StateDict, StateEntry};
use crate::tensor::ParamMut;
use crate::validate as v;
use crate::wrappers::inner_spec;
use crate::wrappers::wrap::{inner_field, reconfigure_inner, require_inner, InnerSpec, Wrapper};

/// Hyperparameters of `pytorch_optimizer.Lookahead`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LookaheadConfig {
    /// Inner steps between synchronisations (default 5).
    pub k: u64,
    /// Weight of the fast weights at a synchronisation (default 0.5).
    pub alpha: f64,
    /// The inner optimizer (required).
    pub inner: Option<InnerSpec>,
}

impl Default for LookaheadConfig {
    fn default() -> Self {
        LookaheadConfig {
            k: 5,
            alpha: 0.5,
            inner: None,
        }
    }
}

fn check_k(k: u64) -> Result<()> {
    v::at_least(LookaheadConfig::NAME, "k", k, 1)
}

fn check_alpha(alpha: f64) -> Result<()> {
    v::unit_interval_open(LookaheadConfig::NAME, "alpha", alpha)
}

impl OptimizerConfig for LookaheadConfig {
    const NAME: &'static str = "lookahead";
    const REFERENCE: &'static str = "pytorch_optimizer.Lookahead (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Zhang, Lucas, Hinton & Ba, Lookahead Optimizer: k steps forward, 1 step back, NeurIPS 2019 (arXiv:1907.08610)";
    const SUMMARY: &'static str =
        "wrapper: every k steps, interpolates the weights toward slow weights";

    fn suggested() -> serde_json::Value {
        serde_json::json!({"k": 5, "alpha": 0.5})
    }

    fn validate(&self) -> Result<()> {
        check_k(self.k)?;
        check_alpha(self.alpha)?;
        require_inner(Self::NAME, &self.inner).map(|_| ())
    }
}

/// Lookahead around an inner optimizer.
pub struct Lookahead {
    k: u64,
    alpha: f64,
    inner: Box<dyn Optimizer>,
    slow: BTreeMap<String, Vec<f32>>,
    counter: u64,
}

impl Lookahead {
    /// Wraps `inner`, validating `k >= 1` and `alpha` in [0, 1).
    pub fn wrap(inner: Box<dyn Optimizer>, k: u64, alpha: f64) -> Result<Self> {
        check_k(k)?;
        check_alpha(alpha)?;
        Ok(Lookahead {
            k,
            alpha,
            inner,
            slow: BTreeMap::new(),
            counter: 0,
        })
    }

    /// The slow weights of parameter `name`, once it has been stepped.
    pub fn slow_weights(&self, name: &str) -> Option<&[f32]> {
        self.slow.get(name).map(Vec::as_slice)
    }

    /// Inner steps since the last synchronisation.
    pub fn counter(&self) -> u64 {
        self.counter
    }
}

const SLOW_PREFIX: &str = "lookahead/";
const SLOW_BUFFER: &str = "slow_params";
const COUNTER_KEY: &str = "lookahead/counter";

impl Wrapper for Lookahead {
    inner_field!();

    fn name(&self) -> &str {
        LookaheadConfig::NAME
    }

    fn config(&self) -> Value {
        json!({
            "k": self.k,
            "alpha": self.alpha,
            "inner": inner_spec(self.inner.as_ref()),
        })
    }

    fn set_config(&mut self, config: Value) -> Result<()> {
        let cfg = LookaheadConfig::from_json(&config)?;
        let inner = require_inner(LookaheadConfig::NAME, &cfg.inner)?;
        reconfigure_inner(LookaheadConfig::NAME, self.inner.as_mut(), inner)?;
        self.k = cfg.k;
        self.alpha = cfg.alpha;
        Ok(())
    }

    fn step(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        let mut fresh = Vec::new();
        for p in params.iter() {
            p.check()?;
            match self.slow.get(p.name) {
                Some(s) if s.len() != p.numel() => {
                    return Err(Error::Shape(format!(
                        "parameter '{}' had {} elements in earlier steps, now {}",
                        p.name,
                        s.len(),
                        p.numel()
                    )))
                }
                Some(_) => {}
                None => fresh.push((p.name.to_string(), p.value.to_vec())),
            }
        }
        self.inner.step(params)?;
        self.slow.extend(fresh);
        self.counter += 1;
        if self.counter >= self.k {
            self.counter = 0;
            let w = (1.0 - self.alpha) as f32;
            for p in params.iter_mut() {
                let Some(slow) = self.slow.get_mut(p.name) else {
                    continue;
                };
                for (x, s) in p.value.iter_mut().zip(slow.iter_mut()) {
                    *x = lerp(*x, *s, w);
                    *s = *x;
                }
            }
        }
        Ok(())
    }

    fn state_dict(&self) -> StateDict {
        let mut d = StateDict::default();
        d.merge_prefixed("inner/", self.inner.state_dict());
        for (name, values) in &self.slow {
            d.tensors.push(StateEntry {
                param: format!("{SLOW_PREFIX}{name}"),
                name: SLOW_BUFFER.to_string(),
                values: values.clone(),
            });
        }
        d.scalars
            .insert(COUNTER_KEY.to_string(), self.counter as f64);
        d
    }

    fn load_state_dict(&mut self, dict: &StateDict) -> Result<()> {
        let mut slow = BTreeMap::new();
        for e in &dict.tensors {
            if e.param.starts_with("inner/") {
                continue;
            }
            let Some(name) = e.param.strip_prefix(SLOW_PREFIX) else {
                return Err(Error::Input(format!(
                    "lookahead state: entry '{}' is neither 'inner/...' nor '{SLOW_PREFIX}...'",
                    e.param
                )));
            };
            if e.name != SLOW_BUFFER {
                return Err(Error::Input(format!(
                    "lookahead state of '{name}': unknown buffer '{}' (expected '{SLOW_BUFFER}')",
                    e.name
                )));
            }
            if slow.insert(name.to_string(), e.values.clone()).is_some() {
                return Err(Error::Input(format!(
                    "lookahead state: slow weights of '{name}' given twice"
                )));
            }
        }
        let counter = match dict.scalars.get(COUNTER_KEY) {
            // The counter is reset to 0 when it reaches k.
            Some(&c) if c.is_finite() && c >= 0.0 && c.fract() == 0.0 && c < self.k as f64 => {
                c as u64
            }
            Some(&c) => {
                return Err(Error::Input(format!(
                    "state '{COUNTER_KEY}': invalid value {c} (must be an integer from 0 to k - 1 = {})",
                    self.k.saturating_sub(1)
                )))
            }
            None => return Err(Error::Input(format!("state has no '{COUNTER_KEY}' entry"))),
        };
        // The inner load is all or nothing; ours cannot fail past this point.
        self.inner.load_state_dict(&dict.strip_prefix("inner/"))?;
        self.slow = slow;
        self.counter = counter;
        Ok(())
    }

    fn hparam(&self, key: &str) -> Option<f64> {
        match key {
            "k" => Some(self.k as f64),
            "alpha" => Some(self.alpha),
            _ => self.inner.hparam(key),
        }
    }

    fn set_hparam(&mut self, key: &str, value: f64) -> Result<()> {
        match key {
            "k" => {
                if !(value.is_finite() && value >= 1.0 && value.fract() == 0.0) {
                    return Err(Error::hparam(
                        LookaheadConfig::NAME,
                        "k",
                        value,
                        "must be an integer >= 1",
                    ));
                }
                self.k = value as u64;
                Ok(())
            }
            "alpha" => {
                check_alpha(value)?;
                self.alpha = value;
                Ok(())
            }
            _ => self.inner.set_hparam(key, value),
        }
    }
}
