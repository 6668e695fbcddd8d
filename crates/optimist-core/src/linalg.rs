//! Dense linear algebra in f64 for the preconditioned optimizers (SOAP,
//! Shampoo, GaLore): symmetric eigendecomposition, thin QR and thin SVD of
//! small row-major matrices.
//!
//! The references compute these in f32 with LAPACK (`torch.linalg.eigh`,
//! `qr`, `svd`). Here they run in f64 and the callers round the results to
//! f32, so they are at least as accurate as the f32 references; the golden
//! cases are checked to be robust to that (the f64 rerun of the reference
//! agrees with its f32 run within a tenth of the tolerance).
//!
//! * [`eigh`]: cyclic Jacobi rotations (Golub & Van Loan, "Matrix
//!   Computations", 4th ed., section 8.5): accurate to a few ulps of the
//!   largest eigenvalue for symmetric input, eigenvalues ascending.
//! * [`qr_q`]: Householder QR, the thin `Q` (column signs are whatever the
//!   reflections give; callers whose results depend on them must not use it).
//! * [`svd`]: one-sided Jacobi (Hestenes) on the tall orientation of the
//!   matrix, singular values descending.
//!
//! All routines take and return row-major `Vec<f64>`; sizes are checked by
//! the callers (these are internal building blocks).

// Index loops mirror the textbook algorithms (several arrays per index).
#![allow(clippy::needless_range_loop)]

/// The Givens rotation of two strided vectors of `x`, `len` values each,
/// their `k`-th values at `p + k stride` and `q + k stride`:
/// `(a, b) <- (c a - s b, s a + c b)`.
#[inline]
fn rotate(x: &mut [f64], (p, q): (usize, usize), stride: usize, len: usize, (c, s): (f64, f64)) {
    for k in 0..len {
        let a = x[p + k * stride];
        let b = x[q + k * stride];
        x[p + k * stride] = c * a - s * b;
        x[q + k * stride] = s * a + c * b;
    }
}

/// Eigen-decomposition of the symmetric `n x n` row-major matrix `a` (only
/// read, symmetrized as `(a + a^T) / 2`): returns the eigenvalues in
/// ascending order and the row-major `n x n` matrix whose columns are the
/// matching unit eigenvectors (`a v_j = w_j v_j`).
pub fn eigh(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    debug_assert_eq!(a.len(), n * n);
    if n > JACOBI_MAX {
        return eigh_tridiagonal(a, n);
    }
    eigh_jacobi(a, n)
}

/// Largest size [`eigh`] solves with Jacobi rotations; larger matrices go
/// through Householder tridiagonalization and the implicit QL method.
pub const JACOBI_MAX: usize = 64;

/// [`eigh`] by cyclic Jacobi rotations.
pub fn eigh_jacobi(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut m = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            m[i * n + j] = 0.5 * (a[i * n + j] + a[j * n + i]);
        }
    }
    let mut v = vec![0.0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let mut off = 0.0f64;
        let mut diag = 0.0f64;
        for i in 0..n {
            diag += m[i * n + i] * m[i * n + i];
            for j in (i + 1)..n {
                off += m[i * n + j] * m[i * n + j];
            }
        }
        if off == 0.0 || off <= diag * 1e-36 {
            break;
        }
        for p in 0..n {
            for q in (p + 1)..n {
                let apq = m[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let app = m[p * n + p];
                let aqq = m[q * n + q];
                // Negligible against both diagonal entries: set to zero.
                if apq.abs() * 1e18 < app.abs().min(aqq.abs()) {
                    m[p * n + q] = 0.0;
                    m[q * n + p] = 0.0;
                    continue;
                }
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // Columns p and q, then rows p and q.
                rotate(&mut m, (p, q), n, n, (c, s));
                rotate(&mut m, (p * n, q * n), 1, n, (c, s));
                m[p * n + q] = 0.0;
                m[q * n + p] = 0.0;
                rotate(&mut v, (p, q), n, n, (c, s));
            }
        }
    }
    let w: Vec<f64> = (0..n).map(|i| m[i * n + i]).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| w[a].total_cmp(&w[b]));
    let ws = order.iter().map(|&i| w[i]).collect();
    let mut vs = vec![0.0f64; n * n];
    for (jn, &jo) in order.iter().enumerate() {
        for k in 0..n {
            vs[k * n + jn] = v[k * n + jo];
        }
    }
    (ws, vs)
}

/// [`eigh`] by Householder reduction to tridiagonal form and the implicit
/// QL method with shifts (the EISPACK routines `tred2` and `tql2`, as in
/// the public-domain JAMA package): `O(n^3)` with a small constant.
///
/// Compiled for AVX-512F or AVX2 where the CPU has them (plain multiplies
/// and adds, so the same bits at every vector width).
pub fn eigh_tridiagonal(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma,avx512f")]
        unsafe fn avx512(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
            tridiagonal_ql(a, n)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
            tridiagonal_ql(a, n)
        }
        if crate::cpu::has_avx512() {
            // SAFETY: the CPU has AVX-512F, AVX2 and FMA (checked at run time).
            return unsafe { avx512(a, n) };
        }
        if crate::cpu::has_avx2() {
            // SAFETY: the CPU has AVX2 and FMA (checked at run time).
            return unsafe { avx2(a, n) };
        }
    }
    tridiagonal_ql(a, n)
}

