//! The reference interpreter: the semantic ground truth for every engine.
//!
//! [`eval`] runs a function of a [`Module`] on scalar or tensor arguments ([`Val`]) and
//! returns its results. Every op follows the semantics written on its [`Op`] variant;
//! every op that is not a single IEEE operation goes through [`crate::math`], the very
//! functions the JIT calls, so interpreter and JIT agree bit for bit. Tensor
//! instructions go to [`crate::tensor`], one kernel call each ([`crate::kernels`]); an
//! out-of-range `extract`/`insert` index is [`EvalError::IndexOutOfRange`].
//!
//! # Guarantees
//!
//! - The interpreter assumes verified IR but never panics on a malformed function: bad
//!   value, instruction or region ids, operands of the wrong type or count, a missing
//!   terminator, `yield` outside a loop and the like give [`EvalError::Malformed`]. (A
//!   value read before it is defined, which only unverified IR can contain, reads a
//!   stale slot instead of failing.)
//! - Arguments are checked against the signature ([`EvalError::ArgCount`],
//!   [`EvalError::ArgType`]).
//! - A failed `guard` stops evaluation with [`EvalError::GuardFailed`]: the inputs took a
//!   branch other than the traced one and the function must be re-traced.
//! - Execution is iterative (an explicit stack of frames and region cursors), so neither
//!   deep call chains nor nested loops grow the Rust stack. The exception is reverse
//!   mode's `tapeloop`/`revloop`: their drivers run the step functions in a nested
//!   interpreter, so they nest on the Rust stack.
//! - Call depth ([`MAX_CALL_DEPTH`]) and driver nesting ([`MAX_DRIVER_NESTING`]) are
//!   checked before anything runs, on every path the entry can take, by
//!   [`crate::callgraph::check_limits`] — the rule the JIT applies too, so both engines
//!   reject the same programs with the same [`EvalError::Limit`]. (The checks while
//!   running stay, as a net for a module changed in place between runs.)
//!
//! # Speed
//!
//! Values live in one slot vector indexed by [`Value`] index (each call frame is a window
//! of it). Straight-line scalar code allocates nothing (a tensor instruction allocates its
//! result buffer); an [`Interpreter`] reused across calls on scalar code
//! allocates nothing in steady state at all (see [`Interpreter::run`]), except that a
//! `tapeloop`/`revloop` sets up a nested interpreter each time it runs. Callees are found
//! by name through a hash index of the module, built on the first call into it and kept
//! while the module stays the same, so a call costs O(1) whatever the module's size.
//!
//! ```
//! use jitad_ir::{interp, FunctionBuilder, Module, Op, Type};
//! let mut b = FunctionBuilder::new("f");
//! let x = b.named_param("x", Type::F64);
//! let y = b.named_param("y", Type::F64);
//! let a = b.ins1(Op::Add, &[x, y]).unwrap();
//! let s = b.ins1(Op::Sub, &[x, y]).unwrap();
//! let c = b.ins1(Op::Mul, &[a, s]).unwrap();
//! b.ret(&[c]).unwrap();
//! let mut m = Module::new();
//! m.insert(b.finish().unwrap());
//! assert_eq!(interp::eval_f64(&m, "f", &[3.0, 2.0]).unwrap(), vec![5.0]);
//! ```

use crate::callgraph::LimitError;
use crate::function::{Function, Inst, InstData, Module, Region, Value};
use crate::math::{f32m, f64m};
use crate::op::{Bound, Constant, Op};
use crate::tensor::{Tensor, TensorData, TensorFault};
use crate::types::{ScalarType, Type};
use cranelift_entity::EntityRef;
use std::fmt;
use std::sync::Arc;

pub use crate::callgraph::{MAX_CALL_DEPTH, MAX_DRIVER_NESTING};

/// Cap on open regions (loop bodies and call frames), against malformed IR whose loop
/// body contains the loop itself.
const MAX_REGION_NESTING: usize = 1 << 16;

/// A runtime value: a scalar, or a tensor.
///
/// Scalars are stored inline (no allocation); a tensor is an [`Arc`] of its
/// [`Tensor`] (element type, shape, row-major buffer), so cloning a value — into a slot,
/// a loop-carried value or a result — is a reference-count increment, never a copy of
/// the elements. `Val` is 16 bytes either way.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    /// An `f64`.
    F64(f64),
    /// An `f32`.
    F32(f32),
    /// An `i64`.
    I64(i64),
    /// A `bool`.
    Bool(bool),
    /// A tensor (shared, immutable).
    Tensor(Arc<Tensor>),
}

impl Val {
    /// The scalar type of the value; a tensor's element type.
    pub fn ty(&self) -> ScalarType {
        match self {
            Val::F64(_) => ScalarType::F64,
            Val::F32(_) => ScalarType::F32,
            Val::I64(_) => ScalarType::I64,
            Val::Bool(_) => ScalarType::Bool,
            Val::Tensor(t) => t.data().elem(),
        }
    }

    /// The full type of the value (`f64`, `f64[2,3]`).
    pub fn type_of(&self) -> Type {
        match self {
            Val::Tensor(t) => t.ty(),
            Val::F64(_) | Val::F32(_) | Val::I64(_) | Val::Bool(_) => Type::Scalar(self.ty()),
        }
    }

    /// A tensor value.
    pub fn tensor(t: Tensor) -> Val {
        Val::Tensor(Arc::new(t))
    }

    /// The tensor, for tensor values only.
    pub fn as_tensor(&self) -> Option<&Tensor> {
        match self {
            Val::Tensor(t) => Some(t),
            Val::F64(_) | Val::F32(_) | Val::I64(_) | Val::Bool(_) => None,
        }
    }

    /// The value as `f64` for float scalars (`f32` widens exactly); `None` for `i64`,
    /// `bool` and tensors.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Val::F64(v) => Some(v),
            Val::F32(v) => Some(f64::from(v)),
            Val::I64(_) | Val::Bool(_) | Val::Tensor(_) => None,
        }
    }

    /// The value as `i64`, for `i64` values only.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Val::I64(v) => Some(v),
            Val::F64(_) | Val::F32(_) | Val::Bool(_) | Val::Tensor(_) => None,
        }
    }

    /// The 8-byte slot encoding (the JIT's ABI): f64 bits, f32 bits in the low 4 bytes,
    /// i64, bool 0/1. A tensor has no slot (it travels as a buffer): 0, which callers
    /// never see because they check types against scalar signatures first.
    pub fn to_slot(&self) -> u64 {
        match *self {
            Val::F64(v) => v.to_bits(),
            Val::F32(v) => u64::from(v.to_bits()),
            Val::I64(v) => v as u64,
            Val::Bool(v) => u64::from(v),
            Val::Tensor(_) => 0,
        }
    }

    /// Decodes a slot holding a value of type `ty` (only the low 4 bytes for `f32`,
    /// the low byte for `bool`).
    pub fn from_slot(ty: ScalarType, s: u64) -> Val {
        match ty {
            ScalarType::F64 => Val::F64(f64::from_bits(s)),
            ScalarType::F32 => Val::F32(f32::from_bits(s as u32)),
            ScalarType::I64 => Val::I64(s as i64),
            ScalarType::Bool => Val::Bool(s as u8 != 0),
        }
    }

    /// The value as `bool`, for `bool` values only.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Val::Bool(v) => Some(v),
            Val::F64(_) | Val::F32(_) | Val::I64(_) | Val::Tensor(_) => None,
        }
    }
}

