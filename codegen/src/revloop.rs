//! `tapeloop` and `revloop` in compiled code: the lowering stores a descriptor and calls
//! [`jitad_tapeloop`] or [`jitad_revloop`], which run [`jitad_ir::checkpoint::record`]
//! and [`jitad_ir::checkpoint::reverse_recorded`] (or `reverse`, without a tape) — the
//! same driver the interpreter uses — calling the compiled forward and backward
//! iterations through their entry pointers.
//!
//! Descriptor (8-byte words, written by the lowering in `lower.rs`):
//!
//! | word | content |
//! |---|---|
//! | 0, 1 | entry of the forward / backward iteration ([`crate::EntryFn`]) |
//! | 2 | workspace for them (the caller's callee area) |
//! | 3, 4 | start, end (i64) |
//! | 5, 6 | policy tag and parameter ([`encode_policy`]) |
//! | 7, 8, 9 | state count `k`, capture count `c`, adjoint count `a` |
//! | 10, 11 | tape token, and 1 if there is one (0: none) |
//! | 12.. | `k` inits, `c` captures, `a` seeds; the results overwrite the seeds |
//!
//! A `tapeloop` uses the same layout with no backward iteration and no seeds: the
//! driver [`jitad_tapeloop`] overwrites the inits with the final state and writes the
//! token to word 10.
//!
//! Statuses: a driver returns 0, a step's own nonzero status unchanged (a guard's, or
//! a nested driver's), or one of its own, from the top of the `u32` range down — one
//! per [`DriverError`] kind, all listed in [`driver_status`]. With its own status it
//! leaves the whole error (with its numbers) for [`take_driver_error`], so the handle
//! reports exactly what the interpreter reports.

use crate::handle::EntryFn;
use jitad_ir::checkpoint::{self, DriverError, LoopSpec, Policy, Steps};
use std::cell::Cell;

/// Words before the values.
pub(crate) const HEADER: usize = 12;

/// The status of each driver failure: the one list of driver statuses.
pub(crate) fn driver_status(e: &DriverError) -> u32 {
    u32::MAX
        - match e {
            DriverError::Panicked => 0,
            DriverError::TooLarge { .. } => 1,
            DriverError::BadToken(_) => 2,
            DriverError::StartMismatch { .. } => 3,
            DriverError::TripCountMismatch { .. } => 4,
            DriverError::StateCountMismatch { .. } => 5,
            DriverError::InitMismatch { .. } => 6,
            DriverError::PolicyMismatch { .. } => 7,
        }
}

/// The lowest driver status (guard statuses count up from 1 and stay below it).
pub(crate) const FIRST_DRIVER_STATUS: u32 = u32::MAX - 7;

thread_local! {
    /// The error behind the last driver status returned on this thread.
    static LAST_ERROR: Cell<Option<DriverError>> = const { Cell::new(None) };
}

/// The error of a driver status `s` returned on this thread (`None` if `s` is not a
/// driver status, or no driver left that error: a bug).
pub(crate) fn take_driver_error(s: u32) -> Option<DriverError> {
    let e = LAST_ERROR.with(|l| l.take())?;
    (s >= FIRST_DRIVER_STATUS && driver_status(&e) == s).then_some(e)
}

/// Records a driver failure and returns its status.
fn fail(e: DriverError) -> u32 {
    LAST_ERROR.with(|l| l.set(Some(e)));
    driver_status(&e)
}

/// The status for a failed sweep.
fn status(e: checkpoint::SweepError<u32>) -> u32 {
    match e {
        checkpoint::SweepError::Step(st) => st,
        checkpoint::SweepError::Driver(e) => fail(e),
    }
}

/// The policy as two words.
pub(crate) fn encode_policy(p: Policy) -> (u64, u64) {
    match p {
        Policy::Auto(b) => (0, b),
        Policy::StoreAll => (1, 0),
        Policy::Binomial(s) => (2, u64::from(s)),
        Policy::Every(k) => (3, u64::from(k)),
        Policy::Recompute => (4, 0),
    }
}

fn decode_policy(tag: u64, param: u64) -> Policy {
    match tag {
        1 => Policy::StoreAll,
        2 => Policy::Binomial(param.clamp(1, u64::from(u32::MAX)) as u32),
        3 => Policy::Every(param.clamp(1, u64::from(u32::MAX)) as u32),
        4 => Policy::Recompute,
        _ => Policy::Auto(param),
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
    ws: *mut u8,
    caps: &'a [u64],
    k: usize,
    a: usize,
    /// `[i, state (k), caps (c), adj (a)]` then `max(k, a)` result words.
    buf: &'a mut [u64],
}

impl Steps for JitSteps<'_> {
    type Error = u32;

    fn forward(&mut self, i: i64, state: &mut [u64]) -> Result<(), u32> {
        let (k, c) = (self.k, self.caps.len());
        let (args, res) = self.buf.split_at_mut(1 + k + c + self.a);
        args[0] = i as u64;
        args[1..1 + k].copy_from_slice(state);
        args[1 + k..1 + k + c].copy_from_slice(self.caps);
        // SAFETY: `fwd` is the entry of `(i64, s.., c..) -> s..` in the JIT module the
        // calling handle keeps alive; it reads 1 + k + c argument slots and writes k
        // result slots (`res` holds max(k, a) ≥ k); `ws` is the callee workspace the
        // caller's plan sized for it. It cannot unwind (runtime functions are
        // panic-free `extern "C"` code; this driver catches its own panics).
        let st = unsafe { (self.fwd)(args.as_ptr(), res.as_mut_ptr(), self.ws) };
        if st != 0 {
            return Err(st);
        }
        state.copy_from_slice(&res[..k]);
        Ok(())
    }

    fn backward(&mut self, i: i64, state: &[u64], adj: &mut [u64]) -> Result<(), u32> {
        let (k, c, a) = (self.k, self.caps.len(), self.a);
        let (args, res) = self.buf.split_at_mut(1 + k + c + a);
        args[0] = i as u64;
        args[1..1 + k].copy_from_slice(state);
        args[1 + k..1 + k + c].copy_from_slice(self.caps);
        args[1 + k + c..].copy_from_slice(adj);
        // SAFETY: as in `forward`, for `bwd: (i64, s.., c.., a..) -> a..`, reading
        // 1 + k + c + a slots and writing a.
        let st = unsafe { (self.bwd)(args.as_ptr(), res.as_mut_ptr(), self.ws) };
        if st != 0 {
            return Err(st);
        }
        adj.copy_from_slice(&res[..a]);
        Ok(())
    }
}

