//! The optimizer registry: every optimizer by name, with its
//! hyperparameter defaults, reference implementation and paper.

use std::sync::OnceLock;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::optim;
use crate::optimizer::{Engine, Optimizer, UpdateRule};

/// What the registry knows of one optimizer.
pub struct OptimizerSpec {
    /// Registry name (lowercase).
    pub name: &'static str,
    /// Implementation matched value for value.
    pub reference: &'static str,
    /// Paper introducing the method.
    pub paper: &'static str,
    /// One-line description.
    pub summary: &'static str,
    /// All hyperparameters with their defaults, as JSON.
    pub defaults: fn() -> Value,
    /// Builds the optimizer from a JSON object of hyperparameters (missing
    /// keys take defaults, unknown keys are errors).
    pub build: fn(&Value) -> Result<Box<dyn Optimizer>>,
}

impl std::fmt::Debug for OptimizerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptimizerSpec")
            .field("name", &self.name)
            .finish()
    }
}

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
            optim::lookahead::spec(),
            crate::cautious::spec(),
            spec::<optim::Muon>(),
            spec::<optim::AdaMuon>(),
            spec::<optim::Namo>(),
            spec::<optim::NamoD>(),
            spec::<optim::SophiaH>(),
            spec::<optim::SophiaG>(),
            spec::<optim::AdaMomentum>(),
            optim::AdaGc::spec(),
            optim::Magma::spec(),
            optim::SkipUpdate::spec(),
            optim::schedulefree::spec::<optim::AdamWScheduleFree>(),
            optim::schedulefree::spec::<optim::SgdScheduleFree>(),
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
