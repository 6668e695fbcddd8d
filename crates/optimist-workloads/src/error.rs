//! Errors of the workloads: data, checksums, the model, the optimizer.

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading or training a workload.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Missing or malformed data.
    #[error("{0}")]
    Data(String),
    /// A data file whose SHA-256 is not the expected one.
    #[error("{path}: SHA-256 is {actual}, expected {expected} (the file is damaged or not the published one; `optimist data fetch` downloads it again)")]
    Checksum {
        path: String,
        expected: String,
        actual: String,
    },
    /// No workload of this name.
    #[error("unknown workload \"{name}\" (known: {known})")]
    UnknownWorkload { name: String, known: String },
    /// A bad option.
    #[error("{0}")]
    Input(String),
    /// A failure in candle (model or adapter).
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
    /// An optimizer error (hyperparameters, state).
    #[error("{0}")]
    Optimizer(#[from] optimist_core::Error),
    /// The optimizer does not apply to the workload's parameters (a
    /// matrix-only rule on a model without hidden matrices).
    #[error("{0}")]
    NotApplicable(String),
    /// A download failure.
    #[error("{0}")]
    Fetch(String),
    /// An I/O failure.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<std::path::Path>, err: impl std::fmt::Display) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            message: err.to_string(),
        }
    }
}
