//! # optimist-core
//!
//! Deep-learning optimizer update rules over named f32 tensors in host
//! memory, with no deep-learning framework dependency. Framework adapters
//! hand the parameters' storage to [`Optimizer::step`] as [`ParamMut`]
//! slices; everything else (state, groups, schedules, clipping) lives here.
//!
//! ```
//! use optimist_core::{registry, Param};
//! use serde_json::json;
//!
//! let mut opt = registry::build("adamw", &json!({"lr": 1e-2})).unwrap();
//! let mut w = Param::new("w", vec![2], vec![1.0, -1.0]).unwrap();
//! w.grad = vec![0.5, -0.5];
//! opt.step(&mut [w.view()]).unwrap();
//! assert!(w.data[0] < 1.0 && w.data[1] > -1.0);
//! ```
//!
//! Layout, bottom to top (docs/architecture.md draws it): [`cpu`] (CPU
//! features, thread count), [`tensor`] and [`state`] (parameters, state
//! buffers, their checks), [`quant`] and [`gemm`]; [`rule`] (what an update
//! rule is: [`OptimizerConfig`], [`StepInfo`], [`UpdateRule`], the
//! [`rule::Apply`] sink) and [`optimizer`] (the [`Optimizer`] trait);
//! [`exec`] (the drivers); [`engine`] (the [`Engine`], which picks the
//! driver for a rule); [`transform`], [`clip`], [`stages`], [`groups`] and
//! [`schedule`]; [`optim`] (one file per update rule); [`wrappers`];
//! [`registry`] (every optimizer by name) and [`spec`] (the front door:
//! optimizers, parameter groups, wrappers and stages from JSON).
//!
//! **Harness** (cargo feature `harness`, off by default): `problems`
//! (built-in test functions), `replay` (the conformance contract: runs a
//! reference case) and `stream` (the memory-bandwidth yardstick of the
//! benchmarks). They are test and benchmark code, not part of the optimizer
//! API: the `optimist` CLI and this crate's tests enable the feature.

pub mod checkpoint;
pub mod cpu;
pub mod curvature;
pub mod engine;
pub mod error;
pub mod exec;
pub mod gemm;
pub mod linalg;
pub mod groups;
pub mod math;
pub mod optim;
pub mod optimizer;
pub mod presets;
#[cfg(feature = "harness")]
pub mod problems;
pub mod quant;
pub mod registry;
#[cfg(feature = "harness")]
pub mod replay;
pub mod rule;
pub mod rng;
pub mod schedule;
pub mod spec;
pub mod sqsum;
pub mod stages;
pub mod state;
#[cfg(feature = "harness")]
pub mod stream;
pub mod tensor;
pub mod transform;
pub mod validate;
pub mod wrappers;

pub use error::{Error, Result};
pub use exec::{Elementwise, ExecOptions};
pub use engine::Engine;
pub use optimizer::{Mode, Optimizer};
pub use rule::{OptimizerConfig, StepInfo, UpdateRule};
pub use state::{ParamState, StateDict, StateEntry, StateStore};
pub use tensor::{DType, Param, ParamMut, StateTensor};
pub use stages::clip;
pub use wrappers::{cautious, wrap};
