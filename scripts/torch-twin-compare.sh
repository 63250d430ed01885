#!/usr/bin/env bash
# gradlab against its PyTorch twin on the same batches (docs/pytorch-twin.md): for each task
# and seed, `gradlab data` writes the run's batches, `gradlab run` trains it, and
# scripts/torch_twin.py trains the PyTorch twin on the file twice (from gradlab's initial
# parameters, and from PyTorch's own draw); then the twin_report example prints the table and
# draws the figure into docs/.
#
#   scripts/torch-twin-compare.sh [adding|charlm]...   (default: both)
#
# Every process uses one thread and runs under nice. Results go to results/torch-twin/<task>/
# (the data files, 0.7 GB each for charlm, are removed once used). Needs: a release build
# (cargo build --release), python3 with torch and safetensors, ../shared/data/tinyshakespeare.txt
# for charlm.
set -euo pipefail
cd "$(dirname "$0")/.."

gradlab=target/release/gradlab
out=results/torch-twin
seeds=(0 1 2)

flags_adding=(--task adding --seq-len 50 --cell lstm --hidden 32 --batch 20 --steps 3000
  --optimizer adam --lr 0.005 --clip norm:1 --log-every 50 --eval-every 250
  --eval-sequences 500 --lyapunov-steps 0)
flags_charlm=(--task charlm --text ../shared/data/tinyshakespeare.txt --seq-len 50 --cell lstm
  --hidden 128 --depth 2 --batch 50 --steps 1000 --optimizer adam --lr 0.002 --clip norm:5
  --log-every 50 --eval-every 100 --lyapunov-steps 0)
log_y_adding=--log-y
log_y_charlm=

tasks=("$@")
[ ${#tasks[@]} -gt 0 ] || tasks=(adding charlm)
for task in "${tasks[@]}"; do
  case $task in
    adding | charlm) ;;
    *) echo "unknown task '$task': give adding or charlm" >&2; exit 2 ;;
  esac
done

cargo build --release --example twin_report
for task in "${tasks[@]}"; do
  flags="flags_$task[@]"
  dir=$out/$task
  mkdir -p "$dir"
  for seed in "${seeds[@]}"; do
    data=$dir/data-s$seed.safetensors
    "$gradlab" data "${!flags}" --seed "$seed" --out "$data"
    nice -n 10 "$gradlab" run "${!flags}" --seed "$seed" --threads 1 --out "$dir/gradlab"
    for init in gradlab torch; do
      nice -n 10 python3 scripts/torch_twin.py "$data" --init "$init" --threads 1 \
        --out "$dir/torch-$init-s$seed.csv"
    done
    rm "$data"
  done
  log_y="log_y_$task"
  target/release/examples/twin_report "$dir" docs "pytorch-twin-$task" ${!log_y} \
    | tee "$dir/report.md"
done
