#!/usr/bin/env bash
# Flash-DMD Stage 1 on SDXL (see sdxl.yaml for every setting and its source). Needs GPUs, the SDXL and SAM weights
# (hub names or local folders) and data: an image folder and a prompt file. Extra key=value arguments override sdxl.yaml:
#   scaled_runs/sdxl.sh image_dir=/data/laion prompts=/data/prompts.jsonl max_steps=4000 distill.ttur=2
#   NPROC=8 scaled_runs/sdxl.sh distill.batch=64          # one node, 8 GPUs, data parallel (distill.batch is the global batch)
#   NPROC=8 TORCHRUN_ARGS="--nnodes 2 --node_rank 0 --master_addr host0 --master_port 29500" scaled_runs/sdxl.sh   # multi-node
#   scaled_runs/sdxl.sh resume=latest                     # continue after an interruption
# Status: the code path (one or several processes) runs end to end on a tiny SDXL saved in the same folder layout
# (tests/test_train.py); it has not yet been run at full size.
exec "$(dirname "$0")/launch.sh" scaled_runs/sdxl.yaml "$@"
