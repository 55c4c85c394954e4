//! The one list of operations.
//!
//! Every op is a variant of [`Op`]. Beside the enum sit the exhaustive matches every
//! consumer relies on: the text name ([`Op::name`], [`Op::from_name`]), the operand
//! format ([`Op::format`], which also gives the arity), result typing
//! ([`Op::result_types`]) and purity ([`Op::is_pure`]). A new op breaks every `match`
//! that must learn it — that is the checklist (see ARCHITECTURE.md, "Adding an op").
//!
//! # Formats
//!
//! Ops come in families that share an operand syntax, as Cranelift's instruction formats
//! do. [`Format`] names each family and carries its payload; the printer, the parser and
//! the verifier's renderer switch on the format, never on the op, so a new op of a known
//! format costs them nothing. Formats today, and the ones the tensor ops (DESIGN.md,
//! "Tensors") will take:
//!
//! | format | syntax | ops |
//! |--------|--------|-----|
//! | [`Format::Literal`] | `op LIT : T` | `const`, `fill 0.0 : f64[32,8]` |
//! | [`Format::Unary`] | `op %a` | `neg sqrt exp ... trunc guard` (scalars and tensors) |
//! | [`Format::Binary`] | `op %a, %b` | `add ... copysign`, comparisons (broadcasting), `matmul`, `dot` |
//! | [`Format::Ternary`] | `op %a, %b, %c` | `fma`, `select` (broadcasting) |
//! | [`Format::Variadic`] | `op %a, ...` | `yield`, `ret` |
//! | [`Format::WithImm`] | `op %a, N` | `powi` |
//! | [`Format::WithType`] | `op %a : T` | `cast`, `broadcast %v : f64[32,8]`, `reshape %a : f64[4,64]` |
//! | [`Format::Call`] | `op @f(%a, ...)` | `call` |
//! | [`Format::Loop`] | `loop %i in B..B (%c = %v : T, ...) { ... }` | `loop` |
//! | [`Format::TapeLoop`] | `tapeloop B..B checkpoint P fwd @F (...) caps (...)` | `tapeloop` |
//! | [`Format::RevLoop`] | `revloop B..B checkpoint P fwd @F bwd @B [tape %t] (...) caps (...) seed (...)` | `revloop` |
//!
//!
//! The tensor formats:
//!
//! | format | syntax | tensor ops |
//! |--------|--------|------------|
//! | [`Format::WithAxes`] | `op %x, axes [1, 2]` | `sum`, `mean`, `logsumexp`, `reduce_max`, `reduce_min` |
//! | [`Format::WithPerm`] | `op %a, perm [1, 0]` | `transpose` |
//! | [`Format::WithRanges`] | `op %a, ... [0:4, 2:6]` | `slice %a [start:end(:step), ...]`, `pad %a, %v [low:high, ...]` |
//! | [`Format::WithAxis`] | `op %a, %b, ..., axis 0` | `concat` (variadic operands and one axis) |
//! | [`Format::Indexed`] | `op %x [%i]` | `extract` (the index is an `i64` operand after `%x`) |
//! | [`Format::IndexedInsert`] | `op %v into %x [%i]` | `insert` |
//! | [`Format::Iota`] | `op axis 0 : T` | `iota` (no operand, an axis and a result type) |
//!
//! The max/min *reductions* are named `reduce_max`/`reduce_min`, so every op name has one
//! format and the parser never looks ahead to tell them from the binary `max %a, %b`.
//!
//! # Tensors
//!
//! Every elementwise op (arithmetic, elementary functions, comparisons, `select`, `cast`,
//! `powi`, `fma`) accepts tensor operands of one element type with NumPy broadcasting; a
//! scalar operand broadcasts. The shape rules are [`crate::shape`]'s, the run-time
//! semantics [`crate::kernels`]'.
//!
//! Numeric semantics of each op live in [`crate::math`], shared by the interpreter and
//! the JIT's runtime calls so both engines agree bit for bit.

use crate::shape::{self, Reduction, ShapeError, SliceRange};
use crate::types::{ScalarType, Type, MAX_RANK};
use smallvec::{smallvec, SmallVec};
use std::fmt;

/// The result types of an op ([`Op::result_types`]): nearly always one, so inline.
pub type TypeList = SmallVec<[Type; 2]>;

/// A short list of distinct axes: a reduction's axes or a permutation (at most
/// [`MAX_RANK`] entries, each below [`MAX_RANK`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Axes {
    len: u8,
    axes: [u8; MAX_RANK],
}

impl Axes {
    /// The list; `None` when it is longer than [`MAX_RANK`] or an entry is not below
    /// [`MAX_RANK`] (the shape rules check the rest against the operand).
    pub fn new(axes: &[usize]) -> Option<Self> {
        if axes.len() > MAX_RANK {
            return None;
        }
        let mut out = [0u8; MAX_RANK];
        for (o, &a) in out.iter_mut().zip(axes) {
            if a >= MAX_RANK {
                return None;
            }
            *o = a as u8;
        }
        Some(Self {
            len: axes.len() as u8,
            axes: out,
        })
    }

    /// The axes, in order.
    pub fn to_vec(&self) -> Vec<usize> {
        self.axes[..usize::from(self.len)]
            .iter()
            .map(|&a| usize::from(a))
            .collect()
    }
}

impl fmt::Debug for Axes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_vec())
    }
}

impl fmt::Display for Axes {
    /// `[a, b, ...]`, the text format's form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, a) in self.to_vec().into_iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{a}")?;
        }
        f.write_str("]")
    }
}

/// A constant literal (the payload of `const`).
///
/// Equality and hashing compare bit patterns, so `-0.0 != 0.0` and `NaN == NaN` here:
/// what CSE and constant folding need.
#[derive(Clone, Copy, Debug)]
pub enum Constant {
    /// An `f64` literal.
    F64(f64),
    /// An `f32` literal.
    F32(f32),
    /// An `i64` literal.
    I64(i64),
    /// A `bool` literal.
    Bool(bool),
}

impl Constant {
    /// The type of the constant.
    pub fn ty(self) -> ScalarType {
        match self {
            Constant::F64(_) => ScalarType::F64,
            Constant::F32(_) => ScalarType::F32,
            Constant::I64(_) => ScalarType::I64,
            Constant::Bool(_) => ScalarType::Bool,
        }
    }

    /// A float constant of type `ty` with value `v` (rounded for `f32`); `None` for
    /// non-float types.
    pub fn float(ty: ScalarType, v: f64) -> Option<Self> {
        match ty {
            ScalarType::F64 => Some(Constant::F64(v)),
            ScalarType::F32 => Some(Constant::F32(v as f32)),
            ScalarType::I64 | ScalarType::Bool => None,
        }
    }

    /// The value as `f64` for float constants.
    pub fn as_f64(self) -> Option<f64> {
        match self {
            Constant::F64(v) => Some(v),
            Constant::F32(v) => Some(v as f64),
            Constant::I64(_) | Constant::Bool(_) => None,
        }
    }

    fn bits(self) -> (u8, u64) {
        match self {
            Constant::F64(v) => (0, v.to_bits()),
            Constant::F32(v) => (1, v.to_bits() as u64),
            Constant::I64(v) => (2, v as u64),
            Constant::Bool(v) => (3, v as u64),
        }
    }
}

impl PartialEq for Constant {
    fn eq(&self, other: &Self) -> bool {
        self.bits() == other.bits()
    }
}
impl Eq for Constant {}
impl std::hash::Hash for Constant {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bits().hash(state)
    }
}

/// Formats a float literal so that parsing it gives back the same bits:
/// shortest round-trip digits, always with a `.` or exponent, and `nan`, `inf`, `-inf`.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        // `{:?}` is Rust's shortest round-trip representation and keeps `.0`.
        format!("{v:?}")
    }
}

