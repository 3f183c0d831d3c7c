"""How much restarts buy: single runs, then the run that ``n_init=n`` would keep.

    python benchmarks/restarts.py --dataset digits --runs 25
    python benchmarks/restarts.py --dataset bbc-news-minilm --runs 25 --keep 1 3 5 7

Each run is ``CDCClustering(n_init=1, random_state=i)`` for i = 0 .. runs - 1
(from ``--first-seed`` on when given),
recorded with its ACC and its label-free score (``run_scores_[0]``, what
``n_init`` compares). The runs are independent draws, so the ACC of the run that
``n_init=n`` keeps is averaged over every n-subset of them (20000 random ones when
there are more): a tighter estimate than fitting ``n_init=n`` on a few seeds,
for the same number of runs, though not by as much as the count suggests (see
the pool error below). The same subsets give what
``combine_restarts="consensus"`` makes of them: k-means on the runs'
concatenated cluster probabilities (``skcdc.consensus``; 200 random subsets,
or all when there are fewer, since each is a k-means fit), and what the
default ``combine_restarts="best_or_consensus"`` keeps: the consensus when its
label-free score is at least the best run's, else that run. Writes the runs
to ``benchmarks/results/restarts-<dataset>.csv`` and prints a markdown table.

``--set "learning_rate=3e-4"`` gives every run (and the neighbour graph its
score reads) other parameters, written as ``ablation.py`` reads a variant.
The "pool error" column is the bootstrap standard error of the best-scored
run's mean (runs resampled with replacement, its expectation recomputed
exactly): a pool of 20 runs knows that mean only to about a point, because it
rests on the few runs that score best. ``--stored FILE.csv [MORE.csv ...]``
prints those columns again for runs written before, without fitting anything;
``--first-seed 20`` continues a pool of 20 runs, and ``--stored`` reads the two
files as one.

The suite reads a method's spread as the std of its ACC over five seeds,
and five values estimate a std to about a third of itself. The columns "its
5 seeds' std" draw five fits at a time from what each subset keeps (10000
draws): the median of their std, and how often it is above the 0.03 the
suite's targets allow. A row whose five seeds pass or miss that target by
a hair says little; this says how often they would.

``--features FILE.npz`` (arrays ``X`` and ``y``) replaces ``--dataset`` on a
machine that cannot build the data set, such as a GPU machine without the
encoders; ``--device`` chooses where the runs train.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from ablation import variant
from scipy.stats import spearmanr

from skcdc import CDCClustering
from skcdc import datasets as D
from skcdc.consensus import fit_consensus

# The estimator's own neighbour graph and score, so that the gate below is the
# one a fit applies, not a copy of it.
from skcdc.estimator import _neighbour_agreement
from skcdc.metrics import cluster_accuracy_score, clustering_report
from skcdc.views import NeighbourViews

ROOT = Path(__file__).resolve().parent.parent
MAX_SUBSETS = 20000
# A consensus is a k-means fit per subset, not a look-up: fewer subsets.
MAX_CONSENSUS_SUBSETS = 200
# A kept run below this ACC counts as a bad pick (on BBC: two topics merged).
BAD_ACC = 0.9
# The suite fits five seeds, and issue 3 asks their ACC's std to be at most 0.03.
SUITE_SEEDS = 5
SPREAD_TARGET = 0.03
_BEST_RUN_HEADER = (
    f"| runs | ACC of the best-scored run | its mean's pool error | below {BAD_ACC} ACC "
    f"| its {SUITE_SEEDS} seeds' std, median | above {SPREAD_TARGET} |"
)


def kept_accuracy(
    scores: np.ndarray, accuracy: np.ndarray, n: int, max_subsets: int = MAX_SUBSETS, seed: int = 0
) -> np.ndarray:
    """ACC of the best-scored run of each n-subset of the runs: all of them, or
    ``max_subsets`` drawn at random when there are more."""
    scores, accuracy = np.asarray(scores), np.asarray(accuracy)
    subsets = _subsets(len(scores), n, max_subsets, seed)
    best = subsets[np.arange(len(subsets)), scores[subsets].argmax(axis=1)]
    return accuracy[best]


def expected_best_accuracy(
    scores: np.ndarray, accuracy: np.ndarray, n: int
) -> float | np.ndarray:
    """Expected ACC of the best-scored of ``n`` runs drawn from these without
    replacement: exactly the mean of :func:`kept_accuracy` over every n-subset.
    One value for a pool; for 2-D arrays, whose rows are pools of their own,
    one value per row."""
    scores, accuracy = np.asarray(scores), np.asarray(accuracy)
    n_runs = scores.shape[-1]
    order = np.argsort(-scores, axis=-1, kind="stable")
    # The i-th best-scored run is kept by the subsets that hold it and n - 1 of
    # the runs scored below it.
    weights = np.array([math.comb(n_runs - 1 - i, n - 1) for i in range(n_runs)])
    return np.take_along_axis(accuracy, order, axis=-1) @ weights / math.comb(n_runs, n)


def pool_error(
    scores: np.ndarray, accuracy: np.ndarray, n: int, draws: int = 2000, seed: int = 0
) -> float:
    """Bootstrap standard error of :func:`expected_best_accuracy`: how far
    another pool of as many runs could move it. The expectation leans on the
    few best-scored runs, so it is much less certain than the pool's size
    suggests."""
    scores, accuracy = np.asarray(scores), np.asarray(accuracy)
    rng = np.random.default_rng(seed)
    resamples = rng.integers(0, len(scores), (draws, len(scores)))
    return float(np.std(expected_best_accuracy(scores[resamples], accuracy[resamples], n)))


def seed_spread(
    kept: np.ndarray, seeds: int = SUITE_SEEDS, draws: int = 10000, seed: int = 0
) -> np.ndarray:
    """Population std of the ACC of ``seeds`` fits, each fit's ACC drawn from
    ``kept`` (what one fit keeps, one value per subset of the pool): ``draws``
    such stds. It shows how far the suite's five-seed std can fall from the
    spread a fit really has: five values estimate a std to about a third of
    itself."""
    rng = np.random.default_rng(seed)
    return np.asarray(kept)[rng.integers(0, len(kept), (draws, seeds))].std(axis=1)


def _spread_cells(kept: np.ndarray) -> tuple[str, str]:
    """The median of the suite's seed std, and how often it is above the target."""
    spread = seed_spread(kept)
    return f"{np.median(spread):.3f}", f"{np.mean(spread > SPREAD_TARGET):.0%}"


