//! The clean-up pipeline: constant folding, simplification, CSE and DCE run in turn
//! until none changes the function (a fixed point), then the function is compacted
//! (renumbered in program order, dropping what the passes left behind), so printed
//! dumps use small, ordered value numbers.
//!
//! On a module, [`optimize_module`] then inlines calls under [`crate::inline`]'s cost
//! model (callees measured after their clean-up) and cleans the rebuilt functions again.
//!
//! Every pass preserves the function's results bit for bit (unless
//! [`OptOptions::fast_math`] allows the unsafe algebra of [`crate::simplify`]) and its
//! guards, so `optimize` is safe on any verified function, primal or derived.

use crate::{constfold, cse, dce, inline, simplify};
use cranelift_entity::SecondaryMap;
use jitad_ir::{Function, Module, Op, Region, Value};
use std::collections::HashSet;

/// Options of [`optimize`].
#[derive(Clone, Debug)]
pub struct OptOptions {
    /// Allow rewrites that are wrong for NaN, ±inf or −0.0 (`x*0 → 0`, `x+0 → x`, ...).
    pub fast_math: bool,
    /// Give up after this many rounds if no fixed point is reached (each round runs
    /// every pass once).
    pub max_rounds: usize,
    /// Inline calls in [`optimize_module`] ([`crate::inline`]); off, calls stay calls.
    pub inline: bool,
}

impl Default for OptOptions {
    fn default() -> Self {
        OptOptions {
            fast_math: false,
            max_rounds: 32,
            inline: true,
        }
    }
}

/// What [`optimize`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OptStats {
    /// Instructions before.
    pub insts_before: usize,
    /// Instructions after.
    pub insts_after: usize,
    /// Rounds run (the last one changed nothing when a fixed point was reached).
    pub rounds: usize,
    /// True when the last round changed nothing.
    pub fixed_point: bool,
    /// Calls inlined ([`optimize_module`] only).
    pub inlined: usize,
}

/// Optimises `f` to a fixed point, treating calls as having effects.
pub fn optimize(f: &mut Function, opts: &OptOptions) -> OptStats {
    optimize_with(f, opts, &|_| false)
}

/// Optimises `f`; `pure_call(name)` says a call to `@name` may be removed when unused.
pub fn optimize_with(
    f: &mut Function,
    opts: &OptOptions,
    pure_call: &dyn Fn(&str) -> bool,
) -> OptStats {
    let mut stats = OptStats {
        insts_before: f.num_insts(),
        ..OptStats::default()
    };
    while stats.rounds < opts.max_rounds {
        stats.rounds += 1;
        let mut changed = constfold::constfold(f);
        changed |= simplify::simplify(f, opts.fast_math);
        changed |= cse::cse(f);
        changed |= dce::dce_with(f, pure_call);
        if !changed {
            stats.fixed_point = true;
            break;
        }
    }
    *f = compact(f);
    stats.insts_after = f.num_insts();
    stats
}

/// Optimises every function of `m`; calls to functions without guards (transitively)
/// count as pure. Then, with [`OptOptions::inline`], inlines calls ([`crate::inline`])
/// and optimises the functions that changed again. Returns the summed statistics
/// (`fixed_point`: all reached one).
pub fn optimize_module(m: &mut Module, opts: &OptOptions) -> OptStats {
    // Inlining changes no function's purity (a guard reaches a caller only with the
    // call that made the caller impure already), so the set stays valid throughout.
    let pure = pure_functions(m);
    let mut total = OptStats {
        fixed_point: true,
        ..OptStats::default()
    };
    let mut after = Vec::with_capacity(m.funcs.len());
    for f in &mut m.funcs {
        let s = optimize_with(f, opts, &|n| pure.contains(n));
        total.insts_before += s.insts_before;
        after.push(s.insts_after);
        total.rounds = total.rounds.max(s.rounds);
        total.fixed_point &= s.fixed_point;
    }
    if opts.inline {
        let done = inline::inline_module(m);
        total.inlined = done.sites;
        for fi in done.rebuilt {
            let s = optimize_with(&mut m.funcs[fi], opts, &|n| pure.contains(n));
            after[fi] = s.insts_after;
            total.rounds = total.rounds.max(s.rounds);
            total.fixed_point &= s.fixed_point;
        }
    }
    total.insts_after = after.iter().sum();
    total
}