impl fmt::Display for Constant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Constant::F64(v) => f.write_str(&format_float(v)),
            Constant::F32(v) => {
                if v.is_finite() {
                    write!(f, "{v:?}")
                } else {
                    f.write_str(&format_float(v as f64))
                }
            }
            Constant::I64(v) => write!(f, "{v}"),
            Constant::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// One end of a loop's index range: an immediate, or an `i64` operand known at call
/// time (`loop %i in 0..%n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bound {
    /// A literal bound.
    Imm(i64),
    /// The bound is an operand of the loop instruction (the dynamic bounds come first
    /// in the operand list: start, then end).
    Dyn,
}

/// The index range of a `loop`: `start..end`, end exclusive; zero trips when
/// `end <= start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LoopBounds {
    /// First index.
    pub start: Bound,
    /// One past the last index.
    pub end: Bound,
}

impl LoopBounds {
    /// How many leading operands are dynamic bounds (0, 1 or 2).
    pub fn num_dyn(self) -> usize {
        usize::from(self.start == Bound::Dyn) + usize::from(self.end == Bound::Dyn)
    }
}

/// An operation. Variant docs give the maths and the edge conventions; derivative rules
/// live in `jitad-passes`, lowering in `jitad-codegen`.
///
/// 32 bytes: the two rare variants whose payload is larger (`fill`'s type, a loop's
/// bounds) hold it boxed, so the other ~50 ops (a traced gradient's millions of
/// instructions) don't pay 8 more bytes each in every instruction table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `const c : T` — a literal.
    Const(Constant),

    // ---- arithmetic (f64, f32; add/sub/mul/neg also i64, wrapping) ----
    /// `add a, b` = a + b.
    Add,
    /// `sub a, b` = a − b.
    Sub,
    /// `mul a, b` = a · b.
    Mul,
    /// `div a, b` = a / b (floats only; IEEE: x/0 = ±inf, 0/0 = NaN).
    Div,
    /// `neg a` = −a (flips the sign bit for floats, so `neg 0.0 = -0.0`).
    Neg,
    /// `fma a, b, c` = a·b + c with a single rounding.
    Fma,

    // ---- elementary functions (floats) ----
    // Scalars run `math` (libm, per value). Over tensors, `exp`, `log`, `tanh` and
    // `sigmoid` run `vmath`'s vectorised kernels (`exp`, `log` bit-identical to libm;
    // `tanh`, `sigmoid` within 2 ulp, so they may differ from the scalar op in the last
    // bits); every other function runs `math` per element.
    /// `sqrt a`; NaN for a < 0, `sqrt(-0.0) = -0.0`.
    Sqrt,
    /// `exp a` = eᵃ. Tensors: `vmath::exp`, bit-identical to the scalar op (libm).
    Exp,
    /// `expm1 a` = eᵃ − 1, accurate near 0.
    Expm1,
    /// `log a` = ln a; −inf at 0, NaN below. Tensors: `vmath::log`, bit-identical to the
    /// scalar op (libm).
    Log,
    /// `log1p a` = ln(1 + a), accurate near 0.
    Log1p,
    /// `sin a`.
    Sin,
    /// `cos a`.
    Cos,
    /// `tan a`.
    Tan,
    /// `tanh a`; odd, ±1 exactly beyond |a| ≈ 19.07. Scalars: libm (`math::tanh`);
    /// tensors: `vmath::tanh` (≤ 2 ulp; may differ from the scalar op in the last bits).
    Tanh,
    /// `sigmoid a` = 1 / (1 + e^(−a)), computed without overflow. Scalars:
    /// `math::sigmoid` (libm `exp`); tensors: `vmath::sigmoid` (≤ 2 ulp; may differ from
    /// the scalar op in the last bits).
    Sigmoid,
    /// `erf a`, the error function.
    Erf,
    /// `abs a` = |a| (clears the sign bit for floats; wrapping for `i64::MIN`).
    Abs,
    /// `pow a, b` = aᵇ with C99 `pow` edge cases (`pow(x, 0) = 1`, `pow(0, y<0) = inf`).
    Pow,
    /// `powi a, n` = aⁿ for an immediate integer n, by square-and-multiply
    /// (`math::powi` fixes the multiplication order so every engine agrees).
    Powi(i32),
    /// `min a, b`: IEEE 754-2019 `minimum` — NaN if either is NaN, `min(-0, +0) = -0`.
    Min,
    /// `max a, b`: IEEE 754-2019 `maximum` — NaN if either is NaN, `max(-0, +0) = +0`.
    Max,
    /// `atan2 a, b` = the angle of the point (b, a), in (−π, π].
    Atan2,
    /// `floor a`, the largest integer ≤ a.
    Floor,
    /// `ceil a`, the smallest integer ≥ a.
    Ceil,
    /// `round a`, nearest integer, halfway cases away from zero (Rust's `f64::round`).
    Round,
    /// `trunc a`, the integer part (towards zero).
    Trunc,
    /// `copysign a, b` = |a| with the sign bit of b; NaN if b is NaN (a NaN's sign bit
    /// is not pinned: it depends on which hardware instruction made it, so letting it
    /// through would make JIT and interpreter disagree on ordinary numbers).
    Copysign,

    // ---- comparisons (numeric operands; eq/ne also bool) → bool ----
    /// `lt a, b` = a < b (false if either is NaN).
    Lt,
    /// `le a, b` = a ≤ b (false if either is NaN).
    Le,
    /// `gt a, b` = a > b (false if either is NaN).
    Gt,
    /// `ge a, b` = a ≥ b (false if either is NaN).
    Ge,
    /// `eq a, b` = a == b (false if either is NaN; `0.0 == -0.0`).
    Eq,
    /// `ne a, b` = a != b (true if either is NaN).
    Ne,

    // ---- choice, conversion, checks ----
    /// `select c, a, b` = if c { a } else { b }.
    Select,
    /// `cast a : T` converts between scalar types: float→int truncates towards zero and
    /// saturates (NaN → 0), like Rust's `as`; int→float rounds to nearest; bool→number
    /// gives 0 or 1; number→bool is `a != 0`.
    Cast(ScalarType),
    /// `guard c` — a traced branch decision. Evaluation stops with a re-trace error when
    /// `c` is false.
    Guard,

    // ---- tensors (shape rules: `crate::shape`; semantics: `crate::kernels`) ----
    /// `fill c : T` — the tensor of type `T` (element type `c`'s) with every element `c`.
    Fill(Constant, Box<Type>),
    /// `broadcast x : T` — `x` broadcast to `T` with NumPy's rules (trailing axes aligned,
    /// a dimension 1 or a missing leading axis repeats): `y[i…] = x[i… with the broadcast
    /// axes at 0]`. The explicit form of what elementwise ops do implicitly; its
    /// transpose is `sum` over the broadcast axes ([`shape::sum_back`]).
    Broadcast(Type),
    /// `iota axis n : T` — the tensor whose element at index `(i0, i1, …)` is `i_n`
    /// (converted to the element type; f64, f32 or i64).
    Iota(u8, Type),
    /// A reduction over the listed axes, which the result drops (`axes [0, 1]` of a
    /// matrix gives a scalar; `axes []` is the identity). Each result element folds the
    /// reduced elements in row-major order ([`crate::kernels`] fixes the order, so every
    /// engine gets the same bits):
    /// - `sum x, axes [..]` = Σ x (from `-0.0` for floats; wrapping for `i64`);
    /// - `mean x, axes [..]` = Σ x / n, n the number of reduced elements (floats);
    /// - `logsumexp x, axes [..]` = s + log Σ exp(x − s), s = max x when finite, else 0
    ///   (all `-∞` gives `-∞`, any `+∞` gives `+∞`; no overflow for large x) (floats);
    /// - `reduce_max x, axes [..]` / `reduce_min x, axes [..]` fold the scalar `max`/`min`
    ///   (IEEE 754-2019 `maximum`/`minimum`: NaN propagates, `max(-0, +0) = +0`). Tie
    ///   rule for AD: the adjoint is split evenly among all elements equal to the result,
    ///   `x̄ = ȳ·[x = y] / #{x = y}` (JAX's; `-0 = +0` ties), see [`crate::kernels`].
    ///
    /// Named `reduce_max`/`reduce_min` so the names differ from the binary `max`/`min`.
    Reduce(Reduction, Axes),
    /// `matmul a, b` — the matrix product, contracting the last axis of `a` with the
    /// first non-batch axis of `b`: `[m,k]×[k,n] → [m,n]`, `[m,k]×[k] → [m]`,
    /// `[k]×[k,n] → [n]`, `[b,m,k]×[k,n] → [b,m,n]`, `[b,m,k]×[b,k,n] → [b,m,n]` (floats).
    /// Computed by [`crate::kernels::matmul`] (one GEMM per batch entry), which every
    /// engine calls, so results agree bit for bit.
    Matmul,
    /// `dot a, b` = Σᵢ aᵢ·bᵢ for two vectors of one length (floats), summed in index
    /// order from `-0.0` (each product rounded, no fma).
    Dot,
    /// `transpose x, perm [p0, p1, ...]` — result axis `i` is axis `perm[i]` of `x`
    /// (NumPy's `transpose`); its transpose is the inverse permutation.
    Transpose(Axes),
    /// `reshape x : T` — the same elements in row-major order with shape `T` (same
    /// element type and count).
    Reshape(Type),
    /// `slice x [start:end(:step), ...]` — per axis the indices `start, start+step, …`
    /// below `end` (static, non-empty, in bounds).
    Slice(Vec<SliceRange>),
    /// `pad x, v [low:high, ...]` — `x` with `low` copies of the scalar `v` before and
    /// `high` after it along each axis (each range's `start` is `low`, `end` is `high`,
    /// its step 1).
    Pad(Vec<SliceRange>),
    /// `concat a, b, ..., axis n` — the operands joined along axis `n` (they agree on
    /// every other axis).
    Concat(u8),
    /// `extract x [i]` — the element (of a vector) or the row (of a higher-rank tensor)
    /// at the dynamic `i64` index `i` on the leading axis; an index outside `0..len` is
    /// an evaluation error.
    Extract,
    /// `insert v into x [i]` — `x` with its element or row `i` (leading axis) replaced by
    /// `v`: a new tensor (functional update); an index outside `0..len` is an evaluation
    /// error. Operands: `v`, `x`, `i`.
    Insert,

    // ---- structure ----
    /// `call @f(args...)` — calls another function of the module.
    Call(String),
    /// `loop %i in start..end (%a = init : T, ...) { ... yield ... }` — runs its body
    /// region once per index with the carried values; results are the carried values
    /// after the last trip (the inits when there are no trips). Operands: dynamic
    /// bounds (start, end, whichever are dynamic), then the inits. Body region
    /// parameters: the index (`i64`), then the carried values.
    Loop(Box<LoopBounds>),
    /// `revloop start..end checkpoint P fwd @F bwd @B (inits...) caps (caps...)
    /// seed (seeds...)` — the reverse sweep of a loop, made by reverse-mode AD.
    ///
    /// `@F(i: i64, s..., c...) -> s...` is one forward iteration of the loop (state `s`,
    /// captured values `c`), `@B(i: i64, s..., c..., a...) -> a...` one backward
    /// iteration (adjoint state `a`). With `s_start` = the inits and
    /// `s_{i+1} = F(i, s_i, c)`, the results are the adjoint state after
    /// `a ← B(i, s_i, c, a)` for `i` from `end − 1` down to `start`, starting from the
    /// seeds. The policy `P` ([`crate::checkpoint::Policy`]) chooses which `s_i` are
    /// stored and which recomputed; it never changes the results. Operands: dynamic
    /// bounds, then the inits, the captures and the seeds.
    RevLoop(Box<RevLoop>),
    /// `tapeloop start..end checkpoint P fwd @F (inits...) caps (caps...)` — the forward
    /// sweep of a loop that reverse mode will reverse: runs `s_{i+1} = F(i, s_i, c)` like
    /// a `loop` and returns the final state, then an `i64` *tape token*: the states the
    /// policy `P` keeps (every state under `store-all`; the initial one otherwise) stay
    /// recorded for the `revloop ... tape %t` that consumes the token, which then needs
    /// no forward re-run. A token is valid once, within the same call.
    TapeLoop(Box<TapeLoop>),
    /// `yield vals...` — ends a loop body with the next carried values.
    Yield,
    /// `ret vals...` — ends a function with its results.
    Ret,
}

