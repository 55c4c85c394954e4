//! Constant folding.
//!
//! A pure instruction whose operands are all constants becomes a `const` holding its
//! value, computed by the reference interpreter ([`jitad_ir::interp`]) on a one-op
//! function, so folding agrees bit for bit with evaluation (and with the JIT, which
//! shares the interpreter's `math`). A `select` with a constant condition becomes the
//! chosen operand (broadcast to the result type when the other operand set it).
//! Folding is exact: it never changes a result, including NaN, ±inf and −0.0.

use crate::rewrite::{const_of, Subst};
use jitad_ir::{interp, Constant, Function, Inst, Op, Signature, Type, Val};

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
                    data.args = vec![chosen];
                }
                changed = true;
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

/// The value of `op` applied to constants, by the interpreter; `None` if it cannot be
/// evaluated (an ill-typed operation or a non-scalar result).
pub fn fold(op: &Op, args: &[Constant]) -> Option<Constant> {
    if !op.is_pure() || matches!(op, Op::Const(_)) {
        return None;
    }
    let tys: Vec<Type> = args.iter().map(|c| Type::Scalar(c.ty())).collect();
    let rt = op.result_types(&tys, |_| None).ok()?;
    let [rty] = rt.as_slice() else { return None };
    // Constants are scalars: tensor results are not folded (nor computed here).
    rty.scalar()?;
    let mut f = Function::new("fold", Signature::default());
    let body = f.body;
    let vals: Vec<_> = args
        .iter()
        .map(|&c| {
            let i = f.append_inst(body, Op::Const(c), vec![], &[Type::Scalar(c.ty())], vec![]);
            f.insts[i].results[0]
        })
        .collect();
    let i: Inst = f.append_inst(body, op.clone(), vals, &[*rty], vec![]);
    let r = f.insts[i].results[0];
    f.append_inst(body, Op::Ret, vec![r], &[], vec![]);
    f.sig.results = vec![*rty];
    let out = interp::eval_function(&f, None, &[]).ok()?;
    Some(match out.first()? {
        Val::F64(v) => Constant::F64(*v),
        Val::F32(v) => Constant::F32(*v),
        Val::I64(v) => Constant::I64(*v),
        Val::Bool(v) => Constant::Bool(*v),
        // Tensor results are not folded (constants are scalars).
        Val::Tensor(_) => return None,
    })
}
