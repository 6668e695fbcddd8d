//! The update rules, one file per optimizer. Each file's docs state the
//! update rule, the defaults, the reference implementation it matches and
//! the paper.

pub mod adabelief;
pub mod adabound;
pub mod adadelta;
pub mod adafactor;
pub mod adagc;
pub mod adagrad;
pub mod adam;
pub mod adamax;
pub mod adamomentum;
pub mod adamuon;
pub mod lamb;
pub mod lion;
pub mod lookahead;
pub mod magma;
pub mod masking;
pub mod muon;
pub mod nadam;
pub mod namo;
pub mod newton_schulz;
pub mod pytorch_optimizer;
pub mod radam;
pub mod rmsprop;
pub mod schedulefree;
pub mod sgd;
pub mod signsgd;
pub mod skipupdate;
pub mod sophiag;
pub mod sophiah;

pub use adabelief::AdaBelief;
pub use adabound::AdaBound;
pub use adadelta::Adadelta;
pub use adafactor::Adafactor;
pub use adagc::{AdaGc, AdaGcOptimizer};
pub use adagrad::Adagrad;
pub use adam::{Adam, AdamW};
pub use adamax::Adamax;
pub use adamomentum::AdaMomentum;
pub use adamuon::AdaMuon;
pub use lamb::Lamb;
pub use lion::Lion;
pub use lookahead::{Lookahead, LookaheadConfig};
pub use magma::{Magma, MagmaConfig};
pub use muon::Muon;
pub use nadam::Nadam;
pub use namo::{Namo, NamoD};
pub use radam::Radam;
pub use rmsprop::Rmsprop;
pub use schedulefree::{AdamWScheduleFree, SgdScheduleFree};
pub use sgd::Sgd;
pub use signsgd::SignSgd;
pub use skipupdate::{SkipUpdate, SkipUpdateConfig};
pub use sophiag::SophiaG;
pub use sophiah::SophiaH;

// Catalogue D: preconditioned, second-order, matrix and low-rank.
pub mod sm3;
pub use sm3::Sm3;
pub mod adahessian;
pub mod galore;
pub mod kron;
pub mod normuon;
pub mod scion;
pub mod shampoo;
pub mod soap;
pub use adahessian::AdaHessian;
pub use galore::GaLore;
pub use kron::Kron;
pub use normuon::NorMuon;
pub use scion::Scion;
pub use shampoo::Shampoo;
pub use soap::Soap;
