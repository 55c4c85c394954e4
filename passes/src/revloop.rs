//! Reverse mode through `loop`: the loop's iteration becomes a function, its vjp the
//! backward iteration; the forward sweep records the iterations' states and the adjoint
//! sweep runs the backward iterations under a checkpointing policy.
//!
//! For a top-level `loop` of `@f` with active values, reverse mode makes two functions
//! and two instructions:
//!
//! - `@F = @<derivative>.loop<k>(%i: i64, s..., c...) -> s...`: the loop body, outlined.
//!   `s` is the carried state, `c` the values the body reads from outside the loop
//!   (its *captures*, in order of first use). Calls in the body are inlined, so the
//!   body's vjp is one function that recomputes nothing twice.
//! - `@B = @<derivative>.loop<k>.bwd(%i, s..., c..., sbar..., cbar...) -> (sbar..., cbar...)`:
//!   one backward iteration. It calls `vjp(@F)` with respect to the active state slots
//!   and active captures, returns the state adjoint before the iteration and adds the
//!   iteration's capture adjoints to the running sums `cbar`. The vjp recomputes the
//!   body's intermediates from the iteration's state, so only carried state is ever
//!   stored.
//! - In the forward sweep, `%s..., %tape = tapeloop ... fwd @F (inits) caps (c)` replaces
//!   the loop: it runs the iterations through `@F` and records the states the policy
//!   keeps ([`jitad_ir::Op::TapeLoop`]).
//! - In the adjoint sweep, `revloop ... fwd @F bwd @B tape %tape (inits) caps (c)
//!   seed (ybar, 0...)` ([`jitad_ir::Op::RevLoop`]) runs the backward iterations from
//!   the last to the first, reading recorded states or recomputing them as the policy
//!   says ([`jitad_ir::checkpoint`]), and yields the adjoints of the inits and the
//!   summed adjoints of the captures, accumulated like any operand's.
//!
//! Nested loops need nothing more: the inner loop is a top-level loop of `@F`, so
//! `vjp(@F)` reverses it with its own `tapeloop`/`revloop` pair, run inside each outer
//! backward iteration. The trip count may be an `i64` known only at call time.
//! Forward mode carries a pair as a whole (`crate::jvp`): the same ops over tangent
//! steps `@F.tan`/`@B.tan` whose state, captures and adjoints are each followed by
//! their tangents, so an hvp of a function with a loop works. Reverse mode through a
//! pair (reverse over reverse) is not supported yet and says so.

use crate::activity::Activity;
use crate::derive::{Kind, Session};
use crate::emit::{is_float, Emitter};
use crate::error::{AdError, Result};
use cranelift_entity::SecondaryMap;
use jitad_ir::checkpoint::Policy;
use jitad_ir::{Function, Inst, LoopBounds, Op, Region, RevLoop, Signature, TapeLoop, Type, Value};
use std::collections::HashSet;

/// How one loop of the source is reversed.
#[derive(Clone, Debug)]
pub(crate) struct LoopPlan {
    /// The forward iteration `@F`.
    pub fwd: String,
    /// The backward iteration `@B`.
    pub bwd: String,
    /// The captured values (of the source function), in `@F`'s parameter order.
    pub caps: Vec<Value>,
    /// Carried slots with adjoints, in order.
    pub active_slots: Vec<usize>,
    /// Indices into `caps` of the captures with adjoints.
    pub active_caps: Vec<usize>,
    /// The loop's bounds.
    pub bounds: LoopBounds,
}

fn malformed(f: &Function, reason: &str) -> AdError {
    AdError::Malformed {
        func: f.name.clone(),
        reason: reason.into(),
    }
}

