//! Compile time and largest frame for one loop whose body is `3 n` IR instructions
//! (`n` products of the carried value, all live until a reverse-order sum: the
//! register allocator's worst case). Usage:
//! `cargo run -p jitad-codegen --release --example loop_body_scaling -- [n ...]`.
//! Prints the default options' result (a `FrameTooLarge` error when the body is one
//! Cranelift function with too many spills), then the same with no frame limit.

use jitad_codegen::{compile_module, CompileOptions};
use jitad_ir::parse_module;
use std::fmt::Write as _;

fn program(n: usize) -> String {
    let mut s = String::from("func @main(%x: f64) -> f64 {\n");
    s.push_str("  %r = loop %i in 0..3 (%t = %x : f64) {\n");
    for k in 0..n {
        let _ = writeln!(
            s,
            "    %c{k} = const {}.25 : f64\n    %v{k} = mul %t, %c{k}",
            k % 97
        );
    }
    let mut acc = format!("%v{}", n - 1);
    for k in (0..n - 1).rev() {
        let _ = writeln!(s, "    %s{k} = add {acc}, %v{k}");
        acc = format!("%s{k}");
    }
    let _ = writeln!(
        s,
        "    %next = sin {acc}\n    yield %next\n  }}\n  ret %r\n}}"
    );
    s
}

fn main() {
    let ns: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let ns = if ns.is_empty() { vec![2000, 6667] } else { ns };
    for n in ns {
        let m = parse_module(&program(n)).expect("generated program parses");
        for (what, limit) in [
            ("default frame limit", None),
            ("no frame limit", Some(u64::MAX)),
        ] {
            let mut opts = CompileOptions {
                verify: false,
                ..CompileOptions::default()
            };
            if let Some(l) = limit {
                opts.max_frame_bytes = l;
            }
            match compile_module(&m, "main", &opts) {
                Ok(f) => {
                    let st = f.stats();
                    println!(
                        "body {} insts, {what}: total {:?} (cranelift {:?}), {} chunks, largest frame {} bytes",
                        3 * n,
                        st.total,
                        st.cranelift,
                        st.chunks,
                        st.max_frame_bytes
                    );
                }
                Err(e) => println!("body {} insts, {what}: error: {e}", 3 * n),
            }
        }
    }
}
