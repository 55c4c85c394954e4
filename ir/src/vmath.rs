//! Vectorisable elementwise transcendentals for tensors: `exp`, `log`, `tanh`, `sigmoid`.
//!
//! Tensor `exp`, `log`, `tanh` and `sigmoid` run these kernels, in the interpreter
//! ([`crate::tensor`]) and in compiled code (which calls the slice functions below through
//! `extern "C"` wrappers), so both engines run the same Rust code and agree bit for bit.
//! Scalar ops keep [`crate::math`] (libm, one call per value).
//!
//! # What is guaranteed
//! - **One function per element**: every slice kernel writes `out[i] = f1(x[i])` where
//!   `f1` is the scalar function of the same name with a `1` suffix ([`exp1`], [`log1`],
//!   [`tanh1`], [`sigmoid1`]), for every length (no special remainder path), whichever
//!   instruction set the loop was compiled for. The per-element code is branch-free
//!   (special cases are selects) and uses only IEEE-exact operations (`+ − × ÷`, sign and
//!   bit manipulation); Rust never contracts `a * b + c` into a fused multiply-add, so the
//!   packed SSE2 loop, the AVX2 version picked at run time on CPUs that have it, and the
//!   scalar function give the same bits on every target. Tested on random inputs and on
//!   every length 0..=17. (Fused multiply-adds in the AVX2 version alone would make the
//!   `tanh` loop ~20% faster — 2.0 against 2.5 ns per element for the unified-`expm1`
//!   draft in a scratch comparison — but would let the slice kernels differ from the
//!   scalar functions, which constant folding calls; not worth it.)
//! - **No panic**: the out-of-place kernels return [`LengthMismatch`] when `x` and `out`
//!   differ in length (before writing anything); the in-place kernels cannot fail.
//! - **Edge cases** (tested): NaN in gives NaN out (`tanh` and `sigmoid` return the
//!   operand itself, so the bits cannot depend on instruction order); `exp(+∞) = +∞`, `exp(−∞) = +0`,
//!   `exp(±0) = 1`, overflow to `+∞` above 709.782712893384 and underflow through the
//!   subnormals to `+0` below −745.1332191019412; `log(±0) = −∞`, `log(x < 0) = NaN`,
//!   `log(+∞) = +∞`, `log(1) = +0`, subnormal inputs exact-scaled; `tanh(±0) = ±0`, odd
//!   (`tanh(−x) = −tanh(x)` exactly), `tanh(x) = x` for subnormal `x`, `±1` exactly for
//!   `|x| > 19.07`, `tanh(±∞) = ±1`; `sigmoid(±0) = 0.5`, `sigmoid(x) = 1` exactly for
//!   `x > 37.5`, `sigmoid(+∞) = 1`, `sigmoid(−∞) = +0`, subnormal results for
//!   `x < −708.4` rounded once.
//!
//! # Accuracy (f64)
//! - [`exp1`] and [`log1`] are **bit-identical to `libm::exp` / `libm::log`** (fdlibm's
//!   algorithms, which the scalar ops use: `exp` a degree-5 rational fit after reduction
//!   by `ln 2` with a two-part constant, `log` fdlibm's `s = f/(2+f)` series) for every
//!   non-NaN input: the same operations in the same order, with fdlibm's branches
//!   replaced by selects. So a tensor `exp`/`log` and the scalar op agree bit for bit.
//! - [`tanh1`]: for `|x| < 0.625`, Cephes' rational form `x + x·z·P(z)/Q(z)`, `z = x²`
//!   (the correction under 12% of the result, so its rounding errors count for little);
//!   above, `1 − 2e/(1 + e)` with `e = e^{−2|x|} = 2^k·(1 + q)` from a cheap reduction
//!   (`k` rounded to nearest, no fdlibm branches) and a degree-12 polynomial for
//!   `q ≈ e^r − 1` (no division), `q` kept apart from the 1 so `1 + e` is one rounding.
//!   Both forms are computed (branch-free) and **one division** taken of the selected
//!   numerator and denominator.
//! - [`sigmoid1`]: `1/2 + tanh(x/2)/2` for `|x| < 1.25` (the same rational form); above,
//!   with `e = e^{−|x|}` from the same cheap core, `w = 1 − e/(1 + e)` for `x > 0` and
//!   `e·w` for `x < 0` (subnormal results rounded once); one division.
//!
//! Errors in ulps of the result (of the correctly rounded value's binade), **measured**
//! against correctly rounded values (`mpmath` at 120 bits, 10⁵ random points per range,
//! `python3 ir/examples/vmath_accuracy.py 100000`), and **asserted** in
//! `ir/tests/vmath.rs` (`exp`/`log` equal to libm; `tanh`/`sigmoid` ≤ 2 ulp from
//! double-double references built on libm's `expm1`/`exp`, over dense sweeps, random
//! values, random bit patterns and every binade, tiny and subnormal `x` included):
//!
//! | function | range                           | max error (vmath) | max error (libm) |
//! |----------|---------------------------------|-------------------|------------------|
//! | exp      | [−745.13, 709.78]               | 0.84              | 0.84 (same bits) |
//! | exp      | [−745.13, −708.4] (subnormal)   | 0.74              | 0.74             |
//! | log      | random positive bit patterns    | 0.69              | 0.69 (same bits) |
//! | log      | [0.5, 2]                        | 0.79              | 0.79             |
//! | tanh     | [−20, 20]                       | 1.35              | 1.91             |
//! | tanh     | [−1, 1]                         | 1.37              | 2.10             |
//! | tanh     | \|x\| in [2⁻³⁰, 2⁵] log-uniform | 1.32              | 1.94             |
//! | tanh     | [0.1, 0.6] (rational form)      | 0.77              | 2.08             |
//! | sigmoid  | [−750, 40]                      | 1.33              | 2.01             |
//! | sigmoid  | [−20, 20]                       | 1.40              | 2.28             |
//! | sigmoid  | \|x\| in [2⁻³⁰, 2⁶] log-uniform | 1.37              | 1.94             |
//! | sigmoid  | [−745, −700] (subnormal)        | 0.85              | 0.82             |
//!
//! (libm's sigmoid is the scalar op's: `1/(1 + exp(−x))` or `e/(1 + e)`.) Another
//! sample (3·10⁴ points per range) gave at most 1.37 ulp for `tanh` and 1.36 for
//! `sigmoid`; the fdlibm-core versions these replaced measured 1.49 and 1.59.

