//! Tensor values and the interpreter's tensor op arms.
//!
//! A tensor value is [`Tensor`]: its element type, static shape and a row-major buffer
//! ([`crate::layout`]'s layout), shared behind an `Arc` in [`crate::interp::Val::Tensor`]
//! so copying a value between slots, loop-carried values and results costs one
//! reference count, and scalars (the other `Val` variants) never allocate.
//!
//! `eval` (crate-private) evaluates one instruction whose op is a tensor op, or an
//! elementwise op with a tensor operand: it types the operands with
//! [`Op::result_types`] (so shapes are checked once, by the same rules as the verifier)
//! and calls the matching kernel of [`crate::kernels`] once for the whole buffer — never
//! a dispatch per element. `matmul` goes through [`kernels::matmul`], the GEMM compiled
//! code will call; `exp`, `log`, `tanh` and `sigmoid` go through [`crate::vmath`]'s slice
//! kernels (compiled code calls the same ones), not one libm call per element. Every failure is an error the interpreter reports
//! ([`crate::interp::EvalError`]); nothing here panics, and a result buffer the
//! allocator refuses is an error too, not an abort.

use crate::kernels::{self, KernelError, NumericReduction};
use crate::math::{f32m, f64m};
use crate::op::Op;
use crate::shape::{self, Reduction};
use crate::types::{ScalarType, Shape, Type};
use crate::vmath;
use std::sync::Arc;

/// A tensor's elements, row-major, one vector per element type.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// `f64` elements.
    F64(Vec<f64>),
    /// `f32` elements.
    F32(Vec<f32>),
    /// `i64` elements.
    I64(Vec<i64>),
    /// `bool` elements.
    Bool(Vec<bool>),
}

impl TensorData {
    /// `n` zeros (`false`) of type `elem`.
    pub fn zeros(elem: ScalarType, n: usize) -> Self {
        match elem {
            ScalarType::F64 => TensorData::F64(vec![0.0; n]),
            ScalarType::F32 => TensorData::F32(vec![0.0; n]),
            ScalarType::I64 => TensorData::I64(vec![0; n]),
            ScalarType::Bool => TensorData::Bool(vec![false; n]),
        }
    }

    /// The element type.
    pub fn elem(&self) -> ScalarType {
        match self {
            TensorData::F64(_) => ScalarType::F64,
            TensorData::F32(_) => ScalarType::F32,
            TensorData::I64(_) => ScalarType::I64,
            TensorData::Bool(_) => ScalarType::Bool,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F64(v) => v.len(),
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    /// True when there are no elements (never for a valid [`Tensor`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A tensor value: a static shape and its row-major elements (their count is the
/// shape's element count, checked by [`Tensor::new`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Shape,
    data: TensorData,
}

/// Why [`Tensor::new`] refused its parts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    /// The buffer length is not the shape's element count.
    #[error("a tensor of type {ty} holds {expected} elements, got {got}")]
    Length {
        /// The tensor type.
        ty: Type,
        /// The element count of the shape.
        expected: usize,
        /// The buffer length.
        got: usize,
    },
    /// Dimensions no shape has (rank 0 or above the maximum, a dimension above
    /// `u32::MAX`).
    #[error("no tensor shape has the dimensions {0:?}")]
    Shape(Vec<usize>),
    /// The type has no layout (zero-size or oversized).
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
}

impl Tensor {
    /// A tensor of `shape` holding `data` (row-major).
    pub fn new(shape: Shape, data: TensorData) -> Result<Self, TensorError> {
        let ty = Type::Tensor(data.elem(), shape);
        let layout = crate::layout::Layout::of(ty)?;
        if layout.num_elements() != data.len() {
            return Err(TensorError::Length {
                ty,
                expected: layout.num_elements(),
                got: data.len(),
            });
        }
        Ok(Self { shape, data })
    }

