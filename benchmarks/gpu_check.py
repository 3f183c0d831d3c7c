"""GPU check: train on CUDA with mixed precision, load the pickle on a CPU-only
process, and time the default fit on embedding-sized data.

    python benchmarks/gpu_check.py OUT_DIR

Writes ``OUT_DIR/gpu_check.json``. Needs a CUDA device; runs nothing else.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import make_blobs

from skcdc import CDCClustering
from skcdc.datasets import load_digits_features
from skcdc.metrics import clustering_report

LOAD_ON_CPU = """
import pickle, sys, numpy as np, torch
assert not torch.cuda.is_available()
with open(sys.argv[1], "rb") as f:
    model = pickle.load(f)
X = np.load(sys.argv[2])
np.save(sys.argv[3], model.predict_proba(X))
"""


def main(out: Path) -> None:
    assert torch.cuda.is_available(), "this check needs a CUDA device"
    out.mkdir(parents=True, exist_ok=True)
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    data = load_digits_features()
    for seed in (0, 1, 2):
        start = time.perf_counter()
        model = CDCClustering(10, random_state=seed).fit(data.X)
        result[f"digits_seed{seed}"] = {
            "fit_s": time.perf_counter() - start,
            "device": str(model.device_),
            **clustering_report(data.y, model.labels_).as_dict(),
        }
    again = CDCClustering(10, random_state=0).fit(data.X)
    result["digits_same_seed_same_labels_on_gpu"] = bool(
        np.array_equal(again.labels_, CDCClustering(10, random_state=0).fit(data.X).labels_)
    )

    # A model fitted on the GPU, loaded in a process that cannot see one.
    with open(out / "model.pkl", "wb") as f:
        pickle.dump(again, f)
    np.save(out / "X.npy", data.X)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run(
        [sys.executable, "-c", LOAD_ON_CPU, out / "model.pkl", out / "X.npy", out / "cpu.npy"],
        check=True,
        env=env,
    )
    cpu = np.load(out / "cpu.npy")
    gpu = again.predict_proba(data.X)
    result["gpu_to_cpu"] = {
        "label_agreement": float((cpu.argmax(1) == gpu.argmax(1)).mean()),
        "max_abs_proba_diff": float(np.abs(cpu - gpu).max()),
    }
    for name in ("model.pkl", "X.npy", "cpu.npy"):
        (out / name).unlink()

    for n in (10_000, 70_000):
        X, _ = make_blobs(n, n_features=1280, centers=10, random_state=0)
        start = time.perf_counter()
        model = CDCClustering(10, random_state=0).fit(X.astype(np.float32))
        seconds = time.perf_counter() - start
        result[f"fit_{n}x1280_s"] = seconds
        result[f"fit_{n}x1280_samples_per_s"] = n * model.n_iter_ / seconds
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
