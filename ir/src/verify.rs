//! The verifier: checks that a [`Function`] or [`Module`] is well-formed IR.
//!
//! It accepts any value of the IR types, however malformed (ids out of range, regions
//! nested in a cycle, an instruction listed twice, ...), never panics, and collects
//! every error it finds rather than stopping at the first. Each [`VerifyError`] names
//! the function, the instruction (rendered like the text format, e.g.
//! `inst4 (%c = mul %a, %b)`) and the offending value.
//!
//! Only the structure reachable from the function body matters: instructions, regions
//! and values that nothing reachable refers to are garbage and are ignored.
//!
//! # Rules
//!
//! Structure ([`VerifyErrorKind::OutOfRange`], `InstListedTwice`, `RegionReachedTwice`,
//! `RegionCycle`, `RegionParent`):
//! - every id (body, region, instruction, value) is in range;
//! - an instruction is listed in at most one reachable region, once;
//! - a region is reached once (as the body, or as the region of one instruction), and
//!   region nesting has no cycle; its `parent` is the instruction owning it (`None` for
//!   the body).
//!
//! Definitions (`DefinedTwice`, `DefMismatch`):
//! - a value is defined in one place (a region parameter or an instruction result);
//! - its [`ValueDef`] says where that place is.
//!
//! Scoping (`UseBeforeDef`, `OutOfScope`, `Undefined`):
//! - an operand is visible at its instruction: a region sees its own parameters, values
//!   defined earlier in it and, through its parent instruction, whatever is visible at
//!   that instruction in the enclosing region. A loop's results are not visible in its
//!   body; values of a loop body are not visible after the loop.
//!
//! Types (`Type`, `ResultTypes`, `ParamTypes`):
//! - operand types fit the op ([`Op::result_types`]), and the instruction's results
//!   have exactly the types it gives;
//! - the body's parameters have the signature's parameter types.
//!
//! Calls (`UnknownCallee`, `NoModule`, `Type`, `Recursion`):
//! - the callee exists in the module (a module is needed to resolve it), with matching
//!   arity and parameter types;
//! - no function reaches itself through calls (direct or mutual recursion): nothing
//!   downstream supports it.
//!
//! Loops (`LoopRegions`, `LoopBoundOperands`, `LoopParams`, `YieldTypes`):
//! - a `loop` owns exactly one region, has at least as many operands as dynamic bounds
//!   (which are `i64`), its body parameters are the `i64` index then the carried types
//!   (the types of the inits), its results have the carried types, and its body ends in
//!   `yield` of the carried types.
//!
//! Terminators (`MissingTerminator`, `WrongTerminator`, `TerminatorNotLast`, `RetTypes`,
//! `UnexpectedRegions`):
//! - every reachable region is non-empty and ends in its terminator: `ret` of the
//!   signature's result types for the body, `yield` for a loop body; no terminator
//!   anywhere else; only `loop` carries regions.
//!
//! Module (`DuplicateFunction`): function names are unique.

use crate::callgraph::{call_sites, CallGraph, Site};
use crate::function::{Function, Inst, Module, Region, Value, ValueDef};
use crate::op::{Op, TypeError, TypeList};
use crate::print::{write_inst, Line};
use crate::types::Type;
use cranelift_entity::EntityRef;
use smallvec::SmallVec;
use std::fmt::Write as _;

/// Every error the verifier found in a function or module (never empty).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_list(.errors))]
pub struct VerifyErrors {
    /// The errors, in the order they were found (program order within a function).
    pub errors: Vec<VerifyError>,
}

impl VerifyErrors {
    /// The error kinds, for tests and tools that match on them.
    pub fn kinds(&self) -> impl Iterator<Item = &VerifyErrorKind> {
        self.errors.iter().map(|e| &e.kind)
    }
}

fn render_list(errors: &[VerifyError]) -> String {
    let mut s = format!("{} verifier error(s):", errors.len());
    for e in errors {
        let _ = write!(s, "\n  {e}");
    }
    s
}

/// One verifier error: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("@{func}{}: {kind}", at_inst(.inst))]
pub struct VerifyError {
    /// The function's name (without `@`).
    pub func: String,
    /// The offending instruction, rendered like the text format
    /// (`inst4 (%c = mul %a, %b)`), when the error belongs to one.
    pub inst: Option<String>,
    /// What is wrong.
    pub kind: VerifyErrorKind,
}

fn at_inst(inst: &Option<String>) -> String {
    match inst {
        Some(i) => format!(", {i}"),
        None => String::new(),
    }
}

fn at_value(value: &Option<String>) -> String {
    match value {
        Some(v) => format!(" (operand {v})"),
        None => String::new(),
    }
}

/// What a [`VerifyError`] found wrong; one variant per rule (see the module docs).
/// Values are rendered with `%` (`%x`), regions as `regionN`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyErrorKind {
    /// An id (body, region, instruction or value) outside its arena.
    #[error("refers to {what}, which does not exist")]
    OutOfRange {
        /// The id and the place that refers to it.
        what: String,
    },
    /// An operand used before its definition in the same or an enclosing region.
    #[error("{value} is used before its definition")]
    UseBeforeDef {
        /// The value.
        value: String,
    },
    /// An operand defined in a region that does not enclose the use (e.g. a loop body
    /// value used after the loop).
    #[error("{value} is used outside the region that defines it")]
    OutOfScope {
        /// The value.
        value: String,
    },
    /// An operand that no reachable instruction or region defines.
    #[error("{value} is not defined by any reachable instruction or region parameter")]
    Undefined {
        /// The value.
        value: String,
    },
    /// A value listed as a result or region parameter in two places.
    #[error("{value} is defined twice (first as {first})")]
    DefinedTwice {
        /// The value.
        value: String,
        /// Its first definition.
        first: String,
    },
    /// A value whose recorded [`ValueDef`] disagrees with where it appears.
    #[error("{value} is recorded as {recorded} but appears as {actual}")]
    DefMismatch {
        /// The value.
        value: String,
        /// What its `ValueDef` says.
        recorded: String,
        /// Where it actually appears.
        actual: String,
    },
    /// An instruction listed a second time (in the same or another region).
    #[error("the instruction is listed twice (first at {first})")]
    InstListedTwice {
        /// Where it was first listed (`regionN position P`).
        first: String,
    },
    /// A region reached a second time (owned by two instructions, or by one twice,
    /// or the body owned by an instruction).
    #[error("{region} is reached twice")]
    RegionReachedTwice {
        /// The region.
        region: String,
    },
    /// A region nested inside itself.
    #[error("{region} is nested inside itself")]
    RegionCycle {
        /// The region.
        region: String,
    },
    /// A region whose `parent` is not the instruction owning it.
    #[error("{region} records parent {recorded} but is owned by {actual}")]
    RegionParent {
        /// The region.
        region: String,
        /// Its `parent` field.
        recorded: String,
        /// Its actual owner.
        actual: String,
    },
    /// Operand types the op rejects (including call arity and argument types).
    #[error("{error}{}", at_value(.value))]
    Type {
        /// The typing error.
        error: TypeError,
        /// The offending operand, when the error names one.
        value: Option<String>,
    },
    /// Results whose count or types differ from what the op gives.
    #[error("results are ({got}) but the op gives ({expected})")]
    ResultTypes {
        /// Types the op gives.
        expected: String,
        /// Actual results, `%v: type`.
        got: String,
    },
    /// A call to a function the module does not have.
    #[error("call to unknown function @{callee}")]
    UnknownCallee {
        /// The callee's name.
        callee: String,
    },
    /// A call verified without a module to resolve it.
    #[error("no module to resolve @{callee}")]
    NoModule {
        /// The callee's name.
        callee: String,
    },
    /// A call that starts a call cycle.
    #[error("call cycle {cycle}: recursion is not supported")]
    Recursion {
        /// The cycle, `@f -> @g -> @f`.
        cycle: String,
    },
    /// A `loop` without exactly one region.
    #[error("`loop` must own exactly one region, owns {got}")]
    LoopRegions {
        /// Number of regions it owns.
        got: usize,
    },
    /// A `loop` with fewer operands than dynamic bounds.
    #[error("`loop` has {expected} dynamic bound(s) but only {got} operand(s)")]
    LoopBoundOperands {
        /// Number of dynamic bounds.
        expected: usize,
        /// Number of operands.
        got: usize,
    },
    /// Loop body parameters other than the `i64` index then the carried types.
    #[error("{region} parameters are ({got}), expected ({expected}): the i64 index, then the carried types")]
    LoopParams {
        /// The loop body.
        region: String,
        /// Expected types.
        expected: String,
        /// Actual parameters, `%v: type`.
        got: String,
    },
    /// A `yield` whose operand types differ from the carried types.
    #[error("`yield` gives ({got}) but the loop carries ({expected})")]
    YieldTypes {
        /// Carried types.
        expected: String,
        /// Yielded values, `%v: type`.
        got: String,
    },
    /// A `ret` whose operand types differ from the signature's results.
    #[error("`ret` gives ({got}) but the signature returns ({expected})")]
    RetTypes {
        /// Signature result types.
        expected: String,
        /// Returned values, `%v: type`.
        got: String,
    },
    /// A region that is empty or whose last instruction is not a terminator.
    #[error("{region} does not end with `{expected}`")]
    MissingTerminator {
        /// The region.
        region: String,
        /// The terminator it needs.
        expected: &'static str,
    },
    /// A region ending in the wrong terminator (`yield` in the body, `ret` in a loop).
    #[error("{region} ends with `{got}` but must end with `{expected}`")]
    WrongTerminator {
        /// The region.
        region: String,
        /// The terminator it needs.
        expected: &'static str,
        /// The terminator it has.
        got: &'static str,
    },
    /// A terminator that is not the last instruction of its region.
    #[error("`{op}` in the middle of {region}: a terminator must come last")]
    TerminatorNotLast {
        /// The terminator.
        op: &'static str,
        /// The region.
        region: String,
    },
    /// A non-`loop` instruction carrying regions.
    #[error("`{op}` carries {got} region(s); only `loop` owns a region")]
    UnexpectedRegions {
        /// The op.
        op: &'static str,
        /// Number of regions.
        got: usize,
    },
    /// Body parameters whose types differ from the signature's.
    #[error("body parameters are ({got}) but the signature says ({expected})")]
    ParamTypes {
        /// Signature parameter types.
        expected: String,
        /// Actual parameters, `%v: type`.
        got: String,
    },
    /// Two functions of a module with one name.
    #[error("function @{name} is defined more than once")]
    DuplicateFunction {
        /// The name.
        name: String,
    },
    /// A value of a type with no memory layout (a zero-size or oversized tensor).
    #[error("{value}: {error}")]
    NoLayout {
        /// The value, `%v`.
        value: String,
        /// Why the type has no layout.
        error: crate::layout::LayoutError,
    },
}

