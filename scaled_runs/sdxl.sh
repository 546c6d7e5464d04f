#!/usr/bin/env bash
# Flash-DMD Stage 1 on SDXL (see sdxl.yaml for every setting and its source). Needs a GPU, the SDXL and SAM weights
# (hub names or local folders) and data: an image folder and a prompt file. Extra key=value arguments override sdxl.yaml,
# e.g.  scaled_runs/sdxl.sh image_dir=/data/laion prompts=/data/prompts.jsonl max_steps=4000 distill.ttur=2
# Resume after an interruption with  scaled_runs/sdxl.sh resume=latest
# Status: the code path runs end to end on a tiny SDXL saved in the same folder layout (tests/test_train.py);
# it has not yet been run at full size.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${FLASH_DMD_BIN:-.venv/bin}
exec "$BIN/flash-dmd" train --config scaled_runs/sdxl.yaml "$@"