/// Values read inside `region` (nested regions included) but defined outside it, in
/// order of first use.
fn captures(f: &Function, region: Region) -> Vec<Value> {
    let mut inside: HashSet<Value> = HashSet::new();
    let mut stack = vec![region];
    let mut all_insts = Vec::new();
    while let Some(r) = stack.pop() {
        inside.extend(f.regions[r].params.iter().copied());
        for &i in &f.regions[r].insts {
            inside.extend(f.insts[i].results.iter().copied());
            all_insts.push(i);
            stack.extend(f.insts[i].regions.iter().copied());
        }
    }
    // First use in program order: walk again in order.
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut order = vec![(region, 0usize)];
    while let Some((r, pos)) = order.pop() {
        let Some(&i) = f.regions[r].insts.get(pos) else {
            continue;
        };
        order.push((r, pos + 1));
        for &a in &f.insts[i].args {
            if !inside.contains(&a) && seen.insert(a) {
                out.push(a);
            }
        }
        for &nr in f.insts[i].regions.iter().rev() {
            order.push((nr, 0));
        }
    }
    out
}

/// What to do with a region's terminator when copying it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Term {
    /// Copy it (a nested loop body's `yield`).
    Keep,
    /// The outlined loop body: its `yield` becomes the function's `ret`.
    YieldToRet,
    /// An inlined callee: its `ret` values are returned to the caller, not emitted.
    Return,
}

/// Most instructions a loop body may grow to by inlining its calls.
const MAX_INLINED: usize = 20_000;

/// Copies `src_region`'s instructions into `dst_region` of `dst`, mapping values.
/// Nested loops are copied with their bodies; calls to functions `lookup` finds are
/// inlined (their bodies copied in place, recursively), so the outlined body is one
/// function without calls and its vjp recomputes nothing twice. Returns the mapped
/// `ret` operands for [`Term::Return`].
fn copy_region(
    cx: &mut CopyCx,
    src: &Function,
    dst: &mut Function,
    src_region: Region,
    dst_region: Region,
    map: &mut SecondaryMap<Value, Option<Value>>,
    term: Term,
) -> Result<Vec<Value>> {
    let get = |map: &SecondaryMap<Value, Option<Value>>, v: Value| {
        map[v].ok_or_else(|| malformed(src, "loop body reads a value it cannot see"))
    };
    for &inst in &src.regions[src_region].insts {
        let d = &src.insts[inst];
        let args: Vec<Value> = d.args.iter().map(|&a| get(map, a)).collect::<Result<_>>()?;
        let op = match (&d.op, term) {
            (Op::Ret, Term::Return) => return Ok(args),
            (Op::Yield, Term::YieldToRet) => Op::Ret,
            (Op::Call(g), _) if cx.budget > 0 => {
                if let Some(callee) = (cx.lookup)(g) {
                    cx.budget = cx.budget.saturating_sub(callee.num_insts());
                    let mut cmap: SecondaryMap<Value, Option<Value>> = SecondaryMap::new();
                    for (&p, &a) in callee.params().iter().zip(&args) {
                        cmap[p] = Some(a);
                    }
                    let callee_body = callee.body;
                    let outs = copy_region(
                        cx,
                        callee,
                        dst,
                        callee_body,
                        dst_region,
                        &mut cmap,
                        Term::Return,
                    )?;
                    if outs.len() != d.results.len() {
                        return Err(malformed(src, "inlined callee returns the wrong count"));
                    }
                    for (&r, &o) in d.results.iter().zip(&outs) {
                        map[r] = Some(o);
                        if let Some(n) = src.name_of(r) {
                            if dst.name_of(o).is_none() {
                                dst.set_name(o, n);
                            }
                        }
                    }
                    continue;
                }
                d.op.clone()
            }
            (op, _) => op.clone(),
        };
        let tys: Vec<Type> = d.results.iter().map(|&r| src.ty(r)).collect();
        let mut nested = None;
        if let Some(nr) = d.regions.get() {
            let new = dst.new_region();
            for &p in &src.regions[nr].params {
                let np = dst.add_region_param(new, src.ty(p));
                if let Some(n) = src.name_of(p) {
                    dst.set_name(np, n);
                }
                map[p] = Some(np);
            }
            // Loop bodies see what was defined before the loop: copy them first.
            copy_region(cx, src, dst, nr, new, map, Term::Keep)?;
            nested = Some(new);
        }
        let new_inst = dst.create_inst(op, args, &tys, nested);
        dst.regions[dst_region].insts.push(new_inst);
        for (k, &r) in d.results.iter().enumerate() {
            let nr = dst.insts[new_inst].results[k];
            map[r] = Some(nr);
            if let Some(n) = src.name_of(r) {
                dst.set_name(nr, n);
            }
        }
    }
    if term == Term::Return {
        return Err(malformed(src, "inlined callee without `ret`"));
    }
    Ok(vec![])
}

