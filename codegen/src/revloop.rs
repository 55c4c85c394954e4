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

use crate::abi::{decode_policy, desc, record_driver_error, EntryFn};
use jitad_ir::checkpoint::{self, copy_words, DriverError, LoopSpec, Steps};

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
    ws: *mut u8,
    k: usize,
    c: usize,
    a: usize,
    /// `[i, state (k), caps (c), adj (a)]` then `max(k, a)` result words; the caps are
    /// written once ([`JitSteps::new`]), as no step changes them.
    buf: &'a mut [u64],
}

impl<'a> JitSteps<'a> {
    fn new(
        fwd: EntryFn,
        bwd: EntryFn,
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
        let mut steps = JitSteps::new(fwd, bwd, ws, caps, k, a, buf);
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
        let mut steps = JitSteps::new(fwd, fwd, ws, caps, k, 0, buf);
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
