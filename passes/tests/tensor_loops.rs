//! Compiled gradients of loops that carry tensors: `tapeloop`/`revloop` with tensor
//! states, captures and adjoints (mixed with scalars; `f64`, `f32`, `i64` and `bool`
//! elements), compiled against the interpreter bit for bit — with the checkpoint
//! statistics equal, snapshots counted in bytes of the flattened state — under every
//! policy and trip count, dynamic bounds included; checked against finite differences
//! and forward mode (the dot-product test); driver failures reported by both engines
//! alike.

use jitad_codegen::{compile_module, CallError, CompileError, CompileOptions, Compiled};
use jitad_ir::checkpoint::{DriverError, Policy, Stats};
use jitad_ir::interp::{EvalError, Val};
use jitad_ir::tensor::{Tensor, TensorData};
use jitad_ir::{parse_module, verify_module, Interpreter, Module, Type};
use jitad_passes::{jvp, optimize_module, set_policy, vjp, OptOptions};

/// Runs `func` in the interpreter and compiled; asserts the results agree bit for bit
/// and the sweeps' statistics are equal; returns the results and statistics.
fn both(m: &Module, c: &Compiled, func: &str, args: &[Val]) -> (Vec<Val>, Stats) {
    let f = m.get(func).unwrap();
    let mut it = Interpreter::new();
    let mut want = Vec::new();
    it.run(f, Some(m), args, &mut want)
        .unwrap_or_else(|e| panic!("interpreter @{func}: {e}"));
    let istats = it.last_stats();
    let mut got: Vec<Val> = want.clone();
    // Fill the outputs with other bits, so a result the JIT does not write is seen.
    for g in &mut got {
        *g = poisoned(g);
    }
    let cstats = c
        .call_with_stats(args, &mut got)
        .unwrap_or_else(|e| panic!("JIT @{func}: {e}"));
    assert_eq!(
        bits(&got),
        bits(&want),
        "@{func}: JIT and interpreter differ"
    );
    assert_eq!(cstats, istats, "@{func}: checkpoint statistics differ");
    (want, istats)
}

/// A value of `v`'s type with other contents.
fn poisoned(v: &Val) -> Val {
    match v {
        Val::Tensor(t) => {
            let data = match t.data() {
                TensorData::F64(d) => TensorData::F64(vec![f64::NAN; d.len()]),
                TensorData::F32(d) => TensorData::F32(vec![-7.0; d.len()]),
                TensorData::I64(d) => TensorData::I64(vec![-7; d.len()]),
                TensorData::Bool(d) => TensorData::Bool(d.iter().map(|b| !b).collect()),
            };
            Val::tensor(Tensor::new(t.shape(), data).unwrap())
        }
        Val::F64(_) => Val::F64(-7.0),
        Val::F32(_) => Val::F32(-7.0),
        Val::I64(_) => Val::I64(-7),
        Val::Bool(b) => Val::Bool(!b),
    }
}

/// Every element's bits (with its type), in order.
fn bits(vals: &[Val]) -> Vec<(Type, Vec<u64>)> {
    vals.iter()
        .map(|v| {
            let b = match v {
                Val::Tensor(t) => match t.data() {
                    TensorData::F64(d) => d.iter().map(|x| x.to_bits()).collect(),
                    TensorData::F32(d) => d.iter().map(|x| u64::from(x.to_bits())).collect(),
                    TensorData::I64(d) => d.iter().map(|&x| x as u64).collect(),
                    TensorData::Bool(d) => d.iter().map(|&x| u64::from(x)).collect(),
                },
                s => vec![s.to_slot()],
            };
            (v.type_of(), b)
        })
        .collect()
}

/// All float elements, as f64, in order.
fn flat(vals: &[Val]) -> Vec<f64> {
    let mut out = Vec::new();
    for v in vals {
        match v {
            Val::Tensor(t) => match t.data() {
                TensorData::F64(d) => out.extend_from_slice(d),
                TensorData::F32(d) => out.extend(d.iter().map(|&x| f64::from(x))),
                _ => {}
            },
            Val::F64(x) => out.push(*x),
            Val::F32(x) => out.push(f64::from(*x)),
            _ => {}
        }
    }
    out
}

