//! `tapeloop` and `revloop` in compiled code: the lowering stores a descriptor and calls
//! [`jitad_tapeloop`] or [`jitad_revloop`], which run [`jitad_ir::checkpoint::record`]
//! and [`jitad_ir::checkpoint::reverse_recorded`] (or `reverse`, without a tape) — the
//! same driver the interpreter uses — calling the compiled forward and backward
//! iterations through their entry pointers.
//!
//! The descriptor's layout, the driver statuses and the thread-local that carries a
//! driver's error to the handle are part of the ABI: [`crate::abi`] ([`desc`] and
//! "Status codes"). A driver returns 0, a step's own nonzero status unchanged (a
//! guard's, or a nested driver's), or one of its own, with the whole error (with its
//! numbers) left for the handle, which so reports exactly what the interpreter reports.
//!
//! **Tensors.** A loop whose operands or results include tensors has a descriptor with
//! a layout table ([`desc::TABLE`]). The checkpoint driver works on the state and the
//! adjoints *flattened* as the interpreter flattens them
//! ([`jitad_ir::layout::state_slots`]: one 8-byte slot per scalar, one per tensor
//! element, in the same encoding), so snapshots, the tape's initial-state check and the
//! statistics (`peak_tape_bytes`: 8 bytes per slot) are the interpreter's. Around each
//! step the driver passes a tensor argument as a pointer: straight into the flattened
//! words for `f64` and `i64` elements (one word each: no copy), into a converted copy
//! for `f32` (4-byte) and `bool` (1-byte) elements; a tensor result slot points into a
//! result area, copied (or widened) back into the flattened state after the step, so a
//! step never reads a buffer it writes. When every tensor of the state and adjoints has
//! 8-byte elements and the steps run no driver (the descriptor's `FSPAN` word is 1),
//! the driver runs them a span at a time ([`Steps::spans`]) with no copy per step: a
//! forward step's results go straight to their place in the tape, or to the other of
//! two state buffers, and a backward step's to the other of two adjoint buffers.
//!
//! **Spans.** A scalar loop's steps that run no driver also have compiled *spans*
//! (`crate::lower`, `crate::abi::FwdSpanFn`): the step's body inlined in a loop; the
//! driver calls one per run of steps. Captures are passed as they are (their buffer
//! addresses), as no step changes them. At the end, tensor results (a `tapeloop`'s
//! final state, a `revloop`'s adjoints) are written to the buffers the descriptor
//! names. These buffers come from a per-thread pool, one set per running driver (so
//! nested drivers each have theirs), grown by the first call and then reused: steady
//! state calls allocate nothing.

use crate::abi::{decode_policy, desc, record_driver_error, BwdSpanFn, EntryFn, FwdSpanFn};
use jitad_ir::checkpoint::{self, copy_words, DriverError, LoopSpec, Policy, Steps};
use jitad_ir::ScalarType;
use std::cell::RefCell;

/// The status for a failed sweep.
fn status(e: checkpoint::SweepError<u32>) -> u32 {
    match e {
        checkpoint::SweepError::Step(st) => st,
        checkpoint::SweepError::Driver(e) => record_driver_error(e),
    }
}

/// `dst ← src` for the results a compiled step just wrote, one 8-byte word at a time.
/// The step stores each result as one 8-byte word; the 16-byte vector loads the
/// compiler otherwise merges the copy into cannot be forwarded from two such stores,
/// and the stall that costs was a tenth of a Lorenz gradient's time.
fn read_results(dst: &mut [u64], src: &[u64]) {
    for (d, s) in dst.iter_mut().zip(src) {
        // SAFETY: `s` is a reference to an initialised `u64`, so reading it is sound;
        // the volatile read only keeps it a separate 8-byte load.
        *d = unsafe { std::ptr::read_volatile(s) };
    }
}

/// The argument and result buffer of the step calls: `need` words on the stack when
/// they fit (the usual few-slot state), else in `big` (one allocation per driver call).
fn step_buffer<'b>(need: usize, small: &'b mut [u64; 256], big: &'b mut Vec<u64>) -> &'b mut [u64] {
    if need <= small.len() {
        &mut small[..need]
    } else {
        big.resize(need, 0);
        big
    }
}

/// The compiled iterations of one `revloop`, with argument and result buffers owned by
/// the driver's frame.
struct JitSteps<'a> {
    fwd: EntryFn,
    bwd: EntryFn,
    /// The spans, when compiled (both, for a `revloop`): the driver then runs whole
    /// spans of steps in one call each ([`Steps::spans`]).
    spans: Option<(FwdSpanFn, Option<BwdSpanFn>)>,
    ws: *mut u8,
    k: usize,
    c: usize,
    a: usize,
    /// `[i, state (k), caps (c), adj (a)]` then `max(k, a)` result words; the caps are
    /// written once ([`JitSteps::new`]), as no step changes them.
    buf: &'a mut [u64],
}

impl<'a> JitSteps<'a> {
    #[allow(clippy::too_many_arguments)] // the descriptor's words, as the drivers read them
    fn new(
        fwd: EntryFn,
        bwd: EntryFn,
        spans: Option<(FwdSpanFn, Option<BwdSpanFn>)>,
        ws: *mut u8,
        caps: &[u64],
        k: usize,
        a: usize,
        buf: &'a mut [u64],
    ) -> Self {
        let c = caps.len();
        copy_words(&mut buf[1 + k..1 + k + c], caps);
        JitSteps {
            fwd,
            bwd,
            spans,
            ws,
            k,
            c,
            a,
            buf,
        }
    }
}

