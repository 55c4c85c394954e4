//! Inlining: `call` instructions replaced by a copy of the callee's body, under a
//! size-based cost model, so small helpers and one-off callees cost no call (no
//! arguments and results through memory, no frame, no stack check) and the clean-up
//! passes see across the former call boundary.
//!
//! # Cost model
//!
//! Sizes are instructions reachable from a body, nested regions and the terminator
//! included, measured on the already cleaned-up functions ([`crate::optimize_module`]
//! runs the other passes first) and *after* the callee's own planned inlining, so a
//! callee that grew past the limit stops being copied. A `call` of `@f` to `@g` is
//! inlined when all of these hold (single-use callees are decided first, then the
//! others, calls in deeper loop bodies first):
//!
//! - `@g` is a known function, `@g ≠ @f`, `@g` is on no call cycle, and the call's
//!   arity and types match `@g`'s signature (verified IR always does);
//! - either the call is the **only reference** to `@g` in the module (inlining it
//!   duplicates nothing: the definition becomes unreferenced), or `@g` is **small**,
//!   at most [`SMALL_CALLEE`] instructions, and the instructions copied into `@f` (by
//!   its own small calls and by the single-use callees merged into it) stay within
//!   `max(n, GROWTH_FLOOR)` ([`GROWTH_FLOOR`]), `n` being the instructions of `@f` and
//!   of those merged callees: copies at most double a large function, however many
//!   small calls it makes and however deep they nest.
//!
//! Large callees with several references are kept as calls. Calls in loop bodies come
//! first so the allowance goes where a call would run most often. Only `call` is
//! inlined: the step functions `tapeloop` and `revloop` name are callees by reference
//! and stay functions.
//!
//! # Guarantees
//!
//! - Results are unchanged bit for bit: the copied instructions are the callee's, with
//!   operands renamed; the pass knows no op but `call` (tensor values, loops, guards
//!   and drivers inside a callee are copied as they are). Guards keep their effect.
//! - No definition is removed: a callee stays in the module while anything references
//!   it (and even when nothing does: the pipeline has no notion of which functions are
//!   public; [`crate::optimize_module`]'s callers prune).
//! - Linear time. Decisions are made first, callees before callers
//!   ([`CallGraph::post_order`]), from sizes alone, without copying. Then only the
//!   functions that must exist with their new body are rebuilt: those with planned
//!   inlining that are still referenced by a call left in place or a driver, or not
//!   referenced at all (entries). A function whose every reference was inlined keeps
//!   its body unchanged (its callers carry the inlined copies). So a chain of `n`
//!   single-use functions becomes one body built once, not `n` growing bodies. Each
//!   output instruction is created once; the work is linear in the output, which the
//!   allowance keeps within a constant factor of the input.
//! - Iterative throughout (explicit stacks over regions and inlined bodies); modules
//!   with call cycles or unknown callees (which the verifier rejects) are left
//!   unchanged.
//! - Chunking in the JIT is unaffected: a grown top-level body is chunked like any
//!   other, and a loop body grown past the JIT's threshold is outlined by codegen.

use cranelift_entity::{EntityRef, SecondaryMap};
use jitad_ir::callgraph::CallGraph;
use jitad_ir::{Function, Inst, Module, Op, Region, Regions, Value};
use rustc_hash::FxHashSet;
use std::collections::HashMap;

/// Callees of at most this many instructions (terminator included) are copied into
/// every caller (within the caller's allowance). A call passes its arguments and
/// results through memory and pays a frame, a stack check and a return, comparable to
/// a few tens of scalar ops: for a callee this small the call costs about as much as
/// the body, and a copy adds at most this many instructions per site. It is also the
/// size under which the JIT treats a function as small (single-pass register
/// allocation), so a caller of such helpers stops paying per-function set-up too.
pub const SMALL_CALLEE: usize = 32;

/// A function may grow through copies of small callees by its own size or this many
/// instructions, whichever is larger: small functions (an RK4 step calling its vector
/// field four times, a wrapper around a few helpers) inline all their small helpers,
/// large ones at most double. Total growth is also bounded by [`SMALL_CALLEE`] per
/// call site, so the output stays linear in the input whatever the floor.
pub const GROWTH_FLOOR: usize = 1024;

/// What [`inline_module`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InlineStats {
    /// Calls replaced by the callee's body (counted once per planned site, including
    /// sites inside callees that are inlined in turn).
    pub sites: usize,
    /// Indices (into `Module::funcs`) of the functions whose body was rebuilt.
    pub rebuilt: Vec<usize>,
}

/// The decisions: per function, the `call` instructions to inline.
struct Plan {
    inline: Vec<FxHashSet<Inst>>,
    /// Functions to rebuild, callees first.
    rebuild: Vec<usize>,
    sites: usize,
}

