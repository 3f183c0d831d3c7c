"""Image mode from a folder of image files against the same images in memory.

Fashion-MNIST is written once as PNG files in torchvision's ``ImageFolder``
layout (``<cache>/fashion-folder-<split>/<class>/<i>.png``). For each split
(10000 test images; all 70000) and each path (the uint8 array in memory; the
folder, decoded per batch by DataLoader workers) a fresh subprocess trains the
end-to-end stage for a fixed number of optimiser steps and reports images per
second (the mean of the epochs after the first) and its peak resident memory.

    python benchmarks/image_folder.py --splits test all --steps 60
    python benchmarks/image_folder.py --report-only

Records go to ``benchmarks/results/image_folder.json``; ``run.py
--report-only`` tables them in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import datasets as D
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "image_folder.json"
BATCH = 256


def write_folder(split: str) -> Path:
    """Fashion-MNIST's ``split`` as PNG files, one sub-folder per class."""
    from PIL import Image

    root = D.cache_dir() / f"fashion-folder-{split}"
    done = root / ".complete"
    if not done.exists():
        images, labels = D.load_fashion_mnist(split)
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = root / f"{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:05d}.png")
        done.touch()
    return root


def run_one(split: str, path: str, steps: int, num_workers: int) -> dict:
    import torch

    from skcdc import CDCClustering

    if path == "folder":
        X = str(write_folder(split))
        n = sum(1 for _ in Path(X).glob("*/*.png"))
    else:
        X, _ = D.load_fashion_mnist(split)
        n = len(X)
    epochs = max(2, -(-steps * BATCH // n))
    # An epoch is a fixed number of steps: a subset of the same size from either path.
    model = CDCClustering(
        10, n_init=1, epochs=epochs, refine_epochs=0, num_workers=num_workers, random_state=0,
        batch_size=BATCH,
    )
    model.fit(X)
    times = model.history_["time"].to_numpy()
    steady = times[1:] if len(times) > 1 else times
    return {
        "split": split,
        "path": path,
        "images": n,
        "epochs": epochs,
        "num_workers": num_workers,
        "images_per_second": float(n // BATCH * BATCH / np.mean(steady)),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "torch_threads": torch.get_num_threads(),
    }


def report(records: list[dict] | None = None) -> str:
    records = load_results() if records is None else records
    if not records:
        return ""
    lines = [
        "| images | path | DataLoader workers | epochs | images/s | peak RSS GB |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['images']:,} | {r['path']} | {r['num_workers']} | {r['epochs']} | "
            f"{r['images_per_second']:.0f} | {r['peak_rss_gb']:.2f} |"
        )
    return (
        "## Image mode from a folder\n\n"
        "`python benchmarks/image_folder.py`: Fashion-MNIST as PNG files in an\n"
        "`ImageFolder` layout against the same images as a uint8 array in memory;\n"
        "end-to-end stage only (`refine_epochs=0`), one run, images per second of the\n"
        "epochs after the first.\n\n" + "\n".join(lines) + "\n\n"
    )


def load_results() -> list[dict]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else []


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", nargs="+", default=["test", "all"])
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps per epoch at least")
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--one", nargs=2, metavar=("SPLIT", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(*args.one, args.steps, args.num_workers)))
        return
    if not args.report_only:
        records = [r for r in load_results() if r["split"] not in args.splits]
        for split in args.splits:
            write_folder(split)
            for path in ("memory", "folder"):
                done = subprocess.run(
                    [sys.executable, __file__, "--one", split, path, "--steps", str(args.steps),
                     "--num-workers", str(args.num_workers)],
                    check=True, capture_output=True, text=True,
                )
                records.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(records[-1], flush=True)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(records, indent=1) + "\n")
    print(report())


if __name__ == "__main__":
    main()
