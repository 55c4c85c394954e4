//! Tensor sub-computations for [`super::random_module`] with [`super::GenOptions::tensors`].
//!
//! Every tensor is `f64`, of rank 1 to 3 with dimensions 1 to [`MAX_DIM`]; every op that
//! could grow a dimension (`concat`, `pad`) is sized so the result stays within
//! [`MAX_DIM`], and every other op only keeps or shrinks dimensions, so the shapes of a
//! program stay small (the one exception, a tensor flattened to a vector for a `dot`,
//! is used by that `dot` alone). Tensors come from scalars (`broadcast`, `fill`, `iota` scaled by
//! a scalar, `insert` of scalars or rows into a `fill`) and go back to scalars (`sum`,
//! `mean` or `logsumexp` over all axes, `dot`, `extract` of an element). An `extract` or
//! `insert` at a loop index only targets a tensor whose leading dimension exceeds every
//! value the index can take (the index ranges are tracked with the loops), so no
//! evaluation goes out of bounds.

use super::{Gen, ALL_BINARY, ALL_UNARY, BOUNDED, COMPARE, CONSTS, R, SMOOTH_BINARY, SMOOTH_UNARY};
use crate::builder::FunctionBuilder;
use crate::function::Value;
use crate::op::{Axes, Constant, Op};
use crate::shape::{Reduction, SliceRange};
use crate::types::{ScalarType, Shape, Type};

/// The largest dimension of a generated tensor.
pub const MAX_DIM: usize = 4;

/// The largest rank of a generated tensor.
const MAX_GEN_RANK: usize = 3;

const SMOOTH_REDUCTIONS: &[Reduction] = &[Reduction::Sum, Reduction::Mean, Reduction::LogSumExp];

/// The `f64` tensor type with dimensions `dims` (rank 1 to 3, each 1 to [`MAX_DIM`]).
fn f64_tensor(dims: &[usize]) -> Type {
    Type::Tensor(
        ScalarType::F64,
        Shape::new(dims).expect("testgen shapes have rank 1..=3 and small dimensions"),
    )
}

/// The type of one element or row of a tensor with dimensions `dims` (what `extract`
/// returns).
fn row_type(dims: &[usize]) -> Type {
    if dims.len() == 1 {
        Type::F64
    } else {
        f64_tensor(&dims[1..])
    }
}

/// The dimensions of a tensor type (empty for a scalar).
pub(super) fn dims(t: Type) -> Vec<usize> {
    match t {
        Type::Tensor(_, s) => s.dims().iter().map(|&d| d as usize).collect(),
        Type::Scalar(_) => Vec::new(),
    }
}

fn is_f64_tensor(t: Type) -> bool {
    matches!(t, Type::Tensor(ScalarType::F64, _))
}

/// All axes `0..rank`.
fn all_axes(rank: usize) -> Axes {
    Axes::new(&(0..rank).collect::<Vec<_>>()).expect("rank is at most MAX_RANK")
}

/// Every shape of rank 1 to 3 with dimensions 1 to [`MAX_DIM`] and `count` elements.
fn shapes_with_count(count: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    for a in 1..=MAX_DIM {
        if a == count {
            out.push(vec![a]);
        }
        for b in 1..=MAX_DIM {
            if a * b == count {
                out.push(vec![a, b]);
            }
            for c in 1..=MAX_DIM {
                if a * b * c == count {
                    out.push(vec![a, b, c]);
                }
            }
        }
    }
    out
}

impl Gen {
    fn rand_rank(&mut self) -> usize {
        self.rng.pick(&[1, 1, 2, 2, 3])
    }

    fn rand_dims(&mut self, rank: usize) -> Vec<usize> {
        (0..rank).map(|_| 1 + self.rng.below(MAX_DIM)).collect()
    }

    /// A visible `f64` tensor whose dimensions satisfy `ok`, biased towards recent ones.
    fn pick_tensor_where(
        &mut self,
        b: &FunctionBuilder,
        ok: impl Fn(&[usize]) -> bool,
    ) -> Option<Value> {
        let cands: Vec<Value> = self
            .scopes
            .iter()
            .flatten()
            .copied()
            .filter(|&v| is_f64_tensor(b.ty(v)) && ok(&dims(b.ty(v))))
            .collect();
        if cands.is_empty() {
            return None;
        }
        if self.rng.chance(1, 2) {
            let k = cands.len().min(4);
            Some(cands[cands.len() - 1 - self.rng.below(k)])
        } else {
            Some(self.rng.pick(&cands))
        }
    }

