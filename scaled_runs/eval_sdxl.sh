#!/usr/bin/env bash
# COCO-10k evaluation of the SDXL teacher and an exported Flash-DMD student (flash_dmd.evaluate), written as a JSON table
# shaped like the paper's Table 1, beside the paper's numbers: OUT/table1.json (and OUT/teacher, OUT/student: results.json,
# grid.png). Settings come from the environment; extra arguments go to both `python -m flash_dmd.evaluate run` calls.
#
#   STUDENT=runs/sdxl-flash/export PROMPTS=data/coco10k.jsonl REF_IMAGES=data/coco10k/subset scaled_runs/eval_sdxl.sh
#   N=1000 STUDENT=... PROMPTS=... scaled_runs/eval_sdxl.sh --save-images        # a quick look, no FID
#
#   TEACHER      hub name or folder of the teacher pipeline (default stabilityai/stable-diffusion-xl-base-1.0)
#   STUDENT      folder of the exported student (`flash-dmd train ... export=true` writes OUTPUT_DIR/export), or a hub name
#   PROMPTS      .txt (one per line) or .jsonl prompt file: the COCO-10k captions (see below)
#   REF_IMAGES   folder of reference images for FID (optional; no FID without it). Statistics are cached in OUT/ref_stats.npz
#   OUT          output folder (default runs/eval_sdxl)
#   N            number of prompts, the first N of PROMPTS (default 10000)
#   METRICS      comma-separated name[=source] (default image_reward,pickscore,hpsv2,clip_score; fid is added with REF_IMAGES)
#   TEACHER_STEPS, TEACHER_GUIDANCE   50 and 6: 100 NFE as the paper's teacher row; 6 is the default of DMD2's SDXL
#                evaluation script; the guidance Flash-DMD used for its teacher row is not known
#   STUDENT_STEPS  4 (guidance 0: the student was distilled against the guided teacher)
#   DTYPE        fp16 (default), bf16 or fp32; DEVICE (default: cuda when available); BATCH_SIZE (default 4)
#
# COCO-10k as in DMD2 (the protocol the paper follows): the prompts and the 10k reference images are in
# data/coco/coco10k.zip of the hub repo tianweiy/DMD2 (coco10k/all_prompts.pkl and coco10k/subset/), e.g.
#   hf download tianweiy/DMD2 data/coco/coco10k.zip --local-dir data && unzip data/data/coco/coco10k.zip -d data
# The prompts are a pickled list; convert them once to JSONL (after checking you trust the file):
#   python -c "import pickle,json,sys; [print(json.dumps({'prompt': p})) for p in pickle.load(open(sys.argv[1],'rb'))]" \
#       data/coco10k/all_prompts.pkl > data/coco10k.jsonl
# Real metric weights load from the hub on first use (PickScore_v1 and CLIP-H's tokenizer, HPSv2 and OpenCLIP, ImageReward,
# the CLIP-score model, Inception): `pip install open-clip-torch image-reward pytorch-fid` for HPSv2, ImageReward and FID.
# Cost: 10k images at 1024 px with 100 NFE for the teacher is hours per GPU; the 4-step student is ~25x cheaper.
# Status: the full path runs end to end on a tiny SDXL and tiny CLIP models saved to disk (tests/test_evaluate.py); it has
# not yet been run with the real models.
set -euo pipefail
cd "$(dirname "$0")/.."
. scaled_runs/_bin.sh                # BIN: $FLASH_DMD_BIN, else .venv/bin, else the flash-dmd on PATH
TEACHER=${TEACHER:-stabilityai/stable-diffusion-xl-base-1.0}
STUDENT=${STUDENT:?set STUDENT to the exported student folder (flash-dmd train ... export=true)}
PROMPTS=${PROMPTS:?set PROMPTS to a .txt or .jsonl file of COCO-10k captions (see the comments at the top of this script)}
REF_IMAGES=${REF_IMAGES:-}
OUT=${OUT:-runs/eval_sdxl}
N=${N:-10000}
METRICS=${METRICS:-image_reward,pickscore,hpsv2,clip_score}
TEACHER_STEPS=${TEACHER_STEPS:-50}
TEACHER_GUIDANCE=${TEACHER_GUIDANCE:-6}
STUDENT_STEPS=${STUDENT_STEPS:-4}
DTYPE=${DTYPE:-fp16}
BATCH_SIZE=${BATCH_SIZE:-4}
COMMON=(--prompts "$PROMPTS" --n "$N" --dtype "$DTYPE" --batch-size "$BATCH_SIZE")
if [ -n "${DEVICE:-}" ]; then COMMON+=(--device "$DEVICE"); fi
if [ -n "$REF_IMAGES" ]; then
  case ",$METRICS," in *,fid,*|*,fid=*) ;; *) METRICS="$METRICS,fid" ;; esac
  COMMON+=(--ref-images "$REF_IMAGES" --ref-stats "$OUT/ref_stats.npz")
fi
COMMON+=(--metrics "$METRICS")

"$BIN/python" -m flash_dmd.evaluate run --name "SDXL teacher" --model "$TEACHER" --steps "$TEACHER_STEPS" \
  --guidance "$TEACHER_GUIDANCE" "${COMMON[@]}" --out "$OUT/teacher" "$@"
"$BIN/python" -m flash_dmd.evaluate run --name "Flash-DMD student" --model "$STUDENT" --steps "$STUDENT_STEPS" \
  --guidance 0 "${COMMON[@]}" --out "$OUT/student" "$@"
"$BIN/python" -m flash_dmd.evaluate table "$OUT/teacher/results.json" "$OUT/student/results.json" --out "$OUT/table1.json"
