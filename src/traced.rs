//! [`Traced`]: a function as IR, with its derivatives one method call away.
//!
//! A `Traced` owns a verified [`Module`] and names its entry function. Every transform
//! returns a new `Traced` whose module holds the derived entry and every function it
//! calls (callees' derivatives included), cleaned up by the [`jitad_passes::optimize`]
//! pipeline, so each stage can be printed ([`Traced::to_jir`]), interpreted
//! ([`Traced::eval`]) or compiled ([`Traced::compile`]).
//!
//! Signatures of derived functions (`x` the entry's parameters, `wrt` the
//! differentiated ones, all float parameters unless a `_wrt` method names them):
//!
//! | method | signature |
//! |---|---|
//! | [`jvp`](Traced::jvp) | `(x..., dx_wrt...) -> (y..., dy...)` |
//! | [`vjp`](Traced::vjp) | `(x..., ybar...) -> (y..., xbar_wrt...)` |
//! | [`grad`](Traced::grad) | `(x...) -> (y, g_wrt...)` (one float result) |
//! | [`hvp`](Traced::hvp) | `(x..., v_wrt...) -> (y, g_wrt..., (H·v)_wrt...)` |
//! | [`hessian`](Traced::hessian) | `(x...) -> (y, g_wrt..., H row-major)` |

use crate::error::{Error, Result};
use jitad_codegen::{CompileOptions, Compiled};
use jitad_ir::{Function, Module, Tensor, Type, Val, Var, VerifiedModule};
use jitad_passes::{DerivativeKind, OptOptions};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Where a derivative's time went ([`Traced::grad_timed`]).
#[derive(Clone, Debug, Default)]
pub struct DeriveTimes {
    /// Copying the module for the transform.
    pub copy: Duration,
    /// The AD transform (with its checks of the source).
    pub transform: Duration,
    /// The clean-up pipeline, all of it.
    pub cleanup: Duration,
    /// The clean-up pipeline per pass.
    pub passes: jitad_passes::pipeline::PassTimes,
    /// Clean-up rounds (the most any function needed).
    pub rounds: usize,
    /// Dropping functions the derivative does not reach, before and after clean-up.
    pub prune: Duration,
}

/// A function as verified IR; see the module docs.
#[derive(Clone, Debug)]
pub struct Traced {
    module: Source,
    entry: String,
}

/// A `Traced`'s module, and whether it passed the verifier in this value's making.
#[derive(Clone, Debug)]
enum Source {
    /// Made from IR (or a part of such a module): differentiating it skips verifying
    /// it again ([`jitad_passes::derive_functions_verified`]).
    Verified(VerifiedModule),
    /// Made by the transforms or changed since.
    Derived(Module),
}

impl Source {
    fn get(&self) -> &Module {
        match self {
            Source::Verified(m) => m.module(),
            Source::Derived(m) => m,
        }
    }
}

/// Traces `f` at `example` (one `f64` parameter `%x0, %x1, ...` per value) and verifies
/// the result. Data-dependent decisions answer from `example` and record guards (see
/// [`mod@jitad_ir::trace`]).
pub fn trace(name: &str, example: &[f64], f: impl FnOnce(&[Var]) -> Vec<Var>) -> Result<Traced> {
    Traced::from_function(jitad_ir::trace(name, example, f)?)
}

/// [`trace`] for a function with one output.
pub fn trace_scalar(name: &str, example: &[f64], f: impl FnOnce(&[Var]) -> Var) -> Result<Traced> {
    trace(name, example, |x| vec![f(x)])
}