#[inline(always)]
fn tridiagonal_ql(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    if n == 0 {
        return (Vec::new(), Vec::new());
    }
    // v: JAMA's `V`, row-major, rows `ld` values apart: rows a multiple of
    // 4 KiB apart (n = 512, 1024, ...) would share the caches' sets and make
    // loads of one row wait on stores to another (their addresses agreeing
    // in the low 12 bits).
    let ld = n + 8;
    let mut v = vec![0.0f64; n * ld];
    for i in 0..n {
        for j in 0..n {
            v[i * ld + j] = 0.5 * (a[i * n + j] + a[j * n + i]);
        }
    }
    let mut d = vec![0.0f64; n];
    let mut e = vec![0.0f64; n];
    // tred2. JAMA updates and reads only the lower triangle of the active
    // block (rows and columns below i), walking its columns. Here the block
    // is kept whole and symmetric instead (the upper triangle holds the
    // mirror of the lower), so that every O(n^3) loop runs along rows, in
    // vector registers, with JAMA's bits:
    // - JAMA's `e = (lower triangle of V) d` adds each `e[c]`'s terms
    //   `V[max(c, k)][min(c, k)] d[k]` in ascending k; so does `e[c] +=
    //   V[k][c] d[k]` over the rows k (`accumulate_rows`).
    // - JAMA's update `V[r][c] -= d[c] e[r] + e[c] d[r]` (c <= r) is applied
    //   to whole rows as `V[r][c] -= d[r] e[c] + e[r] d[c]`: the same two
    //   products added the other way round, the same bits (addition is
    //   commutative in IEEE arithmetic), so the mirror stays exact.
    // JAMA's own stores overwrite every mirrored value above the diagonal
    // before the reduction ends (column i, rows below i, at step i), so `V`
    // ends as JAMA's.
    //
    // Each step's update is fused with the next step's product: row i - 1
    // is updated first, which gives the next Householder vector (`dn`);
    // then each other row is updated and at once added into the next
    // product (`en`), so the block is read once per step, not twice. (The
    // updated values of column i - 1 above row i - 1 are never read: the
    // next step overwrites them with its Householder vector.)
    for j in 0..n {
        d[j] = v[(n - 1) * ld + j];
    }
    let mut dn = vec![0.0f64; n];
    let mut en = vec![0.0f64; n];
    // Some(h): step i's Householder vector is in d (and column i), `h` its
    // norm, and e[..i] holds `V d` (the previous step's fused pass).
    let mut ready: Option<f64> = None;
    for i in (1..n).rev() {
        let h = match ready.take() {
            Some(h) => h,
            None => match householder(&mut d, i) {
                None => {
                    e[i] = d[i - 1];
                    for j in 0..i {
                        d[j] = v[(i - 1) * ld + j];
                        v[i * ld + j] = 0.0;
                        v[j * ld + i] = 0.0;
                    }
                    d[i] = 0.0;
                    continue;
                }
                Some((h, ei)) => {
                    e[i] = ei;
                    for j in 0..i {
                        e[j] = 0.0;
                        v[j * ld + i] = d[j];
                    }
                    accumulate_rows(&v, ld, &d[..i], &mut e[..i]);
                    h
                }
            },
        };
        let mut f = 0.0f64;
        for j in 0..i {
            e[j] /= h;
            f += e[j] * d[j];
        }
        let hh = f / (h + h);
        for j in 0..i {
            e[j] -= hh * d[j];
        }
        let m = i - 1;
        rank2_row(&mut v[m * ld..m * ld + i], d[m], e[m], &e[..i], &d[..i]);
        for j in 0..i {
            dn[j] = v[m * ld + j];
            v[i * ld + j] = 0.0;
        }
        match (m > 0).then(|| householder(&mut dn, m)).flatten() {
            None => {
                for r in 0..m {
                    rank2_row(&mut v[r * ld..r * ld + i], d[r], e[r], &e[..i], &d[..i]);
                }
            }
            Some((h1, e1)) => {
                en[..m].fill(0.0);
                let mut r0 = 0;
                while r0 < m {
                    let rows = ROWS.min(m - r0);
                    for r in r0..r0 + rows {
                        rank2_row(&mut v[r * ld..r * ld + m], d[r], e[r], &e[..m], &d[..m]);
                        v[r * ld + m] = dn[r];
                    }
                    accumulate_rows(&v[r0 * ld..], ld, &dn[r0..r0 + rows], &mut en[..m]);
                    r0 += rows;
                }
                e[..m].copy_from_slice(&en[..m]);
                e[m] = e1;
                ready = Some(h1);
            }
        }
        d[..i].copy_from_slice(&dn[..i]);
        d[i] = h;
    }
    // The accumulation of the transformations: JAMA's loops, with every
    // column's sum `g[j] = sum_k V[k][i + 1] V[k][j]` (ascending k) taken
    // along the rows at once, then the update `V[k][j] -= g[j] d[k]` row by
    // row, fused with the next step's sums as above: once step i's
    // bookkeeping in column i + 1 and row i + 1 is done, each row is
    // updated and at once added into the next step's sums.
    let mut house = vec![0.0f64; n];
    let mut g = vec![0.0f64; n];
    let mut gn = vec![0.0f64; n];
    // Whether g[..=i] already holds step i's sums.
    let mut summed = false;
    for i in 0..n - 1 {
        if i == 0 {
            v[(n - 1) * ld] = v[0];
            v[0] = 1.0;
        }
        let h = d[i + 1];
        if h != 0.0 {
            for k in 0..=i {
                house[k] = v[k * ld + i + 1];
                d[k] = house[k] / h;
            }
            if !summed {
                g[..=i].fill(0.0);
                accumulate_rows(&v, ld, &house[..=i], &mut g[..=i]);
            }
        }
        // Step i's end and step i + 1's start, which the update leaves
        // alone (column i + 1 and row i + 1).
        for k in 0..=i {
            v[k * ld + i + 1] = 0.0;
        }
        let next = i + 2 < n;
        if next {
            v[(n - 1) * ld + i + 1] = v[(i + 1) * ld + i + 1];
            v[(i + 1) * ld + i + 1] = 1.0;
        }
        let h1 = if next { d[i + 2] } else { 0.0 };
        summed = false;
        if h != 0.0 && h1 != 0.0 {
            for k in 0..=i + 1 {
                dn[k] = v[k * ld + i + 2];
            }
            gn[..=i + 1].fill(0.0);
            let mut r0 = 0;
            while r0 <= i {
                let rows = ROWS.min(i + 1 - r0);
                for r in r0..r0 + rows {
                    reflect_row(&mut v[r * ld..r * ld + i + 1], &g[..=i], d[r]);
                }
                accumulate_rows(&v[r0 * ld..], ld, &dn[r0..r0 + rows], &mut gn[..=i + 1]);
                r0 += rows;
            }
            accumulate_rows(
                &v[(i + 1) * ld..],
                ld,
                &dn[i + 1..=i + 1],
                &mut gn[..=i + 1],
            );
            g[..=i + 1].copy_from_slice(&gn[..=i + 1]);
            summed = true;
        } else if h != 0.0 {
            for r in 0..=i {
                reflect_row(&mut v[r * ld..r * ld + i + 1], &g[..=i], d[r]);
            }
        }
    }
    for j in 0..n {
        d[j] = v[(n - 1) * ld + j];
        v[(n - 1) * ld + j] = 0.0;
    }
    v[(n - 1) * ld + n - 1] = 1.0;
    e[0] = 0.0;
    // The eigenvectors of the reduction as the rows of w (w[j][k] =
    // V[k][j]), the layout the rotations below run along.
    let mut w = vec![0.0f64; n * ld];
    for (k, row) in v.chunks(ld).take(n).enumerate() {
        for (j, &x) in row[..n].iter().enumerate() {
            w[j * ld + k] = x;
        }
    }
    drop(v);
    // tql2, with the eigenvectors as rows of w. Its iterations read only d
    // and e, so their rotations of w's rows are recorded and applied later,
    // in the same order, by blocks of columns (`rotate_rows`).
    let mut rots: Vec<Rotation> = Vec::new();
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let mut f = 0.0f64;
    let mut tst1 = 0.0f64;
    let eps = f64::EPSILON;
    for l in 0..n {
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n {
            if e[m].abs() <= eps * tst1 {
                break;
            }
            m += 1;
        }
        if m == n {
            m = n - 1;
        }
        if m > l {
            for _iter in 0..200 {
                let mut g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let mut h = g - d[l];
                for x in d.iter_mut().skip(l + 2) {
                    *x -= h;
                }
                f += h;
                p = d[m];
                let mut c = 1.0f64;
                let mut c2 = c;
                let mut c3 = c;
                let el1 = e[l + 1];
                let mut s = 0.0f64;
                let mut s2 = 0.0f64;
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    rots.push(Rotation { row: i, c, s });
                }
                if rots.len() >= ROTATIONS_BUFFERED {
                    rotate_rows(&mut w, n, ld, &rots);
                    rots.clear();
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
    rotate_rows(&mut w, n, ld, &rots);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| d[x].total_cmp(&d[y]));
    let ws = order.iter().map(|&i| d[i]).collect();
    let mut vs = vec![0.0f64; n * n];
    for (jn, &jo) in order.iter().enumerate() {
        for k in 0..n {
            vs[k * n + jn] = w[jo * ld + k];
        }
    }
    (ws, vs)
}

/// A Givens rotation of rows `row` and `row + 1` of a row-major matrix:
/// `(x, y) <- (c x - s y, s x + c y)`, column by column.
struct Rotation {
    row: usize,
    c: f64,
    s: f64,
}

/// Rotations `tql2` records before applying them (24 bytes each).
const ROTATIONS_BUFFERED: usize = 1 << 15;

/// Applies `rots` in order to the rows of the row-major `n`-column matrix
/// `w` (rows `ld` values apart), by blocks of columns that stay in the L2
/// cache while every rotation passes over them (in parallel on the current
/// thread pool when called from one). Each value sees the same rotations in the same order as
/// rotating whole rows one after the other, so the bits are the same.
fn rotate_rows(w: &mut [f64], n: usize, ld: usize, rots: &[Rotation]) {
    if rots.is_empty() || n == 0 {
        return;
    }
    // Column blocks of about 512 KiB over all rows, whole 64-byte lines.
    let width = ((512 << 10) / (8 * n)).clamp(8, n.max(8)) / 8 * 8;
    let blocks = n.div_ceil(width);
    let mut parts: Vec<Vec<&mut [f64]>> = (0..blocks).map(|_| Vec::with_capacity(n)).collect();
    for row in w.chunks_mut(ld) {
        for (part, piece) in parts.iter_mut().zip(row[..n].chunks_mut(width)) {
            part.push(piece);
        }
    }
    // Each block is rotated in a copy whose rows are 64 bytes longer than
    // the block: rows a multiple of 4 KiB apart (n = 512, 1024, ...) make
    // every load of a row wait on the store to the row before it (their
    // addresses agree in the low 12 bits), and put each row on a page of
    // its own, where the hardware's prefetchers stop.
    let apply = |rows: &mut Vec<&mut [f64]>| {
        let wb = rows[0].len();
        let stride = wb + 8;
        let mut copy = vec![0.0f64; rows.len() * stride];
        for (to, from) in copy.chunks_mut(stride).zip(rows.iter()) {
            to[..wb].copy_from_slice(from);
        }
        let mut padded: Vec<&mut [f64]> = copy.chunks_mut(stride).map(|r| &mut r[..wb]).collect();
        rotate_block(&mut padded, rots);
        for (to, from) in rows.iter_mut().zip(copy.chunks(stride)) {
            to.copy_from_slice(&from[..wb]);
        }
    };
    if blocks > 1 && rayon::current_thread_index().is_some() {
        use rayon::prelude::*;
        parts.par_iter_mut().for_each(apply);
    } else {
        parts.iter_mut().for_each(apply);
    }
}

/// [`rotate_rows`] on one block of columns (`rows[r]`: row r's piece),
/// compiled for AVX-512F or AVX2 where the CPU has them. Plain multiplies
/// and adds: the same bits at every vector width.
fn rotate_block(rows: &mut [&mut [f64]], rots: &[Rotation]) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma,avx512f")]
        unsafe fn avx512(rows: &mut [&mut [f64]], rots: &[Rotation]) {
            rotate_block_body::<true>(rows, rots)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(rows: &mut [&mut [f64]], rots: &[Rotation]) {
            rotate_block_body::<false>(rows, rots)
        }
        if crate::cpu::has_avx512() {
            // SAFETY: the CPU has AVX-512F, AVX2 and FMA (checked at run time).
            return unsafe { avx512(rows, rots) };
        }
        if crate::cpu::has_avx2() {
            // SAFETY: the CPU has AVX2 and FMA (checked at run time).
            return unsafe { avx2(rows, rots) };
        }
    }
    rotate_block_body::<false>(rows, rots)
}

/// The body of [`rotate_block`]; `WIDE`: the CPU has AVX-512F.
///
/// With AVX-512, each QL sweep (rotations of rows `i, i - 1, i - 2, ...`,
/// each with the row below it) runs over strips of 32 columns with the
/// running row in registers: row `i` leaves rotation `i` as the lower row
/// of rotation `i - 1`, so each rotation loads one row and stores one
/// instead of two and two. Other columns, and other CPUs, rotate row
/// pairs one rotation at a time.
#[inline(always)]
fn rotate_block_body<const WIDE: bool>(rows: &mut [&mut [f64]], rots: &[Rotation]) {
    let width = rows.first().map_or(0, |r| r.len());
    let pairs = |rows: &mut [&mut [f64]], run: &[Rotation], from: usize| {
        for r in run {
            let (lo, hi) = rows.split_at_mut(r.row + 1);
            let (c, s) = (r.c, r.s);
            for (x, y) in lo[r.row][from..].iter_mut().zip(hi[0][from..].iter_mut()) {
                let hh = *y;
                *y = s * *x + c * hh;
                *x = c * *x - s * hh;
            }
        }
    };
    if !WIDE || width < 32 {
        return pairs(rows, rots, 0);
    }
    let mut rest = rots;
    while !rest.is_empty() {
        let len = 1 + rest
            .windows(2)
            .take_while(|w| w[1].row + 1 == w[0].row)
            .count();
        let (run, next) = rest.split_at(len);
        let mut c0 = 0;
        #[cfg(target_arch = "x86_64")]
        while c0 + 32 <= width {
            // SAFETY: `WIDE` only where the CPU has AVX-512F.
            unsafe { sweep_avx512(rows, run, c0) };
            c0 += 32;
        }
        if c0 < width {
            pairs(rows, run, c0);
        }
        rest = next;
    }
}

/// One sweep `run` (rows `i, i - 1, ...`, nonempty) over columns `c0..c0 +
/// 32`: the running row in four registers, each value rotated with the
/// multiplies and adds of the plain loop.
///
/// # Safety
/// The CPU must have AVX-512F. (Memory is reached through bounds-checked
/// slices only.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sweep_avx512(rows: &mut [&mut [f64]], run: &[Rotation], c0: usize) {
    use std::arch::x86_64::*;
    const V: usize = 4;
    let mut y = [_mm512_setzero_pd(); V];
    let top = &rows[run[0].row + 1][c0..c0 + 8 * V];
    for v in 0..V {
        // SAFETY: `top` holds 8 * V values.
        y[v] = unsafe { _mm512_loadu_pd(top.as_ptr().add(8 * v)) };
    }
    for r in run {
        let (c, s) = (_mm512_set1_pd(r.c), _mm512_set1_pd(r.s));
        let (lo, hi) = rows.split_at_mut(r.row + 1);
        let x = &lo[r.row][c0..c0 + 8 * V];
        let below = &mut hi[0][c0..c0 + 8 * V];
        for v in 0..V {
            // SAFETY: `x` and `below` hold 8 * V values.
            let xv = unsafe { _mm512_loadu_pd(x.as_ptr().add(8 * v)) };
            let nb = _mm512_add_pd(_mm512_mul_pd(s, xv), _mm512_mul_pd(c, y[v]));
            y[v] = _mm512_sub_pd(_mm512_mul_pd(c, xv), _mm512_mul_pd(s, y[v]));
            // SAFETY: as above.
            unsafe { _mm512_storeu_pd(below.as_mut_ptr().add(8 * v), nb) };
        }
    }
    let last = &mut rows[run[run.len() - 1].row][c0..c0 + 8 * V];
    for v in 0..V {
        // SAFETY: `last` holds 8 * V values.
        unsafe { _mm512_storeu_pd(last.as_mut_ptr().add(8 * v), y[v]) };
    }
}

