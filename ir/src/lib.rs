//! jitad's typed SSA IR.
//!
//! - [`types`]: scalar and static-shape tensor types;
//! - [`op`]: the one list of operations, with their typing rules;
//! - [`function`]: values, instructions, regions, functions and modules in arenas;
//! - [`builder`]: a type-checked builder for functions, calls and loops;
//! - [`math`]: the scalar semantics shared by the interpreter and the JIT;
//! - [`mod@print`], [`parse`]: the `.jir` text format (print → parse → print is the identity);
//! - [`testgen`]: seeded random well-typed programs for property tests;
//! - [`interp`]: the reference interpreter, the semantic ground truth;
//! - [`mod@trace`]: the tracer, recording generic `Float` code run on [`Var`], traced
//!   tensors ([`Tensor`]) and structured loops ([`fori_loop`]);
//! - [`verify`]: the verifier, which checks every structural, scoping and typing rule;
//! - [`shape`]: the shape rules of tensor ops (result types, broadcasting's sum-back);
//! - [`layout`]: the one value layout (scalar slots, row-major tensor buffers);
//! - [`kernels`]: reference kernels for tensor ops over slices, and the GEMM;
//! - [`vmath`]: vectorisable `exp`, `log`, `tanh`, `sigmoid` kernels for tensors, shared
//!   by the interpreter and compiled code;
//! - [`tensor`]: tensor values ([`interp::Val::Tensor`]) and the interpreter's tensor op arms.

pub mod builder;
pub mod callgraph;
pub mod checkpoint;
pub mod dot;
pub mod function;
pub mod interp;
pub mod kernels;
pub mod layout;
pub mod math;
pub mod op;
pub mod parse;
pub mod print;
pub mod shape;
pub mod tensor;
pub mod testgen;
pub mod trace;
pub mod types;
pub mod verify;
pub mod vmath;

pub use builder::{BuildError, FunctionBuilder};
pub use function::{
    Function, Inst, InstData, Module, Region, RegionData, Regions, Value, ValueData, ValueDef,
    ValueList,
};
pub use interp::{eval, eval_f64, eval_function, EvalError, Interpreter, Val};
pub use op::{Bound, Constant, LoopBounds, Op, RevLoop, Signature, TapeLoop, TypeError, TypeList};
pub use parse::{parse_function, parse_module, ParseError, ParseErrorKind};
pub use print::{print_function, print_module};
pub use testgen::{random_module, GenOptions};
pub use trace::{
    fori_loop, trace, trace_scalar, trace_tensors, Carry, Index, Tensor, TraceError, Var,
};
pub use types::{ScalarType, Shape, Type};
pub use verify::{
    verify_function, verify_module, VerifiedModule, VerifyError, VerifyErrorKind, VerifyErrors,
};