/// Verifies every function of `m` (callees resolved in `m`), that function names are
/// unique and that no call cycle exists. Returns all errors found. Linear in the
/// module: callees are found through one name index, and cycles with one pass over
/// the call graph (each cycle reported once, at its first function).
pub fn verify_module(m: &Module) -> Result<(), VerifyErrors> {
    let graph = CallGraph::new(m);
    let mut errors = Vec::new();
    for (i, f) in m.funcs.iter().enumerate() {
        if !graph.is_first_of_name(i) {
            errors.push(VerifyError {
                func: f.name.clone(),
                inst: None,
                kind: VerifyErrorKind::DuplicateFunction {
                    name: f.name.clone(),
                },
            });
        }
        errors.extend(Verifier::run(f, Some(&graph)).errors);
    }
    for (fi, inst, path) in graph.cycles() {
        errors.push(recursion_error(&m.funcs[fi], inst, &path));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(VerifyErrors { errors })
    }
}

/// A module that passed [`verify_module`], and cannot have changed since: the only
/// constructors verify it (or keep a call-closed part of a verified one), and it gives
/// out only shared references. What a consumer that would otherwise verify again
/// (`jitad_passes::derive_functions_verified`) takes as proof.
#[derive(Clone, Debug)]
pub struct VerifiedModule(Module);

impl VerifiedModule {
    /// Verifies `m` ([`verify_module`]).
    pub fn new(m: Module) -> Result<Self, VerifyErrors> {
        verify_module(&m)?;
        Ok(VerifiedModule(m))
    }

    /// The module.
    pub fn module(&self) -> &Module {
        &self.0
    }

    /// The module, to change (it is verified no longer).
    pub fn into_module(self) -> Module {
        self.0
    }

    /// The functions named in `keep`, in module order, as a verified module of their
    /// own: `None` unless every callee of a kept function is kept too. Verification is
    /// per function against its callees' signatures, and a part of a module has unique
    /// names and no cycle when the module has none, so a call-closed part verifies.
    /// Linear in the kept functions.
    pub fn restrict(&self, keep: &std::collections::HashSet<&str>) -> Option<VerifiedModule> {
        let funcs: Vec<Function> = (self.0.funcs.iter())
            .filter(|f| keep.contains(f.name.as_str()))
            .cloned()
            .collect();
        // Against the functions kept, not `keep`, which may name others.
        let kept: std::collections::HashSet<&str> = funcs.iter().map(|f| f.name.as_str()).collect();
        let closed = funcs.iter().all(|f| {
            f.insts
                .values()
                .all(|d| d.op.callees().all(|c| kept.contains(c)))
        });
        closed.then(|| {
            let mut m = Module::new();
            // Names are unique in a verified module: push, not `insert` (a search each).
            m.funcs = funcs;
            VerifiedModule(m)
        })
    }
}

impl std::ops::Deref for VerifiedModule {
    type Target = Module;
    fn deref(&self) -> &Module {
        &self.0
    }
}

/// Verifies one function. Callee signatures come from `m`; with `None`, every call is
/// an error ([`VerifyErrorKind::NoModule`]). Call cycles through `m` that return to
/// `f` are reported (`f` stands for the module's function of its name). Returns all
/// errors found. Linear in `f` and `m`; to verify many functions of one module, build
/// its [`CallGraph`] once and use [`verify_function_in`].
pub fn verify_function(f: &Function, m: Option<&Module>) -> Result<(), VerifyErrors> {
    match m {
        Some(m) => verify_function_in(f, &CallGraph::new(m)),
        None => {
            let empty = Module::new();
            let graph = CallGraph::new(&empty);
            let mut v = Verifier::run(f, None);
            push_cycle(&mut v.errors, f, &graph);
            finish(v.errors)
        }
    }
}

/// [`verify_function`] with callees resolved in `graph`'s module: linear in `f` alone
/// when `f` is one of the module's functions (the module's cycles are found once per
/// graph), in `f` and the module otherwise.
pub fn verify_function_in(f: &Function, graph: &CallGraph<'_>) -> Result<(), VerifyErrors> {
    let mut v = Verifier::run(f, Some(graph));
    let own = graph
        .index_of(&f.name)
        .filter(|&i| std::ptr::eq(&graph.module().funcs[i], f));
    match own {
        Some(i) if !graph.is_recursive(i) => {}
        _ => push_cycle(&mut v.errors, f, graph),
    }
    finish(v.errors)
}

fn finish(errors: Vec<VerifyError>) -> Result<(), VerifyErrors> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(VerifyErrors { errors })
    }
}

/// Reports the first call of `f` that leads back to `f` through `graph`.
fn push_cycle(errors: &mut Vec<VerifyError>, f: &Function, graph: &CallGraph<'_>) {
    let own: Vec<Site<'_>> = call_sites(f)
        .into_iter()
        .map(|(inst, name)| Site {
            inst,
            name,
            callee: graph.index_of(name),
            driver: false,
        })
        .collect();
    if let Some((inst, path)) = graph.cycle_to(&f.name, &own) {
        errors.push(recursion_error(f, inst, &path));
    }
}

fn recursion_error(f: &Function, inst: Inst, path: &[&str]) -> VerifyError {
    let mut cycle = format!("@{}", f.name);
    for name in path {
        let _ = write!(cycle, " -> @{name}");
    }
    VerifyError {
        func: f.name.clone(),
        inst: Some(render_inst(f, inst)),
        kind: VerifyErrorKind::Recursion { cycle },
    }
}

