//! The update rules, one file per optimizer. Each file's docs state the
//! update rule, the defaults, the reference implementation it matches and
//! the paper.

pub mod adabelief;
pub mod adabound;
pub mod adam;
pub mod lamb;
pub mod lion;
pub mod lookahead;
pub mod pytorch_optimizer;
pub mod sgd;
pub mod signsgd;

pub use adabelief::AdaBelief;
pub use adabound::AdaBound;
pub use adam::{Adam, AdamW};
pub use lamb::Lamb;
pub use lion::Lion;
pub use lookahead::Lookahead;
pub use sgd::Sgd;
pub use signsgd::SignSgd;
