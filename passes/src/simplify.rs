//! Algebraic simplification.
//!
//! Local rewrites that make derived code read like the derivation. Every rule below is
//! an identity of IEEE 754 arithmetic: it holds bit for bit (up to NaN payloads) for all
//! inputs including NaN, ±inf and −0.0, and is always on. Rules marked *fast-math* are
//! not IEEE identities and run only with `fast_math`.
//!
//! | rule | why it is safe |
//! |------|----------------|
//! | `mul x, 1.0` → `x` (either side) | x·1 = x exactly, also for NaN, ±inf, −0 |
//! | `mul x, -1.0` → `neg x` | x·(−1) only flips the sign |
//! | `div x, 1.0` → `x`; `div x, -1.0` → `neg x` | as above |
//! | `mul (neg a), (neg b)` → `mul a, b`; same for `div` | sign flips cancel exactly |
//! | `add x, (neg y)` → `sub x, y` (either side) | IEEE defines x − y as x + (−y) |
//! | `sub x, (neg y)` → `add x, y` | idem |
//! | `add x, -0.0` → `x` (either side) | x + (−0) = x for every x, −0 included |
//! | `sub x, 0.0` → `x` | x − (+0) = x + (−0) |
//! | `neg (neg x)` → `x` | two sign flips |
//! | `fma 1.0, b, c` → `add b, c`; `fma -1.0, b, c` → `sub c, b` (either factor) | 1·b is exact, so one rounding either way |
//! | `fma a, b, -0.0` → `mul a, b` | round(ab + (−0)) = round(ab), zeros included |
//! | `fma (neg a), (neg b), c` → `fma a, b, c` | exact |
//! | `select c, x, x` → `x`; `min x, x`, `max x, x` → `x` | same value either way |
//! | `powi x, 1` → `x`; `powi x, 0` → `1.0`; `powi x, 2` → `mul x, x` | `math::powi`'s multiplication order gives exactly these |
//! | `cast x : T` → `x` when x is already a `T` | no conversion |
//! | `lt x, x`, `gt x, x` → `false` | false for every x, NaN included |
//! | *fast-math*: `mul x, ±0` → `±0`, `add x, ±0` → `x`, `sub x, ±0` → `x`, `fma` with a zero factor → its addend, `fma a, b, ±0` → `mul a, b`, `sub x, x` → `0` | wrong for NaN, ±inf or −0.0 |
//!
//! | `concat (fill c), x, (fill c), axis n` → `pad x, c [low:high]` (fills on either or both sides, one non-fill part) | the same elements: `pad` is defined as `x` with `low` copies of `c` before and `high` after it along the axis |
//!
//! The `concat` rule turns a shift with a constant boundary (a stencil written with
//! `concat`, as `u[i−1]` with a zero shifted in) into a `pad`, which the JIT fuses
//! into its consumers and whose adjoint is a `slice`; a `concat` is a runtime copy.
//!
//! A constant operand may also be a uniform tensor (`fill c`, `broadcast` of a
//! constant); a rule applies only when the result keeps its type, so a broadcast is
//! never lost.
//!
//! `x + 0.0 → x` is *not* safe (−0 + +0 = +0), nor `x·0 → 0` (inf·0 = NaN), nor
//! `x − x → 0` (inf − inf = NaN): hence fast-math.

use crate::rewrite::{def_op, float_of, is_float_bits, Subst};
use jitad_ir::shape::SliceRange;
use jitad_ir::{Constant, Function, Inst, Op, Type, Value, ValueList};
use std::collections::HashMap;

enum Action {
    Replace(Value),
    Rewrite(Op, Vec<Value>),
    Const(Constant),
}

