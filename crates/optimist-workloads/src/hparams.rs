//! Suggested hyperparameters per optimizer, and building an optimizer for a
//! workload's parameters.
//!
//! One workload-agnostic setting per optimizer (the AlgoPerf external-tuning
//! idea with a single point): the reference defaults, with the learning rate
//! changed where the default is known to be far off for small networks (a
//! fact of the rule, [`optimist_core::OptimizerConfig::suggested`], read
//! from the registry).
//! The workload's `lr_scale` multiplies `lr` (rosenbrock, the quadratic and
//! the logistic regression are full-batch-like problems that tolerate
//! larger steps). A rule without a suggestion runs with its defaults.
//!
//! Building also handles what some rules need from their surroundings:
//! a wrapper with a required `inner` optimizer (lookahead) gets AdamW with
//! the suggested settings; a rule that accepts only matrices (Muon family;
//! [`optimist_core::OptimizerConfig::MATRICES_ONLY`]) gets parameter groups: the rule for parameters with two or more
//! dimensions whose names are not embeddings or output heads
//! ([`optimist_core::presets::EMBEDDINGS_AND_HEADS`], as the Muon authors
//! do), AdamW for the rest (biases, norms, embeddings, heads). When a
//! workload has no such matrix, building fails with
//! [`Error::NotApplicable`] instead of silently running AdamW everywhere.

use candle_nn::VarMap;
use optimist_candle::{build_optimizer, OptimistOptimizer};
use optimist_core::{registry, Optimizer};
use serde_json::{json, Map, Value};

use crate::{Error, Result};

/// The suggested hyperparameters of `optimizer` (before the workload's
/// `lr_scale`): the rule's own suggestion for small networks, from the
/// registry ([`optimist_core::registry::RuleFacts::suggested`]); an empty
/// object for an unknown name.
pub fn suggested(optimizer: &str) -> Value {
    registry::find(optimizer).map_or_else(|| json!({}), |s| (s.facts.suggested)())
}

/// Merges `over` into `base` (objects, key by key).
pub fn merge(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Object(a), Value::Object(b)) => {
            let mut m: Map<String, Value> = a.clone();
            for (k, v) in b {
                m.insert(k.clone(), v.clone());
            }
            Value::Object(m)
        }
        (_, Value::Null) => base.clone(),
        _ => over.clone(),
    }
}

fn scale_lr(hp: &mut Value, scale: f64) {
    if scale == 1.0 {
        return;
    }
    if let Some(lr) = hp.get("lr").and_then(Value::as_f64) {
        hp["lr"] = json!(lr * scale);
    }
}

/// The parameters a matrix-only rule updates: two or more dimensions, and
/// not an embedding or an output head.
pub fn matrix_selector() -> Value {
    json!({"and": ["matrices", {"not": {"names": optimist_core::presets::EMBEDDINGS_AND_HEADS}}]})
}

/// Why `optimizer` does not apply to the parameters of `varmap`, if it
/// does not: a matrix-only rule (Muon family) on a model with no hidden
/// matrix. `None` when it applies (or the name is unknown: building
/// reports that).
pub fn not_applicable(varmap: &VarMap, optimizer: &str, overrides: &Value) -> Option<String> {
    let (name, _) = effective(optimizer, overrides, 1.0).ok()?;
    if name != optimist_candle::PARAM_GROUPS || optimizer == optimist_candle::PARAM_GROUPS {
        return None;
    }
    let sel = optimist_candle::selector_from_json(&matrix_selector()).ok()?;
    let data = varmap.data().lock().ok()?;
    let any = data
        .iter()
        .any(|(n, v)| sel.matches(n, v.as_tensor().dims()));
    (!any).then(|| "not applicable: no matrix parameters".to_string())
}