fn compile(m: &Module, func: &str) -> Compiled {
    compile_module(
        m,
        func,
        &CompileOptions {
            verify: true,
            ..CompileOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("compile @{func}: {e}\n{}", jitad_ir::print_module(m)))
}

fn f64s(dims: &[usize], data: Vec<f64>) -> Val {
    Val::tensor(Tensor::f64(dims, data).unwrap())
}

fn f32s(dims: &[usize], data: &[f64]) -> Val {
    let shape = jitad_ir::Shape::new(dims).unwrap();
    let d = data.iter().map(|&x| x as f32).collect();
    Val::tensor(Tensor::new(shape, TensorData::F32(d)).unwrap())
}

/// Deterministic numbers in (-1, 1).
fn numbers(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

/// Tensor and scalar states mixed, a tensor capture, a dynamic trip count; a scalar
/// of the state computed from the tensor (`sum`), bounded dynamics.
const MIXED: &str = "func @f(%x: f64[3], %w: f64[3], %a: f64, %n: i64) -> f64 {
  %r, %q = loop %i in 0..%n (%c = %x : f64[3], %s = %a : f64) {
    %p = mul %c, %w
    %t = sin %p
    %u = mul %t, %s
    %h = const 0.5 : f64
    %v = mul %c, %h
    %c2 = add %u, %v
    %m = sum %c, axes [0]
    %k = const 0.1 : f64
    %sm = mul %m, %k
    %co = cos %s
    %s2 = add %co, %sm
    yield %c2, %s2
  }
  %tt = sum %r, axes [0]
  %z = mul %tt, %q
  ret %z
}";

/// An explicit heat-equation stepper: a three-point stencil through slices, fixed
/// boundaries through `pad`, a per-cell diffusivity captured as a tensor.
const HEAT: &str = "func @f(%u: f64[10], %k: f64[8], %n: i64) -> f64 {
  %r = loop %i in 0..%n (%c = %u : f64[10]) {
    %l = slice %c [0:8]
    %m = slice %c [1:9]
    %rr = slice %c [2:10]
    %a = add %l, %rr
    %two = const 2.0 : f64
    %m2 = mul %m, %two
    %lap = sub %a, %m2
    %d = mul %lap, %k
    %z = const 0.0 : f64
    %dp = pad %d, %z [1:1]
    %c2 = add %c, %dp
    yield %c2
  }
  %sq = mul %r, %r
  %e = sum %sq, axes [0]
  ret %e
}";

/// `f32` tensors: the state and the capture (4-byte elements in buffers, 8-byte slots
/// in snapshots).
const F32: &str = "func @f(%x: f32[5], %w: f32[5], %n: i64) -> f32 {
  %r = loop %i in 0..%n (%c = %x : f32[5]) {
    %p = mul %c, %w
    %t = sin %p
    %h = const 0.5 : f32
    %v = mul %c, %h
    %c2 = add %t, %v
    yield %c2
  }
  %s = sum %r, axes [0]
  ret %s
}";

/// `bool` and `i64` tensors carried beside a float one (not differentiated, but
/// snapshotted and passed to the steps).
const MASKS: &str = "func @f(%x: f64[4], %n: i64) -> f64 {
  %b0 = lt %x, %x
  %k0 = cast %b0 : i64
  %r, %mk, %cnt = loop %i in 0..%n (%c = %x : f64[4], %b = %b0 : bool[4], %k = %k0 : i64[4]) {
    %s = sin %c
    %h = const 0.75 : f64
    %d = mul %c, %h
    %c2 = select %b, %s, %d
    %b2 = lt %s, %d
    %one = cast %b2 : i64
    %k2 = add %k, %one
    yield %c2, %b2, %k2
  }
  %kf = cast %cnt : f64
  %e = mul %r, %kf
  %t = sum %e, axes [0]
  %t2 = sum %r, axes [0]
  %y = add %t, %t2
  ret %y
}";