    /// Some `f64` tensor: usually a visible one, else a new one lifted from scalars.
    fn tensor_any(&mut self, b: &mut FunctionBuilder) -> R<Value> {
        if self.rng.chance(3, 4) {
            if let Some(v) = self.pick_tensor_where(b, |_| true) {
                return Ok(v);
            }
        }
        let r = self.rand_rank();
        let d = self.rand_dims(r);
        self.lift(b, &d)
    }

    /// An `f64` tensor of rank `rank` (any dimensions).
    fn tensor_rank(&mut self, b: &mut FunctionBuilder, rank: usize) -> R<Value> {
        if self.rng.chance(3, 4) {
            if let Some(v) = self.pick_tensor_where(b, |d| d.len() == rank) {
                return Ok(v);
            }
        }
        let d = self.rand_dims(rank);
        self.lift(b, &d)
    }

    /// An `f64` tensor with dimensions `d`: a visible one, a visible one reshaped, or a
    /// new one lifted from scalars.
    fn tensor_of(&mut self, b: &mut FunctionBuilder, d: &[usize]) -> R<Value> {
        let ty = f64_tensor(d);
        if self.rng.chance(3, 4) {
            if let Some(v) = self.pick(b, ty) {
                return Ok(v);
            }
        }
        let count: usize = d.iter().product();
        if self.rng.chance(1, 3) {
            if let Some(v) = self.pick_tensor_where(b, |e| e.iter().product::<usize>() == count) {
                return self.ins1(b, Op::Reshape(ty), &[v]);
            }
        }
        self.lift(b, d)
    }

    /// A scalar (or a row, for `d` of rank ≥ 2) of the type `extract` takes from a
    /// tensor with dimensions `d`.
    fn row_of(&mut self, b: &mut FunctionBuilder, d: &[usize]) -> R<Value> {
        if d.len() == 1 {
            Ok(self.f64_val(b))
        } else {
            self.tensor_of(b, &d[1..])
        }
    }

    /// A constant `i64` index (not added to the visible values).
    fn index_const(&mut self, b: &mut FunctionBuilder, k: usize) -> Value {
        self.take(1);
        b.constant(Constant::I64(k as i64))
    }

    /// A new tensor with dimensions `d` computed from visible scalars.
    fn lift(&mut self, b: &mut FunctionBuilder, d: &[usize]) -> R<Value> {
        let ty = f64_tensor(d);
        match self.rng.below(4) {
            0 => {
                let x = self.f64_val(b);
                self.ins1(b, Op::Broadcast(ty), &[x])
            }
            1 => {
                let c = Constant::F64(self.rng.pick(CONSTS));
                let f = self.ins1(b, Op::Fill(c, Box::new(ty)), &[])?;
                if self.rng.chance(1, 2) {
                    let x = self.f64_val(b);
                    self.ins1(b, Op::Add, &[f, x])
                } else {
                    Ok(f)
                }
            }
            2 => {
                let axis = self.rng.below(d.len());
                let io = self.ins1(b, Op::Iota(axis as u8, ty), &[])?;
                let x = self.f64_val(b);
                let args = if self.rng.chance(1, 2) {
                    [io, x]
                } else {
                    [x, io]
                };
                let s = self.ins1(b, Op::Mul, &args)?;
                if self.rng.chance(1, 2) {
                    let y = self.f64_val(b);
                    self.ins1(b, Op::Add, &[s, y])
                } else {
                    Ok(s)
                }
            }
            _ => {
                let c = Constant::F64(self.rng.pick(CONSTS));
                let mut t = self.ins1(b, Op::Fill(c, Box::new(ty)), &[])?;
                for _ in 0..1 + self.rng.below(2) {
                    let v = self.row_of(b, d)?;
                    let k = self.rng.below(d[0]);
                    let i = self.index_const(b, k);
                    t = self.ins1(b, Op::Insert, &[v, t, i])?;
                }
                Ok(t)
            }
        }
    }

