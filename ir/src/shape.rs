//! Shape rules: the result type of every tensor op, or an error naming the shapes.
//!
//! These are pure functions over [`Type`]; the op list's typing (`Op::result_types`), the
//! verifier, the builder and the tracer all call them, so one rule decides what a
//! program means. They guarantee:
//!
//! - a result is always a valid type: rank `0..=MAX_RANK` (rank 0 is the scalar
//!   [`Type::Scalar`]), every dimension `1..=u32::MAX` (zero-size dimensions do not
//!   exist in jitad; see [`crate::layout`]);
//! - every error names the offending types as they print (`f64[3,4]`), and the op;
//! - no arithmetic overflows (element counts are compared as `u128`).
//!
//! Conventions (NumPy's unless said otherwise):
//! - **Broadcasting** aligns shapes at their trailing axes; two dimensions agree when
//!   equal or when one is 1; a scalar broadcasts to anything. Operands of one op share
//!   one element type (no implicit promotion).
//! - **Reductions** take a list of distinct axes, in any order, and keep no reduced axis;
//!   reducing every axis gives a scalar; an empty list is the identity.
//! - **Permutations** follow NumPy's `transpose`: result axis `i` is operand axis
//!   `perm[i]`.
//! - **`matmul`** contracts the last axis of `a` with the first non-batch axis of `b`:
//!   `[m,k]×[k,n]`, `[m,k]×[k]`, `[k]×[k,n]`, `[b,m,k]×[b,k,n]`, `[b,m,k]×[k,n]`.
//!   Vector·vector is `dot`, not `matmul`, so each product has one spelling.
//!
//! For automatic differentiation, [`sum_back`] says how an adjoint of a broadcast result
//! is summed back to its operand ("broadcasting's sum-back lives in one helper"),
//! [`keep_dims`] how a reduced adjoint is reshaped before it is broadcast back, and
//! [`inverse_permutation`] gives `transpose`'s transpose.

use crate::types::{ScalarType, Shape, Type, MAX_RANK};

