//! The tensor workloads of the benchmark suite: the MLP at full size ("MLP-M": batch
//! 256, 64 inputs, two tanh layers of 256, a linear output, mean squared error) and
//! extended Rosenbrock written with array ops, each with a hand-written value+gradient.
//!
//! Each workload comes as a traced tensor function (so the JIT and the interpreter run
//! its gradient) and as the reference a careful Rust programmer would write:
//! [`MlpHand`] (GEMM through [`jitad_ir::kernels::gemm`], the library the JIT calls,
//! behind a bounds check, transposes as strides, plain loops for the rest, `tanh` by
//! [`HandTanh`], buffers allocated once), [`MlpLoops`] for small shapes (plain loops
//! only) and [`crate::problems::rosenbrock_grad_fused`] (one pass). [`mlp_cases`],
//! [`mlp_small_cases`] and [`rosenbrock_cases`] set up every leg on the same inputs for
//! `benches/gradients.rs`; the tests check the legs agree (JIT and interpreter bit for
//! bit, the hand-written code within rounding).
//!
//! Parameter layout: the MLP's parameters are one flat vector `w1 (inputs×hidden), b1
//! (hidden), w2 (hidden×hidden), b2 (hidden), w3 (hidden), b3 (1)`, row-major, the order
//! of the traced function's first six parameters; a gradient has the same layout.

use crate::suite::Leg;
use crate::{Error, Tensor, Traced};
use jitad_codegen::Compiled;
use jitad_ir::kernels::{gemm, KernelError, MatView};
use jitad_ir::tensor::Tensor as Buffer;
use jitad_ir::{Interpreter, ScalarType, Shape, Type, Val};

/// The shape of an MLP: `batch` rows of `inputs` features, two tanh layers of `hidden`
/// units, one linear output per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MlpShape {
    /// Rows per batch.
    pub batch: usize,
    /// Features per row.
    pub inputs: usize,
    /// Units per hidden layer.
    pub hidden: usize,
}

impl MlpShape {
    /// MLP-M of issue #13 (the shape `benches/peers/jax_peers.py` times in JAX).
    pub const M: MlpShape = MlpShape {
        batch: 256,
        inputs: 64,
        hidden: 256,
    };

    /// The small MLP of issue #13 (`jax_peers.py`'s "mlp-small").
    pub const SMALL: MlpShape = MlpShape {
        batch: 32,
        inputs: 8,
        hidden: 16,
    };

    /// Dimensions of the six parameters `w1, b1, w2, b2, w3, b3` (`b3` a scalar).
    pub fn param_dims(&self) -> [Vec<usize>; 6] {
        let (d, h) = (self.inputs, self.hidden);
        [vec![d, h], vec![h], vec![h, h], vec![h], vec![h], vec![]]
    }

    /// Element counts of the six parameters.
    pub fn param_lens(&self) -> [usize; 6] {
        self.param_dims().map(|d| d.iter().product())
    }

    /// Total parameter count (the length of a flat parameter vector).
    pub fn num_params(&self) -> usize {
        self.param_lens().iter().sum()
    }

    /// Parameters uniform in ±1/√fan-in for the weights, biases zero, from `seed`.
    pub fn init(&self, seed: u64) -> Vec<f64> {
        let mut rng = Rng::new(seed);
        let (sd, sh) = (
            1.0 / (self.inputs as f64).sqrt(),
            1.0 / (self.hidden as f64).sqrt(),
        );
        let scales = [sd, 0.0, sh, 0.0, sh, 0.0];
        let mut p = Vec::with_capacity(self.num_params());
        for (len, scale) in self.param_lens().into_iter().zip(scales) {
            p.extend((0..len).map(|_| scale * rng.uniform()));
        }
        p
    }

    /// The example values the function is traced at: the parameters `p` (flat), a batch
    /// `x` (batch×inputs, row-major) and targets `y` (batch), as the eight arguments.
    pub fn args(&self, p: &[f64], x: &[f64], y: &[f64]) -> Result<Vec<Val>, WorkloadError> {
        let mut out = Vec::with_capacity(8);
        let mut rest = p;
        for dims in self.param_dims() {
            let len: usize = dims.iter().product();
            let (head, tail) = rest
                .split_at_checked(len)
                .ok_or_else(|| length("mlp parameters", p.len(), self.num_params()))?;
            out.push(if dims.is_empty() {
                Val::F64(head[0])
            } else {
                Val::tensor(buffer("mlp parameter", &dims, head)?)
            });
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(length("mlp parameters", p.len(), self.num_params()));
        }
        out.push(Val::tensor(buffer(
            "batch inputs",
            &[self.batch, self.inputs],
            x,
        )?));
        out.push(Val::tensor(buffer("batch targets", &[self.batch], y)?));
        Ok(out)
    }

    /// The types of the eight arguments `w1, b1, w2, b2, w3, b3, x, y` (those of
    /// [`MlpShape::args`]).
    pub fn arg_types(&self) -> Result<Vec<Type>, WorkloadError> {
        let mut dims: Vec<Vec<usize>> = self.param_dims().into();
        dims.push(vec![self.batch, self.inputs]);
        dims.push(vec![self.batch]);
        dims.into_iter()
            .map(|d| match d.as_slice() {
                [] => Ok(Type::F64),
                d => f64_type("mlp argument", d),
            })
            .collect()
    }

    /// The loss traced with tensor ops: `@mlp(w1, b1, w2, b2, w3, b3, x, y) -> f64`,
    /// `mean((tanh(tanh(x·w1 + b1)·w2 + b2)·w3 + b3 − y)²)`. The batch is a parameter,
    /// not a constant of the trace. Tracing evaluates the example once (an eager
    /// trace); [`MlpShape::trace_abstract`] records the same IR from the shape alone.
    pub fn trace(&self, p: &[f64], x: &[f64], y: &[f64]) -> Result<Traced, WorkloadError> {
        Ok(crate::trace_tensors("mlp", &self.args(p, x, y)?, |a| {
            vec![mlp_loss(a)]
        })?)
    }

