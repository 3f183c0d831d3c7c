"""The ``skcdc`` command line: cluster a file of embeddings without writing code.

Commands: ``fit``, ``predict``, ``evaluate``, ``demo`` (``skcdc COMMAND --help``).
Results go to stdout or to the ``--out`` file; the progress bar and messages go
to stderr. Exit codes: 0 ok, 1 failure (a bad file, bad values: one line on
stderr, no traceback), 2 usage error (argparse's own).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "read_table"]

EPILOG = """examples:
  skcdc fit embeddings.npy --n-clusters 10 --out labels.csv --save model.skcdc
  skcdc fit table.csv --n-clusters 5 --epochs 100 --random-state 0 > labels.csv
  skcdc predict model.skcdc new_embeddings.parquet --out new_labels.csv
  skcdc evaluate labels.csv truth.csv
  skcdc demo --seeds 0 1 2
  torchrun --nproc-per-node 4 -m skcdc fit embeddings.npy --n-clusters 1000 --out labels.csv

Input files: .npy, .npz (--key names the array when there are several), .csv
(with a header row; its column names must match at predict) and .parquet
(needs pyarrow). A 3-D or 4-D .npy/.npz array is a stack of images (image mode).
Under torchrun every process trains its share and one process writes the files.
"""

SUFFIXES = (".npy", ".npz", ".csv", ".parquet")


class CLIError(Exception):
    """A failure to report on one line with exit code 1."""


def read_table(path: str | Path, key: str | None = None) -> Any:
    """Read embeddings (or images) from .npy, .npz, .csv or .parquet."""
    import numpy as np
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise CLIError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise CLIError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(SUFFIXES)}")
    try:
        if suffix == ".npy":
            # A memmap: a large table is streamed, never read whole.
            return np.load(path, mmap_mode="r", allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                names = list(arrays.keys())
                if key is None and len(names) != 1:
                    raise CLIError(f"{path} holds arrays {names}; choose one with --key")
                if key is not None and key not in names:
                    raise CLIError(f"{path} has no array {key!r}; it holds {names}")
                return arrays[key or names[0]]
        if suffix == ".csv":
            frame = pd.read_csv(path)
        else:
            try:
                frame = pd.read_parquet(path)
            except ImportError as exc:
                raise CLIError(
                    f"{path}: reading parquet needs pyarrow: pip install pyarrow"
                ) from exc
    except (ValueError, OSError) as exc:
        raise CLIError(f"{path}: cannot read it ({exc})") from exc
    if frame.empty:
        raise CLIError(f"{path}: no rows")
    text = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        raise CLIError(
            f"{path}: non-numeric columns {text[:5]}; every column must be a number "
            "(drop ids and text first)"
        )
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _write_labels(labels, out: str | None) -> None:
    import pandas as pd

    from .distributed import is_main_process

    if not is_main_process():
        # Under torchrun every process holds the labels; one writes them.
        return
    frame = pd.DataFrame({"label": labels})
    if out is None:
        frame.to_csv(sys.stdout, index=False)
    else:
        frame.to_csv(out, index=False)
        print(f"wrote {len(frame)} labels to {out}", file=sys.stderr)


def _fit(args: argparse.Namespace) -> int:
    from . import CDCClustering
    from .distributed import is_main_process
    from .persistence import save_model

    X = read_table(args.embeddings, args.key)
    model = CDCClustering(
        args.n_clusters,
        epochs="auto" if args.epochs is None else args.epochs,
        random_state=args.random_state,
        device=args.device,
        verbose=0 if args.quiet else 1,
    )
    model.fit(X)
    _write_labels(model.labels_, args.out)
    if args.save:
        save_model(model, args.save)
        if is_main_process():
            print(f"saved the model to {args.save}", file=sys.stderr)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .persistence import load_model

    model = load_model(args.model)
    _write_labels(model.predict(read_table(args.embeddings, args.key)), args.out)
    return 0


def _read_labels(path: str) -> Any:
    frame = read_table(path)
    column = "label" if "label" in frame.columns else frame.columns[0]
    return frame[column].to_numpy()


def _evaluate(args: argparse.Namespace) -> int:
    from .metrics import clustering_report

    labels, truth = _read_labels(args.labels), _read_labels(args.truth)
    if len(labels) != len(truth):
        raise CLIError(f"{args.labels} has {len(labels)} labels but {args.truth} has {len(truth)}")
    print(clustering_report(truth, labels))
    return 0


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

    fit = commands.add_parser("fit", help="cluster a file of embeddings, write the labels")
    fit.add_argument("embeddings", help="a .npy, .npz, .csv or .parquet file, one row per sample")
    fit.add_argument("--n-clusters", type=int, required=True, help="number of clusters")
    fit.add_argument("--out", help="labels CSV to write (default: stdout)")
    fit.add_argument("--save", help="also save the fitted model here (skcdc's safe format)")
    fit.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="CDC epochs per run (default: the estimator's 'auto')",
    )
    fit.add_argument("--random-state", type=int, default=0, help="seed (default: 0)")
    fit.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda' (default: auto)")
    fit.add_argument("--key", help="the array to read from a .npz holding several")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    fit.set_defaults(run=_fit)

    predict = commands.add_parser("predict", help="label new samples with a saved model")
    predict.add_argument("model", help="a model saved by 'skcdc fit --save'")
    predict.add_argument("embeddings", help="a .npy, .npz, .csv or .parquet file")
    predict.add_argument("--out", help="labels CSV to write (default: stdout)")
    predict.add_argument("--key", help="the array to read from a .npz holding several")
    predict.set_defaults(run=_predict)

    evaluate = commands.add_parser("evaluate", help="ACC, NMI and ARI of labels against truth")
    evaluate.add_argument("labels", help="CSV of predicted labels (column 'label' or the first)")
    evaluate.add_argument("truth", help="CSV of true labels (column 'label' or the first)")
    evaluate.set_defaults(run=_evaluate)

    demo = commands.add_parser(
        "demo", help="cluster scikit-learn's digits with CDC and k-means and compare"
    )
    demo.add_argument("--seeds", type=int, nargs="+", default=[0], help="random seeds (default: 0)")
    demo.add_argument("--verbose", action="store_true", help="show a progress bar per fit")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``skcdc`` console script; returns the exit code."""
    from .exceptions import IncompatibleFileError

    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (CLIError, ValueError, TypeError, OSError, IncompatibleFileError) as exc:
        message = " ".join(str(exc).split())  # sklearn's messages span lines
        print(f"skcdc: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
