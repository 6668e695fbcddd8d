//! The loops of elementwise kernels, written once. A kernel gives the
//! arithmetic of one element as a function and one of these loops runs it
//! over the chunk the way [`Elementwise::kernel`](crate::rule::Elementwise)
//! asks: every slice cut to the chunk's length (no bounds checks in the
//! loop), values computed first and stored unconditionally (the loop
//! vectorizes). Each loop is `#[inline(always)]` and generic over the
//! element function, so a kernel is still one monomorphized loop with the
//! element's arithmetic inlined in it: no call and no branch per element
//! that the hand-written loop did not have.
//!
//! The state buffers are the first ones of the chunk, in
//! [`ParamState::BUFFERS`](crate::state::ParamState) order; the digit in a
//! loop's name says how many the element reads and writes.
//! - `direct*`: the element returns the new parameter value itself, for
//!   rules whose step is not one `x - lr * u`
//!   ([`elementwise_rule!(direct)`](crate::elementwise_rule)); the sink is
//!   not used.
//! - `sink*`: the element returns a [`Step`]: the parameter after the
//!   rule's own weight decay, the gradient as the rule used it and the
//!   step `lr * u`, which goes through the [`Apply`] sink (the plain update
//!   `x - lr * u`, or the cautious mask).

use crate::quant;
use crate::rule::{Apply, Bf16Dest, Chunk, MAX_BUFFERS};

