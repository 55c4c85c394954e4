//! Seeded random well-typed programs, for property tests across the workspace (text
//! round trips, interpreter vs JIT, derivative checks, pass preservation).
//!
//! [`random_module`] turns a `u64` seed and [`GenOptions`] into a [`Module`]; the same
//! seed and options always give the same module. Every instruction goes through
//! [`FunctionBuilder`], so programs are well typed, and values are only used where they
//! are in scope, so they verify. Guarantees:
//!
//! - the **last** function is the entry `@main`: `num_params` (at least 1) `f64`
//!   parameters `%x0, %x1, ...`, and with `all_types` one more, trailing `i64`
//!   parameter `%n`; it returns one or two `f64` results;
//! - with `calls`, helpers `@h0`, `@h1`, ... (`f64` parameters, one or two `f64`
//!   results) come first; `@main` and later helpers call earlier ones;
//! - with `loops`, loops nest up to [`MAX_LOOP_DEPTH`] deep, carry one to three values
//!   (rarely none), and run at most 5 trips each: bounds are small immediates, the
//!   index of an enclosing loop (as start), or — only with `all_types`, in `@main` —
//!   `min(%n, 4)` (as end), so any `%n` is safe;
//! - no `guard` is ever generated, so evaluation never asks for a re-trace;
//! - about a third of the instruction results are named (`%t3`), the rest print as
//!   `%vN`; loop indices are `%iK`, carried values `%cK`, loop results `%rK`;
//! - with `tensors`, signatures stay as above (scalars only), but bodies hold tensor
//!   sub-computations over `f64` tensors of rank 1 to 3 with dimensions 1 to 4 (only a
//!   tensor flattened to a vector for one `dot` may be longer): scalars
//!   lifted (`broadcast`, `fill`, `iota` times a scalar, `insert` into a `fill`),
//!   elementwise ops with broadcasting (tensor⊕tensor, tensor⊕scalar, a row or a column
//!   against a matrix), `matmul` in every form, `dot`, `transpose`, `reshape`, `slice`
//!   (with steps), `concat`, `pad`, `extract`/`insert`, reductions over random axes, and
//!   back to scalars (`sum`/`mean`/`logsumexp` over all axes, `dot`, `extract` of an
//!   element) that feed the scalar code; loops may carry tensors, updated by `insert` at
//!   the loop index. An `extract`/`insert` index is a constant in range or the index of
//!   an enclosing loop whose every value is below the tensor's leading dimension, so
//!   evaluation never fails on an index. The latest unused tensors are summed into the
//!   first result. Without `tensors`, the same seed gives the same module as before the
//!   option existed (the option draws no random numbers when off).
//!
//! With `smooth_only`, `@main` is infinitely differentiable in its `f64` inputs
//! everywhere except on the switching surfaces of `select`s, and finite on all of ℝⁿ:
//! only `add sub mul neg fma sin cos tanh sigmoid erf`, `powi` with exponent 0..=3,
//! `exp` applied only to a bounded value (`exp(sin x)`, `exp(tanh x)`, ...), `div` only
//! by `1 + y*y`, `select` on comparisons, and `f64` constants; with `all_types` also
//! `i64` arithmetic, `i64` comparisons and `cast i64 → f64` (constant in the inputs), but
//! no `f32` and no casts from floats. Loop-carried `f64` values often pass through
//! `tanh`/`sin` so magnitudes stay moderate. With `tensors` too, tensor ops keep to the
//! same rules elementwise (no `abs`, `max`/`min` or `reduce_max`/`reduce_min`; `exp`
//! only of a bounded tensor), plus the ops smooth on all inputs: `matmul`, `dot`,
//! `sum`, `mean`, `logsumexp` and the structural ops; loop-carried tensors often pass
//! through `tanh`/`sin` too. Without `smooth_only` every op but `guard` may appear, and
//! results may be `inf` or NaN (`log` of a negative, overflow, ...).

