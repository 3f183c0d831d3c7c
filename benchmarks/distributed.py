"""One process against several: the same default fit launched by torchrun.

For each data set and seed, the default ``CDCClustering`` fits the same
``.npy`` file (opened as a memmap) once in one process and once under
``torchrun --nproc-per-node=P``; the labels of rank 0 are scored against the
classes. Each record also gives what one optimiser step communicates: the
values gathered (the global batch's logits and instance vectors) and the
values all-reduced (the parameter gradients), read off the fitted network.

    python benchmarks/distributed.py --datasets digits bbc-news-minilm --seeds 0 1 2 3 4
    python benchmarks/distributed.py --report-only

Results go to ``benchmarks/results/distributed.json``; the table is written
into ``docs/distributed.md`` between its markers. On CPU cores shared by all
processes (gloo) the speed of several processes says nothing about GPUs, so
only quality and communication are tabled.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import datasets as D
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "distributed.json"
DOCS = ROOT / "docs" / "distributed.md"
MARKERS = ("<!-- distributed-table -->", "<!-- /distributed-table -->")


def data_file(name: str) -> tuple[Path, np.ndarray]:
    """The data set's vectors as a float32 ``.npy`` file in the cache, and its labels."""
    data = D.BENCHMARK_DATASETS[name]()
    path = D.cache_dir() / "distributed" / f"{name}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        np.save(path, np.asarray(data.X, dtype=np.float32))
    return path, np.asarray(data.y)


def worker(path: str, n_clusters: int, seed: int, out: str) -> None:
    """Runs in every process of a launch (or alone): fit, and rank 0 writes."""
    from skcdc import CDCClustering
    from skcdc._plan import make_plan
    from skcdc.distributed import current_world
    from skcdc.networks import InputScaler
    from skcdc.training.runs import build_network

    start = time.perf_counter()
    model = CDCClustering(n_clusters, random_state=seed).fit(path)
    seconds = time.perf_counter() - start
    world = current_world()
    if world.is_main:
        # One run's network, as trained (the fitted one may be the consensus of several).
        plan = make_plan(
            model.get_params(), n_samples=len(model.labels_), images=False,
            device=torch.device("cpu"),
        )
        n_features = model.n_features_in_
        scaler = InputScaler(torch.zeros(n_features), torch.ones(()))
        network = build_network(plan, scaler, (n_features,))
        logits, z = network(torch.zeros(2, n_features))
        batch = plan.batch_size
        record = {
            "processes": world.size,
            "seconds": seconds,
            "labels": model.labels_.tolist(),
            "gathered_values_per_step": 2 * batch * (logits.shape[-1] + z.shape[-1]),
            "all_reduced_values_per_step": sum(p.numel() for p in network.parameters()),
        }
        Path(out).write_text(json.dumps(record))


def scored_fit(path: Path, y: np.ndarray, seed: int, processes: int) -> dict:
    """One fit of ``path`` by ``processes`` processes, scored against ``y``."""
    from sklearn.metrics import normalized_mutual_info_score

    from skcdc.metrics import cluster_accuracy_score

    with tempfile.TemporaryDirectory() as scratch:
        record = run_fit(path, len(np.unique(y)), seed, processes, Path(scratch) / "out.json")
    labels = np.asarray(record.pop("labels"))
    return {
        **record,
        "machine": _machine(),
        "acc": cluster_accuracy_score(y, labels),
        "nmi": normalized_mutual_info_score(y, labels),
    }


def _key(record: dict) -> tuple:
    return record["dataset"], record["seed"], record["processes"]


def run_fit(path: Path, n_clusters: int, seed: int, processes: int, out: Path) -> dict:
    command = [str(Path(__file__).resolve()), "--worker", str(path), str(n_clusters), str(seed), str(out)]
    if processes > 1:
        command = ["-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={processes}", *command]
    # One thread per process: the processes share the machine's cores.
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // processes))}
    subprocess.run([sys.executable, *command], check=True, env=env)
    return json.loads(out.read_text())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "bbc-news-minilm"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--worker", nargs=4, metavar=("PATH", "K", "SEED", "OUT"))
    args = parser.parse_args(argv)
    if args.worker:
        path, k, seed, out = args.worker
        worker(path, int(k), int(seed), out)
        return
    records = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    if not args.report_only:
        for name in args.datasets:
            path, y = data_file(name)
            for seed, processes in itertools.product(args.seeds, (1, args.processes)):
                record = {"dataset": name, "seed": seed, **scored_fit(path, y, seed, processes)}
                print(json.dumps(record), flush=True)
                records = [r for r in records if _key(r) != _key(record)]
                records.append(record)
                RESULTS.write_text(json.dumps(records, indent=1))
    write_report(records)


def _machine() -> str:
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, gloo"


def table(records: list[dict]) -> str:
    """Mean and spread of ACC/NMI per data set and number of processes."""
    import pandas as pd

    frame = pd.DataFrame(records)
    lines = [
        "| data set | processes | seeds | ACC | NMI | gathered / step | all-reduced / step |",
        "|---|---|---|---|---|---|---|",
    ]
    for (name, processes), group in frame.groupby(["dataset", "processes"]):
        lines.append(
            f"| {name} | {processes} | {len(group)} "
            f"| {group.acc.mean():.3f} ± {group.acc.std(ddof=0):.3f} "
            f"| {group.nmi.mean():.3f} ± {group.nmi.std(ddof=0):.3f} "
            f"| {int(group.gathered_values_per_step.iloc[0]):,} "
            f"| {int(group.all_reduced_values_per_step.iloc[0]):,} |"
        )
    machines = sorted(set(frame.machine))
    return "\n".join(lines) + f"\n\nMachine: {'; '.join(machines)}.\n"


def write_report(records: list[dict]) -> None:
    if not records:
        return
    text = DOCS.read_text()
    start, end = MARKERS
    before, rest = text.split(start)
    _, after = rest.split(end)
    DOCS.write_text(f"{before}{start}\n{table(records)}{end}{after}")
    print(table(records))


if __name__ == "__main__":
    main()
