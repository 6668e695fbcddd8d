//! # optimist-workloads
//!
//! Benchmark workloads in the AlgoPerf style: each fixes a dataset, a model
//! with its initialisation, a loss, an evaluation metric with a validation
//! target, a step budget and an evaluation interval. Only the optimizer
//! changes. Models are built with candle and trained through
//! [`optimist_candle::OptimistOptimizer`].
//!
//! | workload | data | model | metric (target) |
//! | --- | --- | --- | --- |
//! | `mnist-mlp` | MNIST 50k/10k/10k | 784-128-10, sigmoid (AlgoPerf's MNIST) | accuracy (0.97) |
//! | `fashion-cnn` | Fashion-MNIST 50k/10k/10k | conv5x5x8-pool-conv5x5x16-pool-64-10 | accuracy |
//! | `shakespeare-char` | Tiny Shakespeare 90/10 | 2-layer GPT, d=64, 4 heads, context 64 | validation loss |
//! | `digits-mlp` | UCI 8x8 digits 3000/823/1797 (embedded) | 64-128-128-10 ReLU MLP | accuracy (0.96) |
//! | `shakespeare-mini` | Tiny Shakespeare, first 240 KB (embedded) 80/10/10 | 2-layer GPT, d=32, 4 heads, context 32 | validation loss (2.6) |
//! | `breast-cancer-logreg` | UCI breast cancer 455/114 (embedded) | L2-regularised logistic regression | training suboptimality |
//! | `quadratic` | none | DeepOBS noisy quadratic, 100-d | excess loss |
//! | `rosenbrock` | none | 2-D Rosenbrock | f |
//! | `teacher-student` | none | 32-128-1 tanh MLP fitting a fixed 32-64-1 teacher | relative validation MSE |
//!
//! Everything random (initialisation, data order, synthetic samples) is
//! drawn from one seed, so a run is reproducible.

/// The [`Workload::spec`] and [`Workload::varmap`] of a workload that
/// keeps them in its fields `spec` and `varmap`.
macro_rules! spec_and_varmap {
    () => {
        fn spec(&self) -> &$crate::WorkloadSpec {
            &self.spec
        }

        fn varmap(&self) -> &candle_nn::VarMap {
            &self.varmap
        }
    };
}

pub mod conv;
pub mod data;
pub mod digits;
pub mod embedded;
pub mod error;
#[cfg(feature = "fetch")]
pub mod fetch;
pub mod hparams;
pub mod image;
pub mod lr_table;
pub mod nn;
pub mod shakespeare;
pub mod synthetic;
pub mod tabular;
pub mod train;

use std::path::Path;

use candle_core::Tensor;
use candle_nn::VarMap;
pub use error::{Error, Result};
pub use optimist_candle::rng::Rng;

/// What a workload fixes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkloadSpec {
    /// Name, e.g. `mnist-mlp`.
    pub name: &'static str,
    /// One line on the data and the model.
    pub description: &'static str,
    /// Name of the evaluation metric.
    pub metric: &'static str,
    /// Whether a larger metric is better.
    pub higher_is_better: bool,
    /// The validation target.
    pub target: f64,
    /// Default step budget.
    pub steps: usize,
    /// Evaluate every this many steps.
    pub eval_every: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Whether it reads data files.
    pub needs_data: bool,
    /// Multiplier applied to the suggested learning rate of every optimizer
    /// (the workload's scale, not per-optimizer tuning).
    pub lr_scale: f64,
}

impl WorkloadSpec {
    /// Whether `metric` meets the target.
    pub fn reached(&self, metric: f64) -> bool {
        if self.higher_is_better {
            metric >= self.target
        } else {
            metric <= self.target
        }
    }
}

/// Which held-out set to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The validation split (targets are set on it).
    Valid,
    /// The test split (reported, never tuned on).
    Test,
}

/// Loss and metric on a split.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Eval {
    pub loss: f64,
    pub metric: f64,
}

/// The batch drawn by [`Workload::next_batch`], or an error before the first.
pub(crate) fn drawn<T>(batch: &Option<T>) -> candle_core::Result<&T> {
    batch
        .as_ref()
        .ok_or_else(|| candle_core::Error::msg("no batch drawn yet"))
}

