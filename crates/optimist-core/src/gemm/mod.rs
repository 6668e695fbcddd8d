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
//! even) and accumulates the exact products in f32. It runs on AMX tiles
//! (`tdpbf16ps`, module `amx`) where the CPU has AMX-BF16 and Linux grants
//! the tile-data permission, else on the AVX-512 BF16 kernel (`vdpbf16ps`)
//! on CPUs without AMX; where neither is faster than the f32 kernel (CPUs
//! without AVX-512 BF16, and AMX CPUs with AMX kept off, where `vdpbf16ps`
//! measured slower than f32) the product runs in f32 instead, as
//! [`effective_precision`] and [`kernel_name`] report. This is the
//! precision torch.optim.Muon and most Muon code use for the Newton-Schulz
//! iteration; it is an opt-in outside exact replay.

use crate::error::{Error, Result};

#[cfg(target_arch = "x86_64")]
mod amx;
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

/// The kernel a product runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// AMX tiles (`tdpbf16ps`), bf16 inputs.
    #[cfg(target_arch = "x86_64")]
    Amx,
    /// This crate's packed AVX-512 kernels.
    #[cfg(target_arch = "x86_64")]
    Avx512(avx512::Kind),
    /// `matrixmultiply` (f32).
    MatrixMultiply,
}

#[cfg(all(test, target_arch = "x86_64"))]
thread_local! {
    /// Tests: run bf16 products on the AVX-512 kernel even where AMX runs.
    static NO_AMX: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The kernel for `precision` on this CPU. bf16 products run on AMX where
/// it is available (see [`amx_status`]), else on the AVX-512 BF16 kernel
/// (`vdpbf16ps`), except on CPUs that have AMX-BF16 (which the OS or the
/// environment keeps off): there `vdpbf16ps` measured slower than the f32
/// kernel, as does any rounding of the inputs in front of an f32 kernel on
/// CPUs without AVX-512 BF16, so those products run in f32 (more exact,
/// and faster).
fn choose(precision: Precision) -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        use avx512::Kind;
        #[cfg(test)]
        let amx_on = amx::available() && !NO_AMX.with(|c| c.get());
        #[cfg(not(test))]
        let amx_on = amx::available();
        if precision == Precision::Bf16 {
            #[cfg(test)]
            let forced = NO_AMX.with(|c| c.get());
            #[cfg(not(test))]
            let forced = false;
            if amx_on {
                return Kernel::Amx;
            }
            if avx512::available(Kind::Bf16) && (forced || !amx::cpu_has_amx_bf16()) {
                return Kernel::Avx512(Kind::Bf16);
            }
        }
        if avx512::available(Kind::F32) {
            return Kernel::Avx512(Kind::F32);
        }
    }
    let _ = precision;
    Kernel::MatrixMultiply
}

/// The precision a product requested in `precision` runs in on this CPU:
/// `precision`, or [`Precision::F32`] where no bf16 kernel is faster than
/// the f32 one (see [`kernel_name`]).
pub fn effective_precision(precision: Precision) -> Precision {
    match choose(precision) {
        #[cfg(target_arch = "x86_64")]
        Kernel::Amx | Kernel::Avx512(avx512::Kind::Bf16) => Precision::Bf16,
        _ => Precision::F32,
    }
}

/// The kernel [`gemm_with`] runs for `precision` on this CPU:
/// `"amx-bf16"` (AMX tiles), `"avx512-bf16"` (`vdpbf16ps`), `"avx512-f32"`
/// or `"matrixmultiply"` (f32). A bf16 request that runs in f32 says so.
pub fn kernel_name(precision: Precision) -> &'static str {
    let fallback = precision == Precision::Bf16 && effective_precision(precision) == Precision::F32;
    match (choose(precision), fallback) {
        #[cfg(target_arch = "x86_64")]
        (Kernel::Amx, _) => "amx-bf16",
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512(avx512::Kind::Bf16), _) => "avx512-bf16",
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512(_), false) => "avx512-f32",
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512(_), true) => "avx512-f32 (bf16 requested: no faster bf16 kernel here)",
        (Kernel::MatrixMultiply, false) => "matrixmultiply",
        (Kernel::MatrixMultiply, true) => {
            "matrixmultiply f32 (bf16 requested: no faster bf16 kernel here)"
        }
    }
}

