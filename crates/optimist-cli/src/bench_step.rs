//! `optimist bench step|bandwidth`: micro-benchmarks of optimizer steps (`bench step`) and of
//! the machine's memory bandwidth with the same access pattern
//! (`bench bandwidth`). Each prints one JSON line per measurement.
//!
//! Bytes moved per parameter by a step: 4 (read the parameter) + 4 (read the
//! gradient) + 4 (write the parameter) + 2 x the state bytes per parameter
//! (read and written once). AdamW with f32 state: 12 + 2 x 8 = 28.

use std::time::Instant;

use clap::{Args, Subcommand};
use optimist_core::exec::ExecOptions;
use optimist_core::registry::build;
use optimist_core::stream::{parse_pattern, Stream, MAX_STREAMS};
use optimist_core::tensor::views;
use optimist_core::{DType, Error, Param, Result};
use serde_json::{json, Value};

/// The micro-benchmarks under `optimist bench`.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time one optimizer step: median seconds per step after warm-up, effective GB/s.
    Step(StepArgs),
    /// STREAM-style memory bandwidth with an optimizer's access pattern.
    Bandwidth(BandwidthArgs),
    /// Matrix products (the Muon family's GEMM): GFLOP/s per shape, precision and thread count.
    Gemm(crate::bench_gemm::GemmArgs),
    /// The candle adapter's step against the engine's on a workload's model (same shapes, one real gradient), alternating.
    Adapter(crate::bench_adapter::AdapterArgs),
}

#[derive(Args)]
pub struct StepArgs {
    /// Optimizer (registry name).
    #[arg(long)]
    optimizer: String,
    /// Hyperparameters as a JSON object.
    #[arg(long, default_value = "{}")]
    hparams: String,
    /// Total number of parameters (elements).
    #[arg(long, default_value_t = 10_000_000)]
    params: usize,
    /// Number of tensors the parameters are split into (sizes differ by at most 1).
    #[arg(long, default_value_t = 1)]
    tensors: usize,
    /// Tensor rank: 1 (vectors) or 2 (near-square matrices).
    #[arg(long, default_value_t = 1)]
    dims: usize,
    /// Threads (0: OPTIMIST_NUM_THREADS or the number of CPUs).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Timed steps; the median is reported.
    #[arg(long, default_value_t = 20)]
    repeats: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// State storage: f32, bf16 or q8.
    #[arg(long, default_value = "f32")]
    state_dtype: String,
    /// Values per 8-bit block (q8).
    #[arg(long, default_value_t = 256)]
    q8_block: usize,
    /// Use the simple per-parameter path (the reference) instead of the fused one.
    #[arg(long)]
    simple: bool,
    /// Also measure the bandwidth with the step's access pattern, alternating
    /// with the steps, and report the step as a fraction of it.
    #[arg(long)]
    bandwidth: bool,
    /// The step's memory traffic as READS,WRITES f32 arrays per parameter,
    /// for the GB/s and --bandwidth (default: one pass, 2+S reads and 1+S
    /// writes for S f32 state buffers). Rules that pass over the memory
    /// more than once name their whole pattern here: MARS on matrices 7,4
    /// (the norm pass reads 2, the step 5 and writes 4).
    #[arg(long)]
    pattern: Option<String>,
}

#[derive(Args)]
pub struct BandwidthArgs {
    /// Elements per array.
    #[arg(long, default_value_t = 10_000_000)]
    params: usize,
    /// Threads (0: OPTIMIST_NUM_THREADS or the number of CPUs).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Access pattern READS,WRITES (f32 arrays read; the first WRITES written back).
    #[arg(long, default_value = "4,3")]
    pattern: String,
    /// Timed sweeps; the median is reported.
    #[arg(long, default_value_t = 20)]
    repeats: usize,
}

pub fn run(command: &BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Step(a) => step(a),
        BenchCommand::Bandwidth(a) => bandwidth(a),
        BenchCommand::Gemm(a) => crate::bench_gemm::run(a),
        BenchCommand::Adapter(a) => crate::bench_adapter::run(a),
    }
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `--threads` (0: the default), through the cap of
/// `optimist_core::exec::set_num_threads`.
pub(crate) fn threads_of(t: usize) -> Result<usize> {
    if t == 0 {
        Ok(optimist_core::exec::default_threads())
    } else {
        optimist_core::exec::set_num_threads(t)
            .map_err(|e| Error::Input(format!("--threads {t}: {e}")))?;
        Ok(t)
    }
}

/// The most timed or warm-up repetitions.
const MAX_REPEATS: usize = 1_000_000;

pub(crate) fn check_repeats(flag: &str, n: usize) -> Result<()> {
    if n > MAX_REPEATS {
        return Err(Error::Input(format!(
            "{flag} {n}: must be at most {MAX_REPEATS}"
        )));
    }
    Ok(())
}

/// Largest arrays used for bandwidth (128 MiB each): far beyond any cache.
const MAX_STREAM_LEN: usize = 1 << 25;

