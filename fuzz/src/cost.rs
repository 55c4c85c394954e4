//! A static upper bound on the instructions one evaluation executes, so the fuzzer never
//! runs a program that would take minutes (a mutated `0..99999999999` loop, a mutated
//! `f64[2147483647,1]` tensor) and a slow run is a real hang. A tensor instruction counts
//! the elements it touches (a `matmul` its multiply-adds).
//!
//! Trip counts come from an interval analysis of `i64` values: constants, the entry's
//! `i64` arguments, `add`/`sub`/`mul`/`neg`/`min`/`max`/`select` of known intervals,
//! loop indices (within their loop's bounds); anything else (a carried value, a call
//! result, a cast) is unknown, and a loop with an unknown bound makes the estimate
//! `None`. A call costs its callee (callees' `i64` parameters unknown); a `tapeloop`
//! costs its trips times its step; a `revloop` is charged `trips²` steps (the
//! `recompute` policy's worst case) — generous, but evaluations are small anyway. The
//! walk over the call graph uses an explicit stack; region nesting is bounded by the
//! parser, and a depth cap guards the rest.

use jitad_ir::{Bound, Constant, Function, LoopBounds, Module, Op, Region, Val, Value};
use std::collections::HashMap;

/// Interval of an `i64` value.
type Iv = (i128, i128);
const FULL: Iv = (i64::MIN as i128, i64::MAX as i128);
/// Estimates above this are reported as this (they are "too much" anyway).
const CAP: u128 = 1 << 100;
const MAX_DEPTH: usize = 512;

/// An upper bound on the instructions evaluating `entry` of `m` on `args` executes, or
/// `None` when unknown (unbounded loops, missing or recursive callees).
pub fn estimate(m: &Module, entry: &str, args: &[Val]) -> Option<u128> {
    // Post-order over the callees, with an explicit stack.
    let mut costs: HashMap<String, u128> = HashMap::new();
    let mut on_stack: HashMap<String, bool> = HashMap::new();
    let mut stack: Vec<(String, bool)> = vec![(entry.to_string(), false)];
    while let Some((name, expanded)) = stack.pop() {
        if costs.contains_key(&name) {
            continue;
        }
        let f = m.get(&name)?;
        if expanded {
            on_stack.insert(name.clone(), false);
            let params = if name == entry { Some(args) } else { None };
            let c = function_cost(m, f, params, &costs)?;
            costs.insert(name, c);
            continue;
        }
        if on_stack.get(&name).copied().unwrap_or(false) {
            return None; // a call cycle
        }
        on_stack.insert(name.clone(), true);
        stack.push((name.clone(), true));
        for d in f.insts.values() {
            let callees: Vec<&str> = match &d.op {
                Op::Call(c) => vec![c],
                Op::TapeLoop(t) => vec![&t.fwd],
                Op::RevLoop(r) => vec![&r.fwd, &r.bwd],
                _ => vec![],
            };
            for c in callees {
                if !costs.contains_key(c) {
                    if on_stack.get(c).copied().unwrap_or(false) {
                        return None;
                    }
                    stack.push((c.to_string(), false));
                }
            }
        }
    }
    costs.get(entry).copied()
}

struct Walk<'a> {
    f: &'a Function,
    costs: &'a HashMap<String, u128>,
    iv: HashMap<Value, Iv>,
    /// Most trips of any `tapeloop` seen (a `revloop` with a tape may follow its recording).
    max_tape: u128,
}

fn function_cost(
    _m: &Module,
    f: &Function,
    args: Option<&[Val]>,
    costs: &HashMap<String, u128>,
) -> Option<u128> {
    let mut w = Walk {
        f,
        costs,
        iv: HashMap::new(),
        max_tape: 0,
    };
    if let Some(args) = args {
        for (&p, a) in f.params().iter().zip(args) {
            if let Val::I64(k) = a {
                w.iv.insert(p, (*k as i128, *k as i128));
            }
        }
    }
    w.region(f.body, 0)
}

/// One instruction's work in element operations: 1 on scalars; on tensors every
/// element read or written (a 16 GiB `iota` is not one step), and a `matmul`'s
/// multiply-adds.
fn work(f: &Function, op: &Op, args: &[Value], results: &[Value]) -> u128 {
    let ty = |v: Value| f.values.get(v).map(|d| d.ty);
    let touched: u128 = args
        .iter()
        .chain(results)
        .map(|&v| ty(v).map_or(1, |t| t.num_elements() as u128))
        .sum::<u128>()
        .max(1);
    if let (Op::Matmul, &[a, b]) = (op, args) {
        if let (Some(ta), Some(tb)) = (ty(a), ty(b)) {
            if let Ok((_, d)) = jitad_ir::shape::matmul_dims(ta, tb) {
                let macs = (d.batch as u128) * (d.m as u128) * (d.k as u128) * (d.n as u128);
                return touched.max(macs);
            }
        }
    }
    touched
}

fn sat(x: u128) -> u128 {
    x.min(CAP)
}

