//! How update rules are executed: threads, the drivers (fused
//! elementwise, per parameter, cautious mask), SIMD dispatch and
//! compressed state. The [`Engine`] picks the driver; the rule types are in
//! [`crate::rule`] and are re-exported here under their old paths.
//!
//! An optimizer step reads and writes every parameter, its gradient and its
//! state once: it is bound by memory bandwidth. The [`Engine`] therefore
//! runs a step as follows.
//!
//! * **Elementwise rules** (Adam, SGD, Lion, ...) implement [`Elementwise`]:
//!   [`Elementwise::prepare`] computes the per-step scalars of one
//!   parameter once (bias corrections, decay factors; in f64, cast to f32)
//!   and allocates its state; [`Elementwise::kernel`] updates one chunk of
//!   the parameter, its gradient and its state buffers in a single pass. The
//!   driver ([`run_elementwise`]) splits every parameter into chunks of at
//!   most [`CHUNK`] elements, batches consecutive chunks (of one large or
//!   of many small parameters) into tasks of 1 to 4 chunks' worth of
//!   elements (so a thousand small tensors cost about what one large one
//!   does), and runs the tasks on a thread pool. Each element is
//!   computed by the same arithmetic whatever the chunking, so results are
//!   bit-identical for every thread count. The rule writes only `prepare`
//!   and `kernel`; one line in its `impl UpdateRule`,
//!   [`elementwise_rule!`](crate::elementwise_rule), derives the rest from
//!   the kernel: the simple whole-tensor path (the kernel over the whole
//!   parameter as one chunk), the cautious path (the kernel through the
//!   mask) and the fused driver.
//! * **Other rules** (norm-based, matrix-based) keep
//!   [`UpdateRule::update`]: when the rule's [`UpdateRule::update_all`]
//!   returns `None` (the default), the engine runs [`run_per_param`], which
//!   updates the parameters in parallel, one task per parameter, also
//!   independent of the thread count.
//! * **Cautious masking** runs [`UpdateRule::update_with`] through one
//!   [`CautiousMask`] per parameter ([`run_cautious`]); for elementwise
//!   rules that is their kernel with the mask as its [`Apply`] sink.
//! * **The simple path** (`ExecOptions { fused: false, .. }`) calls
//!   [`UpdateRule::update`] for each parameter in turn, on one thread: it is
//!   the reference the fast path is tested against.
//!
//! **Compressed state.** With `state_dtype` bf16 or q8, the driver keeps each
//! elementwise rule's buffers compressed ([`crate::quant`]); for each chunk
//! it decodes the buffers into f32 scratch space, runs the rule's kernel and
//! encodes the result (decode → kernel → encode), so no rule is rewritten
//! for it. The simple path decodes whole buffers, calls `update` and encodes
//! them with the same keys and blocks, so the two paths agree bit for bit
//! here too. Buffers of fewer than `q8_min_numel` elements stay f32 under q8.
//!
//! **Threads.** Each engine runs on a pool of `threads` threads; 0 (the
//! default) means the process-wide count: [`set_num_threads`], else the
//! `OPTIMIST_NUM_THREADS` environment variable, else `RAYON_NUM_THREADS`,
//! else the number of CPUs.
//!
//! **SIMD.** Kernels are plain loops over equal-length slices; on x86-64
//! the driver calls them from a function compiled for AVX2 (when the CPU
//! has it), so the loops are vectorized at 8 lanes (SSE2, 4 lanes,
//! otherwise). IEEE arithmetic gives the
//! same results at every width (Rust never contracts `a * b + c` into an
//! FMA), so this does not change any value.
//!
//! **Many small parameters.** On a parameter's first step its `prepare`
//! allocates its buffers one parameter after the other (m0 v0 m1 v1 ...);
//! for parameters of up to 2^20 elements the driver then copies them into
//! new allocations made buffer by buffer (m0 m1 ... v0 v1 ...) and frees
//! the first ones, so that each buffer of a run of small parameters tends
//! to lie in one stretch of memory (allocators hand out consecutive
//! allocations in order). Values are unchanged; a thousand tensors of 10^4
//! elements measured about 4% faster per step (docs/performance.md).
//!
//! [`Engine`]: crate::Engine

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::quant;
use crate::rule::{Apply, Plain, StepInfo, UpdateRule};
use crate::state::{ParamState, StateStore};
use crate::tensor::{DType, ParamMut, StateTensor, Storage};