/// The policies every test runs under.
fn policies() -> Vec<Policy> {
    [
        "store-all",
        "binomial:1",
        "binomial:2",
        "binomial:3",
        "every:1",
        "every:3",
        "recompute",
        "auto",
        "auto:64",
    ]
    .iter()
    .map(|p| p.parse().unwrap())
    .collect()
}

const TRIPS: [i64; 5] = [0, 1, 2, 7, 100];

/// The vjp of `@f` of `src` (all float parameters), cleaned up, with `policy`.
fn derive(src: &str, policy: Policy) -> (Module, String) {
    let mut m = parse_module(src).unwrap();
    let f = m.get("f").unwrap();
    let wrt: Vec<usize> = (0..f.sig.params.len())
        .filter(|&i| f.sig.params[i].is_float())
        .collect();
    let v = vjp(&mut m, "f", &wrt).unwrap();
    optimize_module(&mut m, &OptOptions::default());
    set_policy(&mut m, policy);
    verify_module(&m).unwrap_or_else(|e| panic!("{e}\n{}", jitad_ir::print_module(&m)));
    (m, v)
}

/// The arguments of `src`'s `@f` (random floats, `n` trips) and a cotangent.
fn point(src: &str, n: i64, seed: u64) -> (Vec<Val>, Vec<Val>) {
    let m = parse_module(src).unwrap();
    let f = m.get("f").unwrap();
    let make = |t: Type, seed: u64| match t {
        Type::Scalar(jitad_ir::ScalarType::F64) => Val::F64(numbers(1, seed)[0] * 0.5 + 0.6),
        Type::Scalar(jitad_ir::ScalarType::F32) => Val::F32(0.7),
        Type::Scalar(_) => Val::I64(n),
        Type::Tensor(e, s) => {
            let dims: Vec<usize> = s.dims().iter().map(|&d| d as usize).collect();
            let v = numbers(s.num_elements(), seed);
            match e {
                jitad_ir::ScalarType::F32 => f32s(&dims, &v),
                _ => f64s(&dims, v),
            }
        }
    };
    let x = f
        .sig
        .params
        .iter()
        .enumerate()
        .map(|(i, &t)| make(t, seed + i as u64))
        .collect();
    let w = f.sig.results.iter().map(|&t| make(t, seed + 100)).collect();
    (x, w)
}

/// Flattened slots of the state of `src`'s loop (for the store-all tape size).
fn state_slots(src: &str) -> u64 {
    let m = parse_module(src).unwrap();
    let f = m.get("f").unwrap();
    let l = f
        .insts
        .values()
        .find(|d| matches!(d.op, jitad_ir::Op::Loop(_)))
        .unwrap();
    l.results
        .iter()
        .map(|&r| jitad_ir::layout::state_slots(f.values[r].ty) as u64)
        .sum()
}

#[test]
fn tensor_loop_gradients_match_the_interpreter_under_every_policy() {
    for (name, src) in [
        ("mixed", MIXED),
        ("heat", HEAT),
        ("f32", F32),
        ("masks", MASKS),
    ] {
        let k = state_slots(src);
        for n in TRIPS {
            let (x, w) = point(src, n, 7);
            let mut args = x.clone();
            args.extend(w.iter().cloned());
            let mut first: Option<Vec<(Type, Vec<u64>)>> = None;
            for p in policies() {
                let (m, v) = derive(src, p);
                let c = compile(&m, &v);
                let (out, st) = both(&m, &c, &v, &args);
                // Every policy gives the same bits.
                match &first {
                    None => first = Some(bits(&out)),
                    Some(b) => assert_eq!(&bits(&out), b, "{name} n={n} {p}: another gradient"),
                }
                assert_eq!(st.sweeps, 1, "{name} n={n} {p}: {st:?}");
                assert_eq!(st.backward_steps, n as u64, "{name} n={n} {p}: {st:?}");
                // Snapshots are 8 bytes per slot of the flattened state; store-all
                // holds one per iteration (the initial state at least).
                if p == Policy::StoreAll {
                    assert_eq!(
                        st.peak_tape_bytes,
                        (n.max(1) as u64) * k * 8,
                        "{name} n={n}: {st:?}"
                    );
                } else {
                    assert!(
                        st.peak_tape_bytes.is_multiple_of(k * 8),
                        "{name} n={n} {p}: {st:?}"
                    );
                }
            }
        }
    }
}

