//! jitad: trace once, differentiate as IR, JIT-compile with Cranelift.

pub mod problems;
pub mod tape;

pub use jitad_ir as ir;
