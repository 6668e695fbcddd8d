//! Named tensors in host memory: parameters, their gradients and optimizer
//! state buffers.
//!
//! Optimizers never own parameters. A step receives [`ParamMut`] views: the
//! parameter's name, shape, its values and its gradient as mutable slices, so that a framework adapter can hand over its own storage without
//! a copy, and [`Param`] is only a convenience owner for tests, replay and
//! demos.
//!
//! Precision: parameters are f32 slices today. State is held in
//! [`StateTensor`], whose element type is recorded in [`DType`]; update rules
//! are written as kernels over f32 chunks, so a reduced-precision state
//! (bf16, 8-bit blocks) is added by decoding a chunk into f32, running the
//! same kernel and encoding it back, without touching the update rules.

use crate::error::{Error, Result};

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// IEEE 754 single precision.
    F32,
    /// bfloat16 (state only; written with stochastic rounding).
    Bf16,
    /// 8-bit block-wise dynamic quantization with an f32 scale per block
    /// (state only; see [`crate::quant`]).
    Q8,
}

impl DType {
    /// Bytes per element (without the per-block scales of [`DType::Q8`]).
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::Bf16 => 2,
            DType::Q8 => 1,
        }
    }

    /// Parses `f32`, `bf16` or `q8`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "f32" | "float32" => Ok(DType::F32),
            "bf16" | "bfloat16" => Ok(DType::Bf16),
            "q8" | "8bit" | "int8" => Ok(DType::Q8),
            other => Err(Error::Input(format!(
                "state_dtype: unknown type '{other}' (expected f32, bf16 or q8)"
            ))),
        }
    }

    /// The name accepted by [`DType::parse`].
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::Bf16 => "bf16",
            DType::Q8 => "q8",
        }
    }
}

/// Number of elements of `shape`, or an error if the product overflows.
pub fn numel(shape: &[usize]) -> Result<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d)
            .ok_or_else(|| Error::Shape(format!("shape {shape:?} has too many elements")))
    })
}

/// An owned named parameter with its gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    pub grad: Vec<f32>,
}

impl Param {
    /// A parameter with a zero gradient; fails if `data` does not hold `prod(shape)` values.
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let name = name.into();
        let n = numel(&shape)?;
        if n != data.len() {
            return Err(Error::Shape(format!(
                "parameter '{name}': shape {shape:?} needs {n} values, got {}",
                data.len()
            )));
        }
        Ok(Param {
            name,
            shape,
            grad: vec![0.0; n],
            data,
        })
    }

    /// A mutable view for one optimizer step.
    pub fn view(&mut self) -> ParamMut<'_> {
        ParamMut {
            name: &self.name,
            shape: &self.shape,
            value: &mut self.data,
            grad: &mut self.grad,
            hessian: None,
        }
    }
}

/// Views of all parameters of a slice, for one step.
pub fn views(params: &mut [Param]) -> Vec<ParamMut<'_>> {
    params.iter_mut().map(Param::view).collect()
}

/// What an optimizer sees of one parameter during a step.
#[derive(Debug)]
pub struct ParamMut<'a> {
    /// Stable name (used for state lookup, groups and checkpoints).
    pub name: &'a str,
    /// Row-major shape.
    pub shape: &'a [usize],
    /// Parameter values, updated in place.
    pub value: &'a mut [f32],
    /// Gradient, same length as `value`. Gradient stages (clipping and the
    /// like) rewrite it in place, as `clip_grad_norm_` rewrites `.grad`;
    /// update rules only read it.
    pub grad: &'a mut [f32],
    /// Optional curvature estimate (Hessian diagonal) for second-order rules.
    pub hessian: Option<&'a [f32]>,
}

