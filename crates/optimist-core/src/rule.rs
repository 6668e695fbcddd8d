//! What an update rule is: its typed configuration ([`OptimizerConfig`]),
//! the per-step information it gets ([`StepInfo`], with the execution
//! options), the per-parameter rule ([`UpdateRule`]), the sink through which
//! it applies each element's step ([`Apply`], [`Plain`]) and the chunk
//! kernel of elementwise rules ([`Elementwise`], [`Chunk`]).
//!
//! Nothing here runs a step: the drivers are in [`crate::exec`] and the
//! [`Engine`](crate::Engine) picks one for each rule.

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::quant;
use crate::state::{ParamState, StateStore};
use crate::tensor::{DType, ParamMut};

/// Elements per chunk of work (a multiple of every allowed 8-bit block size).
pub const CHUNK: usize = 16384;

/// Most state buffers an elementwise rule may have.
pub const MAX_BUFFERS: usize = 8;

/// Default of [`ExecOptions::q8_min_numel`]: smaller buffers stay f32 (as
/// bitsandbytes keeps tensors under 4096 elements in 32 bits).
pub const DEFAULT_Q8_MIN_NUMEL: usize = 4096;

/// How an engine executes its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecOptions {
    /// Threads; 0 = the process-wide default (see the module docs).
    pub threads: usize,
    /// Fast path (true, default) or the simple per-parameter reference path.
    pub fused: bool,
    /// Storage of state buffers of elementwise rules: f32 (default), bf16
    /// (stochastic rounding) or q8 (8-bit block-wise dynamic quantization).
    pub state_dtype: DType,
    /// Values per 8-bit block: a power of two from 64 to [`CHUNK`] (default 256).
    pub q8_block: usize,
    /// Buffers with fewer elements stay f32 under q8 (default 4096).
    pub q8_min_numel: usize,
    /// Round 8-bit codes stochastically (unbiased; default) instead of to
    /// the nearest code as bitsandbytes' optimizers do.
    pub q8_stochastic: bool,
    /// Seed of the stochastic rounding streams.
    pub seed: u64,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            threads: 0,
            fused: true,
            state_dtype: DType::F32,
            q8_block: quant::DEFAULT_Q8_BLOCK,
            q8_min_numel: DEFAULT_Q8_MIN_NUMEL,
            q8_stochastic: true,
            seed: 0,
        }
    }
}

impl ExecOptions {
    /// Checks the options; `elementwise` says whether the rule has a kernel
    /// (compressed state needs one).
    pub fn validate(&self, optimizer: &str, elementwise: bool) -> Result<()> {
        if self.threads > 4096 {
            return Err(Error::Input(format!(
                "threads: {} is not a sensible thread count",
                self.threads
            )));
        }
        if !(self.q8_block.is_power_of_two() && (64..=CHUNK).contains(&self.q8_block)) {
            return Err(Error::Input(format!(
                "q8_block: {} must be a power of two from 64 to {CHUNK}",
                self.q8_block
            )));
        }
        if self.state_dtype != DType::F32 && !elementwise {
            return Err(Error::Unsupported(format!(
                "state_dtype '{}': optimizer '{optimizer}' has no elementwise kernel, so its state stays f32",
                self.state_dtype.name()
            )));
        }
        Ok(())
    }

    /// The thread count this resolves to (at least 1).
    pub fn resolved_threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            crate::cpu::default_threads()
        }
    }

    /// Storage type for a buffer of `len` elements.
    pub fn target_dtype(&self, len: usize) -> DType {
        match self.state_dtype {
            DType::Q8 if len < self.q8_min_numel => DType::F32,
            d => d,
        }
    }
}