/// The start of `tred2`'s step `i`: `None` if `d[..i]` is all zeros (then
/// `d` is left alone); else scales `d[..i]` by the sum of its magnitudes,
/// makes it the Householder vector (`d[i - 1] = f - g`) and returns `(h,
/// e[i])`.
#[inline(always)]
fn householder(d: &mut [f64], i: usize) -> Option<(f64, f64)> {
    let mut scale = 0.0f64;
    for k in 0..i {
        scale += d[k].abs();
    }
    if scale == 0.0 {
        return None;
    }
    let mut h = 0.0f64;
    for k in 0..i {
        d[k] /= scale;
        h += d[k] * d[k];
    }
    let f = d[i - 1];
    let mut g = h.sqrt();
    if f > 0.0 {
        g = -g;
    }
    h -= f * g;
    d[i - 1] = f - g;
    Some((h, scale * g))
}

/// `tred2`'s update of one row of the symmetric block: `row[c] -= f e[c] +
/// g d[c]` (`f`, `g`: the row's own `d` and `e`).
#[inline(always)]
fn rank2_row(row: &mut [f64], f: f64, g: f64, e: &[f64], d: &[f64]) {
    for ((x, &ec), &dc) in row.iter_mut().zip(e).zip(d) {
        *x -= f * ec + g * dc;
    }
}

