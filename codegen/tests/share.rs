//! Chunks sharing machine code (`CompileOptions::share_chunks`): repetitive functions
//! compile each distinct chunk once, and every chunk still reads and writes its own
//! words: results equal the unshared compile's and the interpreter's, bit for bit.

mod common;

use common::{same, Rng};
use jitad_codegen::{compile_module, CompileOptions};
use jitad_ir::{eval, parse_module, EvalError, Function, Inst, Module, Op, Region, Val};
use std::fmt::Write as _;

fn opts(chunk: usize, share: bool) -> CompileOptions {
    CompileOptions {
        verify: true,
        chunk_size: chunk,
        chunk_threshold: chunk,
        share_chunks: share,
        ..CompileOptions::default()
    }
}

/// The extended Rosenbrock's shape written out element by element, with every
/// element's term also returned on its own (stored by the chunk computing it).
fn elementwise(n: usize) -> String {
    let mut s = String::from("func @main(");
    for i in 0..n {
        let _ = write!(s, "{}%x{i}: f64", if i > 0 { ", " } else { "" });
    }
    s.push_str(") -> (");
    for i in 0..n {
        let _ = write!(s, "{}f64", if i > 0 { ", " } else { "" });
    }
    s.push_str(
        ") {\n  %c100 = const 100.0 : f64\n  %one = const 1.0 : f64\n  %s0 = const 0.0 : f64\n",
    );
    for i in 0..n - 1 {
        let j = i + 1;
        let _ = write!(
            s,
            "  %q{i} = mul %x{i}, %x{i}\n  %d{i} = sub %x{j}, %q{i}\n  %e{i} = mul %d{i}, %d{i}\n  \
             %f{i} = mul %c100, %e{i}\n  %g{i} = sub %one, %x{i}\n  %h{i} = mul %g{i}, %g{i}\n  \
             %t{i} = add %f{i}, %h{i}\n  %s{j} = add %s{i}, %t{i}\n"
        );
    }
    s.push_str("  ret ");
    for i in 0..n - 1 {
        let _ = write!(s, "%t{i}, ");
    }
    let _ = writeln!(s, "%s{}\n}}", n - 1);
    s
}

fn run(m: &Module, o: &CompileOptions, args: &[Val]) -> (Vec<Val>, usize, usize) {
    let c = compile_module(m, "main", o).unwrap();
    let mut out = vec![Val::F64(0.0); c.results().len()];
    c.call(args, &mut out).unwrap();
    (out, c.stats().chunks, c.stats().shared_chunks)
}

fn assert_same(a: &[Val], b: &[Val], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(same(x, y), "{what}: result {k}: {x:?} vs {y:?}");
    }
}

#[test]
fn repeated_chunks_compile_once_and_compute_the_same() {
    let n = 800;
    let m = parse_module(&elementwise(n)).unwrap();
    jitad_ir::verify_module(&m).unwrap();
    let mut rng = Rng(7);
    let args: Vec<Val> = (0..n).map(|_| Val::F64(rng.f64())).collect();
    let want = eval(&m, "main", &args).unwrap();
    for chunk in [8, 24, 50, 200] {
        let (own, chunks, none) = run(&m, &opts(chunk, false), &args);
        let (shared, chunks2, shared_n) = run(&m, &opts(chunk, true), &args);
        assert_eq!(none, 0);
        assert_eq!(chunks, chunks2);
        // The body repeats every 8 instructions, so chunks repeat too. The first few
        // differ in where their words lie (the constants' slots sit close to their
        // own, so they group differently) and the last one returns: most share.
        assert!(
            shared_n * 2 >= chunks,
            "chunk {chunk}: {shared_n} of {chunks} shared"
        );
        // Chunks are described on several threads and the parts merged: the same
        // sharing as on one.
        for threads in [1, 3] {
            let o = CompileOptions {
                threads,
                ..opts(chunk, true)
            };
            let (out, _, n) = run(&m, &o, &args);
            assert_eq!(n, shared_n, "chunk {chunk}, {threads} threads");
            assert_same(&out, &want, "shared on other threads");
        }
        assert_same(&own, &want, "unshared vs interpreter");
        assert_same(
            &shared,
            &want,
            &format!("shared (chunk {chunk}) vs interpreter"),
        );
    }
}