impl From<Constant> for Val {
    fn from(c: Constant) -> Self {
        match c {
            Constant::F64(v) => Val::F64(v),
            Constant::F32(v) => Val::F32(v),
            Constant::I64(v) => Val::I64(v),
            Constant::Bool(v) => Val::Bool(v),
        }
    }
}

impl From<f64> for Val {
    fn from(v: f64) -> Self {
        Val::F64(v)
    }
}

impl From<f32> for Val {
    fn from(v: f32) -> Self {
        Val::F32(v)
    }
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::I64(v)
    }
}

impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::Bool(v)
    }
}

/// Prints the value as the text format prints a constant of its type (`5.0`, `-3`,
/// `true`, `nan`).
/// A tensor prints as its type and its elements in row-major order,
/// `f64[2,2] [1.0, 2.0, 3.0, 4.0]`.
impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = match *self {
            Val::F64(v) => Constant::F64(v),
            Val::F32(v) => Constant::F32(v),
            Val::I64(v) => Constant::I64(v),
            Val::Bool(v) => Constant::Bool(v),
            Val::Tensor(ref t) => {
                write!(f, "{} [", t.ty())?;
                let n = t.data().len();
                for k in 0..n {
                    if k > 0 {
                        f.write_str(", ")?;
                    }
                    let c = match t.data() {
                        TensorData::F64(v) => Constant::F64(v[k]),
                        TensorData::F32(v) => Constant::F32(v[k]),
                        TensorData::I64(v) => Constant::I64(v[k]),
                        TensorData::Bool(v) => Constant::Bool(v[k]),
                    };
                    fmt::Display::fmt(&c, f)?;
                }
                return f.write_str("]");
            }
        };
        fmt::Display::fmt(&c, f)
    }
}

/// Why evaluation failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The module has no function of that name (the entry point or a callee).
    #[error("no function @{0} in the module")]
    UnknownFunction(String),
    /// Wrong number of arguments.
    #[error("@{func} takes {expected} argument(s), got {got}")]
    ArgCount {
        /// Function called.
        func: String,
        /// Parameter count.
        expected: usize,
        /// Argument count.
        got: usize,
    },
    /// An argument has the wrong type.
    #[error("argument {index} of @{func} has type {got}, expected {expected}")]
    ArgType {
        /// Function called.
        func: String,
        /// Argument position (0-based).
        index: usize,
        /// Parameter type.
        expected: Type,
        /// Argument type.
        got: Type,
    },
    /// A result is not of the type the caller asked for (e.g. [`eval_f64`] on a function
    /// returning `i64`).
    #[error("result {index} of @{func} has type {got}, expected {expected}")]
    ResultType {
        /// Function evaluated.
        func: String,
        /// Result position (0-based).
        index: usize,
        /// Wanted type.
        expected: ScalarType,
        /// Actual type.
        got: Type,
    },
    /// A traced branch decision does not hold for these inputs.
    #[error(
        "guard {inst} failed in @{func}: these inputs take a branch other than the one \
         recorded when tracing; re-trace the function at these inputs"
    )]
    GuardFailed {
        /// Function holding the guard.
        func: String,
        /// The `guard` instruction.
        inst: Inst,
    },
    /// Calls or loop drivers nested deeper than the limits (the same error the JIT
    /// gives at compile time).
    #[error(transparent)]
    Limit(#[from] crate::callgraph::LimitError),
    /// A loop driver refused or failed: its snapshots do not fit in memory, a tape
    /// token is not valid where it is used, or a `revloop` does not match its tape.
    #[error("@{func}: {error}")]
    Checkpoint {
        /// The function holding the `tapeloop` or `revloop`.
        func: String,
        /// What went wrong (the same as the JIT reports).
        error: crate::checkpoint::DriverError,
    },
    /// A tensor too large for this machine's memory (its type is valid: tensors may
    /// describe up to `layout::MAX_TENSOR_BYTES`).
    #[error("{inst} in @{func}: cannot allocate a tensor of {bytes} bytes")]
    OutOfMemory {
        /// Function holding the instruction.
        func: String,
        /// The instruction.
        inst: Inst,
        /// The buffer size.
        bytes: usize,
    },
    /// An `extract`/`insert` index outside the tensor's leading axis.
    #[error("{inst} in @{func}: index {index} is out of range for a leading axis of length {len}")]
    IndexOutOfRange {
        /// Function holding the instruction.
        func: String,
        /// The `extract` or `insert`.
        inst: Inst,
        /// The index.
        index: i64,
        /// The length of the leading axis.
        len: usize,
    },
    /// The function is not well formed (run the verifier for a full report).
    #[error("malformed @{func}: {reason}")]
    Malformed {
        /// Function being evaluated.
        func: String,
        /// What was wrong.
        reason: String,
    },
}

/// An internal failure, cheap to build on the hot path; named with the function later.
#[derive(Debug)]
enum Fault {
    BadValue(Value),
    BadOperands(Inst),
    BadInst(Inst),
    BadRegion(Region),
    NoTerminator(Region),
    YieldOutsideLoop(Inst),
    RetInsideLoop(Inst),
    ResultCount(Inst),
    Guard(Inst),
    UnknownCallee(String),
    CallArgs(Inst, String),
    CallDepth(String),
    /// A call past the depth cap, with the chain of open frames already rendered.
    DepthChain(String),
    /// An `extract`/`insert` index out of range: the instruction, the index, the length.
    Index(Inst, i64, usize),
    /// A tensor result the allocator refused: the instruction, the bytes.
    Alloc(Inst, usize),
    /// An error inside a loop driver's step function, kept in
    /// [`Interpreter::nested_error`] (a payload here would give every `Result` of the
    /// interpreter loop a costly drop).
    Nested,
}

impl Fault {
    fn into_error(self, func: &str, limit: usize) -> EvalError {
        let malformed = |reason: String| EvalError::Malformed {
            func: func.to_string(),
            reason,
        };
        match self {
            Fault::BadValue(v) => malformed(format!("value {v} does not exist")),
            Fault::BadOperands(i) => {
                malformed(format!("{i} has operands of the wrong type or count"))
            }
            Fault::BadInst(i) => malformed(format!("instruction {i} does not exist")),
            Fault::BadRegion(r) => malformed(format!("{r} does not exist or is misused")),
            Fault::NoTerminator(r) => malformed(format!("{r} does not end in a terminator")),
            Fault::YieldOutsideLoop(i) => malformed(format!("{i}: `yield` outside a loop body")),
            Fault::RetInsideLoop(i) => malformed(format!("{i}: `ret` inside a loop body")),
            Fault::ResultCount(i) => malformed(format!("{i} has the wrong number of results")),
            Fault::Guard(inst) => EvalError::GuardFailed {
                func: func.to_string(),
                inst,
            },
            Fault::UnknownCallee(name) => EvalError::UnknownFunction(name),
            Fault::CallArgs(i, why) => malformed(format!("{i}: {why}")),
            Fault::CallDepth(callee) => EvalError::Limit(LimitError::CallDepth {
                chain: format!("... -> @{callee}"),
                depth: limit + 1,
                limit,
            }),
            Fault::DepthChain(chain) => EvalError::Limit(LimitError::CallDepth {
                chain,
                depth: limit + 1,
                limit,
            }),
            Fault::Alloc(inst, bytes) => EvalError::OutOfMemory {
                func: func.to_string(),
                inst,
                bytes,
            },
            Fault::Index(inst, index, len) => EvalError::IndexOutOfRange {
                func: func.to_string(),
                inst,
                index,
                len,
            },
            Fault::Nested => malformed("a loop step failed (error lost)".into()),
        }
    }
}

