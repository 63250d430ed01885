#!/usr/bin/env bash
# Reproductions of published results (docs/reproductions.md): runs the sweep specs of each
# reproduction in experiments/configs/ and writes its report, timing each.
#
#   scripts/reproduce.sh [--quick | --scaled] [NAME...]
#
# NAME (default: all): a reproduction, each one or more specs (below), or one spec's name.
# Without a flag every spec runs at the paper's budget (some take hours or days here: the
# document says how long; reruns continue where they stopped, mid-run checkpoints included).
# --scaled runs the scaled-down variant written in each spec's `# scaled:` line (minutes to an
# hour), into <spec>-scaled. --quick runs every spec with one seed and 20 steps (what CI does,
# to prove the specs work; the numbers mean nothing). Results go to $OUT/<spec> (default
# results/); a reproduction of several specs also gets one report over them in
# $OUT/<name>/report. The text of the charlm specs is $TEXT (default
# ../shared/data/tinyshakespeare.txt); where it is absent those specs are skipped, saying so.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

OUT=${OUT:-results}
TEXT=${TEXT:-../shared/data/tinyshakespeare.txt}
GRADLAB=${GRADLAB:-target/release/gradlab}

# The reproductions, in the order of docs/reproductions.md, and their specs.
declare -A SPECS=(
  [pascanu-temporal-order]="pascanu-temporal-order"
  [hochreiter-adding]="hochreiter-adding"
  [le-adding]="le-adding-irnn le-adding-rnn le-adding-lstm"
  [arjovsky-copy]="arjovsky-copy-rnn arjovsky-copy-lstm"
  [arjovsky-adding]="arjovsky-adding"
  [char-rnn]="char-rnn char-rnn-adam"
  [adding-lstm-vs-rnn]="adding-lstm-vs-rnn"
  [copy-t100]="copy-t100"
  [tinyshakespeare-truncation]="tinyshakespeare-truncation"
  [seq2seq-reverse-source]="seq2seq-reverse-source"
)
ORDER=(pascanu-temporal-order hochreiter-adding le-adding arjovsky-copy arjovsky-adding char-rnn
  adding-lstm-vs-rnn copy-t100 tinyshakespeare-truncation seq2seq-reverse-source)

mode=full
names=()
for arg in "$@"; do
  case "$arg" in
    --quick) mode=quick ;;
    --scaled) mode=scaled ;;
    -*) echo "unknown option $arg; usage: $0 [--quick | --scaled] [NAME...]" >&2; exit 2 ;;
    *) names+=("$arg") ;;
  esac
done
[ ${#names[@]} -gt 0 ] || names=("${ORDER[@]}")
[ -x "$GRADLAB" ] || cargo build --release
mkdir -p "$OUT"

# Runs one spec into $OUT/<folder>; prints the folder.
run_spec() {
  local spec=experiments/configs/$1.toml folder=$1 args=()
  grep -q '^task = "charlm"' "$spec" && args+=(--set "text=$TEXT")
  case $mode in
    quick) args+=(--seeds 0 --set steps=20 --set log_every=10 --set eval_every=10 --set eval_sequences=20) ;;
    scaled)
      folder=$1-scaled
      local line
      line=$(sed -n 's/^# scaled: //p' "$spec")
      [ -n "$line" ] || { echo "$spec has no '# scaled:' line" >&2; exit 2; }
      read -r -a scaled <<< "$line"
      args+=("${scaled[@]}") ;;
  esac
  local start=$SECONDS
  "$GRADLAB" sweep "$spec" --out "$OUT/$folder" "${args[@]}" >&2
  "$GRADLAB" report "$OUT/$folder" >&2
  echo "== $1 ($mode): $((SECONDS - start)) s on $(nproc) cores" >&2
  echo "$OUT/$folder"
}

for name in "${names[@]}"; do
  specs=${SPECS[$name]:-$name}
  dirs=()
  for spec in $specs; do
    [ -f "experiments/configs/$spec.toml" ] || { echo "no spec experiments/configs/$spec.toml" >&2; exit 2; }
    if grep -q '^task = "charlm"' "experiments/configs/$spec.toml" && [ ! -f "$TEXT" ]; then
      echo "skipping $spec: the text $TEXT is absent (set TEXT=path/to/any.txt)"
      continue
    fi
    dir=$(run_spec "$spec")
    dirs+=("$dir")
  done
  if [ ${#dirs[@]} -gt 1 ]; then
    suffix=""; [ $mode = scaled ] && suffix=-scaled
    "$GRADLAB" report "${dirs[@]}" --out "$OUT/$name$suffix/report"
  fi
done
