//! Reverse mode through `loop`: gradients against finite differences and against
//! forward mode (which runs through loops directly) for every checkpointing policy,
//! all policies bit-identical to store-all, nested loops, loop bodies that call
//! functions, trip counts known only at call time, and the interpreter against the JIT.

mod common;
use common::*;
use jitad_ir::checkpoint::{self, Policy};
use jitad_ir::{interp, parse_module, Module, Val};
use jitad_passes::{grad, jvp, optimize_module, set_policy, OptOptions};

const POLICIES: [Policy; 8] = [
    Policy::StoreAll,
    Policy::Binomial(1),
    Policy::Binomial(2),
    Policy::Binomial(5),
    Policy::Every(1),
    Policy::Every(4),
    Policy::Recompute,
    Policy::Auto(64),
];

/// Evaluates with both engines, asserts they agree bit for bit, returns f64 results.
fn run(m: &Module, f: &str, args: &[Val]) -> Vec<f64> {
    let want: Vec<f64> = interp::eval(m, f, args)
        .unwrap_or_else(|e| panic!("@{f}: {e}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let c = compiled(m, f);
    let mut out = vec![Val::F64(0.0); c.results().len()];
    c.call(args, &mut out).unwrap();
    for (k, (a, b)) in want.iter().zip(&out).enumerate() {
        let b = b.as_f64().unwrap();
        assert!(
            a.to_bits() == b.to_bits(),
            "@{f} result {k}: interpreter {a:e}, JIT {b:e}"
        );
    }
    want
}

struct Case {
    name: &'static str,
    src: &'static str,
    /// Float arguments (the differentiated ones), then fixed i64 arguments.
    x: Vec<f64>,
    ints: Vec<i64>,
}

fn args(x: &[f64], ints: &[i64]) -> Vec<Val> {
    x.iter()
        .map(|&v| Val::F64(v))
        .chain(ints.iter().map(|&n| Val::I64(n)))
        .collect()
}

fn cases() -> Vec<Case> {
    let lorenz = include_str!("../../tests/ir/loops/lorenz.jir");
    vec![
        Case {
            name: "geometric",
            src: include_str!("../../tests/ir/loops/geometric.jir"),
            x: vec![0.7, 0.9],
            ints: vec![13],
        },
        Case {
            name: "nested",
            src: "func @f(%x: f64, %y: f64) -> f64 {
  %r, %q = loop %i in 0..6 (%a = %x : f64, %b = %y : f64) {
    %s = loop %j in 0..4 (%t = %a : f64) {
      %u = sin %t
      %w = fma %u, %b, %t
      %half = const 0.5 : f64
      %v = mul %w, %half
      yield %v
    }
    %b2 = mul %b, %s
    %a2 = add %s, %x
    yield %a2, %b2
  }
  %o = add %r, %q
  ret %o
}",
            x: vec![0.3, 1.1],
            ints: vec![],
        },
        Case {
            name: "counter_and_select",
            // An i64 counter carried beside the float state, a data-dependent select,
            // and bounds that are both dynamic.
            src: "func @f(%x: f64, %c: f64, %lo: i64, %hi: i64) -> f64 {
  %one = const 1 : i64
  %zero = const 0.0 : f64
  %s, %k = loop %i in %lo..%hi (%a = %x : f64, %n = %lo : i64) {
    %nf = cast %n : f64
    %p = mul %a, %c
    %q = add %p, %nf
    %neg = lt %q, %zero
    %m = neg %q
    %abs = select %neg, %m, %q
    %e = sqrt %abs
    %n2 = add %n, %one
    yield %e, %n2
  }
  ret %s
}",
            x: vec![2.0, 1.3],
            ints: vec![3, 11],
        },
        Case {
            name: "lorenz",
            src: lorenz,
            x: vec![10.0, 28.0, 8.0 / 3.0, 1.0, 1.0, 1.0],
            ints: vec![200],
        },
        Case {
            name: "zero_trips",
            src: include_str!("../../tests/ir/loops/geometric.jir"),
            x: vec![0.7, 0.9],
            ints: vec![0],
        },
    ]
}

