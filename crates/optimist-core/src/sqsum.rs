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
    add_sq_rest(r, lanes);
}

/// [`add_sq_lanes`] with AVX-512 intrinsics when the CPU has AVX-512F
/// ([`x512::add_sq_lanes`]): the same values either way.
#[inline(always)]
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

/// [`add_sq`] of `a` into `la` and of `b` into `lb` (same length) in one
/// loop: two independent chains of additions, so about twice the rate of
/// two calls, with the same values.
#[inline(always)]
pub fn add_sq2(a: &[f32], b: &[f32], la: &mut [f64; LANES], lb: &mut [f64; LANES]) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::cpu::has_avx512() {
            // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (checked at run time).
            unsafe { x512::add_sq2_lanes(a, b, la, lb) };
            return;
        }
    }
    add_sq_lanes(a, la);
    add_sq_lanes(b, lb);
}

/// The row pass of a factored second moment: the squares of `g` into
/// `g_lanes` (as [`add_sq_lanes`]) and each also into its column (element
/// `i` into `cols[i]`), and the squares of `p` into `p_lanes`, in one pass.
/// `cols` and `p` must be at least as long as `g`.
#[inline(always)]
pub fn add_sq_row_lanes(
    g: &[f32],
    p: &[f32],
    cols: &mut [f64],
    g_lanes: &mut [f64; LANES],
    p_lanes: &mut [f64; LANES],
) {
    let n = g.len();
    let (gc, gr) = g.as_chunks::<LANES>();
    let (pc, pr) = p[..n].as_chunks::<LANES>();
    let (cc, cr) = cols[..n].as_chunks_mut::<LANES>();
    for ((g, p), col) in gc.iter().zip(pc).zip(cc) {
        for l in 0..LANES {
            let s = g[l] as f64 * g[l] as f64;
            g_lanes[l] += s;
            col[l] += s;
            p_lanes[l] += p[l] as f64 * p[l] as f64;
        }
    }
    add_sq_row_rest(gr, pr, cr, g_lanes, p_lanes);
}

/// [`add_sq_row_lanes`] with AVX-512 intrinsics when the CPU has AVX-512F
/// ([`x512::add_sq_row_lanes`]): the same values either way.
#[inline(always)]
pub fn add_sq_row(
    g: &[f32],
    p: &[f32],
    cols: &mut [f64],
    g_lanes: &mut [f64; LANES],
    p_lanes: &mut [f64; LANES],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::cpu::has_avx512() {
            // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (checked at run time).
            unsafe { x512::add_sq_row_lanes(g, p, cols, g_lanes, p_lanes) };
            return;
        }
    }
    add_sq_row_lanes(g, p, cols, g_lanes, p_lanes)
}

/// The rest after the whole chunks of [`add_sq_lanes`] (shorter than
/// [`LANES`]): element `l` into lane `l`.
#[inline(always)]
fn add_sq_rest(r: &[f32], lanes: &mut [f64; LANES]) {
    for (l, &x) in r.iter().enumerate() {
        lanes[l] += x as f64 * x as f64;
    }
}

/// The rest after the whole chunks of [`add_sq_row_lanes`] (shorter than
/// [`LANES`]): element `l` into lane `l` and into its column.
#[inline(always)]
fn add_sq_row_rest(
    gr: &[f32],
    pr: &[f32],
    cr: &mut [f64],
    g_lanes: &mut [f64; LANES],
    p_lanes: &mut [f64; LANES],
) {
    for (l, ((&g, &p), col)) in gr.iter().zip(pr).zip(cr).enumerate() {
        let s = g as f64 * g as f64;
        g_lanes[l] += s;
        *col += s;
        p_lanes[l] += p as f64 * p as f64;
    }
}

