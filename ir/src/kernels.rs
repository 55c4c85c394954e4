//! Reference kernels for tensor ops, over plain slices and dimension lists.
//!
//! These are the semantics of jitad's tensor ops at run time: the interpreter calls them
//! and compiled code either calls them or must reproduce their results bit for bit. Each
//! kernel takes row-major buffers (see [`crate::layout`]) with their dimensions (`&[]`
//! for a scalar, held in a one-element slice), checks every length against the
//! dimensions first and returns [`KernelError`] on a mismatch, so no input makes one
//! panic. No kernel allocates per element; all run in time linear in their buffers
//! (GEMM aside).
//!
//! # Conventions
//! - **Order of evaluation** is fixed, so every engine gets the same bits: a reduction
//!   folds, for each result element, the reduced elements in row-major order of the
//!   operand, starting from the fold's identity (`-0.0` for float sums, which leaves
//!   every first term unchanged; `-∞`/`+∞` for max/min). Change the order here, and only
//!   here, if compiled code needs lane-parallel partial sums.
//! - **NaN** propagates: a sum, max, min, mean or logsumexp with a NaN among its terms is
//!   NaN. `max`/`min` fold [`crate::math`]'s IEEE 754-2019 `maximum`/`minimum` (the
//!   scalar `max`/`min` ops), so `max(-0, +0) = +0` and `min(-0, +0) = -0`.
//! - **logsumexp** is `s + log Σ exp(x − s)` with `s = max x` when finite and `s = 0`
//!   otherwise (JAX's rule): all terms `-∞` gives `-∞` (no NaN from `-∞ − -∞`), any
//!   `+∞` gives `+∞`, large finite terms do not overflow. `exp`/`log` are `math`'s (libm),
//!   the functions the scalar ops use.
//! - **Tie rule for AD** (documented here because the kernel defines what "the max" is):
//!   the adjoint of a `max`/`min` reduction is split evenly among every element equal to
//!   the result, `x̄ = ȳ·[x = y] / #{x = y}` (JAX's convention; `-0 = +0` counts as a
//!   tie). It is expressible with `eq`, `select`, `sum` and `div`, needs no arg-max, and
//!   is symmetric in the operand order. When the result is NaN no element equals it and
//!   the adjoint is NaN (0/0), flagging the NaN rather than hiding it.
//! - **i64** sums wrap (two's complement), like the scalar `add`.
//! - **Transcendentals**: elementwise `exp`, `log`, `tanh` and `sigmoid` over tensors are
//!   [`crate::vmath`]'s vectorised slice kernels, which compiled code calls too: `exp` and
//!   `log` bit-identical to libm (the scalar ops' [`crate::math`]), `tanh` and `sigmoid`
//!   within 2 ulp (measured against correctly rounded values: max 1.37 and 1.40 ulp;
//!   libm's `tanh` and the scalar `sigmoid` reach 2.1 and 2.3), so a tensor
//!   `tanh`/`sigmoid` may differ from the scalar op in the last bits.
//!   Scalars, the other elementwise functions and reductions' `exp`/`log` use libm.
//!
//! # GEMM: `private-gemm-x86`, `matrixmultiply` as the fallback, loops for vectors
//! [`gemm`] runs, in this order:
//! - **plain loops** for matrix × vector (`n = 1`), vector × matrix (`m = 1`) and outer
//!   products (`k = 1`) when the vector is contiguous: the libraries pack both operands
//!   first (`[256,256]·[256]`: `matrixmultiply` 36–48 µs, `private-gemm-x86` 30–40,
//!   `gemm` and `faer` 9–13 with dedicated AVX2+FMA paths; these SSE2 loops 17–18, no
//!   packing, no allocation);
//! - **`private-gemm-x86`** on x86-64 CPUs with AVX2 + FMA (or AVX-512F): the GEMM engine
//!   `faer` itself dispatches to on x86 for f32/f64, by the same author, as a crate of
//!   its own with three small dependencies (`raw-cpuid`, `num_cpus`, and build-time
//!   code generation). It packs into a **thread-local buffer** made on a thread's first
//!   product, so products allocate nothing per call (tested in
//!   `codegen/tests/no_alloc.rs`); it takes arbitrary row and column strides, writes `C`
//!   without reading it (`Accum::Replace`), runs on one thread when told so, and is
//!   deterministic (the same call gives the same bits: it picks kernels by shape,
//!   strides and CPU features only). Its API is raw pointers and the crate calls itself
//!   private (semver 0.1), so the version is pinned exactly (`=0.1.22`) and the one call
//!   site is below;
//! - **`matrixmultiply` 0.3** elsewhere (other architectures, x86 without FMA): portable,
//!   `ndarray`'s GEMM, one packing allocation per product.
//!
//! The pick is by measurement on the MLP shapes of issue #13 (batch 256, 64 inputs, 256
//! hidden; small: batch 32, 8 inputs, 16 hidden), the adjoint's products read through
//! strides (`ᵀ` = a transposed view, nothing materialised). f64, one thread, in one
//! process pinned with `taskset -c 1` (AMD EPYC Zen 3, AVX2 + FMA, no AVX-512), from a
//! scratch crate outside the repository; each library's 1 ms batches **interleaved**
//! with the others' (31 rounds), so load on the shared machine hits all four alike. µs
//! per call, median of the 31 batches (fastest batch in brackets), from the quietest of
//! four runs; in busier runs every figure rose and the four converged on the large
//! shapes (memory-bound under contention), but the order did not change:
//!
//! | product (f64)                              | matrixmultiply | gemm 0.19    | faer 0.24    | private-gemm-x86 0.1.22 |
//! |--------------------------------------------|----------------|--------------|--------------|-------------------------|
//! | MLP-M fwd 1: `[256,64]·[64,256]`           |      266 (248) |    211 (202) |    201 (192) |               204 (193) |
//! | MLP-M fwd 2: `[256,256]·[256,256]`         |     1010 (973) |    788 (758) |    797 (762) |               782 (756) |
//! | MLP-M out: `[256,256]·[256,1]`             |        38 (36) |    9.0 (8.7) |    9.0 (8.6) |                 32 (30) |
//! | MLP-M dW1 = Xᵀ·dH: `[256,64]ᵀ·[256,256]`   |      290 (273) |    251 (214) |    252 (220) |               230 (210) |
//! | MLP-M dW2 = Hᵀ·dH: `[256,256]ᵀ·[256,256]`  |    1060 (1002) |   1061 (839) |   1216 (942) |              1111 (880) |
//! | MLP-M dX = dH·W1ᵀ: `[256,256]·[64,256]ᵀ`   |      261 (249) |    199 (190) |    210 (198) |               204 (196) |
//! | MLP-M dH = dH·W2ᵀ: `[256,256]·[256,256]ᵀ`  |     1043 (977) |    818 (772) |    827 (769) |               839 (755) |
//! | small fwd: `[32,8]·[8,16]`                 |      0.5 (0.5) |    0.4 (0.4) |    0.4 (0.4) |               0.6 (0.6) |
//! | small dW = Xᵀ·dH: `[32,8]ᵀ·[32,16]`        |      0.4 (0.4) |    0.3 (0.3) |    0.2 (0.2) |               0.4 (0.4) |
//! | small dX = dH·Wᵀ: `[32,16]·[8,16]ᵀ`        |      0.6 (0.5) |    0.8 (0.7) |    0.4 (0.4) |               0.5 (0.5) |
//! | allocations per call (steady state)        |              1 |          0–2 |            0 |                       0 |
//!
//! Why this pick:
//! - speed: `gemm`, `faer` and `private-gemm-x86` are 15–25% faster than
//!   `matrixmultiply` on every MLP-M product (40–44 against 33–35 GFLOP/s at best);
//!   the products are four fifths of an MLP-M gradient. (An earlier comparison run
//!   without interleaving saw the transposed products favour `matrixmultiply`; that was
//!   load, not the libraries.) The small MLP's products take under a microsecond with
//!   any of them;
//! - allocation: `gemm` allocates its packing buffers and a flag vector per call (up to
//!   two allocations), `matrixmultiply` one; `faer` and `private-gemm-x86` none;
//! - weight: `faer` pulls 49 crates and minutes of compile time (a whole
//!   linear-algebra library) to reach the same engine; `private-gemm-x86` is three;
//! - risk: the raw-pointer API, a pinned private crate; the fallback keeps every other
//!   target on `matrixmultiply`, and [`gemm_backend`] says which one runs.
//!
//! Both APIs take raw pointers, so [`gemm`] checks that every addressed element lies in
//! the slices before the one `unsafe` call.

