//! The tracer: run generic Rust code on [`Var`] and record it as IR.
//!
//! [`Var`] is a traced `f64` scalar implementing num-traits' [`Float`], so one generic
//! function `fn f<T: Float>(x: &[T]) -> T` runs natively on `f64` and, called through
//! [`trace`], records a [`Function`]:
//!
//! ```
//! use jitad_ir::trace::trace_scalar;
//! use num_traits::Float;
//! fn f<T: Float>(x: &[T]) -> T {
//!     (x[0] + x[1]) * (x[0] - x[1])
//! }
//! let g = trace_scalar("f", &[3.0, 2.0], |x| f(x)).unwrap();
//! assert_eq!(g.sig.params.len(), 2);
//! let y = jitad_ir::interp::eval_function_f64(&g, None, &[5.0, 1.0]).unwrap();
//! assert_eq!(y, vec![24.0]);
//! assert_eq!(f(&[5.0, 1.0]), 24.0);
//! ```
//!
//! # How it works
//!
//! A thread-local context holds the [`FunctionBuilder`] and a generation number unique to
//! the trace. A `Var` carries its example value and, when it was recorded, the
//! generation and the IR value. A `Var` without a node is a constant not yet recorded:
//! ops between constants fold at trace time (nothing is recorded), and a constant is
//! materialised as `const` (once per bit pattern) only when combined with a traced `Var`.
//! Outside any trace a `Var` is a plain number.
//!
//! Every op computes its example value with the same [`crate::math`] functions the
//! interpreter and the JIT use, so the traced function evaluated at the example gives
//! the example's results bit for bit.
//!
//! # Abstract traces
//!
//! A trace is **eager** ([`trace`], [`trace_tensors`]: from example values) or
//! **abstract** ([`trace_abstract`], [`trace_tensors_abstract`]: from the parameters'
//! types alone). The mode belongs to the whole trace, not to each parameter, so one
//! rule holds in an abstract trace: *no traced value has a value* — every traced `Var`,
//! [`Tensor`] and [`Index`] is known by its type only, and nothing downstream can
//! observe a made-up example.
//!
//! | | eager | abstract |
//! |---|---|---|
//! | recorded op | its example computed by the interpreter's kernel | its result type only ([`Op::result_types`], i.e. [`crate::shape`]); no kernel runs |
//! | cost | one kernel call per op (≈ one interpreted run) | O(ops), independent of tensor sizes |
//! | [`fori_loop`] | body traced once, then the loop run at the example | body traced once, never run |
//! | untraced constants | fold at trace time | the same: they keep their values and fold |
//! | shape errors, constant out-of-range `extract`/`insert` index | [`TraceError::Type`] / [`TraceError::Example`] | the same errors |
//! | value-dependent API (below) | answered from the example, guarded | [`TraceError::Abstract`] naming what asked |
//!
//! Both modes record **the same IR** (equal printed text) for every program that does
//! not use the value-dependent API, whenever the eager trace succeeds: an op's
//! recording depends only on its operands' nodes and types, and constants are concrete
//! in both. (An eager trace can also fail where an abstract one cannot look: a traced
//! index out of range at the example, a loop's guard failing in a later iteration, a
//! kernel's allocation refused; the abstract trace records the program, and the index
//! or guard is checked when it runs.) So trace abstractly
//! whenever the values are not needed (setting up a gradient to compile), and eagerly
//! when the function must decide Rust control flow from its inputs.
//!
//! **Value-dependent API** — needs a traced value; in an abstract trace it fails the
//! trace with [`TraceError::Abstract`] and answers a poison (never a guess):
//! comparisons (`==`, `<`, `partial_cmp`, ...; answer `false`), `is_nan`, `is_finite`,
//! `classify`, `is_sign_negative` and the other predicates, `Zero::is_zero`,
//! `ToPrimitive::to_*`, `NumCast::from`, `integer_decode`, [`Var::value`] (NaN),
//! [`Tensor::value`] (a NaN scalar), [`Index::value`] (0). [`Var::try_value`],
//! [`Tensor::try_value`] and [`Index::try_value`] return the error instead, without
//! failing the trace; `is_abstract` tells the two kinds apart. A value of an abstract
//! trace that escapes it keeps no value: `value()` is NaN (0 for an index) and
//! comparisons answer as NaN does (`false`).
//!
//! # Tensors and loops
//!
//! [`Tensor`] (module [`tensor`]) is the traced tensor, recorded into the same trace and
//! mixing with `Var` (a `Var` is a rank-0 tensor; [`Tensor::to_var`] goes back); trace
//! functions of tensors with [`trace_tensors`]. [`fori_loop`] (module [`loops`])
//! records a Rust loop as one `loop` region whose body is the closure traced once.
//!
//! The context keeps one *scope* per open region (the body, then each open loop body),
//! each with its own generation: a value is usable while the scope that recorded it is
//! open, so a value of a finished loop body is refused ([`TraceError::LoopEscape`])
//! like one of a finished trace. Constants are materialised once per scope. The context
//! also keeps each recorded value's example (tensors weakly), from which a traced loop
//! computes its results' examples.
//!
//! # Data-dependent decisions
//!
//! Comparisons (`<`, `==`, `partial_cmp`, ...), `is_nan`, `is_sign_negative`,
//! `classify`, `Zero::is_zero`, `ToPrimitive::to_*`, `integer_decode` and the like answer
//! from the example value and record a `guard` that the answer still holds: the guard
//! checks the comparison when it was true, and `eq %c, false` when it was false. A
//! traced function evaluated at inputs that would take the other branch fails with
//! [`crate::interp::EvalError::GuardFailed`] (re-trace), never silently computing the
//! wrong branch. Conversions to integers guard that `trunc(x)` equals the example's;
//! conversions to floats and `integer_decode` guard that `x` equals the example exactly
//! (sign of zero included). Decisions between two constants record nothing.
//!
//! # Semantics that differ from `f64`
//!
//! - `max`/`min` record IR `max`/`min`: IEEE 754-2019 `maximum`/`minimum`, which
//!   propagate NaN (and order −0 < +0), whereas `f64::max` ignores a NaN operand. This
//!   holds for untraced `Var`s too.
//! - Functions without an IR op are composites of IR ops (so they differentiate through
//!   the ops' rules); each method documents its formula. They agree with `std` to a few
//!   ulps in the usual range; where a formula overflows earlier than `std` it says so.
//! - `%` is `x − trunc(x/y)·y`, which differs from C's `fmod` (exact) when `x/y`
//!   rounds.
//! - `NumCast::from` reads its argument with `to_f64`, so converting a traced `Var`
//!   with it yields an untraced constant (and a guard pinning the value).

use crate::builder::{BuildError, FunctionBuilder};
use crate::function::{Function, Value, ValueList};
use crate::interp::Val;
use crate::math::f64m;
use crate::op::{Constant, Op, TypeError};
use crate::shape;
use crate::types::{ScalarType, Type};
use cranelift_entity::EntityRef;
use num_traits::{Float, FloatConst, Num, NumCast, One, ToPrimitive, Zero};
use std::cell::RefCell;
use std::collections::HashSet;
use std::num::FpCategory;
use std::ops::{
    Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Rem, RemAssign, Sub, SubAssign,
};
use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};
use std::sync::{Arc, Weak};

pub mod loops;
pub mod tensor;