/// The examples `idx` of a labelled set (`dim` values per row of `x`) as
/// one batch: the inputs `(idx.len(), dim)` and the labels.
pub(crate) fn gather_rows(x: &[f32], y: &[u32], dim: usize, idx: &[usize]) -> Result<(Tensor, Tensor)> {
    let mut xs = Vec::with_capacity(idx.len() * dim);
    let mut ys = Vec::with_capacity(idx.len());
    for &i in idx {
        xs.extend_from_slice(&x[i * dim..(i + 1) * dim]);
        ys.push(y[i]);
    }
    let cpu = &candle_core::Device::Cpu;
    Ok((
        Tensor::from_vec(xs, (idx.len(), dim), cpu)?,
        Tensor::from_vec(ys, idx.len(), cpu)?,
    ))
}

/// A workload ready to train: model parameters in a VarMap, data loaded.
pub trait Workload {
    /// What it fixes.
    fn spec(&self) -> &WorkloadSpec;
    /// The model's parameters, named by path.
    fn varmap(&self) -> &VarMap;
    /// Draws the next training batch.
    fn next_batch(&mut self, rng: &mut Rng) -> Result<()>;
    /// The training loss on the current batch (recomputable: curvature
    /// estimates call it again on the same batch).
    fn batch_loss(&self) -> candle_core::Result<Tensor>;
    /// Loss and metric on a held-out split.
    fn evaluate(&self, split: Split) -> Result<Eval>;
    /// The number of predictions B the training loss averages over
    /// (examples; tokens for a language model) when the loss is a negative
    /// log-likelihood of the model's predictive distribution, so that
    /// [`Workload::sampled_batch_loss`] exists; `None` for the others
    /// (synthetic objectives, regression), on which rules that need a
    /// Gauss-Newton-Bartlett curvature estimate (sophiag) do not apply.
    fn sampled_label_count(&self) -> Option<usize> {
        None
    }
    /// The training loss on the current batch with each label replaced by
    /// one drawn with `rng` from the model's predictive distribution at the
    /// current parameters (a categorical draw from the softmax of each
    /// example's or token's logits; a Bernoulli draw from the sigmoid of a
    /// logistic model), as the official SophiaG loop's `loss_sampled`: the
    /// mean over the [`Workload::sampled_label_count`] predictions, without
    /// regularisers. Its gradient feeds the Gauss-Newton-Bartlett estimate.
    /// An error naming the workload where the loss is not a negative
    /// log-likelihood.
    fn sampled_batch_loss(&self, _rng: &mut Rng) -> candle_core::Result<Tensor> {
        Err(candle_core::Error::msg(format!(
            "workload {}: its loss is not a negative log-likelihood of a predictive \
             distribution, so there are no labels to sample (Gauss-Newton-Bartlett curvature)",
            self.spec().name
        )))
    }
    /// The data pipeline's own state beyond the data generator (e.g. the
    /// epoch's shuffled order and position), as JSON for checkpoints.
    /// `Null` for workloads that keep none.
    fn data_state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Restores [`Workload::data_state`]; an invalid state is an error and
    /// changes nothing.
    fn set_data_state(&mut self, state: &serde_json::Value) -> Result<()> {
        if state.is_null() {
            Ok(())
        } else {
            Err(Error::Input(format!(
                "workload {} keeps no data state, the checkpoint has one",
                self.spec().name
            )))
        }
    }
    /// Whether the workload has a test split distinct from validation.
    fn has_test(&self) -> bool {
        false
    }
    /// Sets the training minibatch size (examples, or windows for the
    /// language models) for the next batches. An error for workloads
    /// that train on the full batch or a fixed sample.
    fn set_batch_size(&mut self, n: usize) -> Result<()> {
        Err(Error::Input(format!(
            "{} has no minibatches (it trains on the full batch or a fixed sample): \
             a batch size ({n}) does not apply",
            self.spec().name
        )))
    }
    /// Number of trainable values.
    fn num_params(&self) -> usize {
        self.varmap()
            .all_vars()
            .iter()
            .map(|v| v.elem_count())
            .sum()
    }
}

