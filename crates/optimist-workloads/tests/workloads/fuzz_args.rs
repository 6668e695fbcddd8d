//! The command line's JSON arguments, fuzzed with proptest: `--hparams`
//! (for every registry optimizer), `--wrap` (every wrapper kind) and
//! parameter groups (`param_groups` with a `groups` list) go, as the CLI
//! passes them, to [`train`] on a small workload. Whatever the JSON, the
//! answer is an error or a short run, never a panic. `PROPTEST_CASES` sets
//! the number of inputs (proptest's default, 256, unless set).

use std::panic::{catch_unwind, AssertUnwindSafe};

use optimist_workloads::train::{train, TrainOptions};
use optimist_workloads::{load, LoadOptions};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Keys the arguments use, so that edits hit real fields as well as
/// unknown ones.
const KEYS: &[&str] = &[
    "lr", "betas", "eps", "weight_decay", "momentum", "nesterov", "maximize", "amsgrad",
    "ns_steps", "inner", "optimizer", "hparams", "wrapper", "schedules", "hparam",
    "schedule", "name", "decay_steps", "warmup_steps", "decay", "k", "accumulate_in",
    "max_consecutive_errors", "swa_start", "swa_freq", "groups", "select", "alpha",
    "update_period", "cautious", "flatten", "unknown",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|x| json!(x)),
        prop::sample::select(vec![0.0, -1.0, 0.5, 1.0, 1e308, -1e308, 1e-45, 1e18, 0.999])
            .prop_map(|x| json!(x)),
        "[a-z_*.]{0,12}".prop_map(Value::from),
        prop::sample::select(KEYS).prop_map(Value::from),
        prop::sample::select(optimist_core::registry::registry().iter().map(|s| s.name).collect::<Vec<_>>())
            .prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..4).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())
            }),
        ]
    })
}

/// Sets `key` to `v` in `obj` (an object), one level down when `deep`.
fn edit(obj: &mut Value, key: &str, v: Value, deep: bool) {
    if deep {
        if let Some(o) = obj.as_object_mut() {
            if let Some(child) = o.values_mut().find(|x| x.is_object()) {
                if let Some(c) = child.as_object_mut() {
                    c.insert(key.to_string(), v);
                    return;
                }
            }
        }
    }
    if let Some(o) = obj.as_object_mut() {
        o.insert(key.to_string(), v);
    }
}

fn wrapper_base(kind: usize) -> Value {
    match kind % 6 {
        0 => json!({"wrapper": "scheduled", "schedules": [{"hparam": "lr", "schedule": {"name": "cosine", "decay_steps": 3}}]}),
        1 => json!({"wrapper": "skip_nonfinite", "max_consecutive_errors": 2}),
        2 => json!({"wrapper": "grad_accumulation", "k": 2}),
        3 => json!({"wrapper": "ema", "decay": 0.9}),
        4 => json!({"wrapper": "swa", "swa_start": 1, "swa_freq": 1}),
        _ => json!({"wrapper": "lookahead"}),
    }
}

fn run(optimizer: &str, hparams: &Value, wrappers: Vec<Value>) {
    let mut w = load("quadratic", std::path::Path::new("unused"), 0, &LoadOptions::default()).unwrap();
    let opts = TrainOptions {
        steps: Some(2),
        eval_every: Some(2),
        eval_test: false,
        wrappers,
        ..Default::default()
    };
    let _ = train(w.as_mut(), optimizer, hparams, &opts, &mut |_| {});
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// `--hparams` for any registry optimizer, with `--wrap` around it.
    #[test]
    fn hparams_and_wrap_arguments_are_errors_or_runs(
        pick in any::<usize>(),
        edits in prop::collection::vec((prop::sample::select(KEYS), value(), any::<bool>()), 0..4),
        wrap in prop::option::of((any::<usize>(), prop::collection::vec((prop::sample::select(KEYS), value(), any::<bool>()), 0..3))),
    ) {
        let specs = optimist_core::registry::registry();
        let spec = &specs[pick % specs.len()];
        let mut hp = json!({});
        for (k, v, deep) in edits {
            edit(&mut hp, k, v, deep);
        }
        let wrappers: Vec<Value> = wrap
            .map(|(kind, edits)| {
                let mut w = wrapper_base(kind);
                for (k, v, deep) in edits {
                    edit(&mut w, k, v, deep);
                }
                w
            })
            .into_iter()
            .collect();
        let label = format!("{} --hparams '{hp}' --wrap {wrappers:?}", spec.name);
        let r = catch_unwind(AssertUnwindSafe(|| run(spec.name, &hp, wrappers.clone())));
        prop_assert!(r.is_ok(), "panicked: {label}");
    }

    /// Parameter groups: `--optimizer param_groups --hparams '{"groups": [...]}'`.
    #[test]
    fn group_arguments_are_errors_or_runs(
        picks in prop::collection::vec(any::<usize>(), 1..3),
        edits in prop::collection::vec((any::<usize>(), prop::sample::select(KEYS), value(), any::<bool>()), 0..4),
    ) {
        let specs = optimist_core::registry::registry();
        let mut groups: Vec<Value> = picks
            .iter()
            .enumerate()
            .map(|(i, p)| {
                json!({"name": format!("g{i}"), "select": if i == 0 { json!({"names": ["*.weight"]}) } else { json!("all") },
                       "optimizer": specs[p % specs.len()].name, "hparams": {}})
            })
            .collect();
        for (g, k, v, deep) in edits {
            let n = groups.len();
            edit(&mut groups[g % n], k, v, deep);
        }
        let hp = json!({"groups": groups});
        let r = catch_unwind(AssertUnwindSafe(|| run("param_groups", &hp, Vec::new())));
        prop_assert!(r.is_ok(), "panicked: param_groups --hparams '{hp}'");
    }
}

/// The unedited arguments run: the fuzzing starts from working input.
#[test]
fn the_starting_arguments_train() {
    let mut w = load("quadratic", std::path::Path::new("unused"), 0, &LoadOptions::default()).unwrap();
    let opts = TrainOptions {
        steps: Some(2),
        eval_every: Some(2),
        eval_test: false,
        wrappers: (0..5).map(wrapper_base).collect(),
        ..Default::default()
    };
    train(w.as_mut(), "adamw", &json!({}), &opts, &mut |_| {}).unwrap();
    let mut w = load("quadratic", std::path::Path::new("unused"), 0, &LoadOptions::default()).unwrap();
    let groups = json!({"groups": [
        {"name": "g0", "select": {"names": ["*.weight"]}, "optimizer": "lion", "hparams": {}},
        {"name": "g1", "select": "all", "optimizer": "sgd", "hparams": {}}]});
    train(w.as_mut(), "param_groups", &groups, &opts, &mut |_| {}).unwrap();
}
