//! The compile driver: Cranelift setup, declarations, lowering, definition, finalize.
//!
//! Guarantees: every function is checked ([`check_function`]) before anything else
//! touches it, so a malformed hand-built module is a [`CompileError`], never a panic;
//! every generated function has inline stack probes (`enable_probestack`, strategy
//! `inline`: a frame larger than a page touches each page in order, so an overflow
//! hits the guard page instead of memory past it) and a frame of at most
//! [`CompileOptions::max_frame_bytes`]; the JIT module is freed on every error path
//! (it is owned by [`Owner`] from its creation); and the handle records the machine
//! stack the deepest chain of frames needs ([`crate::stack`]).

use crate::abi::{
    cl_ty, desc, driver_signature, entry_signature, guard_status, span_signature, DriverFn,
    EntryFn, GuardInfo, REVLOOP_SYMBOL, TAPELOOP_SYMBOL,
};
use crate::dedup::{share_chunks, Sharing};
use crate::error::CompileError;
use crate::handle::{CompileStats, Compiled, Owner, Shared};
use crate::lower::{GuardShift, Lower, ModuleCx};
use crate::plan::{check_function, index_by_name, plan_function, reachable_post_order, FnPlan};
use crate::runtime::{symbols, RtSig};
use crate::stack::{FrameSizes, JobCalls};
use crate::tensor_rt::{TensorCopyFn, TensorOpFn, TENSOR_COPY_SYMBOL, TENSOR_OP_SYMBOL};
use crate::{CompileOptions, RegAlloc};
use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{AbiParam, UserFuncName};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{CodegenError, Context};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module as _, ModuleError, ModuleReloc};
use jitad_ir::callgraph::{CallGraph, Limits};
use jitad_ir::{Function, Inst, Module, Op};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

fn isa_err(e: impl std::fmt::Display) -> CompileError {
    CompileError::Isa(e.to_string())
}

/// Cranelift's message, with verifier errors one per line (their `Display` says only
/// "Verifier errors").
fn cranelift_err(func: String, e: ModuleError) -> CompileError {
    match e {
        ModuleError::Compilation(e) => codegen_err(func, e),
        other => CompileError::Cranelift {
            func,
            message: other.to_string(),
        },
    }
}

fn codegen_err(func: String, e: CodegenError) -> CompileError {
    let message = match &e {
        CodegenError::Verifier(errs) => {
            let mut s = String::from("verifier errors:");
            for err in &errs.0 {
                let _ = write!(s, "\n  {err}");
            }
            s
        }
        other => format!("{other}"),
    };
    CompileError::Cranelift { func, message }
}

/// A panic caught in Cranelift (a bug, never the input's fault) as an error of the
/// compile, with the panic's message when it has one.
fn panicked(func: String, payload: &(dyn std::any::Any + Send)) -> CompileError {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned());
    CompileError::Cranelift {
        func,
        message: match what {
            Some(w) => format!("Cranelift panicked: {w}"),
            None => "Cranelift panicked".into(),
        },
    }
}

/// IR instructions lowered before the pending functions are compiled (in parallel when
/// there are several and [`CompileOptions::threads`] allows).
const BATCH_INSTS: usize = 16_000;

/// Below this many IR instructions a batch is compiled on the calling thread: spawning
/// threads costs more than it saves.
const PARALLEL_MIN_INSTS: usize = 4_000;

/// Functions of at most this many IR instructions get Cranelift's single-pass register
/// allocator even when [`RegAlloc::Backtracking`] is asked for: on a function this small
/// the backtracking allocator's set-up (its per-function tables) costs far more than the
/// allocation, which made modules of many tiny functions compile at ~100 µs per
/// function; the code differs only in register choice, so results are bit-identical.
const SMALL_FN_INSTS: usize = 32;

/// One generated function, lowered and waiting for Cranelift.
struct Job {
    id: FuncId,
    what: String,
    ctx: Context,
    /// Compile with the small-function ISA (see [`SMALL_FN_INSTS`]).
    small: bool,
}

/// The signature of a shared chunk ([`crate::dedup`]): the entry ABI and one pointer
/// per group.
fn shared_signature(
    abi: &cranelift_codegen::ir::Signature,
    groups: usize,
    ptr: cranelift_codegen::ir::Type,
) -> cranelift_codegen::ir::Signature {
    let mut sig = abi.clone();
    sig.params
        .extend(std::iter::repeat_n(AbiParam::new(ptr), groups));
    sig
}

/// Chunks one driver calls at most: a function of more chunks gets a driver calling
/// drivers of this many. A driver is a row of calls, compiled with the single-pass
/// register allocator (the backtracking one's time grows faster than the row: 1.9 s
/// for the 13,000 chunks of a 10⁶-element gradient), whose frame grows by a spill
/// slot per call; rows of this length keep the drivers' frames near 2 KiB up to
/// 256² chunks (a function of 6·10⁷ instructions), and the top driver's frame grows
/// by 8 bytes per 256 chunks beyond that.
const DRIVER_CALLS: usize = 256;

