//! jitad's code generator: jitad IR → Cranelift IR → machine code, behind a safe handle.
//!
//! ```
//! use jitad_codegen::{compile_module, CompileOptions};
//! use jitad_ir::{FunctionBuilder, Module, Op, Type};
//!
//! // f(x, y) = (x + y)(x − y)
//! let mut b = FunctionBuilder::new("f");
//! let x = b.param(Type::F64);
//! let y = b.param(Type::F64);
//! let s = b.ins1(Op::Add, &[x, y])?;
//! let d = b.ins1(Op::Sub, &[x, y])?;
//! let p = b.ins1(Op::Mul, &[s, d])?;
//! b.ret(&[p])?;
//! let mut m = Module::new();
//! m.insert(b.finish()?);
//!
//! let f = compile_module(&m, "f", &CompileOptions::default())?;
//! let mut out = [0.0];
//! f.call_f64(&[3.0, 2.0], &mut out)?;
//! assert_eq!(out, [5.0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # ABI
//!
//! Every IR function becomes a Cranelift function of type [`EntryFn`]:
//!
//! ```text
//! extern "C" fn(args: *const u64, results: *mut u64, workspace: *mut u8) -> u32
//! ```
//!
//! with one 8-byte slot per scalar parameter and result (f64 bits; f32 bits in the low
//! 4 bytes; i64; bool as 0/1 in the low byte), a workspace of
//! [`Compiled::workspace_bytes`] (values passed between chunks, then callees'
//! workspaces; heap memory owned by the handle, never the machine stack), and a status:
//! 0 for success, `k ≥ 1` when the module's guard `k − 1` failed. Calls between IR
//! functions are calls with the same ABI, through the callee's absolute address, so
//! code may lie any distance apart in memory (arguments and results in the caller's
//! one call area on the stack, or its workspace when over 1 KiB); a nonzero status is
//! passed up at once. Because an all-`f64`
//! function's slots are exactly an `[f64]`, [`Compiled::call_f64`] passes the caller's
//! slices straight through. All of it (with the loop drivers' descriptors and the
//! driver statuses) is defined in one private leaf module, `abi`.
//!
//! # Tensors
//!
//! A tensor parameter's slot holds a pointer to its row-major elements, and a tensor
//! result's slot a pointer to the caller's buffer, which the code fills. The handle
//! checks every buffer's length against the signature before any machine code runs
//! ([`Compiled::call_buffers`]: one slice per parameter and result;
//! [`Compiled::call_f64`]: all elements concatenated; [`Compiled::call`]: typed
//! [`Val`]s). Intermediates live in the handle's pooled workspace, in regions the
//! private `fusion` module assigns by liveness (a region is reused once its value is
//! dead; a value only returned is computed straight into the caller's buffer), so a
//! call allocates nothing (`matmul` aside: `matrixmultiply` allocates its packing
//! buffer inside each product). The plan is static: it holds every tensor the function
//! may compute, a loop body's too whether or not the loop runs, where the interpreter
//! allocates only what it runs. A workspace too large to allocate fails the call with
//! [`CallError::OutOfMemory`] before any code runs.
//!
//! Lowering (`fusion`, `lower::tensor`): elementwise ops and the views (`broadcast`,
//! `reshape`, `slice`, `transpose`, `pad`) are fused into loop nests, one per group,
//! computing each element in registers with the scalar lowering below and storing only
//! what is read elsewhere (two elements per iteration in `f64x2` registers when every
//! member has a lane-wise form: arithmetic, `sqrt`, `neg`, `abs`, `fma` with a hardware
//! FMA, and the views); `sum`/`mean` of a member accumulate inside its loop;
//! `matmul` calls GEMM with strides (a transpose only products read is never
//! materialised); the other tensor ops call the interpreter's own kernels
//! (`jitad_ir::kernels`). Every path computes what the interpreter computes in the same
//! order, so results are bit-identical (tested on every op, the MLP gradient and random
//! tensor programs). `dump --emit fusion` (or [`Compiled::fusion_text`]) shows the
//! groups.
//!
//! Calls and loops take tensors. A `call` passes the address of each tensor operand's
//! buffer and of a buffer for each tensor result (the result's home: never an
//! operand's buffer, since a step's results are placed before its operands are
//! freed); a callee returning a parameter copies it there. The body of a loop that
//! touches tensors (carries, captures or computes them) becomes a function of its own
//! (private `outline` module), planned and fused like any other, and the loop carries
//! each tensor as the address of its current buffer: the init's, then alternately two
//! workspace buffers (each iteration's call reads one and writes the other, so no
//! iteration copies its state); the final buffer is copied once into the loop's
//! result, which also covers a loop of zero trips. Captured tensors stay live until
//! the loop ends. Scalar-only loops compile as before. Reverse mode's `tapeloop` and
//! `revloop` take tensor states, captures and adjoints too: the lowering passes their
//! buffers' addresses and a layout table, and the drivers flatten them into the
//! checkpointing driver's slots, as the interpreter does (`revloop` module). Every
//! program the interpreter runs now compiles.
//!
//! # Semantics
//!
//! Lowering follows [`jitad_ir::Op`]'s documentation exactly, and every operation that is
//! not a single IEEE instruction calls the very `extern "C"` function of
//! [`jitad_ir::math`] the interpreter uses, so JIT and interpreter agree bit for bit
//! (`min`/`max` return the canonical NaN like `math::min`, and so does `copysign` by a NaN,
//! like `math::copysign`, since a NaN's sign is not pinned; the one thing not pinned is
//! *which* NaN comes out of an operation whose operands are two different NaNs, which
//! depends on operand order in the hardware instruction). The private `lower` module
//! has the per-op table; in short, sqrt, abs, neg, copysign, floor, ceil, trunc, fma
//! and min/max are instructions, `round` and `powi` are short exact instruction
//! sequences, transcendentals are calls.
//!
//! # Compile time that scales
//!
//! Cranelift's register allocator is super-linear on long functions with many live
//! values (the shape of a reverse-mode derivative). Functions longer than
//! [`CompileOptions::chunk_threshold`] IR instructions are split into chunks of about
//! [`CompileOptions::chunk_size`] instructions, each its own Cranelift function, passing
//! values through workspace slots (the private `plan` module documents the layout).
//! A loop is never split, but a loop body of more than `chunk_threshold` instructions
//! (nested bodies included) is first outlined into a synthetic function of the JIT's
//! copy of the module, which is then chunked like straight-line code (the private
//! `outline` module says how and why). Chunks are compiled on up to [`CompileOptions::threads`]
//! threads. Measured on the project machine (2 cores, release build) with
//! `cargo run -p jitad-codegen --release --example compile_scaling`: straight-line
//! reverse-mode-shaped functions (a forward sweep whose values are all read again in
//! reverse by a backward sweep, no calls: the allocator's worst case), total compile
//! time including our checks and lowering:
//!
//! | IR instructions | one Cranelift function | chunked (default, 1000 per chunk) |
//! |---|---|---|
//! | 10³ | 8 ms | 8 ms (not split) |
//! | 10⁴ | 0.74 s | 18 ms (11 chunks) |
//! | 10⁵ | (over 100 s in CRANELIFT.md) | 0.17 s (101 chunks) |
//! | 10⁶ | — | 1.7 s (1001 chunks; Cranelift 0.9 s, lowering 0.5 s, checks 0.3 s) |
//!
//! Chunk sizes from 250 to 2000 compile 10⁵ instructions equally fast (0.23 s with one
//! thread); 4000 takes 0.32 s, 8000 0.54 s. A hand-written reverse sweep of the extended
//! Rosenbrock gradient (`--example rosenbrock`, 17 IR instructions per element):
//! n = 10³ → 0.06 s, 10⁴ → 0.43 s, 10⁵ (1.7 M instructions) → 4.6 s.
//!
//! **Identical chunks compile once.** Code traced from repetition (an unrolled loop, an
//! element-by-element gradient) chunks into many chunks that differ only in the
//! argument words, result words and workspace slots they touch. Such chunks share one
//! compiled body, which addresses its words relative to pointers the driver passes it
//! ([`CompileOptions::share_chunks`], on by default; the private `dedup` module says
//! when two chunks count as identical). The traced extended Rosenbrock gradient at
//! n = 10⁵ (1.3 M instructions, 1300 chunks) then compiles 20 chunks instead of 1300:
//! Cranelift's share of its compile falls from about 1.3 s to under 0.1 s, its machine
//! code from 8.5 MB to 0.2 MB, and a call from 1.03 ms to 0.23 ms, since the code now
//! fits the instruction cache (`JITAD_VERBOSE=2 target/release/examples/ad_scaling
//! 100000`). Chunk drivers, rows of calls, use the single-pass register allocator.
//! Chunks holding guards share too (a traced `if` records one per element): the
//! driver moves a failing guard's status from the shared code's guards to the calling
//! chunk's own, so [`CallError::GuardFailed`] names the guard the interpreter names.
//!
//! # Stack safety
//!
//! Every generated function has inline stack probes, so no frame steps over a guard
//! page. A frame holds one area for call arguments and loop-driver descriptors (sized
//! for the largest of at most 1 KiB; larger ones use the heap workspace) plus the
//! register allocator's spill slots, and may not exceed
//! [`CompileOptions::max_frame_bytes`] ([`CompileError::FrameTooLarge`]). The stack the
//! deepest chain of frames needs is recorded in the handle ([`Compiled::stack_bytes`]);
//! a call from a thread with less stack left returns [`CallError::StackTooSmall`]
//! instead of overflowing. Large loop bodies are outlined and chunked (above), so
//! their frames stay small; the synthetic frames count in the recorded stack need but
//! not against the IR's call-depth limit, which is checked on the caller's module.
//!
//! # Safety
//!
//! `unsafe` appears only at the call into machine code, at the transmute of the
//! finalized code pointer to [`EntryFn`], and at `free_memory` when the last handle
//! drops; each carries a `// SAFETY:` argument. Handles are `Send + Sync`; runtime
//! functions are panic-free `extern "C"` math, so nothing unwinds through JIT frames.