//! # Speed
//! ns per element over 65,536 elements in place (`ir/examples/vmath_speed.rs`, pinned with
//! `taskset -c 1`, AMD EPYC (Zen 3), AVX2 version, on a shared machine with a load
//! average of 5 on its 2 cores: the median of five runs; libm's `tanh` has swung between
//! 22 and 96 ns from session to session):
//!
//! | function | f64 vmath | f64 libm | f32 vmath | f32 libm |
//! |----------|-----------|----------|-----------|----------|
//! | exp      | 3.7       | 11.2     | 3.5       | 8.9      |
//! | log      | 2.9       | 7.9      | 2.6       | 6.2      |
//! | tanh     | 4.0       | 22.7     | 3.3       | 20.6     |
//! | sigmoid  | 4.8       | 15.5     | 5.0       | 13.8     |
//!
//! The fdlibm-core `tanh`/`sigmoid` these replaced took 6.1 and 7.1 ns in the previous
//! session's table; timed side by side in one scratch process (AVX2, the same inputs in
//! [−3, 3]) the old `tanh` took 6.15 ns, this one 3.9 and `exp` 3.5: `tanh` now costs
//! about one `exp`.

//! # f32
//! The f32 kernels (`*_f32`) widen each element to f64, run the f64 function and round
//! once to f32. The f64 result is within 1 ulp (f64) of the true value, so the f32 result
//! is the correctly rounded one except when the true value lies within ~2⁻²⁹ f32-ulp of
//! a rounding boundary (then it is off by one ulp): more accurate than libm's f32
//! functions, one algorithm to test, and conversions vectorise (`cvtps2pd`/`cvtpd2ps`),
//! so the loop is still packed. Overflow and subnormal results of the f32 range come out
//! right because the f64 result is rounded once.

