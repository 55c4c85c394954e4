//! Traced structured loops: [`fori_loop`] records one `loop` region whose body is the
//! closure traced **once**, instead of unrolling it, so a Rust time-stepper traces to
//! O(body) IR whatever its step count, and reverse mode reverses it with checkpointing
//! (`revloop`).
//!
//! ```
//! use jitad_ir::trace::{fori_loop, trace_scalar};
//! // x ← x·(1 + h) for n steps: (1 + h)ⁿ·x, recorded as one loop of one body.
//! let n = 1000;
//! let f = trace_scalar("growth", &[1.0, 0.001], |p| {
//!     let h = p[1];
//!     fori_loop(0, n, p[0], |_i, x| x + x * h)
//! })
//! .unwrap();
//! assert!(f.num_insts() < 10);
//! let y = jitad_ir::interp::eval_function_f64(&f, None, &[1.0, 0.001]).unwrap()[0];
//! let mut x = 1.0f64;
//! for _ in 0..n {
//!     x = x + x * 0.001;
//! }
//! assert_eq!(y, x);
//! ```
//!
//! # The carry
//!
//! The loop-carried state is any [`Carry`]: a [`Var`], a [`Tensor`], an [`Index`],
//! and tuples (up to four), arrays and `Vec`s of carries. Its leaves become the loop's
//! carried values, in order; the body must return a carry of the same structure and
//! types (else [`TraceError::CarryStructure`] or a yield type error).
//!
//! # Examples inside the body
//!
//! The body is traced once, with the **first** iteration's example (the index `lo`, the
//! initial carry). Its data-dependent decisions (comparisons on `Var`) are answered
//! from that example and recorded as guards checked on every iteration. The loop's
//! results' examples are computed by running the recorded loop in the interpreter on
//! the examples it uses, so they equal what the traced function computes, bit for
//! bit; when a guard fails there (a later iteration would take another branch), the
//! trace fails with [`TraceError::LoopExample`] instead of recording a wrong program.
//! (So tracing costs one interpreted run of the loop, O(trips × body) time, and O(body)
//! IR.) In an abstract trace ([`super::trace_tensors_abstract`]) the body is traced
//! once with its parameters known by type, and the loop is **not** run: the results
//! are known by their types, tracing costs O(body), and a data-dependent decision in
//! the body fails the trace ([`TraceError::Abstract`]) instead of being guarded.
//! Values computed in the body cannot be used after the loop
//! ([`TraceError::LoopEscape`]); pass them out through the carry.
//!
//! Outside a trace, `fori_loop` is a plain Rust loop.
//!
//! # Scans
//!
//! A scan (every step's output, not only the final state) is a loop whose carry also
//! holds the outputs, written into a tensor with [`Tensor::insert`] at the index:
//!
//! ```
//! use jitad_ir::trace::{fori_loop, trace_tensors, Tensor};
//! use jitad_ir::Val;
//! let f = trace_tensors("orbit", &[Val::F64(0.5)], |a| {
//!     let r = a[0].to_var();
//!     let init = (jitad_ir::Var::constant(0.1), Tensor::zeros(&[4]));
//!     let (_, xs) = fori_loop(0, 4, init, |i, (x, xs)| {
//!         let x = x * r * (1.0 - x) * 4.0; // the logistic map
//!         (x, xs.insert(i, x))
//!     });
//!     vec![xs]
//! })
//! .unwrap();
//! let xs = jitad_ir::interp::eval_function(&f, None, &[Val::F64(0.5)]).unwrap();
//! let mut x = 0.1f64;
//! let want: Vec<f64> = (0..4).map(|_| { x = x * 0.5 * (1.0 - x) * 4.0; x }).collect();
//! assert_eq!(xs[0].as_tensor().unwrap().as_f64().unwrap(), &want[..]);
//! ```
//!
//! Loop-carried tensors are recorded, evaluated and (by `jitad-passes`) reversed like
//! scalars.

