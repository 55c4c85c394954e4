//! The classic reverse-mode tape: the baseline jitad is measured against.
//!
//! This is a Wengert list recorded by operator overloading, the way PyTorch's autograd,
//! ADOL-C and micrograd work, built for speed as the good C++ taping tools are: flat
//! arrays of opcodes, operand indices, values and local partial derivatives; no per-node
//! heap allocation, no reference counting; the reverse sweep is one pass of
//! multiply-adds over the arrays.
//!
//! Two ways to use it, both measured by the benches:
//! - **record per call** (dynamic, PyTorch-style): [`Tape::record`] then
//!   [`Tape::gradient`] every call; the tape's buffers are reused, so steady state does
//!   not allocate;
//! - **record once, replay** (ADOL-C-style): [`Tape::record`] once, then
//!   [`Tape::replay`] re-evaluates the opcodes at new inputs and sweeps back.
//!
//! [`TapeVar`] implements num-traits' `Float`, so the same generic function that runs
//! natively and traces into IR records on the tape. Every elementary function is one tape
//! operation with its own partial (as in ADOL-C), not a composite.
//!
//! Misuse is an error, never a panic or a wrong gradient: a [`TapeVar`] carries the id of
//! the recording that made it, so one kept from an earlier recording (or another tape)
//! and used in a new one makes [`Tape::record`] fail with [`TapeError::StaleVar`]; a
//! closure that panics leaves the thread free to record again and the tape empty; a tape
//! with no finished recording answers [`TapeError::NotRecorded`].
//!
//! Replay assumes the control flow of the recording: a comparison answered differently at
//! new inputs is not detected (ADOL-C's replay has the same limitation unless its
//! branch-switch return codes are checked). jitad's traced IR records guards instead.

use num_traits::{Float, FromPrimitive, Num, NumCast, One, ToPrimitive, Zero};
use std::cell::RefCell;
use std::num::FpCategory;
use std::ops::{
    Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Rem, RemAssign, Sub, SubAssign,
};
use std::sync::atomic::{AtomicU32, Ordering};

/// Why recording failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TapeError {
    /// `record` was called while another recording on this thread was running.
    #[error("a tape is already recording on this thread")]
    Nested,
    /// The function returned a value that was not recorded on this tape.
    #[error("the recorded function returned a value from another tape")]
    ForeignOutput,
    /// The function used a [`TapeVar`] recorded by an earlier recording (or another tape);
    /// its node does not exist on this recording.
    #[error("the recorded function used a TapeVar from an earlier recording or another tape")]
    StaleVar,
    /// `gradient` or `replay` on a tape with no finished recording (never recorded, or
    /// the last recording failed or panicked).
    #[error("the tape holds no finished recording")]
    NotRecorded,
    /// Wrong buffer length.
    #[error("expected {expected} values, got {got}")]
    Length {
        /// Expected length.
        expected: usize,
        /// Given length.
        got: usize,
    },
}

/// One tape operation. Unary ops ignore their second operand (node 0, a sink).
#[derive(Clone, Copy, Debug)]
enum Code {
    Input,
    Const,
    Add,
    Sub,
    Mul,
    Div,
    Neg,
    Sqrt,
    Exp,
    ExpM1,
    Ln,
    Ln1p,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Asinh,
    Acosh,
    Atanh,
    Cbrt,
    Abs,
    Powi(i32),
    Powf,
    Atan2,
    Hypot,
    Max,
    Min,
    /// A piecewise-constant function (floor, ceil, round, trunc, signum): value
    /// recorded, derivative zero.
    Step(fn(f64) -> f64),
}

