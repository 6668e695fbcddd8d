//! Prodigy: Adam whose step size is a distance estimate `d` learned from
//! sums over all parameters; and [`GlobalEngine`], the driver shared by the
//! learning-rate-free rules (Prodigy, D-Adaptation) whose step needs
//! optimizer-wide scalars.
//!
//! **Reference:** `pytorch_optimizer.Prodigy` (pytorch-optimizer 4.1.0),
//! its default (for-loop) path on the CPU. **Paper:** Mishchenko & Defazio,
//! "Prodigy: An Expeditiously Adaptive Parameter-Free Learner", ICML 2024
//! (arXiv:2306.06101).
//!
//! Update rule at step t (1-based), one parameter group. Scalars are f64
//! (the reference's Python floats) unless marked f32 (its one-element f32
//! tensors); tensor arithmetic is f32 with the scalars rounded to f32:
//! ```text
//! beta3 = beta3 if given else sqrt(beta2)
//! bc    = (1 - beta1^t) / sqrt(1 - beta2^t)  if bias_correction  else 1
//! d_lr  = d * lr / bc
//! num   = num * beta3                                       (f32, kept across steps)
//! for each parameter (p0 = the parameter at its first step):
//!     g   <- -g                                             if maximize
//!     num <- num + (d / d0) d_lr <g, p0 - p>                (f32)
//!     m   <- m beta1 + d (1 - beta1) g
//!     v   <- v beta2 + d^2 (1 - beta2) g g
//!     s   <- s beta3 + (d / d0) (safeguard_warmup ? d : d_lr) g
//!     den <- den + sum |s|                                  (f32, from 0 each step)
//! if den == 0: stop here (no parameter changes)
//! d_hat = d_coef * num / den                                (f32)
//! d     = max(d, d_hat)                                     if d == d0
//! d_max = max(d_max, d_hat);  d = min(d_max, d * growth_rate)
//! for each parameter:
//!     p <- p (1 - wd (fixed_decay ? 1 : d_lr))              if weight_decouple
//!     p <- p - d_lr m / (sqrt(v) + d eps)                   (eps given; d is the new d)
//!     p <- p - d_lr atan2(m, sqrt(v))                       (eps = null)
//! ```
//! With `weight_decouple = false` the reference adds `wd * p` to the
//! gradient after the moments and `s` were updated, so L2 decay has no
//! effect on the step; this is reproduced (the decay does nothing).
//!
//! Defaults: lr = 1.0, betas = (0.9, 0.999), beta3 = null (sqrt(beta2)),
//! d0 = 1e-6, d_coef = 1.0, growth_rate = inf (null in JSON), weight_decay
//! = 0, weight_decouple = true, fixed_decay = false, bias_correction =
//! false, safeguard_warmup = false, eps = 1e-8 (null: atan2 update),
//! maximize = false. Validation as the reference: lr >= 0, betas in [0, 1),
//! beta3 in [0, 1], weight_decay >= 0, eps >= 0; and d0 != 0 (the reference
//! divides by d0 at the first step, raising ZeroDivisionError there).
//!
//! State: `s`, `p0`, `exp_avg`, `exp_avg_sq` per parameter; the scalars
//! `d`, `d_max` and `d_numerator` for the optimizer. Sums over a tensor
//! are accumulated in f64 and rounded to f32 (the reference sums in f32).

#![allow(clippy::needless_range_loop)]


use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::exec::{self, simd, Blocks};
use crate::math::Maybe;
use crate::sqsum::{add_pairs, lanes_sum, LANES};
use crate::rule::ExecOptions;
use crate::optimizer::{Optimizer, OptimizerSpec};
use crate::rule::OptimizerConfig;
use crate::state::{ParamState, StateDict, StateStore};
use crate::tensor::{ParamMut, StateTensor};
use crate::validate as v;

/// An update rule over all parameters with optimizer-wide scalars (the
/// distance estimate of learning-rate-free methods), run by [`GlobalEngine`].
pub trait GlobalRule: OptimizerConfig + std::fmt::Debug {
    /// Per-parameter state.
    type State: ParamState + Clone + std::fmt::Debug;
    /// Names of the optimizer-wide scalars, saved under these names in the
    /// state dict.
    const GLOBALS: &'static [&'static str];
    /// Their values before the first step.
    fn init_globals(&self) -> Vec<f64>;
    /// One step over all parameters; `t` is the optimizer's step (1-based),
    /// `globals` the scalars in [`GlobalRule::GLOBALS`] order, `states` one
    /// per parameter (allocated on first use by the rule). A rule may run
    /// fixed blocks of its passes through `blocks` (on the thread pool on the
    /// fast path); its values must not depend on it.
    fn step_all(
        &self,
        t: u64,
        globals: &mut [f64],
        params: &mut [ParamMut<'_>],
        states: &mut [&mut Self::State],
        blocks: Blocks,
    );
}

