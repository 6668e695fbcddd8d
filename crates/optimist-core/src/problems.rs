//! Built-in deterministic test problems (loss and gradient in closed form),
//! used by the demo, the property tests and the benchmarks.

use crate::error::Result;
use crate::optimizer::Optimizer;
use crate::tensor::Param;

/// A differentiable objective over one flat parameter vector.
pub trait Problem {
    /// Short name.
    fn name(&self) -> &str;
    /// Starting point.
    fn init(&self) -> Vec<f32>;
    /// Loss at `x`, writing the gradient into `grad`.
    fn loss_grad(&self, x: &[f32], grad: &mut [f32]) -> f64;
    /// Optimal loss value.
    fn optimum(&self) -> f64 {
        0.0
    }
    /// Shape of the parameter (a vector of `init().len()` values unless the
    /// problem says otherwise).
    fn shape(&self) -> Vec<usize> {
        vec![self.init().len()]
    }
}

/// The 2-D Rosenbrock function `(a - x)^2 + b (y - x^2)^2`, a = 1, b = 100,
/// started at (-1.5, 2); minimum 0 at (1, 1).
#[derive(Debug, Clone, Copy)]
pub struct Rosenbrock;

impl Problem for Rosenbrock {
    fn name(&self) -> &str {
        "rosenbrock"
    }
    fn init(&self) -> Vec<f32> {
        vec![-1.5, 2.0]
    }
    fn loss_grad(&self, x: &[f32], g: &mut [f32]) -> f64 {
        let (a, b) = (1.0f64, 100.0f64);
        let (x0, x1) = (x[0] as f64, x[1] as f64);
        let r = x1 - x0 * x0;
        g[0] = (-2.0 * (a - x0) - 4.0 * b * x0 * r) as f32;
        g[1] = (2.0 * b * r) as f32;
        (a - x0).powi(2) + b * r * r
    }
}

/// An ill-conditioned quadratic `0.5 * sum_i c_i (x_i - 1)^2` with
/// curvatures `c_i` spread log-uniformly over `[1, condition]`, started at 0.
#[derive(Debug, Clone, Copy)]
pub struct Quadratic {
    pub dim: usize,
    pub condition: f64,
}

impl Default for Quadratic {
    fn default() -> Self {
        Quadratic {
            dim: 16,
            condition: 100.0,
        }
    }
}

impl Quadratic {
    fn curvature(&self, i: usize) -> f64 {
        if self.dim <= 1 {
            return 1.0;
        }
        self.condition.powf(i as f64 / (self.dim - 1) as f64)
    }
}

impl Problem for Quadratic {
    fn name(&self) -> &str {
        "quadratic"
    }
    fn init(&self) -> Vec<f32> {
        vec![0.0; self.dim]
    }
    fn loss_grad(&self, x: &[f32], g: &mut [f32]) -> f64 {
        let mut loss = 0.0;
        for (i, (&xi, gi)) in x.iter().zip(g.iter_mut()).enumerate() {
            let c = self.curvature(i);
            let d = xi as f64 - 1.0;
            *gi = (c * d) as f32;
            loss += 0.5 * c * d * d;
        }
        loss
    }
}

/// Runs `steps` full-batch steps of `opt` on `problem`; returns the loss
/// before each step and the final loss (steps + 1 values).
pub fn minimize(problem: &dyn Problem, opt: &mut dyn Optimizer, steps: usize) -> Result<Vec<f64>> {
    let init = problem.init();
    let n = init.len();
    let mut p = Param::new("x", problem.shape(), init)?;
    let mut losses = Vec::with_capacity(steps.saturating_add(1).min(1 << 20));
    for _ in 0..steps {
        let loss = problem.loss_grad(&p.data, &mut p.grad);
        losses.push(loss);
        opt.step(&mut [p.view()])?;
    }
    let mut g = vec![0.0; n];
    losses.push(problem.loss_grad(&p.data, &mut g));
    Ok(losses)
}

/// Matrix least squares `0.5 / k * ||A W - B||_F^2` over a `m x n` matrix
/// `W`, with a fixed pseudo-random `A` (`k x m`, entries uniform in
/// `[-1, 1)`) and `B = A W*` for a pseudo-random `W*`, so the minimum is 0 at
/// `W = W*`; started at `W = 0`. The matrix problem of the Muon family.
#[derive(Debug, Clone)]
pub struct MatrixLeastSquares {
    k: usize,
    m: usize,
    n: usize,
    a: Vec<f64>,
    b: Vec<f64>,
}

impl MatrixLeastSquares {
    /// The problem with `A` of `k x m`, `W` of `m x n`, drawn from `seed`.
    pub fn new(k: usize, m: usize, n: usize, seed: u64) -> Self {
        let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let mut next = move || {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        };
        let a: Vec<f64> = (0..k * m).map(|_| next()).collect();
        let w: Vec<f64> = (0..m * n).map(|_| next()).collect();
        let mut b = vec![0.0; k * n];
        for i in 0..k {
            for l in 0..m {
                for j in 0..n {
                    b[i * n + j] += a[i * m + l] * w[l * n + j];
                }
            }
        }
        MatrixLeastSquares { k, m, n, a, b }
    }
}

impl Default for MatrixLeastSquares {
    /// `A` of 32 x 16, `W` of 16 x 8.
    fn default() -> Self {
        MatrixLeastSquares::new(32, 16, 8, 7)
    }
}

impl Problem for MatrixLeastSquares {
    fn name(&self) -> &str {
        "lstsq"
    }
    fn init(&self) -> Vec<f32> {
        vec![0.0; self.m * self.n]
    }
    fn shape(&self) -> Vec<usize> {
        vec![self.m, self.n]
    }
    fn loss_grad(&self, x: &[f32], g: &mut [f32]) -> f64 {
        let (k, m, n) = (self.k, self.m, self.n);
        let mut r = self.b.iter().map(|&b| -b).collect::<Vec<f64>>();
        for i in 0..k {
            for l in 0..m {
                let a = self.a[i * m + l];
                for j in 0..n {
                    r[i * n + j] += a * x[l * n + j] as f64;
                }
            }
        }
        let scale = 1.0 / k as f64;
        for l in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|i| self.a[i * m + l] * r[i * n + j]).sum();
                g[l * n + j] = (s * scale) as f32;
            }
        }
        0.5 * scale * r.iter().map(|v| v * v).sum::<f64>()
    }
}
