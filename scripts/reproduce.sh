#!/usr/bin/env bash
# Reproductions of published results (docs/reproductions.md): runs each sweep spec of
# experiments/configs/ and writes its report, timing each.
#
#   scripts/reproduce.sh [--quick] [NAME...]
#
# NAME: pascanu-temporal-order, adding-lstm-vs-rnn, copy-t100, tinyshakespeare-truncation,
# seq2seq-reverse-source (default: all five). --quick runs every spec with 20 steps instead
# (what CI does, to prove the specs work; the numbers mean nothing). Results go to
# $OUT/<name> (default results/). The text of tinyshakespeare-truncation is $TEXT (default
# ../shared/data/tinyshakespeare.txt); where it is absent that reproduction is skipped, saying
# so. Reruns finish what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-results}
TEXT=${TEXT:-../shared/data/tinyshakespeare.txt}
GRADLAB=${GRADLAB:-target/release/gradlab}
quick=()
names=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=(--set steps=20 --set log_every=10 --set eval_every=10 --set eval_sequences=20) ;;
    -*) echo "unknown option $arg; usage: $0 [--quick] [NAME...]" >&2; exit 2 ;;
    *) names+=("$arg") ;;
  esac
done
[ ${#names[@]} -gt 0 ] || names=(pascanu-temporal-order adding-lstm-vs-rnn copy-t100 tinyshakespeare-truncation seq2seq-reverse-source)
[ -x "$GRADLAB" ] || cargo build --release
mkdir -p "$OUT"

for name in "${names[@]}"; do
  spec=experiments/configs/$name.toml
  [ -f "$spec" ] || { echo "no spec $spec" >&2; exit 2; }
  extra=()
  if [ "$name" = tinyshakespeare-truncation ]; then
    if [ ! -f "$TEXT" ]; then
      echo "skipping $name: the text $TEXT is absent (set TEXT=path/to/any.txt)"
      continue
    fi
    extra=(--set "text=$TEXT")
  fi
  start=$SECONDS
  "$GRADLAB" sweep "$spec" --out "$OUT/$name" ${quick[@]+"${quick[@]}"} ${extra[@]+"${extra[@]}"}
  "$GRADLAB" report "$OUT/$name"
  echo "== $name: $((SECONDS - start)) s on $(nproc) cores"
done
