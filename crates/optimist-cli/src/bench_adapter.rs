//! `optimist bench adapter`: what the candle adapter adds to an optimizer
//! step. For each workload, one real gradient of the model (a training
//! batch's loss, backward) is stepped, alternating in the same run:
//! - `engine`: the optimizer's own step on host buffers of the model's
//!   parameter shapes (what `bench step` times),
//! - `adapter`: `OptimistOptimizer::step` on the workload's candle
//!   variables with the candle `GradStore`, as the training loop calls it,
//! - `candle_adamw` (when the optimizer is `adamw`): `candle_nn::AdamW` on
//!   copies of the variables, for reference.
//!
//! Prints one JSON line per workload: medians and the ratio adapter/engine.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Tensor, Var};
use candle_nn::{Optimizer as _, ParamsAdamW};
use clap::Args;
use optimist_candle::OptimistOptimizer;
use optimist_core::exec::ExecOptions;
use optimist_core::registry::build;
use optimist_core::tensor::views;
use optimist_core::{Error, Param, Result};
use optimist_workloads::{data::resolve_data_dir, load, LoadOptions};
use serde_json::{json, Value};

#[derive(Args)]
pub struct AdapterArgs {
    /// Workloads whose models are stepped (comma-separated; mnist-mlp and
    /// shakespeare-char read --data-dir, digits-mlp and shakespeare-mini are embedded).
    #[arg(long, default_value = "mnist-mlp,shakespeare-char")]
    workloads: String,
    /// Optimizer (registry name).
    #[arg(long, default_value = "adamw")]
    optimizer: String,
    /// Hyperparameters as a JSON object.
    #[arg(long, default_value = "{}")]
    hparams: String,
    /// Data directory (default: $OPTIMIST_DATA_DIR, else ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Threads (0: OPTIMIST_NUM_THREADS or the number of CPUs).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Timed steps of each kind, alternating; medians are reported.
    #[arg(long, default_value_t = 200)]
    repeats: usize,
    /// Untimed steps of each kind first.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
}

fn candle_err(what: &str) -> impl Fn(candle_core::Error) -> Error + '_ {
    move |e| Error::Input(format!("{what}: {e}"))
}

pub fn run(a: &AdapterArgs) -> Result<()> {
    let hp: Value = serde_json::from_str(&a.hparams)
        .map_err(|e| Error::Input(format!("--hparams: invalid JSON: {e}")))?;
    super::bench_step::check_repeats("--repeats", a.repeats)?;
    super::bench_step::check_repeats("--warmup", a.warmup)?;
    let threads = super::bench_step::threads_of(a.threads)?;
    let exec = ExecOptions {
        threads,
        ..ExecOptions::default()
    };
    let data_dir = resolve_data_dir(a.data_dir.as_deref());
    for name in a.workloads.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let wl_err = |e: optimist_workloads::Error| Error::Input(format!("workload {name}: {e}"));
        let mut wl = load(name, &data_dir, 0, &LoadOptions::default()).map_err(wl_err)?;
        let mut rng = optimist_workloads::Rng::new(0);
        wl.next_batch(&mut rng).map_err(wl_err)?;
        let err = candle_err(name);
        let grads = wl.batch_loss().and_then(|l| l.backward()).map_err(&err)?;

        // The adapter on the workload's own variables.
        let mut inner = build(&a.optimizer, &hp)?;
        inner.set_exec_options(exec)?;
        let mut adapter =
            OptimistOptimizer::from_varmap_with(wl.varmap(), inner).map_err(&err)?;
        let names: Vec<String> = adapter.param_names().to_vec();
        let vars: Vec<Var> = {
            let data = wl
                .varmap()
                .data()
                .lock()
                .map_err(|_| Error::Input(format!("{name}: VarMap lock poisoned")))?;
            names.iter().filter_map(|n| data.get(n).cloned()).collect()
        };
        if vars.len() != names.len() {
            return Err(Error::Input(format!("{name}: variables changed while reading them")));
        }

        // The engine on host copies with the same shapes and gradient.
        let mut params = Vec::with_capacity(vars.len());
        for (n, v) in names.iter().zip(&vars) {
            let flat = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>());
            let value = flat(v.as_tensor()).map_err(&err)?;
            let mut p = Param::new(n.clone(), v.dims().to_vec(), value)?;
            if let Some(g) = grads.get(v.as_tensor()) {
                p.grad = flat(g).map_err(&err)?;
            }
            params.push(p);
        }
        let mut engine = build(&a.optimizer, &hp)?;
        engine.set_exec_options(exec)?;
        let numel: usize = params.iter().map(|p| p.data.len()).sum();

        // candle_nn::AdamW on copies, for reference.
        let mut reference = if a.optimizer == "adamw" {
            let mut copies = Vec::with_capacity(vars.len());
            for v in &vars {
                copies.push(Var::from_tensor(&v.as_tensor().copy().map_err(&err)?).map_err(&err)?);
            }
            // A gradient store of the copies (candle makes stores only
            // through backward): then the real gradients put in.
            let mut store = copies
                .iter()
                .map(|c| c.as_tensor().sum_all())
                .reduce(|a, b| a.and_then(|a| b.and_then(|b| a + b)))
                .ok_or_else(|| Error::Input(format!("{name}: no parameters")))?
                .and_then(|t| t.backward())
                .map_err(&err)?;
            for (c, v) in copies.iter().zip(&vars) {
                if let Some(g) = grads.get(v.as_tensor()) {
                    store.insert(c.as_tensor(), g.clone());
                }
            }
            let opt = candle_nn::AdamW::new(copies, ParamsAdamW::default()).map_err(&err)?;
            Some((opt, store))
        } else {
            None
        };

        let (mut t_engine, mut t_adapter, mut t_ref) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..a.warmup + a.repeats.max(1) {
            let timed = r >= a.warmup;
            // The order flips every round, so that neither side always
            // finds the other's data in the caches.
            let (mut e, mut d) = (0.0, 0.0);
            for side in [r % 2, 1 - r % 2] {
                let t0 = Instant::now();
                if side == 0 {
                    engine.step(&mut views(&mut params))?;
                    e = t0.elapsed().as_secs_f64();
                } else {
                    adapter.step(&grads).map_err(&err)?;
                    d = t0.elapsed().as_secs_f64();
                }
            }
            if let Some((opt, store)) = reference.as_mut() {
                let t0 = Instant::now();
                opt.step(store).map_err(&err)?;
                if timed {
                    t_ref.push(t0.elapsed().as_secs_f64());
                }
            }
            if timed {
                t_engine.push(e);
                t_adapter.push(d);
            }
        }
        let engine_s = super::bench_step::median(&mut t_engine);
        let adapter_s = super::bench_step::median(&mut t_adapter);
        let mut out = json!({
            "bench": "adapter",
            "workload": name,
            "optimizer": a.optimizer,
            "hparams": hp,
            "params": numel,
            "tensors": params.len(),
            "threads": threads,
            "repeats": a.repeats.max(1),
            "engine_seconds_median": engine_s,
            "adapter_seconds_median": adapter_s,
            "adapter_over_engine": adapter_s / engine_s,
        });
        if !t_ref.is_empty() {
            let ref_s = super::bench_step::median(&mut t_ref);
            out["candle_adamw_seconds_median"] = json!(ref_s);
            out["candle_adamw_over_adapter"] = json!(ref_s / adapter_s);
        }
        println!("{out}");
    }
    Ok(())
}
