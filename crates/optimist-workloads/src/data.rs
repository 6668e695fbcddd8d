//! Data files: where they are, their checksums, and readers for IDX
//! (gzip), CSV and text.
//!
//! The data directory is, in order: the `--data-dir` option, the
//! `OPTIMIST_DATA_DIR` environment variable, or `./data`. Files keep the
//! layout of the datasets' usual distribution (`mnist/train-images-idx3-ubyte.gz`,
//! ...), and every file is checked against its SHA-256 below when loaded.
//! `optimist data fetch` downloads them from their public sources.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Environment variable naming the data directory.
pub const DATA_DIR_ENV: &str = "OPTIMIST_DATA_DIR";

/// One data file: its path under the data directory, SHA-256, size and
/// public sources (tried in order).
#[derive(Debug, Clone, Copy)]
pub struct DataFile {
    pub path: &'static str,
    pub sha256: &'static str,
    pub bytes: u64,
    pub sources: &'static [&'static str],
}

const MNIST_MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];

/// Every file a workload reads.
pub const FILES: &[DataFile] = &[
    DataFile {
        path: "mnist/train-images-idx3-ubyte.gz",
        sha256: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        bytes: 9_912_422,
        sources: &MNIST_MIRRORS,
    },
    DataFile {
        path: "mnist/train-labels-idx1-ubyte.gz",
        sha256: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        bytes: 28_881,
        sources: &MNIST_MIRRORS,
    },
    DataFile {
        path: "mnist/t10k-images-idx3-ubyte.gz",
        sha256: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        bytes: 1_648_877,
        sources: &MNIST_MIRRORS,
    },
    DataFile {
        path: "mnist/t10k-labels-idx1-ubyte.gz",
        sha256: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        bytes: 4_542,
        sources: &MNIST_MIRRORS,
    },
    DataFile {
        path: "fashion-mnist/train-images-idx3-ubyte.gz",
        sha256: "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        bytes: 26_421_880,
        sources: &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    },
    DataFile {
        path: "fashion-mnist/train-labels-idx1-ubyte.gz",
        sha256: "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        bytes: 29_515,
        sources: &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    },
    DataFile {
        path: "fashion-mnist/t10k-images-idx3-ubyte.gz",
        sha256: "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        bytes: 4_422_102,
        sources: &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    },
    DataFile {
        path: "fashion-mnist/t10k-labels-idx1-ubyte.gz",
        sha256: "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        bytes: 5_148,
        sources: &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    },
    DataFile {
        path: "tinyshakespeare/input.txt",
        sha256: "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        bytes: 1_115_394,
        sources: &["https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"],
    },
    DataFile {
        path: "tabular/breast_cancer.csv",
        sha256: "fed3eb72d0575ef6192293f5093c6e801b1476b577d0386bf4455504522172ed",
        bytes: 119_913,
        sources: &["https://raw.githubusercontent.com/scikit-learn/scikit-learn/1.5.2/sklearn/datasets/data/"],
    },
];

/// A slice of a data file with the same name and format, shipped in this
/// crate's `tests/fixtures/data/` so that the loaders, training and resume
/// tests run without the full datasets (`tools/make_test_slices.py` writes
/// the image slices; the text slice is the embedded 240 KB of Tiny
/// Shakespeare). A loader accepts a file whose SHA-256 is either the full
/// file's or a slice's.
#[derive(Debug, Clone, Copy)]
pub struct SliceFile {
    /// Path under the data directory (that of the full file).
    pub path: &'static str,
    /// SHA-256 of the slice (lower-case hex).
    pub sha256: &'static str,
    /// Size in bytes.
    pub bytes: u64,
    /// For a training-images or -labels slice: how many of its items come
    /// from the start of the training part; the rest are the first items of
    /// the validation part (full file's items from
    /// [`TRAIN_SPLIT`](crate::image::TRAIN_SPLIT) on).
    pub train_items: Option<usize>,
}