impl Steps for JitSteps<'_> {
    type Error = u32;

    fn forward(&mut self, i: i64, state: &mut [u64]) -> Result<(), u32> {
        let k = self.k;
        let (args, res) = self.buf.split_at_mut(1 + k + self.c + self.a);
        args[0] = i as u64;
        copy_words(&mut args[1..1 + k], state);
        // SAFETY: `fwd` is the entry of `(i64, s.., c..) -> s..` in the JIT module the
        // calling handle keeps alive; it reads 1 + k + c argument slots and writes k
        // result slots (`res` holds max(k, a) ≥ k); `ws` is the callee workspace the
        // caller's plan sized for it. It cannot unwind (runtime functions are
        // panic-free `extern "C"` code; this driver catches its own panics).
        let st = unsafe { (self.fwd)(args.as_ptr(), res.as_mut_ptr(), self.ws) };
        if st != 0 {
            return Err(st);
        }
        read_results(state, &res[..k]);
        Ok(())
    }

    fn backward(&mut self, i: i64, state: &[u64], adj: &mut [u64]) -> Result<(), u32> {
        let (k, c, a) = (self.k, self.c, self.a);
        let (args, res) = self.buf.split_at_mut(1 + k + c + a);
        args[0] = i as u64;
        copy_words(&mut args[1..1 + k], state);
        copy_words(&mut args[1 + k + c..], adj);
        // SAFETY: as in `forward`, for `bwd: (i64, s.., c.., a..) -> a..`, reading
        // 1 + k + c + a slots and writing a.
        let st = unsafe { (self.bwd)(args.as_ptr(), res.as_mut_ptr(), self.ws) };
        if st != 0 {
            return Err(st);
        }
        read_results(adj, &res[..a]);
        Ok(())
    }

    fn spans(&self) -> bool {
        self.spans.is_some()
    }

    fn forward_span(
        &mut self,
        first: i64,
        count: u64,
        state: &mut [u64],
        tape: Option<&mut [u64]>,
    ) -> Result<(), u32> {
        let Some((fspan, _)) = self.spans else {
            return Err(record_driver_error(DriverError::Panicked));
        };
        let (k, c) = (self.k, self.c);
        if state.len() != k {
            return Err(record_driver_error(DriverError::Panicked));
        }
        let (args, res) = self.buf.split_at_mut(1 + k + c + self.a);
        let caps = args[1 + k..].as_ptr();
        // Without a tape, every state goes to the same scratch slots (stride 0).
        let (tape, stride) = match tape {
            Some(t) if t.len() >= state.len().saturating_mul(count as usize) => {
                (t.as_mut_ptr(), (8 * k) as i64)
            }
            Some(_) => return Err(record_driver_error(DriverError::Panicked)),
            None => (res.as_mut_ptr(), 0),
        };
        // Spans of at most i64::MAX iterations (a trip count can exceed it).
        let (mut first, mut left, mut tape) = (first, count, tape);
        while left > 0 {
            let n = left.min(i64::MAX as u64);
            // SAFETY: `fspan` is the forward span (`FwdSpanFn`) of this loop's step in
            // the JIT module the calling handle keeps alive; it reads `k` state slots
            // at `state` and `c` capture slots at `caps`, writes `k` slots at `state`
            // and `k` slots at `tape + j·stride` for `j < n` — within the tape, whose
            // length was checked above, or the `max(k, a) ≥ k` result slots when the
            // stride is 0 — and passes `ws`, the workspace the caller's plan sized for
            // the step, to the step's body. It cannot unwind (see `forward`).
            let st = unsafe {
                fspan(
                    first,
                    n as i64,
                    state.as_mut_ptr(),
                    tape,
                    stride,
                    caps,
                    self.ws,
                )
            };
            if st != 0 {
                return Err(st);
            }
            left -= n;
            first = first.wrapping_add(n as i64);
            tape = tape.wrapping_add((n as usize).wrapping_mul(stride as usize / 8));
        }
        Ok(())
    }

    fn backward_span(
        &mut self,
        first: i64,
        count: u64,
        base: &[u64],
        tape: &[u64],
        adj: &mut [u64],
    ) -> Result<(), u32> {
        let Some((_, Some(bspan))) = self.spans else {
            return Err(record_driver_error(DriverError::Panicked));
        };
        let (k, c) = (self.k, self.c);
        let need = (count.saturating_sub(1) as usize).saturating_mul(k);
        if count > i64::MAX as u64 || base.len() != k || tape.len() < need || adj.len() != self.a {
            return Err(record_driver_error(DriverError::Panicked));
        }
        let caps = self.buf[1 + k..1 + k + c].as_ptr();
        // SAFETY: `bspan` is the backward span (`BwdSpanFn`) of this loop's step in the
        // live JIT module; it reads `k` slots at `base` and at `tape + (j−1)·k` for
        // `1 ≤ j < count` (within `tape`, checked above), `c` capture slots at `caps`,
        // and reads and writes the `a` adjoint slots at `adj`; `ws` is as in
        // `backward`. It cannot unwind.
        let st = unsafe {
            bspan(
                first,
                count as i64,
                base.as_ptr(),
                tape.as_ptr(),
                caps,
                adj.as_mut_ptr(),
                self.ws,
            )
        };
        if st != 0 {
            return Err(st);
        }
        Ok(())
    }
}

