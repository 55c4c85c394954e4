//! The calculus of the tensor ops: every one is linear in its float operands, or (the
//! `max`/`min`/`logsumexp` reductions) linearised into a weighted sum at the primal
//! point, so each has a tangent (the op on the tangents) and a named transpose.
//!
//! | op | tangent | transpose (ȳ → operand adjoints) |
//! |----|---------|-----------------------------------|
//! | `broadcast x : T` | `broadcast dx : T` | `ȳ`, summed back by [`lin::accumulate_into`] (broadcasting's one sum-back) |
//! | `sum x, axes A` | `sum dx, axes A` | `reshape(ȳ, keep_dims)`, lazily broadcast (below) |
//! | `mean x, axes A` | `mean dx, axes A` | the same divided by the reduced count n |
//! | `reduce_max` / `reduce_min x, axes A` | `sum(dx·w, A)`, `w = [x = y] / #{x = y}` | `reshape(ȳ, keep_dims)·w` |
//! | `logsumexp x, axes A` | `sum(dx·w, A)`, `w = exp(x − y)` (the softmax) | `reshape(ȳ, keep_dims)·w` |
//! | `transpose x, perm P` | `transpose dx, P` | `transpose ȳ, P⁻¹` |
//! | `reshape x : T` | `reshape dx : T` | `reshape ȳ : type(x)` |
//! | `slice x [r…]` | `slice dx [r…]` | ȳ scattered back: `pad` with zeros (strided axes through a reshape, below) |
//! | `extract x [i]` | `extract dx [i]` | `insert ȳ into zeros [i]` |
//! | `insert v into x [i]` | `insert dv into dx [i]` | `v̄ = extract ȳ [i]`, `x̄ = insert 0 into ȳ [i]` |
//! | `concat a, b, …, axis n` | `concat da, db, …` | slices of ȳ along `n` |
//! | `pad x, v [lo:hi…]` | `pad dx, dv` | `x̄ = slice ȳ`, `v̄ = Σ ȳ·pad(0, 1)` (the padded cells) |
//! | `matmul a, b` | `da·b + a·db` (matmuls) | `ā = ȳ·bᵀ`, `b̄ = aᵀ·ȳ`, per rank case (below) |
//! | `dot a, b` | `dot(da, b) + dot(a, db)` | `ā = ȳ·b`, `b̄ = ȳ·a` |
//! | `fill`, `iota` | none | none |
//!
//! Adjoints are *lazily broadcast* (`lin::accumulate_into`): the transpose of a
//! reduction leaves its cotangent in the reduced shape with 1s for the reduced axes (a
//! scalar stays a scalar), and the elementwise ops that consume it broadcast it; an
//! explicit `broadcast` is emitted only where a value of the exact type must exist
//! (an output, a call argument, before `transpose`/`reshape`/`matmul`/...). So the
//! backward pass of `mean(sum(x·y, axes [1]))` is `0.125·y`, not two broadcasts.
//!
//! Tie rule of `reduce_max`/`reduce_min` (JAX's `_reduce_chooser_jvp_rule`): the
//! derivative is shared evenly among the elements equal to the result, so forward and
//! reverse agree and `max` of equal elements is symmetric. Where a reduced slice holds a
//! NaN the result is NaN, no element equals it, and the derivative is NaN (0/0), as the
//! value is. `logsumexp` of a slice that is all −∞ has the weight `exp(−∞ − (−∞))`, NaN.
//!
//! `matmul`'s transposes, for the shapes it accepts (ȳ has the result's shape):
//!
//! | a × b | ā | b̄ |
//! |-------|---|---|
//! | `[m,k]×[k,n]` | `ȳ·bᵀ` | `aᵀ·ȳ` |
//! | `[m,k]×[k]` | `reshape(ȳ, [m,1])·b` (an outer product, elementwise) | `ȳ·a` (vector × matrix) |
//! | `[k]×[k,n]` | `b·ȳ` (matrix × vector) | `reshape(a, [k,1])·ȳ` |
//! | `[B,m,k]×[k,n]` | `ȳ·bᵀ` | `reshape(a, [Bm,k])ᵀ·reshape(ȳ, [Bm,n])` (the batch summed by the GEMM) |
//! | `[B,m,k]×[B,k,n]` | `ȳ·transpose(b, [0,2,1])` | `transpose(a, [0,2,1])·ȳ` |
//!
//! A strided `slice` (step s > 1 on an axis of length D, L entries taken from `start`)
//! transposes without a scatter op: ȳ is viewed as `[pre, L, 1, post]`, padded to
//! `[pre, L, s, post]` (each entry followed by s − 1 zeros), viewed as `[pre, L·s,
//! post]`, and padded (or cut) to `D` with `start` zeros in front. Every step moves or
//! pads data, so the result is exact.

