//! Lossless JSON numbers: what the `jitad` command line writes and reads.
//!
//! JSON has no infinities or NaN, so they are written as the strings `"inf"`, `"-inf"`
//! and `"nan"`; finite numbers are written as JSON numbers in the shortest form that
//! reads back to the same value (`-0.0` keeps its sign, subnormals and `±f64::MAX` are
//! exact; an `f32` is written in its own shortest form, e.g. `0.1`, not the widened
//! `0.10000000149011612`). Reading accepts exactly what is written (and integers where a
//! float is expected), so every value round-trips bit for bit — except NaN payloads,
//! which all read back as the one quiet NaN.

use jitad_ir::tensor::TensorData;
use jitad_ir::{ScalarType, Type, Val};
use serde_json::{Number, Value};

/// Why a JSON value could not be read as a number of the wanted type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JsonError {
    /// Not a number, nor one of the strings `"inf"`, `"-inf"`, `"nan"`.
    #[error("expected a number or \"inf\", \"-inf\", \"nan\", got {0}")]
    NotANumber(String),
    /// Not an integer in `i64` range.
    #[error("expected an i64, got {0}")]
    NotAnInteger(String),
    /// Not `true` or `false`.
    #[error("expected true or false, got {0}")]
    NotABool(String),
    /// A tensor type, which a scalar JSON value cannot hold.
    #[error("{0} values cannot be read from one JSON number")]
    Tensor(Type),
    /// A tensor written with the wrong shape or element count.
    #[error("a {ty} value: {why}")]
    Shape {
        /// The tensor type wanted.
        ty: Type,
        /// What was wrong.
        why: String,
    },
    /// Named arguments that do not match the parameters.
    #[error("{0}")]
    Names(String),
    /// An array of the wrong length.
    #[error("expected {expected} values, got {got}")]
    Length {
        /// Parameter count.
        expected: usize,
        /// Array length.
        got: usize,
    },
    /// Not an array where a list of arguments is expected.
    #[error("expected an array of arguments, got {0}")]
    NotAnArray(String),
}

/// `x` as JSON: a number if finite, else `"inf"`, `"-inf"` or `"nan"`.
pub fn f64_to_json(x: f64) -> Value {
    match Number::from_f64(x) {
        Some(n) => Value::Number(n),
        None if x.is_nan() => Value::String("nan".into()),
        None if x > 0.0 => Value::String("inf".into()),
        None => Value::String("-inf".into()),
    }
}

/// `x` as JSON, in `f32`'s shortest round-trip form (non-finite values as strings).
pub fn f32_to_json(x: f32) -> Value {
    if !x.is_finite() {
        return f64_to_json(f64::from(x));
    }
    // `{}` prints the shortest decimal that reads back as this f32; as an f64 it prints
    // the same digits (it has at most 9 significant ones) and rounds back to `x`.
    let short: f64 = x.to_string().parse().unwrap_or(f64::from(x));
    f64_to_json(short)
}

/// A scalar value as JSON (floats as [`f64_to_json`] / [`f32_to_json`]).
pub fn val_to_json(v: &Val) -> Value {
    match v {
        Val::F64(x) => f64_to_json(*x),
        Val::F32(x) => f32_to_json(*x),
        Val::I64(x) => Value::from(*x),
        Val::Bool(x) => Value::Bool(*x),
        // A tensor: its type and its elements in row-major order, each written as the
        // scalars are (so non-finite elements survive too).
        Val::Tensor(t) => {
            let data: Vec<Value> = match t.data() {
                TensorData::F64(d) => d.iter().map(|&x| f64_to_json(x)).collect(),
                TensorData::F32(d) => d.iter().map(|&x| f32_to_json(x)).collect(),
                TensorData::I64(d) => d.iter().map(|&x| Value::from(x)).collect(),
                TensorData::Bool(d) => d.iter().map(|&x| Value::Bool(x)).collect(),
            };
            serde_json::json!({ "type": t.ty().to_string(), "data": data })
        }
    }
}