/// The spans a scalar descriptor names: the forward span, and the backward one for a
/// `revloop` (`None` unless every span the driver needs was compiled).
fn descriptor_spans(header: &[u64], revloop: bool) -> Option<(FwdSpanFn, Option<BwdSpanFn>)> {
    let (f, b) = (header[desc::FSPAN], header[desc::BSPAN]);
    // With a table, FSPAN is a flag, not an entry (see `desc`).
    if header[desc::TABLE] != 0 || f == 0 || (revloop && b == 0) {
        return None;
    }
    // SAFETY: a nonzero FSPAN word holds the `func_addr` of a function with the
    // `FwdSpanFn` ABI, written by the lowering.
    let f = unsafe { std::mem::transmute::<usize, FwdSpanFn>(f as usize) };
    let b = (revloop && b != 0).then(|| {
        // SAFETY: as above, for BSPAN and `BwdSpanFn`.
        unsafe { std::mem::transmute::<usize, BwdSpanFn>(b as usize) }
    });
    Some((f, b))
}

/// Runs the reverse sweep a `revloop` descriptor describes; returns 0, the status of a
/// failed step (a guard), or a driver status ([`crate::abi`]).
///
/// # Safety
///
/// `descriptor` must point to a descriptor laid out as [`desc`] says, by the lowering,
/// whose entry pointers belong to a live JIT module and whose workspace is large
/// enough for both iterations.
pub(crate) unsafe extern "C" fn jitad_revloop(descriptor: *mut u64) -> u32 {
    // SAFETY: the caller guarantees the header is readable.
    let header = unsafe { std::slice::from_raw_parts(descriptor, desc::HEADER) };
    if header[desc::TABLE] != 0 {
        // SAFETY: the caller's guarantee, for a descriptor with a table.
        return unsafe { tensor_driver(descriptor, true) };
    }
    let (k, c, a) = (
        header[desc::STATES] as usize,
        header[desc::CAPS] as usize,
        header[desc::ADJS] as usize,
    );
    // SAFETY: the lowering wrote desc::HEADER + k + c + a words at `descriptor`, and nothing else
    // accesses them during this call.
    let words = unsafe { std::slice::from_raw_parts_mut(descriptor, desc::HEADER + k + c + a) };
    // SAFETY: words FWD and BWD hold `func_addr`s of functions with the `EntryFn` ABI.
    let fwd: EntryFn = unsafe { std::mem::transmute::<usize, EntryFn>(words[desc::FWD] as usize) };
    // SAFETY: as above.
    let bwd: EntryFn = unsafe { std::mem::transmute::<usize, EntryFn>(words[desc::BWD] as usize) };
    let ws = words[desc::WS] as usize as *mut u8;
    let (start, end) = (words[desc::START] as i64, words[desc::END] as i64);
    let policy = decode_policy(words[desc::POLICY_TAG], words[desc::POLICY_PARAM]);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (head, rest) = words.split_at_mut(desc::HEADER + k + c);
        let state0 = &head[desc::HEADER..desc::HEADER + k];
        let caps = &head[desc::HEADER + k..];
        let need = 1 + k + c + a + k.max(a);
        let mut small = [0u64; 256];
        let mut big = Vec::new();
        let buf = step_buffer(need, &mut small, &mut big);
        let spans = descriptor_spans(&head[..desc::HEADER], true);
        let mut steps = JitSteps::new(fwd, bwd, spans, ws, caps, k, a, buf);
        let l = checkpoint::trip_count(start, end);
        let r = if head[desc::HAS_TOKEN] != 0 {
            let spec = LoopSpec {
                policy,
                start,
                trips: l,
                inits: state0,
            };
            checkpoint::reverse_recorded(head[desc::TOKEN], spec, rest, &mut steps)
        } else {
            checkpoint::reverse(policy, start, l, state0, rest, &mut steps)
        };
        r.map_or_else(status, |()| 0)
    }));
    r.unwrap_or_else(|_| record_driver_error(DriverError::Panicked))
}

/// Runs a `tapeloop` descriptor: the loop's iterations, recording what the policy
/// keeps; writes the final state over the inits and the token to word `desc::TOKEN`. Returns 0,
/// the status of a failed iteration, or a driver status.
///
/// # Safety
///
/// As [`jitad_revloop`] (word `desc::BWD` is unused).
pub(crate) unsafe extern "C" fn jitad_tapeloop(descriptor: *mut u64) -> u32 {
    // SAFETY: the caller guarantees the header is readable.
    let header = unsafe { std::slice::from_raw_parts(descriptor, desc::HEADER) };
    if header[desc::TABLE] != 0 {
        // SAFETY: the caller's guarantee, for a descriptor with a table.
        return unsafe { tensor_driver(descriptor, false) };
    }
    let (k, c) = (header[desc::STATES] as usize, header[desc::CAPS] as usize);
    // SAFETY: the lowering wrote desc::HEADER + k + c words at `descriptor`, and nothing else
    // accesses them during this call.
    let words = unsafe { std::slice::from_raw_parts_mut(descriptor, desc::HEADER + k + c) };
    // SAFETY: word FWD holds the `func_addr` of a function with the `EntryFn` ABI.
    let fwd: EntryFn = unsafe { std::mem::transmute::<usize, EntryFn>(words[desc::FWD] as usize) };
    let ws = words[desc::WS] as usize as *mut u8;
    let (start, end) = (words[desc::START] as i64, words[desc::END] as i64);
    let policy = decode_policy(words[desc::POLICY_TAG], words[desc::POLICY_PARAM]);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (head, caps) = words.split_at_mut(desc::HEADER + k);
        let (hdr, state) = head.split_at_mut(desc::HEADER);
        let need = 1 + k + c + k;
        let mut small = [0u64; 256];
        let mut big = Vec::new();
        let buf = step_buffer(need, &mut small, &mut big);
        let spans = descriptor_spans(hdr, false);
        let mut steps = JitSteps::new(fwd, fwd, spans, ws, caps, k, 0, buf);
        let l = checkpoint::trip_count(start, end);
        match checkpoint::record(policy, start, l, state, &mut steps) {
            Ok(token) => {
                hdr[desc::TOKEN] = token;
                hdr[desc::HAS_TOKEN] = 1;
                0
            }
            Err(e) => status(e),
        }
    }));
    r.unwrap_or_else(|_| record_driver_error(DriverError::Panicked))
}

