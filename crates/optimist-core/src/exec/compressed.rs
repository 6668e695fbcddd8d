//! Compressed state (bf16, q8): buffers are converted to the storage the
//! options ask for around the step, and the fused driver runs each chunk as
//! decode → kernel → encode ([`compressed_piece`]); the simple path decodes
//! whole buffers around [`UpdateRule::update`] ([`run_simple`]) with the
//! same random streams, so the two paths agree bit for bit.

use std::cell::Cell;

use super::elementwise::{split_front, Piece, Span};
use crate::error::Result;
use crate::quant;
use crate::rule::{
    Bf16Dest, Elementwise, Packed, PackedPlain, Plain, StepInfo, UpdateRule, MAX_BUFFERS,
};
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

/// Elements per decode → kernel → encode round of [`compressed_piece`]: the
/// f32 scratch copies of a round (4 bytes per element and buffer) stay in
/// the L1 data cache, so each value is decoded, updated and encoded while
/// it is there. 8-bit pieces use rounds of at least one block.
const ROUND: usize = 1024;

/// Runs the kernel on a piece with compressed buffers: in rounds of
/// [`ROUND`] elements that decode them into scratch space and encode them
/// back, or, once the first round showed that the kernel's loop reads and
/// writes bf16 itself ([`Packing::Direct`]), the rest in one round.
#[inline(always)]
pub(super) fn compressed_piece<R: Elementwise>(
    rule: &R,
    scalars: &R::Scalars,
    nb: usize,
    piece: &mut Piece<'_>,
) {
    // Rounds split 8-bit buffers on block boundaries: every block size is
    // a power of two, so the largest one divides a round of that size.
    let round = piece.bufs[..nb]
        .iter()
        .map(|b| match b {
            Buf::Q8(_, _, block, _) => *block,
            _ => 0,
        })
        .fold(ROUND, usize::max);
    let mut bufs = std::mem::take(&mut piece.bufs);
    let mut value: &mut [f32] = &mut *piece.span.value;
    let mut grad: &[f32] = piece.span.grad;
    let mut hessian: Option<&[f32]> = piece.span.hessian;
    let mut offset = piece.span.offset;
    // The scratch space is moved out of the thread-local (no closure, so
    // that everything here is inlined into the SIMD function).
    let mut scratch = SCRATCH.take();
    if scratch.len() < nb * round {
        scratch.resize(nb * round, 0.0);
    }
    let mut packing = Packing::Trial;
    while !value.is_empty() {
        // Once the kernel reads and writes the bf16 buffers itself, the
        // rest of the piece is one round (no scratch space to fit).
        // (It stays inside one segment of the bf16 random stream.)
        let n = match packing {
            Packing::Direct => value.len().min(
                usize::try_from((1u64 << 32) - (offset as u64 & 0xffff_ffff)).unwrap_or(usize::MAX),
            ),
            _ => value.len().min(round),
        };
        let mut span = Span {
            offset,
            value: split_front(&mut value, n),
            grad: &grad[..n.min(grad.len())],
            hessian: hessian.map(|h| &h[..n.min(h.len())]),
        };
        grad = &grad[n.min(grad.len())..];
        hessian = hessian.map(|h| &h[n.min(h.len())..]);
        let mut round_bufs: [Buf<'_>; MAX_BUFFERS] = Default::default();
        for (r, b) in round_bufs.iter_mut().zip(bufs.iter_mut()).take(nb) {
            *r = b.take(n);
        }
        compressed_round(
            rule,
            scalars,
            &mut span,
            &mut round_bufs,
            match packing {
                Packing::Direct => &mut [],
                _ => &mut scratch[..nb * n],
            },
            &mut packing,
        );
        offset += n;
    }
    SCRATCH.set(scratch);
}

/// How the rounds of a piece hand bf16 buffers to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Packing {
    /// Not known yet: decode into scratch space and offer destinations.
    Trial,
    /// The kernel's loop read and wrote every bf16 buffer in the last
    /// round ([`Bf16Lane`](crate::optim::each)): no scratch copies.
    Direct,
    /// Decode into scratch space, encode after the kernel.
    Scratch,
}