use super::tensor::Tensor;
use super::{fail_abstract, is_abstract, with_ctx, Ctx, Known, TraceError, Var};
use crate::function::{Function, Inst, Region, Value, ValueDef};
use crate::interp::{Interpreter, Val};
use crate::op::{Bound, LoopBounds, Op, Signature};
use std::collections::{HashMap, HashSet};
use std::ops::{Add, Mul, Sub};

/// A traced `i64`: a loop index or a bound, with its example value.
#[derive(Clone, Copy, Debug)]
pub struct Index {
    pub(crate) x: i64,
    pub(crate) node: Option<(u32, Value)>,
}

impl Index {
    /// An untraced constant.
    pub fn constant(x: i64) -> Index {
        Index { x, node: None }
    }

    /// An index of example `x` recorded as `node`; 0 when `node` belongs to an abstract
    /// trace (no made-up example is kept).
    pub(crate) fn new(x: i64, node: Option<(u32, Value)>) -> Index {
        let x = if is_abstract(node) { 0 } else { x };
        Index { x, node }
    }

    /// The example value. **Value-dependent**: an index of an abstract trace (a loop
    /// index, a traced bound) has none, so this fails that trace with
    /// [`TraceError::Abstract`] and returns 0; [`Index::try_value`] returns the error
    /// instead.
    pub fn value(&self) -> i64 {
        if self.is_abstract() {
            fail_abstract(|| "`Index::value`".into());
        }
        self.x
    }

    /// The example value, or [`TraceError::Abstract`] for an index of an abstract
    /// trace.
    pub fn try_value(&self) -> Result<i64, TraceError> {
        if self.is_abstract() {
            let func = with_ctx(|c| c.name()).unwrap_or_else(|| "(untraced)".into());
            return Err(TraceError::Abstract {
                func,
                what: "`Index::try_value`".into(),
            });
        }
        Ok(self.x)
    }

    /// True when recorded by a trace (not a constant).
    pub fn is_traced(&self) -> bool {
        self.node.is_some()
    }

    /// True when recorded by an abstract trace: it has a type and no value.
    pub fn is_abstract(&self) -> bool {
        is_abstract(self.node)
    }

    /// The index as an `f64` [`Var`] (IR `cast`).
    pub fn to_var(self) -> Var {
        let x = self.x as f64;
        let Some(first) = self.node else {
            return Var::constant(x);
        };
        with_ctx(|ctx| {
            let gen = ctx.scope_generation();
            let node = ctx
                .node_value(self.node, &Val::I64(self.x))
                .and_then(|v| ctx.ins1v(Op::Cast(crate::types::ScalarType::F64), &[v], Val::F64(x)))
                .map(|v| (gen, v));
            Var::new(x, node)
        })
        .unwrap_or(Var::new(x, Some(first)))
    }

    fn bin(self, op: Op, other: Index, x: i64) -> Index {
        let Some(first) = self.node.or(other.node) else {
            return Index::constant(x);
        };
        with_ctx(|ctx| {
            let gen = ctx.scope_generation();
            let a = ctx.node_value(self.node, &Val::I64(self.x));
            let b = ctx.node_value(other.node, &Val::I64(other.x));
            let node = a
                .zip(b)
                .and_then(|(a, b)| ctx.ins1v(op, &[a, b], Val::I64(x)))
                .map(|v| (gen, v));
            Index::new(x, node)
        })
        .unwrap_or(Index::new(x, Some(first)))
    }
}

impl From<i64> for Index {
    fn from(x: i64) -> Index {
        Index::constant(x)
    }
}

macro_rules! index_binop {
    ($Tr:ident, $m:ident, $op:expr, $f:ident) => {
        impl $Tr for Index {
            type Output = Index;
            /// Wrapping, like the IR's `i64` arithmetic.
            fn $m(self, rhs: Index) -> Index {
                self.bin($op, rhs, self.x.$f(rhs.x))
            }
        }
        impl $Tr<i64> for Index {
            type Output = Index;
            fn $m(self, rhs: i64) -> Index {
                $Tr::$m(self, Index::constant(rhs))
            }
        }
    };
}

