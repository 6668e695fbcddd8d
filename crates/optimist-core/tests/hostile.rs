//! Hostile input, fuzzed with proptest: checkpoint loading (every registry
//! optimizer, parameter groups and every wrapper), the whole replay (every
//! project case, essentials and extensions shape, `stages` and closure
//! cases included) and optimizer specifications get random and corrupted
//! input (truncated files, flipped bytes, wrong lengths, absurd shapes and
//! offsets, non-finite or out-of-range hyperparameters and scalars, unknown
//! dtypes, structural edits of the JSON) and must answer with an error or a
//! result, never a panic, and never an allocation out of proportion to the
//! input (a counting allocator records the largest single allocation).
//!
//! Each input is drawn from a seed proptest chooses (and shrinks on
//! failure). `PROPTEST_CASES` sets the number of inputs per test (proptest's
//! default, 256, unless set; CI runs a longer bounded pass, see `.ci/run`).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{build_default, Net};
use optimist_core::groups::{ParamGroups, Selector};
use optimist_core::checkpoint::{Checkpoint, ConfigCheck, LoadOptions};
use optimist_core::registry::build;
use optimist_core::replay::Case;
use optimist_core::schedule::ScheduleSpec;
use optimist_core::wrappers::{
    AccumulateIn, Ema, EmaConfig, GradAccumulation, Scheduled, SkipNonFinite,
};
use optimist_core::Optimizer;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Records the largest single allocation; refuses (aborting the test
/// process) anything above 1 GiB instead of trying to allocate it.
struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);
const HARD_LIMIT: usize = 1 << 30;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        if layout.size() > HARD_LIMIT {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        if new_size > HARD_LIMIT {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Values a structural mutation puts in place of a JSON node.
fn nasty(rng: &mut Rng) -> Value {
    match rng.below(22) {
        0 => json!(u64::MAX),
        1 => json!(-1),
        2 => json!(1e308),
        3 => json!(-1e308),
        4 => json!("NaN"),
        5 => json!("inf"),
        6 => json!(0),
        7 => json!(1u64 << 40),
        8 => json!([u64::MAX, u64::MAX]),
        9 => json!([1u64 << 32, 1u64 << 32]),
        10 => json!([]),
        11 => json!({}),
        12 => Value::Null,
        13 => json!(true),
        14 => json!("F16"),
        15 => json!("BF16"),
        16 => json!([0, 18446744073709551615u64]),
        17 => json!(0.5),
        18 => json!("x".repeat(rng.below(40))),
        19 => json!([[[1.0]]]),
        20 => json!({"name": "join", "schedules": [], "boundaries": [1]}),
        _ => json!(1e-45),
    }
}

/// Replaces, deletes or inserts at a random node of `v`.
fn mutate_json(v: &mut Value, rng: &mut Rng) {
    // Walk down a random path.
    let mut node = v;
    for _ in 0..rng.below(6) {
        let next_is_container = match node {
            Value::Object(m) if !m.is_empty() => true,
            Value::Array(a) if !a.is_empty() => true,
            _ => false,
        };
        if !next_is_container || rng.below(4) == 0 {
            break;
        }
        node = match node {
            Value::Object(m) => {
                let i = rng.below(m.len());
                let key = m.keys().nth(i).cloned().unwrap_or_default();
                m.get_mut(&key).unwrap()
            }
            Value::Array(a) => {
                let i = rng.below(a.len());
                &mut a[i]
            }
            _ => unreachable!(),
        };
    }
    match (rng.below(4), &mut *node) {
        (0, Value::Object(m)) if !m.is_empty() => {
            let i = rng.below(m.len());
            let key = m.keys().nth(i).cloned().unwrap_or_default();
            m.remove(&key);
        }
        (1, Value::Object(m)) => {
            m.insert(format!("k{}", rng.below(5)), nasty(rng));
        }
        (0, Value::Array(a)) if !a.is_empty() => {
            let i = rng.below(a.len());
            a.remove(i);
        }
        (1, Value::Array(a)) => {
            let x = nasty(rng);
            a.push(x);
        }
        _ => *node = nasty(rng),
    }
}

fn mutate_bytes(bytes: &mut Vec<u8>, rng: &mut Rng) {
    match rng.below(5) {
        0 => {
            let n = rng.below(bytes.len() + 1);
            bytes.truncate(n);
        }
        1 => {
            for _ in 0..1 + rng.below(8) {
                if bytes.is_empty() {
                    break;
                }
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
        }
        2 => {
            // The safetensors header length.
            if bytes.len() >= 8 {
                let n = match rng.below(4) {
                    0 => u64::MAX,
                    1 => rng.next() % (1 << 40),
                    2 => (bytes.len() as u64).saturating_sub(8 + rng.below(16) as u64),
                    _ => rng.next() % 200,
                };
                bytes[..8].copy_from_slice(&n.to_le_bytes());
            }
        }
        3 => {
            for _ in 0..rng.below(64) {
                bytes.push(rng.next() as u8);
            }
        }
        _ => {
            let i = rng.below(bytes.len() + 1);
            let j = (i + rng.below(64)).min(bytes.len());
            bytes.drain(i..j);
        }
    }
}

/// Splits safetensors bytes into (header JSON, data).
fn split(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
}

fn join(header: &Value, data: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

type Maker = Box<dyn Fn() -> Box<dyn Optimizer> + Send + Sync>;

/// Every registry optimizer with its defaults (wrappers around Adam), each
/// configurable wrapper around AdamW, a stack of four wrappers, and
/// parameter groups.
fn makers() -> Vec<(String, Maker)> {
    let mut out: Vec<(String, Maker)> = Vec::new();
    for spec in optimist_core::registry::registry() {
        out.push((spec.name.to_string(), Box::new(move || build_default(spec))));
    }
    for cfg in [
        json!({"wrapper": "scheduled", "schedules": [{"hparam": "lr", "schedule": {"name": "cosine", "decay_steps": 5}}]}),
        json!({"wrapper": "skip_nonfinite", "max_consecutive_errors": 2}),
        json!({"wrapper": "grad_accumulation", "k": 2}),
        json!({"wrapper": "ema", "decay": 0.9}),
        json!({"wrapper": "swa", "swa_start": 1, "swa_freq": 1}),
    ] {
        let name = cfg["wrapper"].as_str().unwrap().to_string();
        out.push((
            name,
            Box::new(move || {
                optimist_core::wrappers::wrap(build("adamw", &json!({})).unwrap(), &cfg).unwrap()
            }),
        ));
    }
    out.push((
        "wrapper stack".into(),
        Box::new(|| {
            let s = Scheduled::new(build("sgd", &json!({"lr": 0.1, "momentum": 0.9})).unwrap())
                .with(
                    "lr",
                    ScheduleSpec::from_json(&json!({"name": "cosine", "decay_steps": 5})).unwrap(),
                )
                .unwrap();
            let a = GradAccumulation::new(Box::new(s), 3, AccumulateIn::Buffer).unwrap();
            let k = SkipNonFinite::new(Box::new(a), 2);
            Box::new(Ema::new(Box::new(k), EmaConfig::default()).unwrap())
        }),
    ));
    out.push((
        "groups".into(),
        Box::new(|| {
            Box::new(
                ParamGroups::new()
                    .group("layer", Selector::names(["layer.*"]), build("muon", &json!({})).unwrap())
                    .group("rest", Selector::All, build("lion", &json!({})).unwrap()),
            )
        }),
    ));
    out
}

/// The makers and, for each that steps on the test net, a valid checkpoint
/// after four steps (built once).
/// The named makers, and (maker index, checkpoint bytes) for each.
type Checkpoints = (Vec<(String, Maker)>, Vec<(usize, Vec<u8>)>);

fn checkpoints() -> &'static Checkpoints {
    static CELL: std::sync::OnceLock<Checkpoints> = std::sync::OnceLock::new();
    CELL.get_or_init(|| {
        let makers = makers();
        let mut valid = Vec::new();
        for (i, (name, make)) in makers.iter().enumerate() {
            let mut opt = make();
            let mut net = Net::new(1);
            for t in 0..4 {
                net.set_grads(3, t);
                opt.step(&mut net.views())
                    .unwrap_or_else(|e| panic!("{name} does not step on the test net: {e}"));
            }
            let bytes = Checkpoint::capture(opt.as_ref(), &net.refs())
                .unwrap()
                .to_bytes()
                .unwrap();
            valid.push((i, bytes));
        }
        (makers, valid)
    })
}

fn check_allocation(what: &str, input_len: usize) {
    let largest = LARGEST.load(Ordering::Relaxed);
    let bound = (64 << 20).max(16 * input_len);
    assert!(
        largest <= bound,
        "{what}: allocated {largest} bytes at once for an input of {input_len} bytes"
    );
}

/// A corrupted version of checkpoint `base`, drawn from `seed`.
fn corrupt_checkpoint(base: &[u8], kind: u8, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    match kind % 4 {
        0 => {
            let mut b = base.to_vec();
            for _ in 0..1 + rng.below(3) {
                mutate_bytes(&mut b, &mut rng);
            }
            b
        }
        1 => {
            // Structural edit of the safetensors header (tensor infos).
            let (mut h, data) = split(base);
            mutate_json(&mut h, &mut rng);
            join(&h, &data)
        }
        2 => {
            // Structural edit of the optimist metadata.
            let (mut h, data) = split(base);
            let meta = h["__metadata__"]["optimist"].as_str().unwrap().to_string();
            let mut m: Value = serde_json::from_str(&meta).unwrap();
            for _ in 0..1 + rng.below(3) {
                mutate_json(&mut m, &mut rng);
            }
            h["__metadata__"]["optimist"] = json!(m.to_string());
            join(&h, &data)
        }
        _ => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn corrupted_checkpoints_are_errors_not_panics(pick in any::<usize>(), kind in 0u8..4, seed in any::<u64>()) {
        let (makers, valid) = checkpoints();
        let (which, base) = &valid[pick % valid.len()];
        let bytes = corrupt_checkpoint(base, kind, seed);
        LARGEST.store(0, Ordering::Relaxed);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let Ok(ck) = Checkpoint::from_bytes(&bytes) else {
                return;
            };
            for config in [ConfigCheck::Strict, ConfigCheck::Adopt] {
                let mut opt = makers[*which].1();
                let mut net = Net::new(2);
                let (state, cfg, values) = (opt.state_dict(), opt.config(), net.values.clone());
                let r = ck.restore(opt.as_mut(), &mut net.views(), &LoadOptions { config });
                if r.is_err() {
                    // Nothing changes on a failed load.
                    assert!(opt.state_dict() == state, "a failed load changed the state");
                    assert!(opt.config() == cfg, "a failed load changed the configuration");
                    assert!(net.values == values, "a failed load changed the parameters");
                } else {
                    // A loaded state must also step without panicking.
                    net.set_grads(4, 9);
                    let _ = opt.step(&mut net.views());
                }
            }
        }));
        prop_assert!(outcome.is_ok(), "{}: corrupted checkpoint (kind {kind}, seed {seed}) panicked", makers[*which].0);
        check_allocation(&format!("{} checkpoint (kind {kind}, seed {seed})", makers[*which].0), bytes.len());
    }
}

/// Every maker has a checkpoint to corrupt.
#[test]
fn every_optimizer_and_wrapper_has_a_checkpoint_to_corrupt() {
    let (makers, valid) = checkpoints();
    assert_eq!(valid.len(), makers.len());
    assert!(makers.len() > optimist_core::registry::registry().len());
}

fn case_texts() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden");
    let mut out = Vec::new();
    for dir in ["cases", "essentials", "extensions", "closure", "schedules", "averaging"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut files: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
        {
            let text = std::fs::read_to_string(&f).unwrap();
            // Keep the fuzzing fast: cases up to 64 KiB.
            if text.len() <= 64 << 10 {
                out.push(text);
            }
        }
    }
    // Gradient stages (docs/replay.md): every stage, on a project case.
    if let Some(base) = out.iter().find(|t| t.contains("\"optimizer\": \"adamw\"") && !t.contains("expect_error\": true")) {
        let mut v: Value = serde_json::from_str(base).unwrap();
        v["stages"] = json!([
            {"name": "zclip", "config": {"warmup_steps": 2}},
            {"name": "agc", "config": {"clipping": 0.01}},
            {"name": "adagc", "config": {}},
            {"name": "clip_per_tensor", "config": {"max_norm": 0.5}},
            {"name": "clip_grad_norm", "config": {"max_norm": 1.0}}
        ]);
        out.push(v.to_string());
    }
    out
}

