//! Gradient-norm-aware stages: [`GradientTransform`]s that rewrite the
//! gradients before any optimizer's step, composed with
//! [`Chain`](crate::transform::Chain). One file per stage:
//!
//! | name | stage | reference |
//! | --- | --- | --- |
//! | `adagc` | [`AdaGcClip`]: per-tensor clipping relative to an EMA of past clipped norms, global clipping in warm-up | `pytorch_optimizer.AdaGC` (its clipping part) |
//! | `zclip` | [`ZClip`]: global clipping when the norm's z-score against its EMA mean/variance spikes | bluorion-com/ZClip `ZClip` |
//! | `agc` | [`Agc`]: unit-wise clipping relative to the parameter norm (NFNets) | timm `adaptive_clip_grad`, `optax.adaptive_grad_clip` |
//! | `clip_per_tensor` | [`ClipPerTensor`]: `clip_grad_norm_` applied to each tensor on its own | `torch.nn.utils.clip_grad_norm_` per tensor |
//! | `clip_grad_norm` | [`ClipGradNorm`]: global-norm clipping | `torch.nn.utils.clip_grad_norm_` |
//!
//! ```
//! use optimist_core::{registry, stages, transform::Chain, Optimizer, Param};
//! use serde_json::json;
//!
//! let mut opt = Chain::new(registry::build("adamw", &json!({"lr": 1e-3})).unwrap())
//!     .with(stages::ZClip::new(stages::ZClipConfig::default()).unwrap());
//! let mut w = Param::new("w", vec![2], vec![0.0, 0.0]).unwrap();
//! w.grad = vec![3.0, 4.0];
//! opt.step(&mut [w.view()]).unwrap();
//! // warm-up: plain clip_grad_norm_ to max_grad_norm = 1
//! assert!((w.grad[0] - 0.6).abs() < 1e-6);
//! ```
//!
//! Stages keep their running statistics in their own state
//! ([`GradientTransform::state_dict`]), which a `Chain` stores under
//! `stage<i>/`. In a replay case, the optional top-level key `stages`
//! (a list of `{"name": ..., "config": {...}}`, run in order after
//! `grad_clip` and before the step) builds them with [`build`].

use serde::de::DeserializeOwned;
use serde_json::Value;

use clip::ClipGradNorm;
use crate::error::{Error, Result};
use crate::transform::GradientTransform;

pub mod adagc;
pub mod agc;
pub mod clip;
pub mod per_tensor;
pub mod zclip;

pub use adagc::{AdaGcClip, AdaGcConfig};
pub use agc::{Agc, AgcConfig};
pub use per_tensor::{ClipPerTensor, ClipPerTensorConfig};
pub use zclip::{ZClip, ZClipConfig, ZClipMode, ZClipOption};

/// Names accepted by [`build`].
pub const STAGES: &[&str] = &["adagc", "zclip", "agc", "clip_per_tensor", "clip_grad_norm"];

/// Builds the stage `name` from its JSON configuration (missing keys take
/// defaults, unknown keys are errors).
pub fn build(name: &str, config: &Value) -> Result<Box<dyn GradientTransform>> {
    match name {
        "adagc" => Ok(Box::new(AdaGcClip::new(parse("adagc", config)?)?)),
        "zclip" => Ok(Box::new(ZClip::new(parse("zclip", config)?)?)),
        "agc" => Ok(Box::new(Agc::new(parse("agc", config)?)?)),
        "clip_per_tensor" => Ok(Box::new(ClipPerTensor::new(parse(
            "clip_per_tensor",
            config,
        )?)?)),
        "clip_grad_norm" => {
            let c: ClipGradNorm = parse("clip_grad_norm", config)?;
            c.validate()?;
            Ok(Box::new(c))
        }
        other => Err(Error::Input(format!(
            "unknown gradient stage \"{other}\" (known: {})",
            STAGES.join(", ")
        ))),
    }
}

/// Reads a stage configuration from a JSON object (`null` means all
/// defaults), naming the stage and the offending key on error.
pub fn parse<T: DeserializeOwned>(stage: &str, config: &Value) -> Result<T> {
    let value = match config {
        Value::Null => Value::Object(Default::default()),
        Value::Object(_) => config.clone(),
        other => {
            return Err(Error::config(
                stage,
                format!("configuration must be a JSON object, got {other}"),
            ))
        }
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            Error::config(stage, format!("invalid configuration: {inner}"))
        } else {
            Error::config(stage, format!("invalid configuration '{path}': {inner}"))
        }
    })
}
