//! Lowering jitad IR to Cranelift IR: one flat `match` over [`Op`].
//!
//! Every generated function (an IR function, one chunk of it, or a chunk driver) has the
//! ABI of [`crate::EntryFn`]: `(args, results, workspace) -> status`, pointers to
//! 8-byte slots ([`crate::abi`]); a chunk whose body other chunks share
//! ([`crate::dedup`]) takes one pointer more per group of the words it touches, and
//! addresses those words from them. Values come from three places:
//!
//! - SSA values computed in this Cranelift function (`vals`);
//! - function parameters, loaded from the argument buffer where they are used;
//! - values of earlier chunks, loaded from their workspace slot where they are used.
//!
//! A load is emitted where a value is used (not once per function), so nothing forces a
//! parameter to live from the entry to its last use; a use within [`LOAD_REUSE`]
//! instructions of the last load of the same value, in the same block, reuses that load
//! (Cranelift at `opt_level=none` would not merge them). Inside a loop, the
//! memory-backed values the body reads are loaded once before the loop (hoisted).
//!
//! Op by op (the semantics are those documented on [`Op`]):
//!
//! | op | lowering |
//! |---|---|
//! | add sub mul div fma sqrt floor ceil trunc | the Cranelift instruction (`iadd`, `isub`, `imul` for i64) |
//! | copysign | `fcopysign`, with the canonical NaN selected when the sign operand is NaN |
//! | neg abs | `bxor`/`band` with a sign-mask constant shared by the whole function (Cranelift's `fneg`/`fabs` rematerialise the mask, 15 bytes, at every use); `ineg`/`iabs` for i64 |
//! | min max | `fmin`/`fmax` (IEEE 754-2019 minimum/maximum, like ours), with NaN results replaced by the canonical NaN that `math::min`/`max` return; `smin`/`smax` for i64 |
//! | round | exact sequence: `t = trunc x; t + copysign(1, x)` if `abs(x - t) >= 0.5`, else `t` |
//! | powi n | the square-and-multiply of `math::powi`, unrolled at compile time in the same order |
//! | exp expm1 log log1p sin cos tan tanh sigmoid erf pow atan2 | calls to `jitad_ir::math::{f64m,f32m}` |
//! | lt le gt ge eq ne | `fcmp`/`icmp` (NaN: false, `ne` true), `bool` is an `i8` 0/1 |
//! | select | `select` |
//! | cast | Rust `as`: `fcvt_to_sint_sat`, `fcvt_from_sint`, `fpromote`/`fdemote`; to bool `x != 0` |
//! | guard | branch to a cold exit returning the guard's status |
//! | call | arguments and results through a stack slot (a tensor: the address of its buffer), a call through the callee's absolute address, status check |
//! | loop | rotated (do-while) loop: zero-trip check, body block with the index and carried values as block parameters, back edge `i + 1 < end`; a carried tensor is the address of its current buffer, two loop buffers alternating, the last one copied into the result once |

mod tensor;

use crate::abi::{
    cl_ty, desc, encode_policy, frame_bytes, guard_status, word_offset, GuardInfo, MAX_STACK_FRAME,
};
use crate::dedup::{Family, Groups, Sharing};
use crate::error::CompileError;
use crate::plan::{nested_insts, FnPlan, IdMap};
use cranelift_codegen::ir::{
    self as cl, condcodes::FloatCC, condcodes::IntCC, types, BlockArg, InstBuilder, MemFlagsData,
    StackSlotData, StackSlotKind,
};
use cranelift_frontend::FunctionBuilder;
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Module as _};
use jitad_ir::{Bound, Constant, Function, Inst, Op, ScalarType, Value, ValueDef};
use std::collections::HashMap;

/// How a driver turns the status of a chunk running another's code into its own: a
/// status in `first..first + count` (the representative's guards) moves `delta`
/// entries on in the guard table, to the chunk's own guard at the same position.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GuardShift {
    /// The status of the representative's first guard.
    pub first: u32,
    /// The guards in the chunk.
    pub count: u32,
    /// The chunk's first guard entry less the representative's.
    pub delta: u32,
}

/// Module-wide facts shared by every function's lowering.
pub(crate) struct ModuleCx<'a> {
    /// Function index by name.
    pub by_name: HashMap<&'a str, usize>,
    /// Plans, by function index (`None` for unreachable functions).
    pub plans: Vec<Option<FnPlan>>,
    /// The Cranelift function implementing each IR function (its driver if chunked).
    pub main_ids: Vec<Option<FuncId>>,
    /// The imported runtime functions, by [`crate::runtime::symbols`] index.
    pub rt_ids: Vec<Option<FuncId>>,
    /// The `revloop` driver ([`crate::revloop`]).
    pub revloop_id: FuncId,
    /// The `tapeloop` driver.
    pub tapeloop_id: FuncId,
    /// The span functions of loop steps, by (function index, state count `k`,
    /// backward): see [`Lower::lower_span`].
    pub spans: HashMap<(usize, usize, bool), FuncId>,
    /// By function index: whether it runs a `tapeloop` or `revloop` (itself or
    /// through calls).
    pub runs_driver: Vec<bool>,
    /// Loop driver instructions lowered so far whose steps run a span at a time.
    pub span_loops: usize,
    /// The runtime tensor op ([`crate::tensor_rt`]).
    pub tensor_op_id: FuncId,
    /// The runtime tensor copy.
    pub tensor_copy_id: FuncId,
    /// The descriptors of every runtime tensor op lowered so far; compiled code holds
    /// their addresses, so the handle keeps them.
    #[allow(clippy::vec_box)] // boxed: addresses must not move as the list grows
    pub tensor_calls: Vec<Box<crate::tensor_rt::TensorCall>>,
    /// Every guard lowered so far.
    pub guards: Vec<GuardInfo>,
    /// IR functions the function being lowered calls (`false`) or has a loop driver
    /// call (`true`); drained by the compile driver after each generated function, to
    /// compute stack needs.
    pub calls: Vec<(usize, bool)>,
    /// The pointer type.
    pub ptr: cl::Type,
    /// The CPU has FMA (vector `fma` is then one instruction).
    pub has_fma: bool,
}

/// The largest frame among `insts` (nested ones included) that goes on the machine
/// stack (at most [`MAX_STACK_FRAME`]).
fn small_frame_bytes(f: &Function, insts: &[Inst]) -> u32 {
    let mut all = vec![];
    for &i in insts {
        all.push(i);
        nested_insts(f, i, &mut all);
    }
    all.iter()
        .filter_map(|&i| frame_bytes(f, i))
        .filter(|&n| n <= MAX_STACK_FRAME)
        .max()
        .map_or(0, |n| n as u32)
}

/// [`word_offset`], with an error naming `func` (not a wrapped offset) past `i32::MAX`.
fn slot_offset(func: &str, words: usize, extra: u64) -> Result<i32, CompileError> {
    word_offset(words, extra).ok_or_else(|| CompileError::TooLarge {
        func: func.to_string(),
        what: format!("the offset of word {words}"),
    })
}

fn trusted() -> MemFlagsData {
    MemFlagsData::trusted()
}

fn block_args(vs: &[cl::Value]) -> Vec<BlockArg> {
    vs.iter().map(|&v| v.into()).collect()
}

enum Flow {
    Next,
    Yield(Vec<cl::Value>),
    Returned,
}

