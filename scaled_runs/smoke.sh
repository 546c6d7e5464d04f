#!/usr/bin/env bash
# Smoke run of the scaled path on tiny models built in code, on CPU, offline: train, checkpoint, stop, resume,
# export a diffusers pipeline, reload it with from_pretrained and generate a 4-step image.
# Usage: scaled_runs/smoke.sh [output_dir]     (under a minute on a laptop CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${FLASH_DMD_BIN:-.venv/bin}
OUT=${1:-runs/smoke}
rm -rf "$OUT"
export HF_HUB_OFFLINE=1
"$BIN/flash-dmd" train --config scaled_runs/tiny_sdxl.yaml output_dir="$OUT" max_steps=3 --quiet                # 3 steps, checkpoint-3
"$BIN/flash-dmd" train --config scaled_runs/tiny_sdxl.yaml output_dir="$OUT" resume=latest export=true --quiet  # resume to 6, export
test -d "$OUT/checkpoint-0000006" && test -s "$OUT/metrics.jsonl" && test -s "$OUT/config.yaml"
"$BIN/python" - "$OUT/export" <<'PY'
import sys, numpy as np, torch
from flash_dmd.export import load_exported
pipe = load_exported(sys.argv[1])
img = pipe('a red square', num_inference_steps=4, guidance_scale=0.0, height=32, width=32, output_type='np',
           generator=torch.Generator().manual_seed(0)).images[0]
assert img.shape == (32, 32, 3) and np.isfinite(img).all(), img.shape
print('reloaded the exported pipeline and generated a 4-step image', img.shape)
PY
echo "smoke: ok ($OUT)"
