#!/usr/bin/env bash
# What a 2-core CPU cannot reach, as one call of at most ~9 minutes for a GPU session (device
# time is scarce: run it first and as is). The three jobs run side by side on the one GPU (16
# host cores) and write everything under one folder, $OUT:
#
#   1. The reference table (benchmarks/reference.py) at a larger budget: 5 epochs over all
#      60,000 Fashion-MNIST training images (300,000 seen), k-NN bank / probe set = all of
#      train, every method row; $OUT/reference/fashion_mnist/*.json, $OUT/reference.md.
#   2. SimSiam without stop-gradient: k-NN on the collapsed output z after ~5,800 updates
#      (docs/results.md "SimSiam"); $OUT/simsiam_collapse_knn_gpu_5800.md.
#   3. ConvNeXt V2: FCMAE with vs without GRN, feature cosine distance every 500 steps
#      (docs/results.md "GRN and feature collapse"); $OUT/grn_collapse_gpu_3000.md.
#
# A job that runs out of time leaves what it finished (reference rows are one file each and a
# rerun skips them). Usage (repository root, Fashion-MNIST under data.root or DATA_ROOT):
#   bash benchmarks/gpu_checks.sh                       # PY=python, OUT=benchmarks/results/gpu
#   DATA_ROOT=.fmnist PY=.venv/bin/python OUT=/tmp/gpu bash benchmarks/gpu_checks.sh
set -uo pipefail
PY=${PY:-python}
OUT=${OUT:-benchmarks/results/gpu}
LIMIT=${LIMIT_S:-540}
mkdir -p "$OUT"
EXTRA=()
if [[ -n "${DATA_ROOT:-}" ]]; then EXTRA=("data.root=$DATA_ROOT" "eval.root=$DATA_ROOT"); fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1 || true

echo "== reference table, 300,000 images seen per row =="
timeout "$LIMIT" "$PY" benchmarks/reference.py --dataset fashion_mnist --threads 4 \
    --runs-dir "$OUT/runs" --results "$OUT/reference" \
    --set run.device=cuda data.limit=0 eval.limit_train=0 data.num_workers=4 "${EXTRA[@]}" \
    > "$OUT/reference.log" 2>&1 &
REF=$!

echo "== SimSiam collapse, 5,800 steps of batch 256 (25-epoch cosine) =="
timeout "$LIMIT" "$PY" benchmarks/simsiam_collapse_knn.py --device cuda --threads 0 --jobs 1 \
    --steps 5800 --set optim.epochs=25 "${EXTRA[@]}" \
    --out "$OUT/simsiam_collapse_knn_gpu_5800.md" > "$OUT/simsiam.log" 2>&1 &
SIM=$!

echo "== FCMAE with / without GRN, 3,000 steps of batch 128, profile every 500 =="
timeout "$LIMIT" "$PY" benchmarks/grn_collapse.py --device cuda --jobs 2 --steps 3000 --batch 128 \
    --profile-every 500 --only "V2 (GRN)" "V2 without GRN" --set "${EXTRA[@]}" \
    --out "$OUT/grn_collapse_gpu_3000.md" > "$OUT/grn.log" 2>&1 &
GRN=$!

status=0
for job in "$REF:reference" "$SIM:simsiam" "$GRN:grn"; do
    wait "${job%%:*}" || { echo "${job#*:} exited $? (see $OUT/${job#*:}.log)"; status=1; }
done
"$PY" benchmarks/reference_md.py --results "$OUT/reference" > /dev/null || status=1
tail -n 3 "$OUT"/*.log
exit $status
