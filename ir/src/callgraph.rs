//! The call graph of a module: who calls whom, built and queried in time linear in the
//! number of functions and instructions.
//!
//! Every consumer that walks callees (the verifier, the AD passes, the clean-up
//! pipeline, the JIT's function order, both engines' limits) goes through this module,
//! so none of them looks a function up by a linear scan or searches for cycles once per
//! function.
//!
//! # Guarantees
//!
//! - [`CallGraph::new`] accepts any [`Module`], however malformed (out-of-range ids,
//!   unknown callees, duplicate names, recursion), and never panics. Only instructions
//!   reachable from a function's body count; the first function of a name is the one
//!   calls resolve to.
//! - Every query is iterative (explicit stacks): a chain of 10⁵ functions does not
//!   grow the Rust stack.
//! - [`check_limits`] is the one call-depth and driver-nesting rule: the interpreter
//!   and the JIT both run it before executing anything and reject the same programs
//!   with the same [`LimitError`]. The IR has no branches and verified IR no
//!   recursion, so a function's deepest call chain is static.

use crate::function::{Function, Inst, Module, Region};
use cranelift_entity::EntityRef;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::OnceLock;

/// The most call frames open at once (the entry's included). A chain of exactly this
/// many functions runs; one more is rejected with [`LimitError::CallDepth`].
pub const MAX_CALL_DEPTH: usize = 1000;

/// The most `tapeloop`/`revloop` drivers running inside one another (each runs its
/// step functions from inside the previous one, on the machine stack). Generated code
/// nests them as deep as its loops; only hand-written IR gets near this.
pub const MAX_DRIVER_NESTING: u32 = 64;

/// The calls reachable from `f`'s body, in program order, as `(instruction, callee)`;
/// a `revloop` gives two (forward then backward step). Tolerates any malformation:
/// out-of-range ids are skipped, and a region or instruction reached twice is walked
/// once.
pub fn call_sites(f: &Function) -> Vec<(Inst, &str)> {
    let mut out = Vec::new();
    // Most functions call nothing (every traced one): a scan of the instruction table
    // in memory order settles that without the walk's per-function tables, which on a
    // 10⁶-instruction function cost more than the scan (and the graph is built several
    // times per trace → grad → compile).
    if !f.insts.values().any(|d| d.op.calls()) {
        return out;
    }
    let mut seen_regions = vec![false; f.regions.len()];
    let mut seen_insts = vec![false; f.insts.len()];
    let mut enter = |r: Region, stack: &mut Vec<(Region, usize)>| {
        if let Some(s) = seen_regions.get_mut(r.index()) {
            if !std::mem::replace(s, true) {
                stack.push((r, 0));
            }
        }
    };
    let mut stack = Vec::new();
    enter(f.body, &mut stack);
    while let Some(top) = stack.last_mut() {
        let (r, pos) = *top;
        let Some(&i) = f.regions.get(r).and_then(|rd| rd.insts.get(pos)) else {
            stack.pop();
            continue;
        };
        top.1 += 1;
        let Some(seen) = seen_insts.get_mut(i.index()) else {
            continue;
        };
        if std::mem::replace(seen, true) {
            continue;
        }
        let Some(d) = f.insts.get(i) else { continue };
        out.extend(d.op.callees().map(|c| (i, c)));
        // Nested regions are walked before the rest of this one (program order).
        for &nr in d.regions.iter().rev() {
            enter(nr, &mut stack);
        }
    }
    out
}

/// One call-graph edge: an instruction of the caller naming a callee.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site<'m> {
    /// The `call`, `tapeloop` or `revloop` instruction.
    pub inst: Inst,
    /// The callee's name.
    pub name: &'m str,
    /// The callee's index in the module (`None`: no function has that name).
    pub callee: Option<usize>,
    /// True when the callee runs as a loop driver's step (`tapeloop`/`revloop`).
    pub driver: bool,
}

