//! Products of bfloat16-rounded inputs on AMX tiles (`tdpbf16ps`, f32
//! accumulation), for x86-64 CPUs with AMX-BF16 on Linux.
//!
//! Before any tile instruction the process asks the kernel for the
//! tile-data permission (`arch_prctl(ARCH_REQ_XCOMP_PERM,
//! XFEATURE_XTILEDATA)`), once; the CPU's AMX-TILE and AMX-BF16 bits, the
//! OS-enabled tile state (XCR0 bits 17 and 18) and tile palette 1's sizes
//! are checked first. Without all of them [`available`] is false, with the
//! reason in [`status`], and the products run on the AVX-512 kernels.
//!
//! Layout: the tiles are configured as eight 16 x 64-byte tiles. `B` is
//! packed as for the AVX-512 bf16 kernel (panels of 32 columns, one bf16
//! pair of consecutive inner-dimension values per 32-bit lane, low half
//! first), its steps zero-padded to a multiple of 16 so that one tile of
//! `B` is 16 steps of 16 columns (row stride 128 bytes). Each row block's
//! slice of `A` is packed in groups of 16 rows, tile after tile (16 rows of
//! 16 pairs, 1 KiB, contiguous), rows zero-padded to a multiple of 32.
//! A 32 x 32 output tile lives in four accumulator tiles (`tmm0..3`), `A`
//! in `tmm4, 5`, `B` in `tmm6, 7`; the inner dimension runs in chunks of
//! [`KC_TILES`] tiles (a chunk of a `B` panel stays in the L1 cache for
//! every 32 rows of the block), the sums stored to f32 between chunks
//! (exactly); then `alpha` times the sums plus `beta C` is written to `C`.
//! Every output element is the same sequence of operations whatever the
//! thread count (row blocks are multiples of 32 rows).

use super::avx512::{bf16_16, pack_panels, Kind};
use super::{bf16_bits, row_blocks, PackedBlock, Product, View, ROW_BLOCK};
use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// Output rows and columns of one pass of the tile kernel.
const TILE: usize = 32;
/// Columns of a packed panel of `B` (the AVX-512 kernel's `NR`).
const NR: usize = super::avx512::NR;
/// Inner-dimension steps (bf16 pairs) of one tile.
const KT: usize = 16;

/// Whether the AMX kernel can run here; the reason when it cannot.
/// Checked once (the first call asks Linux for the tile-data permission).
pub(super) fn status() -> Result<(), &'static str> {
    static STATUS: OnceLock<Result<(), &'static str>> = OnceLock::new();
    *STATUS.get_or_init(detect)
}

/// Whether the AMX kernel runs on this CPU (see [`status`]).
pub(super) fn available() -> bool {
    status().is_ok()
}

/// Whether the CPU reports AMX-TILE and AMX-BF16 (whatever the OS allows).
pub(super) fn cpu_has_amx_bf16() -> bool {
    // Leaf 7 is read only when the highest basic leaf covers it.
    if __cpuid(0).eax < 7 {
        return false;
    }
    let l7 = __cpuid_count(7, 0);
    (l7.edx >> 22) & 1 == 1 && (l7.edx >> 24) & 1 == 1
}

fn detect() -> Result<(), &'static str> {
    if !cpu_has_amx_bf16() {
        return Err("the CPU has no AMX-BF16");
    }
    if std::env::var_os("OPTIMIST_NO_AMX").is_some_and(|v| !v.is_empty() && v != "0") {
        return Err("AMX turned off by the environment variable OPTIMIST_NO_AMX");
    }
    if !(std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512bf16")
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("xsave"))
    {
        return Err("AMX without AVX-512F/BW, AVX512-BF16, AVX2 or XSAVE");
    }
    // SAFETY: CPUID exists on x86-64; OSXSAVE (CPUID.1:ECX bit 27) is
    // checked before XGETBV, and leaves 0x1d/0x1e only when leaf 0 says
    // they exist.
    unsafe {
        if (__cpuid(1).ecx >> 27) & 1 == 0 {
            return Err("the OS has not enabled XSAVE");
        }
        if xcr0() & (3 << 17) != (3 << 17) {
            return Err("the OS has not enabled the AMX tile state (XCR0 bits 17, 18)");
        }
        if __cpuid(0).eax < 0x1e {
            return Err("the CPU does not describe its tile palettes (CPUID 0x1d, 0x1e)");
        }
        let palette = __cpuid_count(0x1d, 1);
        let bytes_per_row = palette.ebx & 0xffff;
        let names = palette.ebx >> 16;
        let rows = palette.ecx & 0xffff;
        let tmul = __cpuid_count(0x1e, 0).ebx;
        if bytes_per_row < 64
            || names < 8
            || rows < 16
            || tmul & 0xff < 16
            || (tmul >> 8) & 0xffff < 64
        {
            return Err("tile palette 1 is smaller than 8 tiles of 16 x 64 bytes");
        }
    }
    request_permission()
}

