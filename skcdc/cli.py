"""The ``skcdc`` command line.

``skcdc demo`` clusters scikit-learn's bundled digits with CDCClustering and
with k-means and prints ACC, NMI and ARI for both. Exit codes: 0 ok,
1 failure, 2 usage error (argparse's own).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

__all__ = ["main"]

EPILOG = """examples:
  skcdc demo                 cluster the digits with CDC and k-means, print both
  skcdc demo --seeds 0 1 2   average over three seeds
"""


def _demo(args: argparse.Namespace) -> int:
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_digits

    from . import CDCClustering
    from .metrics import clustering_report

    X, y = load_digits(return_X_y=True)
    n_clusters = len(np.unique(y))
    print(f"digits: {X.shape[0]} samples x {X.shape[1]} features, {n_clusters} classes")
    rows = []
    for seed in args.seeds:
        for name, model in (
            ("KMeans(n_init=10)", KMeans(n_clusters, n_init=10, random_state=seed)),
            (
                "CDCClustering",
                CDCClustering(n_clusters, random_state=seed, verbose=args.verbose),
            ),
        ):
            start = time.perf_counter()
            labels = model.fit_predict(X)
            seconds = time.perf_counter() - start
            report = clustering_report(y, labels)
            rows.append((name, seed, report, seconds))
            print(f"  seed {seed}  {name:<18} {report}  {seconds:6.1f} s", flush=True)
    print("mean over seeds:")
    for name in dict.fromkeys(row[0] for row in rows):
        reports = [row[2] for row in rows if row[0] == name]
        means = {key: np.mean([r.as_dict()[key] for r in reports]) for key in ("ACC", "NMI", "ARI")}
        print(f"  {name:<18} " + "  ".join(f"{k} {v:.3f}" for k, v in means.items()))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skcdc",
        description="Contrastive representation Disentanglement for Clustering.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="cluster scikit-learn's digits with CDC and k-means and compare"
    )
    demo.add_argument("--seeds", type=int, nargs="+", default=[0], help="random seeds (default: 0)")
    demo.add_argument("--verbose", action="store_true", help="show a progress bar per fit")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``skcdc`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"skcdc: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
