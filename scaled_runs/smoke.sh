#!/usr/bin/env bash
# Smoke run of the scaled path on tiny models built in code, on CPU, offline, for SDXL and SD3 (LoRA): train,
# checkpoint, stop, resume, export a diffusers pipeline, reload it with from_pretrained and generate a 4-step image.
# Usage: scaled_runs/smoke.sh [output_dir]     (about a minute on a laptop CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
. scaled_runs/_bin.sh                # BIN: $FLASH_DMD_BIN, else .venv/bin, else the flash-dmd on PATH
OUT=${1:-runs/smoke}
rm -rf "$OUT"
export HF_HUB_OFFLINE=1
for M in sdxl sd3; do
  R="$OUT/$M"
  "$BIN/flash-dmd" train --config "scaled_runs/tiny_$M.yaml" output_dir="$R" max_steps=2 --quiet                # 2 steps, a checkpoint
  "$BIN/flash-dmd" train --config "scaled_runs/tiny_$M.yaml" output_dir="$R" resume=latest export=true --quiet  # resume to the end, export
  test -s "$R/metrics.jsonl" && test -s "$R/config.yaml" && ls -d "$R"/checkpoint-* > /dev/null
done
"$BIN/python" - "$OUT" <<'PY'
import sys, numpy as np, torch
from flash_dmd.export import load_exported, student_call_kwargs
for m in ('sdxl', 'sd3'):
    path = f'{sys.argv[1]}/{m}/export'
    pipe, kw = load_exported(path), student_call_kwargs(path)     # SD3: the student's sigmas; SDXL: 4 LCM steps
    torch.manual_seed(0)
    img = pipe('a red square', height=32, width=32, output_type='np', generator=torch.Generator().manual_seed(0), **kw).images[0]
    assert img.shape == (32, 32, 3) and np.isfinite(img).all(), img.shape
    print(f'{m}: reloaded the exported {type(pipe).__name__} and generated a 4-step image', img.shape)
PY
echo "smoke: ok ($OUT)"
