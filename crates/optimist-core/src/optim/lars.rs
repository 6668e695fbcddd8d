//! LARS: layer-wise adaptive rate scaling on SGD with momentum.
//!
//! **Reference:** `pytorch_optimizer.LARS` (pytorch-optimizer 4.1.0), its
//! default foreach path (the per-parameter path computes the same values).
//! **Paper:** You, Gitman & Ginsburg, "Large Batch Training of Convolutional
//! Networks" (arXiv:1708.03888).
//!
//! Update rule, per parameter tensor:
//! ```text
//! g <- -g                                       if maximize
//! if p has more than one dimension:
//!     denom <- ||g|| + wd * ||p||
//!     trust <- trust_coefficient * ||p|| / denom  if ||p|| > 0 and denom > 0, else 1
//!     g     <- (g + wd * p) * trust
//! if momentum > 0:
//!     b <- momentum * b + (1 - dampening) * g      (b starts at 0)
//!     g <- g + momentum * b  if nesterov  else  b
//! p <- p - lr * g
//! ```
//! The norms are summed in f64 over fixed blocks (eight interleaved lanes
//! each, as `sqsum`), the blocks added in order; the norms and the step
//! run over the blocks in parallel on the fast path, with the same values
//! at any thread count.
//!
//! Scalars and vectors (at most one dimension) take plain momentum SGD,
//! without weight decay or scaling. Defaults: lr = 1e-3, weight_decay = 0,
//! momentum = 0.9, dampening = 0, trust_coefficient = 1e-3, nesterov =
//! false, maximize = false. Validation as the reference: lr >= 0,
//! weight_decay >= 0, momentum and dampening in [0, 1),
//! trust_coefficient >= 0.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::exec::{run_blocked, simd, Blocks};
use crate::math::{descent_sign, Maybe};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::sqsum::{add_pairs, add_sq2, lanes_sum, LANES};
use crate::state::StateStore;
use crate::tensor::ParamMut;

crate::param_state! {
    /// LARS state: the momentum buffer (allocated when momentum > 0).
    pub struct LarsState { momentum_buffer }
}

/// Hyperparameters of `pytorch_optimizer.LARS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lars {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// L2 weight decay inside the trust ratio (default 0).
    pub weight_decay: f64,
    /// Momentum factor (default 0.9).
    pub momentum: f64,
    /// Dampening of the momentum (default 0).
    pub dampening: f64,
    /// Trust coefficient (default 1e-3).
    pub trust_coefficient: f64,
    /// Nesterov momentum (default false).
    pub nesterov: bool,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Lars {
    fn default() -> Self {
        Lars {
            lr: 1e-3,
            weight_decay: 0.0,
            momentum: 0.9,
            dampening: 0.0,
            trust_coefficient: 1e-3,
            nesterov: false,
            maximize: false,
        }
    }
}

impl OptimizerConfig for Lars {
    const NAME: &'static str = "lars";
    const REFERENCE: &'static str = "pytorch_optimizer.LARS (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str =
        "You, Gitman & Ginsburg, Large Batch Training of Convolutional Networks (arXiv:1708.03888)";
    const SUMMARY: &'static str = "momentum SGD with a per-layer trust ratio ||p|| / ||g + wd p||";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr, weight_decay),
            unit_interval_open(momentum, dampening), non_negative(trust_coefficient))
    }
}

impl UpdateRule for Lars {
    type State = LarsState;
    const BLOCKED: bool = true;

    fn update(&self, _: &StepInfo, p: &mut ParamMut<'_>, st: &mut LarsState) -> Result<()> {
        self.update_param(p, st, Blocks::SEQUENTIAL)
    }

