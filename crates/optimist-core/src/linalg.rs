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

/// Eigen-decomposition of the symmetric `n x n` row-major matrix `a` (only
/// read, symmetrized as `(a + a^T) / 2`): returns the eigenvalues in
/// ascending order and the row-major `n x n` matrix whose columns are the
/// matching unit eigenvectors (`a v_j = w_j v_j`).
pub fn eigh(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    debug_assert_eq!(a.len(), n * n);
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
                // Columns p and q.
                for k in 0..n {
                    let akp = m[k * n + p];
                    let akq = m[k * n + q];
                    m[k * n + p] = c * akp - s * akq;
                    m[k * n + q] = s * akp + c * akq;
                }
                // Rows p and q.
                for k in 0..n {
                    let apk = m[p * n + k];
                    let aqk = m[q * n + k];
                    m[p * n + k] = c * apk - s * aqk;
                    m[q * n + k] = s * apk + c * aqk;
                }
                m[p * n + q] = 0.0;
                m[q * n + p] = 0.0;
                for k in 0..n {
                    let vkp = v[k * n + p];
                    let vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
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

/// The thin `Q` (`m x n`, orthonormal columns) of the Householder QR of the
/// row-major `m x n` matrix `a`, `m >= n`.
pub fn qr_q(a: &[f64], m: usize, n: usize) -> Vec<f64> {
    debug_assert!(m >= n && a.len() == m * n);
    let mut r = a.to_vec();
    // Householder vectors, one per column, of length m (zeros above k).
    let mut vs: Vec<Vec<f64>> = Vec::with_capacity(n);
    for k in 0..n {
        let mut norm = 0.0f64;
        for i in k..m {
            norm += r[i * n + k] * r[i * n + k];
        }
        let norm = norm.sqrt();
        let mut v = vec![0.0f64; m];
        if norm == 0.0 {
            vs.push(v);
            continue;
        }
        let x0 = r[k * n + k];
        let alpha = if x0 >= 0.0 { -norm } else { norm };
        for i in k..m {
            v[i] = r[i * n + k];
        }
        v[k] -= alpha;
        let vnorm2: f64 = v[k..].iter().map(|x| x * x).sum();
        if vnorm2 == 0.0 {
            vs.push(vec![0.0; m]);
            continue;
        }
        // R <- (I - 2 v v^T / v^T v) R on columns k..n.
        for j in k..n {
            let mut d = 0.0f64;
            for i in k..m {
                d += v[i] * r[i * n + j];
            }
            let f = 2.0 * d / vnorm2;
            for i in k..m {
                r[i * n + j] -= f * v[i];
            }
        }
        let inv = 1.0 / vnorm2.sqrt();
        for x in v[k..].iter_mut() {
            *x *= inv;
        }
        vs.push(v);
    }
    // Q = H_0 H_1 ... H_{n-1} applied to the first n columns of I.
    let mut q = vec![0.0f64; m * n];
    for j in 0..n {
        q[j * n + j] = 1.0;
    }
    for k in (0..n).rev() {
        let v = &vs[k];
        for j in 0..n {
            let mut d = 0.0f64;
            for i in k..m {
                d += v[i] * q[i * n + j];
            }
            if d != 0.0 {
                let f = 2.0 * d;
                for i in k..m {
                    q[i * n + j] -= f * v[i];
                }
            }
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
    if m >= n {
        let (cols, s, vcols) = one_sided_jacobi(a, m, n, false);
        // cols: n columns of length m (unnormalized U S); vcols: n columns of length n.
        let k = n;
        let mut u = vec![0.0f64; m * k];
        let mut vt = vec![0.0f64; k * n];
        for j in 0..k {
            let inv = if s[j] > 0.0 { 1.0 / s[j] } else { 0.0 };
            for i in 0..m {
                u[i * k + j] = cols[j * m + i] * inv;
            }
            for i in 0..n {
                vt[j * n + i] = vcols[j * n + i];
            }
        }
        (u, s, vt)
    } else {
        // a^T = U' S V'^T (tall), so a = V' S U'^T.
        let (cols, s, vcols) = one_sided_jacobi(a, n, m, true);
        let k = m;
        let mut u = vec![0.0f64; m * k];
        let mut vt = vec![0.0f64; k * n];
        for j in 0..k {
            let inv = if s[j] > 0.0 { 1.0 / s[j] } else { 0.0 };
            for i in 0..n {
                vt[j * n + i] = cols[j * n + i] * inv;
            }
            for i in 0..m {
                u[i * k + j] = vcols[j * m + i];
            }
        }
        (u, s, vt)
    }
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
                for i in 0..rows {
                    let x = u[p * rows + i];
                    let y = u[q * rows + i];
                    u[p * rows + i] = c * x - s * y;
                    u[q * rows + i] = s * x + c * y;
                }
                for i in 0..cols {
                    let x = v[p * cols + i];
                    let y = v[q * cols + i];
                    v[p * cols + i] = c * x - s * y;
                    v[q * cols + i] = s * x + c * y;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let s: Vec<f64> = (0..cols)
        .map(|j| u[j * rows..(j + 1) * rows].iter().map(|x| x * x).sum::<f64>().sqrt())
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
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
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
        for &n in &[1usize, 2, 5, 17, 40] {
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
            assert!(max_abs_diff(&av, &vw) < 1e-11, "n = {n}");
        }
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
            assert!(max_abs_diff(&matmul(&us, &vt, m, k, n), &a) < 1e-12, "{m}x{n}");
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
