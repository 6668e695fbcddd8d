//! `breast-cancer-logreg`: L2-regularised logistic regression on the UCI
//! breast cancer data, a convex problem with a known optimum.
//!
//! Data: `tabular/breast_cancer.csv` (header line `569,30,...`, then 30
//! features and a 0/1 label per row). Rows 0..455 train, 455..569 validate;
//! features are standardised with the training rows' mean and standard
//! deviation. Objective (full batch):
//! `f(w, b) = mean(softplus(z) - y z) + (LAMBDA / 2) |w|^2`, `z = X w + b`.
//! The optimum `f*` is computed in f64 by Newton's method when the workload
//! is loaded; the metric is the suboptimality `f - f*` (target 1e-3).
//! The validation accuracy is available as a check of the model.
//!
//! The table is embedded in the crate ([`crate::embedded`]): the workload
//! needs no data directory. The weights are one vector `linear.weight` of 30
//! values and a scalar bias: the model has no matrix parameter, so rules
//! that update only matrices (Muon family) do not apply to it.

use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use crate::data::{parse_csv, read_verified};
use crate::nn::Init;
use crate::{Error, Eval, Result, Rng, Split, Workload, WorkloadSpec};

/// L2 regularisation strength.
pub const LAMBDA: f64 = 1e-2;
/// Training rows.
pub const TRAIN_ROWS: usize = 455;

/// The spec.
pub fn spec() -> WorkloadSpec {
    WorkloadSpec {
        name: "breast-cancer-logreg",
        description: "UCI breast cancer (455 train / 114 valid), L2-regularised logistic regression, full batch",
        metric: "suboptimality",
        higher_is_better: false,
        target: 1e-3,
        steps: 2000,
        eval_every: 20,
        batch_size: TRAIN_ROWS,
        needs_data: false,
        lr_scale: 10.0,
    }
}

/// The data and the model.
pub struct BreastCancer {
    spec: WorkloadSpec,
    varmap: VarMap,
    w: Tensor,
    b: Tensor,
    x_train: Tensor,
    y_train: Tensor,
    x_valid: Tensor,
    y_valid: Vec<f32>,
    f_star: f64,
    features: usize,
}

/// Objective, gradient and Hessian of the regularised logistic loss in f64
/// (theta = [w; b]).
fn newton_optimum(x: &[Vec<f64>], y: &[f64]) -> f64 {
    let n = x.len();
    let d = x[0].len();
    let mut theta = vec![0.0; d + 1];
    let objective = |theta: &[f64]| -> f64 {
        let mut f = 0.0;
        for (xi, &yi) in x.iter().zip(y) {
            let z: f64 = xi.iter().zip(theta).map(|(a, b)| a * b).sum::<f64>() + theta[d];
            f += z.max(0.0) + (-z.abs()).exp().ln_1p() - yi * z;
        }
        f / n as f64 + 0.5 * LAMBDA * theta[..d].iter().map(|w| w * w).sum::<f64>()
    };
    for _ in 0..50 {
        let mut g = vec![0.0; d + 1];
        let mut h = vec![vec![0.0; d + 1]; d + 1];
        for (xi, &yi) in x.iter().zip(y) {
            let z: f64 = xi.iter().zip(&theta).map(|(a, b)| a * b).sum::<f64>() + theta[d];
            let p = 1.0 / (1.0 + (-z).exp());
            let r = p * (1.0 - p);
            for j in 0..=d {
                let xj = if j < d { xi[j] } else { 1.0 };
                g[j] += (p - yi) * xj / n as f64;
                for k in 0..=d {
                    let xk = if k < d { xi[k] } else { 1.0 };
                    h[j][k] += r * xj * xk / n as f64;
                }
            }
        }
        for j in 0..d {
            g[j] += LAMBDA * theta[j];
            h[j][j] += LAMBDA;
        }
        // Solve h * step = g by Gaussian elimination with partial pivoting.
        let m = d + 1;
        let mut a: Vec<Vec<f64>> = h
            .iter()
            .zip(&g)
            .map(|(row, &gi)| {
                let mut r = row.clone();
                r.push(gi);
                r
            })
            .collect();
        for c in 0..m {
            let piv = (c..m)
                .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
                .unwrap_or(c);
            a.swap(c, piv);
            let p = a[c][c];
            if p.abs() < 1e-300 {
                break;
            }
            let pivot_row = a[c].clone();
            for (r, row) in a.iter_mut().enumerate() {
                if r != c {
                    let f = row[c] / p;
                    if f != 0.0 {
                        for (x, y) in row[c..].iter_mut().zip(&pivot_row[c..]) {
                            *x -= f * y;
                        }
                    }
                }
            }
        }
        let step: Vec<f64> = (0..m).map(|i| a[i][m] / a[i][i]).collect();
        for (t, s) in theta.iter_mut().zip(&step) {
            *t -= s;
        }
        if step.iter().map(|s| s * s).sum::<f64>().sqrt() < 1e-13 {
            break;
        }
    }
    objective(&theta)
}