use crate::emit::Emitter;
use crate::error::{AdError, Result};
use crate::lin::{self, Lin, Partial, Term};
use crate::rules::{flows, Rule};
use jitad_ir::op::Axes;
use jitad_ir::shape::{self, Reduction, SliceRange};
use jitad_ir::{Op, ScalarType, Shape, Type, Value};

/// A tensor op as its tangent and transpose see it.
pub(crate) enum TensorLinear {
    /// Linear in operand 0 alone (its other operands, such as `extract`'s index, carry
    /// no derivative): `broadcast`, `sum`, `mean`, `transpose`, `reshape`, `slice`,
    /// `extract`. The tangent is the op on `dx`.
    Unary(Op),
    /// Linear jointly in its float operands: `concat`, `pad`, `insert`. The tangent is
    /// the op on the tangents, a missing one replaced by zeros.
    Joint(Op),
    /// `matmul a, b` (the operands), bilinear; `need` says which sides to keep.
    Matmul {
        /// The left operand.
        a: Value,
        /// The right operand.
        b: Value,
        /// Whether each side carries a derivative.
        need: [bool; 2],
    },
    /// `dot a, b`, bilinear.
    Dot {
        /// The left operand.
        a: Value,
        /// The right operand.
        b: Value,
        /// Whether each side carries a derivative.
        need: [bool; 2],
    },
    /// `y ≈ Σ_axes w·x` at the primal point: the linearisation of `reduce_max`,
    /// `reduce_min` and `logsumexp` (`w` has `x`'s shape).
    Weighted {
        /// The weights, a value of the derived function.
        w: Value,
        /// The reduced axes.
        axes: Axes,
    },
}

fn malformed(em: &Emitter, reason: impl Into<String>) -> AdError {
    AdError::Malformed {
        func: em.f.name.clone(),
        reason: reason.into(),
    }
}

/// `v` with `yb`'s lazy sign and no mask: the transpose of an op linear in its operand
/// commutes with negation, so the sign of a cotangent carries through unchanged.
fn signed(yb: Lin, v: Value) -> Lin {
    Lin {
        val: v,
        neg: yb.neg,
        mask: None,
    }
}

/// The tensor type with element type `elem` and dimensions `dims`.
fn tensor_ty(em: &Emitter, elem: ScalarType, dims: &[usize]) -> Result<Type> {
    Shape::new(dims)
        .map(|s| Type::Tensor(elem, s))
        .ok_or_else(|| malformed(em, format!("no tensor type of shape {dims:?}")))
}

fn dims(ty: Type) -> Vec<usize> {
    let (d, r) = shape::dims_of(ty);
    d[..r].iter().map(|&x| x as usize).collect()
}

fn axes_of(em: &Emitter, axes: &[usize]) -> Result<Axes> {
    Axes::new(axes).ok_or_else(|| malformed(em, format!("axes {axes:?}")))
}

/// `y` (a reduction of a value of type `x_ty` over `axes`) with the reduced axes
/// restored as 1s, so it broadcasts against `x`; a scalar broadcasts as it is.
fn keep(em: &mut Emitter, y: Value, x_ty: Type, axes: &[usize]) -> Result<Value> {
    let ty = em.ty(y);
    if ty.scalar().is_some() {
        return Ok(y);
    }
    let k = shape::keep_dims(x_ty, axes)
        .map_err(|e| malformed(em, format!("a reduction's adjoint: {e}")))?;
    if k == ty {
        Ok(y)
    } else {
        em.ins1(Op::Reshape(k), &[y])
    }
}

