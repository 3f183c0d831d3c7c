"""scikit-learn's own estimator checks, with no check skipped."""

from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

from skcdc import CDCClustering


# The default estimator, only shortened: the checks fit dozens of times on
# 10-200 samples, and every other parameter keeps its default value.
# n_init=1: five restarts would multiply the time of every check for nothing checked.
@parametrize_with_checks([CDCClustering(epochs=20, n_init=1, random_state=0)])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_tags_make_sklearn_run_clusterer_and_transformer_checks():
    # The checks above only include the clustering and transformer checks when
    # the tags say so; make sure they do.
    tags = get_tags(CDCClustering())
    assert tags.estimator_type == "clusterer"
    assert tags.transformer_tags is not None
    assert tags.transformer_tags.preserves_dtype == ["float64", "float32"]
    assert not tags.input_tags.sparse and not tags.input_tags.allow_nan
