//! Planning before lowering: a light IR check, the call graph (order, cycles,
//! workspace sizes) and the chunking of long functions.
//!
//! **Chunking.** Register allocation time grows much faster than linearly with the
//! length of a Cranelift function when many values are live across it (the shape of
//! every reverse-mode derivative). A function whose body has more than
//! [`crate::CompileOptions::chunk_threshold`] instructions is therefore split at top
//! level into chunks of about [`crate::CompileOptions::chunk_size`] instructions. Each
//! chunk becomes its own Cranelift function with the function's ABI; a small driver calls
//! the chunks in order. A value defined in one chunk and used in a later one gets an
//! 8-byte slot in the function's part of the workspace: the defining chunk stores it
//! right after computing it, later chunks load it where they use it. A `loop` (with all
//! of its body) is never split.
//!
//! **Workspace layout.** The workspace of function `f` is `own(f)` bytes: its slots,
//! then a frame for the arguments and results of calls too large for the machine stack
//! (over [`MAX_STACK_FRAME`] bytes, [`crate::abi`]); then the workspace of whichever callee runs: `ws(f) = own(f) + max ws(callee)`.
//! Callees run one at a time and never outlive the call, so they share that tail.
//! Recursion is rejected (the IR has no conditional to end it anyway).

use crate::abi::{frame_bytes, MAX_STACK_FRAME};
use crate::error::CompileError;
use crate::fusion::{has_tensors, plan_tensors, TensorPlan};
use cranelift_entity::SecondaryMap;
use jitad_ir::callgraph::{CallGraph, OrderError};
use jitad_ir::{Function, Inst, Module, Op, Region, Type, TypeList, Value};
use std::collections::HashMap;
use std::ops::Range;

/// A fast, non-cryptographic hasher for entity ids and other short integer streams
/// (a chunk's description, `crate::dedup`): one rotate, xor and multiply per word.
/// Keys are not attacker-chosen, or collisions are resolved by full comparison.
#[derive(Clone, Copy, Default)]
pub(crate) struct IdHasher(u64);