/// Checks the lengths of every parameter of one step ([`ParamMut::check`]).
pub fn check_each(params: &[ParamMut<'_>]) -> Result<()> {
    params.iter().try_for_each(|p| p.check())
}

/// Checks the lengths ([`ParamMut::check`]) and that no name is given twice,
/// parameter by parameter: the parameters of one step of a wrapper.
pub fn check_params(params: &[ParamMut<'_>]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for p in params {
        p.check()?;
        if !seen.insert(p.name) {
            return Err(Error::Input(format!(
                "parameter '{}' given twice in one step",
                p.name
            )));
        }
    }
    Ok(())
}

impl ParamMut<'_> {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.value.len()
    }

    /// Checks that the gradient (and Hessian, if any) match the value's length.
    pub fn check(&self) -> Result<()> {
        if self.grad.len() != self.value.len() {
            return Err(Error::Shape(format!(
                "parameter '{}': gradient has {} values, parameter has {}",
                self.name,
                self.grad.len(),
                self.value.len()
            )));
        }
        if let Some(h) = self.hessian {
            if h.len() != self.value.len() {
                return Err(Error::Shape(format!(
                    "parameter '{}': hessian has {} values, parameter has {}",
                    self.name,
                    h.len(),
                    self.value.len()
                )));
            }
        }
        Ok(())
    }

    /// The shape as a matrix (rows, cols): the last dimension is the columns
    /// and all leading dimensions are flattened into rows. `None` for scalars
    /// and vectors.
    pub fn as_matrix(&self) -> Option<(usize, usize)> {
        if self.shape.len() < 2 {
            return None;
        }
        let cols = *self.shape.last()?;
        let rows = self.value.len().checked_div(cols).unwrap_or(0);
        Some((rows, cols))
    }
}

/// One optimizer state buffer (moments, accumulators, ...).
///
/// Stored as f32, or compressed (bf16, 8-bit blocks) when the engine's
/// `state_dtype` asks for it. Update rules only ever see f32 storage: the
/// execution driver ([`crate::exec`]) decodes compressed buffers chunk by
/// chunk for the rule's kernel, or whole for the simple path.
#[derive(Debug, Clone, PartialEq)]
pub struct StateTensor {
    storage: Storage,
}

/// The storage of a [`StateTensor`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Storage {
    F32(Vec<f32>),
    Bf16(Mem<u16>),
    Q8 {
        codes: Mem<u8>,
        scales: Mem<f32>,
        block: usize,
    },
    /// f32 values in memory owned by someone else (see [`StateTensor::borrowed`]).
    Borrowed(Borrowed),
}

/// f32 values in caller-owned memory (a framework's tensor storage).
#[derive(Debug, Clone)]
pub(crate) struct Borrowed {
    ptr: std::ptr::NonNull<f32>,
    len: usize,
}

// SAFETY: a `Borrowed` is an exclusive `&mut [f32]` without a lifetime; the
// contract of `StateTensor::borrowed` makes the caller keep the memory valid
// and unaliased while it exists, so moving it across threads is as safe as
// moving the slice.
unsafe impl Send for Borrowed {}
// SAFETY: as above; shared access only reads through `&self`.
unsafe impl Sync for Borrowed {}

impl Borrowed {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
    fn as_slice(&self) -> &[f32] {
        // SAFETY: valid for `len` values per `StateTensor::borrowed`'s contract.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
    pub(crate) fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: valid and exclusive for `len` values per `StateTensor::borrowed`'s contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

/// Compressed values owned here, or in caller-owned memory (see
/// [`StateTensor::borrowed_bf16`], [`StateTensor::borrowed_q8`]).
#[derive(Debug, Clone)]
pub(crate) enum Mem<T> {
    Owned(Vec<T>),
    Borrowed { ptr: std::ptr::NonNull<T>, len: usize },
}

// SAFETY: as for `Borrowed`: a borrowed `Mem` is an exclusive slice whose
// memory the caller keeps valid and unaliased (the `borrowed_*` contracts).
unsafe impl<T: Send> Send for Mem<T> {}
// SAFETY: as above; shared access only reads through `&self`.
unsafe impl<T: Sync> Sync for Mem<T> {}

impl<T> Mem<T> {
    fn is_borrowed(&self) -> bool {
        matches!(self, Mem::Borrowed { .. })
    }
    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        match self {
            Mem::Owned(v) => v,
            // SAFETY: valid and exclusive for `len` values per the `borrowed_*` contracts.
            Mem::Borrowed { ptr, len } => unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), *len) },
        }
    }
}

