//! Scalar semantics of every float op, as plain `extern "C"` functions.
//!
//! The interpreter evaluates through these functions and the JIT registers the very same
//! ones as runtime symbols, so both engines agree bit for bit on everything that is not a
//! single IEEE instruction. Transcendentals come from `libm` (a pure-Rust port of musl's
//! libm) rather than the platform C library, so results do not depend on the host.

macro_rules! float_math {
    ($t:ty, $m:ident, $exp:path, $expm1:path, $log:path, $log1p:path, $sin:path,
     $cos:path, $tan:path, $tanh:path, $erf:path, $pow:path, $atan2:path) => {
        /// Scalar semantics at one float width.
        pub mod $m {
            /// eˣ.
            pub extern "C" fn exp(x: $t) -> $t {
                $exp(x)
            }
            /// eˣ − 1.
            pub extern "C" fn expm1(x: $t) -> $t {
                $expm1(x)
            }
            /// ln x.
            pub extern "C" fn log(x: $t) -> $t {
                $log(x)
            }
            /// ln(1 + x).
            pub extern "C" fn log1p(x: $t) -> $t {
                $log1p(x)
            }
            /// sin x.
            pub extern "C" fn sin(x: $t) -> $t {
                $sin(x)
            }
            /// cos x.
            pub extern "C" fn cos(x: $t) -> $t {
                $cos(x)
            }
            /// tan x.
            pub extern "C" fn tan(x: $t) -> $t {
                $tan(x)
            }
            /// tanh x.
            pub extern "C" fn tanh(x: $t) -> $t {
                $tanh(x)
            }
            /// The error function.
            pub extern "C" fn erf(x: $t) -> $t {
                $erf(x)
            }
            /// xʸ with C99 edge cases.
            pub extern "C" fn pow(x: $t, y: $t) -> $t {
                $pow(x, y)
            }
            /// atan2(y, x).
            pub extern "C" fn atan2(y: $t, x: $t) -> $t {
                $atan2(y, x)
            }
            /// 1 / (1 + e^(−x)), written so neither branch overflows: for x ≥ 0 the
            /// exponent is ≤ 0; for x < 0, e^x / (1 + e^x).
            pub extern "C" fn sigmoid(x: $t) -> $t {
                if x >= 0.0 {
                    1.0 / (1.0 + $exp(-x))
                } else {
                    let e = $exp(x);
                    e / (1.0 + e)
                }
            }
            /// xⁿ by square-and-multiply from the least significant bit; for n < 0,
            /// 1 / x^|n|. The order of multiplications is fixed here, so the JIT (which
            /// calls this) and the interpreter agree exactly.
            pub extern "C" fn powi(x: $t, n: i32) -> $t {
                let mut e = n.unsigned_abs();
                let mut base = x;
                let mut acc: $t = 1.0;
                while e != 0 {
                    if e & 1 == 1 {
                        acc *= base;
                    }
                    e >>= 1;
                    if e != 0 {
                        base *= base;
                    }
                }
                if n < 0 {
                    1.0 / acc
                } else {
                    acc
                }
            }
            /// IEEE 754-2019 `minimum`: NaN if either operand is NaN; −0 < +0.
            pub extern "C" fn min(a: $t, b: $t) -> $t {
                if a.is_nan() || b.is_nan() {
                    <$t>::NAN
                } else if a == b {
                    // Equal values differ at most in sign (±0): prefer the negative.
                    if a.is_sign_negative() {
                        a
                    } else {
                        b
                    }
                } else if a < b {
                    a
                } else {
                    b
                }
            }
            /// IEEE 754-2019 `maximum`: NaN if either operand is NaN; +0 > −0.
            pub extern "C" fn max(a: $t, b: $t) -> $t {
                if a.is_nan() || b.is_nan() {
                    <$t>::NAN
                } else if a == b {
                    if a.is_sign_positive() {
                        a
                    } else {
                        b
                    }
                } else if a > b {
                    a
                } else {
                    b
                }
            }
            /// |a| with the sign bit of b, but NaN (the canonical one) when b is NaN: the
            /// sign of a NaN is not pinned (it depends on operand order in the hardware
            /// instruction that made it), so it must not become a number's sign.
            pub extern "C" fn copysign(a: $t, b: $t) -> $t {
                if b.is_nan() {
                    <$t>::NAN
                } else {
                    a.copysign(b)
                }
            }
            /// Round half away from zero.
            pub extern "C" fn round(x: $t) -> $t {
                x.round()
            }
        }
    };
}

float_math!(
    f64,
    f64m,
    libm::exp,
    libm::expm1,
    libm::log,
    libm::log1p,
    libm::sin,
    libm::cos,
    libm::tan,
    libm::tanh,
    libm::erf,
    libm::pow,
    libm::atan2
);
float_math!(
    f32,
    f32m,
    libm::expf,
    libm::expm1f,
    libm::logf,
    libm::log1pf,
    libm::sinf,
    libm::cosf,
    libm::tanf,
    libm::tanhf,
    libm::erff,
    libm::powf,
    libm::atan2f
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powi_matches_repeated_multiplication_for_small_n() {
        for &x in &[0.5, -1.25, 3.0, 1e-3] {
            let mut p = 1.0;
            for n in 0..12 {
                assert!((f64m::powi(x, n) - p).abs() <= 1e-12 * p.abs().max(1.0));
                assert!((f64m::powi(x, -n) - 1.0 / p).abs() <= 1e-9 * (1.0 / p).abs().max(1.0));
                p *= x;
            }
        }
        assert_eq!(f64m::powi(2.0, i32::MIN), 0.0);
        assert_eq!(f64m::powi(0.0, -1), f64::INFINITY);
    }

    #[test]
    fn min_max_follow_ieee_2019() {
        assert!(f64m::min(f64::NAN, 1.0).is_nan());
        assert!(f64m::max(1.0, f64::NAN).is_nan());
        assert!(f64m::min(0.0, -0.0).is_sign_negative());
        assert!(f64m::min(-0.0, 0.0).is_sign_negative());
        assert!(f64m::max(-0.0, 0.0).is_sign_positive());
        assert!(f64m::max(0.0, -0.0).is_sign_positive());
        assert_eq!(f64m::min(-2.0, 3.0), -2.0);
        assert_eq!(f32m::max(-2.0, 3.0), 3.0);
    }

    #[test]
    fn sigmoid_is_stable_at_extremes() {
        assert_eq!(f64m::sigmoid(-1000.0), 0.0);
        assert_eq!(f64m::sigmoid(1000.0), 1.0);
        assert!((f64m::sigmoid(0.3) - 1.0 / (1.0 + (-0.3f64).exp())).abs() < 1e-15);
        assert!((f64m::sigmoid(-0.3) - 1.0 / (1.0 + (0.3f64).exp())).abs() < 1e-15);
    }
}
