//! Packed AVX-512 GEMM kernels: f32 products with `vfmadd` and products of
//! bfloat16-rounded inputs with `vdpbf16ps` (f32 accumulation).
//!
//! The layout follows the usual packed design (Goto/BLIS): `B` is packed
//! once per product into panels of [`NR`] columns, each output row block's
//! slice of `A` into panels of [`MR`] rows, and a register-resident
//! `MR x NR` micro-kernel runs over chunks of [`KC`] steps of the inner
//! dimension, adding `alpha` times each chunk's sum into `C`. Every output
//! element is therefore the same sequence of operations whatever the
//! thread count or the row block it belongs to; only the CPU's instruction
//! set (AVX-512 here, `matrixmultiply` elsewhere) changes the rounding.
//!
//! In the bf16 product each pair of consecutive inner-dimension values is
//! packed into one 32-bit lane (low half first), as `vdpbf16ps` expects;
//! an odd inner dimension is padded with a zero.

use super::{bf16_bits, PackedBlock, Product, View};
use std::arch::x86_64::*;

/// Rows of the micro-kernel's output tile.
pub(super) const MR: usize = 8;
/// Columns of the micro-kernel's output tile (two 16-lane registers).
pub(super) const NR: usize = 32;
/// Inner-dimension steps per chunk (f32 values, or bf16 pairs).
const KC: usize = 256;

/// The element type of the inner product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// f32 inputs, f32 fused multiply-add.
    F32,
    /// Inputs rounded to bfloat16 (nearest, ties to even), f32 accumulation.
    Bf16,
}

impl Kind {
    /// Values of the inner dimension per packed step: one f32, or a pair
    /// of bf16 values.
    fn per_step(self) -> usize {
        match self {
            Kind::F32 => 1,
            Kind::Bf16 => 2,
        }
    }

    /// Inner-dimension steps after packing: `k`, or `ceil(k / 2)` pairs.
    fn steps(self, k: usize) -> usize {
        k.div_ceil(self.per_step())
    }
}

/// Whether this CPU runs the kernels of `kind`.
pub(super) fn available(kind: Kind) -> bool {
    match kind {
        Kind::F32 => std::arch::is_x86_feature_detected!("avx512f"),
        Kind::Bf16 => {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bf16")
        }
    }
}

/// Packs rows `r0..r0 + WIDTH * panels` of `v` (zero beyond its rows) into
/// `out` (zeroed by the caller): panel after panel, each `steps x WIDTH`
/// with the `WIDTH` rows' values for one step together. A step is one
/// column of `v` (f32) or two (a bf16 pair, low half first; a missing
/// last column is zero). The loops follow whichever index of `v` is
/// contiguous.
pub(super) fn pack<const WIDTH: usize>(
    kind: Kind,
    v: &View<'_>,
    r0: usize,
    steps: usize,
    out: &mut [u32],
) {
    pack_with::<WIDTH>(kind, v, r0, steps, out, true)
}

/// [`pack`], with the vectorized full panels ([`pack_full`]) or without.
fn pack_with<const WIDTH: usize>(
    kind: Kind,
    v: &View<'_>,
    r0: usize,
    steps: usize,
    out: &mut [u32],
    fast: bool,
) {
    let (rs, cs) = (v.row_stride, v.col_stride);
    let cols = v.cols;
    for (p, panel) in out.chunks_mut(steps * WIDTH).enumerate() {
        let base = r0 + p * WIDTH;
        let width = WIDTH.min(v.rows.saturating_sub(base));
        // SAFETY: `available` (checked by every caller) implies AVX-512F,
        // hence AVX2; `pack_full` checks its own bounds.
        if fast && width == WIDTH && unsafe { pack_full::<WIDTH>(kind, v, base, steps, panel) } {
            continue;
        }
        match kind {
            Kind::F32 if cs == 1 || width == 0 => {
                for w in 0..width {
                    let row = &v.data[(base + w) * rs..][..cols];
                    for (s, &x) in row.iter().enumerate() {
                        panel[s * WIDTH + w] = x.to_bits();
                    }
                }
            }
            Kind::F32 => {
                for (s, dst) in panel.chunks_exact_mut(WIDTH).enumerate() {
                    let at = base * rs + s * cs;
                    for (w, d) in dst.iter_mut().enumerate().take(width) {
                        *d = v.data[at + w * rs].to_bits();
                    }
                }
            }
            Kind::Bf16 => {
                let pair = |w: usize, s: usize| {
                    let (at, l) = ((base + w) * rs, 2 * s);
                    let lo = bf16_bits(v.data[at + l * cs]);
                    let hi = if l + 1 < cols {
                        bf16_bits(v.data[at + (l + 1) * cs])
                    } else {
                        0
                    };
                    lo | (hi << 16)
                };
                if cs == 1 {
                    for w in 0..width {
                        for s in 0..steps {
                            panel[s * WIDTH + w] = pair(w, s);
                        }
                    }
                } else {
                    for (s, dst) in panel.chunks_exact_mut(WIDTH).enumerate() {
                        for (w, d) in dst.iter_mut().enumerate().take(width) {
                            *d = pair(w, s);
                        }
                    }
                }
            }
        }
    }
}

