//! Derivative requests: naming, signatures, and generating each derived function once.
//!
//! A transform of `@f` may need derivatives of the functions `@f` calls, with respect
//! to whichever of their arguments are active at the call. A [`Session`] hands out the
//! name and signature of each requested derivative at once (so a caller can be emitted
//! before its callee's derivative exists) and generates each distinct
//! `(function, kind, wrt)` exactly once, from a work queue rather than by recursion.
//!
//! Names: `@f.jvp`, `@f.vjp`, `@f.grad` when `wrt` is every float parameter in order;
//! otherwise the positions are spelled out, `@f.jvp.wrt0_2` (`@f.jvp.wrtnone` for none).
//! A module function already bearing a derived name is replaced by the new derivative.

use crate::emit::is_float;
use crate::error::{AdError, Result};
use jitad_ir::callgraph::CallGraph;
use jitad_ir::{verify::verify_function_in, Function, Module, Signature, Type, VerifiedModule};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// Which derivative ([`derive_functions`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `f.jvp(x..., dx_wrt...) -> (y..., dy...)`.
    Jvp,
    /// `f.vjp(x..., ybar...) -> (y..., xbar_wrt...)`.
    Vjp,
    /// `f.grad(x...) -> (y, g_wrt...)`.
    Grad,
}

impl Kind {
    fn suffix(self) -> &'static str {
        match self {
            Kind::Jvp => "jvp",
            Kind::Vjp => "vjp",
            Kind::Grad => "grad",
        }
    }
}

/// The positions of `f`'s float scalar parameters: the default `wrt`.
pub fn float_params(f: &Function) -> Vec<usize> {
    f.sig
        .params
        .iter()
        .enumerate()
        .filter(|(_, &t)| is_float(t))
        .map(|(i, _)| i)
        .collect()
}

/// The positions of a signature's float scalar parameters.
pub(crate) fn float_params_of(sig: &Signature) -> Vec<usize> {
    sig.params
        .iter()
        .enumerate()
        .filter(|(_, &t)| is_float(t))
        .map(|(i, _)| i)
        .collect()
}

/// Positions of the float results (those that get tangents and adjoints).
pub(crate) fn float_results(sig: &Signature) -> Vec<usize> {
    sig.results
        .iter()
        .enumerate()
        .filter(|(_, &t)| is_float(t))
        .map(|(i, _)| i)
        .collect()
}

fn type_list(ts: &[Type]) -> String {
    ts.iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One pending derivative.
struct Request {
    src: String,
    kind: Kind,
    wrt: Vec<usize>,
    name: String,
}

/// A function the session can differentiate: the module's, or one it made.
enum FnRef<'m> {
    Module(&'m Function),
    Extra(Rc<Function>),
}

impl std::ops::Deref for FnRef<'_> {
    type Target = Function;
    fn deref(&self) -> &Function {
        match self {
            FnRef::Module(f) => f,
            FnRef::Extra(f) => f,
        }
    }
}

/// Generates the derivatives a transform needs, each once.
pub(crate) struct Session<'m> {
    /// The module being differentiated (read only; results are inserted afterwards),
    /// through its call graph: functions by name in O(1), cycles found once.
    pub(crate) graph: CallGraph<'m>,
    /// Signatures of the module's functions and of every requested derivative.
    pub(crate) sigs: HashMap<String, Signature>,
    queue: VecDeque<Request>,
    names: HashMap<(String, Kind, Vec<usize>), String>,
    /// Functions made during the session that are not derivatives of a module function
    /// (a loop body outlined as its forward step, the backward step wrapping its vjp):
    /// they can be differentiated like module functions and join the module at the end.
    extra: HashMap<String, Rc<Function>>,
    extra_order: Vec<String>,
    /// The checkpointing policy of every `revloop` reverse mode emits.
    pub(crate) policy: jitad_ir::checkpoint::Policy,
    /// The caller verified the module ([`derive_functions_verified`]): its functions
    /// are not verified again before they are differentiated.
    verified: bool,
}

