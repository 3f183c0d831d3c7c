"""Image mode on the image sets, one change from the defaults per variant.

    python benchmarks/image_mode.py                     # every image set and variant, seeds 0-2
    python benchmarks/image_mode.py --datasets digits-images --seeds 0 1 2 3 4 \
        --variants default "neighbour_share=0"
    python benchmarks/image_mode.py --report            # the table from the results so far

A variant is a name from ``VARIANTS`` or any ``parameter=value`` list (as in
``ablation.py``). Every fit appends one row to
``benchmarks/results/image_mode.csv`` (fits already there are skipped, so a
long run can be resumed); ``--report`` prints the mean ACC and fit time per
set and variant, the table of ``docs/image-mode.md``. k-means and the
frozen-feature mode on the same pixels are rows of ``run.py``
(``fashion-mnist-pixels``, ``digits``, ``glyphs-28px-pixels``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import datasets as D
import pandas as pd
from ablation import machine, variant

from skcdc import CDCClustering
from skcdc.metrics import cluster_accuracy_score as accuracy

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "image_mode.csv"
IMAGE_SETS = ["digits-images", "fashion-mnist-images", "glyphs-28px-images"]
VARIANTS = {
    "default": {},
    # The paper's positives (two augmentations of one image); 50 epochs.
    "neighbour_share=0": {"neighbour_share": 0.0},
    "epochs=30, neighbour_share=0": {"epochs": 30, "neighbour_share": 0.0},
    "epochs=30, neighbour_share=0.5": {"epochs": 30, "neighbour_share": 0.5},
    "epochs=30, neighbour_share=1.0": {"epochs": 30, "neighbour_share": 1.0},
    "epochs=50, neighbour_share=0.5": {"epochs": 50, "neighbour_share": 0.5},
}


def fit_row(data: D.Dataset, dataset: str, name: str, params: dict, seed: int) -> dict:
    start = time.perf_counter()
    model = CDCClustering(data.n_clusters, random_state=seed, **params).fit(data.X)
    return {
        "dataset": dataset,
        "variant": name,
        "seed": seed,
        "acc": accuracy(data.y, model.labels_),
        "fit_time": time.perf_counter() - start,
        "machine": machine(),
    }


def report(results: pd.DataFrame) -> str:
    # Population std over the seeds, as in the other tables.
    table = results.groupby(["dataset", "variant"], sort=False).agg(
        acc=("acc", "mean"),
        std=("acc", lambda acc: acc.std(ddof=0)),
        seeds=("seed", "size"),
        time=("fit_time", "mean"),
    )
    lines = ["| images | variant | ACC | seeds | fit time (s) |", "|---|---|---|---|---|"]
    for (dataset, name), row in table.iterrows():
        lines.append(
            f"| {dataset} | {name} | {row['acc']:.3f} ± {row['std']:.3f} | {int(row['seeds'])} "
            f"| {row['time']:.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=IMAGE_SETS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--report", action="store_true", help="only print the table")
    args = parser.parse_args(argv)
    results = pd.read_csv(RESULTS) if RESULTS.exists() else pd.DataFrame()
    if not args.report:
        for dataset in args.datasets:
            data = None
            for name in args.variants:
                params = VARIANTS[name] if name in VARIANTS else variant(name)
                for seed in args.seeds:
                    done = not results.empty and (
                        (results["dataset"] == dataset)
                        & (results["variant"] == name)
                        & (results["seed"] == seed)
                    ).any()
                    if done:
                        continue
                    data = data or D.BENCHMARK_DATASETS[dataset]()
                    row = fit_row(data, dataset, name, params, seed)
                    print(row, flush=True)
                    results = pd.concat([results, pd.DataFrame([row])], ignore_index=True)
                    RESULTS.parent.mkdir(parents=True, exist_ok=True)
                    results.to_csv(RESULTS, index=False)
    print(report(results))


if __name__ == "__main__":
    main()