/// Runs a [`GlobalRule`]: configuration, per-parameter state, the
/// optimizer-wide scalars and the step count.
#[derive(Debug, Clone)]
pub struct GlobalEngine<R: GlobalRule> {
    config: R,
    states: StateStore<R::State>,
    globals: Vec<f64>,
    step: u64,
    exec: ExecOptions,
}

impl<R: GlobalRule> GlobalEngine<R> {
    /// Validates `config` and builds the optimizer.
    pub fn new(config: R) -> Result<Self> {
        config.validate()?;
        let globals = config.init_globals();
        Ok(GlobalEngine {
            config,
            states: StateStore::default(),
            globals,
            step: 0,
            exec: ExecOptions::default(),
        })
    }

    /// The optimizer-wide scalar `name` (e.g. `d`).
    pub fn global(&self, name: &str) -> Option<f64> {
        R::GLOBALS
            .iter()
            .position(|&g| g == name)
            .map(|i| self.globals[i])
    }
}

/// The registry entry of a [`GlobalRule`].
/// Its fast path gives the simple path's bits (fixed blocks, sums added in
/// block order), so it is marked blocked.
pub fn global_spec<R: GlobalRule>() -> OptimizerSpec {
    let mut spec =
        OptimizerSpec::of_config::<R>(|v| Ok(Box::new(GlobalEngine::new(R::from_json(v)?)?)));
    spec.facts.blocked = true;
    spec
}

impl<R: GlobalRule> Optimizer for GlobalEngine<R> {
    super::config_methods!(R, config);

    fn step(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        self.states.check_params(params)?;
        let keys: Vec<(&str, usize)> = params.iter().map(|p| (p.name, p.numel())).collect();
        let mut states = self.states.get_many(&keys)?;
        let t = self.step + 1;
        let (config, globals, exec) = (&self.config, &mut self.globals, self.exec);
        exec::run_step(&exec, || {
            config.step_all(t, globals, params, &mut states, Blocks::for_exec(&exec))
        })?;
        self.step = t;
        Ok(())
    }

    /// Threads and fast or simple path; the state stays f32.
    fn set_exec_options(&mut self, exec: ExecOptions) -> Result<()> {
        exec.validate(R::NAME, false)?;
        self.exec = exec;
        Ok(())
    }

    fn state_dict(&self) -> StateDict {
        let mut d = self.states.state_dict();
        d.scalars.insert("step".into(), self.step as f64);
        for (name, &value) in R::GLOBALS.iter().zip(&self.globals) {
            d.scalars.insert((*name).to_string(), value);
        }
        d
    }

    fn load_state_dict(&mut self, dict: &StateDict) -> Result<()> {
        let step = dict.step()?;
        let mut globals = Vec::with_capacity(R::GLOBALS.len());
        for name in R::GLOBALS {
            match dict.scalars.get(*name) {
                Some(&x) if !x.is_nan() => globals.push(x),
                Some(&x) => {
                    return Err(Error::Input(format!("state '{name}': invalid value {x}")))
                }
                None => return Err(Error::Input(format!("state has no '{name}' entry"))),
            }
        }
        let mut states = StateStore::default();
        states.load_state_dict(dict)?;
        self.states = states;
        self.globals = globals;
        self.step = step;
        Ok(())
    }

    fn state_buffer(&self, param: &str, buffer: &str) -> Option<&[f32]> {
        self.states.buffer(param, buffer)
    }

    fn state_buffer_names(&self) -> Option<&'static [&'static str]> {
        Some(<R::State as ParamState>::BUFFERS)
    }

    fn swap_state(
        &mut self,
        param: &str,
        numel: usize,
        steps: u64,
        buffers: &mut [StateTensor],
    ) -> Result<()> {
        self.states.swap(R::NAME, param, numel, steps, buffers)
    }

    fn set_step_count(&mut self, steps: u64) -> Result<()> {
        self.step = steps;
        Ok(())
    }

    fn global_state_names(&self) -> &'static [&'static str] {
        R::GLOBALS
    }

    fn global_state(&self) -> Vec<f64> {
        self.globals.clone()
    }

    fn set_global_state(&mut self, values: &[f64]) -> Result<()> {
        check_globals(R::NAME, R::GLOBALS, values)?;
        self.globals = values.to_vec();
        Ok(())
    }
}

