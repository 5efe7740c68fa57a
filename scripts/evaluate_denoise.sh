#!/usr/bin/env bash
# The denoising tables of docs/image.md: `n3seq-image evaluate` on Set12 and BSD68 at
# σ = 15/25/50, Gaussian and clipped 8-bit noise, merged into docs/results/denoise.json and
# rendered into the page.
#
#   scripts/evaluate_denoise.sh [METHOD ...]
#
# Default methods: n3net dncnn (the σ = 25 models, at σ = 25 only), n3net-blind, nlmeans,
# bm3d (at every σ). Raw per-image results go to $RAW (default docs/results/raw/denoise,
# committed: BM3D on BSD68 takes about an hour here); a raw file that exists is reused for the
# classical methods (nlmeans, bm3d, whose output does not depend on our weights) unless
# FORCE=1. MERGE_ONLY=1 runs nothing: it merges the raw files that exist (of the given or
# default methods) and renders the page. Run it from a clean checkout: the
# page stamp names the commit and any uncommitted files.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data}
RAW=${RAW:-docs/results/raw/denoise}
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(n3net dncnn n3net-blind nlmeans bm3d)
mkdir -p "$RAW"
files=()
for set in set12 bsd68; do
  for noise in gaussian clipped; do
    for sigma in 15 25 50; do
      for method in "${methods[@]}"; do
        case "$method" in n3net | dncnn) [ "$sigma" = 25 ] || continue ;; esac
        out="$RAW/${set}_${noise}_s${sigma}_${method}.json"
        if [ "${MERGE_ONLY:-0}" = 1 ]; then [ -f "$out" ] && files+=("$out"); continue; fi
        case "$method" in
          nlmeans | bm3d) [ -f "$out" ] && [ "${FORCE:-0}" != 1 ] && { files+=("$out"); continue; } ;;
        esac
        echo "$set $noise sigma=$sigma $method" >&2
        "$PY" -m n3seq_image.cli evaluate --model "$method" --data "$DATA/$set" \
          --sigma "$sigma" --noise "$noise" --json "$out" --no-progress > /dev/null
        files+=("$out")
      done
    done
  done
done
"$PY" scripts/merge_results.py --out docs/results/denoise.json "${files[@]}"
"$PY" scripts/render_docs_tables.py docs/image.md