impl BreastCancer {
    /// Loads and standardises the data, computes f*, initialises w = 0, b = 0
    /// (the seed is not needed: the problem is convex and the start fixed).
    pub fn load(data_dir: &Path, _seed: u64) -> Result<Self> {
        let rel = "tabular/breast_cancer.csv";
        Self::from_bytes(read_verified(data_dir, rel)?, rel)
    }

    /// The workload on the embedded copy of the table (checked against its
    /// SHA-256; byte-identical to the data directory's file).
    pub fn embedded() -> Result<Self> {
        let e = crate::embedded::BREAST_CANCER;
        Self::from_bytes(e.verified()?.to_vec(), e.name)
    }

    fn from_bytes(bytes: Vec<u8>, rel: &str) -> Result<Self> {
        let text =
            String::from_utf8(bytes).map_err(|_| Error::Data(format!("{rel}: not UTF-8")))?;
        let rows = parse_csv(&text, 1, rel)?;
        if rows.len() != 569 || rows[0].len() != 31 {
            return Err(Error::Data(format!(
                "{rel}: expected 569 rows of 30 features and a label, found {} rows of {} fields",
                rows.len(),
                rows.first().map_or(0, Vec::len)
            )));
        }
        Self::from_rows(&rows)
    }

    /// The workload over rows of 30 features and a 0/1 label.
    pub fn from_rows(rows: &[Vec<f64>]) -> Result<Self> {
        let d = rows[0].len() - 1;
        for (i, r) in rows.iter().enumerate() {
            let l = r[d];
            if l != 0.0 && l != 1.0 {
                return Err(Error::Data(format!(
                    "breast cancer row {i}: label {l} is not 0 or 1"
                )));
            }
        }
        let train = &rows[..TRAIN_ROWS];
        let mut mean = vec![0.0; d];
        let mut sd = vec![0.0; d];
        for r in train {
            for j in 0..d {
                mean[j] += r[j] / train.len() as f64;
            }
        }
        for r in train {
            for j in 0..d {
                sd[j] += (r[j] - mean[j]).powi(2) / train.len() as f64;
            }
        }
        let sd: Vec<f64> = sd.iter().map(|v| v.sqrt().max(1e-12)).collect();
        let standard =
            |r: &Vec<f64>| -> Vec<f64> { (0..d).map(|j| (r[j] - mean[j]) / sd[j]).collect() };
        let xs_train: Vec<Vec<f64>> = train.iter().map(standard).collect();
        let ys_train: Vec<f64> = train.iter().map(|r| r[d]).collect();
        let f_star = newton_optimum(&xs_train, &ys_train);
        let valid = &rows[TRAIN_ROWS..];
        let to_tensor = |xs: Vec<Vec<f64>>| -> candle_core::Result<Tensor> {
            let n = xs.len();
            Tensor::from_vec(
                xs.into_iter()
                    .flatten()
                    .map(|v| v as f32)
                    .collect::<Vec<f32>>(),
                (n, d),
                &Device::Cpu,
            )
        };
        let varmap = VarMap::new();
        let mut init = Init::new(&varmap, Rng::new(0));
        let w = init.constant("linear.weight", &[d], 0.0)?;
        let b = init.constant("linear.bias", &[1], 0.0)?;
        Ok(BreastCancer {
            spec: spec(),
            varmap,
            w,
            b,
            x_train: to_tensor(xs_train)?,
            y_train: Tensor::from_vec(
                ys_train.iter().map(|&v| v as f32).collect::<Vec<f32>>(),
                (TRAIN_ROWS, 1),
                &Device::Cpu,
            )?,
            x_valid: to_tensor(valid.iter().map(standard).collect())?,
            y_valid: valid.iter().map(|r| r[d] as f32).collect(),
            f_star,
            features: d,
        })
    }

