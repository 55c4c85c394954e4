//! jitad's IR transforms: forward and reverse automatic differentiation, activity
//! analysis and the clean-up passes that make derived code lean.
//!
//! Every transform takes verified IR and returns verified IR, so they compose:
//! `jvp(grad(f))` is a Hessian-vector product ([`hvp`]).
//!
//! - [`jvp()`], [`vjp()`], [`grad`]: derivatives as new functions of the module
//!   (`@f.jvp`, `@f.vjp`, `@f.grad`);
//! - [`hvp`], [`hessian()`]: forward-over-reverse second derivatives;
//! - [`revloop`]: reverse mode through loops, with checkpointing ([`set_policy`]);
//! - [`activity`]: which values carry derivatives;
//! - [`rules`]: the calculus of every op and the conventions at non-differentiable
//!   points (ties of `min`/`max`, `abs` at 0, `sqrt` at 0, `pow` at 0, NaN-safe `select`);
//! - [`dce`], [`cse`], [`constfold`], [`simplify`]: clean-up passes, each usable alone;
//! - [`mod@inline`]: calls replaced by callee bodies under a size-based cost model;
//! - [`pipeline`]: [`optimize`] runs them to a fixed point, [`optimize_module`] inlines too.
//!
//! ```
//! use jitad_ir::{interp, FunctionBuilder, Module, Op, Type};
//! // f(x, y) = (x + y)(x − y)
//! let mut b = FunctionBuilder::new("f");
//! let x = b.named_param("x", Type::F64);
//! let y = b.named_param("y", Type::F64);
//! let a = b.ins1(Op::Add, &[x, y]).unwrap();
//! let s = b.ins1(Op::Sub, &[x, y]).unwrap();
//! let c = b.ins1(Op::Mul, &[a, s]).unwrap();
//! b.ret(&[c]).unwrap();
//! let mut m = Module::new();
//! m.insert(b.finish().unwrap());
//!
//! let g = jitad_passes::grad(&mut m, "f", &[0, 1]).unwrap();
//! jitad_passes::optimize_module(&mut m, &jitad_passes::OptOptions::default());
//! assert_eq!(interp::eval_f64(&m, &g, &[3.0, 2.0]).unwrap(), vec![5.0, 6.0, -4.0]);
//! ```

#![warn(missing_docs)]

pub mod activity;
pub mod constfold;
pub mod cse;
pub mod dce;
mod derive;
mod emit;
mod error;
pub mod hessian;
pub mod inline;
pub mod jvp;
mod lin;
pub mod pipeline;
pub mod revloop;
mod rewrite;
pub mod rules;
pub mod simplify;
pub mod vjp;

pub use derive::{
    derive_functions, derive_functions_verified, float_params, Kind as DerivativeKind,
};
pub use error::{AdError, Result};
pub use hessian::{hessian, hvp};
pub use jvp::jvp;
pub use pipeline::{optimize, optimize_module, OptOptions, OptStats};
pub use revloop::set_policy;
pub use vjp::{grad, vjp};