/// Reads a float written by [`f64_to_json`] (or any JSON number).
pub fn json_to_f64(v: &Value) -> Result<f64, JsonError> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| JsonError::NotANumber(v.to_string())),
        Value::String(s) => match s.as_str() {
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            "nan" => Ok(f64::NAN),
            _ => Err(JsonError::NotANumber(v.to_string())),
        },
        _ => Err(JsonError::NotANumber(v.to_string())),
    }
}

/// Reads a value of type `ty` written by [`val_to_json`].
pub fn json_to_val(v: &Value, ty: ScalarType) -> Result<Val, JsonError> {
    Ok(match ty {
        ScalarType::F64 => Val::F64(json_to_f64(v)?),
        // Exact: the f64 read is the f32's shortest form, which rounds back to it.
        ScalarType::F32 => Val::F32(json_to_f64(v)? as f32),
        ScalarType::I64 => Val::I64(
            v.as_i64()
                .ok_or_else(|| JsonError::NotAnInteger(v.to_string()))?,
        ),
        ScalarType::Bool => Val::Bool(
            v.as_bool()
                .ok_or_else(|| JsonError::NotABool(v.to_string()))?,
        ),
    })
}

/// Reads a value of type `ty`: a scalar as [`json_to_val`]; a tensor as nested arrays
/// (one level per axis), one flat array of all its elements in row-major order, or an
/// object `{"shape": [2, 3], "data": [...]}` or `{"type": "f64[2,3]", "data": [...]}`
/// (what [`val_to_json`] writes) whose shape must be `ty`'s. Elements are read as
/// [`json_to_val`] reads scalars, so non-finite ones round-trip.
pub fn json_to_value(v: &Value, ty: Type) -> Result<Val, JsonError> {
    let Type::Tensor(elem, shape) = ty else {
        return json_to_val(v, ty.elem());
    };
    let bad = |why: String| JsonError::Shape { ty, why };
    let body = match v {
        Value::Object(o) => {
            if let Some(s) = o.get("shape") {
                let dims: Option<Vec<u64>> = s
                    .as_array()
                    .and_then(|a| a.iter().map(Value::as_u64).collect());
                let want: Vec<u64> = shape.dims().iter().map(|&d| u64::from(d)).collect();
                if dims.as_ref() != Some(&want) {
                    return Err(bad(format!("\"shape\" is {s}, expected {want:?}")));
                }
            }
            if let Some(t) = o.get("type") {
                if t.as_str() != Some(ty.to_string().as_str()) {
                    return Err(bad(format!("\"type\" is {t}")));
                }
            }
            o.get("data")
                .ok_or_else(|| bad("an object needs \"data\"".into()))?
        }
        other => other,
    };
    // Flatten nested arrays (at most the rank deep) in row-major order, with a stack.
    let mut flat = Vec::with_capacity(shape.num_elements());
    let mut stack = vec![(body, 0usize)];
    while let Some((x, depth)) = stack.pop() {
        match x.as_array() {
            Some(a) if depth < shape.rank() => stack.extend(a.iter().rev().map(|y| (y, depth + 1))),
            Some(_) => {
                return Err(bad(format!(
                    "arrays nested deeper than the rank {}",
                    shape.rank()
                )))
            }
            None if depth == 0 => return Err(bad("expected an array of elements".into())),
            None => flat.push(json_to_val(x, elem)?),
        }
    }
    let n = shape.num_elements();
    if flat.len() != n {
        return Err(bad(format!("expected {n} elements, got {}", flat.len())));
    }
    let data = match elem {
        ScalarType::F64 => TensorData::F64(flat.iter().filter_map(Val::as_f64).collect()),
        ScalarType::F32 => TensorData::F32(
            flat.iter()
                .filter_map(|v| match v {
                    Val::F32(x) => Some(*x),
                    _ => None,
                })
                .collect(),
        ),
        ScalarType::I64 => TensorData::I64(flat.iter().filter_map(Val::as_i64).collect()),
        ScalarType::Bool => TensorData::Bool(flat.iter().filter_map(Val::as_bool).collect()),
    };
    jitad_ir::tensor::Tensor::new(shape, data)
        .map(Val::tensor)
        .map_err(|e| bad(e.to_string()))
}

