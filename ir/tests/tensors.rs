//! Tensor ops in the interpreter: every op against hand-computed values or a naive
//! reference, loops carrying tensors, dynamic indices, and the parse, verify and
//! evaluation errors.

use jitad_ir::interp::{eval, EvalError, Val};
use jitad_ir::tensor::{Tensor, TensorData};
use jitad_ir::{parse_module, verify_module, Module, ParseErrorKind, Type};

fn module(text: &str) -> Module {
    let m = parse_module(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    verify_module(&m).unwrap_or_else(|e| panic!("{e}\n{text}"));
    m
}

fn t(dims: &[usize], data: &[f64]) -> Val {
    Val::tensor(Tensor::f64(dims, data.to_vec()).unwrap())
}

/// The elements and dims of an `f64` tensor result.
fn f64s(v: &Val) -> (Vec<f64>, Vec<u32>) {
    let t = v.as_tensor().unwrap_or_else(|| panic!("not a tensor: {v}"));
    (
        t.as_f64().expect("f64 elements").to_vec(),
        t.shape().dims().to_vec(),
    )
}

/// Runs `@f` of a one-function module, one result.
fn run1(text: &str, args: &[Val]) -> Val {
    let m = module(text);
    let mut r = eval(&m, "f", args).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(r.len(), 1);
    r.pop().unwrap()
}

const A: [f64; 6] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // [[1,2,3],[4,5,6]]
const V: [f64; 3] = [10.0, 20.0, 30.0];

#[test]
fn broadcasting_elementwise() {
    let r = run1(
        "func @f(%a: f64[2,3], %v: f64[3]) -> f64[2,3] {\n %r = add %a, %v\n ret %r\n}",
        &[t(&[2, 3], &A), t(&[3], &V)],
    );
    assert_eq!(
        f64s(&r),
        (vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0], vec![2, 3])
    );
    // A scalar broadcasts, on either side.
    let r = run1(
        "func @f(%a: f64[2,3], %s: f64) -> f64[2,3] {\n %r = sub %s, %a\n ret %r\n}",
        &[t(&[2, 3], &A), Val::F64(1.0)],
    );
    assert_eq!(f64s(&r).0, vec![0.0, -1.0, -2.0, -3.0, -4.0, -5.0]);
    // A column [2,1] against a row [3] gives [2,3].
    let r = run1(
        "func @f(%c: f64[2,1], %v: f64[3]) -> f64[2,3] {\n %r = mul %c, %v\n ret %r\n}",
        &[t(&[2, 1], &[1.0, 2.0]), t(&[3], &V)],
    );
    assert_eq!(
        f64s(&r),
        (vec![10.0, 20.0, 30.0, 20.0, 40.0, 60.0], vec![2, 3])
    );
    // Unary ops use the scalar semantics element by element.
    let r = run1(
        "func @f(%a: f64[2,3]) -> f64[2,3] {\n %e = exp %a\n %r = powi %e, 2\n ret %r\n}",
        &[t(&[2, 3], &A)],
    );
    let want: Vec<f64> = A
        .iter()
        .map(|&x| jitad_ir::math::f64m::powi(jitad_ir::math::f64m::exp(x), 2))
        .collect();
    assert_eq!(f64s(&r).0, want);
    // fma with three broadcast operands.
    let r = run1(
        "func @f(%a: f64[2,3], %v: f64[3], %s: f64) -> f64[2,3] {\n %r = fma %a, %v, %s\n ret %r\n}",
        &[t(&[2, 3], &A), t(&[3], &V), Val::F64(0.5)],
    );
    assert_eq!(f64s(&r).0, vec![10.5, 40.5, 90.5, 40.5, 100.5, 180.5]);
}

