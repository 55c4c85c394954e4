//! `vmath`: the vectorised tensor kernels against libm, their edge cases, and the slice
//! kernels against the scalar functions bit for bit.
//!
//! Accuracy references (the bounds asserted here):
//! - `exp`, `log`: `libm::exp`, `libm::log`, bit for bit (non-NaN inputs);
//! - `tanh`: `t/(t + 2)` with `t = libm::expm1(2|x|)`, the quotient in double-double
//!   (`expm1` is < 1 ulp and the quotient's condition number `2/(t + 2)` is ≤ 1);
//! - `sigmoid`: `1/(1 + e)` (x ≥ 0) or `e/(1 + e)` (x < 0) with `e = libm::exp(−|x|)`,
//!   in double-double (condition number ≤ 1 in `e`).
//!
//! Measured against correctly rounded values (`mpmath` at 120 bits, 10⁵ points per
//! range, `ir/examples/vmath_accuracy.py`) the maxima are 0.84 ulp for `exp` and 0.79
//! for `log` (libm's own), 1.49 for `tanh` and 1.59 for `sigmoid` (table in
//! `jitad_ir::vmath`'s docs).

use jitad_ir::interp::{eval, Val};
use jitad_ir::tensor::Tensor;
use jitad_ir::vmath::{self, LengthMismatch};
use jitad_ir::{parse_module, verify_module};

/// A xorshift generator: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in `[lo, hi)`.
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next() >> 11) as f64 / (1u64 << 53) as f64)
    }
    /// A random finite f64 (any sign, exponent and mantissa).
    fn finite(&mut self) -> f64 {
        loop {
            let x = f64::from_bits(self.next());
            if x.is_finite() {
                return x;
            }
        }
    }
}

/// The distance in ulps between two f64s (0 for two NaNs, `u64::MAX` for one NaN).
fn ulps(a: f64, b: f64) -> u64 {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => return 0,
        (true, false) | (false, true) => return u64::MAX,
        _ => {}
    }
    // Map the sign-magnitude bit patterns onto a line of integers (±0 both at 0).
    let ord = |x: f64| {
        let b = x.to_bits() as i64;
        if b < 0 {
            i64::MIN.wrapping_sub(b)
        } else {
            b
        }
    };
    ord(a).wrapping_sub(ord(b)).unsigned_abs()
}

/// The same bits, or both NaN.
fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// `a + b` as an unevaluated double-double sum (exact).
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

/// `n / (dh + dl)` rounded once (to within a hair), for `|dl| ≤ ulp(dh)`.
fn dd_div(n: f64, dh: f64, dl: f64) -> f64 {
    let q = n / dh;
    let rem = (-q).mul_add(dh, n) - q * dl;
    q + rem / dh
}

fn tanh_ref(x: f64) -> f64 {
    let a = x.abs();
    if a > 20.0 {
        return 1.0f64.copysign(x);
    }
    let t = libm::expm1(2.0 * a);
    let (dh, dl) = two_sum(t, 2.0);
    dd_div(t, dh, dl).copysign(x)
}

fn sigmoid_ref(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let e = libm::exp(-x.abs());
    let (dh, dl) = two_sum(1.0, e);
    if x >= 0.0 {
        dd_div(1.0, dh, dl)
    } else {
        dd_div(e, dh, dl)
    }
}

/// The largest distance in ulps between `f` and `reference` over `xs`, with its input.
fn max_ulps(
    xs: impl Iterator<Item = f64>,
    f: fn(f64) -> f64,
    reference: fn(f64) -> f64,
) -> (u64, f64) {
    xs.map(|x| (ulps(f(x), reference(x)), x))
        .max_by_key(|&(u, _)| u)
        .unwrap_or((0, 0.0))
}

/// Dense sweeps over `[lo, hi]` and random inputs in it, then random bit patterns.
fn inputs(seed: u64, lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let mut rng = Rng(seed);
    let step = (hi - lo) / n as f64;
    let mut xs: Vec<f64> = (0..=n).map(|i| lo + step * i as f64).collect();
    xs.extend((0..n).map(|_| rng.uniform(lo, hi)));
    xs.extend((0..n).map(|_| rng.finite()));
    // Each binade, both signs, at a random mantissa.
    for e in 0..2047u64 {
        let m = rng.next() & ((1 << 52) - 1);
        xs.push(f64::from_bits(e << 52 | m));
        xs.push(-f64::from_bits(e << 52 | m));
    }
    xs
}