/// Traces `f` on tensor (and scalar) arguments at `example` (one parameter `%x0, %x1,
/// ...` per value, of its type) and verifies the result; see
/// [`jitad_ir::trace::trace_tensors`] and [`jitad_ir::trace::Tensor`]. A Rust loop
/// written with [`jitad_ir::fori_loop`] inside `f` records one `loop`.
///
/// ```
/// use jitad::{Tensor, Val};
/// use jitad::ir::tensor::Tensor as Buf;
/// let x = Val::tensor(Buf::f64(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap());
/// let f = jitad::trace_tensors("f", &[x.clone(), Val::F64(0.5)], |a| {
///     // Broadcasting with a scalar argument, a row sum, a total.
///     vec![(&a[0] * a[1].to_var() + 1.0).sum(&[1]).sum(&[0])]
/// })?;
/// assert_eq!(f.eval(&[x, Val::F64(0.5)])?, [Val::F64(9.0)]);
/// # Ok::<(), jitad::Error>(())
/// ```
pub fn trace_tensors(
    name: &str,
    example: &[Val],
    f: impl FnOnce(&[Tensor]) -> Vec<Tensor>,
) -> Result<Traced> {
    Traced::from_function(jitad_ir::trace_tensors(name, example, f)?)
}

/// Traces `f` from the number of its `f64` parameters alone (an **abstract** trace: no
/// traced `Var` has a value, so nothing is evaluated, loops included) and verifies the
/// result. Records the same IR as [`trace`] at any example; code that needs a traced
/// value (a comparison deciding Rust control flow, [`Var::value`]) fails with
/// [`jitad_ir::TraceError::Abstract`]. See [`mod@jitad_ir::trace`] ("Abstract traces").
pub fn trace_abstract(
    name: &str,
    num_params: usize,
    f: impl FnOnce(&[Var]) -> Vec<Var>,
) -> Result<Traced> {
    Traced::from_function(jitad_ir::trace::trace_abstract(name, num_params, f)?)
}

/// Traces `f` on tensor (and scalar) parameters of the given **types** (an abstract
/// trace: each op computes only its result type, never a kernel, so tracing costs
/// O(ops) whatever the batch size) and verifies the result. Records the same IR as
/// [`trace_tensors`] at any example of these types; code that needs a traced value
/// fails with [`jitad_ir::TraceError::Abstract`] naming what asked. Use it to set up
/// a gradient to compile when the values are not needed.
///
/// ```
/// use jitad::{Tensor, Type, Val};
/// use jitad::ir::{tensor::Tensor as Buf, ScalarType, Shape};
/// let m = Type::Tensor(ScalarType::F64, Shape::new(&[2, 2]).unwrap());
/// let f = |a: &[Tensor]| vec![(&a[0] * a[1].to_var() + 1.0).sum(&[0, 1])];
/// let abs = jitad::trace_tensors_abstract("f", &[m, Type::F64], f)?;
/// let x = Val::tensor(Buf::f64(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap());
/// let eager = jitad::trace_tensors("f", &[x.clone(), Val::F64(0.5)], f)?;
/// assert_eq!(abs.to_jir(), eager.to_jir());
/// assert_eq!(abs.eval(&[x, Val::F64(0.5)])?, [Val::F64(9.0)]);
/// # Ok::<(), jitad::Error>(())
/// ```
pub fn trace_tensors_abstract(
    name: &str,
    types: &[Type],
    f: impl FnOnce(&[Tensor]) -> Vec<Tensor>,
) -> Result<Traced> {
    Traced::from_function(jitad_ir::trace::trace_tensors_abstract(name, types, f)?)
}

impl Traced {
    /// Wraps one function (which calls no other) after verifying it.
    pub fn from_function(f: Function) -> Result<Traced> {
        let entry = f.name.clone();
        let mut module = Module::new();
        module.insert(f);
        Traced::from_module(module, &entry)
    }

    /// Wraps function `entry` of `module` after verifying the whole module.
    pub fn from_module(module: Module, entry: &str) -> Result<Traced> {
        let entry = entry.strip_prefix('@').unwrap_or(entry);
        if module.get(entry).is_none() {
            return Err(Error::UnknownFunction(entry.to_string()));
        }
        Ok(Traced {
            module: Source::Verified(VerifiedModule::new(module)?),
            entry: entry.to_string(),
        })
    }

