//! Forward mode: `jvp(f, wrt)` maps `f(x) -> y` to `f.jvp(x, dx_wrt) -> (y, dy)`.
//!
//! One pass over the function in program order copies each instruction and, when one of
//! its results is active ([`crate::activity`]), emits its tangent right after it, by its
//! rule's kind: `crate::rules::pointwise_tangent` or, for a linear op, the op on the
//! tangents (`crate::rules::linear_tangent`). Tangents of inactive values are
//! structural zeros: they emit nothing, and a zero is materialised only where a value
//! must exist (an output, a loop-carried slot, a callee's tangent argument).
//!
//! - `call @g(...)` with active arguments becomes `call @g.jvp(..., dargs)` (the callee's
//!   jvp generated once, with respect to exactly the active arguments), which returns
//!   the primal results too, so the original call is not kept.
//! - `loop` becomes a loop carrying the primal state and the tangents of its active
//!   slots; the body is transformed recursively (nesting depth is the only recursion).
//! - `dy` is returned for every float result, in order; results that do not depend on
//!   `wrt` get a constant zero tangent.
//!
//! - a reversed loop (a `tapeloop` and its `revloop`, made by reverse mode) is carried
//!   as a pair over tangent steps (see `tangent_steps`), which is what makes
//!   forward-over-reverse (hvp) work through loops.
//!
//! Tangents are named after their primal (`%a` → `%da`) when the primal has a name.

use crate::activity::{yield_args, Activity};
use crate::derive::{derived_name, float_results, Kind, Session};
use crate::emit::{is_float, Emitter};
use crate::error::{AdError, Result};
use crate::lin::{self, Lin};
use crate::rules::{self, Rule};
use cranelift_entity::SecondaryMap;
use jitad_ir::{Function, Inst, Op, Region, Type, Value, ValueDef, ValueList};
use std::collections::HashMap;

/// Generates the forward-mode derivative of `func` with respect to the parameters at
/// `wrt` (float parameters only) into `m`, together with the derivatives of the
/// functions it calls; returns its name (`f.jvp`, see `crate::derive` for names).
///
/// The result is `@f.jvp(x..., dx_wrt...) -> (y..., dy...)` with one `dy` per float
/// result of `f`. The function must verify.
pub fn jvp(m: &mut jitad_ir::Module, func: &str, wrt: &[usize]) -> Result<String> {
    crate::derive::derive(m, func, Kind::Jvp, wrt)
}

struct Jvp<'a> {
    src: &'a Function,
    act: Activity,
    /// Primal value → its copy.
    map: SecondaryMap<Value, Option<Value>>,
    /// Primal value → its tangent (`None`: zero).
    tan: SecondaryMap<Value, Option<Lin>>,
    /// Calls replaced by a callee jvp: its name and the callee's wrt.
    calls: HashMap<Inst, (String, Vec<usize>)>,
    /// Values of the derived function that copy primal values (never renamed).
    primal: SecondaryMap<Value, bool>,
    /// `tapeloop`s and `revloop`s carried into forward mode: their tangent steps.
    loop_pairs: HashMap<Inst, TangentSteps>,
}

/// The tangent versions of a reversed loop's step functions (see [`tangent_steps`]).
#[derive(Clone, Debug)]
struct TangentSteps {
    fwd: String,
    bwd: Option<String>,
}

