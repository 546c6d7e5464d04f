#!/usr/bin/env bash
# Flash-DMD Stage 2 on SDXL (see sdxl_rl.yaml for every setting and its source): joint step-level DPO + distillation,
# continuing a Stage 1 run of scaled_runs/sdxl.sh. NPROC=8 runs it data parallel (rl.batch and distill.batch are global).
#   flash-dmd lrm --config scaled_runs/sdxl_rl.yaml --prefs data/prefs.jsonl --out runs/lrm-xl   # a latent reward model first
#   scaled_runs/sdxl_rl.sh init_from=runs/sdxl-flash reward_model=lrm:runs/lrm-xl
#   scaled_runs/sdxl_rl.sh reward_model=my_rewards:lrm_xl resume=latest        # continue after an interruption
# Status: the Stage 2 code path runs end to end on a tiny SDXL (tests/test_train_stage2.py); not yet run at full size.
set -euo pipefail
case " $* " in
  *" reward_model="*) ;;
  *) echo "sdxl_rl.sh: give reward_model=lrm:FOLDER (trained by flash-dmd lrm), pkg.module:factory or x0:pkg.module:factory; see sdxl_rl.yaml" >&2; exit 2;;
esac
exec "$(dirname "$0")/launch.sh" scaled_runs/sdxl_rl.yaml "$@"
