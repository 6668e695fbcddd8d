//! Compressed optimizer state: -0.0 in 8-bit blocks, and bit-exact resume
//! with f32, bf16 and 8-bit state for every elementwise rule (through a
//! checkpoint file, so the 8-bit codes and block scales are what is saved).

mod common;

use common::{noise, state_bits, Net};
use optimist_core::checkpoint;
use optimist_core::exec::ExecOptions;
use optimist_core::quant::{q8_blocks, q8_decode, q8_encode, Rounding};
use optimist_core::registry::{build, registry};
use optimist_core::{DType, Error, Optimizer, ParamMut};
use serde_json::json;

/// Encodes and decodes `x` in one block with both roundings.
fn round_trip(x: &[f32]) -> Vec<Vec<f32>> {
    let block = x.len();
    [
        Rounding::Nearest,
        Rounding::Stochastic { key: 7, offset: 0 },
    ]
    .iter()
    .map(|&r| {
        let mut codes = vec![0u8; x.len()];
        let mut scales = vec![0f32; q8_blocks(x.len(), block)];
        q8_encode(x, &mut codes, &mut scales, block, r);
        let mut out = vec![0f32; x.len()];
        q8_decode(&codes, &scales, &mut out, block);
        out
    })
    .collect()
}

#[test]
fn negative_zero_in_a_block_without_negative_values_decodes_as_zero() {
    // 5 values: the scalar loop only. 48: three 16-lane groups, so the
    // AVX-512 loop where the CPU has it, the scalar loop elsewhere (and
    // the AVX-512 part is reported as skipped).
    let _ = optimist_core::cpu::avx512_test_runs(
        "negative_zero_in_a_block_without_negative_values_decodes_as_zero (AVX-512 loop)",
    );
    for len in [5usize, 48] {
        let mut x: Vec<f32> = (0..len).map(|i| 0.25 + i as f32 / len as f32).collect();
        for &at in &[0usize, 3, len - 1] {
            x[at] = -0.0;
        }
        for out in round_trip(&x) {
            for &at in &[0usize, 3, len - 1] {
                assert_eq!(
                    out[at], 0.0,
                    "len {len}: -0.0 at {at} decoded as {}",
                    out[at]
                );
            }
        }
        // The same with a negative value present (the signed book).
        x[1] = -0.5;
        for out in round_trip(&x) {
            assert_eq!(out[0], 0.0, "len {len}, signed: {}", out[0]);
        }
    }
}

fn q8_options() -> ExecOptions {
    ExecOptions {
        state_dtype: DType::Q8,
        q8_block: 64,
        q8_min_numel: 64,
        ..ExecOptions::default()
    }
}

#[test]
fn sgd_momentum_with_maximize_keeps_a_zero_gradient_still_under_q8() {
    // maximize negates the gradient: a zero gradient gives a momentum of
    // -0.0 on the first step, in a block with no negative value.
    let n = 128;
    let mut value = vec![1.0f32; n];
    let mut grad: Vec<f32> = (0..n).map(|i| -0.5 - (i % 7) as f32 * 0.1).collect();
    grad[0] = 0.0;
    grad[70] = 0.0;
    let mut opt = build(
        "sgd",
        &json!({"lr": 0.1, "momentum": 0.9, "maximize": true}),
    )
    .unwrap();
    opt.set_exec_options(q8_options()).unwrap();
    let shape = vec![n];
    for _ in 0..3 {
        opt.step(&mut [ParamMut {
            name: "w",
            shape: &shape,
            value: &mut value,
            grad: &mut grad,
            hessian: None,
        }])
        .unwrap();
    }
    assert_eq!(value[0], 1.0, "moved by a decoded -0.0 momentum");
    assert_eq!(value[70], 1.0, "moved by a decoded -0.0 momentum");
    assert_ne!(value[1], 1.0);
}

/// Parameters big enough for several 8-bit blocks (and one part block).
fn model(seed: u64) -> Net {
    Net::with_shapes(seed, &[("a.weight", &[20, 16]), ("b.weight", &[9, 11])], 1000)
}

/// Gradients of step `t`: mixed signs, with exact zeros (-0.0 after a
/// maximize) in some blocks.
fn set_grads(m: &mut Net, t: u64) {
    for (i, (g, h)) in m.grads.iter_mut().zip(m.hess.iter_mut()).enumerate() {
        for (j, (g, h)) in g.iter_mut().zip(h.iter_mut()).enumerate() {
            let k = t * 1_000_003 + i as u64 * 10_000 + j as u64;
            *g = if j % 13 == 0 { 0.0 } else { noise(k) };
            *h = 0.5 + noise(k ^ 0x5555).abs();
        }
    }
}

/// Steps `from..to` with the gradients of [`set_grads`].
fn run(m: &mut Net, opt: &mut dyn Optimizer, from: u64, to: u64) {
    for t in from..to {
        set_grads(m, t);
        opt.step(&mut m.views())
            .unwrap_or_else(|e| panic!("{} step {t}: {e}", opt.name()));
    }
}

