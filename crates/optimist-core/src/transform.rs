//! Composable stages around an update rule, in the spirit of optax's
//! `chain`: gradient transforms (clipping and the like) run in order on the
//! gradients, then the optimizer steps.
//!
//! ```
//! use optimist_core::{clip::ClipGradNorm, registry, transform::Chain, Optimizer, Param};
//! use serde_json::json;
//!
//! let mut opt = Chain::new(registry::build("adamw", &json!({})).unwrap())
//!     .with(ClipGradNorm::new(1.0, 2.0).unwrap());
//! let mut w = Param::new("w", vec![2], vec![0.0, 0.0]).unwrap();
//! w.grad = vec![30.0, 40.0];
//! opt.step(&mut [w.view()]).unwrap();
//! assert!((w.grad[0] - 0.6).abs() < 1e-6); // clipped to norm 1 in place
//! ```

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::optimizer::Optimizer;
use crate::state::StateDict;
use crate::tensor::ParamMut;

/// A stage that rewrites gradients in place before the update.
pub trait GradientTransform: Send {
    /// Short name, e.g. `clip_grad_norm`.
    fn name(&self) -> &str;
    /// Configuration as JSON.
    fn config(&self) -> Value;
    /// Rewrites the gradients of `params`.
    fn transform(&mut self, params: &mut [ParamMut<'_>]) -> Result<()>;
    /// The stage's own state (running statistics), if any.
    fn state_dict(&self) -> StateDict {
        StateDict::default()
    }
    /// Restores the stage's state.
    fn load_state_dict(&mut self, dict: &StateDict) -> Result<()> {
        if dict.tensors.is_empty() && dict.scalars.is_empty() {
            Ok(())
        } else {
            Err(Error::Input(format!(
                "{}: this stage has no state to load",
                self.name()
            )))
        }
    }
}

/// Gradient stages followed by an optimizer; itself an [`Optimizer`].
pub struct Chain {
    stages: Vec<Box<dyn GradientTransform>>,
    optimizer: Box<dyn Optimizer>,
}

impl Chain {
    /// The optimizer with no stages yet.
    pub fn new(optimizer: Box<dyn Optimizer>) -> Self {
        Chain {
            stages: Vec::new(),
            optimizer,
        }
    }

    /// Appends a stage (builder style); stages run in the order added.
    pub fn with(mut self, stage: impl GradientTransform + 'static) -> Self {
        self.stages.push(Box::new(stage));
        self
    }

    /// Appends a boxed stage.
    pub fn push(&mut self, stage: Box<dyn GradientTransform>) {
        self.stages.push(stage);
    }

    /// The wrapped optimizer.
    pub fn inner(&self) -> &dyn Optimizer {
        self.optimizer.as_ref()
    }
}

impl Optimizer for Chain {
    fn name(&self) -> &str {
        self.optimizer.name()
    }

    fn config(&self) -> Value {
        json!({
            "stages": self.stages.iter().map(|s| json!({"name": s.name(), "config": s.config()})).collect::<Vec<_>>(),
            "optimizer": self.optimizer.name(),
            "hparams": self.optimizer.config(),
        })
    }

    fn set_config(&mut self, config: Value) -> Result<()> {
        let hp = config.get("hparams").cloned().unwrap_or(config);
        self.optimizer.set_config(hp)
    }

    fn step(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        for p in params.iter() {
            p.check()?;
        }
        for s in self.stages.iter_mut() {
            s.transform(params)?;
        }
        self.optimizer.step(params)
    }

    fn state_dict(&self) -> StateDict {
        let mut d = StateDict::default();
        d.merge_prefixed("optimizer/", self.optimizer.state_dict());
        for (i, s) in self.stages.iter().enumerate() {
            d.merge_prefixed(&format!("stage{i}/"), s.state_dict());
        }
        d
    }

    fn load_state_dict(&mut self, dict: &StateDict) -> Result<()> {
        let old = self.state_dict();
        let result = (|| {
            self.optimizer
                .load_state_dict(&dict.strip_prefix("optimizer/"))?;
            for (i, s) in self.stages.iter_mut().enumerate() {
                s.load_state_dict(&dict.strip_prefix(&format!("stage{i}/")))?;
            }
            Ok(())
        })();
        if result.is_err() {
            // Restore what was there: never keep half a state.
            let _ = self
                .optimizer
                .load_state_dict(&old.strip_prefix("optimizer/"));
            for (i, s) in self.stages.iter_mut().enumerate() {
                let _ = s.load_state_dict(&old.strip_prefix(&format!("stage{i}/")));
            }
        }
        result
    }

    fn hparam(&self, key: &str) -> Option<f64> {
        self.optimizer.hparam(key)
    }

    fn set_hparam(&mut self, key: &str, value: f64) -> Result<()> {
        self.optimizer.set_hparam(key, value)
    }

    fn set_mode(
        &mut self,
        mode: crate::optimizer::Mode,
        params: &mut [ParamMut<'_>],
    ) -> Result<()> {
        self.optimizer.set_mode(mode, params)
    }

    fn set_exec_options(&mut self, exec: crate::exec::ExecOptions) -> Result<()> {
        self.optimizer.set_exec_options(exec)
    }

    fn state_nbytes(&self) -> usize {
        self.optimizer.state_nbytes()
            + self
                .stages
                .iter()
                .map(|s| s.state_dict().nbytes())
                .sum::<usize>()
    }

    fn state_buffer(&self, param: &str, buffer: &str) -> Option<&[f32]> {
        self.optimizer.state_buffer(param, buffer)
    }
}
