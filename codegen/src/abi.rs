//! The codegen ABI, in one leaf module: what compiled code, the handle that calls it and
//! the loop drivers it calls agree on. It imports only `std`, Cranelift types and
//! `jitad-ir`, so every other module may use it and none of them needs another for these
//! facts:
//!
//! ```text
//! abi     ──► jitad-ir (layout, checkpoint), Cranelift types: nothing of this crate
//! revloop ──► abi
//! plan    ──► abi
//! outline ──► abi
//! handle  ──► abi, stack
//! lower   ──► abi, plan, runtime
//! module  ──► abi, handle, lower, plan, stack, revloop, outline, runtime, schedule
//! ```
//!
//! (and any of them ──► `error`, the other leaf): a DAG.
//!
//! No module reaches these facts through another: before this module, `handle` took
//! the entry type from itself and the driver statuses from `revloop`, which took the
//! entry type from `handle` (a cycle), and `plan` and `lower` took the descriptor size
//! from `revloop` and the guard table from `lower`.
//!
//! - **Entry signature** ([`EntryFn`], [`entry_signature`]): every generated function is
//!   `extern "C" fn(args: *const u64, results: *mut u64, workspace: *mut u8) -> u32`.
//!   Loop drivers are [`DriverFn`]: `extern "C" fn(descriptor: *mut u64) -> u32`
//!   ([`driver_signature`], [`REVLOOP_SYMBOL`], [`TAPELOOP_SYMBOL`]).
//! - **Slot encoding**: a scalar is one [`SLOT_BYTES`]-byte slot as
//!   [`jitad_ir::layout`] defines it (f64 bits; f32 bits in the low 4 bytes; i64; bool 0/1
//!   in the low byte): [`to_slot`], [`from_slot`], and [`cl_ty`], the Cranelift type a
//!   slot is loaded as. Argument, result and call-frame buffers are arrays of slots,
//!   addressed by [`word_offset`]. A call frame (arguments, then results) or a driver
//!   descriptor of at most [`MAX_STACK_FRAME`] bytes goes in the caller's stack area,
//!   a larger one in its workspace ([`frame_bytes`]).
//! - **Driver descriptors** ([`desc`]): the words a `revloop`/`tapeloop` lowering writes
//!   and its driver reads, the policy in two words ([`encode_policy`],
//!   [`decode_policy`]); a tensor operand is its buffer's address, described by a
//!   layout table, and a tensor result goes to the address the descriptor names.
//! - **Status codes**: 0 is success; `k` in `1..=i32::MAX` is guard `k − 1` of the
//!   module's guard table ([`GuardInfo`], [`guard_status`], [`guard_of_status`]); the top
//!   of the `u32` range, from [`FIRST_DRIVER_STATUS`] up, one per
//!   [`DriverError`] kind ([`driver_status`]), whose details the driver leaves in a
//!   thread-local for the handle ([`record_driver_error`], [`take_driver_error`]).

use cranelift_codegen::ir::{self as cl, types, AbiParam};
use cranelift_jit::JITModule;
use cranelift_module::Module as _;
use jitad_ir::checkpoint::{DriverError, Policy};
use jitad_ir::{Function, Inst, Op, ScalarType, Val};
use std::cell::Cell;

/// The ABI of every compiled function (see the crate docs): `args` and `results` point
/// to one 8-byte slot per scalar, `workspace` to [`crate::Compiled::workspace_bytes`]
/// bytes (8-aligned); the return value is 0 on success, `k >= 1` when guard `k - 1` of
/// the module's guard table failed, or a driver status.
pub type EntryFn = unsafe extern "C" fn(*const u64, *mut u64, *mut u8) -> u32;

/// A loop driver: reads the descriptor at its argument (layout in [`desc`]), returns a
/// status.
pub(crate) type DriverFn = unsafe extern "C" fn(*mut u64) -> u32;

/// A loop's forward *span*: `(first, count, state, tape, stride, caps, workspace) ->
/// status` runs iterations `first..first+count` of the forward step on the `k` state
/// slots at `state` (final state written back there), storing the state after each
/// iteration at `tape + j·stride` bytes; `caps` holds the captures' slots. Generated
/// from the step's IR with the step inlined in a loop, so the state stays in
/// registers (`crate::lower`); the drivers run whole spans through it
/// ([`jitad_ir::checkpoint::Steps::forward_span`]).
pub(crate) type FwdSpanFn =
    unsafe extern "C" fn(i64, i64, *mut u64, *mut u64, i64, *const u64, *mut u8) -> u32;