/// Some hyperparameters off the defaults (maximize where the rule has it).
fn hparams_for(name: &str) -> serde_json::Value {
    match name {
        "sgd" => json!({"lr": 0.05, "momentum": 0.9, "maximize": true}),
        // Momentum 0 (their default) keeps no state buffer to compress.
        "sgdw" | "qhm" => json!({"lr": 0.05, "momentum": 0.9}),
        _ => json!({}),
    }
}

#[test]
fn resume_is_bit_exact_with_f32_bf16_and_q8_state_for_every_elementwise_rule() {
    const N: u64 = 9;
    const K: u64 = 5;
    let dir = std::env::temp_dir().join(format!("optimist-q8-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut elementwise = Vec::new();
    for spec in registry() {
        let hp = hparams_for(spec.name);
        let Ok(probe) = build(spec.name, &hp) else {
            continue; // wrappers (an inner optimizer is required): no kernel of their own
        };
        let mut probe = probe;
        match probe.set_exec_options(q8_options()) {
            Ok(()) => {}
            Err(Error::Unsupported(_)) => continue, // no elementwise kernel
            Err(e) => panic!("{}: {e}", spec.name),
        }
        elementwise.push(spec.name);
        for (dtype, fused) in [
            (DType::F32, true),
            (DType::Bf16, true),
            (DType::Q8, true),
            (DType::Q8, false),
        ] {
            let label = format!(
                "{} {} {}",
                spec.name,
                dtype.name(),
                if fused { "fused" } else { "simple" }
            );
            let make = || {
                let mut o = build(spec.name, &hp).unwrap();
                o.set_exec_options(ExecOptions {
                    state_dtype: dtype,
                    fused,
                    ..q8_options()
                })
                .unwrap();
                o
            };
            let mut full = make();
            let mut a = model(1);
            run(&mut a, full.as_mut(), 0, N);

            let mut first = make();
            let mut b = model(1);
            run(&mut b, first.as_mut(), 0, K);
            let path = dir.join(format!("{}.safetensors", label.replace(' ', "-")));
            checkpoint::save(&path, first.as_ref(), &b.refs()).unwrap();
            if dtype == DType::Q8 {
                // The 8-bit codes themselves are in the state.
                assert!(
                    first
                        .state_dict()
                        .tensors
                        .iter()
                        .any(|e| e.name.ends_with(optimist_core::state::Q8_CODES)),
                    "{label}: no 8-bit buffer"
                );
            }
            drop(first);

            let mut second = make();
            let mut c = model(2);
            checkpoint::load(&path, second.as_mut(), &mut c.views())
                .unwrap_or_else(|e| panic!("{label}: load: {e}"));
            run(&mut c, second.as_mut(), K, N);
            assert_eq!(a.bits(), c.bits(), "{label}: resumed parameters differ");
            assert_eq!(
                state_bits(full.as_ref()),
                state_bits(second.as_ref()),
                "{label}: state differs"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    for must in ["sgd", "adam", "adamw", "lion", "rmsprop", "adagrad"] {
        assert!(
            elementwise.contains(&must),
            "{must} not tested: {elementwise:?}"
        );
    }
}

#[test]
fn inconsistent_8bit_parts_are_refused() {
    let mut opt = build("adam", &json!({})).unwrap();
    opt.set_exec_options(q8_options()).unwrap();
    let mut m = model(3);
    run(&mut m, opt.as_mut(), 0, 2);
    let good = opt.state_dict();
    let codes = good
        .tensors
        .iter()
        .position(|e| e.name.ends_with(optimist_core::state::Q8_CODES))
        .expect("an 8-bit buffer");
    type Edit = Box<dyn Fn(&mut optimist_core::StateDict)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "code out of range",
            Box::new(move |d| d.tensors[codes].values[0] = 256.0),
        ),
        (
            "code not an integer",
            Box::new(move |d| d.tensors[codes].values[0] = 1.5),
        ),
        (
            "codes changed",
            Box::new(move |d| {
                let v = &mut d.tensors[codes].values[0];
                *v = if *v == 0.0 { 1.0 } else { 0.0 };
            }),
        ),
        (
            "codes dropped",
            Box::new(move |d| {
                d.tensors.remove(codes);
            }),
        ),
        (
            "block size",
            Box::new(|d| {
                for (k, v) in d.scalars.iter_mut() {
                    if k.ends_with(optimist_core::state::Q8_BLOCK) {
                        *v = 1e300;
                    }
                }
            }),
        ),
    ];
    for (what, edit) in edits {
        let mut d = good.clone();
        edit(&mut d);
        let mut other = build("adam", &json!({})).unwrap();
        other.set_exec_options(q8_options()).unwrap();
        assert!(other.load_state_dict(&d).is_err(), "{what}: accepted");
    }
    let mut other = build("adam", &json!({})).unwrap();
    other.set_exec_options(q8_options()).unwrap();
    other.load_state_dict(&good).unwrap();
    assert_eq!(other.state_dict(), good);
}
