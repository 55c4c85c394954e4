//! Every tensor op's tangent and transpose against central finite differences, and
//! forward mode against reverse mode (the dot-product test `<J u, w> = <u, Jᵀ w>`), on
//! tensor inputs with random contents. The clean-up pipeline must not change any
//! derivative's bits. A test fails if a tensor op of `Op::NAMES` has no row here.
//!
//! Tensors run in the interpreter only until the JIT lowers them (issue #13); each
//! derivative here is evaluated by `jitad_ir::interp`.

use jitad_ir::checkpoint::Policy;
use jitad_ir::interp::{eval, Val};
use jitad_ir::tensor::Tensor;
use jitad_ir::{parse_module, verify_module, Module, Op, Type};
use jitad_passes::{grad, jvp, optimize_module, set_policy, vjp, OptOptions};

struct Row {
    /// Ops this row exercises (for the completeness check).
    ops: &'static [&'static str],
    /// `@f`, in the text format.
    src: &'static str,
    /// Values of the `i64` parameters, in order.
    ints: &'static [i64],
    /// Float inputs drawn from (0.5, 1.5) instead of (−1, 1) (for `log`, `sqrt`, …).
    positive: bool,
    /// Finite-difference step and relative tolerance (f32 rows need a large step).
    fd: (f64, f64),
}

const fn row(ops: &'static [&'static str], src: &'static str) -> Row {
    Row {
        ops,
        src,
        ints: &[],
        positive: false,
        fd: (1e-6, 1e-5),
    }
}