/// Lowers one generated function: chunk `chunk` of IR function `fi`.
pub(crate) struct Lower<'a, 'b> {
    cx: &'a mut ModuleCx<'b>,
    module: &'a mut JITModule,
    f: &'b Function,
    plan: &'a FnPlan,
    chunk: usize,
    b: FunctionBuilder<'a>,
    vals: IdMap<Value, cl::Value>,
    frefs: IdMap<FuncId, cl::FuncRef>,
    args_ptr: cl::Value,
    res_ptr: cl::Value,
    ws_ptr: cl::Value,
    /// Cold block returning its `i32` parameter (guard failures, callee failures).
    exit: Option<cl::Block>,
    /// The one stack slot for call frames and driver descriptors of this generated
    /// function (created at first use), and its size: the largest frame of the chunk
    /// that fits [`MAX_STACK_FRAME`]. Calls run one at a time and their
    /// results are loaded right after, so they share it.
    area: Option<cl::StackSlot>,
    area_bytes: u32,
    /// The pointer area of runtime tensor op calls (created at first use).
    tarea: Option<cl::StackSlot>,
    guard_ordinal: &'a mut usize,
    /// Memory-backed values loaded lately: the load, its block, and the instruction
    /// count ([`Lower::tick`]) when it was made (see [`LOAD_REUSE`]).
    loaded: IdMap<Value, (cl::Value, cl::Block, u32)>,
    /// IR instructions lowered so far.
    tick: u32,
    /// Where a tensor without a home of its own (a call result inside a loop body)
    /// is written: the loop's buffer for the next iteration's state.
    tensor_out: IdMap<Value, cl::Value>,
    /// Lowering a span ([`Lower::lower_span`]): `ret` hands its values to the
    /// enclosing loop, like a `yield`.
    span: bool,
    /// A chunk whose code other chunks share ([`crate::dedup`]): where its memory
    /// words are, and the group pointers it takes after the usual three.
    groups: Option<(Groups, Vec<cl::Value>)>,
}

/// A memory-backed value (a parameter, a value of an earlier chunk) used again within
/// this many IR instructions of its last load, in the same block, reuses that load.
/// Scheduled reverse-mode code reads each primal value a few times within a few
/// instructions (the adjoint of `x*x` reads `x` twice, beside the primal's own reads), and
/// Cranelift at `opt_level=none` does not merge the loads itself; a bounded window keeps
/// live ranges short, which is why values are not loaded once per chunk. Same block: the
/// load then dominates the use (a load in a loop body is never reused after the loop).
/// Nothing writes the argument buffer or an earlier chunk's slot while a function runs,
/// so the reused load has the bits a fresh one would.
const LOAD_REUSE: u32 = 48;