fn bandwidth(a: &BandwidthArgs) -> Result<()> {
    let (r, w) = parse_pattern(&a.pattern)?;
    check_repeats("--repeats", a.repeats)?;
    let threads = threads_of(a.threads)?;
    let mut s = Stream::new(a.params, r, w)?;
    s.sweep(threads)?;
    let mut times = Vec::with_capacity(a.repeats);
    for _ in 0..a.repeats.max(1) {
        let t0 = Instant::now();
        s.sweep(threads)?;
        times.push(t0.elapsed().as_secs_f64());
    }
    let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
    let med = median(&mut times);
    let bytes = s.bytes() as f64;
    println!(
        "{}",
        json!({
            "bench": "bandwidth",
            "pattern": format!("{r},{w}"),
            "params": a.params,
            "threads": threads,
            "repeats": a.repeats.max(1),
            "bytes_per_param": (r + w) * 4,
            "seconds_median": med,
            "gbps": bytes / med / 1e9,
            "gbps_best": bytes / best / 1e9,
        })
    );
    Ok(())
}

/// A deterministic pseudo-random fill in [-scale, scale).
fn fill(v: &mut [f32], seed: u64, scale: f32) {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for e in v.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *e = ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale;
    }
}

fn shape_of(n: usize, dims: usize) -> Vec<usize> {
    if dims < 2 || n == 0 {
        return vec![n];
    }
    let mut rows = (n as f64).sqrt() as usize;
    while rows > 1 && (n / rows) * rows != n {
        rows -= 1;
    }
    vec![rows.max(1), n / rows.max(1)]
}

fn step(a: &StepArgs) -> Result<()> {
    let hp: Value = serde_json::from_str(&a.hparams)
        .map_err(|e| Error::Input(format!("--hparams: invalid JSON: {e}")))?;
    if a.params == 0 || a.tensors == 0 || a.tensors > a.params {
        return Err(Error::Input(format!(
            "--params {} --tensors {}: need 1 <= tensors <= params",
            a.params, a.tensors
        )));
    }
    if !(1..=2).contains(&a.dims) {
        return Err(Error::Input(format!("--dims {}: must be 1 or 2", a.dims)));
    }
    check_repeats("--repeats", a.repeats)?;
    check_repeats("--warmup", a.warmup)?;
    let pattern = match &a.pattern {
        Some(p) => {
            let (r, w) = parse_pattern(p).map_err(|e| Error::Input(format!("--pattern: {e}")))?;
            if r == 0 || r > MAX_STREAMS || w > r {
                return Err(Error::Input(format!(
                    "--pattern {r},{w}: need 1 <= READS <= {MAX_STREAMS} and WRITES <= READS"
                )));
            }
            Some((r, w))
        }
        None => None,
    };
    let threads = threads_of(a.threads)?;
    let dtype = DType::parse(&a.state_dtype)?;
    let mut opt = build(&a.optimizer, &hp)?;
    opt.set_exec_options(ExecOptions {
        threads,
        fused: !a.simple,
        state_dtype: dtype,
        q8_block: a.q8_block,
        ..ExecOptions::default()
    })?;

    let base = a.params / a.tensors;
    let extra = a.params % a.tensors;
    let mut params = Vec::with_capacity(a.tensors);
    for i in 0..a.tensors {
        let n = base + usize::from(i < extra);
        let mut data = vec![0f32; n];
        fill(&mut data, 2 * i as u64 + 1, 0.1);
        let mut p = Param::new(format!("p{i}"), shape_of(n, a.dims), data)?;
        fill(&mut p.grad, 2 * i as u64 + 2, 0.01);
        params.push(p);
    }
    let mut vs = views(&mut params);
    for _ in 0..a.warmup {
        opt.step(&mut vs)?;
    }
    let n = a.params as f64;
    let state_bytes = opt.state_nbytes() as f64 / n;
    let state_f32_streams = (opt.state_dict().nbytes() as f64 / n / 4.0).round() as usize;
    let (bytes_per_param, pattern) = match pattern {
        Some((r, w)) => (4.0 * (r + w) as f64, (r, w)),
        None => (
            12.0 + 2.0 * state_bytes,
            (2 + state_f32_streams, 1 + state_f32_streams),
        ),
    };

    let mut stream = if a.bandwidth {
        let mut s = Stream::new(a.params.min(MAX_STREAM_LEN), pattern.0, pattern.1)?;
        s.sweep(threads)?;
        Some(s)
    } else {
        None
    };
    let mut times = Vec::with_capacity(a.repeats);
    let mut bw = Vec::new();
    for _ in 0..a.repeats.max(1) {
        if let Some(s) = stream.as_mut() {
            let t0 = Instant::now();
            s.sweep(threads)?;
            bw.push(s.bytes() as f64 / t0.elapsed().as_secs_f64() / 1e9);
        }
        let t0 = Instant::now();
        opt.step(&mut vs)?;
        times.push(t0.elapsed().as_secs_f64());
    }
    let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
    let med = median(&mut times);
    let gbps = bytes_per_param * n / med / 1e9;
    let mut out = json!({
        "bench": "step",
        "optimizer": a.optimizer,
        "hparams": hp,
        "params": a.params,
        "tensors": a.tensors,
        "dims": a.dims,
        "threads": threads,
        "state_dtype": dtype.name(),
        "path": if a.simple { "simple" } else { "fused" },
        "repeats": a.repeats.max(1),
        "seconds_median": med,
        "seconds_best": best,
        "bytes_per_param": bytes_per_param,
        "state_bytes_per_param": state_bytes,
        "gbps": gbps,
    });
    if !bw.is_empty() {
        let bw_med = median(&mut bw);
        out["pattern"] = json!(format!("{},{}", pattern.0, pattern.1));
        out["bandwidth_gbps"] = json!(bw_med);
        out["fraction_of_bandwidth"] = json!(gbps / bw_med);
    }
    println!("{out}");
    Ok(())
}