/// A call frame: which function, where its slots start, and the `call` in the caller
/// that receives its results.
#[derive(Clone, Copy, Debug)]
struct Frame {
    /// `None`: the entry function; `Some(i)`: `module.funcs[i]`.
    func: Option<usize>,
    base: usize,
    call: Option<Inst>,
}

/// Where execution stands in one region.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    region: Region,
    pos: usize,
    /// For a loop body: the loop instruction, the current index and the end.
    lp: Option<(Inst, i64, i64)>,
}

/// A reusable interpreter: keeps its slot, frame and cursor vectors between calls, so a
/// benchmark loop calling [`Interpreter::run`] allocates nothing in steady state.
#[derive(Debug)]
pub struct Interpreter {
    slots: Vec<Val>,
    frames: Vec<Frame>,
    cursors: Vec<Cursor>,
    scratch: Vec<Val>,
    max_call_depth: usize,
    /// Runs step functions for an enclosing `revloop` (leaves the checkpointing
    /// statistics to the outermost run).
    nested: bool,
    /// What the reverse sweeps of the last run did.
    last_stats: crate::checkpoint::Stats,
    /// The error of a failed loop step, for [`Fault::Nested`].
    nested_error: Option<EvalError>,
    /// Loop drivers this interpreter runs inside ([`MAX_DRIVER_NESTING`]).
    drivers: u32,
    /// Callees by name, and the last entry found within the limits.
    callees: CalleeIndex,
}

/// The functions of the module last run, by name (the first of a name wins, as for
/// [`Module::get`]), and the last entry [`crate::callgraph::check_limits`] accepted.
/// Rebuilt when the module's identity (its address, its function vector's address and
/// length) changes, or when a name is not where the index says (a module changed in
/// place): every hit is checked against the function's name, so a stale index can
/// cost a rebuild but never resolve a call wrongly.
#[derive(Debug, Default)]
struct CalleeIndex {
    tag: (usize, usize, usize),
    map: std::collections::HashMap<Box<str>, usize>,
    /// `(entry address, call-depth cap)` last checked for this module.
    checked: Option<(usize, usize)>,
}

impl CalleeIndex {
    fn tag_of(m: &Module) -> (usize, usize, usize) {
        (
            m as *const Module as usize,
            m.funcs.as_ptr() as usize,
            m.funcs.len(),
        )
    }

    fn rebuild(&mut self, m: &Module) {
        self.map.clear();
        for (i, f) in m.funcs.iter().enumerate() {
            self.map.entry(f.name.as_str().into()).or_insert(i);
        }
        self.tag = Self::tag_of(m);
        self.checked = None;
    }

    fn sync(&mut self, m: &Module) {
        if self.tag != Self::tag_of(m) {
            self.rebuild(m);
        }
    }

    /// Index of the function named `name` in `m`.
    fn find(&mut self, m: &Module, name: &str) -> Option<usize> {
        self.sync(m);
        let hit = |map: &std::collections::HashMap<Box<str>, usize>| {
            map.get(name)
                .copied()
                .filter(|&i| m.funcs.get(i).is_some_and(|g| g.name == name))
        };
        hit(&self.map).or_else(|| {
            self.rebuild(m);
            hit(&self.map)
        })
    }

    /// Checks `entry` against the limits once per module, entry and cap.
    fn check(&mut self, m: &Module, entry: &Function, calls: usize) -> Result<(), EvalError> {
        self.sync(m);
        let key = (entry as *const Function as usize, calls);
        if self.checked == Some(key) {
            return Ok(());
        }
        let map = &self.map;
        let lookup = |n: &str| map.get(n).copied();
        let limits = crate::callgraph::Limits {
            calls,
            drivers: MAX_DRIVER_NESTING,
        };
        crate::callgraph::check_limits(m, &lookup, entry, limits)?;
        self.checked = Some(key);
        Ok(())
    }
}

impl Default for Interpreter {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads operand `i` of `args` from the current frame.
#[inline]
fn arg(frame: &[Val], data: &InstData, inst: Inst, i: usize) -> Result<Val, Fault> {
    argr(frame, data, inst, i).cloned()
}

/// Borrows operand `i` of `args` in the current frame (the scalar arms read through
/// this, so they never touch a tensor's reference count).
#[inline]
fn argr<'f>(frame: &'f [Val], data: &InstData, inst: Inst, i: usize) -> Result<&'f Val, Fault> {
    let v = *data.args.get(i).ok_or(Fault::BadOperands(inst))?;
    frame.get(v.index()).ok_or(Fault::BadValue(v))
}

/// Evaluates an instruction on tensors (a tensor op, or an elementwise op with a
/// tensor operand) through [`crate::tensor::eval`]: one kernel call per instruction.
#[inline(never)]
fn tensor_arm(frame: &[Val], data: &InstData, inst: Inst) -> Result<Val, Fault> {
    let args = (0..data.args.len())
        .map(|k| arg(frame, data, inst, k))
        .collect::<Result<Vec<_>, _>>()?;
    crate::tensor::eval(&data.op, &args).map_err(|e| match e {
        TensorFault::BadOperands => Fault::BadOperands(inst),
        TensorFault::Index { index, len } => Fault::Index(inst, index, len),
        TensorFault::OutOfMemory { bytes } => Fault::Alloc(inst, bytes),
    })
}

#[inline]
fn set(frame: &mut [Val], v: Value, x: Val) -> Result<(), Fault> {
    *frame.get_mut(v.index()).ok_or(Fault::BadValue(v))? = x;
    Ok(())
}

/// A float op of one operand, at either width.
#[inline]
fn un_f(
    frame: &[Val],
    data: &InstData,
    inst: Inst,
    f64f: impl Fn(f64) -> f64,
    f32f: impl Fn(f32) -> f32,
) -> Result<Val, Fault> {
    match *argr(frame, data, inst, 0)? {
        Val::F64(a) => Ok(Val::F64(f64f(a))),
        Val::F32(a) => Ok(Val::F32(f32f(a))),
        Val::Tensor(_) => tensor_arm(frame, data, inst),
        Val::I64(_) | Val::Bool(_) => Err(Fault::BadOperands(inst)),
    }
}

/// A float op of two operands of one type.
#[inline]
fn bin_f(
    frame: &[Val],
    data: &InstData,
    inst: Inst,
    f64f: impl Fn(f64, f64) -> f64,
    f32f: impl Fn(f32, f32) -> f32,
) -> Result<Val, Fault> {
    match (argr(frame, data, inst, 0)?, argr(frame, data, inst, 1)?) {
        (&Val::F64(a), &Val::F64(b)) => Ok(Val::F64(f64f(a, b))),
        (&Val::F32(a), &Val::F32(b)) => Ok(Val::F32(f32f(a, b))),
        _ => tensor_arm(frame, data, inst),
    }
}

