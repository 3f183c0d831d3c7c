"""Ablation: each choice of the CDC loss on/off, same seeds, one data set.

    python benchmarks/ablation.py                  # digits, seeds 0 1 2
    python benchmarks/ablation.py --dataset bbc-news-minilm --variants default 'init="kmeans"'
    python benchmarks/ablation.py --variants "self_labelling_epochs=30, n_init=5"

A variant is a name from ``VARIANTS`` or any ``parameter=value`` list (Python
literals, comma-separated). Writes ``docs/ablation-<dataset>.md`` with ACC and NMI
mean +- std over seeds per variant.
"""

from __future__ import annotations

import argparse
import ast
import time
from pathlib import Path

import numpy as np

from skcdc import CDCClustering
from skcdc import datasets as D
from skcdc.metrics import clustering_report

ROOT = Path(__file__).resolve().parent.parent

VARIANTS = {
    "default": {},
    'negative_weighting="hard" (literal reading)': {"negative_weighting": "hard"},
    'equipartition="sinkhorn", entropy_weight=0': {
        "equipartition": "sinkhorn",
        "entropy_weight": 0.0,
    },
    'equipartition="sinkhorn", entropy_weight=1': {"equipartition": "sinkhorn"},
    'equipartition="sinkhorn", anchor_weight=0, entropy_weight=0': {
        "equipartition": "sinkhorn",
        "anchor_weight": 0.0,
        "entropy_weight": 0.0,
    },
    'equipartition="none"': {"equipartition": "none"},
    "n_neighbors=5": {"n_neighbors": 5},
    "n_neighbors=20": {"n_neighbors": 20},
    "mutual_neighbors=True": {"mutual_neighbors": True},
    "feature_noise=0.1": {"feature_noise": 0.1},
    "tau_c=0.5": {"tau_c": 0.5},
    "entropy_weight=2": {"entropy_weight": 2.0},
    "entropy_weight=5": {"entropy_weight": 5.0},
    "n_heads=5": {"n_heads": 5},
    "n_init=3": {"n_init": 3},
    'init="kmeans"': {"init": "kmeans"},
    "self_labelling_epochs=0": {"self_labelling_epochs": 0},
    "self_labelling_epochs=20": {"self_labelling_epochs": 20},
    "epochs=100": {"epochs": 100},
    "learning_rate=3e-3": {"learning_rate": 3e-3},
    "learning_rate=3e-4": {"learning_rate": 3e-4},
    'learning_rate_schedule="cosine"': {"learning_rate_schedule": "cosine"},
    'learning_rate_schedule="cosine", learning_rate=3e-3': {
        "learning_rate_schedule": "cosine",
        "learning_rate": 3e-3,
    },
    "weight_decay=1e-2": {"weight_decay": 1e-2},
    "hidden_dim=256": {"hidden_dim": 256},
    "hidden_dim=1024": {"hidden_dim": 1024},
}


def variant(spec: str) -> dict:
    """The parameters of a named variant, or of a ``parameter=value, ...`` spec."""
    if spec in VARIANTS:
        return VARIANTS[spec]
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="default: the estimator's")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--dataset", default="digits", choices=list(D.BENCHMARK_DATASETS))
    parser.add_argument("--out", type=Path, default=None, help="default: docs/ablation-<dataset>.md")
    args = parser.parse_args(argv)
    try:
        params = {name: variant(name) for name in args.variants}
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))

    data = D.BENCHMARK_DATASETS[args.dataset]()
    report = args.out or ROOT / "docs" / f"ablation-{args.dataset}.md"
    epochs = {} if args.epochs is None else {"epochs": args.epochs}
    lines = [
        "| variant | ACC | NMI | clusters used (min) | fit time (s) |",
        "|---|---|---|---|---|",
    ]
    for name in args.variants:
        reports, seconds = [], []
        for seed in args.seeds:
            model = CDCClustering(data.n_clusters, random_state=seed, **epochs, **params[name])
            start = time.perf_counter()
            labels = model.fit_predict(data.X)
            seconds.append(time.perf_counter() - start)
            reports.append(clustering_report(data.y, labels))
            print(
                f"  {name}, seed {seed}: ACC {reports[-1].accuracy:.4f}, {seconds[-1]:.1f} s",
                flush=True,
            )
        acc = np.array([r.accuracy for r in reports])
        nmi = np.array([r.nmi for r in reports])
        line = (
            f"| {name} | {acc.mean():.3f} ± {acc.std():.3f} | {nmi.mean():.3f} ± {nmi.std():.3f} "
            f"| {min(r.n_clusters for r in reports)} | {np.mean(seconds):.1f} |"
        )
        print(line, flush=True)
        lines.append(line)
    header = (
        f"# Ablation on {data.name}\n\n"
        f"`python benchmarks/ablation.py --dataset {args.dataset}"
        f"{' --epochs ' + str(args.epochs) if args.epochs else ''}`: "
        f"`CDCClustering({data.n_clusters}, ...)` with one change from the defaults per row, "
        f"seeds {' '.join(map(str, args.seeds))}, mean ± std.\n\n"
    )
    report.write_text(header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
