//! Errors of compilation ([`CompileError`]) and of calls ([`CallError`]).

use jitad_ir::ScalarType;

/// Why a module could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The requested entry function (or a callee) is not in the module.
    #[error("the module has no function @{0}")]
    UnknownFunction(String),
    /// Something the JIT does not lower yet (tensor values).
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
    /// A tensor op: the JIT does not lower them yet; the interpreter runs them.
    #[error("@{func}: unsupported: tensor op `{op}` (use the interpreter: `--engine interp`)")]
    TensorOp {
        /// The function.
        func: String,
        /// The op's text name.
        op: &'static str,
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
    /// A reverse sweep through a loop could not run: the snapshots its checkpointing
    /// policy needs cannot be allocated (choose `binomial:S` or a memory budget), or a
    /// tape token was not valid where it was used (hand-written IR).
    #[error("@{func}: {reason}")]
    Checkpoint {
        /// The function called.
        func: String,
        /// What went wrong.
        reason: String,
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
