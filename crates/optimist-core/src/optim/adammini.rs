//! Adam-mini: Adam with one second-moment value per block of parameters
//! (per tensor, per attention head), blocks chosen from the parameter names.
//!
//! **Reference:** `pytorch_optimizer.AdamMini` (pytorch-optimizer 4.1.0),
//! single process (`model_sharding` has no effect there with one process),
//! its default per-tensor path on the CPU. **Paper:** Zhang, Chen, Li,
//! Ding, Chen, Kingma, Ye, Luo & Sun, "Adam-mini: Use Fewer Learning Rates
//! To Gain More", ICLR 2025 (arXiv:2406.16793).
//!
//! The reference builds one parameter group per named parameter of a
//! model; here each parameter's name (`ParamMut::name`, e.g.
//! `model.layers.0.self_attn.q_proj.weight`) picks its rule the same way,
//! by substring:
//! - weight decay: 0 if the name contains `norm` or `ln_f`, else
//!   `weight_decay`;
//! - *embedding* (`embed`, `embd`, `wte`, `lm_head.weight`, `output.weight`):
//!   plain Adam, one second moment per element;
//! - *query/key projection* (`k_proj.weight`, `q_proj.weight`, `wq.weight`,
//!   `wk.weight`): one second moment per head, a head being
//!   `num_embeds^2 / num_heads` consecutive values;
//! - *fused attention* (`attn.attn.weight`, `attn.qkv.weight`): the tensor
//!   viewed as `num_query_groups x (num_heads / num_query_groups + 2) x
//!   rest`, one second moment per row of the last dim;
//! - anything else: one second moment for the whole tensor.
//!
//! Update rule at step t (1-based), `bc1 = 1 - beta1^t`, `bc2s = sqrt(1 -
//! beta2^t)`; for a block `B` with mean square `ms(g_B)`:
//! ```text
//! g <- -g                                  if maximize
//! p <- p (1 - lr wd)                       (decoupled decay)
//! m <- lerp(m, g, 1 - beta1)
//! embedding:  v <- v beta2 + (1 - beta2) g g;  h = sqrt(v) / bc2s + eps
//!             p <- p - lr / bc1 m / h
//! blocks:     v_B <- lerp(v_B, ms(g_B), 1 - beta2);  h_B = sqrt(v_B) / bc2s + eps
//!             p <- p - lr m / (h_B bc1)    (q/k: m (1 / (h_B bc1)); whole tensor: m ((1 / h) (1 / bc1)))
//! ```
//! Shapes as the reference accepts them: a q/k or fused-attention tensor
//! must have at most 2 dims and a size divisible by its block size (an
//! error otherwise, before anything changes).
//!
//! Defaults: lr = 1.0, betas = (0.9, 0.999), weight_decay = 0.1,
//! model_sharding = false, num_embeds = 2048, num_heads = 32,
//! num_query_groups = null (= num_heads), eps = 1e-8, maximize = false.
//! Validation as the reference: lr >= 0, betas in [0, 1), weight_decay >=
//! 0, num_embeds > 0, num_heads > 0, num_query_groups > 0, eps >= 0,
//! num_embeds divisible by num_heads, num_heads by num_query_groups.
//!
//! State: `m` per parameter; `v` for embeddings; `v_mean` (one value per
//! block) for the others. Sums are accumulated in f64 and rounded to f32
//! (the reference sums in f32).

#![allow(clippy::needless_range_loop)]

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::math::lerp;
use crate::rule::{OptimizerConfig, StepInfo, UpdateRule};
use crate::tensor::{ParamMut, StateTensor};
use crate::validate as v;

crate::param_state! {
    /// Adam-mini state: the first moment, the per-element second moment
    /// (embeddings) and the per-block second moments.
    pub struct AdamMiniState { m, v; unsized: v_mean }
}

