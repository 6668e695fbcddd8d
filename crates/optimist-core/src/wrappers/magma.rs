//! Magma: momentum-aligned random masking of the updates of any optimizer.
//!
//! **Reference:** `pytorch_optimizer.Magma` (pytorch-optimizer 4.1.0), the
//! per-parameter path (what it runs on CPU tensors). **Paper:** Joo, Xia,
//! Kim, Zhang & Ie, "On Surprising Effectiveness of Masking Updates in
//! Adaptive Optimizers", arXiv:2602.15322.
//!
//! Per step, for every parameter that `exclude` does not name:
//! ```text
//! p_old, g <- the parameter and its gradient before the step
//! the wrapped optimizer steps (its state is always updated densely)
//! m <- the wrapped optimizer's first moment after its step: its buffer
//!      `moment_key`, or for "auto" `exp_avg`, else `momentum_buffer`;
//!      if it has none (or moment_key is null): Magma's own
//!      m <- lerp(m, g, 1 - momentum_beta)
//! c <- sum( m / max(||m||, 1e-8) * g / max(||g||, 1e-8) )     (cosine similarity)
//! s <- lerp(s, sigmoid(c / tau), 1 - alignment_ema)           (s starts at 1)
//! z ~ Bernoulli(mask_prob)                                    (one draw per tensor)
//! p <- lerp(p_new, p_old, 1 - s z)      i.e. p_old + s z (p_new - p_old)
//! ```
//! The whole update of the wrapped optimizer is masked, decoupled weight
//! decay included; a kept update is scaled by s (no 1/mask_prob rescaling).
//!
//! **Randomness.** The masks come from a seeded [`SplitMix64`](crate::rng::SplitMix64) (hyperparameter
//! `seed`), whose state is saved in the state dict, so a run is
//! reproducible and resumable; it is not torch's generator, so masks match
//! the reference only when they are certain (mask_prob 0 or 1, which the
//! golden cases use). [`Magma::set_masks`] injects the masks of the next
//! step for tests.
//!
//! **Differences.** `exclude` takes parameter-name patterns (`*`, `?`)
//! instead of tensor objects. Cosines and norms are accumulated in f64.
//!
//! **Composition.** Magma reads the gradients it is given; to clip before
//! masking (the usual `clip_grad_norm_` then `step()` order), put the stages
//! in a [`Chain`](crate::transform::Chain) around Magma, not inside it.
//!
//! Defaults: mask_prob = 0.5, tau = 2.0, momentum_beta = 0.9,
//! alignment_ema = 0.9, moment_key = "auto", exclude = [], seed = 0,
//! inner = AdamW with its defaults (what the reference wraps when given
//! parameters). Replay form: `{"optimizer": "magma", "hparams":
//! {"mask_prob": 1.0, "inner": {"optimizer": "adam", "hparams": {...}}}}`.
//! SkipUpdate, the paper's unscaled-by-alignment variant with the unbiased
//! `1/mask_prob` rescaling, is the separate wrapper
//! [`skipupdate`](super::skipupdate); both draw their masks through
//! [`masking::BlockMasks`](super::masking::BlockMasks).

use std::collections::{BTreeMap, HashMap};

use super::masking::{self, BlockMasks};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::math::lerp;
use crate::optimizer::Optimizer;
use crate::state::{StateDict, StateEntry};
use crate::tensor::ParamMut;
use crate::validate as v;
use crate::wrappers::wrap::{InnerSpec, Wrapper};

/// Magma's hyperparameters (names and defaults of `pytorch_optimizer.Magma`,
/// plus `seed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MagmaConfig {
    /// Probability of keeping a tensor's update (default 0.5).
    pub mask_prob: f64,
    /// Temperature of the alignment sigmoid (default 2.0).
    pub tau: f64,
    /// EMA rate of the fallback momentum (default 0.9).
    pub momentum_beta: f64,
    /// EMA rate of the alignment score (default 0.9).
    pub alignment_ema: f64,
    /// First-moment buffer of the wrapped optimizer: "auto" (default),
    /// a buffer name, or null for Magma's own momentum.
    pub moment_key: Option<String>,
    /// Name patterns of parameters whose updates are never masked.
    pub exclude: Vec<String>,
    /// Seed of the mask generator (default 0).
    pub seed: u64,
    /// The wrapped optimizer (default AdamW with its defaults).
    pub inner: Option<InnerSpec>,
}