/// Value and partials of `code` at operand values `a`, `b`: the one place each tape
/// op's calculus lives, used when recording and when replaying.
#[inline(always)]
fn eval(code: Code, a: f64, b: f64) -> (f64, f64, f64) {
    match code {
        Code::Input | Code::Const => (a, 0.0, 0.0),
        Code::Add => (a + b, 1.0, 1.0),
        Code::Sub => (a - b, 1.0, -1.0),
        Code::Mul => (a * b, b, a),
        Code::Div => {
            let r = 1.0 / b;
            let v = a * r;
            (a / b, r, -v * r)
        }
        Code::Neg => (-a, -1.0, 0.0),
        Code::Sqrt => {
            let v = a.sqrt();
            (v, 0.5 / v, 0.0)
        }
        Code::Exp => {
            let v = a.exp();
            (v, v, 0.0)
        }
        Code::ExpM1 => {
            let v = a.exp_m1();
            (v, v + 1.0, 0.0)
        }
        Code::Ln => (a.ln(), 1.0 / a, 0.0),
        Code::Ln1p => (a.ln_1p(), 1.0 / (1.0 + a), 0.0),
        Code::Sin => (a.sin(), a.cos(), 0.0),
        Code::Cos => (a.cos(), -a.sin(), 0.0),
        Code::Tan => {
            let v = a.tan();
            (v, 1.0 + v * v, 0.0)
        }
        Code::Asin => (a.asin(), 1.0 / (1.0 - a * a).sqrt(), 0.0),
        Code::Acos => (a.acos(), -1.0 / (1.0 - a * a).sqrt(), 0.0),
        Code::Atan => (a.atan(), 1.0 / (1.0 + a * a), 0.0),
        Code::Sinh => (a.sinh(), a.cosh(), 0.0),
        Code::Cosh => (a.cosh(), a.sinh(), 0.0),
        Code::Tanh => {
            let v = a.tanh();
            (v, 1.0 - v * v, 0.0)
        }
        Code::Asinh => (a.asinh(), 1.0 / (a * a + 1.0).sqrt(), 0.0),
        Code::Acosh => (a.acosh(), 1.0 / (a * a - 1.0).sqrt(), 0.0),
        Code::Atanh => (a.atanh(), 1.0 / (1.0 - a * a), 0.0),
        Code::Cbrt => {
            let v = a.cbrt();
            (v, 1.0 / (3.0 * v * v), 0.0)
        }
        Code::Abs => (a.abs(), if a < 0.0 { -1.0 } else { 1.0 }, 0.0),
        Code::Powi(n) => (a.powi(n), n as f64 * a.powi(n - 1), 0.0),
        Code::Powf => {
            let v = a.powf(b);
            // d/db a^b = a^b ln a; at a = 0 the b-partial is taken as 0.
            let db = if a == 0.0 { 0.0 } else { v * a.ln() };
            (v, b * a.powf(b - 1.0), db)
        }
        Code::Atan2 => {
            let r = 1.0 / (a * a + b * b);
            (a.atan2(b), b * r, -a * r)
        }
        Code::Hypot => {
            let v = a.hypot(b);
            (v, a / v, b / v)
        }
        // Ties go to the first operand, like f64::max/min.
        Code::Max => {
            if a >= b || b.is_nan() {
                (a, 1.0, 0.0)
            } else {
                (b, 0.0, 1.0)
            }
        }
        Code::Min => {
            if a <= b || b.is_nan() {
                (a, 1.0, 0.0)
            } else {
                (b, 0.0, 1.0)
            }
        }
        Code::Step(f) => (f(a), 0.0, 0.0),
    }
}

/// A recorded computation: flat arrays indexed by node. Node 0 is a sink for the unused
/// operand of unary ops; inputs are nodes 1..=n.
#[derive(Clone, Debug, Default)]
pub struct Tape {
    code: Vec<Code>,
    args: Vec<[u32; 2]>,
    val: Vec<f64>,
    partial: Vec<[f64; 2]>,
    adj: Vec<f64>,
    inputs: usize,
    output: u32,
    /// Id of the recording the arrays hold (0: none finished).
    gen: u32,
    /// A `TapeVar` of another recording was used (recorded as a constant meanwhile).
    stale: bool,
}

