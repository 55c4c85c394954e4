//! The traced tensor: [`Tensor`], recorded into the same trace as [`Var`].
//!
//! A `Tensor` is any traced value — a tensor `f64[2,3]` (or `f32`, `i64`, `bool`
//! elements) or a rank-0 scalar — with its **example value** ([`Val`]) and, once
//! recorded, its IR value. The design is `Var`'s, for the same reasons:
//!
//! - **Eager or abstract**: in an eager trace ([`trace_tensors`]) every op computes its
//!   example with the interpreter's own tensor arms (`crate::tensor::eval`, one kernel
//!   call per op), so a traced function evaluated at its example gives the example's
//!   results bit for bit, and a traced loop can evaluate its recorded body on the
//!   examples it captures ([`super::fori_loop`]); the cost is one kernel call per
//!   traced op. In an abstract trace ([`trace_tensors_abstract`]) an op computes only
//!   its result type, so tracing costs O(ops) whatever the sizes, and records the same
//!   IR (see the [trace module docs](super#abstract-traces)). Shapes are known at
//!   every step in both.
//! - **Constants fold**: ops between untraced tensors record nothing; an untraced tensor
//!   meeting a traced one is recorded as `fill` when its elements are equal, else
//!   element by element up to [`super::MAX_INLINE_ELEMENTS`] elements (the IR has no
//!   tensor literal; pass larger data as an argument).
//! - **Typing by the IR's rules**: each op's result type comes from
//!   [`Op::result_types`], i.e. [`crate::shape`]'s rules — NumPy broadcasting for
//!   `+ - * /` and the elementwise functions, a scalar (`f64`, [`Var`]) broadcasting
//!   to anything. A rejected op is a [`TraceError::Type`] naming the op and both
//!   shapes, never a panic: the trace fails with it, and outside a trace the result is
//!   *poisoned* (it carries the error, [`Tensor::error`], and every op on it returns
//!   the same poison).
//!
//! Operators take `Tensor`, `&Tensor`, [`Var`] and `f64` on either side (an `f64` is
//! converted to the tensor's element type, so `f32` tensors mix with literals).
//!
//! ```
//! use jitad_ir::trace::{trace_tensors, Tensor};
//! use jitad_ir::{Val, tensor};
//! // A one-layer perceptron's loss: logsumexp(tanh(x·W + b)) summed over the batch.
//! let x = Val::tensor(tensor::Tensor::f64(&[2, 3], vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6]).unwrap());
//! let w = Val::tensor(tensor::Tensor::f64(&[3, 2], vec![1.0, -1.0, 0.5, 0.5, -0.5, 1.0]).unwrap());
//! let b = Val::tensor(tensor::Tensor::f64(&[2], vec![0.0, 0.1]).unwrap());
//! let f = trace_tensors("mlp", &[x.clone(), w.clone(), b.clone()], |a| {
//!     let h = (a[0].matmul(&a[1]) + &a[2]).tanh();
//!     vec![h.logsumexp(&[1]).sum(&[0])]
//! })
//! .unwrap();
//! let y = jitad_ir::interp::eval_function(&f, None, &[x, w, b]).unwrap();
//! assert!(matches!(y[0], Val::F64(v) if v.is_finite()));
//! ```

use super::{fail_abstract, is_abstract, run_trace, with_ctx, Ctx, Known, TraceError, Var};
use crate::function::{Function, Value};
use crate::interp::Val;
use crate::op::{Axes, Op, TypeError};
use crate::shape::{Reduction, ShapeError, SliceRange};
use crate::tensor::TensorFault;
use crate::types::{ScalarType, Shape, Type};
use std::ops::{Add, Div, Mul, Neg, Range, Sub};
use std::sync::Arc;

use super::loops::Index;

/// A traced tensor (or rank-0 scalar): an example value and, once recorded, its IR
/// value. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct Tensor {
    /// The example, or (a traced value of an abstract trace) the type alone.
    pub(crate) val: Known,
    pub(crate) node: Option<(u32, Value)>,
    pub(crate) poison: Option<Arc<TraceError>>,
}

