//! The clean-up pipeline: constant folding, simplification, CSE and DCE run in turn
//! until none changes the function (a fixed point), then the function is compacted
//! (renumbered in program order, dropping what the passes left behind), so printed
//! dumps use small, ordered value numbers. After the first round a pass runs again
//! only if a change since its last run may have given it work (see `optimize_with` for
//! which change re-arms which pass), so the round that only confirms the fixed point
//! costs the re-armed passes, not all four. [`OptStats::times`] says where the time
//! went.
//!
//! On a module, [`optimize_module`] then inlines calls under [`crate::inline`]'s cost
//! model (callees measured after their clean-up) and cleans the rebuilt functions again.
//!
//! Every pass preserves the function's results bit for bit (unless
//! [`OptOptions::fast_math`] allows the unsafe algebra of [`crate::simplify`]) and its
//! guards, so `optimize` is safe on any verified function, primal or derived.

use crate::{constfold, cse, dce, inline, simplify};
use cranelift_entity::{EntityRef, PrimaryMap, SecondaryMap};
use jitad_ir::{Function, InstData, Module, Op, Region, Regions, Value, ValueData, ValueDef};
use std::collections::HashSet;
use std::time::{Duration, Instant};

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
    /// Rounds run (a round runs the passes still pending; the last one changed nothing
    /// when a fixed point was reached).
    pub rounds: usize,
    /// True when no pass was left with possible work.
    pub fixed_point: bool,
    /// Calls inlined ([`optimize_module`] only).
    pub inlined: usize,
    /// Where the time went (summed over rounds and, for a module, functions).
    pub times: PassTimes,
}

/// Time spent in each clean-up pass, summed over the rounds that ran it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassTimes {
    /// [`constfold::constfold`].
    pub constfold: Duration,
    /// [`simplify::simplify`].
    pub simplify: Duration,
    /// [`cse::cse`].
    pub cse: Duration,
    /// [`dce::dce_with`].
    pub dce: Duration,
    /// [`compact`] (renumbering at the end).
    pub compact: Duration,
    /// [`inline::inline_module`] and the purity analysis ([`optimize_module`] only).
    pub inline: Duration,
}

impl PassTimes {
    fn slot(&mut self, pass: u8) -> &mut Duration {
        match pass {
            CONSTFOLD => &mut self.constfold,
            SIMPLIFY => &mut self.simplify,
            CSE => &mut self.cse,
            _ => &mut self.dce,
        }
    }

    fn accumulate(&mut self, o: &PassTimes) {
        self.constfold += o.constfold;
        self.simplify += o.simplify;
        self.cse += o.cse;
        self.dce += o.dce;
        self.compact += o.compact;
        self.inline += o.inline;
    }

    /// The sum.
    pub fn total(&self) -> Duration {
        self.constfold + self.simplify + self.cse + self.dce + self.compact + self.inline
    }
}