/// Why a tensor op's operand types were rejected. Messages name the op and the types.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// Two operands whose shapes do not broadcast together.
    #[error("`{op}`: cannot broadcast {a} with {b}")]
    Broadcast {
        /// Op text name.
        op: &'static str,
        /// One operand type.
        a: Type,
        /// The other.
        b: Type,
    },
    /// An operand that does not broadcast to a given target type.
    #[error("`{op}`: cannot broadcast {from} to {to}")]
    BroadcastTo {
        /// Op text name.
        op: &'static str,
        /// The operand type.
        from: Type,
        /// The target type.
        to: Type,
    },
    /// Operands (or operand and target) with different element types.
    #[error("`{op}`: element types of {a} and {b} differ")]
    ElementMismatch {
        /// Op text name.
        op: &'static str,
        /// One type.
        a: Type,
        /// The other.
        b: Type,
    },
    /// An operand whose element type or rank the op does not accept.
    #[error("`{op}`: operand {index} has type {got}, expected {expected}")]
    Operand {
        /// Op text name.
        op: &'static str,
        /// Operand position (0-based).
        index: usize,
        /// Its type.
        got: Type,
        /// What was expected, in words.
        expected: &'static str,
    },
    /// An axis not below the operand's rank.
    #[error("`{op}`: axis {axis} is out of range for {ty} (rank {rank})", rank = rank(*.ty))]
    AxisOutOfRange {
        /// Op text name.
        op: &'static str,
        /// The axis.
        axis: usize,
        /// The operand type.
        ty: Type,
    },
    /// An axis listed twice.
    #[error("`{op}`: axis {axis} is listed twice for {ty}")]
    DuplicateAxis {
        /// Op text name.
        op: &'static str,
        /// The axis.
        axis: usize,
        /// The operand type.
        ty: Type,
    },
    /// A list of axes that is not a permutation of the operand's axes.
    #[error("`transpose`: {perm:?} is not a permutation of the {rank} axes of {ty}", rank = rank(*.ty))]
    Permutation {
        /// The permutation given.
        perm: Vec<usize>,
        /// The operand type.
        ty: Type,
    },
    /// Operands of `matmul` or `dot` whose shapes do not multiply.
    #[error("`{op}`: cannot multiply {a} by {b} ({why})")]
    Contraction {
        /// Op text name.
        op: &'static str,
        /// Left operand type.
        a: Type,
        /// Right operand type.
        b: Type,
        /// Which dimensions disagree, in words.
        why: String,
    },
    /// A reshape that changes the element count.
    #[error("`reshape`: {from} has {from_len} elements but {to} has {to_len}", from_len = count(*.from), to_len = count(*.to))]
    Reshape {
        /// The operand type.
        from: Type,
        /// The target type.
        to: Type,
    },
    /// A list of per-axis items (slice ranges, pad widths) of the wrong length.
    #[error("`{op}`: {got} per-axis entries given for {ty} (rank {rank})", rank = rank(*.ty))]
    AxisCount {
        /// Op text name.
        op: &'static str,
        /// Entries given.
        got: usize,
        /// The operand type.
        ty: Type,
    },
    /// A slice range that is empty or out of bounds, or has step 0.
    #[error("`slice`: range {range} is empty or out of bounds for axis {axis} of {ty}")]
    SliceRange {
        /// The range as written.
        range: SliceRange,
        /// The axis.
        axis: usize,
        /// The operand type.
        ty: Type,
    },
    /// Operands of `concat` that differ off the concatenation axis.
    #[error("`concat`: cannot concatenate {a} with {b} along axis {axis}")]
    Concat {
        /// One operand type.
        a: Type,
        /// The other.
        b: Type,
        /// The concatenation axis.
        axis: usize,
    },
    /// An `insert` whose value is not one row of the tensor.
    #[error("`insert`: cannot insert {value} into {x}, whose rows are {row}")]
    Row {
        /// The inserted value's type.
        value: Type,
        /// The tensor's type.
        x: Type,
        /// The type of one row (element) of the tensor.
        row: Type,
    },
    /// An op given no operands where it needs at least one.
    #[error("`{op}` needs at least one operand")]
    NoOperands {
        /// Op text name.
        op: &'static str,
    },
    /// A result with a dimension of zero, above `u32::MAX`, or a rank above the maximum.
    #[error("`{op}`: the result shape {dims:?} of {ty} is not representable (rank ≤ {MAX_RANK}, dimensions 1..=2^32-1)")]
    Unrepresentable {
        /// Op text name.
        op: &'static str,
        /// The operand type the result derives from.
        ty: Type,
        /// The dimensions the result would have.
        dims: Vec<u64>,
    },
}

/// The dimensions of a type as an owned small array and its rank (rank 0 for scalars).
pub fn dims_of(ty: Type) -> ([u32; MAX_RANK], usize) {
    let mut out = [0u32; MAX_RANK];
    match ty {
        Type::Scalar(_) => (out, 0),
        Type::Tensor(_, s) => {
            out[..s.rank()].copy_from_slice(s.dims());
            (out, s.rank())
        }
    }
}

/// The rank of a type (0 for scalars).
pub fn rank(ty: Type) -> usize {
    match ty {
        Type::Scalar(_) => 0,
        Type::Tensor(_, s) => s.rank(),
    }
}

/// The element count of a type, exactly (1 for scalars).
pub fn count(ty: Type) -> u128 {
    let (d, r) = dims_of(ty);
    d[..r].iter().map(|&x| u128::from(x)).product()
}

/// Builds the type with element type `elem` and dimensions `dims` (a scalar for no
/// dimensions); `op` and `from` name the error's origin.
fn make(op: &'static str, from: Type, elem: ScalarType, dims: &[u64]) -> Result<Type, ShapeError> {
    if dims.is_empty() {
        return Ok(Type::Scalar(elem));
    }
    let bad = || ShapeError::Unrepresentable {
        op,
        ty: from,
        dims: dims.to_vec(),
    };
    if dims.iter().any(|&d| d == 0 || d > u64::from(u32::MAX)) {
        return Err(bad());
    }
    let ds: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    Shape::new(&ds)
        .map(|s| Type::Tensor(elem, s))
        .ok_or_else(bad)
}