/// The running trace's name, for errors (`(untraced)` outside a trace).
fn func_name() -> String {
    with_ctx(|c| c.name()).unwrap_or_else(|| "(untraced)".into())
}

impl Tensor {
    /// An untraced constant with example `val`.
    pub fn constant(val: impl Into<Val>) -> Tensor {
        Tensor {
            val: Known::Val(val.into()),
            node: None,
            poison: None,
        }
    }

    /// A traced tensor recorded as `node`, known as `val` — by its type alone when
    /// `node` belongs to an abstract trace (a loop body's carried parameter starts from
    /// a constant, whose value is not the parameter's).
    pub(crate) fn traced(val: Known, node: Option<(u32, Value)>) -> Tensor {
        let val = match val {
            Known::Val(v) if is_abstract(node) => Known::Type(v.type_of()),
            val => val,
        };
        Tensor {
            val,
            node,
            poison: None,
        }
    }

    /// A poisoned tensor carrying `e` (not recorded anywhere).
    fn poisoned(e: Arc<TraceError>) -> Tensor {
        Tensor {
            val: Known::Val(Val::F64(f64::NAN)),
            node: None,
            poison: Some(e),
        }
    }

    /// An untraced `f64` tensor of dimensions `dims` holding `data` (row-major);
    /// poisoned (see [`Tensor::error`]) when the length does not match.
    pub fn from_f64(dims: &[usize], data: Vec<f64>) -> Tensor {
        let len = data.len();
        match crate::tensor::Tensor::f64(dims, data) {
            Ok(t) => Tensor::constant(Val::tensor(t)),
            Err(_) => Tensor::fail(TraceError::Dims {
                func: func_name(),
                elem: ScalarType::F64,
                dims: dims.to_vec(),
                len,
            }),
        }
    }

    /// The `f64` tensor of dimensions `dims` with every element `v` (recorded as
    /// `fill` when it meets a traced value).
    pub fn fill(v: f64, dims: &[usize]) -> Tensor {
        let n = dims.iter().fold(1usize, |a, &d| a.saturating_mul(d));
        if n > u32::MAX as usize {
            return Tensor::fail(TraceError::Dims {
                func: func_name(),
                elem: ScalarType::F64,
                dims: dims.to_vec(),
                len: n,
            });
        }
        // A buffer the allocator refuses is an error, not an abort.
        let mut data = Vec::new();
        if data.try_reserve_exact(n).is_err() {
            return Tensor::fail(TraceError::Example {
                func: func_name(),
                op: "fill",
                detail: format!("the allocator refused {n} elements"),
            });
        }
        data.resize(n, v);
        Tensor::from_f64(dims, data)
    }

    /// `fill(0.0, dims)`.
    pub fn zeros(dims: &[usize]) -> Tensor {
        Tensor::fill(0.0, dims)
    }

    /// The vector of the given scalars (`concat` of one-element broadcasts when any is
    /// traced).
    pub fn stack(xs: &[Var]) -> Tensor {
        if xs.iter().all(|x| x.node.is_none()) {
            return Tensor::from_f64(&[xs.len()], xs.iter().map(|x| x.x).collect());
        }
        let parts: Vec<Tensor> = xs
            .iter()
            .map(|&x| Tensor::from(x).broadcast_to(&[1]))
            .collect();
        Tensor::concat(&parts, 0)
    }

    /// A poisoned result carrying `e` (also recorded as the trace's error).
    fn fail(e: TraceError) -> Tensor {
        with_ctx(|ctx| ctx.fail(e.clone()));
        Tensor::poisoned(Arc::new(e))
    }

    /// The example value (NaN for a poisoned tensor). **Value-dependent**: a tensor of
    /// an abstract trace has none, so this fails that trace with
    /// [`TraceError::Abstract`] and returns a NaN scalar (also after the trace);
    /// [`Tensor::try_value`] returns the error instead.
    pub fn value(&self) -> &Val {
        static NAN: Val = Val::F64(f64::NAN);
        match &self.val {
            Known::Val(v) => v,
            Known::Type(_) => {
                fail_abstract(|| "`Tensor::value`".into());
                &NAN
            }
        }
    }