mod abi;
mod dedup;
mod error;
mod fusion;
mod handle;
mod lower;
mod module;
mod outline;
mod par;
mod plan;
mod revloop;
mod runtime;
mod schedule;
mod stack;
mod tensor_rt;

pub use abi::{from_slot, to_slot, EntryFn};
pub use error::{CallError, CompileError};
pub use handle::{CompileStats, Compiled};
pub use jitad_ir::Val;

/// Cranelift's register allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegAlloc {
    /// The default: good code, super-linear time on long functions (hence chunking).
    Backtracking,
    /// About linear time, code 2–3× slower.
    SinglePass,
}

/// How to compile.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Run Cranelift's verifier on every generated function (default: on in debug
    /// builds, off in release).
    pub verify: bool,
    /// Cranelift's `opt_level=speed` rather than `none` (default: `none`). jitad's own
    /// pipeline has already run CSE, constant folding and DCE, so Cranelift's e-graph
    /// finds little left; measured on the traced Rosenbrock gradient at n = 1000
    /// (`--example ad_scaling` in the root package, `JITAD_VERBOSE=1`), `none` compiles
    /// 3.2× faster (15 ms against 50 ms) and its code runs faster (3.5 µs against
    /// 4.8 µs per call, 173 KB against 217 KB of machine code), because the e-graph's
    /// rematerialised constants lengthen the code.
    pub optimize: bool,
    /// The register allocator.
    pub regalloc: RegAlloc,
    /// Target IR instructions per chunk when a function is split.
    pub chunk_size: usize,
    /// Functions with at most this many IR instructions (loop bodies included) are not
    /// split.
    pub chunk_threshold: usize,
    /// Threads compiling chunks of long functions at once (default: the available
    /// parallelism, at most 4; 1 compiles on the calling thread only).
    pub threads: usize,
    /// Compile chunks that differ only in the memory words they touch once, and call
    /// that code with each chunk's own addresses (default: on; see the private
    /// `dedup` module). Repetitive traced code (an unrolled loop, an elementwise
    /// gradient) then compiles a handful of chunks instead of hundreds. Results are
    /// bit-identical either way.
    pub share_chunks: bool,
    /// Reorder instructions for short live ranges before lowering (default: on; see
    /// the private `schedule` module). Results are bit-identical either way.
    pub schedule: bool,
    /// The largest machine stack frame a generated function may have, in bytes
    /// (default 1 MiB); a larger one is [`CompileError::FrameTooLarge`]. Frames hold
    /// one call-argument area of at most 1 KiB and the register allocator's spill
    /// slots, so only a function or loop body with very many values live at once comes
    /// near it.
    pub max_frame_bytes: u64,
    /// Keep the CLIF text and the machine code listing of every generated function
    /// ([`Compiled::clif_text`], [`Compiled::asm_text`]).
    pub emit_text: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            verify: cfg!(debug_assertions),
            optimize: false,
            regalloc: RegAlloc::Backtracking,
            chunk_size: 1000,
            chunk_threshold: 1500,
            emit_text: false,
            max_frame_bytes: 1 << 20,
            schedule: true,
            share_chunks: true,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
        }
    }
}

/// Compiles function `entry` of `m` (and every function it calls).
pub fn compile_module(
    m: &jitad_ir::Module,
    entry: &str,
    opts: &CompileOptions,
) -> Result<Compiled, CompileError> {
    let mut v = module::compile(m, &[entry], opts)?;
    v.pop()
        .ok_or_else(|| CompileError::UnknownFunction(entry.to_string()))
}

/// Compiles several entry functions of `m` into one JIT module; the handles share the
/// machine code, which is freed when the last of them drops.
pub fn compile_functions(
    m: &jitad_ir::Module,
    entries: &[&str],
    opts: &CompileOptions,
) -> Result<Vec<Compiled>, CompileError> {
    module::compile(m, entries, opts)
}