/// Checks optimizer-wide state values given to
/// [`Optimizer::set_global_state`]: one per name, none NaN.
pub(crate) fn check_globals(optimizer: &str, names: &[&str], values: &[f64]) -> Result<()> {
    if values.len() != names.len() {
        return Err(Error::Input(format!(
            "{optimizer}: {} optimizer-wide state values given, expected {} ({})",
            values.len(),
            names.len(),
            names.join(", ")
        )));
    }
    for (name, &x) in names.iter().zip(values) {
        if x.is_nan() {
            return Err(Error::Input(format!("{optimizer}: state '{name}': invalid value {x}")));
        }
    }
    Ok(())
}

/// Serde for a float whose default is infinity: JSON `null` (or an omitted
/// key) means infinity, and infinity is written as `null`.
pub mod inf_as_null {
    use super::*;

    /// Writes infinity as `null`.
    pub fn serialize<S: Serializer>(x: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
        if x.is_infinite() && *x > 0.0 {
            s.serialize_none()
        } else {
            s.serialize_f64(*x)
        }
    }

    /// Reads `null` as infinity.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}

/// `x.add_(y, alpha)` of one-element f32 tensors: `x + alpha * y` in f32.
#[inline]
pub(crate) fn add_alpha(x: f32, y: f32, alpha: f64) -> f32 {
    x + (alpha as f32) * y
}

crate::param_state! {
    /// Prodigy state: `s`, the initial point `p0` and Adam's moments.
    pub struct ProdigyState { s, p0, exp_avg, exp_avg_sq }
}

/// Hyperparameters of `pytorch_optimizer.Prodigy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Prodigy {
    /// Multiplier of the adapted step size (default 1.0).
    pub lr: f64,
    /// Decay rates of the moments (default (0.9, 0.999)).
    pub betas: [f64; 2],
    /// Decay rate of the distance statistics; null = sqrt(beta2) (default null).
    pub beta3: Option<f64>,
    /// Initial distance estimate (default 1e-6).
    pub d0: f64,
    /// Coefficient of the estimate (default 1.0).
    pub d_coef: f64,
    /// Largest growth factor of d per step (default inf, written null).
    #[serde(with = "inf_as_null")]
    pub growth_rate: f64,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay (default true); L2 otherwise (no effect, see the module docs).
    pub weight_decouple: bool,
    /// Decoupled decay not scaled by the step size (default false).
    pub fixed_decay: bool,
    /// Adam's bias correction in the step size (default false).
    pub bias_correction: bool,
    /// Leave the lr out of `s` during warm-up (default false).
    pub safeguard_warmup: bool,
    /// Denominator epsilon, scaled by d; null = atan2 update (default 1e-8).
    pub eps: Option<f64>,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for Prodigy {
    fn default() -> Self {
        Prodigy {
            lr: 1.0,
            betas: [0.9, 0.999],
            beta3: None,
            d0: 1e-6,
            d_coef: 1.0,
            growth_rate: f64::INFINITY,
            weight_decay: 0.0,
            weight_decouple: true,
            fixed_decay: false,
            bias_correction: false,
            safeguard_warmup: false,
            eps: Some(1e-8),
            maximize: false,
        }
    }
}

impl OptimizerConfig for Prodigy {
    const NAME: &'static str = "prodigy";
    const REFERENCE: &'static str = "pytorch_optimizer.Prodigy (pytorch-optimizer 4.1.0)";
    const PAPER: &'static str = "Mishchenko & Defazio, Prodigy: An Expeditiously Adaptive Parameter-Free Learner, ICML 2024 (arXiv:2306.06101)";
    const SUMMARY: &'static str =
        "learning-rate-free Adam: the step is a distance estimate d grown from global sums";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), betas(betas))?;
        if let Some(b3) = self.beta3 {
            v::unit_interval(Self::NAME, "beta3", b3)?;
        }
        crate::checks!(self, non_negative(weight_decay))?;
        if let Some(eps) = self.eps {
            v::non_negative(Self::NAME, "eps", eps)?;
        }
        crate::checks!(self, finite(d0))?;
        if self.d0 == 0.0 {
            return Err(Error::hparam(Self::NAME, "d0", self.d0, "must not be 0 (the step divides by it)"));
        }
        crate::checks!(self, finite(d_coef))?;
        if self.growth_rate.is_nan() {
            return Err(Error::hparam(Self::NAME, "growth_rate", self.growth_rate, "must be a number"));
        }
        Ok(())
    }
}

