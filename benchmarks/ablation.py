"""Ablation over the suite: one change from the defaults per row, every set, five seeds.

    python benchmarks/ablation.py                         # every vector set, every variant
    python benchmarks/ablation.py --datasets digits iris --variants default "tau_c=0.5"
    python benchmarks/ablation.py --report                # the page from the results so far

A variant is a name from ``VARIANTS`` or any ``parameter=value`` list (Python
literals, comma-separated). Every fit appends one row to
``benchmarks/results/ablation.csv`` (fits already there are skipped, so a long
ablation can be resumed); the page ``docs/ablation.md`` is written from that
file: mean ACC over the seeds per set, the mean over the sets, and each row's
largest fall below the default on any set.

The default's fit also gives the row ``kmeans_floor=False`` without a second
fit: the k-means floor runs after training, so the trained partition it
replaced is the partition of the same fit without it (``tests/test_floor.py``
checks this), read off ``network_.network``.
"""

from __future__ import annotations

import argparse
import ast
import platform
import time
from pathlib import Path

import datasets as D
import numpy as np
import pandas as pd
import purity
import torch
from sklearn.cluster import KMeans
from sklearn.neighbors import NearestNeighbors

from skcdc import CDCClustering
from skcdc._inference import predict_labels
from skcdc.metrics import cluster_accuracy_score as accuracy

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "ablation.csv"
PURITY = ROOT / "benchmarks" / "results" / "purity.csv"
KMEANS = "KMeans(n_init=10)"
DEFAULT = "default"
NO_FLOOR = "kmeans_floor=False"

VARIANTS = {
    DEFAULT: {},
    'negative_weighting="hard" (literal reading)': {"negative_weighting": "hard"},
    'equipartition="sinkhorn"': {"equipartition": "sinkhorn"},
    "n_neighbors=5": {"n_neighbors": 5},
    "n_neighbors=20": {"n_neighbors": 20},
    "entropy_weight=0.3": {"entropy_weight": 0.3},
    "n_init=1": {"n_init": 1},
}
# Rows that change the input rather than a parameter: the default fit of
# X' = S X, S the mean over each sample and its 10 nearest neighbours
# (Euclidean, exact), the graph the fit's positives come from.
SMOOTHED = "kNN-smoothed input (k=10)"


def smooth(X: np.ndarray, k: int = 10) -> np.ndarray:
    """Each row replaced by the mean of itself and its ``k`` nearest neighbours."""
    neighbours = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X, return_distance=False)
    return np.asarray(X)[neighbours].mean(axis=1).astype(np.asarray(X).dtype)


INPUT_CHANGES = {SMOOTHED: smooth}
# Image mode's sets train an encoder for many minutes a fit; their own
# table is in docs/image-mode.md.
VECTOR_SETS = [name for name in D.BENCHMARK_DATASETS if not name.endswith("-images")]


def variant(spec: str) -> dict:
    """The parameters of a named variant, or of a ``parameter=value, ...`` spec."""
    if spec in VARIANTS:
        return VARIANTS[spec]
    if spec in INPUT_CHANGES:
        return {}
    try:
        call = ast.parse(f"variant({spec})", mode="eval").body
        params = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except (SyntaxError, ValueError) as error:
        raise argparse.ArgumentTypeError(
            f"{spec!r} is no parameter=value list: {error}"
        ) from error
    unknown = set(params) - set(CDCClustering().get_params())
    if call.args or unknown or not params:
        raise argparse.ArgumentTypeError(
            f"{spec!r}: name a variant of {sorted(VARIANTS)} or CDCClustering parameters"
            + (f" (unknown: {sorted(unknown)})" if unknown else "")
        )
    return params


def fit_rows(data: D.Dataset, dataset: str, name: str, params: dict, seed: int) -> list[dict]:
    """One fit of a variant (or of k-means); the default's gives two rows."""
    start = time.perf_counter()
    if name == KMEANS:
        labels = KMeans(data.n_clusters, n_init=10, random_state=seed).fit_predict(data.X)
        extra = {}
    else:
        X = INPUT_CHANGES[name](data.X) if name in INPUT_CHANGES else data.X
        model = CDCClustering(data.n_clusters, random_state=seed, **params).fit(X)
        labels = model.labels_
        # The held-out agreement of the trained partition and of k-means'.
        scores = list(model.floor_scores_) or [np.nan, np.nan]
        extra = {
            "kmeans_floor": bool(model.kmeans_floor_),
            "score_trained": scores[0],
            "score_kmeans": scores[1],
        }
    row = {
        "dataset": dataset, "variant": name, "seed": seed, "ACC": accuracy(data.y, labels),
        "clusters_used": np.unique(labels).size, "fit_s": time.perf_counter() - start,
        "machine": machine(), **extra,
    }
    rows = [row]
    if name == DEFAULT:
        # The network the floor wrapped labels as the fit without the floor would.
        trained_labels = (
            predict_labels(model.network_.network, data.X) if model.kmeans_floor_ else labels
        )
        rows.append({**row, "variant": NO_FLOOR, "ACC": accuracy(data.y, trained_labels),
                     "clusters_used": np.unique(trained_labels).size, "kmeans_floor": False})
    return rows


