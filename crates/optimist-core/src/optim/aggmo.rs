//! AggMo: aggregated momentum, several heavy-ball buffers with different
//! decays averaged into one step.
//!
//! **Reference:** `pytorch_optimizer.AggMo` (pytorch-optimizer 4.1.0), its
//! default foreach path (the per-parameter path computes the same values).
//! **Paper:** Lucas, Sun, Zemel & Grosse, "Aggregated Momentum: Stability
//! Through Passive Damping", ICLR 2019 (arXiv:1804.00325).
//!
//! Update rule, per element, with K = len(betas):
//! ```text
//! g <- -g                            if maximize
//! p <- p * (1 - lr * wd)             if weight_decouple (1 - wd if fixed_decay)
//! g <- g + wd * p                    otherwise (L2)
//! for k in 0..K:  b_k <- beta_k * b_k + g        (b_k starts at 0)
//! p <- p - (lr / K) * (b_0 + ... + b_{K-1})
//! ```
//! The reference adds `(-lr / K) b_k` to p once per buffer; here the sum of
//! the buffers is formed first (it differs by rounding only).
//! Defaults: lr = 1e-3, betas = (0.0, 0.9, 0.99), weight_decay = 0,
//! weight_decouple = false, fixed_decay = false, maximize = false.
//! Validation as the reference: lr >= 0, at least two betas, betas[0] and
//! betas[1] in [0, 1), betas[2] in [0, 1], weight_decay >= 0. At most 8
//! betas (one state buffer each).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::math::{descent_sign, WeightDecay};
use crate::optim::each::{sink_loop, Step};
use crate::rule::{Apply, Chunk, Elementwise, OptimizerConfig, StepInfo, UpdateRule, MAX_BUFFERS};
use crate::tensor::ParamMut;
use crate::validate as v;

crate::param_state! {
    /// AggMo state: one momentum buffer per beta (the first `len(betas)`
    /// are allocated).
    pub struct AggMoState {
        momentum_buffer_0, momentum_buffer_1, momentum_buffer_2, momentum_buffer_3,
        momentum_buffer_4, momentum_buffer_5, momentum_buffer_6, momentum_buffer_7
    }
}

/// Hyperparameters of `pytorch_optimizer.AggMo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AggMo {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decays of the momentum buffers (default (0.0, 0.9, 0.99)).
    pub betas: Vec<f64>,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default false); L2 otherwise.
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by lr (default false).
    pub fixed_decay: bool,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for AggMo {
    fn default() -> Self {
        AggMo {
            lr: 1e-3,
            betas: vec![0.0, 0.9, 0.99],
            weight_decay: 0.0,
            weight_decouple: false,
            fixed_decay: false,
            maximize: false,
        }
    }
}

impl OptimizerConfig for AggMo {
    const NAME: &'static str = "aggmo";
    const REFERENCE: &'static str = "pytorch_optimizer.AggMo (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str =
        "Lucas, Sun, Zemel & Grosse, Aggregated Momentum: Stability Through Passive Damping, ICLR 2019 (arXiv:1804.00325)";
    const SUMMARY: &'static str = "average of several heavy-ball momentum buffers with different decays";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr))?;
        if self.betas.len() < 2 {
            return Err(Error::hparam(
                Self::NAME,
                "betas",
                format!("{:?}", self.betas),
                "needs at least two values (the reference reads betas[1])",
            ));
        }
        if self.betas.len() > MAX_BUFFERS {
            return Err(Error::hparam(
                Self::NAME,
                "betas",
                format!("{:?}", self.betas),
                &format!("at most {MAX_BUFFERS} values are supported (one state buffer each)"),
            ));
        }
        v::unit_interval_open(Self::NAME, "betas[0]", self.betas[0])?;
        v::unit_interval_open(Self::NAME, "betas[1]", self.betas[1])?;
        if let Some(&b) = self.betas.get(2) {
            v::unit_interval(Self::NAME, "betas[2]", b)?;
        }
        for (k, &b) in self.betas.iter().enumerate().skip(3) {
            v::finite(Self::NAME, &format!("betas[{k}]"), b)?;
        }
        crate::checks!(self, non_negative(weight_decay))
    }
}

/// Per-step scalars of AggMo.
#[derive(Debug, Clone, Copy)]
pub struct AggMoScalars {
    wd: WeightDecay,
    sgn: f32,
    betas: [f32; MAX_BUFFERS],
    k: usize,
    step_size: f32,
}

impl AggMo {
    /// One pass over equal-length slices; the step goes through `apply`.
    #[inline(always)]
    fn run<A: Apply>(
        s: &AggMoScalars,
        x: &mut [f32],
        g: &[f32],
        mut bufs: [&mut [f32]; MAX_BUFFERS],
        apply: &mut A,
    ) {
        let n = x.len();
        let g = &g[..n];
        let bufs = &mut bufs[..s.k];
        sink_loop!(x, apply, |i, xi| {
            let (xi, gi) = s.wd.apply_to(xi, s.sgn * g[i]);
            let mut sum = 0.0f32;
            for (b, &beta) in bufs.iter_mut().zip(&s.betas) {
                let bi = b[i] * beta + gi;
                b[i] = bi;
                sum += bi;
            }
            Step {
                x: xi,
                g: gi,
                lr: s.step_size,
                u: sum,
            }
        });
    }
}

impl UpdateRule for AggMo {
    type State = AggMoState;
    crate::elementwise_rule!();
}

impl Elementwise for AggMo {
    type Scalars = AggMoScalars;

    fn prepare(&self, _: &StepInfo, p: &ParamMut<'_>, st: &mut AggMoState) -> Result<AggMoScalars> {
        let n = p.numel();
        let k = self.betas.len().min(MAX_BUFFERS);
        let bufs = [
            &mut st.momentum_buffer_0,
            &mut st.momentum_buffer_1,
            &mut st.momentum_buffer_2,
            &mut st.momentum_buffer_3,
            &mut st.momentum_buffer_4,
            &mut st.momentum_buffer_5,
            &mut st.momentum_buffer_6,
            &mut st.momentum_buffer_7,
        ];
        for (j, b) in bufs.into_iter().enumerate().take(k) {
            b.ensure(p.name, &format!("momentum_buffer_{j}"), n, 0.0)?;
        }
        st.step += 1;
        let mut betas = [0.0f32; MAX_BUFFERS];
        for (dst, &b) in betas.iter_mut().zip(&self.betas) {
            *dst = b as f32;
        }
        let decay_lr = if self.fixed_decay { 1.0 } else { self.lr };
        Ok(AggMoScalars {
            wd: WeightDecay::new(self.weight_decay, self.weight_decouple, decay_lr),
            sgn: descent_sign(self.maximize),
            betas,
            k,
            step_size: (self.lr / k as f64) as f32,
        })
    }

    #[inline(always)]
    fn kernel<A: Apply>(&self, s: &AggMoScalars, c: Chunk<'_>, apply: &mut A) {
        Self::run(s, c.value, c.grad, c.state, apply);
    }
}
