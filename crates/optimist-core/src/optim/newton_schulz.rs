//! Newton-Schulz orthogonalization, shared by the Muon family (`muon`,
//! `adamuon`, `namo`, `namo_d`).
//!
//! Given a matrix `G` (rows x cols), the quintic Newton-Schulz iteration
//! drives every singular value of `G / ||G||_F` towards 1 while keeping the
//! singular vectors, approximating the polar factor `U V^T` of `G = U S V^T`:
//!
//! ```text
//! X <- G^T if rows > cols else G          (so X is wide: r <= c)
//! X <- X / guard(||X||_F)                 (spectral norm <= 1)
//! repeat steps times, with (a, b, c) the step's coefficients:
//!     A <- X X^T                          (r x r)
//!     B <- b A + c A A
//!     X <- a X + B X
//! transpose back if it was transposed
//! ```
//!
//! `guard` is `max(norm, eps)` in torch.optim.Muon and pytorch-optimizer,
//! `norm + eps` in the original Muon code and its descendants (the official
//! AdaMuon and NAMO code); see [`NormGuard`].
//!
//! By default everything runs in f32, as the replay contract requires (the
//! libraries cast to bfloat16, which no f32 implementation reproduces).
//! With [`NsDtype::Bfloat16`] (the `ns_dtype = "bfloat16"` option of the
//! Muon family) the inputs of the three products are rounded to bfloat16
//! and their products summed in f32, the precision of torch.optim.Muon's
//! products (torch also keeps the iterate and the sums in bfloat16; here
//! they stay f32): about twice as fast on CPUs with AVX-512 BF16, outside
//! exact replay. The three matrix products per iteration are GEMMs from
//! [`crate::gemm`] (packed AVX-512 kernels, or `matrixmultiply` on CPUs
//! without AVX-512), split into fixed blocks of output rows that run in
//! parallel on the current thread pool, so that results do not depend on
//! the thread count;
//! the symmetric products `X X^T` and `A A` compute only the blocks on and
//! above the diagonal and mirror the rest. `X X^T` uses the same buffer with
//! transposed strides, so nothing is copied.
//!
//! With Keller Jordan's coefficients `(3.4445, -4.775, 2.0315)` the iteration
//! does not converge to `U V^T`: after 5 steps the singular values land
//! roughly in `[0.7, 1.2]` (inputs whose smallest singular values are tiny
//! relative to the largest keep some of them small). Coefficients such as
//! `(1.875, -1.25, 0.375)` converge to 1 with enough steps.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::gemm::{gemm_with, Precision, View};
use crate::math::{l2_norm, WeightDecay};
use crate::tensor::ParamMut;

/// Keller Jordan's quintic coefficients (torch.optim.Muon's default).
pub const MUON_COEFFICIENTS: [f64; 3] = [3.4445, -4.775, 2.0315];

/// How the input is normalized before the iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NormGuard {
    /// `X / max(||X||_F, eps)` (torch.optim.Muon, pytorch-optimizer).
    Clamp(f32),
    /// `X / (||X||_F + eps)` (KellerJordan/Muon, official AdaMuon and NAMO code).
    Add(f32),
}

/// Precision of the Newton-Schulz products (`ns_dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NsDtype {
    /// f32 throughout (default; exact replay).
    #[default]
    Float32,
    /// Product inputs rounded to bfloat16, sums in f32.
    Bfloat16,
}

impl NsDtype {
    /// The GEMM precision.
    pub fn precision(self) -> Precision {
        match self {
            NsDtype::Float32 => Precision::F32,
            NsDtype::Bfloat16 => Precision::Bf16,
        }
    }
}