/// The update of one row in the accumulation of `tred2`'s
/// transformations: `row[c] -= g[c] dk`.
#[inline(always)]
fn reflect_row(row: &mut [f64], g: &[f64], dk: f64) {
    for (x, &gc) in row.iter_mut().zip(g) {
        *x -= gc * dk;
    }
}

/// `out[c] += sum_k m[k][c] coef[k]` for every column `c < out.len()` of
/// the row-major `m` (rows `ld` values apart), over its first
/// `coef.len()` rows, each sum's terms added in ascending `k` (each
/// product rounded before its add): the bits of the plain loop over `k`
/// then `c`. [`ROWS`] rows at a time, each read front to back (so that
/// the hardware's prefetchers follow them), the sums of [`STRIP`] columns
/// in registers while they take the rows' terms.
#[inline(always)]
fn accumulate_rows(m: &[f64], ld: usize, coef: &[f64], out: &mut [f64]) {
    let mut k0 = 0;
    while k0 + ROWS <= coef.len() {
        accumulate_block::<ROWS>(m, ld, k0, &coef[k0..k0 + ROWS], out);
        k0 += ROWS;
    }
    for k in k0..coef.len() {
        accumulate_block::<1>(m, ld, k, &coef[k..=k], out);
    }
}

/// Rows [`accumulate_rows`] takes at a time.
const ROWS: usize = 8;

/// Columns whose sums [`accumulate_rows`] keeps in registers together
/// (four AVX-512 or eight AVX2 registers).
const STRIP: usize = 32;

/// [`accumulate_rows`] for rows `k0..k0 + R`.
#[inline(always)]
fn accumulate_block<const R: usize>(
    m: &[f64],
    ld: usize,
    k0: usize,
    coef: &[f64],
    out: &mut [f64],
) {
    let n = out.len();
    let rows: [&[f64]; R] = std::array::from_fn(|r| &m[(k0 + r) * ld..][..n]);
    let coef: [f64; R] = std::array::from_fn(|r| coef[r]);
    let mut c0 = 0;
    while c0 + STRIP <= n {
        accumulate_cols::<R, STRIP>(&rows, &coef, c0, out);
        c0 += STRIP;
    }
    while c0 + 8 <= n {
        accumulate_cols::<R, 8>(&rows, &coef, c0, out);
        c0 += 8;
    }
    for c in c0..n {
        accumulate_cols::<R, 1>(&rows, &coef, c, out);
    }
}

/// [`accumulate_block`] on columns `c0..c0 + W`.
#[inline(always)]
fn accumulate_cols<const R: usize, const W: usize>(
    rows: &[&[f64]; R],
    coef: &[f64; R],
    c0: usize,
    out: &mut [f64],
) {
    let out: &mut [f64; W] = (&mut out[c0..c0 + W]).try_into().expect("W values");
    let mut acc = *out;
    for r in 0..R {
        let row: &[f64; W] = rows[r][c0..c0 + W].try_into().expect("W values");
        for c in 0..W {
            acc[c] += row[c] * coef[r];
        }
    }
    *out = acc;
}

/// Solves `y U = x` for `lanes` right-hand sides at once, in place.
/// `rows[j * stride + l]` (`j < d`, `l < lanes`) holds entry `j` of
/// right-hand side `l` and becomes entry `j` of its solution; `u` is the
/// `d x d` upper triangular matrix, row-major in f32 (the entries below the
/// diagonal are not read), its values read as f64.
///
/// Every solution subtracts its terms in the order k = 0, 1, ..., j - 1,
/// each product rounded before the difference (no fused multiply-add),
/// then divides by `U[j][j]`: the bits of the plain loop, at every vector
/// width. With AVX-512, the terms of the solutions below a group of
/// [`SOLVE_COLS`] are subtracted from the group's sums for 32 right-hand
/// sides together, the sums in 16 registers and each earlier solution
/// loaded once for the group; then the group's own triangle is solved one
/// solution after the other. Compiled for AVX2 where the CPU has it.
///
/// # Panics
/// If `lanes > stride`, `rows` is shorter than `d * stride` or `u` than
/// `d * d`.
pub fn solve_upper_lines(rows: &mut [f64], stride: usize, lanes: usize, u: &[f32], d: usize) {
    assert!(
        lanes <= stride && rows.len() >= d * stride && u.len() >= d * d,
        "solve_upper_lines: {lanes} lanes, stride {stride}, {} values, d = {d}, {} factor values",
        rows.len(),
        u.len()
    );
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma,avx512f")]
        unsafe fn avx512(rows: &mut [f64], stride: usize, lanes: usize, u: &[f32], d: usize) {
            solve_upper_body::<true>(rows, stride, lanes, u, d)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(rows: &mut [f64], stride: usize, lanes: usize, u: &[f32], d: usize) {
            solve_upper_body::<false>(rows, stride, lanes, u, d)
        }
        if crate::cpu::has_avx512() {
            // SAFETY: the CPU has AVX-512F, AVX2 and FMA (checked at run time).
            return unsafe { avx512(rows, stride, lanes, u, d) };
        }
        if crate::cpu::has_avx2() {
            // SAFETY: the CPU has AVX2 and FMA (checked at run time).
            return unsafe { avx2(rows, stride, lanes, u, d) };
        }
    }
    solve_upper_body::<false>(rows, stride, lanes, u, d)
}

