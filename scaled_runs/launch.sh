#!/usr/bin/env bash
# Launch `flash-dmd train` with a config: one process, torchrun, or accelerate.
# Usage: scaled_runs/launch.sh CONFIG.yaml [key=value ...]
#   NPROC=8 scaled_runs/launch.sh CONFIG.yaml ...                        one node, 8 processes (torchrun)
#   NPROC=8 TORCHRUN_ARGS="--nnodes 2 --node_rank 0 --master_addr host0 --master_port 29500" scaled_runs/launch.sh ...
#   ACCELERATE_CONFIG=scaled_runs/accelerate/8gpu_fsdp.yaml scaled_runs/launch.sh CONFIG.yaml ...      accelerate launch
#   ACCELERATE_ARGS="--num_machines 2 --num_processes 16 --machine_rank 0 --main_process_ip host0" ACCELERATE_CONFIG=... multi-node
set -euo pipefail
cd "$(dirname "$0")/.."
. scaled_runs/_bin.sh                # BIN: $FLASH_DMD_BIN, else .venv/bin, else the flash-dmd on PATH
NPROC=${NPROC:-1}
CONFIG=$1; shift
if [ -n "${ACCELERATE_CONFIG:-}" ]; then
  # shellcheck disable=SC2086
  exec "$BIN/accelerate" launch --config_file "$ACCELERATE_CONFIG" ${ACCELERATE_ARGS:-} "$BIN/flash-dmd" train --config "$CONFIG" "$@"
fi
if [ "$NPROC" -gt 1 ] || [ -n "${TORCHRUN_ARGS:-}" ]; then
  # shellcheck disable=SC2086
  exec "$BIN/torchrun" --nproc_per_node "$NPROC" ${TORCHRUN_ARGS:-} "$BIN/flash-dmd" train --config "$CONFIG" "$@"
fi
exec "$BIN/flash-dmd" train --config "$CONFIG" "$@"
