//! Gradient accumulation over `k` micro-batches: `k` calls of
//! [`Optimizer::step`] make one step of the inner optimizer on the mean
//! gradient, so that with micro-batches of equal size the result is the one
//! step on the big batch (`mean = (g_1 + ... + g_k) / k`, summed in f32 in
//! call order, then divided by k). The first `k - 1` calls leave the
//! parameters untouched. Like optax's `MultiSteps` (whose running mean
//! rounds differently) and burn's `GradientsAccumulator`.
//!
//! No copy of the parameters is made. Where the sum lives:
//!
//! - [`AccumulateIn::Buffer`] (default): the wrapper keeps one f32 sum per
//!   parameter element (allocated once, reused); gradients may be fresh
//!   values at every call. On the k-th call the mean is written into the
//!   gradient slices before the inner step.
//! - [`AccumulateIn::Grad`]: no buffer at all. The caller adds each
//!   micro-batch's gradient into the same gradient storage (as `backward()`
//!   accumulates into torch's `.grad`) and passes the running sum at every
//!   call; on the k-th call the wrapper divides it by k, steps, and zeroes
//!   the gradients for the next cycle. Checkpoints are then only complete
//!   at cycle boundaries (the partial sum is the caller's memory).
//!
//! Every call of a cycle must pass the same parameters (names and sizes);
//! anything else is an error that changes nothing. If the inner step fails
//! the cycle is dropped. The position in the cycle (and the partial sums in
//! buffer mode) are part of the state.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::optimizer::Optimizer;
use crate::state::{StateDict, StateEntry};
use crate::tensor::ParamMut;

use super::wrap::{inner_field, Wrapper};
use super::{check_params, check_state_keys, count_scalar, inner_spec, split_config, unknown_key};

/// Where the gradient sum of a cycle is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccumulateIn {
    /// In a buffer of the wrapper (one f32 per parameter element).
    Buffer,
    /// In the caller's gradient storage (no buffer).
    Grad,
}

impl AccumulateIn {
    fn as_str(self) -> &'static str {
        match self {
            AccumulateIn::Buffer => "buffer",
            AccumulateIn::Grad => "grad",
        }
    }
}

/// An optimizer that steps once per `k` micro-batches on their mean gradient.
pub struct GradAccumulation {
    inner: Box<dyn Optimizer>,
    k: u64,
    mode: AccumulateIn,
    /// Calls so far in the current cycle (0 ..= k - 1).
    count: u64,
    /// Buffer mode: gradient sums of the current cycle (kept allocated).
    sums: BTreeMap<String, Vec<f32>>,
    /// Parameter names and sizes of the current cycle (empty when unknown).
    cycle: Vec<(String, usize)>,
}

impl GradAccumulation {
    /// Wraps `inner`, stepping it every `k >= 1` calls.
    pub fn new(inner: Box<dyn Optimizer>, k: u64, mode: AccumulateIn) -> Result<Self> {
        crate::validate::at_least("grad_accumulation", "k", k, 1)?;
        Ok(GradAccumulation {
            inner,
            k,
            mode,
            count: 0,
            sums: BTreeMap::new(),
            cycle: Vec::new(),
        })
    }

    /// Micro-batches accumulated in the current cycle.
    pub fn pending(&self) -> u64 {
        self.count
    }

    /// Whether the next call steps the inner optimizer.
    pub fn steps_next(&self) -> bool {
        self.count + 1 == self.k
    }