/// A loop's backward span: `(first, count, base, tape, caps, adj, workspace) -> status`
/// runs the backward steps of iterations `first+count−1` down to `first` on the `a`
/// adjoint slots at `adj` (written back there), iteration `first + j` reading its state
/// from `base` for `j = 0`, else from `tape + (j−1)·k` slots
/// ([`jitad_ir::checkpoint::Steps::backward_span`]).
pub(crate) type BwdSpanFn =
    unsafe extern "C" fn(i64, i64, *const u64, *const u64, *const u64, *mut u64, *mut u8) -> u32;

/// The Cranelift signature of [`FwdSpanFn`] (`bwd: false`) or [`BwdSpanFn`].
pub(crate) fn span_signature(module: &JITModule, bwd: bool) -> cl::Signature {
    let ptr = module.target_config().pointer_type();
    let mut sig = module.make_signature();
    sig.params.push(AbiParam::new(types::I64));
    sig.params.push(AbiParam::new(types::I64));
    let rest: &[cl::Type] = if bwd {
        &[ptr, ptr, ptr, ptr, ptr]
    } else {
        &[ptr, ptr, types::I64, ptr, ptr]
    };
    for &t in rest {
        sig.params.push(AbiParam::new(t));
    }
    sig.returns.push(AbiParam::new(types::I32));
    sig
}

/// The symbol compiled code calls for a `revloop`.
pub(crate) const REVLOOP_SYMBOL: &str = "jitad_revloop";
/// The symbol compiled code calls for a `tapeloop`.
pub(crate) const TAPELOOP_SYMBOL: &str = "jitad_tapeloop";

/// The Cranelift signature of [`EntryFn`]: three pointers in, an `i32` status out, the
/// host's default C calling convention.
pub(crate) fn entry_signature(module: &JITModule) -> cl::Signature {
    let ptr = module.target_config().pointer_type();
    let mut sig = module.make_signature();
    for _ in 0..3 {
        sig.params.push(AbiParam::new(ptr));
    }
    sig.returns.push(AbiParam::new(types::I32));
    sig
}

/// The Cranelift signature of [`DriverFn`].
pub(crate) fn driver_signature(module: &JITModule) -> cl::Signature {
    let ptr = module.target_config().pointer_type();
    let mut sig = module.make_signature();
    sig.params.push(AbiParam::new(ptr));
    sig.returns.push(AbiParam::new(types::I32));
    sig
}

/// Bytes of one slot ([`jitad_ir::layout::SLOT_BYTES`]).
pub(crate) const SLOT_BYTES: usize = jitad_ir::layout::SLOT_BYTES;

/// The 8-byte slot encoding of a value: f64 bits, f32 bits in the low 4 bytes, i64,
/// bool 0/1.
pub fn to_slot(v: Val) -> u64 {
    v.to_slot()
}

/// Decodes a slot holding a value of type `ty` (only the low 4 bytes for `f32`, the
/// low byte for `bool`).
pub fn from_slot(ty: ScalarType, s: u64) -> Val {
    Val::from_slot(ty, s)
}

/// The Cranelift type a slot of scalar type `t` is loaded as (`bool` is an `i8` holding
/// 0 or 1).
pub(crate) fn cl_ty(t: ScalarType) -> cl::Type {
    match t {
        ScalarType::F64 => types::F64,
        ScalarType::F32 => types::F32,
        ScalarType::I64 => types::I64,
        ScalarType::Bool => types::I8,
    }
}

/// The byte offset of slot `words` plus `extra` bytes as a 32-bit load/store
/// displacement, or `None` past `i32::MAX` (never a wrapped offset).
pub(crate) fn word_offset(words: usize, extra: u64) -> Option<i32> {
    (words as u64)
        .checked_mul(SLOT_BYTES as u64)
        .and_then(|b| b.checked_add(extra))
        .and_then(|b| i32::try_from(b).ok())
}

/// The largest call frame or driver descriptor that goes on the machine stack, in
/// bytes; larger ones live in the caller's workspace.
pub(crate) const MAX_STACK_FRAME: u64 = 1024;

/// Bytes of a call's frame (argument slots, then result slots; at least one slot) or a
/// driver descriptor ([`desc::words`]), or `None` for other instructions. Saturates
/// rather than wraps (a size that large fails later with an offset error).
pub(crate) fn frame_bytes(f: &Function, inst: Inst) -> Option<u64> {
    let d = &f.insts[inst];
    let words = match &d.op {
        Op::Call(_) => (d.args.len() + d.results.len()).max(1),
        Op::TapeLoop(_) | Op::RevLoop(_) => desc::words(f, inst).unwrap_or(usize::MAX),
        _ => return None,
    };
    Some((words as u64).saturating_mul(SLOT_BYTES as u64))
}