pub use loops::{fori_loop, Carry, Index, Leaf};
pub use tensor::{trace_tensors, trace_tensors_abstract, Tensor};

/// Why a trace failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TraceError {
    /// `trace` was called while another trace was running on this thread.
    #[error("cannot trace @{inner} inside the trace of @{outer}: nested traces are not supported")]
    Nested {
        /// The running trace.
        outer: String,
        /// The trace that was refused.
        inner: String,
    },
    /// A `Var` recorded by another (usually finished) trace was used.
    #[error(
        "@{func}: a Var from another trace was used; a Var must not outlive the trace that \
         recorded it (pass values in through the trace's arguments instead)"
    )]
    ForeignVar {
        /// The trace that saw the foreign Var.
        func: String,
    },
    /// A value computed inside a traced loop body ([`fori_loop`]) was used after the
    /// loop (pass it out through the carry instead).
    #[error(
        "@{func}: a value computed inside a traced loop body was used outside the loop; \
         return it through the loop's carry instead"
    )]
    LoopEscape {
        /// The trace that saw the escaped value.
        func: String,
    },
    /// A tensor op's operands do not fit it (shapes, element types, axes); the source
    /// names the op and both shapes.
    #[error("@{func}: {source}")]
    Type {
        /// The running trace (`(untraced)` outside one).
        func: String,
        /// What was wrong, from the op's typing rules ([`crate::shape`]).
        #[source]
        source: Box<TypeError>,
    },
    /// Evaluating an op on the example failed (an index out of range, an allocation
    /// refused).
    #[error("@{func}: `{op}` failed on the example: {detail}")]
    Example {
        /// The running trace (`(untraced)` outside one).
        func: String,
        /// The op's text name.
        op: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// Dimensions no tensor type has (rank 0 or above [`crate::types::MAX_RANK`], a
    /// dimension of 0 or above `u32::MAX`), or data of the wrong length for them.
    #[error("@{func}: no {elem} tensor of {len} elements has the dimensions {dims:?}")]
    Dims {
        /// The running trace (`(untraced)` outside one).
        func: String,
        /// The element type.
        elem: ScalarType,
        /// The dimensions asked for.
        dims: Vec<usize>,
        /// The number of elements given.
        len: usize,
    },
    /// A value of the wrong kind where the tracer needs a specific one (a tensor where a
    /// scalar `Var` is asked for, an `i64` where a float is).
    #[error("@{func}: {what} needs {expected}, got a value of type {got}")]
    Kind {
        /// The running trace (`(untraced)` outside one).
        func: String,
        /// The method or argument.
        what: &'static str,
        /// What it needs.
        expected: &'static str,
        /// The type it got.
        got: Type,
    },
    /// An untraced tensor with unequal elements and more than [`MAX_INLINE_ELEMENTS`]
    /// met a traced value: the IR has no tensor literal, so it would be recorded
    /// element by element.
    #[error(
        "@{func}: a constant {ty} with unequal elements would be recorded element by \
         element; pass it as an argument of the traced function instead"
    )]
    LargeConstant {
        /// The running trace.
        func: String,
        /// The constant's type.
        ty: Type,
    },
    /// A traced loop's body returned a carry of another structure than its input.
    #[error("@{func}: the loop body returned {got} carried value(s), expected {expected}")]
    CarryStructure {
        /// The running trace.
        func: String,
        /// Leaves of the initial carry.
        expected: usize,
        /// Leaves returned.
        got: usize,
    },
    /// Evaluating a traced loop at the example failed: typically a data-dependent
    /// decision in the body (a comparison, recorded with a guard from the first
    /// iteration's values) that a later iteration answers differently.
    #[error(
        "@{func}: the traced loop failed at the example: {source} (a data-dependent \
         decision in a loop body must hold in every iteration; use `select`-style \
         arithmetic instead)"
    )]
    LoopExample {
        /// The running trace.
        func: String,
        /// The interpreter's error.
        #[source]
        source: Box<crate::interp::EvalError>,
    },
    /// Code traced abstractly ([`trace_abstract`], [`trace_tensors_abstract`]) asked for
    /// a traced value: a comparison or predicate deciding Rust control flow,
    /// [`Var::value`], [`Tensor::value`], a conversion to a number. An abstract trace
    /// knows only types, so the decision cannot be taken (and is not guessed).
    #[error(
        "@{func}: {what} needs the value of a traced operand, but this trace is abstract \
         (types only); trace at example values instead, or write the decision branch-free \
         (`maximum`, `minimum`, arithmetic masks)"
    )]
    Abstract {
        /// The running trace (`(untraced)` outside one).
        func: String,
        /// The method or op that needed the value.
        what: String,
    },
    /// The builder rejected an instruction (a bug in the tracer, reported rather than
    /// panicking).
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Generations are unique across threads, so a `Var` moved between threads is still
/// recognised as foreign.
static NEXT_GENERATION: AtomicU32 = AtomicU32::new(1);

/// The generation bit marking an abstract trace's scopes: a value recorded by an
/// abstract trace carries it in its node, so it is known to have no value even after
/// the trace (when no context is left to ask).
const ABSTRACT_BIT: u32 = 1 << 31;

/// True when `node` was recorded by an abstract trace (it has a type, no value).
pub(crate) fn is_abstract(node: Option<(u32, Value)>) -> bool {
    node.is_some_and(|(g, _)| g & ABSTRACT_BIT != 0)
}

/// What the tracer knows of a value: its example (eager traces, and every untraced
/// constant), or only its type (a traced value of an abstract trace).
#[derive(Clone, Debug)]
pub(crate) enum Known {
    /// The example value.
    Val(Val),
    /// The type alone.
    Type(Type),
}

impl Known {
    /// The value's type.
    pub(crate) fn ty(&self) -> Type {
        match self {
            Known::Val(v) => v.type_of(),
            Known::Type(t) => *t,
        }
    }

    /// The example, when known.
    pub(crate) fn val(&self) -> Option<&Val> {
        match self {
            Known::Val(v) => Some(v),
            Known::Type(_) => None,
        }
    }
}

/// Records that `what` needed a traced value in an abstract trace (when inside one).
pub(crate) fn fail_abstract(what: impl FnOnce() -> String) {
    with_ctx(|ctx| {
        let func = ctx.name();
        let what = what();
        ctx.fail(TraceError::Abstract { func, what });
    });
}

/// The trace context: the builder, the open scopes and every recorded value's example.
pub(crate) struct Ctx {
    pub(crate) builder: FunctionBuilder,
    /// The trace's generation (the function body's scope).
    generation: u32,
    /// Open scopes, the function body first, then one per open loop body: values
    /// recorded in a scope are usable while it is open.
    scopes: Vec<Scope>,
    /// Generations of closed loop bodies (their values must not be used any more).
    closed: HashSet<u32>,
    /// The example value of every recorded value, by value index (traced loops
    /// evaluate their recorded body on these).
    vals: Vec<Option<Example>>,
    error: Option<TraceError>,
}

/// A recorded value's example. An op's tensor result is held weakly: the trace must not
/// keep every intermediate buffer alive, and a loop body can only capture a value
/// through a live `Tensor`, which holds the same buffer.
#[derive(Clone, Debug)]
enum Example {
    Held(Val),
    Weak(Weak<crate::tensor::Tensor>),
}