/// Hyperparameters of `pytorch_optimizer.AdamMini`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamMini {
    /// Learning rate (default 1.0).
    pub lr: f64,
    /// Decay rates of the moments (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Decoupled weight decay, 0 for `norm`/`ln_f` parameters (default 0.1).
    pub weight_decay: f64,
    /// Model sharding across processes (default false; no effect in one process).
    pub model_sharding: bool,
    /// Embedding width (default 2048).
    pub num_embeds: u64,
    /// Attention heads (default 32).
    pub num_heads: u64,
    /// Query groups (GQA); null = num_heads (default null).
    pub num_query_groups: Option<u64>,
    /// Denominator epsilon (default 1e-8).
    pub eps: f64,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for AdamMini {
    fn default() -> Self {
        AdamMini {
            lr: 1.0,
            betas: [0.9, 0.999],
            weight_decay: 0.1,
            model_sharding: false,
            num_embeds: 2048,
            num_heads: 32,
            num_query_groups: None,
            eps: 1e-8,
            maximize: false,
        }
    }
}

const EMBED_BLOCKS: [&str; 5] = ["embed", "embd", "wte", "lm_head.weight", "output.weight"];
const QK_BLOCKS: [&str; 4] = ["k_proj.weight", "q_proj.weight", "wq.weight", "wk.weight"];

/// Which rule a parameter follows, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// Adam per element.
    Embed,
    /// One second moment per head of `usize` values.
    QueryKey(usize),
    /// One per row of `groups x (q_per_kv + 2) x rest`: (groups, q_per_kv + 2).
    Attention(usize, usize),
    /// One for the whole tensor.
    Whole,
}

impl OptimizerConfig for AdamMini {
    const NAME: &'static str = "adammini";
    const REFERENCE: &'static str = "pytorch_optimizer.AdamMini (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Zhang et al., Adam-mini: Use Fewer Learning Rates To Gain More, ICLR 2025 (arXiv:2406.16793)";
    const SUMMARY: &'static str = "Adam with one second moment per parameter block (tensor, head), picked by name";

    fn validate(&self) -> Result<()> {
        let n = Self::NAME;
        crate::checks!(self, non_negative(lr), betas(betas), non_negative(weight_decay),
            at_least(num_embeds, num_heads; 1), non_negative(eps))?;
        let groups = self.query_groups();
        v::at_least(n, "num_query_groups", groups, 1)?;
        if !self.num_embeds.is_multiple_of(self.num_heads) {
            return Err(Error::hparam(n, "num_embeds", self.num_embeds, "must be divisible by num_heads"));
        }
        if !self.num_heads.is_multiple_of(groups) {
            return Err(Error::hparam(n, "num_heads", self.num_heads, "must be divisible by num_query_groups"));
        }
        Ok(())
    }
}

impl AdamMini {
    fn query_groups(&self) -> u64 {
        self.num_query_groups.unwrap_or(self.num_heads)
    }

    /// The rule of parameter `name`.
    pub fn block(&self, name: &str) -> Block {
        if EMBED_BLOCKS.iter().any(|b| name.contains(b)) {
            Block::Embed
        } else if QK_BLOCKS.iter().any(|b| name.contains(b)) {
            Block::QueryKey((self.num_embeds * self.num_embeds / self.num_heads) as usize)
        } else if name.contains("attn.attn.weight") || name.contains("attn.qkv.weight") {
            let g = self.query_groups();
            Block::Attention(g as usize, (self.num_heads / g + 2) as usize)
        } else {
            Block::Whole
        }
    }

    /// Blocks of parameter `p`: (number of blocks, values per block).
    fn blocks(&self, p: &ParamMut<'_>) -> Result<Option<(usize, usize)>> {
        let n = p.numel();
        let bad = |what: String| {
            Err(Error::Shape(format!(
                "{}: parameter '{}' of shape {:?}: {what}",
                Self::NAME,
                p.name,
                p.shape
            )))
        };
        match self.block(p.name) {
            Block::Embed => Ok(None),
            Block::Whole => Ok(Some((1, n))),
            Block::QueryKey(per_head) => {
                if p.shape.len() > 2 {
                    return bad("a query/key projection must have at most 2 dims".into());
                }
                if per_head == 0 || !n.is_multiple_of(per_head) {
                    return bad(format!("size not divisible by the head size {per_head}"));
                }
                Ok(Some((n / per_head, per_head)))
            }
            Block::Attention(g, rows) => {
                if p.shape.len() > 2 {
                    return bad("a fused attention weight must have at most 2 dims".into());
                }
                if !n.is_multiple_of(g * rows) || n == 0 {
                    return bad(format!("size not divisible by {g} x {rows}"));
                }
                Ok(Some((g * rows, n / (g * rows))))
            }
        }
    }
}

