//! The clean-up passes, each alone, and the pipeline.

mod common;
use common::*;
use jitad_ir::{interp, parse_module, print_function, random_module, GenOptions, Module, Val};
use jitad_passes::{
    constfold::constfold, cse::cse, dce::dce, optimize, optimize_module, simplify::simplify,
    OptOptions,
};
use proptest::prelude::*;

fn m(src: &str) -> Module {
    parse_module(src).unwrap_or_else(|e| panic!("{e}\n{src}"))
}

fn body(module: &Module, f: &str) -> String {
    print_function(module.get(f).unwrap())
}

#[test]
fn dce_removes_dead_pure_code_but_keeps_guards_and_calls() {
    let mut module = m("func @h(%u: f64) -> f64 {
  ret %u
}

func @f(%x: f64) -> f64 {
  %a = sin %x
  %b = mul %a, %a
  %z = const 0.0 : f64
  %c = gt %x, %z
  guard %c
  %k = call @h(%x)
  %r = loop %i in 0..3 (%s = %x : f64) {
    %t = mul %s, %s
    yield %t
  }
  %q = loop %j in 0..3 (%s2 = %x : f64) {
    %g = gt %s2, %z
    guard %g
    yield %s2
  }
  %y = add %x, %x
  ret %y
}");
    let f = module.get_mut("f").unwrap();
    assert!(dce(f));
    verified(&module);
    let text = body(&module, "f");
    assert!(!text.contains("sin") && !text.contains("%b ="), "{text}");
    assert!(!text.contains("%r ="), "an unused pure loop goes: {text}");
    assert!(
        text.contains("guard %c") && text.contains("call @h"),
        "{text}"
    );
    assert!(
        text.contains("guard %g"),
        "a loop holding a guard stays: {text}"
    );
    assert!(
        !dce(module.get_mut("f").unwrap()),
        "second run changes nothing"
    );
    // With the module known, the call to the pure @h is removable.
    optimize_module(&mut module, &OptOptions::default());
    assert!(!body(&module, "f").contains("call"));
}

#[test]
fn cse_merges_duplicates_within_scope() {
    let mut module = m("func @f(%x: f64, %y: f64) -> (f64, f64, f64, f64) {
  %a = mul %x, %y
  %b = mul %y, %x
  %z = const 0.0 : f64
  %nz = const -0.0 : f64
  %c = add %a, %z
  %d = add %b, %nz
  %r = loop %i in 0..2 (%s = %x : f64) {
    %e = mul %x, %y
    %t = add %s, %e
    yield %t
  }
  %q = loop %j in 0..2 (%s2 = %x : f64) {
    %t2 = add %s2, %a
    yield %t2
  }
  ret %c, %d, %r, %q
}");
    let before = module.clone();
    assert!(cse(module.get_mut("f").unwrap()));
    dce(module.get_mut("f").unwrap());
    verified(&module);
    let text = body(&module, "f");
    assert!(!text.contains("%b ="), "commuted mul merged: {text}");
    assert!(
        !text.contains("%e ="),
        "inner duplicate of an outer value merged: {text}"
    );
    assert!(
        text.contains("%nz =") && text.contains("%d ="),
        "-0.0 and 0.0 stay apart: {text}"
    );
    let args = [Val::F64(1.5), Val::F64(-2.0)];
    assert_eq!(
        interp::eval(&before, "f", &args).unwrap(),
        interp::eval(&module, "f", &args).unwrap()
    );
}

#[test]
fn constfold_uses_the_interpreters_semantics() {
    let mut module = m("func @f(%x: f64) -> (f64, f64, f64, f64) {
  %a = const 0.5 : f64
  %b = sin %a
  %c = mul %b, %a
  %t = const true : bool
  %s = select %t, %x, %c
  %z = const 0.0 : f64
  %n = div %z, %z
  %m = min %n, %a
  ret %c, %s, %m, %b
}");
    let f = module.get_mut("f").unwrap();
    assert!(constfold(f));
    dce(f);
    verified(&module);
    let f = module.get("f").unwrap();
    // Only constants and ret remain; `select true` became %x.
    assert!(
        f.insts_in_order()
            .iter()
            .all(|&i| matches!(f.insts[i].op, jitad_ir::Op::Const(_) | jitad_ir::Op::Ret)),
        "{}",
        print_function(f)
    );
    let out = eval(&module, "f", &[7.0]);
    let b = jitad_ir::math::f64m::sin(0.5);
    assert_eq!(out[0].to_bits(), (b * 0.5).to_bits());
    assert_eq!(out[1], 7.0);
    assert!(out[2].is_nan(), "IEEE minimum propagates NaN");
}

