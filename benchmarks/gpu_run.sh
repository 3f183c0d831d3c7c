#!/usr/bin/env bash
# The GPU checks in one go, for a machine with CUDA and a python3 that has torch:
#
#     bash benchmarks/gpu_run.sh OUT_DIR [FEATURES.npz] [FASHION_MNIST_DIR]
#
# 1. the test suite with CUDA visible (device="auto" picks the GPU), 12 workers
#    (about 150 s on one H200);
# 2. gpu_check.py, alone: reproducibility, a GPU-fitted model loaded without a GPU, the
#    default fit on FEATURES.npz and on 70000 x 1280 blobs, with their times;
# 3. fashion_full.py, given FASHION_MNIST_DIR: image mode's two-stage defaults on the
#    10000 test images.
# FEATURES.npz, made where the embeddings are cached (the GPU machine cannot embed):
#     cd benchmarks && python -c "import numpy as np; from datasets import load_fashion_mnist_efficientnet as f;
#                d = f(); np.savez('fashion_effnet.npz', X=d.X, y=d.y)"
# Each step has its own time limit and log, so one that fails or runs long leaves the
# others' results; steps 1-2 fit in one 10-minute call. The tests that need data this
# machine lacks (the examples, the Sphinx build) fail there with a message naming it.
# benchmarks/throughput.py --device cuda adds the per-backbone table.
set -u
out=$1
features=${2:-}
fashion=${3:-}
export PYTHONPATH=$PWD:$PWD/benchmarks PYTHONUNBUFFERED=1
mkdir -p "$out"
nvidia-smi -L
python3 -c "import torch, torchvision, sklearn; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'sklearn', sklearn.__version__)"
OMP_NUM_THREADS=1 timeout 220 python3 -m pytest -q -n 12 -p no:cacheprovider -rf \
    > "$out/pytest_cuda.log" 2>&1
tail -15 "$out/pytest_cuda.log"
OMP_NUM_THREADS=8 timeout 200 python3 benchmarks/gpu_check.py "$out" ${features:+--features "$features"} 2>&1 \
    | grep -v Warn | tee "$out/gpu_check.log"
[ -n "$fashion" ] && timeout 130 python3 benchmarks/fashion_full.py --root "$fashion" --split test \
    --device cuda --out "$out/fashion_test_cuda.json" 2>&1 | grep -v Warn | tee "$out/fashion_test.log" | tail -20
exit 0