    /// The example value; the poison's error for a poisoned tensor, and
    /// [`TraceError::Abstract`] for a tensor of an abstract trace.
    pub fn try_value(&self) -> Result<&Val, TraceError> {
        self.check()?;
        match &self.val {
            Known::Val(v) => Ok(v),
            Known::Type(_) => Err(TraceError::Abstract {
                func: func_name(),
                what: "`Tensor::try_value`".into(),
            }),
        }
    }

    /// True when the tensor was recorded by an abstract trace: it has a type and no
    /// value.
    pub fn is_abstract(&self) -> bool {
        is_abstract(self.node)
    }

    /// The type (`f64[2,3]`, or `f64` for rank 0); known in both kinds of trace.
    pub fn ty(&self) -> Type {
        self.val.ty()
    }

    /// The dimensions (empty for rank 0).
    pub fn dims(&self) -> Vec<usize> {
        match self.ty() {
            Type::Scalar(_) => vec![],
            Type::Tensor(_, s) => s.dims().iter().map(|&d| d as usize).collect(),
        }
    }

    /// The element type.
    pub fn elem(&self) -> ScalarType {
        self.ty().elem()
    }

    /// True when the tensor was recorded by a trace (not a folded constant).
    pub fn is_traced(&self) -> bool {
        self.node.is_some()
    }

    /// The IR value recorded for this tensor, if any (meaningful only inside its
    /// trace).
    pub fn node(&self) -> Option<Value> {
        self.node.map(|(_, v)| v)
    }

    /// The error that poisoned this tensor, if an op producing it was rejected.
    pub fn error(&self) -> Option<&TraceError> {
        self.poison.as_deref()
    }

    /// `Ok` unless poisoned.
    pub fn check(&self) -> Result<(), TraceError> {
        match &self.poison {
            Some(e) => Err((**e).clone()),
            None => Ok(()),
        }
    }

    /// The rank-0 `f64` value as a [`Var`]; a tensor or another element type is a
    /// [`TraceError::Kind`] (the result is then NaN and the trace fails).
    pub fn to_var(&self) -> Var {
        if self.poison.is_some() {
            return Var::constant(f64::NAN);
        }
        match (&self.val, self.ty()) {
            (Known::Val(Val::F64(x)), _) => Var::new(*x, self.node),
            (Known::Type(_), Type::Scalar(ScalarType::F64)) => Var::new(f64::NAN, self.node),
            (_, got) => {
                Tensor::fail(TraceError::Kind {
                    func: func_name(),
                    what: "Tensor::to_var",
                    expected: "a rank-0 f64 value",
                    got,
                });
                Var::constant(f64::NAN)
            }
        }
    }

    /// The rank-0 `i64` value as an [`Index`] (for loop bounds and `at`).
    pub fn to_index(&self) -> Index {
        if self.poison.is_some() {
            return Index::from(0);
        }
        match (&self.val, self.ty()) {
            (Known::Val(Val::I64(x)), _) => Index::new(*x, self.node),
            (Known::Type(_), Type::Scalar(ScalarType::I64)) => Index::new(0, self.node),
            (_, got) => {
                Tensor::fail(TraceError::Kind {
                    func: func_name(),
                    what: "Tensor::to_index",
                    expected: "a rank-0 i64 value",
                    got,
                });
                Index::from(0)
            }
        }
    }

    /// A scalar constant of this tensor's element type (`f64` unless it is `f32`).
    fn scalar_like(&self, v: f64) -> Tensor {
        match self.elem() {
            ScalarType::F32 => Tensor::constant(Val::F32(v as f32)),
            ScalarType::F64 | ScalarType::I64 | ScalarType::Bool => Tensor::constant(Val::F64(v)),
        }
    }