/// Makes `@F.tan(i, s..., ds_f..., c..., dc_f...) -> (s'..., ds'_f...)` (and, with a
/// backward step, `@B.tan(i, s..., ds_f..., c..., dc_f..., a..., da...) -> (a'..., da'...)`)
/// around `jvp(@F)` and `jvp(@B)` with respect to all their float parameters, with the
/// parameters in the order a `tapeloop`/`revloop` wants: state (primal then tangent),
/// captures (primal then tangent), adjoints (primal then tangent). `_f` are the float
/// slots.
fn tangent_steps(s: &mut Session, fwd: &str, bwd: Option<&str>) -> Result<TangentSteps> {
    let float_idx =
        |ts: &[Type]| -> Vec<usize> { (0..ts.len()).filter(|&i| is_float(ts[i])).collect() };
    let fsig = s
        .sigs
        .get(fwd)
        .cloned()
        .ok_or_else(|| AdError::UnknownFunction(fwd.into()))?;
    let k = fsig.results.len();
    let state_tys = fsig.results.clone();
    let cap_tys: Vec<Type> = fsig.params.get(1 + k..).unwrap_or(&[]).to_vec();
    let sf = float_idx(&state_tys);
    let cf = float_idx(&cap_tys);
    let fwd_tan = format!("{fwd}.tan");
    if !s.sigs.contains_key(&fwd_tan) {
        let fwrt = crate::derive::float_params_of(&fsig);
        let jf = s.request(fwd, Kind::Jvp, &fwrt)?;
        let mut em = Emitter::new(&fwd_tan, &s.sigs);
        let i = em.param(Type::I64, Some("i".into()));
        let st: Vec<Value> = state_tys.iter().map(|&t| em.param(t, None)).collect();
        let dst: Vec<Value> = sf.iter().map(|&j| em.param(state_tys[j], None)).collect();
        let cs: Vec<Value> = cap_tys.iter().map(|&t| em.param(t, None)).collect();
        let dcs: Vec<Value> = cf.iter().map(|&j| em.param(cap_tys[j], None)).collect();
        let args: Vec<Value> = std::iter::once(i)
            .chain(st.iter().copied())
            .chain(cs.iter().copied())
            .chain(dst.iter().copied())
            .chain(dcs.iter().copied())
            .collect();
        let res = em.ins(Op::Call(jf), &args)?;
        let f = em.finish(&res)?;
        s.add_extra(f);
    }
    let bwd_tan = match bwd {
        None => None,
        Some(bwd) => {
            let name = format!("{bwd}.tan");
            if !s.sigs.contains_key(&name) {
                let bsig = s
                    .sigs
                    .get(bwd)
                    .cloned()
                    .ok_or_else(|| AdError::UnknownFunction(bwd.into()))?;
                let adj_tys = bsig.results.clone();
                let bwrt = crate::derive::float_params_of(&bsig);
                let jb = s.request(bwd, Kind::Jvp, &bwrt)?;
                let mut em = Emitter::new(&name, &s.sigs);
                let i = em.param(Type::I64, Some("i".into()));
                let st: Vec<Value> = state_tys.iter().map(|&t| em.param(t, None)).collect();
                let dst: Vec<Value> = sf.iter().map(|&j| em.param(state_tys[j], None)).collect();
                let cs: Vec<Value> = cap_tys.iter().map(|&t| em.param(t, None)).collect();
                let dcs: Vec<Value> = cf.iter().map(|&j| em.param(cap_tys[j], None)).collect();
                let a: Vec<Value> = adj_tys.iter().map(|&t| em.param(t, None)).collect();
                let af = float_idx(&adj_tys);
                let da: Vec<Value> = af.iter().map(|&j| em.param(adj_tys[j], None)).collect();
                let args: Vec<Value> = std::iter::once(i)
                    .chain(st.iter().copied())
                    .chain(cs.iter().copied())
                    .chain(a.iter().copied())
                    .chain(dst.iter().copied())
                    .chain(dcs.iter().copied())
                    .chain(da.iter().copied())
                    .collect();
                let res = em.ins(Op::Call(jb), &args)?;
                let f = em.finish(&res)?;
                s.add_extra(f);
            }
            Some(name)
        }
    };
    Ok(TangentSteps {
        fwd: fwd_tan,
        bwd: bwd_tan,
    })
}

