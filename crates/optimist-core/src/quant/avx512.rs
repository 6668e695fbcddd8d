//! AVX-512 forms of the 8-bit codec's per-block loops: the same operations
//! per element as the scalar loops of the parent module, 16 lanes at a
//! time, with the table lookups as gathers. Tested equal to the scalar
//! loops bit for bit (codes and decoded values).

use super::{BlockMode as Mode, Book, LUT_LEN};
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

/// Whether the CPU also has AVX-512BW and AVX512_VBMI (byte permutes), for
/// [`decode_block_vbmi`] (checked once).
pub(super) fn has_vbmi() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        available() && is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vbmi")
    })
}

/// `dst[i] = values[codes[i]] * absmax`, where `planes[q][c]` is byte `q`
/// of `values[c]`: 64 codes at a time, each byte of the 64 values looked
/// up with two 128-entry byte permutes (a register-held table, no
/// gather), the bytes interleaved into 32-bit values.
///
/// # Safety
/// The CPU must have AVX-512F, AVX-512BW and AVX512_VBMI.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
pub(super) unsafe fn decode_block_vbmi(
    codes: &[u8],
    planes: &[[u8; 256]; 4],
    absmax: f32,
    dst: &mut [f32],
) -> usize {
    let n = codes.len().min(dst.len());
    let va = _mm512_set1_ps(absmax);
    let load = |q: usize, h: usize| _mm512_loadu_si512(planes[q].as_ptr().add(64 * h) as *const _);
    let t: [[__m512i; 4]; 4] = [
        [load(0, 0), load(0, 1), load(0, 2), load(0, 3)],
        [load(1, 0), load(1, 1), load(1, 2), load(1, 3)],
        [load(2, 0), load(2, 1), load(2, 2), load(2, 3)],
        [load(3, 0), load(3, 1), load(3, 2), load(3, 3)],
    ];
    // The interleaving below leaves byte L*16 + q*4 + r of the input at
    // value q*16 + L*4 + r; so the input takes code q*16 + L*4 + r there.
    let mut order = [0u8; 64];
    for (pos, o) in order.iter_mut().enumerate() {
        let (l, q, r) = (pos / 16, (pos / 4) % 4, pos % 4);
        *o = (q * 16 + l * 4 + r) as u8;
    }
    let order = _mm512_loadu_si512(order.as_ptr() as *const _);
    let mut i = 0;
    while i + 64 <= n {
        let c = _mm512_permutexvar_epi8(order, _mm512_loadu_si512(codes.as_ptr().add(i) as *const _));
        let high = _mm512_movepi8_mask(c);
        let byte = |q: usize| {
            let lo = _mm512_permutex2var_epi8(t[q][0], c, t[q][1]);
            let hi = _mm512_permutex2var_epi8(t[q][2], c, t[q][3]);
            _mm512_mask_blend_epi8(high, lo, hi)
        };
        let (b0, b1, b2, b3) = (byte(0), byte(1), byte(2), byte(3));
        let w01l = _mm512_unpacklo_epi8(b0, b1);
        let w01h = _mm512_unpackhi_epi8(b0, b1);
        let w23l = _mm512_unpacklo_epi8(b2, b3);
        let w23h = _mm512_unpackhi_epi8(b2, b3);
        let d = [
            _mm512_unpacklo_epi16(w01l, w23l),
            _mm512_unpackhi_epi16(w01l, w23l),
            _mm512_unpacklo_epi16(w01h, w23h),
            _mm512_unpackhi_epi16(w01h, w23h),
        ];
        for (q, v) in d.iter().enumerate() {
            _mm512_storeu_ps(
                dst.as_mut_ptr().add(i + 16 * q),
                _mm512_mul_ps(_mm512_castsi512_ps(*v), va),
            );
        }
        i += 64;
    }
    i
}

/// What the products `idx * 0x9e37_79b9` of [`super::uniform`] grow by per
/// 16 indices.
const STREAM_STEP: u32 = 16u32.wrapping_mul(0x9e37_79b9);

