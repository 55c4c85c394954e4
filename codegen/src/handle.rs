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
    STATUS_OK,
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
    pub stats: CompileStats,
    /// The code runs reverse sweeps through loops (`tapeloop`/`revloop`).
    pub loops: bool,
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
    params: Vec<ScalarType>,
    results: Vec<ScalarType>,
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
            .field("params", &self.params)
            .field("results", &self.results)
            .field("workspace_bytes", &self.workspace_bytes())
            .finish()
    }
}

fn scalars(f: &Function, ts: &[Type]) -> Result<Vec<ScalarType>, crate::CompileError> {
    ts.iter()
        .map(|t| {
            t.scalar().ok_or_else(|| crate::CompileError::Unsupported {
                func: f.name.clone(),
                what: format!("a tensor parameter or result ({t})"),
            })
        })
        .collect()
}

impl Compiled {
    pub(crate) fn new(
        shared: Arc<Shared>,
        entry: EntryFn,
        f: &Function,
        ws_bytes: u64,
        stack_bytes: u64,
    ) -> Result<Self, crate::CompileError> {
        let params = scalars(f, &f.sig.params)?;
        let results = scalars(f, &f.sig.results)?;
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

    /// Parameter types.
    pub fn params(&self) -> &[ScalarType] {
        &self.params
    }

    /// Result types.
    pub fn results(&self) -> &[ScalarType] {
        &self.results
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

    /// Times and sizes of the compilation.
    pub fn stats(&self) -> &CompileStats {
        &self.shared.stats
    }

    fn pool(&self) -> MutexGuard<'_, Vec<Box<[u64]>>> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_buf(&self) -> Box<[u64]> {
        let spare = self.pool().pop();
        spare.unwrap_or_else(|| {
            vec![0u64; self.params.len() + self.results.len() + self.ws_words].into_boxed_slice()
        })
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

    /// Calls a function whose parameters and results are all `f64`, reading `args`
    /// and writing `out` in place (no copies). On error `out` holds unspecified values.
    pub fn call_f64(&self, args: &[f64], out: &mut [f64]) -> Result<(), CallError> {
        if !self.all_f64 {
            return Err(CallError::NotAllF64 {
                func: self.name.clone(),
            });
        }
        self.check_counts(args.len(), out.len())?;
        crate::stack::check_remaining(&self.name, self.stack_bytes)?;
        // Tapes this call records and leaves unused go when it returns; a call from
        // inside a sweep leaves that sweep's state alone.
        let scope = self.shared.loops.then(jitad_ir::checkpoint::enter_call);
        let (a, r) = (args.as_ptr().cast::<u64>(), out.as_mut_ptr().cast::<u64>());
        let s = if self.ws_words == 0 {
            // SAFETY: the code has the `EntryFn` ABI and stays mapped while `self`
            // (holding the owner) is borrowed. It reads exactly `params.len()` 8-byte
            // slots from `a` and writes exactly `results.len()` to `r` (lengths checked
            // above; f64 is an 8-byte slot), and touches no workspace (its size is 0).
            // It cannot unwind: runtime calls are `extern "C"` math functions and loop
            // drivers that catch their own panics.
            unsafe { (self.entry)(a, r, std::ptr::null_mut()) }
        } else {
            let mut buf = self.take_buf();
            let ws = buf[self.params.len() + self.results.len()..].as_mut_ptr();
            // SAFETY: as above, and `ws` points to `ws_words` 8-aligned words, the
            // workspace size this function was planned with, owned by this call alone.
            let s = unsafe { (self.entry)(a, r, ws.cast()) };
            self.give_buf(buf);
            s
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
        for (i, (a, &t)) in args.iter().zip(&self.params).enumerate() {
            if a.ty() != t {
                return Err(CallError::ArgType {
                    func: self.name.clone(),
                    index: i,
                    expected: t,
                    got: a.ty(),
                });
            }
        }
        crate::stack::check_remaining(&self.name, self.stack_bytes)?;
        let scope = self.shared.loops.then(jitad_ir::checkpoint::enter_call);
        let mut buf = self.take_buf();
        let (np, nr) = (self.params.len(), self.results.len());
        for (s, a) in buf.iter_mut().zip(args) {
            *s = a.to_slot();
        }
        let (slots, ws) = buf.split_at_mut(np + nr);
        let (ain, rout) = slots.split_at_mut(np);
        // SAFETY: `EntryFn` ABI, code mapped while `self` is borrowed; `ain` holds the
        // `np` argument slots (types checked above), `rout` the `nr` result slots, `ws`
        // the `ws_words` workspace words, all owned by this call alone.
        let s = unsafe { (self.entry)(ain.as_ptr(), rout.as_mut_ptr(), ws.as_mut_ptr().cast()) };
        scope.map(jitad_ir::checkpoint::CallScope::finish);
        let res = self.status(s);
        if res.is_ok() {
            for ((o, &r), &t) in out.iter_mut().zip(rout.iter()).zip(&self.results) {
                *o = from_slot(t, r);
            }
        }
        self.give_buf(buf);
        res
    }
}
