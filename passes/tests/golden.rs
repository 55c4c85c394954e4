//! Golden files: `tests/ir/ad/NAME.jir` (input; the last function is differentiated with
//! respect to every float parameter, or those a `; wrt: 0, 1, ...` line lists) and `NAME.{jvp,vjp,grad}.expected.jir`, the derived
//! functions after `optimize_module`, compared as text with the shared harness
//! (`jitad_testkit::Golden`: a unified diff on mismatch). `JITAD_BLESS=1 cargo test -p
//! jitad-passes --test golden` rewrites the expectations and prints what changed; read
//! a blessed file before committing it — a golden file pins shape, not truth (truth is
//! checked by the finite-difference and dot-product tests).

mod common;
use jitad_ir::{parse_module, print_module, verify_module, Module};
use jitad_passes::{float_params, grad, jvp, optimize_module, vjp, OptOptions};
use jitad_testkit::{unified_diff, Golden};
use std::path::{Path, PathBuf};

fn suite() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ir/ad")
}

/// The parameters a `; wrt: 0, 1, ...` line of `src` lists, if it has one.
fn wrt_line(src: &str) -> Option<Vec<usize>> {
    let line = src.lines().find_map(|l| l.trim().strip_prefix("; wrt:"))?;
    Some(
        line.split(',')
            .map(|x| x.trim().parse().expect("`; wrt:` lists parameter indices"))
            .collect(),
    )
}

fn derive(input: &Module, kind: &str, wrt: Option<&[usize]>) -> String {
    let mut m = input.clone();
    let Some(f) = m.funcs.last() else {
        return String::new();
    };
    let name = f.name.clone();
    let wrt = wrt.map_or_else(|| float_params(f), <[usize]>::to_vec);
    match kind {
        "jvp" => jvp(&mut m, &name, &wrt),
        "vjp" => vjp(&mut m, &name, &wrt),
        _ => grad(&mut m, &name, &wrt),
    }
    .unwrap_or_else(|e| panic!("{kind} of @{name}: {e}"));
    optimize_module(&mut m, &OptOptions::default());
    verify_module(&m).unwrap();
    let mut out = Module::new();
    for f in m.funcs {
        if input.get(&f.name).is_none() {
            out.funcs.push(f);
        }
    }
    print_module(&out)
}

#[test]
fn golden_derivatives() {
    let mut g = Golden::new("cargo test -p jitad-passes --test golden");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(suite())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "jir")
                && !p.to_string_lossy().ends_with(".expected.jir")
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty());
    for input in &inputs {
        let src = std::fs::read_to_string(input).unwrap();
        let module = parse_module(&src).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        let stem = input.file_stem().unwrap().to_string_lossy().to_string();
        for kind in ["jvp", "vjp", "grad"] {
            let got = derive(&module, kind, wrt_line(&src).as_deref());
            // The printed output, beside its input, parses back and prints identically.
            let both = format!("{}\n{got}", print_module(&module));
            match parse_module(&both) {
                Ok(reparsed) if print_module(&reparsed) == both => {}
                Ok(reparsed) => g.fail(format!(
                    "{stem}.{kind}: print(parse(output)) differs:\n{}",
                    unified_diff(&stem, &both, &print_module(&reparsed))
                )),
                Err(e) => g.fail(format!("{stem}.{kind}: output does not parse: {e}\n{both}")),
            }
            g.check(&suite().join(format!("{stem}.{kind}.expected.jir")), &got);
        }
    }
    g.finish();
}
