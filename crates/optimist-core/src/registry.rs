//! The optimizer registry and front door: every optimizer by name, with
//! its hyperparameter defaults, reference implementation and paper, and
//! everything that builds an optimizer from JSON, wrappers around an inner
//! optimizer included (the inner one is built here, by name, so that the
//! wrappers themselves only take a built `Box<dyn Optimizer>`).

use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::optim::{self, Lookahead, LookaheadConfig, Magma, MagmaConfig, SkipUpdate, SkipUpdateConfig};
use crate::optimizer::Optimizer;
use crate::rule::{OptimizerConfig, UpdateRule};
use crate::wrap::{require_inner, wrapper_spec, InnerSpec};
use crate::wrappers::{Cautious, CautiousConfig};

pub use crate::optimizer::OptimizerSpec;

/// The spec of an [`UpdateRule`] run by the generic [`Engine`].
pub fn spec<R: UpdateRule>() -> OptimizerSpec {
    OptimizerSpec {
        name: R::NAME,
        reference: R::REFERENCE,
        paper: R::PAPER,
        summary: R::SUMMARY,
        defaults: || R::default().to_json(),
        build: |v| Ok(Box::new(Engine::new(R::from_json(v)?)?)),
    }
}

/// Every registered optimizer, in a stable order.
pub fn registry() -> &'static [OptimizerSpec] {
    static REGISTRY: OnceLock<Vec<OptimizerSpec>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        vec![
            spec::<optim::Sgd>(),
            spec::<optim::Adam>(),
            spec::<optim::AdamW>(),
            spec::<optim::Nadam>(),
            spec::<optim::Radam>(),
            spec::<optim::Adamax>(),
            spec::<optim::Adagrad>(),
            spec::<optim::Rmsprop>(),
            spec::<optim::Adadelta>(),
            spec::<optim::Adafactor>(),
            spec::<optim::Lion>(),
            spec::<optim::AdaBelief>(),
            spec::<optim::Lamb>(),
            spec::<optim::AdaBound>(),
            spec::<optim::SignSgd>(),
            lookahead_spec(),
            cautious_spec(),
            spec::<optim::Muon>(),
            spec::<optim::AdaMuon>(),
            spec::<optim::Namo>(),
            spec::<optim::NamoD>(),
            spec::<optim::SophiaH>(),
            spec::<optim::SophiaG>(),
            spec::<optim::AdaMomentum>(),
            optim::AdaGc::spec(),
            magma_spec(),
            skipupdate_spec(),
            optim::schedulefree::spec::<optim::AdamWScheduleFree>(),
            optim::schedulefree::spec::<optim::SgdScheduleFree>(),
            // Catalogue D: preconditioned, second-order, matrix and low-rank.
            spec::<optim::Soap>(),
            spec::<optim::Shampoo>(),
            spec::<optim::Kron>(),
            spec::<optim::AdaHessian>(),
            spec::<optim::Sm3>(),
            spec::<optim::NorMuon>(),
            spec::<optim::Scion>(),
            spec::<optim::GaLore>(),
        ]
    })
}

/// The spec registered under `name`.
pub fn find(name: &str) -> Option<&'static OptimizerSpec> {
    registry().iter().find(|s| s.name == name)
}