#[test]
fn comparisons_select_and_cast() {
    let text = "func @f(%a: f64[2,3], %s: f64) -> f64[2,3] {
      %c = gt %a, %s
      %z = const 0.0 : f64
      %r = select %c, %a, %z
      %k = cast %c : f64
      %out = add %r, %k
      ret %out
    }";
    let r = run1(text, &[t(&[2, 3], &A), Val::F64(3.0)]);
    assert_eq!(f64s(&r).0, vec![0.0, 0.0, 0.0, 5.0, 6.0, 7.0]);
    // A bool tensor result.
    let m = module("func @f(%a: f64[3], %b: f64[3]) -> bool[3] {\n %c = le %a, %b\n ret %c\n}");
    let r = eval(
        &m,
        "f",
        &[t(&[3], &[1.0, 5.0, f64::NAN]), t(&[3], &[2.0, 2.0, 1.0])],
    )
    .unwrap();
    let tr = r[0].as_tensor().unwrap();
    assert_eq!(tr.data(), &TensorData::Bool(vec![true, false, false]));
}

#[test]
fn fill_broadcast_iota() {
    let r = run1(
        "func @f() -> f64[2,2] {\n %r = fill 1.5 : f64[2,2]\n ret %r\n}",
        &[],
    );
    assert_eq!(f64s(&r), (vec![1.5; 4], vec![2, 2]));
    let r = run1(
        "func @f(%v: f64[3]) -> f64[2,3] {\n %r = broadcast %v : f64[2,3]\n ret %r\n}",
        &[t(&[3], &V)],
    );
    assert_eq!(f64s(&r).0, vec![10.0, 20.0, 30.0, 10.0, 20.0, 30.0]);
    let r = run1(
        "func @f() -> f64[2,3] {\n %r = iota axis 1 : f64[2,3]\n ret %r\n}",
        &[],
    );
    assert_eq!(f64s(&r).0, vec![0.0, 1.0, 2.0, 0.0, 1.0, 2.0]);
    let m = module("func @f() -> i64[2,3] {\n %r = iota axis 0 : i64[2,3]\n ret %r\n}");
    let r = eval(&m, "f", &[]).unwrap();
    assert_eq!(
        r[0].as_tensor().unwrap().data(),
        &TensorData::I64(vec![0, 0, 0, 1, 1, 1])
    );
}

#[test]
fn reductions() {
    let text = "func @f(%a: f64[2,3]) -> (f64[2], f64[3], f64, f64[3], f64, f64[2], f64[2,3]) {
      %s1 = sum %a, axes [1]
      %s0 = sum %a, axes [0]
      %all = sum %a, axes [1, 0]
      %m = mean %a, axes [0]
      %mx = reduce_max %a, axes [0, 1]
      %mn = reduce_min %a, axes [1]
      %id = sum %a, axes []
      ret %s1, %s0, %all, %m, %mx, %mn, %id
    }";
    let m = module(text);
    let r = eval(&m, "f", &[t(&[2, 3], &A)]).unwrap();
    assert_eq!(f64s(&r[0]), (vec![6.0, 15.0], vec![2]));
    assert_eq!(f64s(&r[1]).0, vec![5.0, 7.0, 9.0]);
    assert_eq!(r[2], Val::F64(21.0));
    assert_eq!(f64s(&r[3]).0, vec![2.5, 3.5, 4.5]);
    assert_eq!(r[4], Val::F64(6.0));
    assert_eq!(f64s(&r[5]).0, vec![1.0, 4.0]);
    assert_eq!(f64s(&r[6]).0, A.to_vec());
}

#[test]
fn logsumexp_against_naive_and_at_infinities() {
    let text = "func @f(%a: f64[2,3]) -> f64[2] {\n %r = logsumexp %a, axes [1]\n ret %r\n}";
    let r = run1(text, &[t(&[2, 3], &A)]);
    let naive = |row: &[f64]| row.iter().map(|x| x.exp()).sum::<f64>().ln();
    let got = f64s(&r).0;
    for (g, row) in got.iter().zip(A.chunks(3)) {
        assert!(
            (g - naive(row)).abs() <= 1e-14 * naive(row).abs(),
            "{g} vs {}",
            naive(row)
        );
    }
    // Large terms do not overflow; all -inf gives -inf; +inf gives +inf.
    let r = run1(
        text,
        &[t(
            &[2, 3],
            &[
                1000.0,
                1000.0,
                1000.0,
                f64::NEG_INFINITY,
                f64::NEG_INFINITY,
                f64::NEG_INFINITY,
            ],
        )],
    );
    let got = f64s(&r).0;
    assert!((got[0] - (1000.0 + 3f64.ln())).abs() < 1e-12, "{}", got[0]);
    assert_eq!(got[1], f64::NEG_INFINITY);
}

