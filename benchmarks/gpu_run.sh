#!/usr/bin/env bash
# The GPU checks in one go, for a machine with CUDA and a python3 that has torch:
#
#     bash benchmarks/gpu_run.sh OUT_DIR [FEATURES.npz] [FASHION_MNIST_DIR]
#
# 1. the test suite with CUDA visible (device="auto" picks the GPU), 12 workers
#    (143 s on one H200 in session 22), and beside it
# 2. restarts.py: 20 single runs of 20 epochs on FEATURES.npz, to compare the spread of
#    runs on the GPU with the CPU's pool (benchmarks/results/restarts-*-20epochs.csv);
#    its fit times are not read, since the tests share the GPU;
# 3. gpu_check.py, alone: reproducibility, a GPU-fitted model loaded without a GPU, the
#    default fit on FEATURES.npz and on 70000 x 1280 blobs, with their times;
# 4. fashion_full.py, given FASHION_MNIST_DIR: image mode's two-stage defaults on the
#    10000 test images.
# FEATURES.npz, made where the embeddings are cached (the GPU machine cannot embed):
#     python -c "import numpy as np; from skcdc.datasets import load_fashion_mnist_efficientnet as f;
#                d = f(); np.savez('fashion_effnet.npz', X=d.X, y=d.y)"
# Each step has its own time limit and log, so one that fails or runs long leaves the
# others' results; steps 1-3 fit in one 10-minute call. The tests that need data this
# machine lacks (the examples, the Sphinx build) fail there with a message naming it.
# benchmarks/throughput.py --device cuda adds the per-backbone table.
set -u
out=$1
features=${2:-}
fashion=${3:-}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
mkdir -p "$out"
nvidia-smi -L
python3 -c "import torch, torchvision, sklearn; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'sklearn', sklearn.__version__)"
OMP_NUM_THREADS=1 timeout 220 python3 -m pytest -q -n 12 -p no:cacheprovider -rf \
    > "$out/pytest_cuda.log" 2>&1 &
tests=$!
[ -n "$features" ] && OMP_NUM_THREADS=3 timeout 220 python3 benchmarks/restarts.py \
    --features "$features" --runs 20 --epochs 20 --keep 1 3 --device cuda \
    --out "$out/restarts_cuda.csv" 2>&1 | grep -v Warn > "$out/restarts.log"
wait $tests
tail -15 "$out/pytest_cuda.log"
[ -n "$features" ] && tail -6 "$out/restarts.log"
OMP_NUM_THREADS=8 timeout 200 python3 benchmarks/gpu_check.py "$out" ${features:+--features "$features"} 2>&1 \
    | grep -v Warn | tee "$out/gpu_check.log"
[ -n "$fashion" ] && timeout 130 python3 benchmarks/fashion_full.py --root "$fashion" --split test \
    --device cuda --out "$out/fashion_test_cuda.json" 2>&1 | grep -v Warn | tee "$out/fashion_test.log" | tail -20
exit 0