/// The payload of [`Op::TapeLoop`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TapeLoop {
    /// The iterations.
    pub bounds: LoopBounds,
    /// What is recorded.
    pub policy: crate::checkpoint::Policy,
    /// The forward iteration `@F`.
    pub fwd: String,
    /// Number of state values (after the dynamic bounds); the captures follow.
    pub state: u32,
}

impl TapeLoop {
    /// Operand ranges (bounds, inits, captures), or `None` when the list is too short.
    pub fn split(&self, nargs: usize) -> Option<[std::ops::Range<usize>; 3]> {
        let nd = self.bounds.num_dyn();
        let s = nd + self.state as usize;
        (nargs >= s).then_some([0..nd, nd..s, s..nargs])
    }
}

/// The payload of [`Op::RevLoop`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RevLoop {
    /// The iterations reversed.
    pub bounds: LoopBounds,
    /// What is stored and what recomputed.
    pub policy: crate::checkpoint::Policy,
    /// The forward iteration `@F`.
    pub fwd: String,
    /// The backward iteration `@B`.
    pub bwd: String,
    /// Number of state values (after the dynamic bounds).
    pub state: u32,
    /// Number of captured values (after the state); the seeds follow.
    pub caps: u32,
    /// The states come from a `tapeloop`'s token, the operand after the bounds.
    pub tape: bool,
}

impl RevLoop {
    /// Operand ranges: (bounds, tape token, inits, captures, seeds), as index ranges
    /// into the operand list (the token range is empty without a tape), or `None` when
    /// the list is too short.
    pub fn split(&self, nargs: usize) -> Option<[std::ops::Range<usize>; 5]> {
        let nd = self.bounds.num_dyn();
        let t = nd + usize::from(self.tape);
        let s = t + self.state as usize;
        let c = s + self.caps as usize;
        (nargs >= c).then_some([0..nd, nd..t, t..s, s..c, c..nargs])
    }
}

