//! signSGD and Signum (signSGD with momentum).
//!
//! **Reference:** `pytorch_optimizer.SignSGD` (pytorch-optimizer 4.1.0),
//! `maximize = false`. **Paper:** Bernstein, Wang, Azizzadenesheli &
//! Anandkumar, "signSGD: Compressed Optimisation for Non-Convex Problems",
//! ICML 2018 (arXiv:1802.04434).
//!
//! Update rule, per element:
//! ```text
//! p <- p * (1 - lr * wd)              if weight_decouple (default)
//! g <- g + wd * p                     otherwise (L2)
//! b <- lerp(b, g, 1 - momentum)       if momentum > 0 (Signum; b starts at 0)
//! p <- p - lr * sign(b or g)          (sign(0) = 0)
//! ```
//! Defaults: lr = 1e-3, momentum = 0.9, weight_decay = 0,
//! weight_decouple = true. momentum = 0 is plain signSGD. Validation as the
//! reference: lr >= 0, momentum in [0, 1) (the reference calls it `beta` in
//! its message), weight_decay >= 0.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::math::{lerp, sign, WeightDecay};
use crate::optim::each::{sink0, sink1, Step};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};

crate::param_state! {
    /// signSGD state: the momentum buffer (allocated only when momentum > 0).
    pub struct SignSgdState { momentum_buffer }
}

/// Hyperparameters of `pytorch_optimizer.SignSGD`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignSgd {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Momentum factor (default 0.9); 0 gives signSGD, > 0 Signum.
    pub momentum: f64,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise.
    pub weight_decouple: bool,
}

impl Default for SignSgd {
    fn default() -> Self {
        SignSgd {
            lr: 1e-3,
            momentum: 0.9,
            weight_decay: 0.0,
            weight_decouple: true,
        }
    }
}

impl OptimizerConfig for SignSgd {
    const NAME: &'static str = "signsgd";
    const REFERENCE: &'static str = "pytorch_optimizer.SignSGD (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Bernstein et al., signSGD: Compressed Optimisation for Non-Convex Problems, ICML 2018 (arXiv:1802.04434)";
    const SUMMARY: &'static str = "sign of the gradient (signSGD) or of its momentum (Signum)";

    fn suggested() -> serde_json::Value {
        serde_json::json!({"lr": 3e-4})
    }

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), unit_interval_open(momentum),
            non_negative(weight_decay))
    }
}

/// Per-step scalars of signSGD.
#[derive(Debug, Clone, Copy)]
pub struct SignSgdScalars {
    wd: WeightDecay,
    lr: f32,
    /// `1 - momentum`, or `None` without momentum.
    w: Option<f32>,
}

/// One element with momentum: from (p, g, buf) returns the step (the
/// decayed p, direction `sign(buf)`) and the new buffer.
#[inline(always)]
fn signsgd_momentum_element(s: &SignSgdScalars, w: f32, x: f32, g: f32, b: f32) -> (Step, f32) {
    let (x, g) = s.wd.apply_to(x, g);
    let b = lerp(b, g, w);
    (Step { x, g, lr: s.lr, u: sign(b) }, b)
}

/// One element without momentum: the step (the decayed p, direction `sign(g)`).
#[inline(always)]
fn signsgd_plain_element(s: &SignSgdScalars, x: f32, g: f32) -> Step {
    let (x, g) = s.wd.apply_to(x, g);
    Step { x, g, lr: s.lr, u: sign(g) }
}

impl UpdateRule for SignSgd {
    type State = SignSgdState;
    crate::elementwise_rule!();
}

impl Elementwise for SignSgd {
    type Scalars = SignSgdScalars;

    fn prepare(
        &self,
        _: &StepInfo,
        p: &ParamMut<'_>,
        st: &mut SignSgdState,
    ) -> Result<SignSgdScalars> {
        st.step += 1;
        let momentum = self.momentum > 0.0;
        if momentum && !st.momentum_buffer.is_allocated() {
            st.momentum_buffer = StateTensor::zeros(p.numel());
        }
        Ok(SignSgdScalars {
            wd: WeightDecay::new(self.weight_decay, self.weight_decouple, self.lr),
            lr: self.lr as f32,
            w: momentum.then_some((1.0 - self.momentum) as f32),
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &SignSgdScalars, c: Chunk<'_>, apply: &mut A) {
        match s.w {
            Some(w) => sink1(c, apply, |x, g, b| signsgd_momentum_element(s, w, x, g, b)),
            None => sink0(c, apply, |x, g| signsgd_plain_element(s, x, g)),
        }
    }
}
