//! L-BFGS with an optional strong-Wolfe line search; a step re-evaluates
//! the loss and gradient through a closure.
//!
//! **Reference:** `torch.optim.LBFGS` (torch 2.15.0), transcribed step by
//! step, including its mix of Python floats (f64) and 0-dim f32 tensors in
//! the scalar arithmetic ([`Num`]): a comparison of a float with a tensor is
//! made in f32, as torch makes it. **Papers:** Liu & Nocedal, "On the
//! limited memory BFGS method for large scale optimization", Math.
//! Programming 1989; line search: Nocedal & Wright, Numerical Optimization,
//! Algorithms 3.5 and 3.6 (as in minFunc, which torch follows).
//!
//! One step, with all parameters flattened into one vector x and the
//! closure returning f(x) and g = grad f(x) (negated when maximizing):
//! ```text
//! f, g <- closure();  stop if max|g| <= tolerance_grad
//! repeat up to max_iter times:
//!     first iteration ever: d <- -g, history empty, H <- 1
//!     otherwise: y <- g - g_prev, s <- t d_prev; if y.s > 1e-10, push (y, s, 1 / y.s)
//!         (dropping the oldest beyond history_size) and H <- y.s / y.y;
//!         d <- -H_k g by the two-loop recursion with the history and H
//!     t <- min(1, 1 / sum|g|) lr on the first iteration ever, lr afterwards
//!     stop if g.d > -tolerance_change
//!     line_search_fn = "strong_wolfe": t, f, g from the strong-Wolfe search
//!         along d (c1 = 1e-4, c2 = 0.9, at most max_eval - evaluations so far);
//!         x <- x + t d
//!     otherwise: x <- x + t d; f, g <- closure() unless this was the last iteration
//!     stop after max_iter iterations, max_eval evaluations, when max|g| <=
//!     tolerance_grad, max|t d| <= tolerance_change or |f - f_prev| < tolerance_change
//! ```
//! The state (direction, step, history, previous gradient and loss,
//! iteration and evaluation counts) carries over between steps.
//!
//! [`Lbfgs::step_with_closure`] (also through the [`Optimizer`] trait) takes
//! the closure. A plain [`Optimizer::step`], as the replay contract calls
//! it, runs with the closure torch would have in a loop that feeds one
//! gradient per step: it returns the gradient given with the step at every
//! evaluation, and the loss 0 (documented in `docs/replay.md`). With
//! `max_iter = 1` (and no line search) the loss is never read, so such a
//! step is exactly torch's for any loss.
//!
//! Defaults: lr = 1, max_iter = 20, max_eval = null (max_iter * 5 / 4, as
//! torch computes it; here when stepping, so a later change of max_iter
//! moves it too), tolerance_grad = 1e-7, tolerance_change = 1e-9,
//! history_size = 100, line_search_fn = null, maximize = false. Validation:
//! lr >= 0 (torch), line_search_fn null or "strong_wolfe" (torch raises at
//! the first step), history_size >= 1 (torch fails at the step that would
//! drop from an empty history).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::optimizer::{Closure, Optimizer, OptimizerSpec};
use crate::rule::OptimizerConfig;
use crate::state::{StateDict, StateEntry};
use crate::tensor::{check_each, ParamMut};

/// Hyperparameters of [`torch.optim.LBFGS`](https://pytorch.org/docs/stable/generated/torch.optim.LBFGS.html).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LbfgsConfig {
    /// Learning rate (default 1).
    pub lr: f64,
    /// Most iterations per step (default 20).
    pub max_iter: u64,
    /// Most closure evaluations per step (default null: max_iter * 5 / 4).
    pub max_eval: Option<u64>,
    /// Stop when max|g| is at most this (default 1e-7).
    pub tolerance_grad: f64,
    /// Stop when a step or a loss change is below this (default 1e-9).
    pub tolerance_change: f64,
    /// Pairs (y, s) kept (default 100).
    pub history_size: u64,
    /// null or "strong_wolfe" (default null).
    pub line_search_fn: Option<String>,
    /// Maximize the objective (default false).
    pub maximize: bool,
}

impl Default for LbfgsConfig {
    fn default() -> Self {
        LbfgsConfig {
            lr: 1.0,
            max_iter: 20,
            max_eval: None,
            tolerance_grad: 1e-7,
            tolerance_change: 1e-9,
            history_size: 100,
            line_search_fn: None,
            maximize: false,
        }
    }
}