fn rows() -> Vec<Row> {
    vec![
        row(
            &["broadcast", "mul"],
            "func @f(%x: f64[3], %s: f64, %m: f64[2,1]) -> f64[2,3] {
              %b = broadcast %x : f64[2,3]
              %c = broadcast %s : f64[2,3]
              %d = broadcast %m : f64[2,3]
              %p = mul %b, %c
              %q = mul %p, %d
              ret %q
            }",
        ),
        // Elementwise ops on tensors, with a row, a column and a scalar broadcast.
        row(
            &["add", "sub", "div", "fma", "neg"],
            "func @f(%a: f64[2,3], %v: f64[3], %c: f64[2,1], %s: f64) -> f64[2,3] {
              %x = add %a, %v
              %y = sub %c, %x
              %z = fma %y, %v, %s
              %w = div %z, %s
              %n = neg %w
              %u = mul %n, %c
              ret %u
            }",
        ),
        Row {
            ops: &["exp", "log", "sqrt", "tanh", "sin", "cos", "sigmoid", "powi", "pow"],
            src: "func @f(%a: f64[2,3], %v: f64[3]) -> f64[2,3] {
              %e = exp %a
              %l = log %v
              %r = sqrt %a
              %t = tanh %e
              %p = mul %t, %l
              %s = sin %r
              %c = cos %p
              %g = sigmoid %s
              %q = powi %g, 3
              %k = add %q, %c
              %w = pow %a, %v
              %o = add %k, %w
              ret %o
            }",
            ints: &[],
            positive: true,
            fd: (1e-6, 1e-5),
        },
        row(
            &["min", "max", "abs", "select", "lt", "gt"],
            "func @f(%a: f64[2,3], %v: f64[3], %s: f64) -> f64[2,3] {
              %m = min %a, %v
              %x = max %m, %s
              %b = abs %x
              %c = lt %a, %v
              %d = gt %a, %s
              %y = select %c, %b, %s
              %z = select %d, %v, %y
              ret %z
            }",
        ),
        // f64 → f32 → f64 around a linear f32 computation (derivative 3 + 1).
        Row {
            ops: &["cast", "const"],
            src: "func @f(%a: f64[2,3]) -> f64[2,3] {
              %h = cast %a : f32
              %t = const 3.0 : f32
              %k = mul %h, %t
              %b = cast %k : f64
              %c = add %b, %a
              ret %c
            }",
            ints: &[],
            positive: false,
            fd: (1e-2, 1e-4),
        },
        row(
            &["sum", "mean"],
            "func @f(%a: f64[2,3,4]) -> (f64[3], f64[2,4], f64, f64[2,3,4]) {
              %s = sum %a, axes [0, 2]
              %m = mean %a, axes [1]
              %t = sum %a, axes [0, 1, 2]
              %i = mean %a, axes []
              ret %s, %m, %t, %i
            }",
        ),
        row(
            &["reduce_max", "reduce_min", "logsumexp"],
            "func @f(%a: f64[3,4]) -> (f64[3], f64[4], f64, f64[3]) {
              %x = reduce_max %a, axes [1]
              %n = reduce_min %a, axes [0]
              %l = logsumexp %a, axes [0, 1]
              %k = logsumexp %a, axes [1]
              ret %x, %n, %l, %k
            }",
        ),
        row(
            &["matmul"],
            "func @f(%a: f64[2,3], %b: f64[3,4], %v: f64[3], %w: f64[2], %t: f64[5,2,3], %u: f64[5,3,4])
                -> (f64[2,4], f64[2], f64[3], f64[5,2,4], f64[5,2,4]) {
              %mm = matmul %a, %b
              %mv = matmul %a, %v
              %vm = matmul %w, %a
              %bm = matmul %t, %b
              %bb = matmul %t, %u
              ret %mm, %mv, %vm, %bm, %bb
            }",
        ),
        row(
            &["dot"],
            "func @f(%a: f64[5], %b: f64[5]) -> f64 {
              %d = dot %a, %b
              %e = dot %a, %a
              %s = mul %d, %e
              ret %s
            }",
        ),
        row(
            &["transpose", "reshape"],
            "func @f(%a: f64[2,3,4]) -> (f64[4,2,3], f64[6,4], f64[24]) {
              %t = transpose %a, perm [2, 0, 1]
              %r = reshape %a : f64[6,4]
              %s = sin %t
              %f = reshape %s : f64[24]
              ret %t, %r, %f
            }",
        ),
        row(
            &["slice"],
            "func @f(%a: f64[5,7], %b: f64[2,3,4,5]) -> (f64[2,3], f64[3,2], f64[1,2,2,1]) {
              %s = slice %a [1:3, 2:5]
              %t = slice %a [0:5:2, 1:7:3]
              %u = slice %b [1:2, 0:3:2, 1:4:2, 4:5]
              ret %s, %t, %u
            }",
        ),
        row(
            &["concat", "pad"],
            "func @f(%a: f64[2,3], %b: f64[1,3], %s: f64) -> (f64[3,3], f64[4,6]) {
              %c = concat %a, %b, axis 0
              %p = pad %a, %s [1:1, 2:1]
              ret %c, %p
            }",
        ),
        Row {
            ops: &["extract", "insert"],
            src: "func @f(%m: f64[3,4], %v: f64[4], %s: f64, %i: i64, %j: i64) -> (f64[4], f64, f64[3,4], f64[4]) {
              %r = extract %m [%i]
              %e = extract %v [%j]
              %w = insert %v into %m [%j]
              %u = insert %s into %v [%i]
              ret %r, %e, %w, %u
            }",
            ints: &[2, 1],
            positive: false,
            fd: (1e-6, 1e-5),
        },
        row(
            &["fill", "iota"],
            "func @f(%a: f64[2,3]) -> f64[2,3] {
              %z = fill 2.0 : f64[2,3]
              %i = iota axis 1 : f64[2,3]
              %p = mul %a, %i
              %q = add %p, %z
              %r = mul %q, %a
              ret %r
            }",
        ),
        // Lazily broadcast adjoints (a reduction's cotangent left scalar or with 1s)
        // meeting ops that broadcast their operand: each must be summed back in full.
        row(
            &[],
            "func @f(%x: f64, %v: f64[3], %c: f64[2,1]) -> (f64, f64, f64[2], f64) {
              %b = broadcast %x : f64[4]
              %s = sum %b, axes [0]
              %a = add %v, %x
              %m = mean %a, axes [0]
              %k = mul %c, %v
              %r = sum %k, axes [1]
              %n = neg %b
              %e = mean %n, axes [0]
              ret %s, %m, %r, %e
            }",
        ),
        // Loops carrying tensors: reversed by the checkpointing driver with tensor
        // snapshots (one slot per element), and carried through forward mode.
        row(
            &["loop", "yield"],
            "func @f(%x: f64[3], %w: f64[3], %k: f64) -> (f64[3], f64) {
              %r, %q = loop %i in 0..5 (%c = %x : f64[3], %a = %k : f64) {
                %p = mul %c, %w
                %s = sin %p
                %t = sum %s, axes [0]
                %b = mul %a, %t
                %d = mul %s, %b
                yield %d, %b
              }
              ret %r, %q
            }",
        ),
        // A loop walking an array with `extract`/`insert` at the loop index.
        row(
            &[],
            "func @f(%m: f64[4,3], %v: f64[3]) -> (f64[4,3], f64[3]) {
              %out = fill 0.0 : f64[4,3]
              %r, %last = loop %j in 0..4 (%acc = %out : f64[4,3], %s = %v : f64[3]) {
                %row = extract %m [%j]
                %p = mul %row, %s
                %t = tanh %p
                %acc2 = insert %t into %acc [%j]
                yield %acc2, %t
              }
              ret %r, %last
            }",
        ),
        // A loss: the MLP layer's composite, scalar result (grad applies).
        row(
            &[],
            "func @f(%x: f64[4,3], %w: f64[3,5], %b: f64[5], %v: f64[5]) -> f64 {
              %h = matmul %x, %w
              %z = add %h, %b
              %a = tanh %z
              %o = matmul %a, %v
              %l = logsumexp %o, axes [0]
              ret %l
            }",
        ),
    ]
}