    /// An enclosing loop's index usable at run time as a leading-axis index, with the
    /// smallest leading dimension it needs (every value it takes is in `0..need`).
    fn loop_index(&mut self) -> Option<(Value, usize)> {
        let usable: Vec<(Value, usize)> = self
            .indices
            .iter()
            .zip(&self.ranges)
            .filter(|(_, &(lo, hi))| lo >= 0 && hi <= MAX_DIM as i64)
            .map(|(&i, &(_, hi))| (i, hi.max(1) as usize))
            .collect();
        if usable.is_empty() {
            None
        } else {
            Some(self.rng.pick(&usable))
        }
    }

    /// A tensor with a leading dimension at least `need`.
    fn tensor_leading(&mut self, b: &mut FunctionBuilder, need: usize) -> R<Value> {
        if self.rng.chance(3, 4) {
            if let Some(v) = self.pick_tensor_where(b, |d| d[0] >= need) {
                return Ok(v);
            }
        }
        let r = self.rand_rank();
        let mut d = self.rand_dims(r);
        d[0] = need + self.rng.below(MAX_DIM + 1 - need);
        self.lift(b, &d)
    }

    /// A loop-carried tensor's initial value: when the loop's index is usable as an
    /// index (`need` is then its bound), its leading dimension admits it.
    pub(super) fn tensor_init(&mut self, b: &mut FunctionBuilder, need: Option<usize>) -> R<Value> {
        match need {
            Some(need) => self.tensor_leading(b, need),
            None => self.tensor_any(b),
        }
    }

    /// The next value of a loop-carried tensor `v` (of the carried type): often `v` with
    /// its row or element at the loop index `i` replaced by a function of a row taken at
    /// `i`, when the index is known to be in range for it.
    pub(super) fn tensor_yield(
        &mut self,
        b: &mut FunctionBuilder,
        v: Value,
        i: Value,
        range: (i64, i64),
    ) -> R<Value> {
        let d = dims(b.ty(v));
        let (lo, hi) = range;
        if !(lo >= 0 && hi <= d[0] as i64) || self.rng.chance(1, 2) {
            return Ok(v);
        }
        let ty = b.ty(v);
        let src = self.pick(b, ty).unwrap_or(v);
        let row = self.ins1(b, Op::Extract, &[src, i])?;
        let x = self.f64_val(b);
        let op = self.rng.pick(&[Op::Mul, Op::Add]);
        let y = self.ins1(b, op, &[row, x])?;
        let smooth_op = self.rng.pick(BOUNDED);
        let z = self.ins1(b, smooth_op, &[y])?;
        self.ins1(b, Op::Insert, &[z, v, i])
    }

    /// One tensor computation (see the module docs).
    pub(super) fn gen_tensor(&mut self, b: &mut FunctionBuilder) -> R<()> {
        let smooth = self.opts.smooth_only;
        match self.rng.below(17) {
            0 | 1 => {
                let t = self.tensor_any(b)?;
                match self.rng.below(3) {
                    0 => {
                        let op = self.rng.pick(if smooth { SMOOTH_UNARY } else { ALL_UNARY });
                        self.ins1(b, op, &[t])?;
                    }
                    1 => {
                        // exp of a bounded value (unbounded without smooth_only).
                        let u = if smooth || self.rng.chance(1, 2) {
                            let op = self.rng.pick(BOUNDED);
                            self.ins1(b, op, &[t])?
                        } else {
                            t
                        };
                        self.ins1(b, Op::Exp, &[u])?;
                    }
                    _ => {
                        let n = if smooth {
                            self.rng.below(4) as i32
                        } else {
                            self.rng.below(9) as i32 - 4
                        };
                        self.ins1(b, Op::Powi(n), &[t])?;
                    }
                }
            }
            2 => {
                // tensor ⊕ tensor of one shape.
                let t = self.tensor_any(b)?;
                let u = self.tensor_of(b, &dims(b.ty(t)))?;
                let op = self.binary_op();
                self.ins1(b, op, &[t, u])?;
            }
            3 => {
                // tensor ⊕ scalar, either order.
                let t = self.tensor_any(b)?;
                let x = self.f64_val(b);
                let op = self.binary_op();
                let args = if self.rng.chance(1, 2) {
                    [t, x]
                } else {
                    [x, t]
                };
                self.ins1(b, op, &args)?;
            }
            4 => self.gen_broadcasting(b)?,
            5 => self.gen_other_elementwise(b)?,
            6 => self.gen_matmul(b)?,
            7 => {
                let a = self.tensor_rank(b, 1)?;
                let u = self.tensor_of(b, &dims(b.ty(a)))?;
                self.ins1(b, Op::Dot, &[a, u])?;
            }
            8 => self.gen_transpose_or_reshape(b)?,
            9 => self.gen_slice(b)?,
            10 => self.gen_concat_or_pad(b)?,
            11 | 12 => self.gen_extract_or_insert(b)?,
            13 | 14 => {
                let t = self.tensor_any(b)?;
                let rank = dims(b.ty(t)).len();
                let red = self.reduction();
                let mut axes: Vec<usize> = (0..rank).filter(|_| self.rng.chance(1, 2)).collect();
                if axes.is_empty() && self.rng.chance(3, 4) {
                    axes.push(self.rng.below(rank));
                }
                self.shuffle(&mut axes);
                let axes = Axes::new(&axes).expect("at most 3 axes below 3");
                self.ins1(b, Op::Reduce(red, axes), &[t])?;
            }
            _ => self.gen_to_scalar(b)?,
        }
        Ok(())
    }