use crate::math::{f32m, f64m};
use crate::shape::{MatmulDims, Reduction};
use crate::types::MAX_RANK;

/// Why a kernel refused its arguments (a bug in the caller: verified programs never
/// produce these, but the kernels check rather than trust).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// A buffer whose length is not the element count of its dimensions.
    #[error("{what}: a buffer of {len} elements does not hold a tensor of shape {dims:?}")]
    Length {
        /// Which argument.
        what: &'static str,
        /// The buffer's length.
        len: usize,
        /// The dimensions it should hold.
        dims: Vec<usize>,
    },
    /// Dimensions that do not fit the op (broadcast, axes, permutation, ranges).
    #[error("{what}: shapes {a:?} and {b:?} do not fit")]
    Shape {
        /// Which op.
        what: &'static str,
        /// One shape.
        a: Vec<usize>,
        /// The other.
        b: Vec<usize>,
    },
    /// A dynamic index outside the leading axis.
    #[error("index {index} is out of range for a leading axis of length {len}")]
    Index {
        /// The index.
        index: i64,
        /// The axis length.
        len: usize,
    },
}

/// An element type the structural kernels move (every scalar type).
pub trait Element: Copy + PartialEq + std::fmt::Debug + Send + Sync + 'static {}
impl Element for f64 {}
impl Element for f32 {}
impl Element for i64 {}
impl Element for bool {}

/// A numeric element type: what `sum`, `max`, `min` and `iota` need.
pub trait Numeric: Element {
    /// The identity of `add` (`-0.0` for floats, so `-0.0 + x == x` bit for bit).
    const ADD_IDENTITY: Self;
    /// The identity of `max` (`-∞`, or `i64::MIN`).
    const MAX_IDENTITY: Self;
    /// The identity of `min` (`+∞`, or `i64::MAX`).
    const MIN_IDENTITY: Self;
    /// `a + b` (wrapping for `i64`).
    fn add(a: Self, b: Self) -> Self;
    /// IEEE 754-2019 `maximum` (the scalar `max` op).
    fn max(a: Self, b: Self) -> Self;
    /// IEEE 754-2019 `minimum` (the scalar `min` op).
    fn min(a: Self, b: Self) -> Self;
    /// An index as this type (`iota`); rounds to nearest for floats.
    fn from_index(i: usize) -> Self;
}