    /// Records `op` on `operands` (typed by the IR's rules; in an eager trace its
    /// example computed by the interpreter's tensor arms, in an abstract one only its
    /// type), or folds it when no operand is traced.
    pub(crate) fn apply(op: Op, operands: &[&Tensor]) -> Tensor {
        if let Some(p) = operands.iter().find_map(|t| t.poison.clone()) {
            return Tensor::poisoned(p);
        }
        let tys: Vec<Type> = operands.iter().map(|t| t.ty()).collect();
        let ty = match op.result_types(&tys, |_| None) {
            Ok(t) => t.first().copied(),
            Err(source) => {
                return Tensor::fail(TraceError::Type {
                    func: func_name(),
                    source: Box::new(source),
                })
            }
        };
        let args: Option<Vec<Val>> = operands.iter().map(|t| t.val.val().cloned()).collect();
        let val = match args {
            Some(args) => match crate::tensor::eval(&op, &args) {
                Ok(v) => Known::Val(v),
                Err(fault) => return Tensor::fail(example_error(&op, fault)),
            },
            // An operand of an abstract trace: the type alone (no kernel runs). What
            // the example would have caught statically is checked here too.
            None => match (abstract_fault(&op, operands), ty) {
                (Some(fault), _) => return Tensor::fail(example_error(&op, fault)),
                (None, Some(ty)) => Known::Type(ty),
                (None, None) => return Tensor::fail(example_error(&op, TensorFault::BadOperands)),
            },
        };
        let Some(first) = operands.iter().find_map(|t| t.node) else {
            return Tensor::traced(val, None);
        };
        let recorded = with_ctx(|ctx| record(ctx, op, operands, &val));
        match recorded {
            // Outside a trace, a recorded operand's stale node marks the result as
            // foreign to any later trace (as `Var` does).
            None => Tensor::traced(val, Some(first)),
            Some(Some(node)) => Tensor::traced(val, Some(node)),
            Some(None) => Tensor::poisoned(Arc::new(
                with_ctx(|c| c.error.clone())
                    .flatten()
                    .unwrap_or(TraceError::ForeignVar { func: func_name() }),
            )),
        }
    }

    fn un(&self, op: Op) -> Tensor {
        Tensor::apply(op, &[self])
    }

    fn bin(&self, op: Op, other: &Tensor) -> Tensor {
        Tensor::apply(op, &[self, other])
    }

    /// `tanh`, elementwise.
    pub fn tanh(&self) -> Tensor {
        self.un(Op::Tanh)
    }
    /// `exp`, elementwise.
    pub fn exp(&self) -> Tensor {
        self.un(Op::Exp)
    }
    /// `log` (natural), elementwise.
    pub fn log(&self) -> Tensor {
        self.un(Op::Log)
    }
    /// `sqrt`, elementwise.
    pub fn sqrt(&self) -> Tensor {
        self.un(Op::Sqrt)
    }
    /// The logistic sigmoid, elementwise.
    pub fn sigmoid(&self) -> Tensor {
        self.un(Op::Sigmoid)
    }
    /// `sin`, elementwise.
    pub fn sin(&self) -> Tensor {
        self.un(Op::Sin)
    }
    /// `cos`, elementwise.
    pub fn cos(&self) -> Tensor {
        self.un(Op::Cos)
    }
    /// `|x|`, elementwise.
    pub fn abs(&self) -> Tensor {
        self.un(Op::Abs)
    }
    /// `xⁿ`, elementwise (IR `powi`).
    pub fn powi(&self, n: i32) -> Tensor {
        self.un(Op::Powi(n))
    }
    /// `max(x, 0)`, elementwise (IEEE `maximum`: NaN propagates).
    pub fn relu(&self) -> Tensor {
        self.maximum(self.scalar_like(0.0))
    }
    /// Elementwise IEEE `maximum` with broadcasting.
    pub fn maximum(&self, other: impl Into<Tensor>) -> Tensor {
        self.bin(Op::Max, &other.into())
    }
    /// Elementwise IEEE `minimum` with broadcasting.
    pub fn minimum(&self, other: impl Into<Tensor>) -> Tensor {
        self.bin(Op::Min, &other.into())
    }