    fn binary_op(&mut self) -> Op {
        self.rng.pick(if self.opts.smooth_only {
            SMOOTH_BINARY
        } else {
            ALL_BINARY
        })
    }

    fn reduction(&mut self) -> Reduction {
        if self.opts.smooth_only {
            self.rng.pick(SMOOTH_REDUCTIONS)
        } else {
            self.rng.pick(&Reduction::ALL)
        }
    }

    fn shuffle(&mut self, xs: &mut [usize]) {
        for k in (1..xs.len()).rev() {
            let j = self.rng.below(k + 1);
            xs.swap(k, j);
        }
    }

    /// A tensor against a lower-rank row (a suffix of its shape) or a tensor with some
    /// axes of size 1 (a column), broadcasting.
    fn gen_broadcasting(&mut self, b: &mut FunctionBuilder) -> R<()> {
        let rank = 2 + self.rng.below(2);
        let t = self.tensor_rank(b, rank)?;
        let d = dims(b.ty(t));
        let other: Vec<usize> = if self.rng.chance(1, 2) {
            let keep = 1 + self.rng.below(rank - 1);
            d[rank - keep..].to_vec()
        } else {
            let mut e = d.clone();
            let k = self.rng.below(rank);
            e[k] = 1;
            for x in e.iter_mut() {
                if self.rng.chance(1, 3) {
                    *x = 1;
                }
            }
            e
        };
        let u = self.tensor_of(b, &other)?;
        let op = self.binary_op();
        let args = if self.rng.chance(1, 2) {
            [t, u]
        } else {
            [u, t]
        };
        self.ins1(b, op, &args)?;
        Ok(())
    }

    /// `div` by `1 + u*u`, `fma`, `select` on a comparison (and, without `smooth_only`,
    /// every binary op and a comparison cast to `f64`).
    fn gen_other_elementwise(&mut self, b: &mut FunctionBuilder) -> R<()> {
        let t = self.tensor_any(b)?;
        let d = dims(b.ty(t));
        let choices = if self.opts.smooth_only { 3 } else { 4 };
        match self.rng.below(choices) {
            0 => {
                let u = self.tensor_of(b, &d)?;
                let uu = self.ins1(b, Op::Mul, &[u, u])?;
                let one = b.const_f64(1.0);
                self.take(1);
                let den = self.ins1(b, Op::Add, &[one, uu])?;
                self.ins1(b, Op::Div, &[t, den])?;
            }
            1 => {
                let u = self.tensor_of(b, &d)?;
                let x = self.f64_val(b);
                let args = match self.rng.below(3) {
                    0 => [t, u, x],
                    1 => [x, t, u],
                    _ => [t, x, u],
                };
                self.ins1(b, Op::Fma, &args)?;
            }
            2 => {
                let u = if self.rng.chance(1, 2) {
                    self.tensor_of(b, &d)?
                } else {
                    self.f64_val(b)
                };
                let cmp = self.rng.pick(COMPARE);
                let c = self.ins1(b, cmp, &[t, u])?;
                let p = self.tensor_of(b, &d)?;
                let q = if self.rng.chance(1, 2) {
                    self.tensor_of(b, &d)?
                } else {
                    self.f64_val(b)
                };
                self.ins1(b, Op::Select, &[c, p, q])?;
            }
            _ => {
                let u = self.tensor_of(b, &d)?;
                let cmp = self.rng.pick(COMPARE);
                let c = self.ins1(b, cmp, &[t, u])?;
                self.ins1(b, Op::Cast(ScalarType::F64), &[c])?;
            }
        }
        Ok(())
    }

