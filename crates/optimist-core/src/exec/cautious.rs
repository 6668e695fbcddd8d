//! Cautious masking: the mask sink ([`CautiousMask`]) and its
//! per-parameter driver ([`cautious_per_param`], [`run_cautious`]).

use super::threads::for_each_param;
use crate::error::{Error, Result};
use crate::rule::{Apply, Slots, StepInfo, UpdateRule};
use crate::state::{ParamState, StateStore};
use crate::tensor::ParamMut;

/// One deferred element step.
#[derive(Debug, Clone, Copy)]
struct Deferred {
    lr: f32,
    u: f32,
    keep: bool,
}

/// The cautious mask: defers every element's step until the parameter is
/// finished, then applies `p <- p - lr * (u * mask * scale)`.
#[derive(Debug, Clone, Default)]
pub struct CautiousMask {
    pending: Vec<Deferred>,
    kept: usize,
}

/// The mask's scale `numel / (kept + 1)`, computed as torch computes
/// `mask.numel() / (mask.sum() + 1)` in f32: the reciprocal of the f32
/// denominator, times `numel`.
#[inline]
pub fn cautious_scale(numel: usize, kept: usize) -> f32 {
    (1.0f32 / (kept as f32 + 1.0)) * numel as f32
}

impl Apply for CautiousMask {
    #[inline(always)]
    fn apply(&mut self, _p: &mut f32, g: f32, lr: f32, u: f32) {
        // The product in f32, as the reference: an underflow to 0 masks.
        let keep = u * g > 0.0;
        self.kept += keep as usize;
        self.pending.push(Deferred { lr, u, keep });
    }

    fn finish(&mut self, value: &mut [f32]) -> Result<()> {
        if self.pending.len() != value.len() {
            let n = self.pending.len();
            self.pending.clear();
            self.kept = 0;
            return Err(Error::Input(format!(
                "cautious mask: {n} element steps for a parameter of {} elements",
                value.len()
            )));
        }
        let scale = cautious_scale(value.len(), self.kept);
        for (x, d) in value.iter_mut().zip(&self.pending) {
            let m = if d.keep { scale } else { 0.0 };
            // Masked elements still compute `lr * (u * 0)`, as the reference
            // (so a non-finite u stays visible).
            *x -= d.lr * (d.u * m);
        }
        self.pending.clear();
        self.kept = 0;
        Ok(())
    }
}

/// The fused cautious mask's sink for one chunk: records each element's
/// step in the chunk's slots of the parameter's step buffers (the
/// direction, already masked, and the learning rate) and counts the kept
/// elements; [`apply_recorded`] applies them once the parameter's count is
/// known. Its records are exactly [`CautiousMask`]'s: the element loops of
/// `optim::each` fill them in one vectorized pass ([`Apply::record`]),
/// other kernels element by element ([`Apply::apply`]).
#[derive(Debug)]
pub(super) struct Record<'a> {
    u: &'a mut [f32],
    lr: &'a mut [f32],
    pos: usize,
    pub(super) kept: usize,
    overflow: bool,
}

impl<'a> Record<'a> {
    /// A sink over slots `u` and `lr` (of the chunk's length).
    pub(super) fn new(u: &'a mut [f32], lr: &'a mut [f32]) -> Self {
        Record {
            u,
            lr,
            pos: 0,
            kept: 0,
            overflow: false,
        }
    }

    /// The slots (directions, learning rates).
    pub(super) fn into_slots(self) -> (&'a [f32], &'a [f32]) {
        (self.u, self.lr)
    }

    /// Whether the kernel passed exactly one step per slot.
    pub(super) fn complete(&self) -> bool {
        !self.overflow && self.pos == self.u.len() && self.pos == self.lr.len()
    }
}

impl Apply for Record<'_> {
    #[inline(always)]
    fn apply(&mut self, _p: &mut f32, g: f32, lr: f32, u: f32) {
        let keep = u * g > 0.0;
        self.kept += keep as usize;
        match (self.u.get_mut(self.pos), self.lr.get_mut(self.pos)) {
            (Some(su), Some(sl)) => {
                *su = if keep { u } else { u * 0.0 };
                *sl = lr;
            }
            _ => self.overflow = true,
        }
        self.pos += 1;
    }

    #[inline(always)]
    fn record(&mut self, n: usize) -> Option<Slots<'_>> {
        let start = self.pos;
        let end = start.checked_add(n)?;
        if end > self.u.len() || end > self.lr.len() {
            return None;
        }
        self.pos = end;
        Some(Slots {
            u: &mut self.u[start..end],
            lr: &mut self.lr[start..end],
            kept: &mut self.kept,
        })
    }

    fn finish(&mut self, _value: &mut [f32]) -> Result<()> {
        // The driver applies the records (it needs the whole parameter's
        // count first).
        Ok(())
    }
}

