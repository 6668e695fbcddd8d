//! Curvature estimators: unbiased estimates of the Hessian diagonal (or of
//! the Gauss-Newton diagonal) for second-order rules such as
//! [`SophiaH`](crate::optim::SophiaH) and [`SophiaG`](crate::optim::SophiaG).
//!
//! The core has no automatic differentiation, so an estimator asks a
//! [`CurvatureOracle`], implemented by the framework adapter, for what it
//! needs:
//!
//! - [`Hutchinson`] (Hutchinson 1989; Sophia-H; AdaHessian) needs
//!   Hessian-vector products: `est = u * (H u)` with random probes u
//!   (Rademacher by default: `E[u u^T] = I`, so `E[u * (H u)] = diag(H)`),
//!   averaged over `num_samples` probes.
//! - [`GaussNewtonBartlett`] (Sophia-G) needs only a gradient: that of the
//!   mini-batch loss on labels sampled from the model's own predictive
//!   distribution, `g_hat`; `est = B * g_hat * g_hat`, whose expectation is
//!   the diagonal of the Gauss-Newton matrix for losses that are negative
//!   log-likelihoods (B = batch size).
//!
//! An estimate is handed to the optimizer through
//! [`ParamMut::hessian`](crate::tensor::ParamMut) (see [`attach`]); a step
//! without one keeps the optimizer's running curvature.
//!
//! ```
//! use optimist_core::curvature::{attach, Hutchinson};
//! use optimist_core::{registry, Param, Optimizer};
//! use serde_json::json;
//!
//! // f(x) = 0.5 * sum c_i x_i^2: H = diag(c), so H v = c * v.
//! let c = [1.0f32, 4.0, 9.0];
//! let mut hutch = Hutchinson::new(42);
//! let est = hutch
//!     .estimate_with(&[3], |v, out| {
//!         for (o, (vi, ci)) in out[0].iter_mut().zip(v[0].iter().zip(&c)) {
//!             *o = ci * vi;
//!         }
//!         Ok(())
//!     })
//!     .unwrap();
//! assert_eq!(est[0], vec![1.0, 4.0, 9.0]); // exact for a diagonal H and Rademacher probes
//!
//! let mut opt = registry::build("sophiah", &json!({"lr": 0.1})).unwrap();
//! let mut x = Param::new("x", vec![3], vec![1.0, 1.0, 1.0]).unwrap();
//! x.grad = vec![1.0, 4.0, 9.0];
//! let mut views = vec![x.view()];
//! attach(&mut views, &est).unwrap();
//! opt.step(&mut views).unwrap();
//! ```

use crate::error::{Error, Result};
use crate::rng::SplitMix64;
use crate::tensor::ParamMut;

/// What a framework adapter provides for curvature estimation. Both
/// methods work on the parameters in a fixed order, one flat vector each,
/// with the lengths of [`CurvatureOracle::sizes`].
pub trait CurvatureOracle {
    /// Number of elements of each parameter.
    fn sizes(&self) -> Vec<usize>;

    /// Hessian-vector product of the loss at the current parameters:
    /// `out[i] = (H v)` restricted to parameter i.
    fn hvp(&mut self, _v: &[Vec<f32>], _out: &mut [Vec<f32>]) -> Result<()> {
        Err(Error::Unsupported(
            "this curvature oracle provides no Hessian-vector products".into(),
        ))
    }

    /// Gradient of the mini-batch loss on labels sampled from the model's
    /// predictions (one flat vector per parameter).
    fn sampled_grad(&mut self, _out: &mut [Vec<f32>]) -> Result<()> {
        Err(Error::Unsupported(
            "this curvature oracle provides no sampled-label gradients".into(),
        ))
    }
}

/// An estimator of the Hessian (or Gauss-Newton) diagonal.
pub trait CurvatureEstimator {
    /// Short name.
    fn name(&self) -> &str;
    /// One estimate per parameter, in the oracle's order.
    fn estimate(&mut self, oracle: &mut dyn CurvatureOracle) -> Result<Vec<Vec<f32>>>;
}

/// Sets each view's `hessian` to the matching estimate.
pub fn attach<'a>(views: &mut [ParamMut<'a>], estimates: &'a [Vec<f32>]) -> Result<()> {
    if views.len() != estimates.len() {
        return Err(Error::Shape(format!(
            "{} curvature estimates for {} parameters",
            estimates.len(),
            views.len()
        )));
    }
    for (v, e) in views.iter_mut().zip(estimates) {
        if e.len() != v.numel() {
            return Err(Error::Shape(format!(
                "parameter '{}': curvature estimate has {} values, parameter has {}",
                v.name,
                e.len(),
                v.numel()
            )));
        }
        v.hessian = Some(e.as_slice());
    }
    Ok(())
}

/// Distribution of Hutchinson's probe vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// +1 or -1 with probability 1/2 (lowest variance; the default).
    Rademacher,
    /// Standard normal (pytorch-optimizer's default `hessian_distribution`).
    Gaussian,
}