/// A numeric op of two operands of one type (floats and `i64`).
#[inline]
fn bin_n(
    frame: &[Val],
    data: &InstData,
    inst: Inst,
    f64f: impl Fn(f64, f64) -> f64,
    f32f: impl Fn(f32, f32) -> f32,
    i64f: impl Fn(i64, i64) -> i64,
) -> Result<Val, Fault> {
    match (argr(frame, data, inst, 0)?, argr(frame, data, inst, 1)?) {
        (&Val::F64(a), &Val::F64(b)) => Ok(Val::F64(f64f(a, b))),
        (&Val::F32(a), &Val::F32(b)) => Ok(Val::F32(f32f(a, b))),
        (&Val::I64(a), &Val::I64(b)) => Ok(Val::I64(i64f(a, b))),
        _ => tensor_arm(frame, data, inst),
    }
}

/// A numeric op of one operand (floats and `i64`).
#[inline]
fn un_n(
    frame: &[Val],
    data: &InstData,
    inst: Inst,
    f64f: impl Fn(f64) -> f64,
    f32f: impl Fn(f32) -> f32,
    i64f: impl Fn(i64) -> i64,
) -> Result<Val, Fault> {
    match *argr(frame, data, inst, 0)? {
        Val::F64(a) => Ok(Val::F64(f64f(a))),
        Val::F32(a) => Ok(Val::F32(f32f(a))),
        Val::I64(a) => Ok(Val::I64(i64f(a))),
        Val::Tensor(_) => tensor_arm(frame, data, inst),
        Val::Bool(_) => Err(Fault::BadOperands(inst)),
    }
}

/// An order comparison (numeric operands). `Ord` results map to the float predicate so
/// NaN compares false.
#[inline]
fn cmp(
    frame: &[Val],
    data: &InstData,
    inst: Inst,
    pf: impl Fn(f64, f64) -> bool,
    pf32: impl Fn(f32, f32) -> bool,
    pi: impl Fn(i64, i64) -> bool,
    pb: Option<fn(bool, bool) -> bool>,
) -> Result<Val, Fault> {
    let r = match (argr(frame, data, inst, 0)?, argr(frame, data, inst, 1)?) {
        (&Val::F64(a), &Val::F64(b)) => pf(a, b),
        (&Val::F32(a), &Val::F32(b)) => pf32(a, b),
        (&Val::I64(a), &Val::I64(b)) => pi(a, b),
        (&Val::Bool(a), &Val::Bool(b)) => match pb {
            Some(p) => p(a, b),
            None => return Err(Fault::BadOperands(inst)),
        },
        _ => return tensor_arm(frame, data, inst),
    };
    Ok(Val::Bool(r))
}

/// `cast a : to`, exactly as documented on [`Op::Cast`], for scalars (`None` for a
/// tensor, which the tensor arm casts).
fn cast(a: Val, to: ScalarType) -> Option<Val> {
    Some(match (a, to) {
        (Val::Tensor(_), _) => return None,
        (Val::F64(x), ScalarType::F64) => Val::F64(x),
        (Val::F64(x), ScalarType::F32) => Val::F32(x as f32),
        (Val::F64(x), ScalarType::I64) => Val::I64(x as i64),
        (Val::F64(x), ScalarType::Bool) => Val::Bool(x != 0.0),
        (Val::F32(x), ScalarType::F64) => Val::F64(f64::from(x)),
        (Val::F32(x), ScalarType::F32) => Val::F32(x),
        (Val::F32(x), ScalarType::I64) => Val::I64(x as i64),
        (Val::F32(x), ScalarType::Bool) => Val::Bool(x != 0.0),
        (Val::I64(x), ScalarType::F64) => Val::F64(x as f64),
        (Val::I64(x), ScalarType::F32) => Val::F32(x as f32),
        (Val::I64(x), ScalarType::I64) => Val::I64(x),
        (Val::I64(x), ScalarType::Bool) => Val::Bool(x != 0),
        (Val::Bool(x), ScalarType::F64) => Val::F64(if x { 1.0 } else { 0.0 }),
        (Val::Bool(x), ScalarType::F32) => Val::F32(if x { 1.0 } else { 0.0 }),
        (Val::Bool(x), ScalarType::I64) => Val::I64(i64::from(x)),
        (Val::Bool(x), ScalarType::Bool) => Val::Bool(x),
    })
}

/// Evaluates a pure single-result op. `None` for the ops that are not pure
/// (guard, call, loop, yield, ret), which the interpreter loop handles.
#[inline]
fn eval_pure(frame: &[Val], data: &InstData, inst: Inst) -> Option<Result<Val, Fault>> {
    use std::ops::{Add, Div, Mul, Sub};
    let (f, d, i) = (frame, data, inst);
    Some(match &data.op {
        Op::Const(c) => Ok(Val::from(*c)),
        Op::Add => bin_n(f, d, i, f64::add, f32::add, i64::wrapping_add),
        Op::Sub => bin_n(f, d, i, f64::sub, f32::sub, i64::wrapping_sub),
        Op::Mul => bin_n(f, d, i, f64::mul, f32::mul, i64::wrapping_mul),
        Op::Div => bin_f(f, d, i, f64::div, f32::div),
        Op::Neg => un_n(f, d, i, |a| -a, |a| -a, i64::wrapping_neg),
        Op::Fma => match (argr(f, d, i, 0), argr(f, d, i, 1), argr(f, d, i, 2)) {
            (Ok(&Val::F64(a)), Ok(&Val::F64(b)), Ok(&Val::F64(c))) => Ok(Val::F64(a.mul_add(b, c))),
            (Ok(&Val::F32(a)), Ok(&Val::F32(b)), Ok(&Val::F32(c))) => Ok(Val::F32(a.mul_add(b, c))),
            (Ok(_), Ok(_), Ok(_)) => tensor_arm(f, d, i),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(e),
        },
        Op::Sqrt => un_f(f, d, i, f64::sqrt, f32::sqrt),
        Op::Exp => un_f(f, d, i, |a| f64m::exp(a), |a| f32m::exp(a)),
        Op::Expm1 => un_f(f, d, i, |a| f64m::expm1(a), |a| f32m::expm1(a)),
        Op::Log => un_f(f, d, i, |a| f64m::log(a), |a| f32m::log(a)),
        Op::Log1p => un_f(f, d, i, |a| f64m::log1p(a), |a| f32m::log1p(a)),
        Op::Sin => un_f(f, d, i, |a| f64m::sin(a), |a| f32m::sin(a)),
        Op::Cos => un_f(f, d, i, |a| f64m::cos(a), |a| f32m::cos(a)),
        Op::Tan => un_f(f, d, i, |a| f64m::tan(a), |a| f32m::tan(a)),
        Op::Tanh => un_f(f, d, i, |a| f64m::tanh(a), |a| f32m::tanh(a)),
        Op::Sigmoid => un_f(f, d, i, |a| f64m::sigmoid(a), |a| f32m::sigmoid(a)),
        Op::Erf => un_f(f, d, i, |a| f64m::erf(a), |a| f32m::erf(a)),
        Op::Abs => un_n(f, d, i, f64::abs, f32::abs, i64::wrapping_abs),
        Op::Pow => bin_f(f, d, i, |a, b| f64m::pow(a, b), |a, b| f32m::pow(a, b)),
        Op::Powi(n) => {
            let n = *n;
            un_f(f, d, i, |a| f64m::powi(a, n), |a| f32m::powi(a, n))
        }
        Op::Min => bin_n(
            f,
            d,
            i,
            |a, b| f64m::min(a, b),
            |a, b| f32m::min(a, b),
            i64::min,
        ),
        Op::Max => bin_n(
            f,
            d,
            i,
            |a, b| f64m::max(a, b),
            |a, b| f32m::max(a, b),
            i64::max,
        ),
        Op::Atan2 => bin_f(f, d, i, |a, b| f64m::atan2(a, b), |a, b| f32m::atan2(a, b)),
        Op::Floor => un_f(f, d, i, f64::floor, f32::floor),
        Op::Ceil => un_f(f, d, i, f64::ceil, f32::ceil),
        Op::Round => un_f(f, d, i, |a| f64m::round(a), |a| f32m::round(a)),
        Op::Trunc => un_f(f, d, i, f64::trunc, f32::trunc),
        Op::Copysign => bin_f(
            f,
            d,
            i,
            |a, b| f64m::copysign(a, b),
            |a, b| f32m::copysign(a, b),
        ),
        Op::Lt => cmp(f, d, i, |a, b| a < b, |a, b| a < b, |a, b| a < b, None),
        Op::Le => cmp(f, d, i, |a, b| a <= b, |a, b| a <= b, |a, b| a <= b, None),
        Op::Gt => cmp(f, d, i, |a, b| a > b, |a, b| a > b, |a, b| a > b, None),
        Op::Ge => cmp(f, d, i, |a, b| a >= b, |a, b| a >= b, |a, b| a >= b, None),
        Op::Eq => cmp(
            f,
            d,
            i,
            |a, b| a == b,
            |a, b| a == b,
            |a, b| a == b,
            Some(|a, b| a == b),
        ),
        Op::Ne => cmp(
            f,
            d,
            i,
            |a, b| a != b,
            |a, b| a != b,
            |a, b| a != b,
            Some(|a, b| a != b),
        ),
        Op::Select => match argr(f, d, i, 0) {
            Ok(&Val::Bool(c)) => match (argr(f, d, i, 1), argr(f, d, i, 2)) {
                // Scalars of one type (the common case: no `Type` comparison).
                (Ok(a), Ok(b))
                    if std::mem::discriminant(a) == std::mem::discriminant(b)
                        && a.as_tensor().is_none() =>
                {
                    Ok(if c { a.clone() } else { b.clone() })
                }
                (Ok(a), Ok(b)) if a.type_of() == b.type_of() => {
                    Ok(if c { a.clone() } else { b.clone() })
                }
                (Ok(_), Ok(_)) => tensor_arm(f, d, i),
                (Err(e), _) | (_, Err(e)) => Err(e),
            },
            Ok(Val::Tensor(_)) => tensor_arm(f, d, i),
            Ok(_) => Err(Fault::BadOperands(i)),
            Err(e) => Err(e),
        },
        Op::Cast(to) => match arg(f, d, i, 0) {
            Ok(a) => match cast(a, *to) {
                Some(v) => Ok(v),
                None => tensor_arm(f, d, i),
            },
            Err(e) => Err(e),
        },
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
        | Op::Insert => tensor_arm(f, d, i),
        Op::Guard
        | Op::Call(_)
        | Op::Loop(_)
        | Op::RevLoop(_)
        | Op::TapeLoop(_)
        | Op::Yield
        | Op::Ret => return None,
    })
}