/// Whether bf16 products run on AMX tiles here, or why not (no AMX-BF16,
/// the OS has not enabled the tile state or refused the permission, or
/// the environment variable `OPTIMIST_NO_AMX` is set).
pub fn amx_status() -> std::result::Result<(), &'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        amx::status()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Err("not an x86-64 CPU")
    }
}

/// Whether this CPU reports AMX-BF16 (whether or not it may be used).
pub fn cpu_has_amx_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        amx::cpu_has_amx_bf16()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Which entries of a [`View`] are known to be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Triangle {
    /// None known.
    #[default]
    Full,
    /// Upper triangular: `x[i][j] = 0` for `j < i`.
    Upper,
    /// Lower triangular: `x[i][j] = 0` for `j > i`.
    Lower,
}

impl Triangle {
    fn transposed(self) -> Self {
        match self {
            Triangle::Full => Triangle::Full,
            Triangle::Upper => Triangle::Lower,
            Triangle::Lower => Triangle::Upper,
        }
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
    triangle: Triangle,
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
            triangle: Triangle::Full,
        }
    }

    /// The same view, with the promise that the entries outside `triangle`
    /// are zero (the diagonal counts as inside). Products may then skip
    /// them: see [`gemm`]. A promise that does not hold gives wrong
    /// products, never unsafe memory access.
    pub fn triangular(self, triangle: Triangle) -> Self {
        View { triangle, ..self }
    }

    /// The transpose, without copying (an upper triangular view becomes a
    /// lower triangular one).
    pub fn t(self) -> Self {
        View {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            triangle: self.triangle.transposed(),
        }
    }

    /// Columns `c0..c0 + cols` (clamped to the view's columns), without
    /// copying; in bounds whenever the view is.
    pub(crate) fn columns(self, c0: usize, cols: usize) -> Self {
        let c0 = c0.min(self.cols);
        let cols = cols.min(self.cols - c0);
        let off = if cols == 0 || self.rows == 0 {
            0
        } else {
            (c0 * self.col_stride).min(self.data.len())
        };
        View {
            data: &self.data[off..],
            rows: self.rows,
            cols,
            row_stride: self.row_stride,
            col_stride: self.col_stride,
            triangle: if c0 == 0 {
                self.triangle
            } else {
                Triangle::Full
            },
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
/// Where `a` or `b` is marked triangular ([`View::triangular`]), the
/// AVX-512 kernels skip each chunk of the inner dimension in which a tile
/// of the output meets only the promised zeros (about a third of the work
/// of a product with one 1024 x 1024 triangular factor). Every other term
/// is added as in the full product, in the same order, so the results are
/// the same bits as the full product's, except for the sign of a zero
/// result and where the skipped part of the other operand holds an
/// infinity or a NaN (the full product's 0 x inf is a NaN). The other
/// kernels compute the full product.
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
    let product = Product {
        alpha,
        a,
        b,
        beta,
        upper,
    };
    // An empty inner dimension (C <- beta * C) goes to matrixmultiply: the
    // packed kernels split the inner dimension into non-empty panels.
    let packed = k > 0;
    match choose(precision) {
        #[cfg(target_arch = "x86_64")]
        Kernel::Amx if packed && amx::gemm(&product, c) => {
            mirror(c, n, upper);
            return Ok(());
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512(kind) if packed => {
            packed_gemm(kind, &product, c);
            mirror(c, n, upper);
            return Ok(());
        }
        _ => {}
    }
    let rb = ROW_BLOCK;
    let block = |(bi, rows): (usize, &mut [f32])| {
        let i0 = bi * rb;
        let mb = rows.len() / n;
        let j0 = product.first_column(i0);
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

/// One product `C <- alpha A B + beta C` with checked arguments (see
/// [`gemm`]); with `upper`, only the blocks on and above the diagonal.
#[derive(Debug, Clone, Copy)]
struct Product<'a> {
    alpha: f32,
    a: View<'a>,
    b: View<'a>,
    beta: f32,
    upper: bool,
}

impl Product<'_> {
    /// The first column of `C` that the row block starting at row `i0`
    /// computes: `i0` for a symmetric product, else 0.
    fn first_column(&self, i0: usize) -> usize {
        if self.upper {
            i0
        } else {
            0
        }
    }
}

/// The chunks `lo..hi` of the inner dimension (of `width` indices each,
/// `chunks` in all) that the output tile of rows `rows` and columns `cols`
/// needs, given the zeros promised by the triangles of `A` and `B`: the
/// others multiply zeros of `A` or of `B` only. Never empty (a tile that
/// meets only zeros still takes its first chunk, which writes `beta C`).
#[cfg(target_arch = "x86_64")]
fn needed_chunks(
    zeros: (Triangle, Triangle),
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    width: usize,
    chunks: usize,
) -> (usize, usize) {
    let (mut lo, mut hi) = (0, chunks);
    match zeros.0 {
        // A[i][l] = 0 for l < i: chunks ending at or before the first row.
        Triangle::Upper => lo = lo.max(rows.start / width),
        // A[i][l] = 0 for l > i: chunks starting after the last row.
        Triangle::Lower => hi = hi.min(rows.end.div_ceil(width)),
        Triangle::Full => {}
    }
    match zeros.1 {
        // B[l][j] = 0 for l > j: chunks starting after the last column.
        Triangle::Upper => hi = hi.min(cols.end.div_ceil(width)),
        // B[l][j] = 0 for l < j: chunks ending at or before the first column.
        Triangle::Lower => lo = lo.max(cols.start / width),
        Triangle::Full => {}
    }
    if lo < hi {
        (lo, hi)
    } else {
        (0, 1)
    }
}

/// One row block of a packed product, for the kernels' inner loops:
/// `alpha` times the packed rows of `A` (`apack`, `mb` rows) by the packed
/// `B` (`bpack`, `n` columns), `steps` packed steps of the inner dimension,
/// plus `beta C`, written from column `j0` on.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
struct PackedBlock<'a> {
    alpha: f32,
    apack: &'a [u32],
    steps: usize,
    mb: usize,
    bpack: &'a [u32],
    n: usize,
    j0: usize,
    beta: f32,
    /// The first row of the block in `A` and the triangles of `A` and `B`
    /// (for [`needed_chunks`]).
    i0: usize,
    zeros: (Triangle, Triangle),
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
fn packed_gemm(kind: avx512::Kind, product: &Product<'_>, c: &mut [f32]) {
    let n = product.b.cols;
    let mut bpack = PACK_B.with(|p| p.take());
    avx512::pack_b(kind, &product.b, &mut bpack);
    let rb = ROW_BLOCK;
    let block = |(bi, rows): (usize, &mut [f32])| {
        let mut apack = PACK_A.with(|p| p.take());
        avx512::block(kind, product, bi * rb, &bpack, rows, &mut apack);
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

    /// The bf16 kernels to test here: the default choice, and the AVX-512
    /// BF16 kernel too where AMX would run.
    fn no_amx_settings() -> Vec<bool> {
        #[cfg(target_arch = "x86_64")]
        if amx::available() && avx512::available(avx512::Kind::Bf16) {
            return vec![false, true];
        }
        vec![false]
    }

    /// Runs `f` with AMX kept off on this thread (`no_amx`) or not.
    fn with_no_amx<T>(no_amx: bool, f: impl FnOnce() -> T) -> T {
        #[cfg(target_arch = "x86_64")]
        {
            let old = NO_AMX.with(|c| c.replace(no_amx));
            let out = f();
            NO_AMX.with(|c| c.set(old));
            out
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = no_amx;
            f()
        }
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
        // row block (128), and B packed in more than one group of panels
        // and block of steps (n > 8 * 32, k > 2 * 64).
        for &(m, k, n) in &[
            (1usize, 1usize, 1usize),
            (7, 5, 33),
            (37, 301, 45),
            (130, 17, 129),
            (200, 513, 64),
            (40, 301, 300),
        ] {
            let a = data(m * k, (m * k) as u64);
            let b = data(k * n, (k + n) as u64);
            let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            let c0 = data(m * n, 7);
            for (prec, no_amx) in [
                (Precision::F32, false),
                (Precision::Bf16, false),
                (Precision::Bf16, true),
            ] {
                if no_amx && !no_amx_settings().contains(&true) {
                    continue;
                }
                let bf16 = with_no_amx(no_amx, || effective_precision(prec)) == Precision::Bf16;
                for (alpha, beta) in [(1.0f32, 0.0f32), (-0.5, 2.0)] {
                    let av = View::new(&a, m, k);
                    // The same A through a transposed view of its transpose.
                    let atv = View::new(&at, k, m).t();
                    for a_view in [av, atv] {
                        let bv = View::new(&b, k, n);
                        let want = reference(alpha, &a_view, &bv, beta, &c0, bf16);
                        let mut c = c0.clone();
                        with_no_amx(no_amx, || {
                            gemm_with(prec, alpha, a_view, bv, beta, &mut c, false)
                        })
                        .unwrap();
                        // f32 sums of k products of values below 1: error
                        // well under k * 2^-24 * (|alpha| sum |a b|).
                        let tol = 1e-6 * k as f64 + 1e-6;
                        for (x, y) in c.iter().zip(&want) {
                            assert!(
                                (*x as f64 - y).abs() <= tol,
                                "{prec:?} (no AMX: {no_amx}) {m}x{k}x{n}: {x} vs {y}"
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
        let mut cases = vec![(Precision::F32, false)];
        cases.extend(no_amx_settings().into_iter().map(|s| (Precision::Bf16, s)));
        for (prec, no_amx) in cases {
            let xv = View::new(&x, r, c);
            let mut full = vec![0.0f32; r * r];
            with_no_amx(no_amx, || {
                gemm_with(prec, 1.0, xv, xv.t(), 0.0, &mut full, false)
            })
            .unwrap();
            let run = |threads: usize| {
                pool(threads).install(|| {
                    with_no_amx(no_amx, || {
                        let mut g = vec![9.0f32; r * r];
                        gemm_with(prec, 1.0, xv, xv.t(), 0.0, &mut g, true).unwrap();
                        let mut p = g.clone();
                        let gv = View::new(&g, r, r);
                        gemm_with(prec, 0.5, gv, gv, -1.5, &mut p, true).unwrap();
                        (g, p)
                    })
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
                    "{prec:?} (no AMX: {no_amx}) {threads} threads"
                );
            }
        }
    }

    /// `x` with the entries outside `triangle` set to zero.
    fn zero_outside(mut x: Vec<f32>, rows: usize, cols: usize, triangle: Triangle) -> Vec<f32> {
        for i in 0..rows {
            for j in 0..cols {
                let outside = match triangle {
                    Triangle::Full => false,
                    Triangle::Upper => j < i,
                    Triangle::Lower => j > i,
                };
                if outside {
                    x[i * cols + j] = 0.0;
                }
            }
        }
        x
    }

    #[test]
    fn triangular_views_skip_only_zeros() {
        use Triangle::{Full, Lower, Upper};
        // Inner dimensions over two chunks (256 f32 steps, 512 bf16
        // values), rows of A and columns of B wholly in the zeros (m, n >
        // k), and triangles reached through transposes.
        let cases = [
            (600, 600, 600, Upper, Full, false),
            (600, 600, 600, Lower, Full, false),
            (600, 600, 600, Full, Upper, false),
            (600, 600, 600, Full, Lower, false),
            (600, 600, 600, Upper, Upper, false),
            (530, 530, 530, Upper, Lower, true),
            (700, 300, 90, Upper, Full, false),
            (90, 300, 700, Full, Lower, false),
            (1100, 1100, 70, Lower, Full, false),
        ];
        let mut precisions = vec![(Precision::F32, false)];
        precisions.extend(no_amx_settings().into_iter().map(|s| (Precision::Bf16, s)));
        for (m, k, n, ta, tb, transposed) in cases {
            // Stored as the transpose when `transposed`, viewed through `t()`.
            let (ra, ca, sa) = if transposed {
                (k, m, ta.transposed())
            } else {
                (m, k, ta)
            };
            let (rb, cb, sb) = if transposed {
                (n, k, tb.transposed())
            } else {
                (k, n, tb)
            };
            let a = zero_outside(data(m * k, 5), ra, ca, sa);
            let b = zero_outside(data(k * n, 6), rb, cb, sb);
            let view = |x: &'static [f32], r: usize, c: usize, t: Triangle, mark: bool| {
                let v = View::new(x, r, c);
                let v = if mark { v.triangular(t) } else { v };
                if transposed {
                    v.t()
                } else {
                    v
                }
            };
            let a: &'static [f32] = Vec::leak(a);
            let b: &'static [f32] = Vec::leak(b);
            let c0 = data(m * n, 7);
            for &(prec, no_amx) in &precisions {
                for (alpha, beta) in [(1.0f32, 0.0f32), (0.5, -1.5)] {
                    let run = |mark: bool, threads: usize| {
                        let mut c = if beta == 0.0 {
                            vec![9.0f32; m * n]
                        } else {
                            c0.clone()
                        };
                        pool(threads).install(|| {
                            with_no_amx(no_amx, || {
                                let av = view(a, ra, ca, sa, mark);
                                let bv = view(b, rb, cb, sb, mark);
                                assert_eq!(av.triangle, if mark { ta } else { Full });
                                gemm_with(prec, alpha, av, bv, beta, &mut c, false).unwrap();
                            })
                        });
                        c
                    };
                    let want = run(false, 1);
                    for threads in [1, 3] {
                        let got = run(true, threads);
                        let at = got.iter().zip(&want).position(|(g, w)| g != w);
                        assert!(
                            at.is_none(),
                            "{m}x{k}x{n} {ta:?} {tb:?} {prec:?} (no AMX: {no_amx}) beta {beta}, \
                             {threads} threads: differs at {at:?}"
                        );
                    }
                }
            }
        }
    }

    /// The AMX kernel against the f64 reference (bf16-rounded inputs):
    /// shapes off the tile sizes, an odd inner dimension, strided views,
    /// `beta`, symmetric products, and identical bits at 1, 2 and 3
    /// threads. Skipped, saying why, where AMX does not run; a failure
    /// when `CI=true` on a CPU that has AMX-BF16 but did not run it.
    #[test]
    fn amx_products_match_f64_and_do_not_depend_on_threads_skipped_without_amx() {
        if let Err(why) = amx_status() {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(
                !(ci && cpu_has_amx_bf16()),
                "CI=true: the CPU has AMX-BF16 but the AMX test was skipped: {why}"
            );
            eprintln!("SKIPPED amx_products_match_f64_and_do_not_depend_on_threads_skipped_without_amx: {why}");
            return;
        }
        assert_eq!(kernel_name(Precision::Bf16), "amx-bf16");
        for &(m, k, n) in &[
            (1usize, 1usize, 1usize),
            (33, 63, 31),
            (130, 65, 97),
            (64, 600, 64),
            (257, 96, 300),
            (70, 259, 290),
        ] {
            let a = data(m * k, (3 * m + k) as u64);
            let b = data(k * n, (k + 5 * n) as u64);
            let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let c0 = data(m * n, 11);
            let views = [
                (View::new(&a, m, k), View::new(&b, k, n)),
                (View::new(&at, k, m).t(), View::new(&bt, n, k).t()),
            ];
            for (av, bv) in views {
                for (alpha, beta) in [(1.0f32, 0.0f32), (0.75, -1.25)] {
                    let want = reference(alpha, &av, &bv, beta, &c0, true);
                    let mut first: Option<Vec<f32>> = None;
                    for threads in [1, 2, 3] {
                        let mut c = c0.clone();
                        pool(threads)
                            .install(|| {
                                gemm_with(Precision::Bf16, alpha, av, bv, beta, &mut c, false)
                            })
                            .unwrap();
                        let tol = 1e-6 * k as f64 + 1e-6;
                        for (x, y) in c.iter().zip(&want) {
                            assert!((*x as f64 - y).abs() <= tol, "{m}x{k}x{n}: {x} vs {y}");
                        }
                        match &first {
                            None => first = Some(c),
                            Some(f) => assert!(
                                f.iter().zip(&c).all(|(p, q)| p.to_bits() == q.to_bits()),
                                "{m}x{k}x{n}: {threads} threads differ from 1"
                            ),
                        }
                    }
                }
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