/// What a lowering job builds for a function.
#[derive(Clone, Copy)]
enum Piece {
    /// Chunk `k` (the whole function when it is not chunked).
    Chunk(usize),
    /// Driver `j` of chunks `j * DRIVER_CALLS ..` (functions of many chunks).
    Drivers(usize),
    /// The function's entry when chunked: calls its chunks, or their drivers.
    Driver,
}

/// What a function's compile does, in order.
enum Work {
    /// Lower and compile this piece as this function.
    Lower(FuncId, Piece),
    /// Chunk `k` runs the code of the earlier chunk `rep`: nothing to lower, but its
    /// guards get entries of their own in the guard table ([`GuardShift`]).
    Runs { k: usize, rep: usize },
}

/// The machine stack frame of compiled code: below the frame pointer
/// (`frame_to_fp_offset`: clobbers, spill and explicit slots, outgoing arguments), plus
/// the saved frame pointer and return address.
fn frame_size(code: &cranelift_codegen::CompiledCode) -> u64 {
    let below_fp = code
        .buffer
        .frame_layout()
        .map_or(0, |l| u64::from(l.frame_to_fp_offset));
    below_fp + 16
}

/// Lowered functions waiting to be compiled, spare contexts, and what compiling them
/// takes (the same for every batch of one compile).
struct Batch<'i> {
    jobs: Vec<Job>,
    weight: usize,
    spare: Vec<Context>,
    isa: &'i OwnedTargetIsa,
    /// The single-pass allocator's ISA for small functions (see [`SMALL_FN_INSTS`]).
    small_isa: Option<&'i OwnedTargetIsa>,
    threads: usize,
    /// The largest machine frame allowed ([`CompileOptions::max_frame_bytes`]).
    max_frame: u64,
}

impl<'i> Batch<'i> {
    fn new(
        isa: &'i OwnedTargetIsa,
        small_isa: Option<&'i OwnedTargetIsa>,
        threads: usize,
        max_frame: u64,
    ) -> Self {
        Batch {
            jobs: Vec::new(),
            weight: 0,
            spare: Vec::new(),
            isa,
            small_isa,
            threads,
            max_frame,
        }
    }

    /// Compiles every pending job (on up to `threads` threads), then defines them in
    /// the module in order; with `asm`, appends their machine code listings.
    fn flush(
        &mut self,
        module: &mut JITModule,
        stats: &mut CompileStats,
        frames: &mut FrameSizes,
        mut asm: Option<&mut String>,
    ) -> Result<(), CompileError> {
        if self.jobs.is_empty() {
            return Ok(());
        }
        let (isa, small_isa, max_frame) = (self.isa, self.small_isa, self.max_frame);
        let tc = Instant::now();
        let compile_one = |job: &mut Job| -> Result<(), CompileError> {
            let isa = match small_isa {
                Some(small) if job.small => small,
                _ => isa,
            };
            // A panic in Cranelift (a bug, never the input's fault) is an error of the
            // compile, whichever thread it happens on.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                job.ctx
                    .compile(&**isa, &mut ControlPlane::default())
                    .map(|_| ())
                    .map_err(|e| codegen_err(job.what.clone(), e.inner))
            }))
            .unwrap_or_else(|p| Err(panicked(job.what.clone(), &*p)))
        };
        let threads = self.threads.min(self.jobs.len());
        if threads > 1 && self.weight >= PARALLEL_MIN_INSTS {
            // The calling thread and `threads − 1` workers take jobs one at a time
            // from a shared queue, so none idles while another has a share left (fixed
            // shares of about equal weight left a core idle for ~a fifth of the batch:
            // chunks differ in cost), and the calling thread works rather than waits.
            let queue = std::sync::Mutex::new(self.jobs.iter_mut().enumerate());
            // Runs jobs until the queue is empty; the first failure (its job's index,
            // and the error) ends this thread's work and empties the queue, so the
            // others stop after their current job.
            let work = || -> Result<(), (usize, CompileError)> {
                loop {
                    // Nothing panics while holding the lock (jobs compile outside it),
                    // so it is never poisoned; `None` just ends the work.
                    let Some((k, job)) = queue.lock().ok().and_then(|mut q| q.next()) else {
                        return Ok(());
                    };
                    if let Err(e) = compile_one(job) {
                        if let Ok(mut q) = queue.lock() {
                            q.by_ref().for_each(drop);
                        }
                        return Err((k, e));
                    }
                }
            };
            let mut failures: Vec<(usize, CompileError)> = std::thread::scope(|s| {
                let handles: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
                let mine = work();
                std::iter::once(mine)
                    .chain(handles.into_iter().map(|h| {
                        h.join().unwrap_or_else(|p| {
                            Err((usize::MAX, panicked("a worker thread".into(), &*p)))
                        })
                    }))
                    .filter_map(Result::err)
                    .collect()
            });
            // Jobs leave the queue in order, so every job before the first failing one
            // was compiled: report that one, as the serial path would, whichever
            // thread took it.
            failures.sort_by_key(|&(k, _)| k);
            if let Some((_, e)) = failures.into_iter().next() {
                return Err(e);
            }
        } else {
            self.jobs.iter_mut().try_for_each(compile_one)?;
        }
        for mut job in self.jobs.drain(..) {
            let code = job
                .ctx
                .compiled_code()
                .ok_or_else(|| CompileError::Cranelift {
                    func: job.what.clone(),
                    message: "no compiled code".into(),
                })?;
            let relocs: Vec<ModuleReloc> = code
                .buffer
                .relocs()
                .iter()
                .map(|r| ModuleReloc::from_mach_reloc(r, &job.ctx.func, job.id))
                .collect();
            // Every callee is referenced by its absolute address (`Lower::func_ref`),
            // which reaches any distance; a displacement-sized relocation could
            // overflow when the JIT relocates, and cranelift-jit panics there.
            if let Some(r) = relocs.iter().find(|r| r.kind != Reloc::Abs8) {
                return Err(CompileError::Cranelift {
                    func: job.what.clone(),
                    message: format!("unexpected relocation {} (only absolute ones)", r.kind),
                });
            }
            let frame = frame_size(code);
            if frame > max_frame {
                return Err(CompileError::FrameTooLarge {
                    func: job.what.clone(),
                    bytes: frame,
                    limit: max_frame,
                });
            }
            frames.set(job.id, frame);
            stats.max_frame_bytes = stats.max_frame_bytes.max(frame);
            let align = u64::from(code.buffer.alignment);
            module
                .define_function_bytes(job.id, align, code.code_buffer(), &relocs)
                .map_err(|e| cranelift_err(job.what.clone(), e))?;
            stats.code_bytes += code.code_buffer().len();
            stats.clif_functions += 1;
            if let Some(asm) = asm.as_deref_mut() {
                let _ = writeln!(
                    asm,
                    "; {}\n{}",
                    job.what,
                    code.vcode.as_deref().unwrap_or("")
                );
            }
            job.ctx.clear();
            self.spare.push(job.ctx);
        }
        self.weight = 0;
        stats.cranelift += tc.elapsed();
        Ok(())
    }
}