/// XCR0, through XGETBV.
///
/// # Safety
/// The OS must have enabled XSAVE (CPUID.1:ECX.OSXSAVE).
#[target_feature(enable = "xsave")]
unsafe fn xcr0() -> u64 {
    _xgetbv(0)
}

/// Asks Linux for permission to use the tile data (once per process; the
/// permission covers every thread).
#[cfg(target_os = "linux")]
fn request_permission() -> Result<(), &'static str> {
    const SYS_ARCH_PRCTL: usize = 158;
    const ARCH_GET_XCOMP_PERM: usize = 0x1022;
    const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
    const XFEATURE_XTILEDATA: usize = 18;
    let ret: isize;
    // SAFETY: the arch_prctl system call with ARCH_REQ_XCOMP_PERM takes a
    // feature number and touches no memory of ours; `syscall` clobbers
    // rcx and r11, declared below.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL as isize => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if ret != 0 {
        return Err("Linux refused the AMX tile-data permission (arch_prctl)");
    }
    let mut mask: u64 = 0;
    let ret: isize;
    // SAFETY: ARCH_GET_XCOMP_PERM writes one u64 at the given address,
    // which is `mask`, live and writable for the call.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL as isize => ret,
            in("rdi") ARCH_GET_XCOMP_PERM,
            in("rsi") &mut mask as *mut u64,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if ret != 0 || (mask >> XFEATURE_XTILEDATA) & 1 == 0 {
        return Err("Linux did not grant the AMX tile-data permission");
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn request_permission() -> Result<(), &'static str> {
    Err("the AMX tile-data permission is only requested on Linux")
}

/// The 64-byte tile configuration: palette 1, eight tiles of 16 rows of
/// 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn new() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1; // palette
        for t in 0..8 {
            c[16 + 2 * t] = 64; // bytes per row (u16, little endian)
            c[48 + t] = 16; // rows
        }
        TileConfig(c)
    }
}

