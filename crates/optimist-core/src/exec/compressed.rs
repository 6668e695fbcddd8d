//! Compressed state (bf16, q8): buffers are converted to the storage the
//! options ask for around the step, and the fused driver runs each chunk as
//! decode → kernel → encode ([`compressed_piece`]); the simple path decodes
//! whole buffers around [`UpdateRule::update`] ([`run_simple`]) with the
//! same random streams, so the two paths agree bit for bit.

use std::cell::Cell;

use super::elementwise::{split_front, Piece};
use crate::error::Result;
use crate::quant;
use crate::rule::{Elementwise, Plain, StepInfo, UpdateRule, MAX_BUFFERS};
use crate::state::{ParamState, StateStore};
use crate::tensor::{DType, ParamMut, StateTensor, Storage};

/// Random-stream phases of the compressed state.
const PHASE_PRE: u64 = 1;
const PHASE_POST: u64 = 2;

fn key(info: &StepInfo, param_hash: u64, buffer: usize, phase: u64) -> u64 {
    quant::stream_key(info.exec.seed, param_hash, buffer, info.step, phase)
}

/// Stores buffer `buffer` of a parameter as `target`, rounding with the
/// random stream of the step's `phase`.
fn store_as(
    info: &StepInfo,
    t: &mut StateTensor,
    target: DType,
    param_hash: u64,
    buffer: usize,
    phase: u64,
) {
    t.compress(
        target,
        info.exec.q8_block,
        key(info, param_hash, buffer, phase),
        info.exec.q8_stochastic,
    );
}

/// Converts allocated buffers whose storage differs from the target (loaded
/// from a checkpoint, or the option changed) before the step.
pub(super) fn convert_before(info: &StepInfo, param_hash: u64, bufs: &mut [&mut StateTensor]) {
    for (b, t) in bufs.iter_mut().enumerate() {
        if !t.is_allocated() {
            continue;
        }
        let target = info.exec.target_dtype(t.len());
        if t.dtype() != target || target == DType::Q8 {
            store_as(info, t, target, param_hash, b, PHASE_PRE);
        }
    }
}

/// Encodes f32 buffers that should be compressed (new this step, or
/// decoded for the simple path) after it.
pub(super) fn convert_after(info: &StepInfo, param_hash: u64, bufs: &mut [&mut StateTensor]) {
    for (b, t) in bufs.iter_mut().enumerate() {
        if t.is_allocated() && t.dtype() == DType::F32 {
            let target = info.exec.target_dtype(t.len());
            if target != DType::F32 {
                store_as(info, t, target, param_hash, b, PHASE_POST);
            }
        }
    }
}

/// Number of parameter-sized buffers of a state: those the kernel sees and
/// that may be compressed. Buffers listed in [`ParamState::UNSIZED`] (which
/// `param_state!` puts last) stay f32 and are the business of `prepare`.
pub(super) fn sized_buffers<S: ParamState>() -> usize {
    S::BUFFERS.len().saturating_sub(S::UNSIZED.len())
}

/// The first `nb` buffers of `st` (its parameter-sized ones, see
/// [`sized_buffers`]).
pub(super) fn sized_bufs<S: ParamState>(st: &mut S, nb: usize) -> Vec<&mut StateTensor> {
    let mut bufs = Vec::with_capacity(MAX_BUFFERS);
    st.buffers_mut(&mut bufs);
    bufs.truncate(nb);
    bufs
}