impl OptimizerConfig for LbfgsConfig {
    const NAME: &'static str = "lbfgs";
    const REFERENCE: &'static str = "torch.optim.LBFGS (torch 2.15.0)";
    const PAPER: &'static str = "Liu & Nocedal, On the limited memory BFGS method for large scale optimization, Math. Programming 1989; Nocedal & Wright, Numerical Optimization (strong Wolfe line search)";
    const SUMMARY: &'static str = "limited-memory BFGS with an optional strong-Wolfe line search; steps take a closure";

    fn validate(&self) -> Result<()> {
        crate::checks!(self, non_negative(lr), finite(tolerance_grad, tolerance_change),
            at_least(history_size; 1))?;
        match self.line_search_fn.as_deref() {
            None | Some("strong_wolfe") => Ok(()),
            Some(other) => Err(Error::hparam(
                Self::NAME,
                "line_search_fn",
                other,
                "only null or \"strong_wolfe\" is supported",
            )),
        }
    }
}

/// A scalar as torch's L-BFGS holds it: a Python float (`F`, f64) or a
/// 0-dim f32 tensor (`T`). Arithmetic with a tensor is done in f32 (the
/// float rounded to f32 first), comparisons too; floats stay f64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    /// A Python float (or int).
    F(f64),
    /// A 0-dim f32 tensor.
    T(f32),
}

impl Num {
    fn f32(self) -> f32 {
        match self {
            Num::F(a) => a as f32,
            Num::T(a) => a,
        }
    }
    fn bin(self, o: Num, f: fn(f64, f64) -> f64, g: fn(f32, f32) -> f32) -> Num {
        match (self, o) {
            (Num::F(a), Num::F(b)) => Num::F(f(a, b)),
            (a, b) => Num::T(g(a.f32(), b.f32())),
        }
    }
    fn add(self, o: Num) -> Num {
        self.bin(o, |a, b| a + b, |a, b| a + b)
    }
    fn sub(self, o: Num) -> Num {
        self.bin(o, |a, b| a - b, |a, b| a - b)
    }
    fn mul(self, o: Num) -> Num {
        self.bin(o, |a, b| a * b, |a, b| a * b)
    }
    fn div(self, o: Num) -> Num {
        self.bin(o, |a, b| a / b, |a, b| a / b)
    }
    fn abs(self) -> Num {
        match self {
            Num::F(a) => Num::F(a.abs()),
            Num::T(a) => Num::T(a.abs()),
        }
    }
    fn cmp(self, o: Num, f: fn(f64, f64) -> bool, g: fn(f32, f32) -> bool) -> bool {
        match (self, o) {
            (Num::F(a), Num::F(b)) => f(a, b),
            (a, b) => g(a.f32(), b.f32()),
        }
    }
    fn lt(self, o: Num) -> bool {
        self.cmp(o, |a, b| a < b, |a, b| a < b)
    }
    fn le(self, o: Num) -> bool {
        self.cmp(o, |a, b| a <= b, |a, b| a <= b)
    }
    fn gt(self, o: Num) -> bool {
        o.lt(self)
    }
    fn ge(self, o: Num) -> bool {
        o.le(self)
    }
    /// Python's `min(a, b)`: `b` if `b < a`, else `a`.
    fn pymin(a: Num, b: Num) -> Num {
        if b.lt(a) {
            b
        } else {
            a
        }
    }
    /// Python's `max(a, b)`: `b` if `b > a`, else `a`.
    fn pymax(a: Num, b: Num) -> Num {
        if b.gt(a) {
            b
        } else {
            a
        }
    }
    fn to_scalars(self) -> (f64, f64) {
        match self {
            Num::F(a) => (a, 0.0),
            Num::T(a) => (a as f64, 1.0),
        }
    }
    fn from_scalars(v: f64, is_tensor: f64) -> Num {
        if is_tensor != 0.0 {
            Num::T(v as f32)
        } else {
            Num::F(v)
        }
    }
}

const F: fn(f64) -> Num = Num::F;

/// `a . b` of two f32 vectors, as an f32 (accumulated in f64).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>() as f32
}

fn abs_max(a: &[f32]) -> f32 {
    a.iter().fold(0.0f32, |m, &x| if x.abs() > m || x.is_nan() { x.abs() } else { m })
}

