"""Prediction speed: rows/s of predict, predict_proba and transform on a memmap.

    python benchmarks/predict.py                      # 1M x 256, K=1000
    python benchmarks/predict.py --rows 200000 --clusters 100

How fast a fitted model labels new rows depends on its network's shape, not on
how well it was trained, so the model here is a short fit (one epoch, one run)
on the first 20000 rows of the mixture of ``benchmarks/scale.py``; the rows
are then read from a read-only memmap as new data would be. Each method is
timed on the same rows in one process, best of two calls: ``CDCClustering.predict`` (the
inference copy: batch normalisation folded, the kept head's logits only), the
same labels from the training network as fitted (``network_``, every head and
the instance head), and ``MiniBatchKMeans.predict`` fitted on the same rows.
``predict_proba`` and ``transform`` are timed on the first 200000 rows, each
against the training network followed by a softmax in numpy. The agreement of
the labels and the largest difference of the probabilities are recorded, and
a profile of one 4096-row block of ``predict`` (torch.profiler) gives where
its time goes. Results: ``benchmarks/results/predict.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scale import make_mixture
from sklearn.cluster import MiniBatchKMeans

from skcdc import CDCClustering
from skcdc._inference import BLOCK_ROWS, forward, predict_labels, softmax

RESULTS = Path(__file__).resolve().parent / "results" / "predict.json"
TRAIN_ROWS = 20_000
OUTPUT_ROWS = 200_000


def rows_per_second(function, X, repeats: int = 2) -> tuple[object, float]:
    """``function(X)`` and its best rate over ``repeats`` calls: the first
    call of the first method would otherwise also pay for reading the
    memmap from disk."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = function(X)
        best = min(best, time.perf_counter() - start)
    return out, len(X) / best


def block_profile(model: CDCClustering, X: np.ndarray) -> dict[str, float]:
    """Share of one predict block's CPU time per torch operation."""
    from torch.profiler import ProfilerActivity, profile

    network = model._inference_copies[False]
    block = np.asarray(X[:BLOCK_ROWS])
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(10):
            x = torch.tensor(np.ascontiguousarray(block), dtype=torch.float32)
            network(x).argmax(dim=1).int().numpy()
    events = prof.key_averages()
    total = sum(event.self_cpu_time_total for event in events)
    shares = {event.key: event.self_cpu_time_total / total for event in events}
    return dict(sorted(shares.items(), key=lambda item: -item[1])[:6])


def run(rows: int, clusters: int, features: int, seed: int) -> dict:
    X, _ = make_mixture(rows, clusters, features, seed=seed)
    train = np.asarray(X[:TRAIN_ROWS])
    model = CDCClustering(
        clusters, n_init=1, epochs=1, self_labelling_epochs=0, kmeans_floor=False,
        random_state=seed,
    ).fit(train)
    kmeans = MiniBatchKMeans(clusters, random_state=seed, batch_size=4096).fit(train)

    labels, predict_rate = rows_per_second(model.predict, X)
    trained, trained_rate = rows_per_second(lambda X: predict_labels(model.network_, X), X)
    _, kmeans_rate = rows_per_second(kmeans.predict, X)
    record = {
        "rows": rows, "clusters": clusters, "features": features, "seed": seed,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "predict_rows_per_second": predict_rate,
        "training_network_rows_per_second": trained_rate,
        "minibatch_kmeans_rows_per_second": kmeans_rate,
        "labels_agreement": float(np.mean(labels == trained)),
    }

    def proba_before(X):
        return softmax(forward(model.network_, X)[0]).astype(np.float32)

    def transform_before(X):
        logits, z = forward(model.network_, X)
        return np.hstack([softmax(logits), z]).astype(np.float32)

    subset = X[:OUTPUT_ROWS]
    for name, reference in (("predict_proba", proba_before), ("transform", transform_before)):
        _, rate = rows_per_second(getattr(model, name), subset)
        _, before_rate = rows_per_second(reference, subset)
        record[f"{name}_rows_per_second"] = rate
        record[f"{name}_training_network_rows_per_second"] = before_rate
    difference = np.abs(model.predict_proba(subset) - proba_before(subset)).max()
    record["predict_proba_max_difference"] = float(difference)
    record["predict_block_profile"] = block_profile(model, X)
    return record


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    record = run(args.rows, args.clusters, args.features, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