/// Solutions [`solve_upper_lines`] finds together.
pub const SOLVE_COLS: usize = 4;

/// The body of [`solve_upper_lines`] (arguments checked); `WIDE`: the
/// CPU has AVX-512F.
#[inline(always)]
fn solve_upper_body<const WIDE: bool>(
    rows: &mut [f64],
    stride: usize,
    lanes: usize,
    u: &[f32],
    d: usize,
) {
    // rows[j] -= rows[k] u for the lanes in `at`, k < j.
    let sub = |rows: &mut [f64], j: usize, k: usize, at: std::ops::Range<usize>, u: f64| {
        let (head, tail) = rows.split_at_mut(j * stride);
        let yk = &head[k * stride..][at.clone()];
        for (s, &y) in tail[at].iter_mut().zip(yk) {
            *s -= y * u;
        }
    };
    let mut j0 = 0;
    while j0 < d {
        let jb = SOLVE_COLS.min(d - j0);
        // Lanes 0..wide: the terms k < j0 by the AVX-512 kernel.
        let mut wide = 0;
        #[cfg(target_arch = "x86_64")]
        if WIDE && jb == SOLVE_COLS {
            while wide + 32 <= lanes {
                // SAFETY: `WIDE` only where the CPU has AVX-512F.
                unsafe { group_avx512(rows, stride, wide, u, d, j0) };
                wide += 32;
            }
        }
        for jj in 0..jb {
            let j = j0 + jj;
            // The other lanes: the terms k < j0 too.
            if wide < lanes {
                for k in 0..j0 {
                    sub(rows, j, k, wide..lanes, u[k * d + j] as f64);
                }
            }
            for k in j0..j {
                sub(rows, j, k, 0..lanes, u[k * d + j] as f64);
            }
            let ujj = u[j * d + j] as f64;
            for s in &mut rows[j * stride..][..lanes] {
                *s /= ujj;
            }
        }
        j0 += jb;
    }
}

/// For lanes `h..h + 32` of solutions `j0..j0 + SOLVE_COLS`: subtracts
/// the terms `rows[k] U[k][j]` of every `k < j0`, in order of `k` (products
/// rounded, then the differences).
///
/// # Safety
/// The CPU must have AVX-512F. (Memory is reached through bounds-checked
/// slices only.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn group_avx512(rows: &mut [f64], stride: usize, h: usize, u: &[f32], d: usize, j0: usize) {
    use std::arch::x86_64::*;
    const V: usize = 4;
    let (head, tail) = rows.split_at_mut(j0 * stride);
    let mut acc = [_mm512_setzero_pd(); SOLVE_COLS * V];
    for jj in 0..SOLVE_COLS {
        let s = &tail[jj * stride + h..][..8 * V];
        for v in 0..V {
            // SAFETY: `s` holds 8 * V values.
            acc[jj * V + v] = unsafe { _mm512_loadu_pd(s.as_ptr().add(8 * v)) };
        }
    }
    for k in 0..j0 {
        let yk = &head[k * stride + h..][..8 * V];
        let row = &u[k * d + j0..][..SOLVE_COLS];
        let mut y = [_mm512_setzero_pd(); V];
        for v in 0..V {
            // SAFETY: `yk` holds 8 * V values.
            y[v] = unsafe { _mm512_loadu_pd(yk.as_ptr().add(8 * v)) };
        }
        for jj in 0..SOLVE_COLS {
            let uk = _mm512_set1_pd(row[jj] as f64);
            for v in 0..V {
                acc[jj * V + v] = _mm512_sub_pd(acc[jj * V + v], _mm512_mul_pd(y[v], uk));
            }
        }
    }
    for jj in 0..SOLVE_COLS {
        let s = &mut tail[jj * stride + h..][..8 * V];
        for v in 0..V {
            // SAFETY: `s` holds 8 * V values.
            unsafe { _mm512_storeu_pd(s.as_mut_ptr().add(8 * v), acc[jj * V + v]) };
        }
    }
}

/// The thin `Q` (`m x n`, orthonormal columns) of the Householder QR of the
/// row-major `m x n` matrix `a`, `m >= n`.
pub fn qr_q(a: &[f64], m: usize, n: usize) -> Vec<f64> {
    debug_assert!(m >= n && a.len() == m * n);
    // Columns as contiguous rows: ct[j * m + i] = a[i][j].
    let mut ct = vec![0.0f64; n * m];
    for i in 0..m {
        for j in 0..n {
            ct[j * m + i] = a[i * n + j];
        }
    }
    // Unit Householder vectors (zero above k), one per column.
    let mut vs: Vec<Vec<f64>> = Vec::with_capacity(n);
    for k in 0..n {
        let col = &ct[k * m..(k + 1) * m];
        let norm = col[k..].iter().map(|x| x * x).sum::<f64>().sqrt();
        let mut v = vec![0.0f64; m];
        if norm == 0.0 {
            vs.push(v);
            continue;
        }
        let alpha = if col[k] >= 0.0 { -norm } else { norm };
        v[k..].copy_from_slice(&col[k..]);
        v[k] -= alpha;
        let vnorm = v[k..].iter().map(|x| x * x).sum::<f64>().sqrt();
        if vnorm == 0.0 {
            vs.push(vec![0.0; m]);
            continue;
        }
        v[k..].iter_mut().for_each(|x| *x /= vnorm);
        // Columns k..n <- (I - 2 v v^T) columns.
        for j in k..n {
            let cj = &mut ct[j * m..(j + 1) * m];
            let d: f64 = v[k..].iter().zip(&cj[k..]).map(|(x, y)| x * y).sum();
            let f = 2.0 * d;
            for (c, &x) in cj[k..].iter_mut().zip(&v[k..]) {
                *c -= f * x;
            }
        }
        vs.push(v);
    }
    // Q = H_0 H_1 ... H_{n-1} applied to the first n columns of I (as rows).
    let mut qt = vec![0.0f64; n * m];
    for j in 0..n {
        qt[j * m + j] = 1.0;
    }
    for k in (0..n).rev() {
        let v = &vs[k];
        for j in 0..n {
            let qj = &mut qt[j * m..(j + 1) * m];
            let d: f64 = v[k..].iter().zip(&qj[k..]).map(|(x, y)| x * y).sum();
            if d != 0.0 {
                let f = 2.0 * d;
                for (q, &x) in qj[k..].iter_mut().zip(&v[k..]) {
                    *q -= f * x;
                }
            }
        }
    }
    let mut q = vec![0.0f64; m * n];
    for j in 0..n {
        for i in 0..m {
            q[i * n + j] = qt[j * m + i];
        }
    }
    q
}