fn dims_u64(ty: Type) -> Vec<u64> {
    let (d, r) = dims_of(ty);
    d[..r].iter().map(|&x| u64::from(x)).collect()
}

/// Checks that every operand has the element type of the first.
fn same_elem(op: &'static str, tys: &[Type]) -> Result<ScalarType, ShapeError> {
    let first = *tys.first().ok_or(ShapeError::NoOperands { op })?;
    for &t in &tys[1..] {
        if t.elem() != first.elem() {
            return Err(ShapeError::ElementMismatch { op, a: first, b: t });
        }
    }
    Ok(first.elem())
}

/// Checks a list of axes against `ty`: each below the rank, none repeated.
fn check_axes(op: &'static str, ty: Type, axes: &[usize]) -> Result<u32, ShapeError> {
    let r = rank(ty);
    let mut seen = 0u32; // bit i set when axis i is listed (rank ≤ 4)
    for &axis in axes {
        if axis >= r {
            return Err(ShapeError::AxisOutOfRange { op, axis, ty });
        }
        if seen & (1 << axis) != 0 {
            return Err(ShapeError::DuplicateAxis { op, axis, ty });
        }
        seen |= 1 << axis;
    }
    Ok(seen)
}

/// The broadcast dimensions of two dimension lists, or `None` when they disagree.
fn broadcast_dims(a: &[u64], b: &[u64]) -> Option<Vec<u64>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for (i, o) in out.iter_mut().enumerate() {
        // Axis i of the result, counted from the left; operands are right-aligned.
        let da = (i + a.len()).checked_sub(r).map_or(1, |j| a[j]);
        let db = (i + b.len()).checked_sub(r).map_or(1, |j| b[j]);
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// The type of `op` applied elementwise to `operands` with NumPy broadcasting: one
/// element type for all, the broadcast shape (a scalar when all are scalars). The
/// op-specific element rules (floats only, numeric only) stay with the op list.
///
/// ```
/// # use jitad_ir::{shape, Type, ScalarType, Shape};
/// let t = |d: &[usize]| Type::Tensor(ScalarType::F64, Shape::new(d).unwrap());
/// assert_eq!(shape::elementwise("add", &[t(&[3, 1]), t(&[4])]), Ok(t(&[3, 4])));
/// assert_eq!(shape::elementwise("mul", &[Type::F64, t(&[2])]), Ok(t(&[2])));
/// let e = shape::elementwise("add", &[t(&[3, 4]), t(&[5])]).unwrap_err();
/// assert_eq!(e.to_string(), "`add`: cannot broadcast f64[3,4] with f64[5]");
/// ```
pub fn elementwise(op: &'static str, operands: &[Type]) -> Result<Type, ShapeError> {
    let elem = same_elem(op, operands)?;
    broadcast_all(op, operands, elem)
}

/// Broadcasts the shapes of `operands` (element types ignored) to a type of `elem`.
fn broadcast_all(
    op: &'static str,
    operands: &[Type],
    elem: ScalarType,
) -> Result<Type, ShapeError> {
    let first = *operands.first().ok_or(ShapeError::NoOperands { op })?;
    let mut acc = dims_u64(first);
    let mut acc_ty = first;
    for &t in &operands[1..] {
        acc = broadcast_dims(&acc, &dims_u64(t)).ok_or(ShapeError::Broadcast {
            op,
            a: acc_ty,
            b: t,
        })?;
        // Name the broadcast-so-far type in later errors (it is always representable:
        // each dimension is one of the operands').
        acc_ty = make(op, t, acc_ty.elem(), &acc)?;
    }
    make(op, first, elem, &acc)
}

/// A comparison (`lt le gt ge eq ne`): operands of one element type, broadcast; the
/// result has `bool` elements.
pub fn compare(op: &'static str, a: Type, b: Type) -> Result<Type, ShapeError> {
    same_elem(op, &[a, b])?;
    broadcast_all(op, &[a, b], ScalarType::Bool)
}

/// `select c, a, b`: `c` has `bool` elements, `a` and `b` one element type; the three
/// shapes broadcast together; the result has the element type of `a`.
pub fn select(cond: Type, a: Type, b: Type) -> Result<Type, ShapeError> {
    const OP: &str = "select";
    if cond.elem() != ScalarType::Bool {
        return Err(ShapeError::Operand {
            op: OP,
            index: 0,
            got: cond,
            expected: "bool elements",
        });
    }
    let elem = same_elem(OP, &[a, b])?;
    broadcast_all(OP, &[cond, a, b], elem)
}

/// `fill v : T`: the type `T`, whose element type must be the constant's.
pub fn fill(value: ScalarType, ty: Type) -> Result<Type, ShapeError> {
    if ty.elem() != value {
        return Err(ShapeError::ElementMismatch {
            op: "fill",
            a: Type::Scalar(value),
            b: ty,
        });
    }
    Ok(ty)
}

/// True when a value of type `from` broadcasts to the shape of `to` (element types
/// ignored): NumPy's rule with the result fixed to `to`.
pub fn broadcasts_to(from: Type, to: Type) -> bool {
    let (f, t) = (dims_u64(from), dims_u64(to));
    broadcast_dims(&f, &t).is_some_and(|d| d == t)
}

/// `broadcast x : T`: NumPy broadcasting made explicit. `x` must broadcast to `T`,
/// and have its element type.
pub fn broadcast_to(x: Type, target: Type) -> Result<Type, ShapeError> {
    const OP: &str = "broadcast";
    if x.elem() != target.elem() {
        return Err(ShapeError::ElementMismatch {
            op: OP,
            a: x,
            b: target,
        });
    }
    if !broadcasts_to(x, target) {
        return Err(ShapeError::BroadcastTo {
            op: OP,
            from: x,
            to: target,
        });
    }
    Ok(target)
}

/// `iota : T, axis a`: a tensor whose element at index `i` is `i[a]` (as the numeric
/// element type of `T`).
pub fn iota(ty: Type, axis: usize) -> Result<Type, ShapeError> {
    const OP: &str = "iota";
    if !ty.elem().is_numeric() || ty.scalar().is_some() {
        return Err(ShapeError::Operand {
            op: OP,
            index: 0,
            got: ty,
            expected: "a tensor of f64, f32 or i64",
        });
    }
    check_axes(OP, ty, &[axis])?;
    Ok(ty)
}

/// The reductions over axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// Σ; numeric elements.
    Sum,
    /// IEEE 754-2019 `maximum` folded; numeric elements. Its adjoint is split evenly
    /// among the elements equal to the result (see [`crate::kernels`]' tie rule).
    Max,
    /// IEEE 754-2019 `minimum` folded; numeric elements; the same tie rule as `Max`.
    Min,
    /// Σ / n; float elements.
    Mean,
    /// log Σ exp, max-shifted; float elements.
    LogSumExp,
}

