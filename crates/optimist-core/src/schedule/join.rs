//! Schedules in sequence (optax's `join_schedules`).

use super::Schedule;

/// `optax.join_schedules(schedules, boundaries)`: schedule `i + 1` takes
/// over at step `boundaries[i]` and sees the step count since that boundary.
pub struct Join {
    pub schedules: Vec<Box<dyn Schedule>>,
    pub boundaries: Vec<u64>,
}

impl Schedule for Join {
    fn value(&self, s: u64) -> f64 {
        let Some(first) = self.schedules.first() else {
            return f64::NAN;
        };
        let mut out = first.value(s);
        for (&b, sched) in self.boundaries.iter().zip(&self.schedules[1..]) {
            if s >= b {
                out = sched.value(s - b);
            }
        }
        out
    }
}