/// Repeated calls of one compiled gradient (pooled driver buffers reused at other
/// trip counts, larger then smaller) give the interpreter's bits every time.
#[test]
fn repeated_calls_reuse_the_driver_buffers() {
    let (m, v) = derive(HEAT, Policy::Binomial(3));
    let c = compile(&m, &v);
    for n in [100, 2, 0, 7, 100, 1] {
        let (x, w) = point(HEAT, n, 11);
        let mut args = x;
        args.extend(w);
        both(&m, &c, &v, &args);
    }
}

/// Reverse mode against central finite differences of the primal (both evaluated
/// compiled: the vjp returns the primal too) and against forward mode, `<J u, w> =
/// <u, Jᵀ w>`.
#[test]
fn tensor_loop_gradients_match_finite_differences_and_forward_mode() {
    for (name, src) in [("mixed", MIXED), ("heat", HEAT), ("masks", MASKS)] {
        for n in [1, 2, 7] {
            let (m, v) = derive(src, Policy::Binomial(2));
            let c = compile(&m, &v);
            let (x, w) = point(src, n, 3);
            let ptys = m.get("f").unwrap().sig.params.clone();
            let wrt: Vec<usize> = (0..ptys.len()).filter(|&i| ptys[i].is_float()).collect();
            let run = |x: &[Val]| -> Vec<Val> {
                let mut args = x.to_vec();
                args.extend(w.iter().cloned());
                both(&m, &c, &v, &args).0
            };
            let out = run(&x);
            let xbar = flat(&out[1..]);
            // A direction u over the float parameters.
            let u: Vec<f64> = numbers(xbar.len(), 99);
            let shift = |h: f64| -> Vec<Val> {
                let mut k = 0;
                x.iter()
                    .enumerate()
                    .map(|(i, xi)| {
                        if !wrt.contains(&i) {
                            return xi.clone();
                        }
                        match xi {
                            Val::F64(a) => {
                                k += 1;
                                Val::F64(a + h * u[k - 1])
                            }
                            Val::Tensor(t) => {
                                let d: Vec<f64> = t
                                    .as_f64()
                                    .unwrap()
                                    .iter()
                                    .map(|a| {
                                        k += 1;
                                        a + h * u[k - 1]
                                    })
                                    .collect();
                                let dims: Vec<usize> =
                                    t.shape().dims().iter().map(|&d| d as usize).collect();
                                f64s(&dims, d)
                            }
                            other => other.clone(),
                        }
                    })
                    .collect()
            };
            let h = 1e-6;
            let wy = flat(&w)[0];
            let fd = (flat(&run(&shift(h))[..1])[0] - flat(&run(&shift(-h))[..1])[0]) / (2.0 * h);
            let ad: f64 = xbar.iter().zip(&u).map(|(a, b)| a * b).sum::<f64>();
            assert!(
                (fd * wy - ad).abs() <= 1e-6 * 1f64.max(ad.abs()),
                "{name} n={n}: finite differences {} vs reverse mode {ad}",
                fd * wy
            );
            // Forward mode (interpreted: its loop carries tensors in a `loop`).
            let mut mj = parse_module(src).unwrap();
            let j = jvp(&mut mj, "f", &wrt).unwrap();
            let mut jargs = x.clone();
            let mut k = 0;
            for &i in &wrt {
                jargs.push(match &x[i] {
                    Val::Tensor(t) => {
                        let dims: Vec<usize> =
                            t.shape().dims().iter().map(|&d| d as usize).collect();
                        let len = t.shape().num_elements();
                        k += len;
                        f64s(&dims, u[k - len..k].to_vec())
                    }
                    _ => {
                        k += 1;
                        Val::F64(u[k - 1])
                    }
                });
            }
            let jo = jitad_ir::interp::eval(&mj, &j, &jargs).unwrap();
            let ju = flat(&jo[1..])[0];
            assert!(
                (ju * wy - ad).abs() <= 1e-12 * 1f64.max(ad.abs()),
                "{name} n={n}: <J u, w> = {} but <u, J^T w> = {ad}",
                ju * wy
            );
        }
    }
}

