//! Outlining of large loop bodies, so they compile like straight-line code.
//!
//! Chunking ([`crate::plan`]) splits a function only at top level: a `loop` and all of
//! its body stay in one Cranelift function, whose register allocation time is
//! super-linear in the body's length and whose frame can exceed
//! [`crate::CompileOptions::max_frame_bytes`]. So before planning, the JIT's own copy of
//! the module is rewritten: the body of every `loop` with more than
//! [`crate::CompileOptions::chunk_threshold`] instructions (nested bodies included)
//! moves into a synthetic function `(i, carried..., captured...) -> carried...`, and the
//! body becomes `call` + `yield`. The synthetic function is then planned, chunked and
//! lowered like any other; the carried values travel through the ordinary call ABI.
//!
//! The body of every loop that touches a tensor (carries one, captures one, or
//! computes on one inside) is outlined too, whatever its size: tensor code is planned
//! per function ([`crate::fusion`]: groups, buffers by liveness), and the loop itself
//! then only carries buffer pointers (ping-pong buffers, see `lower_loop`). The call
//! per iteration is small beside the tensor work of the iteration.
//!
//! Why outlining rather than chunking the body in place: it reuses the chunker, the
//! call ABI, the workspace layout and the stack-need computation unchanged (the
//! synthetic frame is counted by [`crate::stack`] like any other call), and costs one
//! call per iteration only for bodies already thousands of instructions long.
//!
//! Guarantees: loops are visited innermost first, and an outlined body is replaced by
//! two instructions before its enclosing body is measured, so every instruction is
//! copied at most once (linear time, explicit stacks, no recursion). Guards keep their
//! identity: [`GuardMap`] maps each guard of a rewritten function, by its position in
//! program order (the order lowering numbers them), back to the original function and
//! ordinal. The IR's call-depth rule is checked on the caller's module before this
//! pass, so synthetic frames never make the JIT reject a program the interpreter runs.

use jitad_ir::{Function, Inst, Module, Op, Region, Signature, Type, TypeList, Value, ValueList};
use std::collections::{HashMap, HashSet};

/// For each rewritten or synthetic function (by name), the original `(function,
/// ordinal)` of its guards, in program order.
pub(crate) type GuardMap = HashMap<String, Vec<(String, usize)>>;

/// Guards of `f` in program order (preorder over regions, the order lowering walks).
fn guards_in_order(f: &Function) -> Vec<Inst> {
    let mut out = vec![];
    let mut stack: Vec<(Region, usize)> = vec![(f.body, 0)];
    while let Some((r, pos)) = stack.pop() {
        let Some(rd) = f.regions.get(r) else { continue };
        let Some(&inst) = rd.insts.get(pos) else {
            continue;
        };
        stack.push((r, pos + 1));
        let Some(d) = f.insts.get(inst) else { continue };
        if matches!(d.op, Op::Guard) {
            out.push(inst);
        }
        for &nr in d.regions.iter().rev() {
            stack.push((nr, 0));
        }
    }
    out
}

/// Loops of `f` in post-order (inner loops before the loops containing them).
fn loops_post_order(f: &Function) -> Vec<Inst> {
    let mut out = vec![];
    // (region, next position, owning loop)
    let mut stack: Vec<(Region, usize, Option<Inst>)> = vec![(f.body, 0, None)];
    while let Some((r, pos, owner)) = stack.pop() {
        let rd = &f.regions[r];
        match rd.insts.get(pos) {
            None => out.extend(owner),
            Some(&inst) => {
                stack.push((r, pos + 1, owner));
                let d = &f.insts[inst];
                if matches!(d.op, Op::Loop(_)) {
                    for &nr in &d.regions {
                        stack.push((nr, 0, Some(inst)));
                    }
                }
            }
        }
    }
    out
}