impl Reduction {
    /// Every reduction, in printing order.
    pub const ALL: [Reduction; 5] = [Self::Sum, Self::Max, Self::Min, Self::Mean, Self::LogSumExp];

    /// The text name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sum => "sum",
            Self::Max => "max",
            Self::Min => "min",
            Self::Mean => "mean",
            Self::LogSumExp => "logsumexp",
        }
    }

    /// True when the reduction needs float elements (`mean`, `logsumexp`).
    pub fn needs_float(self) -> bool {
        match self {
            Self::Sum | Self::Max | Self::Min => false,
            Self::Mean | Self::LogSumExp => true,
        }
    }
}

/// `sum/max/min/mean/logsumexp x, axes [...]`: the operand's type without the reduced
/// axes (a scalar when all are reduced). Axes must be distinct and below the rank.
pub fn reduce(red: Reduction, x: Type, axes: &[usize]) -> Result<Type, ShapeError> {
    let op = red.name();
    let ok = if red.needs_float() {
        x.elem().is_float()
    } else {
        x.elem().is_numeric()
    };
    if !ok {
        return Err(ShapeError::Operand {
            op,
            index: 0,
            got: x,
            expected: if red.needs_float() {
                "f64 or f32 elements"
            } else {
                "f64, f32 or i64 elements"
            },
        });
    }
    let mask = check_axes(op, x, axes)?;
    let kept: Vec<u64> = dims_u64(x)
        .into_iter()
        .enumerate()
        .filter(|&(i, _)| mask & (1 << i) == 0)
        .map(|(_, d)| d)
        .collect();
    make(op, x, x.elem(), &kept)
}

