//! Wrappers around any optimizer (`Box<dyn Optimizer>`), each itself an
//! [`Optimizer`], so they nest and go into parameter groups. Every wrapper
//! lives here and takes an optimizer that is already built:
//!
//! - [`lookahead::Lookahead`], [`cautious::Cautious`] (cautious masking of
//!   any rule that exposes its update), [`magma::Magma`] and
//!   [`skipupdate::SkipUpdate`] (random per-tensor masking, sharing
//!   [`masking`]), registered by name with an `inner` optimizer;
//! - [`scheduled::Scheduled`]: any scalar hyperparameter follows a schedule;
//! - [`skip_nonfinite::SkipNonFinite`]: steps with NaN/Inf gradients are skipped
//!   and counted (optax `apply_if_finite`);
//! - [`accumulate::GradAccumulation`]: k micro-batches, one step on their mean gradient;
//! - [`ema::Ema`] and [`swa::Swa`]: averaged weights for evaluation.
//!
//! Each implements [`Wrapper`] (its configuration and the hooks it
//! changes); the blanket `impl<W: Wrapper> Optimizer for W` forwards every
//! other method to the wrapped optimizer, so the forwarding is written once
//! ([`wrap`]).
//!
//! Every wrapper reports its configuration as
//! `{"wrapper": NAME, ...its fields..., "inner": {"optimizer": NAME, "hparams": ...}}`
//! and [`crate::registry::build_spec`] rebuilds an optimizer from such a value (or from a plain
//! `{"optimizer": NAME, "hparams": ...}`). Its state holds the inner
//! optimizer's state under `inner/` and its own under `NAME/`.
//! `docs/wrappers.md` describes each one.

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::optimizer::Optimizer;
use crate::state::StateDict;

pub mod accumulate;
pub mod averaged;
pub mod cautious;
pub mod ema;
pub mod lookahead;
pub mod magma;
pub mod masking;
pub mod scheduled;
pub mod skip_nonfinite;
pub mod skipupdate;
pub mod swa;
pub mod wrap;

pub use accumulate::{AccumulateIn, GradAccumulation};
pub use cautious::{Cautious, CautiousConfig};
pub use ema::{Ema, EmaConfig};
pub use lookahead::{Lookahead, LookaheadConfig};
pub use magma::{Magma, MagmaConfig};
pub use scheduled::Scheduled;
pub use skip_nonfinite::SkipNonFinite;
pub use skipupdate::{SkipUpdate, SkipUpdateConfig};
pub use swa::{Swa, SwaConfig};
pub use wrap::Wrapper;

/// Wraps an optimizer that is already built (any optimizer: a registry
/// rule, parameter groups, another wrapper) in the wrapper that `cfg`
/// describes: `{"wrapper": KIND, ...its fields...}` without `inner`, e.g.
/// `{"wrapper": "scheduled", "schedules": [{"hparam": "lr", "schedule":
/// {"name": "cosine", "decay_steps": 1000}}]}` or `{"wrapper": "ema",
/// "decay": 0.999}`.
pub fn wrap(inner: Box<dyn Optimizer>, cfg: &Value) -> Result<Box<dyn Optimizer>> {
    let Some(obj) = cfg.as_object() else {
        return Err(Error::Input(format!(
            "wrapper configuration must be an object {{\"wrapper\": KIND, ...}}, got {cfg}"
        )));
    };
    let Some(kind) = obj.get("wrapper").and_then(Value::as_str) else {
        return Err(Error::Input(format!(
            "wrapper configuration has no string field 'wrapper': {cfg}"
        )));
    };
    if obj.contains_key("inner") {
        return Err(Error::config(
            kind,
            "'inner' is the optimizer being wrapped; leave it out here",
        ));
    }
    let mut full = cfg.clone();
    full["inner"] = inner_spec(inner.as_ref());
    let kind = kind.to_string();
    wrap_with(inner, &kind, full)
}

pub(crate) fn wrap_with(inner: Box<dyn Optimizer>, kind: &str, cfg: Value) -> Result<Box<dyn Optimizer>> {
    let mut w: Box<dyn Optimizer> = match kind {
        "scheduled" => Box::new(Scheduled::new(inner)),
        "skip_nonfinite" => Box::new(SkipNonFinite::new(inner, 0)),
        "grad_accumulation" => Box::new(GradAccumulation::new(inner, 1, AccumulateIn::Buffer)?),
        "ema" => Box::new(Ema::new(inner, EmaConfig::default())?),
        "swa" => Box::new(Swa::new(inner, SwaConfig::default())?),
        other => {
            return Err(Error::Input(format!(
                "unknown wrapper '{other}' (known: scheduled, skip_nonfinite, grad_accumulation, ema, swa)"
            )))
        }
    };
    w.set_config(cfg)?;
    Ok(w)
}

/// `{"optimizer": name, "hparams": config}` of an optimizer.
pub(crate) fn inner_spec(opt: &dyn Optimizer) -> Value {
    json!({"optimizer": opt.name(), "hparams": opt.config()})
}