/// The call graph of a module. Nodes are the module's function indices.
#[derive(Debug)]
pub struct CallGraph<'m> {
    module: &'m Module,
    index: HashMap<&'m str, usize>,
    sites: Vec<Vec<Site<'m>>>,
    /// Strongly connected component of each function (computed on first use; a
    /// `OnceLock` so the graph can be shared by threads checking one function).
    sccs: OnceLock<Sccs>,
}

#[derive(Debug)]
struct Sccs {
    comp: Vec<u32>,
    /// Whether each component holds a cycle (more than one function, or a self-call).
    cyclic: Vec<bool>,
}

impl<'m> CallGraph<'m> {
    /// Builds the graph of `m`: one walk over every function's reachable instructions.
    pub fn new(m: &'m Module) -> Self {
        let index = name_index(m);
        let sites = m
            .funcs
            .iter()
            .map(|f| {
                call_sites(f)
                    .into_iter()
                    .map(|(inst, name)| Site {
                        inst,
                        name,
                        callee: index.get(name).copied(),
                        driver: f
                            .insts
                            .get(inst)
                            .is_some_and(|d| !matches!(d.op, crate::op::Op::Call(_))),
                    })
                    .collect()
            })
            .collect();
        CallGraph {
            module: m,
            index,
            sites,
            sccs: OnceLock::new(),
        }
    }