/// Names of the functions of `m` that hold no `guard` and call only such functions:
/// calling them has no effect but their results. Linear: impurity spreads from the
/// functions holding a guard (or calling an unknown function) to their callers, once
/// over the call graph.
pub fn pure_functions(m: &Module) -> HashSet<String> {
    let graph = jitad_ir::callgraph::CallGraph::new(m);
    let n = m.funcs.len();
    let mut impure = vec![false; n];
    let mut callers: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut queue = Vec::new();
    for (i, f) in m.funcs.iter().enumerate() {
        let guarded = f
            .insts_in_order()
            .iter()
            .any(|&k| matches!(f.insts[k].op, Op::Guard));
        let mut unknown = false;
        for s in graph.sites(i) {
            match s.callee {
                Some(c) => callers[c].push(i),
                None => unknown = true,
            }
        }
        if guarded || unknown {
            impure[i] = true;
            queue.push(i);
        }
    }
    while let Some(g) = queue.pop() {
        for &c in &callers[g] {
            if !std::mem::replace(&mut impure[c], true) {
                queue.push(c);
            }
        }
    }
    m.funcs
        .iter()
        .zip(&impure)
        .filter(|(_, &bad)| !bad)
        .map(|(f, _)| f.name.clone())
        .collect()
}

/// A copy of `f` holding only what its body reaches, with values and instructions
/// numbered in program order. Names are kept.
pub fn compact(f: &Function) -> Function {
    let mut g = Function::new(f.name.clone(), jitad_ir::Signature::default());
    g.sig = f.sig.clone();
    g.sig.params.clear();
    let mut map: SecondaryMap<Value, Option<Value>> = SecondaryMap::new();
    let copy_name = |g: &mut Function, old: Value, new: Value| {
        if let Some(n) = f.name_of(old) {
            g.set_name(new, n);
        }
    };
    for &p in f.params() {
        let np = g.add_param(f.ty(p));
        copy_name(&mut g, p, np);
        map[p] = Some(np);
    }
    let body = g.body;
    let mut stack: Vec<(Region, Region, usize)> = vec![(f.body, body, 0)];
    while let Some(top) = stack.len().checked_sub(1) {
        let (old_r, new_r, pos) = stack[top];
        let Some(&inst) = f.regions[old_r].insts.get(pos) else {
            stack.pop();
            continue;
        };
        stack[top].2 += 1;
        let d = &f.insts[inst];
        // Unmapped operands (malformed input) keep their old ids: the verifier reports them.
        let args: Vec<Value> = d.args.iter().map(|&a| map[a].unwrap_or(a)).collect();
        let tys: Vec<_> = d.results.iter().map(|&r| f.ty(r)).collect();
        let new_regions: Vec<Region> = d.regions.iter().map(|_| g.new_region()).collect();
        let ni = g.create_inst(d.op.clone(), args, &tys, new_regions.clone());
        g.regions[new_r].insts.push(ni);
        let nres = g.insts[ni].results.clone();
        for (&r, &nr) in d.results.iter().zip(&nres) {
            copy_name(&mut g, r, nr);
            map[r] = Some(nr);
        }
        for (&or, &nr) in d.regions.iter().zip(&new_regions).rev() {
            for &p in &f.regions[or].params {
                let np = g.add_region_param(nr, f.ty(p));
                copy_name(&mut g, p, np);
                map[p] = Some(np);
            }
            stack.push((or, nr, 0));
        }
    }
    g
}
