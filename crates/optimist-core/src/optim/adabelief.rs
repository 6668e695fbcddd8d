//! AdaBelief, with rectification (RAdam-style), AMSBound and coupled or
//! decoupled weight decay.
//!
//! **Reference:** `pytorch_optimizer.AdaBelief` (pytorch-optimizer 4.1.0),
//! with `fixed_decay = false`, `n_sma_threshold = 5`,
//! `degenerated_to_sgd = true`, `maximize = false`, no AdaNorm or AdamD.
//! **Paper:** Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by
//! the Belief in Observed Gradients", NeurIPS 2020 (arXiv:2010.07468).
//!
//! Update rule, per element, at step t (one counter for the optimizer):
//! ```text
//! p <- p * (1 - lr * wd)                  if weight_decouple (default)
//! g <- g + wd * p                         otherwise (L2)
//! m <- lerp(m, g, 1 - beta1)
//! s <- beta2 * s + (1 - beta2) * (g - m)^2 + eps     (eps added every step)
//! smax <- max(smax, s); use smax for s    if ams_bound
//! not rectify:
//!     p <- p - lr / (1 - beta1^t) * m / (sqrt(s) / sqrt(1 - beta2^t) + eps)
//! rectify (rt, n_sma from crate::optim::pytorch_optimizer::rectify):
//!     n_sma >= 5:  p <- p - lr * rt / (1 - beta1^t) * m / (sqrt(s) + eps)
//!     otherwise:   p <- p - lr / (1 - beta1^t) * m      (SGD with momentum)
//! ```
//! Defaults: lr = 1e-3, betas = (0.9, 0.999), weight_decay = 0,
//! weight_decouple = true, rectify = false, ams_bound = false, eps = 1e-16.
//! Validation as the reference: lr >= 0, betas in [0, 1), weight_decay >= 0,
//! eps >= 0.

use serde::{Deserialize, Serialize};

use super::pytorch_optimizer::{ams_denom, rectify, N_SMA_THRESHOLD};
use crate::cautious::{Apply, Plain};
use crate::error::Result;
use crate::math::{bias_correction, lerp, WeightDecay};
use crate::optimizer::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};
use crate::validate as v;

crate::param_state! {
    /// AdaBelief state: first moment, belief (variance of g around m) and
    /// its running maximum for AMSBound.
    pub struct AdaBeliefState { exp_avg, exp_avg_var, max_exp_avg_var }
}

/// Hyperparameters of `pytorch_optimizer.AdaBelief`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaBelief {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the moments (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise.
    pub weight_decouple: bool,
    /// RAdam-style rectification (default false).
    pub rectify: bool,
    /// Running maximum of the belief term (default false).
    pub ams_bound: bool,
    /// Added to the belief term every step and to the denominator (default 1e-16).
    pub eps: f64,
}

impl Default for AdaBelief {
    fn default() -> Self {
        AdaBelief {
            lr: 1e-3,
            betas: [0.9, 0.999],
            weight_decay: 0.0,
            weight_decouple: true,
            rectify: false,
            ams_bound: false,
            eps: 1e-16,
        }
    }
}

impl OptimizerConfig for AdaBelief {
    const NAME: &'static str = "adabelief";
    const REFERENCE: &'static str = "pytorch_optimizer.AdaBelief (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Zhuang et al., AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed Gradients, NeurIPS 2020 (arXiv:2010.07468)";
    const SUMMARY: &'static str =
        "Adam with the variance of the gradient around its mean; rectify and AMSBound options";

    fn validate(&self) -> Result<()> {
        v::non_negative(Self::NAME, "lr", self.lr)?;
        v::betas(Self::NAME, self.betas)?;
        v::non_negative(Self::NAME, "weight_decay", self.weight_decay)?;
        v::non_negative(Self::NAME, "eps", self.eps)
    }
}

impl UpdateRule for AdaBelief {
    type State = AdaBeliefState;
    const EXPOSES_UPDATE: bool = true;

    fn update(&self, info: &StepInfo, p: &mut ParamMut<'_>, st: &mut AdaBeliefState) -> Result<()> {
        self.update_with(info, p, st, &mut Plain)
    }

    fn update_with<A: Apply>(
        &self,
        info: &StepInfo,
        p: &mut ParamMut<'_>,
        st: &mut AdaBeliefState,
        apply: &mut A,
    ) -> Result<()> {
        let n = p.numel();
        if !st.exp_avg.is_allocated() {
            st.exp_avg = StateTensor::zeros(n);
            st.exp_avg_var = StateTensor::zeros(n);
        }
        if self.ams_bound && !st.max_exp_avg_var.is_allocated() {
            st.max_exp_avg_var = StateTensor::zeros(n);
        }
        st.step += 1;
        let t = info.step;
        let [beta1, beta2] = self.betas;
        let wd = WeightDecay::new(self.weight_decay, self.weight_decouple, self.lr);
        let w1 = (1.0 - beta1) as f32;
        let b2 = beta2 as f32;
        let w2 = (1.0 - beta2) as f32;
        let eps = self.eps as f32;
        let bc1 = bias_correction(beta1, t);

        // How the denominator and the step size are formed this step.
        enum Mode {
            /// sqrt(s) / bc2_sqrt + eps
            Adaptive { bc2_sqrt: f32 },
            /// sqrt(s) + eps (rectified, bias correction inside rt)
            Rectified,
            /// m alone (rectify, before n_sma reaches the threshold)
            Momentum,
            /// no update (rectify with step size 0)
            Skip,
        }
        let (mode, step_size) = if !self.rectify {
            let bc2_sqrt = bias_correction(beta2, t).sqrt() as f32;
            (Mode::Adaptive { bc2_sqrt }, self.lr / bc1)
        } else {
            // degenerated_to_sgd = true: rt = 1 below the threshold.
            let (rt, n_sma) = rectify(beta2, t, true);
            let step_size = self.lr * rt / bc1;
            if n_sma >= N_SMA_THRESHOLD {
                (Mode::Rectified, step_size)
            } else if step_size > 0.0 {
                (Mode::Momentum, step_size)
            } else {
                (Mode::Skip, step_size)
            }
        };
        let lr = step_size as f32;

        let m = st.exp_avg.as_mut_slice();
        let s = st.exp_avg_var.as_mut_slice();
        let mut smax = self
            .ams_bound
            .then(|| st.max_exp_avg_var.as_mut_slice().iter_mut());
        for (((x, &g), m), s) in p.value.iter_mut().zip(p.grad.iter()).zip(m).zip(s) {
            let g = wd.apply(x, g);
            *m = lerp(*m, g, w1);
            let r = g - *m;
            *s = *s * b2 + w2 * r * r + eps;
            let vmax = smax.as_mut().and_then(|it| it.next());
            let root = ams_denom(*s, vmax, 0.0, 0.0);
            match mode {
                Mode::Adaptive { bc2_sqrt } => apply.apply(x, g, lr, *m / (root / bc2_sqrt + eps)),
                Mode::Rectified => apply.apply(x, g, lr, *m / (root + eps)),
                Mode::Momentum => apply.apply(x, g, lr, *m),
                Mode::Skip => apply.apply(x, g, 0.0, 0.0),
            }
        }
        Ok(())
    }
}