/// Builds `name` = jvp of `src` w.r.t. `wrt`.
pub(crate) fn build(
    s: &mut Session,
    src: &Function,
    wrt: &[usize],
    name: &str,
) -> Result<Function> {
    let outs = float_results(&src.sig);
    let act = Activity::analyze(src, wrt, &outs);
    // Plan calls first, so the emitter can borrow the signatures.
    let mut calls = HashMap::new();
    for inst in src.insts_in_order() {
        let d = &src.insts[inst];
        if let Op::Call(g) = &d.op {
            if !d.results.iter().any(|&r| act.is_active(r)) {
                continue;
            }
            let cwrt: Vec<usize> = (0..d.args.len())
                .filter(|&i| act.is_varied(d.args[i]) && is_float(src.ty(d.args[i])))
                .collect();
            if !cwrt.is_empty() {
                let n = s.request(g, Kind::Jvp, &cwrt)?;
                calls.insert(inst, (n, cwrt));
            }
        }
    }
    // Reversed loops (`tapeloop` … `revloop` pairs, as reverse mode writes them): a pair
    // is carried into forward mode as a whole when any of its operands varies, since
    // the tape's states then need their tangents too.
    let mut loop_pairs = HashMap::new();
    let mut marked: std::collections::HashSet<Inst> = std::collections::HashSet::new();
    let varied = |d: &jitad_ir::InstData| d.args.iter().any(|&a| act.is_varied(a));
    let order = src.insts_in_order();
    for &inst in &order {
        let d = &src.insts[inst];
        if let Op::RevLoop(r) = &d.op {
            if varied(d) && r.tape {
                let [_, tape, ..] = r
                    .split(d.args.len())
                    .ok_or_else(|| malformed(src, "revloop"))?;
                if let Some(ti) = tape.clone().next() {
                    if let ValueDef::Result(def, _) = src.values[d.args[ti]].def {
                        marked.insert(def);
                    }
                }
            }
        }
    }
    let mut carried_tapes: std::collections::HashSet<Inst> = std::collections::HashSet::new();
    for &inst in &order {
        let d = &src.insts[inst];
        match &d.op {
            Op::TapeLoop(r) if varied(d) || marked.contains(&inst) => {
                loop_pairs.insert(inst, tangent_steps(s, &r.fwd, None)?);
                carried_tapes.insert(inst);
            }
            Op::RevLoop(r) => {
                let [_, tape, ..] = r
                    .split(d.args.len())
                    .ok_or_else(|| malformed(src, "revloop"))?;
                let tape_carried = tape.clone().next().is_some_and(|ti| {
                    matches!(src.values[d.args[ti]].def,
                        ValueDef::Result(def, _) if carried_tapes.contains(&def))
                });
                if varied(d) || tape_carried {
                    if r.tape && !tape_carried {
                        return Err(AdError::Unsupported {
                            func: src.name.clone(),
                            what: "forward mode through a `revloop` whose `tapeloop` does not vary"
                                .into(),
                        });
                    }
                    loop_pairs.insert(inst, tangent_steps(s, &r.fwd, Some(&r.bwd))?);
                }
            }
            _ => {}
        }
    }
    let mut t = Jvp {
        src,
        act,
        map: SecondaryMap::new(),
        tan: SecondaryMap::new(),
        calls,
        primal: SecondaryMap::new(),
        loop_pairs,
    };
    let mut em = Emitter::new(name, &s.sigs);
    em.reserve_for(src);
    for &p in src.params() {
        let np = em.param(src.ty(p), src.name_of(p).map(str::to_string));
        t.map[p] = Some(np);
        t.primal[np] = true;
    }
    for &i in wrt {
        let Some(&p) = src.params().get(i) else {
            continue;
        };
        let dp = em.param(
            src.ty(p),
            Some(derived_name(src, p, "d", "").unwrap_or_else(|| format!("dx{i}"))),
        );
        if t.act.is_useful(p) {
            t.tan[p] = Some(Lin::of(dp));
        }
    }
    t.region(&mut em, src.body)?;
    let ret = src.ret_inst().ok_or_else(|| malformed(src, "no `ret`"))?;
    let rargs = &src.insts[ret].args;
    let mut vals = Vec::with_capacity(rargs.len() + outs.len());
    for &r in rargs {
        vals.push(t.get(r)?);
    }
    for &k in &outs {
        let r = rargs[k];
        let like = t.get(r)?;
        vals.push(lin::value(&mut em, t.tan[r], like)?);
    }
    em.finish(&vals)
}

