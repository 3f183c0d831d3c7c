"""The benchmark suite: every method on identical inputs, several seeds.

Each (dataset, method) pair runs its seeds in a fresh subprocess, so that the
peak memory (resident set size, ``ru_maxrss``) reported for it is its own. Results go to
``benchmarks/results/runs.csv`` (one row per fit), ``docs/benchmarks.md``
(mean +- std per dataset and method) and PNG plots beside it.

    python benchmarks/run.py                      # everything, 5 seeds
    python benchmarks/run.py --datasets digits --seeds 0 1 2
    python benchmarks/run.py --quick              # smoke test on tiny data

Embeddings are computed on first use and cached outside the repository
(``datasets.cache_dir()``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import datasets as D
import image_folder
import pandas as pd
import scale
import torch
from baselines import BASELINES, clustpy_baselines

from skcdc import CDCClustering
from skcdc.metrics import clustering_report

ROOT = Path(__file__).resolve().parent.parent
DATASETS = D.BENCHMARK_DATASETS
CDC = "CDCClustering (default)"
CDC_RELAXED = "CDCClustering (entropy_weight=0.1)"
CDC_HARD = "CDCClustering (equipartition='sinkhorn')"
METHODS = {
    **BASELINES,
    **clustpy_baselines(),
    CDC: lambda k, seed, d: CDCClustering(k, random_state=seed),
    CDC_RELAXED: lambda k, seed, d: CDCClustering(k, entropy_weight=0.1, random_state=seed),
    CDC_HARD: lambda k, seed, d: CDCClustering(k, equipartition="sinkhorn", random_state=seed),
}
# A weaker and a hard equal-size prior, to show what the prior does to
# imbalanced clusters; elsewhere they are not run.
ONLY_ON = {CDC_RELAXED: {"imbalanced-blobs"}, CDC_HARD: {"imbalanced-blobs"}}
# ClustPy's autoencoder training (100 + 150 epochs by default) is long on the
# 10000-sample sets (335 s per DEC fit, 472 s per IDEC fit on two cores): they
# run on the EfficientNet embeddings and the pixels, not on the separated
# blobs, where k-means is exact.
for _name in clustpy_baselines():
    ONLY_ON[_name] = {
        "digits", "bbc-news-minilm", "fashion-mnist-efficientnet", "fashion-mnist-pixels",
        "imbalanced-blobs", *D.HELD_OUT_DATASETS,
    } - set(D.MANY_CLUSTER_DATASETS)

# On the image sets only k-means runs among the baselines (on the flat
# pixels): the reference image mode is measured against.
IMAGE_SETS = {name for name in DATASETS if name.endswith("-images")}
for _name in BASELINES:
    if _name != "KMeans(n_init=10)":
        ONLY_ON[_name] = set(DATASETS) - IMAGE_SETS - set(D.MANY_CLUSTER_DATASETS)


def _quick_dataset() -> D.Dataset:
    data = D.load_digits_features()
    return D.Dataset("digits-300", data.X[:300], data.y[:300], "first 300 digits")


QUICK_METHODS = {
    "KMeans(n_init=10)": BASELINES["KMeans(n_init=10)"],
    CDC: lambda k, seed, d: CDCClustering(k, epochs=2, random_state=seed),
}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_group(dataset: str, method: str, seeds: list[int], quick: bool = False) -> list:
    """All seeds of one method on one data set, in the current (fresh) process."""
    data = _quick_dataset() if quick else DATASETS[dataset]()
    factory = (QUICK_METHODS if quick else METHODS)[method]
    return [run_one(data, dataset, method, factory, seed) for seed in seeds]


def run_one(data, dataset: str, method: str, factory, seed: int) -> tuple[dict, list]:
    """One fit: its row and, for CDC, its training history."""
    # Baselines see images as flat pixel vectors; CDC takes them as images.
    X = data.X if method.startswith("CDC") else data.X.reshape(len(data.X), -1)
    model = factory(data.n_clusters, seed, X.shape[1])
    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    labels = model.fit_predict(X)
    seconds = time.perf_counter() - start
    report = clustering_report(data.y, labels)
    history = model.history_.to_dict("records") if hasattr(model, "history_") else []
    row = {
        "dataset": dataset,
        "method": method,
        "seed": seed,
        **report.as_dict(),
        "clusters_used": report.n_clusters,
        "fit_s": seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_growth_mb": _peak_rss_mb() - rss_before,
    }
    return row, history


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


def targets(table: pd.DataFrame) -> str:
    """CDC's default beside the best baseline and k-means, per data set."""
    lines = [
        (
            "| dataset | CDC ACC | best baseline (ACC) | CDC - best | CDC - k-means | "
            "CDC ACC std | min clusters used | CDC fit time (s) | held out |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset in dict.fromkeys(table.index.get_level_values(0)):
        rows = table.loc[dataset]
        if CDC not in rows.index:
            continue
        cdc = rows.loc[CDC]
        baselines = rows.drop([m for m in rows.index if m.startswith("CDCClustering")])
        if baselines.empty:
            continue
        best = baselines["ACC_mean"].idxmax()
        kmeans = baselines["ACC_mean"].get("KMeans(n_init=10)", float("nan"))
        lines.append(
            f"| {dataset} | {cdc['ACC_mean']:.3f} | {best} ({baselines.loc[best, 'ACC_mean']:.3f}) "
            f"| {cdc['ACC_mean'] - baselines.loc[best, 'ACC_mean']:+.3f} "
            f"| {cdc['ACC_mean'] - kmeans:+.3f} | {cdc['ACC_std']:.3f} "
            f"| {int(cdc['min_clusters_used'])} | {cdc['fit_s_mean']:.1f} "
            f"| {'yes' if dataset in D.HELD_OUT_DATASETS else ''} |"
        )
    return "\n".join(lines)


# The keys of a fashion_full.py record shown in the report: key, title, format.
_FULL_RUN_COLUMNS = (
    ("record", "record", "{}"),
    ("split", "split", "{}"),
    ("images", "images", "{}"),
    ("device", "device", "{}"),
    ("torch_threads", "torch threads", "{}"),
    ("epochs", "epochs per stage", "{}"),
    ("seed", "seed", "{}"),
    ("fit_s", "fit time (s)", "{:.0f}"),
    ("epoch_s", "s per end-to-end epoch", "{:.1f}"),
    ("images_per_s", "training images/s", "{:.0f}"),
    ("refine_s", "refinement stage (s)", "{:.0f}"),
    ("ACC", "ACC", "{:.3f}"),
    ("NMI", "NMI", "{:.3f}"),
    ("ARI", "ARI", "{:.3f}"),
)


def full_runs(results: Path) -> str:
    """One row per record of ``benchmarks/fashion_full.py`` (image mode on
    Fashion-MNIST, all 70000 images or one split) found in ``results``; empty
    when there is none."""
    records = [
        {"record": path.name, **json.loads(path.read_text())}
        for path in sorted(results.glob("fashion_full*.json"))
    ]
    if not records:
        return ""
    header = "| " + " | ".join(title for _, title, _ in _FULL_RUN_COLUMNS) + " |"
    lines = [header, "|---" * len(_FULL_RUN_COLUMNS) + "|"]
    for record in records:
        cells = [
            fmt.format(record[key]) if key in record else "n/a" for key, _, fmt in _FULL_RUN_COLUMNS
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        "## Image mode on Fashion-MNIST, one seed per record\n\n"
        "`python benchmarks/fashion_full.py` (image mode, default settings but for the\n"
        "epochs; split `all` is the 70000 training and test images; one record per file\n"
        "in `benchmarks/results/`). A record\n"
        "without a refinement time trained the end-to-end stage alone.\n\n"
        + "\n".join(lines)
        + "\n\n"
    )


def write_report(
    frame: pd.DataFrame, histories: dict, report: Path, command: str, results: Path
) -> str:
    """docs/benchmarks.md and its plots, from the runs (new or read back)."""
    table = summarise(frame)
    report.parent.mkdir(parents=True, exist_ok=True)
    images = plot(frame, histories, report.parent)
    seeds = " ".join(map(str, sorted(frame["seed"].unique())))
    report.write_text(
        "# Benchmarks\n\n"
        f"Produced by `{command}` (seeds {seeds}) on: {machine()}.\n"
        "ACC, NMI, ARI: mean ± std over seeds (population std); fit time: mean seconds of\n"
        "one fit; peak RSS: the resident memory peak of the process that fitted all seeds\n"
        "of that method. Raw runs: `benchmarks/results/runs.csv`.\n\n"
        + to_markdown(table)
        + "\n\n## CDC beside the baselines\n\n"
        + "A data set marked held out is not one the defaults were chosen on.\n\n"
        + targets(table)
        + "\n\n"
        + full_runs(results)
        + scale.report()
        + image_folder.report()
        + "\n".join(f"![{p.stem}]({p.name})" for p in images)
        + "\n"
    )
    return to_markdown(table)


def machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def _merge(previous: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Earlier runs plus new ones; a new run replaces an earlier one of the same key."""
    if previous.empty:
        return new
    key = ["dataset", "method", "seed"]
    merged = pd.concat([previous, new]).drop_duplicates(subset=key, keep="last")
    # Keep datasets and methods in the suite's order, not in the order they ran.
    rank = {
        "dataset": {name: i for i, name in enumerate(DATASETS)},
        "method": {name: i for i, name in enumerate(METHODS)},
    }
    return merged.sort_values(
        key, key=lambda col: col.map(rank[col.name]) if col.name in rank else col, kind="stable"
    ).reset_index(drop=True)


def plot(runs: pd.DataFrame, histories: dict, out_dir: Path) -> list[Path]:
    """Bars with error bars per dataset and method; CDC's training curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    table = summarise(runs)
    datasets = list(dict.fromkeys(runs["dataset"]))
    # A grid four panels wide: one row of a dozen data sets is unreadable.
    n_cols = min(len(datasets), 4)
    n_rows = -(-len(datasets) // n_cols)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(4.5 * n_cols, 4 * n_rows), squeeze=False
    )
    for ax in axes.flat[len(datasets) :]:
        ax.set_visible(False)
    for ax, dataset in zip(axes.flat, datasets):
        rows = table.loc[dataset]
        colours = ["tab:orange" if m.startswith("CDC") else "tab:blue" for m in rows.index]
        ax.barh(range(len(rows)), rows["ACC_mean"], xerr=rows["ACC_std"], color=colours)
        ax.set_yticks(range(len(rows)), rows.index, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title(dataset, fontsize=10)
        ax.set_xlabel("ACC (mean ± std over seeds)")
    fig.tight_layout()
    paths.append(out_dir / "benchmarks_acc.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)

    if histories:
        fig, (loss_ax, size_ax) = plt.subplots(1, 2, figsize=(10, 4))
        for dataset, history in histories.items():
            frame = pd.DataFrame(history)
            loss_ax.plot(frame["epoch"], frame["loss"], label=dataset)
            size_ax.plot(frame["epoch"], frame["cluster_entropy"], label=dataset)
        loss_ax.set(xlabel="epoch", ylabel="training loss", title="CDC loss (first seed)")
        size_ax.set(xlabel="epoch", ylabel="cluster-size entropy / log K", title="cluster balance")
        loss_ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(out_dir / "benchmarks_curves.png")
        fig.savefig(paths[-1], dpi=90)
        plt.close(fig)
    return paths


def _exit_with_parent() -> None:
    """Make a worker end when the suite that started it is killed; otherwise
    it would go on fitting, unseen, and hold the cores later timings need."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument(
        "--append",
        action="store_true",
        help="merge into the existing runs.csv (a rerun replaces the same dataset/method/seed)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rebuild the report from results/ alone"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 300 digits, k-means and a 2-epoch CDC"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.methods = ["digits-300"], list(QUICK_METHODS)

    runs_file = args.results / "runs.csv"
    histories_file = args.results / "histories.json"
    if args.report_only:
        write_report(
            pd.read_csv(runs_file),
            json.loads(histories_file.read_text()),
            args.report,
            "python benchmarks/run.py",
            args.results,
        )
        return
    previous = pd.read_csv(runs_file) if args.append and runs_file.exists() else pd.DataFrame()
    histories = (
        json.loads(histories_file.read_text()) if args.append and histories_file.exists() else {}
    )
    runs = []
    # One worker, one task per child: each fit's peak memory is its own.
    with ProcessPoolExecutor(
        max_workers=1, max_tasks_per_child=1, initializer=_exit_with_parent
    ) as pool:
        for dataset in args.datasets:
            for method in args.methods:
                if dataset not in ONLY_ON.get(method, {dataset}):
                    continue
                group = pool.submit(run_group, dataset, method, args.seeds, args.quick).result()
                for seed, (row, history) in zip(args.seeds, group):
                    if method == CDC and seed == args.seeds[0]:
                        histories[dataset] = history
                    print(
                        f"{dataset:<28} {method:<36} seed {seed}  ACC {row['ACC']:.3f}  "
                        f"NMI {row['NMI']:.3f}  ARI {row['ARI']:.3f}  {row['fit_s']:.1f} s",
                        flush=True,
                    )
                    runs.append(row)
                    # Written as it goes: a long suite loses nothing if cut short.
                    frame = _merge(previous, pd.DataFrame(runs))
                    args.results.mkdir(parents=True, exist_ok=True)
                    frame.to_csv(runs_file, index=False)
                    histories_file.write_text(json.dumps(histories))
    frame = _merge(previous, pd.DataFrame(runs))
    command = "python benchmarks/run.py" + (" --quick" if args.quick else "")
    table = write_report(frame, histories, args.report, command, args.results)
    print(table)


if __name__ == "__main__":
    main()
