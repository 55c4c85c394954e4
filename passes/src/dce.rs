//! Dead-code elimination.
//!
//! Removes every instruction whose results are not needed, in every region. Needed are:
//! the `ret`; `guard`s (they can stop evaluation, which is an effect); calls, unless the
//! caller says the callee is pure ([`dce_with`]; [`crate::optimize_module`] computes
//! that from the module: no guards, transitively); the operands of needed instructions;
//! a `loop` any of whose results or inner instructions are needed, together with all its
//! initial and yielded values. Pure ops ([`jitad_ir::Op::is_pure`]) with unused results
//! are removed. The analysis is a worklist over use-def edges (no recursion), so it is
//! linear in the function's size.
//!
//! Guarantee: the function computes the same results and fails the same guards.
//! Instruction and value ids stay valid; removed instructions simply leave their region.

use cranelift_entity::SecondaryMap;
use jitad_ir::{Function, Inst, Op, Value, ValueDef};

/// Removes dead instructions, treating every call as having effects. Returns true if
/// anything was removed.
pub fn dce(f: &mut Function) -> bool {
    dce_with(f, &|_| false)
}

/// Removes dead instructions; `pure_call(name)` says a call to `@name` may be removed
/// when its results are unused. Returns true if anything was removed.
pub fn dce_with(f: &mut Function, pure_call: &dyn Fn(&str) -> bool) -> bool {
    if f.regions.len() == 1 {
        return dce_straight_line(f, pure_call);
    }
    let order = f.insts_in_order();
    let parent = enclosing_loops(f);
    let mut live: SecondaryMap<Inst, bool> = SecondaryMap::new();
    let mut work: Vec<Inst> = Vec::new();
    for &i in &order {
        if is_root(&f.insts[i].op, pure_call) {
            work.push(i);
        }
    }
    while let Some(i) = work.pop() {
        if live[i] {
            continue;
        }
        live[i] = true;
        let d = &f.insts[i];
        for &a in &d.args {
            if let Some(vd) = f.values.get(a) {
                match vd.def {
                    ValueDef::Result(j, _) => work.push(j),
                    ValueDef::Param(r, _) => {
                        if let Some(p) = f.regions.get(r).and_then(|rd| rd.parent) {
                            work.push(p);
                        }
                    }
                }
            }
        }
        // A needed loop needs its yield; a needed instruction inside a loop body needs
        // the loop.
        for &r in &d.regions {
            if let Some(&y) = f.regions.get(r).and_then(|rd| rd.insts.last()) {
                work.push(y);
            }
        }
        if let Some(p) = parent[i] {
            work.push(p);
        }
    }
    let mut changed = false;
    let regions: Vec<_> = f.regions.keys().collect();
    for r in regions {
        let before = f.regions[r].insts.len();
        f.regions[r].insts.retain(|&i| live[i]);
        changed |= f.regions[r].insts.len() != before;
    }
    changed
}

/// Needed whatever uses its results: see the module docs.
fn is_root(op: &Op, pure_call: &dyn Fn(&str) -> bool) -> bool {
    match op {
        Op::Ret | Op::Guard => true,
        Op::Call(g) => !pure_call(g),
        Op::RevLoop(r) => !(pure_call(&r.fwd) && pure_call(&r.bwd)),
        Op::TapeLoop(r) => !pure_call(&r.fwd),
        _ => false,
    }
}

/// [`dce_with`] on a function of one region (no loop), as one backward sweep: in a
/// verified function every use follows its definition, so walking the body from the
/// end sees all of a value's users before its definition, and an instruction is
/// needed when it is a root or a needed one uses a result. The same answer as the
/// worklist, reading the instructions in order instead of chasing operands across a
/// 10⁶-instruction function (on malformed input a use before its definition may be
/// missed: the verifier rejects such input before any pass runs).
fn dce_straight_line(f: &mut Function, pure_call: &dyn Fn(&str) -> bool) -> bool {
    let mut used: SecondaryMap<Value, bool> = SecondaryMap::new();
    used.resize(f.values.len());
    let body = f.body;
    let mut keep = vec![false; f.regions[body].insts.len()];
    for (k, &i) in f.regions[body].insts.iter().enumerate().rev() {
        let Some(d) = f.insts.get(i) else { continue };
        if is_root(&d.op, pure_call) || d.results.iter().any(|&r| used[r]) {
            keep[k] = true;
            for &a in &d.args {
                // (An id past the table is malformed input: skipped, not grown into.)
                if let Some(u) = used.get_mut(a) {
                    *u = true;
                }
            }
        }
    }
    let before = keep.len();
    let mut k = 0;
    f.regions[body].insts.retain(|_| {
        k += 1;
        keep[k - 1]
    });
    f.regions[body].insts.len() != before
}

/// For every instruction inside a loop body, the loop.
pub(crate) fn enclosing_loops(f: &Function) -> SecondaryMap<Inst, Option<Inst>> {
    let mut out = SecondaryMap::new();
    for rd in f.regions.values() {
        if let Some(p) = rd.parent {
            for &i in &rd.insts {
                out[i] = Some(p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitad_ir::testgen::{random_module, GenOptions};

    /// The worklist, forced: what `dce_with` does on functions with loops.
    fn dce_worklist(f: &mut Function) -> bool {
        // A loose second region makes `dce_with` take the general path; it holds
        // nothing, so the result is the same function.
        f.new_region();
        dce_with(f, &|_| false)
    }

    /// On straight-line code the backward sweep removes exactly what the worklist does.
    #[test]
    fn the_straight_line_sweep_agrees_with_the_worklist() {
        let mut removed = 0;
        for seed in 0..80 {
            let opts = GenOptions {
                loops: false,
                all_types: seed % 2 == 0,
                ..GenOptions::default()
            };
            for f in &random_module(seed, &opts).funcs {
                if f.regions.len() != 1 {
                    continue;
                }
                let (mut a, mut b) = (f.clone(), f.clone());
                let ca = dce(&mut a);
                let cb = dce_worklist(&mut b);
                assert_eq!(ca, cb, "seed {seed} @{}", f.name);
                assert_eq!(
                    a.regions[a.body].insts, b.regions[b.body].insts,
                    "seed {seed} @{}",
                    f.name
                );
                removed += usize::from(ca);
            }
        }
        assert!(removed > 0, "the random programs had dead code");
    }
}