pub(crate) mod desc {
    //! The loop drivers' descriptor: 8-byte words, written by the lowering, read by
    //! `revloop.rs`.
    //!
    //! | word | content |
    //! |---|---|
    //! | [`FWD`], [`BWD`] | entry of the forward / backward iteration ([`super::EntryFn`]) |
    //! | [`WS`] | workspace for them (the caller's callee area) |
    //! | [`START`], [`END`] | start, end (i64) |
    //! | [`POLICY_TAG`], [`POLICY_PARAM`] | the policy ([`super::encode_policy`]) |
    //! | [`STATES`], [`CAPS`], [`ADJS`] | state count `k`, capture count `c`, adjoint count `a` (operands, not slots) |
    //! | [`TOKEN`], [`HAS_TOKEN`] | tape token, and 1 if there is one (0: none) |
    //! | [`TABLE`] | 1 when the two tables below follow (some operand or result is a tensor), else 0 |
    //! | [`FSPAN`], [`BSPAN`] | entry of the forward / backward span ([`super::FwdSpanFn`], [`super::BwdSpanFn`]), 0 if none; with a table (no span functions), FSPAN is 1 when the steps run no driver (the driver may then run them a span at a time itself) |
    //! | [`HEADER`].. | `n = k + c + a` operand words: `k` inits, `c` captures, `a` seeds — a scalar's slot, a tensor's buffer address; scalar results overwrite their operand's word |
    //! | `HEADER + n`.. | with a table: `n` layout words, one per operand ([`layout_word`]) |
    //! | `HEADER + 2n`.. | with a table: `r` result addresses, one per state (`tapeloop`, `r = k`) or adjoint (`revloop`, `r = a`) result: the buffer a tensor result is written to, 0 for a scalar |
    //!
    //! A `tapeloop` uses the same layout with no backward iteration (word [`BWD`] is 0) and
    //! no seeds: its driver writes the final state (scalars over the inits' words, tensors
    //! to their result addresses) and the token to [`TOKEN`] (and 1 to [`HAS_TOKEN`]).
    //!
    //! The checkpoint driver works on the loop's state *flattened* to 8-byte slots
    //! ([`jitad_ir::layout::state_slots`]: one per scalar, one per tensor element), so a
    //! tensor's layout word says how many slots it takes and how its elements are
    //! stored in its buffer.

    use jitad_ir::{Function, Inst, Op, ScalarType, Type};

    /// Entry of the forward iteration.
    pub(crate) const FWD: usize = 0;
    /// Entry of the backward iteration (0 for a `tapeloop`).
    pub(crate) const BWD: usize = 1;
    /// Workspace of the iterations.
    pub(crate) const WS: usize = 2;
    /// First index.
    pub(crate) const START: usize = 3;
    /// End index (exclusive).
    pub(crate) const END: usize = 4;
    /// Policy tag.
    pub(crate) const POLICY_TAG: usize = 5;
    /// Policy parameter.
    pub(crate) const POLICY_PARAM: usize = 6;
    /// Number of state operands `k`.
    pub(crate) const STATES: usize = 7;
    /// Number of captured operands `c`.
    pub(crate) const CAPS: usize = 8;
    /// Number of adjoint operands `a`.
    pub(crate) const ADJS: usize = 9;
    /// Tape token.
    pub(crate) const TOKEN: usize = 10;
    /// 1 if [`TOKEN`] holds a token.
    pub(crate) const HAS_TOKEN: usize = 11;
    /// 1 if the layout table and the result addresses follow the operand words.
    pub(crate) const TABLE: usize = 12;
    /// Entry of the forward span (0: none; the driver then calls [`FWD`] per step).
    pub(crate) const FSPAN: usize = 13;
    /// Entry of the backward span (0: none).
    pub(crate) const BSPAN: usize = 14;
    /// Words before the operands.
    pub(crate) const HEADER: usize = 15;

    /// The layout word of an operand of type `t`: 0 for a scalar; for a tensor of `len`
    /// elements, `len << 2 | e` with `e` 0 for f64, 1 for f32, 2 for i64, 3 for bool
    /// (never 0: a tensor has at least one element). `None` for a tensor whose element
    /// count does not fit (more than 2^62).
    pub(crate) fn layout_word(t: Type) -> Option<u64> {
        match t {
            Type::Scalar(_) => Some(0),
            Type::Tensor(e, s) => {
                let code = match e {
                    ScalarType::F64 => 0,
                    ScalarType::F32 => 1,
                    ScalarType::I64 => 2,
                    ScalarType::Bool => 3,
                };
                let len = u64::try_from(s.num_elements()).ok()?;
                (len != 0 && len < 1 << 62).then_some(len << 2 | code)
            }
        }
    }