thread_local! {
    static ACTIVE: RefCell<Option<Tape>> = const { RefCell::new(None) };
}

/// Recording ids, process-wide so a `TapeVar` moved to another thread is caught too.
/// 0 is never handed out (constants and "no recording"); an id repeats only after 2³²
/// recordings, so a var would have to outlive that many to go unnoticed.
static NEXT_GEN: AtomicU32 = AtomicU32::new(1);

fn next_gen() -> u32 {
    loop {
        let g = NEXT_GEN.fetch_add(1, Ordering::Relaxed);
        if g != 0 {
            return g;
        }
    }
}

/// A scalar being recorded on the active tape (or a constant, `idx == 0`), tagged with
/// the id of its recording. 16 bytes, like `(u32, f64)` with padding.
#[derive(Clone, Copy, Debug)]
pub struct TapeVar {
    idx: u32,
    gen: u32,
    val: f64,
}

impl TapeVar {
    /// The recorded value.
    pub fn value(self) -> f64 {
        self.val
    }

    fn constant(val: f64) -> Self {
        TapeVar {
            idx: 0,
            gen: 0,
            val,
        }
    }

    /// Records `code` on the active tape; without one (used outside `record`), just
    /// computes the value.
    #[inline]
    fn push(code: Code, a: TapeVar, b: TapeVar) -> TapeVar {
        let (v, pa, pb) = eval(code, a.val, b.val);
        if a.idx == 0 && b.idx == 0 {
            return TapeVar::constant(v);
        }
        ACTIVE.with(|t| match t.borrow_mut().as_mut() {
            Some(tape) => {
                let ia = tape.node_of(a);
                let ib = tape.node_of(b);
                TapeVar {
                    idx: tape.push_node(code, [ia, ib], v, [pa, pb]),
                    gen: tape.gen,
                    val: v,
                }
            }
            None => TapeVar::constant(v),
        })
    }

    fn unary(self, code: Code) -> TapeVar {
        Self::push(code, self, TapeVar::constant(0.0))
    }
}

impl Tape {
    /// An empty tape.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of recorded operations (inputs and constants included).
    pub fn len(&self) -> usize {
        self.code.len().saturating_sub(1)
    }

