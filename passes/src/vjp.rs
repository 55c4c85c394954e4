//! Reverse mode: `vjp(f, wrt)` maps `f(x) -> y` to `f.vjp(x, ybar) -> (y, xbar_wrt)`, and
//! `grad(f, wrt)` (one float result) to `f.grad(x) -> (y, g_wrt)`, which is `vjp` seeded
//! with the constant 1.
//!
//! A *forward sweep* copies the function; an *adjoint sweep* then walks its
//! instructions backwards, applying each active instruction's adjoint rule (by its
//! rule's kind: `crate::rules::pointwise_adjoint` or, for a linear op, its transpose,
//! `crate::rules::transpose`) to the adjoint of its result and accumulating the
//! contributions into its operands' adjoints (`crate::lin::accumulate`). Zero adjoints
//! are structural: an inactive value has none and emits nothing; the first contribution
//! to an adjoint is used as is (no `add` to zero); later ones are added, as one `fma`
//! when the contribution is a product. Contributions are written newest first, so the
//! adjoint of `x` reads as the chain rule in program order (`x̄ = b + a`).
//!
//! - `call @g(...)`: the forward sweep keeps the call; the adjoint sweep calls
//!   `@g.vjp(args..., ybar...)` (generated once, with respect to the call's active
//!   arguments) and accumulates the `xbar` it returns. `@g.vjp` recomputes `@g`'s
//!   primal internally: this costs a second primal evaluation of the callee but keeps
//!   every derived function an ordinary, separately compiled function with no hidden
//!   tape; when `g`'s value is not needed otherwise, DCE removes the original call for
//!   a pure callee. (A split forward/backward callee with residuals is the checkpointing
//!   work's business.)
//! - `loop`: a loop whose values are all inactive is copied; a top-level loop with
//!   active values is reversed as [`crate::revloop`] describes (a `tapeloop` in the
//!   forward sweep, a `revloop` in the adjoint sweep, under a checkpointing policy).
//! - `guard`s are kept in the forward sweep, so the derivative refuses inputs that take
//!   another branch, like the function itself.
//!
//! Adjoints are named after their primal (`%a` → `%a_bar`) when the primal has a name.

use crate::activity::{yield_args, Activity};
use crate::derive::{derived_name, float_results, Kind, Session};
use crate::emit::{is_float, Emitter};
use crate::error::{AdError, Result};
use crate::lin::{self, Lin};
use crate::revloop::{self, LoopPlan};
use crate::rules::{self, Rule};
use cranelift_entity::SecondaryMap;
use jitad_ir::checkpoint::Policy;
use jitad_ir::{Function, Inst, Module, Op, Region, Type, Value, ValueList};
use smallvec::SmallVec;
use std::collections::HashMap;

/// Generates the reverse-mode derivative of `func` with respect to the parameters at
/// `wrt` into `m` (with the derivatives of the functions it calls); returns its name.
///
/// The result is `@f.vjp(x..., ybar...) -> (y..., xbar_wrt...)` with one `ybar` per
/// float result of `f`. The function must verify. Active loops are reversed with the
/// default checkpointing policy ([`jitad_ir::checkpoint::Policy::default`]; change it
/// with [`crate::set_policy`]).
pub fn vjp(m: &mut Module, func: &str, wrt: &[usize]) -> Result<String> {
    crate::derive::derive(m, func, Kind::Vjp, wrt)
}

/// Generates the gradient of `func` (which must have exactly one result, a float) with
/// respect to the parameters at `wrt`; returns its name. The result is
/// `@f.grad(x...) -> (y, g_wrt...)`.
pub fn grad(m: &mut Module, func: &str, wrt: &[usize]) -> Result<String> {
    crate::derive::derive(m, func, Kind::Grad, wrt)
}

struct Vjp<'a> {
    src: &'a Function,
    act: Activity,
    map: SecondaryMap<Value, Option<Value>>,
    adj: SecondaryMap<Value, Option<Lin>>,
    calls: HashMap<Inst, (String, Vec<usize>)>,
    /// Active loops and how each is reversed.
    loops: HashMap<Inst, LoopPlan>,
    /// The tape token of each active loop's `tapeloop`.
    tapes: HashMap<Inst, Value>,
    /// The checkpointing policy written into each `revloop`.
    policy: Policy,
    primal: SecondaryMap<Value, bool>,
    /// The source's named values: most values are unnamed, and asking the names table
    /// about each missed the cache on large traced functions (whose parameters are
    /// named).
    named: SecondaryMap<Value, bool>,
}

