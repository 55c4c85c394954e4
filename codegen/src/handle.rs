//! The safe compiled handle.
//!
//! A [`Compiled`] owns (through an `Arc` shared by every handle of one compilation) the
//! JIT module holding the machine code, and frees that memory when the last handle
//! drops. Calls check every length and type before any pointer reaches machine code,
//! take workspace from a per-handle pool (allocated on first use, then reused: no
//! allocation per call in steady state, and concurrent calls each get their own), and
//! turn a nonzero status into [`CallError`].

use crate::abi::{
    from_slot, guard_of_status, take_driver_error, EntryFn, GuardInfo, FIRST_DRIVER_STATUS,
    STATUS_OK, TENSOR_FAULT_STATUS,
};
use crate::error::CallError;
use cranelift_jit::JITModule;
use jitad_ir::{Function, ScalarType, Type, Val};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Times and sizes of one compilation.
#[derive(Clone, Debug, Default)]
pub struct CompileStats {
    /// IR instructions compiled (loop bodies included).
    pub ir_insts: usize,
    /// Cranelift functions generated (chunks and drivers included).
    pub clif_functions: usize,
    /// Chunks (0 when no function was split).
    pub chunks: usize,
    /// Chunks that run an identical earlier chunk's code instead of their own
    /// ([`crate::CompileOptions::share_chunks`]).
    pub shared_chunks: usize,
    /// Loop steps also compiled as spans (their body inlined in a loop that the
    /// checkpointing drivers call once per run of steps; see `Steps::spans` in
    /// `jitad_ir::checkpoint`).
    pub spans: usize,
    /// `tapeloop`s and `revloop`s whose driver runs their steps a span at a time:
    /// through compiled spans (scalar loops), or, for a loop with tensors, by passing
    /// the steps their operands and results in place.
    pub span_loops: usize,
    /// Machine code bytes.
    pub code_bytes: usize,
    /// The largest machine stack frame of a generated function, in bytes.
    pub max_frame_bytes: u64,
    /// Checking, planning and Cranelift setup.
    pub setup: Duration,
    /// Building Cranelift IR (our lowering).
    pub lower: Duration,
    /// Cranelift's compilation (`define_function`: optimisation, register allocation,
    /// emission).
    pub cranelift: Duration,
    /// Relocation and making code executable.
    pub finalize: Duration,
    /// Everything.
    pub total: Duration,
}

/// Owns the JIT module; frees its code and data when dropped.
pub(crate) struct Owner {
    // A `Mutex` only to make the owner `Sync` (JITModule is `Send`, not `Sync`): it is
    // never locked after finalize except in `Drop`.
    module: Mutex<Option<JITModule>>,
}

impl Owner {
    pub(crate) fn new(module: JITModule) -> Self {
        Owner {
            module: Mutex::new(Some(module)),
        }
    }