/// Every known slice.
pub const SLICES: &[SliceFile] = &[
    SliceFile {
        path: "mnist/train-images-idx3-ubyte.gz",
        sha256: "f6327fa244562157b5929e85a3d5f1c16470f66c7d75d18fce291b07457293a2",
        bytes: 160_972,
        train_items: Some(800),
    },
    SliceFile {
        path: "mnist/train-labels-idx1-ubyte.gz",
        sha256: "7bae7769a413c7177b2350374d2660273b93c36dc066a4ed1f04f74253ebea95",
        bytes: 516,
        train_items: Some(800),
    },
    SliceFile {
        path: "mnist/t10k-images-idx3-ubyte.gz",
        sha256: "420b2e16ea0de6226cb272b43c337a943de254713959643ede826b4b6f9e7f70",
        bytes: 31_045,
        train_items: None,
    },
    SliceFile {
        path: "mnist/t10k-labels-idx1-ubyte.gz",
        sha256: "35e471546a21d6ea8a8f2157a0cbcc16c25dcba8115fe3e71d1379e1b393f1e3",
        bytes: 129,
        train_items: None,
    },
    SliceFile {
        path: "fashion-mnist/train-images-idx3-ubyte.gz",
        sha256: "584a2a8389e235e4439c8735c3da9d9f8ab45dde862b0409e1f562f94c1865ad",
        bytes: 176_088,
        train_items: Some(320),
    },
    SliceFile {
        path: "fashion-mnist/train-labels-idx1-ubyte.gz",
        sha256: "4f19d7582ece0cae7e2e22945bff574683f82a0855a5f75dbe9a49ef968bb4c4",
        bytes: 223,
        train_items: Some(320),
    },
    SliceFile {
        path: "fashion-mnist/t10k-images-idx3-ubyte.gz",
        sha256: "68ab806b2071c2cc99093d038ce9ff89740c56c0d1a19ee927dc4265a28bf58f",
        bytes: 34_570,
        train_items: None,
    },
    SliceFile {
        path: "fashion-mnist/t10k-labels-idx1-ubyte.gz",
        sha256: "a98fdddeac70f4c61a3ed171e5a1797acdb40067521dda48c28269d78018e8f2",
        bytes: 76,
        train_items: None,
    },
    SliceFile {
        path: "tinyshakespeare/input.txt",
        sha256: "2404c36aa9d58494028e8a534911eed76544e084f791d6037fe3b36f8faebc41",
        bytes: 239_976,
        train_items: None,
    },
];

/// The known file at `path`.
pub fn file(path: &str) -> Result<&'static DataFile> {
    FILES
        .iter()
        .find(|f| f.path == path)
        .ok_or_else(|| Error::Data(format!("no data file '{path}' is known")))
}

/// The data directory: `explicit`, else `$OPTIMIST_DATA_DIR`, else `./data`.
pub fn resolve_data_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os(DATA_DIR_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("data"),
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks `bytes` (read from `path`) against `expected`.
pub fn verify(path: &Path, bytes: &[u8], expected: &str) -> Result<()> {
    let actual = sha256_hex(bytes);
    if actual == expected {
        Ok(())
    } else {
        Err(Error::Checksum {
            path: path.display().to_string(),
            expected: expected.to_string(),
            actual,
        })
    }
}

/// Reads a known file from `dir` and verifies its SHA-256: that of the
/// full file, or of one of its known [`SLICES`].
pub fn read_verified(dir: &Path, rel: &str) -> Result<Vec<u8>> {
    read_known(dir, rel).map(|(bytes, _)| bytes)
}

/// Like [`read_verified`], and says which slice the file is (`None`: the
/// full file).
pub fn read_known(dir: &Path, rel: &str) -> Result<(Vec<u8>, Option<&'static SliceFile>)> {
    let f = file(rel)?;
    let path = dir.join(rel);
    let bytes = std::fs::read(&path).map_err(|e| {
        Error::Data(format!(
            "{}: {e} (set --data-dir or {DATA_DIR_ENV}, or run `optimist data fetch`)",
            path.display()
        ))
    })?;
    let actual = sha256_hex(&bytes);
    if actual == f.sha256 {
        return Ok((bytes, None));
    }
    match SLICES.iter().find(|s| s.path == rel && s.sha256 == actual) {
        Some(s) => Ok((bytes, Some(s))),
        None => Err(Error::Checksum {
            path: path.display().to_string(),
            expected: f.sha256.to_string(),
            actual,
        }),
    }
}

/// Decompresses a gzip stream.
pub fn gunzip(bytes: &[u8], what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| Error::Data(format!("{what}: not a valid gzip stream: {e}")))?;
    Ok(out)
}

