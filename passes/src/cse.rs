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
use jitad_ir::{Function, Inst, Op, Region, Value, ValueDef};
use rustc_hash::{FxBuildHasher, FxHashMap};
use std::collections::hash_map::Entry;
use std::hash::BuildHasher;

/// Merges duplicate pure instructions. Returns true if anything changed.
pub fn cse(f: &mut Function) -> bool {
    cse_hashed(f, &FxBuildHasher)
}

/// [`cse`] with the table's hash function chosen (tests use one that collides always).
fn cse_hashed(f: &mut Function, hasher: &impl BuildHasher) -> bool {
    let mut subst = Subst::default();
    // The table maps a key's 64-bit hash to the first value with that hash: 12 bytes
    // an entry instead of a 56-byte key, which on 10⁶-instruction gradients kept the
    // table out of cache. A hit is confirmed against the key of the stored value's own
    // instruction (its operands were resolved before it was stored and never change
    // after), and two different keys with one hash go to `exact`, keyed in full.
    // Fx hashing: keys are small and not attacker-controlled, and collisions are
    // resolved exactly.
    let pure = f.insts.values().filter(|d| d.op.is_pure()).count();
    let mut table: FxHashMap<u64, Value> =
        FxHashMap::with_capacity_and_hasher(pure, Default::default());
    let mut exact: FxHashMap<Key, Value> = FxHashMap::default();
    let mut changed = false;
    // Explicit stack of (region, position, entries added in this region).
    let mut stack: Vec<(Region, usize, Vec<Added>)> = vec![(f.body, 0, vec![])];
    while let Some(top) = stack.len().checked_sub(1) {
        let (region, pos) = (stack[top].0, stack[top].1);
        let Some(&inst) = f.regions[region].insts.get(pos) else {
            if let Some((_, _, added)) = stack.pop() {
                for a in added {
                    match a {
                        Added::Hash(h) => table.remove(&h),
                        Added::Exact(k) => exact.remove(&k),
                    };
                }
            }
            continue;
        };
        stack[top].1 += 1;
        changed |= subst.rewrite_args(f, inst);
        if let Some(k) = key(f, inst) {
            let r = f.insts[inst].results[0];
            // Keys of the body are never retracted, so only nested regions remember
            // theirs.
            let nested = region != f.body;
            let h = hasher.hash_one(&k);
            let found = match table.entry(h) {
                Entry::Vacant(e) => {
                    e.insert(r);
                    if nested {
                        stack[top].2.push(Added::Hash(h));
                    }
                    None
                }
                Entry::Occupied(e) => {
                    let w = *e.get();
                    if value_key(f, w).as_ref() == Some(&k) {
                        Some(w)
                    } else {
                        match exact.entry(k) {
                            Entry::Occupied(e) => Some(*e.get()),
                            Entry::Vacant(e) => {
                                if nested {
                                    stack[top].2.push(Added::Exact(e.key().clone()));
                                }
                                e.insert(r);
                                None
                            }
                        }
                    }
                }
            };
            if let Some(w) = found {
                subst.replace(f, r, w);
                changed = true;
            }
        }
        let d = &f.insts[inst];
        for &r in d.regions.iter().rev() {
            stack.push((r, 0, vec![]));
        }
    }
    changed
}

/// A table entry made in a nested region, removed when the region ends.
enum Added {
    Hash(u64),
    Exact(Key),
}

/// The key of the instruction defining `v`.
fn value_key(f: &Function, v: Value) -> Option<Key> {
    match f.values[v].def {
        ValueDef::Result(i, _) => key(f, i),
        ValueDef::Param(..) => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use jitad_ir::testgen::{random_module, GenOptions};

    /// Every key hashes to 0, so every lookup after the first goes through the exact
    /// table: the results must be those of the ordinary hash, instruction for
    /// instruction.
    struct Collide;
    struct Zero;
    impl std::hash::Hasher for Zero {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, _: &[u8]) {}
    }
    impl BuildHasher for Collide {
        type Hasher = Zero;
        fn build_hasher(&self) -> Zero {
            Zero
        }
    }

    #[test]
    fn hash_collisions_are_resolved_exactly() {
        let mut merged = 0;
        for seed in 0..40 {
            let m = random_module(seed, &GenOptions::default());
            for f in &m.funcs {
                let (mut a, mut b) = (f.clone(), f.clone());
                let ca = cse(&mut a);
                let cb = cse_hashed(&mut b, &Collide);
                assert_eq!(ca, cb, "seed {seed} @{}", f.name);
                merged += usize::from(ca);
                assert_eq!(
                    jitad_ir::print_function(&a),
                    jitad_ir::print_function(&b),
                    "seed {seed}"
                );
            }
        }
        assert!(merged > 0, "the random programs had duplicates to merge");
    }
}
