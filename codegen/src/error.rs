//! Errors of compilation ([`CompileError`]) and of calls ([`CallError`]).

use jitad_ir::ScalarType;

/// Why a module could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The requested entry function (or a callee) is not in the module.
    #[error("the module has no function @{0}")]
    UnknownFunction(String),
    /// Something the JIT does not lower yet: tensors as operands or results of
    /// `guard`, `tapeloop` or `revloop`.
    #[error(
        "@{func}: unsupported: {what} is not supported by the JIT yet (use the \
         interpreter: `--engine interp`)"
    )]
    Unsupported {
        /// The function.
        func: String,
        /// What it contains.
        what: String,
    },
    /// The IR is malformed (run `jitad_ir`'s verifier for the full list).
    #[error("@{func}: invalid IR: {message}")]
    InvalidIr {
        /// The function.
        func: String,
        /// What is wrong.
        message: String,
    },
    /// Functions call each other in a cycle; the JIT lays out workspaces statically and
    /// the IR has no conditional to end a recursion.
    #[error("@{0} is part of a call cycle; recursion is not supported")]
    Recursion(String),
    /// A generated function's machine stack frame is larger than
    /// [`crate::CompileOptions::max_frame_bytes`] (its spill slots: too many values live
    /// at once in one function or loop body).
    #[error(
        "{func} needs a stack frame of {bytes} bytes, more than the limit of {limit} \
         (CompileOptions::max_frame_bytes)"
    )]
    FrameTooLarge {
        /// The generated function (IR function name, and chunk if chunked).
        func: String,
        /// Its frame size in bytes.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// A byte offset or size does not fit the machine code's 32-bit displacements.
    #[error("@{func}: {what} does not fit in a 32-bit offset")]
    TooLarge {
        /// The function.
        func: String,
        /// What is too large (with its size).
        what: String,
    },
    /// Calls or loop drivers nested past the limits both engines share (the error the
    /// interpreter gives too).
    #[error(transparent)]
    Limit(#[from] jitad_ir::callgraph::LimitError),
    /// Cranelift could not set up a target for this machine.
    #[error("Cranelift could not configure the host target: {0}")]
    Isa(String),
    /// Cranelift rejected or failed to compile a generated function (verifier errors
    /// are listed one per line).
    #[error("Cranelift failed on {func}: {message}")]
    Cranelift {
        /// The generated function (IR function name, and chunk if chunked).
        func: String,
        /// Cranelift's message.
        message: String,
    },
}

impl CompileError {
    /// True when the JIT refused only because the program computes on tensors, which
    /// it does not lower yet ([`CompileError::Unsupported`]):
    /// the interpreter runs such programs, so harnesses comparing the two engines
    /// compare nothing there rather than report a difference.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, CompileError::Unsupported { .. })
    }
}

/// Why a call into compiled code was refused or failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The argument slice has the wrong length.
    #[error("@{func} takes {expected} argument(s), got {got}")]
    ArgCount {
        /// The function.
        func: String,
        /// Its parameter count.
        expected: usize,
        /// The slice length.
        got: usize,
    },
    /// The output slice has the wrong length.
    #[error("@{func} returns {expected} result(s), but the output buffer holds {got}")]
    ResultCount {
        /// The function.
        func: String,
        /// Its result count.
        expected: usize,
        /// The slice length.
        got: usize,
    },
    /// An argument has the wrong type.
    #[error("@{func}: argument {index} has type {got}, expected {expected}")]
    ArgType {
        /// The function.
        func: String,
        /// Argument position.
        index: usize,
        /// The parameter type.
        expected: ScalarType,
        /// The argument's type.
        got: ScalarType,
    },
    /// `call_f64` on a function whose parameters and results are not all `f64`.
    #[error("@{func} does not take and return only f64; use `call`")]
    NotAllF64 {
        /// The function.
        func: String,
    },
    /// A trace guard failed: the inputs take a branch the trace did not record. The
    /// output buffer holds unspecified values.
    #[error(
        "guard #{guard} in @{func} failed: these inputs take a branch the trace did not \
         record; re-trace the function at these inputs"
    )]
    GuardFailed {
        /// The function holding the guard.
        func: String,
        /// The guard's position among the function's guards, in program order (from 0).
        guard: usize,
    },
    /// A loop driver refused or failed: the snapshots its checkpointing policy needs
    /// cannot be allocated (choose `binomial:S` or a memory budget), a tape token was
    /// not valid where it was used, or a `revloop` does not match its tape
    /// (hand-written IR) — the same error the interpreter reports.
    #[error("@{func}: {error}")]
    Checkpoint {
        /// The function called.
        func: String,
        /// What went wrong.
        error: jitad_ir::checkpoint::DriverError,
    },
    /// The calling thread has less machine stack left than the deepest chain of
    /// compiled frames (and loop drivers) of this function needs, plus a margin; the
    /// call was not made. Call from a thread with a larger stack
    /// (`std::thread::Builder::stack_size`).
    #[error(
        "@{func} needs about {need} bytes of machine stack, but the calling thread has \
         only {available} left; call it from a thread with a larger stack"
    )]
    StackTooSmall {
        /// The function.
        func: String,
        /// Bytes the call needs (deepest frame chain plus margin).
        need: u64,
        /// Bytes left on the calling thread's stack.
        available: u64,
    },
    /// An argument's or result's type or shape differs from the signature (a tensor
    /// where a scalar is expected, or a tensor of another type).
    #[error("@{func}: {what} {index} has type {got}, expected {expected}")]
    Shape {
        /// The function.
        func: String,
        /// `"argument"` or `"result"`.
        what: &'static str,
        /// Position.
        index: usize,
        /// The signature's type.
        expected: jitad_ir::Type,
        /// What was passed.
        got: String,
    },
    /// A buffer passed for an argument or result does not hold the number of elements
    /// its type has (checked before any machine code runs).
    #[error("@{func}: {what} {index} ({ty}) needs {expected} element(s), the buffer holds {got}")]
    BufferLength {
        /// The function.
        func: String,
        /// `"argument"` or `"result"`.
        what: &'static str,
        /// Position (for the flat `call_f64`: the parameter or result whose elements
        /// ran out or were left over).
        index: usize,
        /// Its type.
        ty: jitad_ir::Type,
        /// Elements its type has.
        expected: usize,
        /// Elements the buffer holds.
        got: usize,
    },
    /// The call's workspace (tensor intermediates) could not be allocated.
    #[error("@{func}: cannot allocate the {bytes}-byte workspace of a call")]
    OutOfMemory {
        /// The function.
        func: String,
        /// Bytes asked for.
        bytes: usize,
    },
    /// A runtime tensor kernel refused its operands (a bug: shapes are checked when
    /// compiling).
    #[error("@{func}: tensor kernel failed: {message}")]
    TensorFault {
        /// The function.
        func: String,
        /// The kernel's message.
        message: String,
    },
    /// Compiled code returned a status the handle does not know (a bug).
    #[error("@{func}: compiled code returned unknown status {status}")]
    BadStatus {
        /// The function.
        func: String,
        /// The status.
        status: u32,
    },
}
