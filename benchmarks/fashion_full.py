"""Image mode on all 70000 Fashion-MNIST images: time per epoch, and ACC.

    python benchmarks/fashion_full.py                 # the default 50 epochs
    python benchmarks/fashion_full.py --epochs 2      # a timing probe

Fits the default ``CDCClustering`` (small CNN, default augmentation) on the
training and test splits together and writes one JSON record: the device,
torch threads, epochs run, time per epoch (mean of the epochs after the first,
which also pays for start-up), the whole fit time, and ACC / NMI / ARI of
``labels_``; ``refine_s`` is the training time of the refinement stage's
epochs (``refine_epochs``) in the kept run, ``refine_run_scores`` the label-free
score of each refinement run. The per-epoch history goes to a CSV beside the
JSON. With fewer epochs than the default the accuracy is that of a short run,
not of the default; the record says how many epochs ran. ``run.py`` tables
every such record in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from datasets import load_fashion_mnist
from throughput import steady_rate

from skcdc import CDCClustering
from skcdc.metrics import clustering_report

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--epochs", type=int, default=None, help="CDC epochs (default: the estimator's, 50 on images)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--root", type=Path, default=None, help="folder of the IDX files (default: Debian's)"
    )
    parser.add_argument("--split", default="all", choices=["all", "test", "train"])
    parser.add_argument("--verbose", type=int, default=0, help="1: a progress bar per epoch")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "fashion_full.json"
    )
    args = parser.parse_args(argv)
    images, labels = load_fashion_mnist(args.split, root=args.root)
    model = CDCClustering(
        10,
        epochs="auto" if args.epochs is None else args.epochs,
        device=args.device,
        random_state=args.seed,
        verbose=args.verbose,
    )
    start = time.perf_counter()
    model.fit(images)
    seconds = time.perf_counter() - start
    epoch_s, images_per_s = steady_rate(model, len(images))
    refining = model.history_["phase"].str.startswith("refine")
    record = {
        "split": args.split,
        "images": len(images),
        "device": str(model.device_),
        "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        # Epochs per stage, as trained: "auto" resolved.
        "epochs": int((model.history_["phase"] == "cdc").sum()),
        "seed": args.seed,
        "fit_s": round(seconds, 1),
        "epoch_s": round(epoch_s, 1),
        "images_per_s": round(images_per_s, 1),
        "refine_s": round(float(model.history_.loc[refining, "time"].sum()), 1),
        # One per refinement run; refine_s is the kept run's training alone.
        "refine_run_scores": [round(float(s), 4) for s in model.refinement_run_scores_],
        **{k: round(v, 4) for k, v in clustering_report(labels, model.labels_).as_dict().items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    # The per-epoch curves (loss, cluster sizes, time), for the plots and for
    # reading where the time went.
    model.history_.to_csv(args.out.with_suffix(".history.csv"), index=False)
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
