#!/usr/bin/env bash
# The main job end to end on the built-in synthetic benchmark (called by `make demo`):
#   1. generate EMOTIC-synth (scenes + canonical records),
#   2. train configs/synth_tiny.yaml on it and print the test mAP and V/A/D error.
# Everything lands in runs/demo (override with DEMO_DIR=...).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_DIR:-runs/demo}
export YOLO_OFFLINE=${YOLO_OFFLINE:-1} WANDB_MODE=${WANDB_MODE:-offline}

echo "== 1/2  EMOTIC-synth -> $OUT/synth"
emoctx synth --out "$OUT/synth" --seed 0

echo "== 2/2  train configs/synth_tiny.yaml -> $OUT/train"
emoctx train --config configs/synth_tiny.yaml --data.root "$OUT/synth" \
    --trainer.default_root_dir "$OUT/train" --trainer.logger.init_args.save_dir "$OUT/train"

echo
echo "Done. Data: $OUT/synth   run: $OUT/train (config.yaml, checkpoints/, model.safetensors)"