/// Step functions for hand-written drivers: `c ← sin(c·w)`, a tensor state and a
/// tensor capture, and its backward step.
const STEPS: &str = "
func @body(%i: i64, %c: f64[3], %w: f64[3]) -> f64[3] {
  %p = mul %c, %w
  %s = sin %p
  ret %s
}

func @body.bwd(%i: i64, %c: f64[3], %w: f64[3], %cb: f64[3], %wb: f64[3]) -> (f64[3], f64[3]) {
  %p = mul %c, %w
  %co = cos %p
  %pb = mul %cb, %co
  %cb2 = mul %pb, %w
  %wb1 = mul %pb, %c
  %wb2 = add %wb, %wb1
  ret %cb2, %wb2
}
";

/// A `revloop` without a tape (hand-written IR: the driver runs the whole schedule),
/// with a dynamic start and end, under every policy.
#[test]
fn a_revloop_without_a_tape_matches_the_interpreter() {
    for p in policies() {
        let src = format!(
            "func @f(%x: f64[3], %w: f64[3], %a: i64, %n: i64) -> (f64[3], f64[3]) {{
              %one = fill 1.0 : f64[3]
              %z = fill 0.0 : f64[3]
              %xb, %wb = revloop %a..%n checkpoint {p} fwd @body bwd @body.bwd (%x) caps (%w) seed (%one, %z)
              ret %xb, %wb
            }}
            {STEPS}"
        );
        let m = parse_module(&src).unwrap_or_else(|e| panic!("{e}\n{src}"));
        verify_module(&m).unwrap();
        let c = compile(&m, "f");
        for n in TRIPS {
            let x = f64s(&[3], numbers(3, 5));
            let w = f64s(&[3], numbers(3, 6));
            let (_, st) = both(&m, &c, "f", &[x, w, Val::I64(-3), Val::I64(n - 3)]);
            assert_eq!(st.backward_steps, n as u64, "{p} n={n}");
        }
    }
}

/// A `revloop` that does not describe its tape, with tensor states: both engines
/// report the same driver error (the initial state compared slot by slot: element 2
/// of the tensor is slot 2).
#[test]
fn driver_errors_with_tensor_states_are_reported_as_by_the_interpreter() {
    let cases = [
        (
            "0..%n",
            "0..%m",
            "%t",
            "%x",
            "the revloop runs 4 iteration(s), but its tape (token 1) recorded 5",
        ),
        (
            "0..%n",
            "0..%n",
            "%t",
            "%y",
            "the revloop's initial state slot 2 differs from the one its tape (token 1) recorded",
        ),
        (
            "0..%n",
            "0..%n",
            "%m",
            "%x",
            "tape token 4 is not a pending tape of this call and level",
        ),
    ];
    for (tb, rb, tok, init, want) in cases {
        let src = format!(
            "func @f(%x: f64[3], %y: f64[3], %w: f64[3], %n: i64, %m: i64) -> (f64[3], f64[3], f64[3]) {{
              %one = fill 1.0 : f64[3]
              %z = fill 0.0 : f64[3]
              %s, %t = tapeloop {tb} checkpoint binomial:2 fwd @body (%x) caps (%w)
              %xb, %wb = revloop {rb} checkpoint binomial:2 fwd @body bwd @body.bwd tape {tok} ({init}) caps (%w) seed (%one, %z)
              ret %s, %xb, %wb
            }}
            {STEPS}"
        );
        let m = parse_module(&src).unwrap_or_else(|e| panic!("{e}\n{src}"));
        verify_module(&m).unwrap();
        let c = compile(&m, "f");
        let x = numbers(3, 1);
        let mut y = x.clone();
        y[2] += 1.0;
        let args = [
            f64s(&[3], x),
            f64s(&[3], y),
            f64s(&[3], numbers(3, 2)),
            Val::I64(5),
            Val::I64(4),
        ];
        let ie = jitad_ir::interp::eval(&m, "f", &args).unwrap_err();
        let EvalError::Checkpoint { error: ierr, .. } = &ie else {
            panic!("interpreter: not a checkpoint error: {ie}");
        };
        let mut out = vec![f64s(&[3], vec![0.0; 3]); 3];
        let je = c.call(&args, &mut out).unwrap_err();
        let CallError::Checkpoint { error: jerr, .. } = &je else {
            panic!("JIT: not a checkpoint error: {je}");
        };
        assert_eq!(ierr, jerr);
        assert_eq!(ie.to_string(), je.to_string());
        assert_eq!(ie.to_string(), format!("@f: {want}"));
        assert!(!matches!(
            ierr,
            DriverError::Panicked | DriverError::TooLarge { .. }
        ));
    }
}

