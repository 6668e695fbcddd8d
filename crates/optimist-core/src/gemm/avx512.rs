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

use super::{bf16_bits, needed_chunks, PackedBlock, Product, Triangle, View};
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

/// [`pack`], with the vectorized full panels ([`pack_full_f32`],
/// [`pack_full_bf16`]) or without.
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
        // hence AVX2 for `pack_full_f32`; `pack_full_bf16` runs only where
        // `convert_available` found its instructions. Both check their
        // own bounds.
        if fast && width == WIDTH {
            let done = match kind {
                Kind::F32 => unsafe { pack_full_f32::<WIDTH>(v, base, steps, panel) },
                Kind::Bf16 if convert_available() => unsafe {
                    pack_full_bf16::<WIDTH>(v, base, steps, panel)
                },
                Kind::Bf16 => false,
            };
            if done {
                continue;
            }
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

/// Whether the CPU converts f32 to bf16 in hardware (`vcvtneps2bf16`,
/// AVX512-BF16) and has the AVX-512BW permutes [`pack_full_bf16`] uses.
pub(super) fn convert_available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512bf16")
}

/// The bits of 16 lanes rounded as [`bf16_bits`] rounds them, in the low
/// halves of the 32-bit lanes, by integer arithmetic.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn bf16_lanes(x: __m512) -> __m512i {
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
    let b = _mm512_castps_si512(x);
    let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
    let rounded = _mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7fff)), lsb);
    let quiet = _mm512_or_si512(b, _mm512_set1_epi32(0x0040_0000));
    _mm512_srli_epi32::<16>(_mm512_mask_blend_epi32(nan, rounded, quiet))
}

/// Lanes of `x` that hold subnormal numbers (zero exponent, non-zero
/// fraction).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn subnormal(x: __m512) -> __mmask16 {
    let b = _mm512_castps_si512(x);
    _mm512_mask_test_epi32_mask(
        _mm512_testn_epi32_mask(b, _mm512_set1_epi32(0x7f80_0000)),
        b,
        _mm512_set1_epi32(0x007f_ffff),
    )
}

/// The 16 lanes of `x` rounded to bf16 as [`bf16_bits`] rounds them, in
/// order (8 pairs). `vcvtneps2bf16` rounds to nearest even and quiets NaNs
/// as `bf16_bits` does, but reads subnormal inputs as zero; a vector with
/// one goes through [`bf16_lanes`] instead.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
pub(super) unsafe fn bf16_16(x: __m512) -> __m256i {
    if subnormal(x) == 0 {
        std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(x))
    } else {
        _mm512_cvtepi32_epi16(bf16_lanes(x))
    }
}

/// 16 bf16 pairs from the lanes of `lo` and `hi`: lane `i` holds `lo[i]`
/// rounded in its low half and `hi[i]` rounded in its high half, as
/// [`bf16_bits`] rounds them (see [`bf16_16`] for the subnormals).
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[inline]
unsafe fn bf16_pairs16(lo: __m512, hi: __m512) -> __m512i {
    if subnormal(lo) | subnormal(hi) == 0 {
        // Halves 0..16 are lo's, 16..32 hi's; interleave them.
        let both: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
        let idx = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20,
            4, 19, 3, 18, 2, 17, 1, 16, 0,
        );
        _mm512_permutexvar_epi16(idx, both)
    } else {
        _mm512_or_si512(bf16_lanes(lo), _mm512_slli_epi32::<16>(bf16_lanes(hi)))
    }
}