    /// [`MlpShape::trace`] from the argument types alone (an abstract trace: no kernel
    /// runs, so it costs the same at any batch size), recording the same IR.
    pub fn trace_abstract(&self) -> Result<Traced, WorkloadError> {
        Ok(crate::trace_tensors_abstract(
            "mlp",
            &self.arg_types()?,
            |a| vec![mlp_loss(a)],
        )?)
    }
}

/// The MLP loss on traced tensors `[w1, b1, w2, b2, w3, b3, x, y]`.
fn mlp_loss(a: &[Tensor]) -> Tensor {
    let [w1, b1, w2, b2, w3, b3, x, y] = a else {
        // trace_tensors passes one tensor per example argument: eight.
        return Tensor::from(f64::NAN);
    };
    let a1 = (x.matmul(w1) + b1).tanh();
    let a2 = (a1.matmul(w2) + b2).tanh();
    let e = a2.matmul(w3) + b3 - y;
    (&e * &e).mean(&[0])
}

/// The value+gradient of the MLP loss with respect to its six parameters:
/// `(w1, ..., b3, x, y) -> (loss, ∂w1, ..., ∂b3)`, optimised. Traced abstractly from
/// `shape` (the IR does not depend on the values).
pub fn mlp_grad(shape: MlpShape) -> Result<Traced, WorkloadError> {
    Ok(shape.trace_abstract()?.grad_wrt(&[0, 1, 2, 3, 4, 5])?)
}

/// Why a workload could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// A buffer whose length does not fit the workload's shape.
    #[error("{what}: {len} elements, expected {expected}")]
    Length {
        /// Which buffer.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The length the shape needs.
        expected: usize,
    },
    /// Dimensions no tensor type has (a zero, or more elements than a tensor holds).
    #[error("{what}: no tensor has the dimensions {dims:?}")]
    Dims {
        /// Which tensor.
        what: &'static str,
        /// The dimensions asked for.
        dims: Vec<usize>,
    },
    /// A compiled function that is not a value+gradient this module can call.
    #[error("@{func} is not a value+gradient of at most {MAX_BUFFERS} buffers")]
    Signature {
        /// The function.
        func: String,
    },
    /// Tracing, AD or compilation failed.
    #[error(transparent)]
    Jitad(#[from] Error),
}

fn length(what: &'static str, len: usize, expected: usize) -> WorkloadError {
    WorkloadError::Length {
        what,
        len,
        expected,
    }
}

/// The type `f64[dims]`, or [`WorkloadError::Dims`].
fn f64_type(what: &'static str, dims: &[usize]) -> Result<Type, WorkloadError> {
    let ty = Shape::new(dims)
        .filter(|_| !dims.contains(&0))
        .map(|s| Type::Tensor(ScalarType::F64, s));
    let fits = ty.is_some_and(|t| jitad_ir::layout::Layout::of(t).is_ok());
    match ty {
        Some(t) if fits => Ok(t),
        _ => Err(WorkloadError::Dims {
            what,
            dims: dims.to_vec(),
        }),
    }
}

fn buffer(what: &'static str, dims: &[usize], data: &[f64]) -> Result<Buffer, WorkloadError> {
    Buffer::f64(dims, data.to_vec()).map_err(|_| length(what, data.len(), dims.iter().product()))
}

/// A deterministic generator (splitmix64) of values uniform in [−1, 1), so workloads
/// need no RNG crate and every run sees the same data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next value, uniform in [−1, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    /// The next index below `n` (`n > 0`; a slight modulo bias is harmless here).
    pub fn below(&mut self, n: usize) -> usize {
        let u = (self.uniform() + 1.0) * 0.5;
        ((u * n as f64) as usize).min(n.saturating_sub(1))
    }
}

/// Which `tanh` a hand-written MLP calls: the standard library's (`f64::tanh`, libm,
/// one call per element) or [`jitad_ir::vmath::tanh_in_place`] (the kernel jitad's
/// tensor `tanh` runs, several times faster; the stronger baseline).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandTanh {
    /// `f64::tanh` per element.
    Std,
    /// `jitad_ir::vmath::tanh_in_place` over each layer.
    Vmath,
}

/// Hand-written value and gradient of the MLP loss with every buffer allocated once, in
/// [`MlpHand::new`]: the forward pass keeps both layers' activations, the backward pass
/// overwrites them with their adjoints. The five products are GEMMs through
/// [`jitad_ir::kernels::gemm`] (the library the JIT calls, the transposed operands of
/// the adjoint read through strides; matrix × vector in its plain loops); bias, tanh,
/// the error and the column sums are plain loops. Nothing is allocated per call.
#[derive(Clone, Debug)]
pub struct MlpHand {
    shape: MlpShape,
    tanh: HandTanh,
    buf: MlpBuffers,
}

/// A hand-written MLP's per-call buffers (allocated once): both activations, the
/// error, and the first layer's adjoint.
#[derive(Clone, Debug)]
struct MlpBuffers {
    a1: Vec<f64>,
    a2: Vec<f64>,
    e: Vec<f64>,
    d1: Vec<f64>,
}

impl MlpBuffers {
    fn new(shape: MlpShape) -> Self {
        let bh = shape.batch * shape.hidden;
        MlpBuffers {
            a1: vec![0.0; bh],
            a2: vec![0.0; bh],
            e: vec![0.0; shape.batch],
            d1: vec![0.0; bh],
        }
    }
}

/// Checks the lengths of a hand-written MLP's arguments against `shape`.
fn check_mlp_lengths(
    shape: MlpShape,
    p: &[f64],
    x: &[f64],
    y: &[f64],
    g: &[f64],
) -> Result<(), KernelError> {
    let np = shape.num_params();
    for (what, len, want) in [
        ("parameters", p.len(), np),
        ("gradient", g.len(), np),
        ("batch inputs", x.len(), shape.batch * shape.inputs),
        ("batch targets", y.len(), shape.batch),
    ] {
        if len != want {
            return Err(KernelError::Length {
                what,
                len,
                dims: vec![want],
            });
        }
    }
    Ok(())
}

impl MlpHand {
    /// Buffers for `shape`, with [`HandTanh::Vmath`].
    pub fn new(shape: MlpShape) -> Self {
        Self::with_tanh(shape, HandTanh::Vmath)
    }

