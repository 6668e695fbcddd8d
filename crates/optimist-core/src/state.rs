//! Per-parameter optimizer state: typed structs of named buffers, stored by
//! parameter name, enumerable as (parameter, state name, tensor) triples.

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, Result};
use crate::tensor::{ParamMut, StateTensor};

/// A typed per-parameter state: named buffers plus a step count.
///
/// Implemented by the [`param_state!`](crate::param_state) macro, which
/// declares the struct and its buffer names in one place.
pub trait ParamState: Default + Send + Sync + 'static {
    /// Names of the buffers, in declaration order.
    const BUFFERS: &'static [&'static str];
    /// The buffers whose length is not the parameter's element count
    /// (factored moments, per-parameter scalars). The store does not check
    /// their lengths; the update rule does.
    const UNSIZED: &'static [&'static str] = &[];
    /// Number of steps taken on this parameter.
    fn step(&self) -> u64;
    /// Sets the step count (checkpoint loading).
    fn set_step(&mut self, step: u64);
    /// The buffer called `name`.
    fn buffer(&self, name: &str) -> Option<&StateTensor>;
    /// The buffer called `name`, mutably.
    fn buffer_mut(&mut self, name: &str) -> Option<&mut StateTensor>;
    /// Pushes every buffer, in [`ParamState::BUFFERS`] order, onto `out`
    /// (the execution driver's access to all buffers at once).
    fn buffers_mut<'a>(&'a mut self, out: &mut Vec<&'a mut StateTensor>);
}

/// Declares a per-parameter state struct with a `step` counter and the given
/// [`StateTensor`] buffers, and implements [`ParamState`] for it. Buffers
/// listed after `; unsized:` may hold any number of values (see
/// [`ParamState::UNSIZED`]); the others hold one value per parameter element.
///
/// ```
/// optimist_core::param_state! {
///     /// State of a momentum method.
///     pub struct MomentumState { momentum_buffer }
/// }
/// let s = MomentumState::default();
/// assert!(!s.momentum_buffer.is_allocated());
///
/// optimist_core::param_state! {
///     /// State with a per-parameter scalar.
///     pub struct ScaledState { exp_avg; unsized: scale }
/// }
/// use optimist_core::ParamState;
/// assert_eq!(ScaledState::BUFFERS, ["exp_avg", "scale"]);
/// assert_eq!(ScaledState::UNSIZED, ["scale"]);
/// ```
#[macro_export]
macro_rules! param_state {
    ($(#[$m:meta])* pub struct $name:ident { $($field:ident),* $(,)? }) => {
        $crate::param_state! { $(#[$m])* pub struct $name { $($field),* ; unsized: } }
    };
    ($(#[$m:meta])* pub struct $name:ident {
        $($field:ident),* ; unsized: $($ufield:ident),* $(,)?
    }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name {
            /// Steps taken on this parameter.
            pub step: u64,
            $(
                #[doc = concat!("State buffer `", stringify!($field), "`.")]
                pub $field: $crate::tensor::StateTensor,
            )*
            $(
                #[doc = concat!("State buffer `", stringify!($ufield), "` (not parameter-sized).")]
                pub $ufield: $crate::tensor::StateTensor,
            )*
        }

        impl $name {
            /// Allocates every parameter-sized buffer as `n` zeros on first
            /// use (a buffer that holds another number of values is an error
            /// naming it) and advances the step count: the start of a step
            /// of a rule that keeps all these buffers from its first step.
            #[allow(dead_code)]
            pub fn start_step(&mut self, param: &str, n: usize) -> $crate::error::Result<()> {
                $(self.$field.ensure(param, stringify!($field), n, 0.0)?;)*
                let _ = (param, n);
                self.step += 1;
                Ok(())
            }
        }

        impl $crate::state::ParamState for $name {
            const BUFFERS: &'static [&'static str] =
                &[$(stringify!($field),)* $(stringify!($ufield),)*];
            const UNSIZED: &'static [&'static str] = &[$(stringify!($ufield)),*];
            fn step(&self) -> u64 { self.step }
            fn set_step(&mut self, step: u64) { self.step = step; }
            fn buffer(&self, name: &str) -> Option<&$crate::tensor::StateTensor> {
                match name {
                    $(stringify!($field) => Some(&self.$field),)*
                    $(stringify!($ufield) => Some(&self.$ufield),)*
                    _ => None,
                }
            }
            fn buffer_mut(&mut self, name: &str) -> Option<&mut $crate::tensor::StateTensor> {
                match name {
                    $(stringify!($field) => Some(&mut self.$field),)*
                    $(stringify!($ufield) => Some(&mut self.$ufield),)*
                    _ => None,
                }
            }
            fn buffers_mut<'a>(&'a mut self, out: &mut Vec<&'a mut $crate::tensor::StateTensor>) {
                $(out.push(&mut self.$field);)*
                $(out.push(&mut self.$ufield);)*
                let _ = out;
            }
        }
    };
}