/// Applies the rules to every instruction. Returns true if anything changed.
pub fn simplify(f: &mut Function, fast_math: bool) -> bool {
    let mut subst = Subst::default();
    let mut changed = false;
    // Constants the `concat` rule creates, each to be placed just before its `pad`.
    let mut before: HashMap<Inst, Inst> = HashMap::new();
    for inst in f.insts_in_order() {
        changed |= subst.rewrite_args(f, inst);
        let d = &f.insts[inst];
        if d.results.len() != 1 {
            continue;
        }
        let r = d.results[0];
        let pad = match d.op {
            Op::Concat(axis) => concat_as_pad(f, axis, &d.args),
            _ => None,
        };
        if let Some((x, c, ranges)) = pad {
            let op = Op::Pad(ranges);
            let tys = [f.ty(x), Type::Scalar(c.ty())];
            if op.result_types(&tys, |_| None).ok().as_deref() == Some(&[f.ty(r)][..]) {
                let k = f.create_inst(Op::Const(c), vec![], &[tys[1]], None);
                let cv = f.insts[k].results[0];
                let d = &mut f.insts[inst];
                d.op = op;
                d.args = ValueList::from_slice(&[x, cv]);
                before.insert(inst, k);
                changed = true;
                continue;
            }
        }
        let d = &f.insts[inst];
        match rule(f, &d.op, &d.args, r, fast_math) {
            None => {}
            // With broadcasting an operand (or a scalar constant) may have another type
            // than the result (`mul %t, 0.0` under fast-math, `select %mask, %x, %x`):
            // such rewrites are skipped.
            Some(Action::Replace(w)) if f.ty(w) != f.ty(r) => {}
            Some(Action::Const(c)) if f.ty(r) != jitad_ir::Type::Scalar(c.ty()) => {}
            // A rewrite that drops a uniform tensor operand (`mul %s, fill -1.0` →
            // `neg %s`) would lose the broadcast: kept only when the type stays.
            Some(Action::Rewrite(op, args)) if !keeps_type(f, &op, &args, r) => {}
            Some(Action::Replace(w)) => {
                subst.replace(f, r, w);
                changed = true;
            }
            Some(Action::Rewrite(op, args)) => {
                let d = &mut f.insts[inst];
                d.op = op;
                d.args = args.into();
                changed = true;
            }
            Some(Action::Const(c)) => {
                let d = &mut f.insts[inst];
                d.op = Op::Const(c);
                d.args.clear();
                changed = true;
            }
        }
    }
    if !before.is_empty() {
        // One pass over the regions that hold a rewritten `concat`.
        for rd in f.regions.values_mut() {
            if !rd.insts.iter().any(|i| before.contains_key(i)) {
                continue;
            }
            let mut insts = Vec::with_capacity(rd.insts.len() + before.len());
            for &i in &rd.insts {
                if let Some(&k) = before.get(&i) {
                    insts.push(k);
                }
                insts.push(i);
            }
            rd.insts = insts;
        }
    }
    changed
}

/// `concat` parts: a run of `fill c` on either side (one constant, bit for bit) and one
/// other part between them → that part, `c`, and the `pad` ranges (the fills' extents
/// along `axis`).
fn concat_as_pad(
    f: &Function,
    axis: u8,
    parts: &[Value],
) -> Option<(Value, Constant, Vec<SliceRange>)> {
    let fill_of = |v: Value| match def_op(f, v) {
        Some((Op::Fill(c, _), _)) => Some(*c),
        _ => None,
    };
    let lead = parts.iter().take_while(|&&v| fill_of(v).is_some()).count();
    let trail = parts[lead..]
        .iter()
        .rev()
        .take_while(|&&v| fill_of(v).is_some())
        .count();
    if lead + trail == 0 || parts.len() != lead + trail + 1 {
        return None;
    }
    let x = parts[lead];
    let c = fill_of(parts[0]).or_else(|| fill_of(parts[parts.len() - 1]))?;
    let fills = parts[..lead].iter().chain(&parts[lead + 1..]);
    let mut extent = [0u32; 2];
    for (i, &v) in fills.enumerate() {
        if fill_of(v) != Some(c) {
            return None;
        }
        let Type::Tensor(_, shape) = f.ty(v) else {
            return None;
        };
        let n = *shape.dims().get(usize::from(axis))?;
        let side = usize::from(i >= lead);
        extent[side] = extent[side].checked_add(n)?;
    }
    let Type::Tensor(_, shape) = f.ty(x) else {
        return None;
    };
    let ranges = (0..shape.dims().len())
        .map(|a| {
            let (start, end) = if a == usize::from(axis) {
                (extent[0], extent[1])
            } else {
                (0, 0)
            };
            SliceRange {
                start,
                end,
                step: 1,
            }
        })
        .collect();
    Some((x, c, ranges))
}

