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
use cranelift_entity::SecondaryMap;
use jitad_ir::{Function, Inst, Op, Region, Value, ValueDef};
use rustc_hash::{FxBuildHasher, FxHashMap};
use std::collections::hash_map::Entry;
use std::hash::BuildHasher;

/// Merges duplicate pure instructions. Returns true if anything changed.
pub fn cse(f: &mut Function) -> bool {
    cse_hashed(f, &FxBuildHasher)
}

/// Candidates kept per anchor (see [`Tables`]) before further keys with that anchor go
/// to the hash table: a lookup compares at most this many instructions.
const CHAIN_MAX: u8 = 8;

/// No node.
const NIL: u32 = u32::MAX;

/// The values seen so far, by key.
///
/// Most keys are found through an *anchor*, the key's latest operand (by value
/// number): each value heads a list of the values whose keys it anchors, and a lookup
/// compares the key with theirs. Two equal instructions share all their operands, so
/// the anchor's list is where a duplicate must be. The lists are the point: the latest
/// operand is usually defined just before, so its list head, its entries and their
/// instructions are in cache, where a hash table of 10⁶ entries made every lookup and
/// every insertion a cache miss (three quarters of the pass's time on the traced
/// Rosenbrock gradient). A list holds at most [`CHAIN_MAX`] entries, so a value
/// with many users costs no more than that per lookup; keys past that, and keys
/// without operands (constants), go to a hash table keyed by the key's 64-bit hash.
struct Tables<'h, H> {
    hasher: &'h H,
    /// Per anchor: its newest list node and the list's length.
    head: SecondaryMap<Value, (u32, u8)>,
    /// List nodes: a value and the next (older) node.
    nodes: Vec<(Value, u32)>,
    /// A key's hash to the first value with that hash; a hit is confirmed against the
    /// key of the stored value's own instruction (its operands were resolved before it
    /// was stored and never change after), and two different keys with one hash go to
    /// `exact`, keyed in full. Fx hashing: keys are small and not attacker-controlled,
    /// and collisions are resolved exactly.
    table: FxHashMap<u64, Value>,
    exact: FxHashMap<Key, Value>,
}

/// Where an entry went, so a nested region can take its entries back when it ends.
enum Added {
    /// At the head of the anchor's list: (anchor, value).
    Chain(Value, Value),
    Hash(u64),
    Exact(Key),
}

impl<H: BuildHasher> Tables<'_, H> {
    /// The value already computed by an instruction with key `k`, or else records `r`
    /// as the value with that key (and says where, in `added`).
    fn find_or_insert(
        &mut self,
        f: &Function,
        k: Key,
        r: Value,
        added: Option<&mut Vec<Added>>,
    ) -> Option<Value> {
        let anchor = k.1.iter().copied().filter(|a| !a.is_reserved_value()).max();
        if let Some(a) = anchor {
            let (first, len) = self.head[a];
            let mut node = first;
            while node != NIL {
                let (w, next) = self.nodes[node as usize];
                if has_key(f, w, &k) {
                    return Some(w);
                }
                node = next;
            }
            if len < CHAIN_MAX {
                self.head[a] = (self.nodes.len() as u32, len + 1);
                self.nodes.push((r, first));
                if let Some(added) = added {
                    added.push(Added::Chain(a, r));
                }
                return None;
            }
        }
        let h = self.hasher.hash_one(&k);
        match self.table.entry(h) {
            Entry::Vacant(e) => {
                e.insert(r);
                if let Some(added) = added {
                    added.push(Added::Hash(h));
                }
                None
            }
            Entry::Occupied(e) => {
                let w = *e.get();
                if has_key(f, w, &k) {
                    return Some(w);
                }
                match self.exact.entry(k) {
                    Entry::Occupied(e) => Some(*e.get()),
                    Entry::Vacant(e) => {
                        if let Some(added) = added {
                            added.push(Added::Exact(e.key().clone()));
                        }
                        e.insert(r);
                        None
                    }
                }
            }
        }
    }

    /// Takes back the entries `added` records, newest first (list heads unwind in
    /// the order they were pushed).
    fn remove(&mut self, added: Vec<Added>) {
        for a in added.into_iter().rev() {
            match a {
                Added::Chain(a, r) => {
                    let (node, len) = self.head[a];
                    if let Some(&(w, next)) = self.nodes.get(node as usize) {
                        debug_assert_eq!(w, r, "CSE lists unwind newest first");
                        self.head[a] = (next, len.saturating_sub(1));
                    }
                }
                Added::Hash(h) => {
                    self.table.remove(&h);
                }
                Added::Exact(k) => {
                    self.exact.remove(&k);
                }
            }
        }
    }
}