/// Hutchinson's estimator of the Hessian diagonal, `mean over probes of
/// u * (H u)`, with a seeded generator.
#[derive(Debug, Clone)]
pub struct Hutchinson {
    rng: SplitMix64,
    num_samples: usize,
    probe: Probe,
}

impl Hutchinson {
    /// One Rademacher probe per estimate, generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Hutchinson {
            rng: SplitMix64::new(seed),
            num_samples: 1,
            probe: Probe::Rademacher,
        }
    }

    /// Averages `n` probes per estimate (at least 1).
    pub fn with_samples(mut self, n: usize) -> Result<Self> {
        if n == 0 {
            return Err(Error::hparam(
                "hutchinson",
                "num_samples",
                n,
                "must be >= 1",
            ));
        }
        self.num_samples = n;
        Ok(self)
    }

    /// Uses `probe` vectors.
    pub fn with_probe(mut self, probe: Probe) -> Self {
        self.probe = probe;
        self
    }

    /// The generator state (for checkpoints) and its restoration.
    pub fn rng_state(&self) -> u64 {
        self.rng.state()
    }

    /// Restores a state from [`Hutchinson::rng_state`].
    pub fn set_rng_state(&mut self, state: u64) {
        self.rng.set_state(state);
    }

    /// An estimate for parameters of the given sizes from a Hessian-vector
    /// product closure `hvp(v, out)` that writes `H v` into `out`.
    pub fn estimate_with<F>(&mut self, sizes: &[usize], mut hvp: F) -> Result<Vec<Vec<f32>>>
    where
        F: FnMut(&[Vec<f32>], &mut [Vec<f32>]) -> Result<()>,
    {
        let mut est: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![0.0; n]).collect();
        let mut out: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![0.0; n]).collect();
        let scale = (1.0 / self.num_samples as f64) as f32;
        for _ in 0..self.num_samples {
            let probe: Vec<Vec<f32>> = sizes
                .iter()
                .map(|&n| (0..n).map(|_| self.draw()).collect())
                .collect();
            for o in out.iter_mut() {
                o.iter_mut().for_each(|x| *x = 0.0);
            }
            hvp(&probe, &mut out)?;
            for ((e, u), hu) in est.iter_mut().zip(&probe).zip(&out) {
                if hu.len() != u.len() {
                    return Err(Error::Shape(format!(
                        "Hessian-vector product has {} values for a parameter of {}",
                        hu.len(),
                        u.len()
                    )));
                }
                for ((ei, &ui), &hi) in e.iter_mut().zip(u).zip(hu) {
                    *ei += scale * (ui * hi);
                }
            }
        }
        Ok(est)
    }

    fn draw(&mut self) -> f32 {
        match self.probe {
            Probe::Rademacher => self.rng.rademacher(),
            Probe::Gaussian => self.rng.normal() as f32,
        }
    }
}

impl CurvatureEstimator for Hutchinson {
    fn name(&self) -> &str {
        "hutchinson"
    }

    fn estimate(&mut self, oracle: &mut dyn CurvatureOracle) -> Result<Vec<Vec<f32>>> {
        let sizes = oracle.sizes();
        self.estimate_with(&sizes, |v, out| oracle.hvp(v, out))
    }
}

/// The Gauss-Newton-Bartlett estimator, `scale * g_hat * g_hat`, where
/// `g_hat` is the gradient on sampled labels and `scale` the batch size B.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GaussNewtonBartlett {
    scale: f64,
}

impl GaussNewtonBartlett {
    /// The paper's estimator, `B * g_hat * g_hat`, for a batch of
    /// `batch_size` examples (tokens).
    pub fn new(batch_size: f64) -> Result<Self> {
        if !(batch_size.is_finite() && batch_size > 0.0) {
            return Err(Error::hparam(
                "gauss_newton_bartlett",
                "batch_size",
                batch_size,
                "must be a finite number > 0",
            ));
        }
        Ok(GaussNewtonBartlett { scale: batch_size })
    }

    /// The estimate the official SophiaG code folds into its EMA,
    /// `g_hat * g_hat` (its step multiplies by `bs` itself).
    pub fn for_sophiag() -> Self {
        GaussNewtonBartlett { scale: 1.0 }
    }

    /// The estimate from the sampled-label gradients.
    pub fn from_grads(&self, grads: &[&[f32]]) -> Vec<Vec<f32>> {
        let s = self.scale as f32;
        grads
            .iter()
            .map(|g| g.iter().map(|&x| s * x * x).collect())
            .collect()
    }
}

impl CurvatureEstimator for GaussNewtonBartlett {
    fn name(&self) -> &str {
        "gauss_newton_bartlett"
    }

    fn estimate(&mut self, oracle: &mut dyn CurvatureOracle) -> Result<Vec<Vec<f32>>> {
        let mut g: Vec<Vec<f32>> = oracle.sizes().iter().map(|&n| vec![0.0; n]).collect();
        oracle.sampled_grad(&mut g)?;
        let views: Vec<&[f32]> = g.iter().map(Vec::as_slice).collect();
        Ok(self.from_grads(&views))
    }
}
