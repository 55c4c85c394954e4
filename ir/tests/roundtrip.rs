//! Text round trips over random programs: print → parse → print is the identity,
//! value names survive, parsed programs verify, and they evaluate to the same bits —
//! scalar programs and programs with tensor sub-computations (`GenOptions::tensors`).

use jitad_ir::testgen::{random_module, GenOptions};
use jitad_ir::{
    eval, parse_module, print_module, verify_module, Function, FunctionBuilder, Module, Op, Type,
    Val, Value,
};
use proptest::prelude::*;

/// Every value a function defines, in textual order (params, then per instruction in
/// program order: results, then region params).
fn text_order(f: &Function) -> Vec<Value> {
    let mut out = f.params().to_vec();
    for inst in f.insts_in_order() {
        let d = &f.insts[inst];
        out.extend_from_slice(&d.results);
        for &r in &d.regions {
            out.extend_from_slice(&f.regions[r].params);
        }
    }
    out
}

fn opts_strategy() -> impl Strategy<Value = GenOptions> {
    (
        1usize..4,
        0usize..40,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(num_params, num_insts, loops, calls, all_types, smooth_only, tensors)| GenOptions {
                num_params,
                num_insts,
                loops,
                calls,
                all_types,
                smooth_only,
                tensors,
            },
        )
}

/// Arguments for `@main`: its f64 params, then `%n` when present.
fn main_args(m: &Module, seed: u64) -> Vec<Val> {
    let main = m.funcs.last().expect("a main function");
    main.sig
        .params
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            if t == Type::I64 {
                Val::I64((seed % 9) as i64 - 3)
            } else {
                Val::F64(0.3 + 0.7 * i as f64 - (seed % 5) as f64 * 0.25)
            }
        })
        .collect()
}

fn same_bits(a: &[Val], b: &[Val]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Val::F64(p), Val::F64(q)) => p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()),
            (Val::F32(p), Val::F32(q)) => p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()),
            _ => x == y,
        })
}

