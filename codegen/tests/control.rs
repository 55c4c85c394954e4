//! Loops, calls, guards, chunking, buffer checks, threads and memory.

use jitad_codegen::{compile_module, CallError, CompileError, CompileOptions, Compiled};
use jitad_ir::{eval, parse_module, Module, Val};

fn opts() -> CompileOptions {
    CompileOptions {
        verify: true,
        ..CompileOptions::default()
    }
}

fn compile(src: &str, entry: &str) -> (Module, Compiled) {
    let m = parse_module(src).unwrap();
    jitad_ir::verify_module(&m).unwrap();
    let c = compile_module(&m, entry, &opts()).unwrap();
    (m, c)
}

fn call1(c: &Compiled, args: &[Val]) -> Vec<Val> {
    let mut out = vec![Val::Bool(false); c.results().len()];
    c.call(args, &mut out).unwrap();
    out
}

#[test]
fn quickstart_value() {
    let (_, f) = compile(
        "func @f(%x: f64, %y: f64) -> f64 {\n  %a = add %x, %y\n  %b = sub %x, %y\n  %c = mul %a, %b\n  ret %c\n}\n",
        "f",
    );
    let mut out = [0.0];
    f.call_f64(&[3.0, 2.0], &mut out).unwrap();
    assert_eq!(out, [5.0]);
    assert_eq!(f.workspace_bytes(), 0);
}

const SUMS: &str = r#"
; sum of i for i in s..n, and sum of i*i, with dynamic bounds
func @sums(%s: i64, %n: i64) -> (i64, i64) {
  %z = const 0 : i64
  %a, %b = loop %i in %s..%n (%p = %z : i64, %q = %z : i64) {
    %p2 = add %p, %i
    %ii = mul %i, %i
    %q2 = add %q, %ii
    yield %p2, %q2
  }
  ret %a, %b
}
"#;

#[test]
fn loop_closed_forms_and_zero_trips() {
    let (m, f) = compile(SUMS, "sums");
    for (s, n) in [
        (0i64, 10i64),
        (0, 0),
        (5, 3),
        (-4, 4),
        (0, 1),
        (3, 1000),
        (7, 7),
    ] {
        let got = call1(&f, &[Val::I64(s), Val::I64(n)]);
        let (mut p, mut q) = (0i64, 0i64);
        for i in s..n {
            p += i;
            q += i * i;
        }
        assert_eq!(got, vec![Val::I64(p), Val::I64(q)], "{s}..{n}");
        assert_eq!(got, eval(&m, "sums", &[Val::I64(s), Val::I64(n)]).unwrap());
    }
    // Closed form: sum_{i<n} i = n(n-1)/2.
    let got = call1(&f, &[Val::I64(0), Val::I64(100_000)]);
    assert_eq!(got[0], Val::I64(100_000 * 99_999 / 2));
}

#[test]
fn nested_loops_and_outer_values() {
    // x * n * m by nested counting; the inner body reads %x from the function and %i
    // from the outer loop.
    let src = r#"
func @g(%x: f64, %n: i64) -> (f64, i64) {
  %z = const 0.0 : f64
  %k = const 0 : i64
  %r, %c = loop %i in 0..%n (%a = %z : f64, %t = %k : i64) {
    %b, %u = loop %j in %i..%n (%a2 = %a : f64, %t2 = %t : i64) {
      %a3 = add %a2, %x
      %one = const 1 : i64
      %t3 = add %t2, %one
      yield %a3, %t3
    }
    yield %b, %u
  }
  ret %r, %c
}
"#;
    let (m, f) = compile(src, "g");
    for n in [0i64, 1, 2, 5, 17] {
        let args = [Val::F64(0.25), Val::I64(n)];
        let got = call1(&f, &args);
        let tri = n * (n + 1) / 2;
        assert_eq!(got, vec![Val::F64(0.25 * tri as f64), Val::I64(tri)]);
        assert_eq!(got, eval(&m, "g", &args).unwrap());
    }
}

#[test]
fn calls_with_multiple_results() {
    let src = r#"
func @main(%x: f64, %y: f64) -> (f64, f64, f64) {
  %s, %d = call @sd(%x, %y)
  %p = mul %s, %d
  %q, %w = call @sd(%p, %x)
  ret %p, %q, %w
}
func @sd(%a: f64, %b: f64) -> (f64, f64) {
  %s = add %a, %b
  %d = sub %a, %b
  ret %s, %d
}
"#;
    let (m, f) = compile(src, "main");
    let mut out = [0.0; 3];
    f.call_f64(&[3.0, 2.0], &mut out).unwrap();
    assert_eq!(out, [5.0, 8.0, 2.0]);
    let want: Vec<f64> = jitad_ir::eval_f64(&m, "main", &[3.0, 2.0]).unwrap();
    assert_eq!(out.to_vec(), want);
}