impl Default for MagmaConfig {
    fn default() -> Self {
        MagmaConfig {
            mask_prob: 0.5,
            tau: 2.0,
            momentum_beta: 0.9,
            alignment_ema: 0.9,
            moment_key: Some("auto".into()),
            exclude: Vec::new(),
            seed: 0,
            inner: None,
        }
    }
}

const NAME: &str = "magma";
const SCALARS: &[&str] = &["mask_prob", "tau", "momentum_beta", "alignment_ema"];

impl MagmaConfig {
    /// Checks Magma's own hyperparameters as the reference does.
    pub fn validate(&self) -> Result<()> {
        v::unit_interval(NAME, "mask_prob", self.mask_prob)?;
        v::positive(NAME, "tau", self.tau)?;
        v::unit_interval(NAME, "momentum_beta", self.momentum_beta)?;
        v::unit_interval(NAME, "alignment_ema", self.alignment_ema)?;
        if let Some(inner) = &self.inner {
            if inner.optimizer == NAME {
                return Err(Error::config(NAME, "cannot wrap another magma"));
            }
        }
        Ok(())
    }

    fn scalar(&self, key: &str) -> Option<f64> {
        match key {
            "mask_prob" => Some(self.mask_prob),
            "tau" => Some(self.tau),
            "momentum_beta" => Some(self.momentum_beta),
            "alignment_ema" => Some(self.alignment_ema),
            _ => None,
        }
    }
}

masking::masking_config!(MagmaConfig, NAME);

/// The Magma wrapper: implements [`Optimizer`] around any other optimizer.
pub struct Magma {
    config: MagmaConfig,
    inner: Box<dyn Optimizer>,
    alignment: BTreeMap<String, f32>,
    momentum: BTreeMap<String, Vec<f32>>,
    masks: BlockMasks,
}

impl Magma {
    /// Wraps `inner`; `config.inner` is ignored (it describes `inner` in
    /// JSON configurations).
    pub fn new(mut config: MagmaConfig, inner: Box<dyn Optimizer>) -> Result<Self> {
        config.inner = None;
        config.validate()?;
        Ok(Magma {
            masks: BlockMasks::new(config.seed),
            config,
            inner,
            alignment: BTreeMap::new(),
            momentum: BTreeMap::new(),
        })
    }

    /// The alignment score of parameter `name`, once seen.
    pub fn alignment(&self, name: &str) -> Option<f32> {
        self.alignment.get(name).copied()
    }

    /// Uses these masks (true = keep the update) at the next step instead of
    /// drawing them; parameters not named are drawn as usual.
    pub fn set_masks(&mut self, masks: HashMap<String, bool>) {
        self.masks.set_masks(masks);
    }

    fn excluded(&self, name: &str) -> bool {
        masking::excluded(&self.config.exclude, name)
    }
}

/// `sum(a / max(||a||, 1e-8) * b / max(||b||, 1e-8))`, torch's
/// `cosine_similarity` on flattened tensors, accumulated in f64.
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let norm = |v: &[f32]| {
        v.iter()
            .map(|&x| (x as f64).powi(2))
            .sum::<f64>()
            .sqrt()
            .max(1e-8)
    };
    let (na, nb) = (norm(a), norm(b));
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 / na) * (y as f64 / nb))
        .sum()
}

impl Wrapper for Magma {
    masking::masking_wrapper!(MagmaConfig);

