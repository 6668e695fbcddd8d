//! QHAdam: quasi-hyperbolic Adam, each moment mixed with the current
//! gradient (or its square) by a discount factor.
//!
//! **Reference:** `pytorch_optimizer.QHAdam` (pytorch-optimizer 4.1.0), its
//! default foreach path. **Paper:** Ma & Yarats, "Quasi-hyperbolic
//! momentum and Adam for deep learning", ICLR 2019 (arXiv:1810.06801).
//!
//! Update rule, per element, at step t (one counter for the optimizer):
//! ```text
//! g <- -g                                   if maximize
//! p <- p * (1 - wd * (fixed_decay ? 1 : lr)) if weight_decouple
//! g <- g + wd * p                           otherwise (L2, default)
//! w1 <- beta1 * w1 + 1,  w2 <- beta2 * w2 + 1   (per parameter, f32, from 0)
//! m <- lerp(m, g, 1 / w1)
//! v <- lerp(v, g^2, 1 / w2)
//! a <- m                     if nu1 = 1, else nu1 * m + (1 - nu1) * g
//! r <- sqrt(nu2 * v [+ (1 - nu2) * g^2 if nu2 != 1]) + eps
//! p <- p - lr * a / r
//! ```
//! Defaults: lr = 1e-3, betas = (0.9, 0.999), nus = (1, 1),
//! weight_decay = 0, weight_decouple = false, fixed_decay = false,
//! eps = 1e-8, maximize = false. Validation as the reference: lr >= 0,
//! betas in [0, 1), nus in [0, 1], weight_decay >= 0, eps >= 0.

use serde::{Deserialize, Serialize};

use super::adam_family::{decay, grad_sign};
use crate::error::Result;
use crate::math::{lerp, Maybe, WeightDecay};
use crate::optim::each::{sink2, Step};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};
use crate::validate as v;

crate::param_state! {
    /// QHAdam state: the moments and the f32 weight sums of the reference.
    pub struct QHAdamState { exp_avg, exp_avg_sq; unsized: beta1_weight, beta2_weight }
}

/// Hyperparameters of `pytorch_optimizer.QHAdam`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QHAdam {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the moments (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Immediate discount factors of the two moments (default (1, 1)).
    pub nus: [f64; 2],
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default false: L2).
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by lr (default false).
    pub fixed_decay: bool,
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for QHAdam {
    fn default() -> Self {
        QHAdam {
            lr: 1e-3,
            betas: [0.9, 0.999],
            nus: [1.0, 1.0],
            weight_decay: 0.0,
            weight_decouple: false,
            fixed_decay: false,
            eps: 1e-8,
            maximize: false,
        }
    }
}

impl OptimizerConfig for QHAdam {
    const NAME: &'static str = "qhadam";
    const REFERENCE: &'static str = "pytorch_optimizer.QHAdam (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Ma & Yarats, Quasi-hyperbolic momentum and Adam for deep learning, ICLR 2019 (arXiv:1810.06801)";
    const SUMMARY: &'static str = "Adam whose moments are mixed with the current gradient (quasi-hyperbolic)";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas))?;
        v::unit_interval(Self::NAME, "nus[0]", self.nus[0])?;
        v::unit_interval(Self::NAME, "nus[1]", self.nus[1])?;
        crate::checks!(self, non_negative(weight_decay, eps))
    }
}

/// Per-step scalars of QHAdam.
#[derive(Debug, Clone, Copy)]
pub struct QHAdamScalars {
    sign: f32,
    wd: WeightDecay,
    r1: f32,
    r2: f32,
    nu1: Maybe<(f32, f32)>,
    nu2: f32,
    nu2_rest: Maybe<f32>,
    eps: f32,
    lr: f32,
}

impl UpdateRule for QHAdam {
    type State = QHAdamState;
    crate::elementwise_rule!();
}

impl Elementwise for QHAdam {
    type Scalars = QHAdamScalars;

    fn prepare(&self, _: &StepInfo, p: &ParamMut<'_>, st: &mut QHAdamState) -> Result<QHAdamScalars> {
        let n = p.numel();
        if !st.exp_avg.is_allocated() {
            st.exp_avg = StateTensor::zeros(n);
            st.exp_avg_sq = StateTensor::zeros(n);
        }
        let w1 = st.beta1_weight.get_or_fill(p.name, "beta1_weight", 1, 0.0)?;
        w1[0] = w1[0] * self.betas[0] as f32 + 1.0;
        let r1 = 1.0 / w1[0];
        let w2 = st.beta2_weight.get_or_fill(p.name, "beta2_weight", 1, 0.0)?;
        w2[0] = w2[0] * self.betas[1] as f32 + 1.0;
        let r2 = 1.0 / w2[0];
        st.step += 1;
        let [nu1, nu2] = self.nus;
        Ok(QHAdamScalars {
            sign: grad_sign(self.maximize),
            wd: decay(self.weight_decay, self.weight_decouple, self.fixed_decay, self.lr, 1.0),
            r1,
            r2,
            nu1: (nu1 != 1.0).then_some((nu1 as f32, (1.0 - nu1) as f32)).into(),
            nu2: nu2 as f32,
            nu2_rest: (nu2 != 1.0).then_some((1.0 - nu2) as f32).into(),
            eps: self.eps as f32,
            lr: self.lr as f32,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &QHAdamScalars, c: Chunk<'_>, apply: &mut A) {
        sink2(c, apply, |x, g, m, v| {
            let (x, g) = s.wd.apply_to(x, s.sign * g);
            let g2 = g * g;
            let m = lerp(m, g, s.r1);
            let v = lerp(v, g2, s.r2);
            let mut r = v * s.nu2;
            if let Some(w) = s.nu2_rest.get() {
                r += w * g2;
            }
            let r = r.sqrt() + s.eps;
            let a = match s.nu1.get() {
                Some((nu1, w)) => m * nu1 + w * g,
                None => m,
            };
            // addcdiv(p, a, r, value=-lr).
            (Step { x, g, lr: 1.0, u: s.lr * a / r }, m, v)
        });
    }
}

