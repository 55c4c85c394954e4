//! The *magnitude* of a forward-mode derivative: [`magnitude_module`] rewrites a `jvp`
//! module so that its tangent results become the sums, over every path of the
//! computational graph from an input to an output, of the absolute values of the
//! path's products of partials, applied to `|u|`: `A·|u|` where `A[i][j] = Σ_paths
//! |∏ ∂|`. Where `|J·u|` is small but `A·|u|` is large, the derivative is a difference
//! of large terms, and forward and reverse mode (which sum the same terms in different
//! orders) may round to different results; the dot-product test (`check.rs`) uses
//! `⟨|w|, A·|u|⟩` to bound that rounding.
//!
//! How: the tangent part of a `jvp` is linear in the tangent parameters and the primal
//! part does not depend on them. A forward taint analysis (through calls and loop
//! carries, to a fixed point) finds the *tangent values*: those computed from the entry's
//! tangent parameters. Each instruction computing one is rewritten so that it adds
//! magnitudes instead of signed values: `sub` becomes `add`, `neg` becomes `abs`, and
//! every primal operand of a tangent instruction (a partial, a zero) is replaced by its
//! `abs`; `mul`, `div` by a primal, `fma`, `select` (on a primal condition), float
//! `cast`, `call`, `loop` carries, `yield` and `ret` keep their op. Tensors follow the
//! same rules elementwise; the linear tensor ops (`sum`, `mean`, the re-indexing ops,
//! `concat`, `pad`, `extract`, `insert`: coefficients 0 and 1) keep their op with their
//! primal float operands' `abs`, and `matmul`/`dot` of a tangent by a primal take the
//! primal's `abs`. The primal values are untouched, so every `select` and loop trip
//! goes as in the `jvp`. Anything else reached by a tangent value (a product of two
//! tangents, a comparison, `reduce_max`, a `revloop`) is not linear bookkeeping this
//! rewrite understands: the answer is then `None`, and the caller falls back to a
//! plain tolerance.
//!
//! The analysis and the rewrite iterate over instruction lists (no recursion); the taint
//! fixed point repeats linear sweeps, at most once per value that becomes tainted.

use jitad_ir::shape::Reduction;
use jitad_ir::{Function, Module, Op, Region, ScalarType, Type, Value};
use std::collections::{HashMap, HashSet};

/// What the taint analysis knows about one function.
#[derive(Default)]
struct Taint {
    values: HashSet<Value>,
    params: Vec<bool>,
    results: Vec<bool>,
}

fn mark(set: &mut [bool], k: usize, changed: &mut bool) {
    if let Some(s) = set.get_mut(k) {
        if !*s {
            *s = true;
            *changed = true;
        }
    }
}

/// The loop instruction's carried-value inits: its last `results.len()` operands.
fn inits_offset(f: &Function, inst: jitad_ir::Inst) -> Option<usize> {
    let d = &f.insts[inst];
    d.args.len().checked_sub(d.results.len())
}

