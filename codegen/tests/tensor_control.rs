//! Tensors through calls and loops, compiled: each program runs in the JIT
//! (`Compiled::call`) and in the interpreter (`jitad_ir::interp`) on the same inputs,
//! and the results must agree bit for bit (any NaN equals any NaN).
//!
//! Calls pass tensors as buffer addresses; a loop touching tensors is outlined and
//! carries the addresses of two alternating buffers (see `jitad_codegen`'s docs). The
//! programs cover the cases where that could go wrong: a callee returning its
//! parameter or one value twice, callees called twice or nested, zero/one/two/many
//! trips and dynamic bounds, several carried tensors of every element type beside
//! scalars, captured tensors, nested loops, and stencils.

use jitad_codegen::{compile_module, CompileOptions, Compiled};
use jitad_ir::tensor::Tensor;
use jitad_ir::{eval, parse_module, Module, Val};
use std::sync::Arc;

mod common;
use common::{random_val, same, Rng};

fn compile(m: &Module, entry: &str) -> Compiled {
    jitad_ir::verify_module(m).unwrap_or_else(|e| panic!("{e}"));
    compile_module(
        m,
        entry,
        &CompileOptions {
            verify: true,
            ..CompileOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("@{entry}: {e}"))
}

/// Runs `c` and the interpreter on `args`; demands equal bits; returns the results.
fn check(m: &Module, c: &Compiled, args: &[Val]) -> Vec<Val> {
    let entry = c.name();
    let want = eval(m, entry, args).unwrap_or_else(|e| panic!("@{entry}: {e}"));
    let mut got = vec![Val::Bool(false); want.len()];
    c.call(args, &mut got)
        .unwrap_or_else(|e| panic!("@{entry}: {e}"));
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(same(g, w), "@{entry} result {k}: jit {g:?}\ninterp {w:?}");
    }
    want
}

/// Compiles `entry`; runs it on `rounds` random inputs (with `fix` applied to them).
fn agree_with(m: &Module, entry: &str, seed: u64, rounds: usize, fix: impl Fn(&mut [Val])) {
    let c = compile(m, entry);
    let f = m.get(entry).unwrap();
    let mut rng = Rng(seed | 1);
    for _ in 0..rounds {
        let mut args: Vec<Val> = f
            .sig
            .params
            .iter()
            .map(|&t| random_val(t, &mut rng, 4))
            .collect();
        fix(&mut args);
        check(m, &c, &args);
    }
}

fn agree(m: &Module, entry: &str, seed: u64) {
    agree_with(m, entry, seed, 3, |_| {});
}

const CALLS: &str = r#"
func @scale(%a: f64[3,4], %s: f64) -> f64[3,4] {
  %y = mul %a, %s
  ret %y
}
func @ident(%a: f64[3,4]) -> f64[3,4] {
  ret %a
}
func @twice_same(%a: f32[5]) -> (f32[5], f32[5]) {
  %y = add %a, %a
  ret %y, %y
}
func @ints(%a: i64[2,2], %b: bool[2,2]) -> (i64[2,2], bool[2,2], i64) {
  %n = neg %a
  %s = select %b, %a, %n
  %c = lt %s, %a
  %t = sum %s, axes [0, 1]
  ret %s, %c, %t
}
func @layer(%a: f64[3,4], %w: f64[4,2]) -> f64[3,2] {
  %h = matmul %a, %w
  %t = tanh %h
  %b = add %t, %h
  %c = call @square_minus(%b)
  ret %c
}
func @square_minus(%b: f64[3,2]) -> f64[3,2] {
  %e = mul %b, %b
  %f = sub %e, %b
  ret %f
}
func @calls(%a: f64[3,4], %s: f64, %f: f32[5], %i: i64[2,2], %m: bool[2,2], %w: f64[4,2]) -> (f64[3,4], f64[3,4], f64[3,4], f32[5], f32[5], i64[2,2], bool[2,2], i64, f64[3,2], f64[3,4], f64) {
  %x = call @scale(%a, %s)
  %y = call @ident(%x)
  %z = call @scale(%y, %s)
  %p, %q = call @twice_same(%f)
  %u, %v, %k = call @ints(%i, %m)
  %n = call @layer(%z, %w)
  %r = sum %n, axes [0, 1]
  ret %x, %y, %z, %p, %q, %u, %v, %k, %n, %y, %r
}
func @pass(%a: f64[3,4]) -> (f64[3,4], f64[3,4]) {
  %r = call @ident(%a)
  %q = call @ident(%r)
  ret %r, %q
}
func @fused_operand(%a: f64[3,4], %b: f64[3,4]) -> f64[3,4] {
  %c = add %a, %b
  %d = exp %c
  %e = call @ident(%d)
  %f = mul %e, %c
  ret %f
}
func @unused(%a: f64[3,4], %f: f32[5]) -> f64[3,4] {
  %p, %q = call @twice_same(%f)
  %r = call @ident(%a)
  ret %a
}
"#;

