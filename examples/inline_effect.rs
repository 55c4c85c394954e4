//! The inliner's effect on one `.jir` function, with the clean-up pipeline's inlining
//! off and on in the same run: per-stage times (AD, clean-up, JIT compile), the size
//! and calls left in the entry, and the time per call of the compiled primal and
//! value+gradient (and one interpreter run of each unless `JITAD_NO_INTERP` is set).
//!
//! `cargo run --release --example inline_effect -- FILE FUNC ARGS [lorenz]`, e.g.
//! `-- tests/ir/loops/lorenz.jir loss 10,28,2.6666666666666665,1,1,1,100000 lorenz`;
//! with `lorenz` last it also times the hand-written Lorenz primal and value+gradient
//! (`jitad::problems`) on the same arguments, for the ratios.
use jitad::codegen::{compile_module, CompileOptions};
use jitad::ir::callgraph::CallGraph;
use jitad::ir::{Module, ScalarType, Val};
use jitad::passes::{grad, optimize_module, OptOptions};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// `m` without the functions `entry` cannot reach.
fn prune(m: &mut Module, entry: &str) {
    let g = CallGraph::new(m);
    let keep: Vec<bool> = match g.index_of(entry).map(|i| g.post_order(&[i])) {
        Some(Ok(order)) => {
            let mut k = vec![false; m.funcs.len()];
            order.into_iter().for_each(|i| k[i] = true);
            k
        }
        _ => vec![true; m.funcs.len()],
    };
    let mut it = keep.into_iter();
    m.funcs.retain(|_| it.next().unwrap_or(true));
}

fn calls_in(m: &Module, f: &str) -> (usize, usize) {
    let f = m.get(f).expect("entry");
    let calls = f
        .insts_in_order()
        .iter()
        .filter(|&&i| matches!(f.insts[i].op, jitad::ir::Op::Call(_)))
        .count();
    (f.num_insts(), calls)
}

/// Median seconds per call over 5 batches of at least ~0.2 s.
fn per_call(mut run: impl FnMut()) -> f64 {
    let mut n = 1u32;
    loop {
        let t = Instant::now();
        (0..n).for_each(|_| run());
        if t.elapsed() > Duration::from_millis(50) || n > 1 << 24 {
            break;
        }
        n *= 2;
    }
    let n = n * 4;
    let mut v: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            (0..n).for_each(|_| run());
            t.elapsed().as_secs_f64() / f64::from(n)
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[2]
}

fn stage(label: &str, m: &Module, entry: &str, args: &[Val], opt_time: Duration) -> Res<()> {
    let (insts, calls) = calls_in(m, entry);
    let t = Instant::now();
    let c = compile_module(m, entry, &CompileOptions::default())?;
    let compile = t.elapsed();
    let mut out: Vec<Val> = c.results().iter().map(|_| Val::F64(0.0)).collect();
    c.call(args, &mut out)?;
    let first = out.first().cloned();
    let jit = per_call(|| {
        let _ = c.call(args, &mut out);
    });
    let interp = if std::env::var_os("JITAD_NO_INTERP").is_some() {
        String::new()
    } else {
        let t = Instant::now();
        let r = jitad::ir::eval(m, entry, args)?;
        assert_eq!(r.first(), first.as_ref(), "interpreter and JIT differ");
        format!(", interp {:.3?}", t.elapsed())
    };
    println!(
        "  {label:<6} @{entry}: {insts} insts, {calls} calls; clean-up {opt_time:.3?}, \
         compile {compile:.3?}, per call {:.3} µs{interp}; result[0] {first:?}",
        jit * 1e6
    );
    Ok(())
}

/// The Lorenz RK4 loop in plain `f64` with `a * b + c` (no fused multiply-add): a
/// timing reference only, not bit-identical to the IR.
fn plain_lorenz(p: &[f64], n: usize) -> f64 {
    let (sg, rh, bt) = (p[0], p[1], p[2]);
    let f = |s: [f64; 3]| {
        [
            sg * (s[1] - s[0]),
            s[0] * (rh - s[2]) - s[1],
            s[0] * s[1] - bt * s[2],
        ]
    };
    let h = 1.0 / n as f64;
    let mut s = [p[3], p[4], p[5]];
    for _ in 0..n {
        let k1 = f(s);
        let k2 = f([0, 1, 2].map(|i| 0.5 * h * k1[i] + s[i]));
        let k3 = f([0, 1, 2].map(|i| 0.5 * h * k2[i] + s[i]));
        let k4 = f([0, 1, 2].map(|i| h * k3[i] + s[i]));
        s = [0, 1, 2].map(|i| h / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]) + s[i]);
    }
    s[0] + s[1] + s[2]
}

fn main() -> Res<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [file, func, vals, ..] = a.as_slice() else {
        return Err("usage: inline_effect FILE FUNC ARGS".into());
    };
    let module = jitad::ir::parse_module(&std::fs::read_to_string(file)?)?;
    jitad::ir::verify_module(&module)?;
    let f = module.get(func).ok_or("no such function")?;
    let args: Vec<Val> = vals
        .split(',')
        .zip(&f.sig.params)
        .map(|(s, t)| match t.scalar() {
            Some(ScalarType::I64) => Val::I64(s.parse().unwrap_or(0)),
            _ => Val::F64(s.parse().unwrap_or(0.0)),
        })
        .collect();
    let wrt = jitad::passes::float_params(f);
    if a.get(3).is_some_and(|s| s == "lorenz") {
        let p: Vec<f64> = args.iter().filter_map(Val::as_f64).collect();
        let steps = match args.last() {
            Some(Val::I64(n)) => *n as usize,
            _ => return Err("lorenz: the last argument is the step count".into()),
        };
        let primal = per_call(|| {
            std::hint::black_box(jitad::problems::lorenz_value(
                std::hint::black_box(&p),
                steps,
            ));
        });
        let plain = per_call(|| {
            std::hint::black_box(plain_lorenz(std::hint::black_box(&p), steps));
        });
        println!(
            "plain f64 RK4 (unfused a*b+c, not bit-identical): {:.3} µs",
            plain * 1e6
        );
        let (mut tape, mut g) = (Vec::new(), vec![0.0; p.len()]);
        let vg = per_call(|| {
            std::hint::black_box(jitad::problems::lorenz_grad(&p, steps, &mut tape, &mut g));
        });
        println!(
            "hand-written: primal {:.3} µs, value+gradient {:.3} µs",
            primal * 1e6,
            vg * 1e6
        );
    }
    for inline in [false, true] {
        println!("inline: {inline}");
        let opts = OptOptions {
            inline,
            ..OptOptions::default()
        };
        let mut p = module.clone();
        prune(&mut p, func);
        let t = Instant::now();
        let st = optimize_module(&mut p, &opts);
        let opt = t.elapsed();
        println!("  primal clean-up: {st:?}");
        stage("primal", &p, func, &args, opt)?;
        let mut g = module.clone();
        let t = Instant::now();
        let name = grad(&mut g, func, &wrt)?;
        let ad = t.elapsed();
        prune(&mut g, &name);
        let t = Instant::now();
        let st = optimize_module(&mut g, &opts);
        let opt = t.elapsed();
        prune(&mut g, &name);
        println!("  grad AD {ad:.3?}; clean-up: {st:?}");
        stage("grad", &g, &name, &args, opt)?;
    }
    Ok(())
}
