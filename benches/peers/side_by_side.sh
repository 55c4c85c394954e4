#!/bin/sh
# jitad and JAX on the same problems, one after the other on one pinned core, so the
# README's table compares figures from one run (outside CI; needs the venv of README.md).
# Usage: sh benches/peers/side_by_side.sh [CORE]   (default core 1)
set -e
core=${1:-1}
here=$(dirname "$0")
root=$here/../..
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --release --quiet --example mlp_tensors --example rosenbrock_tensors --example heat_tensors --manifest-path "$root/Cargo.toml"
uptime
echo "== JAX"
taskset -c "$core" "$here/.venv/bin/python" "$here/jax_peers.py" mlp rosenbrock heat lorenz
echo "== jitad: MLP-M (batch 256, 64 inputs, 256 hidden)"
taskset -c "$core" "$target/release/examples/mlp_tensors"
echo "== jitad: small MLP (batch 32, 8 inputs, 16 hidden)"
taskset -c "$core" "$target/release/examples/mlp_tensors" 32 8 16
echo "== jitad: extended Rosenbrock, tensor form"
taskset -c "$core" "$target/release/examples/rosenbrock_tensors"
echo "== jitad: heat equation through a loop carrying a tensor"
taskset -c "$core" "$target/release/examples/heat_tensors" 10000 100
taskset -c "$core" "$target/release/examples/heat_tensors" 100000 100
echo "== jitad: Lorenz RK4 loop (primal, store-all and binomial:20 gradients, hand-written legs)"
taskset -c "$core" cargo bench --quiet --manifest-path "$root/Cargo.toml" --bench gradients -- lorenz-loop 2>&1 |
  grep -E "^lorenz-loop|time:"
uptime