fn abs_sum(a: &[f32]) -> f32 {
    a.iter().map(|&x| x.abs() as f64).sum::<f64>() as f32
}

/// `x + alpha * y` in place (alpha rounded to f32, as torch's `add_(alpha=)`).
fn axpy(x: &mut [f32], alpha: f32, y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += alpha * b;
    }
}

/// torch's `_cubic_interpolate`.
fn cubic(x1: Num, f1: f64, g1: Num, x2: Num, f2: f64, g2: Num, bounds: Option<(Num, Num)>) -> Num {
    let (lo, hi) = bounds.unwrap_or(if x1.le(x2) { (x1, x2) } else { (x2, x1) });
    let d1 = g1.add(g2).sub(F(3.0).mul(F(f1 - f2)).div(x1.sub(x2)));
    let d2_square = d1.mul(d1).sub(g1.mul(g2));
    if d2_square.ge(F(0.0)) {
        let d2 = Num::T(d2_square.f32().sqrt());
        let min_pos = if x1.le(x2) {
            x2.sub(x2.sub(x1).mul(g2.add(d2).sub(d1).div(g2.sub(g1).add(F(2.0).mul(d2)))))
        } else {
            x1.sub(x1.sub(x2).mul(g1.add(d2).sub(d1).div(g1.sub(g2).add(F(2.0).mul(d2)))))
        };
        Num::pymin(Num::pymax(min_pos, lo), hi)
    } else {
        lo.add(hi).div(F(2.0))
    }
}

/// The persistent state of torch's L-BFGS (`state[params[0]]`).
#[derive(Debug, Clone, Default, PartialEq)]
struct LbfgsState {
    func_evals: u64,
    n_iter: u64,
    d: Vec<f32>,
    t: Option<Num>,
    old_dirs: Vec<Vec<f32>>,
    old_stps: Vec<Vec<f32>>,
    ro: Vec<f32>,
    h_diag: Option<Num>,
    prev_flat_grad: Vec<f32>,
    prev_loss: Option<f64>,
}


/// L-BFGS over all parameters of a step, as one flat vector.
#[derive(Debug, Clone)]
pub struct Lbfgs {
    cfg: LbfgsConfig,
    state: LbfgsState,
    numel: Option<usize>,
    /// The first parameter's name: torch keeps the state under
    /// `state[params[0]]`, and so do state dicts and checkpoints here.
    key: Option<String>,
}

/// What the closure sees: evaluation count and the flattened gradient.
struct Problem<'p, 'a, 'c> {
    params: &'p mut [ParamMut<'a>],
    closure: &'p mut Closure<'c>,
    maximize: bool,
}

impl Problem<'_, '_, '_> {
    fn eval(&mut self) -> Result<(f64, Vec<f32>)> {
        let loss = (self.closure)(self.params)?;
        let loss = if self.maximize { -loss } else { loss };
        Ok((loss, self.flat_grad()))
    }
    fn flat_grad(&self) -> Vec<f32> {
        let sgn = if self.maximize { -1.0f32 } else { 1.0 };
        self.params.iter().flat_map(|p| p.grad.iter().map(move |&g| sgn * g)).collect()
    }
    fn values(&self) -> Vec<f32> {
        self.params.iter().flat_map(|p| p.value.iter().copied()).collect()
    }
    fn set_values(&mut self, x: &[f32]) {
        let mut off = 0;
        for p in self.params.iter_mut() {
            let n = p.value.len();
            p.value.copy_from_slice(&x[off..off + n]);
            off += n;
        }
    }
    /// `_add_grad(t, d)`: x <- x + t d.
    fn add_dir(&mut self, t: Num, d: &[f32]) {
        let alpha = t.f32();
        let mut off = 0;
        for p in self.params.iter_mut() {
            let n = p.value.len();
            axpy(p.value, alpha, &d[off..off + n]);
            off += n;
        }
    }
    /// `_directional_evaluate`: f and g at x + t d, then back to x.
    fn directional(&mut self, x: &[f32], t: Num, d: &[f32]) -> Result<(f64, Vec<f32>)> {
        self.add_dir(t, d);
        let r = self.eval();
        self.set_values(x);
        r
    }
}