/// The type of a reduction's result with each reduced axis kept as a 1: the reshape
/// that lets the result (or its adjoint) broadcast back against `x`. For AD of every
/// reduction: `broadcast(reshape(ȳ, keep_dims(x, axes)), x)`.
pub fn keep_dims(x: Type, axes: &[usize]) -> Result<Type, ShapeError> {
    const OP: &str = "keep_dims";
    let mask = check_axes(OP, x, axes)?;
    let d: Vec<u64> = dims_u64(x)
        .into_iter()
        .enumerate()
        .map(|(i, d)| if mask & (1 << i) != 0 { 1 } else { d })
        .collect();
    make(OP, x, x.elem(), &d)
}

/// How to sum an adjoint of a broadcast result back to one operand's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SumBack {
    /// Axes of the result to `sum` over (ascending; empty when nothing was broadcast).
    pub axes: Vec<usize>,
    /// The type the sum has (`reduce(Sum, result, axes)`).
    pub summed: Type,
    /// The reshape that brings the sum to the operand's type, when `summed` differs
    /// from it (operand axes of size 1 that were stretched, which the sum dropped).
    pub reshape: Option<Type>,
}

impl SumBack {
    /// True when the adjoint passes through unchanged (the operand was not broadcast).
    pub fn is_identity(&self) -> bool {
        self.axes.is_empty() && self.reshape.is_none()
    }
}

/// Broadcasting's transpose: for an `operand` broadcast to `result`, the axes of
/// `result` to sum over and the reshape that follows. This is the adjoint of
/// `broadcast` and of every implicit broadcast in an elementwise op.
///
/// ```
/// # use jitad_ir::{shape, Type, ScalarType, Shape};
/// let t = |d: &[usize]| Type::Tensor(ScalarType::F64, Shape::new(d).unwrap());
/// let sb = shape::sum_back(t(&[3, 1]), t(&[2, 3, 4])).unwrap();
/// assert_eq!(sb.axes, vec![0, 2]);
/// assert_eq!(sb.summed, t(&[3]));
/// assert_eq!(sb.reshape, Some(t(&[3, 1])));
/// ```
pub fn sum_back(operand: Type, result: Type) -> Result<SumBack, ShapeError> {
    if !broadcasts_to(operand, result) {
        return Err(ShapeError::BroadcastTo {
            op: "sum_back",
            from: operand,
            to: result,
        });
    }
    let (o, r) = (dims_u64(operand), dims_u64(result));
    let lead = r.len() - o.len();
    let axes: Vec<usize> = (0..r.len())
        .filter(|&i| i < lead || (o[i - lead] == 1 && r[i] != 1))
        .collect();
    let summed = reduce_shape_only(result, &axes)?;
    let reshape = (summed != operand.elem_as(summed)).then_some(operand.elem_as(summed));
    Ok(SumBack {
        axes,
        summed,
        reshape,
    })
}

/// The type `result` has after summing `axes`, whatever its element type.
fn reduce_shape_only(result: Type, axes: &[usize]) -> Result<Type, ShapeError> {
    let mask = check_axes("sum", result, axes)?;
    let kept: Vec<u64> = dims_u64(result)
        .into_iter()
        .enumerate()
        .filter(|&(i, _)| mask & (1 << i) == 0)
        .map(|(_, d)| d)
        .collect();
    make("sum", result, result.elem(), &kept)
}

