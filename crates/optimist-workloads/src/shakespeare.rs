//! `shakespeare-char`: a small GPT-style character language model on Tiny
//! Shakespeare.
//!
//! Data: the first 90% of the file trains, the last 10% validates (as
//! nanoGPT's `shakespeare_char`); the vocabulary is the sorted set of bytes
//! (65 symbols). A batch is `batch_size` windows of `CONTEXT + 1`
//! characters at random offsets. Model: token and learned position
//! embeddings (d = 64), two pre-norm transformer blocks (4-head causal
//! self-attention, GELU MLP of width 256), a final layer norm and a linear
//! head; about 0.1 M parameters. Metric: mean cross-entropy (nats per
//! character) on a fixed set of validation windows.
//!
//! `shakespeare-mini` is the same model family, smaller, on the first 240 KB
//! of the text embedded in the crate ([`crate::embedded`], no download):
//! 80% trains, the next 10% validates, the last 10% tests; 2 blocks,
//! d = 32, 4 heads, context 32, batch 16. Embedding and head parameters are
//! named `tok_embed`, `pos_embed` and `head`, so that matrix optimizers
//! (Muon family) leave them to AdamW as their authors do.

use std::path::Path;

use candle_core::{Device, Module, Tensor};
use candle_nn::VarMap;

use crate::data::{char_tokens, read_verified};
use crate::nn::Init;
use crate::{Error, Eval, LoadOptions, Result, Rng, Split, Workload, WorkloadSpec};

/// Characters of context.
pub const CONTEXT: usize = 64;
/// Model width.
pub const D_MODEL: usize = 64;
/// Attention heads.
pub const HEADS: usize = 4;
/// Transformer blocks.
pub const LAYERS: usize = 2;
/// Validation windows evaluated.
pub const EVAL_WINDOWS: usize = 512;

/// The model's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Characters of context.
    pub context: usize,
    /// Model width.
    pub d_model: usize,
    /// Attention heads.
    pub heads: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Held-out windows evaluated.
    pub eval_windows: usize,
}

/// `shakespeare-char`'s model.
pub const CHAR: Config = Config {
    context: CONTEXT,
    d_model: D_MODEL,
    heads: HEADS,
    layers: LAYERS,
    eval_windows: EVAL_WINDOWS,
};

/// `shakespeare-mini`'s model.
pub const MINI: Config = Config {
    context: 32,
    d_model: 32,
    heads: 4,
    layers: 2,
    eval_windows: 128,
};

/// `shakespeare-mini`: the embedded 240 KB of text.
pub fn mini_spec() -> WorkloadSpec {
    WorkloadSpec {
        name: "shakespeare-mini",
        description: "Tiny Shakespeare, first 240 KB (embedded; 80/10/10), character-level GPT (2 layers, d=32, 4 heads, context 32), batch 16",
        metric: "valid_loss",
        higher_is_better: false,
        target: 2.6,
        steps: 200,
        eval_every: 25,
        batch_size: 16,
        needs_data: false,
        lr_scale: 1.0,
    }
}

/// The spec.
pub fn spec() -> WorkloadSpec {
    WorkloadSpec {
        name: "shakespeare-char",
        description: "Tiny Shakespeare, character-level GPT (2 layers, d=64, 4 heads, context 64)",
        metric: "valid_loss",
        higher_is_better: false,
        target: 1.85,
        steps: 2000,
        eval_every: 250,
        batch_size: 32,
        needs_data: true,
        lr_scale: 1.0,
    }
}

struct Block {
    ln1: crate::nn::LayerNorm,
    qkv: candle_nn::Linear,
    proj: candle_nn::Linear,
    ln2: crate::nn::LayerNorm,
    fc: candle_nn::Linear,
    out: candle_nn::Linear,
}

impl Block {
    fn forward(&self, x: &Tensor, mask: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let hd = d / heads;
        let h = self.ln1.forward(x)?;
        let qkv = self.qkv.forward(&h)?.reshape((b, t, 3, heads, hd))?;
        let q = qkv
            .narrow(2, 0, 1)?
            .squeeze(2)?
            .transpose(1, 2)?
            .contiguous()?;
        let k = qkv
            .narrow(2, 1, 1)?
            .squeeze(2)?
            .transpose(1, 2)?
            .contiguous()?;
        let v = qkv
            .narrow(2, 2, 1)?
            .squeeze(2)?
            .transpose(1, 2)?
            .contiguous()?;
        let att = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?;
        let att = att.broadcast_add(&mask.narrow(0, 0, t)?.narrow(1, 0, t)?)?;
        let att = candle_nn::ops::softmax(&att, candle_core::D::Minus1)?;
        let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?;
        let x = (x + self.proj.forward(&y)?)?;
        let h = self.ln2.forward(&x)?;
        let h = self.out.forward(&self.fc.forward(&h)?.gelu()?)?;
        x + h
    }
}