/// An op's operand format, with its payload: the syntax of everything after the op name
/// (see the module docs for the table). [`Op::format`] gives it for an op; the parser
/// reads the syntax a template op's format names ([`Op::from_name`]) and sets the payload
/// it read with [`Op::with_payload`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format<'a> {
    /// `op LIT : T` — no operands; a literal and the result type.
    Literal(Constant, Type),
    /// `op %a`.
    Unary,
    /// `op %a, %b`.
    Binary,
    /// `op %a, %b, %c`.
    Ternary,
    /// `op %a, ...` — any number of operands, checked against the enclosing signature.
    Variadic,
    /// `op %a, N` — one operand and an integer immediate.
    WithImm(i64),
    /// `op %a : T` — one operand and the result type.
    WithType(Type),
    /// `op @f(%a, ...)` — a callee and its arguments.
    Call(&'a str),
    /// `loop %i in B..B (%c = %v : T, ...) { ... }` — bounds, carried values, one body
    /// region (operands: dynamic bounds, then the inits).
    Loop(LoopBounds),
    /// `tapeloop B..B checkpoint P fwd @F (inits...) caps (caps...)`.
    TapeLoop(&'a TapeLoop),
    /// `revloop B..B checkpoint P fwd @F bwd @B [tape %t] (inits...) caps (caps...)
    /// seed (seeds...)`.
    RevLoop(&'a RevLoop),
    /// `op %x, axes [a, ...]` — one operand and a list of axes (reductions).
    WithAxes(Axes),
    /// `op %x, perm [p, ...]` — one operand and a permutation (`transpose`).
    WithPerm(Axes),
    /// `op %a, ... [s:e(:k), ...]` — operands then one range per axis (`slice`: one
    /// operand; `pad`: the tensor and the pad value). Any number of operands; the op's
    /// typing checks the count.
    WithRanges(&'a [SliceRange]),
    /// `op %a, %b, ..., axis n` — operands and one axis (`concat`).
    WithAxis(usize),
    /// `op %x [%i]` — a tensor and an `i64` index operand (`extract`).
    Indexed,
    /// `op %v into %x [%i]` — a value, a tensor and an `i64` index (`insert`).
    IndexedInsert,
    /// `op axis n : T` — no operand, an axis and the result type (`iota`).
    Iota(usize, Type),
}

impl Format<'_> {
    /// How many operands an op of this format takes.
    pub fn arity(self) -> Arity {
        match self {
            Format::Literal(..) | Format::Iota(..) => Arity::Fixed(0),
            Format::Unary
            | Format::WithImm(_)
            | Format::WithType(_)
            | Format::WithAxes(_)
            | Format::WithPerm(_) => Arity::Fixed(1),
            Format::Binary | Format::Indexed => Arity::Fixed(2),
            Format::Ternary | Format::IndexedInsert => Arity::Fixed(3),
            Format::WithRanges(_)
            | Format::WithAxis(_)
            | Format::Variadic
            | Format::Call(_)
            | Format::Loop(_)
            | Format::TapeLoop(_)
            | Format::RevLoop(_) => Arity::Variadic,
        }
    }

    /// True for the formats without a payload (`op %a, %b, ...`).
    pub fn is_plain(self) -> bool {
        matches!(
            self,
            Format::Unary
                | Format::Binary
                | Format::Ternary
                | Format::Variadic
                | Format::Indexed
                | Format::IndexedInsert
        )
    }
}

/// Why [`Op::with_payload`] refused a payload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// An immediate out of the op's range.
    #[error("`{op}` takes {expected}, got {got}")]
    Immediate {
        /// Op text name.
        op: &'static str,
        /// The immediate read.
        got: i64,
        /// What fits, in words.
        expected: &'static str,
    },
    /// A type the op does not take as its payload.
    #[error("`{op}` takes {expected}, got {got}")]
    Type {
        /// Op text name.
        op: &'static str,
        /// The type read.
        got: Type,
        /// What fits, in words.
        expected: &'static str,
    },
    /// Axes, a permutation, ranges or an axis out of what any tensor has.
    #[error("`{op}` takes {expected}")]
    Tensor {
        /// Op text name.
        op: &'static str,
        /// What fits, in words.
        expected: &'static str,
    },
    /// A payload of another format.
    #[error("`{op}` does not take a payload of this format")]
    Format {
        /// Op text name.
        op: &'static str,
    },
}

/// How many operands an op takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// Exactly this many.
    Fixed(usize),
    /// Any number (call, loop, yield, ret: checked against signatures by the verifier).
    Variadic,
}

/// Why an op's operand types were rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    /// Wrong number of operands.
    #[error("`{op}` takes {expected} operand(s), got {got}")]
    Arity {
        /// Op text name.
        op: &'static str,
        /// Expected count.
        expected: usize,
        /// Actual count.
        got: usize,
    },
    /// An operand has a type the op does not accept.
    #[error("`{op}` operand {index} has type {got}, expected {expected}")]
    Operand {
        /// Op text name.
        op: &'static str,
        /// Operand position (0-based).
        index: usize,
        /// Actual type.
        got: Type,
        /// What was expected, in words.
        expected: String,
    },
    /// A call names a function the module does not have.
    #[error("call to unknown function @{0}")]
    UnknownCallee(String),
    /// Tensor shapes that do not fit the op (the error names the shapes).
    #[error(transparent)]
    Shape(#[from] ShapeError),
}

/// A function signature: parameter and result types.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Signature {
    /// Parameter types.
    pub params: Vec<Type>,
    /// Result types.
    pub results: Vec<Type>,
}

/// Which operand types an op family accepts.
#[derive(Clone, Copy)]
enum Accept {
    Numeric,
    Float,
    Any,
}

impl Accept {
    fn ok(self, t: Type) -> bool {
        match (self, t) {
            (Accept::Numeric, t) => t.elem().is_numeric(),
            (Accept::Float, t) => t.elem().is_float(),
            (Accept::Any, _) => true,
        }
    }
    fn words(self) -> &'static str {
        match self {
            Accept::Numeric => "a numeric scalar or tensor (f64, f32, i64)",
            Accept::Float => "a float scalar or tensor (f64, f32)",
            Accept::Any => "a scalar or tensor",
        }
    }
}

