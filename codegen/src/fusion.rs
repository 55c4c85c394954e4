//! Fusion and buffer planning for functions that compute on tensors.
//!
//! **Groups.** Elementwise ops (arithmetic, comparisons, `select`, `cast`, the
//! transcendentals the JIT calls per element; not `exp`, `log`, `tanh`, `sigmoid`,
//! whose tensor forms run `jitad_ir::vmath`'s vectorised slice kernels) and the ops that only re-index memory
//! (`fill`, `broadcast`, `reshape`, `slice`, `transpose`) become members of *fusion
//! groups*. A group's members all have the same result shape; the group is lowered to
//! one loop nest over that shape that computes every member per element in registers
//! and stores only its *outputs* (members whose value something outside the group
//! reads). A value used only inside its group never exists in memory.
//!
//! Groups are formed in one pass in program order:
//! - an elementwise op joins the open group of every operand of its own shape that an
//!   open group computes (merging them, smaller into larger); with none, it opens a new
//!   group;
//! - a re-indexing op (`broadcast`, `reshape`, `slice`, `transpose`, `pad`) reads its
//!   operand from memory through strides (`pad` selecting its value outside the
//!   operand), so it always opens a new group, and an operand an open group computes
//!   is materialised first (that group is closed) — except for a `pad` of a large
//!   member of at least [`RECOMPUTE_MIN_BYTES`], or of any size when the member is
//!   only views of memory (a `pad` of a `slice`), which recomputes the member's *cone*
//!   (the group's elementwise members and views it depends on, at most 64) at its
//!   own index instead, leaving the producing group open. That is the adjoint of a
//!   stencil (`slice`'s transpose is `pad`): its shifted terms never reach memory. The
//!   recomputed instructions are bounded by the function's size plus 1,024, so
//!   compile work stays linear;
//! - a `sum` or `mean` of a member joins the member's group as an accumulator (a
//!   register for a full reduction, the result tensor for a partial one), adding each
//!   element in the operand's row-major order — the kernel's order, so the bits are
//!   the interpreter's; its result exists after the loop, so a reader closes the group;
//! - an operand of a different shape than the user (implicit broadcasting) is likewise
//!   read from memory;
//! - any other instruction that reads a value of an open group *closes* it: the group's
//!   loop is emitted just before that instruction.
//!
//! Open groups never read each other (a read would have merged or closed them), and a
//! group runs after all its members' operands exist, so the order of steps is valid.
//! Groups still open at the end have no reader and are dropped (pure code). The pass
//! is linear in the instructions, with an `O(n log n)` bound from the merges.
//!
//! **Buffers.** Every tensor that exists in memory has a home: its parameter's buffer,
//! the caller's result buffer (for a value only `ret` reads: nothing is copied), or a
//! region of the function's workspace. Workspace regions are assigned by liveness over
//! the steps — a region is free again after its value's last reader — with best-fit
//! reuse of freed regions (`O(n log n)`), so the workspace of an MLP gradient is a
//! handful of activations, not one buffer per op. A step's results are placed before
//! its operands' regions are freed, so a call never writes a buffer it reads. A loop
//! (whose body, touching tensors, is outlined: a call and a `yield`) reads its captured
//! values in every iteration: they are materialised before it and live until its step
//! ends; each tensor it carries gets two regions of its own for that step
//! ([`TensorPlan::ping_pong`]), which the iterations alternately read and write.
//!
//! **Strided products.** A `transpose` of a 2-D buffer that only `matmul`s read is never
//! lowered: each such `matmul` passes the un-transposed buffer to GEMM with swapped
//! strides (the adjoint's `Aᵀ·B` and `A·Bᵀ`).

use crate::plan::IdMap;
use jitad_ir::{Function, Inst, Op, Type, Value, ValueDef};
use std::collections::{BTreeMap, HashSet};

/// The most members a group takes before it is closed (its later readers then read
/// its values from memory). Measured on a chain of 80,000 elementwise ops with long
/// edges: one group took 41 s to compile (the register allocator on one block); capped,
/// compile time is linear.
const MAX_GROUP_MEMBERS: usize = 256;

/// One step of a tensor function's schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// An instruction lowered on its own (scalar code, a runtime tensor op, `ret`).
    Inst(Inst),
    /// A fusion group's loop nest.
    Group(usize),
}