/// The rule of tensor op `op` (`Rule::Zero` for `fill`/`iota`).
pub(crate) fn rule(
    em: &mut Emitter,
    op: &Op,
    args: &[Value],
    y: Option<Value>,
    need: &[bool],
) -> Result<Rule> {
    let needs = |i: usize| need.get(i).copied().unwrap_or(false);
    let two = |em: &Emitter| match args {
        &[a, b] => Ok((a, b)),
        _ => Err(malformed(
            em,
            format!("`{}` without two operands", op.name()),
        )),
    };
    let lin = match op {
        Op::Fill(..) | Op::Iota(..) => return Ok(Rule::Zero),
        Op::Broadcast(_)
        | Op::Transpose(_)
        | Op::Reshape(_)
        | Op::Slice(_)
        | Op::Extract
        | Op::Reduce(Reduction::Sum | Reduction::Mean, _) => TensorLinear::Unary(op.clone()),
        Op::Concat(_) | Op::Pad(_) | Op::Insert => TensorLinear::Joint(op.clone()),
        Op::Matmul => {
            let (a, b) = two(em)?;
            TensorLinear::Matmul {
                a,
                b,
                need: [needs(0), needs(1)],
            }
        }
        Op::Dot => {
            let (a, b) = two(em)?;
            TensorLinear::Dot {
                a,
                b,
                need: [needs(0), needs(1)],
            }
        }
        Op::Reduce(red @ (Reduction::Max | Reduction::Min | Reduction::LogSumExp), axes) => {
            let (Some(&x), Some(y)) = (args.first(), y) else {
                return Err(malformed(em, "a reduction without operand or result"));
            };
            let list = axes.to_vec();
            let xt = em.ty(x);
            let yk = keep(em, y, xt, &list)?;
            let w = if *red == Reduction::LogSumExp {
                let d = em.ins1(Op::Sub, &[x, yk])?;
                em.ins1(Op::Exp, &[d])?
            } else {
                let at = em.ins1(Op::Eq, &[x, yk])?;
                let one = em.float(xt, 1.0)?;
                let zero = em.float(xt, 0.0)?;
                let ind = em.ins1(Op::Select, &[at, one, zero])?;
                let cnt = em.ins1(Op::Reduce(Reduction::Sum, *axes), &[ind])?;
                let ck = keep(em, cnt, xt, &list)?;
                em.ins1(Op::Div, &[ind, ck])?
            };
            TensorLinear::Weighted { w, axes: *axes }
        }
        other => {
            return Err(malformed(
                em,
                format!("`{}` is not a tensor op", other.name()),
            ))
        }
    };
    Ok(Rule::Linear(crate::rules::Linear::Tensor(lin)))
}

/// The tangent of a tensor op: the op on the operands' tangents `dargs`.
pub(crate) fn tangent(
    em: &mut Emitter,
    l: &TensorLinear,
    dargs: &[Option<Lin>],
    args: &[Value],
) -> Result<Option<Lin>> {
    let darg = |i: usize| dargs.get(i).copied().flatten();
    match l {
        TensorLinear::Unary(op) => {
            let Some(d) = darg(0) else { return Ok(None) };
            let d = lin::unmasked(em, d)?;
            let mut a = vec![d.val];
            a.extend_from_slice(args.get(1..).unwrap_or(&[]));
            let v = em.ins1(op.clone(), &a)?;
            Ok(Some(Lin {
                val: v,
                neg: d.neg,
                mask: None,
            }))
        }
        TensorLinear::Joint(op) => {
            if !(0..args.len()).any(|i| flows(op, i) && darg(i).is_some()) {
                return Ok(None);
            }
            let mut a = Vec::with_capacity(args.len());
            for (i, &x) in args.iter().enumerate() {
                a.push(if flows(op, i) {
                    lin::value(em, darg(i), x)?
                } else {
                    x
                });
            }
            Ok(Some(Lin::of(em.ins1(op.clone(), &a)?)))
        }
        TensorLinear::Matmul { a, b, .. } | TensorLinear::Dot { a, b, .. } => {
            let op = if matches!(l, TensorLinear::Matmul { .. }) {
                Op::Matmul
            } else {
                Op::Dot
            };
            let mut acc = None;
            if let Some(d) = darg(0) {
                let d = lin::unmasked(em, d)?;
                let v = em.ins1(op.clone(), &[d.val, *b])?;
                let t = Lin { val: v, ..d };
                acc = Some(lin::accumulate_lin(em, acc, t, false)?);
            }
            if let Some(d) = darg(1) {
                let d = lin::unmasked(em, d)?;
                let v = em.ins1(op, &[*a, d.val])?;
                let t = Lin { val: v, ..d };
                acc = Some(lin::accumulate_lin(em, acc, t, false)?);
            }
            Ok(acc)
        }
        TensorLinear::Weighted { w, axes } => {
            let Some(d) = darg(0) else { return Ok(None) };
            let d = lin::unmasked(em, d)?;
            let p = em.ins1(Op::Mul, &[d.val, *w])?;
            let v = em.ins1(Op::Reduce(Reduction::Sum, *axes), &[p])?;
            Ok(Some(Lin { val: v, ..d }))
        }
    }
}

