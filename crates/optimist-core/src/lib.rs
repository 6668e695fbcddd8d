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
//! Layout: [`optimizer`] (the [`Optimizer`] trait, typed configurations,
//! the generic [`Engine`]), [`optim`] (one file per update rule),
//! [`registry`] (every optimizer by name), [`groups`] (parameter groups),
//! [`transform`] (gradient stages and `Chain`), [`clip`] and [`schedule`], [`state`] (typed state
//! and checkpoints' state dicts), [`replay`] (the conformance contract),
//! [`problems`] (built-in test functions).

pub mod cautious;
pub mod checkpoint;
pub mod clip;
pub mod curvature;
pub mod error;
pub mod exec;
pub mod gemm;
pub mod groups;
pub mod math;
pub mod optim;
pub mod optimizer;
pub mod presets;
pub mod problems;
pub mod quant;
pub mod registry;
pub mod replay;
pub mod rng;
pub mod schedule;
pub mod sqsum;
pub mod stages;
pub mod state;
pub mod stream;
pub mod tensor;
pub mod transform;
pub mod validate;
pub mod wrap;
pub mod wrappers;

pub use error::{Error, Result};
pub use exec::{Elementwise, ExecOptions};
pub use optimizer::Mode;
pub use optimizer::{Engine, Optimizer, OptimizerConfig, StepInfo, UpdateRule};
pub use state::{ParamState, StateDict, StateEntry, StateStore};
pub use tensor::{DType, Param, ParamMut, StateTensor};