index_binop!(Add, add, Op::Add, wrapping_add);
index_binop!(Sub, sub, Op::Sub, wrapping_sub);
index_binop!(Mul, mul, Op::Mul, wrapping_mul);

/// One carried value of a traced loop.
#[derive(Clone, Debug)]
pub enum Leaf {
    /// A scalar.
    Var(Var),
    /// A tensor (or rank-0 value).
    Tensor(Tensor),
    /// An `i64`.
    Index(Index),
}

impl Leaf {
    fn node(&self) -> Option<(u32, Value)> {
        match self {
            Leaf::Var(v) => v.node,
            Leaf::Tensor(t) => t.node,
            Leaf::Index(i) => i.node,
        }
    }

    fn val(&self) -> Known {
        match self {
            Leaf::Var(v) if v.is_abstract() => Known::Type(crate::types::Type::F64),
            Leaf::Var(v) => Known::Val(Val::F64(v.x)),
            Leaf::Tensor(t) => t.val.clone(),
            Leaf::Index(i) if i.is_abstract() => {
                Known::Type(crate::types::Type::Scalar(crate::types::ScalarType::I64))
            }
            Leaf::Index(i) => Known::Val(Val::I64(i.x)),
        }
    }

    /// A leaf of the same kind known as `x`, recorded as `node`.
    fn with(&self, x: Known, node: Option<(u32, Value)>) -> Leaf {
        match self {
            Leaf::Var(_) => Leaf::Var(Var::new(
                x.val().and_then(Val::as_f64).unwrap_or(f64::NAN),
                node,
            )),
            Leaf::Tensor(_) => Leaf::Tensor(Tensor::traced(x, node)),
            Leaf::Index(_) => {
                Leaf::Index(Index::new(x.val().and_then(Val::as_i64).unwrap_or(0), node))
            }
        }
    }
}

/// A loop-carried state: a structure of [`Leaf`]s (see the [module docs](self)).
/// Implement it for your own state type by listing its fields' leaves in order.
pub trait Carry: Sized {
    /// Appends this value's leaves, in order.
    fn leaves(&self, out: &mut Vec<Leaf>);
    /// A value of the same structure as `self` built from `leaves` (taken in order);
    /// `None` when a leaf is missing or of another kind.
    fn rebuild(&self, leaves: &mut dyn Iterator<Item = Leaf>) -> Option<Self>;
}

impl Carry for Var {
    fn leaves(&self, out: &mut Vec<Leaf>) {
        out.push(Leaf::Var(*self));
    }
    fn rebuild(&self, leaves: &mut dyn Iterator<Item = Leaf>) -> Option<Self> {
        match leaves.next()? {
            Leaf::Var(v) => Some(v),
            Leaf::Tensor(_) | Leaf::Index(_) => None,
        }
    }
}

impl Carry for Tensor {
    fn leaves(&self, out: &mut Vec<Leaf>) {
        out.push(Leaf::Tensor(self.clone()));
    }
    fn rebuild(&self, leaves: &mut dyn Iterator<Item = Leaf>) -> Option<Self> {
        match leaves.next()? {
            Leaf::Tensor(t) => Some(t),
            Leaf::Var(_) | Leaf::Index(_) => None,
        }
    }
}

impl Carry for Index {
    fn leaves(&self, out: &mut Vec<Leaf>) {
        out.push(Leaf::Index(*self));
    }
    fn rebuild(&self, leaves: &mut dyn Iterator<Item = Leaf>) -> Option<Self> {
        match leaves.next()? {
            Leaf::Index(i) => Some(i),
            Leaf::Var(_) | Leaf::Tensor(_) => None,
        }
    }
}

impl<T: Carry> Carry for Vec<T> {
    fn leaves(&self, out: &mut Vec<Leaf>) {
        for t in self {
            t.leaves(out);
        }
    }
    fn rebuild(&self, leaves: &mut dyn Iterator<Item = Leaf>) -> Option<Self> {
        self.iter().map(|t| t.rebuild(leaves)).collect()
    }
}

