//! AdaMomentum: Adam whose second moment tracks the momentum instead of the
//! raw gradient.
//!
//! **Paper:** Wang, Kang, Qin, Wang, Xu, Zhang & Fu, "Rethinking Adam: A
//! Twofold Exponential Moving Average Approach", arXiv:2106.11514 (earlier
//! title "Adapting Stepsizes by Momentumized Gradients Improves Optimization
//! and Generalization"). **Reference:** no library implements it and the
//! authors' code was not published; the golden cases
//! (`tests/golden/extensions/adamomentum-*.json`) come from an independent
//! implementation of the same formula in `tools/gen_cases.py`, itself checked
//! against a float64 numpy implementation.
//!
//! Update rule, per element, at step t:
//! ```text
//! p <- p * (1 - lr * weight_decay)                 (decoupled, before the update)
//! m <- beta1 * m + (1 - beta1) * g
//! v <- beta2 * v + (1 - beta2) * m^2 + eps         (eps added INTO the state, every step)
//! p <- p - lr / (1 - beta1^t) * m / sqrt(v / (1 - beta2^t))
//! ```
//! **eps placement:** eps is added inside the second-moment state (as in
//! AdaBelief 0.2.1, from which the known ports of AdaMomentum derive), and
//! there is no eps outside the square root. Since `v >= eps` from the first
//! step on, the denominator never vanishes. This differs from Adam's
//! `sqrt(v_hat) + eps`; with eps = 1e-8 and `beta2 = 0.999` the state floor
//! is `eps / (1 - beta2) = 1e-5` in the long run, i.e. a denominator floor
//! near 3.2e-3, much larger than Adam's. Weight decay is not part of the
//! paper's algorithm; it is decoupled (AdamW style) here.
//!
//! Defaults (Adam's): lr = 1e-3, betas = (0.9, 0.999), eps = 1e-8,
//! weight_decay = 0.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::rule::{Apply, Chunk, Elementwise};
use crate::math::{bias_correction, WeightDecay};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;

crate::param_state! {
    /// AdaMomentum state: the momentum and the second moment of the momentum.
    pub struct AdaMomentumState { exp_avg, exp_avg_sq }
}

/// Hyperparameters of AdaMomentum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaMomentum {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the momentum and of its second moment (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Added to the second-moment state every step (default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay (default 0).
    pub weight_decay: f64,
}

impl Default for AdaMomentum {
    fn default() -> Self {
        AdaMomentum {
            lr: 1e-3,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl OptimizerConfig for AdaMomentum {
    const NAME: &'static str = "adamomentum";
    const REFERENCE: &'static str =
        "none published; independent implementation of the paper's formula (tools/gen_cases.py)";
    const PAPER: &'static str = "Wang et al., Rethinking Adam: A Twofold Exponential Moving Average Approach (arXiv:2106.11514)";
    const SUMMARY: &'static str =
        "Adam with the second moment of the momentum; eps inside the state";

    fn suggested() -> serde_json::Value {
        serde_json::json!({"lr": 1e-3})
    }

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), non_negative(eps, weight_decay))
    }
}

/// Per-step scalars of AdaMomentum.
#[derive(Debug, Clone, Copy)]
pub struct AdaMomentumScalars {
    wd: WeightDecay,
    b1: f32,
    w1: f32,
    b2: f32,
    w2: f32,
    eps: f32,
    bc2: f32,
    neg_step: f32,
}

/// One element: from (p, g, m, v) returns the new p, m and v.
#[inline(always)]
fn adamomentum_element(s: &AdaMomentumScalars, x: f32, g: f32, m: f32, v: f32) -> (f32, f32, f32) {
    let (x, g) = s.wd.apply_to(x, g);
    let m = m * s.b1 + s.w1 * g;
    let v = (v * s.b2 + s.w2 * m * m) + s.eps;
    let denom = (v / s.bc2).sqrt();
    (x + s.neg_step * m / denom, m, v)
}

impl UpdateRule for AdaMomentum {
    type State = AdaMomentumState;
    crate::elementwise_rule!(direct);
}

impl Elementwise for AdaMomentum {
    type Scalars = AdaMomentumScalars;

    fn prepare(
        &self,
        _: &StepInfo,
        p: &ParamMut<'_>,
        st: &mut AdaMomentumState,
    ) -> Result<AdaMomentumScalars> {
        st.start_step(p.name, p.numel())?;
        let t = st.step;
        let [beta1, beta2] = self.betas;
        Ok(AdaMomentumScalars {
            wd: WeightDecay::new(self.weight_decay, true, self.lr),
            b1: beta1 as f32,
            w1: (1.0 - beta1) as f32,
            b2: beta2 as f32,
            w2: (1.0 - beta2) as f32,
            eps: self.eps as f32,
            bc2: bias_correction(beta2, t) as f32,
            neg_step: (-self.lr / bias_correction(beta1, t)) as f32,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &AdaMomentumScalars, c: Chunk<'_>, apply: &mut A) {
        super::each::direct2(s, c, apply, adamomentum_element);
    }
}