/// The loop steps to compile a second time as spans ([`crate::abi::FwdSpanFn`],
/// [`crate::abi::BwdSpanFn`]), by function index: `(k, bwd)` for each way a scalar
/// `tapeloop`/`revloop` (no tensor operand or result, so no layout table) with `k` state
/// operands runs it — as its forward step (`false`) or backward step (`true`). Only a
/// step that is one unchunked scalar function, and runs no `tapeloop` or `revloop`
/// itself (through calls neither), qualifies: the drivers run its spans without a
/// level of their own (`jitad_ir::checkpoint::Steps::spans`). Also returns, by
/// function index, whether a function runs a `tapeloop` or `revloop` (itself or
/// through calls). Linear in the instructions of the functions in `order`
/// (post-order: callees first).
fn span_requests(
    funcs: &[&Function],
    order: &[usize],
    by_name: &HashMap<&str, usize>,
    plans: &[Option<FnPlan>],
) -> (Vec<Vec<(usize, bool)>>, Vec<bool>) {
    // One walk over each function's instructions: its loop drivers (what the rest looks
    // at) and whether it runs one itself or through a call.
    let mut drives = vec![false; funcs.len()];
    let mut drivers: Vec<Vec<Inst>> = vec![vec![]; funcs.len()];
    for &fi in order {
        for (inst, d) in funcs[fi].insts.iter() {
            drives[fi] |= match &d.op {
                Op::RevLoop(_) | Op::TapeLoop(_) => {
                    drivers[fi].push(inst);
                    true
                }
                Op::Call(n) => by_name.get(n.as_str()).is_some_and(|&c| drives[c]),
                _ => false,
            };
        }
    }
    let eligible = |fi: usize, k: usize, bwd: bool| -> bool {
        let f = funcs[fi];
        let scalar = |t: &jitad_ir::Type| matches!(t, jitad_ir::Type::Scalar(_));
        let plain = plans[fi]
            .as_ref()
            .is_some_and(|p| p.chunks.len() == 1 && p.tensors.is_none());
        let shape = if bwd {
            f.sig.params.len() > k + f.sig.results.len()
        } else {
            f.sig.results.len() == k && f.sig.params.len() > k
        };
        !drives[fi]
            && plain
            && shape
            && f.sig.params.iter().all(scalar)
            && f.sig.results.iter().all(scalar)
    };
    let mut out: Vec<Vec<(usize, bool)>> = vec![vec![]; funcs.len()];
    for &fi in order {
        let f = funcs[fi];
        for &inst in &drivers[fi] {
            let d = &f.insts[inst];
            let (steps, k) = match &d.op {
                Op::TapeLoop(r) => (
                    [Some(r.fwd.as_str()), None],
                    r.split(d.args.len()).map(|[_, inits, _]| inits.len()),
                ),
                Op::RevLoop(r) => (
                    [Some(r.fwd.as_str()), Some(r.bwd.as_str())],
                    r.split(d.args.len()).map(|[_, _, inits, _, _]| inits.len()),
                ),
                _ => continue,
            };
            let (Some(k), Some((_, _, false))) = (k, desc::shape(f, inst)) else {
                continue;
            };
            for (bwd, name) in [false, true].into_iter().zip(steps) {
                let Some(&si) = name.and_then(|n| by_name.get(n)) else {
                    continue;
                };
                if eligible(si, k, bwd) && !out[si].contains(&(k, bwd)) {
                    out[si].push((k, bwd));
                }
            }
        }
    }
    (out, drives)
}