/// Builds optimizer `name` from JSON hyperparameters.
pub fn build(name: &str, hparams: &Value) -> Result<Box<dyn Optimizer>> {
    match find(name) {
        Some(spec) => (spec.build)(hparams),
        None => Err(Error::UnknownOptimizer {
            name: name.to_string(),
            known: registry()
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Builds the inner optimizer of wrapper `wrapper`; errors name the wrapper
/// and `inner`.
pub fn build_inner(wrapper: &str, inner: &InnerSpec) -> Result<Box<dyn Optimizer>> {
    build(&inner.optimizer.to_lowercase(), &inner.hparams)
        .map_err(|e| Error::config(wrapper, format!("inner: {e}")))
}

impl Cautious {
    /// Builds the wrapper and its inner optimizer from its JSON configuration.
    pub fn from_json(value: &Value) -> Result<Self> {
        let cfg = CautiousConfig::from_json(value)?;
        let inner = require_inner(CautiousConfig::NAME, &cfg.inner)?;
        Cautious::wrap(build_inner(CautiousConfig::NAME, inner)?)
    }
}

impl Lookahead {
    /// Builds the wrapper and its inner optimizer from JSON.
    pub fn from_json(value: &Value) -> Result<Self> {
        let cfg = LookaheadConfig::from_json(value)?;
        let inner = require_inner(LookaheadConfig::NAME, &cfg.inner)?;
        Lookahead::wrap(build_inner(LookaheadConfig::NAME, inner)?, cfg.k, cfg.alpha)
    }
}

impl Magma {
    /// Builds Magma and its wrapped optimizer (AdamW when none is named)
    /// from a JSON configuration.
    pub fn from_json(value: &Value) -> Result<Self> {
        let cfg = MagmaConfig::parse(value)?;
        let inner = build_inner_or_default("magma", &cfg.inner)?;
        Magma::new(cfg, inner)
    }
}

impl SkipUpdate {
    /// Builds SkipUpdate and its wrapped optimizer (AdamW when none is
    /// named) from JSON.
    pub fn from_json(value: &Value) -> Result<Self> {
        let cfg = SkipUpdateConfig::parse(value)?;
        let inner = build_inner_or_default("skipupdate", &cfg.inner)?;
        SkipUpdate::new(cfg, inner)
    }
}

fn cautious_spec() -> OptimizerSpec {
    wrapper_spec::<CautiousConfig>(|v| Ok(Box::new(Cautious::from_json(v)?)))
}

fn lookahead_spec() -> OptimizerSpec {
    wrapper_spec::<LookaheadConfig>(|v| Ok(Box::new(Lookahead::from_json(v)?)))
}

/// The inner optimizer of a masking wrapper whose configuration names none:
/// AdamW with its defaults.
fn default_inner() -> InnerSpec {
    InnerSpec {
        optimizer: "adamw".into(),
        hparams: json!({}),
    }
}

/// Builds the inner optimizer of masking wrapper `wrapper` from `spec`, or
/// the default one.
fn build_inner_or_default(wrapper: &str, spec: &Option<InnerSpec>) -> Result<Box<dyn Optimizer>> {
    let spec = spec.clone().unwrap_or_else(default_inner);
    build_inner(wrapper, &spec)
}

/// The registry defaults of a masking wrapper: its own defaults `own` with
/// `inner` set to the default inner optimizer and that optimizer's
/// defaults.
fn defaults_with_inner(mut own: Value) -> Value {
    let inner = default_inner();
    let hp = find(&inner.optimizer)
        .map(|s| (s.defaults)())
        .unwrap_or(Value::Null);
    own["inner"] = json!({"optimizer": inner.optimizer, "hparams": hp});
    own
}

fn magma_spec() -> OptimizerSpec {
    OptimizerSpec {
        name: "magma",
        reference: "pytorch_optimizer.Magma (pytorch-optimizer 4.1.0)",
        paper: "Joo, Xia, Kim, Zhang & Ie, On Surprising Effectiveness of Masking Updates in Adaptive Optimizers (arXiv:2602.15322)",
        summary: "wrapper: random per-tensor masking of any optimizer's update, scaled by momentum-gradient alignment",
        defaults: || {
            defaults_with_inner(serde_json::to_value(MagmaConfig::default()).unwrap_or(Value::Null))
        },
        build: |v| Ok(Box::new(Magma::from_json(v)?)),
    }
}

fn skipupdate_spec() -> OptimizerSpec {
    OptimizerSpec {
        name: "skipupdate",
        reference: "the paper's SkipUpdate rule (no published code)",
        paper: "Joo, Xia, Kim, Zhang & Ie, On Surprising Effectiveness of Masking Updates in Adaptive Optimizers (arXiv:2602.15322)",
        summary: "wrapper: keeps each tensor's update of any optimizer with probability p, rescaled by 1/p (unbiased); state updated densely",
        defaults: || {
            defaults_with_inner(
                serde_json::to_value(SkipUpdateConfig::default()).unwrap_or(Value::Null),
            )
        },
        build: |v| Ok(Box::new(SkipUpdate::from_json(v)?)),
    }
}

/// Builds an optimizer from `{"optimizer": NAME, "hparams": {...}}`, where
/// `hparams` is either the optimizer's hyperparameters or a wrapper's
/// configuration (an object with a `"wrapper"` key, as a wrapper's
/// [`Optimizer::config`] reports it).
pub fn build_spec(spec: &Value) -> Result<Box<dyn Optimizer>> {
    let Some(obj) = spec.as_object() else {
        return Err(Error::Input(format!(
            "optimizer spec must be an object {{\"optimizer\": NAME, \"hparams\": {{...}}}}, got {spec}"
        )));
    };
    if obj.contains_key("wrapper") {
        return build_wrapper(spec);
    }
    let Some(name) = obj.get("optimizer").and_then(Value::as_str) else {
        return Err(Error::Input(
            "optimizer spec has no string field 'optimizer'".into(),
        ));
    };
    for k in obj.keys() {
        if k != "optimizer" && k != "hparams" {
            return Err(Error::Input(format!("optimizer spec: unknown key '{k}'")));
        }
    }
    let hp = obj.get("hparams").cloned().unwrap_or(Value::Null);
    if hp.get("wrapper").is_some() {
        return build_wrapper(&hp);
    }
    build(&name.to_lowercase(), &hp)
}

/// A wrapper configuration `{"wrapper": KIND, ..., "inner": SPEC}` with its
/// inner optimizer built from `SPEC`.
fn build_wrapper(cfg: &Value) -> Result<Box<dyn Optimizer>> {
    let kind = cfg.get("wrapper").and_then(Value::as_str).unwrap_or("");
    let inner_spec = cfg
        .get("inner")
        .ok_or_else(|| Error::config(kind, "wrapper configuration has no 'inner'"))?;
    let inner = build_spec(inner_spec)?;
    crate::wrappers::wrap_with(inner, kind, cfg.clone())
}