impl<'m> Session<'m> {
    pub(crate) fn new(module: &'m Module) -> Self {
        Session {
            graph: CallGraph::new(module),
            sigs: module
                .funcs
                .iter()
                .map(|f| (f.name.clone(), f.sig.clone()))
                .collect(),
            queue: VecDeque::new(),
            names: HashMap::new(),
            extra: HashMap::new(),
            extra_order: Vec::new(),
            policy: jitad_ir::checkpoint::Policy::default(),
            verified: false,
        }
    }

    /// Adds a function made by the session (see `extra`); its signature becomes known
    /// at once.
    pub(crate) fn add_extra(&mut self, f: Function) {
        self.sigs.insert(f.name.clone(), f.sig.clone());
        if self
            .extra
            .insert(f.name.clone(), Rc::new(f.clone()))
            .is_none()
        {
            self.extra_order.push(f.name);
        }
    }

    /// A module function or one the session made.
    fn lookup(&self, name: &str) -> Option<FnRef<'m>> {
        match self.extra.get(name) {
            Some(f) => Some(FnRef::Extra(f.clone())),
            None => self.graph.get(name).map(FnRef::Module),
        }
    }

    /// Requests the `kind` derivative of `func` with respect to `wrt`; returns its name.
    /// Checks `wrt` and, for `grad`, the result.
    pub(crate) fn request(&mut self, func: &str, kind: Kind, wrt: &[usize]) -> Result<String> {
        let key = (func.to_string(), kind, wrt.to_vec());
        if let Some(n) = self.names.get(&key) {
            return Ok(n.clone());
        }
        let f = self
            .lookup(func)
            .ok_or_else(|| AdError::UnknownFunction(func.to_string()))?;
        let f = &*f;
        let params = &f.sig.params;
        let mut seen = vec![false; params.len()];
        for &i in wrt {
            let Some(&ty) = params.get(i) else {
                return Err(AdError::WrtOutOfRange {
                    func: func.into(),
                    index: i,
                    params: params.len(),
                });
            };
            if std::mem::replace(&mut seen[i], true) {
                return Err(AdError::WrtDuplicate {
                    func: func.into(),
                    index: i,
                });
            }
            if !is_float(ty) {
                return Err(AdError::NotDifferentiable {
                    func: func.into(),
                    index: i,
                    ty,
                });
            }
        }
        let results = &f.sig.results;
        if kind == Kind::Grad && !(results.len() == 1 && results[0].is_float_scalar()) {
            return Err(AdError::NotScalar {
                func: func.into(),
                results: type_list(results),
            });
        }
        let mut name = format!("{func}.{}", kind.suffix());
        if wrt != float_params(f).as_slice() {
            name.push_str(".wrt");
            if wrt.is_empty() {
                name.push_str("none");
            }
            let list: Vec<String> = wrt.iter().map(|i| i.to_string()).collect();
            name.push_str(&list.join("_"));
        }
        let wrt_tys = wrt.iter().map(|&i| params[i]);
        let float_res = float_results(&f.sig).into_iter().map(|k| results[k]);
        let sig = match kind {
            Kind::Jvp => Signature {
                params: params.iter().copied().chain(wrt_tys).collect(),
                results: results.iter().copied().chain(float_res).collect(),
            },
            Kind::Vjp => Signature {
                params: params.iter().copied().chain(float_res).collect(),
                results: results.iter().copied().chain(wrt_tys).collect(),
            },
            Kind::Grad => Signature {
                params: params.clone(),
                results: results.iter().copied().chain(wrt_tys).collect(),
            },
        };
        self.sigs.insert(name.clone(), sig);
        self.names.insert(key, name.clone());
        self.queue.push_back(Request {
            src: func.to_string(),
            kind,
            wrt: wrt.to_vec(),
            name: name.clone(),
        });
        Ok(name)
    }

    /// Generates every requested derivative (and those they request in turn).
    pub(crate) fn run(mut self) -> Result<Vec<Function>> {
        let mut out = Vec::new();
        while let Some(req) = self.queue.pop_front() {
            let src = self
                .lookup(&req.src)
                .ok_or_else(|| AdError::UnknownFunction(req.src.clone()))?;
            let src = &*src;
            if !self.verified && self.graph.get(&req.src).is_some() {
                // Linear in `src` alone: the module's cycles are found once per session.
                verify_function_in(src, &self.graph).map_err(|errors| AdError::Invalid {
                    func: req.src.clone(),
                    errors,
                })?;
            }
            let f = match req.kind {
                Kind::Jvp => crate::jvp::build(&mut self, src, &req.wrt, &req.name)?,
                Kind::Vjp => crate::vjp::build(&mut self, src, &req.wrt, &req.name, false)?,
                Kind::Grad => crate::vjp::build(&mut self, src, &req.wrt, &req.name, true)?,
            };
            out.push(f);
        }
        for name in std::mem::take(&mut self.extra_order) {
            if let Some(f) = self.extra.remove(&name) {
                out.push(Rc::unwrap_or_clone(f));
            }
        }
        Ok(out)
    }
}