/// A float element type: what `mean`, `logsumexp` and `matmul` need.
pub trait Real:
    Numeric + std::ops::Sub<Output = Self> + std::ops::Mul<Output = Self> + std::ops::Div<Output = Self>
{
    /// Zero.
    const ZERO: Self;
    /// eˣ ([`crate::math`]'s).
    fn exp(x: Self) -> Self;
    /// ln x ([`crate::math`]'s).
    fn ln(x: Self) -> Self;
    /// True when neither infinite nor NaN.
    fn finite(x: Self) -> bool;
    /// C = A·B for strided matrices (see [`gemm`]).
    ///
    /// # Safety
    /// Every element addressed by the dimensions and strides lies inside the buffers
    /// the pointers come from, and `c` does not overlap `a` or `b`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

impl Numeric for i64 {
    const ADD_IDENTITY: Self = 0;
    const MAX_IDENTITY: Self = i64::MIN;
    const MIN_IDENTITY: Self = i64::MAX;
    fn add(a: Self, b: Self) -> Self {
        a.wrapping_add(b)
    }
    fn max(a: Self, b: Self) -> Self {
        Ord::max(a, b)
    }
    fn min(a: Self, b: Self) -> Self {
        Ord::min(a, b)
    }
    fn from_index(i: usize) -> Self {
        // Indices are below MAX_TENSOR_BYTES (2^40).
        i as i64
    }
}

macro_rules! real {
    ($t:ty, $m:ident, $gemm:path, $dtype:ident) => {
        impl Numeric for $t {
            const ADD_IDENTITY: Self = -0.0;
            const MAX_IDENTITY: Self = <$t>::NEG_INFINITY;
            const MIN_IDENTITY: Self = <$t>::INFINITY;
            fn add(a: Self, b: Self) -> Self {
                a + b
            }
            fn max(a: Self, b: Self) -> Self {
                $m::max(a, b)
            }
            fn min(a: Self, b: Self) -> Self {
                $m::min(a, b)
            }
            fn from_index(i: usize) -> Self {
                i as $t
            }
        }
        impl Real for $t {
            const ZERO: Self = 0.0;
            fn exp(x: Self) -> Self {
                $m::exp(x)
            }
            fn ln(x: Self) -> Self {
                $m::log(x)
            }
            fn finite(x: Self) -> bool {
                x.is_finite()
            }
            unsafe fn gemm_raw(
                m: usize,
                k: usize,
                n: usize,
                a: *const Self,
                rsa: isize,
                csa: isize,
                b: *const Self,
                rsb: isize,
                csb: isize,
                c: *mut Self,
                rsc: isize,
                csc: isize,
            ) {
                #[cfg(target_arch = "x86_64")]
                if let Some(instr) = x86_gemm_instr() {
                    use private_gemm_x86 as pg;
                    let alpha: $t = 1.0;
                    // SAFETY: forwarded from this function's contract: every element
                    // the dimensions and strides address lies in the buffers, and `c`
                    // overlaps neither operand. `Accum::Replace` writes `c` without
                    // reading it; no row/column index lists (null), no diagonal scaling
                    // (null), one thread; `alpha` outlives the call; `instr` was
                    // detected on this CPU.
                    unsafe {
                        pg::gemm(
                            pg::DType::$dtype,
                            pg::IType::U64,
                            instr,
                            m,
                            n,
                            k,
                            c.cast(),
                            rsc,
                            csc,
                            std::ptr::null(),
                            std::ptr::null(),
                            pg::DstKind::Full,
                            pg::Accum::Replace,
                            a.cast(),
                            rsa,
                            csa,
                            false,
                            std::ptr::null(),
                            0,
                            b.cast(),
                            rsb,
                            csb,
                            false,
                            (&raw const alpha).cast(),
                            1,
                        );
                    }
                    return;
                }
                // SAFETY: forwarded from this function's contract, which is exactly
                // matrixmultiply's (beta = 0, so `c` is only written).
                unsafe { $gemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, 0.0, c, rsc, csc) }
            }
        }
    };
}
real!(f64, f64m, matrixmultiply::dgemm, F64);
real!(f32, f32m, matrixmultiply::sgemm, F32);

/// Which GEMM [`gemm`] calls on this machine for products it does not handle itself:
/// `"private-gemm-x86 (AVX-512)"`, `"private-gemm-x86 (AVX2+FMA)"` (packing into a
/// thread-local buffer allocated on a thread's first product, so no allocation per
/// call after that) or `"matrixmultiply"` (one packing allocation per product).
pub fn gemm_backend() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    match x86_gemm_instr() {
        Some(private_gemm_x86::InstrSet::Avx512) => return "private-gemm-x86 (AVX-512)",
        Some(private_gemm_x86::InstrSet::Avx256) => return "private-gemm-x86 (AVX2+FMA)",
        None => {}
    }
    "matrixmultiply"
}

/// The instruction set `private-gemm-x86` runs with on this CPU (AVX-512F, or AVX2 with
/// FMA), or `None` (then `matrixmultiply` runs). Detected once per process (std caches
/// the CPUID query), so every call on one machine takes the same path.
#[cfg(target_arch = "x86_64")]
fn x86_gemm_instr() -> Option<private_gemm_x86::InstrSet> {
    if std::arch::is_x86_feature_detected!("avx512f") {
        Some(private_gemm_x86::InstrSet::Avx512)
    } else if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        Some(private_gemm_x86::InstrSet::Avx256)
    } else {
        None
    }
}

/// Checks that `buf` elements hold a tensor of `dims`: rank at most `MAX_RANK`, no
/// zero-size dimension (jitad has no empty tensors; see [`crate::layout`]).
fn check_len(what: &'static str, buf: usize, dims: &[usize]) -> Result<usize, KernelError> {
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d).filter(|_| d > 0));
    match n {
        Some(n) if n == buf && dims.len() <= MAX_RANK => Ok(n),
        _ => Err(KernelError::Length {
            what,
            len: buf,
            dims: dims.to_vec(),
        }),
    }
}

fn shape_err(what: &'static str, a: &[usize], b: &[usize]) -> KernelError {
    KernelError::Shape {
        what,
        a: a.to_vec(),
        b: b.to_vec(),
    }
}

/// Row-major strides (in elements) of `dims`; the caller has checked the element count.
fn row_major(dims: &[usize]) -> [usize; MAX_RANK] {
    let mut out = [0; MAX_RANK];
    let mut acc = 1;
    for (o, &d) in out[..dims.len()].iter_mut().zip(dims).rev() {
        *o = acc;
        acc *= d;
    }
    out
}

