//! Sums of squares in interleaved f64 lanes, for the norms that the
//! blocked passes of LAMB and Adafactor accumulate.
//!
//! Element `i` of a run is added (squared in f64, the product rounded on
//! its own) into lane `i % LANES`; the lanes are added in lane order at the
//! end. The order is fixed, so the sums are the same whatever the thread
//! count or the instruction set: [`x512::add_sq_lanes`] (AVX-512, one
//! register holds the eight lanes) gives the same bits as the portable
//! [`add_sq_lanes`], which LLVM vectorizes poorly.

/// Interleaved f64 accumulators per sum.
pub const LANES: usize = 8;

/// Adds the squares of `xs` (in f64) into the lanes, element `i` into lane
/// `i % LANES`.
#[inline(always)]
pub fn add_sq_lanes(xs: &[f32], lanes: &mut [f64; LANES]) {
    let (c, r) = xs.as_chunks::<LANES>();
    for x in c {
        for l in 0..LANES {
            lanes[l] += x[l] as f64 * x[l] as f64;
        }
    }
    for (l, &x) in r.iter().enumerate() {
        lanes[l] += x as f64 * x as f64;
    }
}

/// [`add_sq_lanes`] with AVX-512 intrinsics when the CPU has AVX-512F
/// ([`x512::add_sq_lanes`]): the same values either way.
#[inline]
pub fn add_sq(xs: &[f32], lanes: &mut [f64; LANES]) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::cpu::has_avx512() {
            // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (checked at run time).
            unsafe { x512::add_sq_lanes(xs, lanes) };
            return;
        }
    }
    add_sq_lanes(xs, lanes)
}

/// Adds the lanes in order.
#[inline(always)]
pub fn lanes_sum(lanes: &[f64; LANES]) -> f64 {
    lanes.iter().fold(0.0, |a, &x| a + x)
}

/// AVX-512 versions (call them only when [`crate::cpu::has_avx512`]).
#[cfg(target_arch = "x86_64")]
pub mod x512 {
    use super::LANES;
    use std::arch::x86_64::*;

    /// [`super::add_sq_lanes`] with one `__m512d` holding the lanes: the
    /// same additions in the same order, so the same values.
    ///
    /// # Safety
    ///
    /// The CPU must support AVX-512F, AVX2 and FMA
    /// ([`crate::cpu::has_avx512`]).
    #[inline]
    #[target_feature(enable = "avx2,fma,avx512f")]
    pub fn add_sq_lanes(xs: &[f32], lanes: &mut [f64; LANES]) {
        let (c, r) = xs.as_chunks::<LANES>();
        // SAFETY: unaligned loads and stores of 8 values within `lanes`
        // and within each chunk of `xs`.
        unsafe {
            let mut acc = _mm512_loadu_pd(lanes.as_ptr());
            for x in c {
                let v = _mm512_cvtps_pd(_mm256_loadu_ps(x.as_ptr()));
                acc = _mm512_add_pd(acc, _mm512_mul_pd(v, v));
            }
            _mm512_storeu_pd(lanes.as_mut_ptr(), acc);
        }
        for (l, &x) in r.iter().enumerate() {
            lanes[l] += x as f64 * x as f64;
        }
    }
}

/// Deterministic test values of both signs over `decades` decades of
/// magnitude (from 10^-(decades/2)).
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u64, decades: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let m = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            m * 10f32.powi(((s >> 8) % decades) as i32 - (decades / 2) as i32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX-512 sums equal the portable ones bit for bit (runs of every
    /// length up to 40, values over many magnitudes).
    #[test]
    fn avx512_sums_equal_portable_sums() {
        #[cfg(target_arch = "x86_64")]
        {
            if !crate::cpu::has_avx512() {
                return;
            }
            let mut s = 0x9e3779b97f4a7c15u64;
            for n in 0..=40 {
                let xs: Vec<f32> = (0..n)
                    .map(|_| {
                        s = s
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let m = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                        m * 10f32.powi(((s >> 8) % 12) as i32 - 6)
                    })
                    .collect();
                let mut a = [0.25f64; LANES];
                let mut b = a;
                add_sq_lanes(&xs, &mut a);
                // SAFETY: the CPU supports AVX-512F (checked above).
                unsafe { x512::add_sq_lanes(&xs, &mut b) };
                assert_eq!(a.map(f64::to_bits), b.map(f64::to_bits), "n = {n}");
            }
        }
    }
}
