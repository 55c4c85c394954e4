//! The inliner (`jitad_passes::inline`, run by `optimize_module`): which calls its cost
//! model inlines and which it keeps, that the result verifies and computes the same
//! bits in both engines as the module without inlining, on hand-written cases (single
//! use, small shared, large shared, cycles, loops in callees, `revloop` step functions,
//! tensors, many calls) and on random programs with calls.

mod common;
use common::*;
use jitad_ir::{interp, parse_module, random_module, verify_module, GenOptions, Module, Op, Val};
use jitad_passes::inline::{inline_module, GROWTH_FLOOR, SMALL_CALLEE};
use jitad_passes::{grad, optimize_module, OptOptions};
use proptest::prelude::*;

fn parsed(src: &str) -> Module {
    let m = parse_module(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    verify_module(&m).unwrap_or_else(|e| panic!("{e}\n{src}"));
    m
}

fn optimized(m: &Module, inline: bool) -> Module {
    let mut o = m.clone();
    let opts = OptOptions {
        inline,
        ..OptOptions::default()
    };
    optimize_module(&mut o, &opts);
    verified(&o);
    o
}

/// Calls (`call` only) reachable in `f`'s body.
fn calls(m: &Module, f: &str) -> usize {
    let f = m.get(f).unwrap();
    f.insts_in_order()
        .iter()
        .filter(|&&i| matches!(f.insts[i].op, Op::Call(_)))
        .count()
}

/// Bits of both engines' results on `m` equal those on `m` without inlining.
fn same_bits(m: &Module, f: &str, args: &[f64]) {
    let off = optimized(m, false);
    let on = optimized(m, true);
    let (a, b) = (eval(&off, f, args), eval(&on, f, args));
    // Any NaN equals any NaN: constant folding may produce another NaN payload.
    let bits = |v: &[f64]| {
        v.iter()
            .map(|x| if x.is_nan() { u64::MAX } else { x.to_bits() })
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&a), bits(&b), "@{f}{args:?}");
    assert_eq!(
        bits(&eval(m, f, args)),
        bits(&b),
        "@{f}{args:?} unoptimised"
    );
}

/// `@name(%u) = sin(... sin(u + k) ...)`, `n` sines: `n + 3` instructions.
fn sines(name: &str, n: usize) -> String {
    let mut s =
        format!("func @{name}(%u: f64) -> f64 {{\n  %k = const 0.25 : f64\n  %v0 = add %u, %k\n");
    for i in 1..=n {
        s += &format!("  %v{i} = sin %v{}\n", i - 1);
    }
    s += &format!("  ret %v{n}\n}}\n");
    s
}

#[test]
fn single_use_callee_is_inlined_whatever_its_size() {
    let src = format!(
        "func @f(%x: f64) -> f64 {{\n  %a = call @big(%x)\n  %b = mul %a, %x\n  ret %b\n}}\n{}",
        sines("big", 3 * SMALL_CALLEE)
    );
    let m = parsed(&src);
    let o = optimized(&m, true);
    assert_eq!(calls(&o, "f"), 0, "{}", jitad_ir::print_module(&o));
    // The definition stays: the pipeline does not know which functions are public.
    assert!(o.get("big").is_some());
    same_bits(&m, "f", &[0.3]);
}

#[test]
fn small_shared_callee_is_copied_into_every_caller() {
    // @sq: 2 instructions; @f calls it twice (multiple results through @two), @g once.
    let src = "func @sq(%u: f64) -> f64 {\n  %p = mul %u, %u\n  ret %p\n}\n\
               func @two(%u: f64, %v: f64) -> (f64, f64) {\n  %a = call @sq(%u)\n  \
               %b = call @sq(%v)\n  %c = add %a, %b\n  ret %c, %a\n}\n\
               func @f(%x: f64, %y: f64) -> (f64, f64) {\n  %s, %t = call @two(%x, %y)\n  \
               %r, %q = call @two(%s, %x)\n  %z = add %t, %q\n  ret %r, %z\n}\n\
               func @g(%x: f64) -> f64 {\n  %s = call @sq(%x)\n  ret %s\n}\n";
    let m = parsed(src);
    let o = optimized(&m, true);
    for f in ["f", "g"] {
        assert_eq!(calls(&o, f), 0, "@{f}:\n{}", jitad_ir::print_module(&o));
    }
    // Every call of @two was inlined, so nothing runs its body: it is left as it was.
    assert_eq!(calls(&o, "two"), 2);
    same_bits(&m, "f", &[1.5, -0.25]);
    same_bits(&m, "g", &[3.0]);
}