    /// The module.
    pub fn module(&self) -> &'m Module {
        self.module
    }

    /// Index of the function named `name` (the first one, if several share it).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The function named `name` (the first one, if several share it).
    pub fn get(&self, name: &str) -> Option<&'m Function> {
        self.index_of(name).map(|i| &self.module.funcs[i])
    }

    /// True when function `i` is the first of its name (the one calls resolve to).
    pub fn is_first_of_name(&self, i: usize) -> bool {
        self.module
            .funcs
            .get(i)
            .is_some_and(|f| self.index_of(&f.name) == Some(i))
    }

    /// The calls function `i` makes, in program order (empty for an out-of-range `i`).
    pub fn sites(&self, i: usize) -> &[Site<'m>] {
        self.sites.get(i).map_or(&[], Vec::as_slice)
    }

    /// Functions reachable from `roots` (roots included), callees before callers.
    /// Errors with the first unknown callee or the first cycle met.
    pub fn post_order(&self, roots: &[usize]) -> Result<Vec<usize>, OrderError> {
        const NEW: u8 = 0;
        const OPEN: u8 = 1;
        const DONE: u8 = 2;
        let mut mark = vec![NEW; self.sites.len()];
        let mut order = Vec::new();
        for &root in roots {
            if mark.get(root) != Some(&NEW) {
                continue;
            }
            mark[root] = OPEN;
            let mut stack = vec![(root, 0usize)];
            while let Some(top) = stack.last_mut() {
                let (fi, pos) = *top;
                let Some(site) = self.sites[fi].get(pos) else {
                    mark[fi] = DONE;
                    order.push(fi);
                    stack.pop();
                    continue;
                };
                top.1 += 1;
                let Some(ci) = site.callee else {
                    return Err(OrderError::UnknownCallee(site.name.to_string()));
                };
                match mark[ci] {
                    NEW => {
                        mark[ci] = OPEN;
                        stack.push((ci, 0));
                    }
                    OPEN => {
                        let from = stack.iter().position(|&(g, _)| g == ci).unwrap_or(0);
                        let names = stack[from..]
                            .iter()
                            .map(|&(g, _)| self.module.funcs[g].name.as_str())
                            .chain([site.name]);
                        return Err(OrderError::Recursion {
                            func: site.name.to_string(),
                            chain: chain(names, stack.len() - from + 1),
                        });
                    }
                    _ => {}
                }
            }
        }
        Ok(order)
    }

    fn sccs(&self) -> &Sccs {
        self.sccs.get_or_init(|| tarjan(&self.sites))
    }

    /// True when function `i` can reach itself through calls.
    pub fn is_recursive(&self, i: usize) -> bool {
        let s = self.sccs();
        s.comp.get(i).is_some_and(|&c| s.cyclic[c as usize])
    }

    /// One call cycle per strongly connected component that has one, reported at the
    /// component's first function in module order: `(function, its call starting the
    /// cycle, the callees on the cycle ending with the function itself)`.
    pub fn cycles(&self) -> Vec<(usize, Inst, Vec<&'m str>)> {
        let s = self.sccs();
        let mut reported = vec![false; s.cyclic.len()];
        let mut out = Vec::new();
        for fi in 0..self.sites.len() {
            let c = s.comp[fi] as usize;
            if !s.cyclic[c] || reported[c] || !self.is_first_of_name(fi) {
                continue;
            }
            reported[c] = true;
            let name = self.module.funcs[fi].name.as_str();
            let within = |g: usize| s.comp[g] as usize == c;
            if let Some(found) = self.path_back(name, self.sites(fi), within) {
                out.push((fi, found.0, found.1));
            }
        }
        out
    }

    /// For a function named `target` whose calls are `own` (and which stands for the
    /// module's function of that name): its first call from which `target` is reached
    /// again, with the callees on the way (`target` last). Linear in the graph.
    pub fn cycle_to(&self, target: &str, own: &[Site<'m>]) -> Option<(Inst, Vec<&'m str>)> {
        // Which functions reach `target`: backwards from its callers.
        let n = self.sites.len();
        let mut callers: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut reaches = vec![false; n];
        let mut queue = VecDeque::new();
        let target_idx = self.index_of(target);
        for (fi, sites) in self.sites.iter().enumerate() {
            if Some(fi) == target_idx {
                continue; // `own` replaces its calls
            }
            for s in sites {
                if s.name == target {
                    if !reaches[fi] {
                        reaches[fi] = true;
                        queue.push_back(fi);
                    }
                } else if let Some(c) = s.callee {
                    callers[c].push(fi);
                }
            }
        }
        while let Some(g) = queue.pop_front() {
            for &p in &callers[g] {
                if Some(p) != target_idx && !std::mem::replace(&mut reaches[p], true) {
                    queue.push_back(p);
                }
            }
        }
        self.path_back(target, own, |g| reaches[g] && Some(g) != target_idx)
    }

    /// The first of `own` whose callee is `target` or a function `within` allows,
    /// with a shortest path from it back to `target` through such functions.
    fn path_back(
        &self,
        target: &str,
        own: &[Site<'m>],
        within: impl Fn(usize) -> bool,
    ) -> Option<(Inst, Vec<&'m str>)> {
        let first = own
            .iter()
            .find(|s| s.name == target || s.callee.is_some_and(&within))?;
        if first.name == target {
            return Some((first.inst, vec![first.name]));
        }
        let start = first.callee?;
        let mut parent: HashMap<usize, usize> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        let mut seen = HashMap::from([(start, ())]);
        while let Some(g) = queue.pop_front() {
            for s in self.sites(g) {
                if s.name == target {
                    let mut path = vec![s.name];
                    let mut cur = g;
                    loop {
                        path.push(self.module.funcs[cur].name.as_str());
                        match parent.get(&cur) {
                            Some(&p) => cur = p,
                            None => break,
                        }
                    }
                    path.reverse();
                    return Some((first.inst, path));
                }
                if let Some(c) = s.callee.filter(|&c| within(c)) {
                    if seen.insert(c, ()).is_none() {
                        parent.insert(c, g);
                        queue.push_back(c);
                    }
                }
            }
        }
        None
    }
}

/// Why [`CallGraph::post_order`] failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// A call to a function the module does not have.
    #[error("call to unknown function @{0}")]
    UnknownCallee(String),
    /// A call cycle.
    #[error("call cycle {chain}: recursion is not supported")]
    Recursion {
        /// The function met again.
        func: String,
        /// The cycle, `@f -> @g -> @f`.
        chain: String,
    },
}

/// Index of each function of `m` by name; the first one wins on duplicates.
pub fn name_index(m: &Module) -> HashMap<&str, usize> {
    let mut map = HashMap::with_capacity(m.funcs.len());
    for (i, f) in m.funcs.iter().enumerate() {
        map.entry(f.name.as_str()).or_insert(i);
    }
    map
}