/// The start and end of a loop's range from its bounds and dynamic-bound operands.
fn loop_range(
    bounds: crate::op::LoopBounds,
    dyn_args: std::ops::Range<usize>,
    data: &InstData,
    frame: &[Val],
    inst: Inst,
) -> Result<(i64, u64), Fault> {
    let mut dyn_bounds = dyn_args.map(|k| arg(frame, data, inst, k));
    let mut bound = |b: Bound| -> Result<i64, Fault> {
        match b {
            Bound::Imm(v) => Ok(v),
            Bound::Dyn => dyn_bounds
                .next()
                .ok_or(Fault::BadOperands(inst))??
                .as_i64()
                .ok_or(Fault::BadOperands(inst)),
        }
    };
    let start = bound(bounds.start)?;
    let end = bound(bounds.end)?;
    Ok((start, crate::checkpoint::trip_count(start, end)))
}

fn find_fn<'m>(m: &'m Module, name: &str) -> Result<&'m Function, Fault> {
    m.funcs
        .iter()
        .find(|g| g.name == name)
        .ok_or_else(|| Fault::UnknownCallee(name.to_string()))
}

fn nested_interp(depth: usize, drivers: u32) -> Interpreter {
    Interpreter {
        nested: true,
        drivers: drivers + 1,
        ..Interpreter::new().with_max_call_depth(depth)
    }
}

/// The fault for a failed sweep; the complete error waits in `nested`.
fn sweep_fault(
    e: crate::checkpoint::SweepError<EvalError>,
    nested: &mut Option<EvalError>,
    func: &str,
) -> Fault {
    use crate::checkpoint::SweepError;
    *nested = Some(match e {
        SweepError::Step(e) => e,
        SweepError::Driver(error) => EvalError::Checkpoint {
            func: func.to_string(),
            error,
        },
    });
    Fault::Nested
}

/// What a loop driver needs of the running interpreter.
struct DriverCx<'a> {
    m: &'a Module,
    /// The function holding the driver (named in its errors).
    func: &'a str,
    /// Call depth left for the step functions.
    depth: usize,
    /// Drivers already running around this one.
    drivers: u32,
    /// Where a failed step's error goes ([`Fault::Nested`]).
    nested: &'a mut Option<EvalError>,
}

/// Evaluates a `tapeloop`: the loop's iterations through the recording driver.
/// (Out of line: it would otherwise bloat the interpreter loop.)
#[inline(never)]
fn tape_loop(
    cx: DriverCx<'_>,
    r: &crate::op::TapeLoop,
    data: &InstData,
    frame: &[Val],
    inst: Inst,
) -> Result<Vec<Val>, Fault> {
    let DriverCx {
        m,
        func,
        depth,
        drivers,
        nested,
    } = cx;
    let fwd = find_fn(m, &r.fwd)?;
    let [bounds, inits, caps] = r.split(data.args.len()).ok_or(Fault::BadOperands(inst))?;
    let (start, l) = loop_range(r.bounds, bounds, data, frame, inst)?;
    let val = |k: usize| arg(frame, data, inst, k);
    let mut state: Vec<u64> = Vec::new();
    for k in inits {
        push_slots(&val(k)?, &mut state);
    }
    let st_tys = fwd.sig.results.clone();
    check_slots(&st_tys, state.len(), inst)?;
    let mut steps = InterpSteps {
        m,
        fwd,
        bwd: fwd,
        caps: caps.map(val).collect::<Result<_, _>>()?,
        st_tys: st_tys.clone(),
        adj_tys: vec![],
        interp: nested_interp(depth, drivers),
        args: Vec::new(),
        out: Vec::new(),
        scratch: Vec::new(),
    };
    let token = crate::checkpoint::record(r.policy, start, l, &mut state, &mut steps)
        .map_err(|e| sweep_fault(e, nested, func))?;
    let mut out = Vec::with_capacity(st_tys.len() + 1);
    vals_from_slots(&st_tys, &state, &mut out).map_err(|_| Fault::BadOperands(inst))?;
    out.push(Val::I64(token as i64));
    Ok(out)
}