#[test]
fn calls_take_and_return_tensors() {
    let m = parse_module(CALLS).unwrap();
    for entry in [
        "calls",
        "pass",
        "fused_operand",
        "unused",
        "layer",
        "ints",
        "twice_same",
    ] {
        for seed in 0..4 {
            agree(&m, entry, 17 + seed);
        }
    }
}

const LOOPS: &str = r#"
func @trips(%x: f64[4], %m: i64, %n: i64) -> f64[4] {
  %r = loop %j in %m..%n (%c = %x : f64[4]) {
    %jf = cast %j : f64
    %d = mul %c, %jf
    %e = add %d, %x
    yield %e
  }
  ret %r
}
func @twice(%x: f64[4], %n: i64) -> (f64[4], f64[4]) {
  %r = loop %j in 0..%n (%c = %x : f64[4]) {
    %h = const 0.5 : f64
    %d = mul %c, %h
    yield %d
  }
  ret %r, %r
}
func @swap(%a: f64[3], %b: f64[3], %n: i64) -> (f64[3], f64[3]) {
  %r, %s = loop %j in 0..%n (%x = %a : f64[3], %y = %b : f64[3]) {
    yield %y, %x
  }
  ret %r, %s
}
func @same_init(%a: f64[3], %n: i64) -> (f64[3], f64[3]) {
  %r, %s = loop %j in 0..%n (%x = %a : f64[3], %y = %a : f64[3]) {
    %z = add %x, %y
    yield %z, %x
  }
  ret %r, %s
}
func @multi(%a: f64[3], %b: f32[2,2], %s: f64, %k: i64[3], %n: i64) -> (f64[3], f32[2,2], f64, i64[3], bool[3], i64) {
  %c0 = lt %a, %s
  %one = const 1 : i64
  %r1, %r2, %r3, %r4, %r5, %r6 = loop %j in 0..%n (%x = %a : f64[3], %y = %b : f32[2,2], %t = %s : f64, %q = %k : i64[3], %c = %c0 : bool[3], %i = %one : i64) {
    %x2 = mul %x, %t
    %x3 = add %x2, %a
    %y2 = mul %y, %y
    %t2 = sum %x3, axes [0]
    %q2 = add %q, %k
    %c2 = lt %x3, %a
    %x4 = select %c, %x3, %a
    %i2 = add %i, %j
    yield %x4, %y2, %t2, %q2, %c2, %i2
  }
  ret %r1, %r2, %r3, %r4, %r5, %r6
}
func @energy(%x: f64[8], %n: i64) -> f64 {
  %z = const 0.0 : f64
  %e = loop %j in 0..%n (%acc = %z : f64) {
    %jf = cast %j : f64
    %y = mul %x, %jf
    %s = sin %y
    %t = sum %s, axes [0]
    %a2 = add %acc, %t
    yield %a2
  }
  ret %e
}
func @nested(%a: f64[2,3], %w: f64[3,3], %n: i64) -> (f64[2,3], f64) {
  %z = const 0.0 : f64
  %r, %acc = loop %i in 0..%n (%x = %a : f64[2,3], %s = %z : f64) {
    %y = loop %j in 0..3 (%u = %x : f64[2,3]) {
      %m = matmul %u, %w
      %t = tanh %m
      %v = add %t, %a
      yield %v
    }
    %s2 = sum %y, axes [0, 1]
    %s3 = add %s, %s2
    yield %y, %s3
  }
  ret %r, %acc
}
func @rows(%m: f64[4,3]) -> f64[4,3] {
  %out = fill 0.0 : f64[4,3]
  %r = loop %j in 0..4 (%acc = %out : f64[4,3]) {
    %row = extract %m [%j]
    %two = const 2.0 : f64
    %dbl = mul %row, %two
    %acc2 = insert %dbl into %acc [%j]
    yield %acc2
  }
  ret %r
}
func @heat_pad(%u0: f64[16], %steps: i64, %k: f64) -> f64[16] {
  %r = loop %t in 0..%steps (%u = %u0 : f64[16]) {
    %l = slice %u [0:14]
    %c = slice %u [1:15]
    %h = slice %u [2:16]
    %s = add %l, %h
    %two = const 2.0 : f64
    %c2 = mul %c, %two
    %d = sub %s, %c2
    %kd = mul %d, %k
    %n = add %c, %kd
    %zero = const 0.0 : f64
    %p = pad %n, %zero [1:1]
    yield %p
  }
  ret %r
}
func @heat_concat(%u0: f64[16], %steps: i64, %k: f64) -> (f64[16], f64) {
  %r = loop %t in 0..%steps (%u = %u0 : f64[16]) {
    %l = slice %u [0:14]
    %c = slice %u [1:15]
    %h = slice %u [2:16]
    %s = add %l, %h
    %two = const 2.0 : f64
    %c2 = mul %c, %two
    %d = sub %s, %c2
    %kd = mul %d, %k
    %n = add %c, %kd
    %left = slice %u [0:1]
    %right = slice %u [15:16]
    %p = concat %left, %n, %right, axis 0
    yield %p
  }
  %e = mul %r, %r
  %en = sum %e, axes [0]
  ret %r, %en
}
func @fused_init(%a: f64[5], %b: f64[5], %n: i64) -> (f64[5], f64[5]) {
  %c = add %a, %b
  %d = mul %c, %c
  %r = loop %j in 0..%n (%x = %d : f64[5]) {
    %y = sub %x, %c
    yield %y
  }
  %e = add %d, %r
  ret %r, %e
}
"#;