    /// True before anything was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push_node(&mut self, code: Code, args: [u32; 2], v: f64, p: [f64; 2]) -> u32 {
        let i = self.code.len() as u32;
        self.code.push(code);
        self.args.push(args);
        self.val.push(v);
        self.partial.push(p);
        i
    }

    /// The node holding `x`: constants are recorded as `Const` nodes so replay sees them.
    /// A var of another recording is recorded as a constant too (its index means nothing
    /// here) and marks the recording stale, so `record` fails.
    #[inline]
    fn node_of(&mut self, x: TapeVar) -> u32 {
        if x.idx != 0 && x.gen == self.gen {
            x.idx
        } else {
            self.stale |= x.idx != 0;
            self.push_node(Code::Const, [0, 0], x.val, [0.0, 0.0])
        }
    }

    /// Empties the arrays (keeping their capacity) and forgets the recording.
    fn reset(&mut self) {
        self.code.clear();
        self.args.clear();
        self.val.clear();
        self.partial.clear();
        self.inputs = 0;
        self.output = 0;
        self.gen = 0;
        self.stale = false;
    }

    fn check_recorded(&self) -> Result<(), TapeError> {
        if self.gen == 0 {
            Err(TapeError::NotRecorded)
        } else {
            Ok(())
        }
    }

    /// Clears the tape and records `f` at `x`; returns f(x). The buffers are reused, so
    /// recording again allocates nothing once they are large enough.
    pub fn record(
        &mut self,
        x: &[f64],
        f: impl FnOnce(&[TapeVar]) -> TapeVar,
    ) -> Result<f64, TapeError> {
        let busy = ACTIVE.with(|t| t.try_borrow().map_or(true, |slot| slot.is_some()));
        if busy {
            return Err(TapeError::Nested);
        }
        let mut tape = std::mem::take(self);
        tape.reset();
        let gen = next_gen();
        tape.gen = gen;
        tape.push_node(Code::Const, [0, 0], 0.0, [0.0, 0.0]);
        tape.inputs = x.len();
        let vars: Vec<TapeVar> = x
            .iter()
            .map(|&v| TapeVar {
                idx: tape.push_node(Code::Input, [0, 0], v, [0.0, 0.0]),
                gen,
                val: v,
            })
            .collect();
        ACTIVE.with(|t| *t.borrow_mut() = Some(tape));
        // If `f` panics, the guard's drop takes the tape back (empty) so the thread can
        // record again.
        let guard = Recording { home: self };
        let y = f(&vars);
        let Some(mut tape) = guard.finish() else {
            // Unreachable while `f` cannot reach ACTIVE other than through `push`, which
            // never removes the tape; an error rather than a panic all the same.
            return Err(TapeError::NotRecorded);
        };
        let foreign = y.idx != 0 && y.gen != gen;
        let stale = tape.stale;
        let out = tape.node_of(y);
        if foreign || stale {
            tape.reset();
            *self = tape;
            return Err(if foreign {
                TapeError::ForeignOutput
            } else {
                TapeError::StaleVar
            });
        }
        tape.output = out;
        *self = tape;
        Ok(y.val)
    }

    /// The reverse sweep: the gradient of the recorded output with respect to the inputs,
    /// at the recorded (or last replayed) point.
    pub fn gradient(&mut self, g: &mut [f64]) -> Result<(), TapeError> {
        self.check_recorded()?;
        if g.len() != self.inputs {
            return Err(TapeError::Length {
                expected: self.inputs,
                got: g.len(),
            });
        }
        let n = self.code.len();
        self.adj.clear();
        self.adj.resize(n, 0.0);
        if n > 1 {
            self.adj[self.output as usize] = 1.0;
        }
        for i in (1..n).rev() {
            let a = self.adj[i];
            let [ia, ib] = self.args[i];
            let [pa, pb] = self.partial[i];
            self.adj[ia as usize] += a * pa;
            self.adj[ib as usize] += a * pb;
        }
        g.copy_from_slice(&self.adj[1..=self.inputs]);
        Ok(())
    }

    /// Replays the recorded operations at new inputs `x` (same control flow as the
    /// recording), then sweeps back: returns f(x) and writes the gradient into `g`.
    pub fn replay(&mut self, x: &[f64], g: &mut [f64]) -> Result<f64, TapeError> {
        self.check_recorded()?;
        if x.len() != self.inputs {
            return Err(TapeError::Length {
                expected: self.inputs,
                got: x.len(),
            });
        }
        self.val[1..=self.inputs].copy_from_slice(x);
        for i in self.inputs + 1..self.code.len() {
            let code = self.code[i];
            if matches!(code, Code::Const) {
                continue;
            }
            let [ia, ib] = self.args[i];
            let (v, pa, pb) = eval(code, self.val[ia as usize], self.val[ib as usize]);
            self.val[i] = v;
            self.partial[i] = [pa, pb];
        }
        self.gradient(g)?;
        Ok(self.val[self.output as usize])
    }
}

/// The tape being recorded, on loan to the thread's `ACTIVE` slot; dropping the guard
/// (normally or while unwinding out of the recorded closure) takes it back.
struct Recording<'a> {
    home: &'a mut Tape,
}

impl Recording<'_> {
    /// Takes the finished recording back from the thread's slot.
    fn finish(self) -> Option<Tape> {
        let tape = take_active();
        // Nothing left for `drop` to do.
        drop(self);
        tape
    }
}

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        // Only after a panic in the closure is the tape still in the slot: give the
        // buffers back, emptied, so the tape reports `NotRecorded` until recorded again.
        if let Some(mut tape) = take_active() {
            tape.reset();
            *self.home = tape;
        }
    }
}

