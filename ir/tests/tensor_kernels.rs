//! Reference kernels against naive loops over multi-indices, on random shapes, broadcast
//! patterns and data; GEMM with strides against a triple loop; logsumexp edge cases.

use jitad_ir::kernels::{self, KernelError, MatView, NumericReduction};
use jitad_ir::shape::{self, Reduction};
use jitad_ir::{ScalarType, Shape, Type};
use proptest::prelude::*;

/// Every multi-index of `dims` in row-major order.
fn indices(dims: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for &d in dims {
        out = out
            .into_iter()
            .flat_map(|p| {
                (0..d).map(move |i| {
                    let mut q = p.clone();
                    q.push(i);
                    q
                })
            })
            .collect();
    }
    out
}

/// Row-major flat offset of `idx` in `dims`.
fn flat(dims: &[usize], idx: &[usize]) -> usize {
    dims.iter().zip(idx).fold(0, |a, (&d, &i)| a * d + i)
}

/// The index of an operand of `dims` broadcast to a result index (right-aligned, size-1
/// axes pinned to 0): NumPy's rule, written independently of the kernels.
fn bcast_index(dims: &[usize], out_idx: &[usize]) -> Vec<usize> {
    let lead = out_idx.len() - dims.len();
    dims.iter()
        .enumerate()
        .map(|(i, &d)| if d == 1 { 0 } else { out_idx[lead + i] })
        .collect()
}

fn data(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0
        })
        .collect()
}

fn count(d: &[usize]) -> usize {
    d.iter().product()
}

