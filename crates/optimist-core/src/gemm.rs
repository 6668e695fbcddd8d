//! Matrix products for the matrix optimizers (Newton-Schulz) and for
//! workloads that need a GEMM on host memory (the im2col convolution):
//! strided read-only views and `C <- alpha A B + beta C` through
//! `matrixmultiply`, split into fixed row blocks so results do not depend
//! on the thread count.

use crate::error::{Error, Result};

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
/// otherwise), each a single-threaded `matrixmultiply` GEMM (cache-blocked,
/// SIMD-dispatched at run time). (The `gemm` crate's f32 products measured
/// slower than `matrixmultiply` on the development machine.)
pub fn gemm(
    alpha: f32,
    a: View<'_>,
    b: View<'_>,
    beta: f32,
    c: &mut [f32],
    upper: bool,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k || !a.in_bounds() || !b.in_bounds() || c.len() != m * n || (upper && m != n) {
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
    if rayon::current_thread_index().is_some() {
        use rayon::prelude::*;
        c.par_chunks_mut(rb * n)
            .enumerate()
            .with_max_len(1)
            .for_each(block);
    } else {
        c.chunks_mut(rb * n).enumerate().for_each(block);
    }
    if upper {
        for i in 1..n {
            for j in 0..i {
                c[i * n + j] = c[j * n + i];
            }
        }
    }
    Ok(())
}
