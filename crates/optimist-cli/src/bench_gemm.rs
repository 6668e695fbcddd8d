//! `optimist bench gemm`: times the matrix products of the matrix
//! optimizers (`optimist_core::gemm::gemm_with`, the GEMM behind Muon's
//! Newton-Schulz iteration) per shape, input precision and thread count,
//! and prints one JSON line per measurement (median and best seconds,
//! GFLOP/s counting `2 m k n` flops, the kernel the dispatch chose).
//! `tools/bench_gemm.py` runs it next to `torch.matmul` on the same shapes.

use std::time::Instant;

use clap::Args;
use optimist_core::exec::run_on;
use optimist_core::gemm::{gemm_with, kernel_name, Precision, View};
use optimist_core::{Error, Result};
use serde_json::json;

#[derive(Args)]
pub struct GemmArgs {
    /// Products `MxKxN` (A is M x K, B is K x N), comma-separated. The
    /// defaults are Newton-Schulz's shapes for 1024x1024 and 4096x1024
    /// matrices: square, and a tall 4096 x 1024 times 1024 x 1024.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1024x1024x1024,4096x1024x1024"
    )]
    shapes: Vec<String>,
    /// Input precisions: f32 and/or bf16 (inputs rounded to bfloat16, f32 sums).
    #[arg(long, value_delimiter = ',', default_value = "f32,bf16")]
    precisions: Vec<String>,
    /// Thread counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Timed products per measurement; the median is reported.
    #[arg(long, default_value_t = 10)]
    repeats: usize,
    /// Untimed products first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
}

fn parse_shape(s: &str) -> Result<(usize, usize, usize)> {
    let bad = || Error::Input(format!("--shapes: {s:?} is not MxKxN with positive sizes"));
    let dims: Vec<usize> = s
        .split('x')
        .map(|d| d.trim().parse::<usize>().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    match dims[..] {
        [m, k, n] if m > 0 && k > 0 && n > 0 => {
            // Keep every buffer well inside memory and usize.
            let limit = 1usize << 28;
            if m.checked_mul(k).is_none_or(|x| x > limit)
                || k.checked_mul(n).is_none_or(|x| x > limit)
                || m.checked_mul(n).is_none_or(|x| x > limit)
            {
                return Err(Error::Input(format!(
                    "--shapes: {s:?} needs a matrix over 2^28 values"
                )));
            }
            Ok((m, k, n))
        }
        _ => Err(bad()),
    }
}

fn parse_precision(s: &str) -> Result<Precision> {
    match s.trim() {
        "f32" | "float32" => Ok(Precision::F32),
        "bf16" | "bfloat16" => Ok(Precision::Bf16),
        other => Err(Error::Input(format!(
            "--precisions: {other:?} is not f32 or bf16"
        ))),
    }
}

/// A deterministic pseudo-random fill in [-1, 1).
fn fill(v: &mut [f32], seed: u64) {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for e in v.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *e = (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn run(a: &GemmArgs) -> Result<()> {
    let shapes: Vec<_> = a
        .shapes
        .iter()
        .map(|s| parse_shape(s))
        .collect::<Result<_>>()?;
    let precs: Vec<_> = a
        .precisions
        .iter()
        .map(|s| parse_precision(s))
        .collect::<Result<_>>()?;
    if let Some(t) = a.threads.iter().find(|&&t| t == 0 || t > 4096) {
        return Err(Error::Input(format!(
            "--threads: {t} must be from 1 to 4096"
        )));
    }
    let repeats = a.repeats.max(1);
    for &(m, k, n) in &shapes {
        let mut am = vec![0f32; m * k];
        let mut bm = vec![0f32; k * n];
        fill(&mut am, 1);
        fill(&mut bm, 2);
        // Scale so that the products stay O(1).
        let s = 1.0 / (k as f32).sqrt();
        bm.iter_mut().for_each(|x| *x *= s);
        let mut c = vec![0f32; m * n];
        let (av, bv) = (View::new(&am, m, k), View::new(&bm, k, n));
        for &prec in &precs {
            for &threads in &a.threads {
                let times = run_on(threads, || -> Result<Vec<f64>> {
                    for _ in 0..a.warmup {
                        gemm_with(prec, 1.0, av, bv, 0.0, &mut c, false)?;
                    }
                    let mut t = Vec::with_capacity(repeats);
                    for _ in 0..repeats {
                        let t0 = Instant::now();
                        gemm_with(prec, 1.0, av, bv, 0.0, &mut c, false)?;
                        t.push(t0.elapsed().as_secs_f64());
                    }
                    Ok(t)
                })??;
                let mut times = times;
                let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
                let med = median(&mut times);
                let flops = 2.0 * m as f64 * k as f64 * n as f64;
                println!(
                    "{}",
                    json!({
                        "bench": "gemm",
                        "m": m, "k": k, "n": n,
                        "precision": match prec { Precision::F32 => "f32", Precision::Bf16 => "bf16" },
                        "threads": threads,
                        "kernel": kernel_name(prec),
                        "repeats": repeats,
                        "seconds_median": med,
                        "seconds_best": best,
                        "gflops": flops / med / 1e9,
                        "gflops_best": flops / best / 1e9,
                    })
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_precisions_parse_or_name_the_bad_input() {
        assert_eq!(parse_shape("4096x1024x1024").unwrap(), (4096, 1024, 1024));
        for bad in ["1024x1024", "0x1x1", "ax1x1", "1x1x1x1", "100000x100000x1"] {
            let e = parse_shape(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
        assert_eq!(parse_precision("bf16").unwrap(), Precision::Bf16);
        assert!(parse_precision("f16")
            .unwrap_err()
            .to_string()
            .contains("f16"));
    }
}