    /// The optimal objective value (f64 Newton).
    pub fn f_star(&self) -> f64 {
        self.f_star
    }

    /// Features per example.
    pub fn features(&self) -> usize {
        self.features
    }

    /// The training rows' logits `z = X w + b`, (rows, 1).
    fn logits(&self) -> candle_core::Result<Tensor> {
        self.x_train
            .matmul(&self.w.reshape((self.features, 1))?)?
            .broadcast_add(&self.b)
    }

    /// mean(softplus(z) - y z), computed stably as
    /// max(z, 0) + log(1 + exp(-|z|)) - y z.
    fn logistic_loss(z: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
        let sp = (z.relu()? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
        (sp - z.mul(y)?)?.mean_all()
    }

    fn objective(&self) -> candle_core::Result<Tensor> {
        let data = Self::logistic_loss(&self.logits()?, &self.y_train)?;
        let reg = (self.w.sqr()?.sum_all()? * (0.5 * LAMBDA))?;
        data + reg
    }
}

impl Workload for BreastCancer {
    spec_and_varmap!();

    fn next_batch(&mut self, _rng: &mut Rng) -> Result<()> {
        Ok(())
    }

    fn batch_loss(&self) -> candle_core::Result<Tensor> {
        self.objective()
    }

    fn sampled_label_count(&self) -> Option<usize> {
        Some(TRAIN_ROWS)
    }

    /// The mean logistic loss on labels `y_hat ~ Bernoulli(sigmoid(z))`,
    /// without the L2 term (a regulariser, not part of the likelihood; its
    /// curvature LAMBDA is not in the estimate).
    fn sampled_batch_loss(&self, rng: &mut Rng) -> candle_core::Result<Tensor> {
        let z = self.logits()?;
        let zs = z.detach().flatten_all()?.to_vec1::<f32>()?;
        let y: Vec<f32> = zs
            .iter()
            .map(|&z| {
                let p = 1.0 / (1.0 + (-(z as f64)).exp());
                if rng.uniform() < p {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let y = Tensor::from_vec(y, (zs.len(), 1), &Device::Cpu)?;
        Self::logistic_loss(&z, &y)
    }

    /// `loss` is the training objective f, `metric` is f - f* (both
    /// splits: the target is on the optimisation gap).
    fn evaluate(&self, _split: Split) -> Result<Eval> {
        let f = self.objective()?.to_scalar::<f32>()? as f64;
        Ok(Eval {
            loss: f,
            metric: (f - self.f_star).max(0.0),
        })
    }
}

impl BreastCancer {
    /// Accuracy on the validation rows (reported, not the target).
    pub fn valid_accuracy(&self) -> Result<f64> {
        let z = self
            .x_valid
            .matmul(&self.w.reshape((self.features, 1))?)?
            .broadcast_add(&self.b)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let correct = z
            .iter()
            .zip(&self.y_valid)
            .filter(|(z, y)| ((**z > 0.0) as u8 as f32) == **y)
            .count();
        Ok(correct as f64 / z.len() as f64)
    }
}