#[test]
fn exp_is_libm_exp_bit_for_bit() {
    let mut xs = inputs(1, -746.0, 710.0, 200_000);
    xs.extend(inputs(2, -2.0, 2.0, 50_000));
    for x in xs {
        let (v, l) = (vmath::exp1(x), libm::exp(x));
        assert!(same(v, l), "exp({x:e}) = {v:e}, libm {l:e}");
    }
}

#[test]
fn log_is_libm_log_bit_for_bit() {
    let mut xs = inputs(3, 0.0, 1e6, 200_000);
    xs.extend(inputs(4, 0.5, 2.0, 50_000));
    xs.extend((0..50_000u64).map(|i| f64::from_bits(i * 90_071_992_547 + 1))); // subnormals
    for x in xs {
        let (v, l) = (vmath::log1(x), libm::log(x));
        assert!(same(v, l), "log({x:e}) = {v:e}, libm {l:e}");
    }
}

#[test]
fn tanh_is_within_2_ulp() {
    let mut xs = inputs(5, -20.0, 20.0, 200_000);
    xs.extend(inputs(6, -1.2, 1.2, 100_000));
    let (worst, at) = max_ulps(xs.into_iter(), vmath::tanh1, tanh_ref);
    println!("tanh: max {worst} ulp at {at:e}");
    assert!(worst <= 2, "tanh({at:e}) is {worst} ulp off");
}

#[test]
fn sigmoid_is_within_2_ulp() {
    let mut xs = inputs(7, -750.0, 40.0, 200_000);
    xs.extend(inputs(8, -20.0, 20.0, 100_000));
    let (worst, at) = max_ulps(xs.into_iter(), vmath::sigmoid1, sigmoid_ref);
    println!("sigmoid: max {worst} ulp at {at:e}");
    assert!(worst <= 2, "sigmoid({at:e}) is {worst} ulp off");
}

/// The references are tight enough to catch a one-ulp slip somewhere: the kernels are
/// not simply the references (if they were, the bound above would prove nothing about
/// the references' own accuracy, only agreement).
#[test]
fn references_agree_with_libm_where_libm_is_accurate() {
    for x in inputs(9, -19.0, 19.0, 20_000) {
        assert!(ulps(tanh_ref(x), libm::tanh(x)) <= 3, "tanh_ref({x:e})");
        assert!(
            ulps(sigmoid_ref(x), 1.0 / (1.0 + libm::exp(-x))) <= 3,
            "sigmoid_ref({x:e})"
        );
    }
}

#[test]
fn exp_edge_cases() {
    let e = vmath::exp1;
    assert!(e(f64::NAN).is_nan());
    assert_eq!(e(f64::INFINITY), f64::INFINITY);
    assert_eq!(e(f64::NEG_INFINITY).to_bits(), 0.0f64.to_bits());
    assert_eq!(e(0.0), 1.0);
    assert_eq!(e(-0.0), 1.0);
    assert_eq!(e(1e-300), 1.0);
    assert!(ulps(e(1.0), std::f64::consts::E) <= 1); // libm's: one ulp above
                                                     // Overflow threshold: ln(f64::MAX) = 709.782712893384.
    assert!(e(709.782712893383).is_finite());
    assert!(e(709.782712893383) > 1.79e308);
    assert_eq!(e(709.7827128933841), f64::INFINITY);
    assert_eq!(e(710.0), f64::INFINITY);
    assert_eq!(e(1e300), f64::INFINITY);
    // Subnormal results, then zero below ln(2⁻¹⁰⁷⁵) = −745.1332191019411.
    let sub = e(-740.0);
    assert!(sub > 0.0 && sub < f64::MIN_POSITIVE, "{sub:e}");
    assert_eq!(e(-745.13), f64::from_bits(1)); // the smallest subnormal
    assert_eq!(e(-745.2), 0.0);
    assert_eq!(e(-1e300), 0.0);
    assert_eq!(e(-708.4).to_bits(), libm::exp(-708.4).to_bits());
}