    /// Parses `.jir` text and wraps function `entry` (the first function when `None`).
    pub fn from_jir(src: &str, entry: Option<&str>) -> Result<Traced> {
        let module = jitad_ir::parse_module(src)?;
        let entry = match entry {
            Some(e) => e.to_string(),
            None => module
                .funcs
                .first()
                .map(|f| f.name.clone())
                .ok_or_else(|| Error::UnknownFunction("(the text has no functions)".into()))?,
        };
        Traced::from_module(module, &entry)
    }

    /// Function `entry` of the same module as the entry, with the functions it reaches
    /// (no re-verification: a verified module's functions closed under calls verify).
    pub fn with_entry(&self, entry: &str) -> Result<Traced> {
        let entry = entry.strip_prefix('@').unwrap_or(entry);
        let whole = self.module.get();
        if whole.get(entry).is_none() {
            return Err(Error::UnknownFunction(entry.to_string()));
        }
        let keep: HashSet<&str> = reachable_from(whole, entry)
            .into_iter()
            .map(|f| f.name.as_str())
            .collect();
        // What the entry reaches is closed under calls, so a verified module's part
        // stays verified (`restrict` checks it).
        let verified = match &self.module {
            Source::Verified(v) => v.restrict(&keep),
            Source::Derived(_) => None,
        };
        let module = match verified {
            Some(part) => Source::Verified(part),
            None => {
                let mut part = Module::new();
                // Names are unique in a module `Traced` holds: push, not `insert`.
                part.funcs = (whole.funcs.iter())
                    .filter(|f| keep.contains(f.name.as_str()))
                    .cloned()
                    .collect();
                Source::Derived(part)
            }
        };
        Ok(Traced {
            module,
            entry: entry.to_string(),
        })
    }

    /// The entry function's name.
    pub fn name(&self) -> &str {
        &self.entry
    }

    /// The entry function.
    pub fn function(&self) -> &Function {
        // `from_module` checked it exists and no method removes it.
        self.module
            .get()
            .get(&self.entry)
            .expect("the entry function exists (checked on construction)")
    }

    /// The module: the entry and every function it may call.
    pub fn module(&self) -> &Module {
        self.module.get()
    }

    /// The entry function followed by the functions it calls (transitively), in the
    /// order they are first called.
    pub fn reachable(&self) -> Vec<&Function> {
        reachable_from(self.module.get(), &self.entry)
    }

