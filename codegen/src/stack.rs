//! Machine stack accounting: frame sizes of the generated functions, the stack the
//! deepest chain of them needs, and the check before a call.
//!
//! Guarantees:
//!
//! - **Bounded frames.** A generated function's explicit stack data is one area for
//!   call frames and loop-driver descriptors, sized for the largest one of at most
//!   [`crate::abi::MAX_STACK_FRAME`] bytes (larger ones go to the heap workspace); the
//!   rest of its frame is Cranelift's spill slots. Every frame is measured after
//!   compilation and must be at most [`crate::CompileOptions::max_frame_bytes`]
//!   ([`crate::CompileError::FrameTooLarge`] otherwise).
//! - **Probes.** Every generated function has inline stack probes, so a frame larger
//!   than a page cannot step over the guard page.
//! - **Static stack need.** The IR has no recursion, so the deepest chain of frames is
//!   known at compile time: for each IR function, its frame plus the largest need of
//!   what it calls (a chunked function: its chunk driver's frame, plus the largest
//!   frame among the drivers of its chunks when it has more than 256, plus the
//!   largest chunk's), where a call through a `tapeloop`/`revloop` driver adds
//!   [`DRIVER_STACK`] for the Rust driver between the two pieces of machine code.
//!   [`crate::Compiled`] checks before every call that the calling thread has that
//!   much stack left plus [`CALL_MARGIN`], and returns
//!   [`crate::CallError::StackTooSmall`] otherwise: running out of stack is a clean
//!   error, never a signal.
//!
//! Cost: linear in the generated functions and their call sites.

use cranelift_module::FuncId;

/// Stack reserved for one loop driver (`jitad_revloop`/`jitad_tapeloop` and the
/// checkpointing sweep it runs, `jitad_ir::checkpoint`) between the compiled code that
/// calls it and the compiled iterations it calls: its 2 KiB step buffer and a few
/// Rust frames, with a wide margin for unoptimised (debug) builds. The sweeps iterate
/// (an explicit task stack), so this does not grow with the trip count.
pub(crate) const DRIVER_STACK: u64 = 32 * 1024;

/// Stack kept free beyond the computed need at every call: the handle's own frames and
/// the leaf calls of compiled code into runtime math functions (`jitad_ir::math`,
/// libm), which are small and do not recurse.
pub(crate) const CALL_MARGIN: u64 = 16 * 1024;

/// Frame size of each generated function, by Cranelift id.
#[derive(Default)]
pub(crate) struct FrameSizes(Vec<u64>);

impl FrameSizes {
    pub(crate) fn set(&mut self, id: FuncId, bytes: u64) {
        let i = id.as_u32() as usize;
        if self.0.len() <= i {
            self.0.resize(i + 1, 0);
        }
        self.0[i] = bytes;
    }

    fn get(&self, id: FuncId) -> u64 {
        self.0.get(id.as_u32() as usize).copied().unwrap_or(0)
    }
}

/// What one generated function calls.
pub(crate) struct JobCalls {
    /// The IR function it belongs to.
    pub func: usize,
    /// Its Cranelift id.
    pub id: FuncId,
    /// True for the driver of a chunked function (it calls that function's chunks,
    /// or the drivers of its chunks, generated just before it).
    pub chunk_driver: bool,
    /// True for a driver of some of a chunked function's chunks (a function of many
    /// chunks; the function's driver calls these).
    pub sub_driver: bool,
    /// IR functions it calls: directly (`false`) or through a loop driver (`true`).
    pub calls: Vec<(usize, bool)>,
}

/// Stack bytes each IR function needs (0 for those not compiled), from the generated
/// functions in compile order (callees before callers, chunks before their driver).
pub(crate) fn stack_needs(num_funcs: usize, jobs: &[JobCalls], frames: &FrameSizes) -> Vec<u64> {
    let mut need = vec![0u64; num_funcs];
    // The largest chunk need, and sub-driver frame, of the function whose chunks are
    // being read.
    let mut chunks_max = 0u64;
    let mut subs_max = 0u64;
    let mut cur = usize::MAX;
    for j in jobs {
        if j.func != cur {
            cur = j.func;
            chunks_max = 0;
            subs_max = 0;
        }
        let frame = frames.get(j.id);
        if j.sub_driver {
            subs_max = subs_max.max(frame);
            continue;
        }
        if j.chunk_driver {
            need[j.func] = frame.saturating_add(subs_max).saturating_add(chunks_max);
            chunks_max = 0;
            subs_max = 0;
            continue;
        }
        let below = j
            .calls
            .iter()
            .map(|&(c, via_driver)| {
                let n = need.get(c).copied().unwrap_or(0);
                if via_driver {
                    n.saturating_add(DRIVER_STACK)
                } else {
                    n
                }
            })
            .max()
            .unwrap_or(0);
        let total = frame.saturating_add(below);
        // A chunk (the next driver job of the same function sums them up) or a whole
        // function.
        chunks_max = chunks_max.max(total);
        need[j.func] = need[j.func].max(total);
    }
    need
}

thread_local! {
    /// The lowest address this thread's stack may reach, once known (0: not yet).
    /// A `const` `Cell` without a destructor: reading it costs a load.
    static STACK_LIMIT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Bytes of stack left below this frame. The thread's limit is asked of `stacker` once
/// per thread (it reads the OS's stack bounds) and kept; after that a check is the
/// address of a local minus the limit, so it adds about a nanosecond to a call instead
/// of the several that `stacker::remaining_stack` costs each time. The address of a
/// local and the true stack pointer differ by far less than [`CALL_MARGIN`].
#[inline]
fn remaining_stack() -> Option<usize> {
    let marker = 0u8;
    let here = std::ptr::addr_of!(marker) as usize;
    let limit = STACK_LIMIT.with(|l| match l.get() {
        0 => {
            let limit = here.checked_sub(stacker::remaining_stack()?)?;
            l.set(limit);
            Some(limit)
        }
        known => Some(known),
    })?;
    Some(here.saturating_sub(limit))
}

/// Checks that the calling thread has `need` bytes of stack left, plus the margin.
pub(crate) fn check_remaining(func: &str, need: u64) -> Result<(), crate::CallError> {
    let want = need.saturating_add(CALL_MARGIN);
    match remaining_stack() {
        Some(left) if (left as u64) < want => Err(crate::CallError::StackTooSmall {
            func: func.to_string(),
            need: want,
            available: left as u64,
        }),
        // Unknown on this platform: the probes still turn an overflow into a guard-page
        // fault rather than a write past the stack.
        _ => Ok(()),
    }
}
