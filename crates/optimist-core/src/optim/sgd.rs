//! SGD with momentum, dampening, Nesterov momentum and L2 weight decay.
//!
//! **Reference:** `torch.optim.SGD` (torch 2.15.0), single-tensor path.
//! **Papers:** Polyak 1964 (heavy ball); Nesterov 1983; Sutskever et al.,
//! "On the importance of initialization and momentum in deep learning",
//! ICML 2013.
//!
//! Update rule, per element, at step t:
//! ```text
//! g <- -g                       if maximize
//! g <- g + weight_decay * p     (coupled L2)
//! if momentum != 0:
//!     b <- g                                  at t = 1 (no dampening on the first step)
//!     b <- momentum * b + (1 - dampening) * g otherwise
//!     g <- g + momentum * b  if nesterov else  b
//! p <- p - lr * g
//! ```
//! Defaults: lr = 1e-3, momentum = 0, dampening = 0, weight_decay = 0,
//! nesterov = false, maximize = false. `nesterov` requires momentum > 0 and
//! dampening = 0 (as torch).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::math::{descent_sign, WeightDecay};
use crate::optim::each::{sink0, sink1, Step};
use crate::rule::{Apply, Chunk, OptimizerConfig};
use crate::tensor::{ParamMut, StateTensor};

crate::param_state! {
    /// SGD state: the momentum buffer (allocated only when momentum != 0).
    pub struct SgdState { momentum_buffer }
}

/// Hyperparameters of [`torch.optim.SGD`](https://pytorch.org/docs/stable/generated/torch.optim.SGD.html).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sgd {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Momentum factor (default 0).
    pub momentum: f64,
    /// Dampening of the momentum (default 0).
    pub dampening: f64,
    /// Coupled L2 weight decay (default 0).
    pub weight_decay: f64,
    /// Nesterov momentum (default false).
    pub nesterov: bool,
    /// Maximize the objective instead of minimizing (default false).
    pub maximize: bool,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Sgd {
    const NAME: &'static str = "sgd";
    const REFERENCE: &'static str = "torch.optim.SGD (torch 2.15.0)";
    const PAPER: &'static str = "Polyak 1964; Nesterov 1983; Sutskever et al., ICML 2013";
    const SUMMARY: &'static str = "stochastic gradient descent with (Nesterov) momentum";

    fn suggested() -> serde_json::Value {
        serde_json::json!({"lr": 0.05, "momentum": 0.9})
    }

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr, momentum), finite(dampening),
            non_negative(weight_decay))?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::hparam(
                Self::NAME,
                "nesterov",
                true,
                "Nesterov momentum requires momentum > 0 and dampening = 0",
            ));
        }
        Ok(())
    }
}

/// Per-step scalars of SGD with (Nesterov) momentum (SGD, SGDW).
#[derive(Debug, Clone, Copy)]
pub struct SgdScalars {
    wd: WeightDecay,
    lr: f32,
    sgn: f32,
    mom: f32,
    damp: f32,
    momentum: bool,
    first: bool,
    nesterov: bool,
}

impl SgdScalars {
    /// The scalars of a step on `p` (SGD, SGDW), allocating its momentum
    /// buffer `buf` (zeros) on the first step with momentum != 0.
    pub(crate) fn start(
        buf: &mut StateTensor,
        p: &ParamMut<'_>,
        wd: WeightDecay,
        lr: f64,
        hp: (f64, f64, bool),
        maximize: bool,
    ) -> Result<Self> {
        let momentum = hp.0 != 0.0;
        let first = momentum && !buf.is_allocated();
        if momentum {
            buf.ensure(p.name, "momentum_buffer", p.numel(), 0.0)?;
        }
        Ok(SgdScalars::new(wd, lr, hp, maximize, first))
    }

    /// The scalars of one step with weight decay `wd`; `first` on the step
    /// that creates the momentum buffer (no dampening then).
    pub(crate) fn new(
        wd: WeightDecay,
        lr: f64,
        (momentum, dampening, nesterov): (f64, f64, bool),
        maximize: bool,
        first: bool,
    ) -> Self {
        SgdScalars {
            wd,
            lr: lr as f32,
            sgn: descent_sign(maximize),
            mom: momentum as f32,
            damp: (1.0 - dampening) as f32,
            momentum: momentum != 0.0,
            first,
            nesterov,
        }
    }
}

/// The kernel of SGD with (Nesterov) momentum, shared with SGDW: the step
/// of every element is `p <- p - lr * d` after weight decay, where `d` is
/// the gradient without momentum, else the new momentum `b` (or
/// `g + momentum * b` with Nesterov).
#[inline(always)]
pub(crate) fn sgd_kernel<A: Apply>(s: &SgdScalars, c: Chunk<'_>, apply: &mut A) {
    if !s.momentum {
        return sink0(c, apply, |x, g| {
            let (x, g) = s.wd.apply_to(x, s.sgn * g);
            Step { x, g, lr: s.lr, u: g }
        });
    }
    sink1(c, apply, |x, g, b| {
        let (x, g) = s.wd.apply_to(x, s.sgn * g);
        let b = if s.first { g } else { b * s.mom + s.damp * g };
        let u = if s.nesterov { g + s.mom * b } else { b };
        (Step { x, g, lr: s.lr, u }, b)
    });
}

/// `impl UpdateRule` and `impl Elementwise` of a rule on [`sgd_kernel`]
/// (SGD, SGDW): state `$state` (fields `step`, `momentum_buffer`), weight
/// decay `$wd` of the configuration `$c`.
macro_rules! sgd_rule {
    ($rule:ty, $state:ty, |$c:ident| $wd:expr) => {
        impl $crate::rule::UpdateRule for $rule {
            type State = $state;
            $crate::elementwise_rule!();
        }

        impl $crate::rule::Elementwise for $rule {
            type Scalars = $crate::optim::sgd::SgdScalars;

            fn prepare(
                &self,
                _: &$crate::rule::StepInfo,
                p: &$crate::tensor::ParamMut<'_>,
                st: &mut $state,
            ) -> $crate::error::Result<Self::Scalars> {
                let $c = self;
                st.step += 1;
                $crate::optim::sgd::SgdScalars::start(
                    &mut st.momentum_buffer,
                    p,
                    $wd,
                    $c.lr,
                    ($c.momentum, $c.dampening, $c.nesterov),
                    $c.maximize,
                )
            }

            #[inline(always)]
            fn kernel<A: $crate::rule::Apply>(
                &self,
                s: &Self::Scalars,
                c: $crate::rule::Chunk<'_>,
                apply: &mut A,
            ) {
                $crate::optim::sgd::sgd_kernel(s, c, apply);
            }
        }
    };
}
pub(crate) use sgd_rule;

sgd_rule!(Sgd, SgdState, |c| WeightDecay::new(c.weight_decay, false, c.lr));