/// One open region: the function body or a loop body.
struct Scope {
    generation: u32,
    /// Constants materialised in this region, once per bit pattern (and type, for
    /// `fill`).
    // Fx hashing: looked up for every constant a traced operation takes (a Rosenbrock
    // term takes two), where SipHash showed in the profile.
    consts: rustc_hash::FxHashMap<(Constant, Type), Value>,
}

impl Scope {
    fn new(generation: u32) -> Self {
        Scope {
            generation,
            consts: rustc_hash::FxHashMap::default(),
        }
    }
}

/// A fresh generation number, unique across threads, marked abstract or not.
pub(crate) fn fresh_generation(abstract_trace: bool) -> u32 {
    let g = NEXT_GENERATION.fetch_add(1, AtomicOrdering::Relaxed) & !ABSTRACT_BIT;
    if abstract_trace {
        g | ABSTRACT_BIT
    } else {
        g
    }
}

impl Ctx {
    pub(crate) fn fail(&mut self, e: TraceError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// The name of the function being traced.
    pub(crate) fn name(&self) -> String {
        self.builder.func().name.clone()
    }

    /// The generation of the innermost open scope (new values are born there).
    pub(crate) fn scope_generation(&self) -> u32 {
        self.scopes.last().map_or(self.generation, |s| s.generation)
    }

    /// True for an abstract trace: no traced value has an example.
    pub(crate) fn is_abstract(&self) -> bool {
        self.generation & ABSTRACT_BIT != 0
    }

    /// Opens a loop body's scope.
    pub(crate) fn push_scope(&mut self) -> u32 {
        let g = fresh_generation(self.is_abstract());
        self.scopes.push(Scope::new(g));
        g
    }

    /// Closes the innermost loop body's scope.
    pub(crate) fn pop_scope(&mut self) {
        if self.scopes.len() > 1 {
            if let Some(s) = self.scopes.pop() {
                self.closed.insert(s.generation);
            }
        }
    }

    /// Records the example value of `v`, an op's result (a tensor is held weakly).
    pub(crate) fn put(&mut self, v: Value, x: Val) {
        let e = match x {
            Val::Tensor(t) => Example::Weak(Arc::downgrade(&t)),
            x => Example::Held(x),
        };
        self.store(v, e);
    }

    /// Records the example value of `v` and keeps it alive for the whole trace (for
    /// parameters and cached constants, which no `Tensor` may hold).
    pub(crate) fn put_held(&mut self, v: Value, x: Val) {
        self.store(v, Example::Held(x));
    }

    fn store(&mut self, v: Value, e: Example) {
        // An abstract trace keeps no examples (a constant's is in its `Var`/`Tensor`).
        if self.is_abstract() {
            return;
        }
        let i = v.index();
        if self.vals.len() <= i {
            self.vals.resize(i + 1, None);
        }
        self.vals[i] = Some(e);
    }

    /// The example value of `v`, if recorded and alive.
    pub(crate) fn val(&self, v: Value) -> Option<Val> {
        match self.vals.get(v.index())?.as_ref()? {
            Example::Held(x) => Some(x.clone()),
            Example::Weak(w) => w.upgrade().map(Val::Tensor),
        }
    }

    /// A constant, materialised once per scope chain.
    fn cached(
        &mut self,
        key: (Constant, Type),
        make: impl FnOnce(&mut Self) -> Option<Value>,
    ) -> Option<Value> {
        if let Some(v) = self.scopes.iter().rev().find_map(|s| s.consts.get(&key)) {
            return Some(*v);
        }
        let v = make(self)?;
        if let Some(s) = self.scopes.last_mut() {
            s.consts.insert(key, v);
        }
        Some(v)
    }

    fn constant(&mut self, c: Constant) -> Value {
        let ty = Type::Scalar(c.ty());
        let made = self.cached((c, ty), |ctx| {
            let v = ctx.builder.constant(c);
            ctx.put(v, Val::from(c));
            Some(v)
        });
        // `cached` only fails when `make` does, which it never does here.
        made.unwrap_or_else(|| self.builder.constant(c))
    }

    /// Records a value for an untraced example: `const` for a scalar, `fill` for a
    /// tensor of equal elements, and for any other tensor of at most
    /// [`MAX_INLINE_ELEMENTS`] its elements joined with `concat` (O(elements)
    /// instructions); a larger one fails the trace ([`TraceError::LargeConstant`]).
    pub(crate) fn materialize(&mut self, x: &Val) -> Option<Value> {
        let t = match x {
            Val::F64(v) => return Some(self.constant(Constant::F64(*v))),
            Val::F32(v) => return Some(self.constant(Constant::F32(*v))),
            Val::I64(v) => return Some(self.constant(Constant::I64(*v))),
            Val::Bool(v) => return Some(self.constant(Constant::Bool(*v))),
            Val::Tensor(t) => t.clone(),
        };
        let ty = t.ty();
        if let Some(first) = uniform(&t) {
            return self.cached((first, ty), |ctx| {
                let v = ctx.ins1(Op::Fill(first, Box::new(ty)), &[])?;
                ctx.put_held(v, x.clone());
                Some(v)
            });
        }
        if t.data().len() > MAX_INLINE_ELEMENTS {
            let func = self.name();
            self.fail(TraceError::LargeConstant { func, ty });
            return None;
        }
        let elems = tensor_constants(&t);
        let row = Type::Tensor(ty.elem(), crate::types::Shape::new(&[1])?);
        let mut parts = Vec::with_capacity(elems.len());
        for c in elems {
            let s = self.constant(c);
            let b = self.ins1(Op::Broadcast(row), &[s])?;
            self.put(b, eval_example(&Op::Broadcast(row), &[Val::from(c)])?);
            parts.push(b);
        }
        let flat = self.ins1(Op::Concat(0), &parts)?;
        if shape::rank(ty) == 1 {
            self.put(flat, x.clone());
            return Some(flat);
        }
        let n = crate::types::Shape::new(&[t.data().len()])?;
        let flat_x = crate::tensor::Tensor::new(n, t.data().clone()).ok()?;
        self.put(flat, Val::tensor(flat_x));
        self.ins1v(Op::Reshape(ty), &[flat], x.clone())
    }

    /// The IR value of a node (`None`: the untraced example `x`, materialised) in this
    /// trace; `None` (and the trace fails) for a value of another trace or of a closed
    /// loop body.
    pub(crate) fn node_value(&mut self, node: Option<(u32, Value)>, x: &Val) -> Option<Value> {
        match node {
            None => self.materialize(x),
            Some((g, v)) if self.scopes.iter().any(|s| s.generation == g) => Some(v),
            Some((g, _)) => {
                let func = self.name();
                if self.closed.contains(&g) {
                    self.fail(TraceError::LoopEscape { func });
                } else {
                    self.fail(TraceError::ForeignVar { func });
                }
                None
            }
        }
    }

    /// [`Ctx::node_value`] for a value known as [`Known`]: an untraced value always has
    /// its example (only traced values of an abstract trace are types alone).
    pub(crate) fn known_value(&mut self, node: Option<(u32, Value)>, x: &Known) -> Option<Value> {
        match (node, x) {
            (None, Known::Type(ty)) => {
                let func = self.name();
                self.fail(TraceError::Example {
                    func,
                    op: "const",
                    detail: format!("internal: an untraced {ty} without a value"),
                });
                None
            }
            (node, Known::Val(v)) => self.node_value(node, v),
            // `node_value` reads the example only for an untraced value.
            (node, Known::Type(_)) => self.node_value(node, &Val::F64(f64::NAN)),
        }
    }

    /// [`Ctx::ins1`], recording the result's example when it has one.
    pub(crate) fn ins1k(&mut self, op: Op, args: &[Value], x: &Known) -> Option<Value> {
        let v = self.ins1(op, args)?;
        if let Known::Val(x) = x {
            self.put(v, x.clone());
        }
        Some(v)
    }

    /// The IR value of `a` in this trace; `None` (and the trace fails) for a foreign Var.
    fn value_of(&mut self, a: Var) -> Option<Value> {
        self.node_value(a.node, &Val::F64(a.x))
    }

    /// The IR values of `args` (inline: no allocation per traced operation).
    fn values_of(&mut self, args: &[Var]) -> Option<ValueList> {
        args.iter().map(|&a| self.value_of(a)).collect()
    }

    pub(crate) fn ins1(&mut self, op: Op, args: &[Value]) -> Option<Value> {
        match self.builder.ins1(op, args) {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(e.into());
                None
            }
        }
    }

