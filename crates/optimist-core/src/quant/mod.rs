//! Compressed storage for optimizer state: bf16 with stochastic rounding, and
//! 8-bit block-wise dynamic quantization.
//!
//! Update rules never see these formats: the execution driver
//! ([`crate::exec`]) decodes a chunk of each buffer into f32, runs the rule's
//! kernel on it and encodes the result back. Both codecs are deterministic
//! functions of the values and of a key, so the result does not depend on how
//! a tensor is split into chunks or on the number of threads.
//!
//! ## bf16 with stochastic rounding
//!
//! A value keeps its f32 sign, exponent and top 7 mantissa bits. Rounding
//! adds a uniform random integer in `[0, 2^16)` to the f32 bit pattern before
//! truncating to the top 16 bits, so a value rounds away from zero with
//! probability equal to its distance from the truncated value (in units of
//! the last bf16 place): the rounding is unbiased, `E[decode(encode(x))] = x`.
//! The random integers come from a counter-based hash of (seed, parameter
//! name, buffer, step, element index), not from a stateful generator.
//! Infinities and NaN are truncated (NaN stays NaN).
//!
//! ## 8-bit block-wise dynamic quantization
//!
//! As in bitsandbytes' 8-bit optimizers (Dettmers, Lewis, Shleifer &
//! Zettlemoyer, "8-bit Optimizers via Block-wise Quantization", ICLR 2022):
//! each block of `block` consecutive values stores its absolute maximum as an
//! f32 scale and every value as the index of the nearest entry of a fixed
//! 256-entry "dynamic" code book applied to `x / absmax`. The code book has
//! a decimal exponent and a linear fraction: for k = 0..6 it holds the
//! midpoints of `n_k` equal steps of `[0.1, 1] * 10^(k-6)`, plus 0 and 1.
//! The signed book (n_k = 2^k, both signs, 1 but not -1) is used for blocks
//! with a negative value; blocks with none use the unsigned book
//! (n_k = 2^(k+1), twice the resolution), which suits second moments. The
//! choice is recorded in the sign bit of the block's scale, so no
//! per-optimizer information is needed. The books are the ones of
//! bitsandbytes' `create_dynamic_map(signed)`; the code layout inside a byte
//! is this crate's own. Encoding picks the nearest code exactly (a lookup on
//! the top 16 bits of `x / absmax`, then one comparison with the midpoint in
//! that bucket).

use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

/// Which loops the 8-bit codec runs: all give the same codes and values
/// (the vector loops are tested equal to the scalar ones bit for bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loops {
    Scalar,
    /// 8 lanes (`avx2.rs`), where the CPU has AVX2.
    Avx2,
    /// 16 lanes (`avx512.rs`), where the CPU has AVX-512F.
    Avx512,
}

impl Loops {
    /// The widest loops the CPU runs (checked once). The environment
    /// variable `OPTIMIST_Q8_NO_AVX512` (set, not empty or `0`) keeps the
    /// codec to its AVX2 loops on a CPU with AVX-512, to measure them.
    fn best() -> Loops {
        static BEST: OnceLock<Loops> = OnceLock::new();
        *BEST.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                let no512 = std::env::var_os("OPTIMIST_Q8_NO_AVX512")
                    .is_some_and(|v| !v.is_empty() && v != "0");
                if avx512::available() && !no512 {
                    return Loops::Avx512;
                }
                if avx2::available() {
                    return Loops::Avx2;
                }
            }
            Loops::Scalar
        })
    }
}

/// Default number of values per 8-bit block.
pub const DEFAULT_Q8_BLOCK: usize = 256;

/// SplitMix64's finalizer.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 32-bit integer hash (Wellons' "lowbias32"); vectorizes.
#[inline(always)]
fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// FNV-1a of a parameter name, to key its random streams.
pub fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Key of one random stream: a (seed, parameter, buffer, step, phase) tuple.
pub fn stream_key(seed: u64, param: u64, buffer: usize, step: u64, phase: u64) -> u64 {
    let mut k = mix64(seed ^ 0x6f70_7469_6d69_7374);
    k = mix64(k ^ param);
    k = mix64(k ^ buffer as u64);
    k = mix64(k ^ step);
    mix64(k ^ phase)
}

/// Encodes `src` into bf16 with stochastic rounding; `src[0]` is element
/// `offset` of its tensor (the random stream is indexed by element).
#[inline(always)]
pub fn bf16_encode(src: &[f32], dst: &mut [u16], key: u64, offset: usize) {
    let n = src.len().min(dst.len());
    let (src, dst) = (&src[..n], &mut dst[..n]);
    let mut start = 0usize;
    while start < n {
        // The stream is split in segments of 2^32 elements; each has its own base.
        let abs = offset + start;
        let seg = (abs as u64) >> 32;
        let seg_end = (((seg + 1) << 32) - abs as u64).min((n - start) as u64) as usize;
        let base = segment_base(key, seg);
        let lo = abs as u32;
        bf16_encode_segment(
            &src[start..start + seg_end],
            &mut dst[start..start + seg_end],
            base,
            lo,
        );
        start += seg_end;
    }
}

#[inline(always)]
fn bf16_encode_segment(src: &[f32], dst: &mut [u16], base: u32, lo: u32) {
    let n = src.len().min(dst.len());
    let (src, dst) = (&src[..n], &mut dst[..n]);
    // Element `lo + i`'s Weyl value `base + (lo + i) * φ` as a running
    // sum: one addition per vector instead of a multiplication.
    let mut weyl = weyl_start(base, lo);
    for i in 0..n {
        dst[i] = bf16_round_weyl(src[i], weyl);
        weyl = weyl.wrapping_add(WEYL);
    }
}

/// The random stream of [`bf16_encode`] for `len` elements from element
/// `offset` of its tensor, as (base, index of the first element) for
/// [`bf16_round`], when they lie in one segment of 2^32 elements.
#[inline]
pub fn bf16_stream(key: u64, offset: usize, len: usize) -> Option<(u32, u32)> {
    let seg = (offset as u64) >> 32;
    let last = (offset as u64).checked_add(len.saturating_sub(1) as u64)? >> 32;
    (seg == last).then(|| (segment_base(key, seg), offset as u32))
}