/// The transpose of a tensor op: the contributions of the cotangent `ybar` to the
/// operands' adjoints. Each has its operand's type, except `broadcast`'s, which
/// [`lin::accumulate_into`] sums back.
pub(crate) fn transpose(
    em: &mut Emitter,
    l: &TensorLinear,
    ybar: Lin,
    args: &[Value],
    y: Value,
) -> Result<Vec<(usize, Term)>> {
    let yt = em.ty(y);
    // A reduction's cotangent may stay a scalar (it broadcasts as it is); any other
    // is made exactly the result's type before elements are moved.
    let reduced = |em: &mut Emitter| -> Result<Lin> {
        if em.ty(ybar.val).scalar().is_some() {
            lin::unmasked(em, ybar)
        } else {
            lin::exact(em, ybar, yt)
        }
    };
    let one = Partial::one();
    let x = |em: &Emitter, i: usize| {
        args.get(i)
            .copied()
            .ok_or_else(|| malformed(em, "a tensor op without its operands"))
    };
    match l {
        TensorLinear::Unary(Op::Broadcast(_)) => Ok(vec![(0, lin::term(ybar, &one))]),
        TensorLinear::Unary(op) => {
            let yb = match op {
                Op::Reduce(..) => reduced(em)?,
                _ => lin::exact(em, ybar, yt)?,
            };
            let x0 = x(em, 0)?;
            let xt = em.ty(x0);
            let out = |v: Value| signed(yb, v);
            let t = match op {
                // Left lazily broadcast (`lin::accumulate_into`): the reduced axes
                // come back as 1s, or not at all for a scalar.
                Op::Reduce(Reduction::Sum, axes) => {
                    lin::term(out(keep(em, yb.val, xt, &axes.to_vec())?), &one)
                }
                Op::Reduce(_, axes) => {
                    // mean: the sum's transpose divided by the reduced count.
                    let v = keep(em, yb.val, xt, &axes.to_vec())?;
                    let n = xt.num_elements() / yt.num_elements().max(1);
                    let nv = em.float(xt, n as f64)?;
                    lin::term(out(v), &Partial::ratio(false, &[], nv))
                }
                Op::Transpose(perm) => {
                    let inv = shape::inverse_permutation(&perm.to_vec())
                        .ok_or_else(|| malformed(em, "transpose by a non-permutation"))?;
                    let v = em.ins1(Op::Transpose(axes_of(em, &inv)?), &[yb.val])?;
                    lin::term(out(v), &one)
                }
                Op::Reshape(_) => lin::term(out(em.ins1(Op::Reshape(xt), &[yb.val])?), &one),
                Op::Slice(ranges) => lin::term(out(scatter(em, yb.val, xt, ranges)?), &one),
                Op::Extract => {
                    let z = em.zero_of(xt)?;
                    let i = x(em, 1)?;
                    lin::term(out(em.ins1(Op::Insert, &[yb.val, z, i])?), &one)
                }
                other => {
                    return Err(malformed(
                        em,
                        format!("`{}` is not a unary linear tensor op", other.name()),
                    ))
                }
            };
            Ok(vec![(0, t)])
        }
        TensorLinear::Joint(op) => {
            let yb = lin::exact(em, ybar, yt)?;
            let out = |v: Value| lin::term(signed(yb, v), &Partial::one());
            match op {
                Op::Concat(axis) => {
                    let axis = usize::from(*axis);
                    let full = dims(em.ty(yb.val));
                    let mut off = 0u32;
                    let mut res = Vec::with_capacity(args.len());
                    for (i, &a) in args.iter().enumerate() {
                        let d = dims(em.ty(a));
                        let len = d.get(axis).copied().unwrap_or(0) as u32;
                        let ranges: Vec<SliceRange> = full
                            .iter()
                            .enumerate()
                            .map(|(k, &n)| {
                                if k == axis {
                                    SliceRange::new(off, off + len)
                                } else {
                                    SliceRange::new(0, n as u32)
                                }
                            })
                            .collect();
                        off += len;
                        let v = em.ins1(Op::Slice(ranges), &[yb.val])?;
                        res.push((i, out(v)));
                    }
                    Ok(res)
                }
                Op::Pad(widths) => {
                    let x0 = x(em, 0)?;
                    let xt = em.ty(x0);
                    let ranges: Vec<SliceRange> = dims(xt)
                        .iter()
                        .zip(widths)
                        .map(|(&d, w)| SliceRange::new(w.start, w.start + d as u32))
                        .collect();
                    let xb = em.ins1(Op::Slice(ranges), &[yb.val])?;
                    // The pad value's adjoint: ȳ summed over the padded cells.
                    let z = em.zero_of(xt)?;
                    let one = em.float(xt, 1.0)?;
                    let cells = em.ins1(Op::Pad(widths.clone()), &[z, one])?;
                    let p = em.ins1(Op::Mul, &[yb.val, cells])?;
                    let all: Vec<usize> = (0..shape::rank(em.ty(p))).collect();
                    let vb = em.ins1(Op::Reduce(Reduction::Sum, axes_of(em, &all)?), &[p])?;
                    Ok(vec![(0, out(xb)), (1, out(vb))])
                }
                Op::Insert => {
                    let (v, i) = (x(em, 0)?, x(em, 2)?);
                    let vb = em.ins1(Op::Extract, &[yb.val, i])?;
                    let z = em.zero_like(v)?;
                    let xb = em.ins1(Op::Insert, &[z, yb.val, i])?;
                    Ok(vec![(0, out(vb)), (1, out(xb))])
                }
                other => Err(malformed(
                    em,
                    format!("`{}` is not a joint linear tensor op", other.name()),
                )),
            }
        }
        TensorLinear::Matmul { a, b, need } => {
            let yb = lin::exact(em, ybar, yt)?;
            let (at, bt) = (em.ty(*a), em.ty(*b));
            let (ad, bd) = (dims(at), dims(bt));
            let elem = at.elem();
            let y = yb.val;
            let tr = |em: &mut Emitter, v: Value, perm: &[usize]| -> Result<Value> {
                let p = axes_of(em, perm)?;
                em.ins1(Op::Transpose(p), &[v])
            };
            let (abar, bbar): (Option<Value>, Option<Value>) = match (ad.as_slice(), bd.as_slice())
            {
                (&[_, _], &[_, _]) => (
                    if need[0] {
                        let b_t = tr(em, *b, &[1, 0])?;
                        Some(em.ins1(Op::Matmul, &[y, b_t])?)
                    } else {
                        None
                    },
                    if need[1] {
                        let a_t = tr(em, *a, &[1, 0])?;
                        Some(em.ins1(Op::Matmul, &[a_t, y])?)
                    } else {
                        None
                    },
                ),
                (&[m, _], &[_]) => (
                    if need[0] {
                        let col = tensor_ty(em, elem, &[m, 1])?;
                        let yc = em.ins1(Op::Reshape(col), &[y])?;
                        Some(em.ins1(Op::Mul, &[yc, *b])?)
                    } else {
                        None
                    },
                    if need[1] {
                        Some(em.ins1(Op::Matmul, &[y, *a])?)
                    } else {
                        None
                    },
                ),
                (&[k], &[_, _]) => (
                    if need[0] {
                        Some(em.ins1(Op::Matmul, &[*b, y])?)
                    } else {
                        None
                    },
                    if need[1] {
                        let col = tensor_ty(em, elem, &[k, 1])?;
                        let ac = em.ins1(Op::Reshape(col), &[*a])?;
                        Some(em.ins1(Op::Mul, &[ac, y])?)
                    } else {
                        None
                    },
                ),
                (&[bn, m, k], &[_, n]) => (
                    if need[0] {
                        let b_t = tr(em, *b, &[1, 0])?;
                        Some(em.ins1(Op::Matmul, &[y, b_t])?)
                    } else {
                        None
                    },
                    if need[1] {
                        let a2 = tensor_ty(em, elem, &[bn * m, k])?;
                        let y2 = tensor_ty(em, elem, &[bn * m, n])?;
                        let af = em.ins1(Op::Reshape(a2), &[*a])?;
                        let a_t = tr(em, af, &[1, 0])?;
                        let yf = em.ins1(Op::Reshape(y2), &[y])?;
                        Some(em.ins1(Op::Matmul, &[a_t, yf])?)
                    } else {
                        None
                    },
                ),
                (&[_, _, _], &[_, _, _]) => (
                    if need[0] {
                        let b_t = tr(em, *b, &[0, 2, 1])?;
                        Some(em.ins1(Op::Matmul, &[y, b_t])?)
                    } else {
                        None
                    },
                    if need[1] {
                        let a_t = tr(em, *a, &[0, 2, 1])?;
                        Some(em.ins1(Op::Matmul, &[a_t, y])?)
                    } else {
                        None
                    },
                ),
                _ => return Err(malformed(em, format!("`matmul` of types {at} and {bt}"))),
            };
            let mut res = Vec::with_capacity(2);
            for (i, v) in [(0, abar), (1, bbar)] {
                if let Some(v) = v {
                    res.push((i, lin::term(signed(yb, v), &Partial::one())));
                }
            }
            Ok(res)
        }
        TensorLinear::Dot { a, b, need } => {
            // ȳ is a scalar: the contributions are products, kept lazy like `mul`'s.
            let mut res = Vec::with_capacity(2);
            if need[0] {
                res.push((0, lin::term(ybar, &Partial::of(*b))));
            }
            if need[1] {
                res.push((1, lin::term(ybar, &Partial::of(*a))));
            }
            Ok(res)
        }
        TensorLinear::Weighted { w, axes } => {
            let yb = reduced(em)?;
            let x0 = x(em, 0)?;
            let xt = em.ty(x0);
            let yk = keep(em, yb.val, xt, &axes.to_vec())?;
            Ok(vec![(0, lin::term(signed(yb, yk), &Partial::of(*w)))])
        }
    }
}