    /// [`Ctx::ins1`], recording the result's example value `x`.
    pub(crate) fn ins1v(&mut self, op: Op, args: &[Value], x: Val) -> Option<Value> {
        let v = self.ins1(op, args)?;
        self.put(v, x);
        Some(v)
    }

    fn guard(&mut self, c: Value) {
        if let Err(e) = self.builder.ins(Op::Guard, &[c]) {
            self.fail(e.into());
        }
    }

    /// Guards that the bool `c` is `holds`.
    fn guard_is(&mut self, c: Value, holds: bool) {
        if holds {
            self.guard(c);
        } else {
            let f = self.constant(Constant::Bool(false));
            if let Some(e) = self.ins1v(Op::Eq, &[c, f], Val::Bool(true)) {
                self.guard(e);
            }
        }
    }
}

/// The most elements an untraced tensor with unequal elements may have to be recorded
/// element by element (see [`TraceError::LargeConstant`]).
pub const MAX_INLINE_ELEMENTS: usize = 1024;

/// The common element of a tensor whose elements are all equal (bit for bit).
fn uniform(t: &crate::tensor::Tensor) -> Option<Constant> {
    use crate::tensor::TensorData;
    fn same<T: Copy>(v: &[T], c: impl Fn(T) -> Constant) -> Option<Constant> {
        let first = c(*v.first()?);
        v.iter().all(|&x| c(x) == first).then_some(first)
    }
    match t.data() {
        TensorData::F64(v) => same(v, Constant::F64),
        TensorData::F32(v) => same(v, Constant::F32),
        TensorData::I64(v) => same(v, Constant::I64),
        TensorData::Bool(v) => same(v, Constant::Bool),
    }
}

/// The elements of a tensor as constants, row-major.
fn tensor_constants(t: &crate::tensor::Tensor) -> Vec<Constant> {
    use crate::tensor::TensorData;
    match t.data() {
        TensorData::F64(v) => v.iter().map(|&x| Constant::F64(x)).collect(),
        TensorData::F32(v) => v.iter().map(|&x| Constant::F32(x)).collect(),
        TensorData::I64(v) => v.iter().map(|&x| Constant::I64(x)).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| Constant::Bool(x)).collect(),
    }
}

/// The example result of a pure op on example operands, through the interpreter's
/// tensor arms (so the example agrees with the interpreter bit for bit); `None` when
/// they fail.
fn eval_example(op: &Op, args: &[Val]) -> Option<Val> {
    crate::tensor::eval(op, args).ok()
}

thread_local! {
    static CTX: RefCell<Option<Ctx>> = const { RefCell::new(None) };
}

/// Runs `f` on the active trace context, if there is one.
pub(crate) fn with_ctx<R>(f: impl FnOnce(&mut Ctx) -> R) -> Option<R> {
    CTX.try_with(|c| c.try_borrow_mut().ok().and_then(|mut c| c.as_mut().map(f)))
        .ok()
        .flatten()
}

/// A traced `f64` scalar: an example value and, once recorded, its IR value.
///
/// Outside a trace (or when built with [`Var::constant`]) it is a plain number; see the
/// [module docs](self) for the semantics.
#[derive(Clone, Copy, Debug)]
pub struct Var {
    pub(crate) x: f64,
    pub(crate) node: Option<(u32, Value)>,
}

impl Var {
    /// An untraced constant.
    pub fn constant(x: f64) -> Var {
        Var { x, node: None }
    }

    /// A Var of example `x` recorded as `node`; NaN when `node` belongs to an abstract
    /// trace (so nothing downstream can read a made-up example).
    pub(crate) fn new(x: f64, node: Option<(u32, Value)>) -> Var {
        let x = if is_abstract(node) { f64::NAN } else { x };
        Var { x, node }
    }

    /// The example value. **Value-dependent**: a Var of an abstract trace has none, so
    /// this fails that trace with [`TraceError::Abstract`] and returns NaN (also after
    /// the trace); [`Var::try_value`] returns the error instead.
    pub fn value(&self) -> f64 {
        if self.is_abstract() {
            fail_abstract(|| "`Var::value`".into());
        }
        self.x
    }

    /// The example value, or [`TraceError::Abstract`] for a Var of an abstract trace.
    pub fn try_value(&self) -> Result<f64, TraceError> {
        if self.is_abstract() {
            let func = with_ctx(|c| c.name()).unwrap_or_else(|| "(untraced)".into());
            return Err(TraceError::Abstract {
                func,
                what: "`Var::try_value`".into(),
            });
        }
        Ok(self.x)
    }

    /// True when the Var was recorded by an abstract trace: it has a type and no value.
    pub fn is_abstract(&self) -> bool {
        is_abstract(self.node)
    }

    /// True when the Var was recorded by a trace (not a folded constant).
    pub fn is_traced(&self) -> bool {
        self.node.is_some()
    }

    /// The IR value recorded for this Var, if any (meaningful only inside its trace).
    pub fn node(&self) -> Option<Value> {
        self.node.map(|(_, v)| v)
    }

    /// Records `op(args)` with example value `x`.
    fn record(op: Op, args: &[Var], x: f64) -> Var {
        let Some(first) = args.iter().find_map(|a| a.node) else {
            return Var::constant(x);
        };
        // Outside a trace, a recorded Var stays marked with its (stale) generation so a
        // later trace recognises anything computed from it as foreign.
        let stale = Var::new(x, Some(first));
        with_ctx(|ctx| {
            let gen = ctx.scope_generation();
            let node = ctx
                .values_of(args)
                .and_then(|vals| ctx.ins1v(op, &vals, Val::F64(x)))
                .map(|v| (gen, v));
            Var::new(x, node)
        })
        .unwrap_or(stale)
    }

    fn un(self, op: Op, x: f64) -> Var {
        Var::record(op, &[self], x)
    }

    fn bin(self, op: Op, other: Var, x: f64) -> Var {
        Var::record(op, &[self, other], x)
    }

    /// Records `op(a, b)` (a comparison) and guards that it is `holds`; returns `holds`.
    /// In an abstract trace there is no answer: the trace fails
    /// ([`TraceError::Abstract`]) and the answer is `false`.
    fn decide(op: Op, a: Var, b: Var, holds: bool) -> bool {
        if a.node.is_none() && b.node.is_none() {
            return holds;
        }
        if a.is_abstract() || b.is_abstract() {
            fail_abstract(|| {
                format!(
                    "`{}` (a comparison or predicate deciding Rust control flow)",
                    op.name()
                )
            });
            return false;
        }
        with_ctx(|ctx| {
            if let Some(vals) = ctx.values_of(&[a, b]) {
                if let Some(c) = ctx.ins1v(op, &vals, Val::Bool(holds)) {
                    ctx.guard_is(c, holds);
                }
            }
        });
        holds
    }