impl Op {
    /// Every op name, for parsers, docs and completeness tests ([`Op::from_name`] knows
    /// each).
    pub const NAMES: &'static [&'static str] = &[
        "const",
        "add",
        "sub",
        "mul",
        "div",
        "neg",
        "fma",
        "sqrt",
        "exp",
        "expm1",
        "log",
        "log1p",
        "sin",
        "cos",
        "tan",
        "tanh",
        "sigmoid",
        "erf",
        "abs",
        "pow",
        "powi",
        "min",
        "max",
        "atan2",
        "floor",
        "ceil",
        "round",
        "trunc",
        "copysign",
        "lt",
        "le",
        "gt",
        "ge",
        "eq",
        "ne",
        "select",
        "cast",
        "guard",
        "call",
        "loop",
        "revloop",
        "tapeloop",
        "yield",
        "ret",
        "fill",
        "broadcast",
        "iota",
        "sum",
        "mean",
        "logsumexp",
        "reduce_max",
        "reduce_min",
        "matmul",
        "dot",
        "transpose",
        "reshape",
        "slice",
        "pad",
        "concat",
        "extract",
        "insert",
    ];

    /// The text name, as printed and parsed.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Const(_) => "const",
            Op::Add => "add",
            Op::Sub => "sub",
            Op::Mul => "mul",
            Op::Div => "div",
            Op::Neg => "neg",
            Op::Fma => "fma",
            Op::Sqrt => "sqrt",
            Op::Exp => "exp",
            Op::Expm1 => "expm1",
            Op::Log => "log",
            Op::Log1p => "log1p",
            Op::Sin => "sin",
            Op::Cos => "cos",
            Op::Tan => "tan",
            Op::Tanh => "tanh",
            Op::Sigmoid => "sigmoid",
            Op::Erf => "erf",
            Op::Abs => "abs",
            Op::Pow => "pow",
            Op::Powi(_) => "powi",
            Op::Min => "min",
            Op::Max => "max",
            Op::Atan2 => "atan2",
            Op::Floor => "floor",
            Op::Ceil => "ceil",
            Op::Round => "round",
            Op::Trunc => "trunc",
            Op::Copysign => "copysign",
            Op::Lt => "lt",
            Op::Le => "le",
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Select => "select",
            Op::Cast(_) => "cast",
            Op::Guard => "guard",
            Op::Call(_) => "call",
            Op::RevLoop(_) => "revloop",
            Op::TapeLoop(_) => "tapeloop",
            Op::Loop(_) => "loop",
            Op::Yield => "yield",
            Op::Ret => "ret",
            Op::Fill(..) => "fill",
            Op::Broadcast(_) => "broadcast",
            Op::Iota(..) => "iota",
            Op::Reduce(r, _) => match r {
                Reduction::Sum => "sum",
                Reduction::Mean => "mean",
                Reduction::LogSumExp => "logsumexp",
                Reduction::Max => "reduce_max",
                Reduction::Min => "reduce_min",
            },
            Op::Matmul => "matmul",
            Op::Dot => "dot",
            Op::Transpose(_) => "transpose",
            Op::Reshape(_) => "reshape",
            Op::Slice(_) => "slice",
            Op::Pad(_) => "pad",
            Op::Concat(_) => "concat",
            Op::Extract => "extract",
            Op::Insert => "insert",
        }
    }

    /// The op of a text name. An op with a payload comes with a placeholder one (`const
    /// 0.0 : f64`, `powi 0`, `cast : f64`, an empty callee, an empty range): its
    /// [`Op::format`] says what the text holds next, and [`Op::with_payload`] sets it.
    pub fn from_name(s: &str) -> Option<Op> {
        let bounds = LoopBounds {
            start: Bound::Imm(0),
            end: Bound::Imm(0),
        };
        let policy = crate::checkpoint::Policy::default();
        Some(match s {
            "const" => Op::Const(Constant::F64(0.0)),
            "powi" => Op::Powi(0),
            "cast" => Op::Cast(ScalarType::F64),
            "call" => Op::Call(String::new()),
            "loop" => Op::Loop(Box::new(bounds)),
            "tapeloop" => Op::TapeLoop(Box::new(TapeLoop {
                bounds,
                policy,
                fwd: String::new(),
                state: 0,
            })),
            "revloop" => Op::RevLoop(Box::new(RevLoop {
                bounds,
                policy,
                fwd: String::new(),
                bwd: String::new(),
                state: 0,
                caps: 0,
                tape: false,
            })),
            "add" => Op::Add,
            "sub" => Op::Sub,
            "mul" => Op::Mul,
            "div" => Op::Div,
            "neg" => Op::Neg,
            "fma" => Op::Fma,
            "sqrt" => Op::Sqrt,
            "exp" => Op::Exp,
            "expm1" => Op::Expm1,
            "log" => Op::Log,
            "log1p" => Op::Log1p,
            "sin" => Op::Sin,
            "cos" => Op::Cos,
            "tan" => Op::Tan,
            "tanh" => Op::Tanh,
            "sigmoid" => Op::Sigmoid,
            "erf" => Op::Erf,
            "abs" => Op::Abs,
            "pow" => Op::Pow,
            "min" => Op::Min,
            "max" => Op::Max,
            "atan2" => Op::Atan2,
            "floor" => Op::Floor,
            "ceil" => Op::Ceil,
            "round" => Op::Round,
            "trunc" => Op::Trunc,
            "copysign" => Op::Copysign,
            "lt" => Op::Lt,
            "le" => Op::Le,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "select" => Op::Select,
            "guard" => Op::Guard,
            "yield" => Op::Yield,
            "ret" => Op::Ret,
            "fill" => Op::Fill(
                Constant::F64(0.0),
                Box::new(
                    crate::types::Shape::new(&[1])
                        .map_or(Type::F64, |s| Type::Tensor(ScalarType::F64, s)),
                ),
            ),
            "broadcast" => Op::Broadcast(Type::F64),
            "iota" => Op::Iota(0, Type::F64),
            "sum" => Op::Reduce(Reduction::Sum, Axes::default()),
            "mean" => Op::Reduce(Reduction::Mean, Axes::default()),
            "logsumexp" => Op::Reduce(Reduction::LogSumExp, Axes::default()),
            "reduce_max" => Op::Reduce(Reduction::Max, Axes::default()),
            "reduce_min" => Op::Reduce(Reduction::Min, Axes::default()),
            "matmul" => Op::Matmul,
            "dot" => Op::Dot,
            "transpose" => Op::Transpose(Axes::default()),
            "reshape" => Op::Reshape(Type::F64),
            "slice" => Op::Slice(Vec::new()),
            "pad" => Op::Pad(Vec::new()),
            "concat" => Op::Concat(0),
            "extract" => Op::Extract,
            "insert" => Op::Insert,
            _ => return None,
        })
    }

    /// The payload-free op of a plain name (`add`, `sin`, `ret`, ...); `None` for the
    /// names of ops with a payload (`const`, `powi`, `cast`, `call`, the loops).
    pub fn from_plain_name(s: &str) -> Option<Op> {
        Op::from_name(s).filter(|op| op.format().is_plain())
    }

    /// The operand format of the op, with its payload (see the module docs).
    pub fn format(&self) -> Format<'_> {
        match self {
            Op::Const(c) => Format::Literal(*c, Type::Scalar(c.ty())),
            Op::Neg
            | Op::Sqrt
            | Op::Exp
            | Op::Expm1
            | Op::Log
            | Op::Log1p
            | Op::Sin
            | Op::Cos
            | Op::Tan
            | Op::Tanh
            | Op::Sigmoid
            | Op::Erf
            | Op::Abs
            | Op::Floor
            | Op::Ceil
            | Op::Round
            | Op::Trunc
            | Op::Guard => Format::Unary,
            Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Pow
            | Op::Min
            | Op::Max
            | Op::Atan2
            | Op::Copysign
            | Op::Lt
            | Op::Le
            | Op::Gt
            | Op::Ge
            | Op::Eq
            | Op::Ne
            | Op::Matmul
            | Op::Dot => Format::Binary,
            Op::Fma | Op::Select => Format::Ternary,
            Op::Fill(c, t) => Format::Literal(*c, **t),
            Op::Broadcast(t) | Op::Reshape(t) => Format::WithType(*t),
            Op::Iota(a, t) => Format::Iota(usize::from(*a), *t),
            Op::Reduce(_, axes) => Format::WithAxes(*axes),
            Op::Transpose(perm) => Format::WithPerm(*perm),
            Op::Slice(r) | Op::Pad(r) => Format::WithRanges(r),
            Op::Concat(a) => Format::WithAxis(usize::from(*a)),
            Op::Extract => Format::Indexed,
            Op::Insert => Format::IndexedInsert,
            Op::Yield | Op::Ret => Format::Variadic,
            Op::Powi(n) => Format::WithImm(i64::from(*n)),
            Op::Cast(t) => Format::WithType(Type::Scalar(*t)),
            Op::Call(f) => Format::Call(f),
            Op::Loop(b) => Format::Loop(**b),
            Op::TapeLoop(t) => Format::TapeLoop(t),
            Op::RevLoop(r) => Format::RevLoop(r),
        }
    }

    /// This op with the payload of `format` (the parser's second step after
    /// [`Op::from_name`]); a payload-free format must match the op's.
    pub fn with_payload(self, format: Format<'_>) -> Result<Op, PayloadError> {
        let name = self.name();
        let op = match (self, format) {
            (Op::Const(_), Format::Literal(c, t)) => {
                if t != Type::Scalar(c.ty()) {
                    return Err(PayloadError::Type {
                        op: name,
                        got: t,
                        expected: "the scalar type of its literal",
                    });
                }
                Op::Const(c)
            }
            (Op::Powi(_), Format::WithImm(n)) => {
                Op::Powi(i32::try_from(n).map_err(|_| PayloadError::Immediate {
                    op: name,
                    got: n,
                    expected: "an integer exponent that fits in i32",
                })?)
            }
            (Op::Cast(_), Format::WithType(t)) => match t {
                Type::Scalar(s) => Op::Cast(s),
                Type::Tensor(..) => {
                    return Err(PayloadError::Type {
                        op: name,
                        got: t,
                        expected: "a scalar type",
                    })
                }
            },
            (Op::Fill(..), Format::Literal(c, t)) => {
                if t.scalar().is_some() || t.elem() != c.ty() {
                    return Err(PayloadError::Type {
                        op: name,
                        got: t,
                        expected: "a tensor type with its literal's element type",
                    });
                }
                Op::Fill(c, Box::new(t))
            }
            (Op::Broadcast(_), Format::WithType(t)) => Op::Broadcast(t),
            (Op::Reshape(_), Format::WithType(t)) => Op::Reshape(t),
            (Op::Iota(..), Format::Iota(axis, t)) => {
                let axis = u8::try_from(axis)
                    .ok()
                    .filter(|&a| usize::from(a) < MAX_RANK)
                    .ok_or(PayloadError::Tensor {
                        op: name,
                        expected: "an axis below the maximum rank",
                    })?;
                Op::Iota(axis, t)
            }
            (Op::Reduce(r, _), Format::WithAxes(a)) => Op::Reduce(r, a),
            (Op::Transpose(_), Format::WithPerm(p)) => Op::Transpose(p),
            (Op::Slice(_), Format::WithRanges(r)) => Op::Slice(r.to_vec()),
            (Op::Pad(_), Format::WithRanges(r)) => {
                if r.iter().any(|w| w.step != 1) {
                    return Err(PayloadError::Tensor {
                        op: name,
                        expected: "`low:high` widths without a step",
                    });
                }
                Op::Pad(r.to_vec())
            }
            (Op::Concat(_), Format::WithAxis(a)) => Op::Concat(
                u8::try_from(a)
                    .ok()
                    .filter(|&a| usize::from(a) < MAX_RANK)
                    .ok_or(PayloadError::Tensor {
                        op: name,
                        expected: "an axis below the maximum rank",
                    })?,
            ),
            (Op::Call(_), Format::Call(f)) => Op::Call(f.to_string()),
            (Op::Loop(_), Format::Loop(b)) => Op::Loop(Box::new(b)),
            (Op::TapeLoop(_), Format::TapeLoop(t)) => Op::TapeLoop(Box::new(t.clone())),
            (Op::RevLoop(_), Format::RevLoop(r)) => Op::RevLoop(Box::new(r.clone())),
            (op, f) if f.is_plain() && op.format() == f => op,
            _ => return Err(PayloadError::Format { op: name }),
        };
        Ok(op)
    }

    /// Operand count (from the format).
    pub fn arity(&self) -> Arity {
        self.format().arity()
    }

    /// True for ops without side effects or control: removable when unused, mergeable
    /// by CSE. `guard` (it can stop evaluation), `call` (callees may hold guards),
    /// `loop`, `revloop`, `tapeloop`, `yield` and `ret` are not pure.
    pub fn is_pure(&self) -> bool {
        match self {
            Op::Guard
            | Op::Call(_)
            | Op::Loop(_)
            | Op::RevLoop(_)
            | Op::TapeLoop(_)
            | Op::Yield
            | Op::Ret => false,
            Op::Const(_)
            | Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Neg
            | Op::Fma
            | Op::Sqrt
            | Op::Exp
            | Op::Expm1
            | Op::Log
            | Op::Log1p
            | Op::Sin
            | Op::Cos
            | Op::Tan
            | Op::Tanh
            | Op::Sigmoid
            | Op::Erf
            | Op::Abs
            | Op::Pow
            | Op::Powi(_)
            | Op::Min
            | Op::Max
            | Op::Atan2
            | Op::Floor
            | Op::Ceil
            | Op::Round
            | Op::Trunc
            | Op::Copysign
            | Op::Lt
            | Op::Le
            | Op::Gt
            | Op::Ge
            | Op::Eq
            | Op::Ne
            | Op::Select
            | Op::Cast(_)
            | Op::Fill(..)
            | Op::Broadcast(_)
            | Op::Iota(..)
            | Op::Reduce(..)
            | Op::Matmul
            | Op::Dot
            | Op::Transpose(_)
            | Op::Reshape(_)
            | Op::Slice(_)
            | Op::Pad(_)
            | Op::Concat(_)
            | Op::Extract
            | Op::Insert => true,
        }
    }

    /// True for the ops that only exist on tensors (`fill`, `broadcast`, `iota`, the
    /// reductions, `matmul`, `dot`, `transpose`, `reshape`, `slice`, `pad`, `concat`,
    /// `extract`, `insert`). Elementwise ops, which also take scalars, are not among
    /// them: whether an instruction computes on tensors is [`Op::is_tensor_inst`]'s
    /// question.
    pub fn is_tensor_op(&self) -> bool {
        match self {
            Op::Fill(..)
            | Op::Broadcast(_)
            | Op::Iota(..)
            | Op::Reduce(..)
            | Op::Matmul
            | Op::Dot
            | Op::Transpose(_)
            | Op::Reshape(_)
            | Op::Slice(_)
            | Op::Pad(_)
            | Op::Concat(_)
            | Op::Extract
            | Op::Insert => true,
            Op::Const(_)
            | Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Neg
            | Op::Fma
            | Op::Sqrt
            | Op::Exp
            | Op::Expm1
            | Op::Log
            | Op::Log1p
            | Op::Sin
            | Op::Cos
            | Op::Tan
            | Op::Tanh
            | Op::Sigmoid
            | Op::Erf
            | Op::Abs
            | Op::Pow
            | Op::Powi(_)
            | Op::Min
            | Op::Max
            | Op::Atan2
            | Op::Floor
            | Op::Ceil
            | Op::Round
            | Op::Trunc
            | Op::Copysign
            | Op::Lt
            | Op::Le
            | Op::Gt
            | Op::Ge
            | Op::Eq
            | Op::Ne
            | Op::Select
            | Op::Cast(_)
            | Op::Guard
            | Op::Call(_)
            | Op::Loop(_)
            | Op::RevLoop(_)
            | Op::TapeLoop(_)
            | Op::Yield
            | Op::Ret => false,
        }
    }

    /// True when an instruction of this op with operand types `args` and result types
    /// `results` computes on tensors: a tensor-only op, or any pure op with a tensor
    /// operand or result (an elementwise op on tensors). Structural ops (`loop`, `call`,
    /// `yield`, `ret`) only move tensors and answer false.
    pub fn is_tensor_inst(&self, args: &[Type], results: &[Type]) -> bool {
        self.is_tensor_op()
            || (self.is_pure()
                && args
                    .iter()
                    .chain(results)
                    .any(|t| matches!(t, Type::Tensor(..))))
    }

    /// True for region terminators (`yield`, `ret`).
    pub fn is_terminator(&self) -> bool {
        matches!(self, Op::Yield | Op::Ret)
    }

    /// The functions this op runs: a `call`'s callee, a `tapeloop`'s forward step, a
    /// `revloop`'s forward then backward step; nothing for every other op. The one
    /// place that says which ops make call-graph edges.
    pub fn callees(&self) -> impl Iterator<Item = &str> {
        let (first, second) = match self {
            Op::Call(name) => (Some(name.as_str()), None),
            Op::TapeLoop(r) => (Some(r.fwd.as_str()), None),
            Op::RevLoop(r) => (Some(r.fwd.as_str()), Some(r.bwd.as_str())),
            Op::Const(_)
            | Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Neg
            | Op::Fma
            | Op::Sqrt
            | Op::Exp
            | Op::Expm1
            | Op::Log
            | Op::Log1p
            | Op::Sin
            | Op::Cos
            | Op::Tan
            | Op::Tanh
            | Op::Sigmoid
            | Op::Erf
            | Op::Abs
            | Op::Pow
            | Op::Powi(_)
            | Op::Min
            | Op::Max
            | Op::Atan2
            | Op::Floor
            | Op::Ceil
            | Op::Round
            | Op::Trunc
            | Op::Copysign
            | Op::Lt
            | Op::Le
            | Op::Gt
            | Op::Ge
            | Op::Eq
            | Op::Ne
            | Op::Select
            | Op::Cast(_)
            | Op::Guard
            | Op::Loop(_)
            | Op::Yield
            | Op::Ret
            | Op::Fill(..)
            | Op::Broadcast(_)
            | Op::Iota(..)
            | Op::Reduce(..)
            | Op::Matmul
            | Op::Dot
            | Op::Transpose(_)
            | Op::Reshape(_)
            | Op::Slice(_)
            | Op::Pad(_)
            | Op::Concat(_)
            | Op::Extract
            | Op::Insert => (None, None),
        };
        first.into_iter().chain(second)
    }

    /// True if the op runs functions ([`Op::callees`] is not empty): a test of the op
    /// alone, for scans of whole instruction tables (is there any call at all?).
    pub fn calls(&self) -> bool {
        matches!(self, Op::Call(_) | Op::TapeLoop(_) | Op::RevLoop(_))
    }

    /// The result types for operands of types `args`. `callee` looks up the signature
    /// of a called function. For `loop` this checks the bounds and returns the carried
    /// types; the body region is the verifier's business.
    pub fn result_types<'s>(
        &self,
        args: &[Type],
        callee: impl Fn(&str) -> Option<&'s Signature>,
    ) -> Result<TypeList, TypeError> {
        let name = self.name();
        if let Arity::Fixed(n) = self.arity() {
            if args.len() != n {
                return Err(TypeError::Arity {
                    op: name,
                    expected: n,
                    got: args.len(),
                });
            }
        }
        let check = |index: usize, accept: Accept| -> Result<(), TypeError> {
            if accept.ok(args[index]) {
                Ok(())
            } else {
                Err(TypeError::Operand {
                    op: name,
                    index,
                    got: args[index],
                    expected: accept.words().into(),
                })
            }
        };
        let same_as_first = |index: usize| -> Result<(), TypeError> {
            if args[index] == args[0] {
                Ok(())
            } else {
                Err(TypeError::Operand {
                    op: name,
                    index,
                    got: args[index],
                    expected: format!("{} (the type of operand 0)", args[0]),
                })
            }
        };
        // All operands of one accepted kind and one element type, broadcasting (all
        // scalars: one type); result the broadcast type.
        let uniform = |accept: Accept| -> Result<TypeList, TypeError> {
            for i in 0..args.len() {
                check(i, accept)?;
            }
            if args.iter().all(|t| t.scalar().is_some()) {
                for i in 0..args.len() {
                    same_as_first(i)?;
                }
                return Ok(smallvec![args[0]]);
            }
            Ok(smallvec![shape::elementwise(name, args)?])
        };
        let scalar_only = |index: usize| -> Result<(), TypeError> {
            if args[index].scalar().is_some() {
                Ok(())
            } else {
                Err(TypeError::Operand {
                    op: name,
                    index,
                    got: args[index],
                    expected: "a scalar".into(),
                })
            }
        };
        // Operands that must be i64 (loop bounds, tape tokens).
        let all_i64 = |range: std::ops::Range<usize>, what: &str| -> Result<(), TypeError> {
            match range.clone().find(|&i| args[i] != Type::I64) {
                Some(i) => Err(TypeError::Operand {
                    op: name,
                    index: i,
                    got: args[i],
                    expected: format!("i64 ({what})"),
                }),
                None => Ok(()),
            }
        };
        match self {
            Op::Const(c) => Ok(smallvec![Type::Scalar(c.ty())]),
            Op::Add | Op::Sub | Op::Mul | Op::Neg | Op::Abs | Op::Min | Op::Max => {
                uniform(Accept::Numeric)
            }
            Op::Div
            | Op::Fma
            | Op::Sqrt
            | Op::Exp
            | Op::Expm1
            | Op::Log
            | Op::Log1p
            | Op::Sin
            | Op::Cos
            | Op::Tan
            | Op::Tanh
            | Op::Sigmoid
            | Op::Erf
            | Op::Pow
            | Op::Powi(_)
            | Op::Atan2
            | Op::Floor
            | Op::Ceil
            | Op::Round
            | Op::Trunc
            | Op::Copysign => uniform(Accept::Float),
            Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                uniform(Accept::Numeric)?;
                Ok(smallvec![shape::compare(name, args[0], args[1])?])
            }
            Op::Eq | Op::Ne => {
                uniform(Accept::Any)?;
                Ok(smallvec![shape::compare(name, args[0], args[1])?])
            }
            Op::Select => {
                if args.iter().any(|t| t.scalar().is_none()) {
                    return Ok(smallvec![shape::select(args[0], args[1], args[2])?]);
                }
                if args[0] != Type::BOOL {
                    return Err(TypeError::Operand {
                        op: name,
                        index: 0,
                        got: args[0],
                        expected: "bool".into(),
                    });
                }
                check(1, Accept::Any)?;
                if args[2] != args[1] {
                    return Err(TypeError::Operand {
                        op: name,
                        index: 2,
                        got: args[2],
                        expected: format!("{} (the type of operand 1)", args[1]),
                    });
                }
                Ok(smallvec![args[1]])
            }
            Op::Cast(to) => Ok(smallvec![match args[0] {
                Type::Scalar(_) => Type::Scalar(*to),
                Type::Tensor(_, s) => Type::Tensor(*to, s),
            }]),
            Op::Fill(c, t) => Ok(smallvec![shape::fill(c.ty(), **t)?]),
            Op::Broadcast(t) => Ok(smallvec![shape::broadcast_to(args[0], *t)?]),
            Op::Iota(axis, t) => Ok(smallvec![shape::iota(*t, usize::from(*axis))?]),
            Op::Reduce(r, axes) => Ok(smallvec![shape::reduce(*r, args[0], &axes.to_vec())?]),
            Op::Matmul => Ok(smallvec![shape::matmul(args[0], args[1])?]),
            Op::Dot => Ok(smallvec![shape::dot(args[0], args[1])?]),
            Op::Transpose(perm) => Ok(smallvec![shape::transpose(args[0], &perm.to_vec())?]),
            Op::Reshape(t) => Ok(smallvec![shape::reshape(args[0], *t)?]),
            Op::Slice(r) => {
                if args.len() != 1 {
                    return Err(TypeError::Arity {
                        op: name,
                        expected: 1,
                        got: args.len(),
                    });
                }
                Ok(smallvec![shape::slice(args[0], r)?])
            }
            Op::Pad(r) => {
                if args.len() != 2 {
                    return Err(TypeError::Arity {
                        op: name,
                        expected: 2,
                        got: args.len(),
                    });
                }
                let widths: Vec<(u32, u32)> = r.iter().map(|w| (w.start, w.end)).collect();
                Ok(smallvec![shape::pad(args[0], args[1], &widths)?])
            }
            Op::Concat(axis) => {
                if args.is_empty() {
                    return Err(TypeError::Arity {
                        op: name,
                        expected: 1,
                        got: 0,
                    });
                }
                Ok(smallvec![shape::concat(args, usize::from(*axis))?])
            }
            Op::Extract => Ok(smallvec![shape::extract(args[0], args[1])?]),
            Op::Insert => Ok(smallvec![shape::insert(args[0], args[1], args[2])?]),
            Op::Guard => {
                scalar_only(0)?;
                if args[0] != Type::BOOL {
                    return Err(TypeError::Operand {
                        op: name,
                        index: 0,
                        got: args[0],
                        expected: "bool".into(),
                    });
                }
                Ok(smallvec![])
            }
            Op::Call(f) => {
                let sig = callee(f).ok_or_else(|| TypeError::UnknownCallee(f.clone()))?;
                if args.len() != sig.params.len() {
                    return Err(TypeError::Arity {
                        op: name,
                        expected: sig.params.len(),
                        got: args.len(),
                    });
                }
                for (i, (&a, &p)) in args.iter().zip(&sig.params).enumerate() {
                    if a != p {
                        return Err(TypeError::Operand {
                            op: name,
                            index: i,
                            got: a,
                            expected: format!("{p} (parameter {i} of @{f})"),
                        });
                    }
                }
                Ok(sig.results.iter().copied().collect())
            }
            Op::Loop(b) => {
                let nd = b.num_dyn();
                if args.len() < nd {
                    return Err(TypeError::Arity {
                        op: name,
                        expected: nd,
                        got: args.len(),
                    });
                }
                all_i64(0..nd, "a loop bound")?;
                for i in nd..args.len() {
                    check(i, Accept::Any)?;
                }
                Ok(args[nd..].into())
            }
            Op::TapeLoop(r) => {
                let [bounds, inits, caps] = r.split(args.len()).ok_or(TypeError::Arity {
                    op: name,
                    expected: r.bounds.num_dyn() + r.state as usize,
                    got: args.len(),
                })?;
                all_i64(bounds, "a loop bound")?;
                let fwd = callee(&r.fwd).ok_or_else(|| TypeError::UnknownCallee(r.fwd.clone()))?;
                let state = &args[inits];
                let want: Vec<Type> = std::iter::once(Type::I64)
                    .chain(state.iter().copied())
                    .chain(args[caps].iter().copied())
                    .collect();
                if fwd.params != want || fwd.results != state {
                    return Err(TypeError::Operand {
                        op: name,
                        index: 0,
                        got: Type::I64,
                        expected: format!(
                            "@{} to be (i64, state..., captures...) -> (state...) for the \
                             given operands",
                            r.fwd
                        ),
                    });
                }
                Ok(state.iter().copied().chain([Type::I64]).collect())
            }
            Op::RevLoop(r) => {
                let [bounds, tape, inits, caps, seeds] =
                    r.split(args.len()).ok_or(TypeError::Arity {
                        op: name,
                        expected: r.bounds.num_dyn()
                            + usize::from(r.tape)
                            + r.state as usize
                            + r.caps as usize,
                        got: args.len(),
                    })?;
                all_i64(tape, "a tape token")?;
                all_i64(bounds, "a loop bound")?;
                let fwd = callee(&r.fwd).ok_or_else(|| TypeError::UnknownCallee(r.fwd.clone()))?;
                let bwd = callee(&r.bwd).ok_or_else(|| TypeError::UnknownCallee(r.bwd.clone()))?;
                let state = &args[inits.clone()];
                let want_fwd: Vec<Type> = std::iter::once(Type::I64)
                    .chain(state.iter().copied())
                    .chain(args[caps.clone()].iter().copied())
                    .collect();
                let want_bwd: Vec<Type> = want_fwd
                    .iter()
                    .copied()
                    .chain(args[seeds.clone()].iter().copied())
                    .collect();
                let mismatch = |what: String| TypeError::Operand {
                    op: name,
                    index: 0,
                    got: Type::I64,
                    expected: what,
                };
                if fwd.params != want_fwd || fwd.results != state {
                    return Err(mismatch(format!(
                        "@{} to be (i64, state..., captures...) -> (state...) for the given \
                         operands",
                        r.fwd
                    )));
                }
                if bwd.params != want_bwd || bwd.results != args[seeds.clone()] {
                    return Err(mismatch(format!(
                        "@{} to be (i64, state..., captures..., adjoints...) -> (adjoints...) \
                         for the given operands",
                        r.bwd
                    )));
                }
                Ok(args[seeds].into())
            }
            Op::Yield | Op::Ret => Ok(smallvec![]),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for &n in Op::NAMES {
            let op = Op::from_name(n).unwrap_or_else(|| panic!("no op named {n}"));
            assert_eq!(op.name(), n);
            assert_eq!(op.calls(), op.callees().next().is_some(), "{n}");
            assert_eq!(
                Op::from_plain_name(n).is_some(),
                op.format().is_plain(),
                "{n}"
            );
            // Setting an op's own payload gives the op back.
            let f = op.format();
            assert_eq!(op.clone().with_payload(f).as_ref(), Ok(&op), "{n}");
        }
        assert_eq!(Op::from_name("nope"), None);
    }

    #[test]
    fn payloads_are_checked() {
        let powi = Op::from_name("powi").unwrap();
        assert_eq!(
            powi.clone().with_payload(Format::WithImm(-3)),
            Ok(Op::Powi(-3))
        );
        assert!(matches!(
            powi.clone().with_payload(Format::WithImm(1 << 40)),
            Err(PayloadError::Immediate { .. })
        ));
        assert!(matches!(
            powi.with_payload(Format::Binary),
            Err(PayloadError::Format { op: "powi" })
        ));
        let tensor = Type::Tensor(ScalarType::F64, crate::types::Shape::new(&[2]).unwrap());
        assert!(matches!(
            Op::from_name("cast")
                .unwrap()
                .with_payload(Format::WithType(tensor)),
            Err(PayloadError::Type { .. })
        ));
        assert!(Op::Add.with_payload(Format::Unary).is_err());
    }

    /// Every op has a format, and every format prints and re-parses: the golden inputs
    /// hold each op (so each format) at least once.
    #[test]
    fn every_format_prints_and_reparses() {
        use crate::{parse_module, print_module};
        let texts = [
            include_str!("../../tests/ir/all_ops.jir"),
            include_str!("../../tests/ir/revloop.jir"),
            include_str!("../../tests/ir/tensors.jir"),
        ];
        let mut names = std::collections::BTreeSet::new();
        let mut formats = std::collections::BTreeSet::new();
        for t in texts {
            let m = parse_module(t).unwrap();
            let printed = print_module(&m);
            let again = parse_module(&printed).unwrap();
            assert_eq!(print_module(&again), printed);
            for f in &m.funcs {
                for (_, d) in f.insts.iter() {
                    names.insert(d.op.name());
                    let fmt = d.op.format();
                    formats.insert(
                        format!("{fmt:?}")
                            .split('(')
                            .next()
                            .unwrap_or("")
                            .to_string(),
                    );
                    assert_eq!(d.op.arity(), fmt.arity());
                }
            }
        }
        let missing: Vec<_> = Op::NAMES.iter().filter(|n| !names.contains(*n)).collect();
        assert!(missing.is_empty(), "ops not covered: {missing:?}");
        assert_eq!(formats.len(), 18, "{formats:?}");
    }

    #[test]
    fn typing() {
        let none = |_: &str| None;
        assert_eq!(
            Op::Add.result_types(&[Type::F64, Type::F64], none).unwrap()[..],
            [Type::F64]
        );
        assert!(Op::Add.result_types(&[Type::F64, Type::F32], none).is_err());
        assert!(Op::Sin.result_types(&[Type::I64], none).is_err());
        assert_eq!(
            Op::Lt.result_types(&[Type::I64, Type::I64], none).unwrap()[..],
            [Type::BOOL]
        );
        assert!(Op::Select
            .result_types(&[Type::F64, Type::F64, Type::F64], none)
            .is_err());
        assert!(matches!(
            Op::Call("h".into()).result_types(&[], none),
            Err(TypeError::UnknownCallee(_))
        ));
    }

    #[test]
    fn floats_print_round_trip() {
        for v in [0.5, -0.0, 1e300, 3.0, f64::MIN_POSITIVE, 0.1] {
            let s = format_float(v);
            assert_eq!(s.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{s}");
        }
        assert_eq!(format_float(f64::NAN), "nan");
        assert_eq!(format_float(f64::NEG_INFINITY), "-inf");
    }
}