    /// The norms and the step over fixed blocks, in parallel on the fast
    /// path.
    fn update_all(
        &self,
        info: &StepInfo,
        params: &mut [ParamMut<'_>],
        states: &mut StateStore<LarsState>,
    ) -> Option<Result<()>> {
        Some(run_blocked(info, params, states, |p, st, blocks| {
            self.update_param(p, st, blocks)
        }))
    }
}

impl Lars {
    fn update_param(&self, p: &mut ParamMut<'_>, st: &mut LarsState, blocks: Blocks) -> Result<()> {
        let n = p.numel();
        if self.momentum > 0.0 {
            st.momentum_buffer.ensure(p.name, "momentum_buffer", n, 0.0)?;
        }
        st.step += 1;
        // The trust ratio of a matrix: ||p|| and ||g|| (the sign does not
        // change it) from per-block sums of squares in interleaved lanes,
        // added in block order.
        let scale = if p.shape.len() > 1 {
            let items = p.value.chunks(BLOCK).zip(p.grad.chunks(BLOCK));
            let sums = blocks.map(items, |(x, g)| {
                let (mut lx, mut lg) = ([0.0f64; LANES], [0.0f64; LANES]);
                add_sq2(x, g, &mut lx, &mut lg);
                (lanes_sum(&lx), lanes_sum(&lg))
            });
            let (px, pg) = add_pairs(&sums);
            let (pn, gn) = (px.sqrt() as f32, pg.sqrt() as f32);
            let wd = self.weight_decay as f32;
            let denom = gn + wd * pn;
            let trust = if pn > 0.0 && denom > 0.0 {
                (self.trust_coefficient as f32) * pn / denom
            } else {
                1.0
            };
            Some([wd, trust])
        } else {
            None
        };
        let k = Consts {
            sgn: descent_sign(self.maximize),
            scale: scale.into(),
            momentum: self.momentum as f32,
            damp: (1.0 - self.dampening) as f32,
            nesterov: self.nesterov,
            lr: self.lr as f32,
        };
        let bufs: &mut [f32] = if self.momentum > 0.0 {
            st.momentum_buffer.as_mut_slice()
        } else {
            &mut []
        };
        let bufs = bufs.chunks_mut(BLOCK).map(Some).chain(std::iter::repeat_with(|| None));
        let items = p.value.chunks_mut(BLOCK).zip(p.grad.chunks(BLOCK)).zip(bufs);
        blocks.map(items, |((x, g), b)| step(&k, x, g, b.unwrap_or_default()));
        Ok(())
    }
}

/// Elements per block of LARS's passes and of the norms' partial sums:
/// fixed, so that the values do not depend on the thread count.
const BLOCK: usize = crate::exec::CHUNK;

/// Per-step constants of one LARS parameter.
#[derive(Debug, Clone, Copy)]
struct Consts {
    sgn: f32,
    /// `[weight_decay, trust]` for a matrix.
    scale: Maybe<[f32; 2]>,
    momentum: f32,
    damp: f32,
    nesterov: bool,
    lr: f32,
}

/// The step over one block; `b` (the momentum buffer) is empty without
/// momentum.
fn step(k: &Consts, x: &mut [f32], g: &[f32], b: &mut [f32]) {
    simd!(avx512; fn(k: &Consts, x: &mut [f32], g: &[f32], b: &mut [f32]) {
        #[inline(always)]
        fn grad(k: &Consts, x: f32, g: f32) -> f32 {
            let g = k.sgn * g;
            match k.scale.get() {
                Some([wd, trust]) => (g + wd * x) * trust,
                None => g,
            }
        }
        let n = x.len();
        let g = &g[..n];
        if b.is_empty() {
            for i in 0..n {
                let gi = grad(k, x[i], g[i]);
                x[i] -= k.lr * gi;
            }
        } else {
            let b = &mut b[..n];
            for i in 0..n {
                let gi = grad(k, x[i], g[i]);
                let bi = b[i] * k.momentum + k.damp * gi;
                b[i] = bi;
                let u = if k.nesterov { gi + k.momentum * bi } else { bi };
                x[i] -= k.lr * u;
            }
        }
    })
}