/// A deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A value of float type `ty` from `data` (consumed from the front).
fn make(ty: Type, data: &mut impl Iterator<Item = f64>) -> Val {
    match ty {
        Type::Scalar(_) => Val::F64(data.next().unwrap()),
        Type::Tensor(_, s) => {
            let dims: Vec<usize> = s.dims().iter().map(|&d| d as usize).collect();
            let v: Vec<f64> = data.take(s.num_elements()).collect();
            Val::tensor(Tensor::f64(&dims, v).unwrap())
        }
    }
}

/// All elements of float values, flattened in order.
fn flat(vals: &[Val]) -> Vec<f64> {
    let mut out = Vec::new();
    for v in vals {
        match v {
            Val::Tensor(t) => out.extend_from_slice(t.as_f64().expect("f64 tensor")),
            other => out.push(other.as_f64().expect("float")),
        }
    }
    out
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn run(m: &Module, f: &str, args: &[Val]) -> Vec<Val> {
    eval(m, f, args).unwrap_or_else(|e| panic!("@{f}: {e}\n{}", jitad_ir::print_module(m)))
}

fn bits(vals: &[Val]) -> Vec<u64> {
    flat(vals).iter().map(|x| x.to_bits()).collect()
}

fn check(row: &Row, seed: u64) {
    let mut module = parse_module(row.src).unwrap_or_else(|e| panic!("{e}\n{}", row.src));
    verify_module(&module).unwrap();
    let f = module.get("f").unwrap().clone();
    let ptys = f.sig.params.clone();
    let rtys = f.sig.results.clone();
    let wrt: Vec<usize> = (0..ptys.len()).filter(|&i| ptys[i].is_float()).collect();
    let mut rng = Rng(seed);
    let mut ints = row.ints.iter();
    let draw = |rng: &mut Rng| {
        if row.positive {
            0.5 + rng.next()
        } else {
            2.0 * rng.next() - 1.0
        }
    };
    // The point x, a direction u over the float parameters, a cotangent w.
    let mut x = Vec::new();
    for &t in &ptys {
        if t.is_float() {
            let data: Vec<f64> = (0..t.num_elements()).map(|_| draw(&mut rng)).collect();
            x.push(make(t, &mut data.into_iter()));
        } else {
            x.push(Val::I64(
                *ints.next().expect("an int for each i64 parameter"),
            ));
        }
    }
    let u: Vec<Val> = wrt
        .iter()
        .map(|&i| {
            let t = ptys[i];
            let data: Vec<f64> = (0..t.num_elements()).map(|_| rng.next() - 0.5).collect();
            make(t, &mut data.into_iter())
        })
        .collect();
    let w: Vec<Val> = rtys
        .iter()
        .map(|&t| {
            let data: Vec<f64> = (0..t.num_elements()).map(|_| rng.next() - 0.5).collect();
            make(t, &mut data.into_iter())
        })
        .collect();

    let j = jvp(&mut module, "f", &wrt).unwrap_or_else(|e| panic!("jvp {:?}: {e}", row.ops));
    let v = vjp(&mut module, "f", &wrt).unwrap_or_else(|e| panic!("vjp {:?}: {e}", row.ops));
    let g = (rtys.len() == 1 && rtys[0].is_float_scalar())
        .then(|| grad(&mut module, "f", &wrt).unwrap());
    if let Err(e) = verify_module(&module) {
        panic!("{e}\n{}", jitad_ir::print_module(&module));
    }
    let mut opt = module.clone();
    optimize_module(&mut opt, &OptOptions::default());
    verify_module(&opt).unwrap();

    let y = run(&module, "f", &x);
    let nr = y.len();
    // Forward: (y, dy) at (x, u).
    let mut jargs = x.clone();
    jargs.extend(u.iter().cloned());
    let jo = run(&module, &j, &jargs);
    assert_eq!(bits(&jo[..nr]), bits(&y), "{:?}: jvp's primal", row.ops);
    let ju = flat(&jo[nr..]);
    assert_eq!(
        bits(&run(&opt, &j, &jargs)),
        bits(&jo),
        "{:?}: clean-up changed the jvp",
        row.ops
    );
    // Central differences along u.
    let (h, tol) = row.fd;
    let shifted = |sign: f64| -> Vec<f64> {
        let mut k = 0;
        let xs: Vec<Val> = x
            .iter()
            .enumerate()
            .map(|(i, xi)| {
                if !ptys[i].is_float() {
                    return xi.clone();
                }
                let du = flat(std::slice::from_ref(&u[k]));
                k += 1;
                let p: Vec<f64> = flat(std::slice::from_ref(xi))
                    .iter()
                    .zip(&du)
                    .map(|(a, b)| a + sign * h * b)
                    .collect();
                make(ptys[i], &mut p.into_iter())
            })
            .collect();
        flat(&run(&module, "f", &xs))
    };
    let (fp, fm) = (shifted(1.0), shifted(-1.0));
    for (k, ((a, b), d)) in fp.iter().zip(&fm).zip(&ju).enumerate() {
        let fd = (a - b) / (2.0 * h);
        assert!(
            (fd - d).abs() <= tol * 1f64.max(fd.abs()).max(d.abs()),
            "{:?}: output element {k}: jvp {d} but finite differences {fd}\n{}",
            row.ops,
            jitad_ir::print_module(&module)
        );
    }
    // Reverse: (y, x̄) at (x, w); <J u, w> = <u, Jᵀ w>.
    let mut vargs = x.clone();
    vargs.extend(w.iter().cloned());
    let vo = run(&module, &v, &vargs);
    assert_eq!(bits(&vo[..nr]), bits(&y), "{:?}: vjp's primal", row.ops);
    assert_eq!(
        bits(&run(&opt, &v, &vargs)),
        bits(&vo),
        "{:?}: clean-up changed the vjp",
        row.ops
    );
    for (k, (&i, xb)) in wrt.iter().zip(&vo[nr..]).enumerate() {
        assert_eq!(
            xb.type_of(),
            ptys[i],
            "{:?}: adjoint {k} has the wrong type",
            row.ops
        );
    }
    let jtw = flat(&vo[nr..]);
    // Rounding only; rows through f32 round to f32.
    let dp_tol = if tol > 1e-5 { 1e-6 } else { 1e-12 };
    let lhs = dot(&ju, &flat(&w));
    let rhs = dot(&flat(&u), &jtw);
    let scale = ju.iter().chain(&jtw).map(|z| z.abs()).sum::<f64>().max(1.0);
    assert!(
        (lhs - rhs).abs() <= dp_tol * scale,
        "{:?}: <J u, w> = {lhs} but <u, J^T w> = {rhs}\n{}",
        row.ops,
        jitad_ir::print_module(&module)
    );
    if let Some(g) = g {
        let go = run(&module, &g, &x);
        // grad = vjp seeded with 1: scale the vjp's adjoint by 1/w.
        let w0 = w[0].as_f64().unwrap();
        for (a, b) in flat(&go[1..]).iter().zip(&jtw) {
            assert!(
                (a * w0 - b).abs() <= 1e-12 * 1f64.max(b.abs()),
                "{:?}: grad {a}·{w0} vs vjp {b}",
                row.ops
            );
        }
    }
}

#[test]
fn tensor_rules_match_finite_differences_and_each_other() {
    for (k, r) in rows().iter().enumerate() {
        for seed in [1, 2, 3] {
            check(r, 0x9e37_79b9_7f4a_7c15 ^ (k as u64 * 1000 + seed));
        }
    }
}

#[test]
fn every_tensor_op_has_a_row() {
    let covered: Vec<&str> = rows().iter().flat_map(|r| r.ops.iter().copied()).collect();
    let missing: Vec<&str> = Op::NAMES
        .iter()
        .copied()
        .filter(|n| Op::from_name(n).is_some_and(|op| op.is_tensor_op()))
        .filter(|n| !covered.contains(n))
        .collect();
    assert!(missing.is_empty(), "tensor ops without a row: {missing:?}");
}

/// `reduce_max` at a tie splits the derivative evenly (JAX's rule), in both modes.
#[test]
fn max_reduction_splits_ties_evenly() {
    let mut m = parse_module(
        "func @f(%a: f64[4]) -> f64 {
          %x = reduce_max %a, axes [0]
          ret %x
        }",
    )
    .unwrap();
    let g = grad(&mut m, "f", &[0]).unwrap();
    let a = Val::tensor(Tensor::f64(&[4], vec![1.0, 3.0, -2.0, 3.0]).unwrap());
    let out = run(&m, &g, &[a]);
    assert_eq!(flat(&out[1..]), vec![0.0, 0.5, 0.0, 0.5]);
}

