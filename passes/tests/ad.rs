//! The AD transforms end to end: conventions at the edges, NaN-safe select, loops,
//! calls, errors, activity, and second derivatives.

mod common;
use common::*;
use jitad_ir::{parse_module, print_module, Module};
use jitad_passes::{grad, hessian, hvp, jvp, optimize_module, vjp, AdError, OptOptions};

fn m(src: &str) -> Module {
    parse_module(src).unwrap_or_else(|e| panic!("{e}\n{src}"))
}

/// Gradient of `@f` (all params) at `x`, after optimisation; also checks the raw one
/// agrees bit for bit.
fn gradient(src: &str, x: &[f64]) -> Vec<f64> {
    let mut module = m(src);
    let g = grad(&mut module, "f", &(0..x.len()).collect::<Vec<_>>()).unwrap();
    verified(&module);
    let raw = eval(&module, &g, x);
    optimize_module(&mut module, &OptOptions::default());
    verified(&module);
    let opt = eval(&module, &g, x);
    for (a, b) in raw.iter().zip(&opt) {
        assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
    }
    opt[1..].to_vec()
}

#[test]
fn double_where_gives_zero_not_nan() {
    // d/dx select(x > 0, sqrt x, 0) at x = -1 is 0 (and 1/(2 sqrt x) at x = 4).
    let src = "func @f(%x: f64) -> f64 {
  %z = const 0.0 : f64
  %c = gt %x, %z
  %s = sqrt %x
  %y = select %c, %s, %z
  ret %y
}";
    assert_eq!(gradient(src, &[-1.0]), vec![0.0]);
    assert_eq!(gradient(src, &[4.0]), vec![0.25]);
    // Deeper: the untaken branch is log(sqrt(x)) * x, feeding through several ops.
    let src = "func @f(%x: f64) -> f64 {
  %z = const 0.0 : f64
  %c = gt %x, %z
  %s = sqrt %x
  %l = log %s
  %p = mul %l, %x
  %y = select %c, %p, %x
  ret %y
}";
    assert_eq!(gradient(src, &[-2.0]), vec![1.0]);
    // Nested selects and two selects sharing the untaken computation.
    let src = "func @f(%x: f64) -> f64 {
  %z = const 0.0 : f64
  %one = const 1.0 : f64
  %c = gt %x, %z
  %d = lt %x, %one
  %s = sqrt %x
  %i = select %d, %s, %z
  %o = select %c, %i, %z
  %w = select %c, %s, %x
  %y = add %o, %w
  ret %y
}";
    assert_eq!(gradient(src, &[-3.0]), vec![1.0]);
    let g = gradient(src, &[0.25]);
    assert!(close(g[0], 2.0, 1e-15), "{g:?}"); // two sqrt branches: 2 · 1/(2·0.5)
}

