//! jitad: trace once, differentiate as IR, JIT-compile with Cranelift.
//!
//! A generic Rust function is traced into typed SSA IR; forward- and reverse-mode
//! transforms derive new IR from it; clean-up passes make that IR lean; Cranelift
//! compiles it to machine code behind a safe, allocation-free handle. Each step is one
//! line:
//!
//! ```
//! use num_traits::Float;
//!
//! // The quickstart example, generic so it runs natively on f64 and traces on Var.
//! fn f<T: Float>(x: &[T]) -> T {
//!     (x[0] + x[1]) * (x[0] - x[1])
//! }
//!
//! let traced = jitad::trace_scalar("f", &[3.0, 2.0], |x| f(x))?; // closure → IR
//! let grad = traced.grad()?;                                       // IR → gradient IR
//! let compiled = grad.compile()?;                                  // → machine code
//! let mut out = [0.0; 3];                                          // (value, ∂f/∂x, ∂f/∂y)
//! compiled.call_f64(&[3.0, 2.0], &mut out)?;
//! assert_eq!(out, [5.0, 6.0, -4.0]);
//!
//! // Forward mode: (x, y, dx, dy) -> (f, df).
//! let jvp = traced.jvp()?.compile()?;
//! let mut out = [0.0; 2];
//! jvp.call_f64(&[3.0, 2.0, 1.0, 0.0], &mut out)?;
//! assert_eq!(out, [5.0, 6.0]);
//!
//! // Every stage prints as parseable IR.
//! println!("{}", grad.to_jir());
//! # Ok::<(), jitad::Error>(())
//! ```
//!
//! Tensors trace too ([`trace_tensors`], [`Tensor`]: NumPy broadcasting, `matmul`,
//! reductions, indexing), and [`fori_loop`] records a Rust loop as one IR loop, so a
//! time-stepper traces to O(body) instructions and its gradient checkpoints. A trace
//! from types alone ([`trace_tensors_abstract`], [`trace_abstract`]) runs no kernel and
//! no loop, so its cost does not grow with the data, and records the same IR.
//!
//! The pieces, each its own crate: [`ir`] (types, ops, tracer, text format, verifier,
//! interpreter), [`passes`] (AD and clean-up), [`codegen`] (Cranelift JIT). This crate
//! adds the facade ([`Traced`]), the classic tape baseline ([`tape`]), the benchmark
//! problems with hand-written gradients ([`problems`]; the tensor ones in [`workloads`]),
//! derivative checking ([`check`]),
//! lossless JSON numbers ([`json`]) and the `jitad` command line.

#![warn(missing_docs)]

pub mod check;
mod error;
pub mod json;
pub mod problems;
pub mod suite;
pub mod tape;
mod traced;
pub mod workloads;

pub use error::{Error, Result};
pub use jitad_codegen as codegen;
pub use jitad_codegen::{CallError, CompileOptions, Compiled};
pub use jitad_ir as ir;
pub use jitad_ir::{fori_loop, Carry, Index, Tensor, Type, Val, Var};
pub use jitad_passes as passes;
pub use num_traits::Float;
pub use traced::{
    trace, trace_abstract, trace_scalar, trace_tensors, trace_tensors_abstract, DeriveTimes, Traced,
};
