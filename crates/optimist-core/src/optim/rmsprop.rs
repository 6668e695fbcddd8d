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
use crate::math::{descent_sign, Ema, WeightDecay};
use crate::optimizer::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;
use crate::validate as v;

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

    fn validate(&self) -> Result<()> {
        v::non_negative(Self::NAME, "lr", self.lr)?;
        v::non_negative(Self::NAME, "eps", self.eps)?;
        v::non_negative(Self::NAME, "momentum", self.momentum)?;
        v::non_negative(Self::NAME, "weight_decay", self.weight_decay)?;
        v::non_negative(Self::NAME, "alpha", self.alpha)
    }
}

impl UpdateRule for Rmsprop {
    type State = RmspropState;

    fn update(&self, _info: &StepInfo, p: &mut ParamMut<'_>, st: &mut RmspropState) -> Result<()> {
        let n = p.numel();
        let sq = st.square_avg.get_or_fill(p.name, "square_avg", n, 0.0)?;
        let mut ga = match self.centered {
            true => Some(st.grad_avg.get_or_fill(p.name, "grad_avg", n, 0.0)?),
            false => None,
        };
        let mut buf = match self.momentum > 0.0 {
            true => Some(
                st.momentum_buffer
                    .get_or_fill(p.name, "momentum_buffer", n, 0.0)?,
            ),
            false => None,
        };
        st.step += 1;
        let ema = Ema::new(self.alpha);
        let eps = self.eps as f32;
        let lr = self.lr as f32;
        let mom = self.momentum as f32;
        let wd = WeightDecay::new(self.weight_decay, false, self.lr);
        let sgn = descent_sign(self.maximize);
        for (i, ((x, &g), s)) in p.value.iter_mut().zip(p.grad.iter()).zip(sq).enumerate() {
            let g = wd.apply(x, sgn * g);
            *s = ema.sq(*s, g);
            let root = match ga.as_deref_mut() {
                Some(ga) => {
                    ga[i] = ema.lerp(ga[i], g);
                    (*s - ga[i] * ga[i]).sqrt()
                }
                None => s.sqrt(),
            };
            let avg = root + eps;
            match buf.as_deref_mut() {
                Some(b) => {
                    b[i] = b[i] * mom + g / avg;
                    *x += -lr * b[i];
                }
                None => *x += (-lr * g) / avg,
            }
        }
        Ok(())
    }
}
