"""JAX (CPU, float64, one thread) timings of jitad's benchmark problems.

See README.md beside this file. Usage: jax_peers.py [lorenz|mlp|rosenbrock|heat ...]
"""
import os
import sys
import time

# One XLA thread, before jax is imported.
os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)


def timed(fn, *args, reps=None, budget=2.0):
    """First-call time and the median steady-state time, in seconds."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    # Calibrate repetitions to about `budget` seconds.
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    one = max(time.perf_counter() - t0, 1e-7)
    reps = reps or max(5, min(2000, int(budget / one)))
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        samples.append(time.perf_counter() - t0)
    return first, float(np.median(samples))


def fmt(s):
    for unit, k in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= k:
            return f"{s / k:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def report(name, first, median):
    print(f"{name:<34} first call {fmt(first):>10}   per call {fmt(median):>10}", flush=True)


def fd_check(name, f, g, x, eps=1e-6, tol=1e-5):
    """Central differences of the scalar `f` along a random direction against `g`."""
    rng = np.random.default_rng(0)
    leaves, tree = jax.tree_util.tree_flatten(x)
    dirs = [rng.standard_normal(np.shape(l)) for l in leaves]
    d = jax.tree_util.tree_unflatten(tree, dirs)
    xp = jax.tree_util.tree_map(lambda a, b: a + eps * b, x, d)
    xm = jax.tree_util.tree_map(lambda a, b: a - eps * b, x, d)
    fd = (float(f(xp)) - float(f(xm))) / (2 * eps)
    gl = jax.tree_util.tree_leaves(g)
    an = sum(float(jnp.vdot(a, b)) for a, b in zip(gl, dirs))
    err = abs(fd - an) / max(1.0, abs(an))
    if err > tol:
        raise SystemExit(f"{name}: gradient disagrees with finite differences ({err:.2e})")


# ---- Lorenz RK4 (tests/ir/loops/lorenz.jir) ----
# The state is a tuple of three scalars, as in the IR: JAX is 17x slower on this problem
# when the state is a length-3 array (tiny-array ops inside the scan; measured here).

def lorenz_field(x, y, z, sigma, rho, beta):
    return sigma * (y - x), x * (rho - z) - y, x * y - beta * z


def rk4(s, p, h):
    def ax(a, k, c):
        return tuple(v + c * dv for v, dv in zip(a, k))
    k1 = lorenz_field(*s, *p)
    k2 = lorenz_field(*ax(s, k1, 0.5 * h), *p)
    k3 = lorenz_field(*ax(s, k2, 0.5 * h), *p)
    k4 = lorenz_field(*ax(s, k3, h), *p)
    return tuple(v + (h / 6.0) * (a + 2.0 * b + 2.0 * c + d)
                 for v, a, b, c, d in zip(s, k1, k2, k3, k4))


def lorenz_loss(theta, n):
    p = (theta[0], theta[1], theta[2])
    s0 = (theta[3], theta[4], theta[5])
    h = 1.0 / n
    step = jax.checkpoint(lambda s, _: (rk4(s, p, h), None))
    s, _ = jax.lax.scan(step, s0, None, length=n)
    return s[0] + s[1] + s[2]


def bench_lorenz():
    theta = jnp.array([10.0, 28.0, 8.0 / 3.0, 1.0, 1.0, 1.0])
    for n in (10**5, 10**6):
        f = jax.jit(lambda t: lorenz_loss(t, n))
        vg = jax.jit(jax.value_and_grad(lambda t: lorenz_loss(t, n)))
        if n == 10**5:
            fd_check("lorenz", f, vg(theta)[1], theta, eps=1e-6, tol=1e-4)
        report(f"lorenz N={n:.0e} primal", *timed(f, theta))
        report(f"lorenz N={n:.0e} value+grad", *timed(vg, theta))


# ---- MLP: two tanh layers, linear output, MSE ----

def mlp_params(rng, d, h):
    def w(a, b):
        return jnp.asarray(rng.standard_normal((a, b)) / np.sqrt(a))
    return {"w1": w(d, h), "b1": jnp.zeros(h), "w2": w(h, h), "b2": jnp.zeros(h),
            "w3": w(h, 1), "b3": jnp.zeros(1)}


def mlp_loss(p, x, y):
    a = jnp.tanh(x @ p["w1"] + p["b1"])
    a = jnp.tanh(a @ p["w2"] + p["b2"])
    out = (a @ p["w3"] + p["b3"])[:, 0]
    return jnp.mean((out - y) ** 2)


def bench_mlp():
    rng = np.random.default_rng(1)
    for name, batch, d, h in (("M", 256, 64, 256), ("small", 32, 8, 16)):
        p = mlp_params(rng, d, h)
        x = jnp.asarray(rng.standard_normal((batch, d)))
        y = jnp.asarray(rng.standard_normal(batch))
        vg = jax.jit(jax.value_and_grad(mlp_loss))
        fd_check(f"mlp-{name}", lambda q: mlp_loss(q, x, y), vg(p, x, y)[1], p)
        report(f"mlp-{name} value+grad", *timed(vg, p, x, y))


# ---- Extended Rosenbrock with array ops ----

def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def bench_rosenbrock():
    rng = np.random.default_rng(2)
    for n in (10**3, 10**5, 10**6):
        x = jnp.asarray(rng.uniform(-1.0, 1.0, n))
        vg = jax.jit(jax.value_and_grad(rosenbrock))
        if n == 10**3:
            fd_check("rosenbrock", rosenbrock, vg(x)[1], x)
        report(f"rosenbrock n={n:.0e} value+grad", *timed(vg, x))


# ---- 1-D heat equation, explicit Euler (examples/heat_tensors.rs) ----

def heat_loss(u0, y, r, steps):
    def step(u, _):
        z = jnp.zeros(1)
        left = jnp.concatenate([z, u[:-1]])
        right = jnp.concatenate([u[1:], z])
        return u + r * (left + right - 2.0 * u), None
    u, _ = jax.lax.scan(step, u0, None, length=steps)
    return 0.5 * jnp.sum((u - y) ** 2)


def bench_heat():
    for n, steps in ((10**4, 100), (10**5, 100)):
        u0 = jnp.sin(jnp.pi * (jnp.arange(n) + 0.5) / n)
        y = 0.5 * jnp.arange(n) / n
        r = 0.25
        f = jax.jit(lambda u, yy, rr: heat_loss(u, yy, rr, steps))
        vg = jax.jit(jax.value_and_grad(lambda u, yy, rr: heat_loss(u, yy, rr, steps), argnums=(0, 1, 2)))
        if n == 10**4:
            fd_check("heat", lambda q: heat_loss(q[0], q[1], q[2], steps),
                     vg(u0, y, r)[1], (u0, y, jnp.asarray(r)))
        report(f"heat n={n:.0e} T={steps} primal", *timed(f, u0, y, r))
        report(f"heat n={n:.0e} T={steps} value+grad", *timed(vg, u0, y, r))


PROBLEMS = {"lorenz": bench_lorenz, "mlp": bench_mlp, "rosenbrock": bench_rosenbrock,
            "heat": bench_heat}

if __name__ == "__main__":
    names = sys.argv[1:] or list(PROBLEMS)
    print(f"jax {jax.__version__}, devices {jax.devices()}, x64 on, one XLA thread")
    for name in names:
        if name not in PROBLEMS:
            raise SystemExit(f"unknown problem {name!r}; known: {', '.join(PROBLEMS)}")
        PROBLEMS[name]()
