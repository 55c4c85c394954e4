//! The facade's one error type, uniting the crates' errors.

/// Anything the facade API can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Tracing failed (nested traces, a `Var` from another trace).
    #[error(transparent)]
    Trace(#[from] jitad_ir::TraceError),
    /// IR text did not parse (line and column in the message).
    #[error(transparent)]
    Parse(#[from] jitad_ir::ParseError),
    /// The IR does not verify; every error names its function, instruction and value.
    #[error("the IR does not verify:\n{0}")]
    Verify(#[from] jitad_ir::VerifyErrors),
    /// A derivative transform refused the function.
    #[error(transparent)]
    Ad(#[from] jitad_passes::AdError),
    /// The JIT could not compile the function (boxed, like the two below: these errors
    /// carry a lot, and `Result<T, Error>` stays small on the success path).
    #[error(transparent)]
    Compile(Box<jitad_codegen::CompileError>),
    /// A call into compiled code was refused (buffer lengths, types) or a guard failed.
    #[error(transparent)]
    Call(Box<jitad_codegen::CallError>),
    /// The interpreter failed (wrong arguments, a failed guard).
    #[error(transparent)]
    Eval(Box<jitad_ir::EvalError>),
    /// The classic tape refused a recording or a buffer.
    #[error(transparent)]
    Tape(#[from] crate::tape::TapeError),
    /// The module has no function of that name.
    #[error("no function @{0} in the module")]
    UnknownFunction(String),
}

impl From<jitad_codegen::CompileError> for Error {
    fn from(e: jitad_codegen::CompileError) -> Self {
        Error::Compile(Box::new(e))
    }
}

impl From<jitad_codegen::CallError> for Error {
    fn from(e: jitad_codegen::CallError) -> Self {
        Error::Call(Box::new(e))
    }
}

impl From<jitad_ir::EvalError> for Error {
    fn from(e: jitad_ir::EvalError) -> Self {
        Error::Eval(Box::new(e))
    }
}

/// Results of the facade.
pub type Result<T, E = Error> = std::result::Result<T, E>;