use thiserror::Error;

/// `x` and `out` of an out-of-place kernel have different lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("vmath::{op}: the operand has {input} elements but the result buffer has {output}")]
pub struct LengthMismatch {
    /// The kernel's name (`exp`, `log`, `tanh`, `sigmoid`, or with an `_f32` suffix).
    pub op: &'static str,
    /// Length of the operand slice.
    pub input: usize,
    /// Length of the result slice.
    pub output: usize,
}

// fdlibm's constants (`e_exp.c`, `e_log.c`), as in `libm` 0.2, by their bits.
const LN2HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000); // 0.6931471803691238; k·LN2HI is exact
const LN2LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76); // 1.9082149292705877e-10
const INVLN2: f64 = f64::from_bits(0x3ff7_1547_652b_82fe); // 1.4426950408889634
const P1: f64 = f64::from_bits(0x3fc5_5555_5555_553e); // 0.16666666666666602
const P2: f64 = f64::from_bits(0xbf66_c16c_16be_bd93); // -0.0027777777777015593
const P3: f64 = f64::from_bits(0x3f11_566a_af25_de2c); // 6.613756321437934e-05
const P4: f64 = f64::from_bits(0xbebb_bd41_c5d2_6bf1); // -1.6533902205465252e-06
const P5: f64 = f64::from_bits(0x3e66_3769_72be_a4d0); // 4.1381367970572385e-08
const LG1: f64 = f64::from_bits(0x3fe5_5555_5555_5593); // 0.6666666666666735
const LG2: f64 = f64::from_bits(0x3fd9_9999_9997_fa04); // 0.3999999999940942
const LG3: f64 = f64::from_bits(0x3fd2_4924_9422_9359); // 0.2857142874366239
const LG4: f64 = f64::from_bits(0x3fcc_71c5_1d8e_78af); // 0.22222198432149784
const LG5: f64 = f64::from_bits(0x3fc7_4664_96cb_03de); // 0.1818357216161805
const LG6: f64 = f64::from_bits(0x3fc3_9a09_d078_c69f); // 0.15313837699209373
const LG7: f64 = f64::from_bits(0x3fc2_f112_df3e_5244); // 0.14798198605116586

