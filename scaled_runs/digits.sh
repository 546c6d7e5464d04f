#!/usr/bin/env bash
# Flash-DMD and DMD2 on 8x8 digits, on CPU, through flash_dmd.train exactly as sdxl.sh runs SDXL: YAML config,
# key=value overrides, checkpoints, resume=latest, tensorboard (when installed) and an export.
#   scaled_runs/digits.sh                         # both methods, runs/digits-flash and runs/digits-dmd2
#   METHODS=flash scaled_runs/digits.sh max_steps=300
#   scaled_runs/digits.sh resume=latest           # continue both after an interruption
set -euo pipefail
cd "$(dirname "$0")/.."
for M in ${METHODS:-flash dmd2}; do
  "$(dirname "$0")/launch.sh" scaled_runs/digits.yaml method="$M" output_dir="${OUT_ROOT:-runs}/digits-$M" "$@"
done
