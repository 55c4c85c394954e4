//! Tensor ops through the passes: tensor programs differentiate in both modes (every
//! op's rule is checked in `tensor_ad.rs`), inactive tensor code is kept as primal
//! code, and the clean-up passes (CSE, DCE, constant folding, simplification) keep
//! tensor programs verified and their values unchanged.

use jitad_ir::interp::{eval, Val};
use jitad_ir::tensor::Tensor;
use jitad_ir::{parse_module, verify_module, Module};
use jitad_passes::{grad, jvp, optimize_module, vjp, AdError, OptOptions};

fn m(src: &str) -> Module {
    let m = parse_module(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    verify_module(&m).unwrap();
    m
}

fn t(dims: &[usize], data: &[f64]) -> Val {
    Val::tensor(Tensor::f64(dims, data.to_vec()).unwrap())
}

#[test]
fn tensor_programs_differentiate_in_both_modes() {
    // d/dx sum(broadcast(x)) = 3; d/dx sum(v·x) = sum(v).
    let src = "func @f(%x: f64, %v: f64[3]) -> f64 {
      %b = broadcast %x : f64[3]
      %s = sum %b, axes [0]
      %p = mul %v, %x
      %q = sum %p, axes [0]
      %r = add %s, %q
      ret %r
    }";
    let args = [Val::F64(2.0), t(&[3], &[1.0, 2.0, 4.0])];
    let mut module = m(src);
    let g = grad(&mut module, "f", &[0, 1]).unwrap();
    let j = jvp(&mut module, "f", &[0]).unwrap();
    let v = vjp(&mut module, "f", &[1]).unwrap();
    verify_module(&module).unwrap();
    let out = eval(&module, &g, &args).unwrap();
    assert_eq!(
        out,
        vec![Val::F64(20.0), Val::F64(10.0), t(&[3], &[2.0, 2.0, 2.0])]
    );
    let mut jargs = args.to_vec();
    jargs.push(Val::F64(1.0));
    assert_eq!(
        eval(&module, &j, &jargs).unwrap(),
        vec![Val::F64(20.0), Val::F64(10.0)]
    );
    let mut vargs = args.to_vec();
    vargs.push(Val::F64(0.5));
    assert_eq!(
        eval(&module, &v, &vargs).unwrap(),
        vec![Val::F64(20.0), t(&[3], &[1.0, 1.0, 1.0])]
    );
    // `grad` wants one scalar result: a tensor result is refused by name.
    let mut module = m("func @f(%v: f64[3]) -> f64[3] {
      %e = exp %v
      ret %e
    }");
    assert!(matches!(
        grad(&mut module, "f", &[0]),
        Err(AdError::NotScalar { .. })
    ));
}

#[test]
fn inactive_tensor_code_is_kept_as_primal() {
    // d/dx (x² + sum(v)) = 2x; the tensor part depends on no active input.
    let src = "func @f(%x: f64, %v: f64[3]) -> f64 {
      %s = sum %v, axes [0]
      %q = mul %x, %x
      %r = add %q, %s
      ret %r
    }";
    let mut module = m(src);
    let g = grad(&mut module, "f", &[0]).unwrap();
    verify_module(&module).unwrap();
    optimize_module(&mut module, &OptOptions::default());
    verify_module(&module).unwrap();
    let out = eval(&module, &g, &[Val::F64(3.0), t(&[3], &[1.0, 2.0, 3.0])]).unwrap();
    assert_eq!(out, vec![Val::F64(15.0), Val::F64(6.0)]);
}

#[test]
fn clean_up_passes_keep_tensor_programs() {
    let src = "func @f(%a: f64[2,3], %b: f64[3,2], %s: f64) -> f64[2,2] {
      %m1 = matmul %a, %b
      %m2 = matmul %a, %b                 ; CSE merges the two products
      %dead = transpose %a, perm [1, 0]   ; DCE removes it
      %one = const 1.0 : f64
      %k = mul %s, %one
      %z = const 0.0 : f64
      %sel = select %z, %m1, %m1
      %t = mul %m1, %k
      %u = add %t, %m2
      %c = lt %u, %u
      %cz = cast %c : f64
      %r = add %u, %cz
      ret %r
    }";
    let src = src.replace("%sel = select %z, %m1, %m1\n", "");
    for fast_math in [false, true] {
        let mut module = m(&src);
        let args = [
            t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            t(&[3, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]),
            Val::F64(2.0),
        ];
        let before = eval(&module, "f", &args).unwrap();
        optimize_module(
            &mut module,
            &OptOptions {
                fast_math,
                ..OptOptions::default()
            },
        );
        verify_module(&module).unwrap_or_else(|e| panic!("{e}"));
        let after = eval(&module, "f", &args).unwrap();
        assert_eq!(before, after);
        let text = jitad_ir::print_module(&module);
        assert_eq!(text.matches("matmul").count(), 1, "{text}");
        assert!(!text.contains("transpose"), "{text}");
    }
    // Simplification does not replace a broadcast result by a scalar operand.
    let src = "func @f(%v: f64[3], %x: f64) -> (f64[3], bool[3], f64[3]) {
      %z = const 0.0 : f64
      %p = mul %v, %z
      %c = gt %v, %v
      %same = select %c, %x, %x
      ret %p, %c, %same
    }";
    let mut module = m(src);
    optimize_module(
        &mut module,
        &OptOptions {
            fast_math: true,
            ..OptOptions::default()
        },
    );
    verify_module(&module).unwrap_or_else(|e| panic!("{e}"));
    let out = eval(&module, "f", &[t(&[3], &[1.0, 2.0, 3.0]), Val::F64(4.0)]).unwrap();
    assert_eq!(out[2], t(&[3], &[4.0, 4.0, 4.0]));
    // Constant folding of a `select` whose condition folds to a constant and whose
    // chosen operand is a scalar (the other one a tensor): the scalar broadcast, not the
    // scalar itself (found by the random tensor programs of tests/random.rs).
    let src = "func @f(%x: f64, %v: f64[2]) -> (f64, f64[2]) {
      %c = gt %x, %x
      %z = const 0.0 : f64
      %s = select %c, %v, %z
      %r = sum %s, axes [0]
      %w = select %c, %v, %x
      ret %r, %w
    }";
    let mut module = m(src);
    let args = [Val::F64(1.5), t(&[2], &[1.0, 2.0])];
    let before = eval(&module, "f", &args).unwrap();
    optimize_module(&mut module, &OptOptions::default());
    verify_module(&module).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(eval(&module, "f", &args).unwrap(), before);
    assert_eq!(before[1], t(&[2], &[1.5, 1.5]));
}