/// One state or adjoint operand of a driver with tensors.
#[derive(Clone, Copy, Debug)]
struct Operand {
    /// `None` for a scalar; a tensor's element type and element count.
    tensor: Option<(ScalarType, usize)>,
    /// Its first slot in the flattened state (or adjoints).
    slot: usize,
    /// For an `f32` or `bool` tensor: its first element in the converted-argument
    /// buffer of its type.
    conv: usize,
    /// For a tensor: its first element in the result area of its element size.
    out: usize,
}

/// The buffers of one running driver with tensors (see the module docs), kept in
/// [`POOL`] between calls.
#[derive(Default)]
struct Buffers {
    /// The `k` state operands, then the `a` adjoint operands.
    ops: Vec<Operand>,
    /// The flattened state, then the flattened adjoints.
    flat: Vec<u64>,
    /// The step's argument slots `[i, state (k), caps (c), adj (a)]`, then
    /// `max(k, a)` result slots.
    frame: Vec<u64>,
    /// Result areas of `f64`/`i64`, `f32` and `bool` tensors.
    out_w: Vec<u64>,
    out_f: Vec<f32>,
    out_b: Vec<u8>,
    /// Converted `f32` and `bool` tensor arguments.
    arg_f: Vec<f32>,
    arg_b: Vec<u8>,
    /// The flattened adjoints' and state's second buffers, when spans alternate
    /// between two.
    adj2: Vec<u64>,
    state2: Vec<u64>,
}

thread_local! {
    /// Buffers of drivers that ran on this thread, for the next ones (one set per
    /// driver running at once: nested drivers take their own).
    static POOL: RefCell<Vec<Buffers>> = const { RefCell::new(Vec::new()) };
}

/// The most buffer sets [`POOL`] keeps (drivers nested deeper allocate their own).
const POOL_MAX: usize = 16;

/// `v` resized to `n` elements (zeroed), or a `TooLarge` error when the memory
/// cannot be had (never a panic, never an abort).
fn sized<T: Copy + Default>(v: &mut Vec<T>, n: usize) -> Result<&mut [T], DriverError> {
    v.clear();
    v.try_reserve(n).map_err(|_| DriverError::TooLarge {
        bytes: n as u128 * std::mem::size_of::<T>() as u128,
    })?;
    v.resize(n, T::default());
    Ok(v)
}

/// Appends the operands whose layout words are `layout` to `ops`, numbering their
/// slots, converted arguments and result areas from `slots`, `conv` (`f32`, `bool`)
/// and 0; returns the slot count, the result area sizes and the new `conv`.
fn lay_out(
    ops: &mut Vec<Operand>,
    layout: &[u64],
    conv: [usize; 2],
) -> (usize, [usize; 3], [usize; 2]) {
    let (mut slot, mut conv, mut out) = (0usize, conv, [0usize; 3]);
    for &w in layout {
        let tensor = desc::decode_layout(w);
        let n = tensor.map_or(1, |t| t.1);
        let (mut c, mut o) = (0, 0);
        if let Some((e, n)) = tensor {
            let kind = match e {
                ScalarType::F64 | ScalarType::I64 => 0,
                ScalarType::F32 => 1,
                ScalarType::Bool => 2,
            };
            o = out[kind];
            out[kind] = out[kind].saturating_add(n);
            if kind > 0 {
                c = conv[kind - 1];
                conv[kind - 1] = conv[kind - 1].saturating_add(n);
            }
        }
        ops.push(Operand {
            tensor,
            slot,
            conv: c,
            out: o,
        });
        slot = slot.saturating_add(n);
    }
    (slot, out, conv)
}

/// Flattens the operands `ops` whose words are `vals` (a scalar's slot, a tensor's
/// address) into `flat`.
///
/// # Safety
///
/// Each tensor's word must be the address of a live, aligned buffer of its element
/// count and type, not written during this call.
unsafe fn flatten(ops: &[Operand], vals: &[u64], flat: &mut [u64]) {
    for (o, &v) in ops.iter().zip(vals) {
        let Some((e, n)) = o.tensor else {
            flat[o.slot] = v;
            continue;
        };
        let dst = &mut flat[o.slot..o.slot + n];
        let p = v as usize;
        // SAFETY (each arm): the caller guarantees `p` addresses `n` elements of type
        // `e`, aligned, live and unaliased by writes for this call.
        match e {
            ScalarType::F64 | ScalarType::I64 => {
                dst.copy_from_slice(unsafe { std::slice::from_raw_parts(p as *const u64, n) })
            }
            ScalarType::F32 => {
                let src = unsafe { std::slice::from_raw_parts(p as *const u32, n) };
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = u64::from(s);
                }
            }
            ScalarType::Bool => {
                let src = unsafe { std::slice::from_raw_parts(p as *const u8, n) };
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = u64::from(s != 0);
                }
            }
        }
    }
}