impl UpdateRule for AdamMini {
    type State = AdamMiniState;

    fn check_params(&self, params: &[ParamMut<'_>]) -> Result<()> {
        params.iter().try_for_each(|p| self.blocks(p).map(|_| ()))
    }

    fn update(&self, info: &StepInfo, p: &mut ParamMut<'_>, st: &mut AdamMiniState) -> Result<()> {
        let n = p.numel();
        let blocks = self.blocks(p)?;
        if !st.m.is_allocated() {
            st.m = StateTensor::zeros(n);
            match blocks {
                None => st.v = StateTensor::zeros(n),
                Some((nb, _)) => st.v_mean = StateTensor::zeros(nb),
            }
        }
        let fits = match blocks {
            None => st.v.len() == n,
            Some((nb, _)) => st.v_mean.len() == nb,
        };
        if !fits {
            return Err(Error::Shape(format!(
                "{}: state of '{}' does not fit its block structure",
                Self::NAME,
                p.name
            )));
        }
        st.step += 1;
        let t = info.step;
        let [beta1, beta2] = self.betas;
        let bc1 = 1.0 - beta1.powf(t as f64);
        let bc2s = (1.0 - beta2.powf(t as f64)).sqrt();
        let wd = if p.name.contains("norm") || p.name.contains("ln_f") {
            0.0
        } else {
            self.weight_decay
        };
        if wd != 0.0 {
            let keep = (1.0 - self.lr * wd) as f32;
            p.value.iter_mut().for_each(|x| *x *= keep);
        }
        let sgn = if self.maximize { -1.0f32 } else { 1.0 };
        let w1 = (1.0 - beta1) as f32;
        let eps = self.eps as f32;
        let bc2f = bc2s as f32;
        let m = st.m.as_mut_slice();
        for i in 0..n {
            m[i] = lerp(m[i], sgn * p.grad[i], w1);
        }
        let Some((nb, per)) = blocks else {
            let v = st.v.as_mut_slice();
            let (b2, w2) = (beta2 as f32, (1.0 - beta2) as f32);
            let step = (-self.lr / bc1) as f32;
            for i in 0..n {
                let g = sgn * p.grad[i];
                v[i] = v[i] * b2 + w2 * g * g;
                let h = v[i].sqrt() / bc2f + eps;
                p.value[i] += step * m[i] / h;
            }
            return Ok(());
        };
        let vm = st.v_mean.as_mut_slice();
        let w2 = (1.0 - beta2) as f32;
        let neg = (-self.lr) as f32;
        let bc1f = bc1 as f32;
        let kind = self.block(p.name);
        for b in 0..nb {
            let range = b * per..(b + 1) * per;
            let sq: f64 = p.grad[range.clone()]
                .iter()
                .map(|&g| {
                    let g = sgn * g;
                    (g * g) as f64
                })
                .sum();
            let ms = match kind {
                // torch.sum(g * g) / numel, in f32
                Block::Whole => (sq as f32) / (per as f32),
                _ => (sq / per as f64) as f32,
            };
            vm[b] = lerp(vm[b], ms, w2);
            let h = vm[b].sqrt() / bc2f + eps;
            match kind {
                Block::Attention(..) => {
                    let d = h * bc1f;
                    for i in range {
                        p.value[i] += neg * (m[i] / d);
                    }
                }
                Block::QueryKey(_) => {
                    let s = 1.0 / (h * bc1f);
                    for i in range {
                        p.value[i] += neg * (s * m[i]);
                    }
                }
                _ => {
                    let s = (1.0 / h) * ((1.0 / bc1) as f32);
                    for i in range {
                        p.value[i] += neg * (m[i] * s);
                    }
                }
            }
        }
        Ok(())
    }
}
