#!/usr/bin/env bash
# Smoke run of the scaled path on tiny models, on CPU: train, checkpoint, stop, resume, finish.
# Usage: scaled_runs/smoke.sh [output_dir]     (about a minute on a laptop CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${FLASH_DMD_BIN:-.venv/bin}
OUT=${1:-runs/smoke}
rm -rf "$OUT"
export HF_HUB_OFFLINE=1
"$BIN/flash-dmd" train --config scaled_runs/tiny_sdxl.yaml output_dir="$OUT" max_steps=3 --quiet      # 3 steps, checkpoint-3
"$BIN/flash-dmd" train --config scaled_runs/tiny_sdxl.yaml output_dir="$OUT" resume=latest --quiet   # resume to 6
test -d "$OUT/checkpoint-0000006" && test -s "$OUT/metrics.jsonl" && test -s "$OUT/config.yaml"
echo "smoke: ok ($OUT)"