/// fdlibm compares the high word `hx` of `|x|`: `hx > H` is `|x| ≥` this float of
/// `(H + 1) << 32`, and `hx ≥ H` is `|x| ≥` the float of `H << 32`.
const fn high_word(h: u64) -> f64 {
    f64::from_bits(h << 32)
}
/// `|x| > 0.5·ln 2` (fdlibm: `hx > 0x3fd62e42`).
const HALF_LN2: f64 = high_word(0x3fd6_2e43);
/// `|x| ≥ 1.5·ln 2` (fdlibm: `hx >= 0x3ff0a2b2`).
const THREE_HALVES_LN2: f64 = high_word(0x3ff0_a2b2);
/// `|x| > 2⁻²⁸` (fdlibm: `hx > 0x3e300000`).
const TINY: f64 = high_word(0x3e30_0001);
/// `tanh` switches from its rational form to the `exp` form at `|x| = 0.625`, where
/// `tanh x ≈ 0.555` (Cephes' switch point: `1 − tanh` loses nothing there, and the
/// rational form is fitted up to it).
const TANH_SWITCH: f64 = 0.625;
/// `tanh x = x + x·z·P(z)/Q(z)`, `z = x²`, for `|x| < 0.625`: Cephes' `tanh.c`
/// coefficients (`P` degree 2, `Q` monic degree 3; relative error of the fit below
/// 10⁻¹⁷, and the correction `x·z·P/Q` is under 12% of the result).
const TP0: f64 = -9.643_991_794_250_523e-1;
const TP1: f64 = -9.928_772_310_019_186e1;
const TP2: f64 = -1.614_687_684_417_084_5e3;
const TQ0: f64 = 1.128_116_784_916_329_3e2;
const TQ1: f64 = 2.235_488_390_601_004_5e3;
const TQ2: f64 = 4.844_063_053_251_255e3;
/// `e^r − 1 = r + r²·E(r)` on `|r| ≤ ln(2)/2`: `E` a degree-10 Chebyshev fit
/// (`mpmath.chebyfit` at 200 bits) of `(e^r − 1 − r)/r²`, max error 1.4·10⁻¹⁸.
const E0: f64 = 0.5;
const E1: f64 = 0.166_666_666_666_666_7;
const E2: f64 = 0.041_666_666_666_666_67;
const E3: f64 = 0.008_333_333_333_326_136;
const E4: f64 = 0.001_388_888_888_888_374_8;
const E5: f64 = 0.000_198_412_698_748_206_27;
const E6: f64 = 2.480_158_732_554_774_3e-5;
const E7: f64 = 2.755_725_540_020_642_2e-6;
const E8: f64 = 2.755_727_364_311_03e-7;
const E9: f64 = 2.510_521_700_472_074_5e-8;
const E10: f64 = 2.091_468_696_808_687_6e-9;
const EXP_OVERFLOW: f64 = f64::from_bits(0x4086_2e42_fefa_39ef); // 709.782712893384
const EXP_UNDERFLOW: f64 = f64::from_bits(0xc087_4910_d52d_3051); // -745.1332191019411

/// 1.5·2⁵²: `(v + M) − M` rounds `v` to the nearest integer (ties to even) for
/// `|v| < 2⁵¹`, in two vectorisable additions (SSE2 has no packed rounding instruction).
const ROUND_MAGIC: f64 = 6755399441055744.0;
/// 2⁵² + 1023: the low mantissa bits of `n + this` are `n + 1023`, the biased exponent.
const POW2_MAGIC: f64 = 4503599627370496.0 + 1023.0;
/// 2⁵² + 1023 as bits, to read an exponent field back as a float.
const EXP_FIELD_MAGIC: u64 = 0x4330_0000_0000_0000;

#[inline(always)]
fn round_int(v: f64) -> f64 {
    (v + ROUND_MAGIC) - ROUND_MAGIC
}

/// `v` truncated toward zero, for `|v| < 2⁵¹` (C's `(int)v`), branch-free.
#[inline(always)]
fn trunc_small(v: f64) -> f64 {
    let r = round_int(v);
    if r.abs() > v.abs() {
        r - 1.0f64.copysign(v)
    } else {
        r
    }
}

/// 2ⁿ for an integer `n` in [−1022, 1023], built from its exponent field.
#[inline(always)]
fn pow2(n: f64) -> f64 {
    f64::from_bits((n + POW2_MAGIC).to_bits() << 52)
}