/// Appends `v`'s slots ([`crate::layout::state_slots`]): its own for a scalar, one per
/// element for a tensor.
fn push_slots(v: &Val, out: &mut Vec<u64>) {
    match v {
        Val::Tensor(t) => match t.data() {
            TensorData::F64(d) => out.extend(d.iter().map(|x| x.to_bits())),
            TensorData::F32(d) => out.extend(d.iter().map(|x| u64::from(x.to_bits()))),
            TensorData::I64(d) => out.extend(d.iter().map(|&x| x as u64)),
            TensorData::Bool(d) => out.extend(d.iter().map(|&x| u64::from(x))),
        },
        scalar => out.push(scalar.to_slot()),
    }
}

/// Writes `vals`' slots into `out`, which has exactly their length.
fn write_slots(vals: &[Val], out: &mut [u64], scratch: &mut Vec<u64>) {
    scratch.clear();
    for v in vals {
        push_slots(v, scratch);
    }
    for (o, s) in out.iter_mut().zip(scratch.iter()) {
        *o = *s;
    }
}

/// Decodes values of types `tys` from consecutive slots (the inverse of
/// [`push_slots`]), appending them to `out`.
fn vals_from_slots(tys: &[Type], slots: &[u64], out: &mut Vec<Val>) -> Result<(), String> {
    let mut at = 0;
    for &ty in tys {
        let n = crate::layout::state_slots(ty);
        let s = slots.get(at..at + n).unwrap_or(&[]);
        at += n;
        out.push(match ty {
            Type::Scalar(t) => Val::from_slot(t, s.first().copied().unwrap_or(0)),
            Type::Tensor(e, shape) => {
                let data = match e {
                    ScalarType::F64 => {
                        TensorData::F64(s.iter().map(|&x| f64::from_bits(x)).collect())
                    }
                    ScalarType::F32 => {
                        TensorData::F32(s.iter().map(|&x| f32::from_bits(x as u32)).collect())
                    }
                    ScalarType::I64 => TensorData::I64(s.iter().map(|&x| x as i64).collect()),
                    ScalarType::Bool => TensorData::Bool(s.iter().map(|&x| x as u8 != 0).collect()),
                };
                Val::tensor(Tensor::new(shape, data).map_err(|e| e.to_string())?)
            }
        });
    }
    Ok(())
}

/// A step function's state that does not decode (not verified IR).
fn malformed_step(f: &Function, reason: String) -> EvalError {
    EvalError::Malformed {
        func: f.name.clone(),
        reason: format!("a loop driver's state does not fit the step's types: {reason}"),
    }
}

/// The slot count of values of types `tys` is `n` (else the operands are malformed).
fn check_slots(tys: &[Type], n: usize, inst: Inst) -> Result<(), Fault> {
    let want: usize = tys.iter().map(|&t| crate::layout::state_slots(t)).sum();
    if want == n {
        Ok(())
    } else {
        Err(Fault::BadOperands(inst))
    }
}

/// Evaluates a `revloop` through the checkpointing driver, running its step functions
/// in a nested interpreter. (Out of line, like [`tape_loop`].)
#[inline(never)]
fn rev_loop(
    cx: DriverCx<'_>,
    r: &crate::op::RevLoop,
    data: &InstData,
    frame: &[Val],
    inst: Inst,
) -> Result<Vec<Val>, Fault> {
    let DriverCx {
        m,
        func,
        depth,
        drivers,
        nested,
    } = cx;
    let fwd = find_fn(m, &r.fwd)?;
    let bwd = find_fn(m, &r.bwd)?;
    let [bounds, tape, inits, caps, seeds] =
        r.split(data.args.len()).ok_or(Fault::BadOperands(inst))?;
    let (start, l) = loop_range(r.bounds, bounds, data, frame, inst)?;
    let val = |k: usize| arg(frame, data, inst, k);
    let mut state: Vec<u64> = Vec::new();
    for k in inits {
        push_slots(&val(k)?, &mut state);
    }
    let st_tys = fwd.sig.results.clone();
    check_slots(&st_tys, state.len(), inst)?;
    let seeds: Vec<Val> = seeds.map(val).collect::<Result<_, _>>()?;
    let mut adj: Vec<u64> = Vec::new();
    for v in &seeds {
        push_slots(v, &mut adj);
    }
    let adj_tys: Vec<Type> = seeds.iter().map(|v| v.type_of()).collect();
    let mut steps = InterpSteps {
        m,
        fwd,
        bwd,
        caps: caps.map(val).collect::<Result<_, _>>()?,
        st_tys,
        adj_tys: adj_tys.clone(),
        interp: nested_interp(depth, drivers),
        args: Vec::new(),
        out: Vec::new(),
        scratch: Vec::new(),
    };
    match tape.map(val).next() {
        Some(token) => {
            let token = token?.as_i64().ok_or(Fault::BadOperands(inst))? as u64;
            let spec = crate::checkpoint::LoopSpec {
                policy: r.policy,
                start,
                trips: l,
                inits: &state,
            };
            crate::checkpoint::reverse_recorded(token, spec, &mut adj, &mut steps)
                .map_err(|e| sweep_fault(e, nested, func))?
        }
        None => crate::checkpoint::reverse(r.policy, start, l, &state, &mut adj, &mut steps)
            .map_err(|e| sweep_fault(e, nested, func))?,
    }
    let mut out = Vec::with_capacity(adj_tys.len());
    vals_from_slots(&adj_tys, &adj, &mut out).map_err(|_| Fault::BadOperands(inst))?;
    Ok(out)
}

/// A `revloop`'s step functions, interpreted.
struct InterpSteps<'a> {
    m: &'a Module,
    fwd: &'a Function,
    bwd: &'a Function,
    caps: Vec<Val>,
    st_tys: Vec<Type>,
    adj_tys: Vec<Type>,
    interp: Interpreter,
    args: Vec<Val>,
    out: Vec<Val>,
    /// Slots being encoded (reused).
    scratch: Vec<u64>,
}

impl crate::checkpoint::Steps for InterpSteps<'_> {
    type Error = EvalError;

    fn forward(&mut self, i: i64, state: &mut [u64]) -> Result<(), EvalError> {
        self.args.clear();
        self.args.push(Val::I64(i));
        vals_from_slots(&self.st_tys, state, &mut self.args)
            .map_err(|reason| malformed_step(self.fwd, reason))?;
        self.args.extend_from_slice(&self.caps);
        self.interp
            .run(self.fwd, Some(self.m), &self.args, &mut self.out)?;
        write_slots(&self.out, state, &mut self.scratch);
        Ok(())
    }

    fn backward(&mut self, i: i64, state: &[u64], adj: &mut [u64]) -> Result<(), EvalError> {
        self.args.clear();
        self.args.push(Val::I64(i));
        vals_from_slots(&self.st_tys, state, &mut self.args)
            .map_err(|reason| malformed_step(self.bwd, reason))?;
        self.args.extend_from_slice(&self.caps);
        vals_from_slots(&self.adj_tys, adj, &mut self.args)
            .map_err(|reason| malformed_step(self.bwd, reason))?;
        self.interp
            .run(self.bwd, Some(self.m), &self.args, &mut self.out)?;
        write_slots(&self.out, adj, &mut self.scratch);
        Ok(())
    }
}

impl Interpreter {
    /// An interpreter with the default call-depth cap ([`MAX_CALL_DEPTH`]).
    pub fn new() -> Self {
        Self {
            slots: Vec::new(),
            frames: Vec::new(),
            cursors: Vec::new(),
            scratch: Vec::new(),
            max_call_depth: MAX_CALL_DEPTH,
            nested: false,
            last_stats: crate::checkpoint::Stats::default(),
            nested_error: None,
            drivers: 0,
            callees: CalleeIndex::default(),
        }
    }