/// State of one outlining: where callees come from and how much inlining is left.
struct CopyCx<'a> {
    lookup: &'a dyn Fn(&str) -> Option<&'a Function>,
    budget: usize,
}

/// Outlines the body of loop `inst` of `src` as `@name(%i, s..., c...) -> s...`, with
/// the calls it makes inlined (functions of `graph`'s module).
fn outline(
    src: &Function,
    inst: Inst,
    name: &str,
    caps: &[Value],
    graph: &jitad_ir::callgraph::CallGraph<'_>,
) -> Result<Function> {
    let d = &src.insts[inst];
    let &[body] = d.regions.as_slice() else {
        return Err(malformed(src, "loop without exactly one body"));
    };
    let params = src.regions[body].params.clone();
    let state_tys: Vec<Type> = d.results.iter().map(|&r| src.ty(r)).collect();
    if params.len() != state_tys.len() + 1 {
        return Err(malformed(src, "loop carries mismatched values"));
    }
    let mut f = Function::new(
        name,
        Signature {
            params: vec![],
            results: state_tys,
        },
    );
    let mut map: SecondaryMap<Value, Option<Value>> = SecondaryMap::new();
    for &p in &params {
        let np = f.add_param(src.ty(p));
        if let Some(n) = src.name_of(p) {
            f.set_name(np, n);
        }
        map[p] = Some(np);
    }
    for &c in caps {
        let np = f.add_param(src.ty(c));
        if let Some(n) = src.name_of(c) {
            f.set_name(np, n);
        }
        map[c] = Some(np);
    }
    let fb = f.body;
    let lookup = |n: &str| graph.get(n);
    let mut cx = CopyCx {
        lookup: &lookup,
        budget: MAX_INLINED,
    };
    copy_region(&mut cx, src, &mut f, body, fb, &mut map, Term::YieldToRet)?;
    Ok(f)
}

