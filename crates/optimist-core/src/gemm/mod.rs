//! Matrix products for the matrix optimizers (Newton-Schulz) and for
//! workloads that need a GEMM on host memory (the im2col convolution):
//! strided read-only views and `C <- alpha A B + beta C`, split into fixed
//! row blocks so results do not depend on the thread count.
//!
//! On x86-64 CPUs with AVX-512 the products run on this crate's packed
//! AVX-512 kernels (module `avx512`); elsewhere on `matrixmultiply`
//! (cache-blocked, AVX2/FMA or SSE chosen at run time). Both accumulate in
//! f32; they round differently, so results depend on the CPU's instruction
//! set, never on the thread count.
//!
//! [`Precision::Bf16`] rounds both inputs to bfloat16 (nearest, ties to
//! even) and accumulates the exact products in f32, as `vdpbf16ps` does
//! (AVX-512 BF16; elsewhere the rounded inputs go through the f32 path).
//! This is the precision torch.optim.Muon and most Muon code use for the
//! Newton-Schulz iteration, about twice as fast as f32 on CPUs with
//! AVX-512 BF16; it is an opt-in outside exact replay.

use crate::error::{Error, Result};

#[cfg(target_arch = "x86_64")]
mod avx512;

/// Precision of the inputs of a product (the accumulation is always f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32 inputs and products.
    #[default]
    F32,
    /// Inputs rounded to bfloat16, products and sums in f32.
    Bf16,
}

/// `x` rounded to the nearest bfloat16 (ties to even), as an f32 (a NaN
/// stays a NaN).
pub fn round_bf16(x: f32) -> f32 {
    f32::from_bits(bf16_bits(x) << 16)
}

/// The bits of `x` rounded to bfloat16, nearest with ties to even (a NaN
/// becomes a quiet NaN).
pub(crate) fn bf16_bits(x: f32) -> u32 {
    let b = x.to_bits();
    if x.is_nan() {
        (b >> 16) | 0x40
    } else {
        (b + 0x7fff + ((b >> 16) & 1)) >> 16
    }
}

/// A strided read-only matrix view for [`gemm`].
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// A row-major `rows x cols` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        View {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, without copying.
    pub fn t(self) -> Self {
        View {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// Whether every element the strides address lies inside `data`.
    pub fn in_bounds(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows - 1)
            .checked_mul(self.row_stride)
            .and_then(|r| (self.cols - 1).checked_mul(self.col_stride)?.checked_add(r));
        last.is_some_and(|l| l < self.data.len())
            && self.row_stride <= isize::MAX as usize
            && self.col_stride <= isize::MAX as usize
    }
}

/// Output rows per block of work. Fixed, so that every block is the same
/// product (and gets the same blocking inside the GEMM) whatever the thread
/// count: results do not depend on it.
const ROW_BLOCK: usize = 128;

/// `C <- alpha A B + beta C` for a row-major `C` of `a.rows x b.cols`
/// (with `beta = 0`, `C` is only written). Dimensions and extents are
/// checked, so the unsafe calls below only ever touch valid memory.
///
/// With `upper`, the product is known to be symmetric (`X X^T`, or `A A`
/// for a symmetric `A`, with `C` symmetric too): only the blocks on and
/// above the diagonal are computed, and the lower triangle is copied from
/// the upper one.
///
/// The output is split into blocks of [`ROW_BLOCK`] rows, run in parallel
/// on the current thread pool when called from one (sequentially
/// otherwise), each a single-threaded GEMM: this crate's packed AVX-512
/// kernels where the CPU has AVX-512 (`B` packed once and shared by the
/// blocks), `matrixmultiply` (cache-blocked, SIMD-dispatched at run time)
/// elsewhere. (The `gemm` crate's f32 products measured slower than
/// `matrixmultiply` on the development machine.)
pub fn gemm(
    alpha: f32,
    a: View<'_>,
    b: View<'_>,
    beta: f32,
    c: &mut [f32],
    upper: bool,
) -> Result<()> {
    gemm_with(Precision::F32, alpha, a, b, beta, c, upper)
}