    /// Buffers for `shape`, calling `tanh`.
    pub fn with_tanh(shape: MlpShape, tanh: HandTanh) -> Self {
        MlpHand {
            shape,
            tanh,
            buf: MlpBuffers::new(shape),
        }
    }

    /// The loss at parameters `p` (flat, see the module docs) on the batch `x`
    /// (batch×inputs, row-major) with targets `y`, and its gradient with respect to `p`
    /// written to `g` (same layout). Fails, naming the argument, when a length does not
    /// fit the shape.
    pub fn value_grad(
        &mut self,
        p: &[f64],
        x: &[f64],
        y: &[f64],
        g: &mut [f64],
    ) -> Result<f64, KernelError> {
        let MlpShape {
            batch: b,
            inputs: d,
            hidden: h,
        } = self.shape;
        check_mlp_lengths(self.shape, p, x, y, g)?;
        let [w1, b1, w2, b2, w3, b3] = split_params(self.shape, p);
        let [gw1, gb1, gw2, gb2, gw3, gb3] = split_params_mut(self.shape, g);
        let MlpBuffers { a1, a2, e, d1 } = &mut self.buf;

        // Forward: a1 = tanh(x·w1 + b1), a2 = tanh(a1·w2 + b2), e = a2·w3 + b3 − y.
        gemm(b, d, h, rm(x, d), rm(w1, h), a1, 0)?;
        bias_tanh(a1, b1, self.tanh);
        gemm(b, h, h, rm(a1, h), rm(w2, h), a2, 0)?;
        bias_tanh(a2, b2, self.tanh);
        gemm(b, h, 1, rm(a2, h), rm(w3, 1), e, 0)?;
        let mut sum = 0.0;
        for (ei, yi) in e.iter_mut().zip(y) {
            *ei = *ei + b3[0] - yi;
            sum += *ei * *ei;
        }
        let inv_b = 1.0 / b as f64;
        let loss = sum * inv_b;

        // Backward. ē = 2e/B; ∂b3 = Σ ē; ∂w3 = a2ᵀ·ē.
        let mut gsum = 0.0;
        for ei in e.iter_mut() {
            *ei *= 2.0 * inv_b;
            gsum += *ei;
        }
        gb3[0] = gsum;
        gemm(h, b, 1, rm(a2, h).t(), rm(e, 1), gw3, 0)?;
        // z̄2 = ē·w3ᵀ ⊙ (1 − a2²), in place of a2.
        for (row, &ei) in a2.chunks_exact_mut(h).zip(e.iter()) {
            for (a, &w) in row.iter_mut().zip(w3) {
                *a = ei * w * (1.0 - *a * *a);
            }
        }
        col_sums(a2, gb2);
        // ∂w2 = a1ᵀ·z̄2; ā1 = z̄2·w2ᵀ; z̄1 = ā1 ⊙ (1 − a1²), in place of a1.
        gemm(h, b, h, rm(a1, h).t(), rm(a2, h), gw2, 0)?;
        gemm(b, h, h, rm(a2, h), rm(w2, h).t(), d1, 0)?;
        for (a, &da) in a1.iter_mut().zip(d1.iter()) {
            *a = da * (1.0 - *a * *a);
        }
        col_sums(a1, gb1);
        // ∂w1 = xᵀ·z̄1.
        gemm(d, b, h, rm(x, d).t(), rm(a1, h), gw1, 0)?;
        Ok(loss)
    }
}

/// The row-major matrix of `cols` columns in `data`, for [`gemm`].
fn rm(data: &[f64], cols: usize) -> MatView<'_, f64> {
    MatView::row_major(data, 0, cols)
}

/// `m[r, j] = tanh(m[r, j] + bias[j])` for every row of the row-major `m`.
fn bias_tanh(m: &mut [f64], bias: &[f64], tanh: HandTanh) {
    match tanh {
        HandTanh::Std => {
            for row in m.chunks_exact_mut(bias.len()) {
                for (v, &c) in row.iter_mut().zip(bias) {
                    *v = (*v + c).tanh();
                }
            }
        }
        HandTanh::Vmath => {
            for row in m.chunks_exact_mut(bias.len()) {
                for (v, &c) in row.iter_mut().zip(bias) {
                    *v += c;
                }
            }
            jitad_ir::vmath::tanh_in_place(m);
        }
    }
}

/// Hand-written value and gradient of the MLP loss in plain loops, no GEMM library: the
/// reference for small shapes (issue #13's small MLP: batch 32, 8 inputs, 16 hidden),
/// where a library's packing and dispatch cost more than the arithmetic. Loops run in
/// memory order (the inner loop always over a contiguous row, so it vectorises):
/// products as row updates `out[r, :] += s·w[k, :]` or row dot products, `tanh` by
/// [`jitad_ir::vmath::tanh_in_place`] over each layer (what a user of jitad would
/// call; several times faster than `f64::tanh`). Buffers allocated once in
/// [`MlpLoops::new`]; nothing per call.
#[derive(Clone, Debug)]
pub struct MlpLoops {
    shape: MlpShape,
    buf: MlpBuffers,
}

/// `p` (checked to hold [`MlpShape::num_params`] values) as `[w1, b1, w2, b2, w3, b3]`.
fn split_params(s: MlpShape, p: &[f64]) -> [&[f64]; 6] {
    let (d, h) = (s.inputs, s.hidden);
    let (w1, rest) = p.split_at(d * h);
    let (b1, rest) = rest.split_at(h);
    let (w2, rest) = rest.split_at(h * h);
    let (b2, rest) = rest.split_at(h);
    let (w3, b3) = rest.split_at(h);
    [w1, b1, w2, b2, w3, b3]
}

/// [`split_params`] of a gradient buffer.
fn split_params_mut(s: MlpShape, g: &mut [f64]) -> [&mut [f64]; 6] {
    let (d, h) = (s.inputs, s.hidden);
    let (w1, rest) = g.split_at_mut(d * h);
    let (b1, rest) = rest.split_at_mut(h);
    let (w2, rest) = rest.split_at_mut(h * h);
    let (b2, rest) = rest.split_at_mut(h);
    let (w3, b3) = rest.split_at_mut(h);
    [w1, b1, w2, b2, w3, b3]
}