/// A typed optimizer configuration: hyperparameters with the reference's
/// names and defaults, readable from JSON (unknown keys are errors).
pub trait OptimizerConfig:
    Serialize + DeserializeOwned + Default + Clone + Send + Sync + 'static
{
    /// Registry name.
    const NAME: &'static str;
    /// The implementation this one matches value for value.
    const REFERENCE: &'static str;
    /// The paper that introduced the method.
    const PAPER: &'static str;
    /// One line on what the method does.
    const SUMMARY: &'static str;

    /// The curvature estimate the rule reads from
    /// [`ParamMut::hessian`](crate::tensor::ParamMut), which the caller
    /// (a framework adapter) must compute; default none.
    const CURVATURE: Curvature = Curvature::None;

    /// Whether the rule updates only matrices (parameters of two or more
    /// dimensions) and rejects the others, so that a model needs parameter
    /// groups with another rule for its vectors (the Muon family); default
    /// false.
    const MATRICES_ONLY: bool = false;

    /// Hyperparameters suggested for small networks: a JSON object that
    /// overrides the reference's defaults where they are known to be far
    /// off (usually the learning rate); the default overrides nothing.
    fn suggested() -> Value {
        Value::Object(Default::default())
    }

    /// Checks every hyperparameter, naming the first bad one.
    fn validate(&self) -> Result<()>;

    /// Reads a configuration from a JSON object; missing keys take defaults.
    fn from_json(value: &Value) -> Result<Self> {
        let value = match value {
            Value::Null => Value::Object(Default::default()),
            Value::Object(_) => value.clone(),
            other => {
                return Err(Error::config(
                    Self::NAME,
                    format!("hyperparameters must be a JSON object, got {other}"),
                ))
            }
        };
        let cfg: Self = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path.is_empty() {
                Error::config(Self::NAME, format!("invalid hyperparameters: {inner}"))
            } else {
                Error::config(
                    Self::NAME,
                    format!("invalid hyperparameter '{path}': {inner}"),
                )
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The configuration as JSON.
    fn to_json(&self) -> Value {
        // Serializing plain structs of numbers, bools and strings cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The curvature estimate a rule reads (see [`OptimizerConfig::CURVATURE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Curvature {
    /// None.
    #[default]
    None,
    /// An estimate of the Hessian diagonal (Hutchinson's, from
    /// Hessian-vector products; Sophia-H).
    HessianDiagonal,
    /// An estimate of the Gauss-Newton diagonal (Gauss-Newton-Bartlett,
    /// from the gradient on sampled labels; Sophia-G).
    GaussNewtonDiagonal,
}

/// Step-wide information passed to an update rule.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    /// The optimizer's step count, 1 on the first step.
    pub step: u64,
    /// How the step executes (threads, state storage); read by the driver.
    pub exec: ExecOptions,
}

impl StepInfo {
    /// Step `step` with the default execution options.
    pub fn new(step: u64) -> Self {
        StepInfo {
            step,
            exec: ExecOptions::default(),
        }
    }
}

/// An update rule that treats each parameter on its own: the configuration
/// type carries the hyperparameters and the rule.
pub trait UpdateRule: OptimizerConfig {
    /// Per-parameter state.
    type State: ParamState;

    /// Whether the rule runs through the fused elementwise driver (set by
    /// [`elementwise_rule!`](crate::elementwise_rule), which also derives
    /// [`UpdateRule::update_all`]); only such rules can keep compressed state.
    const ELEMENTWISE: bool = false;

    /// Whether the rule runs its own passes over fixed blocks of each
    /// parameter through the shared per-parameter loop
    /// ([`crate::exec::run_blocked`]; LAMB, Adafactor), so that its fast
    /// path gives the simple path's bits.
    const BLOCKED: bool = false;

    /// Updates one parameter in one pass over its slices.
    fn update(
        &self,
        info: &StepInfo,
        param: &mut ParamMut<'_>,
        state: &mut Self::State,
    ) -> Result<()>;

    /// Checks the parameters before a step changes anything (the matrix
    /// rules refuse non-matrices here); an error leaves the optimizer as it
    /// was. The default accepts every parameter.
    fn check_params(&self, params: &[ParamMut<'_>]) -> Result<()> {
        let _ = params;
        Ok(())
    }

    /// The rule's own step over all parameters, for rules that need a
    /// global quantity first (a norm over all gradients) or a driver of
    /// their own; `None` (the default) lets the engine run
    /// [`UpdateRule::update`] on each parameter
    /// ([`crate::exec::run_per_param`]). Elementwise rules return the
    /// fused driver here with one line,
    /// [`elementwise_rule!`](crate::elementwise_rule).
    fn update_all(
        &self,
        _info: &StepInfo,
        _params: &mut [ParamMut<'_>],
        _states: &mut StateStore<Self::State>,
    ) -> Option<Result<()>> {
        None
    }

    /// Whether [`UpdateRule::update_with`] is implemented, so that update
    /// modifiers such as cautious masking ([`crate::cautious`]) compose
    /// with this rule.
    const EXPOSES_UPDATE: bool = false;

    /// Like [`UpdateRule::update`], but the step of every element, in order,
    /// goes through `apply` instead of being added to the parameter: the
    /// rule applies its own weight decay and state updates, then calls
    /// `apply.apply(p, g, lr, u)` where the plain update is `p <- p - lr * u`
    /// and `g` is the gradient as the rule used it (after L2 decay). The
    /// caller ends the parameter with [`Apply::finish`]. Rules that set
    /// [`UpdateRule::EXPOSES_UPDATE`] implement this and write `update` as
    /// `update_with` with [`Plain`].
    fn update_with<A: Apply>(
        &self,
        _info: &StepInfo,
        _param: &mut ParamMut<'_>,
        _state: &mut Self::State,
        _apply: &mut A,
    ) -> Result<()> {
        Err(Error::Unsupported(format!(
            "{}: the update rule does not expose its update direction",
            Self::NAME
        )))
    }

    /// The rule's own step over all parameters under cautious masking
    /// ([`crate::cautious`]), for rules that override
    /// [`UpdateRule::update_all`]; `None` (the default) lets the engine run
    /// [`UpdateRule::update_with`] with one mask per parameter
    /// ([`crate::exec::run_cautious`]).
    fn update_all_cautious(
        &self,
        _info: &StepInfo,
        _params: &mut [ParamMut<'_>],
        _states: &mut StateStore<Self::State>,
    ) -> Option<Result<()>> {
        None
    }

    /// Called when the configuration is replaced (`set_config`,
    /// `set_hparam`), with the configuration it replaces: keeps values that
    /// are not hyperparameters, such as the learning rate the optimizer was
    /// built with. The default keeps nothing.
    fn carry_over(&mut self, _previous: &Self) {}

    /// Called once at the start of every step, before any update, for
    /// rule-level values that change at step time (not hyperparameters).
    /// The default does nothing.
    fn begin_step(&mut self, _info: &StepInfo) {}
}

/// Where an update rule sends the step of each element.
pub trait Apply {
    /// Whether the element loops of `optim::each` write bf16 state
    /// straight from their loop where the chunk carries destinations for
    /// it ([`Chunk::packed`], set by the driver of compressed state, which
    /// passes [`PackedPlain`]). A constant, so that every other sink keeps
    /// one loop per kernel.
    const PACKS: bool = false;

    /// One element, in order over the parameter: the plain update is
    /// `p <- p - lr * u`; `g` is the gradient as the rule used it.
    fn apply(&mut self, p: &mut f32, g: f32, lr: f32, u: f32);

    /// Ends the parameter whose elements were passed to [`Apply::apply`]:
    /// applies anything deferred.
    fn finish(&mut self, value: &mut [f32]) -> Result<()>;

    /// For a sink that records the steps of a chunk instead of applying
    /// them (the fused cautious mask): its slots for the next `n` elements,
    /// which the element loops of `optim::each` then fill in one
    /// vectorized pass, exactly as `n` calls of [`Apply::apply`] would.
    /// `None` (the default, and [`Plain`]) means: call `apply`.
    #[inline(always)]
    fn record(&mut self, _n: usize) -> Option<Slots<'_>> {
        None
    }
}

/// Where a recording sink ([`Apply::record`]) takes the steps of `n`
/// elements: slices of exactly `n` values each.
#[derive(Debug)]
pub struct Slots<'a> {
    /// The direction `u` of each element where `u * g > 0` (the mask keeps
    /// it), else `u * 0.0` (a masked element: zero of `u`'s sign, or NaN).
    pub u: &'a mut [f32],
    /// The learning rate of each element's step.
    pub lr: &'a mut [f32],
    /// Count of kept elements, to add to.
    pub kept: &'a mut usize,
}

/// The plain update, `p <- p - lr * u`, applied at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

/// [`Plain`], for the driver of bf16 state: the element loops encode the
/// chunk's bf16 buffers in their own loop ([`Apply::PACKS`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct PackedPlain;

impl Apply for PackedPlain {
    const PACKS: bool = true;

    #[inline(always)]
    fn apply(&mut self, p: &mut f32, g: f32, lr: f32, u: f32) {
        Plain.apply(p, g, lr, u)
    }

    #[inline(always)]
    fn finish(&mut self, value: &mut [f32]) -> Result<()> {
        Plain.finish(value)
    }
}

/// Where one state buffer of a chunk is stored as bf16: the element loops
/// of `optim::each` round each new value into `bits` (the random stream of
/// [`quant::bf16_round`] with `base`, element `i` at index `lo + i`).
#[derive(Debug, Default)]
pub struct Bf16Dest<'a> {
    pub(crate) bits: &'a mut [u16],
    pub(crate) base: u32,
    pub(crate) lo: u32,
    /// The buffer's index in [`ParamState::BUFFERS`].
    pub(crate) buffer: usize,
}

/// The bf16 destinations of a chunk's state buffers (same order as
/// [`Chunk::state`]) and the set of buffers a loop has written there
/// (bit `buffer`); the driver encodes the others itself.
#[derive(Debug, Default)]
pub struct Packed<'a> {
    pub(crate) dest: [Option<Bf16Dest<'a>>; MAX_BUFFERS],
    pub(crate) done: Option<&'a std::cell::Cell<u32>>,
}

impl<'a> Packed<'a> {
    /// The destinations of the first `K` buffers when all `K` have one,
    /// marked as written.
    #[inline(always)]
    pub(crate) fn first<const K: usize>(&mut self) -> Option<[Bf16Dest<'a>; K]> {
        let done = self.done?;
        if K == 0 || K > MAX_BUFFERS || !self.dest[..K].iter().all(Option::is_some) {
            return None;
        }
        // Every entry is Some (checked above).
        let out: [Bf16Dest<'a>; K] =
            std::array::from_fn(|k| self.dest[k].take().unwrap_or_default());
        done.set(out.iter().fold(done.get(), |m, d| m | 1 << d.buffer));
        Some(out)
    }
}


impl Apply for Plain {
    #[inline(always)]
    fn apply(&mut self, p: &mut f32, _g: f32, lr: f32, u: f32) {
        // Same bits as `p += -lr * u`.
        *p -= lr * u;
    }

    #[inline(always)]
    fn finish(&mut self, _value: &mut [f32]) -> Result<()> {
        Ok(())
    }
}

/// One chunk of one parameter, as an elementwise kernel sees it: equal-length
/// slices of the values, the gradient, the Hessian estimate (if given) and
/// the parameter-sized state buffers in [`ParamState::BUFFERS`] order (not
/// those in [`ParamState::UNSIZED`]). A buffer that is not allocated is an
/// empty slice.
#[derive(Debug)]
pub struct Chunk<'a> {
    /// Index of the chunk's first element within the parameter.
    pub offset: usize,
    /// Parameter values, updated in place.
    pub value: &'a mut [f32],
    /// Gradient.
    pub grad: &'a [f32],
    /// Hessian diagonal estimate, when the step was given one.
    pub hessian: Option<&'a [f32]>,
    /// State buffers (first `BUFFERS.len()` entries; the rest are empty).
    pub state: [&'a mut [f32]; MAX_BUFFERS],
    /// Where buffers are stored as bf16 (compressed state): the element
    /// loops may round their new values straight into it.
    pub(crate) packed: Packed<'a>,
}

/// An update rule that acts element by element once per-step scalars are
/// known: the fast path.
///
/// The kernel must compute each element exactly as
/// [`UpdateRule::update`] does (same operations in the same order), which
/// the tests check bit for bit.
pub trait Elementwise: UpdateRule {
    /// Scalars computed once per parameter and step.
    type Scalars: Send + Sync;

    /// Allocates `state` on first use, advances its step count and returns
    /// the step's scalars. Must not read or write the values of existing
    /// buffers (the driver may hold them compressed).
    fn prepare(
        &self,
        info: &StepInfo,
        param: &ParamMut<'_>,
        state: &mut Self::State,
    ) -> Result<Self::Scalars>;

    /// Updates one chunk in one pass. Write it as plain loops over
    /// equal-length slices (re-slice every slice to the chunk's length so
    /// that bounds checks vanish), compute values first and store them
    /// unconditionally (a store on one branch only stops vectorization), and
    /// mark the implementation `#[inline(always)]`: the driver calls it from
    /// a function compiled for AVX2, and only an inlined kernel gets those
    /// instructions.
    ///
    /// Every element ends its step through `apply`: the kernel applies the
    /// rule's own weight decay and state updates, then calls
    /// `apply.apply(&mut x, g, lr, u)` where the plain step is
    /// `x <- x - lr * u` ([`Plain`], which the fused driver passes) and `g`
    /// is the gradient as the rule used it; cautious masking passes a sink
    /// that records `u` instead. This one loop is the rule's fused path, its
    /// simple whole-tensor path and its cautious path
    /// ([`elementwise_rule!`](crate::elementwise_rule)).
    fn kernel<A: Apply>(&self, scalars: &Self::Scalars, chunk: Chunk<'_>, apply: &mut A);

    /// Whether the rule's own configuration asks for cautious masking (a
    /// `cautious` hyperparameter); default false. The derived step then
    /// runs the kernel through the cautious mask.
    fn cautious(&self) -> bool {
        false
    }
}