/// A loop with a tensor state under every checkpointing policy: the same gradient bit
/// for bit, and snapshots counted in bytes of the tensor (8 per element).
#[test]
fn tensor_loop_states_checkpoint_under_every_policy() {
    let src = "func @f(%x: f64[3], %w: f64[3]) -> f64 {
      %r = loop %i in 0..20 (%c = %x : f64[3]) {
        %p = mul %c, %w
        %s = sin %p
        yield %s
      }
      %t = sum %r, axes [0]
      ret %t
    }";
    let x = Val::tensor(Tensor::f64(&[3], vec![0.5, 1.0, 1.5]).unwrap());
    let w = Val::tensor(Tensor::f64(&[3], vec![0.9, 1.1, 1.2]).unwrap());
    let mut want: Option<Vec<u64>> = None;
    for policy in ["store-all", "binomial:3", "every:4", "recompute"] {
        let mut m = parse_module(src).unwrap();
        let g = grad(&mut m, "f", &[0, 1]).unwrap();
        set_policy(&mut m, policy.parse::<Policy>().unwrap());
        let mut it = jitad_ir::Interpreter::new();
        let f = m.get(&g).unwrap();
        let mut out = Vec::new();
        it.run(f, Some(&m), &[x.clone(), w.clone()], &mut out)
            .unwrap();
        let stats = it.last_stats();
        let b = bits(&out);
        match &want {
            None => {
                // store-all keeps every state: 20 snapshots of 3 elements.
                assert_eq!(stats.peak_tape_bytes, 20 * 3 * 8, "{policy}: {stats:?}");
                want = Some(b);
            }
            Some(w) => {
                assert_eq!(&b, w, "{policy} changed the gradient");
                assert!(
                    stats.peak_tape_bytes < 20 * 3 * 8 && stats.peak_tape_bytes.is_multiple_of(24),
                    "{policy}: {stats:?}"
                );
            }
        }
    }
}
