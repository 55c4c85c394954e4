//! Compiled gradients of loops that carry tensors: `tapeloop`/`revloop` with tensor
//! states, captures and adjoints, compiled against the interpreter bit for bit (and
//! the checkpoint statistics equal) under every policy and trip count, checked against
//! finite differences and forward mode (the dot-product test).

use jitad_codegen::{compile_module, CallError, CompileOptions, Compiled};
use jitad_ir::checkpoint::{Policy, Stats};
use jitad_ir::interp::Val;
use jitad_ir::tensor::{Tensor, TensorData};
use jitad_ir::{parse_module, verify_module, Interpreter, Module, Type};
use jitad_passes::{grad, jvp, optimize_module, set_policy, vjp, OptOptions};

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
    let cstats = c
        .call_with_stats(args, &mut got)
        .unwrap_or_else(|e| panic!("JIT @{func}: {e}"));
    assert_eq!(bits(&got), bits(&want), "@{func}: JIT and interpreter differ");
    assert_eq!(cstats, istats, "@{func}: checkpoint statistics differ");
    (want, istats)
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

const MIXED: &str = "func @f(%x: f64[3], %w: f64[3], %a: f64, %n: i64) -> f64 {
  %r, %q = loop %i in 0..%n (%c = %x : f64[3], %s = %a : f64) {
    %p = mul %c, %w
    %t = sin %p
    %u = mul %t, %s
    %s2 = mul %s, %s
    %h = const 0.5 : f64
    %s3 = mul %s2, %h
    yield %u, %s3
  }
  %tt = sum %r, axes [0]
  %z = add %tt, %q
  ret %z
}";

#[test]
fn smoke() {
    let mut m = parse_module(MIXED).unwrap();
    let g = grad(&mut m, "f", &[0, 1, 2]).unwrap();
    optimize_module(&mut m, &OptOptions::default());
    verify_module(&m).unwrap();
    let c = compile(&m, &g);
    let x = Val::tensor(Tensor::f64(&[3], vec![0.5, 1.0, 1.5]).unwrap());
    let w = Val::tensor(Tensor::f64(&[3], vec![0.9, 1.1, 1.2]).unwrap());
    for n in [0, 1, 2, 7, 100] {
        let (out, st) = both(&m, &c, &g, &[x.clone(), w.clone(), Val::F64(0.8), Val::I64(n)]);
        eprintln!("{n}: {out:?} {st:?}");
    }
}