/// Strongly connected components, iterative Tarjan.
fn tarjan(sites: &[Vec<Site<'_>>]) -> Sccs {
    const UNSEEN: u32 = u32::MAX;
    let n = sites.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut comp = vec![0u32; n];
    let mut cyclic = Vec::new();
    let mut stack = Vec::new();
    let mut next = 0u32;
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        let mut work = vec![(root, 0usize)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(top) = work.last_mut() {
            let (v, pos) = *top;
            if let Some(s) = sites[v].get(pos) {
                top.1 += 1;
                let Some(w) = s.callee else { continue };
                if index[w] == UNSEEN {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(p, _)) = work.last() {
                low[p] = low[p].min(low[v]);
            }
            if low[v] == index[v] {
                let c = cyclic.len() as u32;
                let mut size = 0;
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp[w] = c;
                    size += 1;
                    if w == v {
                        break;
                    }
                }
                let self_call = sites[v].iter().any(|s| s.callee == Some(v));
                cyclic.push(size > 1 || self_call);
            }
        }
    }
    Sccs { comp, cyclic }
}

/// `@a -> @b -> @c` for `len` names; long chains keep their first and last few names.
pub(crate) fn chain<'a>(names: impl Iterator<Item = &'a str>, len: usize) -> String {
    const EDGE: usize = 4;
    let mut s = String::new();
    for (k, name) in names.enumerate() {
        if len > 3 * EDGE && (EDGE..len - EDGE).contains(&k) {
            if k == EDGE {
                let _ = write!(s, " -> ... ({} more) ...", len - 2 * EDGE);
            }
            continue;
        }
        if k > 0 {
            s.push_str(" -> ");
        }
        let _ = write!(s, "@{name}");
    }
    s
}

/// How deep a function's calls go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    /// Most call frames open at once, the function's own included (a leaf has 1).
    pub frames: usize,
    /// Most loop drivers running inside one another.
    pub drivers: u32,
}

/// A program beyond the engines' limits. Both engines give exactly this error, before
/// running anything.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Calls nest deeper than the call-depth limit.
    #[error("call depth limit {limit} exceeded: the chain {chain} is {depth} calls deep")]
    CallDepth {
        /// The deepest chain, from the entry.
        chain: String,
        /// Frames it opens.
        depth: usize,
        /// The limit.
        limit: usize,
    },
    /// Calls that reach their caller again (only unverified IR has them).
    #[error("call depth limit {limit} exceeded: the chain {chain} recurses without bound")]
    Unbounded {
        /// The chain from the entry, ending with the function met again.
        chain: String,
        /// The limit.
        limit: usize,
    },
    /// `tapeloop`/`revloop` drivers nested deeper than the driver-nesting limit.
    #[error(
        "loop driver nesting limit {limit} exceeded: the chain {chain} runs {depth} \
         `tapeloop`/`revloop` drivers inside one another"
    )]
    DriverNesting {
        /// The chain through the deepest nesting, from the entry.
        chain: String,
        /// Drivers nested.
        depth: u32,
        /// The limit.
        limit: u32,
    },
}

/// The limits [`check_limits`] enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most call frames ([`MAX_CALL_DEPTH`] by default).
    pub calls: usize,
    /// Most nested loop drivers ([`MAX_DRIVER_NESTING`] by default).
    pub drivers: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            calls: MAX_CALL_DEPTH,
            drivers: MAX_DRIVER_NESTING,
        }
    }
}

/// Per function: its depth and the callee each maximum goes through.
#[derive(Clone, Copy, Default)]
struct Deepest {
    depth: Depth,
    via_frames: Option<usize>,
    via_drivers: Option<usize>,
}

/// Checks that `entry` (calls resolved in `m` through `lookup`, which gives a name's
/// function index) stays within `limits` on every path, and returns its [`Depth`].
/// Visits only what `entry` reaches. Unknown callees count as leaves (running them
/// fails otherwise).
pub fn check_limits(
    m: &Module,
    lookup: &dyn Fn(&str) -> Option<usize>,
    entry: &Function,
    limits: Limits,
) -> Result<Depth, LimitError> {
    let n = m.funcs.len();
    let sites_of = |_: Option<usize>, f: &Function| resolved_calls(f, lookup, n);
    limits_with(m, lookup, entry, limits, &sites_of)
}