// ---------------------------------------------------------------------------------
// Rendering

/// `%name` of a value, or `%<invalid vN>` when its id is out of range.
fn label(f: &Function, v: Value) -> String {
    if f.values.get(v).is_some() {
        format!("%{}", f.value_label(v))
    } else {
        format!("%<invalid {v}>")
    }
}

fn type_list(ts: &[Type]) -> String {
    ts.iter()
        .map(Type::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `%a: f64, %b: i64` for values (invalid ids render without a type).
fn typed_labels(f: &Function, vs: &[Value]) -> String {
    vs.iter()
        .map(|&v| match f.values.get(v) {
            Some(d) => format!("{}: {}", label(f, v), d.ty),
            None => label(f, v),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_def(d: ValueDef) -> String {
    match d {
        ValueDef::Param(r, i) => format!("parameter {i} of {r}"),
        ValueDef::Result(inst, i) => format!("result {i} of {inst}"),
    }
}

/// One instruction in the text format, prefixed by its id:
/// `inst4 (%c = mul %a, %b)`. A loop is rendered by its header, with `{...}` for the
/// body. The syntax is the printer's ([`crate::print`], switching on the op's format);
/// values show their own labels. Never panics, whatever the ids.
pub fn render_inst(f: &Function, inst: Inst) -> String {
    if f.insts.get(inst).is_none() {
        return format!("{inst} (<invalid>)");
    }
    let mut s = format!("{inst} (");
    let val = |out: &mut String, v: Value| out.push_str(&label(f, v));
    if let Line::Open(_) = write_inst(&mut s, f, inst, &val) {
        s.push_str("...}");
    }
    s.push(')');
    s
}

// ---------------------------------------------------------------------------------
// The walk

/// Which terminator a region needs, and the operand types it must have (`None` when
/// unknown because of an earlier error).
#[derive(Clone)]
struct RegionCtx {
    term: Op,
    /// Shared: every instruction of the region takes a copy of its context, so a
    /// `Vec` here made verifying a body of n instructions returning m values O(n·m)
    /// (181 s on a gradient with 10⁵ results).
    expect: Option<std::rc::Rc<[Type]>>,
}

/// Work items of the iterative program-order walk.
enum Task {
    /// Check a region and define its parameters.
    Enter {
        region: Region,
        owner: Option<Inst>,
        ctx: RegionCtx,
    },
    /// Check the instruction at `pos` of `region`.
    Next {
        region: Region,
        pos: usize,
        ctx: usize,
    },
    /// Define the results of `inst` (after its regions).
    Results(Inst),
    /// Leave `region`: its values go out of scope.
    Exit { region: Region, log_len: usize },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    OnPath,
    Done,
}

struct Verifier<'a> {
    f: &'a Function,
    /// Resolves callees (`None`: no module).
    m: Option<&'a CallGraph<'a>>,
    errors: Vec<VerifyError>,
    /// Where each value was found defined (by value index).
    def_site: Vec<Option<ValueDef>>,
    /// Whether each value is in scope at the current point of the walk.
    visible: Vec<bool>,
    /// Values made visible, in order; truncated when a region is left.
    scope_log: Vec<Value>,
    region_visit: Vec<Visit>,
    /// Where each instruction was listed.
    placed: Vec<Option<(Region, usize)>>,
    ctxs: Vec<RegionCtx>,
    /// `UseBeforeDef` errors to turn into `Undefined` if the value is never defined.
    tentative: Vec<(usize, Value)>,
}

impl<'a> Verifier<'a> {
    fn run(f: &'a Function, m: Option<&'a CallGraph<'a>>) -> Self {
        let mut v = Verifier {
            f,
            m,
            errors: Vec::new(),
            def_site: vec![None; f.values.len()],
            visible: vec![false; f.values.len()],
            scope_log: Vec::new(),
            region_visit: vec![Visit::New; f.regions.len()],
            placed: vec![None; f.insts.len()],
            ctxs: Vec::new(),
            tentative: Vec::new(),
        };
        v.walk();
        for (idx, val) in std::mem::take(&mut v.tentative) {
            if v.def_site[val.index()].is_none() {
                v.errors[idx].kind = VerifyErrorKind::Undefined {
                    value: label(f, val),
                };
            }
        }
        v
    }

    fn err(&mut self, inst: Option<Inst>, kind: VerifyErrorKind) {
        self.errors.push(VerifyError {
            func: self.f.name.clone(),
            inst: inst.map(|i| render_inst(self.f, i)),
            kind,
        });
    }

    fn walk(&mut self) {
        let f = self.f;
        let Some(body) = f.regions.get(f.body) else {
            self.err(
                None,
                VerifyErrorKind::OutOfRange {
                    what: format!("body {}", f.body),
                },
            );
            return;
        };
        let got: Vec<Option<Type>> = body
            .params
            .iter()
            .map(|&p| f.values.get(p).map(|d| d.ty))
            .collect();
        if got.len() != f.sig.params.len()
            || got.iter().zip(&f.sig.params).any(|(g, &e)| *g != Some(e))
        {
            self.err(
                None,
                VerifyErrorKind::ParamTypes {
                    expected: type_list(&f.sig.params),
                    got: typed_labels(f, &body.params),
                },
            );
        }
        // Every value's type must have a layout (the parser refuses such types; built
        // IR may hold them).
        for (v, d) in f.values.iter() {
            if let Err(error) = crate::layout::Layout::of(d.ty) {
                self.err(
                    None,
                    VerifyErrorKind::NoLayout {
                        value: label(f, v),
                        error,
                    },
                );
            }
        }
        let mut stack = vec![Task::Enter {
            region: f.body,
            owner: None,
            ctx: RegionCtx {
                term: Op::Ret,
                expect: Some(f.sig.results.as_slice().into()),
            },
        }];
        while let Some(task) = stack.pop() {
            match task {
                Task::Enter { region, owner, ctx } => self.enter(region, owner, ctx, &mut stack),
                Task::Next { region, pos, ctx } => self.next(region, pos, ctx, &mut stack),
                Task::Results(inst) => {
                    let results = self.f.insts.get(inst).map(|d| d.results.as_slice());
                    for (k, &r) in results.unwrap_or_default().iter().enumerate() {
                        self.define(r, ValueDef::Result(inst, k as u32), Some(inst));
                    }
                }
                Task::Exit { region, log_len } => {
                    if let Some(s) = self.region_visit.get_mut(region.index()) {
                        *s = Visit::Done;
                    }
                    for v in self.scope_log.drain(log_len..) {
                        self.visible[v.index()] = false;
                    }
                }
            }
        }
    }

    fn enter(
        &mut self,
        region: Region,
        owner: Option<Inst>,
        ctx: RegionCtx,
        stack: &mut Vec<Task>,
    ) {
        let f = self.f;
        let Some(rd) = f.regions.get(region) else {
            self.err(
                owner,
                VerifyErrorKind::OutOfRange {
                    what: format!("{region}"),
                },
            );
            return;
        };
        let name = region.to_string();
        match self.region_visit[region.index()] {
            Visit::OnPath => return self.err(owner, VerifyErrorKind::RegionCycle { region: name }),
            Visit::Done => {
                return self.err(owner, VerifyErrorKind::RegionReachedTwice { region: name })
            }
            Visit::New => self.region_visit[region.index()] = Visit::OnPath,
        }
        if rd.parent != owner {
            let show = |i: Option<Inst>| i.map_or_else(|| "none".to_string(), |i| i.to_string());
            self.err(
                owner,
                VerifyErrorKind::RegionParent {
                    region: name.clone(),
                    recorded: show(rd.parent),
                    actual: show(owner),
                },
            );
        }
        stack.push(Task::Exit {
            region,
            log_len: self.scope_log.len(),
        });
        for (k, &p) in rd.params.iter().enumerate() {
            self.define(p, ValueDef::Param(region, k as u32), owner);
        }
        if rd.insts.is_empty() {
            self.err(
                owner,
                VerifyErrorKind::MissingTerminator {
                    region: name,
                    expected: ctx.term.name(),
                },
            );
        }
        self.ctxs.push(ctx);
        stack.push(Task::Next {
            region,
            pos: 0,
            ctx: self.ctxs.len() - 1,
        });
    }

    fn define(&mut self, v: Value, site: ValueDef, at: Option<Inst>) {
        let f = self.f;
        let Some(vd) = f.values.get(v) else {
            self.err(
                at,
                VerifyErrorKind::OutOfRange {
                    what: format!("value {v} (as {})", describe_def(site)),
                },
            );
            return;
        };
        if let Some(first) = self.def_site[v.index()] {
            self.err(
                at,
                VerifyErrorKind::DefinedTwice {
                    value: label(f, v),
                    first: describe_def(first),
                },
            );
            return;
        }
        self.def_site[v.index()] = Some(site);
        if vd.def != site {
            self.err(
                at,
                VerifyErrorKind::DefMismatch {
                    value: label(f, v),
                    recorded: describe_def(vd.def),
                    actual: describe_def(site),
                },
            );
        }
        self.visible[v.index()] = true;
        self.scope_log.push(v);
    }

    fn next(&mut self, region: Region, pos: usize, ctx: usize, stack: &mut Vec<Task>) {
        let f = self.f;
        let Some(rd) = f.regions.get(region) else {
            return;
        };
        let Some(&inst) = rd.insts.get(pos) else {
            return;
        };
        stack.push(Task::Next {
            region,
            pos: pos + 1,
            ctx,
        });
        let is_last = pos + 1 == rd.insts.len();
        let Some(d) = f.insts.get(inst) else {
            return self.err(
                None,
                VerifyErrorKind::OutOfRange {
                    what: format!("{inst} (position {pos} of {region})"),
                },
            );
        };
        if let Some((r0, p0)) = self.placed[inst.index()] {
            return self.err(
                Some(inst),
                VerifyErrorKind::InstListedTwice {
                    first: format!("{r0} position {p0}"),
                },
            );
        }
        self.placed[inst.index()] = Some((region, pos));
        let Some(rctx) = self.ctxs.get(ctx).cloned() else {
            return;
        };

        // Terminators.
        let mut proper_terminator = false;
        if d.op.is_terminator() {
            if !is_last {
                self.err(
                    Some(inst),
                    VerifyErrorKind::TerminatorNotLast {
                        op: d.op.name(),
                        region: region.to_string(),
                    },
                );
            } else if d.op != rctx.term {
                self.err(
                    Some(inst),
                    VerifyErrorKind::WrongTerminator {
                        region: region.to_string(),
                        expected: rctx.term.name(),
                        got: d.op.name(),
                    },
                );
            } else {
                proper_terminator = true;
            }
        } else if is_last {
            self.err(
                Some(inst),
                VerifyErrorKind::MissingTerminator {
                    region: region.to_string(),
                    expected: rctx.term.name(),
                },
            );
        }

        // Operands in scope.
        // Inline lists: no allocation per instruction (this runs on every trace).
        let mut arg_tys: Option<SmallVec<[Type; 4]>> = Some(SmallVec::new());
        for (k, &a) in d.args.iter().enumerate() {
            let Some(vd) = f.values.get(a) else {
                arg_tys = None;
                if !d.args[..k].contains(&a) {
                    self.err(
                        Some(inst),
                        VerifyErrorKind::OutOfRange {
                            what: format!("value {a} (operand {k})"),
                        },
                    );
                }
                continue;
            };
            if let Some(t) = arg_tys.as_mut() {
                t.push(vd.ty);
            }
            if self.visible[a.index()] || d.args[..k].contains(&a) {
                continue;
            }
            let value = label(f, a);
            if self.def_site[a.index()].is_some() {
                self.err(Some(inst), VerifyErrorKind::OutOfScope { value });
            } else {
                self.tentative.push((self.errors.len(), a));
                self.err(Some(inst), VerifyErrorKind::UseBeforeDef { value });
            }
        }

        // Types, and the op's own structure.
        let mut expected_results = None;
        match &d.op {
            Op::Ret | Op::Yield => {
                if let (true, Some(tys), Some(expect)) = (proper_terminator, &arg_tys, &rctx.expect)
                {
                    if tys[..] != expect[..] {
                        let expected = type_list(expect);
                        let got = typed_labels(f, &d.args);
                        let kind = if d.op == Op::Ret {
                            VerifyErrorKind::RetTypes { expected, got }
                        } else {
                            VerifyErrorKind::YieldTypes { expected, got }
                        };
                        self.err(Some(inst), kind);
                    }
                }
                expected_results = Some(TypeList::new());
            }
            Op::Loop(b) => {
                let nd = b.num_dyn();
                let carried = if d.args.len() < nd {
                    self.err(
                        Some(inst),
                        VerifyErrorKind::LoopBoundOperands {
                            expected: nd,
                            got: d.args.len(),
                        },
                    );
                    None
                } else if let Some(tys) = &arg_tys {
                    self.typed(inst, d.op.result_types(tys, |_| None))
                } else {
                    None
                };
                expected_results.clone_from(&carried);
                self.loop_region(inst, carried);
            }
            Op::RevLoop(_) | Op::TapeLoop(_) => {
                let fwd = d.op.callees().next().unwrap_or_default().to_string();
                match (self.m, &arg_tys) {
                    (None, _) => self.err(Some(inst), VerifyErrorKind::NoModule { callee: fwd }),
                    (Some(m), Some(tys)) => {
                        let own = |n: &str| (n == f.name).then_some(&f.sig);
                        let res =
                            d.op.result_types(tys, |n| m.get(n).map(|g| &g.sig).or(own(n)));
                        expected_results = self.typed(inst, res);
                    }
                    (Some(_), None) => {}
                }
            }
            Op::Call(name) => match (self.m, &arg_tys) {
                (None, _) => self.err(
                    Some(inst),
                    VerifyErrorKind::NoModule {
                        callee: name.clone(),
                    },
                ),
                (Some(m), Some(tys)) => {
                    let own = (name == &f.name).then_some(&f.sig);
                    let r = d.op.result_types(tys, |n| m.get(n).map(|g| &g.sig).or(own));
                    expected_results = self.typed(inst, r);
                }
                (Some(_), None) => {}
            },
            op => {
                if let Some(tys) = &arg_tys {
                    expected_results = self.typed(inst, op.result_types(tys, |_| None));
                }
            }
        }
        if !matches!(d.op, Op::Loop(_)) && !d.regions.is_empty() {
            self.err(
                Some(inst),
                VerifyErrorKind::UnexpectedRegions {
                    op: d.op.name(),
                    got: d.regions.len(),
                },
            );
        }

        // Results.
        // Compared in place (no list of the results' types per instruction). A result
        // id out of range is reported where results are defined.
        let all_exist = d.results.iter().all(|&r| f.values.get(r).is_some());
        if let (Some(expected), true) = (&expected_results, all_exist) {
            let same = expected.len() == d.results.len()
                && expected
                    .iter()
                    .zip(&d.results)
                    .all(|(&t, &r)| f.values.get(r).is_some_and(|vd| vd.ty == t));
            if !same {
                self.err(
                    Some(inst),
                    VerifyErrorKind::ResultTypes {
                        expected: type_list(expected),
                        got: typed_labels(f, &d.results),
                    },
                );
            }
        }
        // Results are defined after the instruction's regions (pushed last, so run
        // first), so a loop body does not see its own loop's results.
        stack.push(Task::Results(inst));
        if let Op::Loop(_) = d.op {
            if let [r] = d.regions.as_slice() {
                let expect = expected_results.map(|t| std::rc::Rc::<[Type]>::from(&t[..]));
                stack.push(Task::Enter {
                    region: *r,
                    owner: Some(inst),
                    ctx: RegionCtx {
                        term: Op::Yield,
                        expect,
                    },
                });
            }
        }
    }

    /// Reports a typing error; returns the result types otherwise.
    fn typed(&mut self, inst: Inst, r: Result<TypeList, TypeError>) -> Option<TypeList> {
        match r {
            Ok(t) => Some(t),
            Err(TypeError::UnknownCallee(callee)) => {
                self.err(Some(inst), VerifyErrorKind::UnknownCallee { callee });
                None
            }
            Err(error) => {
                let value = match &error {
                    TypeError::Operand { index, .. } => self
                        .f
                        .insts
                        .get(inst)
                        .and_then(|d| d.args.get(*index))
                        .map(|&v| label(self.f, v)),
                    TypeError::Arity { .. } | TypeError::UnknownCallee(_) | TypeError::Shape(_) => {
                        None
                    }
                };
                self.err(Some(inst), VerifyErrorKind::Type { error, value });
                None
            }
        }
    }

    /// Checks a loop's region count and body parameters (the body itself is entered
    /// by the walk).
    fn loop_region(&mut self, inst: Inst, carried: Option<TypeList>) {
        let f = self.f;
        let Some(d) = f.insts.get(inst) else {
            return;
        };
        let [r] = d.regions.as_slice() else {
            return self.err(
                Some(inst),
                VerifyErrorKind::LoopRegions {
                    got: d.regions.len(),
                },
            );
        };
        let (Some(rd), Some(carried)) = (f.regions.get(*r), carried) else {
            return;
        };
        let mut expected = vec![Type::I64];
        expected.extend(carried);
        let got: Option<Vec<Type>> = rd
            .params
            .iter()
            .map(|&p| f.values.get(p).map(|vd| vd.ty))
            .collect();
        if got.as_ref() != Some(&expected) {
            self.err(
                Some(inst),
                VerifyErrorKind::LoopParams {
                    region: r.to_string(),
                    expected: type_list(&expected),
                    got: typed_labels(f, &rd.params),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::FunctionBuilder;
    use crate::function::Regions;
    use crate::op::{Bound, Constant, LoopBounds, Signature};

    /// A `VerifiedModule` exists only for a module that verifies, and a part of one
    /// only when the part is closed under calls.
    #[test]
    fn verified_modules_are_verified_and_parts_closed_under_calls() {
        let src = "func @f(%x: f64) -> f64 {\n  %y = call @g(%x)\n  ret %y\n}\n\
                   func @g(%x: f64) -> f64 {\n  %y = sin %x\n  ret %y\n}\n\
                   func @h(%x: f64) -> f64 {\n  ret %x\n}\n";
        let m = crate::parse_module(src).unwrap();
        let v = VerifiedModule::new(m.clone()).unwrap();
        assert_eq!(v.funcs.len(), 3);
        let keep = |names: &[&'static str]| names.iter().copied().collect();
        let fg = v.restrict(&keep(&["f", "g"])).unwrap();
        assert_eq!(crate::print_module(fg.module()), {
            let mut want = m.clone();
            want.funcs.retain(|f| f.name != "h");
            crate::print_module(&want)
        });
        assert!(verify_module(fg.module()).is_ok());
        // `@f` without its callee, however `keep` is spelled.
        assert!(v.restrict(&keep(&["f"])).is_none());
        assert!(v.restrict(&keep(&["f", "nope"])).is_none());
        assert_eq!(v.restrict(&keep(&["h", "nope"])).unwrap().funcs.len(), 1);
        // A module that does not verify gets no proof: a call to a missing function,
        // or a name defined twice.
        let mut bad = m.clone();
        bad.funcs.retain(|f| f.name != "g");
        assert!(VerifiedModule::new(bad).is_err());
        let mut dup = m;
        let first = dup.funcs[0].clone();
        dup.funcs.push(first);
        assert!(VerifiedModule::new(dup).is_err());
    }

    const B03: LoopBounds = LoopBounds {
        start: Bound::Imm(0),
        end: Bound::Imm(3),
    };

    /// `f(x, y) = (x + y)(x - y)`: insts 0..=3 are add, sub, mul, ret.
    fn quickstart() -> Function {
        let mut b = FunctionBuilder::new("f");
        let x = b.named_param("x", Type::F64);
        let y = b.named_param("y", Type::F64);
        let a = b.ins1(Op::Add, &[x, y]).unwrap();
        let s = b.ins1(Op::Sub, &[x, y]).unwrap();
        let c = b.ins1(Op::Mul, &[a, s]).unwrap();
        b.set_name(a, "a");
        b.set_name(s, "b");
        b.set_name(c, "c");
        b.ret(&[c]).unwrap();
        b.finish().unwrap()
    }

    /// `g(x) = loop %i in 0..3 (%a = %x) { %a2 = mul %a, %a; yield %a2 }`, returning
    /// the loop result `%r`. Insts: 0 mul, 1 yield, 2 loop, 3 ret.
    fn one_loop() -> Function {
        let mut b = FunctionBuilder::new("g");
        let x = b.named_param("x", Type::F64);
        let r = b
            .build_loop(B03, &[], &[x], |b, i, c| {
                b.set_name(i, "i");
                b.set_name(c[0], "a");
                let a2 = b.ins1(Op::Mul, &[c[0], c[0]])?;
                b.set_name(a2, "a2");
                Ok(vec![a2])
            })
            .unwrap();
        b.set_name(r[0], "r");
        b.ret(&r).unwrap();
        b.finish().unwrap()
    }

    /// `@h(x, y) -> (x*y, x+y)` and `@g(x, n)` with two nested loops (dynamic bounds)
    /// calling `@h`.
    fn nested_module() -> Module {
        let mut m = Module::new();
        let mut b = FunctionBuilder::new("h");
        let x = b.named_param("x", Type::F64);
        let y = b.named_param("y", Type::F64);
        let p = b.ins1(Op::Mul, &[x, y]).unwrap();
        let s = b.ins1(Op::Add, &[x, y]).unwrap();
        b.ret(&[p, s]).unwrap();
        m.insert(b.finish().unwrap());

        let mut b = FunctionBuilder::new("g");
        b.declare_module(&m);
        let x = b.named_param("x", Type::F64);
        let n = b.named_param("n", Type::I64);
        let outer = LoopBounds {
            start: Bound::Imm(0),
            end: Bound::Dyn,
        };
        let inner = LoopBounds {
            start: Bound::Dyn,
            end: Bound::Imm(3),
        };
        let r = b
            .build_loop(outer, &[n], &[x], |b, i, c| {
                b.build_loop(inner, &[i], &[c[0]], |b, _j, d| {
                    let uv = b.call("h", &[d[0], x])?;
                    Ok(vec![b.ins1(Op::Add, &[uv[0], uv[1]])?])
                })
            })
            .unwrap();
        b.ret(&r).unwrap();
        m.insert(b.finish().unwrap());
        m
    }

    fn inst(n: u32) -> Inst {
        Inst::from_u32(n)
    }

    /// The first error of kind `pred`, after checking its message names `parts`.
    fn expect(
        res: Result<(), VerifyErrors>,
        pred: impl Fn(&VerifyErrorKind) -> bool,
        parts: &[&str],
    ) -> VerifyError {
        let errs = res.expect_err("verifier accepted malformed IR");
        let Some(e) = errs.errors.iter().find(|e| pred(&e.kind)) else {
            panic!("no error of the expected kind in:\n{errs}");
        };
        let msg = e.to_string();
        for p in parts {
            assert!(msg.contains(p), "{msg:?} does not mention {p:?}\n{errs}");
        }
        e.clone()
    }

    fn check(f: &Function) -> Result<(), VerifyErrors> {
        verify_function(f, None)
    }

    #[test]
    fn accepts_well_formed_functions() {
        verify_function(&quickstart(), None).unwrap();
        verify_function(&one_loop(), None).unwrap();
        let m = nested_module();
        verify_module(&m).unwrap();
        for f in &m.funcs {
            verify_function(f, Some(&m)).unwrap();
        }
    }

    #[test]
    fn renders_instructions_like_the_text_format() {
        let f = quickstart();
        assert_eq!(render_inst(&f, inst(2)), "inst2 (%c = mul %a, %b)");
        assert_eq!(render_inst(&f, inst(3)), "inst3 (ret %c)");
        assert_eq!(render_inst(&f, inst(99)), "inst99 (<invalid>)");
        let f = one_loop();
        assert_eq!(
            render_inst(&f, inst(2)),
            "inst2 (%r = loop %i in 0..3 (%a = %x : f64) {...})"
        );
        let m = nested_module();
        let g = m.get("g").unwrap();
        let call = g
            .insts
            .iter()
            .find(|(_, d)| matches!(d.op, Op::Call(_)))
            .unwrap()
            .0;
        assert!(
            render_inst(g, call).contains("call @h("),
            "{}",
            render_inst(g, call)
        );
        let mut b = FunctionBuilder::new("k");
        let k = b.constant(Constant::I64(7));
        b.set_name(k, "k");
        let t = b.ins1(Op::Cast(crate::ScalarType::F64), &[k]).unwrap();
        b.ret(&[t]).unwrap();
        let f = b.finish().unwrap();
        assert_eq!(render_inst(&f, inst(0)), "inst0 (%k = const 7 : i64)");
        assert_eq!(render_inst(&f, inst(1)), "inst1 (%v1 = cast %k : f64)");
    }

    // ---- scoping ----

    #[test]
    fn rejects_use_before_definition() {
        let mut f = quickstart();
        let c = f.insts[inst(2)].results[0];
        f.insts[inst(0)].args[1] = c;
        expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::UseBeforeDef { value } if value == "%c"),
            &[
                "@f",
                "inst0 (%a = add %x, %c)",
                "%c is used before its definition",
            ],
        );
    }

    #[test]
    fn rejects_loop_body_values_used_after_the_loop() {
        let mut f = one_loop();
        let a2 = f.insts[inst(0)].results[0];
        f.insts[inst(3)].args[0] = a2;
        expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::OutOfScope { value } if value == "%a2"),
            &["@g", "inst3 (ret %a2)", "%a2 is used outside the region"],
        );
        // The loop's own results are not visible in its body.
        let mut f = one_loop();
        let r = f.insts[inst(2)].results[0];
        f.insts[inst(0)].args[0] = r;
        expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::UseBeforeDef { value } if value == "%r"),
            &["@g", "inst0 (%a2 = mul %r, %a)", "%r"],
        );
    }

    #[test]
    fn rejects_values_nothing_reachable_defines() {
        let mut f = quickstart();
        let stray = f.create_inst(Op::Const(Constant::F64(1.0)), vec![], &[Type::F64], None);
        let u = f.insts[stray].results[0];
        f.set_name(u, "u");
        f.insts[inst(3)].args[0] = u;
        expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::Undefined { value } if value == "%u"),
            &["@f", "inst3 (ret %u)", "%u is not defined"],
        );
    }

    // ---- definitions and structure ----

    #[test]
    fn rejects_values_defined_twice() {
        let mut f = quickstart();
        let a = f.insts[inst(0)].results[0];
        f.insts[inst(1)].results[0] = a;
        expect(
            check(&f),
            |k| {
                matches!(k, VerifyErrorKind::DefinedTwice { value, first }
                if value == "%a" && first == "result 0 of inst0")
            },
            &["@f", "inst1 (%a = sub %x, %y)", "%a is defined twice"],
        );
    }

    #[test]
    fn rejects_value_defs_that_disagree_with_the_ir() {
        let mut f = quickstart();
        let c = f.insts[inst(2)].results[0];
        f.values[c].def = ValueDef::Result(inst(0), 0);
        expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::DefMismatch { value, .. } if value == "%c"),
            &[
                "@f",
                "inst2 (%c = mul %a, %b)",
                "recorded as result 0 of inst0",
                "result 0 of inst2",
            ],
        );
    }

    #[test]
    fn rejects_instructions_listed_twice() {
        let mut f = quickstart();
        let body = f.body;
        f.regions[body].insts.insert(3, inst(0));
        expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::InstListedTwice { first } if first == "region0 position 0"),
            &["@f", "inst0 (%a = add %x, %y)", "listed twice"],
        );
    }

    #[test]
    fn rejects_regions_reached_twice() {
        let mut f = one_loop();
        let region = f.insts[inst(2)].regions[0];
        let x = f.params()[0];
        let second = f.create_inst(Op::Loop(Box::new(B03)), vec![x], &[Type::F64], Some(region));
        let body = f.body;
        f.regions[body].insts.insert(1, second);
        expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::RegionReachedTwice { region } if region == "region1"),
            &[
                "@g",
                "inst4 (%v5 = loop %i in 0..3 (%a = %x : f64) {...})",
                "region1 is reached twice",
            ],
        );
    }

    #[test]
    fn rejects_region_nesting_cycles() {
        let mut f = quickstart();
        let x = f.params()[0];
        let body = f.body;
        let l = f.create_inst(Op::Loop(Box::new(B03)), vec![x], &[Type::F64], Some(body));
        f.regions[body].insts.insert(0, l);
        expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::RegionCycle { region } if region == "region0"),
            &[
                "@f",
                "inst4 (%v5 = loop %x in 0..3 (%y = %x : f64) {...})",
                "region0 is nested inside itself",
            ],
        );
    }

    #[test]
    fn rejects_wrong_region_parents() {
        let mut f = one_loop();
        let region = f.insts[inst(2)].regions[0];
        f.regions[region].parent = None;
        expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::RegionParent { .. }),
            &[
                "@g",
                "inst2 (%r = loop",
                "region1 records parent none but is owned by inst2",
            ],
        );
    }

    #[test]
    fn rejects_out_of_range_ids() {
        let is_oor = |what: &'static str| move |k: &VerifyErrorKind| matches!(k, VerifyErrorKind::OutOfRange { what: w } if w.contains(what));
        let mut f = quickstart();
        f.insts[inst(0)].args[0] = Value::from_u32(999);
        expect(
            check(&f),
            is_oor("value v999 (operand 0)"),
            &["@f", "inst0 (%a = add %<invalid v999>, %y)"],
        );

        let mut f = quickstart();
        let body = f.body;
        f.regions[body].insts.insert(1, inst(77));
        expect(
            check(&f),
            is_oor("inst77 (position 1 of region0)"),
            &["@f", "does not exist"],
        );

        let mut f = one_loop();
        f.insts[inst(2)].regions = Region::from_u32(55).into();
        expect(
            check(&f),
            is_oor("region55"),
            &["@g", "inst2 (%r = loop %? in 0..3 (%? = %x : f64) {...})"],
        );

        let mut f = quickstart();
        f.insts[inst(2)].results[0] = Value::from_u32(500);
        expect(
            check(&f),
            is_oor("value v500 (as result 0 of inst2)"),
            &["@f", "inst2"],
        );

        let mut f = quickstart();
        f.body = Region::from_u32(9);
        expect(check(&f), is_oor("body region9"), &["@f"]);
    }

    // ---- types ----

    #[test]
    fn rejects_ill_typed_operands() {
        let mut f = quickstart();
        let k = f.create_inst(Op::Const(Constant::I64(1)), vec![], &[Type::I64], None);
        let kv = f.insts[k].results[0];
        f.set_name(kv, "k");
        let body = f.body;
        f.regions[body].insts.insert(0, k);
        f.insts[inst(0)].args[1] = kv;
        expect(
            check(&f),
            |k| {
                matches!(
                    k,
                    VerifyErrorKind::Type {
                        error: TypeError::Operand { index: 1, .. },
                        ..
                    }
                )
            },
            &[
                "@f",
                "inst0 (%a = add %x, %k)",
                "operand 1 has type i64",
                "(operand %k)",
            ],
        );
    }

    #[test]
    fn rejects_results_that_disagree_with_the_op() {
        let mut f = quickstart();
        let c = f.insts[inst(2)].results[0];
        f.values[c].ty = Type::F32;
        expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::ResultTypes { .. }),
            &[
                "@f",
                "inst2 (%c = mul %a, %b)",
                "results are (%c: f32) but the op gives (f64)",
            ],
        );
        // A result too many.
        let mut f = quickstart();
        let extra = f.values.push(crate::ValueData {
            ty: Type::F64,
            def: ValueDef::Result(inst(0), 1),
        });
        f.insts[inst(0)].results.push(extra);
        expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::ResultTypes { got, .. } if got == "%a: f64, %v5: f64"),
            &["@f", "inst0 (%a, %v5 = add %x, %y)"],
        );
    }

    #[test]
    fn rejects_body_params_that_disagree_with_the_signature() {
        let mut f = quickstart();
        f.sig.params[1] = Type::F32;
        expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::ParamTypes { .. }),
            &[
                "@f:",
                "body parameters are (%x: f64, %y: f64) but the signature says (f64, f32)",
            ],
        );
    }

    // ---- calls ----

    /// `@k(x: f64, n: i64)` whose body is `ret %x` preceded by `call @callee(args)`
    /// (with `nres` f64 results); `args` index into `[x, n]`.
    fn caller(callee: &str, args: &[usize], nres: usize) -> Function {
        let mut b = FunctionBuilder::new("k");
        let x = b.named_param("x", Type::F64);
        let n = b.named_param("n", Type::I64);
        b.ret(&[x]).unwrap();
        let mut f = b.finish().unwrap();
        let vals = [x, n];
        let call = f.create_inst(
            Op::Call(callee.into()),
            args.iter().map(|&i| vals[i]).collect::<Vec<_>>(),
            &vec![Type::F64; nres],
            None,
        );
        let body = f.body;
        f.regions[body].insts.insert(0, call);
        f
    }

    #[test]
    fn rejects_calls_to_unknown_functions() {
        let m = nested_module();
        let f = caller("nope", &[0], 1);
        expect(
            verify_function(&f, Some(&m)),
            |k| matches!(k, VerifyErrorKind::UnknownCallee { callee } if callee == "nope"),
            &[
                "@k",
                "inst1 (%v2 = call @nope(%x))",
                "unknown function @nope",
            ],
        );
    }

    #[test]
    fn rejects_calls_with_wrong_arity() {
        let m = nested_module();
        let f = caller("h", &[0], 2);
        expect(
            verify_function(&f, Some(&m)),
            |k| {
                matches!(
                    k,
                    VerifyErrorKind::Type {
                        error: TypeError::Arity {
                            expected: 2,
                            got: 1,
                            ..
                        },
                        ..
                    }
                )
            },
            &[
                "@k",
                "inst1 (%v2, %v3 = call @h(%x))",
                "takes 2 operand(s), got 1",
            ],
        );
    }

    #[test]
    fn rejects_calls_with_wrong_argument_types() {
        let m = nested_module();
        let f = caller("h", &[0, 1], 2);
        expect(
            verify_function(&f, Some(&m)),
            |k| {
                matches!(
                    k,
                    VerifyErrorKind::Type {
                        error: TypeError::Operand { index: 1, .. },
                        ..
                    }
                )
            },
            &["@k", "call @h(%x, %n)", "parameter 1 of @h", "(operand %n)"],
        );
    }

    #[test]
    fn rejects_calls_without_a_module() {
        let m = nested_module();
        expect(
            verify_function(m.get("g").unwrap(), None),
            |k| matches!(k, VerifyErrorKind::NoModule { callee } if callee == "h"),
            &["@g", "call @h(", "no module to resolve @h"],
        );
    }

    #[test]
    fn rejects_direct_recursion() {
        let mut m = Module::new();
        let mut f = caller("k", &[0, 1], 1);
        m.insert(f.clone());
        let is_rec = |k: &VerifyErrorKind| matches!(k, VerifyErrorKind::Recursion { cycle } if cycle == "@k -> @k");
        let parts = ["@k", "inst1 (%v2 = call @k(%x, %n))", "call cycle @k -> @k"];
        expect(verify_module(&m), is_rec, &parts);
        expect(verify_function(&f, Some(&m)), is_rec, &parts);
        expect(verify_function(&f, None), is_rec, &parts);
        // Not in the module: the call still resolves to `f` itself.
        f.name = "k".into();
        expect(verify_function(&f, Some(&Module::new())), is_rec, &parts);
    }

    #[test]
    fn rejects_mutual_recursion_once() {
        let sig = Signature {
            params: vec![Type::F64],
            results: vec![Type::F64],
        };
        let mut m = Module::new();
        for (me, other) in [("p", "q"), ("q", "p")] {
            let mut b = FunctionBuilder::new(me);
            b.declare(other, sig.clone());
            let x = b.named_param("x", Type::F64);
            let r = b.call(other, &[x]).unwrap();
            b.ret(&r).unwrap();
            m.insert(b.finish().unwrap());
        }
        let errs = verify_module(&m).unwrap_err();
        assert_eq!(errs.errors.len(), 1, "{errs}");
        expect(
            Err(errs),
            |k| matches!(k, VerifyErrorKind::Recursion { cycle } if cycle == "@p -> @q -> @p"),
            &["@p", "inst0 (%v1 = call @q(%x))"],
        );
        expect(
            verify_function(m.get("q").unwrap(), Some(&m)),
            |k| matches!(k, VerifyErrorKind::Recursion { cycle } if cycle == "@q -> @p -> @q"),
            &["@q", "call @p(%x)"],
        );
    }

    // ---- loops ----

    #[test]
    fn rejects_loops_without_exactly_one_region() {
        // (Two regions cannot be expressed: `InstData::regions` holds at most one.)
        let mut f = one_loop();
        f.insts[inst(2)].regions = Regions::none();
        expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::LoopRegions { got: 0 }),
            &[
                "@g",
                "inst2 (%r = loop %? in 0..3 (%? = %x : f64) {...})",
                "exactly one region",
            ],
        );
    }

    #[test]
    fn rejects_loop_body_params_that_disagree() {
        let mut f = one_loop();
        let region = f.insts[inst(2)].regions[0];
        let i = f.regions[region].params[0];
        f.values[i].ty = Type::F64;
        expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::LoopParams { .. }),
            &[
                "@g",
                "inst2 (%r = loop %i",
                "region1 parameters are (%i: f64, %a: f64), expected (i64, f64)",
            ],
        );
    }

    #[test]
    fn rejects_loop_results_that_disagree() {
        let mut f = one_loop();
        let r = f.insts[inst(2)].results[0];
        f.values[r].ty = Type::I64;
        expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::ResultTypes { .. }),
            &[
                "@g",
                "inst2 (%r = loop",
                "results are (%r: i64) but the op gives (f64)",
            ],
        );
    }

    #[test]
    fn rejects_yields_that_disagree_with_the_carried_values() {
        let mut f = one_loop();
        let region = f.insts[inst(2)].regions[0];
        let i = f.regions[region].params[0];
        f.insts[inst(1)].args[0] = i;
        expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::YieldTypes { .. }),
            &[
                "@g",
                "inst1 (yield %i)",
                "`yield` gives (%i: i64) but the loop carries (f64)",
            ],
        );
    }

    #[test]
    fn rejects_loops_missing_dynamic_bounds() {
        let mut f = one_loop();
        f.insts[inst(2)].op = Op::Loop(Box::new(LoopBounds {
            start: Bound::Dyn,
            end: Bound::Dyn,
        }));
        expect(
            check(&f),
            |k| {
                matches!(
                    k,
                    VerifyErrorKind::LoopBoundOperands {
                        expected: 2,
                        got: 1
                    }
                )
            },
            &[
                "@g",
                "inst2 (%r = loop %i in %x..%? () {...})",
                "2 dynamic bound(s)",
            ],
        );
        // A dynamic bound that is not i64.
        let mut f = one_loop();
        f.insts[inst(2)].op = Op::Loop(Box::new(LoopBounds {
            start: Bound::Imm(0),
            end: Bound::Dyn,
        }));
        expect(
            check(&f),
            |k| {
                matches!(
                    k,
                    VerifyErrorKind::Type {
                        error: TypeError::Operand { index: 0, .. },
                        ..
                    }
                )
            },
            &["@g", "inst2 (%r = loop %i in 0..%x ()", "(operand %x)"],
        );
    }

    // ---- terminators ----

    #[test]
    fn rejects_missing_terminators() {
        let mut f = quickstart();
        let body = f.body;
        f.regions[body].insts.pop();
        expect(
            check(&f),
            |k| {
                matches!(
                    k,
                    VerifyErrorKind::MissingTerminator {
                        expected: "ret",
                        ..
                    }
                )
            },
            &[
                "@f",
                "inst2 (%c = mul %a, %b)",
                "region0 does not end with `ret`",
            ],
        );
        let f = Function::new("e", Signature::default());
        let e = expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::MissingTerminator { .. }),
            &["@e:", "region0 does not end with `ret`"],
        );
        assert_eq!(e.inst, None);
        let mut f = one_loop();
        let region = f.insts[inst(2)].regions[0];
        f.regions[region].insts.clear();
        expect(
            check(&f),
            |k| {
                matches!(
                    k,
                    VerifyErrorKind::MissingTerminator {
                        expected: "yield",
                        ..
                    }
                )
            },
            &[
                "@g",
                "inst2 (%r = loop",
                "region1 does not end with `yield`",
            ],
        );
    }

    #[test]
    fn rejects_the_wrong_terminator() {
        let mut f = quickstart();
        f.insts[inst(3)].op = Op::Yield;
        expect(
            check(&f),
            |k| {
                matches!(
                    k,
                    VerifyErrorKind::WrongTerminator {
                        expected: "ret",
                        got: "yield",
                        ..
                    }
                )
            },
            &[
                "@f",
                "inst3 (yield %c)",
                "region0 ends with `yield` but must end with `ret`",
            ],
        );
        let mut f = one_loop();
        f.insts[inst(1)].op = Op::Ret;
        expect(
            check(&f),
            |k| {
                matches!(
                    k,
                    VerifyErrorKind::WrongTerminator {
                        expected: "yield",
                        got: "ret",
                        ..
                    }
                )
            },
            &["@g", "inst1 (ret %a2)", "region1 ends with `ret`"],
        );
    }

    #[test]
    fn rejects_terminators_in_the_middle() {
        let mut f = quickstart();
        let x = f.params()[0];
        let early = f.create_inst(Op::Ret, vec![x], &[], None);
        let body = f.body;
        f.regions[body].insts.insert(1, early);
        expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::TerminatorNotLast { op: "ret", .. }),
            &["@f", "inst4 (ret %x)", "`ret` in the middle of region0"],
        );
        let mut f = one_loop();
        let y = f.create_inst(Op::Yield, vec![], &[], None);
        let body = f.body;
        f.regions[body].insts.insert(0, y);
        expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::TerminatorNotLast { op: "yield", .. }),
            &["@g", "inst4 (yield)", "in the middle of region0"],
        );
    }

    #[test]
    fn rejects_returns_that_disagree_with_the_signature() {
        let mut f = quickstart();
        f.sig.results = vec![Type::F64, Type::F64];
        expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::RetTypes { .. }),
            &[
                "@f",
                "inst3 (ret %c)",
                "`ret` gives (%c: f64) but the signature returns (f64, f64)",
            ],
        );
    }

    #[test]
    fn rejects_regions_on_non_loop_ops() {
        let mut f = quickstart();
        let r = f.new_region();
        f.insts[inst(2)].regions = r.into();
        expect(
            check(&f),
            |k| matches!(k, VerifyErrorKind::UnexpectedRegions { op: "mul", got: 1 }),
            &["@f", "inst2 (%c = mul %a, %b)", "only `loop` owns a region"],
        );
    }

    // ---- modules ----

    #[test]
    fn rejects_duplicate_function_names() {
        let mut m = Module::new();
        m.funcs.push(quickstart());
        m.funcs.push(quickstart());
        expect(
            verify_module(&m),
            |k| matches!(k, VerifyErrorKind::DuplicateFunction { name } if name == "f"),
            &["@f:", "function @f is defined more than once"],
        );
    }

    #[test]
    fn collects_every_error() {
        let mut f = quickstart();
        f.sig.params[0] = Type::I64; // ParamTypes
        f.insts[inst(0)].args[0] = Value::from_u32(1000); // OutOfRange
        let c = f.insts[inst(2)].results[0];
        f.insts[inst(1)].args[0] = c; // UseBeforeDef
        f.sig.results.clear(); // RetTypes
        let errs = check(&f).unwrap_err();
        let kinds: Vec<_> = errs.kinds().collect();
        assert_eq!(kinds.len(), 4, "{errs}");
        let text = errs.to_string();
        assert!(text.starts_with("4 verifier error(s):"), "{text}");
        assert_eq!(text.lines().count(), 5, "{text}");
    }

    // ---- robustness ----

    /// Ops to put in a corrupted instruction's place.
    fn ops() -> [Op; 14] {
        [
            Op::Add,
            Op::Neg,
            Op::Fma,
            Op::Select,
            Op::Guard,
            Op::Yield,
            Op::Ret,
            Op::Cast(crate::ScalarType::I64),
            Op::Const(Constant::Bool(true)),
            Op::Powi(3),
            Op::Loop(Box::new(B03)),
            Op::Loop(Box::new(LoopBounds {
                start: Bound::Dyn,
                end: Bound::Dyn,
            })),
            Op::Lt,
            Op::Sin,
        ]
    }

    /// Applies one corruption, chosen by `kind`, with `a` and `b` as raw material.
    fn corrupt(f: &mut Function, kind: u8, a: u32, b: u32) {
        let ni = f.insts.len() as u32;
        let nv = f.values.len() as u32;
        let nr = f.regions.len() as u32;
        let i = inst(a % (ni + 1));
        let r = Region::from_u32(a % (nr + 1));
        let v = Value::from_u32(b % (nv + 2));
        match kind % 14 {
            0 => {
                if let Some(d) = f.insts.get_mut(i) {
                    if !d.args.is_empty() {
                        let k = b as usize % d.args.len();
                        d.args[k] = Value::from_u32(a % (nv + 2));
                    } else {
                        d.args.push(v);
                    }
                }
            }
            1 => {
                if let Some(d) = f.insts.get_mut(i) {
                    d.op = match b % 16 {
                        14 => Op::Call("h".into()),
                        15 => Op::Call("g".into()),
                        k => ops()[k as usize].clone(),
                    };
                }
            }
            2 => {
                if let Some(rd) = f.regions.get_mut(r) {
                    let pos = b as usize % (rd.insts.len() + 1);
                    rd.insts.insert(pos, inst(b % (ni + 2)));
                }
            }
            3 => {
                if let Some(rd) = f.regions.get_mut(r) {
                    if !rd.insts.is_empty() {
                        let pos = b as usize % rd.insts.len();
                        rd.insts.remove(pos);
                    }
                }
            }
            4 => {
                if let Some(d) = f.insts.get_mut(i) {
                    d.regions = Region::from_u32(b % (nr + 2)).into();
                }
            }
            5 => f.body = Region::from_u32(b % (nr + 1)),
            6 => {
                if let Some(vd) = f.values.get_mut(v) {
                    vd.def = if a.is_multiple_of(2) {
                        ValueDef::Param(Region::from_u32(b % (nr + 2)), a % 3)
                    } else {
                        ValueDef::Result(inst(b % (ni + 2)), a % 3)
                    };
                }
            }
            7 => {
                if let Some(d) = f.insts.get_mut(i) {
                    if b.is_multiple_of(2) {
                        d.results.pop();
                    } else {
                        d.results.push(v);
                    }
                }
            }
            8 => {
                if let Some(rd) = f.regions.get_mut(r) {
                    if b.is_multiple_of(2) {
                        rd.params.push(v);
                    } else {
                        rd.params.pop();
                    }
                }
            }
            9 => {
                if let Some(rd) = f.regions.get_mut(r) {
                    rd.parent = b.is_multiple_of(2).then(|| inst(b % (ni + 2)));
                }
            }
            10 => {
                if let Some(vd) = f.values.get_mut(v) {
                    vd.ty = [Type::F64, Type::F32, Type::I64, Type::BOOL][a as usize % 4];
                }
            }
            11 => f.sig.params.push(Type::F64),
            12 => f.sig.results.truncate(a as usize % 2),
            _ => {
                if let Some(d) = f.insts.get_mut(i) {
                    d.args.clear();
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        #[test]
        fn never_panics_on_corrupted_functions(
            muts in proptest::collection::vec((0u8..14, 0u32..64, 0u32..64), 1..10)
        ) {
            let mut m = nested_module();
            let mut f = m.get("g").unwrap().clone();
            for &(kind, a, b) in &muts {
                corrupt(&mut f, kind, a, b);
            }
            for res in [verify_function(&f, Some(&m)), verify_function(&f, None)] {
                if let Err(e) = res {
                    let _ = e.to_string();
                }
            }
            m.insert(f);
            if let Err(e) = verify_module(&m) {
                let _ = e.to_string();
            }
        }
    }
}