// The passes of a round, as bits of a set.
const CONSTFOLD: u8 = 1;
const SIMPLIFY: u8 = 2;
const CSE: u8 = 4;
const DCE: u8 = 8;
const ALL: u8 = CONSTFOLD | SIMPLIFY | CSE | DCE;

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
    // Each round runs, in order, only the passes that may find something: those not run
    // yet, and those a later change may have given work. What a change can enable:
    // - constfold and simplify rewrite instructions (new constants, new operands), which
    //   any pass may act on, themselves included (neither is idempotent: a folded
    //   `select` becomes a `broadcast` folded next time, a rewritten op may match
    //   another rule);
    // - cse replaces a value by an equal one (same op, same operands), so every
    //   operand keeps its constness and defining op: constfold sees nothing new and cse
    //   (program order, operands resolved before lookup) is idempotent, but simplify's
    //   rules on equal operands (`select c, x, x`, `min x, x`, ...) and dce may apply;
    // - dce computes liveness exactly (idempotent) and only removes instructions no
    //   live one uses; the other passes look only at instructions and their operands'
    //   definitions, so removing dead ones gives them nothing new.
    // So the confirming round of the old "every pass until none changes" loop, which
    // ran all four passes to learn nothing, is at most the passes a change re-armed.
    let mut pending = ALL;
    while pending != 0 && stats.rounds < opts.max_rounds {
        stats.rounds += 1;
        let mut run =
            |pass: u8, enables: u8, f: &mut Function, go: &dyn Fn(&mut Function) -> bool| {
                if pending & pass == 0 {
                    return;
                }
                pending &= !pass;
                let t = Instant::now();
                let changed = go(f);
                *stats.times.slot(pass) += t.elapsed();
                if changed {
                    pending |= enables;
                }
            };
        run(CONSTFOLD, ALL, f, &|f| constfold::constfold(f));
        run(SIMPLIFY, ALL, f, &|f| simplify::simplify(f, opts.fast_math));
        run(CSE, SIMPLIFY | DCE, f, &|f| cse::cse(f));
        run(DCE, 0, f, &|f| dce::dce_with(f, pure_call));
    }
    stats.fixed_point = pending == 0;
    let t = Instant::now();
    // A function the passes left as they found it is often compact already (a
    // transform emits in program order): then a read-only walk replaces the rebuild,
    // which on a 10⁶-instruction gradient cost a third of the clean-up.
    if !is_compact(f) {
        let old = std::mem::replace(
            f,
            Function::new(String::new(), jitad_ir::Signature::default()),
        );
        *f = compact_owned(old);
    }
    stats.times.compact += t.elapsed();
    stats.insts_after = f.insts.len();
    stats
}