/// The calls of `f` whose callee `lookup` finds below `n`: `(callee, through a loop
/// driver)`, in program order.
fn resolved_calls(
    f: &Function,
    lookup: &dyn Fn(&str) -> Option<usize>,
    n: usize,
) -> Vec<(usize, bool)> {
    call_sites(f)
        .into_iter()
        .filter_map(|(i, c)| {
            let driver = f
                .insts
                .get(i)
                .is_some_and(|d| !matches!(d.op, crate::op::Op::Call(_)));
            lookup(c).filter(|&ci| ci < n).map(|ci| (ci, driver))
        })
        .collect()
}

impl CallGraph<'_> {
    /// [`check_limits`] for function `entry` of the graph's module, from the call sites
    /// the graph already found (no walk over the functions' instructions again).
    /// `entry` must be an index of the module's functions (it panics otherwise).
    pub fn check_limits(&self, entry: usize, limits: Limits) -> Result<Depth, LimitError> {
        let m = self.module;
        let n = m.funcs.len();
        let lookup = |name: &str| self.index_of(name);
        let sites_of = |i: Option<usize>, f: &Function| -> Vec<(usize, bool)> {
            match i.and_then(|i| self.sites.get(i)) {
                Some(sites) => sites
                    .iter()
                    .filter_map(|s| s.callee.filter(|&ci| ci < n).map(|ci| (ci, s.driver)))
                    .collect(),
                None => resolved_calls(f, &lookup, n),
            }
        };
        limits_with(m, &lookup, &m.funcs[entry], limits, &sites_of)
    }
}

/// The resolved calls `(callee index, through a loop driver)` of a function, given its
/// index (`None` for an entry outside the module) and itself.
type SitesOf<'a> = dyn Fn(Option<usize>, &Function) -> Vec<(usize, bool)> + 'a;

