//! The runtime of compiled tensor code: the tensor ops that are not fused loops
//! (reductions, `matmul`, `dot`, `concat`, `extract`, `insert`, `iota`, and the
//! vectorised `exp`/`log`/`tanh`/`sigmoid`), run by the very kernels of
//! [`jitad_ir::kernels`] and [`jitad_ir::vmath`] the interpreter runs, so both engines
//! get the same bits.
//!
//! Compiled code calls one symbol, [`TENSOR_OP_SYMBOL`], with the address of a
//! [`TensorCall`] made at compile time (owned by the handle, so it outlives the code)
//! and an array of pointers: each operand's data, then the result's. Everything a
//! kernel needs besides the data — dimensions, axes, GEMM strides — is
//! precomputed in the `TensorCall`, so a call allocates nothing (a `concat` of more
//! than [`MAX_INLINE_PARTS`] operands aside).

use crate::abi::TENSOR_FAULT_STATUS;
use jitad_ir::kernels::{self, MatView, NumericReduction};
use jitad_ir::shape::{MatmulDims, Reduction};
use jitad_ir::{Op, ScalarType, Type};
use std::cell::RefCell;

/// The symbol compiled code calls for a runtime tensor op.
pub(crate) const TENSOR_OP_SYMBOL: &str = "jitad_tensor_op";

/// `fn(call, pointers, scratch) -> status`.
pub(crate) type TensorOpFn = extern "C" fn(*const TensorCall, *const *mut u8, *mut u8) -> u32;

/// Operands of a `concat` handled without allocating.
pub(crate) const MAX_INLINE_PARTS: usize = 16;

/// One runtime tensor op of compiled code, with everything but the data.
#[derive(Debug)]
pub(crate) struct TensorCall {
    /// The op.
    pub op: Op,
    /// Operand types (for a transposed `matmul` operand: the logical, transposed type).
    pub args: Vec<Type>,
    /// Each operand's dimensions (`[]` for scalars).
    pub arg_dims: Vec<Vec<usize>>,
    /// The result type.
    pub result: Type,
    /// The result's dimensions.
    pub out_dims: Vec<usize>,
    /// Reduction axes, `iota`/`concat` axis (as one entry).
    pub axes: Vec<usize>,
    /// `matmul`: dimensions, and whether each operand's pointer is the un-transposed
    /// buffer of a 2-D transposed view.
    pub matmul: Option<(MatmulDims, [bool; 2])>,
}

impl TensorCall {
    /// The call for `op` with operand types `args` (logical) and result `result`;
    /// `trans` marks `matmul` operands passed un-transposed.
    pub(crate) fn new(op: &Op, args: Vec<Type>, result: Type, trans: [bool; 2]) -> Option<Self> {
        let arg_dims = args.iter().map(|&t| crate::fusion::dims(t)).collect();
        let axes = match op {
            Op::Reduce(_, axes) => axes.to_vec(),
            Op::Iota(axis, _) | Op::Concat(axis) => vec![usize::from(*axis)],
            _ => vec![],
        };
        let matmul = match op {
            Op::Matmul => {
                let (_, d) = jitad_ir::shape::matmul_dims(*args.first()?, *args.get(1)?).ok()?;
                Some((d, trans))
            }
            _ => None,
        };
        Some(TensorCall {
            op: op.clone(),
            arg_dims,
            out_dims: crate::fusion::dims(result),
            args,
            result,
            axes,
            matmul,
        })
    }
}