/// Reads arguments for parameters of types `params` (for `run --inputs`): an array with
/// one entry per parameter, or an object keyed by parameter name (`names`, without the
/// `%`; every parameter must be named and given exactly once). Each entry is read by
/// [`json_to_value`].
pub fn json_to_args(
    v: &Value,
    params: &[Type],
    names: &[Option<String>],
) -> Result<Vec<Val>, JsonError> {
    if let Value::Object(o) = v {
        let mut out = Vec::with_capacity(params.len());
        for (i, &t) in params.iter().enumerate() {
            let name = names.get(i).cloned().flatten().ok_or_else(|| {
                JsonError::Names(format!("parameter {i} has no name: pass an array instead"))
            })?;
            let x = o
                .get(&name)
                .ok_or_else(|| JsonError::Names(format!("no input named \"{name}\"")))?;
            out.push(
                json_to_value(x, t).map_err(|e| JsonError::Names(format!("\"{name}\": {e}")))?,
            );
        }
        if let Some(k) = o
            .keys()
            .find(|k| !names.iter().any(|n| n.as_deref() == Some(k.as_str())))
        {
            return Err(JsonError::Names(format!("no parameter named \"{k}\"")));
        }
        return Ok(out);
    }
    let arr = v
        .as_array()
        .ok_or_else(|| JsonError::NotAnArray(v.to_string()))?;
    if arr.len() != params.len() {
        return Err(JsonError::Length {
            expected: params.len(),
            got: arr.len(),
        });
    }
    arr.iter()
        .zip(params)
        .enumerate()
        .map(|(i, (x, &t))| {
            json_to_value(x, t).map_err(|e| JsonError::Names(format!("input {i} ({t}): {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `v` as JSON text and reads it back.
    fn round_trip(v: Val) -> Val {
        let text = serde_json::to_string(&val_to_json(&v)).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        json_to_val(&back, v.ty()).unwrap()
    }

    fn same_bits(a: Val, b: Val) -> bool {
        match (a, b) {
            (Val::F64(x), Val::F64(y)) => x.to_bits() == y.to_bits() || x.is_nan() && y.is_nan(),
            (Val::F32(x), Val::F32(y)) => x.to_bits() == y.to_bits() || x.is_nan() && y.is_nan(),
            (a, b) => a == b,
        }
    }

    #[test]
    fn special_values_round_trip_exactly() {
        let f64s = [
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            f64::MIN_POSITIVE / 3.0,
            f64::from_bits(1),
            -f64::from_bits(1),
            f64::MAX,
            f64::MIN,
            1e300,
            0.1,
            1.0 / 3.0,
            9007199254740993.0,
        ];
        for x in f64s {
            assert!(same_bits(round_trip(Val::F64(x)), Val::F64(x)), "{x:e}");
        }
        let f32s = [
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -0.0,
            f32::from_bits(1),
            f32::MAX,
            f32::MIN_POSITIVE,
            0.1,
        ];
        for x in f32s {
            assert!(same_bits(round_trip(Val::F32(x)), Val::F32(x)), "{x:e}");
        }
        assert_eq!(round_trip(Val::I64(i64::MIN)), Val::I64(i64::MIN));
        assert_eq!(round_trip(Val::Bool(true)), Val::Bool(true));
        // The written forms.
        assert_eq!(f64_to_json(f64::INFINITY), Value::from("inf"));
        assert_eq!(f64_to_json(f64::NEG_INFINITY), Value::from("-inf"));
        assert_eq!(f64_to_json(f64::NAN), Value::from("nan"));
        assert_eq!(f64_to_json(-0.0).to_string(), "-0.0");
        assert_eq!(f32_to_json(0.1).to_string(), "0.1");
    }

    #[test]
    fn random_bit_patterns_round_trip_exactly() {
        // SplitMix64 over all exponents: normal, subnormal, huge, both signs.
        let mut s = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let x = f64::from_bits(z);
            assert!(same_bits(round_trip(Val::F64(x)), Val::F64(x)), "{z:#x}");
            let y = f32::from_bits(z as u32);
            assert!(
                same_bits(round_trip(Val::F32(y)), Val::F32(y)),
                "{:#x}",
                z as u32
            );
        }
    }

    #[test]
    fn bad_json_is_a_clear_error() {
        assert!(matches!(
            json_to_f64(&Value::from("Infinity")),
            Err(JsonError::NotANumber(_))
        ));
        assert!(matches!(
            json_to_f64(&Value::Null),
            Err(JsonError::NotANumber(_))
        ));
        assert!(matches!(
            json_to_val(&Value::from(1.5), ScalarType::I64),
            Err(JsonError::NotAnInteger(_))
        ));
        let params = [Type::Scalar(ScalarType::F64), Type::Scalar(ScalarType::I64)];
        let args: Value = serde_json::from_str(r#"["-inf", 3]"#).unwrap();
        assert_eq!(
            json_to_args(&args, &params, &[]).unwrap(),
            [Val::F64(f64::NEG_INFINITY), Val::I64(3)]
        );
        let short: Value = serde_json::from_str("[1.0]").unwrap();
        assert!(matches!(
            json_to_args(&short, &params, &[]),
            Err(JsonError::Length {
                expected: 2,
                got: 1
            })
        ));
    }

    #[test]
    fn tensors_read_in_every_form_and_round_trip() {
        use jitad_ir::tensor::Tensor;
        let ty = Type::Tensor(ScalarType::F64, jitad_ir::Shape::new(&[2, 2]).unwrap());
        let want =
            Val::tensor(Tensor::f64(&[2, 2], vec![1.0, f64::NEG_INFINITY, -0.0, 4.5]).unwrap());
        for text in [
            r#"[[1, "-inf"], [-0.0, 4.5]]"#,
            r#"[1, "-inf", -0.0, 4.5]"#,
            r#"{"shape": [2, 2], "data": [1, "-inf", -0.0, 4.5]}"#,
            r#"{"type": "f64[2,2]", "data": [[1, "-inf"], [-0.0, 4.5]]}"#,
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            let got = json_to_value(&v, ty).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "{text}");
        }
        // What `val_to_json` writes reads back bit for bit (NaN and -0 included).
        let odd = Val::tensor(Tensor::f64(&[2, 2], vec![f64::NAN, -0.0, 1e-310, 2.0]).unwrap());
        let back = json_to_value(&val_to_json(&odd), ty).unwrap();
        let bits = |v: &Val| -> Vec<u64> {
            v.as_tensor()
                .unwrap()
                .as_f64()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect()
        };
        assert_eq!(bits(&back)[1..], bits(&odd)[1..]);
        assert!(back.as_tensor().unwrap().as_f64().unwrap()[0].is_nan());
        for bad in [
            r#"[1, 2, 3]"#,
            r#"[[[1]], [2], [3], [4]]"#,
            r#"{"shape": [4], "data": [1, 2, 3, 4]}"#,
            r#"{"data": [1, 2, 3, "x"]}"#,
            r#"3.0"#,
        ] {
            let v: Value = serde_json::from_str(bad).unwrap();
            assert!(json_to_value(&v, ty).is_err(), "{bad}");
        }
    }

    #[test]
    fn named_arguments_match_parameter_names() {
        let params = [Type::Scalar(ScalarType::F64), Type::Scalar(ScalarType::I64)];
        let names = [Some("x".to_string()), Some("n".to_string())];
        let v: Value = serde_json::from_str(r#"{"n": 3, "x": "nan"}"#).unwrap();
        let got = json_to_args(&v, &params, &names).unwrap();
        assert!(got[0].as_f64().unwrap().is_nan() && got[1] == Val::I64(3));
        for (bad, why) in [
            (r#"{"x": 1.0}"#, "no input named \"n\""),
            (r#"{"x": 1.0, "n": 2, "y": 0}"#, "no parameter named \"y\""),
            (r#"{"x": 1.0, "n": 2.5}"#, "\"n\""),
        ] {
            let v: Value = serde_json::from_str(bad).unwrap();
            let e = json_to_args(&v, &params, &names).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let unnamed = [None, None];
        let v: Value = serde_json::from_str(r#"{"x": 1.0, "n": 2}"#).unwrap();
        assert!(json_to_args(&v, &params, &unnamed).is_err());
    }
}