/// Thin SVD of the row-major `m x n` matrix `a`: returns `(u, s, vt)` with
/// `k = min(m, n)`, `u` row-major `m x k`, `s` descending, `vt` row-major
/// `k x n`, `a = u diag(s) vt`. Columns of `u` (rows of `vt`) that belong to
/// zero singular values are zero.
pub fn svd(a: &[f64], m: usize, n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    debug_assert_eq!(a.len(), m * n);
    // Tall: Jacobi on `a`; wide: on a^T = U' S V'^T, so a = V' S U'^T.
    let tall = m >= n;
    let k = m.min(n);
    // cols: k columns of length max(m, n) (the unnormalized singular
    // vectors times S); vcols: k columns of length k.
    let (cols, s, vcols) = one_sided_jacobi(a, m.max(n), k, !tall);
    // The columns of U and the rows of V^T, and which of them to normalize.
    let (ucols, vtcols) = if tall {
        (&cols, &vcols)
    } else {
        (&vcols, &cols)
    };
    let mut u = vec![0.0f64; m * k];
    let mut vt = vec![0.0f64; k * n];
    for j in 0..k {
        let inv = if s[j] > 0.0 { 1.0 / s[j] } else { 0.0 };
        let (fu, fv) = if tall { (inv, 1.0) } else { (1.0, inv) };
        for i in 0..m {
            u[i * k + j] = ucols[j * m + i] * fu;
        }
        for i in 0..n {
            vt[j * n + i] = vtcols[j * n + i] * fv;
        }
    }
    (u, s, vt)
}