    /// The matrix product (`[m,k]×[k,n]`, matrix × vector, vector × matrix, a leading
    /// batch axis; see [`crate::shape::matmul`]).
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        self.bin(Op::Matmul, other)
    }

    /// The dot product of two vectors of one length (a rank-0 result).
    pub fn dot(&self, other: &Tensor) -> Tensor {
        self.bin(Op::Dot, other)
    }

    fn reduce(&self, r: Reduction, axes: &[usize]) -> Tensor {
        match Axes::new(axes) {
            Some(a) => self.un(Op::Reduce(r, a)),
            None => {
                let axis = axes.iter().copied().max().unwrap_or(0);
                Tensor::fail(TraceError::Type {
                    func: func_name(),
                    source: Box::new(TypeError::Shape(ShapeError::AxisOutOfRange {
                        op: Op::Reduce(r, Axes::default()).name(),
                        axis,
                        ty: self.ty(),
                    })),
                })
            }
        }
    }

    /// The sum over `axes` (which the result drops; all axes give rank 0).
    pub fn sum(&self, axes: &[usize]) -> Tensor {
        self.reduce(Reduction::Sum, axes)
    }
    /// The mean over `axes`.
    pub fn mean(&self, axes: &[usize]) -> Tensor {
        self.reduce(Reduction::Mean, axes)
    }
    /// The maximum over `axes` (IR `reduce_max`).
    pub fn max(&self, axes: &[usize]) -> Tensor {
        self.reduce(Reduction::Max, axes)
    }
    /// The minimum over `axes` (IR `reduce_min`).
    pub fn min(&self, axes: &[usize]) -> Tensor {
        self.reduce(Reduction::Min, axes)
    }
    /// `log Σ exp` over `axes`, with the max-shift built in.
    pub fn logsumexp(&self, axes: &[usize]) -> Tensor {
        self.reduce(Reduction::LogSumExp, axes)
    }
    /// The sum of every element, as a [`Var`] (for `f64` tensors).
    pub fn sum_all(&self) -> Var {
        let all: Vec<usize> = (0..self.dims().len()).collect();
        self.sum(&all).to_var()
    }

    /// The axes permuted: result axis `i` is axis `perm[i]` (NumPy's `transpose`).
    pub fn transpose(&self, perm: &[usize]) -> Tensor {
        match Axes::new(perm) {
            Some(p) => self.un(Op::Transpose(p)),
            None => Tensor::fail(TraceError::Type {
                func: func_name(),
                source: Box::new(TypeError::Shape(ShapeError::Permutation {
                    perm: perm.to_vec(),
                    ty: self.ty(),
                })),
            }),
        }
    }

    /// The transpose of a matrix (`transpose(&[1, 0])`).
    pub fn t(&self) -> Tensor {
        self.transpose(&[1, 0])
    }

    /// The type of this tensor's element type with dimensions `dims`, or a poisoned
    /// tensor naming them.
    fn ty_with(&self, dims: &[usize]) -> Result<Type, Tensor> {
        let len = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        match Shape::new(dims) {
            Some(s) if !dims.contains(&0) => Ok(Type::Tensor(self.elem(), s)),
            _ if dims.is_empty() => Ok(Type::Scalar(self.elem())),
            _ => Err(Tensor::fail(TraceError::Dims {
                func: func_name(),
                elem: self.elem(),
                dims: dims.to_vec(),
                len: len.unwrap_or(usize::MAX),
            })),
        }
    }

    /// The same elements, row-major, with dimensions `dims`.
    pub fn reshape(&self, dims: &[usize]) -> Tensor {
        match self.ty_with(dims) {
            Ok(t) => self.un(Op::Reshape(t)),
            Err(p) => p,
        }
    }

    /// Broadcast to dimensions `dims` with NumPy's rules.
    pub fn broadcast_to(&self, dims: &[usize]) -> Tensor {
        match self.ty_with(dims) {
            Ok(t) => self.un(Op::Broadcast(t)),
            Err(p) => p,
        }
    }

    /// The static slice taking `ranges[k]` along axis `k` (one range per axis).
    pub fn slice(&self, ranges: &[Range<usize>]) -> Tensor {
        let clamp = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
        let r: Vec<SliceRange> = ranges
            .iter()
            .map(|r| SliceRange::new(clamp(r.start), clamp(r.end)))
            .collect();
        self.un(Op::Slice(r))
    }

    /// This tensor with `widths[k] = (low, high)` copies of the scalar `value` before
    /// and after it along axis `k` (one pair per axis; IR `pad`, the transpose of
    /// [`Tensor::slice`]).
    pub fn pad(&self, value: impl Into<Tensor>, widths: &[(usize, usize)]) -> Tensor {
        let clamp = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
        let r: Vec<SliceRange> = widths
            .iter()
            .map(|&(lo, hi)| SliceRange::new(clamp(lo), clamp(hi)))
            .collect();
        let v = value.into();
        // An `f64` literal pads an `f32` tensor as `f32`, as in the operators.
        let v = match (&v.val, v.node, self.elem()) {
            (Known::Val(Val::F64(x)), None, ScalarType::F32) => self.scalar_like(*x),
            _ => v,
        };
        self.bin(Op::Pad(r), &v)
    }

    /// The tensors joined along `axis` (they agree on every other axis).
    pub fn concat(parts: &[Tensor], axis: usize) -> Tensor {
        let Ok(a) = u8::try_from(axis) else {
            let ty = parts.first().map_or(Type::F64, Tensor::ty);
            return Tensor::fail(TraceError::Type {
                func: func_name(),
                source: Box::new(TypeError::Shape(ShapeError::AxisOutOfRange {
                    op: "concat",
                    axis,
                    ty,
                })),
            });
        };
        let refs: Vec<&Tensor> = parts.iter().collect();
        Tensor::apply(Op::Concat(a), &refs)
    }

    /// The element (of a vector, rank 0) or row (of a higher-rank tensor) at index `i`
    /// of the leading axis (IR `extract`; `i` may be traced, e.g. a loop index).
    pub fn at(&self, i: impl Into<Index>) -> Tensor {
        let i = Tensor::from(i.into());
        self.bin(Op::Extract, &i)
    }

    /// The element `i` of an `f64` vector, as a [`Var`].
    pub fn get(&self, i: impl Into<Index>) -> Var {
        self.at(i).to_var()
    }

    /// This tensor with its element or row `i` (leading axis) replaced by `v` (IR
    /// `insert`, a functional update).
    pub fn insert(&self, i: impl Into<Index>, v: impl Into<Tensor>) -> Tensor {
        let i = Tensor::from(i.into());
        Tensor::apply(Op::Insert, &[&v.into(), self, &i])
    }
}

