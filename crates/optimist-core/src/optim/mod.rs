//! The update rules, one file per optimizer. Each file's docs state the
//! update rule, the defaults, the reference implementation it matches and
//! the paper.

pub mod adadelta;
pub mod adafactor;
pub mod adagrad;
pub mod adam;
pub mod adamax;
pub mod adamuon;
pub mod muon;
pub mod nadam;
pub mod namo;
pub mod newton_schulz;
pub mod radam;
pub mod rmsprop;
pub mod sgd;

pub use adadelta::Adadelta;
pub use adafactor::Adafactor;
pub use adagrad::Adagrad;
pub use adam::{Adam, AdamW};
pub use adamax::Adamax;
pub use adamuon::AdaMuon;
pub use muon::Muon;
pub use nadam::Nadam;
pub use namo::{Namo, NamoD};
pub use radam::Radam;
pub use rmsprop::Rmsprop;
pub use sgd::Sgd;