/// A fusion group.
#[derive(Clone, Debug, Default)]
pub(crate) struct Group {
    /// The members, in program order.
    pub members: Vec<Inst>,
    /// Members' results read outside the group (stored to memory), in program order.
    pub outputs: Vec<Value>,
    /// `sum`/`mean` reductions of members, accumulated in the loop (program order).
    pub reductions: Vec<Inst>,
}

/// Where a tensor lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Home {
    /// The buffer of parameter `i` (its pointer is argument slot `i`).
    Param(u32),
    /// The caller's buffer for result `i` (its pointer is result slot `i`).
    Result(u32),
    /// Workspace bytes at this offset from the tensor region's start.
    Workspace(u64),
}

/// The tensor plan of one function.
#[derive(Clone, Debug, Default)]
pub(crate) struct TensorPlan {
    /// What to lower, in order.
    pub steps: Vec<Step>,
    /// The fusion groups.
    pub groups: Vec<Group>,
    /// The home of every tensor that exists in memory.
    pub home: IdMap<Value, Home>,
    /// `matmul`s reading an operand through a transposed view: `(inst, operand)` →
    /// the un-transposed value.
    pub transposed: IdMap<(Inst, u8), Value>,
    /// Bytes of workspace regions.
    pub bytes: u64,
    /// Offset (from the tensor region's start) of the scratch area of reductions that
    /// need one (`logsumexp`), and its size.
    pub scratch: u64,
    /// Scratch bytes.
    pub scratch_bytes: u64,
    /// The largest operand count of a runtime tensor op (sizes the pointer area).
    pub max_operands: usize,
    /// `pad`s that recompute their operand per element instead of reading it from
    /// memory: the pad → the operand's cone (the producing group's members it
    /// depends on, in program order; the operand is the last one's result).
    pub cones: IdMap<Inst, Vec<Inst>>,
    /// For each `loop` carrying tensors, the two workspace buffers (offsets from the
    /// tensor region's start) of each carried tensor, in the order of the loop's
    /// tensor results: the iterations read one and write the other.
    pub ping_pong: IdMap<Inst, Vec<[u64; 2]>>,
}

/// True for instructions computed per element inside a group: every pure op that also
/// takes scalars (the elementwise ops; `Op`'s own classifications, so a new op is
/// classified where it is defined), and `fill`.
pub(crate) fn is_elementwise(op: &Op) -> bool {
    (op.is_pure() && !op.is_tensor_op() && !matches!(op, Op::Const(_)))
        || matches!(op, Op::Fill(..))
}

/// True for ops that read their (tensor) operand through strides (`pad`: or take its
/// scalar operand outside the operand's range): no arithmetic.
pub(crate) fn is_view(op: &Op) -> bool {
    matches!(
        op,
        Op::Broadcast(_) | Op::Reshape(_) | Op::Slice(_) | Op::Transpose(_) | Op::Pad(_)
    )
}

/// True for the elementwise ops whose tensor form runs [`jitad_ir::vmath`]'s
/// vectorised slice kernels (a call over the whole tensor, not one per element): the
/// interpreter runs the same kernels, so the bits agree.
pub(crate) fn is_vector_kernel(op: &Op) -> bool {
    matches!(op, Op::Exp | Op::Log | Op::Tanh | Op::Sigmoid)
}

/// True when `inst` is a tensor op lowered as a call to [`crate::tensor_rt`].
pub(crate) fn is_runtime_inst(f: &Function, inst: Inst) -> bool {
    let d = &f.insts[inst];
    is_runtime_op(&d.op)
        || (is_vector_kernel(&d.op)
            && d.results
                .first()
                .is_some_and(|&r| matches!(ty(f, r), Type::Tensor(..))))
}

/// True for tensor ops lowered as a call to [`crate::tensor_rt`].
pub(crate) fn is_runtime_op(op: &Op) -> bool {
    matches!(
        op,
        Op::Reduce(..)
            | Op::Matmul
            | Op::Dot
            | Op::Concat(_)
            | Op::Extract
            | Op::Insert
            | Op::Iota(..)
    )
}

fn ty(f: &Function, v: Value) -> Type {
    f.values[v].ty
}

/// A type's dimensions (`[]` for a scalar).
pub(crate) fn dims(t: Type) -> Vec<usize> {
    match t {
        Type::Scalar(_) => vec![],
        Type::Tensor(_, s) => s.dims().iter().map(|&d| d as usize).collect(),
    }
}