    /// The entry and its callees as `.jir` text (parseable; `print → parse → print` is
    /// the identity).
    pub fn to_jir(&self) -> String {
        self.reachable()
            .into_iter()
            .map(jitad_ir::print_function)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Indices of the entry's float parameters (the default `wrt`).
    pub fn float_params(&self) -> Vec<usize> {
        jitad_passes::float_params(self.function())
    }

    /// IR instructions in the entry function (loop bodies included).
    pub fn num_insts(&self) -> usize {
        self.function().num_insts()
    }

    fn derive(&self, wrt: Option<&[usize]>, how: Transform) -> Result<Traced> {
        Ok(self.derive_timed(wrt, how)?.0)
    }

    fn derive_timed(&self, wrt: Option<&[usize]>, how: Transform) -> Result<(Traced, DeriveTimes)> {
        let t0 = Instant::now();
        let wrt = match wrt {
            Some(w) => w.to_vec(),
            None => self.float_params(),
        };
        let mut times = DeriveTimes::default();
        let mut t: (Module, String) = match how {
            // The new functions join copies of only the functions they call: the
            // primal is not copied unless the derivative calls it.
            Transform::Detached(kind) => {
                let (name, funcs) = match &self.module {
                    Source::Verified(m) => {
                        jitad_passes::derive_functions_verified(m, &self.entry, kind, &wrt)?
                    }
                    Source::Derived(m) => {
                        jitad_passes::derive_functions(m, &self.entry, kind, &wrt)?
                    }
                };
                let t1 = Instant::now();
                times.transform = t1 - t0;
                let module = assemble(self.module.get(), &name, funcs);
                times.copy = t1.elapsed();
                (module, name)
            }
            Transform::InPlace(transform) => {
                let mut module = self.module.get().clone();
                let t1 = Instant::now();
                times.copy = t1 - t0;
                let name = transform(&mut module, &self.entry, &wrt)?;
                let t2 = Instant::now();
                times.transform = t2 - t1;
                // Prune first: optimising the primal (when the derivative does not
                // call it) would be wasted work.
                prune(&mut module, &name);
                times.prune = t2.elapsed();
                (module, name)
            }
        };
        let t3 = Instant::now();
        let cleanup = jitad_passes::optimize_module(&mut t.0, &OptOptions::default());
        let t4 = Instant::now();
        prune(&mut t.0, &t.1);
        times.cleanup = t4 - t3;
        times.passes = cleanup.times;
        times.rounds = cleanup.rounds;
        times.prune += t4.elapsed();
        let (module, entry) = t;
        Ok((
            Traced {
                module: Source::Derived(module),
                entry,
            },
            times,
        ))
    }

    /// A copy cleaned up by the optimisation pipeline (DCE, CSE, constant folding,
    /// IEEE-safe simplification, to a fixed point). Results are unchanged bit for bit.
    pub fn optimize(&self) -> Traced {
        let mut module = self.module.get().clone();
        jitad_passes::optimize_module(&mut module, &OptOptions::default());
        Traced {
            module: Source::Derived(module),
            entry: self.entry.clone(),
        }
    }

    /// Forward mode with respect to every float parameter:
    /// `(x..., dx...) -> (y..., dy...)`.
    pub fn jvp(&self) -> Result<Traced> {
        self.derive(None, Transform::Detached(DerivativeKind::Jvp))
    }

    /// Forward mode with respect to the parameters at `wrt`.
    pub fn jvp_wrt(&self, wrt: &[usize]) -> Result<Traced> {
        self.derive(Some(wrt), Transform::Detached(DerivativeKind::Jvp))
    }

    /// Reverse mode with respect to every float parameter:
    /// `(x..., ybar...) -> (y..., xbar...)`.
    pub fn vjp(&self) -> Result<Traced> {
        self.derive(None, Transform::Detached(DerivativeKind::Vjp))
    }

    /// Reverse mode with respect to the parameters at `wrt`.
    pub fn vjp_wrt(&self, wrt: &[usize]) -> Result<Traced> {
        self.derive(Some(wrt), Transform::Detached(DerivativeKind::Vjp))
    }

    /// Value and gradient of a function with one float result: `(x...) -> (y, g...)`.
    pub fn grad(&self) -> Result<Traced> {
        self.derive(None, Transform::Detached(DerivativeKind::Grad))
    }

    /// [`Traced::grad`], also returning where the time went.
    pub fn grad_timed(&self) -> Result<(Traced, DeriveTimes)> {
        self.derive_timed(None, Transform::Detached(DerivativeKind::Grad))
    }

    /// Value and gradient with respect to the parameters at `wrt`.
    pub fn grad_wrt(&self, wrt: &[usize]) -> Result<Traced> {
        self.derive(Some(wrt), Transform::Detached(DerivativeKind::Grad))
    }

    /// Hessian-vector product, forward over reverse: `(x..., v...) -> (y, g..., H·v...)`.
    pub fn hvp(&self) -> Result<Traced> {
        self.derive(None, Transform::InPlace(jitad_passes::hvp))
    }

    /// Hessian-vector product with respect to the parameters at `wrt`.
    pub fn hvp_wrt(&self, wrt: &[usize]) -> Result<Traced> {
        self.derive(Some(wrt), Transform::InPlace(jitad_passes::hvp))
    }

    /// Value, gradient and dense Hessian (row-major), one Hessian-vector product per
    /// parameter: for small `n`.
    pub fn hessian(&self) -> Result<Traced> {
        self.derive(None, Transform::InPlace(jitad_passes::hessian))
    }

    /// A copy whose reverse sweeps through loops (`revloop`s, made by [`Traced::grad`]
    /// and [`Traced::vjp`] for functions with active loops) use `policy`; see
    /// [`jitad_ir::checkpoint`]. Results are unchanged; memory and time are not.
    pub fn with_checkpoint(&self, policy: jitad_ir::checkpoint::Policy) -> Traced {
        let mut module = self.module.get().clone();
        jitad_passes::set_policy(&mut module, policy);
        Traced {
            module: Source::Derived(module),
            entry: self.entry.clone(),
        }
    }

    /// Evaluates the entry function with the reference interpreter, also returning what
    /// its reverse sweeps through loops did.
    pub fn eval_with_stats(&self, args: &[Val]) -> Result<(Vec<Val>, jitad_ir::checkpoint::Stats)> {
        let mut it = jitad_ir::Interpreter::new();
        let out = it.eval(self.function(), Some(self.module.get()), args)?;
        Ok((out, it.last_stats()))
    }

    /// Evaluates the entry function with the reference interpreter.
    pub fn eval(&self, args: &[Val]) -> Result<Vec<Val>> {
        Ok(jitad_ir::eval(self.module.get(), &self.entry, args)?)
    }

    /// [`Traced::eval`] for a function taking and returning `f64` only.
    pub fn eval_f64(&self, args: &[f64]) -> Result<Vec<f64>> {
        Ok(jitad_ir::eval_f64(self.module.get(), &self.entry, args)?)
    }

    /// JIT-compiles the entry function (and its callees) with default options, as
    /// they are: derivatives ([`Traced::grad`] and the others) come out cleaned up
    /// already, but a traced primal still has its calls and dead code, so compile
    /// `traced.optimize()` for the fastest primal (the results are the same bits).
    pub fn compile(&self) -> Result<Compiled> {
        self.compile_with(&CompileOptions::default())
    }

    /// JIT-compiles the entry function with `opts`.
    pub fn compile_with(&self, opts: &CompileOptions) -> Result<Compiled> {
        Ok(jitad_codegen::compile_module(
            self.module.get(),
            &self.entry,
            opts,
        )?)
    }
}

/// How a derivative is made.
enum Transform {
    /// By [`jitad_passes::derive_functions`], leaving the module alone.
    Detached(DerivativeKind),
    /// By a transform of a copy of the module (those composed of several transforms).
    InPlace(fn(&mut Module, &str, &[usize]) -> jitad_passes::Result<String>),
}

/// The module that inserting `new` into a copy of `old` (a new function replaces the
/// first one of its name, or is appended) and keeping only the functions `entry`
/// reaches would give, in the same order, copying only those old functions.
fn assemble(old: &Module, entry: &str, new: Vec<Function>) -> Module {
    enum Slot<'m> {
        Old(&'m Function),
        New(usize),
    }
    let mut slots: Vec<Slot> = old.funcs.iter().map(Slot::Old).collect();
    let mut at: HashMap<&str, usize> = HashMap::with_capacity(old.funcs.len() + new.len());
    for (i, f) in old.funcs.iter().enumerate() {
        at.entry(f.name.as_str()).or_insert(i);
    }
    for (j, f) in new.iter().enumerate() {
        match at.get(f.name.as_str()) {
            Some(&i) => slots[i] = Slot::New(j),
            None => {
                at.insert(f.name.as_str(), slots.len());
                slots.push(Slot::New(j));
            }
        }
    }
    // Names reachable from the entry, as `reachable_from` finds them.
    let mut keep: HashSet<&str> = HashSet::new();
    let mut stack = vec![entry];
    while let Some(name) = stack.pop() {
        if !keep.insert(name) {
            continue;
        }
        if let Some(&i) = at.get(name) {
            let f = match &slots[i] {
                Slot::Old(f) => *f,
                Slot::New(j) => &new[*j],
            };
            stack.extend(
                f.insts
                    .values()
                    .filter(|d| d.op.calls())
                    .flat_map(|d| d.op.callees()),
            );
        }
    }
    let keep: HashSet<String> = keep.into_iter().map(str::to_string).collect();
    let take: Vec<Option<usize>> = slots
        .iter()
        .map(|s| match s {
            Slot::New(j) if keep.contains(&new[*j].name) => Some(*j),
            _ => None,
        })
        .collect();
    let mut funcs = Vec::new();
    let mut new: Vec<Option<Function>> = new.into_iter().map(Some).collect();
    for (s, t) in slots.iter().zip(&take) {
        match (s, t) {
            (Slot::Old(f), _) if keep.contains(&f.name) => funcs.push((*f).clone()),
            (Slot::New(_), Some(j)) => funcs.extend(new[*j].take()),
            _ => {}
        }
    }
    Module { funcs }
}

/// Drops the functions of `module` that `entry` cannot reach.
fn prune(module: &mut Module, entry: &str) {
    // The entry alone (a traced function's gradient: 10⁶ instructions) reaches exactly
    // itself; the walk would read every instruction to find no call.
    if module.funcs.len() == 1 {
        return;
    }
    let keep: HashSet<String> = reachable_from(module, entry)
        .iter()
        .map(|f| f.name.clone())
        .collect();
    module.funcs.retain(|f| keep.contains(&f.name));
}

/// Function `entry` of `module` followed by the functions it calls (transitively), in
/// the order they are first called.
fn reachable_from<'m>(module: &'m Module, entry: &str) -> Vec<&'m Function> {
    let index = jitad_ir::callgraph::name_index(module);
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    let mut stack = vec![entry];
    while let Some(name) = stack.pop() {
        if !seen.insert(name) {
            continue;
        }
        let Some(f) = index.get(name).map(|&i| &module.funcs[i]) else {
            continue;
        };
        order.push(f);
        // Reversed, so the first callee is visited first.
        let start = stack.len();
        stack.extend(
            f.insts
                .values()
                .filter(|d| d.op.calls())
                .flat_map(|d| d.op.callees()),
        );
        stack[start..].reverse();
    }
    order
}

