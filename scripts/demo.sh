#!/usr/bin/env bash
# The main job end to end on the built-in synthetic benchmark (called by `make demo`):
#   1. generate EMOTIC-synth (scenes + canonical records),
#   2. train configs/synth_tiny.yaml on it; print the test mAP and V/A/D error,
#   3. evaluate the model on the test split (metrics.json, report.md, plots),
#   4. predict on EMOTIC-synth test scenes and on real photos with people (tables, annotated images, summaries).
# Everything lands in runs/demo (override with DEMO_DIR=...). Set YOLO_WEIGHTS=path/to/yolo11n.pt to detect the
# people in the real photos; without weights (offline) their known boxes are used.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_DIR:-runs/demo}
export YOLO_OFFLINE=${YOLO_OFFLINE:-1} WANDB_MODE=${WANDB_MODE:-offline} NO_ALBUMENTATIONS_UPDATE=1
export YOLO_CONFIG_DIR=${YOLO_CONFIG_DIR:-$OUT/ultralytics}  # ultralytics' settings file, not in the home folder
MODEL="$OUT/train/model.safetensors"

echo "== 1/4  EMOTIC-synth -> $OUT/synth"
emoctx synth --out "$OUT/synth" --seed 0 --overwrite

echo "== 2/4  train configs/synth_tiny.yaml -> $OUT/train"
rm -rf "$OUT/train"
# one line per epoch (train loss, val mAP, the best so far, time); a progress bar in a terminal
emoctx train --config configs/synth_tiny.yaml --data.root "$OUT/synth" --trainer.default_root_dir "$OUT/train"

echo "== 3/4  evaluate on the test split -> $OUT/eval"
emoctx evaluate --model "$MODEL" --records "$OUT/synth/annotations/test.parquet" --root "$OUT/synth" \
    --out "$OUT/eval"

echo "== 4/4  predict -> $OUT/predict"
# EMOTIC-synth test scenes, persons from the scenes' known boxes (the test records)
emoctx predict "$OUT/synth/images/*/test_000*.jpg" --model "$MODEL" \
    --boxes "$OUT/synth/annotations/test.parquet" --out "$OUT/predict/synth_test.jsonl" \
    --annotate "$OUT/predict/synth_annotated" --summary "$OUT/predict/synth_summary" --no-progress
# real photos with people, shipped with ultralytics
ASSETS=$(python -c "from ultralytics.utils import ASSETS; print(ASSETS)" | tail -n 1)  # last line: the path
if [ -n "${YOLO_WEIGHTS:-}" ] && [ -f "$YOLO_WEIGHTS" ]; then
    PERSONS=(--detector-weights "$YOLO_WEIGHTS")
else
    echo "No YOLO person-detector weights available offline (set YOLO_WEIGHTS=path/to/yolo11n.pt to detect"
    echo "people); using the photos' known boxes from scripts/demo_boxes.csv instead."
    PERSONS=(--boxes scripts/demo_boxes.csv)
fi
emoctx predict "$ASSETS/bus.jpg" "$ASSETS/zidane.jpg" --model "$MODEL" "${PERSONS[@]}" --out "$OUT/predict/photos.csv" \
    --annotate "$OUT/predict/photos_annotated" --no-progress

echo
echo "Done. Outputs in $OUT:"
echo "  synth/                         EMOTIC-synth images and records (annotations/{train,val,test}.parquet)"
echo "  train/                         config.yaml, checkpoints/, model.safetensors (self-describing model)"
echo "  eval/                          metrics.json, report.md, per-category AP, PR curves, V/A/D scatter"
echo "  predict/synth_test.jsonl       one row per person; annotated images in predict/synth_annotated/"
echo "  predict/synth_summary/         category frequencies, V/A/D distributions (table + plots)"
echo "  predict/photos.csv             the real photos; annotated in predict/photos_annotated/"
echo "The real photos are not EMOTIC-synth scenes: a model trained on drawn figures says little about them;"
echo "train configs/emotic_kosti_resnet18.yaml or configs/emotic_strong.yaml on EMOTIC for real use."
