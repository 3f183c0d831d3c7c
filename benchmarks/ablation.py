"""Ablation: each choice of the CDC loss on/off, same seeds, one data set.

    python benchmarks/ablation.py                  # digits, seeds 0-4 -> docs/ablation.md
    python benchmarks/ablation.py --dataset bbc-news-minilm --out ablation-bbc.md
    python benchmarks/ablation.py --variants default "self_labelling_epochs=30, n_init=3"

A variant is a name from ``VARIANTS`` or any ``parameter=value`` list (Python
literals, comma-separated). Writes a markdown page with ACC and NMI mean +- std
over seeds per variant, and the mean fit time.
"""

from __future__ import annotations

import argparse
import ast
import time
from pathlib import Path

import datasets as D
import numpy as np

from skcdc import CDCClustering
from skcdc.metrics import clustering_report

ROOT = Path(__file__).resolve().parent.parent

VARIANTS = {
    "default": {},
    'negative_weighting="hard" (literal reading)': {"negative_weighting": "hard"},
    'equipartition="sinkhorn"': {"equipartition": "sinkhorn"},
    'equipartition="none"': {"equipartition": "none"},
    "n_neighbors=5": {"n_neighbors": 5},
    "n_neighbors=20": {"n_neighbors": 20},
    "tau_c=0.5": {"tau_c": 0.5},
    "tau_z=0.5": {"tau_z": 0.5},
    "entropy_weight=2": {"entropy_weight": 2.0},
    "n_init=1": {"n_init": 1},
    "self_labelling_epochs=0": {"self_labelling_epochs": 0},
    "epochs=50": {"epochs": 50},
    "learning_rate=3e-3": {"learning_rate": 3e-3},
    "learning_rate=3e-4": {"learning_rate": 3e-4},
    "hidden_dim=256": {"network_params": {"hidden_dim": 256}},
    "n_heads=5": {"network_params": {"n_heads": 5}},
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
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=None, help="default: the estimator's")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--dataset", default="digits", choices=list(D.BENCHMARK_DATASETS))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "ablation.md")
    args = parser.parse_args(argv)
    try:
        params = {name: variant(name) for name in args.variants}
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))

    data = D.BENCHMARK_DATASETS[args.dataset]()
    report = args.out
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
        f"seeds {' '.join(map(str, args.seeds))}, mean ± std; {machine()}.\n\n"
    )
    report.write_text(header + "\n".join(lines) + "\n")


def machine() -> str:
    import platform

    import torch

    return f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


if __name__ == "__main__":
    main()