/// Pins the `i64` arguments named by position to `v`.
fn set_i64(args: &mut [Val], at: &[usize], v: i64) {
    for &k in at {
        args[k] = Val::I64(v);
    }
}

#[test]
fn loops_carry_tensors_for_any_trip_count() {
    let m = parse_module(LOOPS).unwrap();
    let c = compile(&m, "trips");
    let x = random_val(m.get("trips").unwrap().sig.params[0], &mut Rng(5), 4);
    // 0, 1, 2, many trips; empty and reversed ranges; negative starts.
    for (lo, hi) in [
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (0, 100),
        (3, 1),
        (-2, 2),
        (5, 6),
    ] {
        check(&m, &c, &[x.clone(), Val::I64(lo), Val::I64(hi)]);
    }
    for entry in ["twice", "swap", "same_init", "fused_init"] {
        for n in [0, 1, 2, 3, 7] {
            agree_with(&m, entry, 3 + n as u64, 2, |a| {
                let last = a.len() - 1;
                set_i64(a, &[last], n)
            });
        }
    }
}

#[test]
fn loops_carry_several_tensors_and_scalars() {
    let m = parse_module(LOOPS).unwrap();
    for n in [0, 1, 2, 5] {
        agree_with(&m, "multi", 11 + n as u64, 3, |a| set_i64(a, &[4], n));
    }
    // The loop carries its four tensors in buffers of its own (`dump --emit fusion`).
    let c = compile_module(
        &m,
        "multi",
        &CompileOptions {
            emit_text: true,
            ..CompileOptions::default()
        },
    )
    .unwrap();
    let text = c.fusion_text().unwrap();
    assert!(
        text.contains("loop (carries 4 tensor(s), two buffers each)"),
        "{text}"
    );
}

#[test]
fn loop_bodies_compute_on_tensors_and_capture_them() {
    let m = parse_module(LOOPS).unwrap();
    for n in [0, 1, 4] {
        agree_with(&m, "energy", 23 + n as u64, 2, |a| set_i64(a, &[1], n));
        agree_with(&m, "nested", 29 + n as u64, 2, |a| set_i64(a, &[2], n));
    }
    agree(&m, "rows", 31);
}