fn take_active() -> Option<Tape> {
    ACTIVE
        .try_with(|t| t.try_borrow_mut().ok().and_then(|mut slot| slot.take()))
        .ok()
        .flatten()
}

macro_rules! binop {
    ($tr:ident, $m:ident, $atr:ident, $am:ident, $code:expr) => {
        impl $tr for TapeVar {
            type Output = TapeVar;
            fn $m(self, o: TapeVar) -> TapeVar {
                TapeVar::push($code, self, o)
            }
        }
        impl $tr<f64> for TapeVar {
            type Output = TapeVar;
            fn $m(self, o: f64) -> TapeVar {
                TapeVar::push($code, self, TapeVar::constant(o))
            }
        }
        impl $tr<TapeVar> for f64 {
            type Output = TapeVar;
            fn $m(self, o: TapeVar) -> TapeVar {
                TapeVar::push($code, TapeVar::constant(self), o)
            }
        }
        impl $atr for TapeVar {
            fn $am(&mut self, o: TapeVar) {
                *self = TapeVar::push($code, *self, o);
            }
        }
        impl $atr<f64> for TapeVar {
            fn $am(&mut self, o: f64) {
                *self = TapeVar::push($code, *self, TapeVar::constant(o));
            }
        }
    };
}
binop!(Add, add, AddAssign, add_assign, Code::Add);
binop!(Sub, sub, SubAssign, sub_assign, Code::Sub);
binop!(Mul, mul, MulAssign, mul_assign, Code::Mul);
binop!(Div, div, DivAssign, div_assign, Code::Div);

impl Rem for TapeVar {
    type Output = TapeVar;
    /// x − trunc(x/y)·y, recorded as elementary ops.
    fn rem(self, o: TapeVar) -> TapeVar {
        self - (self / o).trunc() * o
    }
}
impl RemAssign for TapeVar {
    fn rem_assign(&mut self, o: TapeVar) {
        *self = *self % o;
    }
}
impl Neg for TapeVar {
    type Output = TapeVar;
    fn neg(self) -> TapeVar {
        self.unary(Code::Neg)
    }
}
impl PartialEq for TapeVar {
    fn eq(&self, o: &Self) -> bool {
        self.val == o.val
    }
}
impl PartialOrd for TapeVar {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        self.val.partial_cmp(&o.val)
    }
}
impl Zero for TapeVar {
    fn zero() -> Self {
        TapeVar::constant(0.0)
    }
    fn is_zero(&self) -> bool {
        self.val == 0.0
    }
}
impl One for TapeVar {
    fn one() -> Self {
        TapeVar::constant(1.0)
    }
}
impl Num for TapeVar {
    type FromStrRadixErr = num_traits::ParseFloatError;
    fn from_str_radix(s: &str, radix: u32) -> Result<Self, Self::FromStrRadixErr> {
        f64::from_str_radix(s, radix).map(TapeVar::constant)
    }
}
impl ToPrimitive for TapeVar {
    fn to_i64(&self) -> Option<i64> {
        self.val.to_i64()
    }
    fn to_u64(&self) -> Option<u64> {
        self.val.to_u64()
    }
    fn to_f64(&self) -> Option<f64> {
        Some(self.val)
    }
}
impl NumCast for TapeVar {
    fn from<T: ToPrimitive>(n: T) -> Option<Self> {
        n.to_f64().map(TapeVar::constant)
    }
}
impl FromPrimitive for TapeVar {
    fn from_i64(n: i64) -> Option<Self> {
        Some(TapeVar::constant(n as f64))
    }
    fn from_u64(n: u64) -> Option<Self> {
        Some(TapeVar::constant(n as f64))
    }
    fn from_f64(n: f64) -> Option<Self> {
        Some(TapeVar::constant(n))
    }
}

