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

use crate::rule::{Apply, Plain};
use crate::error::Result;
use crate::rule::{Chunk, Elementwise};
use crate::math::{lerp, sign, WeightDecay};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};
use crate::validate as v;

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

    fn validate(&self) -> Result<()> {
        v::non_negative(Self::NAME, "lr", self.lr)?;
        v::unit_interval_open(Self::NAME, "momentum", self.momentum)?;
        v::non_negative(Self::NAME, "weight_decay", self.weight_decay)
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

/// One element with momentum: from (p, g, buf) returns the decayed p, the
/// gradient, the new buffer and the update direction.
#[inline(always)]
fn signsgd_momentum_element(
    s: &SignSgdScalars,
    w: f32,
    x: f32,
    g: f32,
    b: f32,
) -> (f32, f32, f32, f32) {
    let (x, g) = s.wd.apply_to(x, g);
    let b = lerp(b, g, w);
    (x, g, b, sign(b))
}

/// One element without momentum: the decayed p, the gradient and the direction.
#[inline(always)]
fn signsgd_plain_element(s: &SignSgdScalars, x: f32, g: f32) -> (f32, f32, f32) {
    let (x, g) = s.wd.apply_to(x, g);
    (x, g, sign(g))
}

impl UpdateRule for SignSgd {
    type State = SignSgdState;
    const EXPOSES_UPDATE: bool = true;

    fn update(&self, info: &StepInfo, p: &mut ParamMut<'_>, st: &mut SignSgdState) -> Result<()> {
        self.update_with(info, p, st, &mut Plain)
    }

    #[allow(clippy::needless_range_loop)]
    fn update_with<A: Apply>(
        &self,
        info: &StepInfo,
        p: &mut ParamMut<'_>,
        st: &mut SignSgdState,
        apply: &mut A,
    ) -> Result<()> {
        let s = self.prepare(info, p, st)?;
        match s.w {
            Some(w) => {
                let buf = st.momentum_buffer.as_mut_slice();
                for i in 0..p.numel() {
                    let (mut x, g, b, u) =
                        signsgd_momentum_element(&s, w, p.value[i], p.grad[i], buf[i]);
                    buf[i] = b;
                    apply.apply(&mut x, g, s.lr, u);
                    p.value[i] = x;
                }
            }
            None => {
                for i in 0..p.numel() {
                    let (mut x, g, u) = signsgd_plain_element(&s, p.value[i], p.grad[i]);
                    apply.apply(&mut x, g, s.lr, u);
                    p.value[i] = x;
                }
            }
        }
        Ok(())
    }

    crate::elementwise_fast_path!();
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
    #[allow(clippy::needless_range_loop)]
    fn kernel<A: Apply>(&self, s: &SignSgdScalars, c: Chunk<'_>, _apply: &mut A) {
        let n = c.value.len();
        let (x, g) = (c.value, &c.grad[..n]);
        let [b, ..] = c.state;
        match s.w {
            Some(w) => {
                let b = &mut b[..n];
                for i in 0..n {
                    let (xi, _, bi, u) = signsgd_momentum_element(s, w, x[i], g[i], b[i]);
                    b[i] = bi;
                    x[i] = xi - s.lr * u;
                }
            }
            None => {
                for i in 0..n {
                    let (xi, _, u) = signsgd_plain_element(s, x[i], g[i]);
                    x[i] = xi - s.lr * u;
                }
            }
        }
    }
}