/// A random repetitive function: a template of `len` instructions repeated `reps`
/// times, each repetition reading parameters `stride` further on, its predecessor's
/// values and those of the repetition `back` before it, sometimes through a call, a
/// loop or a guard (that a value is below the last parameter, `%lim`; at top level or
/// in a loop body), and returning some of its values.
fn random_repetitive(rng: &mut Rng) -> String {
    let params = 24;
    let len = 3 + (rng.next() % 8) as usize;
    let reps = 6 + (rng.next() % 20) as usize;
    let stride = 1 + (rng.next() % 3) as usize;
    let back = 1 + (rng.next() % 4) as usize;
    // Per template slot: the op and its operand choices, fixed across repetitions.
    #[derive(Clone, Copy)]
    enum Src {
        Param(usize),
        Local(usize),
        Prev(usize),
        Back(usize),
    }
    let mut tmpl: Vec<(u64, [Src; 2])> = vec![];
    for j in 0..len {
        let mut pick = || match rng.next() % 4 {
            0 => Src::Param((rng.next() % 5) as usize),
            1 if j > 0 => Src::Local((rng.next() % j as u64) as usize),
            2 => Src::Prev((rng.next() % len as u64) as usize),
            3 => Src::Back((rng.next() % len as u64) as usize),
            _ => Src::Param(0),
        };
        let ops = [pick(), pick()];
        tmpl.push((rng.next() % 10, ops));
    }
    let rets: Vec<usize> = (0..len).filter(|_| rng.next().is_multiple_of(3)).collect();
    let mut s = String::from("func @main(");
    for i in 0..params {
        let _ = write!(s, "{}%p{i}: f64", if i > 0 { ", " } else { "" });
    }
    let nret = reps * rets.len() + 1;
    s.push_str(", %lim: f64) -> (");
    for i in 0..nret {
        let _ = write!(s, "{}f64", if i > 0 { ", " } else { "" });
    }
    s.push_str(") {\n  %three = const 3 : i64\n");
    let name = |r: usize, j: usize| format!("%v{r}_{j}");
    for r in 0..reps {
        for (j, &(op, srcs)) in tmpl.iter().enumerate() {
            let arg = |src: Src| match src {
                Src::Param(k) => format!("%p{}", (r * stride + k) % params),
                Src::Local(k) => name(r, k),
                Src::Prev(k) if r >= 1 => name(r - 1, k),
                Src::Back(k) if r >= back => name(r - back, k),
                Src::Prev(k) | Src::Back(k) => format!("%p{}", k % params),
            };
            let (a, b) = (arg(srcs[0]), arg(srcs[1]));
            let v = name(r, j);
            let _ = match op {
                0 => writeln!(s, "  {v} = add {a}, {b}"),
                1 => writeln!(s, "  {v} = sub {a}, {b}"),
                2 | 3 => writeln!(s, "  {v} = mul {a}, {b}"),
                4 => writeln!(s, "  {v} = sin {a}"),
                5 => writeln!(s, "  {v} = call @h({a}, {b})"),
                6 => writeln!(
                    s,
                    "  {v} = loop %i{r}_{j} in 0..%three (%c{r}_{j} = {a} : f64) {{\n    \
                     %n{r}_{j} = mul %c{r}_{j}, {b}\n    yield %n{r}_{j}\n  }}"
                ),
                7 => writeln!(
                    s,
                    "  %ok{r}_{j} = lt {a}, %lim\n  guard %ok{r}_{j}\n  {v} = tanh {b}"
                ),
                8 => writeln!(
                    s,
                    "  {v} = loop %i{r}_{j} in 0..%three (%c{r}_{j} = {a} : f64) {{\n    \
                     %n{r}_{j} = mul %c{r}_{j}, {b}\n    %ok{r}_{j} = lt %n{r}_{j}, %lim\n    \
                     guard %ok{r}_{j}\n    yield %n{r}_{j}\n  }}"
                ),
                _ => writeln!(s, "  {v} = const {}.5 : f64", j % 3),
            };
        }
    }
    s.push_str("  ret ");
    for r in 0..reps {
        for &j in &rets {
            let _ = write!(s, "{}, ", name(r, j));
        }
    }
    let _ = writeln!(s, "{}\n}}", name(reps - 1, len - 1));
    s.push_str(
        "func @h(%a: f64, %b: f64) -> f64 {\n  %s = add %a, %b\n  %m = mul %s, %a\n  \
         %t = tanh %m\n  ret %t\n}\n",
    );
    s
}

/// The guards of region `r` and the regions in it, in program order (a loop body's at
/// the loop's place), as guard errors number them.
fn guards_in_order(f: &Function, r: Region, out: &mut Vec<Inst>) {
    for &i in &f.regions[r].insts {
        if f.insts[i].op == Op::Guard {
            out.push(i);
        }
        for &nr in &f.insts[i].regions {
            guards_in_order(f, nr, out);
        }
    }
}