    /// Fails an abstract trace when this Var is abstract (`what` needed its value);
    /// returns whether it was.
    fn fail_if_abstract(self, what: &'static str) -> bool {
        let a = self.is_abstract();
        if a {
            fail_abstract(|| what.into());
        }
        a
    }

    /// Guards that `x` equals the example exactly: same value, same sign of zero, or NaN
    /// when the example is NaN.
    fn pin_exact(self) {
        if self.fail_if_abstract("a conversion to a Rust number (`to_f64`, `integer_decode`)") {
            return;
        }
        let x = self.x;
        if x.is_nan() {
            Var::decide(Op::Ne, self, self, true);
        } else {
            Var::decide(Op::Eq, self, Var::constant(x), true);
            if x == 0.0 {
                self.is_sign_negative();
            }
        }
    }

    /// Guards that `trunc(x)` equals the example's (which decides every integer
    /// conversion), or NaN/±inf when the example is.
    fn pin_trunc(self) {
        if self.fail_if_abstract("a conversion to a Rust integer (`to_i64`, `to_usize`, ...)") {
            return;
        }
        let x = self.x;
        if x.is_nan() {
            Var::decide(Op::Ne, self, self, true);
        } else if x.is_infinite() {
            Var::decide(Op::Eq, self, Var::constant(x), true);
        } else {
            let t = Float::trunc(self);
            Var::decide(Op::Eq, t, Var::constant(x.trunc()), true);
        }
    }

    /// The logistic sigmoid 1/(1 + e^(−x)) (IR `sigmoid`).
    pub fn sigmoid(self) -> Var {
        self.un(Op::Sigmoid, f64m::sigmoid(self.x))
    }

    /// The error function (IR `erf`).
    pub fn erf(self) -> Var {
        self.un(Op::Erf, f64m::erf(self.x))
    }

    /// The IR `select`-free ReLU, `max(x, 0)` (IEEE `maximum`: NaN propagates).
    pub fn relu(self) -> Var {
        Float::max(self, Var::constant(0.0))
    }
}

impl Default for Var {
    fn default() -> Self {
        Var::constant(0.0)
    }
}

impl From<f64> for Var {
    fn from(x: f64) -> Self {
        Var::constant(x)
    }
}

impl std::fmt::Display for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.x, f)
    }
}

/// Traces `f` at `example`: parameters `%x0, %x1, ...` of type `f64`, one per example
/// value, and `ret` of the outputs.
///
/// Fails when called inside another trace on the same thread, or when `f` used a `Var`
/// of another trace. If `f` panics, the panic propagates and the trace context is
/// cleaned up.
pub fn trace(
    name: &str,
    example: &[f64],
    f: impl FnOnce(&[Var]) -> Vec<Var>,
) -> Result<Function, TraceError> {
    let example: Vec<Known> = example.iter().map(|&x| Known::Val(Val::F64(x))).collect();
    trace_vars(name, &example, f)
}

/// Traces `f` from the number of its `f64` parameters alone: the **abstract** twin of
/// [`trace`]. Every recorded op computes only its result type; no traced `Var` has a
/// value, so the value-dependent API fails the trace with [`TraceError::Abstract`]
/// (see the [module docs](self#abstract-traces)). Records the same IR as [`trace`]
/// for any program that does not ask for a traced value.
///
/// ```
/// use jitad_ir::trace::{fori_loop, trace, trace_abstract};
/// let body = |p: &[jitad_ir::Var]| vec![fori_loop(0, 1000, p[0], |_, x| x * p[1] + 1.0)];
/// let eager = trace("f", &[1.0, 0.5], body).unwrap();
/// let abs = trace_abstract("f", 2, body).unwrap();
/// assert_eq!(eager.to_string(), abs.to_string());
/// ```
pub fn trace_abstract(
    name: &str,
    num_params: usize,
    f: impl FnOnce(&[Var]) -> Vec<Var>,
) -> Result<Function, TraceError> {
    let example = vec![Known::Type(Type::F64); num_params];
    trace_vars(name, &example, f)
}

fn trace_vars(
    name: &str,
    example: &[Known],
    f: impl FnOnce(&[Var]) -> Vec<Var>,
) -> Result<Function, TraceError> {
    run_trace(
        name,
        example,
        |gen, params| {
            let inputs: Vec<Var> = params
                .iter()
                .zip(example)
                .map(|(&v, x)| {
                    let x = x.val().and_then(Val::as_f64).unwrap_or(f64::NAN);
                    Var::new(x, Some((gen, v)))
                })
                .collect();
            f(&inputs)
        },
        |ctx, outputs| ctx.values_of(outputs).map(|v| v.to_vec()),
    )
}

/// Runs one trace: parameters `%x0, %x1, ...` of the examples' types, `f` given the
/// trace's generation and the parameters, `outs` turning its outputs into IR values
/// (`None` when the trace failed), then `ret`. The trace is abstract when `example`
/// holds types alone (the entry points never mix examples and types).
pub(crate) fn run_trace<O>(
    name: &str,
    example: &[Known],
    f: impl FnOnce(u32, &[Value]) -> O,
    outs: impl FnOnce(&mut Ctx, &O) -> Option<Vec<Value>>,
) -> Result<Function, TraceError> {
    let abstract_trace = example.iter().any(|x| x.val().is_none());
    let generation = fresh_generation(abstract_trace);
    let mut builder = FunctionBuilder::new(name);
    let mut vals = Vec::with_capacity(example.len());
    let params: Vec<Value> = example
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let v = builder.named_param(&format!("x{i}"), x.ty());
            if let Known::Val(x) = x {
                vals.push((v, x.clone()));
            }
            v
        })
        .collect();
    let installed = CTX.with(|c| {
        let mut c = c.try_borrow_mut().map_err(|_| TraceError::Nested {
            outer: "?".into(),
            inner: name.into(),
        })?;
        if let Some(outer) = c.as_ref() {
            return Err(TraceError::Nested {
                outer: outer.builder.func().name.clone(),
                inner: name.into(),
            });
        }
        let mut ctx = Ctx {
            builder,
            generation,
            scopes: vec![Scope::new(generation)],
            closed: HashSet::new(),
            vals: Vec::new(),
            error: None,
        };
        for (v, x) in vals {
            ctx.put_held(v, x);
        }
        *c = Some(ctx);
        Ok(())
    });
    installed?;
    // Uninstalls the context even if `f` panics.
    struct Uninstall;
    impl Drop for Uninstall {
        fn drop(&mut self) {
            let _ = CTX.try_with(|c| {
                if let Ok(mut c) = c.try_borrow_mut() {
                    *c = None;
                }
            });
        }
    }
    let uninstall = Uninstall;
    let outputs = f(generation, &params);
    let ctx = CTX.with(|c| c.borrow_mut().take());
    drop(uninstall);
    let Some(mut ctx) = ctx else {
        // Unreachable: only this function installs and removes the context.
        return Err(TraceError::Nested {
            outer: "?".into(),
            inner: name.into(),
        });
    };
    let outs = outs(&mut ctx, &outputs);
    if let Some(e) = ctx.error.take() {
        return Err(e);
    }
    let outs = outs.ok_or_else(|| TraceError::ForeignVar { func: name.into() })?;
    ctx.builder.ret(&outs)?;
    Ok(ctx.builder.finish()?)
}

