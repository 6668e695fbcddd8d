//! AdamP: Adam whose update loses its radial component (along the weight)
//! for scale-invariant weights, detected by a small cosine similarity
//! between gradient and weight, per output channel or per layer.
//!
//! **Reference:** `pytorch_optimizer.AdamP` (pytorch-optimizer 4.1.0), its
//! per-parameter path (the class default, `foreach = false`), with its
//! `cautious`, `adam_debias`, `use_gc` and `adanorm` options (keyword
//! arguments there). **Paper:** Heo et al.,
//! "AdamP: Slowing Down the Slowdown for Momentum Optimizers on
//! Scale-invariant Weights", ICLR 2021 (arXiv:2006.08217).
//!
//! Update rule for one parameter at step t (one counter for the optimizer):
//! ```text
//! g <- -g                                        if maximize
//! g <- g - mean of g over all dims but the first if use_gc and p has 2 or more dimensions
//! m <- lerp(m, s, 1 - beta1)                     s = g, or with adanorm:
//!                                                e <- r e + (1 - r) ||g||  (r = adanorm_r, e from 0)
//!                                                s = g e / ||g|| if ||g|| > 0 and e > ||g||
//! v <- beta2 v + (1 - beta2) g^2
//! q  = sqrt(1 - beta2^t) / (sqrt(v) + eps)       (as reciprocal, then product)
//! u  = m (masked cautiously against g if cautious); lerp(u, g, 1 - beta1) if nesterov; u <- u * q
//! ratio = 1
//! if p has 2 or more dimensions, for view in (per output channel, whole tensor):
//!     if max over rows |cos(g_row, p_row)| < delta / sqrt(row length):
//!         p_n = p / (||p_row|| + eps);  u <- u - p_n * sum_row(p_n * u);  ratio = wd_ratio; stop
//! p <- p * (1 - wd * (fixed_decay ? 1 : lr) * ratio)   if weight_decouple (default)
//!                                  (L2: added to g after its use, no effect, as the reference)
//! p <- p - lr' u,  lr' = lr / (1 - beta1^t), or lr with adam_debias
//! ```
//! Defaults: lr = 1e-3, betas = (0.9, 0.999), weight_decay = 0,
//! weight_decouple = true, fixed_decay = false, delta = 0.1,
//! wd_ratio = 0.1, nesterov = false, eps = 1e-8, maximize = false,
//! cautious = false, adam_debias = false, use_gc = false, adanorm = false,
//! adanorm_r = 0.95. Validation as the reference:
//! lr >= 0, betas in [0, 1), weight_decay >= 0, wd_ratio in [0, 1),
//! eps >= 0. Row norms, cosines and row sums are accumulated in f64.

use serde::{Deserialize, Serialize};

use super::adam_family::{adanorm_rescaled, centralize_adanorm, debias, decay, grad_sign};
use super::pytorch_optimizer::radial_ratio;
use crate::error::Result;
use crate::exec::cautious_scale;
use crate::math::{bias_correction, lerp, Ema};
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::ParamMut;

crate::param_state! {
    /// AdamP state: first and second moments.
    pub struct AdamPState { exp_avg, exp_avg_sq; unsized: exp_grad_adanorm }
}

/// Hyperparameters of `pytorch_optimizer.AdamP`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamP {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the moments (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise (no effect).
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by lr (default false).
    pub fixed_decay: bool,
    /// Cosine threshold of the scale-invariance test (default 0.1).
    pub delta: f64,
    /// Weight-decay ratio of projected parameters (default 0.1).
    pub wd_ratio: f64,
    /// Nesterov momentum (default false).
    pub nesterov: bool,
    /// Added to the denominators (default 1e-8).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
    /// Cautious masking of the momentum against the gradient (default false).
    pub cautious: bool,
    /// AdamD: no bias correction of the first moment (default false).
    pub adam_debias: bool,
    /// Gradient centralization of parameters with 2 or more dimensions (default false).
    pub use_gc: bool,
    /// AdaNorm: the momentum takes the gradient rescaled to its running norm when smaller (default false).
    pub adanorm: bool,
    /// Decay of AdaNorm's running gradient norm (default 0.95).
    pub adanorm_r: f64,
}

impl Default for AdamP {
    fn default() -> Self {
        AdamP {
            lr: 1e-3,
            betas: [0.9, 0.999],
            weight_decay: 0.0,
            weight_decouple: true,
            fixed_decay: false,
            delta: 0.1,
            wd_ratio: 0.1,
            nesterov: false,
            eps: 1e-8,
            maximize: false,
            cautious: false,
            adam_debias: false,
            use_gc: false,
            adanorm: false,
            adanorm_r: 0.95,
        }
    }
}

impl OptimizerConfig for AdamP {
    const NAME: &'static str = "adamp";
    const REFERENCE: &'static str = "pytorch_optimizer.AdamP (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Heo et al., AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant Weights, ICLR 2021 (arXiv:2006.08217)";
    const SUMMARY: &'static str =
        "Adam with the radial update component removed for scale-invariant weights";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas), non_negative(weight_decay),
            unit_interval_open(wd_ratio), non_negative(eps), finite(delta))
    }
}

impl UpdateRule for AdamP {
    type State = AdamPState;

    #[allow(clippy::needless_range_loop)]
    fn update(&self, info: &StepInfo, p: &mut ParamMut<'_>, st: &mut AdamPState) -> Result<()> {
        let n = p.numel();
        st.start_step(p.name, n)?;
        let t = info.step;
        let [b1, b2] = self.betas;
        let w1 = (1.0 - b1) as f32;
        let ema2 = Ema::new(b2);
        let bc2_sqrt = bias_correction(b2, t).sqrt() as f32;
        let step_size = debias(self.lr, self.adam_debias, b1, t) as f32;
        let eps = self.eps as f32;
        let sg = grad_sign(self.maximize);
        let mut g: Vec<f32> = p.grad.iter().map(|&x| sg * x).collect();
        let ada = centralize_adanorm(
            &mut g,
            p.shape,
            self.use_gc,
            self.adanorm,
            &mut st.exp_grad_adanorm,
            p.name,
            self.adanorm_r,
        )?;
        let m = st.exp_avg.as_mut_slice();
        let v = st.exp_avg_sq.as_mut_slice();
        let mut u = vec![0.0f32; n];
        let mut kept = 0usize;
        for i in 0..n {
            let s = adanorm_rescaled(g[i], ada);
            m[i] = lerp(m[i], s, w1);
            v[i] = ema2.sq(v[i], g[i]);
            u[i] = (1.0 / (v[i].sqrt() + eps)) * bc2_sqrt;
            kept += (m[i] * g[i] > 0.0) as usize;
        }
        let scale = cautious_scale(n, kept);
        for i in 0..n {
            let mut a = m[i];
            if self.cautious {
                a *= if m[i] * g[i] > 0.0 { scale } else { 0.0 };
            }
            if self.nesterov {
                a = lerp(a, g[i], w1);
            }
            u[i] *= a;
        }
        let ratio = radial_ratio(p.value, &g, &mut u, p.shape, self.delta, self.eps as f32, self.wd_ratio);
        let wd = decay(self.weight_decay, self.weight_decouple, self.fixed_decay, self.lr, ratio);
        for i in 0..n {
            let (xi, _) = wd.apply_to(p.value[i], g[i]);
            p.value[i] = xi - step_size * u[i];
        }
        Ok(())
    }
}
