//! Pieces shared by the pytorch-optimizer 4.1.0 ports (`lion`, `adabelief`,
//! `lamb`, `adabound`, `signsgd`, and the projection of `adamp` and
//! `sgdp`), written once. Weight decay
//! ([`crate::math::WeightDecay`]), bias correction and `sign` live in
//! [`crate::math`].
//!
//! Conventions of pytorch-optimizer that these ports follow:
//! - `weight_decouple = true`: `p *= 1 - lr * weight_decay` before the update;
//!   `false`: `g += weight_decay * p` (L2). `fixed_decay` stays false.
//! - One step counter per optimizer (the reference's `group['step']`), used
//!   for bias corrections, bounds and rectification.
//! - `maximize` stays false (not part of the registry).

/// The AMSBound denominator of `BaseOptimizer.apply_ams_bound`:
/// `sqrt(max(vmax, v) + inner_eps) + eps` with the running maximum updated
/// in place, or `sqrt(v + inner_eps) + eps` without it. AdaBound uses
/// `inner_eps = 1e-15`; AdaBelief calls it with both epsilons 0.
#[inline(always)]
pub fn ams_denom(v: f32, vmax: Option<&mut f32>, inner_eps: f32, eps: f32) -> f32 {
    let base = match vmax {
        Some(m) => {
            *m = max_nan(*m, v);
            *m
        }
        None => v,
    };
    (base + inner_eps).sqrt() + eps
}

/// `torch.maximum`: NaN if either is NaN.
#[inline(always)]
pub fn max_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.max(b)
    }
}

/// `clamp_min(lo)` then `clamp_max(hi)` as torch does them: NaN stays NaN.
#[inline(always)]
pub fn clamp_nan(x: f32, lo: f32, hi: f32) -> f32 {
    if x.is_nan() {
        x
    } else {
        x.max(lo).min(hi)
    }
}

/// RAdam-style rectification, `BaseOptimizer.get_rectify_step_size` with
/// `n_sma_threshold = 5`: returns `(rt, n_sma)` where the step size is
/// `lr * rt`. Below the threshold `rt` is 1 with `degenerated_to_sgd` and
/// -1 without (the caller then skips the update).
pub fn rectify(beta2: f64, step: u64, degenerated_to_sgd: bool) -> (f64, f64) {
    let n_sma_max = 2.0 / (1.0 - beta2) - 1.0;
    let t = step as f64;
    let beta2_t = beta2.powf(t);
    let n_sma = n_sma_max - 2.0 * t * beta2_t / (1.0 - beta2_t);
    let rt = if n_sma >= N_SMA_THRESHOLD {
        ((1.0 - beta2_t) * (n_sma - 4.0) / (n_sma_max - 4.0) * (n_sma - 2.0) / n_sma * n_sma_max
            / (n_sma_max - 2.0))
            .sqrt()
    } else if degenerated_to_sgd {
        1.0
    } else {
        -1.0
    };
    (rt, n_sma)
}

/// pytorch-optimizer's default `n_sma_threshold`.
pub const N_SMA_THRESHOLD: f64 = 5.0;

/// The weight-decay ratio of AdamP and SGDP after [`project_radial`] of a
/// parameter of shape `shape`: `wd_ratio` when one of its views was
/// projected (parameters of 2 or more dimensions, not empty), 1 otherwise.
pub fn radial_ratio(
    p: &[f32],
    g: &[f32],
    u: &mut [f32],
    shape: &[usize],
    delta: f64,
    eps: f32,
    wd_ratio: f64,
) -> f64 {
    if shape.len() > 1 && !p.is_empty() && project_radial(p, g, u, shape[0], delta, eps) {
        wd_ratio
    } else {
        1.0
    }
}

/// The projection of AdamP and SGDP (`projection` of the reference), on a
/// parameter `p` of `channels` rows with gradient `g` and update `u`: in
/// the first view, channel (one row per `p[i]`) then layer (one row of
/// all of `p`), where the rows of `g` and `p` are nearly orthogonal (every
/// row's `|cos| < delta / sqrt(row length)`, with torch's
/// `cosine_similarity(eps)`; a NaN cosine fails the test, as torch's
/// `max() < threshold`), removes from each row of `u` its component along
/// the row of `p`. Returns whether a view was projected. Norms, cosines and
/// row sums are accumulated in f64.
pub fn project_radial(p: &[f32], g: &[f32], u: &mut [f32], channels: usize, delta: f64, eps: f32) -> bool {
    let n = p.len();
    [channels, 1].into_iter().any(|rows| {
        let cols = n / rows.max(1);
        project_rows(rows, cols, p, g, u, delta, eps)
    })
}

/// `sqrt(sum x^2)` of f32 values, accumulated in f64, as f32.
fn norm(xs: &[f32]) -> f32 {
    crate::math::l2_norm(xs)
}

/// One view of [`project_radial`]: `rows` rows of `cols` values.
fn project_rows(rows: usize, cols: usize, p: &[f32], g: &[f32], u: &mut [f32], delta: f64, eps: f32) -> bool {
    let mut max_cos = f32::NEG_INFINITY;
    let mut nan = false;
    for r in 0..rows {
        let (pr, gr) = (&p[r * cols..(r + 1) * cols], &g[r * cols..(r + 1) * cols]);
        let (np, ng) = (norm(pr), norm(gr));
        let (np, ng) = (if np < eps { eps } else { np }, if ng < eps { eps } else { ng });
        let dot: f64 = gr
            .iter()
            .zip(pr)
            .map(|(&a, &b)| ((a / ng) * (b / np)) as f64)
            .sum();
        let c = (dot as f32).abs();
        nan |= c.is_nan();
        if c > max_cos {
            max_cos = c;
        }
    }
    let threshold = (delta / (cols as f64).sqrt()) as f32;
    if nan || max_cos >= threshold {
        return false;
    }
    for r in 0..rows {
        let pr = &p[r * cols..(r + 1) * cols];
        let ur = &mut u[r * cols..(r + 1) * cols];
        let d = norm(pr) + eps;
        let radial = pr.iter().zip(ur.iter()).map(|(&a, &b)| ((a / d) * b) as f64).sum::<f64>() as f32;
        for (uj, &pj) in ur.iter_mut().zip(pr) {
            *uj -= (pj / d) * radial;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rectification_starts_after_the_threshold() {
        // beta2 = 0.999: n_sma reaches 5 at step 6.
        let (rt5, n5) = rectify(0.999, 5, true);
        assert!(n5 < 5.0 && rt5 == 1.0);
        let (rt6, n6) = rectify(0.999, 6, true);
        assert!(n6 >= 5.0 && rt6 > 0.0 && rt6 < 1.0);
        assert_eq!(rectify(0.999, 1, false).0, -1.0);
        // rt -> 1 as t grows.
        assert!((rectify(0.999, 1_000_000, true).0 - 1.0).abs() < 1e-3);
    }

    #[test]
    fn ams_denominator_keeps_the_maximum() {
        let mut m = 4.0f32;
        assert_eq!(ams_denom(1.0, Some(&mut m), 0.0, 0.5), 2.5);
        assert_eq!(m, 4.0);
        assert_eq!(ams_denom(9.0, Some(&mut m), 0.0, 0.0), 3.0);
        assert_eq!(m, 9.0);
        assert_eq!(ams_denom(9.0, None, 0.0, 1.0), 4.0);
        assert!(clamp_nan(f32::NAN, 0.0, 1.0).is_nan());
        assert_eq!(clamp_nan(2.0, 0.0, 1.0), 1.0);
    }
}
