//! Evaluating at the optimizer's evaluation point. Schedule-free methods
//! take gradients at one point and evaluate at another (their averaged
//! iterate), and weight averaging (EMA, SWA) evaluates averaged weights:
//! [`OptimistOptimizer::with_eval_weights`] puts the variables at that
//! point for the duration of a closure and then restores the training
//! values bit for bit, so evaluating never perturbs training (a run
//! evaluated every step takes the same steps as one never evaluated).

use candle_core::{DType, Tensor};
use optimist_core::{optimizer::Mode, ParamMut};

use crate::{wrap, OptimistOptimizer};

impl OptimistOptimizer {
    /// Runs `f` with the variables at the optimizer's evaluation point
    /// ([`Mode::Eval`]); afterwards the optimizer is back in training mode
    /// and the variables hold exactly their training values again. For
    /// optimizers whose evaluation point is the training point this only
    /// runs `f`.
    pub fn with_eval_weights<T, E: From<candle_core::Error>>(
        &mut self,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let snapshot = self
            .vars
            .iter()
            .map(|v| v.as_tensor().copy())
            .collect::<candle_core::Result<Vec<Tensor>>>()?;
        let mut values = snapshot
            .iter()
            .map(|t| t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>())
            .collect::<candle_core::Result<Vec<Vec<f32>>>>()?;
        let before = values.clone();
        self.switch(Mode::Eval, &mut values)?;
        let moved = values != before;
        let result = if moved {
            let set = self.set_values(&values);
            match set {
                Ok(()) => f(),
                Err(e) => Err(e.into()),
            }
        } else {
            f()
        };
        // Back to training: the optimizer's mode, then the exact values.
        let back = self.switch(Mode::Train, &mut values);
        if moved {
            for (var, t) in self.vars.iter().zip(&snapshot) {
                var.set(t)?;
            }
        }
        back?;
        result
    }

    fn switch(&mut self, mode: Mode, values: &mut [Vec<f32>]) -> candle_core::Result<()> {
        let mut grads = zeros_like(values);
        let mut views = views(&self.names, &self.shapes, values, &mut grads);
        self.optimizer.set_mode(mode, &mut views).map_err(wrap)
    }

    pub(crate) fn set_values(&self, values: &[Vec<f32>]) -> candle_core::Result<()> {
        for ((var, shape), v) in self.vars.iter().zip(&self.shapes).zip(values) {
            let t = Tensor::from_slice(v, shape.as_slice(), var.device())?.to_dtype(var.dtype())?;
            var.set(&t)?;
        }
        Ok(())
    }
}

/// Zero gradients for parameter views that only carry values.
pub(crate) fn zeros_like(values: &[Vec<f32>]) -> Vec<Vec<f32>> {
    values.iter().map(|v| vec![0.0; v.len()]).collect()
}

/// Parameter views over copies of the variables' values (no Hessian).
pub(crate) fn views<'a>(
    names: &'a [String],
    shapes: &'a [Vec<usize>],
    values: &'a mut [Vec<f32>],
    grads: &'a mut [Vec<f32>],
) -> Vec<ParamMut<'a>> {
    names
        .iter()
        .zip(shapes)
        .zip(values.iter_mut().zip(grads.iter_mut()))
        .map(|((name, shape), (value, grad))| ParamMut {
            name,
            shape,
            value,
            grad,
            hessian: None,
        })
        .collect()
}