/// The character language model and its data.
pub struct CharLm {
    spec: WorkloadSpec,
    cfg: Config,
    varmap: VarMap,
    tok: Tensor,
    pos: Tensor,
    blocks: Vec<Block>,
    ln_f: crate::nn::LayerNorm,
    head: candle_nn::Linear,
    mask: Tensor,
    train: Vec<u32>,
    valid: Vec<u32>,
    test: Option<Vec<u32>>,
    vocab: usize,
    batch: Option<(Tensor, Tensor)>,
}

impl CharLm {
    /// Loads `data_dir/tinyshakespeare/input.txt` and initialises the model.
    pub fn load(data_dir: &Path, seed: u64, opts: &LoadOptions) -> Result<Self> {
        let bytes = read_verified(data_dir, "tinyshakespeare/input.txt")?;
        let text = char_tokens(&bytes);
        let split = bytes.len() * 9 / 10;
        let mut train = text.tokens[..split].to_vec();
        let mut valid = text.tokens[split..].to_vec();
        if let Some(l) = opts.train_limit {
            train.truncate(l.max(CONTEXT + 2));
        }
        if let Some(l) = opts.eval_limit {
            valid.truncate(l.max(CONTEXT + 2));
        }
        Self::from_tokens(train, valid, text.vocab.len(), seed)
    }

    /// `shakespeare-mini`: the embedded text (checked against its SHA-256),
    /// split 80/10/10.
    pub fn mini(seed: u64, opts: &LoadOptions) -> Result<Self> {
        let bytes = crate::embedded::SHAKESPEARE_240K.verified()?;
        let text = char_tokens(bytes);
        let (a, b) = (bytes.len() * 8 / 10, bytes.len() * 9 / 10);
        let ctx = MINI.context;
        let mut train = text.tokens[..a].to_vec();
        let mut valid = text.tokens[a..b].to_vec();
        let mut test = text.tokens[b..].to_vec();
        if let Some(l) = opts.train_limit {
            train.truncate(l.max(ctx + 2));
        }
        if let Some(l) = opts.eval_limit {
            valid.truncate(l.max(ctx + 2));
            test.truncate(l.max(ctx + 2));
        }
        let mut lm = Self::build(mini_spec(), MINI, train, valid, text.vocab.len(), seed)?;
        lm.test = Some(test);
        Ok(lm)
    }

    /// A model over already tokenised splits.
    pub fn from_tokens(train: Vec<u32>, valid: Vec<u32>, vocab: usize, seed: u64) -> Result<Self> {
        Self::build(spec(), CHAR, train, valid, vocab, seed)
    }