/// The [`TraceError::Example`] of a kernel's fault.
fn example_error(op: &Op, fault: TensorFault) -> TraceError {
    let detail = match fault {
        TensorFault::Index { index, len } => format!("index {index} is outside 0..{len}"),
        TensorFault::OutOfMemory { bytes } => format!("the allocator refused {bytes} bytes"),
        TensorFault::BadOperands => "operands the op does not take".into(),
    };
    TraceError::Example {
        func: func_name(),
        op: op.name(),
        detail,
    }
}

/// The fault an eager trace would have met at the example that the types and the
/// constant operands already decide: a constant `extract`/`insert` index outside the
/// leading axis. (A traced index is checked when the function runs.)
fn abstract_fault(op: &Op, operands: &[&Tensor]) -> Option<TensorFault> {
    let (x, i) = match (op, operands) {
        (Op::Extract, [x, i]) | (Op::Insert, [_, x, i]) => (x, i),
        _ => return None,
    };
    let index = i.val.val()?.as_i64()?;
    let len = *x.dims().first()?;
    let inside = usize::try_from(index).is_ok_and(|k| k < len);
    (!inside).then_some(TensorFault::Index { index, len })
}

/// Records `op(operands)` known as `val`; `None` when the context refused it.
fn record(ctx: &mut Ctx, op: Op, operands: &[&Tensor], val: &Known) -> Option<(u32, Value)> {
    let gen = ctx.scope_generation();
    let mut args = Vec::with_capacity(operands.len());
    for t in operands {
        args.push(ctx.known_value(t.node, &t.val)?);
    }
    ctx.ins1k(op, &args, val).map(|v| (gen, v))
}

