//! Seeded parameter initialisation and the few layers the workloads use.
//!
//! candle's own initialisers draw from an unseeded generator; here every
//! parameter is drawn from [`Rng`] and inserted into the VarMap under its
//! path, so that a run is reproducible from its seed. Linear and
//! convolution layers use torch's default initialisation (uniform in
//! ±1/sqrt(fan_in) for weights and biases).

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;

use crate::Rng;

/// Creates parameters in a VarMap from a seeded generator.
pub struct Init<'a> {
    varmap: &'a VarMap,
    rng: Rng,
}

impl<'a> Init<'a> {
    /// Parameters of `varmap`, drawn from `rng`.
    pub fn new(varmap: &'a VarMap, rng: Rng) -> Self {
        Init { varmap, rng }
    }

    /// Adds parameter `name` with the given values.
    pub fn values(
        &mut self,
        name: &str,
        shape: &[usize],
        values: Vec<f32>,
    ) -> candle_core::Result<Tensor> {
        let var = Var::from_vec(values, shape, &Device::Cpu)?;
        let mut data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::msg("VarMap lock poisoned"))?;
        if data.contains_key(name) {
            return Err(candle_core::Error::msg(format!(
                "parameter '{name}' created twice"
            )));
        }
        data.insert(name.to_string(), var.clone());
        Ok(var.as_tensor().clone())
    }

    /// Uniform in [-bound, bound).
    pub fn uniform(
        &mut self,
        name: &str,
        shape: &[usize],
        bound: f64,
    ) -> candle_core::Result<Tensor> {
        let n: usize = shape.iter().product();
        let v = (0..n)
            .map(|_| ((self.rng.uniform() * 2.0 - 1.0) * bound) as f32)
            .collect();
        self.values(name, shape, v)
    }

    /// Normal with standard deviation `std`.
    pub fn normal(&mut self, name: &str, shape: &[usize], std: f64) -> candle_core::Result<Tensor> {
        let n: usize = shape.iter().product();
        let v = (0..n).map(|_| (self.rng.normal() * std) as f32).collect();
        self.values(name, shape, v)
    }

    /// A constant.
    pub fn constant(
        &mut self,
        name: &str,
        shape: &[usize],
        value: f32,
    ) -> candle_core::Result<Tensor> {
        let n: usize = shape.iter().product();
        self.values(name, shape, vec![value; n])
    }

    /// A linear layer `prefix.weight` [out, in], `prefix.bias` [out].
    pub fn linear(
        &mut self,
        prefix: &str,
        fan_in: usize,
        fan_out: usize,
    ) -> candle_core::Result<candle_nn::Linear> {
        let bound = 1.0 / (fan_in as f64).sqrt();
        let w = self.uniform(&format!("{prefix}.weight"), &[fan_out, fan_in], bound)?;
        let b = self.uniform(&format!("{prefix}.bias"), &[fan_out], bound)?;
        Ok(candle_nn::Linear::new(w, Some(b)))
    }

    /// A 2-D convolution `prefix.weight` [out, in, k, k], `prefix.bias` [out]
    /// (stride 1), computed as im2col + GEMM ([`crate::conv::Conv2d`]).
    pub fn conv2d(
        &mut self,
        prefix: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        padding: usize,
    ) -> candle_core::Result<crate::conv::Conv2d> {
        let bound = 1.0 / ((c_in * k * k) as f64).sqrt();
        let w = self.uniform(&format!("{prefix}.weight"), &[c_out, c_in, k, k], bound)?;
        let b = self.uniform(&format!("{prefix}.bias"), &[c_out], bound)?;
        crate::conv::Conv2d::new(w, Some(b), padding)
    }

    /// A layer norm `prefix.weight` (ones) and `prefix.bias` (zeros).
    pub fn layer_norm(&mut self, prefix: &str, dim: usize) -> candle_core::Result<LayerNorm> {
        let weight = self.constant(&format!("{prefix}.weight"), &[dim], 1.0)?;
        let bias = self.constant(&format!("{prefix}.bias"), &[dim], 0.0)?;
        Ok(LayerNorm { weight, bias })
    }
}

/// Mean cross-entropy and the number of correct argmax predictions.
pub fn ce_and_correct(logits: &Tensor, labels: &Tensor) -> candle_core::Result<(f64, usize)> {
    let loss = candle_nn::loss::cross_entropy(logits, labels)?.to_scalar::<f32>()? as f64;
    let pred = logits.argmax(candle_core::D::Minus1)?;
    let correct = pred
        .eq(labels)?
        .to_dtype(candle_core::DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()? as usize;
    Ok((loss, correct))
}

/// One label per row of `logits` (n, C), drawn with `rng` from the row's
/// softmax (inverse CDF of one uniform, probabilities in f64 from the f32
/// logits): the labels `y_hat` of the Gauss-Newton-Bartlett estimate.
pub fn sample_categorical(logits: &Tensor, rng: &mut Rng) -> candle_core::Result<Tensor> {
    let (n, _) = logits.dims2()?;
    let rows = logits.detach().to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
    let labels: Vec<u32> = rows
        .iter()
        .map(|row| {
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
            let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
            let u = rng.uniform() * e.iter().sum::<f64>();
            let mut acc = 0.0;
            for (j, &ej) in e.iter().enumerate() {
                acc += ej;
                if u < acc {
                    return j as u32;
                }
            }
            // Rounding left u at the total: the last class with mass.
            e.iter().rposition(|&ej| ej > 0.0).unwrap_or(0) as u32
        })
        .collect();
    Tensor::from_vec(labels, n, &Device::Cpu)
}

/// The mean cross-entropy of `logits` (n, C) on labels drawn from their
/// softmax ([`sample_categorical`]).
pub fn sampled_cross_entropy(logits: &Tensor, rng: &mut Rng) -> candle_core::Result<Tensor> {
    let y = sample_categorical(logits, rng)?;
    candle_nn::loss::cross_entropy(logits, &y)
}

/// Layer normalisation over the last dimension (eps = 1e-5), written with
/// differentiable tensor ops: candle_nn's fused layer norm kernel has no
/// backward pass, so its weights would receive no gradient.
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl candle_core::Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let d = candle_core::D::Minus1;
        let xc = x.broadcast_sub(&x.mean_keepdim(d)?)?;
        let var = xc.sqr()?.mean_keepdim(d)?;
        let xn = xc.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
        xn.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}
