//! The fused elementwise driver: an elementwise rule's one kernel run over
//! chunks of every parameter on the step's thread pool ([`run_elementwise`]),
//! the simple whole-tensor path and the cautious path derived from the same
//! kernel, and [`elementwise_rule!`](crate::elementwise_rule), which writes
//! a rule's [`UpdateRule`] methods from its kernel.

use rayon::prelude::*;

use super::cautious::{apply_recorded, cautious_scale, run_cautious, CautiousMask, Record};
use super::compressed::{
    compressed_piece, convert_after, convert_before, run_simple, sized_buffers, sized_bufs, Buf,
};
use super::dispatch::simd;
use super::layout::relocate_fresh;
use super::threads::states_of;
use crate::error::{Error, Result};
use crate::quant;
#[cfg(doc)]
use crate::rule::UpdateRule;
use crate::rule::{Apply, Chunk, Elementwise, Packed, Plain, StepInfo, CHUNK, MAX_BUFFERS};
use crate::state::{ParamState, StateStore};
use crate::tensor::{DType, ParamMut, StateTensor};

/// Implements the whole [`UpdateRule`] side of an elementwise rule from its
/// [`Elementwise::kernel`]: `update` (the simple path: the kernel over the
/// whole parameter as one chunk, through the cautious mask when
/// [`Elementwise::cautious`]), `update_with` (the kernel through any
/// [`Apply`] sink, so the cautious wrapper composes), `update_all` (the
/// fused driver, [`run_elementwise_rule`]) and `update_all_cautious` (the
/// fused cautious mask, [`run_elementwise_cautious`]). Use inside
/// `impl UpdateRule for X { type State = ...; elementwise_rule!(); }`.
///
/// `elementwise_rule!(direct)` is for rules whose step is not one
/// `x - lr * u` (NAdam adds two terms, RAdam switches form): their kernel
/// writes `x` itself and ignores the sink, so they do not expose an update
/// direction and the cautious wrapper refuses them; `update` and the fused
/// driver still run the one kernel (such a rule must not ask for cautious
/// masking through [`Elementwise::cautious`]).
///
/// `elementwise_rule!(update_with)` gives only `EXPOSES_UPDATE` and
/// `update_with`, for rules that write `update` and `update_all` themselves.
#[macro_export]
macro_rules! elementwise_rule {
    () => {
        $crate::elementwise_rule!(update_with);
        $crate::elementwise_rule!(direct);

        fn update_all_cautious(
            &self,
            info: &$crate::rule::StepInfo,
            params: &mut [$crate::tensor::ParamMut<'_>],
            states: &mut $crate::state::StateStore<Self::State>,
        ) -> Option<$crate::error::Result<()>> {
            Some($crate::exec::run_elementwise_cautious(
                self, info, params, states,
            ))
        }
    };
    (update_with) => {
        const EXPOSES_UPDATE: bool = true;

        fn update_with<A: $crate::rule::Apply>(
            &self,
            info: &$crate::rule::StepInfo,
            param: &mut $crate::tensor::ParamMut<'_>,
            state: &mut Self::State,
            apply: &mut A,
        ) -> $crate::error::Result<()> {
            $crate::exec::kernel_whole_param(self, info, param, state, apply)
        }
    };
    (direct) => {
        const ELEMENTWISE: bool = true;

        fn update(
            &self,
            info: &$crate::rule::StepInfo,
            param: &mut $crate::tensor::ParamMut<'_>,
            state: &mut Self::State,
        ) -> $crate::error::Result<()> {
            $crate::exec::update_whole_param(self, info, param, state)
        }

        fn update_all(
            &self,
            info: &$crate::rule::StepInfo,
            params: &mut [$crate::tensor::ParamMut<'_>],
            states: &mut $crate::state::StateStore<Self::State>,
        ) -> Option<$crate::error::Result<()>> {
            Some($crate::exec::run_elementwise_rule(
                self, info, params, states,
            ))
        }
    };
}

/// The values, gradient and Hessian estimate of one chunk of a parameter
/// (or of a whole parameter): with state buffers, the kernel's [`Chunk`].
pub(super) struct Span<'a> {
    pub(super) offset: usize,
    pub(super) value: &'a mut [f32],
    pub(super) grad: &'a [f32],
    pub(super) hessian: Option<&'a [f32]>,
}

impl<'a> Span<'a> {
    /// The whole of parameter `p`.
    #[inline]
    fn whole(p: &'a mut ParamMut<'_>) -> Self {
        Span {
            offset: 0,
            value: &mut *p.value,
            grad: &*p.grad,
            hessian: p.hessian,
        }
    }

    /// [`Span::chunk`] with bf16 destinations for the element loops.
    #[inline(always)]
    pub(super) fn chunk_packed<'s>(
        &'s mut self,
        state: [&'s mut [f32]; MAX_BUFFERS],
        packed: Packed<'s>,
    ) -> Chunk<'s> {
        Chunk {
            packed,
            ..self.chunk(state)
        }
    }

    /// The kernel's view of the span with state buffers `state`.
    #[inline(always)]
    pub(super) fn chunk<'s>(&'s mut self, state: [&'s mut [f32]; MAX_BUFFERS]) -> Chunk<'s> {
        Chunk {
            offset: self.offset,
            value: &mut *self.value,
            grad: self.grad,
            hessian: self.hessian,
            state,
            packed: Default::default(),
        }
    }
}

/// One step of an elementwise rule on one whole parameter, the kernel's
/// steps going through `apply` (the caller ends the parameter with
/// [`Apply::finish`]): `prepare`, then the kernel over the parameter as
/// one chunk, on the calling thread. State buffers must be f32 (the simple
/// driver decodes compressed ones first).
pub fn kernel_whole_param<R: Elementwise, A: Apply>(
    rule: &R,
    info: &StepInfo,
    p: &mut ParamMut<'_>,
    st: &mut R::State,
    apply: &mut A,
) -> Result<()> {
    let scalars = rule.prepare(info, p, st)?;
    let n = p.numel();
    let mut state: [&mut [f32]; MAX_BUFFERS] = Default::default();
    for (slot, t) in state
        .iter_mut()
        .zip(sized_bufs(st, sized_buffers::<R::State>().min(MAX_BUFFERS)))
    {
        if !t.is_allocated() {
            continue;
        }
        if t.dtype() != DType::F32 || t.len() != n {
            return Err(Error::Unsupported(format!(
                "{}: parameter '{}': a state buffer of {} {} values for {n} elements (the whole-tensor path needs full-size f32 buffers)",
                R::NAME,
                p.name,
                t.len(),
                t.dtype().name()
            )));
        }
        *slot = t.as_mut_slice();
    }
    rule.kernel(&scalars, Span::whole(p).chunk(state), apply);
    Ok(())
}

/// The simple path of an elementwise rule on one parameter: the kernel
/// over the whole parameter, through the cautious mask when the rule's
/// configuration asks for it ([`Elementwise::cautious`]), else [`Plain`].
pub fn update_whole_param<R: Elementwise>(
    rule: &R,
    info: &StepInfo,
    p: &mut ParamMut<'_>,
    st: &mut R::State,
) -> Result<()> {
    if rule.cautious() {
        let mut mask = CautiousMask::default();
        kernel_whole_param(rule, info, p, st, &mut mask)?;
        mask.finish(p.value)
    } else {
        kernel_whole_param(rule, info, p, st, &mut Plain)
    }
}

/// The step of an elementwise rule over all parameters: the fused driver
/// ([`run_elementwise`]), or, when the rule's configuration asks for
/// cautious masking, the kernel through one mask per parameter
/// ([`run_cautious`]; f32 state only).
pub fn run_elementwise_rule<R: Elementwise>(
    rule: &R,
    info: &StepInfo,
    params: &mut [ParamMut<'_>],
    states: &mut StateStore<R::State>,
) -> Result<()> {
    if !rule.cautious() {
        return run_elementwise(rule, info, params, states);
    }
    super::threads::need_f32_state::<R>(info, "cautious=true needs")?;
    run_elementwise_cautious(rule, info, params, states)
}

/// The step of an elementwise rule under cautious masking (f32 state): on
/// the fast path the kernel runs over chunks on the thread pool into a
/// recording sink ([`Record`]: each element's masked direction and
/// learning rate, and the kept count), then every chunk is stepped with
/// its parameter's scale; on the simple path, [`run_cautious`] (one
/// [`CautiousMask`] per parameter). Both give the same values.
pub fn run_elementwise_cautious<R: Elementwise>(
    rule: &R,
    info: &StepInfo,
    params: &mut [ParamMut<'_>],
    states: &mut StateStore<R::State>,
) -> Result<()> {
    if !info.exec.fused {
        return run_cautious(rule, info, params, states);
    }
    run_fused(rule, info, params, states, true)
}

/// Runs `rule`'s kernel on `chunk`, compiled for AVX2 when the CPU has it
/// (`R::kernel`, marked `#[inline(always)]`, is inlined there, so its loops
/// vectorize at 8 lanes).
#[inline(always)]
fn run_kernel<R: Elementwise>(rule: &R, scalars: &R::Scalars, chunk: Chunk<'_>) {
    simd!(avx2; fn<R: Elementwise>(rule: &R, scalars: &R::Scalars, chunk: Chunk<'_>) {
        rule.kernel(scalars, chunk, &mut Plain)
    })
}

/// [`run_kernel`] into the cautious mask's recording sink.
#[inline(always)]
fn run_kernel_recording<R: Elementwise>(
    rule: &R,
    scalars: &R::Scalars,
    chunk: Chunk<'_>,
    rec: &mut Record<'_>,
) {
    simd!(avx2; fn<R: Elementwise>(rule: &R, scalars: &R::Scalars, chunk: Chunk<'_>, rec: &mut Record<'_>) {
        rule.kernel(scalars, chunk, rec)
    })
}

/// One chunk of one parameter with everything the kernel needs.
pub(super) struct Piece<'a> {
    param: usize,
    pub(super) span: Span<'a>,
    pub(super) bufs: [Buf<'a>; MAX_BUFFERS],
    /// Under cautious masking: the chunk's recording sink.
    rec: Option<Record<'a>>,
}

fn run_piece<R: Elementwise>(rule: &R, scalars: &R::Scalars, nb: usize, piece: &mut Piece<'_>) {
    if !piece.bufs[..nb].iter().any(Buf::is_compressed) {
        let mut state: [&mut [f32]; MAX_BUFFERS] = Default::default();
        for (s, b) in state.iter_mut().zip(piece.bufs.iter_mut()) {
            if let Buf::F32(x) = b {
                *s = &mut **x;
            }
        }
        match &mut piece.rec {
            Some(rec) => run_kernel_recording(rule, scalars, piece.span.chunk(state), rec),
            None => run_kernel(rule, scalars, piece.span.chunk(state)),
        }
        return;
    }
    // The codecs and the kernel are inlined into the AVX2 build.
    simd!(avx512; fn<R: Elementwise>(rule: &R, scalars: &R::Scalars, nb: usize, piece: &mut Piece<'_>) {
        compressed_piece(rule, scalars, nb, piece)
    })
}

/// The second pass of the fused cautious mask: each parameter's scale
/// from the kept counts of its chunks, then every chunk's recorded steps
/// applied ([`apply_recorded`], vectorized), in parallel when `parallel`.
fn apply_cautious<R: Elementwise>(
    n_params: usize,
    pieces: &mut [Piece<'_>],
    parallel: bool,
) -> Result<()> {
    let mut kept = vec![0usize; n_params];
    let mut numel = vec![0usize; n_params];
    for piece in pieces.iter() {
        let Some(rec) = &piece.rec else { continue };
        if !rec.complete() {
            return Err(Error::Unsupported(format!(
                "{}: the kernel did not pass one step per element to the cautious mask",
                R::NAME
            )));
        }
        kept[piece.param] += rec.kept;
        numel[piece.param] += piece.span.value.len();
    }
    let scale: Vec<f32> = numel
        .iter()
        .zip(&kept)
        .map(|(&n, &k)| cautious_scale(n, k))
        .collect();
    let one = |piece: &mut Piece<'_>| {
        if let Some(rec) = piece.rec.take() {
            let (u, lr) = rec.into_slots();
            let (x, s) = (&mut *piece.span.value, scale[piece.param]);
            simd!(avx2; fn(x: &mut [f32], u: &[f32], lr: &[f32], s: f32) {
                apply_recorded(x, u, lr, s)
            })
        }
    };
    if parallel {
        pieces.par_iter_mut().with_min_len(4).for_each(one);
    } else {
        pieces.iter_mut().for_each(one);
    }
    Ok(())
}

/// Splits the first `n` elements (at most all) off `s`.
#[inline]
pub(super) fn split_front<'a, T>(s: &mut &'a mut [T], n: usize) -> &'a mut [T] {
    let all = std::mem::take(s);
    let n = n.min(all.len());
    let (a, b) = all.split_at_mut(n);
    *s = b;
    a
}

/// The fused elementwise driver (see the module docs).
pub fn run_elementwise<R: Elementwise>(
    rule: &R,
    info: &StepInfo,
    params: &mut [ParamMut<'_>],
    states: &mut StateStore<R::State>,
) -> Result<()> {
    if !info.exec.fused {
        return run_simple(rule, info, params, states);
    }
    run_fused(rule, info, params, states, false)
}

thread_local! {
    /// The fused cautious mask's step buffers (two values per element of
    /// the step's parameters), kept across steps by the stepping thread.
    static RECORDS: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The fused driver, plain or (`cautious`, f32 state) through the
/// recording sink and a second pass that applies the masked steps.
fn run_fused<R: Elementwise>(
    rule: &R,
    info: &StepInfo,
    params: &mut [ParamMut<'_>],
    states: &mut StateStore<R::State>,
    cautious: bool,
) -> Result<()> {
    let nb = sized_buffers::<R::State>();
    if nb > MAX_BUFFERS {
        return Err(Error::Unsupported(format!(
            "{}: {nb} state buffers, the elementwise driver handles at most {MAX_BUFFERS}",
            R::NAME
        )));
    }
    let mut sts = states_of(params, states)?;
    let compressed = info.exec.state_dtype != DType::F32;
    if cautious && compressed {
        return Err(Error::Unsupported(format!(
            "{}: cautious masking needs f32 state, not '{}'",
            R::NAME,
            info.exec.state_dtype.name()
        )));
    }
    let hashes: Vec<u64> = if compressed {
        params.iter().map(|p| quant::name_hash(p.name)).collect()
    } else {
        Vec::new()
    };
    let fresh: Vec<bool> = sts.iter().map(|st| st.step() == 0).collect();
    let mut scalars = Vec::with_capacity(params.len());
    for (i, (p, st)) in params.iter().zip(sts.iter_mut()).enumerate() {
        if compressed {
            convert_before(info, hashes[i], &mut sized_bufs(&mut **st, nb));
        }
        scalars.push(rule.prepare(info, p, st)?);
    }
    if !compressed && fresh.iter().filter(|&&f| f).nth(1).is_some() {
        relocate_fresh(&mut sts, &fresh, nb);
    }
    let mut bufs: Vec<&mut StateTensor> = Vec::with_capacity(params.len() * nb);
    let mut one = Vec::with_capacity(MAX_BUFFERS);
    for st in sts.iter_mut() {
        st.buffers_mut(&mut one);
        one.truncate(nb);
        bufs.append(&mut one);
    }
    if bufs.len() != params.len() * nb {
        return Err(Error::Unsupported(format!(
            "{}: the state type does not list its buffers (declare it with param_state!)",
            R::NAME
        )));
    }
    for (p, b) in params.iter().zip(bufs.chunks(nb.max(1))) {
        for t in b.iter().take(nb) {
            if t.is_allocated() && t.len() != p.numel() {
                return Err(Error::Unsupported(format!(
                    "{}: state buffer of {} values for parameter '{}' of {} (elementwise rules keep full-size buffers)",
                    R::NAME,
                    t.len(),
                    p.name,
                    p.numel()
                )));
            }
        }
    }

    // Work list: chunks of at most CHUNK elements, in parameter order.
    let total: usize = params.iter().map(|p| p.numel()).sum();
    let n_params = params.len();
    let mut records = if cautious {
        RECORDS.take()
    } else {
        Vec::new()
    };
    if cautious {
        let need = total.checked_mul(2).ok_or_else(|| {
            Error::Unsupported(format!("{}: {total} elements under cautious masking", R::NAME))
        })?;
        if records.len() < need {
            records.resize(need, 0.0);
        }
    }
    let (mut rec_u, mut rec_lr) = records.split_at_mut(if cautious { total } else { 0 });
    let mut pieces: Vec<Piece<'_>> = Vec::with_capacity(total / CHUNK + params.len() + 1);
    let mut buf_iter = bufs.iter_mut();
    for (i, p) in params.iter_mut().enumerate() {
        let mut rest: [Buf<'_>; MAX_BUFFERS] = Default::default();
        for (b, slot) in rest.iter_mut().enumerate().take(nb) {
            let Some(t) = buf_iter.next() else { break };
            *slot = Buf::of(t, info, || hashes[i], b);
        }
        let mut value: &mut [f32] = &mut *p.value;
        let mut grad: &[f32] = &*p.grad;
        let mut hessian = p.hessian;
        let mut offset = 0;
        while !value.is_empty() {
            let n = value.len().min(CHUNK);
            let v = split_front(&mut value, n);
            let (g, g_rest) = grad.split_at(n);
            grad = g_rest;
            let h = hessian.map(|h| {
                let (a, b) = h.split_at(n);
                hessian = Some(b);
                a
            });
            let mut bs: [Buf<'_>; MAX_BUFFERS] = Default::default();
            for (dst, src) in bs.iter_mut().zip(rest.iter_mut()) {
                *dst = src.take(n);
            }
            let rec = cautious.then(|| {
                Record::new(split_front(&mut rec_u, n), split_front(&mut rec_lr, n))
            });
            pieces.push(Piece {
                param: i,
                span: Span {
                    offset,
                    value: v,
                    grad: g,
                    hessian: h,
                },
                bufs: bs,
                rec,
            });
            offset += n;
        }
    }

    // Tasks: runs of consecutive pieces of at least `target` elements (the
    // last may be smaller): about 16 tasks per thread, each of 1 to 4
    // chunks, so that small tensors are batched and threads can balance.
    let threads = info.exec.resolved_threads();
    let target = (total / (threads.max(1) * 16)).clamp(CHUNK, 4 * CHUNK);
    let mut tasks: Vec<&mut [Piece<'_>]> = Vec::with_capacity(total / target + 2);
    {
        let mut rest: &mut [Piece<'_>] = &mut pieces;
        while !rest.is_empty() {
            let mut k = 0;
            let mut acc = 0;
            while k < rest.len() && acc < target {
                acc += rest[k].span.value.len();
                k += 1;
            }
            tasks.push(split_front(&mut rest, k));
        }
    }
    let work = |task: &mut [Piece<'_>]| {
        for piece in task.iter_mut() {
            run_piece(rule, &scalars[piece.param], nb, piece);
        }
    };
    let parallel = threads > 1 && tasks.len() > 1;
    if parallel {
        tasks.into_par_iter().with_max_len(1).for_each(work);
    } else {
        tasks.into_iter().for_each(work);
    }
    if cautious {
        let applied = apply_cautious::<R>(n_params, &mut pieces, parallel);
        drop(pieces);
        RECORDS.set(records);
        return applied;
    }
    drop(pieces);

    if compressed {
        for (i, b) in bufs.chunks_mut(nb.max(1)).enumerate() {
            convert_after(info, hashes[i], b);
        }
    }
    Ok(())
}