#[test]
fn conventions_at_non_differentiable_points() {
    // abs at 0: 0 (either zero).
    let abs = "func @f(%x: f64) -> f64 {\n  %y = abs %x\n  ret %y\n}";
    assert_eq!(gradient(abs, &[0.0]), vec![0.0]);
    assert_eq!(gradient(abs, &[-0.0]), vec![0.0]);
    assert_eq!(gradient(abs, &[-2.0]), vec![-1.0]);
    // min/max ties: everything to the first operand.
    let min = "func @f(%x: f64, %y: f64) -> f64 {\n  %m = min %x, %y\n  ret %m\n}";
    assert_eq!(gradient(min, &[1.0, 1.0]), vec![1.0, 0.0]);
    assert_eq!(gradient(min, &[2.0, 1.0]), vec![0.0, 1.0]);
    let max = "func @f(%x: f64, %y: f64) -> f64 {\n  %m = max %x, %y\n  ret %m\n}";
    assert_eq!(gradient(max, &[1.0, 1.0]), vec![1.0, 0.0]);
    assert_eq!(gradient(max, &[1.0, 2.0]), vec![0.0, 1.0]);
    // relu as max(x, 0) at 0: 1 (the tie goes to x).
    let relu = "func @f(%x: f64) -> f64 {\n  %z = const 0.0 : f64\n  %m = max %x, %z\n  ret %m\n}";
    assert_eq!(gradient(relu, &[0.0]), vec![1.0]);
    assert_eq!(gradient(relu, &[-1.0]), vec![0.0]);
    // sqrt at 0: +inf.
    let sqrt = "func @f(%x: f64) -> f64 {\n  %y = sqrt %x\n  ret %y\n}";
    assert_eq!(gradient(sqrt, &[0.0]), vec![f64::INFINITY]);
    // pow at 0: d/da 0^b = b·0^(b-1); d/db a^b = 0 at a = 0; d/da a^0 = 0 everywhere.
    let pow = "func @f(%a: f64, %b: f64) -> f64 {\n  %y = pow %a, %b\n  ret %y\n}";
    assert_eq!(gradient(pow, &[0.0, 2.0]), vec![0.0, 0.0]);
    assert_eq!(gradient(pow, &[0.0, 1.0]), vec![1.0, 0.0]);
    assert_eq!(gradient(pow, &[0.0, 0.0]), vec![0.0, 0.0]);
    let g = gradient(pow, &[3.0, 0.0]);
    assert!(g[0] == 0.0 && close(g[1], 3f64.ln(), 1e-15), "{g:?}");
    let g = gradient(pow, &[0.0, 0.5]);
    assert_eq!(g, vec![f64::INFINITY, 0.0]);
}

#[test]
fn loop_jvp_matches_closed_form() {
    // x ← x·a, n times (n dynamic): y = x0·aⁿ, dy = aⁿ·dx0 + n·x0·aⁿ⁻¹·da. Nested loop
    // adds the inner index as a constant.
    let src = "func @f(%x: f64, %a: f64, %n: i64) -> f64 {
  %r = loop %i in 0..%n (%c = %x : f64) {
    %c2 = mul %c, %a
    %q = loop %j in 0..2 (%d = %c2 : f64) {
      %d2 = add %d, %a
      %d3 = sub %d2, %a
      yield %d3
    }
    yield %q
  }
  ret %r
}";
    let mut module = m(src);
    let j = jvp(&mut module, "f", &[0, 1]).unwrap();
    verified(&module);
    optimize_module(&mut module, &OptOptions::default());
    verified(&module);
    let f = module.get(&j).unwrap();
    let args = [
        jitad_ir::Val::F64(1.5),
        jitad_ir::Val::F64(0.5),
        jitad_ir::Val::I64(4),
        jitad_ir::Val::F64(0.25),
        jitad_ir::Val::F64(-2.0),
    ];
    let out: Vec<f64> = jitad_ir::interp::eval_function(f, Some(&module), &args)
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let (x0, a, n, dx, da) = (1.5f64, 0.5f64, 4.0, 0.25, -2.0);
    assert!(close(out[0], x0 * a.powi(4), 1e-14));
    let want = a.powi(4) * dx + n * x0 * a.powi(3) * da;
    assert!(close(out[1], want, 1e-14), "{} vs {want}", out[1]);
}

#[test]
fn calls_in_forward_and_reverse_mode() {
    let src = "func @h(%u: f64, %v: f64) -> (f64, f64) {
  %p = mul %u, %v
  %s = sin %u
  ret %p, %s
}

func @f(%x: f64, %y: f64) -> f64 {
  %a, %b = call @h(%x, %y)
  %c, %d = call @h(%a, %x)
  %r = add %b, %c
  %t = mul %r, %d
  ret %t
}";
    let mut module = m(src);
    let g = grad(&mut module, "f", &[0, 1]).unwrap();
    let j = jvp(&mut module, "f", &[0, 1]).unwrap();
    let v = vjp(&mut module, "f", &[0]).unwrap();
    verified(&module);
    assert!(module.get("h.vjp").is_some() && module.get("h.jvp").is_some());
    optimize_module(&mut module, &OptOptions::default());
    verified(&module);
    let x = [0.7, -1.3];
    let gr = eval(&module, &g, &x);
    for i in 0..2 {
        let mut u = [0.0, 0.0];
        u[i] = 1.0;
        let fd = fd_dir(&module, "f", &x, &u, 0, 1e-6);
        let fw = eval(&module, &j, &[x[0], x[1], u[0], u[1]]);
        assert!(close(fw[1], fd, 1e-7), "jvp {} vs fd {fd}", fw[1]);
        assert!(close(gr[1 + i], fw[1], 1e-13));
    }
    // vjp wrt x only, seeded with 2: 2·∂f/∂x.
    let vr = eval(&module, &v, &[x[0], x[1], 2.0]);
    assert_eq!(vr.len(), 2);
    assert!(close(vr[1], 2.0 * gr[1], 1e-14));
}