    /// Sets the cap on nested calls.
    pub fn with_max_call_depth(mut self, limit: usize) -> Self {
        self.max_call_depth = limit;
        self
    }

    /// Evaluates `f` on `args` and returns its results. `module` resolves calls (none
    /// may occur when it is `None`).
    pub fn eval(
        &mut self,
        f: &Function,
        module: Option<&Module>,
        args: &[Val],
    ) -> Result<Vec<Val>, EvalError> {
        let mut out = Vec::with_capacity(f.sig.results.len());
        self.run(f, module, args, &mut out)?;
        Ok(out)
    }

    /// Evaluates `f` on `args`, replacing the contents of `out` with its results. With
    /// `out` and the interpreter reused, this allocates nothing in steady state.
    pub fn run(
        &mut self,
        f: &Function,
        module: Option<&Module>,
        args: &[Val],
        out: &mut Vec<Val>,
    ) -> Result<(), EvalError> {
        out.clear();
        check_args(f, args)?;
        if let (false, Some(m)) = (self.nested, module) {
            // Nested interpreters run step functions the outermost check covered.
            self.callees.check(m, f, self.max_call_depth)?;
        }
        // A top-level run opens a level of the thread's checkpointing state; a run
        // started from inside a sweep leaves that sweep's state alone.
        let scope = (!self.nested).then(crate::checkpoint::enter_call);
        self.frames.clear();
        self.cursors.clear();
        self.slots.clear();
        self.slots.resize(f.values.len(), Val::Bool(false));
        for (&p, a) in f.params().iter().zip(args) {
            set(&mut self.slots, p, a.clone())
                .map_err(|e| e.into_error(&f.name, self.max_call_depth))?;
        }
        self.frames.push(Frame {
            func: None,
            base: 0,
            call: None,
        });
        self.cursors.push(Cursor {
            region: f.body,
            pos: 0,
            lp: None,
        });
        let mut cur = f;
        let r = self.execute(f, module, &mut cur, out);
        if let Some(scope) = scope {
            self.last_stats = scope.finish();
        }
        r.map_err(|e| match (e, self.nested_error.take()) {
            (Fault::Nested, Some(inner)) => inner,
            (e, _) => e.into_error(&cur.name, self.max_call_depth),
        })
    }

    /// What the reverse sweeps (`revloop`s) of the last [`Interpreter::run`] did:
    /// snapshots, tape bytes, forward steps recomputed.
    pub fn last_stats(&self) -> crate::checkpoint::Stats {
        self.last_stats
    }

    /// The interpreter loop. `cur` tracks the running function, for error messages.
    fn execute<'a>(
        &mut self,
        entry: &'a Function,
        module: Option<&'a Module>,
        cur: &mut &'a Function,
        out: &mut Vec<Val>,
    ) -> Result<(), Fault> {
        let mut base = 0usize;
        loop {
            let f: &'a Function = cur;
            let Some(cursor) = self.cursors.last_mut() else {
                return Err(Fault::BadRegion(f.body));
            };
            let region = f
                .regions
                .get(cursor.region)
                .ok_or(Fault::BadRegion(cursor.region))?;
            let inst = *region
                .insts
                .get(cursor.pos)
                .ok_or(Fault::NoTerminator(cursor.region))?;
            cursor.pos += 1;
            let data = f.insts.get(inst).ok_or(Fault::BadInst(inst))?;
            let frame = &mut self.slots[base..];
            if let Some(v) = eval_pure(frame, data, inst) {
                let res = *data.results.first().ok_or(Fault::ResultCount(inst))?;
                set(frame, res, v?)?;
                continue;
            }
            match &data.op {
                Op::Guard => match arg(frame, data, inst, 0)? {
                    Val::Bool(true) => {}
                    Val::Bool(false) => return Err(Fault::Guard(inst)),
                    _ => return Err(Fault::BadOperands(inst)),
                },
                Op::Loop(bounds) => {
                    let mut k = 0;
                    let mut bound = |b: Bound| -> Result<i64, Fault> {
                        match b {
                            Bound::Imm(v) => Ok(v),
                            Bound::Dyn => {
                                k += 1;
                                arg(frame, data, inst, k - 1)?
                                    .as_i64()
                                    .ok_or(Fault::BadOperands(inst))
                            }
                        }
                    };
                    let start = bound(bounds.start)?;
                    let end = bound(bounds.end)?;
                    let inits = data.args.get(k..).ok_or(Fault::BadOperands(inst))?;
                    let body = *data.regions.first().ok_or(Fault::BadOperands(inst))?;
                    let params = &f.regions.get(body).ok_or(Fault::BadRegion(body))?.params;
                    if params.len() != inits.len() + 1 || data.results.len() != inits.len() {
                        return Err(Fault::BadRegion(body));
                    }
                    if start >= end {
                        for (&r, &a) in data.results.iter().zip(inits) {
                            let v = frame.get(a.index()).cloned().ok_or(Fault::BadValue(a))?;
                            set(frame, r, v)?;
                        }
                    } else {
                        // Verified IR nests loops only as deep as its text; a region that
                        // contains its own loop (malformed) would nest forever.
                        if self.cursors.len() >= MAX_REGION_NESTING {
                            return Err(Fault::BadRegion(body));
                        }
                        set(frame, params[0], Val::I64(start))?;
                        for (&p, &a) in params[1..].iter().zip(inits) {
                            let v = frame.get(a.index()).cloned().ok_or(Fault::BadValue(a))?;
                            set(frame, p, v)?;
                        }
                        self.cursors.push(Cursor {
                            region: body,
                            pos: 0,
                            lp: Some((inst, start, end)),
                        });
                    }
                }
                Op::Yield => {
                    let Some((loop_inst, i, end)) = cursor.lp else {
                        return Err(Fault::YieldOutsideLoop(inst));
                    };
                    self.scratch.clear();
                    for &a in &data.args {
                        let v = frame.get(a.index()).cloned().ok_or(Fault::BadValue(a))?;
                        self.scratch.push(v);
                    }
                    let next = i + 1; // i < end <= i64::MAX: no overflow
                    if next < end {
                        let params = &region.params;
                        if params.len() != self.scratch.len() + 1 {
                            return Err(Fault::BadRegion(cursor.region));
                        }
                        cursor.pos = 0;
                        cursor.lp = Some((loop_inst, next, end));
                        set(frame, params[0], Val::I64(next))?;
                        for (&p, v) in params[1..].iter().zip(self.scratch.drain(..)) {
                            set(frame, p, v)?;
                        }
                    } else {
                        let results = &f
                            .insts
                            .get(loop_inst)
                            .ok_or(Fault::BadInst(loop_inst))?
                            .results;
                        if results.len() != self.scratch.len() {
                            return Err(Fault::ResultCount(loop_inst));
                        }
                        for (&r, v) in results.iter().zip(self.scratch.drain(..)) {
                            set(frame, r, v)?;
                        }
                        self.cursors.pop();
                    }
                }
                Op::Ret => {
                    if cursor.lp.is_some() {
                        return Err(Fault::RetInsideLoop(inst));
                    }
                    self.scratch.clear();
                    for &a in &data.args {
                        let v = frame.get(a.index()).cloned().ok_or(Fault::BadValue(a))?;
                        self.scratch.push(v);
                    }
                    if self.scratch.len() != f.sig.results.len() {
                        return Err(Fault::ResultCount(inst));
                    }
                    self.cursors.pop();
                    let done = self.frames.pop().ok_or(Fault::BadInst(inst))?;
                    let Some(&caller) = self.frames.last() else {
                        out.extend_from_slice(&self.scratch);
                        return Ok(());
                    };
                    let call = done.call.ok_or(Fault::BadInst(inst))?;
                    self.slots.truncate(done.base);
                    let cf = resolve(entry, module, caller.func)?;
                    *cur = cf;
                    base = caller.base;
                    let frame = &mut self.slots[base..];
                    let results = &cf.insts.get(call).ok_or(Fault::BadInst(call))?.results;
                    if results.len() != self.scratch.len() {
                        return Err(Fault::ResultCount(call));
                    }
                    for (&r, v) in results.iter().zip(&self.scratch) {
                        set(frame, r, v.clone())?;
                    }
                }
                Op::TapeLoop(_) | Op::RevLoop(_) => {
                    let step = match &data.op {
                        Op::TapeLoop(r) => &r.fwd,
                        Op::RevLoop(r) => &r.bwd,
                        _ => return Err(Fault::BadInst(inst)),
                    };
                    let m = module.ok_or_else(|| Fault::UnknownCallee(step.clone()))?;
                    let depth = self.max_call_depth.saturating_sub(self.frames.len());
                    if depth == 0 || self.drivers >= MAX_DRIVER_NESTING {
                        return Err(Fault::CallDepth(step.clone()));
                    }
                    let cx = DriverCx {
                        m,
                        func: &f.name,
                        depth,
                        drivers: self.drivers,
                        nested: &mut self.nested_error,
                    };
                    let results = match &data.op {
                        Op::TapeLoop(r) => tape_loop(cx, r, data, frame, inst)?,
                        Op::RevLoop(r) => rev_loop(cx, r, data, frame, inst)?,
                        _ => return Err(Fault::BadInst(inst)),
                    };
                    if results.len() != data.results.len() {
                        return Err(Fault::ResultCount(inst));
                    }
                    for (&res, v) in data.results.iter().zip(results) {
                        set(frame, res, v)?;
                    }
                }
                Op::Call(name) => {
                    let m = module.ok_or_else(|| Fault::UnknownCallee(name.clone()))?;
                    let idx = self
                        .callees
                        .find(m, name)
                        .ok_or_else(|| Fault::UnknownCallee(name.clone()))?;
                    let callee = &m.funcs[idx];
                    let params = callee.params();
                    if data.args.len() != params.len() || params.len() != callee.sig.params.len() {
                        return Err(Fault::CallArgs(
                            inst,
                            format!(
                                "@{name} takes {} argument(s), got {}",
                                callee.sig.params.len(),
                                data.args.len()
                            ),
                        ));
                    }
                    if self.frames.len() >= self.max_call_depth {
                        let names = self.frames.iter().map(|fr| {
                            resolve(entry, module, fr.func).map_or("?", |g| g.name.as_str())
                        });
                        let len = self.frames.len() + 1;
                        let chain = crate::callgraph::chain(names.chain([name.as_str()]), len);
                        return Err(Fault::DepthChain(chain));
                    }
                    let new_base = self.slots.len();
                    self.slots
                        .resize(new_base + callee.values.len(), Val::Bool(false));
                    let (callers, frame) = self.slots.split_at_mut(new_base);
                    let caller_frame = &callers[base..];
                    for (k, (&p, &pty)) in params.iter().zip(&callee.sig.params).enumerate() {
                        let v = arg(caller_frame, data, inst, k)?;
                        if v.type_of() != pty {
                            return Err(Fault::CallArgs(
                                inst,
                                format!(
                                    "argument {k} of @{name} has type {}, expected {pty}",
                                    v.type_of()
                                ),
                            ));
                        }
                        set(frame, p, v)?;
                    }
                    self.frames.push(Frame {
                        func: Some(idx),
                        base: new_base,
                        call: Some(inst),
                    });
                    self.cursors.push(Cursor {
                        region: callee.body,
                        pos: 0,
                        lp: None,
                    });
                    *cur = callee;
                    base = new_base;
                }
                // Pure ops were handled by `eval_pure` above.
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
                | Op::Insert => return Err(Fault::BadInst(inst)),
            }
        }
    }
}

