//! Workloads that need no data: `quadratic`, `rosenbrock`, `teacher-student`.

use candle_core::{Device, Module, Tensor};
use candle_nn::VarMap;

use crate::nn::Init;
use crate::{Eval, Result, Rng, Split, Workload, WorkloadSpec};

/// Dimension of the noisy quadratic.
pub const QUAD_DIM: usize = 100;

/// `quadratic`.
pub fn quadratic_spec() -> WorkloadSpec {
    WorkloadSpec {
        name: "quadratic",
        description: "DeepOBS noisy quadratic: 100-d, Q = R^T D R with 90% of eigenvalues in U(0,1) and 10% in U(30,60), batch noise x ~ N(0, I)",
        metric: "excess_loss",
        higher_is_better: false,
        target: 1.0,
        steps: 1000,
        eval_every: 20,
        batch_size: 128,
        needs_data: false,
        lr_scale: 10.0,
    }
}

/// `rosenbrock`.
pub fn rosenbrock_spec() -> WorkloadSpec {
    WorkloadSpec {
        name: "rosenbrock",
        description: "2-D Rosenbrock (1-u)^2 + 100 (v-u^2)^2 from (-1.5, 2), deterministic",
        metric: "f",
        higher_is_better: false,
        target: 1e-2,
        steps: 1500,
        eval_every: 10,
        batch_size: 1,
        needs_data: false,
        lr_scale: 30.0,
    }
}

/// `teacher-student`.
pub fn teacher_student_spec() -> WorkloadSpec {
    WorkloadSpec {
        name: "teacher-student",
        description: "32-128-1 tanh MLP fitting a fixed random 32-64-1 tanh teacher on fresh Gaussian inputs (MSE)",
        metric: "relative_mse",
        higher_is_better: false,
        target: 0.02,
        steps: 1500,
        eval_every: 25,
        batch_size: 128,
        needs_data: false,
        lr_scale: 3.0,
    }
}

/// A Haar-random rotation (QR of a Gaussian matrix, signs fixed), row-major.
fn random_rotation(n: usize, rng: &mut Rng) -> Vec<f64> {
    let mut q: Vec<Vec<f64>> = (0..n)
        .map(|_| (0..n).map(|_| rng.normal()).collect())
        .collect();
    // Modified Gram-Schmidt on the rows.
    for i in 0..n {
        let (done, rest) = q.split_at_mut(i);
        let qi = &mut rest[0];
        for qj in done.iter() {
            let d: f64 = qi.iter().zip(qj).map(|(a, b)| a * b).sum();
            for (a, b) in qi.iter_mut().zip(qj) {
                *a -= d * b;
            }
        }
        let norm = qi.iter().map(|x| x * x).sum::<f64>().sqrt();
        for x in qi.iter_mut() {
            *x /= norm;
        }
    }
    q.into_iter().flatten().collect()
}

/// The DeepOBS noisy quadratic: mean over the batch of
/// `0.5 (theta - x_i)^T Q (theta - x_i)`, `x_i ~ N(0, I)`. Q is fixed (seed
/// 42, as DeepOBS); theta starts at ones. Metric: the excess expected loss
/// `0.5 theta^T Q theta` (the expected loss minus its minimum).
pub struct Quadratic {
    spec: WorkloadSpec,
    varmap: VarMap,
    theta: Tensor,
    q: Tensor,
    q64: Vec<f64>,
    batch: Option<Tensor>,
}

impl Quadratic {
    /// The problem; `seed` draws the batch noise (through the training rng).
    pub fn new(_seed: u64) -> Result<Self> {
        let n = QUAD_DIM;
        let mut rng = Rng::new(42);
        let eig: Vec<f64> = (0..n)
            .map(|i| {
                if i < n * 9 / 10 {
                    rng.uniform()
                } else {
                    30.0 + 30.0 * rng.uniform()
                }
            })
            .collect();
        let r = random_rotation(n, &mut rng);
        let mut q64 = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                q64[i * n + j] = (0..n).map(|k| r[k * n + i] * eig[k] * r[k * n + j]).sum();
            }
        }
        let varmap = VarMap::new();
        let mut init = Init::new(&varmap, Rng::new(0));
        let theta = init.constant("theta", &[n], 1.0)?;
        let q = Tensor::from_vec(
            q64.iter().map(|&v| v as f32).collect::<Vec<f32>>(),
            (n, n),
            &Device::Cpu,
        )?;
        Ok(Quadratic {
            spec: quadratic_spec(),
            varmap,
            theta,
            q,
            q64,
            batch: None,
        })
    }
}

impl Workload for Quadratic {
    spec_and_varmap!();
    fn next_batch(&mut self, rng: &mut Rng) -> Result<()> {
        let b = self.spec.batch_size;
        let x: Vec<f32> = (0..b * QUAD_DIM).map(|_| rng.normal() as f32).collect();
        self.batch = Some(Tensor::from_vec(x, (b, QUAD_DIM), &Device::Cpu)?);
        Ok(())
    }
    fn batch_loss(&self) -> candle_core::Result<Tensor> {
        let x = crate::drawn(&self.batch)?;
        let d = self.theta.unsqueeze(0)?.broadcast_sub(x)?;
        d.matmul(&self.q)?.mul(&d)?.sum(1)?.mean_all()? * 0.5
    }
    fn evaluate(&self, _split: Split) -> Result<Eval> {
        let t: Vec<f64> = self
            .theta
            .to_vec1::<f32>()?
            .iter()
            .map(|&v| v as f64)
            .collect();
        let n = QUAD_DIM;
        let mut f = 0.0;
        for i in 0..n {
            f += t[i] * (0..n).map(|j| self.q64[i * n + j] * t[j]).sum::<f64>();
        }
        let f = 0.5 * f;
        Ok(Eval { loss: f, metric: f })
    }
}