def machine() -> str:
    from skcdc.devices import native_bfloat16

    precision = "bfloat16 autocast" if native_bfloat16(torch.device("cpu")) else "float32"
    return (
        f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
        f", {precision} on the CPU"
    )


def report(results: pd.DataFrame, out: Path) -> None:
    """The page: variants by data sets, mean ACC over seeds."""
    table = results.groupby(["variant", "dataset"], sort=False)["ACC"].agg(["mean", "std", "size"])
    datasets = list(dict.fromkeys(results["dataset"]))
    variants = list(dict.fromkeys([KMEANS, NO_FLOOR, DEFAULT, *results["variant"]]))
    variants = [v for v in variants if v in table.index.get_level_values(0)]
    lines = [
        "| variant | " + " | ".join(datasets) + " | mean | largest fall below default |",
        "|---|" + "---|" * (len(datasets) + 2),
    ]
    for name in variants:
        cells, means, falls = [], [], []
        for dataset in datasets:
            if (name, dataset) not in table.index:
                cells.append("")
                continue
            mean, std, size = table.loc[(name, dataset)]
            cells.append(f"{mean:.3f} ± {0 if np.isnan(std) else std:.3f} ({int(size)})")
            means.append(mean)
            if (DEFAULT, dataset) in table.index:
                falls.append(table.loc[(DEFAULT, dataset), "mean"] - mean)
        complete = len(means) == len(datasets)
        lines.append(
            f"| {name} | " + " | ".join(cells)
            + f" | {np.mean(means):.3f}{'' if complete else ' (partial)'}"
            + f" | {max(falls) if falls else 0:+.3f} |"
        )
    seeds = sorted(results["seed"].unique())
    header = (
        "# Ablation over the suite\n\n"
        "`python benchmarks/ablation.py`: `CDCClustering(n_classes, random_state=seed)` with one "
        "change from the defaults per row (a change of the input, such as the kNN-smoothed "
        "input, is the default fit on the changed input); ACC mean ± std over seeds (their "
        f"number in brackets; seeds {' '.join(map(str, seeds))}); *mean* is over the sets a "
        "row has, *largest fall* the most a set loses against the default row. Raw fits: "
        "`benchmarks/results/ablation.csv`. Machine: "
        + "; ".join(sorted(results["machine"].unique())) + ".\n\n"
    )
    out.write_text(header + "\n".join(lines) + "\n" + _purity_section())


def _purity_section() -> str:
    """The kNN label purity of the sets (``benchmarks/purity.py``), when measured."""
    if not PURITY.exists():
        return ""
    return (
        "\n## What neighbour positives can give\n\n"
        "`python benchmarks/purity.py`: the share of each sample's nearest neighbours "
        "(Euclidean, the estimator's default) that carry its own class, the purity of "
        "frozen-feature mode's positive pairs.\n\n"
        + purity.to_markdown(pd.read_csv(PURITY)) + "\n"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", default=[KMEANS, *VARIANTS, *INPUT_CHANGES])
    parser.add_argument("--datasets", nargs="+", default=VECTOR_SETS, choices=VECTOR_SETS)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "ablation.md")
    parser.add_argument("--report", action="store_true", help="only write the page")
    args = parser.parse_args(argv)
    try:
        params = {name: {} if name == KMEANS else variant(name) for name in args.variants}
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    done = pd.read_csv(args.results) if args.results.exists() else pd.DataFrame()
    if not args.report:
        for dataset in args.datasets:
            data = None
            for name in args.variants:
                for seed in args.seeds:
                    if not done.empty and (
                        (done["dataset"] == dataset) & (done["variant"] == name)
                        & (done["seed"] == seed)
                    ).any():
                        continue
                    data = data or D.BENCHMARK_DATASETS[dataset]()
                    rows = fit_rows(data, dataset, name, params[name], seed)
                    done = pd.concat([done, pd.DataFrame(rows)], ignore_index=True)
                    done.to_csv(args.results, index=False)
                    print(
                        "  " + ", ".join(f"{r['variant']} {r['ACC']:.4f}" for r in rows)
                        + f" ({dataset}, seed {seed}, {rows[0]['fit_s']:.0f} s)",
                        flush=True,
                    )
    report(done, args.out)


if __name__ == "__main__":
    main()