def consensus_accuracy(
    probabilities: list[np.ndarray],
    y: np.ndarray,
    n: int,
    max_subsets: int = MAX_CONSENSUS_SUBSETS,
    seed: int = 0,
    scores: np.ndarray | None = None,
    neighbors: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """ACC of the consensus of each n-subset of the runs, as
    ``combine_restarts="consensus"`` computes it from their probabilities, and,
    given the runs' ``scores`` and the training data's ``neighbors``, ACC of
    what ``combine_restarts="best_or_consensus"`` keeps of the same subset
    (None without them)."""
    accuracy, gated = [], []
    for subset in _subsets(len(probabilities), n, max_subsets, seed):
        _, _, labels = fit_consensus([probabilities[i] for i in subset], random_state=0)
        accuracy.append(cluster_accuracy_score(y, labels))
        if scores is not None:
            best = subset[np.argmax(scores[subset])]
            best_labels = probabilities[best].argmax(axis=1)
            wins = _neighbour_agreement(labels, neighbors) >= scores[best]
            gated.append(accuracy[-1] if wins else cluster_accuracy_score(y, best_labels))
    return np.asarray(accuracy), (np.asarray(gated) if scores is not None else None)


def _subsets(n_runs: int, n: int, max_subsets: int, seed: int) -> np.ndarray:
    """Every n-subset of the runs' indices, or ``max_subsets`` random ones."""
    if math.comb(n_runs, n) <= max_subsets:
        return np.array(list(itertools.combinations(range(n_runs), n)))
    rng = np.random.default_rng(seed)
    return np.array([rng.choice(n_runs, n, replace=False) for _ in range(max_subsets)])


def load_features(path: Path) -> D.Dataset:
    """The arrays ``X`` and ``y`` of an ``.npz``: a data set exported where it
    can be built, for a machine where it cannot (no encoders, no downloads)."""
    with np.load(path) as arrays:
        return D.Dataset(path.stem, arrays["X"], arrays["y"], f"X and y of {path}")


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="digits", choices=list(D.BENCHMARK_DATASETS))
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--keep", nargs="+", type=int, default=[1, 3, 5, 7])
    parser.add_argument("--epochs", type=int, default=None, help="default: the estimator's")
    parser.add_argument(
        "--set", type=variant, default={}, metavar="PARAMS",
        help='other parameters of every run, e.g. "learning_rate=3e-4" (as ablation.py reads them)',
    )
    parser.add_argument("--features", type=Path, default=None, help="X and y in an .npz")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seed of the first run, to extend a pool"
    )
    parser.add_argument(
        "--stored", type=Path, nargs="+", default=None,
        help="table the runs former calls wrote (several files: one pool); no fitting",
    )
    args = parser.parse_args(argv)
    stored = None if args.stored is None else pd.concat(map(pd.read_csv, args.stored))
    if stored is not None and stored["seed"].duplicated().any():
        parser.error("--stored: the files repeat a seed, so they are not one pool")
    if max(args.keep) > (args.runs if stored is None else len(stored)):
        parser.error(f"--keep {max(args.keep)} needs at least that many runs")
    if stored is not None:
        report_stored(stored, " + ".join(path.name for path in args.stored), args.keep)
        return stored
    # Each run is one seed of one training; the script sets these itself.
    reserved = sorted(set(args.set) & {"n_init", "random_state", "device"})
    if reserved:
        parser.error(f"--set cannot change {reserved}: every run is n_init=1 with its own "
                     "random_state; use --device for the device")

    if args.features is None:
        name, data = args.dataset, D.BENCHMARK_DATASETS[args.dataset]()
    else:
        name, data = args.features.stem, load_features(args.features)
    params = {**args.set, **({} if args.epochs is None else {"epochs": args.epochs})}
    rows, probabilities = [], []
    for seed in range(args.first_seed, args.first_seed + args.runs):
        model = CDCClustering(
            data.n_clusters, n_init=1, random_state=seed, device=args.device, **params
        )
        start = time.perf_counter()
        model.fit(data.X)
        seconds = time.perf_counter() - start
        report = clustering_report(data.y, model.labels_)
        probabilities.append(model.categorical_embedding_)
        rows.append({"seed": seed, "score": float(model.run_scores_[0]),
                     "ACC": report.accuracy, "fit_s": seconds})
        print(f"  run {seed}: ACC {report.accuracy:.4f}, score {rows[-1]['score']:.4f}, "
              f"{seconds:.1f} s", flush=True)
    runs = pd.DataFrame(rows)
    out = args.out or ROOT / "benchmarks" / "results" / f"restarts-{name}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out, index=False)

    rho = spearmanr(runs["score"], runs["ACC"]).statistic
    print(f"\n{data.name}: {args.runs} runs, Spearman(score, ACC) = {rho:.2f}, "
          f"{runs['fit_s'].mean():.1f} s per run\n")
    # The graph each run's score was measured on.
    model = CDCClustering(data.n_clusters, **params)
    data_tensor = torch.as_tensor(np.ascontiguousarray(data.X), dtype=torch.float32)
    neighbors = NeighbourViews(data_tensor, model.n_neighbors, metric=model.metric).neighbors
    neighbors = neighbors.numpy()
    _print_header(f"{_BEST_RUN_HEADER} ACC of their consensus | best or consensus (the "
                  f"default) | its {SUITE_SEEDS} seeds' std above {SPREAD_TARGET} |")
    scores = runs["score"].to_numpy()
    for n in args.keep:
        cells, kept = _best_run_cells(runs, n)
        # One run is its own consensus and the gate's only choice.
        combined, gated = (
            consensus_accuracy(probabilities, data.y, n, scores=scores, neighbors=neighbors)
            if n > 1
            else (kept, kept)
        )
        print(f"{cells} {combined.mean():.3f} ± {combined.std():.3f} | "
              f"{gated.mean():.3f} ± {gated.std():.3f} | {_spread_cells(gated)[1]} |")
    return runs