/// One-sided Jacobi on the tall `rows x cols` matrix (`a` itself, or the
/// transpose of the row-major `cols x rows` matrix `a` when `transposed`).
/// Returns its columns after the rotations (column-major, `cols` columns of
/// length `rows`, mutually orthogonal), their norms (the singular values)
/// and the accumulated rotation (column-major `cols x cols`, the right
/// singular vectors), all sorted by descending singular value.
fn one_sided_jacobi(
    a: &[f64],
    rows: usize,
    cols: usize,
    transposed: bool,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut u = vec![0.0f64; rows * cols];
    for j in 0..cols {
        for i in 0..rows {
            u[j * rows + i] = if transposed {
                a[j * rows + i]
            } else {
                a[i * cols + j]
            };
        }
    }
    let mut v = vec![0.0f64; cols * cols];
    for j in 0..cols {
        v[j * cols + j] = 1.0;
    }
    for _sweep in 0..100 {
        let mut rotated = false;
        for p in 0..cols {
            for q in (p + 1)..cols {
                let (mut alpha, mut beta, mut gamma) = (0.0f64, 0.0f64, 0.0f64);
                {
                    let up = &u[p * rows..(p + 1) * rows];
                    let uq = &u[q * rows..(q + 1) * rows];
                    for i in 0..rows {
                        alpha += up[i] * up[i];
                        beta += uq[i] * uq[i];
                        gamma += up[i] * uq[i];
                    }
                }
                if gamma == 0.0 || gamma.abs() <= 1e-15 * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = if zeta == 0.0 {
                    1.0
                } else {
                    zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt())
                };
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                rotate(&mut u, (p * rows, q * rows), 1, rows, (c, s));
                rotate(&mut v, (p * cols, q * cols), 1, cols, (c, s));
            }
        }
        if !rotated {
            break;
        }
    }
    let s: Vec<f64> = (0..cols)
        .map(|j| {
            u[j * rows..(j + 1) * rows]
                .iter()
                .map(|x| x * x)
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let mut order: Vec<usize> = (0..cols).collect();
    order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
    let mut us = vec![0.0f64; rows * cols];
    let mut vs = vec![0.0f64; cols * cols];
    for (jn, &jo) in order.iter().enumerate() {
        us[jn * rows..(jn + 1) * rows].copy_from_slice(&u[jo * rows..(jo + 1) * rows]);
        vs[jn * cols..(jn + 1) * cols].copy_from_slice(&v[jo * cols..(jo + 1) * cols]);
    }
    let ss = order.iter().map(|&j| s[j]).collect();
    (us, ss, vs)
}

/// Row-major product `a (m x k) b (k x n)` in f64.
pub fn matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0f64; m * n];
    for i in 0..m {
        for l in 0..k {
            let x = a[i * k + l];
            if x == 0.0 {
                continue;
            }
            let row = &b[l * n..(l + 1) * n];
            let out = &mut c[i * n..(i + 1) * n];
            for (o, &y) in out.iter_mut().zip(row) {
                *o += x * y;
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn random(m: usize, n: usize, seed: u64) -> Vec<f64> {
        let mut r = SplitMix64::new(seed);
        (0..m * n).map(|_| r.uniform() * 2.0 - 1.0).collect()
    }

    fn transpose(a: &[f64], m: usize, n: usize) -> Vec<f64> {
        let mut t = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                t[j * m + i] = a[i * n + j];
            }
        }
        t
    }

    fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    fn identity(n: usize) -> Vec<f64> {
        let mut e = vec![0.0; n * n];
        for i in 0..n {
            e[i * n + i] = 1.0;
        }
        e
    }

    #[test]
    fn eigh_reconstructs_and_is_orthonormal() {
        // 300: the tridiagonal path, its rotations in two column blocks.
        for &n in &[1usize, 2, 5, 17, 40, 300] {
            let g = random(n, n + 3, n as u64);
            let a = matmul(&g, &transpose(&g, n, n + 3), n, n + 3, n);
            let (w, v) = eigh(&a, n);
            assert!(w.windows(2).all(|p| p[0] <= p[1]));
            let vt = transpose(&v, n, n);
            assert!(max_abs_diff(&matmul(&vt, &v, n, n, n), &identity(n)) < 1e-12);
            // A V = V diag(w)
            let av = matmul(&a, &v, n, n, n);
            let mut vw = v.clone();
            for i in 0..n {
                for j in 0..n {
                    vw[i * n + j] *= w[j];
                }
            }
            assert!(
                max_abs_diff(&av, &vw) < 1e-11 * (n as f64).max(1.0),
                "n = {n}"
            );
        }
    }

    #[test]
    fn grouped_triangular_solve_equals_the_plain_loop() {
        let mut rng = crate::rng::SplitMix64::new(11);
        // Groups of solutions cut short (d not a multiple of 4), lane
        // counts under, at and over the 32 of the wide kernel.
        for (d, lanes, stride) in [
            (1, 1, 1),
            (7, 5, 8),
            (13, 32, 32),
            (70, 75, 80),
            (130, 64, 64),
        ] {
            let mut u = vec![0.0f32; d * d];
            for i in 0..d {
                u[i * d + i] = 0.5 + rng.uniform() as f32;
                for j in i + 1..d {
                    u[i * d + j] = (rng.normal() * 0.2) as f32;
                }
                for j in 0..i {
                    // Never read.
                    u[i * d + j] = f32::NAN;
                }
            }
            let x: Vec<f64> = (0..d * stride).map(|_| rng.normal()).collect();
            let mut want = x.clone();
            for l in 0..lanes {
                for j in 0..d {
                    let mut s = x[j * stride + l];
                    for k in 0..j {
                        s -= want[k * stride + l] * u[k * d + j] as f64;
                    }
                    want[j * stride + l] = s / u[j * d + j] as f64;
                }
            }
            let mut got = x.clone();
            solve_upper_lines(&mut got, stride, lanes, &u, d);
            for j in 0..d {
                for l in 0..stride {
                    let (g, w) = (got[j * stride + l], want[j * stride + l]);
                    assert_eq!(g.to_bits(), w.to_bits(), "d {d}, lanes {lanes}: ({j}, {l})");
                }
            }
        }
    }

    #[test]
    fn blocked_rotations_equal_whole_row_rotations() {
        // Column blocks (in parallel on a pool, or not) against rotating
        // whole rows one rotation at a time: the same bits.
        let mut r = SplitMix64::new(11);
        for &(rows, n) in &[(7usize, 5usize), (40, 300), (300, 700), (90, 77)] {
            // Rows `ld` apart; the values past column n must stay as they are.
            let ld = if n % 2 == 0 { n + 5 } else { n };
            let w0 = random(rows, ld, n as u64);
            // Runs of rows i, i - 1, ..., as QL's sweeps record them, of
            // random lengths (1 included), one after the other.
            let mut rots: Vec<Rotation> = Vec::new();
            while rots.len() < 3000 {
                let top = (r.next_u64() % (rows as u64 - 1)) as usize;
                let len = 1 + (r.next_u64() % (top as u64 + 1)) as usize;
                for row in (top + 1 - len..=top).rev() {
                    let t = r.uniform() * 6.0;
                    rots.push(Rotation {
                        row,
                        c: t.cos(),
                        s: t.sin(),
                    });
                }
            }
            let mut want = w0.clone();
            for q in &rots {
                for k in 0..n {
                    let (x, y) = (want[q.row * ld + k], want[(q.row + 1) * ld + k]);
                    want[q.row * ld + k] = q.c * x - q.s * y;
                    want[(q.row + 1) * ld + k] = q.s * x + q.c * y;
                }
            }
            let mut alone = w0.clone();
            rotate_rows(&mut alone, n, ld, &rots);
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(3)
                .build()
                .unwrap();
            let mut pooled = w0.clone();
            pool.install(|| rotate_rows(&mut pooled, n, ld, &rots));
            for (got, name) in [(&alone, "alone"), (&pooled, "pool")] {
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{rows}x{n} {name}"
                );
            }
        }
    }

    /// JAMA's `tred2` and `tql2` as published: row-major `V`, every loop
    /// in JAMA's order, nothing blocked, reordered or vectorized (with the
    /// same cap of 200 QL iterations); the eigenpairs sorted as
    /// [`tridiagonal_ql`] sorts them.
    fn jama(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
        let mut v = vec![vec![0.0f64; n]; n];
        for i in 0..n {
            for j in 0..n {
                v[i][j] = 0.5 * (a[i * n + j] + a[j * n + i]);
            }
        }
        let mut d = vec![0.0f64; n];
        let mut e = vec![0.0f64; n];
        d.copy_from_slice(&v[n - 1]);
        for i in (1..n).rev() {
            let mut scale = 0.0f64;
            let mut h = 0.0f64;
            for k in 0..i {
                scale += d[k].abs();
            }
            if scale == 0.0 {
                e[i] = d[i - 1];
                for j in 0..i {
                    d[j] = v[i - 1][j];
                    v[i][j] = 0.0;
                    v[j][i] = 0.0;
                }
            } else {
                for k in 0..i {
                    d[k] /= scale;
                    h += d[k] * d[k];
                }
                let mut f = d[i - 1];
                let mut g = h.sqrt();
                if f > 0.0 {
                    g = -g;
                }
                e[i] = scale * g;
                h -= f * g;
                d[i - 1] = f - g;
                for j in 0..i {
                    e[j] = 0.0;
                }
                for j in 0..i {
                    f = d[j];
                    v[j][i] = f;
                    g = e[j] + v[j][j] * f;
                    for k in j + 1..i {
                        g += v[k][j] * d[k];
                        e[k] += v[k][j] * f;
                    }
                    e[j] = g;
                }
                f = 0.0;
                for j in 0..i {
                    e[j] /= h;
                    f += e[j] * d[j];
                }
                let hh = f / (h + h);
                for j in 0..i {
                    e[j] -= hh * d[j];
                }
                for j in 0..i {
                    f = d[j];
                    g = e[j];
                    for k in j..i {
                        v[k][j] -= f * e[k] + g * d[k];
                    }
                    d[j] = v[i - 1][j];
                    v[i][j] = 0.0;
                }
            }
            d[i] = h;
        }
        for i in 0..n - 1 {
            v[n - 1][i] = v[i][i];
            v[i][i] = 1.0;
            let h = d[i + 1];
            if h != 0.0 {
                for k in 0..=i {
                    d[k] = v[k][i + 1] / h;
                }
                for j in 0..=i {
                    let mut g = 0.0f64;
                    for k in 0..=i {
                        g += v[k][i + 1] * v[k][j];
                    }
                    for k in 0..=i {
                        v[k][j] -= g * d[k];
                    }
                }
            }
            for k in 0..=i {
                v[k][i + 1] = 0.0;
            }
        }
        for j in 0..n {
            d[j] = v[n - 1][j];
            v[n - 1][j] = 0.0;
        }
        v[n - 1][n - 1] = 1.0;
        e[0] = 0.0;
        for i in 1..n {
            e[i - 1] = e[i];
        }
        e[n - 1] = 0.0;
        let mut f = 0.0f64;
        let mut tst1 = 0.0f64;
        let eps = f64::EPSILON;
        for l in 0..n {
            tst1 = tst1.max(d[l].abs() + e[l].abs());
            let mut m = l;
            while m < n - 1 && e[m].abs() > eps * tst1 {
                m += 1;
            }
            if m > l {
                for _iter in 0..200 {
                    let mut g = d[l];
                    let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                    let mut r = p.hypot(1.0);
                    if p < 0.0 {
                        r = -r;
                    }
                    d[l] = e[l] / (p + r);
                    d[l + 1] = e[l] * (p + r);
                    let dl1 = d[l + 1];
                    let mut h = g - d[l];
                    for i in l + 2..n {
                        d[i] -= h;
                    }
                    f += h;
                    p = d[m];
                    let mut c = 1.0f64;
                    let mut c2 = c;
                    let mut c3 = c;
                    let el1 = e[l + 1];
                    let mut s = 0.0f64;
                    let mut s2 = 0.0f64;
                    for i in (l..m).rev() {
                        c3 = c2;
                        c2 = c;
                        s2 = s;
                        g = c * e[i];
                        h = c * p;
                        r = p.hypot(e[i]);
                        e[i + 1] = s * r;
                        s = e[i] / r;
                        c = p / r;
                        p = c * d[i] - s * g;
                        d[i + 1] = h + s * (c * g + s * d[i]);
                        for row in v.iter_mut() {
                            let hk = row[i + 1];
                            row[i + 1] = s * row[i] + c * hk;
                            row[i] = c * row[i] - s * hk;
                        }
                    }
                    p = -s * s2 * c3 * el1 * e[l] / dl1;
                    e[l] = s * p;
                    d[l] = c * p;
                    if e[l].abs() <= eps * tst1 {
                        break;
                    }
                }
            }
            d[l] += f;
            e[l] = 0.0;
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&x, &y| d[x].total_cmp(&d[y]));
        let ws = order.iter().map(|&i| d[i]).collect();
        let mut vs = vec![0.0f64; n * n];
        for (jn, &jo) in order.iter().enumerate() {
            for k in 0..n {
                vs[k * n + jn] = v[k][jo];
            }
        }
        (ws, vs)
    }

    #[test]
    fn tridiagonal_ql_has_the_bits_of_plain_jama() {
        // Random, low-rank (zero rows in the reduction: `scale == 0`),
        // block-diagonal and tiny-valued matrices, at sizes around the
        // vector widths and the rotations' column blocks.
        let sym = |g: &[f64], n: usize, k: usize| matmul(g, &transpose(g, n, k), n, k, n);
        let mut cases: Vec<(usize, Vec<f64>)> = Vec::new();
        for &n in &[1usize, 2, 3, 9, 31, 33, 65, 100, 131, 257] {
            cases.push((n, random(n, n, 300 + n as u64)));
            cases.push((n, sym(&random(n, n + 2, n as u64), n, n + 2)));
        }
        for &(n, k) in &[(70usize, 3usize), (140, 20)] {
            cases.push((n, sym(&random(n, k, 7), n, k)));
        }
        let mut block = sym(&random(90, 90, 8), 90, 90);
        for i in 0..90 {
            for j in 0..90 {
                if (i < 40) != (j < 40) {
                    block[i * 90 + j] = 0.0;
                }
            }
        }
        cases.push((90, block));
        cases.push((66, random(66, 66, 9).iter().map(|x| x * 1e-300).collect()));
        for (n, a) in &cases {
            let (w, v) = eigh_tridiagonal(a, *n);
            let (wj, vj) = jama(a, *n);
            let same =
                |x: &[f64], y: &[f64]| x.iter().zip(y).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same(&w, &wj) && same(&v, &vj), "n = {n}");
        }
    }

    #[test]
    fn eigh_on_a_thread_pool_equals_eigh_alone() {
        let n = 700;
        let g = random(n, n, 5);
        let a = matmul(&g, &transpose(&g, n, n), n, n, n);
        let alone = eigh(&a, n);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let pooled = pool.install(|| eigh(&a, n));
        let same = |x: &[f64], y: &[f64]| x.iter().zip(y).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same(&alone.0, &pooled.0) && same(&alone.1, &pooled.1));
    }

    #[test]
    fn tridiagonal_ql_matches_jacobi() {
        for &n in &[1usize, 2, 3, 10, 33, 80] {
            let g = random(n, n, 100 + n as u64);
            let a = matmul(&g, &transpose(&g, n, n), n, n, n);
            let (w1, v1) = eigh_jacobi(&a, n);
            let (w2, v2) = eigh_tridiagonal(&a, n);
            let scale = w1.iter().fold(1.0f64, |m, x| m.max(x.abs()));
            assert!(max_abs_diff(&w1, &w2) < 1e-12 * scale, "n = {n}");
            // Same vectors up to sign (the eigenvalues are distinct).
            for j in 0..n {
                let dot: f64 = (0..n).map(|k| v1[k * n + j] * v2[k * n + j]).sum();
                assert!((dot.abs() - 1.0).abs() < 1e-9, "n = {n}, vector {j}: {dot}");
            }
            let vt = transpose(&v2, n, n);
            assert!(max_abs_diff(&matmul(&vt, &v2, n, n, n), &identity(n)) < 1e-12);
        }
        // A diagonal matrix and a zero matrix.
        let (w, _) = eigh_tridiagonal(&[3.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 2.0], 3);
        assert_eq!(w, vec![1.0, 2.0, 3.0]);
        let (w, v) = eigh_tridiagonal(&[0.0; 4], 2);
        assert_eq!(w, vec![0.0, 0.0]);
        assert!(max_abs_diff(&matmul(&transpose(&v, 2, 2), &v, 2, 2, 2), &identity(2)) < 1e-15);
    }

    #[test]
    fn eigh_known_matrix() {
        // [[2, 1], [1, 2]]: eigenvalues 1 and 3.
        let (w, v) = eigh(&[2.0, 1.0, 1.0, 2.0], 2);
        assert!((w[0] - 1.0).abs() < 1e-15 && (w[1] - 3.0).abs() < 1e-15);
        assert!((v[0].abs() - 0.5f64.sqrt()).abs() < 1e-15);
    }

    #[test]
    fn qr_is_orthonormal_and_spans_the_columns() {
        for &(m, n) in &[(1usize, 1usize), (4, 4), (9, 5), (30, 30)] {
            let a = random(m, n, (m * 31 + n) as u64);
            let q = qr_q(&a, m, n);
            let qt = transpose(&q, m, n);
            assert!(max_abs_diff(&matmul(&qt, &q, n, m, n), &identity(n)) < 1e-12);
            // R = Q^T A is upper triangular and Q R = A.
            let r = matmul(&qt, &a, n, m, n);
            for i in 0..n {
                for j in 0..i {
                    assert!(r[i * n + j].abs() < 1e-12);
                }
            }
            assert!(max_abs_diff(&matmul(&q, &r, m, n, n), &a) < 1e-12);
        }
    }

    #[test]
    fn svd_reconstructs_both_orientations() {
        for &(m, n) in &[(6usize, 4usize), (4, 6), (7, 7), (1, 5), (5, 1)] {
            let a = random(m, n, (m * 7 + n) as u64);
            let (u, s, vt) = svd(&a, m, n);
            let k = m.min(n);
            assert!(s.windows(2).all(|p| p[0] >= p[1]));
            let mut us = u.clone();
            for i in 0..m {
                for j in 0..k {
                    us[i * k + j] *= s[j];
                }
            }
            assert!(
                max_abs_diff(&matmul(&us, &vt, m, k, n), &a) < 1e-12,
                "{m}x{n}"
            );
            let ut = transpose(&u, m, k);
            assert!(max_abs_diff(&matmul(&ut, &u, k, m, k), &identity(k)) < 1e-12);
            let v = transpose(&vt, k, n);
            assert!(max_abs_diff(&matmul(&vt, &v, k, n, k), &identity(k)) < 1e-12);
        }
    }

    #[test]
    fn svd_singular_values_match_eigh_of_the_gram_matrix() {
        let (m, n) = (8, 5);
        let a = random(m, n, 3);
        let (_, s, _) = svd(&a, m, n);
        let gram = matmul(&transpose(&a, m, n), &a, n, m, n);
        let (w, _) = eigh(&gram, n);
        for j in 0..n {
            assert!((s[j] * s[j] - w[n - 1 - j]).abs() < 1e-12);
        }
    }
}
