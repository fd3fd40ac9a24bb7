#!/usr/bin/env bash
# Fills benchmarks/out/gpu_carry (git-ignored) with what benchmarks/gpu_claims.sh needs on a
# device machine and its image lacks, to be named in the call's `carry`:
#   fashion-mnist/  the four idx .gz files (FMNIST, default /usr/share/datasets/fashion-mnist)
#   emoji/          the Noto emoji folder (`visrep data build-folder`; data/emoji if built)
#   det_emoji64/    the 64-px detection set of docs/results.md (data/det_emoji64 if built,
#                   else benchmarks/detect_transfer.py's settings)
#   wheels/         tyro, docstring-parser, typeguard, pycocotools for CPython 3.12 x86-64
#                   (the device's python3; torch, torchvision, scikit-image are there), and
#                   timm at the version the .venv runs (the image's is not documented)
# and checks that the working tree plus this folder stay under the 64 MiB a call carries.
# Run from the repository root, where pip can reach its index:
#   PY=.venv/bin/python bash benchmarks/gpu_claims_carry.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
FMNIST=${FMNIST:-/usr/share/datasets/fashion-mnist}
C=${CARRY:-benchmarks/out/gpu_carry}
mkdir -p "$C/fashion-mnist" "$C/wheels"
cp "$FMNIST"/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz "$C/fashion-mnist/"
if [[ ! -d $C/emoji ]]; then
    if [[ -d data/emoji ]]; then cp -r data/emoji "$C/"; else
        "$PY" -m visrep.cli data build-folder --out "$C/emoji"; fi
fi
if [[ ! -d $C/det_emoji64 ]]; then
    if [[ -d data/det_emoji64 ]]; then cp -r data/det_emoji64 "$C/"; else
        "$PY" -c "from visrep.data.build_detection import build_detection as b
b('$C/det_emoji64', 'emoji', n_train=1000, n_val=200, size=64, scale=(0.25, 0.6))"; fi
fi
# the versions this repository's .venv runs
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$C/wheels" \
    tyro==1.0.17 docstring-parser==0.18.0 typeguard==4.6.1 pycocotools==2.0.11 timm==1.0.31
tree=$(git ls-files -z | xargs -0 du -cb 2> /dev/null | tail -n 1 | cut -f1)
extra=$(git ls-files -z --others --exclude-standard | xargs -0 -r du -cb 2> /dev/null | tail -n 1 | cut -f1)
carry=$(du -sb "$C" | cut -f1)
total=$((tree + ${extra:-0} + carry))
echo "working tree $((tree / 1048576)) MiB + untracked $((${extra:-0} / 1048576)) MiB + $C" \
    "$((carry / 1048576)) MiB = $((total / 1048576)) MiB (a call carries at most 64 MiB)"
((total < 64 * 1048576)) || { echo "too large to carry"; exit 1; }