/// The chunk with its state buffers `order[0]`, `order[1]`, ... first, for
/// a kernel whose step reads buffers that are not the first ones (the
/// others are left out).
#[inline(always)]
pub fn select<const K: usize>(mut c: Chunk<'_>, order: [usize; K]) -> Chunk<'_> {
    let mut state: [&mut [f32]; MAX_BUFFERS] = Default::default();
    let mut dest: [Option<Bf16Dest<'_>>; MAX_BUFFERS] = Default::default();
    for ((slot, d), &k) in state.iter_mut().zip(dest.iter_mut()).zip(&order) {
        *slot = std::mem::take(&mut c.state[k]);
        *d = c.packed.dest[k].take();
    }
    c.packed.dest = dest;
    Chunk { state, ..c }
}

/// One element's step for the [`Apply`] sink (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// The parameter after the rule's own weight decay.
    pub x: f32,
    /// The gradient as the rule used it (after L2 decay).
    pub g: f32,
    /// Learning rate of the step.
    pub lr: f32,
    /// Direction: the plain update is `x - lr * u`.
    pub u: f32,
}

impl Step {
    /// Ends the element: its step through `apply`, the result stored in `x`.
    #[inline(always)]
    pub(crate) fn finish<A: Apply>(self, apply: &mut A, x: &mut f32) {
        let mut xi = self.x;
        apply.apply(&mut xi, self.g, self.lr, self.u);
        *x = xi;
    }
}

/// Runs `$run(s, x, g, lanes..., f)` on a direct kernel's chunk: its
/// first state buffers as [`Bf16Lane`]s where the sink packs
/// ([`Apply::PACKS`]) and the chunk has bf16 destinations for all of them,
/// else as f32 slices (see [`with_lanes!`]).
macro_rules! direct_lanes {
    ($s:ident, $c:ident, $apply:ident, $f:expr, $k:literal, $run:ident, [$($l:ident / $d:ident),+]) => {{
        let mut c = $c;
        let n = c.value.len();
        let packed = if packs($apply) { c.packed.first::<$k>() } else { None };
        let (x, g) = (c.value, &c.grad[..n]);
        match packed {
            Some([$($d),+]) => $run($s, x, g, $(Bf16Lane::new($d, n),)+ $f),
            None => {
                let [$($l,)+ ..] = c.state;
                $run($s, x, g, $(&mut $l[..n],)+ $f)
            }
        }
    }};
}

/// `x, a <- f(s, x, g, a)` on every element (one state buffer). `apply`
/// is the kernel's sink, read only for [`Apply::PACKS`]: these rules write
/// the parameter themselves.
#[inline(always)]
pub fn direct1<A: Apply, S>(
    s: &S,
    c: Chunk<'_>,
    apply: &A,
    f: impl Fn(&S, f32, f32, f32) -> (f32, f32),
) {
    #[inline(always)]
    fn run<S>(
        s: &S,
        x: &mut [f32],
        g: &[f32],
        mut a: impl Lane,
        f: impl Fn(&S, f32, f32, f32) -> (f32, f32),
    ) {
        for (i, (x, &g)) in x.iter_mut().zip(g).enumerate() {
            let (xi, ai) = f(s, *x, g, a.get(i));
            *x = xi;
            a.put(i, ai);
        }
    }
    direct_lanes!(s, c, apply, f, 1, run, [a / da])
}

/// `x, a, b <- f(s, x, g, a, b)` on every element (two state buffers).
#[inline(always)]
pub fn direct2<A: Apply, S>(
    s: &S,
    c: Chunk<'_>,
    apply: &A,
    f: impl Fn(&S, f32, f32, f32, f32) -> (f32, f32, f32),
) {
    direct2_with(s, c, apply, NoInput, |s, x, g, a, b, _| f(s, x, g, a, b))
}

/// [`direct2`] with a fifth input per element, `e` ([`Input`]).
#[inline(always)]
fn direct2_with<A: Apply, S, E: Input>(
    s: &S,
    c: Chunk<'_>,
    apply: &A,
    e: E,
    f: impl Fn(&S, f32, f32, f32, f32, f32) -> (f32, f32, f32),
) {
    #[inline(always)]
    fn run<S, E: Input>(
        (s, e): (&S, E),
        x: &mut [f32],
        g: &[f32],
        mut a: impl Lane,
        mut b: impl Lane,
        f: impl Fn(&S, f32, f32, f32, f32, f32) -> (f32, f32, f32),
    ) {
        let e = e.cut(x.len());
        for (i, (x, &g)) in x.iter_mut().zip(g).enumerate() {
            let (xi, ai, bi) = f(s, *x, g, a.get(i), b.get(i), e.at(i));
            *x = xi;
            a.put(i, ai);
            b.put(i, bi);
        }
    }
    let se = (s, e);
    direct_lanes!(se, c, apply, f, 2, run, [a / da, b / db])
}

/// `x, a, b, d <- f(s, x, g, a, b, d)` on every element (three state buffers).
#[inline(always)]
pub fn direct3<A: Apply, S>(
    s: &S,
    c: Chunk<'_>,
    apply: &A,
    f: impl Fn(&S, f32, f32, f32, f32, f32) -> (f32, f32, f32, f32),
) {
    #[inline(always)]
    fn run<S>(
        s: &S,
        x: &mut [f32],
        g: &[f32],
        mut a: impl Lane,
        mut b: impl Lane,
        mut d: impl Lane,
        f: impl Fn(&S, f32, f32, f32, f32, f32) -> (f32, f32, f32, f32),
    ) {
        for (i, (x, &g)) in x.iter_mut().zip(g).enumerate() {
            let (xi, ai, bi, di) = f(s, *x, g, a.get(i), b.get(i), d.get(i));
            *x = xi;
            a.put(i, ai);
            b.put(i, bi);
            d.put(i, di);
        }
    }
    direct_lanes!(s, c, apply, f, 3, run, [a / da, b / db, d / dd])
}

/// [`direct2`] with the chunk's Hessian estimate `e` as a fifth input:
/// `with(s, x, g, a, b, e)` when the step carries an estimate, else
/// `without(s, x, g, a, b, 0)`.
#[inline(always)]
pub fn direct2_hessian<A: Apply, S>(
    s: &S,
    c: Chunk<'_>,
    apply: &A,
    with: impl Fn(&S, f32, f32, f32, f32, f32) -> (f32, f32, f32),
    without: impl Fn(&S, f32, f32, f32, f32, f32) -> (f32, f32, f32),
) {
    match c.hessian {
        Some(e) => direct2_with(s, c, apply, e, with),
        None => direct2_with(s, c, apply, NoInput, without),
    }
}

/// A per-element input of a loop besides the gradient and the state: the
/// chunk's Hessian estimate (a slice), or none ([`NoInput`], read as 0).
pub(crate) trait Input: Copy {
    /// The input cut to the chunk's `n` elements (no bounds checks in the
    /// loop).
    fn cut(self, n: usize) -> Self;
    /// Element `i`.
    fn at(self, i: usize) -> f32;
}

/// No per-element input: every element reads 0.
#[derive(Clone, Copy)]
pub(crate) struct NoInput;

impl Input for NoInput {
    #[inline(always)]
    fn cut(self, _: usize) -> Self {
        self
    }

    #[inline(always)]
    fn at(self, _: usize) -> f32 {
        0.0
    }
}

impl Input for &[f32] {
    #[inline(always)]
    fn cut(self, n: usize) -> Self {
        &self[..n]
    }

    #[inline(always)]
    fn at(self, i: usize) -> f32 {
        self[i]
    }
}

/// The loop of every `sink*` kernel: `sink_loop!(x, apply, |i, xi| step)`
/// runs `step` (element `i`'s [`Step`] from `xi = x[i]`; it writes the
/// element's state) for every element and ends it through the sink:
/// applied at once, or, when the sink records ([`Apply::record`], the
/// fused cautious mask), written to its slots in the same vectorized pass,
/// as [`Apply::apply`] of the mask would record it. A macro, not a
/// function taking a closure: the element's arithmetic must be inlined
/// into the loop, which a closure called from two loops is not.
macro_rules! sink_loop {
    ($x:ident, $apply:ident, |$i:ident, $xi:ident| $step:expr) => {{
        let n = $x.len();
        if let Some($crate::rule::Slots { u, lr, kept }) = $apply.record(n) {
            let (u, lr) = (&mut u[..n], &mut lr[..n]);
            let mut k = 0usize;
            for $i in 0..n {
                let $xi = $x[$i];
                let s: $crate::optim::each::Step = $step;
                $x[$i] = s.x;
                // The product in f32, as the reference: an underflow masks.
                let keep = s.u * s.g > 0.0;
                k += keep as usize;
                u[$i] = if keep { s.u } else { s.u * 0.0 };
                lr[$i] = s.lr;
            }
            *kept += k;
        } else {
            for $i in 0..n {
                let $xi = $x[$i];
                let s: $crate::optim::each::Step = $step;
                s.finish($apply, &mut $x[$i]);
            }
        }
    }};
}
pub(crate) use sink_loop;

/// No state: `f(x, g)` gives each element's [`Step`].
#[inline(always)]
pub fn sink0<A: Apply>(c: Chunk<'_>, apply: &mut A, f: impl Fn(f32, f32) -> Step) {
    let n = c.value.len();
    let (x, g) = (c.value, &c.grad[..n]);
    sink_loop!(x, apply, |i, xi| f(xi, g[i]));
}

/// One state buffer as an element loop reads and writes it: an f32 slice,
/// or ([`Bf16Lane`]) a decoded copy read and new values rounded to bf16.
pub(crate) trait Lane {
    /// Element `i`.
    fn get(&self, i: usize) -> f32;
    /// Stores element `i`'s new value. A loop puts every element once, in
    /// index order ([`Bf16Lane`] counts its random stream along).
    fn put(&mut self, i: usize, v: f32);
}

impl Lane for &mut [f32] {
    #[inline(always)]
    fn get(&self, i: usize) -> f32 {
        self[i]
    }

    #[inline(always)]
    fn put(&mut self, i: usize, v: f32) {
        self[i] = v;
    }
}

/// A bf16 state buffer in an element loop: each value is read from its
/// bf16 bits and written back rounded to bf16 ([`quant::bf16_round`]) in
/// the same loop, so the conversions run on the integer ports beside the
/// rule's arithmetic instead of in passes of their own.
pub(crate) struct Bf16Lane<'s> {
    bits: &'s mut [u16],
    /// The Weyl value of the next element [`Lane::put`] stores:
    /// `base + lo * φ` first, then `φ` more per element. The loops put
    /// every element once, in index order, so this is element `i`'s
    /// `base + (lo + i) * φ` ([`quant::weyl_start`]), kept as a
    /// running sum: the vectorized loop steps it with one addition per
    /// vector instead of a multiplication.
    weyl: u32,
}