/// The high half of `x` rounded to bfloat16 as [`bf16_bits`] does (low
/// half zero), eight lanes at a time.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn round_hi(x: __m256i) -> __m256i {
    let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(
        _mm256_castsi256_ps(x),
        _mm256_castsi256_ps(x),
    ));
    let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(x), _mm256_set1_epi32(1));
    let rounded = _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb);
    let quiet = _mm256_or_si256(x, _mm256_set1_epi32(0x0040_0000));
    let hi = _mm256_blendv_epi8(rounded, quiet, nan);
    _mm256_and_si256(hi, _mm256_set1_epi32(0xffff_0000u32 as i32))
}

/// One bf16 pair per lane from the f32 lanes `lo` and `hi`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn pair8(lo: __m256i, hi: __m256i) -> __m256i {
    _mm256_or_si256(_mm256_srli_epi32::<16>(round_hi(lo)), round_hi(hi))
}

/// Transposes the 8x8 block of 32-bit values in `r` (row `i` in `r[i]`).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

/// Copies the transpose of the 8x8 block at rows `8 bj..`, columns `8 bi..`
/// of the row-major `n x n` matrix at `c` into rows `8 bi..`, columns
/// `8 bj..` (a block of the lower triangle from the upper one).
///
/// # Safety
/// Both blocks must lie inside the `n * n` elements at `c`, must not
/// overlap (`bi != bj`), and no other thread may write the source block or
/// access the destination block meanwhile. The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn mirror_block8(c: *mut f32, n: usize, bi: usize, bj: usize) {
    let src = c.add(8 * bj * n + 8 * bi);
    let mut r = [_mm256_setzero_ps(); 8];
    for (k, rk) in r.iter_mut().enumerate() {
        *rk = _mm256_loadu_ps(src.add(k * n));
    }
    let t = transpose8(r);
    let dst = c.add(8 * bi * n + 8 * bj);
    for (k, tk) in t.iter().enumerate() {
        _mm256_storeu_ps(dst.add(k * n), *tk);
    }
}

/// [`pack`] of one full panel (rows `base..base + WIDTH` all inside `v`)
/// with eight-lane loads: straight copies when rows are adjacent in memory,
/// 8x8 register transposes when columns are. The same values as the scalar
/// loops; steps left over after the last group of eight go through them.
/// Returns false, having written nothing, for other layouts.
#[target_feature(enable = "avx2")]
unsafe fn pack_full<const WIDTH: usize>(
    kind: Kind,
    v: &View<'_>,
    base: usize,
    steps: usize,
    panel: &mut [u32],
) -> bool {
    let (rs, cs, cols) = (v.row_stride, v.col_stride, v.cols);
    if !WIDTH.is_multiple_of(8) || cols == 0 || panel.len() < steps * WIDTH || !(rs == 1 || cs == 1)
    {
        return false;
    }
    // Every element read below is (base + w, l) with w < WIDTH, l < cols:
    // inside `v`, which is bounds-checked, as the caller's full panel is.
    let ptr = v.data.as_ptr();
    let out = panel.as_mut_ptr() as *mut __m256;
    if rs == 1 {
        // Rows adjacent: the WIDTH rows of one column are contiguous.
        let load =
            |row: usize, l: usize| _mm256_loadu_si256(ptr.add(row + l * cs) as *const __m256i);
        for s in 0..steps {
            for g in 0..WIDTH / 8 {
                let row = base + 8 * g;
                let x = match kind {
                    Kind::F32 => load(row, s),
                    Kind::Bf16 => {
                        let hi = if 2 * s + 1 < cols {
                            load(row, 2 * s + 1)
                        } else {
                            _mm256_setzero_si256()
                        };
                        pair8(load(row, 2 * s), hi)
                    }
                };
                _mm256_storeu_ps(
                    out.add((s * WIDTH) / 8 + g) as *mut f32,
                    _mm256_castsi256_ps(x),
                );
            }
        }
        return true;
    }
    // Columns adjacent: eight steps of eight rows, transposed in registers.
    let full = match kind {
        Kind::F32 => cols / 8,
        Kind::Bf16 => cols / 16,
    } * 8;
    for s0 in (0..full).step_by(8) {
        for g in 0..WIDTH / 8 {
            let mut r = [_mm256_setzero_ps(); 8];
            for (w, rw) in r.iter_mut().enumerate() {
                let at = ptr.add((base + 8 * g + w) * rs);
                *rw = match kind {
                    Kind::F32 => _mm256_loadu_ps(at.add(s0)),
                    Kind::Bf16 => {
                        // 16 values = 8 pairs, the high halves of the
                        // rounded values packed in order.
                        let a = _mm256_srli_epi32::<16>(round_hi(_mm256_loadu_si256(
                            at.add(2 * s0) as *const __m256i,
                        )));
                        let b = _mm256_srli_epi32::<16>(round_hi(_mm256_loadu_si256(
                            at.add(2 * s0 + 8) as *const __m256i,
                        )));
                        let p =
                            _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(a, b));
                        _mm256_castsi256_ps(p)
                    }
                };
            }
            let t = transpose8(r);
            for (k, col) in t.iter().enumerate() {
                _mm256_storeu_ps(out.add(((s0 + k) * WIDTH) / 8 + g) as *mut f32, *col);
            }
        }
    }
    // Leftover steps, one value at a time.
    for w in 0..WIDTH {
        let at = (base + w) * rs;
        for s in full..steps {
            panel[s * WIDTH + w] = match kind {
                Kind::F32 => v.data[at + s].to_bits(),
                Kind::Bf16 => {
                    let lo = bf16_bits(v.data[at + 2 * s]);
                    let hi = if 2 * s + 1 < cols {
                        bf16_bits(v.data[at + 2 * s + 1])
                    } else {
                        0
                    };
                    lo | (hi << 16)
                }
            };
        }
    }
    true
}