/// The base of segment `seg` (elements `seg * 2^32 ..`) of stream `key`.
#[inline]
fn segment_base(key: u64, seg: u64) -> u32 {
    mix64(key ^ seg.wrapping_mul(0x9e37_79b9_7f4a_7c15)) as u32
}

/// One value rounded to bf16 as [`bf16_encode`] rounds element `idx` of a
/// segment with base `base` (see [`bf16_stream`]).
#[inline(always)]
pub fn bf16_round(x: f32, base: u32, idx: u32) -> u16 {
    bf16_round_weyl(x, weyl_start(base, idx))
}

/// The Weyl value `base + idx * φ` of element `idx` of a segment with base
/// `base` (see [`bf16_round_weyl`]).
#[inline(always)]
pub(crate) fn weyl_start(base: u32, idx: u32) -> u32 {
    base.wrapping_add(idx.wrapping_mul(WEYL))
}

/// [`bf16_round`] given the element's Weyl value `base + idx * φ`
/// ([`weyl_start`]), which a loop over consecutive elements steps by
/// addition.
///
/// The 16 random bits that round element `idx` of a segment with base
/// `base` are the top half of `base + idx * φ`, with φ = 0x9e3779b9 (a
/// Weyl sequence over the elements). For a fixed element the base is a
/// fresh hash of (seed, parameter, buffer, step) each step, so the sum is
/// uniform over 32 bits: the bits are uniform and the rounding unbiased.
/// Within one step the elements' bits follow the golden-ratio sequence,
/// which is equidistributed (the fraction of elements rounded up matches
/// their fractions more closely than independent draws would). No
/// multiplication per element: the encoding runs on the integer ports
/// beside the kernel's divisions and must not cost more than the memory
/// it saves.
#[inline(always)]
pub(crate) fn bf16_round_weyl(x: f32, weyl: u32) -> u16 {
    let bits = x.to_bits();
    let r = weyl >> 16;
    // Finite values get the random bits (no overflow: the largest finite
    // pattern plus 0xffff stays below 2^32); infinities and NaN are
    // truncated and NaN stays a (quiet) NaN.
    let magnitude = bits & 0x7fff_ffff;
    let t = if magnitude < 0x7f80_0000 { bits.wrapping_add(r) } else { bits };
    let t = if magnitude > 0x7f80_0000 { t | 0x0040_0000 } else { t };
    (t >> 16) as u16
}

/// The Weyl sequence's step φ of [`bf16_round_weyl`].
pub(crate) const WEYL: u32 = 0x9e37_79b9;

/// Decodes bf16 values into f32 (exact).
#[inline(always)]
pub fn bf16_decode(src: &[u16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let (src, dst) = (&src[..n], &mut dst[..n]);
    for i in 0..n {
        dst[i] = f32::from_bits((src[i] as u32) << 16);
    }
}

/// One of the two dynamic code books with its encoding tables.
struct Book {
    /// The signed book (else the unsigned one).
    signed: bool,
    /// The 256 values, ascending (code = index).
    values: [f32; 256],
    /// Byte `q` of the bits of `values[c]` at `planes[q][c]`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    planes: [[u8; 256]; 4],
    /// For the magnitude table: sorted magnitudes from 0 to 1.
    mags: Vec<f32>,
    /// Midpoints between consecutive magnitudes.
    mids: Vec<f32>,
    /// Per bucket (top 16 bits of a magnitude in [0, 1]): the magnitude
    /// index at the bucket's start.
    lut_lo: Vec<u8>,
    /// Per bucket: the midpoint inside the bucket, or +inf.
    lut_thr: Vec<f32>,
    /// Per bucket: index of the largest magnitude <= the bucket's start.
    floor_lo: Vec<u8>,
    /// Per bucket: the magnitude inside the bucket, or +inf.
    floor_thr: Vec<f32>,
    /// `1 / (mags[j + 1] - mags[j])`.
    inv_gap: Vec<f32>,
    /// The vector loops' form of the tables (see [`Packed`]).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    packed: Packed,
}

/// The bucket tables of a book in the form the vector loops read: one
/// 32-bit entry per bucket instead of an index and a threshold, and only
/// the buckets from `first` up (about 2.9K of the 16K: every bucket up to
/// `first` holds the same index and no threshold), so that a table is
/// 12 KB and the gathers hit the L1 cache.
///
/// The entry of bucket `key` with index `lo` and threshold `thr` is
/// `(lo << 17) + 0x20000 - t - (key << 16)` (mod 2^32), where `t` is the
/// low 16 bits of `thr` (whose top 16 bits are `key`) or `0x10000` when
/// `thr` is +inf. For a magnitude `a` in `[0, 1]` with bits `b` raised to
/// at least `first << 16` (what that does not change: the bucket of the
/// smaller magnitudes has no threshold), `(entry + b) >> 17` is
/// `lo + (a >= thr)`: `entry + b` is `(lo << 17) + 0x20000 - t + (b &
/// 0xffff)`, which carries into bit 17 exactly when the low 16 bits of `a`
/// reach those of `thr`, and for non-negative floats with the same top 16
/// bits, comparing the low 16 bits compares the values.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Packed {
    /// The first bucket held (entry 0 of the tables).
    first: u32,
    /// Nearest rounding: `lut_lo` and `lut_thr`, keys `first..LUT_LEN`.
    near: Vec<u32>,
    /// Stochastic rounding: `floor_lo` and `floor_thr`, the same keys.
    floor: Vec<u32>,
    /// Per magnitude `j`: `mags[j]` in the low 32 bits and `inv_gap[j] *
    /// 2^24` in the high 32 bits (one 64-bit gather fetches both). With the
    /// factor 2^24 the stochastic test `u * 2^-24 < (a - mags[j]) *
    /// inv_gap[j]` of the scalar loop (`u` the stream's 24-bit integer)
    /// becomes `u < (a - mags[j]) * (inv_gap[j] * 2^24)`, the same test:
    /// the scaling is exact, and where the product is below the normal
    /// range (so rounds differently) both sides are positive and below
    /// 2^-24, true exactly when `u` is 0.
    mag_gap: Vec<u64>,
}