use crate::builder::{BuildError, FunctionBuilder};
use crate::function::{Module, Value};
use crate::op::{Bound, Constant, LoopBounds, Op, Signature};
use crate::types::{ScalarType, Type};
use std::collections::HashSet;

mod tensors;

/// The deepest loop nesting the generator produces.
pub const MAX_LOOP_DEPTH: usize = 2;

/// What [`random_module`] may generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenOptions {
    /// Number of `f64` parameters of `@main` (at least 1 is used).
    pub num_params: usize,
    /// About how many instructions `@main` has (loop bodies included; helpers have
    /// about a third as many).
    pub num_insts: usize,
    /// Generate (nested) loops with carried values.
    pub loops: bool,
    /// Generate helper functions and calls to them.
    pub calls: bool,
    /// Also use `f32`, `i64` and `bool` values: casts, comparisons, `select`, integer
    /// arithmetic, and a trailing `i64` parameter `%n` of `@main` (a dynamic loop
    /// bound). Never `guard`.
    pub all_types: bool,
    /// Only ops that are smooth and finite on all of ℝ (see the module docs), for
    /// derivative tests.
    pub smooth_only: bool,
    /// Also generate tensor sub-computations (`f64` tensors of rank 1 to 3, dimensions
    /// 1 to 4) inside the scalar functions, and loops carrying tensors. Signatures stay
    /// scalar.
    pub tensors: bool,
}

impl Default for GenOptions {
    /// Two parameters, about 16 instructions, loops and calls, `f64` only, every op,
    /// no tensors.
    fn default() -> Self {
        GenOptions {
            num_params: 2,
            num_insts: 16,
            loops: true,
            calls: true,
            all_types: false,
            smooth_only: false,
            tensors: false,
        }
    }
}

/// A random well-typed, verifiable module for `seed`; the last function is `@main`.
/// Deterministic: the same seed and options give the same module.
pub fn random_module(seed: u64, opts: &GenOptions) -> Module {
    let mut g = Gen {
        rng: Rng(seed ^ 0x6a09_e667_f3bc_c909),
        opts: opts.clone(),
        scopes: Vec::new(),
        indices: Vec::new(),
        ranges: Vec::new(),
        n_param: None,
        helpers: Vec::new(),
        budget: 0,
        depth: 0,
        counter: 0,
        used: HashSet::new(),
    };
    let mut module = Module::new();
    if opts.calls {
        let count = 1 + g.rng.below(2);
        for k in 0..count {
            let f = g
                .function(&format!("h{k}"), false)
                .expect("testgen only builds well-typed instructions");
            g.helpers.push((f.name.clone(), f.sig.clone()));
            module.funcs.push(f);
        }
    }
    let main = g
        .function("main", true)
        .expect("testgen only builds well-typed instructions");
    module.funcs.push(main);
    module
}

/// splitmix64: tiny, fast, good enough for test generation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n == 0`).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// True with probability `num/den`.
    fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }

    fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())].clone()
    }
}

const SMOOTH_UNARY: &[Op] = &[Op::Neg, Op::Sin, Op::Cos, Op::Tanh, Op::Sigmoid, Op::Erf];
const ALL_UNARY: &[Op] = &[
    Op::Neg,
    Op::Sqrt,
    Op::Exp,
    Op::Expm1,
    Op::Log,
    Op::Log1p,
    Op::Sin,
    Op::Cos,
    Op::Tan,
    Op::Tanh,
    Op::Sigmoid,
    Op::Erf,
    Op::Abs,
    Op::Floor,
    Op::Ceil,
    Op::Round,
    Op::Trunc,
];
const SMOOTH_BINARY: &[Op] = &[Op::Add, Op::Sub, Op::Mul];
const ALL_BINARY: &[Op] = &[
    Op::Add,
    Op::Sub,
    Op::Mul,
    Op::Div,
    Op::Pow,
    Op::Min,
    Op::Max,
    Op::Atan2,
    Op::Copysign,
];
const BOUNDED: &[Op] = &[Op::Sin, Op::Cos, Op::Tanh, Op::Sigmoid, Op::Erf];
const COMPARE: &[Op] = &[Op::Lt, Op::Le, Op::Gt, Op::Ge, Op::Eq, Op::Ne];
const INT_OPS: &[Op] = &[Op::Add, Op::Sub, Op::Mul, Op::Min, Op::Max];
const CONSTS: &[f64] = &[0.5, -1.5, 2.0, 0.25, 3.0, -0.75, 1.0, 0.1];