/// Suffix of the entry that holds the codes of an 8-bit buffer (as f32
/// integers 0 to 255) beside its decoded values: buffer `exp_avg` stored in
/// 8 bits is saved as `exp_avg` (decoded), `exp_avg.q8_codes`,
/// `exp_avg.q8_scales` (one scale per block) and the scalar
/// `param/<name>/exp_avg.q8_block`. Loading restores the 8-bit storage
/// itself, so that resuming is bit-exact.
pub const Q8_CODES: &str = ".q8_codes";
/// Suffix of the entry of an 8-bit buffer's block scales (see [`Q8_CODES`]).
pub const Q8_SCALES: &str = ".q8_scales";
/// Suffix of the scalar of an 8-bit buffer's block size (see [`Q8_CODES`]).
pub const Q8_BLOCK: &str = ".q8_block";

/// One entry of an optimizer's state, for checkpoints and inspection.
#[derive(Debug, Clone, PartialEq)]
pub struct StateEntry {
    /// Parameter name (prefixed by the group name inside parameter groups).
    pub param: String,
    /// Buffer name, e.g. `exp_avg`.
    pub name: String,
    /// The buffer values.
    pub values: Vec<f32>,
}

/// An optimizer's whole state: buffers and scalars (step counts), keyed by
/// stable names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateDict {
    /// Buffers, sorted by (param, name).
    pub tensors: Vec<StateEntry>,
    /// Scalars such as `param/<name>/step` or `step`.
    pub scalars: BTreeMap<String, f64>,
}

impl StateDict {
    /// Adds every entry of `other` with `prefix` put in front of the names.
    pub fn merge_prefixed(&mut self, prefix: &str, other: StateDict) {
        for mut e in other.tensors {
            e.param = format!("{prefix}{}", e.param);
            self.tensors.push(e);
        }
        for (k, v) in other.scalars {
            self.scalars.insert(format!("{prefix}{k}"), v);
        }
    }

    /// The entries whose names start with `prefix`, with the prefix removed.
    pub fn strip_prefix(&self, prefix: &str) -> StateDict {
        let tensors = self
            .tensors
            .iter()
            .filter_map(|e| {
                e.param.strip_prefix(prefix).map(|p| StateEntry {
                    param: p.to_string(),
                    name: e.name.clone(),
                    values: e.values.clone(),
                })
            })
            .collect();
        let scalars = self
            .scalars
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), *v)))
            .collect();
        StateDict { tensors, scalars }
    }

    /// The optimizer's step count, the scalar `step`: a whole number from 0
    /// to 2^53, else an error naming the missing or invalid entry.
    pub fn step(&self) -> Result<u64> {
        match self.scalars.get("step") {
            Some(&s) if s.is_finite() && s >= 0.0 && s.fract() == 0.0 && s < 2f64.powi(53) => {
                Ok(s as u64)
            }
            Some(&s) => Err(Error::Input(format!("state 'step': invalid value {s}"))),
            None => Err(Error::Input("state has no 'step' entry".into())),
        }
    }

    /// Total bytes of the buffers as f32 values (not counting the codes
    /// and scales saved beside 8-bit buffers, see [`Q8_CODES`]).
    pub fn nbytes(&self) -> usize {
        self.tensors
            .iter()
            .filter(|e| !e.name.ends_with(Q8_CODES) && !e.name.ends_with(Q8_SCALES))
            .map(|e| e.values.len() * 4)
            .sum()
    }
}

