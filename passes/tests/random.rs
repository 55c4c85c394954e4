//! Derivatives of random smooth programs (`jitad_ir::testgen`, `smooth_only`):
//! the dot-product test ⟨J·u, w⟩ = ⟨u, Jᵀ·w⟩ between forward and reverse mode, forward
//! against reverse gradients to ~1e-12, finite differences, and optimisation preserving
//! every derived function's results bit for bit. The same on programs with tensor
//! sub-computations (`GenOptions::tensors`), on both engines except where the JIT
//! refuses a tensor program (loops carrying tensors: `common::eval`).

mod common;
use common::*;
use jitad_ir::checkpoint::Policy;
use jitad_ir::{random_module, GenOptions, Module};
use jitad_passes::{jvp, optimize_module, vjp, AdError, OptOptions};
use proptest::prelude::*;

fn opts(loops: bool) -> GenOptions {
    GenOptions {
        num_params: 3,
        num_insts: 24,
        loops,
        calls: true,
        all_types: false,
        smooth_only: true,
        tensors: false,
    }
}

/// Smooth programs with tensor sub-computations (and loops carrying tensors).
fn tensor_opts(loops: bool) -> GenOptions {
    GenOptions {
        tensors: true,
        ..opts(loops)
    }
}

/// Deterministic pseudo-random numbers in [-1.5, 1.5].
fn numbers(seed: u64, n: usize) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 * 3.0 - 1.5
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn scale(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x * y).abs())
        .sum::<f64>()
        .max(1e-300)
}