#[test]
fn log_edge_cases() {
    let l = vmath::log1;
    assert!(l(f64::NAN).is_nan());
    assert_eq!(l(0.0), f64::NEG_INFINITY);
    assert_eq!(l(-0.0), f64::NEG_INFINITY);
    assert!(l(-1.0).is_nan());
    assert!(l(-f64::MIN_POSITIVE).is_nan());
    assert!(l(f64::NEG_INFINITY).is_nan());
    assert_eq!(l(f64::INFINITY), f64::INFINITY);
    assert_eq!(l(1.0).to_bits(), 0.0f64.to_bits());
    assert_eq!(l(std::f64::consts::E), 1.0);
    assert_eq!(l(f64::MAX), libm::log(f64::MAX));
    // Subnormal inputs: ln(2⁻¹⁰⁷⁴) = −744.4400719213812.
    assert_eq!(l(f64::from_bits(1)), -744.4400719213812);
    assert_eq!(
        l(f64::MIN_POSITIVE / 3.0),
        libm::log(f64::MIN_POSITIVE / 3.0)
    );
}

#[test]
fn tanh_edge_cases() {
    let t = vmath::tanh1;
    assert!(t(f64::NAN).is_nan());
    // NaN gives the operand itself, whichever NaN the compiled code meets first.
    for bits in [
        0x7ff8_0000_0000_0000u64,
        0xfff8_0000_0000_0000,
        0xfff4_0000_0000_0123,
    ] {
        assert_eq!(t(f64::from_bits(bits)).to_bits(), bits);
        assert_eq!(vmath::sigmoid1(f64::from_bits(bits)).to_bits(), bits);
    }
    assert_eq!(t(0.0).to_bits(), 0.0f64.to_bits());
    assert_eq!(t(-0.0).to_bits(), (-0.0f64).to_bits());
    assert_eq!(t(f64::INFINITY), 1.0);
    assert_eq!(t(f64::NEG_INFINITY), -1.0);
    // Subnormal and tiny inputs: tanh x = x.
    for x in [f64::from_bits(1), 1e-310, f64::MIN_POSITIVE, 1e-200, 1e-9] {
        assert_eq!(t(x), x, "{x:e}");
        assert_eq!(t(-x), -x, "{x:e}");
    }
    // Saturation: 1 − tanh x < 2⁻⁵⁴ beyond ~19.06, and ±1 exactly beyond.
    assert!(t(18.0) < 1.0);
    for x in [19.1, 20.0, 25.0, 40.0, 1e3, 1e300, f64::MAX] {
        assert_eq!(t(x), 1.0, "{x:e}");
        assert_eq!(t(-x), -1.0, "{x:e}");
    }
    // Odd, exactly, and monotone across the switch between the two formulas.
    let mut rng = Rng(10);
    for _ in 0..10_000 {
        let x = rng.uniform(-25.0, 25.0);
        assert_eq!(t(-x).to_bits(), (-t(x)).to_bits(), "{x:e}");
    }
    // Every float within 1000 ulps of the switch between the forms at 0.625.
    assert_monotone_across(t, 0.625);
}

/// `f` is non-decreasing over the 2001 floats centred on `at`.
fn assert_monotone_across(f: fn(f64) -> f64, at: f64) {
    let mut x = at;
    for _ in 0..1000 {
        x = x.next_down();
    }
    let mut prev = f(x);
    for _ in 0..2000 {
        x = x.next_up();
        let y = f(x);
        assert!(y >= prev, "not monotone at {x:e}");
        prev = y;
    }
}