/// Runs the reverse sweep a `revloop` descriptor describes; returns 0, the status of a
/// failed step (a guard), or a driver status (see the module docs).
///
/// # Safety
///
/// `desc` must point to a descriptor laid out as in the module docs, by the lowering,
/// whose entry pointers belong to a live JIT module and whose workspace is large
/// enough for both iterations.
pub(crate) unsafe extern "C" fn jitad_revloop(desc: *mut u64) -> u32 {
    // SAFETY: the caller guarantees the header is readable.
    let header = unsafe { std::slice::from_raw_parts(desc, HEADER) };
    let (k, c, a) = (header[7] as usize, header[8] as usize, header[9] as usize);
    // SAFETY: the lowering wrote HEADER + k + c + a words at `desc`, and nothing else
    // accesses them during this call.
    let words = unsafe { std::slice::from_raw_parts_mut(desc, HEADER + k + c + a) };
    // SAFETY: words 0 and 1 hold `func_addr`s of functions with the `EntryFn` ABI.
    let fwd: EntryFn = unsafe { std::mem::transmute::<usize, EntryFn>(words[0] as usize) };
    // SAFETY: as above.
    let bwd: EntryFn = unsafe { std::mem::transmute::<usize, EntryFn>(words[1] as usize) };
    let ws = words[2] as usize as *mut u8;
    let (start, end) = (words[3] as i64, words[4] as i64);
    let policy = decode_policy(words[5], words[6]);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (head, rest) = words.split_at_mut(HEADER + k + c);
        let state0 = &head[HEADER..HEADER + k];
        let caps = &head[HEADER + k..];
        let need = 1 + k + c + a + k.max(a);
        let mut small = [0u64; 256];
        let mut big = Vec::new();
        let buf = step_buffer(need, &mut small, &mut big);
        let mut steps = JitSteps {
            fwd,
            bwd,
            ws,
            caps,
            k,
            a,
            buf,
        };
        let l = checkpoint::trip_count(start, end);
        let r = if head[11] != 0 {
            let spec = LoopSpec {
                policy,
                start,
                trips: l,
                inits: state0,
            };
            checkpoint::reverse_recorded(head[10], spec, rest, &mut steps)
        } else {
            checkpoint::reverse(policy, start, l, state0, rest, &mut steps)
        };
        r.map_or_else(status, |()| 0)
    }));
    r.unwrap_or_else(|_| fail(DriverError::Panicked))
}

/// Runs a `tapeloop` descriptor: the loop's iterations, recording what the policy
/// keeps; writes the final state over the inits and the token to word 10. Returns 0,
/// the status of a failed iteration, or a driver status.
///
/// # Safety
///
/// As [`jitad_revloop`] (word 1 is unused).
pub(crate) unsafe extern "C" fn jitad_tapeloop(desc: *mut u64) -> u32 {
    // SAFETY: the caller guarantees the header is readable.
    let header = unsafe { std::slice::from_raw_parts(desc, HEADER) };
    let (k, c) = (header[7] as usize, header[8] as usize);
    // SAFETY: the lowering wrote HEADER + k + c words at `desc`, and nothing else
    // accesses them during this call.
    let words = unsafe { std::slice::from_raw_parts_mut(desc, HEADER + k + c) };
    // SAFETY: word 0 holds the `func_addr` of a function with the `EntryFn` ABI.
    let fwd: EntryFn = unsafe { std::mem::transmute::<usize, EntryFn>(words[0] as usize) };
    let ws = words[2] as usize as *mut u8;
    let (start, end) = (words[3] as i64, words[4] as i64);
    let policy = decode_policy(words[5], words[6]);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (head, caps) = words.split_at_mut(HEADER + k);
        let (hdr, state) = head.split_at_mut(HEADER);
        let need = 1 + k + c + k;
        let mut small = [0u64; 256];
        let mut big = Vec::new();
        let buf = step_buffer(need, &mut small, &mut big);
        let mut steps = JitSteps {
            fwd,
            bwd: fwd,
            ws,
            caps,
            k,
            a: 0,
            buf,
        };
        let l = checkpoint::trip_count(start, end);
        match checkpoint::record(policy, start, l, state, &mut steps) {
            Ok(token) => {
                hdr[10] = token;
                hdr[11] = 1;
                0
            }
            Err(e) => status(e),
        }
    }));
    r.unwrap_or_else(|_| fail(DriverError::Panicked))
}