/// Walks the multi-indices of a shape in row-major order and yields, for each, `N`
/// offsets, each advancing by its own per-axis strides (0 on a broadcast axis).
/// Amortised O(1) per step, no allocation: an odometer that adds one stride per step
/// and rewinds an axis when it wraps. It drives broadcasting, transposes, slices and
/// pads.
#[derive(Clone, Debug)]
pub struct StridedIndex<const N: usize> {
    dims: [usize; MAX_RANK],
    rank: usize,
    strides: [[usize; MAX_RANK]; N],
    counter: [usize; MAX_RANK],
    offsets: [usize; N],
    remaining: usize,
}

impl<const N: usize> StridedIndex<N> {
    /// Walks `dims` (rank ≤ `MAX_RANK`) starting at `base` offsets with `strides[j]` the
    /// per-axis steps of offset `j`.
    pub fn new(dims: &[usize], base: [usize; N], strides: [[usize; MAX_RANK]; N]) -> Self {
        let mut d = [1; MAX_RANK];
        let rank = dims.len().min(MAX_RANK);
        d[..rank].copy_from_slice(&dims[..rank]);
        Self {
            dims: d,
            rank,
            strides,
            counter: [0; MAX_RANK],
            offsets: base,
            remaining: d[..rank].iter().product(),
        }
    }
}

impl<const N: usize> Iterator for StridedIndex<N> {
    type Item = [usize; N];

    fn next(&mut self) -> Option<[usize; N]> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let out = self.offsets;
        if self.remaining > 0 {
            // Advance the odometer: the last axis fastest.
            for ax in (0..self.rank).rev() {
                self.counter[ax] += 1;
                if self.counter[ax] < self.dims[ax] {
                    for (o, s) in self.offsets.iter_mut().zip(&self.strides) {
                        *o = o.wrapping_add(s[ax]);
                    }
                    break;
                }
                // Wrap: undo this axis' (dims − 1) steps and carry.
                self.counter[ax] = 0;
                for (o, s) in self.offsets.iter_mut().zip(&self.strides) {
                    *o = o.wrapping_sub(s[ax].wrapping_mul(self.dims[ax] - 1));
                }
            }
        }
        Some(out)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<const N: usize> ExactSizeIterator for StridedIndex<N> {}

/// The strides (in elements) with which an operand of `dims` is read when broadcast to
/// `out`: its row-major strides, right-aligned, and 0 on every broadcast axis. `None`
/// when `dims` does not broadcast to `out`.
pub fn broadcast_strides(dims: &[usize], out: &[usize]) -> Option<[usize; MAX_RANK]> {
    if dims.len() > out.len() || out.len() > MAX_RANK {
        return None;
    }
    let own = row_major(dims);
    let lead = out.len() - dims.len();
    let mut s = [0; MAX_RANK];
    for (i, &d) in dims.iter().enumerate() {
        let o = out[lead + i];
        if d == o {
            s[lead + i] = if d == 1 { 0 } else { own[i] };
        } else if d != 1 {
            return None;
        }
    }
    Some(s)
}

/// A broadcast over `out`, row by row: the walk over every axis but the last gives each
/// operand's offset at the start of a result row; along the row, operand `j` advances
/// by `inner[j]` (0 when broadcast, else 1); rows have `len` elements. Rows keep the
/// per-element work to one multiply-add per operand.
struct Rows<const N: usize> {
    outer: StridedIndex<N>,
    inner: [usize; N],
    len: usize,
}

fn broadcast_rows<const N: usize>(
    what: &'static str,
    operands: [&[usize]; N],
    out: &[usize],
) -> Result<Rows<N>, KernelError> {
    let mut strides = [[0; MAX_RANK]; N];
    for (s, dims) in strides.iter_mut().zip(operands) {
        *s = broadcast_strides(dims, out).ok_or_else(|| shape_err(what, dims, out))?;
    }
    let Some((&len, outer_dims)) = out.split_last() else {
        // A scalar result: one row of one element, every operand a scalar.
        return Ok(Rows {
            outer: StridedIndex::new(&[], [0; N], strides),
            inner: [0; N],
            len: 1,
        });
    };
    let inner = strides.map(|s| s[out.len() - 1]);
    Ok(Rows {
        outer: StridedIndex::new(outer_dims, [0; N], strides),
        inner,
        len,
    })
}

/// Elementwise unary map with broadcasting of `x` (dims `xd`) to `out` (dims `od`):
/// `broadcast` is `map1` with the identity.
pub fn map1<A: Element, O: Element>(
    x: &[A],
    xd: &[usize],
    out: &mut [O],
    od: &[usize],
    f: impl Fn(A) -> O,
) -> Result<(), KernelError> {
    check_len("operand", x.len(), xd)?;
    check_len("result", out.len(), od)?;
    if xd == od {
        for (o, &a) in out.iter_mut().zip(x) {
            *o = f(a);
        }
        return Ok(());
    }
    let Rows { outer, inner, len } = broadcast_rows("map1", [xd], od)?;
    for (row, [i]) in out.chunks_exact_mut(len).zip(outer) {
        for (t, o) in row.iter_mut().enumerate() {
            *o = f(x[i + t * inner[0]]);
        }
    }
    Ok(())
}

/// Elementwise binary map with NumPy broadcasting of both operands to `out`.
#[allow(clippy::too_many_arguments)]
pub fn map2<A: Element, B: Element, O: Element>(
    a: &[A],
    ad: &[usize],
    b: &[B],
    bd: &[usize],
    out: &mut [O],
    od: &[usize],
    f: impl Fn(A, B) -> O,
) -> Result<(), KernelError> {
    check_len("operand 0", a.len(), ad)?;
    check_len("operand 1", b.len(), bd)?;
    check_len("result", out.len(), od)?;
    if ad == od && bd == od {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = f(x, y);
        }
        return Ok(());
    }
    let Rows { outer, inner, len } = broadcast_rows("map2", [ad, bd], od)?;
    let [si, sj] = inner;
    for (row, [i, j]) in out.chunks_exact_mut(len).zip(outer) {
        for (t, o) in row.iter_mut().enumerate() {
            *o = f(a[i + t * si], b[j + t * sj]);
        }
    }
    Ok(())
}