    /// `matmul` in each of its forms: `[m,k]×[k,n]`, `[m,k]×[k]`, `[k]×[k,n]`,
    /// `[b,m,k]×[k,n]` and `[b,m,k]×[b,k,n]`.
    fn gen_matmul(&mut self, b: &mut FunctionBuilder) -> R<()> {
        let n = 1 + self.rng.below(MAX_DIM);
        let (a, other) = match self.rng.below(5) {
            0 => {
                let a = self.tensor_rank(b, 2)?;
                let k = dims(b.ty(a))[1];
                (a, vec![k, n])
            }
            1 => {
                let a = self.tensor_rank(b, 2)?;
                let k = dims(b.ty(a))[1];
                (a, vec![k])
            }
            2 => {
                let a = self.tensor_rank(b, 1)?;
                let k = dims(b.ty(a))[0];
                (a, vec![k, n])
            }
            3 => {
                let a = self.tensor_rank(b, 3)?;
                let k = dims(b.ty(a))[2];
                (a, vec![k, n])
            }
            _ => {
                let a = self.tensor_rank(b, 3)?;
                let d = dims(b.ty(a));
                (a, vec![d[0], d[2], n])
            }
        };
        let u = self.tensor_of(b, &other)?;
        self.ins1(b, Op::Matmul, &[a, u])?;
        Ok(())
    }

    fn gen_transpose_or_reshape(&mut self, b: &mut FunctionBuilder) -> R<()> {
        if self.rng.chance(1, 2) {
            let rank = 2 + self.rng.below(MAX_GEN_RANK - 1);
            let t = self.tensor_rank(b, rank)?;
            let mut perm: Vec<usize> = (0..rank).collect();
            self.shuffle(&mut perm);
            if perm.iter().enumerate().all(|(i, &p)| i == p) {
                perm.reverse();
            }
            let perm = Axes::new(&perm).expect("a permutation of at most 3 axes");
            self.ins1(b, Op::Transpose(perm), &[t])?;
        } else {
            let t = self.tensor_any(b)?;
            let d = dims(b.ty(t));
            let mut shapes = shapes_with_count(d.iter().product());
            shapes.retain(|s| *s != d);
            let to = if shapes.is_empty() {
                d
            } else {
                self.rng.pick(&shapes)
            };
            self.ins1(b, Op::Reshape(f64_tensor(&to)), &[t])?;
        }
        Ok(())
    }

    /// A static slice, with steps of 1 to 3.
    fn gen_slice(&mut self, b: &mut FunctionBuilder) -> R<()> {
        let t = self.tensor_any(b)?;
        let d = dims(b.ty(t));
        let ranges: Vec<SliceRange> = d
            .iter()
            .map(|&n| {
                let start = self.rng.below(n);
                let end = start + 1 + self.rng.below(n - start);
                let step = if self.rng.chance(1, 3) {
                    2 + self.rng.below(2)
                } else {
                    1
                };
                SliceRange {
                    start: start as u32,
                    end: end as u32,
                    step: step as u32,
                }
            })
            .collect();
        self.ins1(b, Op::Slice(ranges), &[t])?;
        Ok(())
    }

    /// `concat` along an axis with room to grow, else `pad` (with widths that keep every
    /// dimension within [`MAX_DIM`]).
    fn gen_concat_or_pad(&mut self, b: &mut FunctionBuilder) -> R<()> {
        let t = self.tensor_any(b)?;
        let d = dims(b.ty(t));
        let room: Vec<usize> = (0..d.len()).filter(|&k| d[k] < MAX_DIM).collect();
        if !room.is_empty() && self.rng.chance(1, 2) {
            let axis = self.rng.pick(&room);
            let mut parts = vec![t];
            let mut len = d[axis];
            for _ in 0..1 + self.rng.below(2) {
                if len >= MAX_DIM {
                    break;
                }
                let add = 1 + self.rng.below(MAX_DIM - len);
                len += add;
                let mut e = d.clone();
                e[axis] = add;
                let u = self.tensor_of(b, &e)?;
                parts.push(u);
            }
            if self.rng.chance(1, 2) {
                parts.reverse();
            }
            self.ins1(b, Op::Concat(axis as u8), &parts)?;
        } else {
            let x = self.f64_val(b);
            let widths: Vec<SliceRange> = d
                .iter()
                .map(|&n| {
                    let lo = self.rng.below(2.min(MAX_DIM - n) + 1);
                    let hi = self.rng.below((MAX_DIM - n - lo).min(1) + 1);
                    SliceRange::new(lo as u32, hi as u32)
                })
                .collect();
            self.ins1(b, Op::Pad(widths), &[t, x])?;
        }
        Ok(())
    }