thread_local! {
    /// Packing buffers reused across products (taken out while in use).
    static PACK_B: std::cell::Cell<Vec<u32>> = const { std::cell::Cell::new(Vec::new()) };
    static PACK_A: std::cell::Cell<Vec<u32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// `C <- alpha A B + beta C` on AMX tiles, with inputs rounded to bf16
/// (nearest, ties to even). Arguments as checked by `gemm_with`: `A` is
/// `m x k`, `B` `k x n`, `C` row-major `m x n`, both views in bounds,
/// `m, n, k > 0`; with `upper` (`m == n`) only the row blocks' columns
/// from their first row on are written. Does nothing but return false when
/// [`available`] is false.
pub(super) fn gemm(product: &Product<'_>, c: &mut [f32]) -> bool {
    let (a, b, upper) = (&product.a, &product.b, product.upper);
    let (k, n) = (a.cols, b.cols);
    if !available()
        || k == 0
        || n == 0
        || b.rows != k
        || a.rows.checked_mul(n) != Some(c.len())
        || !a.in_bounds()
        || !b.in_bounds()
        || (upper && a.rows != n)
    {
        return false;
    }
    let steps = k.div_ceil(2);
    let steps16 = steps.div_ceil(KT) * KT;
    let mut bpack = PACK_B.with(|p| p.take());
    pack_b(b, steps, steps16, &mut bpack);
    let block = |(bi, rows): (usize, &mut [f32])| {
        let i0 = bi * ROW_BLOCK;
        let mut apack = PACK_A.with(|p| p.take());
        let mb = rows.len() / n;
        pack_a(a, i0, mb, steps16, &mut apack);
        let blk = PackedBlock {
            alpha: product.alpha,
            apack: &apack,
            steps: steps16,
            mb,
            bpack: &bpack,
            n,
            j0: product.first_column(i0),
            beta: product.beta,
            i0,
            zeros: (product.a.triangle, product.b.triangle),
        };
        // SAFETY: `available` checked AMX-BF16 with the tile permission,
        // AVX-512F/BW; the packed buffers have the sizes `run_block`
        // requires (`pack_a`, `pack_b`), `rows` is this block's `mb x n`
        // part of C and `j0` (0 or `i0`, a multiple of ROW_BLOCK, hence of
        // NR) is at most n (`upper` implies m == n).
        unsafe { run_block(blk, rows) };
        PACK_A.with(|p| p.set(apack));
    };
    row_blocks(c, ROW_BLOCK * n, block);
    PACK_B.with(|p| p.set(bpack));
    true
}

/// `B` (`k x n`, `steps = ceil(k / 2)`) packed into `ceil(n / NR)` panels
/// of `steps16 x NR` pairs, the steps beyond `steps` zero.
fn pack_b(b: &View<'_>, steps: usize, steps16: usize, out: &mut Vec<u32>) {
    debug_assert!(steps16 >= steps);
    out.clear();
    out.resize(b.cols.div_ceil(NR) * steps16 * NR, 0);
    pack_panels(Kind::Bf16, b, steps16 * NR, out);
}

/// Rows `i0..i0 + mb` of `A` packed for the tile loads: groups of 16
/// rows (zero rows up to a multiple of [`TILE`]), each group `steps16 /
/// 16` tiles of 16 rows x 16 pairs (1 KiB, contiguous), pair `s` of a row
/// holding the bf16 of columns `2s` and `2s + 1` (zero beyond `k`).
fn pack_a(a: &View<'_>, i0: usize, mb: usize, steps16: usize, out: &mut Vec<u32>) {
    let k = a.cols;
    out.clear();
    out.resize(mb.div_ceil(TILE) * TILE * steps16, 0);
    for r in 0..mb {
        let group = &mut out[r / KT * KT * steps16..][..KT * steps16];
        let at = (i0 + r) * a.row_stride;
        if a.col_stride == 1 {
            // SAFETY: `available` implies AVX-512F/BW and AVX512-BF16; the
            // row's k values are inside the bounds-checked view, and the
            // group holds steps16 >= ceil(k / 2) pairs of each of its 16
            // rows.
            unsafe { pack_row(&a.data[at..at + k], group, r % KT) };
        } else {
            for s in 0..k.div_ceil(2) {
                let l = 2 * s;
                let lo = bf16_bits(a.data[at + l * a.col_stride]);
                let hi = if l + 1 < k {
                    bf16_bits(a.data[at + (l + 1) * a.col_stride])
                } else {
                    0
                };
                group[a_index(r % KT, s)] = lo | (hi << 16);
            }
        }
    }
}

/// Where pair `s` of row `row` (< 16) of a group lies in the group.
#[inline]
fn a_index(row: usize, s: usize) -> usize {
    s / KT * KT * KT + row * KT + s % KT
}

/// `src` (`k` values) rounded to bf16 into the pairs of row `row` of the
/// packed group `dst` (value `l` in the low half of pair `l / 2` for even
/// `l`, the high half for odd, pairs placed by [`a_index`]), 16 values at
/// a time, rounded by `vcvtneps2bf16` (subnormals by integer arithmetic,
/// see `avx512::bf16_16`); a missing last high half is zero.
///
/// # Safety
/// The CPU must have AVX-512F, AVX-512BW and AVX512-BF16, `row < 16`,
/// and `dst` must hold a group of `16 * s16` pairs with `s16 >=
/// ceil(k / 2)` a multiple of 16 (every half written, at `2 a_index(row,
/// l / 2) + l % 2` for `l <= k`, is then inside it).
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_row(src: &[f32], dst: &mut [u32], row: usize) {
    let k = src.len();
    let out = dst.as_mut_ptr() as *mut u16;
    // Half `l` (16 consecutive ones stay in one tile row: l % 32 < 16 or
    // >= 16 with the same l / 32).
    let half = |l: usize| 2 * a_index(row, l / 2) + l % 2;
    let full = k / 16 * 16;
    for l in (0..full).step_by(16) {
        let v = bf16_16(_mm512_loadu_ps(src.as_ptr().add(l)));
        _mm256_storeu_si256(out.add(half(l)) as *mut __m256i, v);
    }
    if full < k {
        let mask: __mmask16 = (1u16 << (k - full)) - 1;
        let v = bf16_16(_mm512_maskz_loadu_ps(mask, src.as_ptr().add(full)));
        _mm256_mask_storeu_epi16(out.add(half(full)) as *mut i16, mask, v);
    }
    if !k.is_multiple_of(2) {
        // The missing high half of the last pair.
        *out.add(half(k)) = 0;
    }
}

/// Loads the tile configuration.
///
/// # Safety
/// The CPU must have AMX and the process the tile-data permission.
#[inline]
unsafe fn load_config(cfg: &TileConfig) {
    asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
}

/// Releases the tile state (back to the init state).
///
/// # Safety
/// The CPU must have AMX.
#[inline]
unsafe fn release() {
    asm!("tilerelease", options(nostack, nomem));
}

/// Tiles of the inner dimension per chunk: a chunk of a `B` panel (16
/// KiB) stays in the L1 cache while it meets every 32 rows of the block.
const KC_TILES: usize = 8;

/// One chunk of a 32 x 32 output tile: the 32 x 32 f32 values at `c` (row
/// stride 128 bytes; zero instead when `first`) plus the sum over `ktiles`
/// tiles of 16 steps of the two packed groups of `A` at `a0`, `a1` (1 KiB
/// per tile) times the 32 packed columns of `B` at `b` (row stride 128
/// bytes), stored back to `c`.
///
/// # Safety
/// The configuration of [`TileConfig::new`] must be loaded. `a0`, `a1`
/// must address `ktiles` KiB each, `b` `16 ktiles` rows of 32 pairs, and
/// `c` 32 x 32 f32 values, all readable (and `c` writable).
#[inline]
unsafe fn tile_kernel(
    a0: *const u32,
    a1: *const u32,
    b: *const u32,
    ktiles: usize,
    c: *mut f32,
    first: bool,
) {
    asm!(
        "test {first}, {first}",
        "jz 4f",
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        "jmp 5f",
        "4:",
        "tileloadd tmm0, [{c} + {bs}*1]",
        "tileloadd tmm1, [{c} + {bs}*1 + 64]",
        "tileloadd tmm2, [{c} + {bs}*1 + 2048]",
        "tileloadd tmm3, [{c} + {bs}*1 + 2112]",
        "5:",
        "test {kt}, {kt}",
        "jz 3f",
        "2:",
        "tileloadd tmm4, [{a0} + {as64}*1]",
        "tileloadd tmm6, [{b} + {bs}*1]",
        "tdpbf16ps tmm0, tmm4, tmm6",
        "tileloadd tmm7, [{b} + {bs}*1 + 64]",
        "tdpbf16ps tmm1, tmm4, tmm7",
        "tileloadd tmm5, [{a1} + {as64}*1]",
        "tdpbf16ps tmm2, tmm5, tmm6",
        "tdpbf16ps tmm3, tmm5, tmm7",
        "add {a0}, 1024",
        "add {a1}, 1024",
        "add {b}, 2048",
        "dec {kt}",
        "jnz 2b",
        "3:",
        "tilestored [{c} + {bs}*1], tmm0",
        "tilestored [{c} + {bs}*1 + 64], tmm1",
        "tilestored [{c} + {bs}*1 + 2048], tmm2",
        "tilestored [{c} + {bs}*1 + 2112], tmm3",
        a0 = inout(reg) a0 => _,
        a1 = inout(reg) a1 => _,
        as64 = in(reg) 64usize,
        b = inout(reg) b => _,
        bs = in(reg) 128usize,
        kt = inout(reg) ktiles => _,
        c = in(reg) c,
        first = in(reg) usize::from(first),
        options(nostack),
    );
}

/// The loops of one row block: for each panel of `B` from column `j0` on,
/// chunk by chunk of the inner dimension, the tile kernel on each 32 rows
/// of the packed `A` (sums kept in `acc`); then `alpha` times the sums
/// plus `beta C` (only `alpha` times the sums when `beta` is 0) into `c`.
///
/// # Safety
/// [`available`] must be true. `apack` must hold `ceil(mb / 32) * 32` rows
/// of `steps16` pairs (a multiple of 16) as [`pack_a`] packs them, `bpack`
/// `ceil(n / NR)` panels of `steps16 x NR` pairs, `c` `mb x n` values, and
/// `j0 <= n` a multiple of NR.
#[target_feature(enable = "avx512f")]
unsafe fn run_block(blk: PackedBlock<'_>, c: &mut [f32]) {
    let PackedBlock {
        alpha,
        apack,
        steps: steps16,
        mb,
        bpack,
        n,
        j0,
        beta,
        ..
    } = blk;
    let groups = mb.div_ceil(TILE);
    assert!(apack.len() >= groups * TILE * steps16 && steps16.is_multiple_of(KT));
    assert!(bpack.len() >= n.div_ceil(NR) * steps16 * NR && c.len() == mb * n && j0 <= n);
    let cfg = TileConfig::new();
    load_config(&cfg);
    let mut acc = vec![0f32; groups * TILE * TILE];
    let ktiles = steps16 / KT;
    let (va, vb) = (_mm512_set1_ps(alpha), _mm512_set1_ps(beta));
    let cp = c.as_mut_ptr();
    for jp in j0 / NR..n.div_ceil(NR) {
        let bp = bpack.as_ptr().add(jp * steps16 * NR);
        for t0 in (0..ktiles).step_by(KC_TILES) {
            let kt = KC_TILES.min(ktiles - t0);
            for ip in 0..groups {
                let a0 = apack.as_ptr().add(2 * ip * KT * steps16 + t0 * KT * KT);
                let a1 = a0.add(KT * steps16);
                let b = bp.add(t0 * KT * NR);
                tile_kernel(
                    a0,
                    a1,
                    b,
                    kt,
                    acc.as_mut_ptr().add(ip * TILE * TILE),
                    t0 == 0,
                );
            }
        }
        let nr = NR.min(n - jp * NR);
        for (r, row) in acc.chunks_exact(TILE).enumerate().take(mb) {
            for h in 0..2 {
                let w = nr.saturating_sub(16 * h).min(16);
                if w == 0 {
                    continue;
                }
                let mask: __mmask16 = if w == 16 { 0xffff } else { (1u16 << w) - 1 };
                let p = cp.add(r * n + jp * NR + 16 * h);
                let v = _mm512_loadu_ps(row.as_ptr().add(16 * h));
                let out = if beta == 0.0 {
                    _mm512_mul_ps(va, v)
                } else {
                    _mm512_fmadd_ps(va, v, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(mask, p)))
                };
                _mm512_mask_storeu_ps(p, mask, out);
            }
        }
    }
    release();
}