def _print_header(header: str) -> None:
    """A markdown table's header and its separator, one column per cell, so
    that a column added to the header cannot leave the separator short."""
    print(header)
    print("|---" * (header.count("|") - 1) + "|")


def _best_run_cells(runs: pd.DataFrame, n: int) -> tuple[str, np.ndarray]:
    """The row's first cells, what keeping the best-scored of ``n`` runs
    gives, and the ACC it kept from each subset."""
    scores, accuracy = runs["score"].to_numpy(), runs["ACC"].to_numpy()
    kept = kept_accuracy(scores, accuracy, n)
    median, above = _spread_cells(kept)
    cells = (f"| {n} | {kept.mean():.3f} ± {kept.std():.3f} | "
             f"{pool_error(scores, accuracy, n):.3f} | {np.mean(kept < BAD_ACC):.1%} | "
             f"{median} | {above} |")
    return cells, kept


def report_stored(runs: pd.DataFrame, name: str, keep: list[int]) -> None:
    """The best-scored run's columns for runs a former call stored: the
    consensus needs the runs' probabilities, which the CSV does not keep."""
    rho = spearmanr(runs["score"], runs["ACC"]).statistic
    print(f"{name}: {len(runs)} runs, Spearman(score, ACC) = {rho:.2f}\n")
    _print_header(_BEST_RUN_HEADER)
    for n in keep:
        print(_best_run_cells(runs, n)[0])


if __name__ == "__main__":
    main()