/// `slice`'s transpose: `v` (the slice's shape) placed back into zeros of type `x_ty`
/// at the positions `ranges` took.
fn scatter(em: &mut Emitter, v: Value, x_ty: Type, ranges: &[SliceRange]) -> Result<Value> {
    let xd = dims(x_ty);
    let mut cur = v;
    for (axis, r) in ranges.iter().enumerate() {
        if r.step > 1 {
            let d = xd.get(axis).copied().unwrap_or(0);
            cur = strided_axis(em, cur, axis, *r, d)?;
        }
    }
    let mut any = false;
    let mut widths = Vec::with_capacity(ranges.len());
    for (axis, r) in ranges.iter().enumerate() {
        let d = xd.get(axis).copied().unwrap_or(0) as u32;
        if r.step > 1 {
            widths.push(SliceRange::new(0, 0));
        } else {
            let end = r.start + r.len();
            let w = SliceRange::new(r.start, d.saturating_sub(end));
            any |= w.start != 0 || w.end != 0;
            widths.push(w);
        }
    }
    if any {
        let z = em.float(x_ty, 0.0)?;
        cur = em.ins1(Op::Pad(widths), &[cur, z])?;
    }
    Ok(cur)
}

/// One strided axis of `slice`'s transpose (module docs): `v`'s axis `axis` (the `L`
/// entries taken at `r.start + j·r.step`) spread over `d` positions, zeros between.
fn strided_axis(em: &mut Emitter, v: Value, axis: usize, r: SliceRange, d: usize) -> Result<Value> {
    let vt = em.ty(v);
    let elem = vt.elem();
    let vd = dims(vt);
    let l = vd.get(axis).copied().unwrap_or(1);
    let pre: usize = vd[..axis].iter().product();
    let post: usize = vd[axis + 1..].iter().product();
    let (s, start) = (r.step as usize, r.start as usize);
    let zero = em.float(vt, 0.0)?;
    let t4 = tensor_ty(em, elem, &[pre, l, 1, post])?;
    let mut cur = em.ins1(Op::Reshape(t4), &[v])?;
    let w4 = vec![
        SliceRange::new(0, 0),
        SliceRange::new(0, 0),
        SliceRange::new(0, (s - 1) as u32),
        SliceRange::new(0, 0),
    ];
    cur = em.ins1(Op::Pad(w4), &[cur, zero])?;
    let t3 = tensor_ty(em, elem, &[pre, l * s, post])?;
    cur = em.ins1(Op::Reshape(t3), &[cur])?;
    let full = |len: usize| SliceRange::new(0, len as u32);
    if start + l * s > d {
        let keep = d - start;
        cur = em.ins1(Op::Slice(vec![full(pre), full(keep), full(post)]), &[cur])?;
    }
    let have = dims(em.ty(cur))[1];
    let w3 = vec![
        SliceRange::new(0, 0),
        SliceRange::new(start as u32, (d - start - have) as u32),
        SliceRange::new(0, 0),
    ];
    if start != 0 || d != start + have {
        cur = em.ins1(Op::Pad(w3), &[cur, zero])?;
    }
    let mut out = vd.clone();
    out[axis] = d;
    let to = tensor_ty(em, elem, &out)?;
    em.ins1(Op::Reshape(to), &[cur])
}