/// torch's `_strong_wolfe` with its defaults c1 = 1e-4, c2 = 0.9,
/// tolerance_change = 1e-9; returns (f, g, t, evaluations).
#[allow(clippy::too_many_arguments)]
fn strong_wolfe(
    pb: &mut Problem<'_, '_, '_>,
    x: &[f32],
    mut t: Num,
    d: &[f32],
    f: f64,
    g: &[f32],
    gtd: Num,
    max_ls: i64,
) -> Result<(f64, Vec<f32>, Num, u64)> {
    let (c1, c2, tolerance_change) = (1e-4, 0.9, 1e-9);
    let d_norm = Num::T(abs_max(d));
    let g = g.to_vec();
    let (mut f_new, mut g_new) = pb.directional(x, t, d)?;
    let mut evals = 1u64;
    let mut gtd_new = Num::T(dot(&g_new, d));
    let (mut t_prev, mut f_prev, mut g_prev, mut gtd_prev) = (F(0.0), f, g.clone(), gtd);
    let mut done = false;
    let mut ls_iter = 0i64;
    let armijo = |t: Num, f_new: f64| F(f_new).gt(F(f).add(F(c1).mul(t).mul(gtd)));
    let mut bracket: Vec<Num> = Vec::new();
    let mut bracket_f: Vec<f64> = Vec::new();
    let mut bracket_g: Vec<Vec<f32>> = Vec::new();
    let mut bracket_gtd: Vec<Num> = Vec::new();
    let mut broke = false;
    while ls_iter < max_ls {
        if armijo(t, f_new) || (ls_iter > 1 && f_new >= f_prev) {
            bracket = vec![t_prev, t];
            bracket_f = vec![f_prev, f_new];
            bracket_g = vec![g_prev.clone(), g_new.clone()];
            bracket_gtd = vec![gtd_prev, gtd_new];
            broke = true;
            break;
        }
        if gtd_new.abs().le(F(-c2).mul(gtd)) {
            bracket = vec![t];
            bracket_f = vec![f_new];
            bracket_g = vec![g_new.clone()];
            done = true;
            broke = true;
            break;
        }
        if gtd_new.ge(F(0.0)) {
            bracket = vec![t_prev, t];
            bracket_f = vec![f_prev, f_new];
            bracket_g = vec![g_prev.clone(), g_new.clone()];
            bracket_gtd = vec![gtd_prev, gtd_new];
            broke = true;
            break;
        }
        let min_step = t.add(F(0.01).mul(t.sub(t_prev)));
        let max_step = t.mul(F(10.0));
        let tmp = t;
        t = cubic(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, Some((min_step, max_step)));
        t_prev = tmp;
        f_prev = f_new;
        g_prev = g_new.clone();
        gtd_prev = gtd_new;
        (f_new, g_new) = pb.directional(x, t, d)?;
        evals += 1;
        gtd_new = Num::T(dot(&g_new, d));
        ls_iter += 1;
    }
    if ls_iter == max_ls {
        bracket = vec![F(0.0), t];
        bracket_f = vec![f, f_new];
        bracket_g = vec![g.clone(), g_new.clone()];
    } else if !broke {
        return Err(Error::Input(format!(
            "lbfgs: the line search has no evaluations left (max_ls {max_ls}); raise max_eval"
        )));
    }
    let mut insuf_progress = false;
    let last = bracket_f.len() - 1;
    let (mut low, mut high) = if bracket_f[0] <= bracket_f[last] { (0, 1) } else { (1, 0) };
    while !done && ls_iter < max_ls {
        if bracket[1].sub(bracket[0]).abs().mul(d_norm).lt(F(tolerance_change)) {
            break;
        }
        t = cubic(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1], None);
        let bmax = Num::pymax(bracket[0], bracket[1]);
        let bmin = Num::pymin(bracket[0], bracket[1]);
        let eps = F(0.1).mul(bmax.sub(bmin));
        if Num::pymin(bmax.sub(t), t.sub(bmin)).lt(eps) {
            if insuf_progress || t.ge(bmax) || t.le(bmin) {
                t = if t.sub(bmax).abs().lt(t.sub(bmin).abs()) { bmax.sub(eps) } else { bmin.add(eps) };
                insuf_progress = false;
            } else {
                insuf_progress = true;
            }
        } else {
            insuf_progress = false;
        }
        (f_new, g_new) = pb.directional(x, t, d)?;
        evals += 1;
        gtd_new = Num::T(dot(&g_new, d));
        ls_iter += 1;
        if armijo(t, f_new) || f_new >= bracket_f[low] {
            bracket[high] = t;
            bracket_f[high] = f_new;
            bracket_g[high] = g_new.clone();
            bracket_gtd[high] = gtd_new;
            (low, high) = if bracket_f[0] <= bracket_f[1] { (0, 1) } else { (1, 0) };
        } else {
            if gtd_new.abs().le(F(-c2).mul(gtd)) {
                done = true;
            } else if gtd_new.mul(bracket[high].sub(bracket[low])).ge(F(0.0)) {
                bracket[high] = bracket[low];
                bracket_f[high] = bracket_f[low];
                bracket_g[high] = bracket_g[low].clone();
                bracket_gtd[high] = bracket_gtd[low];
            }
            bracket[low] = t;
            bracket_f[low] = f_new;
            bracket_g[low] = g_new.clone();
            bracket_gtd[low] = gtd_new;
        }
    }
    Ok((bracket_f[low], bracket_g[low].clone(), bracket[low], evals))
}