#[test]
fn matmul_and_dot_by_hand() {
    // [[1,2,3],[4,5,6]] x [[1,0],[0,1],[1,1]] = [[4,5],[10,11]].
    let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
    let r = run1(
        "func @f(%a: f64[2,3], %b: f64[3,2]) -> f64[2,2] {\n %r = matmul %a, %b\n ret %r\n}",
        &[t(&[2, 3], &A), t(&[3, 2], &b)],
    );
    assert_eq!(f64s(&r), (vec![4.0, 5.0, 10.0, 11.0], vec![2, 2]));
    // Matrix x vector and vector x matrix.
    let r = run1(
        "func @f(%a: f64[2,3], %v: f64[3]) -> f64[2] {\n %r = matmul %a, %v\n ret %r\n}",
        &[t(&[2, 3], &A), t(&[3], &[1.0, 1.0, 1.0])],
    );
    assert_eq!(f64s(&r).0, vec![6.0, 15.0]);
    let r = run1(
        "func @f(%u: f64[2], %a: f64[2,3]) -> f64[3] {\n %r = matmul %u, %a\n ret %r\n}",
        &[t(&[2], &[1.0, -1.0]), t(&[2, 3], &A)],
    );
    assert_eq!(f64s(&r).0, vec![-3.0, -3.0, -3.0]);
    // A leading batch dimension: batch 0 is A, batch 1 is 2·A, times [[1],[1],[1]].
    let batch: Vec<f64> = A
        .iter()
        .chain(A.iter())
        .enumerate()
        .map(|(i, &x)| if i < 6 { x } else { 2.0 * x })
        .collect();
    let r = run1(
        "func @f(%a: f64[2,2,3], %b: f64[3,1]) -> f64[2,2,1] {\n %r = matmul %a, %b\n ret %r\n}",
        &[t(&[2, 2, 3], &batch), t(&[3, 1], &[1.0, 1.0, 1.0])],
    );
    assert_eq!(f64s(&r), (vec![6.0, 15.0, 12.0, 30.0], vec![2, 2, 1]));
    // Against a naive triple loop on a less regular case.
    let (m, k, n) = (3usize, 4usize, 5usize);
    let x: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
    let y: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.11).cos()).collect();
    let r = run1(
        "func @f(%a: f64[3,4], %b: f64[4,5]) -> f64[3,5] {\n %r = matmul %a, %b\n ret %r\n}",
        &[t(&[m, k], &x), t(&[k, n], &y)],
    );
    let got = f64s(&r).0;
    for i in 0..m {
        for j in 0..n {
            let want: f64 = (0..k).map(|p| x[i * k + p] * y[p * n + j]).sum();
            assert!((got[i * n + j] - want).abs() < 1e-14, "({i},{j})");
        }
    }
    let r = run1(
        "func @f(%u: f64[3], %v: f64[3]) -> f64 {\n %r = dot %u, %v\n ret %r\n}",
        &[t(&[3], &[1.0, 2.0, 3.0]), t(&[3], &[1.0, 2.0, 3.0])],
    );
    assert_eq!(r, Val::F64(14.0));
}

