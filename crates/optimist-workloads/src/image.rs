//! Image classification: `mnist-mlp` and `fashion-cnn`.
//!
//! Splits as AlgoPerf: the first 50,000 images of the training file train,
//! the last 10,000 validate, `t10k` tests. Pixels are scaled to [0, 1] and
//! normalised with the training set's mean and standard deviation (MNIST
//! 0.1307 / 0.3081, Fashion-MNIST 0.2860 / 0.3530). The data order is a
//! fresh shuffle of the training split every epoch, drawn from the seed.

use std::path::Path;

use candle_core::{Device, Module, Tensor};
use candle_nn::VarMap;

use crate::data::{load_idx_pair, ImageSet};
use crate::nn::{ce_and_correct, Init};
use crate::{Error, Eval, LoadOptions, Result, Rng, Split, Workload, WorkloadSpec};

/// Training examples; the rest of the training file validates.
pub const TRAIN_SPLIT: usize = 50_000;

/// `mnist-mlp`.
pub fn mnist_spec() -> WorkloadSpec {
    WorkloadSpec {
        name: "mnist-mlp",
        description: "MNIST, 784-128-10 MLP with sigmoid hidden units (AlgoPerf's MNIST workload)",
        metric: "accuracy",
        higher_is_better: true,
        target: 0.97,
        steps: 8000,
        eval_every: 250,
        batch_size: 128,
        needs_data: true,
        lr_scale: 1.0,
    }
}

/// `fashion-cnn`.
pub fn fashion_spec() -> WorkloadSpec {
    WorkloadSpec {
        name: "fashion-cnn",
        description: "Fashion-MNIST, conv5x5x8-maxpool-conv5x5x16-maxpool-dense64-dense10 (scaled-down DeepOBS 2c2d)",
        metric: "accuracy",
        higher_is_better: true,
        target: 0.895,
        steps: 4000,
        eval_every: 250,
        batch_size: 128,
        needs_data: true,
        lr_scale: 1.0,
    }
}

enum Net {
    Mlp(candle_nn::Linear, candle_nn::Linear),
    Cnn {
        c1: crate::conv::Conv2d,
        c2: crate::conv::Conv2d,
        f1: candle_nn::Linear,
        f2: candle_nn::Linear,
    },
}

impl Net {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Net::Mlp(l1, l2) => l2.forward(&candle_nn::ops::sigmoid(&l1.forward(x)?)?),
            Net::Cnn { c1, c2, f1, f2 } => {
                let b = x.dim(0)?;
                let h = x.reshape((b, 1, 28, 28))?;
                let h = c1.forward(&h)?.relu()?.max_pool2d(2)?;
                let h = c2.forward(&h)?.relu()?.max_pool2d(2)?;
                let h = h.flatten_from(1)?;
                f2.forward(&f1.forward(&h)?.relu()?)
            }
        }
    }
}

struct Split3 {
    x: Vec<f32>,
    y: Vec<u32>,
}

/// An image classifier on an IDX dataset.
pub struct ImageClassifier {
    spec: WorkloadSpec,
    varmap: VarMap,
    net: Net,
    dim: usize,
    train: Split3,
    valid: Split3,
    test: Split3,
    order: Vec<usize>,
    cursor: usize,
    batch: Option<(Tensor, Tensor)>,
}

fn normalise(set: &ImageSet, range: std::ops::Range<usize>, mean: f32, std: f32) -> Split3 {
    let d = set.rows * set.cols;
    Split3 {
        x: set.images[range.start * d..range.end * d]
            .iter()
            .map(|&p| (p - mean) / std)
            .collect(),
        y: set.labels[range].iter().map(|&l| l as u32).collect(),
    }
}

impl ImageClassifier {
    fn load(
        spec: WorkloadSpec,
        set: &str,
        mean: f32,
        std: f32,
        data_dir: &Path,
        seed: u64,
        opts: &LoadOptions,
    ) -> Result<Self> {
        let train_file = load_idx_pair(data_dir, set, "train", None)?;
        let test_file = load_idx_pair(data_dir, set, "t10k", opts.eval_limit)?;
        // A test slice holds its own count of training examples, then the
        // start of the validation part.
        let split = train_file.train_items.unwrap_or(TRAIN_SPLIT);
        if train_file.len() <= split || train_file.rows * train_file.cols != 784 {
            return Err(Error::Data(format!(
                "{set}: expected more than {split} 28x28 training images, found {} of {}x{}",
                train_file.len(),
                train_file.rows,
                train_file.cols
            )));
        }
        let n_train = opts.train_limit.map_or(split, |l| l.min(split));
        let n_valid = opts
            .eval_limit
            .map_or(train_file.len() - split, |l| l.min(train_file.len() - split));
        let train = normalise(&train_file, 0..n_train, mean, std);
        let valid = normalise(&train_file, split..split + n_valid, mean, std);
        let test = normalise(&test_file, 0..test_file.len(), mean, std);
        let varmap = VarMap::new();
        let mut init = Init::new(&varmap, Rng::derive(seed, "init"));
        let net = if spec.name == "fashion-cnn" {
            Net::Cnn {
                c1: init.conv2d("conv1", 1, 8, 5, 2)?,
                c2: init.conv2d("conv2", 8, 16, 5, 2)?,
                f1: init.linear("fc1", 16 * 7 * 7, 64)?,
                f2: init.linear("fc2", 64, 10)?,
            }
        } else {
            Net::Mlp(init.linear("fc1", 784, 128)?, init.linear("fc2", 128, 10)?)
        };
        Ok(ImageClassifier {
            spec,
            varmap,
            net,
            dim: 784,
            order: (0..train.y.len()).collect(),
            cursor: usize::MAX,
            train,
            valid,
            test,
            batch: None,
        })
    }