#[test]
fn reverse_mode_through_loops() {
    let src = "func @f(%x: f64) -> f64 {
  %r = loop %i in 0..3 (%c = %x : f64) {
    %c2 = mul %c, %c
    yield %c2
  }
  ret %r
}";
    // f = x^8: f' = 8x^7.
    let mut module = m(src);
    let g = grad(&mut module, "f", &[0]).unwrap();
    verified(&module);
    let out = eval(&module, &g, &[1.1]);
    assert_eq!(out[0], ((1.1f64 * 1.1).powi(2)).powi(2));
    assert!(close(out[1], 8.0 * 1.1f64.powi(7), 1e-14), "{out:?}");
    // Forward over reverse through the loop: f'' = 56x^6.
    let h = jitad_passes::hvp(&mut module, "f", &[0]).unwrap();
    verified(&module);
    let out = eval(&module, &h, &[1.1, 1.0]);
    assert!(close(out[2], 56.0 * 1.1f64.powi(6), 1e-13), "{out:?}");
    // An inactive loop is copied, and no revloop is made.
    let src = "func @f(%x: f64, %k: f64) -> f64 {
  %r = loop %i in 0..3 (%c = %k : f64) {
    %c2 = mul %c, %c
    yield %c2
  }
  %y = mul %r, %x
  ret %y
}";
    let mut module = m(src);
    let g = grad(&mut module, "f", &[0]).unwrap();
    assert_eq!(eval(&module, &g, &[2.0, 1.5])[1], 1.5f64.powi(8));
    assert!(!print_module(&module).contains("revloop"));
}

#[test]
fn bad_requests_are_errors() {
    let src = "func @f(%x: f64, %n: i64) -> (f64, f64) {\n  %y = mul %x, %x\n  ret %y, %y\n}";
    let mut module = m(src);
    assert!(matches!(
        jvp(&mut module, "g", &[0]),
        Err(AdError::UnknownFunction(_))
    ));
    assert!(matches!(
        jvp(&mut module, "f", &[1]),
        Err(AdError::NotDifferentiable { .. })
    ));
    assert!(matches!(
        jvp(&mut module, "f", &[5]),
        Err(AdError::WrtOutOfRange { .. })
    ));
    assert!(matches!(
        vjp(&mut module, "f", &[0, 0]),
        Err(AdError::WrtDuplicate { .. })
    ));
    assert!(matches!(
        grad(&mut module, "f", &[0]),
        Err(AdError::NotScalar { .. })
    ));
    // An unverifiable function is refused, not differentiated.
    let mut bad = module.clone();
    let f = bad.get_mut("f").unwrap();
    let ret = f.ret_inst().unwrap();
    f.insts[ret].args.push(jitad_ir::Value::from_u32(999));
    assert!(matches!(
        jvp(&mut bad, "f", &[0]),
        Err(AdError::Invalid { .. })
    ));
    // Partial wrt gets a spelled-out name; vjp of a two-result function works.
    let v = vjp(&mut module, "f", &[0]).unwrap();
    assert_eq!(v, "f.vjp");
    assert_eq!(
        eval_mixed(&module, &v),
        vec![9.0, 9.0, 6.0 * 1.0 + 6.0 * 2.0]
    );
}

fn eval_mixed(module: &Module, f: &str) -> Vec<f64> {
    use jitad_ir::Val;
    jitad_ir::interp::eval(
        module,
        f,
        &[Val::F64(3.0), Val::I64(1), Val::F64(1.0), Val::F64(2.0)],
    )
    .unwrap()
    .iter()
    .map(|v| v.as_f64().unwrap())
    .collect()
}

