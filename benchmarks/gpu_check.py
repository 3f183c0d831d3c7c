"""GPU check: the default fit on CUDA, reproducibility there, a GPU-fitted model
loaded by a CPU-only process, and fit times on embedding-sized data.

    python benchmarks/gpu_check.py OUT_DIR [--features FILE.npz]

``--features`` names an ``.npz`` with ``X`` (float32) and ``y``, such as the
Fashion-MNIST EfficientNet embeddings exported on a machine that has them (the GPU
machine cannot download or embed; ``benchmarks/gpu_run.sh`` says how), fitted with the
default settings for seeds 0-2 and recorded under the file's name. Writes
``OUT_DIR/gpu_check.json`` after every step, so a run stopped by its time limit keeps
the steps it finished. Needs a CUDA device.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from datasets import load_digits_features, load_features
from sklearn.datasets import make_blobs

from skcdc import CDCClustering
from skcdc.metrics import clustering_report

LOAD_ON_CPU = """
import pickle, sys, numpy as np, torch
assert not torch.cuda.is_available()
with open(sys.argv[1], "rb") as f:
    model = pickle.load(f)
X = np.load(sys.argv[2])
np.save(sys.argv[3], model.predict_proba(X))
"""


def _timed_fit(X: np.ndarray, y: np.ndarray, seed: int) -> tuple[CDCClustering, dict]:
    """The default fit with its wall time; restarts included, so no per-epoch
    rate (``n_iter_`` counts the kept run's epochs only)."""
    start = time.perf_counter()
    model = CDCClustering(len(np.unique(y)), random_state=seed).fit(X)
    record = {"fit_s": round(time.perf_counter() - start, 1), "device": str(model.device_)}
    return model, record | clustering_report(y, model.labels_).as_dict()


def _cpu_predictions(model: CDCClustering, X: np.ndarray, scratch: Path) -> np.ndarray:
    """``predict_proba`` of the pickled model in a process that sees no GPU."""
    paths = [scratch / name for name in ("model.pkl", "X.npy", "cpu.npy")]
    with open(paths[0], "wb") as f:
        pickle.dump(model, f)
    np.save(paths[1], X)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run([sys.executable, "-c", LOAD_ON_CPU, *map(str, paths)], check=True, env=env)
    proba = np.load(paths[2])
    for path in paths:
        path.unlink()
    return proba


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--features", type=Path, default=None)
    args = parser.parse_args(argv)
    assert torch.cuda.is_available(), "this check needs a CUDA device"
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}

    def record(key: str, value) -> None:
        result[key] = value
        print(key, json.dumps(value), flush=True)
        (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2))

    digits = load_digits_features()
    model, first = _timed_fit(digits.X, digits.y, 0)
    record("digits_seed0", first)
    again, second = _timed_fit(digits.X, digits.y, 0)
    record("digits_seed0_again", second)
    record("digits_same_seed_same_labels_on_gpu", bool(np.array_equal(model.labels_, again.labels_)))

    cpu = _cpu_predictions(model, digits.X, args.out)
    gpu = model.predict_proba(digits.X)
    record(
        "gpu_to_cpu",
        {
            "label_agreement": float((cpu.argmax(1) == gpu.argmax(1)).mean()),
            "max_abs_proba_diff": float(np.abs(cpu - gpu).max()),
        },
    )

    if args.features is not None:
        data = load_features(args.features)
        for seed in (0, 1, 2):
            record(f"{data.name}_seed{seed}", _timed_fit(data.X, data.y, seed)[1])

    X, y = make_blobs(70_000, n_features=1280, centers=10, random_state=0)
    record("blobs_70000x1280", _timed_fit(X.astype(np.float32), y, 0)[1])
    return result


if __name__ == "__main__":
    main()
