//! Curvature for second-order rules: Hessian-vector products and
//! Hutchinson estimates of the Hessian diagonal (Sophia-H, AdaHessian), and
//! Gauss-Newton-Bartlett estimates of the Gauss-Newton diagonal (SophiaG).
//!
//! **Method: finite differences of gradients.** candle's backward pass
//! detaches every gradient it computes (unless the process runs with
//! `CANDLE_GRAD_DO_NOT_DETACH=1`), so the gradient of `<grad L, v>` that
//! torch's `create_graph=True` gives is not available from an ordinary
//! backward pass. The adapter therefore computes
//!
//! ```text
//! H v ~= (grad L(theta + h v) - grad L(theta - h v)) / (2 h)     (central, default)
//! H v ~= (grad L(theta + h v) - grad L(theta)) / h               (forward)
//! ```
//!
//! with two (central) or one (forward) extra forward/backward passes on
//! the same batch. Both are exact for a quadratic loss up to f32 rounding;
//! the central difference has O(h^2) error otherwise. Parameters are
//! perturbed in place and restored bit for bit from a saved copy (adding
//! and subtracting `h v` would not restore them exactly in f32).
//!
//! Hutchinson's estimator of the diagonal is `u * (H u)` with `u` drawn
//! from N(0, I) (default, as pytorch-optimizer's SophiaH) or Rademacher
//! ±1, averaged over `num_samples` probes.
//!
//! **Gauss-Newton-Bartlett** ([`gauss_newton_bartlett`]; Liu et al. 2023,
//! SophiaG) needs no second derivative: with `g_hat` the gradient of the
//! mini-batch loss (a mean over B predictions) on labels `y_hat` sampled
//! from the model's own predictive distribution (softmax of the logits,
//! sigmoid for a logistic model), `B * g_hat * g_hat` is an unbiased
//! estimate of the Gauss-Newton diagonal for losses that are negative
//! log-likelihoods. One sampled-label forward/backward pass per estimate;
//! the labels are drawn from the adapter's seeded generator.

use candle_core::{backprop::GradStore, CpuStorage, Storage, Tensor, Var};

use optimist_core::curvature::GaussNewtonBartlett;

use crate::inplace::with_f32_slices_mut;
use crate::rng::Rng;

/// How Hessian-vector products are computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HvpMethod {
    /// Finite differences of gradients with step `h` along the probe.
    FiniteDifference {
        /// Step along the probe vector (the probe has unit-variance entries).
        step: f64,
        /// Central (two extra gradients) or forward (one) difference.
        central: bool,
    },
}

impl Default for HvpMethod {
    fn default() -> Self {
        HvpMethod::FiniteDifference {
            step: 1e-3,
            central: true,
        }
    }
}

/// Distribution of Hutchinson probe vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Probe {
    /// Standard normal entries (pytorch-optimizer's default, `gaussian`).
    #[default]
    Gaussian,
    /// ±1 entries (`rademacher`).
    Rademacher,
}

/// Which curvature estimate a rule consumes, from its registry facts
/// ([`optimist_core::optimizer::Curvature`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CurvatureKind {
    /// Hessian diagonal, by Hutchinson's estimator on finite-difference
    /// Hessian-vector products of the loss closure (Sophia-H, AdaHessian).
    /// Estimates at steps 1, 1 + k, 1 + 2k, ...
    #[default]
    HessianDiagonal,
    /// Gauss-Newton diagonal, by the Gauss-Newton-Bartlett estimator on the
    /// gradient of the loss on sampled labels (SophiaG). Estimates at steps
    /// k + 1, 2k + 1, ..., as the official training loop, which calls
    /// `update_hessian()` after every k-th step (`hess_interval`).
    GaussNewtonBartlett,
}