    fn step(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        for p in params.iter() {
            p.check()?;
            if let Some(m) = self.momentum.get(p.name) {
                if m.len() != p.numel() {
                    return Err(Error::Shape(format!(
                        "parameter '{}' had {} elements in earlier steps, now {}",
                        p.name,
                        m.len(),
                        p.numel()
                    )));
                }
            }
        }
        let saved: Vec<Option<(Vec<f32>, Vec<f32>)>> = params
            .iter()
            .map(|p| (!self.excluded(p.name)).then(|| (p.value.to_vec(), p.grad.to_vec())))
            .collect();
        self.inner.step(params)?;
        self.masks.begin_step();
        let cfg = &self.config;
        for (p, saved) in params.iter_mut().zip(saved) {
            let Some((old, grad)) = saved else { continue };
            let moment = match cfg.moment_key.as_deref() {
                None => None,
                Some("auto") => self
                    .inner
                    .state_buffer(p.name, "exp_avg")
                    .or_else(|| self.inner.state_buffer(p.name, "momentum_buffer")),
                Some(key) => self.inner.state_buffer(p.name, key),
            }
            .filter(|m| m.len() == grad.len());
            let cos = match moment {
                Some(m) => cosine(m, &grad),
                None => {
                    let m = self
                        .momentum
                        .entry(p.name.to_string())
                        .or_insert_with(|| vec![0.0; grad.len()]);
                    let w = (1.0 - cfg.momentum_beta) as f32;
                    for (mi, &gi) in m.iter_mut().zip(&grad) {
                        *mi = lerp(*mi, gi, w);
                    }
                    cosine(m, &grad)
                }
            };
            let target = (1.0 / (1.0 + (-(cos as f32 as f64) / cfg.tau).exp())) as f32;
            let a = self.alignment.entry(p.name.to_string()).or_insert(1.0);
            *a = lerp(*a, target, (1.0 - cfg.alignment_ema) as f32);
            let keep = self.masks.keep(p.name, cfg.mask_prob);
            let blend = *a * if keep { 1.0 } else { 0.0 };
            let w = 1.0 - blend;
            for (x, &o) in p.value.iter_mut().zip(&old) {
                *x = lerp(*x, o, w);
            }
        }
        Ok(())
    }

    fn state_dict(&self) -> StateDict {
        let mut d = StateDict::default();
        d.merge_prefixed("inner/", self.inner.state_dict());
        self.masks.save(&mut d);
        for (k, &a) in &self.alignment {
            d.scalars.insert(format!("alignment/{k}"), a as f64);
        }
        for (k, m) in &self.momentum {
            d.tensors.push(StateEntry {
                param: k.clone(),
                name: "momentum".into(),
                values: m.clone(),
            });
        }
        d
    }

    fn load_state_dict(&mut self, dict: &StateDict) -> Result<()> {
        let mut masks = self.masks.clone();
        masks.load(NAME, dict)?;
        let mut alignment = BTreeMap::new();
        for (k, &x) in &dict.scalars {
            if let Some(name) = k.strip_prefix("alignment/") {
                alignment.insert(name.to_string(), x as f32);
            } else if !k.starts_with("inner/") && !masking::STATE_SCALARS.contains(&k.as_str()) {
                return Err(Error::Input(format!("magma: unknown state entry '{k}'")));
            }
        }
        let mut momentum = BTreeMap::new();
        for e in &dict.tensors {
            if e.param.starts_with("inner/") {
                continue;
            }
            if e.name != "momentum" {
                return Err(Error::Input(format!(
                    "magma: unknown state buffer '{}' of '{}'",
                    e.name, e.param
                )));
            }
            momentum.insert(e.param.clone(), e.values.clone());
        }
        self.inner.load_state_dict(&dict.strip_prefix("inner/"))?;
        self.masks = masks;
        self.alignment = alignment;
        self.momentum = momentum;
        Ok(())
    }

    fn hparam(&self, key: &str) -> Option<f64> {
        self.config.scalar(key).or_else(|| self.inner.hparam(key))
    }

    fn set_hparam(&mut self, key: &str, value: f64) -> Result<()> {
        if SCALARS.contains(&key) {
            let mut cfg = self.config.clone();
            match key {
                "mask_prob" => cfg.mask_prob = value,
                "tau" => cfg.tau = value,
                "momentum_beta" => cfg.momentum_beta = value,
                _ => cfg.alignment_ema = value,
            }
            cfg.validate()?;
            self.config = cfg;
            Ok(())
        } else {
            self.inner.set_hparam(key, value)
        }
    }
}