impl<T> std::ops::Deref for Mem<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Mem::Owned(v) => v,
            // SAFETY: valid for `len` values per the `borrowed_*` contracts.
            Mem::Borrowed { ptr, len } => unsafe { std::slice::from_raw_parts(ptr.as_ptr(), *len) },
        }
    }
}

impl<T: PartialEq> PartialEq for Mem<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl PartialEq for Borrowed {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Default for StateTensor {
    fn default() -> Self {
        StateTensor {
            storage: Storage::F32(Vec::new()),
        }
    }
}

impl StateTensor {
    /// A zero-filled buffer of `n` elements.
    pub fn zeros(n: usize) -> Self {
        StateTensor {
            storage: Storage::F32(vec![0.0; n]),
        }
    }

    /// A buffer holding a copy of `values`.
    pub fn from_slice(values: &[f32]) -> Self {
        StateTensor {
            storage: Storage::F32(values.to_vec()),
        }
    }

    /// A buffer over `len` f32 values at `ptr`, owned by the caller (a
    /// framework's tensor, updated in place by the optimizer). It is never
    /// freed or resized here; re-encoding it (bf16 or 8-bit state) replaces
    /// it by an owned buffer.
    ///
    /// # Safety
    /// `ptr` must be non-null, aligned, valid for reads and writes of `len`
    /// f32 values and not accessed by anything else for as long as the
    /// returned tensor (or a clone of it) is in use. The usual pattern is to
    /// swap it into an optimizer for one step and swap it out again
    /// ([`crate::Optimizer::swap_state`]).
    pub unsafe fn borrowed(ptr: *mut f32, len: usize) -> Self {
        let ptr = std::ptr::NonNull::new(ptr).unwrap_or(std::ptr::NonNull::dangling());
        StateTensor {
            storage: Storage::Borrowed(Borrowed { ptr, len }),
        }
    }

    /// A bf16 buffer over `len` values at `ptr`, owned by the caller (a
    /// framework's bfloat16 tensor), updated in place by an optimizer whose
    /// state dtype is bf16. Converting it to another dtype replaces it by an
    /// owned buffer.
    ///
    /// # Safety
    /// As [`StateTensor::borrowed`], for `len` u16 values.
    pub unsafe fn borrowed_bf16(ptr: *mut u16, len: usize) -> Self {
        let ptr = std::ptr::NonNull::new(ptr).unwrap_or(std::ptr::NonNull::dangling());
        StateTensor {
            storage: Storage::Bf16(Mem::Borrowed { ptr, len }),
        }
    }

    /// An 8-bit buffer over `len` codes at `codes` and their block scales
    /// (`nscales` f32 values at `scales`, one per block of `block` codes),
    /// owned by the caller and updated in place by an optimizer whose state
    /// dtype is q8 with this block size. A wrong number of scales is an error.
    ///
    /// # Safety
    /// As [`StateTensor::borrowed`], for `len` u8 values at `codes` and
    /// `nscales` f32 values at `scales`, the two not overlapping.
    pub unsafe fn borrowed_q8(
        codes: *mut u8,
        len: usize,
        scales: *mut f32,
        nscales: usize,
        block: usize,
    ) -> Result<Self> {
        let need = if block == 0 { 0 } else { crate::quant::q8_blocks(len, block) };
        if block == 0 || nscales != need {
            return Err(Error::Shape(format!(
                "8-bit buffer: {len} codes in blocks of {block} need {need} scales, got {nscales}"
            )));
        }
        let codes = std::ptr::NonNull::new(codes).unwrap_or(std::ptr::NonNull::dangling());
        let scales = std::ptr::NonNull::new(scales).unwrap_or(std::ptr::NonNull::dangling());
        Ok(StateTensor {
            storage: Storage::Q8 {
                codes: Mem::Borrowed { ptr: codes, len },
                scales: Mem::Borrowed { ptr: scales, len: nscales },
                block,
            },
        })
    }

    /// Whether the values live in caller-owned memory
    /// ([`StateTensor::borrowed`], [`StateTensor::borrowed_bf16`],
    /// [`StateTensor::borrowed_q8`]).
    pub fn is_borrowed(&self) -> bool {
        match &self.storage {
            Storage::Borrowed(_) => true,
            Storage::Bf16(m) => m.is_borrowed(),
            Storage::Q8 { codes, .. } => codes.is_borrowed(),
            Storage::F32(_) => false,
        }
    }