/// A type's shape with another type's element type.
trait ElemAs {
    fn elem_as(self, other: Type) -> Type;
}

impl ElemAs for Type {
    fn elem_as(self, other: Type) -> Type {
        match self {
            Type::Scalar(_) => Type::Scalar(other.elem()),
            Type::Tensor(_, s) => Type::Tensor(other.elem(), s),
        }
    }
}

/// What a `matmul` computes, in the terms a GEMM takes: `batch` independent products
/// of an `m×k` by a `k×n` matrix, all row-major. A vector operand is a matrix with one
/// row (on the left) or one column (on the right); a 2-D right operand of a batched
/// product is shared by every batch (`b_batch_stride` 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulDims {
    /// Number of products (1 when unbatched).
    pub batch: usize,
    /// Rows of each left matrix and of each result.
    pub m: usize,
    /// The contracted dimension.
    pub k: usize,
    /// Columns of each right matrix and of each result.
    pub n: usize,
    /// Elements between consecutive left matrices (`m·k`, or 0 when unbatched).
    pub a_batch_stride: usize,
    /// Elements between consecutive right matrices (`k·n`, or 0 when shared).
    pub b_batch_stride: usize,
}

/// `matmul a, b`: see the module docs for the accepted ranks. Returns the result type
/// and the GEMM dimensions the kernels use.
pub fn matmul_dims(a: Type, b: Type) -> Result<(Type, MatmulDims), ShapeError> {
    const OP: &str = "matmul";
    let elem = same_elem(OP, &[a, b])?;
    if !elem.is_float() {
        return Err(ShapeError::Operand {
            op: OP,
            index: 0,
            got: a,
            expected: "f64 or f32 elements",
        });
    }
    let (ad, bd) = (dims_u64(a), dims_u64(b));
    let err = |why: String| ShapeError::Contraction { op: OP, a, b, why };
    let inner = |ka: u64, kb: u64| {
        if ka == kb {
            Ok(())
        } else {
            Err(err(format!("inner dimensions {ka} and {kb} differ")))
        }
    };
    // (batch, m, k, n, a batched, b batched, result dims)
    let (batch, m, k, n, bb, out): (u64, u64, u64, u64, bool, Vec<u64>) =
        match (ad.as_slice(), bd.as_slice()) {
            (&[m, ka], &[kb, n]) => {
                inner(ka, kb)?;
                (1, m, ka, n, false, vec![m, n])
            }
            (&[m, ka], &[kb]) => {
                inner(ka, kb)?;
                (1, m, ka, 1, false, vec![m])
            }
            (&[ka], &[kb, n]) => {
                inner(ka, kb)?;
                (1, 1, ka, n, false, vec![n])
            }
            (&[ba, m, ka], &[kb, n]) => {
                inner(ka, kb)?;
                (ba, m, ka, n, false, vec![ba, m, n])
            }
            (&[ba, m, ka], &[bb, kb, n]) => {
                if ba != bb {
                    return Err(err(format!("batch dimensions {ba} and {bb} differ")));
                }
                inner(ka, kb)?;
                (ba, m, ka, n, true, vec![ba, m, n])
            }
            (&[_], &[_]) => return Err(err("vector·vector is `dot`".into())),
            _ => {
                return Err(err(
                    "expected [m,k]×[k,n], [m,k]×[k], [k]×[k,n], [b,m,k]×[k,n] or [b,m,k]×[b,k,n]"
                        .into(),
                ))
            }
        };
    let ty = make(OP, a, elem, &out)?;
    // Every factor is a dimension of a representable operand, so the products below
    // are at most a (valid) operand's element count.
    let dims = MatmulDims {
        batch: batch as usize,
        m: m as usize,
        k: k as usize,
        n: n as usize,
        a_batch_stride: if batch > 1 { (m * k) as usize } else { 0 },
        b_batch_stride: if bb && batch > 1 { (k * n) as usize } else { 0 },
    };
    Ok((ty, dims))
}