#[test]
fn random_repetitive_functions_agree_with_and_without_sharing() {
    let mut rng = Rng(0x5eed_cafe);
    let mut shared_total = 0;
    let mut failed = 0;
    for case in 0..120 {
        let src = random_repetitive(&mut rng);
        let m = parse_module(&src).unwrap();
        jitad_ir::verify_module(&m).unwrap();
        let mut args: Vec<Val> = (0..24).map(|_| Val::F64(rng.f64())).collect();
        args.push(Val::F64(1.0e300));
        let want = eval(&m, "main", &args).unwrap();
        let chunk = 1 + (rng.next() % 12) as usize;
        let (own, _, _) = run(&m, &opts(chunk, false), &args);
        let (shared, chunks, n) = run(&m, &opts(chunk, true), &args);
        assert!(n < chunks.max(1), "case {case}: every chunk shared?");
        shared_total += n;
        let what = format!("case {case}, chunk {chunk}:\n{src}");
        assert_same(&own, &want, &what);
        assert_same(&shared, &want, &what);
        // Lower limits fail a guard somewhere: every engine names the same one.
        let mut guards = vec![];
        guards_in_order(&m.funcs[0], m.funcs[0].body, &mut guards);
        let compiled =
            [false, true].map(|share| compile_module(&m, "main", &opts(chunk, share)).unwrap());
        for _ in 0..8 {
            args[24] = Val::F64(3.0 * rng.f64() - 1.0);
            let want = match eval(&m, "main", &args) {
                Err(EvalError::GuardFailed { inst, .. }) => guards.iter().position(|&g| g == inst),
                Ok(_) => None,
                Err(e) => panic!("{what}: {e}"),
            };
            failed += usize::from(want.is_some_and(|g| g > 0));
            for c in &compiled {
                let mut out = vec![Val::F64(0.0); c.results().len()];
                let got = match c.call(&args, &mut out) {
                    Err(jitad_codegen::CallError::GuardFailed { guard, .. }) => Some(guard),
                    Ok(()) => None,
                    Err(e) => panic!("{what}: {e}"),
                };
                assert_eq!(got, want, "{what}");
            }
        }
    }
    // The generator is meant to exercise sharing, not only to allow it.
    assert!(shared_total > 500, "only {shared_total} chunks shared");
    assert!(failed > 50, "only {failed} failures past the first guard");
}

#[test]
fn a_failing_guard_in_a_repeated_chunk_is_named_by_its_own_position() {
    // Guard `i` checks element `i`. The chunks share code, and each one's driver call
    // moves a failing guard's status to its own guards: the error names the guard
    // that failed, not the representative's.
    let n = 300;
    let mut s = String::from("func @main(");
    for i in 0..n {
        let _ = write!(s, "{}%x{i}: f64", if i > 0 { ", " } else { "" });
    }
    s.push_str(") -> f64 {\n  %lim = const 10.0 : f64\n  %s0 = const 0.0 : f64\n");
    for i in 0..n {
        let j = i + 1;
        let _ = write!(
            s,
            "  %ok{i} = lt %x{i}, %lim\n  guard %ok{i}\n  %q{i} = mul %x{i}, %x{i}\n  \
             %s{j} = add %s{i}, %q{i}\n"
        );
    }
    let _ = writeln!(s, "  ret %s{n}\n}}");
    let m = parse_module(&s).unwrap();
    // Chunks of 16, and of 2 (600 chunks: their calls go through sub-drivers of at
    // most 256 chunks, each moving its own chunks' statuses).
    for size in [16, 2] {
        let c = compile_module(&m, "main", &opts(size, true)).unwrap();
        let st = c.stats();
        assert!(
            st.chunks > if size == 2 { 512 } else { 10 },
            "{}",
            st.chunks
        );
        assert!(
            st.shared_chunks * 2 > st.chunks,
            "{} of {} chunks shared",
            st.shared_chunks,
            st.chunks
        );
        for bad in [3, 150, 299] {
            let mut args = vec![Val::F64(0.5); n];
            args[bad] = Val::F64(100.0);
            let mut out = [Val::F64(0.0)];
            match c.call(&args, &mut out) {
                Err(jitad_codegen::CallError::GuardFailed { func, guard }) => {
                    assert_eq!((func.as_str(), guard), ("main", bad), "chunks of {size}")
                }
                other => panic!("element {bad}, chunks of {size}: {other:?}"),
            }
        }
    }
}

#[test]
fn thousands_of_chunks_keep_every_frame_small() {
    // One chunk per instruction: 6,400 chunks, called through drivers of at most 256
    // chunks, so no driver's frame grows with the number of chunks here.
    let n = 800;
    let m = parse_module(&elementwise(n)).unwrap();
    let mut rng = Rng(11);
    let args: Vec<Val> = (0..n).map(|_| Val::F64(rng.f64())).collect();
    let c = compile_module(&m, "main", &opts(1, true)).unwrap();
    assert!(c.stats().chunks > 6000, "{}", c.stats().chunks);
    assert!(
        c.stats().max_frame_bytes <= 8192,
        "{} bytes",
        c.stats().max_frame_bytes
    );
    let mut out = vec![Val::F64(0.0); c.results().len()];
    c.call(&args, &mut out).unwrap();
    assert_same(
        &out,
        &eval(&m, "main", &args).unwrap(),
        "one chunk per instruction",
    );
}