/// Bytes of a value of type `t` in memory (elements of their natural size, `bool` one
/// byte), rounded up to 16 so every region stays 16-aligned.
pub(crate) fn region_bytes(t: Type) -> u64 {
    let elem = elem_bytes(t.elem()) as u64;
    (t.num_elements() as u64)
        .saturating_mul(elem)
        .saturating_add(15)
        & !15
}

/// Bytes of one element in memory.
pub(crate) fn elem_bytes(t: jitad_ir::ScalarType) -> usize {
    use jitad_ir::ScalarType as S;
    match t {
        S::F64 | S::I64 => 8,
        S::F32 => 4,
        S::Bool => 1,
    }
}

/// The result value of a single-result instruction.
fn result(f: &Function, inst: Inst) -> Option<Value> {
    match f.insts[inst].results[..] {
        [r] => Some(r),
        _ => None,
    }
}

/// True for a reduction a group can accumulate while it computes the operand:
/// `sum` (float or `i64`) and `mean`, folding each result element's terms in the
/// operand's row-major order exactly as the kernel does.
fn is_fusable_reduction(op: &Op) -> bool {
    use jitad_ir::shape::Reduction as R;
    matches!(op, Op::Reduce(R::Sum | R::Mean, _))
}

/// True when `inst` is fused: an elementwise or view op with one tensor result.
fn fusable(f: &Function, inst: Inst) -> bool {
    let d = &f.insts[inst];
    (is_elementwise(&d.op) || is_view(&d.op))
        && !is_vector_kernel(&d.op)
        && result(f, inst).is_some_and(|r| matches!(ty(f, r), Type::Tensor(..)))
}

/// Transposes of a 2-D tensor swapping its two axes (the adjoint's views).
fn is_swap_2d(f: &Function, inst: Inst) -> bool {
    let d = &f.insts[inst];
    match (&d.op, d.args.first()) {
        (Op::Transpose(p), Some(&a)) => p.to_vec() == [1, 0] && dims(ty(f, a)).len() == 2,
        _ => false,
    }
}

/// The most members one recomputed cone may have.
const MAX_CONE: usize = 64;

/// The members of open group `g` that `root` (a member's result) depends on, in
/// program order, when they can be recomputed at another index: elementwise ops,
/// fills and views other than `pad` (a nested pad would need its own bounds). `None`
/// when the cone holds anything else or exceeds `MAX_CONE`.
fn cone(
    f: &Function,
    root: Value,
    g: usize,
    group_of: &IdMap<Value, usize>,
    pos: &IdMap<Inst, usize>,
) -> Option<Vec<Inst>> {
    let mut seen: HashSet<Inst> = HashSet::new();
    let mut stack = vec![root];
    let mut out = vec![];
    while let Some(v) = stack.pop() {
        if group_of.get(&v) != Some(&g) {
            continue; // read from memory (or a scalar)
        }
        let ValueDef::Result(inst, _) = f.values[v].def else {
            return None;
        };
        if !seen.insert(inst) {
            continue;
        }
        let op = &f.insts[inst].op;
        if matches!(op, Op::Pad(_)) || !(is_elementwise(op) || is_view(op)) {
            return None;
        }
        out.push(inst);
        if out.len() > MAX_CONE {
            return None;
        }
        // A view reads its operand from memory; an elementwise op's operands may be
        // members too.
        if !is_view(op) {
            stack.extend(f.insts[inst].args.iter().copied());
        }
    }
    out.sort_by_key(|i| pos.get(i).copied().unwrap_or(usize::MAX));
    Some(out)
}

/// The smallest operand (in bytes) a `pad` recomputes rather than reads from memory.
/// Recomputing trades arithmetic for memory traffic, which pays once the operand no
/// longer stays in cache between its producer's loop and the pad's: on the tensor
/// Rosenbrock gradient (`--example rosenbrock_tensors`, one pinned core, runs
/// alternated), recomputing took 2.6–3.1 ms against 3.2–4.1 ms at n = 10⁶ (8 MB
/// operands) but 0.20–0.25 ms against 0.14–0.22 ms at n = 10⁵ (800 KB).
pub(crate) const RECOMPUTE_MIN_BYTES: u64 = 1 << 20;

/// Plans the fused schedule and the buffers of `f`'s body (top level; a loop touching
/// tensors has been outlined, so its body is a call and a `yield`).
pub(crate) fn plan_tensors(f: &Function) -> TensorPlan {
    plan_tensors_with(f, RECOMPUTE_MIN_BYTES)
}