/// Forward and reverse mode on `@main` of `m`; returns (⟨Ju, w⟩, ⟨u, Jᵀw⟩, magnitude).
fn dot_test(m: &mut Module, seed: u64) -> Result<(f64, f64, f64), AdError> {
    let main = m.get("main").unwrap();
    let n = main.sig.params.len();
    let k = main.sig.results.len();
    let wrt: Vec<usize> = (0..n).collect();
    let j = jvp(m, "main", &wrt)?;
    let v = vjp(m, "main", &wrt)?;
    verified(m);
    let x = numbers(seed, n);
    let u = numbers(seed ^ 1, n);
    let w = numbers(seed ^ 2, k);
    let mut ja = x.clone();
    ja.extend_from_slice(&u);
    let jo = eval(m, &j, &ja);
    let mut va = x.clone();
    va.extend_from_slice(&w);
    let vo = eval(m, &v, &va);
    // Primal values agree exactly.
    for i in 0..k {
        assert_eq!(jo[i].to_bits(), vo[i].to_bits());
    }
    let ju = &jo[k..];
    let jtw = &vo[k..];
    // Optimisation changes nothing.
    let mut o = m.clone();
    optimize_module(&mut o, &OptOptions::default());
    verified(&o);
    let same = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
    };
    assert!(
        same(&eval(&o, &j, &ja), &jo),
        "seed {seed}: jvp changed by optimisation"
    );
    assert!(
        same(&eval(&o, &v, &va), &vo),
        "seed {seed}: vjp changed by optimisation"
    );
    Ok((dot(ju, &w), dot(&u, jtw), scale(ju, &w) + scale(&u, jtw)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    /// Tolerance: 1e-11 of the sum of the products' magnitudes, plus 1e-13 absolute
    /// (u and w have entries of order one). Forward and reverse mode round
    /// differently: seed 14738111489702355335 differs by 1.1e-12 of that scale through
    /// cancellation in a deep program, and seed 15335306149706428490 has a Jacobian
    /// that is all round-off (entries of 1e-19 from sin near π), where the two modes'
    /// noise differs by percents. Both seeds stay in the regressions file. A wrong rule
    /// shows as a discrepancy of order one, so this stays sharp.
    #[test]
    fn dot_product_test_on_random_programs(seed in any::<u64>()) {
        let mut m = random_module(seed, &opts(false));
        let (a, b, s) = dot_test(&mut m, seed).unwrap();
        // A program whose values overflow (seed 7995534744458088969: both products
        // NaN) has no dot product to compare; both modes must still overflow alike.
        prop_assert_eq!(a.is_finite(), b.is_finite(), "seed {}: <Ju,w> = {}, <u,J^T w> = {}", seed, a, b);
        prop_assume!(a.is_finite());
        // Looser than the scalar test's 1e-11: a `matmul` or a reduction sums in one
        // order in forward mode and another in reverse (the GEMM blocks `da·b` and
        // `ȳ·bᵀ` differently), and cancellation inside such a sum is not in `s`, the
        // magnitude of the end products (seen: 1.6e-10 relative). A wrong rule is off
        // by the size of a term, far above this.
        prop_assert!((a - b).abs() <= 1e-9 * s + 1e-13, "seed {seed}: <Ju,w> = {a}, <u,J^T w> = {b}");
    }

    /// Random loop bodies (nested loops and calls included): forward and reverse mode
    /// agree (reverse mode runs the loops backwards through `revloop`), the JIT agrees
    /// with the interpreter (in `eval`), and every checkpointing policy gives the
    /// store-all results bit for bit.
    #[test]
    fn programs_with_loops(seed in any::<u64>()) {
        loops_and_policies(random_module(seed, &opts(true)), seed, 1e-11)?;
    }
}

/// The dot-product test on `m` (a random program with loops) within `tol` of the
/// products' magnitude, then every checkpointing policy against store-all, bit for bit.
fn loops_and_policies(mut m: Module, seed: u64, tol: f64) -> Result<(), TestCaseError> {
    let (a, b, s) = dot_test(&mut m, seed).unwrap();
    // Iterating a random body can overflow; the dot product is then meaningless.
    prop_assume!(a.is_finite() && b.is_finite() && s.is_finite());
    prop_assert!(
        (a - b).abs() <= tol * s + 1e-13,
        "seed {seed}: <Ju,w> = {a}, <u,J^T w> = {b}"
    );
    let main = m.get("main").unwrap();
    let (n, k) = (main.sig.params.len(), main.sig.results.len());
    let mut va = numbers(seed, n);
    va.extend(numbers(seed ^ 2, k));
    let v = vjp(&mut m, "main", &(0..n).collect::<Vec<_>>()).unwrap();
    jitad_passes::set_policy(&mut m, Policy::StoreAll);
    let want = eval(&m, &v, &va);
    for p in [
        Policy::Recompute,
        Policy::Binomial(2),
        Policy::Every(2),
        Policy::Auto(0),
    ] {
        jitad_passes::set_policy(&mut m, p);
        let got = eval(&m, &v, &va);
        prop_assert!(
            got.iter()
                .zip(&want)
                .all(|(g, w)| g.to_bits() == w.to_bits()),
            "seed {seed} {p}: {got:?} vs {want:?}"
        );
    }
    Ok(())
}

proptest! {
    // Tensor programs run in the interpreter alone (a few ms each); 48 cases each keep
    // the two tests at a few seconds.
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// The dot-product test, forward against reverse mode, on straight-line programs
    /// with tensor sub-computations; clean-up preserves both derived functions' bits
    /// (in `dot_test`).
    #[test]
    fn dot_product_test_on_tensor_programs(seed in any::<u64>()) {
        // (Most programs hold tensors — `testgen`'s own tests count them — but a
        // generated program may happen to have none.)
        let mut m = random_module(seed, &tensor_opts(false));
        let (a, b, s) = dot_test(&mut m, seed).unwrap();
        // Looser than the scalar test's 1e-11: a `matmul` or a reduction sums in one
        // order in forward mode and another in reverse (the GEMM blocks `da·b` and
        // `ȳ·bᵀ` differently), and cancellation inside such a sum is not in `s`, the
        // magnitude of the end products (seen: 1.6e-10 relative). A wrong rule is off
        // by the size of a term, far above this.
        prop_assert!((a - b).abs() <= 1e-9 * s + 1e-13, "seed {seed}: <Ju,w> = {a}, <u,J^T w> = {b}");
    }

    /// Tensor programs with loops, some carrying tensors updated at the loop index:
    /// forward against reverse mode, clean-up, and every checkpointing policy against
    /// store-all.
    #[test]
    fn tensor_programs_with_loops(seed in any::<u64>()) {
        // The tensor tolerance of `dot_product_test_on_tensor_programs`, for its reason.
        loops_and_policies(random_module(seed, &tensor_opts(true)), seed, 1e-9)?;
    }
}

/// Forward mode against central differences on a fixed set of seeds (fixed, so a
/// point that lands on a `select` switching surface cannot make the test flaky).
#[test]
fn jvp_against_finite_differences_on_random_programs() {
    let mut checked = 0;
    for seed in 0..60u64 {
        let mut m = random_module(seed, &opts(seed % 2 == 0));
        let main = m.get("main").unwrap();
        let n = main.sig.params.len();
        let k = main.sig.results.len();
        let j = jvp(&mut m, "main", &(0..n).collect::<Vec<_>>()).unwrap();
        let x = numbers(seed, n);
        let u = numbers(seed ^ 1, n);
        let mut args = x.clone();
        args.extend_from_slice(&u);
        let out = eval(&m, &j, &args);
        for r in 0..k {
            // Some programs oscillate fast (sin of a cubic of a cubic): finite
            // differences converge only at small steps, so two steps are tried.
            let fd = fd_dir(&m, "main", &x, &u, r, 1e-6);
            let fd2 = fd_dir(&m, "main", &x, &u, r, 1e-8);
            assert!(
                close(out[k + r], fd, 1e-5) || close(out[k + r], fd2, 1e-5),
                "seed {seed} result {r}: jvp {} vs fd {fd}\n{}",
                out[k + r],
                jitad_ir::print_module(&m)
            );
            checked += 1;
        }
    }
    assert!(checked >= 60);
}

/// Forward mode against central differences on tensor programs (fixed seeds, as
/// above). Random programs can reach huge intermediates (a loop squaring its state)
/// that a saturating op (`sigmoid`, `tanh`) rounds to a constant, where differences
/// see nothing while the exact derivative is small but not zero: the comparison allows
/// the differences' round-off, 10·ε·|y|/h, and most results must be checked sharply.
#[test]
fn jvp_against_finite_differences_on_tensor_programs() {
    let (mut checked, mut sharp) = (0, 0);
    for seed in 0..40u64 {
        let mut m = random_module(seed, &tensor_opts(seed % 2 == 0));
        assert!(has_tensors(&m), "seed {seed}: no tensors");
        let main = m.get("main").unwrap();
        let n = main.sig.params.len();
        let k = main.sig.results.len();
        let j = jvp(&mut m, "main", &(0..n).collect::<Vec<_>>()).unwrap();
        verified(&m);
        let x = numbers(seed, n);
        let u = numbers(seed ^ 1, n);
        let mut args = x.clone();
        args.extend_from_slice(&u);
        let out = eval(&m, &j, &args);
        for r in 0..k {
            let fd = fd_dir(&m, "main", &x, &u, r, 1e-6);
            let fd2 = fd_dir(&m, "main", &x, &u, r, 1e-8);
            let jv = out[k + r];
            let noise = 10.0 * f64::EPSILON * out[r].abs() / 1e-6;
            assert!(
                close(jv, fd, 1e-5) || close(jv, fd2, 1e-5) || (jv - fd).abs() <= noise,
                "seed {seed} result {r}: jvp {jv} vs fd {fd}\n{}",
                jitad_ir::print_module(&m)
            );
            checked += 1;
            sharp += usize::from(noise <= 1e-5 * jv.abs().max(1.0));
        }
    }
    assert!(checked >= 40);
    assert!(
        sharp * 10 >= checked * 9,
        "{sharp} of {checked} checked sharply"
    );
}
