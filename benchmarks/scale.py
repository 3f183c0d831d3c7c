"""Scale: many rows and many clusters, from a read-only memmap.

Synthetic Gaussian mixtures with known labels (d=256 by default) are written
once to ``.npy`` files in the cache folder and opened as read-only memmaps.
Each (rows, clusters, method) runs in a fresh subprocess, so that its peak
resident memory is its own. Methods: CDCClustering with its defaults,
scikit-learn's ``MiniBatchKMeans`` and, when installed, faiss' k-means; and,
as the floor of CDC's epoch, the bare training loop of the same network and
batch (forward of both views, backward, optimiser step) on tensors already in
memory.

    python benchmarks/scale.py --rows 10000 100000 --clusters 10 100 1000
    python benchmarks/scale.py --rows 1280000 --clusters 1000 --features 768   # on a GPU
    python benchmarks/scale.py --report-only

Results accumulate in ``benchmarks/results/scale.json`` (a record replaces
an earlier one of the same rows, clusters and method); ``run.py
--report-only`` puts their table into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import datasets as D
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
METHODS = ("cdc", "minibatch-kmeans", "faiss-kmeans")
# Within-cluster spread against the spread of the centres: at 0.5 k-means
# is well below an ACC of 1 at 1000 clusters in 256 dimensions.
OVERLAP = 0.5
IMBALANCE = 10.0
BLOCK = 100_000
# predict_proba and transform are timed on this many rows (their outputs are
# N x (K + 128) floats).
OUTPUT_ROWS = 100_000


def mixture_path(n: int, k: int, d: int, overlap: float, imbalance: float, seed: int) -> Path:
    return D.cache_dir() / "scale" / f"mixture-{n}-{k}-{d}-{overlap:g}-{imbalance:g}-{seed}.npy"


def make_mixture(
    n: int, k: int, d: int = 256, overlap: float = OVERLAP, imbalance: float = IMBALANCE,
    seed: int = 0,
) -> tuple[np.memmap, np.ndarray]:
    """A Gaussian mixture of ``k`` clusters written to a ``.npy`` file (block by
    block, never whole in memory) and opened as a read-only memmap, with its
    labels.

    Centres are standard normal in ``d`` dimensions; each cluster has its own
    spread, ``overlap`` times the centres' scale times a factor in [0.5, 1.5],
    so that clusters are not all alike. Cluster sizes range geometrically over
    a factor ``imbalance`` (1: equal sizes).
    """
    path = mixture_path(n, k, d, overlap, imbalance, seed)
    labels_path = path.with_suffix(".labels.npy")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((k, d)).astype(np.float32)
        spread = overlap * rng.uniform(0.5, 1.5, k).astype(np.float32)
        weights = imbalance ** -np.linspace(0, 1, k)
        labels = rng.choice(k, n, p=weights / weights.sum()).astype(np.int32)
        out = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), "w+", np.float32, (n, d))
        for start in range(0, n, BLOCK):
            block = labels[start : start + BLOCK]
            noise = rng.standard_normal((len(block), d), dtype=np.float32)
            out[start : start + BLOCK] = centres[block] + spread[block, None] * noise
        out.flush()
        del out
        np.save(labels_path, labels)
        path.with_suffix(".tmp.npy").rename(path)
    return np.load(path, mmap_mode="r"), np.load(labels_path)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def run_one(method: str, n: int, k: int, d: int, seed: int) -> dict:
    """Fit one method on the memmap (in this process) and measure it."""
    import torch
    from sklearn.cluster import MiniBatchKMeans

    from skcdc import CDCClustering
    from skcdc.metrics import clustering_report

    X, y = make_mixture(n, k, d, seed=seed)
    record: dict = {"rows": n, "clusters": k, "features": d, "method": method, "seed": seed}
    start = time.perf_counter()
    if method == "cdc":
        model = CDCClustering(k, random_state=seed).fit(X)
        labels = model.labels_
        cdc = model.history_[model.history_["phase"] == "cdc"]
        record.update(
            neighbour_search=model.neighbour_search_.method,
            neighbour_seconds=model.neighbour_search_.seconds,
            neighbour_recall=model.neighbour_search_.recall,
            seconds_per_epoch=float(cdc["time"].mean()),
            epochs=int(model.n_iter_),
            runs=len(model.run_scores_),
            device=str(model.device_),
        )
        predict = model.predict
    elif method == "minibatch-kmeans":
        model = MiniBatchKMeans(k, random_state=seed, batch_size=4096).fit(X)
        labels = model.labels_
        predict = model.predict
    else:
        import faiss

        kmeans = faiss.Kmeans(d, k, niter=25, seed=seed + 1, verbose=False)
        kmeans.train(np.ascontiguousarray(X[: min(n, 256 * k)]))

        def predict(rows):
            out = [kmeans.index.search(np.ascontiguousarray(rows[s : s + BLOCK]), 1)[1][:, 0]
                   for s in range(0, len(rows), BLOCK)]
            return np.concatenate(out)

        labels = predict(X)
    record["fit_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    predict(X)
    record["predict_rows_per_second"] = n / (time.perf_counter() - start)
    record.update(clustering_report(y, labels).as_dict())
    record["clusters_used"] = int(np.unique(labels).size)
    record["peak_rss_gb"] = peak_rss_gb()
    record["data_gb"] = X.nbytes / 1024**3
    record["torch_threads"] = torch.get_num_threads()
    if method == "cdc":
        record["bare_seconds_per_epoch"] = bare_epoch_seconds(model, n, d)
        # After the peak-memory reading: their outputs are N x (K + 128) floats.
        rows = X[:OUTPUT_ROWS]
        for name in ("predict_proba", "transform"):
            start = time.perf_counter()
            getattr(model, name)(rows)
            record[f"{name}_rows_per_second"] = len(rows) / (time.perf_counter() - start)
    return record


def bare_epoch_seconds(model, n: int, d: int, steps: int = 30) -> float:
    """The floor of one CDC epoch: forward of both views, backward and an
    optimiser step of the same network, loss and batch, on random rows already
    in memory, times the steps of an epoch."""
    import torch

    from skcdc._plan import make_plan
    from skcdc.devices import resolve_device
    from skcdc.training.runs import build_network

    plan = make_plan(model.get_params(), n_samples=n, images=False, device=resolve_device("cpu"))
    network = build_network(plan, torch.nn.Identity(), (d,))
    optimizer = torch.optim.AdamW(network.parameters(), lr=plan.learning_rate, foreach=True)
    criterion = plan.loss.criterion()
    a, b = torch.randn(plan.batch_size, d), torch.randn(plan.batch_size, d)
    for step in range(steps + 5):
        if step == 5:
            start = time.perf_counter()
        with torch.autocast("cpu", torch.bfloat16, enabled=plan.mixed_precision):
            logits_a, z_a = network(a)
            logits_b, z_b = network(b)
        out = criterion(logits_a, z_a, logits_b, z_b)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
    per_step = (time.perf_counter() - start) / steps
    return per_step * (n // plan.batch_size)


def load_results() -> list[dict]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else []


def save_result(record: dict) -> None:
    key = ("rows", "clusters", "method")
    kept = [r for r in load_results() if tuple(r[k] for k in key) != tuple(record[k] for k in key)]
    kept.append(record)
    kept.sort(key=lambda r: (r["rows"], r["clusters"], METHODS.index(r["method"])))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(kept, indent=1) + "\n")


_COLUMNS = (
    ("rows", "rows", "{:,}"),
    ("clusters", "K", "{}"),
    ("method", "method", "{}"),
    ("ACC", "ACC", "{:.3f}"),
    ("NMI", "NMI", "{:.3f}"),
    ("clusters_used", "clusters used", "{}"),
    ("fit_seconds", "fit s", "{:.0f}"),
    ("neighbour_seconds", "neighbours s", "{:.0f}"),
    ("neighbour_search", "search", "{}"),
    ("neighbour_recall", "recall", "{:.3f}"),
    ("seconds_per_epoch", "s/epoch", "{:.1f}"),
    ("bare_seconds_per_epoch", "bare loop s/epoch", "{:.1f}"),
    ("peak_rss_gb", "peak RSS GB", "{:.2f}"),
    ("data_gb", "data GB", "{:.2f}"),
    ("predict_rows_per_second", "predict rows/s", "{:,.0f}"),
    ("predict_proba_rows_per_second", "predict_proba rows/s", "{:,.0f}"),
    ("transform_rows_per_second", "transform rows/s", "{:,.0f}"),
    ("device", "device", "{}"),
)


def report(records: list[dict] | None = None) -> str:
    """The scale table in Markdown (empty without records)."""
    records = load_results() if records is None else records
    if not records:
        return ""
    lines = [
        "| " + " | ".join(title for _, title, _ in _COLUMNS) + " |",
        "|---" * len(_COLUMNS) + "|",
    ]
    for record in records:
        cells = [fmt.format(record[key]) if key in record else "" for key, _, fmt in _COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        "## Scale: many rows, many clusters, from a memmap\n\n"
        "`python benchmarks/scale.py` (one seed, one process per row of the table):\n"
        f"Gaussian mixtures of d=256, within-cluster spread {OVERLAP:g} of the centres'\n"
        f"(each cluster 0.5-1.5 times that), sizes over a factor {IMBALANCE:g}, read from\n"
        "a read-only memmap. *bare loop*: forward and backward of both views and the\n"
        "optimiser step of the same network and batch on rows already in memory, the\n"
        "floor of an epoch. Peak RSS includes the pages of the memmap the process read.\n\n"
        + "\n".join(lines)
        + "\n\n"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--clusters", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--one", nargs=3, metavar=("METHOD", "ROWS", "CLUSTERS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        method, n, k = args.one[0], int(args.one[1]), int(args.one[2])
        print(json.dumps(run_one(method, n, k, args.features, args.seed)))
        return
    if not args.report_only:
        for n in args.rows:
            for k in args.clusters:
                make_mixture(n, k, args.features, seed=args.seed)
                for method in args.methods:
                    if method == "faiss-kmeans" and not _has_faiss():
                        continue
                    done = subprocess.run(
                        [sys.executable, __file__, "--one", method, str(n), str(k),
                         "--features", str(args.features), "--seed", str(args.seed)],
                        check=True, capture_output=True, text=True,
                    )
                    record = json.loads(done.stdout.strip().splitlines()[-1])
                    save_result(record)
                    print(json.dumps(record), flush=True)
    print(report())


def _has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