/// Per-parameter states of one optimizer, keyed by parameter name.
///
/// Stored in first-use order with a name index; a step that presents the
/// parameters in the stored order (the usual case: the same model every
/// step) finds all its states with one string comparison per parameter.
/// Enumeration ([`StateStore::iter`], [`StateStore::state_dict`]) is sorted
/// by name.
#[derive(Debug, Clone)]
pub struct StateStore<S> {
    /// (name, number of elements or 0 while unknown, state).
    entries: Vec<(String, usize, S)>,
    index: HashMap<String, usize>,
}

impl<S> Default for StateStore<S> {
    fn default() -> Self {
        StateStore {
            entries: Vec::new(),
            index: HashMap::new(),
        }
    }
}

fn size_error(name: &str, had: usize, now: usize) -> Error {
    Error::Shape(format!(
        "parameter '{name}' had {had} elements in earlier steps, now {now}"
    ))
}

impl<S: ParamState> StateStore<S> {
    /// Index of the entry of `name` with `numel` elements, created on first use.
    fn slot(&mut self, name: &str, numel: usize) -> Result<usize> {
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                let i = self.entries.len();
                self.entries.push((name.to_string(), numel, S::default()));
                self.index.insert(name.to_string(), i);
                i
            }
        };
        let n = &mut self.entries[i].1;
        if *n == 0 {
            // Loaded from a checkpoint that held only a step count.
            *n = numel;
        }
        if *n != numel {
            return Err(size_error(name, *n, numel));
        }
        Ok(i)
    }

    /// The state of parameter `name` with `numel` elements, created empty on
    /// first use. A parameter that changes size between steps is an error.
    pub fn get(&mut self, name: &str, numel: usize) -> Result<&mut S> {
        let i = self.slot(name, numel)?;
        Ok(&mut self.entries[i].2)
    }

    /// Whether `params` (name, number of elements) are exactly the stored
    /// parameters in the stored order with compatible sizes: then they are
    /// distinct and [`StateStore::get_many`] needs no lookups.
    pub fn matches_order(&self, params: &[(&str, usize)]) -> bool {
        params.len() == self.entries.len()
            && params
                .iter()
                .zip(&self.entries)
                .all(|(&(name, numel), (n, m, _))| n == name && (*m == numel || *m == 0))
    }

    /// The states of several parameters at once, in the order of `params`
    /// (name, number of elements), created empty on first use. Names must be
    /// distinct.
    pub fn get_many(&mut self, params: &[(&str, usize)]) -> Result<Vec<&mut S>> {
        if self.matches_order(params) {
            return Ok(self
                .entries
                .iter_mut()
                .zip(params)
                .map(|(e, &(_, numel))| {
                    e.1 = numel;
                    &mut e.2
                })
                .collect());
        }
        let mut pos = vec![usize::MAX; self.entries.len() + params.len()];
        for (k, &(name, numel)) in params.iter().enumerate() {
            let i = self.slot(name, numel)?;
            if pos[i] != usize::MAX {
                return Err(Error::Input(format!(
                    "parameter '{name}' given twice in one step"
                )));
            }
            pos[i] = k;
        }
        let mut out: Vec<Option<&mut S>> = (0..params.len()).map(|_| None).collect();
        for (i, e) in self.entries.iter_mut().enumerate() {
            if let Some(slot) = out.get_mut(pos[i]) {
                *slot = Some(&mut e.2);
            }
        }
        out.into_iter()
            .zip(params)
            .map(|(s, (name, _))| {
                s.ok_or_else(|| Error::Input(format!("parameter '{name}': state missing")))
            })
            .collect()
    }

    /// Checks, without changing anything, that parameter `name` may be
    /// stepped with `numel` elements.
    pub fn check(&self, name: &str, numel: usize) -> Result<()> {
        match self.index.get(name).map(|&i| self.entries[i].1) {
            Some(n) if n != 0 && n != numel => Err(size_error(name, n, numel)),
            _ => Ok(()),
        }
    }

    /// Exchanges the buffers of parameter `param` (`numel` elements) with
    /// `buffers` (one per [`ParamState::BUFFERS`], in order) and sets its
    /// step count to `steps`: the body of [`crate::Optimizer::swap_state`]
    /// for engines over this store. `optimizer` names the optimizer in
    /// errors; nothing changes on error.
    pub fn swap(
        &mut self,
        optimizer: &str,
        param: &str,
        numel: usize,
        steps: u64,
        buffers: &mut [StateTensor],
    ) -> Result<()> {
        let names = S::BUFFERS;
        if buffers.len() != names.len() {
            return Err(Error::Input(format!(
                "{optimizer}: {} state buffers given for '{param}', expected {} ({})",
                buffers.len(),
                names.len(),
                names.join(", ")
            )));
        }
        for (t, name) in buffers.iter().zip(names) {
            if t.is_allocated() && !S::UNSIZED.contains(name) && t.len() != numel {
                return Err(Error::Shape(format!(
                    "state of '{param}': buffer '{name}' holds {} values, expected {numel}",
                    t.len()
                )));
            }
        }
        let st = self.get(param, numel)?;
        st.set_step(steps);
        let mut slots = Vec::with_capacity(names.len());
        st.buffers_mut(&mut slots);
        for (slot, t) in slots.into_iter().zip(buffers.iter_mut()) {
            std::mem::swap(slot, t);
        }
        Ok(())
    }

    /// The state of `name`, if any step has seen it.
    pub fn peek(&self, name: &str) -> Option<&S> {
        self.index.get(name).map(|&i| &self.entries[i].2)
    }

    /// The values of buffer `buffer` of parameter `param`, once allocated
    /// (the [`crate::Optimizer::state_buffer`] of an optimizer that keeps
    /// its states here).
    pub fn buffer(&self, param: &str, buffer: &str) -> Option<&[f32]> {
        let t = self.peek(param)?.buffer(buffer)?;
        t.is_allocated().then(|| t.as_slice())
    }

    /// Checks the parameters of one step before it changes anything: each
    /// one's lengths ([`ParamMut::check`]), its size against its state
    /// ([`StateStore::check`]) and that no name is given twice.
    pub fn check_params(&self, params: &[ParamMut<'_>]) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for p in params {
            p.check()?;
            self.check(p.name, p.numel())?;
            if !seen.insert(p.name) {
                return Err(Error::Input(format!(
                    "parameter '{}' given twice in one step",
                    p.name
                )));
            }
        }
        Ok(())
    }

    /// Number of parameters with state.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True before the first step.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Enumerates every allocated buffer and every step count.
    pub fn state_dict(&self) -> StateDict {
        let mut out = StateDict::default();
        for (param, s) in self.iter() {
            out.scalars
                .insert(format!("param/{param}/step"), s.step() as f64);
            for &b in S::BUFFERS {
                if let Some(t) = s.buffer(b).filter(|t| t.is_allocated()) {
                    out.tensors.push(StateEntry {
                        param: param.clone(),
                        name: b.to_string(),
                        values: t.to_vec(),
                    });
                    if let Some((codes, scales, block)) = t.q8_parts() {
                        out.tensors.push(StateEntry {
                            param: param.clone(),
                            name: format!("{b}{Q8_CODES}"),
                            values: codes.iter().map(|&c| c as f32).collect(),
                        });
                        out.tensors.push(StateEntry {
                            param: param.clone(),
                            name: format!("{b}{Q8_SCALES}"),
                            values: scales.to_vec(),
                        });
                        out.scalars
                            .insert(format!("param/{param}/{b}{Q8_BLOCK}"), block as f64);
                    }
                }
            }
        }
        out
    }

    /// Replaces all states with the content of `dict`. Every buffer must be
    /// one this state type declares; lengths of the parameter-sized buffers
    /// must agree per parameter. On error nothing is changed.
    pub fn load_state_dict(&mut self, dict: &StateDict) -> Result<()> {
        let mut fresh: BTreeMap<String, (usize, S)> = BTreeMap::new();
        for (key, &v) in &dict.scalars {
            let Some(param) = key
                .strip_prefix("param/")
                .and_then(|k| k.strip_suffix("/step"))
            else {
                continue;
            };
            if !(v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 2f64.powi(53)) {
                return Err(Error::Input(format!(
                    "state '{key}': invalid step count {v}"
                )));
            }
            let entry = fresh
                .entry(param.to_string())
                .or_insert((usize::MAX, S::default()));
            entry.1.set_step(v as u64);
        }
        // 8-bit parts, applied once every buffer is read.
        // (parameter, buffer) -> (codes, block scales) as saved.
        type Q8Parts<'d> = BTreeMap<(String, String), (Option<&'d [f32]>, Option<&'d [f32]>)>;
        let mut q8: Q8Parts<'_> = BTreeMap::new();
        for e in &dict.tensors {
            if let Some(b) = e.name.strip_suffix(Q8_CODES) {
                let slot = q8.entry((e.param.clone(), b.to_string())).or_default();
                if slot.0.replace(&e.values).is_some() {
                    return Err(Error::Input(format!(
                        "state of '{}': '{}' given twice",
                        e.param, e.name
                    )));
                }
                continue;
            }
            if let Some(b) = e.name.strip_suffix(Q8_SCALES) {
                let slot = q8.entry((e.param.clone(), b.to_string())).or_default();
                if slot.1.replace(&e.values).is_some() {
                    return Err(Error::Input(format!(
                        "state of '{}': '{}' given twice",
                        e.param, e.name
                    )));
                }
                continue;
            }
            let entry = fresh
                .entry(e.param.clone())
                .or_insert((usize::MAX, S::default()));
            if !S::UNSIZED.contains(&e.name.as_str()) {
                if entry.0 != usize::MAX && entry.0 != e.values.len() {
                    return Err(Error::Shape(format!(
                        "state of '{}': buffer '{}' has {} values, other buffers have {}",
                        e.param,
                        e.name,
                        e.values.len(),
                        entry.0
                    )));
                }
                entry.0 = e.values.len();
            }
            let Some(buf) = entry.1.buffer_mut(&e.name) else {
                return Err(Error::Input(format!(
                    "state of '{}': unknown buffer '{}' (expected one of {:?})",
                    e.param,
                    e.name,
                    S::BUFFERS
                )));
            };
            *buf = StateTensor::from_slice(&e.values);
        }
        for ((param, b), parts) in q8 {
            let what = format!("state of '{param}': 8-bit buffer '{b}'");
            let (Some(codes), Some(scales)) = parts else {
                return Err(Error::Input(format!(
                    "{what}: needs both '{b}{Q8_CODES}' and '{b}{Q8_SCALES}'"
                )));
            };
            let key = format!("param/{param}/{b}{Q8_BLOCK}");
            let block = match dict.scalars.get(&key) {
                Some(&v) if v.fract() == 0.0 && (1.0..=16_777_216.0).contains(&v) => v as usize,
                Some(&v) => return Err(Error::Input(format!("{what}: invalid block size {v}"))),
                None => return Err(Error::Input(format!("{what}: no scalar '{key}'"))),
            };
            let codes = codes
                .iter()
                .map(|&c| {
                    if c.fract() == 0.0 && (0.0..=255.0).contains(&c) {
                        Ok(c as u8)
                    } else {
                        Err(Error::Input(format!("{what}: invalid code {c}")))
                    }
                })
                .collect::<Result<Vec<u8>>>()?;
            let buf = fresh
                .get_mut(&param)
                .and_then(|(_, s)| s.buffer_mut(&b))
                .filter(|t| t.is_allocated())
                .ok_or_else(|| {
                    Error::Input(format!("{what}: codes without the buffer's values"))
                })?;
            let t = StateTensor::from_q8(codes, scales.to_vec(), block)
                .map_err(|e| Error::Input(format!("{what}: {e}")))?;
            // The decoded values saved beside the codes must be theirs.
            let same = t.len() == buf.len()
                && t.to_vec()
                    .iter()
                    .zip(buf.to_vec().iter())
                    .all(|(x, y)| x.to_bits() == y.to_bits());
            if !same {
                return Err(Error::Input(format!(
                    "{what}: the codes and scales do not decode to the saved values"
                )));
            }
            *buf = t;
        }
        // Parameters with only a step count keep an unknown size until first use.
        let mut store = StateStore::default();
        for (name, (n, s)) in fresh {
            let n = if n == usize::MAX { 0 } else { n };
            store.index.insert(name.clone(), store.entries.len());
            store.entries.push((name, n, s));
        }
        *self = store;
        Ok(())
    }

    /// Calls `f` on every (name, state), in storage order.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&str, &mut S)) {
        for (name, _, s) in self.entries.iter_mut() {
            f(name, s);
        }
    }

    /// Iterates over (name, state), sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &S)> {
        let mut v: Vec<(&String, &S)> = self.entries.iter().map(|(k, _, s)| (k, s)).collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v.into_iter()
    }
}