/// `matmul a, b`: the result type (see [`matmul_dims`]).
pub fn matmul(a: Type, b: Type) -> Result<Type, ShapeError> {
    matmul_dims(a, b).map(|(t, _)| t)
}

/// `dot a, b`: two float vectors of one length and element type; the scalar Σ aᵢbᵢ.
pub fn dot(a: Type, b: Type) -> Result<Type, ShapeError> {
    const OP: &str = "dot";
    let elem = same_elem(OP, &[a, b])?;
    for (index, t) in [a, b].into_iter().enumerate() {
        if rank(t) != 1 || !elem.is_float() {
            return Err(ShapeError::Operand {
                op: OP,
                index,
                got: t,
                expected: "a vector of f64 or f32",
            });
        }
    }
    let (ad, bd) = (dims_u64(a), dims_u64(b));
    if ad != bd {
        return Err(ShapeError::Contraction {
            op: OP,
            a,
            b,
            why: format!("lengths {} and {} differ", ad[0], bd[0]),
        });
    }
    Ok(Type::Scalar(elem))
}

/// `transpose x, perm [...]`: result axis `i` is axis `perm[i]` of `x`; `perm` must be
/// a permutation of `0..rank`.
pub fn transpose(x: Type, perm: &[usize]) -> Result<Type, ShapeError> {
    let bad = || ShapeError::Permutation {
        perm: perm.to_vec(),
        ty: x,
    };
    if perm.len() != rank(x) {
        return Err(bad());
    }
    check_axes("transpose", x, perm).map_err(|_| bad())?;
    let d = dims_u64(x);
    let out: Vec<u64> = perm.iter().map(|&p| d[p]).collect();
    make("transpose", x, x.elem(), &out)
}

/// The inverse of a permutation (the permutation `transpose`'s adjoint applies):
/// `inv[perm[i]] = i`. `None` when `perm` is not a permutation of `0..perm.len()`.
pub fn inverse_permutation(perm: &[usize]) -> Option<Vec<usize>> {
    let mut inv = vec![usize::MAX; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        let slot = inv.get_mut(p)?;
        if *slot != usize::MAX {
            return None;
        }
        *slot = i;
    }
    Some(inv)
}

/// `reshape x : T`: `T` has `x`'s element type and element count. Row-major order is
/// kept, so a reshape moves no data.
pub fn reshape(x: Type, target: Type) -> Result<Type, ShapeError> {
    if x.elem() != target.elem() {
        return Err(ShapeError::ElementMismatch {
            op: "reshape",
            a: x,
            b: target,
        });
    }
    if count(x) != count(target) {
        return Err(ShapeError::Reshape {
            from: x,
            to: target,
        });
    }
    Ok(target)
}

/// One axis of a static `slice`: indices `start, start+step, …` below `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SliceRange {
    /// First index taken.
    pub start: u32,
    /// One past the last index that may be taken.
    pub end: u32,
    /// Distance between taken indices (≥ 1).
    pub step: u32,
}

impl SliceRange {
    /// The range `start:end` with step 1.
    pub fn new(start: u32, end: u32) -> Self {
        Self {
            start,
            end,
            step: 1,
        }
    }

    /// The number of indices taken (0 when empty or when the step is 0).
    pub fn len(&self) -> u32 {
        if self.step == 0 || self.end <= self.start {
            0
        } else {
            (self.end - self.start).div_ceil(self.step)
        }
    }

    /// True when the range takes no index.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for SliceRange {
    /// `start:end`, or `start:end:step` when the step is not 1 (the text format's form).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.step == 1 {
            write!(f, "{}:{}", self.start, self.end)
        } else {
            write!(f, "{}:{}:{}", self.start, self.end, self.step)
        }
    }
}

