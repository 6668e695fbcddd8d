//! AVX2 forms of the 8-bit codec's per-block loops, for CPUs without
//! AVX-512: the same operations per element as the scalar loops of the
//! parent module (and as `avx512.rs`), 8 lanes at a time, with the table
//! lookups as gathers from the packed tables ([`super::Packed`]). Tested
//! equal to the scalar loops bit for bit (codes and decoded values).

use super::{BlockMode as Mode, Book, LUT_LEN};
use std::arch::x86_64::*;

/// Whether the CPU runs these loops.
pub(super) fn available() -> bool {
    crate::cpu::has_avx2()
}

/// `dst[i] = table[codes[i]] * absmax`.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn decode_block(codes: &[u8], table: &[f32; 256], absmax: f32, dst: &mut [f32]) {
    let n = codes.len().min(dst.len());
    let va = _mm256_set1_ps(absmax);
    let mut i = 0;
    while i + 8 <= n {
        // 8 codes, each < 256: every gathered index is inside the table.
        let c = _mm_loadl_epi64(codes.as_ptr().add(i) as *const __m128i);
        let idx = _mm256_cvtepu8_epi32(c);
        let v = _mm256_i32gather_ps::<4>(table.as_ptr(), idx);
        _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_mul_ps(v, va));
        i += 8;
    }
    for j in i..n {
        dst[j] = table[codes[j] as usize] * absmax;
    }
}

/// What the products `idx * 0x9e37_79b9` of [`super::uniform`] grow by per
/// 8 indices.
const STREAM_STEP: u32 = 8u32.wrapping_mul(0x9e37_79b9);

/// The 24-bit integers `u` of the uniform values `u * 2^-24` of
/// [`super::uniform`], as f32 (exact), from `base` and the products
/// `idx * 0x9e37_79b9` (`hc`).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn uniform8(base: __m256i, hc: __m256i) -> __m256 {
    let mut x = _mm256_xor_si256(hc, base);
    x = _mm256_xor_si256(x, _mm256_srli_epi32::<16>(x));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x7feb_352d));
    x = _mm256_xor_si256(x, _mm256_srli_epi32::<15>(x));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x846c_a68bu32 as i32));
    x = _mm256_xor_si256(x, _mm256_srli_epi32::<16>(x));
    _mm256_cvtepi32_ps(_mm256_srli_epi32::<8>(x))
}