/// [`plan_tensors`], recomputing the cones of `pad` operands of at least
/// `recompute_bytes` bytes (see [`RECOMPUTE_MIN_BYTES`]).
pub(crate) fn plan_tensors_with(f: &Function, recompute_bytes: u64) -> TensorPlan {
    let top = &f.regions[f.body].insts;
    // Instructions nested in each top-level one (loop bodies: after outlining, a call
    // and a `yield` reading carried and captured values).
    let mut nested_of: IdMap<Inst, Vec<Inst>> = IdMap::default();
    for &inst in top {
        if !f.insts[inst].regions.is_empty() {
            let mut n = vec![];
            crate::plan::nested_insts(f, inst, &mut n);
            nested_of.insert(inst, n);
        }
    }
    let nested_args = |inst: Inst| {
        nested_of
            .get(&inst)
            .into_iter()
            .flatten()
            .flat_map(|&i| f.insts[i].args.iter().copied())
    };
    // Users of each value (a nested reader counts as itself: never `ret` or `matmul`).
    let mut users: IdMap<Value, Vec<Inst>> = IdMap::default();
    for &inst in top {
        for &a in &f.insts[inst].args {
            users.entry(a).or_default().push(inst);
        }
        for &i in nested_of.get(&inst).into_iter().flatten() {
            for &a in &f.insts[i].args {
                users.entry(a).or_default().push(i);
            }
        }
    }
    // Transposes that only matmuls read stay virtual (strided GEMM operands).
    let mut transposed = IdMap::default();
    let mut virtual_t: HashSet<Inst> = HashSet::new();
    for &inst in top {
        if !is_swap_2d(f, inst) {
            continue;
        }
        let Some(r) = result(f, inst) else { continue };
        let us = users.get(&r).map_or(&[][..], |u| &u[..]);
        // Unbatched products only: both operands of rank at most 2.
        let only_matmul = !us.is_empty()
            && us.iter().all(|&u| {
                f.insts[u].op == Op::Matmul
                    && f.insts[u].args.iter().all(|&a| dims(ty(f, a)).len() <= 2)
            });
        if only_matmul {
            virtual_t.insert(inst);
            for &u in us {
                for (k, &a) in f.insts[u].args.iter().enumerate() {
                    if a == r {
                        transposed.insert((u, k as u8), f.insts[inst].args[0]);
                    }
                }
            }
        }
    }

    let pos: IdMap<Inst, usize> = top.iter().enumerate().map(|(i, &x)| (x, i)).collect();
    // Recomputation is bounded by the function's size: compile work at most doubles.
    let mut cone_budget = top.len().saturating_add(1024);
    let mut cones: IdMap<Inst, Vec<Inst>> = IdMap::default();
    let mut groups: Vec<Group> = vec![];
    let mut open: Vec<bool> = vec![];
    let mut group_of: IdMap<Value, usize> = IdMap::default();
    // Results of reductions a group accumulates: complete only after its loop.
    let mut reduced_by: IdMap<Value, usize> = IdMap::default();
    let mut is_output: HashSet<Value> = HashSet::new();
    let mut steps = vec![];
    let close = |g: usize, open: &mut Vec<bool>, steps: &mut Vec<Step>| {
        if open[g] {
            open[g] = false;
            steps.push(Step::Group(g));
        }
    };
    for &inst in top {
        if virtual_t.contains(&inst) {
            continue;
        }
        let d = &f.insts[inst];
        // A group's reduction result is complete only after the group's loop (a loop
        // body's instructions read it too: scalars may cross into loops).
        // A virtual transpose's reader reads the transpose's operand.
        let own = d
            .args
            .iter()
            .enumerate()
            .map(|(k, &a)| transposed.get(&(inst, k as u8)).copied().unwrap_or(a));
        for a in own.chain(nested_args(inst)) {
            if let Some(&g) = reduced_by.get(&a) {
                close(g, &mut open, &mut steps);
            }
        }
        if is_fusable_reduction(&d.op) {
            let a = d.args[0];
            if let Some(&g) = group_of.get(&a) {
                let r = d.results[0];
                if open[g] {
                    groups[g].reductions.push(inst);
                    reduced_by.insert(r, g);
                    continue;
                }
            }
        }
        if fusable(f, inst) {
            let r = d.results[0];
            let shape = dims(ty(f, r));
            let mut joined: Vec<usize> = vec![];
            for &a in &d.args {
                let Some(&g) = group_of.get(&a) else { continue };
                if !open[g] {
                    is_output.insert(a);
                    continue;
                }
                // A `pad` of a member recomputes the member's cone at the pad's
                // index instead of storing it (the adjoint of `slice`: a stencil's
                // gradient then never writes its shifted terms to memory).
                // A cone of views and fills alone (a `pad` of a `slice`: a stencil's
                // shifted term) costs one load at the pad's index either way, so it is
                // recomputed at any size.
                if matches!(d.op, Op::Pad(_)) && a == d.args[0] && !cones.contains_key(&inst) {
                    let big = region_bytes(ty(f, a)) >= recompute_bytes;
                    let c = cone(f, a, g, &group_of, &pos).filter(|c| {
                        big || c.iter().all(|&m| {
                            matches!(f.insts[m].op, Op::Fill(..)) || is_view(&f.insts[m].op)
                        })
                    });
                    if let Some(c) = c {
                        if c.len() <= cone_budget {
                            cone_budget -= c.len();
                            cones.insert(inst, c);
                            continue;
                        }
                    }
                }
                if is_view(&d.op) || dims(ty(f, a)) != shape {
                    is_output.insert(a);
                    close(g, &mut open, &mut steps);
                } else if !joined.contains(&g) {
                    joined.push(g);
                }
            }
            let g = match joined.split_first() {
                None => {
                    groups.push(Group::default());
                    open.push(true);
                    groups.len() - 1
                }
                Some((&first, rest)) => {
                    // Merge smaller into larger.
                    let mut into = first;
                    for &o in rest {
                        if groups[o].members.len() > groups[into].members.len() {
                            into = o;
                        }
                    }
                    for &o in joined.iter().filter(|&&o| o != into) {
                        let moved = std::mem::take(&mut groups[o].members);
                        for &m in &moved {
                            for &mr in &f.insts[m].results {
                                group_of.insert(mr, into);
                            }
                        }
                        groups[into].members.extend(moved);
                        let moved = std::mem::take(&mut groups[o].reductions);
                        for &m in &moved {
                            for &mr in &f.insts[m].results {
                                reduced_by.insert(mr, into);
                            }
                        }
                        groups[into].reductions.extend(moved);
                        open[o] = false;
                    }
                    into
                }
            };
            groups[g].members.push(inst);
            group_of.insert(r, g);
            // A bounded loop body: register allocation stays linear in the function
            // (a huge group would be one huge block with many values live).
            if groups[g].members.len() >= MAX_GROUP_MEMBERS {
                close(g, &mut open, &mut steps);
            }
        } else {
            for (k, &a) in d.args.iter().enumerate() {
                // A virtual transpose's reader reads the transpose's operand.
                let a = transposed.get(&(inst, k as u8)).copied().unwrap_or(a);
                if let Some(&g) = group_of.get(&a) {
                    is_output.insert(a);
                    close(g, &mut open, &mut steps);
                }
            }
            // Values a loop body reads (captured) exist in memory before the loop.
            for a in nested_args(inst) {
                if let Some(&g) = group_of.get(&a) {
                    is_output.insert(a);
                    close(g, &mut open, &mut steps);
                }
            }
            steps.push(Step::Inst(inst));
        }
    }
    // Members back in program order (merges appended), outputs listed.
    for g in &mut groups {
        g.members.sort_by_key(|m| pos[m]);
        g.reductions.sort_by_key(|m| pos[m]);
        g.outputs = g
            .members
            .iter()
            .flat_map(|&m| f.insts[m].results.iter().copied())
            .filter(|r| is_output.contains(r))
            .collect();
    }

    // Homes and liveness.
    let mut home: IdMap<Value, Home> = IdMap::default();
    for (i, &p) in f.regions[f.body].params.iter().enumerate() {
        if matches!(ty(f, p), Type::Tensor(..)) {
            home.insert(p, Home::Param(i as u32));
        }
    }
    // Values only `ret` reads live in the caller's result buffer (the first position).
    let ret_inst = top.last().copied().filter(|&i| f.insts[i].op == Op::Ret);
    if let Some(ri) = ret_inst {
        for (k, &a) in f.insts[ri].args.iter().enumerate() {
            let only_ret = users.get(&a).is_some_and(|u| u.iter().all(|&x| x == ri));
            let defined = matches!(f.values[a].def, ValueDef::Result(..));
            if only_ret && defined && matches!(ty(f, a), Type::Tensor(..)) {
                home.entry(a).or_insert(Home::Result(k as u32));
            }
        }
    }
    // Step at which each value comes to exist in memory, and its last reader's step.
    let mut step_of_inst: IdMap<Inst, usize> = IdMap::default();
    let mut made: Vec<Vec<Value>> = vec![vec![]; steps.len()];
    for (s, step) in steps.iter().enumerate() {
        match *step {
            Step::Inst(i) => {
                step_of_inst.insert(i, s);
                made[s].extend(
                    f.insts[i]
                        .results
                        .iter()
                        .copied()
                        .filter(|&r| matches!(ty(f, r), Type::Tensor(..))),
                );
            }
            Step::Group(g) => {
                for &m in groups[g].members.iter().chain(&groups[g].reductions) {
                    step_of_inst.insert(m, s);
                }
                made[s].extend(groups[g].outputs.iter().copied());
                made[s].extend(
                    groups[g]
                        .reductions
                        .iter()
                        .map(|&m| f.insts[m].results[0])
                        .filter(|&r| matches!(ty(f, r), Type::Tensor(..))),
                );
            }
        }
    }
    let mut last: IdMap<Value, usize> = IdMap::default();
    for &inst in top {
        let reader = if virtual_t.contains(&inst) {
            None
        } else {
            step_of_inst.get(&inst).copied()
        };
        let Some(s) = reader else { continue };
        // A loop's body reads its captured values in every iteration: they live until
        // the loop's step ends.
        for a in f.insts[inst].args.iter().copied().chain(nested_args(inst)) {
            let e = last.entry(a).or_insert(s);
            *e = (*e).max(s);
        }
    }
    // A recomputing pad reads its cone's operands, not the cone's root.
    for (&p, c) in &cones {
        let Some(&s) = step_of_inst.get(&p) else {
            continue;
        };
        let inside: HashSet<Value> = c.iter().flat_map(|&m| f.insts[m].results.clone()).collect();
        for &m in c {
            for &a in &f.insts[m].args {
                if !inside.contains(&a) {
                    let e = last.entry(a).or_insert(s);
                    *e = (*e).max(s);
                }
            }
        }
    }
    // Virtual transposes: their operand is read by the matmuls.
    for (&(u, _), &src) in &transposed {
        if let Some(&s) = step_of_inst.get(&u) {
            let e = last.entry(src).or_insert(s);
            *e = (*e).max(s);
        }
    }
    let mut dies: Vec<Vec<Value>> = vec![vec![]; steps.len()];
    for (s, vs) in made.iter().enumerate() {
        for &v in vs {
            let d = last.get(&v).copied().unwrap_or(s).max(s);
            dies[d].push(v);
        }
    }
    let mut free: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut bytes = 0u64;
    let mut ping_pong: IdMap<Inst, Vec<[u64; 2]>> = IdMap::default();
    let mut scratch_bytes = 0u64;
    let mut max_operands = 0usize;
    for s in 0..steps.len() {
        if let Step::Inst(i) = steps[s] {
            let d = &f.insts[i];
            if is_runtime_inst(f, i) {
                max_operands = max_operands.max(d.args.len());
            }
            if let (Op::Reduce(jitad_ir::shape::Reduction::LogSumExp, _), Some(&r)) =
                (&d.op, d.results.first())
            {
                let n = ty(f, r).num_elements() as u64;
                scratch_bytes = scratch_bytes.max(n.saturating_mul(8).saturating_add(15) & !15);
            }
        }
        for &v in &made[s] {
            if home.contains_key(&v) {
                continue;
            }
            let off = alloc(region_bytes(ty(f, v)).max(16), &mut free, &mut bytes);
            home.insert(v, Home::Workspace(off));
        }
        // A loop carrying tensors: two buffers per carried tensor, alternately read and
        // written by the iterations, live for the loop's step only (allocated after its
        // results and before its operands are freed, so they alias neither).
        let mut step_bufs: Vec<(u64, u64)> = vec![];
        if let Step::Inst(i) = steps[s] {
            if matches!(f.insts[i].op, Op::Loop(_)) {
                let mut bufs = vec![];
                for &r in &f.insts[i].results {
                    let t = ty(f, r);
                    if matches!(t, Type::Tensor(..)) {
                        let size = region_bytes(t).max(16);
                        let a = alloc(size, &mut free, &mut bytes);
                        let b = alloc(size, &mut free, &mut bytes);
                        step_bufs.extend([(size, a), (size, b)]);
                        bufs.push([a, b]);
                    }
                }
                if !bufs.is_empty() {
                    ping_pong.insert(i, bufs);
                }
            }
        }
        for &v in &dies[s] {
            if let Some(&Home::Workspace(o)) = home.get(&v) {
                let size = region_bytes(ty(f, v)).max(16);
                free.entry(size).or_default().push(o);
            }
        }
        for (size, o) in step_bufs {
            free.entry(size).or_default().push(o);
        }
    }
    TensorPlan {
        steps,
        groups,
        home,
        transposed,
        scratch: bytes,
        bytes: bytes.saturating_add(scratch_bytes),
        scratch_bytes,
        max_operands,
        cones,
        ping_pong,
    }
}