/// An IDX array of unsigned bytes: its dimensions and data.
#[derive(Debug, Clone, PartialEq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Parses an (uncompressed) IDX file of unsigned bytes: magic `00 00 08 D`,
/// D big-endian u32 sizes, then the data; the length must be exact.
pub fn parse_idx(bytes: &[u8], what: &str) -> Result<Idx> {
    let bad = |m: String| Error::Data(format!("{what}: {m}"));
    if bytes.len() < 4 {
        return Err(bad(format!(
            "{} bytes is too short for an IDX header",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(bad(format!(
            "magic {:02x} {:02x} {:02x} {:02x} is not an IDX file of unsigned bytes",
            bytes[0], bytes[1], bytes[2], bytes[3]
        )));
    }
    let nd = bytes[3] as usize;
    let header = 4 + 4 * nd;
    if nd == 0 || bytes.len() < header {
        return Err(bad(format!(
            "bad header ({nd} dimensions, {} bytes)",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = (0..nd)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    if bytes.len() - header != n {
        return Err(bad(format!(
            "dimensions {dims:?} need {} bytes, the file has {}",
            header + n,
            bytes.len()
        )));
    }
    Ok(Idx {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Images (N x rows*cols, scaled to [0, 1]) and labels of an IDX pair.
#[derive(Debug, Clone)]
pub struct ImageSet {
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
    /// For a training file that is a test slice ([`SliceFile`]): how many
    /// of its examples come from the training part. `None` for full files.
    pub train_items: Option<usize>,
}

impl ImageSet {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Loads `<prefix>-images-idx3-ubyte.gz` and `<prefix>-labels-idx1-ubyte.gz`
/// from `dir/<set>/`, verified, keeping the first `limit` examples.
pub fn load_idx_pair(
    dir: &Path,
    set: &str,
    prefix: &str,
    limit: Option<usize>,
) -> Result<ImageSet> {
    let ipath = format!("{set}/{prefix}-images-idx3-ubyte.gz");
    let lpath = format!("{set}/{prefix}-labels-idx1-ubyte.gz");
    let (ibytes, islice) = read_known(dir, &ipath)?;
    let (lbytes, lslice) = read_known(dir, &lpath)?;
    let train_items = islice.and_then(|s| s.train_items);
    if train_items != lslice.and_then(|s| s.train_items) {
        return Err(Error::Data(format!(
            "{ipath} / {lpath}: one is the full file and the other a test slice, or slices of different sizes"
        )));
    }
    let images = parse_idx(&gunzip(&ibytes, &ipath)?, &ipath)?;
    let labels = parse_idx(&gunzip(&lbytes, &lpath)?, &lpath)?;
    if images.dims.len() != 3 || labels.dims.len() != 1 || images.dims[0] != labels.dims[0] {
        return Err(Error::Data(format!(
            "{ipath} / {lpath}: shapes {:?} and {:?} do not form an image set",
            images.dims, labels.dims
        )));
    }
    let n = limit.map_or(images.dims[0], |l| l.min(images.dims[0]));
    let (rows, cols) = (images.dims[1], images.dims[2]);
    Ok(ImageSet {
        images: images.data[..n * rows * cols]
            .iter()
            .map(|&b| b as f32 / 255.0)
            .collect(),
        labels: labels.data[..n].to_vec(),
        rows,
        cols,
        train_items,
    })
}

/// Parses CSV text of numbers (comma-separated, no quoting), skipping the
/// first `skip_lines` lines and empty lines; every row must have the same
/// number of fields.
pub fn parse_csv(text: &str, skip_lines: usize, what: &str) -> Result<Vec<Vec<f64>>> {
    let mut rows: Vec<Vec<f64>> = Vec::new();
    for (i, line) in text.lines().enumerate().skip(skip_lines) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let row = line
            .split(',')
            .map(|f| {
                f.trim().parse::<f64>().map_err(|_| {
                    Error::Data(format!("{what}:{}: '{}' is not a number", i + 1, f.trim()))
                })
            })
            .collect::<Result<Vec<f64>>>()?;
        if let Some(first) = rows.first() {
            if first.len() != row.len() {
                return Err(Error::Data(format!(
                    "{what}:{}: {} fields, earlier rows have {}",
                    i + 1,
                    row.len(),
                    first.len()
                )));
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Character-level text: the sorted byte vocabulary and the text as token ids.
#[derive(Debug, Clone)]
pub struct CharText {
    pub vocab: Vec<u8>,
    pub tokens: Vec<u32>,
}

/// Tokenizes `bytes` by character (byte), vocabulary = sorted distinct bytes.
pub fn char_tokens(bytes: &[u8]) -> CharText {
    let mut seen = [false; 256];
    for &b in bytes {
        seen[b as usize] = true;
    }
    let vocab: Vec<u8> = (0..=255u8).filter(|&b| seen[b as usize]).collect();
    let mut index = [0u32; 256];
    for (i, &b) in vocab.iter().enumerate() {
        index[b as usize] = i as u32;
    }
    CharText {
        tokens: bytes.iter().map(|&b| index[b as usize]).collect(),
        vocab,
    }
}
