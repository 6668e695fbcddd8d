//! Zero-copy access to the f32 storage of candle CPU tensors.
//!
//! [`with_f32_slices_mut`] write-locks every tensor of a list through
//! candle's in-place custom ops ([`Tensor::inplace_op1`]): each op's
//! `cpu_fwd` receives the tensor's `&mut CpuStorage`, takes the f32 slice
//! the layout points at and, still inside the op, locks the next tensor.
//! The innermost call sees a mutable slice of every tensor at once and runs
//! the caller's function on them; nothing is copied or allocated but the
//! vector of slice references.
//!
//! Rules enforced before any lock is taken, each a clear error:
//! every tensor is on the CPU, has dtype f32, is contiguous, and no two
//! tensors share storage (which would also deadlock the locks).

use std::cell::RefCell;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Tensor};

/// Why a tensor cannot be handed over as a mutable f32 slice.
pub fn check_tensor(label: &str, t: &Tensor) -> Result<(), String> {
    if !t.device().is_cpu() {
        return Err(format!(
            "{label} is on {:?}; optimist-candle updates CPU tensors only (it never copies to the host and back)",
            t.device().location()
        ));
    }
    if t.dtype() != DType::F32 {
        return Err(format!(
            "{label} has dtype {:?}; optimist-candle updates f32 tensors only (it never converts silently)",
            t.dtype()
        ));
    }
    if t.layout().contiguous_offsets().is_none() {
        return Err(format!(
            "{label} is not contiguous (layout {:?}); it cannot be updated in place",
            t.layout()
        ));
    }
    Ok(())
}

/// An identity for a tensor's storage: the address of its storage behind
/// the lock (stable while the tensor lives).
pub fn storage_id(t: &Tensor) -> usize {
    let (guard, _) = t.storage_and_layout();
    std::ptr::from_ref(&*guard) as usize
}

fn slice_of<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a mut [f32]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::msg("optimist-candle: tensor is not contiguous"))?;
    match storage {
        CpuStorage::F32(v) => v.get_mut(start..end).ok_or_else(|| {
            candle_core::Error::msg("optimist-candle: tensor layout lies outside its storage")
        }),
        other => Err(candle_core::Error::msg(format!(
            "optimist-candle: expected f32 storage, found {:?}",
            other.dtype()
        ))),
    }
}

/// The caller's function, run on all slices once every tensor is locked.
type Body<'f> = dyn FnMut(&mut [&mut [f32]]) -> candle_core::Result<()> + 'f;

struct Level<'s, 'a, 'f> {
    rest: &'s [&'s Tensor],
    acc: RefCell<Option<Vec<&'a mut [f32]>>>,
    body: RefCell<&'f mut Body<'f>>,
}

impl candle_core::InplaceOp1 for Level<'_, '_, '_> {
    fn name(&self) -> &'static str {
        "optimist-lock"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let slice = slice_of(storage, layout)?;
        let mut acc = self
            .acc
            .borrow_mut()
            .take()
            .ok_or_else(|| candle_core::Error::msg("optimist-lock entered twice"))?;
        acc.push(slice);
        let mut body = self.body.borrow_mut();
        lock_rest(self.rest, acc, &mut **body)
    }
}

fn lock_rest(
    tensors: &[&Tensor],
    mut acc: Vec<&mut [f32]>,
    body: &mut Body<'_>,
) -> candle_core::Result<()> {
    match tensors.split_first() {
        None => body(&mut acc),
        Some((first, rest)) => {
            let level = Level {
                rest,
                acc: RefCell::new(Some(acc)),
                body: RefCell::new(body),
            };
            first.inplace_op1(&level)
        }
    }
}

/// Runs `body` with a mutable f32 slice of every tensor of `tensors` (in
/// that order), all write-locked at once, without copying.
///
/// `labels[i]` names `tensors[i]` in error messages. Fails (before locking
/// anything) if a tensor is not a contiguous f32 CPU tensor or if two
/// tensors share storage.
pub fn with_f32_slices_mut(
    tensors: &[&Tensor],
    labels: &[String],
    body: &mut Body<'_>,
) -> candle_core::Result<()> {
    let mut ids: Vec<(usize, usize)> = Vec::with_capacity(tensors.len());
    for (i, t) in tensors.iter().enumerate() {
        let label = labels.get(i).map(String::as_str).unwrap_or("tensor");
        check_tensor(label, t).map_err(candle_core::Error::msg)?;
        ids.push((storage_id(t), i));
    }
    ids.sort_unstable();
    for w in ids.windows(2) {
        if w[0].0 == w[1].0 {
            let name = |i: usize| {
                labels
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("tensor {i}"))
            };
            return Err(candle_core::Error::msg(format!(
                "{} and {} share storage; optimist-candle needs distinct tensors to update in place",
                name(w[0].1),
                name(w[1].1)
            )));
        }
    }
    lock_rest(tensors, Vec::with_capacity(tensors.len()), body)
}