#[test]
fn stencil_time_steppers_agree() {
    let m = parse_module(LOOPS).unwrap();
    for entry in ["heat_pad", "heat_concat"] {
        for steps in [0, 1, 2, 50] {
            agree_with(&m, entry, 37 + steps as u64, 2, |a| {
                set_i64(a, &[1], steps);
                a[2] = Val::F64(0.25);
            });
        }
    }
}

/// Calls inside loops (and loops inside callees) with tensors: the outlined body calls
/// a tensor function, itself looping.
#[test]
fn calls_and_loops_nest() {
    let src = format!(
        "{CALLS}\n{}",
        r#"
func @driver(%a: f64[3,4], %w: f64[4,2], %s: f64, %n: i64) -> (f64[3,4], f64) {
  %z = const 0.0 : f64
  %r, %t = loop %j in 0..%n (%x = %a : f64[3,4], %acc = %z : f64) {
    %y = call @scale(%x, %s)
    %h = call @layer(%y, %w)
    %e = call @inner_loop(%y, %n)
    %q = sum %h, axes [0, 1]
    %acc2 = add %acc, %q
    yield %e, %acc2
  }
  ret %r, %t
}
func @inner_loop(%a: f64[3,4], %n: i64) -> f64[3,4] {
  %r = loop %j in 0..%n (%x = %a : f64[3,4]) {
    %y = call @ident(%x)
    %h = const 0.75 : f64
    %z = mul %y, %h
    yield %z
  }
  ret %r
}
"#
    );
    let m = parse_module(&src).unwrap();
    for n in [0, 1, 3] {
        agree_with(&m, "driver", 41 + n as u64, 2, |a| {
            set_i64(a, &[3], n);
            a[2] = Val::F64(0.9);
        });
    }
}

/// A guard inside a loop body that computes on tensors (outlined) still names the
/// original function and ordinal.
#[test]
fn guards_in_tensor_loops_name_the_original_function() {
    let src = r#"
func @g(%x: f64[3], %n: i64, %lim: f64) -> f64[3] {
  %r = loop %j in 0..%n (%c = %x : f64[3]) {
    %s = sum %c, axes [0]
    %ok = lt %s, %lim
    guard %ok
    %two = const 2.0 : f64
    %d = mul %c, %two
    yield %d
  }
  ret %r
}
"#;
    let m = parse_module(src).unwrap();
    let c = compile(&m, "g");
    let x = Val::Tensor(Arc::new(Tensor::f64(&[3], vec![1.0, 1.0, 1.0]).unwrap()));
    let mut out = vec![Val::Bool(false)];
    c.call(&[x.clone(), Val::I64(2), Val::F64(100.0)], &mut out)
        .unwrap();
    check(&m, &c, &[x.clone(), Val::I64(2), Val::F64(100.0)]);
    let e = c
        .call(&[x, Val::I64(10), Val::F64(100.0)], &mut out)
        .unwrap_err();
    match e {
        jitad_codegen::CallError::GuardFailed { func, guard } => {
            assert_eq!((func.as_str(), guard), ("g", 0));
        }
        other => panic!("{other}"),
    }
}

/// Only loops touching tensors are outlined: a scalar loop (the Lorenz integrator's
/// shape) stays one machine function, a tensor loop's body becomes a second one.
#[test]
fn only_loops_touching_tensors_are_outlined() {
    let src = r#"
func @scalar(%x: f64, %n: i64) -> f64 {
  %r = loop %j in 0..%n (%c = %x : f64) {
    %d = mul %c, %c
    %e = sub %d, %x
    yield %e
  }
  ret %r
}
func @tensor(%x: f64[3], %n: i64) -> f64[3] {
  %r = loop %j in 0..%n (%c = %x : f64[3]) {
    %d = mul %c, %c
    %e = sub %d, %x
    yield %e
  }
  ret %r
}
"#;
    let m = parse_module(src).unwrap();
    assert_eq!(compile(&m, "scalar").stats().clif_functions, 1);
    assert_eq!(compile(&m, "tensor").stats().clif_functions, 2);
    agree(&m, "tensor", 53);
}
