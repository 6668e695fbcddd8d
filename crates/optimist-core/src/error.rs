//! Error values. Every failure caused by user input (configuration, shapes,
//! case files, checkpoints) is reported as an [`Error`] naming the bad input;
//! nothing in this crate panics on user input.

use std::fmt;

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, with enough context to name the bad input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A hyperparameter outside its valid range.
    #[error("{optimizer}: invalid {field} = {value}: {reason}")]
    InvalidHparam {
        optimizer: String,
        field: String,
        value: String,
        reason: String,
    },
    /// A configuration that cannot be read (unknown key, wrong type).
    #[error("{optimizer}: {message}")]
    Config { optimizer: String, message: String },
    /// No optimizer registered under this name.
    #[error("unknown optimizer \"{name}\" (known: {known})")]
    UnknownOptimizer { name: String, known: String },
    /// A tensor whose shape or length does not fit.
    #[error("{0}")]
    Shape(String),
    /// Malformed input data (case files, checkpoints, arguments).
    #[error("{0}")]
    Input(String),
    /// A parameter that this optimizer (or group layout) cannot handle.
    #[error("{0}")]
    Unsupported(String),
    /// A numerical failure (non-finite values where finite ones are required).
    #[error("{0}")]
    NonFinite(String),
    /// An I/O failure, with the path involved.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

impl Error {
    /// An out-of-range hyperparameter.
    pub fn hparam(optimizer: &str, field: &str, value: impl fmt::Display, reason: &str) -> Self {
        Error::InvalidHparam {
            optimizer: optimizer.to_string(),
            field: field.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }

    /// A configuration error with a free-form message.
    pub fn config(optimizer: &str, message: impl Into<String>) -> Self {
        Error::Config {
            optimizer: optimizer.to_string(),
            message: message.into(),
        }
    }

    /// This error, raised by a step that had already changed some
    /// parameters or state when it failed: the message (same kind) says
    /// that `optimizer` is no longer usable.
    pub fn midway(self, optimizer: &str) -> Self {
        let note = |m: String| {
            format!(
                "{m} (the step failed midway: {optimizer} is no longer usable; \
                 load a state dict or build a new optimizer)"
            )
        };
        match self {
            Error::InvalidHparam {
                optimizer: o,
                field,
                value,
                reason,
            } => Error::InvalidHparam {
                optimizer: o,
                field,
                value,
                reason: note(reason),
            },
            Error::Config {
                optimizer: o,
                message,
            } => Error::Config {
                optimizer: o,
                message: note(message),
            },
            Error::UnknownOptimizer { name, known } => Error::UnknownOptimizer {
                name,
                known: note(known),
            },
            Error::Shape(m) => Error::Shape(note(m)),
            Error::Input(m) => Error::Input(note(m)),
            Error::Unsupported(m) => Error::Unsupported(note(m)),
            Error::NonFinite(m) => Error::NonFinite(note(m)),
            Error::Io { path, message } => Error::Io {
                path,
                message: note(message),
            },
        }
    }

    /// The error of every step of an optimizer after a step failed midway
    /// (see [`Error::midway`]); `first` is that step's error.
    pub fn unusable(optimizer: &str, first: &str) -> Self {
        Error::Input(format!(
            "{optimizer}: no longer usable: an earlier step failed midway ({first}); \
             load a state dict or build a new optimizer"
        ))
    }

    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<std::path::Path>, err: impl fmt::Display) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            message: err.to_string(),
        }
    }
}