/// Elementwise ternary map (`select`, `fma`) with broadcasting of all three operands.
#[allow(clippy::too_many_arguments)]
pub fn map3<A: Element, B: Element, C: Element, O: Element>(
    a: &[A],
    ad: &[usize],
    b: &[B],
    bd: &[usize],
    c: &[C],
    cd: &[usize],
    out: &mut [O],
    od: &[usize],
    f: impl Fn(A, B, C) -> O,
) -> Result<(), KernelError> {
    check_len("operand 0", a.len(), ad)?;
    check_len("operand 1", b.len(), bd)?;
    check_len("operand 2", c.len(), cd)?;
    check_len("result", out.len(), od)?;
    let Rows { outer, inner, len } = broadcast_rows("map3", [ad, bd, cd], od)?;
    let [si, sj, sk] = inner;
    for (row, [i, j, k]) in out.chunks_exact_mut(len).zip(outer) {
        for (t, o) in row.iter_mut().enumerate() {
            *o = f(a[i + t * si], b[j + t * sj], c[k + t * sk]);
        }
    }
    Ok(())
}

/// Kept dimensions, in a fixed array, and how many.
type Kept = ([usize; MAX_RANK], usize);

/// The result dimensions of reducing `axes` of `dims`, and the strides with which the
/// result is addressed while walking the operand (0 on reduced axes).
///
/// No allocation: kernels run inside compiled calls, which allocate nothing.
fn reduced(dims: &[usize], axes: &[usize]) -> Result<(Kept, [usize; MAX_RANK]), KernelError> {
    let mut mask = 0u32;
    for &a in axes {
        if a >= dims.len() || mask & (1 << a) != 0 {
            return Err(shape_err("reduce (axes)", dims, axes));
        }
        mask |= 1 << a;
    }
    if dims.len() > MAX_RANK {
        return Err(shape_err("reduce (rank)", dims, axes));
    }
    let mut kept = [0usize; MAX_RANK];
    let mut nk = 0;
    for (i, &d) in dims.iter().enumerate() {
        if mask & (1 << i) == 0 {
            kept[nk] = d;
            nk += 1;
        }
    }
    let ks = row_major(&kept[..nk]);
    let mut s = [0; MAX_RANK];
    let mut j = 0;
    for (i, si) in s[..dims.len()].iter_mut().enumerate() {
        if mask & (1 << i) == 0 {
            *si = ks[j];
            j += 1;
        }
    }
    Ok(((kept, nk), s))
}

/// Folds `f` over `axes` of `x` into `out` (already holding the identity), each result
/// element receiving its terms in row-major order.
fn fold_axes<T: Element, U: Element>(
    x: &[T],
    dims: &[usize],
    out_strides: [usize; MAX_RANK],
    out: &mut [U],
    f: impl Fn(U, T) -> U,
) {
    let walk = StridedIndex::new(dims, [0], [out_strides]);
    for (&v, [o]) in x.iter().zip(walk) {
        out[o] = f(out[o], v);
    }
}

/// `sum`, `max` or `min` of `x` (dims `xd`) over `axes` into `out` (the kept axes, in
/// order; one element when every axis is reduced).
pub fn reduce<T: Numeric>(
    red: NumericReduction,
    x: &[T],
    xd: &[usize],
    axes: &[usize],
    out: &mut [T],
) -> Result<(), KernelError> {
    check_len("operand", x.len(), xd)?;
    let ((kept, nk), os) = reduced(xd, axes)?;
    check_len("result", out.len(), &kept[..nk])?;
    let (id, f): (T, fn(T, T) -> T) = match red {
        NumericReduction::Sum => (T::ADD_IDENTITY, T::add),
        NumericReduction::Max => (T::MAX_IDENTITY, T::max),
        NumericReduction::Min => (T::MIN_IDENTITY, T::min),
    };
    out.fill(id);
    fold_axes(x, xd, os, out, f);
    Ok(())
}

/// The reductions every numeric type has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumericReduction {
    /// Σ.
    Sum,
    /// Folded IEEE `maximum`.
    Max,
    /// Folded IEEE `minimum`.
    Min,
}

/// Any reduction of a float tensor: `sum/max/min` as [`reduce`], `mean` as the sum
/// divided by the count of reduced elements, `logsumexp` max-shifted (see the module
/// docs). `scratch` has `out`'s length; only `logsumexp` uses it (for the sums), so the
/// kernel itself never allocates.
pub fn reduce_real<T: Real>(
    red: Reduction,
    x: &[T],
    xd: &[usize],
    axes: &[usize],
    out: &mut [T],
    scratch: &mut [T],
) -> Result<(), KernelError> {
    match red {
        Reduction::Sum => reduce(NumericReduction::Sum, x, xd, axes, out),
        Reduction::Max => reduce(NumericReduction::Max, x, xd, axes, out),
        Reduction::Min => reduce(NumericReduction::Min, x, xd, axes, out),
        Reduction::Mean => {
            reduce(NumericReduction::Sum, x, xd, axes, out)?;
            // The count is at most 2^40, exact in f64 and rounded once in f32.
            let n = T::from_index(x.len() / out.len().max(1));
            for o in out.iter_mut() {
                *o = *o / n;
            }
            Ok(())
        }
        Reduction::LogSumExp => {
            reduce(NumericReduction::Max, x, xd, axes, out)?;
            if scratch.len() != out.len() {
                return Err(KernelError::Length {
                    what: "logsumexp scratch",
                    len: scratch.len(),
                    dims: vec![out.len()],
                });
            }
            // The shift: the max when finite, else 0 (so -inf - -inf never happens).
            for o in out.iter_mut() {
                if !T::finite(*o) {
                    *o = T::ZERO;
                }
            }
            let (_, os) = reduced(xd, axes)?;
            scratch.fill(T::ADD_IDENTITY);
            let walk = StridedIndex::new(xd, [0], [os]);
            for (&v, [o]) in x.iter().zip(walk) {
                scratch[o] = T::add(scratch[o], T::exp(v - out[o]));
            }
            for (o, &s) in out.iter_mut().zip(scratch.iter()) {
                *o = T::add(*o, T::ln(s));
            }
            Ok(())
        }
    }
}