    /// A layout word decoded: `None` for a scalar, else the tensor's element type and
    /// element count (slots in the flattened state).
    pub(crate) fn decode_layout(w: u64) -> Option<(ScalarType, usize)> {
        if w == 0 {
            return None;
        }
        let e = match w & 3 {
            0 => ScalarType::F64,
            1 => ScalarType::F32,
            2 => ScalarType::I64,
            _ => ScalarType::Bool,
        };
        Some((e, usize::try_from(w >> 2).unwrap_or(usize::MAX)))
    }

    /// The operand range the descriptor holds (inits, captures, seeds), the result
    /// indices with a result address (states of a `tapeloop`, adjoints of a
    /// `revloop`), and whether a table follows (some of them is a tensor); `None` for
    /// other instructions or too few operands.
    pub(crate) fn shape(
        f: &Function,
        inst: Inst,
    ) -> Option<(std::ops::Range<usize>, std::ops::Range<usize>, bool)> {
        let d = &f.insts[inst];
        let (values, results) = match &d.op {
            Op::TapeLoop(r) => {
                let [_, inits, caps] = r.split(d.args.len())?;
                (inits.start..caps.end, 0..inits.len())
            }
            Op::RevLoop(r) => {
                let [_, _, inits, _, seeds] = r.split(d.args.len())?;
                (inits.start..seeds.end, 0..d.results.len())
            }
            _ => return None,
        };
        let tensor = |v: &jitad_ir::Value| {
            f.values
                .get(*v)
                .is_some_and(|vd| matches!(vd.ty, Type::Tensor(..)))
        };
        let table = d.args[values.clone()].iter().any(tensor)
            || d.results
                .get(results.clone())
                .is_some_and(|r| r.iter().any(tensor));
        Some((values, results, table))
    }

    /// Words of the descriptor of driver instruction `inst`: [`HEADER`], one per
    /// operand it holds, and with a table one more per operand and one per result
    /// address. `None` for other instructions, or a count past `usize`.
    pub(crate) fn words(f: &Function, inst: Inst) -> Option<usize> {
        let (values, results, table) = shape(f, inst)?;
        let n = values.len();
        let extra = if table {
            n.checked_add(results.len())?
        } else {
            0
        };
        HEADER.checked_add(n)?.checked_add(extra)
    }
}

/// The policy as two words ([`desc::POLICY_TAG`], [`desc::POLICY_PARAM`]).
pub(crate) fn encode_policy(p: Policy) -> (u64, u64) {
    match p {
        Policy::Auto(b) => (0, b),
        Policy::StoreAll => (1, 0),
        Policy::Binomial(s) => (2, u64::from(s)),
        Policy::Every(k) => (3, u64::from(k)),
        Policy::Recompute => (4, 0),
    }
}

/// The policy two words encode (an unknown tag reads as `auto`, out-of-range
/// parameters are clamped).
pub(crate) fn decode_policy(tag: u64, param: u64) -> Policy {
    match tag {
        1 => Policy::StoreAll,
        2 => Policy::Binomial(param.clamp(1, u64::from(u32::MAX)) as u32),
        3 => Policy::Every(param.clamp(1, u64::from(u32::MAX)) as u32),
        4 => Policy::Recompute,
        _ => Policy::Auto(param),
    }
}

/// The status of success.
pub(crate) const STATUS_OK: u32 = 0;

/// Where a guard lives, for [`crate::CallError::GuardFailed`]: an entry of the module's
/// guard table, whose index `k − 1` status `k` names.
#[derive(Clone, Debug)]
pub(crate) struct GuardInfo {
    /// The function.
    pub func: String,
    /// Its ordinal among the function's guards, in program order.
    pub ordinal: usize,
}

/// The status compiled code returns when guard `index` of the guard table fails, or
/// `None` past `i32::MAX` (statuses are `i32` constants in the code).
pub(crate) fn guard_status(index: usize) -> Option<u32> {
    index
        .checked_add(1)
        .and_then(|s| i32::try_from(s).ok())
        .map(|s| s as u32)
}

/// The guard-table index status `s` names, if it is a guard status.
pub(crate) fn guard_of_status(s: u32) -> Option<usize> {
    (s != STATUS_OK && s <= i32::MAX as u32).then(|| s as usize - 1)
}

/// The status of a failed runtime tensor op (its message is left in a thread-local,
/// `crate::tensor_rt::take_fault`); between the guard and the driver statuses.
pub(crate) const TENSOR_FAULT_STATUS: u32 = FIRST_DRIVER_STATUS - 1;

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