/// Optimises every function of `m`; calls to functions without guards (transitively)
/// count as pure. Then, with [`OptOptions::inline`], inlines calls ([`crate::inline`])
/// and optimises the functions that changed again. Returns the summed statistics
/// (`fixed_point`: all reached one).
pub fn optimize_module(m: &mut Module, opts: &OptOptions) -> OptStats {
    // Inlining changes no function's purity (a guard reaches a caller only with the
    // call that made the caller impure already), so the set stays valid throughout.
    let t = Instant::now();
    // Purity matters only to calls and loop drivers; a module without any (a traced
    // function, its gradient) skips the analysis' walk.
    let has_callees = m
        .funcs
        .iter()
        .any(|f| f.insts.values().any(|d| d.op.calls()));
    let pure = if has_callees {
        pure_functions(m)
    } else {
        HashSet::new()
    };
    let mut total = OptStats {
        fixed_point: true,
        ..OptStats::default()
    };
    total.times.inline += t.elapsed();
    let mut after = Vec::with_capacity(m.funcs.len());
    for f in &mut m.funcs {
        let s = optimize_with(f, opts, &|n| pure.contains(n));
        total.insts_before += s.insts_before;
        after.push(s.insts_after);
        total.rounds = total.rounds.max(s.rounds);
        total.fixed_point &= s.fixed_point;
        total.times.accumulate(&s.times);
    }
    // Only `call`s are inlined: without any (a traced function, its gradient), the
    // inliner's call graph and size measurements would find nothing.
    let any_call = m
        .funcs
        .iter()
        .any(|f| f.insts.values().any(|d| matches!(d.op, Op::Call(_))));
    if opts.inline && any_call {
        let t = Instant::now();
        let done = inline::inline_module(m);
        total.times.inline += t.elapsed();
        total.inlined = done.sites;
        for fi in done.rebuilt {
            let s = optimize_with(&mut m.funcs[fi], opts, &|n| pure.contains(n));
            after[fi] = s.insts_after;
            total.rounds = total.rounds.max(s.rounds);
            total.fixed_point &= s.fixed_point;
            total.times.accumulate(&s.times);
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
    // One walk per function finds both its guards and its callees (the call graph's
    // own walk would be a second one).
    let index = jitad_ir::callgraph::name_index(m);
    let n = m.funcs.len();
    let mut impure = vec![false; n];
    let mut callers: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut queue = Vec::new();
    for (i, f) in m.funcs.iter().enumerate() {
        let mut guarded = false;
        let mut unknown = false;
        for k in f.insts_in_order() {
            let op = &f.insts[k].op;
            guarded |= matches!(op, Op::Guard);
            for c in op.callees() {
                match index.get(c) {
                    Some(&c) => callers[c].push(i),
                    None => unknown = true,
                }
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

/// True if [`compact_owned`] would give `f` back unchanged: every region, value and
/// instruction is reached, numbered as `compact_owned` numbers them (the walk below is
/// its walk), and their definitions and parents agree.
fn is_compact(f: &Function) -> bool {
    let (mut nv, mut ni, mut nr) = (0usize, 0usize, 1usize);
    // What `compact_owned` rebuilds besides the numbering: the signature's parameters
    // from the body's, the body's (absent) parent, the names of values that exist.
    let params_agree = f.sig.params.len() == f.params().len()
        && f.params()
            .iter()
            .zip(&f.sig.params)
            .all(|(&p, &t)| f.values.get(p).map(|d| d.ty) == Some(t));
    if f.body.index() != 0
        || f.regions.get(f.body).is_none_or(|b| b.parent.is_some())
        || !params_agree
        || f.names.keys().any(|v| v.index() >= f.values.len())
    {
        return false;
    }
    let param_ok = |v: Value, r: Region, k: usize, nv: &mut usize| {
        let ok = v.index() == *nv
            && f.values.get(v).map(|d| d.def) == Some(ValueDef::Param(r, k as u32));
        *nv += 1;
        ok
    };
    for (k, &p) in f.params().iter().enumerate() {
        if !param_ok(p, f.body, k, &mut nv) {
            return false;
        }
    }
    let mut stack: Vec<(Region, usize)> = vec![(f.body, 0)];
    while let Some(top) = stack.last_mut() {
        let (r, pos) = *top;
        let Some(&inst) = f.regions[r].insts.get(pos) else {
            stack.pop();
            continue;
        };
        top.1 += 1;
        if inst.index() != ni {
            return false;
        }
        ni += 1;
        let Some(d) = f.insts.get(inst) else {
            return false;
        };
        for &rr in &d.regions {
            if rr.index() != nr || f.regions.get(rr).and_then(|x| x.parent) != Some(inst) {
                return false;
            }
            nr += 1;
        }
        for (k, &v) in d.results.iter().enumerate() {
            if v.index() != nv
                || f.values.get(v).map(|x| x.def) != Some(ValueDef::Result(inst, k as u32))
            {
                return false;
            }
            nv += 1;
        }
        for &rr in d.regions.iter().rev() {
            for (k, &p) in f.regions[rr].params.iter().enumerate() {
                if !param_ok(p, rr, k, &mut nv) {
                    return false;
                }
            }
            stack.push((rr, 0));
        }
    }
    nv == f.values.len() && ni == f.insts.len() && nr == f.regions.len()
}

/// A copy of `f` holding only what its body reaches, with values and instructions
/// numbered in program order. Names are kept.
pub fn compact(f: &Function) -> Function {
    compact_owned(f.clone())
}

/// [`compact`], consuming `f`: ops, operand lists and names move into the new function
/// instead of being copied (on a 10⁶-instruction gradient the copies and their frees
/// were most of the pass).
pub fn compact_owned(mut f: Function) -> Function {
    let mut g = Function::new(std::mem::take(&mut f.name), jitad_ir::Signature::default());
    g.sig = f.sig.clone();
    g.sig.params.clear();
    // Upper bounds: the new function holds at most what the old one does.
    g.insts = PrimaryMap::with_capacity(f.insts.len());
    g.values = PrimaryMap::with_capacity(f.values.len());
    let mut map: SecondaryMap<Value, Option<Value>> = SecondaryMap::with_capacity(f.values.len());
    let params = f.params().to_vec();
    for p in params {
        let np = g.add_param(f.ty(p));
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
        let d = &mut f.insts[inst];
        // Unmapped operands (malformed input) keep their old ids: the verifier reports them.
        let mut args = std::mem::take(&mut d.args);
        for a in &mut args {
            *a = map[*a].unwrap_or(*a);
        }
        let op = std::mem::replace(&mut d.op, Op::Add);
        let old_regions = std::mem::take(&mut d.regions);
        // The old result list is renumbered in place and becomes the new one: what
        // `Function::create_inst` does, without allocating.
        let mut results = std::mem::take(&mut d.results);
        let new_regions: Regions = old_regions.get().map(|_| g.new_region()).into();
        let ni = g.insts.next_key();
        for (k, r) in results.iter_mut().enumerate() {
            let nr = g.values.push(ValueData {
                ty: f.values[*r].ty,
                def: ValueDef::Result(ni, k as u32),
            });
            map[*r] = Some(nr);
            *r = nr;
        }
        for &r in &new_regions {
            g.regions[r].parent = Some(ni);
        }
        g.insts.push(InstData {
            op,
            args,
            results,
            regions: new_regions,
        });
        g.regions[new_r].insts.push(ni);
        for (&or, &nr) in old_regions.iter().zip(&new_regions).rev() {
            let ps = std::mem::take(&mut f.regions[or].params);
            for p in ps {
                let np = g.add_region_param(nr, f.ty(p));
                map[p] = Some(np);
            }
            stack.push((or, nr, 0));
        }
    }
    // Names move once the map is complete: one pass over the (usually small) table
    // rather than a lookup per value, which on a 10⁶-instruction gradient with 10⁵
    // named parameters missed the cache every time.
    g.names.reserve(f.names.len());
    for (old, n) in f.names.drain() {
        if let Some(new) = map.get(old).copied().flatten() {
            g.names.insert(new, n);
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitad_ir::testgen::{random_module, GenOptions};
    use jitad_ir::Type;

    /// The parts of a function that numbering shows, for comparing two.
    fn layout(f: &Function) -> (String, Vec<(Type, ValueDef)>, usize, usize) {
        let values = f.values.values().map(|d| (d.ty, d.def)).collect();
        (
            jitad_ir::print_function(f),
            values,
            f.insts.len(),
            f.regions.len(),
        )
    }

    /// `is_compact` holds exactly when compacting would change nothing: always after
    /// `compact`, and on a function it accepts, `compact` gives the same layout back.
    /// Removing an instruction from its region (as DCE does) makes a function not
    /// compact.
    #[test]
    fn is_compact_means_compact_changes_nothing() {
        let (mut accepted, mut refused) = (0, 0);
        for seed in 0..60 {
            let opts = GenOptions {
                loops: seed % 3 != 0,
                all_types: seed % 2 == 0,
                ..GenOptions::default()
            };
            for f in &random_module(seed, &opts).funcs {
                let g = compact(f);
                assert!(is_compact(&g), "seed {seed} @{}", f.name);
                if is_compact(f) {
                    accepted += 1;
                    assert_eq!(layout(f), layout(&g), "seed {seed} @{}", f.name);
                } else {
                    refused += 1;
                }
                // An instruction no region reaches, numbered last.
                let mut h = g.clone();
                let loose = h.new_region();
                h.append_inst(
                    loose,
                    Op::Const(jitad_ir::Constant::F64(1.0)),
                    vec![],
                    &[Type::F64],
                    None,
                );
                assert!(!is_compact(&h), "seed {seed} @{}", f.name);
                // A hole in the numbering.
                let mut h = g.clone();
                let body = h.body;
                if h.regions[body].insts.len() > 1 {
                    h.regions[body].insts.remove(0);
                    assert!(!is_compact(&h), "seed {seed} @{}", f.name);
                }
            }
        }
        assert!(
            accepted > 0 && refused > 0,
            "{accepted} accepted, {refused} refused"
        );
    }
}