/// The largest batch size [`Workload::set_batch_size`] accepts.
pub const MAX_BATCH_SIZE: usize = 1 << 16;

/// Checks a batch size for [`Workload::set_batch_size`].
pub(crate) fn check_batch_size(name: &str, n: usize) -> Result<usize> {
    if n == 0 || n > MAX_BATCH_SIZE {
        return Err(Error::Input(format!(
            "{name}: batch size {n} must be from 1 to {MAX_BATCH_SIZE}"
        )));
    }
    Ok(n)
}

/// Options for loading a workload.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Use only the first N training examples (tests).
    pub train_limit: Option<usize>,
    /// Use only the first N validation and test examples (tests).
    pub eval_limit: Option<usize>,
}

/// Names of every workload, synthetic ones first.
pub const WORKLOADS: &[&str] = &[
    "quadratic",
    "rosenbrock",
    "teacher-student",
    "digits-mlp",
    "shakespeare-mini",
    "breast-cancer-logreg",
    "mnist-mlp",
    "fashion-cnn",
    "shakespeare-char",
];

/// Names of the bench suites.
pub const SUITES: &[&str] = &["default", "synthetic", "full"];

/// The workloads of a bench suite: `default` trains real models on the
/// embedded data (no download), `synthetic` runs the test functions,
/// `full` adds the workloads that read the data directory.
pub fn suite(name: &str) -> Result<Vec<&'static str>> {
    match name {
        "default" => Ok(vec![
            "digits-mlp",
            "shakespeare-mini",
            "breast-cancer-logreg",
        ]),
        "synthetic" => Ok(vec!["quadratic", "rosenbrock", "teacher-student"]),
        "full" => Ok(WORKLOADS.to_vec()),
        other => Err(Error::Input(format!(
            "unknown suite \"{other}\" (known: {})",
            SUITES.join(", ")
        ))),
    }
}

/// The spec of workload `name`.
pub fn spec(name: &str) -> Result<WorkloadSpec> {
    match name {
        "quadratic" => Ok(synthetic::quadratic_spec()),
        "rosenbrock" => Ok(synthetic::rosenbrock_spec()),
        "teacher-student" => Ok(synthetic::teacher_student_spec()),
        "digits-mlp" => Ok(digits::spec()),
        "shakespeare-mini" => Ok(shakespeare::mini_spec()),
        "breast-cancer-logreg" => Ok(tabular::spec()),
        "mnist-mlp" => Ok(image::mnist_spec()),
        "fashion-cnn" => Ok(image::fashion_spec()),
        "shakespeare-char" => Ok(shakespeare::spec()),
        other => Err(Error::UnknownWorkload {
            name: other.to_string(),
            known: WORKLOADS.join(", "),
        }),
    }
}

/// Loads workload `name` with data from `data_dir`, initialised from `seed`.
pub fn load(
    name: &str,
    data_dir: &Path,
    seed: u64,
    opts: &LoadOptions,
) -> Result<Box<dyn Workload>> {
    let w: Box<dyn Workload> = match name {
        "quadratic" => Box::new(synthetic::Quadratic::new(seed)?),
        "rosenbrock" => Box::new(synthetic::Rosenbrock::new(seed)?),
        "teacher-student" => Box::new(synthetic::TeacherStudent::new(seed)?),
        "digits-mlp" => Box::new(digits::DigitsMlp::load(seed)?),
        "shakespeare-mini" => Box::new(shakespeare::CharLm::mini(seed, opts)?),
        "breast-cancer-logreg" => Box::new(tabular::BreastCancer::embedded()?),
        "mnist-mlp" => Box::new(image::ImageClassifier::mnist(data_dir, seed, opts)?),
        "fashion-cnn" => Box::new(image::ImageClassifier::fashion(data_dir, seed, opts)?),
        "shakespeare-char" => Box::new(shakespeare::CharLm::load(data_dir, seed, opts)?),
        other => {
            return Err(Error::UnknownWorkload {
                name: other.to_string(),
                known: WORKLOADS.join(", "),
            })
        }
    };
    Ok(w)
}