    /// The raw bf16 values of a bf16 buffer (`None` for other storage).
    pub fn bf16_bits(&self) -> Option<&[u16]> {
        match &self.storage {
            Storage::Bf16(m) => Some(m),
            _ => None,
        }
    }

    /// A buffer filled with `value`.
    pub fn full(n: usize, value: f32) -> Self {
        StateTensor {
            storage: Storage::F32(vec![value; n]),
        }
    }

    /// The values, filled with `init` (`n` of them) on first use. A buffer
    /// that holds another number of values (a checkpoint that does not fit
    /// the parameter) is an error naming the parameter and the buffer.
    pub fn get_or_fill(
        &mut self,
        param: &str,
        buffer: &str,
        n: usize,
        init: f32,
    ) -> Result<&mut [f32]> {
        if self.is_empty() {
            self.storage = Storage::F32(vec![init; n]);
        }
        let len = self.len();
        match &mut self.storage {
            Storage::F32(v) if len == n => Ok(v),
            Storage::Borrowed(b) if len == n => Ok(b.as_mut_slice()),
            Storage::F32(_) | Storage::Borrowed(_) => Err(Error::Shape(format!(
                "state of '{param}': buffer '{buffer}' holds {len} values, expected {n}"
            ))),
            _ => Err(Error::Unsupported(format!(
                "state of '{param}': buffer '{buffer}' is stored compressed"
            ))),
        }
    }

    /// Allocates `n` values filled with `init` on first use; a buffer that
    /// holds another number of values is an error naming the parameter and
    /// the buffer. Works on compressed buffers too (it reads no values), so
    /// [`crate::exec::Elementwise::prepare`] uses it.
    pub fn ensure(&mut self, param: &str, buffer: &str, n: usize, init: f32) -> Result<()> {
        if self.is_empty() {
            self.storage = Storage::F32(vec![init; n]);
        } else if self.len() != n {
            return Err(Error::Shape(format!(
                "state of '{param}': buffer '{buffer}' holds {} values, expected {n}",
                self.len()
            )));
        }
        Ok(())
    }

    /// Whether the buffer has been allocated (an empty buffer is "not yet created").
    pub fn is_allocated(&self) -> bool {
        !self.is_empty()
    }

    /// Element type of the stored values.
    pub fn dtype(&self) -> DType {
        match &self.storage {
            Storage::F32(_) | Storage::Borrowed(_) => DType::F32,
            Storage::Bf16(_) => DType::Bf16,
            Storage::Q8 { .. } => DType::Q8,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.storage {
            Storage::F32(v) => v.len(),
            Storage::Bf16(v) => v.len(),
            Storage::Q8 { codes, .. } => codes.len(),
            Storage::Borrowed(b) => b.len,
        }
    }

    /// True when no element is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values as f32.
    ///
    /// # Panics
    /// If the buffer is stored compressed. Update rules never see compressed
    /// buffers (the engine decodes them first); elsewhere use
    /// [`StateTensor::to_vec`].
    pub fn as_slice(&self) -> &[f32] {
        match &self.storage {
            Storage::F32(v) => v,
            Storage::Borrowed(b) => b.as_slice(),
            _ => panic!("{}", Self::COMPRESSED),
        }
    }

    /// Values as f32, or `None` if the buffer is stored compressed.
    pub fn try_as_slice(&self) -> Option<&[f32]> {
        match &self.storage {
            Storage::F32(v) => Some(v),
            Storage::Borrowed(b) => Some(b.as_slice()),
            _ => None,
        }
    }

    /// Values as mutable f32.
    ///
    /// # Panics
    /// If the buffer is stored compressed (see [`StateTensor::as_slice`]).
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        match &mut self.storage {
            Storage::F32(v) => v,
            Storage::Borrowed(b) => b.as_mut_slice(),
            _ => panic!("{}", Self::COMPRESSED),
        }
    }

    const COMPRESSED: &'static str =
        "StateTensor: f32 access to a compressed buffer (decode it with to_vec or decompress)";

