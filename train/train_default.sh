#!/bin/sh
# One command for the default model: data, training, export, measurement, model card.
#   nice -n 19 train/train_default.sh [DATA_DIR]
# Fixed seeds and step counts throughout (train/split.json is reused if present).
set -e
cd "$(dirname "$0")/.."
DATA=${1:-/work/data/default-model}
PY=${PYTHON:-/work/venv/bin/python}
make -j2 build/netdiff >/dev/null 2>&1 || make -j2
start=$(date +%s)
$PY train/prepare.py --data "$DATA" --reuse-split
$PY -u train/train_default.py --all --data "$DATA"
trained=$(date +%s)
$PY -u train/generate_eval.py --data "$DATA"
$PY train/model_card.py --data "$DATA" --train-seconds $((trained - start))
echo "total $(( $(date +%s) - start )) s"
