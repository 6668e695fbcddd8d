//! Calibrated learning-rate multipliers per optimizer and workload.
//!
//! The suggested hyperparameters ([`crate::hparams::suggested`]) and a
//! workload's `lr_scale` fit the adaptive optimizers; plain SGD and the
//! schedule-free SGD take steps proportional to the gradient and diverge
//! with them on the badly conditioned synthetic problems. This table
//! multiplies the lr for the (workload, optimizer) pairs where a sweep
//! showed the default to diverge or to make no progress; every other pair
//! uses 1. The sweep (multipliers 1e-4 ... 1, seed 0, the workload's step
//! budget) and the choice rule are recorded in `docs/workloads.md`:
//! the largest multiplier of the grid that does not diverge and reaches
//! the target (else the one with the best final metric).
//!
//! `optimist bench --lr-grid` multiplies on top of these values.

/// The lr multiplier for `optimizer` on `workload` (1 when not listed).
pub fn multiplier(workload: &str, optimizer: &str) -> f64 {
    TABLE
        .iter()
        .find(|(w, o, _)| *w == workload && *o == optimizer)
        .map_or(1.0, |e| e.2)
}

/// (workload, optimizer, multiplier).
pub const TABLE: &[(&str, &str, f64)] = &[("quadratic", "sgd", 0.01)];
