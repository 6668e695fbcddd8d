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
