//! Helpers shared by the integration tests of the training essentials.
#![allow(dead_code)]

use optimist_core::registry::OptimizerSpec;
use optimist_core::{Optimizer, ParamMut};
use serde_json::json;

/// Builds a registry optimizer with its defaults; wrappers that need an
/// inner optimizer (lookahead) get Adam.
pub fn build_default(spec: &OptimizerSpec) -> Box<dyn Optimizer> {
    match (spec.build)(&json!({})) {
        Ok(o) => o,
        Err(first) => (spec.build)(&json!({"inner": {"optimizer": "adam", "hparams": {}}}))
            .unwrap_or_else(|e| {
                panic!(
                    "{}: cannot build ({first}; with an inner adam: {e})",
                    spec.name
                )
            }),
    }
}

/// A small deterministic value stream in [-1, 1).
pub fn noise(seed: u64) -> f32 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// Two matrix parameters (every registry optimizer takes matrices), with
/// gradient and Hessian-diagonal buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Net {
    pub names: Vec<String>,
    pub shapes: Vec<Vec<usize>>,
    pub values: Vec<Vec<f32>>,
    pub grads: Vec<Vec<f32>>,
    pub hess: Vec<Vec<f32>>,
}

impl Net {
    pub fn new(seed: u64) -> Self {
        let shapes = vec![vec![4, 3], vec![3, 5]];
        let names = vec!["layer.weight".to_string(), "head.weight".to_string()];
        let values: Vec<Vec<f32>> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (0..s.iter().product::<usize>())
                    .map(|j| 0.5 * noise(seed * 1000 + i as u64 * 100 + j as u64))
                    .collect()
            })
            .collect();
        let grads = values.iter().map(|v| vec![0.0; v.len()]).collect();
        let hess = values.iter().map(|v| vec![0.0; v.len()]).collect();
        Net {
            names,
            shapes,
            values,
            grads,
            hess,
        }
    }

    /// Sets the gradients (and Hessian diagonals) of step `t` of stream `seed`.
    pub fn set_grads(&mut self, seed: u64, t: u64) {
        for (i, (g, h)) in self.grads.iter_mut().zip(self.hess.iter_mut()).enumerate() {
            for (j, (g, h)) in g.iter_mut().zip(h.iter_mut()).enumerate() {
                let k = (seed * 7919 + t) * 1_000_003 + i as u64 * 1000 + j as u64;
                *g = noise(k);
                *h = 1.0 + noise(k ^ 0x5555).abs();
            }
        }
    }

    pub fn views(&mut self) -> Vec<ParamMut<'_>> {
        self.values
            .iter_mut()
            .zip(self.grads.iter_mut())
            .zip(self.hess.iter())
            .zip(self.names.iter().zip(self.shapes.iter()))
            .map(|(((v, g), h), (n, s))| ParamMut {
                name: n,
                shape: s,
                value: v.as_mut_slice(),
                grad: g.as_mut_slice(),
                hessian: Some(h.as_slice()),
            })
            .collect()
    }

    /// Runs steps `from..to` of stream `seed`.
    pub fn run(&mut self, opt: &mut dyn Optimizer, seed: u64, from: u64, to: u64) {
        for t in from..to {
            self.set_grads(seed, t);
            let mut v = self.views();
            opt.step(&mut v)
                .unwrap_or_else(|e| panic!("{} step {t}: {e}", opt.name()));
        }
    }

    /// Bit patterns of every value, for exact comparisons.
    pub fn bits(&self) -> Vec<Vec<u32>> {
        self.values
            .iter()
            .map(|v| v.iter().map(|x| x.to_bits()).collect())
            .collect()
    }
}
