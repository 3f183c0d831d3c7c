"""scikit-learn's own estimator checks, with no check skipped."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skcdc import CDCClustering


# The default estimator, only shortened: the checks fit dozens of times on
# 10-200 samples, and every other parameter keeps its default value.
@parametrize_with_checks([CDCClustering(epochs=20, random_state=0)])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