impl std::fmt::Display for Traced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_jir())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quickstart() -> Traced {
        trace_scalar("f", &[3.0, 2.0], |x| (x[0] + x[1]) * (x[0] - x[1])).unwrap()
    }

    #[test]
    fn every_stage_agrees_between_interpreter_and_jit() {
        let f = quickstart();
        let stages = [
            (f.clone(), vec![3.0, 2.0]),
            (f.jvp().unwrap(), vec![3.0, 2.0, 0.5, -1.0]),
            (f.vjp().unwrap(), vec![3.0, 2.0, 2.0]),
            (f.grad().unwrap(), vec![3.0, 2.0]),
            (f.hvp().unwrap(), vec![3.0, 2.0, 1.0, 0.0]),
            (f.hessian().unwrap(), vec![3.0, 2.0]),
        ];
        for (t, args) in stages {
            let interp = t.eval_f64(&args).unwrap();
            let c = t.compile().unwrap();
            let mut out = vec![0.0; c.results().len()];
            c.call_f64(&args, &mut out).unwrap();
            assert_eq!(interp, out, "{}", t.name());
        }
        // grad: (5, 6, -4); hessian of x² − y²: [[2, 0], [0, −2]].
        assert_eq!(
            f.grad().unwrap().eval_f64(&[3.0, 2.0]).unwrap(),
            [5.0, 6.0, -4.0]
        );
        assert_eq!(
            f.hessian().unwrap().eval_f64(&[3.0, 2.0]).unwrap(),
            [5.0, 6.0, -4.0, 2.0, 0.0, 0.0, -2.0]
        );
    }

    #[test]
    fn wrt_selects_parameters_and_bad_wrt_is_an_error() {
        let f = quickstart();
        assert_eq!(
            f.grad_wrt(&[1]).unwrap().eval_f64(&[3.0, 2.0]).unwrap(),
            [5.0, -4.0]
        );
        assert!(matches!(f.grad_wrt(&[2]), Err(Error::Ad(_))));
        assert!(matches!(f.grad_wrt(&[0, 0]), Err(Error::Ad(_))));
    }

    #[test]
    fn jir_round_trips_and_bad_text_reports_position() {
        let g = quickstart().grad().unwrap();
        let back = Traced::from_jir(&g.to_jir(), None).unwrap();
        assert_eq!(back.to_jir(), g.to_jir());
        match Traced::from_jir("func @f(%x: f64) -> f64 {\n  ret %y\n}\n", None) {
            Err(Error::Verify(e)) => assert!(e.to_string().contains("%y"), "{e}"),
            Err(Error::Parse(e)) => assert!(e.to_string().contains("2:"), "{e}"),
            other => panic!("expected an error, got {other:?}"),
        }
        assert!(matches!(
            Traced::from_jir("func @f(%x: f64) -> f64 {", None),
            Err(Error::Parse(_))
        ));
        assert!(matches!(
            Traced::from_module(Module::new(), "nope"),
            Err(Error::UnknownFunction(_))
        ));
    }

    /// `grad`/`vjp`/`jvp` build their module from the new functions and copies of only
    /// what they call: the same module, function for function and in the same order,
    /// as transforming a copy of the whole module and pruning it.
    #[test]
    fn derivatives_without_a_module_copy_match_the_copying_path() {
        let src = "func @unused(%a: f64) -> f64 {\n  %b = neg %a\n  ret %b\n}\n\
                   func @sq(%u: f64) -> f64 {\n  %p = mul %u, %u\n  ret %p\n}\n\
                   func @f(%x: f64, %y: f64) -> f64 {\n  %s = call @sq(%x)\n  \
                   %t = mul %s, %y\n  %r = tanh %t\n  ret %r\n}\n";
        let t = Traced::from_jir(src, Some("f")).unwrap();
        type Tr = fn(&mut Module, &str, &[usize]) -> jitad_passes::Result<String>;
        let cases: [(Tr, &[usize], Traced); 3] = [
            (jitad_passes::grad, &[0, 1], t.grad().unwrap()),
            (jitad_passes::vjp, &[0, 1], t.vjp().unwrap()),
            (jitad_passes::jvp, &[1], t.jvp_wrt(&[1]).unwrap()),
        ];
        for (transform, wrt, got) in cases {
            let mut want = t.module().clone();
            let name = transform(&mut want, "f", wrt).unwrap();
            prune(&mut want, &name);
            jitad_passes::optimize_module(&mut want, &OptOptions::default());
            prune(&mut want, &name);
            assert_eq!(got.name(), name);
            assert_eq!(
                jitad_ir::print_module(got.module()),
                jitad_ir::print_module(&want)
            );
            assert!(got.module().get("unused").is_none());
        }
    }

    #[test]
    fn reachable_lists_callees_once() {
        let src =
            "func @f(%x: f64) -> f64 {\n  %a = call @g(%x)\n  %b = call @g(%a)\n  ret %b\n}\n\
                   func @g(%x: f64) -> f64 {\n  %y = sin %x\n  ret %y\n}\n\
                   func @unused(%x: f64) -> f64 {\n  ret %x\n}\n";
        let t = Traced::from_jir(src, Some("f")).unwrap();
        let names: Vec<&str> = t.reachable().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["f", "g"]);
        // Another entry of the same module keeps only what it reaches.
        let only_g = t.with_entry("@g").unwrap();
        assert_eq!(only_g.name(), "g");
        assert_eq!(only_g.module().funcs.len(), 1);
        assert!(matches!(
            t.with_entry("nope"),
            Err(Error::UnknownFunction(_))
        ));
        let g = t.grad().unwrap();
        let names: Vec<&str> = g.reachable().iter().map(|f| f.name.as_str()).collect();
        assert!(!names.contains(&"unused"), "{names:?}");
        let x = 0.7f64;
        let out = g.eval_f64(&[x]).unwrap();
        assert_eq!(out[0], x.sin().sin());
        assert!((out[1] - x.sin().cos() * x.cos()).abs() < 1e-15);
    }
}