/// fdlibm's `exp` reduction and core: `e^x ≈ 2^k·(1 + q)`, `q ≈ e^r − 1` with
/// `r = x − k·ln 2`, `|r| ≤ 0.35`. `k` is chosen exactly as fdlibm does (0 for
/// `|x| ≤ 0.5·ln 2`, ±1 up to `1.5·ln 2`, else `x/ln 2` rounded half away from zero), so
/// `1 + q` is fdlibm's `y` bit for bit. Meaningful for `|x| ≤ 1100`.
#[inline(always)]
fn exp_core(x: f64) -> (f64, f64) {
    let ax = x.abs();
    let big = trunc_small(INVLN2 * x + 0.5f64.copysign(x));
    let k = if ax >= THREE_HALVES_LN2 {
        big
    } else if ax >= HALF_LN2 {
        1.0f64.copysign(x)
    } else {
        0.0
    };
    // For k = 0 these are fdlibm's `hi = x, lo = 0` (x − 0 = x, −0 included).
    let hi = x - k * LN2HI;
    let lo = k * LN2LO;
    let r = hi - lo;
    let rr = r * r;
    let c = r - rr * (P1 + rr * (P2 + rr * (P3 + rr * (P4 + rr * P5))));
    (k, r * c / (2.0 - c) - lo + hi)
}

/// 2^k·y rounded once (fdlibm's `scalbn`): `y·2^k₁` is exact for `|k| ≤ 2100`, and
/// only the second product can round (to a subnormal, zero or infinity).
#[inline(always)]
fn scale(y: f64, k: f64) -> f64 {
    let k1 = round_int(k * 0.5);
    y * pow2(k1) * pow2(k - k1)
}

/// eˣ, bit-identical to `libm::exp` for every non-NaN `x` (NaN gives `x`).
#[inline(always)]
pub fn exp1(x: f64) -> f64 {
    let (k, q) = exp_core(x);
    let mut y = scale(1.0 + q, k);
    if x.abs() < TINY {
        y = 1.0 + x;
    }
    if x > EXP_OVERFLOW {
        y = f64::INFINITY;
    }
    if x < EXP_UNDERFLOW {
        y = 0.0;
    }
    if x.is_nan() {
        y = x;
    }
    y
}

/// ln x, bit-identical to `libm::log` for every non-NaN `x` (NaN gives `x`; negative
/// `x` gives the positive quiet NaN).
#[inline(always)]
pub fn log1(x: f64) -> f64 {
    // Subnormals are scaled by 2⁵⁴ into the normal range first (fdlibm's `k -= 54`).
    let sub = x < f64::MIN_POSITIVE;
    let xs = if sub { x * 18014398509481984.0 } else { x };
    let kadj = if sub { -54.0 } else { 0.0 };
    // Reduce to m ∈ [√2/2, √2): add (0x3ff00000 − 0x3fe6a09e) to the high word, read
    // the exponent, and rebuild the high word from its low 20 bits + 0x3fe6a09e.
    let ui = xs.to_bits().wrapping_add((0x3ff0_0000 - 0x3fe6_a09e) << 32);
    let e = ui >> 52;
    let dk = (f64::from_bits(EXP_FIELD_MAGIC | e) - POW2_MAGIC) + kadj;
    let m = f64::from_bits((ui & 0x000f_ffff_ffff_ffff) + (0x3fe6_a09e << 32));
    let f = m - 1.0;
    let hfsq = 0.5 * f * f;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (LG2 + w * (LG4 + w * LG6));
    let t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
    let r = t2 + t1;
    let mut y = s * (hfsq + r) + dk * LN2LO - hfsq + f + dk * LN2HI;
    if x < 0.0 {
        y = f64::NAN;
    }
    if x == 0.0 {
        y = f64::NEG_INFINITY;
    }
    if x == f64::INFINITY || x.is_nan() {
        y = x;
    }
    y
}

