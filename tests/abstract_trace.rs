//! Abstract (types-only) traces through the facade: the same IR as the eager trace, so
//! the same gradient, compiled to the same bits; value-dependent code fails clearly.

use jitad::workloads::{rosenbrock_tensor, MlpShape};
use jitad::{fori_loop, Float, Tensor, Type, Val};

/// Values in (−1, 1), deterministic.
fn numbers(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            2.0 * ((s >> 11) as f64 / (1u64 << 53) as f64) - 1.0
        })
        .collect()
}

/// Every result of `c` called on `ins`, as bits.
fn call_bits(c: &jitad::Compiled, ins: &[Vec<f64>]) -> Vec<Vec<u64>> {
    let ins: Vec<&[f64]> = ins.iter().map(Vec::as_slice).collect();
    let mut outs: Vec<Vec<f64>> = (c.result_types().iter())
        .map(|t| vec![0.0; t.num_elements()])
        .collect();
    let mut o: Vec<&mut [f64]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
    c.call_buffers(&ins, &mut o).unwrap();
    outs.iter()
        .map(|v| v.iter().map(|x| x.to_bits()).collect())
        .collect()
}

#[test]
fn mlp_abstract_gradient_compiles_to_the_eager_bits() {
    let shape = MlpShape {
        batch: 7,
        inputs: 5,
        hidden: 6,
    };
    let p = shape.init(3);
    let x = numbers(shape.batch * shape.inputs, 1);
    let y = numbers(shape.batch, 2);
    let eager = shape.trace(&p, &x, &y).unwrap();
    let abs = shape.trace_abstract().unwrap();
    assert_eq!(eager.to_jir(), abs.to_jir());
    let wrt = [0, 1, 2, 3, 4, 5];
    let (ge, ga) = (eager.grad_wrt(&wrt).unwrap(), abs.grad_wrt(&wrt).unwrap());
    assert_eq!(ge.to_jir(), ga.to_jir());
    let mut ins: Vec<Vec<f64>> = Vec::new();
    let mut rest = &p[..];
    for len in shape.param_lens() {
        let (h, t) = rest.split_at(len);
        ins.push(h.to_vec());
        rest = t;
    }
    ins.push(x.clone());
    ins.push(y.clone());
    let (ce, ca) = (ge.compile().unwrap(), ga.compile().unwrap());
    let bits = call_bits(&ca, &ins);
    assert_eq!(call_bits(&ce, &ins), bits);
    // And the interpreter's bits, on the abstract trace.
    let want = ga.eval(&shape.args(&p, &x, &y).unwrap()).unwrap();
    let loss = want[0].as_f64().unwrap();
    assert_eq!(bits[0], [loss.to_bits()]);
}

#[test]
#[allow(clippy::single_range_in_vec_init)]
fn rosenbrock_abstract_gradient_compiles_to_the_eager_bits() {
    let n = 37;
    let x = numbers(n, 5);
    let ty = Type::Tensor(
        jitad::ir::ScalarType::F64,
        jitad::ir::Shape::new(&[n]).unwrap(),
    );
    let f = |a: &[Tensor]| vec![rosenbrock_tensor(&a[0], n)];
    let xv = Val::tensor(jitad::ir::tensor::Tensor::f64(&[n], x.clone()).unwrap());
    let eager = jitad::trace_tensors("rosen", &[xv], f).unwrap();
    let abs = jitad::trace_tensors_abstract("rosen", &[ty], f).unwrap();
    assert_eq!(eager.to_jir(), abs.to_jir());
    let (ce, ca) = (
        eager.grad().unwrap().compile().unwrap(),
        abs.grad().unwrap().compile().unwrap(),
    );
    let x = [x];
    assert_eq!(call_bits(&ce, &x), call_bits(&ca, &x));
}

#[test]
fn scalar_loop_abstract_gradient_compiles_to_the_eager_bits() {
    // 1000 Euler steps, never run while tracing abstractly.
    let f = |p: &[jitad::Var]| {
        let k = p[1];
        vec![fori_loop(0, 1000, p[0], |_, x| {
            x - 0.001 * k * x * x.tanh()
        })]
    };
    let eager = jitad::trace("decay", &[1.0, 0.5], f).unwrap();
    let abs = jitad::trace_abstract("decay", 2, f).unwrap();
    assert_eq!(eager.to_jir(), abs.to_jir());
    let (ge, ga) = (eager.grad().unwrap(), abs.grad().unwrap());
    let (mut oe, mut oa) = ([0.0; 3], [0.0; 3]);
    ge.compile()
        .unwrap()
        .call_f64(&[0.8, 0.3], &mut oe)
        .unwrap();
    ga.compile()
        .unwrap()
        .call_f64(&[0.8, 0.3], &mut oa)
        .unwrap();
    assert_eq!(oe.map(f64::to_bits), oa.map(f64::to_bits));
}

#[test]
fn value_dependent_code_fails_an_abstract_trace() {
    let e = jitad::trace_abstract("abs", 1, |p| vec![if p[0] < 0.0 { -p[0] } else { p[0] }])
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("@abs") && msg.contains("`lt`"), "{msg}");
    assert!(msg.contains("abstract"), "{msg}");
    // Branch-free, it traces.
    let t = jitad::trace_abstract("abs", 1, |p| vec![p[0].abs()]).unwrap();
    assert_eq!(t.eval_f64(&[-2.0]).unwrap(), [2.0]);
}