impl GlobalRule for Prodigy {
    type State = ProdigyState;
    const GLOBALS: &'static [&'static str] = &["d", "d_max", "d_numerator"];

    fn init_globals(&self) -> Vec<f64> {
        vec![self.d0, self.d0, 0.0]
    }

    fn step_all(
        &self,
        t: u64,
        globals: &mut [f64],
        params: &mut [ParamMut<'_>],
        states: &mut [&mut ProdigyState],
        blocks: Blocks,
    ) {
        let [beta1, beta2] = self.betas;
        let beta3 = self.beta3.unwrap_or(beta2.sqrt());
        let bc = if self.bias_correction {
            (1.0 - beta1.powf(t as f64)) / (1.0 - beta2.powf(t as f64)).sqrt()
        } else {
            1.0
        };
        let (mut d, mut d_max) = (globals[0], globals[1]);
        let d0 = self.d0;
        let d_lr = d * self.lr / bc;
        let mut num = (globals[2] as f32) * (beta3 as f32);
        let mut den = 0.0f32;
        let k = MomentConsts {
            sgn: if self.maximize { -1.0 } else { 1.0 },
            b1: beta1 as f32,
            b2: beta2 as f32,
            b3: beta3 as f32,
            a_m: (d * (1.0 - beta1)) as f32,
            a_v: (d * d * (1.0 - beta2)) as f32,
            a_s: ((d / d0) * if self.safeguard_warmup { d } else { d_lr }) as f32,
        };
        let a_num = (d / d0) * d_lr;
        for (p, st) in params.iter_mut().zip(states.iter_mut()) {
            let n = p.numel();
            if !st.exp_avg.is_allocated() {
                st.s = StateTensor::zeros(n);
                st.p0 = StateTensor::from_slice(p.value);
                st.exp_avg = StateTensor::zeros(n);
                st.exp_avg_sq = StateTensor::zeros(n);
            }
            st.step += 1;
            let st = &mut **st;
            let items = p
                .value
                .chunks(BLOCK)
                .zip(p.grad.chunks(BLOCK))
                .zip(st.p0.as_slice().chunks(BLOCK))
                .zip(st.exp_avg.as_mut_slice().chunks_mut(BLOCK))
                .zip(st.exp_avg_sq.as_mut_slice().chunks_mut(BLOCK))
                .zip(st.s.as_mut_slice().chunks_mut(BLOCK));
            let partials = blocks.map(items, |(((((x, g), p0), m), v), s)| {
                moments(&k, x, g, p0, m, v, s)
            });
            let (dot, abs) = add_pairs(&partials);
            num = add_alpha(num, dot as f32, a_num);
            den += abs as f32;
        }
        globals[2] = num as f64;
        if den == 0.0 {
            return;
        }
        let d_hat = ((self.d_coef as f32) * num / den) as f64;
        if d == d0 {
            d = d.max(d_hat);
        }
        d_max = d_max.max(d_hat);
        d = d_max.min(d * self.growth_rate);
        globals[0] = d;
        globals[1] = d_max;

        let s = StepConsts {
            keep: if self.weight_decouple && self.weight_decay != 0.0 {
                Some((1.0 - self.weight_decay * if self.fixed_decay { 1.0 } else { d_lr }) as f32)
            } else {
                None
            }
            .into(),
            neg_lr: (-d_lr) as f32,
            de: self.eps.map(|eps| (d * eps) as f32).into(),
        };
        let moments = states.iter().map(|st| (st.exp_avg.as_slice(), st.exp_avg_sq.as_slice()));
        step_params(&s, params, moments, blocks);
    }
}

/// The second pass of Prodigy and D-Adapt Adam over every parameter, in
/// fixed blocks: `p <- p * keep` (when given), then `p <- p + neg_lr * m /
/// (sqrt(v) + de)` (`atan2(m, sqrt(v))` when `de` is absent), with `m` and
/// `v` the parameter's moments.
pub(crate) fn step_params<'a>(
    c: &StepConsts,
    params: &mut [ParamMut<'_>],
    moments: impl Iterator<Item = (&'a [f32], &'a [f32])>,
    blocks: Blocks,
) {
    for (p, (m, v)) in params.iter_mut().zip(moments) {
        let items = p.value.chunks_mut(BLOCK).zip(m.chunks(BLOCK)).zip(v.chunks(BLOCK));
        blocks.map(items, |((x, m), v)| step(c, x, m, v));
    }
}