/// `transpose x, perm`: result axis `i` is axis `perm[i]` of `x`.
pub fn transpose<T: Element>(
    x: &[T],
    xd: &[usize],
    perm: &[usize],
    out: &mut [T],
) -> Result<(), KernelError> {
    check_len("operand", x.len(), xd)?;
    let inv_ok = perm.len() == xd.len() && crate::shape::inverse_permutation(perm).is_some();
    if !inv_ok {
        return Err(shape_err("transpose (perm)", xd, perm));
    }
    let xs = row_major(xd);
    let mut od = [0; MAX_RANK];
    let mut s = [0; MAX_RANK];
    for (i, &p) in perm.iter().enumerate() {
        od[i] = xd[p];
        s[i] = xs[p];
    }
    let od = &od[..perm.len()];
    check_len("result", out.len(), od)?;
    for (o, [i]) in out.iter_mut().zip(StridedIndex::new(od, [0], [s])) {
        *o = x[i];
    }
    Ok(())
}

/// `slice x [start:end:step, ...]`: one `(start, end, step)` per axis, each non-empty
/// and in bounds.
pub fn slice<T: Element>(
    x: &[T],
    xd: &[usize],
    ranges: &[(usize, usize, usize)],
    out: &mut [T],
) -> Result<(), KernelError> {
    check_len("operand", x.len(), xd)?;
    let bad = || shape_err("slice (ranges)", xd, &[ranges.len()]);
    if ranges.len() != xd.len() {
        return Err(bad());
    }
    let xs = row_major(xd);
    let mut od = [0; MAX_RANK];
    let mut s = [0; MAX_RANK];
    let mut base = 0;
    for (i, (&(start, end, step), &d)) in ranges.iter().zip(xd).enumerate() {
        if step == 0 || start >= end || end > d {
            return Err(bad());
        }
        od[i] = (end - start).div_ceil(step);
        s[i] = xs[i] * step;
        base += xs[i] * start;
    }
    let od = &od[..xd.len()];
    check_len("result", out.len(), od)?;
    for (o, [i]) in out.iter_mut().zip(StridedIndex::new(od, [base], [s])) {
        *o = x[i];
    }
    Ok(())
}

/// `pad x, v, [lo:hi, ...]`: `out` is `v` everywhere but the interior block, which is
/// `x`.
pub fn pad<T: Element>(
    x: &[T],
    xd: &[usize],
    value: T,
    widths: &[(usize, usize)],
    out: &mut [T],
) -> Result<(), KernelError> {
    check_len("operand", x.len(), xd)?;
    if widths.len() != xd.len() {
        return Err(shape_err("pad (widths)", xd, &[widths.len()]));
    }
    let mut od = [0; MAX_RANK];
    for (i, (&d, &(lo, hi))) in xd.iter().zip(widths).enumerate() {
        od[i] = d
            .checked_add(lo)
            .and_then(|v| v.checked_add(hi))
            .ok_or_else(|| shape_err("pad (widths)", xd, &[lo, hi]))?;
    }
    let od = &od[..xd.len()];
    check_len("result", out.len(), od)?;
    let os = row_major(od);
    let base: usize = widths.iter().zip(&os).map(|(&(lo, _), &s)| lo * s).sum();
    out.fill(value);
    for (&v, [o]) in x.iter().zip(StridedIndex::new(xd, [base], [os])) {
        out[o] = v;
    }
    Ok(())
}

/// `concat a, b, ..., axis`: operands of one rank agreeing off `axis`.
pub fn concat<T: Element>(
    operands: &[(&[T], &[usize])],
    axis: usize,
    out: &mut [T],
) -> Result<(), KernelError> {
    let Some(&(_, first)) = operands.first() else {
        return Err(shape_err("concat (no operands)", &[], &[]));
    };
    if axis >= first.len() || first.len() > MAX_RANK {
        return Err(shape_err("concat (axis)", first, &[axis]));
    }
    let mut od_buf = [0usize; MAX_RANK];
    let od = &mut od_buf[..first.len()];
    od.copy_from_slice(first);
    od[axis] = 0;
    for &(x, d) in operands {
        check_len("operand", x.len(), d)?;
        let agree = d.len() == first.len()
            && d.iter()
                .zip(first)
                .enumerate()
                .all(|(i, (a, b))| i == axis || a == b);
        if !agree {
            return Err(shape_err("concat", first, d));
        }
        od[axis] += d[axis];
    }
    check_len("result", out.len(), od)?;
    // Each operand contributes, for every index of the outer axes, one contiguous
    // chunk of `d[axis] × inner` elements.
    let outer: usize = first[..axis].iter().product();
    let inner: usize = first[axis + 1..].iter().product();
    let row = od[axis] * inner;
    let mut col = 0;
    for &(x, d) in operands {
        let w = d[axis] * inner;
        for o in 0..outer {
            out[o * row + col..o * row + col + w].copy_from_slice(&x[o * w..(o + 1) * w]);
        }
        col += w;
    }
    Ok(())
}