/// One round of [`compressed_piece`]: `scratch` holds `span.value.len()`
/// values per buffer. Where every buffer is bf16 and the kernel's element
/// loop packs ([`PackedPlain`]), the loop reads and rounds the bf16 values
/// itself; the first round of a piece finds out (`packing`), the others
/// then skip the scratch copies. Otherwise (and for 8-bit buffers) the
/// buffers are decoded into scratch space and encoded after the kernel.
#[inline(always)]
fn compressed_round<R: Elementwise>(
    rule: &R,
    scalars: &R::Scalars,
    span: &mut Span<'_>,
    bufs: &mut [Buf<'_>; MAX_BUFFERS],
    scratch: &mut [f32],
    packing: &mut Packing,
) {
    let len = span.value.len();
    let done = Cell::new(0u32);
    // Packing needs every buffer in bf16 (the kernel's loop writes all of
    // its buffers one way) and one random-stream segment.
    let all_bf16 = bufs
        .iter()
        .all(|b| matches!(b, Buf::Empty | Buf::F32(&mut []) | Buf::Bf16(..)));
    let mut offered = 0u32;
    let direct = all_bf16 && *packing == Packing::Direct;
    {
        let mut state: [&mut [f32]; MAX_BUFFERS] = Default::default();
        let mut packed = Packed::default();
        // Empty in direct rounds, which need no copies.
        let mut tmps = scratch.chunks_mut(len.max(1));
        for (k, (s, b)) in state.iter_mut().zip(bufs.iter_mut()).enumerate() {
            let tmp = tmps.next().unwrap_or_default();
            match b {
                Buf::Empty => {}
                Buf::F32(x) => *s = &mut **x,
                Buf::Bf16(x, key) => {
                    let stream = if all_bf16 && *packing != Packing::Scratch {
                        quant::bf16_stream(*key, span.offset, len)
                    } else {
                        None
                    };
                    if !(direct && stream.is_some()) {
                        quant::bf16_decode(x, tmp);
                        *s = tmp;
                    }
                    if let Some((base, lo)) = stream {
                        offered |= 1 << k;
                        packed.dest[k] = Some(Bf16Dest {
                            bits: x,
                            base,
                            lo,
                            buffer: k,
                        });
                    }
                }
                Buf::Q8(c, sc, block, _) => {
                    quant::q8_decode(c, sc, tmp, *block);
                    *s = tmp;
                }
            }
        }
        if offered != 0 {
            packed.done = Some(&done);
            rule.kernel(scalars, span.chunk_packed(state, packed), &mut PackedPlain);
        } else {
            rule.kernel(scalars, span.chunk(state), &mut Plain);
        }
    }
    if *packing == Packing::Trial && offered != 0 {
        *packing = if done.get() == offered {
            Packing::Direct
        } else {
            Packing::Scratch
        };
    }
    // Without scratch copies, a buffer the kernel did not write is
    // unchanged (re-encoding a bf16 value gives its own bits).
    let skip = if direct { offered } else { done.get() };
    let mut tmps = scratch.chunks(len.max(1));
    for (k, b) in bufs.iter_mut().enumerate() {
        let tmp = tmps.next().unwrap_or_default();
        match b {
            Buf::Bf16(..) if skip & (1 << k) != 0 => {}
            Buf::Bf16(x, key) => quant::bf16_encode(tmp, x, *key, span.offset),
            Buf::Q8(c, sc, block, k) => {
                let rounding = match k {
                    Some(key) => quant::Rounding::Stochastic {
                        key: *key,
                        offset: span.offset,
                    },
                    None => quant::Rounding::Nearest,
                };
                quant::q8_encode(tmp, c, sc, *block, rounding)
            }
            _ => {}
        }
    }
}