fn texts() -> &'static Vec<String> {
    static CELL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    CELL.get_or_init(case_texts)
}

/// A corrupted version of replay case `base`, drawn from `seed`.
fn corrupt_case(base: &str, kind: u8, seed: u64) -> String {
    let mut rng = Rng(seed | 1);
    match kind % 5 {
        0 => {
            let mut b = base.to_string().into_bytes();
            mutate_bytes(&mut b, &mut rng);
            String::from_utf8_lossy(&b).into_owned()
        }
        1 => {
            // Nested JSON far past serde_json's recursion limit.
            let depth = 100 + rng.below(5000);
            format!(
                "{{\"optimizer\": \"sgd\", \"hparams\": {}{}, \"params\": [], \"grads\": []}}",
                "[".repeat(depth),
                "]".repeat(depth)
            )
        }
        _ => {
            let mut v: Value = serde_json::from_str(base).unwrap();
            for _ in 0..1 + rng.below(3) {
                mutate_json(&mut v, &mut rng);
            }
            // Also aim at the fields the replay reads.
            if rng.below(2) == 0 {
                let key = [
                    "hparams",
                    "lr_schedule",
                    "grad_clip",
                    "params",
                    "grads",
                    "hessian",
                    "stages",
                    "closure",
                    "steps",
                ][rng.below(9)];
                match v.get_mut(key) {
                    Some(node) => mutate_json(node, &mut rng),
                    None => {
                        if let Some(o) = v.as_object_mut() {
                            o.insert(key.to_string(), nasty(&mut rng));
                        }
                    }
                }
            }
            v.to_string()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn corrupted_replay_cases_are_errors_not_panics(pick in any::<usize>(), kind in 0u8..5, seed in any::<u64>()) {
        let texts = texts();
        let input = corrupt_case(&texts[pick % texts.len()], kind, seed);
        LARGEST.store(0, Ordering::Relaxed);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let _ = Case::parse(&input).and_then(|c| c.run());
        }));
        prop_assert!(outcome.is_ok(), "replay input (case {}, kind {kind}, seed {seed}) panicked", pick % texts.len());
        check_allocation(&format!("replay input (kind {kind}, seed {seed})"), input.len());
    }
}

