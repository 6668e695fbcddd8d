//! Ready-made optimizer layouts built on [`ParamGroups`].
//!
//! Matrix optimizers (Muon and its family) are meant for the hidden weight
//! matrices only; embeddings, output heads, biases and gains go to AdamW,
//! as every Muon implementation recommends. [`muon_adamw`] builds that
//! split:
//!
//! ```
//! use optimist_core::presets::{muon_adamw, EMBEDDINGS_AND_HEADS};
//! use optimist_core::optim::{AdamW, Muon};
//! use optimist_core::{Optimizer, Param};
//!
//! let mut opt = muon_adamw(
//!     Muon { lr: 0.02, ..Default::default() },
//!     AdamW { lr: 3e-4, weight_decay: 0.01, ..Default::default() },
//!     EMBEDDINGS_AND_HEADS,
//! ).unwrap();
//! let mut params = vec![
//!     Param::new("wte.weight", vec![10, 4], vec![0.1; 40]).unwrap(),   // AdamW (embedding)
//!     Param::new("h.0.mlp.weight", vec![4, 8], vec![0.1; 32]).unwrap(), // Muon
//!     Param::new("h.0.mlp.bias", vec![8], vec![0.0; 8]).unwrap(),       // AdamW (vector)
//! ];
//! for p in params.iter_mut() { p.grad.iter_mut().for_each(|g| *g = 0.5); }
//! let mut views: Vec<_> = params.iter_mut().map(Param::view).collect();
//! opt.step(&mut views).unwrap();
//! ```
//!
//! Groups are named `muon` (or the matrix optimizer's registry name) and
//! `adamw`, so state entries read `muon/<param>/...` and `adamw/<param>/...`,
//! and `set_lr` reaches both groups (use `group_mut` to schedule one alone).

use crate::error::Result;
use crate::groups::{ParamGroups, Selector};
use crate::optim::{AdamW, Muon};
use crate::engine::Engine;
use crate::optimizer::Optimizer;

/// Name patterns of parameters that are matrices but are not hidden layers:
/// token and position embeddings and output heads (GPT-2, LLaMA and
/// torchvision naming).
pub const EMBEDDINGS_AND_HEADS: &[&str] = &[
    "*embed*",
    "*wte*",
    "*wpe*",
    "*lm_head*",
    "head.*",
    "*.head.*",
    "*classifier*",
];

/// Muon for the hidden matrices, AdamW for everything else.
///
/// A parameter goes to Muon when it is a matrix (exactly 2-D, or 2-D and
/// more when `muon.flatten` is set) and its name matches none of `exclude`;
/// every other parameter goes to AdamW. Both configurations are validated.
pub fn muon_adamw(muon: Muon, adamw: AdamW, exclude: &[&str]) -> Result<ParamGroups> {
    let flatten = muon.flatten;
    matrix_adamw(Box::new(Engine::new(muon)?), flatten, adamw, exclude)
}

/// Any matrix optimizer (e.g. `registry::build("adamuon", ...)`) for the
/// hidden matrices, AdamW for the rest; `flatten` says whether the matrix
/// optimizer takes parameters with more than two dimensions. The matrix
/// group is named after the optimizer.
pub fn matrix_adamw(
    matrix: Box<dyn Optimizer>,
    flatten: bool,
    adamw: AdamW,
    exclude: &[&str],
) -> Result<ParamGroups> {
    let dims = if flatten {
        Selector::matrices()
    } else {
        Selector::Ndim { min: 2, max: 2 }
    };
    let name = matrix.name().to_string();
    Ok(ParamGroups::new()
        .group(
            name,
            Selector::And(vec![
                dims,
                Selector::names(exclude.iter().copied()).negate(),
            ]),
            matrix,
        )
        .group("adamw", Selector::All, Box::new(Engine::new(adamw)?)))
}