impl<T: Carry, const N: usize> Carry for [T; N] {
    fn leaves(&self, out: &mut Vec<Leaf>) {
        for t in self {
            t.leaves(out);
        }
    }
    fn rebuild(&self, leaves: &mut dyn Iterator<Item = Leaf>) -> Option<Self> {
        let v: Vec<T> = self
            .iter()
            .map(|t| t.rebuild(leaves))
            .collect::<Option<_>>()?;
        v.try_into().ok()
    }
}

macro_rules! tuple_carry {
    ($($T:ident $i:tt),+) => {
        impl<$($T: Carry),+> Carry for ($($T,)+) {
            fn leaves(&self, out: &mut Vec<Leaf>) {
                $(self.$i.leaves(out);)+
            }
            fn rebuild(&self, leaves: &mut dyn Iterator<Item = Leaf>) -> Option<Self> {
                Some(($(self.$i.rebuild(leaves)?,)+))
            }
        }
    };
}

tuple_carry!(A 0);
tuple_carry!(A 0, B 1);
tuple_carry!(A 0, B 1, C 2);
tuple_carry!(A 0, B 1, C 2, D 3);

/// Runs `body(i, carry)` for `i` in `lo..hi` (no trips when `hi <= lo`), threading the
/// carry, and returns the last carry; inside a trace, records **one** `loop` whose body
/// is `body` traced once (see the [module docs](self)). A traced bound ([`Index`]) is a
/// dynamic bound of the loop.
///
/// When the trace fails on the way (a shape error in the body, a carry of another
/// structure, a guard that fails at the example), the error is the trace's and `init`
/// is returned.
pub fn fori_loop<C: Carry>(
    lo: impl Into<Index>,
    hi: impl Into<Index>,
    init: C,
    mut body: impl FnMut(Index, C) -> C,
) -> C {
    let (lo, hi) = (lo.into(), hi.into());
    if with_ctx(|_| ()).is_none() {
        let mut c = init;
        for i in lo.x..hi.x {
            c = body(Index::constant(i), c);
        }
        return c;
    }
    match traced_loop(lo, hi, &init, body) {
        Some(c) => c,
        None => init,
    }
}

/// Records the loop; `None` when the trace failed (the error is in the context).
fn traced_loop<C: Carry>(
    lo: Index,
    hi: Index,
    init: &C,
    body: impl FnOnce(Index, C) -> C,
) -> Option<C> {
    let mut leaves = Vec::new();
    init.leaves(&mut leaves);
    for l in &leaves {
        if let Leaf::Tensor(t) = l {
            if let Err(e) = t.check() {
                with_ctx(|ctx| ctx.fail(e));
                return None;
            }
        }
    }
    let (gen, index, params) = with_ctx(|ctx| open_loop(ctx, lo, hi, &leaves)).flatten()?;
    let body_leaves: Vec<Leaf> = leaves
        .iter()
        .zip(&params)
        .map(|(l, &p)| l.with(l.val(), Some((gen, p))))
        .collect();
    // A `Carry` impl whose `rebuild` disagrees with its `leaves` yields no body output,
    // which `close_loop` reports as a carry of another structure.
    let rebuilt = init.rebuild(&mut body_leaves.into_iter());
    let out = rebuilt.map(|carry| body(Index::new(lo.x, Some((gen, index))), carry));
    let mut out_leaves = Vec::new();
    if let Some(o) = &out {
        o.leaves(&mut out_leaves);
    }
    let results = with_ctx(|ctx| close_loop(ctx, index, &leaves, &out_leaves)).flatten()?;
    let n = results.len();
    let rebuilt = init.rebuild(&mut results.into_iter());
    if rebuilt.is_none() {
        // Only a `Carry` impl whose `rebuild` disagrees with its `leaves` gets here.
        with_ctx(|ctx| {
            let func = ctx.name();
            ctx.fail(TraceError::CarryStructure {
                func,
                expected: n,
                got: 0,
            })
        });
    }
    rebuilt
}

