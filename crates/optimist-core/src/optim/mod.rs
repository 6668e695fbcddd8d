//! The update rules, one file per optimizer. Each file's docs state the
//! update rule, the defaults, the reference implementation it matches and
//! the paper.

pub mod adam;
pub mod schedulefree;
pub mod sgd;

pub use adam::{Adam, AdamW};
pub use schedulefree::{AdamWScheduleFree, SgdScheduleFree};
pub use sgd::Sgd;
