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
//! A constant operand may also be a uniform tensor (`fill c`, `broadcast` of a
//! constant); a rule applies only when the result keeps its type, so a broadcast is
//! never lost.
//!
//! `x + 0.0 → x` is *not* safe (−0 + +0 = +0), nor `x·0 → 0` (inf·0 = NaN), nor
//! `x − x → 0` (inf − inf = NaN): hence fast-math.

use crate::rewrite::{def_op, float_of, is_float_bits, Subst};
use jitad_ir::{Constant, Function, Op, Value};

enum Action {
    Replace(Value),
    Rewrite(Op, Vec<Value>),
    Const(Constant),
}

/// Applies the rules to every instruction. Returns true if anything changed.
pub fn simplify(f: &mut Function, fast_math: bool) -> bool {
    let mut subst = Subst::default();
    let mut changed = false;
    for inst in f.insts_in_order() {
        changed |= subst.rewrite_args(f, inst);
        let d = &f.insts[inst];
        if d.results.len() != 1 {
            continue;
        }
        let r = d.results[0];
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
                d.args = args;
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
    changed
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
