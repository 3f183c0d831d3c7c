#!/usr/bin/env bash
# The GPU checks in one go, for a machine with CUDA and a python3 that has torch:
#
#     bash benchmarks/gpu_run.sh OUT_DIR FASHION_MNIST_DIR [FEATURES.npz]
#
# 1. the test suite with CUDA visible (device="auto" picks the GPU), 8 workers;
# 2. gpu_check.py: reproducibility, a GPU-fitted model loaded without a GPU, the
#    default fit on the Fashion-MNIST EfficientNet embeddings (FEATURES.npz, exported
#    beforehand since that machine cannot embed) and on 70000 x 1280 blobs;
# 3. fashion_full.py: image mode's two-stage defaults on the 10000 test images;
# 4. restarts.py: 25 single runs of 20 epochs on FEATURES.npz, to compare the spread of
#    runs on the GPU with the CPU's pool (benchmarks/results/restarts-*-20epochs.csv).
# FEATURES.npz, made where the embeddings are cached:
#     python -c "import numpy as np; from skcdc.datasets import load_fashion_mnist_efficientnet as f;
#                d = f(); np.savez('fashion_effnet.npz', X=d.X, y=d.y)"
# Each step has its own time limit and log, so one that fails or runs long leaves the
# others' results. benchmarks/throughput.py --device cuda adds the per-backbone table.
set -u
out=$1
fashion=$2
features=${3:-}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
mkdir -p "$out"
nvidia-smi -L
python3 -c "import torch, torchvision, sklearn; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'sklearn', sklearn.__version__)"
OMP_NUM_THREADS=2 timeout 170 python3 -m pytest -q -n 8 -p no:cacheprovider 2>&1 \
    | tee "$out/pytest_cuda.log" | tail -40
timeout 180 python3 benchmarks/gpu_check.py "$out" ${features:+--features "$features"} 2>&1 \
    | grep -v Warn | tee "$out/gpu_check.log"
timeout 130 python3 benchmarks/fashion_full.py --root "$fashion" --split test --device cuda \
    --out "$out/fashion_test_cuda.json" 2>&1 | grep -v Warn | tee "$out/fashion_test.log" | tail -20
[ -n "$features" ] && timeout 300 python3 benchmarks/restarts.py --features "$features" \
    --runs 25 --epochs 20 --keep 1 3 5 --device cuda --out "$out/restarts_cuda.csv" 2>&1 \
    | grep -v Warn | tee "$out/restarts.log"