/// The replay fuzzing starts from every kind of case: stages, closure
/// cases and error cases among them, each of which replays as given.
#[test]
fn replay_fuzzing_covers_every_case_shape() {
    let texts = texts();
    let stages = texts.iter().find(|t| t.contains("\"stages\"")).unwrap();
    Case::parse(stages).and_then(|c| c.run()).unwrap();
    for key in ["\"stages\"", "\"closure\"", "\"expect_error\": true", "\"lr_schedule\": {", "\"hessian\""] {
        assert!(texts.iter().any(|t| t.contains(key)), "no case with {key}");
    }
}

/// Optimizer specifications as `--hparams`/`--wrap`/groups JSON reaches
/// the registry: nested wrappers around a scheduled AdamW, each registry
/// optimizer's defaults, and each wrapper kind.
fn spec_bases() -> &'static Vec<Value> {
    static CELL: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
    CELL.get_or_init(|| {
        let mut out = vec![json!({"optimizer": "adamw", "hparams": {"wrapper": "ema", "decay": 0.9,
            "inner": {"optimizer": "adamw", "hparams": {"wrapper": "scheduled",
                "schedules": [{"hparam": "lr", "schedule": {"name": "wsd", "warmup_steps": 2, "stable_steps": 2, "decay_steps": 2}}],
                "inner": {"optimizer": "adamw", "hparams": {"lr": 0.01}}}}}})];
        for spec in optimist_core::registry::registry() {
            out.push(json!({"optimizer": spec.name, "hparams": (spec.defaults)()}));
        }
        for w in ["skip_nonfinite", "grad_accumulation", "swa"] {
            out.push(json!({"wrapper": w, "inner": {"optimizer": "sgd", "hparams": {"lr": 0.1}}}));
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_optimizer_specs_are_errors(pick in any::<usize>(), seed in any::<u64>()) {
        let bases = spec_bases();
        let mut rng = Rng(seed | 1);
        let mut v = bases[pick % bases.len()].clone();
        for _ in 0..1 + rng.below(3) {
            mutate_json(&mut v, &mut rng);
        }
        let r = catch_unwind(AssertUnwindSafe(|| {
            if let Ok(mut o) = optimist_core::registry::build_spec(&v) {
                // What was built reports a configuration that builds the same.
                let again = optimist_core::registry::build_spec(&json!({"optimizer": o.name(), "hparams": o.config()}))
                    .unwrap_or_else(|e| panic!("{v} built, but its reported configuration does not: {e}"));
                assert_eq!(again.config(), o.config(), "{v}");
                let mut net = Net::new(1);
                for t in 0..3 {
                    net.set_grads(1, t);
                    let _ = o.step(&mut net.views());
                }
            }
        }));
        prop_assert!(r.is_ok(), "spec panicked: {v}");
    }
}

/// Every base specification builds before it is corrupted.
#[test]
fn spec_bases_build() {
    for v in spec_bases() {
        let r = optimist_core::registry::build_spec(v);
        // Wrappers that need an inner optimizer are given one by the
        // wrapper bases; registry wrappers with their defaults have none.
        if let Err(e) = r {
            let name = v["optimizer"].as_str().unwrap_or_default();
            assert!(
                ["lookahead", "cautious", "magma", "skipupdate"].contains(&name),
                "{v}: {e}"
            );
        }
    }
}