/// The function a frame runs.
fn resolve<'a>(
    entry: &'a Function,
    module: Option<&'a Module>,
    func: Option<usize>,
) -> Result<&'a Function, Fault> {
    match func {
        None => Ok(entry),
        Some(i) => module
            .and_then(|m| m.funcs.get(i))
            .ok_or_else(|| Fault::UnknownCallee(format!("#{i}"))),
    }
}

/// Checks argument count and types against `f`'s signature.
fn check_args(f: &Function, args: &[Val]) -> Result<(), EvalError> {
    if args.len() != f.sig.params.len() {
        return Err(EvalError::ArgCount {
            func: f.name.clone(),
            expected: f.sig.params.len(),
            got: args.len(),
        });
    }
    if f.params().len() != f.sig.params.len() {
        return Err(EvalError::Malformed {
            func: f.name.clone(),
            reason: "the body's parameters do not match the signature".into(),
        });
    }
    for (index, (a, &p)) in args.iter().zip(&f.sig.params).enumerate() {
        if a.type_of() != p {
            return Err(EvalError::ArgType {
                func: f.name.clone(),
                index,
                expected: p,
                got: a.type_of(),
            });
        }
    }
    Ok(())
}

/// Evaluates the function `func` of `module` on `args`.
pub fn eval(module: &Module, func: &str, args: &[Val]) -> Result<Vec<Val>, EvalError> {
    let f = module
        .get(func)
        .ok_or_else(|| EvalError::UnknownFunction(func.to_string()))?;
    Interpreter::new().eval(f, Some(module), args)
}

/// Evaluates `f` on `args`; `module` resolves calls (`None`: `f` makes none).
pub fn eval_function(
    f: &Function,
    module: Option<&Module>,
    args: &[Val],
) -> Result<Vec<Val>, EvalError> {
    Interpreter::new().eval(f, module, args)
}

/// Converts results to `f64`, failing on any result of another type.
fn results_f64(func: &str, vals: Vec<Val>) -> Result<Vec<f64>, EvalError> {
    vals.into_iter()
        .enumerate()
        .map(|(index, v)| match v {
            Val::F64(x) => Ok(x),
            other => Err(EvalError::ResultType {
                func: func.to_string(),
                index,
                expected: ScalarType::F64,
                got: other.type_of(),
            }),
        })
        .collect()
}

/// [`eval`] for functions from `f64`s to `f64`s.
pub fn eval_f64(module: &Module, func: &str, args: &[f64]) -> Result<Vec<f64>, EvalError> {
    let args: Vec<Val> = args.iter().map(|&x| Val::F64(x)).collect();
    results_f64(func, eval(module, func, &args)?)
}

/// [`eval_function`] for functions from `f64`s to `f64`s (e.g. a traced function).
pub fn eval_function_f64(
    f: &Function,
    module: Option<&Module>,
    args: &[f64],
) -> Result<Vec<f64>, EvalError> {
    let args: Vec<Val> = args.iter().map(|&x| Val::F64(x)).collect();
    results_f64(&f.name, eval_function(f, module, &args)?)
}