/// Writes the flattened operands `ops` from `flat` to their results: a scalar to its
/// word in `vals`, a tensor to the buffer whose address is its word in `addrs`.
///
/// # Safety
///
/// Each tensor's address must be that of a live, aligned buffer of its element count
/// and type that nothing else accesses during this call.
unsafe fn unflatten(ops: &[Operand], flat: &[u64], vals: &mut [u64], addrs: &[u64]) {
    for ((o, v), &a) in ops.iter().zip(vals).zip(addrs) {
        let Some((e, n)) = o.tensor else {
            *v = flat[o.slot];
            continue;
        };
        let src = &flat[o.slot..o.slot + n];
        let p = a as usize;
        // SAFETY (each arm): the caller guarantees `p` addresses `n` writable elements
        // of type `e`, aligned, that nothing else accesses during this call.
        match e {
            ScalarType::F64 | ScalarType::I64 => {
                unsafe { std::slice::from_raw_parts_mut(p as *mut u64, n) }.copy_from_slice(src)
            }
            ScalarType::F32 => {
                let dst = unsafe { std::slice::from_raw_parts_mut(p as *mut u32, n) };
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = s as u32;
                }
            }
            ScalarType::Bool => {
                let dst = unsafe { std::slice::from_raw_parts_mut(p as *mut u8, n) };
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = u8::from(s as u8 != 0);
                }
            }
        }
    }
}

/// The compiled iterations of a loop with tensors, over flattened states.
struct TensorSteps<'a> {
    fwd: EntryFn,
    bwd: EntryFn,
    ws: *mut u8,
    /// State operands, then adjoint operands.
    st: &'a [Operand],
    ad: &'a [Operand],
    c: usize,
    /// `[i, state (k), caps (c), adj (a)]` then `max(k, a)` result slots; the caps
    /// are written once, as no step changes them.
    frame: &'a mut [u64],
    out_w: &'a mut [u64],
    out_f: &'a mut [f32],
    out_b: &'a mut [u8],
    arg_f: &'a mut [f32],
    arg_b: &'a mut [u8],
    /// Runs spans ([`Steps::spans`]): the steps run no driver (the descriptor's
    /// [`desc::FSPAN`] word) and every tensor state and adjoint has 8-byte elements,
    /// so a step reads its operands in place and writes its results straight to
    /// their next home.
    spans: bool,
    /// The second adjoint buffer of backward spans (as long as the flattened
    /// adjoints when [`TensorSteps::spans`]).
    adj2: &'a mut [u64],
    /// The second state buffer of forward spans without a tape (as long as the
    /// flattened state when [`TensorSteps::spans`]).
    state2: &'a mut [u64],
}

/// Points the result slots `res` of the results `ops` at their homes in the flattened
/// `dst` (tensors; all of 8-byte elements).
fn put_result_homes(ops: &[Operand], res: &mut [u64], dst: &mut [u64]) {
    for (o, r) in ops.iter().zip(res) {
        if let Some((_, n)) = o.tensor {
            *r = dst[o.slot..o.slot + n].as_mut_ptr() as usize as u64;
        }
    }
}

/// Copies the scalar results `ops` a step just wrote to `res` into the flattened `dst`
/// (its tensor results are there already, see [`put_result_homes`]).
fn take_scalar_results(ops: &[Operand], res: &[u64], dst: &mut [u64]) {
    for (o, r) in ops.iter().zip(res) {
        if o.tensor.is_none() {
            // SAFETY: `r` is a reference to an initialised `u64`; the volatile read
            // keeps it one 8-byte load (see `read_results`).
            dst[o.slot] = unsafe { std::ptr::read_volatile(r) };
        }
    }
}

/// Sets the argument slots `args` of operands `ops` from their flattened values
/// `flat`: a scalar's slot, a tensor's address (into `flat` itself for 8-byte
/// elements, else into its converted copy in `arg_f`/`arg_b`).
fn put_args(ops: &[Operand], flat: &[u64], args: &mut [u64], arg_f: &mut [f32], arg_b: &mut [u8]) {
    for (o, a) in ops.iter().zip(args) {
        *a = match o.tensor {
            None => flat[o.slot],
            Some((e, n)) => {
                let src = &flat[o.slot..o.slot + n];
                match e {
                    ScalarType::F64 | ScalarType::I64 => src.as_ptr() as usize as u64,
                    ScalarType::F32 => {
                        let dst = &mut arg_f[o.conv..o.conv + n];
                        for (d, &s) in dst.iter_mut().zip(src) {
                            *d = f32::from_bits(s as u32);
                        }
                        dst.as_ptr() as usize as u64
                    }
                    ScalarType::Bool => {
                        let dst = &mut arg_b[o.conv..o.conv + n];
                        for (d, &s) in dst.iter_mut().zip(src) {
                            *d = u8::from(s as u8 != 0);
                        }
                        dst.as_ptr() as usize as u64
                    }
                }
            }
        };
    }
}