/// [`trace`] for a function with one output.
pub fn trace_scalar(
    name: &str,
    example: &[f64],
    f: impl FnOnce(&[Var]) -> Var,
) -> Result<Function, TraceError> {
    trace(name, example, |x| vec![f(x)])
}

// ---- arithmetic operators: Var∘Var, Var∘f64, f64∘Var, and the assigning forms ----

macro_rules! binop {
    ($Tr:ident, $m:ident, $TrA:ident, $ma:ident, $op:expr, $f:expr) => {
        impl $Tr for Var {
            type Output = Var;
            fn $m(self, rhs: Var) -> Var {
                let f: fn(f64, f64) -> f64 = $f;
                self.bin($op, rhs, f(self.x, rhs.x))
            }
        }
        impl $Tr<f64> for Var {
            type Output = Var;
            fn $m(self, rhs: f64) -> Var {
                $Tr::$m(self, Var::constant(rhs))
            }
        }
        impl $Tr<Var> for f64 {
            type Output = Var;
            fn $m(self, rhs: Var) -> Var {
                $Tr::$m(Var::constant(self), rhs)
            }
        }
        impl $TrA for Var {
            fn $ma(&mut self, rhs: Var) {
                *self = $Tr::$m(*self, rhs);
            }
        }
        impl $TrA<f64> for Var {
            fn $ma(&mut self, rhs: f64) {
                *self = $Tr::$m(*self, rhs);
            }
        }
    };
}

binop!(Add, add, AddAssign, add_assign, Op::Add, |a, b| a + b);
binop!(Sub, sub, SubAssign, sub_assign, Op::Sub, |a, b| a - b);
binop!(Mul, mul, MulAssign, mul_assign, Op::Mul, |a, b| a * b);
binop!(Div, div, DivAssign, div_assign, Op::Div, |a, b| a / b);

/// `x % y` = `x − trunc(x/y)·y` (a composite; differs from `fmod` when `x/y` rounds).
impl Rem for Var {
    type Output = Var;
    fn rem(self, rhs: Var) -> Var {
        self - Float::trunc(self / rhs) * rhs
    }
}
impl Rem<f64> for Var {
    type Output = Var;
    fn rem(self, rhs: f64) -> Var {
        self % Var::constant(rhs)
    }
}
impl Rem<Var> for f64 {
    type Output = Var;
    fn rem(self, rhs: Var) -> Var {
        Var::constant(self) % rhs
    }
}
impl RemAssign for Var {
    fn rem_assign(&mut self, rhs: Var) {
        *self = *self % rhs;
    }
}
impl RemAssign<f64> for Var {
    fn rem_assign(&mut self, rhs: f64) {
        *self = *self % rhs;
    }
}

impl Neg for Var {
    type Output = Var;
    fn neg(self) -> Var {
        self.un(Op::Neg, -self.x)
    }
}

impl std::iter::Sum for Var {
    fn sum<I: Iterator<Item = Var>>(iter: I) -> Var {
        iter.fold(Var::constant(0.0), |a, b| a + b)
    }
}

impl std::iter::Product for Var {
    fn product<I: Iterator<Item = Var>>(iter: I) -> Var {
        iter.fold(Var::constant(1.0), |a, b| a * b)
    }
}

// ---- comparisons: answered from the example, guarded ----

/// Records `eq` and guards its answer.
impl PartialEq for Var {
    fn eq(&self, other: &Var) -> bool {
        Var::decide(Op::Eq, *self, *other, self.x == other.x)
    }
}

/// Records `eq` against a constant and guards its answer.
impl PartialEq<f64> for Var {
    fn eq(&self, other: &f64) -> bool {
        *self == Var::constant(*other)
    }
}

/// `lt`/`le`/`gt`/`ge` record that exact comparison; `partial_cmp` records the relation
/// that holds (`lt`, `eq` or `gt`; for unordered operands, that one of them is NaN).
impl PartialOrd for Var {
    fn partial_cmp(&self, other: &Var) -> Option<std::cmp::Ordering> {
        use std::cmp::Ordering::*;
        let (a, b) = (*self, *other);
        let r = self.x.partial_cmp(&other.x);
        match r {
            Some(Less) => Var::decide(Op::Lt, a, b, true),
            Some(Equal) => Var::decide(Op::Eq, a, b, true),
            Some(Greater) => Var::decide(Op::Gt, a, b, true),
            // Unordered: neither a <= b nor a >= b holds.
            None => {
                Var::decide(Op::Le, a, b, false);
                Var::decide(Op::Ge, a, b, false)
            }
        };
        r
    }
    fn lt(&self, other: &Var) -> bool {
        Var::decide(Op::Lt, *self, *other, self.x < other.x)
    }
    fn le(&self, other: &Var) -> bool {
        Var::decide(Op::Le, *self, *other, self.x <= other.x)
    }
    fn gt(&self, other: &Var) -> bool {
        Var::decide(Op::Gt, *self, *other, self.x > other.x)
    }
    fn ge(&self, other: &Var) -> bool {
        Var::decide(Op::Ge, *self, *other, self.x >= other.x)
    }
}

/// Comparisons against a constant, recorded and guarded like `Var`'s.
impl PartialOrd<f64> for Var {
    fn partial_cmp(&self, other: &f64) -> Option<std::cmp::Ordering> {
        self.partial_cmp(&Var::constant(*other))
    }
    fn lt(&self, other: &f64) -> bool {
        *self < Var::constant(*other)
    }
    fn le(&self, other: &f64) -> bool {
        *self <= Var::constant(*other)
    }
    fn gt(&self, other: &f64) -> bool {
        *self > Var::constant(*other)
    }
    fn ge(&self, other: &f64) -> bool {
        *self >= Var::constant(*other)
    }
}

// ---- num-traits ----

impl Zero for Var {
    fn zero() -> Var {
        Var::constant(0.0)
    }
    /// Records `eq x, 0.0` and guards the answer.
    fn is_zero(&self) -> bool {
        *self == Var::constant(0.0)
    }
}

impl One for Var {
    fn one() -> Var {
        Var::constant(1.0)
    }
}

impl Num for Var {
    type FromStrRadixErr = <f64 as Num>::FromStrRadixErr;
    fn from_str_radix(s: &str, radix: u32) -> Result<Var, Self::FromStrRadixErr> {
        <f64 as Num>::from_str_radix(s, radix).map(Var::constant)
    }
}

/// Conversions answer from the example and guard it: integer conversions guard
/// `trunc(x)`, float conversions guard `x` exactly.
impl ToPrimitive for Var {
    fn to_i64(&self) -> Option<i64> {
        self.pin_trunc();
        self.x.to_i64()
    }
    fn to_u64(&self) -> Option<u64> {
        self.pin_trunc();
        self.x.to_u64()
    }
    fn to_i128(&self) -> Option<i128> {
        self.pin_trunc();
        self.x.to_i128()
    }
    fn to_u128(&self) -> Option<u128> {
        self.pin_trunc();
        self.x.to_u128()
    }
    fn to_f32(&self) -> Option<f32> {
        self.pin_exact();
        self.x.to_f32()
    }
    fn to_f64(&self) -> Option<f64> {
        self.pin_exact();
        Some(self.x)
    }
}

