//! Activity analysis: which values carry a derivative.
//!
//! A value is *varied* when it depends differentiably on an active input (a `wrt`
//! parameter), and *useful* when a derivative flows from it to a requested output. It is
//! *active* when both hold; the transforms emit tangent and adjoint code for active
//! values only. Float tensors can be active; integer and boolean values never are, nor
//! are results of piecewise-constant ops (`floor`, comparisons, ...): which operands a
//! derivative flows through is `crate::rules::flows`'s business.
//!
//! Through a `loop`, a carried slot is varied when its initial value or its yielded
//! value is, and useful when its result or its body parameter is; the analysis iterates
//! to a fixed point, so loop-carried dependencies of any length are found. Through a
//! `call`, every float result is varied when any float argument is, and every float
//! argument is useful when any result is (a conservative, callee-independent rule; the
//! callee's own derivative drops what it does not need).

use crate::emit::is_float;
use crate::rules::flows;
use cranelift_entity::SecondaryMap;
use jitad_ir::{Function, Inst, Op, Value};

/// The result of activity analysis on one function.
#[derive(Clone, Debug)]
pub struct Activity {
    varied: SecondaryMap<Value, bool>,
    useful: SecondaryMap<Value, bool>,
}

impl Activity {
    /// Analyses `f` for derivatives with respect to the parameters at `wrt` and of the
    /// results at `outputs` (indices into the `ret` operands). Indices out of range and
    /// non-float parameters or results are ignored. `f` must verify (the transforms
    /// verify it first): on other input the result is unspecified.
    pub fn analyze(f: &Function, wrt: &[usize], outputs: &[usize]) -> Self {
        Self::analyze_with(f, wrt, outputs, false)
    }

    /// [`Activity::analyze`]; with `confirm`, every sweep is repeated until it changes
    /// nothing, also when one sweep is known to be exact (the tests' reference).
    fn analyze_with(f: &Function, wrt: &[usize], outputs: &[usize], confirm: bool) -> Self {
        let order = f.insts_in_order();
        let mut varied = SecondaryMap::new();
        for &i in wrt {
            if let Some(&p) = f.params().get(i) {
                if is_float(f.ty(p)) {
                    varied[p] = true;
                }
            }
        }
        // Float tensors count: a derivative may flow through them (their rules are a
        // later step, and the transforms refuse an active tensor instruction by name
        // rather than silently drop its derivative).
        let fl = |v: Value| f.values.get(v).is_some_and(|d| d.ty.is_float());
        // Forward: varied. Without loops (the body is the only region, as DCE tests
        // too), one pass in program order is exact (every operand's definition comes
        // first); a loop's back edge may need more.
        let repeat = confirm || f.regions.len() > 1;
        loop {
            let mut changed = false;
            for &inst in &order {
                let d = &f.insts[inst];
                match &d.op {
                    Op::Loop(b) => {
                        let nd = b.num_dyn();
                        let Some(body) = d.regions.first().map(|&r| &f.regions[r]) else {
                            continue;
                        };
                        let yields = yield_args(f, inst);
                        for (k, &res) in d.results.iter().enumerate() {
                            let init = d.args.get(nd + k).copied();
                            let y = yields.get(k).copied();
                            let v = fl(res)
                                && (init.is_some_and(|x| varied[x])
                                    || y.is_some_and(|x| varied[x]));
                            if v && !varied[res] {
                                varied[res] = true;
                                changed = true;
                            }
                            if let Some(&p) = body.params.get(k + 1) {
                                if v && !varied[p] {
                                    varied[p] = true;
                                    changed = true;
                                }
                            }
                        }
                    }
                    op => {
                        let any = d
                            .args
                            .iter()
                            .enumerate()
                            .any(|(i, &a)| varied[a] && fl(a) && flows(op, i));
                        if any {
                            for &r in &d.results {
                                if fl(r) && !varied[r] {
                                    varied[r] = true;
                                    changed = true;
                                }
                            }
                        }
                    }
                }
            }
            if !changed || !repeat {
                break;
            }
        }
        // Backward: useful. Without loops, one pass in reverse order is exact (every
        // use comes before the definition).
        let mut useful: SecondaryMap<Value, bool> = SecondaryMap::new();
        if let Some(ret) = f.ret_inst() {
            for &k in outputs {
                if let Some(&v) = f.insts[ret].args.get(k) {
                    if fl(v) {
                        useful[v] = true;
                    }
                }
            }
        }
        loop {
            let mut changed = false;
            let mut mark = |v: Value, useful: &mut SecondaryMap<Value, bool>| {
                if fl(v) && !useful[v] {
                    useful[v] = true;
                    changed = true;
                }
            };
            for &inst in order.iter().rev() {
                let d = &f.insts[inst];
                match &d.op {
                    Op::Loop(b) => {
                        let nd = b.num_dyn();
                        let Some(body) = d.regions.first().map(|&r| &f.regions[r]) else {
                            continue;
                        };
                        let yields = yield_args(f, inst);
                        for (k, &res) in d.results.iter().enumerate() {
                            let param = body.params.get(k + 1).copied();
                            if useful[res] || param.is_some_and(|p| useful[p]) {
                                mark(res, &mut useful);
                                if let Some(p) = param {
                                    mark(p, &mut useful);
                                }
                                if let Some(&x) = d.args.get(nd + k) {
                                    mark(x, &mut useful);
                                }
                                if let Some(&y) = yields.get(k) {
                                    mark(y, &mut useful);
                                }
                            }
                        }
                    }
                    Op::Ret | Op::Yield => {}
                    op => {
                        if d.results.iter().any(|&r| useful[r]) {
                            for (i, &a) in d.args.iter().enumerate() {
                                if flows(op, i) {
                                    mark(a, &mut useful);
                                }
                            }
                        }
                    }
                }
            }
            if !changed || !repeat {
                break;
            }
        }
        Activity { varied, useful }
    }