/// Points the result slots of tensor results `ops` at their result areas.
fn put_result_addrs(
    ops: &[Operand],
    res: &mut [u64],
    out_w: &mut [u64],
    out_f: &mut [f32],
    out_b: &mut [u8],
) {
    for (o, r) in ops.iter().zip(res) {
        if let Some((e, n)) = o.tensor {
            *r = match e {
                ScalarType::F64 | ScalarType::I64 => out_w[o.out..o.out + n].as_mut_ptr() as usize,
                ScalarType::F32 => out_f[o.out..o.out + n].as_mut_ptr() as usize,
                ScalarType::Bool => out_b[o.out..o.out + n].as_mut_ptr() as usize,
            } as u64;
        }
    }
}

/// Reads the results `ops` a step just wrote (a scalar in its slot of `res`, a tensor
/// in its result area) into their flattened values `flat`.
fn take_results(
    ops: &[Operand],
    res: &[u64],
    flat: &mut [u64],
    out_w: &[u64],
    out_f: &[f32],
    out_b: &[u8],
) {
    for (o, r) in ops.iter().zip(res) {
        match o.tensor {
            // SAFETY: `r` is a reference to an initialised `u64`; the volatile read
            // keeps it one 8-byte load (see `read_results`).
            None => flat[o.slot] = unsafe { std::ptr::read_volatile(r) },
            Some((e, n)) => {
                let dst = &mut flat[o.slot..o.slot + n];
                match e {
                    ScalarType::F64 | ScalarType::I64 => {
                        dst.copy_from_slice(&out_w[o.out..o.out + n])
                    }
                    ScalarType::F32 => {
                        for (d, s) in dst.iter_mut().zip(&out_f[o.out..o.out + n]) {
                            *d = u64::from(s.to_bits());
                        }
                    }
                    ScalarType::Bool => {
                        for (d, &s) in dst.iter_mut().zip(&out_b[o.out..o.out + n]) {
                            *d = u64::from(s != 0);
                        }
                    }
                }
            }
        }
    }
}

impl TensorSteps<'_> {
    /// Runs step `i`: the forward step, or with `adj` the backward step. Its arguments
    /// come from the flattened `state` (and `adj`); its tensor results go to their
    /// homes in `homes` (spans), or else to the result areas `out_*`. The scalar
    /// results are left in the frame's result slots ([`TensorSteps::results`]). The one
    /// call into machine code of these steps.
    fn call_step(
        &mut self,
        i: i64,
        state: &[u64],
        adj: Option<&[u64]>,
        homes: Option<&mut [u64]>,
    ) -> Result<(), u32> {
        let (k, c, a) = (self.st.len(), self.c, self.ad.len());
        let (args, res) = self.frame.split_at_mut(1 + k + c + a);
        args[0] = i as u64;
        put_args(self.st, state, &mut args[1..1 + k], self.arg_f, self.arg_b);
        let (entry, outs) = match adj {
            Some(adj) => {
                put_args(self.ad, adj, &mut args[1 + k + c..], self.arg_f, self.arg_b);
                (self.bwd, self.ad)
            }
            None => (self.fwd, self.st),
        };
        match homes {
            Some(dst) => put_result_homes(outs, res, dst),
            None => put_result_addrs(outs, res, self.out_w, self.out_f, self.out_b),
        }
        // SAFETY: `entry` is `fwd: (i64, s.., c..) -> s..` or `bwd: (i64, s.., c.., a..)
        // -> a..` of the JIT module the calling handle keeps alive. It reads the
        // 1 + k + c (+ a) argument slots just written (the captures' were written
        // once, from the caller's buffers, live for the whole sweep): a tensor's slot
        // holds the address of its elements, in `state`, `adj` or their converted
        // copies `arg_f`/`arg_b`, all live and unchanged during the call. It writes
        // k (or a) result slots, which `res` holds (max(k, a) of them), and each tensor
        // result's elements at the address in its slot: a result area `out_*` that
        // nothing else accesses, or its home in `homes`, which the callers keep
        // disjoint from `state` and `adj` (the other of two buffers, or the next place
        // in a tape), so the step never reads what it writes. `ws` is the callee
        // workspace the caller's plan sized for it. It cannot unwind.
        let st = unsafe { entry(args.as_ptr(), res.as_mut_ptr(), self.ws) };
        if st != 0 {
            return Err(st);
        }
        Ok(())
    }

    /// The frame's result slots.
    fn results(&self) -> &[u64] {
        &self.frame[1 + self.st.len() + self.c + self.ad.len()..]
    }

    /// Forward step `i` of a span ([`TensorSteps::spans`]): its state read in place
    /// from `src`, the next state written straight to `dst` (a tensor by the step
    /// itself, a scalar from its result slot).
    fn forward_into(&mut self, i: i64, src: &[u64], dst: &mut [u64]) -> Result<(), u32> {
        self.call_step(i, src, None, Some(&mut *dst))?;
        take_scalar_results(self.st, self.results(), dst);
        Ok(())
    }

    /// Backward step `i` of a span: its state read in place from `state`, its
    /// adjoints from `adj`, the new adjoints written straight to `dst`.
    fn backward_into(
        &mut self,
        i: i64,
        state: &[u64],
        adj: &[u64],
        dst: &mut [u64],
    ) -> Result<(), u32> {
        self.call_step(i, state, Some(adj), Some(&mut *dst))?;
        take_scalar_results(self.ad, self.results(), dst);
        Ok(())
    }
}