#[test]
fn large_shared_callee_is_kept_as_a_call() {
    let src = format!(
        "func @f(%x: f64) -> f64 {{\n  %a = call @big(%x)\n  %b = call @big(%a)\n  ret %b\n}}\n{}",
        sines("big", SMALL_CALLEE)
    );
    let m = parsed(&src);
    let o = optimized(&m, true);
    assert_eq!(calls(&o, "f"), 2);
    same_bits(&m, "f", &[0.3]);
    // One more reference than the size limit allows copies of: a callee of exactly
    // SMALL_CALLEE instructions is still copied.
    let src = format!(
        "func @f(%x: f64) -> f64 {{\n  %a = call @small(%x)\n  %b = call @small(%a)\n  ret %b\n}}\n{}",
        sines("small", SMALL_CALLEE - 3)
    );
    let m = parsed(&src);
    assert_eq!(m.get("small").unwrap().num_insts(), SMALL_CALLEE);
    assert_eq!(calls(&optimized(&m, true), "f"), 0);
}

#[test]
fn many_calls_grow_a_function_at_most_by_the_allowance() {
    // 3000 calls to one small shared callee: copies stop at max(size, GROWTH_FLOOR).
    let n = 3000;
    let mut src = String::from("func @f(%x: f64) -> f64 {\n  %s0 = add %x, %x\n");
    for i in 1..=n {
        src += &format!(
            "  %y{i} = call @h(%s{})\n  %s{i} = add %s{}, %y{i}\n",
            i - 1,
            i - 1
        );
    }
    src += &format!("  ret %s{n}\n}}\n");
    src += &sines("h", 20);
    let m = parsed(&src);
    let own = m.get("f").unwrap().num_insts();
    let o = optimized(&m, true);
    let left = calls(&o, "f");
    assert!(left > 0 && left < n, "{left} calls left");
    assert!(o.get("f").unwrap().num_insts() <= 2 * own.max(GROWTH_FLOOR));
    same_bits(&m, "f", &[0.1]);
}

#[test]
fn call_cycles_are_left_alone() {
    // Recursion does not verify; the pass must still neither hang nor change it.
    let src = "func @f(%x: f64) -> f64 {\n  %a = call @g(%x)\n  ret %a\n}\n\
               func @g(%x: f64) -> f64 {\n  %a = call @f(%x)\n  ret %a\n}\n\
               func @s(%x: f64) -> f64 {\n  %a = call @s(%x)\n  ret %a\n}\n\
               func @top(%x: f64) -> f64 {\n  %a = call @f(%x)\n  ret %a\n}\n";
    let mut m = parse_module(src).unwrap();
    assert!(verify_module(&m).is_err());
    let before = jitad_ir::print_module(&m);
    let stats = inline_module(&mut m);
    assert_eq!(stats.sites, 0);
    assert_eq!(jitad_ir::print_module(&m), before);
}

#[test]
fn callee_with_a_loop_is_copied_with_its_body() {
    // @pw(u, n) = u^n by a loop; called in a loop body and at top level.
    let src = "func @pw(%u: f64, %n: i64) -> f64 {\n  %one = const 1.0 : f64\n  \
               %r = loop %i in 0..%n (%a = %one : f64) {\n    %b = mul %a, %u\n    yield %b\n  }\n  \
               ret %r\n}\n\
               func @f(%x: f64, %n: i64) -> f64 {\n  \
               %s = loop %i in 0..%n (%acc = %x : f64) {\n    %p = call @pw(%acc, %n)\n    \
               %q = mul %p, %x\n    %t = tanh %q\n    yield %t\n  }\n  %e = call @pw(%s, %n)\n  ret %e\n}\n";
    let m = parsed(src);
    let o = optimized(&m, true);
    assert_eq!(calls(&o, "f"), 0, "{}", jitad_ir::print_module(&o));
    let args = [Val::F64(0.7), Val::I64(3)];
    let a = run_both(&optimized(&m, false), "f", &args);
    let b = run_both(&o, "f", &args);
    assert_eq!(a.to_bits(), b.to_bits());
    // Its gradient too (the loop becomes tapeloop/revloop over step functions).
    let mut g = m.clone();
    let name = grad(&mut g, "f", &[0]).unwrap();
    let ga = run_both(&optimized(&g, false), &name, &args);
    let gb = run_both(&optimized(&g, true), &name, &args);
    assert_eq!(ga.to_bits(), gb.to_bits());
}

/// Both engines on mixed arguments; the first result.
fn run_both(m: &Module, f: &str, args: &[Val]) -> f64 {
    let want = interp::eval(m, f, args).unwrap_or_else(|e| panic!("@{f}: {e}"));
    let c = compiled(m, f);
    let mut out = vec![Val::F64(0.0); c.results().len()];
    c.call(args, &mut out).unwrap();
    assert_eq!(want, out, "@{f}");
    want[0].as_f64().unwrap()
}