impl<'s> Bf16Lane<'s> {
    #[inline(always)]
    fn new(d: Bf16Dest<'s>, n: usize) -> Self {
        Bf16Lane {
            bits: &mut d.bits[..n],
            weyl: quant::weyl_start(d.base, d.lo),
        }
    }
}

impl Lane for Bf16Lane<'_> {
    #[inline(always)]
    fn get(&self, i: usize) -> f32 {
        f32::from_bits((self.bits[i] as u32) << 16)
    }

    #[inline(always)]
    fn put(&mut self, i: usize, v: f32) {
        self.bits[i] = quant::bf16_round_weyl(v, self.weyl);
        self.weyl = self.weyl.wrapping_add(quant::WEYL);
    }
}

/// Runs `$run(apply, x, g, e, lanes..., f)` on a chunk's first state
/// buffers (`e`: the loop's [`Input`]): as [`Bf16Lane`]s where the
/// sink packs ([`Apply::PACKS`]) and the chunk has bf16 destinations for
/// all of them, else as f32 slices. Each arm is one monomorphized loop;
/// for every sink but the packing one the first arm is compiled out.
macro_rules! with_lanes {
    ($c:ident, $apply:ident, $e:expr, $f:expr, $k:literal, $run:ident, [$($l:ident / $d:ident),+]) => {{
        let mut c = $c;
        let n = c.value.len();
        let e = $e;
        let packed = if packs(&*$apply) { c.packed.first::<$k>() } else { None };
        let (x, g) = (c.value, &c.grad[..n]);
        match packed {
            Some([$($d),+]) => $run($apply, x, g, e, $(Bf16Lane::new($d, n),)+ $f),
            None => {
                let [$($l,)+ ..] = c.state;
                $run($apply, x, g, e, $(&mut $l[..n],)+ $f)
            }
        }
    }};
}