fn check_round_trip(m: &Module) -> Result<String, TestCaseError> {
    let text = print_module(m);
    let m2 = parse_module(&text)
        .map_err(|e| TestCaseError::fail(format!("printed module does not parse: {e}\n{text}")))?;
    let again = print_module(&m2);
    prop_assert_eq!(&again, &text);
    prop_assert!(
        verify_module(&m2).is_ok(),
        "reparsed module does not verify:\n{}",
        text
    );
    prop_assert_eq!(m.funcs.len(), m2.funcs.len());
    Ok(text)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Generated programs verify; print → parse → print is the identity; every name
    /// survives; the reparsed program computes the same bits.
    #[test]
    fn generated_modules_round_trip(seed in any::<u64>(), opts in opts_strategy()) {
        let m = random_module(seed, &opts);
        if let Err(e) = verify_module(&m) {
            return Err(TestCaseError::fail(format!("generated module does not verify: {e}\n{}", print_module(&m))));
        }
        let main = m.funcs.last().unwrap();
        prop_assert_eq!(&main.name, "main");
        prop_assert!(!main.sig.results.is_empty());
        let text = check_round_trip(&m)?;
        let m2 = parse_module(&text).unwrap();
        for (f, f2) in m.funcs.iter().zip(&m2.funcs) {
            prop_assert_eq!(&f.name, &f2.name);
            prop_assert_eq!(&f.sig, &f2.sig);
            let (a, b) = (text_order(f), text_order(f2));
            prop_assert_eq!(a.len(), b.len());
            for (&v, &w) in a.iter().zip(&b) {
                prop_assert_eq!(f.ty(v), f2.ty(w));
                // Generated names are unique and valid, so they survive verbatim;
                // unnamed values come back named by their printed label.
                let label = f.value_label(v);
                prop_assert_eq!(f2.name_of(w), Some(label.as_str()));
            }
        }
        let args = main_args(&m, seed);
        let r1 = eval(&m, "main", &args);
        let r2 = eval(&m2, "main", &args);
        match (r1, r2) {
            (Ok(a), Ok(b)) => prop_assert!(same_bits(&a, &b), "{:?} vs {:?}", a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (a, b) => prop_assert!(false, "{:?} vs {:?}", a, b),
        }
    }

    /// Clashing, empty and invalid names (as passes may leave them) still print as
    /// unique valid labels, and the result is a fixed point of print ∘ parse.
    #[test]
    fn clashing_names_round_trip(
        seed in any::<u64>(),
        names in proptest::collection::vec(
            prop_oneof![
                Just("a"), Just("a.1"), Just("v3"), Just("x0"), Just("x y"), Just(""),
                Just(".."), Just("b."), Just("t2"), Just("é"),
            ],
            0..40,
        ),
    ) {
        let mut m = random_module(seed, &GenOptions::default());
        for f in &mut m.funcs {
            let vals = text_order(f);
            for (k, name) in names.iter().enumerate() {
                if let Some(&v) = vals.get((k * 7 + seed as usize) % vals.len().max(1)) {
                    f.set_name(v, *name);
                }
            }
        }
        let text = check_round_trip(&m)?;
        let m2 = parse_module(&text).unwrap();
        let args = main_args(&m, seed);
        prop_assert!(same_bits(&eval(&m, "main", &args).unwrap_or_default(), &eval(&m2, "main", &args).unwrap_or_default()));
    }
}

#[test]
fn duplicate_names_get_fresh_suffixes() {
    let mut b = FunctionBuilder::new("f");
    let x = b.named_param("a", Type::F64);
    let y = b.named_param("a", Type::F64);
    let s = b.ins1(Op::Add, &[x, y]).unwrap();
    b.set_name(s, "a.1"); // clashes with the suffix the second `a` would get
    let t = b.ins1(Op::Mul, &[s, s]).unwrap();
    let u = b.ins1(Op::Neg, &[t]).unwrap();
    b.set_name(u, "v4"); // looks like the label of an unnamed value
    let w = b.ins1(Op::Neg, &[u]).unwrap();
    b.ret(&[w]).unwrap();
    let f = b.finish().unwrap();
    let text = f.to_string();
    assert_eq!(
        text,
        "func @f(%a: f64, %a.2: f64) -> f64 {\n  %a.1 = add %a, %a.2\n  %v3 = mul %a.1, %a.1\n  \
         %v4 = neg %v3\n  %v5 = neg %v4\n  ret %v5\n}\n"
    );
    let m = Module { funcs: vec![f] };
    let again = print_module(&parse_module(&text).unwrap());
    assert_eq!(again, text);
    assert_eq!(m.to_string(), text);
}

#[test]
fn floats_round_trip_exactly() {
    for v in [
        0.1,
        -0.0,
        1e-300,
        5e-324,
        f64::MAX,
        f64::MIN_POSITIVE,
        1.0 / 3.0,
        123456789.0,
        -2.5e-7,
    ] {
        let mut b = FunctionBuilder::new("c");
        let c = b.const_f64(v);
        b.ret(&[c]).unwrap();
        let text = b.finish().unwrap().to_string();
        let m = parse_module(&text).unwrap();
        let got = eval(&m, "c", &[]).unwrap();
        assert_eq!(got, vec![Val::F64(v)], "{text}");
        assert_eq!(print_module(&m), text);
    }
    for v in [0.1f32, f32::MAX, f32::MIN_POSITIVE, 1e-45, -3.3] {
        let mut b = FunctionBuilder::new("c");
        let c = b.constant(jitad_ir::Constant::F32(v));
        b.ret(&[c]).unwrap();
        let text = b.finish().unwrap().to_string();
        let f = jitad_ir::parse_function(&text).unwrap();
        assert_eq!(f.to_string(), text);
        let got = eval(&Module { funcs: vec![f] }, "c", &[]).unwrap();
        assert_eq!(
            got[0].as_f64().map(|x| (x as f32).to_bits()),
            Some(v.to_bits())
        );
    }
}
