//! Helpers shared by the integration tests of the training essentials.
#![allow(dead_code)]

use optimist_core::checkpoint::ParamRef;
use optimist_core::registry::{build, OptimizerSpec};
use optimist_core::state::StateDict;
use optimist_core::{Optimizer, Param, ParamMut};
use serde_json::{json, Value};

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
        Net::with_shapes(seed, &[("layer.weight", &[4, 3]), ("head.weight", &[3, 5])], 100)
    }

    /// Parameters `(name, shape)` with values drawn from stream `seed`,
    /// parameter `i`'s values from `noise(seed * 10 * stride + i * stride + j)`
    /// (`stride` above the largest parameter keeps the draws apart).
    pub fn with_shapes(seed: u64, params: &[(&str, &[usize])], stride: u64) -> Self {
        let names = params.iter().map(|(n, _)| n.to_string()).collect();
        let shapes: Vec<Vec<usize>> = params.iter().map(|(_, s)| s.to_vec()).collect();
        let values: Vec<Vec<f32>> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (0..s.iter().product::<usize>())
                    .map(|j| 0.5 * noise(seed * 10 * stride + i as u64 * stride + j as u64))
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

    /// The parameters as checkpoint references.
    pub fn refs(&self) -> Vec<ParamRef<'_>> {
        self.names
            .iter()
            .zip(&self.shapes)
            .zip(&self.values)
            .map(|((n, s), v)| ParamRef {
                name: n,
                shape: s,
                values: v,
            })
            .collect()
    }

    /// Bit patterns of every value, for exact comparisons.
    pub fn bits(&self) -> Vec<Vec<u32>> {
        self.values
            .iter()
            .map(|v| v.iter().map(|x| x.to_bits()).collect())
            .collect()
    }
}

/// The state of `opt` as (parameter, buffer, bit patterns), sorted, for
/// exact comparisons.
pub fn state_bits(opt: &dyn Optimizer) -> Vec<(String, String, Vec<u32>)> {
    let mut v: Vec<_> = opt
        .state_dict()
        .tensors
        .iter()
        .map(|e| {
            (
                e.param.clone(),
                e.name.clone(),
                e.values.iter().map(|x| x.to_bits()).collect(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Builds registry optimizer `name` with hyperparameters `hp`, which must
/// be refused with a message naming `field`; returns the message.
pub fn refusal(name: &str, hp: &Value, field: &str) -> String {
    match build(name, hp) {
        Ok(_) => panic!("{name} {hp}: accepted"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(field),
                "{name} {hp}: message {msg:?} does not name {field}"
            );
            msg
        }
    }
}

/// Builds registry optimizer `name` with `hp`, panicking with the error.
pub fn opt(name: &str, hp: Value) -> Box<dyn Optimizer> {
    build(name, &hp).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Determinism and resumption of optimizer `name` (`hp`) on the parameters
/// made by `params`, advanced by `run(opt, params, from, to)`: two runs of
/// `total` steps agree, and a run of `split` steps whose state goes through
/// a state dict into a fresh optimizer (unchanged by the round trip, not
/// empty) ends where they did. Returns the finished parameters, the saved
/// state and the optimizer that loaded it.
pub fn check_resume(
    name: &str,
    hp: &Value,
    params: impl Fn() -> Vec<Param>,
    run: impl Fn(&mut dyn Optimizer, &mut [Param], usize, usize),
    split: usize,
    total: usize,
) -> (Vec<Param>, StateDict, Box<dyn Optimizer>) {
    let mut a = params();
    let mut b = params();
    let mut oa = opt(name, hp.clone());
    let mut ob = opt(name, hp.clone());
    run(oa.as_mut(), &mut a, 0, total);
    run(ob.as_mut(), &mut b, 0, total);
    assert_eq!(a, b, "{name}: not deterministic");

    let mut c = params();
    let mut oc = opt(name, hp.clone());
    run(oc.as_mut(), &mut c, 0, split);
    let sd = oc.state_dict();
    assert!(!sd.tensors.is_empty(), "{name}: empty state");
    let mut od = opt(name, hp.clone());
    od.load_state_dict(&sd).unwrap();
    assert_eq!(od.state_dict(), sd, "{name}: state changed by a round trip");
    run(od.as_mut(), &mut c, split, total);
    assert_eq!(a, c, "{name}: resumed run differs");
    (a, sd, od)
}
