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
use jitad_ir::{Function, Inst, Op, ValueDef};

/// Removes dead instructions, treating every call as having effects. Returns true if
/// anything was removed.
pub fn dce(f: &mut Function) -> bool {
    dce_with(f, &|_| false)
}

/// Removes dead instructions; `pure_call(name)` says a call to `@name` may be removed
/// when its results are unused. Returns true if anything was removed.
pub fn dce_with(f: &mut Function, pure_call: &dyn Fn(&str) -> bool) -> bool {
    let order = f.insts_in_order();
    let parent = enclosing_loops(f);
    let mut live: SecondaryMap<Inst, bool> = SecondaryMap::new();
    let mut work: Vec<Inst> = Vec::new();
    for &i in &order {
        let root = match &f.insts[i].op {
            Op::Ret | Op::Guard => true,
            Op::Call(g) => !pure_call(g),
            Op::RevLoop(r) => !(pure_call(&r.fwd) && pure_call(&r.bwd)),
            Op::TapeLoop(r) => !pure_call(&r.fwd),
            _ => false,
        };
        if root {
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