macro_rules! unary_methods {
    ($($m:ident => $code:expr),* $(,)?) => {
        $(fn $m(self) -> Self { self.unary($code) })*
    };
}
macro_rules! consts {
    ($($m:ident => $v:expr),* $(,)?) => {
        $(fn $m() -> Self { TapeVar::constant($v) })*
    };
}

impl Float for TapeVar {
    consts! {
        nan => f64::NAN, infinity => f64::INFINITY, neg_infinity => f64::NEG_INFINITY,
        neg_zero => -0.0, min_value => f64::MIN, min_positive_value => f64::MIN_POSITIVE,
        max_value => f64::MAX, epsilon => f64::EPSILON,
    }
    unary_methods! {
        sqrt => Code::Sqrt, exp => Code::Exp, exp_m1 => Code::ExpM1, ln => Code::Ln,
        ln_1p => Code::Ln1p, sin => Code::Sin, cos => Code::Cos, tan => Code::Tan,
        asin => Code::Asin, acos => Code::Acos, atan => Code::Atan, sinh => Code::Sinh,
        cosh => Code::Cosh, tanh => Code::Tanh, asinh => Code::Asinh, acosh => Code::Acosh,
        atanh => Code::Atanh, cbrt => Code::Cbrt, abs => Code::Abs,
        floor => Code::Step(f64::floor), ceil => Code::Step(f64::ceil),
        round => Code::Step(f64::round), trunc => Code::Step(f64::trunc),
        signum => Code::Step(f64::signum),
    }
    fn is_nan(self) -> bool {
        self.val.is_nan()
    }
    fn is_infinite(self) -> bool {
        self.val.is_infinite()
    }
    fn is_finite(self) -> bool {
        self.val.is_finite()
    }
    fn is_normal(self) -> bool {
        self.val.is_normal()
    }
    fn classify(self) -> FpCategory {
        self.val.classify()
    }
    fn fract(self) -> Self {
        self - self.trunc()
    }
    fn is_sign_positive(self) -> bool {
        self.val.is_sign_positive()
    }
    fn is_sign_negative(self) -> bool {
        self.val.is_sign_negative()
    }
    fn mul_add(self, a: Self, b: Self) -> Self {
        self * a + b
    }
    fn recip(self) -> Self {
        1.0 / self
    }
    fn powi(self, n: i32) -> Self {
        self.unary(Code::Powi(n))
    }
    fn powf(self, n: Self) -> Self {
        Self::push(Code::Powf, self, n)
    }
    fn exp2(self) -> Self {
        (self * std::f64::consts::LN_2).exp()
    }
    fn log(self, base: Self) -> Self {
        self.ln() / base.ln()
    }
    fn log2(self) -> Self {
        self.ln() * std::f64::consts::LOG2_E
    }
    fn log10(self) -> Self {
        self.ln() * std::f64::consts::LOG10_E
    }
    fn max(self, o: Self) -> Self {
        Self::push(Code::Max, self, o)
    }
    fn min(self, o: Self) -> Self {
        Self::push(Code::Min, self, o)
    }
    fn abs_sub(self, o: Self) -> Self {
        (self - o).max(Self::zero())
    }
    fn hypot(self, o: Self) -> Self {
        Self::push(Code::Hypot, self, o)
    }
    fn atan2(self, o: Self) -> Self {
        Self::push(Code::Atan2, self, o)
    }
    fn sin_cos(self) -> (Self, Self) {
        (self.sin(), self.cos())
    }
    fn integer_decode(self) -> (u64, i16, i8) {
        self.val.integer_decode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problems::{mlp_grad, mlp_init, mlp_loss, rosenbrock, rosenbrock_grad, MlpData};

    #[test]
    fn quickstart_gradient() {
        let mut t = Tape::new();
        let v = t.record(&[3.0, 2.0], crate::problems::quickstart).unwrap();
        let mut g = [0.0; 2];
        t.gradient(&mut g).unwrap();
        assert_eq!((v, g), (5.0, [6.0, -4.0]));
        // Replay at another point: f = (1+4)(1-4) = -15, grad (2, -8).
        assert_eq!(t.replay(&[1.0, 4.0], &mut g).unwrap(), -15.0);
        assert_eq!(g, [2.0, -8.0]);
    }

    #[test]
    fn record_and_replay_match_hand_written() {
        let x = crate::problems::rosenbrock_start(50);
        let mut t = Tape::new();
        t.record(&x, rosenbrock).unwrap();
        let y: Vec<f64> = x.iter().map(|v| v * 0.9 + 0.05).collect();
        let (mut g1, mut g2) = (vec![0.0; 50], vec![0.0; 50]);
        let v1 = t.replay(&y, &mut g1).unwrap();
        let v2 = rosenbrock_grad(&y, &mut g2);
        assert!((v1 - v2).abs() <= 1e-12 * v2.abs());
        for (a, b) in g1.iter().zip(&g2) {
            assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()));
        }