/// A function using every simplification pattern, on two inputs.
const PATTERNS: &str = "func @f(%x: f64, %y: f64) -> (f64, f64, f64, f64, f64, f64, f64, f64, f64, f64, f64, f64, f64, f64, f64, f64) {
  %one = const 1.0 : f64
  %m1 = const -1.0 : f64
  %z = const 0.0 : f64
  %nz = const -0.0 : f64
  %a1 = mul %x, %one
  %a2 = mul %m1, %x
  %a3 = div %x, %m1
  %nx = neg %x
  %ny = neg %y
  %a4 = mul %nx, %ny
  %a5 = add %x, %ny
  %a6 = add %ny, %x
  %a7 = sub %x, %ny
  %a8 = add %x, %nz
  %a9 = sub %x, %z
  %a10 = neg %nx
  %b1 = fma %one, %x, %y
  %b2 = fma %x, %m1, %y
  %b3 = fma %x, %y, %nz
  %b4 = fma %nx, %ny, %y
  %c = lt %x, %y
  %b5 = select %c, %x, %x
  %b6 = powi %x, 2
  %p0 = powi %x, 0
  %p1 = powi %x, 1
  %b7 = add %p0, %p1
  %b8 = add %x, %z
  %b9 = mul %x, %z
  ret %a1, %a2, %a3, %a4, %a5, %a6, %a7, %a8, %a9, %a10, %b1, %b2, %b3, %b4, %b5, %b6
}";

const SPECIAL: [f64; 10] = [
    0.0,
    -0.0,
    1.0,
    -1.5,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NAN,
    f64::MIN_POSITIVE / 4.0,
    f64::MAX,
    3.0,
];

fn same(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

#[test]
fn simplify_is_exact_on_special_values() {
    let before = m(PATTERNS);
    let mut after = before.clone();
    let f = after.get_mut("f").unwrap();
    assert!(simplify(f, false));
    let st = optimize(f, &OptOptions::default());
    verified(&after);
    assert!(st.insts_after < st.insts_before);
    let text = body(&after, "f");
    assert!(!text.contains("%one") && !text.contains("%nx"), "{text}");
    for &x in &SPECIAL {
        for &y in &SPECIAL {
            let a = eval(&before, "f", &[x, y]);
            let b = eval(&after, "f", &[x, y]);
            assert!(same(&a, &b), "at ({x}, {y}): {a:?} vs {b:?}\n{text}");
        }
    }
}

#[test]
fn unsafe_algebra_only_with_fast_math() {
    let src = "func @f(%x: f64) -> (f64, f64, f64) {
  %z = const 0.0 : f64
  %a = mul %x, %z
  %b = add %x, %z
  %c = sub %x, %x
  ret %a, %b, %c
}";
    let mut safe = m(src);
    optimize(safe.get_mut("f").unwrap(), &OptOptions::default());
    assert_eq!(
        safe.get("f").unwrap().num_insts(),
        5,
        "{}",
        body(&safe, "f")
    );
    let inf = eval(&safe, "f", &[f64::INFINITY]);
    assert!(inf[0].is_nan() && inf[2].is_nan());
    assert_eq!(eval(&safe, "f", &[-0.0])[1].to_bits(), 0f64.to_bits());
    let mut fast = m(src);
    let opts = OptOptions {
        fast_math: true,
        ..OptOptions::default()
    };
    optimize(fast.get_mut("f").unwrap(), &opts);
    assert_eq!(
        fast.get("f").unwrap().num_insts(),
        2,
        "{}",
        body(&fast, "f")
    );
}

#[test]
fn pipeline_reaches_a_fixed_point() {
    for seed in 0..20 {
        let mut module = random_module(seed, &GenOptions::default());
        let st = optimize_module(&mut module, &OptOptions::default());
        assert!(st.fixed_point, "seed {seed}");
        verified(&module);
        let text = jitad_ir::print_module(&module);
        let st2 = optimize_module(&mut module, &OptOptions::default());
        assert_eq!(
            st2.rounds, 1,
            "seed {seed}: a second run finds nothing to do"
        );
        assert_eq!(jitad_ir::print_module(&module), text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Any random program (every op, all types) computes bit-identical results after
    /// the IEEE-safe pipeline, at special values too.
    #[test]
    fn optimisation_preserves_results(seed in any::<u64>(), xs in proptest::collection::vec(0usize..SPECIAL.len() + 3, 2)) {
        let opts = GenOptions { all_types: false, ..GenOptions::default() };
        let before = random_module(seed, &opts);
        let mut after = before.clone();
        optimize_module(&mut after, &OptOptions::default());
        verified(&after);
        let args: Vec<f64> = xs.iter().map(|&i| SPECIAL.get(i).copied().unwrap_or(0.25 * i as f64 - 2.0)).collect();
        let a = interp::eval_f64(&before, "main", &args);
        let b = interp::eval_f64(&after, "main", &args);
        match (a, b) {
            (Ok(a), Ok(b)) => prop_assert!(same(&a, &b), "{a:?} vs {b:?}"),
            (a, b) => prop_assert_eq!(a.is_err(), b.is_err()),
        }
    }
}