#[test]
fn loop_gradients_against_finite_differences_and_forward_mode_for_every_policy() {
    for case in cases() {
        let mut m = parse_module(case.src).unwrap();
        let entry = m.funcs[0].name.clone();
        let n = case.x.len();
        let wrt: Vec<usize> = (0..n).collect();
        let g = grad(&mut m, &entry, &wrt).unwrap();
        let j = jvp(&mut m, &entry, &wrt).unwrap();
        optimize_module(&mut m, &OptOptions::default());
        verified(&m);
        let f = |x: &[f64]| run(&m, &entry, &args(x, &case.ints))[0];

        // Forward mode, one direction per input, as the reference gradient.
        let mut fwd = vec![0.0; n];
        for (i, slot) in fwd.iter_mut().enumerate() {
            let mut a = case.x.clone();
            a.extend((0..n).map(|k| if k == i { 1.0 } else { 0.0 }));
            let mut full = args(&a[..n], &case.ints);
            full.extend(a[n..].iter().map(|&v| Val::F64(v)));
            *slot = run(&m, &j, &full)[1];
        }
        let mut reference: Option<Vec<f64>> = None;
        for p in POLICIES {
            let mut mp = m.clone();
            set_policy(&mut mp, p);
            let out = run(&mp, &g, &args(&case.x, &case.ints));
            assert_eq!(out[0].to_bits(), f(&case.x).to_bits(), "{} {p}", case.name);
            let gr = &out[1..];
            for i in 0..n {
                assert!(
                    close(gr[i], fwd[i], 1e-10),
                    "{} {p}: reverse {} vs forward {} (input {i})",
                    case.name,
                    gr[i],
                    fwd[i]
                );
                let h = 1e-6 * case.x[i].abs().max(1.0);
                let (mut xp, mut xm) = (case.x.clone(), case.x.clone());
                xp[i] += h;
                xm[i] -= h;
                let fd = (f(&xp) - f(&xm)) / (2.0 * h);
                assert!(
                    close(gr[i], fd, 1e-5),
                    "{} {p}: reverse {} vs finite differences {fd} (input {i})",
                    case.name,
                    gr[i]
                );
            }
            // Every policy computes exactly what store-all computes.
            match &reference {
                None => reference = Some(out.clone()),
                Some(r) => assert!(
                    r.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{} {p}: {out:?} differs from store-all {r:?}",
                    case.name
                ),
            }
        }
    }
}

#[test]
fn stats_report_what_each_policy_did() {
    let src = include_str!("../../tests/ir/loops/geometric.jir");
    let mut m = parse_module(src).unwrap();
    let g = grad(&mut m, "f", &[0, 1]).unwrap();
    let l = 1000u64;
    let a = args(&[0.7, 0.9], &[l as i64]);
    let stats = |m: &Module| {
        let mut it = interp::Interpreter::new();
        it.eval(m.get(&g).unwrap(), Some(m), &a).unwrap();
        let s = it.last_stats();
        // The JIT reports the same through the thread's statistics.
        let c = compiled(m, &g);
        let mut out = vec![Val::F64(0.0); 3];
        checkpoint::take_stats();
        c.call(&a, &mut out).unwrap();
        assert_eq!(checkpoint::take_stats(), s);
        s
    };
    for (p, fwd) in [
        // The forward sweep's `tapeloop` records every state: nothing is recomputed.
        (Policy::StoreAll, 0),
        (Policy::Recompute, l * (l - 1) / 2),
        (
            Policy::Binomial(10),
            checkpoint::revolve_forward_steps(l, 10),
        ),
        (Policy::Binomial(3), checkpoint::revolve_forward_steps(l, 3)),
    ] {
        let mut mp = m.clone();
        set_policy(&mut mp, p);
        let s = stats(&mp);
        assert_eq!(s.sweeps, 1, "{p}");
        assert_eq!(s.backward_steps, l, "{p}");
        match p {
            // The forward sweep takes Revolve's first sweep, so the reverse sweep
            // recomputes at most Revolve's count less most of that sweep.
            Policy::Binomial(_) => {
                assert!(
                    s.forward_steps <= fwd && fwd - s.forward_steps >= (l - 1) / 2,
                    "{p}: {s:?}"
                )
            }
            _ => assert_eq!(s.forward_steps, fwd, "{p}"),
        }
        match p {
            // One f64 of state per snapshot, one snapshot per iteration.
            Policy::StoreAll => {
                assert_eq!(s.peak_tape_bytes, 8 * l);
                assert_eq!(s.snapshots, l);
            }
            Policy::Recompute => assert_eq!(s.snapshots, 0),
            // At most k states held, the initial one included.
            Policy::Binomial(k) => assert!(s.peak_tape_bytes <= 8 * u64::from(k)),
            _ => {}
        }
    }
}