impl Steps for TensorSteps<'_> {
    type Error = u32;

    fn forward(&mut self, i: i64, state: &mut [u64]) -> Result<(), u32> {
        self.call_step(i, state, None, None)?;
        take_results(
            self.st,
            self.results(),
            state,
            self.out_w,
            self.out_f,
            self.out_b,
        );
        Ok(())
    }

    fn backward(&mut self, i: i64, state: &[u64], adj: &mut [u64]) -> Result<(), u32> {
        self.call_step(i, state, Some(adj), None)?;
        take_results(
            self.ad,
            self.results(),
            adj,
            self.out_w,
            self.out_f,
            self.out_b,
        );
        Ok(())
    }

    fn spans(&self) -> bool {
        self.spans
    }

    /// With a tape, step `j` reads its state where the previous one wrote it (the
    /// tape, or `state` for the first) and writes the next state straight to its
    /// place in the tape: no copy per step, one at the end into `state`.
    fn forward_span(
        &mut self,
        first: i64,
        count: u64,
        state: &mut [u64],
        tape: Option<&mut [u64]>,
    ) -> Result<(), u32> {
        // The driver runs spans only when `spans()` says so.
        if !self.spans {
            return Err(record_driver_error(DriverError::Panicked));
        }
        let kk = state.len();
        let count = count as usize;
        let Some(tape) = tape else {
            // No tape: the state alternates between `state` and a second buffer
            // (taken out of `self` for the span, so the steps can borrow it).
            if self.state2.len() < kk {
                return Err(record_driver_error(DriverError::Panicked));
            }
            let spare = std::mem::take(&mut self.state2);
            let r = (|| {
                let mut cur: &mut [u64] = state;
                let mut next: &mut [u64] = &mut spare[..kk];
                let mut swapped = false;
                for j in 0..count {
                    self.forward_into(first.wrapping_add(j as i64), cur, next)?;
                    std::mem::swap(&mut cur, &mut next);
                    swapped = !swapped;
                }
                if swapped {
                    next.copy_from_slice(cur);
                }
                Ok(())
            })();
            self.state2 = spare;
            return r;
        };
        if tape.len() < count.saturating_mul(kk) {
            return Err(record_driver_error(DriverError::Panicked));
        }
        for j in 0..count {
            let (done, rest) = tape.split_at_mut(j * kk);
            let src: &[u64] = if j == 0 { state } else { &done[(j - 1) * kk..] };
            self.forward_into(first.wrapping_add(j as i64), src, &mut rest[..kk])?;
        }
        if count > 0 {
            state.copy_from_slice(&tape[(count - 1) * kk..count * kk]);
        }
        Ok(())
    }

    /// Each step reads its state in place (in the tape or `base`) and its adjoints
    /// where the previous step wrote them, and writes the new adjoints to the other
    /// of two buffers (`adj` and [`TensorSteps::adj2`]): no copy per step, at most one
    /// at the end.
    fn backward_span(
        &mut self,
        first: i64,
        count: u64,
        base: &[u64],
        tape: &[u64],
        adj: &mut [u64],
    ) -> Result<(), u32> {
        if !self.spans {
            return Err(record_driver_error(DriverError::Panicked));
        }
        let (kk, aa) = (base.len(), adj.len());
        let count = count as usize;
        if tape.len() < count.saturating_sub(1).saturating_mul(kk) || self.adj2.len() < aa {
            return Err(record_driver_error(DriverError::Panicked));
        }
        // The adjoints alternate between `adj` and a second buffer, taken out of
        // `self` for the span.
        let spare = std::mem::take(&mut self.adj2);
        let r = (|| {
            let mut cur: &mut [u64] = adj;
            let mut next: &mut [u64] = &mut spare[..aa];
            let mut swapped = false;
            for j in (0..count).rev() {
                let src = if j == 0 {
                    base
                } else {
                    &tape[(j - 1) * kk..j * kk]
                };
                self.backward_into(first.wrapping_add(j as i64), src, cur, next)?;
                std::mem::swap(&mut cur, &mut next);
                swapped = !swapped;
            }
            if swapped {
                // The last adjoints are in the spare buffer (now `cur`); `next` is
                // `adj`.
                next.copy_from_slice(cur);
            }
            Ok(())
        })();
        self.adj2 = spare;
        r
    }
}

