//! The crate's one error type.

use jitad_ir::{Type, TypeError, VerifyErrors};

/// Why a transform or pass refused a function.
#[derive(Debug, thiserror::Error)]
pub enum AdError {
    /// The module has no function of that name.
    #[error("no function @{0} in the module")]
    UnknownFunction(String),
    /// The function is beyond the engines' call-depth or driver-nesting limits: neither
    /// engine runs it, so its derivative (whose call chains are at least as deep before
    /// clean-up) is refused with the same error rather than built — a derivative must
    /// not run where its function cannot (inlining could shorten the chains, but each
    /// callee's derivative re-evaluates its callee, so a long chain costs quadratic
    /// time).
    #[error(transparent)]
    Limit(#[from] jitad_ir::callgraph::LimitError),
    /// The input does not verify: transforms take verified IR only.
    #[error("@{func} does not verify:\n{errors}")]
    Invalid {
        /// The function (or module entry) being transformed.
        func: String,
        /// Every verifier error.
        errors: VerifyErrors,
    },
    /// A `wrt` index names no parameter.
    #[error("@{func}: wrt index {index} is out of range (the function has {params} parameters)")]
    WrtOutOfRange {
        /// Function.
        func: String,
        /// The bad index.
        index: usize,
        /// Parameter count.
        params: usize,
    },
    /// A `wrt` index appears twice.
    #[error("@{func}: wrt lists parameter {index} twice")]
    WrtDuplicate {
        /// Function.
        func: String,
        /// The repeated index.
        index: usize,
    },
    /// A `wrt` parameter is not a float scalar.
    #[error("@{func}: parameter {index} has type {ty}; only f64 and f32 parameters can be differentiated")]
    NotDifferentiable {
        /// Function.
        func: String,
        /// Parameter index.
        index: usize,
        /// Its type.
        ty: Type,
    },
    /// `grad` needs exactly one float result.
    #[error("@{func}: grad needs exactly one f64 or f32 result, the function returns ({results})")]
    NotScalar {
        /// Function.
        func: String,
        /// Its result types.
        results: String,
    },
    /// A construct the transform does not handle yet.
    #[error("@{func}: {what} is not supported yet")]
    Unsupported {
        /// Function.
        func: String,
        /// What, in words (names the op).
        what: String,
    },
    /// An instruction the transform emitted was ill-typed (a bug in this crate, or IR
    /// that slipped past the verifier).
    #[error("@{func}: {source}")]
    Type {
        /// Function being built.
        func: String,
        /// What was wrong.
        #[source]
        source: TypeError,
    },
    /// The function is structurally malformed in a way the transform cannot follow.
    #[error("@{func}: malformed IR: {reason}")]
    Malformed {
        /// Function.
        func: String,
        /// What was wrong.
        reason: String,
    },
}

/// Results of this crate.
pub type Result<T, E = AdError> = std::result::Result<T, E>;