    /// A `f64` tensor of dimensions `dims` holding `data`.
    pub fn f64(dims: &[usize], data: Vec<f64>) -> Result<Self, TensorError> {
        let shape = Shape::new(dims).ok_or(TensorError::Shape(dims.to_vec()))?;
        Self::new(shape, TensorData::F64(data))
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The type (`f64[2,3]`).
    pub fn ty(&self) -> Type {
        Type::Tensor(self.data.elem(), self.shape)
    }

    /// The elements, row-major.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// The elements as `f64`s, when that is the element type.
    pub fn as_f64(&self) -> Option<&[f64]> {
        match &self.data {
            TensorData::F64(v) => Some(v),
            _ => None,
        }
    }

    fn dims(&self) -> Vec<usize> {
        self.shape.dims().iter().map(|&d| d as usize).collect()
    }
}

/// Why a tensor instruction failed.
#[derive(Debug)]
pub(crate) enum TensorFault {
    /// Operands of the wrong type or count (not verified IR).
    BadOperands,
    /// The allocator refused a result buffer of this many bytes.
    OutOfMemory {
        /// The buffer size.
        bytes: usize,
    },
    /// A dynamic index outside the leading axis.
    Index {
        /// The index.
        index: i64,
        /// The axis length.
        len: usize,
    },
}

impl From<KernelError> for TensorFault {
    fn from(e: KernelError) -> Self {
        match e {
            KernelError::Index { index, len } => TensorFault::Index { index, len },
            KernelError::Length { .. } | KernelError::Shape { .. } => TensorFault::BadOperands,
        }
    }
}

impl From<crate::shape::ShapeError> for TensorFault {
    fn from(_: crate::shape::ShapeError) -> Self {
        TensorFault::BadOperands
    }
}

impl From<crate::op::TypeError> for TensorFault {
    fn from(_: crate::op::TypeError) -> Self {
        TensorFault::BadOperands
    }
}

use crate::interp::Val;

/// A borrowed buffer of one element type (a scalar is a one-element buffer of rank 0).
enum Buf<'a> {
    F64(&'a [f64]),
    F32(&'a [f32]),
    I64(&'a [i64]),
    Bool(&'a [bool]),
}

fn buf(v: &Val) -> (Buf<'_>, Vec<usize>) {
    match v {
        Val::F64(x) => (Buf::F64(std::slice::from_ref(x)), vec![]),
        Val::F32(x) => (Buf::F32(std::slice::from_ref(x)), vec![]),
        Val::I64(x) => (Buf::I64(std::slice::from_ref(x)), vec![]),
        Val::Bool(x) => (Buf::Bool(std::slice::from_ref(x)), vec![]),
        Val::Tensor(t) => (
            match &t.data {
                TensorData::F64(d) => Buf::F64(d),
                TensorData::F32(d) => Buf::F32(d),
                TensorData::I64(d) => Buf::I64(d),
                TensorData::Bool(d) => Buf::Bool(d),
            },
            t.dims(),
        ),
    }
}

/// A result buffer: a tensor of type `ty`, or a scalar when `ty` is one.
fn finish(ty: Type, data: TensorData) -> Result<Val, TensorFault> {
    match ty {
        Type::Tensor(_, shape) => Ok(Val::Tensor(Arc::new(
            Tensor::new(shape, data).map_err(|_| TensorFault::BadOperands)?,
        ))),
        Type::Scalar(_) => Ok(match data {
            TensorData::F64(v) => Val::F64(*v.first().ok_or(TensorFault::BadOperands)?),
            TensorData::F32(v) => Val::F32(*v.first().ok_or(TensorFault::BadOperands)?),
            TensorData::I64(v) => Val::I64(*v.first().ok_or(TensorFault::BadOperands)?),
            TensorData::Bool(v) => Val::Bool(*v.first().ok_or(TensorFault::BadOperands)?),
        }),
    }
}

fn dims_of(ty: Type) -> Vec<usize> {
    match ty {
        Type::Scalar(_) => vec![],
        Type::Tensor(_, s) => s.dims().iter().map(|&d| d as usize).collect(),
    }
}

fn type_of(v: &Val) -> Type {
    v.type_of()
}

/// A unary float map at both widths.
fn float1(
    a: &Val,
    ty: Type,
    f64f: impl Fn(f64) -> f64,
    f32f: impl Fn(f32) -> f32,
) -> Result<Val, TensorFault> {
    let (b, ad) = buf(a);
    let od = dims_of(ty);
    let n = ty.num_elements();
    let data = match b {
        Buf::F64(x) => {
            let mut o = alloc(0.0, n)?;
            kernels::map1(x, &ad, &mut o, &od, f64f)?;
            TensorData::F64(o)
        }
        Buf::F32(x) => {
            let mut o = alloc(0.0, n)?;
            kernels::map1(x, &ad, &mut o, &od, f32f)?;
            TensorData::F32(o)
        }
        Buf::I64(_) | Buf::Bool(_) => return Err(TensorFault::BadOperands),
    };
    finish(ty, data)
}

/// A unary float map by whole-slice kernels ([`crate::vmath`]), at both widths. A unary
/// elementwise op's operand has the result's shape, so the out-of-place kernel runs
/// directly; any other operand shape (not verified IR) is broadcast by [`kernels::map1`]
/// first and the kernel runs in place.
fn float1_slices(
    a: &Val,
    ty: Type,
    f64k: (SliceKernel<f64>, fn(&mut [f64])),
    f32k: (SliceKernel<f32>, fn(&mut [f32])),
) -> Result<Val, TensorFault> {
    let (b, ad) = buf(a);
    let od = dims_of(ty);
    let n = ty.num_elements();
    macro_rules! run {
        ($x:expr, $k:expr) => {{
            let mut o = alloc(0.0, n)?;
            if ad == od {
                $k.0($x, &mut o).map_err(|_| TensorFault::BadOperands)?;
            } else {
                kernels::map1($x, &ad, &mut o, &od, |v| v)?;
                $k.1(&mut o);
            }
            o
        }};
    }
    let data = match b {
        Buf::F64(x) => TensorData::F64(run!(x, f64k)),
        Buf::F32(x) => TensorData::F32(run!(x, f32k)),
        Buf::I64(_) | Buf::Bool(_) => return Err(TensorFault::BadOperands),
    };
    finish(ty, data)
}

/// An out-of-place [`crate::vmath`] kernel.
type SliceKernel<T> = fn(&[T], &mut [T]) -> Result<(), vmath::LengthMismatch>;

/// A unary numeric map (floats and `i64`).
fn num1(
    a: &Val,
    ty: Type,
    f64f: impl Fn(f64) -> f64,
    f32f: impl Fn(f32) -> f32,
    i64f: impl Fn(i64) -> i64,
) -> Result<Val, TensorFault> {
    if let (Buf::I64(x), ad) = buf(a) {
        let mut o = alloc(0, ty.num_elements())?;
        kernels::map1(x, &ad, &mut o, &dims_of(ty), i64f)?;
        return finish(ty, TensorData::I64(o));
    }
    float1(a, ty, f64f, f32f)
}

/// A binary map with broadcasting; `i64f` is `None` for float-only ops.
fn map2(
    a: &Val,
    b: &Val,
    ty: Type,
    f64f: impl Fn(f64, f64) -> f64,
    f32f: impl Fn(f32, f32) -> f32,
    i64f: Option<fn(i64, i64) -> i64>,
) -> Result<Val, TensorFault> {
    let ((x, ad), (y, bd)) = (buf(a), buf(b));
    let od = dims_of(ty);
    let n = ty.num_elements();
    let data = match (x, y) {
        (Buf::F64(x), Buf::F64(y)) => {
            let mut o = alloc(0.0, n)?;
            kernels::map2(x, &ad, y, &bd, &mut o, &od, f64f)?;
            TensorData::F64(o)
        }
        (Buf::F32(x), Buf::F32(y)) => {
            let mut o = alloc(0.0, n)?;
            kernels::map2(x, &ad, y, &bd, &mut o, &od, f32f)?;
            TensorData::F32(o)
        }
        (Buf::I64(x), Buf::I64(y)) => {
            let f = i64f.ok_or(TensorFault::BadOperands)?;
            let mut o = alloc(0, n)?;
            kernels::map2(x, &ad, y, &bd, &mut o, &od, f)?;
            TensorData::I64(o)
        }
        _ => return Err(TensorFault::BadOperands),
    };
    finish(ty, data)
}

/// A comparison with broadcasting (bool result; `pb` for `eq`/`ne` on bools).
fn compare(
    a: &Val,
    b: &Val,
    ty: Type,
    pf: fn(f64, f64) -> bool,
    pf32: fn(f32, f32) -> bool,
    pi: fn(i64, i64) -> bool,
    pb: Option<fn(bool, bool) -> bool>,
) -> Result<Val, TensorFault> {
    let ((x, ad), (y, bd)) = (buf(a), buf(b));
    let od = dims_of(ty);
    let mut o = alloc(false, ty.num_elements())?;
    match (x, y) {
        (Buf::F64(x), Buf::F64(y)) => kernels::map2(x, &ad, y, &bd, &mut o, &od, pf)?,
        (Buf::F32(x), Buf::F32(y)) => kernels::map2(x, &ad, y, &bd, &mut o, &od, pf32)?,
        (Buf::I64(x), Buf::I64(y)) => kernels::map2(x, &ad, y, &bd, &mut o, &od, pi)?,
        (Buf::Bool(x), Buf::Bool(y)) => {
            let p = pb.ok_or(TensorFault::BadOperands)?;
            kernels::map2(x, &ad, y, &bd, &mut o, &od, p)?
        }
        _ => return Err(TensorFault::BadOperands),
    }
    finish(ty, TensorData::Bool(o))
}

/// `cast` of every element, with the scalar `cast`'s conventions.
fn cast(a: &Val, ty: Type) -> Result<Val, TensorFault> {
    let (x, ad) = buf(a);
    let od = dims_of(ty);
    let n = ty.num_elements();
    macro_rules! conv {
        ($x:expr, $zero:expr, $variant:ident, $f:expr) => {{
            let mut o = alloc($zero, n)?;
            kernels::map1($x, &ad, &mut o, &od, $f)?;
            TensorData::$variant(o)
        }};
    }
    let data = match (x, ty.elem()) {
        (Buf::F64(x), ScalarType::F64) => conv!(x, 0.0, F64, |v: f64| v),
        (Buf::F64(x), ScalarType::F32) => conv!(x, 0.0, F32, |v: f64| v as f32),
        (Buf::F64(x), ScalarType::I64) => conv!(x, 0, I64, |v: f64| v as i64),
        (Buf::F64(x), ScalarType::Bool) => conv!(x, false, Bool, |v: f64| v != 0.0),
        (Buf::F32(x), ScalarType::F64) => conv!(x, 0.0, F64, f64::from),
        (Buf::F32(x), ScalarType::F32) => conv!(x, 0.0, F32, |v: f32| v),
        (Buf::F32(x), ScalarType::I64) => conv!(x, 0, I64, |v: f32| v as i64),
        (Buf::F32(x), ScalarType::Bool) => conv!(x, false, Bool, |v: f32| v != 0.0),
        (Buf::I64(x), ScalarType::F64) => conv!(x, 0.0, F64, |v: i64| v as f64),
        (Buf::I64(x), ScalarType::F32) => conv!(x, 0.0, F32, |v: i64| v as f32),
        (Buf::I64(x), ScalarType::I64) => conv!(x, 0, I64, |v: i64| v),
        (Buf::I64(x), ScalarType::Bool) => conv!(x, false, Bool, |v: i64| v != 0),
        (Buf::Bool(x), ScalarType::F64) => {
            conv!(x, 0.0, F64, |v: bool| if v { 1.0 } else { 0.0 })
        }
        (Buf::Bool(x), ScalarType::F32) => {
            conv!(x, 0.0, F32, |v: bool| if v { 1.0 } else { 0.0 })
        }
        (Buf::Bool(x), ScalarType::I64) => conv!(x, 0, I64, i64::from),
        (Buf::Bool(x), ScalarType::Bool) => conv!(x, false, Bool, |v: bool| v),
    };
    finish(ty, data)
}

/// Applies a structural kernel (one that moves elements of any type) to every element
/// type: `$k` is called with the operand buffer and a zeroed output of `n` elements.
macro_rules! structural {
    ($x:expr, $n:expr, |$buf:ident, $out:ident| $body:expr) => {
        match $x {
            Buf::F64($buf) => {
                let mut $out = alloc(0.0f64, $n)?;
                $body;
                TensorData::F64($out)
            }
            Buf::F32($buf) => {
                let mut $out = alloc(0.0f32, $n)?;
                $body;
                TensorData::F32($out)
            }
            Buf::I64($buf) => {
                let mut $out = alloc(0i64, $n)?;
                $body;
                TensorData::I64($out)
            }
            Buf::Bool($buf) => {
                let mut $out = alloc(false, $n)?;
                $body;
                TensorData::Bool($out)
            }
        }
    };
}

/// Evaluates `op` on `args` (an instruction with one result). Callers route here the
/// tensor-only ops and the elementwise ops the scalar arms refused.
pub(crate) fn eval(op: &Op, args: &[Val]) -> Result<Val, TensorFault> {
    let tys: Vec<Type> = args.iter().map(type_of).collect();
    let ty = *op
        .result_types(&tys, |_| None)?
        .first()
        .ok_or(TensorFault::BadOperands)?;
    let n = ty.num_elements();
    let a = |k: usize| args.get(k).ok_or(TensorFault::BadOperands);
    match op {
        Op::Add => map2(
            a(0)?,
            a(1)?,
            ty,
            |x, y| x + y,
            |x, y| x + y,
            Some(i64::wrapping_add),
        ),
        Op::Sub => map2(
            a(0)?,
            a(1)?,
            ty,
            |x, y| x - y,
            |x, y| x - y,
            Some(i64::wrapping_sub),
        ),
        Op::Mul => map2(
            a(0)?,
            a(1)?,
            ty,
            |x, y| x * y,
            |x, y| x * y,
            Some(i64::wrapping_mul),
        ),
        Op::Div => map2(a(0)?, a(1)?, ty, |x, y| x / y, |x, y| x / y, None),
        Op::Pow => map2(
            a(0)?,
            a(1)?,
            ty,
            |x, y| f64m::pow(x, y),
            |x, y| f32m::pow(x, y),
            None,
        ),
        Op::Min => map2(
            a(0)?,
            a(1)?,
            ty,
            |x, y| f64m::min(x, y),
            |x, y| f32m::min(x, y),
            Some(i64::min),
        ),
        Op::Max => map2(
            a(0)?,
            a(1)?,
            ty,
            |x, y| f64m::max(x, y),
            |x, y| f32m::max(x, y),
            Some(i64::max),
        ),
        Op::Atan2 => map2(
            a(0)?,
            a(1)?,
            ty,
            |x, y| f64m::atan2(x, y),
            |x, y| f32m::atan2(x, y),
            None,
        ),
        // The scalar op's rule: a NaN sign operand gives NaN (its sign bit is not pinned).
        Op::Copysign => map2(
            a(0)?,
            a(1)?,
            ty,
            |x, y| f64m::copysign(x, y),
            |x, y| f32m::copysign(x, y),
            None,
        ),
        Op::Neg => num1(a(0)?, ty, |x| -x, |x| -x, i64::wrapping_neg),
        Op::Abs => num1(a(0)?, ty, f64::abs, f32::abs, i64::wrapping_abs),
        Op::Sqrt => float1(a(0)?, ty, f64::sqrt, f32::sqrt),
        // Transcendentals over tensors: `vmath`'s kernels, shared with compiled code.
        Op::Exp => float1_slices(
            a(0)?,
            ty,
            (vmath::exp, vmath::exp_in_place),
            (vmath::exp_f32, vmath::exp_f32_in_place),
        ),
        Op::Expm1 => float1(a(0)?, ty, |x| f64m::expm1(x), |x| f32m::expm1(x)),
        Op::Log => float1_slices(
            a(0)?,
            ty,
            (vmath::log, vmath::log_in_place),
            (vmath::log_f32, vmath::log_f32_in_place),
        ),
        Op::Log1p => float1(a(0)?, ty, |x| f64m::log1p(x), |x| f32m::log1p(x)),
        Op::Sin => float1(a(0)?, ty, |x| f64m::sin(x), |x| f32m::sin(x)),
        Op::Cos => float1(a(0)?, ty, |x| f64m::cos(x), |x| f32m::cos(x)),
        Op::Tan => float1(a(0)?, ty, |x| f64m::tan(x), |x| f32m::tan(x)),
        Op::Tanh => float1_slices(
            a(0)?,
            ty,
            (vmath::tanh, vmath::tanh_in_place),
            (vmath::tanh_f32, vmath::tanh_f32_in_place),
        ),
        Op::Sigmoid => float1_slices(
            a(0)?,
            ty,
            (vmath::sigmoid, vmath::sigmoid_in_place),
            (vmath::sigmoid_f32, vmath::sigmoid_f32_in_place),
        ),
        Op::Erf => float1(a(0)?, ty, |x| f64m::erf(x), |x| f32m::erf(x)),
        Op::Floor => float1(a(0)?, ty, f64::floor, f32::floor),
        Op::Ceil => float1(a(0)?, ty, f64::ceil, f32::ceil),
        Op::Round => float1(a(0)?, ty, |x| f64m::round(x), |x| f32m::round(x)),
        Op::Trunc => float1(a(0)?, ty, f64::trunc, f32::trunc),
        Op::Powi(p) => {
            let p = *p;
            float1(a(0)?, ty, |x| f64m::powi(x, p), |x| f32m::powi(x, p))
        }
        Op::Lt => compare(
            a(0)?,
            a(1)?,
            ty,
            |x, y| x < y,
            |x, y| x < y,
            |x, y| x < y,
            None,
        ),
        Op::Le => compare(
            a(0)?,
            a(1)?,
            ty,
            |x, y| x <= y,
            |x, y| x <= y,
            |x, y| x <= y,
            None,
        ),
        Op::Gt => compare(
            a(0)?,
            a(1)?,
            ty,
            |x, y| x > y,
            |x, y| x > y,
            |x, y| x > y,
            None,
        ),
        Op::Ge => compare(
            a(0)?,
            a(1)?,
            ty,
            |x, y| x >= y,
            |x, y| x >= y,
            |x, y| x >= y,
            None,
        ),
        Op::Eq => compare(
            a(0)?,
            a(1)?,
            ty,
            |x, y| x == y,
            |x, y| x == y,
            |x, y| x == y,
            Some(|x, y| x == y),
        ),
        Op::Ne => compare(
            a(0)?,
            a(1)?,
            ty,
            |x, y| x != y,
            |x, y| x != y,
            |x, y| x != y,
            Some(|x, y| x != y),
        ),
        Op::Fma => {
            let ((x, xd), (y, yd), (z, zd)) = (buf(a(0)?), buf(a(1)?), buf(a(2)?));
            let od = dims_of(ty);
            let data = match (x, y, z) {
                (Buf::F64(x), Buf::F64(y), Buf::F64(z)) => {
                    let mut o = alloc(0.0, n)?;
                    kernels::map3(x, &xd, y, &yd, z, &zd, &mut o, &od, f64::mul_add)?;
                    TensorData::F64(o)
                }
                (Buf::F32(x), Buf::F32(y), Buf::F32(z)) => {
                    let mut o = alloc(0.0, n)?;
                    kernels::map3(x, &xd, y, &yd, z, &zd, &mut o, &od, f32::mul_add)?;
                    TensorData::F32(o)
                }
                _ => return Err(TensorFault::BadOperands),
            };
            finish(ty, data)
        }
        Op::Select => {
            let ((c, cd), (x, xd), (y, yd)) = (buf(a(0)?), buf(a(1)?), buf(a(2)?));
            let Buf::Bool(c) = c else {
                return Err(TensorFault::BadOperands);
            };
            let od = dims_of(ty);
            macro_rules! sel {
                ($x:expr, $y:expr, $zero:expr, $v:ident) => {{
                    let mut o = alloc($zero, n)?;
                    kernels::map3(
                        c,
                        &cd,
                        $x,
                        &xd,
                        $y,
                        &yd,
                        &mut o,
                        &od,
                        |c, x, y| {
                            if c {
                                x
                            } else {
                                y
                            }
                        },
                    )?;
                    TensorData::$v(o)
                }};
            }
            let data = match (x, y) {
                (Buf::F64(x), Buf::F64(y)) => sel!(x, y, 0.0, F64),
                (Buf::F32(x), Buf::F32(y)) => sel!(x, y, 0.0, F32),
                (Buf::I64(x), Buf::I64(y)) => sel!(x, y, 0, I64),
                (Buf::Bool(x), Buf::Bool(y)) => sel!(x, y, false, Bool),
                _ => return Err(TensorFault::BadOperands),
            };
            finish(ty, data)
        }
        Op::Cast(_) => cast(a(0)?, ty),
        Op::Fill(c, _) => finish(
            ty,
            match *c {
                crate::op::Constant::F64(v) => TensorData::F64(alloc(v, n)?),
                crate::op::Constant::F32(v) => TensorData::F32(alloc(v, n)?),
                crate::op::Constant::I64(v) => TensorData::I64(alloc(v, n)?),
                crate::op::Constant::Bool(v) => TensorData::Bool(alloc(v, n)?),
            },
        ),
        Op::Broadcast(_) => {
            let (x, xd) = buf(a(0)?);
            let od = dims_of(ty);
            let data = structural!(x, n, |x, o| kernels::map1(x, &xd, &mut o, &od, |v| v)?);
            finish(ty, data)
        }
        Op::Iota(axis, _) => {
            let od = dims_of(ty);
            let axis = usize::from(*axis);
            let data = match ty.elem() {
                ScalarType::F64 => {
                    let mut o = alloc(0.0f64, n)?;
                    kernels::iota(&mut o, &od, axis)?;
                    TensorData::F64(o)
                }
                ScalarType::F32 => {
                    let mut o = alloc(0.0f32, n)?;
                    kernels::iota(&mut o, &od, axis)?;
                    TensorData::F32(o)
                }
                ScalarType::I64 => {
                    let mut o = alloc(0i64, n)?;
                    kernels::iota(&mut o, &od, axis)?;
                    TensorData::I64(o)
                }
                ScalarType::Bool => return Err(TensorFault::BadOperands),
            };
            finish(ty, data)
        }
        Op::Reduce(red, axes) => {
            let axes = axes.to_vec();
            let (x, xd) = buf(a(0)?);
            let data = match x {
                Buf::F64(x) => {
                    let (mut o, mut s) = (alloc(0.0f64, n)?, scratch(*red, n)?);
                    kernels::reduce_real(*red, x, &xd, &axes, &mut o, &mut s)?;
                    TensorData::F64(o)
                }
                Buf::F32(x) => {
                    let mut o = alloc(0.0f32, n)?;
                    let mut s = alloc(0.0f32, if *red == Reduction::LogSumExp { n } else { 0 })?;
                    kernels::reduce_real(*red, x, &xd, &axes, &mut o, &mut s)?;
                    TensorData::F32(o)
                }
                Buf::I64(x) => {
                    let nr = match red {
                        Reduction::Sum => NumericReduction::Sum,
                        Reduction::Max => NumericReduction::Max,
                        Reduction::Min => NumericReduction::Min,
                        Reduction::Mean | Reduction::LogSumExp => {
                            return Err(TensorFault::BadOperands)
                        }
                    };
                    let mut o = alloc(0i64, n)?;
                    kernels::reduce(nr, x, &xd, &axes, &mut o)?;
                    TensorData::I64(o)
                }
                Buf::Bool(_) => return Err(TensorFault::BadOperands),
            };
            finish(ty, data)
        }
        Op::Matmul => {
            let (_, dims) = shape::matmul_dims(tys[0], tys[1])?;
            let ((x, _), (y, _)) = (buf(a(0)?), buf(a(1)?));
            let data = match (x, y) {
                (Buf::F64(x), Buf::F64(y)) => {
                    let mut o = alloc(0.0f64, n)?;
                    kernels::matmul(dims, x, y, &mut o)?;
                    TensorData::F64(o)
                }
                (Buf::F32(x), Buf::F32(y)) => {
                    let mut o = alloc(0.0f32, n)?;
                    kernels::matmul(dims, x, y, &mut o)?;
                    TensorData::F32(o)
                }
                _ => return Err(TensorFault::BadOperands),
            };
            finish(ty, data)
        }
        Op::Dot => {
            let ((x, _), (y, _)) = (buf(a(0)?), buf(a(1)?));
            match (x, y) {
                (Buf::F64(x), Buf::F64(y)) => Ok(Val::F64(kernels::dot(x, y)?)),
                (Buf::F32(x), Buf::F32(y)) => Ok(Val::F32(kernels::dot(x, y)?)),
                _ => Err(TensorFault::BadOperands),
            }
        }
        Op::Transpose(perm) => {
            let perm = perm.to_vec();
            let (x, xd) = buf(a(0)?);
            let data = structural!(x, n, |x, o| kernels::transpose(x, &xd, &perm, &mut o)?);
            finish(ty, data)
        }
        Op::Reshape(_) => {
            // Row-major order is kept: the same elements under a new shape.
            let data = match a(0)? {
                Val::Tensor(t) => copy_data(&t.data)?,
                v => {
                    let (x, _) = buf(v);
                    structural!(x, n, |x, o| o.copy_from_slice(x))
                }
            };
            finish(ty, data)
        }
        Op::Slice(ranges) => {
            let r: Vec<(usize, usize, usize)> = ranges
                .iter()
                .map(|r| (r.start as usize, r.end as usize, r.step as usize))
                .collect();
            let (x, xd) = buf(a(0)?);
            let data = structural!(x, n, |x, o| kernels::slice(x, &xd, &r, &mut o)?);
            finish(ty, data)
        }
        Op::Pad(widths) => {
            let w: Vec<(usize, usize)> = widths
                .iter()
                .map(|r| (r.start as usize, r.end as usize))
                .collect();
            let ((x, xd), (v, _)) = (buf(a(0)?), buf(a(1)?));
            macro_rules! pad {
                ($x:expr, $v:expr, $zero:expr, $variant:ident) => {{
                    let value = *$v.first().ok_or(TensorFault::BadOperands)?;
                    let mut o = alloc($zero, n)?;
                    kernels::pad($x, &xd, value, &w, &mut o)?;
                    TensorData::$variant(o)
                }};
            }
            let data = match (x, v) {
                (Buf::F64(x), Buf::F64(v)) => pad!(x, v, 0.0, F64),
                (Buf::F32(x), Buf::F32(v)) => pad!(x, v, 0.0, F32),
                (Buf::I64(x), Buf::I64(v)) => pad!(x, v, 0, I64),
                (Buf::Bool(x), Buf::Bool(v)) => pad!(x, v, false, Bool),
                _ => return Err(TensorFault::BadOperands),
            };
            finish(ty, data)
        }
        Op::Concat(axis) => {
            let axis = usize::from(*axis);
            let bufs: Vec<(Buf<'_>, Vec<usize>)> = args.iter().map(buf).collect();
            macro_rules! cat {
                ($variant:ident, $zero:expr) => {{
                    let mut parts = Vec::with_capacity(bufs.len());
                    for (b, d) in &bufs {
                        let Buf::$variant(x) = b else {
                            return Err(TensorFault::BadOperands);
                        };
                        parts.push((*x, d.as_slice()));
                    }
                    let mut o = alloc($zero, n)?;
                    kernels::concat(&parts, axis, &mut o)?;
                    TensorData::$variant(o)
                }};
            }
            let data = match bufs.first().map(|b| &b.0) {
                Some(Buf::F64(_)) => cat!(F64, 0.0f64),
                Some(Buf::F32(_)) => cat!(F32, 0.0f32),
                Some(Buf::I64(_)) => cat!(I64, 0i64),
                Some(Buf::Bool(_)) => cat!(Bool, false),
                None => return Err(TensorFault::BadOperands),
            };
            finish(ty, data)
        }
        Op::Extract => {
            let index = a(1)?.as_i64().ok_or(TensorFault::BadOperands)?;
            let (x, xd) = buf(a(0)?);
            let data = structural!(x, n, |x, o| kernels::extract_row(x, &xd, index, &mut o)?);
            finish(ty, data)
        }
        Op::Insert => {
            let index = a(2)?.as_i64().ok_or(TensorFault::BadOperands)?;
            let Val::Tensor(t) = a(1)? else {
                return Err(TensorFault::BadOperands);
            };
            let xd = t.dims();
            let (row, _) = buf(a(0)?);
            // A functional update: copy the tensor, then overwrite one row in place.
            let mut data = copy_data(&t.data)?;
            match (&mut data, row) {
                (TensorData::F64(x), Buf::F64(r)) => kernels::insert_row(x, &xd, index, r)?,
                (TensorData::F32(x), Buf::F32(r)) => kernels::insert_row(x, &xd, index, r)?,
                (TensorData::I64(x), Buf::I64(r)) => kernels::insert_row(x, &xd, index, r)?,
                (TensorData::Bool(x), Buf::Bool(r)) => kernels::insert_row(x, &xd, index, r)?,
                _ => return Err(TensorFault::BadOperands),
            }
            finish(ty, data)
        }
        Op::Const(_)
        | Op::Guard
        | Op::Call(_)
        | Op::Loop(_)
        | Op::RevLoop(_)
        | Op::TapeLoop(_)
        | Op::Yield
        | Op::Ret => Err(TensorFault::BadOperands),
    }
}

/// `logsumexp`'s scratch buffer (the others need none).
fn scratch(red: Reduction, n: usize) -> Result<Vec<f64>, TensorFault> {
    alloc(0.0, if red == Reduction::LogSumExp { n } else { 0 })
}

/// A copy of a tensor's elements (see [`alloc`]).
fn copy_data(d: &TensorData) -> Result<TensorData, TensorFault> {
    Ok(match d {
        TensorData::F64(d) => TensorData::F64(copy(d)?),
        TensorData::F32(d) => TensorData::F32(copy(d)?),
        TensorData::I64(d) => TensorData::I64(copy(d)?),
        TensorData::Bool(d) => TensorData::Bool(copy(d)?),
    })
}

/// A copy of `x` (see [`alloc`]).
fn copy<T: Copy>(x: &[T]) -> Result<Vec<T>, TensorFault> {
    let mut out = Vec::new();
    out.try_reserve_exact(x.len())
        .map_err(|_| TensorFault::OutOfMemory {
            bytes: std::mem::size_of_val(x),
        })?;
    out.extend_from_slice(x);
    Ok(out)
}

/// `n` copies of `v`, or [`TensorFault::OutOfMemory`] when the allocator refuses (a
/// tensor type may describe up to `MAX_TENSOR_BYTES`, more than a machine may have).
fn alloc<T: Clone>(v: T, n: usize) -> Result<Vec<T>, TensorFault> {
    let mut out = Vec::new();
    out.try_reserve_exact(n)
        .map_err(|_| TensorFault::OutOfMemory {
            bytes: n.saturating_mul(std::mem::size_of::<T>()),
        })?;
    out.resize(n, v);
    Ok(out)
}
