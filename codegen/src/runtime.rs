//! Runtime symbols: the functions JIT code calls, each registered explicitly.
//!
//! Transcendentals call the very same `extern "C"` functions of [`jitad_ir::math`] that
//! the interpreter evaluates through, so both engines agree bit for bit. Every symbol
//! generated code can reference is in [`symbols`] and registered with the `JITBuilder`
//! before any function is defined: Cranelift panics inside `finalize_definitions` on an
//! unresolved symbol, so none may ever reach it.
//!
//! Besides our own functions, the table registers the libcalls Cranelift's x64 backend
//! falls back to when the CPU lacks SSE4.1 (`floor`, `ceil`, `trunc`, `nearbyint`) or
//! FMA (`fma`), under Cranelift's default libcall names, pointing at `libm` through
//! `extern "C"` shims (Rust functions have no C ABI of their own).

use jitad_ir::math::{f32m, f64m};
use jitad_ir::{Op, ScalarType};

/// The shape of a runtime function's signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RtSig {
    /// `fn(T) -> T`.
    Unary,
    /// `fn(T, T) -> T`.
    Binary,
    /// `fn(T, T, T) -> T`.
    Ternary,
}

/// A typed pointer to a runtime function (typed, so the table can be a `static`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum RtPtr {
    /// `f64 -> f64`.
    D1(extern "C" fn(f64) -> f64),
    /// `(f64, f64) -> f64`.
    D2(extern "C" fn(f64, f64) -> f64),
    /// `(f64, f64, f64) -> f64`.
    D3(extern "C" fn(f64, f64, f64) -> f64),
    /// `f32 -> f32`.
    S1(extern "C" fn(f32) -> f32),
    /// `(f32, f32) -> f32`.
    S2(extern "C" fn(f32, f32) -> f32),
    /// `(f32, f32, f32) -> f32`.
    S3(extern "C" fn(f32, f32, f32) -> f32),
}

/// One runtime symbol.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RtFn {
    /// Symbol name, unique in the JIT module.
    pub name: &'static str,
    /// Its address.
    pub ptr: RtPtr,
    /// Float width of every parameter and the result.
    pub ty: ScalarType,
    /// Parameter count.
    pub sig: RtSig,
}

impl RtFn {
    /// The address to register with the JIT.
    pub fn addr(&self) -> *const u8 {
        match self.ptr {
            RtPtr::D1(f) => f as *const u8,
            RtPtr::D2(f) => f as *const u8,
            RtPtr::D3(f) => f as *const u8,
            RtPtr::S1(f) => f as *const u8,
            RtPtr::S2(f) => f as *const u8,
            RtPtr::S3(f) => f as *const u8,
        }
    }
}

extern "C" fn rt_fma(a: f64, b: f64, c: f64) -> f64 {
    libm::fma(a, b, c)
}
extern "C" fn rt_fmaf(a: f32, b: f32, c: f32) -> f32 {
    libm::fmaf(a, b, c)
}
extern "C" fn rt_floor(a: f64) -> f64 {
    libm::floor(a)
}
extern "C" fn rt_floorf(a: f32) -> f32 {
    libm::floorf(a)
}
extern "C" fn rt_ceil(a: f64) -> f64 {
    libm::ceil(a)
}
extern "C" fn rt_ceilf(a: f32) -> f32 {
    libm::ceilf(a)
}
extern "C" fn rt_trunc(a: f64) -> f64 {
    libm::trunc(a)
}
extern "C" fn rt_truncf(a: f32) -> f32 {
    libm::truncf(a)
}
extern "C" fn rt_rint(a: f64) -> f64 {
    libm::rint(a)
}
extern "C" fn rt_rintf(a: f32) -> f32 {
    libm::rintf(a)
}

macro_rules! table {
    ($( $name:literal => $f:expr, $ty:ident, $sig:ident; )*) => {
        /// Every runtime symbol, in a fixed order ([`rt_index`] indexes into it).
        pub(crate) fn symbols() -> &'static [RtFn] {
            static TABLE: [RtFn; table!(@count $($name)*)] = [$(RtFn {
                name: $name,
                ptr: $f,
                ty: ScalarType::$ty,
                sig: RtSig::$sig,
            }),*];
            &TABLE
        }
    };
    (@count) => { 0 };
    (@count $x:literal $($rest:literal)*) => { 1 + table!(@count $($rest)*) };
}