impl Packed {
    fn new(lut: (&[u8], &[f32]), floor: (&[u8], &[f32]), mags: &[f32], inv_gap: &[f32]) -> Packed {
        let entry = |key: usize, (lo, thr): (&[u8], &[f32])| -> u32 {
            let t = if thr[key].is_finite() {
                let bits = thr[key].to_bits();
                assert_eq!(bits >> 16, key as u32, "a threshold lies in its bucket");
                bits & 0xffff
            } else {
                0x10000
            };
            (((lo[key] as u32) << 17) + 0x20000 - t).wrapping_sub((key as u32) << 16)
        };
        // The last bucket (that of 1.0, to which the scalar loops also clamp
        // larger keys) has no threshold in either table.
        assert!(!lut.1[LUT_LEN - 1].is_finite() && !floor.1[LUT_LEN - 1].is_finite());
        // Keys 0..=first hold the entry of key 0 (no threshold) in both tables.
        let same = |(lo, thr): (&[u8], &[f32])| {
            (1..LUT_LEN)
                .find(|&k| lo[k] != lo[0] || thr[k].is_finite())
                .unwrap_or(LUT_LEN)
                - 1
        };
        assert!(!lut.1[0].is_finite() && !floor.1[0].is_finite());
        let first = same(lut).min(same(floor));
        Packed {
            first: first as u32,
            near: (first..LUT_LEN).map(|k| entry(k, lut)).collect(),
            floor: (first..LUT_LEN).map(|k| entry(k, floor)).collect(),
            mag_gap: mags
                .iter()
                .zip(inv_gap)
                .map(|(m, g)| {
                    let g24 = g * (1u32 << 24) as f32;
                    assert_eq!(g24 / (1u32 << 24) as f32, *g, "exact scaling");
                    m.to_bits() as u64 | (g24.to_bits() as u64) << 32
                })
                .collect(),
        }
    }
}

/// Number of buckets: keys `0..=0x3f80` (0x3f80 is the key of 1.0).
const LUT_LEN: usize = 0x3f81;

struct Books {
    signed: Book,
    unsigned: Book,
}

fn books() -> &'static Books {
    static BOOKS: OnceLock<Books> = OnceLock::new();
    BOOKS.get_or_init(|| Books {
        signed: Book::new(true),
        unsigned: Book::new(false),
    })
}

impl Book {
    fn new(signed: bool) -> Book {
        // Magnitudes: 0, the midpoints of linspace(0.1, 1, n_k + 1) scaled by
        // 10^(k-6) for k = 0..6, and 1.
        let mut mags: Vec<f64> = vec![0.0];
        for k in 0..7u32 {
            let n = if signed {
                1usize << k
            } else {
                1usize << (k + 1)
            };
            let scale = 10f64.powi(k as i32 - 6);
            for j in 0..n {
                let a = 0.1 + 0.9 * j as f64 / n as f64;
                let b = 0.1 + 0.9 * (j + 1) as f64 / n as f64;
                mags.push(scale * (a + b) / 2.0);
            }
        }
        mags.push(1.0);
        let mags: Vec<f32> = mags.iter().map(|&m| m as f32).collect();
        let mut values = [0f32; 256];
        if signed {
            // 127 negative means, 0, 127 positive means, 1.
            for (j, &m) in mags.iter().enumerate().skip(1).take(127) {
                values[127 - j] = -m;
                values[127 + j] = m;
            }
            values[255] = 1.0;
        } else {
            values.copy_from_slice(&mags);
        }
        let mids: Vec<f32> = mags
            .windows(2)
            .map(|w| ((w[0] as f64 + w[1] as f64) / 2.0) as f32)
            .collect();
        let mut lut_lo = vec![0u8; LUT_LEN];
        let mut lut_thr = vec![f32::INFINITY; LUT_LEN];
        for key in 0..LUT_LEN {
            let lo = f32::from_bits((key as u32) << 16);
            let hi = f32::from_bits(((key as u32) + 1) << 16);
            let c = mids.partition_point(|&m| m <= lo);
            lut_lo[key] = c as u8;
            if let Some(&m) = mids.get(c) {
                if m < hi {
                    lut_thr[key] = m;
                }
            }
        }
        let mut floor_lo = vec![0u8; LUT_LEN];
        let mut floor_thr = vec![f32::INFINITY; LUT_LEN];
        for key in 0..LUT_LEN {
            let lo = f32::from_bits((key as u32) << 16);
            let hi = f32::from_bits(((key as u32) + 1) << 16);
            let c = mags.partition_point(|&m| m <= lo);
            floor_lo[key] = c.saturating_sub(1) as u8;
            if let Some(&m) = mags.get(c) {
                if m < hi {
                    floor_thr[key] = m;
                }
            }
        }
        let mut inv_gap: Vec<f32> = mags
            .windows(2)
            .map(|w| (1.0 / (w[1] as f64 - w[0] as f64)) as f32)
            .collect();
        inv_gap.push(0.0);
        let packed = Packed::new(
            (&lut_lo, &lut_thr),
            (&floor_lo, &floor_thr),
            &mags,
            &inv_gap,
        );
        let mut planes = [[0u8; 256]; 4];
        for (c, v) in values.iter().enumerate() {
            for (q, plane) in planes.iter_mut().enumerate() {
                plane[c] = (v.to_bits() >> (8 * q)) as u8;
            }
        }
        Book {
            signed,
            planes,
            values,
            mags,
            mids,
            lut_lo,
            lut_thr,
            floor_lo,
            floor_thr,
            inv_gap,
            packed,
        }
    }