    fn check_cycle(&self, params: &[ParamMut<'_>]) -> Result<()> {
        if self.count == 0 || self.cycle.is_empty() {
            return Ok(());
        }
        if cycle_of(params) == self.cycle {
            return Ok(());
        }
        let names: Vec<String> = params
            .iter()
            .map(|p| format!("{}[{}]", p.name, p.numel()))
            .collect();
        let expected: Vec<String> = self
            .cycle
            .iter()
            .map(|(n, len)| format!("{n}[{len}]"))
            .collect();
        Err(Error::Input(format!(
            "gradient accumulation: micro-batch {} of {} has parameters {names:?}, \
             the cycle started with {expected:?}",
            self.count + 1,
            self.k
        )))
    }
}

/// Names and sizes of the parameters of a call, sorted by name.
fn cycle_of(params: &[ParamMut<'_>]) -> Vec<(String, usize)> {
    let mut c: Vec<(String, usize)> = params
        .iter()
        .map(|p| (p.name.to_string(), p.numel()))
        .collect();
    c.sort();
    c
}

impl Wrapper for GradAccumulation {
    inner_field!();

    fn config(&self) -> Value {
        json!({
            "wrapper": "grad_accumulation",
            "k": self.k,
            "accumulate_in": self.mode.as_str(),
            "inner": inner_spec(self.inner.as_ref()),
        })
    }

    /// Accepts the form [`Optimizer::config`] reports. Changing `k` or
    /// `accumulate_in` is refused in the middle of a cycle.
    fn set_config(&mut self, config: Value) -> Result<()> {
        let (own, inner_hp) = split_config("grad_accumulation", &config)?;
        let (mut k, mut mode) = (self.k, self.mode);
        for (key, v) in own.as_object().into_iter().flatten() {
            match key.as_str() {
                "k" => {
                    k = v.as_u64().filter(|&k| k >= 1).ok_or_else(|| {
                        Error::hparam("grad_accumulation", "k", v, "must be an integer >= 1")
                    })?
                }
                "accumulate_in" => {
                    mode = match v.as_str() {
                        Some("buffer") => AccumulateIn::Buffer,
                        Some("grad") => AccumulateIn::Grad,
                        _ => {
                            return Err(Error::hparam(
                                "grad_accumulation",
                                "accumulate_in",
                                v,
                                "must be \"buffer\" or \"grad\"",
                            ))
                        }
                    }
                }
                _ => return Err(unknown_key("grad_accumulation", key)),
            }
        }
        if (k != self.k || mode != self.mode) && self.count != 0 {
            return Err(Error::config(
                "grad_accumulation",
                format!(
                    "cannot change k or accumulate_in with {} micro-batches pending",
                    self.count
                ),
            ));
        }
        if let Some(hp) = inner_hp {
            self.inner.set_config(hp)?;
        }
        self.k = k;
        self.mode = mode;
        Ok(())
    }

    fn step(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        check_params(params)?;
        self.check_cycle(params)?;
        if self.count == 0 {
            self.cycle = cycle_of(params);
        }
        let last = self.count + 1 == self.k;
        if self.mode == AccumulateIn::Buffer {
            if self.count == 0 {
                self.sums.retain(|n, _| params.iter().any(|p| p.name == n));
            }
            for p in params.iter() {
                let sum = self.sums.entry(p.name.to_string()).or_default();
                if self.count == 0 {
                    sum.clear();
                    sum.extend_from_slice(p.grad);
                } else {
                    for (s, &g) in sum.iter_mut().zip(p.grad.iter()) {
                        *s += g;
                    }
                }
            }
        }
        if !last {
            self.count += 1;
            return Ok(());
        }
        let k = self.k as f32;
        for p in params.iter_mut() {
            match self.mode {
                AccumulateIn::Buffer => {
                    let sum = self.sums.get(p.name).map(Vec::as_slice).unwrap_or(&[]);
                    for (g, &s) in p.grad.iter_mut().zip(sum) {
                        *g = s / k;
                    }
                }
                AccumulateIn::Grad => {
                    for g in p.grad.iter_mut() {
                        *g /= k;
                    }
                }
            }
        }
        self.count = 0;
        let result = self.inner.step(params);
        if self.mode == AccumulateIn::Grad {
            for p in params.iter_mut() {
                p.grad.iter_mut().for_each(|g| *g = 0.0);
            }
        }
        result
    }

    fn state_dict(&self) -> StateDict {
        let mut d = StateDict::default();
        d.merge_prefixed("inner/", self.inner.state_dict());
        d.scalars
            .insert("grad_accumulation/count".into(), self.count as f64);
        if self.mode == AccumulateIn::Buffer && self.count > 0 {
            for (name, _) in &self.cycle {
                if let Some(sum) = self.sums.get(name) {
                    d.tensors.push(StateEntry {
                        param: format!("grad_accumulation/{name}"),
                        name: "grad_sum".into(),
                        values: sum.clone(),
                    });
                }
            }
        }
        d
    }

    fn load_state_dict(&mut self, dict: &StateDict) -> Result<()> {
        check_state_keys(dict, "grad_accumulation")?;
        let count = count_scalar(dict, "grad_accumulation/count")?;
        if count >= self.k {
            return Err(Error::Input(format!(
                "grad_accumulation state: {count} pending micro-batches, but k = {}",
                self.k
            )));
        }
        let mut sums = BTreeMap::new();
        let mut cycle = Vec::new();
        for e in &dict.tensors {
            let Some(name) = e.param.strip_prefix("grad_accumulation/") else {
                continue;
            };
            if e.name != "grad_sum" || self.mode != AccumulateIn::Buffer || count == 0 {
                return Err(Error::Input(format!(
                    "grad_accumulation state: unexpected buffer '{}/{}' \
                     (accumulate_in = {}, {count} pending)",
                    e.param,
                    e.name,
                    self.mode.as_str()
                )));
            }
            cycle.push((name.to_string(), e.values.len()));
            sums.insert(name.to_string(), e.values.clone());
        }
        cycle.sort();
        if self.mode == AccumulateIn::Buffer && count > 0 && sums.is_empty() {
            return Err(Error::Input(format!(
                "grad_accumulation state: {count} micro-batches pending but no gradient sums"
            )));
        }
        self.inner.load_state_dict(&dict.strip_prefix("inner/"))?;
        self.count = count;
        self.sums = sums;
        self.cycle = cycle;
        Ok(())
    }
}