/// [`cse`] with the hash function of the overflow table chosen (tests use one that
/// collides always).
fn cse_hashed(f: &mut Function, hasher: &impl BuildHasher) -> bool {
    let mut subst = Subst::default();
    let mut t = Tables {
        hasher,
        head: SecondaryMap::with_default((NIL, 0)),
        nodes: Vec::new(),
        table: FxHashMap::default(),
        exact: FxHashMap::default(),
    };
    t.head.resize(f.values.len());
    let mut changed = false;
    // Explicit stack of (region, position, entries added in this region).
    let mut stack: Vec<(Region, usize, Vec<Added>)> = vec![(f.body, 0, vec![])];
    while let Some(top) = stack.len().checked_sub(1) {
        let (region, pos) = (stack[top].0, stack[top].1);
        let Some(&inst) = f.regions[region].insts.get(pos) else {
            if let Some((_, _, added)) = stack.pop() {
                t.remove(added);
            }
            continue;
        };
        stack[top].1 += 1;
        changed |= subst.rewrite_args(f, inst);
        if let Some(k) = key(f, inst) {
            let r = f.insts[inst].results[0];
            // Keys of the body are never retracted, so only nested regions remember
            // theirs.
            let added = (region != f.body).then_some(&mut stack[top].2);
            if let Some(w) = t.find_or_insert(f, k, r, added) {
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

/// True if the instruction defining `v` has key `k`.
fn has_key(f: &Function, v: Value, k: &Key) -> bool {
    match f.values.get(v).map(|d| d.def) {
        Some(ValueDef::Result(i, _)) => key_ref(f, i).is_some_and(|(op, a)| *op == k.0 && a == k.1),
        _ => false,
    }
}

/// What makes two pure instructions equal: the op and the (canonically ordered)
/// operands, padded with the reserved value. A fixed array rather than a `Vec` keeps
/// the tables free of per-entry allocations, which dominated CSE on 10⁵-instruction
/// gradients.
type Key = (Op, [Value; 3]);

fn key(f: &Function, inst: Inst) -> Option<Key> {
    key_ref(f, inst).map(|(op, args)| (op.clone(), args))
}

/// [`key`] without cloning the op.
fn key_ref(f: &Function, inst: Inst) -> Option<(&Op, [Value; 3])> {
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
    Some((&d.op, args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitad_ir::testgen::{random_module, GenOptions};
    use jitad_ir::FunctionBuilder;

    /// The definition, written plainly: one map from full keys to the first value with
    /// that key, scoped by region. The pass must do exactly what it does.
    fn cse_reference(f: &mut Function) -> bool {
        let mut subst = Subst::default();
        let mut seen: std::collections::HashMap<Key, Value> = Default::default();
        let mut changed = false;
        let mut stack: Vec<(Region, usize, Vec<Key>)> = vec![(f.body, 0, vec![])];
        while let Some(top) = stack.len().checked_sub(1) {
            let (region, pos) = (stack[top].0, stack[top].1);
            let Some(&inst) = f.regions[region].insts.get(pos) else {
                for k in stack.pop().map(|t| t.2).unwrap_or_default() {
                    seen.remove(&k);
                }
                continue;
            };
            stack[top].1 += 1;
            changed |= subst.rewrite_args(f, inst);
            if let Some(k) = key(f, inst) {
                let r = f.insts[inst].results[0];
                if let Some(&w) = seen.get(&k) {
                    subst.replace(f, r, w);
                    changed = true;
                } else {
                    seen.insert(k.clone(), r);
                    stack[top].2.push(k);
                }
            }
            for &r in f.insts[inst].regions.iter().rev() {
                stack.push((r, 0, vec![]));
            }
        }
        changed
    }

    fn same_as_reference(f: &Function, what: &str) -> bool {
        let (mut a, mut b) = (f.clone(), f.clone());
        let ca = cse(&mut a);
        let cb = cse_reference(&mut b);
        assert_eq!(ca, cb, "{what}");
        assert_eq!(
            jitad_ir::print_function(&a),
            jitad_ir::print_function(&b),
            "{what}"
        );
        ca
    }

    #[test]
    fn matches_the_reference_on_random_programs() {
        let mut merged = 0;
        for seed in 0..60 {
            let opts = GenOptions {
                all_types: seed % 2 == 0,
                ..GenOptions::default()
            };
            let m = random_module(seed, &opts);
            for f in &m.funcs {
                merged += usize::from(same_as_reference(f, &format!("seed {seed} @{}", f.name)));
            }
        }
        assert!(merged > 0, "the random programs had duplicates to merge");
    }

    /// One value anchoring many keys: past [`CHAIN_MAX`] they go to the hash table, and
    /// duplicates of every one of them are still found, at top level and inside a
    /// loop body (whose entries are taken back when it ends).
    #[test]
    fn a_value_with_many_users_overflows_its_list_exactly() {
        use jitad_ir::{Bound, LoopBounds, Type};
        let keys = 3 * CHAIN_MAX as usize;
        let mut b = FunctionBuilder::new("many");
        let x = b.param(Type::F64);
        let consts: Vec<Value> = (0..keys).map(|k| b.const_f64(k as f64 + 2.0)).collect();
        // Every key's latest operand is `last`, defined after the constants.
        let last = b.ins1(Op::Exp, &[x]).unwrap();
        let mut acc = last;
        for _round in 0..2 {
            for &c in &consts {
                let v = b.ins1(Op::Mul, &[c, last]).unwrap();
                acc = b.ins1(Op::Add, &[acc, v]).unwrap();
            }
        }
        let bounds = LoopBounds {
            start: Bound::Imm(0),
            end: Bound::Imm(3),
        };
        let r = b
            .build_loop(bounds, &[], &[acc], |b, _i, c| {
                let mut inner = c[0];
                for &k in &consts {
                    let v = b.ins1(Op::Mul, &[k, c[0]])?;
                    let w = b.ins1(Op::Mul, &[c[0], k])?;
                    let s = b.ins1(Op::Sub, &[v, w])?;
                    // Operands from outside, first computed here.
                    let d = b.ins1(Op::Div, &[k, last])?;
                    let s = b.ins1(Op::Add, &[s, d])?;
                    inner = b.ins1(Op::Add, &[inner, s])?;
                }
                Ok(vec![inner])
            })
            .unwrap();
        // After the loop, the body's keys are gone: these are new at top level (the
        // divisions too, though their operands were visible in the body).
        let mut out = r[0];
        for &k in &consts {
            let v = b.ins1(Op::Mul, &[k, r[0]]).unwrap();
            let d = b.ins1(Op::Div, &[k, last]).unwrap();
            out = b.ins1(Op::Add, &[out, v]).unwrap();
            out = b.ins1(Op::Add, &[out, d]).unwrap();
        }
        b.ret(&[out]).unwrap();
        let f = b.finish().unwrap();
        assert!(same_as_reference(&f, "many users"));
        // The overflow through the exact table too: every hash collides.
        let (mut a, mut c) = (f.clone(), f.clone());
        assert_eq!(cse(&mut a), cse_hashed(&mut c, &Collide));
        assert_eq!(jitad_ir::print_function(&a), jitad_ir::print_function(&c));
        let mut g = f.clone();
        cse(&mut g);
        crate::dce::dce(&mut g);
        // Top level: the second round's products merge into the first's; in the loop,
        // `w` into `v`; after it, nothing to merge.
        let count = |op: Op| {
            let order = g.insts_in_order();
            order.iter().filter(|&&i| g.insts[i].op == op).count()
        };
        assert_eq!(count(Op::Mul), 3 * keys);
        assert_eq!(count(Op::Div), 2 * keys);
    }

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