/// The module whose `entry` returns, at its tangent results, `A·|u|` when called with the
/// primal arguments and `|u|` (see the module docs). `nprimal` is the number of primal
/// parameters (the tangents follow), `nres` the number of primal results (the tangent
/// results follow). `None` when a tangent value meets an op the rewrite does not handle.
pub fn magnitude_module(m: &Module, entry: &str, nprimal: usize, nres: usize) -> Option<Module> {
    let index: HashMap<&str, usize> = m
        .funcs
        .iter()
        .enumerate()
        .rev()
        .map(|(i, f)| (f.name.as_str(), i))
        .collect();
    let e = *index.get(entry)?;
    let mut taint: Vec<Taint> = m
        .funcs
        .iter()
        .map(|f| Taint {
            values: HashSet::new(),
            params: vec![false; f.sig.params.len()],
            results: vec![false; f.sig.results.len()],
        })
        .collect();
    for k in nprimal..m.funcs[e].sig.params.len() {
        taint[e].params[k] = true;
    }
    for k in nres..m.funcs[e].sig.results.len() {
        taint[e].results[k] = true;
    }
    // The fixed point: sweeps over every function until nothing changes.
    let mut changed = true;
    while changed {
        changed = false;
        for (fi, f) in m.funcs.iter().enumerate() {
            for (k, &p) in f.params().iter().enumerate() {
                if taint[fi].params[k] && taint[fi].values.insert(p) {
                    changed = true;
                }
            }
            if taint[fi].values.is_empty() {
                continue;
            }
            for inst in f.insts_in_order() {
                let d = &f.insts[inst];
                let t = &taint[fi].values;
                let arg_t: Vec<bool> = d.args.iter().map(|a| t.contains(a)).collect();
                let mut res_t: Vec<bool> = d.results.iter().map(|r| t.contains(r)).collect();
                // For a loop: which yielded values are tangents.
                let yield_t: Vec<bool> = match (&d.op, d.regions.first()) {
                    (Op::Loop(_), Some(&body)) => f.regions[body]
                        .insts
                        .last()
                        .map(|&y| f.insts[y].args.iter().map(|a| t.contains(a)).collect())
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                match &d.op {
                    Op::Call(c) => {
                        let ci = *index.get(c.as_str())?;
                        for (k, &at) in arg_t.iter().enumerate() {
                            if at {
                                mark(&mut taint[ci].params, k, &mut changed);
                            }
                        }
                        for (k, r) in res_t.iter_mut().enumerate() {
                            *r |= taint[ci].results.get(k).copied().unwrap_or(false);
                        }
                    }
                    Op::Loop(_) => {
                        let off = inits_offset(f, inst)?;
                        let body = *d.regions.first()?;
                        for (k, r) in res_t.iter_mut().enumerate() {
                            *r |= arg_t.get(off + k).copied().unwrap_or(false)
                                || yield_t.get(k).copied().unwrap_or(false);
                        }
                        let params = &f.regions[body].params;
                        for (k, &r) in res_t.iter().enumerate() {
                            if let (true, Some(&p)) = (r, params.get(k + 1)) {
                                if taint[fi].values.insert(p) {
                                    changed = true;
                                }
                            }
                        }
                    }
                    Op::Ret => {
                        for (k, &at) in arg_t.iter().enumerate() {
                            if at {
                                mark(&mut taint[fi].results, k, &mut changed);
                            }
                        }
                    }
                    _ => {
                        let any = arg_t.iter().any(|&x| x);
                        res_t.iter_mut().for_each(|r| *r |= any);
                    }
                }
                for (k, &r) in res_t.iter().enumerate() {
                    if r && taint[fi].values.insert(d.results[k]) {
                        changed = true;
                    }
                }
            }
        }
    }
    let mut out = m.clone();
    for (fi, f) in out.funcs.iter_mut().enumerate() {
        if taint[fi].values.is_empty() && !taint[fi].results.iter().any(|&r| r) {
            continue;
        }
        let callee_params = |c: &str| index.get(c).map(|&ci| taint[ci].params.clone());
        rewrite(f, &taint[fi], callee_params)?;
    }
    Some(out)
}

/// Rewrites the tangent instructions of `f` (see the module docs); `None` on an op that
/// is not linear bookkeeping.
fn rewrite(
    f: &mut Function,
    t: &Taint,
    callee_params: impl Fn(&str) -> Option<Vec<bool>>,
) -> Option<()> {
    if t.values.iter().any(|&v| !is_float(f.ty(v))) {
        return None;
    }
    let regions: Vec<Region> = f.regions.keys().collect();
    for region in regions {
        let old = std::mem::take(&mut f.regions[region].insts);
        let mut new = Vec::with_capacity(old.len());
        for inst in old {
            let d = f.insts[inst].clone();
            let arg_t: Vec<bool> = d.args.iter().map(|a| t.values.contains(a)).collect();
            let any = arg_t.iter().any(|&x| x) || d.results.iter().any(|r| t.values.contains(r));
            // Which operands become `abs` of themselves.
            let mut abs_at: Vec<usize> = Vec::new();
            let mut op = d.op.clone();
            match &d.op {
                Op::Ret => {
                    abs_at = (0..d.args.len())
                        .filter(|&k| t.results.get(k).copied().unwrap_or(false) && !arg_t[k])
                        .collect();
                }
                Op::Yield => {
                    let parent = f.regions[region].parent?;
                    let carried = &f.insts[parent].results;
                    abs_at = (0..d.args.len())
                        .filter(|&k| {
                            carried.get(k).is_some_and(|c| t.values.contains(c)) && !arg_t[k]
                        })
                        .collect();
                }
                _ if !any => {}
                Op::Add | Op::Sub => {
                    op = Op::Add;
                    abs_at = untainted(&arg_t);
                }
                Op::Neg => op = Op::Abs,
                Op::Mul => {
                    if arg_t.iter().all(|&x| x) {
                        return None;
                    }
                    abs_at = untainted(&arg_t);
                }
                Op::Div => {
                    if *arg_t.get(1)? {
                        return None;
                    }
                    abs_at = untainted(&arg_t);
                }
                Op::Fma => {
                    if *arg_t.first()? && *arg_t.get(1)? {
                        return None;
                    }
                    abs_at = untainted(&arg_t);
                }
                Op::Select => {
                    if *arg_t.first()? {
                        return None;
                    }
                    abs_at = (1..d.args.len()).filter(|&k| !arg_t[k]).collect();
                }
                Op::Cast(_) => {}
                // Linear re-indexing and reductions: coefficients 0 and 1, so
                // magnitudes take the same op (a pad's value, a zero tangent, its abs).
                Op::Reduce(Reduction::Sum | Reduction::Mean, _)
                | Op::Broadcast(_)
                | Op::Reshape(_)
                | Op::Slice(_)
                | Op::Transpose(_)
                | Op::Concat(_)
                | Op::Pad(_)
                | Op::Extract
                | Op::Insert => abs_at = untainted(&arg_t),
                // Bilinear: linear in a tangent times a primal.
                Op::Matmul | Op::Dot => {
                    if arg_t.iter().all(|&x| x) {
                        return None;
                    }
                    abs_at = untainted(&arg_t);
                }
                Op::Call(c) => {
                    let params = callee_params(c)?;
                    abs_at = (0..d.args.len())
                        .filter(|&k| params.get(k).copied().unwrap_or(false) && !arg_t[k])
                        .collect();
                }
                Op::Loop(_) => {
                    let off = d.args.len().checked_sub(d.results.len())?;
                    if arg_t[..off].iter().any(|&x| x) {
                        return None;
                    }
                    abs_at = (0..d.results.len())
                        .filter(|&k| t.values.contains(&d.results[k]) && !arg_t[off + k])
                        .map(|k| off + k)
                        .collect();
                }
                _ => return None,
            }
            let mut args = d.args.clone();
            for k in abs_at {
                let v = args[k];
                let ty = f.ty(v);
                if !is_float(ty) {
                    // An index operand (`extract`, `insert`) has no magnitude.
                    if matches!(d.op, Op::Extract | Op::Insert) && ty.elem() == ScalarType::I64 {
                        continue;
                    }
                    return None;
                }
                let a = f.create_inst(Op::Abs, vec![v], &[ty], None);
                new.push(a);
                args[k] = f.result(a);
            }
            let data = &mut f.insts[inst];
            data.op = op;
            data.args = args;
            new.push(inst);
        }
        f.regions[region].insts = new;
    }
    Some(())
}

/// `f64`/`f32` scalars and tensors: the values with a magnitude.
fn is_float(t: Type) -> bool {
    matches!(t.elem(), ScalarType::F64 | ScalarType::F32)
}

fn untainted(arg_t: &[bool]) -> Vec<usize> {
    (0..arg_t.len()).filter(|&k| !arg_t[k]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitad_ir::{interp, parse_module, verify_module, Val};

    const SIGNED: &str = "
func @g(%x: f64, %dx: f64) -> (f64, f64) {
  %s = sin %x
  %d = mul %dx, %s
  ret %s, %d
}
func @main(%x: f64, %dx: f64) -> (f64, f64) {
  %y, %dy = call @g(%x, %dx)
  %r, %dr = loop %i in 0..3 (%c = %y : f64, %dc = %dx : f64) {
    %n = neg %dc
    %m = sub %n, %dy
    yield %c, %m
  }
  ret %r, %dr
}
";

    fn run(m: &Module, x: f64, dx: f64) -> (f64, f64) {
        let out = interp::eval(m, "main", &[Val::F64(x), Val::F64(dx)]).expect("runs");
        (out[0].as_f64().expect("f64"), out[1].as_f64().expect("f64"))
    }

    /// Through a call and a loop, signs cancel in the tangent (−dx − dy, then
    /// dx + dy − dy, ...) and add up in its magnitude; the primal is untouched.
    #[test]
    fn magnitudes_add_where_tangents_cancel() {
        let m = parse_module(SIGNED).expect("parses");
        let x = -1.0f64;
        let (y, dy) = run(&m, x, 1.0);
        let s = x.sin();
        assert_eq!(y, s);
        assert_eq!(dy, -1.0 - s); // dc: 1, −1 − s, 1 + s − s, −1 − s
        let mm = magnitude_module(&m, "main", 1, 1).expect("linear bookkeeping only");
        verify_module(&mm).expect("the rewrite verifies");
        let (y2, mag) = run(&mm, x, 1.0);
        assert_eq!(y2.to_bits(), y.to_bits());
        let a = s.abs();
        assert_eq!(mag, ((1.0 + a) + a) + a);
    }

    /// Tensor tangents: a cancelling difference of shifted copies (`pad`, `slice`), a
    /// product by a primal matrix and an index write add up in the magnitude.
    #[test]
    fn tensor_magnitudes_add_where_tangents_cancel() {
        let m = parse_module(
            "func @main(%x: f64[2], %dx: f64[2]) -> (f64[2], f64) {
  %z = const 0.0 : f64
  %a = pad %dx, %z [1:0]
  %b = pad %dx, %z [0:1]
  %d = sub %a, %b
  %s = slice %d [0:2]
  %k = const -2.0 : f64
  %m = broadcast %k : f64[2,2]
  %p = matmul %m, %s
  %i = const 1 : i64
  %e = extract %p [%i]
  %w = insert %e into %dx [%i]
  %t = sum %w, axes [0]
  ret %x, %t
}",
        )
        .expect("parses");
        let x = Val::tensor(jitad_ir::tensor::Tensor::f64(&[2], vec![0.5, 0.25]).expect("2"));
        let dx = Val::tensor(jitad_ir::tensor::Tensor::f64(&[2], vec![1.0, 1.0]).expect("2"));
        let mm = magnitude_module(&m, "main", 1, 1).expect("linear bookkeeping only");
        verify_module(&mm).expect("the rewrite verifies");
        let out = interp::eval(&m, "main", &[x.clone(), dx.clone()]).expect("runs");
        let mag = interp::eval(&mm, "main", &[x, dx]).expect("runs");
        // d = [-1, 0, 1] (the shifted copies cancel in the middle), s = [-1, 0],
        // p = [2, 2], w = [1, 2].
        assert_eq!(out[1].as_f64(), Some(3.0));
        // |a| + |b| = [1, 2, 1], s = [1, 2], |m|·s = [6, 6], w = [1, 6].
        assert_eq!(mag[1].as_f64(), Some(7.0));
    }

    /// A product of two tangents is not linear: no magnitude module.
    #[test]
    fn nonlinear_tangent_code_is_refused() {
        let m = parse_module(
            "func @main(%x: f64, %dx: f64) -> (f64, f64) {
  %q = mul %dx, %dx
  ret %x, %q
}",
        )
        .expect("parses");
        assert!(magnitude_module(&m, "main", 1, 1).is_none());
    }
}