/// Inlines calls in `m` under the cost model of the module docs. Returns what changed;
/// the rebuilt functions are not cleaned up (the pipeline does that).
pub fn inline_module(m: &mut Module) -> InlineStats {
    let Some(plan) = plan(m) else {
        return InlineStats::default();
    };
    let mut rebuilt = Vec::new();
    let mut bodies = Vec::new();
    let index = jitad_ir::callgraph::name_index(m);
    for &fi in &plan.rebuild {
        if let Some(f) = expand(m, &index, fi, &plan.inline) {
            bodies.push((fi, f));
        }
    }
    for (fi, f) in bodies {
        m.funcs[fi] = f;
        rebuilt.push(fi);
    }
    InlineStats {
        sites: plan.sites,
        rebuilt,
    }
}

/// The cost model: decides every call, callees before callers, from sizes alone.
fn plan(m: &Module) -> Option<Plan> {
    let graph = CallGraph::new(m);
    let n = m.funcs.len();
    let all: Vec<usize> = (0..n).collect();
    // Verified modules have neither cycles nor unknown callees; leave others alone.
    let order = graph.post_order(&all).ok()?;
    let mut refs = vec![0usize; n];
    for fi in 0..n {
        for s in graph.sites(fi) {
            if let Some(g) = s.callee {
                refs[g] += 1;
            }
        }
    }
    // Per function, as planned: instructions of its own and of the single-use callees
    // merged into it, and instructions copied in (by it or by those callees).
    let mut own: Vec<usize> = m.funcs.iter().map(Function::num_insts).collect();
    let mut copied = vec![0usize; n];
    let mut inlined_refs = vec![0usize; n];
    let mut inline: Vec<FxHashSet<Inst>> = vec![FxHashSet::default(); n];
    let mut sites = 0;
    for &fi in &order {
        let f = &m.funcs[fi];
        let depth = loop_depths(f);
        let mut cands: Vec<(Inst, usize)> = graph
            .sites(fi)
            .iter()
            .filter(|s| !s.driver)
            .filter_map(|s| Some((s.inst, s.callee?)))
            .filter(|&(inst, g)| g != fi && !graph.is_recursive(g) && fits(f, inst, &m.funcs[g]))
            .collect();
        // Single-use callees first (they set the allowance), then deeper loops first,
        // program order among equals (the sort is stable).
        cands.sort_by_key(|&(inst, g)| (refs[g] != 1, std::cmp::Reverse(depth[inst])));
        for (inst, g) in cands {
            // The call goes; the callee's body but its `ret` comes in.
            let body = (own[g] + copied[g]).saturating_sub(1);
            if refs[g] == 1 {
                own[fi] = (own[fi] + own[g]).saturating_sub(2);
                copied[fi] += copied[g];
            } else if body < SMALL_CALLEE && copied[fi] + body <= own[fi].max(GROWTH_FLOOR) {
                own[fi] = own[fi].saturating_sub(1);
                copied[fi] += body;
            } else {
                continue;
            }
            inline[fi].insert(inst);
            inlined_refs[g] += 1;
            sites += 1;
        }
    }
    let rebuild = order
        .into_iter()
        .filter(|&fi| !inline[fi].is_empty() && (refs[fi] == 0 || inlined_refs[fi] < refs[fi]))
        .collect();
    Some(Plan {
        inline,
        rebuild,
        sites,
    })
}

/// True when `call` in `f` matches `g`'s signature and `g`'s body ends in `ret` with as
/// many values as the call has results.
fn fits(f: &Function, call: Inst, g: &Function) -> bool {
    let Some(d) = f.insts.get(call) else {
        return false;
    };
    let returned = g.returned();
    g.ret_inst().is_some()
        && d.args.len() == g.params().len()
        && d.results.len() == returned.len()
        && d.args
            .iter()
            .zip(g.params())
            .all(|(&a, &p)| f.values.get(a).map(|v| v.ty) == g.values.get(p).map(|v| v.ty))
        && d.results
            .iter()
            .zip(returned)
            .all(|(&r, &v)| f.values.get(r).map(|x| x.ty) == g.values.get(v).map(|x| x.ty))
}

/// How many loop bodies enclose each instruction of `f` reachable from its body.
fn loop_depths(f: &Function) -> SecondaryMap<Inst, usize> {
    let mut depth = SecondaryMap::new();
    let mut stack: Vec<(Region, usize)> = vec![(f.body, 0)];
    while let Some((r, d)) = stack.pop() {
        let Some(rd) = f.regions.get(r) else { continue };
        for &i in &rd.insts {
            depth[i] = d;
            if let Some(id) = f.insts.get(i) {
                stack.extend(id.regions.iter().map(|&nr| (nr, d + 1)));
            }
        }
    }
    depth
}