impl From<Var> for Tensor {
    fn from(x: Var) -> Tensor {
        let val = if x.is_abstract() {
            Known::Type(Type::F64)
        } else {
            Known::Val(Val::F64(x.x))
        };
        Tensor::traced(val, x.node)
    }
}

impl From<&Var> for Tensor {
    fn from(x: &Var) -> Tensor {
        Tensor::from(*x)
    }
}

impl From<Index> for Tensor {
    fn from(i: Index) -> Tensor {
        let val = if i.is_abstract() {
            Known::Type(Type::Scalar(ScalarType::I64))
        } else {
            Known::Val(Val::I64(i.x))
        };
        Tensor::traced(val, i.node)
    }
}

impl From<f64> for Tensor {
    fn from(x: f64) -> Tensor {
        Tensor::constant(Val::F64(x))
    }
}

impl From<&Tensor> for Tensor {
    fn from(t: &Tensor) -> Tensor {
        t.clone()
    }
}

impl Neg for Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        self.un(Op::Neg)
    }
}

impl Neg for &Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        self.un(Op::Neg)
    }
}

// ---- arithmetic with broadcasting: Tensor/&Tensor ∘ Tensor/&Tensor/Var/f64, and
// Var/f64 ∘ Tensor/&Tensor ----

macro_rules! tensor_binop {
    ($Tr:ident, $m:ident, $op:expr) => {
        impl $Tr<&Tensor> for &Tensor {
            type Output = Tensor;
            fn $m(self, rhs: &Tensor) -> Tensor {
                self.bin($op, rhs)
            }
        }
        impl $Tr<Tensor> for Tensor {
            type Output = Tensor;
            fn $m(self, rhs: Tensor) -> Tensor {
                self.bin($op, &rhs)
            }
        }
        impl $Tr<&Tensor> for Tensor {
            type Output = Tensor;
            fn $m(self, rhs: &Tensor) -> Tensor {
                self.bin($op, rhs)
            }
        }
        impl $Tr<Tensor> for &Tensor {
            type Output = Tensor;
            fn $m(self, rhs: Tensor) -> Tensor {
                self.bin($op, &rhs)
            }
        }
        impl $Tr<Var> for &Tensor {
            type Output = Tensor;
            fn $m(self, rhs: Var) -> Tensor {
                self.bin($op, &Tensor::from(rhs))
            }
        }
        impl $Tr<Var> for Tensor {
            type Output = Tensor;
            fn $m(self, rhs: Var) -> Tensor {
                self.bin($op, &Tensor::from(rhs))
            }
        }
        impl $Tr<f64> for &Tensor {
            type Output = Tensor;
            fn $m(self, rhs: f64) -> Tensor {
                self.bin($op, &self.scalar_like(rhs))
            }
        }
        impl $Tr<f64> for Tensor {
            type Output = Tensor;
            fn $m(self, rhs: f64) -> Tensor {
                self.bin($op, &self.scalar_like(rhs))
            }
        }
        impl $Tr<&Tensor> for Var {
            type Output = Tensor;
            fn $m(self, rhs: &Tensor) -> Tensor {
                Tensor::from(self).bin($op, rhs)
            }
        }
        impl $Tr<Tensor> for Var {
            type Output = Tensor;
            fn $m(self, rhs: Tensor) -> Tensor {
                Tensor::from(self).bin($op, &rhs)
            }
        }
        impl $Tr<&Tensor> for f64 {
            type Output = Tensor;
            fn $m(self, rhs: &Tensor) -> Tensor {
                rhs.scalar_like(self).bin($op, rhs)
            }
        }
        impl $Tr<Tensor> for f64 {
            type Output = Tensor;
            fn $m(self, rhs: Tensor) -> Tensor {
                rhs.scalar_like(self).bin($op, &rhs)
            }
        }
    };
}

