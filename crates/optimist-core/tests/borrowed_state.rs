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