/// Instructions in `region` (nested bodies included), and whether it touches a tensor:
/// a tensor parameter (carried), operand (carried or captured) or result (computed).
fn region_info(f: &Function, region: Region) -> (usize, bool) {
    let is_tensor = |v: &Value| matches!(f.ty(*v), Type::Tensor(..));
    let mut n = 0;
    let mut tensors = false;
    let mut stack = vec![region];
    while let Some(r) = stack.pop() {
        let rd = &f.regions[r];
        tensors |= rd.params.iter().any(is_tensor);
        for &i in &rd.insts {
            n += 1;
            let d = &f.insts[i];
            tensors |= d.args.iter().chain(&d.results).any(is_tensor);
            stack.extend_from_slice(&d.regions);
        }
    }
    (n, tensors)
}

/// True when the loop body `region` moves into a function: longer than `threshold`,
/// or touching a tensor (compiled tensor code is planned per function,
/// [`crate::fusion`]; the loop then carries buffer pointers, see
/// [`crate::lower`]'s `loop`).
fn outlines(f: &Function, region: Region, threshold: usize) -> bool {
    let (n, tensors) = region_info(f, region);
    n > threshold || tensors
}

/// Rewrites `m` (the JIT's copy; functions with `process[i]` false are left alone) so
/// that no loop body longer than `threshold` remains. Returns `None` when nothing
/// needed outlining (then `m` is untouched), else the guard map.
pub(crate) fn outline_loops(
    m: &mut Module,
    process: &[bool],
    threshold: usize,
) -> Option<GuardMap> {
    let mut names: HashSet<String> = m.funcs.iter().map(|f| f.name.clone()).collect();
    let mut map = GuardMap::new();
    let n = m.funcs.len();
    for fi in 0..n {
        if !process.get(fi).copied().unwrap_or(false) {
            continue;
        }
        let loops = loops_post_order(&m.funcs[fi]);
        if loops.is_empty() {
            continue;
        }
        // Sizes as they will be after inner bodies are outlined: computed on the fly,
        // since outlining happens innermost first and shrinks the enclosing body.
        let mut todo = false;
        for &l in &loops {
            if outlines(&m.funcs[fi], m.funcs[fi].insts[l].regions[0], threshold) {
                todo = true;
                break;
            }
        }
        if !todo {
            continue;
        }
        // Origins of this function's guards, carried through copies by instruction.
        let orig_name = m.funcs[fi].name.clone();
        let mut origin: HashMap<(usize, Inst), (String, usize)> = guards_in_order(&m.funcs[fi])
            .into_iter()
            .enumerate()
            .map(|(k, g)| ((fi, g), (orig_name.clone(), k)))
            .collect();
        let mut made: Vec<usize> = vec![];
        for (k, &l) in loops.iter().enumerate() {
            let body = m.funcs[fi].insts[l].regions[0];
            // Inner outlined bodies are already two instructions, so this measures the
            // body as it now is; each instruction is walked a bounded number of times.
            if !outlines(&m.funcs[fi], body, threshold) {
                continue;
            }
            let mut name = format!("{orig_name}.loop{k}");
            while names.contains(&name) {
                name.push('_');
            }
            names.insert(name.clone());
            let gi = m.funcs.len();
            let g = extract(&mut m.funcs[fi], l, &name, fi, gi, &mut origin);
            m.funcs.push(g);
            made.push(gi);
        }
        for idx in std::iter::once(fi).chain(made) {
            let f = &m.funcs[idx];
            let table = guards_in_order(f)
                .into_iter()
                .filter_map(|g| origin.get(&(idx, g)).cloned())
                .collect();
            map.insert(f.name.clone(), table);
        }
    }
    (!map.is_empty()).then_some(map)
}