tensor_binop!(Add, add, Op::Add);
tensor_binop!(Sub, sub, Op::Sub);
tensor_binop!(Mul, mul, Op::Mul);
tensor_binop!(Div, div, Op::Div);

/// Traces `f` on tensor (and scalar) arguments: parameters `%x0, %x1, ...` of the
/// examples' types (a [`Val::Tensor`] becomes a tensor parameter, a [`Val::F64`] an
/// `f64` one, a [`Val::I64`] an `i64` one), and `ret` of the outputs (a rank-0 output
/// is a scalar result; convert a [`Var`] output with `.into()`).
///
/// Fails like [`super::trace`], and with the first [`TraceError`] an op on the way
/// produced (a shape error, an index out of range at the example).
pub fn trace_tensors(
    name: &str,
    example: &[Val],
    f: impl FnOnce(&[Tensor]) -> Vec<Tensor>,
) -> Result<Function, TraceError> {
    let example: Vec<Known> = example.iter().cloned().map(Known::Val).collect();
    tensor_trace(name, &example, f)
}

/// Traces `f` from its parameters' **types** alone: the abstract twin of
/// [`trace_tensors`] (parameters `%x0, %x1, ...` of `types`). Every recorded op
/// computes only its result type ([`Op::result_types`]), never a kernel, so the cost
/// is O(ops) whatever the tensors' sizes; [`super::fori_loop`] records its body
/// without running it; untraced constants keep their values and fold. It records the
/// same IR as [`trace_tensors`] at any example of these types, for every program that
/// does not ask for a traced value; one that does (a comparison deciding Rust control
/// flow, [`Tensor::value`], [`Var::value`]) fails with [`TraceError::Abstract`]
/// naming what asked (see the [trace module docs](super#abstract-traces)).
///
/// ```
/// use jitad_ir::trace::{trace_tensors, trace_tensors_abstract};
/// use jitad_ir::{tensor, Type, Val};
/// let f = |a: &[jitad_ir::trace::Tensor]| vec![(a[0].matmul(&a[1]) + 1.0).tanh().sum(&[0, 1])];
/// let (x, w) = (tensor::Tensor::f64(&[2, 3], vec![0.5; 6]).unwrap(), tensor::Tensor::f64(&[3, 4], vec![0.25; 12]).unwrap());
/// let types = [x.ty(), w.ty()];
/// let eager = trace_tensors("f", &[Val::tensor(x), Val::tensor(w)], f).unwrap();
/// let abs = trace_tensors_abstract("f", &types, f).unwrap();
/// assert_eq!(eager.to_string(), abs.to_string());
/// ```
pub fn trace_tensors_abstract(
    name: &str,
    types: &[Type],
    f: impl FnOnce(&[Tensor]) -> Vec<Tensor>,
) -> Result<Function, TraceError> {
    let example: Vec<Known> = types.iter().copied().map(Known::Type).collect();
    tensor_trace(name, &example, f)
}

fn tensor_trace(
    name: &str,
    example: &[Known],
    f: impl FnOnce(&[Tensor]) -> Vec<Tensor>,
) -> Result<Function, TraceError> {
    run_trace(
        name,
        example,
        |gen, params| {
            let inputs: Vec<Tensor> = params
                .iter()
                .zip(example)
                .map(|(&v, x)| Tensor::traced(x.clone(), Some((gen, v))))
                .collect();
            f(&inputs)
        },
        |ctx, outputs| {
            let mut vals = Vec::with_capacity(outputs.len());
            for t in outputs {
                if let Some(p) = &t.poison {
                    ctx.fail((**p).clone());
                    return None;
                }
                vals.push(ctx.known_value(t.node, &t.val)?);
            }
            Some(vals)
        },
    )
}