#[test]
fn a_guard_inside_a_loop_body_still_asks_for_a_retrace() {
    let src = "func @f(%x: f64) -> f64 {
  %r = loop %i in 0..5 (%a = %x : f64) {
    %z = const 0.0 : f64
    %c = gt %a, %z
    guard %c
    %b = sqrt %a
    yield %b
  }
  ret %r
}";
    let mut m = parse_module(src).unwrap();
    let g = grad(&mut m, "f", &[0]).unwrap();
    let ok = run(&m, &g, &[Val::F64(2.0)]);
    assert!(close(ok[1], 2f64.powf(1.0 / 32.0 - 1.0) / 32.0, 1e-12));
    let e = interp::eval(&m, &g, &[Val::F64(-1.0)]).unwrap_err();
    assert!(e.to_string().contains("re-trace"), "{e}");
    let c = compiled(&m, &g);
    let mut out = vec![Val::F64(0.0); 2];
    let e = c.call(&[Val::F64(-1.0)], &mut out).unwrap_err();
    assert!(e.to_string().contains("re-trace"), "{e}");
}

#[test]
fn a_tape_too_large_for_memory_is_an_error_not_a_crash() {
    // 2^61 iterations under store-all: the tape's size overflows; both engines refuse
    // before running anything.
    let mut m = parse_module(include_str!("../../tests/ir/loops/geometric.jir")).unwrap();
    let g = grad(&mut m, "f", &[0, 1]).unwrap();
    set_policy(&mut m, Policy::StoreAll);
    let a = args(&[0.7, 0.9], &[1i64 << 61]);
    let e = interp::eval(&m, &g, &a).unwrap_err();
    assert!(e.to_string().contains("binomial"), "{e}");
    let c = compiled(&m, &g);
    let mut out = vec![Val::F64(0.0); 3];
    let e = c.call(&a, &mut out).unwrap_err();
    assert!(e.to_string().contains("binomial"), "{e}");
    // The same call with a small trip count still works afterwards.
    let ok = run(&m, &g, &args(&[0.7, 0.9], &[5]));
    assert!(ok[1].is_finite());
}

#[test]
fn hessian_vector_products_through_loops_against_finite_differences_of_gradients() {
    for case in cases() {
        if case.name == "zero_trips" {
            continue;
        }
        let mut m = parse_module(case.src).unwrap();
        let entry = m.funcs[0].name.clone();
        let n = case.x.len();
        let wrt: Vec<usize> = (0..n).collect();
        let g = grad(&mut m, &entry, &wrt).unwrap();
        let h = jitad_passes::hvp(&mut m, &entry, &wrt).unwrap();
        optimize_module(&mut m, &OptOptions::default());
        verified(&m);
        let v: Vec<f64> = (0..n).map(|i| 0.3 + 0.1 * i as f64).collect();
        for p in [Policy::StoreAll, Policy::Binomial(3), Policy::Recompute] {
            let mut mp = m.clone();
            set_policy(&mut mp, p);
            // hvp's parameters: x..., ints..., v...
            let mut a = args(&case.x, &case.ints);
            a.extend(v.iter().map(|&x| Val::F64(x)));
            let out = run(&mp, &h, &a);
            let hv = &out[1 + n..];
            let eps = 1e-6;
            let gat = |s: f64| {
                let x: Vec<f64> = case
                    .x
                    .iter()
                    .zip(&v)
                    .map(|(x, v)| x + s * eps * v)
                    .collect();
                run(&mp, &g, &args(&x, &case.ints))
            };
            let (gp, gm) = (gat(1.0), gat(-1.0));
            for i in 0..n {
                let fd = (gp[1 + i] - gm[1 + i]) / (2.0 * eps);
                assert!(
                    close(hv[i], fd, 1e-5),
                    "{} {p}: (Hv)[{i}] = {} vs finite differences {fd}",
                    case.name,
                    hv[i]
                );
            }
            // The gradient inside the hvp equals the gradient.
            let g0 = run(&mp, &g, &args(&case.x, &case.ints));
            assert_eq!(out[..1 + n], g0[..], "{} {p}", case.name);
        }
    }
}