#[test]
fn calls_inside_loops_and_mixed_types() {
    let src = r#"
func @h(%v: f32, %b: bool) -> (f32, i64) {
  %one = const 1.0 : f32
  %w = add %v, %one
  %z = const 0.0 : f32
  %s = select %b, %w, %z
  %k = cast %b : i64
  ret %s, %k
}
func @main(%n: i64, %b: bool) -> (f32, i64) {
  %z = const 0.0 : f32
  %k0 = const 0 : i64
  %r, %c = loop %i in 0..%n (%a = %z : f32, %t = %k0 : i64) {
    %a2, %k = call @h(%a, %b)
    %t2 = add %t, %k
    yield %a2, %t2
  }
  ret %r, %c
}
"#;
    let (m, f) = compile(src, "main");
    for (n, b) in [(0i64, true), (3, true), (3, false), (10, true)] {
        let args = [Val::I64(n), Val::Bool(b)];
        let got = call1(&f, &args);
        assert_eq!(got, eval(&m, "main", &args).unwrap());
    }
    assert_eq!(
        call1(&f, &[Val::I64(4), Val::Bool(true)]),
        vec![Val::F32(4.0), Val::I64(4)]
    );
}

const GUARDED: &str = r#"
func @g(%x: f64, %y: f64) -> f64 {
  %c = gt %x, %y
  guard %c
  %d = sub %x, %y
  %h = call @h(%d)
  ret %h
}
func @h(%d: f64) -> f64 {
  %z = const 10.0 : f64
  %c = lt %d, %z
  guard %c
  %s = sqrt %d
  ret %s
}
"#;

#[test]
fn guard_failure_says_retrace() {
    let (_, f) = compile(GUARDED, "g");
    let mut out = [0.0];
    f.call_f64(&[6.0, 2.0], &mut out).unwrap();
    assert_eq!(out, [2.0]);
    let e = f.call_f64(&[1.0, 2.0], &mut out).unwrap_err();
    assert_eq!(
        e,
        CallError::GuardFailed {
            func: "g".into(),
            guard: 0
        }
    );
    assert!(e.to_string().contains("re-trace"), "{e}");
    // A guard failing in a callee is reported with the callee's name.
    let e = f.call_f64(&[100.0, 2.0], &mut out).unwrap_err();
    assert!(matches!(e, CallError::GuardFailed { ref func, guard: 0 } if func == "h"));
    // The handle still works afterwards.
    f.call_f64(&[11.0, 2.0], &mut out).unwrap();
    assert_eq!(out, [3.0]);
}

#[test]
fn wrong_buffers_are_rejected_before_the_call() {
    let (_, f) = compile(GUARDED, "g");
    let mut out1 = [0.0];
    let mut out2 = [0.0; 2];
    assert!(matches!(
        f.call_f64(&[1.0], &mut out1),
        Err(CallError::ArgCount {
            expected: 2,
            got: 1,
            ..
        })
    ));
    assert!(matches!(
        f.call_f64(&[1.0, 2.0, 3.0], &mut out1),
        Err(CallError::ArgCount { .. })
    ));
    assert!(matches!(
        f.call_f64(&[6.0, 2.0], &mut out2),
        Err(CallError::ResultCount {
            expected: 1,
            got: 2,
            ..
        })
    ));
    assert!(matches!(
        f.call_f64(&[6.0, 2.0], &mut []),
        Err(CallError::ResultCount { .. })
    ));
    let mut vout = [Val::F64(0.0)];
    assert!(matches!(
        f.call(&[Val::F64(1.0), Val::I64(2)], &mut vout),
        Err(CallError::ArgType { index: 1, .. })
    ));
    let (_, s) = compile(SUMS, "sums");
    assert!(matches!(
        s.call_f64(&[1.0, 2.0], &mut [0.0, 0.0]),
        Err(CallError::NotAllF64 { .. })
    ));
}

#[test]
fn compile_errors() {
    let m = parse_module(GUARDED).unwrap();
    assert!(matches!(
        compile_module(&m, "nope", &opts()),
        Err(CompileError::UnknownFunction(_))
    ));
    let rec = parse_module(
        "func @a(%x: f64) -> f64 {\n  %y = call @b(%x)\n  ret %y\n}\nfunc @b(%x: f64) -> f64 {\n  %y = call @a(%x)\n  ret %y\n}\n",
    )
    .unwrap();
    assert!(matches!(
        compile_module(&rec, "a", &opts()),
        Err(CompileError::Recursion(_))
    ));
}