/// The simple path of an elementwise rule: [`UpdateRule::update`] on each
/// parameter in turn, with compressed buffers decoded whole before and
/// encoded after.
pub(super) fn run_simple<R: UpdateRule>(
    rule: &R,
    info: &StepInfo,
    params: &mut [ParamMut<'_>],
    states: &mut StateStore<R::State>,
) -> Result<()> {
    let compressed = info.exec.state_dtype != DType::F32;
    let nb = sized_buffers::<R::State>();
    for p in params.iter_mut() {
        let st = states.get(p.name, p.numel())?;
        if !compressed {
            rule.update(info, p, st)?;
            continue;
        }
        let h = quant::name_hash(p.name);
        let mut bufs = sized_bufs(st, nb);
        convert_before(info, h, &mut bufs);
        for t in bufs.iter_mut() {
            t.decompress();
        }
        rule.update(info, p, st)?;
        // Every buffer is f32 now: encode those the options compress.
        convert_after(info, h, &mut sized_bufs(st, nb));
    }
    Ok(())
}

/// A buffer's remaining storage, or one chunk of it.
#[derive(Debug, Default)]
pub(super) enum Buf<'a> {
    #[default]
    Empty,
    F32(&'a mut [f32]),
    Bf16(&'a mut [u16], u64),
    Q8(&'a mut [u8], &'a mut [f32], usize, Option<u64>),
}

impl<'a> Buf<'a> {
    /// The storage of buffer `buffer` of a parameter (`param_hash` gives
    /// its name's hash), with the random stream of its encoding after the
    /// step.
    #[inline]
    pub(super) fn of(
        t: &'a mut StateTensor,
        info: &StepInfo,
        param_hash: impl Fn() -> u64,
        buffer: usize,
    ) -> Self {
        match t.storage_mut() {
            Storage::F32(v) if v.is_empty() => Buf::Empty,
            Storage::F32(v) => Buf::F32(v.as_mut_slice()),
            Storage::Borrowed(b) if b.is_empty() => Buf::Empty,
            Storage::Borrowed(b) => Buf::F32(b.as_mut_slice()),
            Storage::Bf16(v) => Buf::Bf16(
                v.as_mut_slice(),
                key(info, param_hash(), buffer, PHASE_POST),
            ),
            Storage::Q8 {
                codes,
                scales,
                block,
            } => Buf::Q8(
                codes.as_mut_slice(),
                scales.as_mut_slice(),
                *block,
                info.exec
                    .q8_stochastic
                    .then(|| key(info, param_hash(), buffer, PHASE_POST)),
            ),
        }
    }

    /// Splits the first `n` elements off.
    #[inline]
    pub(super) fn take(&mut self, n: usize) -> Buf<'a> {
        match self {
            Buf::Empty => Buf::Empty,
            Buf::F32(s) => Buf::F32(split_front(s, n)),
            Buf::Bf16(s, k) => Buf::Bf16(split_front(s, n), *k),
            Buf::Q8(c, sc, block, k) => {
                let codes = split_front(c, n);
                let scales = split_front(sc, codes.len().div_ceil(*block));
                Buf::Q8(codes, scales, *block, *k)
            }
        }
    }

    #[inline]
    pub(super) fn is_compressed(&self) -> bool {
        matches!(self, Buf::Bf16(..) | Buf::Q8(..))
    }
}

thread_local! {
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Decode the compressed buffers of a piece into scratch space, run the
/// kernel, encode them back.
#[inline(always)]
pub(super) fn compressed_piece<R: Elementwise>(
    rule: &R,
    scalars: &R::Scalars,
    nb: usize,
    piece: &mut Piece<'_>,
) {
    let len = piece.span.value.len();
    // The scratch space is moved out of the thread-local (no closure, so
    // that everything here is inlined into the AVX2 function).
    let mut scratch = SCRATCH.take();
    {
        if scratch.len() < nb * len {
            scratch.resize(nb * len, 0.0);
        }
        {
            let mut state: [&mut [f32]; MAX_BUFFERS] = Default::default();
            for ((s, b), tmp) in state
                .iter_mut()
                .zip(piece.bufs.iter_mut())
                .zip(scratch.chunks_mut(len))
            {
                match b {
                    Buf::Empty => {}
                    Buf::F32(x) => *s = &mut **x,
                    Buf::Bf16(x, _) => {
                        quant::bf16_decode(x, tmp);
                        *s = tmp;
                    }
                    Buf::Q8(c, sc, block, _) => {
                        quant::q8_decode(c, sc, tmp, *block);
                        *s = tmp;
                    }
                }
            }
            rule.kernel(scalars, piece.span.chunk(state), &mut Plain);
        }
        for (b, tmp) in piece.bufs.iter_mut().zip(scratch.chunks(len)) {
            match b {
                Buf::Bf16(x, k) => quant::bf16_encode(tmp, x, *k, piece.span.offset),
                Buf::Q8(c, sc, block, k) => {
                    let rounding = match k {
                        Some(key) => quant::Rounding::Stochastic {
                            key: *key,
                            offset: piece.span.offset,
                        },
                        None => quant::Rounding::Nearest,
                    };
                    quant::q8_encode(tmp, c, sc, *block, rounding)
                }
                _ => {}
            }
        }
    }
    SCRATCH.set(scratch);
}