/// A loop step that records no tape is compiled a second time as a *span* (its body
/// inlined in a loop), which the checkpoint drivers call once per run of steps. Spans
/// carry every scalar type: f64, f32 (4 bytes in an 8-byte slot), i64 and bool states
/// come out bit for bit as the interpreter's, with the same statistics, under every
/// policy; a guard failing in the middle of a span reports the interpreter's error.
#[test]
fn steps_run_as_spans_agree_with_the_interpreter_for_every_type_and_policy() {
    let src = "func @f(%x: f64, %n: i64) -> f64 {
  %one = const 1 : i64
  %y0 = cast %x : f32
  %t = const true : bool
  %a, %b, %c, %p = loop %i in 0..%n (%a0 = %x : f64, %b0 = %y0 : f32, %c0 = %one : i64, %p0 = %t : bool) {
    %lim = const 20 : i64
    %ok = lt %c0, %lim
    guard %ok
    %g = const 1.5 : f64
    %cf = cast %c0 : f64
    %bf = cast %b0 : f64
    %sb = sin %bf
    %u = fma %a0, %g, %sb
    %w = mul %cf, %sb
    %a1 = select %p0, %u, %w
    %q = const 0.25 : f32
    %af = cast %a0 : f32
    %b1 = fma %af, %q, %b0
    %c1 = add %c0, %one
    %p1 = lt %a1, %a0
    yield %a1, %b1, %c1, %p1
  }
  %bo = cast %b : f64
  %r = add %a, %bo
  ret %r
}";
    let mut m = parse_module(src).unwrap();
    let g = grad(&mut m, "f", &[0]).unwrap();
    optimize_module(&mut m, &OptOptions::default());
    for p in POLICIES {
        let mut mp = m.clone();
        set_policy(&mut mp, p);
        let c = compiled(&mp, &g);
        // Both steps of the one loop (its forward and backward iteration), run by
        // both of its drivers.
        assert_eq!(c.stats().spans, 2, "{p}");
        assert_eq!(c.stats().span_loops, 2, "{p}");
        for n in [0i64, 1, 2, 3, 7] {
            let a = [Val::F64(0.3), Val::I64(n)];
            let mut it = interp::Interpreter::new();
            let want = it.eval(mp.get(&g).unwrap(), Some(&mp), &a).unwrap();
            let mut out = vec![Val::F64(0.0); 2];
            let s = c.call_with_stats(&a, &mut out).unwrap();
            assert_eq!(s, it.last_stats(), "{p} n={n}");
            for (w, o) in want.iter().zip(&out) {
                assert_eq!(w.to_slot(), o.to_slot(), "{p} n={n}: {w:?} vs {o:?}");
            }
        }
        // The counter reaches 20 in the 20th iteration: the forward sweep's span
        // stops at the guard.
        let a = [Val::F64(0.3), Val::I64(40)];
        let e = interp::Interpreter::new()
            .eval(mp.get(&g).unwrap(), Some(&mp), &a)
            .unwrap_err();
        let mut out = vec![Val::F64(0.0); 2];
        let j = c.call(&a, &mut out).unwrap_err();
        assert!(e.to_string().contains("re-trace"), "{p}: {e}");
        assert!(j.to_string().contains("re-trace"), "{p}: {j}");
    }
}
