//! ns per element of the `vmath` tensor kernels against one libm call per element (the
//! scalar ops' `math` functions), over 65,536 elements (the MLP-M hidden layer: batch
//! 256 × 256), f64 and f32.
//!
//! `cargo build --release -p jitad-ir --example vmath_speed &&
//!  taskset -c 1 $CARGO_TARGET_DIR/release/examples/vmath_speed`
//!
//! Each figure is the median of 31 timed passes over the buffer (after 3 warm-up
//! passes); the kernels run in place, as compiled code runs them on its workspace.

use jitad_ir::math::{f32m, f64m};
use jitad_ir::vmath;
use std::hint::black_box;
use std::time::Instant;

const N: usize = 65_536;

/// Median ns per element of `f` run on a fresh copy of `input` each pass.
fn time<T: Copy>(input: &[T], mut f: impl FnMut(&mut [T])) -> f64 {
    let mut buf = input.to_vec();
    let mut samples = Vec::new();
    for pass in 0..34 {
        buf.copy_from_slice(input);
        let t = Instant::now();
        f(black_box(&mut buf));
        let ns = t.elapsed().as_nanos() as f64 / N as f64;
        black_box(&buf);
        if pass >= 3 {
            samples.push(ns);
        }
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// A deterministic spread of inputs over `[lo, hi]`.
fn inputs(lo: f64, hi: f64) -> Vec<f64> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    (0..N)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            lo + (hi - lo) * ((s >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}

type Kernels = (
    &'static str,
    f64,
    f64,
    fn(&mut [f64]),
    fn(f64) -> f64,
    fn(&mut [f32]),
    fn(f32) -> f32,
);

fn main() {
    #[cfg(target_arch = "x86_64")]
    println!(
        "AVX2 version selected: {}",
        std::arch::is_x86_feature_detected!("avx2")
    );
    let rows: [Kernels; 4] = [
        (
            "exp",
            -10.0,
            10.0,
            vmath::exp_in_place,
            |x| f64m::exp(x),
            vmath::exp_f32_in_place,
            |x| f32m::exp(x),
        ),
        (
            "log",
            1e-3,
            1e3,
            vmath::log_in_place,
            |x| f64m::log(x),
            vmath::log_f32_in_place,
            |x| f32m::log(x),
        ),
        (
            "tanh",
            -4.0,
            4.0,
            vmath::tanh_in_place,
            |x| f64m::tanh(x),
            vmath::tanh_f32_in_place,
            |x| f32m::tanh(x),
        ),
        (
            "sigmoid",
            -10.0,
            10.0,
            vmath::sigmoid_in_place,
            |x| f64m::sigmoid(x),
            vmath::sigmoid_f32_in_place,
            |x| f32m::sigmoid(x),
        ),
    ];
    println!("{N} elements, ns/element (median of 31 passes)");
    println!("| function | f64 vmath | f64 libm | speed-up | f32 vmath | f32 libm | speed-up |");
    println!("|----------|-----------|----------|----------|-----------|----------|----------|");
    for (name, lo, hi, k64, s64, k32, s32) in rows {
        let x = inputs(lo, hi);
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let v64 = time(&x, k64);
        let l64 = time(&x, |b| b.iter_mut().for_each(|v| *v = s64(*v)));
        let v32 = time(&x32, k32);
        let l32 = time(&x32, |b| b.iter_mut().for_each(|v| *v = s32(*v)));
        println!(
            "| {name:8} | {v64:9.2} | {l64:8.2} | {:7.1}× | {v32:9.2} | {l32:8.2} | {:7.1}× |",
            l64 / v64,
            l32 / v32
        );
    }
}