/// `slice x [r0, r1, ...]`: one non-empty in-bounds range per axis; result axis `i` has
/// `ranges[i].len()` entries.
pub fn slice(x: Type, ranges: &[SliceRange]) -> Result<Type, ShapeError> {
    const OP: &str = "slice";
    if ranges.len() != rank(x) || ranges.is_empty() {
        return Err(ShapeError::AxisCount {
            op: OP,
            got: ranges.len(),
            ty: x,
        });
    }
    let d = dims_u64(x);
    let mut out = Vec::with_capacity(d.len());
    for (axis, (&r, &dim)) in ranges.iter().zip(&d).enumerate() {
        if r.is_empty() || u64::from(r.end) > dim {
            return Err(ShapeError::SliceRange {
                range: r,
                axis,
                ty: x,
            });
        }
        out.push(u64::from(r.len()));
    }
    make(OP, x, x.elem(), &out)
}

/// `concat a, b, ..., axis n`: tensors of one element type and rank whose dimensions
/// agree except along `axis`, where they add up.
pub fn concat(operands: &[Type], axis: usize) -> Result<Type, ShapeError> {
    const OP: &str = "concat";
    let elem = same_elem(OP, operands)?;
    let first = operands[0];
    if rank(first) == 0 {
        return Err(ShapeError::Operand {
            op: OP,
            index: 0,
            got: first,
            expected: "a tensor",
        });
    }
    check_axes(OP, first, &[axis])?;
    let mut out = dims_u64(first);
    for &t in &operands[1..] {
        let d = dims_u64(t);
        let agree = d.len() == out.len()
            && d.iter()
                .zip(&out)
                .enumerate()
                .all(|(i, (x, y))| i == axis || x == y);
        if !agree {
            return Err(ShapeError::Concat {
                a: first,
                b: t,
                axis,
            });
        }
        out[axis] += d[axis];
    }
    make(OP, first, elem, &out)
}

/// `pad x, v, [lo:hi, ...]`: `lo` copies of the scalar `v` before and `hi` after each
/// axis; `v` has `x`'s element type.
pub fn pad(x: Type, value: Type, widths: &[(u32, u32)]) -> Result<Type, ShapeError> {
    const OP: &str = "pad";
    if value.scalar().is_none() {
        return Err(ShapeError::Operand {
            op: OP,
            index: 1,
            got: value,
            expected: "a scalar pad value",
        });
    }
    same_elem(OP, &[x, value])?;
    if widths.len() != rank(x) || widths.is_empty() {
        return Err(ShapeError::AxisCount {
            op: OP,
            got: widths.len(),
            ty: x,
        });
    }
    let out: Vec<u64> = dims_u64(x)
        .iter()
        .zip(widths)
        .map(|(&d, &(lo, hi))| d + u64::from(lo) + u64::from(hi))
        .collect();
    make(OP, x, x.elem(), &out)
}

/// `extract x [i]`: the element (of a vector) or the row (of a higher-rank tensor) at
/// the dynamic `i64` index `i` on the leading axis. Out-of-range indices are a
/// run-time error, not a typing one.
pub fn extract(x: Type, index: Type) -> Result<Type, ShapeError> {
    const OP: &str = "extract";
    if rank(x) == 0 {
        return Err(ShapeError::Operand {
            op: OP,
            index: 0,
            got: x,
            expected: "a tensor",
        });
    }
    if index != Type::I64 {
        return Err(ShapeError::Operand {
            op: OP,
            index: 1,
            got: index,
            expected: "an i64 index",
        });
    }
    make(OP, x, x.elem(), &dims_u64(x)[1..])
}

/// `insert v into x [i]`: `x` with its row (or element) `i` replaced by `v`, whose type
/// is [`extract`]'s result type for `x`.
pub fn insert(value: Type, x: Type, index: Type) -> Result<Type, ShapeError> {
    let row = extract(x, index).map_err(|e| match e {
        // Renumber: in `insert` the tensor is operand 1 and the index operand 2.
        ShapeError::Operand {
            index: i,
            got,
            expected,
            ..
        } => ShapeError::Operand {
            op: "insert",
            index: i + 1,
            got,
            expected,
        },
        other => other,
    })?;
    if value != row {
        return Err(ShapeError::Row { value, x, row });
    }
    Ok(x)
}
