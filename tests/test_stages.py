"""Restarts: every run trained, the best-scored kept or replaced by their consensus."""

import numpy as np
import pytest

from skcdc import CDCClustering

FAST = {"epochs": 10, "batch_size": 64, "n_init": 1, "self_labelling_epochs": 0, "random_state": 0}


def test_n_init_keeps_the_run_with_the_best_label_free_score(blobs):
    X, _ = blobs
    params = {**FAST, "epochs": 2, "equipartition": "none"}  # short and unconstrained: runs differ
    multi = CDCClustering(3, **{**params, "n_init": 4}).fit(X)
    assert multi.run_scores_.shape == (4,)
    # The kept network scores at least as well as the best run (the
    # consensus replaces it only then).
    assert multi.score(X) >= multi.run_scores_.max() - 1e-9
    # The first run is the n_init=1 run of the same random_state.
    single = CDCClustering(3, **params).fit(X)
    assert single.run_scores_[0] == pytest.approx(multi.run_scores_[0])


def test_n_init_auto_restarts_by_size(blobs):
    X, _ = blobs
    small = CDCClustering(3, **{**FAST, "epochs": 1, "n_init": "auto"}).fit(X)
    assert len(small.run_scores_) == 4
    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8), dtype=np.uint8)
    small_images = CDCClustering(3, **{**FAST, "epochs": 1, "n_init": "auto"}).fit(images)
    assert len(small_images.run_scores_) == 3
    big = np.repeat(X, 25, axis=0)[:5001]
    large = CDCClustering(3, **{**FAST, "epochs": 1, "n_init": "auto", "batch_size": 2048})
    assert len(large.fit(big).run_scores_) == 3