/// Generates the `kind` derivative of `func` and everything it needs into `m`; returns
/// its name.
pub(crate) fn derive(m: &mut Module, func: &str, kind: Kind, wrt: &[usize]) -> Result<String> {
    let (name, funcs) = derive_detached(m, func, kind, wrt, false)?;
    // `Module::insert` for each, without its linear search per function.
    let mut at: HashMap<String, usize> = HashMap::with_capacity(m.funcs.len());
    for (i, f) in m.funcs.iter().enumerate() {
        at.entry(f.name.clone()).or_insert(i);
    }
    for f in funcs {
        match at.get(&f.name) {
            Some(&i) => m.funcs[i] = f,
            None => {
                at.insert(f.name.clone(), m.funcs.len());
                m.funcs.push(f);
            }
        }
    }
    Ok(name)
}

/// The `kind` derivative of `func` and everything it needs, as new functions (which
/// replace module functions of the same name when inserted); the module is untouched.
fn derive_detached(
    m: &Module,
    func: &str,
    kind: Kind,
    wrt: &[usize],
    verified: bool,
) -> Result<(String, Vec<Function>)> {
    let mut s = Session::new(m);
    s.verified = verified;
    // The engines' limits, on the function as given (see `AdError::Limit`), from the
    // session's call graph (no second walk over the module).
    let entry = s
        .graph
        .index_of(func)
        .ok_or_else(|| AdError::UnknownFunction(func.into()))?;
    s.graph
        .check_limits(entry, jitad_ir::callgraph::Limits::default())?;
    let name = s.request(func, kind, wrt)?;
    Ok((name, s.run()?))
}

/// [`crate::jvp()`], [`crate::vjp()`] or [`crate::grad`] (by `kind`) without inserting
/// into `m`: returns the derivative's name and the new functions, which replace module
/// functions of the same name when the caller inserts them. A caller that builds a
/// module of its own from these (and the functions of `m` they call) needs no copy of
/// `m`.
pub fn derive_functions(
    m: &Module,
    func: &str,
    kind: Kind,
    wrt: &[usize],
) -> Result<(String, Vec<Function>)> {
    derive_detached(m, func, kind, wrt, false)
}

/// [`derive_functions`] for a module verified already ([`VerifiedModule`], what
/// `jitad::Traced` holds when made from IR): the functions it differentiates are not
/// verified again, a linear walk saved per function (a tenth of a second on a traced
/// function of 10⁶ instructions). The type is the proof, so no input reaches the
/// transforms unverified.
pub fn derive_functions_verified(
    m: &VerifiedModule,
    func: &str,
    kind: Kind,
    wrt: &[usize],
) -> Result<(String, Vec<Function>)> {
    derive_detached(m.module(), func, kind, wrt, true)
}

/// A readable name for a derived value: the primal's name with a prefix or suffix, or
/// `None` when the primal has no name of its own.
pub(crate) fn derived_name(
    src: &Function,
    v: jitad_ir::Value,
    prefix: &str,
    suffix: &str,
) -> Option<String> {
    src.name_of(v).map(|n| format!("{prefix}{n}{suffix}"))
}