/// An untraced constant from any number (a traced `Var` argument is pinned and read as
/// its example value).
impl NumCast for Var {
    fn from<T: ToPrimitive>(n: T) -> Option<Var> {
        n.to_f64().map(Var::constant)
    }
}

impl FloatConst for Var {
    fn E() -> Var {
        Var::constant(std::f64::consts::E)
    }
    fn FRAC_1_PI() -> Var {
        Var::constant(std::f64::consts::FRAC_1_PI)
    }
    fn FRAC_1_SQRT_2() -> Var {
        Var::constant(std::f64::consts::FRAC_1_SQRT_2)
    }
    fn FRAC_2_PI() -> Var {
        Var::constant(std::f64::consts::FRAC_2_PI)
    }
    fn FRAC_2_SQRT_PI() -> Var {
        Var::constant(std::f64::consts::FRAC_2_SQRT_PI)
    }
    fn FRAC_PI_2() -> Var {
        Var::constant(std::f64::consts::FRAC_PI_2)
    }
    fn FRAC_PI_3() -> Var {
        Var::constant(std::f64::consts::FRAC_PI_3)
    }
    fn FRAC_PI_4() -> Var {
        Var::constant(std::f64::consts::FRAC_PI_4)
    }
    fn FRAC_PI_6() -> Var {
        Var::constant(std::f64::consts::FRAC_PI_6)
    }
    fn FRAC_PI_8() -> Var {
        Var::constant(std::f64::consts::FRAC_PI_8)
    }
    fn LN_10() -> Var {
        Var::constant(std::f64::consts::LN_10)
    }
    fn LN_2() -> Var {
        Var::constant(std::f64::consts::LN_2)
    }
    fn LOG10_E() -> Var {
        Var::constant(std::f64::consts::LOG10_E)
    }
    fn LOG2_E() -> Var {
        Var::constant(std::f64::consts::LOG2_E)
    }
    fn PI() -> Var {
        Var::constant(std::f64::consts::PI)
    }
    fn SQRT_2() -> Var {
        Var::constant(std::f64::consts::SQRT_2)
    }
}

fn c(x: f64) -> Var {
    Var::constant(x)
}