    /// The values as f32, decoded if the buffer is compressed.
    pub fn to_vec(&self) -> Vec<f32> {
        match &self.storage {
            Storage::F32(v) => v.clone(),
            Storage::Borrowed(b) => b.as_slice().to_vec(),
            Storage::Bf16(v) => {
                let mut out = vec![0.0; v.len()];
                crate::quant::bf16_decode(v, &mut out);
                out
            }
            Storage::Q8 {
                codes,
                scales,
                block,
            } => {
                let mut out = vec![0.0; codes.len()];
                crate::quant::q8_decode(codes, scales, &mut out, *block);
                out
            }
        }
    }

    /// Converts the storage to f32 (exact decode); no-op if already f32.
    pub fn decompress(&mut self) {
        if self.dtype() != DType::F32 {
            self.storage = Storage::F32(self.to_vec());
        }
    }

    /// Re-encodes the buffer as `dtype`: bf16 rounds stochastically with the
    /// random stream `key`; q8 uses blocks of `block` values and rounds to
    /// the nearest code, or stochastically with `key` when `q8_stochastic`.
    /// Converting to f32 decodes.
    pub fn compress(&mut self, dtype: DType, block: usize, key: u64, q8_stochastic: bool) {
        if dtype == self.dtype() && dtype != DType::Q8 {
            return;
        }
        if let (DType::Q8, Storage::Q8 { block: b, .. }) = (dtype, &self.storage) {
            if *b == block {
                return;
            }
        }
        let values = self.to_vec();
        self.storage = match dtype {
            DType::F32 => Storage::F32(values),
            DType::Bf16 => {
                let mut out = vec![0u16; values.len()];
                crate::quant::bf16_encode(&values, &mut out, key, 0);
                Storage::Bf16(Mem::Owned(out))
            }
            DType::Q8 => {
                let block = block.max(1);
                let mut codes = vec![0u8; values.len()];
                let mut scales = vec![0f32; crate::quant::q8_blocks(values.len(), block)];
                let rounding = if q8_stochastic {
                    crate::quant::Rounding::Stochastic { key, offset: 0 }
                } else {
                    crate::quant::Rounding::Nearest
                };
                crate::quant::q8_encode(&values, &mut codes, &mut scales, block, rounding);
                Storage::Q8 {
                    codes: Mem::Owned(codes),
                    scales: Mem::Owned(scales),
                    block,
                }
            }
        };
    }

    /// The codes, block scales and block size of an 8-bit buffer (`None`
    /// for other storage): what a state dict saves so that resuming is bit
    /// exact.
    pub fn q8_parts(&self) -> Option<(&[u8], &[f32], usize)> {
        match &self.storage {
            Storage::Q8 {
                codes,
                scales,
                block,
            } => Some((&codes[..], &scales[..], *block)),
            _ => None,
        }
    }

    /// An 8-bit buffer from its codes, block scales and block size, as
    /// [`StateTensor::q8_parts`] gives them; `scales` must have one value
    /// per block.
    pub fn from_q8(codes: Vec<u8>, scales: Vec<f32>, block: usize) -> Result<Self> {
        if block == 0 || scales.len() != crate::quant::q8_blocks(codes.len(), block) {
            return Err(Error::Shape(format!(
                "8-bit buffer: {} codes in blocks of {block} need {} scales, got {}",
                codes.len(),
                if block == 0 {
                    0
                } else {
                    crate::quant::q8_blocks(codes.len(), block)
                },
                scales.len()
            )));
        }
        Ok(StateTensor {
            storage: Storage::Q8 {
                codes: Mem::Owned(codes),
                scales: Mem::Owned(scales),
                block,
            },
        })
    }

    /// Bytes held (including the per-block scales of 8-bit storage).
    pub fn nbytes(&self) -> usize {
        match &self.storage {
            Storage::F32(v) => v.len() * 4,
            Storage::Borrowed(b) => b.len * 4,
            Storage::Bf16(v) => v.len() * 2,
            Storage::Q8 { codes, scales, .. } => codes.len() + scales.len() * 4,
        }
    }

    /// The storage, for the execution driver.
    pub(crate) fn storage_mut(&mut self) -> &mut Storage {
        &mut self.storage
    }
}