/// Moves the body of loop `l` of `f` (function `fi`) into a new function `name` (to
/// become function `gi`), replacing it by `call` + `yield`; records moved guards' origins.
fn extract(
    f: &mut Function,
    l: Inst,
    name: &str,
    fi: usize,
    gi: usize,
    origin: &mut HashMap<(usize, Inst), (String, usize)>,
) -> Function {
    let body = f.insts[l].regions[0];
    // Values defined inside the body (params and results, nested included).
    let mut inside: HashSet<Value> = HashSet::new();
    let mut stack = vec![body];
    while let Some(r) = stack.pop() {
        inside.extend(f.regions[r].params.iter().copied());
        for &i in &f.regions[r].insts {
            inside.extend(f.insts[i].results.iter().copied());
            stack.extend_from_slice(&f.insts[i].regions);
        }
    }
    let mut captured: Vec<Value> = vec![];
    let mut seen: HashSet<Value> = HashSet::new();
    stack.push(body);
    while let Some(r) = stack.pop() {
        for &i in &f.regions[r].insts {
            for &a in &f.insts[i].args {
                if !inside.contains(&a) && seen.insert(a) {
                    captured.push(a);
                }
            }
            stack.extend_from_slice(&f.insts[i].regions);
        }
    }
    let params: Vec<Value> = f.regions[body].params.clone();
    let carried: Vec<Type> = f.insts[l].results.iter().map(|&v| f.ty(v)).collect();
    let sig = Signature {
        params: params.iter().chain(&captured).map(|&v| f.ty(v)).collect(),
        results: carried.clone(),
    };
    let mut g = Function::new(name, sig);
    let mut vmap: HashMap<Value, Value> = HashMap::new();
    for (&a, &b) in params.iter().chain(&captured).zip(g.params()) {
        vmap.insert(a, b);
    }
    let mut work = vec![(body, g.body)];
    while let Some((src, dst)) = work.pop() {
        for &i in &f.regions[src].insts {
            let d = &f.insts[i];
            let args: ValueList = d
                .args
                .iter()
                .map(|a| vmap.get(a).copied().unwrap_or(*a))
                .collect();
            let op = if src == body && matches!(d.op, Op::Yield) {
                Op::Ret
            } else {
                d.op.clone()
            };
            let mut nested = None;
            if let Some(nr) = d.regions.get() {
                let ng = g.new_region();
                for &p in &f.regions[nr].params {
                    let np = g.add_region_param(ng, f.ty(p));
                    vmap.insert(p, np);
                }
                nested = Some(ng);
                work.push((nr, ng));
            }
            let tys: TypeList = d.results.iter().map(|&v| f.ty(v)).collect();
            let ni = g.append_inst(dst, op, args, &tys, nested);
            for (&a, &b) in d.results.iter().zip(&g.insts[ni].results) {
                vmap.insert(a, b);
            }
            if let Some(o) = origin.remove(&(fi, i)) {
                origin.insert((gi, ni), o);
            }
        }
    }
    let call_args: Vec<Value> = params.iter().chain(&captured).copied().collect();
    let call = f.create_inst(Op::Call(name.to_string()), call_args, &carried, None);
    let ys = f.insts[call].results.clone();
    let y = f.create_inst(Op::Yield, ys, &[], None);
    f.regions[body].insts = vec![call, y];
    g
}

/// Rewrites the guard table built by lowering (named by the functions lowered, which
/// may be synthetic) to name the original function and ordinal.
pub(crate) fn remap_guards(
    guards: Vec<crate::abi::GuardInfo>,
    map: &GuardMap,
) -> Vec<crate::abi::GuardInfo> {
    guards
        .into_iter()
        .map(|g| match map.get(&g.func).and_then(|t| t.get(g.ordinal)) {
            Some((func, ordinal)) => crate::abi::GuardInfo {
                func: func.clone(),
                ordinal: *ordinal,
            },
            None => g,
        })
        .collect()
}

/// Whether some loop of a function with `process[i]` set has a body longer than
/// `threshold` or touching a tensor (looking at outermost loops suffices: they contain
/// the others).
pub(crate) fn needs_outlining(m: &Module, process: &[bool], threshold: usize) -> bool {
    m.funcs.iter().enumerate().any(|(fi, f)| {
        process.get(fi).copied().unwrap_or(false)
            && f.regions.get(f.body).is_some_and(|rd| {
                rd.insts.iter().any(|&i| {
                    f.insts.get(i).is_some_and(|d| {
                        matches!(d.op, Op::Loop(_))
                            && d.regions
                                .first()
                                .is_some_and(|&r| outlines(f, r, threshold))
                    })
                })
            })
    })
}
