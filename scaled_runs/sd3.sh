#!/usr/bin/env bash
# Flash-DMD Stage 1 on SD3-Medium (LoRA) (see sd3.yaml for every setting and its source). Needs GPUs, the SD3-Medium and SAM weights
# (hub names or local folders) and data: an image folder and a prompt file. Extra key=value arguments override sd3.yaml:
#   scaled_runs/sd3.sh image_dir=/data/laion prompts=/data/prompts.jsonl max_steps=4000 distill.ttur=2
#   NPROC=8 scaled_runs/sd3.sh distill.batch=32          # one node, 8 GPUs, data parallel (distill.batch is the global batch)
#   NPROC=8 TORCHRUN_ARGS="--nnodes 2 --node_rank 0 --master_addr host0 --master_port 29500" scaled_runs/sd3.sh   # multi-node
#   scaled_runs/sd3.sh resume=latest                     # continue after an interruption
# Status: the code path runs end to end on a tiny SD3 built in code (tests/test_train.py, model=tiny-sd3);
# it has not yet been run at full size.
exec "$(dirname "$0")/launch.sh" scaled_runs/sd3.yaml "$@"
