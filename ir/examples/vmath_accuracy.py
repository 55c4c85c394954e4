#!/usr/bin/env python3
"""Max error in ulps of jitad's vmath kernels (and libm's) against correctly rounded
values computed with mpmath at 120 bits.

    cargo build --release -p jitad-ir --example vmath_eval
    python3 ir/examples/vmath_accuracy.py [N] [BIN]

N points per range (default 100000); BIN the vmath_eval binary
(default $CARGO_TARGET_DIR/release/examples/vmath_eval). Prints, per function and input
range, the max error in ulps of the result (the ulp of the correctly rounded value)
for vmath and for libm, and how many results are not correctly rounded.
"""
import os, random, struct, subprocess, sys
import mpmath
from mpmath import mp, mpf

mp.prec = 120
N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
BIN = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
    os.environ.get("CARGO_TARGET_DIR", "target"), "release", "examples", "vmath_eval")
rng = random.Random(12345)

def bits(x): return struct.unpack("<Q", struct.pack("<d", x))[0]
def frombits(b): return struct.unpack("<d", struct.pack("<Q", b))[0]

def ulp_err(y, exact):
    """|y - exact| in ulps of the double nearest to exact (subnormal ulp below 2^-1022)."""
    if mpmath.isinf(exact) or y in (float("inf"), float("-inf")):
        return 0.0 if float(exact) == y else float("inf")
    r = float(exact)
    if abs(r) == float("inf"):
        return 0.0 if y == r else float("inf")
    e = mpmath.frexp(exact)[1] if exact != 0 else -1074
    u = mpf(2) ** max(e - 53, -1074)
    return float(abs(mpf(y) - exact) / u)

def ref(fn, x):
    x = mpf(x)
    if fn == "exp": return mpmath.exp(x)
    if fn == "log": return mpmath.log(x)
    if fn == "tanh": return mpmath.tanh(x)
    if fn == "sigmoid": return 1 / (1 + mpmath.exp(-x))

def run(name, xs):
    p = subprocess.run([BIN, name], input="".join("%016x\n" % bits(x) for x in xs),
                       capture_output=True, text=True, check=True)
    return [frombits(int(l, 16)) for l in p.stdout.split()]

def loguni(lo, hi):
    return lambda: rng.choice((-1, 1)) * 2 ** rng.uniform(lo, hi)

RANGES = {
    "exp": [("[-745.13, 709.78] uniform", lambda: rng.uniform(-745.13, 709.78)),
            ("[-1, 1] uniform", lambda: rng.uniform(-1, 1)),
            ("|x| in [2^-30, 2^3] log-uniform", loguni(-30, 3)),
            ("[-745.13, -708.4] (subnormal results)", lambda: rng.uniform(-745.13, -708.4))],
    "log": [("positive finite, random bits", lambda: frombits(rng.getrandbits(63) % 0x7ff0000000000000)),
            ("[0.5, 2] uniform", lambda: rng.uniform(0.5, 2)),
            ("[1-2^-20, 1+2^-20]", lambda: 1 + rng.uniform(-2 ** -20, 2 ** -20)),
            ("subnormal", lambda: frombits(rng.getrandbits(52) | 1))],
    "tanh": [("[-20, 20] uniform", lambda: rng.uniform(-20, 20)),
             ("[-1, 1] uniform", lambda: rng.uniform(-1, 1)),
             ("|x| in [2^-30, 2^5] log-uniform", loguni(-30, 5)),
             ("[0.1, 0.6] uniform", lambda: rng.uniform(0.1, 0.6))],
    "sigmoid": [("[-750, 40] uniform", lambda: rng.uniform(-750, 40)),
                ("[-20, 20] uniform", lambda: rng.uniform(-20, 20)),
                ("|x| in [2^-30, 2^6] log-uniform", loguni(-30, 6)),
                ("[-745, -700] (subnormal results)", lambda: rng.uniform(-745, -700))],
}

ONLY = sys.argv[3:] or list(RANGES)
for fn, ranges in RANGES.items():
    if fn not in ONLY: continue
    for label, gen in ranges:
        xs = [gen() for _ in range(N)]
        exact = [ref(fn, x) for x in xs]
        for impl in (fn, "libm-" + fn):
            ys = run(impl, xs)
            errs = [ulp_err(y, e) for y, e in zip(ys, exact)]
            worst = max(range(N), key=lambda i: errs[i])
            bad = sum(1 for y, e in zip(ys, exact) if y != float(e))
            print("%-8s %-40s %-13s max %.3f ulp (x = %r)  not correctly rounded: %d/%d"
                  % (fn, label, impl, errs[worst], xs[worst], bad, N), flush=True)