/// The driver of a descriptor with a layout table: a `revloop` (`rev`) or a
/// `tapeloop`. Returns a status as [`jitad_revloop`] does.
///
/// # Safety
///
/// As [`jitad_revloop`], for a descriptor with a table: every tensor operand's word
/// and every tensor result address is that of a live buffer of the layout word's
/// element type and count, result buffers disjoint from everything else the loop reads.
unsafe fn tensor_driver(descriptor: *mut u64, rev: bool) -> u32 {
    // SAFETY: the caller guarantees the header is readable.
    let header = unsafe { std::slice::from_raw_parts(descriptor, desc::HEADER) };
    let (k, c) = (header[desc::STATES] as usize, header[desc::CAPS] as usize);
    let a = if rev { header[desc::ADJS] as usize } else { 0 };
    let n = k.saturating_add(c).saturating_add(a);
    let r = if rev { a } else { k };
    let len = desc::HEADER
        .saturating_add(n.saturating_mul(2))
        .saturating_add(r);
    // SAFETY: the lowering wrote `desc::words` = HEADER + 2n + r words at
    // `descriptor` (the counts are its own), and nothing else accesses them during
    // this call.
    let words = unsafe { std::slice::from_raw_parts_mut(descriptor, len) };
    // SAFETY: words FWD and BWD hold `func_addr`s of functions with the `EntryFn`
    // ABI (BWD of a `tapeloop` is 0 and never called: the forward entry stands in).
    let fwd: EntryFn = unsafe { std::mem::transmute::<usize, EntryFn>(words[desc::FWD] as usize) };
    let bwd: EntryFn = if rev {
        // SAFETY: as above.
        unsafe { std::mem::transmute::<usize, EntryFn>(words[desc::BWD] as usize) }
    } else {
        fwd
    };
    let ws = words[desc::WS] as usize as *mut u8;
    let (start, end) = (words[desc::START] as i64, words[desc::END] as i64);
    let policy = decode_policy(words[desc::POLICY_TAG], words[desc::POLICY_PARAM]);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut bufs = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
        // SAFETY: the caller's guarantee.
        let st = unsafe {
            run_tensor_driver(
                words,
                &mut bufs,
                [k, c, a],
                rev,
                fwd,
                bwd,
                ws,
                start,
                end,
                policy,
            )
        };
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOL_MAX {
                p.push(bufs);
            }
        });
        st
    }));
    r.unwrap_or_else(|_| record_driver_error(DriverError::Panicked))
}

/// [`tensor_driver`]'s work, on the buffers `b`.
///
/// # Safety
///
/// As [`tensor_driver`]; `words` is the whole descriptor.
#[allow(clippy::too_many_arguments)] // the descriptor, decoded once by the caller
unsafe fn run_tensor_driver(
    words: &mut [u64],
    b: &mut Buffers,
    [k, c, a]: [usize; 3],
    rev: bool,
    fwd: EntryFn,
    bwd: EntryFn,
    ws: *mut u8,
    start: i64,
    end: i64,
    policy: Policy,
) -> u32 {
    let n = k + c + a;
    let (head, rest) = words.split_at_mut(desc::HEADER + n);
    let (hdr, vals) = head.split_at_mut(desc::HEADER);
    let (layout, addrs) = rest.split_at(n);
    b.ops.clear();
    let (kk, out_s, conv) = lay_out(&mut b.ops, &layout[..k], [0, 0]);
    let (aa, out_a, conv) = lay_out(&mut b.ops, &layout[k + c..], conv);
    let r = (|| -> Result<u32, DriverError> {
        let flat = sized(&mut b.flat, kk.saturating_add(aa))?;
        let frame = sized(&mut b.frame, 1 + n + k.max(a))?;
        let out_w = sized(&mut b.out_w, out_s[0].max(out_a[0]))?;
        let out_f = sized(&mut b.out_f, out_s[1].max(out_a[1]))?;
        let out_b = sized(&mut b.out_b, out_s[2].max(out_a[2]))?;
        let arg_f = sized(&mut b.arg_f, conv[0])?;
        let arg_b = sized(&mut b.arg_b, conv[1])?;
        let (st_ops, ad_ops) = b.ops.split_at(k);
        let wide = |o: &Operand| {
            o.tensor
                .is_none_or(|(e, _)| matches!(e, ScalarType::F64 | ScalarType::I64))
        };
        let spans = hdr[desc::FSPAN] != 0 && b.ops.iter().all(wide);
        let adj2 = sized(&mut b.adj2, if spans && rev { aa } else { 0 })?;
        let state2 = sized(&mut b.state2, if spans { kk } else { 0 })?;
        let (state, adj) = flat.split_at_mut(kk);
        // SAFETY: the caller's guarantee: the inits' and seeds' words address live
        // buffers of their layouts, which the loop does not write.
        unsafe {
            flatten(st_ops, &vals[..k], state);
            flatten(ad_ops, &vals[k + c..], adj);
        }
        frame[1 + k..1 + k + c].copy_from_slice(&vals[k..k + c]);
        let mut steps = TensorSteps {
            fwd,
            bwd,
            ws,
            st: st_ops,
            ad: ad_ops,
            c,
            frame,
            out_w,
            out_f,
            out_b,
            arg_f,
            arg_b,
            spans,
            adj2,
            state2,
        };
        let l = checkpoint::trip_count(start, end);
        let swept = if !rev {
            checkpoint::record(policy, start, l, state, &mut steps).map(|token| {
                hdr[desc::TOKEN] = token;
                hdr[desc::HAS_TOKEN] = 1;
            })
        } else if hdr[desc::HAS_TOKEN] != 0 {
            let spec = LoopSpec {
                policy,
                start,
                trips: l,
                inits: state,
            };
            checkpoint::reverse_recorded(hdr[desc::TOKEN], spec, adj, &mut steps)
        } else {
            checkpoint::reverse(policy, start, l, state, adj, &mut steps)
        };
        if let Err(e) = swept {
            return Ok(status(e));
        }
        // SAFETY: the caller's guarantee: the result addresses name live buffers of
        // the results' layouts that nothing else accesses now.
        unsafe {
            if rev {
                unflatten(ad_ops, adj, &mut vals[k + c..], addrs);
            } else {
                unflatten(st_ops, state, &mut vals[..k], addrs);
            }
        }
        Ok(0)
    })();
    r.unwrap_or_else(record_driver_error)
}