table! {
    "jitad_f64_exp" => RtPtr::D1(f64m::exp), F64, Unary;
    "jitad_f64_expm1" => RtPtr::D1(f64m::expm1), F64, Unary;
    "jitad_f64_log" => RtPtr::D1(f64m::log), F64, Unary;
    "jitad_f64_log1p" => RtPtr::D1(f64m::log1p), F64, Unary;
    "jitad_f64_sin" => RtPtr::D1(f64m::sin), F64, Unary;
    "jitad_f64_cos" => RtPtr::D1(f64m::cos), F64, Unary;
    "jitad_f64_tan" => RtPtr::D1(f64m::tan), F64, Unary;
    "jitad_f64_tanh" => RtPtr::D1(f64m::tanh), F64, Unary;
    "jitad_f64_sigmoid" => RtPtr::D1(f64m::sigmoid), F64, Unary;
    "jitad_f64_erf" => RtPtr::D1(f64m::erf), F64, Unary;
    "jitad_f64_pow" => RtPtr::D2(f64m::pow), F64, Binary;
    "jitad_f64_atan2" => RtPtr::D2(f64m::atan2), F64, Binary;
    "jitad_f32_exp" => RtPtr::S1(f32m::exp), F32, Unary;
    "jitad_f32_expm1" => RtPtr::S1(f32m::expm1), F32, Unary;
    "jitad_f32_log" => RtPtr::S1(f32m::log), F32, Unary;
    "jitad_f32_log1p" => RtPtr::S1(f32m::log1p), F32, Unary;
    "jitad_f32_sin" => RtPtr::S1(f32m::sin), F32, Unary;
    "jitad_f32_cos" => RtPtr::S1(f32m::cos), F32, Unary;
    "jitad_f32_tan" => RtPtr::S1(f32m::tan), F32, Unary;
    "jitad_f32_tanh" => RtPtr::S1(f32m::tanh), F32, Unary;
    "jitad_f32_sigmoid" => RtPtr::S1(f32m::sigmoid), F32, Unary;
    "jitad_f32_erf" => RtPtr::S1(f32m::erf), F32, Unary;
    "jitad_f32_pow" => RtPtr::S2(f32m::pow), F32, Binary;
    "jitad_f32_atan2" => RtPtr::S2(f32m::atan2), F32, Binary;
    // Cranelift's fallback libcalls (default names), never referenced by our lowering.
    "fma" => RtPtr::D3(rt_fma), F64, Ternary;
    "fmaf" => RtPtr::S3(rt_fmaf), F32, Ternary;
    "floor" => RtPtr::D1(rt_floor), F64, Unary;
    "floorf" => RtPtr::S1(rt_floorf), F32, Unary;
    "ceil" => RtPtr::D1(rt_ceil), F64, Unary;
    "ceilf" => RtPtr::S1(rt_ceilf), F32, Unary;
    "trunc" => RtPtr::D1(rt_trunc), F64, Unary;
    "truncf" => RtPtr::S1(rt_truncf), F32, Unary;
    "nearbyint" => RtPtr::D1(rt_rint), F64, Unary;
    "nearbyintf" => RtPtr::S1(rt_rintf), F32, Unary;
}

/// The runtime function implementing `op` at float width `ty`, as an index into
/// [`symbols`]; `None` for ops that lower to instructions.
pub(crate) fn rt_index(op: &Op, ty: ScalarType) -> Option<usize> {
    let base = match ty {
        ScalarType::F64 => 0,
        ScalarType::F32 => 12,
        ScalarType::I64 | ScalarType::Bool => return None,
    };
    let k = match op {
        Op::Exp => 0,
        Op::Expm1 => 1,
        Op::Log => 2,
        Op::Log1p => 3,
        Op::Sin => 4,
        Op::Cos => 5,
        Op::Tan => 6,
        Op::Tanh => 7,
        Op::Sigmoid => 8,
        Op::Erf => 9,
        Op::Pow => 10,
        Op::Atan2 => 11,
        _ => return None,
    };
    Some(base + k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_table() {
        let ops = [
            (Op::Exp, "exp"),
            (Op::Expm1, "expm1"),
            (Op::Log, "log"),
            (Op::Log1p, "log1p"),
            (Op::Sin, "sin"),
            (Op::Cos, "cos"),
            (Op::Tan, "tan"),
            (Op::Tanh, "tanh"),
            (Op::Sigmoid, "sigmoid"),
            (Op::Erf, "erf"),
            (Op::Pow, "pow"),
            (Op::Atan2, "atan2"),
        ];
        for (op, n) in ops {
            for (ty, p) in [(ScalarType::F64, "f64"), (ScalarType::F32, "f32")] {
                let i = rt_index(&op, ty).unwrap();
                let s = symbols()[i];
                assert_eq!(s.name, format!("jitad_{p}_{n}"));
                assert_eq!(s.ty, ty);
            }
        }
        let mut names: Vec<_> = symbols().iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), symbols().len());
    }
}