/// Encodes the whole groups of 8 values of one block `x` (no NaN) with
/// `inv = 1 / absmax` into `codes`, in `book`; returns how many values it
/// encoded (the caller's scalar loop does the rest). The operations of
/// `avx512::encode_block`, 8 lanes at a time.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn encode_block(
    book: &Book,
    x: &[f32],
    codes: &mut [u8],
    inv: f32,
    mode: Mode,
) -> usize {
    let n = x.len().min(codes.len());
    let pk = &book.packed;
    let signed = book.signed;
    let first = pk.first as usize;
    // With inv >= 0 the magnitude `a` is in [0, 1] (a NaN product becomes
    // 1), so its bits raised to `first << 16` have keys in
    // `first..LUT_LEN`, and the packed tables hold the entries of exactly
    // those keys: key `k` reads entry `k - first`, through a base pointer
    // `first` entries before the table.
    if inv.is_nan() || inv < 0.0 {
        return 0;
    }
    assert!(pk.near.len() == LUT_LEN - first && pk.floor.len() == LUT_LEN - first);
    // Gathered magnitude indices are at most `top`, and `top < mag_gap.len()`.
    let top_max = if signed { 128 } else { 255 };
    assert!(top_max < pk.mag_gap.len());
    let table = match mode {
        Mode::Nearest => &pk.near,
        Mode::Stochastic { .. } => &pk.floor,
    };
    let table = table.as_ptr().wrapping_sub(first) as *const i32;
    let mag_gap = pk.mag_gap.as_ptr() as *const i64;
    let vinv = _mm256_set1_ps(inv);
    let one = _mm256_set1_ps(1.0);
    let zero = _mm256_setzero_ps();
    let abs_mask = _mm256_set1_epi32(0x7fff_ffff);
    let floor_bits = _mm256_set1_epi32((first << 16) as i32);
    let c127 = _mm256_set1_epi32(127);
    let izero = _mm256_setzero_si256();
    // Low bytes of the 32-bit codes to the front of each 128-bit half, then
    // the two halves' first 4 bytes together.
    let bytes = _mm256_setr_epi8(
        0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12, -1, -1, -1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1,
    );
    let halves = _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0);
    let (vbase, mut hc) = match mode {
        Mode::Nearest => (izero, izero),
        Mode::Stochastic { base, lo } => {
            let c = 0x9e37_79b9u32;
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            (
                _mm256_set1_epi32(base as i32),
                _mm256_add_epi32(
                    _mm256_set1_epi32(lo.wrapping_mul(c) as i32),
                    _mm256_mullo_epi32(lanes, _mm256_set1_epi32(c as i32)),
                ),
            )
        }
    };
    let step = _mm256_set1_epi32(STREAM_STEP as i32);
    let mut i = 0;
    while i + 8 <= n {
        let v = _mm256_loadu_ps(x.as_ptr().add(i));
        // All ones in the lanes below zero.
        let neg = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LT_OQ>(v, zero));
        // The magnitude in both books (in the unsigned one only -0.0
        // changes: its bits would land in the bucket of 1).
        let m = _mm256_castsi256_ps(_mm256_and_si256(_mm256_castps_si256(v), abs_mask));
        // `.min(1.0)`: a NaN product (inf * 0) becomes 1, as f32::min.
        let a = _mm256_min_ps(_mm256_mul_ps(m, vinv), one);
        let b = _mm256_max_epu32(_mm256_castps_si256(a), floor_bits);
        let entry = _mm256_i32gather_epi32::<4>(table, _mm256_srli_epi32::<16>(b));
        // lo + (a >= thr) of the bucket (see `Packed`).
        let j = _mm256_srli_epi32::<17>(_mm256_add_epi32(entry, b));
        let j = match mode {
            Mode::Nearest => j,
            Mode::Stochastic { .. } => {
                let top = if signed {
                    // 128, or 127 for a negative value.
                    _mm256_add_epi32(_mm256_set1_epi32(128), neg)
                } else {
                    _mm256_set1_epi32(255)
                };
                let f = _mm256_min_epu32(j, top);
                // f <= top < mag_gap.len(): inside the table.
                let g0 = _mm256_castsi256_ps(_mm256_i32gather_epi64::<8>(
                    mag_gap,
                    _mm256_castsi256_si128(f),
                ));
                let g1 = _mm256_castsi256_ps(_mm256_i32gather_epi64::<8>(
                    mag_gap,
                    _mm256_extracti128_si256::<1>(f),
                ));
                // (mag, gap) pairs of lanes 0-3 in g0 and 4-7 in g1.
                let mag = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(
                    _mm256_castps_pd(_mm256_shuffle_ps::<0b10_00_10_00>(g0, g1)),
                ));
                let gap = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(
                    _mm256_castps_pd(_mm256_shuffle_ps::<0b11_01_11_01>(g0, g1)),
                ));
                // p * 2^24 (see `Packed::mag_gap`).
                let p = _mm256_mul_ps(_mm256_sub_ps(a, mag), gap);
                let u = uniform8(vbase, hc);
                hc = _mm256_add_epi32(hc, step);
                let up = _mm256_and_si256(
                    _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LT_OQ>(u, p)),
                    _mm256_cmpgt_epi32(top, f),
                );
                // `up` is -1 where the value rounds up.
                _mm256_sub_epi32(f, up)
            }
        };
        let code = if signed {
            // 127 + j, or 127 - min(j, 127) for a negative value.
            let sj = _mm256_sub_epi32(_mm256_xor_si256(j, neg), neg);
            _mm256_max_epi32(_mm256_add_epi32(c127, sj), izero)
        } else {
            j
        };
        let packed = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(code, bytes), halves);
        _mm_storel_epi64(
            codes.as_mut_ptr().add(i) as *mut __m128i,
            _mm256_castsi256_si128(packed),
        );
        i += 8;
    }
    i
}

/// `(max |v|, any v < 0, any NaN)` of a block; `max |v|` is only
/// meaningful without NaN (then it is exactly the scalar loop's).
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn block_stats(x: &[f32]) -> (f32, bool, bool) {
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let zero = _mm256_setzero_ps();
    let mut vmax = zero;
    let mut neg = zero;
    let mut nan = zero;
    let mut i = 0;
    while i + 8 <= x.len() {
        let v = _mm256_loadu_ps(x.as_ptr().add(i));
        vmax = _mm256_max_ps(vmax, _mm256_and_ps(v, abs_mask));
        neg = _mm256_or_ps(neg, _mm256_cmp_ps::<_CMP_LT_OQ>(v, zero));
        nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
        i += 8;
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), vmax);
    let mut absmax = lanes.iter().fold(0f32, |m, &v| m.max(v));
    let mut neg = _mm256_movemask_ps(neg) != 0;
    let mut nan = _mm256_movemask_ps(nan) != 0;
    for &v in &x[i..] {
        absmax = absmax.max(v.abs());
        neg |= v < 0.0;
        nan |= v.is_nan();
    }
    (absmax, neg, nan)
}