/// [`Apply::PACKS`] of a sink.
#[inline(always)]
fn packs<A: Apply>(_: &A) -> bool {
    A::PACKS
}

/// One state buffer: `f(x, g, a)` gives the element's [`Step`] and new `a`.
#[inline(always)]
pub fn sink1<A: Apply>(c: Chunk<'_>, apply: &mut A, f: impl Fn(f32, f32, f32) -> (Step, f32)) {
    #[inline(always)]
    fn run<A: Apply>(
        apply: &mut A,
        x: &mut [f32],
        g: &[f32],
        _: NoInput,
        mut a: impl Lane,
        f: impl Fn(f32, f32, f32) -> (Step, f32),
    ) {
        sink_loop!(x, apply, |i, xi| {
            let (step, ai) = f(xi, g[i], a.get(i));
            a.put(i, ai);
            step
        });
    }
    with_lanes!(c, apply, NoInput, &f, 1, run, [a / da])
}

/// Two state buffers: `f(x, g, a, b)` gives the element's [`Step`] and
/// new `a`, `b`.
#[inline(always)]
pub fn sink2<A: Apply>(
    c: Chunk<'_>,
    apply: &mut A,
    f: impl Fn(f32, f32, f32, f32) -> (Step, f32, f32),
) {
    sink2_with(c, apply, NoInput, |x, g, a, b, _| f(x, g, a, b))
}

/// [`sink2`] with the chunk's Hessian estimate `e` as a fifth input:
/// `with(x, g, a, b, e)` when the step carries an estimate, else
/// `without(x, g, a, b, 0)`.
#[inline(always)]
pub fn sink2_hessian<A: Apply>(
    c: Chunk<'_>,
    apply: &mut A,
    with: impl Fn(f32, f32, f32, f32, f32) -> (Step, f32, f32),
    without: impl Fn(f32, f32, f32, f32, f32) -> (Step, f32, f32),
) {
    match c.hessian {
        Some(e) => sink2_with(c, apply, e, with),
        None => sink2_with(c, apply, NoInput, without),
    }
}

/// [`sink2`] with a fifth input per element, `e` ([`Input`]).
#[inline(always)]
fn sink2_with<A: Apply, E: Input>(
    c: Chunk<'_>,
    apply: &mut A,
    e: E,
    f: impl Fn(f32, f32, f32, f32, f32) -> (Step, f32, f32),
) {
    #[inline(always)]
    fn run<A: Apply, E: Input>(
        apply: &mut A,
        x: &mut [f32],
        g: &[f32],
        e: E,
        mut a: impl Lane,
        mut b: impl Lane,
        f: impl Fn(f32, f32, f32, f32, f32) -> (Step, f32, f32),
    ) {
        let e = e.cut(x.len());
        sink_loop!(x, apply, |i, xi| {
            let (step, ai, bi) = f(xi, g[i], a.get(i), b.get(i), e.at(i));
            a.put(i, ai);
            b.put(i, bi);
            step
        });
    }
    with_lanes!(c, apply, e, &f, 2, run, [a / da, b / db])
}

/// Three state buffers: `f(x, g, a, b, d)` gives the element's [`Step`]
/// and new `a`, `b`, `d`.
#[inline(always)]
pub fn sink3<A: Apply>(
    c: Chunk<'_>,
    apply: &mut A,
    f: impl Fn(f32, f32, f32, f32, f32) -> (Step, f32, f32, f32),
) {
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn run<A: Apply>(
        apply: &mut A,
        x: &mut [f32],
        g: &[f32],
        _: NoInput,
        mut a: impl Lane,
        mut b: impl Lane,
        mut d: impl Lane,
        f: impl Fn(f32, f32, f32, f32, f32) -> (Step, f32, f32, f32),
    ) {
        sink_loop!(x, apply, |i, xi| {
            let (step, ai, bi, di) = f(xi, g[i], a.get(i), b.get(i), d.get(i));
            a.put(i, ai);
            b.put(i, bi);
            d.put(i, di);
            step
        });
    }
    with_lanes!(c, apply, NoInput, &f, 3, run, [a / da, b / db, d / dd])
}