/// The 24-bit integers `u` of the uniform values `u * 2^-24` of
/// [`super::uniform`], as f32 (exact), from `base` and the products
/// `idx * 0x9e37_79b9` (`hc`).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn uniform16(base: __m512i, hc: __m512i) -> __m512 {
    let mut x = _mm512_xor_si512(hc, base);
    x = _mm512_xor_si512(x, _mm512_srli_epi32::<16>(x));
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32(0x7feb_352d));
    x = _mm512_xor_si512(x, _mm512_srli_epi32::<15>(x));
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32(0x846c_a68bu32 as i32));
    x = _mm512_xor_si512(x, _mm512_srli_epi32::<16>(x));
    _mm512_cvtepi32_ps(_mm512_srli_epi32::<8>(x))
}

/// Encodes the whole groups of 16 values of one block `x` (no NaN) with
/// `inv = 1 / absmax` into `codes`, in `book` (the signed book for a
/// block with a negative value); returns how many values it encoded (the
/// caller's scalar loop does the rest).
///
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn encode_block(
    book: &Book,
    x: &[f32],
    codes: &mut [u8],
    inv: f32,
    mode: Mode,
) -> usize {
    // The magnitudes below are in [0, 1] (which keeps the gathers inside
    // the tables) for inv >= 0; a block's inverse maximum always is.
    if inv.is_nan() || inv < 0.0 {
        return 0;
    }
    match (book.signed, mode) {
        (false, Mode::Nearest) => encode::<false, false>(book, x, codes, inv, 0, 0),
        (true, Mode::Nearest) => encode::<true, false>(book, x, codes, inv, 0, 0),
        (false, Mode::Stochastic { base, lo }) => {
            encode::<false, true>(book, x, codes, inv, base, lo)
        }
        (true, Mode::Stochastic { base, lo }) => encode::<true, true>(book, x, codes, inv, base, lo),
    }
}

