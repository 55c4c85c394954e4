//! End to end through the facade: a function of tensors written with `fori_loop` (an
//! explicit heat-equation stepper over slices), its gradient compiled — the loop's
//! `tapeloop`/`revloop` pair carries a tensor state and a tensor capture — and
//! checked against the interpreter bit for bit (checkpoint statistics included) and
//! against central finite differences.

// A rank-1 slice is one range.
#![allow(clippy::single_range_in_vec_init)]

use jitad::ir::tensor::Tensor as Buf;
use jitad::ir::trace::Tensor;
use jitad::{fori_loop, Traced, Val};

const CELLS: usize = 16;

fn vec_val(data: Vec<f64>) -> Val {
    Val::tensor(Buf::f64(&[data.len()], data).unwrap())
}

fn f64s(v: &Val) -> Vec<f64> {
    match v {
        Val::F64(x) => vec![*x],
        Val::Tensor(t) => t.as_f64().unwrap().to_vec(),
        other => panic!("not f64: {other:?}"),
    }
}

/// `steps` explicit Euler steps of `u_t = κ u_xx` with fixed ends (a per-cell
/// diffusivity `κ`), then the energy `Σ u²`.
fn heat(steps: i64) -> Traced {
    let u0 = vec_val((0..CELLS).map(|k| (k as f64 * 0.4).sin()).collect());
    let kappa = vec_val((0..CELLS - 2).map(|k| 0.2 + 0.01 * k as f64).collect());
    jitad::trace_tensors("heat", &[u0, kappa], |a| {
        let k = &a[1];
        let u = fori_loop(0, steps, a[0].clone(), |_i, u| {
            let n = CELLS;
            let lap = u.slice(&[0..n - 2]) + u.slice(&[2..n]) - u.slice(&[1..n - 1]) * 2.0;
            let interior = u.slice(&[1..n - 1]) + lap * k;
            Tensor::concat(&[u.slice(&[0..1]), interior, u.slice(&[n - 1..n])], 0)
        });
        vec![Tensor::from((&u * &u).sum_all())]
    })
    .unwrap()
}

#[test]
fn the_gradient_of_a_heat_equation_stepper_compiles_and_agrees() {
    for steps in [0, 1, 7, 100] {
        let f = heat(steps);
        let g = f.grad().unwrap();
        let jir = g.to_jir();
        assert!(jir.contains("tapeloop") && jir.contains("revloop"), "{jir}");
        // Before: refused as unsupported, with the hint to use the interpreter.
        let c = g.compile().unwrap_or_else(|e| panic!("{e}\n{jir}"));
        // Both drivers run the steps a span at a time (f64 tensors, no nested loop).
        assert_eq!(c.stats().span_loops, 2);
        let u: Vec<f64> = (0..CELLS).map(|k| (k as f64 * 0.3).cos()).collect();
        let kappa: Vec<f64> = (0..CELLS - 2).map(|k| 0.25 - 0.005 * k as f64).collect();
        let args = [vec_val(u.clone()), vec_val(kappa.clone())];
        let (want, istats) = g.eval_with_stats(&args).unwrap();
        let mut got = want.clone();
        let cstats = c.call_with_stats(&args, &mut got).unwrap();
        assert_eq!(cstats, istats, "steps={steps}");
        for (a, b) in got.iter().zip(&want) {
            let (a, b) = (f64s(a), f64s(b));
            let ab: Vec<u64> = a.iter().map(|x| x.to_bits()).collect();
            let bb: Vec<u64> = b.iter().map(|x| x.to_bits()).collect();
            assert_eq!(ab, bb, "steps={steps}: JIT {a:?} vs interpreter {b:?}");
        }
        // A tensor per cell: the gradient has the state's shape, 8 bytes a slot.
        assert_eq!(istats.backward_steps, steps as u64);
        // Central differences of the energy, cell by cell.
        let energy = |u: &[f64], kappa: &[f64]| {
            f64s(
                &f.eval(&[vec_val(u.to_vec()), vec_val(kappa.to_vec())])
                    .unwrap()[0],
            )[0]
        };
        let (gu, gk) = (f64s(&got[1]), f64s(&got[2]));
        assert_eq!(f64s(&got[0])[0], energy(&u, &kappa));
        let h = 1e-6;
        for (j, want) in gu.iter().enumerate() {
            let (mut p, mut m) = (u.clone(), u.clone());
            p[j] += h;
            m[j] -= h;
            let fd = (energy(&p, &kappa) - energy(&m, &kappa)) / (2.0 * h);
            assert!(
                (fd - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "steps={steps} u[{j}]: {fd} vs {want}"
            );
        }
        for (j, want) in gk.iter().enumerate() {
            let (mut p, mut m) = (kappa.clone(), kappa.clone());
            p[j] += h;
            m[j] -= h;
            let fd = (energy(&u, &p) - energy(&u, &m)) / (2.0 * h);
            assert!(
                (fd - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "steps={steps} κ[{j}]: {fd} vs {want}"
            );
        }
    }
}
