//! Forward mode of loops over tensors, compiled: `jvp` of a loop is a loop carrying the
//! primal tensors and their tangents, which the JIT compiles (tensor states carried as
//! buffers). Each derivative, before and after the clean-up pipeline, runs in the JIT
//! and in the interpreter on the same random inputs, and the bits must agree; the
//! tangent is also checked against central finite differences along the direction.

use jitad_codegen::{compile_module, CompileOptions};
use jitad_ir::interp::{eval, Val};
use jitad_ir::tensor::{Tensor, TensorData};
use jitad_ir::{parse_module, verify_module, Module, Op, Type};
use jitad_passes::{jvp, optimize_module, OptOptions};
use std::sync::Arc;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

fn val(t: Type, rng: &mut Rng) -> Val {
    match t {
        Type::Tensor(_, shape) => {
            let data = (0..t.num_elements()).map(|_| rng.next()).collect();
            Val::Tensor(Arc::new(Tensor::new(shape, TensorData::F64(data)).unwrap()))
        }
        _ => Val::F64(rng.next()),
    }
}

fn flat(vals: &[Val]) -> Vec<f64> {
    let mut out = vec![];
    for v in vals {
        match v {
            Val::Tensor(t) => match t.data() {
                TensorData::F64(d) => out.extend_from_slice(d),
                other => panic!("{other:?}"),
            },
            other => out.push(other.as_f64().unwrap()),
        }
    }
    out
}

fn bits(vals: &[Val]) -> Vec<u64> {
    flat(vals).iter().map(|x| x.to_bits()).collect()
}

/// `x + h·u` elementwise.
fn shift(x: &Val, u: &Val, h: f64) -> Val {
    match (x, u) {
        (Val::Tensor(a), Val::Tensor(b)) => {
            let (TensorData::F64(p), TensorData::F64(q)) = (a.data(), b.data()) else {
                panic!("f64 tensors only")
            };
            let d = p.iter().zip(q).map(|(x, u)| x + h * u).collect();
            Val::Tensor(Arc::new(
                Tensor::new(a.shape(), TensorData::F64(d)).unwrap(),
            ))
        }
        _ => Val::F64(x.as_f64().unwrap() + h * u.as_f64().unwrap()),
    }
}

/// Runs `func` in both engines and demands equal bits.
fn both(m: &Module, func: &str, args: &[Val]) -> Vec<Val> {
    let want = eval(m, func, args).unwrap_or_else(|e| panic!("@{func}: {e}"));
    let c = compile_module(
        m,
        func,
        &CompileOptions {
            verify: true,
            ..CompileOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("compile @{func}: {e}\n{}", jitad_ir::print_module(m)));
    let mut got = vec![Val::F64(0.0); want.len()];
    c.call(args, &mut got)
        .unwrap_or_else(|e| panic!("JIT @{func}: {e}"));
    assert_eq!(
        bits(&got),
        bits(&want),
        "@{func}: JIT and interpreter differ\n{}",
        jitad_ir::print_module(m)
    );
    want
}

const PROGRAMS: &[&str] = &[
    // A stencil time-stepper (slices, pad).
    r#"
func @f(%u0: f64[12], %k: f64) -> (f64[12], f64) {
  %r = loop %t in 0..6 (%u = %u0 : f64[12]) {
    %l = slice %u [0:10]
    %c = slice %u [1:11]
    %h = slice %u [2:12]
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
  %e = mul %r, %r
  %en = sum %e, axes [0]
  ret %r, %en
}
"#,
    // A captured matrix, a tensor and a scalar carried, nested loops, a reduction.
    r#"
func @f(%a: f64[2,3], %w: f64[3,3], %s: f64) -> (f64[2,3], f64) {
  %r, %acc = loop %i in 0..3 (%x = %a : f64[2,3], %q = %s : f64) {
    %y = loop %j in 0..2 (%u = %x : f64[2,3]) {
      %m = matmul %u, %w
      %t = tanh %m
      %v = add %t, %a
      yield %v
    }
    %s2 = sum %y, axes [0, 1]
    %s3 = mul %q, %s2
    yield %y, %s3
  }
  ret %r, %acc
}
"#,
];

#[test]
fn jvp_of_tensor_loops_compiles_and_agrees() {
    for (p, src) in PROGRAMS.iter().enumerate() {
        let mut m = parse_module(src).unwrap();
        verify_module(&m).unwrap();
        let ptys = m.get("f").unwrap().sig.params.clone();
        let wrt: Vec<usize> = (0..ptys.len()).collect();
        let j = jvp(&mut m, "f", &wrt).unwrap_or_else(|e| panic!("program {p}: jvp: {e}"));
        verify_module(&m).unwrap();
        let jf = m.get(&j).unwrap();
        let carries_tensors = jf.insts.values().any(|d| {
            matches!(d.op, Op::Loop(_)) && d.results.iter().any(|&r| jf.ty(r).scalar().is_none())
        });
        assert!(
            carries_tensors,
            "program {p}: the jvp is a loop carrying tensors"
        );
        let mut opt = m.clone();
        optimize_module(&mut opt, &OptOptions::default());
        verify_module(&opt).unwrap();
        let mut rng = Rng(0x9e37 + p as u64);
        for _ in 0..3 {
            let x: Vec<Val> = ptys.iter().map(|&t| val(t, &mut rng)).collect();
            let u: Vec<Val> = ptys.iter().map(|&t| val(t, &mut rng)).collect();
            let args: Vec<Val> = x.iter().chain(&u).cloned().collect();
            let raw = both(&m, &j, &args);
            let clean = both(&opt, &j, &args);
            assert_eq!(
                bits(&raw),
                bits(&clean),
                "program {p}: clean-up changed the jvp"
            );
            // The tangents (the second half of the results) against central differences.
            let nr = raw.len() / 2;
            let tangent = flat(&raw[nr..]);
            let h = 1e-6;
            let at = |s: f64| {
                let xs: Vec<Val> = x.iter().zip(&u).map(|(a, b)| shift(a, b, s)).collect();
                flat(&both(&m, "f", &xs))
            };
            let (hi, lo) = (at(h), at(-h));
            for (k, &d) in tangent.iter().enumerate() {
                let fd = (hi[k] - lo[k]) / (2.0 * h);
                assert!(
                    (d - fd).abs() <= 1e-6 * (1.0 + fd.abs()),
                    "program {p}: output {k}: jvp {d}, finite differences {fd}"
                );
            }
        }
    }
}