/// When and how the adapter estimates the curvature.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvatureConfig {
    /// What is estimated (and so which closure the estimate needs).
    pub kind: CurvatureKind,
    /// How Hessian-vector products are computed.
    pub method: HvpMethod,
    /// Probe distribution.
    pub probe: Probe,
    /// Probes averaged per estimate.
    pub num_samples: usize,
    /// The period k of the estimates: steps 1, 1 + k, 1 + 2k, ... for a
    /// Hessian diagonal (Sophia-H's `update_period`, taken from the
    /// optimizer's hyperparameter), steps k + 1, 2k + 1, ... for the
    /// Gauss-Newton diagonal (the official SophiaG loop's `hess_interval`,
    /// 10 by default; not a hyperparameter of the rule).
    pub update_period: u64,
    /// Seed of the generator of the probes (Hessian) or of the sampled
    /// labels (Gauss-Newton).
    pub seed: u64,
}

impl Default for CurvatureConfig {
    fn default() -> Self {
        CurvatureConfig {
            kind: CurvatureKind::HessianDiagonal,
            method: HvpMethod::default(),
            probe: Probe::Gaussian,
            num_samples: 1,
            update_period: 10,
            seed: 0,
        }
    }
}

/// Adds `scale * grad(param)` to `out` for every parameter, reading the
/// gradient storage in place; a parameter without a gradient adds nothing.
fn accumulate_grads(
    grads: &GradStore,
    vars: &[&Var],
    scale: f32,
    out: &mut [Vec<f32>],
) -> candle_core::Result<()> {
    for (var, acc) in vars.iter().zip(out.iter_mut()) {
        let Some(g) = grads.get(var.as_tensor()) else {
            continue;
        };
        let (storage, layout) = g.storage_and_layout();
        let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
            return Err(candle_core::Error::msg(
                "optimist-candle: gradients must be f32 CPU tensors",
            ));
        };
        match layout.contiguous_offsets() {
            Some((start, end)) if end - start == acc.len() => {
                for (a, &x) in acc.iter_mut().zip(&data[start..end]) {
                    *a += scale * x;
                }
            }
            _ => {
                drop(storage);
                let flat = g.flatten_all()?.to_vec1::<f32>()?;
                for (a, &x) in acc.iter_mut().zip(&flat) {
                    *a += scale * x;
                }
            }
        }
    }
    Ok(())
}

/// Hessian-vector products `H v_i` for every parameter `i`, by finite
/// differences of the gradients of `loss_fn` (which must compute the loss
/// on the same batch each time it is called).
///
/// `grads_at_theta` is needed by the forward difference only. The
/// parameters are restored exactly before returning, also on error.
pub fn hessian_vector_product(
    vars: &[&Var],
    labels: &[String],
    v: &[Vec<f32>],
    method: HvpMethod,
    grads_at_theta: Option<&GradStore>,
    loss_fn: &mut dyn FnMut() -> candle_core::Result<Tensor>,
) -> candle_core::Result<Vec<Vec<f32>>> {
    let HvpMethod::FiniteDifference { step, central } = method;
    if !(step.is_finite() && step > 0.0) {
        return Err(candle_core::Error::msg(format!(
            "finite-difference step must be a positive number, got {step}"
        )));
    }
    let tensors: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
    let mut saved: Vec<Vec<f32>> = Vec::with_capacity(vars.len());
    with_f32_slices_mut(&tensors, labels, &mut |slices| {
        saved.extend(slices.iter().map(|s| s.to_vec()));
        Ok(())
    })?;
    for (i, (vi, s)) in v.iter().zip(&saved).enumerate() {
        if vi.len() != s.len() {
            return Err(candle_core::Error::msg(format!(
                "probe for {} has {} values, the parameter has {}",
                labels.get(i).map(String::as_str).unwrap_or("parameter"),
                vi.len(),
                s.len()
            )));
        }
    }
    let mut out: Vec<Vec<f32>> = saved.iter().map(|s| vec![0.0; s.len()]).collect();
    let shifts: &[f64] = if central { &[1.0, -1.0] } else { &[1.0] };
    let result: candle_core::Result<()> = (|| {
        for &sign in shifts {
            let h = (sign * step) as f32;
            with_f32_slices_mut(&tensors, labels, &mut |slices| {
                for ((p, s), vi) in slices.iter_mut().zip(&saved).zip(v) {
                    for ((x, &x0), &d) in p.iter_mut().zip(s).zip(vi) {
                        *x = x0 + h * d;
                    }
                }
                Ok(())
            })?;
            let loss = loss_fn()?;
            let grads = loss.backward()?;
            let scale = if central {
                (sign / (2.0 * step)) as f32
            } else {
                (1.0 / step) as f32
            };
            accumulate_grads(&grads, vars, scale, &mut out)?;
        }
        if !central {
            let g0 = grads_at_theta.ok_or_else(|| {
                candle_core::Error::msg("forward differences need the gradients at theta")
            })?;
            accumulate_grads(g0, vars, -(1.0 / step) as f32, &mut out)?;
        }
        Ok(())
    })();
    // Restore the parameters bit for bit, whatever happened.
    let restored = with_f32_slices_mut(&tensors, labels, &mut |slices| {
        for (p, s) in slices.iter_mut().zip(&saved) {
            p.copy_from_slice(s);
        }
        Ok(())
    });
    result?;
    restored?;
    Ok(out)
}