pub use crate::cpu::{default_threads, set_num_threads};
#[cfg(target_arch = "x86_64")]
pub use crate::cpu::has_avx512;
pub use crate::rule::{Chunk, Elementwise, ExecOptions, CHUNK, DEFAULT_Q8_MIN_NUMEL, MAX_BUFFERS};

/// A shared pool of `threads` threads (`None` for one thread: run inline).
pub fn pool(threads: usize) -> Result<Option<Arc<rayon::ThreadPool>>> {
    if threads <= 1 {
        return Ok(None);
    }
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let pools = POOLS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut pools = pools
        .lock()
        .map_err(|_| Error::Input("thread pool registry poisoned".into()))?;
    if let Some(p) = pools.get(&threads) {
        return Ok(Some(p.clone()));
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("optimist-{i}"))
        .build()
        .map_err(|e| Error::Input(format!("cannot start {threads} threads: {e}")))?;
    let p = Arc::new(p);
    pools.insert(threads, p.clone());
    Ok(Some(p))
}

/// Runs `f` on the pool for `threads` threads (inline for one).
pub fn run_on<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> Result<T> {
    Ok(match pool(threads)? {
        Some(p) => p.install(f),
        None => f(),
    })
}

/// Runs a function body compiled for the best instruction set the CPU has:
/// `simd!(avx2; fn(args) -> T { body })` runs `body` from a function
/// compiled for AVX2 and FMA when the CPU has them, else from the portable
/// build; `simd!(avx512; ...)` tries AVX-512F first. The body sees only its
/// arguments (it becomes a function of its own; generic parameters are
/// declared as `fn<R: Bound>(...)`), which are passed under the same names
/// from the caller's scope. Mark helpers the body calls
/// `#[inline(always)]`: only inlined code gets the wider instructions.
/// Values do not depend on the build: Rust never contracts `a * b + c`
/// into an FMA and IEEE arithmetic rounds the same at every width. This is
/// the crate's one SIMD dispatch for auto-vectorized loops.
macro_rules! simd {
    (avx2; $($f:tt)*) => { $crate::exec::simd!(@build [avx2] $($f)*) };
    (avx512; $($f:tt)*) => { $crate::exec::simd!(@build [avx512] $($f)*) };
    (@build [$level:ident] fn $(<$($g:ident : $b:path),* $(,)?>)?
        ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {{
        #[inline(always)]
        fn portable $(<$($g: $b),*>)? ($($arg: $ty),*) $(-> $ret)? $body
        #[cfg(target_arch = "x86_64")]
        let out = {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2 $(<$($g: $b),*>)? ($($arg: $ty),*) $(-> $ret)? {
                portable($($arg),*)
            }
            $crate::exec::simd!(@dispatch [$level] $(<$($g: $b),*>)? ($($arg: $ty),*) $(-> $ret)?)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let out = portable($($arg),*);
        out
    }};
    (@dispatch [avx2] $(<$($g:ident : $b:path),*>)? ($($arg:ident : $ty:ty),*) $(-> $ret:ty)?) => {
        if $crate::cpu::has_avx2() {
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
            unsafe { avx2($($arg),*) }
        } else {
            portable($($arg),*)
        }
    };
    (@dispatch [avx512] $(<$($g:ident : $b:path),*>)? ($($arg:ident : $ty:ty),*) $(-> $ret:ty)?) => {{
        #[target_feature(enable = "avx2,fma,avx512f")]
        unsafe fn avx512 $(<$($g: $b),*>)? ($($arg: $ty),*) $(-> $ret)? {
            portable($($arg),*)
        }
        if $crate::cpu::has_avx512() {
            // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (checked at run time).
            unsafe { avx512($($arg),*) }
        } else if $crate::cpu::has_avx2() {
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
            unsafe { avx2($($arg),*) }
        } else {
            portable($($arg),*)
        }
    }};
}
pub(crate) use simd;

/// Runs `rule`'s kernel on `chunk`, compiled for AVX2 when the CPU has it
/// (`R::kernel`, marked `#[inline(always)]`, is inlined there, so its loops
/// vectorize at 8 lanes).
#[inline(always)]
fn run_kernel<R: Elementwise>(rule: &R, scalars: &R::Scalars, chunk: Chunk<'_>) {
    simd!(avx2; fn<R: Elementwise>(rule: &R, scalars: &R::Scalars, chunk: Chunk<'_>) {
        rule.kernel(scalars, chunk, &mut Plain)
    })
}

/// Runs `f` on the thread pool of a step with options `exec`: the pool of
/// its thread count on the fast path, inline on one thread on the simple
/// path (`fused: false`).
pub fn run_step<T: Send>(exec: &ExecOptions, f: impl FnOnce() -> T + Send) -> Result<T> {
    let threads = if exec.fused {
        exec.resolved_threads()
    } else {
        1
    };
    run_on(threads, f)
}

/// Implements the whole [`UpdateRule`] side of an elementwise rule from its
/// [`Elementwise::kernel`]: `update` (the simple path: the kernel over the
/// whole parameter as one chunk, through the cautious mask when
/// [`Elementwise::cautious`]), `update_with` (the kernel through any
/// [`Apply`] sink, so the cautious wrapper composes), and `update_all` (the
/// fused driver, [`run_elementwise_rule`]). Use inside
/// `impl UpdateRule for X { type State = ...; elementwise_rule!(); }`.
///
/// `elementwise_rule!(direct)` is for rules whose step is not one
/// `x - lr * u` (NAdam adds two terms, RAdam switches form): their kernel
/// writes `x` itself and ignores the sink, so they do not expose an update
/// direction and the cautious wrapper refuses them; `update` and the fused
/// driver still run the one kernel.
#[macro_export]
macro_rules! elementwise_rule {
    () => {
        const ELEMENTWISE: bool = true;
        const EXPOSES_UPDATE: bool = true;

        fn update(
            &self,
            info: &$crate::rule::StepInfo,
            param: &mut $crate::tensor::ParamMut<'_>,
            state: &mut Self::State,
        ) -> $crate::error::Result<()> {
            $crate::exec::update_whole_param(self, info, param, state)
        }

        fn update_with<A: $crate::rule::Apply>(
            &self,
            info: &$crate::rule::StepInfo,
            param: &mut $crate::tensor::ParamMut<'_>,
            state: &mut Self::State,
            apply: &mut A,
        ) -> $crate::error::Result<()> {
            $crate::exec::kernel_whole_param(self, info, param, state, apply)
        }

        fn update_all(
            &self,
            info: &$crate::rule::StepInfo,
            params: &mut [$crate::tensor::ParamMut<'_>],
            states: &mut $crate::state::StateStore<Self::State>,
        ) -> Option<$crate::error::Result<()>> {
            Some($crate::exec::run_elementwise_rule(self, info, params, states))
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
            $crate::exec::kernel_whole_param(self, info, param, state, &mut $crate::rule::Plain)
        }

        fn update_all(
            &self,
            info: &$crate::rule::StepInfo,
            params: &mut [$crate::tensor::ParamMut<'_>],
            states: &mut $crate::state::StateStore<Self::State>,
        ) -> Option<$crate::error::Result<()>> {
            Some($crate::exec::run_elementwise(self, info, params, states))
        }
    };
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
    let nb = sized_buffers::<R::State>();
    let n = p.numel();
    let mut bufs = Vec::with_capacity(MAX_BUFFERS);
    st.buffers_mut(&mut bufs);
    bufs.truncate(nb.min(MAX_BUFFERS));
    let mut state: [&mut [f32]; MAX_BUFFERS] = Default::default();
    for (slot, t) in state.iter_mut().zip(bufs) {
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
    let chunk = Chunk {
        offset: 0,
        value: &mut *p.value,
        grad: &*p.grad,
        hessian: p.hessian,
        state,
    };
    rule.kernel(&scalars, chunk, apply);
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
    if info.exec.state_dtype != DType::F32 {
        return Err(Error::Unsupported(format!(
            "{}: cautious=true needs f32 state",
            R::NAME
        )));
    }
    run_cautious(rule, info, params, states)
}

/// The default [`UpdateRule::update_all`]: [`UpdateRule::update`] for each
/// parameter, in parallel over parameters when there are threads to use.
pub fn run_per_param<R: UpdateRule>(
    rule: &R,
    info: &StepInfo,
    params: &mut [ParamMut<'_>],
    states: &mut StateStore<R::State>,
) -> Result<()> {
    let parallel = info.exec.fused && info.exec.resolved_threads() > 1;
    for_each_param(parallel, params, states, |p, st| rule.update(info, p, st))
}

/// `f(param, state)` for every parameter: in parallel over the parameters
/// on the current thread pool when `parallel` (and there are several), in
/// order otherwise. Stops at (resp. reports) the first error.
pub fn for_each_param<S, F>(
    parallel: bool,
    params: &mut [ParamMut<'_>],
    states: &mut StateStore<S>,
    f: F,
) -> Result<()>
where
    S: crate::state::ParamState,
    F: Fn(&mut ParamMut<'_>, &mut S) -> Result<()> + Sync,
{
    if !parallel || params.len() <= 1 {
        for p in params.iter_mut() {
            let st = states.get(p.name, p.numel())?;
            f(p, st)?;
        }
        return Ok(());
    }
    let keys: Vec<(&str, usize)> = params.iter().map(|p| (p.name, p.numel())).collect();
    let sts = states.get_many(&keys)?;
    let results: Vec<Result<()>> = params
        .par_iter_mut()
        .zip(sts)
        .with_max_len(1)
        .map(|(p, st)| f(p, st))
        .collect();
    results.into_iter().collect()
}

/// How a rule with passes of its own over a parameter (LAMB, Adafactor)
/// runs the fixed blocks of a pass: on the current thread pool (fast path)
/// or in order on the calling thread (simple path). The blocks and the
/// order in which their results are returned do not depend on it, so
/// neither do the values.
#[derive(Debug, Clone, Copy)]
pub struct Blocks {
    parallel: bool,
}

impl Blocks {
    /// In order on the calling thread.
    pub const SEQUENTIAL: Blocks = Blocks { parallel: false };

    /// The blocks of a step run with `exec` inside [`run_step`]: on the
    /// thread pool on the fast path, in order on the simple path.
    pub fn for_exec(exec: &ExecOptions) -> Blocks {
        Blocks {
            parallel: exec.fused && rayon::current_thread_index().is_some(),
        }
    }

    /// `f` over `items`, results in the items' order.
    pub fn map<T, U, I, F>(self, items: I, f: F) -> Vec<U>
    where
        I: IntoIterator<Item = T>,
        T: Send,
        U: Send,
        F: Fn(T) -> U + Sync + Send,
    {
        if self.parallel {
            let items: Vec<T> = items.into_iter().collect();
            if items.len() > 1 {
                return items.into_par_iter().with_max_len(1).map(f).collect();
            }
            return items.into_iter().map(f).collect();
        }
        items.into_iter().map(f).collect()
    }
}

/// The per-parameter loop of rules with passes of their own:
/// `f(param, state, blocks)` for every parameter, the parameters (and the
/// blocks of each, through `blocks`) in parallel on the current thread
/// pool on the fast path, one after the other on the simple path.
pub fn run_blocked<S, F>(
    info: &StepInfo,
    params: &mut [ParamMut<'_>],
    states: &mut StateStore<S>,
    f: F,
) -> Result<()>
where
    S: ParamState,
    F: Fn(&mut ParamMut<'_>, &mut S, Blocks) -> Result<()> + Sync,
{
    let blocks = Blocks::for_exec(&info.exec);
    for_each_param(blocks.parallel, params, states, |p, st| f(p, st, blocks))
}

// ---- Cautious masking: the mask sink and its per-parameter driver ----

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

/// Random-stream phases of the compressed state.
const PHASE_PRE: u64 = 1;
const PHASE_POST: u64 = 2;

fn key(info: &StepInfo, param_hash: u64, buffer: usize, phase: u64) -> u64 {
    quant::stream_key(info.exec.seed, param_hash, buffer, info.step, phase)
}

/// Converts allocated buffers whose storage differs from the target (loaded
/// from a checkpoint, or the option changed) before the step.
fn convert_before(info: &StepInfo, param_hash: u64, bufs: &mut [&mut StateTensor]) {
    for (b, t) in bufs.iter_mut().enumerate() {
        if !t.is_allocated() {
            continue;
        }
        let target = info.exec.target_dtype(t.len());
        if t.dtype() != target || target == DType::Q8 {
            t.compress(
                target,
                info.exec.q8_block,
                key(info, param_hash, b, PHASE_PRE),
                info.exec.q8_stochastic,
            );
        }
    }
}

/// Encodes f32 buffers that should be compressed (new this step) after it.
fn convert_after(info: &StepInfo, param_hash: u64, bufs: &mut [&mut StateTensor]) {
    for (b, t) in bufs.iter_mut().enumerate() {
        if t.is_allocated() && t.dtype() == DType::F32 {
            let target = info.exec.target_dtype(t.len());
            if target != DType::F32 {
                t.compress(
                    target,
                    info.exec.q8_block,
                    key(info, param_hash, b, PHASE_POST),
                    info.exec.q8_stochastic,
                );
            }
        }
    }
}

/// Number of parameter-sized buffers of a state: those the kernel sees and
/// that may be compressed. Buffers listed in [`ParamState::UNSIZED`] (which
/// `param_state!` puts last) stay f32 and are the business of `prepare`.
fn sized_buffers<S: ParamState>() -> usize {
    S::BUFFERS.len().saturating_sub(S::UNSIZED.len())
}

/// The simple path of an elementwise rule: [`UpdateRule::update`] on each
/// parameter in turn, with compressed buffers decoded whole before and
/// encoded after.
fn run_simple<R: UpdateRule>(
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
        let mut bufs = Vec::new();
        st.buffers_mut(&mut bufs);
        bufs.truncate(nb);
        convert_before(info, h, &mut bufs);
        for t in bufs.iter_mut() {
            t.decompress();
        }
        rule.update(info, p, st)?;
        let mut bufs = Vec::new();
        st.buffers_mut(&mut bufs);
        bufs.truncate(nb);
        for (b, t) in bufs.iter_mut().enumerate() {
            if t.is_allocated() {
                let target = info.exec.target_dtype(t.len());
                t.compress(
                    target,
                    info.exec.q8_block,
                    key(info, h, b, PHASE_POST),
                    info.exec.q8_stochastic,
                );
            }
        }
    }
    Ok(())
}

/// A buffer's remaining storage, or one chunk of it.
#[derive(Debug, Default)]
enum Buf<'a> {
    #[default]
    Empty,
    F32(&'a mut [f32]),
    Bf16(&'a mut [u16], u64),
    Q8(&'a mut [u8], &'a mut [f32], usize, Option<u64>),
}

fn split_front<'a, T>(s: &mut &'a mut [T], n: usize) -> &'a mut [T] {
    let all = std::mem::take(s);
    let n = n.min(all.len());
    let (a, b) = all.split_at_mut(n);
    *s = b;
    a
}

impl<'a> Buf<'a> {
    /// Splits the first `n` elements off.
    fn take(&mut self, n: usize) -> Buf<'a> {
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

    fn is_compressed(&self) -> bool {
        matches!(self, Buf::Bf16(..) | Buf::Q8(..))
    }
}

/// One chunk of one parameter with everything the kernel needs.
struct Piece<'a> {
    param: usize,
    offset: usize,
    value: &'a mut [f32],
    grad: &'a [f32],
    hessian: Option<&'a [f32]>,
    bufs: [Buf<'a>; MAX_BUFFERS],
}

thread_local! {
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

fn run_piece<R: Elementwise>(rule: &R, scalars: &R::Scalars, nb: usize, piece: &mut Piece<'_>) {
    if !piece.bufs[..nb].iter().any(Buf::is_compressed) {
        let mut state: [&mut [f32]; MAX_BUFFERS] = Default::default();
        for (s, b) in state.iter_mut().zip(piece.bufs.iter_mut()) {
            if let Buf::F32(x) = b {
                *s = &mut **x;
            }
        }
        let chunk = Chunk {
            offset: piece.offset,
            value: &mut *piece.value,
            grad: piece.grad,
            hessian: piece.hessian,
            state,
        };
        run_kernel(rule, scalars, chunk);
        return;
    }
    // The codecs and the kernel are inlined into the AVX2 build.
    simd!(avx2; fn<R: Elementwise>(rule: &R, scalars: &R::Scalars, nb: usize, piece: &mut Piece<'_>) {
        compressed_piece(rule, scalars, nb, piece)
    })
}

/// Decode the compressed buffers of a piece into scratch space, run the
/// kernel, encode them back.
#[inline(always)]
fn compressed_piece<R: Elementwise>(
    rule: &R,
    scalars: &R::Scalars,
    nb: usize,
    piece: &mut Piece<'_>,
) {
    let len = piece.value.len();
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
            let chunk = Chunk {
                offset: piece.offset,
                value: &mut *piece.value,
                grad: piece.grad,
                hessian: piece.hessian,
                state,
            };
            rule.kernel(scalars, chunk, &mut Plain);
        }
        for (b, tmp) in piece.bufs.iter_mut().zip(scratch.chunks(len)) {
            match b {
                Buf::Bf16(x, k) => quant::bf16_encode(tmp, x, *k, piece.offset),
                Buf::Q8(c, sc, block, k) => {
                    let rounding = match k {
                        Some(key) => quant::Rounding::Stochastic {
                            key: *key,
                            offset: piece.offset,
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

/// Parameters up to this many elements have their new state buffers
/// moved next to the same buffer of the other parameters (see
/// [`relocate_fresh`]).
const RELOCATE_MAX: usize = 1 << 20;

/// Moves the f32 buffers that `prepare` allocated on the first step of
/// small parameters (`fresh`) into new allocations made buffer by buffer
/// (every parameter's first buffer, then every second buffer, ...), values
/// copied, before the old ones are freed. Allocated in that order, each
/// buffer of a run of small parameters tends to lie in one stretch of
/// memory instead of alternating with the others (m0 v0 m1 v1 ...), which
/// measured faster for a thousand small tensors. Values are not changed;
/// later steps reuse the buffers.
fn relocate_fresh<S: ParamState>(sts: &mut [&mut S], fresh: &[bool], nb: usize) {
    let mut moved: Vec<(usize, usize, Vec<f32>)> = Vec::new();
    for b in 0..nb {
        for (i, st) in sts.iter_mut().enumerate() {
            if !fresh[i] {
                continue;
            }
            let mut one = Vec::with_capacity(MAX_BUFFERS);
            st.buffers_mut(&mut one);
            if let Some(t) = one.get_mut(b) {
                if let Storage::F32(v) = t.storage_mut() {
                    if !v.is_empty() && v.len() <= RELOCATE_MAX {
                        moved.push((i, b, v.clone()));
                    }
                }
            }
        }
    }
    for (i, b, v) in moved {
        let mut one = Vec::with_capacity(MAX_BUFFERS);
        sts[i].buffers_mut(&mut one);
        if let Some(t) = one.get_mut(b) {
            if let Storage::F32(old) = t.storage_mut() {
                *old = v;
            }
        }
    }
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
    let nb = sized_buffers::<R::State>();
    if nb > MAX_BUFFERS {
        return Err(Error::Unsupported(format!(
            "{}: {nb} state buffers, the elementwise driver handles at most {MAX_BUFFERS}",
            R::NAME
        )));
    }
    let keys: Vec<(&str, usize)> = params.iter().map(|p| (p.name, p.numel())).collect();
    let mut sts = states.get_many(&keys)?;
    let compressed = info.exec.state_dtype != DType::F32;
    let hashes: Vec<u64> = if compressed {
        params.iter().map(|p| quant::name_hash(p.name)).collect()
    } else {
        Vec::new()
    };
    let fresh: Vec<bool> = sts.iter().map(|st| st.step() == 0).collect();
    let mut scalars = Vec::with_capacity(params.len());
    for (i, (p, st)) in params.iter().zip(sts.iter_mut()).enumerate() {
        if compressed {
            let mut bufs = Vec::with_capacity(nb);
            st.buffers_mut(&mut bufs);
            bufs.truncate(nb);
            convert_before(info, hashes[i], &mut bufs);
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
    let mut pieces: Vec<Piece<'_>> = Vec::with_capacity(total / CHUNK + params.len() + 1);
    let mut buf_iter = bufs.iter_mut();
    for (i, p) in params.iter_mut().enumerate() {
        let mut rest: [Buf<'_>; MAX_BUFFERS] = Default::default();
        for (b, slot) in rest.iter_mut().enumerate().take(nb) {
            let Some(t) = buf_iter.next() else { break };
            *slot = match t.storage_mut() {
                Storage::F32(v) if v.is_empty() => Buf::Empty,
                Storage::F32(v) => Buf::F32(v.as_mut_slice()),
                Storage::Borrowed(b) if b.is_empty() => Buf::Empty,
                Storage::Borrowed(b) => Buf::F32(b.as_mut_slice()),
                Storage::Bf16(v) => {
                    Buf::Bf16(v.as_mut_slice(), key(info, hashes[i], b, PHASE_POST))
                }
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
                        .then(|| key(info, hashes[i], b, PHASE_POST)),
                ),
            };
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
            pieces.push(Piece {
                param: i,
                offset,
                value: v,
                grad: g,
                hessian: h,
                bufs: bs,
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
                acc += rest[k].value.len();
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
    if threads <= 1 || tasks.len() <= 1 {
        tasks.into_iter().for_each(work);
    } else {
        tasks.into_par_iter().with_max_len(1).for_each(work);
    }
    drop(pieces);

    if compressed {
        for (i, b) in bufs.chunks_mut(nb.max(1)).enumerate() {
            convert_after(info, hashes[i], b);
        }
    }
    Ok(())
}

#[cfg(test)]
mod cautious_tests {
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