#[test]
fn structural_ops() {
    let text = "func @f(%a: f64[2,3], %v: f64[3], %s: f64) -> (f64[3,2], f64[3,2], f64[2,2], f64[2,2], f64[6], f64[4,3], f64[2,6]) {
      %tr = transpose %a, perm [1, 0]
      %rs = reshape %a : f64[3,2]
      %sl = slice %a [0:2, 1:3]
      %st = slice %a [0:2, 0:3:2]
      %pd = pad %v, %s [1:2]
      %c0 = concat %a, %a, axis 0
      %c1 = concat %a, %a, axis 1
      ret %tr, %rs, %sl, %st, %pd, %c0, %c1
    }";
    let m = module(text);
    let r = eval(&m, "f", &[t(&[2, 3], &A), t(&[3], &V), Val::F64(0.0)]).unwrap();
    assert_eq!(
        f64s(&r[0]),
        (vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0], vec![3, 2])
    );
    assert_eq!(f64s(&r[1]), (A.to_vec(), vec![3, 2]));
    assert_eq!(f64s(&r[2]).0, vec![2.0, 3.0, 5.0, 6.0]);
    assert_eq!(f64s(&r[3]).0, vec![1.0, 3.0, 4.0, 6.0]);
    assert_eq!(f64s(&r[4]).0, vec![0.0, 10.0, 20.0, 30.0, 0.0, 0.0]);
    assert_eq!(f64s(&r[5]).0, [A, A].concat());
    assert_eq!(
        f64s(&r[6]).0,
        vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 4.0, 5.0, 6.0]
    );
}

#[test]
fn extract_insert_at_dynamic_indices() {
    let text = "func @f(%a: f64[2,3], %i: i64, %j: i64) -> (f64[3], f64, f64[2,3]) {
      %row = extract %a [%i]
      %x = extract %row [%j]
      %ten = const 10.0 : f64
      %y = mul %x, %ten
      %row2 = insert %y into %row [%j]
      %b = insert %row2 into %a [%i]
      ret %row, %x, %b
    }";
    let m = module(text);
    let r = eval(&m, "f", &[t(&[2, 3], &A), Val::I64(1), Val::I64(2)]).unwrap();
    assert_eq!(f64s(&r[0]).0, vec![4.0, 5.0, 6.0]);
    assert_eq!(r[1], Val::F64(6.0));
    assert_eq!(f64s(&r[2]).0, vec![1.0, 2.0, 3.0, 4.0, 5.0, 60.0]);
    // Out of range, above and below: a clean error naming the index and the length.
    for (i, j) in [(2, 0), (-1, 0), (0, 3)] {
        let e = eval(&m, "f", &[t(&[2, 3], &A), Val::I64(i), Val::I64(j)]).unwrap_err();
        match e {
            EvalError::IndexOutOfRange { index, len, .. } => {
                assert_eq!((index, len), if i != 0 { (i, 2) } else { (j, 3) });
            }
            other => panic!("{other}"),
        }
    }
    // The input tensor is not modified by `insert` (functional update).
    let a = t(&[2, 3], &A);
    let r = eval(&m, "f", &[a.clone(), Val::I64(0), Val::I64(0)]).unwrap();
    assert_eq!(f64s(&a).0, A.to_vec());
    assert_eq!(f64s(&r[2]).0[0], 10.0);
}

#[test]
fn loops_carry_tensors() {
    let text = include_str!("../../tests/ir/tensors.jir");
    let m = module(text);
    let x: Vec<f64> = (0..12).map(|i| i as f64).collect();
    let r = eval(&m, "rows", &[t(&[4, 3], &x)]).unwrap();
    assert_eq!(
        f64s(&r[0]),
        (x.iter().map(|v| 2.0 * v).collect(), vec![4, 3])
    );
    // A loop with a dynamic trip count accumulating a tensor and a scalar.
    let text = "func @f(%v: f64[3], %n: i64) -> (f64[3], f64) {
      %z = fill 0.0 : f64[3]
      %s0 = const 0.0 : f64
      %acc, %s = loop %i in 0..%n (%a = %z : f64[3], %t = %s0 : f64) {
        %a2 = add %a, %v
        %d = sum %v, axes [0]
        %t2 = add %t, %d
        yield %a2, %t2
      }
      ret %acc, %s
    }";
    let m = module(text);
    let r = eval(&m, "f", &[t(&[3], &V), Val::I64(4)]).unwrap();
    assert_eq!(f64s(&r[0]).0, vec![40.0, 80.0, 120.0]);
    assert_eq!(r[1], Val::F64(240.0));
    // Zero trips: the inits.
    let r = eval(&m, "f", &[t(&[3], &V), Val::I64(0)]).unwrap();
    assert_eq!(f64s(&r[0]).0, vec![0.0; 3]);
}