/// [`gemm`] with the inputs in the given [`Precision`].
pub fn gemm_with(
    precision: Precision,
    alpha: f32,
    a: View<'_>,
    b: View<'_>,
    beta: f32,
    c: &mut [f32],
    upper: bool,
) -> Result<()> {
    gemm_impl(precision, alpha, a, b, beta, c, upper, true)
}

/// [`gemm_with`], on the AVX-512 kernels when `packed` and the CPU has
/// them, on `matrixmultiply` otherwise.
#[allow(clippy::too_many_arguments)]
fn gemm_impl(
    precision: Precision,
    alpha: f32,
    a: View<'_>,
    b: View<'_>,
    beta: f32,
    c: &mut [f32],
    upper: bool,
    packed: bool,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k
        || !a.in_bounds()
        || !b.in_bounds()
        || m.checked_mul(n) != Some(c.len())
        || (upper && m != n)
    {
        return Err(Error::Shape(format!(
            "gemm of {}x{} by {}x{} into {} values",
            a.rows,
            a.cols,
            b.rows,
            b.cols,
            c.len()
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    {
        let kind = match precision {
            Precision::F32 => avx512::Kind::F32,
            Precision::Bf16 => avx512::Kind::Bf16,
        };
        if packed && avx512::available(kind) {
            packed_gemm(kind, alpha, a, b, beta, c, upper);
            mirror(c, n, upper);
            return Ok(());
        }
    }
    if precision == Precision::Bf16 {
        let round = |v: &View<'_>| -> Vec<f32> {
            let mut out = Vec::with_capacity(v.rows * v.cols);
            for i in 0..v.rows {
                for l in 0..v.cols {
                    out.push(round_bf16(v.data[i * v.row_stride + l * v.col_stride]));
                }
            }
            out
        };
        let (ra, rb) = (round(&a), round(&b));
        return gemm_impl(
            Precision::F32,
            alpha,
            View::new(&ra, a.rows, a.cols),
            View::new(&rb, b.rows, b.cols),
            beta,
            c,
            upper,
            false,
        );
    }
    let rb = ROW_BLOCK;
    let block = |(bi, rows): (usize, &mut [f32])| {
        let i0 = bi * rb;
        let mb = rows.len() / n;
        let j0 = if upper { i0 } else { 0 };
        // SAFETY: the block's rows of `a` start at element i0 * row_stride
        // and its columns of `b` at j0 * col_stride; every element the
        // strides address for i < mb, l < k (resp. l < k, j < n - j0) is an
        // element of the full, bounds-checked view (i0 + mb <= m,
        // j0 <= n). `rows` is this block's exclusive part of the row-major
        // `c`: rows i0..i0+mb, written at columns j0..n with strides (1, n).
        // All strides fit in isize (checked by `in_bounds`).
        unsafe {
            matrixmultiply::sgemm(
                mb,
                k,
                n - j0,
                alpha,
                a.data.as_ptr().add(i0 * a.row_stride),
                a.row_stride as isize,
                a.col_stride as isize,
                b.data.as_ptr().add(j0 * b.col_stride),
                b.row_stride as isize,
                b.col_stride as isize,
                beta,
                rows.as_mut_ptr().add(j0),
                n as isize,
                1,
            );
        }
    };
    row_blocks(c, rb * n, block);
    mirror(c, n, upper);
    Ok(())
}

/// `block((index, rows))` for each block of `len` values of `c`: in
/// parallel on the current thread pool when called from one, in order
/// otherwise.
fn row_blocks<F>(c: &mut [f32], len: usize, block: F)
where
    F: Fn((usize, &mut [f32])) + Sync + Send,
{
    if rayon::current_thread_index().is_some() {
        use rayon::prelude::*;
        c.par_chunks_mut(len)
            .enumerate()
            .with_max_len(1)
            .for_each(block);
    } else {
        c.chunks_mut(len).enumerate().for_each(block);
    }
}

/// For a symmetric product, copies the upper triangle into the lower one,
/// in bands of 8 rows run in parallel on the current thread pool when
/// called from one: 8x8 blocks through register transposes on x86-64 CPUs
/// with AVX2, element by element otherwise (and on the diagonal blocks and
/// the last rows).
fn mirror(c: &mut [f32], n: usize, upper: bool) {
    const T: usize = 8;
    if !upper || n < 2 {
        return;
    }
    // Band `b` (rows b*T..) writes the lower part of its rows (j < i) from
    // the upper part (row j, column i > j), which nothing writes: no
    // element is both written and read, so the bands run in parallel,
    // through a raw pointer (no `&mut` to the shared buffer exists
    // meanwhile).
    struct Shared(*mut f32);
    // SAFETY: see above; the pointer outlives the loop (it borrows `c`).
    unsafe impl Sync for Shared {}
    let ptr = Shared(c.as_mut_ptr());
    #[cfg(target_arch = "x86_64")]
    let blocks = std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    let blocks = false;
    let band = |b: usize| {
        let p = &ptr;
        let i0 = b * T;
        let full = blocks && i0 + T <= n;
        let j_start = if full {
            #[cfg(target_arch = "x86_64")]
            for bj in 0..b {
                // SAFETY: blocks (bj, b) and (b, bj) lie inside the n x n
                // matrix (i0 + T <= n), do not overlap (bj < b), and only
                // this band writes its rows; the source is upper triangle,
                // which nothing writes. AVX2 was detected above.
                unsafe { avx512::mirror_block8(p.0, n, b, bj) };
            }
            i0
        } else {
            0
        };
        for i in i0..(i0 + T).min(n) {
            for j in j_start..i {
                // SAFETY: i, j < n, and c has n * n elements.
                unsafe { *p.0.add(i * n + j) = *p.0.add(j * n + i) };
            }
        }
    };
    let bands = n.div_ceil(T);
    if rayon::current_thread_index().is_some() && bands > 8 {
        use rayon::prelude::*;
        (0..bands).into_par_iter().with_min_len(4).for_each(band);
    } else {
        (0..bands).for_each(band);
    }
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// Packing buffers reused across products (taken out while in use, so
    /// a nested product on the same thread just allocates its own).
    static PACK_B: std::cell::Cell<Vec<u32>> = const { std::cell::Cell::new(Vec::new()) };
    static PACK_A: std::cell::Cell<Vec<u32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The AVX-512 path of [`gemm_with`] (checked arguments, `m, n > 0`).
#[cfg(target_arch = "x86_64")]
fn packed_gemm(
    kind: avx512::Kind,
    alpha: f32,
    a: View<'_>,
    b: View<'_>,
    beta: f32,
    c: &mut [f32],
    upper: bool,
) {
    let n = b.cols;
    let mut bpack = PACK_B.with(|p| p.take());
    avx512::pack_b(kind, &b, &mut bpack);
    let rb = ROW_BLOCK;
    let block = |(bi, rows): (usize, &mut [f32])| {
        let i0 = bi * rb;
        let j0 = if upper { i0 } else { 0 };
        let mut apack = PACK_A.with(|p| p.take());
        avx512::block(kind, alpha, &a, i0, &bpack, n, j0, beta, rows, &mut apack);
        PACK_A.with(|p| p.set(apack));
    };
    row_blocks(c, rb * n, block);
    PACK_B.with(|p| p.set(bpack));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::SplitMix64::new(seed);
        (0..len)
            .map(|_| (rng.uniform() * 2.0 - 1.0) as f32)
            .collect()
    }

    /// `alpha A B + beta C` in f64 from the (optionally bf16-rounded) inputs.
    fn reference(
        alpha: f32,
        a: &View<'_>,
        b: &View<'_>,
        beta: f32,
        c: &[f32],
        bf16: bool,
    ) -> Vec<f64> {
        let r = |x: f32| if bf16 { round_bf16(x) } else { x } as f64;
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let mut out = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k)
                    .map(|l| {
                        r(a.data[i * a.row_stride + l * a.col_stride])
                            * r(b.data[l * b.row_stride + j * b.col_stride])
                    })
                    .sum();
                out[i * n + j] = alpha as f64 * s + beta as f64 * c[i * n + j] as f64;
            }
        }
        out
    }

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    #[test]
    fn products_match_f64_for_odd_shapes_strides_and_precisions() {
        // Shapes off the kernel's tile sizes (8 x 32), inner dimensions over
        // one chunk (256) and odd (a zero-padded bf16 pair), more than one
        // row block (128).
        for &(m, k, n) in &[
            (1usize, 1usize, 1usize),
            (7, 5, 33),
            (37, 301, 45),
            (130, 17, 129),
            (200, 513, 64),
        ] {
            let a = data(m * k, (m * k) as u64);
            let b = data(k * n, (k + n) as u64);
            let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            let c0 = data(m * n, 7);
            for prec in [Precision::F32, Precision::Bf16] {
                for (alpha, beta) in [(1.0f32, 0.0f32), (-0.5, 2.0)] {
                    let av = View::new(&a, m, k);
                    // The same A through a transposed view of its transpose.
                    let atv = View::new(&at, k, m).t();
                    for a_view in [av, atv] {
                        let bv = View::new(&b, k, n);
                        let want =
                            reference(alpha, &a_view, &bv, beta, &c0, prec == Precision::Bf16);
                        let mut c = c0.clone();
                        gemm_with(prec, alpha, a_view, bv, beta, &mut c, false).unwrap();
                        // f32 sums of k products of values below 1: error
                        // well under k * 2^-24 * (|alpha| sum |a b|).
                        let tol = 1e-6 * k as f64 + 1e-6;
                        for (x, y) in c.iter().zip(&want) {
                            assert!(
                                (*x as f64 - y).abs() <= tol,
                                "{prec:?} {m}x{k}x{n}: {x} vs {y}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn symmetric_products_and_thread_counts_give_identical_bits() {
        let (r, c) = (300usize, 270usize);
        let x = data(r * c, 3);
        for prec in [Precision::F32, Precision::Bf16] {
            let xv = View::new(&x, r, c);
            let mut full = vec![0.0f32; r * r];
            gemm_with(prec, 1.0, xv, xv.t(), 0.0, &mut full, false).unwrap();
            let run = |threads: usize| {
                pool(threads).install(|| {
                    let mut g = vec![9.0f32; r * r];
                    gemm_with(prec, 1.0, xv, xv.t(), 0.0, &mut g, true).unwrap();
                    let mut p = g.clone();
                    let gv = View::new(&g, r, r);
                    gemm_with(prec, 0.5, gv, gv, -1.5, &mut p, true).unwrap();
                    (g, p)
                })
            };
            let (g1, p1) = run(1);
            // The upper triangle is computed, not mirrored: it equals the
            // general product's; the lower one is its mirror image.
            for i in 0..r {
                for j in 0..r {
                    assert_eq!(
                        g1[i * r + j].to_bits(),
                        full[i.min(j) * r + i.max(j)].to_bits()
                    );
                }
            }
            for threads in [2, 3, 8] {
                let (g, p) = run(threads);
                assert!(g.iter().zip(&g1).all(|(a, b)| a.to_bits() == b.to_bits()));
                assert!(
                    p.iter().zip(&p1).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{prec:?} {threads} threads"
                );
            }
        }
    }

    #[test]
    fn round_bf16_is_nearest_even() {
        assert_eq!(round_bf16(1.0), 1.0);
        assert_eq!(round_bf16(f32::from_bits(0x3f80_8000)), 1.0);
        assert_eq!(
            round_bf16(f32::from_bits(0x3f81_8000)).to_bits(),
            0x3f82_0000
        );
        assert!(round_bf16(f32::NAN).is_nan());
    }
}