/// A cheaper `exp` reduction and core for `tanh` and `sigmoid` (not fdlibm's, which
/// [`exp1`] keeps for bit-identity with libm): `e^y = 2^k·(1 + q)` with `k = y/ln 2`
/// rounded to nearest, `r = hi − lo` (`hi = y − k·LN2HI` exact, `lo = k·LN2LO`),
/// `q = hi + (r²·E(r) − lo)` ≈ `e^r − 1` with one final rounding and no division.
/// Returns `(k, q)`. Meaningful for `|y| ≤ 1100`; `E` is evaluated by Estrin's scheme
/// (shorter dependency chains than Horner's, so more elements are in flight).
#[inline(always)]
fn expm1_core(y: f64) -> (f64, f64) {
    let k = round_int(y * INVLN2);
    let hi = y - k * LN2HI;
    let lo = k * LN2LO;
    let r = hi - lo;
    let z = r * r;
    let z2 = z * z;
    let e01 = (E0 + r * E1) + z * (E2 + r * E3);
    let e47 = (E4 + r * E5) + z * (E6 + r * E7);
    let e810 = (E8 + r * E9) + z * E10;
    let e = e01 + z2 * (e47 + z2 * e810);
    (k, hi + (z * e - lo))
}

/// `z·P(z)` and `Q(z)` of the rational form of `tanh` (see [`TP0`]).
#[inline(always)]
fn tanh_rational(z: f64) -> (f64, f64) {
    let p = z * ((TP0 * z + TP1) * z + TP2);
    let q = ((z + TQ0) * z + TQ1) * z + TQ2;
    (p, q)
}

/// tanh x, with `a = |x|`: for `a < 0.625`, `a + a·(z·P(z)/Q(z))` (`z = a²`, Cephes'
/// rational form, the correction under 12% of the result); above, `1 − 2e/(1 + e)` with
/// `e = e^{−2a} = s·(1 + q)`, `s = 2^k` (`expm1_core`), as
/// `1 − 2·(s + s·q)/((1 + s) + s·q)` (`1 + e` rounded once; the quotient is at most
/// 0.45 beside the 1). Both forms are computed and one quotient taken of the selected
/// numerator and denominator, so each element costs one division. The sign is `x`'s.
#[inline(always)]
pub fn tanh1(x: f64) -> f64 {
    let mut a = x.abs();
    // Beyond 20 the result is 1 (e < 2⁻⁵⁷); the clamp keeps k in range (NaN stays).
    if a > 20.0 {
        a = 20.0;
    }
    let (ps, qs) = tanh_rational(a * a);
    let (k, q) = expm1_core(-2.0 * a);
    let s = pow2(k);
    let sq = s * q;
    let small = a < TANH_SWITCH;
    let num = if small { ps } else { 2.0 * (s + sq) };
    let den = if small { qs } else { (1.0 + s) + sq };
    let d = num / den;
    let t = if small { a + a * d } else { 1.0 - d };
    // NaN gives `x` itself: which of the NaNs inside won would depend on how the
    // compiler ordered commutative operands.
    if x.is_nan() {
        x
    } else {
        t.copysign(x)
    }
}

/// 1 / (1 + e^{−x}), with `a = |x|`: `1/2 + tanh(x/2)/2` for `a < 1.25` (the tanh by
/// the rational form of [`tanh1`], under 0.3 beside the 1/2); above, with
/// `e^{−a} = 2^k·(1 + q)` (`expm1_core`), `s = 2^k`,
/// `w = 1 − (s + s·q)/((1 + s) + s·q)` = `1/(1 + e)` for `x > 0` and
/// `e·w = ((w + q·w)·2^{k₁})·2^{k₂}` (rounded once into the subnormals) for `x < 0`.
/// One division per element, of the selected numerator and denominator.
#[inline(always)]
pub fn sigmoid1(x: f64) -> f64 {
    let mut a = x.abs();
    // Beyond 800 the result is 1 or 0; the clamp keeps k in range (NaN stays).
    if a > 800.0 {
        a = 800.0;
    }
    let h = 0.5 * a;
    let (ps, qs) = tanh_rational(h * h);
    let (k, q) = expm1_core(-a);
    let k1 = round_int(k * 0.5);
    let (s1, s2) = (pow2(k1), pow2(k - k1));
    // 2^k itself may round to a subnormal or zero only where it is negligible beside 1.
    let s = s1 * s2;
    let sq = s * q;
    let small = a < 2.0 * TANH_SWITCH;
    // Big: d = e/(1 + e) ≤ 0.23 and w = 1 − d = 1/(1 + e) is accurate (d's errors count
    // for under a third), and so is e·w = 2^k·(w + q·w).
    let num = if small { ps } else { s + sq };
    let den = if small { qs } else { (1.0 + s) + sq };
    let d = num / den;
    let w = 1.0 - d;
    let big = if x < 0.0 { (w + q * w) * s1 * s2 } else { w };
    let small_t = h + h * d;
    let near = 0.5 + 0.5 * small_t.copysign(x);
    // NaN gives `x` itself (as in `tanh1`).
    if x.is_nan() {
        x
    } else if small {
        near
    } else {
        big
    }
}