/// Splits a wrapper configuration into its own fields (an object without
/// `wrapper` and `inner`) and the inner optimizer's hyperparameters.
/// `kind` must match the `wrapper` field when it is present.
pub(crate) fn split_config(kind: &str, config: &Value) -> Result<(Value, Option<Value>)> {
    let Some(obj) = config.as_object() else {
        return Err(Error::config(
            kind,
            format!("configuration must be an object, got {config}"),
        ));
    };
    if let Some(w) = obj.get("wrapper") {
        if w.as_str() != Some(kind) {
            return Err(Error::config(
                kind,
                format!("configuration is for wrapper {w}, not '{kind}'"),
            ));
        }
    }
    let mut own = obj.clone();
    own.remove("wrapper");
    let inner = own.remove("inner").map(|i| match i.get("hparams") {
        Some(h) => h.clone(),
        None => Value::Null,
    });
    Ok((Value::Object(own), inner))
}

/// The error for a key of wrapper `kind`'s configuration that it does not
/// know.
pub(crate) fn unknown_key(kind: &str, key: &str) -> Error {
    Error::config(kind, format!("unknown configuration key '{key}'"))
}

pub(crate) use crate::tensor::check_params;

/// Reads a non-negative integer scalar `key` of a wrapper's state.
pub(crate) fn count_scalar(dict: &StateDict, key: &str) -> Result<u64> {
    match dict.scalars.get(key) {
        Some(&v) if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 2f64.powi(53) => {
            Ok(v as u64)
        }
        Some(&v) => Err(Error::Input(format!("state '{key}': invalid value {v}"))),
        None => Err(Error::Input(format!("state has no '{key}' entry"))),
    }
}

/// Checks that every entry of `dict` belongs to the inner optimizer
/// (`inner/`) or to the wrapper (`own/`).
pub(crate) fn check_state_keys(dict: &StateDict, own: &str) -> Result<()> {
    let own = format!("{own}/");
    for e in &dict.tensors {
        if !(e.param.starts_with("inner/") || e.param.starts_with(&own)) {
            return Err(Error::Input(format!(
                "state entry '{}/{}' belongs neither to the wrapper nor to its inner optimizer",
                e.param, e.name
            )));
        }
    }
    for k in dict.scalars.keys() {
        if !(k.starts_with("inner/") || k.starts_with(&own)) {
            return Err(Error::Input(format!(
                "state scalar '{k}' belongs neither to the wrapper nor to its inner optimizer"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimizer::Mode;
    use crate::tensor::Param;

    /// Every wrapper that does not average weights itself hands the mode
    /// switch to the optimizer it wraps (the forwarding of [`Wrapper`]):
    /// around a schedule-free optimizer, eval mode moves the parameters to
    /// its averaged point and train mode moves them back.
    #[test]
    fn wrappers_forward_the_mode_switch() {
        let inner = || -> Box<dyn Optimizer> {
            let cfg = crate::optim::SgdScheduleFree {
                lr: 0.1,
                ..Default::default()
            };
            Box::new(crate::optim::schedulefree::ScheduleFree::new(cfg).unwrap())
        };
        let keep_all = |seed| MagmaConfig {
            mask_prob: 1.0,
            seed,
            ..MagmaConfig::default()
        };
        let skip_none = SkipUpdateConfig {
            mask_prob: 1.0,
            ..SkipUpdateConfig::default()
        };
        let wrapped: Vec<Box<dyn Optimizer>> = vec![
            Box::new(Lookahead::wrap(inner(), 5, 0.5).unwrap()),
            Box::new(Magma::new(keep_all(1), inner()).unwrap()),
            Box::new(SkipUpdate::new(skip_none, inner()).unwrap()),
            Box::new(Scheduled::new(inner())),
            Box::new(SkipNonFinite::new(inner(), 0)),
            Box::new(GradAccumulation::new(inner(), 1, AccumulateIn::Buffer).unwrap()),
        ];
        for mut opt in wrapped {
            let name = opt.config().to_string();
            let mut w = Param::new("w", vec![2], vec![1.0, -1.0]).unwrap();
            for _ in 0..3 {
                w.grad = vec![0.5, -0.25];
                opt.step(&mut [w.view()]).unwrap();
            }
            let train = w.data.clone();
            opt.set_mode(Mode::Eval, &mut [w.view()]).unwrap();
            assert_ne!(w.data, train, "{name}: eval mode did not reach the inner");
            w.grad = vec![0.5, -0.25];
            let stepped = opt.step(&mut [w.view()]);
            assert!(stepped.is_err(), "{name}: stepped in eval mode");
            opt.set_mode(Mode::Train, &mut [w.view()]).unwrap();
            for (a, b) in w.data.iter().zip(&train) {
                let close = (a - b).abs() <= 1e-6 * (1.0 + b.abs());
                assert!(close, "{name}: {a} vs {b}");
            }
        }
    }
}