/// Per-block partial sums (pairs of sums), added in block order: the last
/// step of a blocked pass's sums, after [`lanes_sum`] per block.
pub fn add_pairs(partials: &[(f64, f64)]) -> (f64, f64) {
    partials.iter().fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y))
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
        super::add_sq_rest(r, lanes);
    }
    /// [`super::add_sq2`]: [`add_sq_lanes`] of `a` and of `b` in one loop,
    /// one `__m512d` for each (the same additions in the same order).
    ///
    /// # Safety
    ///
    /// The CPU must support AVX-512F, AVX2 and FMA
    /// ([`crate::cpu::has_avx512`]).
    #[inline]
    #[target_feature(enable = "avx2,fma,avx512f")]
    pub fn add_sq2_lanes(a: &[f32], b: &[f32], la: &mut [f64; LANES], lb: &mut [f64; LANES]) {
        let n = a.len().min(b.len());
        let (ca, ra) = a[..n].as_chunks::<LANES>();
        let (cb, rb) = b[..n].as_chunks::<LANES>();
        // SAFETY: unaligned loads and stores of 8 values within the lanes
        // and within each chunk of `a` and `b`.
        unsafe {
            let mut acc_a = _mm512_loadu_pd(la.as_ptr());
            let mut acc_b = _mm512_loadu_pd(lb.as_ptr());
            for (x, y) in ca.iter().zip(cb) {
                let va = _mm512_cvtps_pd(_mm256_loadu_ps(x.as_ptr()));
                let vb = _mm512_cvtps_pd(_mm256_loadu_ps(y.as_ptr()));
                acc_a = _mm512_add_pd(acc_a, _mm512_mul_pd(va, va));
                acc_b = _mm512_add_pd(acc_b, _mm512_mul_pd(vb, vb));
            }
            _mm512_storeu_pd(la.as_mut_ptr(), acc_a);
            _mm512_storeu_pd(lb.as_mut_ptr(), acc_b);
        }
        super::add_sq_rest(ra, la);
        super::add_sq_rest(rb, lb);
        // (a and b have the same length at every call site; any tail of the
        // longer one goes on in its own order)
        add_sq_lanes(&a[n..], la);
        add_sq_lanes(&b[n..], lb);
    }

    /// [`super::add_sq_row_lanes`] with one `__m512d` for each set of
    /// lanes and one for eight columns: the same additions in the same
    /// order, so the same values.
    ///
    /// # Safety
    ///
    /// The CPU must support AVX-512F, AVX2 and FMA
    /// ([`crate::cpu::has_avx512`]).
    #[inline]
    #[target_feature(enable = "avx2,fma,avx512f")]
    pub fn add_sq_row_lanes(
        g: &[f32],
        p: &[f32],
        cols: &mut [f64],
        g_lanes: &mut [f64; LANES],
        p_lanes: &mut [f64; LANES],
    ) {
        let n = g.len();
        let (gc, gr) = g.as_chunks::<LANES>();
        let (pc, pr) = p[..n].as_chunks::<LANES>();
        let (cc, cr) = cols[..n].as_chunks_mut::<LANES>();
        // SAFETY: unaligned loads and stores of 8 values within the lane
        // arrays and within each chunk of `g`, `p` and `cols`.
        unsafe {
            let mut gacc = _mm512_loadu_pd(g_lanes.as_ptr());
            let mut pacc = _mm512_loadu_pd(p_lanes.as_ptr());
            for ((g, p), col) in gc.iter().zip(pc).zip(cc) {
                let gv = _mm512_cvtps_pd(_mm256_loadu_ps(g.as_ptr()));
                let sq = _mm512_mul_pd(gv, gv);
                gacc = _mm512_add_pd(gacc, sq);
                let cv = _mm512_loadu_pd(col.as_ptr());
                _mm512_storeu_pd(col.as_mut_ptr(), _mm512_add_pd(cv, sq));
                let pv = _mm512_cvtps_pd(_mm256_loadu_ps(p.as_ptr()));
                pacc = _mm512_add_pd(pacc, _mm512_mul_pd(pv, pv));
            }
            _mm512_storeu_pd(g_lanes.as_mut_ptr(), gacc);
            _mm512_storeu_pd(p_lanes.as_mut_ptr(), pacc);
        }
        super::add_sq_row_rest(gr, pr, cr, g_lanes, p_lanes);
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
    fn avx512_sums_equal_portable_sums_skipped_without_avx512() {
        #[cfg(target_arch = "x86_64")]
        {
            if !crate::cpu::avx512_test_runs("avx512_sums_equal_portable_sums_skipped_without_avx512") {
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
                // Two sums in one loop: each as on its own.
                let ys: Vec<f32> = xs.iter().map(|x| x * -1.5 + 0.25).collect();
                let mut ya = [0.75f64; LANES];
                add_sq_lanes(&ys, &mut ya);
                let (mut x2, mut y2) = ([0.25f64; LANES], [0.75f64; LANES]);
                // SAFETY: the CPU supports AVX-512F (checked above).
                unsafe { x512::add_sq2_lanes(&xs, &ys, &mut x2, &mut y2) };
                assert_eq!(x2.map(f64::to_bits), a.map(f64::to_bits), "n = {n}");
                assert_eq!(y2.map(f64::to_bits), ya.map(f64::to_bits), "n = {n}");
                // The fused row pass: the same g lanes as above, the p lanes
                // as the sums of p², and each column gains its own g².
                let ps: Vec<f32> = xs.iter().rev().map(|x| x * 3.0).collect();
                let mut pa = [0.5f64; LANES];
                add_sq_lanes(&ps, &mut pa);
                let mut cols_a: Vec<f64> = (0..n + 3).map(|i| i as f64 * 0.5).collect();
                let mut cols_b = cols_a.clone();
                let (mut ga, mut gb) = ([0.25f64; LANES], [0.25f64; LANES]);
                let (mut pla, mut plb) = ([0.5f64; LANES], [0.5f64; LANES]);
                add_sq_row_lanes(&xs, &ps, &mut cols_a, &mut ga, &mut pla);
                // SAFETY: the CPU supports AVX-512F (checked above).
                unsafe { x512::add_sq_row_lanes(&xs, &ps, &mut cols_b, &mut gb, &mut plb) };
                for lanes in [ga, gb] {
                    assert_eq!(lanes.map(f64::to_bits), a.map(f64::to_bits), "n = {n}");
                }
                for lanes in [pla, plb] {
                    assert_eq!(lanes.map(f64::to_bits), pa.map(f64::to_bits), "n = {n}");
                }
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&cols_a), bits(&cols_b), "n = {n}");
                for (i, &x) in xs.iter().enumerate() {
                    assert_eq!(cols_a[i], i as f64 * 0.5 + x as f64 * x as f64);
                }
            }
        }
    }
}