fn bound(ctx: &mut Ctx, b: Index, dyn_bounds: &mut Vec<Value>) -> Option<Bound> {
    if b.node.is_none() {
        return Some(Bound::Imm(b.x));
    }
    dyn_bounds.push(ctx.node_value(b.node, &Val::I64(b.x))?);
    Some(Bound::Dyn)
}

/// Opens the loop and its scope; returns the scope's generation, the index and the
/// carried parameters.
fn open_loop(
    ctx: &mut Ctx,
    lo: Index,
    hi: Index,
    leaves: &[Leaf],
) -> Option<(u32, Value, Vec<Value>)> {
    let mut dyn_bounds = Vec::new();
    let start = bound(ctx, lo, &mut dyn_bounds)?;
    let end = bound(ctx, hi, &mut dyn_bounds)?;
    let inits = leaves
        .iter()
        .map(|l| ctx.known_value(l.node(), &l.val()))
        .collect::<Option<Vec<_>>>()?;
    let (index, params) =
        match ctx
            .builder
            .begin_loop(LoopBounds { start, end }, &dyn_bounds, &inits)
        {
            Ok(x) => x,
            Err(e) => {
                ctx.fail(e.into());
                return None;
            }
        };
    let gen = ctx.push_scope();
    ctx.put(index, Val::I64(lo.x));
    for (&p, l) in params.iter().zip(leaves) {
        if let Known::Val(x) = l.val() {
            ctx.put(p, x);
        }
    }
    Some((gen, index, params))
}

/// Yields `out` and closes the loop and its scope, then (eager traces) evaluates it at
/// the example; returns the result leaves (of `init`'s kinds). An abstract trace's
/// results are known by their types alone: the loop is not run.
fn close_loop(ctx: &mut Ctx, index: Value, init: &[Leaf], out: &[Leaf]) -> Option<Vec<Leaf>> {
    let results = yield_carry(ctx, init, out);
    if results.is_none() {
        ctx.builder.cancel_loop();
    }
    ctx.pop_scope();
    let results = results?;
    let known: Vec<Known> = if ctx.is_abstract() {
        let f = ctx.builder.func();
        results.iter().map(|&r| Known::Type(f.ty(r))).collect()
    } else {
        match eval_loop(ctx, index) {
            Ok(v) => v.into_iter().map(Known::Val).collect(),
            Err(e) => {
                ctx.fail(e);
                return None;
            }
        }
    };
    let gen = ctx.scope_generation();
    let mut leaves = Vec::with_capacity(results.len());
    for ((&r, x), l) in results.iter().zip(known).zip(init) {
        if let Known::Val(v) = &x {
            ctx.put(r, v.clone());
        }
        leaves.push(l.with(x, Some((gen, r))));
    }
    Some(leaves)
}

fn yield_carry(ctx: &mut Ctx, init: &[Leaf], out: &[Leaf]) -> Option<Vec<Value>> {
    if out.len() != init.len() {
        let func = ctx.name();
        ctx.fail(TraceError::CarryStructure {
            func,
            expected: init.len(),
            got: out.len(),
        });
        return None;
    }
    let mut next = Vec::with_capacity(out.len());
    for l in out {
        if let Leaf::Tensor(t) = l {
            if let Err(e) = t.check() {
                ctx.fail(e);
                return None;
            }
        }
        next.push(ctx.known_value(l.node(), &l.val())?);
    }
    match ctx.builder.end_loop(&next) {
        Ok(r) => Some(r),
        Err(e) => {
            ctx.fail(e.into());
            None
        }
    }
}

/// The loop instruction whose body has the index parameter `index`.
fn loop_of(f: &Function, index: Value) -> Option<Inst> {
    match f.values.get(index)?.def {
        ValueDef::Param(region, _) => f.regions.get(region)?.parent,
        ValueDef::Result(..) => None,
    }
}