    /// The module, while compiling (before any handle exists).
    pub(crate) fn module_mut(&mut self) -> &mut JITModule {
        let m = match self.module.get_mut() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        m.get_or_insert_with(|| unreachable!("the module is taken only in Drop"))
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let m = match self.module.get_mut() {
            Ok(m) => m.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(m) = m {
            // SAFETY: the owner drops either on a compile error, before any code of the
            // module was called or any pointer into it handed out, or when the last
            // handle (the only holders of entry pointers into this module) drops; a
            // call borrows its handle, so no compiled function is running and none can
            // be called afterwards.
            unsafe { m.free_memory() };
        }
    }
}

/// What every handle of one compilation shares.
pub(crate) struct Shared {
    /// Held for its `Drop`, which frees the machine code.
    pub _owner: Owner,
    pub guards: Vec<GuardInfo>,
    pub clif: Option<String>,
    pub asm: Option<String>,
    pub fusion: Option<String>,
    pub stats: CompileStats,
    /// The code runs reverse sweeps through loops (`tapeloop`/`revloop`).
    pub loops: bool,
    /// Descriptors of runtime tensor ops, whose addresses the code holds: kept (never
    /// moved: boxed) as long as the code.
    #[allow(clippy::vec_box)] // boxed: the code holds their addresses
    pub _tensor_calls: Vec<Box<crate::tensor_rt::TensorCall>>,
}

/// A compiled function: call it with [`Compiled::call_f64`] or [`Compiled::call`].
///
/// `Send + Sync`: call it from several threads at once; each concurrent call gets its
/// own workspace. The machine code is freed when the last handle of the compilation
/// drops.
pub struct Compiled {
    shared: Arc<Shared>,
    entry: EntryFn,
    name: String,
    /// Element types of the parameters and results (the type itself for scalars).
    params: Vec<ScalarType>,
    results: Vec<ScalarType>,
    param_types: Vec<Type>,
    result_types: Vec<Type>,
    /// Some parameter or result is a tensor (passed as a pointer to its elements).
    tensors: bool,
    all_f64: bool,
    ws_words: usize,
    /// Machine stack the deepest chain of frames of a call needs ([`crate::stack`]).
    stack_bytes: u64,
    /// Spare buffers: `params + results` slots, then `ws_words` workspace words.
    pool: Mutex<Vec<Box<[u64]>>>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("name", &self.name)
            .field("params", &self.param_types)
            .field("results", &self.result_types)
            .field("workspace_bytes", &self.workspace_bytes())
            .finish()
    }
}