/// A loop inside a loop carrying tensors: the outer loop's backward step runs a
/// `tapeloop`/`revloop` pair of its own (nested drivers, each with its buffers). The
/// outer forward step runs the inner loop as a `loop` over tensors, which the JIT
/// lowers only once loop bodies take tensors: until then it is refused as
/// unsupported, and only that is accepted.
#[test]
fn nested_tensor_loops_match_the_interpreter_or_are_refused() {
    let src = "func @f(%x: f64[3], %w: f64[3], %n: i64) -> f64 {
      %r = loop %i in 0..%n (%c = %x : f64[3]) {
        %q = loop %j in 0..3 (%d = %c : f64[3]) {
          %p = mul %d, %w
          %s = sin %p
          yield %s
        }
        %h = const 0.5 : f64
        %e = mul %q, %h
        yield %e
      }
      %t = sum %r, axes [0]
      ret %t
    }";
    for p in [Policy::StoreAll, Policy::Binomial(2), Policy::Recompute] {
        let (m, v) = derive(src, p);
        match compile_module(&m, &v, &CompileOptions::default()) {
            Ok(c) => {
                for n in [0, 1, 7] {
                    let (x, w) = point(src, n, 5);
                    let mut args = x;
                    args.extend(w);
                    both(&m, &c, &v, &args);
                }
            }
            Err(e @ CompileError::Unsupported { .. }) => {
                assert!(e.to_string().contains("`loop`"), "{e}")
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Drivers inside drivers, all carrying tensors (hand-written: each outer iteration is
/// itself a recorded inner loop of three `body` steps, whose backward step reverses
/// it): each running driver takes its own pooled buffers, under every policy.
#[test]
fn nested_tensor_drivers_match_the_interpreter() {
    for p in policies() {
        let src = format!(
            "func @f(%x: f64[3], %w: f64[3], %n: i64) -> (f64[3], f64[3], f64[3]) {{
              %one = fill 1.0 : f64[3]
              %z = fill 0.0 : f64[3]
              %s, %t = tapeloop 0..%n checkpoint {p} fwd @outer (%x) caps (%w)
              %xb, %wb = revloop 0..%n checkpoint {p} fwd @outer bwd @outer.bwd tape %t (%x) caps (%w) seed (%one, %z)
              ret %s, %xb, %wb
            }}

            func @outer(%i: i64, %c: f64[3], %w: f64[3]) -> f64[3] {{
              %s, %t = tapeloop 0..3 checkpoint store-all fwd @body (%c) caps (%w)
              ret %s
            }}

            func @outer.bwd(%i: i64, %c: f64[3], %w: f64[3], %cb: f64[3], %wb: f64[3]) -> (f64[3], f64[3]) {{
              %s, %t = tapeloop 0..3 checkpoint binomial:2 fwd @body (%c) caps (%w)
              %cb2, %wb2 = revloop 0..3 checkpoint binomial:2 fwd @body bwd @body.bwd tape %t (%c) caps (%w) seed (%cb, %wb)
              ret %cb2, %wb2
            }}
            {STEPS}"
        );
        let m = parse_module(&src).unwrap_or_else(|e| panic!("{e}\n{src}"));
        verify_module(&m).unwrap();
        let c = compile(&m, "f");
        for n in TRIPS {
            let x = f64s(&[3], numbers(3, 8));
            let w = f64s(&[3], numbers(3, 9));
            let (_, st) = both(&m, &c, "f", &[x, w, Val::I64(n)]);
            // Three inner backward steps per outer one, plus the outer one.
            assert_eq!(st.backward_steps, 4 * n as u64, "{p} n={n}: {st:?}");
        }
    }
}

/// A loop carrying thirty tensors: its descriptors (13 header words, two per operand,
/// one per result address) exceed the stack frame limit and live in the workspace.
#[test]
fn large_tensor_descriptors_live_in_the_workspace() {
    let k = 30;
    let names = |p: &str| (0..k).map(|j| format!("%{p}{j}")).collect::<Vec<_>>();
    let typed = |p: &str| {
        (0..k)
            .map(|j| format!("%{p}{j}: f64[2]"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let tys = vec!["f64[2]"; k].join(", ");
    let mut fwd = String::new();
    let mut bwd = String::new();
    for j in 0..k {
        fwd += &format!("  %p{j} = mul %c{j}, %w\n  %s{j} = sin %p{j}\n");
        bwd += &format!(
            "  %p{j} = mul %c{j}, %w\n  %o{j} = cos %p{j}\n  %q{j} = mul %b{j}, %o{j}\n  %r{j} = mul %q{j}, %w\n  %t{j} = mul %q{j}, %c{j}\n"
        );
    }
    let mut acc = "%wb".to_string();
    for j in 0..k {
        bwd += &format!("  %u{j} = add {acc}, %t{j}\n");
        acc = format!("%u{j}");
    }
    let src = format!(
        "func @f({xs}, %w: f64[2], %n: i64) -> ({tys}, {tys}, f64[2]) {{
          %one = fill 1.0 : f64[2]
          %z = fill 0.0 : f64[2]
          {ss}, %t = tapeloop 0..%n checkpoint binomial:2 fwd @body ({xn}) caps (%w)
          {bs}, %wbar = revloop 0..%n checkpoint binomial:2 fwd @body bwd @body.bwd tape %t ({xn}) caps (%w) seed ({ones}, %z)
          ret {ss}, {bs}, %wbar
        }}

        func @body(%i: i64, {cs}, %w: f64[2]) -> ({tys}) {{
        {fwd}  ret {sn}
        }}

        func @body.bwd(%i: i64, {cs}, %w: f64[2], {bts}, %wb: f64[2]) -> ({tys}, f64[2]) {{
        {bwd}  ret {rn}, {acc}
        }}",
        xs = typed("x"),
        cs = typed("c"),
        bts = typed("b"),
        ss = names("s").join(", "),
        bs = names("xb").join(", "),
        xn = names("x").join(", "),
        sn = names("s").join(", "),
        rn = names("r").join(", "),
        ones = vec!["%one"; k].join(", "),
    );
    let m = parse_module(&src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    verify_module(&m).unwrap_or_else(|e| panic!("{e}\n{src}"));
    let c = compile(&m, "f");
    assert!(
        c.workspace_bytes() >= 8 * (13 + 2 * 61 + 31),
        "{}",
        c.workspace_bytes()
    );
    for n in [0, 3, 7] {
        let mut args: Vec<Val> = (0..k)
            .map(|j| f64s(&[2], numbers(2, 40 + j as u64)))
            .collect();
        args.push(f64s(&[2], numbers(2, 1)));
        args.push(Val::I64(n));
        both(&m, &c, "f", &args);
    }
}
