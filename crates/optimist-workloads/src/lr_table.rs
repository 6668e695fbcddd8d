//! Calibrated learning-rate multipliers per optimizer and workload.
//!
//! The suggested hyperparameters ([`crate::hparams::suggested`]) and a
//! workload's `lr_scale` fit the adaptive optimizers; plain SGD and the
//! schedule-free SGD take steps proportional to the gradient and diverge
//! with them on the badly conditioned synthetic problems. This table
//! multiplies the rule's own lr (the matrix group's for a matrices-only
//! rule; an `lr` given by the caller wins) for the (workload, optimizer)
//! pairs where the default diverged or missed the target in a sweep. The
//! sweep (multipliers 1e-4 to 1, seed 0, the workload's step budget) is
//! recorded in `docs/workloads.md`; the rule: where the default (1) misses
//! the target, take the largest multiplier that reaches it, else the one
//! with the best final metric among the runs that did not diverge.
//!
//! `optimist bench --lr-grid` multiplies on top of these values.

/// The lr multiplier for `optimizer` on `workload` (1 when not listed).
pub fn multiplier(workload: &str, optimizer: &str) -> f64 {
    TABLE
        .iter()
        .find(|(w, o, _)| *w == workload && *o == optimizer)
        .map_or(1.0, |e| e.2)
}

/// (workload, optimizer, multiplier of the rule's own lr).
pub const TABLE: &[(&str, &str, f64)] = &[
    ("quadratic", "sgd", 0.01),
    ("quadratic", "sgd_schedulefree", 0.01),
    ("rosenbrock", "sgd", 0.001),
    ("rosenbrock", "sgd_schedulefree", 1e-4),
    ("rosenbrock", "radam", 0.1),
    ("rosenbrock", "adadelta", 0.01),
    ("rosenbrock", "rmsprop", 0.1),
    ("rosenbrock", "lamb", 0.1),
    ("teacher-student", "sgd_schedulefree", 0.1),
    ("teacher-student", "muon", 0.1),
    ("teacher-student", "adamuon", 0.1),
];