/// Applies recorded steps ([`Record`]) with the parameter's mask scale:
/// `x <- x - lr * (u * scale)`, the values of [`CautiousMask::finish`]
/// (a masked element's `u * 0.0` times the positive scale is the same zero
/// or NaN as the mask's `u * 0.0`).
#[inline(always)]
#[allow(clippy::needless_range_loop)]
pub(super) fn apply_recorded(x: &mut [f32], u: &[f32], lr: &[f32], scale: f32) {
    let n = x.len();
    let (u, lr) = (&u[..n], &lr[..n]);
    for i in 0..n {
        x[i] -= lr[i] * (u[i] * scale);
    }
}

thread_local! {
    /// One mask's scratch space per thread, kept across steps.
    static MASK: std::cell::Cell<CautiousMask> = const {
        std::cell::Cell::new(CautiousMask { pending: Vec::new(), kept: 0 })
    };
}

/// Runs `step(p, state, mask)` for every parameter with a cleared mask,
/// then the mask's [`Apply::finish`]: in parallel over the parameters when
/// the execution options allow it and the call is made from a thread pool
/// (as the engine's step is), one by one otherwise. Each parameter's
/// values are the same either way.
pub fn cautious_per_param<S, F>(
    info: &StepInfo,
    params: &mut [ParamMut<'_>],
    states: &mut StateStore<S>,
    step: F,
) -> Result<()>
where
    S: ParamState,
    F: Fn(&mut ParamMut<'_>, &mut S, &mut CautiousMask) -> Result<()> + Sync,
{
    let one = |p: &mut ParamMut<'_>, st: &mut S| -> Result<()> {
        // Taken out of the thread-local while in use: a nested call on the
        // same thread (work stealing) just starts with an empty one.
        let mut mask = MASK.with(|m| m.take());
        mask.pending.clear();
        mask.kept = 0;
        let r = step(p, st, &mut mask).and_then(|_| mask.finish(p.value));
        MASK.with(|m| m.set(mask));
        r
    };
    let parallel = info.exec.fused
        && info.exec.resolved_threads() > 1
        && rayon::current_thread_index().is_some();
    for_each_param(parallel, params, states, one)
}

/// The default step under cautious masking: [`UpdateRule::update_with`]
/// through one mask per parameter ([`cautious_per_param`]).
pub fn run_cautious<R: UpdateRule>(
    rule: &R,
    info: &StepInfo,
    params: &mut [ParamMut<'_>],
    states: &mut StateStore<R::State>,
) -> Result<()> {
    cautious_per_param(info, params, states, |p, st, mask| {
        rule.update_with(info, p, st, mask)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_is_reciprocal_times_numel() {
        assert_eq!(cautious_scale(4, 3), 1.0);
        assert_eq!(cautious_scale(10, 0), 10.0);
        assert_eq!(cautious_scale(6, 2), (1.0f32 / 3.0) * 6.0);
    }

    #[test]
    fn mask_keeps_agreeing_signs_and_rescales() {
        let mut m = CautiousMask::default();
        let mut p = [1.0f32, 1.0, 1.0, 1.0];
        // u * g: +, -, 0, + -> two kept, scale 4 / 3.
        for (x, (g, u)) in p
            .iter_mut()
            .zip([(1.0, 2.0), (1.0, -2.0), (0.0, 1.0), (-1.0, -1.0)])
        {
            m.apply(x, g, 0.5, u);
        }
        m.finish(&mut p).unwrap();
        let s = cautious_scale(4, 2);
        assert_eq!(p, [1.0 - 0.5 * (2.0 * s), 1.0, 1.0, 1.0 - 0.5 * (-s)]);
        // A finish that does not match the elements passed is an error.
        let mut q = [0.0f32; 2];
        m.apply(&mut q[0], 1.0, 1.0, 1.0);
        assert!(m.finish(&mut q).is_err());
    }
}
