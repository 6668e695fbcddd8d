//! ASGD: averaged stochastic gradient descent.
//!
//! **Reference:** `torch.optim.ASGD` (torch 2.15.0), single-tensor path
//! (what the default `foreach = None` runs on CPU tensors), with
//! `capturable = False`. **Paper:** Polyak & Juditsky, "Acceleration of
//! Stochastic Approximation by Averaging", SIAM J. Control Optim. 1992.
//!
//! Update rule at step t, per element, with the per-parameter scalars eta
//! (starts at lr) and mu (starts at 1), stored in f32 as torch stores them:
//! ```text
//! g   <- -g                               if maximize
//! g   <- g + weight_decay * p             if weight_decay != 0
//! p   <- p * (1 - lambd * eta)
//! p   <- p - eta * g
//! ax  <- p                                if mu = 1
//! ax  <- ax + (p - ax) * mu               otherwise
//! eta <- lr / (1 + lambd * lr * t)^alpha  (f64, stored as f32)
//! mu  <- 1 / max(1, t - t0)
//! ```
//! `ax` (the running average of the parameter) is state, as in torch; the
//! parameter itself follows the SGD iterate. Defaults: lr = 1e-2,
//! lambd = 1e-4, alpha = 0.75, t0 = 1e6, weight_decay = 0, maximize =
//! false. Validation as torch: lr, lambd, alpha and weight_decay >= 0.
//! torch's execution flags (`foreach`, `differentiable`, `capturable`) are
//! not hyperparameters here.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::math::descent_sign;
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;

crate::param_state! {
    /// ASGD state: the parameter average `ax`, and the scalars `eta` (step
    /// size) and `mu` (averaging weight) of the next step.
    pub struct AsgdState { ax; unsized: eta, mu }
}

/// Hyperparameters of [`torch.optim.ASGD`](https://pytorch.org/docs/stable/generated/torch.optim.ASGD.html).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Asgd {
    /// Learning rate (default 1e-2).
    pub lr: f64,
    /// Decay term (default 1e-4).
    pub lambd: f64,
    /// Power of the eta schedule (default 0.75).
    pub alpha: f64,
    /// Step at which averaging starts (default 1e6).
    pub t0: f64,
    /// Coupled L2 weight decay (default 0).
    pub weight_decay: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Asgd {
    fn default() -> Self {
        Asgd {
            lr: 1e-2,
            lambd: 1e-4,
            alpha: 0.75,
            t0: 1e6,
            weight_decay: 0.0,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Asgd {
    const NAME: &'static str = "asgd";
    const REFERENCE: &'static str = "torch.optim.ASGD (torch 2.15.0)";
    const PAPER: &'static str =
        "Polyak & Juditsky, Acceleration of Stochastic Approximation by Averaging, SIAM J. Control Optim. 1992";
    const SUMMARY: &'static str = "SGD with a decaying step size and a running parameter average (Polyak averaging)";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr, lambd, alpha), finite(t0), non_negative(weight_decay))
    }
}

/// Per-step scalars of ASGD.
#[derive(Debug, Clone, Copy)]
pub struct AsgdScalars {
    sgn: f32,
    wd: f32,
    decay: f32,
    eta: f32,
    mu: f32,
}

impl Asgd {
    /// One pass over equal-length slices; the step goes through `apply`.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    fn run<A: Apply>(s: &AsgdScalars, x: &mut [f32], g: &[f32], ax: &mut [f32], apply: &mut A) {
        let n = x.len();
        let (g, ax) = (&g[..n], &mut ax[..n]);
        for i in 0..n {
            let mut gi = s.sgn * g[i];
            if s.wd != 0.0 {
                gi += s.wd * x[i];
            }
            let mut xi = x[i] * s.decay;
            apply.apply(&mut xi, gi, s.eta, gi);
            x[i] = xi;
            ax[i] = if s.mu != 1.0 { ax[i] + (xi - ax[i]) * s.mu } else { xi };
        }
    }
}

impl UpdateRule for Asgd {
    type State = AsgdState;
    crate::elementwise_rule!();
}

impl Elementwise for Asgd {
    type Scalars = AsgdScalars;

    /// Allocates the state, reads this step's eta and mu and stores those
    /// of the next step.
    fn prepare(&self, _: &StepInfo, p: &ParamMut<'_>, st: &mut AsgdState) -> Result<AsgdScalars> {
        st.ax.ensure(p.name, "ax", p.numel(), 0.0)?;
        let eta_slot = st.eta.get_or_fill(p.name, "eta", 1, self.lr as f32)?;
        let eta = eta_slot[0];
        let t = (st.step + 1) as f64;
        eta_slot[0] = (self.lr / (1.0 + self.lambd * self.lr * t).powf(self.alpha)) as f32;
        let mu_slot = st.mu.get_or_fill(p.name, "mu", 1, 1.0)?;
        let mu = mu_slot[0];
        mu_slot[0] = (1.0 / (t - self.t0).max(1.0)) as f32;
        st.step += 1;
        Ok(AsgdScalars {
            sgn: descent_sign(self.maximize),
            wd: self.weight_decay as f32,
            decay: (1.0 - self.lambd * eta as f64) as f32,
            eta,
            mu,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &AsgdScalars, c: Chunk<'_>, apply: &mut A) {
        let [ax, ..] = c.state;
        Self::run(s, c.value, c.grad, ax, apply);
    }
}