impl Lbfgs {
    /// L-BFGS with configuration `cfg`.
    pub fn new(cfg: LbfgsConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Lbfgs { cfg, state: LbfgsState::default(), numel: None, key: None })
    }

    /// Builds it from JSON hyperparameters.
    pub fn from_json(v: &Value) -> Result<Self> {
        Lbfgs::new(LbfgsConfig::from_json(v)?)
    }

    /// The registry entry.
    pub fn spec() -> OptimizerSpec {
        OptimizerSpec::of_config::<LbfgsConfig>(|v| Ok(Box::new(Lbfgs::from_json(v)?)))
    }

    /// Closure evaluations and iterations so far (torch's `func_evals`,
    /// `n_iter`).
    pub fn counts(&self) -> (u64, u64) {
        (self.state.func_evals, self.state.n_iter)
    }

    /// One step of torch's `LBFGS.step(closure)`: `closure` evaluates the
    /// loss at the parameters' values and writes their gradients; returns
    /// the loss of the first evaluation. On error the state is unchanged
    /// (the parameters may have moved).
    pub fn step_with_closure(&mut self, params: &mut [ParamMut<'_>], closure: &mut Closure<'_>) -> Result<f64> {
        check_each(params)?;
        let n: usize = params.iter().map(|p| p.value.len()).sum();
        if n == 0 {
            return closure(params);
        }
        if let Some(m) = self.numel {
            if m != n {
                return Err(Error::Shape(format!(
                    "lbfgs: the parameters hold {n} values, the optimizer's state {m}"
                )));
            }
        }
        let mut st = self.state.clone();
        let cfg = &self.cfg;
        let max_iter = cfg.max_iter;
        let max_eval = cfg.max_eval.unwrap_or(max_iter * 5 / 4);
        let (tol_grad, tol_change) = (F(cfg.tolerance_grad), cfg.tolerance_change);
        let mut pb = Problem { params, closure, maximize: cfg.maximize };

        let (mut loss, mut flat_grad) = pb.eval()?;
        let orig_loss = if cfg.maximize { -loss } else { loss };
        let mut current_evals = 1u64;
        st.func_evals += 1;
        let mut opt_cond = Num::T(abs_max(&flat_grad)).le(tol_grad);
        if !opt_cond {
            let mut d = std::mem::take(&mut st.d);
            let mut t = st.t.unwrap_or(F(0.0));
            let mut h_diag = st.h_diag.unwrap_or(F(1.0));
            let mut n_iter = 0u64;
            while n_iter < max_iter {
                n_iter += 1;
                st.n_iter += 1;
                if st.n_iter == 1 {
                    d = flat_grad.iter().map(|&g| -g).collect();
                    st.old_dirs.clear();
                    st.old_stps.clear();
                    st.ro.clear();
                    h_diag = F(1.0);
                } else {
                    let y: Vec<f32> = flat_grad.iter().zip(&st.prev_flat_grad).map(|(&a, &b)| a - b).collect();
                    let tf = t.f32();
                    let s: Vec<f32> = d.iter().map(|&x| x * tf).collect();
                    let ys = dot(&y, &s);
                    if ys > 1e-10f64 as f32 {
                        if st.old_dirs.len() as u64 == cfg.history_size {
                            st.old_dirs.remove(0);
                            st.old_stps.remove(0);
                            st.ro.remove(0);
                        }
                        let yy = dot(&y, &y);
                        st.old_dirs.push(y);
                        st.old_stps.push(s);
                        st.ro.push(1.0 / ys);
                        h_diag = Num::T(ys / yy);
                    }
                    let num_old = st.old_dirs.len();
                    let mut al = vec![0.0f32; num_old];
                    let mut q: Vec<f32> = flat_grad.iter().map(|&g| -g).collect();
                    for i in (0..num_old).rev() {
                        al[i] = dot(&st.old_stps[i], &q) * st.ro[i];
                        axpy(&mut q, -al[i], &st.old_dirs[i]);
                    }
                    let h = h_diag.f32();
                    let mut r: Vec<f32> = q.iter().map(|&x| x * h).collect();
                    // Index loop over three parallel histories, as torch's.
                    #[allow(clippy::needless_range_loop)]
                    for i in 0..num_old {
                        let be_i = dot(&st.old_dirs[i], &r) * st.ro[i];
                        axpy(&mut r, al[i] - be_i, &st.old_stps[i]);
                    }
                    d = r;
                }
                st.prev_flat_grad.clone_from(&flat_grad);
                let prev_loss = loss;
                st.prev_loss = Some(loss);
                t = if st.n_iter == 1 {
                    let inv = Num::T(1.0 / abs_sum(&flat_grad));
                    Num::pymin(F(1.0), inv).mul(F(cfg.lr))
                } else {
                    F(cfg.lr)
                };
                let gtd = Num::T(dot(&flat_grad, &d));
                if gtd.gt(F(-tol_change)) {
                    break;
                }
                let mut ls_func_evals = 0;
                if cfg.line_search_fn.is_some() {
                    let x_init = pb.values();
                    let max_ls = max_eval as i64 - current_evals as i64;
                    let (l, g, tt, evals) = strong_wolfe(&mut pb, &x_init, t, &d, loss, &flat_grad, gtd, max_ls)?;
                    (loss, flat_grad, t, ls_func_evals) = (l, g, tt, evals);
                    pb.add_dir(t, &d);
                    opt_cond = Num::T(abs_max(&flat_grad)).le(tol_grad);
                } else {
                    pb.add_dir(t, &d);
                    if n_iter != max_iter {
                        (loss, flat_grad) = pb.eval()?;
                        opt_cond = Num::T(abs_max(&flat_grad)).le(tol_grad);
                        ls_func_evals = 1;
                    }
                }
                current_evals += ls_func_evals;
                st.func_evals += ls_func_evals;
                if n_iter == max_iter || current_evals >= max_eval || opt_cond {
                    break;
                }
                let tf = t.f32();
                let step_max = d.iter().fold(0.0f32, |m, &x| {
                    let a = (x * tf).abs();
                    if a > m || a.is_nan() { a } else { m }
                });
                if Num::T(step_max).le(F(tol_change)) {
                    break;
                }
                if (loss - prev_loss).abs() < tol_change {
                    break;
                }
            }
            st.d = d;
            st.t = Some(t);
            st.h_diag = Some(h_diag);
        }
        self.state = st;
        self.numel = Some(n);
        self.key = Some(pb.params[0].name.to_string());
        Ok(orig_loss)
    }
}