struct Gen {
    rng: Rng,
    opts: GenOptions,
    /// Values visible at the current point, innermost scope last.
    scopes: Vec<Vec<Value>>,
    /// Indices of the enclosing loops (small: in -1..=4), usable as loop starts.
    indices: Vec<Value>,
    /// For each of `indices`, `(lo, hi)`: every value the index takes is in `lo..hi`.
    ranges: Vec<(i64, i64)>,
    /// `@main`'s `%n`, when it has one.
    n_param: Option<Value>,
    /// Functions generated so far, callable.
    helpers: Vec<(String, Signature)>,
    /// Instructions still to generate in the current function.
    budget: usize,
    depth: usize,
    /// For fresh names.
    counter: usize,
    /// Values used as operands so far (to fold dead ends into the results).
    used: HashSet<Value>,
}

type R<T> = Result<T, BuildError>;

impl Gen {
    fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{}", self.counter)
    }

    /// Records `v` as visible; names about a third of them.
    fn add(&mut self, b: &mut FunctionBuilder, v: Value) -> Value {
        if self.rng.chance(1, 3) {
            let name = self.fresh("t");
            b.set_name(v, &name);
        }
        if let Some(s) = self.scopes.last_mut() {
            s.push(v);
        }
        v
    }

    fn take(&mut self, n: usize) {
        self.budget = self.budget.saturating_sub(n);
    }

    /// A visible value of type `ty`, biased towards recent ones.
    fn pick(&mut self, b: &FunctionBuilder, ty: Type) -> Option<Value> {
        let cands: Vec<Value> = self
            .scopes
            .iter()
            .flatten()
            .copied()
            .filter(|&v| b.ty(v) == ty)
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

    /// A visible `f64` value, creating a constant if there is none.
    fn f64_val(&mut self, b: &mut FunctionBuilder) -> Value {
        match self.pick(b, Type::F64) {
            Some(v) => v,
            None => {
                let c = self.rng.pick(CONSTS);
                let v = b.const_f64(c);
                self.add(b, v)
            }
        }
    }

    fn ins1(&mut self, b: &mut FunctionBuilder, op: Op, args: &[Value]) -> R<Value> {
        self.used.extend(args.iter().copied());
        let v = b.ins1(op, args)?;
        self.take(1);
        Ok(self.add(b, v))
    }

    fn function(&mut self, name: &str, is_main: bool) -> R<crate::function::Function> {
        let mut b = FunctionBuilder::new(name);
        for (n, sig) in &self.helpers {
            b.declare(n.clone(), sig.clone());
        }
        self.scopes = vec![Vec::new()];
        self.used.clear();
        self.indices.clear();
        self.ranges.clear();
        self.depth = 0;
        self.n_param = None;
        let nparams = if is_main {
            self.opts.num_params.max(1)
        } else {
            1 + self.rng.below(2)
        };
        for k in 0..nparams {
            let x = b.named_param(&format!("x{k}"), Type::F64);
            self.scopes[0].push(x);
        }
        if is_main && self.opts.all_types {
            let n = b.named_param("n", Type::I64);
            self.scopes[0].push(n);
            self.n_param = Some(n);
        }
        self.budget = if is_main {
            self.opts.num_insts
        } else {
            (self.opts.num_insts / 3).max(2)
        };
        while self.budget > 0 {
            self.step(&mut b)?;
        }
        if self.opts.tensors {
            self.fold_tensors(&mut b)?;
        }
        let nres = 1 + self.rng.below(2);
        let mut results = Vec::with_capacity(nres);
        // The first result adds up the latest unused f64 values (at most four), so most
        // of the program is live and the result depends on most inputs.
        let dead_ends: Vec<Value> = self.scopes[0]
            .iter()
            .rev()
            .copied()
            .filter(|&v| b.ty(v) == Type::F64 && !self.used.contains(&v))
            .take(4)
            .collect();
        let mut acc: Option<Value> = None;
        for v in dead_ends {
            acc = Some(match acc {
                None => v,
                Some(a) => {
                    let s = b.ins1(Op::Add, &[a, v])?;
                    self.add(&mut b, s)
                }
            });
        }
        if let Some(v) = acc {
            results.push(v);
        }
        while results.len() < nres {
            let v = self.f64_val(&mut b);
            results.push(v);
        }
        b.ret(&results)?;
        b.finish()
    }

    fn step(&mut self, b: &mut FunctionBuilder) -> R<()> {
        let c = self.rng.below(100);
        if self.opts.loops && self.depth < MAX_LOOP_DEPTH && self.budget >= 3 && c < 12 {
            return self.gen_loop(b);
        }
        if self.opts.calls && !self.helpers.is_empty() && (12..20).contains(&c) {
            return self.gen_call(b);
        }
        if self.opts.all_types && (20..45).contains(&c) {
            return self.gen_typed(b);
        }
        if self.opts.tensors && (45..72).contains(&c) {
            return self.gen_tensor(b);
        }
        self.gen_float(b)
    }

    /// One `f64`-valued computation.
    fn gen_float(&mut self, b: &mut FunctionBuilder) -> R<()> {
        let smooth = self.opts.smooth_only;
        match self.rng.below(9) {
            0 | 1 => {
                let x = self.f64_val(b);
                let op = self.rng.pick(if smooth { SMOOTH_UNARY } else { ALL_UNARY });
                self.ins1(b, op, &[x])?;
            }
            2 | 3 => {
                let x = self.f64_val(b);
                let y = self.f64_val(b);
                let op = self
                    .rng
                    .pick(if smooth { SMOOTH_BINARY } else { ALL_BINARY });
                self.ins1(b, op, &[x, y])?;
            }
            4 => {
                let (x, y, z) = (self.f64_val(b), self.f64_val(b), self.f64_val(b));
                self.ins1(b, Op::Fma, &[x, y, z])?;
            }
            5 => {
                let x = self.f64_val(b);
                let n = if smooth {
                    self.rng.below(4) as i32
                } else {
                    self.rng.below(9) as i32 - 4
                };
                self.ins1(b, Op::Powi(n), &[x])?;
            }
            6 => {
                // exp of a bounded value, or a division by 1 + y*y.
                let x = self.f64_val(b);
                if self.rng.chance(1, 2) {
                    let op = self.rng.pick(BOUNDED);
                    let u = self.ins1(b, op, &[x])?;
                    self.ins1(b, Op::Exp, &[u])?;
                } else {
                    let y = self.f64_val(b);
                    let yy = self.ins1(b, Op::Mul, &[y, y])?;
                    let one = b.const_f64(1.0);
                    self.take(1);
                    let d = self.ins1(b, Op::Add, &[one, yy])?;
                    self.ins1(b, Op::Div, &[x, d])?;
                }
            }
            7 => {
                let c = self.rng.pick(CONSTS);
                let v = b.const_f64(c);
                self.take(1);
                self.add(b, v);
            }
            _ => {
                let (x, y) = (self.f64_val(b), self.f64_val(b));
                let op = self.rng.pick(COMPARE);
                let c = self.ins1(b, op, &[x, y])?;
                let (u, v) = (self.f64_val(b), self.f64_val(b));
                self.ins1(b, Op::Select, &[c, u, v])?;
            }
        }
        Ok(())
    }

    /// An `i64` value: a visible one, or a small constant.
    fn i64_val(&mut self, b: &mut FunctionBuilder) -> Value {
        match self.pick(b, Type::I64) {
            Some(v) if self.rng.chance(3, 4) => v,
            _ => {
                let k = self.rng.below(7) as i64 - 3;
                let v = b.constant(Constant::I64(k));
                self.take(1);
                self.add(b, v)
            }
        }
    }

    /// Computations over `i64`, `bool` and `f32` (only the smooth-safe ones under
    /// `smooth_only`).
    fn gen_typed(&mut self, b: &mut FunctionBuilder) -> R<()> {
        let smooth = self.opts.smooth_only;
        let choice = self.rng.below(if smooth { 3 } else { 7 });
        match choice {
            0 => {
                let (x, y) = (self.i64_val(b), self.i64_val(b));
                let op = self.rng.pick(INT_OPS);
                self.ins1(b, op, &[x, y])?;
            }
            1 => {
                let x = self.i64_val(b);
                self.ins1(b, Op::Cast(ScalarType::F64), &[x])?;
            }
            2 => {
                let (x, y) = (self.i64_val(b), self.i64_val(b));
                let op = self.rng.pick(COMPARE);
                let c = self.ins1(b, op, &[x, y])?;
                let (u, v) = (self.f64_val(b), self.f64_val(b));
                self.ins1(b, Op::Select, &[c, u, v])?;
            }
            3 => {
                // f32: convert, compute, convert back.
                let f32_ty = Type::F32;
                let x = match self.pick(b, f32_ty) {
                    Some(v) if self.rng.chance(1, 2) => v,
                    _ => {
                        let x = self.f64_val(b);
                        self.ins1(b, Op::Cast(ScalarType::F32), &[x])?
                    }
                };
                let y = if self.rng.chance(1, 2) {
                    let op = self.rng.pick(ALL_UNARY);
                    self.ins1(b, op, &[x])?
                } else {
                    let c = b.constant(Constant::F32(self.rng.pick(CONSTS) as f32));
                    self.take(1);
                    let op = self.rng.pick(ALL_BINARY);
                    self.ins1(b, op, &[x, c])?
                };
                if self.rng.chance(1, 2) {
                    self.ins1(b, Op::Cast(ScalarType::F64), &[y])?;
                }
            }
            4 => {
                let x = self.f64_val(b);
                let to = self.rng.pick(&[ScalarType::I64, ScalarType::Bool]);
                self.ins1(b, Op::Cast(to), &[x])?;
            }
            5 => {
                // bool logic: eq/ne/select over bools, a bool constant, cast to f64.
                let x = match self.pick(b, Type::BOOL) {
                    Some(v) => v,
                    None => {
                        let v = b.constant(Constant::Bool(self.rng.chance(1, 2)));
                        self.take(1);
                        self.add(b, v)
                    }
                };
                let y = self.pick(b, Type::BOOL).unwrap_or(x);
                let op = self.rng.pick(&[Op::Eq, Op::Ne]);
                let c = self.ins1(b, op, &[x, y])?;
                let s = self.ins1(b, Op::Select, &[c, y, x])?;
                self.ins1(b, Op::Cast(ScalarType::F64), &[s])?;
            }
            _ => {
                let (x, y) = (self.f64_val(b), self.f64_val(b));
                let op = self.rng.pick(COMPARE);
                let c = self.ins1(b, op, &[x, y])?;
                self.ins1(b, Op::Cast(ScalarType::F64), &[c])?;
            }
        }
        Ok(())
    }

    fn gen_call(&mut self, b: &mut FunctionBuilder) -> R<()> {
        let k = self.rng.below(self.helpers.len());
        let (name, sig) = self.helpers[k].clone();
        let mut args = Vec::with_capacity(sig.params.len());
        for &t in &sig.params {
            let v = match self.pick(b, t) {
                Some(v) => v,
                None => self.f64_val(b),
            };
            args.push(v);
        }
        self.used.extend(args.iter().copied());
        let results = b.call(&name, &args)?;
        self.take(1);
        for v in results {
            self.add(b, v);
        }
        Ok(())
    }

    fn gen_loop(&mut self, b: &mut FunctionBuilder) -> R<()> {
        let mut dyn_bounds = Vec::new();
        // Trip counts stay at most 5: starts are in -1..=4, ends at most 4 when the
        // start is dynamic, and at most start + 5 when it is an immediate.
        // `lo`: the least value the index can take.
        let (start, lo) = if !self.indices.is_empty() && self.rng.chance(1, 4) {
            let k = self.rng.below(self.indices.len());
            dyn_bounds.push(self.indices[k]);
            (None, self.ranges[k].0)
        } else {
            let s = self.rng.below(3) as i64 - 1;
            (Some(s), s)
        };
        let use_n = self.n_param.is_some() && self.rng.chance(1, 3);
        let end = if use_n {
            if let Some(n) = self.n_param {
                let four = b.constant(Constant::I64(4));
                let m = b.ins1(Op::Min, &[n, four])?;
                self.take(2);
                dyn_bounds.push(m);
            }
            Bound::Dyn
        } else {
            match start {
                Some(s) => Bound::Imm(s + self.rng.below(6) as i64),
                None => Bound::Imm(self.rng.below(5) as i64),
            }
        };
        let bounds = LoopBounds {
            start: start.map_or(Bound::Dyn, Bound::Imm),
            end,
        };
        // Every value the index takes is in `lo..hi` (a dynamic end is `min(%n, 4)`).
        let hi = match end {
            Bound::Imm(e) => e,
            Bound::Dyn => 4,
        };
        // The leading dimension a carried tensor needs so the index is always in range
        // for it, when the index can be used as one at all.
        let need = (lo >= 0 && hi <= tensors::MAX_DIM as i64).then(|| hi.max(1) as usize);
        let ncarried = if self.rng.chance(1, 10) {
            0
        } else {
            1 + self.rng.below(3)
        };
        let mut inits = Vec::with_capacity(ncarried);
        for _ in 0..ncarried {
            let v = if self.opts.tensors && self.rng.chance(1, 3) {
                self.tensor_init(b, need)?
            } else if self.opts.all_types && !self.opts.smooth_only && self.rng.chance(1, 4) {
                let ty = self.rng.pick(&[Type::I64, Type::BOOL, Type::F32]);
                match self.pick(b, ty) {
                    Some(v) => v,
                    None => self.f64_val(b),
                }
            } else {
                self.f64_val(b)
            };
            inits.push(v);
        }
        self.take(1);
        self.used.extend(dyn_bounds.iter().chain(&inits).copied());
        let results = b.build_loop(bounds, &dyn_bounds, &inits, |b, i, carried| {
            self.loop_body(b, i, (lo, hi), carried)
        })?;
        for v in results {
            let name = self.fresh("r");
            b.set_name(v, &name);
            if let Some(s) = self.scopes.last_mut() {
                s.push(v);
            }
        }
        Ok(())
    }

    fn loop_body(
        &mut self,
        b: &mut FunctionBuilder,
        i: Value,
        range: (i64, i64),
        carried: &[Value],
    ) -> R<Vec<Value>> {
        let name = self.fresh("i");
        b.set_name(i, &name);
        let mut scope = vec![i];
        for &c in carried {
            let name = self.fresh("c");
            b.set_name(c, &name);
            scope.push(c);
        }
        self.scopes.push(scope);
        self.indices.push(i);
        self.ranges.push(range);
        self.depth += 1;
        let outer_budget = self.budget;
        let n = (1 + self.rng.below(5)).min(outer_budget.max(1));
        self.budget = n;
        let mut result = Ok(());
        while self.budget > 0 && result.is_ok() {
            result = self.step(b);
        }
        let used = n;
        let mut next = Vec::with_capacity(carried.len());
        if result.is_ok() {
            for &c in carried {
                let ty = b.ty(c);
                let inner: Vec<Value> = self
                    .scopes
                    .last()
                    .map(|s| s.iter().copied().filter(|&v| b.ty(v) == ty).collect())
                    .unwrap_or_default();
                let mut v = if !inner.is_empty() && self.rng.chance(3, 4) {
                    inner[inner.len() - 1 - self.rng.below(inner.len().min(3))]
                } else {
                    self.pick(b, ty).unwrap_or(c)
                };
                if let Type::Tensor(..) = ty {
                    match self.tensor_yield(b, v, i, range) {
                        Ok(w) => v = w,
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                // Tensors too: a bounded carried value keeps matmuls from compounding.
                if ty.is_float() && self.opts.smooth_only && self.rng.chance(2, 3) {
                    let op = self.rng.pick(&[Op::Tanh, Op::Sin]);
                    match b.ins1(op, &[v]) {
                        Ok(w) => v = w,
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                self.used.insert(v);
                next.push(v);
            }
        }
        self.depth -= 1;
        self.indices.pop();
        self.ranges.pop();
        self.scopes.pop();
        self.budget = outer_budget.saturating_sub(used);
        result.map(|()| next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_ends_with_main() {
        for seed in 0..20 {
            for opts in [
                GenOptions::default(),
                GenOptions {
                    all_types: true,
                    ..GenOptions::default()
                },
                GenOptions {
                    smooth_only: true,
                    all_types: true,
                    ..GenOptions::default()
                },
                GenOptions {
                    tensors: true,
                    ..GenOptions::default()
                },
                GenOptions {
                    tensors: true,
                    smooth_only: true,
                    all_types: true,
                    ..GenOptions::default()
                },
            ] {
                let a = random_module(seed, &opts);
                let b = random_module(seed, &opts);
                assert_eq!(format!("{a:?}"), format!("{b:?}"));
                let main = a.funcs.last().unwrap();
                assert_eq!(main.name, "main");
                assert!(main.sig.results.iter().all(|&t| t == Type::F64));
                assert!(!main.sig.results.is_empty());
            }
        }
    }

    fn tensor_opts(seed: u64) -> GenOptions {
        GenOptions {
            num_params: 1 + (seed % 3) as usize,
            num_insts: 24,
            loops: !seed.is_multiple_of(4),
            calls: seed.is_multiple_of(3),
            all_types: seed.is_multiple_of(5),
            smooth_only: seed.is_multiple_of(2),
            tensors: true,
        }
    }

    fn has_tensor(m: &Module) -> bool {
        m.funcs
            .iter()
            .any(|f| f.values.iter().any(|(_, d)| d.ty.scalar().is_none()))
    }

    /// Every op name of `m` (loops included: `loop` carrying a tensor is `loop[T]`,
    /// an `extract`/`insert` at a loop index is `extract@i`/`insert@i`).
    fn op_names(m: &Module, out: &mut HashSet<String>) {
        use crate::function::ValueDef;
        for f in &m.funcs {
            for (_, d) in f.insts.iter() {
                out.insert(d.op.name().to_string());
                if matches!(d.op, Op::Loop(_))
                    && d.results.iter().any(|&r| f.ty(r).scalar().is_none())
                {
                    out.insert("loop[T]".into());
                }
                if matches!(d.op, Op::Extract | Op::Insert) {
                    let i = d.args[d.args.len() - 1];
                    if matches!(f.values[i].def, ValueDef::Param(r, 0) if r != f.body) {
                        out.insert(format!("{}@i", d.op.name()));
                    }
                }
            }
        }
    }

    /// Tensor programs verify, evaluate without error in the interpreter (no index out
    /// of range), keep scalar signatures, and are finite under `smooth_only`.
    #[test]
    fn tensor_programs_verify_and_evaluate() {
        let mut with_tensors = 0;
        for seed in 0..120 {
            let opts = tensor_opts(seed);
            let m = random_module(seed, &opts);
            let text = crate::print_module(&m);
            if let Err(e) = crate::verify_module(&m) {
                panic!("seed {seed}: {e}\n{text}");
            }
            with_tensors += usize::from(has_tensor(&m));
            // Small shapes: rank 1 to 3, dimensions 1 to 4, except the vectors `dot`
            // takes from a flattened tensor.
            for f in &m.funcs {
                for (_, d) in f.insts.iter() {
                    for &r in &d.results {
                        let Type::Tensor(_, s) = f.ty(r) else {
                            continue;
                        };
                        let flat = matches!(d.op, Op::Reshape(_)) && s.rank() == 1;
                        assert!(
                            (1..=3).contains(&s.rank())
                                && (flat || s.dims().iter().all(|&n| (1..=4).contains(&n))),
                            "seed {seed}: {}\n{text}",
                            f.ty(r)
                        );
                    }
                }
            }
            for f in &m.funcs {
                assert!(
                    f.sig
                        .params
                        .iter()
                        .chain(&f.sig.results)
                        .all(|t| t.scalar().is_some()),
                    "seed {seed}: tensor in a signature\n{text}"
                );
            }
            let main = m.funcs.last().unwrap();
            let args: Vec<crate::Val> = main
                .sig
                .params
                .iter()
                .enumerate()
                .map(|(k, &t)| {
                    if t == Type::I64 {
                        crate::Val::I64(seed as i64 % 7 - 2)
                    } else {
                        crate::Val::F64(0.3 - 0.4 * k as f64)
                    }
                })
                .collect();
            let out = crate::interp::eval(&m, "main", &args)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{text}"));
            if opts.smooth_only {
                // (`i64` `min`/`max` are fine: constant in the inputs.)
                for f in &m.funcs {
                    for (_, d) in f.insts.iter() {
                        let float = d.results.iter().any(|&r| f.ty(r).is_float());
                        let bad = [
                            "abs",
                            "max",
                            "min",
                            "reduce_max",
                            "reduce_min",
                            "log",
                            "sqrt",
                        ];
                        assert!(
                            !(float && bad.contains(&d.op.name())),
                            "seed {seed}: {} under smooth_only\n{text}",
                            d.op.name()
                        );
                    }
                }
                for v in out {
                    let x = v.as_f64().unwrap();
                    assert!(x.is_finite(), "seed {seed}: result {x}\n{text}");
                }
            }
        }
        assert!(
            with_tensors >= 110,
            "only {with_tensors} of 120 programs hold tensors"
        );
    }

    /// Every tensor op appears across a few seeds, as do loops carrying tensors and
    /// `extract`/`insert` at a loop index.
    #[test]
    fn tensor_programs_cover_every_tensor_op() {
        let mut names = HashSet::new();
        for seed in 0..200 {
            op_names(&random_module(seed, &tensor_opts(seed)), &mut names);
        }
        for op in [
            "fill",
            "broadcast",
            "iota",
            "sum",
            "mean",
            "logsumexp",
            "reduce_max",
            "reduce_min",
            "matmul",
            "dot",
            "transpose",
            "reshape",
            "slice",
            "pad",
            "concat",
            "extract",
            "insert",
            "select",
            "fma",
            "loop[T]",
            "extract@i",
            "insert@i",
        ] {
            assert!(names.contains(op), "no `{op}` in 200 tensor programs");
        }
    }

    /// Without the option, no value anywhere has a tensor type.
    #[test]
    fn no_tensors_unless_asked() {
        for seed in 0..100 {
            let opts = GenOptions {
                tensors: false,
                ..tensor_opts(seed)
            };
            assert!(!has_tensor(&random_module(seed, &opts)), "seed {seed}");
        }
    }
}