/// A workspace region of `size` bytes: the best-fitting free one (its unused tail kept
/// free), else new space at the end (`bytes` grows, saturating; the layout checks the
/// total).
fn alloc(size: u64, free: &mut BTreeMap<u64, Vec<u64>>, bytes: &mut u64) -> u64 {
    let fit = free.range(size..).next().map(|(&k, _)| k);
    if let Some(k) = fit {
        if let Some(list) = free.get_mut(&k) {
            if let Some(o) = list.pop() {
                if list.is_empty() {
                    free.remove(&k);
                }
                // Keep the unused tail of a larger region.
                if k > size {
                    free.entry(k - size).or_default().push(o + size);
                }
                return o;
            }
        }
    }
    let o = *bytes;
    *bytes = bytes.saturating_add(size);
    o
}

/// True when `f` holds a tensor value anywhere.
pub(crate) fn has_tensors(f: &Function) -> bool {
    f.values.values().any(|d| matches!(d.ty, Type::Tensor(..)))
}

/// A human-readable list of `plan`'s groups (for `dump --emit fusion`).
pub(crate) fn describe(f: &Function, plan: &TensorPlan) -> String {
    use std::fmt::Write as _;
    let name = |v: Value| match f.name_of(v) {
        Some(n) => format!("%{n}"),
        None => format!("%{v}"),
    };
    let mut s = String::new();
    let _ = writeln!(s, "; @{}: {} step(s)", f.name, plan.steps.len());
    for step in &plan.steps {
        match *step {
            Step::Inst(i) => {
                let d = &f.insts[i];
                let r: Vec<String> = d.results.iter().map(|&r| name(r)).collect();
                let note = match plan.ping_pong.get(&i) {
                    Some(b) => format!(" (carries {} tensor(s), two buffers each)", b.len()),
                    None => String::new(),
                };
                if r.is_empty() {
                    let _ = writeln!(s, "  {}{note}", d.op.name());
                } else {
                    let _ = writeln!(s, "  {} = {}{note}", r.join(", "), d.op.name());
                }
            }
            Step::Group(g) => {
                let grp = &plan.groups[g];
                let m: Vec<String> = grp
                    .members
                    .iter()
                    .map(|&i| {
                        let d = &f.insts[i];
                        let r = d.results.first().map_or(String::new(), |&r| name(r));
                        match plan.cones.get(&i) {
                            Some(c) => format!(
                                "{r}={}(recomputes {}: {} op(s))",
                                d.op.name(),
                                name(d.args[0]),
                                c.len()
                            ),
                            None => format!("{r}={}", d.op.name()),
                        }
                    })
                    .collect();
                let mut o: Vec<String> = grp.outputs.iter().map(|&v| name(v)).collect();
                for &m in &grp.reductions {
                    let d = &f.insts[m];
                    o.push(format!(
                        "{}={} (accumulated)",
                        name(d.results[0]),
                        d.op.name()
                    ));
                }
                let _ = writeln!(
                    s,
                    "  loop {g}: {} op(s) fused [{}] → stores {}",
                    grp.members.len(),
                    m.join(" "),
                    if o.is_empty() {
                        "nothing".to_string()
                    } else {
                        o.join(", ")
                    }
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "; workspace: {} bytes of tensors ({} scratch)",
        plan.bytes, plan.scratch_bytes
    );
    s
}