fn malformed(src: &Function, reason: &str) -> AdError {
    AdError::Malformed {
        func: src.name.clone(),
        reason: reason.into(),
    }
}

impl Jvp<'_> {
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

    /// Transforms the instructions of `region` except its terminator.
    fn region(&mut self, em: &mut Emitter, region: Region) -> Result<()> {
        let insts = &self.src.regions[region].insts;
        let body = match insts.split_last() {
            Some((last, rest)) if self.src.insts[*last].op.is_terminator() => rest,
            _ => return Err(malformed(self.src, "region without terminator")),
        };
        for &inst in body {
            self.inst(em, inst)?;
        }
        Ok(())
    }

    fn inst(&mut self, em: &mut Emitter, inst: Inst) -> Result<()> {
        let src = self.src;
        let d = &src.insts[inst];
        let args: ValueList = d.args.iter().map(|&a| self.get(a)).collect::<Result<_>>()?;
        match &d.op {
            Op::Loop(_) => return self.lp(em, inst, &args),
            Op::RevLoop(_) | Op::TapeLoop(_) if self.loop_pairs.contains_key(&inst) => {
                return self.reversed_loop(em, inst, &args);
            }
            Op::Yield | Op::Ret => return Err(malformed(src, "terminator inside a region")),
            Op::Call(_) => {
                if let Some((name, cwrt)) = self.calls.get(&inst).cloned() {
                    let mut cargs = args.clone();
                    for &i in &cwrt {
                        let a = d.args[i];
                        cargs.push(lin::value(em, self.tan[a], args[i])?);
                    }
                    let res = em.ins(Op::Call(name), &cargs)?;
                    let n = d.results.len();
                    if res.len() < n {
                        return Err(malformed(src, "callee jvp returns too few results"));
                    }
                    for (k, &r) in d.results.iter().enumerate() {
                        self.map[r] = Some(res[k]);
                        self.primal[res[k]] = true;
                        if let Some(n) = src.name_of(r) {
                            em.f.set_name(res[k], n);
                        }
                    }
                    let fres = float_results(&jitad_ir::Signature {
                        params: vec![],
                        results: d.results.iter().map(|&r| src.ty(r)).collect(),
                    });
                    for (j, &k) in fres.iter().enumerate() {
                        let r = d.results[k];
                        if self.act.is_active(r) {
                            if let Some(&dv) = res.get(n + j) {
                                self.tan[r] = Some(Lin::of(dv));
                                self.name_tangent(em, r, dv);
                            }
                        }
                    }
                    return Ok(());
                }
            }
            _ => {}
        }
        // Copy the primal instruction.
        let res = match &d.op {
            Op::Const(c) => ValueList::from_slice(&[em.copy_constant(*c)]),
            op => em.ins(op.clone(), &args)?,
        };
        for (&r, &nr) in d.results.iter().zip(&res) {
            self.map[r] = Some(nr);
            self.primal[nr] = true;
            if let Some(n) = src.name_of(r) {
                em.f.set_name(nr, n);
            }
        }
        let Some(&y) = d.results.first() else {
            return Ok(());
        };
        if d.results.len() != 1 || !self.act.is_active(y) || matches!(d.op, Op::Call(_)) {
            return Ok(());
        }
        let need: Vec<bool> = d.args.iter().map(|&a| self.tan[a].is_some()).collect();
        let dargs: Vec<Option<Lin>> = d.args.iter().map(|&a| self.tan[a]).collect();
        let dy = match rules::rule(em, &d.op, &args, Some(res[0]), &need)? {
            Rule::Zero => None,
            Rule::Pointwise(ps) => rules::pointwise_tangent(em, &ps, &dargs)?,
            Rule::Linear(l) => rules::linear_tangent(em, &l, &dargs, &args, res[0])?,
        };
        // An elementwise op's tangent has the broadcast shape of the tangents it was
        // made of, which may be smaller than the result's (`add %m, %row` with only
        // the row varying): a tangent has its primal's type.
        let ty = em.ty(res[0]);
        let dy = match dy {
            Some(l) if em.ty(l.val) != ty => Some(Lin {
                val: em.ins1(Op::Broadcast(ty), &[l.val])?,
                ..l
            }),
            other => other,
        };
        self.tan[y] = dy;
        if let Some(l) = dy {
            self.name_tangent(em, y, l.val);
        }
        Ok(())
    }

    fn name_tangent(&self, em: &mut Emitter, primal: Value, v: Value) {
        if !self.primal[v] && em.const_of(v).is_none() {
            if let Some(n) = derived_name(self.src, primal, "d", "") {
                em.name_if_unnamed(v, n);
            }
        }
    }

    /// A `tapeloop` or `revloop` carried into forward mode: the same op over the tangent
    /// steps, its state, captures and adjoints each followed by their tangents.
    fn reversed_loop(&mut self, em: &mut Emitter, inst: Inst, args: &[Value]) -> Result<()> {
        let src = self.src;
        let d = &src.insts[inst];
        let steps = self.loop_pairs[&inst].clone();
        // Tangents (or zeros) of the float operands among `range`.
        let tangents = |em: &mut Emitter, range: std::ops::Range<usize>| -> Result<Vec<Value>> {
            let mut out = Vec::new();
            for k in range {
                let a = d.args[k];
                if is_float(src.ty(a)) {
                    out.push(lin::value(em, self.tan[a], args[k])?);
                }
            }
            Ok(out)
        };
        let (op, new_args) = match &d.op {
            Op::TapeLoop(r) => {
                let [bounds, inits, caps] = r
                    .split(d.args.len())
                    .ok_or_else(|| malformed(src, "tapeloop"))?;
                let dinits = tangents(em, inits.clone())?;
                let dcaps = tangents(em, caps.clone())?;
                let mut a: Vec<Value> = args[bounds].to_vec();
                a.extend_from_slice(&args[inits.clone()]);
                a.extend(&dinits);
                a.extend_from_slice(&args[caps]);
                a.extend(&dcaps);
                let mut nr = (**r).clone();
                nr.fwd = steps.fwd.clone();
                nr.state = (inits.len() + dinits.len()) as u32;
                (Op::TapeLoop(Box::new(nr)), a)
            }
            Op::RevLoop(r) => {
                let [bounds, tape, inits, caps, seeds] = r
                    .split(d.args.len())
                    .ok_or_else(|| malformed(src, "revloop"))?;
                let dinits = tangents(em, inits.clone())?;
                let dcaps = tangents(em, caps.clone())?;
                let dseeds = tangents(em, seeds.clone())?;
                let mut a: Vec<Value> = args[bounds].to_vec();
                a.extend_from_slice(&args[tape]);
                a.extend_from_slice(&args[inits.clone()]);
                a.extend(&dinits);
                a.extend_from_slice(&args[caps.clone()]);
                a.extend(&dcaps);
                a.extend_from_slice(&args[seeds]);
                a.extend(&dseeds);
                let mut nr = (**r).clone();
                nr.fwd = steps.fwd.clone();
                nr.bwd = steps
                    .bwd
                    .clone()
                    .ok_or_else(|| malformed(src, "revloop without a tangent backward step"))?;
                nr.state = (inits.len() + dinits.len()) as u32;
                nr.caps = (caps.len() + dcaps.len()) as u32;
                (Op::RevLoop(Box::new(nr)), a)
            }
            _ => return Err(malformed(src, "not a reversed loop")),
        };
        let res = em.ins(op, &new_args)?;
        // Results: the primal ones (and a tape token last, for a tapeloop), with the
        // float ones' tangents after the primal state or adjoints.
        let n = d.results.len();
        let is_tape = matches!(d.op, Op::TapeLoop(_));
        let primal_n = if is_tape { n - 1 } else { n };
        let fl: Vec<usize> = (0..primal_n)
            .filter(|&j| is_float(src.ty(d.results[j])))
            .collect();
        for (&r, &nr) in d.results[..primal_n].iter().zip(&res) {
            self.map[r] = Some(nr);
            self.primal[nr] = true;
            if let Some(nm) = src.name_of(r) {
                em.f.set_name(nr, nm);
            }
        }
        for (q, &j) in fl.iter().enumerate() {
            let r = d.results[j];
            let dv = res[primal_n + q];
            self.tan[r] = Some(Lin::of(dv));
            self.name_tangent(em, r, dv);
        }
        if is_tape {
            let tok = d.results[n - 1];
            let nt = *res
                .last()
                .ok_or_else(|| malformed(src, "tapeloop without token"))?;
            self.map[tok] = Some(nt);
            self.primal[nt] = true;
            if let Some(nm) = src.name_of(tok) {
                em.f.set_name(nt, nm);
            }
        }
        Ok(())
    }

    /// A loop carrying primal and tangent state.
    fn lp(&mut self, em: &mut Emitter, inst: Inst, args: &[Value]) -> Result<()> {
        let src = self.src;
        let d = &src.insts[inst];
        let Op::Loop(bounds) = &d.op else {
            return Err(malformed(src, "not a loop"));
        };
        let bounds = **bounds;
        let nd = bounds.num_dyn();
        let &[body] = d.regions.as_slice() else {
            return Err(malformed(src, "loop without exactly one body"));
        };
        let params = src.regions[body].params.clone();
        let nc = d.results.len();
        if args.len() != nd + nc || params.len() != nc + 1 {
            return Err(malformed(src, "loop carries mismatched values"));
        }
        let yields = yield_args(src, inst).to_vec();
        if yields.len() != nc {
            return Err(malformed(
                src,
                "loop body yields the wrong number of values",
            ));
        }
        // Active slots carry a tangent.
        let slots: Vec<usize> = (0..nc)
            .filter(|&k| self.act.is_active(d.results[k]) || self.act.is_active(params[k + 1]))
            .collect();
        let mut inits = args[nd..].to_vec();
        for &k in &slots {
            let x = d.args[nd + k];
            inits.push(lin::value(em, self.tan[x], args[nd + k])?);
        }
        let (index, nparams) = em.begin_loop(bounds, &args[..nd], &inits)?;
        self.map[params[0]] = Some(index);
        if let Some(n) = src.name_of(params[0]) {
            em.f.set_name(index, n);
        }
        for k in 0..nc {
            let p = params[k + 1];
            self.map[p] = Some(nparams[k]);
            self.primal[nparams[k]] = true;
            if let Some(n) = src.name_of(p) {
                em.f.set_name(nparams[k], n);
            }
        }
        for (j, &k) in slots.iter().enumerate() {
            let p = params[k + 1];
            let dp = nparams[nc + j];
            self.tan[p] = Some(Lin::of(dp));
            self.name_tangent(em, p, dp);
        }
        self.region(em, body)?;
        let mut next: Vec<Value> = yields.iter().map(|&y| self.get(y)).collect::<Result<_>>()?;
        for &k in &slots {
            let y = yields[k];
            let like = self.get(y)?;
            next.push(lin::value(em, self.tan[y], like)?);
        }
        let res = em.end_loop(&next)?;
        for (k, &r) in d.results.iter().enumerate() {
            self.map[r] = Some(res[k]);
            self.primal[res[k]] = true;
            if let Some(n) = src.name_of(r) {
                em.f.set_name(res[k], n);
            }
        }
        for (j, &k) in slots.iter().enumerate() {
            let r = d.results[k];
            let dr = res[nc + j];
            self.tan[r] = Some(Lin::of(dr));
            self.name_tangent(em, r, dr);
        }
        Ok(())
    }
}