    /// `mnist-mlp` from `data_dir/mnist/`.
    pub fn mnist(data_dir: &Path, seed: u64, opts: &LoadOptions) -> Result<Self> {
        Self::load(mnist_spec(), "mnist", 0.1307, 0.3081, data_dir, seed, opts)
    }

    /// `fashion-cnn` from `data_dir/fashion-mnist/`.
    pub fn fashion(data_dir: &Path, seed: u64, opts: &LoadOptions) -> Result<Self> {
        Self::load(
            fashion_spec(),
            "fashion-mnist",
            0.2860,
            0.3530,
            data_dir,
            seed,
            opts,
        )
    }

    /// Training examples held.
    pub fn train_len(&self) -> usize {
        self.train.y.len()
    }

    /// The normalised training images (N x 784) and labels.
    pub fn train_data(&self) -> (&[f32], &[u32]) {
        (&self.train.x, &self.train.y)
    }

    /// The normalised validation images (N x 784) and labels (the training
    /// file's examples from [`TRAIN_SPLIT`] on).
    pub fn valid_data(&self) -> (&[f32], &[u32]) {
        (&self.valid.x, &self.valid.y)
    }

    /// The normalised test images (N x 784) and labels.
    pub fn test_data(&self) -> (&[f32], &[u32]) {
        (&self.test.x, &self.test.y)
    }

    fn eval_split(&self, s: &Split3) -> Result<Eval> {
        let n = s.y.len();
        if n == 0 {
            return Err(Error::Data("empty evaluation split".into()));
        }
        let (mut loss, mut correct) = (0.0f64, 0usize);
        for start in (0..n).step_by(1000) {
            let end = (start + 1000).min(n);
            let x = Tensor::from_slice(
                &s.x[start * self.dim..end * self.dim],
                (end - start, self.dim),
                &Device::Cpu,
            )?;
            let y = Tensor::from_slice(&s.y[start..end], end - start, &Device::Cpu)?;
            let (l, c) = ce_and_correct(&self.net.forward(&x)?, &y)?;
            loss += l * (end - start) as f64;
            correct += c;
        }
        Ok(Eval {
            loss: loss / n as f64,
            metric: correct as f64 / n as f64,
        })
    }
}

impl Workload for ImageClassifier {
    fn set_batch_size(&mut self, n: usize) -> Result<()> {
        self.spec.batch_size = crate::check_batch_size(self.spec.name, n)?;
        Ok(())
    }

    spec_and_varmap!();

    fn data_state(&self) -> serde_json::Value {
        serde_json::json!({"order": self.order, "cursor": self.cursor})
    }

    fn set_data_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let n = self.order.len();
        let bad = |m: String| Error::Input(format!("{}: data state: {m}", self.spec.name));
        let order: Vec<usize> = state
            .get("order")
            .and_then(|o| serde_json::from_value(o.clone()).ok())
            .ok_or_else(|| bad("no 'order' list of indices".into()))?;
        let cursor = state
            .get("cursor")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad("no 'cursor'".into()))? as usize;
        if order.len() != n {
            return Err(bad(format!(
                "order has {} entries, the training split {n}",
                order.len()
            )));
        }
        let mut seen = vec![false; n];
        for &i in &order {
            if i >= n || std::mem::replace(&mut seen[i], true) {
                return Err(bad(format!("order is not a permutation of 0..{n}")));
            }
        }
        if cursor != usize::MAX && cursor > n {
            return Err(bad(format!("cursor {cursor} is past the {n} examples")));
        }
        self.order = order;
        self.cursor = cursor;
        Ok(())
    }

    fn next_batch(&mut self, rng: &mut Rng) -> Result<()> {
        let bs = self.spec.batch_size.min(self.order.len());
        if self.cursor.saturating_add(bs) > self.order.len() {
            rng.shuffle(&mut self.order);
            self.cursor = 0;
        }
        let idx = &self.order[self.cursor..self.cursor + bs];
        self.batch = Some(crate::gather_rows(&self.train.x, &self.train.y, self.dim, idx)?);
        self.cursor += bs;
        Ok(())
    }

    fn batch_loss(&self) -> candle_core::Result<Tensor> {
        let (x, y) = crate::drawn(&self.batch)?;
        candle_nn::loss::cross_entropy(&self.net.forward(x)?, y)
    }

    fn sampled_label_count(&self) -> Option<usize> {
        Some(self.spec.batch_size.min(self.order.len()))
    }

    fn sampled_batch_loss(&self, rng: &mut Rng) -> candle_core::Result<Tensor> {
        let (x, _) = crate::drawn(&self.batch)?;
        crate::nn::sampled_cross_entropy(&self.net.forward(x)?, rng)
    }

    fn evaluate(&self, split: Split) -> Result<Eval> {
        match split {
            Split::Valid => self.eval_split(&self.valid),
            Split::Test => self.eval_split(&self.test),
        }
    }

    fn has_test(&self) -> bool {
        true
    }
}
