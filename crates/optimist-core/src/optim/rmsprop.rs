//! RMSprop, optionally centered and with momentum.
//!
//! **Reference:** `torch.optim.RMSprop` (torch 2.15.0), single-tensor path.
//! **Paper:** Hinton, Srivastava & Swersky, "Neural Networks for Machine
//! Learning", lecture 6e (Coursera, 2012); centered form: Graves,
//! "Generating Sequences With Recurrent Neural Networks", arXiv:1308.0850
//! (2013).
//!
//! Update rule, per element (torch's order of operations):
//! ```text
//! g <- -g                                  if maximize
//! g <- g + wd * p                          (L2)
//! s <- alpha * s + (1 - alpha) * g^2
//! if centered:
//!     a <- lerp(a, g, 1 - alpha)
//!     avg = sqrt(s - a * a) + eps
//! else:
//!     avg = sqrt(s) + eps
//! if momentum > 0:
//!     b <- momentum * b + g / avg
//!     p <- p - lr * b
//! else:
//!     p <- p + (-lr) * g / avg
//! ```
//! Defaults: lr = 1e-2, alpha = 0.99, eps = 1e-8, weight_decay = 0,
//! momentum = 0, centered = false, maximize = false. State per parameter:
//! `square_avg`, `momentum_buffer` (when momentum > 0), `grad_avg` (when
//! centered). alpha is only required to be >= 0, as in torch.
//!
//! Known differences: torch's CPU kernels fuse multiply-adds (lerp, addcmul,
//! add with alpha) into FMA instructions, and MKL builds of torch take f32
//! square roots from MKL, which are not always correctly rounded; here every
//! product is rounded and sqrt is IEEE, so values can differ from torch's in
//! the last bits (measured in docs/torch-catalogue.md).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::rule::{Apply, Chunk, Elementwise};
use crate::math::{descent_sign, Ema, WeightDecay};
use crate::optim::each::{direct1, direct2, direct3, select};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;

crate::param_state! {
    /// RMSprop state: the average of g², the momentum buffer and the
    /// average of g (centered).
    pub struct RmspropState { square_avg, momentum_buffer, grad_avg }
}

/// Hyperparameters of `torch.optim.RMSprop`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rmsprop {
    /// Learning rate (default 1e-2).
    pub lr: f64,
    /// Smoothing constant of the averages (default 0.99).
    pub alpha: f64,
    /// Added to the root of the average (default 1e-8).
    pub eps: f64,
    /// L2 weight decay (default 0).
    pub weight_decay: f64,
    /// Momentum factor (default 0).
    pub momentum: f64,
    /// Divide by the estimated variance instead of the raw second moment (default false).
    pub centered: bool,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Rmsprop {
    fn default() -> Self {
        Rmsprop {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Rmsprop {
    const NAME: &'static str = "rmsprop";
    const REFERENCE: &'static str = "torch.optim.RMSprop (torch 2.15.0)";
    const PAPER: &'static str = "Hinton, Srivastava & Swersky, Neural Networks for Machine Learning, lecture 6e, 2012; centered: Graves, arXiv:1308.0850";
    const SUMMARY: &'static str =
        "steps scaled by a moving root mean square of the gradient; centered and momentum options";

    fn suggested() -> serde_json::Value {
        serde_json::json!({"lr": 1e-3})
    }

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr, eps, momentum, weight_decay, alpha))
    }
}

/// Per-step scalars of RMSprop.
#[derive(Debug, Clone, Copy)]
pub struct RmspropScalars {
    wd: WeightDecay,
    sgn: f32,
    ema: Ema,
    eps: f32,
    lr: f32,
    mom: f32,
    centered: bool,
    momentum: bool,
}

/// One element in the mode given by `CENTERED` and `MOMENTUM`: from
/// (p, g, square_avg, momentum_buffer, grad_avg) returns their new values
/// (the unused ones unchanged).
#[inline(always)]
fn rmsprop_element<const CENTERED: bool, const MOMENTUM: bool>(
    s: &RmspropScalars,
    x: f32,
    g: f32,
    sq: f32,
    b: f32,
    ga: f32,
) -> (f32, f32, f32, f32) {
    let (x, g) = s.wd.apply_to(x, s.sgn * g);
    let sq = s.ema.sq(sq, g);
    let (root, ga) = if CENTERED {
        let ga = s.ema.lerp(ga, g);
        ((sq - ga * ga).sqrt(), ga)
    } else {
        (sq.sqrt(), ga)
    };
    let avg = root + s.eps;
    if MOMENTUM {
        let b = b * s.mom + g / avg;
        (x + -s.lr * b, sq, b, ga)
    } else {
        (x + (-s.lr * g) / avg, sq, b, ga)
    }
}

impl UpdateRule for Rmsprop {
    type State = RmspropState;
    crate::elementwise_rule!(direct);
}

impl Elementwise for Rmsprop {
    type Scalars = RmspropScalars;

    fn prepare(
        &self,
        _: &StepInfo,
        p: &ParamMut<'_>,
        st: &mut RmspropState,
    ) -> Result<RmspropScalars> {
        let n = p.numel();
        st.square_avg.ensure(p.name, "square_avg", n, 0.0)?;
        if self.centered {
            st.grad_avg.ensure(p.name, "grad_avg", n, 0.0)?;
        }
        let momentum = self.momentum > 0.0;
        if momentum {
            st.momentum_buffer
                .ensure(p.name, "momentum_buffer", n, 0.0)?;
        }
        st.step += 1;
        Ok(RmspropScalars {
            wd: WeightDecay::new(self.weight_decay, false, self.lr),
            sgn: descent_sign(self.maximize),
            ema: Ema::new(self.alpha),
            eps: self.eps as f32,
            lr: self.lr as f32,
            mom: self.momentum as f32,
            centered: self.centered,
            momentum,
        })
    }

    /// One loop per mode; the buffers are square_avg, momentum_buffer and
    /// grad_avg, the last two allocated only in their modes.
    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &RmspropScalars, c: Chunk<'_>, apply: &mut A) {
        match (s.centered, s.momentum) {
            (true, true) => direct3(s, c, apply, rmsprop_element::<true, true>),
            (true, false) => direct2(s, select(c, [0, 2]), apply, |s, x, g, sq, ga| {
                let (x, sq, _, ga) = rmsprop_element::<true, false>(s, x, g, sq, 0.0, ga);
                (x, sq, ga)
            }),
            (false, true) => direct2(s, c, apply, |s, x, g, sq, b| {
                let (x, sq, b, _) = rmsprop_element::<false, true>(s, x, g, sq, b, 0.0);
                (x, sq, b)
            }),
            (false, false) => direct1(s, c, apply, |s, x, g, sq| {
                let (x, sq, _, _) = rmsprop_element::<false, false>(s, x, g, sq, 0.0, 0.0);
                (x, sq)
            }),
        }
    }
}
