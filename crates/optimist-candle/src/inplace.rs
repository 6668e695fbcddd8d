//! Zero-copy access to the storage of candle CPU tensors.
//!
//! [`with_slices_mut`] (any of f32, bf16, f16) and [`with_f32_slices_mut`]
//! (f32 only) write-lock every tensor of a list through
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
    check_tensor_dtypes(label, t, false)
}

/// Why a tensor cannot be handed over as a mutable slice; with
/// `allow_half`, bf16 and f16 tensors are accepted besides f32.
pub fn check_tensor_dtypes(label: &str, t: &Tensor, allow_half: bool) -> Result<(), String> {
    if !t.device().is_cpu() {
        return Err(format!(
            "{label} is on {:?}; optimist-candle updates CPU tensors only (it never copies to the host and back)",
            t.device().location()
        ));
    }
    let half = matches!(t.dtype(), DType::BF16 | DType::F16);
    if t.dtype() != DType::F32 && !(allow_half && half) {
        let what = if allow_half {
            "f32, bf16 and f16"
        } else {
            "f32"
        };
        return Err(format!(
            "{label} has dtype {:?}; optimist-candle updates {what} tensors only (it never converts silently)",
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

/// A mutable view of a locked tensor's elements.
#[derive(Debug)]
pub enum SliceMut<'a> {
    /// f32 storage.
    F32(&'a mut [f32]),
    /// bf16 storage.
    Bf16(&'a mut [half::bf16]),
    /// f16 storage.
    F16(&'a mut [half::f16]),
}

impl SliceMut<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            SliceMut::F32(s) => s.len(),
            SliceMut::Bf16(s) => s.len(),
            SliceMut::F16(s) => s.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn slice_of<'a>(storage: &'a mut CpuStorage, layout: &Layout) -> candle_core::Result<SliceMut<'a>> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::msg("optimist-candle: tensor is not contiguous"))?;
    let outside =
        || candle_core::Error::msg("optimist-candle: tensor layout lies outside its storage");
    match storage {
        CpuStorage::F32(v) => v.get_mut(start..end).map(SliceMut::F32).ok_or_else(outside),
        CpuStorage::BF16(v) => v
            .get_mut(start..end)
            .map(SliceMut::Bf16)
            .ok_or_else(outside),
        CpuStorage::F16(v) => v.get_mut(start..end).map(SliceMut::F16).ok_or_else(outside),
        other => Err(candle_core::Error::msg(format!(
            "optimist-candle: expected f32, bf16 or f16 storage, found {:?}",
            other.dtype()
        ))),
    }
}

/// The caller's function, run on all slices once every tensor is locked.
type Body<'f> = dyn FnMut(&mut [SliceMut<'_>]) -> candle_core::Result<()> + 'f;

/// The caller's function of [`with_f32_slices_mut`].
type F32Body<'f> = dyn FnMut(&mut [&mut [f32]]) -> candle_core::Result<()> + 'f;

struct Level<'s, 'a, 'f> {
    rest: &'s [&'s Tensor],
    acc: RefCell<Option<Vec<SliceMut<'a>>>>,
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
    mut acc: Vec<SliceMut<'_>>,
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
    body: &mut F32Body<'_>,
) -> candle_core::Result<()> {
    locked(tensors, labels, false, &mut |slices| {
        let mut f32s: Vec<&mut [f32]> = Vec::with_capacity(slices.len());
        for s in slices.iter_mut() {
            match s {
                SliceMut::F32(x) => f32s.push(&mut **x),
                _ => {
                    return Err(candle_core::Error::msg(
                        "optimist-candle: expected f32 storage",
                    ))
                }
            }
        }
        body(&mut f32s)
    })
}

/// Like [`with_f32_slices_mut`], but f32, bf16 and f16 tensors are
/// accepted and handed over as [`SliceMut`] in their own dtype.
pub fn with_slices_mut(
    tensors: &[&Tensor],
    labels: &[String],
    body: &mut Body<'_>,
) -> candle_core::Result<()> {
    locked(tensors, labels, true, body)
}

fn locked(
    tensors: &[&Tensor],
    labels: &[String],
    allow_half: bool,
    body: &mut Body<'_>,
) -> candle_core::Result<()> {
    let mut ids: Vec<(usize, usize)> = Vec::with_capacity(tensors.len());
    for (i, t) in tensors.iter().enumerate() {
        let label = labels.get(i).map(String::as_str).unwrap_or("tensor");
        check_tensor_dtypes(label, t, allow_half).map_err(candle_core::Error::msg)?;
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
