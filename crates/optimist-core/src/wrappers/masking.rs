//! Per-tensor update masking, shared by the masking wrappers ([`Magma`] and
//! [`SkipUpdate`]): one block is one parameter tensor; a seeded
//! [`SplitMix64`] draws one Bernoulli mask per block and step; masks can be
//! injected for tests; the generator state and the step count are saved in
//! the wrapper's state dict as the scalars `step`, `rng_hi` and `rng_lo`
//! (the two 32-bit halves of the generator state, exact in f64).
//!
//! [`Magma`]: super::magma::Magma
//! [`SkipUpdate`]: super::skipupdate::SkipUpdate

use std::collections::HashMap;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::groups::glob_match;
use crate::optimizer::Optimizer;
use crate::rng::SplitMix64;
use crate::state::StateDict;
use crate::wrappers::wrap::{reconfigure_inner, InnerSpec};

/// Scalars of a wrapper's state dict owned by [`BlockMasks`].
pub const STATE_SCALARS: &[&str] = &["step", "rng_hi", "rng_lo"];

/// The mask generator of a masking wrapper: seeded draws, injected masks,
/// the step count, and their checkpointing.
#[derive(Debug, Clone)]
pub struct BlockMasks {
    rng: SplitMix64,
    step: u64,
    forced: Option<HashMap<String, bool>>,
    current: Option<HashMap<String, bool>>,
}

impl BlockMasks {
    /// A generator started from `seed`, at step 0.
    pub fn new(seed: u64) -> Self {
        BlockMasks {
            rng: SplitMix64::new(seed),
            step: 0,
            forced: None,
            current: None,
        }
    }

    /// Restarts the generator from `seed` (the step count is kept).
    pub fn reseed(&mut self, seed: u64) {
        self.rng = SplitMix64::new(seed);
    }

    /// Steps taken so far.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Uses these masks (true = keep the update) at the next step instead of
    /// drawing them; blocks not named are drawn as usual.
    pub fn set_masks(&mut self, masks: HashMap<String, bool>) {
        self.forced = Some(masks);
    }

    /// Starts a step: counts it and takes the injected masks, if any.
    pub fn begin_step(&mut self) {
        self.step += 1;
        self.current = self.forced.take();
    }

    /// The mask of block `name` at this step: the injected one, else a
    /// draw of Bernoulli(`keep_prob`). Blocks are drawn in the order the
    /// wrapper visits them, so a run is reproducible from the seed.
    pub fn keep(&mut self, name: &str, keep_prob: f64) -> bool {
        match self.current.as_ref().and_then(|f| f.get(name)) {
            Some(&k) => k,
            None => self.rng.bernoulli(keep_prob),
        }
    }

    /// Writes `step`, `rng_hi`, `rng_lo` into `dict`.
    pub fn save(&self, dict: &mut StateDict) {
        dict.scalars.insert("step".into(), self.step as f64);
        let s = self.rng.state();
        dict.scalars.insert("rng_hi".into(), (s >> 32) as f64);
        dict.scalars
            .insert("rng_lo".into(), (s & 0xFFFF_FFFF) as f64);
    }

    /// Reads what [`BlockMasks::save`] wrote; errors name `wrapper` and
    /// leave `self` unchanged.
    pub fn load(&mut self, wrapper: &str, dict: &StateDict) -> Result<()> {
        let word = |k: &str| -> Result<u64> {
            match dict.scalars.get(k) {
                Some(&x) if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < 4294967296.0 => {
                    Ok(x as u64)
                }
                Some(&x) => Err(Error::Input(format!(
                    "{wrapper}: invalid state '{k}' = {x}"
                ))),
                None => Err(Error::Input(format!("{wrapper}: state has no '{k}'"))),
            }
        };
        let step = match dict.scalars.get("step") {
            Some(&x) if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < 2f64.powi(53) => {
                x as u64
            }
            _ => {
                return Err(Error::Input(format!(
                    "{wrapper}: state has no valid 'step'"
                )))
            }
        };
        let rng = (word("rng_hi")? << 32) | word("rng_lo")?;
        self.step = step;
        self.rng.set_state(rng);
        Ok(())
    }
}

/// Whether `name` matches one of the `patterns` (`*`, `?`).
pub fn excluded(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| glob_match(p, name))
}

/// A masking wrapper's configuration: its own fields `own` with `inner`
/// set to the inner optimizer's name and configuration.
pub(crate) fn config_with_inner(mut own: Value, inner: &dyn Optimizer) -> Value {
    own["inner"] = crate::wrappers::wrap::inner_json(inner);
    own
}

/// The part of a masking wrapper's `set_config` that touches its inner
/// optimizer and masks: the inner optimizer takes `spec`'s hyperparameters
/// (if given; nothing changes on error), then the masks restart from
/// `new_seed` if it differs from `old_seed`.
pub(crate) fn reconfigure(
    wrapper: &str,
    inner: &mut dyn Optimizer,
    spec: Option<&InnerSpec>,
    masks: &mut BlockMasks,
    old_seed: u64,
    new_seed: u64,
) -> Result<()> {
    if let Some(spec) = spec {
        reconfigure_inner(wrapper, inner, spec)?;
    }
    if new_seed != old_seed {
        masks.reseed(new_seed);
    }
    Ok(())
}