/// Evaluates the just-closed loop at the example: the loop is copied into a function
/// of the values it uses from outside, which the interpreter runs on their examples.
fn eval_loop(ctx: &Ctx, index: Value) -> Result<Vec<Val>, TraceError> {
    let internal = |detail: &str| TraceError::Example {
        func: ctx.name(),
        op: "loop",
        detail: format!("internal: {detail}"),
    };
    let f = ctx.builder.func();
    let inst = loop_of(f, index).ok_or_else(|| internal("no loop instruction"))?;
    let (g, free) = loop_function(f, inst).ok_or_else(|| internal("malformed loop"))?;
    let args = free
        .iter()
        .map(|&v| ctx.val(v))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| internal("a value used by the loop has no example"))?;
    Interpreter::new()
        .eval(&g, None, &args)
        .map_err(|source| TraceError::LoopExample {
            func: ctx.name(),
            source: Box::new(source),
        })
}

/// A function `(free values...) -> (loop results...)` holding a copy of the loop
/// `inst` of `f`, and the free values: those the loop (its operands and bodies, nested
/// loops included) uses but does not define. Iterative; linear in the loop's size.
fn loop_function(f: &Function, inst: Inst) -> Option<(Function, Vec<Value>)> {
    let data = f.insts.get(inst)?;
    // Free values, in first-use order.
    let mut defined: HashSet<Value> = HashSet::new();
    let mut free = Vec::new();
    let mut seen = HashSet::new();
    let mut use_value = |v: Value, defined: &HashSet<Value>| {
        if !defined.contains(&v) && seen.insert(v) {
            free.push(v);
        }
    };
    for &a in &data.args {
        use_value(a, &defined);
    }
    let mut stack: Vec<Region> = data.regions.to_vec();
    while let Some(r) = stack.pop() {
        let rd = f.regions.get(r)?;
        defined.extend(rd.params.iter().copied());
        for &i in &rd.insts {
            let d = f.insts.get(i)?;
            for &a in &d.args {
                use_value(a, &defined);
            }
            defined.extend(d.results.iter().copied());
            stack.extend(d.regions.iter().copied());
        }
    }
    let mut g = Function::new("loop", Signature::default());
    let mut map: HashMap<Value, Value> = HashMap::new();
    for &v in &free {
        let p = g.add_param(f.ty(v));
        map.insert(v, p);
    }
    let mut work: Vec<(Region, Region)> = Vec::new();
    let body = g.body;
    let results = copy_inst(f, inst, &mut g, body, &mut map, &mut work)?;
    while let Some((old, new)) = work.pop() {
        for &i in &f.regions.get(old)?.insts {
            copy_inst(f, i, &mut g, new, &mut map, &mut work)?;
        }
    }
    g.sig.results = results.iter().map(|&v| g.ty(v)).collect();
    g.append_inst(body, Op::Ret, results, &[], None);
    Some((g, free))
}

/// Copies instruction `i` of `f` to the end of `region` of `g` (its regions empty,
/// queued on `work`); returns its new results.
fn copy_inst(
    f: &Function,
    i: Inst,
    g: &mut Function,
    region: Region,
    map: &mut HashMap<Value, Value>,
    work: &mut Vec<(Region, Region)>,
) -> Option<Vec<Value>> {
    let d = f.insts.get(i)?;
    let mut nested = None;
    if let Some(r) = d.regions.get() {
        let nr = g.new_region();
        for &p in &f.regions.get(r)?.params {
            let np = g.add_region_param(nr, f.ty(p));
            map.insert(p, np);
        }
        work.push((r, nr));
        nested = Some(nr);
    }
    let args = d
        .args
        .iter()
        .map(|a| map.get(a).copied())
        .collect::<Option<Vec<_>>>()?;
    let tys: Vec<_> = d.results.iter().map(|&v| f.ty(v)).collect();
    let ni = g.append_inst(region, d.op.clone(), args, &tys, nested);
    let new_results = g.insts[ni].results.clone();
    for (&o, &n) in d.results.iter().zip(&new_results) {
        map.insert(o, n);
    }
    Some(new_results.to_vec())
}