impl IdHasher {
    #[inline]
    fn add(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

/// A hash map keyed by entity ids.
pub(crate) type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

/// What lowering needs to know about one IR function.
#[derive(Debug)]
pub(crate) struct FnPlan {
    /// The body's instructions in the order they are lowered (the scheduled order,
    /// [`crate::schedule`], of a function compiled without a copy; else the body's).
    pub top: Vec<Inst>,
    /// Top-level instruction ranges (indices into `top`), one per chunk; a single
    /// range means the function is not chunked.
    pub chunks: Vec<Range<usize>>,
    /// Workspace slot (8-byte index) of each value that crosses chunks, `NONE` for
    /// the others. The three per-value tables are dense (empty when the function is
    /// not chunked): lowering asks them about every result, and hash maps of up to
    /// 10⁶ entries made each question a cache miss.
    slot: SecondaryMap<Value, u32>,
    /// For each top-level result that crosses chunks, the chunk defining it (`NONE`
    /// for the others).
    home: SecondaryMap<Value, u32>,
    /// Results of `ret` that are top-level values of a chunked function: an index into
    /// `early_ret_pos`, or `NONE`.
    early_ret: SecondaryMap<Value, u32>,
    /// The positions in `ret` of each value `early_ret` names: its defining chunk
    /// stores it straight into the results buffer, so neither a slot nor the last
    /// chunk has to carry it.
    early_ret_pos: Vec<Vec<u32>>,
    /// IR instructions in each chunk (loop bodies included).
    pub chunk_insts: Vec<usize>,
    /// Where, in this function's workspace, call frames too large for the machine stack
    /// go (after the slots).
    pub frame_offset: u64,
    /// Bytes of this function's own slots and large call frame.
    pub own_bytes: u64,
    /// Bytes of workspace this function needs, callees included.
    pub ws_bytes: u64,
    /// Instructions, loop bodies included.
    pub num_insts: usize,
    /// The fused schedule and buffers of a function holding tensors (never chunked).
    pub tensors: Option<TensorPlan>,
    /// Workspace offset of the tensor region (16-aligned).
    pub tensor_base: u64,
}

/// "No entry" in [`FnPlan`]'s dense per-value tables.
const NONE: u32 = u32::MAX;

impl FnPlan {
    /// The workspace slot of `v` if it crosses chunks.
    pub fn slot_of(&self, v: Value) -> Option<u32> {
        Some(self.slot[v]).filter(|&s| s != NONE)
    }

    /// The chunk defining `v` if it crosses chunks.
    pub fn home_of(&self, v: Value) -> Option<usize> {
        Some(self.home[v])
            .filter(|&h| h != NONE)
            .map(|h| h as usize)
    }

    /// The positions in `ret` at which `v`'s defining chunk stores it, if it does.
    pub fn early_ret_of(&self, v: Value) -> Option<&[u32]> {
        let i = self.early_ret[v];
        (i != NONE).then(|| self.early_ret_pos[i as usize].as_slice())
    }
}

/// Index of each function by name (the first one wins on duplicates; the light check
/// rejects duplicates anyway).
pub(crate) fn index_by_name(m: &Module) -> HashMap<&str, usize> {
    let mut map = HashMap::new();
    for (i, f) in m.funcs.iter().enumerate() {
        map.entry(f.name.as_str()).or_insert(i);
    }
    map
}

fn invalid(f: &Function, message: impl Into<String>) -> CompileError {
    CompileError::InvalidIr {
        func: f.name.clone(),
        message: message.into(),
    }
}

/// Refuses tensors where compiled code does not take them yet: as operands or results
/// of `revloop`, `tapeloop` and `guard`.
fn tensor_free(f: &Function, t: Type, what: &str) -> Result<(), CompileError> {
    match t {
        Type::Scalar(_) => Ok(()),
        Type::Tensor(..) => Err(CompileError::Unsupported {
            func: f.name.clone(),
            what: format!("the tensor {what} of type {t}"),
        }),
    }
}

/// Checks what lowering relies on: operand and result types of every instruction,
/// loop region shapes, the terminators, and that tensors appear only where the
/// lowering takes them (not through loop drivers or guards).
/// Scoping (use before definition) is checked while lowering. This is not the full
/// verifier, only enough that no malformed input reaches Cranelift.
pub(crate) fn check_function(
    graph: &CallGraph<'_>,
    f: &Function,
    threads: usize,
) -> Result<(), CompileError> {
    let body = f
        .regions
        .get(f.body)
        .ok_or_else(|| invalid(f, "no body region"))?;
    if body.params.len() != f.sig.params.len() {
        return Err(invalid(f, "body parameters differ from the signature"));
    }
    for (&p, &t) in body.params.iter().zip(&f.sig.params) {
        if f.values.get(p).map(|d| d.ty) != Some(t) {
            return Err(invalid(f, format!("parameter {p} does not have type {t}")));
        }
    }
    // Walk every region, checking each instruction.
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![(f.body, None::<Inst>)];
    while let Some((region, parent)) = stack.pop() {
        if !seen.insert(region) {
            return Err(invalid(f, format!("{region} is owned twice")));
        }
        let rd = f
            .regions
            .get(region)
            .ok_or_else(|| invalid(f, format!("missing {region}")))?;
        let Some((&last, _)) = rd.insts.split_last() else {
            return Err(invalid(f, format!("{region} is empty")));
        };
        // Each instruction's check reads the function only, so a long region (a traced
        // gradient's body) is checked in parts on several threads; the first part's
        // error wins, as it would in one walk.
        let parts = if rd.insts.len() >= PARALLEL_CHECK_INSTS {
            threads.clamp(1, 4)
        } else {
            1
        };
        let results = crate::par::run_parts(&crate::par::split(rd.insts.len(), parts), |r| {
            check_insts(graph, f, region, &rd.insts[r], last, parent)
        });
        let mut nested = vec![];
        for r in results {
            // A panic in a part (there is no known one) goes on, as it would from a
            // walk on one thread.
            nested.extend(r.unwrap_or_else(|p| std::panic::resume_unwind(p))?);
        }
        // Each loop's body, checked after this region (the order of a one-thread walk).
        for (r, inst) in nested {
            stack.push((r, Some(inst)));
        }
    }
    Ok(())
}

/// Regions at least this long are checked on several threads.
const PARALLEL_CHECK_INSTS: usize = 100_000;

/// Checks instructions `insts` of `region`, whose last instruction is `last`, owned by
/// `parent` (`None`: the body); returns the body regions of its loops with the loops,
/// in order.
fn check_insts(
    graph: &CallGraph<'_>,
    f: &Function,
    region: Region,
    insts: &[Inst],
    last: Inst,
    parent: Option<Inst>,
) -> Result<Vec<(Region, Inst)>, CompileError> {
    let mut nested = vec![];
    // One operand-type buffer for all (no allocation per instruction but
    // `result_types`' own).
    let mut arg_tys: Vec<Type> = Vec::new();
    for &inst in insts {
        let d = f
            .insts
            .get(inst)
            .ok_or_else(|| invalid(f, format!("missing {inst}")))?;
        let ty_of = |v: Value| {
            f.values
                .get(v)
                .map(|d| d.ty)
                .ok_or_else(|| invalid(f, format!("{inst} uses unknown value {v}")))
        };
        arg_tys.clear();
        for &v in &d.args {
            arg_tys.push(ty_of(v)?);
        }
        // Calls and loops take tensors (as buffer pointers; loops touching tensors
        // are outlined, `crate::outline`), anywhere; `revloop`/`tapeloop` too (their
        // drivers flatten them). Only a guard's condition is a scalar.
        let no_tensors = matches!(d.op, Op::Guard);
        if no_tensors {
            let place = format!("`{}`", d.op.name());
            for &t in &arg_tys {
                tensor_free(f, t, &format!("operand of {place}"))?;
            }
            for &r in &d.results {
                tensor_free(f, ty_of(r)?, &format!("result of {place}"))?;
            }
        }
        let is_last = inst == last;
        let want_term = match (parent, &d.op) {
            (None, Op::Ret) | (Some(_), Op::Yield) => true,
            (_, Op::Ret | Op::Yield) => {
                return Err(invalid(f, format!("misplaced `{}` at {inst}", d.op)))
            }
            _ => false,
        };
        if want_term != is_last {
            return Err(invalid(
                f,
                format!("{region} must end in exactly one terminator ({inst})"),
            ));
        }
        let expect = match &d.op {
            Op::Ret => {
                if arg_tys != f.sig.results {
                    return Err(invalid(f, "`ret` operands differ from the signature"));
                }
                TypeList::new()
            }
            Op::Yield => {
                // Checked against the loop below, when the loop is visited.
                TypeList::new()
            }
            op => op
                .result_types(&arg_tys, |name| graph.get(name).map(|g| &g.sig))
                .map_err(|e| invalid(f, format!("{inst}: {e}")))?,
        };
        let mut same = d.results.len() == expect.len();
        for (k, &r) in d.results.iter().enumerate() {
            let t = ty_of(r)?;
            same &= expect.get(k) == Some(&t);
        }
        if !same {
            return Err(invalid(
                f,
                format!("{inst}: result types differ from `{}`'s typing", d.op),
            ));
        }
        match &d.op {
            Op::Loop(b) => {
                let [r] = d.regions[..] else {
                    return Err(invalid(f, format!("{inst}: a loop needs one body region")));
                };
                let rd = f
                    .regions
                    .get(r)
                    .ok_or_else(|| invalid(f, format!("missing {r}")))?;
                let carried = &arg_tys[b.num_dyn()..];
                let ptys = rd
                    .params
                    .iter()
                    .map(|&v| ty_of(v))
                    .collect::<Result<Vec<_>, _>>()?;
                if ptys.first() != Some(&Type::I64) || ptys[1..] != *carried {
                    return Err(invalid(
                        f,
                        format!("{inst}: loop body parameters must be (i64, carried...)"),
                    ));
                }
                let y = rd.insts.last().and_then(|&i| f.insts.get(i));
                match y {
                    Some(y) if y.op == Op::Yield => {
                        let ytys = y
                            .args
                            .iter()
                            .map(|&v| ty_of(v))
                            .collect::<Result<Vec<_>, _>>()?;
                        if ytys != carried {
                            return Err(invalid(
                                f,
                                format!("{inst}: `yield` types differ from the carried types"),
                            ));
                        }
                    }
                    _ => return Err(invalid(f, format!("{inst}: loop body must end in `yield`"))),
                }
                nested.push((r, inst));
            }
            _ => {
                if !d.regions.is_empty() {
                    return Err(invalid(f, format!("{inst}: `{}` takes no region", d.op)));
                }
            }
        }
    }
    Ok(nested)
}

/// Every instruction nested in `inst`'s regions (not `inst` itself), in program order.
pub(crate) fn nested_insts(f: &Function, inst: Inst, out: &mut Vec<Inst>) {
    if f.insts[inst].regions.is_empty() {
        return;
    }
    let mut stack: Vec<(jitad_ir::Region, usize)> = f.insts[inst]
        .regions
        .iter()
        .rev()
        .map(|&r| (r, 0))
        .collect();
    while let Some((region, pos)) = stack.pop() {
        let insts = &f.regions[region].insts;
        if pos < insts.len() {
            let i = insts[pos];
            out.push(i);
            stack.push((region, pos + 1));
            for &r in f.insts[i].regions.iter().rev() {
                stack.push((r, 0));
            }
        }
    }
}

/// Functions reachable from `roots`, callees before callers (post-order), rejecting
/// cycles and unknown callees; linear in what they reach.
pub(crate) fn reachable_post_order(
    graph: &CallGraph<'_>,
    roots: &[usize],
) -> Result<Vec<usize>, CompileError> {
    graph.post_order(roots).map_err(|e| match e {
        OrderError::UnknownCallee(name) => CompileError::UnknownFunction(name),
        OrderError::Recursion { func, .. } => CompileError::Recursion(func),
    })
}

/// Plans chunks and slots for `f`, whose body is lowered in the order `top` (a
/// permutation of the body's instructions ending in its terminator, or `None` for the
/// body's own order); `callee_ws` gives the workspace bytes of each callee (already
/// planned, since plans are made in post-order).
pub(crate) fn plan_function(
    f: &Function,
    top: Option<Vec<Inst>>,
    chunk_size: usize,
    chunk_threshold: usize,
    callee_ws: impl Fn(&str) -> u64,
) -> FnPlan {
    let top = top.unwrap_or_else(|| f.regions[f.body].insts.clone());
    // Nested instructions of each top-level instruction, flattened once.
    let mut nested: Vec<Inst> = Vec::with_capacity(top.len());
    let mut spans: Vec<Range<usize>> = Vec::with_capacity(top.len());
    for &inst in &top {
        let s = nested.len();
        nested.push(inst);
        nested_insts(f, inst, &mut nested);
        spans.push(s..nested.len());
    }
    let num_insts = nested.len();
    let mut max_callee = 0u64;
    let mut frame = 0u64;
    for &i in &nested {
        let op = &f.insts[i].op;
        if let Op::Call(name) = op {
            max_callee = max_callee.max(callee_ws(name));
        }
        if let Op::TapeLoop(r) = op {
            max_callee = max_callee.max(callee_ws(&r.fwd));
        }
        if let Op::RevLoop(r) = op {
            max_callee = max_callee.max(callee_ws(&r.fwd)).max(callee_ws(&r.bwd));
        }
        // Call frames and driver descriptors too large for the machine stack.
        if let Some(size) = frame_bytes(f, i).filter(|&n| n > MAX_STACK_FRAME) {
            frame = frame.max(size);
        }
    }
    let chunk_size = chunk_size.max(1);
    let mut chunks = vec![];
    // Tensor functions are short by construction and their fusion groups span the
    // body: never split.
    let tensors = has_tensors(f).then(|| plan_tensors(f));
    if num_insts <= chunk_threshold || tensors.is_some() {
        chunks.push(0..top.len());
    } else {
        let mut start = 0;
        let mut weight = 0;
        for (k, span) in spans.iter().enumerate() {
            weight += span.len();
            if weight >= chunk_size && k + 1 < top.len() {
                chunks.push(start..k + 1);
                start = k + 1;
                weight = 0;
            }
        }
        chunks.push(start..top.len());
    }
    let chunk_insts = chunks
        .iter()
        .map(|r| spans[r.clone()].iter().map(|s| s.len()).sum())
        .collect();
    let mut slot = SecondaryMap::with_default(NONE);
    let mut num_slots = 0u32;
    let mut home = SecondaryMap::with_default(NONE);
    let mut early_ret = SecondaryMap::with_default(NONE);
    let mut early_ret_pos: Vec<Vec<u32>> = Vec::new();
    if chunks.len() > 1 {
        // Dense: every top-level result of a long function gets an entry.
        let mut def_chunk: SecondaryMap<Value, u32> = SecondaryMap::with_default(u32::MAX);
        def_chunk.resize(f.values.len());
        slot.resize(f.values.len());
        home.resize(f.values.len());
        early_ret.resize(f.values.len());
        for (c, r) in chunks.iter().enumerate() {
            for k in r.clone() {
                for &i in &nested[spans[k].clone()] {
                    let d = &f.insts[i];
                    if d.op == Op::Ret {
                        for (pos, &a) in d.args.iter().enumerate() {
                            if def_chunk[a] != u32::MAX {
                                if early_ret[a] == NONE {
                                    early_ret[a] = early_ret_pos.len() as u32;
                                    early_ret_pos.push(Vec::new());
                                }
                                early_ret_pos[early_ret[a] as usize].push(pos as u32);
                            }
                        }
                        continue;
                    }
                    for &a in &d.args {
                        let dc = def_chunk[a];
                        if dc != u32::MAX && dc as usize != c && slot[a] == NONE {
                            slot[a] = num_slots;
                            num_slots += 1;
                            home[a] = dc;
                        }
                    }
                }
                for &r in &f.insts[top[k]].results {
                    def_chunk[r] = c as u32;
                }
            }
        }
    }
    let frame_offset = 8 * u64::from(num_slots);
    let tensor_base = (frame_offset + frame).next_multiple_of(16);
    let own_bytes = match &tensors {
        Some(t) => tensor_base.saturating_add(t.bytes),
        None => frame_offset + frame,
    };
    FnPlan {
        top,
        tensors,
        tensor_base,
        chunks,
        slot,
        home,
        early_ret,
        early_ret_pos,
        chunk_insts,
        frame_offset,
        own_bytes,
        ws_bytes: own_bytes.saturating_add(max_callee),
        num_insts,
    }
}