fn malformed(src: &Function, reason: &str) -> AdError {
    AdError::Malformed {
        func: src.name.clone(),
        reason: reason.into(),
    }
}

/// Builds `name` = vjp (or, with `seed_one`, grad) of `src` w.r.t. `wrt`.
pub(crate) fn build(
    s: &mut Session,
    src: &Function,
    wrt: &[usize],
    name: &str,
    seed_one: bool,
) -> Result<Function> {
    let outs = float_results(&src.sig);
    let act = Activity::analyze(src, wrt, &outs);
    let mut calls = HashMap::new();
    let mut loops = HashMap::new();
    // Only top-level instructions: loop bodies are differentiated as functions of their
    // own (crate::revloop), calls inside them there.
    for &inst in &src.regions[src.body].insts {
        let d = &src.insts[inst];
        match &d.op {
            Op::Loop(_) => {
                let body_active = d.regions.iter().any(|&r| region_active(src, &act, r));
                if d.results.iter().any(|&r| act.is_active(r)) || body_active {
                    if let Some(p) = revloop::plan(s, src, &act, inst, name, loops.len())? {
                        loops.insert(inst, p);
                    }
                }
            }
            Op::RevLoop(_) | Op::TapeLoop(_) if d.args.iter().any(|&a| act.is_active(a)) => {
                return Err(AdError::Unsupported {
                    func: src.name.clone(),
                    what: "reverse mode through a `revloop`/`tapeloop` (reverse over reverse)"
                        .into(),
                });
            }
            Op::Call(g) => {
                if !d.results.iter().any(|&r| act.is_active(r)) {
                    continue;
                }
                let cwrt: Vec<usize> = (0..d.args.len())
                    .filter(|&i| act.is_active(d.args[i]) && is_float(src.ty(d.args[i])))
                    .collect();
                if !cwrt.is_empty() {
                    let n = s.request(g, Kind::Vjp, &cwrt)?;
                    calls.insert(inst, (n, cwrt));
                }
            }
            _ => {}
        }
    }
    let mut t = Vjp {
        src,
        act,
        map: SecondaryMap::new(),
        adj: SecondaryMap::new(),
        calls,
        loops,
        tapes: HashMap::new(),
        policy: s.policy,
        primal: SecondaryMap::new(),
        named: src.names.keys().fold(SecondaryMap::new(), |mut m, &v| {
            m[v] = true;
            m
        }),
    };
    let mut em = Emitter::new(name, &s.sigs);
    em.reserve_for(src);
    for &p in src.params() {
        let np = em.param(src.ty(p), src.name_of(p).map(str::to_string));
        t.map[p] = Some(np);
        t.primal[np] = true;
    }
    let ret = src.ret_inst().ok_or_else(|| malformed(src, "no `ret`"))?;
    let rargs = src.insts[ret].args.clone();
    let mut seeds = Vec::with_capacity(outs.len());
    if !seed_one {
        for &k in &outs {
            let r = rargs[k];
            let n = derived_name(src, r, "", "_bar").unwrap_or_else(|| format!("ybar{k}"));
            seeds.push(em.param(src.ty(r), Some(n)));
        }
    }
    // Forward sweep.
    t.copy_region(&mut em, src.body)?;
    if seed_one {
        for &k in &outs {
            let ty = src.ty(rargs[k]);
            seeds.push(em.float(ty, 1.0)?);
        }
    }
    for (&k, &sd) in outs.iter().zip(&seeds) {
        let r = rargs[k];
        if t.act.is_active(r) {
            t.adj[r] = Some(lin::accumulate_lin(&mut em, t.adj[r], Lin::of(sd), true)?);
        }
    }
    // Adjoint sweep.
    let body = &src.regions[src.body].insts;
    for &inst in body.iter().rev() {
        t.adjoint(&mut em, inst)?;
    }
    let mut vals: Vec<Value> = rargs.iter().map(|&r| t.get(r)).collect::<Result<_>>()?;
    for &i in wrt {
        let p = src.params()[i];
        let like = t.get(p)?;
        let v = lin::value(&mut em, t.adj[p], like)?;
        t.name_adjoint(&mut em, p, v);
        vals.push(v);
    }
    em.finish(&vals)
}

/// True when any value defined in `region` (or nested in it) is active.
fn region_active(src: &Function, act: &Activity, region: Region) -> bool {
    let mut stack = vec![region];
    while let Some(r) = stack.pop() {
        let rd = &src.regions[r];
        if rd.params.iter().any(|&p| act.is_active(p)) {
            return true;
        }
        for &i in &rd.insts {
            let d = &src.insts[i];
            if d.results.iter().any(|&v| act.is_active(v)) {
                return true;
            }
            stack.extend_from_slice(&d.regions);
        }
    }
    false
}