    fn build(
        spec: WorkloadSpec,
        cfg: Config,
        train: Vec<u32>,
        valid: Vec<u32>,
        vocab: usize,
        seed: u64,
    ) -> Result<Self> {
        let (context, d_model) = (cfg.context, cfg.d_model);
        if train.len() < context + 2 || valid.len() < context + 2 {
            return Err(Error::Data(format!(
                "{}: splits of {} and {} characters are shorter than the context",
                spec.name,
                train.len(),
                valid.len()
            )));
        }
        // shakespeare-char keeps its original parameter names.
        let (tok_name, pos_name) = if cfg == CHAR {
            ("tok_emb", "pos_emb")
        } else {
            ("tok_embed", "pos_embed")
        };
        let varmap = VarMap::new();
        let mut init = Init::new(&varmap, Rng::derive(seed, "init"));
        let tok = init.normal(tok_name, &[vocab, d_model], 0.02)?;
        let pos = init.normal(pos_name, &[context, d_model], 0.02)?;
        let mut blocks = Vec::new();
        for l in 0..cfg.layers {
            let p = format!("blocks.{l}");
            blocks.push(Block {
                ln1: init.layer_norm(&format!("{p}.ln1"), d_model)?,
                qkv: init.linear(&format!("{p}.attn.qkv"), d_model, 3 * d_model)?,
                proj: init.linear(&format!("{p}.attn.proj"), d_model, d_model)?,
                ln2: init.layer_norm(&format!("{p}.ln2"), d_model)?,
                fc: init.linear(&format!("{p}.mlp.fc"), d_model, 4 * d_model)?,
                out: init.linear(&format!("{p}.mlp.out"), 4 * d_model, d_model)?,
            });
        }
        let ln_f = init.layer_norm("ln_f", d_model)?;
        let head = init.linear("head", d_model, vocab)?;
        let mask: Vec<f32> = (0..context * context)
            .map(|i| {
                if i % context > i / context {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        Ok(CharLm {
            spec,
            cfg,
            varmap,
            tok,
            pos,
            blocks,
            ln_f,
            head,
            mask: Tensor::from_vec(mask, (context, context), &Device::Cpu)?,
            train,
            valid,
            test: None,
            vocab,
            batch: None,
        })
    }

    /// Vocabulary size.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Training and validation characters.
    pub fn split_lens(&self) -> (usize, usize) {
        (self.train.len(), self.valid.len())
    }

    fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_b, t) = x.dims2()?;
        let h = candle_nn::Embedding::new(self.tok.clone(), self.cfg.d_model)
            .forward(x)?
            .broadcast_add(&self.pos.narrow(0, 0, t)?)?;
        let mut h = h;
        for b in &self.blocks {
            h = b.forward(&h, &self.mask, self.cfg.heads)?;
        }
        self.head.forward(&self.ln_f.forward(&h)?)
    }

    fn windows(
        tokens: &[u32],
        starts: &[usize],
        context: usize,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let b = starts.len();
        let mut x = Vec::with_capacity(b * context);
        let mut y = Vec::with_capacity(b * context);
        for &s in starts {
            x.extend_from_slice(&tokens[s..s + context]);
            y.extend_from_slice(&tokens[s + 1..s + context + 1]);
        }
        Ok((
            Tensor::from_vec(x, (b, context), &Device::Cpu)?,
            Tensor::from_vec(y, (b, context), &Device::Cpu)?,
        ))
    }

    fn loss_of(&self, x: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
        let logits = self.logits(x)?;
        let (b, t, v) = logits.dims3()?;
        candle_nn::loss::cross_entropy(&logits.reshape((b * t, v))?, &y.reshape(b * t)?)
    }
}

impl Workload for CharLm {
    fn set_batch_size(&mut self, n: usize) -> Result<()> {
        self.spec.batch_size = crate::check_batch_size(self.spec.name, n)?;
        Ok(())
    }

    spec_and_varmap!();

    fn next_batch(&mut self, rng: &mut Rng) -> Result<()> {
        let ctx = self.cfg.context;
        let span = self.train.len() - ctx - 1;
        let starts: Vec<usize> = (0..self.spec.batch_size).map(|_| rng.below(span)).collect();
        self.batch = Some(Self::windows(&self.train, &starts, ctx)?);
        Ok(())
    }

    fn batch_loss(&self) -> candle_core::Result<Tensor> {
        let (x, y) = crate::drawn(&self.batch)?;
        self.loss_of(x, y)
    }

    /// Every target token of the batch: batch size x context.
    fn sampled_label_count(&self) -> Option<usize> {
        Some(self.spec.batch_size * self.cfg.context)
    }

    fn sampled_batch_loss(&self, rng: &mut Rng) -> candle_core::Result<Tensor> {
        let (x, _) = crate::drawn(&self.batch)?;
        let logits = self.logits(x)?;
        let (b, t, v) = logits.dims3()?;
        crate::nn::sampled_cross_entropy(&logits.reshape((b * t, v))?, rng)
    }

    fn evaluate(&self, split: Split) -> Result<Eval> {
        let tokens = match (split, &self.test) {
            (Split::Test, Some(test)) => test,
            _ => &self.valid,
        };
        let ctx = self.cfg.context;
        // A fixed set of evenly spaced windows.
        let span = tokens.len() - ctx - 1;
        let n = self.cfg.eval_windows.min(span.max(1));
        let starts: Vec<usize> = (0..n).map(|i| i * span / n).collect();
        let mut total = 0.0;
        for chunk in starts.chunks(64) {
            let (x, y) = Self::windows(tokens, chunk, ctx)?;
            total += self.loss_of(&x, &y)?.to_scalar::<f32>()? as f64 * chunk.len() as f64;
        }
        let loss = total / n as f64;
        Ok(Eval { loss, metric: loss })
    }

    fn has_test(&self) -> bool {
        self.test.is_some()
    }
}