#[test]
fn sigmoid_edge_cases() {
    let s = vmath::sigmoid1;
    assert!(s(f64::NAN).is_nan());
    assert_eq!(s(0.0), 0.5);
    assert_eq!(s(-0.0), 0.5);
    assert_eq!(s(f64::INFINITY), 1.0);
    assert_eq!(s(f64::NEG_INFINITY).to_bits(), 0.0f64.to_bits());
    // 1 exactly once e^{−x} < 2⁻⁵⁴ (x > 37.43).
    assert!(s(36.0) < 1.0);
    for x in [37.5, 40.0, 100.0, 1e300] {
        assert_eq!(s(x), 1.0, "{x:e}");
    }
    // Large negative x: e^x, down through the subnormals to 0, rounded once.
    for x in [-40.0, -300.0, -708.0, -709.5, -720.0, -740.0, -745.0] {
        assert!(ulps(s(x), libm::exp(x)) <= 1, "{x:e}");
    }
    assert!(s(-740.0) > 0.0 && s(-740.0) < f64::MIN_POSITIVE);
    assert_eq!(s(-745.2), 0.0);
    assert_eq!(s(-1e300), 0.0);
    // Within 2 ulp on both sides of the switch between the forms at |x| = 1.25.
    for at in [1.25f64, -1.25] {
        let mut x = at;
        for _ in 0..1000 {
            x = x.next_down();
        }
        for _ in 0..2000 {
            x = x.next_up();
            assert!(ulps(s(x), sigmoid_ref(x)) <= 2, "{x:e}");
        }
    }
    // Symmetry within rounding: σ(x) + σ(−x) = 1.
    let mut rng = Rng(11);
    for _ in 0..10_000 {
        let x = rng.uniform(-30.0, 30.0);
        assert!((s(x) + s(-x) - 1.0).abs() <= 4.0 * f64::EPSILON, "{x:e}");
    }
}

#[test]
fn f32_kernels_round_the_f64_result_once() {
    let mut rng = Rng(12);
    let f64s: [fn(f64) -> f64; 4] = [vmath::exp1, vmath::log1, vmath::tanh1, vmath::sigmoid1];
    let f32s: [fn(f32) -> f32; 4] = [
        vmath::exp1_f32,
        vmath::log1_f32,
        vmath::tanh1_f32,
        vmath::sigmoid1_f32,
    ];
    // libm's f64 functions rounded to f32 (libm's `tanhf` is up to 2 ulp off).
    let reference: [fn(f64) -> f64; 4] = [libm::exp, libm::log, libm::tanh, |x| {
        jitad_ir::math::f64m::sigmoid(x)
    }];
    for i in 0..200_000 {
        let x = if i % 2 == 0 {
            f32::from_bits(rng.next() as u32)
        } else {
            rng.uniform(-100.0, 100.0) as f32
        };
        for k in 0..4 {
            let v = f32s[k](x);
            // A NaN only as a NaN: Rust leaves a NaN result's payload and quietness
            // unspecified (RFC 3514), and release builds fold the f32 → f64 → f32
            // round trip of a signalling NaN differently in two inlined copies of
            // the same expression (0x7fbd187c in one, 0x7ffd187c in the other).
            let w = f64s[k](f64::from(x)) as f32;
            assert!(
                v.to_bits() == w.to_bits() || (v.is_nan() && w.is_nan()),
                "f32 fn {k} at {x:e}: {v:e} vs {w:e}"
            );
            let r = reference[k](f64::from(x)) as f32;
            let d = (v.to_bits() as i64 - r.to_bits() as i64).unsigned_abs();
            assert!(
                d <= 1 || (v.is_nan() && r.is_nan()),
                "f32 fn {k} at {x:e}: {v:e} vs {r:e}"
            );
        }
    }
    assert_eq!(vmath::exp1_f32(89.0), f32::INFINITY);
    assert!(vmath::exp1_f32(-100.0) > 0.0 && vmath::exp1_f32(-100.0) < f32::MIN_POSITIVE);
    assert_eq!(vmath::tanh1_f32(-0.0).to_bits(), (-0.0f32).to_bits());
    assert_eq!(vmath::log1_f32(0.0), f32::NEG_INFINITY);
}

/// Inputs for the slice tests: ordinary values with every special case mixed in.
fn mixed(rng: &mut Rng, n: usize) -> Vec<f64> {
    const SPECIAL: [f64; 10] = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.0,
        -0.0,
        5e-324,
        -1e-310,
        709.9,
        -745.5,
        0.5493,
    ];
    (0..n)
        .map(|i| match rng.next() % 4 {
            0 => SPECIAL[i % SPECIAL.len()],
            1 => rng.finite(),
            _ => rng.uniform(-30.0, 30.0),
        })
        .collect()
}

type Kernel<T> = (
    fn(&[T], &mut [T]) -> Result<(), LengthMismatch>,
    fn(&mut [T]),
    fn(T) -> T,
);

