#!/usr/bin/env bash
# The GPU figures in one go, for a machine with CUDA and a python3 that has torch:
#
#     bash benchmarks/gpu_run.sh OUT_DIR FASHION_MNIST_DIR
#
# Throughput per backbone, the default fit on all 70000 Fashion-MNIST images, then
# gpu_check.py (reproducibility, a GPU-fitted model loaded without a GPU, feature mode at
# 10000 and 70000 x 1280). Each step has its own time limit and log, so one that fails or
# runs long leaves the others' results. On one H200 (session 5) the throughput table took
# about 70 s and the Fashion-MNIST fit 305 s; gpu_check.py did not finish in 90 s.
set -u
out=$1
fashion=$2
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
mkdir -p "$out"
nvidia-smi -L
python3 -c "import torch, torchvision, sklearn; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'sklearn', sklearn.__version__)"
timeout 80 python3 benchmarks/throughput.py --device cuda --scale 8 --out "$out/throughput_cuda.md" 2>&1 | tee "$out/throughput.log"
timeout 420 python3 benchmarks/fashion_full.py --root "$fashion" --device cuda --verbose 1 \
    --out "$out/fashion_full_cuda.json" 2>&1 | tee "$out/fashion_full.log"
timeout 300 python3 benchmarks/gpu_check.py "$out" 2>&1 | tee "$out/gpu_check.log"