#[test]
fn send_sync_and_concurrent_calls() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Compiled>();
    // A chunked function needs workspace, so concurrent calls exercise the pool.
    let m = long_chain(3000);
    let small = CompileOptions {
        chunk_size: 200,
        chunk_threshold: 300,
        ..opts()
    };
    let f = compile_module(&m, "long", &small).unwrap();
    assert!(f.stats().chunks > 1 && f.workspace_bytes() > 0);
    let f = std::sync::Arc::new(f);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let f = std::sync::Arc::clone(&f);
            let m = m.clone();
            std::thread::spawn(move || {
                let mut out = [0.0; 2];
                for k in 0..200 {
                    let x = [0.1 * t as f64 + 0.001 * k as f64, 0.7];
                    f.call_f64(&x, &mut out).unwrap();
                    if k % 50 == 0 {
                        let want = jitad_ir::eval_f64(&m, "long", &x).unwrap();
                        assert_eq!(
                            out.map(f64::to_bits).to_vec(),
                            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                        );
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// A reverse-mode-shaped chain: a forward sweep of `n/2` values, then a backward sweep
/// that reads them in reverse order (so up to n/2 values cross chunk boundaries).
fn long_chain(n: usize) -> Module {
    use jitad_ir::{FunctionBuilder, Op, Type};
    let mut b = FunctionBuilder::new("long");
    let x = b.param(Type::F64);
    let y = b.param(Type::F64);
    let half = n / 2;
    let mut fwd = vec![x];
    let mut v = x;
    for k in 0..half {
        v = match k % 4 {
            0 => b.ins1(Op::Mul, &[v, y]).unwrap(),
            1 => b.ins1(Op::Sin, &[v]).unwrap(),
            2 => b.ins1(Op::Add, &[v, x]).unwrap(),
            _ => b.ins1(Op::Sub, &[v, y]).unwrap(),
        };
        fwd.push(v);
    }
    let mut a = b.const_f64(1.0);
    for (k, &p) in fwd.iter().rev().enumerate() {
        a = if k % 2 == 0 {
            b.ins1(Op::Mul, &[a, p]).unwrap()
        } else {
            b.ins1(Op::Add, &[a, p]).unwrap()
        };
        a = b.ins1(Op::Tanh, &[a]).unwrap();
    }
    b.ret(&[v, a]).unwrap();
    let mut m = Module::new();
    m.insert(b.finish().unwrap());
    m
}

#[test]
fn chunked_equals_unchunked_and_interpreter() {
    let m = long_chain(2000);
    let one = CompileOptions {
        chunk_threshold: usize::MAX,
        ..opts()
    };
    let whole = compile_module(&m, "long", &one).unwrap();
    assert_eq!(whole.stats().chunks, 0);
    for size in [1, 7, 100, 700] {
        let o = CompileOptions {
            chunk_size: size,
            chunk_threshold: size,
            ..opts()
        };
        let c = compile_module(&m, "long", &o).unwrap();
        assert!(c.stats().chunks > 1, "{size}");
        for x in [[0.3, 0.9], [-1.5, 0.2], [f64::NAN, 1.0]] {
            let (mut a, mut b) = ([0.0; 2], [0.0; 2]);
            whole.call_f64(&x, &mut a).unwrap();
            c.call_f64(&x, &mut b).unwrap();
            let want = jitad_ir::eval_f64(&m, "long", &x).unwrap();
            assert_eq!(a.map(f64::to_bits), b.map(f64::to_bits));
            assert_eq!(
                a.map(f64::to_bits).to_vec(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn chunked_functions_with_loops_calls_and_guards() {
    // Straight-line code around a loop, a call and a guard, split into tiny chunks so
    // loop results, call results and parameters all cross chunk boundaries.
    let src = r#"
func @main(%x: f64, %n: i64) -> (f64, f64, f64, f64) {
  %a = mul %x, %x
  %b = add %a, %x
  %c = sin %b
  %r, %s = loop %i in 0..%n (%p = %a : f64, %q = %c : f64) {
    %p2 = add %p, %b
    %q2 = mul %q, %x
    yield %p2, %q2
  }
  %d = add %r, %s
  %e = mul %d, %a
  %z = const 1000.0 : f64
  %ok = lt %e, %z
  guard %ok
  %u, %v = call @sd(%e, %b)
  %w = add %u, %c
  %t = mul %v, %r
  ret %w, %t, %x, %w
}
func @sd(%a: f64, %b: f64) -> (f64, f64) {
  %s = add %a, %b
  %d = sub %a, %b
  %m = mul %s, %d
  %q = div %m, %a
  ret %m, %q
}
"#;
    let m = parse_module(src).unwrap();
    jitad_ir::verify_module(&m).unwrap();
    for size in [1, 2, 3, 5] {
        let o = CompileOptions {
            chunk_size: size,
            chunk_threshold: 1,
            ..opts()
        };
        let f = compile_module(&m, "main", &o).unwrap();
        assert!(f.workspace_bytes() > 0);
        for (x, n) in [(0.5, 3), (1.25, 0), (-0.75, 7)] {
            let args = [Val::F64(x), Val::I64(n)];
            assert_eq!(
                call1(&f, &args),
                eval(&m, "main", &args).unwrap(),
                "{size} {x} {n}"
            );
        }
        let e = f
            .call(
                &[Val::F64(30.0), Val::I64(3)],
                &mut [const { Val::F64(0.0) }; 4],
            )
            .unwrap_err();
        assert!(matches!(e, CallError::GuardFailed { .. }), "{e}");
    }
}

#[test]
fn calls_with_large_frames_use_the_workspace() {
    use jitad_ir::{FunctionBuilder, Op, Type};
    // @wide takes 100 values and returns their 100 prefix sums: 1600 bytes of frame.
    let mut b = FunctionBuilder::new("wide");
    let ps: Vec<_> = (0..100).map(|_| b.param(Type::F64)).collect();
    let mut acc = ps[0];
    let mut outs = vec![acc];
    for &p in &ps[1..] {
        acc = b.ins1(Op::Add, &[acc, p]).unwrap();
        outs.push(acc);
    }
    b.ret(&outs).unwrap();
    let wide = b.finish().unwrap();
    let mut b = FunctionBuilder::new("main");
    b.declare("wide", wide.sig.clone());
    let x = b.param(Type::F64);
    let args: Vec<_> = (0..100)
        .map(|k| {
            let c = b.const_f64(k as f64);
            b.ins1(Op::Mul, &[x, c]).unwrap()
        })
        .collect();
    let r = b.call("wide", &args).unwrap();
    let r2 = b.call("wide", &r).unwrap();
    b.ret(&[r[99], r2[99]]).unwrap();
    let mut m = Module::new();
    m.insert(wide);
    m.insert(b.finish().unwrap());
    jitad_ir::verify_module(&m).unwrap();
    let f = compile_module(&m, "main", &opts()).unwrap();
    assert!(f.workspace_bytes() >= 1600);
    let mut out = [0.0; 2];
    f.call_f64(&[2.0], &mut out).unwrap();
    let want = jitad_ir::eval_f64(&m, "main", &[2.0]).unwrap();
    assert_eq!(out.to_vec(), want);
    assert_eq!(out[0], 2.0 * 4950.0);
}

#[test]
fn loops_carrying_tensors_compile_and_agree_with_the_interpreter() {
    let src = "func @f(%x: f64) -> f64 {\n  %b = broadcast %x : f64[3]\n  %r = loop %j in 0..2 (%c = %b : f64[3]) {\n    %d = add %c, %c\n    yield %d\n  }\n  %s = sum %r, axes [0]\n  ret %s\n}\n";
    let (m, c) = compile(src, "f");
    let want = eval(&m, "f", &[Val::F64(1.5)]).unwrap();
    assert_eq!(want, vec![Val::F64(18.0)]);
    assert_eq!(call1(&c, &[Val::F64(1.5)]), want);
}

#[test]
fn a_malformed_instruction_deep_in_a_long_body_is_rejected() {
    // Long bodies are checked in parts on several threads: an error in the last part
    // is still found, and one in the first part is the one reported.
    let mut m = long_chain(240_000);
    let f = &mut m.funcs[0];
    let muls: Vec<_> = f
        .insts
        .iter()
        .filter(|(_, d)| d.op == jitad_ir::Op::Mul)
        .map(|(i, _)| i)
        .collect();
    let (first, last) = (muls[0], muls[muls.len() - 1]);
    f.insts[last].op = jitad_ir::Op::Lt;
    let o = CompileOptions {
        threads: 2,
        ..opts()
    };
    let Err(e) = compile_module(&m, "long", &o) else {
        panic!("accepted")
    };
    assert!(
        matches!(&e, CompileError::InvalidIr { message, .. } if message.contains(&format!("{last}: "))),
        "{e}"
    );
    m.funcs[0].insts[first].op = jitad_ir::Op::Lt;
    let Err(e) = compile_module(&m, "long", &o) else {
        panic!("accepted")
    };
    assert!(
        matches!(&e, CompileError::InvalidIr { message, .. } if message.contains(&format!("{first}: "))),
        "{e}"
    );
}