/// The host ISA with `opts`' flags and register allocator `regalloc`.
fn host_isa(opts: &CompileOptions, regalloc: RegAlloc) -> Result<OwnedTargetIsa, CompileError> {
    let mut fb = settings::builder();
    let set = |fb: &mut settings::Builder, k: &str, v: &str| fb.set(k, v).map_err(isa_err);
    set(
        &mut fb,
        "opt_level",
        if opts.optimize { "speed" } else { "none" },
    )?;
    set(
        &mut fb,
        "enable_verifier",
        if opts.verify { "true" } else { "false" },
    )?;
    set(&mut fb, "unwind_info", "false")?;
    // Inline probes: a frame larger than a page touches each page on the way down.
    set(&mut fb, "enable_probestack", "true")?;
    set(&mut fb, "probestack_strategy", "inline")?;
    set(&mut fb, "is_pic", "false")?;
    set(&mut fb, "use_colocated_libcalls", "false")?;
    set(
        &mut fb,
        "regalloc_algorithm",
        match regalloc {
            RegAlloc::Backtracking => "backtracking",
            RegAlloc::SinglePass => "single_pass",
        },
    )?;
    cranelift_native::builder()
        .map_err(isa_err)?
        .finish(settings::Flags::new(fb))
        .map_err(isa_err)
}

/// A JIT module for the host with every runtime symbol registered.
fn new_jit(opts: &CompileOptions) -> Result<(JITModule, OwnedTargetIsa), CompileError> {
    let isa = host_isa(opts, opts.regalloc)?;
    let mut jb = JITBuilder::with_isa(isa.clone(), cranelift_module::default_libcall_names());
    for s in symbols() {
        jb.symbol(s.name, s.addr());
    }
    jb.symbol(
        REVLOOP_SYMBOL,
        crate::revloop::jitad_revloop as DriverFn as *const u8,
    );
    jb.symbol(
        TAPELOOP_SYMBOL,
        crate::revloop::jitad_tapeloop as DriverFn as *const u8,
    );
    jb.symbol(
        TENSOR_OP_SYMBOL,
        crate::tensor_rt::jitad_tensor_op as TensorOpFn as *const u8,
    );
    jb.symbol(
        TENSOR_COPY_SYMBOL,
        crate::tensor_rt::jitad_tensor_copy as TensorCopyFn as *const u8,
    );
    Ok((JITModule::new(jb), isa))
}