/// `B` (`k x n`) packed into panels of [`NR`] columns for [`Kind`]:
/// `ceil(n / NR)` panels of `steps(k) x NR` values.
pub(super) fn pack_b(kind: Kind, b: &View<'_>, out: &mut Vec<u32>) {
    let steps = kind.steps(b.rows);
    out.clear();
    out.resize(b.cols.div_ceil(NR) * steps * NR, 0);
    pack_panels(kind, b, steps * NR, out);
}

/// Panels of `B` packed by one task of [`pack_panels`].
const PANEL_GROUP: usize = 8;
/// Steps packed per pass over a group's panels.
const STEP_BLOCK: usize = 64;

/// `B` (`k x n`) packed into `out`, `ceil(n / NR)` panels of `stride`
/// values each: the first `steps(k) x NR` of each as [`pack`] packs them,
/// the rest left as it is (the caller zeroes `out`). The panels are packed
/// in groups of [`PANEL_GROUP`] (in parallel on the current thread pool
/// when called from one) and each group [`STEP_BLOCK`] steps at a time
/// across its panels, so that the rows of `B` a pass reads stay in the
/// cache for all the group's panels instead of being read again from
/// memory for each panel. Same values as packing panel by panel.
pub(super) fn pack_panels(kind: Kind, b: &View<'_>, stride: usize, out: &mut [u32]) {
    let steps = kind.steps(b.rows);
    let per_step = kind.per_step();
    debug_assert!(stride >= steps * NR && out.len() >= b.cols.div_ceil(NR) * stride);
    let bt = b.t();
    let group = |(g, chunk): (usize, &mut [u32])| {
        for s0 in (0..steps).step_by(STEP_BLOCK) {
            let sc = STEP_BLOCK.min(steps - s0);
            let sub = bt.columns(per_step * s0, per_step * sc);
            for (q, panel) in chunk.chunks_mut(stride).enumerate() {
                let r0 = (g * PANEL_GROUP + q) * NR;
                pack::<NR>(kind, &sub, r0, sc, &mut panel[s0 * NR..(s0 + sc) * NR]);
            }
        }
    };
    let len = PANEL_GROUP * stride;
    if rayon::current_thread_index().is_some() {
        use rayon::prelude::*;
        out.par_chunks_mut(len).enumerate().for_each(group);
    } else {
        out.chunks_mut(len).enumerate().for_each(group);
    }
}