thread_local! {
    /// The message of the last failed runtime tensor op on this thread.
    static FAULT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Takes the message a failed tensor op left on this thread.
pub(crate) fn take_fault() -> Option<String> {
    FAULT.with(|f| f.borrow_mut().take())
}

fn fault(msg: String) -> u32 {
    FAULT.with(|f| *f.borrow_mut() = Some(msg));
    TENSOR_FAULT_STATUS
}

/// A typed view of one buffer.
enum Buf<'a> {
    F64(&'a [f64]),
    F32(&'a [f32]),
    I64(&'a [i64]),
    Bool(&'a [bool]),
}

enum BufMut<'a> {
    F64(&'a mut [f64]),
    F32(&'a mut [f32]),
    I64(&'a mut [i64]),
    Bool(&'a mut [bool]),
}

/// # Safety
/// `p` points to `t.num_elements()` initialised, aligned elements of `t`'s element
/// type, valid for reads while the result lives, not written meanwhile.
unsafe fn buf<'a>(p: *mut u8, t: Type) -> Buf<'a> {
    let n = t.num_elements();
    // SAFETY: the caller's contract.
    unsafe {
        match t.elem() {
            ScalarType::F64 => Buf::F64(std::slice::from_raw_parts(p as *const f64, n)),
            ScalarType::F32 => Buf::F32(std::slice::from_raw_parts(p as *const f32, n)),
            ScalarType::I64 => Buf::I64(std::slice::from_raw_parts(p as *const i64, n)),
            ScalarType::Bool => Buf::Bool(std::slice::from_raw_parts(p as *const bool, n)),
        }
    }
}

/// # Safety
/// As [`buf`], for writes, and no other live reference overlaps it.
unsafe fn buf_mut<'a>(p: *mut u8, t: Type) -> BufMut<'a> {
    let n = t.num_elements();
    // SAFETY: the caller's contract.
    unsafe {
        match t.elem() {
            ScalarType::F64 => BufMut::F64(std::slice::from_raw_parts_mut(p as *mut f64, n)),
            ScalarType::F32 => BufMut::F32(std::slice::from_raw_parts_mut(p as *mut f32, n)),
            ScalarType::I64 => BufMut::I64(std::slice::from_raw_parts_mut(p as *mut i64, n)),
            // Compiled code writes bools as bytes 0/1 only.
            ScalarType::Bool => BufMut::Bool(std::slice::from_raw_parts_mut(p as *mut bool, n)),
        }
    }
}

/// Runs one runtime tensor op: the symbol compiled code calls.
///
/// # Safety (of the callers: compiled code)
/// `call` is a `TensorCall` owned by the handle whose code calls this; `ptrs` holds
/// `call.args.len() + 1` pointers, each to a buffer of exactly its type (`call.args[k]`,
/// then `call.result`; a transposed `matmul` operand's buffer holds the same elements
/// un-transposed), aligned for its element type: parameter and result buffers whose
/// lengths the handle checked before the call, and workspace regions planned for these
/// types (`crate::fusion`), the result's region disjoint from every operand's. `scratch`
/// points to the plan's scratch area (sized for the largest `logsumexp`) or is unused.
pub(crate) extern "C" fn jitad_tensor_op(
    call: *const TensorCall,
    ptrs: *const *mut u8,
    scratch: *mut u8,
) -> u32 {
    // Kernels return errors rather than panic; a panic (a bug) must still not unwind
    // into JIT frames.
    let r = std::panic::catch_unwind(|| {
        // SAFETY: the contract above.
        unsafe { run(&*call, ptrs, scratch) }
    });
    match r {
        Ok(Ok(())) => 0,
        Ok(Err(msg)) => fault(msg),
        Err(_) => fault("a tensor kernel panicked".into()),
    }
}

/// # Safety
/// As [`jitad_tensor_op`].
unsafe fn run(c: &TensorCall, ptrs: *const *mut u8, scratch: *mut u8) -> Result<(), String> {
    let n = c.args.len();
    // SAFETY: `ptrs` holds n + 1 pointers.
    let ptr = |k: usize| unsafe { *ptrs.add(k) };
    let e = |e: kernels::KernelError| format!("`{}`: {e}", c.op.name());
    let bad = || format!("`{}`: operand types the runtime does not take", c.op.name());
    // SAFETY (every `buf`/`buf_mut` below): the contract; the result pointer is
    // disjoint from the operands'.
    let out = unsafe { buf_mut(ptr(n), c.result) };
    let arg = |k: usize| unsafe { buf(ptr(k), c.args[k]) };
    let od = &c.out_dims;
    match &c.op {
        Op::Reduce(red, _) => {
            let xd = &c.arg_dims[0];
            let scratch_len = if *red == Reduction::LogSumExp {
                c.result.num_elements()
            } else {
                0
            };
            match (arg(0), out) {
                (Buf::F64(x), BufMut::F64(o)) => {
                    // SAFETY: the scratch area holds 8 bytes per result element of the
                    // largest logsumexp, 16-aligned.
                    let s =
                        unsafe { std::slice::from_raw_parts_mut(scratch as *mut f64, scratch_len) };
                    kernels::reduce_real(*red, x, xd, &c.axes, o, s).map_err(e)
                }
                (Buf::F32(x), BufMut::F32(o)) => {
                    // SAFETY: as above (4 of the 8 bytes per element used).
                    let s =
                        unsafe { std::slice::from_raw_parts_mut(scratch as *mut f32, scratch_len) };
                    kernels::reduce_real(*red, x, xd, &c.axes, o, s).map_err(e)
                }
                (Buf::I64(x), BufMut::I64(o)) => {
                    let nr = match red {
                        Reduction::Sum => NumericReduction::Sum,
                        Reduction::Max => NumericReduction::Max,
                        Reduction::Min => NumericReduction::Min,
                        Reduction::Mean | Reduction::LogSumExp => return Err(bad()),
                    };
                    kernels::reduce(nr, x, xd, &c.axes, o).map_err(e)
                }
                _ => Err(bad()),
            }
        }
        Op::Matmul => {
            let Some((d, trans)) = c.matmul else {
                return Err(bad());
            };
            match (arg(0), arg(1), out) {
                (Buf::F64(a), Buf::F64(b), BufMut::F64(o)) => matmul(d, trans, a, b, o),
                (Buf::F32(a), Buf::F32(b), BufMut::F32(o)) => matmul(d, trans, a, b, o),
                _ => Err(kernels::KernelError::Length {
                    what: "matmul operands",
                    len: 0,
                    dims: vec![],
                }),
            }
            .map_err(e)
        }
        Op::Dot => match (arg(0), arg(1), out) {
            (Buf::F64(a), Buf::F64(b), BufMut::F64(o)) => {
                o[0] = kernels::dot(a, b).map_err(e)?;
                Ok(())
            }
            (Buf::F32(a), Buf::F32(b), BufMut::F32(o)) => {
                o[0] = kernels::dot(a, b).map_err(e)?;
                Ok(())
            }
            _ => Err(bad()),
        },
        Op::Concat(_) => {
            let axis = c.axes[0];
            macro_rules! cat {
                ($variant:ident, $o:expr) => {{
                    let mut inline: [(&[_], &[usize]); MAX_INLINE_PARTS] =
                        [(&[], &[]); MAX_INLINE_PARTS];
                    let mut heap = Vec::new();
                    for k in 0..n {
                        let Buf::$variant(x) = arg(k) else {
                            return Err(bad());
                        };
                        let part = (x, c.arg_dims[k].as_slice());
                        if n <= MAX_INLINE_PARTS {
                            inline[k] = part;
                        } else {
                            heap.push(part);
                        }
                    }
                    let parts = if n <= MAX_INLINE_PARTS {
                        &inline[..n]
                    } else {
                        &heap[..]
                    };
                    kernels::concat(parts, axis, $o).map_err(e)
                }};
            }
            match out {
                BufMut::F64(o) => cat!(F64, o),
                BufMut::F32(o) => cat!(F32, o),
                BufMut::I64(o) => cat!(I64, o),
                BufMut::Bool(o) => cat!(Bool, o),
            }
        }
        Op::Extract => {
            let xd = &c.arg_dims[0];
            let Buf::I64(ix) = arg(1) else {
                return Err(bad());
            };
            let i = ix[0];
            match (arg(0), out) {
                (Buf::F64(x), BufMut::F64(o)) => kernels::extract_row(x, xd, i, o),
                (Buf::F32(x), BufMut::F32(o)) => kernels::extract_row(x, xd, i, o),
                (Buf::I64(x), BufMut::I64(o)) => kernels::extract_row(x, xd, i, o),
                (Buf::Bool(x), BufMut::Bool(o)) => kernels::extract_row(x, xd, i, o),
                _ => return Err(bad()),
            }
            .map_err(e)
        }
        Op::Insert => {
            let xd = &c.arg_dims[1];
            let Buf::I64(ix) = arg(2) else {
                return Err(bad());
            };
            let i = ix[0];
            // A functional update: the tensor copied, then one row overwritten.
            match (arg(0), arg(1), out) {
                (Buf::F64(r), Buf::F64(x), BufMut::F64(o)) => insert(x, xd, i, r, o),
                (Buf::F32(r), Buf::F32(x), BufMut::F32(o)) => insert(x, xd, i, r, o),
                (Buf::I64(r), Buf::I64(x), BufMut::I64(o)) => insert(x, xd, i, r, o),
                (Buf::Bool(r), Buf::Bool(x), BufMut::Bool(o)) => insert(x, xd, i, r, o),
                _ => return Err(bad()),
            }
            .map_err(e)
        }
        Op::Exp | Op::Log | Op::Tanh | Op::Sigmoid => {
            use jitad_ir::vmath;
            let (f64k, f32k): (VecKernel<f64>, VecKernel<f32>) = match c.op {
                Op::Exp => (vmath::exp, vmath::exp_f32),
                Op::Log => (vmath::log, vmath::log_f32),
                Op::Tanh => (vmath::tanh, vmath::tanh_f32),
                _ => (vmath::sigmoid, vmath::sigmoid_f32),
            };
            match (arg(0), out) {
                (Buf::F64(x), BufMut::F64(o)) => f64k(x, o),
                (Buf::F32(x), BufMut::F32(o)) => f32k(x, o),
                _ => return Err(bad()),
            }
            .map_err(|e| e.to_string())
        }
        Op::Iota(..) => {
            let axis = c.axes[0];
            match out {
                BufMut::F64(o) => kernels::iota(o, od, axis),
                BufMut::F32(o) => kernels::iota(o, od, axis),
                BufMut::I64(o) => kernels::iota(o, od, axis),
                BufMut::Bool(_) => return Err(bad()),
            }
            .map_err(e)
        }
        _ => Err(bad()),
    }
}

/// A `jitad_ir::vmath` slice kernel.
type VecKernel<T> = fn(&[T], &mut [T]) -> Result<(), jitad_ir::vmath::LengthMismatch>;

fn insert<T: kernels::Element>(
    x: &[T],
    xd: &[usize],
    i: i64,
    row: &[T],
    out: &mut [T],
) -> Result<(), kernels::KernelError> {
    if x.len() != out.len() {
        return Err(kernels::KernelError::Length {
            what: "insert result",
            len: out.len(),
            dims: xd.to_vec(),
        });
    }
    out.copy_from_slice(x);
    kernels::insert_row(out, xd, i, row)
}

/// `matmul`, reading a transposed 2-D operand through swapped strides.
fn matmul<T: kernels::Real>(
    d: MatmulDims,
    trans: [bool; 2],
    a: &[T],
    b: &[T],
    out: &mut [T],
) -> Result<(), kernels::KernelError> {
    if trans == [false, false] {
        return kernels::matmul(d, a, b, out);
    }
    // Only unbatched products read transposed views (`crate::fusion`).
    let MatmulDims { m, k, n, .. } = d;
    let av = if trans[0] {
        // The buffer is the [k, m] matrix whose transpose is the operand.
        MatView::row_major(a, 0, m).t()
    } else {
        MatView::row_major(a, 0, k)
    };
    let bv = if trans[1] {
        MatView::row_major(b, 0, k).t()
    } else {
        MatView::row_major(b, 0, n)
    };
    kernels::gemm(m, k, n, av, bv, out, 0)
}

/// Copies `bytes` bytes from `src` to `dst` (a tensor returned from a workspace or
/// parameter buffer, or returned twice).
///
/// # Safety (of the callers: compiled code)
/// Both point to `bytes` valid bytes, in disjoint buffers.
pub(crate) extern "C" fn jitad_tensor_copy(dst: *mut u8, src: *const u8, bytes: u64) {
    // SAFETY: the contract above.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, bytes as usize) }
}

/// The symbol of [`jitad_tensor_copy`].
pub(crate) const TENSOR_COPY_SYMBOL: &str = "jitad_tensor_copy";

/// `fn(dst, src, bytes)`.
pub(crate) type TensorCopyFn = extern "C" fn(*mut u8, *const u8, u64);