/// `iota : T, axis`: element `i` is `i[axis]`.
pub fn iota<T: Numeric>(out: &mut [T], od: &[usize], axis: usize) -> Result<(), KernelError> {
    check_len("result", out.len(), od)?;
    if axis >= od.len() {
        return Err(shape_err("iota (axis)", od, &[axis]));
    }
    let st = row_major(od)[axis];
    for (flat, o) in out.iter_mut().enumerate() {
        *o = T::from_index((flat / st) % od[axis]);
    }
    Ok(())
}

/// The element range of row `index` of a tensor with dims `xd`, or an index error.
fn row_range(xd: &[usize], index: i64) -> Result<std::ops::Range<usize>, KernelError> {
    let len = xd.first().copied().unwrap_or(0);
    let row: usize = xd.get(1..).map_or(1, |r| r.iter().product());
    match usize::try_from(index) {
        Ok(i) if i < len => Ok(i * row..(i + 1) * row),
        _ => Err(KernelError::Index { index, len }),
    }
}

/// `extract x [i]`: row (or element) `i` of `x`'s leading axis, copied into `out`.
pub fn extract_row<T: Element>(
    x: &[T],
    xd: &[usize],
    index: i64,
    out: &mut [T],
) -> Result<(), KernelError> {
    check_len("operand", x.len(), xd)?;
    if xd.is_empty() {
        return Err(shape_err("extract (rank 0)", xd, &[]));
    }
    check_len("result", out.len(), &xd[1..])?;
    out.copy_from_slice(&x[row_range(xd, index)?]);
    Ok(())
}

/// `insert v into x [i]`, in place: row (or element) `i` of `x` becomes `row`.
pub fn insert_row<T: Element>(
    x: &mut [T],
    xd: &[usize],
    index: i64,
    row: &[T],
) -> Result<(), KernelError> {
    check_len("operand", x.len(), xd)?;
    if xd.is_empty() {
        return Err(shape_err("insert (rank 0)", xd, &[]));
    }
    check_len("row", row.len(), &xd[1..])?;
    let r = row_range(xd, index)?;
    x[r].copy_from_slice(row);
    Ok(())
}

/// A strided matrix view for [`gemm`]: element `(i, j)` is `data[offset + i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatView<'a, T> {
    /// The buffer.
    pub data: &'a [T],
    /// Offset of element (0, 0).
    pub offset: usize,
    /// Row stride in elements.
    pub rs: usize,
    /// Column stride in elements.
    pub cs: usize,
}