impl MlpLoops {
    /// Buffers for `shape`.
    pub fn new(shape: MlpShape) -> Self {
        MlpLoops {
            shape,
            buf: MlpBuffers::new(shape),
        }
    }

    /// As [`MlpHand::value_grad`]: the loss, and its gradient written to `g`.
    pub fn value_grad(
        &mut self,
        p: &[f64],
        x: &[f64],
        y: &[f64],
        g: &mut [f64],
    ) -> Result<f64, KernelError> {
        let MlpShape {
            batch: b,
            inputs: d,
            hidden: h,
        } = self.shape;
        check_mlp_lengths(self.shape, p, x, y, g)?;
        let [w1, b1, w2, b2, w3, b3] = split_params(self.shape, p);
        let [gw1, gb1, gw2, gb2, gw3, gb3] = split_params_mut(self.shape, g);
        let MlpBuffers { a1, a2, e, d1 } = &mut self.buf;

        // Forward: a1 = tanh(b1 + x·w1), a2 = tanh(b2 + a1·w2), e = a2·w3 + b3 − y.
        dense(x, d, w1, b1, a1);
        jitad_ir::vmath::tanh_in_place(a1);
        dense(a1, h, w2, b2, a2);
        jitad_ir::vmath::tanh_in_place(a2);
        let inv_b = 1.0 / b as f64;
        let mut sum = 0.0;
        for ((ei, row), &yi) in e.iter_mut().zip(a2.chunks_exact(h)).zip(y) {
            *ei = dot(row, w3) + b3[0] - yi;
            sum += *ei * *ei;
        }
        let loss = sum * inv_b;

        // Backward. ē = 2e/B; ∂b3 = Σ ē; ∂w3 = Σ_r ē_r·a2[r, :].
        let mut gsum = 0.0;
        for ei in e.iter_mut() {
            *ei *= 2.0 * inv_b;
            gsum += *ei;
        }
        gb3[0] = gsum;
        gw3.fill(0.0);
        for (row, &ei) in a2.chunks_exact(h).zip(e.iter()) {
            axpy(gw3, ei, row);
        }
        // z̄2 = ē·w3ᵀ ⊙ (1 − a2²), in place of a2; ∂b2 its column sums.
        for (row, &ei) in a2.chunks_exact_mut(h).zip(e.iter()) {
            for (a, &w) in row.iter_mut().zip(w3) {
                *a = ei * w * (1.0 - *a * *a);
            }
        }
        col_sums(a2, gb2);
        // ∂w2 = a1ᵀ·z̄2 (row updates); ā1[r, k] = z̄2[r, :]·w2[k, :]; z̄1 = ā1 ⊙ (1 − a1²).
        outer_sum(a1, h, a2, gw2);
        for (drow, zrow) in d1.chunks_exact_mut(h).zip(a2.chunks_exact(h)) {
            for (dv, wrow) in drow.iter_mut().zip(w2.chunks_exact(h)) {
                *dv = dot(zrow, wrow);
            }
        }
        for (a, &da) in a1.iter_mut().zip(d1.iter()) {
            *a = da * (1.0 - *a * *a);
        }
        col_sums(a1, gb1);
        // ∂w1 = xᵀ·z̄1 (row updates).
        outer_sum(x, d, a1, gw1);
        Ok(loss)
    }
}

/// `out[r, :] = bias + Σ_k inp[r, k]·w[k, :]` (row-major; `inp` has `k_dim` columns,
/// `w` and `out` have `bias.len()`).
fn dense(inp: &[f64], k_dim: usize, w: &[f64], bias: &[f64], out: &mut [f64]) {
    let n = bias.len();
    for (orow, irow) in out.chunks_exact_mut(n).zip(inp.chunks_exact(k_dim)) {
        orow.copy_from_slice(bias);
        for (&s, wrow) in irow.iter().zip(w.chunks_exact(n)) {
            axpy(orow, s, wrow);
        }
    }
}

/// `out = Σ_r a[r, :]ᵀ·z[r, :]` (`a` with `k_dim` columns, `z` and `out`'s rows with
/// `out.len() / k_dim`): for each row, `out[k, :] += a[r, k]·z[r, :]`.
fn outer_sum(a: &[f64], k_dim: usize, z: &[f64], out: &mut [f64]) {
    let n = out.len() / k_dim.max(1);
    out.fill(0.0);
    for (arow, zrow) in a.chunks_exact(k_dim).zip(z.chunks_exact(n)) {
        for (&s, orow) in arow.iter().zip(out.chunks_exact_mut(n)) {
            axpy(orow, s, zrow);
        }
    }
}

/// `out += s·x`.
fn axpy(out: &mut [f64], s: f64, x: &[f64]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o += s * v;
    }
}

