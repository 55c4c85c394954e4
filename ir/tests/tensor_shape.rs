//! Shape rules of the tensor ops: accepted shapes give the expected type, rejected ones
//! an error whose message names the shapes.

use jitad_ir::shape::{self, Reduction, ShapeError, SliceRange};
use jitad_ir::{ScalarType, Shape, Type};

fn t(d: &[usize]) -> Type {
    Type::Tensor(ScalarType::F64, Shape::new(d).unwrap())
}
fn tf(d: &[usize]) -> Type {
    Type::Tensor(ScalarType::F32, Shape::new(d).unwrap())
}
fn tb(d: &[usize]) -> Type {
    Type::Tensor(ScalarType::Bool, Shape::new(d).unwrap())
}
fn ti(d: &[usize]) -> Type {
    Type::Tensor(ScalarType::I64, Shape::new(d).unwrap())
}
fn msg<T: std::fmt::Debug>(r: Result<T, ShapeError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn elementwise_broadcasting() {
    let ok = |ops: &[Type], want: Type| assert_eq!(shape::elementwise("add", ops), Ok(want));
    ok(&[Type::F64, Type::F64], Type::F64);
    ok(&[t(&[3]), Type::F64], t(&[3]));
    ok(&[Type::F64, t(&[2, 3])], t(&[2, 3]));
    ok(&[t(&[3, 1]), t(&[4])], t(&[3, 4]));
    ok(&[t(&[2, 1, 4]), t(&[3, 1])], t(&[2, 3, 4]));
    ok(&[t(&[1]), t(&[5, 1, 2, 1])], t(&[5, 1, 2, 1]));
    ok(&[t(&[1, 4]), t(&[3, 1]), t(&[2, 1, 1])], t(&[2, 3, 4]));
    ok(&[tf(&[8]), tf(&[8])], tf(&[8]));
    assert_eq!(
        msg(shape::elementwise("add", &[t(&[3, 4]), t(&[5])])),
        "`add`: cannot broadcast f64[3,4] with f64[5]"
    );
    assert_eq!(
        msg(shape::elementwise("mul", &[t(&[3]), tf(&[3])])),
        "`mul`: element types of f64[3] and f32[3] differ"
    );
    // The third operand is reported against the broadcast of the first two.
    assert_eq!(
        msg(shape::elementwise(
            "fma",
            &[t(&[3, 1]), t(&[4]), t(&[2, 4])]
        )),
        "`fma`: cannot broadcast f64[3,4] with f64[2,4]"
    );
    assert_eq!(
        msg(shape::elementwise("add", &[])),
        "`add` needs at least one operand"
    );
}

#[test]
fn compare_and_select() {
    assert_eq!(shape::compare("lt", t(&[3, 1]), t(&[4])), Ok(tb(&[3, 4])));
    assert_eq!(shape::compare("eq", Type::F64, Type::F64), Ok(Type::BOOL));
    assert_eq!(
        msg(shape::compare("lt", t(&[2]), t(&[3]))),
        "`lt`: cannot broadcast f64[2] with f64[3]"
    );
    assert_eq!(
        shape::select(tb(&[3, 1]), t(&[4]), Type::F64),
        Ok(t(&[3, 4]))
    );
    assert_eq!(shape::select(Type::BOOL, t(&[2]), t(&[2])), Ok(t(&[2])));
    assert_eq!(
        msg(shape::select(t(&[2]), t(&[2]), t(&[2]))),
        "`select`: operand 0 has type f64[2], expected bool elements"
    );
    assert_eq!(
        msg(shape::select(tb(&[2]), t(&[2]), tf(&[2]))),
        "`select`: element types of f64[2] and f32[2] differ"
    );
    assert_eq!(
        msg(shape::select(tb(&[3]), t(&[2]), t(&[2]))),
        "`select`: cannot broadcast bool[3] with f64[2]"
    );
}

#[test]
fn fill_broadcast_iota() {
    assert_eq!(shape::fill(ScalarType::F64, t(&[32, 8])), Ok(t(&[32, 8])));
    assert_eq!(
        msg(shape::fill(ScalarType::F32, t(&[2]))),
        "`fill`: element types of f32 and f64[2] differ"
    );
    assert_eq!(shape::broadcast_to(t(&[8]), t(&[32, 8])), Ok(t(&[32, 8])));
    assert_eq!(shape::broadcast_to(Type::F64, t(&[3])), Ok(t(&[3])));
    assert_eq!(shape::broadcast_to(t(&[3, 1]), t(&[3, 5])), Ok(t(&[3, 5])));
    assert_eq!(
        msg(shape::broadcast_to(t(&[3, 5]), t(&[3, 1]))),
        "`broadcast`: cannot broadcast f64[3,5] to f64[3,1]"
    );
    assert_eq!(
        msg(shape::broadcast_to(t(&[2, 3]), t(&[3]))),
        "`broadcast`: cannot broadcast f64[2,3] to f64[3]"
    );
    assert_eq!(shape::iota(ti(&[4, 5]), 1), Ok(ti(&[4, 5])));
    assert_eq!(
        msg(shape::iota(t(&[4, 5]), 2)),
        "`iota`: axis 2 is out of range for f64[4,5] (rank 2)"
    );
    assert!(shape::iota(tb(&[4]), 0).is_err());
    assert!(shape::iota(Type::F64, 0).is_err());
}

#[test]
fn reductions() {
    for red in Reduction::ALL {
        assert_eq!(shape::reduce(red, t(&[2, 3, 4]), &[1]), Ok(t(&[2, 4])));
        assert_eq!(shape::reduce(red, t(&[2, 3, 4]), &[2, 0]), Ok(t(&[3])));
        assert_eq!(shape::reduce(red, t(&[2, 3]), &[0, 1]), Ok(Type::F64));
        assert_eq!(shape::reduce(red, t(&[2, 3]), &[]), Ok(t(&[2, 3])));
        assert_eq!(shape::reduce(red, Type::F64, &[]), Ok(Type::F64));
    }
    assert_eq!(shape::reduce(Reduction::Sum, ti(&[2]), &[0]), Ok(Type::I64));
    assert_eq!(
        msg(shape::reduce(Reduction::Mean, ti(&[2]), &[0])),
        "`mean`: operand 0 has type i64[2], expected f64 or f32 elements"
    );
    assert_eq!(
        msg(shape::reduce(Reduction::Sum, t(&[2, 3]), &[2])),
        "`sum`: axis 2 is out of range for f64[2,3] (rank 2)"
    );
    assert_eq!(
        msg(shape::reduce(Reduction::Max, t(&[2, 3]), &[1, 1])),
        "`max`: axis 1 is listed twice for f64[2,3]"
    );
    assert_eq!(
        msg(shape::reduce(Reduction::LogSumExp, Type::F64, &[0])),
        "`logsumexp`: axis 0 is out of range for f64 (rank 0)"
    );
    assert!(shape::reduce(Reduction::Min, tb(&[2]), &[0]).is_err());
    assert_eq!(shape::keep_dims(t(&[2, 3, 4]), &[1]), Ok(t(&[2, 1, 4])));
    assert_eq!(shape::keep_dims(t(&[2, 3]), &[0, 1]), Ok(t(&[1, 1])));
}

#[test]
fn sum_back_of_broadcasts() {
    let sb = shape::sum_back(t(&[3, 1]), t(&[2, 3, 4])).unwrap();
    assert_eq!(sb.axes, vec![0, 2]);
    assert_eq!(sb.summed, t(&[3]));
    assert_eq!(sb.reshape, Some(t(&[3, 1])));
    let sb = shape::sum_back(t(&[4]), t(&[2, 3, 4])).unwrap();
    assert_eq!(
        (sb.axes, sb.summed, sb.reshape),
        (vec![0, 1], t(&[4]), None)
    );
    let sb = shape::sum_back(Type::F64, t(&[2, 3])).unwrap();
    assert_eq!(
        (sb.axes, sb.summed, sb.reshape),
        (vec![0, 1], Type::F64, None)
    );
    let sb = shape::sum_back(t(&[2, 3]), t(&[2, 3])).unwrap();
    assert!(sb.is_identity());
    // [1,1] broadcast to [1,5]: only axis 1 stretched; axis 0 stays (size 1 both).
    let sb = shape::sum_back(t(&[1, 1]), t(&[1, 5])).unwrap();
    assert_eq!(
        (sb.axes, sb.summed, sb.reshape),
        (vec![1], t(&[1]), Some(t(&[1, 1])))
    );
    // The element type follows the operand (a bool condition's adjoint never exists,
    // but sum_back is shape-only).
    assert_eq!(
        msg(shape::sum_back(t(&[3]), t(&[4]))),
        "`sum_back`: cannot broadcast f64[3] to f64[4]"
    );
    // Whatever the pattern, summing then reshaping gives back the operand type.
    for (o, r) in [
        (t(&[1, 4]), t(&[3, 4])),
        (t(&[3, 1, 1]), t(&[2, 3, 5, 7])),
        (t(&[1]), t(&[6])),
    ] {
        let sb = shape::sum_back(o, r).unwrap();
        assert_eq!(shape::reduce(Reduction::Sum, r, &sb.axes), Ok(sb.summed));
        assert_eq!(sb.reshape.unwrap_or(sb.summed), o);
    }
}

#[test]
fn matmul_and_dot() {
    let ok = |a, b, want| assert_eq!(shape::matmul(a, b), Ok(want));
    ok(t(&[256, 64]), t(&[64, 256]), t(&[256, 256]));
    ok(t(&[4, 3]), t(&[3]), t(&[4]));
    ok(t(&[3]), t(&[3, 5]), t(&[5]));
    ok(t(&[7, 4, 3]), t(&[7, 3, 5]), t(&[7, 4, 5]));
    ok(t(&[7, 4, 3]), t(&[3, 5]), t(&[7, 4, 5]));
    ok(tf(&[1, 1]), tf(&[1, 1]), tf(&[1, 1]));
    let (_, d) = shape::matmul_dims(t(&[7, 4, 3]), t(&[3, 5])).unwrap();
    assert_eq!((d.batch, d.m, d.k, d.n), (7, 4, 3, 5));
    assert_eq!((d.a_batch_stride, d.b_batch_stride), (12, 0));
    let (_, d) = shape::matmul_dims(t(&[7, 4, 3]), t(&[7, 3, 5])).unwrap();
    assert_eq!((d.a_batch_stride, d.b_batch_stride), (12, 15));
    assert_eq!(
        msg(shape::matmul(t(&[4, 3]), t(&[4, 3]))),
        "`matmul`: cannot multiply f64[4,3] by f64[4,3] (inner dimensions 3 and 4 differ)"
    );
    assert_eq!(
        msg(shape::matmul(t(&[2, 4, 3]), t(&[5, 3, 4]))),
        "`matmul`: cannot multiply f64[2,4,3] by f64[5,3,4] (batch dimensions 2 and 5 differ)"
    );
    assert_eq!(
        msg(shape::matmul(t(&[3]), t(&[3]))),
        "`matmul`: cannot multiply f64[3] by f64[3] (vector·vector is `dot`)"
    );
    assert!(msg(shape::matmul(t(&[3, 4]), t(&[2, 4, 3])))
        .starts_with("`matmul`: cannot multiply f64[3,4] by f64[2,4,3] (expected"));
    assert!(shape::matmul(Type::F64, t(&[3])).is_err());
    assert!(shape::matmul(ti(&[2, 2]), ti(&[2, 2])).is_err());
    assert!(shape::matmul(t(&[2, 2]), tf(&[2, 2])).is_err());

    assert_eq!(shape::dot(t(&[5]), t(&[5])), Ok(Type::F64));
    assert_eq!(
        msg(shape::dot(t(&[5]), t(&[4]))),
        "`dot`: cannot multiply f64[5] by f64[4] (lengths 5 and 4 differ)"
    );
    assert_eq!(
        msg(shape::dot(t(&[5, 1]), t(&[5]))),
        "`dot`: operand 0 has type f64[5,1], expected a vector of f64 or f32"
    );
}

#[test]
fn transpose_and_reshape() {
    assert_eq!(shape::transpose(t(&[2, 3]), &[1, 0]), Ok(t(&[3, 2])));
    assert_eq!(
        shape::transpose(t(&[2, 3, 4]), &[2, 0, 1]),
        Ok(t(&[4, 2, 3]))
    );
    assert_eq!(shape::transpose(Type::F64, &[]), Ok(Type::F64));
    assert_eq!(
        msg(shape::transpose(t(&[2, 3]), &[0, 0])),
        "`transpose`: [0, 0] is not a permutation of the 2 axes of f64[2,3]"
    );
    assert!(shape::transpose(t(&[2, 3]), &[0, 2]).is_err());
    assert!(shape::transpose(t(&[2, 3]), &[0]).is_err());
    assert_eq!(shape::inverse_permutation(&[2, 0, 1]), Some(vec![1, 2, 0]));
    assert_eq!(shape::inverse_permutation(&[1, 1]), None);
    assert_eq!(shape::inverse_permutation(&[3]), None);

    assert_eq!(shape::reshape(t(&[4, 64]), t(&[256])), Ok(t(&[256])));
    assert_eq!(shape::reshape(t(&[1, 1]), Type::F64), Ok(Type::F64));
    assert_eq!(shape::reshape(Type::F64, t(&[1])), Ok(t(&[1])));
    assert_eq!(
        msg(shape::reshape(t(&[4, 64]), t(&[255]))),
        "`reshape`: f64[4,64] has 256 elements but f64[255] has 255"
    );
    assert!(shape::reshape(t(&[4]), tf(&[4])).is_err());
    // Element counts far beyond usize compare exactly.
    let m = u32::MAX as usize;
    assert!(shape::reshape(t(&[m, m, m, m]), t(&[m, m, m, m - 1])).is_err());
}

#[test]
fn slice_concat_pad() {
    let r = SliceRange::new;
    assert_eq!(
        shape::slice(t(&[8, 8]), &[r(0, 4), r(2, 6)]),
        Ok(t(&[4, 4]))
    );
    let stepped = SliceRange {
        start: 1,
        end: 8,
        step: 3,
    };
    assert_eq!(shape::slice(t(&[8]), &[stepped]), Ok(t(&[3]))); // 1, 4, 7
    assert_eq!(
        msg(shape::slice(t(&[8, 8]), &[r(0, 4), r(2, 9)])),
        "`slice`: range 2:9 is empty or out of bounds for axis 1 of f64[8,8]"
    );
    assert!(shape::slice(t(&[8]), &[r(3, 3)]).is_err());
    assert!(shape::slice(
        t(&[8]),
        &[SliceRange {
            start: 0,
            end: 2,
            step: 0
        }]
    )
    .is_err());
    assert_eq!(
        msg(shape::slice(t(&[8, 8]), &[r(0, 4)])),
        "`slice`: 1 per-axis entries given for f64[8,8] (rank 2)"
    );
    assert_eq!(stepped.to_string(), "1:8:3");

    assert_eq!(shape::concat(&[t(&[2, 3]), t(&[4, 3])], 0), Ok(t(&[6, 3])));
    assert_eq!(
        shape::concat(&[t(&[2, 3]), t(&[2, 1]), t(&[2, 2])], 1),
        Ok(t(&[2, 6]))
    );
    assert_eq!(shape::concat(&[t(&[5])], 0), Ok(t(&[5])));
    assert_eq!(
        msg(shape::concat(&[t(&[2, 3]), t(&[4, 2])], 0)),
        "`concat`: cannot concatenate f64[2,3] with f64[4,2] along axis 0"
    );
    assert!(shape::concat(&[t(&[2, 3]), t(&[2])], 0).is_err());
    assert!(shape::concat(&[t(&[2]), tf(&[2])], 0).is_err());
    assert!(shape::concat(&[t(&[2])], 1).is_err());
    assert!(shape::concat(&[Type::F64], 0).is_err());
    assert!(shape::concat(&[], 0).is_err());

    assert_eq!(
        shape::pad(t(&[2, 3]), Type::F64, &[(1, 0), (2, 2)]),
        Ok(t(&[3, 7]))
    );
    assert_eq!(
        msg(shape::pad(t(&[2, 3]), t(&[1]), &[(1, 0), (2, 2)])),
        "`pad`: operand 1 has type f64[1], expected a scalar pad value"
    );
    assert!(shape::pad(t(&[2, 3]), Type::F32, &[(1, 0), (2, 2)]).is_err());
    assert!(shape::pad(t(&[2, 3]), Type::F64, &[(1, 0)]).is_err());
    // A padded dimension above u32::MAX is not representable.
    assert!(
        msg(shape::pad(t(&[u32::MAX as usize]), Type::F64, &[(1, 0)]))
            .contains("not representable")
    );
}

#[test]
fn extract_and_insert() {
    assert_eq!(shape::extract(t(&[5]), Type::I64), Ok(Type::F64));
    assert_eq!(shape::extract(t(&[5, 3]), Type::I64), Ok(t(&[3])));
    assert_eq!(shape::extract(ti(&[5, 3, 2]), Type::I64), Ok(ti(&[3, 2])));
    assert_eq!(
        msg(shape::extract(Type::F64, Type::I64)),
        "`extract`: operand 0 has type f64, expected a tensor"
    );
    assert_eq!(
        msg(shape::extract(t(&[5]), Type::F64)),
        "`extract`: operand 1 has type f64, expected an i64 index"
    );
    assert_eq!(
        shape::insert(t(&[3]), t(&[5, 3]), Type::I64),
        Ok(t(&[5, 3]))
    );
    assert_eq!(shape::insert(Type::F64, t(&[5]), Type::I64), Ok(t(&[5])));
    assert_eq!(
        msg(shape::insert(t(&[4]), t(&[5, 3]), Type::I64)),
        "`insert`: cannot insert f64[4] into f64[5,3], whose rows are f64[3]"
    );
    assert_eq!(
        msg(shape::insert(t(&[3]), t(&[5, 3]), Type::BOOL)),
        "`insert`: operand 2 has type bool, expected an i64 index"
    );
}
