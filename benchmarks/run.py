"""The benchmark suite: every method on identical inputs, several seeds.

Each (dataset, method, seed) fit runs in a fresh subprocess so that its peak
memory (resident set size, ``ru_maxrss``) is its own. Results go to
``benchmarks/results/runs.csv`` (one row per fit) and ``docs/benchmarks.md``
(mean +- std per dataset and method).

    python benchmarks/run.py                      # everything, default seeds
    python benchmarks/run.py --datasets digits --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from skcdc import CDCClustering
from skcdc.datasets import load_digits_features
from skcdc.metrics import clustering_report

ROOT = Path(__file__).resolve().parent.parent
DATASETS = {"digits": load_digits_features}


def _kmeans(n_clusters: int, seed: int):
    from sklearn.cluster import KMeans

    return KMeans(n_clusters, n_init=10, random_state=seed)


def _cdc(n_clusters: int, seed: int):
    return CDCClustering(n_clusters, random_state=seed)


METHODS = {"KMeans(n_init=10)": _kmeans, "CDCClustering (default)": _cdc}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(dataset: str, method: str, seed: int) -> dict:
    """One fit, in the current (fresh) process."""
    data = DATASETS[dataset]()
    model = METHODS[method](data.n_clusters, seed)
    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    labels = model.fit_predict(data.X)
    seconds = time.perf_counter() - start
    report = clustering_report(data.y, labels)
    return {
        "dataset": dataset,
        "method": method,
        "seed": seed,
        **report.as_dict(),
        "clusters_used": report.n_clusters,
        "fit_s": seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_growth_mb": _peak_rss_mb() - rss_before,
    }


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (dataset, method), in run order."""
    grouped = runs.groupby(["dataset", "method"], sort=False)
    columns = {}
    for metric in ("ACC", "NMI", "ARI", "fit_s", "peak_rss_mb"):
        columns[f"{metric}_mean"] = grouped[metric].mean()
        columns[f"{metric}_std"] = grouped[metric].std(ddof=0)
    columns["seeds"] = grouped.size()
    columns["min_clusters_used"] = grouped["clusters_used"].min()
    return pd.DataFrame(columns)


def to_markdown(table: pd.DataFrame) -> str:
    lines = [
        "| dataset | method | ACC | NMI | ARI | fit time (s) | peak RSS (MB) | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, method), row in table.iterrows():
        cells = [f"{row[m + '_mean']:.3f} ± {row[m + '_std']:.3f}" for m in ("ACC", "NMI", "ARI")]
        cells += [f"{row['fit_s_mean']:.1f}", f"{row['peak_rss_mb_mean']:.0f}"]
        lines.append(f"| {dataset} | {method} | " + " | ".join(cells) + f" | {int(row['seeds'])} |")
    return "\n".join(lines)


def machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)

    runs = []
    # One worker, one task per child: each fit's peak memory is its own.
    with ProcessPoolExecutor(max_workers=1, max_tasks_per_child=1) as pool:
        for dataset in args.datasets:
            for method in args.methods:
                for seed in args.seeds:
                    row = pool.submit(run_one, dataset, method, seed).result()
                    print(
                        f"{dataset:<10} {method:<26} seed {seed}  ACC {row['ACC']:.3f}  "
                        f"NMI {row['NMI']:.3f}  ARI {row['ARI']:.3f}  {row['fit_s']:.1f} s",
                        flush=True,
                    )
                    runs.append(row)
    frame = pd.DataFrame(runs)
    args.results.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.results / "runs.csv", index=False)
    table = to_markdown(summarise(frame))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(
        "# Benchmarks\n\n"
        "Produced by `python benchmarks/run.py` "
        f"(seeds {' '.join(map(str, args.seeds))}) on: {machine()}.\n"
        "ACC, NMI, ARI: mean ± std over seeds; fit time and peak resident memory of the\n"
        "fitting process: means. Raw runs: `benchmarks/results/runs.csv`.\n\n" + table + "\n"
    )
    print(table)


if __name__ == "__main__":
    main()