    /// Index of the largest magnitude <= `a`.
    #[inline(always)]
    fn floor_index(&self, a: f32) -> usize {
        let key = ((a.to_bits() >> 16) as usize).min(LUT_LEN - 1);
        self.floor_lo[key] as usize + (a >= self.floor_thr[key]) as usize
    }

    /// Stochastic rounding of `a` to one of the two magnitudes around it,
    /// up with probability proportional to the distance from the lower one;
    /// `top` is the largest index allowed. `r` is uniform in [0, 1).
    #[inline(always)]
    fn stochastic_index(&self, a: f32, r: f32, top: usize) -> usize {
        let lo = self.floor_index(a).min(top);
        if lo >= top {
            return top;
        }
        let p = (a - self.mags[lo]) * self.inv_gap[lo];
        lo + (r < p) as usize
    }

    /// Index of the magnitude nearest to `a` (expected in `[0, 1]`; other
    /// values, NaN included, are clamped to a bucket).
    #[inline(always)]
    fn magnitude_index(&self, a: f32) -> usize {
        let key = ((a.to_bits() >> 16) as usize).min(LUT_LEN - 1);
        self.lut_lo[key] as usize + (a >= self.lut_thr[key]) as usize
    }
}

/// Uniform in [0, 1) from a random stream (see [`bf16_encode`]).
#[inline(always)]
fn uniform(base: u32, idx: u32) -> f32 {
    (mix32(idx.wrapping_mul(0x9e37_79b9) ^ base) >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// How 8-bit encoding rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// To the nearest code (bitsandbytes' optimizers).
    Nearest,
    /// Stochastically between the two codes around the value, with the
    /// random stream `key`; the first value is element `offset` of its tensor.
    Stochastic { key: u64, offset: usize },
}

/// Quantizes `src` block by block into `codes` and `scales`
/// (`scales.len() == src.len().div_ceil(block)`). Blocks start at multiples
/// of `block` from `src[0]`.
#[inline(always)]
pub fn q8_encode(
    src: &[f32],
    codes: &mut [u8],
    scales: &mut [f32],
    block: usize,
    rounding: Rounding,
) {
    q8_encode_with(src, codes, scales, block, rounding, Loops::best())
}

/// [`q8_encode`] with `loops` (vector loops the CPU lacks fall back to the
/// scalar ones); the codes and scales are the same for all.
#[inline(always)]
fn q8_encode_with(
    src: &[f32],
    codes: &mut [u8],
    scales: &mut [f32],
    block: usize,
    rounding: Rounding,
    loops: Loops,
) {
    let b = books();
    let block = block.max(1);
    for (blk, ((x, c), s)) in src
        .chunks(block)
        .zip(codes.chunks_mut(block))
        .zip(scales.iter_mut())
        .enumerate()
    {
        let (absmax, neg, nan) = block_stats(x, loops);
        if nan {
            *s = f32::NAN;
            c.fill(0);
            continue;
        }
        let inv = if absmax > 0.0 { 1.0 / absmax } else { 0.0 };
        *s = if neg { -absmax } else { absmax };
        let book = if neg { &b.signed } else { &b.unsigned };
        let mode = match rounding {
            Rounding::Nearest => BlockMode::Nearest,
            Rounding::Stochastic { key, offset } => {
                // Blocks never straddle a 2^32 boundary of the stream (block
                // sizes are powers of two); one base per block's segment.
                let abs = offset + blk * block;
                let base =
                    mix64(key ^ ((abs as u64) >> 32).wrapping_mul(0x9e37_79b9_7f4a_7c15)) as u32;
                BlockMode::Stochastic {
                    base,
                    lo: abs as u32,
                }
            }
        };
        encode_block(book, neg, x, c, inv, mode, loops);
    }
}

/// `(max |v|, any v < 0, any NaN)` of a block (`max |v|` only meaningful
/// without NaN), with the vector loop `loops` where the CPU has it.
#[inline(always)]
fn block_stats(x: &[f32], loops: Loops) -> (f32, bool, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if loops == Loops::Avx512 && avx512::available() {
            // SAFETY: AVX-512F checked just above.
            return unsafe { avx512::block_stats(x) };
        }
        if loops == Loops::Avx2 && avx2::available() {
            // SAFETY: AVX2 checked just above.
            return unsafe { avx2::block_stats(x) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = loops;
    let (mut absmax, mut neg, mut nan) = (0f32, false, false);
    for &v in x {
        absmax = absmax.max(v.abs());
        neg |= v < 0.0;
        nan |= v.is_nan();
    }
    (absmax, neg, nan)
}

/// How one block is rounded: to the nearest code, or stochastically with
/// the block's random stream (`base`, index of its first element `lo`).
/// The vector loops (`avx512`, `avx2`) take it as it is.
#[derive(Clone, Copy)]
enum BlockMode {
    Nearest,
    Stochastic { base: u32, lo: u32 },
}

/// Encodes one block `x` (no NaN) with `inv = 1 / absmax`, in the signed
/// book when `signed`: the vector loop `loops` (where the CPU has it) for
/// whole groups of 16 or 8 values, the scalar loop for the rest; all give
/// the same codes.
#[inline(always)]
fn encode_block(
    book: &Book,
    signed: bool,
    x: &[f32],
    c: &mut [u8],
    inv: f32,
    mode: BlockMode,
    loops: Loops,
) {
    #[allow(unused_mut)]
    let mut start = 0;
    #[cfg(target_arch = "x86_64")]
    {
        debug_assert_eq!(book.signed, signed);
        if loops == Loops::Avx512 && avx512::available() {
            // SAFETY: AVX-512F checked just above.
            start = unsafe { avx512::encode_block(book, x, c, inv, mode) };
        } else if loops == Loops::Avx2 && avx2::available() {
            // SAFETY: AVX2 checked just above.
            start = unsafe { avx2::encode_block(book, x, c, inv, mode) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = loops;
    let (x, c) = (&x[start..], &mut c[start..]);
    match mode {
        BlockMode::Nearest => {
            if signed {
                for (v, code) in x.iter().zip(c.iter_mut()) {
                    let j = book.magnitude_index((v.abs() * inv).min(1.0));
                    *code = signed_code(*v, j);
                }
            } else {
                // No value is below zero, but -0.0 may be there: its
                // magnitude is 0 (its bits would land in the bucket of 1).
                for (v, code) in x.iter().zip(c.iter_mut()) {
                    *code = book.magnitude_index((v.abs() * inv).min(1.0)) as u8;
                }
            }
        }
        BlockMode::Stochastic { base, lo } => {
            let lo = lo.wrapping_add(start as u32);
            if signed {
                for (i, (v, code)) in x.iter().zip(c.iter_mut()).enumerate() {
                    let a = (v.abs() * inv).min(1.0);
                    let r = uniform(base, lo.wrapping_add(i as u32));
                    let top = if *v < 0.0 { 127 } else { 128 };
                    *code = signed_code(*v, book.stochastic_index(a, r, top));
                }
            } else {
                for (i, (v, code)) in x.iter().zip(c.iter_mut()).enumerate() {
                    let a = (v.abs() * inv).min(1.0);
                    let r = uniform(base, lo.wrapping_add(i as u32));
                    *code = book.stochastic_index(a, r, 255) as u8;
                }
            }
        }
    }
}

/// The code of a value of the signed book from its sign and magnitude index
/// (negative magnitudes stop below 1, which only the positive side has).
#[inline(always)]
fn signed_code(v: f32, j: usize) -> u8 {
    if v < 0.0 {
        (127 - j.min(127)) as u8
    } else {
        (127 + j.min(128)) as u8
    }
}

/// Decodes block-wise 8-bit values into f32.
#[inline(always)]
pub fn q8_decode(codes: &[u8], scales: &[f32], dst: &mut [f32], block: usize) {
    q8_decode_with(codes, scales, dst, block, Loops::best())
}

/// [`q8_decode`] with `loops` (vector loops the CPU lacks fall back to the
/// scalar one); the values are the same for all.
#[inline(always)]
fn q8_decode_with(codes: &[u8], scales: &[f32], dst: &mut [f32], block: usize, loops: Loops) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = loops;
    let b = books();
    let block = block.max(1);
    for ((c, &s), x) in codes
        .chunks(block)
        .zip(scales.iter())
        .zip(dst.chunks_mut(block))
    {
        let book = if s.is_sign_negative() {
            &b.signed
        } else {
            &b.unsigned
        };
        let table = &book.values;
        let absmax = s.abs();
        #[cfg(target_arch = "x86_64")]
        {
            if loops == Loops::Avx512 && avx512::has_vbmi() {
                // SAFETY: AVX-512F, AVX-512BW and AVX512_VBMI checked just above.
                let done = unsafe { avx512::decode_block_vbmi(c, &book.planes, absmax, x) };
                // SAFETY: AVX-512F checked with them.
                unsafe { avx512::decode_block(&c[done..], table, absmax, &mut x[done..]) };
                continue;
            }
            if loops == Loops::Avx512 && avx512::available() {
                // SAFETY: AVX-512F checked just above.
                unsafe { avx512::decode_block(c, table, absmax, x) };
                continue;
            }
            if loops == Loops::Avx2 && avx2::available() {
                // SAFETY: AVX2 checked just above.
                unsafe { avx2::decode_block(c, table, absmax, x) };
                continue;
            }
        }
        for (code, v) in c.iter().zip(x.iter_mut()) {
            *v = table[*code as usize] * absmax;
        }
    }
}

/// The code book values (`signed` or unsigned), ascending.
pub fn q8_book(signed: bool) -> &'static [f32; 256] {
    let b = books();
    if signed {
        &b.signed.values
    } else {
        &b.unsigned.values
    }
}

/// Brute-force nearest magnitude index (reference for the lookup tables).
#[doc(hidden)]
pub fn q8_nearest_magnitude(signed: bool, a: f32) -> (usize, usize) {
    let b = books();
    let book = if signed { &b.signed } else { &b.unsigned };
    let brute = book.mids.partition_point(|&m| m <= a);
    (book.magnitude_index(a), brute)
}

/// Number of 8-bit blocks for `n` values.
pub fn q8_blocks(n: usize, block: usize) -> usize {
    n.div_ceil(block.max(1))
}

/// The largest magnitude of the books (1.0) and their number of entries, for tests.
#[doc(hidden)]
pub fn q8_magnitudes(signed: bool) -> &'static [f32] {
    let b = books();
    if signed {
        &b.signed.mags
    } else {
        &b.unsigned.mags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_loops_equal_the_scalar_loops_skipped_without_avx512() {
        // Where the CPU lacks AVX-512F, both sides would run the scalar loop.
        if !crate::cpu::avx512_test_runs("vector_loops_equal_the_scalar_loops_skipped_without_avx512") {
            return;
        }
        loops_equal_the_scalar_loops(Loops::Avx512);
    }

    #[test]
    fn avx2_loops_equal_the_scalar_loops_skipped_without_avx2() {
        // The AVX2 loops run here even where the CPU has AVX-512.
        #[cfg(target_arch = "x86_64")]
        {
            if avx2::available() {
                loops_equal_the_scalar_loops(Loops::Avx2);
                return;
            }
        }
        eprintln!("SKIPPED avx2_loops_equal_the_scalar_loops_skipped_without_avx2: this CPU has no AVX2");
    }

    /// `loops` against the scalar loops, bit for bit, on blocks of every
    /// kind and on a dense sweep of the magnitudes in [0, 1].
    fn loops_equal_the_scalar_loops(loops: Loops) {
        // Values of every kind the codec sees: both signs, zeros of both
        // signs, subnormals, exact bucket and midpoint values of the books,
        // infinities (a block with inf has absmax inf and inv 0), NaN
        // blocks, all-zero blocks; lengths off the 16-lane groups.
        let mut rng = crate::rng::SplitMix64::new(5);
        let mut special = vec![0.0f32, -0.0, 1e-40, -1e-40, f32::MIN_POSITIVE, 1.0, -1.0];
        for signed in [false, true] {
            let b = books();
            let book = if signed { &b.signed } else { &b.unsigned };
            special.extend(book.mids.iter().copied());
            special.extend(book.mags.iter().copied());
            special.extend(book.mags.iter().map(|m| -m));
        }
        for case in 0..60 {
            let len = [1usize, 15, 16, 17, 255, 256, 257, 1000, 4099][case % 9];
            let block = [16usize, 256, 2048, 7][case % 4];
            let all_pos = case % 3 == 0;
            // Every fourth case: only book values and midpoints, with
            // absmax exactly 1 in every block, so that values land exactly
            // on the tables' thresholds.
            let exact = case % 4 == 1;
            let mut src: Vec<f32> = (0..len)
                .map(|_| {
                    let u = rng.uniform();
                    let x = if exact || u < 0.2 {
                        special[(rng.next_u64() % special.len() as u64) as usize]
                    } else {
                        ((rng.uniform() - 0.5) * 10f64.powf(rng.uniform() * 12.0 - 8.0)) as f32
                    };
                    if all_pos {
                        x.abs()
                    } else {
                        x
                    }
                })
                .collect();
            if exact {
                for i in (0..len).step_by(block) {
                    src[i] = if all_pos || case % 8 == 1 { 1.0 } else { -1.0 };
                }
            }
            if case % 7 == 1 && !exact {
                src[len / 2] = f32::INFINITY;
            }
            if case % 11 == 2 {
                src[len - 1] = f32::NAN;
            }
            if case % 13 == 3 {
                src.iter_mut().take(len.min(block)).for_each(|v| *v = 0.0);
            }
            let nb = q8_blocks(len, block);
            for rounding in [
                Rounding::Nearest,
                Rounding::Stochastic {
                    key: 0xdead_beef ^ case as u64,
                    offset: case * 4096,
                },
            ] {
                let (mut c1, mut s1) = (vec![0u8; len], vec![0f32; nb]);
                let (mut c2, mut s2) = (vec![0u8; len], vec![0f32; nb]);
                q8_encode_with(&src, &mut c1, &mut s1, block, rounding, loops);
                q8_encode_with(&src, &mut c2, &mut s2, block, rounding, Loops::Scalar);
                assert_eq!(c1, c2, "case {case} {rounding:?}");
                assert!(s1.iter().zip(&s2).all(|(a, b)| a.to_bits() == b.to_bits()));
                let (mut d1, mut d2) = (vec![0f32; len], vec![0f32; len]);
                q8_decode_with(&c1, &s1, &mut d1, block, loops);
                q8_decode_with(&c1, &s1, &mut d2, block, Loops::Scalar);
                assert!(
                    d1.iter().zip(&d2).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "case {case}"
                );
            }
        }
        // Every 61st f32 bit pattern from 0 to 1 (17 million values, all
        // 16K buckets, both books, both roundings), each block holding 1.0
        // so that the magnitudes are the values themselves, and each signed
        // block a tiny negative value.
        let stride = if cfg!(debug_assertions) { 6007 } else { 61 };
        let sweep: Vec<f32> = (0..=0x3f80_0000u32)
            .step_by(stride)
            .map(f32::from_bits)
            .collect();
        let block = 256;
        for signed in [false, true] {
            let mut src = Vec::with_capacity(sweep.len() + sweep.len() / 250 * 6);
            for part in sweep.chunks(block - 2) {
                src.push(1.0);
                src.push(if signed { -1e-30 } else { 0.0 });
                src.extend_from_slice(part);
            }
            let nb = q8_blocks(src.len(), block);
            for rounding in [
                Rounding::Nearest,
                Rounding::Stochastic { key: 77, offset: 3 << 20 },
            ] {
                let (mut c1, mut s1) = (vec![0u8; src.len()], vec![0f32; nb]);
                let (mut c2, mut s2) = (vec![0u8; src.len()], vec![0f32; nb]);
                q8_encode_with(&src, &mut c1, &mut s1, block, rounding, loops);
                q8_encode_with(&src, &mut c2, &mut s2, block, rounding, Loops::Scalar);
                assert!(c1 == c2, "sweep, signed={signed} {rounding:?}");
                assert!(s1.iter().zip(&s2).all(|(a, b)| a.to_bits() == b.to_bits()));
            }
        }
    }

    /// The vector loops' lookup in the packed tables (`Packed`), written
    /// out per value.
    fn packed_index(book: &Book, table: &[u32], a: f32) -> usize {
        let bits = a.to_bits().max(book.packed.first << 16);
        let entry = table[((bits >> 16) - book.packed.first) as usize];
        (entry.wrapping_add(bits) >> 17) as usize
    }

    #[test]
    fn packed_tables_equal_the_bucket_tables_on_every_magnitude() {
        // Every f32 bit pattern from 0 to 1 (in debug builds every 257th),
        // both books: the packed entries give the index of the bucket
        // tables (nearest and floor), which the brute-force test below and
        // `lookup_equals_brute_force_nearest` check against the code book.
        let b = books();
        let stride = if cfg!(debug_assertions) { 257 } else { 1 };
        for book in [&b.signed, &b.unsigned] {
            let pk = &book.packed;
            assert_eq!(pk.near.len(), LUT_LEN - pk.first as usize);
            // The tables are the small ones the gathers are meant for.
            assert!(pk.near.len() < 4096, "{}", pk.near.len());
            for bits in (0..=0x3f80_0000u32).step_by(stride) {
                let a = f32::from_bits(bits);
                let near = book.magnitude_index(a);
                let floor = book.floor_index(a);
                if packed_index(book, &pk.near, a) != near
                    || packed_index(book, &pk.floor, a) != floor
                {
                    panic!("signed={} a={a:e} ({bits:#x})", book.signed);
                }
            }
            // Every 4099th pattern against brute force: the nearest
            // magnitude (ties to the larger one, as the midpoints split
            // them) and the largest magnitude not above the value.
            for bits in (0..=0x3f80_0000u32).step_by(4099 * stride) {
                let a = f32::from_bits(bits);
                let near = book.mids.partition_point(|&m| m <= a);
                let floor = book.mags.partition_point(|&m| m <= a) - 1;
                assert_eq!(packed_index(book, &pk.near, a), near, "a={a:e}");
                assert_eq!(packed_index(book, &pk.floor, a), floor, "a={a:e}");
            }
        }
    }

    #[test]
    fn lookup_equals_brute_force_nearest() {
        for signed in [false, true] {
            // Every bucket boundary, midpoints, and a dense sweep.
            let mut probes: Vec<f32> = Vec::new();
            for &m in &books().signed.mids {
                probes.extend([
                    m,
                    f32::from_bits(m.to_bits() - 1),
                    f32::from_bits(m.to_bits() + 1),
                ]);
            }
            for &m in &books().unsigned.mids {
                probes.extend([
                    m,
                    f32::from_bits(m.to_bits() - 1),
                    f32::from_bits(m.to_bits() + 1),
                ]);
            }
            for key in 0..LUT_LEN as u32 {
                probes.push(f32::from_bits(key << 16));
                probes.push(f32::from_bits((key << 16) | 0x7fff));
            }
            for p in probes.into_iter().filter(|p| (0.0..=1.0).contains(p)) {
                let (got, want) = q8_nearest_magnitude(signed, p);
                assert_eq!(got, want, "signed={signed} a={p:e}");
            }
        }
    }

    #[test]
    fn books_match_dynamic_map_shape() {
        let s = q8_book(true);
        let u = q8_book(false);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert!(u.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(s[255], 1.0);
        assert_eq!(u[255], 1.0);
        assert_eq!(u[0], 0.0);
        assert_eq!(s[127], 0.0);
        // Smallest non-zero magnitude: 1e-6 * (0.1 + 0.45) (signed: one step in [0.1, 1]).
        assert!((s[128] as f64 - 0.55e-6).abs() < 1e-12);
        assert!((u[1] as f64 - 1e-6 * (0.1 + 0.225)).abs() < 1e-12);
        // Largest negative magnitude: the top step of [0.1, 1] in 64 steps (no -1).
        assert!((s[0] as f64 + (0.1 + 0.9 * 63.5 / 64.0)).abs() < 1e-6);
    }

    #[test]
    fn q8_round_trip_error_is_bounded() {
        let block = 256;
        let n = 1000;
        let src: Vec<f32> = (0..n)
            .map(|i| ((i as f32 * 0.37).sin() * 3.0) * if i % 3 == 0 { 1e-3 } else { 1.0 })
            .collect();
        let mut codes = vec![0u8; n];
        let mut scales = vec![0f32; q8_blocks(n, block)];
        q8_encode(&src, &mut codes, &mut scales, block, Rounding::Nearest);
        let mut back = vec![0f32; n];
        q8_decode(&codes, &scales, &mut back, block);
        for (blk, (x, y)) in src.chunks(block).zip(back.chunks(block)).enumerate() {
            let absmax = scales[blk].abs();
            for (&a, &b) in x.iter().zip(y) {
                // Half the largest gap of the signed book: 0.9/128 of the block maximum.
                assert!(
                    (a - b).abs() <= absmax * (0.9 / 128.0) * (1.0 + 1e-5),
                    "{a} vs {b}"
                );
            }
            // A positive block maximum is exact (the books hold 1 but not -1).
            let (i, m) =
                x.iter().enumerate().fold(
                    (0, 0f32),
                    |m, (i, &v)| if v.abs() > m.1.abs() { (i, v) } else { m },
                );
            if m > 0.0 {
                assert_eq!(y[i], x[i]);
            }
        }
        // Idempotent where the block maximum is exact (here: non-negative values).
        let pos: Vec<f32> = src.iter().map(|v| v.abs()).collect();
        q8_encode(&pos, &mut codes, &mut scales, block, Rounding::Nearest);
        q8_decode(&codes, &scales, &mut back, block);
        let mut codes2 = vec![0u8; n];
        let mut scales2 = vec![0f32; scales.len()];
        q8_encode(&back, &mut codes2, &mut scales2, block, Rounding::Nearest);
        assert_eq!(codes, codes2);
        assert_eq!(scales, scales2);
    }

    #[test]
    fn q8_stochastic_rounding_is_unbiased_between_neighbours() {
        // One block per value: the block maximum 1.0 fixes the scale and the
        // value under test sits between two codes.
        let block = 64;
        for (x, signed) in [
            (0.3137f32, false),
            (-0.0421, true),
            (0.00077, false),
            (0.5, true),
        ] {
            let reps = 4000;
            let mut src = Vec::with_capacity(reps * block);
            for _ in 0..reps {
                let mut b = vec![x; block];
                b[0] = 1.0;
                if signed {
                    b[1] = -1e-3;
                }
                src.extend(b);
            }
            let mut codes = vec![0u8; src.len()];
            let mut scales = vec![0f32; q8_blocks(src.len(), block)];
            q8_encode(
                &src,
                &mut codes,
                &mut scales,
                block,
                Rounding::Stochastic { key: 5, offset: 0 },
            );
            let mut back = vec![0f32; src.len()];
            q8_decode(&codes, &scales, &mut back, block);
            let vals: Vec<f32> = back.chunks(block).map(|b| b[2]).collect();
            let book = q8_book(signed);
            let hi = book.partition_point(|&v| v < x);
            let (lo_v, hi_v) = (book[hi - 1], book[hi]);
            assert!(
                vals.iter().all(|&v| v == lo_v || v == hi_v),
                "{x}: {lo_v} {hi_v}"
            );
            let mean = vals.iter().map(|&v| v as f64).sum::<f64>() / reps as f64;
            let gap = (hi_v - lo_v) as f64;
            assert!(
                (mean - x as f64).abs() < 0.05 * gap,
                "{x}: mean {mean}, gap {gap}"
            );
            // Block maxima stay exact.
            assert!(back.chunks(block).all(|b| b[0] == 1.0));
        }
    }

    #[test]
    fn q8_non_finite_does_not_panic() {
        let src = [f32::NAN, 1.0, f32::INFINITY, -2.0];
        let mut codes = [0u8; 4];
        let mut scales = [0f32; 2];
        q8_encode(&src, &mut codes, &mut scales, 2, Rounding::Nearest);
        let mut back = [0f32; 4];
        q8_decode(&codes, &scales, &mut back, 2);
        assert!(back[0].is_nan() && back[1].is_nan());
    }

    #[test]
    fn bf16_stochastic_rounding_is_unbiased_and_exact_on_bf16_values() {
        // Exactly representable values never move.
        let exact: Vec<f32> = (0..1000)
            .map(|i| f32::from_bits(((i * 7919) as u32 % 30000) << 16))
            .collect();
        let mut enc = vec![0u16; exact.len()];
        bf16_encode(&exact, &mut enc, 42, 0);
        let mut dec = vec![0f32; exact.len()];
        bf16_decode(&enc, &mut dec);
        assert_eq!(exact, dec);
        // The mean of many roundings of one value converges to it.
        let x = 1.0f32 + 0.3 * 2f32.powi(-7);
        let src = vec![x; 200_000];
        let mut enc = vec![0u16; src.len()];
        bf16_encode(&src, &mut enc, 7, 0);
        let mut dec = vec![0f32; src.len()];
        bf16_decode(&enc, &mut dec);
        let mean = dec.iter().map(|&v| v as f64).sum::<f64>() / dec.len() as f64;
        let ulp = 2f64.powi(-7);
        assert!((mean - x as f64).abs() < 0.01 * ulp, "mean {mean} vs {x}");
        assert!(dec.iter().all(|&v| v == 1.0 || v == 1.0 + 2f32.powi(-7)));
        // NaN stays NaN, infinities stay infinite.
        let mut e = [0u16; 3];
        bf16_encode(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY], &mut e, 1, 0);
        let mut d = [0f32; 3];
        bf16_decode(&e, &mut d);
        assert!(d[0].is_nan() && d[1] == f32::INFINITY && d[2] == f32::NEG_INFINITY);
    }

    /// The rounding bits of one element over many steps (fresh bases), and
    /// of many elements within one step, fill 16 equal bins evenly
    /// (chi-square with 15 degrees of freedom under 40, p < 0.001), and the
    /// Weyl form used by the element loops gives the same codes.
    #[test]
    fn bf16_rounding_bits_are_uniform_and_the_weyl_form_agrees() {
        let chi2 = |bins: &[u64; 16], n: u64| {
            let e = n as f64 / 16.0;
            bins.iter().map(|&b| (b as f64 - e).powi(2) / e).sum::<f64>()
        };
        let n = 1u64 << 16;
        for idx in [0u32, 1, 12345, u32::MAX] {
            let mut bins = [0u64; 16];
            for step in 0..n {
                let base = stream_key(7, 99, 1, step, 2) as u32;
                let r = weyl_start(base, idx) >> 16;
                bins[(r >> 12) as usize] += 1;
            }
            assert!(chi2(&bins, n) < 40.0, "element {idx}: {bins:?}");
        }
        let base = stream_key(3, 5, 0, 17, 2) as u32;
        let mut bins = [0u64; 16];
        for idx in 0..n as u32 {
            let r = weyl_start(base, idx) >> 16;
            bins[(r >> 12) as usize] += 1;
        }
        assert!(chi2(&bins, n) < 40.0, "one step: {bins:?}");
        let mut weyl = weyl_start(base, 1000);
        for i in 1000..5000u32 {
            let x = f32::from_bits(i.wrapping_mul(0x0101_0111));
            assert_eq!(bf16_round(x, base, i), bf16_round_weyl(x, weyl));
            weyl = weyl.wrapping_add(WEYL);
        }
    }

    /// One element rounded at many steps (a fresh stream key per step, as
    /// the optimizer's state is): the mean of its roundings converges to
    /// the value, at every position of a vector loop's lanes.
    #[test]
    fn bf16_rounding_of_one_element_over_steps_is_unbiased() {
        let x = 3.0f32 + 0.37 * 2f32.powi(-6);
        let src = [x; 19];
        let steps = 40_000u64;
        let mut sums = [0f64; 19];
        let mut enc = [0u16; 19];
        let mut dec = [0f32; 19];
        for step in 0..steps {
            bf16_encode(&src, &mut enc, stream_key(11, 5, 1, step, 2), 1_000_003);
            bf16_decode(&enc, &mut dec);
            for (s, &d) in sums.iter_mut().zip(&dec) {
                *s += d as f64;
            }
        }
        let ulp = 2f64.powi(-6);
        for (i, s) in sums.iter().enumerate() {
            let mean = s / steps as f64;
            // Standard error about 0.0024 ulp; the bound is 5 of them.
            assert!((mean - x as f64).abs() < 0.012 * ulp, "element {i}: mean {mean} vs {x}");
        }
    }

    #[test]
    fn bf16_stream_depends_on_index_not_on_split() {
        let src: Vec<f32> = (0..5000).map(|i| (i as f32 * 0.123).cos()).collect();
        let mut whole = vec![0u16; src.len()];
        bf16_encode(&src, &mut whole, 99, 1 << 20);
        let mut parts = vec![0u16; src.len()];
        for (k, (s, d)) in src.chunks(777).zip(parts.chunks_mut(777)).enumerate() {
            bf16_encode(s, d, 99, (1 << 20) + k * 777);
        }
        assert_eq!(whole, parts);
    }
}