    /// Depends differentiably on an active input.
    pub fn is_varied(&self, v: Value) -> bool {
        self.varied[v]
    }

    /// A derivative flows from it to a requested output.
    pub fn is_useful(&self, v: Value) -> bool {
        self.useful[v]
    }

    /// Varied and useful: derivative code is emitted for it.
    pub fn is_active(&self, v: Value) -> bool {
        self.varied[v] && self.useful[v]
    }
}

/// The operands of the `yield` ending the body of loop `inst` (empty if malformed).
pub(crate) fn yield_args(f: &Function, inst: Inst) -> &[Value] {
    f.insts
        .get(inst)
        .and_then(|d| d.regions.first())
        .and_then(|&r| f.regions.get(r))
        .and_then(|rd| rd.insts.last())
        .and_then(|&y| f.insts.get(y))
        .filter(|d| matches!(d.op, Op::Yield))
        .map_or(&[], |d| d.args.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitad_ir::testgen::{random_module, GenOptions};

    /// A carried value whose initial value is inactive becomes varied through its
    /// yield, which the first sweep reaches only after the loop: sweeps repeat.
    #[test]
    fn a_loop_carries_activity_from_its_yield() {
        let f = jitad_ir::parse_function(
            "func @f(%x: f64, %c: f64, %n: i64) -> f64 {
               %z = const 0.0 : f64
               %s = loop %i in 0..%n (%acc = %z : f64) {
                 %t = mul %acc, %c
                 %u = add %t, %x
                 yield %u
               }
               %r = mul %s, %c
               ret %r
             }",
        )
        .expect("parses");
        let act = Activity::analyze(&f, &[0], &[0]);
        let named = |n: &str| {
            let found = f.names.iter().find(|(_, m)| m.as_str() == n);
            *found.expect("a named value").0
        };
        for v in ["s", "acc", "t", "u", "r"] {
            assert!(act.is_active(named(v)), "%{v} is active");
        }
        assert!(!act.is_varied(named("z")));
    }

    /// One sweep each way is exact without loops: the results equal those of sweeping
    /// until nothing changes, on random programs with and without loops and calls.
    #[test]
    fn one_sweep_without_loops_equals_the_fixed_point() {
        for seed in 0..150u64 {
            let opts = GenOptions {
                num_params: 3,
                num_insts: 40,
                loops: seed % 3 == 0,
                calls: seed % 2 == 0,
                all_types: seed % 5 == 0,
                ..GenOptions::default()
            };
            let m = random_module(seed, &opts);
            for f in &m.funcs {
                let wrt: Vec<usize> = (0..f.params().len()).filter(|i| i % 2 == 0).collect();
                let outs: Vec<usize> = (0..f.sig.results.len()).collect();
                let fast = Activity::analyze(f, &wrt, &outs);
                let full = Activity::analyze_with(f, &wrt, &outs, true);
                for (v, _) in f.values.iter() {
                    assert_eq!(
                        (fast.is_varied(v), fast.is_useful(v)),
                        (full.is_varied(v), full.is_useful(v)),
                        "seed {seed}, @{}, {v}",
                        f.name
                    );
                }
            }
        }
    }
}