/// Leaves driver failure `e` for [`take_driver_error`] and returns its status.
pub(crate) fn record_driver_error(e: DriverError) -> u32 {
    LAST_ERROR.with(|l| l.set(Some(e)));
    driver_status(&e)
}

/// The error of a driver status `s` returned on this thread (`None` if `s` is not a
/// driver status, or no driver left that error: a bug).
pub(crate) fn take_driver_error(s: u32) -> Option<DriverError> {
    let e = LAST_ERROR.with(|l| l.take())?;
    (s >= FIRST_DRIVER_STATUS && driver_status(&e) == s).then_some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_offsets_never_wrap() {
        assert_eq!(word_offset(0, 0), Some(0));
        assert_eq!(word_offset(12, 0), Some(96));
        let last = (i32::MAX / 8) as usize;
        assert_eq!(word_offset(last, 0), Some(8 * last as i32));
        for words in [last + 1, usize::MAX / 8, usize::MAX] {
            assert_eq!(word_offset(words, 0), None, "{words} words");
        }
        assert_eq!(word_offset(last, 8), None);
    }

    /// Guard statuses and driver statuses never overlap, and each maps back.
    #[test]
    fn statuses_are_disjoint() {
        assert_eq!(guard_status(0), Some(1));
        assert_eq!(guard_of_status(1), Some(0));
        let top = guard_status(i32::MAX as usize - 1).expect("the last guard");
        assert!(top < FIRST_DRIVER_STATUS);
        assert_eq!(guard_status(i32::MAX as usize), None);
        assert_eq!(guard_of_status(STATUS_OK), None);
        assert_eq!(guard_of_status(FIRST_DRIVER_STATUS), None);
        assert_eq!(guard_of_status(TENSOR_FAULT_STATUS), None);
        assert!(top < TENSOR_FAULT_STATUS && TENSOR_FAULT_STATUS < FIRST_DRIVER_STATUS);
        let e = DriverError::Panicked;
        assert!(driver_status(&e) >= FIRST_DRIVER_STATUS);
        let s = record_driver_error(e);
        assert_eq!(take_driver_error(s), Some(e));
        assert_eq!(take_driver_error(s), None);
    }

    /// Layout words decode to what they encode, scalars are 0, and the descriptor
    /// size counts the table only when some operand or result is a tensor.
    #[test]
    fn descriptor_layouts_round_trip() {
        use jitad_ir::{parse_module, Shape, Type};
        assert_eq!(desc::layout_word(Type::F64), Some(0));
        assert_eq!(desc::decode_layout(0), None);
        for e in [
            ScalarType::F64,
            ScalarType::F32,
            ScalarType::I64,
            ScalarType::Bool,
        ] {
            for dims in [&[1usize][..], &[3, 5], &[2, 1, 7]] {
                let t = Type::Tensor(e, Shape::new(dims).unwrap());
                let w = desc::layout_word(t).unwrap();
                assert_ne!(w, 0);
                assert_eq!(desc::decode_layout(w), Some((e, dims.iter().product())));
            }
        }
        let m = parse_module(
            "func @f(%x: f64[3], %y: f64, %n: i64) -> (f64[3], f64) {
              %s, %t = tapeloop 0..%n checkpoint store-all fwd @body (%x) caps (%y)
              %u, %v = tapeloop 0..4 checkpoint store-all fwd @sbody (%y) caps ()
              ret %s, %u
            }
            func @body(%i: i64, %a: f64[3], %c: f64) -> f64[3] {
              ret %a
            }
            func @sbody(%i: i64, %a: f64) -> f64 {
              ret %a
            }",
        )
        .unwrap();
        let f = m.get("f").unwrap();
        let insts = &f.regions[f.body].insts;
        // Tensors: 15 header words, 2 operands, 2 layout words, 1 result address.
        assert_eq!(desc::HEADER, 15);
        assert_eq!(desc::words(f, insts[0]), Some(desc::HEADER + 2 + 2 + 1));
        assert_eq!(frame_bytes(f, insts[0]), Some(8 * 20));
        // Scalars only: no table.
        assert_eq!(desc::words(f, insts[1]), Some(desc::HEADER + 1));
        assert_eq!(desc::words(f, insts[2]), None);
    }

    #[test]
    fn policies_round_trip() {
        for p in [
            Policy::Auto(12345),
            Policy::StoreAll,
            Policy::Binomial(3),
            Policy::Every(7),
            Policy::Recompute,
        ] {
            let (tag, param) = encode_policy(p);
            assert_eq!(decode_policy(tag, param), p);
        }
    }
}