/// Elements per block of the passes and partial sums of Prodigy and the
/// D-Adaptation rules: fixed, so that the sums do not depend on the thread
/// count.
pub(crate) const BLOCK: usize = crate::exec::CHUNK;

/// Per-step constants of Prodigy's first pass (f32, as the reference's
/// tensor arithmetic).
#[derive(Debug, Clone, Copy)]
struct MomentConsts {
    sgn: f32,
    b1: f32,
    b2: f32,
    b3: f32,
    a_m: f32,
    a_v: f32,
    a_s: f32,
}

/// Pass 1 over one block: the moments and `s`; returns the block's
/// `<g, p0 - p>` and `sum |s|`, each added in f64 in eight interleaved
/// lanes ([`crate::sqsum`]'s order).
fn moments(
    k: &MomentConsts,
    x: &[f32],
    g: &[f32],
    p0: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    s: &mut [f32],
) -> (f64, f64) {
    simd!(avx512; fn(k: &MomentConsts, x: &[f32], g: &[f32], p0: &[f32], m: &mut [f32], v: &mut [f32], s: &mut [f32]) -> (f64, f64) {
        let n = x.len();
        let (g, p0, m, v, s) = (&g[..n], &p0[..n], &mut m[..n], &mut v[..n], &mut s[..n]);
        // Element `i` of the block into lane `i % LANES` of each sum, the
        // lanes added in order at the end: independent chains of additions
        // (one chain would hold the pass to its latency).
        let (mut dot, mut abs) = ([0.0f64; LANES], [0.0f64; LANES]);
        #[inline(always)]
        #[allow(clippy::too_many_arguments)]
        fn element(k: &MomentConsts, x: f32, g: f32, p0: f32, m: &mut f32, v: &mut f32, s: &mut f32, dot: &mut f64, abs: &mut f64) {
            let gi = k.sgn * g;
            *m = *m * k.b1 + k.a_m * gi;
            *v = *v * k.b2 + k.a_v * gi * gi;
            let si = *s * k.b3 + k.a_s * gi;
            *s = si;
            *dot += gi as f64 * (p0 - x) as f64;
            *abs += si.abs() as f64;
        }
        let (xc, xr) = x.as_chunks::<LANES>();
        let (gc, gr) = g.as_chunks::<LANES>();
        let (pc, pr) = p0.as_chunks::<LANES>();
        let (mc, mr) = m.as_chunks_mut::<LANES>();
        let (vc, vr) = v.as_chunks_mut::<LANES>();
        let (sc, sr) = s.as_chunks_mut::<LANES>();
        for (((((x, g), p0), m), v), s) in xc.iter().zip(gc).zip(pc).zip(mc).zip(vc).zip(sc) {
            for j in 0..LANES {
                element(k, x[j], g[j], p0[j], &mut m[j], &mut v[j], &mut s[j], &mut dot[j], &mut abs[j]);
            }
        }
        for j in 0..xr.len() {
            element(k, xr[j], gr[j], pr[j], &mut mr[j], &mut vr[j], &mut sr[j], &mut dot[j], &mut abs[j]);
        }
        (lanes_sum(&dot), lanes_sum(&abs))
    })
}

/// Per-step constants of the second pass of Prodigy and D-Adapt Adam.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepConsts {
    /// The decoupled decay's factor, when it applies.
    pub keep: Maybe<f32>,
    /// The step's factor (`-d_lr`; -1 for D-Adapt Adam, whose moments carry it).
    pub neg_lr: f32,
    /// Added to `sqrt(v)` (`d * eps`; `eps` for D-Adapt Adam); `None` for
    /// the atan2 update.
    pub de: Maybe<f32>,
}

/// Pass 2 over one block: the decay and the step.
fn step(c: &StepConsts, x: &mut [f32], m: &[f32], v: &[f32]) {
    simd!(avx2; fn(c: &StepConsts, x: &mut [f32], m: &[f32], v: &[f32]) {
        let n = x.len();
        let (m, v) = (&m[..n], &v[..n]);
        let keep = c.keep.get().unwrap_or(1.0);
        let decay = c.keep.get().is_some();
        match c.de.get() {
            Some(de) => {
                for i in 0..n {
                    let xi = if decay { x[i] * keep } else { x[i] };
                    x[i] = xi + c.neg_lr * m[i] / (v[i].sqrt() + de);
                }
            }
            None => {
                for i in 0..n {
                    let xi = if decay { x[i] * keep } else { x[i] };
                    x[i] = xi + c.neg_lr * m[i].atan2(v[i].sqrt());
                }
            }
        }
    })
}