/// Plans the reversal of top-level loop `inst` of `src` inside derivative `prefix`:
/// makes `@F` and `@B` in the session and requests `vjp(@F)`. `None` when no
/// derivative flows through the loop.
pub(crate) fn plan(
    s: &mut Session,
    src: &Function,
    act: &Activity,
    inst: Inst,
    prefix: &str,
    index: usize,
) -> Result<Option<LoopPlan>> {
    let d = &src.insts[inst];
    let Op::Loop(bounds) = &d.op else {
        return Err(malformed(src, "not a loop"));
    };
    let bounds = **bounds;
    let &[body] = d.regions.as_slice() else {
        return Err(malformed(src, "loop without exactly one body"));
    };
    let params = &src.regions[body].params;
    let k = d.results.len();
    let active_slots: Vec<usize> = (0..k)
        .filter(|&j| {
            is_float(src.ty(d.results[j]))
                && (act.is_active(d.results[j])
                    || params.get(j + 1).is_some_and(|&p| act.is_active(p)))
        })
        .collect();
    let caps = captures(src, body);
    let active_caps: Vec<usize> = (0..caps.len())
        .filter(|&c| is_float(src.ty(caps[c])) && act.is_active(caps[c]))
        .collect();
    if active_slots.is_empty() && active_caps.is_empty() {
        return Ok(None);
    }
    let fwd_name = format!("{prefix}.loop{index}");
    let bwd_name = format!("{fwd_name}.bwd");
    let fwd = outline(src, inst, &fwd_name, &caps, &s.graph)?;
    let fwd_params = fwd.sig.params.clone();
    let fwd_results = fwd.sig.results.clone();
    s.add_extra(fwd);
    let wrt: Vec<usize> = active_slots
        .iter()
        .map(|&j| 1 + j)
        .chain(active_caps.iter().map(|&c| 1 + k + c))
        .collect();
    let vjp = s.request(&fwd_name, Kind::Vjp, &wrt)?;

    // @B(%i, s..., c..., sbar_active..., cbar_active...) -> (sbar_active..., cbar_active...)
    let bwd = {
        let mut em = Emitter::new(&bwd_name, &s.sigs);
        let i = em.param(Type::I64, Some("i".into()));
        let state: Vec<Value> = (0..k)
            .map(|j| {
                let name = params.get(j + 1).and_then(|&p| src.name_of(p));
                em.param(fwd_results[j], name.map(str::to_string))
            })
            .collect();
        let cvals: Vec<Value> = caps
            .iter()
            .enumerate()
            .map(|(c, &v)| em.param(fwd_params[1 + k + c], src.name_of(v).map(str::to_string)))
            .collect();
        let sbar: Vec<Value> = active_slots
            .iter()
            .map(|&j| {
                let name = params
                    .get(j + 1)
                    .and_then(|&p| src.name_of(p))
                    .map(|n| format!("{n}_bar"));
                em.param(fwd_results[j], name)
            })
            .collect();
        let cbar: Vec<Value> = active_caps
            .iter()
            .map(|&c| {
                let name = src.name_of(caps[c]).map(|n| format!("{n}_bar"));
                em.param(fwd_params[1 + k + c], name)
            })
            .collect();
        let mut args = vec![i];
        args.extend(&state);
        args.extend(&cvals);
        for (j, &ty) in fwd_results.iter().enumerate() {
            if !is_float(ty) {
                continue;
            }
            match active_slots.iter().position(|&a| a == j) {
                Some(p) => args.push(sbar[p]),
                None => args.push(em.zero_of(ty)?),
            }
        }
        let res = em.ins(Op::Call(vjp), &args)?;
        let na = active_slots.len();
        if res.len() != k + na + active_caps.len() {
            return Err(malformed(
                src,
                "the loop body's vjp returns unexpected results",
            ));
        }
        let mut outs: Vec<Value> = res[k..k + na].to_vec();
        for (c, &acc) in cbar.iter().enumerate() {
            outs.push(em.ins1(Op::Add, &[acc, res[k + na + c]])?);
        }
        em.finish(&outs)?
    };
    s.add_extra(bwd);
    Ok(Some(LoopPlan {
        fwd: fwd_name,
        bwd: bwd_name,
        caps,
        active_slots,
        active_caps,
        bounds,
    }))
}

/// The `revloop` instruction for `plan`, with operands (dynamic bounds, tape token,
/// inits, captures, seeds).
pub(crate) fn rev_op(plan: &LoopPlan, state: usize, policy: Policy) -> Op {
    Op::RevLoop(Box::new(RevLoop {
        bounds: plan.bounds,
        policy,
        fwd: plan.fwd.clone(),
        bwd: plan.bwd.clone(),
        state: state as u32,
        caps: plan.caps.len() as u32,
        tape: true,
    }))
}

/// The `tapeloop` instruction for `plan`, with operands (dynamic bounds, inits,
/// captures).
pub(crate) fn tape_op(plan: &LoopPlan, state: usize, policy: Policy) -> Op {
    Op::TapeLoop(Box::new(TapeLoop {
        bounds: plan.bounds,
        policy,
        fwd: plan.fwd.clone(),
        state: state as u32,
    }))
}

/// Sets the checkpointing policy of every `revloop` in `m` (nested ones included);
/// returns how many there are. Policies never change results, only memory and time.
pub fn set_policy(m: &mut jitad_ir::Module, policy: Policy) -> usize {
    let mut n = 0;
    for f in &mut m.funcs {
        for d in f.insts.values_mut() {
            match &mut d.op {
                Op::RevLoop(r) => {
                    r.policy = policy;
                    n += 1;
                }
                Op::TapeLoop(r) => r.policy = policy,
                _ => {}
            }
        }
    }
    n
}