/// Compiles `entries` of `m` (and every function they call) into one JIT module and
/// returns a handle per entry, all sharing the machine code.
pub(crate) fn compile(
    m: &Module,
    entries: &[&str],
    opts: &CompileOptions,
) -> Result<Vec<Compiled>, CompileError> {
    let t0 = Instant::now();
    let by_name = index_by_name(m);
    if by_name.len() != m.funcs.len() {
        let dup = m
            .funcs
            .iter()
            .enumerate()
            .find(|(i, f)| by_name[f.name.as_str()] != *i)
            .map(|(_, f)| f.name.clone())
            .unwrap_or_default();
        return Err(CompileError::InvalidIr {
            func: dup,
            message: "two functions have this name".into(),
        });
    }
    let roots = entries
        .iter()
        .map(|&e| {
            by_name
                .get(e)
                .copied()
                .ok_or_else(|| CompileError::UnknownFunction(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let graph = CallGraph::new(m);
    let order = reachable_post_order(&graph, &roots)?;
    // The interpreter's rule, checked before anything runs: same programs rejected,
    // same error.
    for &r in &roots {
        graph.check_limits(r, Limits::default())?;
    }
    // Check before scheduling or planning, which index the IR freely.
    let mut in_order = vec![false; m.funcs.len()];
    for &fi in &order {
        in_order[fi] = true;
        check_function(&graph, &m.funcs[fi], opts.threads)?;
    }
    // The JIT schedules its own order of the functions it compiles (the caller's IR is
    // left as written). A function whose only region is its body (a traced function or
    // gradient: up to 10⁶ instructions) keeps its scheduled body order in its plan, with
    // no copy of the function; one with loop bodies or tensors is scheduled in a copy,
    // since the loop lowering and the fusion planner read the function's own order.
    let mut copies: Vec<Option<Function>> = (0..m.funcs.len()).map(|_| None).collect();
    let mut tops: Vec<Option<Vec<Inst>>> = vec![None; m.funcs.len()];
    if opts.schedule {
        for &fi in &order {
            let f = &m.funcs[fi];
            if f.regions.len() == 1 && !crate::fusion::has_tensors(f) {
                tops[fi] = Some(crate::schedule::body_order(f));
            } else {
                let mut copy = f.clone();
                crate::schedule::schedule_function(&mut copy);
                copies[fi] = Some(copy);
            }
        }
    }
    // Large loop bodies move into synthetic functions of a copy of the module (see
    // `crate::outline`), which are then planned and chunked like any other.
    let outlined: Module;
    let mut guard_map = None;
    let (funcs, by_name, order): (Vec<&Function>, _, _) =
        if crate::outline::needs_outlining(m, &in_order, opts.chunk_threshold) {
            let mut copy = Module::new();
            for (fi, f) in m.funcs.iter().enumerate() {
                copy.funcs.push(match (copies[fi].take(), tops[fi].take()) {
                    (Some(c), _) => c,
                    (None, Some(top)) => {
                        let mut c = f.clone();
                        c.regions[c.body].insts = top;
                        c
                    }
                    (None, None) if in_order[fi] => f.clone(),
                    // Keeps indices aligned with `by_name`.
                    (None, None) => Function::new(f.name.clone(), f.sig.clone()),
                });
            }
            let map = crate::outline::outline_loops(&mut copy, &in_order, opts.chunk_threshold);
            outlined = copy;
            let order = match map {
                None => order,
                Some(map) => {
                    guard_map = Some(map);
                    let graph = CallGraph::new(&outlined);
                    let order = reachable_post_order(&graph, &roots)?;
                    for &fi in &order {
                        if fi >= in_order.len() {
                            check_function(&graph, &outlined.funcs[fi], opts.threads)?;
                        }
                    }
                    order
                }
            };
            (
                outlined.funcs.iter().collect(),
                index_by_name(&outlined),
                order,
            )
        } else {
            let funcs = m
                .funcs
                .iter()
                .zip(&copies)
                .map(|(f, c)| c.as_ref().unwrap_or(f))
                .collect();
            (funcs, by_name, order)
        };
    let mut plans: Vec<Option<crate::plan::FnPlan>> = (0..funcs.len()).map(|_| None).collect();
    for &fi in &order {
        let f = funcs[fi];
        let top = tops.get_mut(fi).and_then(Option::take);
        let plan = plan_function(f, top, opts.chunk_size, opts.chunk_threshold, |name| {
            by_name
                .get(name)
                .and_then(|&ci| plans[ci].as_ref())
                .map_or(0, |p| p.ws_bytes)
        });
        plans[fi] = Some(plan);
    }

    let (span_reqs, runs_driver) = span_requests(&funcs, &order, &by_name, &plans);

    let (module, isa) = new_jit(opts)?;
    let small_isa = match opts.regalloc {
        RegAlloc::Backtracking => Some(host_isa(opts, RegAlloc::SinglePass)?),
        RegAlloc::SinglePass => None,
    };
    // Owned from here on, so an error anywhere below frees the code memory.
    let mut owner = Owner::new(module);
    let module = owner.module_mut();
    let ptr = module.target_config().pointer_type();
    let abi = entry_signature(module);
    // Runtime imports.
    let mut rt_ids = Vec::new();
    for s in symbols() {
        if !s.name.starts_with("jitad_") {
            rt_ids.push(None);
            continue;
        }
        let t = cl_ty(s.ty);
        let mut sig = module.make_signature();
        let n = match s.sig {
            RtSig::Unary => 1,
            RtSig::Binary => 2,
            RtSig::Ternary => 3,
        };
        for _ in 0..n {
            sig.params.push(AbiParam::new(t));
        }
        sig.returns.push(AbiParam::new(t));
        let id = module
            .declare_function(s.name, Linkage::Import, &sig)
            .map_err(|e| cranelift_err(s.name.into(), e))?;
        rt_ids.push(Some(id));
    }
    let driver_sig = driver_signature(module);
    let mut driver = |name: &str| {
        module
            .declare_function(name, Linkage::Import, &driver_sig)
            .map_err(|e| cranelift_err(name.into(), e))
    };
    let revloop_id = driver(REVLOOP_SYMBOL)?;
    let tapeloop_id = driver(TAPELOOP_SYMBOL)?;
    let mut tsig = module.make_signature();
    for _ in 0..3 {
        tsig.params.push(AbiParam::new(ptr));
    }
    tsig.returns
        .push(AbiParam::new(cranelift_codegen::ir::types::I32));
    let tensor_op_id = module
        .declare_function(TENSOR_OP_SYMBOL, Linkage::Import, &tsig)
        .map_err(|e| cranelift_err(TENSOR_OP_SYMBOL.into(), e))?;
    let mut csig = module.make_signature();
    for _ in 0..3 {
        csig.params.push(AbiParam::new(ptr));
    }
    let tensor_copy_id = module
        .declare_function(TENSOR_COPY_SYMBOL, Linkage::Import, &csig)
        .map_err(|e| cranelift_err(TENSOR_COPY_SYMBOL.into(), e))?;
    // Chunks that share their code with identical ones (`crate::dedup`).
    let mut sharing: Vec<Vec<Sharing>> = vec![vec![]; funcs.len()];
    if opts.share_chunks {
        for &fi in &order {
            if let Some(p) = plans[fi].as_ref().filter(|p| p.chunks.len() > 1) {
                sharing[fi] = share_chunks(funcs[fi], p, opts.threads);
            }
        }
    }
    // Declare every generated function before lowering any, so calls can refer to them.
    // A chunk whose code is another's gets that chunk's id.
    let mut main_ids = vec![None; funcs.len()];
    let mut chunk_ids: Vec<Vec<FuncId>> = vec![vec![]; funcs.len()];
    let mut driver_ids: Vec<Vec<FuncId>> = vec![vec![]; funcs.len()];
    for &fi in &order {
        let decl =
            |module: &mut JITModule, name: String, sig: &cranelift_codegen::ir::Signature| {
                module
                    .declare_function(&name, Linkage::Local, sig)
                    .map_err(|e| cranelift_err(name, e))
            };
        main_ids[fi] = Some(decl(module, format!("jitad_fn{fi}"), &abi)?);
        let nchunks = plans[fi].as_ref().map_or(1, |p| p.chunks.len());
        if nchunks > 1 {
            for k in 0..nchunks {
                let share = sharing[fi].get(k);
                let id = match (share.and_then(|s| s.earlier_rep(k)), share) {
                    (Some(rep), _) => chunk_ids[fi][rep],
                    (None, Some(s @ Sharing::Shared { .. })) => {
                        let sig = shared_signature(&abi, s.groups().len(), ptr);
                        decl(module, format!("jitad_fn{fi}_chunk{k}_shared"), &sig)?
                    }
                    _ => decl(module, format!("jitad_fn{fi}_chunk{k}"), &abi)?,
                };
                chunk_ids[fi].push(id);
            }
            if nchunks > DRIVER_CALLS {
                for j in 0..nchunks.div_ceil(DRIVER_CALLS) {
                    let name = format!("jitad_fn{fi}_drivers{j}");
                    driver_ids[fi].push(decl(module, name, &abi)?);
                }
            }
        }
    }
    let mut spans = HashMap::new();
    for &fi in &order {
        for &(k, bwd) in &span_reqs[fi] {
            let name = if bwd {
                format!("jitad_fn{fi}_bspan{k}")
            } else {
                format!("jitad_fn{fi}_fspan")
            };
            let id = module
                .declare_function(&name, Linkage::Local, &span_signature(module, bwd))
                .map_err(|e| cranelift_err(name, e))?;
            spans.insert((fi, k, bwd), id);
        }
    }
    let mut cx = ModuleCx {
        by_name,
        plans,
        main_ids: main_ids.clone(),
        rt_ids,
        revloop_id,
        tapeloop_id,
        spans,
        runs_driver,
        span_loops: 0,
        tensor_op_id,
        tensor_copy_id,
        tensor_calls: vec![],
        guards: vec![],
        calls: vec![],
        ptr,
        has_fma: isa
            .isa_flags()
            .iter()
            .any(|f| f.name == "has_fma" && f.as_bool() == Some(true)),
    };
    let mut frames = FrameSizes::default();
    let mut job_calls: Vec<JobCalls> = vec![];
    let mut stats = CompileStats {
        setup: t0.elapsed(),
        ..CompileStats::default()
    };
    let mut clif = String::new();
    let mut asm = String::new();
    let mut fusion = String::new();
    let mut fctx = FunctionBuilderContext::new();
    let mut batch = Batch::new(
        &isa,
        small_isa.as_ref(),
        opts.threads.max(1),
        opts.max_frame_bytes,
    );
    for &fi in &order {
        let f = funcs[fi];
        let (Some(plan), Some(main)) = (cx.plans[fi].take(), main_ids[fi]) else {
            continue;
        };
        stats.ir_insts += plan.num_insts;
        if let (true, Some(tp)) = (opts.emit_text, plan.tensors.as_ref()) {
            fusion.push_str(&crate::fusion::describe(f, tp));
        }
        let mut ordinal = 0usize;
        let mut jobs: Vec<Work> = vec![];
        // Per chunk: the guard table's length before its guards, and their count.
        let mut chunk_guards = vec![(0usize, 0usize); chunk_ids[fi].len()];
        let mut shifts: Vec<Option<GuardShift>> = vec![None; chunk_ids[fi].len()];
        if chunk_ids[fi].is_empty() {
            jobs.push(Work::Lower(main, Piece::Chunk(0)));
        } else {
            stats.chunks += chunk_ids[fi].len();
            for (k, &id) in chunk_ids[fi].iter().enumerate() {
                // A chunk whose code is an earlier one's is not compiled again.
                if let Some(rep) = sharing[fi].get(k).and_then(|s| s.earlier_rep(k)) {
                    stats.shared_chunks += 1;
                    jobs.push(Work::Runs { k, rep });
                    continue;
                }
                jobs.push(Work::Lower(id, Piece::Chunk(k)));
            }
            for (j, &id) in driver_ids[fi].iter().enumerate() {
                jobs.push(Work::Lower(id, Piece::Drivers(j)));
            }
            jobs.push(Work::Lower(main, Piece::Driver));
        }
        for work in jobs {
            let (id, piece) = match work {
                Work::Lower(id, piece) => (id, piece),
                Work::Runs { k, rep } => {
                    // Its guards, in the order the representative's code lowered them:
                    // equal descriptions, so the same positions.
                    let (rep_first, count) = chunk_guards[rep];
                    let first = cx.guards.len();
                    for j in 0..count {
                        cx.guards.push(GuardInfo {
                            func: f.name.clone(),
                            ordinal: ordinal + j,
                        });
                    }
                    ordinal += count;
                    chunk_guards[k] = (first, count);
                    if count > 0 {
                        let too_many = || CompileError::InvalidIr {
                            func: f.name.clone(),
                            message: "too many guards".into(),
                        };
                        let status = |i: usize| guard_status(i).ok_or_else(too_many);
                        status(cx.guards.len() - 1)?;
                        shifts[k] = Some(GuardShift {
                            first: status(rep_first)?,
                            count: u32::try_from(count).map_err(|_| too_many())?,
                            delta: u32::try_from(first - rep_first).map_err(|_| too_many())?,
                        });
                    }
                    continue;
                }
            };
            let chunk = match piece {
                Piece::Chunk(k) => Some(k),
                Piece::Drivers(_) | Piece::Driver => None,
            };
            let guards_before = cx.guards.len();
            let tl = Instant::now();
            let mut ctx = batch.spare.pop().unwrap_or_else(Context::new);
            let groups = chunk
                .and_then(|k| sharing[fi].get(k))
                .map(Sharing::groups)
                .filter(|g| !g.is_empty());
            ctx.func.signature = match groups {
                Some(g) => shared_signature(&abi, g.len(), ptr),
                None => abi.clone(),
            };
            ctx.func.name = UserFuncName::user(0, id.as_u32());
            let b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let mut l = Lower::new(
                &mut cx,
                module,
                f,
                &plan,
                chunk.unwrap_or(0),
                b,
                &mut ordinal,
            );
            if let Some(g) = groups {
                l = l.shared(g)?;
            }
            let weight = match piece {
                Piece::Chunk(k) => {
                    l.lower_chunk()?;
                    if let Some(g) = chunk_guards.get_mut(k) {
                        *g = (guards_before, cx.guards.len() - guards_before);
                    }
                    plan.chunk_insts[k]
                }
                Piece::Drivers(j) => {
                    let n = chunk_ids[fi].len();
                    let r = j * DRIVER_CALLS..((j + 1) * DRIVER_CALLS).min(n);
                    let share = sharing[fi].get(r.clone()).unwrap_or(&[]);
                    let shift = shifts.get(r.clone()).unwrap_or(&[]);
                    l.lower_driver(&chunk_ids[fi][r.clone()], share, shift)?;
                    r.len()
                }
                Piece::Driver if driver_ids[fi].is_empty() => {
                    l.lower_driver(&chunk_ids[fi], &sharing[fi], &shifts)?;
                    chunk_ids[fi].len()
                }
                Piece::Driver => {
                    l.lower_driver(&driver_ids[fi], &[], &[])?;
                    driver_ids[fi].len()
                }
            };
            job_calls.push(JobCalls {
                func: fi,
                id,
                chunk_driver: matches!(piece, Piece::Driver),
                sub_driver: matches!(piece, Piece::Drivers(_)),
                calls: std::mem::take(&mut cx.calls),
            });
            let what = match piece {
                Piece::Chunk(k) if !chunk_ids[fi].is_empty() => format!("@{} chunk {k}", f.name),
                Piece::Chunk(_) => format!("@{}", f.name),
                Piece::Drivers(j) => format!("@{} chunk driver {j}", f.name),
                Piece::Driver => format!("@{} chunk driver", f.name),
            };
            if opts.emit_text {
                let _ = writeln!(clif, "; {what}\n{}", ctx.func.display());
                ctx.set_disasm(true);
            }
            stats.lower += tl.elapsed();
            batch.jobs.push(Job {
                id,
                what,
                ctx,
                // Tensor code is loops: never the single-pass allocator. A chunk driver
                // is a row of calls (thousands for a 10⁶-instruction function), where the
                // backtracking allocator's time grows faster than the row and its
                // register choices save nothing beside the calls.
                small: chunk.is_none() || (weight <= SMALL_FN_INSTS && plan.tensors.is_none()),
            });
            batch.weight += weight;
            if batch.weight >= BATCH_INSTS {
                batch.flush(
                    module,
                    &mut stats,
                    &mut frames,
                    opts.emit_text.then_some(&mut asm),
                )?;
            }
        }
        // The spans of a loop step: the same body, lowered again inside a loop. A span
        // that fails to lower or compile fails the compile, like any function; its
        // frame is the step's plus the few carried values (an unchunked step has at
        // most `chunk_threshold` instructions), far below `max_frame_bytes`.
        for &(k, bwd) in &span_reqs[fi] {
            let id = cx.spans[&(fi, k, bwd)];
            let tl = Instant::now();
            let mut ctx = batch.spare.pop().unwrap_or_else(Context::new);
            ctx.func.signature = span_signature(module, bwd);
            ctx.func.name = UserFuncName::user(0, id.as_u32());
            let b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            // Guards count from the function's first, as in its own lowering.
            let mut span_ordinal = 0usize;
            Lower::new(&mut cx, module, f, &plan, 0, b, &mut span_ordinal).lower_span(bwd, k)?;
            job_calls.push(JobCalls {
                func: fi,
                id,
                chunk_driver: false,
                sub_driver: false,
                calls: std::mem::take(&mut cx.calls),
            });
            let what = format!(
                "@{} {} span",
                f.name,
                if bwd { "backward" } else { "forward" }
            );
            if opts.emit_text {
                let _ = writeln!(clif, "; {what}\n{}", ctx.func.display());
                ctx.set_disasm(true);
            }
            stats.lower += tl.elapsed();
            stats.spans += 1;
            batch.jobs.push(Job {
                id,
                what,
                ctx,
                small: false,
            });
            batch.weight += plan.num_insts;
        }
        cx.plans[fi] = Some(plan);
        if batch.weight >= BATCH_INSTS {
            batch.flush(
                module,
                &mut stats,
                &mut frames,
                opts.emit_text.then_some(&mut asm),
            )?;
        }
    }
    batch.flush(
        module,
        &mut stats,
        &mut frames,
        opts.emit_text.then_some(&mut asm),
    )?;
    stats.span_loops = cx.span_loops;
    let stack_need = crate::stack::stack_needs(funcs.len(), &job_calls, &frames);
    let tf = Instant::now();
    // Relocation is where cranelift-jit unwraps a value that does not fit; the check
    // of each function's relocations above keeps it from happening, and should it
    // still, the compile fails instead of the caller.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        module
            .finalize_definitions()
            .map_err(|e| cranelift_err("finalize".into(), e))
    }))
    .unwrap_or_else(|p| Err(panicked("finalize".into(), &*p)))?;
    stats.finalize = tf.elapsed();
    let mut ptrs = vec![];
    for &r in &roots {
        let id = main_ids[r].ok_or_else(|| CompileError::UnknownFunction(funcs[r].name.clone()))?;
        let p = module.get_finalized_function(id);
        // SAFETY: `p` is the finalized code of a function generated with exactly the
        // ABI of `EntryFn` (three pointer parameters, one i32 return, the host's default
        // C calling convention, which `make_signature` uses); the code stays mapped as
        // long as `Owner` (held by every handle) is alive.
        let entry = unsafe { std::mem::transmute::<*const u8, EntryFn>(p) };
        ptrs.push(entry);
    }
    stats.total = t0.elapsed();
    let loops = order.iter().any(|&fi| {
        funcs[fi]
            .insts
            .values()
            .any(|d| matches!(d.op, jitad_ir::Op::RevLoop(_) | jitad_ir::Op::TapeLoop(_)))
    });
    let shared = Arc::new(Shared {
        _owner: owner,
        guards: match &guard_map {
            None => cx.guards,
            Some(map) => crate::outline::remap_guards(cx.guards, map),
        },
        clif: opts.emit_text.then_some(clif),
        asm: opts.emit_text.then_some(asm),
        fusion: opts.emit_text.then_some(fusion),
        stats,
        loops,
        _tensor_calls: cx.tensor_calls,
    });
    let mut out = vec![];
    for (&r, entry) in roots.iter().zip(ptrs) {
        let f = funcs[r];
        let ws = cx.plans[r].as_ref().map_or(0, |p| p.ws_bytes);
        out.push(Compiled::new(
            Arc::clone(&shared),
            entry,
            f,
            ws,
            stack_need[r],
        )?);
    }
    Ok(out)
}
