#!/usr/bin/env bash
# Reproduces BENCHMARKS.md: installs the peers, builds in release mode, runs the micro-benchmarks
# and the load generator's whole plan, then writes the page and its plots from the results.
# Not part of the test command (it takes about ten minutes); `escape-load all --smoke` is.
set -euo pipefail
cd "$(dirname "$0")/.."

bash bench/install.sh
# Thousands of sockets on each side of the idle-memory and fan-out runs.
ulimit -n "$(ulimit -Hn)"
cargo build --release --locked -p escape-server -p escape-bench
# Only this run's estimates: criterion keeps those of benchmarks since renamed or removed.
rm -rf target/criterion
cargo bench --locked -p escape-bench --bench micro -- --noplot
target/release/escape-load all --criterion target/criterion --out bench/results/results.json
target/release/escape-load report --results bench/results/results.json \
  --template bench/BENCHMARKS.md.in --out BENCHMARKS.md --plots bench/results
