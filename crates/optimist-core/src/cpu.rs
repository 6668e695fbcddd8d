//! What the machine offers, detected once: CPU features for SIMD dispatch
//! and the process-wide default thread count. The bottom layer: it imports
//! nothing from the crate but the error type.

use std::sync::{Mutex, OnceLock};

use crate::error::{Error, Result};

/// Whether the CPU has AVX2 and FMA (checked once).
#[cfg(target_arch = "x86_64")]
pub fn has_avx2() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// Whether the CPU has AVX-512F besides AVX2 and FMA (checked once).
#[cfg(target_arch = "x86_64")]
pub fn has_avx512() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| has_avx2() && is_x86_feature_detected!("avx512f"))
}

/// For tests of a hand-written AVX-512 path: whether it can run on this
/// CPU. Where it cannot, the test is reported as skipped (on stderr, naming
/// `test`) and should return; with `CI=true` on a CPU that reports
/// AVX-512F, a skip is a failure (panics), so an equality test never passes
/// without comparing the AVX-512 loop.
#[doc(hidden)]
pub fn avx512_test_runs(test: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            return true;
        }
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !(ci && is_x86_feature_detected!("avx512f")),
            "CI=true: the CPU has AVX-512F but {test} skipped its AVX-512 path"
        );
    }
    eprintln!("SKIPPED {test}: this CPU has no AVX-512F (with AVX2 and FMA); its AVX-512 path was not compared");
    false
}

fn global_threads() -> &'static Mutex<usize> {
    static N: OnceLock<Mutex<usize>> = OnceLock::new();
    N.get_or_init(|| {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .filter(|&n| n > 0)
        };
        let env = var("OPTIMIST_NUM_THREADS").or_else(|| var("RAYON_NUM_THREADS"));
        let n = env.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        Mutex::new(n)
    })
}

/// The process-wide default thread count: [`set_num_threads`], else the
/// `OPTIMIST_NUM_THREADS` environment variable, else `RAYON_NUM_THREADS`,
/// else the number of CPUs.
pub fn default_threads() -> usize {
    global_threads().lock().map(|n| *n).unwrap_or(1).max(1)
}

/// Sets the process-wide default thread count (engines whose `threads` is 0).
pub fn set_num_threads(n: usize) -> Result<()> {
    if n == 0 || n > 4096 {
        return Err(Error::Input(format!("threads: {n} must be from 1 to 4096")));
    }
    if let Ok(mut g) = global_threads().lock() {
        *g = n;
    }
    Ok(())
}