/// Coefficient schedules of pytorch-optimizer 4.1 (`ns_coeffs` presets):
/// `original` (Keller Jordan), `quintic` (modded-nanogpt's per-step
/// schedule), `polar_express` and `polar_express_safer` (Amsel et al.,
/// "The Polar Express", arXiv:2505.16932). Step `i` uses entry
/// `min(i, len - 1)`.
pub fn preset(name: &str) -> Option<Vec<[f64; 3]>> {
    let table: &[[f64; 3]] = match name.to_ascii_lowercase().as_str() {
        "original" => &[MUON_COEFFICIENTS],
        "quintic" => &[
            [4.0848, -6.8946, 2.9270],
            [3.9505, -6.3029, 2.6377],
            [3.7418, -5.5913, 2.3037],
            [2.8769, -3.1427, 1.2046],
            [2.8366, -3.0525, 1.2012],
        ],
        "polar_express" => &[
            [8.237312490495555, -23.157747414558198, 16.680568411445915],
            [4.082441999064835, -2.893047735332586, 0.5252849256975648],
            [3.9263479922546582, -2.8547468034765298, 0.5318022422894988],
            [3.2982187133085143, -2.424541981026706, 0.48632008358844075],
            [2.2970369434552573, -1.63662558125903, 0.4002628455953627],
            [1.8763805351440397, -1.2347896577722228, 0.35891887501668385],
            [1.8564423485617974, -1.2132449880935525, 0.3568003487825883],
            [1.8749994008682747, -1.2499988017229169, 0.3749994008546422],
        ],
        "polar_express_safer" => &[
            [8.156554524902461, -22.48329292557795, 15.878769915207462],
            [4.0429299351667245, -2.808917465908704, 0.5000178451051299],
            [3.8916678022926563, -2.7724841532176825, 0.5060648178503389],
            [3.285753657755658, -2.3681294933425394, 0.46449024233003117],
            [2.3005307116270983, -1.6111665557258408, 0.3833374427545273],
            [1.8631210546382593, -1.2042160621002727, 0.3421879560523383],
            [1.8382572152247512, -1.1779263289537742, 0.3396513038637379],
            [1.8749999923301852, -1.2499999836060613, 0.374999991275876],
        ],
        _ => return None,
    };
    Some(table.to_vec())
}

/// Names accepted by [`preset`].
pub const PRESETS: &[&str] = &[
    "original",
    "quintic",
    "polar_express",
    "polar_express_safer",
];

/// The matrix view of a parameter for a matrix optimizer.
///
/// A 2-D parameter is its own matrix. With `flatten`, a parameter with more
/// dimensions is viewed as `(shape[0], shape[1] * ... * shape[n-1])`: one row
/// per output unit (a convolution kernel `[out, in, kh, kw]` becomes
/// `out x (in kh kw)`), the convention of every Muon implementation
/// (`g.view(len(g), -1)`). Anything else is an [`Error::Unsupported`] naming
/// the parameter.
pub fn matrix_dims(optimizer: &str, p: &ParamMut<'_>, flatten: bool) -> Result<(usize, usize)> {
    let shape = p.shape;
    let ok = shape.len() == 2 || (flatten && shape.len() > 2);
    if !ok {
        let hint = if shape.len() > 2 {
            "; set flatten = true to treat it as a (shape[0], rest) matrix"
        } else {
            "; give it to another optimizer (e.g. presets::muon_adamw)"
        };
        return Err(Error::Unsupported(format!(
            "{optimizer}: parameter '{}' has shape {shape:?}; only 2-D parameters are supported{hint}",
            p.name
        )));
    }
    let rows = shape[0];
    let cols = shape[1..]
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let cols = match cols {
        Some(c) if rows.checked_mul(c) == Some(p.numel()) => c,
        _ => {
            return Err(Error::Shape(format!(
                "{optimizer}: parameter '{}' has shape {shape:?} but {} values",
                p.name,
                p.numel()
            )))
        }
    };
    Ok((rows, cols))
}

