//! The update rules, one file per optimizer. Each file's docs state the
//! update rule, the defaults, the reference implementation it matches and
//! the paper.

pub mod adagc;
pub mod adam;
pub mod adamomentum;
pub mod magma;
pub mod sgd;
pub mod sophiag;
pub mod sophiah;

pub use adagc::{AdaGc, AdaGcOptimizer};
pub use adam::{Adam, AdamW};
pub use adamomentum::AdaMomentum;
pub use magma::{Magma, MagmaConfig};
pub use sgd::Sgd;
pub use sophiag::SophiaG;
pub use sophiah::SophiaH;
