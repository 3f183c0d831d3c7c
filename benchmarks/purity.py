"""kNN label purity of the suite's vector sets: what neighbour positives can give.

In frozen-feature mode a sample's positive is one of its ``n_neighbors``
nearest neighbours. The share of those neighbours that carry the sample's own
class bounds how clean the positive pairs are: at a purity of 0.5, half the
pairs pull two classes together. The table also gives each set's size, number
of classes and their size ratio, the settings that decide how hard a set is.

    python benchmarks/purity.py                       # every vector set of the suite
    python benchmarks/purity.py --datasets digits iris --neighbors 10 20

Writes ``benchmarks/results/purity.csv`` (replacing the rows of the sets it
measured) and prints a markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import datasets as D
import numpy as np
import pandas as pd

from skcdc.scoring import neighbour_graph

ROOT = Path(__file__).resolve().parent.parent
# Image mode's sets are the digits and Fashion-MNIST pixels again.
VECTOR_SETS = [name for name in D.BENCHMARK_DATASETS if not name.endswith("-images")]


def purity(X: np.ndarray, y: np.ndarray, n_neighbors: int) -> float:
    """Mean share of each sample's ``n_neighbors`` nearest neighbours
    (Euclidean, the estimator's default) that share its class."""
    neighbors = neighbour_graph(X, n_neighbors)
    return float((y[neighbors] == y[:, None]).mean())


def describe(name: str, neighbor_counts: list[int]) -> dict:
    data = D.BENCHMARK_DATASETS[name]()
    sizes = np.bincount(np.unique(data.y, return_inverse=True)[1])
    row = {
        "dataset": name,
        "rows": len(data.y),
        "classes": sizes.size,
        "size_ratio": sizes.max() / sizes.min(),
        # The accuracy of labelling every sample with the largest class.
        "largest_share": sizes.max() / sizes.sum(),
    }
    X = data.X.reshape(len(data.X), -1)
    for k in neighbor_counts:
        row[f"purity@{k}"] = purity(X, data.y, k)
    return row


def to_markdown(table: pd.DataFrame) -> str:
    columns = [c for c in table.columns if c.startswith("purity@")]
    lines = [
        "| dataset | rows | classes | largest / smallest class | "
        + " | ".join(f"kNN purity, k={c.split('@')[1]}" for c in columns) + " |",
        "|---|---|---|---|" + "---|" * len(columns),
    ]
    for _, row in table.iterrows():
        cells = [f"{row[c]:.3f}" for c in columns]
        lines.append(
            f"| {row['dataset']} | {row['rows']} | {row['classes']} | {row['size_ratio']:.0f} | "
            + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=VECTOR_SETS, choices=VECTOR_SETS)
    parser.add_argument("--neighbors", nargs="+", type=int, default=[10])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "purity.csv")
    args = parser.parse_args(argv)
    rows = []
    for name in args.datasets:
        rows.append(describe(name, args.neighbors))
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    if args.out.exists():
        # Rows of other sets measured earlier stay.
        earlier = pd.read_csv(args.out)
        table = pd.concat([earlier[~earlier["dataset"].isin(table["dataset"])], table])
    table.to_csv(args.out, index=False)
    print(to_markdown(table))


if __name__ == "__main__":
    main()
