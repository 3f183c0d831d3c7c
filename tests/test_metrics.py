import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from skcdc.metrics import (
    cluster_accuracy_score,
    clustering_report,
    matched_confusion_matrix,
)


def test_accuracy_is_invariant_to_relabelling():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 200)
    permutation = rng.permutation(5)
    assert cluster_accuracy_score(y, permutation[y]) == 1.0


def test_accuracy_counts_best_one_to_one_matching():
    y = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    pred = [1, 1, 0, 2, 2, 2, 0, 0, 1]
    # Best matching: 1->0 (2), 2->1 (3), 0->2 (2): 7 of 9.
    assert cluster_accuracy_score(y, pred) == pytest.approx(7 / 9)


def test_accuracy_with_more_clusters_than_classes_counts_unmatched_as_errors():
    assert cluster_accuracy_score([0, 0, 1, 1], [0, 1, 2, 3]) == 0.5


def test_accuracy_accepts_string_classes():
    assert cluster_accuracy_score(["a", "a", "b"], [3, 3, 7]) == 1.0


def test_matched_confusion_matrix_has_correct_counts_on_the_diagonal():
    y = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    pred = [1, 1, 0, 2, 2, 2, 0, 0, 1]
    cm = matched_confusion_matrix(y, pred)
    assert cm.sum() == 9
    assert np.trace(cm) == 7
    assert cm.shape == (3, 3)


def test_report_agrees_with_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 300)
    pred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 4, 300))
    report = clustering_report(y, pred)
    assert report.nmi == pytest.approx(normalized_mutual_info_score(y, pred))
    assert report.ari == pytest.approx(adjusted_rand_score(y, pred))
    assert report.accuracy == pytest.approx(cluster_accuracy_score(y, pred))
    assert set(report.as_dict()) == {"ACC", "NMI", "ARI"}
    assert "ACC" in str(report)


def test_mismatched_or_empty_labels_are_refused():
    with pytest.raises(ValueError):
        cluster_accuracy_score([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="empty"):
        cluster_accuracy_score([], [])