/// The 2-D Rosenbrock function, deterministic, from (-1.5, 2).
pub struct Rosenbrock {
    spec: WorkloadSpec,
    varmap: VarMap,
    xy: Tensor,
}

impl Rosenbrock {
    /// The problem (the seed is unused: it is deterministic).
    pub fn new(_seed: u64) -> Result<Self> {
        let varmap = VarMap::new();
        let mut init = Init::new(&varmap, Rng::new(0));
        let xy = init.values("xy", &[2], vec![-1.5, 2.0])?;
        Ok(Rosenbrock {
            spec: rosenbrock_spec(),
            varmap,
            xy,
        })
    }
}

impl Workload for Rosenbrock {
    spec_and_varmap!();
    fn next_batch(&mut self, _rng: &mut Rng) -> Result<()> {
        Ok(())
    }
    fn batch_loss(&self) -> candle_core::Result<Tensor> {
        let u = self.xy.narrow(0, 0, 1)?;
        let v = self.xy.narrow(0, 1, 1)?;
        let a = (u.neg()? + 1.0)?.sqr()?;
        let b = (v - u.sqr()?)?.sqr()?;
        (a + (b * 100.0)?)?.sum_all()
    }
    fn evaluate(&self, _split: Split) -> Result<Eval> {
        let p = self.xy.to_vec1::<f32>()?;
        let (u, v) = (p[0] as f64, p[1] as f64);
        let f = (1.0 - u).powi(2) + 100.0 * (v - u * u).powi(2);
        Ok(Eval { loss: f, metric: f })
    }
}

/// Input dimension of the teacher and the student.
pub const TS_IN: usize = 32;

struct Mlp {
    l1: candle_nn::Linear,
    l2: candle_nn::Linear,
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.l2.forward(&self.l1.forward(x)?.tanh()?)
    }
}

/// A student MLP (32-128-1, tanh) fitting a fixed teacher (32-64-1, tanh,
/// weights N(0, 1/fan_in), seed 1234) on fresh N(0, I) inputs every step.
/// Metric: validation MSE divided by the variance of the teacher's outputs,
/// on 4096 fixed inputs.
pub struct TeacherStudent {
    spec: WorkloadSpec,
    varmap: VarMap,
    student: Mlp,
    teacher: Mlp,
    valid: (Tensor, Tensor),
    valid_var: f64,
    batch: Option<(Tensor, Tensor)>,
}

impl TeacherStudent {
    /// The problem; `seed` initialises the student.
    pub fn new(seed: u64) -> Result<Self> {
        let teacher_map = VarMap::new();
        let mut t = Init::new(&teacher_map, Rng::new(1234));
        let teacher = Mlp {
            l1: candle_nn::Linear::new(
                t.normal("l1.weight", &[64, TS_IN], (1.0 / TS_IN as f64).sqrt())?,
                Some(t.normal("l1.bias", &[64], 0.1)?),
            ),
            l2: candle_nn::Linear::new(
                t.normal("l2.weight", &[1, 64], (1.0 / 64f64).sqrt())?,
                Some(t.constant("l2.bias", &[1], 0.0)?),
            ),
        };
        let varmap = VarMap::new();
        let mut init = Init::new(&varmap, Rng::derive(seed, "init"));
        let student = Mlp {
            l1: init.linear("fc1", TS_IN, 128)?,
            l2: init.linear("fc2", 128, 1)?,
        };
        let mut vrng = Rng::new(4321);
        let n = 4096;
        let x: Vec<f32> = (0..n * TS_IN).map(|_| vrng.normal() as f32).collect();
        let x = Tensor::from_vec(x, (n, TS_IN), &Device::Cpu)?;
        let y = teacher.forward(&x)?.detach();
        let yv = y.flatten_all()?.to_vec1::<f32>()?;
        let mean = yv.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = yv.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        Ok(TeacherStudent {
            spec: teacher_student_spec(),
            varmap,
            student,
            teacher,
            valid: (x, y),
            valid_var: var,
            batch: None,
        })
    }
}

impl Workload for TeacherStudent {
    spec_and_varmap!();
    fn next_batch(&mut self, rng: &mut Rng) -> Result<()> {
        let b = self.spec.batch_size;
        let x: Vec<f32> = (0..b * TS_IN).map(|_| rng.normal() as f32).collect();
        let x = Tensor::from_vec(x, (b, TS_IN), &Device::Cpu)?;
        let y = self.teacher.forward(&x)?.detach();
        self.batch = Some((x, y));
        Ok(())
    }
    fn batch_loss(&self) -> candle_core::Result<Tensor> {
        let (x, y) = crate::drawn(&self.batch)?;
        candle_nn::loss::mse(&self.student.forward(x)?, y)
    }
    fn evaluate(&self, _split: Split) -> Result<Eval> {
        let (x, y) = &self.valid;
        let mse = candle_nn::loss::mse(&self.student.forward(x)?, y)?.to_scalar::<f32>()? as f64;
        Ok(Eval {
            loss: mse,
            metric: mse / self.valid_var,
        })
    }
}