    /// `extract` or `insert` at a constant index, or at an enclosing loop's index when
    /// its range fits the tensor.
    fn gen_extract_or_insert(&mut self, b: &mut FunctionBuilder) -> R<()> {
        let at_loop = match self.loop_index() {
            Some(li) if self.rng.chance(2, 3) => Some(li),
            _ => None,
        };
        let t = match at_loop {
            Some((_, need)) => self.tensor_leading(b, need)?,
            None => self.tensor_any(b)?,
        };
        let d = dims(b.ty(t));
        let i = match at_loop {
            Some((i, _)) => i,
            None => {
                let k = self.rng.below(d[0]);
                self.index_const(b, k)
            }
        };
        if self.rng.chance(1, 2) {
            self.ins1(b, Op::Extract, &[t, i])?;
        } else {
            let v = self.row_of(b, &d)?;
            let v = if row_type(&d) == Type::F64 || self.rng.chance(1, 2) {
                v
            } else {
                let op = self.rng.pick(BOUNDED);
                self.ins1(b, op, &[v])?
            };
            self.ins1(b, Op::Insert, &[v, t, i])?;
        }
        Ok(())
    }

    /// A tensor back to a scalar: `sum`/`mean`/`logsumexp` over every axis, `dot`, or
    /// `extract` of one element (and, without `smooth_only`, `reduce_max`/`reduce_min`).
    fn gen_to_scalar(&mut self, b: &mut FunctionBuilder) -> R<()> {
        let t = self.tensor_any(b)?;
        let d = dims(b.ty(t));
        match self.rng.below(4) {
            0 | 1 => {
                let red = self.reduction();
                self.ins1(b, Op::Reduce(red, all_axes(d.len())), &[t])?;
            }
            2 => {
                let u = if self.rng.chance(1, 4) {
                    t
                } else {
                    self.tensor_of(b, &d)?
                };
                let v = self.flatten(b, t)?;
                let w = self.flatten(b, u)?;
                self.ins1(b, Op::Dot, &[v, w])?;
            }
            _ => {
                let mut v = t;
                for &n in &d {
                    let k = self.rng.below(n);
                    let i = self.index_const(b, k);
                    v = self.ins1(b, Op::Extract, &[v, i])?;
                }
            }
        }
        Ok(())
    }

    /// `t` reshaped to a vector (itself when it is one). The vector may be longer than
    /// [`MAX_DIM`], so it is not made visible: only the caller uses it.
    fn flatten(&mut self, b: &mut FunctionBuilder, t: Value) -> R<Value> {
        let d = dims(b.ty(t));
        if d.len() == 1 {
            return Ok(t);
        }
        self.used.insert(t);
        self.take(1);
        b.ins1(Op::Reshape(f64_tensor(&[d.iter().product()])), &[t])
    }

    /// Sums the latest (at most two) unused tensors of the outermost scope to scalars,
    /// so the function's results depend on them.
    pub(super) fn fold_tensors(&mut self, b: &mut FunctionBuilder) -> R<()> {
        let dead: Vec<Value> = self.scopes[0]
            .iter()
            .rev()
            .copied()
            .filter(|&v| is_f64_tensor(b.ty(v)) && !self.used.contains(&v))
            .take(2)
            .collect();
        for t in dead.into_iter().rev() {
            let rank = dims(b.ty(t)).len();
            self.ins1(b, Op::Reduce(Reduction::Sum, all_axes(rank)), &[t])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_with_count_are_exact_and_small() {
        for count in 1..=64 {
            for s in shapes_with_count(count) {
                assert_eq!(s.iter().product::<usize>(), count);
                assert!(s.iter().all(|&d| (1..=MAX_DIM).contains(&d)));
            }
        }
        assert!(shapes_with_count(12).contains(&vec![3, 4]));
        assert!(shapes_with_count(5).is_empty());
    }
}