/// [`encode_block`] for the signed book or not, stochastic rounding or
/// not. Per lane, the operations of the scalar loops: the magnitude
/// `a = min(|v| * inv, 1)`, its bucket's entry in the packed tables
/// ([`super::Packed`]) and, when stochastic, `p = (a - mags[f]) *
/// inv_gap[f]` against the stream's uniform value.
///
/// # Safety
/// The CPU must have AVX-512F; `inv >= 0`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn encode<const SIGNED: bool, const STOCH: bool>(
    book: &Book,
    x: &[f32],
    codes: &mut [u8],
    inv: f32,
    base: u32,
    lo: u32,
) -> usize {
    let n = x.len().min(codes.len());
    let pk = &book.packed;
    let first = pk.first as usize;
    // With inv >= 0 the magnitude `a` is in [0, 1] (a NaN product becomes
    // 1), so its bits raised to `first << 16` have keys in
    // `first..LUT_LEN`, and the packed tables hold the entries of exactly
    // those keys: key `k` reads entry `k - first`, through a base pointer
    // `first` entries before the table.
    assert!(inv >= 0.0);
    assert!(pk.near.len() == LUT_LEN - first && pk.floor.len() == LUT_LEN - first);
    assert!(book.signed == SIGNED);
    // Gathered magnitude indices are at most `top`, and `top < mag_gap.len()`.
    let top_max = if SIGNED { 128 } else { 255 };
    assert!(top_max < pk.mag_gap.len());
    let table = if STOCH { &pk.floor } else { &pk.near };
    let table = table.as_ptr().wrapping_sub(first) as *const i32;
    let mag_gap = pk.mag_gap.as_ptr() as *const i64;
    let vinv = _mm512_set1_ps(inv);
    let one = _mm512_set1_ps(1.0);
    let abs_mask = _mm512_set1_epi32(0x7fff_ffff);
    let floor_bits = _mm512_set1_epi32((first << 16) as i32);
    let c127 = _mm512_set1_epi32(127);
    let c128 = _mm512_set1_epi32(128);
    let ione = _mm512_set1_epi32(1);
    // 32-bit halves of the gathered (mag, inv_gap) pairs: even = mags.
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let vbase = _mm512_set1_epi32(base as i32);
    // idx * 0x9e37_79b9 for the stream indices lo + lane.
    let c = 0x9e37_79b9u32;
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let mut hc = _mm512_add_epi32(
        _mm512_set1_epi32(lo.wrapping_mul(c) as i32),
        _mm512_mullo_epi32(lanes, _mm512_set1_epi32(c as i32)),
    );
    let step = _mm512_set1_epi32(STREAM_STEP as i32);
    let mut i = 0;
    while i + 16 <= n {
        let v = _mm512_loadu_ps(x.as_ptr().add(i));
        let neg = if SIGNED {
            _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, _mm512_setzero_ps())
        } else {
            0
        };
        // The magnitude in both books (in the unsigned one only -0.0
        // changes: its bits would land in the bucket of 1).
        let m = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), abs_mask));
        // `.min(1.0)`: a NaN product (inf * 0) becomes 1, as f32::min.
        let a = _mm512_min_ps(_mm512_mul_ps(m, vinv), one);
        let b = _mm512_max_epu32(_mm512_castps_si512(a), floor_bits);
        let entry = _mm512_i32gather_epi32::<4>(_mm512_srli_epi32::<16>(b), table);
        // lo + (a >= thr) of the bucket (see `Packed`).
        let j = _mm512_srli_epi32::<17>(_mm512_add_epi32(entry, b));
        let j = if STOCH {
            let top = if SIGNED {
                _mm512_mask_sub_epi32(c128, neg, c128, ione)
            } else {
                _mm512_set1_epi32(255)
            };
            let f = _mm512_min_epu32(j, top);
            // f <= top < mag_gap.len(): inside the table.
            let g0 = _mm512_i32gather_epi64::<8>(_mm512_castsi512_si256(f), mag_gap);
            let g1 = _mm512_i32gather_epi64::<8>(_mm512_extracti64x4_epi64::<1>(f), mag_gap);
            let mag = _mm512_castsi512_ps(_mm512_permutex2var_epi32(g0, even, g1));
            let gap = _mm512_castsi512_ps(_mm512_permutex2var_epi32(g0, odd, g1));
            // p * 2^24 (see `Packed::mag_gap`).
            let p = _mm512_mul_ps(_mm512_sub_ps(a, mag), gap);
            let u = uniform16(vbase, hc);
            hc = _mm512_add_epi32(hc, step);
            let up = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(u, p);
            // At the top the scalar loop stops (it is the only way up from
            // a negative value's top, 127). In the unsigned book f reaches
            // 255 only for a = 1 = mags[255], where p = 0.
            let up = if SIGNED {
                _mm512_mask_cmplt_epu32_mask(up, f, top)
            } else {
                up
            };
            _mm512_mask_add_epi32(f, up, f, ione)
        } else {
            j
        };
        let code = if SIGNED {
            if STOCH {
                // 127 + j, or 127 - j for a negative value (j <= top = 127).
                _mm512_mask_sub_epi32(_mm512_add_epi32(c127, j), neg, c127, j)
            } else {
                // 127 + j, or 127 - min(j, 127) for a negative value.
                let sj = _mm512_mask_sub_epi32(j, neg, _mm512_setzero_si512(), j);
                _mm512_max_epi32(_mm512_add_epi32(c127, sj), _mm512_setzero_si512())
            }
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

/// `(max |v|, any v < 0, any NaN)` of a block; `max |v|` and `any v < 0`
/// are only meaningful without NaN (then they are exactly the scalar
/// loop's). On the bits: for floats without sign, the order of the bits as
/// integers is that of the values, with NaN above +inf; a float is below
/// zero exactly when its bits are above those of -0.0 (or it is a NaN).
///
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn block_stats(x: &[f32]) -> (f32, bool, bool) {
    let abs_mask = _mm512_set1_epi32(0x7fff_ffff);
    let mut vmax = _mm512_setzero_si512();
    let mut vabs = _mm512_setzero_si512();
    let mut i = 0;
    while i + 16 <= x.len() {
        let v = _mm512_loadu_si512(x.as_ptr().add(i) as *const _);
        vmax = _mm512_max_epu32(vmax, v);
        vabs = _mm512_max_epu32(vabs, _mm512_and_si512(v, abs_mask));
        i += 16;
    }
    let top = _mm512_reduce_max_epu32(vmax);
    let top_abs = _mm512_reduce_max_epu32(vabs);
    let mut absmax = f32::from_bits(top_abs);
    let mut neg = top > 0x8000_0000;
    let mut nan = top_abs > 0x7f80_0000;
    for &v in &x[i..] {
        absmax = absmax.max(v.abs());
        neg |= v < 0.0;
        nan |= v.is_nan();
    }
    (absmax, neg, nan)
}