/// The effective configuration for `optimizer` on a workload: suggested
/// settings, the workload's lr scale, then the caller's overrides. Returns
/// the name and hyperparameters to build (possibly `param_groups`).
pub fn effective(optimizer: &str, overrides: &Value, lr_scale: f64) -> Result<(String, Value)> {
    if !overrides.is_object() {
        return Err(Error::Input(format!(
            "{optimizer}: hyperparameters must be a JSON object, got {overrides}"
        )));
    }
    if optimizer == optimist_candle::PARAM_GROUPS {
        return Ok((optimizer.to_string(), overrides.clone()));
    }
    let spec = registry::find(optimizer).ok_or_else(|| {
        Error::Optimizer(optimist_core::Error::UnknownOptimizer {
            name: optimizer.to_string(),
            known: registry::registry()
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
    })?;
    let defaults = (spec.defaults)();
    let mut hp = suggested(optimizer);
    // A rule without a suggested lr starts from the reference's default,
    // so that the workload's lr scale applies to it too.
    if hp.get("lr").is_none() {
        if let Some(lr) = defaults.get("lr").filter(|v| v.is_number()) {
            hp["lr"] = lr.clone();
        }
    }
    scale_lr(&mut hp, lr_scale);
    let mut hp = merge(&hp, overrides);
    // A wrapper whose inner optimizer is required: AdamW by default.
    if defaults.get("inner").is_some() && hp.get("inner").is_none_or(Value::is_null) {
        let mut inner = suggested("adamw");
        scale_lr(&mut inner, lr_scale);
        hp["inner"] = json!({"optimizer": "adamw", "hparams": inner});
    }
    if spec.facts.matrices_only {
        let mut rest = suggested("adamw");
        scale_lr(&mut rest, lr_scale);
        let groups = json!({"groups": [
            {"name": "matrices", "select": matrix_selector(), "optimizer": optimizer, "hparams": hp},
            {"name": "other", "select": "all", "optimizer": "adamw", "hparams": rest}
        ]});
        return Ok((optimist_candle::PARAM_GROUPS.to_string(), groups));
    }
    Ok((optimizer.to_string(), hp))
}

/// The learning rate of `optimizer`'s own rule (the matrix group for a
/// matrices-only rule) on a workload with `lr_scale`, after `overrides`;
/// `None` for a rule without one (lookahead).
pub fn base_lr(optimizer: &str, overrides: &Value, lr_scale: f64) -> Option<f64> {
    let (_, hp) = effective(optimizer, overrides, lr_scale).ok()?;
    hp.get("lr").and_then(Value::as_f64).or_else(|| {
        hp.get("groups")?
            .as_array()?
            .first()?
            .get("hparams")?
            .get("lr")?
            .as_f64()
    })
}

/// The caller's overrides with the calibrated lr of [`crate::lr_table`]:
/// where the table lists `(workload, optimizer)` and the overrides set no
/// `lr`, the rule's own lr (see [`base_lr`]) times the table's multiplier.
pub fn calibrated(workload: &crate::WorkloadSpec, optimizer: &str, overrides: &Value) -> Value {
    let m = crate::lr_table::multiplier(workload.name, optimizer);
    let settable = overrides.is_object() || overrides.is_null();
    if m == 1.0 || !settable || overrides.get("lr").is_some() {
        return overrides.clone();
    }
    let mut o = overrides.clone();
    if let Some(lr) = base_lr(optimizer, overrides, workload.lr_scale) {
        o["lr"] = json!(lr * m);
    }
    o
}

/// Builds the optimizer for every parameter of `varmap`, after the given
/// gradient stages (`{"name": ..., "config": {...}}`, see
/// `optimist_core::stages::build`) and inside the given wrappers (innermost
/// first; see `optimist_core::wrappers::wrap`).
pub fn build_for(
    varmap: &VarMap,
    optimizer: &str,
    overrides: &Value,
    lr_scale: f64,
    seed: u64,
    stages: &[Value],
    wrappers: &[Value],
) -> Result<(OptimistOptimizer, String, Value)> {
    if let Some(why) = not_applicable(varmap, optimizer, overrides) {
        return Err(Error::NotApplicable(format!("{optimizer}: {why}")));
    }
    let (name, hp) = effective(optimizer, overrides, lr_scale)?;
    let mut opt: Box<dyn Optimizer> = build_optimizer(&name, &hp)?;
    if !stages.is_empty() {
        let mut chain = optimist_core::transform::Chain::new(opt);
        for s in stages {
            let Some(stage) = s.get("name").and_then(Value::as_str) else {
                return Err(Error::Input(format!(
                    "stage {s}: expected {{\"name\": ..., \"config\": {{...}}}}"
                )));
            };
            if let Some(k) = s
                .as_object()
                .and_then(|o| o.keys().find(|k| *k != "name" && *k != "config"))
            {
                return Err(Error::Input(format!("stage {s}: unknown key \"{k}\"")));
            }
            let config = s.get("config").cloned().unwrap_or(Value::Null);
            chain.push(optimist_core::stages::build(stage, &config)?);
        }
        opt = Box::new(chain);
    }
    for w in wrappers {
        opt = optimist_core::wrappers::wrap(opt, w)?;
    }
    let mut adapter = OptimistOptimizer::from_varmap_with(varmap, opt)?;
    if let Some(mut c) = adapter.curvature().cloned() {
        c.seed = seed;
        adapter.set_curvature(Some(c));
    }
    Ok((adapter, name, hp))
}