/// Writes `alpha * acc + beta * C` (or `alpha * acc` when `beta` is
/// `None`) into an `MR x NR` tile of `C` at `c` with row stride `ldc`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store_full(
    acc: &[[__m512; 2]; MR],
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: Option<f32>,
) {
    let va = _mm512_set1_ps(alpha);
    for (i, row) in acc.iter().enumerate() {
        for (h, v) in row.iter().enumerate() {
            let p = c.add(i * ldc + 16 * h);
            let r = match beta {
                None => _mm512_mul_ps(va, *v),
                Some(bt) => _mm512_fmadd_ps(
                    va,
                    *v,
                    _mm512_mul_ps(_mm512_set1_ps(bt), _mm512_loadu_ps(p)),
                ),
            };
            _mm512_storeu_ps(p, r);
        }
    }
}

/// The same as [`store_full`] for the `mr x nr` corner of a tile (the
/// same operations per element).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store_part(
    acc: &[[__m512; 2]; MR],
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
    alpha: f32,
    beta: Option<f32>,
) {
    let mut tile = [[0.0f32; NR]; MR];
    for (i, row) in acc.iter().enumerate() {
        _mm512_storeu_ps(tile[i].as_mut_ptr(), row[0]);
        _mm512_storeu_ps(tile[i].as_mut_ptr().add(16), row[1]);
    }
    for (i, row) in tile.iter().enumerate().take(mr) {
        for (j, &v) in row.iter().enumerate().take(nr) {
            let p = c.add(i * ldc + j);
            *p = match beta {
                None => alpha * v,
                Some(bt) => alpha.mul_add(v, bt * *p),
            };
        }
    }
}

/// The f32 micro-kernel: the `MR x NR` sum over `steps` packed steps.
#[target_feature(enable = "avx512f")]
unsafe fn kernel_f32(steps: usize, a: *const u32, b: *const u32) -> [[__m512; 2]; MR] {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let (mut a, mut b) = (a as *const f32, b as *const f32);
    for _ in 0..steps {
        let b0 = _mm512_loadu_ps(b);
        let b1 = _mm512_loadu_ps(b.add(16));
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = _mm512_set1_ps(*a.add(i));
            row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
            row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
        }
        a = a.add(MR);
        b = b.add(NR);
    }
    acc
}

/// The bf16 micro-kernel: the `MR x NR` sum over `steps` packed pairs.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel_bf16(steps: usize, a: *const u32, b: *const u32) -> [[__m512; 2]; MR] {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..steps {
        let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b as *const __m512i));
        let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(16) as *const __m512i));
        for (i, row) in acc.iter_mut().enumerate() {
            let ai: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add(i) as i32));
            row[0] = _mm512_dpbf16_ps(row[0], ai, b0);
            row[1] = _mm512_dpbf16_ps(row[1], ai, b1);
        }
        a = a.add(MR);
        b = b.add(NR);
    }
    acc
}

/// One row block of `product`: rows `i0..i0 + mb` of `A` (packed here
/// into `apack`) times the packed `B`, written to `c` (this block's rows,
/// row stride `n`) at columns `j0..n`, `j0` the product's first column of
/// the block (a multiple of [`NR`]).
pub(super) fn block(
    kind: Kind,
    product: &Product<'_>,
    i0: usize,
    bpack: &[u32],
    c: &mut [f32],
    apack: &mut Vec<u32>,
) {
    let (a, n) = (&product.a, product.b.cols);
    let k = a.cols;
    let mb = c.len() / n;
    let steps = kind.steps(k);
    let apanels = mb.div_ceil(MR);
    apack.clear();
    apack.resize(apanels * steps * MR, 0);
    pack::<MR>(kind, a, i0, steps, apack);
    let blk = PackedBlock {
        alpha: product.alpha,
        apack,
        steps,
        mb,
        bpack,
        n,
        j0: product.first_column(i0),
        beta: product.beta,
    };
    // SAFETY: `available(kind)` was checked by the caller before any call.
    unsafe { run_block(kind, blk, c) }
}

/// Asks for part `part` of `parts` of `data` to be fetched into the L2
/// cache (`prefetcht1`, one per 64-byte line); the parts together cover
/// `data`.
#[inline(always)]
fn prefetch_part_l2(data: &[u32], part: usize, parts: usize) {
    const LINE: usize = 16;
    let per = data.len().div_ceil(parts.max(1)).div_ceil(LINE) * LINE;
    let start = (part * per).min(data.len());
    let end = (start + per).min(data.len());
    for line in data[start..end].chunks(LINE) {
        // SAFETY: a prefetch reads nothing architecturally and cannot
        // fault; the address lies inside `data`.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(line.as_ptr().cast()) };
    }
}