/// Steps `0..full` (a multiple of 8) of a panel of `WIDTH` rows at `out`
/// (`WIDTH` values per step), from a source whose columns are adjacent:
/// `load(w, s0)` gives row `w`'s eight packed steps from `s0` on, and
/// each 8 x 8 block is transposed in registers.
///
/// # Safety
/// The CPU must have AVX2, `out` must hold `full * WIDTH` values and
/// `load` must be safe to call for every `w < WIDTH`, `s0 < full`.
#[inline(always)]
unsafe fn transpose_steps<const WIDTH: usize>(
    full: usize,
    out: *mut f32,
    load: impl Fn(usize, usize) -> __m256,
) {
    for s0 in (0..full).step_by(8) {
        for g in 0..WIDTH / 8 {
            let mut r = [_mm256_setzero_ps(); 8];
            for (w, rw) in r.iter_mut().enumerate() {
                *rw = load(8 * g + w, s0);
            }
            let t = transpose8(r);
            for (k, col) in t.iter().enumerate() {
                _mm256_storeu_ps(out.add((s0 + k) * WIDTH + 8 * g), *col);
            }
        }
    }
}

/// Whether the vector loops pack a full panel of `WIDTH` rows of `v`
/// (`steps` packed steps, all of `v`'s columns, into `panel`): rows or
/// columns adjacent in memory, and `WIDTH` a multiple of 8.
fn vector_packable<const WIDTH: usize>(
    kind: Kind,
    v: &View<'_>,
    steps: usize,
    panel: &[u32],
) -> bool {
    WIDTH.is_multiple_of(8)
        && v.cols > 0
        && steps == kind.steps(v.cols)
        && panel.len() >= steps * WIDTH
        && (v.row_stride == 1 || v.col_stride == 1)
}

/// [`pack`] of one full panel for [`Kind::Bf16`], with the f32-to-bf16
/// conversion in hardware and 16-lane loads (8-row transposes when
/// columns are adjacent): the same values (every value rounded as
/// [`bf16_bits`] rounds it). Returns false, having written nothing, for
/// layouts other than adjacent rows or adjacent columns.
///
/// # Safety
/// The CPU must have AVX-512F, AVX-512BW and AVX512-BF16
/// ([`convert_available`]).
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,avx2")]
unsafe fn pack_full_bf16<const WIDTH: usize>(
    v: &View<'_>,
    base: usize,
    steps: usize,
    panel: &mut [u32],
) -> bool {
    let (rs, cs, cols) = (v.row_stride, v.col_stride, v.cols);
    if !vector_packable::<WIDTH>(Kind::Bf16, v, steps, panel) {
        return false;
    }
    // Every element read below is (base + w, l) with w < WIDTH, l < cols
    // (2 s + 1 < cols is checked, 2 s < cols holds for s < steps): inside
    // `v`, which is bounds-checked, as the caller's full panel is.
    let ptr = v.data.as_ptr();
    let out = panel.as_mut_ptr();
    if rs == 1 {
        // Rows adjacent: the WIDTH rows of one column are contiguous, 16
        // rows (or 8 in a panel of 8) per pass.
        let column = |row: usize, l: usize| {
            if l >= cols {
                _mm512_setzero_ps()
            } else if WIDTH.is_multiple_of(16) {
                _mm512_loadu_ps(ptr.add(row + l * cs))
            } else {
                _mm512_zextps256_ps512(_mm256_loadu_ps(ptr.add(row + l * cs)))
            }
        };
        for s in 0..steps {
            if WIDTH.is_multiple_of(16) {
                for g in 0..WIDTH / 16 {
                    let row = base + 16 * g;
                    let x = bf16_pairs16(column(row, 2 * s), column(row, 2 * s + 1));
                    _mm512_storeu_si512(out.add(s * WIDTH + 16 * g) as *mut __m512i, x);
                }
            } else {
                for g in 0..WIDTH / 8 {
                    let row = base + 8 * g;
                    let x = bf16_pairs16(column(row, 2 * s), column(row, 2 * s + 1));
                    _mm256_storeu_si256(
                        out.add(s * WIDTH + 8 * g) as *mut __m256i,
                        _mm512_castsi512_si256(x),
                    );
                }
            }
        }
        return true;
    }
    // Columns adjacent: eight pairs (16 values) of each of eight rows,
    // transposed in registers.
    let full = cols / 16 * 8;
    transpose_steps::<WIDTH>(full, out as *mut f32, |row, s0| {
        let at = ptr.add((base + row) * rs + 2 * s0);
        _mm256_castsi256_ps(bf16_16(_mm512_loadu_ps(at)))
    });
    // Leftover pairs, one at a time.
    for w in 0..WIDTH {
        let at = (base + w) * rs;
        for s in full..steps {
            let lo = bf16_bits(v.data[at + 2 * s]);
            let hi = if 2 * s + 1 < cols {
                bf16_bits(v.data[at + 2 * s + 1])
            } else {
                0
            };
            panel[s * WIDTH + w] = lo | (hi << 16);
        }
    }
    true
}