const P: &str = "lbfgs";

impl Optimizer for Lbfgs {
    super::config_methods!(LbfgsConfig, cfg);

    /// A step with the closure of the replay contract: every evaluation
    /// returns the gradients given with this step and the loss 0.
    fn step(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        let given: Vec<Vec<f32>> = params.iter().map(|p| p.grad.to_vec()).collect();
        let mut closure = |ps: &mut [ParamMut<'_>]| -> Result<f64> {
            for (p, g) in ps.iter_mut().zip(&given) {
                p.grad.copy_from_slice(g);
            }
            Ok(0.0)
        };
        self.step_with_closure(params, &mut closure).map(|_| ())
    }

    fn step_with_closure(&mut self, params: &mut [ParamMut<'_>], closure: &mut Closure<'_>) -> Result<f64> {
        Lbfgs::step_with_closure(self, params, closure)
    }

    fn state_dict(&self) -> StateDict {
        let st = &self.state;
        let key = self.key.as_deref().unwrap_or(P);
        let mut sd = StateDict::default();
        let mut put = |name: String, values: Vec<f32>| {
            sd.tensors.push(StateEntry { param: key.into(), name, values });
        };
        if !st.d.is_empty() {
            put("d".into(), st.d.clone());
        }
        if !st.prev_flat_grad.is_empty() {
            put("prev_flat_grad".into(), st.prev_flat_grad.clone());
        }
        if !st.ro.is_empty() {
            put("ro".into(), st.ro.clone());
        }
        for (i, (y, s)) in st.old_dirs.iter().zip(&st.old_stps).enumerate() {
            put(format!("old_dirs.{i:05}"), y.clone());
            put(format!("old_stps.{i:05}"), s.clone());
        }
        sd.tensors.sort_by(|a, b| (&a.param, &a.name).cmp(&(&b.param, &b.name)));
        let sc = &mut sd.scalars;
        sc.insert(format!("{P}/func_evals"), st.func_evals as f64);
        sc.insert(format!("{P}/n_iter"), st.n_iter as f64);
        sc.insert("step".into(), st.n_iter as f64);
        if let Some(t) = st.t {
            let (v, k) = t.to_scalars();
            sc.insert(format!("{P}/t"), v);
            sc.insert(format!("{P}/t_is_f32"), k);
        }
        if let Some(h) = st.h_diag {
            let (v, k) = h.to_scalars();
            sc.insert(format!("{P}/h_diag"), v);
            sc.insert(format!("{P}/h_diag_is_f32"), k);
        }
        if let Some(l) = st.prev_loss {
            sc.insert(format!("{P}/prev_loss"), l);
        }
        if let Some(n) = self.numel {
            sc.insert(format!("{P}/numel"), n as f64);
        }
        sd
    }

    fn load_state_dict(&mut self, dict: &StateDict) -> Result<()> {
        let sc = |k: &str| dict.scalars.get(&format!("{P}/{k}")).copied();
        let count = |k: &str| -> Result<u64> {
            match sc(k) {
                None => Ok(0),
                Some(v) if v >= 0.0 && v.fract() == 0.0 && v < 9e15 => Ok(v as u64),
                Some(v) => Err(Error::Input(format!("lbfgs state: '{k}' = {v} is not a count"))),
            }
        };
        let mut st = LbfgsState {
            func_evals: count("func_evals")?,
            n_iter: count("n_iter")?,
            t: sc("t").map(|v| Num::from_scalars(v, sc("t_is_f32").unwrap_or(0.0))),
            h_diag: sc("h_diag").map(|v| Num::from_scalars(v, sc("h_diag_is_f32").unwrap_or(0.0))),
            prev_loss: sc("prev_loss"),
            ..LbfgsState::default()
        };
        let numel = match sc("numel") {
            None => None,
            Some(_) => Some(count("numel")? as usize),
        };
        let mut dirs = Vec::new();
        let mut stps = Vec::new();
        let key = dict.tensors.first().map(|e| e.param.clone());
        for e in &dict.tensors {
            if Some(&e.param) != key.as_ref() {
                return Err(Error::Input(format!(
                    "lbfgs state: entry '{}/{}' is not under the parameter key of the others",
                    e.param, e.name
                )));
            }
            if let Some(n) = numel {
                if e.name != "ro" && e.values.len() != n {
                    return Err(Error::Shape(format!(
                        "lbfgs state: '{}' holds {} values, expected {n}",
                        e.name,
                        e.values.len()
                    )));
                }
            }
            match e.name.as_str() {
                "d" => st.d = e.values.clone(),
                "prev_flat_grad" => st.prev_flat_grad = e.values.clone(),
                "ro" => st.ro = e.values.clone(),
                name if name.starts_with("old_dirs.") => dirs.push((name.to_string(), e.values.clone())),
                name if name.starts_with("old_stps.") => stps.push((name.to_string(), e.values.clone())),
                other => return Err(Error::Input(format!("lbfgs state: unknown buffer '{other}'"))),
            }
        }
        dirs.sort_by(|a, b| a.0.cmp(&b.0));
        stps.sort_by(|a, b| a.0.cmp(&b.0));
        if dirs.len() != stps.len() || dirs.len() != st.ro.len() || dirs.len() as u64 > self.cfg.history_size {
            return Err(Error::Input(format!(
                "lbfgs state: {} directions, {} steps and {} ro values (history_size {})",
                dirs.len(),
                stps.len(),
                st.ro.len(),
                self.cfg.history_size
            )));
        }
        st.old_dirs = dirs.into_iter().map(|(_, v)| v).collect();
        st.old_stps = stps.into_iter().map(|(_, v)| v).collect();
        self.state = st;
        self.numel = numel;
        self.key = key;
        Ok(())
    }
}
