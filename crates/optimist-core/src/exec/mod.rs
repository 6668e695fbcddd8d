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
//! * **Cautious masking** of an elementwise rule runs fused
//!   ([`run_elementwise_cautious`]): the kernel over chunks on the thread
//!   pool into a recording sink (each element's masked direction and
//!   learning rate, in the same vectorized loop as the plain step; see
//!   [`crate::rule::Apply::record`]), then a second vectorized pass applies
//!   them with each parameter's scale. Other rules run
//!   [`UpdateRule::update_with`] through one [`CautiousMask`] per parameter
//!   ([`run_cautious`]), which is also the simple path's reference.
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
//! **Files.** `threads` (thread pools, the per-parameter and blocked
//! loops), `dispatch` (`simd!`, the SIMD dispatch),
//! `elementwise` (the fused driver and the paths derived from a kernel),
//! `compressed` (bf16/q8 state around the kernel), `layout` (placement of
//! new state buffers), `cautious` (the mask and its driver). Everything is
//! used through the paths re-exported here.
//!
//! [`Engine`]: crate::Engine

mod cautious;
mod compressed;
mod dispatch;
mod elementwise;
mod layout;
mod threads;

#[cfg(target_arch = "x86_64")]
pub use crate::cpu::has_avx512;
pub use crate::cpu::{default_threads, set_num_threads};
#[cfg(doc)]
use crate::rule::{Apply, UpdateRule};
pub use crate::rule::{Chunk, Elementwise, ExecOptions, CHUNK, DEFAULT_Q8_MIN_NUMEL, MAX_BUFFERS};

pub use cautious::{cautious_per_param, cautious_scale, run_cautious, CautiousMask};
pub(crate) use dispatch::simd;
pub use elementwise::{
    kernel_whole_param, run_elementwise, run_elementwise_cautious, run_elementwise_rule,
    update_whole_param,
};
pub use threads::{
    for_each_param, need_f32_state, pool, run_blocked, run_on, run_per_param, run_per_param_f32, run_step, Blocks,
};
