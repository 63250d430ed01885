#!/usr/bin/env bash
# Runs `gradlab bench` and records the figures with what they were measured on:
# results/bench/<date>-<host>.{jsonl,md,txt}. Usage: scripts/bench-summary.sh [gradlab bench args]
set -euo pipefail
cd "$(dirname "$0")/.."
out=results/bench
mkdir -p "$out"
stem="$out/$(date -u +%Y%m%dT%H%M%SZ)-$(hostname -s)"
cargo build --release --quiet
{
  echo "command: gradlab bench $*"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo none)"
  ./target/release/gradlab --version
  rustc --version
  grep -m1 'model name' /proc/cpuinfo || true
  echo "cores: $(nproc)"
} > "$stem.txt"
./target/release/gradlab bench "$@" --json > "$stem.jsonl"
./target/release/gradlab bench "$@" | tee "$stem.md"
echo "wrote $stem.{txt,jsonl,md}"
