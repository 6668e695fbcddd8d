//! The front door: JSON into optimizers. A registry name with its
//! hyperparameters ([`build_optimizer`], [`crate::registry::build`]),
//! parameter groups with one optimizer per group ([`param_groups_from_json`],
//! under the name [`PARAM_GROUPS`]), a whole optimizer spec with wrappers
//! around an inner optimizer ([`build_spec`]), a wrapper around an
//! optimizer already built ([`wrap`]) and gradient stages ([`stage`]).
//!
//! Parameter groups:
//!
//! ```json
//! {"groups": [
//!   {"name": "no_decay", "select": {"names": ["*.bias", "*norm*"]},
//!    "optimizer": "adamw", "hparams": {"lr": 1e-3, "weight_decay": 0.0}},
//!   {"name": "rest", "select": "all", "optimizer": "adamw", "hparams": {"lr": 1e-3}}
//! ]}
//! ```
//!
//! Selectors: `"all"`, `"matrices"` (two or more dimensions),
//! `{"names": [glob, ...]}`, `{"ndim_min": a, "ndim_max": b}`,
//! `{"not": S}`, `{"and": [S, ...]}`, `{"or": [S, ...]}` (the form
//! `ParamGroups::config` prints).

use serde_json::Value;

use crate::error::{Error, Result};
use crate::groups::{ParamGroups, Selector};
use crate::optimizer::Optimizer;
use crate::registry;

pub use crate::registry::build_spec;
pub use crate::stages::build as stage;
pub use crate::wrappers::wrap;

/// The name under which parameter groups are built.
pub const PARAM_GROUPS: &str = "param_groups";

/// Builds `name` (a registry name or `param_groups`) from `hparams`.
pub fn build_optimizer(name: &str, hparams: &Value) -> Result<Box<dyn Optimizer>> {
    if name == PARAM_GROUPS {
        Ok(Box::new(param_groups_from_json(hparams)?))
    } else {
        registry::build(name, hparams)
    }
}

fn bad(message: impl Into<String>) -> Error {
    Error::config(PARAM_GROUPS, message)
}

/// Parses a selector (see the module docs).
pub fn selector_from_json(v: &Value) -> Result<Selector> {
    match v {
        Value::String(s) if s == "all" => Ok(Selector::All),
        Value::String(s) if s == "matrices" => Ok(Selector::matrices()),
        Value::Object(o) if o.len() == 1 && o.contains_key("names") => {
            let pats = o["names"]
                .as_array()
                .filter(|a| a.iter().all(Value::is_string))
                .ok_or_else(|| bad(format!("selector 'names' must be an array of strings, got {}", o["names"])))?;
            Ok(Selector::names(pats.iter().filter_map(Value::as_str)))
        }
        Value::Object(o) if o.len() == 1 && o.contains_key("not") => {
            Ok(selector_from_json(&o["not"])?.negate())
        }
        Value::Object(o) if o.len() == 1 && (o.contains_key("and") || o.contains_key("or")) => {
            let (key, items) = o.iter().next().ok_or_else(|| bad("empty selector"))?;
            let items = items
                .as_array()
                .ok_or_else(|| bad(format!("selector '{key}' must be an array, got {items}")))?
                .iter()
                .map(selector_from_json)
                .collect::<Result<Vec<_>>>()?;
            Ok(if key == "and" {
                Selector::And(items)
            } else {
                Selector::Or(items)
            })
        }
        Value::Object(o)
            if !o.is_empty() && o.keys().all(|k| k == "ndim_min" || k == "ndim_max") =>
        {
            let get = |k: &str, default: usize| -> Result<usize> {
                match o.get(k) {
                    None => Ok(default),
                    Some(x) => x
                        .as_u64()
                        .map(|n| n as usize)
                        .ok_or_else(|| bad(format!("selector '{k}' must be a non-negative integer, got {x}"))),
                }
            };
            Ok(Selector::Ndim {
                min: get("ndim_min", 0)?,
                max: get("ndim_max", usize::MAX)?,
            })
        }
        other => Err(bad(format!(
            "invalid selector {other}: expected \"all\", \"matrices\", {{\"names\": [...]}}, {{\"ndim_min\"/\"ndim_max\": n}}, {{\"not\"|\"and\"|\"or\": ...}}"
        ))),
    }
}

/// Parses `{"groups": [{"name", "select", "optimizer", "hparams"}, ...]}`
/// (or the bare array) into [`ParamGroups`].
pub fn param_groups_from_json(v: &Value) -> Result<ParamGroups> {
    let groups = match v {
        Value::Array(a) => a,
        Value::Object(o) => match (o.get("groups"), o.len()) {
            (Some(Value::Array(a)), 1) => a,
            _ => {
                return Err(bad(
                    "hyperparameters must be {\"groups\": [...]} (and nothing else)",
                ))
            }
        },
        other => {
            return Err(bad(format!(
                "hyperparameters must be an object, got {other}"
            )))
        }
    };
    if groups.is_empty() {
        return Err(bad("at least one group is needed"));
    }
    let mut pg = ParamGroups::new();
    for (i, g) in groups.iter().enumerate() {
        let o = g
            .as_object()
            .ok_or_else(|| bad(format!("group {i} must be an object, got {g}")))?;
        for k in o.keys() {
            if !["name", "select", "selector", "optimizer", "hparams"].contains(&k.as_str()) {
                return Err(bad(format!("group {i}: unknown key '{k}'")));
            }
        }
        let name = o
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("group {i}: 'name' (a string) is required")))?;
        let select = o
            .get("select")
            .or_else(|| o.get("selector"))
            .ok_or_else(|| bad(format!("group '{name}': 'select' is required")))?;
        let opt = o.get("optimizer").and_then(Value::as_str).ok_or_else(|| {
            bad(format!(
                "group '{name}': 'optimizer' (a string) is required"
            ))
        })?;
        if opt == PARAM_GROUPS {
            return Err(bad(format!("group '{name}': groups cannot be nested")));
        }
        let hp = o.get("hparams").cloned().unwrap_or(Value::Null);
        pg = pg.group(
            name,
            selector_from_json(select)?,
            registry::build(opt, &hp)?,
        );
    }
    Ok(pg)
}