impl<'a, 'b> Lower<'a, 'b> {
    /// Sets up the entry block of `b` for chunk `chunk` of `f`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        cx: &'a mut ModuleCx<'b>,
        module: &'a mut JITModule,
        f: &'b Function,
        plan: &'a FnPlan,
        chunk: usize,
        mut b: FunctionBuilder<'a>,
        guard_ordinal: &'a mut usize,
    ) -> Self {
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let p = b.block_params(entry).to_vec();
        let area_bytes = plan
            .chunks
            .get(chunk)
            .map_or(0, |r| small_frame_bytes(f, &plan.top[r.clone()]));
        Lower {
            cx,
            module,
            f,
            plan,
            chunk,
            b,
            vals: IdMap::default(),
            frefs: IdMap::default(),
            args_ptr: p[0],
            res_ptr: p[1],
            ws_ptr: p[2],
            exit: None,
            area: None,
            area_bytes,
            tarea: None,
            guard_ordinal,
            loaded: IdMap::default(),
            tick: 0,
            tensor_out: IdMap::default(),
            span: false,
            groups: None,
        }
    }

    /// Makes this a chunk whose code is shared ([`crate::dedup`]): its memory words
    /// are addressed relative to `groups`, whose addresses the function takes as
    /// parameters after the usual three (its signature must have them).
    pub(crate) fn shared(mut self, groups: &[(Family, u32)]) -> Result<Self, CompileError> {
        let Some(entry) = self.b.current_block() else {
            return Err(self.err("a shared chunk without an entry block"));
        };
        let params = self.b.block_params(entry);
        if params.len() != 3 + groups.len() {
            return Err(self.err("a shared chunk's signature does not match its groups"));
        }
        let ptrs = params[3..].to_vec();
        self.groups = Some((Groups::new(groups), ptrs));
        Ok(self)
    }

    /// The base pointer and displacement of 8-byte word `word` of `fam` (the argument
    /// buffer, the results buffer, the workspace): the family's pointer, or in a
    /// shared chunk the pointer of the word's group.
    fn word(&self, fam: Family, word: usize) -> Result<(cl::Value, i32), CompileError> {
        if let Some((g, ptrs)) = &self.groups {
            let located = u32::try_from(word).ok().and_then(|w| g.locate(fam, w));
            let Some((k, rel)) = located else {
                return Err(self.err(format!("{fam:?} word {word} outside the chunk's groups")));
            };
            return Ok((ptrs[k], self.off(rel as usize, 0)?));
        }
        let base = match fam {
            Family::Args => self.args_ptr,
            Family::Results => self.res_ptr,
            Family::Slots => self.ws_ptr,
        };
        Ok((base, self.off(word, 0)?))
    }

    fn i(&mut self) -> cranelift_frontend::FuncInstBuilder<'_, 'a> {
        self.b.ins()
    }

    /// The byte offset of 8-byte word `words` (plus `extra` bytes) as a load/store
    /// displacement, or an error past `i32::MAX` (2^28 words).
    fn off(&self, words: usize, extra: u64) -> Result<i32, CompileError> {
        slot_offset(&self.f.name, words, extra)
    }

    /// `n` bytes as an i64 immediate.
    fn imm(&self, n: u64, what: &str) -> Result<i64, CompileError> {
        i64::try_from(n).map_err(|_| CompileError::TooLarge {
            func: self.f.name.clone(),
            what: format!("{what} ({n} bytes)"),
        })
    }

    /// The address of the call frame or descriptor of `size` bytes: the shared stack
    /// slot when small, else this function's frame in the workspace (never the machine
    /// stack).
    fn frame_base(&mut self, size: u64) -> Result<cl::Value, CompileError> {
        let ptr = self.cx.ptr;
        if size <= MAX_STACK_FRAME {
            let ss = match self.area {
                Some(ss) => ss,
                None => {
                    let bytes = self.area_bytes.max(size as u32);
                    let ss = self.b.create_sized_stack_slot(StackSlotData::new(
                        StackSlotKind::ExplicitSlot,
                        bytes,
                        3,
                    ));
                    self.area = Some(ss);
                    ss
                }
            };
            if u64::from(self.b.func.sized_stack_slots[ss].size) < size {
                return Err(self.err("a call frame larger than the planned frame area"));
            }
            Ok(self.b.ins().stack_addr(ptr, ss, 0))
        } else {
            let ws = self.ws_ptr;
            let k = self.imm(self.plan.frame_offset, "the call frame offset")?;
            let k = self.b.ins().iconst(ptr, k);
            Ok(self.b.ins().iadd(ws, k))
        }
    }

    /// The workspace of callees: after this function's own part.
    fn callee_ws(&mut self) -> Result<cl::Value, CompileError> {
        let ws = self.ws_ptr;
        let own = self.imm(self.plan.own_bytes, "the workspace")?;
        Ok(if own > 0 {
            let k = self.b.ins().iconst(self.cx.ptr, own);
            self.b.ins().iadd(ws, k)
        } else {
            ws
        })
    }

    fn err(&self, message: impl Into<String>) -> CompileError {
        CompileError::InvalidIr {
            func: self.f.name.clone(),
            message: message.into(),
        }
    }

    /// Lowers the chunk's top-level instructions and finishes the function.
    pub(crate) fn lower_chunk(mut self) -> Result<(), CompileError> {
        // Workspace sizes saturate while planned (tensor regions, loop buffers,
        // callees'); one past `i64::MAX` is refused here, before any offset is used.
        self.imm(self.plan.ws_bytes, "the workspace")?;
        if self.plan.tensors.is_some() {
            return self.lower_tensor_function();
        }
        let plan = self.plan;
        let range = plan.chunks[self.chunk].clone();
        let mut returned = false;
        for &inst in &plan.top[range] {
            match self.lower_inst(inst)? {
                Flow::Next => {}
                Flow::Returned => {
                    returned = true;
                    break;
                }
                Flow::Yield(_) => return Err(self.err(format!("`yield` at top level ({inst})"))),
            }
            // Values later chunks read go to their workspace slots right away, and
            // values the function returns straight to the results buffer.
            for &r in &self.f.insts[inst].results {
                if let Some(s) = self.plan.slot_of(r) {
                    let v = self.vals[&r];
                    let (base, off) = self.word(Family::Slots, s as usize)?;
                    self.b.ins().store(trusted(), v, base, off);
                }
                if let Some(ps) = self.plan.early_ret_of(r) {
                    let v = self.vals[&r];
                    let t = self.scalar(r)?;
                    for &p in ps {
                        self.store_result(t, v, p as usize)?;
                    }
                }
            }
        }
        if !returned {
            let z = self.b.ins().iconst(types::I32, 0);
            self.b.ins().return_(&[z]);
        }
        self.finish()
    }

    /// Lowers this function — a loop step, unchunked and scalar — as a *span*
    /// ([`crate::abi::FwdSpanFn`] for the forward step, [`crate::abi::BwdSpanFn`] for
    /// the backward step, `k` state slots): its body inside a loop over iterations,
    /// with the carried values (the state, or the adjoints) as block parameters, so
    /// they stay in registers from one iteration to the next; the captures are loaded
    /// once. Per iteration, the forward span stores the new state to the tape, and the
    /// backward span loads its state from it: the memory traffic of a hand-written
    /// store-all loop, and one call per span instead of one per step.
    pub(crate) fn lower_span(mut self, bwd: bool, k: usize) -> Result<(), CompileError> {
        self.imm(self.plan.ws_bytes, "the workspace")?;
        if self.plan.chunks.len() != 1 || self.plan.tensors.is_some() {
            return Err(self.err("a span of a chunked or tensor function"));
        }
        self.span = true;
        let f = self.f;
        let entry = self
            .b
            .current_block()
            .ok_or_else(|| self.err("a span without an entry block"))?;
        let p = self.b.block_params(entry).to_vec();
        let [first, count, a2, a3, a4, a5, ws] = p[..] else {
            return Err(self.err("a span with the wrong signature"));
        };
        self.ws_ptr = ws;
        let params = f.params();
        let m = f.sig.results.len();
        let n = params.len();
        let (c, caps_ptr, carry_ptr) = if bwd {
            (n.checked_sub(1 + k + m), a4, a5)
        } else {
            (n.checked_sub(1 + k), a5, a2)
        };
        let c = c.ok_or_else(|| self.err("a span step with too few parameters"))?;
        let carried = if bwd {
            &params[1 + k + c..]
        } else {
            &params[1..1 + k]
        };
        if carried.len() != m {
            return Err(self.err("a span step whose results are not its carried values"));
        }
        for (q, &v) in params[1 + k..1 + k + c].iter().enumerate() {
            let t = self.scalar(v)?;
            let off = self.off(q, 0)?;
            let x = self.load(t, caps_ptr, off);
            self.vals.insert(v, x);
        }
        let mut init = vec![];
        let mut tys = vec![];
        for (q, &v) in carried.iter().enumerate() {
            let t = self.scalar(v)?;
            let off = self.off(q, 0)?;
            init.push(self.load(t, carry_ptr, off));
            tys.push(t);
        }
        let body = self.b.create_block();
        let exit = self.b.create_block();
        let j = self.b.append_block_param(body, types::I64);
        let tp = (!bwd).then(|| self.b.append_block_param(body, self.cx.ptr));
        let mut cur = vec![];
        for &t in &tys {
            cur.push(self.b.append_block_param(body, cl_ty(t)));
            self.b.append_block_param(exit, cl_ty(t));
        }
        let go = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, count, 0);
        let j0 = if bwd {
            self.b.ins().iadd_imm_s(count, -1)
        } else {
            self.b.ins().iconst(types::I64, 0)
        };
        let mut args = vec![j0];
        if !bwd {
            args.push(a3);
        }
        args.extend_from_slice(&init);
        self.b
            .ins()
            .brif(go, body, &block_args(&args), exit, &block_args(&init));
        self.b.switch_to_block(body);
        let i = self.b.ins().iadd(first, j);
        self.vals.insert(params[0], i);
        for (&v, &x) in carried.iter().zip(&cur) {
            self.vals.insert(v, x);
        }
        if bwd {
            // The state before iteration `first + j`: `base` for j = 0, else slots
            // `(j−1)·k..` of the tape.
            let kb = self.imm((k as u64).saturating_mul(8), "a span's state")?;
            let off = self.b.ins().imul_imm_s(j, kb);
            let at = self.b.ins().iadd(a3, off);
            let at = self.b.ins().iadd_imm_s(at, -kb);
            let zero = self.b.ins().icmp_imm_s(IntCC::Equal, j, 0);
            let src = self.b.ins().select(zero, a2, at);
            for (q, &v) in params[1..1 + k].iter().enumerate() {
                let t = self.scalar(v)?;
                let off = self.off(q, 0)?;
                let x = self.load(t, src, off);
                self.vals.insert(v, x);
            }
        }
        let plan = self.plan;
        let ys = match self.lower_seq(&plan.top[plan.chunks[0].clone()])? {
            Flow::Yield(ys) if ys.len() == m => ys,
            _ => return Err(self.err("a span step must end in `ret` of its carried values")),
        };
        let (next, more) = if bwd {
            let next = self.b.ins().iadd_imm_s(j, -1);
            let more = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, j, 0);
            (vec![next], more)
        } else {
            let tp = tp.ok_or_else(|| self.err("a forward span without a tape"))?;
            for (q, (&t, &y)) in tys.iter().zip(&ys).enumerate() {
                let off = self.off(q, 0)?;
                self.store_word(t, y, tp, off);
            }
            let next = self.b.ins().iadd_imm_s(j, 1);
            let more = self.b.ins().icmp(IntCC::SignedLessThan, next, count);
            let tp2 = self.b.ins().iadd(tp, a4);
            (vec![next, tp2], more)
        };
        let mut again = next;
        again.extend_from_slice(&ys);
        self.b
            .ins()
            .brif(more, body, &block_args(&again), exit, &block_args(&ys));
        self.b.switch_to_block(exit);
        let finals = self.b.block_params(exit).to_vec();
        for (q, (&t, &y)) in tys.iter().zip(&finals).enumerate() {
            let off = self.off(q, 0)?;
            self.store_word(t, y, carry_ptr, off);
        }
        let z = self.b.ins().iconst(types::I32, 0);
        self.b.ins().return_(&[z]);
        self.finish()
    }

    /// Stores `x` of type `t` as a whole 8-byte slot (f32 bits and bools
    /// zero-extended, as the drivers' flattened states hold them).
    fn store_word(&mut self, t: ScalarType, x: cl::Value, base: cl::Value, off: i32) {
        let x = match t {
            ScalarType::F64 | ScalarType::I64 => x,
            ScalarType::Bool => self.b.ins().uextend(types::I64, x),
            ScalarType::F32 => {
                let bits = self.b.ins().bitcast(types::I32, MemFlagsData::new(), x);
                self.b.ins().uextend(types::I64, bits)
            }
        };
        self.b.ins().store(trusted(), x, base, off);
    }

    /// Builds the driver of a chunked function: calls each chunk in order, a shared
    /// chunk ([`crate::dedup`]) with the addresses of its groups (`sharing`: per chunk,
    /// or empty when every chunk has its own code) and, when it runs another chunk's
    /// code with guards in it, its status moved to its own guards (`shifts`: per chunk,
    /// or empty).
    pub(crate) fn lower_driver(
        mut self,
        chunks: &[FuncId],
        sharing: &[Sharing],
        shifts: &[Option<GuardShift>],
    ) -> Result<(), CompileError> {
        for (k, &id) in chunks.iter().enumerate() {
            let fref = self.func_ref(id);
            let mut args = vec![self.args_ptr, self.res_ptr, self.ws_ptr];
            for &(fam, start) in sharing.get(k).map_or(&[][..], Sharing::groups) {
                let (base, off) = self.word(fam, start as usize)?;
                args.push(self.b.ins().iadd_imm_s(base, i64::from(off)));
            }
            let call = self.b.ins().call(fref, &args);
            let mut st = self.b.inst_results(call)[0];
            if let Some(&Some(sh)) = shifts.get(k) {
                // `st − first ∈ [0, count)` (unsigned) is one of the code's own guards:
                // the same guard of this chunk is `delta` entries further on. Any other
                // status (a callee's guard, a driver's) passes unchanged.
                let rel = self.b.ins().iadd_imm_s(st, -i64::from(sh.first));
                let own =
                    self.b
                        .ins()
                        .icmp_imm_s(IntCC::UnsignedLessThan, rel, i64::from(sh.count));
                let moved = self.b.ins().iadd_imm_s(st, i64::from(sh.delta));
                st = self.b.ins().select(own, moved, st);
            }
            self.check_status(st);
        }
        let z = self.b.ins().iconst(types::I32, 0);
        self.b.ins().return_(&[z]);
        self.finish()
    }

    fn finish(mut self) -> Result<(), CompileError> {
        if let Some(exit) = self.exit {
            self.b.switch_to_block(exit);
            let st = self.b.block_params(exit)[0];
            self.b.ins().return_(&[st]);
        }
        self.b.seal_all_blocks();
        let config = self.module.target_config();
        self.b.finalize(config);
        Ok(())
    }

    fn exit_block(&mut self) -> cl::Block {
        if let Some(b) = self.exit {
            return b;
        }
        let b = self.b.create_block();
        self.b.append_block_param(b, types::I32);
        self.b.set_cold_block(b);
        self.exit = Some(b);
        b
    }

    /// Returns `st` from the function when it is nonzero.
    fn check_status(&mut self, st: cl::Value) {
        let exit = self.exit_block();
        let cont = self.b.create_block();
        self.b.ins().brif(st, exit, &block_args(&[st]), cont, &[]);
        self.b.switch_to_block(cont);
    }

    /// A reference to generated function `id`, for a `call` or a `func_addr`.
    ///
    /// Never *colocated* (what `Module::declare_func_in_func` makes of a function the
    /// module defines): on x86-64 a colocated callee is reached by a 32-bit displacement
    /// from the call, but the JIT maps code in separate allocations as a module grows
    /// (a function that does not fit the current one gets a mapping of its own), and
    /// with gigabytes of other memory between them the displacement overflows —
    /// cranelift-jit then panicked while relocating (the traced Rosenbrock gradient at
    /// n = 10⁶, 13,000 chunks, one run in four). Not colocated, the call loads the
    /// callee's absolute address (an 8-byte relocation, any distance apart) and calls
    /// through a register: one instruction more per call. (aarch64's direct calls
    /// reach through veneers, but one rule for every host keeps `Batch::flush`'s
    /// relocation check simple.)
    fn func_ref(&mut self, id: FuncId) -> cl::FuncRef {
        if let Some(&r) = self.frefs.get(&id) {
            return r;
        }
        let sig = self
            .module
            .declarations()
            .get_function_decl(id)
            .signature
            .clone();
        let func = &mut *self.b.func;
        let signature = func.import_signature(sig);
        let name = func.declare_imported_user_function(cl::UserExternalName {
            namespace: 0,
            index: id.as_u32(),
        });
        let r = func.import_function(cl::ExtFuncData {
            name: cl::ExternalName::user(name),
            signature,
            colocated: false,
            patchable: false,
        });
        self.frefs.insert(id, r);
        r
    }

    /// The scalar type of `v`, or its element type when it is a tensor (whose elements
    /// fused loops compute one at a time).
    fn scalar(&self, v: Value) -> Result<ScalarType, CompileError> {
        self.f
            .values
            .get(v)
            .map(|d| d.ty.elem())
            .ok_or_else(|| self.err(format!("{v} is not a value")))
    }

    fn load(&mut self, t: ScalarType, base: cl::Value, off: i32) -> cl::Value {
        self.b.ins().load(cl_ty(t), trusted(), base, off)
    }

    /// Stores result `i`; results are whole 8-byte slots, so bools are widened to 0/1.
    fn store_result(&mut self, t: ScalarType, x: cl::Value, i: usize) -> Result<(), CompileError> {
        if self.span {
            return Err(self.err("a result stored by a span"));
        }
        let x = if t == ScalarType::Bool {
            self.b.ins().uextend(types::I64, x)
        } else {
            x
        };
        let (base, off) = self.word(Family::Results, i)?;
        self.b.ins().store(trusted(), x, base, off);
        Ok(())
    }

    /// True if `v` lives in memory here (a parameter, or a value of an earlier chunk).
    fn is_mem(&self, v: Value) -> bool {
        match self.f.values.get(v).map(|d| d.def) {
            Some(ValueDef::Param(r, _)) => r == self.f.body,
            Some(ValueDef::Result(..)) => self.plan.home_of(v).is_some_and(|h| h < self.chunk),
            None => false,
        }
    }

    /// The Cranelift value of `v`, loading memory-backed values afresh.
    fn get(&mut self, v: Value) -> Result<cl::Value, CompileError> {
        if let Some(&x) = self.vals.get(&v) {
            return Ok(x);
        }
        if self.is_tensor(v) {
            return self.tensor_addr(v);
        }
        let block = self.b.current_block();
        if let Some(&(x, b, at)) = self.loaded.get(&v) {
            if Some(b) == block && self.tick.wrapping_sub(at) <= LOAD_REUSE {
                return Ok(x);
            }
        }
        let t = self.scalar(v)?;
        let x = match self.f.values[v].def {
            // A span binds every parameter before lowering (its argument and result
            // pointers are not `args_ptr`/`res_ptr`).
            ValueDef::Param(..) if self.span => {
                return Err(self.err(format!("{v}: a span parameter left unbound")))
            }
            ValueDef::Param(r, i) if r == self.f.body => {
                let (base, off) = self.word(Family::Args, i as usize)?;
                self.load(t, base, off)
            }
            _ if self.is_mem(v) => {
                let Some(s) = self.plan.slot_of(v) else {
                    return Err(self.err(format!("{v} crosses chunks without a slot")));
                };
                let (base, off) = self.word(Family::Slots, s as usize)?;
                self.load(t, base, off)
            }
            _ => return Err(self.err(format!("{v} is used where it is not defined"))),
        };
        if let Some(b) = block {
            self.loaded.insert(v, (x, b, self.tick));
        }
        Ok(x)
    }

    fn args(&mut self, inst: Inst) -> Result<Vec<cl::Value>, CompileError> {
        let f = self.f;
        f.insts[inst].args.iter().map(|&v| self.get(v)).collect()
    }

    fn fconst(&mut self, t: ScalarType, v: f64) -> cl::Value {
        match t {
            ScalarType::F32 => self.b.ins().f32const(v as f32),
            _ => self.b.ins().f64const(v),
        }
    }

    fn rt_call(
        &mut self,
        op: &Op,
        t: ScalarType,
        args: &[cl::Value],
    ) -> Result<cl::Value, CompileError> {
        let id = crate::runtime::rt_index(op, t)
            .and_then(|i| self.cx.rt_ids.get(i).copied().flatten())
            .ok_or_else(|| self.err(format!("no runtime function for `{op}` at {t}")))?;
        let fref = self.func_ref(id);
        let call = self.b.ins().call(fref, args);
        Ok(self.b.inst_results(call)[0])
    }

    fn lower_seq(&mut self, insts: &[Inst]) -> Result<Flow, CompileError> {
        for &inst in insts {
            match self.lower_inst(inst)? {
                Flow::Next => {}
                other => return Ok(other),
            }
        }
        Ok(Flow::Next)
    }

    fn define(&mut self, inst: Inst, outs: &[cl::Value]) -> Result<(), CompileError> {
        let rs = &self.f.insts[inst].results;
        if rs.len() != outs.len() {
            return Err(self.err(format!(
                "{inst} has {} results, lowering made {}",
                rs.len(),
                outs.len()
            )));
        }
        for (&r, &o) in rs.iter().zip(outs) {
            self.vals.insert(r, o);
        }
        Ok(())
    }

    fn lower_inst(&mut self, inst: Inst) -> Result<Flow, CompileError> {
        self.tick = self.tick.wrapping_add(1);
        let f = self.f;
        let d = &f.insts[inst];
        // Ops whose operands need special handling come first.
        match &d.op {
            Op::Ret if self.span => return Ok(Flow::Yield(self.args(inst)?)),
            Op::Ret => {
                // One value at a time: a gradient returns thousands of values, mostly
                // re-loaded from memory; loading them all first would make them all
                // live at once.
                for (i, &v) in d.args.iter().enumerate() {
                    if self.plan.early_ret_of(v).is_some() {
                        continue; // stored by its defining chunk
                    }
                    if self.is_tensor(v) {
                        self.ret_tensor(v, i)?;
                        continue;
                    }
                    let x = self.get(v)?;
                    let t = self.scalar(v)?;
                    self.store_result(t, x, i)?;
                }
                let z = self.b.ins().iconst(types::I32, 0);
                self.b.ins().return_(&[z]);
                return Ok(Flow::Returned);
            }
            Op::Yield => return Ok(Flow::Yield(self.args(inst)?)),
            Op::Loop(bounds) => return self.lower_loop(inst, **bounds).map(|()| Flow::Next),
            Op::Call(name) => return self.lower_call(inst, name).map(|()| Flow::Next),
            Op::RevLoop(r) => return self.lower_revloop(inst, r).map(|()| Flow::Next),
            Op::TapeLoop(r) => return self.lower_tapeloop(inst, r).map(|()| Flow::Next),
            _ if crate::fusion::is_runtime_inst(f, inst) => {
                return self.lower_tensor_op(inst).map(|()| Flow::Next)
            }
            Op::Const(c) => {
                let v = match *c {
                    Constant::F64(v) => self.b.ins().f64const(v),
                    Constant::F32(v) => self.b.ins().f32const(v),
                    Constant::I64(v) => self.b.ins().iconst(types::I64, v),
                    Constant::Bool(v) => self.b.ins().iconst(types::I8, i64::from(v)),
                };
                self.define(inst, &[v])?;
                return Ok(Flow::Next);
            }
            _ => {}
        }
        let a = self.args(inst)?;
        let Some(&a0) = d.args.first() else {
            return Err(self.err(format!("{inst}: `{}` without operands", d.op)));
        };
        let t = self.scalar(a0)?;
        let fl = t.is_float();
        let x = a[0];
        let y = a.get(1).copied().unwrap_or(x);
        let out = match &d.op {
            Op::Add if fl => self.i().fadd(x, y),
            Op::Add => self.i().iadd(x, y),
            Op::Sub if fl => self.i().fsub(x, y),
            Op::Sub => self.i().isub(x, y),
            Op::Mul if fl => self.i().fmul(x, y),
            Op::Mul => self.i().imul(x, y),
            Op::Div => self.i().fdiv(x, y),
            Op::Neg if fl => {
                // `bxor` with a shared -0.0 value: the sign mask is one CLIF value kept
                // in a register, where `fneg` rematerialises it (movabs + movq, 15
                // bytes) at every use.
                let mask = self.fconst(t, -0.0);
                self.i().bxor(x, mask)
            }
            Op::Neg => self.i().ineg(x),
            Op::Fma => self.i().fma(x, y, a[2]),
            Op::Sqrt => self.i().sqrt(x),
            Op::Abs if fl => {
                // `band` with a shared mask, for the reason given at `neg`.
                let mask = match t {
                    ScalarType::F32 => self.i().f32const(f32::from_bits(0x7fff_ffff)),
                    _ => self.i().f64const(f64::from_bits(0x7fff_ffff_ffff_ffff)),
                };
                self.i().band(x, mask)
            }
            Op::Abs => self.i().iabs(x),
            Op::Floor => self.i().floor(x),
            Op::Ceil => self.i().ceil(x),
            Op::Trunc => self.i().trunc(x),
            Op::Copysign => {
                // A NaN's sign bit is not pinned (see `Op::Copysign`): NaN sign → NaN.
                let c = self.i().fcopysign(x, y);
                let uno = self.i().fcmp(FloatCC::Unordered, y, y);
                let nan = self.fconst(t, f64::NAN);
                self.i().select(uno, nan, c)
            }
            Op::Min | Op::Max if fl => {
                let m = if d.op == Op::Min {
                    self.i().fmin(x, y)
                } else {
                    self.i().fmax(x, y)
                };
                // Cranelift returns one operand's (quieted) NaN; ours is canonical.
                let uno = self.i().fcmp(FloatCC::Unordered, x, y);
                let nan = self.fconst(t, f64::NAN);
                self.i().select(uno, nan, m)
            }
            Op::Min => self.i().smin(x, y),
            Op::Max => self.i().smax(x, y),
            Op::Round => {
                // Exact for every input: x - trunc(x) is exact, so the test sees the
                // true fraction (no 0.49999999999999994 + 0.5 double rounding).
                let tr = self.i().trunc(x);
                let frac = self.i().fsub(x, tr);
                let af = self.i().fabs(frac);
                let half = self.fconst(t, 0.5);
                let ge = self.i().fcmp(FloatCC::GreaterThanOrEqual, af, half);
                let one = self.fconst(t, 1.0);
                let s = self.i().fcopysign(one, x);
                let up = self.i().fadd(tr, s);
                self.i().select(ge, up, tr)
            }
            Op::Powi(n) => self.powi(t, x, *n),
            Op::Exp
            | Op::Expm1
            | Op::Log
            | Op::Log1p
            | Op::Sin
            | Op::Cos
            | Op::Tan
            | Op::Tanh
            | Op::Sigmoid
            | Op::Erf
            | Op::Pow
            | Op::Atan2 => self.rt_call(&d.op, t, &a)?,
            Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Eq | Op::Ne => {
                let (fc, ic) = match d.op {
                    Op::Lt => (FloatCC::LessThan, IntCC::SignedLessThan),
                    Op::Le => (FloatCC::LessThanOrEqual, IntCC::SignedLessThanOrEqual),
                    Op::Gt => (FloatCC::GreaterThan, IntCC::SignedGreaterThan),
                    Op::Ge => (FloatCC::GreaterThanOrEqual, IntCC::SignedGreaterThanOrEqual),
                    Op::Eq => (FloatCC::Equal, IntCC::Equal),
                    _ => (FloatCC::NotEqual, IntCC::NotEqual),
                };
                if fl {
                    self.i().fcmp(fc, x, y)
                } else {
                    self.i().icmp(ic, x, y)
                }
            }
            Op::Select => self.i().select(x, y, a[2]),
            Op::Cast(to) => self.cast(t, *to, x),
            Op::Guard => {
                self.cx.guards.push(GuardInfo {
                    func: f.name.clone(),
                    ordinal: *self.guard_ordinal,
                });
                *self.guard_ordinal += 1;
                let status = guard_status(self.cx.guards.len() - 1)
                    .ok_or_else(|| self.err("too many guards"))?;
                let st = self.i().iconst(types::I32, i64::from(status));
                let exit = self.exit_block();
                let cont = self.b.create_block();
                self.b.ins().brif(x, cont, &[], exit, &block_args(&[st]));
                self.b.switch_to_block(cont);
                return Ok(Flow::Next);
            }
            Op::Const(_)
            | Op::Call(_)
            | Op::Loop(_)
            | Op::RevLoop(_)
            | Op::TapeLoop(_)
            | Op::Yield
            | Op::Ret => return Err(self.err(format!("{inst}: unexpected `{}`", d.op))),
            // Fused loops lower `fill` and the views themselves (`tensor` module).
            Op::Fill(..) | Op::Broadcast(_) | Op::Transpose(_) | Op::Reshape(_) | Op::Slice(_) => {
                return Err(self.err(format!("{inst}: `{}` outside a fused loop", d.op)))
            }
            Op::Iota(..)
            | Op::Reduce(..)
            | Op::Matmul
            | Op::Dot
            | Op::Pad(_)
            | Op::Concat(_)
            | Op::Extract
            | Op::Insert => return self.lower_tensor_op(inst).map(|()| Flow::Next),
        };
        self.define(inst, &[out])?;
        Ok(Flow::Next)
    }

    /// `math::powi`'s square-and-multiply, unrolled for the immediate `n`. The first
    /// multiplication there is `1.0 * base`, which is `base` exactly.
    fn powi(&mut self, t: ScalarType, x: cl::Value, n: i32) -> cl::Value {
        let mut e = n.unsigned_abs();
        let mut base = x;
        let mut acc: Option<cl::Value> = None;
        while e != 0 {
            if e & 1 == 1 {
                acc = Some(match acc {
                    None => base,
                    Some(a) => self.b.ins().fmul(a, base),
                });
            }
            e >>= 1;
            if e != 0 {
                base = self.b.ins().fmul(base, base);
            }
        }
        let acc = match acc {
            Some(a) => a,
            None => self.fconst(t, 1.0),
        };
        if n < 0 {
            let one = self.fconst(t, 1.0);
            self.b.ins().fdiv(one, acc)
        } else {
            acc
        }
    }

    /// `cast` with Rust `as` semantics.
    fn cast(&mut self, from: ScalarType, to: ScalarType, x: cl::Value) -> cl::Value {
        use ScalarType as S;
        match (from, to) {
            _ if from == to => x,
            (S::F64, S::F32) => self.b.ins().fdemote(types::F32, x),
            (S::F32, S::F64) => self.b.ins().fpromote(types::F64, x),
            (S::F64 | S::F32, S::I64) => self.b.ins().fcvt_to_sint_sat(types::I64, x),
            (S::I64, S::F64 | S::F32) => self.b.ins().fcvt_from_sint(cl_ty(to), x),
            (S::Bool, S::I64) => self.b.ins().uextend(types::I64, x),
            (S::Bool, S::F64 | S::F32) => {
                let one = self.fconst(to, 1.0);
                let zero = self.fconst(to, 0.0);
                self.b.ins().select(x, one, zero)
            }
            (S::F64 | S::F32, S::Bool) => {
                // `x != 0`: true for NaN, false for ±0.
                let zero = self.fconst(from, 0.0);
                self.b.ins().fcmp(FloatCC::NotEqual, x, zero)
            }
            (S::I64, S::Bool) => self.b.ins().icmp_imm_s(IntCC::NotEqual, x, 0),
            // Same-type casts are caught by the first arm.
            (S::F64, S::F64) | (S::F32, S::F32) | (S::I64, S::I64) | (S::Bool, S::Bool) => x,
        }
    }

    fn lower_call(&mut self, inst: Inst, name: &str) -> Result<(), CompileError> {
        let f = self.f;
        let d = &f.insts[inst];
        let ci = *self
            .cx
            .by_name
            .get(name)
            .ok_or_else(|| CompileError::UnknownFunction(name.to_string()))?;
        let id =
            self.cx.main_ids[ci].ok_or_else(|| CompileError::UnknownFunction(name.to_string()))?;
        let n = d.args.len();
        let m = d.results.len();
        let size = frame_bytes(f, inst).unwrap_or(8);
        // Small frames in the shared stack slot; large ones in this function's
        // workspace frame, never on the machine stack.
        let base = self.frame_base(size)?;
        // Arguments one at a time, so memory-backed ones are never all live at once.
        for (i, &v) in d.args.iter().enumerate() {
            let x = self.get(v)?;
            let off = self.off(i, 0)?;
            self.b.ins().store(trusted(), x, base, off);
        }
        let res_off = self.off(n, 0)?;
        let res = self.b.ins().iadd_imm_s(base, i64::from(res_off));
        // A tensor result's slot holds the address of the buffer the callee writes:
        // the result's home (never an operand's: the buffer plan allocates a step's
        // results before it frees its operands), or the loop buffer `tensor_out` gives.
        let mut outs = Vec::with_capacity(m);
        for (i, &r) in d.results.iter().enumerate() {
            if self.is_tensor(r) {
                let p = match self.tensor_out.get(&r) {
                    Some(&p) => p,
                    None => self.tensor_addr(r)?,
                };
                let off = self.off(i, 0)?;
                self.b.ins().store(trusted(), p, res, off);
                outs.push(Some(p));
            } else {
                outs.push(None);
            }
        }
        let cws = self.callee_ws()?;
        self.cx.calls.push((ci, false));
        let fref = self.func_ref(id);
        let call = self.b.ins().call(fref, &[base, res, cws]);
        let st = self.b.inst_results(call)[0];
        self.check_status(st);
        for (i, (&r, out)) in d.results.iter().zip(outs).enumerate() {
            let x = match out {
                // Only a homeless tensor is bound (to its buffer's address); the
                // others are found through their home.
                Some(p) if self.tensor_out.contains_key(&r) => p,
                Some(_) => continue,
                None => {
                    let t = self.scalar(r)?;
                    let off = self.off(i, 0)?;
                    self.load(t, res, off)
                }
            };
            self.vals.insert(r, x);
        }
        Ok(())
    }

    /// Bytes of tensor `v`'s data, as an `i64` constant.
    fn tensor_bytes(&mut self, v: Value) -> Result<cl::Value, CompileError> {
        let t = self.f.values[v].ty;
        let bytes =
            (t.num_elements() as u64).saturating_mul(crate::fusion::elem_bytes(t.elem()) as u64);
        let bytes = self.imm(bytes, "a tensor")?;
        Ok(self.b.ins().iconst(types::I64, bytes))
    }

    /// `memcpy(dst, src, bytes of v)` through the runtime's copy.
    fn copy_tensor(
        &mut self,
        v: Value,
        dst: cl::Value,
        src: cl::Value,
    ) -> Result<(), CompileError> {
        let n = self.tensor_bytes(v)?;
        let fr = self.func_ref(self.cx.tensor_copy_id);
        self.b.ins().call(fr, &[dst, src, n]);
        Ok(())
    }

    /// A loop driver's descriptor (see [`desc`]): header words, then the operands
    /// [`desc::shape`] names (a tensor's buffer address, a scalar's slot), then, when
    /// some of them or of the results is a tensor, their layout words and the result
    /// addresses; returns its address. In a stack slot, or the workspace frame when
    /// large.
    #[allow(clippy::too_many_arguments)]
    fn driver_descriptor(
        &mut self,
        inst: Inst,
        bounds: jitad_ir::LoopBounds,
        dyn_bounds: std::ops::Range<usize>,
        policy: jitad_ir::checkpoint::Policy,
        fwd: &str,
        bwd: Option<&str>,
        counts: [usize; 3],
        token: Option<usize>,
    ) -> Result<cl::Value, CompileError> {
        let f = self.f;
        let d = &f.insts[inst];
        let (values, results, table) = desc::shape(f, inst)
            .ok_or_else(|| self.err(format!("{inst}: `{}` with too few operands", d.op)))?;
        if values.len() != counts.iter().sum::<usize>() {
            return Err(self.err(format!("{inst}: operand counts differ")));
        }
        let words = desc::words(f, inst)
            .ok_or_else(|| self.err(format!("{inst}: a descriptor past the address space")))?;
        let size = frame_bytes(f, inst).unwrap_or(u64::MAX);
        if size != (words as u64).saturating_mul(8) {
            return Err(self.err(format!("{inst}: descriptor size differs from its plan")));
        }
        let ptr = self.cx.ptr;
        let base = self.frame_base(size)?;
        let id_of = |l: &Self, name: &str| -> Result<(usize, FuncId), CompileError> {
            let ci = *l
                .cx
                .by_name
                .get(name)
                .ok_or_else(|| CompileError::UnknownFunction(name.to_string()))?;
            let id =
                l.cx.main_ids[ci].ok_or_else(|| CompileError::UnknownFunction(name.to_string()))?;
            Ok((ci, id))
        };
        for (w, name) in [(desc::FWD, Some(fwd)), (desc::BWD, bwd)] {
            let v = match name {
                Some(n) => {
                    let (ci, id) = id_of(self, n)?;
                    self.cx.calls.push((ci, true));
                    let fr = self.func_ref(id);
                    self.b.ins().func_addr(ptr, fr)
                }
                None => self.b.ins().iconst(ptr, 0),
            };
            let off = self.off(w, 0)?;
            self.b.ins().store(trusted(), v, base, off);
        }
        // The steps' spans, when both were compiled (a scalar loop whose steps run
        // no driver themselves).
        let k = counts[0];
        let span = |l: &Self, name: &str, bwd: bool| {
            l.cx.by_name
                .get(name)
                .and_then(|&ci| l.cx.spans.get(&(ci, k, bwd)).copied())
        };
        let fspan = if table { None } else { span(self, fwd, false) };
        let bspan = bwd.and_then(|n| span(self, n, true));
        let (fspan, bspan) = match (fspan, bspan, bwd.is_some()) {
            (Some(f), Some(b), true) => (Some(f), Some(b)),
            (Some(f), _, false) => (Some(f), None),
            _ => (None, None),
        };
        // A loop with tensors has no span functions: its FSPAN word is 1 when its
        // steps run no driver, so that the driver may run them a span at a time.
        let plain = |l: &Self, name: &str| {
            l.cx.by_name
                .get(name)
                .is_some_and(|&ci| !l.cx.runs_driver.get(ci).copied().unwrap_or(true))
        };
        let tensor_spans = table && plain(self, fwd) && bwd.is_none_or(|n| plain(self, n));
        if fspan.is_some() || tensor_spans {
            self.cx.span_loops += 1;
        }
        for (w, id) in [(desc::FSPAN, fspan), (desc::BSPAN, bspan)] {
            let v = match id {
                Some(id) => {
                    let fr = self.func_ref(id);
                    self.b.ins().func_addr(ptr, fr)
                }
                None if w == desc::FSPAN && tensor_spans => self.b.ins().iconst(ptr, 1),
                None => self.b.ins().iconst(ptr, 0),
            };
            let off = self.off(w, 0)?;
            self.b.ins().store(trusted(), v, base, off);
        }
        let cws = self.callee_ws()?;
        let off = self.off(desc::WS, 0)?;
        self.b.ins().store(trusted(), cws, base, off);
        let mut dyn_args = dyn_bounds;
        for (w, bound) in [(desc::START, bounds.start), (desc::END, bounds.end)] {
            let v = match bound {
                Bound::Imm(v) => self.b.ins().iconst(types::I64, v),
                Bound::Dyn => {
                    let k = dyn_args
                        .next()
                        .ok_or_else(|| self.err(format!("{inst}: missing loop bound")))?;
                    self.get(d.args[k])?
                }
            };
            let off = self.off(w, 0)?;
            self.b.ins().store(trusted(), v, base, off);
        }
        let (tag, param) = encode_policy(policy);
        let [k, c, a] = counts.map(|n| n as u64);
        for (w, x) in [
            (desc::POLICY_TAG, tag),
            (desc::POLICY_PARAM, param),
            (desc::STATES, k),
            (desc::CAPS, c),
            (desc::ADJS, a),
            (desc::TABLE, u64::from(table)),
        ] {
            // Bit patterns (a policy parameter may exceed i64::MAX).
            let v = self.b.ins().iconst(types::I64, x.cast_signed());
            let off = self.off(w, 0)?;
            self.b.ins().store(trusted(), v, base, off);
        }
        let (t, has) = match token {
            Some(i) => (self.get(d.args[i])?, 1),
            None => (self.b.ins().iconst(types::I64, 0), 0),
        };
        let off = self.off(desc::TOKEN, 0)?;
        self.b.ins().store(trusted(), t, base, off);
        let has = self.b.ins().iconst(types::I64, has);
        let off = self.off(desc::HAS_TOKEN, 0)?;
        self.b.ins().store(trusted(), has, base, off);
        let n = values.len();
        // Values one at a time, so memory-backed ones are never all live at once.
        for (w, k) in (desc::HEADER..).zip(values) {
            let v = d.args[k];
            // A tensor's buffer address (its home; `get` gives it).
            let x = self.get(v)?;
            // Whole 8-byte words, as the driver reads them: bools and f32 bits
            // zero-extended.
            let x = match (self.is_tensor(v), self.scalar(v)?) {
                (true, _) | (false, ScalarType::F64 | ScalarType::I64) => x,
                (false, ScalarType::Bool) => self.b.ins().uextend(types::I64, x),
                (false, ScalarType::F32) => {
                    let bits = self.b.ins().bitcast(types::I32, MemFlagsData::new(), x);
                    self.b.ins().uextend(types::I64, bits)
                }
            };
            let off = self.off(w, 0)?;
            self.b.ins().store(trusted(), x, base, off);
            if table {
                let lw = desc::layout_word(f.values[v].ty)
                    .ok_or_else(|| self.err(format!("{inst}: operand {v} is too large")))?;
                let lw = self.b.ins().iconst(types::I64, lw.cast_signed());
                let off = self.off(w + n, 0)?;
                self.b.ins().store(trusted(), lw, base, off);
            }
        }
        if table {
            for (w, j) in (desc::HEADER + 2 * n..).zip(results) {
                let r = d.results[j];
                let x = if self.is_tensor(r) {
                    self.tensor_addr(r)?
                } else {
                    self.b.ins().iconst(ptr, 0)
                };
                let off = self.off(w, 0)?;
                self.b.ins().store(trusted(), x, base, off);
            }
        }
        Ok(base)
    }

    /// Defines the scalar results of driver instruction `inst` from the descriptor
    /// words at `base` that `word(j)` names (tensor results were written to their
    /// buffers by the driver).
    fn define_driver_results(
        &mut self,
        inst: Inst,
        base: cl::Value,
        word: impl Fn(usize) -> usize,
    ) -> Result<(), CompileError> {
        let f = self.f;
        for (j, &res) in f.insts[inst].results.iter().enumerate() {
            if self.is_tensor(res) {
                continue;
            }
            let t = self.scalar(res)?;
            let off = self.off(word(j), 0)?;
            let x = self.load(t, base, off);
            self.vals.insert(res, x);
        }
        Ok(())
    }

    /// A `revloop`: its descriptor, then a call to the driver.
    fn lower_revloop(&mut self, inst: Inst, r: &jitad_ir::RevLoop) -> Result<(), CompileError> {
        let f = self.f;
        let d = &f.insts[inst];
        let [bounds, tape, inits, caps, seeds] = r
            .split(d.args.len())
            .ok_or_else(|| self.err(format!("{inst}: `revloop` with too few operands")))?;
        let (k, c, a) = (inits.len(), caps.len(), seeds.len());
        if d.results.len() != a {
            return Err(self.err(format!("{inst}: `revloop` needs one result per seed")));
        }
        let base = self.driver_descriptor(
            inst,
            r.bounds,
            bounds,
            r.policy,
            &r.fwd,
            Some(&r.bwd),
            [k, c, a],
            tape.clone().next(),
        )?;
        let rt = self.func_ref(self.cx.revloop_id);
        let call = self.b.ins().call(rt, &[base]);
        let st = self.b.inst_results(call)[0];
        self.check_status(st);
        self.define_driver_results(inst, base, |j| desc::HEADER + k + c + j)
    }

    /// A `tapeloop`: its descriptor, then a call to the recording driver.
    fn lower_tapeloop(&mut self, inst: Inst, r: &jitad_ir::TapeLoop) -> Result<(), CompileError> {
        let f = self.f;
        let d = &f.insts[inst];
        let [bounds, inits, caps] = r
            .split(d.args.len())
            .ok_or_else(|| self.err(format!("{inst}: `tapeloop` with too few operands")))?;
        let k = inits.len();
        if d.results.len() != k + 1 {
            return Err(self.err(format!("{inst}: `tapeloop` needs its states and a token")));
        }
        let base = self.driver_descriptor(
            inst,
            r.bounds,
            bounds,
            r.policy,
            &r.fwd,
            None,
            [k, caps.len(), 0],
            None,
        )?;
        let rt = self.func_ref(self.cx.tapeloop_id);
        let call = self.b.ins().call(rt, &[base]);
        let st = self.b.inst_results(call)[0];
        self.check_status(st);
        self.define_driver_results(inst, base, |j| {
            if j < k {
                desc::HEADER + j
            } else {
                desc::TOKEN
            }
        })
    }

    fn lower_loop(&mut self, inst: Inst, bounds: jitad_ir::LoopBounds) -> Result<(), CompileError> {
        let f = self.f;
        let d = &f.insts[inst];
        let nd = bounds.num_dyn();
        let a = self.args(inst)?;
        let mut k = 0;
        let mut bound = |l: &mut Self, b: Bound| match b {
            Bound::Imm(v) => l.b.ins().iconst(types::I64, v),
            Bound::Dyn => {
                k += 1;
                a[k - 1]
            }
        };
        let start = bound(self, bounds.start);
        let end = bound(self, bounds.end);
        let inits = &a[nd..];
        let &[region] = &d.regions[..] else {
            return Err(self.err(format!("{inst}: a loop needs one body region")));
        };
        // Hoist the memory-backed values the body reads.
        let mut inner = vec![];
        nested_insts(f, inst, &mut inner);
        let mut scoped: Vec<Value> = vec![];
        for &i in &inner {
            for &v in &f.insts[i].args {
                if !self.vals.contains_key(&v) && self.is_mem(v) {
                    let x = self.get(v)?;
                    self.vals.insert(v, x);
                    scoped.push(v);
                }
            }
        }
        let rparams = &f.regions[region].params;
        // A carried tensor is carried as the address of its current buffer: first the
        // init's, then alternately one of two loop buffers (the iteration reads one and
        // its call writes the other), so no iteration copies its state. Their
        // addresses are loop-invariant.
        let ping_pong: Vec<[u64; 2]> = self
            .plan
            .tensors
            .as_ref()
            .and_then(|t| t.ping_pong.get(&inst))
            .cloned()
            .unwrap_or_default();
        let mut pairs: Vec<Option<[cl::Value; 2]>> = vec![];
        let mut bufs = ping_pong.iter();
        for &p in &rparams[1..] {
            if !self.is_tensor(p) {
                pairs.push(None);
                continue;
            }
            let Some(&[a, b]) = bufs.next() else {
                return Err(self.err(format!("{inst}: no buffers for carried tensor {p}")));
            };
            let base = self.plan.tensor_base;
            let addr = |l: &mut Self, o: u64| -> Result<cl::Value, CompileError> {
                let k = l.imm(base.saturating_add(o), "a loop buffer's offset")?;
                let ws = l.ws_ptr;
                Ok(l.b.ins().iadd_imm_s(ws, k))
            };
            let (a, b) = (addr(self, a)?, addr(self, b)?);
            pairs.push(Some([a, b]));
        }
        let body = self.b.create_block();
        let exit = self.b.create_block();
        let idx = self.b.append_block_param(body, types::I64);
        self.vals.insert(rparams[0], idx);
        scoped.push(rparams[0]);
        for &p in &rparams[1..] {
            let t = if self.is_tensor(p) {
                self.cx.ptr
            } else {
                cl_ty(self.scalar(p)?)
            };
            let bp = self.b.append_block_param(body, t);
            self.vals.insert(p, bp);
            scoped.push(p);
            self.b.append_block_param(exit, t);
        }
        let go = self.b.ins().icmp(IntCC::SignedLessThan, start, end);
        let mut first = vec![start];
        first.extend_from_slice(inits);
        self.b
            .ins()
            .brif(go, body, &block_args(&first), exit, &block_args(inits));
        self.b.switch_to_block(body);
        // This iteration's output buffer of each carried tensor: the one of its pair
        // it does not read. The yielded value is written there directly when it is a
        // call's result (an outlined body), else copied there.
        let yielded = f.regions[region]
            .insts
            .last()
            .map(|&y| f.insts[y].args.clone())
            .unwrap_or_default();
        let mut outs: Vec<Option<cl::Value>> = vec![];
        for (k, pair) in pairs.iter().enumerate() {
            let Some([a, b]) = *pair else {
                outs.push(None);
                continue;
            };
            let cur = self.vals[&rparams[k + 1]];
            let on_a = self.b.ins().icmp(IntCC::Equal, cur, a);
            let out = self.b.ins().select(on_a, b, a);
            if let Some(&y) = yielded.get(k) {
                self.tensor_out.insert(y, out);
            }
            outs.push(Some(out));
        }
        let mut ys = match self.lower_seq(&f.regions[region].insts)? {
            Flow::Yield(ys) => ys,
            _ => return Err(self.err(format!("{inst}: loop body must end in `yield`"))),
        };
        for (k, out) in outs.iter().enumerate() {
            let (Some(out), Some(y)) = (*out, ys.get(k).copied()) else {
                continue;
            };
            if y != out {
                self.copy_tensor(rparams[k + 1], out, y)?;
                ys[k] = out;
            }
        }
        for &y in &yielded {
            self.tensor_out.remove(&y);
        }
        let next = self.b.ins().iadd_imm_s(idx, 1);
        let more = self.b.ins().icmp(IntCC::SignedLessThan, next, end);
        let mut again = vec![next];
        again.extend_from_slice(&ys);
        self.b
            .ins()
            .brif(more, body, &block_args(&again), exit, &block_args(&ys));
        self.b.switch_to_block(exit);
        let finals = self.b.block_params(exit).to_vec();
        // Values of the body (and hoisted loads) are out of scope after the loop.
        for v in scoped {
            self.vals.remove(&v);
        }
        for &i in &inner {
            for r in &f.insts[i].results {
                self.vals.remove(r);
            }
        }
        // A tensor result: the final buffer (the init's after zero trips) copied once
        // into the result's home; scalars are the exit block's parameters.
        for (&r, &x) in d.results.iter().zip(&finals) {
            if self.is_tensor(r) {
                let dst = self.tensor_addr(r)?;
                self.copy_tensor(r, dst, x)?;
            } else {
                self.vals.insert(r, x);
            }
        }
        if d.results.len() != finals.len() {
            return Err(self.err(format!("{inst}: results differ from the carried values")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_offsets_never_wrap() {
        assert_eq!(slot_offset("f", 0, 0).unwrap(), 0);
        assert_eq!(slot_offset("f", 12, 0).unwrap(), 96);
        let last = (i32::MAX as usize) / 8;
        assert_eq!(slot_offset("f", last, 0).unwrap(), 8 * last as i32);
        // 2^28 words is 2^31 bytes: `8 * i as i32` wrapped to i32::MIN here.
        for words in [1usize << 28, (1 << 29) + 3, usize::MAX] {
            match slot_offset("f", words, 0) {
                Err(CompileError::TooLarge { func, what }) => {
                    assert_eq!(func, "f");
                    assert!(what.contains(&words.to_string()), "{what}");
                }
                other => panic!("{words} words: {other:?}"),
            }
        }
        assert!(slot_offset("f", last, 8).is_err());
    }
}