/// True when `op(args)` has exactly `r`'s type.
fn keeps_type(f: &Function, op: &Op, args: &[Value], r: Value) -> bool {
    let tys: Vec<jitad_ir::Type> = args.iter().map(|&a| f.ty(a)).collect();
    op.result_types(&tys, |_| None).ok().as_deref() == Some(&[f.ty(r)][..])
}

fn rule(f: &Function, op: &Op, args: &[Value], r: Value, fast: bool) -> Option<Action> {
    use Action::*;
    let is = |v: Value, x: f64| is_float_bits(f, v, x);
    let zero = |v: Value| float_of(f, v) == Some(0.0);
    let neg_of = |v: Value| match def_op(f, v) {
        Some((Op::Neg, &[x])) => Some(x),
        _ => None,
    };
    let float_const = |x: f64| f.ty(r).scalar().and_then(|s| Constant::float(s, x));
    match (op, args) {
        (Op::Mul, &[a, b]) => {
            if is(b, 1.0) {
                Some(Replace(a))
            } else if is(a, 1.0) {
                Some(Replace(b))
            } else if is(b, -1.0) {
                Some(Rewrite(Op::Neg, vec![a]))
            } else if is(a, -1.0) {
                Some(Rewrite(Op::Neg, vec![b]))
            } else if let (Some(x), Some(y)) = (neg_of(a), neg_of(b)) {
                Some(Rewrite(Op::Mul, vec![x, y]))
            } else if fast && zero(b) {
                Some(Replace(b))
            } else if fast && zero(a) {
                Some(Replace(a))
            } else {
                None
            }
        }
        (Op::Div, &[a, b]) => {
            if is(b, 1.0) {
                Some(Replace(a))
            } else if is(b, -1.0) {
                Some(Rewrite(Op::Neg, vec![a]))
            } else if let (Some(x), Some(y)) = (neg_of(a), neg_of(b)) {
                Some(Rewrite(Op::Div, vec![x, y]))
            } else {
                None
            }
        }
        (Op::Add, &[a, b]) => {
            if let Some(y) = neg_of(b) {
                Some(Rewrite(Op::Sub, vec![a, y]))
            } else if let Some(x) = neg_of(a) {
                Some(Rewrite(Op::Sub, vec![b, x]))
            } else if is(b, -0.0) || (fast && zero(b)) {
                Some(Replace(a))
            } else if is(a, -0.0) || (fast && zero(a)) {
                Some(Replace(b))
            } else {
                None
            }
        }
        (Op::Sub, &[a, b]) => {
            if is(b, 0.0) || (fast && zero(b)) {
                Some(Replace(a))
            } else if let Some(y) = neg_of(b) {
                Some(Rewrite(Op::Add, vec![a, y]))
            } else if fast && a == b {
                float_const(0.0).map(Const)
            } else {
                None
            }
        }
        (Op::Neg, &[a]) => neg_of(a).map(Replace),
        (Op::Fma, &[a, b, c]) => {
            if is(a, 1.0) {
                Some(Rewrite(Op::Add, vec![b, c]))
            } else if is(b, 1.0) {
                Some(Rewrite(Op::Add, vec![a, c]))
            } else if is(a, -1.0) {
                Some(Rewrite(Op::Sub, vec![c, b]))
            } else if is(b, -1.0) {
                Some(Rewrite(Op::Sub, vec![c, a]))
            } else if is(c, -0.0) || (fast && zero(c)) {
                Some(Rewrite(Op::Mul, vec![a, b]))
            } else if let (Some(x), Some(y)) = (neg_of(a), neg_of(b)) {
                Some(Rewrite(Op::Fma, vec![x, y, c]))
            } else if fast && (zero(a) || zero(b)) {
                Some(Replace(c))
            } else {
                None
            }
        }
        (Op::Select, &[_, a, b]) if a == b => Some(Replace(a)),
        (Op::Min | Op::Max, &[a, b]) if a == b => Some(Replace(a)),
        (Op::Powi(1), &[a]) => Some(Replace(a)),
        (Op::Powi(0), &[_]) => float_const(1.0).map(Const),
        (Op::Powi(2), &[a]) => Some(Rewrite(Op::Mul, vec![a, a])),
        (Op::Cast(t), &[a]) if f.ty(a) == jitad_ir::Type::Scalar(*t) => Some(Replace(a)),
        (Op::Lt | Op::Gt, &[a, b]) if a == b => Some(Const(Constant::Bool(false))),
        _ => None,
    }
}