/// Ops with an IR instruction record it; the others are composites, documented on each
/// method. Predicates and `classify` record guards (see the module docs).
impl Float for Var {
    fn nan() -> Var {
        c(f64::NAN)
    }
    fn infinity() -> Var {
        c(f64::INFINITY)
    }
    fn neg_infinity() -> Var {
        c(f64::NEG_INFINITY)
    }
    fn neg_zero() -> Var {
        c(-0.0)
    }
    fn min_value() -> Var {
        c(f64::MIN)
    }
    fn min_positive_value() -> Var {
        c(f64::MIN_POSITIVE)
    }
    fn epsilon() -> Var {
        c(f64::EPSILON)
    }
    fn max_value() -> Var {
        c(f64::MAX)
    }
    /// Guards `ne x, x`.
    fn is_nan(self) -> bool {
        Var::decide(Op::Ne, self, self, self.x.is_nan())
    }
    /// Guards `eq |x|, inf`.
    fn is_infinite(self) -> bool {
        Var::decide(Op::Eq, self.abs(), c(f64::INFINITY), self.x.is_infinite())
    }
    /// Guards `lt |x|, inf`.
    fn is_finite(self) -> bool {
        Var::decide(Op::Lt, self.abs(), c(f64::INFINITY), self.x.is_finite())
    }
    /// Guards the class (see [`Float::classify`]).
    fn is_normal(self) -> bool {
        self.classify() == FpCategory::Normal
    }
    /// Guards the class (see [`Float::classify`]).
    fn is_subnormal(self) -> bool {
        self.classify() == FpCategory::Subnormal
    }
    /// Guards the class of the example: NaN `ne x x`; infinite `eq |x| inf`; zero
    /// `eq x 0`; subnormal `lt |x| MIN_POSITIVE` and `gt |x| 0`; normal
    /// `ge |x| MIN_POSITIVE` and `lt |x| inf`.
    fn classify(self) -> FpCategory {
        if self.fail_if_abstract("`classify` (or `is_normal`, `is_subnormal`)") {
            return FpCategory::Nan;
        }
        let k = self.x.classify();
        let a = self.abs();
        let (inf, tiny, zero) = (c(f64::INFINITY), c(f64::MIN_POSITIVE), c(0.0));
        match k {
            FpCategory::Nan => {
                Var::decide(Op::Ne, self, self, true);
            }
            FpCategory::Infinite => {
                Var::decide(Op::Eq, a, inf, true);
            }
            FpCategory::Zero => {
                Var::decide(Op::Eq, self, zero, true);
            }
            FpCategory::Subnormal => {
                Var::decide(Op::Lt, a, tiny, true);
                Var::decide(Op::Gt, a, zero, true);
            }
            FpCategory::Normal => {
                Var::decide(Op::Ge, a, tiny, true);
                Var::decide(Op::Lt, a, inf, true);
            }
        }
        k
    }
    /// IR `floor`.
    fn floor(self) -> Var {
        self.un(Op::Floor, self.x.floor())
    }
    /// IR `ceil`.
    fn ceil(self) -> Var {
        self.un(Op::Ceil, self.x.ceil())
    }
    /// IR `round` (half away from zero).
    fn round(self) -> Var {
        self.un(Op::Round, f64m::round(self.x))
    }
    /// IR `trunc`.
    fn trunc(self) -> Var {
        self.un(Op::Trunc, self.x.trunc())
    }
    /// `x − trunc(x)`.
    fn fract(self) -> Var {
        self - self.trunc()
    }
    /// IR `abs`.
    fn abs(self) -> Var {
        self.un(Op::Abs, self.x.abs())
    }
    /// Branch-free: `select(ne x x, x, copysign(1, x))` (NaN for NaN, ±1 by the sign
    /// bit otherwise, so `signum(-0.0) = -1`, like `f64::signum`).
    fn signum(self) -> Var {
        let s = c(1.0).copysign(self);
        if self.node.is_none() {
            return if self.x.is_nan() { self } else { s };
        }
        let x = if self.x.is_nan() { self.x } else { s.x };
        with_ctx(|ctx| {
            let gen = ctx.scope_generation();
            let vals = ctx.values_of(&[self, s])?;
            let isnan = ctx.ins1v(Op::Ne, &[vals[0], vals[0]], Val::Bool(self.x.is_nan()))?;
            let r = ctx.ins1v(Op::Select, &[isnan, vals[0], vals[1]], Val::F64(x))?;
            Some(Var::new(x, Some((gen, r))))
        })
        .flatten()
        .unwrap_or(Var::new(x, self.node))
    }
    /// Guards `lt copysign(1, x), 0` is false (the sign bit, so −0.0 counts; NaN is
    /// positive, since `copysign` by a NaN is NaN).
    fn is_sign_positive(self) -> bool {
        !self.is_sign_negative()
    }
    /// Guards `lt copysign(1, x), 0` (the sign bit, so −0.0 counts; NaN does not, since
    /// `copysign` by a NaN is NaN).
    fn is_sign_negative(self) -> bool {
        let s = c(1.0).copysign(self);
        Var::decide(Op::Lt, s, c(0.0), s.x < 0.0)
    }
    /// IR `fma` (one rounding).
    fn mul_add(self, a: Var, b: Var) -> Var {
        Var::record(Op::Fma, &[self, a, b], self.x.mul_add(a.x, b.x))
    }
    /// `1 / x`.
    fn recip(self) -> Var {
        c(1.0) / self
    }
    /// IR `powi`.
    fn powi(self, n: i32) -> Var {
        self.un(Op::Powi(n), f64m::powi(self.x, n))
    }
    /// IR `pow`.
    fn powf(self, n: Var) -> Var {
        self.bin(Op::Pow, n, f64m::pow(self.x, n.x))
    }
    /// IR `sqrt`.
    fn sqrt(self) -> Var {
        self.un(Op::Sqrt, self.x.sqrt())
    }
    /// IR `exp`.
    fn exp(self) -> Var {
        self.un(Op::Exp, f64m::exp(self.x))
    }
    /// `pow(2, x)`.
    fn exp2(self) -> Var {
        c(2.0).powf(self)
    }
    /// IR `log`.
    fn ln(self) -> Var {
        self.un(Op::Log, f64m::log(self.x))
    }
    /// `log(x) / log(base)`.
    fn log(self, base: Var) -> Var {
        self.ln() / base.ln()
    }
    /// `log(x) · log2(e)` (not exact at powers of two, unlike `f64::log2`).
    fn log2(self) -> Var {
        self.ln() * std::f64::consts::LOG2_E
    }
    /// `log(x) · log10(e)` (not exact at powers of ten, unlike `f64::log10`).
    fn log10(self) -> Var {
        self.ln() * std::f64::consts::LOG10_E
    }
    /// `x · (180/π)`, like `f64::to_degrees`.
    fn to_degrees(self) -> Var {
        self * (180.0f64 / std::f64::consts::PI)
    }
    /// `x · (π/180)`, like `f64::to_radians`.
    fn to_radians(self) -> Var {
        self * (std::f64::consts::PI / 180.0)
    }
    /// IR `max`: IEEE 754-2019 `maximum`, NaN-propagating (`f64::max` ignores NaN).
    fn max(self, other: Var) -> Var {
        self.bin(Op::Max, other, f64m::max(self.x, other.x))
    }
    /// IR `min`: IEEE 754-2019 `minimum`, NaN-propagating (`f64::min` ignores NaN).
    fn min(self, other: Var) -> Var {
        self.bin(Op::Min, other, f64m::min(self.x, other.x))
    }
    /// Branch-free `min(max(x, lo), hi)` (IEEE: a NaN bound gives NaN; no check that
    /// `lo <= hi`).
    fn clamp(self, lo: Var, hi: Var) -> Var {
        Float::min(Float::max(self, lo), hi)
    }
    /// `max(x − y, 0)` (positive difference; NaN-propagating like C's `fdim`).
    fn abs_sub(self, other: Var) -> Var {
        Float::max(self - other, c(0.0))
    }
    /// `copysign(pow(|x|, 1/3), x)` (within an ulp or two of `f64::cbrt`; not exact at
    /// perfect cubes).
    fn cbrt(self) -> Var {
        self.abs().powf(c(1.0 / 3.0)).copysign(self)
    }
    /// `sqrt(x·x + y·y)` (unscaled: overflows when |x| or |y| exceeds ~1e154, where
    /// `f64::hypot` does not).
    fn hypot(self, other: Var) -> Var {
        (self * self + other * other).sqrt()
    }
    /// IR `sin`.
    fn sin(self) -> Var {
        self.un(Op::Sin, f64m::sin(self.x))
    }
    /// IR `cos`.
    fn cos(self) -> Var {
        self.un(Op::Cos, f64m::cos(self.x))
    }
    /// IR `tan`.
    fn tan(self) -> Var {
        self.un(Op::Tan, f64m::tan(self.x))
    }
    /// `atan2(x, sqrt((1 − x)(1 + x)))` (NaN outside [−1, 1]).
    fn asin(self) -> Var {
        self.atan2(((c(1.0) - self) * (c(1.0) + self)).sqrt())
    }
    /// `atan2(sqrt((1 − x)(1 + x)), x)` (NaN outside [−1, 1]).
    fn acos(self) -> Var {
        ((c(1.0) - self) * (c(1.0) + self)).sqrt().atan2(self)
    }
    /// `atan2(x, 1)`.
    fn atan(self) -> Var {
        self.atan2(c(1.0))
    }
    /// IR `atan2` (`self` is y, `other` is x).
    fn atan2(self, other: Var) -> Var {
        self.bin(Op::Atan2, other, f64m::atan2(self.x, other.x))
    }
    /// `(sin x, cos x)`.
    fn sin_cos(self) -> (Var, Var) {
        (self.sin(), self.cos())
    }
    /// IR `expm1`.
    fn exp_m1(self) -> Var {
        self.un(Op::Expm1, f64m::expm1(self.x))
    }
    /// IR `log1p`.
    fn ln_1p(self) -> Var {
        self.un(Op::Log1p, f64m::log1p(self.x))
    }
    /// `(expm1(x) − expm1(−x)) / 2` (accurate near 0; overflows for |x| > ~709.78, a
    /// little before `f64::sinh`).
    fn sinh(self) -> Var {
        (self.exp_m1() - (-self).exp_m1()) * 0.5
    }
    /// `(exp(x) + exp(−x)) / 2` (overflows for |x| > ~709.78, a little before
    /// `f64::cosh`).
    fn cosh(self) -> Var {
        (self.exp() + (-self).exp()) * 0.5
    }
    /// IR `tanh`.
    fn tanh(self) -> Var {
        self.un(Op::Tanh, f64m::tanh(self.x))
    }
    /// `copysign(log1p(a + a / (r + sqrt(1 + r²))), x)` with `a = |x|`, `r = 1/a` — the
    /// formula `f64::asinh` uses (with `hypot(1, r)` written as a square root).
    fn asinh(self) -> Var {
        let a = self.abs();
        let r = a.recip();
        (a + a / (r + (c(1.0) + r * r).sqrt()))
            .ln_1p()
            .copysign(self)
    }
    /// `log1p(t + sqrt(t)·sqrt(x + 1))` with `t = x − 1` (NaN below 1).
    fn acosh(self) -> Var {
        let t = self - 1.0;
        (t + t.sqrt() * (self + 1.0).sqrt()).ln_1p()
    }
    /// `log1p(2x / (1 − x)) / 2`, the formula `f64::atanh` uses.
    fn atanh(self) -> Var {
        ((self * 2.0) / (c(1.0) - self)).ln_1p() * 0.5
    }
    /// The example's decomposition; guards that `x` equals the example exactly.
    fn integer_decode(self) -> (u64, i16, i8) {
        self.pin_exact();
        Float::integer_decode(self.x)
    }
    /// IR `copysign`.
    fn copysign(self, sign: Var) -> Var {
        self.bin(
            Op::Copysign,
            sign,
            crate::math::f64m::copysign(self.x, sign.x),
        )
    }
}

#[cfg(test)]
mod abstract_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untraced_vars_are_plain_numbers() {
        let a = Var::constant(2.0);
        let b = a * 3.0 + 1.0;
        assert_eq!(b.value(), 7.0);
        assert!(!b.is_traced());
        assert!(b > a);
    }
}
