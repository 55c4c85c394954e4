//! Constant folding.
//!
//! A pure instruction whose operands are all constants becomes a `const` holding its
//! value, computed by the reference interpreter ([`jitad_ir::interp`]) on a one-op
//! function, so folding agrees bit for bit with evaluation (and with the JIT, which
//! shares the interpreter's `math`). A `select` with a constant condition becomes the
//! chosen operand (broadcast to the result type when the other operand set it).
//! Folding is exact: it never changes a result, including NaN, ±inf and −0.0.
//!
//! Over tensors, a *uniform* tensor (`fill c : T`, or `broadcast` of a constant) stands
//! for its one value: an elementwise op whose operands are all constants or uniform
//! tensors becomes `fill` of the folded scalar (elementwise means every element is the
//! same computation on the same values); `broadcast`, `reshape`, `transpose`, `slice`
//! and `reduce_max`/`reduce_min` of a uniform tensor are uniform of the same value (they
//! only move or choose elements). Sums, means, products and `extract`/`insert` (whose
//! index may be out of range, an error folding must not remove) are left alone.
//!
//! The folded scalar of a tensor result is computed on one-element tensors, not on
//! scalars: tensor `exp`, `log`, `tanh` and `sigmoid` run [`jitad_ir::vmath`]'s kernels
//! while the scalar ops run libm, and the two may differ in the last bits, so the fill
//! must hold what the interpreter computes for every element of the tensor.

use crate::rewrite::{const_of, def_op, Subst};
use jitad_ir::shape::Reduction;
use jitad_ir::tensor::TensorData;
use jitad_ir::{
    interp, Constant, Function, Inst, Op, Shape, Signature, Type, Val, Value, ValueList,
};

/// Folds constant instructions. Returns true if anything changed.
pub fn constfold(f: &mut Function) -> bool {
    let mut subst = Subst::default();
    let mut changed = false;
    for inst in f.insts_in_order() {
        changed |= subst.rewrite_args(f, inst);
        let d = &f.insts[inst];
        if !d.op.is_pure() || d.results.len() != 1 || matches!(d.op, Op::Const(_)) {
            continue;
        }
        if let (Op::Select, &[c, a, b]) = (&d.op, d.args.as_slice()) {
            if let Some(Constant::Bool(c)) = const_of(f, c) {
                let r = d.results[0];
                let chosen = if c { a } else { b };
                let rty = f.ty(r);
                if f.ty(chosen) == rty {
                    subst.replace(f, r, chosen);
                } else {
                    // The other operand set the (broadcast) result type: the chosen
                    // one, broadcast to it, is the same value.
                    let data = &mut f.insts[inst];
                    data.op = Op::Broadcast(rty);
                    data.args = ValueList::from_slice(&[chosen]);
                }
                changed = true;
            }
            continue;
        }
        let rty = f.ty(d.results[0]);
        if let Type::Tensor(..) = rty {
            if let Some(c) = fold_uniform(f, &d.op, &d.args) {
                if c.ty() == rty.elem() {
                    let data = &mut f.insts[inst];
                    data.op = Op::Fill(c, Box::new(rty));
                    data.args.clear();
                    changed = true;
                }
            }
            continue;
        }
        let consts: Option<Vec<Constant>> = d.args.iter().map(|&a| const_of(f, a)).collect();
        let Some(consts) = consts else { continue };
        if let Some(c) = fold(&d.op, &consts) {
            let data = &mut f.insts[inst];
            data.op = Op::Const(c);
            data.args.clear();
            changed = true;
        }
    }
    changed
}

/// The value every element of `v` holds, if `v` is a constant or a uniform tensor
/// (`fill c`, or `broadcast` of a constant).
pub(crate) fn uniform_of(f: &Function, v: Value) -> Option<Constant> {
    if let Some(c) = const_of(f, v) {
        return Some(c);
    }
    match def_op(f, v)? {
        (Op::Fill(c, _), _) => Some(*c),
        (Op::Broadcast(_), &[x]) => const_of(f, x),
        _ => None,
    }
}

/// The one value of the tensor result of `op(args)` when it is uniform by the rules of
/// the module docs.
fn fold_uniform(f: &Function, op: &Op, args: &[Value]) -> Option<Constant> {
    if let Op::Broadcast(_)
    | Op::Reshape(_)
    | Op::Transpose(_)
    | Op::Slice(_)
    | Op::Reduce(Reduction::Max | Reduction::Min, _) = op
    {
        return uniform_of(f, *args.first()?);
    }
    // Elementwise: pure and not tensor-only (the op classifications are exhaustive, so
    // a new op is sorted there, not here).
    if op.is_pure() && !op.is_tensor_op() && !matches!(op, Op::Const(_)) {
        let consts: Option<Vec<Constant>> = args.iter().map(|&a| uniform_of(f, a)).collect();
        return eval_one(op, &consts?, true);
    }
    None
}

/// The value of `op` applied to constants, by the interpreter; `None` if it cannot be
/// evaluated (an ill-typed operation or a non-scalar result).
pub fn fold(op: &Op, args: &[Constant]) -> Option<Constant> {
    eval_one(op, args, false)
}

/// `op` applied to `args` by the interpreter on a one-op function: on the scalars
/// themselves, or (`as_tensor`) on one-element tensors filled with them, which runs the
/// tensor kernels — the value every element of a uniform tensor result holds.
fn eval_one(op: &Op, args: &[Constant], as_tensor: bool) -> Option<Constant> {
    if !op.is_pure() || matches!(op, Op::Const(_)) {
        return None;
    }
    let one = Shape::new(&[1])?;
    let ty_of = |c: &Constant| {
        if as_tensor {
            Type::Tensor(c.ty(), one)
        } else {
            Type::Scalar(c.ty())
        }
    };
    let tys: Vec<Type> = args.iter().map(ty_of).collect();
    let rt = op.result_types(&tys, |_| None).ok()?;
    let [rty] = rt.as_slice() else { return None };
    // Constants are scalars; a tensor result only as the one-element stand-in.
    if as_tensor != matches!(rty, Type::Tensor(..)) {
        return None;
    }
    let mut f = Function::new("fold", Signature::default());
    let body = f.body;
    let vals: Vec<_> = args
        .iter()
        .zip(&tys)
        .map(|(&c, &ty)| {
            let op = if as_tensor {
                Op::Fill(c, Box::new(ty))
            } else {
                Op::Const(c)
            };
            let i = f.append_inst(body, op, vec![], &[ty], None);
            f.insts[i].results[0]
        })
        .collect();
    let i: Inst = f.append_inst(body, op.clone(), vals, &[*rty], None);
    let r = f.insts[i].results[0];
    f.append_inst(body, Op::Ret, vec![r], &[], None);
    f.sig.results = vec![*rty];
    let out = interp::eval_function(&f, None, &[]).ok()?;
    Some(match out.first()? {
        Val::F64(v) => Constant::F64(*v),
        Val::F32(v) => Constant::F32(*v),
        Val::I64(v) => Constant::I64(*v),
        Val::Bool(v) => Constant::Bool(*v),
        Val::Tensor(t) => match t.data() {
            TensorData::F64(v) => Constant::F64(*v.first()?),
            TensorData::F32(v) => Constant::F32(*v.first()?),
            TensorData::I64(v) => Constant::I64(*v.first()?),
            TensorData::Bool(v) => Constant::Bool(*v.first()?),
        },
    })
}
