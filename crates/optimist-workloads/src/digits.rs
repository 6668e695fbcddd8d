//! `digits-mlp`: an MLP on the UCI 8x8 handwritten digits, embedded in the
//! crate (no download).
//!
//! Data ([`crate::embedded`]): the first 3,000 rows of the training part
//! (`optdigits.tra`) train, its last 823 rows validate, and the separate
//! test part (`optdigits.tes`, 1,797 rows, different writers) tests. Pixel
//! counts 0..16 are divided by 16 and normalised per pixel with the
//! training rows' mean and standard deviation. Batches of 64 are drawn with
//! replacement from the seed's data stream. Model: 64-128-128-10 with ReLU,
//! torch's default initialisation (`fc1`, `fc2`, `head`). Metric: validation
//! accuracy, target 0.96.

use candle_core::{Device, Module, Tensor};
use candle_nn::VarMap;

use crate::embedded::{parse_digits, DIGITS_TEST, DIGITS_TRAIN};
use crate::nn::{ce_and_correct, Init};
use crate::{Eval, Result, Rng, Split, Workload, WorkloadSpec};

/// Training rows (the rest of `optdigits.tra` validates).
pub const TRAIN_ROWS: usize = 3000;
/// Hidden width.
pub const HIDDEN: usize = 128;

/// The spec.
pub fn spec() -> WorkloadSpec {
    WorkloadSpec {
        name: "digits-mlp",
        description: "UCI 8x8 digits (embedded; 3000 train / 823 valid / 1797 test), 64-128-128-10 ReLU MLP, batch 64",
        metric: "accuracy",
        higher_is_better: true,
        target: 0.96,
        steps: 400,
        eval_every: 20,
        batch_size: 64,
        needs_data: false,
        lr_scale: 1.0,
    }
}

struct Set {
    x: Tensor,
    y: Tensor,
}

/// The data and the model.
pub struct DigitsMlp {
    spec: WorkloadSpec,
    varmap: VarMap,
    fc1: candle_nn::Linear,
    fc2: candle_nn::Linear,
    head: candle_nn::Linear,
    train_x: Vec<f32>,
    train_y: Vec<u32>,
    valid: Set,
    test: Set,
    batch: Option<(Tensor, Tensor)>,
}

impl DigitsMlp {
    /// Parses the embedded data (after its checksums) and initialises the
    /// model from `seed`.
    pub fn load(seed: u64) -> Result<Self> {
        let (tra_x, tra_y) = parse_digits(DIGITS_TRAIN.verified()?, DIGITS_TRAIN.name)?;
        let (tes_x, tes_y) = parse_digits(DIGITS_TEST.verified()?, DIGITS_TEST.name)?;
        if tra_x.len() != 3823 || tes_x.len() != 1797 {
            return Err(crate::Error::Data(format!(
                "digits: expected 3823 training and 1797 test rows, found {} and {}",
                tra_x.len(),
                tes_x.len()
            )));
        }
        let mut mean = [0f64; 64];
        let mut sd = [0f64; 64];
        let n = TRAIN_ROWS as f64;
        for img in &tra_x[..TRAIN_ROWS] {
            for j in 0..64 {
                mean[j] += img[j] as f64 / 16.0 / n;
            }
        }
        for img in &tra_x[..TRAIN_ROWS] {
            for j in 0..64 {
                sd[j] += (img[j] as f64 / 16.0 - mean[j]).powi(2) / n;
            }
        }
        // Constant pixels (the border) have sd 0: keep them at 0.
        let sd: Vec<f64> = sd.iter().map(|v| v.sqrt().max(1e-3)).collect();
        let norm = |imgs: &[[u8; 64]]| -> Vec<f32> {
            imgs.iter()
                .flat_map(|img| (0..64).map(|j| ((img[j] as f64 / 16.0 - mean[j]) / sd[j]) as f32))
                .collect()
        };
        let set = |imgs: &[[u8; 64]], labels: &[u8]| -> candle_core::Result<Set> {
            Ok(Set {
                x: Tensor::from_vec(norm(imgs), (imgs.len(), 64), &Device::Cpu)?,
                y: Tensor::from_vec(
                    labels.iter().map(|&l| l as u32).collect::<Vec<u32>>(),
                    labels.len(),
                    &Device::Cpu,
                )?,
            })
        };
        let varmap = VarMap::new();
        let mut init = Init::new(&varmap, Rng::derive(seed, "init"));
        let fc1 = init.linear("fc1", 64, HIDDEN)?;
        let fc2 = init.linear("fc2", HIDDEN, HIDDEN)?;
        let head = init.linear("head", HIDDEN, 10)?;
        Ok(DigitsMlp {
            spec: spec(),
            varmap,
            fc1,
            fc2,
            head,
            train_x: norm(&tra_x[..TRAIN_ROWS]),
            train_y: tra_y[..TRAIN_ROWS].iter().map(|&l| l as u32).collect(),
            valid: set(&tra_x[TRAIN_ROWS..], &tra_y[TRAIN_ROWS..])?,
            test: set(&tes_x, &tes_y)?,
            batch: None,
        })
    }

    /// Training, validation and test rows.
    pub fn split_lens(&self) -> (usize, usize, usize) {
        (
            self.train_y.len(),
            self.valid.x.dims()[0],
            self.test.x.dims()[0],
        )
    }

    /// Labels of the training rows.
    pub fn train_labels(&self) -> &[u32] {
        &self.train_y
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.fc1.forward(x)?.relu()?;
        let h = self.fc2.forward(&h)?.relu()?;
        self.head.forward(&h)
    }
}

impl Workload for DigitsMlp {
    fn set_batch_size(&mut self, n: usize) -> Result<()> {
        self.spec.batch_size = crate::check_batch_size(self.spec.name, n)?;
        Ok(())
    }

    spec_and_varmap!();

    fn next_batch(&mut self, rng: &mut Rng) -> Result<()> {
        let n = self.train_y.len();
        let idx: Vec<usize> = (0..self.spec.batch_size).map(|_| rng.below(n)).collect();
        self.batch = Some(crate::gather_rows(&self.train_x, &self.train_y, 64, &idx)?);
        Ok(())
    }

    fn batch_loss(&self) -> candle_core::Result<Tensor> {
        let (x, y) = crate::drawn(&self.batch)?;
        candle_nn::loss::cross_entropy(&self.forward(x)?, y)
    }

    fn sampled_label_count(&self) -> Option<usize> {
        Some(self.spec.batch_size)
    }

    fn sampled_batch_loss(&self, rng: &mut Rng) -> candle_core::Result<Tensor> {
        let (x, _) = crate::drawn(&self.batch)?;
        crate::nn::sampled_cross_entropy(&self.forward(x)?, rng)
    }

    fn evaluate(&self, split: Split) -> Result<Eval> {
        let s = match split {
            Split::Valid => &self.valid,
            Split::Test => &self.test,
        };
        let (loss, correct) = ce_and_correct(&self.forward(&s.x)?, &s.y)?;
        Ok(Eval {
            loss,
            metric: correct as f64 / s.y.dims()[0] as f64,
        })
    }

    fn has_test(&self) -> bool {
        true
    }
}