impl<'a, T> MatView<'a, T> {
    /// A row-major `rows × cols` matrix starting at `offset`.
    pub fn row_major(data: &'a [T], offset: usize, cols: usize) -> Self {
        Self {
            data,
            offset,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of this view (swapped strides; no data moves).
    pub fn t(self) -> Self {
        Self {
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// True when every element of a `rows × cols` view lies in `data`.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        if rows == 0 || cols == 0 {
            return true;
        }
        let last = (rows - 1)
            .checked_mul(self.rs)
            .and_then(|r| {
                (cols - 1)
                    .checked_mul(self.cs)
                    .and_then(|c| r.checked_add(c))
            })
            .and_then(|rc| rc.checked_add(self.offset));
        last.is_some_and(|l| l < self.data.len())
    }
}

/// `C = A·B` with `A` an `m×k` view, `B` a `k×n` view, and `C` the row-major `m×n`
/// matrix at `c[c_offset..]`, overwritten. Strided views give the adjoint's `Aᵀ·B` and
/// `A·Bᵀ` without materialising a transpose ([`MatView::t`]). Deterministic: the same
/// inputs, dimensions and strides give the same bits on every call.
pub fn gemm<T: Real>(
    m: usize,
    k: usize,
    n: usize,
    a: MatView<'_, T>,
    b: MatView<'_, T>,
    c: &mut [T],
    c_offset: usize,
) -> Result<(), KernelError> {
    let c_view = MatView::row_major(&*c, c_offset, n);
    if !a.fits(m, k) || !b.fits(k, n) || !c_view.fits(m, n) {
        return Err(shape_err("gemm (views)", &[m, k], &[k, n]));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if small_product(m, k, n, a, b, c, c_offset) {
        return Ok(());
    }
    let stride = |s: usize| isize::try_from(s).map_err(|_| shape_err("gemm (strides)", &[s], &[]));
    let (rsa, csa, rsb, csb, rsc) = (
        stride(a.rs)?,
        stride(a.cs)?,
        stride(b.rs)?,
        stride(b.cs)?,
        stride(n)?,
    );
    // SAFETY: `fits` checked that every element the dimensions and strides address lies
    // inside `a.data`, `b.data` and `c` (offsets included), and `c` is a unique borrow,
    // so it overlaps neither shared operand.
    unsafe {
        T::gemm_raw(
            m,
            k,
            n,
            a.data.as_ptr().add(a.offset),
            rsa,
            csa,
            b.data.as_ptr().add(b.offset),
            rsb,
            csb,
            c.as_mut_ptr().add(c_offset),
            rsc,
            1,
        );
    }
    Ok(())
}

/// Matrix × vector, vector × matrix and outer products, in plain loops: a GEMM library
/// packs both operands for these and gains little (`[256,256]·[256]`: 17–18 µs here,
/// 13 µs with the matrix transposed, against 36–48 for `matrixmultiply` and 30–40 for
/// `private-gemm-x86`; a `[256]·[256]ᵀ` outer product 11–13 µs; these timings predate
/// the stride-independent order below). Handles `n = 1`, `m = 1` and `k = 1` with any
/// strides, `k ≥ 1`; returns false, writing nothing, for every other product. The
/// caller has checked that the views fit. Each output sums its terms in ascending `p`
/// whatever the layout, so a product read through a transposed view gives the bits of
/// the materialised product (the JIT passes views, the interpreter materialises: the
/// fuzzer found the two disagreeing in the last bit when the order followed the
/// layout). The library GEMM gives the same bits for transposed and materialised
/// operands on the shapes tested (`gemm_bits_do_not_depend_on_strides`).
fn small_product<T: Real>(
    m: usize,
    k: usize,
    n: usize,
    a: MatView<'_, T>,
    b: MatView<'_, T>,
    c: &mut [T],
    c_offset: usize,
) -> bool {
    if k == 0 {
        return false;
    }
    let at = |i: usize, p: usize| a.data[a.offset + i * a.rs + p * a.cs];
    let bt = |p: usize, j: usize| b.data[b.offset + p * b.rs + j * b.cs];
    if k == 1 {
        // Outer product: each element one rounded product.
        for (i, row) in c[c_offset..][..m * n].chunks_exact_mut(n).enumerate() {
            let ai = at(i, 0);
            if b.cs == 1 {
                for (o, &bj) in row.iter_mut().zip(&b.data[b.offset..][..n]) {
                    *o = ai * bj;
                }
            } else {
                for (j, o) in row.iter_mut().enumerate() {
                    *o = ai * bt(0, j);
                }
            }
        }
        return true;
    }
    // Matrix × vector and vector × matrix: every output is Σₚ in ascending `p`, the
    // first product unadded — one order whatever the strides, so a product read through
    // a transposed view (the JIT's) has the bits of the materialised one (the
    // interpreter's).
    if n == 1 {
        let out = &mut c[c_offset..][..m];
        if a.rs == 1 && b.rs == 1 {
            // A's columns contiguous: accumulate column after column.
            let bv = &b.data[b.offset..][..k];
            for (p, &bp) in bv.iter().enumerate() {
                axpy(p == 0, bp, &a.data[a.offset + p * a.cs..][..m], out);
            }
            return true;
        }
        // Four rows at a time: four independent chains, each in `p` order.
        let mut i = 0;
        while i + 4 <= m {
            let mut acc = [
                at(i, 0) * bt(0, 0),
                at(i + 1, 0) * bt(0, 0),
                at(i + 2, 0) * bt(0, 0),
                at(i + 3, 0) * bt(0, 0),
            ];
            for p in 1..k {
                let bp = bt(p, 0);
                for (r, s) in acc.iter_mut().enumerate() {
                    *s = T::add(*s, at(i + r, p) * bp);
                }
            }
            out[i..i + 4].copy_from_slice(&acc);
            i += 4;
        }
        for (r, o) in out.iter_mut().enumerate().skip(i) {
            let mut s = at(r, 0) * bt(0, 0);
            for p in 1..k {
                s = T::add(s, at(r, p) * bt(p, 0));
            }
            *o = s;
        }
        return true;
    }
    if m == 1 {
        // Row vector × matrix: accumulate B's rows (p ascending).
        let out = &mut c[c_offset..][..n];
        for p in 0..k {
            if b.cs == 1 {
                axpy(p == 0, at(0, p), &b.data[b.offset + p * b.rs..][..n], out);
            } else {
                let ap = at(0, p);
                for (j, o) in out.iter_mut().enumerate() {
                    *o = if p == 0 {
                        ap * bt(p, j)
                    } else {
                        T::add(*o, ap * bt(p, j))
                    };
                }
            }
        }
        return true;
    }
    false
}

/// `out = s·x` when `first`, else `out += s·x` (elementwise, one rounding per step).
fn axpy<T: Real>(first: bool, s: T, x: &[T], out: &mut [T]) {
    if first {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = s * v;
        }
    } else {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = T::add(*o, s * v);
        }
    }
}

/// `matmul a, b` for the ranks [`crate::shape::matmul_dims`] accepts, all operands
/// row-major; `dims` comes from that function.
pub fn matmul<T: Real>(
    dims: MatmulDims,
    a: &[T],
    b: &[T],
    out: &mut [T],
) -> Result<(), KernelError> {
    let MatmulDims {
        batch,
        m,
        k,
        n,
        a_batch_stride,
        b_batch_stride,
    } = dims;
    let need = |what, len: usize, count: Option<usize>| match count {
        Some(c) if c == len => Ok(()),
        _ => Err(KernelError::Length {
            what,
            len,
            dims: vec![batch, m, k, n],
        }),
    };
    let b_batches = if b_batch_stride == 0 { 1 } else { batch };
    need(
        "matmul lhs",
        a.len(),
        batch.checked_mul(m).and_then(|x| x.checked_mul(k)),
    )?;
    need(
        "matmul rhs",
        b.len(),
        b_batches.checked_mul(k).and_then(|x| x.checked_mul(n)),
    )?;
    need(
        "matmul result",
        out.len(),
        batch.checked_mul(m).and_then(|x| x.checked_mul(n)),
    )?;
    for i in 0..batch {
        let av = MatView::row_major(a, i * a_batch_stride, k);
        let bv = MatView::row_major(b, i * b_batch_stride, n);
        gemm(m, k, n, av, bv, out, i * m * n)?;
    }
    Ok(())
}

/// `dot a, b` = Σ aᵢbᵢ, summed left to right from `-0.0` (a fixed order, as for `sum`).
pub fn dot<T: Real + std::ops::Mul<Output = T>>(a: &[T], b: &[T]) -> Result<T, KernelError> {
    if a.len() != b.len() {
        return Err(shape_err("dot", &[a.len()], &[b.len()]));
    }
    Ok(a.iter()
        .zip(b)
        .fold(T::ADD_IDENTITY, |s, (&x, &y)| T::add(s, x * y)))
}