        let data = MlpData::synthetic(3);
        let p = mlp_init(4);
        let v = t.record(&p, |p| mlp_loss(p, &data)).unwrap();
        let (mut g1, mut g2) = (vec![0.0; p.len()], vec![0.0; p.len()]);
        t.gradient(&mut g1).unwrap();
        let v2 = mlp_grad(&p, &data, &mut g2);
        assert!((v - v2).abs() <= 1e-13);
        for (a, b) in g1.iter().zip(&g2) {
            assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()));
        }
    }

    #[test]
    fn elementary_partials_match_finite_differences() {
        type F = fn(TapeVar) -> TapeVar;
        let cases: &[(&str, F, f64)] = &[
            ("sqrt", |x| x.sqrt(), 0.7),
            ("exp_m1", |x| x.exp_m1(), 0.3),
            ("ln_1p", |x| x.ln_1p(), 0.3),
            ("tan", |x| x.tan(), 0.4),
            ("asin", |x| x.asin(), 0.3),
            ("acos", |x| x.acos(), 0.3),
            ("atan", |x| x.atan(), 0.3),
            ("sinh", |x| x.sinh(), 0.3),
            ("cosh", |x| x.cosh(), 0.3),
            ("asinh", |x| x.asinh(), 0.3),
            ("acosh", |x| x.acosh(), 1.3),
            ("atanh", |x| x.atanh(), 0.3),
            ("cbrt", |x| x.cbrt(), 0.3),
            ("powi", |x| x.powi(-3), 0.8),
            ("powf", |x| x.powf(x), 0.8),
            ("atan2", |x| x.atan2(x * x + 1.0), 0.8),
            ("hypot", |x| x.hypot(x * 2.0 + 1.0), 0.8),
            ("div", |x| 1.0 / (x * 3.0), 0.8),
            ("rem", |x| (x * 7.0) % (x + 1.0), 0.8),
        ];
        let mut t = Tape::new();
        for (name, f, x0) in cases {
            t.record(&[*x0], |x| f(x[0])).unwrap();
            let mut g = [0.0];
            t.gradient(&mut g).unwrap();
            let h = 1e-6;
            let fd = (f(TapeVar::constant(x0 + h)).value() - f(TapeVar::constant(x0 - h)).value())
                / (2.0 * h);
            assert!(
                (g[0] - fd).abs() < 1e-6 * (1.0 + fd.abs()),
                "{name}: {} vs {fd}",
                g[0]
            );
        }
    }

    #[test]
    fn errors_instead_of_panics() {
        let mut t = Tape::new();
        let r = t.record(&[1.0], |x| {
            let mut inner = Tape::new();
            assert_eq!(inner.record(&[1.0], |y| y[0]), Err(TapeError::Nested));
            x[0]
        });
        assert_eq!(r, Ok(1.0));
        let mut g = [0.0; 2];
        assert!(matches!(t.gradient(&mut g), Err(TapeError::Length { .. })));
        assert!(matches!(
            t.replay(&[1.0, 2.0], &mut g),
            Err(TapeError::Length { .. })
        ));
    }

    #[test]
    fn a_tape_without_a_recording_is_an_error_not_a_panic() {
        let mut t = Tape::new();
        assert_eq!(t.gradient(&mut []), Err(TapeError::NotRecorded));
        assert_eq!(t.replay(&[], &mut []), Err(TapeError::NotRecorded));
        assert!(t.is_empty());
        // A recording with no inputs and a constant output is a real recording.
        assert_eq!(t.record(&[], |_| TapeVar::constant(2.5)), Ok(2.5));
        assert_eq!(t.gradient(&mut []), Ok(()));
        assert_eq!(t.replay(&[], &mut []), Ok(2.5));
    }

    #[test]
    fn a_panicking_closure_leaves_the_thread_free_and_the_tape_empty() {
        let mut t = Tape::new();
        t.record(&[1.0, 2.0], crate::problems::quickstart).unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            t.record(&[1.0], |x| -> TapeVar {
                panic!("user code fails at {}", x[0].value())
            })
        }));
        assert!(caught.is_err());
        // The half-made recording is gone, not replayed as if it were whole.
        let mut g = [0.0];
        assert_eq!(t.gradient(&mut g), Err(TapeError::NotRecorded));
        assert_eq!(t.replay(&[1.0], &mut g), Err(TapeError::NotRecorded));
        // And this thread records again, on this tape or another.
        assert_eq!(t.record(&[3.0], |x| x[0] * x[0]), Ok(9.0));
        t.gradient(&mut g).unwrap();
        assert_eq!(g, [6.0]);
        let mut other = Tape::new();
        assert_eq!(other.record(&[2.0], |x| x[0].sin()), Ok(2f64.sin()));
    }

    #[test]
    fn a_var_from_an_old_recording_cannot_address_the_new_one() {
        use std::cell::Cell;
        let kept = Cell::new(None);
        let mut t = Tape::new();
        t.record(&[5.0, 7.0], |x| {
            let y = x[0] * x[1];
            kept.set(Some(y));
            y
        })
        .unwrap();
        let old = kept.get().unwrap();
        // Used inside a new recording (its index 3 would be a node of this one): an error.
        let r = t.record(&[1.0, 2.0, 3.0, 4.0], |x| x[0] + old);
        assert_eq!(r, Err(TapeError::StaleVar));
        assert_eq!(t.gradient(&mut [0.0; 4]), Err(TapeError::NotRecorded));
        // Returned as the output of a new recording: an error.
        assert_eq!(
            t.record(&[1.0, 2.0], |_| old),
            Err(TapeError::ForeignOutput)
        );
        // A var of another tape is caught the same way, even across threads.
        let mut a = Tape::new();
        a.record(&[1.0], |x| {
            kept.set(Some(x[0] * 2.0));
            x[0]
        })
        .unwrap();
        let from_a = kept.get().unwrap();
        let mut b = Tape::new();
        assert_eq!(
            b.record(&[1.0], |x| x[0] * from_a),
            Err(TapeError::StaleVar)
        );
        let r = std::thread::spawn(move || Tape::new().record(&[1.0], |x| x[0] + from_a))
            .join()
            .unwrap();
        assert_eq!(r, Err(TapeError::StaleVar));
        // Outside any recording a var is just its value.
        assert_eq!((old * 2.0).value(), 70.0);
        // The tape still works after the errors.
        assert_eq!(a.record(&[2.0], |x| x[0] * x[0] * x[0]), Ok(8.0));
        let mut g = [0.0];
        a.gradient(&mut g).unwrap();
        assert_eq!(g, [12.0]);
    }
}