/// [`exp1`] at f32: computed in f64 and rounded once.
#[inline(always)]
pub fn exp1_f32(x: f32) -> f32 {
    exp1(f64::from(x)) as f32
}

/// [`log1`] at f32: computed in f64 and rounded once.
#[inline(always)]
pub fn log1_f32(x: f32) -> f32 {
    log1(f64::from(x)) as f32
}

/// [`tanh1`] at f32: computed in f64 and rounded once.
#[inline(always)]
pub fn tanh1_f32(x: f32) -> f32 {
    tanh1(f64::from(x)) as f32
}

/// [`sigmoid1`] at f32: computed in f64 and rounded once.
#[inline(always)]
pub fn sigmoid1_f32(x: f32) -> f32 {
    sigmoid1(f64::from(x)) as f32
}

/// The slice kernels of one function at one width: out-of-place and in place, each a
/// plain loop over the scalar function, compiled for baseline x86_64 (SSE2, packed f64x2)
/// and, chosen at run time, AVX2 (f64x4). Both give the scalar function's bits.
macro_rules! kernels {
    ($t:ty, $name:ident, $in_place:ident, $f1:ident, $what:literal) => {
        #[doc = concat!("`out[i] = ", stringify!($f1), "(x[i])` (", $what, "); ")]
        #[doc = "[`LengthMismatch`] if the lengths differ (nothing written)."]
        pub fn $name(x: &[$t], out: &mut [$t]) -> Result<(), LengthMismatch> {
            if x.len() != out.len() {
                return Err(LengthMismatch {
                    op: stringify!($name),
                    input: x.len(),
                    output: out.len(),
                });
            }
            #[multiversion::multiversion(targets("x86_64+avx2", "aarch64+neon"))]
            fn run(x: &[$t], out: &mut [$t]) {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = $f1(v);
                }
            }
            run(x, out);
            Ok(())
        }

        #[doc = concat!("`x[i] = ", stringify!($f1), "(x[i])` in place (", $what, ").")]
        pub fn $in_place(x: &mut [$t]) {
            #[multiversion::multiversion(targets("x86_64+avx2", "aarch64+neon"))]
            fn run(x: &mut [$t]) {
                for v in x.iter_mut() {
                    *v = $f1(*v);
                }
            }
            run(x)
        }
    };
}

kernels!(f64, exp, exp_in_place, exp1, "eˣ");
kernels!(f64, log, log_in_place, log1, "ln x");
kernels!(f64, tanh, tanh_in_place, tanh1, "tanh x");
kernels!(f64, sigmoid, sigmoid_in_place, sigmoid1, "1 / (1 + e^{−x})");
kernels!(f32, exp_f32, exp_f32_in_place, exp1_f32, "eˣ at f32");
kernels!(f32, log_f32, log_f32_in_place, log1_f32, "ln x at f32");
kernels!(f32, tanh_f32, tanh_f32_in_place, tanh1_f32, "tanh x at f32");
kernels!(
    f32,
    sigmoid_f32,
    sigmoid_f32_in_place,
    sigmoid1_f32,
    "1 / (1 + e^{−x}) at f32"
);