#[test]
fn the_golden_tensor_program_runs() {
    let m = module(include_str!("../../tests/ir/tensors.jir"));
    let b: Vec<f64> = (0..12).map(|i| i as f64 * 0.5).collect();
    let r = eval(
        &m,
        "tensors",
        &[
            t(&[2, 3], &A),
            t(&[3, 4], &b),
            t(&[3], &V),
            Val::F64(2.0),
            Val::I64(1),
        ],
    )
    .unwrap();
    // %r0 = dot(v, v) + v[1] = 1400 + 20.
    assert_eq!(r[0], Val::F64(1420.0));
    assert_eq!(f64s(&r[2]).0, vec![4.0, 5.0, 6.0]);
    // %all = sum(a * 2) = 42.
    assert_eq!(r[3], Val::F64(42.0));
}

#[test]
fn calls_pass_tensors() {
    let text = "func @f(%a: f64[2,3]) -> f64 {
      %r = call @g(%a)
      ret %r
    }
    func @g(%x: f64[2,3]) -> f64 {
      %s = sum %x, axes [0, 1]
      ret %s
    }";
    assert_eq!(run1(text, &[t(&[2, 3], &A)]), Val::F64(21.0));
}

#[test]
fn arguments_are_checked_against_tensor_types() {
    let m = module("func @f(%a: f64[2,3]) -> f64[2,3] {\n ret %a\n}");
    let e = eval(&m, "f", &[t(&[3, 2], &A)]).unwrap_err();
    assert!(matches!(e, EvalError::ArgType { .. }), "{e}");
    assert!(
        e.to_string().contains("f64[3,2]") && e.to_string().contains("f64[2,3]"),
        "{e}"
    );
    let e = eval(&m, "f", &[Val::F64(1.0)]).unwrap_err();
    assert!(matches!(e, EvalError::ArgType { .. }), "{e}");
}