/// [`pack`] of one full panel of f32 values (rows `base..base + WIDTH` all
/// inside `v`) with eight-lane loads: straight copies when rows are
/// adjacent in memory, 8x8 register transposes when columns are. The same
/// values as the scalar loops; steps left over after the last group of
/// eight go through them. Returns false, having written nothing, for other
/// layouts.
#[target_feature(enable = "avx2")]
unsafe fn pack_full_f32<const WIDTH: usize>(
    v: &View<'_>,
    base: usize,
    steps: usize,
    panel: &mut [u32],
) -> bool {
    let (rs, cs, cols) = (v.row_stride, v.col_stride, v.cols);
    if !vector_packable::<WIDTH>(Kind::F32, v, steps, panel) {
        return false;
    }
    // Every element read below is (base + w, l) with w < WIDTH, l < cols:
    // inside `v`, which is bounds-checked, as the caller's full panel is.
    let ptr = v.data.as_ptr();
    let out = panel.as_mut_ptr() as *mut f32;
    if rs == 1 {
        // Rows adjacent: the WIDTH rows of one column are contiguous.
        for s in 0..steps {
            for g in 0..WIDTH / 8 {
                let x = _mm256_loadu_ps(ptr.add(base + 8 * g + s * cs));
                _mm256_storeu_ps(out.add(s * WIDTH + 8 * g), x);
            }
        }
        return true;
    }
    // Columns adjacent: eight steps of eight rows, transposed in registers.
    let full = cols / 8 * 8;
    transpose_steps::<WIDTH>(full, out, |row, s0| {
        _mm256_loadu_ps(ptr.add((base + row) * rs + s0))
    });
    // Leftover steps, one value at a time.
    for w in 0..WIDTH {
        let at = (base + w) * rs;
        for s in full..steps {
            panel[s * WIDTH + w] = v.data[at + s].to_bits();
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
        let (r0, panels) = (g * PANEL_GROUP * NR, chunk.len() / stride);
        if bt.row_stride == 1 && chunk.len() == panels * stride && r0 + panels * NR <= bt.rows {
            let rows = PanelGroup {
                base: r0,
                panels,
                stride,
            };
            // SAFETY: `available(kind)` (checked by every caller) gives
            // AVX-512F; `pack_rows_bf16` runs only where
            // `convert_available` found its instructions. Both check
            // their bounds.
            let done = match kind {
                Kind::F32 => unsafe { pack_rows_f32(&bt, rows, chunk) },
                Kind::Bf16 if convert_available() => unsafe { pack_rows_bf16(&bt, rows, chunk) },
                Kind::Bf16 => false,
            };
            if done {
                return;
            }
        }
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

/// A group of `panels` panels of `B` packed together: the first holds rows
/// `base..base + NR` of `Bᵀ`, panel `q` starts at `q * stride` in the
/// output.
#[derive(Debug, Clone, Copy)]
struct PanelGroup {
    base: usize,
    panels: usize,
    stride: usize,
}

/// `panels` full panels of [`NR`] rows of `v` from row `base` on, packed
/// as [`pack`] packs them into `out` (panel `q` at `q * stride`), for a
/// `v` whose rows are adjacent in memory (`row_stride == 1`: `B` stored
/// row-major, `v` its transpose). Step by step across all the panels, so
/// that each step reads a contiguous run of `panels * NR` values of each
/// of its columns of `v` (rows of `B`) instead of `NR` at a time per
/// panel. Returns false, having written nothing, for other layouts or
/// sizes.
///
/// # Safety
/// The CPU must have AVX-512F, and for `BF16` AVX-512BW and AVX512-BF16
/// ([`convert_available`]).
#[inline(always)]
unsafe fn pack_rows<const BF16: bool>(v: &View<'_>, group: PanelGroup, out: &mut [u32]) -> bool {
    let PanelGroup {
        base,
        panels,
        stride,
    } = group;
    let (cs, cols) = (v.col_stride, v.cols);
    let steps = if BF16 { cols.div_ceil(2) } else { cols };
    if v.row_stride != 1
        || cols == 0
        || base + panels * NR > v.rows
        || stride < steps * NR
        || out.len() < panels * stride
    {
        return false;
    }
    // Every element read is (base + r, l) with r < panels * NR, l < cols:
    // inside the bounds-checked `v`. Every value written lies in the
    // first `steps * NR` of its panel, inside `out`.
    let ptr = v.data.as_ptr();
    let o = out.as_mut_ptr();
    for s in 0..steps {
        for q in 0..panels {
            for h in 0..NR / 16 {
                let row = base + q * NR + 16 * h;
                let x = if BF16 {
                    let lo = _mm512_loadu_ps(ptr.add(row + 2 * s * cs));
                    let hi = if 2 * s + 1 < cols {
                        _mm512_loadu_ps(ptr.add(row + (2 * s + 1) * cs))
                    } else {
                        _mm512_setzero_ps()
                    };
                    bf16_pairs16(lo, hi)
                } else {
                    _mm512_castps_si512(_mm512_loadu_ps(ptr.add(row + s * cs)))
                };
                _mm512_storeu_si512(o.add(q * stride + s * NR + 16 * h) as *mut __m512i, x);
            }
        }
    }
    true
}

/// [`pack_rows`] of f32 values.
#[target_feature(enable = "avx512f")]
unsafe fn pack_rows_f32(v: &View<'_>, group: PanelGroup, out: &mut [u32]) -> bool {
    pack_rows::<false>(v, group, out)
}

/// [`pack_rows`] of bf16 pairs.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_rows_bf16(v: &View<'_>, group: PanelGroup, out: &mut [u32]) -> bool {
    pack_rows::<true>(v, group, out)
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
#[inline]
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
#[inline]
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
        i0,
        zeros: (product.a.triangle, product.b.triangle),
    };
    // SAFETY: `available(kind)` was checked by the caller before any call.
    unsafe {
        match kind {
            Kind::F32 => run_block_f32(blk, c),
            Kind::Bf16 => run_block_bf16(blk, c),
        }
    }
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

/// [`run_block`] with the f32 kernel.
#[target_feature(enable = "avx512f")]
unsafe fn run_block_f32(blk: PackedBlock<'_>, c: &mut [f32]) {
    run_block::<false>(blk, c)
}

/// [`run_block`] with the bf16 kernel. A function of its own with the
/// bf16 instructions enabled, so that the kernel is inlined into the loops
/// and its accumulators go from registers straight to `C` (called from a
/// function without them, the kernel returned its 16 accumulators through
/// the stack).
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn run_block_bf16(blk: PackedBlock<'_>, c: &mut [f32]) {
    run_block::<true>(blk, c)
}

/// The loops of [`block`] over chunks and panels, with the bf16 kernel
/// (`BF16`) or the f32 one. Inlined into [`run_block_f32`] and
/// [`run_block_bf16`], which enable the instructions.
///
/// # Safety
/// The CPU must have the kernel's instructions ([`available`]).
#[inline(always)]
unsafe fn run_block<const BF16: bool>(blk: PackedBlock<'_>, c: &mut [f32]) {
    let PackedBlock {
        alpha,
        apack,
        steps,
        mb,
        bpack,
        n,
        j0,
        beta,
        i0,
        zeros,
    } = blk;
    let apanels = mb.div_ceil(MR);
    let bpanels = n.div_ceil(NR);
    let cp = c.as_mut_ptr();
    let chunks = steps.div_ceil(KC);
    let width = KC * if BF16 { 2 } else { 1 };
    let full = zeros == (Triangle::Full, Triangle::Full);
    for s0 in (0..steps).step_by(KC) {
        let sc = KC.min(steps - s0);
        let chunk = s0 / KC;
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
                let mr = MR.min(mb - ip * MR);
                // The chunks this tile needs: all of them, unless a
                // triangular operand makes some multiply only zeros. The
                // first one needed takes `beta C`, the others add to it.
                let first = if full {
                    0
                } else {
                    let rows = i0 + ip * MR..i0 + ip * MR + mr;
                    let (lo, hi) = needed_chunks(zeros, rows, jp * NR..jp * NR + nr, width, chunks);
                    if chunk < lo || chunk >= hi {
                        continue;
                    }
                    lo
                };
                let beta_eff = if chunk > first {
                    Some(1.0)
                } else if beta == 0.0 {
                    None
                } else {
                    Some(beta)
                };
                let ap = apack[ip * steps * MR + s0 * MR..].as_ptr();
                // SAFETY: the kernels read `sc` steps of one packed panel
                // of A (MR values per step) and of B (NR per step), inside
                // the buffers sized above; the tile written is rows
                // ip*MR..+mr, columns jp*NR..+nr of this block of `c`,
                // inside it (mr <= mb - ip*MR, nr <= n - jp*NR). The CPU
                // features were checked by `available` before any call.
                {
                    let acc = if BF16 {
                        kernel_bf16(sc, ap, bp)
                    } else {
                        kernel_f32(sc, ap, bp)
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
        // Subnormals of both signs (the hardware conversion reads them as
        // zero; the packing must not).
        for (i, v) in out.iter_mut().enumerate().skip(5).step_by(13) {
            *v = f32::from_bits(
                ((i as u32).wrapping_mul(40_503) % 0x007f_ffff + 1) | ((i as u32 & 2) << 30),
            );
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
        if !crate::cpu::avx512_test_runs(
            "vectorized_packing_equals_the_scalar_loops_skipped_without_avx512",
        ) || !available(Kind::F32)
        {
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

    /// `pack_panels` (rows of `B` read step by step across a group of
    /// panels where `B` is row-major) packs what the scalar loops pack
    /// panel by panel, and leaves the padding after each panel alone.
    #[test]
    fn panel_packing_equals_the_scalar_loops_skipped_without_avx512() {
        if !crate::cpu::avx512_test_runs(
            "panel_packing_equals_the_scalar_loops_skipped_without_avx512",
        ) {
            return;
        }
        const PAD: u32 = 0xdead_beef;
        for kind in [Kind::F32, Kind::Bf16] {
            if !available(kind) {
                continue;
            }
            for &(k, n) in &[
                (37usize, 256usize),
                (64, 512),
                (33, 300),
                (130, 96),
                (1, 32),
                (17, 288),
                (2, 8),
            ] {
                let d = data(k * n, (k * 7 + n) as u32);
                let row_major = View::new(&d, k, n);
                let col_major = View::new(&d, n, k).t();
                for b in [row_major, col_major] {
                    let steps = kind.steps(k);
                    let stride = steps * NR + 3 * NR;
                    let panels = n.div_ceil(NR);
                    // Zero where the panels go (as the callers do), the
                    // padding after each one marked.
                    let mut got = vec![PAD; panels * stride];
                    for panel in got.chunks_mut(stride) {
                        panel[..steps * NR].fill(0);
                    }
                    pack_panels(kind, &b, stride, &mut got);
                    let mut want = vec![PAD; panels * stride];
                    for (p, panel) in want.chunks_mut(stride).enumerate() {
                        panel[..steps * NR].fill(0);
                        pack_with::<NR>(
                            kind,
                            &b.t(),
                            p * NR,
                            steps,
                            &mut panel[..steps * NR],
                            false,
                        );
                    }
                    assert_eq!(
                        got,
                        want,
                        "{kind:?} {k}x{n} strides {:?}",
                        (b.row_stride, b.col_stride)
                    );
                }
            }
        }
    }

    /// Checks `bf16_16` and `bf16_pairs16` against the integer rounding of
    /// `bf16_lanes` for every f32 bit pattern; returns the first pattern
    /// that differs.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn first_conversion_mismatch() -> Option<u32> {
        let mut v = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let step = _mm512_set1_epi32(16);
        let low = _mm512_set1_epi32(0xffff);
        for _ in 0..(1u64 << 32) / 16 {
            let x = _mm512_castsi512_ps(v);
            // The partner of each value in the pairs: another pattern.
            let y = _mm512_castsi512_ps(_mm512_xor_si512(
                v,
                _mm512_set1_epi32(0x8123_4567u32 as i32),
            ));
            let (sx, sy) = (bf16_lanes(x), bf16_lanes(y));
            let single = _mm512_cvtepu16_epi32(bf16_16(x));
            let pairs = bf16_pairs16(x, y);
            let bad = _mm512_cmpneq_epi32_mask(single, sx)
                | _mm512_cmpneq_epi32_mask(_mm512_and_si512(pairs, low), sx)
                | _mm512_cmpneq_epi32_mask(_mm512_srli_epi32::<16>(pairs), sy);
            if bad != 0 {
                let mut lanes = [0u32; 16];
                _mm512_storeu_si512(lanes.as_mut_ptr() as *mut __m512i, v);
                return Some(lanes[bad.trailing_zeros() as usize]);
            }
            v = _mm512_add_epi32(v, step);
        }
        None
    }

    /// The hardware conversion (`vcvtneps2bf16`, with the subnormal
    /// fallback) gives `bf16_bits` for every f32, and so does the integer
    /// rounding it falls back to (on a sample of patterns).
    #[test]
    fn hardware_bf16_conversion_equals_bf16_bits_for_every_f32_skipped_without_avx512_bf16() {
        let name =
            "hardware_bf16_conversion_equals_bf16_bits_for_every_f32_skipped_without_avx512_bf16";
        if !convert_available() {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(
                !(ci && std::arch::is_x86_feature_detected!("avx512bf16")),
                "CI=true: the CPU has AVX512-BF16 but {name} skipped"
            );
            eprintln!("SKIPPED {name}: this CPU has no AVX512-BF16 with AVX-512BW, so the packing does not convert in hardware");
            return;
        }
        let samples = (0..=u32::MAX).step_by(4099).chain([
            0x0000_0001,
            0x007f_ffff,
            0x8000_0001,
            0x7f7f_ffff,
            0x7f80_0000,
            0x7fc0_0000,
            0xff80_0001,
        ]);
        for bits in samples {
            let mut lanes = [0u32; 16];
            // SAFETY: AVX-512F was detected by `convert_available`.
            unsafe {
                let v = bf16_lanes(_mm512_set1_ps(f32::from_bits(bits)));
                _mm512_storeu_si512(lanes.as_mut_ptr() as *mut __m512i, v);
            }
            assert_eq!(
                lanes[0],
                bf16_bits(f32::from_bits(bits)),
                "integer rounding of {bits:#010x}"
            );
        }
        // SAFETY: the features were detected by `convert_available`.
        let bad = unsafe { first_conversion_mismatch() };
        assert_eq!(
            bad, None,
            "hardware conversion differs from bf16_bits for {bad:#010x?}"
        );
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