/// A result shape (rank 0..=4, dims 1..=4) and an operand shape that broadcasts to it:
/// some leading axes dropped, some of the rest set to 1.
fn broadcast_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    prop::collection::vec(1usize..5, 0..=4)
        .prop_flat_map(|out| {
            let r = out.len();
            (Just(out), 0..=r, prop::collection::vec(any::<bool>(), r))
        })
        .prop_map(|(out, drop, ones)| {
            let op = out[drop..]
                .iter()
                .zip(&ones[drop..])
                .map(|(&d, &one)| if one { 1 } else { d })
                .collect();
            (out, op)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn map2_broadcasts_like_numpy(
        (od, ad) in broadcast_pair(),
        ones in prop::collection::vec(any::<bool>(), 4),
        seed in any::<u64>(),
    ) {
        // The second operand: another pattern on the same result shape.
        let bd: Vec<usize> = od.iter().zip(&ones).map(|(&d, &o)| if o { 1 } else { d }).collect();
        let (a, b) = (data(count(&ad), seed), data(count(&bd), seed ^ 1));
        let mut out = vec![0.0; count(&od)];
        kernels::map2(&a, &ad, &b, &bd, &mut out, &od, |x, y| x * 3.0 - y).unwrap();
        for idx in indices(&od) {
            let x = a[flat(&ad, &bcast_index(&ad, &idx))];
            let y = b[flat(&bd, &bcast_index(&bd, &idx))];
            prop_assert_eq!(out[flat(&od, &idx)].to_bits(), (x * 3.0 - y).to_bits());
        }
        // The shape rule agrees: both operands broadcast to the result shape.
        let ty = |d: &[usize]| Shape::new(d).map_or(Type::F64, |s| Type::Tensor(ScalarType::F64, s));
        prop_assert_eq!(shape::elementwise("fma", &[ty(&ad), ty(&bd), ty(&od)]), Ok(ty(&od)));
        prop_assert!(shape::broadcasts_to(ty(&ad), ty(&od)) && shape::broadcasts_to(ty(&bd), ty(&od)));
        // map1 is broadcast.
        let mut bc = vec![0.0; count(&od)];
        kernels::map1(&a, &ad, &mut bc, &od, |x| x).unwrap();
        for idx in indices(&od) {
            prop_assert_eq!(bc[flat(&od, &idx)], a[flat(&ad, &bcast_index(&ad, &idx))]);
        }
    }

    #[test]
    fn select_broadcasts_three_operands((od, cd) in broadcast_pair(), seed in any::<u64>()) {
        let c: Vec<bool> = data(count(&cd), seed).iter().map(|&v| v > 0.0).collect();
        let a = data(count(&od), seed ^ 2);
        let b = [7.5];
        let mut out = vec![0.0; count(&od)];
        kernels::map3(&c, &cd, &a, &od, &b, &[], &mut out, &od, |c, x, y| if c { x } else { y })
            .unwrap();
        for idx in indices(&od) {
            let want = if c[flat(&cd, &bcast_index(&cd, &idx))] { a[flat(&od, &idx)] } else { 7.5 };
            prop_assert_eq!(out[flat(&od, &idx)], want);
        }
    }

    #[test]
    fn reductions_match_naive_folds(
        dims in prop::collection::vec(1usize..5, 1..=4),
        pick in prop::collection::vec(any::<bool>(), 4),
        reverse in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut axes: Vec<usize> = (0..dims.len()).filter(|&i| pick[i]).collect();
        if reverse {
            axes.reverse(); // any order is accepted
        }
        let x = data(count(&dims), seed);
        let kept: Vec<usize> = (0..dims.len()).filter(|i| !axes.contains(i)).map(|i| dims[i]).collect();
        let n_out = count(&kept);
        // Naive: for each result element, fold its terms in row-major order.
        let mut terms: Vec<Vec<f64>> = vec![vec![]; n_out];
        for idx in indices(&dims) {
            let k: Vec<usize> = (0..dims.len()).filter(|i| !axes.contains(i)).map(|i| idx[i]).collect();
            terms[flat(&kept, &k)].push(x[flat(&dims, &idx)]);
        }
        for red in Reduction::ALL {
            let mut out = vec![0.0; n_out];
            let mut scratch = vec![0.0; n_out];
            kernels::reduce_real(red, &x, &dims, &axes, &mut out, &mut scratch).unwrap();
            for (o, t) in out.iter().zip(&terms) {
                let sum = t.iter().fold(-0.0, |s, &v| s + v);
                let mx = t.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let want = match red {
                    Reduction::Sum => sum,
                    Reduction::Max => mx,
                    Reduction::Min => t.iter().copied().fold(f64::INFINITY, f64::min),
                    Reduction::Mean => sum / t.len() as f64,
                    Reduction::LogSumExp => mx + t.iter().map(|&v| (v - mx).exp()).sum::<f64>().ln(),
                };
                match red {
                    // Same terms, same order: the same bits.
                    Reduction::Sum | Reduction::Max | Reduction::Min | Reduction::Mean => {
                        prop_assert_eq!(o.to_bits(), want.to_bits(), "{:?}", red)
                    }
                    // libm's exp/log against the platform's: a few ulps.
                    Reduction::LogSumExp => prop_assert!((o - want).abs() <= 1e-14 * want.abs().max(1.0)),
                }
            }
        }
        // The shape rule agrees.
        let ty = Type::Tensor(ScalarType::F64, Shape::new(&dims).unwrap());
        let want = Shape::new(&kept).map_or(Type::F64, |s| Type::Tensor(ScalarType::F64, s));
        prop_assert_eq!(shape::reduce(Reduction::Sum, ty, &axes), Ok(want));
    }

    #[test]
    fn transpose_matches_naive(
        dims in prop::collection::vec(1usize..5, 1..=4),
        keys in prop::collection::vec(any::<u32>(), 4),
        seed in any::<u64>(),
    ) {
        let r = dims.len();
        let mut perm: Vec<usize> = (0..r).collect();
        perm.sort_by_key(|&i| keys[i]);
        let x = data(count(&dims), seed);
        let od: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
        let mut out = vec![0.0; x.len()];
        kernels::transpose(&x, &dims, &perm, &mut out).unwrap();
        for idx in indices(&od) {
            let mut src = vec![0; r];
            for (i, &p) in perm.iter().enumerate() {
                src[p] = idx[i];
            }
            prop_assert_eq!(out[flat(&od, &idx)], x[flat(&dims, &src)]);
        }
        // Transposing back with the inverse permutation is the identity.
        let inv = shape::inverse_permutation(&perm).unwrap();
        let mut back = vec![0.0; x.len()];
        kernels::transpose(&out, &od, &inv, &mut back).unwrap();
        prop_assert_eq!(back, x);
    }

    #[test]
    fn slice_pad_concat_match_naive(
        dims in prop::collection::vec(1usize..6, 1..=4),
        cuts in prop::collection::vec((0usize..6, 0usize..6, 1usize..4), 4),
        widths in prop::collection::vec((0usize..3, 0usize..3), 4),
        axis_key in 0usize..4,
        seed in any::<u64>(),
    ) {
        let r = dims.len();
        let x = data(count(&dims), seed);
        // Slice: clamp random cuts into non-empty in-bounds ranges.
        let ranges: Vec<(usize, usize, usize)> = (0..r)
            .map(|i| {
                let (a, b, s) = cuts[i];
                let start = a % dims[i];
                let end = start + 1 + b % (dims[i] - start);
                (start, end, s)
            })
            .collect();
        let sd: Vec<usize> = ranges.iter().map(|&(a, b, s)| (b - a).div_ceil(s)).collect();
        let mut out = vec![0.0; count(&sd)];
        kernels::slice(&x, &dims, &ranges, &mut out).unwrap();
        for idx in indices(&sd) {
            let src: Vec<usize> = idx.iter().zip(&ranges).map(|(&i, &(a, _, s))| a + i * s).collect();
            prop_assert_eq!(out[flat(&sd, &idx)], x[flat(&dims, &src)]);
        }
        // Pad.
        let w = &widths[..r];
        let pd: Vec<usize> = dims.iter().zip(w).map(|(&d, &(l, h))| d + l + h).collect();
        let mut out = vec![0.0; count(&pd)];
        kernels::pad(&x, &dims, 9.0, w, &mut out).unwrap();
        for idx in indices(&pd) {
            let inside: Option<Vec<usize>> = idx
                .iter()
                .zip(w)
                .zip(&dims)
                .map(|((&i, &(l, _)), &d)| i.checked_sub(l).filter(|&j| j < d))
                .collect();
            let want = inside.map_or(9.0, |src| x[flat(&dims, &src)]);
            prop_assert_eq!(out[flat(&pd, &idx)], want);
        }
        // Concat x with a slice-sized piece along one axis.
        let axis = axis_key % r;
        let mut yd = dims.clone();
        yd[axis] = sd[axis];
        let y = data(count(&yd), seed ^ 5);
        let mut cd = dims.clone();
        cd[axis] += yd[axis];
        let mut out = vec![0.0; count(&cd)];
        kernels::concat(&[(&x, &dims), (&y, &yd)], axis, &mut out).unwrap();
        for idx in indices(&cd) {
            let want = if idx[axis] < dims[axis] {
                x[flat(&dims, &idx)]
            } else {
                let mut j = idx.clone();
                j[axis] -= dims[axis];
                y[flat(&yd, &j)]
            };
            prop_assert_eq!(out[flat(&cd, &idx)], want);
        }
    }

    #[test]
    fn gemm_with_strides_matches_triple_loop(
        m in 1usize..24, k in 1usize..24, n in 1usize..24,
        ta in any::<bool>(), tb in any::<bool>(), seed in any::<u64>(),
    ) {
        // A is m×k, stored as k×m when `ta` (and read through a transposed view).
        let (a, b) = (data(m * k, seed), data(k * n, seed ^ 3));
        let av = if ta { MatView::row_major(&a, 0, m).t() } else { MatView::row_major(&a, 0, k) };
        let bv = if tb { MatView::row_major(&b, 0, k).t() } else { MatView::row_major(&b, 0, n) };
        let at = |i: usize, p: usize| if ta { a[p * m + i] } else { a[i * k + p] };
        let bt = |p: usize, j: usize| if tb { b[j * k + p] } else { b[p * n + j] };
        let mut c = vec![f64::NAN; m * n]; // overwritten, never read
        kernels::gemm(m, k, n, av, bv, &mut c, 0).unwrap();
        let mut c2 = vec![0.0; m * n];
        kernels::gemm(m, k, n, av, bv, &mut c2, 0).unwrap();
        for i in 0..m {
            for j in 0..n {
                let (mut s, mut scale) = (0.0, 0.0);
                for p in 0..k {
                    s += at(i, p) * bt(p, j);
                    scale += (at(i, p) * bt(p, j)).abs();
                }
                // Summation order differs from the triple loop: relative to Σ|terms|.
                prop_assert!((c[i * n + j] - s).abs() <= 1e-14 * scale.max(1e-300) * k as f64);
                // Deterministic: the same bits on a second call.
                prop_assert_eq!(c[i * n + j].to_bits(), c2[i * n + j].to_bits());
            }
        }
    }

    #[test]
    fn matmul_all_ranks_match_triple_loop(
        bsz in 1usize..4, m in 1usize..9, k in 1usize..9, n in 1usize..9,
        form in 0usize..5, seed in any::<u64>(),
    ) {
        let t = |d: &[usize]| Type::Tensor(ScalarType::F64, Shape::new(d).unwrap());
        let (ad, bd): (Vec<usize>, Vec<usize>) = match form {
            0 => (vec![m, k], vec![k, n]),
            1 => (vec![m, k], vec![k]),
            2 => (vec![k], vec![k, n]),
            3 => (vec![bsz, m, k], vec![k, n]),
            _ => (vec![bsz, m, k], vec![bsz, k, n]),
        };
        let (ty, dims) = shape::matmul_dims(t(&ad), t(&bd)).unwrap();
        let (a, b) = (data(count(&ad), seed), data(count(&bd), seed ^ 9));
        let mut out = vec![0.0; ty.num_elements()];
        kernels::matmul(dims, &a, &b, &mut out).unwrap();
        for bi in 0..dims.batch {
            for i in 0..dims.m {
                for j in 0..dims.n {
                    let s: f64 = (0..dims.k)
                        .map(|p| a[bi * dims.a_batch_stride + i * dims.k + p]
                            * b[bi * dims.b_batch_stride + p * dims.n + j])
                        .sum();
                    let got = out[(bi * dims.m + i) * dims.n + j];
                    prop_assert!((got - s).abs() <= 1e-13 * (1.0 + s.abs()));
                }
            }
        }
    }
}

#[test]
fn logsumexp_is_stable() {
    let lse = |x: &[f64]| {
        let (mut out, mut s) = ([0.0], [0.0]);
        kernels::reduce_real(Reduction::LogSumExp, x, &[x.len()], &[0], &mut out, &mut s).unwrap();
        out[0]
    };
    let ln2 = std::f64::consts::LN_2;
    assert_eq!(lse(&[1000.0, 1000.0]), 1000.0 + ln2); // naive exp overflows
    assert_eq!(lse(&[-1000.0, -1000.0]), -1000.0 + ln2); // naive exp underflows
    assert_eq!(lse(&[f64::NEG_INFINITY; 3]), f64::NEG_INFINITY); // not NaN
    assert_eq!(lse(&[f64::NEG_INFINITY, 0.0]), 0.0);
    assert_eq!(lse(&[f64::INFINITY, 1.0]), f64::INFINITY);
    assert!(lse(&[f64::NAN, 1.0]).is_nan());
    assert!(lse(&[1.0, f64::NAN]).is_nan());
    assert_eq!(lse(&[3.0]), 3.0);
    // A row of -inf among finite rows (axis 1 of a [2,2]).
    let x = [f64::NEG_INFINITY, f64::NEG_INFINITY, 1.0, 1.0];
    let (mut out, mut s) = ([0.0; 2], [0.0; 2]);
    kernels::reduce_real(Reduction::LogSumExp, &x, &[2, 2], &[1], &mut out, &mut s).unwrap();
    assert_eq!(out, [f64::NEG_INFINITY, 1.0 + ln2]);
    // f32 too.
    let (mut o32, mut s32) = ([0.0f32], [0.0f32]);
    kernels::reduce_real(
        Reduction::LogSumExp,
        &[100.0f32, 100.0],
        &[2],
        &[0],
        &mut o32,
        &mut s32,
    )
    .unwrap();
    assert_eq!(o32[0], 100.0 + std::f32::consts::LN_2);
}

#[test]
fn max_min_follow_the_scalar_ops() {
    let red = |r, x: &[f64]| {
        let mut out = [0.0];
        kernels::reduce(r, x, &[x.len()], &[0], &mut out).unwrap();
        out[0]
    };
    assert!(red(NumericReduction::Max, &[-0.0, 0.0]).is_sign_positive());
    assert!(red(NumericReduction::Max, &[0.0, -0.0]).is_sign_positive());
    assert!(red(NumericReduction::Min, &[0.0, -0.0]).is_sign_negative());
    assert!(red(NumericReduction::Max, &[1.0, f64::NAN, 2.0]).is_nan());
    assert!(red(NumericReduction::Min, &[f64::NAN, 2.0]).is_nan());
    assert_eq!(
        red(NumericReduction::Max, &[f64::NEG_INFINITY]),
        f64::NEG_INFINITY
    );
    // A sum of one -0.0 is -0.0 (the fold starts at -0.0, the additive identity).
    assert!(red(NumericReduction::Sum, &[-0.0]).is_sign_negative());
    // i64 sums wrap.
    let mut out = [0i64];
    kernels::reduce(NumericReduction::Sum, &[i64::MAX, 1], &[2], &[0], &mut out).unwrap();
    assert_eq!(out[0], i64::MIN);
}

#[test]
fn iota_extract_insert() {
    let mut out = [0i64; 6];
    kernels::iota(&mut out, &[2, 3], 1).unwrap();
    assert_eq!(out, [0, 1, 2, 0, 1, 2]);
    kernels::iota(&mut out, &[2, 3], 0).unwrap();
    assert_eq!(out, [0, 0, 0, 1, 1, 1]);
    let mut f = [0.0f32; 4];
    kernels::iota(&mut f, &[4], 0).unwrap();
    assert_eq!(f, [0.0, 1.0, 2.0, 3.0]);

    let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let mut row = [0.0; 3];
    kernels::extract_row(&x, &[2, 3], 1, &mut row).unwrap();
    assert_eq!(row, [4.0, 5.0, 6.0]);
    let mut e = [0.0];
    kernels::extract_row(&x, &[6], 4, &mut e).unwrap();
    assert_eq!(e, [5.0]);
    assert_eq!(
        kernels::extract_row(&x, &[2, 3], 2, &mut row),
        Err(KernelError::Index { index: 2, len: 2 })
    );
    assert_eq!(
        kernels::extract_row(&x, &[2, 3], -1, &mut row)
            .unwrap_err()
            .to_string(),
        "index -1 is out of range for a leading axis of length 2"
    );
    let mut y = x;
    kernels::insert_row(&mut y, &[2, 3], 0, &[7.0, 8.0, 9.0]).unwrap();
    assert_eq!(y, [7.0, 8.0, 9.0, 4.0, 5.0, 6.0]);
    assert!(kernels::insert_row(&mut y, &[2, 3], 5, &[0.0; 3]).is_err());
    assert!(kernels::insert_row(&mut y, &[2, 3], 0, &[0.0; 2]).is_err());
}

#[test]
fn kernels_reject_mismatched_buffers() {
    let x = [1.0; 6];
    let mut out = [0.0; 5];
    let err = kernels::map1(&x, &[2, 3], &mut out, &[2, 3], |v| v).unwrap_err();
    assert_eq!(
        err.to_string(),
        "result: a buffer of 5 elements does not hold a tensor of shape [2, 3]"
    );
    // Zero-size dimensions do not exist: refused, even with matching (empty) buffers.
    let mut empty: [f64; 0] = [];
    assert!(kernels::map1(&[], &[2, 0], &mut empty, &[2, 0], |v: f64| v).is_err());
    let mut out6 = [0.0; 6];
    assert!(kernels::map2(&x, &[2, 3], &x, &[3, 2], &mut out6, &[2, 3], |a, b| a + b).is_err());
    assert!(kernels::transpose(&x, &[2, 3], &[0, 0], &mut out6).is_err());
    assert!(kernels::slice(&x, &[2, 3], &[(0, 2, 1), (2, 2, 1)], &mut out6).is_err());
    let mut o2 = [0.0; 2];
    assert!(kernels::reduce(NumericReduction::Sum, &x, &[2, 3], &[2], &mut o2).is_err());
    assert!(kernels::reduce(NumericReduction::Sum, &x, &[2, 3], &[1, 1], &mut o2).is_err());
    let mut s1 = [0.0; 1];
    assert!(
        kernels::reduce_real(Reduction::LogSumExp, &x, &[2, 3], &[1], &mut o2, &mut s1).is_err()
    );
    // A view that reaches past its buffer is refused, not read.
    let mut c = [0.0; 4];
    let av = MatView::row_major(&x, 2, 3); // 2×3 from offset 2 needs 8 elements
    assert!(kernels::gemm(2, 3, 2, av, MatView::row_major(&x, 0, 2), &mut c, 0).is_err());
    assert!(kernels::concat::<f64>(&[], 0, &mut out6).is_err());
    assert!(kernels::dot(&[1.0, 2.0], &[1.0]).is_err());
    assert_eq!(kernels::dot(&[1.0, 2.0], &[3.0, 4.0]), Ok(11.0));
}

/// A product gives the same bits whether an operand is read through a transposed view
/// (the JIT's strided GEMM) or materialised first (the interpreter), for the vector
/// paths (`n = 1`, `m = 1`, `k = 1`) and the library GEMM alike.
#[test]
fn gemm_bits_do_not_depend_on_strides() {
    use jitad_ir::kernels::{gemm, MatView};
    let mut seed = 12345u64;
    let mut rnd = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    let shapes = [
        (2, 2, 2),
        (3, 5, 4),
        (4, 4, 1),
        (9, 7, 1),
        (1, 4, 4),
        (1, 9, 3),
        (5, 1, 6),
        (1, 6, 1),
        (33, 17, 9),
        (64, 64, 64),
        (5, 300, 7),
        (2, 1000, 3),
    ];
    for (m, k, n) in shapes {
        let a: Vec<f64> = (0..m * k).map(|_| rnd()).collect();
        let b: Vec<f64> = (0..k * n).map(|_| rnd()).collect();
        let mut at = vec![0.0; m * k];
        for i in 0..m {
            for p in 0..k {
                at[p * m + i] = a[i * k + p];
            }
        }
        let mut bt = vec![0.0; k * n];
        for p in 0..k {
            for j in 0..n {
                bt[j * k + p] = b[p * n + j];
            }
        }
        let mut want = vec![0.0; m * n];
        gemm(
            m,
            k,
            n,
            MatView::row_major(&a, 0, k),
            MatView::row_major(&b, 0, n),
            &mut want,
            0,
        )
        .unwrap();
        let a_t = MatView {
            data: &at,
            offset: 0,
            rs: 1,
            cs: m,
        };
        let b_t = MatView {
            data: &bt,
            offset: 0,
            rs: 1,
            cs: k,
        };
        for (which, av, bv) in [
            ("Aᵀ", a_t, MatView::row_major(&b, 0, n)),
            ("Bᵀ", MatView::row_major(&a, 0, k), b_t),
            ("both", a_t, b_t),
        ] {
            let mut got = vec![0.0; m * n];
            gemm(m, k, n, av, bv, &mut got, 0).unwrap();
            for (x, y) in got.iter().zip(&want) {
                assert_eq!(x.to_bits(), y.to_bits(), "{m}×{k}×{n} through {which}");
            }
        }
    }
}