#[cfg(test)]
mod tests {
    use super::super::avx512::convert_available;
    use super::*;

    /// The row packing needs AVX-512BW and AVX512-BF16, not AMX: it runs
    /// on every CPU with those (AMD Zen 4 and 5 included).
    #[test]
    fn vectorized_row_packing_equals_bf16_bits_skipped_without_avx512_bf16() {
        if !convert_available() {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(
                !(ci && std::arch::is_x86_feature_detected!("avx512bf16")),
                "CI=true: the CPU has AVX512-BF16 but the AMX row packing test was skipped"
            );
            eprintln!(
                "SKIPPED vectorized_row_packing_equals_bf16_bits_skipped_without_avx512_bf16: \
                 this CPU has no AVX512-BF16 with AVX-512BW"
            );
            return;
        }
        let mut x = 0x1234_5678u32;
        let mut src: Vec<f32> = (0..77)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                // Full mantissas, exact ties on every fifth value.
                let v = (x as f32 / u32::MAX as f32 - 0.5) * 6.0;
                if i % 5 == 0 {
                    f32::from_bits((v.to_bits() & 0xffff_0000) | 0x8000)
                } else {
                    v
                }
            })
            .collect();
        src[3] = f32::NAN;
        src[8] = f32::INFINITY;
        src[9] = -f32::MAX;
        // Subnormals (read as zero by the hardware conversion).
        src[20] = f32::from_bits(0x0000_8000);
        src[41] = f32::from_bits(0x807f_ffff);
        src[70] = f32::from_bits(0x0000_0001);
        for len in [0usize, 1, 15, 16, 17, 32, 33, 77] {
            let s16 = len.div_ceil(2).div_ceil(KT).max(1) * KT;
            for row in [0, 5, 15] {
                let mut dst = vec![0xdead_beefu32; KT * s16];
                unsafe { pack_row(&src[..len], &mut dst, row) };
                let mut want = vec![0xdead_beefu32; KT * s16];
                for s in 0..len.div_ceil(2) {
                    let lo = bf16_bits(src[2 * s]);
                    let hi = if 2 * s + 1 < len {
                        bf16_bits(src[2 * s + 1])
                    } else {
                        0
                    };
                    want[a_index(row, s)] = lo | (hi << 16);
                }
                assert_eq!(dst, want, "len {len} row {row}");
            }
        }
    }
}