#[test]
fn the_golden_tensor_file_survives_the_pipeline() {
    let mut module = m(include_str!("../../tests/ir/tensors.jir"));
    optimize_module(&mut module, &OptOptions::default());
    verify_module(&module).unwrap_or_else(|e| panic!("{e}"));
    let x: Vec<f64> = (0..12).map(|i| i as f64).collect();
    let out = eval(&module, "rows", &[t(&[4, 3], &x)]).unwrap();
    let want: Vec<f64> = x.iter().map(|v| 2.0 * v).collect();
    assert_eq!(out, vec![t(&[4, 3], &want)]);
}

#[test]
fn uniform_tensors_fold_and_simplify_without_losing_broadcasts() {
    let src = "func @f(%v: f64[3], %s: f64) -> (f64[3], f64[3], f64[3], f64[3], f64[2,3]) {
      %two = fill 2.0 : f64[3]
      %one = fill 1.0 : f64[3]
      %m1 = fill -1.0 : f64[3]
      %three = add %two, %one              ; folds to fill 3.0
      %same = mul %v, %one                 ; simplifies to %v
      %ns = mul %s, %m1                    ; stays: `neg %s` would be a scalar
      %c = const 0.5 : f64
      %b = broadcast %c : f64[2,3]
      %t = transpose %b, perm [1, 0]       ; uniform: folds
      %e = exp %t
      %r = reshape %e : f64[2,3]
      ret %three, %same, %ns, %v, %r
    }";
    let mut module = m(src);
    let args = [t(&[3], &[1.0, -2.0, 0.5]), Val::F64(4.0)];
    let before = eval(&module, "f", &args).unwrap();
    optimize_module(&mut module, &OptOptions::default());
    verify_module(&module).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(eval(&module, "f", &args).unwrap(), before);
    let text = jitad_ir::print_module(&module);
    assert!(text.contains("fill 3.0 : f64[3]"), "{text}");
    assert!(
        !text.contains("transpose") && !text.contains("exp"),
        "{text}"
    );
    assert!(text.contains("mul %s"), "{text}");
    assert!(text.contains("ret %three, %v, %ns, %v, %r"), "{text}");
}

/// `concat` with uniform fills on its sides becomes a `pad` (a stencil's shifted copy),
/// with the same values bit for bit (a `-0.0` fill is not a `0.0` one), also inside a
/// loop body and for an axis other than the first; fills of different constants, a
/// fill between two parts, or none at all keep the `concat`.
#[test]
fn concats_with_constant_sides_become_pads() {
    let src = "func @f(%u: f64[4], %m: f64[2,3], %n: i64) -> (f64[5], f64[7], f64[2,5], f64[6], f64[6], f64[8], f64[4], f64[9]) {
      %z = fill 0.0 : f64[1]
      %z2 = fill 0.0 : f64[2]
      %nz = fill -0.0 : f64[1]
      %zm = fill 1.5 : f64[2,2]
      %left = concat %z, %u, axis 0
      %both = concat %z, %u, %z2, axis 0
      %cols = concat %m, %zm, axis 1
      %mixed = concat %nz, %u, %z, axis 0
      %mid = concat %u, %z, %u, axis 0
      %none = concat %u, %u, axis 0
      %s = loop %j in 0..%n (%c = %u : f64[4]) {
        %l = slice %c [0:3]
        %sh = concat %z, %l, axis 0
        %d = add %c, %sh
        yield %d
      }
      %e = concat %nz, %left, axis 0
      ret %left, %both, %cols, %mixed, %e, %none, %s, %mid
    }";
    let mut module = m(src);
    let args = [
        t(&[4], &[1.0, -2.0, 0.5, 3.0]),
        t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        Val::I64(3),
    ];
    let before = eval(&module, "f", &args).unwrap();
    optimize_module(&mut module, &OptOptions::default());
    verify_module(&module).unwrap_or_else(|e| panic!("{e}"));
    let after = eval(&module, "f", &args).unwrap();
    // Bit for bit, signs of zeros included.
    let bits = |v: &[Val]| -> Vec<Vec<u64>> {
        v.iter()
            .map(|x| {
                x.as_tensor()
                    .and_then(|t| t.as_f64())
                    .map(|d| d.iter().map(|e| e.to_bits()).collect())
                    .unwrap_or_default()
            })
            .collect()
    };
    assert_eq!(bits(&after), bits(&before));
    let text = jitad_ir::print_module(&module);
    for want in [
        "%left = pad %u,",
        "[1:0]",
        "%both = pad %u,",
        "[1:2]",
        "%cols = pad %m,",
        "[0:0, 0:2]",
        "%sh = pad %l,",
        "%mid = concat",
        "%none = concat",
        "%mixed = concat",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
}