impl Walk<'_> {
    fn get(&self, v: Value) -> Iv {
        self.iv.get(&v).copied().unwrap_or(FULL)
    }

    fn callee(&self, name: &str) -> Option<u128> {
        self.costs.get(name).copied()
    }

    /// Bounds of a loop: (start interval, end interval) from its leading operands.
    fn bounds(&self, b: LoopBounds, args: &[Value]) -> Option<(Iv, Iv)> {
        let mut k = 0;
        let mut one = |bound: Bound| -> Option<Iv> {
            match bound {
                Bound::Imm(c) => Some((c as i128, c as i128)),
                Bound::Dyn => {
                    let v = *args.get(k)?;
                    k += 1;
                    Some(self.get(v))
                }
            }
        };
        let s = one(b.start)?;
        let e = one(b.end)?;
        Some((s, e))
    }

    fn trips(&self, b: LoopBounds, args: &[Value]) -> Option<u128> {
        let (s, e) = self.bounds(b, args)?;
        if s == FULL || e == FULL {
            return None;
        }
        let t = e.1 - s.0;
        if t > i64::MAX as i128 {
            return None;
        }
        Some(t.max(0) as u128)
    }

    fn region(&mut self, r: Region, depth: usize) -> Option<u128> {
        if depth > MAX_DEPTH {
            return None;
        }
        let f = self.f;
        let rd = f.regions.get(r)?;
        let mut total: u128 = 0;
        for &i in &rd.insts {
            let d = f.insts.get(i)?;
            let c: u128 = match &d.op {
                Op::Call(name) => 1 + self.callee(name)?,
                Op::Loop(b) => {
                    let trips = self.trips(**b, &d.args)?;
                    if let (Some(&body), Some((s, e))) =
                        (d.regions.first(), self.bounds(**b, &d.args))
                    {
                        if let Some(&idx) = f.regions.get(body).and_then(|b| b.params.first()) {
                            self.iv.insert(idx, (s.0, (e.1 - 1).max(s.0)));
                        }
                        let bc = self.region(body, depth + 1)?;
                        sat(1 + trips * (bc + 1))
                    } else {
                        1
                    }
                }
                Op::TapeLoop(t) => {
                    let trips = self.trips(t.bounds, &d.args)?;
                    self.max_tape = self.max_tape.max(trips);
                    sat(1 + trips * (self.callee(&t.fwd)? + 2))
                }
                Op::RevLoop(rl) => {
                    let own = self.trips(rl.bounds, &d.args)?;
                    let trips = if rl.tape { own.max(self.max_tape) } else { own };
                    let step = self.callee(&rl.fwd)? + self.callee(&rl.bwd)? + 2;
                    sat(1 + trips.saturating_mul(trips + 1).saturating_mul(step))
                }
                op => {
                    self.interval(op, &d.args, &d.results);
                    work(f, op, &d.args, &d.results)
                }
            };
            total = sat(total + c);
        }
        Some(total)
    }

    /// Records the interval of an `i64` result, where it is known.
    fn interval(&mut self, op: &Op, args: &[Value], results: &[Value]) {
        let Some(&res) = results.first() else {
            return;
        };
        let a = |k: usize| args.get(k).map(|&v| self.get(v)).unwrap_or(FULL);
        let iv = match op {
            Op::Const(Constant::I64(c)) => (*c as i128, *c as i128),
            Op::Add => {
                let (x, y) = (a(0), a(1));
                (x.0 + y.0, x.1 + y.1)
            }
            Op::Sub => {
                let (x, y) = (a(0), a(1));
                (x.0 - y.1, x.1 - y.0)
            }
            Op::Neg => {
                let x = a(0);
                (-x.1, -x.0)
            }
            Op::Mul => {
                let (x, y) = (a(0), a(1));
                if x == FULL || y == FULL {
                    FULL
                } else {
                    let p = [x.0 * y.0, x.0 * y.1, x.1 * y.0, x.1 * y.1];
                    (
                        p.iter().copied().min().unwrap_or(0),
                        p.iter().copied().max().unwrap_or(0),
                    )
                }
            }
            Op::Min => {
                let (x, y) = (a(0), a(1));
                (x.0.min(y.0), x.1.min(y.1))
            }
            Op::Max => {
                let (x, y) = (a(0), a(1));
                (x.0.max(y.0), x.1.max(y.1))
            }
            Op::Select => {
                let (x, y) = (a(1), a(2));
                (x.0.min(y.0), x.1.max(y.1))
            }
            _ => return,
        };
        // Outside i64 the operation wraps: unknown.
        let iv = if iv.0 < FULL.0 || iv.1 > FULL.1 {
            FULL
        } else {
            iv
        };
        self.iv.insert(res, iv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_instructions_cost_their_elements() {
        // A mutation made this 2³¹-element iota: one instruction, 16 GiB of work.
        let m = jitad_ir::parse_module(
            "func @f(%x: f64) -> f64 {
              %v = iota axis 1 : f64[2147483647,1]
              %w = mul %v, %x
              %s = sum %w, axes [0, 1]
              ret %s
            }
            func @g(%a: f64[8,16], %b: f64[16,4]) -> f64[8,4] {
              %c = matmul %a, %b
              ret %c
            }",
        )
        .unwrap();
        let big = estimate(&m, "f", &[Val::F64(1.0)]).unwrap();
        assert!(big > crate::check::EVAL_BUDGET, "{big}");
        let mm = estimate(&m, "g", &[]).unwrap();
        assert!(mm >= 8 * 16 * 4, "{mm}");
    }
}
