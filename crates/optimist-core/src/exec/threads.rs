//! Thread pools and the per-parameter loops: the pool of a step
//! ([`run_step`]), parameters in parallel ([`for_each_param`],
//! [`run_per_param`]) and the blocked passes of LAMB and Adafactor
//! ([`run_blocked`], [`Blocks`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::rule::{ExecOptions, StepInfo, UpdateRule};
use crate::state::{ParamState, StateStore};
use crate::tensor::{DType, ParamMut};

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

/// An `Unsupported` error `"<rule>: <needs> f32 state"` unless the step
/// keeps its state in f32 (`needs` says which options need it, e.g.
/// `"cautious=true needs"`).
pub fn need_f32_state<R: UpdateRule>(info: &StepInfo, needs: &str) -> Result<()> {
    if info.exec.state_dtype != DType::F32 {
        return Err(Error::Unsupported(format!("{}: {needs} f32 state", R::NAME)));
    }
    Ok(())
}

/// [`run_per_param`] for a configuration that needs f32 state
/// ([`need_f32_state`]).
pub fn run_per_param_f32<R: UpdateRule>(
    rule: &R,
    info: &StepInfo,
    params: &mut [ParamMut<'_>],
    states: &mut StateStore<R::State>,
    needs: &str,
) -> Result<()> {
    need_f32_state::<R>(info, needs)?;
    run_per_param(rule, info, params, states)
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
    S: ParamState,
    F: Fn(&mut ParamMut<'_>, &mut S) -> Result<()> + Sync,
{
    if !parallel || params.len() <= 1 {
        for p in params.iter_mut() {
            let st = states.get(p.name, p.numel())?;
            f(p, st)?;
        }
        return Ok(());
    }
    let sts = states_of(params, states)?;
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

/// The states of `params`, created where missing (one lookup for all).
pub(super) fn states_of<'s, S: ParamState>(
    params: &[ParamMut<'_>],
    states: &'s mut StateStore<S>,
) -> Result<Vec<&'s mut S>> {
    let keys: Vec<(&str, usize)> = params.iter().map(|p| (p.name, p.numel())).collect();
    states.get_many(&keys)
}