/// Where an inlined body's `ret` sends its values.
struct Return {
    /// The value map of the caller's instance.
    parent_map: usize,
    /// The call's results (values of the caller's source function).
    results: Vec<Value>,
    /// Values of the new function from this index on were made by this instance.
    first_new: usize,
}

/// One region being copied.
struct Frame {
    /// Source function (module index).
    func: usize,
    src: Region,
    pos: usize,
    dst: Region,
    /// Index into the value maps (one per function instance being copied).
    map: usize,
    /// `Some` for the body of an inlined callee.
    ret: Option<Return>,
}

/// A copy of function `fi` with the planned calls (and, transitively, the planned calls
/// of the inlined callees) replaced by the callees' bodies. `None` if an operand cannot
/// be resolved (malformed input: the function is then left as it is).
fn expand(
    m: &Module,
    index: &HashMap<&str, usize>,
    fi: usize,
    inline: &[FxHashSet<Inst>],
) -> Option<Function> {
    let f = &m.funcs[fi];
    let mut g = Function::new(f.name.clone(), jitad_ir::Signature::default());
    g.sig = f.sig.clone();
    g.sig.params.clear();
    let mut maps: Vec<SecondaryMap<Value, Option<Value>>> = vec![SecondaryMap::new()];
    for &p in f.params() {
        let np = g.add_param(f.ty(p));
        if let Some(n) = f.name_of(p) {
            g.set_name(np, n);
        }
        maps[0][p] = Some(np);
    }
    let body = g.body;
    let mut stack = vec![Frame {
        func: fi,
        src: f.body,
        pos: 0,
        dst: body,
        map: 0,
        ret: None,
    }];
    while let Some(top) = stack.last_mut() {
        let src = &m.funcs[top.func];
        let Some(&inst) = src
            .regions
            .get(top.src)
            .and_then(|rd| rd.insts.get(top.pos))
        else {
            // An inlined body must end in its `ret`, handled below.
            if stack.pop().is_some_and(|fr| fr.ret.is_some()) {
                return None;
            }
            continue;
        };
        top.pos += 1;
        let (func, dst, map) = (top.func, top.dst, top.map);
        let d = src.insts.get(inst)?;
        let args: Vec<Value> = d
            .args
            .iter()
            .map(|&a| maps[map][a])
            .collect::<Option<_>>()?;
        if matches!(d.op, Op::Ret) && top.ret.is_some() {
            let ret = stack.pop()?.ret?;
            maps.pop();
            for (&r, &v) in ret.results.iter().zip(&args) {
                maps[ret.parent_map][r] = Some(v);
                // The caller's name reads better in the caller than the callee's.
                let owner = &m.funcs[stack.last()?.func];
                if let (true, Some(n)) = (v.index() >= ret.first_new, owner.name_of(r)) {
                    g.set_name(v, n);
                }
            }
            continue;
        }
        if let Op::Call(name) = &d.op {
            if inline[func].contains(&inst) {
                let &callee = index.get(name.as_str())?;
                let cf = &m.funcs[callee];
                let mut cmap = SecondaryMap::new();
                for (&p, &a) in cf.params().iter().zip(&args) {
                    cmap[p] = Some(a);
                }
                maps.push(cmap);
                stack.push(Frame {
                    func: callee,
                    src: cf.body,
                    pos: 0,
                    dst,
                    map: maps.len() - 1,
                    ret: Some(Return {
                        parent_map: map,
                        results: d.results.to_vec(),
                        first_new: g.values.len(),
                    }),
                });
                continue;
            }
        }
        let tys: Vec<_> = d.results.iter().map(|&r| src.ty(r)).collect();
        let new_regions: Regions = d.regions.get().map(|_| g.new_region()).into();
        let ni = g.create_inst(d.op.clone(), args, &tys, new_regions.get());
        g.regions[dst].insts.push(ni);
        for (k, &r) in d.results.iter().enumerate() {
            let nr = g.insts[ni].results[k];
            if let Some(n) = src.name_of(r) {
                g.set_name(nr, n);
            }
            maps[map][r] = Some(nr);
        }
        for (&or, &nr) in d.regions.iter().zip(&new_regions) {
            for &p in &src.regions.get(or)?.params {
                let np = g.add_region_param(nr, src.ty(p));
                if let Some(n) = src.name_of(p) {
                    g.set_name(np, n);
                }
                maps[map][p] = Some(np);
            }
        }
        // Nested regions are copied before the rest of this one (program order).
        for (&or, &nr) in d.regions.iter().zip(&new_regions).rev() {
            stack.push(Frame {
                func,
                src: or,
                pos: 0,
                dst: nr,
                map,
                ret: None,
            });
        }
    }
    Some(g)
}
