//! AVX-512 forms of the 8-bit codec's per-block loops: the same operations
//! per element as the scalar loops of the parent module, 16 lanes at a
//! time, with the table lookups as gathers. Tested equal to the scalar
//! loops bit for bit (codes and decoded values).

use super::{Book, LUT_LEN};
use std::arch::x86_64::*;

/// Whether the CPU runs these loops.
pub(super) fn available() -> bool {
    crate::cpu::has_avx512()
}

/// `dst[i] = table[codes[i]] * absmax`.
///
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn decode_block(codes: &[u8], table: &[f32; 256], absmax: f32, dst: &mut [f32]) {
    let n = codes.len().min(dst.len());
    let va = _mm512_set1_ps(absmax);
    let mut i = 0;
    while i + 16 <= n {
        // 16 codes, each < 256: every gathered index is inside the table.
        let c = _mm_loadu_si128(codes.as_ptr().add(i) as *const __m128i);
        let idx = _mm512_cvtepu8_epi32(c);
        let v = _mm512_i32gather_ps::<4>(idx, table.as_ptr());
        _mm512_storeu_ps(dst.as_mut_ptr().add(i), _mm512_mul_ps(v, va));
        i += 16;
    }
    for j in i..n {
        dst[j] = table[codes[j] as usize] * absmax;
    }
}

/// The bucket of each lane of `a` (top 16 bits, at most `LUT_LEN - 1`).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn bucket(a: __m512) -> __m512i {
    _mm512_min_epu32(
        _mm512_srli_epi32::<16>(_mm512_castps_si512(a)),
        _mm512_set1_epi32((LUT_LEN - 1) as i32),
    )
}

/// `lo[key] + (a >= thr[key])` per lane (tables of `LUT_LEN` entries).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn lookup(a: __m512, lo: &[u32], thr: &[f32]) -> __m512i {
    let key = bucket(a);
    let base = _mm512_i32gather_epi32::<4>(key, lo.as_ptr() as *const i32);
    let t = _mm512_i32gather_ps::<4>(key, thr.as_ptr());
    let ge = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(a, t);
    _mm512_mask_add_epi32(base, ge, base, _mm512_set1_epi32(1))
}

/// Uniform values in [0, 1) of the random stream (`super::uniform`) for
/// indices `lo + i .. lo + i + 16`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn uniform16(base: u32, lo: u32, i: u32) -> __m512 {
    let idx = _mm512_add_epi32(
        _mm512_set1_epi32(lo.wrapping_add(i) as i32),
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
    );
    let mut x = _mm512_xor_si512(
        _mm512_mullo_epi32(idx, _mm512_set1_epi32(0x9e37_79b9u32 as i32)),
        _mm512_set1_epi32(base as i32),
    );
    x = _mm512_xor_si512(x, _mm512_srli_epi32::<16>(x));
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32(0x7feb_352d));
    x = _mm512_xor_si512(x, _mm512_srli_epi32::<15>(x));
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32(0x846c_a68bu32 as i32));
    x = _mm512_xor_si512(x, _mm512_srli_epi32::<16>(x));
    _mm512_mul_ps(
        _mm512_cvtepi32_ps(_mm512_srli_epi32::<8>(x)),
        _mm512_set1_ps(1.0 / (1u32 << 24) as f32),
    )
}

/// How one block is rounded: nearest, or stochastic with the block's
/// stream (`base`, index of its first element `lo`).
#[derive(Clone, Copy)]
pub(super) enum Mode {
    Nearest,
    Stochastic { base: u32, lo: u32 },
}

/// Encodes one block `x` (no NaN) with `inv = 1 / absmax` into `codes`:
/// the signed book when `signed` (the block has a negative value), the
/// unsigned one otherwise.
///
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn encode_block(
    book: &Book,
    signed: bool,
    x: &[f32],
    codes: &mut [u8],
    inv: f32,
    mode: Mode,
) -> usize {
    let n = x.len().min(codes.len());
    let vinv = _mm512_set1_ps(inv);
    let one = _mm512_set1_ps(1.0);
    let abs_mask = _mm512_set1_epi32(0x7fff_ffff);
    let mut i = 0;
    while i + 16 <= n {
        let v = _mm512_loadu_ps(x.as_ptr().add(i));
        let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, _mm512_setzero_ps());
        // The magnitude in both books (in the unsigned one only -0.0
        // changes: its bits would land in the bucket of 1).
        let m = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), abs_mask));
        // `.min(1.0)`: a NaN product (inf * 0) becomes 1, as f32::min.
        let a = _mm512_min_ps(_mm512_mul_ps(m, vinv), one);
        let j = match mode {
            Mode::Nearest => lookup(a, &book.lut_lo32, &book.lut_thr),
            Mode::Stochastic { base, lo } => {
                let top = if signed {
                    _mm512_mask_blend_epi32(neg, _mm512_set1_epi32(128), _mm512_set1_epi32(127))
                } else {
                    _mm512_set1_epi32(255)
                };
                let f = _mm512_min_epu32(lookup(a, &book.floor_lo32, &book.floor_thr), top);
                // f <= top < mags.len() = inv_gap.len(): inside the tables.
                let mag = _mm512_i32gather_ps::<4>(f, book.mags.as_ptr());
                let gap = _mm512_i32gather_ps::<4>(f, book.inv_gap.as_ptr());
                let p = _mm512_mul_ps(_mm512_sub_ps(a, mag), gap);
                let r = uniform16(base, lo, i as u32);
                let up = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(r, p) & _mm512_cmplt_epu32_mask(f, top);
                _mm512_mask_add_epi32(f, up, f, _mm512_set1_epi32(1))
            }
        };
        let code = if signed {
            let pos = _mm512_add_epi32(
                _mm512_set1_epi32(127),
                _mm512_min_epu32(j, _mm512_set1_epi32(128)),
            );
            let negc = _mm512_sub_epi32(
                _mm512_set1_epi32(127),
                _mm512_min_epu32(j, _mm512_set1_epi32(127)),
            );
            _mm512_mask_blend_epi32(neg, pos, negc)
        } else {
            j
        };
        _mm_storeu_si128(
            codes.as_mut_ptr().add(i) as *mut __m128i,
            _mm512_cvtepi32_epi8(code),
        );
        i += 16;
    }
    i
}

/// `(max |v|, any v < 0, any NaN)` of a block; `max |v|` is only
/// meaningful without NaN (then it is exactly the scalar loop's).
///
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn block_stats(x: &[f32]) -> (f32, bool, bool) {
    let abs_mask = _mm512_set1_epi32(0x7fff_ffff);
    let mut vmax = _mm512_setzero_ps();
    let (mut neg, mut nan): (u16, u16) = (0, 0);
    let mut i = 0;
    while i + 16 <= x.len() {
        let v = _mm512_loadu_ps(x.as_ptr().add(i));
        let a = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), abs_mask));
        vmax = _mm512_max_ps(vmax, a);
        neg |= _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, _mm512_setzero_ps());
        nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        i += 16;
    }
    let mut absmax = _mm512_reduce_max_ps(vmax);
    let (mut neg, mut nan) = (neg != 0, nan != 0);
    for &v in &x[i..] {
        absmax = absmax.max(v.abs());
        neg |= v < 0.0;
        nan |= v.is_nan();
    }
    (absmax, neg, nan)
}
