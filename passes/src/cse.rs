//! Common-subexpression elimination.
//!
//! Two pure instructions ([`jitad_ir::Op::is_pure`]) with the same op (constants compare
//! by bit pattern, so `-0.0` and `0.0` stay apart) and the same operands compute the same
//! value; the later one is replaced by the earlier when the earlier is visible from it
//! (defined before it in the same region or in an enclosing one). Operands of
//! commutative ops (`add`, `mul`, `min`, `max`, `eq`, `ne`, and the two factors of
//! `fma`) are compared as unordered: IEEE 754 addition and multiplication are
//! commutative, `minimum`/`maximum` too. Calls, guards and loops are never merged.
//!
//! Guarantee: the function computes the same results. Replaced instructions are left
//! dead for [`crate::dce`] to remove.

use crate::rewrite::Subst;
use cranelift_entity::packed_option::ReservedValue;
use jitad_ir::{Function, Inst, Op, Region, Value};
use rustc_hash::FxHashMap;

/// Merges duplicate pure instructions. Returns true if anything changed.
pub fn cse(f: &mut Function) -> bool {
    let mut subst = Subst::default();
    // Fx hashing: keys are small and not attacker-controlled, and on 10⁶-instruction
    // gradients SipHash dominated the pass.
    let pure = f.insts.values().filter(|d| d.op.is_pure()).count();
    let mut table: FxHashMap<Key, Value> =
        FxHashMap::with_capacity_and_hasher(pure, Default::default());
    let mut changed = false;
    // Explicit stack of (region, position, keys added in this region).
    let mut stack: Vec<(Region, usize, Vec<Key>)> = vec![(f.body, 0, vec![])];
    while let Some(top) = stack.len().checked_sub(1) {
        let (region, pos) = (stack[top].0, stack[top].1);
        let Some(&inst) = f.regions[region].insts.get(pos) else {
            if let Some((_, _, added)) = stack.pop() {
                for k in added {
                    table.remove(&k);
                }
            }
            continue;
        };
        stack[top].1 += 1;
        changed |= subst.rewrite_args(f, inst);
        if let Some(k) = key(f, inst) {
            let r = f.insts[inst].results[0];
            match table.get(&k) {
                Some(&w) => {
                    subst.replace(f, r, w);
                    changed = true;
                }
                None => {
                    // Keys of the body are never retracted, so only nested regions
                    // remember theirs.
                    if region != f.body {
                        stack[top].2.push(k.clone());
                    }
                    table.insert(k, r);
                }
            }
        }
        let regions = f.insts[inst].regions.clone();
        for r in regions.into_iter().rev() {
            stack.push((r, 0, vec![]));
        }
    }
    changed
}

/// What makes two pure instructions equal: the op and the (canonically ordered)
/// operands, padded with the reserved value. A fixed array rather than a `Vec` keeps
/// the table free of per-entry allocations, which dominated CSE on 10⁵-instruction
/// gradients.
type Key = (Op, [Value; 3]);

fn key(f: &Function, inst: Inst) -> Option<Key> {
    let d = &f.insts[inst];
    if !d.op.is_pure() || d.results.len() != 1 || !d.regions.is_empty() || d.args.len() > 3 {
        return None;
    }
    let mut args = [Value::reserved_value(); 3];
    args[..d.args.len()].copy_from_slice(&d.args);
    let commutative = matches!(
        d.op,
        Op::Add | Op::Mul | Op::Min | Op::Max | Op::Eq | Op::Ne | Op::Fma
    );
    if commutative && d.args.len() >= 2 && args[1] < args[0] {
        args.swap(0, 1);
    }
    Some((d.op.clone(), args))
}