fn parse_err(text: &str) -> String {
    match parse_module(text) {
        Ok(_) => panic!("parsed: {text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn shape_errors_name_both_shapes() {
    let e =
        parse_err("func @f(%a: f64[2,3], %b: f64[4]) -> f64[2,3] {\n %r = add %a, %b\n ret %r\n}");
    assert!(e.contains("f64[2,3]") && e.contains("f64[4]"), "{e}");
    let e = parse_err(
        "func @f(%a: f64[2,3], %b: f64[2,3]) -> f64[2,3] {\n %r = matmul %a, %b\n ret %r\n}",
    );
    assert!(e.contains("f64[2,3]") && e.contains("matmul"), "{e}");
    let e = parse_err("func @f(%a: f64[2,3]) -> f64 {\n %r = sum %a, axes [2]\n ret %r\n}");
    assert!(e.contains("f64[2,3]") && e.contains("2"), "{e}");
    let e = parse_err("func @f(%a: f64[2,3]) -> f64[4] {\n %r = reshape %a : f64[4]\n ret %r\n}");
    assert!(e.contains("f64[2,3]") && e.contains("f64[4]"), "{e}");
    let e = parse_err("func @f(%a: f64[2,3]) -> f64[3] {\n %r = slice %a [0:4, 0:1]\n ret %r\n}");
    assert!(e.contains("f64[2,3]"), "{e}");
    let e = parse_err("func @f(%a: f64[2,3], %v: f64[2]) -> f64[2,3] {\n %i = const 0 : i64\n %r = insert %v into %a [%i]\n ret %r\n}");
    assert!(e.contains("f64[2]") && e.contains("f64[2,3]"), "{e}");
    let e = parse_err(
        "func @f(%a: f64[2,3]) -> f64[2,3] {\n %r = transpose %a, perm [0, 0]\n ret %r\n}",
    );
    assert!(e.contains("f64[2,3]"), "{e}");
    let e = parse_err("func @f(%a: f64[2,3], %b: f64[3,3]) -> f64[2,3] {\n %r = concat %a, %b, axis 1\n ret %r\n}");
    assert!(e.contains("f64[2,3]") && e.contains("f64[3,3]"), "{e}");
}

#[test]
fn syntax_and_layout_errors() {
    // Zero-size and oversized tensors have no layout.
    let e = parse_module("func @f(%a: f64[0]) -> f64 {\n %r = const 0.0 : f64\n ret %r\n}")
        .unwrap_err();
    assert!(matches!(e.kind, ParseErrorKind::Type(_)), "{e}");
    assert!(e.to_string().contains("zero-size"), "{e}");
    let e =
        parse_err("func @f(%a: f64[1000000,1000000]) -> f64 {\n %r = const 0.0 : f64\n ret %r\n}");
    assert!(
        e.contains("f64[1000000,1000000]") && e.contains("bytes"),
        "{e}"
    );
    // The max reduction is `reduce_max`: `max` is binary.
    let e = parse_err("func @f(%a: f64[2]) -> f64 {\n %r = max %a, axes [0]\n ret %r\n}");
    assert!(e.contains("expected"), "{e}");
    // `fill` takes a tensor type, `const` a scalar one.
    let e = parse_err("func @f() -> f64 {\n %r = fill 0.0 : f64\n ret %r\n}");
    assert!(e.contains("tensor"), "{e}");
    let e = parse_err("func @f() -> f64[2] {\n %r = const 0.0 : f64[2]\n ret %r\n}");
    assert!(e.contains("scalar"), "{e}");
    // Pad widths take no step; axes lists are short.
    let e =
        parse_err("func @f(%v: f64[2], %s: f64) -> f64[4] {\n %r = pad %v, %s [1:1:2]\n ret %r\n}");
    assert!(e.contains("pad"), "{e}");
    let e =
        parse_err("func @f(%v: f64[2]) -> f64 {\n %r = sum %v, axes [0, 1, 2, 3, 0]\n ret %r\n}");
    assert!(e.contains("axes"), "{e}");
    // The guard stays scalar.
    let e = parse_err("func @f(%a: f64[2]) -> f64 {\n %z = const 0.0 : f64\n %c = lt %a, %z\n guard %c\n ret %z\n}");
    assert!(e.contains("bool[2]"), "{e}");
}

#[test]
fn verifier_rejects_layoutless_values_built_directly() {
    // The builder path can hold a zero-size tensor type the parser refuses.
    let mut f = jitad_ir::Function::new(
        "f",
        jitad_ir::Signature {
            params: vec![Type::Tensor(
                jitad_ir::ScalarType::F64,
                jitad_ir::Shape::new(&[0]).unwrap(),
            )],
            results: vec![],
        },
    );
    let body = f.body;
    f.append_inst(body, jitad_ir::Op::Ret, vec![], &[], None);
    let e = jitad_ir::verify_function(&f, None).unwrap_err();
    assert!(e.to_string().contains("zero-size"), "{e}");
}

#[test]
fn tensor_values_print() {
    assert_eq!(t(&[2], &[1.0, 0.5]).to_string(), "f64[2] [1.0, 0.5]");
    assert_eq!(Val::F64(2.0).type_of(), Type::F64);
}

#[test]
fn a_tensor_larger_than_memory_is_an_error_not_an_abort() {
    // 2^40 bytes: a valid type (at most MAX_TENSOR_BYTES), more than this machine has.
    // Under `overcommit_memory = 1` the kernel promises any allocation and the test
    // could only be OOM-killed: skip it there.
    let always =
        std::fs::read_to_string("/proc/sys/vm/overcommit_memory").is_ok_and(|s| s.trim() == "1");
    if always {
        return;
    }
    let m = module("func @f() -> f64 {\n %z = fill 0.0 : f64[1024,1024,1024,128]\n %s = sum %z, axes [0, 1, 2, 3]\n ret %s\n}");
    let e = eval(&m, "f", &[]).unwrap_err();
    assert!(
        matches!(e, EvalError::OutOfMemory { bytes, .. } if bytes == 1 << 40),
        "{e}"
    );
}

#[test]
fn loop_drivers_carry_tensor_states() {
    // `tapeloop`/`revloop` states travel as one slot per element (`layout::state_slots`):
    // the recording and the reverse sweep see the tensor, and the snapshot bytes count
    // its elements.
    let m = module(
        "func @f(%v: f64[2]) -> (f64[2], f64[2]) {
          %s, %t = tapeloop 0..3 checkpoint store-all fwd @step (%v) caps ()
          %g = fill 1.0 : f64[2]
          %a = revloop 0..3 checkpoint store-all fwd @step bwd @back tape %t (%v) caps () seed (%g)
          ret %s, %a
        }
        func @step(%i: i64, %v: f64[2]) -> f64[2] {
          %two = const 2.0 : f64
          %w = mul %v, %two
          ret %w
        }
        func @back(%i: i64, %v: f64[2], %a: f64[2]) -> f64[2] {
          %two = const 2.0 : f64
          %b = mul %a, %two
          ret %b
        }",
    );
    let mut it = jitad_ir::Interpreter::new();
    let mut out = Vec::new();
    it.run(
        m.get("f").unwrap(),
        Some(&m),
        &[t(&[2], &[1.0, -3.0])],
        &mut out,
    )
    .unwrap();
    assert_eq!(out, vec![t(&[2], &[8.0, -24.0]), t(&[2], &[8.0, 8.0])]);
    assert_eq!(it.last_stats().peak_tape_bytes, 3 * 2 * 8);
}

#[test]
fn other_element_types() {
    // i64: wrapping sums, max, iota; f32: matmul and logsumexp at single precision.
    let m = module(
        "func @f(%v: i64[3]) -> (i64, i64, i64[3]) {
          %s = sum %v, axes [0]
          %m = reduce_max %v, axes [0]
          %i = iota axis 0 : i64[3]
          %p = mul %v, %i
          ret %s, %m, %p
        }",
    );
    let v = Val::tensor(
        Tensor::new(
            jitad_ir::Shape::new(&[3]).unwrap(),
            TensorData::I64(vec![i64::MAX, 1, -5]),
        )
        .unwrap(),
    );
    let r = eval(&m, "f", &[v]).unwrap();
    assert_eq!(r[0], Val::I64(i64::MAX.wrapping_add(1).wrapping_sub(5)));
    assert_eq!(r[1], Val::I64(i64::MAX));
    assert_eq!(
        r[2].as_tensor().unwrap().data(),
        &TensorData::I64(vec![0, 1, -10])
    );
    let m = module(
        "func @f(%a: f32[1,2], %b: f32[2,1]) -> (f32[1,1], f32) {
          %p = matmul %a, %b
          %l = logsumexp %a, axes [0, 1]
          ret %p, %l
        }",
    );
    let f32t = |dims: &[usize], d: Vec<f32>| {
        Val::tensor(Tensor::new(jitad_ir::Shape::new(dims).unwrap(), TensorData::F32(d)).unwrap())
    };
    let r = eval(
        &m,
        "f",
        &[f32t(&[1, 2], vec![1.0, 2.0]), f32t(&[2, 1], vec![3.0, 4.0])],
    )
    .unwrap();
    assert_eq!(
        r[0].as_tensor().unwrap().data(),
        &TensorData::F32(vec![11.0])
    );
    let Val::F32(l) = r[1] else {
        panic!("{}", r[1])
    };
    assert!(
        (l - (2.0 + (1.0f32 + (-1.0f32).exp()).ln())).abs() < 1e-6,
        "{l}"
    );
}

#[test]
fn values_stay_small() {
    // A tensor is one Arc pointer: scalars pay nothing for it.
    assert_eq!(std::mem::size_of::<Val>(), 16);
}
