//! State in caller-owned memory: `StateTensor::borrowed` swapped in and out
//! with `Optimizer::swap_state` steps exactly like state the engine owns.

use optimist_core::{registry, Param, StateTensor};
use serde_json::json;

fn grads(step: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7 + step * 13) % 11) as f32 / 11.0 - 0.5)
        .collect()
}

#[test]
fn borrowed_state_steps_like_owned_state() {
    for (name, hp) in [
        ("adamw", json!({"lr": 0.01, "amsgrad": true})),
        ("lion", json!({"lr": 0.001})),
        ("adafactor", json!({})),
        ("muon", json!({"lr": 0.02})),
    ] {
        let shape = vec![6, 5];
        let init: Vec<f32> = (0..30).map(|i| i as f32 / 30.0 - 0.4).collect();
        // Owned: the engine keeps the state.
        let mut owned = registry::build(name, &hp).unwrap();
        let mut a = Param::new("w", shape.clone(), init.clone()).unwrap();
        // Borrowed: the caller keeps the buffers and lends them for each step.
        let mut lent = registry::build(name, &hp).unwrap();
        let names = lent.state_buffer_names().unwrap();
        let mut b = Param::new("w", shape.clone(), init.clone()).unwrap();
        let mut mine: Vec<Vec<f32>> = vec![Vec::new(); names.len()];
        for step in 0..6 {
            a.grad = grads(step, 30);
            b.grad = a.grad.clone();
            owned.step(&mut [a.view()]).unwrap();

            let mut bufs: Vec<StateTensor> = mine
                .iter_mut()
                .map(|v| {
                    if v.is_empty() {
                        StateTensor::default()
                    } else {
                        // SAFETY: `v` outlives the step and is swapped out below.
                        unsafe { StateTensor::borrowed(v.as_mut_ptr(), v.len()) }
                    }
                })
                .collect();
            lent.swap_state("w", 30, step as u64, &mut bufs).unwrap();
            lent.set_step_count(step as u64).unwrap();
            lent.step(&mut [b.view()]).unwrap();
            let mut out = vec![StateTensor::default(); names.len()];
            lent.swap_state("w", 30, 0, &mut out).unwrap();
            for (slot, t) in mine.iter_mut().zip(out) {
                if t.is_allocated() && !t.is_borrowed() {
                    *slot = t.to_vec(); // created by this step
                }
            }
            assert_eq!(a.data, b.data, "{name}: step {step}");
        }
        let dict = owned.state_dict();
        for (buf, values) in names.iter().zip(&mine) {
            let e = dict.tensors.iter().find(|e| e.name == *buf);
            match e {
                Some(e) => assert_eq!(&e.values, values, "{name}: {buf}"),
                None => assert!(values.is_empty(), "{name}: {buf}"),
            }
        }
    }
}

#[test]
fn swap_state_checks_counts_and_sizes() {
    let mut opt = registry::build("adamw", &json!({})).unwrap();
    let mut two = vec![StateTensor::default(); 2];
    assert!(opt.swap_state("w", 4, 0, &mut two).is_err());
    let mut wrong = vec![
        StateTensor::zeros(5),
        StateTensor::default(),
        StateTensor::default(),
    ];
    let err = opt.swap_state("w", 4, 0, &mut wrong).unwrap_err();
    assert!(err.to_string().contains("exp_avg"), "{err}");
    // Wrappers keep their state internally.
    let la = registry::build(
        "lookahead",
        &json!({"inner": {"optimizer": "sgd", "hparams": {}}}),
    )
    .unwrap();
    assert!(la.state_buffer_names().is_none());
}

/// Optimizer-wide state (learning-rate-free and schedule-free rules) carried
/// by the caller: a new engine each step, given the buffers, the step count
/// and the global state, steps exactly like one engine kept throughout.
#[test]
fn global_state_carried_by_the_caller_steps_like_one_engine() {
    for name in ["prodigy", "dadaptadam", "dadaptsgd", "spam", "adamw_schedulefree", "sgd_schedulefree"] {
        let init: Vec<f32> = (0..30).map(|i| i as f32 / 30.0 - 0.4).collect();
        let mut kept = registry::build(name, &json!({})).unwrap();
        let mut a = Param::new("w", vec![30], init.clone()).unwrap();
        let mut b = Param::new("w", vec![30], init.clone()).unwrap();
        let names = kept.state_buffer_names().unwrap();
        assert!(!kept.global_state_names().is_empty(), "{name}");
        let mut mine: Vec<Vec<f32>> = vec![Vec::new(); names.len()];
        let mut globals: Option<Vec<f64>> = None;
        for step in 0..6 {
            a.grad = grads(step, 30);
            b.grad = a.grad.clone();
            kept.step(&mut [a.view()]).unwrap();

            let mut fresh = registry::build(name, &json!({})).unwrap();
            if let Some(g) = &globals {
                fresh.set_global_state(g).unwrap();
            }
            let mut bufs: Vec<StateTensor> = mine
                .iter_mut()
                .map(|v| {
                    if v.is_empty() {
                        StateTensor::default()
                    } else {
                        // SAFETY: `v` outlives the step and is swapped out below.
                        unsafe { StateTensor::borrowed(v.as_mut_ptr(), v.len()) }
                    }
                })
                .collect();
            fresh.swap_state("w", 30, step as u64, &mut bufs).unwrap();
            fresh.set_step_count(step as u64).unwrap();
            fresh.step(&mut [b.view()]).unwrap();
            let mut out = vec![StateTensor::default(); names.len()];
            fresh.swap_state("w", 30, 0, &mut out).unwrap();
            for (slot, t) in mine.iter_mut().zip(out) {
                if t.is_allocated() && !t.is_borrowed() {
                    *slot = t.to_vec();
                }
            }
            globals = Some(fresh.global_state());
            assert_eq!(a.data, b.data, "{name}: step {step}");
            assert_eq!(kept.global_state(), fresh.global_state(), "{name}: step {step}");
        }
        // Wrong counts and NaN are errors naming the optimizer.
        let mut fresh = registry::build(name, &json!({})).unwrap();
        let n = fresh.global_state_names().len();
        assert!(fresh.set_global_state(&vec![0.0; n + 1]).is_err(), "{name}");
        let err = fresh.set_global_state(&vec![f64::NAN; n]).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
    }
    // Rules without optimizer-wide state take none.
    let mut adamw = registry::build("adamw", &json!({})).unwrap();
    assert!(adamw.global_state_names().is_empty());
    assert!(adamw.set_global_state(&[]).is_ok());
    assert!(adamw.set_global_state(&[1.0]).is_err());
}