/// Hutchinson estimate of the Hessian diagonal: the mean over probes `u` of
/// `u * (H u)`.
pub fn hutchinson_diagonal(
    vars: &[&Var],
    labels: &[String],
    config: &CurvatureConfig,
    rng: &mut Rng,
    grads_at_theta: Option<&GradStore>,
    loss_fn: &mut dyn FnMut() -> candle_core::Result<Tensor>,
) -> candle_core::Result<Vec<Vec<f32>>> {
    if config.num_samples == 0 {
        return Err(candle_core::Error::msg(
            "curvature: num_samples must be at least 1",
        ));
    }
    let sizes: Vec<usize> = vars.iter().map(|v| v.elem_count()).collect();
    let mut est: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![0.0; n]).collect();
    let w = 1.0 / config.num_samples as f32;
    for _ in 0..config.num_samples {
        let u: Vec<Vec<f32>> = sizes
            .iter()
            .map(|&n| {
                (0..n)
                    .map(|_| match config.probe {
                        Probe::Gaussian => rng.normal() as f32,
                        Probe::Rademacher => rng.rademacher() as f32,
                    })
                    .collect()
            })
            .collect();
        let hu = hessian_vector_product(vars, labels, &u, config.method, grads_at_theta, loss_fn)?;
        for ((e, ui), hi) in est.iter_mut().zip(&u).zip(&hu) {
            for ((x, &a), &b) in e.iter_mut().zip(ui).zip(hi) {
                *x += w * a * b;
            }
        }
    }
    Ok(est)
}

/// Gauss-Newton-Bartlett estimate for every parameter: the gradient
/// `g_hat` of `sampled_loss_fn` (the mini-batch loss on labels it draws
/// from the model's predictive distribution with `rng`; a scalar mean over
/// the batch's predictions), turned into `estimator.from_grads(g_hat)`
/// (`scale * g_hat * g_hat`). A parameter without a gradient gets zeros.
pub fn gauss_newton_bartlett(
    vars: &[&Var],
    estimator: &GaussNewtonBartlett,
    rng: &mut Rng,
    sampled_loss_fn: &mut dyn FnMut(&mut Rng) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Vec<Vec<f32>>> {
    let loss = sampled_loss_fn(rng)?;
    if loss.elem_count() != 1 {
        return Err(candle_core::Error::msg(format!(
            "the sampled-label loss has shape {:?}, not one value",
            loss.dims()
        )));
    }
    let grads = loss.backward()?;
    let mut g: Vec<Vec<f32>> = vars.iter().map(|v| vec![0.0; v.elem_count()]).collect();
    accumulate_grads(&grads, vars, 1.0, &mut g)?;
    let views: Vec<&[f32]> = g.iter().map(Vec::as_slice).collect();
    Ok(estimator.from_grads(&views))
}
