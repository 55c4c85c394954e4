//! Helpers shared by the tensor test files: a deterministic generator, random values
//! of any type, and bit-for-bit comparison (any NaN equals any NaN).
// Each test file uses its own subset.
#![allow(dead_code)]

use jitad_ir::tensor::{Tensor, TensorData};
use jitad_ir::{ScalarType, Type, Val};
use std::sync::Arc;

/// A small deterministic generator (no dependency needed for test inputs).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn f64(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// A random value of type `t`; an `i64` scalar is below `i64_below` (so it may serve
/// as a trip count or an index), tensor elements of `i64` below 5.
pub fn random_val(t: Type, rng: &mut Rng, i64_below: u64) -> Val {
    match t {
        Type::Scalar(ScalarType::F64) => Val::F64(rng.f64()),
        Type::Scalar(ScalarType::F32) => Val::F32(rng.f64() as f32),
        Type::Scalar(ScalarType::I64) => Val::I64((rng.next() % i64_below) as i64),
        Type::Scalar(ScalarType::Bool) => Val::Bool(rng.next().is_multiple_of(2)),
        Type::Tensor(e, shape) => {
            let n = t.num_elements();
            let data = match e {
                ScalarType::F64 => TensorData::F64((0..n).map(|_| rng.f64()).collect()),
                ScalarType::F32 => TensorData::F32((0..n).map(|_| rng.f64() as f32).collect()),
                ScalarType::I64 => {
                    TensorData::I64((0..n).map(|_| (rng.next() % 5) as i64).collect())
                }
                ScalarType::Bool => {
                    TensorData::Bool((0..n).map(|_| rng.next().is_multiple_of(2)).collect())
                }
            };
            Val::Tensor(Arc::new(Tensor::new(shape, data).unwrap()))
        }
    }
}

pub fn same_f64(x: f64, y: f64) -> bool {
    x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
}

/// Equal bits (any NaN equals any NaN).
pub fn same(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Val::F64(x), Val::F64(y)) => same_f64(*x, *y),
        (Val::F32(x), Val::F32(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
        (Val::Tensor(x), Val::Tensor(y)) => {
            x.ty() == y.ty()
                && match (x.data(), y.data()) {
                    (TensorData::F64(p), TensorData::F64(q)) => {
                        p.iter().zip(q).all(|(&a, &b)| same_f64(a, b))
                    }
                    (TensorData::F32(p), TensorData::F32(q)) => p
                        .iter()
                        .zip(q)
                        .all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())),
                    (p, q) => p == q,
                }
        }
        (x, y) => x == y,
    }
}