/// Checks every parameter with [`matrix_dims`] before anything is updated,
/// so that a bad parameter leaves all parameters and states untouched.
pub fn check_all(optimizer: &str, params: &[ParamMut<'_>], flatten: bool) -> Result<()> {
    for p in params {
        matrix_dims(optimizer, p, flatten)?;
    }
    Ok(())
}

/// `update_all` of the Muon family: every parameter is checked to be a
/// matrix ([`check_all`]) before anything changes, then the parameters are
/// updated with [`UpdateRule::update`](crate::optimizer::UpdateRule::update),
/// in parallel over parameters on the fast path
/// ([`crate::exec::run_per_param`]; the products inside each are split in
/// fixed blocks too, so idle threads help with large matrices). The values
/// do not depend on the thread count.
pub fn update_matrices<R: crate::rule::UpdateRule>(
    rule: &R,
    name: &str,
    flatten: bool,
    info: &crate::rule::StepInfo,
    params: &mut [ParamMut<'_>],
    states: &mut crate::state::StateStore<R::State>,
) -> Result<()> {
    check_all(name, params, flatten)?;
    crate::exec::run_per_param(rule, info, params, states)
}

/// The first pass of AdaMuon and NorMuon over one parameter: for every
/// element, the weight decay `wd` on `x` with the signed gradient `sgn g`
/// ([`WeightDecay::apply`]), then `f(g, m)` updates the momentum `m` and
/// gives the element's Newton-Schulz input. Returns the inputs.
#[inline(always)]
pub fn decay_momentum_pass(
    value: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    wd: WeightDecay,
    sgn: f32,
    f: impl Fn(f32, &mut f32) -> f32,
) -> Vec<f32> {
    let mut u = vec![0.0f32; value.len()];
    for (((x, &g), m), u) in value.iter_mut().zip(grad).zip(m.iter_mut()).zip(u.iter_mut()) {
        let g = wd.apply(x, sgn * g);
        *u = f(g, m);
    }
    u
}

/// `check_params` ([`check_all`]) and `update_all` ([`update_matrices`])
/// of a Muon-family rule with a `flatten` field: use inside
/// `impl UpdateRule for X { ... matrix_rule!(); }`.
macro_rules! matrix_rule {
    () => {
        fn check_params(&self, params: &[$crate::tensor::ParamMut<'_>]) -> $crate::error::Result<()> {
            $crate::optim::newton_schulz::check_all(Self::NAME, params, self.flatten)
        }

        fn update_all(
            &self,
            info: &$crate::rule::StepInfo,
            params: &mut [$crate::tensor::ParamMut<'_>],
            states: &mut $crate::state::StateStore<Self::State>,
        ) -> Option<$crate::error::Result<()>> {
            Some($crate::optim::newton_schulz::update_matrices(
                self,
                Self::NAME,
                self.flatten,
                info,
                params,
                states,
            ))
        }
    };
}
pub(crate) use matrix_rule;

/// Orthogonalizes the row-major `rows x cols` matrix `g` with `steps`
/// Newton-Schulz iterations; step `i` uses `coefficients[min(i, len - 1)]`.
/// Returns the result in the same layout. `dtype` is the precision of the
/// products.
pub fn orthogonalize(
    g: &[f32],
    rows: usize,
    cols: usize,
    coefficients: &[[f32; 3]],
    steps: usize,
    guard: NormGuard,
    dtype: NsDtype,
) -> Result<Vec<f32>> {
    let prec = dtype.precision();
    if rows.checked_mul(cols) != Some(g.len()) {
        return Err(Error::Shape(format!(
            "newton-schulz: a {rows}x{cols} matrix needs {} values, got {}",
            rows.saturating_mul(cols),
            g.len()
        )));
    }
    if steps > 0 && coefficients.is_empty() {
        return Err(Error::Input(
            "newton-schulz: empty coefficient schedule".into(),
        ));
    }
    // Work on the wide orientation: r <= c.
    let transpose = rows > cols;
    let (r, c) = if transpose {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let mut x = if transpose {
        let mut t = vec![0.0f32; g.len()];
        for i in 0..rows {
            for j in 0..cols {
                t[j * rows + i] = g[i * cols + j];
            }
        }
        t
    } else {
        g.to_vec()
    };
    let norm = l2_norm(&x);
    let denom = match guard {
        NormGuard::Clamp(eps) => norm.max(eps),
        NormGuard::Add(eps) => norm + eps,
    };
    for v in x.iter_mut() {
        *v /= denom;
    }

    // Scratch matrices reused across calls on this thread (taken out while
    // in use, so a nested call just allocates its own).
    let [mut next, mut gram, mut poly] = SCRATCH.with(|s| s.take());
    for (buf, len) in [(&mut next, x.len()), (&mut gram, r * r), (&mut poly, r * r)] {
        buf.clear();
        buf.resize(len, 0.0);
    }
    for i in 0..steps {
        let [ca, cb, cc] = coefficients[i.min(coefficients.len() - 1)];
        // A = X X^T
        let xv = View::new(&x, r, c);
        gemm_with(prec, 1.0, xv, xv.t(), 0.0, &mut gram, true)?;
        // B = b A + c A A
        poly.copy_from_slice(&gram);
        let av = View::new(&gram, r, r);
        gemm_with(prec, cc, av, av, cb, &mut poly, true)?;
        // X = a X + B X
        next.copy_from_slice(&x);
        gemm_with(prec, 1.0, View::new(&poly, r, r), xv, ca, &mut next, false)?;
        std::mem::swap(&mut x, &mut next);
    }
    let out = finish(x, r, c, transpose);
    SCRATCH.with(|s| s.set([next, gram, poly]));
    out
}

thread_local! {
    static SCRATCH: std::cell::Cell<[Vec<f32>; 3]> =
        const { std::cell::Cell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// The iterate `x` (`r x c`), transposed back when the input was.
fn finish(x: Vec<f32>, r: usize, c: usize, transpose: bool) -> Result<Vec<f32>> {
    if transpose {
        let mut out = vec![0.0f32; x.len()];
        for i in 0..r {
            for j in 0..c {
                out[j * r + i] = x[i * c + j];
            }
        }
        Ok(out)
    } else {
        Ok(x)
    }
}

/// A coefficient schedule as f32 (the precision of the iteration).
pub fn schedule_f32(schedule: &[[f64; 3]]) -> Vec<[f32; 3]> {
    schedule
        .iter()
        .map(|&[a, b, c]| [a as f32, b as f32, c as f32])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::gemm;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn gemm_matches_naive_products_and_transposed_views() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 11) as f32) - 5.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 13) as f32) * 0.5).collect();
        let mut c = vec![1.0f32; m * n];
        gemm(
            1.0,
            View::new(&a, m, k),
            View::new(&b, k, n),
            0.0,
            &mut c,
            false,
        )
        .unwrap();
        assert_eq!(c, naive(&a, &b, m, k, n));
        // A A^T through a transposed view.
        let mut g = vec![0.0f32; m * m];
        let av = View::new(&a, m, k);
        gemm(1.0, av, av.t(), 0.0, &mut g, false).unwrap();
        let mut at = vec![0.0f32; k * m];
        for i in 0..m {
            for j in 0..k {
                at[j * m + i] = a[i * k + j];
            }
        }
        assert_eq!(g, naive(&a, &at, m, k, m));
        // The same product computed as symmetric (upper blocks, mirrored).
        let mut gs = vec![7.0f32; m * m];
        gemm(1.0, av, av.t(), 0.0, &mut gs, true).unwrap();
        assert_eq!(gs, g);
        // Not square: no symmetric product.
        assert!(gemm(1.0, av, View::new(&b, k, n), 0.0, &mut c, true).is_err());
        // beta accumulates: C = 2 A B + 3 C.
        let mut d = vec![1.0f32; m * n];
        gemm(
            2.0,
            View::new(&a, m, k),
            View::new(&b, k, n),
            3.0,
            &mut d,
            false,
        )
        .unwrap();
        let p = naive(&a, &b, m, k, n);
        for (x, y) in d.iter().zip(&p) {
            assert_eq!(*x, 2.0 * y + 3.0);
        }
        // Mismatched sizes are errors, not panics.
        assert!(gemm(
            1.0,
            View::new(&a, m, k),
            View::new(&b, n, k),
            0.0,
            &mut c,
            false
        )
        .is_err());
        assert!(gemm(
            1.0,
            View::new(&a[1..], m, k),
            View::new(&b, k, n),
            0.0,
            &mut c,
            false
        )
        .is_err());
    }

    #[test]
    fn tall_and_wide_inputs_give_transposed_results() {
        let g: Vec<f32> = (0..12).map(|i| ((i * 5 % 7) as f32) - 3.0).collect();
        let coeffs = schedule_f32(&[MUON_COEFFICIENTS]);
        let tall = orthogonalize(
            &g,
            4,
            3,
            &coeffs,
            5,
            NormGuard::Clamp(1e-7),
            NsDtype::Float32,
        )
        .unwrap();
        let mut gt = vec![0.0f32; 12];
        for i in 0..4 {
            for j in 0..3 {
                gt[j * 4 + i] = g[i * 3 + j];
            }
        }
        let wide = orthogonalize(
            &gt,
            3,
            4,
            &coeffs,
            5,
            NormGuard::Clamp(1e-7),
            NsDtype::Float32,
        )
        .unwrap();
        for i in 0..4 {
            for j in 0..3 {
                assert_eq!(tall[i * 3 + j], wide[j * 4 + i]);
            }
        }
        assert!(orthogonalize(
            &g,
            5,
            3,
            &coeffs,
            5,
            NormGuard::Clamp(1e-7),
            NsDtype::Float32
        )
        .is_err());
        assert!(orthogonalize(&g, 4, 3, &[], 5, NormGuard::Clamp(1e-7), NsDtype::Float32).is_err());
    }

    #[test]
    fn zero_input_stays_zero_and_guards_differ() {
        let z = vec![0.0f32; 6];
        let c = schedule_f32(&[MUON_COEFFICIENTS]);
        assert_eq!(
            orthogonalize(&z, 2, 3, &c, 5, NormGuard::Clamp(1e-7), NsDtype::Float32).unwrap(),
            z
        );
        assert_eq!(
            orthogonalize(&z, 2, 3, &c, 5, NormGuard::Add(1e-7), NsDtype::Float32).unwrap(),
            z
        );
        // Zero steps: only the normalization.
        let g = [3.0f32, 0.0, 0.0, 4.0];
        let clamp =
            orthogonalize(&g, 2, 2, &c, 0, NormGuard::Clamp(10.0), NsDtype::Float32).unwrap();
        assert_eq!(clamp, vec![0.3, 0.0, 0.0, 0.4]);
        let add = orthogonalize(&g, 2, 2, &c, 0, NormGuard::Add(5.0), NsDtype::Float32).unwrap();
        assert_eq!(add, vec![0.3, 0.0, 0.0, 0.4]);
    }

    #[test]
    fn presets_resolve() {
        for name in PRESETS {
            assert!(!preset(name).unwrap().is_empty());
        }
        assert_eq!(preset("ORIGINAL").unwrap(), vec![MUON_COEFFICIENTS]);
        assert!(preset("cubic").is_none());
    }
}