impl Compiled {
    pub(crate) fn new(
        shared: Arc<Shared>,
        entry: EntryFn,
        f: &Function,
        ws_bytes: u64,
        stack_bytes: u64,
    ) -> Result<Self, crate::CompileError> {
        let param_types = f.sig.params.clone();
        let result_types = f.sig.results.clone();
        let params: Vec<ScalarType> = param_types.iter().map(|t| t.elem()).collect();
        let results: Vec<ScalarType> = result_types.iter().map(|t| t.elem()).collect();
        let tensors = param_types
            .iter()
            .chain(&result_types)
            .any(|t| t.scalar().is_none());
        let all_f64 = params.iter().chain(&results).all(|&t| t == ScalarType::F64);
        let ws_words = usize::try_from(ws_bytes.div_ceil(8)).map_err(|_| {
            crate::CompileError::Unsupported {
                func: f.name.clone(),
                what: "a workspace larger than the address space".into(),
            }
        })?;
        Ok(Compiled {
            shared,
            entry,
            name: f.name.clone(),
            params,
            results,
            param_types,
            result_types,
            tensors,
            all_f64,
            ws_words,
            stack_bytes,
            pool: Mutex::new(Vec::with_capacity(16)),
        })
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Parameter element types (a scalar parameter's type, a tensor's element type).
    pub fn params(&self) -> &[ScalarType] {
        &self.params
    }

    /// Result element types.
    pub fn results(&self) -> &[ScalarType] {
        &self.results
    }

    /// Parameter types, tensors with their shapes.
    pub fn param_types(&self) -> &[Type] {
        &self.param_types
    }

    /// Result types, tensors with their shapes.
    pub fn result_types(&self) -> &[Type] {
        &self.result_types
    }

    /// Bytes of workspace one call uses (chunk slots, callees'); 0 for most small
    /// functions, which then need no pool at all.
    pub fn workspace_bytes(&self) -> usize {
        self.ws_words * 8
    }

    /// Bytes of machine stack a call needs: the deepest chain of compiled frames and
    /// loop drivers below it (not counting the fixed margin the call keeps free). A call
    /// from a thread with less stack left returns [`CallError::StackTooSmall`].
    pub fn stack_bytes(&self) -> u64 {
        self.stack_bytes
    }

    /// Cranelift IR of every generated function of the compilation, if it was compiled
    /// with [`crate::CompileOptions::emit_text`].
    pub fn clif_text(&self) -> Option<&str> {
        self.shared.clif.as_deref()
    }

    /// Cranelift's register-allocated machine code listing (VCode) of every generated
    /// function, if compiled with [`crate::CompileOptions::emit_text`].
    pub fn asm_text(&self) -> Option<&str> {
        self.shared.asm.as_deref()
    }

    /// The fused schedule of every function holding tensors — each fusion group with
    /// its members and the values it stores, the runtime ops between them, and the
    /// workspace the buffer plan needs — if compiled with
    /// [`crate::CompileOptions::emit_text`] (empty for scalar code).
    pub fn fusion_text(&self) -> Option<&str> {
        self.shared.fusion.as_deref()
    }

    /// Times and sizes of the compilation.
    pub fn stats(&self) -> &CompileStats {
        &self.shared.stats
    }

    fn pool(&self) -> MutexGuard<'_, Vec<Box<[u64]>>> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A buffer of argument and result slots and workspace: a spare one, or a new one
    /// (zeroed; an allocation failure is an error, not an abort, since a tensor
    /// program's workspace may be large).
    fn take_buf(&self) -> Result<Box<[u64]>, CallError> {
        if let Some(b) = self.pool().pop() {
            return Ok(b);
        }
        let words = self.params.len() + self.results.len() + self.ws_words;
        let mut v: Vec<u64> = Vec::new();
        v.try_reserve_exact(words)
            .map_err(|_| CallError::OutOfMemory {
                func: self.name.clone(),
                bytes: words.saturating_mul(8),
            })?;
        v.resize(words, 0);
        Ok(v.into_boxed_slice())
    }

    fn give_buf(&self, b: Box<[u64]>) {
        self.pool().push(b);
    }

    fn check_counts(&self, nargs: usize, nout: usize) -> Result<(), CallError> {
        if nargs != self.params.len() {
            return Err(CallError::ArgCount {
                func: self.name.clone(),
                expected: self.params.len(),
                got: nargs,
            });
        }
        if nout != self.results.len() {
            return Err(CallError::ResultCount {
                func: self.name.clone(),
                expected: self.results.len(),
                got: nout,
            });
        }
        Ok(())
    }

    fn status(&self, s: u32) -> Result<(), CallError> {
        if s == STATUS_OK {
            return Ok(());
        }
        if s == TENSOR_FAULT_STATUS {
            return Err(CallError::TensorFault {
                func: self.name.clone(),
                message: crate::tensor_rt::take_fault().unwrap_or_default(),
            });
        }
        if s >= FIRST_DRIVER_STATUS {
            if let Some(error) = take_driver_error(s) {
                return Err(CallError::Checkpoint {
                    func: self.name.clone(),
                    error,
                });
            }
        }
        match guard_of_status(s).and_then(|k| self.shared.guards.get(k)) {
            Some(g) => Err(CallError::GuardFailed {
                func: g.func.clone(),
                guard: g.ordinal,
            }),
            None => Err(CallError::BadStatus {
                func: self.name.clone(),
                status: s,
            }),
        }
    }

    /// Calls a function whose parameters and results are all `f64` (scalars or `f64`
    /// tensors), reading `args` and writing `out` in place (no copies): each parameter
    /// takes its elements from `args` in order (one for a scalar, a tensor's
    /// row-major elements), and likewise for the results in `out`. The total lengths
    /// must match exactly. On error `out` holds unspecified values.
    pub fn call_f64(&self, args: &[f64], out: &mut [f64]) -> Result<(), CallError> {
        if !self.all_f64 {
            return Err(CallError::NotAllF64 {
                func: self.name.clone(),
            });
        }
        if !self.tensors {
            self.check_counts(args.len(), out.len())?;
            return self.run_f64(args.as_ptr(), out.as_mut_ptr(), None);
        }
        let mut buf = self.take_buf()?;
        let r = self.flat_slots(&mut buf, args, out).and_then(|()| {
            let (np, nr) = (self.params.len(), self.results.len());
            let (head, ws) = buf.split_at_mut(np + nr);
            let slots = head.as_mut_ptr();
            // SAFETY (pointer arithmetic only): `head` holds `np + nr` slots.
            let res = unsafe { slots.add(np) };
            self.run_f64(slots.cast_const().cast(), res.cast(), Some(ws))
        });
        if r.is_ok() {
            // Scalar results come back in their slots.
            let np = self.params.len();
            let mut at = 0;
            for (k, t) in self.result_types.iter().enumerate() {
                if t.scalar().is_some() {
                    out[at] = f64::from_bits(buf[np + k]);
                }
                at += t.num_elements();
            }
        }
        self.give_buf(buf);
        r
    }

    /// Fills the slots of a tensor function from flat element buffers.
    fn flat_slots(&self, buf: &mut [u64], args: &[f64], out: &mut [f64]) -> Result<(), CallError> {
        let (np, nr) = (self.params.len(), self.results.len());
        let mut at = 0usize;
        for (k, t) in self.param_types.iter().enumerate() {
            let n = t.num_elements();
            let Some(part) = args.get(at..at.saturating_add(n)) else {
                return Err(self.length_err("argument", k, args.len().saturating_sub(at)));
            };
            buf[k] = match t {
                Type::Scalar(_) => part[0].to_bits(),
                Type::Tensor(..) => part.as_ptr() as u64,
            };
            at += n;
        }
        if at != args.len() {
            return Err(self.length_err("argument", np.saturating_sub(1), args.len()));
        }
        let mut at = 0usize;
        for (k, t) in self.result_types.iter().enumerate() {
            let n = t.num_elements();
            let len = out.len();
            let Some(part) = out.get_mut(at..at.saturating_add(n)) else {
                return Err(self.length_err("result", k, len.saturating_sub(at)));
            };
            buf[np + k] = match t {
                Type::Scalar(_) => 0,
                Type::Tensor(..) => part.as_mut_ptr() as u64,
            };
            at += n;
        }
        if at != out.len() {
            return Err(self.length_err("result", nr.saturating_sub(1), out.len()));
        }
        Ok(())
    }

    fn length_err(&self, what: &'static str, index: usize, got: usize) -> CallError {
        let ty = match what {
            "argument" => self.param_types.get(index),
            _ => self.result_types.get(index),
        }
        .copied()
        .unwrap_or(Type::F64);
        CallError::BufferLength {
            func: self.name.clone(),
            what,
            index,
            ty,
            expected: ty.num_elements(),
            got,
        }
    }

    /// Calls a function whose parameters and results are all `f64` (scalars or `f64`
    /// tensors) with one buffer per parameter and per result, each holding exactly its
    /// type's elements (one for a scalar). Tensors are read and written in place; no
    /// copies, and no allocation once the handle's workspace pool is warm.
    pub fn call_buffers(&self, args: &[&[f64]], out: &mut [&mut [f64]]) -> Result<(), CallError> {
        if !self.all_f64 {
            return Err(CallError::NotAllF64 {
                func: self.name.clone(),
            });
        }
        self.check_counts(args.len(), out.len())?;
        for (k, (a, t)) in args.iter().zip(&self.param_types).enumerate() {
            if a.len() != t.num_elements() {
                return Err(self.length_err("argument", k, a.len()));
            }
        }
        for (k, (o, t)) in out.iter().zip(&self.result_types).enumerate() {
            if o.len() != t.num_elements() {
                return Err(self.length_err("result", k, o.len()));
            }
        }
        let (np, nr) = (self.params.len(), self.results.len());
        let mut buf = self.take_buf()?;
        for (k, (a, t)) in args.iter().zip(&self.param_types).enumerate() {
            buf[k] = match t {
                Type::Scalar(_) => a[0].to_bits(),
                Type::Tensor(..) => a.as_ptr() as u64,
            };
        }
        for (k, (o, t)) in out.iter_mut().zip(&self.result_types).enumerate() {
            buf[np + k] = match t {
                Type::Scalar(_) => 0,
                Type::Tensor(..) => o.as_mut_ptr() as u64,
            };
        }
        let (head, ws) = buf.split_at_mut(np + nr);
        let slots = head.as_mut_ptr();
        // SAFETY (pointer arithmetic only): `head` holds `np + nr` slots.
        let res = unsafe { slots.add(np) };
        let r = self.run_f64(slots.cast_const().cast(), res.cast(), Some(ws));
        if r.is_ok() {
            for (k, (o, t)) in out.iter_mut().zip(&self.result_types).enumerate() {
                if t.scalar().is_some() {
                    o[0] = f64::from_bits(head[np + k]);
                }
            }
        }
        self.give_buf(buf);
        r
    }

    /// The call itself: `a` and `r` are the argument and result slots (scalars in
    /// place, tensors as pointers the caller checked), `ws` the workspace if the caller
    /// took one.
    fn run_f64(&self, a: *const f64, r: *mut f64, ws: Option<&mut [u64]>) -> Result<(), CallError> {
        crate::stack::check_remaining(&self.name, self.stack_bytes)?;
        // Tapes this call records and leaves unused go when it returns; a call from
        // inside a sweep leaves that sweep's state alone.
        let scope = self.shared.loops.then(jitad_ir::checkpoint::enter_call);
        let (a, r) = (a.cast::<u64>(), r.cast::<u64>());
        let s = match ws {
            Some(ws) => {
                // SAFETY: the code has the `EntryFn` ABI and stays mapped while `self`
                // (holding the owner) is borrowed. `a` holds the `params.len()` argument
                // slots and `r` the `results.len()` result slots (counts checked by the
                // callers); a tensor's slot points to exactly its type's elements, in a
                // buffer the caller checked the length of (`call_buffers`,
                // `flat_slots`), results in `&mut` buffers no argument overlaps. `ws`
                // holds at least `ws_words` 8-aligned words (pool buffers are made with
                // that size), owned by this call alone. Nothing unwinds: runtime calls
                // are `extern "C"` math, loop drivers and tensor kernels that catch their
                // own panics.
                unsafe { (self.entry)(a, r, ws.as_mut_ptr().cast()) }
            }
            None if self.ws_words == 0 => {
                // SAFETY: as above, and the code touches no workspace (its size is 0).
                unsafe { (self.entry)(a, r, std::ptr::null_mut()) }
            }
            None => {
                let mut buf = self.take_buf()?;
                let ws = buf[self.params.len() + self.results.len()..].as_mut_ptr();
                // SAFETY: as above, `ws` pointing to the `ws_words` words of a pool
                // buffer.
                let s = unsafe { (self.entry)(a, r, ws.cast()) };
                self.give_buf(buf);
                s
            }
        };
        scope.map(jitad_ir::checkpoint::CallScope::finish);
        self.status(s)
    }

    /// [`Compiled::call`], also returning what the reverse sweeps through loops
    /// (`revloop`s) of this call did: snapshots, tape bytes, forward steps recomputed.
    /// (Every call leaves these statistics in the calling thread's
    /// [`jitad_ir::checkpoint::take_stats`]; this reads them for exactly this call.)
    pub fn call_with_stats(
        &self,
        args: &[Val],
        out: &mut [Val],
    ) -> Result<jitad_ir::checkpoint::Stats, CallError> {
        // A level of its own, so that only this call's sweeps are counted.
        let scope = jitad_ir::checkpoint::enter_call();
        let r = self.call(args, out);
        let stats = scope.finish();
        r.map(|()| stats)
    }

    /// Calls the function with typed arguments; `out` receives the results (its
    /// previous contents are ignored). On error `out` is unchanged.
    pub fn call(&self, args: &[Val], out: &mut [Val]) -> Result<(), CallError> {
        self.check_counts(args.len(), out.len())?;
        for (i, (a, &t)) in args.iter().zip(&self.param_types).enumerate() {
            let got = a.type_of();
            if got != t {
                return Err(match (t, got) {
                    (Type::Scalar(expected), Type::Scalar(got)) => CallError::ArgType {
                        func: self.name.clone(),
                        index: i,
                        expected,
                        got,
                    },
                    _ => CallError::Shape {
                        func: self.name.clone(),
                        what: "argument",
                        index: i,
                        expected: t,
                        got: got.to_string(),
                    },
                });
            }
        }
        // Tensor results are written into fresh tensors (this typed path allocates
        // them; `call_buffers` does not).
        let mut made: Vec<Option<jitad_ir::tensor::TensorData>> = Vec::new();
        if self.tensors {
            for &t in &self.result_types {
                made.push(match t {
                    Type::Scalar(_) => None,
                    Type::Tensor(e, _) => {
                        Some(jitad_ir::tensor::TensorData::zeros(e, t.num_elements()))
                    }
                });
            }
        }
        crate::stack::check_remaining(&self.name, self.stack_bytes)?;
        let mut buf = self.take_buf()?;
        let (np, nr) = (self.params.len(), self.results.len());
        for (s, a) in buf.iter_mut().zip(args) {
            *s = match a {
                Val::Tensor(t) => data_ptr(t.data()) as u64,
                a => a.to_slot(),
            };
        }
        for (k, m) in made.iter_mut().enumerate() {
            if let Some(d) = m {
                buf[np + k] = data_ptr_mut(d) as u64;
            }
        }
        let scope = self.shared.loops.then(jitad_ir::checkpoint::enter_call);
        let (slots, ws) = buf.split_at_mut(np + nr);
        let (ain, rout) = slots.split_at_mut(np);
        // SAFETY: `EntryFn` ABI, code mapped while `self` is borrowed; `ain` holds the
        // `np` argument slots (types checked above: a tensor's slot points to the
        // elements of a tensor of exactly the parameter's type), `rout` the `nr` result
        // slots (a tensor result's slot points to a fresh buffer of its type's
        // elements, `made`), `ws` the `ws_words` workspace words, all owned by this call
        // alone. Argument tensors are only read.
        let s = unsafe { (self.entry)(ain.as_ptr(), rout.as_mut_ptr(), ws.as_mut_ptr().cast()) };
        scope.map(jitad_ir::checkpoint::CallScope::finish);
        let mut res = self.status(s);
        if res.is_ok() {
            for (k, ((o, &r), &t)) in out
                .iter_mut()
                .zip(rout.iter())
                .zip(&self.result_types)
                .enumerate()
            {
                *o = match (t, made.get_mut(k).and_then(Option::take)) {
                    (Type::Tensor(_, shape), Some(d)) => {
                        match jitad_ir::tensor::Tensor::new(shape, d) {
                            Ok(t) => Val::Tensor(Arc::new(t)),
                            Err(e) => {
                                res = Err(CallError::TensorFault {
                                    func: self.name.clone(),
                                    message: e.to_string(),
                                });
                                break;
                            }
                        }
                    }
                    (t, _) => from_slot(t.elem(), r),
                };
            }
        }
        self.give_buf(buf);
        res
    }
}

/// The address of a tensor's elements.
fn data_ptr(d: &jitad_ir::tensor::TensorData) -> *const u8 {
    use jitad_ir::tensor::TensorData as D;
    match d {
        D::F64(v) => v.as_ptr().cast(),
        D::F32(v) => v.as_ptr().cast(),
        D::I64(v) => v.as_ptr().cast(),
        D::Bool(v) => v.as_ptr().cast(),
    }
}

/// The address of a tensor's elements, for writing.
fn data_ptr_mut(d: &mut jitad_ir::tensor::TensorData) -> *mut u8 {
    use jitad_ir::tensor::TensorData as D;
    match d {
        D::F64(v) => v.as_mut_ptr().cast(),
        D::F32(v) => v.as_mut_ptr().cast(),
        D::I64(v) => v.as_mut_ptr().cast(),
        D::Bool(v) => v.as_mut_ptr().cast(),
    }
}