#[test]
fn revloop_step_functions_stay_functions() {
    let lorenz = include_str!("../../tests/ir/loops/lorenz.jir");
    let m = parsed(lorenz);
    // The primal: @rk4 and its four @lorenz calls all land in the loop body.
    let o = optimized(&m, true);
    assert_eq!(calls(&o, "loss"), 0, "{}", jitad_ir::print_module(&o));
    let mut g = m.clone();
    let name = grad(&mut g, "loss", &[0, 1, 2, 3, 4, 5]).unwrap();
    let og = optimized(&g, true);
    let f = og.get(&name).unwrap();
    let mut steps = Vec::new();
    for i in f.insts_in_order() {
        match &f.insts[i].op {
            Op::TapeLoop(t) => steps.push(t.fwd.clone()),
            Op::RevLoop(r) => steps.extend([r.fwd.clone(), r.bwd.clone()]),
            _ => {}
        }
    }
    assert_eq!(steps.len(), 3);
    for s in &steps {
        let step = og.get(s).unwrap_or_else(|| panic!("@{s} dropped"));
        // The backward step's call of the iteration's vjp is inlined.
        assert_eq!(calls(&og, &step.name), 0, "@{s}");
    }
    let x = [10.0, 28.0, 8.0 / 3.0, 1.0, 1.0, 1.0];
    let args: Vec<Val> = x
        .iter()
        .map(|&v| Val::F64(v))
        .chain([Val::I64(50)])
        .collect();
    let a = interp::eval(&optimized(&g, false), &name, &args).unwrap();
    let b = interp::eval(&og, &name, &args).unwrap();
    assert_eq!(a, b);
    run_both(&og, &name, &args);
}

#[test]
fn tensor_values_pass_through_unchanged() {
    // Multiple results, one a tensor; interpreter only (the JIT refuses tensor ops).
    let src = "func @scale(%v: f64[3], %c: f64) -> (f64[3], f64) {\n  %w = mul %v, %c\n  \
               %s = sum %w, axes [0]\n  ret %w, %s\n}\n\
               func @f(%v: f64[3], %c: f64) -> (f64[3], f64) {\n  %a, %s = call @scale(%v, %c)\n  \
               %b, %t = call @scale(%a, %s)\n  ret %b, %t\n}\n";
    let m = parsed(src);
    let o = optimized(&m, true);
    assert_eq!(calls(&o, "f"), 0, "{}", jitad_ir::print_module(&o));
    let v = Val::tensor(jitad_ir::tensor::Tensor::f64(&[3], vec![1.0, -2.0, 0.5]).unwrap());
    let args = [v, Val::F64(1.5)];
    assert_eq!(
        interp::eval(&optimized(&m, false), "f", &args).unwrap(),
        interp::eval(&o, "f", &args).unwrap()
    );
}

#[test]
fn a_long_chain_of_single_use_functions_becomes_one_body() {
    // @c0 → @c1 → ... → @c{n-1}: each called once, so all land in @c0, built once.
    let n = 5000;
    let mut src = String::new();
    for i in 0..n - 1 {
        src += &format!(
            "func @c{i}(%u: f64) -> f64 {{\n  %v = call @c{}(%u)\n  %w = sin %v\n  ret %w\n}}\n",
            i + 1
        );
    }
    src += &format!(
        "func @c{}(%u: f64) -> f64 {{\n  %w = sin %u\n  ret %w\n}}\n",
        n - 1
    );
    let m = parsed(&src);
    let o = optimized(&m, true);
    assert_eq!(calls(&o, "c0"), 0);
    assert_eq!(o.get("c0").unwrap().num_insts(), n + 1);
    let mut x = 0.5f64;
    for _ in 0..n {
        x = x.sin();
    }
    // (Past the call-depth limit before inlining; within it after.)
    assert!(close(eval(&o, "c0", &[0.5])[0], x, 1e-12));
}

fn gen(loops: bool) -> GenOptions {
    GenOptions {
        num_params: 2,
        num_insts: 24,
        loops,
        calls: true,
        all_types: false,
        smooth_only: false,
        tensors: false,
    }
}

fn numbers(seed: u64, n: usize) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Random programs with calls (and loops): inlining changes no bit of any result,
    /// in the interpreter or the JIT (`eval` compares the two), for the primal and for
    /// its gradient.
    #[test]
    fn inlining_preserves_results_bit_for_bit(seed in any::<u64>(), loops in any::<bool>()) {
        let m = random_module(seed, &gen(loops));
        verified(&m);
        let x = numbers(seed, 2);
        same_bits(&m, "main", &x);
        let main = m.get("main").unwrap();
        if main.sig.results.len() == 1 {
            let mut g = m.clone();
            let name = grad(&mut g, "main", &[0, 1]).unwrap();
            same_bits(&g, &name, &x);
        }
    }
}
