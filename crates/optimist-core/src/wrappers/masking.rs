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

use serde::Serialize;
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

/// The configuration of a masking wrapper (Magma, SkipUpdate): what
/// [`config`] and [`set_config`] need to know of it.
pub(crate) trait MaskingConfig: Serialize + Sized {
    /// The wrapper's registry name.
    const NAME: &'static str;

    /// Reads the configuration from JSON and validates it.
    fn parse(value: &Value) -> Result<Self>;

    /// Seed of the mask generator.
    fn seed(&self) -> u64;

    /// The `inner` field: the wrapped optimizer in JSON configurations.
    fn inner_spec_mut(&mut self) -> &mut Option<InnerSpec>;
}

/// Gives a masking wrapper's configuration type (fields `seed` and `inner`,
/// an inherent `validate`) its `parse` and implements [`MaskingConfig`]
/// for it, registered as `$name`.
macro_rules! masking_config {
    ($config:ty, $name:expr) => {
        impl $config {
            /// Reads the configuration from JSON and validates it (the inner
            /// optimizer is built by [`crate::registry`]).
            pub fn parse(value: &serde_json::Value) -> $crate::error::Result<Self> {
                let cfg: Self = $crate::stages::parse($name, value)?;
                cfg.validate()?;
                Ok(cfg)
            }
        }

        impl $crate::wrappers::masking::MaskingConfig for $config {
            const NAME: &'static str = $name;

            fn parse(value: &serde_json::Value) -> $crate::error::Result<Self> {
                <$config>::parse(value)
            }

            fn seed(&self) -> u64 {
                self.seed
            }

            fn inner_spec_mut(&mut self) -> &mut Option<$crate::wrappers::wrap::InnerSpec> {
                &mut self.inner
            }
        }
    };
}
pub(crate) use masking_config;

/// The [`Wrapper`](super::Wrapper) items that every masking wrapper shares:
/// the wrapped optimizer (field `inner`), its name (that of the
/// configuration type `$config`), and its configuration (field `config`,
/// masks in field `masks`) through [`config`] and [`set_config`].
macro_rules! masking_wrapper {
    ($config:ty) => {
        $crate::wrappers::wrap::inner_field!();

        fn name(&self) -> &str {
            <$config as $crate::wrappers::masking::MaskingConfig>::NAME
        }

        fn config(&self) -> serde_json::Value {
            $crate::wrappers::masking::config(&self.config, self.inner.as_ref())
        }

        fn set_config(&mut self, config: serde_json::Value) -> $crate::error::Result<()> {
            $crate::wrappers::masking::set_config(
                &mut self.config,
                self.inner.as_mut(),
                &mut self.masks,
                &config,
            )
        }
    };
}
pub(crate) use masking_wrapper;

/// A masking wrapper's configuration: its own fields `cfg` with `inner`
/// set to the inner optimizer's name and configuration.
pub(crate) fn config<C: MaskingConfig>(cfg: &C, inner: &dyn Optimizer) -> Value {
    let mut own = serde_json::to_value(cfg).unwrap_or(Value::Null);
    own["inner"] = crate::wrappers::inner_spec(inner);
    own
}

/// A masking wrapper's `set_config`: reads `config` (unchanged on error),
/// gives the inner optimizer the hyperparameters of its `inner` (if
/// given), restarts the masks if the seed changed, and keeps the new
/// configuration (without `inner`) in `current`.
pub(crate) fn set_config<C: MaskingConfig>(
    current: &mut C,
    inner: &mut dyn Optimizer,
    masks: &mut BlockMasks,
    config: &Value,
) -> Result<()> {
    let mut cfg = C::parse(config)?;
    if let Some(spec) = cfg.inner_spec_mut().take() {
        reconfigure_inner(C::NAME, inner, &spec)?;
    }
    if cfg.seed() != current.seed() {
        masks.reseed(cfg.seed());
    }
    *current = cfg;
    Ok(())
}