/// Σ xᵢyᵢ with four partial sums, so the loop vectorises.
fn dot(x: &[f64], y: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (xc, yc) = (x.chunks_exact(4), y.chunks_exact(4));
    let tail: f64 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (xs, ys) in xc.zip(yc) {
        for ((s, &a), &b) in acc.iter_mut().zip(xs).zip(ys) {
            *s += a * b;
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// `out[j] = Σ_r m[r, j]` over the rows of the row-major `m` (`out.len()` columns).
fn col_sums(m: &[f64], out: &mut [f64]) {
    out.iter_mut().for_each(|v| *v = 0.0);
    for row in m.chunks_exact(out.len()) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

/// Extended Rosenbrock with array ops, `Σ 100·(x[1:] − x[:-1]²)² + (1 − x[:-1])²`, on a
/// traced vector of `n` elements.
// One range per axis; a vector has one axis.
#[allow(clippy::single_range_in_vec_init)]
pub fn rosenbrock_tensor(x: &Tensor, n: usize) -> Tensor {
    let head = x.slice(&[0..n - 1]);
    let tail = x.slice(&[1..n]);
    let t = &tail - &head * &head;
    let u = 1.0 - &head;
    let s = 100.0 * &t * &t + &u * &u;
    s.sum(&[0])
}

/// The value+gradient of [`rosenbrock_tensor`] traced at `x` (at least two elements),
/// optimised: `(x) -> (f, ∂x)`.
pub fn rosenbrock_tensor_grad(x: &[f64]) -> Result<Traced, WorkloadError> {
    let n = x.len();
    if n < 2 {
        return Err(length("rosenbrock input (at least)", n, 2));
    }
    // The IR depends on n alone: an abstract trace (no kernel runs).
    let ty = f64_type("rosenbrock input", &[n])?;
    let traced =
        crate::trace_tensors_abstract("rosenbrock", &[ty], |a| vec![rosenbrock_tensor(&a[0], n)])?;
    Ok(traced.grad()?)
}

/// One explicit Euler step of the 1-D heat equation with zero (Dirichlet) boundaries,
/// `u + r·Δu`: the neighbours are `u` shifted by one cell with a zero shifted in,
/// written with `concat` as a user would (the clean-up pipeline turns each into a
/// `pad`, which the JIT fuses).
// One range per axis; a vector has one axis.
#[allow(clippy::single_range_in_vec_init)]
pub fn heat_step(u: &Tensor, r: &Tensor, n: usize) -> Tensor {
    let zero = Tensor::zeros(&[1]);
    let left = Tensor::concat(&[zero.clone(), u.slice(&[0..n - 1])], 0);
    let right = Tensor::concat(&[u.slice(&[1..n]), zero], 0);
    u + r * (left + right - 2.0 * u)
}

/// `½·Σ (u_T − y)²` after `steps` [`heat_step`]s from `u₀`, traced from the types
/// `(u₀: f64[n], y: f64[n], r: f64)` as one `fori_loop` carrying `u` (at least two
/// cells).
pub fn heat_loss(n: usize, steps: usize) -> Result<Traced, WorkloadError> {
    if n < 2 {
        return Err(length("heat cells (at least)", n, 2));
    }
    let ty = f64_type("heat state", &[n])?;
    let steps = i64::try_from(steps).map_err(|_| length("heat steps", steps, i64::MAX as usize))?;
    Ok(crate::trace_tensors_abstract(
        "heat",
        &[ty, ty, Type::F64],
        |a| {
            let (y, r) = (&a[1], &a[2]);
            let u = crate::fori_loop(0, steps, a[0].clone(), |_, u| heat_step(&u, r, n));
            let e = u - y;
            vec![0.5 * (&e * &e).sum(&[0])]
        },
    )?)
}

/// Calls `f(i, u[i], (Δu)[i])` for every cell (zero boundaries): the two edge cells,
/// then a branch-free interior loop.
#[inline(always)]
fn stencil(u: &[f64], mut f: impl FnMut(usize, f64, f64)) {
    let n = u.len();
    match n {
        0 => {}
        1 => f(0, u[0], -2.0 * u[0]),
        _ => {
            f(0, u[0], u[1] - 2.0 * u[0]);
            for (j, w) in u.windows(3).enumerate() {
                f(j + 1, w[1], w[0] + w[2] - 2.0 * w[1]);
            }
            f(n - 1, u[n - 1], u[n - 2] - 2.0 * u[n - 1]);
        }
    }
}

/// The hand-written reference for [`heat_loss`]: the best straightforward store-all
/// adjoint, a forward loop storing every state, then a backward loop (`Δ` is symmetric,
/// so `λ ← λ + r·Δλ`, and `∂loss/∂r` sums `λ_{t+1}·Δu_t`), each update one
/// branch-free pass over the cells, buffers allocated once.
#[derive(Debug)]
pub struct HeatHand {
    n: usize,
    steps: usize,
    /// `u_0 … u_T`.
    states: Vec<f64>,
    /// The adjoint, and its next value (the primal's two states in [`HeatHand::value`]).
    lam: Vec<f64>,
    next: Vec<f64>,
}

impl HeatHand {
    /// Buffers for `n` cells and `steps` steps.
    pub fn new(n: usize, steps: usize) -> Self {
        HeatHand {
            n,
            steps,
            states: vec![0.0; n * (steps + 1)],
            lam: vec![0.0; n],
            next: vec![0.0; n],
        }
    }

    fn check(&self, u0: &[f64], y: &[f64]) -> Result<(), WorkloadError> {
        for (what, b) in [("heat u0", u0), ("heat y", y)] {
            if b.len() != self.n {
                return Err(length(what, b.len(), self.n));
            }
        }
        Ok(())
    }

    /// The loss alone (the primal: two state buffers, nothing stored).
    pub fn value(&mut self, u0: &[f64], y: &[f64], r: f64) -> Result<f64, WorkloadError> {
        self.check(u0, y)?;
        let (u, v) = (&mut self.lam, &mut self.next);
        u.copy_from_slice(u0);
        for _ in 0..self.steps {
            stencil(u, |i, x, d| v[i] = x + r * d);
            std::mem::swap(u, v);
        }
        Ok(0.5 * u.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum::<f64>())
    }

    /// The loss; writes the gradient `(∂u₀ (n), ∂y (n), ∂r)` into `g` (`2n + 1`
    /// entries, the traced gradient's order).
    pub fn value_grad(
        &mut self,
        u0: &[f64],
        y: &[f64],
        r: f64,
        g: &mut [f64],
    ) -> Result<f64, WorkloadError> {
        self.check(u0, y)?;
        let n = self.n;
        if g.len() != 2 * n + 1 {
            return Err(length("heat gradient", g.len(), 2 * n + 1));
        }
        let steps = self.steps;
        self.states[..n].copy_from_slice(u0);
        for t in 0..steps {
            let (done, rest) = self.states.split_at_mut((t + 1) * n);
            let (u, out) = (&done[t * n..], &mut rest[..n]);
            stencil(u, |i, x, d| out[i] = x + r * d);
        }
        let (gu, rest) = g.split_at_mut(n);
        let (gy, gr) = rest.split_at_mut(n);
        let u = &self.states[steps * n..];
        let mut loss = 0.0;
        for i in 0..n {
            let e = u[i] - y[i];
            loss += e * e;
            self.lam[i] = e; // λ_T
            gy[i] = -e;
        }
        let mut dr = 0.0;
        for t in (0..steps).rev() {
            let s = &self.states[t * n..(t + 1) * n];
            let (lam, next) = (&self.lam, &mut self.next);
            stencil(s, |i, _, d| dr += lam[i] * d);
            stencil(lam, |i, x, d| next[i] = x + r * d);
            std::mem::swap(&mut self.lam, &mut self.next);
        }
        gu.copy_from_slice(&self.lam);
        gr[0] = dr;
        Ok(0.5 * loss)
    }
}

/// The heat workload's standard inputs at `n` cells: `u₀ = sin(π·(i + ½)/n)`, `y =
/// i/(2n)`, `r = 0.25` (stable: `r ≤ ½`).
pub fn heat_inputs(n: usize) -> (Vec<f64>, Vec<f64>, f64) {
    let u0 = (0..n)
        .map(|i| (std::f64::consts::PI * (i as f64 + 0.5) / n as f64).sin())
        .collect();
    let y = (0..n).map(|i| 0.5 * (i as f64 / n as f64)).collect();
    (u0, y, 0.25)
}

type Runner = Box<dyn FnMut(&mut [f64]) -> f64 + Send>;

/// One leg of a tensor workload, its inputs set up: [`TensorCase::run`] computes the
/// value and the gradient (flat, every differentiated parameter's elements in order).
pub struct TensorCase {
    /// The group name in benchmark tables (`mlp-M`, `rosenbrock-tensor`).
    pub problem: &'static str,
    /// The problem size (parameters for the MLP, elements for Rosenbrock).
    pub n: usize,
    /// The leg: [`Leg::Jit`], [`Leg::Interp`] or [`Leg::Hand`].
    pub leg: Leg,
    g: Vec<f64>,
    run: Runner,
}

impl std::fmt::Debug for TensorCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TensorCase({} n={} {})",
            self.problem,
            self.n,
            self.leg.name()
        )
    }
}

impl TensorCase {
    /// One value+gradient computation; returns the value (NaN if a leg's call failed,
    /// which the set-up makes impossible) and leaves the gradient in
    /// [`TensorCase::gradient`].
    #[inline]
    pub fn run(&mut self) -> f64 {
        (self.run)(&mut self.g)
    }

    /// The gradient of the last [`TensorCase::run`].
    pub fn gradient(&self) -> &[f64] {
        &self.g
    }
}

/// At most this many parameters and results for [`jit_runner`] (MLP: 8 and 7).
const MAX_BUFFERS: usize = 8;

/// Calls `c` through `call_buffers` on `inputs` (one buffer per parameter), writing the
/// first result (the value) to a local and the rest into the flat gradient: the slices
/// live on the stack, so a call allocates nothing beyond what the compiled code does.
fn jit_runner(c: Compiled, inputs: Vec<Vec<f64>>) -> Result<Runner, WorkloadError> {
    let lens: Vec<usize> = c.result_types().iter().map(|t| t.num_elements()).collect();
    if inputs.len() > MAX_BUFFERS || lens.len() > MAX_BUFFERS || lens.first() != Some(&1) {
        return Err(WorkloadError::Signature {
            func: c.name().to_string(),
        });
    }
    Ok(Box::new(move |g: &mut [f64]| {
        let mut args: [&[f64]; MAX_BUFFERS] = [&[]; MAX_BUFFERS];
        for (a, b) in args.iter_mut().zip(&inputs) {
            *a = b;
        }
        let mut value = [f64::NAN];
        let mut out: [&mut [f64]; MAX_BUFFERS] = Default::default();
        out[0] = &mut value;
        let mut rest = g;
        for (o, &len) in out[1..].iter_mut().zip(&lens[1..]) {
            let Some((head, tail)) = std::mem::take(&mut rest).split_at_mut_checked(len) else {
                return f64::NAN;
            };
            *o = head;
            rest = tail;
        }
        if c.call_buffers(&args[..inputs.len()], &mut out[..lens.len()])
            .is_err()
        {
            return f64::NAN;
        }
        value[0]
    }))
}

/// Runs `t` in the interpreter on `args` and copies its results into (value, flat
/// gradient).
fn interp_runner(t: Traced, args: Vec<Val>) -> Runner {
    let mut it = Interpreter::new();
    let mut res = Vec::new();
    Box::new(move |g: &mut [f64]| {
        if it
            .run(t.function(), Some(t.module()), &args, &mut res)
            .is_err()
        {
            return f64::NAN;
        }
        let mut rest = &mut g[..];
        for r in &res[1..] {
            let data = match r {
                Val::F64(v) => std::slice::from_ref(v),
                r => match r.as_tensor().and_then(|t| t.as_f64()) {
                    Some(d) => d,
                    None => return f64::NAN,
                },
            };
            let Some((head, tail)) = std::mem::take(&mut rest).split_at_mut_checked(data.len())
            else {
                return f64::NAN;
            };
            head.copy_from_slice(data);
            rest = tail;
        }
        res.first().and_then(Val::as_f64).unwrap_or(f64::NAN)
    })
}

/// The legs of an MLP workload (JIT through `call_buffers`, the interpreter, [`MlpHand`]),
/// all on the same parameters (`init(2)`) and batch (inputs uniform in [−1, 1), targets
/// a smooth function of them), traced, differentiated and compiled here. `problem` names
/// the group (`mlp-M`).
pub fn mlp_cases(problem: &'static str, shape: MlpShape) -> Result<Vec<TensorCase>, WorkloadError> {
    mlp_cases_with(problem, shape, false)
}

/// As [`mlp_cases`], with [`MlpLoops`] (plain loops, no GEMM library) as the
/// hand-written leg: the small MLP's group (`mlp-small`).
pub fn mlp_small_cases(
    problem: &'static str,
    shape: MlpShape,
) -> Result<Vec<TensorCase>, WorkloadError> {
    mlp_cases_with(problem, shape, true)
}

fn mlp_cases_with(
    problem: &'static str,
    shape: MlpShape,
    loops: bool,
) -> Result<Vec<TensorCase>, WorkloadError> {
    let p = shape.init(2);
    let mut rng = Rng::new(1);
    let x: Vec<f64> = (0..shape.batch * shape.inputs)
        .map(|_| rng.uniform())
        .collect();
    let y: Vec<f64> = x
        .chunks_exact(shape.inputs)
        .map(|r| (r[0] + r[r.len() / 2]).sin() + 0.5 * r[r.len() - 1])
        .collect();
    let grad = mlp_grad(shape)?;
    let np = shape.num_params();
    let case = |leg, run| TensorCase {
        problem,
        n: np,
        leg,
        g: vec![0.0; np],
        run,
    };
    let mut inputs: Vec<Vec<f64>> = Vec::with_capacity(8);
    let mut rest = &p[..];
    for len in shape.param_lens() {
        let (head, tail) = rest.split_at(len);
        inputs.push(head.to_vec());
        rest = tail;
    }
    inputs.push(x.clone());
    inputs.push(y.clone());
    let jit = jit_runner(grad.compile()?, inputs)?;
    let interp = interp_runner(grad, shape.args(&p, &x, &y)?);
    let hand: Runner = if loops {
        let mut hand = MlpLoops::new(shape);
        Box::new(move |g: &mut [f64]| hand.value_grad(&p, &x, &y, g).unwrap_or(f64::NAN))
    } else {
        let mut hand = MlpHand::new(shape);
        Box::new(move |g: &mut [f64]| hand.value_grad(&p, &x, &y, g).unwrap_or(f64::NAN))
    };
    Ok(vec![
        case(Leg::Hand, hand),
        case(Leg::Jit, jit),
        case(Leg::Interp, interp),
    ])
}

/// The legs of tensor Rosenbrock at `n` (JIT, interpreter,
/// [`crate::problems::rosenbrock_grad_fused`]), all at the standard start.
pub fn rosenbrock_cases(n: usize) -> Result<Vec<TensorCase>, WorkloadError> {
    let x = crate::problems::rosenbrock_start(n);
    let grad = rosenbrock_tensor_grad(&x)?;
    let case = |leg, run| TensorCase {
        problem: "rosenbrock-tensor",
        n,
        leg,
        g: vec![0.0; n],
        run,
    };
    let jit = jit_runner(grad.compile()?, vec![x.clone()])?;
    let interp = interp_runner(
        grad,
        vec![Val::tensor(buffer("rosenbrock input", &[n], &x)?)],
    );
    let hand: Runner = Box::new(move |g: &mut [f64]| {
        crate::problems::rosenbrock_grad_fused(&x, g).unwrap_or(f64::NAN)
    });
    Ok(vec![
        case(Leg::Hand, hand),
        case(Leg::Jit, jit),
        case(Leg::Interp, interp),
    ])
}

/// The legs of the heat workload at `n` cells and `steps` steps ([`heat_loss`]'s
/// gradient under `policy` through the JIT and the interpreter, and [`HeatHand`]), all
/// on [`heat_inputs`]. The size `n` in tables is the cell count.
pub fn heat_cases(
    n: usize,
    steps: usize,
    policy: jitad_ir::checkpoint::Policy,
) -> Result<Vec<TensorCase>, WorkloadError> {
    let (u0, y, r) = heat_inputs(n);
    let grad = heat_loss(n, steps)?.grad()?.with_checkpoint(policy);
    let case = |leg, run| TensorCase {
        problem: "heat",
        n,
        leg,
        g: vec![0.0; 2 * n + 1],
        run,
    };
    let jit = jit_runner(grad.compile()?, vec![u0.clone(), y.clone(), vec![r]])?;
    let interp = interp_runner(
        grad,
        vec![
            Val::tensor(buffer("heat u0", &[n], &u0)?),
            Val::tensor(buffer("heat y", &[n], &y)?),
            Val::F64(r),
        ],
    );
    let mut hand = HeatHand::new(n, steps);
    let hand: Runner =
        Box::new(move |g: &mut [f64]| hand.value_grad(&u0, &y, r, g).unwrap_or(f64::NAN));
    Ok(vec![
        case(Leg::Hand, hand),
        case(Leg::Jit, jit),
        case(Leg::Interp, interp),
    ])
}

/// Runs every case once and checks they agree: the JIT and the interpreter bit for
/// bit, every other leg (the hand-written one) within `tol` times the largest magnitude
/// of the value and gradient, everything finite. The error names the first
/// disagreement.
pub fn check_agreement(cases: &mut [TensorCase], tol: f64) -> Result<(), String> {
    let results: Vec<(Leg, f64, Vec<f64>)> = cases
        .iter_mut()
        .map(|c| (c.leg, c.run(), c.gradient().to_vec()))
        .collect();
    let find = |leg| results.iter().find(|r| r.0 == leg);
    let Some((_, vj, gj)) = find(Leg::Jit) else {
        return Err("no JIT leg".into());
    };
    if !vj.is_finite() || gj.iter().any(|v| !v.is_finite()) {
        return Err(format!(
            "the JIT's value or gradient is not finite (value {vj})"
        ));
    }
    let scale = gj.iter().fold(vj.abs(), |m, v| m.max(v.abs()));
    for (leg, v, g) in &results {
        let exact = matches!(leg, Leg::Jit | Leg::Interp);
        let differs = |a: f64, b: f64| {
            if exact {
                a.to_bits() != b.to_bits()
            } else {
                // NaN counts as a disagreement.
                (a - b).abs() > tol * scale || (a - b).is_nan()
            }
        };
        if g.len() != gj.len() {
            return Err(format!(
                "{}: gradient of {} entries, the JIT's {}",
                leg.name(),
                g.len(),
                gj.len()
            ));
        }
        if differs(*v, *vj) {
            return Err(format!("{}: value {v}, the JIT's {vj}", leg.name()));
        }
        if let Some(k) = (0..g.len()).find(|&k| differs(g[k], gj[k])) {
            return Err(format!(
                "{}: gradient[{k}] = {}, the JIT's {}",
                leg.name(),
                g[k],
                gj[k]
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_legs(mut cases: Vec<TensorCase>, tol: f64) {
        let legs: Vec<Leg> = cases.iter().map(|c| c.leg).collect();
        assert_eq!(legs, [Leg::Hand, Leg::Jit, Leg::Interp]);
        if let Err(e) = check_agreement(&mut cases, tol) {
            panic!("{e}");
        }
    }

    #[test]
    fn mlp_legs_agree() {
        // An odd small shape, so a transposed stride or a swapped dimension shows.
        let shape = MlpShape {
            batch: 9,
            inputs: 5,
            hidden: 7,
        };
        check_legs(mlp_cases("mlp-test", shape).unwrap(), 1e-13);
    }

    #[test]
    fn mlp_loops_legs_agree() {
        // The small MLP, and an odd shape (a row length that is not a multiple of 4).
        check_legs(
            mlp_small_cases("mlp-small", MlpShape::SMALL).unwrap(),
            1e-13,
        );
        let shape = MlpShape {
            batch: 9,
            inputs: 5,
            hidden: 7,
        };
        check_legs(mlp_small_cases("mlp-test", shape).unwrap(), 1e-13);
    }

    #[test]
    fn mlp_hand_tanh_choices_agree() {
        let shape = MlpShape {
            batch: 9,
            inputs: 5,
            hidden: 7,
        };
        let p = shape.init(3);
        let mut rng = Rng::new(4);
        let x: Vec<f64> = (0..45).map(|_| rng.uniform()).collect();
        let y: Vec<f64> = (0..9).map(|_| rng.uniform()).collect();
        let mut gs = vec![0.0; p.len()];
        let mut gv = vec![0.0; p.len()];
        let mut gl = vec![0.0; p.len()];
        let fs = MlpHand::with_tanh(shape, HandTanh::Std)
            .value_grad(&p, &x, &y, &mut gs)
            .unwrap();
        let fv = MlpHand::new(shape).value_grad(&p, &x, &y, &mut gv).unwrap();
        let fl = MlpLoops::new(shape)
            .value_grad(&p, &x, &y, &mut gl)
            .unwrap();
        assert!((fs - fv).abs() <= 1e-14 * fs.abs() && (fl - fv).abs() <= 1e-14 * fv.abs());
        for k in 0..p.len() {
            assert!(
                (gs[k] - gv[k]).abs() <= 1e-13 * (1.0 + gv[k].abs()),
                "g[{k}]"
            );
            assert!(
                (gl[k] - gv[k]).abs() <= 1e-13 * (1.0 + gv[k].abs()),
                "g[{k}]"
            );
        }
        let err = MlpLoops::new(shape)
            .value_grad(&p, &x[1..], &y, &mut gl)
            .unwrap_err();
        assert!(err.to_string().contains("batch inputs"), "{err}");
    }

    #[test]
    fn mlp_hand_matches_finite_differences() {
        let shape = MlpShape {
            batch: 6,
            inputs: 3,
            hidden: 4,
        };
        let p = shape.init(5);
        let mut rng = Rng::new(7);
        let x: Vec<f64> = (0..18).map(|_| rng.uniform()).collect();
        let y: Vec<f64> = (0..6).map(|_| rng.uniform()).collect();
        let mut hand = MlpHand::new(shape);
        let mut g = vec![0.0; shape.num_params()];
        hand.value_grad(&p, &x, &y, &mut g).unwrap();
        let mut scratch = vec![0.0; shape.num_params()];
        let mut q = p.clone();
        for k in 0..p.len() {
            let eps = 1e-6;
            q[k] = p[k] + eps;
            let fp = hand.value_grad(&q, &x, &y, &mut scratch).unwrap();
            q[k] = p[k] - eps;
            let fm = hand.value_grad(&q, &x, &y, &mut scratch).unwrap();
            q[k] = p[k];
            let fd = (fp - fm) / (2.0 * eps);
            assert!((fd - g[k]).abs() <= 1e-7, "g[{k}]: {} vs {fd}", g[k]);
        }
    }

    #[test]
    fn mlp_hand_rejects_wrong_lengths() {
        let shape = MlpShape {
            batch: 2,
            inputs: 2,
            hidden: 2,
        };
        let mut hand = MlpHand::new(shape);
        let p = shape.init(1);
        let mut g = vec![0.0; p.len()];
        let err = hand
            .value_grad(&p, &[0.0; 3], &[0.0; 2], &mut g)
            .unwrap_err();
        assert!(err.to_string().contains("batch inputs"), "{err}");
        let err = hand
            .value_grad(&p[1..], &[0.0; 4], &[0.0; 2], &mut g)
            .unwrap_err();
        assert!(err.to_string().contains("parameters"), "{err}");
        assert!(shape.args(&p[1..], &[0.0; 4], &[0.0; 2]).is_err());
    }

    #[test]
    fn heat_legs_agree_and_match_finite_differences() {
        use jitad_ir::checkpoint::Policy;
        for (n, steps) in [(2, 0), (3, 1), (40, 7)] {
            for policy in [Policy::StoreAll, Policy::Binomial(2)] {
                check_legs(heat_cases(n, steps, policy).unwrap(), 1e-12);
            }
        }
        // The hand-written gradient against central differences of its own value.
        let (n, steps) = (12, 5);
        let (u0, y, r) = heat_inputs(n);
        let mut hand = HeatHand::new(n, steps);
        let mut g = vec![0.0; 2 * n + 1];
        hand.value_grad(&u0, &y, r, &mut g).unwrap();
        let mut x: Vec<f64> = [&u0[..], &y[..], &[r]].concat();
        for k in 0..x.len() {
            let eps = 1e-6;
            let at = |x: &[f64], hand: &mut HeatHand| {
                hand.value(&x[..n], &x[n..2 * n], x[2 * n]).unwrap()
            };
            x[k] += eps;
            let fp = at(&x, &mut hand);
            x[k] -= 2.0 * eps;
            let fm = at(&x, &mut hand);
            x[k] += eps;
            let fd = (fp - fm) / (2.0 * eps);
            assert!((fd - g[k]).abs() <= 1e-8, "g[{k}]: {} vs {fd}", g[k]);
        }
        assert!(heat_loss(1, 3).is_err());
        assert!(hand.value(&u0[1..], &y, r).is_err());
    }

    #[test]
    fn rosenbrock_legs_agree() {
        for n in [2, 3, 1000] {
            check_legs(rosenbrock_cases(n).unwrap(), 1e-13);
        }
        assert!(rosenbrock_tensor_grad(&[1.0]).is_err());
    }
}