/// [`check_limits`] with the resolved call sites of a function (by its index, `None`
/// for an entry outside the module) supplied by `sites_of`.
fn limits_with(
    m: &Module,
    lookup: &dyn Fn(&str) -> Option<usize>,
    entry: &Function,
    limits: Limits,
    sites_of: &SitesOf<'_>,
) -> Result<Depth, LimitError> {
    const NEW: u8 = 0;
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let n = m.funcs.len();
    let mut mark = vec![NEW; n];
    let mut memo = vec![Deepest::default(); n];
    // Frames: (function or None for the entry, its resolved calls, next position).
    type Item = (Option<usize>, Vec<(usize, bool)>, usize);
    // The entry is a node of its own unless it is the module's function of its name.
    let entry_idx = lookup(&entry.name).filter(|&i| i < n && std::ptr::eq(&m.funcs[i], entry));
    if let Some(i) = entry_idx {
        mark[i] = OPEN;
    }
    let mut stack: Vec<Item> = vec![(entry_idx, sites_of(entry_idx, entry), 0)];
    let name = |fi: Option<usize>| fi.map_or(entry.name.as_str(), |i| m.funcs[i].name.as_str());
    let mut top_result = Deepest::default();
    while let Some(top) = stack.last_mut() {
        if let Some(&(ci, _)) = top.1.get(top.2) {
            top.2 += 1;
            match mark[ci] {
                NEW => {
                    mark[ci] = OPEN;
                    let s = sites_of(Some(ci), &m.funcs[ci]);
                    stack.push((Some(ci), s, 0));
                }
                OPEN => {
                    let names = stack.iter().map(|it| name(it.0)).chain([name(Some(ci))]);
                    return Err(LimitError::Unbounded {
                        chain: chain(names, stack.len() + 1),
                        limit: limits.calls,
                    });
                }
                _ => {}
            }
            continue;
        }
        // All callees done: combine.
        let Some((fi, sites, _)) = stack.pop() else {
            break;
        };
        let mut best = Deepest {
            depth: Depth {
                frames: 1,
                drivers: 0,
            },
            ..Deepest::default()
        };
        for &(ci, driver) in &sites {
            let d = memo[ci].depth;
            if d.frames + 1 > best.depth.frames {
                best.depth.frames = d.frames + 1;
                best.via_frames = Some(ci);
            }
            let nd = d.drivers + u32::from(driver);
            if nd > best.depth.drivers {
                best.depth.drivers = nd;
                best.via_drivers = Some(ci);
            }
        }
        if let Some(i) = fi {
            memo[i] = best;
            mark[i] = DONE;
        }
        if stack.is_empty() {
            top_result = best;
        }
    }
    let follow = |first: Option<usize>, next: &dyn Fn(&Deepest) -> Option<usize>| {
        let mut names = vec![entry.name.as_str()];
        let mut cur = first;
        while let Some(i) = cur {
            names.push(m.funcs[i].name.as_str());
            cur = next(&memo[i]);
        }
        let len = names.len();
        chain(names.into_iter(), len)
    };
    let d = top_result.depth;
    if d.frames > limits.calls {
        return Err(LimitError::CallDepth {
            chain: follow(top_result.via_frames, &|x| x.via_frames),
            depth: d.frames,
            limit: limits.calls,
        });
    }
    if d.drivers > limits.drivers {
        return Err(LimitError::DriverNesting {
            chain: follow(top_result.via_drivers, &|x| x.via_drivers),
            depth: d.drivers,
            limit: limits.drivers,
        });
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FunctionBuilder, Signature, Type};

    fn sig() -> Signature {
        Signature {
            params: vec![Type::F64],
            results: vec![Type::F64],
        }
    }

    /// `@name(x)` calling each of `callees` on `x` in turn and returning the last result
    /// (or `x`).
    fn func(name: &str, callees: &[&str]) -> Function {
        let mut b = FunctionBuilder::new(name);
        let mut v = b.named_param("x", Type::F64);
        for c in callees {
            b.declare(*c, sig());
            v = b.call(c, &[v]).unwrap()[0];
        }
        b.ret(&[v]).unwrap();
        b.finish().unwrap()
    }

    fn module(spec: &[(&str, &[&str])]) -> Module {
        let mut m = Module::new();
        for (name, callees) in spec {
            m.funcs.push(func(name, callees));
        }
        m
    }

    fn chain_module(n: usize) -> Module {
        let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        let mut m = Module::new();
        for i in 0..n {
            let next: Vec<&str> = names.get(i + 1).map(String::as_str).into_iter().collect();
            m.funcs.push(func(&names[i], &next));
        }
        m
    }

    #[test]
    fn post_order_puts_callees_first() {
        let m = module(&[("a", &["b", "c"]), ("b", &["c"]), ("c", &[]), ("d", &[])]);
        let g = CallGraph::new(&m);
        assert_eq!(g.post_order(&[0]).unwrap(), vec![2, 1, 0]);
        assert_eq!(g.post_order(&[3, 0]).unwrap(), vec![3, 2, 1, 0]);
        assert_eq!(g.sites(0).len(), 2);
        assert_eq!(g.get("c").map(|f| f.name.as_str()), Some("c"));
        assert!(!(0..4).any(|i| g.is_recursive(i)));
        assert!(g.cycles().is_empty());
    }

    #[test]
    fn finds_cycles_once_per_component() {
        let m = module(&[
            ("a", &["b"]),
            ("b", &["c"]),
            ("c", &["a", "d"]),
            ("d", &["d"]),
            ("e", &["a"]),
        ]);
        let g = CallGraph::new(&m);
        let cycles: Vec<(usize, Vec<&str>)> =
            g.cycles().into_iter().map(|(f, _, p)| (f, p)).collect();
        assert_eq!(cycles, vec![(0, vec!["b", "c", "a"]), (3, vec!["d"])]);
        assert!(g.is_recursive(0) && g.is_recursive(3) && !g.is_recursive(4));
        assert_eq!(
            g.post_order(&[0]),
            Err(OrderError::Recursion {
                func: "a".into(),
                chain: "@a -> @b -> @c -> @a".into()
            })
        );
        // From `e`'s point of view there is no cycle back to `e`.
        assert_eq!(g.cycle_to("e", g.sites(4)), None);
        let (_, path) = g.cycle_to("b", g.sites(1)).unwrap();
        assert_eq!(path, vec!["c", "a", "b"]);
    }

    #[test]
    fn reports_unknown_callees_in_order() {
        let m = module(&[("a", &["zz"])]);
        let g = CallGraph::new(&m);
        assert_eq!(
            g.post_order(&[0]),
            Err(OrderError::UnknownCallee("zz".into()))
        );
    }

    #[test]
    fn depth_counts_frames_and_drivers() {
        let m = module(&[("a", &["b", "c"]), ("b", &["c"]), ("c", &[])]);
        let idx = name_index(&m);
        let lookup = |n: &str| idx.get(n).copied();
        let d = check_limits(&m, &lookup, &m.funcs[0], Limits::default()).unwrap();
        assert_eq!(
            d,
            Depth {
                frames: 3,
                drivers: 0
            }
        );
        let e = check_limits(
            &m,
            &lookup,
            &m.funcs[0],
            Limits {
                calls: 2,
                drivers: 0,
            },
        )
        .unwrap_err();
        assert_eq!(
            e,
            LimitError::CallDepth {
                chain: "@a -> @b -> @c".into(),
                depth: 3,
                limit: 2
            }
        );
    }

    #[test]
    fn long_chains_check_iteratively_and_abbreviate() {
        let m = chain_module(20_000);
        let idx = name_index(&m);
        let lookup = |n: &str| idx.get(n).copied();
        let e = check_limits(&m, &lookup, &m.funcs[0], Limits::default()).unwrap_err();
        let LimitError::CallDepth { chain, depth, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!(*depth, 20_000);
        assert_eq!(
            chain,
            "@c0 -> @c1 -> @c2 -> @c3 -> ... (19992 more) ... -> @c19996 -> @c19997 -> @c19998 -> @c19999"
        );
        // From the middle, exactly at the limit: accepted.
        let d = check_limits(&m, &lookup, &m.funcs[19_000], Limits::default()).unwrap();
        assert_eq!(d.frames, MAX_CALL_DEPTH);
        let g = CallGraph::new(&m);
        assert_eq!(g.post_order(&[0]).unwrap().len(), 20_000);
        assert!(g.cycles().is_empty());
    }

    #[test]
    fn recursion_is_unbounded_depth() {
        let m = module(&[("a", &["b"]), ("b", &["a"])]);
        let idx = name_index(&m);
        let lookup = |n: &str| idx.get(n).copied();
        let e = check_limits(&m, &lookup, &m.funcs[0], Limits::default()).unwrap_err();
        assert!(
            matches!(&e, LimitError::Unbounded { chain, .. } if chain == "@a -> @b -> @a"),
            "{e}"
        );
    }

    #[test]
    fn the_graph_checks_limits_as_the_module_walk_does() {
        // `CallGraph::check_limits` reads the sites the graph found; the free function
        // walks the instructions: same depths and errors, from every entry.
        let tight = Limits {
            calls: 2,
            drivers: 0,
        };
        for m in [
            module(&[("a", &["b", "c"]), ("b", &["c"]), ("c", &[])]),
            module(&[("a", &["b"]), ("b", &["a"])]),
            module(&[("a", &["zz", "b"]), ("b", &[]), ("a", &["a"])]),
            chain_module(300),
        ] {
            let idx = name_index(&m);
            let lookup = |n: &str| idx.get(n).copied();
            let g = CallGraph::new(&m);
            for (i, f) in m.funcs.iter().enumerate() {
                for limits in [Limits::default(), tight] {
                    assert_eq!(
                        g.check_limits(i, limits),
                        check_limits(&m, &lookup, f, limits),
                        "@{} ({i})",
                        f.name
                    );
                }
            }
        }
    }
}
