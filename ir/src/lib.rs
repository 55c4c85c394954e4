//! jitad's typed SSA IR.
//!
//! - [`types`]: scalar and static-shape tensor types;
//! - [`op`]: the one list of operations, with their typing rules;
//! - [`function`]: values, instructions, regions, functions and modules in arenas;
//! - [`builder`]: a type-checked builder for functions, calls and loops;
//! - [`math`]: the scalar semantics shared by the interpreter and the JIT.

pub mod builder;
pub mod dot;
pub mod function;
pub mod math;
pub mod op;
pub mod types;

pub use builder::{BuildError, FunctionBuilder};
pub use function::{
    Function, Inst, InstData, Module, Region, RegionData, Value, ValueData, ValueDef,
};
pub use op::{Bound, Constant, LoopBounds, Op, Signature, TypeError};
pub use types::{ScalarType, Shape, Type};