#[test]
fn activity_drops_inactive_derivative_code() {
    // Only x is active: nothing of k's chain gets tangent code; i64 and the cos of a
    // constant neither.
    let src = "func @f(%x: f64, %k: f64, %n: i64) -> (f64, f64) {
  %e = exp %k
  %s = sin %e
  %c = cast %n : f64
  %p = mul %x, %s
  %q = mul %p, %c
  ret %q, %s
}";
    let mut module = m(src);
    let j = jvp(&mut module, "f", &[0]).unwrap();
    assert_eq!(j, "f.jvp.wrt0");
    optimize_module(&mut module, &OptOptions::default());
    let text = print_module(&module);
    let f = module.get(&j).unwrap();
    // primal 5 + tangent 2 (dp = dx·s, dq = dp·c) + a zero const for the second
    // output + ret.
    assert_eq!(f.num_insts(), 9, "{text}");
    let g = grad(
        &mut m("func @f(%x: f64, %k: f64) -> f64 {\n  %e = exp %k\n  %p = mul %x, %e\n  ret %p\n}"),
        "f",
        &[0],
    );
    assert!(g.is_ok());
}

#[test]
fn hvp_and_hessian_match_finite_differences_of_gradients() {
    let src = "func @f(%x: f64, %y: f64, %z: f64) -> f64 {
  %a = mul %x, %y
  %b = sin %a
  %c = exp %z
  %d = mul %b, %c
  %e = mul %x, %x
  %g = div %d, %e
  %h = tanh %y
  %r = fma %g, %h, %z
  ret %r
}";
    let mut module = m(src);
    let wrt = [0, 1, 2];
    let g = grad(&mut module, "f", &wrt).unwrap();
    let h = hvp(&mut module, "f", &wrt).unwrap();
    let hs = hessian(&mut module, "f", &wrt).unwrap();
    verified(&module);
    optimize_module(&mut module, &OptOptions::default());
    verified(&module);
    let x = [0.8, -0.6, 0.3];
    let v = [0.5, -1.0, 2.0];
    let mut args = x.to_vec();
    args.extend_from_slice(&v);
    let out = eval(&module, &h, &args);
    assert_eq!(out.len(), 1 + 3 + 3);
    let gx = eval(&module, &g, &x);
    for i in 0..3 {
        assert!(close(out[1 + i], gx[1 + i], 1e-14));
        let fd = fd_dir(&module, &g, &x, &v, 1 + i, 1e-5);
        assert!(
            close(out[4 + i], fd, 1e-7),
            "Hv[{i}] = {} vs fd {fd}",
            out[4 + i]
        );
    }
    let hm = eval(&module, &hs, &x);
    assert_eq!(hm.len(), 1 + 3 + 9);
    for i in 0..3 {
        for k in 0..3 {
            let mut u = [0.0; 3];
            u[k] = 1.0;
            let fd = fd_dir(&module, &g, &x, &u, 1 + i, 1e-5);
            let hik = hm[4 + 3 * i + k];
            assert!(close(hik, fd, 1e-7), "H[{i}][{k}] = {hik} vs {fd}");
            assert!(close(hik, hm[4 + 3 * k + i], 1e-13), "symmetric");
        }
    }
}

#[test]
fn transforms_compose() {
    // jvp(jvp(f)) and grad(jvp(f)) give second derivatives too: f = x³, f'' = 6x.
    let src = "func @f(%x: f64) -> f64 {\n  %y = powi %x, 3\n  ret %y\n}";
    let mut module = m(src);
    let j = jvp(&mut module, "f", &[0]).unwrap();
    let jj = jvp(&mut module, &j, &[0, 1]).unwrap();
    verified(&module);
    // f.jvp(x, dx) -> (y, dy); its jvp with (dx', ddx) = (1, 0) and dx = 1: d(dy)/dx = 6x.
    let out = eval(&module, &jj, &[2.0, 1.0, 1.0, 0.0]);
    assert_eq!(out, vec![8.0, 12.0, 12.0, 12.0]);
}
