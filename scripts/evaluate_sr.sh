#!/usr/bin/env bash
# The SR table of docs/sr.md: `n3seq-image evaluate --task sr` on Set5, Set14 and B100 at
# ×2/×3/×4 for each method, merged into docs/results/sr.json, then the page re-rendered.
#
#   scripts/evaluate_sr.sh [METHOD ...]      default: bicubic vdsr n3net (the shipped weights)
#
# Raw per-image results go to $RAW (default results/sr, ignored by git). Run it from a clean
# checkout (the page stamp names the commit and any uncommitted files).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data}
RAW=${RAW:-results/sr}
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(bicubic vdsr n3net)
mkdir -p "$RAW"
files=()
for set in set5 set14 b100; do
  for scale in 2 3 4; do
    for method in "${methods[@]}"; do
      out="$RAW/${set}_x${scale}_${method}.json"
      "$PY" -m n3seq_image.cli evaluate --task sr --model "$method" --data "$DATA/$set" \
        --scale "$scale" --json "$out" --no-progress > /dev/null
      files+=("$out")
    done
  done
done
"$PY" scripts/merge_results.py --out docs/results/sr.json "${files[@]}"
"$PY" scripts/render_docs_tables.py docs/sr.md