/// The loops of [`block`] over chunks and panels.
#[target_feature(enable = "avx512f")]
unsafe fn run_block(kind: Kind, blk: PackedBlock<'_>, c: &mut [f32]) {
    let PackedBlock {
        alpha,
        apack,
        steps,
        mb,
        bpack,
        n,
        j0,
        beta,
    } = blk;
    let apanels = mb.div_ceil(MR);
    let bpanels = n.div_ceil(NR);
    let cp = c.as_mut_ptr();
    for s0 in (0..steps).step_by(KC) {
        let sc = KC.min(steps - s0);
        let beta_eff = if s0 > 0 {
            Some(1.0)
        } else if beta == 0.0 {
            None
        } else {
            Some(beta)
        };
        for jp in j0 / NR..bpanels {
            let bp = bpack[jp * steps * NR + s0 * NR..].as_ptr();
            let nr = NR.min(n - jp * NR);
            // The next panel's chunk, fetched into L2 a part per call
            // while this panel's calls run: its first call then finds it
            // there instead of in L3 or memory (2-5% faster f32 products).
            let next = (jp + 1 < bpanels).then(|| {
                let at = (jp + 1) * steps * NR + s0 * NR;
                &bpack[at..at + sc * NR]
            });
            for ip in 0..apanels {
                if let Some(next) = next {
                    prefetch_part_l2(next, ip, apanels);
                }
                let ap = apack[ip * steps * MR + s0 * MR..].as_ptr();
                let mr = MR.min(mb - ip * MR);
                // SAFETY: the kernels read `sc` steps of one packed panel
                // of A (MR values per step) and of B (NR per step), inside
                // the buffers sized above; the tile written is rows
                // ip*MR..+mr, columns jp*NR..+nr of this block of `c`,
                // inside it (mr <= mb - ip*MR, nr <= n - jp*NR). The CPU
                // features were checked by `available` before any call.
                {
                    let acc = match kind {
                        Kind::F32 => kernel_f32(sc, ap, bp),
                        Kind::Bf16 => kernel_bf16(sc, ap, bp),
                    };
                    let ct = cp.add(ip * MR * n + jp * NR);
                    if mr == MR && nr == NR {
                        store_full(&acc, ct, n, alpha, beta_eff);
                    } else {
                        store_part(&acc, ct, n, mr, nr, alpha, beta_eff);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        // Values with full mantissas, both signs, a few exact ties for the
        // bf16 rounding, a NaN and infinities.
        let mut x = seed.wrapping_mul(2654435761).wrapping_add(12345);
        let mut out: Vec<f32> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32 - 0.5) * 8.0
            })
            .collect();
        for (i, v) in out.iter_mut().enumerate().step_by(7) {
            *v = f32::from_bits((v.to_bits() & 0xffff_0000) | 0x8000 | ((i as u32 & 1) << 16));
        }
        if len > 20 {
            out[3] = f32::NAN;
            out[11] = f32::INFINITY;
            out[19] = f32::NEG_INFINITY;
        }
        out
    }

    /// Panels of `WIDTH` rows of `view` packed with and without the
    /// vectorized full panels are the same.
    fn same_packing<const WIDTH: usize>(kind: Kind, view: &View<'_>) {
        let steps = kind.steps(view.cols);
        let len = view.rows.div_ceil(WIDTH) * steps * WIDTH;
        let (mut a, mut b) = (vec![0u32; len], vec![0u32; len]);
        pack_with::<WIDTH>(kind, view, 0, steps, &mut a, true);
        pack_with::<WIDTH>(kind, view, 0, steps, &mut b, false);
        assert_eq!(a, b, "{kind:?} {}x{} width {WIDTH}", view.rows, view.cols);
    }

    #[test]
    fn vectorized_packing_equals_the_scalar_loops_skipped_without_avx512() {
        if !crate::cpu::avx512_test_runs("vectorized_packing_equals_the_scalar_loops_skipped_without_avx512") || !available(Kind::F32) {
            return;
        }
        for kind in [Kind::F32, Kind::Bf16] {
            if !available(kind) {
                continue;
            }
            for &(rows, cols) in &[(40usize, 37usize), (64, 64), (33, 17), (96, 130), (8, 1)] {
                let d = data(rows * cols, (rows * 31 + cols) as u32);
                let v = View::new(&d, rows, cols);
                for view in [v, v.t()] {
                    same_packing::<8>(kind, &view);
                    same_packing::<32>(kind, &view);
                }
            }
        }
    }

    #[test]
    fn bf16_rounding_is_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3f80);
        // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: to even (1).
        assert_eq!(bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80);
        // 1 + 3 * 2^-8 ties between odd and even: up to even.
        assert_eq!(bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(bf16_bits(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert!(f32::from_bits(bf16_bits(f32::NAN) << 16).is_nan());
        assert_eq!(bf16_bits(f32::INFINITY), 0x7f80);
    }
}
