//! The update rules, one file per optimizer. Each file's docs state the
//! update rule, the defaults, the reference implementation it matches and
//! the paper.

pub mod adam;
pub mod adamuon;
pub mod muon;
pub mod namo;
pub mod newton_schulz;
pub mod sgd;

pub use adam::{Adam, AdamW};
pub use adamuon::AdaMuon;
pub use muon::Muon;
pub use namo::{Namo, NamoD};
pub use sgd::Sgd;