impl Vjp<'_> {
    /// The adjoint of an active loop: a `revloop` seeded with the adjoints of the
    /// loop's results (see [`crate::revloop`]).
    fn reverse_loop(
        &mut self,
        em: &mut Emitter,
        inst: Inst,
        args: &[Value],
        plan: &LoopPlan,
    ) -> Result<()> {
        let src = self.src;
        let d = &src.insts[inst];
        let nd = plan.bounds.num_dyn();
        let k = d.results.len();
        let token = *self
            .tapes
            .get(&inst)
            .ok_or_else(|| malformed(src, "active loop without a tape"))?;
        let mut rargs: Vec<Value> = args[..nd].to_vec();
        rargs.push(token);
        rargs.extend_from_slice(&args[nd..]);
        for &c in &plan.caps {
            rargs.push(self.get(c)?);
        }
        for &j in &plan.active_slots {
            let r = d.results[j];
            if let Some(l) = self.adj[r] {
                self.name_adjoint(em, r, l.val);
            }
            let like = self.get(r)?;
            rargs.push(lin::value(em, self.adj[r], like)?);
        }
        for &c in &plan.active_caps {
            let like = self.get(plan.caps[c])?;
            rargs.push(em.zero_like(like)?);
        }
        let res = em.ins(revloop::rev_op(plan, k, self.policy), &rargs)?;
        let na = plan.active_slots.len();
        for (p, &j) in plan.active_slots.iter().enumerate() {
            let init = d.args[nd + j];
            if self.act.is_active(init) {
                self.adj[init] = Some(lin::accumulate_lin(
                    em,
                    self.adj[init],
                    Lin::of(res[p]),
                    true,
                )?);
            }
        }
        for (q, &c) in plan.active_caps.iter().enumerate() {
            let v = plan.caps[c];
            self.adj[v] = Some(lin::accumulate_lin(
                em,
                self.adj[v],
                Lin::of(res[na + q]),
                true,
            )?);
        }
        Ok(())
    }

    fn get(&self, v: Value) -> Result<Value> {
        self.map[v].ok_or_else(|| {
            malformed(
                self.src,
                &format!(
                    "value %{} is used before it is defined",
                    self.src.value_label(v)
                ),
            )
        })
    }

    fn name_adjoint(&self, em: &mut Emitter, primal: Value, v: Value) {
        if self.named[primal] && !self.primal[v] && em.const_of(v).is_none() {
            if let Some(n) = derived_name(self.src, primal, "", "_bar") {
                em.name_if_unnamed(v, n);
            }
        }
    }

    /// Copies the instructions of `region` except its terminator (the forward sweep).
    fn copy_region(&mut self, em: &mut Emitter, region: Region) -> Result<()> {
        let src = self.src;
        let insts = &src.regions[region].insts;
        let body = match insts.split_last() {
            Some((last, rest)) if src.insts[*last].op.is_terminator() => rest,
            _ => return Err(malformed(src, "region without terminator")),
        };
        for &inst in body {
            let d = &src.insts[inst];
            let args: ValueList = d.args.iter().map(|&a| self.get(a)).collect::<Result<_>>()?;
            let res = match &d.op {
                Op::Const(c) => ValueList::from_slice(&[em.copy_constant(*c)]),
                Op::Loop(_) if self.loops.contains_key(&inst) => {
                    // An active loop: run it through its outlined iteration, recording
                    // the states its reverse sweep will need.
                    let plan = &self.loops[&inst];
                    let mut targs = args.clone();
                    for &c in &plan.caps {
                        targs.push(self.get(c)?);
                    }
                    let k = d.results.len();
                    let mut out = em.ins(revloop::tape_op(plan, k, self.policy), &targs)?;
                    let token = out
                        .pop()
                        .ok_or_else(|| malformed(src, "tapeloop without token"))?;
                    em.name_if_unnamed(token, format!("tape{}", self.tapes.len()));
                    self.tapes.insert(inst, token);
                    out
                }
                Op::Loop(bounds) => {
                    let nd = bounds.num_dyn();
                    let &[r] = d.regions.as_slice() else {
                        return Err(malformed(src, "loop without exactly one body"));
                    };
                    if args.len() < nd {
                        return Err(malformed(src, "loop without its bounds"));
                    }
                    let params = src.regions[r].params.clone();
                    let (index, carried) = em.begin_loop(**bounds, &args[..nd], &args[nd..])?;
                    let new_params: Vec<Value> = std::iter::once(index).chain(carried).collect();
                    if new_params.len() != params.len() {
                        return Err(malformed(src, "loop carries mismatched values"));
                    }
                    for (&p, &np) in params.iter().zip(&new_params) {
                        self.map[p] = Some(np);
                        self.primal[np] = true;
                        if let Some(n) = src.name_of(p) {
                            em.f.set_name(np, n);
                        }
                    }
                    self.copy_region(em, r)?;
                    let next: Vec<Value> = yield_args(src, inst)
                        .iter()
                        .map(|&y| self.get(y))
                        .collect::<Result<_>>()?;
                    em.end_loop(&next)?.into()
                }
                Op::Yield | Op::Ret => return Err(malformed(src, "terminator inside a region")),
                op => em.ins(op.clone(), &args)?,
            };
            for (&r, &nr) in d.results.iter().zip(&res) {
                self.map[r] = Some(nr);
                self.primal[nr] = true;
                if self.named[r] {
                    if let Some(n) = src.name_of(r) {
                        em.f.set_name(nr, n);
                    }
                }
            }
        }
        Ok(())
    }

    /// Emits the adjoint of one top-level instruction.
    fn adjoint(&mut self, em: &mut Emitter, inst: Inst) -> Result<()> {
        let src = self.src;
        let d = &src.insts[inst];
        if d.results.iter().all(|&r| self.adj[r].is_none()) {
            return Ok(());
        }
        let args: ValueList = d.args.iter().map(|&a| self.get(a)).collect::<Result<_>>()?;
        match &d.op {
            Op::Call(_) => {
                let Some((name, cwrt)) = self.calls.get(&inst).cloned() else {
                    return Ok(());
                };
                let mut cargs = args.clone();
                for &r in &d.results {
                    if let Some(l) = self.adj[r] {
                        self.name_adjoint(em, r, l.val);
                    }
                    if is_float(src.ty(r)) {
                        let like = self.get(r)?;
                        cargs.push(lin::value(em, self.adj[r], like)?);
                    }
                }
                let res = em.ins(Op::Call(name), &cargs)?;
                let n = d.results.len();
                for (j, &i) in cwrt.iter().enumerate() {
                    let a = d.args[i];
                    let Some(&xb) = res.get(n + j) else {
                        return Err(malformed(src, "callee vjp returns too few results"));
                    };
                    self.adj[a] = Some(lin::accumulate_lin(em, self.adj[a], Lin::of(xb), true)?);
                }
            }
            Op::Loop(_) => {
                let Some(plan) = self.loops.get(&inst).cloned() else {
                    return Ok(());
                };
                self.reverse_loop(em, inst, &args, &plan)?;
            }
            Op::RevLoop(_) | Op::TapeLoop(_) | Op::Guard | Op::Yield | Op::Ret | Op::Const(_) => {}
            op => {
                let (Some(&y), Some(ybar)) = (
                    d.results.first(),
                    d.results.first().and_then(|&r| self.adj[r]),
                ) else {
                    return Ok(());
                };
                let ny = self.get(y)?;
                let ybar_val = ybar.val;
                self.name_adjoint(em, y, ybar_val);
                let need: SmallVec<[bool; 4]> =
                    d.args.iter().map(|&a| self.act.is_active(a)).collect();
                let contributions = match rules::rule(em, op, &args, Some(ny), &need)? {
                    Rule::Zero => vec![],
                    Rule::Pointwise(ps) => rules::pointwise_adjoint(&ps, ybar),
                    Rule::Linear(l) => rules::transpose(em, &l, ybar, &args, ny)?,
                };
                // An elementwise op's (and `broadcast`'s) contributions stand for its
                // result's shape, and are summed back to an operand it broadcast; a
                // tensor op's transpose gives each operand's own shape.
                let stands_for_result = matches!(op, Op::Broadcast(_)) || !op.is_tensor_op();
                for (i, t) in contributions {
                    let Some(&a) = d.args.get(i) else { continue };
                    if self.act.is_active(a) {
                        let target = src.ty(a);
                        // (In the operand's element type: `cast` changes it.)
                        let logical = match src.ty(y) {
                            Type::Tensor(_, s) if stands_for_result => {
                                Type::Tensor(target.elem(), s)
                            }
                            _ => target,
                        };
                        self.adj[a] = Some(lin::accumulate_into(
                            em,
                            self.adj[a],
                            &t,
                            target,
                            logical,
                            true,
                        )?);
                    }
                }
            }
        }
        Ok(())
    }
}