/// bf16 and 8-bit state in caller-owned memory (`borrowed_bf16`,
/// `borrowed_q8`) steps exactly like compressed state the engine owns.
#[test]
fn borrowed_compressed_state_steps_like_owned() {
    use optimist_core::{DType, ExecOptions};
    let n = 200;
    for dtype in [DType::Bf16, DType::Q8] {
        let exec = ExecOptions {
            state_dtype: dtype,
            q8_block: 64,
            q8_min_numel: 0,
            ..ExecOptions::default()
        };
        let init: Vec<f32> = (0..n).map(|i| i as f32 / n as f32 - 0.4).collect();
        let mut owned = registry::build("adamw", &json!({"lr": 0.01})).unwrap();
        owned.set_exec_options(exec).unwrap();
        let mut lent = registry::build("adamw", &json!({"lr": 0.01})).unwrap();
        lent.set_exec_options(exec).unwrap();
        let names = lent.state_buffer_names().unwrap();
        let mut a = Param::new("w", vec![n], init.clone()).unwrap();
        let mut b = Param::new("w", vec![n], init.clone()).unwrap();
        // The caller's storage: bf16 bits, or 8-bit codes and block scales.
        let mut bits: Vec<Vec<u16>> = vec![Vec::new(); names.len()];
        let mut codes: Vec<(Vec<u8>, Vec<f32>)> = vec![(Vec::new(), Vec::new()); names.len()];
        for step in 0..6 {
            a.grad = grads(step, n);
            b.grad = a.grad.clone();
            owned.step(&mut [a.view()]).unwrap();
            let mut bufs = Vec::new();
            for i in 0..names.len() {
                // SAFETY: the vectors outlive the step and are swapped out below.
                let t = match dtype {
                    DType::Bf16 if !bits[i].is_empty() => unsafe {
                        StateTensor::borrowed_bf16(bits[i].as_mut_ptr(), bits[i].len())
                    },
                    DType::Q8 if !codes[i].0.is_empty() => {
                        let (c, s) = &mut codes[i];
                        unsafe {
                            StateTensor::borrowed_q8(c.as_mut_ptr(), c.len(), s.as_mut_ptr(), s.len(), 64)
                                .unwrap()
                        }
                    }
                    _ => StateTensor::default(),
                };
                bufs.push(t);
            }
            lent.swap_state("w", n, step as u64, &mut bufs).unwrap();
            lent.set_step_count(step as u64).unwrap();
            lent.step(&mut [b.view()]).unwrap();
            let mut out = vec![StateTensor::default(); names.len()];
            lent.swap_state("w", n, 0, &mut out).unwrap();
            for (i, t) in out.iter().enumerate() {
                if t.is_allocated() && !t.is_borrowed() {
                    if let Some(b16) = t.bf16_bits() {
                        bits[i] = b16.to_vec();
                    } else if let Some((c, s, _)) = t.q8_parts() {
                        codes[i] = (c.to_vec(), s.to_vec());
                    } else {
                        panic!("{dtype:?}: buffer {} created as {:?}", names[i], t.dtype());
                    }
                } else if t.is_allocated() {
                    assert!(step > 0, "borrowed only after the first step");
                }
            }
            assert_eq!(a.data, b.data, "{dtype:?}: step {step}");
        }
    }
    // A wrong number of block scales is an error.
    let mut c = vec![0u8; 200];
    let mut s = vec![0f32; 3];
    // SAFETY: both vectors outlive the (failed) call.
    let r = unsafe { StateTensor::borrowed_q8(c.as_mut_ptr(), c.len(), s.as_mut_ptr(), s.len(), 64) };
    assert!(r.is_err());
}