#[test]
fn slice_kernels_equal_the_scalar_functions_bit_for_bit() {
    let k64: [Kernel<f64>; 4] = [
        (vmath::exp, vmath::exp_in_place, vmath::exp1),
        (vmath::log, vmath::log_in_place, vmath::log1),
        (vmath::tanh, vmath::tanh_in_place, vmath::tanh1),
        (vmath::sigmoid, vmath::sigmoid_in_place, vmath::sigmoid1),
    ];
    let k32: [Kernel<f32>; 4] = [
        (vmath::exp_f32, vmath::exp_f32_in_place, vmath::exp1_f32),
        (vmath::log_f32, vmath::log_f32_in_place, vmath::log1_f32),
        (vmath::tanh_f32, vmath::tanh_f32_in_place, vmath::tanh1_f32),
        (
            vmath::sigmoid_f32,
            vmath::sigmoid_f32_in_place,
            vmath::sigmoid1_f32,
        ),
    ];
    let mut rng = Rng(13);
    let lens = (0..=17).chain([31, 64, 1000, 4099]);
    for n in lens {
        for _ in 0..4 {
            let x = mixed(&mut rng, n);
            for (kernel, in_place, f1) in k64 {
                let mut out = vec![0.0; n];
                kernel(&x, &mut out).expect("equal lengths");
                let mut buf = x.clone();
                in_place(&mut buf);
                for i in 0..n {
                    let want = f1(x[i]).to_bits();
                    assert_eq!(out[i].to_bits(), want, "len {n}, element {i}: {:e}", x[i]);
                    assert_eq!(buf[i].to_bits(), want, "len {n}, element {i}: {:e}", x[i]);
                }
            }
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            for (kernel, in_place, f1) in k32 {
                let mut out = vec![0.0; n];
                kernel(&x32, &mut out).expect("equal lengths");
                let mut buf = x32.clone();
                in_place(&mut buf);
                for i in 0..n {
                    let want = f1(x32[i]).to_bits();
                    assert_eq!(out[i].to_bits(), want, "len {n}, element {i}: {:e}", x32[i]);
                    assert_eq!(buf[i].to_bits(), want, "len {n}, element {i}: {:e}", x32[i]);
                }
            }
        }
    }
}

#[test]
fn length_mismatch_is_an_error_and_writes_nothing() {
    let mut out = [7.0; 3];
    let e = vmath::tanh(&[1.0, 2.0], &mut out).expect_err("lengths differ");
    assert_eq!(
        e,
        LengthMismatch {
            op: "tanh",
            input: 2,
            output: 3
        }
    );
    assert_eq!(out, [7.0; 3]);
    assert!(e.to_string().contains("tanh"), "{e}");
    let mut out32 = [0.0f32; 1];
    assert!(vmath::exp_f32(&[], &mut out32).is_err());
    assert!(vmath::log(&[], &mut []).is_ok());
}

/// The interpreter runs `vmath` for tensors and libm for scalars.
#[test]
fn interpreter_uses_vmath_for_tensors_and_libm_for_scalars() {
    let text = "func @f(%t: f64[5], %s: f64) -> (f64[5], f64[5], f64[5], f64[5], f64, f64) {
 %a = exp %t
 %b = log %t
 %c = tanh %t
 %d = sigmoid %t
 %e = tanh %s
 %g = sigmoid %s
 ret %a, %b, %c, %d, %e, %g
}";
    let m = parse_module(text).expect("parses");
    verify_module(&m).expect("verifies");
    let xs = [0.3, -2.5, 7.0, 0.5493, 1e-3];
    let t = Val::tensor(Tensor::f64(&[5], xs.to_vec()).expect("tensor"));
    let s = 0.2345;
    let r = eval(&m, "f", &[t, Val::F64(s)]).expect("evaluates");
    let fs: [fn(f64) -> f64; 4] = [vmath::exp1, vmath::log1, vmath::tanh1, vmath::sigmoid1];
    for (k, f) in fs.iter().enumerate() {
        let got = r[k]
            .as_tensor()
            .and_then(|t| t.as_f64())
            .expect("f64 tensor");
        for (i, &x) in xs.iter().enumerate() {
            assert!(same(got[i], f(x)), "result {k}, element {i}");
        }
    }
    assert_eq!(r[4], Val::F64(libm::tanh(s)));
    assert_eq!(r[5], Val::F64(jitad_ir::math::f64m::sigmoid(s)));
}
