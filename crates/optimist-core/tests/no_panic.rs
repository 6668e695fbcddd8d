//! User input that used to panic, loop without end or reach undefined
//! behaviour: each case must now be an error value naming the bad input.
//! Also the documented behaviour of a step that fails midway (the optimizer
//! is poisoned, and says so).

use optimist_core::gemm::{gemm, View};
use optimist_core::groups::{ParamGroups, Selector};
use optimist_core::registry::build;
use optimist_core::replay::Case;
use optimist_core::{Error, Optimizer, Param};
use serde_json::json;

fn err_text<T>(r: optimist_core::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn ns_steps_is_bounded_on_every_matrix_rule() {
    for name in ["muon", "adamuon", "namo", "namo_d"] {
        // The largest accepted count builds; one more, and 1e18, do not.
        assert!(build(name, &json!({"ns_steps": 99})).is_ok(), "{name}");
        for bad in [json!(100), json!(1_000_000_000_000_000_000u64)] {
            let e = err_text(build(name, &json!({ "ns_steps": bad })));
            assert!(e.contains("ns_steps"), "{name}: {e}");
        }
    }
}

#[test]
fn a_replay_with_ns_steps_1e18_is_rejected_before_running() {
    for name in ["adamuon", "namo", "namo_d"] {
        let case = json!({
            "version": 1,
            "id": "hostile",
            "optimizer": name,
            "hparams": {"ns_steps": 1_000_000_000_000_000_000u64},
            "params": [{"name": "w", "shape": [2, 2], "data": [1.0, 2.0, 3.0, 4.0]}],
            "grads": [[[0.1, 0.2, 0.3, 0.4]]],
        });
        let r = Case::parse(&case.to_string()).and_then(|c| c.run());
        let e = err_text(r);
        assert!(e.contains("ns_steps"), "{name}: {e}");
    }
}

fn one_param() -> Param {
    let mut p = Param::new("w", vec![3], vec![1.0, -2.0, 0.5]).unwrap();
    p.grad = vec![0.1, -0.2, 0.3];
    p
}

#[test]
fn loaded_counters_are_range_checked() {
    // lookahead/counter must be an integer below k.
    let hp = json!({"k": 5, "inner": {"optimizer": "sgd", "hparams": {"lr": 0.1}}});
    let mut la = build("lookahead", &hp).unwrap();
    let mut p = one_param();
    la.step(&mut [p.view()]).unwrap();
    let good = la.state_dict();
    for bad in [1e300, 5.0, -1.0, 0.5, f64::NAN] {
        let mut d = good.clone();
        d.scalars.insert("lookahead/counter".into(), bad);
        let e = err_text(la.load_state_dict(&d));
        assert!(e.contains("lookahead/counter"), "{bad}: {e}");
    }
    let mut d = good.clone();
    d.scalars.insert("lookahead/counter".into(), 4.0);
    la.load_state_dict(&d).unwrap();
    la.step(&mut [p.view()]).unwrap();

    // Step counts of AdaGC (the optimizer) and the update-masking wrappers.
    for (name, hp) in [
        ("adagc", json!({})),
        (
            "magma",
            json!({"inner": {"optimizer": "sgd", "hparams": {"lr": 0.1}}}),
        ),
        (
            "skipupdate",
            json!({"inner": {"optimizer": "sgd", "hparams": {"lr": 0.1}}}),
        ),
    ] {
        let mut opt = build(name, &hp).unwrap();
        let mut p = one_param();
        opt.step(&mut [p.view()]).unwrap();
        let mut d = opt.state_dict();
        let keys: Vec<String> = d
            .scalars
            .keys()
            .filter(|k| k.ends_with("step"))
            .cloned()
            .collect();
        assert!(
            !keys.is_empty(),
            "{name}: no step scalar in {:?}",
            d.scalars
        );
        for k in &keys {
            d.scalars.insert(k.clone(), 1e300);
        }
        let e = err_text(opt.load_state_dict(&d));
        assert!(e.contains("step"), "{name}: {e}");
        // Unchanged: it still steps.
        opt.step(&mut [p.view()]).unwrap();
    }
}

#[test]
fn gemm_refuses_dimensions_whose_product_overflows() {
    // m * n wraps to 0 in usize: without checked arithmetic the empty
    // output would pass the length check and be written out of bounds.
    let m = 1usize << 32;
    let a = View::new(&[], m, 0);
    let b = View::new(&[], 0, m);
    let mut c: Vec<f32> = Vec::new();
    let e = err_text(gemm(1.0, a, b, 1.0, &mut c, false));
    assert!(e.contains("gemm"), "{e}");
    // The same shapes with a length that fits the wrapped product.
    let a = View::new(&[], usize::MAX, 0);
    let b = View::new(&[], 0, 2);
    let mut c = vec![0.0f32; 2];
    assert!(gemm(1.0, a, b, 1.0, &mut c, false).is_err());
}

#[test]
fn gemm_with_an_empty_inner_dimension_scales_c() {
    // k = 0: C <- beta * C, on every kernel (the packed ones need k > 0).
    for precision in [
        optimist_core::gemm::Precision::F32,
        optimist_core::gemm::Precision::Bf16,
    ] {
        let a = View::new(&[], 3, 0);
        let b = View::new(&[], 0, 2);
        let mut c = vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        optimist_core::gemm::gemm_with(precision, 1.0, a, b, 0.5, &mut c, false).unwrap();
        assert_eq!(c, vec![0.5, 1.0, 1.5, 2.0, 2.5, 3.0]);
    }
}

fn adafactor_params(w_shape: Vec<usize>) -> (Param, Param) {
    let mut a = Param::new("a", vec![4], vec![0.5, -0.25, 1.0, 2.0]).unwrap();
    a.grad = vec![0.1, 0.2, -0.3, 0.4];
    let mut w = Param::new("w", w_shape, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    w.grad = vec![0.01, -0.02, 0.03, -0.04, 0.05, -0.06];
    (a, w)
}

#[test]
fn a_step_that_fails_midway_poisons_the_optimizer_until_a_state_is_loaded() {
    let mut opt = build("adafactor", &json!({"lr": 0.01})).unwrap();
    let (mut a, mut w) = adafactor_params(vec![2, 3]);
    opt.step(&mut [a.view(), w.view()]).unwrap();
    let saved = opt.state_dict();
    // Same element count, now a vector: `a` is updated first, then `w`'s
    // factored state does not fit.
    let (mut a2, mut w2) = adafactor_params(vec![6]);
    let first = opt.step(&mut [a2.view(), w2.view()]).unwrap_err();
    assert!(matches!(first, Error::Shape(_)), "{first:?}");
    assert!(first.to_string().contains("no longer usable"), "{first}");
    // Every later step refuses, even a valid one, naming the first error.
    let (mut a3, mut w3) = adafactor_params(vec![2, 3]);
    let later = opt.step(&mut [a3.view(), w3.view()]).unwrap_err();
    let text = later.to_string();
    assert!(
        text.contains("no longer usable") && text.contains("row_var"),
        "{text}"
    );
    assert_eq!(
        a3.data,
        vec![0.5, -0.25, 1.0, 2.0],
        "a refused step moved a parameter"
    );
    // Loading a state makes it usable again, and the step is the one the
    // saved state gives.
    opt.load_state_dict(&saved).unwrap();
    opt.step(&mut [a3.view(), w3.view()]).unwrap();
    let mut fresh = build("adafactor", &json!({"lr": 0.01})).unwrap();
    fresh.load_state_dict(&saved).unwrap();
    let (mut a4, mut w4) = adafactor_params(vec![2, 3]);
    fresh.step(&mut [a4.view(), w4.view()]).unwrap();
    assert_eq!(a3.data, a4.data);
    assert_eq!(w3.data, w4.data);
    assert_eq!(opt.state_dict(), fresh.state_dict());
}

#[test]
fn a_checked_error_before_any_update_leaves_the_optimizer_usable() {
    let mut opt = build("adam", &json!({"lr": 0.1})).unwrap();
    let mut p = one_param();
    opt.step(&mut [p.view()]).unwrap();
    let before = opt.state_dict();
    let mut bad = Param::new("w", vec![2], vec![1.0, 2.0]).unwrap();
    bad.grad = vec![0.0, 0.0];
    let e = opt.step(&mut [bad.view()]).unwrap_err();
    assert!(!e.to_string().contains("no longer usable"), "{e}");
    assert_eq!(opt.state_dict(), before);
    opt.step(&mut [p.view()]).unwrap();
}

#[test]
fn groups_are_poisoned_when_a_later_group_fails_after_an_earlier_one_stepped() {
    let mut groups = ParamGroups::new()
        .group(
            "vectors",
            Selector::names(["a"]),
            build("adamw", &json!({"lr": 0.1})).unwrap(),
        )
        .group("rest", Selector::All, build("muon", &json!({})).unwrap());
    let saved = groups.state_dict();
    let mut a = Param::new("a", vec![2], vec![1.0, 2.0]).unwrap();
    a.grad = vec![0.5, 0.5];
    // Muon refuses a vector, after the AdamW group has stepped `a`.
    let mut b = Param::new("b", vec![3], vec![1.0, 2.0, 3.0]).unwrap();
    b.grad = vec![0.1, 0.1, 0.1];
    let first = groups.step(&mut [a.view(), b.view()]).unwrap_err();
    assert!(matches!(first, Error::Unsupported(_)), "{first:?}");
    assert!(first.to_string().contains("no longer usable"), "{first}");
    let later = groups.step(&mut [a.view()]).unwrap_err();
    assert!(later.to_string().contains("no longer usable"), "{later}");
    // Loading a state clears it.
    groups.load_state_dict(&saved).unwrap();
    groups.step(&mut [a.view()]).unwrap();
}
