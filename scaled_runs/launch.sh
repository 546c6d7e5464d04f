#!/usr/bin/env bash
# Launch `flash-dmd train` with a config, in one process or data parallel through torchrun.
# Usage: scaled_runs/launch.sh CONFIG.yaml [key=value ...]
#   NPROC=8 scaled_runs/launch.sh CONFIG.yaml ...                       one node, 8 processes
#   NPROC=8 TORCHRUN_ARGS="--nnodes 2 --node_rank 0 --master_addr host0 --master_port 29500" scaled_runs/launch.sh ...
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${FLASH_DMD_BIN:-.venv/bin}
NPROC=${NPROC:-1}
CONFIG=$1; shift
if [ "$NPROC" -gt 1 ] || [ -n "${TORCHRUN_ARGS:-}" ]; then
  # shellcheck disable=SC2086
  exec "$BIN/torchrun" --nproc_per_node "$NPROC" ${TORCHRUN_ARGS:-} "$BIN/flash-dmd" train --config "$CONFIG" "$@"
fi
exec "$BIN/flash-dmd" train --config "$CONFIG" "$@"
